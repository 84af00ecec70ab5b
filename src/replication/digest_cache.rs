//! The last few anti-entropy digests this node computed, so that a digest costs one pass over
//! the store per reference time, not one per request: every peer that reconciles with us in
//! one epoch, and our own sessions, share it.
//!
//! Owns the cache key — our swarm, a fingerprint of what decides ownership (the active swarm
//! ids), the reference time — and single flight: while one caller scans for a key, the others
//! asking for it wait for that scan instead of starting their own. Bounded: at most
//! [`CACHED_DIGESTS`] digests of 2 KiB each, least recently used dropped first. Blocking: a
//! waiter blocks its thread, so callers run on blocking threads (they scan the store anyway).
//!
//! A cached digest is a snapshot: what changes in scope after it was taken (a repair, a
//! deletion, a late hand-off) shows in the next epoch's digest. Bucket views are never cached,
//! so a session acting on a stale difference reads the current hashes and finds nothing to do.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest as _};
use prometheus::IntCounter;

use crate::swarm::{Membership, SwarmId};

use super::digest::Digest;
use super::protocol::ADMISSIBLE_DIGEST_TIMES;

/// Digests kept: every reference time a requester may name at one moment
/// ([`ADMISSIBLE_DIGEST_TIMES`]), so cycling through them cannot evict one that is asked
/// again, plus two for a membership change (the old and the new ownership overlap briefly).
pub const CACHED_DIGESTS: usize = ADMISSIBLE_DIGEST_TIMES + 2;

/// What a digest depends on besides the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestKey {
    /// The swarm whose accounts the digest covers (ours).
    pub swarm: SwarmId,
    /// BLAKE2b-256 of the active swarm ids: the whole input of `Membership::swarm_for`, so
    /// membership changes that move no account (a node joining a swarm, a new height) keep
    /// the cached digests.
    pub ownership: [u8; 32],
    /// The reference time.
    pub at: i64,
}

impl DigestKey {
    /// The key of our digest in `m` for swarm `ours` at `at`.
    pub fn new(m: &Membership, ours: SwarmId, at: i64) -> DigestKey {
        let mut h = Blake2b::<U32>::new();
        for id in m.swarm_ids() {
            h.update(id.0.to_be_bytes());
        }
        DigestKey {
            swarm: ours,
            ownership: h.finalize().into(),
            at,
        }
    }
}

/// A cache slot: being computed by one caller, or done.
enum Slot {
    Computing,
    Ready(Arc<Digest>),
}

struct Entry {
    key: DigestKey,
    slot: Slot,
    /// Value of `Entries::clock` at the last use (least recently used is evicted first).
    used: u64,
}

#[derive(Default)]
struct Entries {
    list: Vec<Entry>,
    clock: u64,
}

/// The digest cache of one node (shared by the anti-entropy loop and the peer routes).
pub struct DigestCache {
    entries: Mutex<Entries>,
    /// Signalled whenever a computation ends (done or failed).
    done: Condvar,
    capacity: usize,
    /// `snode_anti_entropy_digest_scans_total`: one per computation.
    scans: IntCounter,
}

impl DigestCache {
    /// A cache of [`CACHED_DIGESTS`] digests counting its scans on `scans`.
    pub fn new(scans: IntCounter) -> DigestCache {
        DigestCache::with_capacity(CACHED_DIGESTS, scans)
    }

    /// A cache of `capacity` digests (at least one).
    pub fn with_capacity(capacity: usize, scans: IntCounter) -> DigestCache {
        DigestCache {
            entries: Mutex::new(Entries::default()),
            done: Condvar::new(),
            capacity: capacity.max(1),
            scans,
        }
    }

    /// The digest for `key`: cached, or being computed by another caller (waits for it), or
    /// computed here by `compute`. A failed computation is not cached: one of its waiters
    /// tries again. Blocking.
    pub fn get_or_compute<E>(
        &self,
        key: DigestKey,
        compute: impl FnOnce() -> Result<Digest, E>,
    ) -> Result<Arc<Digest>, E> {
        let mut g = self.lock();
        loop {
            let now = g.tick();
            let Some(e) = g.list.iter_mut().find(|e| e.key == key) else {
                break;
            };
            e.used = now;
            match &e.slot {
                Slot::Ready(d) => return Ok(d.clone()),
                Slot::Computing => {
                    g = self.done.wait(g).unwrap_or_else(PoisonError::into_inner);
                }
            }
        }
        // Make room: drop the least recently used finished digest. Slots being computed are
        // never dropped (their waiters rely on them); if every slot is being computed, this
        // computation is not cached, so memory stays bounded whatever is asked.
        if g.list.len() >= self.capacity {
            let lru = g
                .list
                .iter()
                .enumerate()
                .filter(|(_, e)| matches!(e.slot, Slot::Ready(_)))
                .min_by_key(|(_, e)| e.used)
                .map(|(i, _)| i);
            if let Some(i) = lru {
                g.list.swap_remove(i);
            }
        }
        let cache = g.list.len() < self.capacity;
        if cache {
            let used = g.tick();
            g.list.push(Entry {
                key,
                slot: Slot::Computing,
                used,
            });
        }
        drop(g);
        // Whatever happens to `compute` (an error, a panic), the slot is released and the
        // waiters woken.
        let guard = Pending {
            cache: self,
            key: cache.then_some(key),
        };
        self.scans.inc();
        let d = Arc::new(compute()?);
        guard.finish(d.clone());
        Ok(d)
    }

    /// Digests held (finished or being computed).
    pub fn len(&self) -> usize {
        self.lock().list.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a finished digest for `key` is held.
    pub fn holds(&self, key: &DigestKey) -> bool {
        self.lock()
            .list
            .iter()
            .any(|e| e.key == *key && matches!(e.slot, Slot::Ready(_)))
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // Nothing panics while holding the lock (computations run outside it); a poisoned
        // lock would still hold consistent entries.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Entries {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }
}

/// A computation in progress: on `finish` its slot becomes the digest; dropped unfinished
/// (error, panic) its slot is removed. Either way waiters are woken.
struct Pending<'a> {
    cache: &'a DigestCache,
    /// The slot's key, or `None` when the computation is not cached.
    key: Option<DigestKey>,
}

impl Pending<'_> {
    fn finish(mut self, d: Arc<Digest>) {
        if let Some(key) = self.key.take() {
            let mut g = self.cache.lock();
            if let Some(e) = g.list.iter_mut().find(|e| e.key == key) {
                e.slot = Slot::Ready(d);
            }
            drop(g);
            self.cache.done.notify_all();
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.cache
                .lock()
                .list
                .retain(|e| e.key != key || matches!(e.slot, Slot::Ready(_)));
            self.cache.done.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::NodeInfo;
    use std::net::Ipv4Addr;
    use std::sync::Barrier;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn counter() -> IntCounter {
        IntCounter::new("scans", "scans").unwrap()
    }

    fn key(at: i64) -> DigestKey {
        DigestKey {
            swarm: SwarmId(0),
            ownership: [0; 32],
            at,
        }
    }

    fn digest(v: u64) -> Digest {
        let mut d = Digest::default();
        d.0[0] = v;
        d
    }

    fn ok(v: u64) -> impl FnOnce() -> Result<Digest, ()> {
        move || Ok(digest(v))
    }

    #[test]
    fn a_hit_does_not_scan_a_miss_does() {
        let scans = counter();
        let c = DigestCache::new(scans.clone());
        assert_eq!(*c.get_or_compute(key(0), ok(1)).unwrap(), digest(1));
        assert_eq!(scans.get(), 1);
        // A hit returns the cached digest, whatever the new computation would say.
        assert_eq!(*c.get_or_compute(key(0), ok(2)).unwrap(), digest(1));
        assert_eq!(scans.get(), 1);
        assert!(c.holds(&key(0)) && !c.holds(&key(1)));
        // Another reference time or another ownership is another key.
        assert_eq!(*c.get_or_compute(key(1), ok(3)).unwrap(), digest(3));
        let other = DigestKey {
            ownership: [1; 32],
            ..key(0)
        };
        assert_eq!(*c.get_or_compute(other, ok(4)).unwrap(), digest(4));
        assert_eq!(scans.get(), 3);
        assert_eq!(c.len(), 3);
    }

    #[test]
    fn the_least_recently_used_digest_is_evicted() {
        let scans = counter();
        let c = DigestCache::with_capacity(3, scans.clone());
        for at in 0..3 {
            c.get_or_compute(key(at), ok(0)).unwrap();
        }
        // Use 0 again: 1 is now the least recently used.
        c.get_or_compute(key(0), ok(0)).unwrap();
        c.get_or_compute(key(3), ok(0)).unwrap();
        assert_eq!(c.len(), 3);
        assert!(c.holds(&key(0)) && !c.holds(&key(1)) && c.holds(&key(2)) && c.holds(&key(3)));
        for at in 10..100 {
            c.get_or_compute(key(at), ok(0)).unwrap();
        }
        assert_eq!(c.len(), 3, "bounded");
        assert_eq!(scans.get(), 94);
        assert!(!DigestCache::new(counter()).holds(&key(0)));
    }

    #[test]
    fn a_failed_computation_is_not_cached() {
        let scans = counter();
        let c = DigestCache::new(scans.clone());
        assert_eq!(
            c.get_or_compute(key(0), || Err::<Digest, _>("disk")),
            Err("disk")
        );
        assert!(c.is_empty());
        assert_eq!(*c.get_or_compute(key(0), ok(5)).unwrap(), digest(5));
        assert_eq!(scans.get(), 2);
        // A panicking computation releases its slot too.
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            c.get_or_compute(key(1), || -> Result<Digest, ()> { panic!("scan") })
        }));
        assert!(r.is_err());
        assert!(!c.holds(&key(1)) && c.len() == 1);
    }

    #[test]
    fn concurrent_requests_for_one_key_scan_once() {
        let scans = counter();
        let c = Arc::new(DigestCache::new(scans.clone()));
        let computed = Arc::new(AtomicUsize::new(0));
        let arrived = Arc::new(AtomicUsize::new(0));
        let n = 16;
        let threads: Vec<_> = (0..n)
            .map(|_| {
                let (c, computed, arrived) = (c.clone(), computed.clone(), arrived.clone());
                std::thread::spawn(move || {
                    arrived.fetch_add(1, Ordering::SeqCst);
                    c.get_or_compute(key(7), || {
                        computed.fetch_add(1, Ordering::SeqCst);
                        // The scan lasts until every caller has asked: without single flight
                        // each of them would find no digest and scan too.
                        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
                        while arrived.load(Ordering::SeqCst) < n
                            && tokio::time::Instant::now() < deadline
                        {
                            std::thread::yield_now();
                        }
                        Ok::<_, ()>(digest(9))
                    })
                    .unwrap()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(*t.join().unwrap(), digest(9));
        }
        assert_eq!(computed.load(Ordering::SeqCst), 1);
        assert_eq!(scans.get(), 1);
    }

    #[test]
    fn a_full_cache_of_computations_still_answers_without_growing() {
        let c = Arc::new(DigestCache::with_capacity(1, counter()));
        let (inside, release) = (Arc::new(Barrier::new(2)), Arc::new(Barrier::new(2)));
        let t = {
            let (c, inside, release) = (c.clone(), inside.clone(), release.clone());
            std::thread::spawn(move || {
                c.get_or_compute(key(1), || {
                    inside.wait();
                    release.wait();
                    Ok::<_, ()>(digest(1))
                })
                .unwrap()
            })
        };
        inside.wait();
        // The only slot is being computed: another key is computed uncached.
        assert_eq!(*c.get_or_compute(key(2), ok(2)).unwrap(), digest(2));
        assert_eq!(c.len(), 1);
        release.wait();
        assert_eq!(*t.join().unwrap(), digest(1));
        assert!(c.holds(&key(1)) && !c.holds(&key(2)));
    }

    #[test]
    fn the_key_follows_ownership_not_the_height() {
        let node = |id: u8, swarm: u64| NodeInfo {
            pubkey_ed25519: [id; 32],
            pubkey_x25519: [id; 32],
            ip: Ipv4Addr::LOCALHOST,
            https_port: 1,
            omq_port: 0,
            swarm_id: SwarmId(swarm),
            version: [2, 8, 0],
        };
        let a = Membership::new(1, "00".repeat(32), vec![node(1, 0), node(2, 9)]);
        let b = Membership::new(2, "11".repeat(32), vec![node(1, 0), node(2, 9), node(3, 9)]);
        let c = Membership::new(3, "22".repeat(32), vec![node(1, 0), node(2, 7)]);
        assert_eq!(
            DigestKey::new(&a, SwarmId(0), 5),
            DigestKey::new(&b, SwarmId(0), 5)
        );
        assert_ne!(
            DigestKey::new(&a, SwarmId(0), 5),
            DigestKey::new(&c, SwarmId(0), 5)
        );
        assert_ne!(
            DigestKey::new(&a, SwarmId(0), 5),
            DigestKey::new(&a, SwarmId(9), 5)
        );
        assert_ne!(
            DigestKey::new(&a, SwarmId(0), 5),
            DigestKey::new(&a, SwarmId(0), 6)
        );
    }
}
