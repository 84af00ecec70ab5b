//! The simulation's real directory: `snode::directory::serve` on its own turmoil host, the
//! nodes' own registration, membership follower and reachability reports against it, and the
//! client's view of the listing, polled from it as a Session client polls a node.
//!
//! Owns the directory's configuration in a history (allow-list of every simulated key, private
//! addresses allowed, a decommission period of seconds) and the client's follower loop, which
//! traces every listing change. Must not decide anything the directory decides: who is
//! listed, assigned, decommissioned or recommissioned comes from the production code, driven
//! only by what nodes announce and report over the simulated network.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use snode::clock::Clock;
use snode::directory::{Admission, DirectoryClient, DirectoryConfig, DirectoryLimits};
use snode::swarm::{Membership, SwarmId};

use super::{Shared, net};

/// The directory's port on its host.
pub const PORT: u16 = 22000;
/// A node failing every reachability test for this long is decommissioned: short, so that
/// crashes and partitions of a history's 40 s of faults decommission nodes (and the heal
/// recommissions them), as an hour-long outage does on a real network.
pub const DECOMMISSION_AFTER: Duration = Duration::from_secs(20);
/// How often each node tests one peer (the real default is 10 s; a history lasts minutes).
pub const PING_INTERVAL: Duration = Duration::from_secs(2);
/// How often the client re-reads the listing.
const CLIENT_POLL: Duration = Duration::from_secs(1);
/// What the directory did from one listing to the next: per node, listed for the first time,
/// dropped from its swarm (decommissioned), given a swarm again (recommissioned); per swarm,
/// formed (a new swarm id: a split of one grown past 10, or spare nodes enough for a new one)
/// or dissolved (its id gone: a swarm fallen under 5 merged into the others).
pub const EVENTS: [&str; 5] = [
    "admitted",
    "decommissioned",
    "recommissioned",
    "swarms formed",
    "swarms dissolved",
];

/// The directory's URL as nodes and the client reach it.
pub fn url(ip: IpAddr) -> String {
    format!("http://{}", SocketAddr::new(ip, PORT))
}

/// The directory of a history: state in `data_dir`, every simulated node admitted, time from
/// `clock`, randomness from `seed`, served on the simulated network.
pub fn config(data_dir: PathBuf, keys: &[[u8; 32]], clock: Clock, seed: u64) -> DirectoryConfig {
    let listen = SocketAddr::new(std::net::Ipv4Addr::UNSPECIFIED.into(), PORT);
    let admitted: BTreeSet<[u8; 32]> = keys.iter().copied().collect();
    DirectoryConfig {
        decommission_after: DECOMMISSION_AFTER,
        // turmoil's addresses are 192.168/16.
        allow_private_addresses: true,
        limits: DirectoryLimits::testnet(),
        clock,
        transport: Some(Arc::new(net::SimTransport)),
        rng_seed: Some(seed),
        ..DirectoryConfig::new(data_dir, listen, Admission::AllowList(admitted))
    }
}

/// Keeps the client's view of the listing (`Shared::membership`) current until `until_ms`
/// of simulated time, tracing each new listing with its swarms.
pub async fn follow(w: Rc<Shared>, url: String, until_ms: i64) {
    let client = DirectoryClient::new(&url)
        .expect("directory client")
        .with_transport(Arc::new(net::SimTransport));
    let mut last_hash: Option<String> = None;
    while w.elapsed_ms() < until_ms {
        if let Ok(Some(m)) = client.get_service_nodes(last_hash.as_deref()).await {
            last_hash = Some(m.block_hash.clone());
            // Heights between two polls are read back as the nodes read them, so every
            // listing the directory served is traced and counted.
            let last = w.membership.borrow().height;
            let mut listings = if last > 0 && m.height > last + 1 {
                snode::network::read_skipped(&client, last, m.height).await
            } else {
                Vec::new()
            };
            listings.push(Arc::new(m));
            for m in listings {
                count_events(&w, &w.membership.borrow().clone(), &m);
                let swarms = super::swarm_list(&m, &w);
                *w.membership.borrow_mut() = m.clone();
                w.trace(format!("directory at height {}: swarms {swarms}", m.height));
            }
        }
        tokio::time::sleep(CLIENT_POLL).await;
    }
}

/// Counts, into `w.directory_events`, what changed for each node from `old` to `new` (from
/// the first listing the client saw on, so the nodes listed from the start are not counted).
fn count_events(w: &Shared, old: &Membership, new: &Membership) {
    if old.nodes.is_empty() {
        return;
    }
    let state = |m: &Membership, key: &[u8; 32]| {
        m.nodes
            .iter()
            .find(|n| n.pubkey_ed25519 == *key)
            .map(|n| n.swarm_id != SwarmId::UNASSIGNED)
    };
    let mut events = w.directory_events.borrow_mut();
    for n in &new.nodes {
        let kind = match (state(old, &n.pubkey_ed25519), state(new, &n.pubkey_ed25519)) {
            (None, Some(_)) => EVENTS[0],
            (Some(true), Some(false)) => EVENTS[1],
            (Some(false), Some(true)) => EVENTS[2],
            _ => continue,
        };
        *events.entry(kind).or_default() += 1;
    }
    let ids = |m: &Membership| m.swarm_ids().collect::<BTreeSet<_>>();
    let (before, after) = (ids(old), ids(new));
    *events.entry(EVENTS[3]).or_default() += after.difference(&before).count() as u64;
    *events.entry(EVENTS[4]).or_default() += before.difference(&after).count() as u64;
}
