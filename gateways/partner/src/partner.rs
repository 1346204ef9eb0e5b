//! Who is calling: the partner the edge verified, by API key (`X-Api-Key`) or by OAuth client
//! credentials (a bearer token). Handlers take a [`Partner`] and never read credentials
//! themselves; nothing the client sends besides its credentials can name a partner.

use axum::{extract::FromRequestParts, http::request::Parts, response::Response};
use portico_edge::{access, auth::PrincipalKind};

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
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Partners only; the id ends up in the orders service's customer id, so it must be an id.
        access::subject_id(parts, state, PrincipalKind::Partner).await.map(Self)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::http::{Request, StatusCode};
    use portico_edge::auth::{Credential, Principal};

    use super::*;

    async fn partner(principal: Option<Principal>) -> Result<Partner, Response> {
        let (mut parts, ()) = Request::get("/").body(()).unwrap().into_parts();
        if let Some(principal) = principal {
            parts.extensions.insert(Arc::new(principal));
        }
        Partner::from_request_parts(&mut parts, &()).await
    }

    fn principal(kind: PrincipalKind, subject: &str) -> Principal {
        Principal {
            kind,
            subject: subject.into(),
            scopes: vec!["orders:read".into()],
            plan: None,
            credential: Credential::Token,
        }
    }

    #[tokio::test]
    async fn the_verified_partner_is_the_caller() {
        let acme = partner(Some(principal(PrincipalKind::Partner, "acme"))).await.unwrap();
        assert_eq!(acme.customer_id(), "partner:acme");
        assert_eq!(partner(None).await.unwrap_err().status(), StatusCode::UNAUTHORIZED);
        let shopper = partner(Some(principal(PrincipalKind::User, "alice"))).await.unwrap_err();
        assert_eq!(shopper.status(), StatusCode::FORBIDDEN);
        for bad in ["", "acme:admin", "a/b", "acme bob"] {
            let refused = partner(Some(principal(PrincipalKind::Partner, bad))).await.unwrap_err();
            assert_eq!(refused.status(), StatusCode::FORBIDDEN, "{bad:?}");
        }
    }
}
