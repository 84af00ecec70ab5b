//! Fuzzes what a node does with bytes from a QUIC client before any method runs: the request
//! stream's framing (`quic::frame`: a reader fed the input in two pieces must read the same
//! messages as one fed it whole, and every message it reads re-encodes to a frame that reads
//! back the same) and a bencoded RPC body's conversion to JSON params (`rpc::bt`: a dict
//! converts to a JSON object, and the JSON answer encoder accepts whatever comes out).
//! `tests/fuzz_corpus.rs` replays the fixed seeds in `fuzz/seeds/quic_stream/` with the same
//! checks on every `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The pure modules these codecs use, compiled here without the rest of snode (and so without
// RocksDB or quinn); the `crate::…` paths inside them resolve to these.
#[allow(dead_code, unused_imports, missing_docs, unreachable_pub)]
#[path = "../../src/bencode.rs"]
mod bencode;
#[allow(dead_code, unused_imports, missing_docs, unreachable_pub)]
#[path = "../../src/quic/frame.rs"]
mod frame;
#[allow(dead_code, unused_imports, missing_docs, unreachable_pub)]
#[path = "../../src/rpc/bt.rs"]
mod bt;

fn frames(chunks: &[&[u8]]) -> (Vec<frame::Frame>, bool) {
    let mut r = frame::FrameReader::new();
    let mut out = Vec::new();
    for c in chunks {
        r.push(c);
        loop {
            match r.next_frame() {
                Ok(Some(f)) => out.push(f),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let (whole, broken) = frames(&[data]);
    let cut = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let (split, split_broken) = frames(&[&data[..cut], &data[cut..]]);
    assert!(whole == split && broken == split_broken);
    for f in &whole {
        if let Ok(bytes) = f.encode() {
            let (again, bad) = frames(&[&bytes]);
            assert!(!bad && again.len() == 1 && again[0] == *f);
        }
    }
    if let Ok(params) = bt::params_from_bt(data) {
        assert!(params.is_object());
        let mut out = Vec::new();
        bt::to_bt(&params, &mut out);
        assert!(bencode::Value::decode(&out, bencode::Limits::DEFAULT).is_ok());
    }
});
