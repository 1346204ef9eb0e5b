//! # portico-mobile
//!
//! The mobile Backend-for-Frontend: a slim API for phones on slow networks. Each endpoint is
//! one round trip for a whole screen, composed from several services, trimmed to what the screen
//! shows (small cards, one small image, a stock badge, the top reviews), compressed (gzip/br),
//! and further trimmable by the client with sparse fieldsets (`?fields=`).
//!
//! Public surface: `GET /v1/home`, `GET /v1/products/{id}`, `/healthz`, `/readyz`,
//! `/openapi.json`. Upstreams: `catalog` and `reviews` (HTTP), `inventory` (gRPC).

mod backend;
mod routes;
mod view;

use std::sync::Arc;

use axum::{Router, routing::get};
use portico_edge::{
    ConfigError, GatewayConfig, Upstreams, stack,
    upstream::{GrpcUpstream, HttpUpstream},
};
use tower_http::compression::CompressionLayer;
use utoipa::OpenApi;

/// The name this gateway's configuration and logs use.
pub const NAME: &str = "mobile";

/// The OpenAPI document of this gateway's public API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Portico mobile API", version = "1.0.0",
         description = "A slim, compressed API for mobile apps: one request per screen."),
    paths(routes::home::home, routes::product::product,
          portico_edge::health::healthz, portico_edge::health::readyz),
    components(schemas(portico_edge::error::Problem)),
    tags((name = "mobile", description = "Screens of the mobile app"),
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
    inventory: GrpcUpstream,
}

/// The mobile gateway: its routes inside the shared edge stack, compressed.
pub fn app(config: &GatewayConfig) -> Result<Router, ConfigError> {
    let upstreams = Upstreams::from_config(config)?;
    let state = Arc::new(AppState {
        catalog: upstreams.require_http("catalog")?,
        reviews: upstreams.require_http("reviews")?,
        inventory: upstreams.require_grpc("inventory")?,
    });
    let routes = Router::new()
        .route("/v1/home", get(routes::home::home))
        .route("/v1/products/{id}", get(routes::product::product))
        .with_state(state)
        .merge(portico_edge::openapi::routes(&ApiDoc::openapi()));
    let router = stack::gateway(routes, config, &upstreams)?;
    // Outermost, so every body — composed, passed through or a problem — is compressed when the
    // client accepts it; on mobile networks bytes are the cost that matters.
    Ok(router.layer(CompressionLayer::new()))
}

#[cfg(test)]
mod tests;
