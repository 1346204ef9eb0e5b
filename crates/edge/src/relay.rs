//! The relay: the fast path of declarative pass-through routes, for HTTP/1.1 clients.
//!
//! A pass-through route changes nothing in the message but a few headers, so serving it as a
//! generic HTTP server and client would (and did: `bench/`) spend most of its time building
//! and tearing down request objects. The relay works as nginx does: one task per client
//! connection reads the request head into a buffer, writes the upstream request head straight
//! from it, and relays the bodies byte for byte over a pooled keep-alive upstream connection
//! that the same task drives — no request objects, no channel to a connection task.
//!
//! It runs the same edge steps as the router's pass-through handler, in the same order (see
//! [`stack`](crate::stack)): request id and access-log line, body limit, the route's deadline,
//! forged `x-portico-*` headers stripped, authentication and the route's access rule, identity
//! headers set, hop-by-hop headers dropped, `X-Forwarded-*` replaced, `X-Api-Key` kept at the
//! edge, problem+json errors. Anything else it hands, with the bytes it has read, to the
//! general server: HTTP/2, upgrades, `Transfer-Encoding` or `Expect` on a request, HTTP/1.0,
//! absolute-form targets, and every path the gateway's router owns. A handed-off connection
//! stays with the general server.

mod h1;
mod pool;

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use http_body_util::BodyExt;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf},
    net::TcpStream,
    sync::watch,
    time::{Instant, timeout, timeout_at},
};

use self::h1::{Chunked, Framing};
use crate::{
    access::{Access, AccessTable, Denied},
    auth::{Authenticator, Principal},
    config::{ConfigError, GatewayConfig, Limits},
    deadline,
    error::EdgeError,
    proxy, request_id, stack,
    upstream::{
        Upstreams,
        cluster::{self, Endpoint},
        policy::Balance,
    },
};

/// How long an idle keep-alive client connection is kept (nginx's `keepalive_timeout`).
const KEEP_ALIVE: Duration = Duration::from_secs(75);
/// The largest request or response head, and the most headers in one.
const MAX_HEAD: usize = 16 * 1024;
const MAX_HEADERS: usize = 64;
/// The buffer a body is relayed through.
const BODY_CHUNK: usize = 16 * 1024;

/// The relay of one gateway (one per worker: its upstream pools are that worker's).
#[derive(Debug)]
pub struct Relay {
    gateway: &'static str,
    /// Every route pattern of the gateway; pass-through ones name their relay route, the
    /// others (composed endpoints, health, metrics) belong to the router.
    paths: matchit::Router<Option<usize>>,
    routes: Vec<Route>,
    limits: Limits,
    authenticator: Option<Authenticator>,
}

#[derive(Debug)]
struct Route {
    prefix: String,
    rewrite: Option<String>,
    /// `None`: the route declared no access and admits nobody.
    access: Option<Access>,
    upstream: Arc<pool::Upstream>,
    timeout: Duration,
}

/// How a client connection left the relay.
pub(crate) enum Ended {
    /// It is closed, or about to be.
    Closed,
    /// It needs the general server; `Prefixed` replays what the relay has read.
    HandOff(Prefixed),
}

// === impl Relay ===

impl Relay {
    /// The relay for `config`'s pass-through routes, or `None` when it has none (or their
    /// patterns cannot be matched the way the router matches them, when the router serves all).
    /// `table` holds every pattern of the gateway's router.
    pub(crate) fn new(
        gateway: &'static str,
        config: &GatewayConfig,
        table: &AccessTable,
        upstreams: &Upstreams,
        authenticator: Option<Authenticator>,
    ) -> Result<Option<Self>, ConfigError> {
        if config.routes.is_empty() {
            return Ok(None);
        }
        let mut relayed_upstreams: Vec<Arc<pool::Upstream>> = Vec::new();
        let mut routes = Vec::with_capacity(config.routes.len());
        let mut paths = matchit::Router::new();
        let mut relayed = Vec::new();
        for route in &config.routes {
            let upstream = match relayed_upstreams.iter().find(|u| u.name() == route.upstream) {
                Some(upstream) => upstream.clone(),
                None => {
                    let upstream =
                        Arc::new(pool::Upstream::new(&route.upstream, config, upstreams)?);
                    relayed_upstreams.push(upstream.clone());
                    upstream
                }
            };
            // A hedged upstream races two attempts and keeps the first answer: that is the
            // router's pass-through handler's job, which buffers nothing but the response head.
            if upstream.cluster().policy().hedge.is_some() {
                continue;
            }
            let prefix = route.path.trim_end_matches('/').to_owned();
            for pattern in proxy::patterns(&prefix) {
                if paths.insert(pattern.clone(), Some(routes.len())).is_err() {
                    return Ok(None);
                }
                relayed.push(pattern);
            }
            routes.push(Route {
                timeout: route.timeout.unwrap_or_else(|| upstream.timeout()),
                access: route.access.as_deref().and_then(|a| Access::from_config(a, &route.scopes)),
                rewrite: route.rewrite.clone(),
                upstream,
                prefix,
            });
        }
        for (pattern, _) in table.rules() {
            if !relayed.iter().any(|p| p == pattern) && paths.insert(pattern, None).is_err() {
                // Two patterns the router accepts together but matchit does not: let the
                // router decide every path rather than guess.
                return Ok(None);
            }
        }
        if routes.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self { gateway, paths, routes, limits: config.limits.clone(), authenticator }))
    }

    /// Serves `stream` until the client closes it, the gateway stops (`stop` turns `true`)
    /// or it needs the general server.
    pub(crate) async fn serve_connection(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        mut stop: watch::Receiver<bool>,
    ) -> Ended {
        let mut client = Client { stream, buf: Vec::new(), forwarded_for: peer.ip().to_string() };
        loop {
            if client.buf.is_empty() {
                // Idle: hold no buffer, so an idle connection costs almost nothing.
                client.buf = Vec::new();
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|stop| *stop) => return Ended::Closed,
                    ready = client.stream.readable() => if ready.is_err() { return Ended::Closed },
                    () = tokio::time::sleep(KEEP_ALIVE) => return Ended::Closed,
                }
            }
            match self.serve_request(&mut client).await {
                Next::KeepAlive => {}
                Next::Close => return Ended::Closed,
                Next::HandOff => {
                    let Client { stream, buf, .. } = client;
                    return Ended::HandOff(Prefixed { prefix: buf, read: 0, io: stream });
                }
            }
        }
    }

    /// Reads one request head and serves the request.
    async fn serve_request(&self, client: &mut Client) -> Next {
        let started = Instant::now();
        let head_deadline = started + self.limits.header_read_timeout;
        let request = loop {
            let rejected = match self.prepare(client) {
                Prepare::Ready(request) => break request,
                Prepare::HandOff => return Next::HandOff,
                Prepare::Reject(error) => error,
                Prepare::Partial if client.buf.len() >= MAX_HEAD => {
                    head_too_large("the request head is larger than the gateway accepts")
                }
                Prepare::Partial => {
                    client.buf.reserve(4096);
                    // A client that never finishes its head is disconnected (slowloris).
                    match timeout_at(head_deadline, client.stream.read_buf(&mut client.buf)).await {
                        Ok(Ok(n)) if n > 0 => {}
                        _ => return Next::Close,
                    }
                    continue;
                }
            };
            let id = request_id::RequestId::generate();
            let _ = respond(&mut client.stream, rejected.into_response(), &id, true).await;
            return Next::Close;
        };
        let span = request.span.clone();
        let close = request.close;
        let (status, next) = self.relay(client, request, started).await;
        request_id::served(&span, status, started.into_std());
        if close { Next::Close } else { next }
    }

    /// Parses the head in the client's buffer and, for a relayed route, writes the upstream
    /// request head.
    fn prepare(&self, client: &Client) -> Prepare<'_> {
        let buf = &client.buf[..];
        if buf.starts_with(b"PRI ") {
            return Prepare::HandOff;
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Request::new(&mut headers);
        let head_len = match parsed.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Prepare::Partial,
            Err(httparse::Error::TooManyHeaders) => {
                return Prepare::Reject(head_too_large("the request has too many header fields"));
            }
            Err(_) => {
                return Prepare::Reject(EdgeError::bad_request(
                    "the request is not valid HTTP/1.1",
                ));
            }
        };
        let (Some(method), Some(target), Some(1)) = (parsed.method, parsed.path, parsed.version)
        else {
            return Prepare::HandOff;
        };
        if method == "CONNECT" || !target.starts_with('/') {
            return Prepare::HandOff;
        }
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        let Ok(matched) = self.paths.at(path) else { return Prepare::HandOff };
        let Some(index) = *matched.value else { return Prepare::HandOff };
        let route = &self.routes[index];

        // One pass over the client's headers: framing, connection options, credentials.
        let mut body_len = 0_u64;
        let mut lengths = 0;
        let mut close = false;
        let mut host = None;
        let mut incoming_id = None;
        let mut credentials = HeaderMap::new();
        let mut listed: Vec<&[u8]> = Vec::new();
        for h in parsed.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                match h1::parse_length(h.value) {
                    Some(n) if lengths == 0 || n == body_len => body_len = n,
                    // Conflicting or invalid lengths are the general server's to refuse.
                    _ => return Prepare::HandOff,
                }
                lengths += 1;
            } else if name.eq_ignore_ascii_case("transfer-encoding")
                || name.eq_ignore_ascii_case("expect")
                || name.eq_ignore_ascii_case("upgrade")
            {
                return Prepare::HandOff;
            } else if name.eq_ignore_ascii_case("connection") {
                for token in h1::tokens(h.value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        close = true;
                    } else if token.eq_ignore_ascii_case(b"upgrade") {
                        return Prepare::HandOff;
                    } else {
                        listed.push(token);
                    }
                }
            } else if name.eq_ignore_ascii_case("host") {
                host = Some(h.value);
            } else if name.eq_ignore_ascii_case(request_id::HEADER) {
                incoming_id = Some(h.value);
            } else if (name.eq_ignore_ascii_case("authorization")
                || name.eq_ignore_ascii_case("x-api-key"))
                && let (Ok(n), Ok(v)) =
                    (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_bytes(h.value))
            {
                credentials.append(n, v);
            }
        }
        let id = incoming_id
            .and_then(|v| HeaderValue::from_bytes(v).ok())
            .and_then(|v| request_id::RequestId::from_incoming(&v))
            .unwrap_or_else(request_id::RequestId::generate);
        // httparse admitted the method as a token, so this only fails on what it never gives.
        let Ok(method) = Method::from_bytes(method.as_bytes()) else { return Prepare::HandOff };
        let span = tracing::info_span!("request", id = id.as_str(), method = %method, path = path);

        // The upstream head, written straight from the client's. The `Host` line goes in when
        // the endpoint is picked, after admission.
        let mut head = Vec::with_capacity(head_len + 256);
        head.extend_from_slice(method.as_str().as_bytes());
        head.push(b' ');
        proxy::push_upstream_path(&mut head, &route.prefix, route.rewrite.as_deref(), path, query);
        head.extend_from_slice(b" HTTP/1.1\r\n");
        let host_at = head.len();
        for h in parsed.headers.iter() {
            if !forwarded(h.name, &listed) {
                continue;
            }
            head.extend_from_slice(h.name.as_bytes());
            head.extend_from_slice(b": ");
            head.extend_from_slice(h.value);
            head.extend_from_slice(b"\r\n");
        }
        push_header(&mut head, request_id::HEADER, id.as_str().as_bytes());
        push_header(&mut head, "x-forwarded-for", client.forwarded_for.as_bytes());
        push_header(&mut head, "x-forwarded-proto", b"http");
        if let Some(host) = host {
            push_header(&mut head, "x-forwarded-host", host);
        }
        Prepare::Ready(Prepared {
            head_len,
            route,
            host_at,
            head,
            body_len,
            close,
            is_head: method == Method::HEAD,
            method,
            credentials,
            id,
            span,
        })
    }

    /// Admits and relays one prepared request; returns the status sent and what comes next.
    async fn relay(
        &self,
        client: &mut Client,
        request: Prepared<'_>,
        started: Instant,
    ) -> (u16, Next) {
        let Prepared {
            head_len,
            route,
            host_at,
            mut head,
            body_len,
            is_head,
            method,
            credentials,
            id,
            ..
        } = request;
        let upstream = &route.upstream;
        let idempotent = method.is_idempotent();
        // A body the client still has to send is unread when we answer early: close then.
        let early_close = body_len > 0;
        if body_len > self.limits.max_body_bytes {
            let error = EdgeError::payload_too_large(self.limits.max_body_bytes);
            return self.answer(client, error.into_response(), &id, true).await;
        }
        let rule = route.access.as_ref();
        let principal = match rule {
            None => Err(stack::refuse(self.gateway, Denied::Forbidden(None))),
            Some(rule) => {
                stack::authorize(self.gateway, self.authenticator.as_ref(), rule, &credentials)
                    .await
            }
        };
        let principal: Option<Arc<Principal>> = match principal {
            Ok(principal) => principal,
            Err(response) => return self.answer(client, response, &id, early_close).await,
        };
        if let Some(principal) = &principal {
            for (name, value) in crate::access::identity_headers(principal) {
                push_header(&mut head, name.as_str(), value.as_bytes());
            }
        }
        let deadline = (started + self.limits.request_timeout).min(Instant::now() + route.timeout);
        let remaining = deadline.saturating_duration_since(Instant::now());
        push_header(&mut head, deadline::HEADER, deadline::header_value(remaining).as_bytes());
        if body_len > 0 {
            push_header(&mut head, "content-length", body_len.to_string().as_bytes());
        }
        head.extend_from_slice(b"\r\n");
        // The body bytes already read go out with the head, in one write.
        let in_buf =
            usize::try_from(body_len).unwrap_or(usize::MAX).min(client.buf.len() - head_len);
        head.extend_from_slice(&client.buf[head_len..head_len + in_buf]);
        client.buf.drain(..head_len + in_buf);
        let body_rest = body_len - in_buf as u64;

        let balancer = upstream.cluster();
        let _permit = match balancer.admit() {
            Ok(permit) => permit,
            Err(error) => {
                return self.answer(client, error.into_response(), &id, body_rest > 0).await;
            }
        };
        // Only consistent hashing reads the key; the others should not pay for a copy.
        let key = if balancer.policy().balance == Balance::ConsistentHash {
            request_target(&head).to_owned()
        } else {
            String::new()
        };
        let mut host_len = 0;
        let mut attempts = 0;
        let mut previous: Option<Arc<Endpoint>> = None;
        let (response, claim) = loop {
            let mut claim = match balancer.pick(&key, previous.as_slice()) {
                Ok(claim) => claim,
                Err(refusal) => {
                    let error = balancer.refused(refusal);
                    return self.answer(client, error.into_response(), &id, body_rest > 0).await;
                }
            };
            attempts += 1;
            // The `Host` line names the endpoint this attempt goes to.
            let authority = claim.endpoint().authority().as_bytes();
            let line = b"host: ".iter().chain(authority).chain(b"\r\n").copied();
            head.splice(host_at..host_at + host_len, line);
            host_len = authority.len() + 8;
            balancer.sent();
            let endpoint = claim.endpoint();
            let exchanged = if body_rest == 0 {
                let exchange = exchange(upstream, endpoint, &head, 0, None, is_head, idempotent);
                // A client that leaves while its answer is awaited takes the upstream call with
                // it (nginx's `proxy_ignore_client_abort off`).
                match unless_client_leaves(&client.stream, timeout_at(deadline, exchange)).await {
                    Some(exchanged) => exchanged,
                    None => return (499, Next::Close),
                }
            } else {
                let body = Some(&mut client.stream);
                let exchange =
                    exchange(upstream, endpoint, &head, body_rest, body, is_head, idempotent);
                timeout_at(deadline, exchange).await
            };
            let failure = match &exchanged {
                Ok(Ok(response)) => {
                    (response.status >= 500).then_some(cluster::Failure::Status(response.status))
                }
                // Not the endpoint's doing: the claim goes back without a verdict.
                Ok(Err(Failure::Client)) => return (499, Next::Close),
                Ok(Err(Failure::Connect(_))) => Some(cluster::Failure::Connect),
                Ok(Err(Failure::Upstream(_))) => Some(cluster::Failure::Reset),
                Err(_elapsed) => Some(cluster::Failure::Timeout),
            };
            balancer.record(&mut claim, failure);
            // Another endpoint may take it when the failure is one a retry can fix (connect,
            // reset, 502, 503), the request is idempotent and replayable from the head alone,
            // and the budget and the deadline allow. A 5xx answer's connection is closed unread.
            if let Some(failure) = failure
                && failure.is_retryable()
                && idempotent
                && body_rest == 0
                && attempts < balancer.policy().retry.attempts
            {
                let wait = balancer.backoff(attempts);
                if Instant::now() + wait < deadline && balancer.may_retry() {
                    tracing::debug!(
                        upstream = upstream.name(),
                        endpoint = claim.endpoint().authority(),
                        ?failure,
                        "retrying on another endpoint"
                    );
                    previous = Some(claim.endpoint().clone());
                    drop((claim, exchanged));
                    tokio::time::sleep(wait).await;
                    continue;
                }
            }
            let error = match exchanged {
                Ok(Ok(response)) => break (response, claim),
                Err(_elapsed) => {
                    let error = EdgeError::upstream_timeout(upstream.name());
                    return self.answer(client, error.into_response(), &id, body_rest > 0).await;
                }
                Ok(Err(Failure::Connect(error) | Failure::Upstream(error))) => error,
                Ok(Err(Failure::Client)) => return (499, Next::Close),
            };
            tracing::warn!(upstream = upstream.name(), %error, "upstream unavailable");
            let error = EdgeError::upstream_unavailable(upstream.name(), error);
            return self.answer(client, error.into_response(), &id, body_rest > 0).await;
        };
        let status = response.status;
        let next =
            forward_response(upstream, claim.endpoint(), response, client, &id, route.timeout)
                .await;
        (status, next)
    }

    /// Sends an answer of the gateway's own (a refusal or an error).
    async fn answer(
        &self,
        client: &mut Client,
        response: Response,
        id: &request_id::RequestId,
        close: bool,
    ) -> (u16, Next) {
        let response = crate::rescue::normalise(response).await;
        let status = response.status().as_u16();
        match respond(&mut client.stream, response, id, close).await {
            Ok(()) if !close => (status, Next::KeepAlive),
            _ => (status, Next::Close),
        }
    }
}

/// Whether a client header goes upstream as it is. The relay sets `Host`, the request id and
/// the `X-Forwarded-*` headers itself; identity headers come only from the gateway; the
/// framing is the relay's.
fn forwarded(name: &str, listed: &[&[u8]]) -> bool {
    const OWN: [&str; 9] = [
        "host",
        "content-length",
        "forwarded",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "x-api-key",
        request_id::HEADER,
        "transfer-encoding",
    ];
    !(OWN.iter().any(|own| own.eq_ignore_ascii_case(name))
        || h1::is_hop_by_hop(name)
        || starts_with_ignore_case(name, crate::access::IDENTITY_HEADER_PREFIX)
        || listed.iter().any(|l| l.eq_ignore_ascii_case(name.as_bytes())))
}

/// 431: a request head over the relay's limits.
/// How long the relay waits for an upstream answer before it starts watching for the client
/// leaving: most answers come sooner, and the watch costs a syscall.
const WATCH_CLIENT_AFTER: Duration = Duration::from_millis(20);

/// Runs `work` (waiting for the upstream) unless the client closes its connection first; `None`
/// then, and `work` is dropped with its upstream connection. Bytes from the client (a pipelined
/// request) end the watch: they wait their turn.
async fn unless_client_leaves<F: Future>(client: &TcpStream, work: F) -> Option<F::Output> {
    let watch = async {
        tokio::time::sleep(WATCH_CLIENT_AFTER).await;
        let mut probe = [0_u8; 1];
        if let Ok(n) = client.peek(&mut probe).await
            && n > 0
        {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        biased;
        done = work => Some(done),
        () = watch => None,
    }
}

/// The request target of an upstream head (`GET /x?y HTTP/1.1…` → `/x?y`).
fn request_target(head: &[u8]) -> &str {
    let line = head.split(|&b| b == b'\r').next().unwrap_or_default();
    let mut parts = line.splitn(3, |&b| b == b' ');
    let target = parts.nth(1).unwrap_or_default();
    std::str::from_utf8(target).unwrap_or_default()
}

fn head_too_large(detail: &'static str) -> EdgeError {
    EdgeError::from_status(http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "header_too_large")
        .with_detail(detail)
}

fn starts_with_ignore_case(name: &str, prefix: &str) -> bool {
    name.len() >= prefix.len()
        && name.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

fn push_header(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

struct Client {
    stream: TcpStream,
    /// What has been read of the client's requests and not yet used.
    buf: Vec<u8>,
    /// The peer's address, as `X-Forwarded-For` carries it.
    forwarded_for: String,
}

enum Next {
    KeepAlive,
    Close,
    HandOff,
}

enum Prepare<'a> {
    Ready(Prepared<'a>),
    Partial,
    HandOff,
    Reject(EdgeError),
}

struct Prepared<'a> {
    head_len: usize,
    route: &'a Route,
    /// Where the `Host` line goes in `head`.
    host_at: usize,
    /// The upstream request head so far: request line and headers, without the final CRLF.
    head: Vec<u8>,
    body_len: u64,
    close: bool,
    is_head: bool,
    method: Method,
    credentials: HeaderMap,
    id: request_id::RequestId,
    span: tracing::Span,
}

/// An upstream's response head, read, with what followed it in the same reads.
struct UpstreamResponse {
    stream: TcpStream,
    status: u16,
    /// The response head for the client, without the final CRLF.
    head: Vec<u8>,
    framing: Framing,
    /// Whether the upstream keeps the connection open after this response.
    reusable: bool,
    /// Bytes read past the upstream's head.
    rest: Vec<u8>,
}

enum Failure {
    /// The client went away while its body was being relayed.
    Client,
    /// No connection could be opened: nothing was sent.
    Connect(io::Error),
    Upstream(io::Error),
}

/// Sends the request (head and body) upstream and reads the response head. A reused
/// connection that the upstream closed in the meantime is replaced by a new one, once, when
/// the request is idempotent (the upstream may have acted on it) and nothing of it needs to
/// be re-read from the client.
async fn exchange(
    upstream: &pool::Upstream,
    endpoint: &Endpoint,
    head: &[u8],
    body_rest: u64,
    mut client: Option<&mut TcpStream>,
    is_head: bool,
    idempotent: bool,
) -> Result<UpstreamResponse, Failure> {
    if let Some(stream) = upstream.reuse(endpoint) {
        match send(stream, head, body_rest, client.as_deref_mut(), is_head).await {
            Ok(response) => return Ok(response),
            Err(Attempt::Stale(_)) if body_rest == 0 && idempotent => {}
            Err(Attempt::Stale(error) | Attempt::Failed(error)) => {
                return Err(Failure::Upstream(error));
            }
            Err(Attempt::Client) => return Err(Failure::Client),
        }
    }
    let stream = upstream.connect(endpoint).await.map_err(Failure::Connect)?;
    match send(stream, head, body_rest, client, is_head).await {
        Ok(response) => Ok(response),
        Err(Attempt::Stale(error) | Attempt::Failed(error)) => Err(Failure::Upstream(error)),
        Err(Attempt::Client) => Err(Failure::Client),
    }
}

enum Attempt {
    /// Nothing came back before the connection failed: it may have been closed while idle.
    Stale(io::Error),
    Failed(io::Error),
    Client,
}

async fn send(
    mut stream: TcpStream,
    head: &[u8],
    mut body_rest: u64,
    client: Option<&mut TcpStream>,
    is_head: bool,
) -> Result<UpstreamResponse, Attempt> {
    stream.write_all(head).await.map_err(Attempt::Stale)?;
    if body_rest > 0 {
        // The rest of the body comes from the client's connection.
        let Some(client) = client else { return Err(Attempt::Client) };
        let mut chunk = vec![0_u8; BODY_CHUNK];
        while body_rest > 0 {
            let want = usize::try_from(body_rest).unwrap_or(BODY_CHUNK).min(BODY_CHUNK);
            let n = match client.read(&mut chunk[..want]).await {
                Ok(0) | Err(_) => return Err(Attempt::Client),
                Ok(n) => n,
            };
            stream.write_all(&chunk[..n]).await.map_err(Attempt::Failed)?;
            body_rest -= n as u64;
        }
    }
    let mut buf = Vec::with_capacity(8192);
    loop {
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| if buf.is_empty() { Attempt::Stale(e) } else { Attempt::Failed(e) })?;
        if n == 0 {
            let error =
                io::Error::new(io::ErrorKind::UnexpectedEof, "closed before the response head");
            return Err(if buf.is_empty() {
                Attempt::Stale(error)
            } else {
                Attempt::Failed(error)
            });
        }
        match parse_response(&buf, is_head) {
            Ok(Some((consumed, parsed))) => {
                let Parsed { status, head, framing, reusable } = parsed;
                buf.drain(..consumed);
                return Ok(UpstreamResponse { stream, status, head, framing, reusable, rest: buf });
            }
            Ok(None) if buf.len() < MAX_HEAD => buf.reserve(4096),
            Ok(None) => {
                return Err(Attempt::Failed(io::Error::other("the response head is too large")));
            }
            Err(error) => return Err(Attempt::Failed(error)),
        }
    }
}

struct Parsed {
    status: u16,
    head: Vec<u8>,
    framing: Framing,
    reusable: bool,
}

/// Parses the response head at the start of `buf`, skipping interim (1xx) responses; returns
/// the bytes consumed and the head for the client, or `None` when more bytes are needed.
fn parse_response(buf: &[u8], is_head: bool) -> io::Result<Option<(usize, Parsed)>> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let mut offset = 0;
    loop {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut headers);
        let len = match parsed.parse(&buf[offset..]) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(invalid(&format!("invalid response head: {e}"))),
        };
        let status = parsed.code.unwrap_or(0);
        if status == 101 {
            return Err(invalid("an upgrade nobody asked for"));
        }
        if (100..200).contains(&status) {
            offset += len;
            continue;
        }
        let mut reusable = parsed.version == Some(1);
        let mut chunked = None;
        let mut length = None;
        let mut listed: Vec<&[u8]> = Vec::new();
        for h in parsed.headers.iter() {
            if h.name.eq_ignore_ascii_case("transfer-encoding") {
                let last = h1::tokens(h.value).last().unwrap_or_default();
                chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
            } else if h.name.eq_ignore_ascii_case("content-length") {
                match (h1::parse_length(h.value), length) {
                    (Some(n), None) => length = Some(n),
                    (Some(n), Some(m)) if n == m => {}
                    _ => return Err(invalid("invalid Content-Length")),
                }
            } else if h.name.eq_ignore_ascii_case("connection") {
                for token in h1::tokens(h.value) {
                    if token.eq_ignore_ascii_case(b"close") {
                        reusable = false;
                    } else {
                        listed.push(token);
                    }
                }
            }
        }
        let framing = if is_head || status == 204 || status == 304 {
            Framing::Empty
        } else {
            match (chunked, length) {
                (Some(true), _) => Framing::Chunked(Chunked::default()),
                (Some(false), _) | (None, None) => Framing::UntilClose,
                (None, Some(n)) => Framing::Length(n),
            }
        };
        if matches!(framing, Framing::UntilClose) {
            reusable = false;
        }
        let mut head = Vec::with_capacity(len + 64);
        head.extend_from_slice(b"HTTP/1.1 ");
        head.extend_from_slice(itoa3(status).as_slice());
        head.push(b' ');
        head.extend_from_slice(parsed.reason.unwrap_or_default().as_bytes());
        head.extend_from_slice(b"\r\n");
        let relays_chunks = matches!(framing, Framing::Chunked(_));
        for h in parsed.headers.iter() {
            let name = h.name;
            let keep = !(h1::is_hop_by_hop(name)
                || name.eq_ignore_ascii_case(request_id::HEADER)
                || listed.iter().any(|l| l.eq_ignore_ascii_case(name.as_bytes()))
                || (name.eq_ignore_ascii_case("transfer-encoding") && !relays_chunks)
                || (name.eq_ignore_ascii_case("content-length") && chunked.is_some()));
            if keep {
                push_header(&mut head, name, h.value);
            }
        }
        return Ok(Some((offset + len, Parsed { status, head, framing, reusable })));
    }
}

fn itoa3(status: u16) -> [u8; 3] {
    let status = status.min(999);
    [b'0' + (status / 100) as u8, b'0' + (status / 10 % 10) as u8, b'0' + (status % 10) as u8]
}

/// Sends the upstream's response on to the client, body byte for byte, and returns the
/// upstream connection to its pool when the response ended cleanly.
async fn forward_response(
    upstream: &pool::Upstream,
    endpoint: &Endpoint,
    response: UpstreamResponse,
    client: &mut Client,
    id: &request_id::RequestId,
    read_timeout: Duration,
) -> Next {
    let UpstreamResponse { mut stream, mut head, mut framing, mut reusable, mut rest, .. } =
        response;
    push_header(&mut head, request_id::HEADER, id.as_str().as_bytes());
    let until_close = matches!(framing, Framing::UntilClose);
    if until_close {
        head.extend_from_slice(b"connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");

    // What of the body came with the head goes out with it.
    let (taken, mut done) = match take(&mut framing, &rest) {
        Ok(progress) => progress,
        Err(h1::Malformed) => return Next::Close,
    };
    if taken < rest.len() {
        // More than the response: the upstream is not speaking HTTP/1.1 correctly.
        reusable = false;
    }
    head.extend_from_slice(&rest[..taken]);
    if client.stream.write_all(&head).await.is_err() {
        return Next::Close;
    }
    rest.clear();
    while !done {
        if rest.capacity() < BODY_CHUNK {
            rest.reserve(BODY_CHUNK);
        }
        let read = timeout(read_timeout, stream.read_buf(&mut rest)).await;
        let Ok(Ok(n)) = read else { return Next::Close };
        if n == 0 {
            return Next::Close;
        }
        let (taken, finished) = match take(&mut framing, &rest) {
            Ok(progress) => progress,
            Err(h1::Malformed) => return Next::Close,
        };
        if taken < rest.len() {
            reusable = false;
        }
        if client.stream.write_all(&rest[..taken]).await.is_err() {
            return Next::Close;
        }
        rest.clear();
        done = finished;
    }
    if until_close {
        return Next::Close;
    }
    if reusable {
        upstream.release(endpoint, stream);
    }
    Next::KeepAlive
}

/// How many of `bytes` belong to the body `framing` describes, and whether it has ended.
fn take(framing: &mut Framing, bytes: &[u8]) -> Result<(usize, bool), h1::Malformed> {
    Ok(match framing {
        Framing::Empty => (0, true),
        Framing::Length(left) => {
            let n = usize::try_from(*left).unwrap_or(usize::MAX).min(bytes.len());
            *left -= n as u64;
            (n, *left == 0)
        }
        Framing::Chunked(chunked) => {
            let n = chunked.advance(bytes)?;
            (n, chunked.is_done())
        }
        Framing::UntilClose => (bytes.len(), false),
    })
}

/// Writes a whole response of the gateway's own, with the request id.
async fn respond(
    stream: &mut TcpStream,
    response: Response,
    id: &request_id::RequestId,
    close: bool,
) -> io::Result<()> {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or_default().as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name != header::CONTENT_LENGTH && name != header::CONNECTION {
            push_header(&mut out, name.as_str(), value.as_bytes());
        }
    }
    push_header(&mut out, request_id::HEADER, id.as_str().as_bytes());
    push_header(&mut out, "content-length", body.len().to_string().as_bytes());
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    stream.write_all(&out).await?;
    if close {
        let _ = stream.shutdown().await;
    }
    Ok(())
}

/// A client connection handed to the general server, with the bytes the relay has read from
/// it replayed first.
#[derive(Debug)]
pub(crate) struct Prefixed {
    prefix: Vec<u8>,
    read: usize,
    io: TcpStream,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read < this.prefix.len() {
            let n = (this.prefix.len() - this.read).min(buf.remaining());
            buf.put_slice(&this.prefix[this.read..this.read + n]);
            this.read += n;
            if this.read == this.prefix.len() {
                this.prefix = Vec::new();
                this.read = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
