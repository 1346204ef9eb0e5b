//! Bearer token verification: the checks that run before any cryptography (size, shape,
//! algorithm allow-list, `kid`), the signature against the pinned key, then the claims.
//!
//! The header is read here rather than trusted to the JWT library, because what it may say is
//! policy: only `alg` and `kid` are used; `jku`, `x5u`, `jwk` and `x5c` are never followed (a
//! token must not choose the key that verifies it), and `crit` extensions are refused since
//! none is understood (RFC 7515 §4.1.11).

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, Validation, errors::ErrorKind};
use serde::{Deserialize, de::IgnoredAny};
use serde_json::{Map, Value};

use super::{AuthError, Credential, Principal, PrincipalKind};

/// The parts of a JOSE header verification uses.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct TokenHeader {
    pub(super) alg: Algorithm,
    pub(super) kid: String,
}

/// Parses the header of a compact JWS after checking its size and shape. Rejects algorithms
/// outside the allow-list (`none`, every HMAC, …) before any key is looked up.
pub(super) fn parse_header(token: &str, max_bytes: usize) -> Result<TokenHeader, AuthError> {
    if token.len() > max_bytes {
        return Err(AuthError::TooLarge { limit: max_bytes });
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(_signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("not three dot-separated segments"));
    };
    if header.is_empty() || payload.is_empty() {
        return Err(AuthError::Malformed("an empty segment"));
    }

    #[derive(Deserialize)]
    struct RawHeader {
        alg: String,
        #[serde(default)]
        kid: Option<String>,
        #[serde(default)]
        crit: Option<IgnoredAny>,
    }
    let json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| AuthError::Malformed("the header is not base64url"))?;
    // Duplicate members are an error here (serde refuses a repeated field), so this parse and
    // the library's cannot disagree about which `alg` the token names.
    let raw: RawHeader = serde_json::from_slice(&json)
        .map_err(|_| AuthError::Malformed("the header is not a JOSE header"))?;
    if raw.crit.is_some() {
        return Err(AuthError::Malformed("critical header extensions"));
    }
    let alg = match raw.alg.as_str() {
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "RS256" => Algorithm::RS256,
        // `none` would skip the signature; HMAC with a public key as the secret is the classic
        // key-confusion forgery. Neither is ever accepted, whatever the key set holds.
        _ => return Err(AuthError::Algorithm),
    };
    let kid = raw.kid.filter(|kid| !kid.is_empty()).ok_or(AuthError::Malformed("no kid"))?;
    Ok(TokenHeader { alg, kid })
}

/// The claim checks, for one algorithm. Built once per algorithm at start-up: a `Validation`
/// holds sets that would otherwise be allocated per request.
pub(super) fn validation(
    alg: Algorithm,
    issuer: &str,
    audience: &str,
    leeway_secs: u64,
) -> Validation {
    let mut validation = Validation::new(alg);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.set_issuer(&[issuer]);
    validation.set_audience(&[audience]);
    validation.validate_exp = true;
    validation.validate_nbf = true;
    validation.leeway = leeway_secs;
    validation
}

/// Maps the JWT library's failures to reasons.
pub(super) fn classify(error: &jsonwebtoken::errors::Error) -> AuthError {
    match error.kind() {
        ErrorKind::InvalidSignature
        | ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => AuthError::Signature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidAudience => AuthError::Audience,
        ErrorKind::InvalidIssuer => AuthError::Issuer,
        ErrorKind::InvalidAlgorithm
        | ErrorKind::MissingAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::UnsupportedAlgorithm => AuthError::Algorithm,
        ErrorKind::MissingRequiredClaim(_) => AuthError::Claims("a required claim is missing"),
        ErrorKind::InvalidClaimFormat(_) | ErrorKind::InvalidSubject => {
            AuthError::Claims("a claim has the wrong type")
        }
        _ => AuthError::Malformed("the token does not decode"),
    }
}

/// The caller a verified token names. The library has checked `exp`, `nbf` and `aud`; `iss`
/// is checked again because the library also accepts an array of issuers, which is not a JWT.
pub(super) fn principal(claims: &Map<String, Value>, issuer: &str) -> Result<Principal, AuthError> {
    if claims.get("iss").and_then(Value::as_str) != Some(issuer) {
        return Err(AuthError::Issuer);
    }
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .filter(|sub| !sub.is_empty())
        .ok_or(AuthError::Claims("`sub` is not a non-empty string"))?;
    let scopes = match claims.get("scope") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(scope)) => scope.split_whitespace().map(str::to_owned).collect(),
        Some(_) => return Err(AuthError::Claims("`scope` is not a string")),
    };
    // A client-credentials token names its OAuth client (RFC 9068 §2.2): that is a partner,
    // and the partner id is the subject backends see.
    let (kind, subject) = match claims.get("client_id") {
        None | Some(Value::Null) => (PrincipalKind::User, sub),
        Some(Value::String(client)) if !client.is_empty() => (PrincipalKind::Partner, &**client),
        Some(_) => return Err(AuthError::Claims("`client_id` is not a non-empty string")),
    };
    Ok(Principal {
        kind,
        subject: subject.to_owned(),
        scopes,
        plan: None,
        credential: Credential::Token,
    })
}
