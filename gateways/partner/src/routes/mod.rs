//! One module per use case of the partner API, plus the backend calls they share.

pub mod orders;
pub mod products;
pub mod stock;
pub mod usage;

use portico_contracts::inventory::{
    BatchGetStockRequest, BatchGetStockResponse, inventory_client::InventoryClient,
};
use portico_edge::{EdgeError, upstream::GrpcUpstream};

/// Stock of many SKUs in one gRPC call: a page or an order never costs one call per SKU.
pub async fn stock_levels(
    inventory: &GrpcUpstream,
    skus: Vec<String>,
) -> Result<BatchGetStockResponse, EdgeError> {
    inventory
        .call("BatchGetStock", BatchGetStockRequest { skus }, |channel, request| async move {
            InventoryClient::new(channel).batch_get_stock(request).await
        })
        .await
}
