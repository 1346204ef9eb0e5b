//! Pass-through routes against real backends on loopback.

use std::{net::SocketAddr, time::Duration};

use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, Request},
    http::StatusCode,
};
use portico_testkit::{MockServer, call, echo_server, get, hanging_server, refused_url};

use crate::{GatewayConfig, Upstreams, access::Routes, stack};

fn app(upstream_url: &str, rewrite: Option<&str>, extra: &str) -> Router {
    let rewrite = rewrite.map(|r| format!("rewrite = \"{r}\"")).unwrap_or_default();
    let config = GatewayConfig::from_toml(&format!(
        r#"
        [limits]
        max_body_bytes = 1000
        {extra}
        [upstreams.catalog]
        endpoints = ["{upstream_url}"]
        timeout = "200ms"
        [[routes]]
        path = "/api/catalog"
        upstream = "catalog"
        access = "public"
        {rewrite}
        "#
    ))
    .unwrap();
    let upstreams = Upstreams::from_config(&config).unwrap();
    stack::gateway("test", Routes::new(), &config, &upstreams).unwrap().into_router()
}

#[tokio::test]
async fn rewrites_the_prefix_and_keeps_the_query() {
    let backend = echo_server().await;
    for (rewrite, incoming, expected) in [
        (Some("/"), "/api/catalog/products/p-1?limit=2", "/products/p-1"),
        (Some("/"), "/api/catalog", "/"),
        (Some("/v2"), "/api/catalog/products", "/v2/products"),
        (None, "/api/catalog/products", "/api/catalog/products"),
    ] {
        let response = call(app(&backend.url(), rewrite, ""), get(incoming)).await;
        assert_eq!(response.status, StatusCode::OK);
        let seen = response.json();
        assert_eq!(seen["path"], expected, "{rewrite:?} {incoming}");
        if incoming.contains('?') {
            assert_eq!(seen["query"], "limit=2");
        }
    }
}

#[tokio::test]
async fn does_not_match_a_longer_sibling_path() {
    let backend = echo_server().await;
    let response = call(app(&backend.url(), Some("/"), ""), get("/api/catalogue")).await;
    response.assert_problem(404, "no_route");
}

#[tokio::test]
async fn strips_hop_by_hop_and_sets_forwarded_headers_from_the_peer() {
    let backend = echo_server().await;
    let mut request = Request::get("/api/catalog/x")
        .header("connection", "keep-alive, x-secret-hop")
        .header("x-secret-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("x-forwarded-for", "6.6.6.6")
        .header("host", "shop.example")
        .header("x-custom", "kept")
        .body(Body::empty())
        .unwrap();
    request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 9], 4242))));
    let response = call(app(&backend.url(), Some("/"), ""), request).await;
    let headers = &response.json()["headers"];
    assert_eq!(headers["x-forwarded-for"], "127.0.0.9", "client-supplied XFF must be replaced");
    assert_eq!(headers["x-forwarded-host"], "shop.example");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-custom"], "kept");
    assert!(headers.get("x-secret-hop").is_none());
    assert!(headers.get("keep-alive").is_none());
    assert_eq!(headers["x-request-id"].as_str().unwrap().len(), 32);
}

#[tokio::test]
async fn streams_request_bodies_and_enforces_the_limit() {
    let backend = echo_server().await;
    let ok = Request::post("/api/catalog/upload").body(Body::from(vec![b'x'; 900])).unwrap();
    let response = call(app(&backend.url(), Some("/"), ""), ok).await;
    assert_eq!(response.json()["body_len"], 900);
    assert_eq!(response.json()["method"], "POST");

    // A chunked body with no declared length is cut off at the limit.
    let chunks = futures::stream::iter((0..3).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 400])));
    let too_big = Request::post("/api/catalog/upload").body(Body::from_stream(chunks)).unwrap();
    let response = call(app(&backend.url(), Some("/"), ""), too_big).await;
    response.assert_problem(413, "payload_too_large");
}

#[tokio::test]
async fn upstream_errors_pass_through_untouched() {
    let backend = MockServer::start(Router::new().fallback(|| async {
        (StatusCode::CONFLICT, [("content-type", "text/plain")], "upstream conflict")
    }))
    .await;
    let response = call(app(&backend.url(), Some("/"), ""), get("/api/catalog/x")).await;
    assert_eq!(response.status, StatusCode::CONFLICT);
    assert_eq!(response.text(), "upstream conflict");
}

#[tokio::test]
async fn unreachable_upstream_is_502_problem() {
    let response = call(app(&refused_url().await, Some("/"), ""), get("/api/catalog/x")).await;
    let body = response.assert_problem(502, "upstream_unavailable");
    assert!(!body.to_string().contains("127.0.0.1"), "address leaked: {body}");
}

#[tokio::test]
async fn hanging_upstream_is_504_problem_at_the_route_deadline() {
    let backend = hanging_server().await;
    let started = std::time::Instant::now();
    let response = call(app(&backend.url(), Some("/"), ""), get("/api/catalog/x")).await;
    response.assert_problem(504, "upstream_timeout");
    // The route deadline is 200 ms; it must neither fire early nor wait for the request
    // timeout (10 s). Real sockets are involved, so this bounds rather than pins the time.
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(200), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
}

#[tokio::test]
async fn streams_large_responses() {
    let big = "y".repeat(3 * 1024 * 1024);
    let backend = MockServer::start(Router::new().fallback(move || {
        let big = big.clone();
        async move { big }
    }))
    .await;
    let response = call(app(&backend.url(), Some("/"), ""), get("/api/catalog/big")).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.body.len(), 3 * 1024 * 1024);
}
