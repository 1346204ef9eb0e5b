//! The signed-in customer: the verified caller's subject, and nothing the client sends. Handlers
//! of a customer's own data take a [`Customer`], so no query parameter or header can name
//! somebody else.

use axum::{
    extract::FromRequestParts,
    http::request::Parts,
    response::{IntoResponse, Response},
};
use portico_edge::{
    access::{Caller, Denied},
    auth::PrincipalKind,
    params,
};

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
        let Caller(principal) = Caller::from_request_parts(parts, state).await?;
        // The route's access rule admits users only; this keeps a partner out even if a route
        // were declared more loosely by mistake.
        if principal.kind != PrincipalKind::User {
            return Err(Denied::Forbidden(None).into_response());
        }
        // The subject is copied into the orders service's query: it must be an id like any
        // other we copy. A verified token with an odd subject is allowed in, but not served.
        match params::id("sub", &principal.subject) {
            Ok(id) => Ok(Self(id.to_owned())),
            Err(_) => {
                tracing::warn!("a user token's subject is not a customer id");
                Err(Denied::Forbidden(None).into_response())
            }
        }
    }
}
