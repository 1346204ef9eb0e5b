//! The signed-in customer: the verified caller's subject, and nothing the client sends. Handlers
//! of a customer's own data take a [`Customer`], so no query parameter or header can name
//! somebody else.

use axum::{extract::FromRequestParts, http::request::Parts, response::Response};
use portico_edge::{access, auth::PrincipalKind};

/// The customer a user token was issued to, e.g. `alice`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Customer(String);

// === impl Customer ===

impl Customer {
    /// The customer id the orders service files this customer's orders under.
    pub fn id(&self) -> &str {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Customer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Users only; the subject is copied into the orders service's query, so it must be an id.
        access::subject_id(parts, state, PrincipalKind::User).await.map(Self)
    }
}
