//! Onion requests, one layer at a time (storage-server.md section 2, clients.md section 2).
//!
//! Owns: parsing the entry body (`parse_combined`), peeling one layer with the node's X25519 key
//! (`NodeOnionKey::peel`), turning the decrypted layer into a closed routing outcome (`route` →
//! `Layer`), encrypting the final destination's reply (`ReplyKey`), and the client-side builder
//! (`build_onion`, `ClientReplyKey`). Pure: no tokio, no I/O, no clock, no logging of payloads or
//! keys. Must not: look up nodes, send anything, or decide HTTP statuses (the `api` layer maps
//! `ParseError` → 400 `Error parsing onion request: <what>`, `PeelError` → 400 `Invalid
//! ciphertext`, `RouteError` → encrypted `{"status":400,"body":"Invalid json"}`).

mod build;
mod crypto;
mod parse;
mod peel;
mod route;

pub use build::{
    BuildError, Built, ClientReplyKey, Destination, HopKeys, MAX_PATH_HOPS, build_onion,
    build_onion_with_rng, decrypt_reply,
};
pub use crypto::{EncType, PeelError};
pub use parse::{Combined, MAX_ONION_BODY, ParseError, parse_combined};
pub use peel::{NodeKeyError, NodeOnionKey, ReplyKey, peel};
pub use route::{Layer, RouteError, allowed_target, is_allowed_target, normalize_target, route};

#[cfg(test)]
mod tests;
