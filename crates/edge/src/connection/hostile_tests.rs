//! Connection-level attacks over real sockets, as a hostile client sends them: floods of silent
//! connections against a multi-gateway process, HTTP/2 rapid reset, CONTINUATION and SETTINGS
//! floods, a second process on a taken port, and a drain that must not cut a response short.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{Router, routing::get};
use portico_testkit::{MockServer, echo_server};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Notify, oneshot, watch},
    time::Instant,
};

use crate::{
    GatewayConfig, Upstreams,
    access::Routes,
    config::Limits,
    server::{self, Serving},
    stack,
};

/// Polls `done` until it holds or `within` passes.
async fn eventually(within: Duration, mut done: impl AsyncFnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if done().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A gateway over `backend` with one public pass-through route (so the relay serves it).
fn relay_gateway(backend: &str) -> stack::Gateway {
    let config = GatewayConfig::from_toml(&format!(
        r#"
        [upstreams.catalog]
        endpoints = ["{backend}"]
        [[routes]]
        path = "/static"
        upstream = "catalog"
        access = "public"
        "#
    ))
    .unwrap();
    let upstreams = Upstreams::from_config(&config).unwrap();
    stack::gateway("hostile-relay", Routes::new(), &config, &upstreams).unwrap()
}

async fn spawn(app: impl Into<stack::Gateway>, serving: Serving) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::serve(listener, app.into(), serving, std::future::pending()));
    addr
}

/// One request on a fresh connection; its status, or `None` if the connection was closed.
async fn status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

/// Whether the server has closed `stream` (EOF or reset), without waiting.
async fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0_u8; 1];
    matches!(
        tokio::time::timeout(Duration::from_millis(1), stream.read(&mut byte)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn silent_connections_over_the_cap_cost_one_gateway_only_and_are_reaped_in_time() {
    let backend = echo_server().await;
    let head = Duration::from_millis(800);
    let limits = Limits { max_connections: 8, header_read_timeout: head, ..Limits::default() };
    // Two gateways of one process: the flooded one has a cap of 8, the other its own.
    let flooded_relay = spawn(relay_gateway(&backend.url()), Serving::new("a", &limits, 2)).await;
    let router = Router::new().route("/", get(|| async { "ok" }));
    let flooded_router = spawn(router.clone(), Serving::new("b", &limits, 2)).await;
    let other = spawn(router, Serving::new("c", &Limits::default(), 2)).await;

    for flooded in [flooded_relay, flooded_router] {
        let opened = Instant::now();
        let mut silent = Vec::new();
        for _ in 0..20 {
            silent.push(TcpStream::connect(flooded).await.unwrap());
        }
        // The 12 over the cap are closed as they are accepted.
        let mut refused = 0;
        assert!(
            eventually(Duration::from_secs(5), async || {
                refused = 0;
                for stream in &mut silent {
                    refused += usize::from(closed(stream).await);
                }
                refused >= 12
            })
            .await,
            "{refused} of 20 closed at accept on {flooded}"
        );
        // The other gateway of the process does not notice.
        assert_eq!(status(other, "/").await, Some(200));
        // The silent ones still held are reaped at the head timeout, not kept forever.
        let all_closed = eventually(Duration::from_secs(5), async || {
            for stream in &mut silent {
                if !closed(stream).await {
                    return false;
                }
            }
            true
        })
        .await;
        assert!(all_closed, "silent connections still open after {:?}", opened.elapsed());
        assert!(opened.elapsed() >= head, "reaped before the head timeout");
        // And the flooded gateway serves again.
        let path = if flooded == flooded_relay { "/static/x" } else { "/" };
        assert_eq!(status(flooded, path).await, Some(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_cannot_share_a_taken_port() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap();
    let (_stop, stopped) = watch::channel(false);
    let serving = Serving::with_header_read_timeout(Duration::from_secs(5));
    let result = tokio::task::spawn_blocking(move || {
        server::serve_workers(addr, 2, || Ok::<_, String>(Router::new()), &serving, &stopped)
    })
    .await
    .unwrap();
    let error = result.unwrap_err().to_string();
    assert!(error.contains(&addr.to_string()) && error.contains("in use"), "{error}");
}

#[tokio::test]
async fn a_drain_lets_the_response_in_flight_finish_with_connection_close() {
    // A backend that answers when told to, so the drain starts while a request is in flight.
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let backend = {
        let (entered, release) = (entered.clone(), release.clone());
        MockServer::start(Router::new().route(
            "/files/slow",
            get(move || async move {
                entered.notify_one();
                release.notified().await;
                "done"
            }),
        ))
        .await
    };
    let config = GatewayConfig::from_toml(&format!(
        r#"
        [upstreams.catalog]
        endpoints = ["{}"]
        [[routes]]
        path = "/static"
        upstream = "catalog"
        rewrite = "/files"
        access = "public"
        "#,
        backend.url()
    ))
    .unwrap();
    let upstreams = Upstreams::from_config(&config).unwrap();
    let gateway = stack::gateway("drain", Routes::new(), &config, &upstreams).unwrap();
    // The relay, and the router over HTTP/1.1 (the same gateway without its relay).
    for app in [gateway.clone(), gateway.without_relay()] {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = Serving::with_header_read_timeout(Duration::from_secs(5));
        let server = tokio::spawn(server::serve(listener, app, serving, async {
            let _ = stopped.await;
        }));
        let mut client = TcpStream::connect(addr).await.unwrap();
        client.write_all(b"GET /static/slow HTTP/1.1\r\nHost: a\r\n\r\n").await.unwrap();
        entered.notified().await;
        stop.send(()).unwrap();
        // New connections are refused once the listener is gone…
        assert!(
            eventually(Duration::from_secs(5), async || TcpStream::connect(addr).await.is_err())
                .await
        );
        // …and the request in flight finishes, told that the connection ends with it.
        release.notify_one();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut answer))
            .await
            .expect("the connection closes after the last response")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        assert!(answer.starts_with("http/1.1 200"), "{answer}");
        assert!(answer.contains("connection: close"), "{answer}");
        assert!(answer.ends_with("done"), "{answer}");
        tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
    }
}

// === HTTP/2, frame by frame ===

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
/// `:method GET`, `:scheme http`, `:path /` (static table) and `:authority a`.
const GET_ROOT: &[u8] = &[0x82, 0x86, 0x84, 0x41, 0x01, b'a'];

fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Reads frames until `want` returns true for one, EOF or `within`; every frame read.
async fn frames_until(
    stream: &mut TcpStream,
    within: Duration,
    want: impl Fn(u8, &[u8]) -> bool,
) -> Vec<(u8, Vec<u8>)> {
    let mut seen = Vec::new();
    let read = async {
        loop {
            let mut head = [0_u8; 9];
            if stream.read_exact(&mut head).await.is_err() {
                return;
            }
            let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
            let mut payload = vec![0_u8; len];
            if stream.read_exact(&mut payload).await.is_err() {
                return;
            }
            let done = want(head[3], &payload);
            seen.push((head[3], payload));
            if done {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(within, read).await;
    seen
}

fn goaway_code(frames: &[(u8, Vec<u8>)]) -> Option<u32> {
    frames
        .iter()
        .find(|(kind, _)| *kind == GOAWAY)
        .map(|(_, p)| u32::from_be_bytes([p[4], p[5], p[6], p[7]]))
}

async fn h2_gateway() -> SocketAddr {
    let router = Router::new().route(
        "/",
        get(|| async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            "ok"
        }),
    );
    spawn(router, Serving::with_header_read_timeout(Duration::from_secs(5))).await
}

async fn h2_connect(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(PREFACE).await.unwrap();
    stream.write_all(&frame(SETTINGS, 0, 0, &[])).await.unwrap();
    stream
}

#[tokio::test]
async fn http2_settings_carry_the_configured_limits() {
    let addr = h2_gateway().await;
    let mut stream = h2_connect(addr).await;
    let frames =
        frames_until(&mut stream, Duration::from_secs(5), |kind, _| kind == WINDOW_UPDATE).await;
    let settings = frames.iter().find(|(kind, p)| *kind == SETTINGS && !p.is_empty()).unwrap();
    let value = |id: u16| {
        settings
            .1
            .chunks_exact(6)
            .find(|s| u16::from_be_bytes([s[0], s[1]]) == id)
            .map(|s| u32::from_be_bytes([s[2], s[3], s[4], s[5]]))
    };
    let limits = Limits::default();
    assert_eq!(value(0x3), Some(limits.h2_max_concurrent_streams), "MAX_CONCURRENT_STREAMS");
    assert_eq!(value(0x4), Some(limits.h2_stream_window_bytes), "INITIAL_WINDOW_SIZE");
    // The connection window starts at 65,535 and is raised by a WINDOW_UPDATE on stream 0.
    let (_, update) = frames.iter().find(|(kind, _)| *kind == WINDOW_UPDATE).unwrap();
    let increment = u32::from_be_bytes([update[0], update[1], update[2], update[3]]);
    assert_eq!(65_535 + increment, limits.h2_connection_window_bytes);
}

#[tokio::test]
async fn http2_rapid_reset_ends_the_connection_and_spares_the_gateway() {
    let addr = h2_gateway().await;
    let mut stream = h2_connect(addr).await;
    // Open a stream and cancel it at once, a thousand times in one write (CVE-2023-44487).
    let mut flood = Vec::new();
    for i in 0..1000_u32 {
        let id = 2 * i + 1;
        flood.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, GET_ROOT));
        flood.extend(frame(RST_STREAM, 0, id, &8_u32.to_be_bytes())); // CANCEL
    }
    let _ = stream.write_all(&flood).await;
    let frames = frames_until(&mut stream, Duration::from_secs(5), |kind, _| kind == GOAWAY).await;
    // h2 answers ENHANCE_YOUR_CALM once the client's resets outrun `h2_max_pending_resets`.
    assert_eq!(goaway_code(&frames), Some(0xb), "frames: {:?}", kinds(&frames));
    assert_eq!(status(addr, "/").await, Some(200), "the gateway still serves");
}

#[tokio::test]
async fn http2_continuation_flood_is_cut_off_without_buffering_it() {
    let addr = h2_gateway().await;
    let mut stream = h2_connect(addr).await;
    // A header block that never ends: 16 KiB CONTINUATION frames of one huge literal value.
    stream.write_all(&frame(HEADERS, END_STREAM, 1, GET_ROOT)).await.unwrap();
    let junk = {
        // Literal without indexing, new name `x`, a 16,000-byte value (7-bit prefix integer).
        let mut field = vec![0x00, 0x01, b'x', 0x7f];
        let mut rest = 16_000 - 127;
        while rest >= 128 {
            field.push(u8::try_from(rest % 128).unwrap() | 0x80);
            rest /= 128;
        }
        field.push(u8::try_from(rest).unwrap());
        field.extend(std::iter::repeat_n(b'v', 16_000));
        field
    };
    let mut sent = 0;
    for _ in 0..1000 {
        if stream.write_all(&frame(CONTINUATION, 0, 1, &junk)).await.is_err() {
            break;
        }
        sent += 1;
    }
    // The header list limit ends it long before 16 MB: the writes fail, or a GOAWAY comes.
    let frames = frames_until(&mut stream, Duration::from_secs(5), |kind, _| kind == GOAWAY).await;
    assert!(
        sent < 1000 || goaway_code(&frames).is_some(),
        "all {sent} frames taken and no GOAWAY: {:?}",
        kinds(&frames)
    );
    assert_eq!(status(addr, "/").await, Some(200), "the gateway still serves");
}

#[tokio::test]
async fn http2_settings_flood_does_not_take_the_gateway_down() {
    let addr = h2_gateway().await;
    let mut stream = h2_connect(addr).await;
    // Ten thousand SETTINGS frames, each demanding an ACK, without reading one.
    let flood: Vec<u8> = (0..10_000).flat_map(|_| frame(SETTINGS, 0, 0, &[])).collect();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(&flood)).await;
    drop(stream);
    assert_eq!(status(addr, "/").await, Some(200), "the gateway still serves");
}

fn kinds(frames: &[(u8, Vec<u8>)]) -> Vec<u8> {
    frames.iter().map(|(kind, _)| *kind).collect()
}

#[tokio::test]
async fn http2_streams_over_the_concurrency_limit_are_refused() {
    let addr = h2_gateway().await;
    let mut stream = h2_connect(addr).await;
    // 150 requests at once against a handler that takes 50 ms: 50 are over the limit of 100.
    let burst: Vec<u8> = (0..150_u32)
        .flat_map(|i| frame(HEADERS, END_STREAM | END_HEADERS, 2 * i + 1, GET_ROOT))
        .collect();
    stream.write_all(&burst).await.unwrap();
    let refused = |frames: &[(u8, Vec<u8>)]| {
        frames
            .iter()
            .filter(|(kind, p)| *kind == RST_STREAM && p[..] == 7_u32.to_be_bytes()) // REFUSED_STREAM
            .count()
    };
    let frames = frames_until(&mut stream, Duration::from_secs(5), |kind, p| {
        kind == RST_STREAM && p[..] == 7_u32.to_be_bytes()
    })
    .await;
    assert!(refused(&frames) >= 1, "no stream refused: {:?}", kinds(&frames));
    assert!(goaway_code(&frames).is_none(), "the connection itself stays up");
}
