//! The partner API's DTOs: stable contracts, not views for a screen. Field names are explicit
//! snake_case and never change within v1; money is integer minor units plus a currency, because
//! partners compute with prices rather than display them; nothing is pre-formatted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::backend;

/// An amount of money in the currency's minor unit (cents for EUR): `12999` EUR is €129.99.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Money {
    /// The amount in minor units; an integer, never a float.
    #[schema(example = 12999)]
    pub amount_minor: i64,
    /// ISO 4217 currency code.
    #[schema(example = "EUR")]
    pub currency: String,
}

/// One product of the feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedItem {
    /// Product id, e.g. `p-00042`.
    pub id: String,
    /// Stock-keeping unit, as used by `/partner/v1/stock` and in orders.
    pub sku: String,
    pub name: String,
    pub brand: String,
    pub category: String,
    /// The full description, plain text.
    pub description: String,
    /// The current price; orders are always charged at the price at the time of ordering.
    pub price: Money,
    /// Full-size image URLs, main image first.
    pub image_urls: Vec<String>,
    /// Units available across all warehouses; absent when stock is unknown (see `degraded`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<u32>,
}

/// One page of the product feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Feed {
    pub items: Vec<FeedItem>,
    /// Pass as `cursor` to get the next page; `null` on the last page. Opaque: do not parse or
    /// build cursors.
    #[schema(required = true)]
    pub next_cursor: Option<String>,
    /// Parts missing because a backend failed: `stock` (items then lack `available`).
    #[schema(value_type = Vec<String>)]
    pub degraded: portico_edge::Degraded,
}

/// The stock of one SKU.
#[derive(Debug, Serialize, ToSchema)]
pub struct StockItem {
    pub sku: String,
    /// Units available across all warehouses.
    pub available: u32,
    /// Units available per warehouse code, e.g. `{"ams": 3, "fra": 0}`.
    pub warehouses: BTreeMap<String, u32>,
}

/// Stock of the SKUs asked for.
#[derive(Debug, Serialize, ToSchema)]
pub struct StockReport {
    /// The known SKUs, in the order asked for.
    pub items: Vec<StockItem>,
    /// SKUs asked for that do not exist.
    pub unknown_skus: Vec<String>,
}

/// One line of a new order.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PlaceOrderLine {
    /// The SKU to order; each SKU at most once per order.
    pub sku: String,
    /// 1 to 999 units.
    #[schema(minimum = 1, maximum = 999)]
    pub quantity: u32,
}

/// A new order. Prices are never sent: every line is charged at the catalog's current price.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PlaceOrder {
    /// The partner's own reference for this order, at most 64 characters. It is echoed in the
    /// `201` response only and not stored: keep the returned `id` to find the order again.
    #[serde(default)]
    pub reference: Option<String>,
    /// 1 to 50 lines.
    pub lines: Vec<PlaceOrderLine>,
}

/// One line of an order, at the price it was placed at.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: u32,
    /// The price of one unit when the order was placed.
    pub unit_price: Money,
}

/// An order placed by the calling partner.
#[derive(Debug, Serialize, ToSchema)]
pub struct Order {
    /// Order id, as accepted by `/partner/v1/orders/{id}`.
    pub id: String,
    /// The partner's own reference, echoed only in the response to `POST /partner/v1/orders`
    /// (it is not stored, so `GET` does not return it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// `placed`, `paid`, `shipped` or `delivered`; later versions of v1 may add values, which
    /// clients should treat as "in progress".
    #[schema(example = "placed")]
    pub status: String,
    pub lines: Vec<OrderLine>,
    /// The sum of `quantity × unit_price` over all lines.
    pub total: Money,
    /// When the order was placed, RFC 3339 UTC.
    #[schema(example = "2025-06-01T12:00:00Z")]
    pub created_at: String,
}

// === mapping ===

impl From<backend::Money> for Money {
    fn from(money: backend::Money) -> Self {
        Self { amount_minor: money.amount_minor, currency: money.currency }
    }
}

impl FeedItem {
    /// A catalog product with its stock, when stock is known.
    pub fn new(product: backend::Product, available: Option<u32>) -> Self {
        Self {
            id: product.id,
            sku: product.sku,
            name: product.name,
            brand: product.brand,
            category: product.category,
            description: product.description,
            price: product.price.into(),
            image_urls: product.images.into_iter().map(|i| i.url).collect(),
            available,
        }
    }
}

impl Order {
    /// The partner's view of a backend order; `reference` only when just placed.
    pub fn new(order: backend::Order, reference: Option<String>) -> Self {
        Self {
            id: order.id,
            reference,
            status: order.status,
            lines: order
                .lines
                .into_iter()
                .map(|l| OrderLine {
                    sku: l.sku,
                    quantity: l.quantity,
                    unit_price: l.unit_price.into(),
                })
                .collect(),
            total: order.total.into(),
            created_at: order.created_at,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn eur(amount_minor: i64) -> backend::Money {
        backend::Money { amount_minor, currency: "EUR".into() }
    }

    #[test]
    fn feed_items_carry_full_size_images_and_raw_money() {
        let product = backend::Product {
            id: "p-1".into(),
            sku: "SKU-1".into(),
            name: "Jacket".into(),
            brand: "Northwind".into(),
            category: "outdoor".into(),
            description: "Warm.".into(),
            price: eur(12999),
            images: vec![
                backend::Image { url: "a.jpg".into() },
                backend::Image { url: "b.jpg".into() },
            ],
        };
        let item = serde_json::to_value(FeedItem::new(product, None)).unwrap();
        assert_eq!(
            item,
            json!({
                "id": "p-1", "sku": "SKU-1", "name": "Jacket", "brand": "Northwind",
                "category": "outdoor", "description": "Warm.",
                "price": {"amount_minor": 12999, "currency": "EUR"},
                "image_urls": ["a.jpg", "b.jpg"],
            }),
            "unknown stock is absent, not null or zero"
        );
    }

    #[test]
    fn orders_show_the_reference_only_when_there_is_one() {
        let order = || backend::Order {
            id: "o-1".into(),
            customer_id: "partner:acme".into(),
            status: "placed".into(),
            lines: vec![backend::OrderLine {
                sku: "SKU-1".into(),
                quantity: 2,
                unit_price: eur(150),
            }],
            total: eur(300),
            created_at: "2025-06-01T12:00:00Z".into(),
        };
        let fetched = serde_json::to_value(Order::new(order(), None)).unwrap();
        assert_eq!(
            fetched,
            json!({
                "id": "o-1", "status": "placed",
                "lines": [{"sku": "SKU-1", "quantity": 2,
                           "unit_price": {"amount_minor": 150, "currency": "EUR"}}],
                "total": {"amount_minor": 300, "currency": "EUR"},
                "created_at": "2025-06-01T12:00:00Z",
            }),
            "the customer id is internal and never shown"
        );
        let placed = serde_json::to_value(Order::new(order(), Some("PO-7".into()))).unwrap();
        assert_eq!(placed["reference"], "PO-7");
    }
}
