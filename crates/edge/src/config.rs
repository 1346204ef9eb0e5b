//! The gateway configuration model: listeners, limits, named upstreams and declarative
//! pass-through routes, read from TOML.
//!
//! Policy lives here and code stays in the gateways: where upstreams are, how long calls may
//! take and which paths pass straight through are all configuration. Every struct is strict
//! (`deny_unknown_fields`), so a typo is an error that names the key rather than a silently
//! ignored setting, and every default lives in a `Default` impl.

use std::{collections::BTreeMap, net::SocketAddr, path::Path, time::Duration};

use serde::Deserialize;

use crate::upstream::policy::{
    self, Balance, BreakerConfig, HealthCheckConfig, HedgeConfig, OutlierConfig, RetryConfig,
};

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
}

/// Listener addresses.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ListenConfig {
    /// The client-facing address.
    pub public: SocketAddr,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self { public: SocketAddr::from(([127, 0, 0, 1], 8080)) }
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
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            request_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
        }
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
        if self.limits.max_body_bytes == 0 {
            return Err(invalid("limits.max_body_bytes", "must be greater than 0"));
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
            if !route.path.starts_with('/') || route.path.contains(['{', '}', '*']) {
                return Err(invalid(
                    format!("{key}.path"),
                    format!("`{}` must be a literal path prefix starting with `/`", route.path),
                ));
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
            if route.rewrite.as_deref().is_some_and(|r| !r.starts_with('/')) {
                return Err(invalid(format!("{key}.rewrite"), "must start with `/`"));
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

    #[test]
    fn bad_durations_are_errors() {
        let err = GatewayConfig::from_toml("[limits]\nrequest_timeout = \"soon\"\n").unwrap_err();
        assert!(err.to_string().contains("request_timeout"), "{err}");
    }
}
