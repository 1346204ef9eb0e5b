//! The verifier's rules, one test each: config, tokens, the key cache through rotation, floods
//! and outages, API keys, request shapes and the responses clients see.

use std::time::Duration;

use axum::response::IntoResponse;
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use futures::future::join_all;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use http_body_util::BodyExt;
use serde_json::{Value, json};

use super::test_keys::{
    ISSUER, JwksServer, TestKey, authenticator, config, now, partner_claims, sign_hs256,
    signing_input, travel, user_claims,
};
use super::*;

fn reason<T: fmt::Debug>(result: Result<T, AuthError>) -> &'static str {
    result.unwrap_err().reason()
}

/// A gateway on audience `web` with its JWKS server serving `key`.
async fn gateway(key: &TestKey) -> (JwksServer, Authenticator) {
    let server = JwksServer::start(&[key]).await;
    let auth = authenticator(&config(&server.url()));
    (server, auth)
}

async fn problem(response: axum::response::Response) -> (StatusCode, HeaderMap, Value) {
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, headers, serde_json::from_slice(&body).unwrap())
}

// === config ===

#[derive(serde::Deserialize)]
struct Doc {
    auth: AuthConfig,
}

fn parse(text: &str) -> Result<AuthConfig, ConfigError> {
    let doc: Doc = toml::from_str(text)?;
    doc.auth.validate()?;
    Ok(doc.auth)
}

const MINIMAL: &str = r#"
    [auth]
    issuer = "http://127.0.0.1:7006"
    audience = "web"
    jwks_url = "http://127.0.0.1:7006/.well-known/jwks.json"
"#;

fn api_key_toml(id: &str, key: &str) -> String {
    format!(
        "[[auth.api_keys]]\nid = \"{id}\"\npartner = \"acme\"\nplan = \"gold\"\n\
         sha256 = \"{}\"\nscopes = [\"catalog:read\", \"stock:read\"]\n",
        hash_api_key(key)
    )
}

#[test]
fn config_parses_with_defaults() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(
        config,
        AuthConfig::new(
            "http://127.0.0.1:7006",
            "web",
            "http://127.0.0.1:7006/.well-known/jwks.json"
        )
    );
    assert_eq!(config.refresh_interval, Duration::from_secs(300));
    assert_eq!(config.unknown_kid_cooldown, Duration::from_secs(30));
    assert_eq!(config.max_staleness, Duration::from_secs(3600));
    assert_eq!(config.fetch_timeout, Duration::from_secs(2));
    assert_eq!(config.leeway, Duration::from_secs(30));
    assert_eq!(config.max_token_bytes, 8192);

    let text = format!(
        "{MINIMAL}refresh_interval = \"1m\"\nleeway = \"5s\"\n{}",
        api_key_toml("acme-1", "pk_one")
    );
    let config = parse(&text).unwrap();
    assert_eq!(config.refresh_interval, Duration::from_secs(60));
    assert_eq!(config.leeway, Duration::from_secs(5));
    assert_eq!(config.api_keys[0].partner, "acme");
    assert_eq!(config.api_keys[0].scopes, ["catalog:read", "stock:read"]);
}

#[test]
fn config_errors_name_the_key() {
    let cases = [
        (format!("{MINIMAL}leeway = \"61s\"\n"), "auth.leeway"),
        (format!("{MINIMAL}refresh_interval = \"2h\"\n"), "auth.max_staleness"),
        (format!("{MINIMAL}unknown_kid_cooldown = \"0s\"\n"), "auth.unknown_kid_cooldown"),
        (format!("{MINIMAL}max_token_bytes = 0\n"), "auth.max_token_bytes"),
        (MINIMAL.replace("audience = \"web\"", "audience = \"\""), "auth.audience"),
        (MINIMAL.replace("jwks_url = \"http:", "jwks_url = \"ftp:"), "auth.jwks_url"),
        (
            format!(
                "{MINIMAL}{}{}",
                api_key_toml("acme-1", "pk_one"),
                api_key_toml("acme-2", "pk_two").replace("sha256 = \"", "sha256 = \"F")
            ),
            "auth.api_keys[1].sha256",
        ),
        (
            format!(
                "{MINIMAL}{}{}",
                api_key_toml("acme-1", "pk_one"),
                api_key_toml("acme-1", "pk_two")
            ),
            "auth.api_keys[1].id",
        ),
        (
            format!(
                "{MINIMAL}{}{}",
                api_key_toml("acme-1", "pk_one"),
                api_key_toml("acme-2", "pk_one")
            ),
            "auth.api_keys[1].sha256",
        ),
    ];
    for (text, key) in cases {
        let error = parse(&text).unwrap_err().to_string();
        assert!(error.contains(key), "expected `{key}` in: {error}");
    }

    let https = MINIMAL.replace("jwks_url = \"http:", "jwks_url = \"https:");
    let error = parse(&https).unwrap_err().to_string();
    assert!(error.contains("auth.jwks_url") && error.contains("https is not supported"), "{error}");

    let typo = format!("{MINIMAL}refresh = \"1m\"\n");
    assert!(parse(&typo).unwrap_err().to_string().contains("refresh"));
    let missing = MINIMAL.replace("issuer = \"http://127.0.0.1:7006\"", "");
    assert!(parse(&missing).unwrap_err().to_string().contains("issuer"));
    // `Authenticator::new` validates too: a config built in code gets the same checks.
    let mut config = config("http://127.0.0.1:9/jwks");
    config.leeway = Duration::from_secs(120);
    assert!(Authenticator::new(&config).is_err());
}

// === tokens ===

#[tokio::test]
async fn a_user_token_names_a_user_with_its_scopes() {
    let key = TestKey::es256();
    let (server, auth) = gateway(&key).await;
    let principal = auth.verify_token(&key.sign(&user_claims("alice", "web"))).await.unwrap();
    assert_eq!(
        principal,
        Principal {
            kind: PrincipalKind::User,
            subject: "alice".into(),
            scopes: ["profile", "catalog:read", "orders:read", "orders:write"]
                .map(String::from)
                .to_vec(),
            plan: None,
            credential: Credential::Token,
        }
    );
    assert!(principal.has_scope("orders:read"));
    assert!(!principal.has_scope("orders"));
    assert_eq!(principal.scope_header(), "profile catalog:read orders:read orders:write");
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn a_client_credentials_token_names_the_partner() {
    let key = TestKey::es256();
    let server = JwksServer::start(&[&key]).await;
    let mut config = config(&server.url());
    config.audience = "partner".into();
    let auth = authenticator(&config);
    let token = key.sign(&partner_claims("acme", "catalog:read stock:read"));
    let principal = auth.verify_token(&token).await.unwrap();
    assert_eq!(principal.kind, PrincipalKind::Partner);
    assert_eq!(principal.subject, "acme");
    assert_eq!(principal.scopes, ["catalog:read", "stock:read"]);
    assert_eq!(principal.credential, Credential::Token);
}

#[tokio::test]
async fn p384_and_rsa_keys_verify_their_tokens() {
    let (es384, rs256) = (TestKey::es384(), TestKey::rs256());
    let server = JwksServer::start(&[&es384, &rs256]).await;
    let auth = authenticator(&config(&server.url()));
    for key in [&es384, &rs256] {
        let principal = auth.verify_token(&key.sign(&user_claims("bob", "web"))).await.unwrap();
        assert_eq!(principal.subject, "bob");
    }
}

#[tokio::test]
async fn audience_issuer_and_subject_are_exact() {
    let key = TestKey::es256();
    let server = JwksServer::start(&[&key]).await;
    let mut partner = config(&server.url());
    partner.audience = "partner".into();
    let partner = authenticator(&partner);
    // A token for the web app is not a token for the partner gateway.
    let web_token = key.sign(&user_claims("alice", "web"));
    assert_eq!(reason(partner.verify_token(&web_token).await), "audience");

    let auth = authenticator(&config(&server.url()));
    let with = |name: &str, value: Value| {
        let mut claims = user_claims("alice", "web");
        claims[name] = value;
        key.sign(&claims)
    };
    let without = |name: &str| {
        let mut claims = user_claims("alice", "web");
        claims.as_object_mut().unwrap().remove(name);
        key.sign(&claims)
    };
    assert_eq!(reason(auth.verify_token(&with("aud", json!("webx"))).await), "audience");
    assert_eq!(reason(auth.verify_token(&with("aud", json!("we"))).await), "audience");
    assert_eq!(
        reason(auth.verify_token(&with("iss", json!(format!("{ISSUER}/")))).await),
        "issuer"
    );
    // An array of issuers is not an issuer, even when it contains the right one.
    assert_eq!(reason(auth.verify_token(&with("iss", json!([ISSUER]))).await), "issuer");
    assert_eq!(reason(auth.verify_token(&without("sub")).await), "claims");
    assert_eq!(reason(auth.verify_token(&with("sub", json!(""))).await), "claims");
    assert_eq!(reason(auth.verify_token(&with("sub", json!(7))).await), "claims");
    assert_eq!(reason(auth.verify_token(&without("iss")).await), "claims");
    assert_eq!(reason(auth.verify_token(&with("scope", json!(["a"]))).await), "claims");
    assert!(auth.verify_token(&without("scope")).await.unwrap().scopes.is_empty());
}

#[tokio::test]
async fn exp_is_required_and_exp_and_nbf_honour_the_leeway() {
    let key = TestKey::es256();
    let (_server, auth) = gateway(&key).await;
    let token = |exp: Option<u64>, nbf: u64| {
        let mut claims = user_claims("alice", "web");
        claims["nbf"] = json!(nbf);
        match exp {
            Some(exp) => claims["exp"] = json!(exp),
            None => drop(claims.as_object_mut().unwrap().remove("exp")),
        }
        key.sign(&claims)
    };
    let now = now();
    // The default leeway is 30s; a few seconds of margin keep the test off the boundary.
    assert_eq!(reason(auth.verify_token(&token(None, now)).await), "claims");
    assert_eq!(reason(auth.verify_token(&token(Some(now - 40), now - 900)).await), "expired");
    assert!(auth.verify_token(&token(Some(now - 20), now - 900)).await.is_ok());
    assert_eq!(reason(auth.verify_token(&token(Some(now + 900), now + 40)).await), "not_yet_valid");
    assert!(auth.verify_token(&token(Some(now + 900), now + 20)).await.is_ok());
    let mut claims = user_claims("alice", "web");
    claims["exp"] = json!("tomorrow");
    assert_eq!(reason(auth.verify_token(&key.sign(&claims)).await), "claims");
}

#[tokio::test]
async fn oversized_tokens_are_refused_before_parsing() {
    let key = TestKey::es256();
    let server = JwksServer::start(&[&key]).await;
    let mut config = config(&server.url());
    config.max_token_bytes = 1024;
    let auth = authenticator(&config);
    let mut claims = user_claims("alice", "web");
    claims["padding"] = json!("x".repeat(2000));
    let large = key.sign(&claims);
    assert_eq!(reason(auth.verify_token(&large).await), "too_large");
    // Not even the keys were fetched for it.
    assert_eq!(server.fetches(), 0);
    let garbage = "€".repeat(400);
    assert_eq!(reason(auth.verify_token(&garbage).await), "too_large");
}

#[tokio::test]
async fn garbage_never_panics_and_is_malformed() {
    let key = TestKey::es256();
    let (server, auth) = gateway(&key).await;
    let valid = key.sign(&user_claims("alice", "web"));
    let (head, rest) = valid.split_once('.').unwrap();
    let header = |h: &str| format!("{}.e30.c2ln", URL_SAFE_NO_PAD.encode(h));
    let inputs = [
        String::new(),
        ".".into(),
        "..".into(),
        "...".into(),
        "a.b.c".into(),
        "a.b.c.d".into(),
        "not-a-jwt".into(),
        format!("{head}.{rest}.extra"),
        format!("{head}..sig"),
        head.to_owned(),
        format!(".{rest}"),
        format!("{}.{rest}", "A".repeat(6000)),
        format!("{head}.{}.sig", "!!!!"),
        format!("{head}.e30.%%%"),
        "\u{0}\u{1}\u{7f}.\u{fffd}.\u{202e}".into(),
        "eyJ.eyJ.eyJ".into(),
        header("null"),
        header("[]"),
        header("\"ES256\""),
        header(r#"{"alg":"ES256"}"#),
        header(r#"{"alg":"ES256","kid":""}"#),
        header(r#"{"alg":"ES256","kid":7}"#),
        header(r#"{"alg":7,"kid":"k"}"#),
        header(r#"{"alg":"ES256","alg":"none","kid":"k"}"#),
        header(&format!(r#"{{"alg":"ES256","kid":"{}","crit":["exp"]}}"#, key.kid())),
        header(&format!(r#"{{"alg":"ES256","kid":"{}"}}"#, key.kid())),
        format!("{head}.{}.{}", URL_SAFE_NO_PAD.encode("not json"), "c2ln"),
        format!("{head}.{}", rest.replace('.', ".=")),
    ];
    for input in &inputs {
        let result = auth.verify_token(input).await;
        assert!(result.is_err(), "accepted {input:?}");
    }
    assert_eq!(reason(auth.verify_token("a.b.c").await), "malformed");
    assert_eq!(reason(auth.verify_token("not-a-jwt").await), "malformed");
    assert_eq!(reason(auth.verify_token(&header(r#"{"alg":"ES256"}"#)).await), "malformed");
    // Only the last two shapes get as far as the key set: one fetch, no refetch storm.
    assert!(server.fetches() <= 2, "{} fetches", server.fetches());
    // The real token still verifies after all that.
    assert!(auth.verify_token(&valid).await.is_ok());
}

#[tokio::test]
async fn none_and_hmac_are_never_accepted_even_with_the_public_key_as_secret() {
    let key = TestKey::es256();
    let (server, auth) = gateway(&key).await;
    let claims = user_claims("alice", "web");
    let none = format!("{}.", signing_input(&json!({"alg": "none", "kid": key.kid()}), &claims));
    assert_eq!(reason(auth.verify_token(&none).await), "algorithm");
    let none_upper =
        format!("{}.", signing_input(&json!({"alg": "NONE", "kid": key.kid()}), &claims));
    assert_eq!(reason(auth.verify_token(&none_upper).await), "algorithm");

    // Key confusion: HMAC keyed with what the JWKS publishes.
    let point = key.public_point();
    let jwk = key.jwk();
    let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
    for secret in
        [point.as_slice(), &x, jwk["x"].as_str().unwrap().as_bytes(), jwk.to_string().as_bytes()]
    {
        let forged = sign_hs256(key.kid(), &claims, secret);
        assert_eq!(reason(auth.verify_token(&forged).await), "algorithm");
    }
    for alg in ["HS384", "HS512", "PS256", "EdDSA", "ES512", "es256"] {
        let token = key.sign_with_header(&json!({"alg": alg, "kid": key.kid()}), &claims);
        assert_eq!(reason(auth.verify_token(&token).await), "algorithm", "{alg}");
    }
    // None of it was worth a fetch.
    assert_eq!(server.fetches(), 0);
}

#[tokio::test]
async fn the_algorithm_is_pinned_by_the_key() {
    let (p256, p384) = (TestKey::es256(), TestKey::es384());
    let server = JwksServer::start(&[&p256, &p384]).await;
    let auth = authenticator(&config(&server.url()));
    let claims = user_claims("alice", "web");
    // Signed by the P-384 key but claiming ES256 and naming the P-256 key's kid, and the reverse.
    let cross = p384.sign_with_header(&json!({"alg": "ES384", "kid": p256.kid()}), &claims);
    assert_eq!(reason(auth.verify_token(&cross).await), "algorithm");
    let cross = p256.sign_with_header(&json!({"alg": "ES256", "kid": p384.kid()}), &claims);
    assert_eq!(reason(auth.verify_token(&cross).await), "algorithm");
    // A key without `alg` gets it from its curve.
    let mut bare = p256.jwk();
    bare.as_object_mut().unwrap().remove("alg");
    let server = JwksServer::start_with(vec![bare]).await;
    let auth = authenticator(&config(&server.url()));
    let as_384 = p256.sign_with_header(&json!({"alg": "ES384", "kid": p256.kid()}), &claims);
    assert_eq!(reason(auth.verify_token(&as_384).await), "algorithm");
    assert!(auth.verify_token(&p256.sign(&claims)).await.is_ok());
}

#[tokio::test]
async fn a_bad_signature_is_refused() {
    let key = TestKey::es256();
    let (_server, auth) = gateway(&key).await;
    let token = key.sign(&user_claims("alice", "web"));
    let other = key.sign(&user_claims("bob", "web"));
    // Alice's header and claims with the signature of Bob's token.
    let (input, _) = token.rsplit_once('.').unwrap();
    let (_, signature) = other.rsplit_once('.').unwrap();
    assert_eq!(reason(auth.verify_token(&format!("{input}.{signature}")).await), "signature");
    // Claims changed after signing.
    let mut claims = user_claims("alice", "web");
    claims["scope"] = json!("admin");
    let tampered = format!(
        "{}.{signature}",
        signing_input(&json!({"alg": "ES256", "kid": key.kid()}), &claims)
    );
    assert_eq!(reason(auth.verify_token(&tampered).await), "signature");
}

#[tokio::test]
async fn keys_named_by_the_token_are_never_fetched() {
    let key = TestKey::es256();
    let (server, auth) = gateway(&key).await;
    let attacker = TestKey::es256();
    // The attacker's server publishes the attacker's key under the real kid.
    let evil = JwksServer::start_with(vec![attacker.jwk_as(key.kid())]).await;
    let claims = user_claims("mallory", "web");
    let headers = [
        json!({"alg": "ES256", "kid": key.kid(), "jku": evil.url()}),
        json!({"alg": "ES256", "kid": key.kid(), "x5u": evil.url()}),
        json!({"alg": "ES256", "kid": key.kid(), "jwk": attacker.jwk_as(key.kid())}),
        json!({"alg": "ES256", "kid": key.kid(), "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"]}),
    ];
    for header in &headers {
        let forged = attacker.sign_with_header(header, &claims);
        assert!(auth.verify_token(&forged).await.is_err(), "accepted {header}");
    }
    let forged = attacker.sign_with_header(&headers[0], &claims);
    assert_eq!(reason(auth.verify_token(&forged).await), "signature");
    // A kid only the attacker's set knows: unknown here, and still not fetched from there.
    let own_kid = json!({"alg": "ES256", "kid": attacker.kid(), "jku": evil.url()});
    assert_eq!(
        reason(auth.verify_token(&attacker.sign_with_header(&own_kid, &claims)).await),
        "unknown_key"
    );
    assert_eq!(evil.fetches(), 0);
    // The real key's tokens are unaffected.
    assert!(auth.verify_token(&key.sign(&user_claims("alice", "web"))).await.is_ok());
    assert!(server.fetches() <= 2);
}

// === the key cache ===

#[tokio::test]
async fn the_first_fetch_is_lazy_and_single_flight() {
    let key = TestKey::es256();
    let (server, auth) = gateway(&key).await;
    assert_eq!(server.fetches(), 0, "Authenticator::new must not do I/O");
    let token = key.sign(&user_claims("alice", "web"));
    let results = join_all((0..100).map(|_| auth.verify_token(&token))).await;
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(server.fetches(), 1);
}

#[tokio::test]
async fn a_flood_of_unknown_kids_costs_one_fetch_per_cooldown() {
    let key = TestKey::es256();
    let (server, auth) = gateway(&key).await;
    let claims = user_claims("alice", "web");
    auth.verify_token(&key.sign(&claims)).await.unwrap();
    assert_eq!(server.fetches(), 1);

    let bogus: Vec<String> = (0..1000)
        .map(|_| {
            let kid = generate_api_key();
            key.sign_with_header(&json!({"alg": "ES256", "kid": kid}), &claims)
        })
        .collect();
    let results = join_all(bogus.iter().map(|t| auth.verify_token(t))).await;
    assert!(results.into_iter().all(|r| r.is_err_and(|e| e.reason() == "unknown_key")));
    assert_eq!(server.fetches(), 2, "one refetch for the whole flood");

    // Still within the cooldown: no more fetches, and good tokens still pass.
    assert_eq!(reason(auth.verify_token(&bogus[0]).await), "unknown_key");
    assert!(auth.verify_token(&key.sign(&claims)).await.is_ok());
    assert_eq!(server.fetches(), 2);

    // After the cooldown an unknown kid may trigger one refetch again.
    travel(Duration::from_secs(31)).await;
    assert_eq!(reason(auth.verify_token(&bogus[1]).await), "unknown_key");
    assert_eq!(server.fetches(), 3);
}

#[tokio::test]
async fn rotation_takes_one_refetch_and_retires_the_old_key() {
    let (old, new) = (TestKey::es256(), TestKey::es256());
    let (server, auth) = gateway(&old).await;
    let old_token = old.sign(&user_claims("alice", "web"));
    let new_token = new.sign(&user_claims("alice", "web"));
    auth.verify_token(&old_token).await.unwrap();
    assert_eq!(server.fetches(), 1);

    server.set_keys(&[&new]);
    assert_eq!(auth.verify_token(&new_token).await.unwrap().subject, "alice");
    assert_eq!(server.fetches(), 2, "exactly one refetch");
    // The old key left the set: its tokens fail, and do not cost another fetch (cooldown).
    // Even though it was verified (and remembered) before.
    assert_eq!(reason(auth.verify_token(&old_token).await), "unknown_key");
    assert!(auth.verify_token(&new_token).await.is_ok());
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn a_verified_token_is_trusted_until_exp_and_at_most_a_refresh_interval() {
    let key = TestKey::es256();
    let (_server, auth) = gateway(&key).await;
    let lasting = key.sign(&user_claims("alice", "web"));
    let mut claims = user_claims("bob", "web");
    claims["exp"] = json!(now() + 10);
    let brief = key.sign(&claims);
    for _ in 0..3 {
        assert_eq!(auth.verify_token(&lasting).await.unwrap().subject, "alice");
        assert_eq!(auth.verify_token(&brief).await.unwrap().subject, "bob");
    }
    assert_eq!(auth.signature_checks(), 2, "one signature check per token");
    // Past `exp` the remembered verdict is gone: the token is checked again (here the wall
    // clock, which paused time does not move, still finds it valid).
    travel(Duration::from_secs(11)).await;
    auth.verify_token(&brief).await.unwrap();
    auth.verify_token(&lasting).await.unwrap();
    assert_eq!(auth.signature_checks(), 3);
    // And none is trusted longer than the JWKS refresh interval (5 minutes).
    travel(Duration::from_secs(300)).await;
    auth.verify_token(&lasting).await.unwrap();
    assert_eq!(auth.signature_checks(), 4);
    // A tampered copy is never the remembered token.
    let tampered = format!("{}x", &lasting[..lasting.len() - 1]);
    assert!(auth.verify_token(&tampered).await.is_err());
}

#[tokio::test]
async fn keys_are_refreshed_in_the_background_after_the_interval() {
    let (first, second) = (TestKey::es256(), TestKey::es256());
    let (server, auth) = gateway(&first).await;
    let token = first.sign(&user_claims("alice", "web"));
    auth.verify_token(&token).await.unwrap();
    travel(Duration::from_secs(299)).await;
    auth.verify_token(&token).await.unwrap();
    assert_eq!(server.fetches(), 1, "still fresh");

    server.set_keys(&[&first, &second]);
    travel(Duration::from_secs(2)).await;
    // Served with the current keys while the refresh runs behind it.
    auth.verify_token(&token).await.unwrap();
    auth.settle().await;
    assert_eq!(server.fetches(), 2);
    // The refreshed set already knows the second key: no unknown-kid fetch.
    auth.verify_token(&second.sign(&user_claims("bob", "web"))).await.unwrap();
    assert_eq!(server.fetches(), 2);
}

#[tokio::test]
async fn an_outage_serves_the_last_good_keys_until_max_staleness() {
    let key = TestKey::es256();
    let (server, auth) = gateway(&key).await;
    let token = key.sign(&user_claims("alice", "web"));
    auth.verify_token(&token).await.unwrap();

    server.set_status(StatusCode::SERVICE_UNAVAILABLE);
    travel(Duration::from_secs(6 * 60)).await;
    auth.verify_token(&token).await.unwrap();
    auth.settle().await;
    assert_eq!(server.fetches(), 2, "a background refresh was tried");
    travel(Duration::from_secs(30 * 60)).await;
    auth.verify_token(&token).await.unwrap();
    auth.settle().await;
    assert_eq!(server.fetches(), 3);

    // Past max_staleness (1h): fail closed, with a 503 rather than a 401.
    travel(Duration::from_secs(25 * 60)).await;
    let error = auth.verify_token(&token).await.unwrap_err();
    assert_eq!(error.reason(), "keys_unavailable");
    assert_eq!(server.fetches(), 4);
    // Within the backoff, requests do not hammer the issuer.
    assert_eq!(reason(auth.verify_token(&token).await), "keys_unavailable");
    assert_eq!(server.fetches(), 4);
    let (status, headers, body) = problem(error.into_response()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["code"], "auth_unavailable");
    assert!(headers.contains_key(header::RETRY_AFTER));

    // The issuer recovers: the next request after the backoff fetches and passes.
    server.set_keys(&[&key]);
    travel(Duration::from_secs(2)).await;
    auth.verify_token(&token).await.unwrap();
    assert_eq!(server.fetches(), 5);
}

#[tokio::test]
async fn a_stopped_jwks_server_is_survived_until_max_staleness() {
    let key = TestKey::es256();
    let (server, auth) = gateway(&key).await;
    let token = key.sign(&user_claims("alice", "web"));
    auth.verify_token(&token).await.unwrap();
    let fetches = server.stop();

    travel(Duration::from_secs(10 * 60)).await;
    auth.verify_token(&token).await.unwrap();
    auth.settle().await;
    travel(Duration::from_secs(51 * 60)).await;
    assert_eq!(reason(auth.verify_token(&token).await), "keys_unavailable");
    assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_jwks_that_never_answered_means_503_not_401() {
    let key = TestKey::es256();
    let auth = authenticator(&config(&format!("{}/jwks", portico_testkit::refused_url().await)));
    let error = auth.verify_token(&key.sign(&user_claims("alice", "web"))).await.unwrap_err();
    assert_eq!(error.reason(), "keys_unavailable");
    let (status, headers, body) = problem(error.into_response()).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["code"], "auth_unavailable");
    assert_eq!(headers[header::RETRY_AFTER], "5");
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");

    // Through `authenticate` too: the caller's token may be fine, the gateway cannot tell.
    let mut request = HeaderMap::new();
    let bearer = format!("Bearer {}", key.sign(&user_claims("alice", "web")));
    request.insert(header::AUTHORIZATION, HeaderValue::from_str(&bearer).unwrap());
    travel(Duration::from_secs(2)).await;
    assert_eq!(reason(auth.authenticate(&request).await), "keys_unavailable");
}

#[tokio::test]
async fn a_hanging_jwks_server_times_out() {
    let key = TestKey::es256();
    let hanging = portico_testkit::hanging_server().await;
    let mut config = config(&format!("{}/jwks", hanging.url()));
    config.fetch_timeout = Duration::from_millis(100);
    let auth = authenticator(&config);
    let error = auth.verify_token(&key.sign(&user_claims("alice", "web"))).await.unwrap_err();
    assert_eq!(error.reason(), "keys_unavailable");
}

#[tokio::test]
async fn an_unusable_jwks_answer_keeps_the_last_good_keys() {
    let (key, other) = (TestKey::es256(), TestKey::es256());
    let (server, auth) = gateway(&key).await;
    let token = key.sign(&user_claims("alice", "web"));
    auth.verify_token(&token).await.unwrap();

    let bad_answers = [
        "not json".to_owned(),
        r#"{"keys": "none"}"#.to_owned(),
        r#"{"keys": []}"#.to_owned(),
        json!({"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}).to_string(),
        json!({"keys": [other.jwk_as(key.kid()).as_object().map(|o| {
            let mut o = o.clone();
            o.insert("use".into(), json!("enc"));
            o
        })]})
        .to_string(),
    ];
    for (i, answer) in bad_answers.iter().enumerate() {
        server.set_raw(answer);
        travel(Duration::from_secs(301)).await;
        auth.verify_token(&token).await.unwrap();
        auth.settle().await;
        assert_eq!(server.fetches(), i + 2, "{answer}");
    }
    // The failed fetches did not renew the old set: it ages from its own fetch, 5 × 301s ago.
    travel(Duration::from_secs(3600 - 5 * 301)).await;
    assert_eq!(reason(auth.verify_token(&token).await), "keys_unavailable");
}

// === API keys ===

fn with_api_keys(keys: &[(&str, &str, &str)]) -> Authenticator {
    let mut config = config("http://127.0.0.1:9/jwks");
    config.api_keys = keys
        .iter()
        .map(|(id, partner, key)| ApiKeyConfig {
            id: (*id).into(),
            partner: (*partner).into(),
            plan: "gold".into(),
            sha256: hash_api_key(key),
            scopes: vec!["catalog:read".into(), "orders:write".into()],
        })
        .collect();
    authenticator(&config)
}

#[test]
fn api_keys_match_by_hash_and_rotate() {
    let (old, new) = (generate_api_key(), generate_api_key());
    let auth = with_api_keys(&[
        ("acme-old", "acme", &old),
        ("acme-new", "acme", &new),
        ("globex-1", "globex", "pk_globex"),
    ]);
    for key in [&old, &new] {
        assert_eq!(
            auth.verify_api_key(key).unwrap(),
            Principal {
                kind: PrincipalKind::Partner,
                subject: "acme".into(),
                scopes: vec!["catalog:read".into(), "orders:write".into()],
                plan: Some("gold".into()),
                credential: Credential::ApiKey,
            }
        );
    }
    assert_eq!(auth.verify_api_key("pk_globex").unwrap().subject, "globex");
    assert_eq!(reason(auth.verify_api_key("pk_unknown")), "api_key");
    assert_eq!(reason(auth.verify_api_key(&old[..old.len() - 1])), "api_key");
    assert_eq!(reason(auth.verify_api_key(&hash_api_key(&old))), "api_key");
}

#[test]
fn api_keys_are_hashed_and_generated_as_documented() {
    assert_eq!(
        hash_api_key("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let key = generate_api_key();
    assert!(key.starts_with("pk_"));
    assert_eq!(key.len(), 3 + 43);
    assert!(key[3..].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_ne!(key, generate_api_key());
}

#[test]
fn debug_output_holds_no_key_material() {
    let key = generate_api_key();
    let auth = with_api_keys(&[("acme-2026-11", "acme", &key)]);
    let debug = format!("{auth:?}");
    assert!(debug.contains("acme-2026-11"), "{debug}");
    assert!(!debug.contains(&key), "{debug}");
    let hash = hash_api_key(&key);
    assert!(!debug.contains(&hash), "{debug}");
    assert!(!debug.contains(&hash[..16]), "{debug}");
    let mut config = config("http://127.0.0.1:9/jwks");
    config.api_keys.push(ApiKeyConfig {
        id: "acme-1".into(),
        partner: "acme".into(),
        plan: "gold".into(),
        sha256: hash.clone(),
        scopes: vec![],
    });
    let debug = format!("{config:?}");
    assert!(!debug.contains(&hash), "{debug}");
}

#[tokio::test]
async fn debug_of_a_warm_authenticator_holds_no_key_material() {
    let key = TestKey::es256();
    let (_server, auth) = gateway(&key).await;
    auth.verify_token(&key.sign(&user_claims("alice", "web"))).await.unwrap();
    let debug = format!("{auth:?}");
    let jwk = key.jwk();
    assert!(!debug.contains(jwk["x"].as_str().unwrap()), "{debug}");
    assert!(!debug.contains(jwk["y"].as_str().unwrap()), "{debug}");
}

// === requests ===

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    headers
}

#[tokio::test]
async fn authenticate_reads_one_credential_per_request() {
    let key = TestKey::es256();
    let server = JwksServer::start(&[&key]).await;
    let mut config = config(&server.url());
    config.api_keys.push(ApiKeyConfig {
        id: "acme-1".into(),
        partner: "acme".into(),
        plan: "gold".into(),
        sha256: hash_api_key("pk_acme"),
        scopes: vec!["stock:read".into()],
    });
    let auth = authenticator(&config);
    let token = key.sign(&user_claims("alice", "web"));
    let bearer = format!("Bearer {token}");

    assert_eq!(auth.authenticate(&HeaderMap::new()).await.unwrap(), None);
    let alice = auth.authenticate(&headers(&[("authorization", &bearer)])).await.unwrap().unwrap();
    assert_eq!(alice.subject, "alice");
    let lower = format!("bearer {token}");
    assert!(auth.authenticate(&headers(&[("authorization", &lower)])).await.unwrap().is_some());
    let acme = auth.authenticate(&headers(&[("x-api-key", "pk_acme")])).await.unwrap().unwrap();
    assert_eq!((acme.subject.as_str(), acme.credential), ("acme", Credential::ApiKey));

    let invalid_request = [
        headers(&[("authorization", &bearer), ("x-api-key", "pk_acme")]),
        headers(&[("authorization", &bearer), ("authorization", &bearer)]),
        headers(&[("x-api-key", "pk_acme"), ("x-api-key", "pk_acme")]),
        headers(&[("authorization", "Basic YWNtZTpzZWNyZXQ=")]),
        headers(&[("authorization", &format!("Token {token}"))]),
        headers(&[("authorization", "Bearer")]),
        headers(&[("authorization", "Bearer   ")]),
        headers(&[("authorization", "")]),
        headers(&[("x-api-key", "")]),
    ];
    for request in &invalid_request {
        assert_eq!(reason(auth.authenticate(request).await), "invalid_request", "{request:?}");
    }
    let mut binary = HeaderMap::new();
    binary.insert(header::AUTHORIZATION, HeaderValue::from_bytes(b"Bearer \xff\xfe").unwrap());
    assert_eq!(reason(auth.authenticate(&binary).await), "invalid_request");
    let mut binary = HeaderMap::new();
    binary.insert(&API_KEY_HEADER, HeaderValue::from_bytes(b"pk_\xff").unwrap());
    assert_eq!(reason(auth.authenticate(&binary).await), "api_key");
    assert_eq!(
        reason(auth.authenticate(&headers(&[("authorization", "Bearer a.b.c")])).await),
        "malformed"
    );
    assert_eq!(reason(auth.authenticate(&headers(&[("x-api-key", "pk_wrong")])).await), "api_key");

    // A gateway without API keys refuses them as a request it does not support.
    let (_server, keyless) = gateway(&key).await;
    assert_eq!(
        reason(keyless.authenticate(&headers(&[("x-api-key", "pk_acme")])).await),
        "invalid_request"
    );
}

// === responses ===

#[tokio::test]
async fn every_token_failure_looks_the_same_to_the_client() {
    let failures = [
        AuthError::Malformed("x"),
        AuthError::TooLarge { limit: 1 },
        AuthError::Signature,
        AuthError::Algorithm,
        AuthError::UnknownKey,
        AuthError::Expired,
        AuthError::NotYetValid,
        AuthError::Audience,
        AuthError::Issuer,
        AuthError::Claims("x"),
    ];
    let mut bodies = Vec::new();
    for failure in failures {
        let (status, headers, body) = problem(failure.into_response()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        assert_eq!(
            headers[header::WWW_AUTHENTICATE],
            r#"Bearer realm="portico", error="invalid_token""#
        );
        assert_eq!(body["code"], "invalid_token");
        assert_eq!(body["detail"], "the access token is invalid or expired");
        bodies.push(body);
    }
    assert!(bodies.windows(2).all(|pair| pair[0] == pair[1]), "bodies differ: {bodies:?}");
}

#[tokio::test]
async fn api_key_and_request_errors_have_their_own_codes() {
    let (status, headers, body) = problem(AuthError::ApiKey.into_response()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "invalid_api_key");
    assert_eq!(body["detail"], "the API key is invalid");
    assert!(headers[header::WWW_AUTHENTICATE].to_str().unwrap().starts_with("ApiKey"));

    let (status, headers, body) =
        problem(AuthError::InvalidRequest("send one credential").into_response()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "invalid_request");
    assert_eq!(
        headers[header::WWW_AUTHENTICATE],
        r#"Bearer realm="portico", error="invalid_request""#
    );
}

#[tokio::test]
async fn unauthenticated_and_forbidden_challenge_as_rfc_6750_says() {
    let (status, headers, body) = problem(unauthenticated().into_response()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["code"], "unauthenticated");
    assert_eq!(headers[header::WWW_AUTHENTICATE], r#"Bearer realm="portico""#);

    let (status, headers, body) = problem(forbidden(Some("orders:write")).into_response()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "forbidden");
    assert_eq!(
        headers[header::WWW_AUTHENTICATE],
        r#"Bearer realm="portico", error="insufficient_scope", scope="orders:write""#
    );

    let (status, headers, body) = problem(forbidden(None).into_response()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["code"], "forbidden");
    assert!(!headers.contains_key(header::WWW_AUTHENTICATE));

    // A scope that cannot be quoted stays out of the header instead of breaking it.
    let (_, headers, _) = problem(forbidden(Some("a\"b")).into_response()).await;
    assert!(!headers.contains_key(header::WWW_AUTHENTICATE));
}
