//! The relay: the HTTP/1.1 transport of declarative pass-through routes.
//!
//! A pass-through route changes nothing in the message but a few headers, so serving it as a
//! generic HTTP server and client would (and did: `bench/`) spend most of its time building
//! and tearing down request objects. The relay works as nginx does: one task per client
//! connection reads the request head into a buffer, writes the upstream request head straight
//! from it, and relays the bodies byte for byte over a pooled keep-alive upstream connection
//! that the same task drives — no request objects, no channel to a connection task.
//!
//! It is a transport, not a second gateway: every edge rule is the [`pipeline`](crate::pipeline)'s
//! (the relay hands it the parsed head and acts on its verdict), the headers an upstream gets
//! are the forwarding policy's raw rendering, and every attempt goes through the upstream's
//! `Cluster::call` (balancing, breakers, retries, hedging).
//!
//! A request for a path the gateway's router owns is served by the general server (hyper and
//! the router, behind the same pipeline) one request at a time: the relay gives it exactly that
//! request's bytes ([`OneRequest`]) and takes the connection back after the response, so a
//! connection between requests is always the relay's, holding no buffer — hyper's pair of
//! 8 KiB buffers lives only as long as a request. What the relay cannot frame itself it hands,
//! with the bytes it has read, to the general server for good: HTTP/2, upgrades,
//! `Transfer-Encoding` or `Expect` on a request, HTTP/1.0 and absolute-form targets.

mod h1;
mod io;
mod pool;
mod routed;
mod spare;
mod upstream;

use std::{mem::MaybeUninit, net::SocketAddr, pin::Pin, sync::Arc, time::Duration};

use axum::response::IntoResponse;
use bytes::Bytes;
use http::Method;
use tokio::{
    io::AsyncReadExt,
    sync::watch,
    time::{Instant, timeout_at},
};

#[cfg(any(test, feature = "fuzzing"))]
pub(crate) use self::h1::chunked_splits_agree;
pub(crate) use self::h1::{parse_length, tokens};
pub use self::io::{ClientIo, OneRequest, Prefixed};
use self::upstream::{Failure, UpstreamResponse};
use crate::pipeline::{decimal, push_decimal};
use crate::{
    config::GatewayConfig,
    error::EdgeError,
    pipeline::{
        Head, Headers, Outbound, PassRoute, Peer, Pipeline, Route, Verdict, render_identity_raw,
    },
    upstream::{
        cluster::{AttemptError, Call, Endpoint, Failure as EndpointFailure},
        policy::Balance,
    },
};

/// The most header fields httparse is given room for (`limits.max_headers` is at most this).
pub(crate) const MAX_FIELDS: usize = 128;

/// The relay of one gateway (one per worker: its upstream pools are that worker's).
#[derive(Debug)]
pub struct Relay {
    pipeline: Arc<Pipeline>,
    /// The connection pool of each pass-through route's upstream, by route index (routes to
    /// one upstream share its pool).
    pools: Vec<Arc<pool::Upstream>>,
    /// Whether it relays pass-through routes itself; when not, the router serves them too.
    relays: bool,
}

/// The general server's side of a connection the relay keeps: it serves the router's requests
/// one at a time.
pub(crate) trait Routed: Send {
    /// The general server's service (the pipeline, then the router) for `request`.
    fn call(
        &mut self,
        request: http::Request<axum::body::Body>,
    ) -> Pin<Box<dyn Future<Output = axum::response::Response> + Send>>;

    /// Serves the one request `request` reads (head and body, then the end of the stream);
    /// whether the connection may carry another request after it.
    fn serve_one<'a, S: ClientIo>(
        &'a mut self,
        request: OneRequest<'a, S>,
    ) -> impl Future<Output = bool> + Send + 'a;
}

/// How a client connection left the relay.
pub(crate) enum Ended<S> {
    /// It is closed, or about to be.
    Closed,
    /// It needs the general server; `Prefixed` replays what the relay has read.
    HandOff(Prefixed<S>),
}

// === impl Relay ===

impl Relay {
    /// The relay of the pipeline's gateway, with a connection pool per pass-through upstream.
    pub(crate) fn new(pipeline: Arc<Pipeline>, config: &GatewayConfig) -> Self {
        let routes = pipeline.pass_routes();
        let mut pools: Vec<Arc<pool::Upstream>> = Vec::with_capacity(routes.len());
        for route in routes {
            let shared = routes[..route.index]
                .iter()
                .position(|r| r.upstream.name() == route.upstream.name())
                .map(|i| pools[i].clone());
            pools.push(shared.unwrap_or_else(|| {
                Arc::new(pool::Upstream::new(route.upstream.cluster().clone(), config))
            }));
        }
        Self { pipeline, pools, relays: true }
    }

    /// The same relay, but every request goes to the router (one that must see them all).
    pub(crate) fn routes_only(&self) -> Self {
        Self { pipeline: self.pipeline.clone(), pools: Vec::new(), relays: false }
    }

    /// Serves `stream` until the client closes it, the gateway stops (`stop` turns `true`)
    /// or it needs the general server for good; `router` serves the router's requests.
    pub(crate) async fn serve_connection<S: ClientIo>(
        &self,
        stream: S,
        peer: SocketAddr,
        mut stop: watch::Receiver<bool>,
        router: &mut impl Routed,
    ) -> Ended<S> {
        let peer = self.pipeline.peer(peer.ip());
        let limits = self.pipeline.limits();
        // A new connection must start its first request within the head timeout (a silent
        // socket is reaped then); between requests, it may idle for the keep-alive timeout.
        let mut idle = limits.header_read_timeout;
        // One idle timer per connection, moved only when it fires: arming and cancelling a
        // timer per request cost more than parsing the request (`bench/instructions`).
        let mut idle_timer = Box::pin(tokio::time::sleep(idle));
        let mut client = Client {
            stream,
            buf: Vec::new(),
            peer,
            stop: stop.clone(),
            watch: Box::pin(tokio::time::sleep(WATCH_CLIENT_AFTER)),
            calls: None,
            answered_at: None,
        };
        // The drain signal, waited for by one future for the connection's life: one made per
        // idle spell registered with the channel and left it again on every request.
        let stopped = async move {
            let _ = stop.wait_for(|stop| *stop).await;
        };
        let mut stopped = std::pin::pin!(stopped);
        loop {
            // Taken every turn: a pipelined request served before the next idle spell leaves
            // no stale time behind.
            let answered_at = client.answered_at.take();
            if client.buf.is_empty() {
                // Idle: hold no buffer, so an idle connection costs almost nothing; the
                // worker keeps it for the next request that needs one.
                spare::give(std::mem::take(&mut client.buf));
                let idle_since = answered_at.unwrap_or_else(Instant::now);
                loop {
                    // The next request first: a connection woken by one does not poll the
                    // rest (a request that meets the drain is answered, with `connection:
                    // close`).
                    tokio::select! {
                        biased;
                        ready = client.stream.readable() => {
                            if ready.is_err() {
                                return Ended::Closed;
                            }
                            break;
                        }
                        () = &mut stopped => return Ended::Closed,
                        () = idle_timer.as_mut() => {
                            // Armed for an earlier idle spell: this one may still have time.
                            let until = idle_since + idle;
                            if Instant::now() >= until {
                                return Ended::Closed;
                            }
                            idle_timer.as_mut().reset(until);
                        }
                    }
                }
            }
            idle = limits.keepalive_timeout;
            match self.serve_request(&mut client, router).await {
                Next::KeepAlive => {}
                Next::Close => {
                    linger(&mut client.stream).await;
                    return Ended::Closed;
                }
                Next::HandOff => {
                    let Client { stream, buf, .. } = client;
                    return Ended::HandOff(Prefixed::new(buf, stream));
                }
            }
        }
    }

    /// Reads one request head and serves the request.
    async fn serve_request<S: ClientIo>(
        &self,
        client: &mut Client<S>,
        router: &mut impl Routed,
    ) -> Next {
        let started = Instant::now();
        let limits = self.pipeline.limits();
        let head_deadline = started + limits.header_read_timeout;
        // Reads of this head: the first follows the readiness that woke the connection; more
        // mean the client was slow with it, and `started` is no longer about now.
        let mut reads = 0_u32;
        let prepared = loop {
            match self.prepare(&client.buf, &client.peer, started.into_std()) {
                Prepare::Ready(prepared) => break prepared,
                Prepare::HandOff => return Next::HandOff,
                Prepare::Routed { head_len, body_len, close }
                    if body_len <= routed::MAX_READ_FIRST =>
                {
                    let deadline = started + limits.request_timeout;
                    return routed::serve(client, router, head_len, body_len, close, deadline)
                        .await;
                }
                Prepare::Routed { head_len, body_len, close } => {
                    // A large body streams through hyper. The body bytes read with the head go with it; a pipelined request after
                    // them stays here.
                    let read = head_len
                        + usize::try_from(body_len)
                            .unwrap_or(usize::MAX)
                            .min(client.buf.len() - head_len);
                    let rest = body_len - (read - head_len) as u64;
                    let request = OneRequest::new(&mut client.stream, &client.buf[..read], rest);
                    let reusable = router.serve_one(request).await;
                    client.buf.drain(..read);
                    return if reusable && !close && !client.draining() {
                        Next::KeepAlive
                    } else {
                        Next::Close
                    };
                }
                Prepare::Refuse { outbound, error, head_len, close } => {
                    // The refused head is consumed: it is answered once, and a pipelined
                    // request behind it is served next (unless a body we will not read
                    // follows it).
                    client.buf.drain(..head_len.min(client.buf.len()));
                    return self.answer(client, error.into_response(), outbound, close).await;
                }
                Prepare::Partial if client.buf.len() >= limits.max_head_bytes => {
                    let line_ends = client.buf
                        [..limits.max_request_line_bytes.min(client.buf.len())]
                        .windows(2)
                        .any(|w| w == b"\r\n");
                    let error = if line_ends {
                        EdgeError::header_too_large(format!(
                            "the request head exceeds the limit of {} bytes",
                            limits.max_head_bytes
                        ))
                    } else {
                        EdgeError::uri_too_long(limits.max_request_line_bytes)
                    };
                    let outbound = self.outbound_without_head(&client.peer, started.into_std());
                    return self.answer(client, error.into_response(), outbound, true).await;
                }
                Prepare::Partial => {
                    reads += 1;
                    if client.buf.capacity() == 0 {
                        client.buf = spare::take();
                    } else {
                        client.buf.reserve(4096);
                    }
                    // A client that never finishes its head is disconnected (slowloris).
                    match timeout_at(head_deadline, client.stream.read_buf(&mut client.buf)).await {
                        Ok(Ok(n)) if n > 0 => {}
                        _ => return Next::Close,
                    }
                }
            }
        };
        let close = prepared.close;
        let next = self.relay(client, prepared, started, reads > 1).await;
        if close { Next::Close } else { next }
    }

    fn outbound_without_head(&self, peer: &Peer, started: std::time::Instant) -> Outbound {
        let id = crate::request_id::RequestId::generate();
        Outbound::new(id, &Method::GET, "-", peer, started)
    }

    /// Parses the head in the client's buffer, runs the pipeline's head steps on it and, for
    /// a relayed route, renders the upstream request head.
    fn prepare(&self, buf: &[u8], peer: &Peer, started: std::time::Instant) -> Prepare {
        if buf.starts_with(b"PRI ") {
            return Prepare::HandOff;
        }
        // Left uninitialised: httparse writes the fields it finds; filling 128 empty ones
        // first was 4 KiB of stores per head, whatever its size.
        let mut fields = [const { MaybeUninit::uninit() }; MAX_FIELDS];
        let mut parsed = httparse::Request::new(&mut []);
        let head_len = match parsed.parse_with_uninit_headers(buf, &mut fields) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => return Prepare::Partial,
            Err(error) => {
                let error = match error {
                    httparse::Error::TooManyHeaders => EdgeError::header_too_large(format!(
                        "the request has more than {} header fields",
                        self.pipeline.limits().max_headers
                    )),
                    _ => EdgeError::bad_request("the request is not valid HTTP/1.1"),
                };
                let outbound = self.outbound_without_head(peer, started);
                // Where this head ends is unknown: nothing after it can be trusted.
                return Prepare::Refuse { outbound, error, head_len: buf.len(), close: true };
            }
        };
        let (Some(method), Some(target), Some(1)) = (parsed.method, parsed.path, parsed.version)
        else {
            return Prepare::HandOff;
        };
        if method == "CONNECT" || !target.starts_with('/') {
            return Prepare::HandOff;
        }
        // httparse admitted the method as a token; hyper refuses what `Method` does not.
        let Ok(method) = Method::from_bytes(method.as_bytes()) else { return Prepare::HandOff };
        let (path, query) = match target.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (target, None),
        };
        let head = Head {
            method: &method,
            path,
            query,
            target_len: target.len(),
            version: http::Version::HTTP_11,
            authority: None,
            headers: Headers::Raw(parsed.headers),
            peer,
            scheme: "http",
        };
        let inspection = self.pipeline.inspect(&head);
        let body_follows = inspection.body_follows;
        let inspected = match inspection.verdict {
            Ok(inspected) => inspected,
            Err(error) => {
                let outbound = Outbound::new(inspection.id, &method, path, peer, started);
                return Prepare::Refuse { outbound, error, head_len, close: body_follows };
            }
        };
        let facts = &inspected.facts;
        // Framing the relay does not follow itself is the general server's.
        if facts.transfer_encoding || facts.expect || facts.upgrade {
            return Prepare::HandOff;
        }
        let body_len = facts.content_length.unwrap_or(0);
        let route = match inspected.route {
            // A cached route's requests go through the router path's cache step.
            Route::Pass(route)
                if self.relays && route.access.as_ref().is_none_or(|a| a.cache().is_none()) =>
            {
                route
            }
            _ => return Prepare::Routed { head_len, body_len, close: facts.close },
        };

        // The upstream head, written straight from the client's. The `Host` line and the
        // deadline go in per attempt.
        let mut upstream_head = Vec::with_capacity(head_len + 256);
        upstream_head.extend_from_slice(method.as_str().as_bytes());
        upstream_head.push(b' ');
        let target_at = upstream_head.len();
        route.push_upstream_path(&mut upstream_head, &inspected.path, query);
        let target_end = upstream_head.len();
        upstream_head.extend_from_slice(b" HTTP/1.1\r\n");
        inspected.forwarded.render_raw(
            &mut upstream_head,
            parsed.headers,
            facts,
            &inspection.id,
            route.forward_authorization,
        );
        if body_len > 0 {
            push_length(&mut upstream_head, body_len);
        }
        Prepare::Ready(Prepared {
            head_len,
            route: route.clone(),
            upstream_head,
            target: target_at..target_end,
            body_len,
            close: facts.close,
            method: method.clone(),
            authorization: facts.authorization.map(Bytes::copy_from_slice),
            api_key: facts.api_key.map(Bytes::copy_from_slice),
            client_addr: inspected.forwarded.client,
            outbound: Outbound::new(inspection.id, &method, &inspected.path, peer, started),
        })
    }

    /// What the relay makes of `bytes` as a request head from a peer at 127.0.0.1: the complete
    /// upstream head it would send (with a `Host` line and the final CRLF), or `None` when it
    /// would not relay it (refused, incomplete, or the general server's).
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn upstream_head(&self, bytes: &[u8]) -> Option<Vec<u8>> {
        let peer = self.pipeline.peer(std::net::IpAddr::from([127, 0, 0, 1]));
        let Prepare::Ready(prepared) = self.prepare(bytes, &peer, std::time::Instant::now()) else {
            return None;
        };
        let mut head = prepared.upstream_head;
        head.extend_from_slice(b"host: upstream.test\r\n\r\n");
        Some(head)
    }

    /// Admits and relays one prepared request; returns what comes next.
    async fn relay<S: ClientIo>(
        &self,
        client: &mut Client<S>,
        request: Prepared,
        started: Instant,
        slow_head: bool,
    ) -> Next {
        let Prepared {
            head_len,
            route,
            mut upstream_head,
            target,
            body_len,
            method,
            authorization,
            api_key,
            client_addr,
            mut outbound,
            ..
        } = request;
        client.buf.drain(..head_len);
        // A body the client still has to send is unread when we answer early: close then.
        let body_pending = body_len > 0;
        let (authorization, api_key) = (authorization.as_deref(), api_key.as_deref());
        // Admitted at once (an open route) after a head that came in one read, the request is
        // still at `started`: no clock read. A head that trickled in took its own time, which
        // is not the upstream's to lose.
        let (verdict, admitted_at) =
            match self.pipeline.admit_anonymous(&route, authorization, api_key) {
                Some(verdict) if !slow_head => (verdict, started),
                Some(verdict) => (verdict, Instant::now()),
                None => {
                    let credentials = (authorization, api_key);
                    let admitted =
                        self.pipeline.admit_pass(&route, credentials, client_addr, &mut outbound);
                    (admitted.await, Instant::now())
                }
            };
        match verdict {
            Verdict::Admit(Some(principal)) => render_identity_raw(&mut upstream_head, &principal),
            Verdict::Admit(None) => {}
            Verdict::Refuse(error) => {
                return self.answer(client, error.into_response(), outbound, body_pending).await;
            }
            Verdict::Answer(response) => {
                return self.answer(client, response, outbound, body_pending).await;
            }
        }
        let deadline =
            (started + self.pipeline.limits().request_timeout).min(admitted_at + route.timeout);
        // The body bytes already read go out with the head, in one write.
        let in_buf = usize::try_from(body_len).unwrap_or(usize::MAX).min(client.buf.len());
        let body_rest = body_len - in_buf as u64;
        let pool = &self.pools[route.index];
        let cluster = route.upstream.cluster();
        // Only consistent hashing reads the key; the others should not pay for a copy.
        let key = if cluster.policy().balance == Balance::ConsistentHash {
            std::str::from_utf8(&upstream_head[target]).unwrap_or_default().to_owned()
        } else {
            String::new()
        };
        // A request whose whole body is in hand can be sent again; one still streaming from
        // the client is sent once.
        let idempotent = method.is_idempotent() && body_rest == 0;
        let call = Call {
            idempotent,
            read: idempotent && (method == Method::GET || method == Method::HEAD),
            key: &key,
            deadline,
        };
        let exchange = Exchange {
            pool,
            name: route.upstream.name(),
            head: &upstream_head,
            body: &client.buf[..in_buf],
            body_rest,
            is_head: method == Method::HEAD,
            idempotent,
        };
        // Timed only for the access log.
        let asked = outbound.logs().then(Instant::now);
        let timer =
            client.calls.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        let answered = if body_rest == 0 {
            // A client that leaves while its answer is awaited takes the upstream call with
            // it (nginx's `proxy_ignore_client_abort off`).
            let call = exchange.run(cluster, call, timer.as_mut(), None::<&mut S>);
            match unless_client_leaves(&client.stream, &mut client.watch, call).await {
                Some(answered) => answered,
                None => {
                    outbound.finish(499);
                    return Next::Close;
                }
            }
        } else {
            exchange.run(cluster, call, timer.as_mut(), Some(&mut client.stream)).await
        };
        client.buf.drain(..in_buf);
        let response = match answered {
            Ok(response) => response,
            Err(error) => {
                return self.answer(client, error.into_response(), outbound, body_rest > 0).await;
            }
        };
        let status = response.status;
        let mut outbound = outbound;
        if let Some(asked) = asked {
            outbound.set_upstream(&response.endpoint, asked.elapsed());
        }
        let next =
            upstream::forward_response(pool, response, client, &mut outbound, route.timeout).await;
        outbound.finish_at(status, client.answered_at.map(Instant::into_std));
        next
    }

    /// Sends an answer of the gateway's own (a refusal, an error, or the edge's own answer).
    async fn answer<S: ClientIo>(
        &self,
        client: &mut Client<S>,
        response: axum::response::Response,
        outbound: Outbound,
        close: bool,
    ) -> Next {
        let close = close || client.draining();
        let status = response.status().as_u16();
        let sent = upstream::respond(&mut client.stream, response, &outbound, close).await;
        outbound.finish(status);
        match sent {
            Ok(()) if !close => Next::KeepAlive,
            _ => Next::Close,
        }
    }
}

/// One relayed request as the attempts of `Cluster::call` see it.
struct Exchange<'a> {
    pool: &'a pool::Upstream,
    name: &'a str,
    /// The upstream head but for the per-attempt lines.
    head: &'a [u8],
    /// The body bytes read with the head.
    body: &'a [u8],
    /// The body bytes still to come from the client.
    body_rest: u64,
    is_head: bool,
    idempotent: bool,
}

impl Exchange<'_> {
    /// Runs the call: every attempt writes the head with its endpoint's `Host` and the time
    /// left, then the body; `client` (when the body is still streaming) is read by the one
    /// attempt a non-idempotent call makes.
    async fn run<S: ClientIo>(
        &self,
        cluster: &crate::upstream::cluster::Cluster,
        call: Call<'_>,
        timer: Pin<&mut tokio::time::Sleep>,
        mut client: Option<&mut S>,
    ) -> Result<UpstreamResponse, EdgeError> {
        let attempt = |endpoint: &Arc<Endpoint>, deadline: Instant| {
            // Only the deadline line is written per attempt (on the stack); the head, the
            // endpoint's `Host` line and the body bytes go out from where they are.
            let mut deadline_line = Deadline::default();
            // One clock read per attempt: the time left, and the age of a pooled connection.
            let now = Instant::now();
            deadline_line.write(crate::deadline::millis(deadline.saturating_duration_since(now)));
            let client = client.take();
            let endpoint = endpoint.clone();
            async move {
                let line = deadline_line.as_bytes();
                let exchanged =
                    upstream::exchange(self, endpoint, line, client, deadline, now).await;
                exchanged.map_err(|failure| match failure {
                    // Not the endpoint's doing: no verdict on it.
                    Failure::Client => {
                        AttemptError { failure: None, error: EdgeError::invalid_body() }
                    }
                    Failure::ClientSlow => {
                        AttemptError { failure: None, error: EdgeError::body_timeout() }
                    }
                    Failure::Connect(error) => AttemptError {
                        failure: Some(EndpointFailure::Connect),
                        error: EdgeError::upstream_unavailable(self.name, error),
                    },
                    Failure::Upstream(error) => AttemptError {
                        failure: Some(EndpointFailure::Reset),
                        error: EdgeError::upstream_unavailable(self.name, error),
                    },
                })
            }
        };
        // Boxed: the attempt loop's state is large, and a connection's task is sized for its
        // largest state — boxing it keeps idle keep-alive connections small, at one
        // allocation per relayed request.
        Box::pin(cluster.call_timed(call, timer, attempt)).await
    }
}

/// The per-attempt deadline line and the head's final CRLF, built without an allocation.
struct Deadline {
    line: [u8; 64],
    len: usize,
}

impl Default for Deadline {
    fn default() -> Self {
        Self { line: [0; 64], len: 0 }
    }
}

impl Deadline {
    fn write(&mut self, millis: u64) {
        let name = crate::deadline::HEADER.as_bytes();
        let mut digits = [0_u8; 20];
        let digits = decimal(&mut digits, millis);
        for part in [name, b": ", digits, b"\r\n\r\n"] {
            self.line[self.len..self.len + part.len()].copy_from_slice(part);
            self.len += part.len();
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.line[..self.len]
    }
}

fn push_length(head: &mut Vec<u8>, length: u64) {
    head.extend_from_slice(b"content-length: ");
    push_decimal(head, length);
    head.extend_from_slice(b"\r\n");
}

/// A client connection being served.
pub(crate) struct Client<S> {
    stream: S,
    /// What has been read of the client's requests and not yet used.
    buf: Vec<u8>,
    peer: Peer,
    /// Turns `true` when the gateway drains: the response in progress is the last.
    stop: watch::Receiver<bool>,
    /// When to start watching for the client leaving while an upstream is awaited; one timer
    /// per connection, re-armed only once it has fired.
    watch: Pin<Box<tokio::time::Sleep>>,
    /// The deadline timer of the connection's upstream calls, made at the first and moved
    /// from one call to the next ([`Cluster::call_timed`]).
    ///
    /// [`Cluster::call_timed`]: crate::upstream::cluster::Cluster::call_timed
    calls: Option<Pin<Box<tokio::time::Sleep>>>,
    /// When the last relayed answer was sent, read once for the upstream pool and kept as the
    /// start of the idle spell that follows (`None`: read the clock then).
    answered_at: Option<Instant>,
}

impl<S> Client<S> {
    /// Whether the gateway is draining. `stop` only ever changes from `false` to `true`, so a
    /// change is the answer: an atomic load per response, where reading the value would take
    /// the channel's lock.
    fn draining(&self) -> bool {
        self.stop.has_changed().unwrap_or(true)
    }
}

pub(crate) enum Next {
    KeepAlive,
    Close,
    HandOff,
}

enum Prepare {
    Ready(Prepared),
    Partial,
    HandOff,
    /// A request for the router, of `head_len + body_len` bytes; `close` when the client
    /// asked to close after it.
    Routed {
        head_len: usize,
        body_len: u64,
        close: bool,
    },
    /// The pipeline refused the request: answer it; `close` when a body we will not read
    /// follows its head.
    Refuse {
        outbound: Outbound,
        error: EdgeError,
        head_len: usize,
        close: bool,
    },
}

struct Prepared {
    head_len: usize,
    route: Arc<PassRoute>,
    /// The upstream request head so far: request line and headers, without the per-attempt
    /// lines and the final CRLF.
    upstream_head: Vec<u8>,
    /// Where the request target is in `upstream_head`.
    target: std::ops::Range<usize>,
    body_len: u64,
    close: bool,
    method: Method,
    authorization: Option<Bytes>,
    api_key: Option<Bytes>,
    /// The client's address as the pipeline defines it (what rate limits key on).
    client_addr: std::net::IpAddr,
    outbound: Outbound,
}

/// How long the relay waits for an upstream answer before it starts watching for the client
/// leaving: most answers come sooner, and the watch costs a syscall.
const WATCH_CLIENT_AFTER: Duration = Duration::from_millis(20);

/// How long a closing connection reads and drops what its client still sends (nginx's
/// `lingering_close`; its `lingering_time` is 30 s, `lingering_timeout` 5 s).
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Closes the connection the way nginx's lingering close does: our side is shut for writing,
/// so the client sees the end of the answer; what it still sends (the rest of a body the
/// gateway refused unread) is read and dropped for a bounded moment. Closing with unread bytes
/// would make the kernel reset the connection, and a reset can destroy the answer in the
/// client's buffers before the client has read it.
async fn linger<S: ClientIo>(stream: &mut S) {
    use tokio::io::AsyncWriteExt as _;
    if stream.shutdown().await.is_err() {
        return;
    }
    let deadline = Instant::now() + LINGER_TIME;
    let mut sink = vec![0_u8; 16 * 1024];
    while let Ok(Ok(n)) = timeout_at(deadline, stream.read(&mut sink)).await {
        if n == 0 {
            return;
        }
    }
}

/// Runs `work` (waiting for the upstream) unless the client closes its connection first; `None`
/// then, and `work` is dropped with its upstream connection. Bytes from the client (a pipelined
/// request) end the watch: they wait their turn.
///
/// The watch starts once `timer` fires. It is re-armed only when it has fired already, so on a
/// busy connection it may fire sooner than `WATCH_CLIENT_AFTER` into a request: that costs one
/// peek, and saves arming and cancelling a timer on every request.
async fn unless_client_leaves<S: ClientIo, F: Future>(
    client: &S,
    timer: &mut Pin<Box<tokio::time::Sleep>>,
    work: F,
) -> Option<F::Output> {
    if timer.is_elapsed() {
        timer.as_mut().reset(Instant::now() + WATCH_CLIENT_AFTER);
    }
    let watch = async {
        timer.as_mut().await;
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

#[cfg(test)]
mod tests;
