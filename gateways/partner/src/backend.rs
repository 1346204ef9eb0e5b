//! Tolerant readers of the backends' JSON (see `shared/SERVICES.md`): only the fields this
//! gateway uses, so a backend may add fields freely, while a renamed one is a compile-time
//! change here rather than a silently missing key in a partner's integration.

pub use portico_contracts::money::Money;
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
pub struct Image {
    /// The full-size original; partners render their own variants.
    pub url: String,
}

#[derive(Debug, Deserialize)]
pub struct Product {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub brand: String,
    pub category: String,
    pub description: String,
    pub price: Money,
    #[serde(default)]
    pub images: Vec<Image>,
}

/// A catalog listing: one page of the feed, or the answer to a `skus=` batch lookup (which has
/// no next page).
#[derive(Debug, Deserialize)]
pub struct ProductPage {
    pub items: Vec<Product>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, Serialize)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: u32,
    pub unit_price: Money,
}

#[derive(Debug, Deserialize)]
pub struct Order {
    pub id: String,
    pub customer_id: String,
    pub status: String,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub created_at: String,
}

/// The body of the orders service's `POST /orders`.
#[derive(Debug, Serialize)]
pub struct NewOrder {
    pub customer_id: String,
    pub lines: Vec<OrderLine>,
}
