//! The identity service (HTTP): signs short-lived ES256 access tokens for the demo users and
//! partner clients, and publishes the verification key as a JWKS so gateways can check tokens
//! offline. The key is generated at startup and never leaves the process.

use std::fmt;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::problem::Problem;

/// Lifetime of every token, in seconds.
pub const TOKEN_TTL_SECS: u64 = 900;

/// Audiences `POST /token` signs for, one per gateway.
pub const AUDIENCES: [&str; 3] = ["mobile", "web", "partner"];

/// The demo users `POST /token` knows.
pub const USERS: [&str; 2] = ["alice", "bob"];

/// Scope of a demo user's token.
pub const USER_SCOPE: &str = "profile catalog:read orders:read orders:write";

/// The partner clients of `POST /oauth/token`: (client id, secret, scopes it may be granted).
/// `globex` is read-only, so the partner gateway's scope checks have a client to refuse.
pub const PARTNERS: [(&str, &str, &str); 2] = [
    ("acme", "acme-secret", "catalog:read stock:read orders:read orders:write"),
    ("globex", "globex-secret", "catalog:read stock:read orders:read"),
];

/// The identity routes over an issuer.
pub fn router(issuer: Arc<Issuer>) -> Router {
    crate::http::finish(
        Router::new()
            .route("/.well-known/jwks.json", get(jwks))
            .route("/.well-known/openid-configuration", get(openid_configuration))
            .route("/token", post(user_token))
            .route("/oauth/token", post(client_credentials))
            .with_state(issuer),
    )
}

// === Issuer ===

#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    #[error("cannot generate a P-256 key pair")]
    KeyGeneration,
    #[error("the generated public key is not an uncompressed P-256 point")]
    PublicKey,
    #[error("cannot sign a token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
}

/// The signing key and the issuer URL tokens name in `iss`.
pub struct Issuer {
    issuer: String,
    kid: String,
    key: EncodingKey,
    /// The public point's coordinates, base64url without padding, as the JWK carries them.
    x: String,
    y: String,
}

impl fmt::Debug for Issuer {
    // Never print the private key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("issuer", &self.issuer)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// The claims of every token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub iat: u64,
    pub nbf: u64,
    pub exp: u64,
    pub scope: String,
    /// The OAuth client a client-credentials token was issued to (RFC 9068 §2.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

impl Issuer {
    /// Generates a fresh ES256 key for the issuer URL (e.g. `http://127.0.0.1:7006`).
    pub fn generate(issuer: impl Into<String>) -> Result<Self, IssuerError> {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| IssuerError::KeyGeneration)?;
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
            .map_err(|_| IssuerError::KeyGeneration)?;
        // Uncompressed SEC 1 point: 0x04 || x (32 bytes) || y (32 bytes).
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 0x04 {
            return Err(IssuerError::PublicKey);
        }
        let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&point[33..65]);
        Ok(Self {
            issuer: issuer.into(),
            kid: thumbprint(&x, &y),
            key: EncodingKey::from_ec_der(pkcs8.as_ref()),
            x,
            y,
        })
    }

    /// The issuer URL, the `iss` of every token.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The key id in the JWKS and in every token header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The JSON Web Key Set with the one verification key.
    pub fn jwks(&self) -> Value {
        json!({
            "keys": [{
                "kty": "EC",
                "crv": "P-256",
                "x": self.x,
                "y": self.y,
                "kid": self.kid,
                "alg": "ES256",
                "use": "sig",
            }]
        })
    }

    /// Signs a token valid from now for [`TOKEN_TTL_SECS`].
    pub fn sign(
        &self,
        subject: &str,
        audience: &str,
        scope: &str,
        client_id: Option<&str>,
    ) -> Result<String, IssuerError> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.to_owned(),
            aud: audience.to_owned(),
            iat: now,
            nbf: now,
            exp: now + TOKEN_TTL_SECS,
            scope: scope.to_owned(),
            client_id: client_id.map(str::to_owned),
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        Ok(jsonwebtoken::encode(&header, &claims, &self.key)?)
    }
}

/// RFC 7638 JWK thumbprint: a key id derived from the key itself, so it changes with the key.
fn thumbprint(x: &str, y: &str) -> String {
    // Required members only, in lexicographic order, no whitespace (RFC 7638 §3.2).
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, canonical.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

// === Handlers ===

async fn jwks(State(issuer): State<Arc<Issuer>>) -> Response {
    let mut response = Json(issuer.jwks()).into_response();
    // Gateways may cache the key set briefly; it only changes when the process restarts.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=300"));
    response
}

async fn openid_configuration(State(issuer): State<Arc<Issuer>>) -> Json<Value> {
    let base = issuer.issuer();
    Json(json!({
        "issuer": base,
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "token_endpoint": format!("{base}/oauth/token"),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": ["profile", "catalog:read", "stock:read", "orders:read", "orders:write"],
    }))
}

/// The successful body of both token endpoints (RFC 6749 §5.1).
#[derive(Debug, Serialize)]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
    scope: String,
}

impl IntoResponse for TokenResponse {
    fn into_response(self) -> Response {
        let mut response = Json(self).into_response();
        // Tokens are credentials: no cache may keep them (RFC 6749 §5.1).
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

#[derive(Debug, Deserialize)]
struct UserTokenRequest {
    subject: String,
    audience: String,
}

/// `POST /token`: a token for a demo user, as if they had logged in to one of the apps.
async fn user_token(
    State(issuer): State<Arc<Issuer>>,
    body: Result<Json<UserTokenRequest>, JsonRejection>,
) -> Result<TokenResponse, Problem> {
    let Json(request) = body.map_err(|e| Problem::bad_request("invalid_request", e.body_text()))?;
    if !AUDIENCES.contains(&request.audience.as_str()) {
        return Err(Problem::bad_request(
            "invalid_audience",
            format!("audience {:?} is not one of {}", request.audience, AUDIENCES.join(", ")),
        ));
    }
    if !USERS.contains(&request.subject.as_str()) {
        return Err(Problem::new(
            StatusCode::NOT_FOUND,
            "unknown_user",
            format!("no demo user {:?}", request.subject),
        ));
    }
    let access_token = issuer
        .sign(&request.subject, &request.audience, USER_SCOPE, None)
        .map_err(signing_failed)?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: TOKEN_TTL_SECS,
        scope: USER_SCOPE.to_owned(),
    })
}

// By value so it fits `map_err` directly.
#[allow(clippy::needless_pass_by_value)]
fn signing_failed(e: IssuerError) -> Problem {
    tracing::error!(error = %e, "cannot sign a token");
    Problem::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "the token could not be signed")
}

/// An OAuth 2.0 error response (RFC 6749 §5.2), which token clients expect instead of a problem.
#[derive(Debug)]
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self { status, error, description: description.into() }
    }

    fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    fn invalid_client() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "invalid_client", "unknown client or wrong secret")
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({"error": self.error, "error_description": self.description});
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="portico""#),
            );
        }
        response
    }
}

/// `POST /oauth/token`: the client-credentials grant for partner clients, authenticated by
/// `client_secret_post` (form fields) or `client_secret_basic` (Authorization header).
async fn client_credentials(
    State(issuer): State<Arc<Issuer>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<TokenResponse, OAuthError> {
    let form = parse_form(&body)
        .ok_or_else(|| OAuthError::invalid_request("the body is not valid form data"))?;
    let field = |name: &str| -> Result<Option<&str>, OAuthError> {
        let mut values = form.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(OAuthError::invalid_request(format!("{name} is given more than once")));
        }
        Ok(first)
    };

    match field("grant_type")? {
        None => return Err(OAuthError::invalid_request("grant_type is missing")),
        Some("client_credentials") => {}
        Some(other) => {
            return Err(OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                format!("grant_type {other:?} is not supported; use client_credentials"),
            ));
        }
    }

    let basic = basic_credentials(&headers);
    let posted = (field("client_id")?, field("client_secret")?);
    let (client_id, secret) = match (basic, posted) {
        (Some(_), (Some(_), _) | (_, Some(_))) => {
            return Err(OAuthError::invalid_request(
                "use one client authentication method, not both",
            ));
        }
        (Some((id, secret)), _) => (id, secret),
        (None, (Some(id), Some(secret))) => (id.to_owned(), secret.to_owned()),
        (None, _) => return Err(OAuthError::invalid_client()),
    };
    let (client_id, _, allowed) = PARTNERS
        .iter()
        .copied()
        .find(|(id, expected, _)| {
            *id == client_id
                && aws_lc_rs::constant_time::verify_slices_are_equal(
                    expected.as_bytes(),
                    secret.as_bytes(),
                )
                .is_ok()
        })
        .ok_or_else(OAuthError::invalid_client)?;

    // A client may ask for less than it is allowed (RFC 6749 §3.3), never for more.
    let scope = match field("scope")?.filter(|s| !s.trim().is_empty()) {
        None => allowed.to_owned(),
        Some(requested) => {
            let mut granted: Vec<&str> = Vec::new();
            for scope in requested.split_whitespace() {
                if !allowed.split(' ').any(|a| a == scope) {
                    return Err(OAuthError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid_scope",
                        format!("client {client_id} may not request {scope:?}"),
                    ));
                }
                if !granted.contains(&scope) {
                    granted.push(scope);
                }
            }
            granted.join(" ")
        }
    };

    let access_token = issuer
        .sign(&format!("partner:{client_id}"), "partner", &scope, Some(client_id))
        .map_err(|e| {
            tracing::error!(error = %e, "cannot sign a token");
            OAuthError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "the token could not be signed",
            )
        })?;
    Ok(TokenResponse { access_token, token_type: "Bearer", expires_in: TOKEN_TTL_SECS, scope })
}

/// `Authorization: Basic base64(id:secret)`, if present and well-formed.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    // RFC 6749 §2.3.1 form-encodes both before base64.
    Some((percent_decode(id)?, percent_decode(secret)?))
}

/// Parses an `application/x-www-form-urlencoded` body; `None` if it is not valid UTF-8 after
/// decoding.
fn parse_form(body: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(body).ok()?;
    text.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            Some((percent_decode(key)?, percent_decode(value)?))
        })
        .collect()
}

/// Decodes `+` and `%XX`; `None` for a malformed escape or invalid UTF-8.
fn percent_decode(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::testing::{Answer, assert_problem, get, post_json, send};
    use axum::body::Body;
    use axum::http::Request;
    use jsonwebtoken::{DecodingKey, Validation};

    const ISSUER: &str = "http://127.0.0.1:7006";

    fn app() -> Router {
        router(Arc::new(Issuer::generate(ISSUER).expect("key")))
    }

    async fn post_form(app: &Router, body: &str, authorization: Option<&str>) -> Answer {
        let mut request = Request::post("/oauth/token")
            .header("content-type", "application/x-www-form-urlencoded");
        if let Some(value) = authorization {
            request = request.header("authorization", value);
        }
        send(app, request.body(Body::from(body.to_owned())).expect("request")).await
    }

    /// Verifies a token against the JWKS the service serves, the way a gateway does.
    async fn verify(app: &Router, token: &str, audience: &str) -> Claims {
        let jwks = get(app, "/.well-known/jwks.json").await.json;
        let jwk = &jwks["keys"][0];
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["alg"], "ES256");
        assert_eq!(jwk["use"], "sig");
        let header = jsonwebtoken::decode_header(token).expect("header");
        assert_eq!(header.kid.as_deref(), jwk["kid"].as_str());
        let key = DecodingKey::from_ec_components(
            jwk["x"].as_str().expect("x"),
            jwk["y"].as_str().expect("y"),
        )
        .expect("key");
        let mut validation = Validation::new(Algorithm::ES256);
        validation.set_audience(&[audience]);
        validation.set_issuer(&[ISSUER]);
        jsonwebtoken::decode::<Claims>(token, &key, &validation).expect("token verifies").claims
    }

    #[tokio::test]
    async fn user_token_verifies_against_the_jwks() {
        let app = app();
        let answer =
            post_json(&app, "/token", &json!({"subject": "alice", "audience": "mobile"})).await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json);
        assert_eq!(answer.json["token_type"], "Bearer");
        assert_eq!(answer.json["expires_in"], 900);
        assert_eq!(answer.headers["cache-control"], "no-store");
        let token = answer.json["access_token"].as_str().expect("token");
        let claims = verify(&app, token, "mobile").await;
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.aud, "mobile");
        assert_eq!(claims.iss, ISSUER);
        assert_eq!(claims.exp - claims.iat, TOKEN_TTL_SECS);
        assert_eq!(claims.nbf, claims.iat);
        assert_eq!(claims.scope, USER_SCOPE);
    }

    #[tokio::test]
    async fn unknown_user_and_audience() {
        let app = app();
        let unknown =
            post_json(&app, "/token", &json!({"subject": "mallory", "audience": "web"})).await;
        assert_problem(&unknown, StatusCode::NOT_FOUND, "unknown_user");
        let audience =
            post_json(&app, "/token", &json!({"subject": "bob", "audience": "tv"})).await;
        assert_problem(&audience, StatusCode::BAD_REQUEST, "invalid_audience");
        let malformed = post_json(&app, "/token", &json!({"subject": "bob"})).await;
        assert_problem(&malformed, StatusCode::BAD_REQUEST, "invalid_request");
    }

    #[tokio::test]
    async fn partner_token_carries_its_scope() {
        let app = app();
        let answer = post_form(
            &app,
            "grant_type=client_credentials&client_id=acme&client_secret=acme-secret",
            None,
        )
        .await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json);
        let token = answer.json["access_token"].as_str().expect("token");
        let claims = verify(&app, token, "partner").await;
        assert_eq!(claims.sub, "partner:acme");
        assert_eq!(claims.client_id.as_deref(), Some("acme"));
        assert_eq!(claims.scope, PARTNERS[0].2);
        assert_eq!(answer.json["scope"], PARTNERS[0].2);

        // Basic authentication and a narrowed scope.
        let basic = format!("Basic {}", STANDARD.encode("globex:globex-secret"));
        let answer =
            post_form(&app, "grant_type=client_credentials&scope=stock%3Aread", Some(&basic)).await;
        assert_eq!(answer.status, StatusCode::OK, "{:?}", answer.json);
        let token = answer.json["access_token"].as_str().expect("token");
        let claims = verify(&app, token, "partner").await;
        assert_eq!(claims.sub, "partner:globex");
        assert_eq!(claims.scope, "stock:read");
    }

    #[tokio::test]
    async fn oauth_errors() {
        let app = app();
        let wrong = post_form(
            &app,
            "grant_type=client_credentials&client_id=acme&client_secret=globex-secret",
            None,
        )
        .await;
        assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
        assert_eq!(wrong.json["error"], "invalid_client");
        assert!(wrong.headers.contains_key("www-authenticate"));

        let grant = post_form(&app, "grant_type=password&client_id=acme", None).await;
        assert_eq!(grant.status, StatusCode::BAD_REQUEST);
        assert_eq!(grant.json["error"], "unsupported_grant_type");

        let scope = post_form(
            &app,
            "grant_type=client_credentials&client_id=globex&client_secret=globex-secret&scope=orders:write",
            None,
        )
        .await;
        assert_eq!(scope.status, StatusCode::BAD_REQUEST);
        assert_eq!(scope.json["error"], "invalid_scope");

        let missing = post_form(&app, "client_id=acme", None).await;
        assert_eq!(missing.json["error"], "invalid_request");
    }

    #[tokio::test]
    async fn discovery_documents() {
        let app = app();
        let config = get(&app, "/.well-known/openid-configuration").await.json;
        assert_eq!(config["issuer"], ISSUER);
        assert_eq!(config["jwks_uri"], format!("{ISSUER}/.well-known/jwks.json"));
        assert_eq!(config["token_endpoint"], format!("{ISSUER}/oauth/token"));
    }

    #[test]
    fn kid_is_the_jwk_thumbprint() {
        // RFC 7638 §3.1's example uses an RSA key; this checks the shape and stability instead.
        let issuer = Issuer::generate(ISSUER).expect("key");
        assert_eq!(issuer.kid().len(), 43);
        let jwks = issuer.jwks();
        let key = &jwks["keys"][0];
        let again = thumbprint(key["x"].as_str().expect("x"), key["y"].as_str().expect("y"));
        assert_eq!(issuer.kid(), again);
        assert_ne!(Issuer::generate(ISSUER).expect("key").kid(), issuer.kid());
    }

    #[test]
    fn form_decoding() {
        assert_eq!(
            parse_form(b"a=1+2&b=%7Ex&c").expect("form"),
            [
                ("a".to_owned(), "1 2".to_owned()),
                ("b".to_owned(), "~x".to_owned()),
                ("c".to_owned(), String::new())
            ]
        );
        assert!(parse_form(b"a=%zz").is_none());
        assert!(parse_form(b"a=%4").is_none());
    }
}
