//! Tolerant readers of the backends' JSON (see `shared/SERVICES.md`): only the fields this
//! gateway uses. The web shows nearly everything, so it reads nearly everything.

use std::collections::BTreeMap;

pub use portico_contracts::money::Money;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct ImageVariant {
    pub width: u32,
    pub url: String,
}

#[derive(Debug, Deserialize)]
pub struct Image {
    pub url: String,
    #[serde(default)]
    pub alt: String,
    pub width: u32,
    pub height: u32,
    #[serde(default)]
    pub variants: Vec<ImageVariant>,
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
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub tags: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct ProductList {
    pub items: Vec<Product>,
}

#[derive(Debug, Deserialize)]
pub struct FacetValue {
    pub value: String,
    pub count: u32,
}

#[derive(Debug, Default, Deserialize)]
pub struct Facets {
    #[serde(default)]
    pub category: Vec<FacetValue>,
    #[serde(default)]
    pub brand: Vec<FacetValue>,
    #[serde(default)]
    pub price_band: Vec<FacetValue>,
}

#[derive(Debug, Deserialize)]
pub struct SearchResults {
    pub items: Vec<Product>,
    pub next_cursor: Option<String>,
    pub total: u32,
    #[serde(default)]
    pub facets: Facets,
}

#[derive(Debug, Deserialize)]
pub struct Summary {
    pub product_id: String,
    pub average: f64,
    pub count: u32,
    #[serde(default)]
    pub histogram: BTreeMap<String, u32>,
}

#[derive(Debug, Deserialize)]
pub struct SummaryList {
    pub items: Vec<Summary>,
}

#[derive(Debug, Deserialize)]
pub struct Review {
    pub id: String,
    pub rating: u8,
    pub title: String,
    pub body: String,
    pub author: String,
    pub created_at: String,
}

#[derive(Debug, Deserialize)]
pub struct ReviewPage {
    pub items: Vec<Review>,
    pub page: u32,
    pub per_page: u32,
    pub total: u32,
}

#[derive(Debug, Deserialize)]
pub struct Recommendation {
    pub product_id: String,
}

#[derive(Debug, Deserialize)]
pub struct Recommendations {
    pub items: Vec<Recommendation>,
}

#[derive(Debug, Deserialize)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: u32,
    pub unit_price: Money,
}

#[derive(Debug, Deserialize)]
pub struct Order {
    pub id: String,
    /// Whose order it is: the gateway shows an order only to this customer.
    pub customer_id: String,
    pub status: String,
    pub lines: Vec<OrderLine>,
    pub total: Money,
    pub created_at: String,
}

#[derive(Debug, Deserialize)]
pub struct OrderList {
    pub items: Vec<Order>,
}
