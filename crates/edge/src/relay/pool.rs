//! The relay's upstream connections: per endpoint, a stack of idle keep-alive connections
//! (the most recently used first, so a few warm connections do the work), each checked for a
//! close by the upstream before it is reused.
//!
//! The pool belongs to one worker (each worker builds its own gateway), so its lock is never
//! contended; it is a lock only because connection tasks must be `Send`.

use std::{io, sync::Arc, time::Duration};

use tokio::net::TcpStream;

use crate::{
    config::{ConfigError, GatewayConfig},
    upstream::{
        Upstreams,
        cluster::{Cluster, Endpoint, IdleConnection},
    },
};

/// A named upstream as the relay sees it: the cluster shared with every other call to it
/// (balancing, breakers, ejection, limits) and how its idle connections are kept.
#[derive(Debug)]
pub(super) struct Upstream {
    cluster: Arc<Cluster>,
    idle_timeout: Duration,
    max_idle: usize,
}

// === impl Upstream ===

impl Upstream {
    /// The upstream `name`, sharing the cluster of the gateway's HTTP upstream of that name.
    pub(super) fn new(
        name: &str,
        config: &GatewayConfig,
        upstreams: &Upstreams,
    ) -> Result<Self, ConfigError> {
        let upstream = upstreams.http(name).map_err(|_| ConfigError::Invalid {
            key: "routes".into(),
            message: format!("no http upstream named `{name}`"),
        })?;
        let defaults = &config.defaults.upstream;
        Ok(Self {
            cluster: upstream.cluster().clone(),
            idle_timeout: defaults.pool_idle_timeout,
            max_idle: defaults.pool_max_idle_per_endpoint,
        })
    }

    pub(super) fn name(&self) -> &str {
        self.cluster.name()
    }

    pub(super) fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    pub(super) fn timeout(&self) -> Duration {
        self.cluster.policy().timeout
    }

    /// An idle connection to `endpoint` that the upstream has not closed, if there is one.
    pub(super) fn reuse(&self, endpoint: &Endpoint) -> Option<TcpStream> {
        let mut idle = endpoint.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(connection) = idle.pop() {
            if connection.since.elapsed() < self.idle_timeout && is_open(&connection.stream) {
                return Some(connection.stream);
            }
        }
        None
    }

    /// A new connection to `endpoint`, within the connect timeout.
    pub(super) async fn connect(&self, endpoint: &Endpoint) -> io::Result<TcpStream> {
        let connect_timeout = self.cluster.policy().connect_timeout;
        let stream =
            tokio::time::timeout(connect_timeout, TcpStream::connect(endpoint.authority()))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Returns a connection whose last response ended cleanly, for the next request.
    pub(super) fn release(&self, endpoint: &Endpoint, stream: TcpStream) {
        let mut idle = endpoint.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < self.max_idle {
            idle.push(IdleConnection { stream, since: std::time::Instant::now() });
        }
    }
}

/// An idle connection is usable while nothing is waiting to be read on it: a keep-alive
/// upstream that closes sends a FIN (a read of 0), and anything else is a protocol error.
fn is_open(stream: &TcpStream) -> bool {
    let mut probe = [0_u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}
