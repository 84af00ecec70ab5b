//! Property tests across the onion module: build → peel hop by hop → route round trips, and
//! the parsers never panic on arbitrary input. Test-only.

use super::*;
use proptest::collection::vec;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use serde_json::{Map, Value};

fn node(rng: &mut StdRng) -> (NodeOnionKey, HopKeys) {
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let mut ed25519 = [0u8; 32];
    rng.fill_bytes(&mut ed25519);
    let key = NodeOnionKey::from_secret(&secret).expect("any 32 bytes are a secret");
    let x25519 = *key.public_key();
    (key, HopKeys { ed25519, x25519 })
}

/// A JSON value of the kinds a hostile client might put in a layer.
fn json_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[0-9a-fA-F]{0,70}".prop_map(Value::String),
        "[a-z0-9/?._-]{0,20}".prop_map(Value::String),
        Just(Value::Array(vec![])),
        Just(Value::Object(Map::new())),
    ]
}

/// A JSON object whose keys are mostly the ones the parsers look at.
fn json_object() -> impl Strategy<Value = Vec<u8>> {
    let key = prop_oneof![
        Just("headers"),
        Just("json"),
        Just("base64"),
        Just("host"),
        Just("target"),
        Just("port"),
        Just("protocol"),
        Just("destination"),
        Just("ephemeral_key"),
        Just("enc_type"),
        Just("hop_no"),
        Just("other"),
    ];
    vec((key, json_value()), 0..8).prop_map(|pairs| {
        let map: Map<String, Value> = pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        serde_json::to_vec(&map).unwrap_or_default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(40))]

    #[test]
    fn build_peel_route_round_trip(
        payload in vec(any::<u8>(), 0..70 * 1024),
        hops in 1usize..=3,
        xchacha in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let enc_type = if xchacha { EncType::XChaCha20 } else { EncType::AesGcm };
        let mut rng = StdRng::seed_from_u64(seed);
        let nodes: Vec<_> = (0..=hops).map(|_| node(&mut rng)).collect();
        let path: Vec<HopKeys> = nodes[..hops].iter().map(|n| n.1).collect();
        let dest = Destination::Node(nodes[hops].1);
        let built = build_onion_with_rng(&path, &dest, &payload, enc_type, &mut rng)
            .expect("builds");

        let c = parse_combined(&built.guard_body).expect("entry body parses");
        prop_assert_eq!(c.hop_no, 0);
        let (mut eph, mut et, mut ct) = (c.ephemeral_key, c.enc_type, c.ciphertext.to_vec());
        let mut reached_final = false;
        for (i, (key, _)) in nodes.iter().enumerate() {
            let (plain, reply_key) = peel(key, &eph, et, &ct).expect("layer peels");
            match route(&plain).expect("layer routes") {
                Layer::ToNode { destination, ephemeral_key, enc_type: next, inner } => {
                    prop_assert!(i < hops);
                    prop_assert_eq!(destination, nodes[i + 1].1.ed25519);
                    prop_assert_eq!(next, enc_type);
                    (eph, et, ct) = (ephemeral_key, next, inner.to_vec());
                }
                Layer::Final { body, json, base64 } => {
                    prop_assert_eq!(i, hops);
                    prop_assert_eq!(body, &payload[..]);
                    prop_assert!(!json && base64);
                    let reply = reply_key.encrypt(&payload);
                    prop_assert_eq!(built.reply_key.decrypt_reply(&reply).expect("opens"), payload.clone());
                    reached_final = true;
                }
                other => prop_assert!(false, "unexpected {:?}", other),
            }
        }
        prop_assert!(reached_final);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(data in vec(any::<u8>(), 0..300)) {
        let _ = parse_combined(&data);
        let _ = route(&data);
    }

    #[test]
    fn parsers_never_panic_on_framed_json(
        inner in vec(any::<u8>(), 0..64),
        json in json_object(),
        lie in prop_oneof![Just(None), any::<u32>().prop_map(Some)],
    ) {
        let n = lie.unwrap_or(inner.len() as u32);
        let data = [&n.to_le_bytes()[..], &inner, &json].concat();
        if let Ok(c) = parse_combined(&data) {
            prop_assert_eq!(c.ciphertext, &inner[..]);
        }
        match route(&data) {
            Ok(Layer::ToServer { payload, .. }) => prop_assert_eq!(payload, &data[..]),
            Ok(Layer::Final { body, .. }) => prop_assert_eq!(body, &inner[..]),
            Ok(Layer::ToNode { inner: next, .. }) => prop_assert_eq!(next, &inner[..]),
            Err(_) => {}
        }
    }
}
