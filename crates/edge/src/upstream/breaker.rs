//! The per-endpoint state machines: the circuit breaker (closed → open → half-open) and passive
//! outlier ejection. Both are plain data driven by the cluster with the current time, so they
//! are tested without sockets or clocks.

use std::time::Duration;

use tokio::time::Instant;

use super::policy::{BreakerConfig, OutlierConfig};

/// A breaker's state, as exported in metrics (`0` closed, `1` half-open, `2` open).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum State {
    Closed,
    HalfOpen,
    Open,
}

impl State {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::HalfOpen => "half_open",
            Self::Open => "open",
        }
    }

    pub(crate) fn gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::HalfOpen => 1.0,
            Self::Open => 2.0,
        }
    }
}

/// Whether a call may go to the endpoint now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// The breaker is closed.
    Yes,
    /// The breaker is half-open and this call is one of its probes.
    Probe,
    /// The breaker is open (or its probes are all out): fail fast.
    No,
}

/// Calls and failures over the breaker's window, in ten buckets so old calls age out smoothly.
#[derive(Debug)]
struct Window {
    buckets: [(u32, u32); 10],
    head: usize,
    head_started: Instant,
    bucket: Duration,
}

impl Window {
    fn new(window: Duration, now: Instant) -> Self {
        Self { buckets: [(0, 0); 10], head: 0, head_started: now, bucket: window / 10 }
    }

    fn rotate(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.head_started);
        if elapsed >= self.bucket * 10 {
            self.reset(now);
            return;
        }
        while now.saturating_duration_since(self.head_started) >= self.bucket {
            self.head = (self.head + 1) % self.buckets.len();
            self.buckets[self.head] = (0, 0);
            self.head_started += self.bucket;
        }
    }

    fn reset(&mut self, now: Instant) {
        self.buckets = [(0, 0); 10];
        self.head_started = now;
    }

    fn add(&mut self, now: Instant, failed: bool) -> (u32, u32) {
        self.rotate(now);
        let bucket = &mut self.buckets[self.head];
        bucket.0 += 1;
        bucket.1 += u32::from(failed);
        self.buckets.iter().fold((0, 0), |(c, f), (bc, bf)| (c + bc, f + bf))
    }
}

/// One endpoint's circuit breaker.
#[derive(Debug)]
pub(crate) struct Breaker {
    state: Inner,
    consecutive: u32,
    window: Window,
}

#[derive(Debug)]
enum Inner {
    Closed,
    Open { until: Instant },
    HalfOpen { out: u32, passed: u32 },
}

impl Breaker {
    pub(crate) fn new(config: &BreakerConfig, now: Instant) -> Self {
        Self { state: Inner::Closed, consecutive: 0, window: Window::new(config.window, now) }
    }

    pub(crate) fn state(&self) -> State {
        match self.state {
            Inner::Closed => State::Closed,
            Inner::Open { .. } => State::Open,
            Inner::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// Whether a call may go now. An open breaker whose wait is over turns half-open here, and
    /// hands out at most `half_open_probes` probes until they have decided.
    pub(crate) fn admit(&mut self, config: &BreakerConfig, now: Instant) -> Admit {
        match &mut self.state {
            Inner::Closed => Admit::Yes,
            Inner::Open { until } if now < *until => Admit::No,
            Inner::Open { .. } => {
                self.state = Inner::HalfOpen { out: 1, passed: 0 };
                Admit::Probe
            }
            Inner::HalfOpen { out, passed } if *out + *passed < config.half_open_probes => {
                *out += 1;
                Admit::Probe
            }
            Inner::HalfOpen { .. } => Admit::No,
        }
    }

    /// Records a call's result; returns the new state when it changed.
    pub(crate) fn record(
        &mut self,
        config: &BreakerConfig,
        now: Instant,
        admitted: Admit,
        failed: bool,
    ) -> Option<State> {
        match (&mut self.state, admitted) {
            (Inner::HalfOpen { out, passed }, Admit::Probe) => {
                *out = out.saturating_sub(1);
                if failed {
                    self.state = Inner::Open { until: now + config.open_for };
                    return Some(State::Open);
                }
                *passed += 1;
                if *passed >= config.half_open_probes {
                    self.state = Inner::Closed;
                    self.consecutive = 0;
                    self.window.reset(now);
                    return Some(State::Closed);
                }
                None
            }
            (Inner::Closed, _) => {
                self.consecutive = if failed { self.consecutive + 1 } else { 0 };
                let (calls, failures) = self.window.add(now, failed);
                let ratio_tripped = calls >= config.min_calls.max(1)
                    && f64::from(failures) >= config.failure_ratio * f64::from(calls);
                if failed && (self.consecutive >= config.consecutive_failures || ratio_tripped) {
                    self.state = Inner::Open { until: now + config.open_for };
                    return Some(State::Open);
                }
                None
            }
            // Calls admitted before the breaker opened, or probes of an earlier half-open
            // round, decide nothing.
            _ => None,
        }
    }

    /// A probe that ended without a verdict (cancelled): its slot goes back.
    pub(crate) fn release(&mut self, admitted: Admit) {
        if let (Inner::HalfOpen { out, .. }, Admit::Probe) = (&mut self.state, admitted) {
            *out = out.saturating_sub(1);
        }
    }
}

/// One endpoint's outlier-ejection record.
#[derive(Debug, Default)]
pub(crate) struct Outlier {
    consecutive: u32,
    /// How many times it was ejected (decays while it behaves).
    ejections: u32,
    ejected_until: Option<Instant>,
    admitted_since: Option<Instant>,
}

impl Outlier {
    /// Whether the endpoint is out of the pool at `now`.
    pub(crate) fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|until| now < until)
    }

    /// Records a call's result; `true` when the endpoint has now failed often enough in a row
    /// to be ejected (the cluster decides, as it knows how many others are out).
    pub(crate) fn record(&mut self, config: &OutlierConfig, now: Instant, failed: bool) -> bool {
        if let Some(until) = self.ejected_until
            && now >= until
        {
            // Readmitted: it starts with a clean count.
            self.ejected_until = None;
            self.admitted_since = Some(until);
            self.consecutive = 0;
        }
        if !failed {
            self.consecutive = 0;
            return false;
        }
        self.consecutive += 1;
        self.ejected_until.is_none() && self.consecutive >= config.consecutive_failures
    }

    /// Ejects the endpoint; returns for how long. The n-th ejection lasts n × `base_ejection`
    /// (capped), and the count decays by one per `max_ejection` spent back in the pool.
    pub(crate) fn eject(&mut self, config: &OutlierConfig, now: Instant) -> Duration {
        if let Some(since) = self.admitted_since.take() {
            let calm = now.saturating_duration_since(since).as_secs_f64();
            let decay = (calm / config.max_ejection.as_secs_f64()).floor();
            // Saturating float-to-int: a huge calm period just clears the count.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let decay = decay as u32;
            self.ejections = self.ejections.saturating_sub(decay);
        }
        self.ejections += 1;
        self.consecutive = 0;
        let length = config.base_ejection.saturating_mul(self.ejections).min(config.max_ejection);
        self.ejected_until = Some(now + length);
        length
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig {
            consecutive_failures: 3,
            failure_ratio: 0.5,
            min_calls: 10,
            window: Duration::from_secs(10),
            open_for: Duration::from_secs(5),
            half_open_probes: 2,
        }
    }

    #[test]
    fn opens_on_consecutive_failures_then_half_opens_and_closes() {
        let config = config();
        let t0 = Instant::now();
        let mut breaker = Breaker::new(&config, t0);
        for i in 0..2 {
            assert_eq!(breaker.admit(&config, t0), Admit::Yes);
            assert_eq!(breaker.record(&config, t0, Admit::Yes, true), None, "failure {i}");
        }
        // A success in between resets the streak.
        assert_eq!(breaker.record(&config, t0, Admit::Yes, false), None);
        for _ in 0..2 {
            assert_eq!(breaker.record(&config, t0, Admit::Yes, true), None);
        }
        assert_eq!(breaker.record(&config, t0, Admit::Yes, true), Some(State::Open));
        assert_eq!(breaker.admit(&config, t0 + Duration::from_secs(4)), Admit::No);

        // After open_for: two probes, no third while they are out.
        let later = t0 + Duration::from_secs(5);
        assert_eq!(breaker.admit(&config, later), Admit::Probe);
        assert_eq!(breaker.state(), State::HalfOpen);
        assert_eq!(breaker.admit(&config, later), Admit::Probe);
        assert_eq!(breaker.admit(&config, later), Admit::No);
        assert_eq!(breaker.record(&config, later, Admit::Probe, false), None);
        assert_eq!(breaker.record(&config, later, Admit::Probe, false), Some(State::Closed));
        assert_eq!(breaker.admit(&config, later), Admit::Yes);
    }

    #[test]
    fn a_failed_probe_reopens_and_a_cancelled_one_frees_its_slot() {
        let config = config();
        let t0 = Instant::now();
        let mut breaker = Breaker::new(&config, t0);
        for _ in 0..3 {
            breaker.record(&config, t0, Admit::Yes, true);
        }
        let probe_time = t0 + Duration::from_secs(5);
        assert_eq!(breaker.admit(&config, probe_time), Admit::Probe);
        assert_eq!(breaker.admit(&config, probe_time), Admit::Probe);
        breaker.release(Admit::Probe);
        assert_eq!(breaker.admit(&config, probe_time), Admit::Probe, "the slot came back");
        assert_eq!(breaker.record(&config, probe_time, Admit::Probe, true), Some(State::Open));
        assert_eq!(breaker.admit(&config, probe_time + Duration::from_secs(1)), Admit::No);
        assert_eq!(breaker.admit(&config, probe_time + Duration::from_secs(5)), Admit::Probe);
    }

    #[test]
    fn opens_on_the_failure_ratio_over_the_window_once_it_has_enough_calls() {
        let config = config();
        let t0 = Instant::now();
        let mut breaker = Breaker::new(&config, t0);
        // Alternating: never three failures in a row, but half of them fail.
        let mut opened = None;
        for i in 0..20_u32 {
            let failed = i % 2 == 1;
            if let Some(state) = breaker.record(&config, t0, Admit::Yes, failed) {
                opened = Some((i, state));
                break;
            }
        }
        // The 10th call (i = 9) fills min_calls with 5 of 10 failed.
        assert_eq!(opened, Some((9, State::Open)));

        // Calls older than the window no longer count.
        let mut breaker = Breaker::new(&config, t0);
        for i in 0..9_u32 {
            breaker.record(&config, t0, Admit::Yes, i % 2 == 1);
        }
        let later = t0 + Duration::from_secs(11);
        assert_eq!(breaker.record(&config, later, Admit::Yes, true), None);
    }

    #[test]
    fn ejections_grow_and_end() {
        let config = OutlierConfig {
            consecutive_failures: 2,
            base_ejection: Duration::from_secs(10),
            max_ejection: Duration::from_secs(25),
            max_ejected_share: 0.5,
        };
        let t0 = Instant::now();
        let mut outlier = Outlier::default();
        assert!(!outlier.record(&config, t0, true));
        assert!(outlier.record(&config, t0, true));
        assert_eq!(outlier.eject(&config, t0), Duration::from_secs(10));
        assert!(outlier.is_ejected(t0 + Duration::from_secs(9)));
        let back = t0 + Duration::from_secs(10);
        assert!(!outlier.is_ejected(back));
        assert!(!outlier.record(&config, back, true), "readmitted with a clean count");
        assert!(outlier.record(&config, back, true));
        assert_eq!(outlier.eject(&config, back), Duration::from_secs(20));
        let back = back + Duration::from_secs(20);
        outlier.record(&config, back, true);
        outlier.record(&config, back, true);
        assert_eq!(outlier.eject(&config, back), Duration::from_secs(25), "capped");
    }
}
