//! What a [`Cluster`](super::Cluster) measures: the per-upstream metric handles, and the
//! window of recent latencies that a percentile hedge delay is read from.

use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};

use crate::metrics as names;

/// Per-upstream metric handles, registered once so a call only bumps atomics.
pub(super) struct Stats {
    pub(super) requests: Counter,
    pub(super) errors: [Counter; 7],
    pub(super) duration: Histogram,
    pub(super) retries: Counter,
    pub(super) hedges: Counter,
    pub(super) budget_exhausted: Counter,
    pub(super) endpoints: Gauge,
}

/// The `kind` labels of the error metric, in `Stats::errors` order.
const ERROR_KINDS: [&str; 7] =
    ["connect", "reset", "timeout", "status_5xx", "circuit_open", "overloaded", "no_endpoint"];

// === impl Stats ===

impl Stats {
    pub(super) fn new(gateway: &'static str, upstream: &str) -> Self {
        let labels = [("gateway", gateway.to_owned()), ("upstream", upstream.to_owned())];
        let error = |kind: &'static str| {
            let mut labels = labels.to_vec();
            labels.push(("kind", kind.to_owned()));
            metrics::counter!(names::UPSTREAM_ERRORS, &labels)
        };
        Self {
            requests: metrics::counter!(names::UPSTREAM_REQUESTS, &labels),
            errors: ERROR_KINDS.map(error),
            duration: metrics::histogram!(names::UPSTREAM_DURATION, &labels),
            retries: metrics::counter!(names::UPSTREAM_RETRIES, &labels),
            hedges: metrics::counter!(names::UPSTREAM_HEDGES, &labels),
            budget_exhausted: metrics::counter!(names::UPSTREAM_BUDGET_EXHAUSTED, &labels),
            endpoints: metrics::gauge!(names::UPSTREAM_ENDPOINTS, &labels),
        }
    }

    pub(super) fn error(&self, kind: &str) {
        if let Some(i) = ERROR_KINDS.iter().position(|k| *k == kind) {
            self.errors[i].increment(1);
        }
    }
}

/// The last successful latencies, for a percentile hedge delay.
#[derive(Debug, Default)]
pub(super) struct Latencies {
    micros: Vec<u32>,
    next: usize,
}

// === impl Latencies ===

impl Latencies {
    const KEPT: usize = 256;
    /// Fewer samples than this say too little about a tail.
    const ENOUGH: usize = 20;

    pub(super) fn push(&mut self, latency: Duration) {
        let micros = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        if self.micros.len() < Self::KEPT {
            self.micros.push(micros);
        } else {
            self.micros[self.next] = micros;
        }
        self.next = (self.next + 1) % Self::KEPT;
    }

    pub(super) fn percentile(&self, p: u8) -> Option<Duration> {
        if self.micros.len() < Self::ENOUGH {
            return None;
        }
        let mut sorted = self.micros.clone();
        let rank = (sorted.len() * usize::from(p)).div_ceil(100).saturating_sub(1);
        let (_, nth, _) = sorted.select_nth_unstable(rank);
        Some(Duration::from_micros(u64::from(*nth)))
    }
}
