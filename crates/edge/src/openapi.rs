//! Serving a gateway's OpenAPI document: rendered once when the app is built, then served as
//! bytes at `/openapi.json` on every request without re-serialising.

use axum::http::header;
use bytes::Bytes;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use crate::access::{Access, Routes};

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
