//! Why credentials were refused, and the responses clients get: RFC 6750 challenges with
//! problem+json bodies that never say which check failed.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::error::{EdgeError, problem_response};

/// Why a credential was refused. The variant is for logs and metrics ([`AuthError::reason`]);
/// the client only learns that its token (or key) is invalid.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The token is not a compact JWS with a usable header.
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The token is longer than `max_token_bytes`; it was not parsed.
    #[error("token longer than {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: usize,
    },
    /// The signature does not verify with the key the token names.
    #[error("the token signature does not verify")]
    Signature,
    /// The header's `alg` is not allowed at all (`none`, HMAC, …) or not the algorithm of the
    /// key the token names.
    #[error("the token algorithm is not allowed for its key")]
    Algorithm,
    /// The token names a key (`kid`) the issuer does not publish.
    #[error("the token names an unknown signing key")]
    UnknownKey,
    /// `exp` has passed (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// `nbf` is still in the future (beyond the leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
    /// The token is for another audience (another gateway).
    #[error("the token is for another audience")]
    Audience,
    /// The token comes from another issuer.
    #[error("the token comes from another issuer")]
    Issuer,
    /// A required claim is missing or has the wrong type.
    #[error("invalid token claims: {0}")]
    Claims(&'static str),
    /// No configured API key matches.
    #[error("unknown API key")]
    ApiKey,
    /// The request's credentials are ambiguous or in an unsupported form.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The signing keys could not be fetched and the last good ones are too old (or there are
    /// none): the gateway cannot tell a valid token from a forged one.
    #[error("the signing keys are unavailable")]
    KeysUnavailable,
}

/// The realm of every challenge.
const BEARER: &str = r#"Bearer realm="portico""#;
/// Seconds a client should wait after a 503: an identity provider outage seldom heals within
/// the second, and the gateway itself retries the JWKS on the next requests anyway.
const RETRY_AFTER_SECS: &str = "5";

// === impl AuthError ===

impl AuthError {
    /// Short stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed",
            Self::TooLarge { .. } => "too_large",
            Self::Signature => "signature",
            Self::Algorithm => "algorithm",
            Self::UnknownKey => "unknown_key",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Audience => "audience",
            Self::Issuer => "issuer",
            Self::Claims(_) => "claims",
            Self::ApiKey => "api_key",
            Self::InvalidRequest(_) => "invalid_request",
            Self::KeysUnavailable => "keys_unavailable",
        }
    }

    /// The HTTP status the client gets.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            Self::KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        // The reason goes to the log (at debug: refused credentials are routine, and a scanner
        // must not flood the logs); the client gets one generic answer per kind of credential,
        // so it cannot probe which check a forged token fails.
        tracing::debug!(reason = self.reason(), error = %self, "credentials refused");
        let status = self.status();
        let (problem, challenge) = match self {
            Self::ApiKey => (
                EdgeError::from_status(status, "invalid_api_key")
                    .with_detail("the API key is invalid"),
                Some(HeaderValue::from_static(r#"ApiKey realm="portico""#)),
            ),
            Self::InvalidRequest(why) => (
                // The request's shape, not a secret check: saying what to fix is safe.
                EdgeError::from_status(status, "invalid_request").with_detail(why),
                Some(HeaderValue::from_static(
                    r#"Bearer realm="portico", error="invalid_request""#,
                )),
            ),
            Self::KeysUnavailable => (
                EdgeError::from_status(status, "auth_unavailable")
                    .with_detail("credentials cannot be verified right now; retry later"),
                None,
            ),
            _ => (
                EdgeError::from_status(status, "invalid_token")
                    .with_detail("the access token is invalid or expired"),
                Some(HeaderValue::from_static(r#"Bearer realm="portico", error="invalid_token""#)),
            ),
        };
        // Rendered directly rather than through `EdgeError::into_response`, which would log a
        // 503 at error level on every request of an outage; the JWKS fetch failures are logged
        // (at warn) where they happen.
        let mut response = problem_response(problem.status(), &problem.problem());
        let headers = response.headers_mut();
        if let Some(challenge) = challenge {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static(RETRY_AFTER_SECS));
        }
        response
    }
}

/// 401 for a request with no credentials on a route that needs them. The challenge carries no
/// error code (RFC 6750 §3.1: the client did not try to authenticate).
pub fn unauthenticated() -> Response {
    let problem = EdgeError::from_status(StatusCode::UNAUTHORIZED, "unauthenticated")
        .with_detail("this route needs an access token or an API key");
    let mut response = problem_response(problem.status(), &problem.problem());
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(BEARER));
    response
}

/// 403 for an authenticated caller lacking `scope`, or (`None`) of a kind the route does not
/// admit. A named scope is also given in the `insufficient_scope` challenge (RFC 6750 §3.1).
pub fn forbidden(scope: Option<&str>) -> Response {
    let detail = match scope {
        Some(scope) => format!("the caller lacks the scope `{scope}`"),
        None => "the caller may not call this route".to_owned(),
    };
    let problem = EdgeError::from_status(StatusCode::FORBIDDEN, "forbidden").with_detail(detail);
    let mut response = problem_response(problem.status(), &problem.problem());
    // A scope that cannot be a quoted-string (RFC 6750 allows neither `"` nor `\` in scopes)
    // is left out of the challenge rather than mangled; the body still names it.
    let challenge = scope
        .filter(|s| !s.contains(['"', '\\']))
        .map(|s| format!(r#"{BEARER}, error="insufficient_scope", scope="{s}""#))
        .and_then(|c| HeaderValue::from_str(&c).ok());
    if let Some(challenge) = challenge {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}
