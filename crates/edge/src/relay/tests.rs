//! The relay over real sockets: a gateway served on loopback, real backends behind it.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use axum::{
    Json, Router,
    body::Body,
    extract::{ConnectInfo, Request},
    routing::any,
};
use portico_testkit::{hanging_server, refused_url};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::{GatewayConfig, Upstreams, access::Routes, server, stack};

/// A backend that echoes what it received, and the port of the connection it came on.
async fn echo_backend() -> String {
    async fn echo(ConnectInfo(peer): ConnectInfo<SocketAddr>, request: Request) -> Json<Value> {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        let headers: serde_json::Map<_, _> = parts
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v.to_str().unwrap_or_default())))
            .collect();
        Json(json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "headers": headers,
            "body_len": body.len(),
            "peer_port": peer.port(),
        }))
    }
    start_backend(Router::new().fallback(any(echo))).await
}

async fn start_backend(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = router.into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, service).await.unwrap() });
    format!("http://{addr}")
}

/// Serves a gateway whose one pass-through route is `route` (TOML lines) to `upstream`.
async fn gateway(upstream: &str, route: &str) -> SocketAddr {
    gateway_over(&[upstream.to_owned()], "", route).await
}

/// [`gateway`] over several endpoints, with more `[upstreams.catalog]` settings.
async fn gateway_over(endpoints: &[String], settings: &str, route: &str) -> SocketAddr {
    let config = GatewayConfig::from_toml(&format!(
        r#"
        [limits]
        max_body_bytes = 1000
        [[routes]]
        upstream = "catalog"
        {route}
        [upstreams.catalog]
        endpoints = {endpoints:?}
        timeout = "300ms"
        {settings}
        "#
    ))
    .unwrap();
    let upstreams = Upstreams::from_config(&config).unwrap();
    let app = stack::gateway("relay-test", Routes::new(), &config, &upstreams).unwrap();
    assert!(app.relay().is_some(), "pass-through routes have a relay");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::serve(
        listener,
        app,
        server::Serving::with_header_read_timeout(Duration::from_secs(5)),
        std::future::pending(),
    ));
    addr
}

const CATALOG: &str = "path = \"/api/catalog\"\nrewrite = \"/\"\naccess = \"public\"";

/// One response read off a raw connection: status, headers (lowercase names), body.
struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// Reads one response with a `Content-Length` body (or none, for `head`) from `stream`,
/// leaving what follows it in `buf`.
async fn read_answer(stream: &mut TcpStream, buf: &mut Vec<u8>, head: bool) -> Answer {
    let read = async {
        loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut response = httparse::Response::new(&mut headers);
            if let httparse::Status::Complete(len) = response.parse(buf).unwrap() {
                let headers: HashMap<String, String> = response
                    .headers
                    .iter()
                    .map(|h| {
                        (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned())
                    })
                    .collect();
                let body_len: usize = if head {
                    0
                } else {
                    headers.get("content-length").map_or(0, |v| v.parse().unwrap())
                };
                if buf.len() >= len + body_len {
                    let status = response.code.unwrap();
                    let body = buf[len..len + body_len].to_vec();
                    buf.drain(..len + body_len);
                    return Answer { status, headers, body };
                }
            }
            assert!(stream.read_buf(buf).await.unwrap() > 0, "closed before a whole response");
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read).await.expect("an answer in time")
}

#[tokio::test]
async fn a_request_is_relayed_with_the_edge_headers_and_nothing_forged() {
    let backend = echo_backend().await;
    let addr = gateway(&backend, CATALOG).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"GET /api/catalog/items?page=2 HTTP/1.1\r\nHost: shop.example\r\n\
              X-Forwarded-For: 6.6.6.6\r\nX-Portico-Subject: admin\r\nX-Api-Key: secret\r\n\
              Connection: X-Hop\r\nX-Hop: 1\r\nX-Request-Id: abc-123\r\nAccept: */*\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buf = Vec::new();
    let answer = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.headers["x-request-id"], "abc-123");
    let echo = answer.json();
    assert_eq!(echo["path"], "/items");
    assert_eq!(echo["query"], "page=2");
    let headers = &echo["headers"];
    assert_eq!(headers["x-forwarded-for"], "127.0.0.1", "the real peer, not the claimed one");
    assert_eq!(headers["x-forwarded-host"], "shop.example");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(headers["x-request-id"], "abc-123");
    assert_eq!(headers["accept"], "*/*");
    assert_eq!(headers["host"], backend.trim_start_matches("http://"));
    for dropped in ["x-portico-subject", "x-api-key", "x-hop", "connection"] {
        assert!(headers.get(dropped).is_none(), "{dropped} reached the backend");
    }
}

#[tokio::test]
async fn client_and_upstream_connections_are_kept_alive_and_pipelining_keeps_order() {
    let backend = echo_backend().await;
    let addr = gateway(&backend, CATALOG).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // Three requests in one write: answered in order, over one upstream connection.
    stream
        .write_all(
            b"GET /api/catalog/a HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /api/catalog/b HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /api/catalog/c HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .unwrap();
    let mut buf = Vec::new();
    let mut ports = Vec::new();
    for path in ["/a", "/b", "/c"] {
        let echo = read_answer(&mut stream, &mut buf, false).await.json();
        assert_eq!(echo["path"], path);
        ports.push(echo["peer_port"].as_u64().unwrap());
    }
    assert!(ports.iter().all(|p| *p == ports[0]), "one upstream connection: {ports:?}");
}

#[tokio::test]
async fn request_bodies_are_relayed_and_oversized_ones_refused() {
    let backend = echo_backend().await;
    let addr = gateway(&backend, CATALOG).await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/api/catalog/upload");
    let small = client.post(&url).body(vec![b'x'; 900]).send().await.unwrap();
    let echo: Value = small.json().await.unwrap();
    assert_eq!((echo["method"].as_str(), echo["body_len"].as_u64()), (Some("POST"), Some(900)));

    let large = client.post(&url).body(vec![b'x'; 1001]).send().await.unwrap();
    assert_eq!(large.status(), 413);
    assert_eq!(large.headers()["content-type"], "application/problem+json");

    // A chunked request body is the general server's: relayed all the same.
    let chunks = futures::stream::iter([Ok::<_, std::io::Error>("abc"), Ok("defg")]);
    let streamed = client.put(&url).body(reqwest::Body::wrap_stream(chunks)).send().await.unwrap();
    let echo: Value = streamed.json().await.unwrap();
    assert_eq!((echo["method"].as_str(), echo["body_len"].as_u64()), (Some("PUT"), Some(7)));
}

#[tokio::test]
async fn chunked_and_empty_responses_keep_the_connection_usable() {
    let backend = start_backend(Router::new().fallback(any(|request: Request| async move {
        if request.uri().path() == "/stream" {
            let parts = ["one ", "two ", "three"].map(|p| Ok::<_, std::io::Error>(p.to_owned()));
            axum::response::Response::new(Body::from_stream(futures::stream::iter(parts)))
        } else {
            axum::response::Response::new(Body::from("0123456789"))
        }
    })))
    .await;
    let addr = gateway(&backend, CATALOG).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /api/catalog/stream HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    // The chunked body arrives as the backend framed it; read it to its last chunk.
    let mut buf = Vec::new();
    let read_chunked = async {
        loop {
            stream.read_buf(&mut buf).await.unwrap();
            if buf.windows(5).any(|w| w == b"0\r\n\r\n") {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(5), read_chunked).await.unwrap();
    let text = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    assert!(text.contains("one ") && text.contains("three"), "{text}");
    buf.clear();

    // HEAD: the length is told, no body is sent, and the next answer is not confused.
    stream
        .write_all(
            b"HEAD /api/catalog/x HTTP/1.1\r\nHost: x\r\n\r\nGET /api/catalog/x HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .unwrap();
    let head = read_answer(&mut stream, &mut buf, true).await;
    assert_eq!((head.status, head.headers["content-length"].as_str()), (200, "10"));
    let get = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(get.body, b"0123456789");
}

#[tokio::test]
async fn an_upstream_that_closed_its_idle_connection_is_not_an_error() {
    // A backend that answers each connection once, without announcing the close.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = vec![0_u8; 4096];
            let _ = socket.read(&mut buf).await;
            let _ = socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
            // Dropped here: the close reaches the gateway's idle pool.
        }
    });
    let addr = gateway(&backend, CATALOG).await;
    let client = reqwest::Client::new();
    for _ in 0..3 {
        let answer = client.get(format!("http://{addr}/api/catalog/x")).send().await.unwrap();
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.text().await.unwrap(), "ok");
    }
}

#[tokio::test]
async fn a_dead_or_slow_upstream_gets_a_problem_within_the_deadline() {
    let addr = gateway(&refused_url().await, CATALOG).await;
    let answer = reqwest::get(format!("http://{addr}/api/catalog/x")).await.unwrap();
    assert_eq!(answer.status(), 502);
    assert_eq!(answer.headers()["content-type"], "application/problem+json");
    let problem: Value = answer.json().await.unwrap();
    assert_eq!(problem["code"], "upstream_unavailable");

    let hanging = hanging_server().await;
    let addr = gateway(&hanging.url(), CATALOG).await;
    let started = std::time::Instant::now();
    let answer = reqwest::get(format!("http://{addr}/api/catalog/x")).await.unwrap();
    let waited = started.elapsed();
    assert_eq!(answer.status(), 504);
    // The route's 300 ms deadline: not before it, and well before anything else would end it.
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(3), "{waited:?}");
}

#[tokio::test]
async fn each_request_on_a_kept_connection_gets_its_own_upstream_deadline() {
    // One timer per connection carries every call's deadline: a call on a route with a short
    // timeout must not leave it armed for that deadline, and one that fired must serve the
    // next call.
    let backend = start_backend(
        Router::new()
            .route("/fast", any(|| async { "ok" }))
            .route("/slow", any(std::future::pending::<&'static str>)),
    )
    .await;
    let quick = "\n[[routes]]\nupstream = \"catalog\"\npath = \"/api/quick\"\nrewrite = \"/\"\n\
                 access = \"public\"\ntimeout = \"50ms\"";
    let addr = gateway(&backend, &format!("{CATALOG}{quick}")).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    let get = |path: &str| format!("GET /api/{path} HTTP/1.1\r\nhost: x\r\n\r\n");

    stream.write_all(get("quick/fast").as_bytes()).await.unwrap();
    assert_eq!(read_answer(&mut stream, &mut buf, false).await.status, 200);

    let started = std::time::Instant::now();
    stream.write_all(get("catalog/slow").as_bytes()).await.unwrap();
    let answer = read_answer(&mut stream, &mut buf, false).await;
    let waited = started.elapsed();
    assert_eq!(answer.status, 504);
    // Its own route's 300 ms: not the earlier call's 50 ms, and not never.
    assert!(waited >= Duration::from_millis(300) && waited < Duration::from_secs(3), "{waited:?}");

    for path in ["catalog/fast", "quick/fast"] {
        stream.write_all(get(path).as_bytes()).await.unwrap();
        let answer = read_answer(&mut stream, &mut buf, false).await;
        assert_eq!(answer.status, 200, "the timer that fired serves the next call");
        assert_eq!(answer.body, b"ok");
    }
}

// An open route's deadline counts from the request's start when its head came in one read
// (no clock read after admission); a head that trickled in over longer than the route's
// timeout must still leave the upstream its whole timeout.
#[tokio::test]
async fn a_head_that_trickles_in_does_not_eat_the_upstreams_time() {
    let backend = start_backend(Router::new().route("/fast", any(|| async { "ok" }))).await;
    let quick = "\n[[routes]]\nupstream = \"catalog\"\npath = \"/api/quick\"\nrewrite = \"/\"\n\
                 access = \"public\"\ntimeout = \"50ms\"";
    let addr = gateway(&backend, &format!("{CATALOG}{quick}")).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /api/quick/fast HTTP/1.1\r\n").await.unwrap();
    // The client's pause, four times the route's timeout (the gateway's head timeout is 5 s).
    tokio::time::sleep(Duration::from_millis(200)).await;
    stream.write_all(b"host: x\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let answer = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(answer.status, 200, "{}", String::from_utf8_lossy(&answer.body));
    assert_eq!(answer.body, b"ok");
}

#[tokio::test]
async fn routes_of_the_router_and_undeclared_routes_are_not_relayed_as_open() {
    let backend = echo_backend().await;
    // Everything under `/` passes through, but `/healthz` is the gateway's own.
    let addr = gateway(&backend, "path = \"/\"\naccess = \"public\"").await;
    let health = reqwest::get(format!("http://{addr}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(health.text().await.unwrap().to_lowercase().contains("ok"));
    let echo: Value = reqwest::get(format!("http://{addr}/x")).await.unwrap().json().await.unwrap();
    assert_eq!(echo["path"], "/x");

    // A route that declares no access admits nobody.
    let addr = gateway(&backend, "path = \"/api/catalog\"").await;
    let answer = reqwest::get(format!("http://{addr}/api/catalog/x")).await.unwrap();
    assert_eq!(answer.status(), 403);
    assert_eq!(answer.headers()["content-type"], "application/problem+json");
}

#[tokio::test]
async fn http2_clients_are_served_by_the_general_server() {
    let backend = echo_backend().await;
    let addr = gateway(&backend, CATALOG).await;
    let client = reqwest::Client::builder().http2_prior_knowledge().build().unwrap();
    let answer = client.get(format!("http://{addr}/api/catalog/h2")).send().await.unwrap();
    assert_eq!(answer.version(), reqwest::Version::HTTP_2);
    let echo: Value = answer.json().await.unwrap();
    assert_eq!(echo["path"], "/h2");
}

#[tokio::test]
async fn the_relay_retries_a_refused_endpoint_elsewhere_and_its_breaker_opens() {
    let backend = echo_backend().await;
    let refused = refused_url().await;
    let settings = "balance = \"round_robin\"\n[upstreams.catalog.breaker]\n\
                    consecutive_failures = 2\n[upstreams.catalog.outlier]\n\
                    consecutive_failures = 1000\n";
    let addr = gateway_over(&[refused.clone(), backend.clone()], settings, CATALOG).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    for i in 0..6 {
        stream.write_all(b"GET /api/catalog/a HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let answer = read_answer(&mut stream, &mut buf, false).await;
        assert_eq!(answer.status, 200, "request {i}");
        let headers = &answer.json()["headers"];
        // The Host line names the endpoint the (retried) request went to.
        assert_eq!(headers["host"], backend.trim_start_matches("http://"));
        let left: u64 = headers["x-portico-timeout-ms"].as_str().unwrap().parse().unwrap();
        assert!((1..=300).contains(&left), "{left}");
    }
    let metrics = crate::metrics::handle().unwrap().render();
    let endpoint = format!("endpoint=\"{}\"", refused.trim_start_matches("http://"));
    let breaker = metrics
        .lines()
        .find(|l| l.starts_with("portico_upstream_breaker_state") && l.contains(&endpoint))
        .unwrap();
    assert!(breaker.ends_with(" 2"), "open after two refused connects: {breaker}");

    // A request with a body is not replayed: with the refused endpoint's breaker open it
    // goes to the good one.
    stream
        .write_all(b"POST /api/catalog/a HTTP/1.1\r\nHost: x\r\ncontent-length: 2\r\n\r\nhi")
        .await
        .unwrap();
    let answer = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!((answer.status, answer.json()["body_len"].as_u64()), (200, Some(2)));
}

#[tokio::test]
async fn a_client_that_leaves_takes_its_upstream_call_with_it() {
    let silent = portico_testkit::silent_upstream().await;
    let upstream = silent.url.clone();
    // The route waits 30 s and the request deadline is the default 10 s: only the client
    // leaving can end the call within the test.
    let addr = gateway(&upstream, &format!("{CATALOG}\ntimeout = \"30s\"")).await;
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(b"GET /api/catalog/slow HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), silent.asked).await.unwrap().unwrap();
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), silent.closed)
        .await
        .expect("the upstream call was cancelled when the client left")
        .unwrap();
}

// Paused time: the backend's delay, the relay's watch delay and the gap between the two
// requests are timers on one clock, so their order is exact.
#[tokio::test(start_paused = true)]
async fn a_pipelined_request_waiting_its_turn_does_not_cancel_the_one_before() {
    let slow = start_backend(Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        Json(json!({"slow": true}))
    }))
    .await;
    let addr = gateway(&slow, CATALOG).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The second request arrives while the first is past the watch delay.
    stream.write_all(b"GET /api/catalog/a HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    stream.write_all(b"GET /api/catalog/b HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    for _ in 0..2 {
        assert_eq!(read_answer(&mut stream, &mut buf, false).await.status, 200);
    }
}

#[tokio::test]
async fn a_hedged_pass_through_route_hedges_on_the_relay() {
    let slow = start_backend(Router::new().fallback(|| async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        Json(json!({"who": "slow"}))
    }))
    .await;
    let fast = echo_backend().await;
    let settings = "balance = \"round_robin\"\n[upstreams.catalog.hedge]\ndelay = \"50ms\"\n";
    let addr = gateway_over(&[slow, fast], settings, &format!("{CATALOG}\ntimeout = \"5s\"")).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    // Round robin sends one of the two first to the slow endpoint; both answer from the fast one.
    for _ in 0..2 {
        stream.write_all(b"GET /api/catalog/a HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let answer = read_answer(&mut stream, &mut buf, false).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["path"], "/a", "the echo (fast) endpoint answered");
    }
}

#[tokio::test]
async fn the_relay_retries_a_503_elsewhere_for_reads_and_passes_it_through_for_writes() {
    let unavailable = start_backend(
        Router::new().fallback(|| async { (http::StatusCode::SERVICE_UNAVAILABLE, "try later") }),
    )
    .await;
    let echo = echo_backend().await;
    let settings = "balance = \"round_robin\"\n[upstreams.catalog.breaker]\n\
                    consecutive_failures = 1000\nmin_calls = 1000\n[upstreams.catalog.outlier]\n\
                    consecutive_failures = 1000\n";
    let addr = gateway_over(&[unavailable, echo], settings, CATALOG).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    // Round robin's first turn is the 503 endpoint: a POST is not repeated, the 503 passes.
    stream
        .write_all(b"POST /api/catalog/a HTTP/1.1\r\nHost: x\r\ncontent-length: 2\r\n\r\nhi")
        .await
        .unwrap();
    let answer = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!((answer.status, answer.body.as_slice()), (503, b"try later".as_slice()));
    // Reads whose turn is the 503 endpoint are retried on the other one.
    for _ in 0..4 {
        stream.write_all(b"GET /api/catalog/a HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let answer = read_answer(&mut stream, &mut buf, false).await;
        assert_eq!(answer.status, 200);
        assert_eq!(answer.json()["path"], "/a");
    }
}

#[tokio::test]
async fn pooled_connections_to_an_endpoint_discovery_dropped_are_closed() {
    // A keep-alive backend on one connection that says when the relay closes it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let leaving = format!("http://{}", listener.local_addr().unwrap());
    let (closed, mut closed_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut buf = [0_u8; 4096];
        // Each read is one small request here; each gets its answer.
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {
            let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
            if stream.write_all(ok).await.is_err() {
                break;
            }
        }
        let _ = closed.send(());
    });
    let staying = echo_backend().await;
    let dir = std::env::temp_dir().join(format!("portico-relay-prune-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("endpoints");
    std::fs::write(&file, format!("{leaving}\n")).unwrap();
    let settings = format!(
        "[upstreams.catalog.discovery]\nfile = {:?}\ninterval = \"20ms\"\n",
        file.display().to_string()
    );
    let addr = gateway_over(std::slice::from_ref(&leaving), &settings, CATALOG).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    stream.write_all(b"GET /api/catalog/a HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert_eq!(read_answer(&mut stream, &mut buf, false).await.body, b"ok");
    // Discovery replaces the endpoint; once a request reaches the new one, the pool has seen
    // the change and let go of the connection it kept to the old one.
    std::fs::write(&file, format!("{staying}\n")).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        stream.write_all(b"GET /api/catalog/b HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let answer = read_answer(&mut stream, &mut buf, false).await;
        if answer.body != b"ok" {
            assert_eq!(answer.json()["path"], "/b");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "discovery never moved to the new endpoint"
        );
        tokio::task::yield_now().await;
    }
    tokio::time::timeout(Duration::from_secs(5), &mut closed_rx)
        .await
        .expect("the pooled connection to the dropped endpoint was closed")
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_busy_connection_lives_past_the_keepalive_timeout_and_an_idle_one_is_closed() {
    let backend = echo_backend().await;
    let config = GatewayConfig::from_toml(&format!(
        r#"
        [limits]
        header_read_timeout = "300ms"
        keepalive_timeout = "400ms"
        [[routes]]
        path = "/"
        upstream = "catalog"
        access = "public"
        [upstreams.catalog]
        endpoints = ["{backend}"]
        "#
    ))
    .unwrap();
    let upstreams = Upstreams::from_config(&config).unwrap();
    let app = stack::gateway("relay-idle", Routes::new(), &config, &upstreams).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = server::Serving::new("relay-idle", &config.limits, 1);
    tokio::spawn(server::serve(listener, app, serving, std::future::pending()));

    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
    // A request every 100 ms for 1.2 s: three times the keep-alive timeout in all, never idle
    // for it at once, so the connection (and its lazily re-armed timer) must carry it.
    let started = tokio::time::Instant::now();
    let idle_from = loop {
        stream.write_all(request).await.unwrap();
        let mut buf = vec![0_u8; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
        if started.elapsed() >= Duration::from_millis(1200) {
            break tokio::time::Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Then idle: closed after the keep-alive timeout, not before and not much after.
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
        .await
        .expect("an idle connection is closed")
        .unwrap();
    let idle = idle_from.elapsed();
    assert!(idle >= Duration::from_millis(380), "closed after {idle:?} idle");
    assert!(idle < Duration::from_millis(1500), "closed after {idle:?} idle");
}

/// A gateway with its own routes (`routes`) beside one pass-through route to `upstream`
/// (`CATALOG`), served until `stop` is sent; the server's task is returned to await its drain.
async fn gateway_with_routes(
    upstream: &str,
    routes: Routes,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let config = GatewayConfig::from_toml(&format!(
        r#"
        [limits]
        max_body_bytes = 200000
        [[routes]]
        upstream = "catalog"
        {CATALOG}
        [upstreams.catalog]
        endpoints = ["{upstream}"]
        timeout = "1s"
        "#
    ))
    .unwrap();
    let upstreams = Upstreams::from_config(&config).unwrap();
    let app = stack::gateway("relay-routed", routes, &config, &upstreams).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = server::Serving::with_header_read_timeout(Duration::from_secs(5));
    let server = tokio::spawn(server::serve(listener, app, serving, async {
        let _ = stopped.await;
    }));
    (addr, stop, server)
}

/// `POST /echo` answers how many body bytes it read and what they were.
fn echo_routes() -> Routes {
    use crate::access::Access;
    Routes::new().post("/echo", Access::public(), |body: axum::body::Bytes| async move {
        Json(json!({ "body_len": body.len(), "body": String::from_utf8_lossy(&body) }))
    })
}

#[tokio::test]
async fn router_and_relayed_requests_take_turns_on_one_kept_connection() {
    let backend = echo_backend().await;
    let (addr, _stop, _server) = gateway_with_routes(&backend, echo_routes()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    // One at a time: the router's, the relay's, the router's again — one connection.
    for (request, check) in [
        ("GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n", "healthz"),
        ("GET /api/catalog/one HTTP/1.1\r\nHost: a\r\n\r\n", "/one"),
        ("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", "hello"),
        ("GET /api/catalog/two HTTP/1.1\r\nHost: a\r\n\r\n", "/two"),
    ] {
        stream.write_all(request.as_bytes()).await.unwrap();
        let answer = read_answer(&mut stream, &mut buf, false).await;
        assert_eq!(answer.status, 200, "{request}");
        check_answer(&answer, check);
    }
    // Pipelined in one write: answered in order, each by its own transport.
    stream
        .write_all(
            b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\
              GET /api/catalog/three HTTP/1.1\r\nHost: a\r\n\r\n\
              GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n\
              POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nxy",
        )
        .await
        .unwrap();
    for check in ["abc", "/three", "healthz", "xy"] {
        let answer = read_answer(&mut stream, &mut buf, false).await;
        assert_eq!(answer.status, 200, "{check}");
        check_answer(&answer, check);
    }
}

fn check_answer(answer: &Answer, expected: &str) {
    if expected == "healthz" {
        assert!(String::from_utf8_lossy(&answer.body).to_lowercase().contains("ok"));
    } else if expected.starts_with('/') {
        assert_eq!(answer.json()["path"], expected);
    } else {
        assert_eq!(answer.json()["body"], expected);
    }
}

#[tokio::test]
async fn a_router_request_body_arriving_in_pieces_is_read_to_its_end_and_no_further() {
    let backend = echo_backend().await;
    let (addr, _stop, _server) = gateway_with_routes(&backend, echo_routes()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n012")
        .await
        .unwrap();
    tokio::task::yield_now().await;
    // The rest of the body and the next request in one write: the body ends at ten bytes.
    stream.write_all(b"3456789GET /api/catalog/next HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let answer = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(answer.json()["body"], "0123456789");
    let answer = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(answer.json()["path"], "/next");
}

#[tokio::test]
async fn a_request_inside_a_router_request_body_is_never_served() {
    let backend = echo_backend().await;
    let (addr, _stop, _server) = gateway_with_routes(&backend, echo_routes()).await;
    // Small enough to be read first, and too large for it (hyper streams it).
    for padding in [0, 100 * 1024] {
        let smuggled =
            format!("{}GET /api/catalog/smuggled HTTP/1.1\r\nHost: a\r\n\r\n", " ".repeat(padding));
        smuggled_requests_are_never_served(addr, &smuggled).await;
    }
}

async fn smuggled_requests_are_never_served(addr: SocketAddr, smuggled: &str) {
    // A handler that reads the body, and one the router refuses without reading it (405).
    for target in ["/echo", "/healthz"] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "POST {target} HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{smuggled}\
             GET /api/catalog/real HTTP/1.1\r\nHost: a\r\n\r\n",
            smuggled.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let first = read_answer(&mut stream, &mut buf, false).await;
        if target == "/echo" {
            assert_eq!(first.json()["body"], smuggled);
        } else {
            assert_eq!(first.status, 405);
        }
        // The next answer is the real request's, or the connection closes (a body left unread
        // may make it a reset): never the smuggled one.
        let mut rest = buf;
        tokio::time::timeout(Duration::from_secs(5), async {
            while !rest.windows(5).any(|w| w == b"/real") {
                match stream.read_buf(&mut rest).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await
        .expect("the real request answered or the connection closed");
        let rest = String::from_utf8_lossy(&rest);
        assert!(!rest.contains("smuggled"), "{target}: {rest}");
    }
}

#[tokio::test]
async fn a_router_response_while_draining_is_the_connections_last() {
    use crate::access::Access;
    let backend = echo_backend().await;
    let entered = std::sync::Arc::new(tokio::sync::Notify::new());
    let release = std::sync::Arc::new(tokio::sync::Notify::new());
    let routes = {
        let (entered, release) = (entered.clone(), release.clone());
        Routes::new().get("/slow", Access::public(), move || async move {
            entered.notify_one();
            release.notified().await;
            "finished"
        })
    };
    let (addr, stop, server) = gateway_with_routes(&backend, routes).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /slow HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    entered.notified().await;
    stop.send(()).unwrap();
    // Once the gateway drains (it stops accepting first), the answer in flight is the last.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while TcpStream::connect(addr).await.is_ok() {
        assert!(tokio::time::Instant::now() < deadline, "still accepting after shutdown");
        tokio::task::yield_now().await;
    }
    release.notify_one();
    let mut all = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut all))
        .await
        .expect("the connection is closed after its last answer")
        .unwrap();
    let all = String::from_utf8_lossy(&all).to_lowercase();
    assert!(all.starts_with("http/1.1 200"), "{all}");
    assert!(all.contains("connection: close"), "{all}");
    assert!(all.ends_with("finished"), "{all}");
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_client_that_leaves_mid_router_request_ends_it_and_a_slow_reader_still_gets_all() {
    use crate::access::Access;
    let backend = echo_backend().await;
    let dropped = std::sync::Arc::new(tokio::sync::Notify::new());
    let big = "x".repeat(4 << 20);
    let routes = {
        let dropped = dropped.clone();
        let big = big.clone();
        Routes::new()
            .get("/forever", Access::public(), move || async move {
                // Notified when the handler's future is dropped, i.e. the request ended.
                struct OnDrop(std::sync::Arc<tokio::sync::Notify>);
                impl Drop for OnDrop {
                    fn drop(&mut self) {
                        self.0.notify_one();
                    }
                }
                let _guard = OnDrop(dropped);
                std::future::pending::<()>().await;
            })
            .get("/big", Access::public(), move || async move { big })
    };
    let (addr, _stop, _server) = gateway_with_routes(&backend, routes).await;

    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"GET /forever HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
    tokio::task::yield_now().await;
    drop(stream);
    tokio::time::timeout(Duration::from_secs(5), dropped.notified())
        .await
        .expect("the handler was dropped when its client left");

    // A response far larger than the socket buffers, read slowly after a pause: all of it
    // arrives, and the connection then serves the next request.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /big HTTP/1.1\r\nHost: a\r\n\r\nGET /api/catalog/after HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let answer = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(answer.body.len(), big.len());
    let answer = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(answer.json()["path"], "/after");
}

/// A stand-in for the general server that records each router request it is given (as
/// `call: METHOD /path body` or, for one handed to hyper, `whole: <bytes>`) and answers `routed`.
#[derive(Default)]
struct Recorder {
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl super::Routed for Recorder {
    fn call(
        &mut self,
        request: http::Request<Body>,
    ) -> std::pin::Pin<Box<dyn Future<Output = axum::response::Response> + Send>> {
        let seen = self.seen.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
            let line =
                format!("call: {} {} {}", parts.method, parts.uri, String::from_utf8_lossy(&body));
            seen.lock().unwrap().push(line);
            axum::response::IntoResponse::into_response("routed")
        })
    }

    async fn serve_one<S: super::ClientIo>(
        &mut self,
        mut request: super::OneRequest<'_, S>,
    ) -> bool {
        let mut bytes = Vec::new();
        while !request.finished() {
            assert!(request.read_buf(&mut bytes).await.unwrap() > 0, "the request ended early");
        }
        self.seen.lock().unwrap().push(format!("whole: {} bytes", bytes.len()));
        request.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nrouted").await.unwrap();
        request.flush().await.unwrap();
        true
    }
}

#[tokio::test]
async fn the_relay_keeps_the_connection_and_gives_the_router_one_request_at_a_time() {
    let backend = echo_backend().await;
    let config = GatewayConfig::from_toml(&format!(
        "[limits]\nmax_body_bytes = 1000000\n[[routes]]\nupstream = \"catalog\"\n{CATALOG}\n[upstreams.catalog]\nendpoints = [\"{backend}\"]\n"
    ))
    .unwrap();
    let upstreams = Upstreams::from_config(&config).unwrap();
    let app = stack::gateway("relay-kept", Routes::new(), &config, &upstreams).unwrap();
    let relay = app.relay().unwrap().clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_stop, stopping) = tokio::sync::watch::channel(false);
    let router = Recorder::default();
    let seen = router.seen.clone();
    let served = tokio::spawn(async move {
        let (stream, peer) = listener.accept().await.unwrap();
        let mut router = router;
        let ended = relay.serve_connection(stream, peer, stopping, &mut router).await;
        matches!(ended, super::Ended::Closed)
    });

    let mut stream = TcpStream::connect(addr).await.unwrap();
    let mut buf = Vec::new();
    // Pipelined: the router's request, a relayed one, a router request with a small body,
    // and one with a body too large to read first (hyper streams it).
    let big = "b".repeat(70 * 1024);
    let all = format!(
        "GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n\
         GET /api/catalog/x HTTP/1.1\r\nHost: a\r\n\r\n\
         POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc\
         POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n{big}\
         GET /healthz?last HTTP/1.1\r\nHost: a\r\n\r\n",
        big.len()
    );
    stream.write_all(all.as_bytes()).await.unwrap();
    assert_eq!(read_answer(&mut stream, &mut buf, false).await.body, b"routed");
    assert_eq!(read_answer(&mut stream, &mut buf, false).await.json()["path"], "/x");
    for _ in 0..3 {
        assert_eq!(read_answer(&mut stream, &mut buf, false).await.body, b"routed");
    }
    drop(stream);
    assert!(
        served.await.unwrap(),
        "the relay kept the connection to its end, never handing it off"
    );
    let head_len = "POST /healthz HTTP/1.1\r\nHost: a\r\nContent-Length: 71680\r\n\r\n".len();
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "call: GET /healthz ".to_owned(),
            "call: POST /healthz abc".to_owned(),
            format!("whole: {} bytes", head_len + big.len()),
            "call: GET /healthz?last ".to_owned(),
        ],
        "each request exactly, no more"
    );
}

#[tokio::test]
async fn a_large_router_request_body_streams_through_and_the_connection_carries_on() {
    let backend = echo_backend().await;
    let (addr, _stop, _server) = gateway_with_routes(&backend, echo_routes()).await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let body = "z".repeat(150 * 1024);
    let head = format!("POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: {}\r\n\r\n", body.len());
    stream.write_all(head.as_bytes()).await.unwrap();
    // In pieces, the last with the next request behind it.
    let (first, last) = body.split_at(100 * 1024);
    stream.write_all(first.as_bytes()).await.unwrap();
    tokio::task::yield_now().await;
    let rest = format!("{last}GET /api/catalog/after HTTP/1.1\r\nHost: a\r\n\r\n");
    stream.write_all(rest.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let answer = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(answer.json()["body_len"], body.len());
    let answer = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(answer.json()["path"], "/after");
    // Over the limit: refused by the pipeline before anything reads it.
    let over = "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 300000\r\n\r\n";
    stream.write_all(over.as_bytes()).await.unwrap();
    let answer = read_answer(&mut stream, &mut buf, false).await;
    assert_eq!(answer.status, 413);
}

/// `len` bytes of a pattern that a dropped or repeated piece would break.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// A gateway relaying `/api/catalog` to `upstream` whose clients must take their answer's
/// bytes within `send_timeout`.
async fn gateway_with_send_timeout(upstream: &str, send_timeout: Duration) -> SocketAddr {
    let config = GatewayConfig::from_toml(&format!(
        "[[routes]]\nupstream = \"catalog\"\n{CATALOG}\n[upstreams.catalog]\nendpoints = [{upstream:?}]\ntimeout = \"10s\"\n"
    ))
    .unwrap();
    let upstreams = Upstreams::from_config(&config).unwrap();
    let app = stack::gateway("relay-test", Routes::new(), &config, &upstreams).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let limits = crate::config::Limits { send_timeout, ..Default::default() };
    tokio::spawn(server::serve(
        listener,
        app,
        server::Serving::new("relay-test", &limits, 1),
        std::future::pending(),
    ));
    addr
}

/// A backend answering every request with `body`; reports on `cut` each answer it could not
/// finish writing because the other side went away.
async fn pattern_backend(body: Vec<u8>, cut: tokio::sync::mpsc::UnboundedSender<()>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = std::sync::Arc::new(body);
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let (body, cut) = (body.clone(), cut.clone());
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    if stream.read_buf(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                    while let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        buf.drain(..at + 4);
                        let head =
                            format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                        let sent = async {
                            stream.write_all(head.as_bytes()).await?;
                            stream.write_all(&body).await
                        };
                        if sent.await.is_err() {
                            let _ = cut.send(());
                            return;
                        }
                    }
                }
            });
        }
    });
    format!("http://{addr}")
}

// The relay writes its answers with its own non-blocking sends: an answer far larger than the
// sockets hold goes out in many partial writes, each resumed where the last stopped, and a
// client that stops taking it is cut at the send timeout, which frees the upstream call too.
#[tokio::test]
async fn a_large_answer_reaches_a_reader_whole_and_one_that_stops_reading_is_cut() {
    const LEN: usize = 16 << 20;
    let body = pattern(LEN);
    let (cut_tx, mut cut) = tokio::sync::mpsc::unbounded_channel();
    let backend = pattern_backend(body.clone(), cut_tx).await;
    let addr = gateway_with_send_timeout(&backend, Duration::from_millis(300)).await;
    let request = b"GET /api/catalog/big HTTP/1.1\r\nHost: x\r\n\r\n";

    // A reader that takes it in small pieces gets every byte, in order.
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    let read = async {
        let mut piece = [0_u8; 4096];
        let head_end = loop {
            let n = client.read(&mut piece).await.unwrap();
            assert!(n > 0, "closed before the head");
            buf.extend_from_slice(&piece[..n]);
            if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
        };
        assert!(buf.starts_with(b"HTTP/1.1 200"));
        buf.drain(..head_end);
        while buf.len() < LEN {
            let n = client.read(&mut piece).await.unwrap();
            assert!(n > 0, "closed after {} of {LEN} body bytes", buf.len());
            buf.extend_from_slice(&piece[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(20), read).await.expect("the whole answer in time");
    assert!(buf == body, "the body arrived altered");
    assert!(cut.try_recv().is_err(), "a complete answer was not cut");

    // A client that asks and then reads nothing: once the socket buffers are full the
    // gateway's writes stop making progress, and at the send timeout it closes the client's
    // connection and drops the upstream call (the backend's write fails).
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled.write_all(request).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), cut.recv())
        .await
        .expect("the stalled answer was given up")
        .unwrap();
    let mut received = 0_usize;
    let mut piece = vec![0_u8; 1 << 16];
    let drained = async {
        loop {
            match stalled.read(&mut piece).await {
                Ok(0) | Err(_) => break,
                Ok(n) => received += n,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), drained).await.expect("the connection closed");
    assert!(received < LEN, "a client that stopped reading still got the whole answer");

    // The gateway and the upstream are none the worse for it.
    let mut again = TcpStream::connect(addr).await.unwrap();
    again.write_all(request).await.unwrap();
    let mut head = [0_u8; 12];
    tokio::time::timeout(Duration::from_secs(5), again.read_exact(&mut head))
        .await
        .expect("served after the cut")
        .unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
}
