//! The checker: what the clients were told (acknowledged stores and deletes), and the
//! invariants of docs/simulation.md checked against every answer and at the end.
//!
//! Owns the bookkeeping of acknowledgements and the violation reports; knows nothing of
//! turmoil or of how answers were obtained. Statements (numbers as in issue 12):
//! - I1 durability: at the final check, every acknowledged store that was not deleted and
//!   has not expired is returned by every live member of its account's swarm — unless every
//!   node that acknowledged it lost its disk afterwards.
//! - I2 no resurrection: a message whose delete a node acknowledged is never returned by that
//!   node again (unless it lost its disk since the delete was sent), and at the final check by
//!   no node (unless every node that acknowledged the delete lost its disk since).
//! - I3 no expired message: no answer returns a message whose expiry is at or before the
//!   answering node's clock when the request was sent; and at the final check every member
//!   reports each message with an expiry the acknowledged `expire` requests allow: not past
//!   an acknowledged shortening, not short of an acknowledged extension (unless every member
//!   that applied it lost its disk since, as for a store).
//! - I4 convergence: at the final check (the last fault healed `CONVERGE` before), every
//!   live member of a swarm returns the same set of unexpired messages of each account.
//! - I6 paging: a full `last_hash` paging of one node never returns a message twice.
//! - I7 revocation: a member that acknowledged a `revoke_subaccount` refuses the token (401)
//!   from then on, until an `unrevoke_subaccount` with a later timestamp (unless it lost its
//!   disk since the request was sent); at the final check every live member of the account's
//!   swarm answers as the latest acknowledged of the two says, unless every node that
//!   acknowledged it lost its disk since.
//!
//! `delete_all` and `delete_before` count per member: the hashes a member's answer lists as
//! deleted are its deletes (I2). An acknowledged store they cover that no answer listed may
//! still be deleted by a member's late retry: it leaves I1 (but not I4).

use std::collections::{BTreeMap, BTreeSet};

/// Messages expiring within this margin of the final check are left out of I1/I4: whether a
/// node still shows one depends on which side of its expiry the read falls.
pub const EXPIRY_MARGIN_MS: i64 = 30_000;

/// An acknowledged store.
pub struct Acked {
    /// Index of the account.
    pub account: usize,
    /// The earliest expiry the message may have: the store's, then moved by each `expire`
    /// in order (an acknowledged shortening lowers it, an acknowledged extension raises it, an
    /// unanswered shortening may have lowered it).
    pub expiry_ms: i64,
    /// The latest expiry it may have (an unanswered extension may have raised it).
    pub expiry_hi_ms: i64,
    /// Simulated ms of the acknowledgement.
    pub at_ms: i64,
    /// The store's timestamp (true clock, ms since the epoch): what `delete_before` compares.
    pub ts_ms: i64,
    /// Nodes (indexes) whose entry in the answer acknowledged it.
    pub holders: Vec<usize>,
    /// The latest entry-node clock reading at which an `expire` of it was sent (`None`
    /// before the first).
    pub last_expire_stamp_ms: Option<i64>,
    /// The latest acknowledged extension (its floor lowered by the shortenings after it).
    pub extension: Option<Extension>,
    /// The latest acknowledged shortening (its ceiling raised by the extensions after it).
    pub shortening: Option<Shortening>,
}

/// An acknowledged extension and who applied it: only those members hold it until it spreads
/// (the others answer without holding the message — one whose clock already expired it, say),
/// so it may be lost with their disks, as a store may.
pub struct Extension {
    /// The earliest expiry the message had before it.
    pub lo_before_ms: i64,
    /// The members whose answer listed the message as updated or unchanged.
    pub appliers: Vec<usize>,
    /// Simulated ms of the request.
    pub at_ms: i64,
}

/// The latest (un)revocation of an account's subaccount the client sent.
pub struct Revocation {
    /// Revoked (or else unrevoked).
    pub revoked: bool,
    /// Whether the request got an answer (200); without one, members may be on either side and
    /// I7 waits for the next request.
    pub acked: bool,
    /// node → simulated ms of the request and of its answer, for each acknowledging member.
    pub by: BTreeMap<usize, (i64, i64)>,
}

/// An acknowledged shortening and who applied it: the counterpart of [`Extension`].
pub struct Shortening {
    /// The latest expiry the message could have had before it (raised by later extensions).
    pub hi_before_ms: i64,
    /// The members whose answer listed the message as updated or unchanged.
    pub appliers: Vec<usize>,
    /// Simulated ms of the request.
    pub at_ms: i64,
}

/// Everything the checker knows.
#[derive(Default)]
pub struct Model {
    /// hash → acknowledged store.
    pub acked: BTreeMap<String, Acked>,
    /// hash → (node → simulated ms of the delete's request and of its answer). The node
    /// acknowledged somewhere in between: a disk lost after the request may have taken the
    /// tombstone with it, and reads from the answer on must not return the message.
    pub deleted: BTreeMap<String, BTreeMap<usize, (i64, i64)>>,
    /// Stores and deletes whose outcome is unknown (no answer): excluded from I1 and I2.
    pub ambiguous: BTreeSet<String>,
    /// Stores the harness dropped but recorded as acknowledged (the checker's own test);
    /// never chosen for a delete, so only I1 can notice them.
    pub forged: BTreeSet<String>,
    /// Per node, the simulated times its disk was lost.
    pub disk_lost: BTreeMap<usize, Vec<i64>>,
    /// Messages an unanswered `expire` may have changed on some members only (the entry
    /// may have crashed before queuing its forwards): left out of I4's comparison.
    pub expiry_ambiguous: BTreeSet<String>,
    /// `expire` requests acknowledged as applied (for the sweep's table).
    pub expires_acked: u64,
    /// Acknowledged stores a `delete_all`/`delete_before` covered without any answer listing
    /// them (their holders had not answered, or the request got none): deleted or not,
    /// depending on retries. Left out of I1.
    pub covered: BTreeSet<String>,
    /// Per account, the latest `revoke_subaccount`/`unrevoke_subaccount` of its subaccount.
    pub revocations: BTreeMap<usize, Revocation>,
    /// Namespace-wide deletes and (un)revocations acknowledged (for the sweep's table).
    pub account_ops_acked: u64,
    /// What went wrong, one line each.
    pub violations: Vec<String>,
}

impl Model {
    /// Records a violation.
    pub fn violate(&mut self, at_ms: i64, what: String) {
        self.violations.push(format!("t={}ms {what}", at_ms));
    }

    /// Records an `expire` of `hash` to `expiry_ms` (`shorten`, or else extend) with its
    /// outcome: `acked` when the entry answered 200, false when nothing answered; `stamp_ms`
    /// is the entry node's clock when it was sent.
    ///
    /// Members apply `expire` requests in the order of their entry nodes' clocks (an entry
    /// orders a request after those it already holds for the message, but one cut off from
    /// the earlier request cannot). When this request's entry clock reads earlier than a
    /// previous request's (skewed clocks, less than a second of margin for the delivery),
    /// either order is a correct outcome: the bounds widen to cover both (the bounds before
    /// this request and after it).
    #[allow(clippy::too_many_arguments)]
    pub fn expire(
        &mut self,
        hash: &str,
        expiry_ms: i64,
        shorten: bool,
        acked: bool,
        stamp_ms: i64,
        appliers: Vec<usize>,
        at_ms: i64,
    ) {
        let Some(a) = self.acked.get_mut(hash) else {
            return;
        };
        match (shorten, acked) {
            (false, true) => {
                a.extension = Some(Extension {
                    lo_before_ms: a.expiry_ms,
                    appliers: appliers.clone(),
                    at_ms,
                });
            }
            // Had the extension been lost, the shortening would apply to the expiry before it.
            (true, _) => {
                if let Some(x) = &mut a.extension {
                    x.lo_before_ms = x.lo_before_ms.min(expiry_ms);
                }
            }
            (false, false) => {}
        }
        // The same for a shortening, the other way round (seed 400272: its only applier lost
        // its disk, and the forwards it had queued with it).
        match (shorten, acked) {
            (true, true) => {
                a.shortening = Some(Shortening {
                    hi_before_ms: a.expiry_hi_ms,
                    appliers,
                    at_ms,
                });
            }
            (false, _) => {
                if let Some(x) = &mut a.shortening {
                    x.hi_before_ms = x.hi_before_ms.max(expiry_ms);
                }
            }
            (true, false) => {}
        }
        self.expires_acked += u64::from(acked);
        let before = (a.expiry_ms, a.expiry_hi_ms);
        let inverted = a
            .last_expire_stamp_ms
            .is_some_and(|last| stamp_ms < last.saturating_add(1_000));
        a.last_expire_stamp_ms = Some(a.last_expire_stamp_ms.map_or(stamp_ms, |l| l.max(stamp_ms)));
        match (shorten, acked) {
            (true, true) => {
                a.expiry_ms = a.expiry_ms.min(expiry_ms);
                a.expiry_hi_ms = a.expiry_hi_ms.min(expiry_ms);
            }
            (true, false) => a.expiry_ms = a.expiry_ms.min(expiry_ms),
            (false, true) => {
                a.expiry_ms = a.expiry_ms.max(expiry_ms);
                a.expiry_hi_ms = a.expiry_hi_ms.max(expiry_ms);
            }
            (false, false) => a.expiry_hi_ms = a.expiry_hi_ms.max(expiry_ms),
        }
        if inverted {
            a.expiry_ms = a.expiry_ms.min(before.0);
            a.expiry_hi_ms = a.expiry_hi_ms.max(before.1);
        }
        if !acked {
            self.expiry_ambiguous.insert(hash.to_string());
        }
    }

    /// Records a `delete_all` (`before` = `None`) or `delete_before` of account `a` sent at
    /// `sent_ms` (simulated) with timestamp `ts_ms` (true clock): `answered` is `Some` (per
    /// acknowledging member, the hashes it listed) on a 200, `None` without an answer.
    pub fn delete_ns(
        &mut self,
        a: usize,
        ts_ms: i64,
        before: bool,
        sent_ms: i64,
        at_ms: i64,
        answered: Option<Vec<(usize, Vec<String>)>>,
    ) {
        // What the request covers: every acknowledged store of the account it could reach
        // (stores finish before the next request starts), by timestamp for `delete_before`.
        let covered: Vec<String> = self
            .acked
            .iter()
            .filter(|(_, x)| x.account == a && (!before || x.ts_ms <= ts_ms))
            .map(|(h, _)| h.clone())
            .collect();
        let Some(by) = answered else {
            self.covered.extend(covered);
            return;
        };
        self.account_ops_acked += 1;
        let mut listed = BTreeSet::new();
        for (n, hashes) in by {
            for h in hashes {
                self.deleted
                    .entry(h.clone())
                    .or_default()
                    .entry(n)
                    .or_insert((sent_ms, at_ms));
                listed.insert(h);
            }
        }
        self.covered
            .extend(covered.into_iter().filter(|h| !listed.contains(h)));
    }

    /// Records a `revoke_subaccount` (`revoked`) or `unrevoke_subaccount` of account `a`'s
    /// subaccount: `by` the acknowledging members on a 200, `None` without an answer. A
    /// refusal (4xx) changes nothing and is not recorded.
    pub fn revoke(
        &mut self,
        a: usize,
        revoked: bool,
        sent_ms: i64,
        at_ms: i64,
        by: Option<Vec<usize>>,
    ) {
        self.account_ops_acked += u64::from(by.is_some());
        let acked = by.is_some();
        let by = by
            .unwrap_or_default()
            .into_iter()
            .map(|n| (n, (sent_ms, at_ms)))
            .collect();
        self.revocations
            .insert(a, Revocation { revoked, acked, by });
    }

    /// The answer `node` owes a subaccount read of account `a` sent at `sent_ms`: `Some(true)`
    /// refused, `Some(false)` admitted, `None` when either is allowed.
    fn owed(&self, node: usize, a: usize, sent_ms: i64) -> Option<bool> {
        let r = self.revocations.get(&a)?;
        let (req, answered) = r.by.get(&node)?;
        (r.acked && *answered < sent_ms && !self.lost_disk_since(node, *req)).then_some(r.revoked)
    }

    /// Checks a subaccount read of account `a` on `node` that got `status` (I7).
    pub fn check_subaccount_read(&mut self, node: usize, a: usize, sent_ms: i64, status: u16) {
        let refused = match status {
            200 => false,
            401 => true,
            _ => return,
        };
        if let Some(owed) = self.owed(node, a, sent_ms)
            && owed != refused
        {
            let what = if owed {
                "admitted the subaccount after acknowledging its revocation"
            } else {
                "refused the subaccount after acknowledging its unrevocation"
            };
            self.violate(sent_ms, format!("I7 revocation: n{node} {what} (a{a})"));
        }
    }

    /// The final check of I7 for account `a`: `answers` holds, per live member, the status of
    /// a subaccount read.
    pub fn check_final_subaccount(&mut self, a: usize, at_ms: i64, answers: &BTreeMap<usize, u16>) {
        let Some(r) = self.revocations.get(&a) else {
            return;
        };
        if !r.acked
            || r.by.is_empty()
            || r.by
                .iter()
                .all(|(n, (req, _))| self.lost_disk_since(*n, *req))
        {
            return;
        }
        let owed = r.revoked;
        let wrong: Vec<String> = answers
            .iter()
            .filter(|(_, s)| (**s == 401) != owed)
            .map(|(n, s)| format!("n{n}:{s}"))
            .collect();
        if !wrong.is_empty() {
            let what = if owed { "revoked" } else { "unrevoked" };
            self.violate(
                at_ms,
                format!(
                    "I7 revocation: a{a}'s subaccount is {what}, but members answer {}",
                    wrong.join(" ")
                ),
            );
        }
    }

    /// The earliest expiry `a` may have at the final check: its bound, or the one before its
    /// last extension if every member that applied the extension lost its disk since.
    fn floor(&self, a: &Acked) -> i64 {
        match &a.extension {
            Some(x)
                if !x.appliers.is_empty()
                    && x.appliers.iter().all(|n| self.lost_disk_since(*n, x.at_ms)) =>
            {
                x.lo_before_ms
            }
            _ => a.expiry_ms,
        }
    }

    /// The latest expiry `a` may have at the final check: its bound, or the one before its
    /// last shortening if every member that applied the shortening lost its disk since.
    fn ceiling(&self, a: &Acked) -> i64 {
        match &a.shortening {
            Some(x)
                if !x.appliers.is_empty()
                    && x.appliers.iter().all(|n| self.lost_disk_since(*n, x.at_ms)) =>
            {
                a.expiry_hi_ms.max(x.hi_before_ms)
            }
            _ => a.expiry_hi_ms,
        }
    }

    /// Whether node `n` lost its disk at or after `since_ms`.
    fn lost_disk_since(&self, n: usize, since_ms: i64) -> bool {
        self.disk_lost
            .get(&n)
            .is_some_and(|ts| ts.iter().any(|t| *t >= since_ms))
    }

    /// Whether every holder of a store lost its disk after acknowledging it (I1 exempts it).
    fn lost_with_disks(&self, a: &Acked) -> bool {
        !a.holders.is_empty() && a.holders.iter().all(|n| self.lost_disk_since(*n, a.at_ms))
    }

    /// Whether every node that acknowledged the delete of `hash` lost its disk since (its
    /// tombstone with it): then nothing remembers the delete, and I2 exempts it.
    fn delete_forgotten(&self, hash: &str) -> bool {
        self.deleted.get(hash).is_some_and(|by| {
            by.iter()
                .all(|(n, (sent, _))| self.lost_disk_since(*n, *sent))
        })
    }

    /// Checks one full paged read of `account` on `node`: I6 on the pages, I3 on each
    /// message, I2 against deletes this node acknowledged before `sent_ms`. `node_clock_ms`
    /// is the node's clock when the first page was asked.
    pub fn check_read(
        &mut self,
        node: usize,
        account: usize,
        sent_ms: i64,
        node_clock_ms: i64,
        hashes: &[(String, i64)],
    ) {
        let mut seen = BTreeSet::new();
        for (h, expiry) in hashes {
            let short = &h[..8.min(h.len())];
            if !seen.insert(h.clone()) {
                self.violate(
                    sent_ms,
                    format!("I6 paging: n{node} returned {short}… twice for a{account}"),
                );
            }
            if *expiry <= node_clock_ms {
                self.violate(
                    sent_ms,
                    format!("I3 expired: n{node} returned {short}… (expiry {expiry}, its clock {node_clock_ms})"),
                );
            }
            if let Some((del_sent, del_answered)) = self.deleted.get(h).and_then(|d| d.get(&node))
                && *del_answered < sent_ms
                && !self.lost_disk_since(node, *del_sent)
            {
                self.violate(
                    sent_ms,
                    format!(
                        "I2 resurrected: n{node} returned {short}… after acknowledging its delete"
                    ),
                );
            }
        }
    }

    /// The final check of I1, I2 and I4 for one account: `reads` holds, per live member of
    /// its swarm, the hashes and expiries that member returned; `clock_ms` is the true time.
    pub fn check_final(
        &mut self,
        account: usize,
        clock_ms: i64,
        at_ms: i64,
        reads: &BTreeMap<usize, Vec<(String, i64)>>,
    ) {
        let live = |e: i64| e > clock_ms + EXPIRY_MARGIN_MS;
        let sets: BTreeMap<usize, BTreeSet<&str>> = reads
            .iter()
            .map(|(n, r)| {
                let s = r
                    .iter()
                    .filter(|(_, e)| live(*e))
                    .map(|(h, _)| h.as_str())
                    .collect();
                (*n, s)
            })
            .collect();
        let mut found = Vec::new();
        for (n, r) in reads {
            for (h, e) in r {
                let Some(a) = self.acked.get(h) else { continue };
                if self.lost_with_disks(a) || self.deleted.contains_key(h) {
                    continue;
                }
                if *e > self.ceiling(a) {
                    found.push(format!(
                        "I3 expiry: n{n} reports {}… of a{account} expiring at {e}, after its acknowledged shortening to {}",
                        &h[..8],
                        a.expiry_hi_ms
                    ));
                } else if *e < self.floor(a) {
                    found.push(format!(
                        "I1 extension lost: n{n} reports {}… of a{account} expiring at {e}, before its acknowledged extension to {}",
                        &h[..8],
                        a.expiry_ms
                    ));
                }
            }
        }
        for (h, a) in &self.acked {
            if a.account != account || !live(self.floor(a)) || self.deleted.contains_key(h) {
                continue;
            }
            if self.ambiguous.contains(h) || self.covered.contains(h) || self.lost_with_disks(a) {
                continue;
            }
            for (n, s) in &sets {
                if !s.contains(h.as_str()) {
                    found.push(format!(
                        "I1 lost: acknowledged {}… of a{account} missing on n{n}",
                        &h[..8]
                    ));
                }
            }
        }
        for h in self.deleted.keys() {
            if self.ambiguous.contains(h) || self.delete_forgotten(h) {
                continue;
            }
            for (n, s) in &sets {
                if s.contains(h.as_str()) {
                    found.push(format!(
                        "I2 resurrected: deleted {}… of a{account} on n{n}",
                        &h[..8]
                    ));
                }
            }
        }
        // I4 leaves out what an unanswered `expire` may have changed on some members only.
        let compared: BTreeMap<usize, BTreeSet<&str>> = sets
            .iter()
            .map(|(n, s)| {
                let s = s
                    .iter()
                    .copied()
                    .filter(|h| !self.expiry_ambiguous.contains(*h))
                    .collect();
                (*n, s)
            })
            .collect();
        let mut all = compared.values();
        if let Some(first) = all.next()
            && all.any(|s| s != first)
        {
            let summary: Vec<String> = sets
                .iter()
                .map(|(n, s)| format!("n{n}:{}", s.len()))
                .collect();
            found.push(format!(
                "I4 not converged: a{account} members differ ({})",
                summary.join(" ")
            ));
        }
        for f in found {
            self.violate(at_ms, f);
        }
    }
}
