//! `GET /api/orders`: the signed-in customer's order history (required), and
//! `GET /api/orders/{id}`: one of their orders. Each line is shown with its product card from
//! one batch catalog call (optional: without it, lines show SKUs only).
//!
//! The customer is always the verified caller ([`Customer`]); nothing in the request can name
//! another. Another customer's order is answered exactly like a missing one, so order ids
//! cannot be probed.

use std::{collections::HashMap, sync::Arc};

use axum::extract::{Path, State};
use portico_edge::{Composed, Degraded, EdgeError, compose, params};

use super::products_by;
use crate::{
    AppState,
    backend::{self, OrderList},
    customer::Customer,
    view::{Order, OrderDetail, OrderHistory, OrderLine, ProductCard},
};

/// How many orders the history shows.
const HISTORY_LIMIT: &str = "20";
/// The most SKUs one catalog batch call takes.
const MAX_BATCH: usize = 100;

/// The signed-in customer's orders, newest first.
#[utoipa::path(get, path = "/api/orders", tag = "web",
    security(("bearer" = ["orders:read"])),
    responses(
        (status = 200, description = "The caller's orders with their products", body = OrderHistory),
        portico_edge::openapi::Unauthorized,
        portico_edge::openapi::Forbidden,
        portico_edge::openapi::UpstreamFailure,
        portico_edge::openapi::Unavailable,
        portico_edge::openapi::UpstreamTimeout,
    ))]
pub async fn order_history(
    State(state): State<Arc<AppState>>,
    customer: Customer,
) -> Result<Composed<OrderHistory>, EdgeError> {
    let orders: OrderList = compose::required(
        "orders",
        state
            .orders
            .get("/orders")
            .query(&[("customer_id", customer.id()), ("limit", HISTORY_LIMIT)])
            .fetch(),
    )
    .await?;
    // The orders service filters by customer already; checking again means a fault there can
    // never show one customer another's orders.
    let own: Vec<backend::Order> =
        orders.items.into_iter().filter(|o| o.customer_id == customer.id()).collect();
    let (orders, degraded) = with_products(&state, own).await;
    Ok(Composed::new(
        OrderHistory { customer: customer.id().to_owned(), orders, degraded: degraded.clone() },
        degraded,
    ))
}

/// One of the signed-in customer's orders.
#[utoipa::path(get, path = "/api/orders/{id}", tag = "web",
    params(("id" = String, Path, description = "Order id, e.g. `o-000001`")),
    security(("bearer" = ["orders:read"])),
    responses(
        (status = 200, description = "The order with its products; `degraded` names missing \
parts", body = OrderDetail),
        (status = 400, description = "A malformed id (`invalid_id`)", body = portico_edge::error::Problem,
         content_type = "application/problem+json"),
        portico_edge::openapi::Unauthorized,
        portico_edge::openapi::Forbidden,
        (status = 404, description = "No such order for this customer (`not_found`), whether \
it does not exist or is someone else's", body = portico_edge::error::Problem,
         content_type = "application/problem+json"),
        portico_edge::openapi::UpstreamFailure,
        portico_edge::openapi::Unavailable,
        portico_edge::openapi::UpstreamTimeout,
    ))]
pub async fn get_order(
    State(state): State<Arc<AppState>>,
    customer: Customer,
    Path(id): Path<String>,
) -> Result<Composed<OrderDetail>, EdgeError> {
    let id = params::id("id", &id)?;
    let order: backend::Order =
        compose::required("order", state.orders.get(&format!("/orders/{id}")).fetch())
            .await
            .map_err(|error| if error.code() == "not_found" { order_not_found() } else { error })?;
    // Another customer's order does not exist for this one: the same answer as a missing
    // order, so ids cannot be probed.
    if order.customer_id != customer.id() {
        return Err(order_not_found());
    }
    let (orders, degraded) = with_products(&state, vec![order]).await;
    let order = orders.into_iter().next().ok_or_else(order_not_found)?;
    Ok(Composed::new(OrderDetail { order, degraded: degraded.clone() }, degraded))
}

/// The one answer for an order this customer cannot see, whether or not it exists.
fn order_not_found() -> EdgeError {
    EdgeError::not_found("no order with this id")
}

/// The orders as the web shows them: every line with its product card, all from one catalog
/// batch call. Without the catalog the orders still show, by SKU, and `products` is degraded.
async fn with_products(state: &AppState, orders: Vec<backend::Order>) -> (Vec<Order>, Degraded) {
    let mut skus: Vec<String> =
        orders.iter().flat_map(|o| o.lines.iter().map(|l| l.sku.clone())).collect();
    skus.sort_unstable();
    skus.dedup();
    // 20 orders rarely reach the batch limit; lines beyond it simply show without a card.
    skus.truncate(MAX_BATCH);
    let products = compose::optional("products", products_by(&state.catalog, "skus", &skus)).await;

    let mut degraded = Degraded::default();
    let cards: HashMap<String, ProductCard> = degraded
        .take(products)
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.sku.clone(), ProductCard::from(p)))
        .collect();
    let orders = orders
        .into_iter()
        .map(|o| Order {
            id: o.id,
            status: o.status,
            created_at: o.created_at,
            total: o.total.into(),
            lines: o
                .lines
                .into_iter()
                .map(|l| OrderLine {
                    product: cards.get(&l.sku).cloned(),
                    sku: l.sku,
                    quantity: l.quantity,
                    unit_price: l.unit_price.into(),
                })
                .collect(),
        })
        .collect();
    (orders, degraded)
}
