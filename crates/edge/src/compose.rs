//! Composition: one client request fans out to several upstream calls at once, and each call
//! is either *required* (its failure fails the request) or *optional* (its failure omits that
//! part and names it in the response's `degraded` list and `portico-degraded` header).
//!
//! Run the calls with `tokio::join!` (or `futures::join!`) so total latency is that of the
//! slowest call, not the sum; each call carries its own deadline from its upstream's config.
//!
//! ```ignore
//! let (product, recs) = tokio::join!(
//!     compose::required("product", catalog.get(&path).fetch::<Product>()),
//!     compose::optional("recommendations", recs.get(&path).fetch::<Recs>()),
//! );
//! let mut degraded = Degraded::default();
//! let recs = degraded.take(recs);
//! Composed::new(view(product?, recs), degraded)
//! ```

use std::future::Future;

use axum::{
    Json,
    response::{IntoResponse, Response},
};
use http::HeaderValue;
use serde::Serialize;

use crate::error::EdgeError;

/// The response header listing the omitted parts, comma separated.
pub const DEGRADED_HEADER: &str = "portico-degraded";

/// Runs a required call. Its error is the request's error; the part name is logged with it.
pub async fn required<T>(
    part: &'static str,
    call: impl Future<Output = Result<T, EdgeError>>,
) -> Result<T, EdgeError> {
    call.await.inspect_err(|error| tracing::debug!(part, %error, "required part failed"))
}

/// Runs an optional call; its failure is recorded, not propagated. Resolve the outcome with
/// [`Degraded::take`].
pub async fn optional<T>(
    part: &'static str,
    call: impl Future<Output = Result<T, EdgeError>>,
) -> Optional<T> {
    Optional { part, result: call.await }
}

/// The outcome of an optional call.
#[derive(Debug)]
#[must_use = "resolve it with Degraded::take so a failure is reported"]
pub struct Optional<T> {
    part: &'static str,
    result: Result<T, EdgeError>,
}

/// The names of the optional parts that a response lacks.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct Degraded(Vec<String>);

// === impl Degraded ===

impl Degraded {
    /// The value of an optional call, or `None` with the part recorded as degraded.
    pub fn take<T>(&mut self, outcome: Optional<T>) -> Option<T> {
        match outcome.result {
            Ok(value) => Some(value),
            Err(error) => {
                // An optional part is degraded *because* its upstream failed: that is worth a
                // warning even though the client still gets a 200.
                tracing::warn!(part = outcome.part, %error, "optional part degraded");
                self.mark(outcome.part);
                None
            }
        }
    }

    /// Records a part as missing (for parts a handler drops for its own reasons).
    pub fn mark(&mut self, part: &str) {
        if !self.0.iter().any(|p| p == part) {
            self.0.push(part.to_owned());
        }
    }

    /// Whether every part is present.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The missing parts.
    pub fn parts(&self) -> &[String] {
        &self.0
    }
}

/// A composed JSON response: the body plus the `portico-degraded` header when parts are missing.
/// The body should carry the same list in its own `degraded` field, so clients that only read
/// bodies see it too.
#[derive(Debug)]
pub struct Composed<T> {
    body: T,
    degraded: Degraded,
    /// Purge tags of the view (`Cache-Tag`), for the cache step; never sent to clients.
    tags: Vec<String>,
}

impl<T> Composed<T> {
    /// Wraps a client view and the parts it lacks.
    pub fn new(body: T, degraded: Degraded) -> Self {
        Self { body, degraded, tags: Vec::new() }
    }

    /// Tags the view for purges, e.g. `product:p-00042`: a cached copy is dropped by
    /// `POST /_portico/cache/purge?tag=product:p-00042` (on every replica with the Redis tier).
    #[must_use]
    pub fn tagged(mut self, tag: impl Into<String>) -> Self {
        self.tags.push(tag.into());
        self
    }
}

impl<T: Serialize> IntoResponse for Composed<T> {
    fn into_response(self) -> Response {
        let mut response = Json(self.body).into_response();
        if !self.degraded.is_empty()
            && let Ok(value) = HeaderValue::from_str(&self.degraded.0.join(","))
        {
            response.headers_mut().insert(DEGRADED_HEADER, value);
        }
        if !self.tags.is_empty()
            && let Ok(value) = HeaderValue::from_str(&self.tags.join(", "))
        {
            response.headers_mut().insert(crate::cache::TAG_HEADER, value);
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn optional_failures_degrade_and_successes_pass() {
        let (a, b) = tokio::join!(
            optional("reviews", async { Ok::<_, EdgeError>(3) }),
            optional("recommendations", async {
                Err::<u32, _>(EdgeError::upstream_timeout("recommendations"))
            }),
        );
        let mut degraded = Degraded::default();
        assert_eq!(degraded.take(a), Some(3));
        assert_eq!(degraded.take(b), None);
        assert_eq!(degraded.parts(), ["recommendations"]);

        let response = Composed::new(serde_json::json!({"x": 1}), degraded).into_response();
        assert_eq!(response.headers()[DEGRADED_HEADER], "recommendations");
    }

    #[tokio::test]
    async fn complete_responses_have_no_degraded_header() {
        let response = Composed::new(1, Degraded::default()).into_response();
        assert!(response.headers().get(DEGRADED_HEADER).is_none());
    }

    #[tokio::test]
    async fn required_failures_propagate() {
        let err = required("product", async { Err::<(), _>(EdgeError::not_found("x")) })
            .await
            .unwrap_err();
        assert_eq!(err.code(), "not_found");
    }

    #[tokio::test(start_paused = true)]
    async fn parallel_calls_take_the_slowest_not_the_sum() {
        let slow = |ms| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, EdgeError>(ms)
        };
        let started = tokio::time::Instant::now();
        let (a, b, c) =
            tokio::join!(required("a", slow(10)), required("b", slow(20)), optional("c", slow(30)));
        assert_eq!((a.unwrap(), b.unwrap()), (10, 20));
        assert_eq!(Degraded::default().take(c), Some(30));
        // With the clock paused, elapsed time is exactly the virtual time the sleeps advanced.
        assert_eq!(started.elapsed(), Duration::from_millis(30));
    }
}
