//! The whole stack over real HTTP: every documented endpoint of the three gateways, the same
//! product seen through each, degraded responses, and the OpenAPI documents.

// Test helpers report a broken set-up by panicking with a message.
#![allow(clippy::expect_used)]

use portico::{
    gateways::Gateway,
    stack::{Options, Stack},
};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct Client {
    http: reqwest::Client,
    stack: Stack,
}

impl Client {
    async fn start(options: Options) -> Self {
        let stack = Stack::start(options).await.expect("the stack starts on ephemeral ports");
        Self { http: reqwest::Client::new(), stack }
    }

    fn url(&self, gateway: Gateway, path: &str) -> String {
        format!("http://{}{path}", self.stack.addr(gateway))
    }

    async fn get(&self, gateway: Gateway, path: &str) -> reqwest::Response {
        self.http.get(self.url(gateway, path)).send().await.expect("the gateway answers")
    }

    async fn json(&self, gateway: Gateway, path: &str) -> Value {
        let response = self.get(gateway, path).await;
        let status = response.status();
        let body = response.text().await.expect("a body");
        assert_eq!(status, StatusCode::OK, "GET {path} on {}: {body}", gateway.name());
        serde_json::from_str(&body).expect("JSON")
    }
}

#[tokio::test]
async fn every_gateway_serves_health_and_its_openapi_document() {
    let client = Client::start(Options::ephemeral()).await;
    for gateway in Gateway::ALL {
        assert_eq!(client.json(gateway, "/healthz").await["status"], "ok");
        assert_eq!(client.json(gateway, "/readyz").await["status"], "ready");
        let doc = client.json(gateway, "/openapi.json").await;
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{}", gateway.name());
        let response = client.get(gateway, "/no/such/route").await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        assert!(response.headers().contains_key("x-request-id"));
    }
    client.stack.shutdown().await;
}

#[tokio::test]
async fn the_same_product_through_three_gateways() {
    let client = Client::start(Options::ephemeral()).await;
    let home = client.json(Gateway::Mobile, "/v1/home").await;
    let featured = home["featured"].as_array().expect("featured cards");
    assert!(!featured.is_empty());
    assert_eq!(home["degraded"], json!([]));

    // The ids the home screen returns are the ones every product endpoint accepts.
    for card in featured {
        let id = card["id"].as_str().unwrap();
        let mobile = client.json(Gateway::Mobile, &format!("/v1/products/{id}")).await;
        assert_eq!(mobile["id"], id);
        assert_eq!(mobile["name"], card["name"]);
    }
    let id = featured[0]["id"].as_str().unwrap();
    let mobile =
        client.get(Gateway::Mobile, &format!("/v1/products/{id}")).await.bytes().await.unwrap();
    let web = client.get(Gateway::Web, &format!("/api/products/{id}")).await.bytes().await.unwrap();
    let (mobile_json, web_json): (Value, Value) =
        (serde_json::from_slice(&mobile).unwrap(), serde_json::from_slice(&web).unwrap());
    assert_eq!(web_json["product"]["id"], id);
    assert_eq!(web_json["product"]["name"], mobile_json["name"]);
    assert_eq!(web_json["product"]["price"]["formatted"], mobile_json["price"]);
    assert!(web_json["product"]["images"].as_array().unwrap().len() >= 4);
    assert!(web_json["reviews"]["items"].is_array());
    assert!(web_json["stock"]["warehouses"].as_array().unwrap().len() == 3);
    assert!(
        mobile.len() * 4 < web.len(),
        "mobile {} bytes vs web {} bytes",
        mobile.len(),
        web.len()
    );

    let sku = web_json["product"]["sku"].as_str().unwrap();
    let stock = client.json(Gateway::Partner, &format!("/partner/v1/stock?skus={sku}")).await;
    assert_eq!(stock["items"][0]["sku"], sku);
    assert_eq!(stock["items"][0]["available"], web_json["stock"]["total_available"]);
    client.stack.shutdown().await;
}

#[tokio::test]
async fn web_search_orders_and_pass_through() {
    let client = Client::start(Options::ephemeral()).await;
    let product = client.json(Gateway::Web, "/api/products/p-00042").await;
    let word =
        product["product"]["name"].as_str().unwrap().split_whitespace().last().unwrap().to_owned();

    let results = client.json(Gateway::Web, &format!("/api/search?q={word}")).await;
    assert!(results["total"].as_u64().unwrap() >= 1, "{word}: {results}");
    let total_by_category: u64 = results["facets"]["category"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total_by_category, results["total"].as_u64().unwrap());
    assert!(results["items"][0]["price"]["formatted"].is_string());

    let history = client.json(Gateway::Web, "/api/orders?customer=alice").await;
    let orders = history["orders"].as_array().unwrap();
    assert!(!orders.is_empty(), "the demo starts with orders for alice");
    assert!(orders[0]["lines"][0]["product"]["name"].is_string());

    // The declarative pass-through route of web.toml: the raw catalog API, streamed.
    let raw = client.json(Gateway::Web, "/api/catalog/products/p-00042").await;
    assert_eq!(raw["id"], "p-00042");
    assert!(raw["description"].is_string());
    client.stack.shutdown().await;
}

#[tokio::test]
async fn partner_feed_stock_and_orders() {
    let client = Client::start(Options::ephemeral()).await;
    let first = client.json(Gateway::Partner, "/partner/v1/products?limit=3").await;
    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    let cursor = first["next_cursor"].as_str().expect("more pages");
    let second = client
        .json(Gateway::Partner, &format!("/partner/v1/products?limit=3&cursor={cursor}"))
        .await;
    assert_ne!(first["items"][0]["id"], second["items"][0]["id"]);
    assert!(first["items"][0]["price"]["amount_minor"].is_i64());

    // Order the first in-stock product of the feed.
    let item = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["items"].as_array().unwrap())
        .find(|i| i["available"].as_u64().unwrap_or(0) > 0)
        .expect("an item in stock");
    let sku = item["sku"].as_str().unwrap();
    let placed = client
        .http
        .post(client.url(Gateway::Partner, "/partner/v1/orders"))
        .header("x-partner-id", "acme")
        .json(&json!({"reference": "PO-1", "lines": [{"sku": sku, "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), StatusCode::CREATED);
    let location = placed.headers()["location"].to_str().unwrap().to_owned();
    let order: Value = placed.json().await.unwrap();
    assert_eq!(order["lines"][0]["unit_price"], item["price"], "prices come from the catalog");
    assert_eq!(location, format!("/partner/v1/orders/{}", order["id"].as_str().unwrap()));

    let fetched = client
        .http
        .get(client.url(Gateway::Partner, &location))
        .header("x-partner-id", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(fetched.status(), StatusCode::OK);
    assert_eq!(fetched.json::<Value>().await.unwrap()["id"], order["id"]);
    let other = client
        .http
        .get(client.url(Gateway::Partner, &location))
        .header("x-partner-id", "globex")
        .send()
        .await
        .unwrap();
    assert_eq!(
        other.status(),
        StatusCode::NOT_FOUND,
        "another partner's order does not exist for globex"
    );
    client.stack.shutdown().await;
}

#[tokio::test]
async fn a_failing_recommendations_service_degrades_the_web_page() {
    let mut options = Options::ephemeral();
    options.services.recommendations.error_rate = 1.0;
    let client = Client::start(options).await;
    let response = client.get(Gateway::Web, "/api/products/p-00042").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["portico-degraded"], "recommendations");
    let page: Value = response.json().await.unwrap();
    assert_eq!(page["degraded"], json!(["recommendations"]));
    assert_eq!(page["product"]["id"], "p-00042");
    client.stack.shutdown().await;
}

#[tokio::test]
async fn a_slow_recommendations_service_is_cut_off_at_its_deadline() {
    let mut options = Options::ephemeral();
    options.services.recommendations.latency = std::time::Duration::from_secs(5);
    let client = Client::start(options).await;
    let started = std::time::Instant::now();
    let response = client.get(Gateway::Web, "/api/products/p-00042").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["portico-degraded"], "recommendations");
    // web.toml gives recommendations 250 ms; the page must not wait the 5 s.
    assert!(started.elapsed() < std::time::Duration::from_secs(2), "{:?}", started.elapsed());
    client.stack.shutdown().await;
}

#[test]
fn checked_in_openapi_documents_match_the_gateways() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../openapi");
    for gateway in Gateway::ALL {
        let path = format!("{dir}/{}.json", gateway.name());
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == format!("{}\n", gateway.openapi_json()),
            "{path} is out of date: run `cargo run -- openapi` and commit the result"
        );
    }
}

#[tokio::test]
async fn every_example_config_in_the_repo_is_valid() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/config");
    for gateway in Gateway::ALL {
        let path = format!("{dir}/{}.toml", gateway.name());
        let config = portico_edge_config(&path);
        // Building the app resolves every upstream the gateway's code calls.
        if let Err(e) = gateway.app(&config) {
            panic!("{path}: {e}");
        }
    }
}

fn portico_edge_config(path: &str) -> portico::gateways::GatewayConfig {
    portico::gateways::GatewayConfig::from_file(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}
