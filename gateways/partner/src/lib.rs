//! # portico-partner
//!
//! The partner API: a stable, versioned API for third parties (marketplaces, resellers,
//! affiliates) who integrate by machine. Unlike the mobile and web BFFs it shapes nothing for
//! display: money is integer minor units, images are full-size URLs, and every field name is a
//! promise. `/partner/v1` never changes incompatibly; a `/partner/v2` would live beside it.
//!
//! Public surface: `GET /partner/v1/products`, `GET /partner/v1/stock`,
//! `POST /partner/v1/orders`, `GET /partner/v1/orders/{id}`, `/healthz`, `/readyz`,
//! `/openapi.json`. Upstreams: `catalog` and `orders` (HTTP), `inventory` (gRPC).

mod backend;
mod partner;
mod routes;
mod validate;
mod view;

use std::sync::Arc;

use axum::{
    Router,
    routing::{get, post},
};
use portico_edge::{
    ConfigError, GatewayConfig, Upstreams, stack,
    upstream::{GrpcUpstream, HttpUpstream},
};
use utoipa::OpenApi;

/// The name this gateway's configuration and logs use.
pub const NAME: &str = "partner";

/// The OpenAPI document of this gateway's public API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Portico partner API", version = "1.0.0",
         description = "The stable, versioned API for partners: a product feed, stock by SKU, \
and order placement. `/partner/v1` never changes incompatibly: fields may be added, none is \
renamed, retyped or removed; an incompatible change would be a `/partner/v2` beside it. Money is \
`{amount_minor, currency}` in the currency's minor unit. Errors are RFC 7807 \
`application/problem+json` with a stable `code`.\n\n\
**Partner identity (interim):** until authentication lands, the calling partner names itself \
in the `X-Partner-Id` header, which the order endpoints require. It will be replaced by the \
partner's OAuth client credentials; the header will then be ignored."),
    paths(routes::products::products, routes::stock::stock,
          routes::orders::place_order, routes::orders::get_order,
          portico_edge::health::healthz, portico_edge::health::readyz),
    components(schemas(portico_edge::error::Problem)),
    tags((name = "partner", description = "The partner API, version 1"),
         (name = "operations", description = "Health probes")),
)]
pub struct ApiDoc;

/// The OpenAPI document as pretty JSON (what `/openapi.json` serves and `openapi/` keeps).
pub fn openapi_json() -> String {
    portico_edge::openapi::pretty(&ApiDoc::openapi())
}

/// What handlers share: the upstreams, resolved once at start-up.
#[derive(Clone, Debug)]
struct AppState {
    catalog: HttpUpstream,
    orders: HttpUpstream,
    inventory: GrpcUpstream,
}

/// The partner gateway: its routes inside the shared edge stack.
pub fn app(config: &GatewayConfig) -> Result<Router, ConfigError> {
    let upstreams = Upstreams::from_config(config)?;
    let state = Arc::new(AppState {
        catalog: upstreams.require_http("catalog")?,
        orders: upstreams.require_http("orders")?,
        inventory: upstreams.require_grpc("inventory")?,
    });
    let routes = Router::new()
        .route("/partner/v1/products", get(routes::products::products))
        .route("/partner/v1/stock", get(routes::stock::stock))
        .route("/partner/v1/orders", post(routes::orders::place_order))
        .route("/partner/v1/orders/{id}", get(routes::orders::get_order))
        .with_state(state)
        .merge(portico_edge::openapi::routes(&ApiDoc::openapi()));
    stack::gateway(routes, config, &upstreams)
}

#[cfg(test)]
mod tests;
