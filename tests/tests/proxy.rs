//! `portico proxy`: one pass-through gateway to any backend, over real HTTP on loopback.

// Test helpers report a broken set-up by panicking with a message.
#![allow(clippy::expect_used)]

use std::time::Duration;

use axum::{Router, routing::any};
use portico::gateways;
use portico_testkit::{MockServer, refused_url};

async fn proxy_to(to: &str) -> (String, tokio::task::JoinHandle<()>) {
    let listen = "127.0.0.1:0".parse().expect("an address");
    let config =
        gateways::proxy_config(listen, to, Duration::from_secs(2), "").expect("valid flags");
    let app = gateways::proxy_app(&config).expect("a proxy app");
    let (addr, task) = gateways::spawn_server(
        app,
        &config,
        portico_edge::server::Serving::new("proxy", &config.limits, 1),
        std::future::pending(),
    )
    .await
    .expect("it binds");
    (format!("http://{addr}"), task)
}

#[tokio::test]
async fn forwards_every_path_method_and_body() {
    let backend = MockServer::start(Router::new().fallback(any(
        |method: axum::http::Method, uri: axum::http::Uri, body: String| async move {
            format!("{method} {uri} {body}")
        },
    )))
    .await;
    let (proxy, task) = proxy_to(&backend.url()).await;
    let client = reqwest::Client::new();
    let answer = client.post(format!("{proxy}/a/b?c=1")).body("hello").send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert!(answer.headers().contains_key("x-request-id"));
    assert_eq!(answer.text().await.unwrap(), "POST /a/b?c=1 hello");
    let root = client.get(format!("{proxy}/")).send().await.unwrap().text().await.unwrap();
    assert_eq!(root, "GET / ");
    task.abort();
}

#[tokio::test]
async fn a_dead_backend_is_a_502_problem() {
    let (proxy, task) = proxy_to(&refused_url().await).await;
    let answer = reqwest::get(format!("{proxy}/x")).await.unwrap();
    assert_eq!(answer.status(), 502);
    assert_eq!(answer.headers()["content-type"], "application/problem+json");
    task.abort();
}

#[test]
fn a_bad_target_is_refused_with_the_flag_named() {
    let listen = "127.0.0.1:0".parse().expect("an address");
    let err = gateways::proxy_config(listen, "ftp://x", Duration::from_secs(1), "").unwrap_err();
    assert!(err.to_string().contains("--to ftp://x"), "{err}");
}
