//! Why credentials were refused, and the responses clients get: RFC 6750 challenges with
//! problem+json bodies that never say which check failed.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};

use crate::error::{EdgeError, Source};

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
const RETRY_AFTER_SECS: u16 = 5;

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

impl From<AuthError> for EdgeError {
    /// One generic answer per kind of credential, so a client cannot probe which check a
    /// forged token fails; the reason goes to the log and the metrics.
    fn from(error: AuthError) -> Self {
        let status = error.status();
        match error {
            AuthError::ApiKey => EdgeError::from_status(status, "invalid_api_key")
                .with_detail("the API key is invalid")
                .with_challenge(HeaderValue::from_static(r#"ApiKey realm="portico""#)),
            // The request's shape, not a secret check: saying what to fix is safe.
            AuthError::InvalidRequest(why) => {
                EdgeError::from_status(status, "invalid_request").with_detail(why).with_challenge(
                    HeaderValue::from_static(r#"Bearer realm="portico", error="invalid_request""#),
                )
            }
            // The identity provider cannot be reached: an upstream's failure, logged as one.
            AuthError::KeysUnavailable => EdgeError::from_status(status, "auth_unavailable")
                .with_detail("credentials cannot be verified right now; retry later")
                .with_retry_after(RETRY_AFTER_SECS)
                .from_source(Source::Upstream),
            _ => EdgeError::from_status(status, "invalid_token")
                .with_detail("the access token is invalid or expired")
                .with_challenge(HeaderValue::from_static(
                    r#"Bearer realm="portico", error="invalid_token""#,
                )),
        }
    }
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        EdgeError::from(self).into_response()
    }
}

/// 401 for a request with no credentials on a route that needs them. The challenge carries no
/// error code (RFC 6750 §3.1: the client did not try to authenticate).
pub fn unauthenticated() -> EdgeError {
    EdgeError::from_status(StatusCode::UNAUTHORIZED, "unauthenticated")
        .with_detail("this route needs an access token or an API key")
        .with_challenge(HeaderValue::from_static(BEARER))
}

/// 403 for an authenticated caller lacking `scope`, or (`None`) of a kind the route does not
/// admit. A named scope is also given in the `insufficient_scope` challenge (RFC 6750 §3.1).
pub fn forbidden(scope: Option<&str>) -> EdgeError {
    let detail = match scope {
        Some(scope) => format!("the caller lacks the scope `{scope}`"),
        None => "the caller may not call this route".to_owned(),
    };
    let problem = EdgeError::from_status(StatusCode::FORBIDDEN, "forbidden").with_detail(detail);
    // A scope that cannot be a quoted-string (RFC 6750 allows neither `"` nor `\` in scopes)
    // is left out of the challenge rather than mangled; the body still names it.
    let challenge = scope
        .filter(|s| !s.contains(['"', '\\']))
        .map(|s| format!(r#"{BEARER}, error="insufficient_scope", scope="{s}""#))
        .and_then(|c| HeaderValue::from_str(&c).ok());
    match challenge {
        Some(challenge) => problem.with_challenge(challenge),
        None => problem,
    }
}
