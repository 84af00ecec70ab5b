//! Replays the fixed seeds of the onion fuzz target (`fuzz/seeds/onion_parse/`) with the
//! target's own checks, on every `cargo test`: no panic, every borrowed slice is the part of
//! the input its framing claims, and each seed lands where its name says (`parse-ok-*` parse,
//! `parse-err-*` do not, `peel-ok-*` decrypt with the fuzz node key and route, `route-ok-*`
//! route as decrypted layers), and likewise the `peer_wire` target's seeds (`fuzz/seeds/peer_wire/`:
//! bencode, `sn.data` batches, hop bodies) and the `quic_stream` target's (`fuzz/seeds/quic_stream/`: QUIC
//! request-stream frames, bencoded RPC params) and the `rpc_params` target's
//! (`fuzz/seeds/rpc_params/`: client RPC request bodies, `ok-*` parse and `err-*` fail with the
//! protocol's text, checked with the target's own checks and against the real handlers' answers).
//! Inputs that ever crash a fuzzer belong here too.

use std::path::Path;
use std::sync::Arc;

use snode::onion::{Layer, NodeOnionKey, parse_combined, route};
use snode::rpc::{ForwardFuture, Origin, RpcBody, RpcContext, SwarmForwarder};

// The `rpc_params` target's checks (`fuzz/checks/rpc_params.rs`), here over snode's own
// `message`, `sign`, `bencode` and `rpc::bt`. `Params` is private to `snode::rpc`, so its source
// is compiled here as the fuzz target compiles it; the seeds' answers from the real handlers
// (`snode::rpc::handle_request`) are compared with what the checks made of them.
use snode::rpc::bt;
use snode::{bencode, message, sign};
#[allow(dead_code, unreachable_pub)]
#[path = "../src/rpc/params.rs"]
mod params;
#[path = "../fuzz/checks/rpc_params.rs"]
mod rpc_params_checks;

/// The fuzz target's node key (X25519 secret = 32 × 0x07).
const FUZZ_NODE_SECRET: [u8; 32] = [7; 32];

fn claimed_inner(data: &[u8]) -> &[u8] {
    let n = u32::from_le_bytes([data[0], data[1], data[2], data[3]]) as usize;
    &data[4..4 + n]
}

/// The fuzz target's checks on one decrypted layer; whether it routed.
fn check_route(data: &[u8]) -> bool {
    match route(data) {
        Ok(Layer::Final { body, .. }) => assert_eq!(body, claimed_inner(data)),
        Ok(Layer::ToServer { payload, .. }) => assert_eq!(payload, data),
        Ok(Layer::ToNode { inner, .. }) => assert_eq!(inner, claimed_inner(data)),
        Err(_) => return false,
    }
    true
}

/// What became of one input.
struct Checked {
    /// `parse_combined` accepted it.
    parsed: bool,
    /// It decrypted with the fuzz node key, and the plaintext routed.
    peeled_and_routed: bool,
    /// It routed as a raw (decrypted) layer.
    routed: bool,
}

/// The fuzz target's checks on one input.
fn check(data: &[u8]) -> Checked {
    let routed = check_route(data);
    let Ok(c) = parse_combined(data) else {
        return Checked {
            parsed: false,
            peeled_and_routed: false,
            routed,
        };
    };
    assert_eq!(c.ciphertext, claimed_inner(data));
    let key = NodeOnionKey::from_secret(&FUZZ_NODE_SECRET).expect("fixed key");
    // A decrypted layer need not route: aes-cbc has no tag, so an altered ciphertext can
    // decrypt to garbage.
    let peeled_and_routed = match key.peel(&c.ephemeral_key, c.enc_type, c.ciphertext) {
        Ok((plain, reply)) => {
            assert!(!reply.encrypt(b"{}").is_empty());
            check_route(&plain)
        }
        Err(_) => false,
    };
    Checked {
        parsed: true,
        peeled_and_routed,
        routed,
    }
}

/// The seeds of fuzz target `target`: (file name, bytes).
fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    std::fs::read_dir(&dir)
        .expect("seed directory")
        .map(|entry| {
            let path = entry.expect("entry").path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .expect("utf-8 name")
                .to_owned();
            (name, std::fs::read(&path).expect("seed"))
        })
        .collect()
}

#[test]
fn fixed_fuzz_seeds_replay() {
    let all = seeds("onion_parse");
    for (name, data) in &all {
        let got = check(data);
        if name.starts_with("parse-ok-") {
            assert!(got.parsed, "{name} must parse");
        } else if name.starts_with("parse-err-") {
            assert!(!got.parsed, "{name} must not parse");
        } else if name.starts_with("peel-ok-") {
            assert!(got.peeled_and_routed, "{name} must decrypt and route");
        } else if name.starts_with("route-ok-") {
            assert!(got.routed, "{name} must route");
        }
    }
    assert!(all.len() >= 15, "only {} onion_parse seeds", all.len());
}

#[test]
fn truncations_and_bit_flips_of_every_seed_never_panic() {
    for (_, data) in seeds("onion_parse") {
        for cut in 0..data.len() {
            check(&data[..cut]);
        }
        for i in 0..data.len() {
            let mut flipped = data.clone();
            flipped[i] ^= 0x80;
            check(&flipped);
        }
    }
}

/// What the peer wire formats made of one input (the `peer_wire` fuzz target's checks): the
/// generic bencode reader is canonical (what it accepts re-encodes to the same bytes), and a
/// batch or hop body that decodes re-encodes to one that decodes to the same thing.
struct Wire {
    bencode: bool,
    batch: bool,
    hop: bool,
}

fn check_peer_wire(data: &[u8]) -> Wire {
    use snode::bencode::{Limits, Value};
    use snode::peer::hop::{decode_hop, encode_hop};
    use snode::peer::wire::{decode_batch, encode_batches};
    let bencode = match Value::decode(data, Limits::DEFAULT) {
        Ok(v) => {
            let mut out = Vec::new();
            v.encode(&mut out);
            assert_eq!(out, data, "bencode is canonical");
            true
        }
        Err(_) => false,
    };
    let batch = match decode_batch(data) {
        Ok(msgs) => {
            let blobs = encode_batches(&msgs, usize::MAX);
            let again: Vec<_> = blobs
                .iter()
                .flat_map(|b| decode_batch(b).expect("re-encoded batch decodes"))
                .collect();
            assert_eq!(again, msgs);
            true
        }
        Err(_) => false,
    };
    let hop = match decode_hop(data) {
        Ok(h) => {
            let re = encode_hop(h.data, h.enc_type, &h.ephemeral_key, h.hop_no);
            assert_eq!(decode_hop(&re).expect("re-encoded hop decodes"), h);
            true
        }
        Err(_) => false,
    };
    Wire {
        bencode,
        batch,
        hop,
    }
}

#[test]
fn peer_wire_seeds_replay() {
    let all = seeds("peer_wire");
    for (name, data) in &all {
        let got = check_peer_wire(data);
        match name.split('-').take(2).collect::<Vec<_>>()[..] {
            ["batch", "ok"] => assert!(got.batch, "{name} must decode as a batch"),
            ["batch", "err"] => assert!(!got.batch, "{name} must not decode as a batch"),
            ["hop", "ok"] => assert!(got.hop, "{name} must decode as a hop"),
            ["hop", "err"] => assert!(!got.hop, "{name} must not decode as a hop"),
            ["bencode", "err"] => assert!(!got.bencode, "{name} must not decode"),
            _ => panic!("seed {name} does not say what it is"),
        }
    }
    assert!(all.len() >= 12, "only {} peer_wire seeds", all.len());
}

#[test]
fn peer_wire_truncations_and_bit_flips_never_panic() {
    for (_, data) in seeds("peer_wire") {
        for cut in 0..data.len() {
            check_peer_wire(&data[..cut]);
        }
        for i in 0..data.len() {
            for bit in [0x01, 0x80] {
                let mut flipped = data.clone();
                flipped[i] ^= bit;
                check_peer_wire(&flipped);
            }
        }
    }
}

/// What the QUIC stream checks made of one input (the `quic_stream` fuzz target's checks):
/// frames read, whether the framing broke, and whether it is a bt params dict.
struct Stream {
    frames: usize,
    broken: bool,
    bt_params: bool,
}

fn read_frames(chunks: &[&[u8]]) -> (Vec<snode::quic::frame::Frame>, bool) {
    let mut r = snode::quic::frame::FrameReader::new();
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

fn check_quic_stream(data: &[u8]) -> Stream {
    let (whole, broken) = read_frames(&[data]);
    let cut = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let (split, split_broken) = read_frames(&[&data[..cut], &data[cut..]]);
    assert!(whole == split && broken == split_broken);
    for f in &whole {
        if let Ok(bytes) = f.encode() {
            let (again, bad) = read_frames(&[&bytes]);
            assert!(!bad && again.len() == 1 && again[0] == *f);
        }
    }
    let bt_params = match snode::rpc::bt::params_from_bt(data) {
        Ok(params) => {
            assert!(params.is_object());
            let mut out = Vec::new();
            snode::rpc::bt::to_bt(&params, &mut out);
            assert!(snode::bencode::Value::decode(&out, snode::bencode::Limits::DEFAULT).is_ok());
            true
        }
        Err(_) => false,
    };
    Stream {
        frames: whole.len(),
        broken,
        bt_params,
    }
}

#[test]
fn quic_stream_seeds_replay() {
    let all = seeds("quic_stream");
    for (name, data) in &all {
        let got = check_quic_stream(data);
        if name.starts_with("frames-ok-") {
            assert!(got.frames > 0 && !got.broken, "{name}");
        } else if name.starts_with("frames-err-") {
            assert!(got.broken, "{name}");
        } else if name.starts_with("frames-partial") {
            assert!(got.frames == 0 && !got.broken, "{name}");
        } else if name.starts_with("bt-ok-") {
            assert!(got.bt_params, "{name}");
        } else if name.starts_with("bt-err-") {
            assert!(!got.bt_params, "{name}");
        } else {
            panic!("seed {name} says nothing about what it is");
        }
    }
    assert!(all.len() >= 20, "only {} quic_stream seeds", all.len());
}

#[test]
fn quic_stream_truncations_and_bit_flips_never_panic() {
    for (_, data) in seeds("quic_stream") {
        for cut in 0..data.len() {
            check_quic_stream(&data[..cut]);
        }
        for i in 0..data.len() {
            for bit in 0..8 {
                let mut flipped = data.clone();
                flipped[i] ^= 1 << bit;
                check_quic_stream(&flipped);
            }
        }
    }
}

/// A forwarder for a node without swarm peers (the test context's membership is empty, so every
/// account-bound method answers 421 before it would forward).
struct NoPeers;

impl SwarmForwarder for NoPeers {
    fn forward<'a>(
        &'a self,
        _peers: Vec<snode::swarm::NodeInfo>,
        _method: &'a str,
        _params: &'a serde_json::Value,
        _accepted_ms: i64,
    ) -> ForwardFuture<'a> {
        Box::pin(async { Vec::new() })
    }
}

/// An RPC context whose node knows no swarm: parsing runs as for any request, and whatever
/// parses stops at the 421 ownership check (or earlier at the unsigned-retrieve 401), before
/// the store or a peer is reached.
fn rpc_context(dir: &Path) -> RpcContext {
    let store = snode::store::Store::open(
        &dir.join("db"),
        snode::store::StoreOptions {
            max_bytes: 1 << 30,
            ..Default::default()
        },
    )
    .expect("store");
    let (_, membership) =
        tokio::sync::watch::channel(Arc::new(snode::swarm::Membership::default()));
    RpcContext {
        store,
        keys: Arc::new(snode::keys::NodeKeys::from_seed([9; 32])),
        membership,
        forwarder: Arc::new(NoPeers),
        metrics: snode::metrics::Metrics::new(),
        clock: snode::clock::fixed(1_700_000_000_000),
        testnet: false,
        rng: snode::rpc::seeded_rng(7),
    }
}

/// The parse error the node answered, if its answer is one (`400 "invalid request: <text>"`).
fn param_error(status: u16, body: &RpcBody) -> Option<&str> {
    match body {
        RpcBody::Text(t) if status == 400 => t.strip_prefix("invalid request: "),
        _ => None,
    }
}

/// The `rpc_params` checks on one input, and the real handlers' answer compared with them: a
/// method whose params the checks parsed is not refused by the node as a parse error, and one
/// they refused is refused by the node with the same text. Returns the node's parse error.
async fn check_rpc_params(
    ctx: &RpcContext,
    data: &[u8],
) -> (rpc_params_checks::Outcome, Option<String>) {
    let got = rpc_params_checks::check_body(data);
    let resp = snode::rpc::handle_request(ctx, data, Origin::Client).await;
    let refused = param_error(resp.status, &resp.body).map(str::to_owned);
    match &got.verdict {
        Some(Ok(())) => assert_eq!(refused, None, "{:?}: the checks parsed it", got.method),
        Some(Err(text)) => assert_eq!(refused.as_deref(), Some(text.as_str()), "{:?}", got.method),
        None => {}
    }
    if !got.json {
        assert_eq!(
            (resp.status, resp.body),
            (400, RpcBody::Text("invalid json".into()))
        );
    }
    (got, refused)
}

/// The parse error each `err-*` seed of `rpc_params` must get (its text's beginning).
const RPC_PARAMS_ERRORS: &[(&str, &str)] = &[
    ("err-pubkey-missing", "Required field 'pubkey' missing"),
    (
        "err-pubkey-both-aliases",
        "Cannot specify both 'pubkey' and 'pubKey'",
    ),
    (
        "err-pubkey-length",
        "Pubkey must be 66 hex digits (33 bytes) long",
    ),
    (
        "err-timestamp-seconds",
        "Invalid timestamp for 'timestamp': timestamp must be in milliseconds",
    ),
    (
        "err-timestamp-plus-sign",
        "Invalid value given for 'timestamp': expected integer timestamp (in milliseconds)",
    ),
    (
        "err-timestamp-negative",
        "Invalid value given for 'before': expected integer timestamp (in milliseconds)",
    ),
    (
        "err-store-ttl-and-expiry",
        "Cannot specify both 'ttl' and 'expiry'",
    ),
    (
        "err-store-data-not-base64",
        "Invalid value given for 'data': expected base64 encoded data",
    ),
    (
        "err-namespace-out-of-range",
        "Invalid value given for 'namespace': value out of range",
    ),
    (
        "err-namespace-word",
        "Invalid value given for 'namespace': expected integer or \"all\"",
    ),
    ("err-hash-invalid", "invalid message hash: not-a-hash"),
    (
        "err-messages-empty",
        "messages does not contain any message hashes",
    ),
    (
        "err-signature-short",
        "invalid signature: expected base64 encoded Ed25519 signature",
    ),
    (
        "err-signature-missing",
        "Required field 'signature' missing",
    ),
    (
        "err-ed25519-non-05-account",
        "pubkey_ed25519 is only permitted for 05[...] pubkeys",
    ),
    (
        "err-subaccount-sig-missing",
        "Required field 'subaccount_sig' missing",
    ),
    (
        "err-expire-shorten-and-extend",
        "Cannot specify both 'shorten' and 'extend'",
    ),
    (
        "err-expire-count-mismatch",
        "Invalid value given for 'expiry': expected one expiry per message hash",
    ),
    (
        "err-revoke-token",
        "invalid unrevoke: expected base64 or hex encoded subaccount token",
    ),
    ("err-oxend-endpoint", "Invalid oxend endpoint 'get_block'"),
];

#[tokio::test]
async fn rpc_params_seeds_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = rpc_context(dir.path());
    let all = seeds("rpc_params");
    for (name, data) in &all {
        let (got, refused) = check_rpc_params(&ctx, data).await;
        assert!(got.json && got.method.is_some(), "{name} is a request body");
        if name.starts_with("ok-") {
            assert!(
                matches!(got.verdict, Some(Ok(())) | None),
                "{name}: {:?}",
                got.verdict
            );
            assert_eq!(refused, None, "{name} must parse");
        } else if name.starts_with("err-") {
            let (_, want) = RPC_PARAMS_ERRORS
                .iter()
                .find(|(n, _)| *n == name.as_str())
                .unwrap_or_else(|| panic!("seed {name} has no expected error"));
            let text = refused.unwrap_or_else(|| panic!("{name} must be refused"));
            assert!(text.starts_with(want), "{name}: {text:?}");
            assert!(matches!(got.verdict, Some(Err(_))), "{name}");
        } else {
            panic!("seed {name} says nothing about what it is");
        }
    }
    for (name, _) in RPC_PARAMS_ERRORS {
        assert!(
            all.iter().any(|(n, _)| n.as_str() == *name),
            "no seed {name}"
        );
    }
    assert!(all.len() >= 20, "only {} rpc_params seeds", all.len());
}

#[tokio::test]
async fn rpc_params_truncations_and_bit_flips_agree_with_the_handlers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ctx = rpc_context(dir.path());
    for (_, data) in seeds("rpc_params") {
        for cut in 0..data.len() {
            check_rpc_params(&ctx, &data[..cut]).await;
        }
        for i in 0..data.len() {
            for bit in [0x01, 0x20] {
                let mut flipped = data.clone();
                flipped[i] ^= bit;
                check_rpc_params(&ctx, &flipped).await;
            }
        }
    }
}
