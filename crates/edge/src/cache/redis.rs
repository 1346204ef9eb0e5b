//! The shared tier: entries in Redis for every replica, under keys that start with the build's
//! version (a rolling deploy never reads another format), hashed (a key holds paths, queries
//! and callers) and hash-tagged. Tags and paths index their entries in sets, so a purge finds
//! them; each purge is published, so every replica drops its own copies too. Behind the shared
//! link's breaker: while Redis fails, the local tier serves alone (counted), never an error.

use std::{
    sync::{
        Arc, Weak,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;

use super::{Cache, Entry, Purge};
use crate::redis_store::{Link, Unavailable};

/// The cache's use of the shared Redis.
pub(crate) struct Tier {
    link: Arc<Link>,
    /// `<prefix>:cache:<version>:`.
    base: String,
    /// The channel purges are published on.
    channel: String,
    /// Whether this process's subscription task runs.
    subscribed: Arc<AtomicBool>,
}

impl Tier {
    pub(crate) fn new(link: Arc<Link>, version: &str) -> Self {
        let base = format!("{}:cache:{version}:", link.prefix());
        let channel = format!("{}:cache:purge", link.prefix());
        Self { link, base, channel, subscribed: Arc::new(AtomicBool::new(false)) }
    }

    fn hashed(&self, kind: &str, value: &str) -> String {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, value.as_bytes());
        let hash: String = digest.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect();
        format!("{}{kind}{{{hash}}}", self.base)
    }

    /// The shared entry of `key`, if Redis has one (and answers).
    pub(crate) async fn get(&self, key: &str) -> Option<Entry> {
        let stored = self.hashed("e", key);
        let found = self
            .link
            .run("cache", |mut connection| async move {
                redis::cmd("GET").arg(&stored).query_async::<Option<Vec<u8>>>(&mut connection).await
            })
            .await;
        match found {
            Ok(found) => Entry::from_bytes(&Bytes::from(found?)),
            Err(Unavailable) => {
                crate::metrics::cache_store_error("get");
                None
            }
        }
    }

    /// Stores `entry` under `key` in the background (the response does not wait for it), with
    /// its tag and path indexes.
    pub(crate) fn put(&self, key: &str, entry: Arc<Entry>) {
        let stored = self.hashed("e", key);
        let indexes: Vec<String> = entry
            .tags
            .iter()
            .map(|tag| self.hashed("t", tag))
            .chain(std::iter::once(self.hashed("p", &entry.path)))
            .collect();
        let link = self.link.clone();
        tokio::spawn(async move {
            let lifetime = entry.lifetime().as_millis().max(1) as u64;
            let bytes = entry.to_bytes();
            let written = bytes.len() as u64;
            let put = link
                .run("cache", |mut connection| async move {
                    let mut pipe = redis::pipe();
                    pipe.cmd("SET").arg(&stored).arg(bytes).arg("PX").arg(lifetime).ignore();
                    for index in &indexes {
                        // The index outlives its longest entry: its TTL only ever grows
                        // (`GT` and `NX` need Redis 7).
                        pipe.cmd("SADD").arg(index).arg(&stored).ignore();
                        pipe.cmd("PEXPIRE").arg(index).arg(lifetime).arg("GT").ignore();
                        pipe.cmd("PEXPIRE").arg(index).arg(lifetime).arg("NX").ignore();
                    }
                    pipe.query_async::<()>(&mut connection).await
                })
                .await;
            match put {
                Ok(()) => crate::metrics::cache_redis_bytes(written),
                Err(Unavailable) => crate::metrics::cache_store_error("put"),
            }
        });
    }

    /// Deletes what `purge` names from Redis and tells every replica.
    pub(crate) async fn purge(&self, purge: &Purge) -> Result<(), Unavailable> {
        let mut indexes = Vec::new();
        if let Some(tag) = &purge.tag {
            indexes.push(self.hashed("t", tag));
        }
        if let Some(path) = &purge.path {
            indexes.push(self.hashed("p", path));
        }
        let message = purge.encode();
        let channel = self.channel.clone();
        self.link
            .run("cache", |mut connection| async move {
                for index in &indexes {
                    let members: Vec<String> =
                        redis::cmd("SMEMBERS").arg(index).query_async(&mut connection).await?;
                    let mut pipe = redis::pipe();
                    for member in &members {
                        pipe.cmd("DEL").arg(member).ignore();
                    }
                    pipe.cmd("DEL").arg(index).ignore();
                    pipe.query_async::<()>(&mut connection).await?;
                }
                redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(&message)
                    .query_async::<()>(&mut connection)
                    .await
            })
            .await
    }

    /// Starts this process's subscription to purges, unless it runs: every replica drops what
    /// another one purged. It ends with the cache, and reconnects while Redis is away.
    pub(crate) fn subscribe(&self, cache: &Arc<Cache>) {
        if self.subscribed.swap(true, Ordering::AcqRel) {
            return;
        }
        let running = Running(self.subscribed.clone());
        let (client, channel) = (self.link.client().clone(), self.channel.clone());
        let cache: Weak<Cache> = Arc::downgrade(cache);
        tokio::spawn(async move {
            let _running = running;
            loop {
                if cache.strong_count() == 0 {
                    return;
                }
                if let Ok(mut pubsub) = client.get_async_pubsub().await
                    && pubsub.subscribe(&channel).await.is_ok()
                {
                    let mut messages = pubsub.on_message();
                    while let Some(message) = futures::StreamExt::next(&mut messages).await {
                        let Some(cache) = cache.upgrade() else { return };
                        if let Ok(text) = message.get_payload::<String>() {
                            cache.purge_local(&Purge::decode(&text));
                        }
                    }
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

/// Marks the subscription stopped however its task ends (its runtime shut down, say), so the
/// next request starts another.
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}
