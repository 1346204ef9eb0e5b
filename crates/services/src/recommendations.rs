//! The recommendations service (HTTP/JSON): related products with scores. Deliberately slow and
//! flaky when configured ([`Faults`]), so the gateways' timeouts, retries, circuit breakers and
//! partial responses have something real to handle.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::Faults;
use crate::data::{Shop, mix, unit};
use crate::problem::Problem;
use crate::{http, query};

#[derive(Debug)]
struct AppState {
    shop: Arc<Shop>,
    faults: Faults,
    /// Counts calls; each call's failure roll is derived from its number, so a given error rate
    /// fails the same calls on every run.
    calls: AtomicU64,
}

/// The recommendations routes over the shared shop, with injected latency and errors.
pub fn router(shop: Arc<Shop>, faults: Faults) -> Router {
    let state = AppState { shop, faults, calls: AtomicU64::new(0) };
    http::finish(
        Router::new()
            .route("/recommendations/{product_id}", get(recommend))
            .with_state(Arc::new(state)),
    )
}

#[derive(Debug, Deserialize)]
struct Params {
    limit: Option<String>,
}

#[derive(Debug, Serialize)]
struct Recommendations {
    product_id: String,
    items: Vec<Scored>,
}

#[derive(Debug, Serialize)]
struct Scored {
    product_id: String,
    score: f64,
}

/// Salt for the failure rolls, so they do not correlate with other uses of `mix`.
const FAILURES: u64 = 0x4641_494c;

async fn recommend(
    State(state): State<Arc<AppState>>,
    Path(product_id): Path<String>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Recommendations>, Problem> {
    // The latency is the fault being demonstrated, so every call pays it, even failing ones.
    if !state.faults.latency.is_zero() {
        tokio::time::sleep(state.faults.latency).await;
    }
    let call = state.calls.fetch_add(1, Ordering::Relaxed);
    if unit(mix(call ^ FAILURES)) < state.faults.error_rate {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "recommendations are temporarily unavailable (injected fault)",
        ));
    }

    let Query(params) = params.map_err(query::rejected)?;
    let limit = query::int_in("limit", params.limit.as_deref(), 5, 1..=50)? as usize;
    let shop = &state.shop;
    let index = shop
        .index_of(&product_id)
        .ok_or_else(|| Problem::not_found(format!("no product with id {product_id}")))?;
    let items = shop
        .related(index, limit)
        .into_iter()
        .map(|(j, score)| Scored { product_id: shop.products()[j].id.clone(), score })
        .collect();
    Ok(Json(Recommendations { product_id, items }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::DemoParams;
    use crate::http::testing::{assert_problem, get};

    fn shop() -> Arc<Shop> {
        Arc::new(Shop::generate(&DemoParams { products: 200, ..DemoParams::default() }))
    }

    #[tokio::test]
    async fn recommends_related_products() {
        let shop = shop();
        let app = router(Arc::clone(&shop), Faults::default());
        let answer = get(&app, "/recommendations/p-00007?limit=3").await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.json["product_id"], "p-00007");
        let items = answer.json["items"].as_array().expect("items");
        assert_eq!(items.len(), 3);
        let category = shop.products()[6].category;
        for item in items {
            let id = item["product_id"].as_str().expect("id");
            assert_ne!(id, "p-00007");
            assert_eq!(shop.product(id).expect("known").category, category);
            assert!(item["score"].as_f64().expect("score") > 0.0);
        }
        let default_limit = get(&app, "/recommendations/p-00007").await;
        assert_eq!(default_limit.json["items"].as_array().map(Vec::len), Some(5));
    }

    #[tokio::test]
    async fn unknown_product_is_404() {
        let app = router(shop(), Faults::default());
        let answer = get(&app, "/recommendations/p-99999").await;
        assert_problem(&answer, StatusCode::NOT_FOUND, "not_found");
    }

    #[tokio::test]
    async fn error_rate_one_always_fails_zero_never() {
        let shop = shop();
        let failing = router(Arc::clone(&shop), Faults { error_rate: 1.0, ..Faults::default() });
        let healthy = router(shop, Faults::default());
        for _ in 0..20 {
            let answer = get(&failing, "/recommendations/p-00001").await;
            assert_problem(&answer, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
            let answer = get(&healthy, "/recommendations/p-00001").await;
            assert_eq!(answer.status, StatusCode::OK);
        }
    }

    #[tokio::test]
    async fn error_rate_fails_about_that_share() {
        let app = router(shop(), Faults { error_rate: 0.3, ..Faults::default() });
        let mut failures = 0;
        for _ in 0..200 {
            if get(&app, "/recommendations/p-00001").await.status != StatusCode::OK {
                failures += 1;
            }
        }
        assert!((30..=90).contains(&failures), "{failures} of 200 failed");
    }

    #[tokio::test(start_paused = true)]
    async fn latency_delays_the_answer() {
        let latency = Duration::from_millis(750);
        let app = router(shop(), Faults { latency, ..Faults::default() });
        let started = tokio::time::Instant::now();
        let call = tokio::spawn(async move { get(&app, "/recommendations/p-00001").await });
        // Just short of the latency, the call must still be pending …
        tokio::time::sleep(latency - Duration::from_millis(1)).await;
        assert!(!call.is_finished());
        // … and once the clock passes it, it completes.
        let answer = call.await.expect("task");
        assert_eq!(answer.status, StatusCode::OK);
        assert!(started.elapsed() >= latency);
    }
}
