//! The public listener on the IPv6 wildcard `::` serves IPv4 and IPv6 clients (dual stack, as
//! upstream 2.11), and an IPv4 client reaching it keeps its IPv4 address: the rate limiter and
//! its loopback exemption see `127.0.0.1`, not `::ffff:127.0.0.1`.

mod common;

use common::*;
use serde_json::json;

async fn info_status(c: &reqwest::Client, base: &str) -> u16 {
    c.post(format!("{base}/storage_rpc/v1"))
        .body(json!({"method": "info", "params": {}}).to_string())
        .send()
        .await
        .expect("request")
        .status()
        .as_u16()
}

#[tokio::test]
async fn the_wildcard_listener_serves_ipv4_and_ipv6_with_canonical_client_addresses() {
    let dir = tempfile::tempdir().expect("tempdir");
    init_dir(dir.path());
    let mut cfg = test_config();
    cfg.network.bind_ip = "::".parse().expect("ip");
    // One request per bucket, but loopback is exempt: every request below passes only if the
    // node sees its client as loopback.
    cfg.rate_limit.burst = 1;
    cfg.rate_limit.per_second = 1;
    cfg.rate_limit.exempt_loopback = true;
    let node = spawn_node(dir.path(), cfg).await;
    let port = node.https_addr().port();
    let c = client();

    for i in 0..5 {
        assert_eq!(
            info_status(&c, &format!("https://127.0.0.1:{port}")).await,
            200,
            "IPv4 request {i} through the dual-stack listener"
        );
    }
    // IPv6 loopback, where the host has it (CI containers may not).
    if std::net::TcpListener::bind("[::1]:0").is_ok() {
        for i in 0..5 {
            assert_eq!(
                info_status(&c, &format!("https://[::1]:{port}")).await,
                200,
                "IPv6 request {i}"
            );
        }
    } else {
        eprintln!("no IPv6 loopback on this host: IPv4 half only");
    }
    node.shutdown().await;
}

#[tokio::test]
async fn the_default_bind_address_is_the_dual_stack_wildcard() {
    let cfg = snode::config::Config::default();
    assert_eq!(
        cfg.network.bind_ip,
        "::".parse::<std::net::IpAddr>().expect("ip")
    );
}
