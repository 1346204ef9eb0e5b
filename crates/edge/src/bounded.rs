//! A bounded map for per-client state that hostile traffic could otherwise grow without end
//! (failed logins per address, verified tokens): least recently used entries go first, and it is
//! sharded so that workers rarely wait on one another.

use std::{
    hash::Hash,
    num::NonZeroUsize,
    sync::{Mutex, MutexGuard, PoisonError},
};

const SHARDS: usize = 16;

/// At most about `capacity` entries, in [`SHARDS`] least-recently-used shards.
#[derive(Debug)]
pub(crate) struct Lru<K: Hash + Eq, V> {
    shards: Box<[Mutex<lru::LruCache<K, V>>]>,
}

impl<K: Hash + Eq, V> Lru<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        let per_shard = NonZeroUsize::new((capacity / SHARDS).max(1)).unwrap_or(NonZeroUsize::MIN);
        Self { shards: (0..SHARDS).map(|_| Mutex::new(lru::LruCache::new(per_shard))).collect() }
    }

    /// The shard of a key whose bits are already well mixed (an address, a digest): `spread`
    /// picks it.
    pub(crate) fn shard(&self, spread: u64) -> MutexGuard<'_, lru::LruCache<K, V>> {
        let index = (spread.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 60) as usize % self.shards.len();
        // A panic while holding the lock leaves an LRU map, not a broken invariant.
        self.shards[index].lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Entries held, over all shards.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(PoisonError::into_inner).len()).sum()
    }
}
