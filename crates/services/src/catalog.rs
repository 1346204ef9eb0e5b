//! The catalog service (HTTP/JSON): product listing with opaque cursors, batch lookup by ids,
//! featured products, lookup by id or SKU, and full-text search with facets.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::data::{PRICE_BANDS, Product, Shop, price_band};
use crate::problem::Problem;
use crate::{http, query};

/// The catalog's routes over the shared shop.
pub fn router(shop: Arc<Shop>) -> Router {
    http::finish(
        Router::new()
            .route("/products", get(list))
            .route("/products/featured", get(featured))
            .route("/products/by-sku/{sku}", get(by_sku))
            .route("/products/{id}", get(by_id))
            .route("/search", get(search))
            .with_state(shop),
    )
}

/// Query parameters of the listing and search endpoints; strings so that bad values get a
/// problem naming the parameter, and empty values (`category=`) count as absent.
#[derive(Debug, Default, Deserialize)]
struct Params {
    limit: Option<String>,
    cursor: Option<String>,
    category: Option<String>,
    brand: Option<String>,
    ids: Option<String>,
    skus: Option<String>,
    q: Option<String>,
}

/// How a batch lookup finds one product: by id or by SKU.
type Lookup = for<'a> fn(&'a Shop, &str) -> Option<&'a Product>;

fn present(value: Option<&String>) -> Option<&str> {
    value.map(String::as_str).filter(|v| !v.is_empty())
}

#[derive(Debug, Serialize)]
struct Page<'a> {
    items: Vec<&'a Product>,
    next_cursor: Option<String>,
    total: usize,
}

#[derive(Debug, Serialize)]
struct Items<'a> {
    items: Vec<&'a Product>,
}

#[derive(Debug, Serialize)]
struct SearchPage<'a> {
    #[serde(flatten)]
    page: Page<'a>,
    facets: Facets<'a>,
}

#[derive(Debug, Serialize)]
struct Facets<'a> {
    category: Vec<Facet<'a>>,
    brand: Vec<Facet<'a>>,
    price_band: Vec<Facet<'a>>,
}

#[derive(Debug, Serialize)]
struct Facet<'a> {
    value: &'a str,
    count: usize,
}

async fn list(
    State(shop): State<Arc<Shop>>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(params) = params.map_err(query::rejected)?;
    let limit = query::int_in("limit", params.limit.as_deref(), 20, 1..=100)? as usize;
    let filter = Filter::new(&params);

    // A batch lookup answers exactly the ids (or SKUs) asked for, so there is nothing to page
    // through.
    let batch = match (params.ids.as_deref(), params.skus.as_deref()) {
        (Some(ids), _) => Some((ids, Shop::product as Lookup)),
        (None, Some(skus)) => Some((skus, Shop::product_by_sku as Lookup)),
        (None, None) => None,
    };
    if let Some((raw, lookup)) = batch {
        let items: Vec<&Product> = query::id_list(raw)?
            .into_iter()
            .filter_map(|key| lookup(&shop, key))
            .filter(|p| filter.accepts(p))
            .collect();
        let total = items.len();
        let page = Page { items, next_cursor: None, total };
        return Ok(Json(page).into_response());
    }

    let matches: Vec<usize> =
        (0..shop.products().len()).filter(|&i| filter.accepts(&shop.products()[i])).collect();
    let (items, next_cursor) = paginate(&shop, &matches, params.cursor.as_ref(), limit)?;
    let page = Page { items, next_cursor, total: matches.len() };
    // Serialized here, while the products are still borrowed from the shop: no clones.
    Ok(Json(page).into_response())
}

async fn search(
    State(shop): State<Arc<Shop>>,
    params: Result<Query<Params>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(params) = params.map_err(query::rejected)?;
    let limit = query::int_in("limit", params.limit.as_deref(), 20, 1..=100)? as usize;
    let filter = Filter::new(&params);
    let words: Vec<String> =
        params.q.as_deref().unwrap_or_default().split_whitespace().map(str::to_lowercase).collect();

    let matches: Vec<usize> = (0..shop.products().len())
        .filter(|&i| filter.accepts(&shop.products()[i]) && shop.matches(i, &words))
        .collect();
    let facets = facets(&shop, &matches);
    let (items, next_cursor) = paginate(&shop, &matches, params.cursor.as_ref(), limit)?;
    let page = Page { items, next_cursor, total: matches.len() };
    Ok(Json(SearchPage { page, facets }).into_response())
}

#[derive(Debug, Deserialize)]
struct FeaturedParams {
    limit: Option<String>,
}

async fn featured(
    State(shop): State<Arc<Shop>>,
    params: Result<Query<FeaturedParams>, QueryRejection>,
) -> Result<Response, Problem> {
    let Query(params) = params.map_err(query::rejected)?;
    let limit = query::int_in("limit", params.limit.as_deref(), 10, 1..=100)? as usize;
    let items: Vec<&Product> = shop.featured().take(limit).collect();
    Ok(Json(Items { items }).into_response())
}

async fn by_id(State(shop): State<Arc<Shop>>, Path(id): Path<String>) -> Result<Response, Problem> {
    shop.product(&id)
        .map(|p| Json(p).into_response())
        .ok_or_else(|| Problem::not_found(format!("no product with id {id}")))
}

async fn by_sku(
    State(shop): State<Arc<Shop>>,
    Path(sku): Path<String>,
) -> Result<Response, Problem> {
    shop.product_by_sku(&sku)
        .map(|p| Json(p).into_response())
        .ok_or_else(|| Problem::not_found(format!("no product with sku {sku}")))
}

// === Filtering, paging, facets ===

/// The `category` and `brand` filters, combined with AND; case-insensitive.
struct Filter<'a> {
    category: Option<&'a str>,
    brand: Option<&'a str>,
}

impl<'a> Filter<'a> {
    fn new(params: &'a Params) -> Self {
        Self { category: present(params.category.as_ref()), brand: present(params.brand.as_ref()) }
    }

    fn accepts(&self, product: &Product) -> bool {
        self.category.is_none_or(|c| product.category.eq_ignore_ascii_case(c))
            && self.brand.is_none_or(|b| product.brand.eq_ignore_ascii_case(b))
    }
}

/// One page of `matches` (indices into the shop) starting at the cursor.
///
/// The cursor is an offset into the filtered result; the shop never changes while the process
/// runs, so an offset is stable. It is base64-wrapped to keep clients from building their own.
fn paginate<'s>(
    shop: &'s Shop,
    matches: &[usize],
    cursor: Option<&String>,
    limit: usize,
) -> Result<(Vec<&'s Product>, Option<String>), Problem> {
    let start = match present(cursor) {
        None => 0,
        Some(raw) => {
            decode_cursor(raw).filter(|&offset| offset <= matches.len()).ok_or_else(|| {
                Problem::bad_request(
                    "invalid_cursor",
                    format!("cursor {raw:?} was not issued for this query"),
                )
            })?
        }
    };
    let end = (start + limit).min(matches.len());
    let items = matches[start..end].iter().map(|&i| &shop.products()[i]).collect();
    let next = (end < matches.len()).then(|| encode_cursor(end));
    Ok((items, next))
}

fn encode_cursor(offset: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("o:{offset}"))
}

fn decode_cursor(raw: &str) -> Option<usize> {
    let bytes = URL_SAFE_NO_PAD.decode(raw).ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    text.strip_prefix("o:")?.parse().ok()
}

/// Facet counts over every match, most frequent first (price bands in ascending order).
fn facets<'s>(shop: &'s Shop, matches: &[usize]) -> Facets<'s> {
    let mut categories: BTreeMap<&str, usize> = BTreeMap::new();
    let mut brands: BTreeMap<&str, usize> = BTreeMap::new();
    let mut bands: BTreeMap<&str, usize> = BTreeMap::new();
    for &i in matches {
        let product = &shop.products()[i];
        *categories.entry(product.category).or_default() += 1;
        *brands.entry(product.brand).or_default() += 1;
        *bands.entry(price_band(product.price.amount_minor)).or_default() += 1;
    }
    let by_count = |counts: BTreeMap<&'s str, usize>| {
        let mut facets: Vec<Facet<'s>> =
            counts.into_iter().map(|(value, count)| Facet { value, count }).collect();
        // Stable sort: equal counts stay in alphabetical (BTreeMap) order.
        facets.sort_by_key(|f| std::cmp::Reverse(f.count));
        facets
    };
    Facets {
        category: by_count(categories),
        brand: by_count(brands),
        price_band: PRICE_BANDS
            .iter()
            .filter_map(|&band| bands.get(band).map(|&count| Facet { value: band, count }))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::DemoParams;
    use crate::http::testing::{assert_problem, get};
    use axum::http::StatusCode;
    use serde_json::Value;

    fn app() -> (Router, Arc<Shop>) {
        let shop = Arc::new(Shop::generate(&DemoParams::default()));
        (router(Arc::clone(&shop)), shop)
    }

    fn ids(answer: &Value) -> Vec<String> {
        answer["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|p| p["id"].as_str().expect("id").to_owned())
            .collect()
    }

    #[tokio::test]
    async fn pagination_walks_every_product_once() {
        let (app, _) = app();
        let mut seen = Vec::new();
        let mut uri = "/products?limit=100".to_owned();
        loop {
            let page = get(&app, &uri).await;
            assert_eq!(page.status, StatusCode::OK);
            assert_eq!(page.json["total"], 5_000);
            seen.extend(ids(&page.json));
            match page.json["next_cursor"].as_str() {
                Some(cursor) => uri = format!("/products?limit=100&cursor={cursor}"),
                None => break,
            }
        }
        assert_eq!(seen.len(), 5_000);
        let unique: BTreeSet<&String> = seen.iter().collect();
        assert_eq!(unique.len(), 5_000);
    }

    #[tokio::test]
    async fn filters_combine_with_and() {
        let (app, shop) = app();
        let page = get(&app, "/products?category=kitchen&brand=Northwind&limit=100").await;
        let expected = shop
            .products()
            .iter()
            .filter(|p| p.category == "kitchen" && p.brand == "Northwind")
            .count();
        assert!(expected > 0);
        assert_eq!(page.json["total"], expected);
        for item in page.json["items"].as_array().expect("items") {
            assert_eq!(item["category"], "kitchen");
            assert_eq!(item["brand"], "Northwind");
        }
        let empty_filters = get(&app, "/products?category=&brand=&cursor=").await;
        assert_eq!(empty_filters.json["total"], 5_000);
    }

    #[tokio::test]
    async fn skus_are_a_batch_lookup_too() {
        let (app, _) = app();
        let page = get(&app, "/products?skus=SKU-00042,SKU-99999,SKU-00007").await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(ids(&page.json), ["p-00042", "p-00007"]);
    }

    #[tokio::test]
    async fn ids_keep_the_order_given_and_skip_unknown() {
        let (app, _) = app();
        let page = get(&app, "/products?ids=p-00042,p-99999,p-00007,p-00001").await;
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(ids(&page.json), ["p-00042", "p-00007", "p-00001"]);
        assert_eq!(page.json["next_cursor"], Value::Null);
        let many = (1..=101).map(|n| format!("p-{n:05}")).collect::<Vec<_>>().join(",");
        let too_many = get(&app, &format!("/products?ids={many}")).await;
        assert_problem(&too_many, StatusCode::BAD_REQUEST, "invalid_parameter");
    }

    #[tokio::test]
    async fn product_by_id_and_sku() {
        let (app, shop) = app();
        let product = get(&app, "/products/p-00042").await;
        assert_eq!(product.status, StatusCode::OK);
        assert_eq!(product.json, serde_json::to_value(shop.product("p-00042")).expect("json"));
        let by_sku = get(&app, "/products/by-sku/SKU-00042").await;
        assert_eq!(by_sku.json, product.json);
        assert_problem(&get(&app, "/products/p-99999").await, StatusCode::NOT_FOUND, "not_found");
        assert_problem(
            &get(&app, "/products/by-sku/SKU-99999").await,
            StatusCode::NOT_FOUND,
            "not_found",
        );
    }

    #[tokio::test]
    async fn bad_cursor_and_limit() {
        let (app, _) = app();
        for cursor in ["garbage!", "bzo5OTk5OQ", "AAAA"] {
            let answer = get(&app, &format!("/products?cursor={cursor}")).await;
            assert_problem(&answer, StatusCode::BAD_REQUEST, "invalid_cursor");
        }
        for limit in ["0", "101", "ten"] {
            let answer = get(&app, &format!("/products?limit={limit}")).await;
            assert_problem(&answer, StatusCode::BAD_REQUEST, "invalid_parameter");
        }
    }

    #[tokio::test]
    async fn featured_is_stable_and_respects_limit() {
        let (app, _) = app();
        let default = get(&app, "/products/featured").await;
        assert_eq!(default.status, StatusCode::OK);
        assert_eq!(ids(&default.json).len(), 10);
        let three = get(&app, "/products/featured?limit=3").await;
        assert_eq!(ids(&three.json), ids(&default.json)[..3]);
    }

    #[tokio::test]
    async fn search_finds_by_name_and_counts_facets() {
        let (app, shop) = app();
        let target = shop.product("p-00123").expect("product");
        let word = target.name.split(' ').next().expect("a word");
        let noun = target.name.rsplit(' ').next().expect("a word");
        let query = format!("{} {}", word.to_uppercase(), noun.to_lowercase());
        let mut found = Vec::new();
        let mut uri = format!("/search?q={}&limit=100", query.replace(' ', "+"));
        let first = get(&app, &uri).await;
        assert_eq!(first.status, StatusCode::OK);
        let total = first.json["total"].as_u64().expect("total");
        let mut page = first.json.clone();
        loop {
            found.extend(ids(&page));
            match page["next_cursor"].as_str() {
                Some(cursor) => {
                    uri =
                        format!("/search?q={}&limit=100&cursor={cursor}", query.replace(' ', "+"));
                    page = get(&app, &uri).await.json;
                }
                None => break,
            }
        }
        assert!(found.contains(&target.id), "{query} did not find {}", target.id);
        assert_eq!(found.len() as u64, total);

        for facet in ["category", "brand", "price_band"] {
            let sum: u64 = first.json["facets"][facet]
                .as_array()
                .expect("facet")
                .iter()
                .map(|f| f["count"].as_u64().expect("count"))
                .sum();
            assert_eq!(sum, total, "{facet}");
        }

        let none = get(&app, "/search?q=zzzyqx").await;
        assert_eq!(none.json["total"], 0);
        assert_eq!(none.json["next_cursor"], Value::Null);
    }
}
