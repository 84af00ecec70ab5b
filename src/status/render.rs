//! Text renderings of a `StatusReport`: the systemd STATUS line and `snode status`'s page.
//!
//! Owns wording and number formats only (pure). The STATUS line keeps the original's shape
//! (`v2.8.0; sw=abcd…789(n=7); 1234 msgs (47.3MB) for 567 users; reqs(S/R/O/P): a/b/c/d
//! (last 62.3min)`), because operators parse it (storage-server.md 4.3, issue #470), and adds
//! what snode knows beyond it at the end.

use std::fmt::Write as _;

use super::{PeerStatus, StatusReport};

/// Bytes with one decimal in powers of 1000 (`47.3MB`), as the original's STATUS line.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if n < 1000 {
        return format!("{n}B");
    }
    let mut v = n as f64 / 1000.0;
    let mut unit = 0;
    while v >= 999.95 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1}{}", UNITS[unit])
}

/// A span in minutes with one decimal (`62.3min`).
pub fn minutes(ms: i64) -> String {
    format!("{:.1}min", ms.max(0) as f64 / 60_000.0)
}

/// A coarse span (`8s`, `5m`, `3h 12m`, `2d 3h`).
pub fn span(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d {}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// The original's abbreviated swarm id: first four and last three hex digits.
pub fn short_swarm(id: &str) -> String {
    match (id.get(..4), id.get(id.len().saturating_sub(3)..)) {
        (Some(a), Some(b)) if id.len() > 7 => format!("{a}…{b}"),
        _ => id.to_string(),
    }
}

fn short_key(hex: &str) -> &str {
    hex.get(..8).unwrap_or(hex)
}

/// The systemd `STATUS=` line, refreshed every few seconds.
pub fn status_line(r: &StatusReport) -> String {
    let mut out = String::new();
    if let Some(why) = &r.not_ready {
        let _ = write!(out, "NOT READY ({why}); ");
    }
    let _ = write!(out, "v{} (snode {}); ", r.protocol_version, r.version);
    match &r.swarm {
        Some(s) => {
            let _ = write!(out, "sw={}(n={}); ", short_swarm(&s.id), s.members);
        }
        None => out.push_str("sw=none; "),
    }
    let st = &r.store;
    let q = &r.requests;
    let _ = write!(
        out,
        "{} msgs ({}) for {} users; reqs(S/R/O/P): {}/{}/{}/{} (last {}); disk {:.1}% of cap",
        st.messages,
        bytes(st.data_bytes),
        st.accounts,
        q.recent.store,
        q.recent.retrieve,
        q.recent.onion,
        q.recent.proxy,
        minutes(q.recent_span_ms),
        st.used_percent(),
    );
    let rc = &r.reachability;
    if rc.tested > 0 {
        let _ = write!(out, "; peers {}/{} reachable", rc.reachable, rc.tested);
    }
    if rc.reached_by_peers == Some(false) {
        out.push_str("; NOT TESTED BY PEERS for 2+ min");
    }
    if r.replication.retry_queue > 0 {
        let _ = write!(out, "; retry queue {}", r.replication.retry_queue);
    }
    out
}

fn peer_line(p: &PeerStatus, now_ms: i64) -> String {
    let what = match &p.last_test {
        None => "not tested yet".to_string(),
        Some(o) if o.reachable => {
            format!("reachable, tested {} ago", span(now_ms - o.last_test_ms))
        }
        Some(o) => {
            let mut s = format!(
                "UNREACHABLE: {} failed test(s) in a row, last {} ago",
                o.consecutive_failures,
                span(now_ms - o.last_test_ms)
            );
            match o.last_success_ms {
                Some(t) => {
                    let _ = write!(s, "; last passed {} ago", span(now_ms - t));
                }
                None => s.push_str("; never passed"),
            }
            s
        }
    };
    format!(
        "  {}…  {:<21}  {what}\n",
        short_key(&p.pubkey_ed25519),
        p.address
    )
}

/// The page `snode status` prints.
pub fn text(r: &StatusReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "snode {} (protocol {}), up {}",
        r.version,
        r.protocol_version,
        span(r.uptime_ms)
    );
    let _ = writeln!(o, "node         {}", r.pubkey_ed25519);
    match &r.not_ready {
        None => o.push_str("state        ready\n"),
        Some(why) => {
            let _ = writeln!(o, "state        NOT READY: {why}");
        }
    }
    let n = &r.network;
    if n.directory {
        let _ = writeln!(
            o,
            "network      directory height {}: {} nodes in {} swarms; this node is {}",
            n.height,
            n.nodes,
            n.swarms,
            if n.registered {
                "registered"
            } else {
                "NOT registered (yet)"
            }
        );
    } else {
        o.push_str("network      one-node network (no directory): this node owns every account\n");
    }
    match &r.swarm {
        Some(s) => {
            let _ = writeln!(o, "swarm        {} ({} members)", s.id, s.members);
        }
        None => o.push_str("swarm        none\n"),
    }
    let rc = &r.reachability;
    if let (Some(s), true) = (&r.swarm, n.directory) {
        let tested: Vec<_> = s.peers.iter().filter_map(|p| p.last_test).collect();
        let ok = tested.iter().filter(|t| t.reachable).count();
        let _ = writeln!(
            o,
            "I reach      {ok} of {} swarm peers ({} not tested yet); {} of {} nodes tested",
            s.peers.len(),
            s.peers.len() - tested.len(),
            rc.reachable,
            rc.tested
        );
    }
    let last = rc
        .ping_tests
        .last_ms
        .max(rc.peer_pings.last_ms)
        .max(rc.quic_pings.last_ms);
    let when = last.map_or("never".to_string(), |t| {
        format!("{} ago", span(r.now_ms - t))
    });
    let verdict = match rc.reached_by_peers {
        Some(true) => "yes",
        Some(false) => {
            "NO: no peer tested this node for 2 minutes; check that its HTTPS port is \
                        reachable from the internet at the address the directory lists"
        }
        None if n.directory => "too early to tell",
        None => "not applicable (no directory)",
    };
    let _ = writeln!(
        o,
        "reach me     {verdict}; last test {when} ({} ping tests, {} peer pings)",
        rc.ping_tests.count, rc.peer_pings.count
    );
    let rp = &r.replication;
    let _ = writeln!(
        o,
        "replication  {} forwards queued for retry; {} forwards failed at first since start",
        rp.retry_queue, rp.forwards_failed
    );
    let _ = writeln!(
        o,
        "hand-off     {} messages handed to their new owners; {} batches not yet acknowledged",
        rp.handoff_messages, rp.handoff_batches_failed
    );
    let st = &r.store;
    let _ = writeln!(
        o,
        "store        {} msgs ({}) for {} users; disk {} of {} cap ({:.1}%)",
        st.messages,
        bytes(st.data_bytes),
        st.accounts,
        bytes(st.disk_bytes),
        bytes(st.max_bytes),
        st.used_percent()
    );
    let q = &r.requests;
    let _ = writeln!(
        o,
        "requests     last {}: {} store, {} retrieve, {} onion, {} proxy; {} rate-limited since start",
        minutes(q.recent_span_ms),
        q.recent.store,
        q.recent.retrieve,
        q.recent.onion,
        q.recent.proxy,
        q.rate_limited
    );
    if let Some(s) = &r.swarm
        && !s.peers.is_empty()
    {
        o.push_str("swarm peers\n");
        for p in &s.peers {
            o.push_str(&peer_line(p, r.now_ms));
        }
    }
    o
}
