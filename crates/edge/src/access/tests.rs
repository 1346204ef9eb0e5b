//! Access rules on their own, and enforced by a whole gateway in front of a real backend.

use axum::{Json, Router, body::Body, extract::Request, routing::any};
use http::StatusCode;
use portico_testkit::{
    MockServer, call, gateway_toml,
    identity::{API_KEYS, TestIdentity, bearer},
};
use serde_json::{Value, json};

use super::*;
use crate::{GatewayConfig, Upstreams, auth::Credential, stack};

fn principal(kind: PrincipalKind, scopes: &[&str]) -> Principal {
    Principal {
        kind,
        subject: "alice".into(),
        scopes: scopes.iter().map(|s| (*s).to_owned()).collect(),
        plan: None,
        credential: Credential::Token,
    }
}

#[test]
fn rules_admit_exactly_who_they_name() {
    let alice = principal(PrincipalKind::User, &["orders:read"]);
    let acme = principal(PrincipalKind::Partner, &["catalog:read"]);

    assert_eq!(Access::public().check(None), Ok(()));
    assert_eq!(Access::public().check(Some(&acme)), Ok(()));
    assert_eq!(Access::authenticated().check(None), Err(Denied::Unauthenticated));
    assert_eq!(Access::authenticated().check(Some(&acme)), Ok(()));
    assert_eq!(Access::user().check(Some(&alice)), Ok(()));
    assert_eq!(Access::user().check(Some(&acme)), Err(Denied::Forbidden(None)));
    assert_eq!(Access::partner().check(Some(&alice)), Err(Denied::Forbidden(None)));
    assert_eq!(Access::user().scope("orders:read").check(Some(&alice)), Ok(()));
    assert_eq!(
        Access::user().scope("orders:read").scope("orders:write").check(Some(&alice)),
        Err(Denied::Forbidden(Some("orders:write".into())))
    );
    // A scope makes a public rule authenticated: a scope cannot be held by nobody.
    assert_eq!(Access::public().scope("catalog:read").check(None), Err(Denied::Unauthenticated));
}

#[test]
fn config_access_names_are_parsed_and_unknown_ones_refused() {
    assert_eq!(Access::from_config("public", &[]), Some(Access::public()));
    assert_eq!(
        Access::from_config("partner", &["stock:read".into()]),
        Some(Access::partner().scope("stock:read"))
    );
    assert_eq!(Access::from_config("everyone", &[]), None);
}

#[test]
fn forged_identity_headers_are_stripped_and_others_kept() {
    let mut headers = HeaderMap::new();
    headers.insert("x-portico-subject", HeaderValue::from_static("bob"));
    headers.insert("X-Portico-Scopes", HeaderValue::from_static("admin"));
    headers.insert("x-request-id", HeaderValue::from_static("r-1"));
    strip_identity_headers(&mut headers);
    assert_eq!(headers.len(), 1);
    assert!(headers.contains_key("x-request-id"));
}

/// A backend that echoes the headers it received.
async fn echo_backend() -> MockServer {
    async fn echo(request: Request) -> Json<Value> {
        let headers: serde_json::Map<String, Value> = request
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or_default())))
            .collect();
        Json(json!({ "headers": headers }))
    }
    MockServer::start(Router::new().fallback(any(echo))).await
}

struct Fixture {
    identity: TestIdentity,
    _backend: MockServer,
    app: Router,
}

/// A gateway for audience `web` with pass-through routes of every kind of access, and one
/// composed route for users with `orders:read`.
async fn fixture(name: &'static str) -> Fixture {
    let identity = TestIdentity::start().await;
    let backend = echo_backend().await;
    let mut toml = gateway_toml(&[("catalog", &backend.url())], &[]);
    toml.push_str(
        "[[routes]]\npath = \"/open\"\nupstream = \"catalog\"\naccess = \"public\"\n\n\
         [[routes]]\npath = \"/partners\"\nupstream = \"catalog\"\naccess = \"partner\"\n\
         scopes = [\"stock:read\"]\n\n\
         [[routes]]\npath = \"/forgotten\"\nupstream = \"catalog\"\n\n",
    );
    toml.push_str(&identity.auth_toml("web", true));
    let config = GatewayConfig::from_toml(&toml).unwrap();
    let upstreams = Upstreams::from_config(&config).unwrap();
    let routes =
        Routes::new().get("/orders", Access::user().scope("orders:read"), |c: Caller| async move {
            Json(json!({ "subject": c.0.subject }))
        });
    let app = stack::gateway(name, routes, &config, &upstreams).unwrap().into_router();
    Fixture { identity, _backend: backend, app }
}

fn request(uri: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::get(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).unwrap()
}

#[tokio::test]
async fn public_routes_serve_anonymous_callers_and_strip_forged_identity() {
    let f = fixture("t-public").await;
    let response = call(f.app.clone(), request("/open/x", &[("x-portico-subject", "bob")])).await;
    assert_eq!(response.status, StatusCode::OK);
    let headers = &response.json()["headers"];
    assert!(headers.get("x-portico-subject").is_none(), "{headers}");
}

#[tokio::test]
async fn a_verified_caller_reaches_backends_as_gateway_set_headers_and_keys_stay_home() {
    let f = fixture("t-identity").await;
    let (_, _, _, acme_key, _) = API_KEYS[0];
    let response = call(
        f.app.clone(),
        request("/partners/stock", &[("x-api-key", acme_key), ("x-portico-subject", "globex")]),
    )
    .await;
    assert_eq!(response.status, StatusCode::OK, "{}", response.text());
    let headers = &response.json()["headers"];
    assert_eq!(headers["x-portico-subject"], "acme");
    assert_eq!(headers["x-portico-client-kind"], "partner");
    assert_eq!(headers["x-portico-plan"], "gold");
    assert!(headers["x-portico-scopes"].as_str().unwrap().contains("stock:read"));
    assert!(headers.get("x-api-key").is_none(), "the partner's key leaked upstream");
}

#[tokio::test]
async fn an_invalid_token_is_refused_even_on_a_public_route() {
    let f = fixture("t-invalid").await;
    let forged = format!("{}x", f.identity.user_token("alice", "web"));
    let response =
        call(f.app.clone(), request("/open/x", &[("authorization", &bearer(&forged))])).await;
    response.assert_problem(401, "invalid_token");
    let challenge = response.header("www-authenticate").unwrap();
    assert!(challenge.starts_with("Bearer") && challenge.contains("invalid_token"), "{challenge}");
}

#[tokio::test]
async fn protected_routes_need_the_right_caller_and_scope() {
    let f = fixture("t-protected").await;
    let anonymous = call(f.app.clone(), request("/orders", &[])).await;
    anonymous.assert_problem(401, "unauthenticated");
    assert!(anonymous.header("www-authenticate").unwrap().starts_with("Bearer"));

    let alice = f.identity.user_token("alice", "web");
    let ok = call(f.app.clone(), request("/orders", &[("authorization", &bearer(&alice))])).await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.json()["subject"], "alice");

    // A token for another gateway is not a token for this one.
    let mobile = f.identity.user_token("alice", "mobile");
    call(f.app.clone(), request("/orders", &[("authorization", &bearer(&mobile))]))
        .await
        .assert_problem(401, "invalid_token");

    // Authenticated, but lacking the scope: 403, naming the scope in the challenge.
    let narrow = f.identity.token("alice", "web", "profile");
    let refused =
        call(f.app.clone(), request("/orders", &[("authorization", &bearer(&narrow))])).await;
    refused.assert_problem(403, "forbidden");
    assert!(refused.header("www-authenticate").unwrap().contains("orders:read"));

    // A user where partners are expected: authenticated, not allowed.
    call(f.app.clone(), request("/partners/stock", &[("authorization", &bearer(&alice))]))
        .await
        .assert_problem(403, "forbidden");
}

#[tokio::test]
async fn a_route_that_declares_nothing_admits_nobody() {
    let f = fixture("t-undeclared").await;
    let alice = f.identity.user_token("alice", "web");
    call(f.app.clone(), request("/forgotten/x", &[])).await.assert_problem(403, "forbidden");
    call(f.app.clone(), request("/forgotten/x", &[("authorization", &bearer(&alice))]))
        .await
        .assert_problem(403, "forbidden");
}

#[tokio::test]
async fn unknown_paths_and_methods_keep_their_404_and_405() {
    let f = fixture("t-routing").await;
    call(f.app.clone(), request("/nowhere", &[])).await.assert_problem(404, "no_route");
    let post = Request::post("/orders").body(Body::empty()).unwrap();
    assert_eq!(call(f.app.clone(), post).await.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn auth_failures_are_counted_by_reason_at_metrics() {
    let f = fixture("t-metrics").await;
    call(f.app.clone(), request("/orders", &[])).await;
    call(f.app.clone(), request("/orders", &[("authorization", "Bearer not-a-jwt")])).await;
    call(f.app.clone(), request("/forgotten/x", &[])).await;
    let metrics = call(f.app.clone(), request("/metrics", &[])).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = metrics.text();
    for reason in ["missing", "malformed", "forbidden"] {
        let series =
            format!("portico_auth_failures_total{{gateway=\"t-metrics\",reason=\"{reason}\"}} 1");
        assert!(text.contains(&series), "no `{series}` in:\n{text}");
    }
    assert!(!text.contains("not-a-jwt"));
}

#[tokio::test]
async fn metrics_answer_loopback_scrapers_only() {
    let f = fixture("t-metrics-peer").await;
    let from = |ip: [u8; 4]| {
        let mut request = request("/metrics", &[]);
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((ip, 40000))));
        request
    };
    assert_eq!(call(f.app.clone(), from([127, 0, 0, 1])).await.status, StatusCode::OK);
    call(f.app.clone(), from([203, 0, 113, 7])).await.assert_problem(404, "no_route");
}

#[test]
fn a_route_that_needs_callers_needs_an_auth_section() {
    let toml = gateway_toml(&[("catalog", "http://127.0.0.1:9")], &[]);
    let config = GatewayConfig::from_toml(&toml).unwrap();
    let upstreams = Upstreams::from_config(&config).unwrap();
    let routes = Routes::new().get("/orders", Access::user(), || async { "" });
    let error = stack::gateway("t-config", routes, &config, &upstreams).unwrap_err();
    assert!(error.to_string().contains("[auth]"), "{error}");
}

#[test]
fn routes_on_one_path_keep_one_rule_per_method() {
    let routes: Routes = Routes::new()
        .get("/orders", Access::partner().scope("orders:read"), || async { "" })
        .post("/orders", Access::partner().scope("orders:write"), || async { "" });
    let (_, table) = routes.into_parts();
    let rules: Vec<String> = table.rules().map(|(p, a)| format!("{p} {a:?}")).collect();
    assert!(rules.contains(&"/orders partner +orders:read".to_owned()), "{rules:?}");
    assert!(rules.contains(&"/orders partner +orders:write".to_owned()), "{rules:?}");
}
