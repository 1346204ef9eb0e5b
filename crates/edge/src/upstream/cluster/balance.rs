//! The balancer: which endpoint of a [`Cluster`] an attempt goes to. Round robin, the
//! power of two choices by requests in flight (least request), or rendezvous hashing on the
//! call's key (consistent hash); then the first endpoint in that order that is not ejected,
//! failing health checks, already tried, or behind an open breaker.

use std::{
    hash::{Hash, Hasher},
    sync::{Arc, atomic::Ordering},
};

use tokio::time::Instant;

use super::{Attempt, Cluster, Endpoint};
use crate::upstream::{breaker::Admit, policy::Balance};

/// Why no endpoint could be picked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Every endpoint's breaker is open.
    CircuitOpen,
    /// The upstream has no endpoints (discovery has found none yet).
    NoEndpoint,
}

// === impl Cluster ===

impl Cluster {
    /// Chooses an endpoint for an attempt, avoiding those in `tried` while others are left.
    pub(super) fn pick(&self, key: &str, tried: &[Arc<Endpoint>]) -> Result<Attempt, Refusal> {
        let set = self.endpoints.load();
        if set.is_empty() {
            return Err(Refusal::NoEndpoint);
        }
        let now = Instant::now();
        // When every endpoint fails its health checks, the checks are more likely wrong than
        // every instance: route as if there were none.
        let use_checks =
            self.policy.health_check.is_some() && set.iter().any(|e| e.lock().checked_healthy);
        // One endpoint (the common case) needs no ordering, nor its allocation.
        let ordered;
        let order: &[usize] = if set.len() == 1 {
            &[0]
        } else {
            ordered = self.order(&set, key);
            &ordered
        };
        let mut saw_open = false;
        for pass in 0..3 {
            for &i in order {
                let endpoint = &set[i];
                if pass == 0 && tried.iter().any(|t| Arc::ptr_eq(t, endpoint)) {
                    continue;
                }
                let mut health = endpoint.lock();
                if pass < 2
                    && (health.outlier.is_ejected(now) || use_checks && !health.checked_healthy)
                {
                    continue;
                }
                let was = health.breaker.state();
                let admitted = health.breaker.admit(&self.policy.breaker, now);
                let state = health.breaker.state();
                drop(health);
                if state != was {
                    endpoint.breaker_state.set(state.gauge());
                    tracing::info!(upstream = %self.name, endpoint = endpoint.authority(), from = was.as_str(), to = state.as_str(), "circuit breaker half-open: probing");
                }
                if admitted == Admit::No {
                    saw_open = true;
                    continue;
                }
                let counted = set.len() > 1;
                if counted {
                    endpoint.active.fetch_add(1, Ordering::Relaxed);
                }
                return Ok(Attempt {
                    endpoint: endpoint.clone(),
                    admitted,
                    started: now,
                    recorded: false,
                    counted,
                });
            }
        }
        debug_assert!(saw_open, "only an open breaker refuses on the last pass");
        Err(Refusal::CircuitOpen)
    }

    /// Endpoint indexes in the order the balancer prefers them.
    fn order(&self, set: &[Arc<Endpoint>], key: &str) -> Vec<usize> {
        let n = set.len();
        match self.policy.balance {
            Balance::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n).map(|i| (start + i) % n).collect()
            }
            Balance::LeastRequest => {
                let mut order: Vec<usize> = (0..n).collect();
                if n > 1 {
                    // Two distinct random choices; the less busy goes first, the other second,
                    // the rest (in a random rotation) only if both are unavailable.
                    let a = fastrand::usize(..n);
                    let b = (a + 1 + fastrand::usize(..n - 1)) % n;
                    let load = |i: usize| set[i].active.load(Ordering::Relaxed);
                    let (first, second) = if load(b) < load(a) { (b, a) } else { (a, b) };
                    order.retain(|&i| i != first && i != second);
                    if !order.is_empty() {
                        let turn = fastrand::usize(..order.len());
                        order.rotate_left(turn);
                    }
                    order.insert(0, second);
                    order.insert(0, first);
                }
                order
            }
            Balance::ConsistentHash => {
                let mut scored: Vec<(u64, usize)> =
                    set.iter().enumerate().map(|(i, e)| (rendezvous(key, &e.url), i)).collect();
                scored.sort_unstable_by(|a, b| b.cmp(a));
                scored.into_iter().map(|(_, i)| i).collect()
            }
        }
    }
}

/// The rendezvous (highest random weight) score of `endpoint` for `key`.
fn rendezvous(key: &str, endpoint: &str) -> u64 {
    // SipHash with fixed keys: the same key maps to the same endpoint in every process.
    let mut hasher = std::hash::DefaultHasher::new();
    key.hash(&mut hasher);
    endpoint.hash(&mut hasher);
    hasher.finish()
}
