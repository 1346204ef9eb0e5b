//! Request limits: a body-size limit (413) and a whole-request deadline (504), both answered
//! as problem+json *responses* — an error from a service under axum would close the connection
//! without a reply.

use std::{future::Future, time::Duration};

use axum::{
    body::Body,
    extract::{Request, State},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::header;

use crate::error::EdgeError;

/// Middleware: rejects a declared `Content-Length` over the limit at once, and caps streamed
/// bodies so a chunked upload cannot exceed it either (the extractor or the proxy reading the
/// body then fails with 413).
pub async fn body_limit(State(limit): State<u64>, request: Request, next: Next) -> Response {
    match limit_body(request, limit) {
        Ok(request) => next.run(request).await,
        Err(too_large) => too_large,
    }
}

/// The body-limit step on its own: the 413 response for a declared oversize, or the request
/// with its body capped at `limit`.
#[allow(clippy::result_large_err)] // the error is the response itself, returned at once
pub fn limit_body(request: Request, limit: u64) -> Result<Request, Response> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(EdgeError::payload_too_large(limit).into_response());
    }
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    Ok(request.map(|body| Body::new(http_body_util::Limited::new(body, limit))))
}

/// Middleware: answers 504 when the rest of the stack has not produced a response head in time.
/// Dropping the inner future cancels the upstream calls still in flight.
pub async fn request_timeout(
    State(deadline): State<Duration>,
    request: Request,
    next: Next,
) -> Response {
    with_deadline(deadline, next.run(request)).await
}

/// The deadline step on its own: `serve`'s response, or a 504 problem once `deadline` passes.
/// Not an `async fn`, so `serve` is stored once (see [`crate::deadline::within`]).
pub fn with_deadline(
    deadline: Duration,
    serve: impl Future<Output = Response>,
) -> impl Future<Output = Response> {
    futures::FutureExt::map(tokio::time::timeout(deadline, serve), |timed| match timed {
        Ok(response) => response,
        Err(_elapsed) => EdgeError::request_timeout().into_response(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{Router, middleware::from_fn_with_state, routing::post};
    use http::StatusCode;
    use tower::ServiceExt;

    fn app() -> Router {
        Router::new()
            .route("/echo", post(|body: axum::body::Bytes| async move { body.len().to_string() }))
            .route(
                "/slow",
                post(|| async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    "late"
                }),
            )
            .layer(from_fn_with_state(Duration::from_secs(1), request_timeout))
            .layer(from_fn_with_state(16_u64, body_limit))
    }

    #[tokio::test]
    async fn declared_oversized_bodies_get_413_problem() {
        let request =
            Request::post("/echo").header("content-length", "17").body(Body::from(vec![b'x'; 17]));
        let response = app().oneshot(request.unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.headers()[header::CONTENT_TYPE], crate::error::PROBLEM_JSON);
    }

    #[tokio::test]
    async fn streamed_oversized_bodies_are_cut_off() {
        let chunks = futures::stream::iter((0..3).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 10])));
        let request = Request::post("/echo").body(Body::from_stream(chunks)).unwrap();
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn bodies_within_the_limit_pass() {
        let request = Request::post("/echo").body(Body::from("0123456789abcdef")).unwrap();
        let response = app().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_requests_get_504_problem_at_the_deadline() {
        let started = tokio::time::Instant::now();
        let response =
            app().oneshot(Request::post("/slow").body(Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(started.elapsed(), Duration::from_secs(1));
    }
}
