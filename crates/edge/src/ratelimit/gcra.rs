//! The generic cell rate algorithm: one timestamp per key (the theoretical arrival time of the
//! next request), so a limit costs one integer of state and a comparison, and in any interval of
//! length t it admits at most `burst + t / interval` requests.

/// A sustained rate with a burst, in nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Rate {
    /// Nanoseconds between requests at the sustained rate.
    interval: u64,
    /// Requests admitted at once after a quiet spell.
    burst: u64,
}

/// What [`Rate::check`] decided, and the state to keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Check {
    pub(crate) admitted: bool,
    /// The key's new theoretical arrival time (unchanged when refused).
    pub(crate) tat: u64,
    /// Requests that could be admitted right after this one.
    pub(crate) remaining: u64,
    /// Nanoseconds until the whole burst is available again.
    pub(crate) reset: u64,
    /// Nanoseconds until a refused request would be admitted (0 when admitted).
    pub(crate) retry: u64,
}

impl Rate {
    /// `per_second` requests a second, `burst` at once (both at least the smallest step).
    pub(crate) fn new(per_second: f64, burst: u32) -> Self {
        let interval = (1e9 / per_second.max(1e-9)).round().clamp(1.0, u64::MAX as f64) as u64;
        Self { interval, burst: u64::from(burst.max(1)) }
    }

    /// The burst.
    pub(crate) fn burst(&self) -> u64 {
        self.burst
    }

    /// The time between requests at the sustained rate.
    pub(crate) fn interval(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.interval)
    }

    /// Seconds the whole burst takes to refill (the window the policy header states).
    pub(crate) fn window_secs(&self) -> u64 {
        (self.interval.saturating_mul(self.burst)).div_ceil(1_000_000_000).max(1)
    }

    /// Decides a request at `now` for a key whose theoretical arrival time is `tat` (0 for a
    /// key never seen).
    pub(crate) fn check(&self, tat: u64, now: u64) -> Check {
        let capacity = self.interval.saturating_mul(self.burst);
        let tat = tat.max(now);
        let next = tat.saturating_add(self.interval);
        let ahead = next - now;
        if ahead <= capacity {
            Check {
                admitted: true,
                tat: next,
                remaining: (capacity - ahead) / self.interval,
                reset: ahead,
                retry: 0,
            }
        } else {
            Check { admitted: false, tat, remaining: 0, reset: tat - now, retry: ahead - capacity }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn a_quiet_key_gets_its_burst_then_the_rate() {
        let rate = Rate::new(5.0, 10);
        let mut tat = 0;
        let now = 100 * SECOND;
        for i in 0..10 {
            let check = rate.check(tat, now);
            assert!(check.admitted, "request {i} of the burst");
            assert_eq!(check.remaining, 9 - i);
            tat = check.tat;
        }
        let refused = rate.check(tat, now);
        assert!(!refused.admitted);
        assert_eq!(refused.retry, SECOND / 5, "one interval until the next is admitted");
        assert_eq!(refused.reset, 2 * SECOND, "the whole burst back after two seconds");
        assert!(rate.check(tat, now + SECOND / 5).admitted);
        assert_eq!(rate.window_secs(), 2);
    }

    proptest! {
        /// In any interval of length t, at most `burst + t / interval` requests are admitted,
        /// whatever the arrival pattern (a virtual clock, in nanoseconds).
        #[test]
        fn never_admits_more_than_burst_plus_rate_times_t(
            per_second in 0.5f64..2000.0,
            burst in 1u32..50,
            gaps in proptest::collection::vec(0u64..50_000_000, 1..400),
        ) {
            let rate = Rate::new(per_second, burst);
            let mut tat = 0;
            let mut now = 0;
            let mut admitted = Vec::new();
            for gap in gaps {
                now += gap;
                let check = rate.check(tat, now);
                if check.admitted {
                    tat = check.tat;
                    admitted.push(now);
                }
            }
            for (i, start) in admitted.iter().enumerate() {
                for (j, end) in admitted.iter().enumerate().skip(i) {
                    let count = (j - i + 1) as u64;
                    let bound = rate.burst + (end - start) / rate.interval;
                    prop_assert!(count <= bound, "{count} admitted in {} ns, bound {bound}", end - start);
                }
            }
        }

        /// A request refused now is admitted after `retry`, and not a nanosecond before.
        #[test]
        fn retry_is_exact(per_second in 0.5f64..2000.0, burst in 1u32..20, extra in 1u64..10) {
            let rate = Rate::new(per_second, burst);
            let (mut tat, now) = (0, 1_000 * SECOND);
            for _ in 0..(u64::from(burst) + extra) {
                let check = rate.check(tat, now);
                if !check.admitted {
                    prop_assert!(rate.check(check.tat, now + check.retry).admitted);
                    prop_assert!(!rate.check(check.tat, now + check.retry - 1).admitted);
                    break;
                }
                tat = check.tat;
            }
        }
    }
}
