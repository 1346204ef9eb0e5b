//! The one edge pipeline: every request, whichever transport carries it (the router over
//! HTTP/1.1 and HTTP/2, or the HTTP/1.1 relay), passes the same steps in the same order, and
//! every response passes the same outbound phase.
//!
//! | step | why it sits here |
//! |---|---|
//! | request id (later: trace context) | first, so every answer — even a 431 — carries an id and a log line |
//! | head limits (414, 431) | before anything is looked at: a head over the limits is refused unread |
//! | hygiene and path normalisation | `Host` (RFC 9112 §3.2), header names with `_` dropped, dot-segments removed, escaped slashes refused: routing, access rules and upstreams all see one path |
//! | route match | on the normalised path: the route decides the access rule and the upstream |
//! | body limit and deadline | a declared oversize is refused before a byte of it is read; the deadline counts from the head |
//! | authentication | credentials are verified once, whatever the route |
//! | route access rule | deny by default: a route that declared nothing admits nobody |
//! | identity headers | only the gateway sets `x-portico-*`; what clients sent is never forwarded |
//!
//! The pipeline answers with a [`Verdict`]: admit (with the caller and the forwarding
//! context), refuse (an [`EdgeError`], rendered by `error.rs` alone), or answer (what the edge
//! answers itself: later a cache hit, a 304, a CORS preflight). Transports own framing and
//! bytes; the pipeline owns every rule. A transport may skip work (the relay never builds a
//! request object), never a step.
//!
//! The pipeline belongs to one worker's gateway; the state that must be counted once per
//! process (the JWKS cache today; limiters and caches tomorrow) is [`EdgeState`], built once and
//! handed to every worker.

mod forward;
mod head;
mod names;

pub(crate) mod router;
mod routes;

#[cfg(test)]
mod tests;

use std::{borrow::Cow, net::IpAddr, sync::Arc};

use axum::response::Response;
use http::{HeaderValue, Method};
use metrics::Counter;

pub(crate) use self::forward::{Forwarded, drop_unforwarded_response, render_identity_raw};
pub use self::head::{Head, Headers};
pub(crate) use self::head::{decimal, push_decimal, push_header};
pub(crate) use self::names::Name;
pub use self::{
    forward::drop_unforwarded,
    routes::{PassRoute, Route},
};
use self::{head::Facts, routes::RouteTable};
use crate::{
    access::{Access, AccessTable, Denied},
    auth::{Authenticator, Principal},
    config::{Cidr, ConfigError, GatewayConfig, Limits},
    error::EdgeError,
    metrics as metric_names,
    ratelimit::Limiter,
    request_id::RequestId,
    upstream::Upstreams,
};

/// Edge state that lives once per process, shared by every worker's gateway: per-worker
/// copies would let each worker admit what the process must admit once (a token whose keys
/// one worker already fetched; later a rate limit or a cached answer). Owned by the gateway
/// instance that builds it, never a `static`, so tests stay independent.
#[derive(Clone, Debug)]
pub struct EdgeState {
    authenticator: Option<Authenticator>,
    limiter: Arc<Limiter>,
    /// The process's response cache (its in-process tier, fetches in flight, Redis tier).
    cache: Arc<crate::cache::Cache>,
}

impl EdgeState {
    /// The state `config` asks for: the authenticator and its key cache, when `[auth]` is set,
    /// and the rate limits of its plans and clients.
    pub fn new(config: &GatewayConfig) -> Result<Self, ConfigError> {
        // Partners by plan: each API key's, and each OAuth client's (its id is its partner id).
        let keys = config.auth.iter().flat_map(|auth| {
            let keys = auth.api_keys.iter().map(|k| (k.partner.as_str(), k.plan.as_str()));
            keys.chain(auth.client_plans.iter().map(|(c, p)| (c.as_str(), p.as_str())))
        });
        let redis = config
            .redis
            .as_ref()
            .map(|redis| {
                crate::redis_store::Link::new(redis).map(Arc::new).map_err(|error| {
                    ConfigError::Invalid { key: "redis.url".into(), message: error.to_string() }
                })
            })
            .transpose()?;
        let limiter = Limiter::new(
            &config.plans,
            keys,
            &config.rate_limits,
            redis.as_ref(),
            config.routes_policy.values().any(|policy| {
                policy
                    .rate_limit
                    .as_ref()
                    .is_some_and(|l| l.store == crate::ratelimit::Store::Redis)
            }),
        )?;
        Ok(Self {
            authenticator: config.auth.as_ref().map(Authenticator::new).transpose()?,
            limiter: Arc::new(limiter),
            cache: Arc::new(crate::cache::Cache::new(&config.cache, redis.as_ref())),
        })
    }
}

impl EdgeState {
    /// The process's response cache.
    pub(crate) fn cache(&self) -> Arc<crate::cache::Cache> {
        self.cache.clone()
    }
}

impl Default for EdgeState {
    fn default() -> Self {
        Self {
            authenticator: None,
            limiter: Arc::new(
                Limiter::new(
                    &std::collections::BTreeMap::new(),
                    std::iter::empty(),
                    &crate::ratelimit::RateLimitsConfig::default(),
                    None,
                    false,
                )
                .unwrap_or_else(|_| unreachable!("no plans, no store: nothing to fail")),
            ),
            cache: Arc::new(crate::cache::Cache::new(&crate::cache::CacheConfig::default(), None)),
        }
    }
}

/// The peer of a connection as the pipeline sees it, worked out once per connection.
#[derive(Clone, Debug)]
pub struct Peer {
    addr: IpAddr,
    /// The address as `X-Forwarded-For` carries it.
    text: HeaderValue,
    /// Whether it is one of `listen.trusted_proxies`, whose forwarding headers are believed.
    trusted: bool,
    /// `listen.trusted_proxies`, to walk an `X-Forwarded-For` chain.
    proxies: Arc<[Cidr]>,
    /// Whether the request came over a connection (false for in-process calls, whose heads
    /// never were on the wire: their framing rules have nothing to check).
    wire: bool,
}

impl Peer {
    /// A peer nobody trusts, for in-process calls that have no connection.
    pub(crate) fn unknown() -> Self {
        Self {
            addr: IpAddr::from([0, 0, 0, 0]),
            text: HeaderValue::from_static("unknown"),
            trusted: false,
            proxies: Arc::new([]),
            wire: false,
        }
    }

    /// The same peer, for an in-process call: no head came over a wire.
    pub(crate) fn in_process(self) -> Self {
        Self { wire: false, ..self }
    }

    /// The peer's address.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }
}

/// What the pipeline says of a request.
#[derive(Debug)]
pub enum Verdict<T> {
    /// Serve it, with this context.
    Admit(T),
    /// Refuse it with this error.
    Refuse(EdgeError),
    /// The edge answers it itself.
    Answer(Response),
}

/// The steps up to the route match, with the request's id, which every answer carries.
#[derive(Debug)]
pub struct Inspection<'p, 'h> {
    /// The request's id: a sane incoming one, or a fresh one.
    pub id: RequestId,
    /// Whether a body follows the head (declared, chunked, or an unreadable length): a
    /// transport that refuses the request without reading it must close the connection.
    pub body_follows: bool,
    /// The request, inspected, or why it is refused.
    pub verdict: Result<Inspected<'p, 'h>, EdgeError>,
}

/// A request whose head passed the limits and hygiene, matched to its route.
#[derive(Debug)]
pub struct Inspected<'p, 'h> {
    /// The normalised path (borrowed when it was normal already).
    pub path: Cow<'h, str>,
    /// The route it matched.
    pub route: Route<'p>,
    /// What the head says, from the one pass over its headers.
    pub(crate) facts: Facts<'h>,
    /// The forwarding headers upstreams get.
    pub(crate) forwarded: Forwarded,
}

/// The per-request context of an admitted request.
#[derive(Clone, Debug)]
pub struct Admitted {
    /// The verified caller, if any.
    pub principal: Option<Arc<Principal>>,
    /// The forwarding headers upstreams get.
    pub(crate) forwarded: Forwarded,
}

impl Admitted {
    /// The client's address: the peer, or behind trusted proxies the rightmost address of
    /// `X-Forwarded-For` that is not one of them (what rate limits will key on).
    pub fn client(&self) -> IpAddr {
        self.forwarded.client
    }
}

/// The edge pipeline of one gateway (one per worker; its [`EdgeState`] is the process's).
#[derive(Debug)]
pub struct Pipeline {
    gateway: &'static str,
    limits: Limits,
    trusted_proxies: Arc<[Cidr]>,
    routes: RouteTable,
    authenticator: Option<Authenticator>,
    /// The process's rate limits (plans, the guessing throttle).
    limiter: Arc<Limiter>,
    /// The process's response cache.
    pub(crate) cache: Arc<crate::cache::Cache>,
    dropped_headers: Counter,
}

// === impl Pipeline ===

impl Pipeline {
    /// The pipeline of gateway `gateway`: `table` holds every route of its router (composed
    /// endpoints, health, metrics, OpenAPI); the config's pass-through routes are added here.
    /// Duplicate or overlapping routes are config errors naming both.
    pub(crate) fn new(
        gateway: &'static str,
        config: &GatewayConfig,
        table: AccessTable,
        upstreams: &Upstreams,
        state: &EdgeState,
    ) -> Result<Self, ConfigError> {
        let routes = RouteTable::new(
            config,
            table,
            upstreams,
            state.limiter.store(),
            state.cache.has_redis(),
            gateway,
        )?;
        let authenticator = state.authenticator.clone();
        let limiter = state.limiter.clone();
        if authenticator.is_none()
            && let Some((path, access)) = routes.rules().find(|(_, a)| a.requires_authentication())
        {
            return Err(ConfigError::Invalid {
                key: "auth".into(),
                message: format!(
                    "route `{path}` admits `{access:?}` callers, so [auth] is required"
                ),
            });
        }
        let dropped_headers = metrics::counter!(
            metric_names::HEADERS_DROPPED,
            "gateway" => gateway,
            "reason" => "underscore"
        );
        Ok(Self {
            gateway,
            limits: config.limits.clone(),
            trusted_proxies: config.listen.trusted_proxies.clone().into(),
            routes,
            authenticator,
            limiter,
            cache: state.cache.clone(),
            dropped_headers,
        })
    }

    /// The peer at `addr` (worked out once per connection).
    pub fn peer(&self, addr: IpAddr) -> Peer {
        let addr = addr.to_canonical();
        let text = HeaderValue::from_str(&addr.to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        let trusted = self.trusted_proxies.iter().any(|cidr| cidr.contains(addr));
        Peer { addr, text, trusted, proxies: self.trusted_proxies.clone(), wire: true }
    }

    /// The gateway's name, as its metrics label it.
    pub fn gateway(&self) -> &'static str {
        self.gateway
    }

    /// The limits every transport enforces.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The pass-through routes, in config order.
    pub(crate) fn pass_routes(&self) -> &[Arc<PassRoute>] {
        self.routes.pass_routes()
    }

    /// Request id, head limits, hygiene, path normalisation, route match and body limit: the
    /// steps that need nothing but the head.
    pub fn inspect<'p, 'h>(&'p self, head: &Head<'h>) -> Inspection<'p, 'h> {
        let facts = Facts::gather(head);
        let id = facts
            .request_id
            .and_then(|v| HeaderValue::from_bytes(v).ok())
            .and_then(|v| RequestId::from_incoming(&v))
            .unwrap_or_else(RequestId::generate);
        let body_follows = facts.content_length.is_some_and(|n| n > 0)
            || facts.transfer_encoding
            || facts.bad_length;
        let verdict = self.check(head, facts);
        Inspection { id, body_follows, verdict }
    }

    fn check<'p, 'h>(
        &'p self,
        head: &Head<'h>,
        facts: Facts<'h>,
    ) -> Result<Inspected<'p, 'h>, EdgeError> {
        let limits = &self.limits;
        // Head limits: the request line, each field, the whole head, the count.
        let line = head.method.as_str().len() + head.target_len + " HTTP/1.1".len() + 1;
        if line > limits.max_request_line_bytes {
            return Err(EdgeError::uri_too_long(limits.max_request_line_bytes));
        }
        if facts.largest_field > limits.max_header_bytes {
            return Err(EdgeError::header_too_large(format!(
                "a header field exceeds the limit of {} bytes",
                limits.max_header_bytes
            )));
        }
        if line + facts.head_bytes > limits.max_head_bytes {
            return Err(EdgeError::header_too_large(format!(
                "the request head exceeds the limit of {} bytes",
                limits.max_head_bytes
            )));
        }
        if facts.fields > limits.max_headers {
            return Err(EdgeError::header_too_large(format!(
                "the request has more than {} header fields",
                limits.max_headers
            )));
        }
        // Hygiene.
        if head.version == http::Version::HTTP_11 && head.peer.wire && facts.hosts != 1 {
            return Err(EdgeError::invalid_host(if facts.hosts == 0 {
                "an HTTP/1.1 request needs a Host header"
            } else {
                "the request has more than one Host header"
            }));
        }
        if facts.bad_length {
            return Err(EdgeError::bad_request("the Content-Length header is invalid"));
        }
        // Request smuggling: two framings, or one nobody can follow (RFC 9112 §6.1, §6.3).
        if facts.transfer_encoding && facts.content_length.is_some() {
            return Err(EdgeError::bad_request(
                "the request has both Content-Length and Transfer-Encoding",
            ));
        }
        if facts.transfer_encoding && !facts.chunked_last {
            return Err(EdgeError::bad_request(
                "the request's Transfer-Encoding does not end in chunked",
            ));
        }
        if facts.authorizations > 1 || facts.api_keys > 1 {
            let error = crate::auth::AuthError::InvalidRequest("a credential header is repeated");
            return Err(self.auth_refused(error));
        }
        if facts.underscores > 0 {
            // Dropped, as nginx does: a backend that reads `X_Portico_Subject` as
            // `X-Portico-Subject` would otherwise take a forged identity.
            self.dropped_headers.increment(facts.underscores as u64);
        }
        let path = crate::path::normalise(head.path)
            .map_err(|error| EdgeError::invalid_path(error.detail()))?;
        let route = self.routes.route(&path, head.method)?;
        if let Some(length) = facts.content_length
            && length > limits.max_body_bytes
        {
            return Err(EdgeError::payload_too_large(limits.max_body_bytes));
        }
        let forwarded = Forwarded::new(head, &facts);
        Ok(Inspected { path, route, facts, forwarded })
    }

    /// Authentication, the route's access rule and the caller's rate limits: admitted with the
    /// caller, refused with why, or answered by the edge itself. The rate-limit headers of the
    /// response go to `outbound`.
    pub async fn admit(
        &self,
        inspected: &Inspected<'_, '_>,
        outbound: &mut Outbound,
    ) -> Verdict<Admitted> {
        let (rule, other_schemes) = match &inspected.route {
            Route::Pass(route) => (route.access.as_ref(), route.forward_authorization),
            Route::Router(rule) => (*rule, false),
            // The router answers 405 without running a handler.
            Route::OtherMethod => {
                let forwarded = inspected.forwarded.clone();
                return Verdict::Admit(Admitted { principal: None, forwarded });
            }
        };
        let facts = &inspected.facts;
        let credentials = (facts.authorization, facts.api_key);
        let client = inspected.forwarded.client;
        match self.authorize(rule, credentials, other_schemes, client, outbound).await {
            Ok(principal) => {
                Verdict::Admit(Admitted { principal, forwarded: inspected.forwarded.clone() })
            }
            Err(error) => Verdict::Refuse(error),
        }
    }

    /// [`Pipeline::admit_pass`] when it needs no verification: a request without credentials
    /// is decided by the route's rule alone, without entering the authenticator. `None` when
    /// credentials must be verified.
    pub(crate) fn admit_anonymous(
        &self,
        route: &PassRoute,
        authorization: Option<&[u8]>,
        api_key: Option<&[u8]>,
    ) -> Option<Verdict<Option<Arc<Principal>>>> {
        // Credentials to verify, or a limit to count: the full admission.
        if authorization.is_some()
            || api_key.is_some()
            || route.access.as_ref().is_some_and(|a| a.limit().is_some())
        {
            return None;
        }
        let Some(rule) = route.access.as_ref() else {
            return Some(Verdict::Refuse(self.denied(Denied::Forbidden(None))));
        };
        Some(match rule.check(None) {
            Ok(()) => Verdict::Admit(None),
            Err(denied) => Verdict::Refuse(self.denied(denied)),
        })
    }

    /// [`Pipeline::admit`] for a pass-through route, from credentials a transport kept after
    /// it let go of the head (the relay).
    pub(crate) async fn admit_pass(
        &self,
        route: &PassRoute,
        credentials: (Option<&[u8]>, Option<&[u8]>),
        client: IpAddr,
        outbound: &mut Outbound,
    ) -> Verdict<Option<Arc<Principal>>> {
        let rule = route.access.as_ref();
        let other_schemes = route.forward_authorization;
        match self.authorize(rule, credentials, other_schemes, client, outbound).await {
            Ok(principal) => Verdict::Admit(principal),
            Err(error) => Verdict::Refuse(error),
        }
    }

    /// Reports a limit's decision on the response (every limit that applies is reported,
    /// refused or not), counts it, and turns a refusal into its answer.
    fn limited(
        &self,
        decision: Option<crate::ratelimit::Decision>,
        outbound: &mut Outbound,
    ) -> Result<(), EdgeError> {
        let Some(decision) = decision else { return Ok(()) };
        outbound.set_rate_limit(decision.policy, decision.limit);
        if decision.store_failed {
            let outcome = if decision.refused_by == Some("store") { "closed" } else { "open" };
            crate::metrics::rate_limit_store_error(self.gateway, outcome);
        }
        match decision.refused_by {
            None => Ok(()),
            Some("store") => {
                Err(store_unavailable("the request's rate limits cannot be checked right now"))
            }
            Some(limit) => {
                crate::metrics::throttled(self.gateway, limit);
                let detail = match limit {
                    "route" => "the route's rate limit is exceeded",
                    "day" => "the plan's quota for today is used up",
                    _ => "the plan's rate limit is exceeded",
                };
                Err(EdgeError::too_many_requests(detail, decision.retry_after))
            }
        }
    }

    /// Verifies the credentials (if the gateway has `[auth]`) and checks the caller against
    /// `rule` (`None`: the route declared nothing and admits nobody). Refusals are counted
    /// and logged.
    async fn authorize(
        &self,
        rule: Option<&Access>,
        (authorization, api_key): (Option<&[u8]>, Option<&[u8]>),
        other_schemes: bool,
        client: IpAddr,
        outbound: &mut Outbound,
    ) -> Result<Option<Arc<Principal>>, EdgeError> {
        let Some(rule) = rule else {
            return Err(self.denied(Denied::Forbidden(None)));
        };
        // The route's per-address limit first: cheap, and before any credential is verified.
        if let Some(limit) = rule.limit()
            && limit.per == crate::ratelimit::Per::Address
        {
            let decision = limit.check(client, None).await;
            self.limited(Some(decision), outbound)?;
            crate::metrics::admitted(self.gateway, "route");
        }
        let principal = match &self.authenticator {
            None => None,
            Some(authenticator) => {
                // A client that failed too often is refused before anything is verified, so
                // the answer says nothing about whether this credential was right.
                if (authorization.is_some() || api_key.is_some())
                    && let Some(seconds) = self.limiter.throttled(client)
                {
                    crate::metrics::throttled(self.gateway, "auth_failures");
                    return Err(EdgeError::too_many_requests(
                        "too many failed authentications from this address",
                        seconds,
                    ));
                }
                match authenticator.authenticate_values(authorization, api_key, other_schemes).await
                {
                    Ok(principal) => principal.map(Arc::new),
                    Err(error) => {
                        // Keys that cannot be fetched are the gateway's trouble, not a guess.
                        if !matches!(error, crate::auth::AuthError::KeysUnavailable) {
                            self.limiter.failed(client);
                        }
                        return Err(self.auth_refused(error));
                    }
                }
            }
        };
        if let Err(denied) = rule.check(principal.as_deref()) {
            return Err(self.denied(denied));
        }
        // The route's per-caller limit and the caller's plan: with Redis, one round trip.
        let per_caller = rule.limit().filter(|limit| limit.per == crate::ratelimit::Per::Caller);
        let [route, plan] = self
            .limiter
            .check_caller(per_caller, client, principal.as_deref(), rule.counted())
            .await;
        let (on_route, on_plan) = (route.is_some(), plan.is_some());
        let verdict = self.limited(route, outbound);
        let verdict = verdict.and(self.limited(plan, outbound));
        verdict?;
        if on_route {
            crate::metrics::admitted(self.gateway, "route");
        }
        if on_plan {
            crate::metrics::admitted(self.gateway, "plan");
        }
        // An answer to a verified caller that no cache policy covers is theirs alone.
        if principal.is_some() && rule.cache().is_none() {
            outbound.personal = true;
        }
        Ok(principal)
    }

    fn auth_refused(&self, error: crate::auth::AuthError) -> EdgeError {
        crate::metrics::auth_failure(self.gateway, error.reason());
        tracing::info!(reason = error.reason(), "credentials refused");
        error.into()
    }

    fn denied(&self, denied: Denied) -> EdgeError {
        crate::metrics::auth_failure(self.gateway, denied.reason());
        tracing::info!(reason = denied.reason(), "request refused");
        denied.into()
    }

    /// The request's span. With an access log installed, its line carries what the span
    /// would, so the span is debug-level: at info it would cost every request an allocation
    /// in the log subscriber for nothing.
    pub(crate) fn span(id: &RequestId, method: &Method, path: &str) -> tracing::Span {
        if crate::access_log::get().is_some() {
            tracing::debug_span!("request", id = id.as_str(), method = %method, path = path)
        } else {
            tracing::info_span!("request", id = id.as_str(), method = %method, path = path)
        }
    }
}

/// 503 `rate_limit_unavailable`: a limit that fails closed could not be checked.
fn store_unavailable(detail: &'static str) -> EdgeError {
    EdgeError::from_status(http::StatusCode::SERVICE_UNAVAILABLE, "rate_limit_unavailable")
        .with_detail(detail)
        .with_retry_after(1)
}

/// `Cache-Control` of a personal answer.
static PRIVATE: HeaderValue = HeaderValue::from_static("private, no-store");

/// Whether the raw response head `head` (its fields one per line) has a field `name`
/// (lowercase).
fn has_field(head: &[u8], name: &[u8]) -> bool {
    head.split(|&b| b == b'\n').any(|line| {
        line.len() > name.len()
            && line[name.len()] == b':'
            && line[..name.len()].eq_ignore_ascii_case(name)
    })
}

/// `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers).
static RATELIMIT_POLICY: http::HeaderName = http::HeaderName::from_static("ratelimit-policy");
static RATELIMIT: http::HeaderName = http::HeaderName::from_static("ratelimit");

/// The outbound phase every response passes, on every transport: the request id echoed, the
/// rate-limit headers, the access-log line. (Later: CORS and caching headers.) One rule, two
/// renderers.
#[derive(Debug)]
pub struct Outbound {
    id: RequestId,
    span: tracing::Span,
    started: std::time::Instant,
    /// The access-log line so far, when the process has an access log.
    line: Option<Vec<u8>>,
    /// Response body bytes, when the transport counted them.
    bytes: Option<u64>,
    /// The upstream endpoint that answered, and the time to its response head.
    upstream: Option<(Arc<crate::upstream::cluster::Endpoint>, std::time::Duration)>,
    /// `RateLimit-Policy` and `RateLimit`, on a request a limit applied to.
    rate_limit: Option<Box<(HeaderValue, HeaderValue)>>,
    /// The answer is a verified caller's own, on a route no cache policy covers: no shared
    /// cache (a CDN, a proxy) may keep it, unless its producer said how itself.
    personal: bool,
}

impl Outbound {
    /// The outbound phase of the request `id` (`method` on `path`) from `peer`, whose head
    /// arrived at `started`.
    pub fn new(
        id: RequestId,
        method: &Method,
        path: &str,
        peer: &Peer,
        started: std::time::Instant,
    ) -> Self {
        let span = Pipeline::span(&id, method, path);
        let line = crate::access_log::get().map(|log| {
            let at = crate::access_log::wall_time(started);
            log.begin(at, peer.addr, id.as_str(), method.as_str(), path)
        });
        Self {
            id,
            span,
            started,
            line,
            bytes: None,
            upstream: None,
            rate_limit: None,
            personal: false,
        }
    }

    /// Notes the rate-limit headers of one more limit that applied: every limit that applies
    /// is reported, in one list per header.
    pub(crate) fn set_rate_limit(&mut self, policy: HeaderValue, limit: HeaderValue) {
        let joined = match self.rate_limit.take() {
            None => (policy, limit),
            Some(before) => {
                let join = |a: &HeaderValue, b: &HeaderValue| {
                    let mut both = a.as_bytes().to_vec();
                    both.extend_from_slice(b", ");
                    both.extend_from_slice(b.as_bytes());
                    HeaderValue::from_bytes(&both).unwrap_or_else(|_| a.clone())
                };
                (join(&before.0, &policy), join(&before.1, &limit))
            }
        };
        self.rate_limit = Some(Box::new(joined));
    }

    /// Notes the response body's size, for the access log.
    pub(crate) fn set_bytes(&mut self, bytes: u64) {
        self.bytes = Some(bytes);
    }

    /// Whether the request's line goes to an access log (so what only the log reads is worth
    /// noting).
    pub(crate) fn logs(&self) -> bool {
        self.line.is_some()
    }

    /// Notes the upstream endpoint that answered and its time to the response head.
    pub(crate) fn set_upstream(
        &mut self,
        endpoint: &Arc<crate::upstream::cluster::Endpoint>,
        took: std::time::Duration,
    ) {
        if self.logs() {
            self.upstream = Some((endpoint.clone(), took));
        }
    }

    /// The request's id.
    pub fn id(&self) -> &RequestId {
        &self.id
    }

    /// The request's span.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Adds the outbound headers to a response's header map.
    pub fn render_map(&self, headers: &mut http::HeaderMap) {
        headers.insert(crate::request_id::HEADER, self.id.header_value().clone());
        if let Some(rate_limit) = &self.rate_limit {
            headers.insert(&RATELIMIT_POLICY, rate_limit.0.clone());
            headers.insert(&RATELIMIT, rate_limit.1.clone());
        }
        if self.personal && !headers.contains_key(http::header::CACHE_CONTROL) {
            headers.insert(http::header::CACHE_CONTROL, PRIVATE.clone());
        }
    }

    /// Appends the outbound headers to a raw response head.
    pub fn render_raw(&self, head: &mut Vec<u8>) {
        push_header(head, crate::request_id::HEADER, self.id.as_str().as_bytes());
        if let Some(rate_limit) = &self.rate_limit {
            push_header(head, RATELIMIT_POLICY.as_str(), rate_limit.0.as_bytes());
            push_header(head, RATELIMIT.as_str(), rate_limit.1.as_bytes());
        }
        if self.personal && !has_field(head, b"cache-control") {
            push_header(head, "cache-control", PRIVATE.as_bytes());
        }
    }

    /// Writes the access-log line once the response is on its way.
    pub fn finish(self, status: u16) {
        self.finish_at(status, None);
    }

    /// [`Outbound::finish`] for a response that went out at `sent` (a time the caller has
    /// already read), or now.
    pub(crate) fn finish_at(self, status: u16, sent: Option<std::time::Instant>) {
        let (Some(log), Some(line)) = (crate::access_log::get(), self.line) else {
            crate::request_id::served(&self.span, status, self.started);
            return;
        };
        let sent = sent.unwrap_or_else(std::time::Instant::now);
        let served = crate::access_log::Served {
            status,
            bytes: self.bytes,
            duration: sent.saturating_duration_since(self.started),
            upstream: self.upstream.as_ref().map(|(e, took)| (e.authority(), *took)),
        };
        log.end(line, &served);
    }
}
