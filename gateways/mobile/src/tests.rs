//! The mobile gateway driven in-process against real mock backends on loopback, with a real
//! identity service issuing the tokens.

use axum::{
    Json, Router,
    body::Body,
    extract::Path,
    http::{Request, StatusCode},
    routing::get,
};
use portico_edge::GatewayConfig;
use portico_testkit::{
    MockServer, TestResponse, call, fixtures, gateway_toml, get as get_req, hanging_server,
    identity::{TestIdentity, bearer},
    inventory::{MockInventory, Script},
    refused_url,
};
use serde_json::{Value, json};

struct Backends {
    catalog: String,
    reviews: String,
    inventory: String,
    identity: TestIdentity,
    _servers: (Option<MockServer>, Option<MockServer>, Option<MockInventory>),
}

async fn catalog() -> MockServer {
    async fn one(Path(id): Path<String>) -> Result<Json<Value>, StatusCode> {
        match id.strip_prefix("p-").and_then(|n| n.parse::<u32>().ok()) {
            Some(n @ 1..=3) => Ok(Json(fixtures::product(n))),
            _ => Err(StatusCode::NOT_FOUND),
        }
    }
    MockServer::start(
        Router::new()
            .route(
                "/products/featured",
                get(|| async { Json(json!({"items": ([1, 2, 3].map(fixtures::product))})) }),
            )
            .route("/products/{id}", get(one)),
    )
    .await
}

async fn reviews() -> MockServer {
    MockServer::start(
        Router::new()
            .route(
                "/products/{id}/summary",
                get(|Path(id): Path<String>| async move { Json(fixtures::summary(&id, 4.26, 7)) }),
            )
            .route(
                "/products/{id}/reviews",
                get(|Path(id): Path<String>| async move { Json(fixtures::reviews(&id, 3)) }),
            ),
    )
    .await
}

async fn inventory() -> MockInventory {
    MockInventory::start(Script::with_stock(&[
        ("SKU-00001", 25),
        ("SKU-00002", 0),
        ("SKU-00003", 4),
    ]))
    .await
}

impl Backends {
    async fn healthy() -> Self {
        let (c, r, i) = (catalog().await, reviews().await, inventory().await);
        Self {
            catalog: c.url(),
            reviews: r.url(),
            inventory: i.url(),
            identity: TestIdentity::start().await,
            _servers: (Some(c), Some(r), Some(i)),
        }
    }

    fn app(&self) -> Router {
        let mut toml = gateway_toml(
            &[("catalog", &self.catalog), ("reviews", &self.reviews)],
            &[("inventory", &self.inventory)],
        );
        toml.push_str(&self.identity.auth_toml("mobile", false));
        crate::app(&GatewayConfig::from_toml(&toml).unwrap()).unwrap().into_router()
    }

    /// `GET uri` with `token` as the bearer token.
    async fn get_as(&self, token: &str, uri: &str) -> TestResponse {
        let request =
            Request::get(uri).header("authorization", bearer(token)).body(Body::empty()).unwrap();
        call(self.app(), request).await
    }
}

#[tokio::test]
async fn home_composes_small_cards_with_stock() {
    let backends = Backends::healthy().await;
    let response = call(backends.app(), get_req("/v1/home")).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert!(response.header("portico-degraded").is_none());
    let body = response.json();
    assert_eq!(body["degraded"], json!([]));
    assert_eq!(
        body["featured"][0],
        json!({
            "id": "p-00001", "name": "Product 1", "price": "€1.99",
            "image": "https://img.test/p-00001/1-160.jpg", "in_stock": true,
        })
    );
    assert_eq!(body["featured"][1]["in_stock"], false);
    assert_eq!(body["featured"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn home_trims_what_a_phone_does_not_show() {
    let backends = Backends::healthy().await;
    let text = call(backends.app(), get_req("/v1/home")).await.text();
    for absent in
        ["description", "sku", "brand", "attributes", "variants", "1200.jpg", "amount_minor"]
    {
        assert!(!text.contains(absent), "`{absent}` leaked into the mobile home: {text}");
    }
}

#[tokio::test]
async fn home_degrades_when_inventory_is_down() {
    let mut backends = Backends::healthy().await;
    backends.inventory = refused_url().await;
    let response = call(backends.app(), get_req("/v1/home")).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.header("portico-degraded"), Some("stock"));
    let body = response.json();
    assert_eq!(body["degraded"], json!(["stock"]));
    assert!(body["featured"][0].get("in_stock").is_none());
    assert_eq!(body["featured"][0]["name"], "Product 1");
}

#[tokio::test]
async fn product_screen_composes_rating_stock_and_top_reviews() {
    let backends = Backends::healthy().await;
    let response = call(backends.app(), get_req("/v1/products/p-00003")).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let body = response.json();
    assert_eq!(body["id"], "p-00003");
    assert_eq!(body["price"], "€3.99");
    assert_eq!(body["rating"], json!({"average": 4.3, "count": 7}));
    assert_eq!(body["stock"], "low_stock");
    assert_eq!(body["image"], "https://img.test/p-00003/1-480.jpg");
    assert_eq!(body["top_reviews"].as_array().unwrap().len(), 3);
    assert_eq!(
        body["top_reviews"][0],
        json!({"rating": 5, "title": "Review 0", "author": "user0"})
    );
    assert!(body["short_description"].as_str().unwrap().chars().count() <= 160);
    for absent in ["description", "images", "sku", "brand", "body"] {
        assert!(body.get(absent).is_none(), "`{absent}` present");
    }
    assert!(!response.text().contains("Great."), "review bodies are not for phones");
}

#[tokio::test]
async fn product_screen_degrades_when_reviews_are_slow() {
    let mut backends = Backends::healthy().await;
    let slow = hanging_server().await;
    backends.reviews = slow.url();
    let response = call(backends.app(), get_req("/v1/products/p-00001")).await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let body = response.json();
    assert_eq!(body["degraded"], json!(["rating", "reviews"]));
    assert_eq!(response.header("portico-degraded"), Some("rating,reviews"));
    assert!(body.get("rating").is_none());
    assert_eq!(body["top_reviews"], json!([]));
    assert_eq!(body["stock"], "in_stock");
}

#[tokio::test]
async fn catalog_down_is_502_and_catalog_slow_is_504() {
    let mut backends = Backends::healthy().await;
    backends.catalog = refused_url().await;
    call(backends.app(), get_req("/v1/home")).await.assert_problem(502, "upstream_unavailable");
    call(backends.app(), get_req("/v1/products/p-00001"))
        .await
        .assert_problem(502, "upstream_unavailable");

    let slow = hanging_server().await;
    backends.catalog = slow.url();
    call(backends.app(), get_req("/v1/home")).await.assert_problem(504, "upstream_timeout");
}

#[tokio::test]
async fn unknown_and_malformed_products() {
    let backends = Backends::healthy().await;
    call(backends.app(), get_req("/v1/products/p-00999")).await.assert_problem(404, "not_found");
    // An encoded slash never reaches the handler: the edge refuses the path itself.
    call(backends.app(), get_req("/v1/products/..%2Forders"))
        .await
        .assert_problem(400, "invalid_path");
    call(backends.app(), get_req("/v1/products/p%20001")).await.assert_problem(400, "invalid_id");
}

#[tokio::test]
async fn sparse_fieldsets() {
    let backends = Backends::healthy().await;
    let body =
        call(backends.app(), get_req("/v1/home?fields=featured.id,featured.price")).await.json();
    assert_eq!(body["featured"][0], json!({"id": "p-00001", "price": "€1.99"}));
    assert_eq!(body["degraded"], json!([]), "degraded is always kept");

    let body = call(backends.app(), get_req("/v1/products/p-00001?fields=name,stock")).await.json();
    assert_eq!(body, json!({"name": "Product 1", "stock": "in_stock", "degraded": []}));

    let problem = call(backends.app(), get_req("/v1/products/p-00001?fields=name,secret"))
        .await
        .assert_problem(400, "invalid_fields");
    assert!(problem["detail"].as_str().unwrap().contains("secret"));
}

#[tokio::test]
async fn responses_are_compressed_when_the_client_accepts_it() {
    let backends = Backends::healthy().await;
    for encoding in ["gzip", "br"] {
        let request = Request::get("/v1/products/p-00001")
            .header("accept-encoding", encoding)
            .body(Body::empty())
            .unwrap();
        let response = call(backends.app(), request).await;
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(response.header("content-encoding"), Some(encoding));
    }
}

#[tokio::test]
async fn oversized_bodies_and_unknown_routes_are_problems() {
    let backends = Backends::healthy().await;
    let request = Request::post("/v1/home")
        .header("content-length", "4096")
        .body(Body::from(vec![b'x'; 4096]))
        .unwrap();
    call(backends.app(), request).await.assert_problem(413, "payload_too_large");
    call(backends.app(), get_req("/v1/nope")).await.assert_problem(404, "no_route");
    let request = Request::delete("/v1/home").body(Body::empty()).unwrap();
    call(backends.app(), request).await.assert_problem(405, "method_not_allowed");
}

#[tokio::test]
async fn anonymous_and_signed_in_users_browse_alike() {
    let backends = Backends::healthy().await;
    let alice = backends.identity.user_token("alice", "mobile");
    for uri in ["/v1/home", "/v1/products/p-00001"] {
        let anonymous = call(backends.app(), get_req(uri)).await;
        assert_eq!(anonymous.status, StatusCode::OK, "{uri}: {}", anonymous.text());
        let signed_in = backends.get_as(&alice, uri).await;
        assert_eq!(signed_in.status, StatusCode::OK, "{uri}: {}", signed_in.text());
        assert_eq!(signed_in.json(), anonymous.json(), "{uri}");
    }
}

#[tokio::test]
async fn a_token_that_is_sent_must_be_valid_and_for_mobile() {
    let backends = Backends::healthy().await;
    let web = backends.identity.user_token("alice", "web");
    for token in ["not-a-jwt", web.as_str()] {
        for uri in ["/v1/home", "/v1/products/p-00001"] {
            let response = backends.get_as(token, uri).await;
            response.assert_problem(401, "invalid_token");
            let challenge = response.header("www-authenticate").unwrap_or_default();
            assert!(challenge.starts_with("Bearer"), "{challenge:?}");
        }
    }
}

#[tokio::test]
async fn serves_its_openapi_document_and_health() {
    let backends = Backends::healthy().await;
    let doc = call(backends.app(), get_req("/openapi.json")).await.json();
    for path in ["/v1/home", "/v1/products/{id}"] {
        let operation = &doc["paths"][path]["get"];
        assert!(operation.is_object(), "{path}");
        // Anonymous or with a token: both are documented.
        assert_eq!(operation["security"], json!([{}, {"bearer": []}]), "{path}");
        assert!(operation["responses"]["401"].is_object(), "{path}");
    }
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    assert_eq!(call(backends.app(), get_req("/healthz")).await.json()["status"], "ok");
    assert_eq!(call(backends.app(), get_req("/readyz")).await.json()["status"], "ready");
}

#[tokio::test]
async fn readiness_fails_when_an_upstream_is_unreachable() {
    let mut backends = Backends::healthy().await;
    backends.reviews = refused_url().await;
    call(backends.app(), get_req("/readyz")).await.assert_problem(503, "not_ready");
}
