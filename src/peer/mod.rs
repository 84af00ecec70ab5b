//! Node-to-node protocol: request/response authentication (`auth`), the body formats — bulk
//! messages (`wire`), onion hops (`hop`) and coalesced forwards (`batch`) — and the client (`client`), which carries
//! each exchange on a held QUIC connection to the peer (`quic`) or as a signed HTTPS request.
//!
//! Owns what goes over the wire between nodes and the paths it goes to. Must not hold HTTP
//! server glue (the receiving routes are `api::peer` and `api::onion`) or decide what to send
//! (callers: replication, the onion relay). The codecs share the one bencode reader
//! (`crate::bencode`).

pub mod auth;
pub mod batch;
pub mod client;
pub mod hop;
pub mod quic;
pub mod reply;
pub mod wire;

/// Path of forwarded recursive client requests (the original's `sn.storage_cc`).
pub const PATH_STORAGE_CC: &str = "/snode/v1/storage_cc";
/// Path of a batch of forwarded requests to one peer (`batch`); snode's own, no original.
pub const PATH_STORAGE_CC_BATCH: &str = "/snode/v1/storage_cc_batch";
/// Path of bulk message pushes (the original's `sn.data`).
pub const PATH_DATA: &str = "/snode/v1/data";
/// Path of handed-off tombstones (`replication::protocol::TombstonesRequest`); snode's own.
pub const PATH_TOMBSTONES: &str = "/snode/v1/tombstones";
/// Path of subaccount revocation states (`replication::protocol::RevocationsRequest`); snode's
/// own.
pub const PATH_REVOCATIONS: &str = "/snode/v1/revocations";
/// Path of the signed reachability ping (the original's `sn.ping`).
pub const PATH_PING: &str = "/snode/v1/ping";
/// Path of a relayed onion layer (the original's `sn.onion_request`).
pub const PATH_ONION: &str = "/snode/v1/onion";
