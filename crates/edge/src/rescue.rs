//! The last word on error responses: any 4xx/5xx that is not already problem+json (the
//! framework's own rejections, an unmatched method, a panic-free handler that returned a bare
//! status) is rewritten into one, so clients see a single error format.
//!
//! Pass-through responses ([`Passthrough`]) are left alone: their errors belong to the upstream.

use axum::{extract::Request, middleware::Next, response::Response};
use http::{HeaderValue, StatusCode, header};

use crate::{
    error::{EdgeError, PROBLEM_JSON},
    proxy::Passthrough,
};

/// How much of a framework rejection's text we keep as the problem's `detail`.
const MAX_DETAIL: usize = 512;

/// Middleware: normalises error responses into problem+json.
pub async fn problems(request: Request, next: Next) -> Response {
    normalise(next.run(request).await).await
}

/// The normalising step on its own: `response` as it is, or rewritten into problem+json.
pub async fn normalise(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.extensions().get::<Passthrough>().is_some()
        || response.headers().get(header::CONTENT_TYPE).is_some_and(|v| v == PROBLEM_JSON)
    {
        return response;
    }
    let is_text = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"text/plain"));
    let (mut parts, body) = response.into_parts();
    // Framework rejections explain the client's mistake in plain text ("Failed to deserialize
    // query string: …"): worth passing on. Server errors never explain themselves to clients.
    let detail = if status.is_client_error() && is_text {
        axum::body::to_bytes(body, MAX_DETAIL)
            .await
            .ok()
            .and_then(|b| String::from_utf8(b.to_vec()).ok())
            .filter(|s| !s.is_empty())
    } else {
        None
    };
    let mut error = EdgeError::from_status(status, code_for(status));
    if let Some(detail) = detail {
        error = error.with_detail(detail);
    }
    // Keep the original head (an `Allow` on 405 matters) and replace only the body.
    let body = crate::error::problem_response(status, &error.problem()).into_body();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    Response::from_parts(parts, body)
}

fn code_for(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::NOT_ACCEPTABLE => "not_acceptable",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "unprocessable_entity",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        StatusCode::BAD_GATEWAY => "upstream_error",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        StatusCode::GATEWAY_TIMEOUT => "gateway_timeout",
        s if s.is_client_error() => "client_error",
        _ => "internal",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::{Json, Router, body::Body, middleware::from_fn, routing::get};
    use tower::ServiceExt;

    fn app() -> Router {
        Router::new()
            .route("/json", get(|Json(v): Json<serde_json::Value>| async move { Json(v) }))
            .route(
                "/boom",
                get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "db password is hunter2") }),
            )
            .route(
                "/passthrough",
                get(|| async {
                    let mut r = Response::new(Body::from("upstream says no"));
                    *r.status_mut() = StatusCode::CONFLICT;
                    r.extensions_mut().insert(Passthrough);
                    r
                }),
            )
            .layer(from_fn(problems))
    }

    async fn call(method: &str, uri: &str) -> (StatusCode, http::HeaderMap, String) {
        let request = Request::builder().method(method).uri(uri).body(Body::empty()).unwrap();
        let response = app().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, 4096).await.unwrap();
        (parts.status, parts.headers, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn framework_rejections_become_problems_with_their_explanation() {
        let (status, headers, body) = call("GET", "/json").await;
        assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert_eq!(headers[header::CONTENT_TYPE], PROBLEM_JSON);
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["code"], "unsupported_media_type");
        assert!(body["detail"].as_str().unwrap().contains("Content-Type"), "{body}");
    }

    #[tokio::test]
    async fn method_not_allowed_keeps_the_allow_header() {
        let (status, headers, body) = call("DELETE", "/json").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(headers.contains_key(header::ALLOW));
        assert!(body.contains("method_not_allowed"));
    }

    #[tokio::test]
    async fn server_error_text_never_reaches_the_client() {
        let (status, _, body) = call("GET", "/boom").await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(!body.contains("hunter2"), "{body}");
    }

    #[tokio::test]
    async fn passthrough_errors_are_untouched() {
        let (status, _, body) = call("GET", "/passthrough").await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(body, "upstream says no");
    }
}
