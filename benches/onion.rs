//! Criterion benches of the onion hot path (DESIGN.md "Performance targets"): peeling one layer
//! at 1 KiB and 64 KiB with aes-gcm and xchacha20, the bare X25519 of aws-lc-rs against
//! x25519-dalek (which decided the node's choice), and building a 3-hop onion on the client.
//! Results and the machine they were taken on are in BENCHMARKS.md, section "Onion".

// `criterion_group!` generates an undocumented `pub fn`.
#![allow(missing_docs)]

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use snode::onion::{
    Destination, EncType, HopKeys, NodeOnionKey, build_onion_with_rng, parse_combined, peel, route,
};
use std::hint::black_box;
use std::time::Duration;

fn node(rng: &mut StdRng) -> (NodeOnionKey, [u8; 32], HopKeys) {
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let mut ed25519 = [0u8; 32];
    rng.fill_bytes(&mut ed25519);
    let key = NodeOnionKey::from_secret(&secret).expect("any 32 bytes are a secret");
    let x25519 = *key.public_key();
    (key, secret, HopKeys { ed25519, x25519 })
}

fn bench_peel(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(1);
    let (key, _, keys) = node(&mut rng);
    let mut group = c.benchmark_group("onion_peel");
    for enc_type in [EncType::AesGcm, EncType::XChaCha20] {
        for size in [1024usize, 64 * 1024] {
            let payload = vec![0x5a; size];
            let built =
                build_onion_with_rng(&[], &Destination::Node(keys), &payload, enc_type, &mut rng)
                    .expect("builds");
            let body = built.guard_body;
            let combined = parse_combined(&body).expect("parses");
            group.throughput(Throughput::Bytes(size as u64));
            let id = BenchmarkId::new(enc_type.as_str(), format!("{}KiB", size / 1024));
            group.bench_with_input(id, &combined, |b, c| {
                b.iter(|| {
                    peel(&key, &c.ephemeral_key, c.enc_type, black_box(c.ciphertext))
                        .expect("peels")
                })
            });
        }
    }
    group.finish();

    // The whole node-side CPU of an entry layer: parse + peel + route + reply seal.
    let payload = vec![0x5a; 1024];
    let built = build_onion_with_rng(
        &[],
        &Destination::Node(keys),
        &payload,
        EncType::AesGcm,
        &mut rng,
    )
    .expect("builds");
    c.bench_function("onion_entry_layer/aes-gcm/1KiB", |b| {
        b.iter(|| {
            let c = parse_combined(black_box(&built.guard_body)).expect("parses");
            let (plain, reply_key) =
                peel(&key, &c.ephemeral_key, c.enc_type, c.ciphertext).expect("peels");
            let layer = route(&plain).expect("routes");
            black_box(layer);
            reply_key.encrypt(br#"{"status":200,"body":"{}"}"#)
        })
    });
}

fn bench_x25519(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(2);
    let (_, secret, _) = node(&mut rng);
    let (_, _, peer) = node(&mut rng);
    let mut group = c.benchmark_group("x25519");
    let aws_key = PrivateKey::from_private_key(&X25519, &secret).expect("valid secret");
    group.bench_function("aws-lc-rs", |b| {
        b.iter(|| {
            agreement::agree(
                &aws_key,
                UnparsedPublicKey::new(&X25519, black_box(&peer.x25519)),
                (),
                |s| {
                    let mut out = [0u8; 32];
                    out.copy_from_slice(s);
                    Ok(out)
                },
            )
            .expect("agrees")
        })
    });
    let dalek_key = x25519_dalek::StaticSecret::from(secret);
    let dalek_peer = x25519_dalek::PublicKey::from(peer.x25519);
    group.bench_function("x25519-dalek", |b| {
        b.iter(|| dalek_key.diffie_hellman(black_box(&dalek_peer)).to_bytes())
    });
    group.finish();
}

fn bench_build(c: &mut Criterion) {
    let mut rng = StdRng::seed_from_u64(3);
    let hops: Vec<HopKeys> = (0..3).map(|_| node(&mut rng).2).collect();
    let dest = Destination::Node(node(&mut rng).2);
    let payload = br#"{"method":"retrieve","params":{"pubkey":"05aa","namespace":0}}"#;
    let mut group = c.benchmark_group("onion_build_3_hops");
    for enc_type in [EncType::AesGcm, EncType::XChaCha20] {
        group.bench_function(enc_type.as_str(), |b| {
            b.iter(|| {
                build_onion_with_rng(&hops, &dest, black_box(payload), enc_type, &mut rng)
                    .expect("builds")
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1));
    targets = bench_peel, bench_x25519, bench_build
}
criterion_main!(benches);
