//! The client workload of one history: stores, full paged reads and deletes across many
//! accounts (with `account_ops`: also `delete_all`, `delete_before`, reads by a subaccount and
//! its revocations), sent one at a time to a member of each account's swarm, then the final
//! check.
//!
//! Owns what the client does and when (drawn from its own seeded stream); records every
//! answer in the model and the trace. Must not touch nodes or links: only RPC over the
//! simulated network.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Duration;

use rand::Rng as _;
use rand_chacha::ChaCha8Rng;

use super::Shared;
use super::model::Acked;
use super::rpc::{self, Account};

/// Runs the workload until `work_until_ms`, waits until `check_at_ms`, then checks.
pub async fn run(
    w: Rc<Shared>,
    mut rng: ChaCha8Rng,
    work_until_ms: i64,
    check_at_ms: i64,
    sabotage: bool,
    expiries: bool,
    account_ops: bool,
) {
    let mut stores = 0u64;
    while w.elapsed_ms() < work_until_ms {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(20..400))).await;
        let a = rng.gen_range(0..w.accounts.len());
        let members = w.members_of(a);
        if members.is_empty() {
            w.trace(format!("a{a}: no swarm listed"));
            continue;
        }
        let entry = members[rng.gen_range(0..members.len())];
        let r: f64 = rng.r#gen();
        if r < 0.55 || w.live_hashes(a).is_empty() {
            stores += 1;
            let forge = sabotage && stores == 5;
            store(&w, &mut rng, a, entry, forge).await;
        } else if r < 0.8 {
            read(&w, a, entry).await;
        } else if account_ops && r < 0.84 {
            subaccount_read(&w, a, entry).await;
        } else if account_ops && r < 0.855 {
            revoke(&w, &mut rng, a, entry).await;
        } else if account_ops && r < 0.87 {
            delete_ns(&w, &mut rng, a, entry).await;
        } else if expiries && r >= 0.9 {
            let hashes = w.live_hashes(a);
            let h = hashes[rng.gen_range(0..hashes.len())].clone();
            expire(&w, &mut rng, a, entry, h).await;
        } else {
            let hashes = w.live_hashes(a);
            let h = hashes[rng.gen_range(0..hashes.len())].clone();
            delete(&w, a, entry, h).await;
        }
    }
    let wait = check_at_ms - w.elapsed_ms();
    if wait > 0 {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    w.trace("final check".into());
    final_check(&w).await;
}

async fn store(w: &Shared, rng: &mut ChaCha8Rng, a: usize, entry: usize, forge: bool) {
    let len = rng.gen_range(16..200);
    let data: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
    // Mostly long-lived messages; some expire during the history (I3 and the sweep).
    let ttl_ms: i64 = if rng.gen_bool(0.8) {
        3_600_000
    } else {
        rng.gen_range(5_000..120_000)
    };
    let now = w.now_ms();
    let acct: &Account = &w.accounts[a];
    let hash = snode::message::message_hash(&acct.id(), snode::message::Namespace(0), &data);
    let short = hash[..8].to_string();
    let at = w.elapsed_ms();
    if forge {
        // Sabotage (the checker's own test): the harness drops the store on the floor but
        // records it as acknowledged by the whole swarm. I1 must report it.
        w.trace(format!(
            "store a{a} -> n{entry}: DROPPED BY HARNESS {short}"
        ));
        let holders = w.members_of(a);
        // Long-lived and never deleted, so nothing but I1 can account for it.
        let ttl_ms = 3_600_000;
        w.model.borrow_mut().forged.insert(hash.clone());
        w.model.borrow_mut().acked.insert(
            hash,
            Acked {
                account: a,
                expiry_ms: now + ttl_ms,
                expiry_hi_ms: now + ttl_ms,
                at_ms: at,
                ts_ms: now,
                holders,
                last_expire_stamp_ms: None,
                extension: None,
                shortening: None,
            },
        );
        return;
    }
    let answer = rpc::store(w.addrs[entry], acct, &data, now, ttl_ms).await;
    match answer {
        Some((200, v)) => {
            let holders = acked_nodes(w, &v);
            w.trace(format!(
                "store a{a} -> n{entry}: 200 {short} acked by {holders:?}"
            ));
            w.model.borrow_mut().acked.insert(
                hash,
                Acked {
                    account: a,
                    expiry_ms: now + ttl_ms,
                    expiry_hi_ms: now + ttl_ms,
                    at_ms: at,
                    ts_ms: now,
                    holders,
                    last_expire_stamp_ms: None,
                    extension: None,
                    shortening: None,
                },
            );
        }
        other => {
            let status = other.map_or("no answer".to_string(), |(s, _)| s.to_string());
            w.trace(format!("store a{a} -> n{entry}: {status} {short}"));
            w.model.borrow_mut().ambiguous.insert(hash);
        }
    }
}

/// Every page of `a` on `node`; `None` when a page got no 200.
async fn read_all(w: &Shared, a: usize, node: usize) -> Option<Vec<(String, i64)>> {
    let mut out: Vec<(String, i64)> = Vec::new();
    let mut last: Option<String> = None;
    for _ in 0..10_000 {
        match rpc::retrieve_page(w.addrs[node], &w.accounts[a], last.as_deref(), w.now_ms()).await {
            Some((200, v)) => {
                let (msgs, more) = rpc::page(&v);
                let empty = msgs.is_empty();
                out.extend(msgs.into_iter().map(|m| (m.hash, m.expiry_ms)));
                if !more || empty {
                    return Some(out);
                }
                last = out.last().map(|(h, _)| h.clone());
            }
            _ => return None,
        }
    }
    None
}

async fn read(w: &Shared, a: usize, node: usize) {
    let sent = w.elapsed_ms();
    let clock = w.node_clock_ms(node);
    match read_all(w, a, node).await {
        Some(hashes) => {
            w.trace(format!("read a{a} <- n{node}: {} messages", hashes.len()));
            w.model
                .borrow_mut()
                .check_read(node, a, sent, clock, &hashes);
        }
        None => w.trace(format!("read a{a} <- n{node}: failed")),
    }
}

/// The indexes of the nodes whose signed entries an answer carries.
fn acked_nodes(w: &Shared, v: &serde_json::Value) -> Vec<usize> {
    rpc::acknowledged_by(v)
        .iter()
        .filter_map(|k| w.index.get(k).copied())
        .collect()
}

async fn delete(w: &Shared, a: usize, entry: usize, hash: String) {
    let short = hash[..8].to_string();
    let sent = w.elapsed_ms();
    let answer = rpc::delete(w.addrs[entry], &w.accounts[a], std::slice::from_ref(&hash)).await;
    let at = w.elapsed_ms();
    match answer {
        Some((200, v)) => {
            let by = acked_nodes(w, &v);
            w.trace(format!(
                "delete a{a} {short} -> n{entry}: 200 acked by {by:?}"
            ));
            let mut m = w.model.borrow_mut();
            let d = m.deleted.entry(hash).or_default();
            for n in by {
                d.entry(n).or_insert((sent, at));
            }
        }
        other => {
            let status = other.map_or("no answer".to_string(), |(s, _)| s.to_string());
            w.trace(format!("delete a{a} {short} -> n{entry}: {status}"));
            w.model.borrow_mut().ambiguous.insert(hash);
        }
    }
}

/// Shortens a message to 20 s – its expiry (when it has that long left) or extends it by
/// 10–60 min (well past the 1 % a node may skip as trivial).
async fn expire(w: &Shared, rng: &mut ChaCha8Rng, a: usize, entry: usize, hash: String) {
    let now = w.now_ms();
    let (lo, hi) = {
        let m = w.model.borrow();
        let x = &m.acked[&hash];
        (x.expiry_ms, x.expiry_hi_ms)
    };
    let shorten = lo > now + 40_000 && rng.gen_bool(0.5);
    let expiry = if shorten {
        rng.gen_range(now + 20_000..lo)
    } else {
        hi + rng.gen_range(600_000..3_600_000)
    };
    let mode = if shorten { "shorten" } else { "extend" };
    let short = hash[..8].to_string();
    // The entry stamps the request with its clock on arrival, a few ms later at most.
    let stamp = w.node_clock_ms(entry);
    let sent = w.elapsed_ms();
    let answer = rpc::expire(w.addrs[entry], &w.accounts[a], &hash, expiry, shorten).await;
    let rel = expiry - now;
    match answer {
        Some((200, v)) => {
            let by = acked_nodes(w, &v);
            // A member without the message answers too, with nothing updated: only a member
            // that holds it makes the change the client's to rely on. Otherwise the members
            // that did not answer may still apply it from a retry: an unknown outcome.
            let appliers: Vec<usize> = rpc::expire_applied_by(&v, &hash)
                .iter()
                .filter_map(|k| w.index.get(k).copied())
                .collect();
            let applied = !appliers.is_empty();
            let what = if applied {
                "applied"
            } else {
                "applied by none"
            };
            w.trace(format!(
                "expire a{a} {short} {mode} to now+{rel} ms -> n{entry}: 200 acked by {by:?}, {what}"
            ));
            w.model
                .borrow_mut()
                .expire(&hash, expiry, shorten, applied, stamp, appliers, sent);
        }
        Some((status, _)) => {
            // Refused (e.g. 421 during churn): nothing changed anywhere.
            w.trace(format!(
                "expire a{a} {short} {mode} to now+{rel} ms -> n{entry}: {status}"
            ));
        }
        None => {
            w.trace(format!(
                "expire a{a} {short} {mode} to now+{rel} ms -> n{entry}: no answer"
            ));
            w.model
                .borrow_mut()
                .expire(&hash, expiry, shorten, false, stamp, Vec::new(), sent);
        }
    }
}

/// One page read by the account's subaccount (I7 on the status; I2, I3 on what it returns).
async fn subaccount_read(w: &Shared, a: usize, node: usize) {
    let sent = w.elapsed_ms();
    let clock = w.node_clock_ms(node);
    match rpc::retrieve_as_subaccount(w.addrs[node], &w.accounts[a], w.now_ms()).await {
        Some((status, v)) => {
            w.trace(format!("subaccount read a{a} <- n{node}: {status}"));
            let mut m = w.model.borrow_mut();
            m.check_subaccount_read(node, a, sent, status);
            if status == 200 {
                let page: Vec<(String, i64)> = rpc::page(&v)
                    .0
                    .into_iter()
                    .map(|s| (s.hash, s.expiry_ms))
                    .collect();
                m.check_read(node, a, sent, clock, &page);
            }
        }
        None => w.trace(format!("subaccount read a{a} <- n{node}: no answer")),
    }
}

/// Revokes the account's subaccount, or unrevokes it (after a revocation, usually).
async fn revoke(w: &Shared, rng: &mut ChaCha8Rng, a: usize, entry: usize) {
    let revoked = w
        .model
        .borrow()
        .revocations
        .get(&a)
        .is_some_and(|r| r.revoked);
    let revoke = if revoked {
        rng.gen_bool(0.2)
    } else {
        rng.gen_bool(0.8)
    };
    let what = if revoke { "revoke" } else { "unrevoke" };
    let sent = w.elapsed_ms();
    let answer = rpc::revoke(w.addrs[entry], &w.accounts[a], revoke, w.now_ms()).await;
    let at = w.elapsed_ms();
    match answer {
        Some((200, v)) => {
            let by = acked_nodes(w, &v);
            w.trace(format!("{what} a{a} -> n{entry}: 200 acked by {by:?}"));
            w.model.borrow_mut().revoke(a, revoke, sent, at, Some(by));
        }
        Some((status, _)) => w.trace(format!("{what} a{a} -> n{entry}: {status}")),
        None => {
            w.trace(format!("{what} a{a} -> n{entry}: no answer"));
            w.model.borrow_mut().revoke(a, revoke, sent, at, None);
        }
    }
}

/// `delete_all`, or `delete_before` a time up to 20 s back, of namespace 0 or of all.
async fn delete_ns(w: &Shared, rng: &mut ChaCha8Rng, a: usize, entry: usize) {
    let before = rng.gen_bool(0.5);
    let all = rng.gen_bool(0.5);
    let now = w.now_ms();
    let ts = if before {
        now - rng.gen_range(0..20_000)
    } else {
        now
    };
    let what = match (before, all) {
        (false, false) => "delete_all ns 0".to_string(),
        (false, true) => "delete_all all".to_string(),
        (true, ns) => format!(
            "delete_before now-{} ms {}",
            now - ts,
            if ns { "all" } else { "ns 0" }
        ),
    };
    let sent = w.elapsed_ms();
    let answer = rpc::delete_ns(w.addrs[entry], &w.accounts[a], all, ts, before).await;
    let at = w.elapsed_ms();
    match answer {
        Some((200, v)) => {
            let by: Vec<(usize, Vec<String>)> = rpc::deleted_by(&v)
                .into_iter()
                .filter_map(|(k, hs)| w.index.get(&k).map(|n| (*n, hs)))
                .collect();
            let counts: Vec<String> = by
                .iter()
                .map(|(n, hs)| format!("n{n}:{}", hs.len()))
                .collect();
            w.trace(format!(
                "{what} a{a} -> n{entry}: 200 deleted {}",
                counts.join(" ")
            ));
            w.model
                .borrow_mut()
                .delete_ns(a, ts, before, sent, at, Some(by));
        }
        Some((status, _)) => w.trace(format!("{what} a{a} -> n{entry}: {status}")),
        None => {
            w.trace(format!("{what} a{a} -> n{entry}: no answer"));
            w.model
                .borrow_mut()
                .delete_ns(a, ts, before, sent, at, None);
        }
    }
}

async fn final_check(w: &Shared) {
    for a in 0..w.accounts.len() {
        let mut reads = BTreeMap::new();
        let members = w.members_of(a);
        if members.is_empty() {
            let at = w.elapsed_ms();
            w.model.borrow_mut().violate(
                at,
                format!("I4 no swarm listed for a{a} at the final check"),
            );
        }
        for n in members {
            if !w.up.borrow()[n] {
                continue;
            }
            let sent = w.elapsed_ms();
            let clock = w.node_clock_ms(n);
            match read_all(w, a, n).await {
                Some(r) => {
                    w.model.borrow_mut().check_read(n, a, sent, clock, &r);
                    reads.insert(n, r);
                }
                None => {
                    let at = w.elapsed_ms();
                    w.model
                        .borrow_mut()
                        .violate(at, format!("I4 final read of a{a} on n{n} failed"));
                }
            }
        }
        let mut subaccount = BTreeMap::new();
        if w.model.borrow().revocations.contains_key(&a) {
            for n in w.members_of(a) {
                if !w.up.borrow()[n] {
                    continue;
                }
                if let Some((status, _)) =
                    rpc::retrieve_as_subaccount(w.addrs[n], &w.accounts[a], w.now_ms()).await
                {
                    subaccount.insert(n, status);
                }
            }
            let at = w.elapsed_ms();
            w.model
                .borrow_mut()
                .check_final_subaccount(a, at, &subaccount);
        }
        let summary: Vec<String> = reads
            .iter()
            .map(|(n, r)| format!("n{n}:{}", r.len()))
            .collect();
        w.trace(format!("final a{a}: {}", summary.join(" ")));
        let (now, at) = (w.now_ms(), w.elapsed_ms());
        w.model.borrow_mut().check_final(a, now, at, &reads);
    }
}
