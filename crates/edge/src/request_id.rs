//! Request ids and the per-request span: every request gets an id (a sane incoming
//! `x-request-id` is kept, anything else replaced), which is echoed in the response, sent to
//! every upstream call, and recorded on the request's tracing span and access-log line.
//!
//! The id travels to upstream calls through a task-local rather than through every handler's
//! arguments: composition runs the calls of one request on that request's task, so the
//! upstream clients can find it without the gateway code passing it around.

use std::{
    future::Future,
    hash::{BuildHasher, RandomState},
    sync::atomic::{AtomicU64, Ordering},
    time::Instant,
};

use axum::{extract::Request, middleware::Next, response::Response};
use http::{HeaderValue, header::HeaderName};
use tracing::Instrument;

/// The header that carries the request id, both ways.
pub const HEADER: &str = "x-request-id";
static HEADER_NAME: HeaderName = HeaderName::from_static(HEADER);

/// The longest incoming id we keep; longer ones are replaced, not truncated.
const MAX_LEN: usize = 128;

/// A request's id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestId(HeaderValue);

tokio::task_local! {
    static CURRENT: RequestId;
}

/// The id of the request being served on this task, if any.
pub fn current() -> Option<RequestId> {
    CURRENT.try_with(Clone::clone).ok()
}

// === impl RequestId ===

impl RequestId {
    /// Keeps a client's id only if it is short and made of safe characters, so it cannot be
    /// used to inject anything into logs or upstream headers.
    pub fn from_incoming(value: &HeaderValue) -> Option<Self> {
        let bytes = value.as_bytes();
        let sane = !bytes.is_empty()
            && bytes.len() <= MAX_LEN
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(b));
        sane.then(|| Self(value.clone()))
    }

    /// A fresh random id: 128 bits as 32 lowercase hex digits.
    pub fn generate() -> Self {
        let bits = (u128::from(next_random()) << 64) | u128::from(next_random());
        // Hex digits written by hand: this runs once per request, and `format!` costs more.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0_u8; 32];
        for (pair, byte) in text.chunks_exact_mut(2).zip(bits.to_be_bytes()) {
            pair[0] = HEX[usize::from(byte >> 4)];
            pair[1] = HEX[usize::from(byte & 0xf)];
        }
        // Hex digits are always a valid header value.
        Self(HeaderValue::from_bytes(&text).unwrap_or_else(|_| HeaderValue::from_static("0")))
    }

    /// The id as a header value.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Both constructors only admit visible ASCII.
        self.0.to_str().unwrap_or_default()
    }
}

/// The next output of this thread's generator: wyrand (a 64-bit counter through a
/// multiply-xor mix), seeded per thread from the OS-seeded `RandomState`. Ids must be unique and
/// unguessable in advance, not secret; this costs a few instructions where hashing a counter
/// with SipHash twice per request cost hundreds (`bench/instructions`).
fn next_random() -> u64 {
    thread_local! {
        static STATE: std::cell::Cell<u64> = std::cell::Cell::new({
            static THREADS: AtomicU64 = AtomicU64::new(0);
            RandomState::new().hash_one(THREADS.fetch_add(1, Ordering::Relaxed))
        });
    }
    STATE.with(|state| {
        let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        (t >> 64) as u64 ^ t as u64
    })
}

/// Middleware: assigns the id, opens the request span, runs the rest of the stack inside both,
/// echoes the id and writes one access-log line.
pub async fn middleware(mut request: Request, next: Next) -> Response {
    let id = assign(&mut request);
    let span = span(&id, &request);
    within(id, span, next.run(request)).await
}

/// Gives `request` its id: a sane incoming one is kept, anything else replaced. The id goes in
/// the request's headers (so pass-through routes forward it) and extensions.
pub fn assign(request: &mut Request) -> RequestId {
    let id = request
        .headers()
        .get(&HEADER_NAME)
        .and_then(RequestId::from_incoming)
        .unwrap_or_else(RequestId::generate);
    request.headers_mut().insert(HEADER_NAME.clone(), id.0.clone());
    request.extensions_mut().insert(id.clone());
    id
}

/// The request's tracing span.
pub fn span(id: &RequestId, request: &Request) -> tracing::Span {
    tracing::info_span!(
        "request",
        id = id.as_str(),
        method = %request.method(),
        path = request.uri().path(),
    )
}

/// Runs `serve` (the rest of the stack for a request) inside the request's span and with its
/// id as the task's current one; then echoes the id and writes the access-log line.
pub async fn within(
    id: RequestId,
    span: tracing::Span,
    serve: impl Future<Output = Response>,
) -> Response {
    let started = Instant::now();
    let mut response = CURRENT.scope(id.clone(), serve).instrument(span.clone()).await;
    served(&span, response.status().as_u16(), started);
    response.headers_mut().insert(HEADER_NAME.clone(), id.0);
    response
}

/// Runs `serve` with `id` as the task's current request id, where upstream calls find it.
/// Not an `async fn`, so `serve` is stored once (see [`crate::deadline::within`]).
pub(crate) fn scope<F: Future>(id: RequestId, serve: F) -> impl Future<Output = F::Output> {
    CURRENT.scope(id, serve)
}

/// Writes the access-log line of a request answered with `status`, inside its span.
pub(crate) fn served(span: &tracing::Span, status: u16, started: Instant) {
    span.in_scope(|| {
        tracing::info!(
            status,
            elapsed_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            "served"
        );
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{Router, body::Body, routing::get};
    use tower::ServiceExt;

    fn app() -> Router {
        Router::new()
            .route(
                "/",
                get(|| async { current().map(|id| id.as_str().to_owned()).unwrap_or_default() }),
            )
            .layer(axum::middleware::from_fn(middleware))
    }

    async fn call(id: Option<&str>) -> (String, String) {
        let mut request = Request::get("/");
        if let Some(id) = id {
            request = request.header(HEADER, id);
        }
        let response = app().oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let header = response.headers()[HEADER].to_str().unwrap().to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1024).await.unwrap();
        (header, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn keeps_a_sane_incoming_id_and_exposes_it_to_the_handler() {
        let (header, seen) = call(Some("abc-123_x.y:z")).await;
        assert_eq!(header, "abc-123_x.y:z");
        assert_eq!(seen, header);
    }

    #[tokio::test]
    async fn replaces_unsafe_or_oversized_ids() {
        for bad in ["has space", "quote\"", &"x".repeat(MAX_LEN + 1)] {
            let (header, seen) = call(Some(bad)).await;
            assert_ne!(header, bad);
            assert_eq!(header.len(), 32, "{header}");
            assert_eq!(seen, header);
        }
    }

    #[tokio::test]
    async fn generated_ids_are_unique() {
        let (a, _) = call(None).await;
        let (b, _) = call(None).await;
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
