//! `GET /v1/products/{id}`: the product screen — short description, rating, stock badge and the
//! three newest reviews. The product is required; rating, reviews and stock are optional and
//! fetched in parallel with it.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use portico_contracts::inventory::{GetStockRequest, inventory_client::InventoryClient};
use portico_edge::{Composed, Degraded, EdgeError, compose, fields::FieldSet, params};
use serde_json::Value;

use super::FieldsQuery;
use crate::{
    AppState,
    backend::{Product, ReviewPage, Summary},
    view::{self, DETAIL_FIELDS, ProductDetail, ReviewSnippet, StockBadge},
};

/// The product screen.
#[utoipa::path(get, path = "/v1/products/{id}", tag = "mobile",
    params(("id" = String, Path, description = "Product id, e.g. `p-00042`"), FieldsQuery),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The product screen; `degraded` names missing parts", body = ProductDetail),
        (status = 400, description = "Malformed id or unknown field", body = portico_edge::error::Problem,
         content_type = "application/problem+json"),
        portico_edge::openapi::InvalidToken,
        (status = 404, description = "No such product", body = portico_edge::error::Problem,
         content_type = "application/problem+json"),
        portico_edge::openapi::UpstreamFailure,
        portico_edge::openapi::Unavailable,
        portico_edge::openapi::UpstreamTimeout,
    ))]
pub async fn product(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<FieldsQuery>,
) -> Result<Composed<Value>, EdgeError> {
    let id = params::id("id", &id)?;
    let fields = query.fields.as_deref().map(|f| FieldSet::parse(f, DETAIL_FIELDS)).transpose()?;

    let (product, summary, reviews) = tokio::join!(
        compose::required(
            "product",
            state.catalog.get(&format!("/products/{id}")).fetch::<Product>()
        ),
        compose::optional(
            "rating",
            state.reviews.get(&format!("/products/{id}/summary")).fetch::<Summary>()
        ),
        compose::optional(
            "reviews",
            state
                .reviews
                .get(&format!("/products/{id}/reviews"))
                .query(&[("page", "1"), ("per_page", "3")])
                .fetch::<ReviewPage>()
        ),
    );
    let product = product?;
    // Inventory is keyed by SKU, which only the catalog knows.
    let stock = compose::optional("stock", stock_of(&state, product.sku.clone())).await;

    let mut degraded = Degraded::default();
    let (summary, reviews, stock) =
        (degraded.take(summary), degraded.take(reviews), degraded.take(stock));
    let view = ProductDetail {
        image: view::detail_image(&product.images),
        price: product.price.to_string(),
        short_description: view::short_description(&product.description),
        rating: summary.as_ref().map(view::rating),
        stock: stock.map(StockBadge::from_available),
        top_reviews: reviews
            .map(|page| {
                page.items
                    .into_iter()
                    .take(3)
                    .map(|r| ReviewSnippet { rating: r.rating, title: r.title, author: r.author })
                    .collect()
            })
            .unwrap_or_default(),
        id: product.id,
        name: product.name,
        degraded: degraded.clone(),
    };
    Ok(Composed::new(FieldSet::project(fields.as_ref(), &view)?, degraded)
        .tagged(format!("product:{id}")))
}

async fn stock_of(state: &AppState, sku: String) -> Result<u32, EdgeError> {
    let level = state
        .inventory
        .call("GetStock", GetStockRequest { sku }, |channel, request| async move {
            InventoryClient::new(channel).get_stock(request).await
        })
        .await?;
    Ok(level.total_available)
}
