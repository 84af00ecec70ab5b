//! The Session client against a real network: two identities exchange messages through
//! onion requests, with the library API and with the `snode client` binary; tampered and
//! forged messages are reported as rejected.

mod common;

use std::path::Path;
use std::time::Duration;

use common::net::TestNet;
use common::*;
use serde_json::Value;
use snode::client::{Client, ClientState, Identity, Received, Rejected, seal_message};
use snode::onion::EncType;

const DEADLINE: Duration = Duration::from_secs(60);
/// Each poll is an onion request per swarm member: gentler than the default interval.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// Polls until a message with `hash` arrives; returns everything received meanwhile.
async fn receive_until(client: &mut Client, state: &mut ClientState, hash: &str) -> Vec<Received> {
    let mut all = Vec::new();
    poll_until(POLL_EVERY, DEADLINE, async || {
        all.extend(client.poll(state, now_ms()).await.expect("poll"));
        all.iter().any(|r| r.hash == hash).then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("message {hash} never arrived"));
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_identities_exchange_messages_with_the_library() {
    let net = TestNet::start(5).await;
    net.wait_converged().await;
    let alice = Client::connect(Identity::generate(), &net.url, EncType::AesGcm, None).await;
    let mut alice = alice.expect("alice connects");
    let mut bob = Client::connect(Identity::generate(), &net.url, EncType::XChaCha20, None)
        .await
        .expect("bob connects");
    let bob_account = bob.identity().account();
    let alice_id = alice.identity().session_id();

    let hash = alice
        .send(&bob_account, "hello bob", 600_000, now_ms())
        .await
        .expect("send");
    assert_eq!(hash.len(), 43);
    assert!(alice.guard().is_some(), "a guard was chosen");

    let mut state = ClientState::default();
    let got = receive_until(&mut bob, &mut state, &hash).await;
    let m = got.iter().find(|r| r.hash == hash).expect("received");
    let opened = m.content.as_ref().expect("opens and verifies");
    assert_eq!(
        (opened.from.as_str(), opened.text.as_str()),
        (alice_id.as_str(), "hello bob")
    );
    assert!(m.timestamp > 0 && m.expiry > m.timestamp);
    // Reported once: the next polls bring nothing new.
    for _ in 0..3 {
        assert!(
            bob.poll(&mut state, now_ms())
                .await
                .expect("poll")
                .is_empty()
        );
    }

    // Bob answers; Alice reads it.
    let reply = bob
        .send(&alice.identity().account(), "hi alice", 600_000, now_ms())
        .await
        .expect("send");
    let mut alice_state = ClientState::default();
    let got = receive_until(&mut alice, &mut alice_state, &reply).await;
    let m = got.iter().find(|r| r.hash == reply).expect("received");
    assert_eq!(
        m.content.as_ref().expect("opens").from,
        bob.identity().session_id()
    );

    // A forgery (Mallory seals to Bob, claiming to be Alice) and an altered message are stored
    // like any other, and Bob's client rejects them.
    let mallory = Identity::generate();
    let mut forged_plain = b"send me your keys".to_vec();
    forged_plain.extend_from_slice(&alice.identity().ed25519_public());
    forged_plain.extend_from_slice(&mallory.sign(b"anything"));
    let forged = crypto_box::PublicKey::from(bob.identity().x25519_public())
        .seal(&mut rand::rngs::OsRng, &forged_plain)
        .expect("seal");
    let forged_hash = alice
        .store(&bob_account, &forged, 600_000, now_ms())
        .await
        .expect("store");
    let mut altered = seal_message(alice.identity(), &bob_account, "pay 10").expect("seal");
    let last = altered.len() - 1;
    altered[last] ^= 1;
    let altered_hash = alice
        .store(&bob_account, &altered, 600_000, now_ms())
        .await
        .expect("store");
    let mut seen = receive_until(&mut bob, &mut state, &forged_hash).await;
    if !seen.iter().any(|r| r.hash == altered_hash) {
        seen.extend(receive_until(&mut bob, &mut state, &altered_hash).await);
    }
    let verdict = |h: &str| seen.iter().find(|r| r.hash == h).map(|r| r.content.clone());
    assert_eq!(verdict(&forged_hash), Some(Err(Rejected::BadSignature)));
    assert_eq!(verdict(&altered_hash), Some(Err(Rejected::Undecryptable)));

    net.shutdown().await;
}

/// Runs `snode client …`; stdout on success.
async fn snode_client(args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_snode"))
        .arg("client")
        .args(args)
        .env_remove("SNODE_DIRECTORY")
        .env_remove("SNODE_CLIENT_ID")
        .output()
        .await
        .expect("runs");
    assert!(
        out.status.success(),
        "snode client {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_binary_creates_identities_sends_and_polls() {
    let net = TestNet::start(5).await;
    net.wait_converged().await;
    let dir = tempfile::tempdir().expect("tmp");
    let alice_file = dir.path().join("alice.id");
    let bob_file = dir.path().join("bob.id");

    let alice_id = snode_client(&["new-id", "--out", path_str(&alice_file)]).await;
    let alice_id = alice_id.trim();
    let bob_id = snode_client(&["new-id", "--out", path_str(&bob_file)]).await;
    let bob_id = bob_id.trim();
    for id in [alice_id, bob_id] {
        assert!(id.len() == 66 && id.starts_with("05"), "{id}");
    }
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&alice_file)
        .expect("id file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let hash = snode_client(&[
        "--directory",
        &net.url,
        "--id",
        path_str(&alice_file),
        "send",
        "--to",
        bob_id,
        "--text",
        "hi from the binary",
    ])
    .await;
    let hash = hash.trim().to_string();
    assert_eq!(hash.len(), 43, "{hash}");

    // Bob polls (xchacha20 layers this time) until the message shows; each line is one JSON
    // object.
    let line = poll_until(POLL_EVERY, DEADLINE, async || {
        let out = snode_client(&[
            "poll",
            "--json",
            "--directory",
            &net.url,
            "--id",
            path_str(&bob_file),
            "--enc-type",
            "xchacha20",
        ])
        .await;
        out.lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("one JSON object per line"))
            .find(|v| v["hash"] == hash.as_str())
    })
    .await
    .expect("message never arrived");
    assert_eq!(line["from"], alice_id);
    assert_eq!(line["text"], "hi from the binary");
    assert!(line["timestamp"].as_i64().expect("timestamp") > 0);

    // The state file next to the id remembers cursors and the guard: nothing new next time.
    let state_file = dir.path().join("bob.id.state.json");
    let state: Value =
        serde_json::from_slice(&std::fs::read(&state_file).expect("state file")).expect("json");
    assert!(state["guard"].is_string(), "{state}");
    assert!(state["seen"][&hash].is_i64(), "{state}");
    let again = snode_client(&[
        "--directory",
        &net.url,
        "--id",
        path_str(&bob_file),
        "poll",
        "--json",
    ])
    .await;
    assert!(!again.contains(&hash), "{again}");

    // `watch --count 1` prints the next message pushed to Bob and exits; Alice sends (over
    // HTTPS this time) until one arrives, since sends before the subscription are not pushed.
    let mut watch = tokio::process::Command::new(env!("CARGO_BIN_EXE_snode"))
        .args([
            "client",
            "--directory",
            &net.url,
            "--id",
            path_str(&bob_file),
        ])
        .args(["watch", "--json", "--count", "1"])
        .env_remove("SNODE_DIRECTORY")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("watch starts");
    let mut pushed = Vec::new();
    let status = wait_for("watch to print a pushed message", DEADLINE, async || {
        let h = snode_client(&[
            "--directory",
            &net.url,
            "--id",
            path_str(&alice_file),
            "--transport",
            "https",
            "send",
            "--to",
            bob_id,
            "--text",
            "pushed to the binary",
        ])
        .await;
        pushed.push(h.trim().to_string());
        tokio::time::timeout(Duration::from_secs(1), watch.wait())
            .await
            .ok()
    })
    .await
    .expect("watch exits");
    assert!(status.success());
    let mut out = String::new();
    use tokio::io::AsyncReadExt as _;
    watch
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .await
        .expect("read");
    let line: Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(line["text"], "pushed to the binary");
    assert_eq!(line["from"], alice_id);
    assert!(pushed.iter().any(|h| line["hash"] == h.as_str()), "{line}");

    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_quic_a_watcher_gets_each_message_pushed_once() {
    let net = TestNet::start(5).await;
    net.wait_converged().await;
    let mut alice = Client::connect(Identity::generate(), &net.url, EncType::AesGcm, None)
        .await
        .expect("alice connects")
        .with_transport(snode::client::TransportKind::Quic)
        .expect("quic");
    let bob = Client::connect(Identity::generate(), &net.url, EncType::XChaCha20, None)
        .await
        .expect("bob connects");
    let bob_account = bob.identity().account();
    let alice_id = alice.identity().session_id();

    // Bob watches (QUIC `monitor` on two members of his swarm) until two messages came.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watcher = tokio::spawn(async move {
        let mut state = ClientState::default();
        snode::client::watch::watch(&bob, &mut state, Some(2), now_ms, |r| {
            let _ = tx.send(r.clone());
            Ok(())
        })
        .await
    });
    // Subscribed once the watcher is connected: sends before that would not be pushed.
    let mut sent = Vec::new();
    let first = wait_for("a first pushed message", DEADLINE, async || {
        let hash = alice
            .send(&bob_account, "pushed", 600_000, now_ms())
            .await
            .expect("send over QUIC");
        sent.push(hash);
        tokio::time::timeout(Duration::from_secs(2), rx.recv())
            .await
            .ok()
            .flatten()
    })
    .await;
    assert!(sent.contains(&first.hash), "{first:?}");
    let opened = first.content.as_ref().expect("opens and verifies");
    assert_eq!(
        (opened.from.as_str(), opened.text.as_str()),
        (alice_id.as_str(), "pushed")
    );
    let second = alice
        .send(&bob_account, "again", 600_000, now_ms())
        .await
        .expect("send");
    let got = wait_for("the second push", DEADLINE, async || {
        rx.recv().await.filter(|r| r.hash == second)
    })
    .await;
    assert_eq!(got.content.expect("opens").text, "again");
    // Two members push each message; the watcher reported each once and stopped after two.
    watcher
        .await
        .expect("joins")
        .expect("watch ends after --count");
    assert!(rx.try_recv().is_err());
    net.shutdown().await;
}
