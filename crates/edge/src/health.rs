//! Liveness and readiness: `/healthz` says the process serves requests; `/readyz` says its
//! upstreams are reachable, so a load balancer sends traffic only to a gateway that can use it.

use std::time::Duration;

use axum::{
    Extension, Json,
    extract::State,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use tokio::net::TcpStream;

use crate::{
    access::{Access, Routes},
    error::EdgeError,
    server::Draining,
    upstream::Upstreams,
};

/// How long a readiness probe waits for one upstream endpoint to accept a connection.
const PROBE_TIMEOUT: Duration = Duration::from_millis(300);

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` or `ready`.
    pub status: &'static str,
}

/// The `/healthz` and `/readyz` routes, public: load balancers probe without credentials.
pub fn routes(upstreams: Upstreams) -> Routes {
    Routes::new()
        .get("/healthz", Access::public(), healthz)
        .get("/readyz", Access::public(), readyz)
        .with_state(upstreams)
}

/// Liveness: the process is up and serving.
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, description = "The gateway is alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: every upstream has at least one endpoint that accepts connections.
#[utoipa::path(get, path = "/readyz", tag = "operations",
    responses(
        (status = 200, description = "All upstreams are reachable", body = Health),
        (status = 503, description = "Some upstream is unreachable, or the gateway is draining", body = crate::error::Problem),
    ))]
pub async fn readyz(
    State(upstreams): State<Upstreams>,
    draining: Option<Extension<Draining>>,
) -> Response {
    // A draining gateway is not ready, whatever its upstreams: load balancers stop sending
    // while its in-flight requests finish.
    if draining.is_some_and(|Extension(draining)| draining.is_draining()) {
        return EdgeError::from_status(http::StatusCode::SERVICE_UNAVAILABLE, "draining")
            .with_detail("the gateway is shutting down")
            .into_response();
    }
    let endpoints = upstreams.endpoints();
    let probes = endpoints.iter().map(|(name, urls)| async move {
        let up = futures::future::join_all(urls.iter().map(|url| probe(url))).await;
        (name.as_str(), up.into_iter().any(|ok| ok))
    });
    let results = futures::future::join_all(probes).await;
    let down: Vec<&str> = results.iter().filter(|(_, up)| !up).map(|(name, _)| *name).collect();
    if down.is_empty() {
        return Json(Health { status: "ready" }).into_response();
    }
    // Upstream names stay in the log: the public answer must not map the internal architecture.
    tracing::warn!(?down, "not ready: upstreams unreachable");
    EdgeError::from_status(http::StatusCode::SERVICE_UNAVAILABLE, "not_ready")
        .with_detail(format!("{} upstream(s) unreachable", down.len()))
        .into_response()
}

async fn probe(endpoint: &str) -> bool {
    let Some(authority) = endpoint.parse::<http::Uri>().ok().and_then(|u| u.authority().cloned())
    else {
        return false;
    };
    let addr = format!("{}:{}", authority.host(), authority.port_u16().unwrap_or(80));
    matches!(tokio::time::timeout(PROBE_TIMEOUT, TcpStream::connect(addr)).await, Ok(Ok(_)))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use http::Request;

    use super::*;

    #[tokio::test]
    async fn a_draining_gateway_is_not_ready() {
        let upstreams = Upstreams::default();
        let request = |draining: Option<Draining>| {
            let mut request = Request::get("/readyz").body(Body::empty()).unwrap();
            if let Some(draining) = draining {
                request.extensions_mut().insert(draining);
            }
            request
        };
        let (app, _) = routes(upstreams).into_parts();
        let ready = portico_testkit::call(app.clone(), request(Some(Draining::default()))).await;
        assert_eq!(ready.status, 200, "no upstreams, not draining: ready");
        let draining = portico_testkit::call(app, request(Some(Draining::started()))).await;
        draining.assert_problem(503, "draining");
    }
}
