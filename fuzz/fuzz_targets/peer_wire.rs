//! Fuzzes what a node does with bytes from another node before trusting them: the generic
//! bencode reader (canonical: what it accepts re-encodes to the same bytes), the `sn.data`
//! batch (`peer::wire`) and the onion hop body (`peer::hop`), each of which must re-encode to
//! something that decodes to the same value. `tests/fuzz_corpus.rs` replays the fixed seeds in
//! `fuzz/seeds/peer_wire/` with the same checks on every `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The pure modules these codecs use, compiled here without the rest of snode (and so without
// RocksDB); the `crate::…` paths inside them resolve to these.
#[allow(dead_code, unused_imports, missing_docs, unreachable_pub)]
#[path = "../../src/bencode.rs"]
mod bencode;
#[allow(dead_code, unused_imports, missing_docs, unreachable_pub)]
#[path = "../../src/expiry_log.rs"]
mod expiry_log;
#[allow(dead_code, unused_imports, missing_docs, unreachable_pub)]
#[path = "../../src/message.rs"]
mod message;
#[allow(dead_code, unused_imports, missing_docs, unreachable_pub)]
#[path = "../../src/onion/mod.rs"]
mod onion;
#[allow(dead_code, unused_imports, missing_docs, unreachable_pub)]
#[path = "../../src/peer/hop.rs"]
mod hop;
#[allow(dead_code, unused_imports, missing_docs, unreachable_pub)]
#[path = "../../src/peer/wire.rs"]
mod wire;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = bencode::Value::decode(data, bencode::Limits::DEFAULT) {
        let mut out = Vec::new();
        v.encode(&mut out);
        assert_eq!(out, data);
    }
    if let Ok(msgs) = wire::decode_batch(data) {
        let again: Vec<_> = wire::encode_batches(&msgs, usize::MAX)
            .iter()
            .flat_map(|b| wire::decode_batch(b).expect("re-encoded batch decodes"))
            .collect();
        assert!(again == msgs);
    }
    if let Ok(h) = hop::decode_hop(data) {
        let re = hop::encode_hop(h.data, h.enc_type, &h.ephemeral_key, h.hop_no);
        assert!(hop::decode_hop(&re).expect("re-encoded hop decodes") == h);
    }
});
