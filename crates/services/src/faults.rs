//! Injected faults — latency, errors, outages — for any sample service, so the gateways'
//! timeouts, retries, circuit breakers and partial responses have something real to handle.
//!
//! Latency and errors are a tower layer ([`FaultLayer`]) around a service's whole router: the
//! same layer serves the HTTP services (a 503 problem+json answer) and the gRPC inventory
//! service (an `UNAVAILABLE` status), because both are `http::Request → http::Response`
//! services underneath. Outages (`down`, `hang`) cannot be answers, so [`crate::Services`]
//! enacts them at the listener instead.
//!
//! The textual form is the one `portico up --fault` takes: `SERVICE=SPEC[,SPEC…]`, e.g.
//! `recommendations=latency:300ms,errors:50%` or `reviews=down` ([`parse_fault`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::http::{Request, Response, StatusCode};
use axum::response::IntoResponse;
use futures::future::BoxFuture;
use tower::{Layer, Service};

use crate::data::{mix, unit};
use crate::problem::Problem;

/// The sample services by name, in their port order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ServiceName {
    Catalog,
    Reviews,
    Recommendations,
    Inventory,
    Orders,
    Identity,
}

impl ServiceName {
    /// Every service, in port order (`Ports::default()` gives them 7001…7006).
    pub const ALL: [ServiceName; 6] = [
        Self::Catalog,
        Self::Reviews,
        Self::Recommendations,
        Self::Inventory,
        Self::Orders,
        Self::Identity,
    ];

    /// The name used on the command line, in configs and in logs.
    pub fn name(self) -> &'static str {
        match self {
            Self::Catalog => "catalog",
            Self::Reviews => "reviews",
            Self::Recommendations => "recommendations",
            Self::Inventory => "inventory",
            Self::Orders => "orders",
            Self::Identity => "identity",
        }
    }
}

impl fmt::Display for ServiceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ServiceName {
    type Err = ParseFaultError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|service| service.name() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|s| s.name()).collect();
            ParseFaultError(format!("unknown service `{s}`; one of {}", names.join(", ")))
        })
    }
}

/// Injected latency and failures of one service. `Faults::default()` injects nothing.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Faults {
    /// Added to every call before it is answered, failing calls included.
    pub latency: Duration,
    /// Share of calls (0.0..=1.0) answered with 503 (HTTP) or `UNAVAILABLE` (gRPC).
    pub error_rate: f64,
    /// The service does not answer at all; latency and errors then do not apply.
    pub outage: Option<Outage>,
}

/// How a service is out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outage {
    /// Nothing listens: connections are refused, as when a process has crashed.
    Down,
    /// Connections are accepted and never answered, as when a process is wedged: only a
    /// client's own deadline gets it out.
    Hang,
}

impl Faults {
    /// Whether these faults change anything: without any, the service runs without the layer.
    pub fn is_none(&self) -> bool {
        self.latency.is_zero() && self.error_rate <= 0.0 && self.outage.is_none()
    }
}

/// The spec form, `latency:300ms,errors:50%`, `down` or `hang` (`none` when nothing is injected),
/// so the start-up banner shows what a user typed.
impl fmt::Display for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.outage {
            Some(Outage::Down) => return f.write_str("down"),
            Some(Outage::Hang) => return f.write_str("hang"),
            None => {}
        }
        let mut parts = Vec::new();
        if !self.latency.is_zero() {
            parts.push(format!("latency:{}", humantime::format_duration(self.latency)));
        }
        if self.error_rate > 0.0 {
            // Rounded so 0.07 shows as 7%, not 7.000000000000001%.
            let percent = (self.error_rate * 1e6).round() / 1e4;
            parts.push(format!("errors:{percent}%"));
        }
        if parts.is_empty() {
            return f.write_str("none");
        }
        f.write_str(&parts.join(","))
    }
}

// === parsing ===

/// What a fault spec may contain, appended to every parse error so the user sees the choices.
const ALLOWED: &str = "allowed: latency:DURATION (e.g. latency:300ms), errors:N% (0-100, \
                       e.g. errors:50%), down, hang; several joined by commas";

/// A fault spec that does not parse; the message names the bad part and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseFaultError(String);

impl ParseFaultError {
    fn spec(message: impl fmt::Display) -> Self {
        Self(format!("{message}; {ALLOWED}"))
    }
}

/// `latency:300ms,errors:50%`, `down` or `hang`: one service's faults.
impl FromStr for Faults {
    type Err = ParseFaultError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut faults = Faults::default();
        let (mut latency, mut errors) = (false, false);
        for part in s.split(',') {
            let part = part.trim();
            let (kind, value) = match part.split_once(':') {
                Some((kind, value)) => (kind, Some(value)),
                None => (part, None),
            };
            match (kind, value) {
                ("", None) => {
                    return Err(ParseFaultError::spec(format!("empty fault in `{s}`")));
                }
                ("latency", Some(value)) if !latency => {
                    latency = true;
                    faults.latency = humantime::parse_duration(value).map_err(|e| {
                        ParseFaultError::spec(format!(
                            "`{part}`: `{value}` is not a duration ({e}); write e.g. 300ms or 2s"
                        ))
                    })?;
                }
                ("errors", Some(value)) if !errors => {
                    errors = true;
                    faults.error_rate = percent(value).ok_or_else(|| {
                        ParseFaultError::spec(format!(
                            "`{part}`: `{value}` is not a percentage from 0% to 100%"
                        ))
                    })?;
                }
                ("down", None) | ("hang", None) if faults.outage.is_none() => {
                    faults.outage = Some(if kind == "down" { Outage::Down } else { Outage::Hang });
                }
                ("latency" | "errors", Some(_)) | ("down" | "hang", None) => {
                    return Err(ParseFaultError::spec(format!(
                        "`{kind}` given twice or with another outage in `{s}`"
                    )));
                }
                ("latency" | "errors", None) => {
                    return Err(ParseFaultError::spec(format!(
                        "`{part}` needs a value after a colon"
                    )));
                }
                ("down" | "hang", Some(_)) => {
                    return Err(ParseFaultError::spec(format!("`{part}` takes no value")));
                }
                _ => return Err(ParseFaultError::spec(format!("unknown fault `{part}`"))),
            }
        }
        // A service that is out answers nothing, so a latency or error rate beside it would
        // be silently ignored: say so instead.
        if faults.outage.is_some() && (latency || errors) {
            return Err(ParseFaultError::spec(format!(
                "`{s}`: down and hang stand alone (an outage has no latency or error rate)"
            )));
        }
        Ok(faults)
    }
}

/// `50%` → 0.5; `None` outside 0–100 % or without the `%`.
fn percent(value: &str) -> Option<f64> {
    let number: f64 = value.strip_suffix('%')?.trim().parse().ok()?;
    (0.0..=100.0).contains(&number).then_some(number / 100.0)
}

/// `SERVICE=SPEC[,SPEC…]`, e.g. `recommendations=latency:300ms,errors:50%` or `reviews=down`.
pub fn parse_fault(s: &str) -> Result<(ServiceName, Faults), ParseFaultError> {
    let Some((service, spec)) = s.split_once('=') else {
        return Err(ParseFaultError(format!(
            "`{s}` has no `=`: write SERVICE=SPEC, e.g. recommendations=latency:300ms,errors:50%"
        )));
    };
    Ok((service.trim().parse()?, spec.parse()?))
}

/// Gathers `SERVICE=SPEC` pairs into one map; a service named twice is an error, since which
/// of its two specs should win is not obvious.
pub fn collect_faults(
    pairs: impl IntoIterator<Item = (ServiceName, Faults)>,
) -> Result<BTreeMap<ServiceName, Faults>, ParseFaultError> {
    let mut map = BTreeMap::new();
    for (service, faults) in pairs {
        if map.insert(service, faults).is_some() {
            return Err(ParseFaultError(format!(
                "faults for `{service}` given twice; put them in one spec, e.g. \
                 {service}=latency:200ms,errors:10%"
            )));
        }
    }
    Ok(map)
}

// === the layer ===

/// Salt for the failure rolls, so they do not correlate with other uses of `mix`.
const FAILURES: u64 = 0x4641_494c;

/// What every clone of one service's layer shares: the faults and the call counter.
#[derive(Debug)]
struct Shared {
    service: ServiceName,
    faults: Faults,
    /// Counts calls; each call's failure roll is derived from its number, so a given error rate
    /// fails the same calls on every run (and a 50 % rate fails exactly the same half).
    calls: AtomicU64,
}

impl Shared {
    /// Whether the next call fails.
    fn roll(&self) -> bool {
        let call = self.calls.fetch_add(1, Ordering::Relaxed);
        unit(mix(call ^ FAILURES)) < self.faults.error_rate
    }
}

/// Adds latency and fails a share of calls; see the module docs.
pub struct FaultLayer<B> {
    shared: Arc<Shared>,
    /// The service's own way of saying "unavailable": problem+json or a gRPC status.
    reject: fn(ServiceName) -> Response<B>,
}

impl<B> FaultLayer<B> {
    fn new(service: ServiceName, faults: Faults, reject: fn(ServiceName) -> Response<B>) -> Self {
        Self { shared: Arc::new(Shared { service, faults, calls: AtomicU64::new(0) }), reject }
    }
}

/// For an HTTP service: failing calls get 503 `unavailable` as problem+json.
pub fn http_layer(service: ServiceName, faults: Faults) -> FaultLayer<axum::body::Body> {
    FaultLayer::new(service, faults, |service| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{service} is temporarily unavailable (injected fault)"),
        )
        .into_response()
    })
}

/// For the gRPC inventory service: failing calls get status `UNAVAILABLE`.
pub fn grpc_layer(service: ServiceName, faults: Faults) -> FaultLayer<tonic::body::Body> {
    FaultLayer::new(service, faults, |service| {
        tonic::Status::unavailable(format!("{service} is temporarily unavailable (injected fault)"))
            .into_http()
    })
}

// Written out rather than derived: a derive would demand `B: Clone` / `B: Debug`, which the
// layer does not hold a `B` to need.
impl<B> Clone for FaultLayer<B> {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared), reject: self.reject }
    }
}

impl<B> fmt::Debug for FaultLayer<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultLayer").field("shared", &self.shared).finish_non_exhaustive()
    }
}

impl<S, B> Layer<S> for FaultLayer<B> {
    type Service = Fault<S, B>;

    fn layer(&self, inner: S) -> Self::Service {
        Fault { inner, layer: self.clone() }
    }
}

// === impl Fault ===

/// The service [`FaultLayer`] builds.
pub struct Fault<S, B> {
    inner: S,
    layer: FaultLayer<B>,
}

impl<S: Clone, B> Clone for Fault<S, B> {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), layer: self.layer.clone() }
    }
}

impl<S, B> fmt::Debug for Fault<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fault").field("layer", &self.layer).finish_non_exhaustive()
    }
}

impl<S, ReqB, B> Service<Request<ReqB>> for Fault<S, B>
where
    S: Service<Request<ReqB>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqB: Send + 'static,
    B: Send + 'static,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<B>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqB>) -> Self::Future {
        // The roll happens in arrival order, before the delay, so concurrent calls with the
        // same arrival order fail the same way on every run.
        let fails = self.layer.shared.roll();
        let latency = self.layer.shared.faults.latency;
        let (service, reject) = (self.layer.shared.service, self.layer.reject);
        // The clone that was made ready is the one to call (tower's usual swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            // The latency is the fault being demonstrated, so every call pays it, failing
            // ones too.
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            if fails {
                return Ok(reject(service));
            }
            inner.call(request).await
        })
    }
}

#[cfg(test)]
mod tests;
