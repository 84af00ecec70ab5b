//! Fuzzes the client RPC's parameter parsing (`rpc::params`), which every `/storage_rpc/v1`
//! body, onion request and QUIC request reaches: the input is read as a request body as the
//! node reads it (JSON, at most 10 MiB), and its params go through every accessor the handlers
//! call, with their field names and in their order; accepted values must be what the protocol
//! says the field holds and every refusal one of the protocol's error texts for that field.
//! The params also go through the bt answer encoder and back through the bt request
//! conversion (`rpc::bt`). The checks are `fuzz/checks/rpc_params.rs`, which
//! `tests/fuzz_corpus.rs` shares to replay the fixed seeds in `fuzz/seeds/rpc_params/` on every
//! `cargo test` (there also against the real handlers' answers).
#![no_main]

use libfuzzer_sys::fuzz_target;

// The pure modules the parser uses, compiled here without the rest of snode (and so without
// RocksDB); the `crate::…` paths inside them resolve to these.
#[allow(dead_code, unused_imports, missing_docs, unreachable_pub)]
#[path = "../../src/bencode.rs"]
mod bencode;
#[allow(dead_code, unused_imports, missing_docs, unreachable_pub)]
#[path = "../../src/rpc/bt.rs"]
mod bt;
#[allow(dead_code, unused_imports, missing_docs, unreachable_pub)]
#[path = "../../src/keys.rs"]
mod keys;
#[allow(dead_code, unused_imports, missing_docs, unreachable_pub)]
#[path = "../../src/expiry_log.rs"]
mod expiry_log;
#[allow(dead_code, unused_imports, missing_docs, unreachable_pub)]
#[path = "../../src/message.rs"]
mod message;
#[allow(dead_code, unused_imports, missing_docs, unreachable_pub)]
#[path = "../../src/rpc/params.rs"]
mod params;
#[allow(dead_code, unused_imports, missing_docs, unreachable_pub)]
#[path = "../../src/sign.rs"]
mod sign;

#[path = "../checks/rpc_params.rs"]
mod checks;

fuzz_target!(|data: &[u8]| {
    checks::check_body(data);
});
