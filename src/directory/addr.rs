//! Which IPv4 addresses a node may announce to a public directory.
//!
//! Owns one decision: `classify(ip)` names the special-purpose class of an address (IANA's
//! IPv4 special-purpose registry, RFC 6890 and its updates), or `None` for a public unicast
//! address. Pure: it never resolves, connects or sends anything; `state` applies it unless the
//! directory runs a local network (`Policy::allow_private_addresses`).
//!
//! Why the directory refuses these: every listed address is one that clients and every other
//! node will connect to. A node announcing 127.0.0.1, 10.0.0.5 or 169.254.169.254 would turn
//! the whole network into a scanner of each member's own loopback, LAN or cloud metadata
//! service, and an address nobody on the internet can reach only makes the node useless.

use std::net::Ipv4Addr;

/// The class of a non-public IPv4 address (a short phrase for error texts: "a loopback
/// address"), or `None` when `ip` is public unicast. Every range is checked by prefix, so the
/// first and last address of each range are classified like the rest.
pub fn classify(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    // Most specific first: 255.255.255.255 is inside 240/4, 0.0.0.0 inside 0/8.
    if ip.is_broadcast() {
        return Some("broadcast (255.255.255.255)");
    }
    if ip.is_unspecified() {
        return Some("unspecified (0.0.0.0)");
    }
    let class = match (a, b, c) {
        (0, _, _) => "\"this network\" (0.0.0.0/8)",
        (10, _, _) => "private (RFC 1918, 10.0.0.0/8)",
        (100, 64..=127, _) => "shared address space (CGNAT, 100.64.0.0/10)",
        (127, _, _) => "loopback (127.0.0.0/8)",
        (169, 254, _) => "link-local (169.254.0.0/16)",
        (172, 16..=31, _) => "private (RFC 1918, 172.16.0.0/12)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) => "documentation (TEST-NET-1, 192.0.2.0/24)",
        (192, 88, 99) => "deprecated 6to4 relay anycast (192.88.99.0/24)",
        (192, 168, _) => "private (RFC 1918, 192.168.0.0/16)",
        (198, 18..=19, _) => "benchmarking (198.18.0.0/15)",
        (198, 51, 100) => "documentation (TEST-NET-2, 198.51.100.0/24)",
        (203, 0, 113) => "documentation (TEST-NET-3, 203.0.113.0/24)",
        (224..=239, _, _) => "multicast (224.0.0.0/4)",
        (240..=255, _, _) => "reserved (240.0.0.0/4)",
        _ => return None,
    };
    Some(class)
}

#[cfg(test)]
mod tests;
