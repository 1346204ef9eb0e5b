//! The relay's upstream connections: per endpoint, a stack of idle keep-alive connections
//! (the most recently used first, so a few warm connections do the work), each checked for a
//! close by the upstream before it is reused.
//!
//! The pool belongs to one worker (each worker builds its own gateway), so its lock is never
//! contended; it is a lock only because connection tasks must be `Send`.

use std::{
    io,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{net::TcpStream, time::Instant};

use crate::{
    config::GatewayConfig,
    upstream::cluster::{Cluster, Endpoint},
};

/// A named upstream as the relay sees it: the cluster shared with every other call to it
/// (balancing, breakers, ejection, limits) and the relay's own idle connections to each of
/// its endpoints. When discovery changes the endpoint set, the connections to
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
    /// Per endpoint, found by identity: a short list (an upstream has a few endpoints) scanned
    /// faster than a string is hashed. Holding the `Arc` keeps the endpoint, so its address
    /// cannot be taken by another while its connections are here.
    by_endpoint: Vec<(Arc<Endpoint>, Vec<IdleConnection>)>,
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

    /// An idle connection to `endpoint` that the upstream has not closed, if there is one
    /// (`now`: the time of asking).
    pub(super) fn reuse(&self, endpoint: &Arc<Endpoint>, now: Instant) -> Option<TcpStream> {
        let mut idle = self.lock();
        let (_, stack) = idle.by_endpoint.iter_mut().find(|(e, _)| Arc::ptr_eq(e, endpoint))?;
        while let Some(connection) = stack.pop() {
            let idle_for = now.saturating_duration_since(connection.since);
            if idle_for < self.idle_timeout && is_open(&connection.stream) {
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

    /// Returns a connection whose last response ended cleanly, for the next request (`now`:
    /// when it did).
    pub(super) fn release(&self, endpoint: &Arc<Endpoint>, stream: TcpStream, now: Instant) {
        let mut idle = self.lock();
        let at = match idle.by_endpoint.iter().position(|(e, _)| Arc::ptr_eq(e, endpoint)) {
            Some(at) => at,
            None => {
                // A new entry is rare (the first connection kept to an endpoint): the time to
                // make sure the endpoint is still one of the cluster's — it may have left while
                // this connection was out.
                if !self.cluster.snapshot().iter().any(|e| Arc::ptr_eq(e, endpoint)) {
                    return;
                }
                idle.by_endpoint.push((endpoint.clone(), Vec::new()));
                idle.by_endpoint.len() - 1
            }
        };
        let stack = &mut idle.by_endpoint[at].1;
        if stack.len() < self.max_idle {
            stack.push(IdleConnection { stream, since: now });
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
                .retain(|(endpoint, _)| current.iter().any(|e| Arc::ptr_eq(e, endpoint)));
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
