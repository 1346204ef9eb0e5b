//! Metrics: recorded through the `metrics` facade, so any recorder can take them, and served in
//! Prometheus text format at `/metrics` by every gateway.
//!
//! One Prometheus recorder is installed per process, the first time a gateway is built; the
//! gateways of `portico up` share it and tell their series apart by the `gateway` label.

use std::{net::SocketAddr, sync::OnceLock};

use axum::{
    extract::{ConnectInfo, Request},
    http::header,
    response::{IntoResponse, Response},
};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::{
    access::{Access, Routes},
    error::EdgeError,
};

/// Requests refused by authentication or authorisation, by gateway and reason.
pub const AUTH_FAILURES: &str = "portico_auth_failures_total";

/// The process's Prometheus handle, installing the recorder on first use. `None` when another
/// recorder was installed first (an embedding application's): its metrics go there instead.
pub fn handle() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            match metrics::set_global_recorder(recorder) {
                Ok(()) => {
                    metrics::describe_counter!(
                        AUTH_FAILURES,
                        "Requests refused by authentication or authorisation, by reason"
                    );
                    Some(handle)
                }
                Err(_) => {
                    tracing::info!("a metrics recorder is already installed; /metrics is empty");
                    None
                }
            }
        })
        .as_ref()
}

/// The `/metrics` route. It shares the client-facing port, so it answers loopback peers only
/// (a scraper on the same host or in the same pod); to anyone else it does not exist (404), and
/// partners — who must authenticate everywhere else — learn nothing from it.
pub fn routes() -> Routes {
    // Install now, so series recorded before the first scrape are kept.
    let _ = handle();
    Routes::new().get("/metrics", Access::public(), render)
}

async fn render(request: Request) -> Response {
    // No peer address means an in-process call (tests, `oneshot`), never a network client:
    // the server always records the peer.
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>();
    if peer.is_some_and(|ConnectInfo(peer)| !peer.ip().to_canonical().is_loopback()) {
        return EdgeError::no_route().into_response();
    }
    let body = handle().map(PrometheusHandle::render).unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

/// Counts one request refused by auth.
pub fn auth_failure(gateway: &'static str, reason: &'static str) {
    metrics::counter!(AUTH_FAILURES, "gateway" => gateway, "reason" => reason).increment(1);
}
