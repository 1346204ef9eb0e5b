//! The Redis a gateway's replicas share (`[redis]`): one connection per process for every
//! feature that keeps state there (rate limits, the cache tier), behind one breaker. A store that
//! fails or is slow is skipped for a while, so no request waits out a timeout once it is known
//! down; then one request at a time probes it, and recovery needs no restart.

use std::{
    future::Future,
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Deserialize;

/// `[redis]`: the store shared by the gateway's replicas.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// The longest a request waits for Redis before the store counts as failing.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Gateway instances sharing the limits: while Redis is down, each admits its share.
    pub replicas: u32,
    /// The start of every key, so that gateways (and tests) sharing a Redis keep apart.
    pub prefix: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379".into(),
            timeout: Duration::from_millis(50),
            replicas: 1,
            prefix: "portico".into(),
        }
    }
}

/// How long a failing store is skipped before one request probes it.
const SKIP_FOR: Duration = Duration::from_secs(1);

/// The shared Redis of one process, and its breaker.
pub(crate) struct Link {
    client: redis::Client,
    config: RedisConfig,
    connection: tokio::sync::Mutex<Option<ConnectionManager>>,
    epoch: Instant,
    /// Until when (ms since `epoch`) the store is skipped; 0 when it is believed up.
    skip_until: AtomicU64,
    /// One probe at a time while it is skipped.
    probing: AtomicBool,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").field("config", &self.config).finish_non_exhaustive()
    }
}

/// The probe in progress; dropping it lets the next request probe.
struct Probing<'a>(&'a AtomicBool);

impl Drop for Probing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The store failed (or is being skipped): the feature's own policy decides what then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unavailable;

impl Link {
    /// The link of `config`; connects on first use (a gateway starts whether Redis is up or
    /// not).
    pub(crate) fn new(config: &RedisConfig) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(config.url.as_str())?,
            config: config.clone(),
            connection: tokio::sync::Mutex::new(None),
            epoch: Instant::now(),
            skip_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        })
    }

    /// The replicas sharing the store.
    pub(crate) fn replicas(&self) -> u32 {
        self.config.replicas.max(1)
    }

    /// The start of every key of this gateway.
    pub(crate) fn prefix(&self) -> &str {
        &self.config.prefix
    }

    /// The client, for what needs a connection of its own (a subscription).
    #[allow(dead_code, reason = "the cache tier subscribes with it")]
    pub(crate) fn client(&self) -> &redis::Client {
        &self.client
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Runs `command` on the shared connection within `[redis] timeout`; `what` names the
    /// feature in the log. Refused at once while the store is known down (but for one probe
    /// after each skip).
    pub(crate) async fn run<T, F, Fut>(&self, what: &str, command: F) -> Result<T, Unavailable>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let skip_until = self.skip_until.load(Ordering::Acquire);
        let _probe = if skip_until == 0 {
            None
        } else {
            // Known down: no waiting. After the skip, one request at a time probes.
            if self.now_ms() < skip_until || self.probing.swap(true, Ordering::AcqRel) {
                return Err(Unavailable);
            }
            // Cleared however the probe ends: a request whose client left drops it midway.
            Some(Probing(&self.probing))
        };
        let attempt = async {
            let connection = self.connection().await?;
            command(connection).await
        };
        match tokio::time::timeout(self.config.timeout, attempt).await {
            Ok(Ok(answer)) => {
                if self.skip_until.swap(0, Ordering::AcqRel) != 0 {
                    tracing::info!(what, "Redis answers again");
                }
                Ok(answer)
            }
            Ok(Err(error)) => Err(self.failed(what, &error.to_string())),
            Err(_elapsed) => {
                Err(self.failed(what, &format!("no answer within {:?}", self.config.timeout)))
            }
        }
    }

    async fn connection(&self) -> redis::RedisResult<ConnectionManager> {
        let mut slot = self.connection.lock().await;
        if let Some(connection) = &*slot {
            return Ok(connection.clone());
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.config.timeout))
            .set_response_timeout(Some(self.config.timeout))
            .set_number_of_retries(1);
        let connection = ConnectionManager::new_with_config(self.client.clone(), config).await?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    fn failed(&self, what: &str, error: &str) -> Unavailable {
        let until = self.now_ms() + u64::try_from(SKIP_FOR.as_millis()).unwrap_or(1000);
        if self.skip_until.swap(until, Ordering::AcqRel) == 0 {
            tracing::warn!(what, %error, "Redis failed; skipping it, probing every {SKIP_FOR:?}");
        }
        Unavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_probe_its_request_abandons_lets_the_next_request_probe() {
        // A "Redis" that accepts connections and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                held.push(socket);
            }
        });
        let config = RedisConfig {
            url: format!("redis://{addr}"),
            timeout: Duration::from_secs(5),
            ..RedisConfig::default()
        };
        let link = Link::new(&config).unwrap();
        // Known down, and the skip already over: the next request probes.
        link.skip_until.store(1, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(5);
        while link.now_ms() < 1 {
            assert!(Instant::now() < deadline);
            tokio::task::yield_now().await;
        }
        // The request is dropped mid-probe (its client left).
        let ping = link.run("test", |mut c| async move {
            redis::cmd("PING").query_async::<String>(&mut c).await
        });
        let abandoned = tokio::time::timeout(Duration::from_millis(50), ping).await;
        assert!(abandoned.is_err(), "the probe was still waiting");
        assert!(!link.probing.load(Ordering::Acquire), "the next request may probe");
    }
}
