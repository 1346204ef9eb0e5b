//! Tolerant readers of the backends' JSON (see `shared/SERVICES.md`): only the fields this
//! gateway uses, so a backend may add fields freely, while a renamed one is a compile-time
//! change here rather than a silently missing key on a phone.

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
    pub variants: Vec<ImageVariant>,
}

#[derive(Debug, Deserialize)]
pub struct Product {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub description: String,
    pub price: Money,
    #[serde(default)]
    pub images: Vec<Image>,
}

#[derive(Debug, Deserialize)]
pub struct ProductList {
    pub items: Vec<Product>,
}

#[derive(Debug, Deserialize)]
pub struct Summary {
    pub average: f64,
    pub count: u32,
}

#[derive(Debug, Deserialize)]
pub struct Review {
    pub rating: u8,
    pub title: String,
    pub author: String,
}

#[derive(Debug, Deserialize)]
pub struct ReviewPage {
    pub items: Vec<Review>,
}

/// Stock totals by SKU, from one batch call to `inventory`.
pub type StockBySku = BTreeMap<String, u32>;
