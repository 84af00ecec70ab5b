//! Swarms: pubkey → swarm space → owning swarm, and the membership snapshot.
//!
//! Owns the mapping of section 3.2 of `protocol/storage-server.md` (identical on the client
//! side, clients.md 1.4), the immutable `Membership` value every other module reads, and the
//! `MembershipDiff` between two snapshots that the hand-off acts on, and who may push what:
//! the memberships a node remembers (`PreviousMembership`) and the admission rules on them
//! (`is_swarm_peer`, `may_push`).
//! Pure: no I/O, no tokio, no clock (the time of a membership change or a check is a
//! parameter, read by the caller from the node's clock).
//!
//! Construction goes through `Membership::new` (or `single`/`default`): it sorts the nodes and
//! caches the sorted ids of the active swarms in a private field, so that `swarm_for`, which runs
//! on every client request, is a binary search with no allocation. The public fields are for
//! reading; a snapshot is never mutated, a membership change builds a new one.
//!
//! Layout: this file (ids, nodes, the swarm space mapping, `Membership` and its lookups, the
//! admission rules), `diff` (`Membership::diff` and the `MembershipDiff` it returns),
//! `previous` (`PreviousMembership`: the last few memberships whole, and who owned what over
//! the last 31 days, compactly).

mod diff;
mod previous;

use crate::message::AccountId;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

pub use diff::{MembershipDiff, SwarmChange};
pub use previous::{
    FORMER_OWNERS_MAX_ENTRIES, FORMER_OWNERS_MAX_MEMBERSHIPS, FORMER_OWNERS_WINDOW_MS,
    PREVIOUS_KEPT, PreviousMembership, Remembered,
};

/// A swarm id. `SwarmId::UNASSIGNED` (2^64-1) marks a decommissioned node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SwarmId(pub u64);

impl SwarmId {
    /// Not in any swarm (decommissioned or not yet assigned).
    pub const UNASSIGNED: SwarmId = SwarmId(u64::MAX);
}

/// One service node as the directory lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Ed25519 pubkey: the node's identity (also used as its "legacy" pubkey).
    pub pubkey_ed25519: [u8; 32],
    /// X25519 pubkey, for onion layers.
    pub pubkey_x25519: [u8; 32],
    /// Public IPv4 address.
    pub ip: Ipv4Addr,
    /// HTTPS port.
    pub https_port: u16,
    /// OxenMQ/QUIC port of the original; snode reports its HTTPS port's neighbour or 0.
    pub omq_port: u16,
    /// The swarm this node belongs to, or `UNASSIGNED`.
    pub swarm_id: SwarmId,
    /// Software version (major, minor, patch).
    pub version: [u16; 3],
}

impl NodeInfo {
    /// Whether the node is in a swarm (not decommissioned).
    pub fn is_active(&self) -> bool {
        self.swarm_id != SwarmId::UNASSIGNED
    }
}

/// An immutable snapshot of the network: every node and its swarm.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Membership {
    /// Directory height: bumps on every membership change.
    pub height: u64,
    /// Directory block hash (64 hex) of that height.
    pub block_hash: String,
    /// Every listed node, active or decommissioned, sorted by ed25519 pubkey.
    pub nodes: Vec<NodeInfo>,
    /// Ids of the active swarms, sorted and distinct; derived from `nodes` by `new`.
    swarm_ids: Vec<u64>,
    /// The listings between the one published before this one and this one, oldest first,
    /// when the directory follower read back heights its polls skipped
    /// (`network::follow_directory`); empty otherwise. Read only for the memory of former
    /// owners ([`PreviousMembership`]): a node that owned an account for one height between
    /// two of our polls may hand it off to us (docs/simulation.md, finding 8).
    pub passed: Vec<std::sync::Arc<Membership>>,
}

/// The swarm space of an account: XOR of the four big-endian u64 words of its 32 key bytes
/// (the type byte is not part of it), as `pubkey_to_swarm_space` of the original.
pub fn swarm_space(account: &AccountId) -> u64 {
    account
        .key
        .chunks_exact(8)
        .map(|w| {
            let mut b = [0u8; 8];
            b.copy_from_slice(w);
            u64::from_be_bytes(b)
        })
        .fold(0, |acc, w| acc ^ w)
}

/// The id in `ids` (sorted, distinct) nearest to `space` on the 2^64 circle: the rule of
/// [`Membership::swarm_for_space`], shared with the remembered memberships
/// ([`PreviousMembership`]), which keep the ids but not the `Membership`.
fn nearest_swarm(ids: &[u64], space: u64) -> Option<u64> {
    let (&first, &last) = (ids.first()?, ids.last()?);
    if ids.len() == 1 {
        return Some(first);
    }
    let i = ids.partition_point(|&id| id < space);
    let right = ids.get(i).copied().unwrap_or(first);
    let left = match i.checked_sub(1) {
        Some(j) if i < ids.len() => ids[j],
        // i == 0: wrap to the last. i == len: right wrapped to the first, whose
        // predecessor is the last.
        _ => last,
    };
    let dright = right.wrapping_sub(space);
    let dleft = space.wrapping_sub(left);
    Some(if dright < dleft { right } else { left })
}

impl Membership {
    /// Builds a snapshot. Nodes are sorted by ed25519 pubkey; if the same pubkey is listed
    /// twice, the first listing wins (a directory bug must not make lookups ambiguous).
    pub fn new(height: u64, block_hash: String, mut nodes: Vec<NodeInfo>) -> Self {
        // Stable sort, so dedup keeps the first listing of a duplicated key.
        nodes.sort_by_key(|n| n.pubkey_ed25519);
        nodes.dedup_by(|later, first| later.pubkey_ed25519 == first.pubkey_ed25519);
        let mut swarm_ids: Vec<u64> = nodes
            .iter()
            .filter(|n| n.is_active())
            .map(|n| n.swarm_id.0)
            .collect();
        swarm_ids.sort_unstable();
        swarm_ids.dedup();
        Self {
            height,
            block_hash,
            nodes,
            swarm_ids,
            passed: Vec::new(),
        }
    }

    /// A one-node network: `node` alone in swarm 0, which therefore owns every account.
    /// Used when the node runs without a directory.
    pub fn single(mut node: NodeInfo) -> Self {
        node.swarm_id = SwarmId(0);
        Self::new(0, "0".repeat(64), vec![node])
    }

    /// The ids of the active swarms, ascending.
    pub fn swarm_ids(&self) -> impl Iterator<Item = SwarmId> + '_ {
        self.swarm_ids.iter().map(|&id| SwarmId(id))
    }

    /// Every active swarm with its members (sorted by ed25519 pubkey). Decommissioned nodes
    /// (`UNASSIGNED`) are in no swarm.
    pub fn swarms(&self) -> BTreeMap<SwarmId, Vec<&NodeInfo>> {
        let mut out: BTreeMap<SwarmId, Vec<&NodeInfo>> = BTreeMap::new();
        for n in self.nodes.iter().filter(|n| n.is_active()) {
            out.entry(n.swarm_id).or_default().push(n);
        }
        out
    }

    /// The swarm that owns `account`, or `None` when there is no active swarm.
    pub fn swarm_for(&self, account: &AccountId) -> Option<SwarmId> {
        self.swarm_for_space(swarm_space(account))
    }

    /// The swarm nearest to `space` on the 2^64 circle (section 3.2): `right` is the first id
    /// ≥ space (wrapping to the first), `left` its predecessor (wrapping to the last); right
    /// wins only if strictly nearer, so ties go left. No allocation: a binary search on the
    /// cached ids.
    pub fn swarm_for_space(&self, space: u64) -> Option<SwarmId> {
        nearest_swarm(&self.swarm_ids, space).map(SwarmId)
    }

    /// The members of `swarm`, sorted by ed25519 pubkey; empty for an unknown swarm and for
    /// `UNASSIGNED`.
    pub fn members(&self, swarm: SwarmId) -> Vec<&NodeInfo> {
        if swarm == SwarmId::UNASSIGNED {
            return Vec::new();
        }
        self.nodes.iter().filter(|n| n.swarm_id == swarm).collect()
    }

    /// The node with this ed25519 pubkey, active or decommissioned (onion relaying still
    /// reaches decommissioned nodes).
    pub fn node(&self, pubkey_ed25519: &[u8; 32]) -> Option<&NodeInfo> {
        self.nodes
            .binary_search_by(|n| n.pubkey_ed25519.cmp(pubkey_ed25519))
            .ok()
            .map(|i| &self.nodes[i])
    }

    /// The swarm of this node, or `None` if it is unknown or decommissioned.
    pub fn swarm_of(&self, pubkey_ed25519: &[u8; 32]) -> Option<SwarmId> {
        self.node(pubkey_ed25519)
            .filter(|n| n.is_active())
            .map(|n| n.swarm_id)
    }

    /// Whether this node is listed and in a swarm.
    pub fn is_active(&self, pubkey_ed25519: &[u8; 32]) -> bool {
        self.swarm_of(pubkey_ed25519).is_some()
    }
}

/// Whether `peer` may send us swarm traffic for our swarm (forwarded requests, anti-entropy
/// and bootstrap pushes): it shares our swarm in the current membership or one of the last
/// [`PREVIOUS_KEPT`] (`previous`, from [`PreviousMembership::get`]); a count, not the time
/// window of hand-offs (see [`PREVIOUS_KEPT`]).
pub fn is_swarm_peer(
    current: &Membership,
    previous: &[std::sync::Arc<Membership>],
    me: &[u8; 32],
    peer: &[u8; 32],
) -> bool {
    std::iter::once(current)
        .chain(previous.iter().map(|m| &**m))
        .any(|m| {
            let ours = m.swarm_of(me);
            ours.is_some_and(|s| s != SwarmId::UNASSIGNED) && m.swarm_of(peer) == ours
        })
}

/// `current` without our swarm: the swarm that owns an account there is the one that owned it
/// before our swarm took it over (a new swarm takes its range from the nearest existing one),
/// which a node that just joined cannot remember. Computed once per batch of pushes.
pub fn without_our_swarm(current: &Membership, me: &[u8; 32]) -> Membership {
    let ours = current.swarm_of(me);
    let nodes = current
        .nodes
        .iter()
        .filter(|n| Some(n.swarm_id) != ours)
        .cloned()
        .collect();
    Membership::new(current.height, current.block_hash.clone(), nodes)
}

/// Whether `peer` may push `account`'s messages (or tombstones) to us at `now_ms` (our
/// clock): a peer of our swarm (see [`is_swarm_peer`], over the last [`PREVIOUS_KEPT`]
/// memberships), a node of the swarm that owned the account in a remembered membership (a
/// hand-off): one of the last [`PREVIOUS_KEPT`], or one that stopped being current less than
/// [`FORMER_OWNERS_WINDOW_MS`] ago (a node cut off and decommissioned while its account moved
/// may come back many changes later with the only copy) — or, only while we remember no
/// membership that placed us in a swarm, among the last [`PREVIOUS_KEPT`] or within the window
/// (a node that just joined or restarted, possibly into a swarm that just formed), a node of
/// the swarm that would own the account if ours did not exist (`without`, from
/// [`without_our_swarm`]). A node with history never takes the last rule: it would let the
/// neighbouring swarm push into every account of ours. Once the window and the last
/// [`PREVIOUS_KEPT`] changes are past, a former owner may not push the account, however often
/// it owned it before.
pub fn may_push(
    current: &Membership,
    remembered: &Remembered,
    now_ms: i64,
    without: &Membership,
    me: &[u8; 32],
    peer: &[u8; 32],
    account: &AccountId,
) -> bool {
    let owned_by_peer = |m: &Membership| {
        m.swarm_for(account)
            .is_some_and(|s| s != SwarmId::UNASSIGNED && m.swarm_of(peer) == Some(s))
    };
    let recent = remembered.recent();
    is_swarm_peer(current, recent, me, peer)
        || recent.iter().any(|m| owned_by_peer(m))
        || remembered.owned_within_window(peer, swarm_space(account), now_ms)
        || (!remembered.was_in_a_swarm(me, now_ms) && owned_by_peer(without))
}

#[cfg(test)]
mod tests;
