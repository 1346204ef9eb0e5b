//! The shared store of plan limits: Redis, so every replica of a gateway counts against one
//! limit. Each request is one `EVALSHA` of a script that runs GCRA and the daily quota on Redis's
//! own clock (`TIME`), so replicas with drifting clocks still agree. Keys carry a hash of the
//! partner (never a credential), a hash tag (both keys of one partner on one Redis Cluster
//! slot) and a TTL.
//!
//! A store that fails or is slow is skipped for a while (no request waits out a timeout once it
//! is known down), then probed by one request; the plan's `on_store_error` decides the meantime.

use std::{
    sync::atomic::{AtomicBool, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use serde::Deserialize;

use super::Stored;

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

/// Every limit of one request in one round trip: GCRA and the day's count of each, on Redis's
/// clock. The request is admitted only if every limit admits it, and only then counted in each.
/// For limit i, KEYS[2i-1] is its arrival-time key and KEYS[2i] its count for the UTC day
/// (untouched without a quota); ARGV[3i-2..3i] its interval (µs), burst (requests) and daily
/// quota (-1: none). Returns for each limit {refused_by (0 none, 1 burst, 2 day), remaining,
/// reset µs, retry µs, used today}.
const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out, tats, admitted = {}, {}, true
for i = 1, #ARGV / 3 do
  local interval = tonumber(ARGV[3 * i - 2])
  local capacity = interval * tonumber(ARGV[3 * i - 1])
  local quota = tonumber(ARGV[3 * i])
  local tat = tonumber(redis.call('GET', KEYS[2 * i - 1]) or '0')
  if tat < now then tat = now end
  tats[i] = tat
  local ahead = tat + interval - now
  local used = 0
  if quota >= 0 then used = tonumber(redis.call('GET', KEYS[2 * i]) or '0') end
  if ahead > capacity then
    out[i] = {1, 0, tat - now, ahead - capacity, used}
    admitted = false
  elseif quota >= 0 and used >= quota then
    out[i] = {2, 0, tat - now, 0, used}
    admitted = false
  else
    out[i] = {0, math.floor((capacity - ahead) / interval), ahead, 0, used}
  end
end
for i = 1, #ARGV / 3 do
  local interval = tonumber(ARGV[3 * i - 2])
  if admitted then
    local ahead = out[i][3]
    redis.call('SET', KEYS[2 * i - 1], string.format('%d', tats[i] + interval), 'PX',
      string.format('%d', math.floor(ahead / 1000) + 1000))
    if tonumber(ARGV[3 * i]) >= 0 then
      local used = redis.call('INCR', KEYS[2 * i])
      if used == 1 then redis.call('EXPIRE', KEYS[2 * i], 90000) end
      out[i][5] = used
    end
  elseif out[i][1] == 0 then
    -- Another limit refused: this one was not counted, so it reports what it has left.
    local capacity = interval * tonumber(ARGV[3 * i - 1])
    out[i][2] = math.floor((capacity - (tats[i] - now)) / interval)
    out[i][3] = tats[i] - now
  end
end
return out
";

/// One limit to decide: its scope under the limited key (`plan`, or `r:<route name>`), its
/// interval, burst and daily quota, and the UTC day.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ask<'a> {
    pub(crate) scope: &'a str,
    pub(crate) interval: Duration,
    pub(crate) burst: u64,
    pub(crate) quota: Option<u64>,
    pub(crate) day: u64,
}

/// The Redis store of one process.
pub(crate) struct RedisStore {
    client: redis::Client,
    config: RedisConfig,
    connection: tokio::sync::Mutex<Option<ConnectionManager>>,
    script: redis::Script,
    epoch: Instant,
    /// Until when (ms since `epoch`) the store is skipped; 0 when it is believed up.
    skip_until: AtomicU64,
    /// One probe at a time while it is skipped.
    probing: AtomicBool,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("config", &self.config).finish_non_exhaustive()
    }
}

/// The probe in progress; dropping it lets the next request probe.
struct Probing<'a>(&'a AtomicBool);

impl Drop for Probing<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The store failed (or is being skipped): the plan's `on_store_error` decides.
#[derive(Debug)]
pub(crate) struct Unavailable;

impl RedisStore {
    /// The store of `config`; connects on first use (a gateway starts whether Redis is up or
    /// not).
    pub(crate) fn new(config: &RedisConfig) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(config.url.as_str())?,
            config: config.clone(),
            connection: tokio::sync::Mutex::new(None),
            script: redis::Script::new(SCRIPT),
            epoch: Instant::now(),
            skip_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        })
    }

    /// The replicas sharing the limits.
    pub(crate) fn replicas(&self) -> u32 {
        self.config.replicas.max(1)
    }

    /// `<prefix>:rl:{<hash of limited>}:`: the start of every key of one limited party (a
    /// caller, or a client address), so that all its limits share one Redis Cluster slot and
    /// one script can check them together.
    fn base(&self, limited: &[u8]) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, limited);
        let hash: String = digest.as_ref()[..12].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}:rl:{{{hash}}}:", self.config.prefix)
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Decides one request against every limit in `asks` of `limited` (what the keys are made
    /// from: never a credential), in one round trip; the decisions in the order asked.
    pub(crate) async fn check(
        &self,
        limited: &[u8],
        asks: &[Ask<'_>],
    ) -> Result<Vec<Stored>, Unavailable> {
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
        let result = tokio::time::timeout(self.config.timeout, self.run(limited, asks)).await;
        match result {
            Ok(Ok(stored)) => {
                if self.skip_until.swap(0, Ordering::AcqRel) != 0 {
                    tracing::info!("the rate-limit store answers again");
                }
                Ok(stored)
            }
            Ok(Err(error)) => Err(self.failed(&error.to_string())),
            Err(_elapsed) => {
                Err(self.failed(&format!("no answer within {:?}", self.config.timeout)))
            }
        }
    }

    fn failed(&self, error: &str) -> Unavailable {
        let until = self.now_ms() + u64::try_from(SKIP_FOR.as_millis()).unwrap_or(1000);
        if self.skip_until.swap(until, Ordering::AcqRel) == 0 {
            tracing::warn!(%error, "the rate-limit store failed; skipping it, probing every {SKIP_FOR:?}");
        }
        Unavailable
    }

    async fn run(&self, limited: &[u8], asks: &[Ask<'_>]) -> redis::RedisResult<Vec<Stored>> {
        let mut connection = {
            let mut slot = self.connection.lock().await;
            match &*slot {
                Some(connection) => connection.clone(),
                None => {
                    let config = ConnectionManagerConfig::new()
                        .set_connection_timeout(Some(self.config.timeout))
                        .set_response_timeout(Some(self.config.timeout))
                        .set_number_of_retries(1);
                    let connection =
                        ConnectionManager::new_with_config(self.client.clone(), config).await?;
                    *slot = Some(connection.clone());
                    connection
                }
            }
        };
        let base = self.base(limited);
        let mut invocation = self.script.prepare_invoke();
        for ask in asks {
            let interval_us = u64::try_from(ask.interval.as_micros()).unwrap_or(u64::MAX).max(1);
            let quota = ask.quota.map_or(-1, |q| i64::try_from(q).unwrap_or(i64::MAX));
            invocation
                .key(format!("{base}{}:tat", ask.scope))
                .key(format!("{base}{}:d{}", ask.scope, ask.day))
                .arg(interval_us)
                .arg(ask.burst)
                .arg(quota);
        }
        let replies: Vec<(u8, u64, i64, i64, u64)> =
            invocation.invoke_async(&mut connection).await?;
        if replies.len() != asks.len() {
            return Err(redis::RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "the rate-limit script answered a different number of limits",
            )));
        }
        let micros = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0));
        Ok(replies
            .into_iter()
            .map(|(refused, remaining, reset, retry, used_today)| Stored {
                refused_by: match refused {
                    1 => Some("burst"),
                    2 => Some("day"),
                    _ => None,
                },
                remaining,
                reset: micros(reset),
                retry: micros(retry),
                used_today,
            })
            .collect())
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
        let store = RedisStore::new(&config).unwrap();
        // Known down, and the skip already over: the next request probes.
        store.skip_until.store(1, Ordering::Release);
        let deadline = Instant::now() + Duration::from_secs(5);
        while store.now_ms() < 1 {
            assert!(Instant::now() < deadline);
            tokio::task::yield_now().await;
        }
        let ask =
            Ask { scope: "plan", interval: Duration::from_secs(1), burst: 1, quota: None, day: 0 };
        // The request is dropped mid-probe (its client left).
        let abandoned =
            tokio::time::timeout(Duration::from_millis(50), store.check(b"x", &[ask])).await;
        assert!(abandoned.is_err(), "the probe was still waiting");
        assert!(!store.probing.load(Ordering::Acquire), "the next request may probe");
    }
}
