//! Token buckets for the directory's write routes (`/register`, `/report`): one table per
//! source IP and one per node key, each bounded in size.
//!
//! Owns the bucket arithmetic, the limits' settings and their text form (`RATE:BURST` or
//! `off`, as the CLI takes them). Pure: time is a parameter, nothing here logs (so no address
//! or key can end up in a log). Must not decide who may register (that is `state`).
//!
//! Why per key as well as per IP: a node's key is the identity the registry works on, and one
//! host may front many keys; why per IP as well as per key: keys are free to make, so only
//! the source address bounds what one host can make the directory verify and save.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::time::Duration;
use tokio::time::Instant;

/// Most entries a table holds; when it is full of partly-drained buckets, newcomers are
/// refused (a bounded table is the point: the directory's memory does not grow with the
/// number of addresses or keys an attacker can use).
pub const MAX_TRACKED: usize = 100_000;
/// How often full buckets are dropped from a table.
const PURGE_INTERVAL: Duration = Duration::from_secs(10);

/// One limit: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Tokens added per second.
    pub per_second: f64,
    /// Size of the bucket (requests that may arrive at once after a quiet period).
    pub burst: u32,
}

impl Rate {
    /// `per_second` requests a second, bursts of `burst`.
    pub const fn new(per_second: f64, burst: u32) -> Rate {
        Rate { per_second, burst }
    }
}

/// A limit as the CLI takes it: `RATE:BURST` (requests per second, bucket size; `0.5:10`) or
/// `off`. `None` is off.
pub fn parse_rate(s: &str) -> Result<Option<Rate>, String> {
    let s = s.trim();
    if s.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    let bad =
        || format!("{s:?} is not RATE:BURST (requests per second and burst, e.g. 2:60) or off");
    let (rate, burst) = s.split_once(':').ok_or_else(bad)?;
    let per_second: f64 = rate.trim().parse().map_err(|_| bad())?;
    let burst: u32 = burst.trim().parse().map_err(|_| bad())?;
    if !per_second.is_finite() || per_second <= 0.0 || burst == 0 {
        return Err(format!(
            "{s:?}: rate and burst must be positive (or say off)"
        ));
    }
    Ok(Some(Rate { per_second, burst }))
}

/// The four limits of the directory. `None` disables one.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DirectoryLimits {
    /// `/register` per source IP (IPv6: per /64).
    pub register_per_ip: Option<Rate>,
    /// `/register` per announced node key.
    pub register_per_key: Option<Rate>,
    /// `/report` per source IP (IPv6: per /64).
    pub report_per_ip: Option<Rate>,
    /// `/report` per reporting node key.
    pub report_per_key: Option<Rate>,
}

impl Default for DirectoryLimits {
    /// Fit for a public network. A node announces once a minute and reports one peer test
    /// every 10 s (the node defaults), so a key needs 1/60 and 1/10 per second; a host may run
    /// a few dozen nodes. Bursts cover a restart, and both rates leave room for shorter
    /// intervals. Loopback is not exempt: a directory behind a local reverse proxy should raise
    /// the per-IP limits rather than have everything through the proxy share one bucket.
    fn default() -> Self {
        DirectoryLimits {
            register_per_ip: Some(Rate::new(2.0, 60)),
            register_per_key: Some(Rate::new(0.2, 10)),
            report_per_ip: Some(Rate::new(20.0, 200)),
            report_per_key: Some(Rate::new(2.0, 30)),
        }
    }
}

impl DirectoryLimits {
    /// A local test network: every node and client shares 127.0.0.1 and nodes announce every
    /// few seconds and test a peer several times a second, so the per-IP buckets carry the
    /// whole network (30 nodes and more) and per-key buckets a fast node.
    pub fn testnet() -> Self {
        DirectoryLimits {
            register_per_ip: Some(Rate::new(500.0, 5_000)),
            register_per_key: Some(Rate::new(20.0, 200)),
            report_per_ip: Some(Rate::new(2_000.0, 20_000)),
            report_per_key: Some(Rate::new(50.0, 500)),
        }
    }
}

/// The identity an IP limit counts: an IPv4 address, or an IPv6 /64 (one host usually owns a
/// whole /64, so single IPv6 addresses would be no limit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpKey {
    /// An IPv4 address (also IPv4-mapped IPv6).
    V4(u32),
    /// The upper 64 bits of an IPv6 address.
    V6(u64),
}

impl IpKey {
    /// The key of `ip`.
    pub fn of(ip: IpAddr) -> IpKey {
        match ip {
            IpAddr::V4(v4) => IpKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpKey::V4(u32::from(v4)),
                None => IpKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Buckets of one limit, keyed by `K`, at most `max` of them.
#[derive(Debug)]
pub struct Buckets<K> {
    rate: Option<Rate>,
    max: usize,
    buckets: HashMap<K, Bucket>,
    last_purge: Option<Instant>,
}

impl<K: Hash + Eq + Copy> Buckets<K> {
    /// A table for `rate` (`None`: everything passes) holding at most `max` keys.
    pub fn new(rate: Option<Rate>, max: usize) -> Self {
        Buckets {
            rate,
            max,
            buckets: HashMap::new(),
            last_purge: None,
        }
    }

    /// Whether one more request of `key` at `now` is within its budget (it takes a token).
    pub fn allow(&mut self, key: K, now: Instant) -> bool {
        let Some(rate) = self.rate else {
            return true;
        };
        if self
            .last_purge
            .is_none_or(|t| now.saturating_duration_since(t) >= PURGE_INTERVAL)
        {
            self.purge(rate, now);
        }
        if let Some(b) = self.buckets.get_mut(&key) {
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens = (b.tokens + elapsed * rate.per_second).min(f64::from(rate.burst));
            b.last = now;
            if b.tokens >= 1.0 {
                b.tokens -= 1.0;
                return true;
            }
            return false;
        }
        if self.buckets.len() >= self.max {
            self.purge(rate, now);
            if self.buckets.len() >= self.max {
                return false;
            }
        }
        self.buckets.insert(
            key,
            Bucket {
                tokens: f64::from(rate.burst) - 1.0,
                last: now,
            },
        );
        true
    }

    /// Number of keys tracked.
    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Drops buckets that have refilled: they say nothing a new bucket would not.
    fn purge(&mut self, rate: Rate, now: Instant) {
        let burst = f64::from(rate.burst);
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens + elapsed * rate.per_second < burst
        });
        self.last_purge = Some(now);
    }
}

#[cfg(test)]
mod tests;
