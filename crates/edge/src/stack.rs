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

use std::sync::Arc;

use axum::{
    Router,
    extract::{DefaultBodyLimit, Request, State},
    middleware::{Next, from_fn_with_state},
    response::Response,
};

use crate::{
    config::{ConfigError, GatewayConfig, Limits},
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
///
/// The four steps run in one middleware rather than four stacked ones: each stacked `from_fn`
/// boxes a future and clones the inner service per request, and measured on the pass-through
/// path (`bench/`) the four layers cost a quarter of the throughput. Each step stays in its
/// own module, usable as a middleware by itself.
pub fn edge_layers(router: Router, config: &GatewayConfig) -> Router {
    let limits = Arc::new(config.limits.clone());
    router
        // Our own limit replaces axum's default 2 MiB extractor limit, so one setting governs.
        .layer(DefaultBodyLimit::disable())
        .layer(from_fn_with_state(limits, edge))
}

/// The onion of this module's table, outermost first, in one pass.
async fn edge(State(limits): State<Arc<Limits>>, mut request: Request, next: Next) -> Response {
    let id = request_id::assign(&mut request);
    let span = request_id::span(&id, &request);
    let serve = async move {
        let request = match limits::limit_body(request, limits.max_body_bytes) {
            Ok(request) => request,
            Err(too_large) => return too_large,
        };
        rescue::normalise(limits::with_deadline(limits.request_timeout, next.run(request)).await)
            .await
    };
    request_id::within(id, span, serve).await
}
