//! Injected faults over real sockets: an outage refuses or swallows connections, HTTP and gRPC
//! services fail and slow down as configured, and the healthy services are untouched.

// Helpers outside `#[test]` fns panic on failure too: a failed expectation is a failed test.
#![allow(clippy::expect_used)]

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use portico_contracts::inventory::GetStockRequest;
use portico_contracts::inventory::inventory_client::InventoryClient;
use portico_services::faults::parse_fault;
use portico_services::{Config, Services};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The ephemeral config with these `SERVICE=SPEC` faults.
fn config(specs: &[&str]) -> Config {
    let mut config = Config::ephemeral();
    for spec in specs {
        let (service, faults) = parse_fault(spec).expect("spec");
        config.faults.insert(service, faults);
    }
    config
}

#[tokio::test]
async fn down_refuses_connections_and_leaves_the_others_up() {
    let services = Services::start(config(&["reviews=down"])).await.expect("start");
    let refused = TcpStream::connect(services.reviews).await.expect_err("reviews is down");
    assert_eq!(refused.kind(), ErrorKind::ConnectionRefused);

    let response = reqwest::get(format!("http://{}/healthz", services.catalog)).await.expect("up");
    assert_eq!(response.status().as_u16(), 200);
    services.shutdown().await;
}

#[tokio::test]
async fn hang_accepts_and_never_answers_and_still_shuts_down() {
    let services = Services::start(config(&["catalog=hang"])).await.expect("start");
    let mut socket = TcpStream::connect(services.catalog).await.expect("accepted");
    socket.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n").await.expect("write");
    let mut buffer = [0u8; 64];
    // Asserting an absence needs some wait; 300 ms is far longer than a loopback answer takes.
    let read = tokio::time::timeout(Duration::from_millis(300), socket.read(&mut buffer)).await;
    assert!(read.is_err(), "a hanging service answered: {read:?}");
    // The held connection does not hold up shutdown.
    tokio::time::timeout(Duration::from_secs(10), services.shutdown()).await.expect("shut down");
}

#[tokio::test]
async fn http_errors_are_503_problems_over_the_wire() {
    let services = Services::start(config(&["orders=errors:100%"])).await.expect("start");
    let response = reqwest::get(format!("http://{}/orders?customer_id=alice", services.orders))
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.headers()["content-type"], "application/problem+json");
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["code"], "unavailable");
    services.shutdown().await;
}

#[tokio::test]
async fn grpc_errors_are_unavailable() {
    let services = Services::start(config(&["inventory=errors:100%"])).await.expect("start");
    let mut client =
        InventoryClient::connect(format!("http://{}", services.inventory)).await.expect("connect");
    let status = client
        .get_stock(GetStockRequest { sku: "SKU-00001".into() })
        .await
        .expect_err("injected failure");
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert!(status.message().contains("inventory"), "{}", status.message());
    services.shutdown().await;
}

#[tokio::test]
async fn grpc_half_fails_deterministically() {
    let services = Services::start(config(&["inventory=errors:50%"])).await.expect("start");
    let mut client =
        InventoryClient::connect(format!("http://{}", services.inventory)).await.expect("connect");
    let mut failed = 0;
    for _ in 0..200 {
        let answer = client.get_stock(GetStockRequest { sku: "SKU-00001".into() }).await;
        if let Err(status) = answer {
            assert_eq!(status.code(), tonic::Code::Unavailable);
            failed += 1;
        }
    }
    assert!((80..=120).contains(&failed), "{failed} of 200 failed");
    services.shutdown().await;
}

#[tokio::test]
async fn grpc_latency_delays_the_answer() {
    let latency = Duration::from_millis(200);
    let services = Services::start(config(&["inventory=latency:200ms"])).await.expect("start");
    let mut client =
        InventoryClient::connect(format!("http://{}", services.inventory)).await.expect("connect");
    let started = Instant::now();
    let level = client
        .get_stock(GetStockRequest { sku: "SKU-00001".into() })
        .await
        .expect("slow but answered")
        .into_inner();
    // "Not before": a lower bound only, so a slow machine cannot make it flaky.
    assert!(started.elapsed() >= latency, "{:?}", started.elapsed());
    assert_eq!(level.sku, "SKU-00001");
    services.shutdown().await;
}

#[tokio::test]
async fn a_service_stops_at_the_deadline_its_caller_sends() {
    let services = Services::start(config(&["recommendations=latency:5s"])).await.expect("start");
    let started = Instant::now();
    let response = reqwest::Client::new()
        .get(format!("http://{}/recommendations/p-00042", services.recommendations))
        .header("x-portico-timeout-ms", "100")
        .send()
        .await
        .expect("answered");
    assert_eq!(response.status().as_u16(), 504);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["code"], "deadline_exceeded");
    // Far sooner than the injected 5 s: the service gave up when its caller did.
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    services.shutdown().await;
}
