//! The recommendations service (HTTP/JSON): related products with scores. It is the one the
//! demo usually makes slow and flaky (`portico up --fault recommendations=…`, see
//! [`crate::faults`]), since the web product page treats it as optional.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::data::Shop;
use crate::problem::Problem;
use crate::{http, query};

/// The recommendations routes over the shared shop.
pub fn router(shop: Arc<Shop>) -> Router {
    http::finish(
        Router::new().route("/recommendations/{product_id}", get(recommend)).with_state(shop),
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

async fn recommend(
    State(shop): State<Arc<Shop>>,
    Path(product_id): Path<String>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Json<Recommendations>, Problem> {
    let Query(params) = params.map_err(query::rejected)?;
    let limit = query::int_in("limit", params.limit.as_deref(), 5, 1..=50)? as usize;
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
    use axum::http::StatusCode;

    use super::*;
    use crate::DemoParams;
    use crate::http::testing::{assert_problem, get};

    fn shop() -> Arc<Shop> {
        Arc::new(Shop::generate(&DemoParams { products: 200, ..DemoParams::default() }))
    }

    #[tokio::test]
    async fn recommends_related_products() {
        let shop = shop();
        let app = router(Arc::clone(&shop));
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
        let app = router(shop());
        let answer = get(&app, "/recommendations/p-99999").await;
        assert_problem(&answer, StatusCode::NOT_FOUND, "not_found");
    }
}
