//! Micro-benchmarks of credential verification: an ES256 token with the warm key cache
//! (`Authenticator`, JWKS fetched once from an in-process server), the same token verified
//! with no key cache (the decoding key rebuilt from the JWK, or from the whole JWKS document,
//! on every verification), the refusal of a malformed token, and API-key checks.
//!
//! Run with `cargo bench -p portico-edge --bench auth`. The groups are short (3 s each) for a
//! shared 2-core machine.

// A benchmark set-up that fails cannot measure anything, so it panics with a message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    hint::black_box,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use aws_lc_rs::{
    rand::SystemRandom,
    signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair},
};
use axum::{Json, Router, routing::get};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation,
    jwk::{Jwk, JwkSet},
};
use portico_edge::auth::{ApiKeyConfig, AuthConfig, Authenticator, hash_api_key};
use portico_testkit::MockServer;
use serde_json::{Value, json};
use tokio::runtime::{Builder, Runtime};

const ISSUER: &str = "http://issuer.bench";

/// Keeps the whole run short on a shared 2-core machine.
fn configure<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group
}

fn current_thread() -> Runtime {
    Builder::new_current_thread().enable_all().build().expect("a current-thread runtime")
}

/// An ES256 key as the identity service makes one: the signing key, its JWKS, and its kid.
struct Issuer {
    key: EncodingKey,
    kid: String,
    jwks: Value,
}

fn issuer() -> Issuer {
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
            .expect("a P-256 key");
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref())
        .expect("a P-256 key");
    let point = pair.public_key().as_ref();
    let (x, y) = (URL_SAFE_NO_PAD.encode(&point[1..33]), URL_SAFE_NO_PAD.encode(&point[33..65]));
    let kid = "bench-key".to_owned();
    let jwks = json!({"keys": [
        {"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "alg": "ES256", "use": "sig"}
    ]});
    Issuer { key: EncodingKey::from_ec_der(pkcs8.as_ref()), kid, jwks }
}

/// A user token as the identity service signs it.
fn token(issuer: &Issuer) -> String {
    token_of(issuer, "alice")
}

/// A token for user `sub`.
fn token_of(issuer: &Issuer, sub: &str) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs();
    let claims = json!({
        "iss": ISSUER, "sub": sub, "aud": "web", "iat": now, "nbf": now,
        // Long-lived, so a slow run never crosses the expiry.
        "exp": now + 3600,
        "scope": "profile catalog:read orders:read orders:write",
    });
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(issuer.kid.clone());
    jsonwebtoken::encode(&header, &claims, &issuer.key).expect("signs")
}

/// What a verifier without a key cache checks: the same rules as the `Authenticator`.
fn validation() -> Validation {
    let mut validation = Validation::new(Algorithm::ES256);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    validation.set_issuer(&[ISSUER]);
    validation.set_audience(&["web"]);
    validation.validate_nbf = true;
    validation.leeway = 30;
    validation
}

fn verify_without_cache(token: &str, jwk: &Jwk, validation: &Validation) -> bool {
    let key = DecodingKey::from_jwk(jwk).expect("a usable JWK");
    jsonwebtoken::decode::<Value>(token, &key, validation).is_ok()
}

fn tokens(c: &mut Criterion) {
    let rt = current_thread();
    let issuer = issuer();
    let token = token(&issuer);
    let jwks = issuer.jwks.clone();
    let server = rt.block_on(MockServer::start(
        Router::new().route("/jwks", get(move || async move { Json(jwks) })),
    ));
    let config = AuthConfig::new(ISSUER, "web", format!("{}/jwks", server.url()));
    let auth = Authenticator::new(&config).expect("a valid config");
    // The first verification fetches the JWKS: from then on the cache is warm.
    assert_eq!(rt.block_on(auth.verify_token(&token)).expect("verifies").subject, "alice");

    let document = issuer.jwks.to_string();
    let set: JwkSet = serde_json::from_str(&document).expect("a JWKS");
    let jwk = set.find(&issuer.kid).expect("the key").clone();
    let validation = validation();
    assert!(verify_without_cache(&token, &jwk, &validation));

    // More distinct tokens than the verified-token cache holds, taken in turn: every one is a
    // signature check (the least recently used is always the one evicted).
    let distinct: Vec<String> = (0..20_000).map(|i| token_of(&issuer, &format!("u{i}"))).collect();
    let mut next = 0;

    let mut group = configure(c, "auth_token");
    group.bench_function("es256_remembered_token", |b| {
        b.to_async(&rt).iter(|| auth.verify_token(black_box(&token)));
    });
    group.bench_function("es256_distinct_tokens_warm_key_cache", |b| {
        b.to_async(&rt).iter(|| {
            next = (next + 1) % distinct.len();
            auth.verify_token(black_box(&distinct[next]))
        });
    });
    group.bench_function("es256_decoding_key_from_jwk_each_time", |b| {
        b.iter(|| verify_without_cache(black_box(&token), &jwk, &validation));
    });
    group.bench_function("es256_decoding_key_from_jwks_document_each_time", |b| {
        b.iter(|| {
            let set: JwkSet = serde_json::from_str(black_box(&document)).expect("a JWKS");
            verify_without_cache(&token, set.find(&issuer.kid).expect("the key"), &validation)
        });
    });
    // The cheap path a forger hits: refused before any key lookup or cryptography.
    let forged = format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"x"}"#));
    group.bench_function("refuse_alg_none", |b| {
        b.to_async(&rt).iter(|| auth.verify_token(black_box(&forged)));
    });
    group.finish();
    drop(server);
}

fn api_keys(c: &mut Criterion) {
    let keys = ["pk_bench_acme_old", "pk_bench_acme_new", "pk_bench_globex"];
    let mut config = AuthConfig::new(ISSUER, "partner", "http://127.0.0.1:9/jwks");
    config.api_keys = keys
        .iter()
        .enumerate()
        .map(|(i, key)| ApiKeyConfig {
            id: format!("key-{i}"),
            partner: "acme".into(),
            plan: "gold".into(),
            sha256: hash_api_key(key),
            scopes: vec!["catalog:read".into(), "stock:read".into()],
        })
        .collect();
    let auth = Authenticator::new(&config).expect("a valid config");
    assert!(auth.verify_api_key(keys[1]).is_ok());

    let mut group = configure(c, "auth_api_key");
    group.bench_function("match_among_3", |b| b.iter(|| auth.verify_api_key(black_box(keys[1]))));
    group.bench_function("unknown_among_3", |b| {
        b.iter(|| auth.verify_api_key(black_box("pk_bench_unknown")));
    });
    group.finish();
}

criterion_group!(benches, tokens, api_keys);
criterion_main!(benches);
