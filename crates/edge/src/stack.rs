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

use http::HeaderMap;

use axum::{
    Router,
    extract::{DefaultBodyLimit, MatchedPath, Request, State},
    middleware::{Next, from_fn_with_state},
    response::{IntoResponse, Response},
};

use crate::{
    access::{self, Access, AccessTable, Denied, Lookup, Routes},
    auth::{Authenticator, Principal},
    config::{ConfigError, GatewayConfig, Limits},
    error::EdgeError,
    health, limits, metrics, proxy,
    relay::Relay,
    request_id, rescue,
    upstream::Upstreams,
};

/// A built gateway: its router, and the [`Relay`] that serves its pass-through routes to
/// HTTP/1.1 clients without going through the router (the server hands the relay every
/// connection first). Both run the same edge steps.
#[derive(Clone, Debug)]
pub struct Gateway {
    router: Router,
    relay: Option<Arc<Relay>>,
}

// === impl Gateway ===

impl Gateway {
    /// The router, which serves every route (the relay is only a faster way to some of them).
    pub fn router(&self) -> Router {
        self.router.clone()
    }

    /// The router alone, for tests that call it as a service.
    pub fn into_router(self) -> Router {
        self.router
    }

    /// Wraps the router, say in a layer that must see every response. The relay stands down,
    /// since it would bypass what `wrap` adds: every request then goes through the router.
    #[must_use]
    pub fn wrap(self, wrap: impl FnOnce(Router) -> Router) -> Self {
        Self { router: wrap(self.router), relay: None }
    }

    pub(crate) fn relay(&self) -> Option<&Arc<Relay>> {
        self.relay.as_ref()
    }
}

impl From<Router> for Gateway {
    /// A router served as it is, with no relay.
    fn from(router: Router) -> Self {
        Self { router, relay: None }
    }
}

/// A gateway: `routes` (its composed endpoints), the config's pass-through routes, the health
/// routes and `/metrics`, with a problem+json 404 for everything else, inside the shared edge
/// layers; and the relay of its pass-through routes. `name` labels the gateway's metrics.
///
/// Fails when a route needs a caller but the config has no `[auth]` to find one.
pub fn gateway(
    name: &'static str,
    routes: Routes,
    config: &GatewayConfig,
    upstreams: &Upstreams,
) -> Result<Gateway, ConfigError> {
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
    let relay = Relay::new(name, config, &table, upstreams, authenticator.clone())?.map(Arc::new);
    let edge = Edge { name, limits: config.limits.clone(), table, authenticator };
    Ok(Gateway { router: edge_layers(router, edge), relay })
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
        // Every upstream call made for this request inherits its deadline.
        let deadline = tokio::time::Instant::now() + timeout;
        let work = async move {
            match edge.admit(&mut request).await {
                Ok(principal) => access::within(principal, next.run(request)).await,
                Err(refused) => refused,
            }
        };
        let work = crate::deadline::within(deadline, work);
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
        let principal =
            authorize(self.name, self.authenticator.as_ref(), rule, request.headers()).await?;
        if let Some(principal) = &principal {
            request.extensions_mut().insert(principal.clone());
        }
        Ok(principal)
    }

    fn refuse(&self, denied: Denied) -> Response {
        refuse(self.name, denied)
    }
}

/// Verifies the credentials in `headers` (if the gateway has `[auth]`) and checks the caller
/// against `rule`; a refusal is counted and logged, and comes back as the response to send.
pub(crate) async fn authorize(
    gateway: &'static str,
    authenticator: Option<&Authenticator>,
    rule: &Access,
    headers: &HeaderMap,
) -> Result<Option<Arc<Principal>>, Response> {
    let principal = match authenticator {
        None => None,
        Some(authenticator) => match authenticator.authenticate(headers).await {
            Ok(principal) => principal.map(Arc::new),
            Err(error) => {
                metrics::auth_failure(gateway, error.reason());
                tracing::info!(reason = error.reason(), "credentials refused");
                return Err(error.into_response());
            }
        },
    };
    if let Err(denied) = rule.check(principal.as_deref()) {
        return Err(refuse(gateway, denied));
    }
    Ok(principal)
}

/// Counts and logs a refusal, and renders it.
pub(crate) fn refuse(gateway: &'static str, denied: Denied) -> Response {
    metrics::auth_failure(gateway, denied.reason());
    tracing::info!(reason = denied.reason(), "request refused");
    denied.into_response()
}
