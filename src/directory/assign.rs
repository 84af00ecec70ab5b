//! Swarm assignment: oxend's rules (storage-server.md 3.3) as one pure function.
//!
//! Owns which swarm every active node is in after a membership change. Input: every active
//! node with its current swarm (`SwarmId::UNASSIGNED` for a node that is new or was just
//! recommissioned) and a seed; output: every one of those nodes with a swarm. The result is a
//! deterministic function of its inputs: the directory seeds it from the new block hash, so
//! the same state always yields the same swarms (and a restart cannot reshuffle the network).
//! Pure: no I/O, no clock, no global state. Decommissioned nodes are not passed in at all.
//!
//! The steps are oxend's (`service_node_swarm.cpp` `calc_swarm_changes`), in its order:
//! 0. ensure there is a swarm (the first id is 0);
//! 1. each new node joins a random swarm among those at or below the 25th-percentile size,
//!    and after each join a new swarm may be formed from the excess (below);
//! 2. "Robin Hood": swarms below `MIN_SWARM_SIZE` take random nodes from swarms at or above
//!    the 75th-percentile size that have nodes to spare;
//! 3. new swarms from the excess;
//! 4. swarms still below `MIN_SWARM_SIZE` are dissolved (unless they are the only one) and
//!    their nodes go, one by one, to a random smallest swarm.
//!
//! "Excess" is Σ max(0, size − `EXCESS_BASE`); when it reaches `NEW_SWARM_SIZE +
//! IDEAL_SWARM_MARGIN · #swarms` and no swarm is below the minimum, `NEW_SWARM_SIZE` random
//! nodes of the swarms above `EXCESS_BASE` (so larger swarms give more) form a new swarm,
//! whose id is the midpoint of the largest circular gap between existing ids.
//!
//! **Divergence from oxend, on purpose: `MAX_SWARM_SIZE` is enforced.** oxend declares
//! MAX_SWARM_SIZE 10 but its assignment never consults it: nothing in the steps above bounds
//! a swarm's size, and a lone swarm grows to 14 nodes before its excess (9) reaches the
//! threshold 7 + 2·1. With oxend's hundreds of nodes that is transient; on a small network of
//! this directory it would be the normal state (a 12-node testnet in one swarm of 12). So snode (a) prefers swarms below the maximum when filling, and (b) adds step 5: run
//! the excess rule once more, then split any swarm still above `MAX_SWARM_SIZE`, moving
//! `min(NEW_SWARM_SIZE, size − MIN_SWARM_SIZE)` random members to a new swarm (11 → 5 + 6,
//! 12 → 5 + 7). Hence, whenever there are at least `MIN_SWARM_SIZE` active nodes, every swarm
//! has between `MIN_SWARM_SIZE` and `MAX_SWARM_SIZE` members; with fewer, all are in one swarm.
//! Step 5 also makes the output a fixed point: assigning it again changes nothing.
//!
//! Details that 3.3 does not pin down (and that cannot be checked against oxend here) are
//! chosen and fixed: the percentile of a list of sizes is the element at index
//! `p · (n − 1) / 100` (floor) of the sorted sizes; new nodes are placed in ascending pubkey
//! order; a donor in step 2 must keep at least `MIN_SWARM_SIZE` members; ties between swarms
//! go to the lowest id.

use super::rng::Mt19937_64;
use crate::swarm::SwarmId;
use std::collections::BTreeMap;

/// A swarm below this size steals nodes or is dissolved.
pub const MIN_SWARM_SIZE: usize = 5;
/// Each swarm's share of the excess needed before a new swarm is formed.
pub const IDEAL_SWARM_MARGIN: usize = 2;
/// Size of a swarm formed from the excess.
pub const NEW_SWARM_SIZE: usize = 7;
/// Members above this count are "excess".
pub const EXCESS_BASE: usize = 5;
/// New nodes go to swarms at or below this percentile of sizes.
pub const FILL_SWARM_LOWER_PERCENTILE: usize = 25;
/// Small swarms steal from swarms at or above this percentile of sizes.
pub const STEALING_SWARM_UPPER_PERCENTILE: usize = 75;
/// Nodes of a dissolved swarm go to swarms at or below this percentile (the smallest).
pub const DECOMMISSIONED_REDISTRIBUTION_LOWER_PERCENTILE: usize = 0;
/// Largest swarm snode allows (see the module doc: oxend does not enforce it).
pub const MAX_SWARM_SIZE: usize = 10;
/// Largest swarm id; 2^64 − 1 is `SwarmId::UNASSIGNED`.
pub const MAX_ID: u64 = u64::MAX - 1;

/// A node, by Ed25519 pubkey.
pub type NodeKey = [u8; 32];

/// Swarm id → members, in a deterministic order.
type Swarms = BTreeMap<u64, Vec<NodeKey>>;

/// Assigns every node of `current` to a swarm with oxend's rules (module doc), drawing from
/// `mt19937_64(seed)`. Nodes mapped to `UNASSIGNED` are placed; the others keep their swarm
/// unless balancing moves them. The output has exactly the keys of `current`.
pub fn assign_swarms(
    current: &BTreeMap<NodeKey, SwarmId>,
    seed: u64,
) -> BTreeMap<NodeKey, SwarmId> {
    if current.is_empty() {
        return BTreeMap::new();
    }
    let mut rng = Mt19937_64::new(seed);
    let mut swarms = Swarms::new();
    let mut unassigned = Vec::new();
    for (key, swarm) in current {
        if *swarm == SwarmId::UNASSIGNED {
            unassigned.push(*key);
        } else {
            swarms.entry(swarm.0).or_default().push(*key);
        }
    }

    // (0) There is always a swarm to join.
    if swarms.is_empty() {
        swarms.insert(new_swarm_id(&swarms), Vec::new());
    }
    // (1) New nodes, in pubkey order (BTreeMap order), each followed by the excess rule.
    for key in unassigned {
        let candidates = fill_candidates(&swarms);
        let id = candidates[rng.index(candidates.len())];
        swarms.entry(id).or_default().push(key);
        create_from_excess(&mut swarms, &mut rng);
        cap_sizes(&mut swarms, &mut rng);
    }
    // (2)–(4) as oxend, (5) snode's cap.
    robin_hood(&mut swarms, &mut rng);
    create_from_excess(&mut swarms, &mut rng);
    dissolve_small(&mut swarms, &mut rng);
    cap_sizes(&mut swarms, &mut rng);

    swarms
        .into_iter()
        .flat_map(|(id, members)| members.into_iter().map(move |k| (k, SwarmId(id))))
        .collect()
}

/// The id for a new swarm: 0 for the first; otherwise the midpoint of the largest gap between
/// consecutive ids on the circle of `MAX_ID` (the gap after the last id wraps to the first).
/// The first largest gap wins a tie. oxend returns `MAX_ID / 2` outright for a single swarm,
/// which equals this when that swarm is 0 (always, unless swarm 0 was dissolved) and would
/// collide with a lone swarm at `MAX_ID / 2`; the general rule has no such case.
pub fn new_swarm_id(existing: &BTreeMap<u64, Vec<NodeKey>>) -> u64 {
    let ids: Vec<u64> = existing.keys().copied().collect();
    let Some(&first) = ids.first() else {
        return 0;
    };
    let mut best = (0u64, first);
    for (i, &cur) in ids.iter().enumerate() {
        let gap = match ids.get(i + 1) {
            Some(&next) => next - cur,
            // Saturating: ids above MAX_ID never come from this function.
            None => MAX_ID.saturating_sub(cur).saturating_add(first),
        };
        if gap > best.0 {
            best = (gap, cur);
        }
    }
    let (gap, start) = best;
    let half = gap / 2;
    let room = MAX_ID.saturating_sub(start);
    if half > room {
        half - room
    } else {
        start + half
    }
}

/// The `p`-th percentile of the swarm sizes: index `p·(n−1)/100` of the ascending sizes.
fn percentile(swarms: &Swarms, p: usize) -> usize {
    let mut sizes: Vec<usize> = swarms.values().map(Vec::len).collect();
    sizes.sort_unstable();
    sizes
        .get(p * sizes.len().saturating_sub(1) / 100)
        .copied()
        .unwrap_or(0)
}

/// Ids of the swarms whose size is at most the `p`-th percentile, ascending.
fn at_or_below(swarms: &Swarms, p: usize) -> Vec<u64> {
    let limit = percentile(swarms, p);
    swarms
        .iter()
        .filter(|(_, m)| m.len() <= limit)
        .map(|(id, _)| *id)
        .collect()
}

/// Where a new node may go: the swarms at or below the 25th percentile, without the full ones
/// unless every one is full (the smallest swarm is always a candidate, so "every candidate is
/// full" means every swarm is; step 5 then splits the one that overflows).
fn fill_candidates(swarms: &Swarms) -> Vec<u64> {
    let all = at_or_below(swarms, FILL_SWARM_LOWER_PERCENTILE);
    let open: Vec<u64> = all
        .iter()
        .copied()
        .filter(|id| swarms.get(id).is_some_and(|m| m.len() < MAX_SWARM_SIZE))
        .collect();
    if open.is_empty() { all } else { open }
}

/// Removes and returns the member at `index` of swarm `from` (`None` if there is none).
fn take(swarms: &mut Swarms, from: u64, index: usize) -> Option<NodeKey> {
    let members = swarms.get_mut(&from)?;
    (index < members.len()).then(|| members.remove(index))
}

/// The excess rule: while no swarm is below the minimum and the excess reaches
/// `NEW_SWARM_SIZE + IDEAL_SWARM_MARGIN · #swarms`, form a swarm of `NEW_SWARM_SIZE` nodes
/// drawn one at a time from every member of the swarms above `EXCESS_BASE` (a swarm's chance
/// is proportional to its size, and a swarm stops giving once it is down to `EXCESS_BASE`).
fn create_from_excess(swarms: &mut Swarms, rng: &mut Mt19937_64) {
    loop {
        if swarms.values().any(|m| m.len() < MIN_SWARM_SIZE) {
            return;
        }
        let excess: usize = swarms
            .values()
            .map(|m| m.len().saturating_sub(EXCESS_BASE))
            .sum();
        if excess < NEW_SWARM_SIZE + IDEAL_SWARM_MARGIN * swarms.len() {
            return;
        }
        let id = new_swarm_id(swarms);
        let mut members = Vec::with_capacity(NEW_SWARM_SIZE);
        // The excess is ≥ NEW_SWARM_SIZE, so the pool never runs dry within these draws.
        for _ in 0..NEW_SWARM_SIZE {
            let pool: Vec<(u64, usize)> = swarms
                .iter()
                .filter(|(_, m)| m.len() > EXCESS_BASE)
                .flat_map(|(id, m)| (0..m.len()).map(move |i| (*id, i)))
                .collect();
            if pool.is_empty() {
                break;
            }
            let (from, index) = pool[rng.index(pool.len())];
            members.extend(take(swarms, from, index));
        }
        swarms.insert(id, members);
    }
}

/// Step 2: while some swarm is below the minimum, move one random node to the smallest such
/// swarm from a random donor at or above the 75th-percentile size that keeps the minimum.
fn robin_hood(swarms: &mut Swarms, rng: &mut Mt19937_64) {
    loop {
        let Some(poor) = smallest_below_min(swarms) else {
            return;
        };
        let p75 = percentile(swarms, STEALING_SWARM_UPPER_PERCENTILE);
        let donors: Vec<u64> = swarms
            .iter()
            .filter(|(id, m)| **id != poor && m.len() > MIN_SWARM_SIZE && m.len() >= p75)
            .map(|(id, _)| *id)
            .collect();
        if donors.is_empty() {
            return;
        }
        let donor = donors[rng.index(donors.len())];
        let size = swarms.get(&donor).map_or(0, Vec::len);
        let index = rng.index(size);
        if let Some(key) = take(swarms, donor, index) {
            swarms.entry(poor).or_default().push(key);
        }
    }
}

/// The smallest swarm below `MIN_SWARM_SIZE` (lowest id on a tie).
fn smallest_below_min(swarms: &Swarms) -> Option<u64> {
    swarms
        .iter()
        .filter(|(_, m)| m.len() < MIN_SWARM_SIZE)
        .min_by_key(|(id, m)| (m.len(), **id))
        .map(|(id, _)| *id)
}

/// Step 4: while there is more than one swarm, dissolve the smallest one below the minimum;
/// each of its nodes joins a random swarm among the smallest.
fn dissolve_small(swarms: &mut Swarms, rng: &mut Mt19937_64) {
    while swarms.len() > 1 {
        let Some(small) = smallest_below_min(swarms) else {
            return;
        };
        let orphans = swarms.remove(&small).unwrap_or_default();
        for key in orphans {
            let targets = at_or_below(swarms, DECOMMISSIONED_REDISTRIBUTION_LOWER_PERCENTILE);
            let id = targets[rng.index(targets.len())];
            swarms.entry(id).or_default().push(key);
        }
    }
}

/// Step 5 (snode): run the excess rule, then split the largest swarm above `MAX_SWARM_SIZE`
/// into itself and a new swarm of `min(NEW_SWARM_SIZE, size − MIN_SWARM_SIZE)` random
/// members; repeat until no swarm is too large.
fn cap_sizes(swarms: &mut Swarms, rng: &mut Mt19937_64) {
    loop {
        create_from_excess(swarms, rng);
        let Some((big, size)) = swarms
            .iter()
            .filter(|(_, m)| m.len() > MAX_SWARM_SIZE)
            .max_by_key(|(id, m)| (m.len(), std::cmp::Reverse(**id)))
            .map(|(id, m)| (*id, m.len()))
        else {
            return;
        };
        let id = new_swarm_id(swarms);
        let moved = NEW_SWARM_SIZE.min(size - MIN_SWARM_SIZE);
        let mut members = Vec::with_capacity(moved);
        for left in (size - moved + 1..=size).rev() {
            let index = rng.index(left);
            members.extend(take(swarms, big, index));
        }
        swarms.insert(id, members);
    }
}

#[cfg(test)]
mod tests;
