//! One named upstream's endpoints and the policies that protect them: the concurrency limit,
//! load balancing, per-endpoint circuit breakers and outlier ejection, retries within a budget,
//! hedging, and the per-upstream metrics. Every protocol (HTTP calls, pass-through, the relay,
//! gRPC) goes through the same [`Cluster`], so an endpoint that fails composed calls is also
//! avoided by pass-through traffic.
//!
//! A call runs as a series of attempts under one deadline (see [`crate::deadline`]):
//!
//! 1. admission — over `max_concurrent` calls in flight, 503 at once (no queue to wait in);
//! 2. a pick — the balancer's choice among endpoints neither ejected, failing health checks,
//!    nor behind an open breaker; none left is a fast 503 without a call;
//! 3. the attempt, cut at the deadline; its outcome feeds the endpoint's breaker and outlier
//!    record and the metrics;
//! 4. for an idempotent call that failed in a retryable way (connect error, reset, 502, 503):
//!    a retry on another endpoint after a jittered backoff, if the budget has a token and the
//!    backoff ends before the deadline. A hedged read also starts a second attempt when the
//!    first is slow, and the first good answer wins.
//!
//! The balancer's choice of endpoint lives in [`balance`]; the metric handles and the latency
//! window behind a percentile hedge delay live in [`stats`]. Other modules run attempts only
//! through [`Cluster::call`]: admission, picks, outcome records and retries are private to
//! this module.

mod balance;
mod stats;

use std::{
    fmt,
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use arc_swap::ArcSwap;
use futures::{StreamExt, stream::FuturesUnordered};
use metrics::{Counter, Gauge};
use tokio::time::{Instant, Sleep};

use self::{
    balance::Refusal,
    stats::{Latencies, Stats},
};
use crate::{
    config::UpstreamConfig,
    error::EdgeError,
    metrics as names,
    upstream::{
        breaker::{Admit, Breaker, Outlier, State},
        budget::RetryBudget,
        policy::{
            Balance, BreakerConfig, HealthCheckConfig, HedgeConfig, HedgeDelay, OutlierConfig,
            RetryConfig,
        },
    },
};

/// How an attempt failed, for breakers, retries and the `kind` label of the error metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Failure {
    /// No connection could be opened: nothing was sent.
    Connect,
    /// The connection broke before a response head arrived.
    Reset,
    /// No answer before the deadline.
    Timeout,
    /// The upstream answered with this 5xx status.
    Status(u16),
}

// === impl Failure ===

impl Failure {
    /// Whether another attempt may succeed where this one failed: the request never reached
    /// the service (connect), or the service said it could not take it (502, 503). A 500 or a
    /// timeout will most likely repeat, and a timeout has spent the time anyway.
    pub(crate) fn is_retryable(self) -> bool {
        matches!(self, Self::Connect | Self::Reset | Self::Status(502 | 503))
    }

    fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Reset => "reset",
            Self::Timeout => "timeout",
            Self::Status(_) => "status_5xx",
        }
    }
}

/// An attempt that failed without an answer to pass on.
#[derive(Debug)]
pub(crate) struct AttemptError {
    /// How the endpoint failed; `None` when it did not (the request itself could not be sent,
    /// e.g. the client's body broke the size limit): not retried, not held against it.
    pub(crate) failure: Option<Failure>,
    pub(crate) error: EdgeError,
}

/// An answer that may still be a failure for the endpoint's record (a 5xx response).
pub(crate) trait Classify {
    fn failure(&self) -> Option<Failure>;
}

impl<B> Classify for http::Response<B> {
    fn failure(&self) -> Option<Failure> {
        let status = self.status();
        status.is_server_error().then_some(Failure::Status(status.as_u16()))
    }
}

/// What the cluster needs to know about one call.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Call<'a> {
    /// Whether repeating it is safe (the method is idempotent and the body can be re-sent).
    pub(crate) idempotent: bool,
    /// Whether it is a read that may be hedged.
    pub(crate) read: bool,
    /// The consistent-hashing key.
    pub(crate) key: &'a str,
    /// When the caller stops waiting.
    pub(crate) deadline: Instant,
}

/// One endpoint: where it is, its calls in flight, and its health record.
pub(crate) struct Endpoint {
    url: Arc<str>,
    authority: Box<str>,
    /// `host: <authority>` CRLF, as the HTTP/1.1 relay writes it on every request.
    host_line: Box<[u8]>,
    active: AtomicUsize,
    health: Mutex<Health>,
    breaker_state: Gauge,
    ejections: Counter,
}

#[derive(Debug)]
struct Health {
    breaker: Breaker,
    outlier: Outlier,
    /// Active health checks: whether it passes, and the current streak of the other verdict.
    checked_healthy: bool,
    check_streak: u32,
}

// === impl Endpoint ===

impl Endpoint {
    /// The base URL, e.g. `http://127.0.0.1:7001`.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }

    /// `host:port`.
    pub(crate) fn authority(&self) -> &str {
        &self.authority
    }

    /// `host: <authority>` CRLF: the `Host` line of an HTTP/1.1 request to it.
    pub(crate) fn host_line(&self) -> &[u8] {
        &self.host_line
    }

    /// Its circuit breaker's state.
    #[cfg(test)]
    pub(crate) fn breaker_state(&self) -> State {
        self.lock().breaker.state()
    }

    /// Whether its circuit breaker is closed.
    #[cfg(test)]
    pub(crate) fn breaker_closed(&self) -> bool {
        self.breaker_state() == State::Closed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("url", &self.url)
            .field("active", &self.active.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The resolved policies of one upstream.
#[derive(Clone, Debug)]
pub(crate) struct Policy {
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) balance: Balance,
    pub(crate) max_concurrent: usize,
    pub(crate) retry: RetryConfig,
    pub(crate) breaker: BreakerConfig,
    pub(crate) outlier: OutlierConfig,
    pub(crate) hedge: Option<HedgeConfig>,
    pub(crate) health_check: Option<HealthCheckConfig>,
}

// === impl Policy ===

impl Policy {
    pub(crate) fn from_config(upstream: &UpstreamConfig, config: &crate::GatewayConfig) -> Self {
        let defaults = &config.defaults.upstream;
        Self {
            timeout: config.upstream_timeout(upstream),
            connect_timeout: upstream.connect_timeout.unwrap_or(defaults.connect_timeout),
            balance: upstream.balance,
            max_concurrent: upstream.max_concurrent,
            retry: upstream.retry.clone(),
            breaker: upstream.breaker.clone(),
            outlier: upstream.outlier.clone(),
            hedge: upstream.hedge.clone(),
            health_check: upstream.health_check.clone(),
        }
    }
}

/// Holds one of the upstream's concurrency slots for the length of a call.
struct Permit<'a>(&'a AtomicUsize);

// === impl Permit ===

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// An attempt's claim on its endpoint: counted as active (for least-request) until dropped,
/// and a half-open probe slot that is handed back if the attempt ends without a verdict.
struct Attempt {
    endpoint: Arc<Endpoint>,
    admitted: Admit,
    started: Instant,
    recorded: bool,
    /// Whether it counts in the endpoint's `active` calls (only balancing among several
    /// endpoints reads them).
    counted: bool,
}

// === impl Attempt ===

impl Drop for Attempt {
    fn drop(&mut self) {
        if self.counted {
            self.endpoint.active.fetch_sub(1, Ordering::Relaxed);
        }
        if !self.recorded {
            self.endpoint.lock().breaker.release(self.admitted);
        }
    }
}

/// A named upstream's endpoints and the state that protects them.
pub(crate) struct Cluster {
    name: Arc<str>,
    gateway: &'static str,
    policy: Policy,
    /// Read on every call by every worker: an `ArcSwap` reads without writing shared memory,
    /// where a lock and an `Arc` clone per call made the workers' cores pass the lock's and
    /// the count's cache lines back and forth.
    endpoints: ArcSwap<Vec<Arc<Endpoint>>>,
    /// Bumped whenever the endpoint set changes, so transports that keep connections per
    /// endpoint can let go of those to endpoints that left.
    generation: AtomicUsize,
    next: AtomicUsize,
    in_flight: AtomicUsize,
    budget: RetryBudget,
    /// Recent successful latencies in microseconds, kept only for a percentile hedge delay.
    latencies: Option<Mutex<Latencies>>,
    stats: Stats,
}

// === impl Cluster ===

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .field("endpoints", &self.snapshot())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Cluster {
    pub(crate) fn new(
        gateway: &'static str,
        name: &str,
        policy: Policy,
        urls: &[String],
    ) -> Arc<Self> {
        let latencies =
            matches!(policy.hedge, Some(HedgeConfig { delay: HedgeDelay::Percentile(_), .. }))
                .then(|| Mutex::new(Latencies::default()));
        let cluster = Arc::new(Self {
            name: name.into(),
            gateway,
            budget: RetryBudget::new(&policy.retry),
            policy,
            endpoints: ArcSwap::from_pointee(Vec::new()),
            generation: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
            latencies,
            stats: Stats::new(gateway, name),
        });
        cluster.set_endpoints(urls);
        cluster
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The current endpoints.
    pub(crate) fn snapshot(&self) -> Arc<Vec<Arc<Endpoint>>> {
        self.endpoints.load_full()
    }

    /// Replaces the endpoint set (discovery). Endpoints that stay keep their breaker and
    /// outlier record (and their transports' connections, which are keyed by address); base URLs are normalised without a trailing `/`.
    /// How many times the endpoint set has changed.
    pub(crate) fn generation(&self) -> usize {
        self.generation.load(Ordering::Acquire)
    }

    fn set_endpoints(&self, urls: &[String]) {
        let current = self.snapshot();
        let mut next: Vec<Arc<Endpoint>> = Vec::with_capacity(urls.len());
        for url in urls {
            let url = url.trim_end_matches('/');
            if next.iter().any(|e| &*e.url == url) {
                continue;
            }
            let endpoint = current
                .iter()
                .find(|e| &*e.url == url)
                .cloned()
                .unwrap_or_else(|| Arc::new(self.endpoint(url)));
            next.push(endpoint);
        }
        let added: Vec<&str> = next
            .iter()
            .filter(|e| !current.iter().any(|c| c.url == e.url))
            .map(|e| e.url())
            .collect();
        let removed: Vec<&str> = current
            .iter()
            .filter(|c| !next.iter().any(|e| e.url == c.url))
            .map(|e| e.url())
            .collect();
        if !current.is_empty() && (!added.is_empty() || !removed.is_empty()) {
            tracing::info!(upstream = %self.name, ?added, ?removed, "upstream endpoints changed");
        }
        #[allow(clippy::cast_precision_loss)] // endpoint counts are small
        self.stats.endpoints.set(next.len() as f64);
        self.endpoints.store(Arc::new(next));
        self.generation.fetch_add(1, Ordering::Release);
    }

    fn endpoint(&self, url: &str) -> Endpoint {
        let authority = url.strip_prefix("http://").unwrap_or(url);
        let labels = [
            ("gateway", self.gateway.to_owned()),
            ("upstream", self.name.to_string()),
            ("endpoint", authority.to_owned()),
        ];
        let now = Instant::now();
        Endpoint {
            url: url.into(),
            authority: authority.into(),
            host_line: format!("host: {authority}\r\n").into_bytes().into(),
            active: AtomicUsize::new(0),
            health: Mutex::new(Health {
                breaker: Breaker::new(&self.policy.breaker, now),
                outlier: Outlier::default(),
                checked_healthy: true,
                check_streak: 0,
            }),
            breaker_state: metrics::gauge!(names::UPSTREAM_BREAKER_STATE, &labels),
            ejections: metrics::counter!(names::UPSTREAM_EJECTIONS, &labels),
        }
    }

    /// Keeps the endpoint set up to date from `discovery` in a task on the current runtime; the
    /// task ends when the cluster is dropped.
    pub(crate) fn discover(
        self: &Arc<Self>,
        discovery: &crate::upstream::discovery::DiscoveryConfig,
    ) -> Result<(), crate::config::ConfigError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(crate::config::ConfigError::Invalid {
                key: format!("upstreams.{}.discovery", self.name),
                message: "discovery runs on a Tokio runtime: build the gateway inside one".into(),
            });
        }
        let cluster = Arc::downgrade(self);
        crate::upstream::discovery::spawn(self.name.to_string(), discovery.clone(), move |urls| {
            cluster.upgrade().map(|cluster| cluster.set_endpoints(&urls)).is_some()
        });
        Ok(())
    }

    /// Takes a concurrency slot, or refuses the call (counted) when all are taken.
    fn admit(&self) -> Result<Permit<'_>, EdgeError> {
        let before = self.in_flight.fetch_add(1, Ordering::Relaxed);
        let permit = Permit(&self.in_flight);
        if before >= self.policy.max_concurrent {
            self.stats.error("overloaded");
            return Err(EdgeError::upstream_overloaded(&self.name));
        }
        self.budget.deposit();
        Ok(permit)
    }

    /// Records an attempt's outcome on its endpoint: breaker, outlier ejection, metrics.
    fn record(&self, attempt: &mut Attempt, failure: Option<Failure>) {
        attempt.recorded = true;
        let endpoint = &attempt.endpoint;
        let now = Instant::now();
        self.stats.duration.record(now.saturating_duration_since(attempt.started).as_secs_f64());
        if let Some(failure) = failure {
            self.stats.error(failure.label());
        }
        let failed = failure.is_some();
        let mut health = endpoint.lock();
        let changed = health.breaker.record(&self.policy.breaker, now, attempt.admitted, failed);
        let wants_ejection = health.outlier.record(&self.policy.outlier, now, failed);
        drop(health);
        if let Some(state) = changed {
            endpoint.breaker_state.set(state.gauge());
            match state {
                State::Open => {
                    let open_for = self.policy.breaker.open_for;
                    tracing::warn!(
                        upstream = %self.name,
                        endpoint = endpoint.authority(),
                        ?open_for,
                        last_failure = ?failure,
                        "circuit breaker opened"
                    );
                }
                _ => {
                    tracing::info!(
                        upstream = %self.name,
                        endpoint = endpoint.authority(),
                        state = state.as_str(),
                        "circuit breaker closed"
                    );
                }
            }
        }
        if wants_ejection {
            self.eject(endpoint, now);
        }
    }

    /// Ejects `endpoint` unless that would put more than the allowed share of the pool out.
    fn eject(&self, endpoint: &Arc<Endpoint>, now: Instant) {
        let set = self.snapshot();
        let ejected = set.iter().filter(|e| e.lock().outlier.is_ejected(now)).count();
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let allowed = (set.len() as f64 * self.policy.outlier.max_ejected_share).floor() as usize;
        if ejected >= allowed {
            tracing::debug!(upstream = %self.name, endpoint = endpoint.authority(), ejected, allowed, "not ejected: the pool is at its ejection limit");
            return;
        }
        let length = endpoint.lock().outlier.eject(&self.policy.outlier, now);
        endpoint.ejections.increment(1);
        tracing::warn!(upstream = %self.name, endpoint = endpoint.authority(), ejected_for = ?length, "endpoint ejected after consecutive failures");
    }

    /// Records an active health check's verdict; returns whether the endpoint's state changed.
    pub(crate) fn health_checked(&self, endpoint: &Endpoint, passed: bool) -> bool {
        let Some(config) = &self.policy.health_check else { return false };
        let mut health = endpoint.lock();
        if health.checked_healthy == passed {
            health.check_streak = 0;
            return false;
        }
        health.check_streak += 1;
        let needed = if passed { config.healthy_after } else { config.unhealthy_after };
        if health.check_streak < needed {
            return false;
        }
        health.checked_healthy = passed;
        health.check_streak = 0;
        drop(health);
        if passed {
            tracing::info!(upstream = %self.name, endpoint = endpoint.authority(), "endpoint passes health checks again");
        } else {
            tracing::warn!(upstream = %self.name, endpoint = endpoint.authority(), "endpoint fails health checks: left out of the pool");
        }
        true
    }

    /// The error a refused pick becomes (counted).
    fn refused(&self, refusal: Refusal) -> EdgeError {
        match refusal {
            Refusal::CircuitOpen => self.stats.error("circuit_open"),
            Refusal::NoEndpoint => self.stats.error("no_endpoint"),
        }
        EdgeError::upstream_circuit_open(&self.name, self.policy.breaker.open_for)
    }

    /// Counts an attempt being sent.
    fn sent(&self) {
        self.stats.requests.increment(1);
    }

    /// Takes a retry from the budget (counted either way).
    fn may_retry(&self) -> bool {
        let granted = self.budget.withdraw();
        if granted {
            self.stats.retries.increment(1);
        } else {
            self.stats.budget_exhausted.increment(1);
        }
        granted
    }

    /// The jittered backoff before retry number `retry` (1-based): uniformly random up to the
    /// exponential bound ("full jitter"), so retries of many calls do not arrive together.
    fn backoff(&self, retry: u32) -> Duration {
        let config = &self.policy.retry;
        let bound = config
            .backoff
            .saturating_mul(1 << retry.saturating_sub(1).min(16))
            .min(config.max_backoff);
        bound.mul_f64(fastrand::f64())
    }

    /// The hedge delay for this upstream now, if hedging is on.
    fn hedge_delay(&self) -> Option<Duration> {
        let hedge = self.policy.hedge.as_ref()?;
        Some(match hedge.delay {
            HedgeDelay::Fixed(delay) => delay,
            HedgeDelay::Percentile(p) => self
                .latencies
                .as_ref()
                .and_then(|l| {
                    l.lock().unwrap_or_else(std::sync::PoisonError::into_inner).percentile(p)
                })
                .unwrap_or(hedge.min_delay)
                .max(hedge.min_delay),
        })
    }

    fn observe_success(&self, attempt: &Attempt) {
        if let Some(latencies) = &self.latencies {
            latencies
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(attempt.started.elapsed());
        }
    }

    /// Runs one call: attempts built by `attempt` for the endpoint picked, under the policies
    /// described in the module docs. Returns the first good answer; when every attempt failed,
    /// the last answer (a 5xx response is still an answer the caller may pass on) or error.
    pub(crate) async fn call<T, F, Fut>(&self, call: Call<'_>, attempt: F) -> Result<T, EdgeError>
    where
        T: Classify,
        F: FnMut(&Arc<Endpoint>, Instant) -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        self.run(call, None, attempt).await.map_err(|e| e.error)
    }

    /// [`Cluster::call`] timed by `timer`, a timer the caller keeps from one call to the next
    /// (the relay keeps one per connection). Re-arming a pending timer to a later deadline is
    /// an atomic store in Tokio, where a fresh timeout per call registers an entry in the timer
    /// wheel and cancels it again; on a keep-alive connection the timer fires once per
    /// timeout, not once per request (`bench/instructions`).
    pub(crate) async fn call_timed<T, F, Fut>(
        &self,
        call: Call<'_>,
        timer: Pin<&mut Sleep>,
        attempt: F,
    ) -> Result<T, EdgeError>
    where
        T: Classify,
        F: FnMut(&Arc<Endpoint>, Instant) -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        self.run(call, Some(timer), attempt).await.map_err(|e| e.error)
    }

    /// Puts an attempt's outcome on its endpoint's record (breaker, outlier, metrics) and
    /// says whether the call goes on: `None` when `result` ends it — a success, or a failure
    /// of the request itself (a client's broken body, one that could not be built), which
    /// gives no verdict on the endpoint and drops the claim — else how the endpoint failed.
    fn settle<T: Classify>(
        &self,
        claim: &mut Attempt,
        result: &Result<T, AttemptError>,
    ) -> Option<Failure> {
        let failure = match result {
            Ok(answer) => answer.failure(),
            Err(e) => Some(e.failure?),
        };
        self.record(claim, failure);
        if failure.is_none() {
            self.observe_success(claim);
        }
        failure
    }

    /// An attempt that ran out of time.
    fn timed_out(&self) -> AttemptError {
        AttemptError {
            failure: Some(Failure::Timeout),
            error: EdgeError::upstream_timeout(&self.name),
        }
    }

    /// The attempts of a call that is not hedged, one at a time: the same rules as the hedged
    /// loop in [`Cluster::run`] without a set of attempts in flight to keep — the common case,
    /// and the hot path of every pass-through request.
    async fn run_sequential<T, F, Fut>(
        &self,
        call: Call<'_>,
        mut timer: Option<Pin<&mut Sleep>>,
        mut attempt: F,
        max_attempts: u32,
    ) -> Result<T, AttemptError>
    where
        T: Classify,
        F: FnMut(&Arc<Endpoint>, Instant) -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        let deadline = call.deadline;
        // Endpoints already tried, avoided by the next pick; empty (no allocation) until a retry.
        let mut tried: Vec<Arc<Endpoint>> = Vec::new();
        let mut last: Option<Result<T, AttemptError>> = None;
        loop {
            let mut claim = match self.pick(call.key, &tried) {
                Ok(claim) => claim,
                Err(refusal) => {
                    let error = self.refused(refusal);
                    // A retry with nowhere to go: the failure it would have replaced stands.
                    return last.unwrap_or(Err(AttemptError { failure: None, error }));
                }
            };
            self.sent();
            // Each attempt's future is built where it is awaited: one built before and moved
            // in would be stored twice in this function's state, and copied.
            let result = match timer.as_mut() {
                Some(timer) => {
                    timer.as_mut().reset(deadline);
                    tokio::select! {
                        biased;
                        output = attempt(&claim.endpoint, deadline) => Some(output),
                        () = timer.as_mut() => None,
                    }
                }
                None => {
                    tokio::time::timeout_at(deadline, attempt(&claim.endpoint, deadline)).await.ok()
                }
            }
            .unwrap_or_else(|| Err(self.timed_out()));
            let Some(failure) = self.settle(&mut claim, &result) else {
                return result;
            };
            let attempts = u32::try_from(tried.len() + 1).unwrap_or(u32::MAX);
            if !(failure.is_retryable() && attempts < max_attempts && self.may_retry()) {
                return result;
            }
            let at = Instant::now() + self.backoff(attempts);
            // A retry that could not finish in time only adds load.
            if at >= deadline {
                return result;
            }
            tried.push(claim.endpoint.clone());
            drop(claim);
            last = Some(result);
            tokio::time::sleep_until(at).await;
        }
    }

    async fn run<T, F, Fut>(
        &self,
        call: Call<'_>,
        timer: Option<Pin<&mut Sleep>>,
        mut attempt: F,
    ) -> Result<T, AttemptError>
    where
        T: Classify,
        F: FnMut(&Arc<Endpoint>, Instant) -> Fut,
        Fut: Future<Output = Result<T, AttemptError>>,
    {
        let _permit = self.admit().map_err(|error| AttemptError { failure: None, error })?;
        let deadline = call.deadline;
        let max_attempts = if call.idempotent { self.policy.retry.attempts } else { 1 };
        let mut hedge_at = (call.read && max_attempts > 1)
            .then(|| self.hedge_delay())
            .flatten()
            .map(|delay| Instant::now() + delay)
            .filter(|at| *at < deadline);
        if hedge_at.is_none() {
            return self.run_sequential(call, timer, attempt, max_attempts).await;
        }
        let mut tried: Vec<Arc<Endpoint>> = Vec::new();
        let mut running = FuturesUnordered::new();
        let mut retry_at: Option<Instant> = None;
        let mut last: Option<Result<T, AttemptError>> = None;
        let mut launch = |tried: &mut Vec<Arc<Endpoint>>| -> Result<_, Refusal> {
            let claim = self.pick(call.key, tried)?;
            tried.push(claim.endpoint.clone());
            self.sent();
            let future = attempt(&claim.endpoint, deadline);
            Ok(async move {
                let result = tokio::time::timeout_at(deadline, future).await;
                (claim, result)
            })
        };
        match launch(&mut tried) {
            Ok(first) => running.push(first),
            Err(refusal) => {
                return Err(AttemptError { failure: None, error: self.refused(refusal) });
            }
        }
        loop {
            let timer = match (hedge_at.filter(|_| running.len() == 1), retry_at) {
                (Some(h), Some(r)) => Some(h.min(r)),
                (h, r) => h.or(r),
            };
            tokio::select! {
                Some((mut claim, result)) = running.next() => {
                    let result = result.unwrap_or_else(|_elapsed| Err(self.timed_out()));
                    let Some(failure) = self.settle(&mut claim, &result) else {
                        return result;
                    };
                    last = Some(result);
                    let attempts = u32::try_from(tried.len()).unwrap_or(u32::MAX);
                    if failure.is_retryable() && attempts < max_attempts && retry_at.is_none() && self.may_retry() {
                        let at = Instant::now() + self.backoff(attempts);
                        // A retry that could not finish in time only adds load.
                        if at < deadline {
                            retry_at = Some(at);
                        }
                    }
                }
                () = tokio::time::sleep_until(timer.unwrap_or(deadline)), if timer.is_some() => {
                    let now = Instant::now();
                    let attempts = u32::try_from(tried.len()).unwrap_or(u32::MAX);
                    if retry_at.is_some_and(|r| r <= now) {
                        retry_at = None;
                    } else {
                        // The first attempt is slow: hedge, if the budget allows.
                        hedge_at = None;
                        if attempts >= max_attempts || !self.may_retry() {
                            continue;
                        }
                        self.stats.hedges.increment(1);
                    }
                    match launch(&mut tried) {
                        Ok(next) => running.push(next),
                        Err(refusal) => { self.refused(refusal); }
                    }
                }
            }
            if running.is_empty() && retry_at.is_none() {
                return last.unwrap_or_else(|| {
                    Err(AttemptError {
                        failure: None,
                        error: EdgeError::upstream_timeout(&self.name),
                    })
                });
            }
        }
    }
}
