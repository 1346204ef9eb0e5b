//! Serving a gateway's OpenAPI document: rendered once when the app is built, then served as
//! bytes at `/openapi.json` on every request without re-serialising.
//!
//! It also holds the error responses every gateway documents alike (401 by kind of caller, 403,
//! 413, 415, 502, 503, 504): the edge produces them, so the edge describes them, once. A route
//! lists them by name in its `#[utoipa::path(responses(...))]` beside the answers only it gives
//! (its 200, its 400 naming its own checks, its 404):
//!
//! ```ignore
//! responses(
//!     (status = 200, description = "The page", body = Page),
//!     (status = 400, description = "A malformed id (`invalid_id`)", body = Problem),
//!     InvalidToken, UpstreamFailure, Unavailable, UpstreamTimeout,
//! )
//! ```

use axum::http::header;
use bytes::Bytes;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::{
    access::{Access, Routes},
    error::Problem,
};

/// The document as pretty JSON, the form `/openapi.json` serves and `openapi/` keeps.
pub fn pretty(document: &utoipa::openapi::OpenApi) -> String {
    // Serialising a derived document cannot fail: it holds only strings, numbers and maps.
    serde_json::to_string_pretty(document).unwrap_or_else(|_| "{}".to_owned())
}

/// Declares the `bearer` scheme (a JWT in `Authorization: Bearer`) that operations name in
/// their `security`, described for this gateway's callers.
pub fn add_bearer_scheme(openapi: &mut utoipa::openapi::OpenApi, description: &str) {
    let bearer = HttpBuilder::new()
        .scheme(HttpAuthScheme::Bearer)
        .bearer_format("JWT")
        .description(Some(description))
        .build();
    openapi
        .components
        .get_or_insert_with(Default::default)
        .add_security_scheme("bearer", SecurityScheme::Http(bearer));
}

/// Declares the `api_key` scheme: a partner key in the `X-Api-Key` header.
pub fn add_api_key_scheme(openapi: &mut utoipa::openapi::OpenApi, description: &str) {
    let api_key = ApiKey::Header(ApiKeyValue::with_description("X-Api-Key", description));
    openapi
        .components
        .get_or_insert_with(Default::default)
        .add_security_scheme("api_key", SecurityScheme::ApiKey(api_key));
}

/// The public route serving `document` at `/openapi.json`: integrators read it before they
/// hold any credentials.
pub fn routes(document: &utoipa::openapi::OpenApi) -> Routes {
    let body = Bytes::from(pretty(document));
    Routes::new().get("/openapi.json", Access::public(), move || {
        let body = body.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], body) }
    })
}

// === Shared error responses ===
//
// Each is a problem+json body. The field is private and never read: these types only describe
// responses (the field's type is the body's schema); the edge builds the real ones from
// `EdgeError`.

/// 401 where credentials are required from a shopper (a user's token).
#[derive(Debug, utoipa::IntoResponses)]
#[response(
    status = 401,
    description = "No token (`unauthenticated`), or an invalid or expired one, or one for \
another gateway (`invalid_token`)",
    content_type = "application/problem+json",
    headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"portico\"`, with \
`error=\"invalid_token\"` when a token was refused"))
)]
#[allow(dead_code)] // see above: a description, never built
pub struct Unauthorized(Problem<'static>);

/// 401 on a public route that also accepts a token: only a token that was sent and refused.
#[derive(Debug, utoipa::IntoResponses)]
#[response(
    status = 401,
    description = "A token was sent and is invalid or expired, or is for another gateway \
(`invalid_token`); without a token the same request is served anonymously",
    content_type = "application/problem+json",
    headers(("WWW-Authenticate" = String, description = "`Bearer` with `error=\"invalid_token\"`"))
)]
#[allow(dead_code)] // see above: a description, never built
pub struct InvalidToken(Problem<'static>);

/// 401 on a partner route: an API key or a client-credentials token is required.
#[derive(Debug, utoipa::IntoResponses)]
#[response(
    status = 401,
    description = "No credentials (`unauthenticated`), a token that is invalid, expired or for \
another gateway (`invalid_token`), or an unknown API key (`invalid_api_key`)",
    content_type = "application/problem+json",
    headers(("WWW-Authenticate" = String, description = "`Bearer realm=\"portico\"` (with \
`error=\"invalid_token\"` for a refused token), or `ApiKey realm=\"portico\"` for a refused key"))
)]
#[allow(dead_code)] // see above: a description, never built
pub struct PartnerUnauthorized(Problem<'static>);

/// 429: the caller's plan (or its address, after failed authentications) refuses the call for
/// now.
#[derive(Debug, utoipa::IntoResponses)]
#[response(
    status = 429,
    description = "Over the plan's rate or today's quota, or too many failed authentications from this address (`rate_limited`); admitted answers carry `RateLimit` too",
    content_type = "application/problem+json",
    headers(
        ("Retry-After" = u64, description = "Seconds until a retry may be admitted"),
        ("RateLimit-Policy" = String, description = "The plan's limits (draft-ietf-httpapi-ratelimit-headers), e.g. `\"burst\";q=10;w=2, \"day\";q=10000;w=86400`"),
        ("RateLimit" = String, description = "What is left of each limit and in how many seconds it resets, e.g. `\"burst\";r=0;t=2, \"day\";r=9000;t=43200`")
    )
)]
#[allow(dead_code)] // see above: a description, never built
pub struct RateLimited(Problem<'static>);

/// 403: a known caller who may not do this.
#[derive(Debug, utoipa::IntoResponses)]
#[response(
    status = 403,
    description = "The caller is known but may not do this (`forbidden`): not the kind of \
caller the route is for (a shopper's token on a partner route, a partner's on a shopper's), or \
without the scope the operation's `security` names",
    content_type = "application/problem+json"
)]
#[allow(dead_code)] // see above: a description, never built
pub struct Forbidden(Problem<'static>);

/// 413: the body is over the gateway's size limit.
#[derive(Debug, utoipa::IntoResponses)]
#[response(
    status = 413,
    description = "The body is larger than the gateway accepts (`payload_too_large`)",
    content_type = "application/problem+json"
)]
#[allow(dead_code)] // see above: a description, never built
pub struct PayloadTooLarge(Problem<'static>);

/// 415: a body the gateway parses was not sent as JSON.
#[derive(Debug, utoipa::IntoResponses)]
#[response(
    status = 415,
    description = "The body is not declared as JSON (`unsupported_media_type`); send \
`Content-Type: application/json`",
    content_type = "application/problem+json"
)]
#[allow(dead_code)] // see above: a description, never built
pub struct UnsupportedMediaType(Problem<'static>);

/// 502: a backend failed.
#[derive(Debug, utoipa::IntoResponses)]
#[response(
    status = 502,
    description = "A backend service failed, could not be reached, or gave an answer the \
gateway cannot use (`upstream_error`, `upstream_unavailable`); a change the request asked for \
was not confirmed",
    content_type = "application/problem+json"
)]
#[allow(dead_code)] // see above: a description, never built
pub struct UpstreamFailure(Problem<'static>);

/// 503: a required backend is refusing calls for now, or credentials cannot be checked.
#[derive(Debug, utoipa::IntoResponses)]
#[response(
    status = 503,
    description = "A required backend is failing (its circuit breaker is open, \
`upstream_circuit_open`) or at its concurrency limit (`upstream_overloaded`), or credentials \
cannot be checked right now (`auth_unavailable`); try again shortly",
    content_type = "application/problem+json",
    headers(("Retry-After" = u16, description = "Seconds after which a retry may succeed, when \
known"))
)]
#[allow(dead_code)] // see above: a description, never built
pub struct Unavailable(Problem<'static>);

/// 504: a backend or the whole request ran past its deadline.
#[derive(Debug, utoipa::IntoResponses)]
#[response(
    status = 504,
    description = "A backend service did not answer in time (`upstream_timeout`), or the \
whole request ran past its deadline (`gateway_timeout`); a change the request asked for was \
not confirmed",
    content_type = "application/problem+json"
)]
#[allow(dead_code)] // see above: a description, never built
pub struct UpstreamTimeout(Problem<'static>);
