//! A whole network in one test process: a directory and N nodes on port 0, each behind a
//! loopback TCP proxy that can really drop its traffic (partitions), each node on its own
//! loopback address so the proxies can tell who is connecting.
#![allow(dead_code, missing_docs, unreachable_pub)]

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use snode::config::Config;
use snode::directory::DirectoryLimits;
use snode::directory::client::DirectoryClient;
use snode::directory::server::{DirectoryConfig, DirectoryHandle, serve};
use snode::directory::state::Admission;
use snode::node::NodeHandle;
use snode::swarm::Membership;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::{init_dir, spawn_node, test_config, wait_for};

/// Who may not talk to a proxied node right now.
#[derive(Default)]
struct Rules {
    /// Every connection is dropped.
    down: bool,
    /// Connections from these source addresses are dropped.
    blocked: HashSet<IpAddr>,
}

/// A TCP proxy in front of one node; `cut()` drops live connections and refuses new ones.
pub struct Proxy {
    pub addr: SocketAddr,
    rules: Arc<Mutex<Rules>>,
    conns: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: Arc<Mutex<SocketAddr>>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let addr = listener.local_addr().expect("addr");
        let rules = Arc::new(Mutex::new(Rules::default()));
        let conns = Arc::new(Mutex::new(Vec::new()));
        let (r, c) = (rules.clone(), conns.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, peer)) = listener.accept().await else {
                    continue;
                };
                {
                    let rules = r.lock().expect("rules");
                    if rules.down || rules.blocked.contains(&peer.ip()) {
                        continue; // dropped: the connection closes unanswered
                    }
                }
                let to = *target.lock().expect("target");
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(to).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                c.lock().expect("conns").push(task);
            }
        });
        Proxy {
            addr,
            rules,
            conns,
            accept,
        }
    }

    fn kill_connections(&self) {
        for t in self.conns.lock().expect("conns").drain(..) {
            t.abort();
        }
    }

    /// Drops all traffic to the node.
    pub fn cut(&self) {
        self.rules.lock().expect("rules").down = true;
        self.kill_connections();
    }

    /// Drops traffic from `ip` to the node.
    pub fn block(&self, ip: IpAddr) {
        self.rules.lock().expect("rules").blocked.insert(ip);
        self.kill_connections();
    }

    /// Lets everything through again.
    pub fn heal(&self) {
        let mut r = self.rules.lock().expect("rules");
        r.down = false;
        r.blocked.clear();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.kill_connections();
    }
}

pub struct Member {
    pub dir: PathBuf,
    pub ip: Ipv4Addr,
    pub proxy: Proxy,
    /// Where the proxy forwards to (changes when the node restarts on a new port).
    pub target: Arc<Mutex<SocketAddr>>,
    pub node: Option<NodeHandle>,
    pub pubkey: [u8; 32],
}

pub struct TestNet {
    pub tmp: tempfile::TempDir,
    pub directory: Option<DirectoryHandle>,
    pub url: String,
    pub members: Vec<Member>,
    pub tweak: fn(&mut Config),
}

/// Short intervals so convergence takes seconds.
pub fn net_config(url: &str, ip: Ipv4Addr, public_port: u16) -> Config {
    let mut c = test_config();
    c.network.bind_ip = IpAddr::V4(ip);
    c.network.public_ip = "127.0.0.1".into();
    c.network.public_https_port = public_port;
    // HTTPS reaches the node through its proxy on 127.0.0.1; QUIC (no proxy) listens on the
    // announced address itself.
    c.network.quic_bind_ip = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
    // Partitions cut the nodes' TCP proxies: peer traffic goes over HTTPS so that they hold
    // (the tests of peer traffic over QUIC set "quic").
    c.network.peer_transport = snode::config::PeerTransport::Https;
    c.network.directory = url.to_string();
    c.network.testnet = true;
    c.network.membership_poll_interval = Duration::from_millis(200);
    c.network.announce_interval = Duration::from_secs(5);
    c.network.ping_interval = Duration::from_millis(500);
    c.rate_limit.exempt_loopback = true;
    snode::testnet::tune_for_testnet(&mut c);
    c
}

impl TestNet {
    pub async fn start(n: usize) -> TestNet {
        Self::start_with(n, |_| {}).await
    }

    pub async fn start_with(n: usize, tweak: fn(&mut Config)) -> TestNet {
        let tmp = tempfile::tempdir().expect("tempdir");
        // Open admission (members are added after the start), nodes on loopback, and every
        // node's traffic from 127.0.0.1: the local-network settings `snode testnet` uses.
        let directory = serve(DirectoryConfig {
            decommission_after: Duration::from_secs(3600),
            allow_private_addresses: true,
            limits: DirectoryLimits::testnet(),
            ..DirectoryConfig::new(
                tmp.path().join("directory"),
                "127.0.0.1:0".parse().expect("addr"),
                Admission::Open,
            )
        })
        .await
        .expect("directory");
        let url = format!("http://{}", directory.addr());
        let mut net = TestNet {
            tmp,
            directory: Some(directory),
            url,
            members: Vec::new(),
            tweak,
        };
        for _ in 0..n {
            net.add_member().await;
        }
        net
    }

    /// Adds and starts one more node.
    pub async fn add_member(&mut self) -> usize {
        let i = self.members.len();
        let dir = self.tmp.path().join(format!("node-{i}"));
        init_dir(&dir);
        let ip = Ipv4Addr::new(127, 0, 1, 10 + i as u8);
        let target = Arc::new(Mutex::new(SocketAddr::from((ip, 1))));
        let proxy = Proxy::start(target.clone()).await;
        self.members.push(Member {
            dir,
            ip,
            proxy,
            target,
            node: None,
            pubkey: [0; 32],
        });
        self.restart(i).await;
        i
    }

    pub fn config(&self, i: usize) -> Config {
        let m = &self.members[i];
        let mut c = net_config(&self.url, m.ip, m.proxy.addr.port());
        (self.tweak)(&mut c);
        c
    }

    /// Starts (or restarts) member `i` on its data directory.
    pub async fn restart(&mut self, i: usize) {
        let cfg = self.config(i);
        let node = spawn_node(&self.members[i].dir, cfg).await;
        *self.members[i].target.lock().expect("target") = node.https_addr();
        self.members[i].pubkey = node.pubkey_ed25519();
        self.members[i].node = Some(node);
    }

    /// Stops member `i` cleanly (its data stays).
    pub async fn stop(&mut self, i: usize) {
        if let Some(node) = self.members[i].node.take() {
            node.shutdown().await;
        }
    }

    /// The address clients use for member `i` (through its proxy).
    pub fn addr(&self, i: usize) -> String {
        self.members[i].proxy.addr.to_string()
    }

    pub fn node(&self, i: usize) -> &NodeHandle {
        self.members[i].node.as_ref().expect("node running")
    }

    /// Cuts member `i` off: nobody reaches it and it reaches nobody.
    pub fn partition(&self, i: usize) {
        self.members[i].proxy.cut();
        let ip = IpAddr::V4(self.members[i].ip);
        for (j, m) in self.members.iter().enumerate() {
            if j != i {
                m.proxy.block(ip);
            }
        }
    }

    pub fn heal(&self) {
        for m in &self.members {
            m.proxy.heal();
        }
    }

    pub async fn directory_view(&self) -> Membership {
        DirectoryClient::new(&self.url)
            .expect("client")
            .get_service_nodes(None)
            .await
            .expect("listing")
            .expect("changed")
    }

    /// Waits until every running node acts on the directory's current membership and is in
    /// a swarm.
    pub async fn wait_converged(&self) {
        wait_for(
            "membership convergence",
            Duration::from_secs(60),
            || async {
                let view = self.directory_view().await;
                let running: Vec<&NodeHandle> = self
                    .members
                    .iter()
                    .filter_map(|m| m.node.as_ref())
                    .collect();
                let ok = view.nodes.len() == self.members.len()
                    && running.iter().all(|n| {
                        let m = n.membership();
                        m.block_hash == view.block_hash && m.swarm_of(&n.pubkey_ed25519()).is_some()
                    });
                ok.then_some(())
            },
        )
        .await;
    }

    /// Indexes of the members of the swarm owning `session_id`.
    pub async fn owners(&self, session_id: &str) -> Vec<usize> {
        let view = self.directory_view().await;
        let account = snode::message::AccountId::from_hex(session_id).expect("id");
        let swarm = view.swarm_for(&account).expect("a swarm");
        self.members
            .iter()
            .enumerate()
            .filter(|(_, m)| view.swarm_of(&m.pubkey) == Some(swarm))
            .map(|(i, _)| i)
            .collect()
    }

    pub async fn shutdown(mut self) {
        for i in 0..self.members.len() {
            self.stop(i).await;
        }
        if let Some(d) = self.directory.take() {
            d.shutdown().await;
        }
    }
}
