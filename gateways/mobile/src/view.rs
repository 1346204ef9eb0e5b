//! The mobile client's views: small, flat, display-ready DTOs mapped from backend models.
//! Prices arrive formatted and images pre-sized, so the app does no work a server can do once.

use serde::Serialize;
use utoipa::ToSchema;

use crate::backend;

/// The smallest image variant at least this wide is the one a phone card shows.
const CARD_IMAGE_WIDTH: u32 = 160;
/// The image width for the product screen.
const DETAIL_IMAGE_WIDTH: u32 = 480;
/// Below this many units the badge says `low_stock`.
const LOW_STOCK: u32 = 10;
/// The longest short description, in characters.
const SHORT_DESCRIPTION: usize = 160;

/// A product as a small card.
#[derive(Debug, Serialize, ToSchema)]
pub struct Card {
    /// Product id, as accepted by `/v1/products/{id}`.
    pub id: String,
    pub name: String,
    /// Display price, e.g. `€129.99`.
    pub price: String,
    /// URL of a small (160 px) image.
    pub image: Option<String>,
    /// Whether any warehouse has stock; absent when stock is unknown (see `degraded`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub in_stock: Option<bool>,
}

/// The home screen.
#[derive(Debug, Serialize, ToSchema)]
pub struct Home {
    pub featured: Vec<Card>,
    /// Parts missing because a backend failed: `stock`.
    #[schema(value_type = Vec<String>)]
    pub degraded: portico_edge::Degraded,
}

/// Stock as a badge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(clippy::enum_variant_names)] // the wire names (`in_stock`, …) read best as they are
pub enum StockBadge {
    InStock,
    LowStock,
    OutOfStock,
}

/// Average rating and count.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rating {
    /// 0–5, one decimal.
    pub average: f64,
    pub count: u32,
}

/// One review, as a phone shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewSnippet {
    pub rating: u8,
    pub title: String,
    pub author: String,
}

/// The product screen.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProductDetail {
    pub id: String,
    pub name: String,
    pub price: String,
    /// At most 160 characters, cut at a word.
    pub short_description: String,
    /// URL of a 480 px image.
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rating: Option<Rating>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stock: Option<StockBadge>,
    /// The three newest reviews.
    pub top_reviews: Vec<ReviewSnippet>,
    /// Parts missing because a backend failed: `rating`, `reviews`, `stock`.
    #[schema(value_type = Vec<String>)]
    pub degraded: portico_edge::Degraded,
}

/// Fields `?fields=` may name on `/v1/home`.
pub const HOME_FIELDS: &[&str] = &[
    "featured",
    "featured.id",
    "featured.name",
    "featured.price",
    "featured.image",
    "featured.in_stock",
];

/// Fields `?fields=` may name on `/v1/products/{id}`.
pub const DETAIL_FIELDS: &[&str] =
    &["id", "name", "price", "short_description", "image", "rating", "stock", "top_reviews"];

// === mapping ===

impl Card {
    pub fn new(product: backend::Product, stock: Option<&backend::StockBySku>) -> Self {
        Self {
            image: image_url(&product.images, CARD_IMAGE_WIDTH),
            price: product.price.to_string(),
            in_stock: stock.map(|s| s.get(&product.sku).copied().unwrap_or(0) > 0),
            id: product.id,
            name: product.name,
        }
    }
}

impl StockBadge {
    pub fn from_available(available: u32) -> Self {
        match available {
            0 => Self::OutOfStock,
            n if n < LOW_STOCK => Self::LowStock,
            _ => Self::InStock,
        }
    }
}

/// The URL of the smallest variant of the first image that is at least `width` wide (or the
/// largest there is), falling back to the original.
pub fn image_url(images: &[backend::Image], width: u32) -> Option<String> {
    let image = images.first()?;
    let fitting = image.variants.iter().filter(|v| v.width >= width).min_by_key(|v| v.width);
    let largest = image.variants.iter().max_by_key(|v| v.width);
    Some(fitting.or(largest).map_or_else(|| image.url.clone(), |v| v.url.clone()))
}

pub fn detail_image(images: &[backend::Image]) -> Option<String> {
    image_url(images, DETAIL_IMAGE_WIDTH)
}

/// The description cut to at most 160 characters at a word boundary, with an ellipsis.
pub fn short_description(description: &str) -> String {
    let text = description.trim();
    if text.chars().count() <= SHORT_DESCRIPTION {
        return text.to_owned();
    }
    let cut: String = text.chars().take(SHORT_DESCRIPTION - 1).collect();
    let end = cut.rfind(char::is_whitespace).unwrap_or(cut.len());
    format!("{}…", cut[..end].trim_end_matches([',', '.', ';', ':', ' ']))
}

/// A rating average rounded to one decimal.
pub fn rating(summary: &backend::Summary) -> Rating {
    Rating { average: (summary.average * 10.0).round() / 10.0, count: summary.count }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_descriptions_cut_at_a_word() {
        let long = "word ".repeat(100);
        let short = short_description(&long);
        assert!(short.chars().count() <= SHORT_DESCRIPTION, "{short}");
        assert!(short.ends_with("word…"), "{short}");
        assert_eq!(short_description(" tiny. "), "tiny.");
    }

    #[test]
    fn the_smallest_fitting_image_variant_is_chosen() {
        let image = |variants: &[(u32, &str)]| backend::Image {
            url: "orig".into(),
            variants: variants
                .iter()
                .map(|(w, u)| backend::ImageVariant { width: *w, url: (*u).into() })
                .collect(),
        };
        assert_eq!(image_url(&[image(&[(480, "m"), (160, "s")])], 160).as_deref(), Some("s"));
        assert_eq!(image_url(&[image(&[(100, "xs"), (120, "s")])], 160).as_deref(), Some("s"));
        assert_eq!(image_url(&[image(&[])], 160).as_deref(), Some("orig"));
        assert_eq!(image_url(&[], 160), None);
    }

    #[test]
    fn stock_badges() {
        assert_eq!(StockBadge::from_available(0), StockBadge::OutOfStock);
        assert_eq!(StockBadge::from_available(3), StockBadge::LowStock);
        assert_eq!(StockBadge::from_available(10), StockBadge::InStock);
    }
}
