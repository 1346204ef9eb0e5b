//! `GET /v1/home`: the home screen in one request — featured products as small cards with a
//! stock flag. Catalog is required; stock is optional (the cards then lack `in_stock`).

use std::sync::Arc;

use axum::extract::{Query, State};
use portico_edge::{Composed, Degraded, EdgeError, compose, fields::FieldSet};
use serde_json::Value;

use super::{FieldsQuery, stock_by_sku};
use crate::{
    AppState,
    backend::ProductList,
    view::{Card, HOME_FIELDS, Home},
};

/// How many featured products the home screen shows.
const FEATURED: &str = "10";

/// The home screen.
#[utoipa::path(get, path = "/v1/home", tag = "mobile", params(FieldsQuery),
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "The home screen; `degraded` names missing parts", body = Home),
        (status = 400, description = "Unknown field in `fields`", body = portico_edge::error::Problem,
         content_type = "application/problem+json"),
        portico_edge::openapi::InvalidToken,
        portico_edge::openapi::UpstreamFailure,
        portico_edge::openapi::Unavailable,
        portico_edge::openapi::UpstreamTimeout,
    ))]
pub async fn home(
    State(state): State<Arc<AppState>>,
    Query(query): Query<FieldsQuery>,
) -> Result<Composed<Value>, EdgeError> {
    let fields = query.fields.as_deref().map(|f| FieldSet::parse(f, HOME_FIELDS)).transpose()?;

    let featured: ProductList = compose::required(
        "featured",
        state.catalog.get("/products/featured").query(&[("limit", FEATURED)]).fetch(),
    )
    .await?;
    // Stock depends on the SKUs, so it follows the catalog call, as one batch for all cards.
    let skus = featured.items.iter().map(|p| p.sku.clone()).collect();
    let stock = compose::optional("stock", stock_by_sku(&state.inventory, skus)).await;

    let mut degraded = Degraded::default();
    let stock = degraded.take(stock);
    let featured = featured.items.into_iter().map(|p| Card::new(p, stock.as_ref())).collect();
    let view = Home { featured, degraded: degraded.clone() };
    Ok(Composed::new(FieldSet::project(fields.as_ref(), &view)?, degraded))
}
