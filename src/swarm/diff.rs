//! The difference between two membership snapshots, which the hand-off acts on.

use std::collections::BTreeMap;

use super::{Membership, SwarmId};

impl Membership {
    /// What changed from `old` to `new`: swarms created and dissolved, nodes that joined or
    /// left each swarm, and every node whose swarm changed (including registrations and
    /// decommissions). The hand-off reads this to decide who must receive which data.
    pub fn diff(old: &Membership, new: &Membership) -> MembershipDiff {
        let mut d = MembershipDiff {
            swarms_added: new
                .swarm_ids()
                .filter(|s| old.swarm_ids.binary_search(&s.0).is_err())
                .collect(),
            swarms_removed: old
                .swarm_ids()
                .filter(|s| new.swarm_ids.binary_search(&s.0).is_err())
                .collect(),
            ..MembershipDiff::default()
        };
        for n in &new.nodes {
            let (from, to) = (
                old.swarm_of(&n.pubkey_ed25519),
                new.swarm_of(&n.pubkey_ed25519),
            );
            if from != to {
                if let Some(to) = to {
                    d.joined.entry(to).or_default().push(n.pubkey_ed25519);
                }
                if let Some(from) = from {
                    d.left.entry(from).or_default().push(n.pubkey_ed25519);
                }
                d.moved.push(SwarmChange {
                    node: n.pubkey_ed25519,
                    from,
                    to,
                });
            }
        }
        // Nodes that vanished from the listing altogether.
        for n in old.nodes.iter().filter(|n| n.is_active()) {
            if new.node(&n.pubkey_ed25519).is_none() {
                d.left.entry(n.swarm_id).or_default().push(n.pubkey_ed25519);
                d.moved.push(SwarmChange {
                    node: n.pubkey_ed25519,
                    from: Some(n.swarm_id),
                    to: None,
                });
            }
        }
        // Both loops visit keys in ascending order; merge their outputs into one order.
        for v in d.left.values_mut() {
            v.sort_unstable();
        }
        d.moved.sort_unstable_by_key(|c| c.node);
        d
    }
}

/// One node whose swarm differs between two snapshots. `None` means "in no swarm": not
/// listed, or decommissioned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwarmChange {
    /// The node's ed25519 pubkey.
    pub node: [u8; 32],
    /// Its swarm in the old snapshot.
    pub from: Option<SwarmId>,
    /// Its swarm in the new snapshot.
    pub to: Option<SwarmId>,
}

/// The difference between two membership snapshots (`Membership::diff`). Every list is sorted
/// (swarm ids ascending, pubkeys ascending); maps hold only non-empty entries.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MembershipDiff {
    /// Active swarms that exist now and did not before.
    pub swarms_added: Vec<SwarmId>,
    /// Active swarms that existed before and are gone (dissolved).
    pub swarms_removed: Vec<SwarmId>,
    /// Per swarm of the new snapshot: members that were not in it before.
    pub joined: BTreeMap<SwarmId, Vec<[u8; 32]>>,
    /// Per swarm of the old snapshot: members that are no longer in it.
    pub left: BTreeMap<SwarmId, Vec<[u8; 32]>>,
    /// Every node whose swarm changed, by pubkey.
    pub moved: Vec<SwarmChange>,
}

impl MembershipDiff {
    /// Nothing changed in swarm composition (addresses or versions may still differ).
    pub fn is_empty(&self) -> bool {
        self.moved.is_empty() && self.swarms_added.is_empty() && self.swarms_removed.is_empty()
    }

    /// The change of one node, if its swarm changed.
    pub fn change_of(&self, node: &[u8; 32]) -> Option<&SwarmChange> {
        self.moved
            .binary_search_by(|c| c.node.cmp(node))
            .ok()
            .map(|i| &self.moved[i])
    }
}
