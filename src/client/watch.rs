//! `snode client watch`: push subscriptions from the client's side. Connects over QUIC
//! straight to members of the identity's swarm (as Session's push server does), subscribes
//! with a signed `monitor` for namespace 0 with message bodies, and opens each `notify` as it
//! arrives — verified and decrypted as `poll` does, reported once even when several members
//! push the same message.
//!
//! Owns the `monitor` request a client signs, reading `notify` bodies, and renewal (every 30
//! minutes, within the node's 65-minute lifetime). Must not decide what is printed (the
//! command line does).

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{Client, ClientError, ClientState, Received, open_message};
use crate::bencode::{self, Limits};
use crate::message::Namespace;
use crate::swarm::NodeInfo;

/// Renew subscriptions this often (the node keeps one 65 minutes).
const RENEW_EVERY: Duration = Duration::from_secs(30 * 60);
/// Members of our swarm watched at once.
const WATCHED_NODES: usize = 2;

/// The signed `monitor` body of `client` for `namespaces`, with bodies, at `now_s`.
pub fn monitor_body(client: &Client, namespaces: &[i16], now_s: i64) -> Vec<u8> {
    let id = client.identity();
    let account = id.account();
    let ns: Vec<String> = namespaces.iter().map(i16::to_string).collect();
    let msg = format!("MONITOR{}{}1{}", account.to_hex(), now_s, ns.join(","));
    let sig = id.sign(msg.as_bytes());
    let mut out = Vec::new();
    bencode::put_dict(&mut out);
    bencode::put_bytes(&mut out, b"P");
    bencode::put_bytes(&mut out, &id.ed25519_public());
    bencode::put_bytes(&mut out, b"d");
    bencode::put_int(&mut out, 1);
    bencode::put_bytes(&mut out, b"n");
    bencode::put_list(&mut out);
    for n in namespaces {
        bencode::put_int(&mut out, i64::from(*n));
    }
    bencode::put_end(&mut out);
    bencode::put_bytes(&mut out, b"s");
    bencode::put_bytes(&mut out, &sig);
    bencode::put_bytes(&mut out, b"t");
    bencode::put_int(&mut out, now_s);
    bencode::put_end(&mut out);
    out
}

/// A `notify` body: hash, timestamp, expiry and data (absent when not asked for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The message hash.
    pub hash: String,
    /// Its namespace.
    pub namespace: i64,
    /// Its timestamp (ms).
    pub timestamp: i64,
    /// Its expiry (ms).
    pub expiry: i64,
    /// Its body, if the subscription asked for it.
    pub data: Option<Vec<u8>>,
}

/// Reads a `notify` body (unknown keys ignored, as clients do).
pub fn parse_notify(body: &[u8]) -> Option<Notification> {
    let bencode::Value::Dict(entries) = bencode::Value::decode(body, Limits::DEFAULT).ok()? else {
        return None;
    };
    let mut n = Notification {
        hash: String::new(),
        namespace: 0,
        timestamp: 0,
        expiry: 0,
        data: None,
    };
    for (k, v) in entries {
        match (k, v) {
            (b"h", bencode::Value::Bytes(b)) => n.hash = String::from_utf8(b.to_vec()).ok()?,
            (b"n", bencode::Value::Int(i)) => n.namespace = i,
            (b"t", bencode::Value::Int(i)) => n.timestamp = i,
            (b"z", bencode::Value::Int(i)) => n.expiry = i,
            (b"~", bencode::Value::Bytes(b)) => n.data = Some(b.to_vec()),
            _ => {}
        }
    }
    (!n.hash.is_empty()).then_some(n)
}

async fn subscribe(
    conn: &crate::quic::client::QuicConnection,
    body: &[u8],
) -> Result<(), ClientError> {
    let answer = conn
        .request("monitor", body, crate::quic::client::REQUEST_TIMEOUT)
        .await
        .map_err(|e| ClientError::Watch(format!("monitor: {}", crate::error::chain(&e))))?;
    match answer {
        crate::quic::client::Answer::Reply(b) if b == b"d7:successi1ee" => Ok(()),
        crate::quic::client::Answer::Reply(b) | crate::quic::client::Answer::Error(b) => Err(
            ClientError::Watch(format!("monitor refused: {}", String::from_utf8_lossy(&b))),
        ),
    }
}

/// Watches our namespace 0 until `max` messages were reported (forever with `None`) or every
/// watched node is gone; calls `emit` for each new message.
pub async fn watch(
    client: &Client,
    state: &mut ClientState,
    max: Option<usize>,
    now_ms: impl Fn() -> i64,
    mut emit: impl FnMut(&Received) -> Result<(), ClientError>,
) -> Result<(), ClientError> {
    let me = client.identity().account();
    let swarm: Vec<NodeInfo> = client
        .swarm_of(&me)
        .into_iter()
        .filter(|n| n.omq_port != 0)
        .take(WATCHED_NODES)
        .collect();
    if swarm.is_empty() {
        return Err(ClientError::NoNodes);
    }
    let endpoint = crate::quic::endpoint::client(std::net::Ipv4Addr::UNSPECIFIED.into())
        .map_err(|e| ClientError::Watch(crate::error::chain(&e).to_string()))?;
    let key = Arc::new(crate::keys::NodeKeys::generate());
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(1024);
    let mut conns = Vec::new();
    for node in &swarm {
        let addr = std::net::SocketAddr::from((node.ip, node.omq_port));
        let conn = match crate::quic::client::connect(
            &endpoint,
            key.clone(),
            addr,
            node.pubkey_ed25519,
            Duration::from_secs(5),
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %crate::error::chain(&e), "cannot reach a swarm member");
                continue;
            }
        };
        subscribe(
            &conn,
            &monitor_body(client, &[Namespace::DEFAULT.0], now_ms() / 1000),
        )
        .await?;
        if let Some(mut pushes) = conn.pushes() {
            let tx = tx.clone();
            tokio::spawn(async move {
                while let Some(p) = pushes.recv().await {
                    if p.endpoint == b"notify" && tx.send(p.body).await.is_err() {
                        break;
                    }
                }
            });
        }
        conns.push(conn);
    }
    drop(tx);
    if conns.is_empty() {
        return Err(ClientError::NoNodes);
    }
    let mut reported = 0;
    let mut renew = tokio::time::interval(RENEW_EVERY);
    renew.tick().await;
    loop {
        if max.is_some_and(|m| reported >= m) {
            return Ok(());
        }
        let body = tokio::select! {
            b = rx.recv() => match b {
                Some(b) => b,
                None => return Err(ClientError::Watch("every watched node closed the connection".into())),
            },
            _ = renew.tick() => {
                let body = monitor_body(client, &[Namespace::DEFAULT.0], now_ms() / 1000);
                for c in &conns {
                    subscribe(c, &body).await?;
                }
                continue;
            }
        };
        let Some(n) = parse_notify(&body) else {
            continue;
        };
        let Some(data) = n.data else { continue };
        if !state.mark_seen(&n.hash, n.expiry) {
            continue;
        }
        let r = Received {
            hash: n.hash,
            timestamp: n.timestamp,
            expiry: n.expiry,
            content: open_message(client.identity(), &data),
        };
        emit(&r)?;
        reported += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_bodies_parse_and_ignore_unknown_keys() {
        let body =
            b"d1:@33:\x05BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB1:h3:abc1:ni0e1:ti5e1:xi9e1:zi7e1:~2:hie";
        assert_eq!(
            parse_notify(body),
            Some(Notification {
                hash: "abc".into(),
                namespace: 0,
                timestamp: 5,
                expiry: 7,
                data: Some(b"hi".to_vec()),
            })
        );
        assert_eq!(parse_notify(b"de"), None);
        assert_eq!(parse_notify(b"junk"), None);
    }
}
