//! Node-to-node protocol: request/response signatures, the bulk message format, and the
//! signed HTTPS client. The receiving side's routes live in `api::peer`.

pub mod auth;
pub mod client;
pub mod wire;

/// Path of forwarded recursive client requests (the original's `sn.storage_cc`).
pub const PATH_STORAGE_CC: &str = "/snode/v1/storage_cc";
/// Path of bulk message pushes (the original's `sn.data`).
pub const PATH_DATA: &str = "/snode/v1/data";
/// Path of the signed reachability ping (the original's `sn.ping`).
pub const PATH_PING: &str = "/snode/v1/ping";
/// Path of a relayed onion layer (the original's `sn.onion_request`).
pub const PATH_ONION: &str = "/snode/v1/onion";
