//! `GET /api/orders?customer=`: a customer's order history (required), each line shown with its
//! product card from one batch catalog call (optional: without it, lines show SKUs only).
//!
//! Until authentication lands, the customer is named in the query; the gateway will take it
//! from the verified token instead, and refuse anyone else's orders.

use std::{collections::HashMap, sync::Arc};

use axum::extract::{Query, State};
use portico_edge::{Composed, Degraded, EdgeError, compose, params};
use serde::Deserialize;

use super::products_by;
use crate::{
    AppState,
    backend::OrderList,
    view::{Order, OrderHistory, OrderLine, ProductCard},
};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// The customer, e.g. `alice`.
    pub customer: String,
}

/// A customer's orders, newest first.
#[utoipa::path(get, path = "/api/orders", tag = "web", params(HistoryQuery),
    responses(
        (status = 200, description = "The orders with their products", body = OrderHistory),
        (status = 400, description = "Malformed customer", body = portico_edge::error::Problem),
        (status = 502, description = "The orders service failed", body = portico_edge::error::Problem),
    ))]
pub async fn order_history(
    State(state): State<Arc<AppState>>,
    Query(query): Query<HistoryQuery>,
) -> Result<Composed<OrderHistory>, EdgeError> {
    let customer = params::id("customer", &query.customer)?;
    let orders: OrderList = compose::required(
        "orders",
        state.orders.get("/orders").query(&[("customer_id", customer), ("limit", "20")]).fetch(),
    )
    .await?;

    let mut skus: Vec<String> =
        orders.items.iter().flat_map(|o| o.lines.iter().map(|l| l.sku.clone())).collect();
    skus.sort_unstable();
    skus.dedup();
    // The catalog batch takes at most 100 SKUs; 20 orders rarely reach that, and the rest of
    // the lines simply show without a card.
    skus.truncate(100);
    let products = compose::optional("products", products_by(&state.catalog, "skus", &skus)).await;

    let mut degraded = Degraded::default();
    let cards: HashMap<String, ProductCard> = degraded
        .take(products)
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p.sku.clone(), ProductCard::from(p)))
        .collect();
    let orders = orders
        .items
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
    Ok(Composed::new(
        OrderHistory { customer: customer.to_owned(), orders, degraded: degraded.clone() },
        degraded,
    ))
}
