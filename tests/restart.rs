//! Data survives a clean restart of an in-process node on the same directory.

mod common;

use common::*;

#[tokio::test]
async fn restart_keeps_messages_and_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    init_dir(dir.path());
    let c = client();
    let carol = User::new(21);

    let node = spawn_node(dir.path(), test_config()).await;
    let addr = node.https_addr().to_string();
    let first_key = node.pubkey_ed25519();
    let mut hashes = Vec::new();
    for i in 0..50 {
        let v = rpc_json(
            &c,
            &addr,
            "store",
            carol.store_params(format!("msg {i}").as_bytes(), 600_000),
        )
        .await;
        hashes.push(v["hash"].as_str().expect("hash").to_string());
    }
    node.shutdown().await;

    let node = spawn_node(dir.path(), test_config()).await;
    assert_eq!(node.pubkey_ed25519(), first_key);
    let addr = node.https_addr().to_string();
    let got: Vec<String> = retrieve_all(&c, &addr, &carol)
        .await
        .into_iter()
        .map(|(h, _)| h)
        .collect();
    assert_eq!(got, hashes, "every message, in insertion order");
    node.shutdown().await;
}
