//! One module per screen of the mobile app, plus the backend calls they share.

pub mod home;
pub mod product;

use portico_contracts::inventory::{BatchGetStockRequest, inventory_client::InventoryClient};
use portico_edge::{EdgeError, upstream::GrpcUpstream};
use serde::Deserialize;

use crate::backend::StockBySku;

/// The `?fields=` parameter every mobile endpoint takes.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FieldsQuery {
    /// Comma-separated fields to keep, e.g. `featured.id,featured.price`.
    pub fields: Option<String>,
}

/// Stock totals of many SKUs in one gRPC call: a screen never costs one call per product.
pub async fn stock_by_sku(
    inventory: &GrpcUpstream,
    skus: Vec<String>,
) -> Result<StockBySku, EdgeError> {
    let response = inventory
        .call("BatchGetStock", BatchGetStockRequest { skus }, |channel, request| async move {
            InventoryClient::new(channel).batch_get_stock(request).await
        })
        .await?;
    Ok(response.items.into_iter().map(|s| (s.sku, s.total_available)).collect())
}
