//! The partner gateway driven in-process against real mock backends on loopback, with a real
//! identity service issuing the tokens and the test API keys of `portico_testkit::identity`.

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
    MockServer, TestResponse, call, fixtures, gateway_toml, hanging_server,
    identity::{API_KEYS, TestIdentity, bearer},
    inventory::{MockInventory, Script},
    refused_url,
};
use serde_json::{Value, json};

/// How many products the mock catalog has (`p-00001` … `p-00005`).
const PRODUCTS: u32 = 5;

/// acme's two keys, as during a rotation, and globex's read-only key.
const ACME_OLD_KEY: &str = API_KEYS[0].3;
const ACME_NEW_KEY: &str = API_KEYS[1].3;
const GLOBEX_KEY: &str = API_KEYS[2].3;
/// Every scope of the partner API.
const ALL_SCOPES: &str = "catalog:read stock:read orders:read orders:write";

/// What the mock orders service was asked to place.
type Placed = Arc<Mutex<Vec<Value>>>;

/// The headers of every request the mock HTTP backends (catalog, orders) received.
type Received = Arc<Mutex<Vec<HeaderMap>>>;

struct Backends {
    catalog: String,
    orders: String,
    inventory: String,
    placed: Placed,
    received: Received,
    identity: TestIdentity,
    _servers: (Option<MockServer>, Option<MockServer>, Option<MockInventory>),
}

/// A request header carrying credentials.
type Credential = (&'static str, String);

/// `X-Api-Key: key`.
fn key(key: &str) -> Credential {
    ("x-api-key", key.to_owned())
}

/// `Authorization: Bearer token`.
fn token(token: &str) -> Credential {
    ("authorization", bearer(token))
}

/// Records the headers of each request a mock backend receives.
async fn record(State(received): State<Received>, request: Incoming, next: Next) -> Response {
    received.lock().unwrap().push(request.headers().clone());
    next.run(request).await
}

/// The catalog's `GET /products`: pages with cursors `o{offset}`, or a `skus=` batch lookup.
/// The cursor `fail` makes it answer 500, anything else it did not issue 400.
async fn catalog(received: Received) -> MockServer {
    async fn list(
        Query(query): Query<HashMap<String, String>>,
    ) -> Result<Json<Value>, (StatusCode, Json<Value>)> {
        if let Some(skus) = query.get("skus") {
            let items: Vec<Value> = skus
                .split(',')
                .filter_map(|sku| sku.strip_prefix("SKU-")?.parse::<u32>().ok())
                .filter(|n| (1..=PRODUCTS).contains(n))
                .map(fixtures::product)
                .collect();
            return Ok(Json(json!({"items": items, "next_cursor": null})));
        }
        let problem = |status: StatusCode, code: &str| {
            (status, Json(json!({"status": status.as_u16(), "code": code})))
        };
        let start = match query.get("cursor").map(String::as_str) {
            None => 0,
            Some("fail") => return Err(problem(StatusCode::INTERNAL_SERVER_ERROR, "internal")),
            Some(cursor) => cursor
                .strip_prefix('o')
                .and_then(|n| n.parse::<u32>().ok())
                .filter(|&n| n <= PRODUCTS)
                .ok_or_else(|| problem(StatusCode::BAD_REQUEST, "invalid_cursor"))?,
        };
        let limit: u32 = query.get("limit").map_or(20, |l| l.parse().unwrap());
        let end = (start + limit).min(PRODUCTS);
        let items: Vec<Value> = (start + 1..=end).map(fixtures::product).collect();
        let next = (end < PRODUCTS).then(|| format!("o{end}"));
        Ok(Json(json!({"items": items, "next_cursor": next, "total": PRODUCTS})))
    }
    MockServer::start(
        Router::new().route("/products", get(list)).layer(from_fn_with_state(received, record)),
    )
    .await
}

/// An order as the orders service serves it.
fn order(id: &str, customer_id: &str, lines: &Value) -> Value {
    let total: i64 = lines
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["quantity"].as_i64().unwrap() * l["unit_price"]["amount_minor"].as_i64().unwrap()
        })
        .sum();
    json!({
        "id": id, "customer_id": customer_id, "status": "placed", "lines": lines,
        "total": {"amount_minor": total, "currency": "EUR"},
        "created_at": "2025-06-01T12:00:00Z",
    })
}

/// The orders service: records what it is asked to place; knows `o-1` (acme's) and `o-2`
/// (globex's). A first line of quantity 11, 12 or 13 makes it refuse the order with a 400,
/// 409 or 403.
async fn orders(placed: Placed, received: Received) -> MockServer {
    async fn place(
        State(placed): State<Placed>,
        Json(body): Json<Value>,
    ) -> (StatusCode, Json<Value>) {
        placed.lock().unwrap().push(body.clone());
        let refusal = match body["lines"][0]["quantity"].as_u64() {
            Some(11) => Some((StatusCode::BAD_REQUEST, "invalid_order")),
            Some(12) => Some((StatusCode::CONFLICT, "out_of_stock")),
            Some(13) => Some((StatusCode::FORBIDDEN, "forbidden")),
            _ => None,
        };
        if let Some((status, code)) = refusal {
            return (status, Json(json!({"status": status.as_u16(), "code": code})));
        }
        let customer = body["customer_id"].as_str().unwrap();
        (StatusCode::CREATED, Json(order("o-100", customer, &body["lines"])))
    }
    async fn fetch(Path(id): Path<String>) -> Result<Json<Value>, StatusCode> {
        let line = json!([{"sku": "SKU-00001", "quantity": 3,
                           "unit_price": {"amount_minor": 199, "currency": "EUR"}}]);
        match id.as_str() {
            "o-1" => Ok(Json(order("o-1", "partner:acme", &line))),
            "o-2" => Ok(Json(order("o-2", "partner:globex", &line))),
            _ => Err(StatusCode::NOT_FOUND),
        }
    }
    MockServer::start(
        Router::new()
            .route("/orders", axum::routing::post(place))
            .route("/orders/{id}", get(fetch))
            .with_state(placed)
            .layer(from_fn_with_state(received, record)),
    )
    .await
}

/// Stock, all in `ams`: SKU 4 and 5 exist in the catalog but not in the inventory.
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
        let (placed, received) = (Placed::default(), Received::default());
        let (c, o, i) = (
            catalog(received.clone()).await,
            orders(placed.clone(), received.clone()).await,
            inventory().await,
        );
        Self {
            catalog: c.url(),
            orders: o.url(),
            inventory: i.url(),
            placed,
            received,
            identity: TestIdentity::start().await,
            _servers: (Some(c), Some(o), Some(i)),
        }
    }

    fn app(&self) -> Router {
        let mut toml = gateway_toml(
            &[("catalog", &self.catalog), ("orders", &self.orders)],
            &[("inventory", &self.inventory)],
        );
        toml.push_str(&self.identity.auth_toml("partner", true));
        crate::app(&GatewayConfig::from_toml(&toml).unwrap()).unwrap().into_router()
    }

    /// `GET` as acme, with its current API key.
    async fn get(&self, uri: &str) -> TestResponse {
        self.get_with(uri, &[key(ACME_NEW_KEY)]).await
    }

    /// `GET` with these credentials (none: anonymous).
    async fn get_with(&self, uri: &str, credentials: &[Credential]) -> TestResponse {
        let mut request = Request::get(uri);
        for (name, value) in credentials {
            request = request.header(*name, value);
        }
        call(self.app(), request.body(Body::empty()).unwrap()).await
    }

    /// `GET` as partner `partner` (`acme` or `globex`), with its API key.
    async fn get_as(&self, partner: &str, uri: &str) -> TestResponse {
        let partner_key = if partner == "globex" { GLOBEX_KEY } else { ACME_NEW_KEY };
        self.get_with(uri, &[key(partner_key)]).await
    }

    /// `POST /partner/v1/orders` with a raw body and these credentials.
    async fn post_order_raw(&self, credentials: &[Credential], body: &str) -> TestResponse {
        let mut request =
            Request::post("/partner/v1/orders").header("content-type", "application/json");
        for (name, value) in credentials {
            request = request.header(*name, value);
        }
        call(self.app(), request.body(Body::from(body.to_owned())).unwrap()).await
    }

    /// `POST /partner/v1/orders` as acme, with its current API key.
    async fn post_order(&self, body: &Value) -> TestResponse {
        self.post_order_raw(&[key(ACME_NEW_KEY)], &body.to_string()).await
    }

    fn placed(&self) -> Vec<Value> {
        self.placed.lock().unwrap().clone()
    }

    /// The headers of every request the catalog and orders services received.
    fn received(&self) -> Vec<HeaderMap> {
        self.received.lock().unwrap().clone()
    }
}

/// A small valid order.
fn one_line() -> String {
    json!({"lines": [{"sku": "SKU-00001", "quantity": 1}]}).to_string()
}

fn eur(amount_minor: i64) -> Value {
    json!({"amount_minor": amount_minor, "currency": "EUR"})
}

// === the product feed ===

#[tokio::test]
async fn feed_items_carry_catalog_data_raw_money_and_stock() {
    let backends = Backends::healthy().await;
    let response = backends.get("/partner/v1/products").await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert!(response.header("portico-degraded").is_none());
    let body = response.json();
    assert_eq!(body["degraded"], json!([]));
    assert_eq!(body["next_cursor"], Value::Null, "the default limit holds all 5");
    let items = body["items"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert_eq!(
        items[0],
        json!({
            "id": "p-00001", "sku": "SKU-00001", "name": "Product 1", "brand": "Northwind",
            "category": "outdoor",
            "description": "A long description that goes on. ".repeat(40),
            "price": eur(199),
            "image_urls": ["https://img.test/p-00001/1-1200.jpg",
                           "https://img.test/p-00001/2-1200.jpg"],
            "available": 25,
        })
    );
    assert_eq!(items[1]["available"], 0);
    assert_eq!(items[3]["available"], 0, "a SKU the inventory does not know has nothing to sell");
}

#[tokio::test]
async fn feed_pages_through_opaque_cursors() {
    let backends = Backends::healthy().await;
    let ids = |body: &Value| -> Vec<String> {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = backends.get("/partner/v1/products?limit=2").await.json();
    assert_eq!(ids(&first), ["p-00001", "p-00002"]);
    assert_eq!(first["next_cursor"], "o2");
    let second = backends.get("/partner/v1/products?limit=2&cursor=o2").await.json();
    assert_eq!(ids(&second), ["p-00003", "p-00004"]);
    assert_eq!(second["next_cursor"], "o4");
    let last = backends.get("/partner/v1/products?limit=2&cursor=o4").await.json();
    assert_eq!(ids(&last), ["p-00005"]);
    assert_eq!(last["next_cursor"], Value::Null);
}

#[tokio::test]
async fn feed_refuses_bad_limits_and_cursors() {
    let backends = Backends::healthy().await;
    for limit in ["0", "101", "ten", "-1"] {
        backends
            .get(&format!("/partner/v1/products?limit={limit}"))
            .await
            .assert_problem(400, "invalid_parameter");
    }
    // Malformed: refused before the catalog sees it.
    backends
        .get("/partner/v1/products?cursor=o2%26limit%3D1")
        .await
        .assert_problem(400, "invalid_cursor");
    // Well-formed but not issued: the catalog's 400 is the partner's mistake, not a 502.
    backends.get("/partner/v1/products?cursor=o99").await.assert_problem(400, "invalid_cursor");
}

#[tokio::test]
async fn feed_degrades_when_inventory_is_down() {
    let mut backends = Backends::healthy().await;
    backends.inventory = refused_url().await;
    let response = backends.get("/partner/v1/products?limit=2").await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(response.header("portico-degraded"), Some("stock"));
    let body = response.json();
    assert_eq!(body["degraded"], json!(["stock"]));
    assert_eq!(body["next_cursor"], "o2");
    for item in body["items"].as_array().unwrap() {
        assert!(item.get("available").is_none(), "{item}");
        assert!(item["price"]["amount_minor"].is_i64());
    }
}

#[tokio::test]
async fn feed_fails_when_the_catalog_fails() {
    let mut backends = Backends::healthy().await;
    // A catalog error is ours, even when the request carried a cursor.
    backends.get("/partner/v1/products?cursor=fail").await.assert_problem(502, "upstream_error");

    backends.catalog = refused_url().await;
    backends.get("/partner/v1/products").await.assert_problem(502, "upstream_unavailable");

    let slow = hanging_server().await;
    backends.catalog = slow.url();
    backends.get("/partner/v1/products").await.assert_problem(504, "upstream_timeout");
}

// === stock ===

#[tokio::test]
async fn stock_by_sku_with_warehouses_and_unknown_skus() {
    let backends = Backends::healthy().await;
    let response = backends.get("/partner/v1/stock?skus=SKU-00003,SKU-09999,SKU-00001").await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(
        response.json(),
        json!({
            "items": [
                {"sku": "SKU-00003", "available": 4, "warehouses": {"ams": 4}},
                {"sku": "SKU-00001", "available": 25, "warehouses": {"ams": 25}},
            ],
            "unknown_skus": ["SKU-09999"],
        })
    );
}

#[tokio::test]
async fn stock_refuses_bad_sku_lists() {
    let backends = Backends::healthy().await;
    let many: Vec<String> = (1..=101).map(|n| format!("SKU-{n:05}")).collect();
    let problem = backends
        .get(&format!("/partner/v1/stock?skus={}", many.join(",")))
        .await
        .assert_problem(400, "invalid_parameter");
    assert!(problem["detail"].as_str().unwrap().contains("at most 100"));
    backends.get("/partner/v1/stock").await.assert_problem(400, "invalid_parameter");
    backends
        .get("/partner/v1/stock?skus=SKU-00001,..%2Fadmin")
        .await
        .assert_problem(400, "invalid_id");
}

#[tokio::test]
async fn stock_fails_when_inventory_is_down() {
    let mut backends = Backends::healthy().await;
    backends.inventory = refused_url().await;
    backends
        .get("/partner/v1/stock?skus=SKU-00001")
        .await
        .assert_problem(502, "upstream_unavailable");
}

// === placing orders ===

#[tokio::test]
async fn orders_are_placed_at_catalog_prices() {
    let backends = Backends::healthy().await;
    let response = backends
        .post_order(&json!({
            "reference": "PO-4711",
            "lines": [
                // A price from the partner is ignored: the catalog's is charged.
                {"sku": "SKU-00001", "quantity": 2, "unit_price": eur(1)},
                {"sku": "SKU-00003", "quantity": 4},
            ],
        }))
        .await;
    assert_eq!(response.status, StatusCode::CREATED, "{}", response.text());
    assert_eq!(response.header("location"), Some("/partner/v1/orders/o-100"));
    assert_eq!(
        backends.placed(),
        [json!({
            "customer_id": "partner:acme",
            "lines": [
                {"sku": "SKU-00001", "quantity": 2, "unit_price": eur(199)},
                {"sku": "SKU-00003", "quantity": 4, "unit_price": eur(399)},
            ],
        })]
    );
    assert_eq!(
        response.json(),
        json!({
            "id": "o-100", "reference": "PO-4711", "status": "placed",
            "lines": [
                {"sku": "SKU-00001", "quantity": 2, "unit_price": eur(199)},
                {"sku": "SKU-00003", "quantity": 4, "unit_price": eur(399)},
            ],
            "total": eur(2 * 199 + 4 * 399),
            "created_at": "2025-06-01T12:00:00Z",
        })
    );
}

#[tokio::test]
async fn unknown_skus_are_422_and_nothing_is_placed() {
    let backends = Backends::healthy().await;
    let problem = backends
        .post_order(&json!({"lines": [
            {"sku": "SKU-00001", "quantity": 1},
            {"sku": "SKU-09999", "quantity": 1},
        ]}))
        .await
        .assert_problem(422, "unknown_sku");
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("SKU-09999") && !detail.contains("SKU-00001"), "{detail}");
    assert!(backends.placed().is_empty());
}

#[tokio::test]
async fn insufficient_stock_is_409_naming_the_skus() {
    let backends = Backends::healthy().await;
    let problem = backends
        .post_order(&json!({"lines": [
            {"sku": "SKU-00001", "quantity": 25},
            {"sku": "SKU-00002", "quantity": 1},
            {"sku": "SKU-00003", "quantity": 5},
            {"sku": "SKU-00004", "quantity": 1},
        ]}))
        .await
        .assert_problem(409, "insufficient_stock");
    let detail = problem["detail"].as_str().unwrap();
    for short in ["SKU-00002 (0 available)", "SKU-00003 (4 available)", "SKU-00004"] {
        assert!(detail.contains(short), "{detail}");
    }
    assert!(!detail.contains("SKU-00001"), "25 of 25 is enough: {detail}");
    assert!(backends.placed().is_empty());
}

#[tokio::test]
async fn malformed_orders_are_400_invalid_order() {
    let backends = Backends::healthy().await;
    let line = |sku: &str, quantity: Value| json!({"sku": sku, "quantity": quantity});
    let cases = [
        (json!({"lines": [line("SKU-00001", json!(0))]}), "quantity 0"),
        (json!({"lines": [line("SKU-00001", json!(1000))]}), "quantity 1000"),
        (json!({"lines": [line("SKU-00001", json!(-1))]}), "quantity"),
        (json!({"lines": []}), "1 to 50 lines"),
        (json!({"reference": "x"}), "lines"),
        (
            json!({"lines": [line("SKU-00001", json!(1)), line("SKU-00001", json!(2))]}),
            "already on line 1",
        ),
        (json!({"lines": [line("a/b", json!(1))]}), "`sku`"),
        (
            json!({"reference": "r".repeat(65), "lines": [line("SKU-00001", json!(1))]}),
            "`reference`",
        ),
    ];
    for (body, expected) in cases {
        let problem = backends.post_order(&body).await.assert_problem(400, "invalid_order");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains(expected), "{body}: {detail}");
    }
    backends
        .post_order_raw(&[key(ACME_NEW_KEY)], "{\"lines\": [")
        .await
        .assert_problem(400, "invalid_order");
    assert!(backends.placed().is_empty());
}

#[tokio::test]
async fn deeply_nested_orders_are_refused_before_parsing() {
    let backends = Backends::healthy().await;
    // 40 levels in all (the order, its lines, a line, then 37 arrays): the depth check answers
    // before serde sees a byte.
    let deep = format!("{}{}", "[".repeat(37), "]".repeat(37));
    let body = format!(r#"{{"lines": [{{"sku": "SKU-00001", "quantity": 1, "x": {deep}}}]}}"#);
    let problem = backends
        .post_order_raw(&[key(ACME_NEW_KEY)], &body)
        .await
        .assert_problem(400, "json_too_deep");
    assert_eq!(problem["detail"], "the JSON body is nested deeper than 32 levels");
    // Brackets inside strings are text, not nesting: this body gets as far as the order checks.
    let text = "[".repeat(40);
    let body =
        format!(r#"{{"reference": "{text}", "lines": [{{"sku": "SKU-00001", "quantity": 0}}]}}"#);
    let problem = backends
        .post_order_raw(&[key(ACME_NEW_KEY)], &body)
        .await
        .assert_problem(400, "invalid_order");
    assert!(problem["detail"].as_str().unwrap().contains("quantity 0"), "{problem}");
    assert!(backends.placed().is_empty());
}

#[tokio::test]
async fn orders_the_service_refuses_for_their_lines_are_the_partners_to_fix() {
    let backends = Backends::healthy().await;
    let order = |quantity: u32| json!({"lines": [{"sku": "SKU-00001", "quantity": quantity}]});
    backends.post_order(&order(11)).await.assert_problem(400, "invalid_order");
    backends.post_order(&order(12)).await.assert_problem(409, "insufficient_stock");
    // A 403 is not about the lines: the orders service refused us, which is our failure.
    backends.post_order(&order(13)).await.assert_problem(502, "upstream_error");
}

#[tokio::test]
async fn oversized_orders_are_413() {
    let backends = Backends::healthy().await;
    let request = Request::post("/partner/v1/orders")
        .header("content-type", "application/json")
        .header("x-api-key", ACME_NEW_KEY)
        .header("content-length", "4096")
        .body(Body::from(vec![b' '; 4096]))
        .unwrap();
    call(backends.app(), request).await.assert_problem(413, "payload_too_large");
    assert!(backends.placed().is_empty());
}

#[tokio::test]
async fn orders_down_is_502_and_nothing_claims_success() {
    let mut backends = Backends::healthy().await;
    backends.orders = refused_url().await;
    let response =
        backends.post_order(&json!({"lines": [{"sku": "SKU-00001", "quantity": 1}]})).await;
    response.assert_problem(502, "upstream_unavailable");
    assert!(response.header("location").is_none());
}

#[tokio::test]
async fn orders_are_not_placed_when_prices_or_stock_are_unknown() {
    let order = json!({"lines": [{"sku": "SKU-00001", "quantity": 1}]});
    let mut backends = Backends::healthy().await;
    backends.inventory = refused_url().await;
    backends.post_order(&order).await.assert_problem(502, "upstream_unavailable");
    assert!(backends.placed().is_empty());
    let mut backends = Backends::healthy().await;
    backends.catalog = refused_url().await;
    backends.post_order(&order).await.assert_problem(502, "upstream_unavailable");
    assert!(backends.placed().is_empty());
}

// === reading orders ===

#[tokio::test]
async fn partners_read_their_own_orders() {
    let backends = Backends::healthy().await;
    let response = backends.get_as("acme", "/partner/v1/orders/o-1").await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    assert_eq!(
        response.json(),
        json!({
            "id": "o-1", "status": "placed",
            "lines": [{"sku": "SKU-00001", "quantity": 3, "unit_price": eur(199)}],
            "total": eur(597),
            "created_at": "2025-06-01T12:00:00Z",
        })
    );
}

#[tokio::test]
async fn another_partners_order_looks_exactly_like_a_missing_one() {
    let backends = Backends::healthy().await;
    let theirs = backends.get_as("acme", "/partner/v1/orders/o-2").await;
    let missing = backends.get_as("acme", "/partner/v1/orders/o-404").await;
    theirs.assert_problem(404, "not_found");
    missing.assert_problem(404, "not_found");
    assert_eq!(theirs.body, missing.body);
    assert_eq!(backends.get_as("globex", "/partner/v1/orders/o-2").await.status, StatusCode::OK);
    // An encoded slash never reaches the handler: the edge refuses the path itself.
    backends
        .get_as("acme", "/partner/v1/orders/..%2F..%2Fadmin")
        .await
        .assert_problem(400, "invalid_path");
    backends.get_as("acme", "/partner/v1/orders/o%202").await.assert_problem(400, "invalid_id");
}

// === who may call ===

#[tokio::test]
async fn every_partner_route_needs_credentials() {
    let backends = Backends::healthy().await;
    for uri in
        ["/partner/v1/products", "/partner/v1/stock?skus=SKU-00001", "/partner/v1/orders/o-1"]
    {
        let response = backends.get_with(uri, &[]).await;
        response.assert_problem(401, "unauthenticated");
        assert!(response.header("www-authenticate").unwrap().starts_with("Bearer"), "{uri}");
    }
    backends.post_order_raw(&[], &one_line()).await.assert_problem(401, "unauthenticated");
    // A header naming a partner is no credential.
    backends
        .post_order_raw(&[("x-partner-id", "acme".into())], &one_line())
        .await
        .assert_problem(401, "unauthenticated");
    assert!(backends.placed().is_empty());
    assert!(backends.received().is_empty(), "refused before any backend call");
}

#[tokio::test]
async fn both_of_acmes_keys_work_during_a_rotation() {
    let backends = Backends::healthy().await;
    for acme_key in [ACME_OLD_KEY, ACME_NEW_KEY] {
        let response = backends.get_with("/partner/v1/orders/o-1", &[key(acme_key)]).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text());
        let placed = backends.post_order_raw(&[key(acme_key)], &one_line()).await;
        assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.text());
    }
    let customers: Vec<Value> =
        backends.placed().iter().map(|o| o["customer_id"].clone()).collect();
    assert_eq!(customers, ["partner:acme", "partner:acme"]);
}

#[tokio::test]
async fn an_unknown_key_is_refused() {
    let backends = Backends::healthy().await;
    let almost = format!("{}x", &ACME_NEW_KEY[..ACME_NEW_KEY.len() - 1]);
    for unknown in ["pk_test_nobody", almost.as_str()] {
        let response = backends.get_with("/partner/v1/products", &[key(unknown)]).await;
        response.assert_problem(401, "invalid_api_key");
        assert!(response.header("www-authenticate").is_some());
    }
    backends
        .post_order_raw(&[key("pk_test_nobody")], &one_line())
        .await
        .assert_problem(401, "invalid_api_key");
    assert!(backends.placed().is_empty());
}

#[tokio::test]
async fn a_key_and_a_token_together_are_refused() {
    let backends = Backends::healthy().await;
    let acme = backends.identity.partner_token("acme", ALL_SCOPES);
    backends
        .post_order_raw(&[key(ACME_NEW_KEY), token(&acme)], &one_line())
        .await
        .assert_problem(400, "invalid_request");
    assert!(backends.placed().is_empty());
}

#[tokio::test]
async fn globex_reads_but_may_not_place_orders() {
    let backends = Backends::healthy().await;
    let feed = backends.get_with("/partner/v1/products", &[key(GLOBEX_KEY)]).await;
    assert_eq!(feed.status, StatusCode::OK, "{}", feed.text());
    let read_only =
        backends.identity.partner_token("globex", "catalog:read stock:read orders:read");
    for credential in [key(GLOBEX_KEY), token(&read_only)] {
        let problem = backends
            .post_order_raw(&[credential], &one_line())
            .await
            .assert_problem(403, "forbidden");
        assert!(problem["detail"].as_str().unwrap().contains("orders:write"), "{problem}");
    }
    assert!(backends.placed().is_empty());
}

#[tokio::test]
async fn an_acme_client_credentials_token_works() {
    let backends = Backends::healthy().await;
    let acme = backends.identity.partner_token("acme", ALL_SCOPES);
    let feed = backends.get_with("/partner/v1/products?limit=1", &[token(&acme)]).await;
    assert_eq!(feed.status, StatusCode::OK, "{}", feed.text());
    let order = backends.get_with("/partner/v1/orders/o-1", &[token(&acme)]).await;
    assert_eq!(order.status, StatusCode::OK, "{}", order.text());
    let placed = backends.post_order_raw(&[token(&acme)], &one_line()).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.text());
    assert_eq!(backends.placed()[0]["customer_id"], "partner:acme");
}

#[tokio::test]
async fn a_shoppers_token_is_forbidden_and_another_gateways_token_invalid() {
    let backends = Backends::healthy().await;
    // Minted for this gateway's audience, but for a user: the wrong kind of caller.
    let alice = backends.identity.user_token("alice", "partner");
    backends
        .get_with("/partner/v1/products", &[token(&alice)])
        .await
        .assert_problem(403, "forbidden");
    backends.post_order_raw(&[token(&alice)], &one_line()).await.assert_problem(403, "forbidden");
    let web = backends.identity.user_token("alice", "web");
    backends
        .get_with("/partner/v1/products", &[token(&web)])
        .await
        .assert_problem(401, "invalid_token");
    assert!(backends.placed().is_empty());
}

#[tokio::test]
async fn backends_learn_the_partner_but_never_see_its_credentials() {
    let backends = Backends::healthy().await;
    let placed = backends.post_order_raw(&[key(ACME_NEW_KEY)], &one_line()).await;
    assert_eq!(placed.status, StatusCode::CREATED, "{}", placed.text());
    let acme = backends.identity.partner_token("acme", ALL_SCOPES);
    let read = backends.get_with("/partner/v1/orders/o-1", &[token(&acme)]).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text());

    let received = backends.received();
    // The catalog's prices, the order placed, the order read back.
    assert_eq!(received.len(), 3, "{received:?}");
    for headers in &received {
        assert!(headers.get("x-api-key").is_none(), "the partner's key leaked: {headers:?}");
        assert!(headers.get("authorization").is_none(), "the partner's token leaked: {headers:?}");
        assert_eq!(headers["x-portico-subject"], "acme");
        assert_eq!(headers["x-portico-client-kind"], "partner");
    }
    assert_eq!(received[0]["x-portico-plan"], "gold", "API keys carry the partner's plan");
}

// === the rest of the surface ===

#[tokio::test]
async fn unknown_routes_are_problems() {
    let backends = Backends::healthy().await;
    backends.get("/partner/v2/products").await.assert_problem(404, "no_route");
    let request = Request::delete("/partner/v1/orders/o-1").body(Body::empty()).unwrap();
    call(backends.app(), request).await.assert_problem(405, "method_not_allowed");
}

#[tokio::test]
async fn serves_its_openapi_document_and_health() {
    let backends = Backends::healthy().await;
    // Integrators read the document before they hold credentials; probes hold none.
    let response = backends.get_with("/openapi.json", &[]).await;
    assert!(!response.text().contains("X-Partner-Id"), "the interim header is gone");
    let doc = response.json();
    assert_eq!(doc["info"]["title"], "Portico partner API");
    assert_eq!(doc["info"]["version"], "1.0.0");
    let description = doc["info"]["description"].as_str().unwrap();
    assert!(description.contains("X-Api-Key") && description.contains("/oauth/token"));
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(
        schemes["api_key"],
        json!({"type": "apiKey", "in": "header", "name": "X-Api-Key",
        "description": "A partner API key, issued by us with the partner's scopes"})
    );
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    for (path, method, scope) in [
        ("/partner/v1/products", "get", "catalog:read"),
        ("/partner/v1/stock", "get", "stock:read"),
        ("/partner/v1/orders", "post", "orders:write"),
        ("/partner/v1/orders/{id}", "get", "orders:read"),
    ] {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        assert_eq!(operation["tags"], json!(["partner"]));
        assert_eq!(
            operation["security"],
            json!([{"api_key": [scope]}, {"bearer": [scope]}]),
            "{method} {path}"
        );
        for status in ["401", "403"] {
            assert!(operation["responses"][status].is_object(), "{method} {path} {status}");
        }
    }
    let money = &doc["components"]["schemas"]["Money"]["properties"];
    assert_eq!(money["amount_minor"]["type"], "integer");
    assert_eq!(backends.get_with("/healthz", &[]).await.json()["status"], "ok");
    assert_eq!(backends.get_with("/readyz", &[]).await.json()["status"], "ready");
}

#[tokio::test]
async fn a_partner_sees_its_plan_and_asking_never_uses_it_up() {
    let backends = Backends::healthy().await;
    let mut toml = gateway_toml(
        &[("catalog", &backends.catalog), ("orders", &backends.orders)],
        &[("inventory", &backends.inventory)],
    );
    toml.push_str(&backends.identity.auth_toml("partner", true));
    // globex may make two calls today; acme's plan is generous.
    toml.push_str("[plans.gold]\nrate = 100\nburst = 100\n");
    toml.push_str("[plans.basic]\nrate = 0.001\nburst = 10\nquota_per_day = 2\n");
    let app = crate::app(&GatewayConfig::from_toml(&toml).unwrap()).unwrap().into_router();
    let as_globex =
        |uri: &str| Request::get(uri).header("x-api-key", GLOBEX_KEY).body(Body::empty()).unwrap();
    for _ in 0..2 {
        let admitted = call(app.clone(), as_globex("/partner/v1/products")).await;
        assert_eq!(admitted.status, 200);
        assert!(admitted.headers["ratelimit"].to_str().unwrap().contains("\"day\";r="));
    }
    let refused = call(app.clone(), as_globex("/partner/v1/products")).await;
    refused.assert_problem(429, "rate_limited");
    assert!(refused.headers.contains_key("retry-after"));
    // Usage is answered while the plan is used up, and asking again changes nothing.
    for _ in 0..3 {
        let usage = call(app.clone(), as_globex("/partner/v1/usage")).await;
        assert_eq!(usage.status, 200);
        let usage = usage.json();
        assert_eq!(usage["partner"], "globex");
        assert_eq!(usage["plan"], "basic");
        assert_eq!(usage["quota_per_day"], 2);
        assert_eq!(usage["used_today"], 2, "refusals and usage queries do not count");
        assert_eq!(usage["remaining_today"], 0);
        assert!(usage["resets_at"].as_str().unwrap().ends_with("T00:00:00Z"), "{usage}");
    }
    // acme's plan has no daily quota: none is reported.
    let acme = Request::get("/partner/v1/usage").header("x-api-key", ACME_NEW_KEY);
    let usage = call(app.clone(), acme.body(Body::empty()).unwrap()).await.json();
    assert_eq!(usage["plan"], "gold");
    assert!(usage.get("quota_per_day").is_none(), "{usage}");
    // A partner with no plan at all is told so.
    let plain = Backends::healthy().await;
    let none = plain.get_as("globex", "/partner/v1/usage").await;
    none.assert_problem(404, "no_plan");
}

#[tokio::test]
async fn a_client_with_only_tokens_has_the_plan_config_gives_its_id() {
    let backends = Backends::healthy().await;
    let mut toml = gateway_toml(
        &[("catalog", &backends.catalog), ("orders", &backends.orders)],
        &[("inventory", &backends.inventory)],
    );
    toml.push_str(&backends.identity.auth_toml("partner", true));
    let plans = "[plans.gold]\nrate = 100\nburst = 100\n[plans.basic]\nrate = 0.001\nburst = 2\n";
    let with = |client_plans: &str| format!("{toml}\n[auth.client_plans]\n{client_plans}\n{plans}");
    let app = crate::app(&GatewayConfig::from_toml(&with("initech = \"basic\"")).unwrap())
        .unwrap()
        .into_router();
    let token = backends.identity.partner_token("initech", "catalog:read");
    let call_as_initech = || {
        let request =
            Request::get("/partner/v1/products").header("authorization", format!("Bearer {token}"));
        call(app.clone(), request.body(Body::empty()).unwrap())
    };
    assert_eq!(call_as_initech().await.status, 200);
    assert_eq!(call_as_initech().await.status, 200);
    call_as_initech().await.assert_problem(429, "rate_limited");
    // A plan nobody defined, or one that differs from the client's own keys', is refused.
    for (client_plans, key) in [
        ("initech = \"platinum\"", "auth.client_plans.initech"),
        ("acme = \"basic\"", "auth.client_plans.acme"),
    ] {
        let error = GatewayConfig::from_toml(&with(client_plans)).unwrap_err();
        assert!(error.to_string().contains(key), "{error}");
    }
}
