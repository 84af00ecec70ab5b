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
        admission: Admission::Open,
        decommission_after_ms: AFTER,
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

    // Same data, later: no block (only the announcement time is remembered).
    let e = r
        .register(&ann(&k, port, NOW + 30_000), NOW + 30_000)
        .unwrap();
    assert_eq!(
        e,
        Effect {
            new_block: false,
            dirty: true
        }
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
        decommission_after_ms: AFTER,
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
    let (a, b, target) = (keys(1), keys(2), keys(3));
    let t = target.pubkey_ed25519();
    let h0 = r.height();

    // First failure starts the period; a success ends it.
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

    // Reachable again: recommissioned into a swarm, with a block.
    let e = r.report(&rep(&b, &target, true), NOW + 200_000).unwrap();
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
