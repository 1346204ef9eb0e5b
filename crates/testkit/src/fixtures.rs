//! Backend JSON in the shapes of `shared/SERVICES.md`, for mock backends.

use serde_json::{Value, json};

/// Product number `n` as the catalog serves it: id `p-0000n`, SKU `SKU-0000n`, price
/// `n * 100 + 99` minor units EUR, two images with 160/480 px variants, a long description.
pub fn product(n: u32) -> Value {
    let id = format!("p-{n:05}");
    let image = |i: u32| {
        json!({
            "url": format!("https://img.test/{id}/{i}-1200.jpg"), "alt": "photo",
            "width": 1200, "height": 900,
            "variants": [
                {"width": 160, "url": format!("https://img.test/{id}/{i}-160.jpg")},
                {"width": 480, "url": format!("https://img.test/{id}/{i}-480.jpg")},
            ],
        })
    };
    json!({
        "id": id,
        "sku": format!("SKU-{n:05}"),
        "name": format!("Product {n}"),
        "brand": "Northwind",
        "category": "outdoor",
        "description": "A long description that goes on. ".repeat(40),
        "price": {"amount_minor": i64::from(n) * 100 + 99, "currency": "EUR"},
        "images": [image(1), image(2)],
        "attributes": {"color": "red"},
        "tags": ["new"],
        "created_at": "2025-01-01T00:00:00Z",
    })
}

/// A reviews summary.
pub fn summary(product_id: &str, average: f64, count: u32) -> Value {
    json!({
        "product_id": product_id, "average": average, "count": count,
        "histogram": {"1": 0, "2": 0, "3": 0, "4": count / 2, "5": count - count / 2},
    })
}

/// A page of `count` reviews, newest first.
pub fn reviews(product_id: &str, count: u32) -> Value {
    let items: Vec<Value> = (0..count)
        .map(|i| {
            json!({
                "id": format!("r-{i}"), "product_id": product_id, "rating": 5 - (i % 5),
                "title": format!("Review {i}"), "body": "Great.", "author": format!("user{i}"),
                "created_at": "2025-06-01T00:00:00Z",
            })
        })
        .collect();
    json!({"items": items, "page": 1, "per_page": count.max(1), "total": count})
}
