//! Tests of the signed announcement and report: round trips, canonical bytes, rejections.

use super::*;
use crate::swarm::SwarmId;

const NOW: i64 = 1_700_000_000_000;

fn keys(b: u8) -> NodeKeys {
    NodeKeys::from_seed([b; 32])
}

fn info() -> NodeInfo {
    NodeInfo {
        pubkey_ed25519: [0; 32],
        pubkey_x25519: [0; 32],
        ip: Ipv4Addr::new(10, 1, 2, 3),
        https_port: 22021,
        omq_port: 22020,
        swarm_id: SwarmId::UNASSIGNED,
        version: [2, 8, 0],
    }
}

#[test]
fn announcement_round_trip() {
    let k = keys(1);
    let s = sign_announcement(&k, &info(), NOW);
    let a = verify_announcement(&s, NOW + 1000).unwrap();
    assert_eq!(a.pubkey_ed25519, k.pubkey_ed25519());
    assert_eq!(a.pubkey_x25519, k.pubkey_x25519());
    assert_eq!(a.ip, Ipv4Addr::new(10, 1, 2, 3));
    assert_eq!(
        (a.https_port, a.omq_port, a.version),
        (22021, 22020, [2, 8, 0])
    );
    assert_eq!(a.timestamp_ms, NOW);
    // And through JSON, as on the wire.
    let json = serde_json::to_string(&s).unwrap();
    let back: SignedAnnouncement = serde_json::from_str(&json).unwrap();
    assert_eq!(verify_announcement(&back, NOW).unwrap(), a);
}

#[test]
fn canonical_bytes_layout() {
    let a = Announcement {
        pubkey_ed25519: [0x11; 32],
        pubkey_x25519: [0x22; 32],
        ip: Ipv4Addr::new(1, 2, 3, 4),
        https_port: 0x0506,
        omq_port: 0x0708,
        version: [0x090a, 0x0b0c, 0x0d0e],
        timestamp_ms: 0x0102_0304_0506_0708,
    };
    let mut want = b"snode-register".to_vec();
    want.extend([0x11; 32]);
    want.extend([0x22; 32]);
    want.extend([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14]);
    want.extend([1, 2, 3, 4, 5, 6, 7, 8]);
    assert_eq!(announcement_bytes(&a), want);

    let r = Report {
        reporter: [0x33; 32],
        target: [0x44; 32],
        reachable: true,
        timestamp_ms: 258,
    };
    let mut want = b"snode-report".to_vec();
    want.extend([0x33; 32]);
    want.extend([0x44; 32]);
    want.push(1);
    want.extend([0, 0, 0, 0, 0, 0, 1, 2]);
    assert_eq!(report_bytes(&r), want);
}

#[test]
fn tampered_announcements_are_rejected() {
    let k = keys(2);
    let good = sign_announcement(&k, &info(), NOW);

    let mut s = good.clone();
    s.storage_port += 1;
    assert_eq!(
        verify_announcement(&s, NOW),
        Err(AnnounceError::BadSignature)
    );

    let mut s = good.clone();
    s.public_ip = "10.1.2.4".into();
    assert_eq!(
        verify_announcement(&s, NOW),
        Err(AnnounceError::BadSignature)
    );

    let mut s = good.clone();
    s.timestamp += 1;
    assert_eq!(
        verify_announcement(&s, NOW),
        Err(AnnounceError::BadSignature)
    );

    // Another node's key (signature by the first) — the x25519 must follow the ed key.
    let other = keys(3);
    let mut s = good.clone();
    s.pubkey_ed25519 = hex::encode(other.pubkey_ed25519());
    assert_eq!(
        verify_announcement(&s, NOW),
        Err(AnnounceError::KeyMismatch)
    );
    s.pubkey_x25519 = hex::encode(other.pubkey_x25519());
    assert_eq!(
        verify_announcement(&s, NOW),
        Err(AnnounceError::BadSignature)
    );

    // An x25519 key that is not the ed key's.
    let mut s = good.clone();
    s.pubkey_x25519 = hex::encode([9u8; 32]);
    assert_eq!(
        verify_announcement(&s, NOW),
        Err(AnnounceError::KeyMismatch)
    );

    let mut s = good.clone();
    s.signature = "AAAA".into();
    assert!(matches!(
        verify_announcement(&s, NOW),
        Err(AnnounceError::BadField {
            field: "signature",
            ..
        })
    ));
    let mut s = good.clone();
    s.pubkey_ed25519 = "zz".into();
    assert!(matches!(
        verify_announcement(&s, NOW),
        Err(AnnounceError::BadField {
            field: "pubkey_ed25519",
            ..
        })
    ));
}

#[test]
fn announcement_addresses_and_ports_are_checked() {
    let k = keys(4);
    for ip in ["0.0.0.0", "255.255.255.255", "224.0.0.1"] {
        let mut i = info();
        i.ip = ip.parse().unwrap();
        let s = sign_announcement(&k, &i, NOW);
        assert!(
            matches!(
                verify_announcement(&s, NOW),
                Err(AnnounceError::BadField {
                    field: "public_ip",
                    ..
                })
            ),
            "{ip}"
        );
    }
    let mut s = sign_announcement(&k, &info(), NOW);
    s.public_ip = "::1".into();
    assert!(matches!(
        verify_announcement(&s, NOW),
        Err(AnnounceError::BadField {
            field: "public_ip",
            ..
        })
    ));
    let mut i = info();
    i.https_port = 0;
    let s = sign_announcement(&k, &i, NOW);
    assert!(matches!(
        verify_announcement(&s, NOW),
        Err(AnnounceError::BadField {
            field: "storage_port",
            ..
        })
    ));
    // Loopback is fine: a local testnet lives there.
    let mut i = info();
    i.ip = Ipv4Addr::LOCALHOST;
    assert!(verify_announcement(&sign_announcement(&k, &i, NOW), NOW).is_ok());
}

#[test]
fn timestamp_window_is_five_minutes_each_way() {
    let k = keys(5);
    let s = sign_announcement(&k, &info(), NOW);
    assert!(verify_announcement(&s, NOW + TIMESTAMP_WINDOW_MS).is_ok());
    assert!(verify_announcement(&s, NOW - TIMESTAMP_WINDOW_MS).is_ok());
    assert!(matches!(
        verify_announcement(&s, NOW + TIMESTAMP_WINDOW_MS + 1),
        Err(AnnounceError::ClockSkew { .. })
    ));
    assert!(matches!(
        verify_announcement(&s, NOW - TIMESTAMP_WINDOW_MS - 1),
        Err(AnnounceError::ClockSkew { .. })
    ));
    let r = sign_report(&k, &[7; 32], false, NOW);
    assert!(verify_report(&r, NOW + TIMESTAMP_WINDOW_MS).is_ok());
    assert!(matches!(
        verify_report(&r, NOW + TIMESTAMP_WINDOW_MS + 1),
        Err(AnnounceError::ClockSkew { .. })
    ));
}

#[test]
fn reports_round_trip_and_reject_tampering() {
    let k = keys(6);
    let target = keys(7).pubkey_ed25519();
    let s = sign_report(&k, &target, true, NOW);
    let r = verify_report(&s, NOW).unwrap();
    assert_eq!(
        r,
        Report {
            reporter: k.pubkey_ed25519(),
            target,
            reachable: true,
            timestamp_ms: NOW,
        }
    );
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["reachable"], true);
    assert_eq!(json["reporter"], hex::encode(k.pubkey_ed25519()));

    let mut bad = s.clone();
    bad.reachable = false;
    assert_eq!(verify_report(&bad, NOW), Err(AnnounceError::BadSignature));
    let mut bad = s.clone();
    bad.target = hex::encode([8u8; 32]);
    assert_eq!(verify_report(&bad, NOW), Err(AnnounceError::BadSignature));
    // A report signed by someone other than the named reporter.
    let mut bad = sign_report(&keys(9), &target, true, NOW);
    bad.reporter = s.reporter.clone();
    assert_eq!(verify_report(&bad, NOW), Err(AnnounceError::BadSignature));
    // Reporting on oneself.
    let own = sign_report(&k, &k.pubkey_ed25519(), true, NOW);
    assert!(matches!(
        verify_report(&own, NOW),
        Err(AnnounceError::BadField {
            field: "target",
            ..
        })
    ));
    // An announcement's signature is no report's.
    let ann = sign_announcement(&k, &info(), NOW);
    let mut bad = s.clone();
    bad.signature = ann.signature;
    assert_eq!(verify_report(&bad, NOW), Err(AnnounceError::BadSignature));
}
