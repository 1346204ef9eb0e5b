//! The gateway configuration model: listeners, limits, named upstreams and declarative
//! pass-through routes, read from TOML.
//!
//! Policy lives here and code stays in the gateways: where upstreams are, how long calls may
//! take and which paths pass straight through are all configuration. Every struct is strict
//! (`deny_unknown_fields`), so a typo is an error that names the key rather than a silently
//! ignored setting, and every default lives in a `Default` impl.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    path::Path,
    time::Duration,
};

use serde::Deserialize;

use crate::upstream::policy::{
    self, Balance, BreakerConfig, HealthCheckConfig, HedgeConfig, OutlierConfig, RetryConfig,
};

mod cidr;

pub use cidr::{Cidr, CidrParseError};

/// Paths the gateway serves itself, on every gateway: no `[[routes]]` entry may claim one of them
/// or a path below one.
///
/// A route at `/` is still allowed: the gateway's own endpoints are matched before any
/// pass-through route, so they are always answered by the gateway, never relayed.
pub const RESERVED_PATHS: [&str; 5] =
    ["/metrics", "/healthz", "/readyz", "/openapi.json", crate::cache::PURGE_PATH];

/// The most header fields [`Limits::max_headers`] may allow: the relay parses a request head
/// into a fixed array of this many fields.
pub const MAX_HEADERS_CEILING: usize = 128;

/// The deepest JSON nesting [`Limits::max_json_depth`] may allow: deeper documents are not
/// plausible API payloads, and the parsers recurse once per level.
pub const MAX_JSON_DEPTH_CEILING: usize = 128;

/// A whole gateway's configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Where the gateway listens.
    pub listen: ListenConfig,
    /// Request limits applied before any handler runs.
    pub limits: Limits,
    /// Settings merged into every upstream unless it overrides them.
    pub defaults: Defaults,
    /// Named upstreams; handlers and routes refer to them by name.
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// Declarative pass-through routes.
    pub routes: Vec<RouteConfig>,
    /// Who callers are: JWT verification against a JWKS, and partner API keys. Without it the
    /// gateway serves public routes only (checked at start-up).
    pub auth: Option<crate::auth::AuthConfig>,
    /// Partner plans by name: each API key names one (`[[auth.api_keys]] plan`).
    pub plans: BTreeMap<String, crate::ratelimit::PlanConfig>,
    /// Limits for every client: the throttle on credential guessing.
    pub rate_limits: crate::ratelimit::RateLimitsConfig,
    /// The Redis that shared limits live in (`[plans.x] store = "redis"`).
    pub redis: Option<crate::ratelimit::RedisConfig>,
    /// Policies of named routes (a composed route's `Access::named`, a pass-through route's
    /// `name`): their rate limits and caching.
    pub routes_policy: BTreeMap<String, crate::ratelimit::RoutePolicyConfig>,
    /// The process's response cache (the in-process tier's bounds).
    pub cache: crate::cache::CacheConfig,
}

/// Listener addresses.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenConfig {
    /// The client-facing address.
    pub public: SocketAddr,
    /// Peers (load balancers, ingress proxies) whose forwarding headers are believed, as
    /// networks (`10.0.0.0/8`) or single addresses (`192.168.1.7`). Empty by default: no peer
    /// is trusted to say who the client is.
    pub trusted_proxies: Vec<Cidr>,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self { public: SocketAddr::from(([127, 0, 0, 1], 8080)), trusted_proxies: Vec::new() }
    }
}

impl ListenConfig {
    /// Whether a peer at `ip` is one of [`trusted_proxies`](Self::trusted_proxies). An
    /// IPv4-mapped IPv6 peer (`::ffff:10.0.0.1`) counts as its IPv4 address.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(ip))
    }
}

/// Limits that protect the gateway from oversized or endless requests.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// The largest request body accepted, in bytes; larger ones get 413.
    pub max_body_bytes: u64,
    /// The deadline of a whole request, from the first byte of the head to the response head.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long a client may take to send the request head (slowloris protection).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// The longest request line (method, target and version), in bytes; longer ones get 414.
    pub max_request_line_bytes: usize,
    /// The longest single header field (name and value), in bytes; longer ones get 431. With
    /// `[auth]`, it must hold `authorization: Bearer ` and a token of `auth.max_token_bytes`.
    pub max_header_bytes: usize,
    /// The largest request head (request line and every header field), in bytes; larger ones
    /// get 431.
    pub max_head_bytes: usize,
    /// The most header fields in a request; more get 431. At most 128.
    pub max_headers: usize,
    /// The deepest nesting of the JSON bodies the gateway parses itself (composed routes);
    /// pass-through bodies are not parsed. At most 128.
    pub max_json_depth: usize,
    /// How long a keep-alive connection may sit idle between two requests (nginx's
    /// `keepalive_timeout`). An HTTP/2 connection with no bytes either way for this long (or
    /// for `request_timeout`, if longer) is closed too.
    #[serde(with = "humantime_serde")]
    pub keepalive_timeout: Duration,
    /// How long a write to a client may stay blocked (a client that stopped reading its
    /// response) before the connection is closed (nginx's `send_timeout`).
    #[serde(with = "humantime_serde")]
    pub send_timeout: Duration,
    /// How long shutdown waits for in-flight requests before it closes what is left.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// The most client connections this gateway holds at once; more are closed as they are
    /// accepted (and counted). `0`: derived from the process's open-file limit, keeping half
    /// for upstream connections and files, shared by the gateways of the process.
    pub max_connections: usize,
    /// HTTP/2: the most concurrent streams per connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: the initial flow-control window of each stream, in bytes.
    pub h2_stream_window_bytes: u32,
    /// HTTP/2: the initial flow-control window of each connection, in bytes.
    pub h2_connection_window_bytes: u32,
    /// HTTP/2: how many streams a client may reset before the server has accepted them
    /// before the connection is closed (the "rapid reset" attack, CVE-2023-44487).
    pub h2_max_pending_resets: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            max_request_line_bytes: 8 * 1024,
            max_header_bytes: 16 * 1024,
            max_head_bytes: 32 * 1024,
            max_headers: 100,
            max_json_depth: 32,
            keepalive_timeout: Duration::from_secs(75),
            send_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(10),
            max_connections: 0,
            h2_max_concurrent_streams: 100,
            h2_stream_window_bytes: 64 * 1024,
            h2_connection_window_bytes: 1024 * 1024,
            h2_max_pending_resets: 20,
        }
    }
}

impl Limits {
    /// Checks each limit and how they bound one another.
    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes == 0 {
            return Err(invalid("limits.max_body_bytes", "must be greater than 0"));
        }
        for (key, value) in [
            ("limits.max_request_line_bytes", self.max_request_line_bytes),
            ("limits.max_header_bytes", self.max_header_bytes),
            ("limits.max_head_bytes", self.max_head_bytes),
            ("limits.max_headers", self.max_headers),
            ("limits.max_json_depth", self.max_json_depth),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if self.max_headers > MAX_HEADERS_CEILING {
            return Err(invalid(
                "limits.max_headers",
                format!(
                    "{} is more than {MAX_HEADERS_CEILING}, the most header fields the relay parses",
                    self.max_headers
                ),
            ));
        }
        for (key, value) in [
            ("limits.request_timeout", self.request_timeout),
            ("limits.header_read_timeout", self.header_read_timeout),
            ("limits.keepalive_timeout", self.keepalive_timeout),
            ("limits.send_timeout", self.send_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        if self.h2_max_concurrent_streams == 0 {
            return Err(invalid("limits.h2_max_concurrent_streams", "must be greater than 0"));
        }
        // RFC 9113 §6.5.2 and §6.9.1: windows are at least 65,535 bytes (the protocol's
        // initial value; a connection window cannot start lower) and at most 2^31 - 1.
        for (key, value) in [
            ("limits.h2_stream_window_bytes", self.h2_stream_window_bytes),
            ("limits.h2_connection_window_bytes", self.h2_connection_window_bytes),
        ] {
            if !(65_535..=0x7fff_ffff).contains(&value) {
                return Err(invalid(key, format!("{value} is not within 65535..=2147483647")));
            }
        }
        if self.max_json_depth > MAX_JSON_DEPTH_CEILING {
            return Err(invalid(
                "limits.max_json_depth",
                format!("{} is more than {MAX_JSON_DEPTH_CEILING}", self.max_json_depth),
            ));
        }
        // A head holds its request line and each of its fields, so neither may exceed it:
        // the larger limit could never be reached.
        for (key, value) in [
            ("limits.max_request_line_bytes", self.max_request_line_bytes),
            ("limits.max_header_bytes", self.max_header_bytes),
        ] {
            if value > self.max_head_bytes {
                return Err(invalid(
                    key,
                    format!(
                        "{value} is more than limits.max_head_bytes ({}), which includes it",
                        self.max_head_bytes
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks that one header field can carry the longest bearer token `auth` accepts: a
    /// smaller limit would refuse valid tokens with 431 before they reach verification.
    fn validate_against_auth(&self, auth: &crate::auth::AuthConfig) -> Result<(), ConfigError> {
        // Counted as the limit counts a field: name and value, without `: ` or CRLF.
        let needed = ("authorization".len() + "Bearer ".len()).saturating_add(auth.max_token_bytes);
        if self.max_header_bytes < needed {
            return Err(invalid(
                "limits.max_header_bytes",
                format!(
                    "{} cannot hold a bearer token of auth.max_token_bytes ({}) in an \
                     `Authorization` header: it must be at least {needed}",
                    self.max_header_bytes, auth.max_token_bytes
                ),
            ));
        }
        Ok(())
    }
}

/// Defaults shared by all upstreams.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Defaults {
    /// Upstream defaults.
    pub upstream: UpstreamDefaults,
}

/// Per-upstream settings that every upstream inherits unless it sets its own.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamDefaults {
    /// The deadline of one call to the upstream.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// The deadline for opening a connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept.
    #[serde(with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    /// The most idle connections kept per endpoint.
    pub pool_max_idle_per_endpoint: usize,
    /// How calls are spread over endpoints.
    pub balance: Balance,
    /// Calls in flight per upstream (per worker) beyond which new ones are refused with 503.
    pub max_concurrent: usize,
    /// Retries and their budget.
    pub retry: RetryConfig,
    /// Per-endpoint circuit breakers.
    pub breaker: BreakerConfig,
    /// Passive outlier ejection.
    pub outlier: OutlierConfig,
    /// Hedged idempotent reads (off unless set).
    pub hedge: Option<HedgeConfig>,
    /// Active health checks (off unless set).
    pub health_check: Option<HealthCheckConfig>,
}

impl Default for UpstreamDefaults {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_millis(500),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_endpoint: 256,
            balance: Balance::default(),
            max_concurrent: policy::DEFAULT_MAX_CONCURRENT,
            retry: RetryConfig::default(),
            breaker: BreakerConfig::default(),
            outlier: OutlierConfig::default(),
            hedge: None,
            health_check: None,
        }
    }
}

/// The wire protocol an upstream speaks: a property of the upstream, not of the handler.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 or HTTP/2 with JSON bodies.
    #[default]
    Http,
    /// gRPC over HTTP/2.
    Grpc,
}

/// One named upstream.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The protocol it speaks.
    #[serde(default)]
    pub protocol: Protocol,
    /// Base URLs of its instances, e.g. `http://127.0.0.1:7001`; calls are balanced over them.
    /// With `discovery`, optional: the set to start with until discovery first answers.
    #[serde(default)]
    pub endpoints: Vec<String>,
    /// Where the endpoints come from at run time (DNS, SRV or a watched file); the last good
    /// set is kept when discovery fails or finds nothing.
    #[serde(default)]
    pub discovery: Option<crate::upstream::discovery::DiscoveryConfig>,
    /// Overrides `defaults.upstream.timeout`.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Overrides `defaults.upstream.connect_timeout`.
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    /// The tables below inherit from `[defaults.upstream]` key by key (merged when the file is
    /// read); see there.
    #[serde(default)]
    pub balance: Balance,
    /// See [`UpstreamDefaults::max_concurrent`].
    #[serde(default = "policy::default_max_concurrent")]
    pub max_concurrent: usize,
    /// See [`UpstreamDefaults::retry`].
    #[serde(default)]
    pub retry: RetryConfig,
    /// See [`UpstreamDefaults::breaker`].
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// See [`UpstreamDefaults::outlier`].
    #[serde(default)]
    pub outlier: OutlierConfig,
    /// See [`UpstreamDefaults::hedge`].
    #[serde(default)]
    pub hedge: Option<HedgeConfig>,
    /// See [`UpstreamDefaults::health_check`].
    #[serde(default)]
    pub health_check: Option<HealthCheckConfig>,
}

/// A declarative pass-through route: requests under `path` go to `upstream` unchanged but for
/// the path rewrite and the proxy headers.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The path prefix this route owns, e.g. `/api/catalog`; it matches the prefix itself and
    /// everything below it.
    pub path: String,
    /// The named upstream that serves it.
    pub upstream: String,
    /// Replaces the matched prefix before forwarding (`"/"` strips it); unset keeps the path.
    #[serde(default)]
    pub rewrite: Option<String>,
    /// Overrides the upstream's call timeout for this route.
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    /// Who may call: `public`, `authenticated`, `user` or `partner`. A route without it admits
    /// nobody (deny by default).
    #[serde(default)]
    pub access: Option<String>,
    /// Scopes the caller must all hold (implies an authenticated caller).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Forward the client's `Authorization` header to the upstream (off by default: bearer
    /// tokens stay at the edge). When on, a non-Bearer scheme (e.g. Basic) is passed through
    /// uninspected on this route.
    #[serde(default)]
    pub forward_authorization: bool,
    /// The route's name, by which `[routes_policy."<name>"]` gives it a policy.
    #[serde(default)]
    pub name: Option<String>,
}

// === impl RouteConfig ===

impl RouteConfig {
    /// The path as routes are compared: without a trailing `/`, except for `/` itself.
    pub fn normalised_path(&self) -> &str {
        normalise(&self.path)
    }
}

/// `path` without its trailing `/`s, except for `/` itself.
fn normalise(path: &str) -> &str {
    match path.trim_end_matches('/') {
        "" => "/",
        trimmed => trimmed,
    }
}

/// Whether `path` is a literal path prefix already in normal form: it starts with `/`, has no
/// empty (`//`), `.` or `..` segment, and nothing that a request path would be decoded,
/// normalised or split at (`%`, `\`, `?`, `#`), nor pattern syntax (`{}`, `*`) or whitespace.
///
/// Routes are matched on the request's path as sent; a prefix that only matches after
/// normalisation would match differently from how it reads.
fn is_normal_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else { return false };
    if path.contains(['%', '\\', '?', '#', '{', '}', '*'])
        || path.contains(|c: char| c.is_whitespace() || c.is_control())
    {
        return false;
    }
    // One trailing `/` is allowed (`/api/` is `/api`); everything before it must be segments.
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    rest.is_empty() || rest.split('/').all(|segment| !matches!(segment, "" | "." | ".."))
}

/// Whether normalised `inner` is `outer` or lies below it by whole segments: `/api/catalog` is
/// below `/api` (and everything is below `/`), `/apix` is not.
fn at_or_below(outer: &str, inner: &str) -> bool {
    outer == "/"
        || inner.strip_prefix(outer).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Whether two normalised prefixes both match some request path.
fn overlaps(a: &str, b: &str) -> bool {
    at_or_below(a, b) || at_or_below(b, a)
}

/// Merges `[defaults.upstream]`'s inherited keys into every `[upstreams.*]` table: a key the
/// upstream sets wins, and a table (`retry`, `breaker`, …) is merged one key at a time.
fn inherit_defaults(document: &mut toml::Table) {
    let Some(defaults) = document
        .get("defaults")
        .and_then(|d| d.get("upstream"))
        .and_then(toml::Value::as_table)
        .cloned()
    else {
        return;
    };
    let Some(upstreams) = document.get_mut("upstreams").and_then(toml::Value::as_table_mut) else {
        return;
    };
    for upstream in upstreams.iter_mut().filter_map(|(_, u)| u.as_table_mut()) {
        for key in policy::INHERITED {
            let Some(default) = defaults.get(key) else { continue };
            match (upstream.get_mut(key), default) {
                (None, _) => {
                    upstream.insert(key.to_owned(), default.clone());
                }
                (Some(toml::Value::Table(own)), toml::Value::Table(default)) => {
                    for (k, v) in default {
                        own.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                }
                (Some(_), _) => {}
            }
        }
    }
}

/// An invalid configuration, with the key that is wrong.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML does not match the model (the message names the key and line).
    #[error("{0}")]
    Parse(#[from] toml::de::Error),
    /// The values parse but do not make sense together.
    #[error("`{key}`: {message}")]
    Invalid {
        /// The dotted key that is wrong.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), message: message.into() }
}

// === impl GatewayConfig ===

impl GatewayConfig {
    /// Parses and validates a TOML document. An upstream's resilience tables are merged key by
    /// key over `[defaults.upstream]`'s, so an override changes only the keys it names.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        // Parsed as written first: the errors of the typed parse name the key and the line.
        let _: Self = toml::from_str(text)?;
        let mut document: toml::Table = text.parse()?;
        inherit_defaults(&mut document);
        let config: Self = toml::Value::Table(document).try_into()?;
        config.validate()?;
        Ok(config)
    }

    /// Reads, parses and validates a TOML file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.display().to_string(), source })?;
        Self::from_toml(&text)
    }

    /// Checks what the types cannot: references between sections and well-formed values.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.limits.validate()?;
        crate::ratelimit::validate(&self.plans, &self.routes_policy, self.redis.as_ref())?;
        if !self.plans.is_empty()
            && let Some(auth) = &self.auth
            && let Some(key) = auth.api_keys.iter().find(|k| !self.plans.contains_key(&k.plan))
        {
            // A typo must not leave a partner unlimited.
            return Err(invalid(
                "auth.api_keys.plan",
                format!(
                    "API key `{}` names plan `{}`, which [plans] does not define",
                    key.id, key.plan
                ),
            ));
        }
        if let Some(auth) = &self.auth
            && let Some((client, plan)) =
                auth.client_plans.iter().find(|(_, plan)| !self.plans.contains_key(*plan))
        {
            return Err(invalid(
                format!("auth.client_plans.{client}"),
                format!("names plan `{plan}`, which [plans] does not define"),
            ));
        }
        if let Some(auth) = &self.auth
            && let Some((client, plan)) = auth.client_plans.iter().find(|(client, plan)| {
                auth.api_keys.iter().any(|k| &k.partner == *client && &k.plan != *plan)
            })
        {
            // One partner, one plan: its keys and its tokens share one count.
            return Err(invalid(
                format!("auth.client_plans.{client}"),
                format!("`{plan}` differs from the plan of {client}'s API keys"),
            ));
        }
        for (key, value) in [
            ("limits.request_timeout", self.limits.request_timeout),
            ("limits.header_read_timeout", self.limits.header_read_timeout),
            ("defaults.upstream.timeout", self.defaults.upstream.timeout),
            ("defaults.upstream.connect_timeout", self.defaults.upstream.connect_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be longer than 0s"));
            }
        }
        for (name, upstream) in &self.upstreams {
            let base = format!("upstreams.{name}");
            upstream.retry.validate(&format!("{base}.retry"))?;
            upstream.breaker.validate(&format!("{base}.breaker"))?;
            upstream.outlier.validate(&format!("{base}.outlier"))?;
            if let Some(check) = &upstream.health_check {
                check.validate(&format!("{base}.health_check"))?;
            }
            if upstream.max_concurrent == 0 {
                return Err(invalid(format!("{base}.max_concurrent"), "must be at least 1"));
            }
            if let Some(discovery) = &upstream.discovery {
                discovery.validate(&format!("{base}.discovery"))?;
            }
            let key = format!("upstreams.{name}.endpoints");
            if upstream.endpoints.is_empty() && upstream.discovery.is_none() {
                return Err(invalid(key, "needs at least one endpoint, or `discovery`"));
            }
            for endpoint in &upstream.endpoints {
                let uri: http::Uri = endpoint
                    .parse()
                    .map_err(|e| invalid(&key, format!("`{endpoint}` is not a URL: {e}")))?;
                if uri.scheme_str() != Some("http") || uri.authority().is_none() {
                    return Err(invalid(&key, format!("`{endpoint}` must be http://host:port")));
                }
                if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
                    return Err(invalid(&key, format!("`{endpoint}` must not have a path")));
                }
            }
        }
        for (i, route) in self.routes.iter().enumerate() {
            let key = format!("routes[{i}]");
            if !is_normal_path(&route.path) {
                return Err(invalid(
                    format!("{key}.path"),
                    format!(
                        "`{}` must be a normalised literal path prefix starting with `/` (no \
                         `//`, `.` or `..` segments, no `%`, `\\`, `?`, `#`, `{{}}` or `*`)",
                        route.path
                    ),
                ));
            }
            let path = route.normalised_path();
            if let Some(reserved) = RESERVED_PATHS.iter().find(|r| at_or_below(r, path)) {
                return Err(invalid(
                    format!("{key}.path"),
                    format!("`{reserved}` is reserved for the gateway's own endpoint"),
                ));
            }
            // Each pair is reported once, on the later route, naming the earlier one.
            for (j, earlier) in self.routes[..i].iter().enumerate() {
                let other = earlier.normalised_path();
                if other == path {
                    return Err(invalid(
                        format!("{key}.path"),
                        format!("`{}` duplicates routes[{j}].path", route.path),
                    ));
                }
                if overlaps(other, path) {
                    return Err(invalid(
                        format!("{key}.path"),
                        format!("`{}` overlaps routes[{j}].path (`{}`)", route.path, earlier.path),
                    ));
                }
            }
            match self.upstreams.get(&route.upstream) {
                None => {
                    return Err(invalid(
                        format!("{key}.upstream"),
                        format!("no upstream named `{}`", route.upstream),
                    ));
                }
                Some(u) if u.protocol != Protocol::Http => {
                    return Err(invalid(
                        format!("{key}.upstream"),
                        format!("`{}` is not an http upstream", route.upstream),
                    ));
                }
                Some(_) => {}
            }
            if let Some(rewrite) = &route.rewrite
                && !is_normal_path(rewrite)
            {
                return Err(invalid(
                    format!("{key}.rewrite"),
                    format!(
                        "`{rewrite}` must be a normalised literal path starting with `/` (no \
                         `//`, `.` or `..` segments, no `%`, `\\`, `?`, `#`, `{{}}` or `*`)"
                    ),
                ));
            }
            if let Some(access) = &route.access
                && crate::access::Access::from_config(access, &route.scopes).is_none()
            {
                return Err(invalid(
                    format!("{key}.access"),
                    format!("`{access}` is not one of public, authenticated, user, partner"),
                ));
            }
            if route.scopes.iter().any(|s| s.is_empty() || s.contains(char::is_whitespace)) {
                return Err(invalid(format!("{key}.scopes"), "scopes are non-empty words"));
            }
        }
        if let Some(auth) = &self.auth {
            auth.validate()?;
            self.limits.validate_against_auth(auth)?;
        }
        Ok(())
    }

    /// The effective call timeout of an upstream.
    pub fn upstream_timeout(&self, upstream: &UpstreamConfig) -> Duration {
        upstream.timeout.unwrap_or(self.defaults.upstream.timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
        [listen]
        public = "127.0.0.1:9000"

        [limits]
        max_body_bytes = 4096
        request_timeout = "3s"

        [defaults.upstream]
        timeout = "750ms"

        [upstreams.catalog]
        endpoints = ["http://127.0.0.1:7001"]
        timeout = "1s"

        [upstreams.inventory]
        protocol = "grpc"
        endpoints = ["http://127.0.0.1:7004"]

        [[routes]]
        path = "/api/catalog"
        upstream = "catalog"
        rewrite = "/"
    "#;

    #[test]
    fn parses_durations_defaults_and_overrides() {
        let config = GatewayConfig::from_toml(EXAMPLE).unwrap();
        assert_eq!(config.listen.public.port(), 9000);
        assert_eq!(config.limits.request_timeout, Duration::from_secs(3));
        // Unset keys keep their defaults.
        assert_eq!(config.limits.header_read_timeout, Duration::from_secs(10));
        let catalog = &config.upstreams["catalog"];
        assert_eq!(config.upstream_timeout(catalog), Duration::from_secs(1));
        let inventory = &config.upstreams["inventory"];
        assert_eq!(inventory.protocol, Protocol::Grpc);
        assert_eq!(config.upstream_timeout(inventory), Duration::from_millis(750));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = GatewayConfig::from_toml("[limits]\nmax_body = 10\n").unwrap_err();
        assert!(err.to_string().contains("max_body"), "{err}");
    }

    #[test]
    fn routes_must_name_an_existing_http_upstream() {
        let text = EXAMPLE.replace("upstream = \"catalog\"", "upstream = \"inventory\"");
        let err = GatewayConfig::from_toml(&text).unwrap_err();
        assert!(err.to_string().contains("routes[0].upstream"), "{err}");

        let text = EXAMPLE.replace("upstream = \"catalog\"", "upstream = \"nope\"");
        let err = GatewayConfig::from_toml(&text).unwrap_err();
        assert!(err.to_string().contains("no upstream named `nope`"), "{err}");
    }

    #[test]
    fn endpoints_are_checked() {
        for bad in ["\"localhost\"", "\"https://x:1\"", "\"http://x:1/base\""] {
            let text = EXAMPLE.replace("\"http://127.0.0.1:7001\"", bad);
            let err = GatewayConfig::from_toml(&text).unwrap_err();
            assert!(err.to_string().contains("upstreams.catalog.endpoints"), "{bad}: {err}");
        }
        let text = EXAMPLE.replace("[\"http://127.0.0.1:7001\"]", "[]");
        assert!(GatewayConfig::from_toml(&text).is_err());
    }

    #[test]
    fn upstream_policies_inherit_the_defaults_key_by_key() {
        let config = GatewayConfig::from_toml(
            r#"
            [defaults.upstream]
            balance = "round_robin"
            max_concurrent = 64
            [defaults.upstream.retry]
            attempts = 3
            budget_ratio = 0.1
            [defaults.upstream.breaker]
            open_for = "2s"

            [upstreams.a]
            endpoints = ["http://127.0.0.1:1"]

            [upstreams.b]
            endpoints = ["http://127.0.0.1:2"]
            balance = "consistent_hash"
            [upstreams.b.retry]
            attempts = 1
            [upstreams.b.hedge]
            delay = "p95"
            "#,
        )
        .unwrap();
        let (a, b) = (&config.upstreams["a"], &config.upstreams["b"]);
        assert_eq!((a.balance, a.max_concurrent, a.retry.attempts), (Balance::RoundRobin, 64, 3));
        assert_eq!(a.breaker.open_for, Duration::from_secs(2));
        assert_eq!(a.breaker.consecutive_failures, BreakerConfig::default().consecutive_failures);
        assert!(a.hedge.is_none());
        // b overrides one retry key and keeps the other default one.
        assert_eq!(
            (b.balance, b.retry.attempts, b.retry.budget_ratio),
            (Balance::ConsistentHash, 1, 0.1)
        );
        assert_eq!(b.hedge.as_ref().map(|h| h.delay), Some(policy::HedgeDelay::Percentile(95)));
    }

    #[test]
    fn bad_policies_are_named() {
        for (text, key) in [
            ("[upstreams.catalog.retry]\nattempts = 0\n", "upstreams.catalog.retry.attempts"),
            (
                "[upstreams.catalog.retry]\nbudget_ratio = 2.0\n",
                "upstreams.catalog.retry.budget_ratio",
            ),
            (
                "[upstreams.catalog.breaker]\nfailure_ratio = 0.0\n",
                "upstreams.catalog.breaker.failure_ratio",
            ),
            (
                "[upstreams.catalog.outlier]\nmax_ejected_share = 1.5\n",
                "upstreams.catalog.outlier.max_ejected_share",
            ),
            (
                "[upstreams.catalog.health_check]\npath = \"healthz\"\n",
                "upstreams.catalog.health_check.path",
            ),
        ] {
            let text = format!("{EXAMPLE}\n{text}");
            let err = GatewayConfig::from_toml(&text).unwrap_err();
            assert!(err.to_string().contains(key), "{key}: {err}");
        }
        let text = EXAMPLE.replace("timeout = \"1s\"", "timeout = \"1s\"\nmax_concurrent = 0");
        let err = GatewayConfig::from_toml(&text).unwrap_err();
        assert!(err.to_string().contains("upstreams.catalog.max_concurrent"), "{err}");
        let err = GatewayConfig::from_toml(&format!(
            "{EXAMPLE}\n[upstreams.catalog.hedge]\ndelay = \"p100\"\n"
        ))
        .unwrap_err();
        assert!(err.to_string().contains("p1 to p99"), "{err}");
    }

    /// The smallest `[auth]` section that validates; `max_token_bytes` is left to the caller.
    const AUTH: &str = r#"
        [auth]
        issuer = "http://127.0.0.1:7006"
        audience = "web"
        jwks_url = "http://127.0.0.1:7006/.well-known/jwks.json"
    "#;

    /// `EXAMPLE` with `routes` (TOML, `[[routes]]` tables) in place of its one route.
    fn with_routes(routes: &str) -> String {
        let (head, _) = EXAMPLE.split_once("[[routes]]").unwrap();
        format!("{head}\n{routes}")
    }

    fn route(path: &str) -> String {
        // A literal string, so that a backslash in `path` reaches the validation as written.
        format!("[[routes]]\npath = '{path}'\nupstream = \"catalog\"\n")
    }

    fn error_of(text: &str) -> String {
        GatewayConfig::from_toml(text).unwrap_err().to_string()
    }

    #[test]
    fn example_configs_in_the_repo_validate() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/config");
        let mut checked = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                GatewayConfig::from_file(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
                checked += 1;
            }
        }
        assert!(checked >= 3, "found only {checked} configs in {dir}");
    }

    #[test]
    fn trusted_proxies_are_networks_or_addresses() {
        assert!(GatewayConfig::default().listen.trusted_proxies.is_empty());
        assert!(!GatewayConfig::default().listen.is_trusted("127.0.0.1".parse().unwrap()));

        let text = EXAMPLE.replace(
            "public = \"127.0.0.1:9000\"",
            "public = \"127.0.0.1:9000\"\n\
             trusted_proxies = [\"10.0.0.0/8\", \"192.168.1.7\", \"::1/128\"]",
        );
        let listen = GatewayConfig::from_toml(&text).unwrap().listen;
        let shown: Vec<String> = listen.trusted_proxies.iter().map(Cidr::to_string).collect();
        assert_eq!(shown, ["10.0.0.0/8", "192.168.1.7/32", "::1/128"]);
        for (ip, trusted) in [
            ("10.20.30.40", true),
            ("::ffff:10.20.30.40", true),
            ("192.168.1.7", true),
            ("::ffff:192.168.1.7", true),
            ("192.168.1.8", false),
            ("::1", true),
            ("::2", false),
            ("11.0.0.1", false),
        ] {
            assert_eq!(listen.is_trusted(ip.parse().unwrap()), trusted, "{ip}");
        }
    }

    #[test]
    fn bad_trusted_proxies_are_named() {
        for bad in ["10.0.0.0/33", "::1/129", "proxy.internal", "10.0.0.0/x"] {
            let text = format!("[listen]\ntrusted_proxies = [\"{bad}\"]\n");
            let err = error_of(&text);
            assert!(err.contains("trusted_proxies") && err.contains(bad), "{bad}: {err}");
        }
        // Host bits are masked rather than refused.
        let config =
            GatewayConfig::from_toml("[listen]\ntrusted_proxies = [\"10.1.2.3/8\"]\n").unwrap();
        assert_eq!(config.listen.trusted_proxies[0].to_string(), "10.0.0.0/8");
    }

    #[test]
    fn head_limits_have_defaults_and_can_be_set() {
        let limits = GatewayConfig::from_toml(EXAMPLE).unwrap().limits;
        assert_eq!(
            (
                limits.max_request_line_bytes,
                limits.max_header_bytes,
                limits.max_head_bytes,
                limits.max_headers,
                limits.max_json_depth
            ),
            (8192, 16384, 32768, 100, 32)
        );
        let text = "[limits]\nmax_request_line_bytes = 4096\nmax_header_bytes = 4096\n\
                    max_head_bytes = 4096\nmax_headers = 128\nmax_json_depth = 128\n";
        let limits = GatewayConfig::from_toml(text).unwrap().limits;
        assert_eq!(
            (limits.max_head_bytes, limits.max_headers, limits.max_json_depth),
            (4096, 128, 128)
        );
    }

    #[test]
    fn bad_head_limits_are_named() {
        for key in [
            "max_request_line_bytes",
            "max_header_bytes",
            "max_head_bytes",
            "max_headers",
            "max_json_depth",
        ] {
            let err = error_of(&format!("[limits]\n{key} = 0\n"));
            assert!(
                err.contains(&format!("limits.{key}")) && err.contains("greater than 0"),
                "{err}"
            );
        }
        for (text, key, says) in [
            ("max_headers = 129", "limits.max_headers", "128"),
            ("max_json_depth = 129", "limits.max_json_depth", "128"),
            ("max_header_bytes = 40000", "limits.max_header_bytes", "limits.max_head_bytes"),
            ("max_request_line_bytes = 40000", "limits.max_request_line_bytes", "max_head_bytes"),
            (
                "max_head_bytes = 10000\nmax_header_bytes = 10001",
                "limits.max_header_bytes",
                "(10000)",
            ),
        ] {
            let err = error_of(&format!("[limits]\n{text}\n"));
            assert!(err.contains(key) && err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn a_header_field_must_hold_the_longest_bearer_token() {
        // `authorization` (13) + `Bearer ` (7) + the default 8192-byte token.
        let text = format!("[limits]\nmax_header_bytes = 8211\n{AUTH}");
        let err = error_of(&text);
        assert!(err.contains("`limits.max_header_bytes`"), "{err}");
        assert!(
            err.contains("auth.max_token_bytes (8192)") && err.contains("at least 8212"),
            "{err}"
        );
        GatewayConfig::from_toml(&format!("[limits]\nmax_header_bytes = 8212\n{AUTH}")).unwrap();

        // A smaller token limit lowers the minimum; without `[auth]` there is none.
        let text = format!("[limits]\nmax_header_bytes = 1000\n{AUTH}max_token_bytes = 980\n");
        GatewayConfig::from_toml(&text).unwrap();
        let text = format!("[limits]\nmax_header_bytes = 1000\n{AUTH}max_token_bytes = 981\n");
        assert!(error_of(&text).contains("at least 1001"));
        GatewayConfig::from_toml("[limits]\nmax_header_bytes = 100\n").unwrap();
    }

    #[test]
    fn forward_authorization_is_off_unless_set() {
        let config = GatewayConfig::from_toml(EXAMPLE).unwrap();
        assert!(!config.routes[0].forward_authorization);
        let text =
            EXAMPLE.replace("rewrite = \"/\"", "rewrite = \"/\"\nforward_authorization = true");
        assert!(GatewayConfig::from_toml(&text).unwrap().routes[0].forward_authorization);
    }

    #[test]
    fn duplicate_routes_are_refused_naming_both() {
        let text = with_routes(&format!(
            "{}{}{}",
            route("/api/catalog"),
            route("/other"),
            route("/api/catalog/")
        ));
        let err = error_of(&text);
        assert!(err.contains("`routes[2].path`"), "{err}");
        assert!(err.contains("`/api/catalog/` duplicates routes[0].path"), "{err}");
        let err = error_of(&with_routes(&format!("{}{}", route("/"), route("/"))));
        assert!(err.contains("`routes[1].path`") && err.contains("duplicates routes[0].path"));
    }

    #[test]
    fn overlapping_routes_are_refused_naming_both() {
        for (first, second) in
            [("/api", "/api/catalog"), ("/api/catalog", "/api"), ("/", "/api"), ("/api/", "/")]
        {
            let err = error_of(&with_routes(&format!("{}{}", route(first), route(second))));
            assert!(err.contains("`routes[1].path`"), "{first} {second}: {err}");
            assert!(
                err.contains(&format!("`{second}` overlaps routes[0].path (`{first}`)")),
                "{first} {second}: {err}"
            );
        }
        // Prefixes that share characters but not a whole segment own different paths.
        let text = with_routes(&format!("{}{}{}", route("/api"), route("/apix"), route("/ap")));
        GatewayConfig::from_toml(&text).unwrap();
    }

    #[test]
    fn route_paths_and_rewrites_must_be_normalised() {
        for bad in [
            "api",
            "",
            "//api",
            "/api//catalog",
            "/api/./catalog",
            "/api/..",
            "/.",
            "/api/%2e%2e",
            "/api\\catalog",
            "/api?x=1",
            "/api#top",
            "/api/{id}",
            "/api/*",
            "/api catalog",
        ] {
            let err = error_of(&with_routes(&route(bad)));
            assert!(
                err.contains("`routes[0].path`") && err.contains("normalised literal path prefix"),
                "{bad:?}: {err}"
            );
            let text = EXAMPLE.replace("rewrite = \"/\"", &format!("rewrite = {bad:?}"));
            let err = error_of(&text);
            assert!(
                err.contains("`routes[0].rewrite`") && err.contains("normalised"),
                "{bad:?}: {err}"
            );
        }
        for good in ["/", "/api/", "/v1/catalog", "/api/v1.2/x", "/.well-known-ish", "/a..b"] {
            GatewayConfig::from_toml(&with_routes(&route(good)))
                .unwrap_or_else(|e| panic!("{good}: {e}"));
            let text = EXAMPLE.replace("rewrite = \"/\"", &format!("rewrite = {good:?}"));
            GatewayConfig::from_toml(&text).unwrap_or_else(|e| panic!("rewrite {good}: {e}"));
        }
    }

    #[test]
    fn reserved_paths_are_not_routes() {
        for (path, reserved) in [
            ("/metrics", "/metrics"),
            ("/metrics/", "/metrics"),
            ("/metrics/x", "/metrics"),
            ("/healthz", "/healthz"),
            ("/readyz/deep", "/readyz"),
            ("/openapi.json", "/openapi.json"),
        ] {
            let err = error_of(&with_routes(&route(path)));
            assert!(err.contains("`routes[0].path`"), "{path}: {err}");
            assert!(
                err.contains(&format!("`{reserved}` is reserved for the gateway's own endpoint")),
                "{path}: {err}"
            );
        }
        // `/` is allowed (the gateway answers its own endpoints first), and so are neighbours.
        for path in ["/", "/metricsx", "/api/metrics", "/openapi.jsonx"] {
            GatewayConfig::from_toml(&with_routes(&route(path)))
                .unwrap_or_else(|e| panic!("{path}: {e}"));
        }
    }

    #[test]
    fn bad_durations_are_errors() {
        let err = GatewayConfig::from_toml("[limits]\nrequest_timeout = \"soon\"\n").unwrap_err();
        assert!(err.to_string().contains("request_timeout"), "{err}");
    }
}
