//! The registry: every node the directory knows, its swarm, and the chain of membership
//! changes (`height`, `block_hash`).
//!
//! Owns registration (admission, public addresses only, one active node per `IP:port`, a
//! size bound, idempotent re-announcement, address updates), reachability (reports from active
//! nodes; decommission after `decommission_after` of failures; ending a failing period or
//! recommissioning takes successes from two distinct active reporters) and running `assign`
//! on every membership change. Pure: no I/O, time is `now_ms`; `persist` saves it and
//! `server` serialises access and rate-limits who may call it.
//!
//! **Why two reporters.** Reports are signed, but any listed node signs what it likes. If one
//! success were enough, a single hostile node could bring back a node everyone else finds
//! dead (and have clients routed to it), or keep its own dead accomplice listed by clearing
//! every failing period the honest majority starts. So a success only counts as a voucher;
//! a failing period ends, and a decommissioned node returns, once `REQUIRED_VOUCHERS` distinct
//! active nodes vouched since the failures began (fewer only when fewer other active nodes
//! exist, so a two-node test network can heal). A later failure report from a voucher
//! withdraws its voucher. Vouchers are not persisted: after a restart the directory waits for
//! fresh ones, which only delays a recommission.
//!
//! **Block hash.** Each membership change is a "block": `height` grows by one and
//! `block_hash = BLAKE2b-256(previous block_hash (32 bytes) ‖ height (u64 big-endian) ‖
//! change)`, where `change` is the canonical bytes of what happened (`Change::canonical`).
//! The chain starts at height 0 with `GENESIS_HASH`. The new block hash seeds the swarm
//! assignment of that change (its first 8 bytes, little-endian, as oxend), so the swarms are a
//! deterministic function of the sequence of changes, and two directories fed the same
//! changes agree on every height, hash and swarm.

use super::addr;
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

/// Default bound on the number of nodes listed (active and decommissioned).
pub const DEFAULT_MAX_NODES: usize = 10_000;
/// Distinct active reporters whose successes end a failing period or recommission a node.
pub const REQUIRED_VOUCHERS: usize = 2;
/// Fewest active nodes the directory keeps: decommissioning stops there. Only active nodes
/// may report, so decommissioning the last of them — which a partition does, each side
/// reporting the other unreachable — would leave nobody whose report counts, and the network
/// could never recover. With one left, its successes bring the others back (vouchers from as
/// many reporters as there are other active nodes, see the module header). Found by the
/// simulation (docs/simulation.md, finding 5).
pub const MIN_ACTIVE: usize = 1;
/// Vouchers remembered per node (the newest); more than `REQUIRED_VOUCHERS` so that vouchers
/// of reporters decommissioned since do not crowd out live ones, few so memory stays bounded.
const MAX_VOUCHERS: usize = 8;

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

    /// Number of keys admitted, `None` when admission is open.
    pub fn allowed_count(&self) -> Option<usize> {
        match self {
            Admission::Open => None,
            Admission::AllowList(keys) => Some(keys.len()),
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
    /// Whether announcements may carry non-public addresses (`addr::classify`): only for
    /// networks on loopback or a LAN (`snode testnet`, compose).
    pub allow_private_addresses: bool,
    /// Most nodes listed; registering one more is refused, known nodes still re-announce.
    pub max_nodes: usize,
}

impl Policy {
    /// A public network's rules: public addresses only, `DEFAULT_MAX_NODES`.
    pub fn new(admission: Admission, decommission_after_ms: i64) -> Self {
        Policy {
            admission,
            decommission_after_ms,
            allow_private_addresses: false,
            max_nodes: DEFAULT_MAX_NODES,
        }
    }
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
    /// The announced address is loopback, private, documentation… and the directory lists
    /// public addresses only (HTTP 400).
    #[error("public_ip is in a non-public range: {class}")]
    NonPublicAddress {
        /// The address class (`addr::classify`).
        class: &'static str,
    },
    /// Another active node is listed at the announced `public_ip:storage_port` (HTTP 409).
    #[error("another active node is listed at this public_ip and storage_port")]
    EndpointTaken,
    /// The registry already lists `max` nodes; only known nodes may announce (HTTP 503).
    #[error("the directory lists its maximum of {max} nodes; no new node can register")]
    Full {
        /// The bound (`Policy::max_nodes`).
        max: usize,
    },
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
    /// Per failing or decommissioned node: the active reporters that reported it reachable
    /// since its failures began, with the directory time of their latest success (module
    /// doc). Not persisted.
    vouchers: BTreeMap<[u8; 32], BTreeMap<[u8; 32], i64>>,
}

impl Registry {
    /// An empty registry at height 0.
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            height: 0,
            block_hash: genesis_hash(),
            nodes: BTreeMap::new(),
            vouchers: BTreeMap::new(),
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
            vouchers: BTreeMap::new(),
        }
    }

    /// The rules in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Replaces who may register (an operator's allow-list re-read). Nodes already listed
    /// stay listed; a key no longer admitted cannot announce again.
    pub fn set_admission(&mut self, admission: Admission) {
        self.policy.admission = admission;
    }

    /// Whether an active node other than `key` is listed at `ip:port`.
    fn endpoint_taken(&self, key: &[u8; 32], ip: Ipv4Addr, port: u16) -> bool {
        self.nodes.values().any(|n| {
            !n.decommissioned && n.pubkey_ed25519 != *key && n.ip == ip && n.https_port == port
        })
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
    /// Refused: keys not admitted, non-public addresses (unless the policy allows them), an
    /// `IP:port` another active node holds, and new nodes beyond `max_nodes`.
    pub fn register(&mut self, a: &Announcement, now_ms: i64) -> Result<Effect, RegisterError> {
        if !self.policy.admission.admits(&a.pubkey_ed25519) {
            return Err(RegisterError::NotAdmitted);
        }
        if !self.policy.allow_private_addresses
            && let Some(class) = addr::classify(a.ip)
        {
            return Err(RegisterError::NonPublicAddress { class });
        }
        let key = a.pubkey_ed25519;
        let known = self.nodes.get(&key);
        let moves = known.is_none_or(|rec| (rec.ip, rec.https_port) != (a.ip, a.https_port));
        if known.is_none() && self.nodes.len() >= self.policy.max_nodes {
            return Err(RegisterError::Full {
                max: self.policy.max_nodes,
            });
        }
        let fresh = known.is_none_or(|rec| a.timestamp_ms > rec.announced_at_ms);
        if moves && fresh && self.endpoint_taken(&key, a.ip, a.https_port) {
            return Err(RegisterError::EndpointTaken);
        }
        let change = match self.nodes.get_mut(&key) {
            Some(rec) if !rec.differs_from(a) => {
                // Only the timestamp is new: kept in memory (it refuses older announcements
                // with other data) but not worth a disk write, or every node's periodic
                // re-announcement would rewrite the whole state file. After a restart the
                // saved, older time applies, which only widens the stale check by the
                // announcements of the last few minutes (the signature window).
                rec.announced_at_ms = rec.announced_at_ms.max(a.timestamp_ms);
                return Ok(Effect::default());
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

    /// Whether `key` is listed and active.
    fn is_active(&self, key: &[u8; 32]) -> bool {
        self.nodes.get(key).is_some_and(|n| !n.decommissioned)
    }

    /// Records a reachability report. A success about a failing or decommissioned node is a
    /// voucher: once `REQUIRED_VOUCHERS` distinct active reporters vouched (module doc), its
    /// failures are cleared and, if it was decommissioned, it is recommissioned (unless
    /// another active node took its `IP:port` meanwhile). A failure withdraws the reporter's
    /// voucher, starts (or continues) the failing period, and decommissions the node once that
    /// period reaches `decommission_after_ms`.
    pub fn report(&mut self, r: &Report, now_ms: i64) -> Result<Effect, ReportError> {
        if !self.is_active(&r.reporter) {
            return Err(ReportError::ReporterNotActive);
        }
        let rec = self
            .nodes
            .get(&r.target)
            .ok_or(ReportError::UnknownTarget)?;
        let in_trouble = rec.decommissioned || rec.failing_since_ms.is_some();
        let endpoint = (rec.ip, rec.https_port);
        if r.reachable {
            if !in_trouble {
                if let Some(rec) = self.nodes.get_mut(&r.target) {
                    rec.last_reachable_ms =
                        Some(rec.last_reachable_ms.map_or(now_ms, |t| t.max(now_ms)));
                }
                // last_reachable_ms alone is not worth a disk write; it is saved with the next.
                return Ok(Effect::default());
            }
            let vouchers = self.vouchers.entry(r.target).or_default();
            vouchers.insert(r.reporter, now_ms);
            if vouchers.len() > MAX_VOUCHERS
                && let Some(oldest) = vouchers.iter().min_by_key(|(_, t)| **t).map(|(k, _)| *k)
            {
                vouchers.remove(&oldest);
            }
            let vouchers: Vec<[u8; 32]> = vouchers.keys().copied().collect();
            let vouched = vouchers.iter().filter(|k| self.is_active(k)).count();
            let others = self
                .nodes
                .values()
                .filter(|n| !n.decommissioned && n.pubkey_ed25519 != r.target)
                .count();
            if vouched < REQUIRED_VOUCHERS.min(others) {
                return Ok(Effect::default());
            }
            let decommissioned = rec.decommissioned;
            if decommissioned && self.endpoint_taken(&r.target, endpoint.0, endpoint.1) {
                // Its address now belongs to another active node: it comes back only by
                // announcing a free one (then the next vouchers recommission it).
                return Ok(Effect::default());
            }
            self.vouchers.remove(&r.target);
            let Some(rec) = self.nodes.get_mut(&r.target) else {
                return Err(ReportError::UnknownTarget);
            };
            rec.last_reachable_ms = Some(rec.last_reachable_ms.map_or(now_ms, |t| t.max(now_ms)));
            rec.failing_since_ms = None;
            if decommissioned {
                rec.decommissioned = false;
                self.commit(Change::Recommissioned(r.target));
                return Ok(Effect {
                    new_block: true,
                    dirty: true,
                });
            }
            return Ok(Effect {
                new_block: false,
                dirty: true,
            });
        }
        if let Some(v) = self.vouchers.get_mut(&r.target) {
            v.remove(&r.reporter);
            if v.is_empty() {
                self.vouchers.remove(&r.target);
            }
        }
        let Some(rec) = self.nodes.get_mut(&r.target) else {
            return Err(ReportError::UnknownTarget);
        };
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
    /// (one block each, the longest failing first, then in pubkey order), while more than
    /// [`MIN_ACTIVE`] nodes stay active. Returns how many. The server calls this
    /// periodically, because a node nobody reports on any more must still go.
    pub fn tick(&mut self, now_ms: i64) -> usize {
        let after = self.policy.decommission_after_ms;
        let mut due: Vec<(i64, [u8; 32])> = self
            .nodes
            .values()
            .filter(|n| !n.decommissioned)
            .filter_map(|n| {
                n.failing_since_ms
                    .filter(|t| now_ms.saturating_sub(*t) >= after)
                    .map(|t| (t, n.pubkey_ed25519))
            })
            .collect();
        due.sort_unstable();
        let active = self.nodes.values().filter(|n| !n.decommissioned).count();
        let room = active.saturating_sub(MIN_ACTIVE);
        let due: Vec<[u8; 32]> = due.into_iter().take(room).map(|(_, k)| k).collect();
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
