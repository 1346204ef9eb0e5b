//! Named upstreams: handlers ask for `catalog` or `inventory` and never build a URL or a channel
//! themselves. The protocol is a property of the upstream (from config), not of the handler.
//!
//! Each upstream is a [`cluster`] of endpoints (static, or kept current by [`discovery`]) behind
//! the policies of [`policy`]: every call, whatever its protocol, is balanced, limited, guarded by
//! per-endpoint breakers and outlier ejection, retried within a budget and cut at its deadline.

mod breaker;
mod budget;
pub(crate) mod cluster;
pub mod discovery;
mod grpc;
mod health_check;
mod http;
pub mod policy;

use std::{collections::HashMap, sync::Arc};

pub(crate) use self::http::client_error;
pub use self::{
    grpc::GrpcUpstream,
    http::{HttpUpstream, UpstreamRequest},
};
use crate::{
    config::{ConfigError, GatewayConfig, Protocol},
    error::EdgeError,
};

/// Every upstream of one gateway, built once from its configuration and cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Upstreams {
    http: Arc<HashMap<String, HttpUpstream>>,
    grpc: Arc<HashMap<String, GrpcUpstream>>,
}

// === impl Upstreams ===

impl Upstreams {
    /// Builds the clients of every configured upstream. Connections open lazily, so a backend
    /// that is down at start-up does not stop the gateway from starting. Metrics are labelled
    /// `gateway="gateway"`; gateways sharing a process use [`Upstreams::for_gateway`].
    pub fn from_config(config: &GatewayConfig) -> Result<Self, ConfigError> {
        Self::for_gateway("gateway", config)
    }

    /// [`Upstreams::from_config`] with the gateway's name on every upstream metric, so the
    /// gateways of one process (`portico up`) keep their series apart.
    pub fn for_gateway(gateway: &'static str, config: &GatewayConfig) -> Result<Self, ConfigError> {
        // The recorder must exist before the first metric handle is registered, or the
        // handles would go to the no-op recorder for good.
        let _ = crate::metrics::handle();
        let mut http = HashMap::new();
        let mut grpc = HashMap::new();
        for (name, upstream) in &config.upstreams {
            match upstream.protocol {
                Protocol::Http => {
                    http.insert(name.clone(), HttpUpstream::new(gateway, name, upstream, config)?);
                }
                Protocol::Grpc => {
                    grpc.insert(name.clone(), GrpcUpstream::new(gateway, name, upstream, config)?);
                }
            }
        }
        Ok(Self { http: Arc::new(http), grpc: Arc::new(grpc) })
    }

    /// The HTTP upstream a gateway's code calls by `name`, resolved once at start-up: a
    /// missing one fails start-up with an error naming the key, never a request at run time.
    pub fn require_http(&self, name: &str) -> Result<HttpUpstream, ConfigError> {
        self.http.get(name).cloned().ok_or_else(|| missing(name, "http"))
    }

    /// The gRPC upstream a gateway's code calls by `name`, resolved once at start-up.
    pub fn require_grpc(&self, name: &str) -> Result<GrpcUpstream, ConfigError> {
        self.grpc.get(name).cloned().ok_or_else(|| missing(name, "grpc"))
    }

    /// The HTTP upstream `name`, looked up per call. A missing one is a misconfiguration, hence
    /// an internal error; prefer [`Upstreams::require_http`] at start-up.
    pub fn http(&self, name: &str) -> Result<&HttpUpstream, EdgeError> {
        self.http
            .get(name)
            .ok_or_else(|| EdgeError::internal(format!("no http upstream named `{name}`")))
    }

    /// The gRPC upstream `name`.
    pub fn grpc(&self, name: &str) -> Result<&GrpcUpstream, EdgeError> {
        self.grpc
            .get(name)
            .ok_or_else(|| EdgeError::internal(format!("no grpc upstream named `{name}`")))
    }

    /// Every upstream's name and current endpoint base URLs, for readiness checks.
    pub fn endpoints(&self) -> Vec<(String, Vec<String>)> {
        let http = self.http.iter().map(|(n, u)| (n, u.cluster()));
        let grpc = self.grpc.iter().map(|(n, u)| (n, u.cluster()));
        http.chain(grpc)
            .map(|(name, cluster)| {
                (name.clone(), cluster.snapshot().iter().map(|e| e.url().to_owned()).collect())
            })
            .collect()
    }
}

fn missing(name: &str, protocol: &str) -> ConfigError {
    ConfigError::Invalid {
        key: format!("upstreams.{name}"),
        message: format!("this gateway needs a `{protocol}` upstream named `{name}`"),
    }
}

#[cfg(test)]
mod resilience_tests;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_missing_or_mistyped_upstream_fails_start_up_naming_the_key() {
        let config = GatewayConfig::from_toml(
            "[upstreams.inventory]\nprotocol = \"grpc\"\nendpoints = [\"http://127.0.0.1:1\"]\n",
        )
        .unwrap();
        let upstreams = Upstreams::from_config(&config).unwrap();
        assert!(upstreams.require_grpc("inventory").is_ok());
        let err = upstreams.require_http("inventory").unwrap_err();
        assert!(err.to_string().contains("`upstreams.inventory`"), "{err}");
        assert!(err.to_string().contains("`http` upstream"), "{err}");
        assert!(upstreams.require_http("catalog").is_err());
        assert_eq!(upstreams.http("catalog").unwrap_err().code(), "internal");
    }
}
