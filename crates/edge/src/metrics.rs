//! Metrics: recorded through the `metrics` facade, so any recorder can take them, and served in
//! Prometheus text format at `/metrics` by every gateway.
//!
//! One Prometheus recorder is installed per process, the first time a gateway is built; the
//! gateways of `portico up` share it and tell their series apart by the `gateway` label.

use std::{net::SocketAddr, sync::OnceLock, time::Duration};

use axum::{
    extract::{ConnectInfo, Request},
    http::header,
    response::{IntoResponse, Response},
};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::{
    access::{Access, Routes},
    error::EdgeError,
};

/// Requests refused by authentication or authorisation, by gateway and reason.
pub const AUTH_FAILURES: &str = "portico_auth_failures_total";
/// Requests refused by a rate limit, by gateway and limit (`burst`, `day`, `auth_failures`).
pub const RATE_LIMITED: &str = "portico_rate_limited_total";

/// Client header fields the edge dropped, by gateway and `reason` (`underscore`).
pub const HEADERS_DROPPED: &str = "portico_headers_dropped_total";

/// Access-log lines dropped because the log's writer could not keep up.
pub const ACCESS_LOG_DROPPED: &str = "portico_access_log_dropped_total";

/// Client connections open, by gateway.
pub const CONNECTIONS_OPEN: &str = "portico_connections_open";

/// Client connections closed at accept because the gateway was at `limits.max_connections`,
/// by gateway.
pub const CONNECTIONS_REFUSED: &str = "portico_connections_refused_total";

/// Calls (attempts) sent to an upstream, by gateway and upstream.
pub const UPSTREAM_REQUESTS: &str = "portico_upstream_requests_total";
/// Failed upstream calls by `kind`: connect, reset, timeout, status_5xx (answers), and the
/// calls refused without being sent: circuit_open, overloaded, no_endpoint.
pub const UPSTREAM_ERRORS: &str = "portico_upstream_errors_total";
/// Upstream attempt latency, from the pick to the response head (or the failure).
pub const UPSTREAM_DURATION: &str = "portico_upstream_request_duration_seconds";
/// Retries granted by the retry budget.
pub const UPSTREAM_RETRIES: &str = "portico_upstream_retries_total";
/// Hedged second attempts started.
pub const UPSTREAM_HEDGES: &str = "portico_upstream_hedges_total";
/// Retries (and hedges) not made because the budget was spent.
pub const UPSTREAM_BUDGET_EXHAUSTED: &str = "portico_upstream_retry_budget_exhausted_total";
/// Endpoints currently known (static, or from discovery).
pub const UPSTREAM_ENDPOINTS: &str = "portico_upstream_endpoints";
/// Each endpoint's circuit breaker: 0 closed, 1 half-open, 2 open.
pub const UPSTREAM_BREAKER_STATE: &str = "portico_upstream_breaker_state";
/// Outlier ejections of each endpoint.
pub const UPSTREAM_EJECTIONS: &str = "portico_upstream_ejections_total";

/// Latency buckets (seconds) for upstream calls: from sub-millisecond loopback answers to
/// multi-second timeouts.
const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The process's Prometheus handle, installing the recorder on first use. `None` when another
/// recorder was installed first (an embedding application's): its metrics go there instead.
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Buckets make the latency a Prometheus histogram (aggregatable across
            // instances) instead of a per-process summary.
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(UPSTREAM_DURATION.into()), &LATENCY_BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    keep_up(handle.clone());
                    metrics::describe_counter!(
                        AUTH_FAILURES,
                        "Requests refused by authentication or authorisation, by reason"
                    );
                    metrics::describe_counter!(
                        RATE_LIMITED,
                        "Requests refused by a rate limit, by limit (burst, day, route, auth_failures)"
                    );
                    metrics::describe_counter!(
                        RATE_LIMIT_ADMITTED,
                        "Requests a rate limit admitted, by limit (plan, route)"
                    );
                    metrics::describe_counter!(
                        RATE_LIMIT_STORE_ERRORS,
                        "Plan checks the shared store could not make, by outcome (open, closed)"
                    );
                    describe_upstream_metrics();
                    describe_cache_metrics();
                    Some(handle)
                }
                Err(_) => {
                    tracing::info!("a metrics recorder is already installed; /metrics is empty");
                    None
                }
            }
        })
        .as_ref()
}

/// How often histogram samples are folded into their series between scrapes (the exporter's
/// own default when it runs its upkeep itself).
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Folds the recorder's histogram samples into their series every [`UPKEEP_EVERY`], on a
/// thread of its own for the life of the process. A recorder built with `build_recorder`
/// leaves this to its owner: without it every sample since the last scrape is kept — about
/// 20 bytes a relayed request, without bound where nothing scrapes `/metrics` (measured: RSS
/// +4 MB per 230,000 requests), and a long pause for the scrape that finally drains them.
fn keep_up(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new().name("portico-metrics".into()).spawn(move || {
        loop {
            std::thread::sleep(UPKEEP_EVERY);
            handle.run_upkeep();
        }
    });
    if let Err(error) = spawned {
        tracing::warn!(%error, "no metrics upkeep thread: histograms drain only when scraped");
    }
}

/// The `/metrics` route. It shares the client-facing port, so it answers loopback peers only
/// (a scraper on the same host or in the same pod); to anyone else it does not exist (404), and
/// partners — who must authenticate everywhere else — learn nothing from it.
pub fn routes() -> Routes {
    // Install now, so series recorded before the first scrape are kept.
    let _ = handle();
    Routes::new().get("/metrics", Access::public(), render)
}

async fn render(request: Request) -> Response {
    // No peer address means an in-process call (tests, `oneshot`), never a network client:
    // the server always records the peer.
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>();
    if peer.is_some_and(|ConnectInfo(peer)| !peer.ip().to_canonical().is_loopback()) {
        return EdgeError::no_route().into_response();
    }
    let body = handle().map(PrometheusHandle::render).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

/// Counts one request refused by auth.
pub fn auth_failure(gateway: &'static str, reason: &'static str) {
    metrics::counter!(AUTH_FAILURES, "gateway" => gateway, "reason" => reason).increment(1);
}

/// Plan checks the shared store could not make, by what the plan did instead (`open`: limited
/// locally, `closed`: refused).
pub const RATE_LIMIT_STORE_ERRORS: &str = "portico_rate_limit_store_errors_total";

/// Counts a plan check the shared store could not make.
pub(crate) fn rate_limit_store_error(gateway: &'static str, outcome: &'static str) {
    metrics::counter!(RATE_LIMIT_STORE_ERRORS, "gateway" => gateway, "outcome" => outcome)
        .increment(1);
}

/// Counts a request refused by the rate limit `limit`.
pub(crate) fn throttled(gateway: &'static str, limit: &'static str) {
    metrics::counter!(RATE_LIMITED, "gateway" => gateway, "limit" => limit).increment(1);
}

/// Requests a rate limit admitted, by gateway and limit (`plan`, `route`): with
/// [`RATE_LIMITED`], every decision by limit and outcome.
pub const RATE_LIMIT_ADMITTED: &str = "portico_rate_limit_admitted_total";

/// Counts a request the limit `limit` admitted.
pub(crate) fn admitted(gateway: &'static str, limit: &'static str) {
    metrics::counter!(RATE_LIMIT_ADMITTED, "gateway" => gateway, "limit" => limit).increment(1);
}

/// Cached-route requests by gateway, route and outcome (`hit`, `miss`, `coalesced`, `stale`,
/// `stale_if_error`, `uncacheable`).
pub const CACHE_REQUESTS: &str = "portico_cache_requests_total";
/// Entries the in-process tier evicted to stay within its bound.
pub const CACHE_EVICTIONS: &str = "portico_cache_evictions_total";
/// Entries purged from the in-process tier.
pub const CACHE_PURGED: &str = "portico_cache_purged_total";
/// Bytes held by the in-process tier.
pub const CACHE_BYTES: &str = "portico_cache_bytes";
/// Bytes written to the Redis tier.
pub const CACHE_REDIS_BYTES: &str = "portico_cache_redis_written_bytes_total";
/// Redis tier operations that failed or were skipped (the local tier served alone), by op.
pub const CACHE_STORE_ERRORS: &str = "portico_cache_store_errors_total";

pub(crate) fn cache_evicted() {
    metrics::counter!(CACHE_EVICTIONS).increment(1);
}

pub(crate) fn cache_purged(entries: usize) {
    metrics::counter!(CACHE_PURGED).increment(entries as u64);
}

pub(crate) fn cache_bytes(bytes: u64) {
    metrics::gauge!(CACHE_BYTES, "tier" => "memory").set(bytes as f64);
}

pub(crate) fn cache_redis_bytes(bytes: u64) {
    metrics::counter!(CACHE_REDIS_BYTES).increment(bytes);
}

pub(crate) fn cache_store_error(op: &'static str) {
    metrics::counter!(CACHE_STORE_ERRORS, "op" => op).increment(1);
}

fn describe_cache_metrics() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(CACHE_REQUESTS, "Requests on cached routes, by route and outcome");
    describe_counter!(CACHE_EVICTIONS, "Entries evicted from the in-process tier by its bound");
    describe_counter!(CACHE_PURGED, "Entries purged from the in-process tier");
    describe_gauge!(CACHE_BYTES, "Bytes held by the in-process cache tier");
    describe_counter!(CACHE_REDIS_BYTES, "Bytes written to the Redis cache tier");
    describe_counter!(CACHE_STORE_ERRORS, "Redis cache-tier operations that failed, by op");
}

fn describe_upstream_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(UPSTREAM_REQUESTS, "Calls (attempts) sent to an upstream");
    describe_counter!(UPSTREAM_ERRORS, "Failed or refused upstream calls, by kind");
    describe_histogram!(
        UPSTREAM_DURATION,
        metrics::Unit::Seconds,
        "Upstream attempt latency to the response head"
    );
    describe_counter!(UPSTREAM_RETRIES, "Retries granted by the retry budget");
    describe_counter!(UPSTREAM_HEDGES, "Hedged second attempts started");
    describe_counter!(UPSTREAM_BUDGET_EXHAUSTED, "Retries not made: the retry budget was spent");
    describe_gauge!(UPSTREAM_ENDPOINTS, "Endpoints known for the upstream");
    describe_gauge!(UPSTREAM_BREAKER_STATE, "Circuit breaker: 0 closed, 1 half-open, 2 open");
    describe_counter!(UPSTREAM_EJECTIONS, "Outlier ejections of an endpoint");
}
