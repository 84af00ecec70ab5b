//! Tests of `classify`: each class at its first and last address and just outside it. These
//! check the decision only; nothing is sent anywhere.

use super::*;

fn ip(s: &str) -> Ipv4Addr {
    s.parse()
        .unwrap_or_else(|_| panic!("{s} is an IPv4 address"))
}

/// Asserts `first..=last` are in the class containing `word`, and `before`/`after` are public.
fn range(word: &str, first: &str, last: &str, outside: &[&str]) {
    for s in [first, last] {
        let class = classify(ip(s));
        assert!(
            class.is_some_and(|c| c.contains(word)),
            "{s}: {class:?}, want {word}"
        );
    }
    for s in outside {
        assert_eq!(classify(ip(s)), None, "{s} is public");
    }
}

#[test]
fn public_addresses_are_public() {
    for s in [
        "1.1.1.1",
        "8.8.8.8",
        "9.255.255.255",
        "11.0.0.0",
        "100.63.255.255",
        "100.128.0.0",
        "126.255.255.255",
        "128.0.0.0",
        "172.15.255.255",
        "172.32.0.0",
        "192.0.1.255",
        "192.0.3.0",
        "192.167.255.255",
        "192.169.0.0",
        "198.17.255.255",
        "198.20.0.0",
        "223.255.255.255",
    ] {
        assert_eq!(classify(ip(s)), None, "{s}");
    }
}

#[test]
fn loopback_and_this_network() {
    range(
        "loopback",
        "127.0.0.0",
        "127.255.255.255",
        &["126.255.255.255", "128.0.0.0"],
    );
    range("this network", "0.0.0.1", "0.255.255.255", &["1.0.0.0"]);
    assert!(classify(ip("0.0.0.0")).is_some_and(|c| c.contains("unspecified")));
}

#[test]
fn private_rfc1918() {
    range(
        "private",
        "10.0.0.0",
        "10.255.255.255",
        &["9.255.255.255", "11.0.0.0"],
    );
    range(
        "private",
        "172.16.0.0",
        "172.31.255.255",
        &["172.15.255.255", "172.32.0.0"],
    );
    range(
        "private",
        "192.168.0.0",
        "192.168.255.255",
        &["192.167.255.255", "192.169.0.0"],
    );
    assert!(classify(ip("10.1.2.3")).is_some_and(|c| c.contains("RFC 1918")));
}

#[test]
fn link_local_and_cgnat() {
    range(
        "link-local",
        "169.254.0.0",
        "169.254.255.255",
        &["169.253.255.255", "169.255.0.0"],
    );
    range(
        "CGNAT",
        "100.64.0.0",
        "100.127.255.255",
        &["100.63.255.255", "100.128.0.0"],
    );
}

#[test]
fn documentation_and_benchmarking() {
    range(
        "TEST-NET-1",
        "192.0.2.0",
        "192.0.2.255",
        &["192.0.1.255", "192.0.3.0"],
    );
    range(
        "TEST-NET-2",
        "198.51.100.0",
        "198.51.100.255",
        &["198.51.99.255", "198.51.101.0"],
    );
    range(
        "TEST-NET-3",
        "203.0.113.0",
        "203.0.113.255",
        &["203.0.112.255", "203.0.114.0"],
    );
    range(
        "benchmarking",
        "198.18.0.0",
        "198.19.255.255",
        &["198.17.255.255", "198.20.0.0"],
    );
    range("IETF", "192.0.0.0", "192.0.0.255", &["191.255.255.255"]);
    range(
        "6to4",
        "192.88.99.0",
        "192.88.99.255",
        &["192.88.98.255", "192.88.100.0"],
    );
}

#[test]
fn multicast_reserved_broadcast() {
    range(
        "multicast",
        "224.0.0.0",
        "239.255.255.255",
        &["223.255.255.255"],
    );
    range("reserved", "240.0.0.0", "255.255.255.254", &[]);
    assert!(classify(ip("255.255.255.255")).is_some_and(|c| c.contains("broadcast")));
}
