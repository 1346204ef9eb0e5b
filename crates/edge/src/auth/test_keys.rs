//! Test helpers: signing keys of every supported kind with their JWKs, tokens signed by hand
//! (so a test controls every header byte, `alg: none` and forged HMACs included), and a JWKS
//! server on `127.0.0.1:0` that counts its fetches and can switch its keys or fail.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    digest::{SHA256, digest},
    hmac,
    rand::SystemRandom,
    rsa::KeySize,
    signature::{
        ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
        RSA_PKCS1_SHA256, RsaKeyPair,
    },
};
use axum::{
    Json, Router,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::get,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use portico_testkit::MockServer;
use serde_json::{Value, json};

use super::{AuthConfig, Authenticator};

/// The `iss` of every test token.
pub(crate) const ISSUER: &str = "http://issuer.test";

enum Signer {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// A signing key and the JWK that publishes it.
pub(crate) struct TestKey {
    signer: Signer,
    alg: &'static str,
    kid: String,
    jwk: Value,
}

impl TestKey {
    pub(crate) fn es256() -> Self {
        Self::ec(&ECDSA_P256_SHA256_FIXED_SIGNING, "P-256", "ES256")
    }

    pub(crate) fn es384() -> Self {
        Self::ec(&ECDSA_P384_SHA384_FIXED_SIGNING, "P-384", "ES384")
    }

    fn ec(
        algorithm: &'static aws_lc_rs::signature::EcdsaSigningAlgorithm,
        crv: &str,
        alg: &'static str,
    ) -> Self {
        // As the identity service's `Issuer::generate` does.
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(algorithm, &SystemRandom::new()).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(algorithm, pkcs8.as_ref()).unwrap();
        let point = pair.public_key().as_ref();
        let size = (point.len() - 1) / 2;
        let x = URL_SAFE_NO_PAD.encode(&point[1..=size]);
        let y = URL_SAFE_NO_PAD.encode(&point[1 + size..]);
        let kid = thumbprint(&format!(r#"{{"crv":"{crv}","kty":"EC","x":"{x}","y":"{y}"}}"#));
        let jwk =
            json!({"kty": "EC", "crv": crv, "x": x, "y": y, "kid": kid, "alg": alg, "use": "sig"});
        Self { signer: Signer::Ec(pair), alg, kid, jwk }
    }

    pub(crate) fn rs256() -> Self {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).unwrap();
        let public = pair.public_key();
        let n = URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero());
        let e = URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero());
        let kid = thumbprint(&format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#));
        let jwk = json!({"kty": "RSA", "n": n, "e": e, "kid": kid, "alg": "RS256", "use": "sig"});
        Self { signer: Signer::Rsa(pair), alg: "RS256", kid, jwk }
    }

    pub(crate) fn kid(&self) -> &str {
        &self.kid
    }

    pub(crate) fn jwk(&self) -> Value {
        self.jwk.clone()
    }

    /// This key's public JWK published under another kid (an attacker copying a kid).
    pub(crate) fn jwk_as(&self, kid: &str) -> Value {
        let mut jwk = self.jwk();
        jwk["kid"] = json!(kid);
        jwk
    }

    /// A token with the usual header (`alg`, `kid`, `typ`).
    pub(crate) fn sign(&self, claims: &Value) -> String {
        self.sign_with_header(&json!({"alg": self.alg, "kid": self.kid, "typ": "JWT"}), claims)
    }

    /// A token with exactly `header`, signed with this key whatever `alg` it names.
    pub(crate) fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        let input = signing_input(header, claims);
        let signature = match &self.signer {
            Signer::Ec(pair) => {
                pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap().as_ref().to_vec()
            }
            Signer::Rsa(pair) => {
                let mut signature = vec![0; pair.public_modulus_len()];
                pair.sign(
                    &RSA_PKCS1_SHA256,
                    &SystemRandom::new(),
                    input.as_bytes(),
                    &mut signature,
                )
                .unwrap();
                signature
            }
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// The uncompressed public point (EC keys), as a key-confusion attacker would use it.
    pub(crate) fn public_point(&self) -> Vec<u8> {
        match &self.signer {
            Signer::Ec(pair) => pair.public_key().as_ref().to_vec(),
            Signer::Rsa(pair) => pair.public_key().as_ref().to_vec(),
        }
    }
}

/// `base64url(header) "." base64url(claims)`.
pub(crate) fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

/// An HS256 token signed with `secret`: the key-confusion forgery.
pub(crate) fn sign_hs256(kid: &str, claims: &Value, secret: &[u8]) -> String {
    let input = signing_input(&json!({"alg": "HS256", "kid": kid, "typ": "JWT"}), claims);
    let tag = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
}

fn thumbprint(canonical: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, canonical.as_bytes()).as_ref())
}

pub(crate) fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// The claims the identity service puts in a user token, valid for 15 minutes.
pub(crate) fn user_claims(sub: &str, aud: &str) -> Value {
    let now = now();
    json!({
        "iss": ISSUER, "sub": sub, "aud": aud, "iat": now, "nbf": now, "exp": now + 900,
        "scope": "profile catalog:read orders:read orders:write",
    })
}

/// The claims of a client-credentials token for partner `client`.
pub(crate) fn partner_claims(client: &str, scope: &str) -> Value {
    let mut claims = user_claims(&format!("partner:{client}"), "partner");
    claims["scope"] = json!(scope);
    claims["client_id"] = json!(client);
    claims
}

/// What the JWKS server answers.
struct Answer {
    status: StatusCode,
    /// Served as is when set, instead of the keys.
    raw: Option<String>,
    keys: Vec<Value>,
}

/// A JWKS endpoint on `127.0.0.1:0` that counts fetches.
pub(crate) struct JwksServer {
    server: MockServer,
    fetches: Arc<AtomicUsize>,
    answer: Arc<Mutex<Answer>>,
}

impl JwksServer {
    pub(crate) async fn start(keys: &[&TestKey]) -> Self {
        Self::start_with(keys.iter().map(|k| k.jwk()).collect()).await
    }

    pub(crate) async fn start_with(keys: Vec<Value>) -> Self {
        async fn jwks(
            State((fetches, answer)): State<(Arc<AtomicUsize>, Arc<Mutex<Answer>>)>,
        ) -> Response {
            fetches.fetch_add(1, Ordering::SeqCst);
            let answer = answer.lock().unwrap();
            match &answer.raw {
                Some(raw) => (answer.status, raw.clone()).into_response(),
                None => (answer.status, Json(json!({"keys": answer.keys}))).into_response(),
            }
        }
        let fetches = Arc::new(AtomicUsize::new(0));
        let answer = Arc::new(Mutex::new(Answer { status: StatusCode::OK, raw: None, keys }));
        let router = Router::new()
            .route("/.well-known/jwks.json", get(jwks))
            .with_state((fetches.clone(), answer.clone()));
        Self { server: MockServer::start(router).await, fetches, answer }
    }

    pub(crate) fn url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.server.url())
    }

    pub(crate) fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    pub(crate) fn set_keys(&self, keys: &[&TestKey]) {
        let mut answer = self.answer.lock().unwrap();
        answer.keys = keys.iter().map(|k| k.jwk()).collect();
        answer.raw = None;
        answer.status = StatusCode::OK;
    }

    pub(crate) fn set_status(&self, status: StatusCode) {
        self.answer.lock().unwrap().status = status;
    }

    /// Serves `raw` (with 200) instead of the keys.
    pub(crate) fn set_raw(&self, raw: &str) {
        let mut answer = self.answer.lock().unwrap();
        answer.raw = Some(raw.to_owned());
        answer.status = StatusCode::OK;
    }

    /// Stops the server: fetches are refused from now on.
    pub(crate) fn stop(self) -> Arc<AtomicUsize> {
        self.fetches
    }
}

/// A config for audience `web` at `jwks_url`, with the defaults.
pub(crate) fn config(jwks_url: &str) -> AuthConfig {
    AuthConfig::new(ISSUER, "web", jwks_url)
}

pub(crate) fn authenticator(config: &AuthConfig) -> Authenticator {
    Authenticator::new(config).unwrap()
}

/// Moves the tokio clock forward by `by`, then lets it run in real time again, so the real
/// socket I/O that follows cannot trip a timer (paused time jumps to the next timer whenever
/// the runtime waits on I/O).
pub(crate) async fn travel(by: Duration) {
    tokio::time::pause();
    tokio::time::advance(by).await;
    tokio::time::resume();
}
