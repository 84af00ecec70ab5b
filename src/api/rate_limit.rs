//! Per-client-IP token buckets for client RPC (storage-server.md 1.10).
//!
//! Owns the bucket arithmetic and the bounded client table. Must not see node-to-node or
//! onion traffic (the original limits only direct client RPC), and never logs addresses.
//! Time is a parameter, so tests drive it without sleeping.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use tokio::time::{Duration, Instant};

use crate::config::RateLimitConfig;

/// How often full buckets are purged from the table (as the original: every 10 s).
const PURGE_INTERVAL: Duration = Duration::from_secs(10);

/// A client's identity for limiting: IPv4 address, or the /64 prefix of an IPv6 address
/// (one host usually owns a whole /64, so limiting single v6 addresses would be no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum ClientKey {
    V4(u32),
    V6(u64),
}

impl ClientKey {
    fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(u32::from(v4)),
                None => ClientKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

struct Table {
    buckets: HashMap<ClientKey, Bucket>,
    last_purge: Instant,
}

/// The limiter shared by every request of one node.
pub struct RateLimiter {
    cfg: RateLimitConfig,
    // std Mutex: held for a few arithmetic operations, never across an await.
    table: Mutex<Table>,
}

impl RateLimiter {
    /// A limiter with the given settings; `now` starts the purge clock.
    pub fn new(cfg: RateLimitConfig, now: Instant) -> Self {
        RateLimiter {
            cfg,
            table: Mutex::new(Table {
                buckets: HashMap::new(),
                last_purge: now,
            }),
        }
    }

    fn refill(&self, b: &mut Bucket, now: Instant) {
        let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
        b.tokens =
            (b.tokens + elapsed * f64::from(self.cfg.per_second)).min(f64::from(self.cfg.burst));
        b.last = now;
    }

    /// Whether a request from `ip` at `now` is within its budget (and takes one token).
    pub fn allow(&self, ip: IpAddr, now: Instant) -> bool {
        if !self.cfg.enabled || (self.cfg.exempt_loopback && ip.is_loopback()) {
            return true;
        }
        let key = ClientKey::of(ip);
        let mut t = match self.table.lock() {
            Ok(t) => t,
            // A panic elsewhere while holding the lock left arithmetic state only: keep going.
            Err(poisoned) => poisoned.into_inner(),
        };
        if now.saturating_duration_since(t.last_purge) >= PURGE_INTERVAL {
            self.purge(&mut t, now);
        }
        if let Some(b) = t.buckets.get_mut(&key) {
            let mut bucket = *b;
            self.refill(&mut bucket, now);
            let ok = bucket.tokens >= 1.0;
            if ok {
                bucket.tokens -= 1.0;
            }
            *b = bucket;
            return ok;
        }
        if t.buckets.len() >= self.cfg.max_clients {
            self.purge(&mut t, now);
            if t.buckets.len() >= self.cfg.max_clients {
                // Table full of active clients: refuse newcomers rather than grow without bound.
                return false;
            }
        }
        // A new client starts with a full bucket minus this request, as the original.
        t.buckets.insert(
            key,
            Bucket {
                tokens: f64::from(self.cfg.burst) - 1.0,
                last: now,
            },
        );
        true
    }

    /// Drops buckets that have refilled completely: they carry no information.
    fn purge(&self, t: &mut Table, now: Instant) {
        let burst = f64::from(self.cfg.burst);
        let rate = f64::from(self.cfg.per_second);
        t.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens + elapsed * rate < burst
        });
        t.last_purge = now;
    }

    /// Clients currently tracked.
    pub fn tracked(&self) -> usize {
        self.table.lock().map(|t| t.buckets.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> (RateLimiter, Instant) {
        let now = Instant::now();
        (RateLimiter::new(RateLimitConfig::default(), now), now)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn burst_then_limited_then_refilled() {
        let (l, now) = limiter();
        let a = ip("1.2.3.4");
        for i in 0..600 {
            assert!(l.allow(a, now), "request {i} of the burst");
        }
        assert!(!l.allow(a, now));
        // One token comes back after 1/300 s.
        let later = now + Duration::from_micros(3334);
        assert!(l.allow(a, later));
        assert!(!l.allow(a, later));
    }

    #[test]
    fn steady_rate_is_never_limited() {
        let (l, mut now) = limiter();
        let a = ip("1.2.3.4");
        for _ in 0..5000 {
            assert!(l.allow(a, now));
            now += Duration::from_micros(3334);
        }
    }

    #[test]
    fn clients_are_independent_and_v6_groups_by_64() {
        let (l, now) = limiter();
        for _ in 0..600 {
            assert!(l.allow(ip("2001:db8::1"), now));
        }
        assert!(!l.allow(ip("2001:db8::2"), now), "same /64 shares a bucket");
        assert!(
            l.allow(ip("2001:db8:0:1::1"), now),
            "another /64 is independent"
        );
        assert!(l.allow(ip("5.6.7.8"), now));
        assert!(l.allow(ip("::ffff:5.6.7.9"), now));
    }

    #[test]
    fn table_is_bounded() {
        let now = Instant::now();
        let cfg = RateLimitConfig {
            max_clients: 3,
            ..RateLimitConfig::default()
        };
        let l = RateLimiter::new(cfg, now);
        for i in 0..3u8 {
            assert!(l.allow(IpAddr::from([10, 0, 0, i]), now));
        }
        assert!(
            !l.allow(ip("10.0.0.9"), now),
            "full table refuses newcomers"
        );
        // Once the old buckets have refilled they are purged and make room.
        let later = now + Duration::from_secs(1);
        assert!(l.allow(ip("10.0.0.9"), later));
        assert!(l.tracked() <= 3);
    }

    #[test]
    fn loopback_exemption_and_disabled() {
        let now = Instant::now();
        let cfg = RateLimitConfig {
            exempt_loopback: true,
            burst: 1,
            ..RateLimitConfig::default()
        };
        let l = RateLimiter::new(cfg, now);
        for _ in 0..10 {
            assert!(l.allow(ip("127.0.0.1"), now));
        }
        assert!(l.allow(ip("9.9.9.9"), now));
        assert!(!l.allow(ip("9.9.9.9"), now));
        let off = RateLimiter::new(
            RateLimitConfig {
                enabled: false,
                ..RateLimitConfig::default()
            },
            now,
        );
        for _ in 0..1000 {
            assert!(off.allow(ip("9.9.9.9"), now));
        }
    }
}
