//! The gRPC upstream: one lazily connected tonic channel per upstream, the call deadline sent as
//! `grpc-timeout` and enforced locally, and gRPC statuses mapped to [`EdgeError`]s.

use std::{fmt, future::Future, sync::Arc, time::Duration};

use tonic::{
    Code, Status,
    transport::{Channel, Endpoint},
};
use tracing::Instrument;

use crate::{
    config::{ConfigError, GatewayConfig, UpstreamConfig},
    error::EdgeError,
    request_id,
};

/// A named gRPC upstream. Cheap to clone: clones share the channel and its HTTP/2 connections.
#[derive(Clone)]
pub struct GrpcUpstream {
    name: Arc<str>,
    endpoints: Arc<[String]>,
    timeout: Duration,
    channel: Channel,
}

// === impl GrpcUpstream ===

impl GrpcUpstream {
    pub(super) fn new(
        name: &str,
        upstream: &UpstreamConfig,
        config: &GatewayConfig,
    ) -> Result<Self, ConfigError> {
        let connect_timeout =
            upstream.connect_timeout.unwrap_or(config.defaults.upstream.connect_timeout);
        let endpoints = upstream
            .endpoints
            .iter()
            .map(|e| {
                Endpoint::from_shared(e.clone())
                    .map(|ep| ep.connect_timeout(connect_timeout).tcp_nodelay(true))
                    .map_err(|err| ConfigError::Invalid {
                        key: format!("upstreams.{name}.endpoints"),
                        message: format!("`{e}`: {err}"),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        // A single endpoint gets a plain lazy channel; several share a balanced one.
        let channel = match endpoints.as_slice() {
            [one] => one.connect_lazy(),
            _ => Channel::balance_list(endpoints.into_iter()),
        };
        Ok(Self {
            name: name.into(),
            endpoints: upstream.endpoints.clone().into(),
            timeout: config.upstream_timeout(upstream),
            channel,
        })
    }

    /// The upstream's configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn endpoints(&self) -> impl Iterator<Item = &str> {
        self.endpoints.iter().map(String::as_str)
    }

    /// The channel to build a generated client on, e.g. `InventoryClient::new(up.channel())`.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Wraps a message in a request carrying the call deadline (`grpc-timeout`), the request id
    /// and the caller's identity metadata.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
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

    /// Runs one call within the deadline and maps its status. `rpc` names the method in traces.
    pub async fn call<T, F>(&self, rpc: &'static str, call: F) -> Result<T, EdgeError>
    where
        F: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let span = tracing::info_span!("upstream", upstream = %self.name, rpc);
        match tokio::time::timeout(self.timeout, call).instrument(span).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(map_status(&self.name, status)),
            Err(_elapsed) => Err(EdgeError::upstream_timeout(&self.name)),
        }
    }
}

impl fmt::Debug for GrpcUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GrpcUpstream")
            .field("name", &self.name)
            .field("endpoints", &self.endpoints)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

fn map_status(name: &str, status: Status) -> EdgeError {
    match status.code() {
        Code::NotFound => EdgeError::not_found("the requested resource does not exist"),
        Code::DeadlineExceeded => EdgeError::upstream_timeout(name),
        Code::Unavailable => EdgeError::upstream_unavailable(name, status),
        _ => EdgeError::upstream_failed(name, status),
    }
}
