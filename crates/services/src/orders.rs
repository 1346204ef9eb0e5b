//! The orders service (HTTP/JSON): place an order, fetch it, list a customer's orders newest
//! first. Orders live in memory for the life of the process; the demo starts with a few orders
//! for `alice` and `bob` so screens have history to show.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::data::{Money, Shop, rfc3339};
use crate::problem::Problem;
use crate::{http, query};

/// The orders routes over a store.
pub fn router(store: Arc<OrderStore>) -> Router {
    http::finish(
        Router::new()
            .route("/orders", get(list).post(place))
            .route("/orders/{id}", get(fetch))
            .with_state(store),
    )
}

/// An order as served by `GET /orders/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Order {
    pub id: String,
    pub customer_id: String,
    pub status: Status,
    pub lines: Vec<Line>,
    pub total: Money,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Line {
    pub sku: String,
    pub quantity: u32,
    pub unit_price: Money,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Placed,
    Paid,
    Shipped,
    Delivered,
}

/// The body of `POST /orders`.
#[derive(Debug, Clone, Deserialize)]
pub struct NewOrder {
    pub customer_id: String,
    pub lines: Vec<Line>,
}

/// Quantities a single order line may have.
pub const QUANTITY: std::ops::RangeInclusive<u32> = 1..=999;

// === OrderStore ===

/// A demo order: customer, status, creation time (Unix seconds), (product index, quantity).
type Seed = (&'static str, Status, u64, &'static [(usize, u32)]);

/// The in-memory order store. A plain mutex is enough: every critical section is a few vector
/// operations and never awaits.
#[derive(Debug, Default)]
pub struct OrderStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// In creation order, so the newest is last.
    orders: Vec<(u64, Order)>,
    last_id: u64,
}

impl OrderStore {
    /// An empty store; ids start at `o-000001`.
    pub fn new() -> Self {
        Self::default()
    }

    /// A store holding the demo's orders: three for `alice`, two for `bob`, with fixed
    /// timestamps and real SKUs and prices from `shop` (none if the shop is empty).
    pub fn seeded(shop: &Shop) -> Self {
        let store = Self::new();
        let seeds: [Seed; 5] = [
            // 2025-09-02T10:15:00Z
            ("alice", Status::Delivered, 1_756_808_100, &[(41, 1), (1_203, 2)]),
            // 2025-10-20T18:40:00Z
            ("bob", Status::Delivered, 1_760_985_600, &[(7, 1)]),
            // 2025-11-14T08:05:00Z
            ("alice", Status::Shipped, 1_763_107_500, &[(2_718, 1)]),
            // 2025-12-01T12:30:00Z
            ("bob", Status::Paid, 1_764_592_200, &[(314, 3), (4_242, 1)]),
            // 2025-12-19T21:10:00Z
            ("alice", Status::Placed, 1_766_178_600, &[(999, 1), (16, 2), (3_001, 1)]),
        ];
        let count = shop.products().len();
        if count == 0 {
            return store;
        }
        for (customer, status, created, picks) in seeds {
            let lines: Vec<Line> = picks
                .iter()
                .map(|&(index, quantity)| {
                    let product = &shop.products()[index % count];
                    Line { sku: product.sku.clone(), quantity, unit_price: product.price.clone() }
                })
                .collect();
            if lines.is_empty() {
                continue;
            }
            let new = NewOrder { customer_id: customer.to_owned(), lines };
            // Seeded lines come from the catalog, so they always validate.
            if let Ok(total) = validate(&new) {
                store.insert(new, total, status, created);
            }
        }
        store
    }

    /// Validates and stores a new order, stamped with the current time.
    pub fn place(&self, new: NewOrder) -> Result<Order, Problem> {
        let total = validate(&new)?;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Ok(self.insert(new, total, Status::Placed, now))
    }

    pub fn get(&self, id: &str) -> Option<Order> {
        self.lock().orders.iter().find(|(_, o)| o.id == id).map(|(_, o)| o.clone())
    }

    /// Orders, newest first, optionally of one customer only.
    pub fn list(&self, customer_id: Option<&str>, limit: usize) -> Vec<Order> {
        let inner = self.lock();
        let mut orders: Vec<&(u64, Order)> = inner
            .orders
            .iter()
            .filter(|(_, o)| customer_id.is_none_or(|c| o.customer_id == c))
            .collect();
        // The clock may step backwards; ties and steps fall back to creation order.
        orders.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.id.cmp(&a.1.id)));
        orders.into_iter().take(limit).map(|(_, o)| o.clone()).collect()
    }

    fn insert(&self, new: NewOrder, total: Money, status: Status, created: u64) -> Order {
        let mut inner = self.lock();
        inner.last_id += 1;
        let order = Order {
            id: format!("o-{:06}", inner.last_id),
            customer_id: new.customer_id,
            status,
            lines: new.lines,
            total,
            created_at: rfc3339(created),
        };
        inner.orders.push((created, order.clone()));
        order
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // No critical section can leave the store half-updated, so a poisoned lock is safe.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Checks an order and computes its total.
fn validate(order: &NewOrder) -> Result<Money, Problem> {
    let invalid = |detail: String| Problem::bad_request("invalid_order", detail);
    if order.customer_id.trim().is_empty() {
        return Err(invalid("customer_id must not be empty".into()));
    }
    let Some(first) = order.lines.first() else {
        return Err(invalid("the order has no lines".into()));
    };
    let currency = &first.unit_price.currency;
    let mut total: u64 = 0;
    for (n, line) in order.lines.iter().enumerate() {
        let n = n + 1;
        if line.sku.trim().is_empty() {
            return Err(invalid(format!("line {n}: sku must not be empty")));
        }
        if !QUANTITY.contains(&line.quantity) {
            return Err(invalid(format!(
                "line {n}: quantity {} is outside {}..={}",
                line.quantity,
                QUANTITY.start(),
                QUANTITY.end()
            )));
        }
        let line_currency = &line.unit_price.currency;
        if line_currency.len() != 3 || !line_currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(invalid(format!(
                "line {n}: currency {line_currency:?} is not an ISO 4217 code"
            )));
        }
        if line_currency != currency {
            return Err(invalid(format!(
                "line {n}: currency {line_currency} differs from {currency}; an order has one currency"
            )));
        }
        total = line
            .unit_price
            .amount_minor
            .checked_mul(u64::from(line.quantity))
            .and_then(|amount| total.checked_add(amount))
            .ok_or_else(|| invalid(format!("line {n}: the order total is too large")))?;
    }
    Ok(Money { amount_minor: total, currency: currency.clone() })
}

// === Handlers ===

async fn place(
    State(store): State<Arc<OrderStore>>,
    body: Result<Json<NewOrder>, JsonRejection>,
) -> Result<(StatusCode, Json<Order>), Problem> {
    let Json(new) = body.map_err(|e| Problem::bad_request("invalid_order", e.body_text()))?;
    let order = store.place(new)?;
    Ok((StatusCode::CREATED, Json(order)))
}

async fn fetch(
    State(store): State<Arc<OrderStore>>,
    Path(id): Path<String>,
) -> Result<Json<Order>, Problem> {
    store.get(&id).map(Json).ok_or_else(|| Problem::not_found(format!("no order with id {id}")))
}

#[derive(Debug, Deserialize)]
struct ListParams {
    customer_id: Option<String>,
    limit: Option<String>,
}

#[derive(Debug, Serialize)]
struct Orders {
    items: Vec<Order>,
}

async fn list(
    State(store): State<Arc<OrderStore>>,
    params: Result<Query<ListParams>, QueryRejection>,
) -> Result<Json<Orders>, Problem> {
    let Query(params) = params.map_err(query::rejected)?;
    let limit = query::int_in("limit", params.limit.as_deref(), 20, 1..=100)? as usize;
    let customer = params.customer_id.as_deref().filter(|c| !c.is_empty());
    Ok(Json(Orders { items: store.list(customer, limit) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DemoParams;
    use crate::http::testing::{assert_problem, get, post_json};
    use serde_json::{Value, json};

    fn app() -> Router {
        let shop = Shop::generate(&DemoParams::default());
        router(Arc::new(OrderStore::seeded(&shop)))
    }

    fn ids(answer: &Value) -> Vec<&str> {
        answer["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|o| o["id"].as_str().expect("id"))
            .collect()
    }

    #[tokio::test]
    async fn demo_starts_with_orders_for_alice_and_bob() {
        let app = app();
        let alice = get(&app, "/orders?customer_id=alice").await;
        assert_eq!(alice.status, StatusCode::OK);
        assert_eq!(ids(&alice.json), ["o-000005", "o-000003", "o-000001"]);
        let bob = get(&app, "/orders?customer_id=bob").await;
        assert_eq!(ids(&bob.json), ["o-000004", "o-000002"]);
        let first = &alice.json["items"][2];
        assert_eq!(first["status"], "delivered");
        assert_eq!(first["created_at"], "2025-09-02T10:15:00Z");
        assert_eq!(first["lines"][0]["sku"], "SKU-00042");
    }

    #[tokio::test]
    async fn place_then_get_then_list() {
        let app = app();
        let body = json!({
            "customer_id": "alice",
            "lines": [
                {"sku": "SKU-00001", "quantity": 2, "unit_price": {"amount_minor": 1999, "currency": "EUR"}},
                {"sku": "SKU-00002", "quantity": 1, "unit_price": {"amount_minor": 500, "currency": "EUR"}}
            ]
        });
        let placed = post_json(&app, "/orders", &body).await;
        assert_eq!(placed.status, StatusCode::CREATED, "{:?}", placed.json);
        assert_eq!(placed.json["id"], "o-000006");
        assert_eq!(placed.json["status"], "placed");
        assert_eq!(placed.json["total"], json!({"amount_minor": 4498, "currency": "EUR"}));
        assert_eq!(placed.json["lines"], body["lines"]);

        let fetched = get(&app, "/orders/o-000006").await;
        assert_eq!(fetched.status, StatusCode::OK);
        assert_eq!(fetched.json, placed.json);

        let listed = get(&app, "/orders?customer_id=alice&limit=2").await;
        assert_eq!(ids(&listed.json), ["o-000006", "o-000005"]);
    }

    #[tokio::test]
    async fn invalid_orders_are_rejected() {
        let app = app();
        let line = |quantity: u32, currency: &str| {
            json!({"sku": "SKU-00001", "quantity": quantity,
                   "unit_price": {"amount_minor": 100, "currency": currency}})
        };
        let cases = [
            (json!({"customer_id": "alice", "lines": []}), "no lines"),
            (json!({"customer_id": "alice", "lines": [line(0, "EUR")]}), "quantity 0"),
            (json!({"customer_id": "alice", "lines": [line(1000, "EUR")]}), "quantity 1000"),
            (
                json!({"customer_id": "alice", "lines": [line(1, "EUR"), line(1, "USD")]}),
                "currency USD differs",
            ),
            (json!({"customer_id": "", "lines": [line(1, "EUR")]}), "customer_id"),
            (json!({"customer_id": "alice"}), "lines"),
        ];
        for (body, needle) in cases {
            let answer = post_json(&app, "/orders", &body).await;
            assert_problem(&answer, StatusCode::BAD_REQUEST, "invalid_order");
            let detail = answer.json["detail"].as_str().expect("detail");
            assert!(detail.contains(needle), "{detail:?} lacks {needle:?}");
        }
        // Nothing was stored.
        assert_eq!(get(&app, "/orders/o-000006").await.status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn unknown_order_and_bad_limit() {
        let app = app();
        let missing = get(&app, "/orders/o-999999").await;
        assert_problem(&missing, StatusCode::NOT_FOUND, "not_found");
        let bad = get(&app, "/orders?customer_id=alice&limit=101").await;
        assert_problem(&bad, StatusCode::BAD_REQUEST, "invalid_parameter");
        let all = get(&app, "/orders?limit=100").await;
        assert_eq!(ids(&all.json).len(), 5);
    }
}
