//! One error type for the whole gateway, which knows where a failure came from, and its single
//! mapping to an RFC 7807 `application/problem+json` response.
//!
//! The *source* of an error decides its status class (as in pingora): the client sent something
//! wrong (4xx), an upstream failed (502/504), or the gateway itself is at fault (500). Clients get
//! a stable machine-readable `code` and a human `title`; causes (connection errors, upstream
//! bodies) are logged, never sent, so the internal architecture stays hidden.

use std::{borrow::Cow, fmt};

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;

/// The media type of every error body the gateway produces.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// Where a failure came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// The request was wrong (bad input, unknown route, too large, …).
    Client,
    /// A backend failed, was unreachable or too slow.
    Upstream,
    /// The gateway itself failed: a bug or a misconfiguration.
    Internal,
}

type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A failure on the request path, rendered to clients as problem+json.
#[derive(Debug)]
pub struct EdgeError {
    status: StatusCode,
    code: &'static str,
    title: &'static str,
    detail: Option<Cow<'static, str>>,
    source: Source,
    upstream: Option<Box<str>>,
    upstream_status: Option<StatusCode>,
    cause: Option<Cause>,
    /// Seconds after which a retry may succeed, sent as `Retry-After` (RFC 9110 §10.2.3).
    /// (Sixteen bits: it packs beside the statuses, keeping the error small on the hot path.)
    retry_after: Option<u16>,
    /// The `WWW-Authenticate` challenge of a 401 or 403 (RFC 6750 §3); boxed, as only
    /// refusals of credentials carry one and the error stays small on the hot path.
    challenge: Option<Box<HeaderValue>>,
}

// === impl EdgeError ===

impl EdgeError {
    fn new(status: StatusCode, code: &'static str, title: &'static str, source: Source) -> Self {
        Self {
            status,
            code,
            title,
            detail: None,
            source,
            upstream: None,
            upstream_status: None,
            cause: None,
            retry_after: None,
            challenge: None,
        }
    }

    /// 429 `rate_limited`: a limit refused the request; `retry_after` seconds until it would
    /// not.
    pub fn too_many_requests(detail: &'static str, retry_after: u64) -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            "Too many requests",
            Source::Client,
        )
        .with_detail(detail)
        .with_retry_after(u16::try_from(retry_after).unwrap_or(u16::MAX))
    }

    /// 400 `invalid_path`: the request path cannot be normalised safely (an encoded slash or
    /// backslash, a NUL, a bad escape, or dot-segments that climb above `/`).
    pub fn invalid_path(detail: &'static str) -> Self {
        Self::invalid("invalid_path", detail)
    }

    /// 400 `invalid_host`: an HTTP/1.1 request without exactly one `Host` (RFC 9112 §3.2).
    pub fn invalid_host(detail: &'static str) -> Self {
        Self::invalid("invalid_host", detail)
    }

    /// 414: the request line is longer than the gateway accepts.
    pub fn uri_too_long(limit: usize) -> Self {
        Self::new(StatusCode::URI_TOO_LONG, "uri_too_long", "URI too long", Source::Client)
            .with_detail(format!("the request line exceeds the limit of {limit} bytes"))
    }

    /// 431: a header field, or the whole request head, is larger than the gateway accepts.
    pub fn header_too_large(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "header_too_large",
            "Request header fields too large",
            Source::Client,
        )
        .with_detail(detail)
    }

    /// 400 `invalid_body`: the client's body broke its framing or ended early. The client's
    /// fault: never counted against the upstream it was being relayed to.
    pub fn invalid_body() -> Self {
        Self::invalid("invalid_body", "the request body is malformed or ended early")
    }

    /// 408: the client did not send its whole body before the request's deadline. The
    /// client's doing: no upstream is blamed for it.
    pub fn body_timeout() -> Self {
        Self::new(StatusCode::REQUEST_TIMEOUT, "request_timeout", "Request timeout", Source::Client)
            .with_detail("the request body did not arrive within the request's deadline")
    }

    /// 400: the request is malformed; `detail` tells the client what to fix.
    pub fn bad_request(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad_request", "Bad request", Source::Client)
            .with_detail(detail)
    }

    /// 400 with a more specific code, e.g. `invalid_parameter`.
    pub fn invalid(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, "Bad request", Source::Client).with_detail(detail)
    }

    /// 404: the addressed resource does not exist.
    pub fn not_found(detail: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "Not found", Source::Client)
            .with_detail(detail)
    }

    /// 404 for a path no route matches.
    pub fn no_route() -> Self {
        Self::new(StatusCode::NOT_FOUND, "no_route", "Not found", Source::Client)
            .with_detail("no route matches this path")
    }

    /// 413: the request body exceeds the configured limit.
    pub fn payload_too_large(limit: u64) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "Payload too large",
            Source::Client,
        )
        .with_detail(format!("the request body exceeds the limit of {limit} bytes"))
    }

    /// 504: the whole request ran past its deadline.
    pub fn request_timeout() -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "gateway_timeout",
            "Gateway timeout",
            Source::Upstream,
        )
        .with_detail("the request did not complete within its deadline")
    }

    /// 502: an upstream could not be reached or broke the connection.
    pub fn upstream_unavailable(upstream: &str, cause: impl Into<Cause>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "upstream_unavailable", "Bad gateway", Source::Upstream)
            .with_detail("a backend service is unavailable")
            .with_upstream(upstream)
            .with_cause(cause)
    }

    /// 502: an upstream answered, but with an error or a body we cannot read.
    pub fn upstream_failed(upstream: &str, cause: impl Into<Cause>) -> Self {
        Self::new(StatusCode::BAD_GATEWAY, "upstream_error", "Bad gateway", Source::Upstream)
            .with_detail("a backend service failed")
            .with_upstream(upstream)
            .with_cause(cause)
    }

    /// 502: an upstream answered with an error status. The status is kept (see
    /// [`EdgeError::upstream_status`]) so a handler can decide that, say, a 400 for a cursor the
    /// client sent is the client's mistake after all.
    /// An upstream's own 504 (it timed out on something behind it) stays a 504.
    pub fn upstream_status(upstream: &str, status: StatusCode) -> Self {
        let mut error = if status == StatusCode::GATEWAY_TIMEOUT {
            Self::upstream_timeout(upstream).with_cause(format!("answered {status}"))
        } else {
            Self::upstream_failed(upstream, format!("answered {status}"))
        };
        error.upstream_status = Some(status);
        error
    }

    /// 504: an upstream did not answer within its deadline.
    /// 503: the upstream's concurrency limit is reached; the call was refused without queueing.
    pub fn upstream_overloaded(upstream: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_overloaded",
            "Service unavailable",
            Source::Upstream,
        )
        .with_detail("a backend service is at capacity; try again shortly")
        .with_upstream(upstream)
        .with_retry_after(1)
    }

    /// 503: every endpoint of the upstream is failing (circuit breakers open) or none is known;
    /// the call failed fast without being sent. `retry_after`: when a breaker next lets a call
    /// through.
    pub fn upstream_circuit_open(upstream: &str, retry_after: std::time::Duration) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "upstream_circuit_open",
            "Service unavailable",
            Source::Upstream,
        )
        .with_detail("a backend service is failing; try again shortly")
        .with_upstream(upstream)
        .with_retry_after(whole_seconds(retry_after))
    }

    /// The client's mistake after all: an upstream's 400, 404, 409 or 422 to a value the
    /// client sent (a cursor, an id, an order's lines) becomes the same status with this
    /// gateway's own `code` and `detail`, sourced to the client, so it is logged at debug and
    /// not as an upstream failure. Any other error, including other upstream 4xx (a 401 or 403
    /// means our credentials or our bug), is returned unchanged.
    ///
    /// Call it only where the upstream's answer can be about the client's value: the rule is
    /// the handler's to know, the conversion is the same everywhere.
    #[must_use]
    pub fn client_caused(self, code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        let title = match self.upstream_status {
            Some(StatusCode::BAD_REQUEST) => "Bad request",
            Some(StatusCode::NOT_FOUND) => "Not found",
            Some(StatusCode::CONFLICT) => "Conflict",
            Some(StatusCode::UNPROCESSABLE_ENTITY) => "Unprocessable entity",
            _ => return self,
        };
        let status = self.upstream_status.unwrap_or(self.status);
        // The upstream and its answer stay on the error for the log line; the client sees
        // only the gateway's code and detail.
        Self { status, code, title, detail: Some(detail.into()), source: Source::Client, ..self }
    }

    /// Sets the `WWW-Authenticate` challenge of the response.
    #[must_use]
    pub fn with_challenge(mut self, challenge: HeaderValue) -> Self {
        self.challenge = Some(Box::new(challenge));
        self
    }

    /// Sets the `Retry-After` seconds of the response.
    #[must_use]
    pub fn with_retry_after(mut self, seconds: u16) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn upstream_timeout(upstream: &str) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "upstream_timeout",
            "Gateway timeout",
            Source::Upstream,
        )
        .with_detail("a backend service did not answer in time")
        .with_upstream(upstream)
    }

    /// 500: the gateway itself failed. The cause is logged, never shown.
    pub fn internal(cause: impl Into<Cause>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error", Source::Internal)
            .with_cause(cause)
    }

    /// An error with any status; the title is the status' canonical reason. Used to turn the
    /// framework's bare error responses (405, 415, …) into problems.
    pub fn from_status(status: StatusCode, code: &'static str) -> Self {
        let source = if status.is_client_error() { Source::Client } else { Source::Internal };
        Self::new(status, code, status.canonical_reason().unwrap_or("Error"), source)
    }

    /// The same error, attributed to `source` (an identity provider that cannot be reached
    /// is an upstream's failure, not the gateway's).
    #[must_use]
    pub fn from_source(mut self, source: Source) -> Self {
        self.source = source;
        self
    }

    /// Replaces the client-facing explanation.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    #[must_use]
    fn with_upstream(mut self, upstream: &str) -> Self {
        self.upstream = Some(upstream.into());
        self
    }

    #[must_use]
    fn with_cause(mut self, cause: impl Into<Cause>) -> Self {
        self.cause = Some(cause.into());
        self
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable, machine-readable code (`upstream_timeout`, `not_found`, …).
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Where the failure came from.
    pub fn source_kind(&self) -> Source {
        self.source
    }

    /// The named upstream involved, if any.
    pub fn upstream(&self) -> Option<&str> {
        self.upstream.as_deref()
    }

    /// The error status an upstream answered with, when it answered at all.
    pub fn upstream_answered(&self) -> Option<StatusCode> {
        self.upstream_status
    }

    /// The client-facing problem document.
    pub fn problem(&self) -> Problem<'_> {
        Problem {
            kind: format!("https://portico.dev/problems/{}", self.code),
            title: self.title,
            status: self.status.as_u16(),
            detail: self.detail.as_deref(),
            code: self.code,
        }
    }
}

impl fmt::Display for EdgeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code, self.status)?;
        if let Some(upstream) = &self.upstream {
            write!(f, " from upstream `{upstream}`")?;
        }
        if let Some(cause) = &self.cause {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl std::error::Error for EdgeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause.as_deref().map(|c| c as &(dyn std::error::Error + 'static))
    }
}

impl IntoResponse for EdgeError {
    fn into_response(self) -> Response {
        // Log here, once, with the cause the client never sees. Client mistakes are routine and
        // stay at debug so a scanner cannot flood the logs.
        match self.source {
            Source::Client => tracing::debug!(error = %self, "request rejected"),
            Source::Upstream => tracing::warn!(error = %self, "upstream failure"),
            Source::Internal => tracing::error!(error = %self, "internal error"),
        }
        let mut response = problem_response(self.status, &self.problem());
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if let Some(challenge) = self.challenge {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, *challenge);
        }
        response
    }
}

/// `duration` in whole seconds, rounded up and at least 1, as `Retry-After` takes it.
fn whole_seconds(duration: std::time::Duration) -> u16 {
    let seconds = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    u16::try_from(seconds.max(1)).unwrap_or(u16::MAX)
}

/// An RFC 7807 problem document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem<'a> {
    /// A URI naming the problem type.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short, human-readable summary of the problem type.
    pub title: &'a str,
    /// The HTTP status code.
    pub status: u16,
    /// What happened to this request, when there is something useful to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<&'a str>,
    /// A stable, machine-readable error code.
    pub code: &'a str,
}

/// Renders a problem document with the right media type.
pub fn problem_response(status: StatusCode, problem: &Problem<'_>) -> Response {
    let body = serde_json::to_vec(problem).unwrap_or_else(|_| b"{}".to_vec());
    let mut response = (status, body).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body_of(response: Response) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn upstream_errors_hide_their_cause() {
        let err = EdgeError::upstream_unavailable("catalog", "connection refused to 10.1.2.3:7001");
        assert_eq!(err.source_kind(), Source::Upstream);
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(response.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = body_of(response).await;
        assert_eq!(body["code"], "upstream_unavailable");
        assert_eq!(body["status"], 502);
        let text = body.to_string();
        assert!(!text.contains("10.1.2.3"), "cause leaked: {text}");
        assert!(!text.contains("catalog"), "upstream name leaked: {text}");
    }

    #[tokio::test]
    async fn internal_errors_have_no_detail() {
        let body = body_of(EdgeError::internal("bug: index out of range").into_response()).await;
        assert_eq!(body["status"], 500);
        assert!(body.get("detail").is_none());
    }

    #[test]
    fn client_caused_keeps_the_status_class_of_a_client_mistake() {
        for status in [
            StatusCode::BAD_REQUEST,
            StatusCode::NOT_FOUND,
            StatusCode::CONFLICT,
            StatusCode::UNPROCESSABLE_ENTITY,
        ] {
            let error = EdgeError::upstream_status("catalog", status)
                .client_caused("invalid_cursor", "start again");
            assert_eq!(error.status(), status);
            assert_eq!(error.code(), "invalid_cursor");
            assert_eq!(error.source_kind(), Source::Client);
            assert_eq!(error.problem().detail, Some("start again"));
            assert_eq!(error.problem().status, status.as_u16());
        }
    }

    #[test]
    fn client_caused_leaves_other_failures_alone() {
        let others = [
            EdgeError::upstream_status("catalog", StatusCode::FORBIDDEN),
            EdgeError::upstream_status("catalog", StatusCode::UNAUTHORIZED),
            EdgeError::upstream_status("catalog", StatusCode::INTERNAL_SERVER_ERROR),
            EdgeError::upstream_timeout("catalog"),
            EdgeError::upstream_unavailable("catalog", "refused"),
            EdgeError::bad_request("x"),
        ];
        for error in others {
            let (status, code, source) = (error.status(), error.code(), error.source_kind());
            let error = error.client_caused("invalid_cursor", "start again");
            assert_eq!((error.status(), error.code(), error.source_kind()), (status, code, source));
        }
    }

    #[test]
    fn statuses_follow_the_source() {
        assert_eq!(EdgeError::upstream_timeout("x").status(), StatusCode::GATEWAY_TIMEOUT);
        assert_eq!(EdgeError::payload_too_large(10).status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(EdgeError::no_route().status(), StatusCode::NOT_FOUND);
        assert_eq!(EdgeError::bad_request("x").source_kind(), Source::Client);
    }
}
