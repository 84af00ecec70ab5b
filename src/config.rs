//! The node's configuration: serde + TOML with defaults, unknown keys refused, validated.
//!
//! Owns every tunable and its default (the `DEFAULT_*` constants, one place, each with its
//! reason). Must not hold secrets: keys live in key files in the data directory.
//! `node.example.toml` at the repository root lists every key, commented out, at its default;
//! a test keeps the two equal.

use serde::{Deserialize, Serialize};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The example configuration shipped with the code, also written by `snode init`.
pub const EXAMPLE_TOML: &str = include_str!("../node.example.toml");

/// Default of `store::StoreOptions::cache_bytes` (`storage.cache_bytes`): 16 MiB. Recent messages,
/// the ones clients poll for, are mostly still in memtables; older blocks come from the
/// kernel's page cache, which does not count against the process (a miss costs ≈ 10 µs more
/// per retrieve: BENCHMARKS.md "Store"). Scans and the expiry sweep bypass the cache.
pub const DEFAULT_CACHE_BYTES: u64 = 16 << 20;
/// Default of `store::StoreOptions::memtable_bytes` (`storage.memtable_bytes`): 16 MiB. RocksDB's
/// own default (64 MiB per column family, eight families) let a node's RSS grow for hours
/// before the first flush (BENCHMARKS.md "Soak"); 16 MiB is minutes of writes on a busy
/// community node and makes at most a few SST files an hour.
pub const DEFAULT_MEMTABLE_BYTES: u64 = 16 << 20;

/// HTTPS port of the original storage server.
pub const DEFAULT_HTTPS_PORT: u16 = 22021;
/// Default UDP port of the QUIC listener: the original's OxenMQ/QUIC port number.
pub const DEFAULT_QUIC_PORT: u16 = 22020;
/// Admin (metrics/health) listener: loopback only, so metrics are not public by default.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 22029);
/// Size cap of the store, as upstream PR #512: 10 GiB.
pub const DEFAULT_MAX_STORE_BYTES: u64 = 10 * 1024 * 1024 * 1024;
/// Expired messages must be gone within 10 s of expiry; sweeping every 5 s leaves margin.
pub const DEFAULT_EXPIRY_SWEEP_INTERVAL: Duration = Duration::from_secs(5);
/// Token bucket of the original (section 1.10): 600 requests burst.
pub const DEFAULT_RATE_LIMIT_BURST: u32 = 600;
/// Token bucket of the original: refilled at 300 requests per second.
pub const DEFAULT_RATE_LIMIT_PER_SECOND: u32 = 300;
/// Clients tracked by the rate limiter before it purges full buckets (bounded memory).
pub const DEFAULT_RATE_LIMIT_MAX_CLIENTS: usize = 10_000;
/// How long shutdown waits for in-flight requests before closing connections.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Membership changes reach a node within this long (plus the directory's own delay).
pub const DEFAULT_MEMBERSHIP_POLL_INTERVAL: Duration = Duration::from_secs(5);
/// Re-announcing every minute lets a directory that lost its state recover it quickly.
pub const DEFAULT_ANNOUNCE_INTERVAL: Duration = Duration::from_secs(60);
/// One reachability test every 10 s, as the original's mean inter-test interval.
pub const DEFAULT_PING_INTERVAL: Duration = Duration::from_secs(10);

/// A forwarded request gets as long as the original gives `sn.storage_cc` (5 s).
pub const DEFAULT_FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
/// Retries back off exponentially from 250 ms up to this, so a peer that comes back is
/// retried within seconds while a dead one costs one attempt per entry per 10 s.
pub const DEFAULT_RETRY_MAX_BACKOFF: Duration = Duration::from_secs(10);
/// One reconciliation with one swarm peer every 30 s: a 7-member swarm compares every pair
/// within a few minutes, at the cost of one digest (a scan of the store) per round.
pub const DEFAULT_ANTI_ENTROPY_INTERVAL: Duration = Duration::from_secs(30);
/// A hand-off that could not finish (a new owner unreachable) is resumed this often.
pub const DEFAULT_HANDOFF_INTERVAL: Duration = Duration::from_secs(10);

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Listeners and addresses.
    pub network: NetworkConfig,
    /// The admin listener.
    pub admin: AdminConfig,
    /// The message store.
    pub storage: StorageConfig,
    /// Per-IP client rate limiting.
    pub rate_limit: RateLimitConfig,
    /// What one connection to the public listener may cost: timeouts and caps.
    pub limits: LimitsConfig,
    /// Logging.
    pub log: LogConfig,
    /// Onion requests: what the exit hop may reach.
    pub onion: OnionConfig,
    /// Replication between swarm members: forwarding, retries, hand-off, anti-entropy.
    pub replication: ReplicationConfig,
    /// What the QUIC listener lets anyone hold: timeouts, connections, requests, subscriptions.
    pub quic: QuicConfig,
    /// The async runtime the node runs on.
    pub runtime: RuntimeConfig,
}

/// Upper bound of `runtime.worker_threads`: a typo must not start a million threads.
pub const MAX_WORKER_THREADS: usize = 1024;

/// `[runtime]`: the async runtime's threads.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// Worker threads of the runtime; 0 (the default) means one per CPU core. A machine that
    /// runs more nodes than it has cores (`snode testnet` sets it) does better with fewer:
    /// every request wakes tasks that one worker would run in turn, and with many workers
    /// per process those wake-ups cross threads, each a futex and a context switch. One
    /// worker per node of a 10-node testnet on 2 cores cut the CPU of a 3-hop onion
    /// `retrieve` by a third (BENCHMARKS.md "Runtime threads").
    pub worker_threads: usize,
}

/// `[quic]`: the limits of the QUIC listener (quic.md; the port is `network.quic_port`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuicConfig {
    /// A connection whose handshake has not finished in this time is dropped. Default "10s"
    /// (libquic's default).
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// A connection with no traffic for this long is dropped. Default "30s" (libquic's;
    /// Session clients send keep-alives every 10 s).
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Connections held at once; further ones are refused. Default 10000.
    pub max_connections: usize,
    /// Connections held at once from one IP address. Default 64.
    pub max_connections_per_ip: usize,
    /// Handshakes in progress at once; further Initials are ignored. Default 512.
    pub max_handshakes: usize,
    /// Requests of one connection being processed at once; the stream is not read further
    /// until one finishes. Default 64.
    pub max_requests_per_connection: usize,
    /// `monitor` subscriptions (accounts) one connection may hold. Default 100000 (the push
    /// server watches all its users' accounts on one connection per node).
    pub max_subscriptions_per_connection: usize,
    /// `monitor` subscriptions held by the node in all. Default 500000.
    pub max_subscriptions: usize,
}

impl Default for QuicConfig {
    fn default() -> Self {
        QuicConfig {
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_connections_per_ip: 64,
            max_handshakes: 512,
            max_requests_per_connection: 64,
            max_subscriptions_per_connection: 100_000,
            max_subscriptions: 500_000,
        }
    }
}

/// `[replication]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicationConfig {
    /// How long a swarm peer has to answer a forwarded request before it is queued for
    /// retry. Default "5s".
    #[serde(with = "humantime_serde")]
    pub forward_timeout: Duration,
    /// Longest pause between two retries of one queued forward. Default "10s".
    #[serde(with = "humantime_serde")]
    pub retry_max_backoff: Duration,
    /// How often the node reconciles its data with the next member of its swarm.
    /// Default "30s".
    #[serde(with = "humantime_serde")]
    pub anti_entropy_interval: Duration,
    /// How often an unfinished hand-off of data this node no longer owns is resumed.
    /// Default "10s".
    #[serde(with = "humantime_serde")]
    pub handoff_interval: Duration,
}

impl Default for ReplicationConfig {
    fn default() -> Self {
        ReplicationConfig {
            forward_timeout: DEFAULT_FORWARD_TIMEOUT,
            retry_max_backoff: DEFAULT_RETRY_MAX_BACKOFF,
            anti_entropy_interval: DEFAULT_ANTI_ENTROPY_INTERVAL,
            handoff_interval: DEFAULT_HANDOFF_INTERVAL,
        }
    }
}

/// `[network]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Address the public HTTPS listener binds. Default `::`: every interface, IPv6 and IPv4
    /// (dual stack).
    pub bind_ip: IpAddr,
    /// Port of the public HTTPS listener (0 = any free port). Default 22021.
    pub https_port: u16,
    /// UDP port of the QUIC listener (0 = any free port), on the same address as HTTPS.
    /// Announced as the node's `storage_lmq_port`. Default 22020.
    pub quic_port: u16,
    /// Address of the QUIC listener when it must differ from `bind_ip` (a host whose
    /// announced address is on another interface). Default: `bind_ip`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quic_bind_ip: Option<IpAddr>,
    /// How this node sends peer traffic: `"quic"` (held connections to every peer that lists
    /// a QUIC port, HTTPS to the others) or `"https"` (always HTTPS). Default "quic".
    pub peer_transport: PeerTransport,
    /// IPv4 address announced to the network; empty = the bind address, or 127.0.0.1 when
    /// binding all interfaces. Default empty.
    pub public_ip: String,
    /// HTTPS port announced to clients and peers; 0 = the bound port. Set it when a port
    /// forward or proxy sits in front of the node. Default 0.
    pub public_https_port: u16,
    /// URL of the network's directory; empty = a one-node network owning every account.
    pub directory: String,
    /// Local test network: accept 64-hex pubkeys as `05` accounts. Default false.
    pub testnet: bool,
    /// Let this node reach peers at loopback, private, link-local and other non-public IPv4
    /// addresses (relayed onion hops, forwards, hand-off, anti-entropy, reachability tests).
    /// Only for networks on one host or a LAN; `testnet` implies it. Default false.
    pub allow_private_peers: bool,
    /// How long shutdown waits for in-flight requests. Default "10s".
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// How often membership is polled from the directory. Default "5s".
    #[serde(with = "humantime_serde")]
    pub membership_poll_interval: Duration,
    /// How often the node re-announces itself to the directory. Default "60s".
    #[serde(with = "humantime_serde")]
    pub announce_interval: Duration,
    /// How often one peer's reachability is tested and reported. Default "10s".
    #[serde(with = "humantime_serde")]
    pub ping_interval: Duration,
}

/// `[admin]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address of the plain-HTTP admin listener (`/metrics`, `/health`, `/ready`).
    /// Default `127.0.0.1:22029`.
    pub listen: SocketAddr,
}

/// `[storage]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// Refuse stores once the database occupies this many bytes. Default 10 GiB.
    pub max_bytes: u64,
    /// How often expired messages are deleted. Default "5s".
    #[serde(with = "humantime_serde")]
    pub expiry_sweep_interval: Duration,
    /// RocksDB's block cache in bytes. Default 16 MiB.
    pub cache_bytes: u64,
    /// All of RocksDB's memtables together, in bytes. Default 16 MiB.
    pub memtable_bytes: u64,
}

/// `[limits]`: what anyone on the internet may make the public listener hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// A connection that has not finished its TLS handshake in this time is closed.
    /// Default "10s".
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// A connection that sends no complete request head in this time is closed; it also
    /// bounds how long an idle HTTP/1 keep-alive connection waits for its next request.
    /// Default "10s".
    #[serde(with = "humantime_serde")]
    pub request_head_timeout: Duration,
    /// A request whose body does not arrive in this time is answered 408 and dropped.
    /// Default "30s".
    #[serde(with = "humantime_serde")]
    pub request_body_timeout: Duration,
    /// Connections held at once (handshaking or established); further ones wait in the
    /// kernel's backlog until one closes. Default 10000.
    pub max_connections: usize,
    /// TLS handshakes in progress at once. Default 512.
    pub max_handshakes: usize,
    /// Concurrent HTTP/2 streams per connection. Default 100.
    pub http2_max_streams: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            handshake_timeout: Duration::from_secs(10),
            request_head_timeout: Duration::from_secs(10),
            request_body_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_handshakes: 512,
            http2_max_streams: 100,
        }
    }
}

/// `[rate_limit]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitConfig {
    /// Rate-limit client RPC per IP. Default true.
    pub enabled: bool,
    /// Bucket size: requests a client may burst. Default 600.
    pub burst: u32,
    /// Refill rate in requests per second. Default 300.
    pub per_second: u32,
    /// Clients tracked at most. Default 10000.
    pub max_clients: usize,
    /// Do not limit loopback clients (local networks, where every client is 127.0.0.1).
    /// Default false.
    pub exempt_loopback: bool,
}

/// `[log]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` or `json`. Default "text".
    pub format: LogFormat,
    /// A tracing filter (`info`, `snode=debug`, …); `RUST_LOG` overrides it. Default "info".
    pub level: String,
}

/// `[onion]`
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct OnionConfig {
    /// Let the exit hop proxy onion requests to loopback, private, link-local and unspecified
    /// addresses. Off on real networks, so a client cannot use nodes to reach their operators'
    /// internal services; `snode testnet` turns it on (everything there is on 127.0.0.1).
    /// Default false.
    pub allow_private_targets: bool,
}

/// How peer traffic is carried (`network.peer_transport`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PeerTransport {
    /// Held QUIC connections where the peer lists a QUIC port, else HTTPS.
    #[default]
    Quic,
    /// Signed HTTPS requests only.
    Https,
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            bind_ip: IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED),
            https_port: DEFAULT_HTTPS_PORT,
            quic_port: DEFAULT_QUIC_PORT,
            quic_bind_ip: None,
            peer_transport: PeerTransport::Quic,
            public_ip: String::new(),
            public_https_port: 0,
            directory: String::new(),
            testnet: false,
            allow_private_peers: false,
            shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
            membership_poll_interval: DEFAULT_MEMBERSHIP_POLL_INTERVAL,
            announce_interval: DEFAULT_ANNOUNCE_INTERVAL,
            ping_interval: DEFAULT_PING_INTERVAL,
        }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: DEFAULT_ADMIN_LISTEN,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            max_bytes: DEFAULT_MAX_STORE_BYTES,
            expiry_sweep_interval: DEFAULT_EXPIRY_SWEEP_INTERVAL,
            cache_bytes: DEFAULT_CACHE_BYTES,
            memtable_bytes: DEFAULT_MEMTABLE_BYTES,
        }
    }
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            burst: DEFAULT_RATE_LIMIT_BURST,
            per_second: DEFAULT_RATE_LIMIT_PER_SECOND,
            max_clients: DEFAULT_RATE_LIMIT_MAX_CLIENTS,
            exempt_loopback: false,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Text,
            level: "info".to_string(),
        }
    }
}

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown keys or wrong types.
    #[error("invalid config file {path}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's error.
        #[source]
        source: TomlError,
    },
    /// A value is out of range.
    #[error("invalid config value {key}: {why}")]
    Invalid {
        /// The dotted key.
        key: &'static str,
        /// What is wrong.
        why: String,
    },
}

/// toml's error, shown as its message on one line: toml's own `Display` quotes the file over
/// several lines, and operators get one line.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.message().replace('\n', " "))]
pub struct TomlError(pub toml::de::Error);

impl Config {
    /// Parses TOML text; `path` only names the source in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            source: TomlError(e),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Checks values serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.network.public_ip.is_empty() && self.network.public_ip.parse::<Ipv4Addr>().is_err()
        {
            return Err(ConfigError::Invalid {
                key: "network.public_ip",
                why: format!("{:?} is not an IPv4 address", self.network.public_ip),
            });
        }
        let dir = &self.network.directory;
        let is_url = dir.starts_with("http://") || dir.starts_with("https://");
        if !dir.is_empty() && !is_url {
            return Err(ConfigError::Invalid {
                key: "network.directory",
                why: "must be an http:// or https:// URL".into(),
            });
        }
        for (key, d) in [
            (
                "network.membership_poll_interval",
                self.network.membership_poll_interval,
            ),
            ("network.announce_interval", self.network.announce_interval),
            ("network.ping_interval", self.network.ping_interval),
        ] {
            if d < Duration::from_millis(100) {
                return Err(ConfigError::Invalid {
                    key,
                    why: "must be at least 100ms".into(),
                });
            }
        }
        for (key, d) in [
            ("limits.handshake_timeout", self.limits.handshake_timeout),
            (
                "limits.request_head_timeout",
                self.limits.request_head_timeout,
            ),
            (
                "limits.request_body_timeout",
                self.limits.request_body_timeout,
            ),
            ("quic.handshake_timeout", self.quic.handshake_timeout),
            ("quic.idle_timeout", self.quic.idle_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::Invalid {
                    key,
                    why: "must be more than 0".into(),
                });
            }
        }
        for (key, n) in [
            ("limits.max_connections", self.limits.max_connections),
            ("limits.max_handshakes", self.limits.max_handshakes),
            ("quic.max_connections", self.quic.max_connections),
            (
                "quic.max_connections_per_ip",
                self.quic.max_connections_per_ip,
            ),
            ("quic.max_handshakes", self.quic.max_handshakes),
            (
                "quic.max_requests_per_connection",
                self.quic.max_requests_per_connection,
            ),
            (
                "quic.max_subscriptions_per_connection",
                self.quic.max_subscriptions_per_connection,
            ),
            ("quic.max_subscriptions", self.quic.max_subscriptions),
            (
                "limits.http2_max_streams",
                self.limits.http2_max_streams as usize,
            ),
        ] {
            if n == 0 {
                return Err(ConfigError::Invalid {
                    key,
                    why: "must be at least 1".into(),
                });
            }
        }
        if self.storage.max_bytes < 1024 * 1024 {
            return Err(ConfigError::Invalid {
                key: "storage.max_bytes",
                why: "must be at least 1 MiB".into(),
            });
        }
        for (key, n) in [
            ("storage.cache_bytes", self.storage.cache_bytes),
            ("storage.memtable_bytes", self.storage.memtable_bytes),
        ] {
            if n < 1024 * 1024 {
                return Err(ConfigError::Invalid {
                    key,
                    why: "must be at least 1 MiB".into(),
                });
            }
        }
        if self.storage.expiry_sweep_interval.is_zero()
            || self.storage.expiry_sweep_interval > Duration::from_secs(10)
        {
            return Err(ConfigError::Invalid {
                key: "storage.expiry_sweep_interval",
                why: "must be between 1ms and 10s (expired messages go within 10 s)".into(),
            });
        }
        if self.rate_limit.burst == 0 || self.rate_limit.per_second == 0 {
            return Err(ConfigError::Invalid {
                key: "rate_limit",
                why: "burst and per_second must be positive".into(),
            });
        }
        if self.rate_limit.max_clients == 0 {
            return Err(ConfigError::Invalid {
                key: "rate_limit.max_clients",
                why: "must be positive".into(),
            });
        }
        let r = &self.replication;
        for (key, d) in [
            ("replication.forward_timeout", r.forward_timeout),
            ("replication.retry_max_backoff", r.retry_max_backoff),
            ("replication.anti_entropy_interval", r.anti_entropy_interval),
            ("replication.handoff_interval", r.handoff_interval),
        ] {
            if d < Duration::from_millis(100) {
                return Err(ConfigError::Invalid {
                    key,
                    why: "must be at least 100ms".into(),
                });
            }
        }
        if self.runtime.worker_threads > MAX_WORKER_THREADS {
            return Err(ConfigError::Invalid {
                key: "runtime.worker_threads",
                why: format!("must be at most {MAX_WORKER_THREADS}"),
            });
        }
        Ok(())
    }

    /// The IPv4 address announced to clients and peers.
    pub fn public_ipv4(&self) -> Ipv4Addr {
        if let Ok(ip) = self.network.public_ip.parse::<Ipv4Addr>() {
            return ip;
        }
        match self.network.bind_ip {
            IpAddr::V4(ip) if !ip.is_unspecified() => ip,
            _ => Ipv4Addr::LOCALHOST,
        }
    }

    /// Renders a complete file with every key set (used for test-network nodes).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `node.example.toml` with every `# key = value` line uncommented must equal the defaults.
    #[test]
    fn example_lists_every_key_at_its_default() {
        let uncommented: String = EXAMPLE_TOML
            .lines()
            .map(|l| {
                let t = l.trim_start();
                match t.strip_prefix("# ") {
                    Some(rest) if rest.contains(" = ") || rest.starts_with('[') => rest,
                    _ => l,
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let parsed = Config::from_toml(&uncommented, Path::new("node.example.toml"))
            .expect("example parses");
        assert_eq!(parsed, Config::default());
        // Every key of the defaults appears in the example, so nothing is undocumented.
        let full = Config::default().to_toml();
        for line in full.lines() {
            if let Some((key, _)) = line.split_once(" = ") {
                assert!(
                    uncommented
                        .lines()
                        .any(|l| l.starts_with(&format!("{key} = "))),
                    "node.example.toml lacks {key}"
                );
            }
        }
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = Config::from_toml("[network]\nhttps_prot = 1\n", Path::new("x.toml"))
            .expect_err("unknown key");
        // What the operator reads: the file's context, then toml's message as its cause.
        let msg = crate::error::chain(&err).to_string();
        assert!(msg.starts_with("invalid config file x.toml: "), "{msg}");
        assert!(msg.contains("https_prot"), "{msg}");
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn malformed_files_are_refused() {
        assert!(Config::from_toml("[network\n", Path::new("x.toml")).is_err());
        assert!(
            Config::from_toml("[storage]\nmax_bytes = \"lots\"\n", Path::new("x.toml")).is_err()
        );
        assert!(
            Config::from_toml("[network]\npublic_ip = \"nope\"\n", Path::new("x.toml")).is_err()
        );
    }

    #[test]
    fn worker_threads_are_bounded() {
        let two = Config::from_toml("[runtime]\nworker_threads = 2\n", Path::new("x.toml"))
            .expect("two workers");
        assert_eq!(two.runtime.worker_threads, 2);
        let err = Config::from_toml("[runtime]\nworker_threads = 100000\n", Path::new("x.toml"))
            .expect_err("too many workers");
        let msg = crate::error::chain(&err).to_string();
        assert!(msg.contains("runtime.worker_threads"), "{msg}");
    }

    #[test]
    fn round_trips_through_toml() {
        let mut c = Config::default();
        c.network.https_port = 0;
        c.network.quic_port = 0;
        c.network.testnet = true;
        c.rate_limit.exempt_loopback = true;
        let text = c.to_toml();
        assert_eq!(Config::from_toml(&text, Path::new("x")).expect("parse"), c);
    }

    #[test]
    fn public_ip_falls_back_sensibly() {
        let mut c = Config::default();
        assert_eq!(c.public_ipv4(), Ipv4Addr::LOCALHOST);
        c.network.bind_ip = "10.1.2.3".parse().expect("ip");
        assert_eq!(c.public_ipv4(), Ipv4Addr::new(10, 1, 2, 3));
        c.network.public_ip = "1.2.3.4".into();
        assert_eq!(c.public_ipv4(), Ipv4Addr::new(1, 2, 3, 4));
    }
}
