//! The shared store of rate limits: Redis, so every replica of a gateway counts against one
//! limit. Each request is one `EVALSHA` of a script that runs GCRA and the daily quota of every
//! limit it is counted against, on Redis's own clock (`TIME`), so replicas with drifting clocks
//! still agree. Keys carry a hash of whom they limit (never a credential), a hash tag (all of
//! one caller's keys on one Redis Cluster slot) and a TTL. Behind the shared link's breaker: the
//! limit's `on_store_error` decides while Redis fails.

use std::{sync::Arc, time::Duration};

use super::Stored;
use crate::redis_store::Link;
pub(crate) use crate::redis_store::Unavailable;

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

/// The rate limits' use of the shared Redis.
pub(crate) struct RedisStore {
    link: Arc<Link>,
    script: redis::Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore").field("link", &self.link).finish_non_exhaustive()
    }
}

impl RedisStore {
    pub(crate) fn new(link: Arc<Link>) -> Self {
        Self { link, script: redis::Script::new(SCRIPT) }
    }

    /// The replicas sharing the limits.
    pub(crate) fn replicas(&self) -> u32 {
        self.link.replicas()
    }

    /// `<prefix>:rl:{<hash of limited>}:`: the start of every key of one limited party (a
    /// caller, or a client address), so that all its limits share one Redis Cluster slot and
    /// one script can check them together.
    fn base(&self, limited: &[u8]) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, limited);
        let hash: String = digest.as_ref()[..12].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}:rl:{{{hash}}}:", self.link.prefix())
    }

    /// Decides one request against every limit in `asks` of `limited` (what the keys are made
    /// from: never a credential), in one round trip; the decisions in the order asked.
    pub(crate) async fn check(
        &self,
        limited: &[u8],
        asks: &[Ask<'_>],
    ) -> Result<Vec<Stored>, Unavailable> {
        self.link.run("rate limits", |connection| self.run(connection, limited, asks)).await
    }

    async fn run(
        &self,
        mut connection: redis::aio::ConnectionManager,
        limited: &[u8],
        asks: &[Ask<'_>],
    ) -> redis::RedisResult<Vec<Stored>> {
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
