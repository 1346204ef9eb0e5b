//! The inventory service (gRPC, `portico.inventory.v1`): stock per SKU and warehouse, one SKU or
//! a batch at a time, from the generated shop.

use std::sync::Arc;

use portico_contracts::inventory::inventory_server::Inventory;
use portico_contracts::inventory::{
    BatchGetStockRequest, BatchGetStockResponse, GetStockRequest, StockLevel, WarehouseStock,
};
use tonic::{Request, Response, Status};

use crate::data::{Shop, WAREHOUSES};

/// The most SKUs one `BatchGetStock` call may ask for.
pub const MAX_BATCH: usize = 500;

/// The `Inventory` gRPC service over the shared shop; wrap it in
/// `portico_contracts::inventory::inventory_server::InventoryServer` to serve it.
#[derive(Debug, Clone)]
pub struct InventoryService {
    shop: Arc<Shop>,
}

impl InventoryService {
    pub fn new(shop: Arc<Shop>) -> Self {
        Self { shop }
    }

    fn level(&self, sku: &str) -> Option<StockLevel> {
        let stock = self.shop.stock(sku)?;
        Some(StockLevel {
            sku: sku.to_owned(),
            total_available: stock.iter().sum(),
            warehouses: WAREHOUSES
                .iter()
                .zip(stock)
                .map(|(warehouse, available)| WarehouseStock {
                    warehouse: (*warehouse).to_owned(),
                    available,
                })
                .collect(),
        })
    }
}

#[tonic::async_trait]
impl Inventory for InventoryService {
    async fn get_stock(
        &self,
        request: Request<GetStockRequest>,
    ) -> Result<Response<StockLevel>, Status> {
        let sku = request.into_inner().sku;
        self.level(&sku)
            .map(Response::new)
            .ok_or_else(|| Status::not_found(format!("unknown sku {sku:?}")))
    }

    async fn batch_get_stock(
        &self,
        request: Request<BatchGetStockRequest>,
    ) -> Result<Response<BatchGetStockResponse>, Status> {
        let skus = request.into_inner().skus;
        if skus.len() > MAX_BATCH {
            return Err(Status::invalid_argument(format!(
                "{} skus requested, at most {MAX_BATCH} per call",
                skus.len()
            )));
        }
        let mut response = BatchGetStockResponse::default();
        for sku in skus {
            match self.level(&sku) {
                Some(level) => response.items.push(level),
                None => response.unknown_skus.push(sku),
            }
        }
        Ok(Response::new(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DemoParams;

    fn service() -> InventoryService {
        InventoryService::new(Arc::new(Shop::generate(&DemoParams {
            products: 100,
            ..DemoParams::default()
        })))
    }

    #[tokio::test]
    async fn stock_has_three_warehouses_and_a_total() {
        let level = service()
            .get_stock(Request::new(GetStockRequest { sku: "SKU-00001".into() }))
            .await
            .expect("known sku")
            .into_inner();
        let names: Vec<&str> = level.warehouses.iter().map(|w| w.warehouse.as_str()).collect();
        assert_eq!(names, WAREHOUSES);
        let sum: u32 = level.warehouses.iter().map(|w| w.available).sum();
        assert_eq!(level.total_available, sum);
    }

    #[tokio::test]
    async fn batch_lists_unknown_skus() {
        let response = service()
            .batch_get_stock(Request::new(BatchGetStockRequest {
                skus: vec!["SKU-00002".into(), "SKU-99999".into(), "SKU-00001".into()],
            }))
            .await
            .expect("batch")
            .into_inner();
        let skus: Vec<&str> = response.items.iter().map(|l| l.sku.as_str()).collect();
        assert_eq!(skus, ["SKU-00002", "SKU-00001"]);
        assert_eq!(response.unknown_skus, ["SKU-99999"]);
    }
}
