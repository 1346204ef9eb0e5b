//! The whole stack over real HTTP: every documented endpoint of the three gateways, the same
//! product seen through each, degraded responses, and the OpenAPI documents.

// Test helpers report a broken set-up by panicking with a message.
#![allow(clippy::expect_used)]

use portico::{
    credentials::{DEMO_API_KEYS, partner_token, user_token},
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

    /// A GET with one extra header (credentials).
    async fn get_with(
        &self,
        gateway: Gateway,
        path: &str,
        header: (&str, &str),
    ) -> reqwest::Response {
        let request = self.http.get(self.url(gateway, path)).header(header.0, header.1);
        request.send().await.expect("the gateway answers")
    }

    fn identity(&self) -> String {
        format!("http://{}", self.stack.services().identity)
    }

    async fn bearer(&self, user: &str, audience: &str) -> String {
        let token = user_token(&self.identity(), user, audience).await.expect("a user token");
        format!("Bearer {token}")
    }

    async fn json(&self, gateway: Gateway, path: &str) -> Value {
        Self::ok_json(gateway, path, self.get(gateway, path).await).await
    }

    async fn json_with(&self, gateway: Gateway, path: &str, header: (&str, &str)) -> Value {
        Self::ok_json(gateway, path, self.get_with(gateway, path, header).await).await
    }

    async fn ok_json(gateway: Gateway, path: &str, response: reqwest::Response) -> Value {
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
    let stock = client
        .json_with(Gateway::Partner, &format!("/partner/v1/stock?skus={sku}"), ACME_KEY)
        .await;
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

    let alice = client.bearer("alice", "web").await;
    let history = client.json_with(Gateway::Web, "/api/orders", ("authorization", &alice)).await;
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
    let first = client.json_with(Gateway::Partner, "/partner/v1/products?limit=3", ACME_KEY).await;
    assert_eq!(first["items"].as_array().unwrap().len(), 3);
    let cursor = first["next_cursor"].as_str().expect("more pages");
    let second = client
        .json_with(
            Gateway::Partner,
            &format!("/partner/v1/products?limit=3&cursor={cursor}"),
            ACME_KEY,
        )
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
        .header(ACME_KEY.0, ACME_KEY.1)
        .json(&json!({"reference": "PO-1", "lines": [{"sku": sku, "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(placed.status(), StatusCode::CREATED);
    let location = placed.headers()["location"].to_str().unwrap().to_owned();
    let order: Value = placed.json().await.unwrap();
    assert_eq!(order["lines"][0]["unit_price"], item["price"], "prices come from the catalog");
    assert_eq!(location, format!("/partner/v1/orders/{}", order["id"].as_str().unwrap()));

    // acme's other key (a rotation in progress) sees the same order.
    let fetched =
        client.get_with(Gateway::Partner, &location, ("x-api-key", DEMO_API_KEYS[0].2)).await;
    assert_eq!(fetched.status(), StatusCode::OK);
    assert_eq!(fetched.json::<Value>().await.unwrap()["id"], order["id"]);
    let globex = partner_token(&client.identity(), "globex", None, None).await.unwrap();
    let other = client
        .get_with(Gateway::Partner, &location, ("authorization", &format!("Bearer {globex}")))
        .await;
    assert_eq!(
        other.status(),
        StatusCode::NOT_FOUND,
        "another partner's order does not exist for globex"
    );
    client.stack.shutdown().await;
}

/// acme's current demo API key, as a header.
const ACME_KEY: (&str, &str) = ("x-api-key", DEMO_API_KEYS[1].2);

#[tokio::test]
async fn callers_are_known_and_see_only_what_is_theirs() {
    let client = Client::start(Options::ephemeral()).await;
    let alice = client.bearer("alice", "web").await;
    let bob = client.bearer("bob", "web").await;

    // Each user sees exactly their own orders; another's order does not exist for them.
    let mine = client.json_with(Gateway::Web, "/api/orders", ("authorization", &alice)).await;
    let mine: Vec<&str> =
        mine["orders"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap()).collect();
    let theirs = client.json_with(Gateway::Web, "/api/orders", ("authorization", &bob)).await;
    let theirs: Vec<&str> =
        theirs["orders"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert!(!mine.is_empty() && !theirs.is_empty());
    assert!(mine.iter().all(|id| !theirs.contains(id)), "{mine:?} / {theirs:?}");
    let own = client
        .get_with(Gateway::Web, &format!("/api/orders/{}", mine[0]), ("authorization", &alice))
        .await;
    assert_eq!(own.status(), StatusCode::OK);
    let foreign = client
        .get_with(Gateway::Web, &format!("/api/orders/{}", theirs[0]), ("authorization", &alice))
        .await;
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
    let missing =
        client.get_with(Gateway::Web, "/api/orders/o-999999", ("authorization", &alice)).await;
    let (foreign, missing): (Value, Value) =
        (foreign.json().await.unwrap(), missing.json().await.unwrap());
    assert_eq!(foreign["code"], missing["code"], "a foreign order looks like a missing one");

    // No token: 401 with the RFC 6750 challenge. A token for another gateway: refused.
    let anonymous = client.get(Gateway::Web, "/api/orders").await;
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(anonymous.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    let mobile = client.bearer("alice", "mobile").await;
    let wrong_audience =
        client.get_with(Gateway::Web, "/api/orders", ("authorization", &mobile)).await;
    assert_eq!(wrong_audience.status(), StatusCode::UNAUTHORIZED);

    // Partners need credentials everywhere but health and the OpenAPI document.
    let bare = client.get(Gateway::Partner, "/partner/v1/products?limit=1").await;
    assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(client.get(Gateway::Partner, "/openapi.json").await.status(), StatusCode::OK);
    let bogus =
        client.get_with(Gateway::Partner, "/partner/v1/products", ("x-api-key", "pk_nope")).await;
    assert_eq!(bogus.status(), StatusCode::UNAUTHORIZED);

    // globex is read-only: it may read the feed, not place orders.
    let globex = partner_token(&client.identity(), "globex", None, None).await.unwrap();
    let globex = format!("Bearer {globex}");
    let feed = client
        .get_with(Gateway::Partner, "/partner/v1/products?limit=1", ("authorization", &globex))
        .await;
    assert_eq!(feed.status(), StatusCode::OK);
    let order = client
        .http
        .post(client.url(Gateway::Partner, "/partner/v1/orders"))
        .header("authorization", &globex)
        .json(&json!({"reference": "PO-9", "lines": [{"sku": "SKU-00042", "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(order.status(), StatusCode::FORBIDDEN);
    assert_eq!(order.headers()["content-type"], "application/problem+json");

    // Every refusal is counted by reason, and no credential shows up in the metrics.
    let metrics = client.get(Gateway::Web, "/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("portico_auth_failures_total{gateway=\"web\",reason=\"missing\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("portico_auth_failures_total{gateway=\"partner\",reason=\"forbidden\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains("pk_"));
    client.stack.shutdown().await;
}

#[tokio::test]
async fn a_failing_recommendations_service_degrades_the_web_page() {
    let mut options = Options::ephemeral();
    options.services.faults.insert(
        portico_services::ServiceName::Recommendations,
        portico_services::Faults { error_rate: 1.0, ..Default::default() },
    );
    let client = Client::start(options).await;
    let response = client.get(Gateway::Web, "/api/products/p-00042").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["portico-degraded"], "recommendations");
    let page: Value = response.json().await.unwrap();
    assert_eq!(page["degraded"], json!(["recommendations"]));
    assert_eq!(page["product"]["id"], "p-00042");

    // Every call fails: the endpoint's breaker opens and later pages skip the call (fail fast),
    // still whole but for recommendations. The metrics show it.
    for _ in 0..10 {
        let response = client.get(Gateway::Web, "/api/products/p-00042").await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["portico-degraded"], "recommendations");
    }
    let metrics = client.get(Gateway::Web, "/metrics").await.text().await.unwrap();
    // Other tests' stacks share the process's recorder: one of the web gateways' recommendations
    // endpoints (this test's) is open.
    assert!(
        metrics.lines().any(|l| l.starts_with("portico_upstream_breaker_state{")
            && l.contains("gateway=\"web\"")
            && l.contains("upstream=\"recommendations\"")
            && l.ends_with(" 2")),
        "no open breaker in\n{metrics}"
    );
    assert!(metrics.lines().any(|l| l.starts_with("portico_upstream_errors_total{")
        && l.contains("gateway=\"web\"")
        && l.contains("kind=\"circuit_open\"")
        && l.contains("upstream=\"recommendations\"")));
    client.stack.shutdown().await;
}

#[tokio::test]
async fn a_slow_recommendations_service_is_cut_off_at_its_deadline() {
    let mut options = Options::ephemeral();
    options.services.faults.insert(
        portico_services::ServiceName::Recommendations,
        portico_services::Faults {
            latency: std::time::Duration::from_secs(5),
            ..Default::default()
        },
    );
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
