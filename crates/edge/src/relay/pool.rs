//! The relay's upstream connections: per endpoint, a stack of idle keep-alive connections
//! (the most recently used first, so a few warm connections do the work), each checked for a
//! close by the upstream before it is reused.
//!
//! The pool belongs to one worker (each worker builds its own gateway), so its lock is never
//! contended; it is a lock only because connection tasks must be `Send`.

use std::{
    collections::HashMap,
    io,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use tokio::net::TcpStream;

use crate::{
    config::GatewayConfig,
    upstream::cluster::{Cluster, Endpoint},
};

/// A named upstream as the relay sees it: the cluster shared with every other call to it
/// (balancing, breakers, ejection, limits) and the relay's own idle connections to each of
/// its endpoints, by authority. When discovery changes the endpoint set, the connections to
/// endpoints that left are closed on the next look.
#[derive(Debug)]
pub(super) struct Upstream {
    cluster: Arc<Cluster>,
    idle_timeout: Duration,
    max_idle: usize,
    idle: Mutex<Idle>,
}

#[derive(Debug, Default)]
struct Idle {
    by_endpoint: HashMap<Box<str>, Vec<IdleConnection>>,
    /// The cluster's endpoint generation these connections were last checked against.
    generation: usize,
}

/// An idle keep-alive connection.
#[derive(Debug)]
struct IdleConnection {
    stream: TcpStream,
    since: Instant,
}

// === impl Upstream ===

impl Upstream {
    /// The relay's side of `cluster`, pooled as the config's upstream defaults say.
    pub(super) fn new(cluster: Arc<Cluster>, config: &GatewayConfig) -> Self {
        let defaults = &config.defaults.upstream;
        Self {
            cluster,
            idle_timeout: defaults.pool_idle_timeout,
            max_idle: defaults.pool_max_idle_per_endpoint,
            idle: Mutex::default(),
        }
    }

    /// An idle connection to `endpoint` that the upstream has not closed, if there is one.
    pub(super) fn reuse(&self, endpoint: &Endpoint) -> Option<TcpStream> {
        let mut idle = self.lock();
        let stack = idle.by_endpoint.get_mut(endpoint.authority())?;
        while let Some(connection) = stack.pop() {
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
        let mut idle = self.lock();
        let stack = match idle.by_endpoint.get_mut(endpoint.authority()) {
            Some(stack) => stack,
            None => idle.by_endpoint.entry(endpoint.authority().into()).or_default(),
        };
        if stack.len() < self.max_idle {
            stack.push(IdleConnection { stream, since: Instant::now() });
        }
    }
}

impl Upstream {
    /// The idle connections, those to endpoints no longer in the cluster closed first.
    fn lock(&self) -> std::sync::MutexGuard<'_, Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let generation = self.cluster.generation();
        if idle.generation != generation {
            let current = self.cluster.snapshot();
            idle.by_endpoint
                .retain(|authority, _| current.iter().any(|e| e.authority() == authority.as_ref()));
            idle.generation = generation;
        }
        idle
    }
}

/// An idle connection is usable while nothing is waiting to be read on it: a keep-alive
/// upstream that closes sends a FIN (a read of 0), and anything else is a protocol error.
fn is_open(stream: &TcpStream) -> bool {
    let mut probe = [0_u8; 1];
    matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
}
