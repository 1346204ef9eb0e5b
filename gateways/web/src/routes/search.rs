//! `GET /api/search?q=`: catalog search with facets (required), each hit enriched with its
//! rating and a stock flag from one batch call each (optional).

use std::sync::Arc;

use axum::extract::{Query, State};
use portico_edge::{Composed, Degraded, EdgeError, compose};
use serde::{Deserialize, Serialize};

use super::stock_by_sku;
use crate::{
    AppState,
    backend::{SearchResults, SummaryList},
    view::{ProductCard, SearchHit, SearchPage, round1},
};

/// The longest query accepted.
const MAX_QUERY: usize = 200;

/// The detail of a 400 `invalid_cursor`.
const INVALID_CURSOR: &str =
    "`cursor` is invalid or has expired; start the search again without it";

#[derive(Debug, Deserialize, Serialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchQuery {
    /// Words to find in name, brand, category or description.
    pub q: String,
    /// Results per page, 1–100 (default 20).
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Only this category.
    pub category: Option<String>,
    /// Only this brand.
    pub brand: Option<String>,
}

/// Search with facets.
#[utoipa::path(get, path = "/api/search", tag = "web", params(SearchQuery),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Matching products and facets", body = SearchPage),
        (status = 400, description = "Missing or malformed query (`bad_request`, \
`invalid_parameter`), or a `cursor` that is invalid or has expired (`invalid_cursor`): start \
again without it", body = portico_edge::error::Problem,
         content_type = "application/problem+json"),
        portico_edge::openapi::InvalidToken,
        portico_edge::openapi::UpstreamFailure,
        portico_edge::openapi::Unavailable,
        portico_edge::openapi::UpstreamTimeout,
    ))]
pub async fn search(
    State(state): State<Arc<AppState>>,
    Query(query): Query<SearchQuery>,
) -> Result<Composed<SearchPage>, EdgeError> {
    let q = query.q.trim();
    if q.is_empty() || q.len() > MAX_QUERY {
        return Err(EdgeError::invalid(
            "invalid_parameter",
            format!("`q` must be 1–{MAX_QUERY} characters"),
        ));
    }
    if query.limit.is_some_and(|l| !(1..=100).contains(&l)) {
        return Err(EdgeError::invalid("invalid_parameter", "`limit` must be 1–100"));
    }
    // `q` and `limit` are checked above as the catalog checks them, and it takes any filter;
    // what only the catalog can judge is the cursor, which is opaque and expires with the
    // query it was issued for. So its 400 to a request with a cursor is the client's to fix
    // (start again), not a failure of ours; any other 4xx stays a 502.
    let results: SearchResults =
        compose::required("search", state.catalog.get("/search").query(&query).fetch())
            .await
            .map_err(|error| {
                if query.cursor.is_some() {
                    error.client_caused("invalid_cursor", INVALID_CURSOR)
                } else {
                    error
                }
            })?;

    let ids: Vec<String> = results.items.iter().map(|p| p.id.clone()).collect();
    let skus: Vec<String> = results.items.iter().map(|p| p.sku.clone()).collect();
    let (ratings, stock) = tokio::join!(
        compose::optional("rating", async {
            if ids.is_empty() {
                return Ok(SummaryList { items: Vec::new() });
            }
            state
                .reviews
                .get("/summaries")
                .query(&[("ids", ids.join(","))])
                .fetch::<SummaryList>()
                .await
        }),
        compose::optional("stock", stock_by_sku(&state.inventory, skus)),
    );
    let mut degraded = Degraded::default();
    let ratings = degraded.take(ratings);
    let stock = degraded.take(stock);

    let items = results
        .items
        .into_iter()
        .map(|product| {
            let summary =
                ratings.as_ref().and_then(|r| r.items.iter().find(|s| s.product_id == product.id));
            let in_stock =
                stock.as_ref().map(|s| s.get(&product.sku).is_some_and(|l| l.total_available > 0));
            SearchHit {
                rating: summary.map(|s| round1(s.average)),
                review_count: summary.map(|s| s.count),
                in_stock,
                brand: product.brand.clone(),
                category: product.category.clone(),
                card: ProductCard::from(product),
            }
        })
        .collect();
    let view = SearchPage {
        query: q.to_owned(),
        total: results.total,
        next_cursor: results.next_cursor,
        items,
        facets: results.facets.into(),
        degraded: degraded.clone(),
    };
    Ok(Composed::new(view, degraded))
}
