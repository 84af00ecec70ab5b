//! The client's node pool and its onion path (clients.md 1.3): a guard reused across requests
//! (and across runs, through the state file), two more random hops, and the strike rules that
//! decide when a node or the whole path is replaced.
//!
//! Rules, as Session's clients apply them (thresholds 3 and 3):
//! - unknown culprit (timeout, `Request time out`, `Invalid response from snode`, an answer
//!   that does not decrypt): one strike on the path and one on each non-guard hop; at 3 path
//!   strikes the path is dropped and its guard leaves the pool;
//! - named culprit (`502 Next node not found: <ed>` / `Next node is currently unreachable:
//!   <ed>`): that node leaves the pool at once (it is replaced in the path, or the path is
//!   rebuilt if it was the guard), and the path takes a strike so a hostile hop cannot steer
//!   the path by naming others;
//! - the guard itself failing (connection refused, `Service node is not ready`): a strike on
//!   the guard; at 3 it leaves the pool.
//!
//! A path never contains the request's destination. Small networks get shorter paths (at most
//! pool size − 1 hops; 0 means the request goes straight to the destination). Paths do not
//! enforce distinct /24 subnets: a local network lives on 127.0.0.1. Pure: no I/O; the random
//! source is a parameter.

use std::collections::HashMap;

use rand::Rng;
use rand::seq::SliceRandom;

use crate::swarm::NodeInfo;

/// Hops of a full path, guard included (every Session client uses 3).
pub const PATH_HOPS: usize = 3;
/// Strikes after which a path is dropped or a node leaves the pool.
pub const STRIKE_THRESHOLD: u32 = 3;

/// Who is to blame for a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Culprit {
    /// Somewhere on the path, not known where.
    Path,
    /// The guard (first hop) itself.
    Guard,
    /// This node, named by a hop's error.
    Node([u8; 32]),
}

/// Why no path could be made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Every node left the pool.
    #[error("no usable service nodes left")]
    NoNodes,
}

/// The node pool, the guard, the current path and the strike counts.
#[derive(Debug, Clone)]
pub struct PathManager {
    pool: Vec<NodeInfo>,
    guard: Option<[u8; 32]>,
    path: Vec<[u8; 32]>,
    path_strikes: u32,
    node_strikes: HashMap<[u8; 32], u32>,
}

/// Whether a listed node can be contacted at all (oxend lists nodes before their first
/// uptime proof with 0.0.0.0 and port 0; clients drop them).
pub fn is_contactable(n: &NodeInfo) -> bool {
    !n.ip.is_unspecified() && !n.ip.is_broadcast() && n.https_port != 0
}

impl PathManager {
    /// A manager over `pool` (uncontactable nodes are dropped), reusing `guard` if it is
    /// still in the pool.
    pub fn new(pool: Vec<NodeInfo>, guard: Option<[u8; 32]>) -> PathManager {
        let pool: Vec<NodeInfo> = pool.into_iter().filter(is_contactable).collect();
        let guard = guard.filter(|g| pool.iter().any(|n| &n.pubkey_ed25519 == g));
        PathManager {
            pool,
            guard,
            path: Vec::new(),
            path_strikes: 0,
            node_strikes: HashMap::new(),
        }
    }

    /// The usable nodes.
    pub fn pool(&self) -> &[NodeInfo] {
        &self.pool
    }

    /// The current guard, if one was chosen.
    pub fn guard(&self) -> Option<[u8; 32]> {
        self.guard
    }

    /// The node with this key, if still in the pool.
    pub fn node(&self, key: &[u8; 32]) -> Option<&NodeInfo> {
        self.pool.iter().find(|n| &n.pubkey_ed25519 == key)
    }

    /// The current path's keys, guard first (empty until the first request).
    pub fn current_path(&self) -> &[[u8; 32]] {
        &self.path
    }

    /// The path for a request to `dest`, guard first: the current one if it is whole and
    /// avoids `dest`, otherwise a new one (keeping the guard unless it is `dest`).
    pub fn path_for<R: Rng>(
        &mut self,
        dest: &[u8; 32],
        rng: &mut R,
    ) -> Result<Vec<NodeInfo>, PathError> {
        if self.pool.is_empty() {
            return Err(PathError::NoNodes);
        }
        let others = self
            .pool
            .iter()
            .filter(|n| &n.pubkey_ed25519 != dest)
            .count();
        let want = PATH_HOPS.min(others);
        // A temporary guard (the usual one was a destination) is not kept beyond its request.
        let guard_first =
            want == 0 || self.guard.is_none() || self.path.first() == self.guard.as_ref();
        let whole = self.path.len() == want
            && guard_first
            && self
                .path
                .iter()
                .all(|k| k != dest && self.node(k).is_some());
        if !whole {
            self.rebuild(dest, want, rng);
        }
        Ok(self
            .path
            .iter()
            .filter_map(|k| self.node(k).cloned())
            .collect())
    }

    fn rebuild<R: Rng>(&mut self, dest: &[u8; 32], want: usize, rng: &mut R) {
        let guard = match self.guard {
            Some(g) if &g != dest && self.node(&g).is_some() => Some(g),
            _ => self
                .pool
                .iter()
                .map(|n| n.pubkey_ed25519)
                .filter(|k| k != dest)
                .collect::<Vec<_>>()
                .choose(rng)
                .copied(),
        };
        let mut path = Vec::with_capacity(want);
        if let Some(g) = guard.filter(|_| want > 0) {
            path.push(g);
            // Only a guard actually used becomes "the" guard; a temporary one (the usual
            // guard was the destination) does not replace it.
            if self.guard.is_none_or(|old| self.node(&old).is_none()) {
                self.guard = Some(g);
            }
        }
        // Keep the surviving middle hops of the old path where possible; fill the rest.
        let mut candidates: Vec<[u8; 32]> = self
            .pool
            .iter()
            .map(|n| n.pubkey_ed25519)
            .filter(|k| k != dest && !path.contains(k))
            .collect();
        candidates.shuffle(rng);
        for k in self.path.iter().skip(1) {
            if path.len() < want && candidates.contains(k) && !path.contains(k) {
                path.push(*k);
            }
        }
        for k in candidates {
            if path.len() >= want {
                break;
            }
            if !path.contains(&k) {
                path.push(k);
            }
        }
        // A repaired path (same guard) keeps its strikes: otherwise a hop that names others
        // as culprits could keep a path alive forever.
        if path.first() != self.path.first() {
            self.path_strikes = 0;
        }
        self.path = path;
    }

    /// Records a failure and applies the strike rules.
    pub fn strike(&mut self, culprit: Culprit) {
        match culprit {
            Culprit::Path => {
                let hops: Vec<[u8; 32]> = self.path.iter().skip(1).copied().collect();
                for k in hops {
                    self.strike_node(k);
                }
                self.strike_path();
            }
            Culprit::Guard => {
                if let Some(g) = self.path.first().copied().or(self.guard) {
                    self.strike_node(g);
                }
            }
            Culprit::Node(k) => {
                self.remove(&k);
                self.strike_path();
            }
        }
    }

    fn strike_path(&mut self) {
        self.path_strikes += 1;
        if self.path_strikes >= STRIKE_THRESHOLD {
            if let Some(g) = self.path.first().copied() {
                self.remove(&g);
            }
            self.path.clear();
            self.path_strikes = 0;
        }
    }

    fn strike_node(&mut self, k: [u8; 32]) {
        let n = self.node_strikes.entry(k).or_insert(0);
        *n += 1;
        if *n >= STRIKE_THRESHOLD {
            self.remove(&k);
        }
    }

    /// Drops a node from the pool (and from the path, and as guard).
    pub fn remove(&mut self, k: &[u8; 32]) {
        self.pool.retain(|n| &n.pubkey_ed25519 != k);
        self.node_strikes.remove(k);
        if self.guard.as_ref() == Some(k) {
            self.guard = None;
        }
        if self.path.first() == Some(k) {
            // A path without its guard is no path: start over.
            self.path.clear();
            self.path_strikes = 0;
        } else {
            self.path.retain(|p| p != k);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::swarm::SwarmId;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::net::Ipv4Addr;

    fn node(i: u8) -> NodeInfo {
        NodeInfo {
            pubkey_ed25519: [i; 32],
            pubkey_x25519: [i; 32],
            ip: Ipv4Addr::new(10, 0, 0, i),
            https_port: 1000 + u16::from(i),
            omq_port: 0,
            swarm_id: SwarmId(0),
            version: [2, 8, 0],
        }
    }

    fn keys(p: &[NodeInfo]) -> Vec<[u8; 32]> {
        p.iter().map(|n| n.pubkey_ed25519).collect()
    }

    #[test]
    fn paths_avoid_the_destination_and_keep_the_guard() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut pm = PathManager::new((1..=8).map(node).collect(), None);
        let p = keys(&pm.path_for(&[1; 32], &mut rng).unwrap());
        assert_eq!(p.len(), 3);
        assert!(!p.contains(&[1; 32]));
        let mut dedup = p.clone();
        dedup.sort();
        dedup.dedup();
        assert_eq!(dedup.len(), 3, "distinct hops");
        let guard = pm.guard().unwrap();
        assert_eq!(p[0], guard);
        // Same path for another destination off the path.
        let other = (1..=8u8)
            .map(|i| [i; 32])
            .find(|k| !p.contains(k) && *k != [1; 32])
            .unwrap();
        assert_eq!(keys(&pm.path_for(&other, &mut rng).unwrap()), p);
        // A destination on the path forces a new path, still with the same guard.
        let q = keys(&pm.path_for(&p[2], &mut rng).unwrap());
        assert!(!q.contains(&p[2]));
        assert_eq!(q[0], guard);
        // The guard as destination: a temporary guard, the real one is kept.
        let r = keys(&pm.path_for(&guard, &mut rng).unwrap());
        assert!(!r.contains(&guard));
        assert_eq!(pm.guard(), Some(guard));
        // The next request uses the real guard again.
        assert_eq!(keys(&pm.path_for(&[1; 32], &mut rng).unwrap())[0], guard);
    }

    #[test]
    fn small_networks_get_short_paths() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut pm = PathManager::new(vec![node(1)], None);
        assert!(pm.path_for(&[1; 32], &mut rng).unwrap().is_empty());
        let mut pm = PathManager::new(vec![node(1), node(2), node(3)], None);
        assert_eq!(keys(&pm.path_for(&[1; 32], &mut rng).unwrap()).len(), 2);
        let mut pm = PathManager::new(Vec::new(), None);
        assert_eq!(pm.path_for(&[1; 32], &mut rng), Err(PathError::NoNodes));
    }

    #[test]
    fn uncontactable_nodes_and_stale_guards_are_dropped() {
        let mut bare = node(9);
        bare.ip = Ipv4Addr::UNSPECIFIED;
        let mut no_port = node(8);
        no_port.https_port = 0;
        let pm = PathManager::new(vec![node(1), bare, no_port], Some([7; 32]));
        assert_eq!(keys(pm.pool()), vec![[1; 32]]);
        assert_eq!(pm.guard(), None);
        let pm = PathManager::new(vec![node(1), node(2)], Some([2; 32]));
        assert_eq!(pm.guard(), Some([2; 32]));
    }

    #[test]
    fn strike_rules() {
        let mut rng = StdRng::seed_from_u64(3);
        let mut pm = PathManager::new((1..=8).map(node).collect(), None);
        let p = keys(&pm.path_for(&[1; 32], &mut rng).unwrap());

        // A named culprit leaves the pool at once and is replaced; the guard stays.
        pm.strike(Culprit::Node(p[1]));
        assert!(pm.node(&p[1]).is_none());
        let q = keys(&pm.path_for(&[1; 32], &mut rng).unwrap());
        assert_eq!((q[0], q.len()), (p[0], 3));
        assert!(!q.contains(&p[1]));

        // Two more unknown failures: three path strikes drop the path and its guard.
        pm.strike(Culprit::Path);
        assert_eq!(pm.current_path().len(), 3);
        pm.strike(Culprit::Path);
        assert!(pm.current_path().is_empty());
        assert!(pm.node(&p[0]).is_none());
        assert_eq!(pm.guard(), None);
        let r = keys(&pm.path_for(&[1; 32], &mut rng).unwrap());
        assert_ne!(r[0], p[0]);
        assert_eq!(pm.guard(), Some(r[0]));

        // The guard failing three times leaves the pool.
        for _ in 0..2 {
            pm.strike(Culprit::Guard);
            assert!(pm.node(&r[0]).is_some());
        }
        pm.strike(Culprit::Guard);
        assert!(pm.node(&r[0]).is_none());
        assert!(pm.current_path().is_empty());

        // Naming the guard drops the path.
        let s = keys(&pm.path_for(&[1; 32], &mut rng).unwrap());
        pm.strike(Culprit::Node(s[0]));
        assert!(pm.current_path().is_empty());
        assert_eq!(pm.guard(), None);
    }

    #[test]
    fn hops_struck_on_many_paths_leave_the_pool() {
        let mut rng = StdRng::seed_from_u64(4);
        let mut pm = PathManager::new((1..=5).map(node).collect(), None);
        let p = keys(&pm.path_for(&[1; 32], &mut rng).unwrap());
        pm.strike(Culprit::Path);
        pm.strike(Culprit::Path);
        // Hops 2 and 3 have two strikes each; one more unknown failure removes them and,
        // as the third path strike, the guard too.
        pm.strike(Culprit::Path);
        for k in &p {
            assert!(pm.node(k).is_none(), "{k:?}");
        }
        assert_eq!(pm.pool().len(), 2);
    }
}
