//! Serving a router: HTTP/1.1 and HTTP/2 on one port, a header-read timeout against slowloris
//! clients, the peer address for `X-Forwarded-For`, and graceful shutdown that drains
//! in-flight requests.
//!
//! This is hyper-util's connection builder rather than `axum::serve`, because `axum::serve`
//! has no header-read timeout and hyper only enforces one when a timer is set.

use std::{future::Future, net::SocketAddr, time::Duration};

use axum::{Router, extract::ConnectInfo};
use hyper::body::Incoming;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto::Builder, graceful::GracefulShutdown},
    service::TowerToHyperService,
};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// How long shutdown waits for in-flight requests before it gives up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_read_timeout: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
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
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = TowerToHyperService::new(tower::service_fn(
            move |mut request: http::Request<Incoming>| {
                request.extensions_mut().insert(ConnectInfo(peer));
                router.clone().oneshot(request)
            },
        ));
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
        let connection = graceful.watch(connection.into_owned());
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%peer, error = %error, "connection closed with an error");
            }
        });
    }

    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::debug!("drained"),
        () = tokio::time::sleep(DRAIN_TIMEOUT) => tracing::warn!("drain timed out"),
    }
}

/// Binds `addr`, naming it in the error so a taken port is obvious.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::routing::get;
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
        let server = tokio::spawn(serve(listener, router, Duration::from_secs(5), async {
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

    #[tokio::test]
    async fn a_client_that_never_finishes_its_headers_is_disconnected() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = Router::new().route("/", get(|| async { "ok" }));
        let server = tokio::spawn(serve(
            listener,
            router,
            Duration::from_millis(100),
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
