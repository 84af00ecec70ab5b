//! Tests of the registry: blocks, registration, admission, reachability.

use super::*;
use crate::directory::announce::{
    sign_announcement, sign_report, verify_announcement, verify_report,
};
use crate::keys::NodeKeys;

const NOW: i64 = 1_700_000_000_000;
const AFTER: i64 = 20_000;

fn policy() -> Policy {
    Policy {
        // The nodes of these tests are on 127.0.0.1.
        allow_private_addresses: true,
        ..Policy::new(Admission::Open, AFTER)
    }
}

fn keys(i: u8) -> NodeKeys {
    NodeKeys::from_seed([i; 32])
}

fn info(port: u16) -> NodeInfo {
    NodeInfo {
        pubkey_ed25519: [0; 32],
        pubkey_x25519: [0; 32],
        ip: Ipv4Addr::LOCALHOST,
        https_port: port,
        omq_port: 0,
        swarm_id: SwarmId::UNASSIGNED,
        version: [0, 1, 0],
    }
}

fn ann(k: &NodeKeys, port: u16, ts: i64) -> Announcement {
    verify_announcement(&sign_announcement(k, &info(port), ts), ts).unwrap()
}

fn rep(by: &NodeKeys, target: &NodeKeys, ok: bool) -> Report {
    verify_report(&sign_report(by, &target.pubkey_ed25519(), ok, NOW), NOW).unwrap()
}

/// A registry with nodes 1..=n registered at NOW.
fn with_nodes(n: u8) -> Registry {
    let mut r = Registry::new(policy());
    for i in 1..=n {
        r.register(&ann(&keys(i), 20_000 + u16::from(i), NOW), NOW)
            .unwrap();
    }
    r
}

fn swarm_sizes(r: &Registry) -> BTreeMap<SwarmId, usize> {
    let mut out = BTreeMap::new();
    for n in r.nodes().filter(|n| !n.decommissioned) {
        *out.entry(n.swarm_id).or_insert(0) += 1;
    }
    out
}

#[test]
fn first_registration_makes_block_one() {
    let mut r = Registry::new(policy());
    assert_eq!((r.height(), r.block_hash()), (0, genesis_hash()));
    let k = keys(1);
    let a = ann(&k, 22021, NOW);
    let e = r.register(&a, NOW).unwrap();
    assert_eq!(
        e,
        Effect {
            new_block: true,
            dirty: true
        }
    );
    assert_eq!(r.height(), 1);

    // block_hash = BLAKE2b-256(prev ‖ height BE ‖ "register" ‖ ed ‖ x ‖ ip ‖ ports ‖ version).
    let mut change = b"register".to_vec();
    change.extend(k.pubkey_ed25519());
    change.extend(k.pubkey_x25519());
    change.extend([127, 0, 0, 1, 0x56, 0x05, 0, 0, 0, 0, 0, 1, 0, 0]);
    let mut h = Blake2b::<U32>::new();
    h.update(genesis_hash());
    h.update(1u64.to_be_bytes());
    h.update(&change);
    let want: [u8; 32] = h.finalize().into();
    assert_eq!(r.block_hash(), want);
    assert_eq!(r.block_hash_hex(), hex::encode(want));

    let rec = r.node(&k.pubkey_ed25519()).unwrap();
    assert_eq!(rec.swarm_id, SwarmId(0));
    assert_eq!(rec.registered_at_ms, NOW);
    assert!(!rec.decommissioned);
    let m = r.membership();
    assert_eq!((m.height, m.block_hash.clone()), (1, r.block_hash_hex()));
    assert!(m.is_active(&k.pubkey_ed25519()));
}

#[test]
fn reannouncement_is_idempotent_and_updates_are_blocks() {
    let k = keys(1);
    let mut r = with_nodes(1);
    let (h, hash) = (r.height(), r.block_hash());
    let port = r.node(&k.pubkey_ed25519()).unwrap().https_port;

    // Same data, later: no block and no disk write (only the announcement time is
    // remembered, in memory).
    let e = r
        .register(&ann(&k, port, NOW + 30_000), NOW + 30_000)
        .unwrap();
    assert_eq!(e, Effect::default());
    assert_eq!(
        r.node(&k.pubkey_ed25519()).unwrap().announced_at_ms,
        NOW + 30_000
    );
    // Same data, older (a delayed retry): nothing at all.
    let e = r.register(&ann(&k, port, NOW), NOW + 30_000).unwrap();
    assert_eq!(e, Effect::default());
    assert_eq!((r.height(), r.block_hash()), (h, hash));

    // New port in a newer announcement: a block.
    let e = r
        .register(&ann(&k, 30_000, NOW + 60_000), NOW + 60_000)
        .unwrap();
    assert!(e.new_block);
    assert_eq!(r.height(), h + 1);
    assert_ne!(r.block_hash(), hash);
    assert_eq!(r.node(&k.pubkey_ed25519()).unwrap().https_port, 30_000);
    assert_eq!(r.node(&k.pubkey_ed25519()).unwrap().registered_at_ms, NOW);

    // The old port in an announcement older than the accepted one: refused, no rollback.
    assert_eq!(
        r.register(&ann(&k, port, NOW + 45_000), NOW + 60_000),
        Err(RegisterError::Stale)
    );
    assert_eq!(r.node(&k.pubkey_ed25519()).unwrap().https_port, 30_000);
}

#[test]
fn allow_list_admission() {
    let allowed = keys(1);
    let mut r = Registry::new(Policy {
        admission: Admission::AllowList([allowed.pubkey_ed25519()].into()),
        ..policy()
    });
    assert_eq!(
        r.register(&ann(&keys(2), 1, NOW), NOW),
        Err(RegisterError::NotAdmitted)
    );
    assert_eq!(r.height(), 0);
    assert!(r.register(&ann(&allowed, 1, NOW), NOW).unwrap().new_block);
    assert!(Admission::Open.admits(&[0; 32]));
}

#[test]
fn twelve_nodes_form_balanced_swarms() {
    let r = with_nodes(12);
    assert_eq!(r.height(), 12);
    let sizes = swarm_sizes(&r);
    assert!(sizes.len() >= 2, "{sizes:?}");
    assert!(sizes.values().all(|&n| (5..=10).contains(&n)), "{sizes:?}");
    assert_eq!(sizes.values().sum::<usize>(), 12);
    // Everyone is in a swarm the membership snapshot agrees on.
    let m = r.membership();
    for n in r.nodes() {
        assert_eq!(m.swarm_of(&n.pubkey_ed25519), Some(n.swarm_id));
    }
}

#[test]
fn same_changes_same_chain() {
    let a = with_nodes(9);
    let b = with_nodes(9);
    assert_eq!(a, b);
    // Order matters to the chain.
    let mut c = Registry::new(policy());
    for i in (1..=9u8).rev() {
        c.register(&ann(&keys(i), 20_000 + u16::from(i), NOW), NOW)
            .unwrap();
    }
    assert_eq!(c.height(), a.height());
    assert_ne!(c.block_hash(), a.block_hash());
}

#[test]
fn reports_need_an_active_reporter_and_a_known_target() {
    let mut r = with_nodes(3);
    assert_eq!(
        r.report(&rep(&keys(9), &keys(1), false), NOW),
        Err(ReportError::ReporterNotActive)
    );
    assert_eq!(
        r.report(&rep(&keys(1), &keys(9), false), NOW),
        Err(ReportError::UnknownTarget)
    );
}

#[test]
fn unreachable_nodes_are_decommissioned_and_come_back() {
    let mut r = with_nodes(7);
    let (a, b, c, target) = (keys(1), keys(2), keys(4), keys(3));
    let t = target.pubkey_ed25519();
    let h0 = r.height();

    // First failure starts the period; successes from two reporters end it.
    let e = r.report(&rep(&a, &target, false), NOW).unwrap();
    assert_eq!(
        e,
        Effect {
            new_block: false,
            dirty: true
        }
    );
    assert_eq!(r.node(&t).unwrap().failing_since_ms, Some(NOW));
    let e = r.report(&rep(&b, &target, true), NOW + 5_000).unwrap();
    assert_eq!(e, Effect::default());
    assert_eq!(r.node(&t).unwrap().failing_since_ms, Some(NOW));
    let e = r.report(&rep(&c, &target, true), NOW + 5_000).unwrap();
    assert_eq!(
        e,
        Effect {
            new_block: false,
            dirty: true
        }
    );
    assert_eq!(r.node(&t).unwrap().failing_since_ms, None);
    assert_eq!(r.node(&t).unwrap().last_reachable_ms, Some(NOW + 5_000));

    // Failures from NOW + 10 s; more failures do not restart the period.
    r.report(&rep(&a, &target, false), NOW + 10_000).unwrap();
    let e = r.report(&rep(&b, &target, false), NOW + 20_000).unwrap();
    assert_eq!(e, Effect::default());
    assert_eq!(r.tick(NOW + 10_000 + AFTER - 1), 0);
    assert_eq!(r.height(), h0);

    // The period is over: decommissioned, a block, listed but inactive.
    assert_eq!(r.tick(NOW + 10_000 + AFTER), 1);
    assert_eq!(r.height(), h0 + 1);
    let rec = r.node(&t).unwrap();
    assert!(rec.decommissioned);
    assert_eq!(rec.swarm_id, SwarmId::UNASSIGNED);
    let m = r.membership();
    assert!(m.node(&t).is_some() && !m.is_active(&t));
    assert_eq!(swarm_sizes(&r).values().sum::<usize>(), 6);
    assert_eq!(r.tick(NOW + 100_000), 0);

    // A decommissioned node may not report; failures about it change nothing.
    assert_eq!(
        r.report(&rep(&target, &a, true), NOW),
        Err(ReportError::ReporterNotActive)
    );
    assert_eq!(
        r.report(&rep(&a, &target, false), NOW + 100_000),
        Ok(Effect::default())
    );

    // Reachable again, by two reporters: recommissioned into a swarm, with a block.
    let e = r.report(&rep(&b, &target, true), NOW + 200_000).unwrap();
    assert_eq!(e, Effect::default());
    assert!(r.node(&t).unwrap().decommissioned);
    let e = r.report(&rep(&c, &target, true), NOW + 200_000).unwrap();
    assert_eq!(
        e,
        Effect {
            new_block: true,
            dirty: true
        }
    );
    assert_eq!(r.height(), h0 + 2);
    let rec = r.node(&t).unwrap();
    assert!(!rec.decommissioned && rec.swarm_id != SwarmId::UNASSIGNED);
    assert_eq!(rec.failing_since_ms, None);
    assert!(r.membership().is_active(&t));
}

#[test]
fn a_failure_report_past_the_deadline_decommissions_at_once() {
    let mut r = with_nodes(6);
    let (a, target) = (keys(1), keys(6));
    r.report(&rep(&a, &target, false), NOW).unwrap();
    let e = r.report(&rep(&a, &target, false), NOW + AFTER).unwrap();
    assert_eq!(
        e,
        Effect {
            new_block: true,
            dirty: true
        }
    );
    assert!(r.node(&target.pubkey_ed25519()).unwrap().decommissioned);
    // Five remain, still one swarm.
    assert_eq!(swarm_sizes(&r).into_values().collect::<Vec<_>>(), vec![5]);
}

#[test]
fn change_bytes() {
    let rec = with_nodes(1).nodes().next().unwrap().clone();
    let mut d = b"decommission".to_vec();
    d.extend(rec.pubkey_ed25519);
    assert_eq!(
        Change::Decommissioned(rec.pubkey_ed25519).canonical(&rec),
        d
    );
    let mut rc = b"recommission".to_vec();
    rc.extend(rec.pubkey_ed25519);
    assert_eq!(
        Change::Recommissioned(rec.pubkey_ed25519).canonical(&rec),
        rc
    );
    let u = Change::Updated(rec.pubkey_ed25519).canonical(&rec);
    assert!(u.starts_with(b"update"));
    assert_eq!(u.len(), 6 + 32 + 32 + 4 + 2 + 2 + 6);
}

#[test]
fn allow_list_text() {
    let a = hex::encode([1u8; 32]);
    let b = hex::encode([2u8; 32]).to_uppercase();
    let text = format!("# operators\n{a}\n\n  {b}  # bob\n");
    let adm = Admission::allow_list_from_text(&text).unwrap();
    assert!(adm.admits(&[1; 32]) && adm.admits(&[2; 32]) && !adm.admits(&[3; 32]));
    assert_eq!(
        Admission::allow_list_from_text(&format!("{a}\nnot-a-key\n")),
        Err(BadAllowList { line: 2 })
    );
    assert_eq!(
        Admission::allow_list_from_text(""),
        Ok(Admission::AllowList(BTreeSet::new()))
    );
}

/// Registration of `k` at `ip:port` signed at `ts`.
fn ann_at(k: &NodeKeys, ip: Ipv4Addr, port: u16, ts: i64) -> Announcement {
    let mut i = info(port);
    i.ip = ip;
    verify_announcement(&sign_announcement(k, &i, ts), ts).unwrap()
}

#[test]
fn non_public_addresses_are_refused_unless_allowed() {
    let mut public = Registry::new(Policy::new(Admission::Open, AFTER));
    for (ip, word) in [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "RFC 1918"),
        ("192.168.1.1", "RFC 1918"),
        ("172.20.0.1", "RFC 1918"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "CGNAT"),
        ("192.0.2.7", "TEST-NET-1"),
        ("198.18.0.1", "benchmarking"),
        ("240.0.0.1", "reserved"),
    ] {
        let e = public
            .register(&ann_at(&keys(1), ip.parse().unwrap(), 443, NOW), NOW)
            .unwrap_err();
        assert!(
            matches!(e, RegisterError::NonPublicAddress { class } if class.contains(word)),
            "{ip}: {e}"
        );
        assert!(e.to_string().contains(word), "{e}");
    }
    assert_eq!(public.height(), 0);
    let ok = ann_at(&keys(1), Ipv4Addr::new(8, 8, 8, 8), 443, NOW);
    assert!(public.register(&ok, NOW).unwrap().new_block);
    // A known node cannot move to a private address either.
    let moved = ann_at(&keys(1), Ipv4Addr::new(10, 0, 0, 1), 443, NOW + 1);
    assert!(matches!(
        public.register(&moved, NOW + 1),
        Err(RegisterError::NonPublicAddress { .. })
    ));
    // A local network's directory allows them.
    let mut local = Registry::new(policy());
    assert!(
        local
            .register(&ann_at(&keys(1), Ipv4Addr::LOCALHOST, 443, NOW), NOW)
            .unwrap()
            .new_block
    );
}

#[test]
fn one_active_node_per_endpoint() {
    let mut r = with_nodes(3);
    let (first, second) = (keys(1), keys(9));
    let port = r.node(&first.pubkey_ed25519()).unwrap().https_port;
    // A second key at the first's IP:port: refused, nothing changes.
    let h = r.height();
    assert_eq!(
        r.register(&ann(&second, port, NOW + 1), NOW + 1),
        Err(RegisterError::EndpointTaken)
    );
    // Nor may a known node move onto it.
    assert_eq!(
        r.register(&ann(&keys(2), port, NOW + 1), NOW + 1),
        Err(RegisterError::EndpointTaken)
    );
    assert_eq!(r.height(), h);
    // The same IP on another port is another endpoint.
    assert!(r.register(&ann(&second, port + 100, NOW), NOW).is_ok());
    // The first re-announcing itself is fine.
    assert!(r.register(&ann(&first, port, NOW + 2), NOW + 2).is_ok());

    // Once the first is decommissioned, the endpoint can be taken…
    let target = first.pubkey_ed25519();
    r.report(&rep(&keys(2), &first, false), NOW).unwrap();
    assert_eq!(r.tick(NOW + AFTER), 1);
    assert!(r.node(&target).unwrap().decommissioned);
    let third = keys(10);
    assert!(
        r.register(&ann(&third, port, NOW + 3), NOW + 3)
            .unwrap()
            .new_block
    );
    // …and the first cannot come back there while the new holder is active.
    r.report(&rep(&keys(2), &first, true), NOW + 4).unwrap();
    r.report(&rep(&keys(3), &first, true), NOW + 4).unwrap();
    assert!(r.node(&target).unwrap().decommissioned);
    // Announcing a free port, it can.
    assert!(
        r.register(&ann(&first, 40_000, NOW + 5), NOW + 5)
            .unwrap()
            .new_block
    );
    r.report(&rep(&keys(2), &first, true), NOW + 6).unwrap();
    r.report(&rep(&keys(3), &first, true), NOW + 6).unwrap();
    assert!(!r.node(&target).unwrap().decommissioned);
}

#[test]
fn the_registry_is_bounded() {
    let mut r = Registry::new(Policy {
        max_nodes: 3,
        ..policy()
    });
    for i in 1..=3u8 {
        r.register(&ann(&keys(i), 20_000 + u16::from(i), NOW), NOW)
            .unwrap();
    }
    assert_eq!(
        r.register(&ann(&keys(4), 20_004, NOW), NOW),
        Err(RegisterError::Full { max: 3 })
    );
    assert_eq!(r.nodes().count(), 3);
    // Known nodes still re-announce and update.
    assert_eq!(
        r.register(&ann(&keys(1), 20_001, NOW + 1), NOW + 1),
        Ok(Effect::default())
    );
    assert!(
        r.register(&ann(&keys(1), 20_011, NOW + 2), NOW + 2)
            .unwrap()
            .new_block
    );
}

#[test]
fn one_reporter_cannot_recommission_or_keep_a_node_listed() {
    let mut r = with_nodes(6);
    let (liar, b, c, target) = (keys(1), keys(2), keys(3), keys(6));
    let t = target.pubkey_ed25519();

    // The others find it dead; the liar keeps saying it is fine: decommissioned anyway.
    r.report(&rep(&b, &target, false), NOW).unwrap();
    for i in 0..10 {
        let e = r
            .report(&rep(&liar, &target, true), NOW + i * 1000)
            .unwrap();
        assert_eq!(e, Effect::default());
        r.report(&rep(&c, &target, false), NOW + i * 1000).unwrap();
    }
    assert_eq!(r.tick(NOW + AFTER), 1);
    assert!(r.node(&t).unwrap().decommissioned);
    let h = r.height();

    // The liar alone, however often, cannot bring it back.
    for i in 0..5 {
        r.report(&rep(&liar, &target, true), NOW + AFTER + 2 + i)
            .unwrap();
    }
    assert!(r.node(&t).unwrap().decommissioned);
    assert_eq!(r.height(), h);
    // A second, independent reporter does.
    r.report(&rep(&c, &target, true), NOW + AFTER + 12).unwrap();
    assert!(!r.node(&t).unwrap().decommissioned);
    assert_eq!(r.height(), h + 1);
}

#[test]
fn a_withdrawn_voucher_does_not_count() {
    let mut r = with_nodes(6);
    let (b, c, d, e, target) = (keys(2), keys(3), keys(4), keys(5), keys(6));
    let t = target.pubkey_ed25519();
    r.report(&rep(&b, &target, false), NOW).unwrap();
    r.report(&rep(&c, &target, true), NOW + 1).unwrap();
    // c changes its mind.
    r.report(&rep(&c, &target, false), NOW + 2).unwrap();
    r.report(&rep(&d, &target, true), NOW + 3).unwrap();
    assert_eq!(r.node(&t).unwrap().failing_since_ms, Some(NOW));
    r.report(&rep(&e, &target, true), NOW + 4).unwrap();
    assert_eq!(r.node(&t).unwrap().failing_since_ms, None);
}

/// Found by the simulation (seed 200123 of the live directory): two partitions and a few
/// crashes made every side report every other unreachable, and the directory decommissioned
/// all nodes; only active nodes may report, so nothing could bring any back. The last active
/// node now stays, and its reports recommission the others.
#[test]
fn the_last_active_node_is_never_decommissioned_and_brings_the_others_back() {
    let mut r = with_nodes(4);
    let all: Vec<NodeKeys> = (1..=4).map(keys).collect();
    // Every node reports every other unreachable (a partition into singletons).
    for a in &all {
        for b in &all {
            if a.pubkey_ed25519() != b.pubkey_ed25519() {
                let _ = r.report(&rep(a, b, false), NOW);
            }
        }
    }
    assert_eq!(r.tick(NOW + AFTER), 3);
    let active: Vec<&NodeKeys> = all
        .iter()
        .filter(|k| !r.node(&k.pubkey_ed25519()).unwrap().decommissioned)
        .collect();
    assert_eq!(active.len(), 1, "the last active node stays");
    assert_eq!(r.tick(NOW + 10 * AFTER), 0);
    // The partition heals: the survivor's successes recommission the others one by one (one
    // voucher while it is the only other active node; two once more are back).
    let survivor = active[0];
    let mut t = NOW + 10 * AFTER;
    for _ in 0..3 {
        for other in &all {
            if other.pubkey_ed25519() != survivor.pubkey_ed25519() {
                t += 1;
                let _ = r.report(&rep(survivor, other, true), t);
                for voucher in &all {
                    if !r.node(&voucher.pubkey_ed25519()).unwrap().decommissioned
                        && voucher.pubkey_ed25519() != other.pubkey_ed25519()
                    {
                        let _ = r.report(&rep(voucher, other, true), t);
                    }
                }
            }
        }
    }
    assert!(
        all.iter()
            .all(|k| !r.node(&k.pubkey_ed25519()).unwrap().decommissioned)
    );
}

#[test]
fn a_two_node_network_heals_with_its_only_peer() {
    let mut r = with_nodes(2);
    let (a, target) = (keys(1), keys(2));
    r.report(&rep(&a, &target, false), NOW).unwrap();
    assert_eq!(r.tick(NOW + AFTER), 1);
    // Only one other active node exists: its word is all there is.
    let e = r.report(&rep(&a, &target, true), NOW + AFTER).unwrap();
    assert!(e.new_block);
    assert!(!r.node(&target.pubkey_ed25519()).unwrap().decommissioned);
}
