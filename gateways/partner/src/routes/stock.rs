//! `GET /partner/v1/stock?skus=`: current stock of up to 100 SKUs, in total and per warehouse,
//! from one inventory batch call (required: stock is the whole answer).

use std::sync::Arc;

use axum::{
    Json,
    extract::{Query, State},
};
use portico_edge::{EdgeError, compose, params};
use serde::Deserialize;

use super::stock_levels;
use crate::{
    AppState,
    view::{StockItem, StockReport},
};

/// The most SKUs one request may name.
const MAX_SKUS: usize = 100;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StockQuery {
    /// Comma-separated SKUs, at most 100, e.g. `SKU-00001,SKU-00002`.
    pub skus: Option<String>,
}

/// Stock by SKU.
#[utoipa::path(get, path = "/partner/v1/stock", tag = "partner", params(StockQuery),
    security(("api_key" = ["stock:read"]), ("bearer" = ["stock:read"])),
    responses(
        (status = 200, description = "Stock of the known SKUs; unknown ones are listed", body = StockReport),
        (status = 400, description = "No SKUs, more than 100, or a malformed one", body = portico_edge::error::Problem,
         content_type = "application/problem+json"),
        portico_edge::openapi::PartnerUnauthorized,
        portico_edge::openapi::Forbidden,
        portico_edge::openapi::RateLimited,
        portico_edge::openapi::UpstreamFailure,
        portico_edge::openapi::Unavailable,
        portico_edge::openapi::UpstreamTimeout,
    ))]
pub async fn stock(
    State(state): State<Arc<AppState>>,
    Query(query): Query<StockQuery>,
) -> Result<Json<StockReport>, EdgeError> {
    let skus = params::id_list("skus", query.skus.as_deref().unwrap_or_default(), MAX_SKUS)?;
    let mut levels = compose::required(
        "stock",
        stock_levels(&state.inventory, skus.iter().map(|&s| s.to_owned()).collect()),
    )
    .await?;

    // In the order asked for, whatever order the inventory answers in; a SKU the inventory
    // left out of its answer is as unknown as one it listed as such.
    let mut report =
        StockReport { items: Vec::with_capacity(skus.len()), unknown_skus: Vec::new() };
    for sku in skus {
        match levels.items.iter().position(|l| l.sku == sku) {
            Some(i) => {
                let level = levels.items.swap_remove(i);
                report.items.push(StockItem {
                    sku: level.sku,
                    available: level.total_available,
                    warehouses: level
                        .warehouses
                        .into_iter()
                        .map(|w| (w.warehouse, w.available))
                        .collect(),
                });
            }
            None => report.unknown_skus.push(sku.to_owned()),
        }
    }
    Ok(Json(report))
}
