//! Serving a gateway's OpenAPI document: rendered once when the app is built, then served as
//! bytes at `/openapi.json` on every request without re-serialising.

use axum::http::header;
use bytes::Bytes;

use crate::access::{Access, Routes};

/// The document as pretty JSON, the form `/openapi.json` serves and `openapi/` keeps.
pub fn pretty(document: &utoipa::openapi::OpenApi) -> String {
    // Serialising a derived document cannot fail: it holds only strings, numbers and maps.
    serde_json::to_string_pretty(document).unwrap_or_else(|_| "{}".to_owned())
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
