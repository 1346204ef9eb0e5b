//! Assembles a gateway: its own composed routes, the configured pass-through routes and the
//! health routes, wrapped in the edge layers every gateway shares.
//!
//! The onion, outermost first (a request passes down it, the response back up):
//!
//! | layer | why it sits here |
//! |---|---|
//! | request id + span + access log | first, so every response — even a 413 or a 504 — has an id and a log line |
//! | body limit | before anything reads a body; rejects a declared oversize without reading a byte |
//! | problem normaliser | wraps everything that can produce a bare framework error |
//! | request timeout | innermost, so its deadline covers handler and upstream time only, and a timeout still gets an id, a log line and a problem body |

use axum::{
    Router,
    extract::DefaultBodyLimit,
    middleware::{from_fn, from_fn_with_state},
};

use crate::{
    config::{ConfigError, GatewayConfig},
    error::EdgeError,
    health, limits, proxy, request_id, rescue,
    upstream::Upstreams,
};

/// A gateway's whole router: `routes` (its composed endpoints), the config's pass-through
/// routes and the health routes, with a problem+json 404 for everything else, inside the
/// shared edge layers.
pub fn gateway(
    routes: Router,
    config: &GatewayConfig,
    upstreams: &Upstreams,
) -> Result<Router, ConfigError> {
    let router = routes
        .merge(proxy::routes(config, upstreams)?)
        .merge(health::routes(upstreams.clone()))
        .fallback(|| async { EdgeError::no_route() });
    Ok(edge_layers(router, config))
}

/// Wraps `router` in the shared edge layers (see the table in this module's docs).
pub fn edge_layers(router: Router, config: &GatewayConfig) -> Router {
    let limits = &config.limits;
    // `.layer` wraps what is above it, so this list reads innermost first.
    router
        .layer(from_fn_with_state(limits.request_timeout, limits::request_timeout))
        .layer(from_fn(rescue::problems))
        // Our own limit replaces axum's default 2 MiB extractor limit, so one setting governs.
        .layer(DefaultBodyLimit::disable())
        .layer(from_fn_with_state(limits.max_body_bytes, limits::body_limit))
        .layer(from_fn(request_id::middleware))
}
