//! The web gateway driven in-process against real mock backends on loopback.

use std::collections::HashMap;

use axum::{
    Json, Router,
    body::Body,
    extract::{Path, Query},
    http::{Request, StatusCode},
    routing::get,
};
use portico_edge::GatewayConfig;
use portico_testkit::{
    MockServer, call, fixtures, gateway_toml, get as get_req, hanging_server,
    inventory::{MockInventory, Script},
    refused_url,
};
use serde_json::{Value, json};

fn number(id: &str) -> Option<u32> {
    id.trim_start_matches("p-")
        .trim_start_matches("SKU-")
        .parse()
        .ok()
        .filter(|n| (1..=5).contains(n))
}

async fn catalog() -> MockServer {
    async fn one(Path(id): Path<String>) -> Result<Json<Value>, StatusCode> {
        number(&id)
            .filter(|_| id.starts_with("p-"))
            .map(|n| Json(fixtures::product(n)))
            .ok_or(StatusCode::NOT_FOUND)
    }
    async fn list(Query(q): Query<HashMap<String, String>>) -> Json<Value> {
        let keys = q.get("ids").or_else(|| q.get("skus")).cloned().unwrap_or_default();
        let items: Vec<Value> = keys.split(',').filter_map(number).map(fixtures::product).collect();
        Json(json!({"items": items, "next_cursor": null, "total": items.len()}))
    }
    async fn search(Query(q): Query<HashMap<String, String>>) -> Json<Value> {
        assert_eq!(q.get("q").map(String::as_str), Some("jacket"), "the query is passed on");
        Json(json!({
            "items": [fixtures::product(1), fixtures::product(2)],
            "next_cursor": "Mg", "total": 7,
            "facets": {"category": [{"value": "outdoor", "count": 7}],
                       "brand": [{"value": "Northwind", "count": 7}],
                       "price_band": [{"value": "0-25", "count": 7}]},
        }))
    }
    MockServer::start(
        Router::new()
            .route("/products", get(list))
            .route("/products/{id}", get(one))
            .route("/search", get(search)),
    )
    .await
}

async fn reviews() -> MockServer {
    async fn summaries(Query(q): Query<HashMap<String, String>>) -> Json<Value> {
        let ids = q.get("ids").cloned().unwrap_or_default();
        Json(
            json!({"items": ids.split(',').map(|id| fixtures::summary(id, 3.95, 4)).collect::<Vec<_>>()}),
        )
    }
    MockServer::start(
        Router::new()
            .route(
                "/products/{id}/summary",
                get(|Path(id): Path<String>| async move { Json(fixtures::summary(&id, 4.26, 7)) }),
            )
            .route(
                "/products/{id}/reviews",
                get(|Path(id): Path<String>| async move { Json(fixtures::reviews(&id, 2)) }),
            )
            .route("/summaries", get(summaries)),
    )
    .await
}

async fn recommendations() -> MockServer {
    MockServer::start(Router::new().route(
        "/recommendations/{id}",
        get(|Path(id): Path<String>| async move {
            Json(json!({"product_id": id, "items": [{"product_id": "p-00002", "score": 0.9}, {"product_id": "p-00003", "score": 0.5}]}))
        }),
    ))
    .await
}

async fn orders() -> MockServer {
    async fn list(Query(q): Query<HashMap<String, String>>) -> Json<Value> {
        let customer = q.get("customer_id").cloned().unwrap_or_default();
        let items = if customer == "alice" {
            json!([{
                "id": "o-000001", "customer_id": "alice", "status": "shipped",
                "lines": [{"sku": "SKU-00001", "quantity": 2, "unit_price": {"amount_minor": 199, "currency": "EUR"}},
                          {"sku": "SKU-09999", "quantity": 1, "unit_price": {"amount_minor": 500, "currency": "EUR"}}],
                "total": {"amount_minor": 898, "currency": "EUR"}, "created_at": "2025-05-01T10:00:00Z",
            }])
        } else {
            json!([])
        };
        Json(json!({"items": items}))
    }
    MockServer::start(Router::new().route("/orders", get(list))).await
}

struct Backends {
    urls: HashMap<&'static str, String>,
    _servers: Vec<MockServer>,
    _inventory: MockInventory,
}

impl Backends {
    async fn healthy() -> Self {
        let servers =
            vec![catalog().await, reviews().await, recommendations().await, orders().await];
        let inventory = MockInventory::start(Script::with_stock(&[
            ("SKU-00001", 12),
            ("SKU-00002", 0),
            ("SKU-00003", 3),
        ]))
        .await;
        let names = ["catalog", "reviews", "recommendations", "orders"];
        let mut urls: HashMap<_, _> =
            names.into_iter().zip(servers.iter().map(MockServer::url)).collect();
        urls.insert("inventory", inventory.url());
        Self { urls, _servers: servers, _inventory: inventory }
    }

    fn app(&self) -> Router {
        let http: Vec<(&str, &str)> = ["catalog", "reviews", "recommendations", "orders"]
            .into_iter()
            .map(|n| (n, self.urls[n].as_str()))
            .collect();
        let toml = gateway_toml(&http, &[("inventory", &self.urls["inventory"])]);
        crate::app(&GatewayConfig::from_toml(&toml).unwrap()).unwrap()
    }
}

#[tokio::test]
async fn product_page_composes_five_services() {
    let backends = Backends::healthy().await;
    let response = call(backends.app(), get_req("/api/products/p-00001")).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert!(response.header("portico-degraded").is_none());
    let body = response.json();
    let product = &body["product"];
    assert_eq!(product["id"], "p-00001");
    assert_eq!(
        product["price"],
        json!({"amount_minor": 199, "currency": "EUR", "formatted": "€1.99"})
    );
    assert_eq!(product["images"].as_array().unwrap().len(), 2, "the web gets every image");
    assert_eq!(product["images"][0]["variants"].as_array().unwrap().len(), 2);
    assert!(product["description"].as_str().unwrap().len() > 1000, "the full description");
    assert_eq!(body["rating"]["histogram"]["5"], 4);
    assert_eq!(body["rating"]["average"], 4.3);
    assert_eq!(body["reviews"]["items"][0]["body"], "Great.");
    assert_eq!(body["reviews"]["total"], 2);
    assert_eq!(
        body["stock"],
        json!({"total_available": 12, "warehouses": [{"warehouse": "ams", "available": 12}]})
    );
    let recommended: Vec<&str> = body["recommendations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(recommended, ["p-00002", "p-00003"]);
    assert_eq!(body["recommendations"][0]["image"], "https://img.test/p-00002/1-480.jpg");
    assert_eq!(body["degraded"], json!([]));
}

#[tokio::test]
async fn slow_recommendations_degrade_the_page_within_their_deadline() {
    let mut backends = Backends::healthy().await;
    let slow = hanging_server().await;
    backends.urls.insert("recommendations", slow.url());
    let started = std::time::Instant::now();
    let response = call(backends.app(), get_req("/api/products/p-00001")).await;
    let elapsed = started.elapsed();
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.header("portico-degraded"), Some("recommendations"));
    let body = response.json();
    assert_eq!(body["degraded"], json!(["recommendations"]));
    assert_eq!(body["recommendations"], json!([]));
    assert_eq!(body["product"]["id"], "p-00001");
    // The call's deadline is 300 ms; the page must not wait for the request timeout (2 s).
    assert!(elapsed < std::time::Duration::from_millis(1500), "{elapsed:?}");
}

#[tokio::test]
async fn failing_optional_services_each_degrade_alone() {
    let mut backends = Backends::healthy().await;
    backends.urls.insert("reviews", refused_url().await);
    backends.urls.insert("inventory", refused_url().await);
    let response = call(backends.app(), get_req("/api/products/p-00001")).await;
    assert_eq!(response.status, StatusCode::OK);
    let body = response.json();
    assert_eq!(body["degraded"], json!(["rating", "reviews", "stock"]));
    for absent in ["rating", "reviews", "stock"] {
        assert!(body.get(absent).is_none(), "{absent}");
    }
    assert_eq!(body["recommendations"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn product_page_required_failures() {
    let mut backends = Backends::healthy().await;
    call(backends.app(), get_req("/api/products/p-00404")).await.assert_problem(404, "not_found");
    call(backends.app(), get_req("/api/products/p-00001?reviews_page=0"))
        .await
        .assert_problem(400, "invalid_parameter");
    backends.urls.insert("catalog", refused_url().await);
    call(backends.app(), get_req("/api/products/p-00001"))
        .await
        .assert_problem(502, "upstream_unavailable");
    let slow = hanging_server().await;
    backends.urls.insert("catalog", slow.url());
    call(backends.app(), get_req("/api/products/p-00001"))
        .await
        .assert_problem(504, "upstream_timeout");
}

#[tokio::test]
async fn search_returns_hits_with_ratings_stock_and_facets() {
    let backends = Backends::healthy().await;
    let response = call(backends.app(), get_req("/api/search?q=jacket")).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let body = response.json();
    assert_eq!(body["query"], "jacket");
    assert_eq!(body["total"], 7);
    assert_eq!(body["next_cursor"], "Mg");
    assert_eq!(body["facets"]["brand"][0], json!({"value": "Northwind", "count": 7}));
    let hit = &body["items"][0];
    assert_eq!(hit["id"], "p-00001");
    assert_eq!(hit["brand"], "Northwind");
    assert_eq!(hit["rating"], 4.0);
    assert_eq!(hit["review_count"], 4);
    assert_eq!(hit["in_stock"], true);
    assert_eq!(body["items"][1]["in_stock"], false);
    assert!(hit.get("description").is_none(), "a result list does not carry descriptions");
}

#[tokio::test]
async fn search_validates_its_query() {
    let backends = Backends::healthy().await;
    call(backends.app(), get_req("/api/search")).await.assert_problem(400, "bad_request");
    call(backends.app(), get_req("/api/search?q=%20"))
        .await
        .assert_problem(400, "invalid_parameter");
    call(backends.app(), get_req("/api/search?q=jacket&limit=0"))
        .await
        .assert_problem(400, "invalid_parameter");
}

#[tokio::test]
async fn order_history_shows_products_of_each_line() {
    let backends = Backends::healthy().await;
    let response = call(backends.app(), get_req("/api/orders?customer=alice")).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let body = response.json();
    assert_eq!(body["customer"], "alice");
    let order = &body["orders"][0];
    assert_eq!(order["total"]["formatted"], "€8.98");
    assert_eq!(order["lines"][0]["product"]["name"], "Product 1");
    assert!(order["lines"][1].get("product").is_none(), "a product the catalog no longer has");
    assert_eq!(order["lines"][1]["sku"], "SKU-09999");

    let empty = call(backends.app(), get_req("/api/orders?customer=bob")).await.json();
    assert_eq!(empty["orders"], json!([]));
    call(backends.app(), get_req("/api/orders?customer=../x"))
        .await
        .assert_problem(400, "invalid_id");
}

#[tokio::test]
async fn order_history_degrades_without_the_catalog_and_fails_without_orders() {
    let mut backends = Backends::healthy().await;
    backends.urls.insert("catalog", refused_url().await);
    let response = call(backends.app(), get_req("/api/orders?customer=alice")).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.json()["degraded"], json!(["products"]));
    backends.urls.insert("orders", refused_url().await);
    call(backends.app(), get_req("/api/orders?customer=alice"))
        .await
        .assert_problem(502, "upstream_unavailable");
}

#[tokio::test]
async fn edge_behaviour_and_documents() {
    let backends = Backends::healthy().await;
    call(backends.app(), get_req("/api/nope")).await.assert_problem(404, "no_route");
    let request = Request::post("/api/search?q=x")
        .header("content-length", "2048")
        .body(Body::from(vec![b'x'; 2048]))
        .unwrap();
    call(backends.app(), request).await.assert_problem(413, "payload_too_large");
    let doc = call(backends.app(), get_req("/openapi.json")).await.json();
    for path in ["/api/products/{id}", "/api/search", "/api/orders"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path}");
    }
}
