//! The demo shop's data, generated deterministically from [`DemoParams`]: the same seed gives
//! byte-identical products, stock and reviews on every machine, so docs and tests can name real
//! ids.
//!
//! Every product, its stock and its reviews come from their own PRNG stream keyed by (seed,
//! stream, product index). That keeps them independent (changing how reviews are written does
//! not reshuffle the catalog) and lets reviews be generated lazily on request: a product's
//! summary and its review list are always computed from the same generated reviews.

use std::collections::BTreeMap;
use std::fmt;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::DemoParams;

/// The warehouses every SKU is stocked in, in the order [`Shop::stock`] reports them.
pub const WAREHOUSES: [&str; 3] = ["ams", "fra", "lon"];

/// The currency of every catalog price.
pub const CURRENCY: &str = "EUR";

/// How many products the curated featured list holds (`GET /products/featured`).
pub const FEATURED: usize = 24;

// === Money, Product, Review ===

/// An amount in minor units of an ISO 4217 currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub amount_minor: u64,
    pub currency: String,
}

impl Money {
    pub fn eur(amount_minor: u64) -> Self {
        Self { amount_minor, currency: CURRENCY.to_owned() }
    }
}

/// A catalog product, serialized exactly as `shared/SERVICES.md` describes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Product {
    pub id: String,
    pub sku: String,
    pub name: String,
    pub brand: &'static str,
    pub category: &'static str,
    pub description: String,
    pub price: Money,
    pub images: Vec<Image>,
    pub attributes: BTreeMap<&'static str, String>,
    pub tags: Vec<&'static str>,
    pub created_at: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Image {
    pub url: String,
    pub alt: String,
    pub width: u32,
    pub height: u32,
    pub variants: Vec<Variant>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Variant {
    pub width: u32,
    pub url: String,
}

/// A customer review of a product.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Review {
    pub id: String,
    pub product_id: String,
    pub rating: u8,
    pub title: &'static str,
    pub body: String,
    pub author: String,
    pub created_at: String,
}

/// Count, average and histogram of a product's ratings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewSummary {
    pub product_id: String,
    /// Mean rating rounded to one decimal; 0 when there are no reviews.
    pub average: f64,
    pub count: u32,
    pub histogram: Histogram,
}

/// Number of reviews per rating; every rating is present, zeros included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Histogram {
    #[serde(rename = "1")]
    pub one: u32,
    #[serde(rename = "2")]
    pub two: u32,
    #[serde(rename = "3")]
    pub three: u32,
    #[serde(rename = "4")]
    pub four: u32,
    #[serde(rename = "5")]
    pub five: u32,
}

impl Histogram {
    fn add(&mut self, rating: u8) {
        match rating {
            1 => self.one += 1,
            2 => self.two += 1,
            3 => self.three += 1,
            4 => self.four += 1,
            _ => self.five += 1,
        }
    }
}

// === Shop ===

/// What the services need to know about a product besides its JSON.
#[derive(Debug, Clone)]
struct Meta {
    created_unix: u64,
    /// 0 (poor) ..= 3 (excellent): skews the ratings of the product's reviews.
    quality: u8,
    /// Units per warehouse, in [`WAREHOUSES`] order.
    stock: [u32; 3],
    /// Lowercased name, brand, category and description, for search.
    haystack: String,
}

/// The whole generated shop, shared read-only by catalog, reviews, recommendations and inventory.
pub struct Shop {
    params: DemoParams,
    products: Vec<Product>,
    meta: Vec<Meta>,
    featured: Vec<usize>,
}

impl fmt::Debug for Shop {
    // The derived form would print megabytes of descriptions.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shop")
            .field("params", &self.params)
            .field("products", &self.products.len())
            .finish_non_exhaustive()
    }
}

impl Shop {
    /// Generates the products and their stock; reviews are generated on request.
    pub fn generate(params: &DemoParams) -> Shop {
        let count = params.products as usize;
        let mut products = Vec::with_capacity(count);
        let mut meta = Vec::with_capacity(count);
        for index in 0..count {
            let (product, m) = generate_product(params.seed, index);
            products.push(product);
            meta.push(m);
        }
        let featured = pick_featured(&products, &meta);
        Shop { params: *params, products, meta, featured }
    }

    pub fn params(&self) -> &DemoParams {
        &self.params
    }

    /// Every product, in id order.
    pub fn products(&self) -> &[Product] {
        &self.products
    }

    /// The position of a product id (`p-00042` → 41) in [`Shop::products`].
    pub fn index_of(&self, id: &str) -> Option<usize> {
        let index = parse_number(id, "p-")?;
        (self.products.get(index)?.id == id).then_some(index)
    }

    pub fn product(&self, id: &str) -> Option<&Product> {
        self.index_of(id).map(|i| &self.products[i])
    }

    /// The position of a SKU (`SKU-00042` → 41) in [`Shop::products`].
    pub fn index_of_sku(&self, sku: &str) -> Option<usize> {
        let index = parse_number(sku, "SKU-")?;
        (self.products.get(index)?.sku == sku).then_some(index)
    }

    pub fn product_by_sku(&self, sku: &str) -> Option<&Product> {
        self.index_of_sku(sku).map(|i| &self.products[i])
    }

    /// Units per warehouse, in [`WAREHOUSES`] order; `None` for an unknown SKU.
    pub fn stock(&self, sku: &str) -> Option<[u32; 3]> {
        self.index_of_sku(sku).map(|i| self.meta[i].stock)
    }

    /// The curated featured products, a stable selection spread over the categories.
    pub fn featured(&self) -> impl Iterator<Item = &Product> {
        self.featured.iter().map(|&i| &self.products[i])
    }

    /// Whether every word (already lowercased) occurs in the product's name, brand, category or
    /// description.
    pub fn matches(&self, index: usize, lowercase_words: &[String]) -> bool {
        let haystack = &self.meta[index].haystack;
        lowercase_words.iter().all(|w| haystack.contains(w.as_str()))
    }

    /// A product's reviews, newest first; empty for an unknown product.
    pub fn reviews(&self, product_id: &str) -> Vec<Review> {
        match self.index_of(product_id) {
            Some(index) => self.generate_reviews(index),
            None => Vec::new(),
        }
    }

    /// The summary of exactly the reviews [`Shop::reviews`] returns.
    pub fn summary(&self, product_id: &str) -> ReviewSummary {
        summarize(product_id, &self.reviews(product_id))
    }

    /// Products related to the one at `index`, best first, with scores in 0..1: the same
    /// category first (scores ≥ 0.5), other categories only when the category runs out.
    pub fn related(&self, index: usize, limit: usize) -> Vec<(usize, f64)> {
        let Some(product) = self.products.get(index) else {
            return Vec::new();
        };
        let affinity = |j: usize| {
            let pair = ((index as u64) << 32) | j as u64;
            unit(mix(self.params.seed ^ mix(RELATED ^ mix(pair))))
        };
        let by_score = |a: &(usize, f64), b: &(usize, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let candidates = |same_category: bool| {
            self.products
                .iter()
                .enumerate()
                .filter(move |&(j, p)| {
                    j != index && (p.category == product.category) == same_category
                })
                .map(|(j, _)| j)
        };
        let mut same: Vec<(usize, f64)> =
            candidates(true).map(|j| (j, 0.5 + affinity(j) / 2.0)).collect();
        same.sort_by(by_score);
        if same.len() < limit {
            let mut other: Vec<(usize, f64)> =
                candidates(false).map(|j| (j, affinity(j) / 2.0)).collect();
            other.sort_by(by_score);
            same.extend(other);
        }
        same.truncate(limit);
        for entry in &mut same {
            entry.1 = (entry.1 * 1000.0).round() / 1000.0;
        }
        same
    }

    fn generate_reviews(&self, index: usize) -> Vec<Review> {
        let product = &self.products[index];
        let meta = &self.meta[index];
        let mut rng = Rng::stream(self.params.seed, REVIEWS, index);
        let count = rng.below(u64::from(self.params.max_reviews_per_product) + 1);
        let number = index + 1;
        let mut reviews: Vec<(u64, Review)> = (0..count)
            .map(|k| {
                let rating = rating(&mut rng, meta.quality);
                let created = rng.range(meta.created_unix, END_UNIX - 1);
                let sentences = rng.range(1, 3);
                let mut body = String::new();
                for s in 0..sentences {
                    if s > 0 {
                        body.push(' ');
                    }
                    body.push_str(rng.pick::<&str>(REVIEW_SENTENCES[usize::from(rating) - 1]));
                }
                let author = format!("{} {}.", rng.pick(FIRST_NAMES), rng.pick(INITIALS));
                let review = Review {
                    id: format!("r-{number:05}-{:02}", k + 1),
                    product_id: product.id.clone(),
                    rating,
                    title: rng.pick::<&str>(REVIEW_TITLES[usize::from(rating) - 1]),
                    body,
                    author,
                    created_at: rfc3339(created),
                };
                (created, review)
            })
            .collect();
        reviews.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| b.1.id.cmp(&a.1.id)));
        reviews.into_iter().map(|(_, review)| review).collect()
    }
}

/// Count, average and histogram of `reviews`.
pub fn summarize(product_id: &str, reviews: &[Review]) -> ReviewSummary {
    let mut histogram = Histogram::default();
    let mut sum = 0u32;
    for review in reviews {
        histogram.add(review.rating);
        sum += u32::from(review.rating);
    }
    let count = reviews.len() as u32;
    let average =
        if count == 0 { 0.0 } else { (f64::from(sum) * 10.0 / f64::from(count)).round() / 10.0 };
    ReviewSummary { product_id: product_id.to_owned(), average, count, histogram }
}

/// The price band facet of an amount in minor units (bands in major units).
pub fn price_band(amount_minor: u64) -> &'static str {
    match amount_minor {
        0..2_500 => "0-25",
        2_500..5_000 => "25-50",
        5_000..10_000 => "50-100",
        10_000..25_000 => "100-250",
        _ => "250+",
    }
}

/// Every price band, in ascending order.
pub const PRICE_BANDS: [&str; 5] = ["0-25", "25-50", "50-100", "100-250", "250+"];

/// `p-00042` → 41, for ids with the given prefix.
fn parse_number(id: &str, prefix: &str) -> Option<usize> {
    let digits = id.strip_prefix(prefix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<usize>().ok()?.checked_sub(1)
}

// === Generation ===

// Stream keys keep the PRNG streams of products, stock, reviews and recommendations apart.
const PRODUCTS: u64 = 0x5052_4f44;
const STOCK: u64 = 0x5354_4f43;
const REVIEWS: u64 = 0x5245_5649;
const RELATED: u64 = 0x5245_4c41;

/// 2024-01-01T00:00:00Z; products are created in 2024–2025.
const START_UNIX: u64 = 1_704_067_200;
/// 2026-01-01T00:00:00Z; reviews are written before this.
const END_UNIX: u64 = 1_767_225_600;

fn generate_product(seed: u64, index: usize) -> (Product, Meta) {
    let mut rng = Rng::stream(seed, PRODUCTS, index);
    let number = index + 1;
    let id = format!("p-{number:05}");
    let sku = format!("SKU-{number:05}");
    let category = rng.pick(CATEGORIES);
    let brand = *rng.pick(BRANDS);
    let noun = *rng.pick(category.nouns);
    let name = format!("{} {} {noun}", rng.pick(ADJECTIVES), rng.pick(category.modifiers));
    let color = *rng.pick(COLORS);
    let material = *rng.pick(category.materials);
    let size = *rng.pick(category.sizes);

    // Prices end like real ones do: 19.99, 24.95, 30.00 …
    let major = rng.range(5, 499);
    let cents = *rng.pick(&[0, 49, 95, 99]);
    let price = Money::eur(major * 100 + cents);

    let image_count = rng.range(4, 8);
    let images = (1..=image_count)
        .map(|n| {
            let base = format!("https://img.portico.example/{id}/{n}");
            Image {
                url: format!("{base}-1200.jpg"),
                alt: format!("{name} in {color}, view {n} of {image_count}"),
                width: 1200,
                height: 900,
                variants: vec![
                    Variant { width: 160, url: format!("{base}-160.jpg") },
                    Variant { width: 480, url: format!("{base}-480.jpg") },
                ],
            }
        })
        .collect();

    let mut attributes = BTreeMap::new();
    attributes.insert("color", color.to_owned());
    attributes.insert("material", material.to_owned());
    attributes.insert("size", size.to_owned());
    attributes.insert("weight_g", rng.range(40, 4_000).to_string());
    attributes.insert("origin", (*rng.pick(ORIGINS)).to_owned());

    let mut tags: Vec<&'static str> = Vec::with_capacity(4);
    for _ in 0..rng.range(2, 4) {
        let tag = if rng.below(3) == 0 { rng.pick(GENERAL_TAGS) } else { rng.pick(category.tags) };
        if !tags.contains(tag) {
            tags.push(tag);
        }
    }

    let description = describe(&mut rng, &name, brand, &noun.to_lowercase(), material, color);
    let created_unix = START_UNIX + rng.below(END_UNIX - START_UNIX);
    let quality = rng.below(4) as u8;

    let haystack = format!("{name} {brand} {} {description}", category.slug).to_lowercase();
    let product = Product {
        id,
        sku,
        name,
        brand,
        category: category.slug,
        description,
        price,
        images,
        attributes,
        tags,
        created_at: rfc3339(created_unix),
    };
    let meta = Meta { created_unix, quality, stock: stock(seed, index), haystack };
    (product, meta)
}

/// About one SKU in ten is sold out everywhere; the rest have stock in at least one warehouse.
fn stock(seed: u64, index: usize) -> [u32; 3] {
    let mut rng = Rng::stream(seed, STOCK, index);
    if rng.below(10) == 0 {
        return [0; 3];
    }
    let mut levels = [0u32; 3];
    for level in &mut levels {
        // A third of the warehouses hold none, so partial availability shows up too.
        if rng.below(3) != 0 {
            *level = rng.range(1, 120) as u32;
        }
    }
    if levels == [0; 3] {
        levels[0] = rng.range(1, 20) as u32;
    }
    levels
}

/// A 1–3 KB description assembled from sentence fragments, in short paragraphs.
fn describe(
    rng: &mut Rng,
    name: &str,
    brand: &str,
    noun: &str,
    material: &str,
    color: &str,
) -> String {
    // The longest sentence is under 200 bytes, so stopping after the target keeps us < 3 KB.
    let target = rng.range(1_100, 2_850) as usize;
    let mut text = String::with_capacity(target + 200);
    let _ = write!(text, "The {name} from {brand} brings {material} quality to everyday life.");
    let mut in_paragraph = 1;
    while text.len() < target {
        if in_paragraph == 4 {
            text.push_str("\n\n");
            in_paragraph = 0;
        } else {
            text.push(' ');
        }
        let lead = *rng.pick(LEADS);
        let main = rng.below(MAIN_CLAUSES);
        let finish = *rng.pick(FINISHES);
        // `write!` into a String cannot fail.
        let _ = match main {
            0 => write!(text, "{lead}, this {noun} pairs {material} with a clean {color} finish"),
            1 => write!(text, "{lead}, the {noun} balances durability and comfort"),
            2 => write!(text, "{lead}, its {material} construction resists everyday wear and tear"),
            3 => write!(text, "{lead}, every {noun} is inspected before it leaves the workshop"),
            4 => write!(text, "{lead}, the {color} colourway suits almost any setting"),
            5 => write!(text, "{lead}, the {noun} feels reassuringly solid in use"),
            6 => {
                write!(text, "{lead}, {brand} has reduced the weight without sacrificing strength")
            }
            7 => write!(text, "{lead}, the design keeps the essentials within easy reach"),
            8 => write!(text, "{lead}, its proportions were refined through dozens of prototypes"),
            _ => write!(
                text,
                "{lead}, the {material} ages gracefully and develops character over time"
            ),
        };
        text.push(' ');
        text.push_str(finish);
        text.push('.');
        in_paragraph += 1;
    }
    text
}

/// Picks the featured products: round-robin over the categories, starting at evenly spread
/// positions, in stock, no duplicates.
fn pick_featured(products: &[Product], meta: &[Meta]) -> Vec<usize> {
    let n = products.len();
    let mut featured = Vec::with_capacity(FEATURED);
    for k in 0..FEATURED {
        let category = CATEGORIES[k % CATEGORIES.len()].slug;
        let start = k * n / FEATURED;
        let found = (0..n).map(|step| (start + step) % n).find(|&i| {
            products[i].category == category && meta[i].stock != [0; 3] && !featured.contains(&i)
        });
        if let Some(i) = found {
            featured.push(i);
        }
    }
    featured
}

/// Ratings skewed by the product's quality: better products get more 4s and 5s.
fn rating(rng: &mut Rng, quality: u8) -> u8 {
    const WEIGHTS: [[u64; 5]; 4] =
        [[20, 20, 25, 20, 15], [8, 12, 25, 30, 25], [4, 6, 15, 35, 40], [2, 3, 8, 27, 60]];
    let weights = WEIGHTS[usize::from(quality.min(3))];
    let mut roll = rng.below(weights.iter().sum());
    for (i, weight) in weights.iter().enumerate() {
        if roll < *weight {
            return i as u8 + 1;
        }
        roll -= weight;
    }
    5
}

// === Time ===

/// Formats Unix seconds as RFC 3339 UTC (`2025-03-14T09:26:53Z`).
pub fn rfc3339(unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let rem = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar
/// (Howard Hinnant's `civil_from_days`, restricted to dates after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

// === PRNG ===

/// The SplitMix64 finalizer: a good 64-bit mixing function.
pub(crate) fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform float in 0..1 from 64 random bits.
pub(crate) fn unit(bits: u64) -> f64 {
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

/// SplitMix64: tiny, fast, and identical on every platform, which is all the demo needs.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    /// An independent stream for one (seed, purpose, item).
    pub(crate) fn stream(seed: u64, stream: u64, index: usize) -> Self {
        Rng(mix(seed ^ mix(stream ^ mix(index as u64))))
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }

    /// Uniform in `0..n` (multiply-shift, no modulo bias worth mentioning); 0 when `n` is 0.
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// One element of a non-empty slice (all callers pass constant word lists).
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

// === Word lists ===

struct Category {
    slug: &'static str,
    nouns: &'static [&'static str],
    modifiers: &'static [&'static str],
    materials: &'static [&'static str],
    sizes: &'static [&'static str],
    tags: &'static [&'static str],
}

const CATEGORIES: &[Category] = &[
    Category {
        slug: "outdoor",
        nouns: &[
            "Jacket",
            "Tent",
            "Backpack",
            "Sleeping Bag",
            "Headlamp",
            "Hiking Boots",
            "Rain Shell",
            "Trekking Poles",
        ],
        modifiers: &["Trail", "Summit", "Ridge", "Canyon", "Alpine", "Basecamp"],
        materials: &[
            "ripstop nylon",
            "recycled polyester",
            "merino wool",
            "aluminium",
            "waxed canvas",
        ],
        sizes: &["S", "M", "L", "XL", "one size"],
        tags: &["waterproof", "lightweight", "camping", "hiking"],
    },
    Category {
        slug: "kitchen",
        nouns: &[
            "Chef's Knife",
            "Skillet",
            "Dutch Oven",
            "Kettle",
            "Coffee Grinder",
            "Cutting Board",
            "Saucepan",
            "Mixing Bowl Set",
        ],
        modifiers: &["Artisan", "Bistro", "Pro", "Heritage", "Everyday", "Gourmet"],
        materials: &["stainless steel", "cast iron", "carbon steel", "oak", "ceramic", "copper"],
        sizes: &["20 cm", "24 cm", "28 cm", "1.5 l", "3 l"],
        tags: &["dishwasher-safe", "induction", "baking", "barista"],
    },
    Category {
        slug: "electronics",
        nouns: &[
            "Headphones",
            "Speaker",
            "Smartwatch",
            "Charger",
            "Keyboard",
            "Webcam",
            "E-Reader",
            "Power Bank",
        ],
        modifiers: &["Wireless", "Pulse", "Nova", "Quantum", "Echo", "Studio"],
        materials: &["aluminium", "polycarbonate", "glass", "silicone"],
        sizes: &["compact", "standard", "XL"],
        tags: &["bluetooth", "usb-c", "noise-cancelling", "smart-home"],
    },
    Category {
        slug: "home",
        nouns: &[
            "Lamp",
            "Throw Blanket",
            "Cushion",
            "Vase",
            "Wall Clock",
            "Rug",
            "Candle Set",
            "Storage Basket",
        ],
        modifiers: &["Nordic", "Haven", "Loft", "Cosy", "Linen", "Terrace"],
        materials: &["linen", "cotton", "wool", "rattan", "glass", "walnut"],
        sizes: &["small", "medium", "large"],
        tags: &["living-room", "bedroom", "handmade", "scandinavian"],
    },
    Category {
        slug: "fashion",
        nouns: &[
            "T-Shirt",
            "Hoodie",
            "Jeans",
            "Sneakers",
            "Scarf",
            "Wool Coat",
            "Belt",
            "Sunglasses",
        ],
        modifiers: &["Urban", "Classic", "Weekend", "Harbor", "Metro", "Vintage"],
        materials: &[
            "organic cotton",
            "denim",
            "leather",
            "cashmere",
            "linen",
            "recycled polyester",
        ],
        sizes: &["XS", "S", "M", "L", "XL"],
        tags: &["streetwear", "organic", "unisex", "slim-fit"],
    },
    Category {
        slug: "sports",
        nouns: &[
            "Running Shoes",
            "Yoga Mat",
            "Dumbbell Set",
            "Cycling Jersey",
            "Tennis Racket",
            "Football",
            "Jump Rope",
            "Water Bottle",
        ],
        modifiers: &["Sprint", "Velocity", "Core", "Endurance", "Apex", "Momentum"],
        materials: &["EVA foam", "neoprene", "carbon fibre", "natural rubber", "polyester mesh"],
        sizes: &["S", "M", "L", "XL"],
        tags: &["running", "fitness", "training", "team-sports"],
    },
    Category {
        slug: "toys",
        nouns: &[
            "Building Blocks",
            "Puzzle",
            "Plush Bear",
            "Wooden Train",
            "Kite",
            "Board Game",
            "Robot Kit",
            "Marble Run",
        ],
        modifiers: &["Rainbow", "Explorer", "Little", "Galaxy", "Jungle", "Wonder"],
        materials: &["beech wood", "recycled plastic", "plush", "cardboard", "bamboo"],
        sizes: &["3+ years", "6+ years", "8+ years", "12+ years"],
        tags: &["educational", "family", "stem", "creative-play"],
    },
    Category {
        slug: "beauty",
        nouns: &[
            "Face Serum",
            "Shampoo",
            "Hand Cream",
            "Lip Balm",
            "Perfume",
            "Body Lotion",
            "Hair Dryer",
            "Facial Cleanser",
        ],
        modifiers: &["Bloom", "Pure", "Velvet", "Radiant", "Botanical", "Silk"],
        materials: &["aloe vera", "shea butter", "argan oil", "hyaluronic acid", "vitamin C"],
        sizes: &["30 ml", "50 ml", "100 ml", "250 ml"],
        tags: &["vegan", "fragrance-free", "sensitive-skin", "cruelty-free"],
    },
];

const BRANDS: &[&str] = &[
    "Northwind",
    "Contoso",
    "Fabrikam",
    "Tailspin",
    "Litware",
    "Woodgrove",
    "Proseware",
    "Alpine Ski House",
];

const ADJECTIVES: &[&str] = &[
    "Aurora",
    "Evergreen",
    "Crimson",
    "Solstice",
    "Horizon",
    "Maple",
    "Cobalt",
    "Meadow",
    "Ember",
    "Tidal",
    "Granite",
    "Willow",
    "Luna",
    "Saffron",
    "Juniper",
    "Atlas",
];

const COLORS: &[&str] = &[
    "red", "blue", "green", "black", "white", "grey", "navy", "olive", "sand", "burgundy", "teal",
    "mustard",
];

const ORIGINS: &[&str] =
    &["Portugal", "Italy", "Germany", "Vietnam", "Poland", "Sweden", "Japan", "Spain"];

const GENERAL_TAGS: &[&str] = &["bestseller", "new", "eco", "gift-idea", "limited"];

const LEADS: &[&str] = &[
    "Designed with everyday use in mind",
    "Tested over months of real-world use",
    "Drawing on years of craftsmanship",
    "Made for people who value quality",
    "Whether at home or on the move",
    "Thoughtfully engineered down to the last detail",
    "Inspired by classic Scandinavian design",
    "Built to keep up with a busy schedule",
    "Carefully finished by hand",
    "Developed together with professionals",
    "Light enough to take anywhere",
    "Sourced responsibly wherever possible",
];

/// Number of main clauses `describe` chooses from (the arms of its `match`).
const MAIN_CLAUSES: u64 = 10;

const FINISHES: &[&str] = &[
    "so you can focus on what matters",
    "and it is backed by a two-year warranty",
    "making it a dependable companion for years to come",
    "and cleaning it takes only a minute",
    "which makes it a thoughtful gift",
    "without any unnecessary extras",
    "and it packs down smaller than you would expect",
    "for results you can see and feel",
    "while staying easy to maintain",
    "so it is ready whenever you are",
];

const FIRST_NAMES: &[&str] = &[
    "Anna", "Ben", "Chloé", "Daan", "Elif", "Finn", "Greta", "Hugo", "Ines", "Jonas", "Kasia",
    "Luca", "Maya", "Noah", "Olga", "Pieter", "Rosa", "Sami", "Tess", "Yusuf",
];

const INITIALS: &[&str] = &["B", "D", "K", "M", "N", "R", "S", "T", "V", "W"];

const REVIEW_TITLES: [&[&str]; 5] = [
    &["Very disappointed", "Would not buy again", "Broke quickly"],
    &["Not great", "Expected more", "Mediocre quality"],
    &["It's okay", "Does the job", "Average, fair price"],
    &["Really good", "Happy with it", "Solid purchase"],
    &["Excellent!", "Love it", "Best purchase this year"],
];

const REVIEW_SENTENCES: [&[&str]; 5] = [
    &[
        "It stopped working after two weeks.",
        "The quality is far below what the photos suggest.",
        "Customer service was slow to respond.",
        "I sent it back the same day.",
    ],
    &[
        "It works, but it feels cheap.",
        "Delivery was fast, the product less so.",
        "The size was smaller than I expected.",
        "Some rough edges on the finish.",
    ],
    &[
        "Does what it says, nothing more.",
        "Decent value for the price.",
        "The colour is slightly different from the pictures.",
        "Fine for occasional use.",
    ],
    &[
        "Good quality and arrived well packed.",
        "I use it almost every day now.",
        "Would recommend it to friends.",
        "Only minor things I would change.",
    ],
    &[
        "Exceeded my expectations in every way.",
        "Beautifully made and a joy to use.",
        "I already ordered a second one as a gift.",
        "Worth every cent.",
    ],
];

#[cfg(test)]
mod tests {
    use super::*;

    fn demo() -> DemoParams {
        DemoParams::default()
    }

    fn small(seed: u64) -> DemoParams {
        DemoParams { seed, products: 300, max_reviews_per_product: 40 }
    }

    #[test]
    fn same_seed_gives_identical_json() {
        let a = serde_json::to_vec(Shop::generate(&small(7)).products()).expect("json");
        let b = serde_json::to_vec(Shop::generate(&small(7)).products()).expect("json");
        assert_eq!(a, b);
        let c = serde_json::to_vec(Shop::generate(&small(8)).products()).expect("json");
        assert_ne!(a, c);
    }

    #[test]
    fn demo_shop_has_realistic_products() {
        let shop = Shop::generate(&demo());
        let products = shop.products();
        assert_eq!(products.len(), 5_000);
        assert_eq!(products[0].id, "p-00001");
        assert_eq!(products[4_999].sku, "SKU-05000");
        let mut categories = std::collections::BTreeSet::new();
        let mut brands = std::collections::BTreeSet::new();
        for p in products {
            assert!((4..=8).contains(&p.images.len()), "{}", p.id);
            assert!(
                (1_024..=3_072).contains(&p.description.len()),
                "{} has {} bytes",
                p.id,
                p.description.len()
            );
            assert!((500..=50_000).contains(&p.price.amount_minor), "{}", p.id);
            assert!(p.created_at.starts_with("2024-") || p.created_at.starts_with("2025-"));
            let image = &p.images[0];
            assert_eq!(image.url, format!("https://img.portico.example/{}/1-1200.jpg", p.id));
            assert_eq!(image.variants.iter().map(|v| v.width).collect::<Vec<_>>(), [160, 480]);
            assert!(p.attributes.contains_key("color"));
            assert!(!p.tags.is_empty());
            categories.insert(p.category);
            brands.insert(p.brand);
        }
        assert_eq!(categories.len(), 8);
        assert_eq!(brands.len(), 8);
    }

    #[test]
    fn about_ten_percent_sold_out_everywhere() {
        let shop = Shop::generate(&demo());
        let sold_out =
            shop.products().iter().filter(|p| shop.stock(&p.sku) == Some([0; 3])).count();
        let share = sold_out as f64 / 5_000.0;
        assert!((0.08..=0.12).contains(&share), "share {share}");
    }

    #[test]
    fn lookups_by_id_and_sku() {
        let shop = Shop::generate(&small(1));
        assert_eq!(shop.index_of("p-00042"), Some(41));
        assert_eq!(shop.product_by_sku("SKU-00042").map(|p| p.id.as_str()), Some("p-00042"));
        assert_eq!(shop.index_of("p-42"), None);
        assert_eq!(shop.index_of("p-00000"), None);
        assert_eq!(shop.index_of("p-99999"), None);
        assert_eq!(shop.index_of("p-+0042"), None);
        assert_eq!(shop.stock("SKU-99999"), None);
    }

    #[test]
    fn reviews_are_stable_newest_first_and_agree_with_summary() {
        let shop = Shop::generate(&small(3));
        let mut seen_reviews = false;
        for p in shop.products().iter().take(50) {
            let reviews = shop.reviews(&p.id);
            assert_eq!(reviews, shop.reviews(&p.id));
            assert!(reviews.len() <= 40);
            assert!(reviews.windows(2).all(|w| w[0].created_at >= w[1].created_at));
            assert!(reviews.iter().all(|r| r.created_at >= p.created_at));
            let summary = shop.summary(&p.id);
            assert_eq!(summary.count as usize, reviews.len());
            let h = summary.histogram;
            assert_eq!(h.one + h.two + h.three + h.four + h.five, summary.count);
            seen_reviews |= !reviews.is_empty();
        }
        assert!(seen_reviews);
        assert!(shop.reviews("p-99999").is_empty());
        assert_eq!(shop.summary("p-99999").average, 0.0);
    }

    #[test]
    fn featured_is_stable_spread_and_in_stock() {
        let shop = Shop::generate(&demo());
        let featured: Vec<&Product> = shop.featured().collect();
        assert_eq!(featured.len(), FEATURED);
        let categories: std::collections::BTreeSet<_> =
            featured.iter().map(|p| p.category).collect();
        assert_eq!(categories.len(), 8);
        assert!(featured.iter().all(|p| shop.stock(&p.sku) != Some([0; 3])));
        let other = Shop::generate(&demo());
        let again: Vec<&str> = other.featured().map(|p| p.id.as_str()).collect();
        assert_eq!(featured.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), again);
    }

    #[test]
    fn related_prefers_same_category() {
        let shop = Shop::generate(&small(5));
        let related = shop.related(0, 5);
        assert_eq!(related.len(), 5);
        let category = shop.products()[0].category;
        assert!(related.iter().all(|&(j, score)| j != 0
            && shop.products()[j].category == category
            && (0.5..=1.0).contains(&score)));
        assert!(related.windows(2).all(|w| w[0].1 >= w[1].1));
        assert_eq!(related, shop.related(0, 5));

        // A tiny shop runs out of same-category products and falls back to the others.
        let tiny = Shop::generate(&DemoParams { products: 4, ..small(5) });
        let related = tiny.related(0, 10);
        assert_eq!(related.len(), 3);
        assert!(related.iter().all(|&(j, _)| j != 0));
    }

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(START_UNIX), "2024-01-01T00:00:00Z");
        assert_eq!(rfc3339(END_UNIX), "2026-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_709_210_096), "2024-02-29T12:34:56Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn price_bands() {
        assert_eq!(price_band(2_499), "0-25");
        assert_eq!(price_band(2_500), "25-50");
        assert_eq!(price_band(9_999), "50-100");
        assert_eq!(price_band(24_999), "100-250");
        assert_eq!(price_band(25_000), "250+");
    }
}
