//! Named upstreams: handlers ask for `catalog` or `inventory` and never build a URL or a channel
//! themselves. The protocol is a property of the upstream (from config), not of the handler.

mod grpc;
mod http;

use std::{collections::HashMap, sync::Arc};

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
    /// that is down at start-up does not stop the gateway from starting.
    pub fn from_config(config: &GatewayConfig) -> Result<Self, ConfigError> {
        let mut http = HashMap::new();
        let mut grpc = HashMap::new();
        for (name, upstream) in &config.upstreams {
            match upstream.protocol {
                Protocol::Http => {
                    http.insert(name.clone(), HttpUpstream::new(name, upstream, config)?);
                }
                Protocol::Grpc => {
                    grpc.insert(name.clone(), GrpcUpstream::new(name, upstream, config)?);
                }
            }
        }
        Ok(Self { http: Arc::new(http), grpc: Arc::new(grpc) })
    }

    /// Fails start-up, naming the key, unless every upstream a gateway's code calls is
    /// configured with the protocol that code speaks.
    pub fn require(&self, http: &[&str], grpc: &[&str]) -> Result<(), ConfigError> {
        let missing = |name: &str, protocol: &str| ConfigError::Invalid {
            key: format!("upstreams.{name}"),
            message: format!("this gateway needs a `{protocol}` upstream named `{name}`"),
        };
        if let Some(name) = http.iter().find(|n| !self.http.contains_key(**n)) {
            return Err(missing(name, "http"));
        }
        if let Some(name) = grpc.iter().find(|n| !self.grpc.contains_key(**n)) {
            return Err(missing(name, "grpc"));
        }
        Ok(())
    }

    /// The HTTP upstream `name`. A missing one is a misconfiguration, hence an internal error;
    /// [`Upstreams::require`] at start-up keeps it from happening at run time.
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

    /// Every endpoint address of every upstream, for readiness checks.
    pub fn endpoints(&self) -> impl Iterator<Item = (&str, &str)> {
        let http = self.http.iter().flat_map(|(n, u)| u.endpoints().map(move |e| (n.as_str(), e)));
        let grpc = self.grpc.iter().flat_map(|(n, u)| u.endpoints().map(move |e| (n.as_str(), e)));
        http.chain(grpc)
    }
}
