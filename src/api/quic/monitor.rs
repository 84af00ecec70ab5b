//! `monitor` push subscriptions (storage-server.md 1.12, quic.md 5): who may subscribe to
//! which account's new messages, and the `notify` pushes to every subscriber when the store
//! inserts one.
//!
//! Owns parsing and verifying `monitor` bodies (signed by the account, or by a subaccount with
//! read access), the subscription table (per connection and account, expiring after 65
//! minutes, bounded per connection and in total) and encoding pushes. Must not do network I/O:
//! a push is handed to the subscriber's stream queue without waiting, so a slow subscriber
//! loses pushes rather than slowing a store.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::mpsc;

use crate::bencode::{self, Limits};
use crate::clock::Clock;
use crate::message::{AccountId, Message};
use crate::metrics::{Metrics, PushOutcome};
use crate::quic::frame::Frame;
use crate::sign::{Access, RequestAuth, SignedSubaccount, SubaccountToken, verify_request};
use crate::store::Store;
use crate::swarm::{Membership, SwarmId};

/// A subscription lasts this long unless renewed (the original's 65 minutes; clients renew
/// hourly).
pub const SUBSCRIPTION_TTL_MS: i64 = 65 * 60 * 1000;
/// A signature time may be this old (14 days) …
const MAX_SIG_AGE_S: i64 = 14 * 24 * 3600;
/// … or this far ahead (1 day).
const MAX_SIG_AHEAD_S: i64 = 24 * 3600;
/// Most entries in one list request (each costs a signature check).
pub const MAX_ENTRIES: usize = 10_000;

/// The error codes of a refused entry (storage-server.md 1.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i64)]
pub enum MonitorError {
    /// Missing or malformed fields.
    BadArgs = 1,
    /// The account key is invalid.
    BadPubkey = 2,
    /// Namespaces missing, out of range or not ascending.
    BadNs = 3,
    /// The signature time is outside [now − 14 days, now + 1 day].
    BadTs = 4,
    /// The signature (or the subaccount token) does not verify.
    BadSig = 5,
    /// This node's swarm does not store the account.
    WrongSwarm = 6,
}

/// One subscription: an account's namespaces on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The account.
    pub account: AccountId,
    /// Namespaces watched.
    pub namespaces: BTreeSet<i16>,
    /// Whether pushes carry the message body.
    pub want_data: bool,
}

/// The signed message of a `monitor` entry:
/// `"MONITOR" ‖ hex(account) ‖ t ‖ "0"|"1" ‖ namespaces joined by ","`.
pub fn signed_message(account: &AccountId, t: i64, want_data: bool, namespaces: &[i16]) -> Vec<u8> {
    let ns: Vec<String> = namespaces.iter().map(i16::to_string).collect();
    format!(
        "MONITOR{}{}{}{}",
        account.to_hex(),
        t,
        if want_data { "1" } else { "0" },
        ns.join(",")
    )
    .into_bytes()
}

/// What checking an entry needs of the node.
pub struct MonitorContext<'a> {
    /// For subaccount revocations.
    pub store: &'a Store,
    /// Our membership, for the swarm check.
    pub membership: &'a Membership,
    /// Our key.
    pub me: [u8; 32],
    /// Now, ms.
    pub now_ms: i64,
}

fn refuse(code: MonitorError, msg: &str) -> (MonitorError, String) {
    (code, msg.to_string())
}

/// Fields of one entry, raw.
#[derive(Default)]
struct Fields<'a> {
    big_p: Option<&'a [u8]>,
    sub_sig: Option<&'a [u8]>,
    token: Option<&'a [u8]>,
    d: Option<i64>,
    n: Option<Vec<i64>>,
    small_p: Option<&'a [u8]>,
    s: Option<&'a [u8]>,
    t: Option<i64>,
}

fn fields<'a>(
    entry: &[(&'a [u8], bencode::Value<'a>)],
) -> Result<Fields<'a>, (MonitorError, String)> {
    use bencode::Value as V;
    let bad = |k: &str| refuse(MonitorError::BadArgs, &format!("Invalid value for '{k}'"));
    let mut f = Fields::default();
    for (k, v) in entry {
        match (*k, v) {
            (b"P", V::Bytes(b)) => f.big_p = Some(b),
            (b"S", V::Bytes(b)) => f.sub_sig = Some(b),
            (b"T", V::Bytes(b)) => f.token = Some(b),
            (b"d", V::Int(i)) => f.d = Some(*i),
            (b"n", V::List(items)) => {
                let mut ns = Vec::with_capacity(items.len());
                for i in items {
                    match i {
                        V::Int(n) => ns.push(*n),
                        _ => return Err(refuse(MonitorError::BadNs, "Invalid namespace list")),
                    }
                }
                f.n = Some(ns);
            }
            (b"p", V::Bytes(b)) => f.small_p = Some(b),
            (b"s", V::Bytes(b)) => f.s = Some(b),
            (b"t", V::Int(i)) => f.t = Some(*i),
            (b"n", _) => return Err(refuse(MonitorError::BadNs, "Invalid namespace list")),
            (b"P" | b"S" | b"T" | b"d" | b"p" | b"s" | b"t", _) => {
                return Err(bad(&String::from_utf8_lossy(k)));
            }
            _ => {} // unknown keys are ignored
        }
    }
    Ok(f)
}

/// Checks one entry; the subscription it grants or the refusal.
pub fn check_entry(
    ctx: &MonitorContext<'_>,
    entry: &[(&[u8], bencode::Value<'_>)],
) -> Result<Subscription, (MonitorError, String)> {
    let f = fields(entry)?;
    // The account and the key that signs for it.
    let (account, ed_for_05) = match (f.big_p, f.small_p) {
        (Some(_), Some(_)) => {
            return Err(refuse(
                MonitorError::BadArgs,
                "Cannot provide both p= and P=",
            ));
        }
        (None, None) => {
            return Err(refuse(
                MonitorError::BadArgs,
                "Missing required pubkey: p= or P=",
            ));
        }
        (Some(p), None) => {
            let ed: [u8; 32] = p
                .try_into()
                .map_err(|_| refuse(MonitorError::BadPubkey, "P= must be 32 bytes"))?;
            let x = crate::keys::ed25519_pk_to_x25519(&ed)
                .ok_or_else(|| refuse(MonitorError::BadPubkey, "P= is not a valid Ed25519 key"))?;
            (AccountId { kind: 0x05, key: x }, Some(ed))
        }
        (None, Some(p)) => {
            let account = AccountId::from_bytes(p)
                .map_err(|_| refuse(MonitorError::BadPubkey, "p= must be 33 bytes"))?;
            // A Session ID's key is X25519: only its Ed25519 key (P=) can sign for it.
            if account.kind == 0x05 {
                return Err(refuse(
                    MonitorError::BadPubkey,
                    "05 accounts must be given as P= (Ed25519 pubkey)",
                ));
            }
            (account, None)
        }
    };
    let ns =
        f.n.ok_or_else(|| refuse(MonitorError::BadNs, "Missing required namespaces n="))?;
    if ns.is_empty() {
        return Err(refuse(
            MonitorError::BadNs,
            "Namespaces n= must not be empty",
        ));
    }
    let mut namespaces = Vec::with_capacity(ns.len());
    for n in &ns {
        let n =
            i16::try_from(*n).map_err(|_| refuse(MonitorError::BadNs, "Namespace out of range"))?;
        if namespaces.last().is_some_and(|&last: &i16| last >= n) {
            return Err(refuse(
                MonitorError::BadNs,
                "Namespaces must be sorted and unique",
            ));
        }
        namespaces.push(n);
    }
    let want_data = match f.d {
        None | Some(0) => false,
        Some(1) => true,
        Some(_) => return Err(refuse(MonitorError::BadArgs, "d= must be 0 or 1")),
    };
    let t =
        f.t.ok_or_else(|| refuse(MonitorError::BadArgs, "Missing required timestamp t="))?;
    let now_s = ctx.now_ms.div_euclid(1000);
    if t < now_s.saturating_sub(MAX_SIG_AGE_S) || t > now_s.saturating_add(MAX_SIG_AHEAD_S) {
        return Err(refuse(
            MonitorError::BadTs,
            "Timestamp t= is too old or too far ahead",
        ));
    }
    let signature: [u8; 64] =
        f.s.ok_or_else(|| refuse(MonitorError::BadArgs, "Missing required signature s="))?
            .try_into()
            .map_err(|_| refuse(MonitorError::BadArgs, "Signature s= must be 64 bytes"))?;
    let subaccount = match (f.sub_sig, f.token) {
        (None, None) => None,
        (Some(sig), Some(token)) => {
            let sig: [u8; 64] = sig
                .try_into()
                .map_err(|_| refuse(MonitorError::BadArgs, "S= must be 64 bytes"))?;
            let token: [u8; 36] = token
                .try_into()
                .map_err(|_| refuse(MonitorError::BadArgs, "T= must be 36 bytes"))?;
            Some(SignedSubaccount {
                token: SubaccountToken(token),
                sig,
            })
        }
        _ => {
            return Err(refuse(
                MonitorError::BadArgs,
                "S= and T= must be given together",
            ));
        }
    };
    let msg = signed_message(&account, t, want_data, &namespaces);
    let auth = RequestAuth {
        pubkey_ed25519: ed_for_05,
        subaccount,
        signature,
    };
    let revoked = |tok: &SubaccountToken| ctx.store.is_revoked(&account, &tok.0).unwrap_or(true);
    verify_request(&account, &auth, &msg, Access::READ, revoked)
        .map_err(|_| refuse(MonitorError::BadSig, "Signature verification failed"))?;
    let ours = ctx.membership.swarm_of(&ctx.me);
    match ctx.membership.swarm_for(&account) {
        Some(id) if Some(id) == ours && id != SwarmId::UNASSIGNED => {}
        _ => {
            return Err(refuse(
                MonitorError::WrongSwarm,
                "Account is not stored by this node's swarm",
            ));
        }
    }
    Ok(Subscription {
        account,
        namespaces: namespaces.into_iter().collect(),
        want_data,
    })
}

/// A `monitor` body: one dict (answered with one dict) or a list of dicts (answered with a
/// list). The granted subscriptions come back for the caller to install.
pub fn handle(ctx: &MonitorContext<'_>, body: &[u8]) -> (Vec<u8>, Vec<Subscription>) {
    let invalid = || {
        let mut out = Vec::new();
        error_dict(
            &mut out,
            MonitorError::BadArgs,
            "Invalid arguments: monitor request takes a single bencoded dict or list parameter",
        );
        (out, Vec::new())
    };
    let Ok(v) = bencode::Value::decode(body, Limits::DEFAULT) else {
        return invalid();
    };
    let mut granted = Vec::new();
    let mut out = Vec::new();
    let mut one = |entry: &bencode::Value<'_>, out: &mut Vec<u8>| match entry {
        bencode::Value::Dict(e) => match check_entry(ctx, e) {
            Ok(sub) => {
                granted.push(sub);
                out.extend_from_slice(b"d7:successi1ee");
            }
            Err((code, msg)) => error_dict(out, code, &msg),
        },
        _ => error_dict(
            out,
            MonitorError::BadArgs,
            "Invalid arguments: list entries must be dicts",
        ),
    };
    match &v {
        bencode::Value::Dict(_) => one(&v, &mut out),
        bencode::Value::List(items) if items.len() <= MAX_ENTRIES => {
            bencode::put_list(&mut out);
            for i in items {
                one(i, &mut out);
            }
            bencode::put_end(&mut out);
        }
        _ => return invalid(),
    }
    (out, granted)
}

fn error_dict(out: &mut Vec<u8>, code: MonitorError, msg: &str) {
    bencode::put_dict(out);
    bencode::put_bytes(out, b"errcode");
    bencode::put_int(out, code as i64);
    bencode::put_bytes(out, b"error");
    bencode::put_bytes(out, msg.as_bytes());
    bencode::put_end(out);
}

/// The `notify` body: `{"@": account, "h": hash, "n": namespace, "t": timestamp, "z": expiry,
/// ["~": data]}`, keys in this (bencode) order.
pub fn notify_body(m: &Message, with_data: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(120 + if with_data { m.data.len() } else { 0 });
    bencode::put_dict(&mut out);
    bencode::put_bytes(&mut out, b"@");
    bencode::put_bytes(&mut out, &m.account.to_bytes());
    bencode::put_bytes(&mut out, b"h");
    bencode::put_bytes(&mut out, m.hash.as_bytes());
    bencode::put_bytes(&mut out, b"n");
    bencode::put_int(&mut out, i64::from(m.namespace.0));
    bencode::put_bytes(&mut out, b"t");
    bencode::put_int(&mut out, m.timestamp_ms);
    bencode::put_bytes(&mut out, b"z");
    bencode::put_int(&mut out, m.expiry_ms);
    if with_data {
        bencode::put_bytes(&mut out, b"~");
        bencode::put_bytes(&mut out, &m.data);
    }
    bencode::put_end(&mut out);
    out
}

/// Where a connection's pushes go: its stream's outgoing queue and its command-id counter.
#[derive(Clone)]
pub struct PushTarget {
    /// Framed bytes for the stream's writer.
    pub queue: mpsc::Sender<Vec<u8>>,
    /// The server's own command ids on this stream (quic.md 4.3).
    pub next_rid: Arc<AtomicI64>,
}

struct Held {
    namespaces: BTreeSet<i16>,
    want_data: bool,
    expires_ms: i64,
}

struct Connection {
    target: PushTarget,
    subs: HashMap<[u8; 33], Held>,
}

#[derive(Default)]
struct Table {
    conns: HashMap<u64, Connection>,
    by_account: HashMap<[u8; 33], BTreeSet<u64>>,
}

/// Why subscriptions were not installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The connection would hold more than its limit.
    ConnectionFull,
    /// The node would hold more than its limit.
    NodeFull,
}

/// Every subscription of the node. Cheap to share (`Arc`).
pub struct Subscriptions {
    table: Mutex<Table>,
    /// Subscriptions held; lets a store skip the lock when nobody subscribes.
    held: AtomicUsize,
    max_per_connection: usize,
    max_total: usize,
    clock: Clock,
    metrics: Metrics,
}

impl Subscriptions {
    /// An empty table with its limits.
    pub fn new(
        max_per_connection: usize,
        max_total: usize,
        clock: Clock,
        metrics: Metrics,
    ) -> Self {
        Subscriptions {
            table: Mutex::new(Table::default()),
            held: AtomicUsize::new(0),
            max_per_connection,
            max_total,
            clock,
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_held(&self, t: &Table) {
        let n: usize = t.conns.values().map(|c| c.subs.len()).sum();
        self.held.store(n, Ordering::Relaxed);
        self.metrics.monitor_subscriptions.set(n as i64);
    }

    /// Installs `subs` for connection `conn`: each (re)subscribed account gets these
    /// namespaces and data choice and a fresh 65-minute lifetime (entries for one account in
    /// one request merge); the connection's other accounts stay as they were.
    pub fn subscribe(
        &self,
        conn: u64,
        target: &PushTarget,
        subs: Vec<Subscription>,
    ) -> Result<(), Refused> {
        if subs.is_empty() {
            return Ok(());
        }
        let now = (self.clock)();
        let mut guard = self.lock();
        let t = &mut *guard;
        let total = self.held.load(Ordering::Relaxed);
        let entry = t.conns.entry(conn).or_insert_with(|| Connection {
            target: target.clone(),
            subs: HashMap::new(),
        });
        entry.subs.retain(|_, h| h.expires_ms > now);
        let mut merged: HashMap<[u8; 33], Held> = HashMap::new();
        for s in subs {
            let h = merged.entry(s.account.to_bytes()).or_insert(Held {
                namespaces: BTreeSet::new(),
                want_data: false,
                expires_ms: now + SUBSCRIPTION_TTL_MS,
            });
            h.namespaces.extend(s.namespaces);
            h.want_data |= s.want_data;
        }
        let added = merged
            .keys()
            .filter(|k| !entry.subs.contains_key(*k))
            .count();
        if entry.subs.len() + added > self.max_per_connection {
            return Err(Refused::ConnectionFull);
        }
        if total + added > self.max_total {
            return Err(Refused::NodeFull);
        }
        let keys: Vec<[u8; 33]> = merged.keys().copied().collect();
        entry.subs.extend(merged);
        for k in keys {
            t.by_account.entry(k).or_default().insert(conn);
        }
        self.set_held(t);
        Ok(())
    }

    /// Forgets a connection's subscriptions (it closed).
    pub fn remove_connection(&self, conn: u64) {
        let mut guard = self.lock();
        let t = &mut *guard;
        if let Some(c) = t.conns.remove(&conn) {
            for k in c.subs.keys() {
                if let Some(set) = t.by_account.get_mut(k) {
                    set.remove(&conn);
                    if set.is_empty() {
                        t.by_account.remove(k);
                    }
                }
            }
        }
        self.set_held(t);
    }

    /// Pushes `m` to every live subscription of its account and namespace: once per
    /// subscription (the store calls this only for new messages, never for duplicates).
    pub fn on_new_message(&self, m: &Message) {
        if self.held.load(Ordering::Relaxed) == 0 {
            return;
        }
        let account = m.account.to_bytes();
        let now = (self.clock)();
        let t = self.lock();
        let Some(conns) = t.by_account.get(&account) else {
            return;
        };
        // Encoded at most twice (with and without the body), whatever the subscriber count.
        let mut bodies: [Option<Vec<u8>>; 2] = [None, None];
        for id in conns {
            let Some(c) = t.conns.get(id) else { continue };
            let Some(h) = c.subs.get(&account) else {
                continue;
            };
            if h.expires_ms <= now || !h.namespaces.contains(&m.namespace.0) {
                continue;
            }
            let body =
                bodies[usize::from(h.want_data)].get_or_insert_with(|| notify_body(m, h.want_data));
            let frame = Frame::Command {
                rid: c.target.next_rid.fetch_add(1, Ordering::Relaxed),
                endpoint: b"notify".to_vec(),
                body: body.clone(),
            }
            .encode();
            let outcome = match frame.map(|f| c.target.queue.try_send(f)) {
                Ok(Ok(())) => PushOutcome::Sent,
                _ => PushOutcome::Dropped,
            };
            self.metrics
                .quic_pushes_total
                .with_label_values(&[outcome.label()])
                .inc();
        }
    }

    /// Subscriptions held now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}
