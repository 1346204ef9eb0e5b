//! The partner gateway driven in-process against real mock backends on loopback.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    body::Body,
    extract::{Path, Query, State},
    http::{Request, StatusCode},
    routing::get,
};
use portico_edge::GatewayConfig;
use portico_testkit::{
    MockServer, TestResponse, call, fixtures, gateway_toml, get as get_req, hanging_server,
    inventory::{MockInventory, Script},
    refused_url,
};
use serde_json::{Value, json};

/// How many products the mock catalog has (`p-00001` … `p-00005`).
const PRODUCTS: u32 = 5;

/// What the mock orders service was asked to place.
type Placed = Arc<Mutex<Vec<Value>>>;

struct Backends {
    catalog: String,
    orders: String,
    inventory: String,
    placed: Placed,
    _servers: (Option<MockServer>, Option<MockServer>, Option<MockInventory>),
}

/// The catalog's `GET /products`: pages with cursors `o{offset}`, or a `skus=` batch lookup.
/// The cursor `fail` makes it answer 500, anything else it did not issue 400.
async fn catalog() -> MockServer {
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
    MockServer::start(Router::new().route("/products", get(list))).await
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
/// (globex's).
async fn orders(placed: Placed) -> MockServer {
    async fn place(
        State(placed): State<Placed>,
        Json(body): Json<Value>,
    ) -> (StatusCode, Json<Value>) {
        placed.lock().unwrap().push(body.clone());
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
            .with_state(placed),
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
        let placed = Placed::default();
        let (c, o, i) = (catalog().await, orders(placed.clone()).await, inventory().await);
        Self {
            catalog: c.url(),
            orders: o.url(),
            inventory: i.url(),
            placed,
            _servers: (Some(c), Some(o), Some(i)),
        }
    }

    fn app(&self) -> Router {
        let toml = gateway_toml(
            &[("catalog", &self.catalog), ("orders", &self.orders)],
            &[("inventory", &self.inventory)],
        );
        crate::app(&GatewayConfig::from_toml(&toml).unwrap()).unwrap()
    }

    async fn get(&self, uri: &str) -> TestResponse {
        call(self.app(), get_req(uri)).await
    }

    /// `GET` as partner `partner`.
    async fn get_as(&self, partner: &str, uri: &str) -> TestResponse {
        let request =
            Request::get(uri).header("x-partner-id", partner).body(Body::empty()).unwrap();
        call(self.app(), request).await
    }

    /// `POST /partner/v1/orders` with a raw body, as `partner` when given.
    async fn post_order_raw(&self, partner: Option<&str>, body: &str) -> TestResponse {
        let mut request =
            Request::post("/partner/v1/orders").header("content-type", "application/json");
        if let Some(partner) = partner {
            request = request.header("x-partner-id", partner);
        }
        call(self.app(), request.body(Body::from(body.to_owned())).unwrap()).await
    }

    async fn post_order(&self, body: &Value) -> TestResponse {
        self.post_order_raw(Some("acme"), &body.to_string()).await
    }

    fn placed(&self) -> Vec<Value> {
        self.placed.lock().unwrap().clone()
    }
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
        .post_order_raw(Some("acme"), "{\"lines\": [")
        .await
        .assert_problem(400, "invalid_order");
    assert!(backends.placed().is_empty());
}

#[tokio::test]
async fn orders_need_a_partner() {
    let backends = Backends::healthy().await;
    let body = json!({"lines": [{"sku": "SKU-00001", "quantity": 1}]}).to_string();
    backends.post_order_raw(None, &body).await.assert_problem(400, "missing_partner");
    backends.post_order_raw(Some("acme:admin"), &body).await.assert_problem(400, "invalid_id");
    backends.get("/partner/v1/orders/o-1").await.assert_problem(400, "missing_partner");
    assert!(backends.placed().is_empty());
}

#[tokio::test]
async fn oversized_orders_are_413() {
    let backends = Backends::healthy().await;
    let request = Request::post("/partner/v1/orders")
        .header("content-type", "application/json")
        .header("x-partner-id", "acme")
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
    backends
        .get_as("acme", "/partner/v1/orders/..%2F..%2Fadmin")
        .await
        .assert_problem(400, "invalid_id");
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
    let doc = backends.get("/openapi.json").await.json();
    assert_eq!(doc["info"]["title"], "Portico partner API");
    assert_eq!(doc["info"]["version"], "1.0.0");
    assert!(doc["info"]["description"].as_str().unwrap().contains("X-Partner-Id"));
    for (path, method) in [
        ("/partner/v1/products", "get"),
        ("/partner/v1/stock", "get"),
        ("/partner/v1/orders", "post"),
        ("/partner/v1/orders/{id}", "get"),
    ] {
        let operation = &doc["paths"][path][method];
        assert!(operation.is_object(), "{method} {path} is not documented");
        assert_eq!(operation["tags"], json!(["partner"]));
    }
    let money = &doc["components"]["schemas"]["Money"]["properties"];
    assert_eq!(money["amount_minor"]["type"], "integer");
    assert_eq!(backends.get("/healthz").await.json()["status"], "ok");
    assert_eq!(backends.get("/readyz").await.json()["status"], "ready");
}
