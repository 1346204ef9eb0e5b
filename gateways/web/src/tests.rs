//! The web gateway driven in-process against real mock backends on loopback, with a real
//! identity service issuing the tokens.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    body::Body,
    extract::{Path, Query, Request as Incoming, State},
    http::{HeaderMap, Request, StatusCode},
    middleware::{Next, from_fn_with_state},
    response::Response,
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
    /// The cursor `stale` gets the catalog's 400 `invalid_cursor`, `forbidden` a 403.
    async fn search(
        Query(q): Query<HashMap<String, String>>,
    ) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
        assert_eq!(q.get("q").map(String::as_str), Some("jacket"), "the query is passed on");
        let problem = |status: StatusCode, code: &str| {
            (status, Json(json!({"status": status.as_u16(), "code": code})))
        };
        match q.get("cursor").map(String::as_str) {
            Some("stale") => return Err(problem(StatusCode::BAD_REQUEST, "invalid_cursor")),
            Some("forbidden") => return Err(problem(StatusCode::FORBIDDEN, "forbidden")),
            _ => {}
        }
        Ok(Json(json!({
            "items": [fixtures::product(1), fixtures::product(2)],
            "next_cursor": "Mg", "total": 7,
            "facets": {"category": [{"value": "outdoor", "count": 7}],
                       "brand": [{"value": "Northwind", "count": 7}],
                       "price_band": [{"value": "0-25", "count": 7}]},
        })))
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

/// One request the mock orders service received.
#[derive(Clone, Debug)]
struct Received {
    /// Path and query.
    uri: String,
    headers: HeaderMap,
}

/// Every request the mock orders service received, in order.
type Log = Arc<Mutex<Vec<Received>>>;

/// An order as the orders service serves it: `o-000001` is alice's, `o-000002` bob's.
fn order(id: &str, customer: &str) -> Value {
    let lines = if customer == "alice" {
        json!([{"sku": "SKU-00001", "quantity": 2, "unit_price": {"amount_minor": 199, "currency": "EUR"}},
               {"sku": "SKU-09999", "quantity": 1, "unit_price": {"amount_minor": 500, "currency": "EUR"}}])
    } else {
        json!([{"sku": "SKU-00002", "quantity": 1, "unit_price": {"amount_minor": 299, "currency": "EUR"}}])
    };
    let total = if customer == "alice" { 898 } else { 299 };
    json!({
        "id": id, "customer_id": customer, "status": "shipped", "lines": lines,
        "total": {"amount_minor": total, "currency": "EUR"}, "created_at": "2025-05-01T10:00:00Z",
    })
}

/// The orders service, logging every request it receives (see [`Log`]).
async fn orders(log: Log) -> MockServer {
    async fn record(State(log): State<Log>, request: Incoming, next: Next) -> Response {
        let uri = request.uri().to_string();
        log.lock().unwrap().push(Received { uri, headers: request.headers().clone() });
        next.run(request).await
    }
    async fn list(Query(q): Query<HashMap<String, String>>) -> Json<Value> {
        let items = match q.get("customer_id").map(String::as_str) {
            Some("alice") => json!([order("o-000001", "alice")]),
            Some("bob") => json!([order("o-000002", "bob")]),
            _ => json!([]),
        };
        Json(json!({"items": items}))
    }
    async fn one(Path(id): Path<String>) -> Result<Json<Value>, StatusCode> {
        match id.as_str() {
            "o-000001" => Ok(Json(order("o-000001", "alice"))),
            "o-000002" => Ok(Json(order("o-000002", "bob"))),
            _ => Err(StatusCode::NOT_FOUND),
        }
    }
    MockServer::start(
        Router::new()
            .route("/orders", get(list))
            .route("/orders/{id}", get(one))
            .layer(from_fn_with_state(log, record)),
    )
    .await
}

struct Backends {
    urls: HashMap<&'static str, String>,
    identity: TestIdentity,
    /// What the orders service received.
    orders: Log,
    _servers: Vec<MockServer>,
    _inventory: MockInventory,
}

impl Backends {
    async fn healthy() -> Self {
        let log = Log::default();
        let servers = vec![
            catalog().await,
            reviews().await,
            recommendations().await,
            orders(log.clone()).await,
        ];
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
        let identity = TestIdentity::start().await;
        Self { urls, identity, orders: log, _servers: servers, _inventory: inventory }
    }

    /// The gateway's config over these backends.
    fn toml(&self) -> String {
        let http: Vec<(&str, &str)> = ["catalog", "reviews", "recommendations", "orders"]
            .into_iter()
            .map(|n| (n, self.urls[n].as_str()))
            .collect();
        let mut toml = gateway_toml(&http, &[("inventory", &self.urls["inventory"])]);
        toml.push_str(&self.identity.auth_toml("web", false));
        toml
    }

    fn app(&self) -> Router {
        crate::app(&GatewayConfig::from_toml(&self.toml()).unwrap()).unwrap().into_router()
    }

    /// `GET uri` with extra request headers.
    async fn get_with(&self, uri: &str, headers: &[(&str, &str)]) -> TestResponse {
        let mut request = Request::get(uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        call(self.app(), request.body(Body::empty()).unwrap()).await
    }

    /// `GET uri` with `token` as the bearer token.
    async fn get_as(&self, token: &str, uri: &str) -> TestResponse {
        self.get_with(uri, &[("authorization", &bearer(token))]).await
    }

    /// A user token for this gateway.
    fn user(&self, user: &str) -> String {
        self.identity.user_token(user, "web")
    }

    /// What the orders service received.
    fn orders_received(&self) -> Vec<Received> {
        self.orders.lock().unwrap().clone()
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

// === orders: the signed-in customer's own ===

#[tokio::test]
async fn a_stale_cursor_is_the_clients_to_fix_and_other_refusals_stay_502() {
    let backends = Backends::healthy().await;
    let problem = call(backends.app(), get_req("/api/search?q=jacket&cursor=stale"))
        .await
        .assert_problem(400, "invalid_cursor");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("start the search again without it"), "{detail}");
    // A 403 is not about anything the shopper sent: our failure, as before.
    call(backends.app(), get_req("/api/search?q=jacket&cursor=forbidden"))
        .await
        .assert_problem(502, "upstream_error");
    // A cursor the catalog accepts pages on normally.
    assert_eq!(
        call(backends.app(), get_req("/api/search?q=jacket&cursor=Mg")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn order_history_shows_products_of_each_line() {
    let backends = Backends::healthy().await;
    let response = backends.get_as(&backends.user("alice"), "/api/orders").await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let body = response.json();
    assert_eq!(body["customer"], "alice");
    let order = &body["orders"][0];
    assert_eq!(order["total"]["formatted"], "€8.98");
    assert_eq!(order["lines"][0]["product"]["name"], "Product 1");
    assert!(order["lines"][1].get("product").is_none(), "a product the catalog no longer has");
    assert_eq!(order["lines"][1]["sku"], "SKU-09999");

    let carol = backends.get_as(&backends.user("carol"), "/api/orders").await.json();
    assert_eq!(carol["customer"], "carol");
    assert_eq!(carol["orders"], json!([]));
}

#[tokio::test]
async fn order_history_degrades_without_the_catalog_and_fails_without_orders() {
    let mut backends = Backends::healthy().await;
    let alice = backends.user("alice");
    backends.urls.insert("catalog", refused_url().await);
    let response = backends.get_as(&alice, "/api/orders").await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.json()["degraded"], json!(["products"]));
    assert_eq!(response.header("portico-degraded"), Some("products"));
    backends.urls.insert("orders", refused_url().await);
    backends.get_as(&alice, "/api/orders").await.assert_problem(502, "upstream_unavailable");
}

#[tokio::test]
async fn the_orders_service_is_asked_for_the_callers_orders_only() {
    let backends = Backends::healthy().await;
    // A leftover `?customer=` of the interim API names nobody: the token does.
    let response = backends.get_as(&backends.user("alice"), "/api/orders?customer=bob").await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.json()["customer"], "alice");
    let received = backends.orders_received();
    assert_eq!(received.len(), 1, "{received:?}");
    assert_eq!(received[0].uri, "/orders?customer_id=alice&limit=20");
    let headers = &received[0].headers;
    assert_eq!(headers["x-portico-subject"], "alice");
    assert_eq!(headers["x-portico-client-kind"], "user");
    assert!(headers["x-portico-scopes"].to_str().unwrap().contains("orders:read"));
}

#[tokio::test]
async fn a_forged_identity_header_does_not_reach_the_backend() {
    let backends = Backends::healthy().await;
    let alice = bearer(&backends.user("alice"));
    let response = backends
        .get_with(
            "/api/orders",
            &[("authorization", &alice), ("x-portico-subject", "bob"), ("x-portico-plan", "gold")],
        )
        .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.json()["customer"], "alice");
    let received = backends.orders_received();
    let subjects: Vec<_> = received[0].headers.get_all("x-portico-subject").iter().collect();
    assert_eq!(subjects, ["alice"]);
    assert!(received[0].headers.get("x-portico-plan").is_none(), "a user has no plan");
}

#[tokio::test]
async fn one_order_shows_its_products() {
    let backends = Backends::healthy().await;
    let response = backends.get_as(&backends.user("alice"), "/api/orders/o-000001").await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let body = response.json();
    assert_eq!(body["id"], "o-000001");
    assert_eq!(body["status"], "shipped");
    assert_eq!(body["total"]["formatted"], "€8.98");
    assert_eq!(body["lines"][0]["product"]["name"], "Product 1");
    assert!(body["lines"][1].get("product").is_none());
    assert_eq!(body["degraded"], json!([]));
    assert!(body.get("customer_id").is_none(), "the caller knows who they are");
    let received = backends.orders_received();
    assert_eq!(received[0].uri, "/orders/o-000001");
    assert_eq!(received[0].headers["x-portico-subject"], "alice");
}

#[tokio::test]
async fn another_customers_order_looks_exactly_like_a_missing_one() {
    let backends = Backends::healthy().await;
    let alice = backends.user("alice");
    let bobs = backends.get_as(&alice, "/api/orders/o-000002").await;
    let missing = backends.get_as(&alice, "/api/orders/o-404404").await;
    bobs.assert_problem(404, "not_found");
    missing.assert_problem(404, "not_found");
    assert_eq!(bobs.body, missing.body);
    assert_eq!(bobs.header("content-type"), missing.header("content-type"));

    let bob = backends.get_as(&backends.user("bob"), "/api/orders/o-000002").await;
    assert_eq!(bob.status, StatusCode::OK, "{}", bob.text());
    // An encoded slash never reaches the handler: the edge refuses the path itself.
    backends
        .get_as(&alice, "/api/orders/..%2F..%2Fadmin")
        .await
        .assert_problem(400, "invalid_path");
    backends.get_as(&alice, "/api/orders/o%20002").await.assert_problem(400, "invalid_id");
}

// === who may call ===

#[tokio::test]
async fn anonymous_and_signed_in_shoppers_browse_alike() {
    let backends = Backends::healthy().await;
    let alice = backends.user("alice");
    for uri in ["/api/products/p-00001", "/api/search?q=jacket", "/openapi.json", "/healthz"] {
        let anonymous = backends.get_with(uri, &[]).await;
        assert_eq!(anonymous.status, StatusCode::OK, "{uri}: {}", anonymous.text());
        let signed_in = backends.get_as(&alice, uri).await;
        assert_eq!(signed_in.status, StatusCode::OK, "{uri}: {}", signed_in.text());
    }
}

#[tokio::test]
async fn an_invalid_token_is_refused_even_on_public_pages() {
    let backends = Backends::healthy().await;
    let mobile = backends.identity.user_token("alice", "mobile");
    for token in ["not-a-jwt", mobile.as_str()] {
        let response = backends.get_as(token, "/api/products/p-00001").await;
        response.assert_problem(401, "invalid_token");
        assert!(response.header("www-authenticate").unwrap().starts_with("Bearer"));
    }
}

#[tokio::test]
async fn orders_need_a_token() {
    let backends = Backends::healthy().await;
    for uri in ["/api/orders", "/api/orders/o-000001"] {
        let response = backends.get_with(uri, &[]).await;
        response.assert_problem(401, "unauthenticated");
        let challenge = response.header("www-authenticate").unwrap_or_default();
        assert!(challenge.starts_with("Bearer"), "{challenge:?}");
    }
    assert!(backends.orders_received().is_empty(), "refused before any backend call");
}

#[tokio::test]
async fn a_token_for_another_gateway_is_refused() {
    let backends = Backends::healthy().await;
    let mobile = backends.identity.user_token("alice", "mobile");
    backends.get_as(&mobile, "/api/orders").await.assert_problem(401, "invalid_token");
    assert!(backends.orders_received().is_empty());
}

#[tokio::test]
async fn orders_need_a_user_token_with_orders_read() {
    let backends = Backends::healthy().await;
    let without_scope = backends.identity.token("alice", "web", "profile catalog:read");
    backends.get_as(&without_scope, "/api/orders").await.assert_problem(403, "forbidden");
    // A verified subject that is not an id is not copied into the orders service's query.
    let odd = backends.identity.token("../bob", "web", "orders:read");
    backends.get_as(&odd, "/api/orders").await.assert_problem(403, "forbidden");
    assert!(backends.orders_received().is_empty());
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
    for path in ["/api/products/{id}", "/api/search", "/api/orders", "/api/orders/{id}"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path}");
    }
    let bearer_scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!(bearer_scheme["type"], "http");
    assert_eq!(bearer_scheme["scheme"], "bearer");
    for path in ["/api/orders", "/api/orders/{id}"] {
        let operation = &doc["paths"][path]["get"];
        assert_eq!(operation["security"], json!([{"bearer": ["orders:read"]}]), "{path}");
        for status in ["401", "403"] {
            assert!(operation["responses"][status].is_object(), "{path} {status}");
        }
        let parameters = operation["parameters"].as_array().cloned().unwrap_or_default();
        assert!(parameters.iter().all(|p| p["name"] != "customer"), "{path}");
    }
    // Public: a token is optional.
    assert_eq!(doc["paths"]["/api/search"]["get"]["security"], json!([{}, {"bearer": []}]));
}

#[tokio::test]
async fn the_product_page_is_cached_tagged_and_purged_by_its_product() {
    let backends = Backends::healthy().await;
    let mut toml = backends.toml();
    toml.push_str("\n[routes_policy.\"web.product\"]\ncache = { ttl = \"60s\" }\n");
    // One gateway (one process's cache) for every request.
    let app = crate::app(&GatewayConfig::from_toml(&toml).unwrap()).unwrap().into_router();
    let first = call(app.clone(), get_req("/api/products/p-00001")).await;
    assert_eq!(first.header("cache-status"), Some("portico; fwd=miss; stored"));
    assert!(first.header("cache-tag").is_none(), "purge tags stay in the gateway");
    let second = call(app.clone(), get_req("/api/products/p-00001")).await;
    assert!(second.header("cache-status").unwrap().starts_with("portico; hit"));
    assert_eq!(first.body, second.body);
    let purge = |tag: &str| {
        let mut request =
            Request::post(format!("/_portico/cache/purge?tag={tag}")).body(Body::empty()).unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from(([127, 0, 0, 1], 1))));
        call(app.clone(), request)
    };
    assert_eq!(purge("product:p-00002").await.json()["purged"], 0, "another product's tag");
    assert_eq!(purge("product:p-00001").await.json()["purged"], 1);
    let third = call(app.clone(), get_req("/api/products/p-00001")).await;
    assert_eq!(third.header("cache-status"), Some("portico; fwd=miss; stored"));
}
