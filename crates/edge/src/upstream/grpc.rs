//! The gRPC upstream: a lazily connected tonic channel per endpoint, chosen per call by the
//! upstream's cluster (balancing, breakers, retries of idempotent reads), the remaining deadline
//! sent as `grpc-timeout`, and gRPC statuses mapped to [`EdgeError`]s.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    sync::{Arc, Mutex, PoisonError},
};

use tonic::{
    Code, Status,
    transport::{Channel, Endpoint},
};
use tracing::Instrument;

use super::cluster::{self, AttemptError, Call, Classify, Cluster, Failure, Policy};
use crate::{
    config::{ConfigError, GatewayConfig, UpstreamConfig},
    deadline,
    error::EdgeError,
    request_id,
};

/// A named gRPC upstream. Cheap to clone: clones share the channels and their HTTP/2
/// connections.
#[derive(Clone)]
pub struct GrpcUpstream {
    cluster: Arc<Cluster>,
    /// The channel to each endpoint (by URL), made on first use: connections live with their
    /// transport, the cluster only knows endpoints.
    channels: Arc<Mutex<HashMap<Box<str>, Channel>>>,
}

impl<T> Classify for tonic::Response<T> {
    fn failure(&self) -> Option<Failure> {
        None
    }
}

// === impl GrpcUpstream ===

impl GrpcUpstream {
    pub(super) fn new(
        gateway: &'static str,
        name: &str,
        upstream: &UpstreamConfig,
        config: &GatewayConfig,
    ) -> Result<Self, ConfigError> {
        for e in &upstream.endpoints {
            Endpoint::from_shared(e.clone()).map_err(|err| ConfigError::Invalid {
                key: format!("upstreams.{name}.endpoints"),
                message: format!("`{e}`: {err}"),
            })?;
        }
        if upstream.health_check.is_some() {
            return Err(ConfigError::Invalid {
                key: format!("upstreams.{name}.health_check"),
                message: "active health checks are HTTP GETs; a gRPC upstream relies on its \
                          breakers and outlier ejection"
                    .into(),
            });
        }
        let policy = Policy::from_config(upstream, config);
        let cluster = Cluster::new(gateway, name, policy, &upstream.endpoints);
        if let Some(discovery) = &upstream.discovery {
            cluster.discover(discovery)?;
        }
        Ok(Self { cluster, channels: Arc::default() })
    }

    /// The upstream's configured name.
    pub fn name(&self) -> &str {
        self.cluster.name()
    }

    pub(crate) fn cluster(&self) -> &Arc<Cluster> {
        &self.cluster
    }

    /// Runs one idempotent call (a read): `rpc` names the method in traces, `message` is the
    /// request message, and `call` sends it on the channel of the endpoint picked, e.g.
    ///
    /// ```ignore
    /// inventory.call("GetStock", GetStockRequest { sku }, |channel, request| async move {
    ///     InventoryClient::new(channel).get_stock(request).await
    /// })
    /// ```
    ///
    /// Each attempt's request carries the remaining deadline (`grpc-timeout`), the request id
    /// and the caller's identity. A call that is unavailable on one endpoint may be retried on
    /// another within the retry budget; use [`GrpcUpstream::call_once`] for calls that must
    /// not be repeated.
    pub async fn call<M, T, F, Fut>(
        &self,
        rpc: &'static str,
        message: M,
        call: F,
    ) -> Result<T, EdgeError>
    where
        M: Clone,
        F: Fn(Channel, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.run(rpc, message, call, true).await
    }

    /// [`GrpcUpstream::call`] for a call that is not idempotent: one attempt, never repeated.
    pub async fn call_once<M, T, F, Fut>(
        &self,
        rpc: &'static str,
        message: M,
        call: F,
    ) -> Result<T, EdgeError>
    where
        M: Clone,
        F: Fn(Channel, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        self.run(rpc, message, call, false).await
    }

    async fn run<M, T, F, Fut>(
        &self,
        rpc: &'static str,
        message: M,
        call: F,
        idempotent: bool,
    ) -> Result<T, EdgeError>
    where
        M: Clone,
        F: Fn(Channel, tonic::Request<M>) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let name = self.name();
        let span = tracing::info_span!("upstream", upstream = %name, rpc);
        let deadline = deadline::for_call(self.cluster.policy().timeout);
        let connect_timeout = self.cluster.policy().connect_timeout;
        let attempt = |endpoint: &Arc<cluster::Endpoint>, deadline: tokio::time::Instant| {
            let channel = self.channel(endpoint, connect_timeout);
            let request = self.request(message.clone(), deadline);
            let sent = channel.map(|channel| call(channel, request));
            async move {
                match sent {
                    Ok(sent) => sent.await.map_err(|status| map_status(name, status)),
                    Err(error) => Err(AttemptError { failure: None, error }),
                }
            }
        };
        let call = Call { idempotent, read: idempotent, key: rpc, deadline };
        self.cluster.call(call, attempt).instrument(span).await.map(tonic::Response::into_inner)
    }

    /// The endpoint's channel, connected lazily on first use and shared by every call after it.
    fn channel(
        &self,
        endpoint: &cluster::Endpoint,
        connect_timeout: std::time::Duration,
    ) -> Result<Channel, EdgeError> {
        let mut channels = self.channels.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(channel) = channels.get(endpoint.url()) {
            return Ok(channel.clone());
        }
        let channel = Endpoint::from_shared(endpoint.url().to_owned())
            .map_err(EdgeError::internal)?
            .connect_timeout(connect_timeout)
            .tcp_nodelay(true)
            .connect_lazy();
        channels.insert(endpoint.url().into(), channel.clone());
        Ok(channel)
    }

    /// Wraps a message in a request carrying the remaining deadline (`grpc-timeout`), the
    /// request id and the caller's identity metadata.
    fn request<T>(&self, message: T, deadline: tokio::time::Instant) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(deadline.saturating_duration_since(tokio::time::Instant::now()));
        if let Some(id) = request_id::current()
            && let Ok(value) = id.as_str().parse()
        {
            request.metadata_mut().insert(request_id::HEADER, value);
        }
        if let Some(caller) = crate::access::caller() {
            for (name, value) in crate::access::identity_headers(&caller) {
                if let Ok(value) = value.to_str().unwrap_or_default().parse() {
                    request.metadata_mut().insert(name.as_str(), value);
                }
            }
        }
        request
    }
}

impl fmt::Debug for GrpcUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcUpstream").field("cluster", &self.cluster).finish()
    }
}

/// A gRPC status as an attempt outcome: whether the endpoint failed (for breakers and retries)
/// and the error the caller sees.
fn map_status(name: &str, status: Status) -> AttemptError {
    let (failure, error) = match status.code() {
        Code::NotFound => (None, EdgeError::not_found("the requested resource does not exist")),
        Code::DeadlineExceeded => (Some(Failure::Timeout), EdgeError::upstream_timeout(name)),
        // Connection refused or reset, or a server shedding load: another endpoint may do.
        Code::Unavailable => (Some(Failure::Reset), EdgeError::upstream_unavailable(name, status)),
        Code::Internal | Code::Unknown | Code::DataLoss => {
            (Some(Failure::Status(500)), EdgeError::upstream_failed(name, status))
        }
        _ => (None, EdgeError::upstream_failed(name, status)),
    };
    AttemptError { failure, error }
}
