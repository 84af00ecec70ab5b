//! Fuzzes what a node does with untrusted onion bytes before any key is involved and right
//! after one is: `parse_combined` (the body of `POST /onion_req/v2`), `route` (a decrypted
//! layer) and a peel with a fixed node key. Properties: no panic, and every borrowed slice is
//! the part of the input its framing claims. `tests/fuzz_corpus.rs` replays the fixed seeds in
//! `fuzz/seeds/onion_parse/` with the same checks on every `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The pure onion module, compiled here without the rest of snode (and so without RocksDB).
#[allow(dead_code, unused_imports, missing_docs, unreachable_pub)]
#[path = "../../src/onion/mod.rs"]
mod onion;

/// The node key of the fuzz seeds that decrypt (X25519 secret = 32 × 0x07).
const FUZZ_NODE_SECRET: [u8; 32] = [7; 32];

fn check_route(data: &[u8]) {
    match onion::route(data) {
        Ok(onion::Layer::Final { body, .. }) => {
            let n = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
            assert_eq!(body, &data[4..4 + n]);
        }
        Ok(onion::Layer::ToServer { payload, .. }) => assert_eq!(payload, data),
        Ok(onion::Layer::ToNode { inner, .. }) => {
            let n = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
            assert_eq!(inner, &data[4..4 + n]);
        }
        Err(_) => {}
    }
}

fuzz_target!(|data: &[u8]| {
    check_route(data);
    if let Ok(c) = onion::parse_combined(data) {
        let n = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
        assert_eq!(c.ciphertext, &data[4..4 + n]);
        let key = onion::NodeOnionKey::from_secret(&FUZZ_NODE_SECRET).expect("fixed key");
        if let Ok((plain, reply)) = key.peel(&c.ephemeral_key, c.enc_type, c.ciphertext) {
            check_route(&plain);
            let _ = reply.encrypt(b"{}");
        }
    }
});
