//! The simulation's directory: who is listed, in which swarm, and when each node learns it.
//!
//! Owns the listing (every admitted node with its swarm, decommissioned ones listed
//! unassigned, as oxend does), swarm assignment with the directory's own function
//! (`snode::directory::assign::assign_swarms`, oxend's rules), and each node's view: a node
//! follows the directory by polling every `membership_poll_interval` (5 s), so a change
//! reaches each node after its own delay, drawn from the seed. Must not decide when churn
//! happens (the plan does).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rand::Rng as _;
use rand_chacha::ChaCha8Rng;
use snode::swarm::{Membership, NodeInfo, SwarmId};
use tokio::sync::watch;

/// Longest delay before a node acts on a new membership (its poll interval).
pub const POLL_MS: u64 = 5_000;

pub struct Directory {
    /// Every node the simulation has, listed or not (swarm ids filled in per snapshot).
    infos: Vec<NodeInfo>,
    /// Listed nodes: index → swarm (`UNASSIGNED` = decommissioned).
    listed: BTreeMap<usize, SwarmId>,
    /// Listed but decommissioned: left out of assignment.
    decommissioned: BTreeSet<usize>,
    height: u64,
    /// Each node's membership channel (what its replication and RPC act on).
    senders: Vec<watch::Sender<Arc<Membership>>>,
    /// Snapshots on their way to nodes: (simulated ms, node, snapshot).
    pending: Vec<(u64, usize, Arc<Membership>)>,
    rng: ChaCha8Rng,
    latest: Arc<Membership>,
}

impl Directory {
    /// A directory that lists `0..members` of `infos`, assigned from `seed`; every node's
    /// channel starts with that snapshot.
    pub fn new(infos: Vec<NodeInfo>, members: usize, seed: u64, rng: ChaCha8Rng) -> Directory {
        let senders = infos
            .iter()
            .map(|_| watch::channel(Arc::new(Membership::default())).0)
            .collect();
        let mut d = Directory {
            listed: (0..members).map(|n| (n, SwarmId::UNASSIGNED)).collect(),
            decommissioned: BTreeSet::new(),
            infos,
            height: 0,
            senders,
            pending: Vec::new(),
            rng,
            latest: Arc::new(Membership::default()),
        };
        d.reassign(seed);
        for s in &d.senders {
            s.send_replace(d.latest.clone());
        }
        d
    }

    /// Node `n`'s membership channel, for its `NodeOptions`.
    pub fn subscribe(&self, n: usize) -> watch::Receiver<Arc<Membership>> {
        self.senders[n].subscribe()
    }

    /// The directory's current listing (what clients are told).
    pub fn latest(&self) -> Arc<Membership> {
        self.latest.clone()
    }

    /// Admits node `n`, reassigns and publishes at `now_ms`.
    pub fn join(&mut self, n: usize, seed: u64, now_ms: u64) {
        self.listed.insert(n, SwarmId::UNASSIGNED);
        self.decommissioned.remove(&n);
        self.reassign(seed);
        self.publish(now_ms);
    }

    /// Decommissions node `n`, reassigns and publishes at `now_ms`.
    pub fn leave(&mut self, n: usize, seed: u64, now_ms: u64) {
        self.listed.insert(n, SwarmId::UNASSIGNED);
        self.decommissioned.insert(n);
        self.reassign(seed);
        self.publish(now_ms);
    }

    /// Delivers every snapshot due by `now_ms` (all of them with `now_ms = u64::MAX`).
    pub fn deliver(&mut self, now_ms: u64) {
        let (due, later): (Vec<_>, Vec<_>) =
            self.pending.drain(..).partition(|(t, _, _)| *t <= now_ms);
        self.pending = later;
        for (_, n, m) in due {
            // A node never goes back to an older snapshot (its follower keeps the newest).
            if self.senders[n].borrow().height < m.height {
                self.senders[n].send_replace(m);
            }
        }
    }

    /// Assigns every listed node (decommissioned ones stay out) and takes a new snapshot.
    fn reassign(&mut self, seed: u64) {
        let current = self
            .listed
            .iter()
            .filter(|(n, _)| !self.decommissioned.contains(*n))
            .map(|(n, s)| (self.infos[*n].pubkey_ed25519, *s))
            .collect();
        let assigned = snode::directory::assign::assign_swarms(&current, seed);
        for (n, s) in self.listed.iter_mut() {
            *s = assigned
                .get(&self.infos[*n].pubkey_ed25519)
                .copied()
                .unwrap_or(SwarmId::UNASSIGNED);
        }
        self.snapshot();
    }

    fn snapshot(&mut self) {
        self.height += 1;
        let nodes = self
            .listed
            .iter()
            .map(|(n, s)| NodeInfo {
                swarm_id: *s,
                ..self.infos[*n].clone()
            })
            .collect();
        self.latest = Arc::new(Membership::new(
            self.height,
            format!("{:064x}", self.height),
            nodes,
        ));
    }

    /// Queues the latest snapshot for every node, each after its own poll delay.
    fn publish(&mut self, now_ms: u64) {
        for n in 0..self.senders.len() {
            let at = now_ms + self.rng.gen_range(0..POLL_MS);
            self.pending.push((at, n, self.latest.clone()));
        }
        self.pending.sort_by_key(|(t, n, _)| (*t, *n));
    }
}
