//! The command line: clap definitions and what each command does.
//!
//! Owns argument parsing, flag/env/file precedence (flag > `SNODE_*` env > file > default),
//! logging set-up and process-level behaviour (signals, exit codes). Errors are `anyhow` here
//! and only here; the library below returns typed errors.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, LogFormat};
use crate::keys::NodeKeys;
use crate::node::{KEY_FILE, Node, NodeOptions};
use crate::status::client::RUN_FILE;

/// snode: a service node for a Session-style private messenger network.
#[derive(Debug, Parser)]
#[command(name = "snode", version, about, max_term_width = 100)]
pub struct Cli {
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a node's keys, TLS certificate and node.toml in a data directory.
    Init(InitArgs),
    /// Run a node.
    Run(RunArgs),
    /// Run a network's directory (the stand-in for oxend's service-node list).
    Directory(DirectoryArgs),
    /// Run a local test network: a directory and N node processes on 127.0.0.1.
    Testnet(TestnetArgs),
    /// Drive a running test network with load and measure it.
    Bench(BenchArgs),
    /// A Session client: identities, sending and polling messages through onion requests.
    Client(crate::client::cli::ClientArgs),
    /// Show a running node's state: registration, swarm, reachability, hand-off, store.
    Status(StatusArgs),
    /// Inspect the node's keys.
    Keys {
        /// What to do with the keys.
        #[command(subcommand)]
        command: KeysCommand,
    },
}

/// `snode init`
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Data directory to create or fill.
    #[arg(long, env = "SNODE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Overwrite existing keys, certificate and node.toml.
    #[arg(long)]
    pub force: bool,
}

/// `snode run`
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Data directory made by `snode init`.
    #[arg(long, env = "SNODE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Configuration file [default: DATA_DIR/node.toml when it exists].
    #[arg(long, env = "SNODE_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address of the public HTTPS listener (overrides network.bind_ip).
    #[arg(long, env = "SNODE_BIND_IP")]
    pub bind_ip: Option<IpAddr>,
    /// Port of the public HTTPS listener (overrides network.https_port).
    #[arg(long, env = "SNODE_HTTPS_PORT")]
    pub https_port: Option<u16>,
    /// UDP port of the QUIC listener (overrides network.quic_port).
    #[arg(long, env = "SNODE_QUIC_PORT")]
    pub quic_port: Option<u16>,
    /// How peer traffic goes: quic or https (overrides network.peer_transport).
    #[arg(long, env = "SNODE_PEER_TRANSPORT", value_enum)]
    pub peer_transport: Option<crate::config::PeerTransport>,
    /// Address of the admin listener (overrides admin.listen).
    #[arg(long, env = "SNODE_ADMIN_LISTEN")]
    pub admin_listen: Option<SocketAddr>,
    /// URL of the network's directory (overrides network.directory).
    #[arg(long, env = "SNODE_DIRECTORY")]
    pub directory: Option<String>,
    /// IPv4 address announced to the network (overrides network.public_ip); needed behind NAT
    /// and in containers, where the bound address is not the one peers reach.
    #[arg(long, env = "SNODE_PUBLIC_IP")]
    pub public_ip: Option<std::net::Ipv4Addr>,
    /// Reach peers at non-public addresses (sets network.allow_private_peers): a network on
    /// one host or a LAN only.
    #[arg(long, env = "SNODE_ALLOW_PRIVATE_PEERS")]
    pub allow_private_peers: bool,
    /// Log format (overrides log.format).
    #[arg(long, env = "SNODE_LOG_FORMAT", value_parser = parse_log_format)]
    pub log_format: Option<LogFormat>,
}

/// `snode directory`
#[derive(Debug, Args)]
pub struct DirectoryArgs {
    /// Directory for the registry's state file.
    #[arg(long, env = "SNODE_DATA_DIR")]
    pub data_dir: PathBuf,
    /// Address to serve `/json_rpc`, `/register` and `/report` on.
    #[arg(long, env = "SNODE_DIRECTORY_LISTEN", default_value = "0.0.0.0:22030")]
    pub listen: SocketAddr,
    /// Admit these node Ed25519 pubkeys (hex; comma-separated or repeated), together with
    /// those of --allow-file. Without --allow, --allow-file or --open no node can register.
    #[arg(
        long = "allow",
        env = "SNODE_DIRECTORY_ALLOW",
        value_delimiter = ',',
        conflicts_with = "open"
    )]
    pub allow: Vec<String>,
    /// Admit the node pubkeys listed in FILE (one hex key a line, `#` comments), re-read on
    /// SIGHUP (a bad file then keeps the previous list).
    #[arg(
        long,
        env = "SNODE_DIRECTORY_ALLOW_FILE",
        value_name = "FILE",
        conflicts_with = "open"
    )]
    pub allow_file: Option<PathBuf>,
    /// Admit any node with a valid signed announcement: for local and test networks only.
    #[arg(long, env = "SNODE_DIRECTORY_OPEN", value_parser = clap::builder::BoolishValueParser::new())]
    pub open: bool,
    /// Accept nodes announcing loopback, private (RFC 1918), link-local, CGNAT and other
    /// non-public IPv4 addresses: for networks on one host or a LAN only.
    #[arg(long, env = "SNODE_DIRECTORY_ALLOW_PRIVATE_ADDRESSES", value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_private_addresses: bool,
    /// Most nodes listed (active and decommissioned); known nodes may still re-announce.
    #[arg(long, env = "SNODE_DIRECTORY_MAX_NODES", default_value_t = crate::directory::state::DEFAULT_MAX_NODES)]
    pub max_nodes: usize,
    /// Limit of `/register` per source IP (IPv6: per /64): RATE:BURST (requests per second,
    /// burst) or `off`.
    #[arg(
        long,
        env = "SNODE_DIRECTORY_REGISTER_LIMIT_IP",
        default_value = "2:60",
        value_name = "RATE:BURST"
    )]
    pub register_limit_ip: LimitArg,
    /// Limit of `/register` per node key: RATE:BURST or `off`.
    #[arg(
        long,
        env = "SNODE_DIRECTORY_REGISTER_LIMIT_KEY",
        default_value = "0.2:10",
        value_name = "RATE:BURST"
    )]
    pub register_limit_key: LimitArg,
    /// Limit of `/report` per source IP (IPv6: per /64): RATE:BURST or `off`.
    #[arg(
        long,
        env = "SNODE_DIRECTORY_REPORT_LIMIT_IP",
        default_value = "20:200",
        value_name = "RATE:BURST"
    )]
    pub report_limit_ip: LimitArg,
    /// Limit of `/report` per reporting node key: RATE:BURST or `off`.
    #[arg(
        long,
        env = "SNODE_DIRECTORY_REPORT_LIMIT_KEY",
        default_value = "2:30",
        value_name = "RATE:BURST"
    )]
    pub report_limit_key: LimitArg,
    /// Decommission a node its peers cannot reach for this long.
    #[arg(long, env = "SNODE_DECOMMISSION_AFTER", default_value = "2h", value_parser = humantime::parse_duration)]
    pub decommission_after: std::time::Duration,
}

/// One rate limit of `snode directory` (`RATE:BURST` or `off`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitArg(pub Option<crate::directory::Rate>);

impl std::str::FromStr for LimitArg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::directory::limit::parse_rate(s).map(LimitArg)
    }
}

/// `snode testnet`
#[derive(Debug, Args)]
pub struct TestnetArgs {
    /// Number of nodes.
    #[arg(long, short = 'n', default_value_t = 5)]
    pub nodes: usize,
    /// Directory for the network (node data dirs, directory state, testnet.json).
    #[arg(long)]
    pub dir: PathBuf,
}

/// `snode bench`
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The test network's manifest.
    #[arg(long, default_value = "testnet/testnet.json")]
    pub testnet: PathBuf,
    /// What to send.
    #[arg(long, value_enum, default_value = "store")]
    pub mode: crate::bench::BenchMode,
    /// Requests in total.
    #[arg(long, default_value_t = 10_000)]
    pub requests: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub size: usize,
    /// Distinct accounts the load is spread over.
    #[arg(long, default_value_t = 1000)]
    pub accounts: usize,
    /// Soak mode: how long the load runs (`10m`, `90s`).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub duration: std::time::Duration,
    /// Soak mode: requests per second, paced steadily.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// Soak mode: kill (SIGKILL) and restart one node this often, round robin; `0s` kills none.
    #[arg(long, default_value = "1m", value_parser = humantime::parse_duration)]
    pub kill_every: std::time::Duration,
    /// Soak mode: how long a killed node stays down before its restart.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub down_for: std::time::Duration,
    /// Soak mode: how often every node's RSS is sampled.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub rss_every: std::time::Duration,
    /// Soak mode: how long the final check may wait for the network to converge.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    pub settle: std::time::Duration,
}

/// `snode status`
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Data directory of the running node (its admin listener is found in snode.run.json).
    #[arg(long, env = "SNODE_DATA_DIR", required_unless_present = "admin")]
    pub data_dir: Option<PathBuf>,
    /// Ask this admin listener (`IP:PORT`) instead of looking it up in the data directory.
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Print the report as JSON (the admin listener's `GET /status`).
    #[arg(long)]
    pub json: bool,
}

/// `snode keys …`
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print the node's public keys.
    Show {
        /// Data directory holding `key_ed25519`.
        #[arg(long, env = "SNODE_DATA_DIR")]
        data_dir: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(format!("unknown log format {other:?} (text or json)")),
    }
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init(args) => init(&args),
        Command::Run(args) => run_node(args),
        Command::Directory(args) => run_directory(args),
        Command::Testnet(args) => run_testnet(args),
        Command::Client(args) => crate::client::cli::run(args),
        Command::Bench(args) => run_bench(args),
        Command::Status(args) => show_status(&args),
        Command::Keys {
            command: KeysCommand::Show { data_dir, json },
        } => show_keys(&data_dir, json),
    }
}

fn print_pubkeys(keys: &NodeKeys, json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if json {
        let v = serde_json::json!({
            "pubkey_ed25519": hex::encode(keys.pubkey_ed25519()),
            "pubkey_x25519": hex::encode(keys.pubkey_x25519()),
            "address": keys.snode_address(),
        });
        writeln!(out, "{v}")?;
    } else {
        writeln!(
            out,
            "pubkey_ed25519: {}",
            hex::encode(keys.pubkey_ed25519())
        )?;
        writeln!(out, "pubkey_x25519:  {}", hex::encode(keys.pubkey_x25519()))?;
        writeln!(out, "address:        {}", keys.snode_address())?;
    }
    Ok(())
}

fn init(args: &InitArgs) -> anyhow::Result<()> {
    let dir = &args.data_dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data directory {}", dir.display()))?;
    restrict_dir(dir)?;
    let keys = NodeKeys::generate();
    keys.write(&dir.join(KEY_FILE), args.force)?;
    crate::tls::ensure_certificate(dir, &keys, args.force)?;
    let toml_path = dir.join("node.toml");
    if args.force || !toml_path.exists() {
        std::fs::write(&toml_path, crate::config::EXAMPLE_TOML)
            .with_context(|| format!("cannot write {}", toml_path.display()))?;
    }
    print_pubkeys(&keys, false)
}

#[cfg(unix)]
fn restrict_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot restrict permissions of {}", dir.display()))
}

#[cfg(not(unix))]
fn restrict_dir(_dir: &Path) -> anyhow::Result<()> {
    Ok(())
}

fn show_keys(dir: &Path, json: bool) -> anyhow::Result<()> {
    let keys = NodeKeys::load(&dir.join(KEY_FILE))?;
    print_pubkeys(&keys, json)
}

/// File, then flags: the effective configuration of `snode run`.
pub fn effective_config(args: &RunArgs) -> anyhow::Result<Config> {
    let default_path = args.data_dir.join("node.toml");
    let mut cfg = match &args.config {
        Some(path) => Config::load(path)?,
        None if default_path.exists() => Config::load(&default_path)?,
        None => Config::default(),
    };
    if let Some(ip) = args.bind_ip {
        cfg.network.bind_ip = ip;
    }
    if let Some(port) = args.https_port {
        cfg.network.https_port = port;
    }
    if let Some(port) = args.quic_port {
        cfg.network.quic_port = port;
    }
    if let Some(t) = args.peer_transport {
        cfg.network.peer_transport = t;
    }
    if let Some(addr) = args.admin_listen {
        cfg.admin.listen = addr;
    }
    if let Some(url) = &args.directory {
        cfg.network.directory = url.clone();
    }
    if let Some(ip) = args.public_ip {
        cfg.network.public_ip = ip.to_string();
    }
    if args.allow_private_peers {
        cfg.network.allow_private_peers = true;
    }
    if let Some(f) = args.log_format {
        cfg.log.format = f;
    }
    cfg.validate()?;
    Ok(cfg)
}

fn init_logging(cfg: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&cfg.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    use std::io::IsTerminal as _;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    // A second initialisation (tests calling run twice) is harmless: keep the first.
    let _ = match cfg.log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

fn run_node(args: RunArgs) -> anyhow::Result<()> {
    let cfg = effective_config(&args)?;
    init_logging(&cfg);
    node_runtime(cfg.runtime.worker_threads)?.block_on(async move {
        let mut opts = NodeOptions::new(args.data_dir.clone(), cfg);
        // systemd's variables are read here, at the process boundary; the node only sends.
        opts.notifier = crate::notify::Notifier::from_vars(
            std::env::var_os("NOTIFY_SOCKET").as_deref(),
            std::env::var("WATCHDOG_USEC").ok().as_deref(),
            std::env::var("WATCHDOG_PID").ok().as_deref(),
            std::process::id(),
        );
        let node = Node::spawn(opts).await?;
        write_run_file(&args.data_dir, &node)?;
        wait_for_signal().await?;
        tracing::info!("shutting down");
        node.shutdown().await;
        Ok(())
    })
}

/// The node's runtime: `worker_threads` workers (`[runtime]`), or one per core when 0.
fn node_runtime(worker_threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if worker_threads > 0 {
        builder.worker_threads(worker_threads);
    }
    builder
        .enable_all()
        .thread_name("snode")
        .build()
        .context("cannot start the async runtime")
}

/// The runtime of every other command: one worker per core.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    node_runtime(0)
}

fn run_directory(args: DirectoryArgs) -> anyhow::Result<()> {
    use crate::directory::DirectoryLimits;
    use crate::directory::server::{DirectoryConfig, serve};
    use crate::directory::state::Admission;
    init_logging(&Config::default());
    let mut flag_keys = std::collections::BTreeSet::new();
    for k in &args.allow {
        let mut pk = [0u8; 32];
        hex::decode_to_slice(k.trim(), &mut pk)
            .with_context(|| format!("--allow {k:?} is not a 64-hex Ed25519 pubkey"))?;
        flag_keys.insert(pk);
    }
    // No admission flag admits nobody: a directory reachable from the internet must not list
    // whoever asks unless its operator said so (--open).
    let admission = if args.open {
        Admission::Open
    } else if let Some(path) = &args.allow_file {
        read_allow_file(path, &flag_keys)?
    } else {
        Admission::AllowList(flag_keys.clone())
    };
    let limits = DirectoryLimits {
        register_per_ip: args.register_limit_ip.0,
        register_per_key: args.register_limit_key.0,
        report_per_ip: args.report_limit_ip.0,
        report_per_key: args.report_limit_key.0,
    };
    runtime()?.block_on(async move {
        let handle = serve(DirectoryConfig {
            data_dir: args.data_dir,
            listen: args.listen,
            admission,
            decommission_after: args.decommission_after,
            allow_private_addresses: args.allow_private_addresses,
            max_nodes: args.max_nodes,
            limits,
            clock: crate::clock::wall(),
            transport: None,
            rng_seed: None,
        })
        .await?;
        tracing::info!(url = %handle.url(), "directory serving");
        directory_signals(&handle, args.allow_file.as_deref(), &flag_keys).await?;
        handle.shutdown().await;
        Ok(())
    })
}

/// The allow-list of `path` plus the `--allow` keys. Errors name the file (and the line).
fn read_allow_file(
    path: &Path,
    flag_keys: &std::collections::BTreeSet<[u8; 32]>,
) -> anyhow::Result<crate::directory::Admission> {
    use crate::directory::Admission;
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the allow-list {}", path.display()))?;
    match Admission::allow_list_from_text(&text)
        .with_context(|| format!("bad allow-list {}", path.display()))?
    {
        Admission::AllowList(mut keys) => {
            keys.extend(flag_keys.iter().copied());
            Ok(Admission::AllowList(keys))
        }
        Admission::Open => Ok(Admission::Open),
    }
}

/// Runs until SIGTERM or SIGINT; on SIGHUP re-reads `allow_file` (a bad file keeps the
/// previous list, and the log says why).
async fn directory_signals(
    handle: &crate::directory::DirectoryHandle,
    allow_file: Option<&Path>,
    flag_keys: &std::collections::BTreeSet<[u8; 32]>,
) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
        loop {
            tokio::select! {
                _ = term.recv() => return Ok(()),
                _ = int.recv() => return Ok(()),
                _ = hup.recv() => {}
            }
            let Some(path) = allow_file else {
                tracing::info!("SIGHUP: no --allow-file to re-read; admission unchanged");
                continue;
            };
            match read_allow_file(path, flag_keys) {
                Ok(admission) => {
                    let keys = admission.allowed_count().unwrap_or(0);
                    handle.set_admission(admission).await;
                    tracing::info!(keys, file = %path.display(), "allow-list re-read");
                }
                Err(e) => tracing::warn!(
                    error = format!("{e:#}"),
                    "allow-list not re-read; keeping the previous one"
                ),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (handle, allow_file, flag_keys);
        wait_for_signal().await
    }
}

fn run_testnet(args: TestnetArgs) -> anyhow::Result<()> {
    use crate::testnet::{Testnet, TestnetOptions};
    init_logging(&Config::default());
    let bin = std::env::current_exe().context("cannot find the snode binary")?;
    runtime()?.block_on(async move {
        let net = Testnet::start(&TestnetOptions {
            nodes: args.nodes,
            dir: args.dir.clone(),
            bin,
        })
        .await?;
        let mut out = std::io::stdout().lock();
        write!(out, "{}", net.summary().await)?;
        writeln!(
            out,
            "  manifest: {}",
            args.dir.join("testnet.json").display()
        )?;
        out.flush()?;
        drop(out);
        wait_for_signal().await?;
        tracing::info!("stopping the test network");
        net.stop().await;
        Ok(())
    })
}

fn run_bench(args: BenchArgs) -> anyhow::Result<()> {
    if args.mode == crate::bench::BenchMode::Soak {
        return run_soak(args);
    }
    let opts = crate::bench::BenchOptions {
        manifest: args.testnet,
        mode: args.mode,
        requests: args.requests,
        concurrency: args.concurrency,
        size: args.size,
        accounts: args.accounts,
    };
    let report = runtime()?.block_on(crate::bench::run(&opts))?;
    write!(std::io::stdout().lock(), "{}", report.render(opts.mode))?;
    Ok(())
}

/// `snode bench --mode soak`: fails (non-zero exit) when an acknowledged message was lost or
/// a deleted one came back.
fn run_soak(args: BenchArgs) -> anyhow::Result<()> {
    let opts = crate::bench::soak::SoakOptions {
        manifest: args.testnet,
        bin: std::env::current_exe().context("cannot find the snode binary")?,
        duration: args.duration,
        rate: args.rate,
        kill_every: args.kill_every,
        down_for: args.down_for,
        rss_every: args.rss_every,
        settle: args.settle,
        accounts: args.accounts,
        size: args.size,
        concurrency: args.concurrency,
    };
    let report = runtime()?.block_on(crate::bench::soak::run(&opts))?;
    write!(std::io::stdout().lock(), "{}", report.render())?;
    if !report.passed() {
        anyhow::bail!(
            "soak failed: {} acknowledged messages lost, {} deleted messages resurrected",
            report.check.lost,
            report.check.resurrected
        );
    }
    Ok(())
}

fn show_status(args: &StatusArgs) -> anyhow::Result<()> {
    use crate::status::client;
    let addr = match (args.admin, &args.data_dir) {
        (Some(a), _) => client::reachable_from_here(a),
        (None, Some(dir)) => client::admin_addr(dir)?,
        (None, None) => anyhow::bail!("give --data-dir DIR or --admin IP:PORT"),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = rt.block_on(client::fetch(addr))?;
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        write!(out, "{}", crate::status::render::text(&report))?;
    }
    Ok(())
}

/// Writes `RUN_FILE`, the pid and bound ports `snode status`, scripts and tests read back.
fn write_run_file(dir: &Path, node: &crate::node::NodeHandle) -> anyhow::Result<()> {
    let v = serde_json::json!({
        "pid": std::process::id(),
        "https_port": node.https_addr().port(),
        "quic_port": node.quic_addr().port(),
        "admin_port": node.admin_addr().port(),
        "admin_addr": node.admin_addr().to_string(),
        "pubkey_ed25519": hex::encode(node.pubkey_ed25519()),
    });
    // Written then renamed, so a reader never sees half a file.
    let tmp = dir.join(format!("{RUN_FILE}.tmp"));
    std::fs::write(&tmp, v.to_string())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, dir.join(RUN_FILE))
        .with_context(|| format!("cannot write {}", dir.join(RUN_FILE).display()))
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        Ok(())
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.context("cannot watch Ctrl-C")
    }
}

#[cfg(test)]
mod tests {
    use super::node_runtime;

    #[test]
    fn the_runtime_has_the_configured_workers() {
        let one = node_runtime(1).expect("runtime");
        assert_eq!(one.metrics().num_workers(), 1);
        let three = node_runtime(3).expect("runtime");
        assert_eq!(three.metrics().num_workers(), 3);
        // 0: tokio's default, one per core.
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let default = node_runtime(0).expect("runtime");
        assert_eq!(default.metrics().num_workers(), cores);
    }
}
