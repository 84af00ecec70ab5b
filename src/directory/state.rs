//! The registry: every node the directory knows, its swarm, and the chain of membership
//! changes (`height`, `block_hash`).
//!
//! Owns registration (admission, idempotent re-announcement, address updates), reachability
//! (reports from active nodes; decommission after `decommission_after` of failures without a
//! success; recommission on the next success) and running `assign` on every membership change.
//! Pure: no I/O, time is `now_ms`; `persist` saves it and `server` serialises access.
//!
//! **Block hash.** Each membership change is a "block": `height` grows by one and
//! `block_hash = BLAKE2b-256(previous block_hash (32 bytes) ‖ height (u64 big-endian) ‖
//! change)`, where `change` is the canonical bytes of what happened (`Change::canonical`).
//! The chain starts at height 0 with `GENESIS_HASH`. The new block hash seeds the swarm
//! assignment of that change (its first 8 bytes, little-endian, as oxend), so the swarms are a
//! deterministic function of the sequence of changes, and two directories fed the same
//! changes agree on every height, hash and swarm.

use super::announce::{Announcement, Report};
use super::assign::assign_swarms;
use super::rng::Mt19937_64;
use crate::swarm::{Membership, NodeInfo, SwarmId};
use blake2::digest::consts::U32;
use blake2::{Blake2b, Digest};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// The hash of height 0: BLAKE2b-256 of `"snode-directory-genesis"`.
pub fn genesis_hash() -> [u8; 32] {
    Blake2b::<U32>::digest(b"snode-directory-genesis").into()
}

/// Who may register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Anyone with a valid announcement (local and test networks).
    Open,
    /// Only these Ed25519 pubkeys (community networks run by known operators).
    AllowList(BTreeSet<[u8; 32]>),
}

impl Admission {
    /// An allow-list from text (e.g. an operator's file): one Ed25519 pubkey in hex per line;
    /// blank lines and `#` comments are ignored. Errors name the first bad line (1-based).
    pub fn allow_list_from_text(text: &str) -> Result<Self, BadAllowList> {
        let mut keys = BTreeSet::new();
        for (i, line) in text.lines().enumerate() {
            let entry = line.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            let mut key = [0u8; 32];
            hex::decode_to_slice(entry, &mut key).map_err(|_| BadAllowList { line: i + 1 })?;
            keys.insert(key);
        }
        Ok(Admission::AllowList(keys))
    }

    /// Whether `key` may register.
    pub fn admits(&self, key: &[u8; 32]) -> bool {
        match self {
            Admission::Open => true,
            Admission::AllowList(keys) => keys.contains(key),
        }
    }
}

/// A line of an allow-list that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("allow-list line {line} is not an Ed25519 pubkey in hex")]
pub struct BadAllowList {
    /// The offending line, 1-based.
    pub line: usize,
}

/// The directory's rules, from its configuration (not persisted: a restart may change them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Who may register.
    pub admission: Admission,
    /// A node reported failing, with no success since, for this long is decommissioned.
    pub decommission_after_ms: i64,
}

/// Everything the directory records about one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    /// Ed25519 pubkey: the identity.
    pub pubkey_ed25519: [u8; 32],
    /// X25519 pubkey.
    pub pubkey_x25519: [u8; 32],
    /// Public IPv4 address.
    pub ip: Ipv4Addr,
    /// HTTPS port.
    pub https_port: u16,
    /// OxenMQ/QUIC port.
    pub omq_port: u16,
    /// Software version.
    pub version: [u16; 3],
    /// Swarm, or `UNASSIGNED` while decommissioned.
    pub swarm_id: SwarmId,
    /// Whether the node is decommissioned (unreachable; listed but not active).
    pub decommissioned: bool,
    /// Directory time of the first registration.
    pub registered_at_ms: i64,
    /// Timestamp of the newest announcement accepted (older ones cannot roll an update back).
    pub announced_at_ms: i64,
    /// Directory time of the last report that it was reachable.
    pub last_reachable_ms: Option<i64>,
    /// Directory time of the first failure reported since the last success.
    pub failing_since_ms: Option<i64>,
}

impl NodeRecord {
    /// Whether the announced contact data differs from what is recorded.
    fn differs_from(&self, a: &Announcement) -> bool {
        (
            self.pubkey_x25519,
            self.ip,
            self.https_port,
            self.omq_port,
            self.version,
        ) != (a.pubkey_x25519, a.ip, a.https_port, a.omq_port, a.version)
    }

    /// The listing of this node.
    pub fn info(&self) -> NodeInfo {
        NodeInfo {
            pubkey_ed25519: self.pubkey_ed25519,
            pubkey_x25519: self.pubkey_x25519,
            ip: self.ip,
            https_port: self.https_port,
            omq_port: self.omq_port,
            swarm_id: self.swarm_id,
            version: self.version,
        }
    }
}

/// One membership change: what a block records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// A node registered for the first time.
    Registered([u8; 32]),
    /// A known node announced a new address, port or version.
    Updated([u8; 32]),
    /// A node stayed unreachable and left its swarm.
    Decommissioned([u8; 32]),
    /// A decommissioned node was reported reachable again.
    Recommissioned([u8; 32]),
}

impl Change {
    /// The canonical bytes hashed into the block: a tag, then the node's Ed25519 pubkey and,
    /// for registrations and updates, its contact data as recorded (x25519 (32) ‖ IPv4 (4) ‖
    /// https port u16 BE ‖ omq port u16 BE ‖ version 3 × u16 BE).
    pub fn canonical(&self, rec: &NodeRecord) -> Vec<u8> {
        let (tag, with_contact): (&[u8], bool) = match self {
            Change::Registered(_) => (b"register", true),
            Change::Updated(_) => (b"update", true),
            Change::Decommissioned(_) => (b"decommission", false),
            Change::Recommissioned(_) => (b"recommission", false),
        };
        let mut m = tag.to_vec();
        m.extend_from_slice(&rec.pubkey_ed25519);
        if with_contact {
            m.extend_from_slice(&rec.pubkey_x25519);
            m.extend_from_slice(&rec.ip.octets());
            m.extend_from_slice(&rec.https_port.to_be_bytes());
            m.extend_from_slice(&rec.omq_port.to_be_bytes());
            for v in rec.version {
                m.extend_from_slice(&v.to_be_bytes());
            }
        }
        m
    }

    /// The node concerned.
    pub fn node(&self) -> &[u8; 32] {
        match self {
            Change::Registered(k)
            | Change::Updated(k)
            | Change::Decommissioned(k)
            | Change::Recommissioned(k) => k,
        }
    }
}

/// What a call changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Effect {
    /// A new block was made (membership, address or swarm changed).
    pub new_block: bool,
    /// Something that is persisted changed (implied by `new_block`).
    pub dirty: bool,
}

/// Why a registration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// Admission is an allow-list without this key (HTTP 403).
    #[error("node is not on the directory's allow-list")]
    NotAdmitted,
    /// Different data in an announcement older than the last one accepted (HTTP 400).
    #[error("announcement is older than the last one accepted for this node")]
    Stale,
}

/// Why a report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// Only active listed nodes may report (HTTP 403).
    #[error("reporter is not an active listed node")]
    ReporterNotActive,
    /// The target is not listed (HTTP 400).
    #[error("target is not a listed node")]
    UnknownTarget,
}

/// The directory's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry {
    policy: Policy,
    height: u64,
    block_hash: [u8; 32],
    nodes: BTreeMap<[u8; 32], NodeRecord>,
}

impl Registry {
    /// An empty registry at height 0.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            height: 0,
            block_hash: genesis_hash(),
            nodes: BTreeMap::new(),
        }
    }

    /// A registry restored from saved parts (`persist`). Records are keyed by their pubkey.
    pub fn from_parts(
        policy: Policy,
        height: u64,
        block_hash: [u8; 32],
        nodes: impl IntoIterator<Item = NodeRecord>,
    ) -> Self {
        Self {
            policy,
            height,
            block_hash,
            nodes: nodes.into_iter().map(|r| (r.pubkey_ed25519, r)).collect(),
        }
    }

    /// The rules in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Number of membership changes so far.
    pub fn height(&self) -> u64 {
        self.height
    }

    /// Hash of the latest block.
    pub fn block_hash(&self) -> [u8; 32] {
        self.block_hash
    }

    /// Hash of the latest block, 64 lowercase hex digits as on the wire.
    pub fn block_hash_hex(&self) -> String {
        hex::encode(self.block_hash)
    }

    /// One node's record.
    pub fn node(&self, key: &[u8; 32]) -> Option<&NodeRecord> {
        self.nodes.get(key)
    }

    /// Every record, by pubkey.
    pub fn nodes(&self) -> impl Iterator<Item = &NodeRecord> {
        self.nodes.values()
    }

    /// The listing as a swarm snapshot (decommissioned nodes included, `UNASSIGNED`).
    pub fn membership(&self) -> Membership {
        Membership::new(
            self.height,
            self.block_hash_hex(),
            self.nodes.values().map(NodeRecord::info).collect(),
        )
    }

    /// Registers or re-announces a node. The same data again changes nothing (nodes
    /// re-announce periodically); new contact data from a newer announcement is an update.
    pub fn register(&mut self, a: &Announcement, now_ms: i64) -> Result<Effect, RegisterError> {
        if !self.policy.admission.admits(&a.pubkey_ed25519) {
            return Err(RegisterError::NotAdmitted);
        }
        let key = a.pubkey_ed25519;
        let change = match self.nodes.get_mut(&key) {
            Some(rec) if !rec.differs_from(a) => {
                let newer = a.timestamp_ms > rec.announced_at_ms;
                rec.announced_at_ms = rec.announced_at_ms.max(a.timestamp_ms);
                return Ok(Effect {
                    new_block: false,
                    dirty: newer,
                });
            }
            Some(rec) if a.timestamp_ms <= rec.announced_at_ms => {
                return Err(RegisterError::Stale);
            }
            Some(rec) => {
                rec.pubkey_x25519 = a.pubkey_x25519;
                rec.ip = a.ip;
                rec.https_port = a.https_port;
                rec.omq_port = a.omq_port;
                rec.version = a.version;
                rec.announced_at_ms = a.timestamp_ms;
                Change::Updated(key)
            }
            None => {
                self.nodes.insert(
                    key,
                    NodeRecord {
                        pubkey_ed25519: key,
                        pubkey_x25519: a.pubkey_x25519,
                        ip: a.ip,
                        https_port: a.https_port,
                        omq_port: a.omq_port,
                        version: a.version,
                        swarm_id: SwarmId::UNASSIGNED,
                        decommissioned: false,
                        registered_at_ms: now_ms,
                        announced_at_ms: a.timestamp_ms,
                        last_reachable_ms: None,
                        failing_since_ms: None,
                    },
                );
                Change::Registered(key)
            }
        };
        self.commit(change);
        Ok(Effect {
            new_block: true,
            dirty: true,
        })
    }

    /// Records a reachability report. A success clears the target's failures and
    /// recommissions it if it was decommissioned; a failure starts (or continues) its failing
    /// period, and decommissions it once that period reaches `decommission_after_ms`.
    pub fn report(&mut self, r: &Report, now_ms: i64) -> Result<Effect, ReportError> {
        let reporter_active = self
            .nodes
            .get(&r.reporter)
            .is_some_and(|n| !n.decommissioned);
        if !reporter_active {
            return Err(ReportError::ReporterNotActive);
        }
        let rec = self
            .nodes
            .get_mut(&r.target)
            .ok_or(ReportError::UnknownTarget)?;
        if r.reachable {
            rec.last_reachable_ms = Some(rec.last_reachable_ms.map_or(now_ms, |t| t.max(now_ms)));
            let was_failing = rec.failing_since_ms.take().is_some();
            if rec.decommissioned {
                rec.decommissioned = false;
                self.commit(Change::Recommissioned(r.target));
                return Ok(Effect {
                    new_block: true,
                    dirty: true,
                });
            }
            // last_reachable_ms alone is not worth a disk write; it is saved with the next one.
            return Ok(Effect {
                new_block: false,
                dirty: was_failing,
            });
        }
        let started = rec.failing_since_ms.is_none() && !rec.decommissioned;
        if started {
            rec.failing_since_ms = Some(now_ms);
        }
        let decommissioned = self.tick(now_ms) > 0;
        Ok(Effect {
            new_block: decommissioned,
            dirty: started || decommissioned,
        })
    }

    /// Decommissions every active node whose failing period reached `decommission_after_ms`
    /// (one block each, in pubkey order). Returns how many. The server calls this
    /// periodically, because a node nobody reports on any more must still go.
    pub fn tick(&mut self, now_ms: i64) -> usize {
        let after = self.policy.decommission_after_ms;
        let due: Vec<[u8; 32]> = self
            .nodes
            .values()
            .filter(|n| !n.decommissioned)
            .filter(|n| {
                n.failing_since_ms
                    .is_some_and(|t| now_ms.saturating_sub(t) >= after)
            })
            .map(|n| n.pubkey_ed25519)
            .collect();
        for key in &due {
            if let Some(rec) = self.nodes.get_mut(key) {
                rec.decommissioned = true;
                rec.swarm_id = SwarmId::UNASSIGNED;
            }
            self.commit(Change::Decommissioned(*key));
        }
        due.len()
    }

    /// Makes a block for `change` (which has been applied to the records) and reassigns the
    /// swarms, seeded by the new block hash.
    fn commit(&mut self, change: Change) {
        let canonical = self
            .nodes
            .get(change.node())
            .map(|rec| change.canonical(rec))
            .unwrap_or_default();
        self.height += 1;
        let mut h = Blake2b::<U32>::new();
        h.update(self.block_hash);
        h.update(self.height.to_be_bytes());
        h.update(&canonical);
        self.block_hash = h.finalize().into();

        // Active nodes with their swarm; the new and the recommissioned are UNASSIGNED.
        let current: BTreeMap<[u8; 32], SwarmId> = self
            .nodes
            .values()
            .filter(|n| !n.decommissioned)
            .map(|n| (n.pubkey_ed25519, n.swarm_id))
            .collect();
        let seed = Mt19937_64::seed_of(&self.block_hash);
        for (key, swarm) in assign_swarms(&current, seed) {
            if let Some(rec) = self.nodes.get_mut(&key) {
                rec.swarm_id = swarm;
            }
        }
    }
}

#[cfg(test)]
mod tests;
