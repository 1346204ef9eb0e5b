//! # portico-testkit
//!
//! Helpers for testing gateways the way they run: mock backends are real HTTP servers on
//! `127.0.0.1:0` (never a fixed port), and apps are driven in-process with `oneshot`.
//!
//! ```ignore
//! let catalog = MockServer::start(Router::new().route("/products/{id}", get(product))).await;
//! let app = my_gateway::app(&config_with(&[("catalog", catalog.url())]))?;
//! let response = call(app, get("/v1/products/p-1")).await;
//! assert_eq!(response.status, 200);
//! ```

// A test helper reports a broken test set-up by panicking with a message.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;

use axum::{Router, body::Body};
use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use tokio::{net::TcpListener, task::JoinHandle};
use tower::ServiceExt;

/// A real HTTP server on an ephemeral loopback port, stopped when dropped.
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl MockServer {
    /// Serves `router` on `127.0.0.1:0`.
    pub async fn start(router: Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        Self::from_listener(listener, router)
    }

    /// Serves `router` on a listener already bound (when the router must know its own address).
    pub fn from_listener(listener: TcpListener, router: Router) -> Self {
        let addr = listener.local_addr().expect("a bound listener has an address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { addr, task }
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A backend that answers every request with what it received, as JSON: `method`, `path`,
/// `query`, `headers` (lowercase names; repeated ones joined with `, `) and `body_len` — for
/// tests of what a gateway forwards.
pub async fn echo_server() -> MockServer {
    async fn echo(request: axum::extract::Request) -> axum::Json<serde_json::Value> {
        let (parts, body) = request.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX).await.unwrap_or_default();
        let mut headers = serde_json::Map::new();
        for (name, value) in &parts.headers {
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            match headers.get_mut(name.as_str()) {
                Some(serde_json::Value::String(seen)) => {
                    seen.push_str(", ");
                    seen.push_str(&value);
                }
                _ => {
                    headers.insert(name.to_string(), serde_json::Value::String(value));
                }
            }
        }
        axum::Json(serde_json::json!({
            "method": parts.method.as_str(),
            "path": parts.uri.path(),
            "query": parts.uri.query(),
            "headers": headers,
            "body_len": body.len(),
        }))
    }
    MockServer::start(Router::new().fallback(echo)).await
}

/// The URL of a loopback port nobody listens on: connections to it are refused.
///
/// The port stays bound, never listening, for the rest of the test process: a port merely freed
/// could be handed to the next `bind(127.0.0.1:0)` — a parallel test's server, or the gateway
/// under test itself — and a "dead" backend would answer (seen: a 502 test got a 200).
pub async fn refused_url() -> String {
    static RESERVED: std::sync::Mutex<Vec<tokio::net::TcpSocket>> =
        std::sync::Mutex::new(Vec::new());
    let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind 127.0.0.1:0");
    let addr = socket.local_addr().expect("a bound socket has an address");
    RESERVED.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(socket);
    format!("http://{addr}")
}

/// A server that accepts connections and never answers, for timeout tests.
pub async fn hanging_server() -> MockServer {
    MockServer::start(Router::new().fallback(std::future::pending::<()>)).await
}

/// An upstream that takes one request and never answers, and says when the request arrived
/// and when the caller closed the connection: for tests that a call is cancelled.
#[derive(Debug)]
pub struct SilentUpstream {
    /// Its base URL.
    pub url: String,
    /// Resolves when the request has been read.
    pub asked: tokio::sync::oneshot::Receiver<()>,
    /// Resolves when the caller has closed the connection.
    pub closed: tokio::sync::oneshot::Receiver<()>,
}

/// Starts a [`SilentUpstream`] on `127.0.0.1:0`.
pub async fn silent_upstream() -> SilentUpstream {
    use tokio::io::AsyncReadExt;

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let url = format!("http://{}", listener.local_addr().expect("a bound listener has an address"));
    let (asked, asked_rx) = tokio::sync::oneshot::channel();
    let (closed, closed_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let Ok((mut stream, _)) = listener.accept().await else { return };
        let mut buf = [0_u8; 4096];
        let _ = stream.read(&mut buf).await;
        let _ = asked.send(());
        while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
        let _ = closed.send(());
    });
    SilentUpstream { url, asked: asked_rx, closed: closed_rx }
}

/// A response read whole.
#[derive(Debug)]
pub struct TestResponse {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Bytes,
}

impl TestResponse {
    /// The body as JSON; panics with the body text if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body))
        })
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts this is an RFC 7807 problem with `status` and `code`, and returns its body.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) -> serde_json::Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text());
        assert_eq!(self.header("content-type"), Some("application/problem+json"));
        let body = self.json();
        assert_eq!(body["status"], status);
        assert_eq!(body["code"], code, "body: {body}");
        body
    }
}

/// Drives `app` with one request, in-process, and reads the whole response.
pub async fn call(app: Router, request: Request<Body>) -> TestResponse {
    let response = app.oneshot(request).await.expect("routers are infallible");
    let (parts, body) = response.into_parts();
    let body = http_body_util::BodyExt::collect(body).await.expect("body reads").to_bytes();
    TestResponse { status: parts.status, headers: parts.headers, body }
}

/// A GET request.
pub fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("a valid test request")
}

/// A POST request with a JSON body.
pub fn post_json(uri: &str, body: &serde_json::Value) -> Request<Body> {
    Request::post(uri)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("a valid test request")
}

/// A gateway configuration (TOML) whose upstreams point at the given base URLs, with a small
/// body limit (1 KiB) and short deadlines, for tests.
pub fn gateway_toml(http: &[(&str, &str)], grpc: &[(&str, &str)]) -> String {
    let mut toml = String::from(
        "[limits]\nmax_body_bytes = 1024\nrequest_timeout = \"2s\"\n\n\
         [defaults.upstream]\ntimeout = \"300ms\"\n\n",
    );
    for (protocol, list) in [("http", http), ("grpc", grpc)] {
        for (name, url) in list {
            toml.push_str(&format!(
                "[upstreams.{name}]\nprotocol = \"{protocol}\"\nendpoints = [\"{url}\"]\n\n"
            ));
        }
    }
    toml
}

pub mod fixtures;
pub mod identity;
pub mod inventory;
pub mod services;
