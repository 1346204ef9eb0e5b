//! Who is calling. Interim: until authentication lands, a partner names itself in the
//! `X-Partner-Id` header. Handlers take a [`Partner`] and never read the header themselves, so
//! swapping the header for verified client credentials later changes this module only.

use axum::{extract::FromRequestParts, http::request::Parts};
use portico_edge::{EdgeError, params};

/// The request header naming the calling partner.
pub const HEADER: &str = "x-partner-id";

/// The calling partner, e.g. `acme`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partner(String);

// === impl Partner ===

impl Partner {
    /// The customer id the orders service files this partner's orders under. The `partner:`
    /// prefix keeps partner ids from ever colliding with a shopper's.
    pub fn customer_id(&self) -> String {
        format!("partner:{}", self.0)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Partner {
    type Rejection = EdgeError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let value = parts.headers.get(HEADER).ok_or_else(|| {
            EdgeError::invalid(
                "missing_partner",
                "the `X-Partner-Id` header must name the calling partner",
            )
        })?;
        let value = value.to_str().unwrap_or_default();
        // The id ends up in the orders service's customer id: same rules as any id we copy.
        params::id("X-Partner-Id", value).map(|id| Self(id.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    async fn partner(header: Option<&str>) -> Result<Partner, EdgeError> {
        let mut request = Request::get("/");
        if let Some(value) = header {
            request = request.header("X-Partner-Id", value);
        }
        let (mut parts, ()) = request.body(()).unwrap().into_parts();
        Partner::from_request_parts(&mut parts, &()).await
    }

    #[tokio::test]
    async fn the_header_names_the_partner() {
        assert_eq!(partner(Some("acme")).await.unwrap().customer_id(), "partner:acme");
        assert_eq!(partner(None).await.unwrap_err().code(), "missing_partner");
        for bad in ["", "acme:admin", "a/b", "acme bob"] {
            assert_eq!(partner(Some(bad)).await.unwrap_err().code(), "invalid_id", "{bad:?}");
        }
    }
}
