//! End-to-end checks of `Services`: every service bound on an ephemeral port, spoken to over
//! real sockets with the same clients the gateways use.

// Helpers outside `#[test]` fns panic on failure too: a failed expectation is a failed test.
#![allow(clippy::expect_used)]

use std::net::SocketAddr;

use portico_contracts::inventory::inventory_client::InventoryClient;
use portico_contracts::inventory::{BatchGetStockRequest, GetStockRequest};
use portico_services::{Config, Services};
use serde_json::{Value, json};

async fn get_json(client: &reqwest::Client, addr: SocketAddr, path: &str) -> (u16, Value) {
    let response = client.get(format!("http://{addr}{path}")).send().await.expect("request");
    let status = response.status().as_u16();
    (status, response.json().await.expect("json body"))
}

#[tokio::test]
async fn start_serve_and_shut_down() {
    let services = Services::start(Config::ephemeral()).await.expect("start");
    let client = reqwest::Client::new();
    for addr in [
        services.catalog,
        services.reviews,
        services.recommendations,
        services.orders,
        services.identity,
    ] {
        assert_ne!(addr.port(), 0);
        let (status, body) = get_json(&client, addr, "/healthz").await;
        assert_eq!(status, 200, "{addr}");
        assert_eq!(body, json!({"status": "ok"}));
    }

    let (status, product) = get_json(&client, services.catalog, "/products/p-00042").await;
    assert_eq!(status, 200);
    assert_eq!(product["sku"], "SKU-00042");
    let (status, orders) = get_json(&client, services.orders, "/orders?customer_id=alice").await;
    assert_eq!(status, 200);
    assert_eq!(orders["items"].as_array().map(Vec::len), Some(3));
    let (status, missing) = get_json(&client, services.reviews, "/nope").await;
    assert_eq!(status, 404);
    assert_eq!(missing["code"], "not_found");

    drop(client);
    services.shutdown().await;
}

#[tokio::test]
async fn identity_names_its_bound_address() {
    let services = Services::start(Config::ephemeral()).await.expect("start");
    let client = reqwest::Client::new();
    assert_eq!(services.issuer(), format!("http://{}", services.identity));
    let (_, discovery) =
        get_json(&client, services.identity, "/.well-known/openid-configuration").await;
    assert_eq!(discovery["issuer"], services.issuer());

    let response = client
        .post(format!("http://{}/oauth/token", services.identity))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&client_id=acme&client_secret=acme-secret")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 200);
    let token: Value = response.json().await.expect("json");
    let (_, jwks) = get_json(&client, services.identity, "/.well-known/jwks.json").await;
    let jwk = &jwks["keys"][0];
    let key = jsonwebtoken::DecodingKey::from_ec_components(
        jwk["x"].as_str().expect("x"),
        jwk["y"].as_str().expect("y"),
    )
    .expect("key");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_audience(&["partner"]);
    validation.set_issuer(&[services.issuer()]);
    let claims = jsonwebtoken::decode::<Value>(
        token["access_token"].as_str().expect("token"),
        &key,
        &validation,
    )
    .expect("verifies")
    .claims;
    assert_eq!(claims["sub"], "partner:acme");
    services.shutdown().await;
}

#[tokio::test]
async fn inventory_over_grpc() {
    let services = Services::start(Config::ephemeral()).await.expect("start");
    let mut client =
        InventoryClient::connect(format!("http://{}", services.inventory)).await.expect("connect");

    let level = client
        .get_stock(GetStockRequest { sku: "SKU-00001".into() })
        .await
        .expect("known sku")
        .into_inner();
    assert_eq!(level.sku, "SKU-00001");
    assert_eq!(level.warehouses.len(), 3);

    let unknown = client
        .get_stock(GetStockRequest { sku: "SKU-99999".into() })
        .await
        .expect_err("unknown sku");
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let skus: Vec<String> = (1..=500).map(|n| format!("SKU-{n:05}")).collect();
    let batch =
        client.batch_get_stock(BatchGetStockRequest { skus }).await.expect("500 skus").into_inner();
    assert_eq!(batch.items.len(), 500);
    assert!(batch.unknown_skus.is_empty());
    let sold_out = batch.items.iter().filter(|level| level.total_available == 0).count();
    assert!((20..=80).contains(&sold_out), "{sold_out} of 500 sold out");

    let mixed = client
        .batch_get_stock(BatchGetStockRequest { skus: vec!["SKU-00002".into(), "nope".into()] })
        .await
        .expect("batch")
        .into_inner();
    assert_eq!(mixed.items.len(), 1);
    assert_eq!(mixed.unknown_skus, ["nope"]);

    let too_many: Vec<String> = (1..=501).map(|n| format!("SKU-{n:05}")).collect();
    let rejected = client
        .batch_get_stock(BatchGetStockRequest { skus: too_many })
        .await
        .expect_err("over the limit");
    assert_eq!(rejected.code(), tonic::Code::InvalidArgument);

    drop(client);
    services.shutdown().await;
}

#[tokio::test]
async fn a_taken_port_is_a_clear_error() {
    let first = Services::start(Config::ephemeral()).await.expect("start");
    let mut config = Config::ephemeral();
    config.ports.orders = first.orders.port();
    let error = Services::start(config).await.expect_err("port is taken");
    let message = error.to_string();
    assert!(message.contains("orders"), "{message}");
    assert!(message.contains(&first.orders.to_string()), "{message}");
    first.shutdown().await;
}

#[tokio::test]
async fn dropping_services_stops_the_servers() {
    let services = Services::start(Config::ephemeral()).await.expect("start");
    let addr = services.catalog;
    drop(services);
    // Aborted tasks drop their listeners; poll with a deadline rather than sleeping blindly.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{addr} still accepts");
        tokio::task::yield_now().await;
    }
}
