//! The reviews service (HTTP/JSON): a product's reviews page by page, its rating summary, and
//! summaries of many products in one call. Reviews are generated on request from the seed, so
//! the list and the summary always agree.

use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::data::{Review, ReviewSummary, Shop};
use crate::problem::Problem;
use crate::{http, query};

/// The reviews service's routes over the shared shop.
pub fn router(shop: Arc<Shop>) -> Router {
    http::finish(
        Router::new()
            .route("/products/{id}/reviews", get(list))
            .route("/products/{id}/summary", get(summary))
            .route("/summaries", get(summaries))
            .with_state(shop),
    )
}

#[derive(Debug, Deserialize)]
struct PageParams {
    page: Option<String>,
    per_page: Option<String>,
}

#[derive(Debug, Serialize)]
struct ReviewPage<'a> {
    items: &'a [Review],
    page: u32,
    per_page: u32,
    total: usize,
}

/// `GET /products/{id}/reviews`: newest first; an unknown product simply has no reviews.
async fn list(
    State(shop): State<Arc<Shop>>,
    Path(id): Path<String>,
    params: Result<Query<PageParams>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(params) = params.map_err(query::rejected)?;
    let page = query::int_in("page", params.page.as_deref(), 1, 1..=u32::MAX)?;
    let per_page = query::int_in("per_page", params.per_page.as_deref(), 10, 1..=50)?;
    let reviews = shop.reviews(&id);
    let start = ((page - 1) as usize).saturating_mul(per_page as usize).min(reviews.len());
    let end = (start + per_page as usize).min(reviews.len());
    Ok(Json(ReviewPage { items: &reviews[start..end], page, per_page, total: reviews.len() })
        .into_response())
}

/// `GET /products/{id}/summary`: an unknown product has a zero summary, like its empty list.
async fn summary(State(shop): State<Arc<Shop>>, Path(id): Path<String>) -> Json<ReviewSummary> {
    Json(shop.summary(&id))
}

#[derive(Debug, Deserialize)]
struct IdsParams {
    ids: Option<String>,
}

#[derive(Debug, Serialize)]
struct Summaries {
    items: Vec<ReviewSummary>,
}

/// `GET /summaries?ids=…`: one summary per id, in the order given.
async fn summaries(
    State(shop): State<Arc<Shop>>,
    params: Result<Query<IdsParams>, QueryRejection>,
) -> Result<Json<Summaries>, Problem> {
    let Query(params) = params.map_err(query::rejected)?;
    let raw = params
        .ids
        .ok_or_else(|| Problem::invalid_parameter("ids is required, e.g. ids=p-00001,p-00002"))?;
    let items = query::id_list(&raw)?.into_iter().map(|id| shop.summary(id)).collect();
    Ok(Json(Summaries { items }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DemoParams;
    use crate::http::testing::{assert_problem, get};
    use axum::http::StatusCode;
    use serde_json::Value;

    fn app() -> (Router, Arc<Shop>) {
        let shop = Arc::new(Shop::generate(&DemoParams { products: 200, ..DemoParams::default() }));
        (router(Arc::clone(&shop)), shop)
    }

    /// The id of a product with at least `n` reviews.
    fn with_reviews(shop: &Shop, n: usize) -> String {
        shop.products()
            .iter()
            .find(|p| shop.reviews(&p.id).len() >= n)
            .map(|p| p.id.clone())
            .expect("some product has enough reviews")
    }

    #[tokio::test]
    async fn summary_agrees_with_the_list() {
        let (app, shop) = app();
        let id = with_reviews(&shop, 12);
        let listed = get(&app, &format!("/products/{id}/reviews?per_page=50")).await;
        assert_eq!(listed.status, StatusCode::OK);
        let items = listed.json["items"].as_array().expect("items");
        assert_eq!(listed.json["total"], items.len());

        let summary = get(&app, &format!("/products/{id}/summary")).await.json;
        assert_eq!(summary["product_id"], id.as_str());
        assert_eq!(summary["count"], items.len());
        let ratings: Vec<u64> =
            items.iter().map(|r| r["rating"].as_u64().expect("rating")).collect();
        for star in 1..=5u64 {
            let expected = ratings.iter().filter(|&&r| r == star).count();
            assert_eq!(summary["histogram"][star.to_string()], expected, "{star}");
        }
        let mean = ratings.iter().sum::<u64>() as f64 / ratings.len() as f64;
        let average = summary["average"].as_f64().expect("average");
        assert!((average - mean).abs() <= 0.05, "{average} vs {mean}");

        let batch = get(&app, &format!("/summaries?ids={id},p-99999")).await;
        assert_eq!(batch.status, StatusCode::OK);
        assert_eq!(batch.json["items"][0], summary);
        assert_eq!(batch.json["items"][1]["count"], 0);
        assert_eq!(batch.json["items"][1]["average"], 0.0);
    }

    #[tokio::test]
    async fn pages_cover_the_list_newest_first() {
        let (app, shop) = app();
        let id = with_reviews(&shop, 12);
        let all = get(&app, &format!("/products/{id}/reviews?per_page=50")).await.json;
        let mut paged: Vec<Value> = Vec::new();
        for page in 1.. {
            let answer = get(&app, &format!("/products/{id}/reviews?page={page}&per_page=5")).await;
            assert_eq!(answer.json["page"], page);
            assert_eq!(answer.json["per_page"], 5);
            let items = answer.json["items"].as_array().expect("items").clone();
            if items.is_empty() {
                break;
            }
            paged.extend(items);
        }
        assert_eq!(Value::Array(paged.clone()), all["items"]);
        let dates: Vec<&str> =
            paged.iter().map(|r| r["created_at"].as_str().expect("date")).collect();
        assert!(dates.windows(2).all(|w| w[0] >= w[1]));
    }

    #[tokio::test]
    async fn unknown_product_and_bad_parameters() {
        let (app, _) = app();
        let empty = get(&app, "/products/p-99999/reviews").await;
        assert_eq!(empty.status, StatusCode::OK);
        assert_eq!(empty.json["total"], 0);
        assert_eq!(empty.json["items"], Value::Array(Vec::new()));

        let too_big = get(&app, "/products/p-00001/reviews?per_page=51").await;
        assert_problem(&too_big, StatusCode::BAD_REQUEST, "invalid_parameter");
        let zero = get(&app, "/products/p-00001/reviews?page=0").await;
        assert_problem(&zero, StatusCode::BAD_REQUEST, "invalid_parameter");
        let missing = get(&app, "/summaries").await;
        assert_problem(&missing, StatusCode::BAD_REQUEST, "invalid_parameter");
    }
}
