//! # portico-web
//!
//! The web Backend-for-Frontend: a rich API for browser frontends with room to show everything.
//! A product page arrives whole — the full product, every image, a page of reviews with the
//! rating histogram, stock per warehouse and recommendations — composed from five services in
//! parallel. Recommendations are optional by design: a slow or failing recommendations service
//! degrades the page, it never fails it.
//!
//! Public surface: `GET /api/products/{id}`, `GET /api/search?q=`, `GET /api/orders?customer=`,
//! `/healthz`, `/readyz`, `/openapi.json`. Upstreams: `catalog`, `reviews`, `recommendations`,
//! `orders` (HTTP), `inventory` (gRPC).

mod backend;
mod routes;
mod view;

use std::sync::Arc;

use axum::{Router, routing::get};
use portico_edge::{
    ConfigError, GatewayConfig, Upstreams, stack,
    upstream::{GrpcUpstream, HttpUpstream},
};
use utoipa::OpenApi;

/// The name this gateway's configuration and logs use.
pub const NAME: &str = "web";

/// The OpenAPI document of this gateway's public API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Portico web API", version = "1.0.0",
         description = "A rich API for web frontends: whole pages in one request."),
    paths(routes::product::product_page, routes::search::search, routes::orders::order_history,
          portico_edge::health::healthz, portico_edge::health::readyz),
    components(schemas(portico_edge::error::Problem)),
    tags((name = "web", description = "Pages of the web shop"),
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
    reviews: HttpUpstream,
    recommendations: HttpUpstream,
    orders: HttpUpstream,
    inventory: GrpcUpstream,
}

/// The web gateway: its routes inside the shared edge stack.
pub fn app(config: &GatewayConfig) -> Result<Router, ConfigError> {
    let upstreams = Upstreams::from_config(config)?;
    let state = Arc::new(AppState {
        catalog: upstreams.require_http("catalog")?,
        reviews: upstreams.require_http("reviews")?,
        recommendations: upstreams.require_http("recommendations")?,
        orders: upstreams.require_http("orders")?,
        inventory: upstreams.require_grpc("inventory")?,
    });
    let routes = Router::new()
        .route("/api/products/{id}", get(routes::product::product_page))
        .route("/api/search", get(routes::search::search))
        .route("/api/orders", get(routes::orders::order_history))
        .with_state(state)
        .merge(portico_edge::openapi::routes(&ApiDoc::openapi()));
    stack::gateway(routes, config, &upstreams)
}

#[cfg(test)]
mod tests;
