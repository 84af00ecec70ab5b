//! Tests of the directory's token buckets, with time as a parameter.

use super::*;

#[test]
fn a_burst_then_the_rate() {
    let t0 = Instant::now();
    let mut b = Buckets::new(Some(Rate::new(2.0, 5)), 10);
    for _ in 0..5 {
        assert!(b.allow(1u8, t0));
    }
    assert!(!b.allow(1, t0), "the burst is spent");
    // Another key has its own bucket.
    assert!(b.allow(2, t0));
    // Half a second later, one token (2 per second).
    assert!(b.allow(1, t0 + Duration::from_millis(500)));
    assert!(!b.allow(1, t0 + Duration::from_millis(500)));
    // Refill stops at the burst.
    let later = t0 + Duration::from_secs(3600);
    for _ in 0..5 {
        assert!(b.allow(1, later));
    }
    assert!(!b.allow(1, later));
}

#[test]
fn off_lets_everything_through_and_tracks_nothing() {
    let t0 = Instant::now();
    let mut b = Buckets::new(None, 1);
    for i in 0..1000u32 {
        assert!(b.allow(i, t0));
    }
    assert!(b.is_empty());
}

#[test]
fn the_table_is_bounded() {
    let t0 = Instant::now();
    let mut b = Buckets::new(Some(Rate::new(1.0, 2)), 3);
    for k in 0..3u8 {
        assert!(b.allow(k, t0));
    }
    // Full of partly-drained buckets: a newcomer is refused, not added.
    assert!(!b.allow(9, t0));
    assert_eq!(b.len(), 3);
    // Once they refilled, they are dropped and the newcomer gets in.
    assert!(b.allow(9, t0 + Duration::from_secs(5)));
    assert_eq!(b.len(), 1);
}

#[test]
fn rates_parse() {
    assert_eq!(parse_rate("2:60"), Ok(Some(Rate::new(2.0, 60))));
    assert_eq!(parse_rate(" 0.5 : 10 "), Ok(Some(Rate::new(0.5, 10))));
    assert_eq!(parse_rate("OFF"), Ok(None));
    for bad in [
        "", "2", "2:", ":3", "x:3", "2:-1", "0:10", "2:0", "inf:3", "NaN:3",
    ] {
        assert!(parse_rate(bad).is_err(), "{bad}");
    }
}

#[test]
fn ipv6_is_limited_per_64() {
    let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
    let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
    let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
    assert_eq!(IpKey::of(a), IpKey::of(b));
    assert_ne!(IpKey::of(a), IpKey::of(c));
    let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
    let v4: IpAddr = "192.0.2.1".parse().unwrap();
    assert_eq!(IpKey::of(mapped), IpKey::of(v4));
}
