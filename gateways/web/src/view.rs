//! The web client's views: rich DTOs mapped from backend models. Prices carry both the exact
//! amount (for the cart's arithmetic) and a display string (so every page formats alike).

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::backend;

/// A card's image width on the web.
const CARD_IMAGE_WIDTH: u32 = 480;

/// A price, exact and formatted.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Price {
    /// Minor units (cents).
    pub amount_minor: i64,
    /// ISO 4217 code.
    pub currency: String,
    /// For display, e.g. `€129.99`.
    pub formatted: String,
}

impl From<backend::Money> for Price {
    fn from(money: backend::Money) -> Self {
        Self {
            formatted: money.to_string(),
            amount_minor: money.amount_minor,
            currency: money.currency,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ImageVariant {
    pub width: u32,
    pub url: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Image {
    pub url: String,
    pub alt: String,
    pub width: u32,
    pub height: u32,
    pub variants: Vec<ImageVariant>,
}

/// Everything the catalog knows about a product.
#[derive(Debug, Serialize, ToSchema)]
pub struct FullProduct {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub brand: String,
    pub category: String,
    pub description: String,
    pub price: Price,
    pub images: Vec<Image>,
    pub attributes: BTreeMap<String, String>,
    pub tags: Vec<String>,
}

impl From<backend::Product> for FullProduct {
    fn from(p: backend::Product) -> Self {
        let images = p
            .images
            .into_iter()
            .map(|i| Image {
                url: i.url,
                alt: i.alt,
                width: i.width,
                height: i.height,
                variants: i
                    .variants
                    .into_iter()
                    .map(|v| ImageVariant { width: v.width, url: v.url })
                    .collect(),
            })
            .collect();
        Self {
            id: p.id,
            sku: p.sku,
            name: p.name,
            brand: p.brand,
            category: p.category,
            description: p.description,
            price: p.price.into(),
            images,
            attributes: p.attributes,
            tags: p.tags,
        }
    }
}

/// Ratings with their distribution.
#[derive(Debug, Serialize, ToSchema)]
pub struct RatingSummary {
    pub average: f64,
    pub count: u32,
    /// Count per star, `"1"` … `"5"`.
    pub histogram: BTreeMap<String, u32>,
}

impl From<backend::Summary> for RatingSummary {
    fn from(s: backend::Summary) -> Self {
        Self { average: round1(s.average), count: s.count, histogram: s.histogram }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Review {
    pub id: String,
    pub rating: u8,
    pub title: String,
    pub body: String,
    pub author: String,
    pub created_at: String,
}

/// One page of reviews.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewsPage {
    pub items: Vec<Review>,
    pub page: u32,
    pub per_page: u32,
    pub total: u32,
}

impl From<backend::ReviewPage> for ReviewsPage {
    fn from(p: backend::ReviewPage) -> Self {
        let items = p
            .items
            .into_iter()
            .map(|r| Review {
                id: r.id,
                rating: r.rating,
                title: r.title,
                body: r.body,
                author: r.author,
                created_at: r.created_at,
            })
            .collect();
        Self { items, page: p.page, per_page: p.per_page, total: p.total }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WarehouseStock {
    pub warehouse: String,
    pub available: u32,
}

/// Stock per warehouse.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stock {
    pub total_available: u32,
    pub warehouses: Vec<WarehouseStock>,
}

/// A product as a card in lists (recommendations, search hits, order lines).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ProductCard {
    pub id: String,
    pub name: String,
    pub price: Price,
    /// A 480 px image.
    pub image: Option<String>,
}

impl From<backend::Product> for ProductCard {
    fn from(p: backend::Product) -> Self {
        Self { image: card_image(&p.images), id: p.id, name: p.name, price: p.price.into() }
    }
}

/// The product page.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductPage {
    pub product: FullProduct,
    /// Absent when the reviews service failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rating: Option<RatingSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reviews: Option<ReviewsPage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stock: Option<Stock>,
    /// Empty when the recommendations service failed (see `degraded`).
    pub recommendations: Vec<ProductCard>,
    /// Parts missing because a backend failed: `rating`, `reviews`, `stock`, `recommendations`.
    #[schema(value_type = Vec<String>)]
    pub degraded: portico_edge::Degraded,
}

/// A search hit: a card plus what a result list shows.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchHit {
    #[serde(flatten)]
    pub card: ProductCard,
    pub brand: String,
    pub category: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rating: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub review_count: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_stock: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FacetValue {
    pub value: String,
    pub count: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Facets {
    pub category: Vec<FacetValue>,
    pub brand: Vec<FacetValue>,
    pub price_band: Vec<FacetValue>,
}

impl From<backend::Facets> for Facets {
    fn from(f: backend::Facets) -> Self {
        let map = |v: Vec<backend::FacetValue>| {
            v.into_iter().map(|f| FacetValue { value: f.value, count: f.count }).collect()
        };
        Self { category: map(f.category), brand: map(f.brand), price_band: map(f.price_band) }
    }
}

/// A page of search results with facets.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchPage {
    pub query: String,
    pub total: u32,
    pub next_cursor: Option<String>,
    pub items: Vec<SearchHit>,
    pub facets: Facets,
    #[schema(value_type = Vec<String>)]
    pub degraded: portico_edge::Degraded,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: u32,
    pub unit_price: Price,
    /// The product, when the catalog still knows it and answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<ProductCard>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Order {
    pub id: String,
    pub status: String,
    pub created_at: String,
    pub total: Price,
    pub lines: Vec<OrderLine>,
}

/// A customer's orders, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderHistory {
    /// The signed-in customer, e.g. `alice`.
    pub customer: String,
    pub orders: Vec<Order>,
    /// Parts missing because a backend failed: `products`.
    #[schema(value_type = Vec<String>)]
    pub degraded: portico_edge::Degraded,
}

/// One order, with the same lines the history shows.
#[derive(Debug, Serialize, ToSchema)]
pub struct OrderDetail {
    #[serde(flatten)]
    pub order: Order,
    /// Parts missing because a backend failed: `products`.
    #[schema(value_type = Vec<String>)]
    pub degraded: portico_edge::Degraded,
}

/// The URL of the smallest variant of the first image at least 480 px wide, else the original.
pub fn card_image(images: &[backend::Image]) -> Option<String> {
    let image = images.first()?;
    let fitting =
        image.variants.iter().filter(|v| v.width >= CARD_IMAGE_WIDTH).min_by_key(|v| v.width);
    Some(fitting.map_or_else(|| image.url.clone(), |v| v.url.clone()))
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
