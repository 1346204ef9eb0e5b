//! # portico-partner
//!
//! The partner API: a stable, versioned API for third parties (marketplaces, resellers,
//! affiliates) who integrate by machine. Unlike the mobile and web BFFs it shapes nothing for
//! display: money is integer minor units, images are full-size URLs, and every field name is a
//! promise. `/partner/v1` never changes incompatibly; a `/partner/v2` would live beside it.
//!
//! Public surface: `GET /partner/v1/products`, `GET /partner/v1/stock`,
//! `POST /partner/v1/orders`, `GET /partner/v1/orders/{id}` — each for partners only, with an
//! API key (`X-Api-Key`) or a client-credentials token holding the route's scope, declared
//! beside the route in [`app`] — and `/healthz`, `/readyz`, `/openapi.json` for anyone.
//! Upstreams: `catalog` and `orders` (HTTP), `inventory` (gRPC).

mod backend;
mod partner;
mod routes;
mod validate;
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
**Authentication:** every `/partner/v1` call needs a partner's credentials, either:\n\n\
- an API key in the `X-Api-Key` header (issued by us; you may hold two during a rotation), or\n\
- an OAuth 2.0 client-credentials token for the audience `partner`, sent as \
`Authorization: Bearer <token>`, from the identity service's `POST /oauth/token` \
(`grant_type=client_credentials`) or `portico token partner acme`.\n\n\
Send one of them, not both (`400 invalid_request`). \
Each operation names the scope it needs (`catalog:read`, `stock:read`, `orders:read`, \
`orders:write`). Missing or invalid credentials are a `401`; a valid caller without the scope, \
or a shopper's token, is a `403 forbidden`. Orders are filed under the calling partner, and a \
partner sees only its own.\n\n\
**Plans:** each partner has a plan — a rate with a burst, and a quota per UTC day — shared by \
all its keys and tokens. Over it a call gets `429 rate_limited` with `Retry-After`; every \
answer carries `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers). \
`GET /partner/v1/usage` tells what is left today and never counts against it."),
    paths(routes::products::products, routes::stock::stock,
          routes::orders::place_order, routes::orders::get_order, routes::usage::usage,
          portico_edge::health::healthz, portico_edge::health::readyz),
    components(schemas(portico_edge::error::Problem)),
    modifiers(&SecuritySchemes),
    tags((name = "partner", description = "The partner API, version 1"),
         (name = "operations", description = "Health probes")),
)]
pub struct ApiDoc;

/// Declares the `api_key` and `bearer` schemes the operations' `security` names.
#[derive(Debug)]
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        portico_edge::openapi::add_api_key_scheme(
            openapi,
            "A partner API key, issued by us with the partner's scopes",
        );
        portico_edge::openapi::add_bearer_scheme(
            openapi,
            "A client-credentials token for the audience `partner` from the identity \
service (`POST /oauth/token`)",
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
    orders: HttpUpstream,
    inventory: GrpcUpstream,
}

/// The partner gateway: its routes inside the shared edge stack.
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
        orders: upstreams.require_http("orders")?,
        inventory: upstreams.require_grpc("inventory")?,
    });
    // Partners only, each route with the scope of what it does; any route not declared here
    // refuses every caller.
    let routes = Routes::new()
        .get(
            "/partner/v1/products",
            Access::partner().scope("catalog:read"),
            routes::products::products,
        )
        .get("/partner/v1/stock", Access::partner().scope("stock:read"), routes::stock::stock)
        .post(
            "/partner/v1/orders",
            Access::partner().scope("orders:write"),
            routes::orders::place_order,
        )
        .get(
            "/partner/v1/orders/{id}",
            Access::partner().scope("orders:read"),
            routes::orders::get_order,
        )
        // Asking what is left of the plan never uses it up.
        .get("/partner/v1/usage", Access::partner().uncounted(), routes::usage::usage)
        .with_state(state)
        .merge(portico_edge::openapi::routes(&ApiDoc::openapi()));
    stack::gateway_in(NAME, routes, config, &upstreams, edge)
}

#[cfg(test)]
mod tests;
