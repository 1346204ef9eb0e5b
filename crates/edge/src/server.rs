//! Serving a router: HTTP/1.1 and HTTP/2 on one port, a header-read timeout against slowloris
//! clients, the peer address for `X-Forwarded-For`, and graceful shutdown that drains
//! in-flight requests.
//!
//! This is hyper-util's connection builder rather than `axum::serve`, because `axum::serve`
//! has no header-read timeout and hyper only enforces one when a timer is set.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto::Builder, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::{
    net::TcpListener,
    sync::{mpsc, watch},
};
use tower::ServiceExt;

use crate::{
    config::Limits,
    connection::{Guarded, Slots, Timeouts},
    pipeline::router::Front,
    relay::{ClientIo, Ended, OneRequest, Routed},
    stack::Gateway,
};

/// How a gateway serves its connections: the limits they live under (timeouts, HTTP/2
/// settings, drain time) and its share of the process's connections, shared by its workers.
#[derive(Clone, Debug)]
pub struct Serving {
    limits: Limits,
    slots: Slots,
}

impl Serving {
    /// `limits` for gateway `gateway`, one of `gateways` gateways in this process (they share
    /// its open-file limit unless `limits.max_connections` is set).
    pub fn new(gateway: &'static str, limits: &Limits, gateways: usize) -> Self {
        Self { limits: limits.clone(), slots: Slots::for_limits(gateway, limits, gateways) }
    }

    /// The default limits but a header-read timeout of `header_read_timeout` (tests, benches).
    pub fn with_header_read_timeout(header_read_timeout: Duration) -> Self {
        let limits = Limits { header_read_timeout, ..Limits::default() };
        Self::new("test", &limits, 1)
    }
}

/// Whether the gateway is draining (shutting down): `/readyz` answers 503 from the moment it
/// is, so load balancers stop sending before the listener goes. Put in every request's
/// extensions by the server.
#[derive(Clone, Debug, Default)]
pub struct Draining(Arc<AtomicBool>);

impl Draining {
    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// A gateway already draining, for tests of what depends on it.
    #[cfg(test)]
    pub(crate) fn started() -> Self {
        Self(Arc::new(AtomicBool::new(true)))
    }
}

/// Serves `app` on `listener` until `shutdown` resolves, then stops accepting and drains:
/// readiness turns false first, idle connections close, busy HTTP/1.1 ones get
/// `Connection: close` on their response, HTTP/2 ones a GOAWAY, and in-flight requests get
/// `limits.drain_timeout` to finish.
///
/// With a [`Relay`](crate::relay::Relay) (every gateway behind the pipeline), each connection
/// goes to the relay first: it serves HTTP/1.1 itself, with this server's service for the
/// router's requests ([`Routed`]), and hands the connection over for good only for what it does
/// not frame (HTTP/2, upgrades, chunked or `Expect` request bodies, HTTP/1.0).
pub async fn serve(
    listener: TcpListener,
    app: impl Into<Gateway>,
    serving: Serving,
    shutdown: impl Future<Output = ()>,
) {
    let app: Gateway = app.into();
    let limits = &serving.limits;
    let draining = Draining::default();
    let services = Services::new(&app, draining.clone());
    let builder = Arc::new(builder(limits, services.front().is_some()));
    let http1 = Arc::new(one_at_a_time(limits));
    let timeouts = Timeouts::new(limits);
    let graceful = GracefulShutdown::new();
    // Relay connections drain on their own: each holds a sender, and the drain waits until
    // every one has been dropped.
    let (stop, stopping) = watch::channel(false);
    let (in_flight, mut drained) = mpsc::channel::<()>(1);
    let mut shutdown = std::pin::pin!(shutdown);

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(error) => {
                    // Running out of file descriptors is transient: back off instead of
                    // spinning on accept, and keep serving the connections we have.
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Over the cap, the connection is closed at once (and counted): the process keeps
        // descriptors for the connections it serves and for the other gateways.
        let Some(slot) = serving.slots.take() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let stream = Guarded::new(stream, timeouts);
        match app.relay() {
            None => {
                let service = TowerToHyperService::new(services.connection(peer));
                let connection =
                    builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                let connection = graceful.watch(connection.into_owned());
                tokio::spawn(async move {
                    let _slot = slot;
                    if let Err(error) = connection.await {
                        tracing::debug!(%peer, error = %error, "connection closed with an error");
                    }
                });
            }
            Some(relay) => {
                let (relay, builder, watcher) =
                    (relay.clone(), builder.clone(), graceful.watcher());
                let mut router = OneAtATime {
                    services: services.clone(),
                    peer,
                    http1: http1.clone(),
                    service: None,
                };
                let (stopping, in_flight) = (stopping.clone(), in_flight.clone());
                tokio::spawn(async move {
                    let (_slot, _in_flight) = (slot, in_flight);
                    let Ended::HandOff(stream) =
                        relay.serve_connection(stream, peer, stopping, &mut router).await
                    else {
                        return;
                    };
                    let service = router.service.take();
                    let service = service.unwrap_or_else(|| router.services.connection(peer));
                    let service = TowerToHyperService::new(service);
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    if let Err(error) = watcher.watch(connection.into_owned()).await {
                        tracing::debug!(%peer, error = %error, "connection closed with an error");
                    }
                });
            }
        }
    }

    // Readiness first, so a load balancer probing over a kept-alive connection stops sending.
    draining.0.store(true, Ordering::Release);
    drop(listener);
    let _ = stop.send(true);
    drop(in_flight);
    let drain = async {
        tokio::join!(graceful.shutdown(), drained.recv());
    };
    tokio::select! {
        () = drain => tracing::debug!("drained"),
        () = tokio::time::sleep(limits.drain_timeout) => tracing::warn!("drain timed out"),
    }
}

/// The general server's connection builder under `limits`: HTTP/1.1 and HTTP/2 on one port.
fn builder(limits: &Limits, pipeline: bool) -> Builder<TokioExecutor> {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .initial_stream_window_size(limits.h2_stream_window_bytes)
        .initial_connection_window_size(limits.h2_connection_window_bytes)
        .max_pending_accept_reset_streams(limits.h2_max_pending_resets)
        // Streams the server itself resets for a client's protocol errors: hyper's default
        // bound, made explicit so an upgrade cannot silently lift it.
        .max_local_error_reset_streams(Some(1024));
    if pipeline {
        // hyper's own limits sit above the pipeline's, so a head over the configured limits
        // reaches the pipeline and gets the same problem answer as on the relay; only a head
        // beyond twice the limit is refused by hyper itself (431 without a body).
        builder
            .http1()
            .max_headers(crate::relay::MAX_FIELDS)
            .max_buf_size((limits.max_head_bytes * 2).max(8192));
        builder.http2().max_header_list_size(
            u32::try_from(limits.max_head_bytes * 2 + 32 * 128).unwrap_or(u32::MAX),
        );
    }
    builder
}

/// The HTTP/1.1 server of the router's requests on connections the relay keeps: one request
/// per use (see [`OneRequest`]), handing the connection back unshut. The relay has read and
/// checked the head, so no head timeout here; the head limits stay for hyper's parse.
fn one_at_a_time(limits: &Limits) -> hyper::server::conn::http1::Builder {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .max_headers(crate::relay::MAX_FIELDS)
        .max_buf_size((limits.max_head_bytes * 2).max(8192));
    builder
}

/// [`Routed`]: the general server, one router request at a time, on a connection the relay
/// keeps.
struct OneAtATime {
    services: Services,
    peer: SocketAddr,
    http1: Arc<hyper::server::conn::http1::Builder>,
    /// Made for the connection's first router request, then reused.
    service: Option<PerConnection>,
}

impl Routed for OneAtATime {
    fn call(
        &mut self,
        request: http::Request<axum::body::Body>,
    ) -> Pin<Box<dyn Future<Output = axum::response::Response> + Send>> {
        let (services, peer) = (&self.services, self.peer);
        let service = self.service.get_or_insert_with(|| services.connection(peer));
        let served = service.serve(request);
        Box::pin(async move {
            match served.await {
                Ok(response) => response,
                Err(infallible) => match infallible {},
            }
        })
    }

    fn serve_one<'a, S: ClientIo>(
        &'a mut self,
        request: OneRequest<'a, S>,
    ) -> impl Future<Output = bool> + Send + 'a {
        // Whether the response ends the connection: hyper says so on the wire, and the relay
        // must then not read another request.
        let last = Arc::new(AtomicBool::new(false));
        let draining = self.services.draining.clone();
        let said_last = last.clone();
        let answered = request.answered();
        let (services, peer) = (&self.services, self.peer);
        let service = self.service.get_or_insert_with(|| services.connection(peer));
        let service =
            service.clone().map_response(move |mut response: axum::response::Response| {
                if draining.is_draining() {
                    response
                        .headers_mut()
                        .insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
                }
                let closes = response.headers().get_all(http::header::CONNECTION).iter().any(|v| {
                    crate::relay::tokens(v.as_bytes()).any(|t| t.eq_ignore_ascii_case(b"close"))
                });
                if closes {
                    said_last.store(true, Ordering::Relaxed);
                }
                response.map(|body| Answered { body, answered })
            });
        let connection = self
            .http1
            .serve_connection(TokioIo::new(request), TowerToHyperService::new(service))
            .without_shutdown();
        let peer = self.peer;
        async move {
            match connection.await {
                // Reusable only when the request was read to its end and hyper kept nothing.
                Ok(parts) => {
                    parts.read_buf.is_empty()
                        && parts.io.inner().finished()
                        && !last.load(Ordering::Relaxed)
                }
                Err(error) => {
                    tracing::debug!(%peer, error = %error, "connection closed with an error");
                    false
                }
            }
        }
    }
}

/// A response body that says when it has been dropped: hyper drops it once it has written
/// it, and [`OneRequest`] then ends the request's stream after the last flush.
struct Answered {
    body: axum::body::Body,
    answered: Arc<AtomicBool>,
}

impl Drop for Answered {
    fn drop(&mut self) {
        self.answered.store(true, Ordering::Release);
    }
}

impl http_body::Body for Answered {
    type Data = bytes::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// What the general server needs to make each connection's service: the pipeline in front of
/// the router, or a bare router served as it is. Cloned per connection (reference counts).
#[derive(Clone)]
struct Services {
    kind: ServicesKind,
    draining: Draining,
}

#[derive(Clone)]
enum ServicesKind {
    Pipeline(Front),
    Bare(axum::Router),
}

impl Services {
    fn new(app: &Gateway, draining: Draining) -> Self {
        let kind =
            app.front().map_or_else(|| ServicesKind::Bare(app.router()), ServicesKind::Pipeline);
        Self { kind, draining }
    }

    fn front(&self) -> Option<&Front> {
        match &self.kind {
            ServicesKind::Pipeline(front) => Some(front),
            ServicesKind::Bare(_) => None,
        }
    }

    /// The service of one connection from `peer` (its peer worked out once).
    fn connection(&self, peer: SocketAddr) -> PerConnection {
        let kind = match &self.kind {
            ServicesKind::Pipeline(front) => {
                Connection::Pipeline(front.clone(), Arc::new(front.pipeline.peer(peer.ip())))
            }
            ServicesKind::Bare(router) => Connection::Bare(router.clone()),
        };
        PerConnection { kind, draining: self.draining.clone(), peer }
    }
}

/// The general server's service for one connection.
#[derive(Clone)]
struct PerConnection {
    kind: Connection,
    draining: Draining,
    peer: SocketAddr,
}

#[derive(Clone)]
enum Connection {
    /// The pipeline in front of the router, with the pipeline's view of the peer.
    Pipeline(Front, Arc<crate::pipeline::Peer>),
    Bare(axum::Router),
}

impl tower::Service<http::Request<Incoming>> for PerConnection {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Incoming>) -> Self::Future {
        self.serve(request.map(axum::body::Body::new))
    }
}

impl PerConnection {
    /// Serves `request`, whatever read it (hyper, or the relay for the router's requests).
    fn serve(
        &self,
        mut request: http::Request<axum::body::Body>,
    ) -> Pin<Box<dyn Future<Output = Result<axum::response::Response, Infallible>> + Send>> {
        request.extensions_mut().insert(ConnectInfo(self.peer));
        request.extensions_mut().insert(self.draining.clone());
        match &self.kind {
            Connection::Pipeline(front, client) => {
                let (front, client) = (front.clone(), client.clone());
                Box::pin(async move { Ok(front.serve(request, &client).await) })
            }
            Connection::Bare(router) => Box::pin(router.clone().oneshot(request)),
        }
    }
}

/// Serves with `workers` threads, each running its own single-threaded runtime, its own
/// `SO_REUSEPORT` listener on `addr` and its own app from `make_app` — upstream pools included
/// — like nginx's worker processes: nothing is shared between cores on the request path, so
/// there is no work-stealing scheduler, no cross-core wake-up and no contended pool lock. The
/// kernel spreads new connections over the listeners.
///
/// Returns once every worker has drained after `shutdown` turned `true`. A worker that cannot
/// start (its app fails to build, its port is taken) fails the whole call. It blocks, and binds
/// through Tokio, so call it from `tokio::task::spawn_blocking`.
pub fn serve_workers<F, A, E>(
    addr: SocketAddr,
    workers: usize,
    make_app: F,
    serving: &Serving,
    shutdown: &watch::Receiver<bool>,
) -> std::io::Result<()>
where
    F: Fn() -> Result<A, E> + Send + Sync + 'static,
    A: Into<Gateway>,
    E: std::fmt::Display,
{
    let make_app = Arc::new(make_app);
    // SO_REUSEPORT would let a second process join this port's group silently (two `portico
    // serve` on one port, each getting half the connections): a plain bind first proves the
    // port is free, and names it when it is not.
    if addr.port() != 0 {
        drop(std::net::TcpListener::bind(addr).map_err(|e| bind_error(addr, &e))?);
    }
    // Bind every listener before serving on any, so a taken port fails start-up as a whole.
    // Port 0 means "any free port": the first listener picks it and the others share it.
    let first = reuseport_listener(addr)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..workers.max(1) {
        listeners.push(reuseport_listener(addr)?);
    }
    let threads = listeners
        .into_iter()
        .enumerate()
        .map(|(i, listener)| {
            let (make_app, mut shutdown, serving) =
                (make_app.clone(), shutdown.clone(), serving.clone());
            std::thread::Builder::new().name(format!("portico-worker-{i}")).spawn(
                move || -> std::io::Result<()> {
                    let runtime =
                        tokio::runtime::Builder::new_current_thread().enable_all().build()?;
                    runtime.block_on(async move {
                        let app = make_app().map_err(|e| std::io::Error::other(e.to_string()))?;
                        let listener = TcpListener::from_std(listener)?;
                        let stop = async move {
                            let _ = shutdown.wait_for(|stop| *stop).await;
                        };
                        serve(listener, app, serving, stop).await;
                        Ok(())
                    })
                },
            )
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    for thread in threads {
        thread.join().map_err(|_| std::io::Error::other("a worker panicked"))??;
    }
    Ok(())
}

fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = match addr {
        SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
        SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    #[cfg(unix)]
    socket.set_reuseport(true)?;
    socket.bind(addr).map_err(|e| bind_error(addr, &e))?;
    // `into_std` needs no runtime; each worker registers its listener with its own.
    let listener = socket.listen(4096)?.into_std()?;
    Ok(listener)
}

/// Binds `addr` (without SO_REUSEPORT: a port another process holds is an error), naming it in
/// the error so a taken port is obvious.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| bind_error(addr, &e))
}

fn bind_error(addr: SocketAddr, error: &std::io::Error) -> std::io::Error {
    let why = if error.kind() == std::io::ErrorKind::AddrInUse {
        "the address is in use (another process listens there)".to_owned()
    } else {
        error.to_string()
    };
    std::io::Error::new(error.kind(), format!("cannot listen on {addr}: {why}"))
}

#[cfg(test)]
mod tests {
    use axum::{Router, routing::get};
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
        sync::{Notify, oneshot},
    };

    use super::*;

    #[tokio::test]
    async fn shutdown_drains_in_flight_requests_and_stops_accepting() {
        let entered = Arc::new(Notify::new());
        let release = Arc::new(Notify::new());
        let router = {
            let (entered, release) = (entered.clone(), release.clone());
            Router::new().route(
                "/slow",
                get(move || async move {
                    entered.notify_one();
                    release.notified().await;
                    "finished"
                }),
            )
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = Serving::with_header_read_timeout(Duration::from_secs(5));
        let server = tokio::spawn(serve(listener, router, serving, async {
            let _ = stopped.await;
        }));

        let in_flight = tokio::spawn(async move {
            reqwest::get(format!("http://{addr}/slow")).await.unwrap().text().await.unwrap()
        });
        entered.notified().await;
        stop.send(()).unwrap();
        // Once the server stops accepting, new connections are refused…
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(addr).await.is_ok() {
            assert!(tokio::time::Instant::now() < deadline, "still accepting after shutdown");
            tokio::task::yield_now().await;
        }
        // …while the request already in flight still completes.
        release.notify_one();
        assert_eq!(in_flight.await.unwrap(), "finished");
        tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn workers_share_one_port_and_stop_together() {
        // Find a free port, then let two workers share it through SO_REUSEPORT.
        let addr = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
        let (stop, stopped) = watch::channel(false);
        let workers = tokio::task::spawn_blocking(move || {
            serve_workers(
                addr,
                2,
                || Ok::<_, String>(Router::new().route("/", get(|| async { "worker" }))),
                &Serving::with_header_read_timeout(Duration::from_secs(5)),
                &stopped,
            )
        });
        let client = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        let mut answers = 0;
        while answers < 20 {
            assert!(tokio::time::Instant::now() < deadline, "workers did not answer");
            // Fresh connections, so the kernel spreads them over both listeners.
            let response =
                client.get(format!("http://{addr}/")).header("connection", "close").send().await;
            if let Ok(response) = response {
                assert_eq!(response.text().await.unwrap(), "worker");
                answers += 1;
            } else {
                tokio::task::yield_now().await;
            }
        }
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(15), workers).await.unwrap().unwrap().unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_whose_app_fails_to_build_fails_the_start() {
        let (_stop, stopped) = watch::channel(false);
        let result = tokio::task::spawn_blocking(move || {
            serve_workers(
                "127.0.0.1:0".parse().unwrap(),
                2,
                || Err::<Router, _>("no upstream named `catalog`"),
                &Serving::with_header_read_timeout(Duration::from_secs(5)),
                &stopped,
            )
        })
        .await
        .unwrap();
        assert!(result.unwrap_err().to_string().contains("catalog"));
    }

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_disconnected() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/", get(|| async { "ok" }));
        let server = tokio::spawn(serve(
            listener,
            router,
            Serving::with_header_read_timeout(Duration::from_millis(100)),
            std::future::pending(),
        ));
        let mut slowloris = TcpStream::connect(addr).await.unwrap();
        slowloris.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        let mut buf = Vec::new();
        // The server must end the connection on its own; without a header-read timeout this
        // read would wait forever (bounded here so the test fails instead of hanging).
        let read =
            tokio::time::timeout(Duration::from_secs(5), slowloris.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "the connection was left open");
        server.abort();
    }
}
