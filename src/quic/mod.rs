//! The QUIC transport of oxen-libquic, which current Session clients and upstream nodes speak
//! (quic.md): TLS 1.3 with Ed25519 raw public keys (`tls`), quinn endpoints with libquic's
//! transport settings (`endpoint`), the bencoded request stream's messages (`frame`), and a
//! client of that stream (`client`).
//!
//! Owns the transport below the storage semantics. Must not know RPC methods, onion requests
//! or subscriptions: the node's listener (`api::quic`) maps endpoints to them.

pub mod client;
pub mod endpoint;
pub mod frame;
pub mod tls;
