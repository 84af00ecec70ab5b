//! Tests of the swarm space mapping, the nearest-swarm rule, lookups, the snapshot diff, and
//! the admission rules over remembered memberships.

use super::*;
use proptest::prelude::*;
use std::sync::Arc;

fn acct(hex66: &str) -> AccountId {
    AccountId::from_hex(hex66).unwrap()
}

/// `05` + 24 zero bytes + `space` big-endian: an account whose swarm space is `space`.
fn at(space: u64) -> AccountId {
    let mut key = [0u8; 32];
    key[24..].copy_from_slice(&space.to_be_bytes());
    AccountId { kind: 5, key }
}

fn node(id: u16, swarm: u64) -> NodeInfo {
    let mut pk = [0u8; 32];
    pk[..2].copy_from_slice(&id.to_be_bytes());
    NodeInfo {
        pubkey_ed25519: pk,
        pubkey_x25519: [0xaa; 32],
        ip: Ipv4Addr::new(127, 0, 0, 1),
        https_port: 22021,
        omq_port: 0,
        swarm_id: SwarmId(swarm),
        version: [0, 1, 0],
    }
}

fn pk(id: u16) -> [u8; 32] {
    node(id, 0).pubkey_ed25519
}

/// A membership at `height` of `(node, swarm)` pairs.
fn listing(height: u64, nodes: &[(u16, u64)]) -> Membership {
    let nodes = nodes.iter().map(|&(id, swarm)| node(id, swarm)).collect();
    Membership::new(height, format!("{height:x}"), nodes)
}

/// A node clock reading (ms) for the remembered memberships.
const T: i64 = 1_700_000_000_000;
const MINUTE: i64 = 60_000;

/// One node per swarm id.
fn with_swarms(ids: &[u64]) -> Membership {
    let nodes = ids
        .iter()
        .enumerate()
        .map(|(i, &s)| node(i as u16, s))
        .collect();
    Membership::new(1, "ab".repeat(32), nodes)
}

#[test]
fn swarm_space_vectors() {
    // storage-server.md 3.2 (SS unit_test/swarm.cpp); the same keys without prefix are
    // clients.md 3.4 (LSU test_network.cpp).
    let cases: &[(&str, u64)] = &[
        (
            "053506f4a71324b7dd114eddbf4e311f39dde243e1f2cb97c40db1961f70ebaae8",
            17589930838143112648,
        ),
        (
            "05cf27da303a50ac8c4b2d43d27259505c9bcd73fc21cf2a57902c3d050730b604",
            10370619079776428163,
        ),
        (
            "03d3511706b8b34f6e8411bf07bd22ba6b2435ca56846fbccf6eb1e166a6cd15cc",
            2144983569669512198,
        ),
        (
            "ff0f06693428fca9102a451e3f28d9cc743d8ea60a89ab6aa69eb119470c11cbd3",
            9690840703409570833,
        ),
        (
            "05ffba630924aa1224bb930dde21c0d11bf004608f2812217f8ac812d6c7e3ad48",
            4532060000165252872,
        ),
        (
            "05eeeeeeeeeeeeeeee777777777777777711111111111111118888888888888888",
            0,
        ),
        (
            "050123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            0,
        ),
        (
            "05fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffe",
            1,
        ),
        (
            "05ffffffffffffffffffffffffffffffffffffffffffffffff7fffffffffffffff",
            1 << 63,
        ),
        (
            "05000000000000000000000000000000000000000000000000ffffffffffffffff",
            u64::MAX,
        ),
        (
            "050000000000000000000000000000000000000000000000000123456789abcdef",
            0x0123456789abcdef,
        ),
    ];
    for &(hex, want) in cases {
        assert_eq!(swarm_space(&acct(hex)), want, "{hex}");
        // The type byte is not part of the space.
        let mut other = acct(hex);
        other.kind ^= 0x06;
        assert_eq!(swarm_space(&other), want, "{hex}");
    }
}

#[test]
fn nearest_swarm_vectors() {
    // storage-server.md 3.2 / clients.md 3.4 "[get_swarm]".
    let mut ids = vec![100, 200, 300, 399, 498, 596, 694];
    let m = with_swarms(&ids);
    let cases: &[(u64, u64)] = &[
        (0x64, 100),
        (0xc8, 200),
        (0x1f2, 498),
        (0, 100),
        (1, 100),
        (0x8000000000000000, 694),
        (0xa000000000000000, 100),
        (u64::MAX, 100),
        (u64::MAX - 1, 100),
        (0x95, 100),
        (0x96, 100), // midpoint 150: tie goes left
        (0x97, 200),
        (0xf9, 200),
        (0xfa, 200),
        (0xfb, 300),
        (0x15d, 300),
        (0x15e, 399),
        (0x1c0, 399),
        (0x1c1, 498),
        (0x222, 498),
        (0x223, 498),
        (0x224, 596),
        (0x285, 596),
        (0x286, 694),
        (0x800000000000018c, 694),
        (0x800000000000018d, 694),
        (0x800000000000018e, 100),
    ];
    for &(space, want) in cases {
        assert_eq!(m.swarm_for(&at(space)), Some(SwarmId(want)), "{space:#x}");
    }

    ids.push(u64::MAX - 19);
    let m = with_swarms(&ids);
    assert_eq!(m.swarm_for(&at(0x27)), Some(SwarmId(u64::MAX - 19)));
    assert_eq!(m.swarm_for(&at(0x28)), Some(SwarmId(u64::MAX - 19)));
    assert_eq!(m.swarm_for(&at(0x29)), Some(SwarmId(100)));

    ids.push(0);
    let m = with_swarms(&ids);
    assert_eq!(m.swarm_for(&at(u64::MAX)), Some(SwarmId(0)));
    assert_eq!(m.swarm_for(&at(u64::MAX - 1)), Some(SwarmId(0)));
}

#[test]
fn degenerate_swarm_sets() {
    assert_eq!(Membership::default().swarm_for(&at(5)), None);
    // Only decommissioned nodes: no swarm.
    let m = with_swarms(&[u64::MAX, u64::MAX]);
    assert_eq!(m.swarm_for(&at(5)), None);
    assert!(m.swarms().is_empty());
    // One swarm owns everything, however far.
    let m = with_swarms(&[1 << 40, u64::MAX]);
    for s in [0, 1 << 40, u64::MAX, 1 << 63] {
        assert_eq!(m.swarm_for(&at(s)), Some(SwarmId(1 << 40)));
    }
    // Several nodes in the same swarm count once.
    let m = with_swarms(&[7, 7, 7, 9]);
    assert_eq!(
        m.swarm_ids().collect::<Vec<_>>(),
        vec![SwarmId(7), SwarmId(9)]
    );
    assert_eq!(m.swarm_for(&at(8)), Some(SwarmId(7)));
}

#[test]
fn lookups() {
    // Listed out of order, one decommissioned, one duplicate key (first wins).
    let nodes = vec![
        node(5, 200),
        node(1, 100),
        node(3, SwarmId::UNASSIGNED.0),
        node(2, 200),
        node(4, 100),
        node(1, 300),
    ];
    let m = Membership::new(9, "cd".repeat(32), nodes);
    let keys: Vec<_> = m.nodes.iter().map(|n| n.pubkey_ed25519).collect();
    assert_eq!(keys, vec![pk(1), pk(2), pk(3), pk(4), pk(5)]);

    let swarms = m.swarms();
    assert_eq!(
        swarms.keys().copied().collect::<Vec<_>>(),
        vec![SwarmId(100), SwarmId(200)]
    );
    let members = |s| -> Vec<[u8; 32]> { m.members(s).iter().map(|n| n.pubkey_ed25519).collect() };
    assert_eq!(members(SwarmId(100)), vec![pk(1), pk(4)]);
    assert_eq!(members(SwarmId(200)), vec![pk(2), pk(5)]);
    assert_eq!(members(SwarmId(300)), Vec::<[u8; 32]>::new());
    assert_eq!(members(SwarmId::UNASSIGNED), Vec::<[u8; 32]>::new());
    for (s, list) in &swarms {
        assert_eq!(
            list.iter().map(|n| n.pubkey_ed25519).collect::<Vec<_>>(),
            members(*s)
        );
    }

    assert_eq!(
        m.node(&pk(3)).map(|n| n.swarm_id),
        Some(SwarmId::UNASSIGNED)
    );
    assert_eq!(m.node(&pk(1)).map(|n| n.swarm_id), Some(SwarmId(100)));
    assert!(m.node(&pk(6)).is_none());
    assert_eq!(m.swarm_of(&pk(5)), Some(SwarmId(200)));
    assert_eq!(m.swarm_of(&pk(3)), None);
    assert_eq!(m.swarm_of(&pk(6)), None);
    assert!(m.is_active(&pk(2)));
    assert!(!m.is_active(&pk(3)));
    assert!(!m.is_active(&pk(6)));
}

#[test]
fn single_node_network_owns_everything() {
    let m = Membership::single(node(42, SwarmId::UNASSIGNED.0));
    assert_eq!(m.swarm_of(&pk(42)), Some(SwarmId(0)));
    assert_eq!(m.block_hash.len(), 64);
    for s in [0, 1, 1 << 63, u64::MAX] {
        assert_eq!(m.swarm_for(&at(s)), Some(SwarmId(0)));
    }
    assert_eq!(m.members(SwarmId(0)).len(), 1);
}

#[test]
fn diff_unchanged() {
    let a = with_swarms(&[1, 1, 2, 2]);
    let d = Membership::diff(&a, &a.clone());
    assert!(d.is_empty());
    assert_eq!(d, MembershipDiff::default());
}

#[test]
fn diff_join_leave_move_decommission() {
    let old = Membership::new(
        1,
        String::new(),
        vec![
            node(1, 10),
            node(2, 10),
            node(3, 20),
            node(4, 20),
            node(5, 30),
        ],
    );
    let new = Membership::new(
        2,
        String::new(),
        vec![
            node(1, 10),                    // unchanged
            node(2, 20),                    // moved 10 → 20
            node(3, SwarmId::UNASSIGNED.0), // decommissioned from 20
            // 4 vanished from 20
            node(5, 40), // swarm 30 dissolved, 5 now in new swarm 40
            node(6, 10), // registered into 10
        ],
    );
    let d = Membership::diff(&old, &new);
    assert!(!d.is_empty());
    assert_eq!(d.swarms_added, vec![SwarmId(40)]);
    assert_eq!(d.swarms_removed, vec![SwarmId(30)]);
    assert_eq!(
        d.joined,
        BTreeMap::from([
            (SwarmId(10), vec![pk(6)]),
            (SwarmId(20), vec![pk(2)]),
            (SwarmId(40), vec![pk(5)]),
        ])
    );
    assert_eq!(
        d.left,
        BTreeMap::from([
            (SwarmId(10), vec![pk(2)]),
            (SwarmId(20), vec![pk(3), pk(4)]),
            (SwarmId(30), vec![pk(5)]),
        ])
    );
    let moved: Vec<_> = d.moved.iter().map(|c| (c.node, c.from, c.to)).collect();
    assert_eq!(
        moved,
        vec![
            (pk(2), Some(SwarmId(10)), Some(SwarmId(20))),
            (pk(3), Some(SwarmId(20)), None),
            (pk(4), Some(SwarmId(20)), None),
            (pk(5), Some(SwarmId(30)), Some(SwarmId(40))),
            (pk(6), None, Some(SwarmId(10))),
        ]
    );
    assert_eq!(d.change_of(&pk(1)), None);
    assert_eq!(d.change_of(&pk(4)).map(|c| c.to), Some(None));

    // The reverse diff mirrors it.
    let r = Membership::diff(&new, &old);
    assert_eq!(r.swarms_added, d.swarms_removed);
    assert_eq!(r.swarms_removed, d.swarms_added);
    assert_eq!(r.joined, d.left);
    assert_eq!(r.left, d.joined);
    assert_eq!(r.moved.len(), d.moved.len());
}

#[test]
fn diff_recommission_and_first_snapshot() {
    let old = Membership::new(1, String::new(), vec![node(1, SwarmId::UNASSIGNED.0)]);
    let new = Membership::new(2, String::new(), vec![node(1, 5)]);
    let d = Membership::diff(&old, &new);
    assert_eq!(d.swarms_added, vec![SwarmId(5)]);
    assert_eq!(d.joined, BTreeMap::from([(SwarmId(5), vec![pk(1)])]));
    assert!(d.left.is_empty());

    let d = Membership::diff(&Membership::default(), &with_swarms(&[3, 4]));
    assert_eq!(d.swarms_added, vec![SwarmId(3), SwarmId(4)]);
    assert_eq!(d.moved.len(), 2);
}

/// Distance between two points of the 2^64 circle.
fn circ(a: u64, b: u64) -> u64 {
    a.wrapping_sub(b).min(b.wrapping_sub(a))
}

fn point() -> impl Strategy<Value = u64> {
    // Mix uniform values with values near the wrap point and clustered small values, so
    // wrapping and ties are exercised, not just the easy middle of the circle.
    prop_oneof![
        any::<u64>(),
        (0u64..64).prop_map(|x| x),
        (0u64..64).prop_map(|x| u64::MAX - x),
        (0u64..64).prop_map(|x| (1u64 << 63) + x),
    ]
}

proptest! {
    #[test]
    fn chosen_swarm_is_nearest(
        ids in proptest::collection::vec(point(), 1..24),
        space in point(),
    ) {
        // UNASSIGNED (2^64-1) is not a swarm id: it marks decommissioned nodes.
        let active: Vec<u64> = ids.iter().copied().filter(|&i| i != u64::MAX).collect();
        let m = with_swarms(&ids);
        let got = m.swarm_for_space(space);
        if active.is_empty() {
            prop_assert_eq!(got, None);
        } else {
            let got = got.unwrap().0;
            prop_assert!(active.contains(&got));
            let best = active.iter().map(|&i| circ(i, space)).min().unwrap();
            prop_assert_eq!(circ(got, space), best);
            // Ties between a swarm below and a swarm above go to the one below.
            let below = active.iter().any(|&i| space.wrapping_sub(i) == best);
            if below && active.len() > 1 {
                prop_assert_eq!(space.wrapping_sub(got), best);
            }
            prop_assert_eq!(m.swarm_for(&at(space)), Some(SwarmId(got)));
        }
    }
}

#[test]
fn swarm_peers_and_previous_owners_may_push() {
    // Before: nodes 1 and 2 in swarm 10 (owning everything); now 2 and 3 form a new swarm
    // 2^63, and 4 joined 10: it never shared a swarm with 2.
    let before = Membership::new(1, "a".into(), vec![node(1, 10), node(2, 10)]);
    let now = Membership::new(
        2,
        "b".into(),
        vec![node(1, 10), node(2, 1 << 63), node(3, 1 << 63), node(4, 10)],
    );
    let previous = PreviousMembership::default();
    let account = at(1 << 63); // owned by 2^63 now, by 10 before
    assert_eq!(before.swarm_for(&account), Some(SwarmId(10)));
    assert_eq!(now.swarm_for(&account), Some(SwarmId(1 << 63)));
    let without = without_our_swarm(&now, &pk(2));
    assert_eq!(without.swarm_for(&account), Some(SwarmId(10)));
    let nothing = Membership::default();
    // Without history: 3 is node 2's swarm peer; 1 is not, nor may it push the account…
    assert!(is_swarm_peer(&now, &previous.get(), &pk(2), &pk(3)));
    assert!(!is_swarm_peer(&now, &previous.get(), &pk(2), &pk(1)));
    assert!(!may_push(
        &now,
        &previous.read(),
        T,
        &nothing,
        &pk(2),
        &pk(1),
        &account
    ));
    // … unless its swarm is the one that owns the account when ours is left out (swarm 10
    // held this range before 2^63 formed): a node that just joined remembers no history.
    assert!(may_push(
        &now,
        &previous.read(),
        T,
        &without,
        &pk(2),
        &pk(1),
        &account
    ));
    // With history: 1 owned the account before (hand-off), and was 2's swarm peer then.
    previous.set(Arc::new(before), T);
    assert!(may_push(
        &now,
        &previous.read(),
        T,
        &nothing,
        &pk(2),
        &pk(1),
        &account
    ));
    assert!(is_swarm_peer(&now, &previous.get(), &pk(2), &pk(1)));
    // Once we remember a swarm of ours, the neighbouring swarm's rule is off: 3 stays a
    // peer, but a node that is in swarm 10 only now (6) may not push.
    let now6 = Membership::new(
        3,
        "d".into(),
        vec![node(1, 10), node(2, 1 << 63), node(3, 1 << 63), node(6, 10)],
    );
    let without6 = without_our_swarm(&now6, &pk(2));
    assert!(!may_push(
        &now6,
        &previous.read(),
        T,
        &without6,
        &pk(2),
        &pk(6),
        &account
    ));
    assert!(is_swarm_peer(&now6, &previous.get(), &pk(2), &pk(3)));
    // The last three memberships are remembered whatever the time: 1's swarm-peer rights end
    // with them (three more changes), its hand-off rights not (within the window)…
    for h in 3..6 {
        previous.set(
            Arc::new(Membership::new(h, "c".into(), vec![node(2, 7)])),
            T,
        );
    }
    assert!(!is_swarm_peer(&now, &previous.get(), &pk(2), &pk(1)));
    assert!(may_push(
        &now,
        &previous.read(),
        T,
        &nothing,
        &pk(2),
        &pk(1),
        &account
    ));
    // … which end once its ownership ended longer than the window ago.
    assert!(!may_push(
        &now,
        &previous.read(),
        T + FORMER_OWNERS_WINDOW_MS,
        &nothing,
        &pk(2),
        &pk(1),
        &account
    ));
}

/// Seed 201389 (docs/simulation.md, finding 6): node 9, cut off alone, takes a store of an
/// account its swarm owns; the directory decommissions it, and six more changes go by before
/// it is back, in another swarm. The new owners admit its hand-off: it owned the account
/// within the window. It gets no swarm-peer rights from that (no forwards), and a node that
/// never owned the account still may not push.
#[test]
fn a_former_owner_six_changes_ago_may_hand_off() {
    let account = at(1 << 62);
    // Swarm 1<<62 (nodes 9 and 5) owns the account; swarm 1<<63 (nodes 1 and 2) owns the rest.
    let owned = listing(
        11,
        &[(1, 1 << 63), (2, 1 << 63), (5, 1 << 62), (9, 1 << 62)],
    );
    assert_eq!(owned.swarm_for(&account), Some(SwarmId(1 << 62)));
    let previous = PreviousMembership::default();
    previous.set(Arc::new(owned), T);
    // Node 9 is decommissioned, 5 moves to 1<<63: the account moves to 1<<63, which node 1
    // stays in for six changes.
    for h in 12..18 {
        let m = listing(
            h,
            &[
                (1, 1 << 63),
                (2, 1 << 63),
                (5, 1 << 63),
                (9, SwarmId::UNASSIGNED.0),
            ],
        );
        previous.set(Arc::new(m), T + (h as i64 - 11) * MINUTE);
    }
    // Now 9 is back, in a swarm of its own (3<<62) that does not own the account.
    let now = listing(
        18,
        &[(1, 1 << 63), (2, 1 << 63), (5, 1 << 63), (9, 3 << 62)],
    );
    assert_eq!(now.swarm_for(&account), Some(SwarmId(1 << 63)));
    let without = without_our_swarm(&now, &pk(1));
    let remembered = previous.read();
    let at_time = T + 10 * MINUTE;
    // The old rule (the last three memberships) had forgotten that 9 owned the account.
    assert!(
        !remembered
            .recent()
            .iter()
            .any(|m| m.swarm_for(&account) == m.swarm_of(&pk(9)))
    );
    assert!(may_push(
        &now,
        &remembered,
        at_time,
        &without,
        &pk(1),
        &pk(9),
        &account
    ));
    // No swarm-peer rights: 9 shared 1's swarm in none of the last three.
    assert!(!is_swarm_peer(&now, remembered.recent(), &pk(1), &pk(9)));
    // Only the accounts it owned: not one of the range swarm 1<<63 always held.
    assert!(!may_push(
        &now,
        &remembered,
        at_time,
        &without,
        &pk(1),
        &pk(9),
        &at(1 << 63)
    ));
    // Node 4, listed only now, in 9's new swarm, never owned it.
    let now4 = listing(
        18,
        &[
            (1, 1 << 63),
            (2, 1 << 63),
            (4, 3 << 62),
            (5, 1 << 63),
            (9, 3 << 62),
        ],
    );
    let without4 = without_our_swarm(&now4, &pk(1));
    assert!(!may_push(
        &now4,
        &remembered,
        at_time,
        &without4,
        &pk(1),
        &pk(4),
        &account
    ));
}

/// A node restarted after the account moved still admits the former owner's late hand-off:
/// the durable form restores who owned what (the membership current at the write counts as
/// ended then), and damaged bytes restore nothing.
#[test]
fn the_former_owners_survive_a_restart() {
    let account = at(1 << 62);
    let previous = PreviousMembership::default();
    let owned = listing(1, &[(1, 1 << 63), (9, 1 << 62)]);
    previous.set(Arc::new(owned), T);
    let moved = listing(2, &[(1, 1 << 63), (9, SwarmId::UNASSIGNED.0)]);
    let bytes = previous.snapshot(&moved, T + MINUTE);
    let restored = PreviousMembership::restore(&bytes).expect("restore");
    assert_eq!(restored.read().former_len(), 2);
    assert_eq!(
        restored.read().former_entries().0,
        previous.read().former_entries().0 + 2
    );
    assert!(
        restored.get().is_empty(),
        "no swarm-peer rights survive a restart"
    );
    let now = listing(3, &[(1, 1 << 63), (9, 3 << 62)]);
    let without = Membership::default();
    let may = |p: &PreviousMembership| {
        may_push(
            &now,
            &p.read(),
            T + 2 * MINUTE,
            &without,
            &pk(1),
            &pk(9),
            &account,
        )
    };
    assert!(may(&restored));
    assert!(
        !may(&PreviousMembership::default()),
        "a fresh start forgets"
    );
    // The restored memory goes on recording.
    let again = PreviousMembership::restore(&restored.snapshot(&moved, T + MINUTE)).expect("again");
    assert_eq!(again.read().former_len(), 3);
    for cut in [0, 1, 9, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            PreviousMembership::restore(&bytes[..cut]).is_none(),
            "cut at {cut}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(PreviousMembership::restore(&longer).is_none());
    let mut huge = bytes.clone();
    huge[9..13].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(PreviousMembership::restore(&huge).is_none());
    // The height last seen survives too (the follower reads back the listings served
    // since); a file of version 1, which had no height, still loads, without one.
    assert_eq!(previous.last_height(), Some(1));
    assert_eq!(
        restored.last_height(),
        Some(2),
        "the snapshot's current listing"
    );
    let mut v1 = bytes[..bytes.len() - 8].to_vec();
    v1[0] = 1;
    let old = PreviousMembership::restore(&v1).expect("a version 1 file");
    assert_eq!(old.last_height(), None);
    assert_eq!(old.read().former_len(), 2);
}

/// The window runs from when the owner's last membership stopped being current: just inside
/// it the former owner may push, from its end on not — even before any later change forgets
/// the membership — and a later change then forgets it for good.
#[test]
fn a_former_owner_beyond_the_window_may_not_push() {
    let account = at(1 << 62);
    let previous = PreviousMembership::default();
    // 9 owns the account (alone in the only swarm) until T.
    previous.set(Arc::new(listing(1, &[(9, 1 << 62)])), T);
    // Then 1 and 2 take over; more than three changes go by, 9 never in a swarm.
    for h in 2..7 {
        let m = listing(h, &[(1, 1 << 63), (2, 1 << 63), (9, SwarmId::UNASSIGNED.0)]);
        previous.set(Arc::new(m), T + h as i64 * MINUTE);
    }
    let now = listing(7, &[(1, 1 << 63), (2, 1 << 63), (9, 3 << 62)]);
    let nothing = Membership::default();
    let may = |at_time: i64| {
        may_push(
            &now,
            &previous.read(),
            at_time,
            &nothing,
            &pk(1),
            &pk(9),
            &account,
        )
    };
    assert!(may(T + FORMER_OWNERS_WINDOW_MS - 1));
    assert!(!may(T + FORMER_OWNERS_WINDOW_MS));
    assert!(!may(T + 365 * 24 * 60 * MINUTE));
    // A change past the window forgets the memberships that ended before it (not the
    // newest), so the history does not grow while nothing happens.
    assert_eq!(previous.read().former_len(), 6);
    let later = T + FORMER_OWNERS_WINDOW_MS + 3 * MINUTE + 1;
    previous.set(Arc::new(now.clone()), later);
    let r = previous.read();
    assert_eq!(
        r.former_len(),
        4,
        "heights 4, 5, 6 and 7 are within the window"
    );
    assert!(!r.owned_within_window(&pk(9), swarm_space(&account), T));
    // 1 owned it in them.
    assert!(r.owned_within_window(&pk(1), swarm_space(&account), later));
    let (counted, actual) = r.former_entries();
    assert_eq!(counted, actual);
}

/// However many memberships and however large, the history is capped: the count at
/// `FORMER_OWNERS_MAX_MEMBERSHIPS` (the oldest forgotten first), the entries at
/// `FORMER_OWNERS_MAX_ENTRIES`.
#[test]
fn the_former_owners_history_is_capped() {
    let previous = PreviousMembership::default();
    // The first membership: node 9 owns everything.
    previous.set(Arc::new(listing(0, &[(9, 7)])), T);
    let account = at(7);
    // Then node 1 alone, unchanged, for many changes within a minute: cheap (one run).
    let m = Arc::new(listing(1, &[(1, 7)]));
    for _ in 0..FORMER_OWNERS_MAX_MEMBERSHIPS - 1 {
        previous.set(m.clone(), T + 1);
    }
    {
        let r = previous.read();
        assert_eq!(r.former_len(), FORMER_OWNERS_MAX_MEMBERSHIPS);
        assert!(r.owned_within_window(&pk(9), swarm_space(&account), T + 2));
    }
    previous.set(m.clone(), T + 2);
    {
        let r = previous.read();
        assert_eq!(r.former_len(), FORMER_OWNERS_MAX_MEMBERSHIPS);
        assert!(!r.owned_within_window(&pk(9), swarm_space(&account), T + 2));
        assert!(r.owned_within_window(&pk(1), swarm_space(&account), T + 2));
        let (counted, actual) = r.former_entries();
        assert_eq!(
            (counted, actual),
            (1 + 2, 1 + 2),
            "one run, one set of one id"
        );
    }
    // Memberships in which 2,000 nodes all move (two swarms swapping them): each costs 2,000
    // runs, so the entry cap forgets the oldest long before the count cap would.
    let big = |flip: bool| {
        let nodes = (100..2100u16)
            .map(|i| {
                node(
                    i,
                    if (i % 2 == 0) ^ flip {
                        1 << 62
                    } else {
                        3 << 62
                    },
                )
            })
            .collect();
        Arc::new(Membership::new(2, "c".into(), nodes))
    };
    let rounds = FORMER_OWNERS_MAX_ENTRIES / 2000 + 10;
    for i in 0..rounds {
        previous.set(big(i % 2 == 1), T + 3 + i as i64);
        let (counted, actual) = previous.read().former_entries();
        assert_eq!(counted, actual);
        assert!(counted <= FORMER_OWNERS_MAX_ENTRIES, "{counted} entries");
    }
    let r = previous.read();
    assert!(r.former_len() < rounds);
    // The newest is never forgotten: node 100 was in 3<<62 or 1<<62 alternately.
    let last = T + 3 + rounds as i64;
    assert!(
        r.owned_within_window(&pk(100), 1 << 62, last)
            || r.owned_within_window(&pk(100), 3 << 62, last)
    );
}

/// The window checks agree with a plain scan of every recorded membership (the compact
/// form changes the memory, not the answers), whatever the changes and their times.
mod former_owners_model {
    use super::*;

    const SWARMS: [u64; 5] = [10, 1 << 62, 1 << 63, 3 << 62, u64::MAX];

    fn membership() -> impl Strategy<Value = Vec<u64>> {
        proptest::collection::vec(proptest::sample::select(SWARMS.to_vec()), 6)
    }

    proptest! {
        #[test]
        fn owned_within_window_matches_a_scan(
            changes in proptest::collection::vec(
                (membership(), 0..FORMER_OWNERS_WINDOW_MS / 2, any::<bool>()), 1..24),
            spaces in proptest::collection::vec(any::<u64>(), 4),
            ask_after in 0..FORMER_OWNERS_WINDOW_MS * 2,
        ) {
            let previous = PreviousMembership::default();
            let mut recorded: Vec<(Membership, i64)> = Vec::new();
            let mut now = T;
            for (h, (swarms, step, back)) in changes.into_iter().enumerate() {
                // Sometimes the clock steps back: the recorded time never does.
                now = if back { now - step / 8 } else { now + step };
                let nodes = swarms
                    .iter()
                    .enumerate()
                    .map(|(i, &s)| node(i as u16, s))
                    .collect();
                let m = Membership::new(h as u64, "x".into(), nodes);
                let ended = recorded.last().map_or(now, |&(_, e)| e.max(now));
                recorded.push((m.clone(), ended));
                previous.set(Arc::new(m), now);
            }
            let r = previous.read();
            let (counted, actual) = r.former_entries();
            prop_assert_eq!(counted, actual);
            // A change forgets what was out of the window then; a check at an earlier time
            // (a clock that stepped back) does not bring it back.
            let latest = recorded.last().map_or(T, |&(_, e)| e);
            let kept = |e: i64| latest.saturating_sub(e) < FORMER_OWNERS_WINDOW_MS;
            for ask in [now, now + ask_after, now - 1] {
                for id in 0..7u16 {
                    let live = || {
                        recorded.iter().filter(|&&(_, e)| {
                            kept(e) && ask.saturating_sub(e) < FORMER_OWNERS_WINDOW_MS
                        })
                    };
                    for &space in &spaces {
                        let want = live().any(|(m, _)| {
                            m.swarm_for_space(space)
                                .is_some_and(|s| m.swarm_of(&pk(id)) == Some(s))
                        });
                        prop_assert_eq!(r.owned_within_window(&pk(id), space, ask), want);
                    }
                    let recent = recorded
                        .iter()
                        .rev()
                        .take(PREVIOUS_KEPT)
                        .any(|(m, _)| m.is_active(&pk(id)));
                    let want = recent || live().any(|(m, _)| m.is_active(&pk(id)));
                    prop_assert_eq!(r.was_in_a_swarm(&pk(id), ask), want);
                }
            }
        }
    }
}
