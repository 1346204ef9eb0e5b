//! The relay's upstream connections: per endpoint, a stack of idle keep-alive connections
//! (the most recently used first, so a few warm connections do the work), each checked for a
//! close by the upstream before it is reused.
//!
//! The pool belongs to one worker (each worker builds its own gateway), so its lock is never
//! contended; it is a lock only because connection tasks must be `Send`.

use std::{
    io,
    sync::{
        Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::net::TcpStream;

use crate::config::{ConfigError, GatewayConfig};

/// A named upstream as the relay sees it: its endpoints and their pools.
#[derive(Debug)]
pub(super) struct Upstream {
    name: String,
    endpoints: Vec<Endpoint>,
    next: AtomicUsize,
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle: usize,
    /// The upstream's call timeout, for routes that set none.
    timeout: Duration,
}

/// One endpoint: where it is and its idle connections.
#[derive(Debug)]
pub(super) struct Endpoint {
    /// `host:port`, as written in the `Host` header of every request to it.
    authority: String,
    idle: Mutex<Vec<Idle>>,
}

#[derive(Debug)]
struct Idle {
    stream: TcpStream,
    since: Instant,
}

// === impl Upstream ===

impl Upstream {
    /// The upstream `name` of `config` (its endpoints were checked to be `http://` URLs).
    pub(super) fn from_config(name: &str, config: &GatewayConfig) -> Result<Self, ConfigError> {
        let upstream = config.upstreams.get(name).ok_or_else(|| ConfigError::Invalid {
            key: "routes".into(),
            message: format!("no upstream named `{name}`"),
        })?;
        let endpoints = upstream
            .endpoints
            .iter()
            .map(|url| {
                let authority = url
                    .strip_prefix("http://")
                    .map(|rest| rest.split('/').next().unwrap_or(rest))
                    .filter(|authority| !authority.is_empty())
                    .ok_or_else(|| ConfigError::Invalid {
                        key: format!("upstreams.{name}.endpoints"),
                        message: format!("`{url}` is not an http:// URL"),
                    })?;
                Ok(Endpoint { authority: authority.to_owned(), idle: Mutex::new(Vec::new()) })
            })
            .collect::<Result<Vec<_>, ConfigError>>()?;
        let defaults = &config.defaults.upstream;
        Ok(Self {
            name: name.to_owned(),
            endpoints,
            next: AtomicUsize::new(0),
            connect_timeout: upstream.connect_timeout.unwrap_or(defaults.connect_timeout),
            idle_timeout: defaults.pool_idle_timeout,
            max_idle: defaults.pool_max_idle_per_endpoint,
            timeout: config.upstream_timeout(upstream),
        })
    }

    pub(super) fn name(&self) -> &str {
        &self.name
    }

    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The endpoint the next request goes to (round robin).
    pub(super) fn pick(&self) -> &Endpoint {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        &self.endpoints[i]
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
        let stream =
            tokio::time::timeout(self.connect_timeout, TcpStream::connect(&endpoint.authority))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// Returns a connection whose last response ended cleanly, for the next request.
    pub(super) fn release(&self, endpoint: &Endpoint, stream: TcpStream) {
        let mut idle = endpoint.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < self.max_idle {
            idle.push(Idle { stream, since: Instant::now() });
        }
    }
}

// === impl Endpoint ===

impl Endpoint {
    pub(super) fn authority(&self) -> &str {
        &self.authority
    }
}

/// An idle connection is usable while nothing is waiting to be read on it: a keep-alive
/// upstream that closes sends a FIN (a read of 0), and anything else is a protocol error.
fn is_open(stream: &TcpStream) -> bool {
    let mut probe = [0_u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}
