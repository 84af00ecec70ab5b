//! Benches of the onion hot path (targets in BENCHMARKS.md): peeling one layer at 1 KiB
//! and 64 KiB with aes-gcm and xchacha20, a whole entry layer (parse + peel + route + reply),
//! the bare X25519 of aws-lc-rs against x25519-dalek (which decided the node's choice), and
//! building a 3-hop onion on the client. Each case runs twice: criterion (wall time), then a
//! fixed-work pass timed in process CPU time, the stable figure on these shared 2-core VMs.
//! Results and the machine they were taken on are in BENCHMARKS.md, section "Onion".
#![allow(clippy::disallowed_methods)] // a benchmark measures real elapsed time with std's clock

use aws_lc_rs::agreement::{self, PrivateKey, UnparsedPublicKey, X25519};
use criterion::{BenchmarkId, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use snode::onion::{
    Destination, EncType, HopKeys, NodeOnionKey, build_onion_with_rng, parse_combined, peel, route,
};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn node(rng: &mut StdRng) -> (NodeOnionKey, [u8; 32], HopKeys) {
    let mut secret = [0u8; 32];
    rng.fill_bytes(&mut secret);
    let mut ed25519 = [0u8; 32];
    rng.fill_bytes(&mut ed25519);
    let key = NodeOnionKey::from_secret(&secret).expect("any 32 bytes are a secret");
    let x25519 = *key.public_key();
    (key, secret, HopKeys { ed25519, x25519 })
}

/// Process CPU time (user + system) from `/proc/self/stat`, in 10 ms ticks (USER_HZ = 100 on
/// Linux); each pass runs for about a second, so that is precise to about 1 %.
fn cpu_time() -> Duration {
    let secs = snode::bench::process_cpu_seconds(std::process::id()).unwrap_or(0.0);
    Duration::from_secs_f64(secs)
}

/// Runs `f` `ops` times on this thread and reports wall and CPU time per operation.
fn cpu_pass(label: &str, ops: u32, mut f: impl FnMut()) {
    let cpu0 = cpu_time();
    let wall0 = Instant::now();
    for _ in 0..ops {
        f();
    }
    let wall = wall0.elapsed().as_secs_f64();
    let cpu = (cpu_time() - cpu0).as_secs_f64();
    eprintln!(
        "cpu-pass {label}: {ops} ops: {:.2} µs wall/op, {:.2} µs CPU/op",
        wall * 1e6 / f64::from(ops),
        cpu * 1e6 / f64::from(ops),
    );
}

/// A 0-hop onion to `keys` (one layer): the body a guard receives.
fn one_layer(keys: HopKeys, size: usize, enc_type: EncType, rng: &mut StdRng) -> Vec<u8> {
    let payload = vec![0x5a; size];
    build_onion_with_rng(&[], &Destination::Node(keys), &payload, enc_type, rng)
        .expect("builds")
        .guard_body
}

fn bench_peel(c: &mut Criterion, cpu: bool) {
    let mut rng = StdRng::seed_from_u64(1);
    let (key, _, keys) = node(&mut rng);
    let mut group = c.benchmark_group("onion_peel");
    let mut bodies = Vec::new();
    for enc_type in [EncType::AesGcm, EncType::XChaCha20] {
        for size in [1024usize, 64 * 1024] {
            let body = one_layer(keys, size, enc_type, &mut rng);
            let combined = parse_combined(&body).expect("parses");
            group.throughput(Throughput::Bytes(size as u64));
            let id = BenchmarkId::new(enc_type.as_str(), format!("{}KiB", size / 1024));
            group.bench_with_input(id, &combined, |b, c| {
                b.iter(|| {
                    peel(&key, &c.ephemeral_key, c.enc_type, black_box(c.ciphertext))
                        .expect("peels")
                })
            });
            bodies.push((enc_type, size, body));
        }
    }
    group.finish();

    // The whole node-side CPU of a destination layer: parse + peel + route + reply seal.
    let entry = one_layer(keys, 1024, EncType::AesGcm, &mut rng);
    let entry_layer = || {
        let c = parse_combined(black_box(&entry)).expect("parses");
        let (plain, reply_key) =
            peel(&key, &c.ephemeral_key, c.enc_type, c.ciphertext).expect("peels");
        black_box(route(&plain).expect("routes"));
        reply_key.encrypt(br#"{"status":200,"body":"{}"}"#)
    };
    c.bench_function("onion_entry_layer/aes-gcm/1KiB", |b| b.iter(entry_layer));

    if cpu {
        for (enc_type, size, body) in &bodies {
            let c = parse_combined(body).expect("parses");
            let ops = if *size > 1024 { 20_000 } else { 50_000 };
            cpu_pass(&format!("peel {enc_type} {}KiB", size / 1024), ops, || {
                black_box(
                    peel(&key, &c.ephemeral_key, c.enc_type, black_box(c.ciphertext))
                        .expect("peels"),
                );
            });
        }
        cpu_pass("entry layer aes-gcm 1KiB", 50_000, || {
            black_box(entry_layer());
        });
    }
}

fn bench_x25519(c: &mut Criterion, cpu: bool) {
    let mut rng = StdRng::seed_from_u64(2);
    let (_, secret, _) = node(&mut rng);
    let (_, _, peer) = node(&mut rng);
    let aws_key = PrivateKey::from_private_key(&X25519, &secret).expect("valid secret");
    let aws = || {
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
    };
    let dalek_key = x25519_dalek::StaticSecret::from(secret);
    let dalek_peer = x25519_dalek::PublicKey::from(peer.x25519);
    let dalek = || dalek_key.diffie_hellman(black_box(&dalek_peer)).to_bytes();
    assert_eq!(aws(), dalek(), "both libraries compute the same X25519");

    let mut group = c.benchmark_group("x25519");
    group.bench_function("aws-lc-rs", |b| b.iter(aws));
    group.bench_function("x25519-dalek", |b| b.iter(dalek));
    group.finish();
    if cpu {
        cpu_pass("x25519 aws-lc-rs", 50_000, || {
            black_box(aws());
        });
        cpu_pass("x25519 x25519-dalek", 30_000, || {
            black_box(dalek());
        });
    }
}

fn bench_build(c: &mut Criterion, cpu: bool) {
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
        if cpu {
            cpu_pass(&format!("build 3 hops {enc_type}"), 5_000, || {
                black_box(
                    build_onion_with_rng(&hops, &dest, payload, enc_type, &mut rng)
                        .expect("builds"),
                );
            });
        }
    }
    group.finish();
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and then criterion runs
    // each case once as a smoke test and the CPU passes are skipped.
    let cpu = std::env::args().any(|a| a == "--bench");
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    bench_peel(&mut c, cpu);
    bench_x25519(&mut c, cpu);
    bench_build(&mut c, cpu);
    c.final_summary();
}
