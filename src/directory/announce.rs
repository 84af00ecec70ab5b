//! The two signed messages a node sends the directory: its announcement (registration) and a
//! reachability report about a peer.
//!
//! Owns their JSON shape, the canonical byte strings the node signs, and verification (key
//! forms, signature, ±5 min timestamp window). Pure: no I/O; `now_ms` is a parameter.
//! Must not decide admission or state changes (that is `state`).
//!
//! Canonical signed bytes (every integer big-endian, fixed widths, so no two different
//! messages share a byte string and no separator is needed):
//! - announcement: `"snode-register" ‖ ed25519 pk (32) ‖ x25519 pk (32) ‖ IPv4 (4) ‖
//!   https port u16 ‖ omq port u16 ‖ version 3 × u16 ‖ timestamp ms i64`;
//! - report: `"snode-report" ‖ reporter ed25519 pk (32) ‖ target ed25519 pk (32) ‖
//!   reachable u8 (1 or 0) ‖ timestamp ms i64`.
//!
//! The domain prefixes keep one kind of signature from being replayed as the other, and both
//! differ from every string a node signs for clients (storage-server.md 1.11).

use crate::keys::{NodeKeys, ed25519_pk_to_x25519};
use crate::message::{b64, b64_decode};
use crate::sign::verify_ed25519;
use crate::swarm::NodeInfo;
use serde::{Deserialize, Serialize};
use std::net::Ipv4Addr;

/// How far a message's timestamp may be from the directory's clock, either way.
pub const TIMESTAMP_WINDOW_MS: i64 = 5 * 60 * 1000;
/// Domain prefix of the announcement's signed bytes.
const REGISTER_DOMAIN: &[u8] = b"snode-register";
/// Domain prefix of the report's signed bytes.
const REPORT_DOMAIN: &[u8] = b"snode-report";

/// A node's announcement as sent to `POST /register`. Field names follow oxend's listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedAnnouncement {
    /// Ed25519 pubkey, hex: the node's identity.
    pub pubkey_ed25519: String,
    /// X25519 pubkey, hex: must be the Montgomery form of the Ed25519 key.
    pub pubkey_x25519: String,
    /// Public IPv4 address, dotted.
    pub public_ip: String,
    /// HTTPS port.
    pub storage_port: u16,
    /// OxenMQ/QUIC port (0 if none).
    pub storage_lmq_port: u16,
    /// Software version.
    pub version: [u16; 3],
    /// Milliseconds since the Unix epoch when the node signed this.
    pub timestamp: i64,
    /// Base64 Ed25519 signature over the canonical bytes (module doc).
    pub signature: String,
}

/// A verified announcement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Announcement {
    /// Ed25519 pubkey.
    pub pubkey_ed25519: [u8; 32],
    /// X25519 pubkey (checked to match the Ed25519 key).
    pub pubkey_x25519: [u8; 32],
    /// Public IPv4 address.
    pub ip: Ipv4Addr,
    /// HTTPS port.
    pub https_port: u16,
    /// OxenMQ/QUIC port.
    pub omq_port: u16,
    /// Software version.
    pub version: [u16; 3],
    /// When the node signed it.
    pub timestamp_ms: i64,
}

/// A reachability report as sent to `POST /report`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedReport {
    /// Ed25519 pubkey (hex) of the reporting node, which signs.
    pub reporter: String,
    /// Ed25519 pubkey (hex) of the node tested.
    pub target: String,
    /// Whether the test passed.
    pub reachable: bool,
    /// Milliseconds since the Unix epoch when the reporter signed this.
    pub timestamp: i64,
    /// Base64 Ed25519 signature by the reporter over the canonical bytes (module doc).
    pub signature: String,
}

/// A verified reachability report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// The reporting node.
    pub reporter: [u8; 32],
    /// The node tested.
    pub target: [u8; 32],
    /// Whether the test passed.
    pub reachable: bool,
    /// When the reporter signed it.
    pub timestamp_ms: i64,
}

/// Why an announcement or report was rejected. All map to HTTP 400.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnnounceError {
    /// A field does not parse.
    #[error("invalid {field}: {why}")]
    BadField {
        /// The JSON field.
        field: &'static str,
        /// What is wrong.
        why: &'static str,
    },
    /// The X25519 key is not the Ed25519 key's Montgomery form.
    #[error("pubkey_x25519 does not match pubkey_ed25519")]
    KeyMismatch,
    /// The signature does not verify.
    #[error("invalid signature")]
    BadSignature,
    /// The timestamp is more than `TIMESTAMP_WINDOW_MS` away from the directory's clock.
    #[error("timestamp {timestamp} is too far from the directory's time {now}")]
    ClockSkew {
        /// The message's timestamp.
        timestamp: i64,
        /// The directory's time.
        now: i64,
    },
}

/// The announcement's signed bytes (module doc).
fn announcement_bytes(a: &Announcement) -> Vec<u8> {
    let mut m = Vec::with_capacity(REGISTER_DOMAIN.len() + 32 + 32 + 4 + 2 + 2 + 6 + 8);
    m.extend_from_slice(REGISTER_DOMAIN);
    m.extend_from_slice(&a.pubkey_ed25519);
    m.extend_from_slice(&a.pubkey_x25519);
    m.extend_from_slice(&a.ip.octets());
    m.extend_from_slice(&a.https_port.to_be_bytes());
    m.extend_from_slice(&a.omq_port.to_be_bytes());
    for v in a.version {
        m.extend_from_slice(&v.to_be_bytes());
    }
    m.extend_from_slice(&a.timestamp_ms.to_be_bytes());
    m
}

/// The report's signed bytes (module doc).
fn report_bytes(r: &Report) -> Vec<u8> {
    let mut m = Vec::with_capacity(REPORT_DOMAIN.len() + 32 + 32 + 1 + 8);
    m.extend_from_slice(REPORT_DOMAIN);
    m.extend_from_slice(&r.reporter);
    m.extend_from_slice(&r.target);
    m.push(u8::from(r.reachable));
    m.extend_from_slice(&r.timestamp_ms.to_be_bytes());
    m
}

/// Signs the announcement of the node with `keys`, at the address, ports and version of
/// `info` (its keys and swarm are ignored: the keys come from `keys`, the swarm from the
/// directory).
pub fn sign_announcement(keys: &NodeKeys, info: &NodeInfo, now_ms: i64) -> SignedAnnouncement {
    let a = Announcement {
        pubkey_ed25519: keys.pubkey_ed25519(),
        pubkey_x25519: keys.pubkey_x25519(),
        ip: info.ip,
        https_port: info.https_port,
        omq_port: info.omq_port,
        version: info.version,
        timestamp_ms: now_ms,
    };
    SignedAnnouncement {
        pubkey_ed25519: hex::encode(a.pubkey_ed25519),
        pubkey_x25519: hex::encode(a.pubkey_x25519),
        public_ip: a.ip.to_string(),
        storage_port: a.https_port,
        storage_lmq_port: a.omq_port,
        version: a.version,
        timestamp: now_ms,
        signature: b64(&keys.sign(&announcement_bytes(&a))),
    }
}

/// Signs a report by the node with `keys` about `target`.
pub fn sign_report(
    keys: &NodeKeys,
    target: &[u8; 32],
    reachable: bool,
    now_ms: i64,
) -> SignedReport {
    let r = Report {
        reporter: keys.pubkey_ed25519(),
        target: *target,
        reachable,
        timestamp_ms: now_ms,
    };
    SignedReport {
        reporter: hex::encode(r.reporter),
        target: hex::encode(r.target),
        reachable,
        timestamp: now_ms,
        signature: b64(&keys.sign(&report_bytes(&r))),
    }
}

/// 32 bytes from 64 hex digits.
fn key32(field: &'static str, s: &str) -> Result<[u8; 32], AnnounceError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).map_err(|_| AnnounceError::BadField {
        field,
        why: "expected 64 hex digits",
    })?;
    Ok(out)
}

/// 64 signature bytes from base64.
fn signature64(s: &str) -> Result<[u8; 64], AnnounceError> {
    b64_decode(s)
        .and_then(|v| <[u8; 64]>::try_from(v.as_slice()).ok())
        .ok_or(AnnounceError::BadField {
            field: "signature",
            why: "expected base64 of 64 bytes",
        })
}

/// Rejects timestamps outside the window around `now_ms`.
fn check_time(timestamp: i64, now_ms: i64) -> Result<(), AnnounceError> {
    if timestamp.abs_diff(now_ms) > TIMESTAMP_WINDOW_MS.unsigned_abs() {
        return Err(AnnounceError::ClockSkew {
            timestamp,
            now: now_ms,
        });
    }
    Ok(())
}

/// Verifies an announcement: fields parse, the address is a usable unicast IPv4 with a
/// non-zero HTTPS port (clients discard `0.0.0.0`, clients.md 1.1), the X25519 key is the
/// Ed25519 key's Montgomery form, the timestamp is within the window, the signature holds.
pub fn verify_announcement(
    s: &SignedAnnouncement,
    now_ms: i64,
) -> Result<Announcement, AnnounceError> {
    let pubkey_ed25519 = key32("pubkey_ed25519", &s.pubkey_ed25519)?;
    let pubkey_x25519 = key32("pubkey_x25519", &s.pubkey_x25519)?;
    let ip: Ipv4Addr = s.public_ip.parse().map_err(|_| AnnounceError::BadField {
        field: "public_ip",
        why: "expected a dotted IPv4 address",
    })?;
    // Never a node's address, not even on a local network (`state` refuses the other
    // non-public classes unless the directory allows them).
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
        return Err(AnnounceError::BadField {
            field: "public_ip",
            why: super::addr::classify(ip).unwrap_or("not a unicast address"),
        });
    }
    if s.storage_port == 0 {
        return Err(AnnounceError::BadField {
            field: "storage_port",
            why: "must not be 0",
        });
    }
    // Not a point, or a weak one: no X25519 key can match it.
    if ed25519_pk_to_x25519(&pubkey_ed25519) != Some(pubkey_x25519) {
        return Err(AnnounceError::KeyMismatch);
    }
    check_time(s.timestamp, now_ms)?;
    let signature = signature64(&s.signature)?;
    let a = Announcement {
        pubkey_ed25519,
        pubkey_x25519,
        ip,
        https_port: s.storage_port,
        omq_port: s.storage_lmq_port,
        version: s.version,
        timestamp_ms: s.timestamp,
    };
    if !verify_ed25519(&pubkey_ed25519, &announcement_bytes(&a), &signature) {
        return Err(AnnounceError::BadSignature);
    }
    Ok(a)
}

/// Verifies a report: keys parse, reporter ≠ target, the timestamp is within the window, the
/// reporter's signature holds. Whether the reporter may report is `state`'s decision.
pub fn verify_report(s: &SignedReport, now_ms: i64) -> Result<Report, AnnounceError> {
    let reporter = key32("reporter", &s.reporter)?;
    let target = key32("target", &s.target)?;
    if reporter == target {
        return Err(AnnounceError::BadField {
            field: "target",
            why: "a node cannot report on itself",
        });
    }
    check_time(s.timestamp, now_ms)?;
    let signature = signature64(&s.signature)?;
    let r = Report {
        reporter,
        target,
        reachable: s.reachable,
        timestamp_ms: s.timestamp,
    };
    if !verify_ed25519(&reporter, &report_bytes(&r), &signature) {
        return Err(AnnounceError::BadSignature);
    }
    Ok(r)
}

#[cfg(test)]
mod tests;
