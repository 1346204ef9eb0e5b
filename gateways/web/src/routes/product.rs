//! `GET /api/products/{id}`: the whole product page from five services in parallel. Only the
//! product itself is required; rating, reviews, stock and recommendations each degrade alone.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use portico_contracts::inventory::{GetStockRequest, inventory_client::InventoryClient};
use portico_edge::{Composed, Degraded, EdgeError, compose, params};
use serde::Deserialize;

use super::products_by;
use crate::{
    AppState,
    backend::{Product, Recommendations, ReviewPage, Summary},
    view::{ProductCard, ProductPage, Stock, WarehouseStock},
};

/// How many recommendations the page shows.
const RECOMMENDATIONS: &str = "6";
/// Reviews per page.
const REVIEWS_PER_PAGE: &str = "10";

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Which page of reviews, from 1.
    #[param(minimum = 1)]
    pub reviews_page: Option<u32>,
}

/// The product page.
#[utoipa::path(get, path = "/api/products/{id}", tag = "web",
    params(("id" = String, Path, description = "Product id, e.g. `p-00042`"), PageQuery),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The product page; `degraded` names missing parts", body = ProductPage),
        (status = 400, description = "Malformed id or page", body = portico_edge::error::Problem,
         content_type = "application/problem+json"),
        portico_edge::openapi::InvalidToken,
        (status = 404, description = "No such product", body = portico_edge::error::Problem,
         content_type = "application/problem+json"),
        portico_edge::openapi::UpstreamFailure,
        portico_edge::openapi::Unavailable,
        portico_edge::openapi::UpstreamTimeout,
    ))]
pub async fn product_page(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Query(query): Query<PageQuery>,
) -> Result<Composed<ProductPage>, EdgeError> {
    let id = params::id("id", &id)?;
    let page = query.reviews_page.unwrap_or(1);
    if page == 0 {
        return Err(EdgeError::invalid("invalid_parameter", "`reviews_page` starts at 1"));
    }
    let page = page.to_string();

    // Four independent chains run at once; stock waits only for the product (it needs the
    // SKU), and recommendation cards only for the recommended ids.
    let (product_and_stock, rating, reviews, recommendations) = tokio::join!(
        async {
            let product = compose::required(
                "product",
                state.catalog.get(&format!("/products/{id}")).fetch::<Product>(),
            )
            .await?;
            let stock = compose::optional("stock", stock_of(&state, product.sku.clone())).await;
            Ok::<_, EdgeError>((product, stock))
        },
        compose::optional(
            "rating",
            state.reviews.get(&format!("/products/{id}/summary")).fetch::<Summary>()
        ),
        compose::optional(
            "reviews",
            state
                .reviews
                .get(&format!("/products/{id}/reviews"))
                .query(&[("page", page.as_str()), ("per_page", REVIEWS_PER_PAGE)])
                .fetch::<ReviewPage>(),
        ),
        compose::optional("recommendations", recommended_cards(&state, id)),
    );
    let (product, stock) = product_and_stock?;

    let mut degraded = Degraded::default();
    let rating = degraded.take(rating).map(Into::into);
    let reviews = degraded.take(reviews).map(Into::into);
    let stock = degraded.take(stock);
    let recommendations = degraded.take(recommendations).unwrap_or_default();
    let view = ProductPage {
        product: product.into(),
        rating,
        reviews,
        stock,
        recommendations,
        degraded: degraded.clone(),
    };
    Ok(Composed::new(view, degraded).tagged(format!("product:{id}")))
}

async fn stock_of(state: &AppState, sku: String) -> Result<Stock, EdgeError> {
    let level = state
        .inventory
        .call("GetStock", GetStockRequest { sku }, |channel, request| async move {
            InventoryClient::new(channel).get_stock(request).await
        })
        .await?;
    Ok(Stock {
        total_available: level.total_available,
        warehouses: level
            .warehouses
            .into_iter()
            .map(|w| WarehouseStock { warehouse: w.warehouse, available: w.available })
            .collect(),
    })
}

/// Recommended ids, then their cards in one batch call.
async fn recommended_cards(state: &AppState, id: &str) -> Result<Vec<ProductCard>, EdgeError> {
    let recommended: Recommendations = state
        .recommendations
        .get(&format!("/recommendations/{id}"))
        .query(&[("limit", RECOMMENDATIONS)])
        .fetch()
        .await?;
    let ids: Vec<String> = recommended.items.into_iter().map(|r| r.product_id).collect();
    let products = products_by(&state.catalog, "ids", &ids).await?;
    Ok(products.into_iter().map(ProductCard::from).collect())
}
