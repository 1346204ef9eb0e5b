//! # portico-mobile
//!
//! The mobile Backend-for-Frontend: a slim API for phones on slow networks. Each endpoint is
//! one round trip for a whole screen, composed from several services, trimmed to what the screen
//! shows (small cards, one small image, a stock badge, the top reviews), compressed (gzip/br),
//! and further trimmable by the client with sparse fieldsets (`?fields=`).
//!
//! Public surface: `GET /v1/home`, `GET /v1/products/{id}`, `/healthz`, `/readyz`,
//! `/openapi.json`, all open to anonymous browsing; a user token for the audience `mobile` is
//! accepted when sent, and must then be valid. Upstreams: `catalog` and `reviews` (HTTP),
//! `inventory` (gRPC).

mod backend;
mod routes;
mod view;

use std::sync::Arc;

use portico_edge::{
    ConfigError, GatewayConfig, Upstreams,
    access::{Access, Routes},
    pipeline::EdgeState,
    stack,
    upstream::{GrpcUpstream, HttpUpstream},
};
use tower_http::compression::CompressionLayer;
use utoipa::{Modify, OpenApi};

/// The name this gateway's configuration and logs use.
pub const NAME: &str = "mobile";

/// The OpenAPI document of this gateway's public API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Portico mobile API", version = "1.0.0",
         description = "A slim, compressed API for mobile apps: one request per screen.\n\n\
**Authentication:** every screen is open to anonymous browsing. A signed-in app may send a user \
token for the audience `mobile` as `Authorization: Bearer <token>` (from the identity service's \
`POST /token`, or `portico token user alice --audience mobile`); a token that is sent must be \
valid and for this gateway, or the request is refused (`401 invalid_token`)."),
    paths(routes::home::home, routes::product::product,
          portico_edge::health::healthz, portico_edge::health::readyz),
    components(schemas(portico_edge::error::Problem)),
    modifiers(&SecuritySchemes),
    tags((name = "mobile", description = "Screens of the mobile app"),
         (name = "operations", description = "Health probes")),
)]
pub struct ApiDoc;

/// Declares the `bearer` scheme the operations' `security` names.
#[derive(Debug)]
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        portico_edge::openapi::add_bearer_scheme(
            openapi,
            "A user token for the audience `mobile` from the identity service (`POST /token`)",
        );
    }
}

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
///
/// The gateway's per-process edge state (the JWKS cache) is its own; every worker of one
/// process shares one through [`app_in`].
pub fn app(config: &GatewayConfig) -> Result<stack::Gateway, ConfigError> {
    app_in(config, &EdgeState::new(config)?)
}

/// [`app`] with the process's edge state, shared by every worker's gateway.
pub fn app_in(config: &GatewayConfig, edge: &EdgeState) -> Result<stack::Gateway, ConfigError> {
    let upstreams = Upstreams::for_gateway(NAME, config)?;
    let state = Arc::new(AppState {
        catalog: upstreams.require_http("catalog")?,
        reviews: upstreams.require_http("reviews")?,
        inventory: upstreams.require_grpc("inventory")?,
    });
    // Anonymous browsing: the app shows the shop before anyone signs in. Any route not declared
    // here refuses every caller.
    let routes = Routes::new()
        .get("/v1/home", Access::public().named("mobile.home"), routes::home::home)
        .get(
            "/v1/products/{id}",
            Access::public().named("mobile.product"),
            routes::product::product,
        )
        .with_state(state)
        .merge(portico_edge::openapi::routes(&ApiDoc::openapi()));
    let gateway = stack::gateway_in(NAME, routes, config, &upstreams, edge)?;
    // Outermost, so every body — composed, passed through or a problem — is compressed when the
    // client accepts it; on mobile networks bytes are the cost that matters. (So any
    // pass-through route goes through the router, not the relay.)
    Ok(gateway.wrap(|router| router.layer(CompressionLayer::new())))
}

#[cfg(test)]
mod tests;
