//! Who is calling: bearer JWTs verified against the issuer's JWKS, and partner API keys.
//!
//! An [`Authenticator`] is built from the `[auth]` config with no I/O. The first token makes it
//! fetch the issuer's key set, which is then cached, refreshed in the background, refetched
//! (boundedly) when a token names an unknown key, and kept through an outage up to
//! `max_staleness` (the `jwks` module tells the rules). Every token check that can run before
//! cryptography does: size, shape, an algorithm allow-list, a `kid`, and the key's own pinned
//! algorithm.
//!
//! Failures carry a precise [`AuthError::reason`] for logs and metrics, while clients get one
//! generic `invalid_token` (or `invalid_api_key`) answer, so a forger learns nothing about
//! which check failed. Tokens and keys are never logged, and `Debug` never prints key material.

mod api_key;
mod config;
mod error;
mod jwks;
mod jwt;

#[cfg(test)]
mod test_keys;
#[cfg(test)]
mod tests;

use std::{fmt, sync::Arc};

use http::{HeaderMap, HeaderName, header};
use jsonwebtoken::{Algorithm, Validation};
use serde_json::{Map, Value};

pub use api_key::{generate_api_key, hash_api_key};
pub use config::{ApiKeyConfig, AuthConfig};
pub use error::{AuthError, forbidden, unauthenticated};

use crate::config::ConfigError;

/// The header partners send their API key in.
pub static API_KEY_HEADER: HeaderName = HeaderName::from_static("x-api-key");

/// Who is calling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// A user, or a partner (an API key, or a token issued to an OAuth client).
    pub kind: PrincipalKind,
    /// The user name, or the partner id (`acme`) for partner tokens and API keys.
    pub subject: String,
    /// What the caller may do.
    pub scopes: Vec<String>,
    /// The partner's plan (API keys only).
    pub plan: Option<String>,
    /// How the caller proved who it is.
    pub credential: Credential,
}

/// The kind of caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrincipalKind {
    /// An end user, signed in to one of the apps.
    User,
    /// A partner: an API key, or a token that names an OAuth client (`client_id`).
    Partner,
}

/// The credential a caller presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    /// A bearer JWT.
    Token,
    /// An `X-Api-Key`.
    ApiKey,
}

// === impl Principal ===

impl Principal {
    /// Whether the caller holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    /// The scopes, space-separated (as in a token's `scope` claim).
    pub fn scope_header(&self) -> String {
        self.scopes.join(" ")
    }
}

/// Verifies credentials. Cheap to clone: clones share the key cache.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

struct Inner {
    issuer: String,
    audience: String,
    max_token_bytes: usize,
    /// One per allowed algorithm, built once (see [`jwt::validation`]).
    validations: [(Algorithm, Validation); 3],
    jwks: Arc<jwks::Jwks>,
    api_keys: api_key::ApiKeys,
    /// Tokens verified lately, by digest: a signature check costs ~80 µs, a lookup ~1 µs.
    verified: crate::bounded::Lru<[u8; 32], Verified>,
    /// The longest a verified token is trusted without checking it again.
    refresh_interval: std::time::Duration,
    /// Signatures checked (tests: to see the cache work).
    #[cfg(test)]
    signature_checks: std::sync::atomic::AtomicUsize,
}

/// A token verified earlier: whom it names, the key that signed it, and until when it holds
/// (its `exp`, and at most a JWKS refresh interval, so a rotated-out key stops it soon).
struct Verified {
    principal: Principal,
    kid: String,
    until: tokio::time::Instant,
}

/// Verified tokens remembered at most (least recently used forgotten first).
const VERIFIED_TOKENS: usize = 16_384;

impl fmt::Debug for Authenticator {
    // Names and counts only: no key, hash or token ever reaches a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator")
            .field("issuer", &self.inner.issuer)
            .field("audience", &self.inner.audience)
            .field("jwks", &self.inner.jwks)
            .field("api_keys", &self.inner.api_keys)
            .finish()
    }
}

// === impl Authenticator ===

impl Authenticator {
    /// Validates `config` and prepares the verifier. No I/O: keys are fetched on the first
    /// token.
    pub fn new(config: &AuthConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let uri = config.jwks_uri()?;
        let leeway = config.leeway.as_secs();
        let validation =
            |alg| (alg, jwt::validation(alg, &config.issuer, &config.audience, leeway));
        Ok(Self {
            inner: Arc::new(Inner {
                issuer: config.issuer.clone(),
                audience: config.audience.clone(),
                max_token_bytes: config.max_token_bytes,
                validations: [
                    validation(Algorithm::ES256),
                    validation(Algorithm::ES384),
                    validation(Algorithm::RS256),
                ],
                jwks: Arc::new(jwks::Jwks::new(config, uri)),
                api_keys: api_key::ApiKeys::new(&config.api_keys),
                verified: crate::bounded::Lru::new(VERIFIED_TOKENS),
                refresh_interval: config.refresh_interval,
                #[cfg(test)]
                signature_checks: std::sync::atomic::AtomicUsize::new(0),
            }),
        })
    }

    /// Finds and verifies the credentials in `headers`: `Authorization: Bearer <jwt>` or
    /// `X-Api-Key`. `Ok(None)` means no credentials were sent; sending both, or either twice,
    /// is an invalid request (it would be unclear which one was checked).
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Option<Principal>, AuthError> {
        let authorization = single(headers, &header::AUTHORIZATION)?.map(|v| v.as_bytes());
        let api_key = single(headers, &API_KEY_HEADER)?.map(|v| v.as_bytes());
        self.authenticate_values(authorization, api_key, false).await
    }

    /// [`Authenticator::authenticate`] over the raw values of the one `Authorization` and the
    /// one `X-Api-Key` header (the edge pipeline has refused repeated ones already).
    /// `other_schemes`: an `Authorization` that is not Bearer belongs to the upstream (a route
    /// with `forward_authorization`) and is not inspected.
    pub async fn authenticate_values(
        &self,
        authorization: Option<&[u8]>,
        api_key: Option<&[u8]>,
        other_schemes: bool,
    ) -> Result<Option<Principal>, AuthError> {
        let authorization = match authorization {
            Some(value) => {
                let value = std::str::from_utf8(value).map_err(|_| {
                    AuthError::InvalidRequest("the Authorization header is not text")
                })?;
                match bearer_token(value) {
                    Ok(token) => Some(token),
                    Err(_) if other_schemes && !is_bearer(value) => None,
                    Err(error) => return Err(error),
                }
            }
            None => None,
        };
        match (authorization, api_key) {
            (None, None) => Ok(None),
            (Some(_), Some(_)) => {
                Err(AuthError::InvalidRequest("send either a bearer token or an API key, not both"))
            }
            (Some(token), None) => self.verify_token(token).await.map(Some),
            (None, Some(value)) => {
                let key = std::str::from_utf8(value).map_err(|_| AuthError::ApiKey)?;
                if key.is_empty() {
                    return Err(AuthError::InvalidRequest("the X-Api-Key header is empty"));
                }
                self.verify_api_key(key).map(Some)
            }
        }
    }

    /// Verifies a bearer JWT: size, header, key (fetched if need be), algorithm, signature,
    /// then `exp`, `nbf`, `iss`, `aud` and `sub`.
    pub async fn verify_token(&self, token: &str) -> Result<Principal, AuthError> {
        let inner = &self.inner;
        // A remembered token is looked up before anything is parsed; the size bound first, so
        // an oversized one is never even hashed.
        if token.len() > inner.max_token_bytes {
            return Err(AuthError::TooLarge { limit: inner.max_token_bytes });
        }
        let digest: [u8; 32] =
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes())
                .as_ref()
                .try_into()
                .map_err(|_| AuthError::Malformed("digest"))?;
        let spread = u64::from_le_bytes(digest[..8].try_into().unwrap_or_default());
        let now = tokio::time::Instant::now();
        {
            let mut verified = inner.verified.shard(spread);
            if let Some(entry) = verified.get(&digest) {
                // Still valid, and its key still in the set the JWKS holds now.
                let current = inner.jwks.snapshot();
                if now < entry.until && current.is_some_and(|set| set.holds(&entry.kid)) {
                    return Ok(entry.principal.clone());
                }
                verified.pop(&digest);
            }
        }
        let header = jwt::parse_header(token, inner.max_token_bytes)?;
        let set = inner.jwks.find(&header.kid).await?;
        let key = set.get(&header.kid).ok_or(AuthError::UnknownKey)?;
        // Pinned: the key decides the algorithm, the token only gets to agree.
        if key.algorithm != header.alg {
            return Err(AuthError::Algorithm);
        }
        let validation = inner
            .validations
            .iter()
            .find(|(alg, _)| *alg == key.algorithm)
            .map(|(_, validation)| validation)
            .ok_or(AuthError::Algorithm)?;
        #[cfg(test)]
        inner.signature_checks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, validation)
            .map_err(|e| jwt::classify(&e))?;
        let principal = jwt::principal(&data.claims, &inner.issuer)?;
        // Trusted again without a signature check until `exp` (the validation required it),
        // and never longer than a JWKS refresh interval.
        let unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let exp = data.claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        let left = std::time::Duration::from_secs(exp.saturating_sub(unix));
        let until = now + left.min(inner.refresh_interval);
        let entry = Verified { principal: principal.clone(), kid: header.kid.clone(), until };
        inner.verified.shard(spread).put(digest, entry);
        Ok(principal)
    }

    /// Verifies a partner API key against the configured hashes.
    pub fn verify_api_key(&self, key: &str) -> Result<Principal, AuthError> {
        self.inner.api_keys.verify(key)
    }

    /// Signatures checked so far (tests only).
    #[cfg(test)]
    pub(crate) fn signature_checks(&self) -> usize {
        self.inner.signature_checks.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Waits for a background JWKS refresh to finish (tests only: they never sleep).
    #[cfg(test)]
    pub(crate) async fn settle(&self) {
        self.inner.jwks.settle().await;
    }
}

/// The one value of `name`, or an error if the header is repeated: two tokens (or two keys)
/// would leave it open which one was checked.
fn single<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
) -> Result<Option<&'a http::HeaderValue>, AuthError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        return Err(AuthError::InvalidRequest("a credential header is repeated"));
    }
    Ok(first)
}

/// Whether an `Authorization` value uses the Bearer scheme.
fn is_bearer(value: &str) -> bool {
    value.split_once(' ').map_or(value, |(scheme, _)| scheme).eq_ignore_ascii_case("bearer")
}

/// The token of an `Authorization: Bearer <token>` value (the scheme is case-insensitive,
/// RFC 9110 §11.1).
fn bearer_token(value: &str) -> Result<&str, AuthError> {
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::InvalidRequest("the Authorization scheme must be Bearer"));
    }
    let token = token.trim_matches(' ');
    if token.is_empty() {
        return Err(AuthError::InvalidRequest("the bearer token is missing"));
    }
    Ok(token)
}
