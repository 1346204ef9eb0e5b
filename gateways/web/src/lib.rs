//! # portico-web
//!
//! The web Backend-for-Frontend: a rich API for browser frontends with room to show everything.
//! A product page arrives whole — the full product, every image, a page of reviews with the
//! rating histogram, stock per warehouse and recommendations — composed from five services in
//! parallel. Recommendations are optional by design: a slow or failing recommendations service
//! degrades the page, it never fails it.
//!
//! Public surface: `GET /api/products/{id}`, `GET /api/search?q=` (anyone), `GET /api/orders`
//! and `GET /api/orders/{id}` (the signed-in customer's own, with a user token for audience
//! `web` holding `orders:read`), `/healthz`, `/readyz`, `/openapi.json`. Every route declares
//! its [`Access`] beside its handler in [`app`]. Upstreams: `catalog`, `reviews`,
//! `recommendations`, `orders` (HTTP), `inventory` (gRPC).

mod backend;
mod customer;
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
use utoipa::{Modify, OpenApi};

/// The name this gateway's configuration and logs use.
pub const NAME: &str = "web";

/// The OpenAPI document of this gateway's public API.
#[derive(Debug, OpenApi)]
#[openapi(
    info(title = "Portico web API", version = "1.0.0",
         description = "A rich API for web frontends: whole pages in one request.\n\n\
**Authentication:** product pages and search are public. Order history needs a user token for \
the audience `web`, sent as `Authorization: Bearer <token>`: get one from the identity service \
(`POST /token` with `{\"subject\": \"alice\", \"audience\": \"web\"}`) or with `portico token \
user alice --audience web`. A token for another gateway is refused (`401 invalid_token`); a token \
sent to a public route must be valid too."),
    paths(routes::product::product_page, routes::search::search,
          routes::orders::order_history, routes::orders::get_order,
          portico_edge::health::healthz, portico_edge::health::readyz),
    components(schemas(portico_edge::error::Problem)),
    modifiers(&SecuritySchemes),
    tags((name = "web", description = "Pages of the web shop"),
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
            "A user token for the audience `web` from the identity service (`POST /token`)",
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
    recommendations: HttpUpstream,
    orders: HttpUpstream,
    inventory: GrpcUpstream,
}

/// The web gateway: its routes inside the shared edge stack.
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
        recommendations: upstreams.require_http("recommendations")?,
        orders: upstreams.require_http("orders")?,
        inventory: upstreams.require_grpc("inventory")?,
    });
    // Browsing needs no account; orders are a customer's own, so only their user token reads
    // them. Any route not declared here refuses every caller.
    let routes = Routes::new()
        .get(
            "/api/products/{id}",
            Access::public().named("web.product"),
            routes::product::product_page,
        )
        .get("/api/search", Access::public().named("web.search"), routes::search::search)
        .get(
            "/api/orders",
            Access::user().scope("orders:read").named("web.orders"),
            routes::orders::order_history,
        )
        .get(
            "/api/orders/{id}",
            Access::user().scope("orders:read").named("web.order"),
            routes::orders::get_order,
        )
        .with_state(state)
        .merge(portico_edge::openapi::routes(&ApiDoc::openapi()));
    stack::gateway_in(NAME, routes, config, &upstreams, edge)
}

#[cfg(test)]
mod tests;
