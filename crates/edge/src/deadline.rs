//! The request deadline: set once when a request enters the gateway, read by every upstream call
//! it makes, so a call never outlives the request that waits for it.
//!
//! Each call's own deadline is the earlier of the request's and the upstream's timeout, and the
//! time left is sent along — `grpc-timeout` on gRPC calls, [`HEADER`] (milliseconds) on HTTP
//! calls — so a backend that honours it stops working on an answer nobody will read.

use std::{future::Future, time::Duration};

use tokio::time::Instant;

/// The header carrying the time the upstream has left for its answer, in milliseconds.
pub const HEADER: &str = "x-portico-timeout-ms";

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `serve` with `deadline` as the request deadline of every upstream call inside it.
///
/// A plain function, not an `async fn`: an `async fn` wrapper stores `serve` twice (as its
/// argument and inside the future it awaits), and the request's wrappers nest, so each one
/// doubled the request future's size (13 KB, copied at every move; `bench/instructions`).
pub fn within<F: Future>(deadline: Instant, serve: F) -> impl Future<Output = F::Output> {
    DEADLINE.scope(deadline, serve)
}

/// The current request's deadline, if the call runs inside one.
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|deadline| *deadline).ok()
}

/// The deadline of one upstream call: `timeout` from now, never later than the request's.
pub fn for_call(timeout: Duration) -> Instant {
    let own = Instant::now() + timeout;
    current().map_or(own, |request| request.min(own))
}

/// `remaining` as the header's value: whole milliseconds, at least 1 (0 would read as "none").
pub(crate) fn header_value(remaining: Duration) -> http::HeaderValue {
    http::HeaderValue::from(millis(remaining))
}

/// `remaining` in the header's unit: whole milliseconds, at least 1.
pub(crate) fn millis(remaining: Duration) -> u64 {
    let ms = remaining.as_millis().clamp(1, u128::from(u64::MAX));
    u64::try_from(ms).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_call_deadline_is_the_earlier_of_its_timeout_and_the_request() {
        let outside = for_call(Duration::from_secs(2));
        assert_eq!(outside - Instant::now(), Duration::from_secs(2));
        let request = Instant::now() + Duration::from_millis(300);
        within(request, async {
            assert_eq!(current(), Some(request));
            assert_eq!(for_call(Duration::from_secs(2)), request);
            assert_eq!(
                for_call(Duration::from_millis(100)) - Instant::now(),
                Duration::from_millis(100)
            );
        })
        .await;
        assert_eq!(current(), None);
        assert_eq!(header_value(Duration::from_micros(10)), "1");
        assert_eq!(header_value(Duration::from_millis(1500)), "1500");
    }
}
