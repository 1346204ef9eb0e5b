//! One module per page of the web shop, plus the batch calls they share.

pub mod orders;
pub mod product;
pub mod search;

use std::collections::HashMap;

use portico_contracts::inventory::{
    BatchGetStockRequest, StockLevel, inventory_client::InventoryClient,
};
use portico_edge::{
    EdgeError,
    upstream::{GrpcUpstream, HttpUpstream},
};

use crate::backend::{Product, ProductList};

/// Stock levels of many SKUs in one gRPC call, keyed by SKU.
pub async fn stock_by_sku(
    inventory: &GrpcUpstream,
    skus: Vec<String>,
) -> Result<HashMap<String, StockLevel>, EdgeError> {
    let response = inventory
        .call("BatchGetStock", BatchGetStockRequest { skus }, |channel, request| async move {
            InventoryClient::new(channel).batch_get_stock(request).await
        })
        .await?;
    Ok(response.items.into_iter().map(|s| (s.sku.clone(), s)).collect())
}

/// Products by id or SKU (`key` is `ids` or `skus`) in one catalog call, in the order given.
pub async fn products_by(
    catalog: &HttpUpstream,
    key: &str,
    values: &[String],
) -> Result<Vec<Product>, EdgeError> {
    if values.is_empty() {
        return Ok(Vec::new());
    }
    let list: ProductList =
        catalog.get("/products").query(&[(key, values.join(","))]).fetch().await?;
    Ok(list.items)
}
