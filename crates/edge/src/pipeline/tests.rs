//! The one pipeline on every request path, over real sockets: each case is sent through the
//! relay (HTTP/1.1 to a pass-through route), the router over HTTP/1.1 (the same gateway with
//! its router wrapped, so the relay stands down) and the router over HTTP/2, and must get the
//! same status and problem `code` on each.

use std::{net::SocketAddr, time::Duration};

use axum::Json;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use portico_testkit::{MockServer, echo_server};
use serde_json::Value;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use crate::{
    GatewayConfig, Upstreams,
    access::{Access, Routes},
    auth::hash_api_key,
    server, stack,
};

const PARTNER_KEY: &str = "pk_test_pipeline_3f9a";

/// The request paths a case runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// The relay: relayed pass-through routes; the router's routes one request at a time.
    Relay,
    /// The relay that relays nothing (a wrapped gateway): every request one at a time.
    RelayRouted,
    /// hyper holding the connection (no relay).
    RouterH1,
    RouterH2,
}

const ALL: &[Path] = &[Path::Relay, Path::RelayRouted, Path::RouterH1, Path::RouterH2];
/// Rules of HTTP/1.1 framing (`Host`): HTTP/2 has `:authority` instead.
const H1: &[Path] = &[Path::Relay, Path::RelayRouted, Path::RouterH1];

/// Three gateways over one config and one backend: with the relay, with a relay that relays
/// nothing, and without a relay.
struct Fixture {
    relay: SocketAddr,
    routed: SocketAddr,
    router: SocketAddr,
    _backend: Option<MockServer>,
}

fn config(backend: &str, extra: &str) -> GatewayConfig {
    GatewayConfig::from_toml(&format!(
        r#"
        {extra}
        [limits]
        max_body_bytes = 1000
        [upstreams.catalog]
        endpoints = ["{backend}"]
        timeout = "2s"
        [[routes]]
        path = "/static"
        upstream = "catalog"
        rewrite = "/files"
        access = "public"
        name = "static"
        [[routes]]
        path = "/admin"
        upstream = "catalog"
        access = "partner"
        name = "admin"
        [[routes]]
        path = "/basic"
        upstream = "catalog"
        access = "public"
        forward_authorization = true
        [auth]
        issuer = "http://127.0.0.1:9"
        audience = "test"
        jwks_url = "http://127.0.0.1:9/jwks"
        [[auth.api_keys]]
        id = "acme-test"
        partner = "acme"
        plan = "gold"
        sha256 = "{}"
        scopes = []
        "#,
        hash_api_key(PARTNER_KEY)
    ))
    .unwrap()
}

/// A composed route that parses a JSON body, and one that echoes the caller it was given.
fn composed() -> Routes {
    Routes::new()
        .post("/composed/json", Access::public(), |body: crate::json::Json<Value>| async move {
            Json(body.0)
        })
        .get(
            "/composed/whoami",
            Access::public().named("whoami"),
            |caller: crate::access::MaybeCaller| async {
                caller.0.map(|p| p.subject.clone()).unwrap_or_default()
            },
        )
}

async fn serve(gateway: stack::Gateway) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::serve(
        listener,
        gateway,
        server::Serving::with_header_read_timeout(Duration::from_secs(5)),
        std::future::pending(),
    ));
    addr
}

async fn fixture_with(extra: &str) -> Fixture {
    let backend = echo_server().await;
    let config = config(&backend.url(), extra);
    let upstreams = Upstreams::from_config(&config).unwrap();
    let gateway = stack::gateway("pipeline-test", composed(), &config, &upstreams).unwrap();
    assert!(gateway.relay().is_some());
    let relay = serve(gateway.clone()).await;
    let routed = serve(gateway.clone().wrap(|router| router)).await;
    let router = serve(gateway.without_relay()).await;
    Fixture { relay, routed, router, _backend: Some(backend) }
}

async fn fixture() -> Fixture {
    fixture_with("").await
}

/// One request of a case.
#[derive(Clone, Debug)]
struct Req {
    method: &'static str,
    target: String,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
    host: bool,
}

fn get(target: &str) -> Req {
    Req {
        method: "GET",
        target: target.to_owned(),
        headers: Vec::new(),
        body: Vec::new(),
        host: true,
    }
}

impl Req {
    fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.to_owned(), value.as_ref().to_vec()));
        self
    }

    fn post(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.method = "POST";
        self.body = body.into();
        self
    }

    fn without_host(mut self) -> Self {
        self.host = false;
        self
    }

    fn h1(&self) -> Vec<u8> {
        let mut out = format!("{} {} HTTP/1.1\r\n", self.method, self.target).into_bytes();
        if self.host {
            out.extend_from_slice(b"Host: gateway.test\r\n");
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value);
            out.extend_from_slice(b"\r\n");
        }
        if !self.body.is_empty() {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }
}

/// An answer: status, headers (lowercase names) and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    version: u8,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    fn code(&self) -> String {
        self.json()["code"].as_str().unwrap_or_default().to_owned()
    }

    /// What the echo backend received.
    fn echoed(&self) -> Value {
        assert_eq!(self.status, 200, "{}", String::from_utf8_lossy(&self.body));
        self.json()
    }
}

/// Reads one HTTP/1.1 response (Content-Length or chunked) off `stream`, leaving what follows
/// in `buf`.
async fn read_h1(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Answer {
    let read = async {
        loop {
            let mut fields = [httparse::EMPTY_HEADER; 64];
            let mut parsed = httparse::Response::new(&mut fields);
            if let httparse::Status::Complete(len) = parsed.parse(buf).unwrap() {
                let headers: Vec<(String, String)> = parsed
                    .headers
                    .iter()
                    .map(|h| {
                        (h.name.to_ascii_lowercase(), String::from_utf8_lossy(h.value).into_owned())
                    })
                    .collect();
                let (status, version) = (parsed.code.unwrap(), parsed.version.unwrap());
                let find = |n: &str| headers.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
                if find("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
                    if let Some(body) = dechunk(&buf[len..]) {
                        let (body, used) = body;
                        buf.drain(..len + used);
                        return Answer { status, version, headers, body };
                    }
                } else {
                    let body_len: usize = find("content-length").map_or(0, |v| v.parse().unwrap());
                    if buf.len() >= len + body_len {
                        let body = buf[len..len + body_len].to_vec();
                        buf.drain(..len + body_len);
                        return Answer { status, version, headers, body };
                    }
                }
            }
            assert!(stream.read_buf(buf).await.unwrap() > 0, "closed before a whole response");
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read).await.expect("an answer in time")
}

/// A whole chunked body at the start of `bytes`: the body and the bytes it took.
fn dechunk(bytes: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut at = 0;
    loop {
        let line_end = at + bytes[at..].windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&bytes[at..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        at = line_end + 2;
        if size == 0 {
            return (bytes.len() >= at + 2).then(|| (body, at + 2));
        }
        if bytes.len() < at + size + 2 {
            return None;
        }
        body.extend_from_slice(&bytes[at..at + size]);
        at += size + 2;
    }
}

/// Sends `req` over a fresh connection on `path` and reads the answer.
async fn send(fixture: &Fixture, path: Path, req: &Req) -> Answer {
    match path {
        Path::Relay | Path::RelayRouted | Path::RouterH1 => {
            let addr = match path {
                Path::Relay => fixture.relay,
                Path::RelayRouted => fixture.routed,
                _ => fixture.router,
            };
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(&req.h1()).await.unwrap();
            read_h1(&mut stream, &mut Vec::new()).await
        }
        Path::RouterH2 => send_h2(fixture.relay, req).await,
    }
}

async fn send_h2(addr: SocketAddr, req: &Req) -> Answer {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let mut request = http::Request::builder()
        .method(req.method)
        .uri(format!("http://gateway.test{}", req.target));
    for (name, value) in &req.headers {
        request = request.header(name.as_str(), value.as_slice());
    }
    let request = request.body(Full::new(Bytes::from(req.body.clone()))).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(10), sender.send_request(request))
        .await
        .expect("an answer in time")
        .unwrap();
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = response.into_body().collect().await.unwrap().to_bytes().to_vec();
    Answer { status, version: 2, headers, body }
}

/// What a case expects on every path it runs on.
enum Expect {
    /// A refusal: this status and problem code.
    Problem(u16, &'static str),
    /// Served by the backend; the check gets what it received.
    Echo(fn(&Value)),
}

struct Case {
    name: &'static str,
    req: Req,
    paths: &'static [Path],
    expect: Expect,
}

async fn run(fixture: &Fixture, cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in &cases {
        for &path in case.paths {
            let answer = send(fixture, path, &case.req).await;
            match &case.expect {
                Expect::Problem(status, code) => {
                    let got = (answer.status, answer.code());
                    if got != (*status, (*code).to_owned()) {
                        failures.push(format!("{} on {path:?}: got {got:?}", case.name));
                    }
                    assert_eq!(
                        answer.header("content-type"),
                        Some(crate::error::PROBLEM_JSON),
                        "{} on {path:?}",
                        case.name
                    );
                    assert!(answer.header("x-request-id").is_some(), "{} on {path:?}", case.name);
                }
                Expect::Echo(check) => {
                    if answer.status != 200 {
                        failures.push(format!(
                            "{} on {path:?}: got {} {}",
                            case.name,
                            answer.status,
                            String::from_utf8_lossy(&answer.body)
                        ));
                        continue;
                    }
                    check(&answer.echoed());
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn case(name: &'static str, req: Req, paths: &'static [Path], expect: Expect) -> Case {
    Case { name, req, paths, expect }
}

#[tokio::test]
async fn hygiene_holds_on_every_path() {
    let f = fixture().await;
    run(
        &f,
        vec![
            case(
                "HTTP/1.1 without Host",
                get("/static/a").without_host(),
                H1,
                Expect::Problem(400, "invalid_host"),
            ),
            case(
                "two Host headers",
                get("/static/a").header("Host", "evil.test"),
                H1,
                Expect::Problem(400, "invalid_host"),
            ),
            case(
                "headers with underscores are dropped, forged identity too",
                get("/static/a")
                    .header("X_Portico_Subject", "admin")
                    .header("X-Portico-Subject", "admin")
                    .header("X-Portico-Scopes", "everything")
                    .header("x-kept", "yes"),
                ALL,
                Expect::Echo(|echo| {
                    let headers = echo["headers"].as_object().unwrap();
                    assert_eq!(headers["x-kept"], "yes");
                    for name in headers.keys() {
                        assert!(!name.contains('_'), "{name} reached the backend");
                        assert!(!name.starts_with("x-portico-s"), "{name} reached the backend");
                    }
                }),
            ),
            case(
                "a plain path is rewritten",
                get("/static/a?q=1"),
                ALL,
                Expect::Echo(|echo| {
                    assert_eq!(
                        (echo["path"].as_str(), echo["query"].as_str()),
                        (Some("/files/a"), Some("q=1"))
                    );
                }),
            ),
            case(
                "dot-segments and repeated slashes are resolved before the rewrite",
                get("/static/./x//y/../z"),
                ALL,
                Expect::Echo(|echo| assert_eq!(echo["path"], "/files/x/z")),
            ),
            case(
                "percent-encoded unreserved characters are decoded",
                get("/static/%7Euser/%41"),
                ALL,
                Expect::Echo(|echo| assert_eq!(echo["path"], "/files/~user/A")),
            ),
            case(
                "dot-segments cannot escape a prefix into a stricter route",
                get("/static/../admin/x"),
                ALL,
                Expect::Problem(401, "unauthenticated"),
            ),
            case(
                "nor can encoded ones",
                get("/static/%2e%2E/admin/x"),
                ALL,
                Expect::Problem(401, "unauthenticated"),
            ),
            case(
                "an encoded slash",
                get("/static/..%2Fadmin"),
                ALL,
                Expect::Problem(400, "invalid_path"),
            ),
            case(
                "an encoded backslash",
                get("/static/a%5cb"),
                ALL,
                Expect::Problem(400, "invalid_path"),
            ),
            case("an encoded NUL", get("/static/a%00"), ALL, Expect::Problem(400, "invalid_path")),
            case(
                "climbing above the root",
                get("/static/../../x"),
                ALL,
                Expect::Problem(400, "invalid_path"),
            ),
            case(
                "a header field over the limit",
                get("/static/a").header("x-big", vec![b'a'; 17 * 1024]),
                ALL,
                Expect::Problem(431, "header_too_large"),
            ),
            case(
                "a head over the limit",
                (0..3).fold(get("/static/a"), |r, i| {
                    r.header(&format!("x-big-{i}"), vec![b'a'; 12 * 1024])
                }),
                ALL,
                Expect::Problem(431, "header_too_large"),
            ),
            case(
                "too many header fields",
                (0..101).fold(get("/static/a"), |r, i| r.header(&format!("x-n-{i}"), "1")),
                ALL,
                Expect::Problem(431, "header_too_large"),
            ),
            case(
                "a request line over the limit",
                get(&format!("/static/{}", "a".repeat(9000))),
                ALL,
                Expect::Problem(414, "uri_too_long"),
            ),
            case(
                "a declared body over the limit",
                get("/static/a").post(vec![b'x'; 1001]),
                ALL,
                Expect::Problem(413, "payload_too_large"),
            ),
            case("no route", get("/nothing-here"), ALL, Expect::Problem(404, "no_route")),
            case(
                "JSON the gateway parses is capped in depth",
                get("/composed/json").header("content-type", "application/json").post(format!(
                    "{}{}",
                    "[".repeat(40),
                    "]".repeat(40)
                )),
                ALL,
                Expect::Problem(400, "json_too_deep"),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn authentication_and_access_hold_on_every_path() {
    let f = fixture().await;
    run(
        &f,
        vec![
            case(
                "a bad bearer token on a public route",
                get("/static/a").header("Authorization", "Bearer not-a-jwt"),
                ALL,
                Expect::Problem(401, "invalid_token"),
            ),
            case(
                "an unknown API key",
                get("/static/a").header("X-Api-Key", "pk_nobody"),
                ALL,
                Expect::Problem(401, "invalid_api_key"),
            ),
            case(
                "two API keys",
                get("/admin/a").header("X-Api-Key", PARTNER_KEY).header("X-Api-Key", PARTNER_KEY),
                ALL,
                Expect::Problem(400, "invalid_request"),
            ),
            case(
                "anonymous on a partner route",
                get("/admin/a"),
                ALL,
                Expect::Problem(401, "unauthenticated"),
            ),
            case(
                "a partner's key: identity set, the key and the token kept at the edge",
                get("/admin/a").header("X-Api-Key", PARTNER_KEY),
                ALL,
                Expect::Echo(|echo| {
                    let headers = &echo["headers"];
                    assert_eq!(headers["x-portico-subject"], "acme");
                    assert_eq!(headers["x-portico-plan"], "gold");
                    assert!(headers.get("x-api-key").is_none());
                }),
            ),
            case(
                "Basic credentials on a route that does not forward them",
                get("/static/a").header("Authorization", "Basic dXNlcjpwdw=="),
                ALL,
                Expect::Problem(400, "invalid_request"),
            ),
            case(
                "Basic credentials on a route that forwards them",
                get("/basic/a").header("Authorization", "Basic dXNlcjpwdw=="),
                ALL,
                Expect::Echo(|echo| {
                    assert_eq!(echo["headers"]["authorization"], "Basic dXNlcjpwdw==");
                }),
            ),
            case(
                "a forged X-Forwarded-For from an untrusted peer is replaced",
                get("/static/a")
                    .header("X-Forwarded-For", "6.6.6.6")
                    .header("X-Forwarded-Proto", "https"),
                ALL,
                Expect::Echo(|echo| {
                    assert_eq!(echo["headers"]["x-forwarded-for"], "127.0.0.1");
                    assert_eq!(echo["headers"]["x-forwarded-proto"], "http");
                }),
            ),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_trusted_proxy_is_appended_to_and_believed() {
    let f = fixture_with("[listen]\ntrusted_proxies = [\"127.0.0.0/8\"]").await;
    run(
        &f,
        vec![case(
            "X-Forwarded-* from a trusted proxy",
            get("/static/a")
                .header("X-Forwarded-For", "203.0.113.9, 10.1.1.1")
                .header("X-Forwarded-Proto", "https")
                .header("X-Forwarded-Host", "shop.example"),
            ALL,
            Expect::Echo(|echo| {
                let headers = &echo["headers"];
                assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 10.1.1.1, 127.0.0.1");
                assert_eq!(headers["x-forwarded-proto"], "https");
                assert_eq!(headers["x-forwarded-host"], "shop.example");
            }),
        )],
    )
    .await;
}

#[test]
fn the_client_is_the_rightmost_untrusted_address() {
    use super::{Forwarded, Head, Headers, head::Facts};
    let config =
        GatewayConfig::from_toml("[listen]\ntrusted_proxies = [\"10.0.0.0/8\", \"127.0.0.1\"]\n")
            .unwrap();
    let upstreams = Upstreams::from_config(&config).unwrap();
    let (_, table) = Routes::<()>::new().into_parts();
    let pipeline =
        super::Pipeline::new("t", &config, table, &upstreams, &super::EdgeState::default())
            .unwrap();
    let client = |peer: [u8; 4], xff: &str| {
        let mut map = http::HeaderMap::new();
        map.insert("x-forwarded-for", xff.parse().unwrap());
        let peer = pipeline.peer(std::net::IpAddr::from(peer));
        let head = Head {
            method: &http::Method::GET,
            path: "/",
            query: None,
            target_len: 1,
            version: http::Version::HTTP_11,
            authority: None,
            headers: Headers::Map(&map),
            peer: &peer,
            scheme: "http",
        };
        let facts = Facts::gather(&head);
        Forwarded::new(&head, &facts).client.to_string()
    };
    // Walking left from the peer, past trusted proxies, to the first address that is not one.
    assert_eq!(client([127, 0, 0, 1], "198.51.100.1, 203.0.113.9, 10.0.0.2"), "203.0.113.9");
    // A peer that is not trusted is the client, whatever it claims.
    assert_eq!(client([192, 0, 2, 1], "203.0.113.9"), "192.0.2.1");
    // Garbage in the chain ends the walk at the last address believed.
    assert_eq!(client([127, 0, 0, 1], "203.0.113.9, nonsense, 10.0.0.2"), "10.0.0.2");
}

/// Sends `bytes` on one connection and reads `n` answers.
async fn exchange(addr: SocketAddr, bytes: &[u8], n: usize) -> (TcpStream, Vec<Answer>) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut buf = Vec::new();
    let mut answers = Vec::new();
    for _ in 0..n {
        answers.push(read_h1(&mut stream, &mut buf).await);
    }
    assert!(buf.is_empty(), "more than {n} answers: {}", String::from_utf8_lossy(&buf));
    (stream, answers)
}

#[tokio::test]
async fn a_refused_request_is_answered_once_and_the_next_one_is_served() {
    let f = fixture().await;
    for addr in [f.relay, f.routed, f.router] {
        // Refused by the edge (a bad token; a key where none is wanted; anonymous on a partner
        // route), each followed by a good request on the same connection.
        let mut bytes = Vec::new();
        bytes.extend(get("/static/a").header("Authorization", "Bearer x").h1());
        bytes.extend(get("/admin/a").h1());
        bytes.extend(get("/static/b").h1());
        let (mut stream, answers) = exchange(addr, &bytes, 3).await;
        let got: Vec<u16> = answers.iter().map(|a| a.status).collect();
        assert_eq!(got, [401, 401, 200], "{addr}");
        assert_eq!(answers[2].json()["path"], "/files/b");
        // Nothing more comes: the refused requests were answered once each. A fourth request
        // gets its own answer next, not a repeat.
        stream.write_all(&get("/static/c").h1()).await.unwrap();
        let mut buf = Vec::new();
        let fourth = read_h1(&mut stream, &mut buf).await;
        assert_eq!((fourth.status, fourth.json()["path"].as_str()), (200, Some("/files/c")));
    }
}

#[tokio::test]
async fn a_refused_request_with_a_body_closes_the_connection() {
    let f = fixture().await;
    for addr in [f.relay, f.routed, f.router] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        // The body is never read: what follows it cannot be told from a next request.
        let req =
            get("/admin/a").post(b"GET /static/smuggled HTTP/1.1\r\nHost: x\r\n\r\n".to_vec());
        stream.write_all(&req.h1()).await.unwrap();
        let mut buf = Vec::new();
        let answer = read_h1(&mut stream, &mut buf).await;
        assert_eq!(answer.status, 401);
        // hyper drains a small body and may keep the connection; the relay closes it. Either
        // way the body is never served as a request.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
        assert!(!String::from_utf8_lossy(&rest).contains("/files/smuggled"));
    }
}

/// A gateway whose one route goes to `backend` with a breaker that opens after two failures;
/// `limits`: more `[limits]` lines.
async fn breaker_fixture(backend: &str, limits: &str) -> (Fixture, Upstreams) {
    let config = GatewayConfig::from_toml(&format!(
        r#"
        [limits]
        max_body_bytes = 1000
        {limits}
        [upstreams.catalog]
        endpoints = ["{backend}"]
        [upstreams.catalog.breaker]
        consecutive_failures = 2
        [upstreams.catalog.outlier]
        consecutive_failures = 2
        [[routes]]
        path = "/api"
        upstream = "catalog"
        access = "public"
        "#
    ))
    .unwrap();
    let upstreams = Upstreams::from_config(&config).unwrap();
    let gateway = stack::gateway("pipeline-breaker", Routes::new(), &config, &upstreams).unwrap();
    let relay = serve(gateway.clone()).await;
    let routed = serve(gateway.clone().wrap(|router| router)).await;
    let router = serve(gateway.without_relay()).await;
    (Fixture { relay, routed, router, _backend: None }, upstreams)
}

#[tokio::test]
async fn a_clients_broken_body_never_counts_against_the_upstream() {
    let backend = echo_server().await;
    let (f, upstreams) = breaker_fixture(&backend.url(), "").await;
    let cluster = upstreams.http("catalog").unwrap().cluster().clone();
    let malformed: &[&[u8]] = &[
        // Chunked framing that breaks (a size that is not hex).
        b"POST /api/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n",
        // A chunked body over the size limit.
        b"POST /api/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3e9\r\n",
    ];
    for addr in [f.relay, f.routed, f.router] {
        for _ in 0..5 {
            for bytes in malformed {
                let mut stream = TcpStream::connect(addr).await.unwrap();
                stream.write_all(bytes).await.unwrap();
                if bytes.ends_with(b"3e9\r\n") {
                    stream.write_all(&vec![b'x'; 1001]).await.unwrap();
                }
                let mut buf = Vec::new();
                let answer = read_h1(&mut stream, &mut buf).await;
                assert!(
                    matches!(
                        (answer.status, answer.code().as_str()),
                        (400, "invalid_body") | (413, "payload_too_large")
                    ),
                    "{addr}: {} {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body)
                );
            }
            // A client that declares a body and leaves half way.
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(b"POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\nabc")
                .await
                .unwrap();
            drop(stream);
        }
    }
    // The endpoint's breaker is still closed and it was never ejected: the next good requests
    // reach it on both paths.
    for endpoint in cluster.snapshot().iter() {
        assert!(endpoint.breaker_closed(), "a client's faults opened the breaker");
    }
    for addr in [f.relay, f.routed, f.router] {
        let (_, answers) = exchange(addr, &get("/api/ok").h1(), 1).await;
        assert_eq!(answers[0].status, 200, "{addr}");
    }
}

#[tokio::test]
async fn a_client_too_slow_with_its_body_is_answered_408_and_never_counts_against_the_upstream() {
    let backend = echo_server().await;
    let (f, upstreams) = breaker_fixture(&backend.url(), r#"request_timeout = "300ms""#).await;
    let cluster = upstreams.http("catalog").unwrap().cluster().clone();
    for addr in [f.relay, f.routed, f.router] {
        for _ in 0..4 {
            // Three bytes of a declared 500, then nothing: the deadline passes mid-body.
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream
                .write_all(b"POST /api/x HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\nabc")
                .await
                .unwrap();
            let answer = read_h1(&mut stream, &mut Vec::new()).await;
            let path = if addr == f.relay { "relay" } else { "router" };
            assert_eq!((answer.status, answer.code()), (408, "request_timeout".into()), "{path}");
        }
    }
    for endpoint in cluster.snapshot().iter() {
        assert!(endpoint.breaker_closed(), "a slow client opened the breaker");
    }
    for addr in [f.relay, f.routed, f.router] {
        let (_, answers) = exchange(addr, &get("/api/ok").h1(), 1).await;
        assert_eq!(answers[0].status, 200, "{addr}");
    }
}

#[tokio::test]
async fn an_http_1_0_backend_does_not_cost_the_client_its_keep_alive() {
    // A backend that speaks HTTP/1.0: one answer per connection, then it closes.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut buf = vec![0_u8; 4096];
                let _ = stream.read(&mut buf).await;
                let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok").await;
            });
        }
    });
    let (f, _) = breaker_fixture(&backend, "").await;
    for addr in [f.relay, f.routed, f.router] {
        let mut bytes = get("/api/a").h1();
        bytes.extend(get("/api/b").h1());
        let (_, answers) = exchange(addr, &bytes, 2).await;
        for answer in &answers {
            assert_eq!(
                (answer.status, answer.version, answer.body.as_slice()),
                (200, 1, &b"ok"[..]),
                "{addr}"
            );
            assert_ne!(answer.header("connection"), Some("close"), "{addr}");
        }
    }
}

#[tokio::test]
async fn overlapping_routes_are_config_errors_naming_both() {
    let config = GatewayConfig::from_toml(
        "[upstreams.catalog]\nendpoints = [\"http://127.0.0.1:9\"]\n\
         [[routes]]\npath = \"/composed\"\nupstream = \"catalog\"\naccess = \"public\"\n",
    )
    .unwrap();
    let upstreams = Upstreams::from_config(&config).unwrap();
    let routes = Routes::new().get("/composed/whoami", Access::public(), || async { "" });
    let error = stack::gateway("t-overlap", routes, &config, &upstreams).unwrap_err().to_string();
    assert!(error.contains("routes[0].path") && error.contains("/composed/whoami"), "{error}");
}

/// The answer on HTTP/2 keeps to the same rules as the pipelined HTTP/1.1 one: checked above
/// by the case tables; this pins that HTTP/2 really is served by the router.
#[tokio::test]
async fn http2_reaches_the_router() {
    let f = fixture().await;
    let answer = send_h2(f.relay, &get("/composed/whoami").header("X-Api-Key", PARTNER_KEY)).await;
    assert_eq!((answer.status, answer.version, answer.body.as_slice()), (200, 2, &b"acme"[..]));
}

/// What a hostile HTTP/1.1 head gets on the relay and on the router: the status and problem
/// `code`. `""` on the router: hyper's parser refused the head before the pipeline saw it, with
/// its own empty 400 (the relay parses every head itself, so it answers with a problem).
struct Framing {
    name: &'static str,
    raw: &'static [u8],
    relay: (u16, &'static str),
    router: (u16, &'static str),
}

/// HTTP/1.1 framing and smuggling, one case at a time (HAProxy's reg-tests pin the same
/// set): after each hostile head comes `GET /static/smuggled`, which no path may serve.
#[tokio::test]
async fn framing_attacks_are_refused_and_nothing_is_smuggled() {
    let f = fixture().await;
    const BAD: (u16, &str) = (400, "bad_request");
    const HYPER: (u16, &str) = (400, "");
    let cases = [
        Framing {
            name: "Content-Length with Transfer-Encoding",
            raw: b"POST /static/a HTTP/1.1\r\nHost: g\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            relay: BAD,
            // hyper takes RFC 9112 §6.1's other choice: it drops Content-Length, reads the
            // chunked body and closes the connection after the answer.
            router: (200, ""),
        },
        Framing {
            name: "Transfer-Encoding not ending in chunked",
            raw: b"POST /static/a HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
            relay: BAD,
            router: HYPER,
        },
        Framing {
            name: "Transfer-Encoding: gzip alone",
            raw: b"POST /static/a HTTP/1.1\r\nHost: g\r\nTransfer-Encoding: gzip\r\n\r\n",
            relay: BAD,
            router: HYPER,
        },
        Framing {
            name: "differing Content-Lengths",
            raw: b"POST /static/a HTTP/1.1\r\nHost: g\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
            relay: BAD,
            router: HYPER,
        },
        Framing {
            name: "a Content-Length that is not a number",
            raw: b"POST /static/a HTTP/1.1\r\nHost: g\r\nContent-Length: +4\r\n\r\nabcd",
            relay: BAD,
            router: HYPER,
        },
        Framing {
            name: "obs-fold",
            raw: b"GET /static/a HTTP/1.1\r\nHost: g\r\nX-Folded: a\r\n b\r\n\r\n",
            relay: BAD,
            router: HYPER,
        },
        Framing {
            name: "a space before the colon",
            raw: b"GET /static/a HTTP/1.1\r\nHost : g\r\n\r\n",
            relay: BAD,
            router: HYPER,
        },
        Framing {
            name: "a NUL in a header value",
            raw: b"GET /static/a HTTP/1.1\r\nHost: g\r\nX-Nul: a\0b\r\n\r\n",
            relay: BAD,
            router: HYPER,
        },
    ];
    let mut report = Vec::new();
    for case in &cases {
        for (path, addr, expected) in [
            (Path::Relay, f.relay, case.relay),
            // The relay parses the head whether it relays the request or not.
            (Path::RelayRouted, f.routed, case.relay),
            (Path::RouterH1, f.router, case.router),
        ] {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            let mut bytes = case.raw.to_vec();
            bytes.extend(get("/static/smuggled").header("Connection", "close").h1());
            stream.write_all(&bytes).await.unwrap();
            let mut buf = Vec::new();
            let answer = read_h1(&mut stream, &mut buf).await;
            let code = serde_json::from_slice::<Value>(&answer.body)
                .ok()
                .and_then(|v| v["code"].as_str().map(str::to_owned))
                .unwrap_or_default();
            let mut rest = buf;
            let _ =
                tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest)).await;
            let smuggled = String::from_utf8_lossy(&rest).contains("/files/smuggled");
            if (answer.status, code.as_str(), smuggled) != (expected.0, expected.1, false) {
                report.push(format!(
                    "{} on {path:?}: {} {code:?}, smuggled: {smuggled}",
                    case.name, answer.status
                ));
            }
        }
    }
    assert!(report.is_empty(), "{}", report.join("\n"));
}

#[tokio::test]
async fn a_partners_plan_is_enforced_on_every_path_with_the_ratelimit_headers() {
    // A plan that refills almost never: what each gateway admits is its burst.
    let f = fixture_with("[plans.gold]\nrate = 0.001\nburst = 2\nquota_per_day = 1000").await;
    for &path in ALL {
        for target in ["/admin/x", "/composed/whoami"] {
            let req = get(target).header("x-api-key", PARTNER_KEY);
            let refused = until_refused(&f, path, &req, 2, "\"burst\";r=").await;
            assert_eq!(refused.header("content-type"), Some("application/problem+json"));
            assert_eq!(refused.code(), "rate_limited", "{path:?} {target}");
            let retry: u64 = refused.header("retry-after").unwrap().parse().unwrap();
            assert!(retry >= 1, "{path:?} {target}: Retry-After {retry}");
            assert_eq!(
                refused.header("ratelimit-policy"),
                Some("\"burst\";q=2;w=2000, \"day\";q=1000;w=86400"),
                "{path:?} {target}"
            );
            let limit = refused.header("ratelimit").unwrap();
            assert!(limit.starts_with("\"burst\";r=0;t="), "{path:?} {target}: {limit}");
            assert!(limit.contains("\"day\";r=998;t="), "{path:?} {target}: {limit}");
        }
    }
    // Every decision is counted, by limit and outcome.
    let metrics = crate::metrics::handle().unwrap().render();
    for line in [
        "portico_rate_limited_total{gateway=\"pipeline-test\",limit=\"burst\"}",
        "portico_rate_limit_admitted_total{gateway=\"pipeline-test\",limit=\"plan\"}",
    ] {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
}

/// Sends `req` on `path` until it is refused (429), at most `burst` times admitted, each
/// admitted answer's `RateLimit` starting with `limit`; the refusal.
async fn until_refused(f: &Fixture, path: Path, req: &Req, burst: usize, limit: &str) -> Answer {
    for _ in 0..=burst {
        let answer = send(f, path, req).await;
        if answer.status == 429 {
            return answer;
        }
        assert_eq!(answer.status, 200, "{path:?} {}", req.target);
        let header = answer.header("ratelimit").unwrap_or_default();
        assert!(header.starts_with(limit), "{path:?} {}: {header}", req.target);
    }
    panic!("{path:?} {}: more than the burst of {burst} admitted", req.target);
}

/// Sends `req` from the loopback address `from` (127.0.0.x) to `addr` on a fresh connection.
async fn send_from(from: [u8; 4], addr: SocketAddr, req: &Req) -> Answer {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((from, 0))).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream.write_all(&req.h1()).await.unwrap();
    read_h1(&mut stream, &mut Vec::new()).await
}

#[tokio::test]
async fn guessing_keys_from_one_address_is_throttled_before_any_verification() {
    let f = fixture_with("[rate_limits]\nauth_failures = 3\nauth_failure_window = \"1h\"").await;
    let wrong = get("/admin/x").header("x-api-key", "pk_live_wrong_guess_0000000000000000");
    let right = get("/admin/x").header("x-api-key", PARTNER_KEY);
    // Each transport's gateway has its own process state here; a guesser per gateway.
    for (i, addr) in [f.relay, f.routed, f.router].into_iter().enumerate() {
        let guesser = [127, 0, 0, 10 + i as u8];
        for _ in 0..3 {
            assert_eq!(send_from(guesser, addr, &wrong).await.status, 401);
        }
        // Now even the right key is refused unverified: the answer says nothing about it.
        for req in [&wrong, &right] {
            let answer = send_from(guesser, addr, req).await;
            assert_eq!(answer.status, 429, "{addr}");
            assert_eq!(answer.code(), "rate_limited");
            assert!(answer.header("retry-after").is_some());
        }
        // Without credentials a public route still answers; another address is not throttled.
        assert_eq!(send_from(guesser, addr, &get("/static/x")).await.status, 200);
        assert_eq!(send_from([127, 0, 0, 20 + i as u8], addr, &right).await.status, 200);
    }
}

#[tokio::test]
async fn a_routes_own_limit_holds_on_every_path_per_address_and_per_caller() {
    let f = fixture_with(
        "[routes_policy.static]\nrate_limit = { per = \"address\", rate = 0.001, burst = 2 }\n\
         [routes_policy.whoami]\nrate_limit = { per = \"address\", rate = 0.001, burst = 2 }\n\
         [routes_policy.admin]\nrate_limit = { per = \"caller\", rate = 0.001, burst = 1 }",
    )
    .await;
    for &path in ALL {
        for (target, name, key) in [
            ("/static/x", "static", None),
            ("/composed/whoami", "whoami", None),
            ("/admin/x", "admin", Some(PARTNER_KEY)),
        ] {
            let mut req = get(target);
            if let Some(key) = key {
                req = req.header("x-api-key", key);
            }
            let refused = until_refused(&f, path, &req, 2, &format!("\"{name}\";r=")).await;
            assert_eq!(refused.code(), "rate_limited", "{path:?} {target}");
            assert!(refused.header("retry-after").is_some());
            let policy = refused.header("ratelimit-policy").unwrap();
            assert!(policy.starts_with(&format!("\"{name}\";q=")), "{path:?} {target}: {policy}");
        }
    }
}

#[tokio::test]
async fn a_policy_for_a_route_nobody_named_is_a_config_error() {
    let backend = echo_server().await;
    let config = config(
        &backend.url(),
        "[routes_policy.statik]\nrate_limit = { per = \"address\", rate = 1, burst = 1 }",
    );
    let upstreams = Upstreams::from_config(&config).unwrap();
    let error = stack::gateway("pipeline-test", composed(), &config, &upstreams).unwrap_err();
    assert!(error.to_string().contains("routes_policy.statik"), "{error}");
}

#[tokio::test]
async fn keys_that_cannot_be_fetched_never_count_as_a_clients_failures() {
    // The fixture's JWKS address answers nobody: every token is a 503, the gateway's trouble.
    let f = fixture_with("[rate_limits]\nauth_failures = 2\nauth_failure_window = \"1h\"").await;
    let header = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        r#"{"alg":"ES256","kid":"k"}"#,
    );
    let req = get("/composed/whoami").header("authorization", format!("Bearer {header}.e30.c2ln"));
    for _ in 0..5 {
        let answer = send_from([127, 0, 0, 30], f.relay, &req).await;
        assert_eq!(answer.status, 503, "never 429: {}", String::from_utf8_lossy(&answer.body));
    }
}

#[tokio::test]
async fn the_cache_step_holds_on_every_path() {
    // The pass-through route and the composed one, both cached; each path its own targets, so
    // that each sees its own miss, then its hit, 304 and HEAD.
    let f = fixture_with(
        "[routes_policy.static]\ncache = { ttl = \"60s\" }\n\
         [routes_policy.whoami]\ncache = { ttl = \"60s\" }",
    )
    .await;
    for &path in ALL {
        for target in [format!("/static/{path:?}"), format!("/composed/whoami?on={path:?}")] {
            let miss = send(&f, path, &get(&target)).await;
            assert_eq!(miss.status, 200, "{path:?} {target}");
            assert_eq!(miss.header("cache-status"), Some("portico; fwd=miss; stored"));
            let hit = send(&f, path, &get(&target)).await;
            let status = hit.header("cache-status").unwrap_or_default();
            assert!(status.starts_with("portico; hit"), "{path:?} {target}: {status}");
            assert_eq!(hit.body, miss.body, "{path:?} {target}");
            let etag = hit.header("etag").unwrap().to_owned();
            let validated = send(&f, path, &get(&target).header("if-none-match", &etag)).await;
            assert_eq!(validated.status, 304, "{path:?} {target}");
            assert!(validated.body.is_empty());
        }
    }
}

#[tokio::test]
async fn a_refused_body_still_arriving_does_not_reset_the_answer() {
    // 8 MiB declared against a 1,000-byte limit: refused at the head, the body unread. The
    // client sends all of it, then reads: a close with bytes unread would reset the connection
    // (failing the client's writes, and destroying the 413 in its buffers); the lingering close
    // reads and drops them after the answer, so the client gets the answer and an orderly end.
    let f = fixture().await;
    for addr in [f.relay, f.routed] {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let body = vec![b' '; 8 << 20];
        let head = format!(
            "POST /composed/json HTTP/1.1\r\nHost: gateway.test\r\nContent-Type: \
             application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        // More than the sockets' buffers hold: the client is still writing when the gateway
        // has answered; a plain close would reset the connection under it.
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body).await.expect("the body is taken, not refused with a reset");
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer))
            .await
            .expect("the connection ends in time");
        read.expect("an orderly end, not a reset");
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 413"), "{text}");
        assert!(text.contains("payload_too_large"), "{text}");
    }
}

#[tokio::test]
async fn an_answer_to_a_verified_caller_is_private_on_every_path() {
    let f = fixture().await;
    for &path in ALL {
        for target in ["/admin/x", "/composed/whoami"] {
            let mine = send(&f, path, &get(target).header("x-api-key", PARTNER_KEY)).await;
            assert_eq!(mine.status, 200, "{path:?} {target}");
            assert_eq!(
                mine.header("cache-control"),
                Some("private, no-store"),
                "{path:?} {target}: no shared cache may keep it"
            );
        }
        let anyone = send(&f, path, &get("/static/x")).await;
        assert_eq!(anyone.header("cache-control"), None, "{path:?}: nobody's own");
    }
}

#[test]
fn a_producers_own_cache_control_is_found_in_a_raw_head_whatever_its_case() {
    let head = b"HTTP/1.1 200 OK\r\nCache-Control: max-age=5\r\ncontent-type: text/plain\r\n";
    assert!(super::has_field(head, b"cache-control"));
    assert!(!super::has_field(b"HTTP/1.1 200 OK\r\nx-cache-control: 1\r\n", b"cache-control"));
    assert!(!super::has_field(b"HTTP/1.1 200 OK\r\ncache-controls: 1\r\n", b"cache-control"));
}
