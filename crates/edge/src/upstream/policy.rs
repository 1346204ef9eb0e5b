//! How a named upstream is called when things go wrong: the configuration of load balancing,
//! the concurrency limit, retries and their budget, circuit breakers, outlier ejection, hedging
//! and active health checks.
//!
//! Every table can be set once under `[defaults.upstream]` and overridden per upstream; an
//! upstream's table is merged key by key over the default one (see
//! [`crate::config::GatewayConfig::from_toml`]), so `[upstreams.x.retry] attempts = 1` changes
//! one key and keeps the rest.

use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

use crate::config::ConfigError;

/// The keys of an upstream table that inherit from `[defaults.upstream]`, merged key by key.
pub(crate) const INHERITED: [&str; 9] = [
    "timeout",
    "connect_timeout",
    "balance",
    "max_concurrent",
    "retry",
    "breaker",
    "outlier",
    "hedge",
    "health_check",
];

/// How calls are spread over an upstream's endpoints.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each endpoint in turn.
    RoundRobin,
    /// Power of two choices: of two endpoints picked at random, the one with fewer calls in
    /// flight. Close to the best choice at the cost of two reads, and it steers away from a
    /// slow endpoint (its calls pile up) without any latency bookkeeping.
    #[default]
    LeastRequest,
    /// Rendezvous hashing on the call's key (the request path unless the caller gives one):
    /// the same key goes to the same endpoint, and only the keys of an endpoint that leaves
    /// move when the set changes.
    ConsistentHash,
}

/// Retries of failed calls.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts per call, the first included; 1 turns retries (and hedging) off.
    pub attempts: u32,
    /// Retries may add at most this share of the calls as extra load (a token bucket that
    /// earns this much per call and spends 1 per retry), so retries cannot multiply an outage.
    pub budget_ratio: f64,
    /// Retries allowed per second whatever the traffic, so a quiet upstream can still retry.
    pub min_per_second: u32,
    /// The first backoff; each retry doubles it, with full jitter.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    /// The longest backoff.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            attempts: 2,
            budget_ratio: 0.2,
            min_per_second: 10,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(200),
        }
    }
}

/// The circuit breaker of each endpoint.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Opens after this many failures in a row.
    pub consecutive_failures: u32,
    /// …or when this share of the calls in `window` failed,
    pub failure_ratio: f64,
    /// …once the window holds at least this many calls.
    pub min_calls: u32,
    /// The window the failure ratio is measured over.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How long an open breaker fails calls fast before it lets probes through.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
    /// Calls let through while half-open; all must succeed to close, one failure reopens.
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_ratio: 0.5,
            min_calls: 20,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(5),
            half_open_probes: 2,
        }
    }
}

/// Passive outlier ejection: an endpoint that keeps failing is taken out of the pool for a
/// while, longer each time.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OutlierConfig {
    /// Ejects after this many 5xx answers or transport failures in a row.
    pub consecutive_failures: u32,
    /// The first ejection's length; the n-th lasts n times as long.
    #[serde(with = "humantime_serde")]
    pub base_ejection: Duration,
    /// The longest ejection.
    #[serde(with = "humantime_serde")]
    pub max_ejection: Duration,
    /// At most this share of the endpoints is ejected at once (rounded down), so a pool-wide
    /// problem is left to the breakers instead of emptying the pool.
    pub max_ejected_share: f64,
}

impl Default for OutlierConfig {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(300),
            max_ejected_share: 0.5,
        }
    }
}

/// Hedging of idempotent reads: when the first attempt is slow, a second one goes to another
/// endpoint and the first good answer wins.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HedgeConfig {
    /// When the second attempt starts: a duration (`"50ms"`) or a percentile of the upstream's
    /// recent latencies (`"p95"`).
    pub delay: HedgeDelay,
    /// The shortest delay when it is a percentile (before there are enough samples too).
    #[serde(default = "default_min_hedge_delay", with = "humantime_serde")]
    pub min_delay: Duration,
}

fn default_min_hedge_delay() -> Duration {
    Duration::from_millis(10)
}

/// See [`HedgeConfig::delay`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum HedgeDelay {
    /// A fixed delay.
    Fixed(Duration),
    /// A percentile (1–99) of recent successful call latencies.
    Percentile(u8),
}

impl<'de> Deserialize<'de> for HedgeDelay {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if let Some(p) = text.strip_prefix('p') {
            return match p.parse::<u8>() {
                Ok(p @ 1..=99) => Ok(Self::Percentile(p)),
                _ => Err(de::Error::custom(format!("`{text}`: a percentile is p1 to p99"))),
            };
        }
        humantime::parse_duration(&text)
            .map(Self::Fixed)
            .map_err(|e| de::Error::custom(format!("`{text}`: {e} (or a percentile like \"p95\")")))
    }
}

/// Active health checks: a GET to each endpoint on an interval; an endpoint that fails them is
/// left out of the pool until it passes again (unless every endpoint fails them: then the
/// checks are ignored rather than refusing all traffic).
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HealthCheckConfig {
    /// The path checked; any 2xx passes.
    pub path: String,
    /// Time between checks.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// A check slower than this fails.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Failed checks in a row that mark an endpoint unhealthy.
    pub unhealthy_after: u32,
    /// Passed checks in a row that mark it healthy again.
    pub healthy_after: u32,
}

impl Default for HealthCheckConfig {
    fn default() -> Self {
        Self {
            path: "/healthz".into(),
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(1),
            unhealthy_after: 2,
            healthy_after: 1,
        }
    }
}

/// The default concurrency limit: calls in flight to one upstream (per worker) beyond it are
/// refused at once with 503 rather than queued.
pub(crate) const DEFAULT_MAX_CONCURRENT: usize = 1024;

pub(crate) fn default_max_concurrent() -> usize {
    DEFAULT_MAX_CONCURRENT
}

// === validation ===

fn invalid(key: String, message: &str) -> ConfigError {
    ConfigError::Invalid { key, message: message.into() }
}

fn share(key: String, value: f64) -> Result<(), ConfigError> {
    if (0.0..=1.0).contains(&value) { Ok(()) } else { Err(invalid(key, "must be from 0 to 1")) }
}

fn positive(key: String, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() { Err(invalid(key, "must be longer than 0s")) } else { Ok(()) }
}

impl RetryConfig {
    pub(crate) fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if self.attempts == 0 || self.attempts > 10 {
            return Err(invalid(format!("{key}.attempts"), "must be from 1 to 10"));
        }
        share(format!("{key}.budget_ratio"), self.budget_ratio)?;
        positive(format!("{key}.backoff"), self.backoff)?;
        if self.max_backoff < self.backoff {
            return Err(invalid(format!("{key}.max_backoff"), "must not be shorter than backoff"));
        }
        Ok(())
    }
}

impl BreakerConfig {
    pub(crate) fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if self.consecutive_failures == 0 {
            return Err(invalid(format!("{key}.consecutive_failures"), "must be at least 1"));
        }
        if self.half_open_probes == 0 {
            return Err(invalid(format!("{key}.half_open_probes"), "must be at least 1"));
        }
        if !(self.failure_ratio > 0.0 && self.failure_ratio <= 1.0) {
            return Err(invalid(format!("{key}.failure_ratio"), "must be above 0 and at most 1"));
        }
        positive(format!("{key}.window"), self.window)?;
        positive(format!("{key}.open_for"), self.open_for)
    }
}

impl OutlierConfig {
    pub(crate) fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if self.consecutive_failures == 0 {
            return Err(invalid(format!("{key}.consecutive_failures"), "must be at least 1"));
        }
        share(format!("{key}.max_ejected_share"), self.max_ejected_share)?;
        positive(format!("{key}.base_ejection"), self.base_ejection)?;
        if self.max_ejection < self.base_ejection {
            return Err(invalid(
                format!("{key}.max_ejection"),
                "must not be shorter than base_ejection",
            ));
        }
        Ok(())
    }
}

impl HealthCheckConfig {
    pub(crate) fn validate(&self, key: &str) -> Result<(), ConfigError> {
        if !self.path.starts_with('/') {
            return Err(invalid(format!("{key}.path"), "must start with `/`"));
        }
        positive(format!("{key}.interval"), self.interval)?;
        positive(format!("{key}.timeout"), self.timeout)?;
        if self.unhealthy_after == 0 || self.healthy_after == 0 {
            return Err(invalid(format!("{key}.unhealthy_after"), "counts must be at least 1"));
        }
        Ok(())
    }
}
