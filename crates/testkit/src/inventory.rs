//! A mock of the gRPC inventory service on an ephemeral loopback port, with scripted stock and
//! failures, for gateway tests that must not depend on the sample services.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use portico_contracts::inventory::{
    BatchGetStockRequest, BatchGetStockResponse, GetStockRequest, StockLevel, WarehouseStock,
    inventory_server::{Inventory, InventoryServer},
};
use tokio::{net::TcpListener, task::JoinHandle};
use tonic::{Request, Response, Status};

/// What the mock answers.
#[derive(Clone, Debug, Default)]
pub struct Script {
    /// Units per SKU (all in warehouse `ams`); unknown SKUs are NOT_FOUND / listed as unknown.
    pub stock: HashMap<String, u32>,
    /// When set, every call fails with this status code.
    pub fail: Option<tonic::Code>,
    /// Added to every call.
    pub delay: Duration,
}

impl Script {
    /// A script that answers with these units per SKU (in warehouse `ams`) and never fails.
    pub fn with_stock(stock: &[(&str, u32)]) -> Self {
        Self {
            stock: stock.iter().map(|&(sku, n)| (sku.to_owned(), n)).collect(),
            ..Self::default()
        }
    }
}

#[derive(Debug)]
struct Mock(Arc<Script>);

impl Mock {
    async fn prelude(&self) -> Result<(), Status> {
        tokio::time::sleep(self.0.delay).await;
        match self.0.fail {
            Some(code) => Err(Status::new(code, "scripted failure")),
            None => Ok(()),
        }
    }

    fn level(&self, sku: &str) -> Option<StockLevel> {
        self.0.stock.get(sku).map(|&available| StockLevel {
            sku: sku.to_owned(),
            total_available: available,
            warehouses: vec![WarehouseStock { warehouse: "ams".into(), available }],
        })
    }
}

#[tonic::async_trait]
impl Inventory for Mock {
    async fn get_stock(
        &self,
        request: Request<GetStockRequest>,
    ) -> Result<Response<StockLevel>, Status> {
        self.prelude().await?;
        let sku = request.into_inner().sku;
        self.level(&sku).map(Response::new).ok_or_else(|| Status::not_found(sku))
    }

    async fn batch_get_stock(
        &self,
        request: Request<BatchGetStockRequest>,
    ) -> Result<Response<BatchGetStockResponse>, Status> {
        self.prelude().await?;
        let mut response = BatchGetStockResponse::default();
        for sku in request.into_inner().skus {
            match self.level(&sku) {
                Some(level) => response.items.push(level),
                None => response.unknown_skus.push(sku),
            }
        }
        Ok(Response::new(response))
    }
}

/// A running mock inventory, stopped when dropped.
#[derive(Debug)]
pub struct MockInventory {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MockInventory {
    /// Serves `script` on `127.0.0.1:0`.
    pub async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let service = InventoryServer::new(Mock(Arc::new(script)));
        let task = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        Self { addr, task }
    }

    /// Its base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for MockInventory {
    fn drop(&mut self) {
        self.task.abort();
    }
}
