//! Tests of the swarm space mapping, the nearest-swarm rule, lookups and the snapshot diff.

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
        &previous.get(),
        &nothing,
        &pk(2),
        &pk(1),
        &account
    ));
    // … unless its swarm is the one that owns the account when ours is left out (swarm 10
    // held this range before 2^63 formed): a node that just joined remembers no history.
    assert!(may_push(
        &now,
        &previous.get(),
        &without,
        &pk(2),
        &pk(1),
        &account
    ));
    // With history: 1 owned the account before (hand-off), and was 2's swarm peer then.
    previous.set(Arc::new(before));
    assert!(may_push(
        &now,
        &previous.get(),
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
        &previous.get(),
        &without6,
        &pk(2),
        &pk(6),
        &account
    ));
    assert!(is_swarm_peer(&now6, &previous.get(), &pk(2), &pk(3)));
    // Only the last three memberships are remembered.
    for h in 3..6 {
        previous.set(Arc::new(Membership::new(h, "c".into(), vec![node(2, 7)])));
    }
    assert!(!may_push(
        &now,
        &previous.get(),
        &nothing,
        &pk(2),
        &pk(1),
        &account
    ));
}
