//! Caching of client views: one step of the pipeline, after the rate limits (a hit still runs
//! authentication, the access rule and the limiter, and counts toward a partner's quota), for
//! composed and pass-through routes alike, on every transport that serves them (the relay hands
//! a cached route's requests to the router path).
//!
//! A route opts in by name (`[routes_policy."web.product"] cache = { ttl = "30s" }`) or in code
//! ([`Access::cached`](crate::access::Access::cached)). What is stored is the response a client
//! would get, trimmed and whole: only a 200 without `Set-Cookie`, not degraded, within the size
//! bound, that its producer did not mark `no-store`/`private`/`no-cache`. The key is the route,
//! host, normalised path, sorted query, the route's declared `vary` headers, the build version,
//! and the caller whenever a credential was verified (unless the route is `shared`); the handler
//! (or upstream) sees no other request header, so nothing outside the key can change what is
//! stored (no cache poisoning).
//!
//! Tiers: in process (moka, bounded by bytes, shared by the process's workers), and Redis for
//! many replicas (`store = "redis"`), behind the shared link's breaker: a failing Redis leaves
//! the local tier, never an error. Concurrent misses on one key make one fetch. Towards clients:
//! a strong `ETag` per stored coding, `If-None-Match` → 304, `Cache-Control`, `Vary`, `Age`,
//! `Cache-Status` (RFC 9211). Purges by tag (`Cache-Tag` response header) or path, from
//! loopback only, reach every replica through Redis pub/sub.

mod entry;
mod http;
mod redis;

use std::{
    collections::HashMap,
    fmt::Write as _,
    future::Future,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use ::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::{
    body::Body,
    extract::{ConnectInfo, Request},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use http_body_util::BodyExt as _;
use serde::Deserialize;
use tokio::sync::watch;

use self::{
    entry::{Entry, Freshness, Parts},
    http::{Coding, Directives},
};
use crate::{auth::Principal, error::EdgeError, ratelimit::Store, redis_store::Link};
use metrics::Counter;

/// The response header by which a handler or upstream tags what it answered, for purges
/// (`Cache-Tag: product:42, catalog`). Never sent on to clients.
pub const TAG_HEADER: &str = "cache-tag";

/// Where purges are asked for (loopback only).
pub const PURGE_PATH: &str = "/_portico/cache/purge";

/// `[cache]`: the process's cache.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// The in-process tier's bound, in bytes (bodies in every coding, and headers).
    pub max_bytes: u64,
    /// Larger responses (uncompressed) are not stored.
    pub max_object_bytes: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self { max_bytes: 64 << 20, max_object_bytes: 1 << 20 }
    }
}

/// A route's cache policy: `cache = { ttl = "30s", … }` under `[routes_policy."<name>"]`, or
/// [`Access::cached`](crate::access::Access::cached) in code (the config wins).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RouteCacheConfig {
    /// How long a stored response is fresh (for a pass-through route, unless the upstream's
    /// `s-maxage`/`max-age` says otherwise).
    #[serde(with = "humantime_serde")]
    pub ttl: Duration,
    /// One entry for every caller, even those who sent credentials. Only for responses that do
    /// not depend on who asks.
    #[serde(default)]
    pub shared: bool,
    /// Request headers the response depends on: each value is its own entry. Every other
    /// request header is withheld from the handler on a cached route.
    #[serde(default)]
    pub vary: Vec<String>,
    /// `max-age` for clients and CDNs; 0 (the default) makes them revalidate every time, so a
    /// purge at the gateway is enough.
    #[serde(default, with = "humantime_serde")]
    pub client_max_age: Duration,
    /// After `ttl`, a stale response is served while one refresh runs in the background.
    #[serde(default, with = "humantime_serde")]
    pub stale_while_revalidate: Duration,
    /// After `ttl`, a failed or degraded fetch is answered with the stale response instead.
    #[serde(default, with = "humantime_serde")]
    pub stale_if_error: Duration,
    /// `memory` (this process, the default) or `redis` (every replica's, needs `[redis]`).
    #[serde(default)]
    pub store: Store,
}

impl RouteCacheConfig {
    /// Fresh for `ttl`, otherwise the defaults.
    pub fn ttl(ttl: Duration) -> Self {
        Self {
            ttl,
            shared: false,
            vary: Vec::new(),
            client_max_age: Duration::ZERO,
            stale_while_revalidate: Duration::ZERO,
            stale_if_error: Duration::ZERO,
            store: Store::Memory,
        }
    }
}

/// A named route's cache policy, ready to use: its headers and counters made once.
pub struct RoutePolicy {
    gateway: &'static str,
    name: Arc<str>,
    config: RouteCacheConfig,
    vary: Vec<HeaderName>,
    /// `Vary` towards clients: `Accept-Encoding` and the declared headers.
    vary_header: HeaderValue,
    /// `Cache-Control` towards clients: for an entry shared by callers, and for a caller's own.
    public: HeaderValue,
    private: HeaderValue,
    counters: Counters,
}

/// A route's requests by outcome (`portico_cache_requests_total`).
struct Counters {
    hit: Counter,
    miss: Counter,
    coalesced: Counter,
    stale: Counter,
    stale_if_error: Counter,
    uncacheable: Counter,
}

impl std::fmt::Debug for RoutePolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoutePolicy").field("name", &self.name).finish_non_exhaustive()
    }
}

impl PartialEq for RoutePolicy {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for RoutePolicy {}

impl RoutePolicy {
    /// The policy of the route `name` of `gateway`; `key` names it in a config error.
    pub(crate) fn new(
        gateway: &'static str,
        name: &str,
        config: &RouteCacheConfig,
        key: &str,
    ) -> Result<Self, crate::ConfigError> {
        let invalid = |message: String| crate::ConfigError::Invalid { key: key.into(), message };
        if config.ttl.is_zero() {
            return Err(invalid("`ttl` must be above 0".into()));
        }
        let mut vary = Vec::new();
        let mut vary_header = String::from("Accept-Encoding");
        for name in &config.vary {
            let header = HeaderName::try_from(name.as_str())
                .map_err(|_| invalid(format!("`vary`: `{name}` is not a header name")))?;
            if matches!(
                header.as_str(),
                "authorization" | "x-api-key" | "cookie" | "accept-encoding" | "if-none-match"
            ) {
                return Err(invalid(format!(
                    "`vary`: `{name}` cannot be varied on (credentials key by caller; the \
                     encoding and validators are the cache's own)"
                )));
            }
            let _ = write!(vary_header, ", {header}");
            vary.push(header);
        }
        let control = |visibility: &str| {
            let max_age = config.client_max_age.as_secs();
            HeaderValue::try_from(format!("{visibility}, max-age={max_age}, must-revalidate"))
                .unwrap_or(HeaderValue::from_static("no-cache"))
        };
        let name: Arc<str> = name.into();
        let counter = |outcome: &'static str| {
            metrics::counter!(crate::metrics::CACHE_REQUESTS, "gateway" => gateway,
                "route" => name.clone(), "outcome" => outcome)
        };
        let counters = Counters {
            hit: counter("hit"),
            miss: counter("miss"),
            coalesced: counter("coalesced"),
            stale: counter("stale"),
            stale_if_error: counter("stale_if_error"),
            uncacheable: counter("uncacheable"),
        };
        Ok(Self {
            gateway,
            config: config.clone(),
            vary,
            vary_header: HeaderValue::try_from(vary_header)
                .unwrap_or(HeaderValue::from_static("Accept-Encoding")),
            public: control("public"),
            private: control("private"),
            counters,
            name,
        })
    }

    pub(crate) fn uses_redis(&self) -> bool {
        self.config.store == Store::Redis
    }
}

/// How a cached route's response is fetched: its handler (or the upstream, through the
/// forwarding handler) on this router, under the caller's scope, with a deadline.
#[derive(Clone)]
pub(crate) struct Fetcher {
    pub(crate) router: axum::Router,
    pub(crate) principal: Option<Arc<Principal>>,
}

impl Fetcher {
    fn fetch(
        &self,
        request: Request,
        deadline: tokio::time::Instant,
    ) -> impl Future<Output = Response> + Send + 'static {
        use tower::ServiceExt as _;
        let work =
            futures::FutureExt::map(self.router.clone().oneshot(request), |served| match served {
                Ok(response) => response,
                Err(infallible) => match infallible {},
            });
        let work = crate::access::within(self.principal.clone(), work);
        async move { crate::rescue::normalise(crate::deadline::within(deadline, work).await).await }
    }
}

/// What a fetch in flight ends with, for the requests waiting on it: the stored entry, or
/// `None` when the response could not be stored (each waiter then fetches its own).
type Flight = watch::Receiver<Option<Option<Arc<Entry>>>>;
type Flights = watch::Sender<Option<Option<Arc<Entry>>>>;

/// The process's cache: its tiers, the fetches in flight, and its bound.
pub struct Cache {
    local: moka::sync::Cache<Arc<str>, Arc<Entry>>,
    inflight: Mutex<HashMap<Arc<str>, Flights>>,
    config: CacheConfig,
    /// Keys start with it: a rolling deploy never reads another build's format.
    version: &'static str,
    redis: Option<redis::Tier>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache").field("config", &self.config).finish_non_exhaustive()
    }
}

/// How a response left the cache step, for `Cache-Status` and the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    Hit,
    /// Stale, served while a refresh runs.
    Stale,
    /// Stale, served because the fetch failed.
    StaleIfError,
    /// Fetched (by this request, or by the one it waited for: `collapsed`) and stored.
    Miss {
        collapsed: bool,
    },
}

/// How one request is answered from an entry: its policy, whose entry it is, the coding it
/// prefers, its validators, and whether it is a HEAD.
struct Reply<'p> {
    policy: &'p RoutePolicy,
    personal: bool,
    coding: Coding,
    /// Its `If-None-Match` values.
    validators: Vec<HeaderValue>,
    head: bool,
}

impl Cache {
    /// The cache of `config`, with its Redis tier when `redis` is given.
    pub(crate) fn new(config: &CacheConfig, redis: Option<&Arc<Link>>) -> Self {
        let local = moka::sync::Cache::builder()
            .max_capacity(config.max_bytes)
            // The key counts too: a client can make it as long as a request line allows.
            .weigher(|key: &Arc<str>, entry: &Arc<Entry>| {
                entry.weight().saturating_add(u32::try_from(key.len()).unwrap_or(u32::MAX))
            })
            .expire_after(Lifetime)
            .eviction_listener(|_key, _entry, cause| {
                if cause == moka::notification::RemovalCause::Size {
                    crate::metrics::cache_evicted();
                }
            })
            .build();
        Self {
            local,
            inflight: Mutex::new(HashMap::new()),
            config: config.clone(),
            version: VERSION,
            redis: redis.map(|link| redis::Tier::new(link.clone(), VERSION)),
        }
    }

    /// Whether the process has the Redis tier a policy with `store = "redis"` needs.
    pub(crate) fn has_redis(&self) -> bool {
        self.redis.is_some()
    }

    /// A fresh entry of this process for the request, answered at once (`Err`: the request's
    /// key, for [`Cache::serve`]). `principal`: the verified caller.
    pub(crate) fn hit(
        &self,
        policy: &RoutePolicy,
        parts: &::http::request::Parts,
        principal: Option<&Principal>,
    ) -> Result<Response, String> {
        let personal = principal.is_some() && !policy.config.shared;
        let key = self.key(policy, parts, principal.filter(|_| personal));
        match self.local.get(key.as_str()) {
            Some(entry) if entry.freshness() == Freshness::Fresh => {
                Ok(Reply::new(policy, personal, parts).respond(&entry, Outcome::Hit))
            }
            _ => Err(key),
        }
    }

    /// Serves a GET or HEAD on a cached route that [`Cache::hit`] did not answer: from a tier,
    /// or by `fetcher` (one per key at a time in this process), storing what may be stored.
    pub(crate) async fn serve(
        self: Arc<Self>,
        policy: Arc<RoutePolicy>,
        key: String,
        parts: ::http::request::Parts,
        principal: Option<Arc<Principal>>,
        deadline: tokio::time::Instant,
        fetcher: Fetcher,
    ) -> Response {
        let personal = principal.is_some() && !policy.config.shared;
        let reply = Reply::new(&policy, personal, &parts);
        if let Some(redis) = &self.redis {
            redis.subscribe(&self);
        }
        let key: Arc<str> = key.into();
        let template = fetch_request(&policy, personal, &parts);

        let mut stale = None;
        let mut collapsed = false;
        loop {
            if let Some(entry) = self.lookup(&key, &policy).await {
                match entry.freshness() {
                    Freshness::Fresh => return reply.respond(&entry, Outcome::Hit),
                    Freshness::Revalidate => {
                        self.refresh(&policy, &key, &template, &fetcher);
                        return reply.respond(&entry, Outcome::Stale);
                    }
                    Freshness::IfError => stale = Some(entry),
                    Freshness::Expired => {}
                }
            }
            // A miss: wait for the fetch in flight, or make it.
            match self.join(&key) {
                Err(mut flight) => {
                    collapsed = true;
                    let ended = flight.wait_for(Option::is_some).await.map(|e| e.clone());
                    match ended {
                        Ok(Some(Some(entry))) => {
                            return reply.respond(&entry, Outcome::Miss { collapsed });
                        }
                        // Not storable: this request fetches its own.
                        Ok(_) => break,
                        // The fetching request went away midway: look again, maybe lead.
                        Err(_) => {}
                    }
                }
                Ok(leader) => {
                    let response = fetcher.fetch(clone_request(&template), deadline).await;
                    let stored = self.store(&policy, &key, response).await;
                    leader.end(stored.as_ref().ok().cloned());
                    return match stored {
                        Ok(entry) => reply.respond(&entry, Outcome::Miss { collapsed }),
                        Err(response) => reply.unstored(response, stale.as_deref()),
                    };
                }
            }
        }
        let response = fetcher.fetch(clone_request(&template), deadline).await;
        reply.unstored(response, stale.as_deref())
    }

    /// `Ok`: this request fetches for `key` (others wait for it); `Err`: the fetch in flight to
    /// wait for.
    fn join(self: &Arc<Self>, key: &Arc<str>) -> Result<Leader, Flight> {
        let mut inflight = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(flight) = inflight.get(key) {
            return Err(flight.subscribe());
        }
        let tx = watch::Sender::new(None);
        inflight.insert(key.clone(), tx.clone());
        Ok(Leader { cache: self.clone(), key: key.clone(), tx: Some(tx) })
    }

    /// Refreshes a stale entry in the background, unless a fetch for it is in flight.
    fn refresh(
        self: &Arc<Self>,
        policy: &Arc<RoutePolicy>,
        key: &Arc<str>,
        template: &Request,
        fetcher: &Fetcher,
    ) {
        let Ok(leader) = self.join(key) else { return };
        let request = clone_request(template);
        let (cache, fetcher, policy, key) =
            (self.clone(), fetcher.clone(), policy.clone(), key.clone());
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + REFRESH_TIMEOUT;
            let fetched = tokio::time::timeout_at(deadline, fetcher.fetch(request, deadline)).await;
            let stored = match fetched {
                Ok(response) => cache.store(&policy, &key, response).await.ok(),
                Err(_elapsed) => None,
            };
            leader.end(stored);
        });
    }

    /// The entry of `key`: this process's, or the shared tier's (then kept here too).
    async fn lookup(&self, key: &Arc<str>, policy: &RoutePolicy) -> Option<Arc<Entry>> {
        if let Some(entry) = self.local.get(key) {
            return Some(entry);
        }
        let redis = self.redis.as_ref().filter(|_| policy.uses_redis())?;
        let entry = Arc::new(redis.get(key).await?);
        if entry.freshness() == Freshness::Expired {
            return None;
        }
        self.local.insert(key.clone(), entry.clone());
        Some(entry)
    }

    /// Stores `response` when it may be: `Ok` with the entry, or `Err` with the response as it
    /// came (its body whole), for the client alone.
    async fn store(
        &self,
        policy: &RoutePolicy,
        key: &Arc<str>,
        response: Response,
    ) -> Result<Arc<Entry>, Response> {
        let Some(fresh) = storable(policy, &response) else {
            return Err(response);
        };
        let (parts, body) = response.into_parts();
        let body = match collect(body, self.config.max_object_bytes).await {
            Ok(body) => body,
            Err(body) => return Err(Response::from_parts(parts, body)),
        };
        let tags = parts
            .headers
            .get_all(TAG_HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|tag| tag.trim().to_owned())
            .filter(|tag| !tag.is_empty())
            .collect();
        let headers = parts
            .headers
            .iter()
            .filter(|(name, _)| !OWN_HEADERS.contains(name))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let entry = Arc::new(Entry::new(Parts {
            headers,
            body,
            fresh,
            stale_while_revalidate: policy.config.stale_while_revalidate,
            stale_if_error: policy.config.stale_if_error,
            tags,
            path: path_of(key),
        }));
        self.local.insert(key.clone(), entry.clone());
        if let Some(redis) = self.redis.as_ref().filter(|_| policy.uses_redis()) {
            redis.put(key, entry.clone());
        }
        crate::metrics::cache_bytes(self.local.weighted_size());
        Ok(entry)
    }

    /// The key of a request: every part length-prefixed, so no part can pass for another.
    fn key(
        &self,
        policy: &RoutePolicy,
        parts: &::http::request::Parts,
        caller: Option<&Principal>,
    ) -> String {
        let mut key = String::with_capacity(128);
        let mut part = |value: &str| {
            let _ = write!(key, "{}:", value.len());
            key.push_str(value);
            key.push('|');
        };
        part(self.version);
        part(policy.gateway);
        part(&policy.name);
        let host = parts
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| parts.headers.get(header::HOST).and_then(|h| h.to_str().ok()))
            .unwrap_or("");
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            part(&host.to_ascii_lowercase());
        } else {
            part(host);
        }
        part(parts.uri.path());
        match parts.uri.query() {
            Some(query) if query.contains('&') => {
                let mut pairs: Vec<&str> = query.split('&').filter(|q| !q.is_empty()).collect();
                pairs.sort_unstable();
                part(&pairs.join("&"));
            }
            Some(query) => part(query),
            None => part(""),
        }
        for name in &policy.vary {
            let mut values = parts.headers.get_all(name).iter();
            match (values.next(), values.next()) {
                (None, _) => part(""),
                (Some(one), None) => part(&String::from_utf8_lossy(one.as_bytes())),
                (Some(first), Some(second)) => {
                    let all: Vec<&[u8]> = [first, second]
                        .into_iter()
                        .chain(values)
                        .map(HeaderValue::as_bytes)
                        .collect();
                    part(&String::from_utf8_lossy(&all.join(&b"\n"[..])));
                }
            }
        }
        match caller {
            Some(caller) => {
                let kind =
                    if caller.kind == crate::auth::PrincipalKind::Partner { "p" } else { "u" };
                part(kind);
                part(&caller.subject);
            }
            None => part("-"),
        }
        key
    }

    /// Drops what `purge` names from this process's tier; the count dropped.
    pub(crate) fn purge_local(&self, purge: &Purge) -> usize {
        let doomed: Vec<Arc<str>> = self
            .local
            .iter()
            .filter(|(_, entry)| purge.matches(entry))
            .map(|(key, _)| key.as_ref().clone())
            .collect();
        for key in &doomed {
            self.local.invalidate(key);
        }
        doomed.len()
    }

    /// Purges everywhere: this process, the shared tier and (through it) every replica.
    pub async fn purge(&self, purge: &Purge) -> Result<usize, EdgeError> {
        let purged = self.purge_local(purge);
        if let Some(redis) = &self.redis {
            redis.purge(purge).await.map_err(|_| {
                EdgeError::from_status(StatusCode::SERVICE_UNAVAILABLE, "cache_unavailable")
                    .with_detail("purged here, but the shared tier cannot be reached; retry")
                    .with_retry_after(1)
            })?;
        }
        crate::metrics::cache_purged(purged);
        Ok(purged)
    }
}

#[cfg(test)]
impl Cache {
    /// Requests waiting for the fetch in flight of `path`'s entries.
    pub(crate) fn waiting(&self, path: &str) -> usize {
        let inflight = self.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        inflight
            .iter()
            .filter(|(key, _)| path_of(key) == path)
            .map(|(_, tx)| tx.receiver_count())
            .sum()
    }
}

/// The build's cache format: every key starts with it.
const VERSION: &str = concat!("v", env!("CARGO_PKG_VERSION"), "-1");

/// How long a background refresh may take.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(30);

/// The fetch this request makes for its key; the waiters are told how it ended when it does,
/// and told to look again if it is dropped midway.
struct Leader {
    cache: Arc<Cache>,
    key: Arc<str>,
    tx: Option<Flights>,
}

impl Leader {
    fn end(mut self, entry: Option<Arc<Entry>>) {
        if let Some(tx) = self.tx.take() {
            tx.send_replace(Some(entry));
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        let mut inflight = self.cache.inflight.lock().unwrap_or_else(PoisonError::into_inner);
        inflight.remove(&self.key);
    }
}

/// Each entry lives as long as it is fresh or usable stale.
struct Lifetime;

impl moka::Expiry<Arc<str>, Arc<Entry>> for Lifetime {
    fn expire_after_create(
        &self,
        _key: &Arc<str>,
        entry: &Arc<Entry>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(entry.lifetime())
    }
}

/// What a purge names: entries tagged `tag`, or stored for `path`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Purge {
    /// A `Cache-Tag` the entries carry.
    pub tag: Option<String>,
    /// The request path they were stored for (every query, variant and caller).
    pub path: Option<String>,
}

impl Purge {
    fn matches(&self, entry: &Entry) -> bool {
        self.tag.as_ref().is_some_and(|tag| entry.tags.iter().any(|t| t == tag))
            || self.path.as_ref().is_some_and(|path| entry.path == *path)
    }

    /// The message replicas exchange: `t<tag>` or `p<path>`, each a line.
    fn encode(&self) -> String {
        let mut out = String::new();
        if let Some(tag) = &self.tag {
            let _ = writeln!(out, "t{tag}");
        }
        if let Some(path) = &self.path {
            let _ = writeln!(out, "p{path}");
        }
        out
    }

    fn decode(message: &str) -> Self {
        let mut purge = Self { tag: None, path: None };
        for line in message.lines() {
            match line.split_at_checked(1) {
                Some(("t", tag)) => purge.tag = Some(tag.to_owned()),
                Some(("p", path)) => purge.path = Some(path.to_owned()),
                _ => {}
            }
        }
        purge
    }
}

/// The path part of a key (the fifth part).
fn path_of(key: &str) -> String {
    let mut rest = key;
    for index in 0..5 {
        let Some((length, tail)) = rest.split_once(':') else { return String::new() };
        let Ok(length) = length.parse::<usize>() else { return String::new() };
        let Some(value) = tail.get(..length) else { return String::new() };
        if index == 4 {
            return value.to_owned();
        }
        rest = tail.get(length + 1..).unwrap_or("");
    }
    String::new()
}

/// `Cache-Status` (RFC 9211).
static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

/// Headers the cache writes itself, or never stores.
static OWN_HEADERS: [HeaderName; 13] = [
    header::CACHE_CONTROL,
    header::ETAG,
    header::VARY,
    header::AGE,
    header::DATE,
    header::EXPIRES,
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::TRANSFER_ENCODING,
    header::CONNECTION,
    header::SET_COOKIE,
    HeaderName::from_static(TAG_HEADER),
    HeaderName::from_static("portico-request-id"),
];

/// The freshness lifetime of `response` when it may be stored; `None` when it may not: only a
/// 200, identity-coded, without `Set-Cookie`, not degraded, not marked `no-store`, `private` or
/// `no-cache`, varying on nothing but what the route keys on.
fn storable(policy: &RoutePolicy, response: &Response) -> Option<Duration> {
    let headers = response.headers();
    if response.status() != StatusCode::OK
        || headers.contains_key(header::SET_COOKIE)
        || headers.contains_key(crate::compose::DEGRADED_HEADER)
        || headers.get(header::CONTENT_ENCODING).is_some_and(|c| c != "identity")
    {
        return None;
    }
    let directives = Directives::of(headers);
    if directives.no_store || directives.private || directives.no_cache {
        return None;
    }
    for value in headers.get_all(header::VARY) {
        let value = value.to_str().ok()?;
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let keyed = name.eq_ignore_ascii_case("accept-encoding")
                || policy.vary.iter().any(|v| v.as_str().eq_ignore_ascii_case(name));
            if !keyed {
                return None;
            }
        }
    }
    let fresh = directives.lifetime.unwrap_or(policy.config.ttl);
    (!fresh.is_zero()).then_some(fresh)
}

/// Whether a fetch failed, for `stale_if_error`: a 5xx, or a degraded page.
fn failed(response: &Response) -> bool {
    response.status().is_server_error()
        || response.headers().contains_key(crate::compose::DEGRADED_HEADER)
}

/// The body, read whole when it is at most `max` bytes; otherwise `Err` with a body that
/// still yields all of it (what was read, then the rest).
async fn collect(mut body: Body, max: usize) -> Result<Bytes, Body> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            // A body that broke midway is not stored; the client gets what there was.
            return Err(Body::from(chunks.concat()));
        };
        let Ok(data) = frame.into_data() else { continue };
        total += data.len();
        chunks.push(data);
        if total > max {
            let read = futures::stream::iter(chunks.into_iter().map(Ok::<_, axum::Error>));
            let rest = http_body_util::BodyDataStream::new(body);
            return Err(Body::from_stream(futures::StreamExt::chain(read, rest)));
        }
    }
    Ok(match chunks.len() {
        1 => chunks.swap_remove(0),
        _ => chunks.concat().into(),
    })
}

/// The request a fetch sends: a GET with the route's keyed headers only (and the caller's
/// credentials when the entry is the caller's own), so nothing outside the key can shape it.
fn fetch_request(policy: &RoutePolicy, personal: bool, parts: &::http::request::Parts) -> Request {
    let mut headers = HeaderMap::with_capacity(policy.vary.len() + 2);
    let mut keep = |name: &HeaderName| {
        for value in parts.headers.get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    };
    keep(&header::HOST);
    for name in &policy.vary {
        keep(name);
    }
    if personal {
        keep(&header::AUTHORIZATION);
        keep(&HeaderName::from_static("x-api-key"));
    }
    let mut request = Request::new(Body::empty());
    *request.uri_mut() = parts.uri.clone();
    *request.version_mut() = parts.version;
    *request.headers_mut() = headers;
    *request.extensions_mut() = parts.extensions.clone();
    request
}

fn clone_request(template: &Request) -> Request {
    let mut request = Request::new(Body::empty());
    *request.method_mut() = template.method().clone();
    *request.uri_mut() = template.uri().clone();
    *request.version_mut() = template.version();
    *request.headers_mut() = template.headers().clone();
    *request.extensions_mut() = template.extensions().clone();
    request
}

impl<'p> Reply<'p> {
    fn new(policy: &'p RoutePolicy, personal: bool, parts: &::http::request::Parts) -> Self {
        Self {
            policy,
            personal,
            coding: Coding::negotiate(&parts.headers),
            head: parts.method == Method::HEAD,
            validators: parts.headers.get_all(header::IF_NONE_MATCH).iter().cloned().collect(),
        }
    }

    /// The response from `entry`: 304 when the client holds this variant, else the variant.
    fn respond(&self, entry: &Entry, outcome: Outcome) -> Response {
        let counters = &self.policy.counters;
        let coding = entry.coding(self.coding);
        let etag = entry.etag(coding);
        let age = entry.age().as_secs();
        let ttl = i128::from(entry.fresh.as_secs()) - i128::from(age);
        let status = match outcome {
            Outcome::Hit => {
                counters.hit.increment(1);
                format!("portico; hit; ttl={ttl}")
            }
            Outcome::Stale => {
                counters.stale.increment(1);
                format!("portico; hit; ttl={ttl}; detail=stale-while-revalidate")
            }
            Outcome::StaleIfError => {
                counters.stale_if_error.increment(1);
                format!("portico; fwd=stale; ttl={ttl}; detail=stale-if-error")
            }
            Outcome::Miss { collapsed: false } => {
                counters.miss.increment(1);
                "portico; fwd=miss; stored".to_owned()
            }
            Outcome::Miss { collapsed: true } => {
                counters.coalesced.increment(1);
                "portico; fwd=miss; stored; collapsed".to_owned()
            }
        };
        let control = if self.personal { &self.policy.private } else { &self.policy.public };
        let mut headers = HeaderMap::with_capacity(entry.headers.len() + 8);
        headers.insert(header::ETAG, etag.clone());
        headers.insert(header::CACHE_CONTROL, control.clone());
        headers.insert(header::VARY, self.policy.vary_header.clone());
        headers.insert(header::AGE, HeaderValue::from(age));
        if let Ok(status) = HeaderValue::try_from(status) {
            headers.insert(CACHE_STATUS.clone(), status);
        }
        if http::none_match(&self.validators, etag) {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            *response.headers_mut() = headers;
            return response;
        }
        for (name, value) in &entry.headers {
            headers.append(name.clone(), value.clone());
        }
        if coding != Coding::Identity {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding.name()));
        }
        let body = entry.body(coding);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        let body = if self.head { Body::empty() } else { Body::from(body.clone()) };
        let mut response = Response::new(body);
        *response.headers_mut() = headers;
        response
    }

    /// A response that was not stored: the stale entry instead when it failed and one is
    /// usable, else itself, as fetched.
    fn unstored(&self, response: Response, stale: Option<&Entry>) -> Response {
        if let Some(stale) = stale
            && failed(&response)
        {
            return self.respond(stale, Outcome::StaleIfError);
        }
        self.policy.counters.uncacheable.increment(1);
        let (mut parts, body) = response.into_parts();
        parts.headers.remove(TAG_HEADER);
        parts.headers.insert(CACHE_STATUS.clone(), HeaderValue::from_static("portico; fwd=miss"));
        let body = if self.head { Body::empty() } else { body };
        Response::from_parts(parts, body)
    }
}

/// `POST /_portico/cache/purge?tag=…` or `?path=…`: from a loopback peer only (the real peer
/// the server recorded, never a forwarding header).
pub(crate) async fn purge_handler(
    axum::extract::State(cache): axum::extract::State<Arc<Cache>>,
    request: Request,
) -> Response {
    let peer = request.extensions().get::<ConnectInfo<std::net::SocketAddr>>();
    if peer.is_some_and(|ConnectInfo(peer)| !peer.ip().to_canonical().is_loopback()) {
        return EdgeError::from_status(StatusCode::FORBIDDEN, "forbidden")
            .with_detail("purges are accepted from the gateway's own host only")
            .into_response();
    }
    let purge: Purge = match request.uri().query().map(serde_urlencoded::from_str).transpose() {
        Ok(Some(purge @ Purge { tag: Some(_), .. } | purge @ Purge { path: Some(_), .. })) => purge,
        _ => {
            return EdgeError::bad_request("name what to purge: `?tag=…` or `?path=/…`")
                .into_response();
        }
    };
    match cache.purge(&purge).await {
        Ok(purged) => axum::Json(serde_json::json!({ "purged": purged })).into_response(),
        Err(error) => error.into_response(),
    }
}

#[cfg(test)]
mod tests;
