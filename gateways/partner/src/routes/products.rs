//! `GET /partner/v1/products`: the product feed, one cursor-paginated page at a time, each item
//! with its stock. The catalog page is required; stock is optional (one batch call for the
//! page; without it items lack `available` and the page says `degraded: ["stock"]`).

use std::{collections::HashMap, sync::Arc};

use axum::extract::{Query, State};
use portico_edge::{Composed, Degraded, EdgeError, compose};
use serde::Deserialize;

use super::stock_levels;
use crate::{
    AppState,
    backend::ProductPage,
    validate,
    view::{Feed, FeedItem},
};

/// The feed's query. Strings, so a bad value gets this API's own problem naming it.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedQuery {
    /// Items per page, 1 to 100 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    pub limit: Option<String>,
    /// The `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
}

/// One page of the product feed.
#[utoipa::path(get, path = "/partner/v1/products", tag = "partner", params(FeedQuery),
    security(("api_key" = ["catalog:read"]), ("bearer" = ["catalog:read"])),
    responses(
        (status = 200, description = "One page of products; `degraded` names missing parts \
(also in the `portico-degraded` header)", body = Feed),
        (status = 400, description = "`limit` out of range (`invalid_parameter`) or a cursor \
this API did not issue (`invalid_cursor`)", body = portico_edge::error::Problem,
         content_type = "application/problem+json"),
        portico_edge::openapi::PartnerUnauthorized,
        portico_edge::openapi::Forbidden,
        portico_edge::openapi::RateLimited,
        portico_edge::openapi::UpstreamFailure,
        portico_edge::openapi::Unavailable,
        portico_edge::openapi::UpstreamTimeout,
    ))]
pub async fn products(
    State(state): State<Arc<AppState>>,
    Query(query): Query<FeedQuery>,
) -> Result<Composed<Feed>, EdgeError> {
    let limit = validate::limit(query.limit.as_deref())?.to_string();
    let cursor = validate::cursor(query.cursor.as_deref())?;

    let mut params = vec![("limit", limit.as_str())];
    params.extend(cursor.map(|c| ("cursor", c)));
    let page: ProductPage =
        compose::required("products", state.catalog.get("/products").query(&params).fetch())
            .await
            .map_err(|error| {
                // Our checks mirror the catalog's for `limit`, so its 400 to a request with a
                // cursor means the cursor: the partner's mistake to fix, not a failure of ours.
                if cursor.is_some() {
                    error.client_caused("invalid_cursor", validate::INVALID_CURSOR)
                } else {
                    error
                }
            })?;

    // Stock depends on the page's SKUs, so it follows the catalog call, as one batch.
    let mut degraded = Degraded::default();
    let stock: Option<HashMap<String, u32>> = if page.items.is_empty() {
        Some(HashMap::new())
    } else {
        let skus = page.items.iter().map(|p| p.sku.clone()).collect();
        let levels = compose::optional("stock", stock_levels(&state.inventory, skus)).await;
        degraded
            .take(levels)
            .map(|levels| levels.items.into_iter().map(|l| (l.sku, l.total_available)).collect())
    };
    let items = page
        .items
        .into_iter()
        .map(|product| {
            // A SKU the inventory does not know has no stock to sell.
            let available = stock.as_ref().map(|s| s.get(&product.sku).copied().unwrap_or(0));
            FeedItem::new(product, available)
        })
        .collect();
    let feed = Feed { items, next_cursor: page.next_cursor, degraded: degraded.clone() };
    Ok(Composed::new(feed, degraded))
}
