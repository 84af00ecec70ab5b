//! `snode client …`: the client's command line.
//!
//! Owns the clap definitions and what each subcommand prints: `new-id` prints the Session
//! ID, `send` the message hash, `poll` one line (or one JSON object) per new message. Errors
//! are `anyhow` here, as in the rest of the command layer.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use serde_json::json;

use super::{
    Client, ClientError, ClientState, Identity, Received, TransportKind, parse_session_id,
    state_path,
};
use crate::onion::EncType;

/// `snode client`: a Session-compatible client speaking only through onion requests.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// URL of the network's directory (where the node list comes from).
    #[arg(long, global = true, env = "SNODE_DIRECTORY")]
    pub directory: Option<String>,
    /// Identity file (Ed25519 seed, made by `new-id`); the poll state is kept next to it.
    #[arg(long = "id", global = true, env = "SNODE_CLIENT_ID")]
    pub id: Option<PathBuf>,
    /// Cipher of the onion layers: aes-gcm (Session desktop and mobile) or xchacha20
    /// (libsession).
    #[arg(long, global = true, default_value = "aes-gcm", value_parser = parse_enc_type)]
    pub enc_type: EncType,
    /// How to reach the guard node: quic (oxen-libquic, as libsession-based clients) or
    /// https (`/onion_req/v2`, as Session's older clients).
    #[arg(long, global = true, default_value = "quic", value_parser = parse_transport)]
    pub transport: TransportKind,
    /// What to do.
    #[command(subcommand)]
    pub command: ClientCommand,
}

/// The client's subcommands.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Create an identity file and print its Session ID.
    NewId {
        /// Where to write the seed (mode 0600).
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Send a text to a Session ID; prints the message hash.
    Send {
        /// The recipient's Session ID (05 + 64 hex digits).
        #[arg(long)]
        to: String,
        /// The text.
        #[arg(long)]
        text: String,
        /// How long the network keeps the message (at most 14 days).
        #[arg(long, default_value = "14d", value_parser = humantime::parse_duration)]
        ttl: Duration,
    },
    /// Fetch and decrypt new messages.
    Poll {
        /// One JSON object per message: hash, timestamp, from, text (or rejected).
        #[arg(long)]
        json: bool,
    },
    /// Subscribe to new messages (QUIC `monitor`, straight to members of our swarm) and print
    /// each as it is pushed, decrypted and verified as `poll` does; runs until interrupted.
    Watch {
        /// One JSON object per message, as `poll --json`.
        #[arg(long)]
        json: bool,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<usize>,
    },
}

fn parse_transport(s: &str) -> Result<TransportKind, String> {
    TransportKind::from_name(s).ok_or_else(|| format!("unknown transport {s:?} (quic or https)"))
}

fn parse_enc_type(s: &str) -> Result<EncType, String> {
    EncType::from_name(s).ok_or_else(|| format!("unknown cipher {s:?} (aes-gcm or xchacha20)"))
}

/// Runs a client command.
pub fn run(args: ClientArgs) -> anyhow::Result<()> {
    match &args.command {
        ClientCommand::NewId { out, force } => new_id(out, *force),
        ClientCommand::Send { to, text, ttl } => {
            let to = parse_session_id(to).context("--to is not a Session ID (05 + 64 hex)")?;
            let ttl_ms = i64::try_from(ttl.as_millis()).context("--ttl is too long")?;
            let text = text.clone();
            with_client(&args, |mut client, _state| async move {
                let hash = client
                    .send(&to, &text, ttl_ms, crate::clock::wall_clock_ms())
                    .await?;
                writeln!(std::io::stdout().lock(), "{hash}")?;
                Ok(client)
            })
        }
        ClientCommand::Poll { json } => {
            let json = *json;
            let id = id_path(&args)?.to_path_buf();
            with_client(&args, |mut client, mut state| async move {
                let received = client
                    .poll(&mut state, crate::clock::wall_clock_ms())
                    .await?;
                state.save(&state_path(&id))?;
                let mut out = std::io::stdout().lock();
                for r in &received {
                    writeln!(out, "{}", render(r, json))?;
                }
                Ok(client)
            })
        }
        ClientCommand::Watch { json, count } => {
            let (json, count) = (*json, *count);
            let id = id_path(&args)?.to_path_buf();
            with_client(&args, |client, mut state| async move {
                let state_file = state_path(&id);
                let result = super::watch::watch(
                    &client,
                    &mut state,
                    count,
                    crate::clock::wall_clock_ms,
                    |r| {
                        let mut out = std::io::stdout().lock();
                        writeln!(out, "{}", render(r, json))
                            .and_then(|()| out.flush())
                            .map_err(|e| ClientError::Watch(format!("stdout: {e}")))
                    },
                )
                .await;
                // What was printed is not printed again by a later `poll` or `watch`.
                state.save(&state_file)?;
                result?;
                Ok(client)
            })
        }
    }
}

fn new_id(out: &Path, force: bool) -> anyhow::Result<()> {
    let identity = Identity::generate();
    identity.save(out, force)?;
    // A new identity starts with no poll state.
    let state = state_path(out);
    if state.exists() {
        std::fs::remove_file(&state)
            .with_context(|| format!("cannot remove old state {}", state.display()))?;
    }
    writeln!(std::io::stdout().lock(), "{}", identity.session_id())?;
    Ok(())
}

fn id_path(args: &ClientArgs) -> anyhow::Result<&Path> {
    match &args.id {
        Some(p) => Ok(p),
        None => bail!("--id FILE is required (make one with `snode client new-id --out FILE`)"),
    }
}

/// Loads identity and state, connects, runs `f`, and saves the guard for next time.
fn with_client<F, Fut>(args: &ClientArgs, f: F) -> anyhow::Result<()>
where
    F: FnOnce(Client, ClientState) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Client>>,
{
    let id = id_path(args)?;
    let Some(directory) = args.directory.as_deref() else {
        bail!("--directory URL is required");
    };
    let identity = Identity::load(id)?;
    let state_file = state_path(id);
    let state = ClientState::load(&state_file)?;
    let guard = state.guard.as_deref().and_then(|g| {
        let mut k = [0u8; 32];
        hex::decode_to_slice(g, &mut k).ok().map(|()| k)
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let client = Client::connect(identity, directory, args.enc_type, guard)
            .await?
            .with_transport(args.transport)?;
        let client = f(client, state).await?;
        // Re-read: `poll` saved its own changes; only the guard is updated here.
        let mut state = ClientState::load(&state_file)?;
        let new_guard = client.guard().map(hex::encode);
        if new_guard.is_some() && state.guard != new_guard {
            state.guard = new_guard;
            state.save(&state_file)?;
        }
        Ok(())
    })
}

/// One line of `poll` output.
pub fn render(r: &Received, json: bool) -> String {
    match (&r.content, json) {
        (Ok(m), true) => json!({
            "hash": r.hash,
            "timestamp": r.timestamp,
            "from": m.from,
            "text": m.text,
        })
        .to_string(),
        (Err(why), true) => json!({
            "hash": r.hash,
            "timestamp": r.timestamp,
            "rejected": why.to_string(),
        })
        .to_string(),
        (Ok(m), false) => format!("{} {}: {}", r.timestamp, m.from, m.text),
        (Err(why), false) => format!("{} rejected {}: {}", r.timestamp, r.hash, why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::{Opened, Rejected};
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Top {
        #[command(subcommand)]
        cmd: Cmd,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Cmd {
        Client(ClientArgs),
    }

    fn parse(args: &[&str]) -> ClientArgs {
        let Cmd::Client(a) = Top::try_parse_from(args).unwrap().cmd;
        a
    }

    #[test]
    fn global_flags_go_before_or_after_the_subcommand() {
        let a = parse(&[
            "x",
            "client",
            "--directory",
            "http://d",
            "--id",
            "f",
            "poll",
            "--json",
        ]);
        assert_eq!(a.directory.as_deref(), Some("http://d"));
        assert!(matches!(a.command, ClientCommand::Poll { json: true }));
        assert_eq!(a.enc_type, EncType::AesGcm);
        let a = parse(&[
            "x",
            "client",
            "send",
            "--to",
            "05ab",
            "--text",
            "hi",
            "--id",
            "f",
            "--enc-type",
            "xchacha20",
        ]);
        assert_eq!(a.id.as_deref(), Some(Path::new("f")));
        assert_eq!(a.enc_type, EncType::XChaCha20);
        match a.command {
            ClientCommand::Send { ttl, .. } => assert_eq!(ttl, Duration::from_secs(14 * 86400)),
            other => panic!("{other:?}"),
        }
        assert!(Top::try_parse_from(["x", "client", "--enc-type", "rot13", "poll"]).is_err());
    }

    #[test]
    fn output_lines() {
        let ok = Received {
            hash: "h".into(),
            timestamp: 5,
            expiry: 9,
            content: Ok(Opened {
                from: "05aa".into(),
                text: "hi".into(),
            }),
        };
        assert_eq!(
            render(&ok, true),
            r#"{"from":"05aa","hash":"h","text":"hi","timestamp":5}"#
        );
        assert_eq!(render(&ok, false), "5 05aa: hi");
        let bad = Received {
            content: Err(Rejected::BadSignature),
            ..ok
        };
        assert_eq!(
            render(&bad, true),
            r#"{"hash":"h","rejected":"bad signature","timestamp":5}"#
        );
        assert_eq!(render(&bad, false), "5 rejected h: bad signature");
    }
}
