//! The retry budget: retries may add at most a fixed share of an upstream's calls as extra load.
//!
//! A token bucket in the manner of Finagle and Linkerd: every call earns `ratio` of a token,
//! every retry (or hedge) spends a whole one, and a small reserve refilled per second lets a
//! quiet upstream retry at all. When a backend fails every call, each call is retried at most
//! `ratio` times on average, where unbudgeted retries would multiply its load by the attempts.

use std::sync::{
    Mutex,
    atomic::{AtomicBool, Ordering},
};

use tokio::time::Instant;

use super::policy::RetryConfig;

#[derive(Debug)]
pub(crate) struct RetryBudget {
    ratio: f64,
    per_second: f64,
    state: Mutex<Tokens>,
    /// Whether `earned` is at its cap (a hint read without the lock; a deposit it skips is
    /// one the cap would have dropped).
    full: AtomicBool,
}

#[derive(Debug)]
struct Tokens {
    earned: f64,
    reserve: f64,
    refilled: Instant,
}

impl RetryBudget {
    pub(crate) fn new(config: &RetryConfig) -> Self {
        let per_second = f64::from(config.min_per_second);
        Self {
            ratio: config.budget_ratio,
            per_second,
            state: Mutex::new(Tokens {
                earned: 0.0,
                reserve: per_second,
                refilled: Instant::now(),
            }),
            full: AtomicBool::new(false),
        }
    }

    /// The most earned tokens kept: a burst of retries after a long healthy spell stays small.
    fn cap(&self) -> f64 {
        (self.ratio * 100.0).max(1.0)
    }

    /// A call started: it earns its share of a retry.
    ///
    /// A full budget (the usual state: retries are rare) is only read, so the workers that
    /// share it do not pass its cache line between their cores on every call.
    pub(crate) fn deposit(&self) {
        if self.full.load(Ordering::Relaxed) {
            return;
        }
        let mut tokens = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        tokens.earned = (tokens.earned + self.ratio).min(self.cap());
        if tokens.earned >= self.cap() {
            self.full.store(true, Ordering::Relaxed);
        }
    }

    /// Takes one retry from the budget; `false` when it is spent.
    pub(crate) fn withdraw(&self) -> bool {
        let mut tokens = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // Rounding: ten deposits of 0.1 must buy a retry.
        if tokens.earned >= 1.0 - 1e-9 {
            tokens.earned -= 1.0;
            self.full.store(false, Ordering::Relaxed);
            return true;
        }
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(tokens.refilled).as_secs_f64();
        tokens.refilled = now;
        tokens.reserve = (tokens.reserve + elapsed * self.per_second).min(self.per_second);
        if tokens.reserve >= 1.0 {
            tokens.reserve -= 1.0;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn budget(ratio: f64, min_per_second: u32) -> RetryBudget {
        RetryBudget::new(&RetryConfig { budget_ratio: ratio, min_per_second, ..Default::default() })
    }

    #[tokio::test(start_paused = true)]
    async fn retries_are_a_share_of_calls() {
        let budget = budget(0.2, 0);
        let mut retries = 0;
        for _ in 0..100 {
            budget.deposit();
            // Every call fails and wants three retries.
            for _ in 0..3 {
                retries += u32::from(budget.withdraw());
            }
        }
        assert_eq!(retries, 20);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_budget_that_paid_out_earns_again() {
        let budget = budget(0.2, 0);
        // The cap is 20 tokens: far more calls than fill it.
        for _ in 0..1000 {
            budget.deposit();
        }
        let paid = (0..25).filter(|_| budget.withdraw()).count();
        assert_eq!(paid, 20, "the cap, no more");
        for _ in 0..5 {
            budget.deposit();
        }
        assert!(budget.withdraw(), "five calls at 0.2 earn a retry again");
        assert!(!budget.withdraw());
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_upstream_gets_its_reserve_per_second() {
        let budget = budget(0.2, 2);
        assert!(budget.withdraw());
        assert!(budget.withdraw());
        assert!(!budget.withdraw());
        tokio::time::advance(Duration::from_millis(500)).await;
        assert!(budget.withdraw(), "half a second refills one");
        assert!(!budget.withdraw());
    }
}
