//! Route access: who may call each route, declared next to the route, denied by default.
//!
//! A gateway registers its routes through [`Routes`], which takes an [`Access`] with every
//! route, so a reader sees the rule beside the handler. The edge layer looks the rule up by the
//! matched route before any handler or backend runs; a route that declared nothing — a raw
//! `Router` merged in, a pass-through route without `access` — admits nobody.
//!
//! The caller's identity reaches handlers through the [`Caller`] extractor and backends through
//! gateway-set `x-portico-*` headers (see [`identity_headers`]). Incoming `x-portico-*` headers
//! are stripped first, so a client can never forge them.

use std::{collections::HashMap, convert::Infallible, fmt, sync::Arc};

use axum::{
    Router,
    extract::{FromRequestParts, MatchedPath},
    handler::Handler,
    response::{IntoResponse, Response},
    routing::{MethodFilter, MethodRouter, on},
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, request::Parts};

use crate::auth::{self, Principal, PrincipalKind};

/// The prefix of every identity header the gateway sets for backends.
pub const IDENTITY_HEADER_PREFIX: &str = "x-portico-";
/// The caller's subject: a user name, or a partner id.
pub static SUBJECT: HeaderName = HeaderName::from_static("x-portico-subject");
/// `user` or `partner`.
pub static CLIENT_KIND: HeaderName = HeaderName::from_static("x-portico-client-kind");
/// The caller's scopes, space-separated.
pub static SCOPES: HeaderName = HeaderName::from_static("x-portico-scopes");
/// The partner's plan (API keys only).
pub static PLAN: HeaderName = HeaderName::from_static("x-portico-plan");

tokio::task_local! {
    static CALLER: Option<Arc<Principal>>;
}

/// The authenticated caller of the request being served on this task, if any.
pub fn caller() -> Option<Arc<Principal>> {
    CALLER.try_with(Clone::clone).ok().flatten()
}

/// Runs `serve` with `principal` as the task's caller, where upstream calls find it.
///
/// Not an `async fn`, so `serve` is stored once (see [`crate::deadline::within`]).
pub fn within<F: Future>(
    principal: Option<Arc<Principal>>,
    serve: F,
) -> impl Future<Output = F::Output> {
    CALLER.scope(principal, serve)
}

/// Who may call a route.
#[derive(Clone, PartialEq, Eq)]
pub struct Access {
    rule: Rule,
    scopes: Vec<String>,
    /// Whether a call counts against the caller's plan (not for asking what is left of it).
    counted: bool,
    /// The route's name, by which the config gives it a policy (`[routes_policy."<name>"]`).
    name: Option<Arc<str>>,
    /// The route's own rate limit, from its policy.
    limit: Option<Arc<crate::ratelimit::RouteLimit>>,
    /// The cache policy the code gives the route (the config's wins).
    cache_config: Option<Arc<crate::cache::RouteCacheConfig>>,
    /// The route's cache policy, ready (set when the route table is built).
    cache: Option<Arc<crate::cache::RoutePolicy>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rule {
    /// Anyone; credentials are optional, but checked when given.
    Public,
    /// Any authenticated caller, or only callers of one kind.
    Authenticated(Option<PrincipalKind>),
}

// === impl Access ===

impl Access {
    /// A rule with nothing else declared yet.
    fn of(rule: Rule) -> Self {
        Self {
            rule,
            scopes: Vec::new(),
            counted: true,
            name: None,
            limit: None,
            cache_config: None,
            cache: None,
        }
    }

    /// Anyone may call; a token or key, when sent, must still be valid.
    pub fn public() -> Self {
        Self::of(Rule::Public)
    }

    /// Any authenticated caller.
    pub fn authenticated() -> Self {
        Self::of(Rule::Authenticated(None))
    }

    /// An authenticated end user (a user token), not a partner.
    pub fn user() -> Self {
        Self::of(Rule::Authenticated(Some(PrincipalKind::User)))
    }

    /// An authenticated partner (an API key or a client-credentials token).
    pub fn partner() -> Self {
        Self::of(Rule::Authenticated(Some(PrincipalKind::Partner)))
    }

    /// Also requires `scope` (every scope added is required). Makes a public rule authenticated.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        if self.rule == Rule::Public {
            self.rule = Rule::Authenticated(None);
        }
        self.scopes.push(scope.into());
        self
    }

    /// Calls do not count against the caller's plan, nor are they refused by it (a partner
    /// asking how much of its plan is left must get an answer).
    pub fn uncounted(mut self) -> Self {
        self.counted = false;
        self
    }

    /// Whether calls count against the caller's plan.
    pub(crate) fn counted(&self) -> bool {
        self.counted
    }

    /// Names the route, e.g. `web.product`: the config gives it a policy by that name
    /// (`[routes_policy."web.product"]`).
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.into());
        self
    }

    /// Caches the route's responses (GET and HEAD) as `config` says, unless the config gives
    /// the route (by its [name](Access::named)) a cache policy of its own. Only for responses
    /// that are the same for every caller who sends the same keyed request.
    pub fn cached(mut self, config: crate::cache::RouteCacheConfig) -> Self {
        self.cache_config = Some(Arc::new(config));
        self
    }

    /// The cache policy the code gave the route.
    pub(crate) fn cache_config(&self) -> Option<&crate::cache::RouteCacheConfig> {
        self.cache_config.as_deref()
    }

    /// The route's cache policy.
    pub(crate) fn cache(&self) -> Option<&Arc<crate::cache::RoutePolicy>> {
        self.cache.as_ref()
    }

    /// Gives the route its cache policy.
    pub(crate) fn set_cache(&mut self, cache: Arc<crate::cache::RoutePolicy>) {
        self.cache = Some(cache);
    }

    /// The route's name, if it has one.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The route's own rate limit.
    pub(crate) fn limit(&self) -> Option<&crate::ratelimit::RouteLimit> {
        self.limit.as_deref()
    }

    /// Gives the route its rate limit.
    pub(crate) fn set_limit(&mut self, limit: Arc<crate::ratelimit::RouteLimit>) {
        self.limit = Some(limit);
    }

    /// Whether this rule needs a caller at all (so the gateway needs `[auth]`).
    pub fn requires_authentication(&self) -> bool {
        self.rule != Rule::Public
    }

    /// Checks a caller against the rule.
    pub fn check(&self, principal: Option<&Principal>) -> Result<(), Denied> {
        let Rule::Authenticated(kind) = self.rule else {
            return Ok(());
        };
        let Some(principal) = principal else {
            return Err(Denied::Unauthenticated);
        };
        if kind.is_some_and(|kind| kind != principal.kind) {
            return Err(Denied::Forbidden(None));
        }
        match self.scopes.iter().find(|scope| !principal.has_scope(scope)) {
            Some(missing) => Err(Denied::Forbidden(Some(missing.clone()))),
            None => Ok(()),
        }
    }

    /// Parses the `access` of a pass-through route in the config.
    pub fn from_config(access: &str, scopes: &[String]) -> Option<Self> {
        let base = match access {
            "public" => Self::public(),
            "authenticated" => Self::authenticated(),
            "user" => Self::user(),
            "partner" => Self::partner(),
            _ => return None,
        };
        Some(scopes.iter().fold(base, |access, scope| access.scope(scope.clone())))
    }
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.rule {
            Rule::Public => f.write_str("public")?,
            Rule::Authenticated(None) => f.write_str("authenticated")?,
            Rule::Authenticated(Some(PrincipalKind::User)) => f.write_str("user")?,
            Rule::Authenticated(Some(PrincipalKind::Partner)) => f.write_str("partner")?,
        }
        for scope in &self.scopes {
            write!(f, " +{scope}")?;
        }
        Ok(())
    }
}

/// Why a caller may not call a route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denied {
    /// The route needs credentials and the request has none (401).
    Unauthenticated,
    /// The caller is known but not allowed: of the wrong kind, or missing the named scope, or
    /// the route admits nobody (403).
    Forbidden(Option<String>),
}

// === impl Denied ===

impl Denied {
    /// The label auth-failure metrics and logs use.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Unauthenticated => "missing",
            Self::Forbidden(_) => "forbidden",
        }
    }
}

impl From<Denied> for crate::error::EdgeError {
    fn from(denied: Denied) -> Self {
        match denied {
            Denied::Unauthenticated => auth::unauthenticated(),
            Denied::Forbidden(scope) => auth::forbidden(scope.as_deref()),
        }
    }
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        crate::error::EdgeError::from(self).into_response()
    }
}

/// Every route's access rule, looked up by the matched route pattern and method.
#[derive(Clone, Debug, Default)]
pub struct AccessTable {
    /// Pattern → (method, rule); `None` is any method.
    routes: HashMap<String, Vec<(Option<Method>, Access)>>,
}

/// What the table says of one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The route declared this rule.
    Declared(&'a Access),
    /// The route exists but declared nothing for any method: deny.
    Undeclared,
    /// No rule for this method, but the pattern has rules for others: the router answers 405.
    OtherMethod,
    /// No route matched: the router answers 404.
    NoRoute,
}

// === impl AccessTable ===

impl AccessTable {
    fn declare(&mut self, path: &str, method: Option<Method>, access: Access) {
        self.routes.entry(path.to_owned()).or_default().push((method, access));
    }

    fn merge(&mut self, other: Self) {
        for (path, rules) in other.routes {
            self.routes.entry(path).or_default().extend(rules);
        }
    }

    /// Every declared rule, for start-up checks.
    pub fn rules(&self) -> impl Iterator<Item = (&str, &Access)> {
        self.routes.iter().flat_map(|(path, rules)| rules.iter().map(|(_, a)| (path.as_str(), a)))
    }

    /// Every declared rule, to attach policies to.
    pub(crate) fn rules_mut(&mut self) -> impl Iterator<Item = &mut Access> {
        self.routes.values_mut().flat_map(|rules| rules.iter_mut().map(|(_, a)| a))
    }

    /// The rule for a request to `matched` (the route pattern, if a route matched).
    pub fn lookup(&self, matched: Option<&MatchedPath>, method: &Method) -> Lookup<'_> {
        match matched {
            Some(matched) => self.lookup_pattern(matched.as_str(), method),
            None => Lookup::NoRoute,
        }
    }

    /// Every route pattern with a rule.
    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.routes.keys().map(String::as_str)
    }

    /// The rule for a request to the route `pattern`.
    pub fn lookup_pattern(&self, pattern: &str, method: &Method) -> Lookup<'_> {
        let Some(rules) = self.routes.get(pattern) else {
            return Lookup::Undeclared;
        };
        // HEAD is served by GET handlers, so it follows GET's rule.
        let wanted = if method == Method::HEAD { &Method::GET } else { method };
        rules
            .iter()
            .find(|(m, _)| m.as_ref() == Some(wanted))
            .or_else(|| rules.iter().find(|(m, _)| m.is_none()))
            .map_or(Lookup::OtherMethod, |(_, access)| Lookup::Declared(access))
    }
}

/// A router whose every route carries its [`Access`].
#[derive(Debug)]
#[must_use]
pub struct Routes<S = ()> {
    router: Router<S>,
    table: AccessTable,
}

impl<S: Clone + Send + Sync + 'static> Default for Routes<S> {
    fn default() -> Self {
        Self::new()
    }
}

// === impl Routes ===

impl<S: Clone + Send + Sync + 'static> Routes<S> {
    /// No routes yet.
    pub fn new() -> Self {
        Self { router: Router::new(), table: AccessTable::default() }
    }

    /// `GET path` (and `HEAD`), callable as `access` says.
    pub fn get<H, T>(self, path: &str, access: Access, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        self.on(Method::GET, path, access, on(MethodFilter::GET, handler))
    }

    /// `POST path`, callable as `access` says.
    pub fn post<H, T>(self, path: &str, access: Access, handler: H) -> Self
    where
        H: Handler<T, S>,
        T: 'static,
    {
        self.on(Method::POST, path, access, on(MethodFilter::POST, handler))
    }

    /// Every method of `method_router` at `path`, callable as `access` says.
    pub fn any(mut self, path: &str, access: Access, method_router: MethodRouter<S>) -> Self {
        self.table.declare(path, None, access);
        self.router = self.router.route(path, method_router);
        self
    }

    fn on(mut self, method: Method, path: &str, access: Access, route: MethodRouter<S>) -> Self {
        self.table.declare(path, Some(method), access);
        self.router = self.router.route(path, route);
        self
    }

    /// Adds the routes of `other`.
    pub fn merge(mut self, other: Routes<S>) -> Self {
        self.table.merge(other.table);
        self.router = self.router.merge(other.router);
        self
    }

    /// Provides the state, as [`Router::with_state`].
    pub fn with_state<S2>(self, state: S) -> Routes<S2> {
        Routes { router: self.router.with_state(state), table: self.table }
    }

    /// The router and its rules.
    pub fn into_parts(self) -> (Router<S>, AccessTable) {
        (self.router, self.table)
    }
}

/// The authenticated caller, for handlers of routes whose access requires one. On a route that
/// is public, extracting it answers 401 when nobody is signed in.
#[derive(Clone, Debug)]
pub struct Caller(pub Arc<Principal>);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Arc<Principal>>()
            .cloned()
            .map(Self)
            .ok_or_else(|| Denied::Unauthenticated.into_response())
    }
}

/// The verified caller's subject as an id, for extractors of handlers that copy it into
/// upstream URLs (a customer id, a partner id). The caller must be of `kind` — a second line
/// behind the route's rule, should a route be declared too loosely — and the subject must pass
/// [`params::id`](crate::params::id) like any id copied upstream. Anything else is 403: the
/// credential was valid, but it names nobody this handler may serve.
pub async fn subject_id<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    kind: PrincipalKind,
) -> Result<String, Response> {
    let Caller(principal) = Caller::from_request_parts(parts, state).await?;
    if principal.kind != kind {
        return Err(Denied::Forbidden(None).into_response());
    }
    crate::params::id("subject", &principal.subject).map(str::to_owned).map_err(|_| {
        tracing::warn!(?kind, "a verified credential names a subject that is not an id");
        Denied::Forbidden(None).into_response()
    })
}

/// The caller if there is one, for public routes that tailor answers to a signed-in user.
#[derive(Clone, Debug)]
pub struct MaybeCaller(pub Option<Arc<Principal>>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeCaller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.extensions.get::<Arc<Principal>>().cloned()))
    }
}

/// Removes every `x-portico-*` header a client sent: only the gateway sets them.
pub fn strip_identity_headers(headers: &mut HeaderMap) {
    // Most requests carry none: look before collecting anything.
    let forged = |name: &HeaderName| name.as_str().starts_with(IDENTITY_HEADER_PREFIX);
    if !headers.keys().any(forged) {
        return;
    }
    let names: Vec<HeaderName> = headers.keys().filter(|n| forged(n)).cloned().collect();
    for name in names {
        headers.remove(name);
    }
}

/// The identity headers backends receive for `principal`. A subject that is not a valid header
/// value (it came from a verified token, but tokens may hold any text) is left out rather than
/// mangled.
pub fn identity_headers(
    principal: &Principal,
) -> impl Iterator<Item = (&'static HeaderName, HeaderValue)> {
    let kind = match principal.kind {
        PrincipalKind::User => "user",
        PrincipalKind::Partner => "partner",
    };
    [
        (&SUBJECT, HeaderValue::from_str(&principal.subject).ok()),
        (&CLIENT_KIND, Some(HeaderValue::from_static(kind))),
        (&SCOPES, HeaderValue::from_str(&principal.scope_header()).ok()),
        (&PLAN, principal.plan.as_deref().and_then(|p| HeaderValue::from_str(p).ok())),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.map(|v| (name, v)))
}

#[cfg(test)]
mod tests;
