//! Assembles a gateway: its own composed routes, the configured pass-through routes, the
//! health routes and `/metrics`, wrapped in the edge layers every gateway shares.
//!
//! The onion, outermost first (a request passes down it, the response back up):
//!
//! | layer | why it sits here |
//! |---|---|
//! | request id + span + access log | first, so every response — even a 413 or a 504 — has an id and a log line |
//! | body limit | before anything reads a body; rejects a declared oversize without reading a byte |
//! | problem normaliser | wraps everything that can produce a bare framework error |
//! | request timeout | its deadline covers authentication (a JWKS fetch), handler and upstream time, and a timeout still gets an id, a log line and a problem body |
//! | authentication + access | innermost: strips forged `x-portico-*` headers, verifies credentials, checks the matched route's [`Access`](crate::access::Access) rule (deny by default), before any handler or backend runs |

use std::sync::Arc;

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    middleware::{Next, from_fn_with_state},
    response::{IntoResponse, Response},
};

use crate::{
    access::{self, AccessTable, Denied, Lookup, Routes},
    auth::{Authenticator, Principal},
    config::{ConfigError, GatewayConfig, Limits},
    error::EdgeError,
    health, limits, metrics, proxy, request_id, rescue,
    upstream::Upstreams,
};

/// A gateway's whole router: `routes` (its composed endpoints), the config's pass-through
/// routes, the health routes and `/metrics`, with a problem+json 404 for everything else,
/// inside the shared edge layers. `name` labels the gateway's metrics.
///
/// Fails when a route needs a caller but the config has no `[auth]` to find one.
pub fn gateway(
    name: &'static str,
    routes: Routes,
    config: &GatewayConfig,
    upstreams: &Upstreams,
) -> Result<Router, ConfigError> {
    let (router, table) = routes
        .merge(proxy::routes(config, upstreams)?)
        .merge(health::routes(upstreams.clone()))
        .merge(metrics::routes())
        .into_parts();
    let authenticator = config.auth.as_ref().map(Authenticator::new).transpose()?;
    if authenticator.is_none()
        && let Some((path, access)) = table.rules().find(|(_, a)| a.requires_authentication())
    {
        return Err(ConfigError::Invalid {
            key: "auth".into(),
            message: format!("route `{path}` admits `{access:?}` callers, so [auth] is required"),
        });
    }
    let router = router.fallback(|| async { EdgeError::no_route() });
    let edge = Edge { name, limits: config.limits.clone(), table, authenticator };
    Ok(edge_layers(router, edge))
}

/// What the edge layer needs per request.
#[derive(Debug)]
struct Edge {
    name: &'static str,
    limits: Limits,
    table: AccessTable,
    authenticator: Option<Authenticator>,
}

/// Wraps `router` in the shared edge layers (see the table in this module's docs).
///
/// The steps run in one middleware rather than stacked ones: each stacked `from_fn` boxes a
/// future and clones the inner service per request, and measured on the pass-through path
/// (`bench/`) four such layers cost a quarter of the throughput. Each step stays in its own
/// module, usable as a middleware by itself.
///
/// The layer is applied with `Router::layer`, so it runs after routing: it sees the matched
/// route, whose access rule it enforces before the handler runs.
fn edge_layers(router: Router, edge: Edge) -> Router {
    router
        // Our own limit replaces axum's default 2 MiB extractor limit, so one setting governs.
        .layer(DefaultBodyLimit::disable())
        .layer(from_fn_with_state(Arc::new(edge), layers))
}

/// The onion of this module's table, outermost first, in one pass.
async fn layers(State(edge): State<Arc<Edge>>, mut request: Request, next: Next) -> Response {
    let id = request_id::assign(&mut request);
    let span = request_id::span(&id, &request);
    let serve = async move {
        let mut request = match limits::limit_body(request, edge.limits.max_body_bytes) {
            Ok(request) => request,
            Err(too_large) => return too_large,
        };
        let timeout = edge.limits.request_timeout;
        let work = async move {
            match edge.admit(&mut request).await {
                Ok(principal) => access::within(principal, next.run(request)).await,
                Err(refused) => refused,
            }
        };
        rescue::normalise(limits::with_deadline(timeout, work).await).await
    };
    request_id::within(id, span, serve).await
}

// === impl Edge ===

impl Edge {
    /// Authentication and authorisation: strips forged identity headers, verifies any
    /// credentials, and checks the caller against the matched route's rule. On success the
    /// caller (if any) is in the request's extensions for handlers.
    async fn admit(&self, request: &mut Request) -> Result<Option<Arc<Principal>>, Response> {
        access::strip_identity_headers(request.headers_mut());
        let rule =
            match self.table.lookup(request.extensions().get::<MatchedPath>(), request.method()) {
                Lookup::Declared(rule) => rule,
                Lookup::Undeclared => return Err(self.refuse(Denied::Forbidden(None))),
                // The router answers these (405, 404) without running a handler.
                Lookup::OtherMethod | Lookup::NoRoute => return Ok(None),
            };
        let principal = match &self.authenticator {
            None => None,
            Some(authenticator) => match authenticator.authenticate(request.headers()).await {
                Ok(principal) => principal.map(Arc::new),
                Err(error) => {
                    metrics::auth_failure(self.name, error.reason());
                    tracing::info!(reason = error.reason(), "credentials refused");
                    return Err(error.into_response());
                }
            },
        };
        if let Err(denied) = rule.check(principal.as_deref()) {
            return Err(self.refuse(denied));
        }
        if let Some(principal) = &principal {
            request.extensions_mut().insert(principal.clone());
        }
        Ok(principal)
    }

    fn refuse(&self, denied: Denied) -> Response {
        metrics::auth_failure(self.name, denied.reason());
        tracing::info!(reason = denied.reason(), "request refused");
        denied.into_response()
    }
}
