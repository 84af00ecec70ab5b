//! Revoked subaccount tokens (`revoke_subaccount`, `unrevoke_subaccount`), at most 50 per
//! account, newest kept.
//!
//! Revocations live in their own column family keyed by account, independent of messages.
//! SS 2.8 hangs them off the `owners` row, which is deleted (cascading to its revocations)
//! when the account's last message is deleted or expires, and a revoke for an account with
//! no messages has no effect (storage-server.md 1.5): a revoked token silently regains
//! access. Here a revocation lasts until it is unrevoked or pushed out by 50 newer ones.
//! Must not read or write messages.

use super::StoreError;
use super::db::{CF_REVOCATIONS, Store};
use super::keys::{self, ACCOUNT_LEN, TOKEN_LEN};
use crate::message::{AccountId, MAX_REVOKED_PER_ACCOUNT};
use rocksdb::WriteBatch;
use std::collections::{BTreeMap, BTreeSet};

/// Unrevocation markers kept per account (newest first): enough to order every late retry
/// within the 30-day bound, bounded so an account cannot grow them without limit.
const MAX_UNREVOKED_MARKERS: usize = 4 * MAX_REVOKED_PER_ACCOUNT;
/// Markers older than this before the newest operation are dropped: forwards (and so late
/// retries) older than 30 days are refused (`api::peer`).
const MARKER_LIFETIME_MS: i64 = crate::message::TTL_MAXIMUM_PRIVATE_MS;

/// The last operation on one token: revoked or unrevoked, at the client's signed time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TokenState {
    at_ms: i64,
    revoked: bool,
}

impl TokenState {
    /// A revocation is 8 bytes (its time; also the old format); an unrevocation is `0x00`
    /// then its time.
    fn encode(self) -> Vec<u8> {
        let mut v = Vec::with_capacity(9);
        if !self.revoked {
            v.push(0);
        }
        v.extend_from_slice(&self.at_ms.to_be_bytes());
        v
    }

    fn decode(v: &[u8]) -> Option<TokenState> {
        match v.len() {
            8 => Some(TokenState {
                at_ms: i64::from_be_bytes(v.try_into().ok()?),
                revoked: true,
            }),
            9 if v[0] == 0 => Some(TokenState {
                at_ms: i64::from_be_bytes(v[1..].try_into().ok()?),
                revoked: false,
            }),
            _ => None,
        }
    }

    /// Whether an operation at `at_ms` (a revoke when `revoke`) overrides this state: the
    /// later signed time wins, whatever order the operations arrive in (a retry days late, or
    /// two forwards racing); on equal times the revocation wins, the safer way to be wrong.
    fn yields_to(self, at_ms: i64, revoke: bool) -> bool {
        at_ms > self.at_ms || (at_ms == self.at_ms && revoke && !self.revoked)
    }
}

/// One token's last (un)revocation, as pages list it and peers send it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct RevocationState {
    /// The account the token is for.
    pub account: AccountId,
    /// The subaccount token.
    pub token: [u8; TOKEN_LEN],
    /// The client's signed time of the operation.
    pub at_ms: i64,
    /// Revoked, or else unrevoked.
    pub revoked: bool,
}

impl Store {
    /// Revokes `tokens` for `account` as of the client's signed time `at_ms`, unless a later
    /// revoke or unrevoke of a token was already applied (last writer wins, so the order in
    /// which forwards and retries arrive does not matter); re-revoking refreshes the time.
    /// Then keeps only the newest [`MAX_REVOKED_PER_ACCOUNT`] revoked tokens; on equal times
    /// the tokens of this request win.
    pub fn revoke_subaccounts(
        &self,
        account: &AccountId,
        tokens: &[[u8; 36]],
        at_ms: i64,
    ) -> Result<(), StoreError> {
        self.apply_revocations(account, tokens, at_ms, true)
            .map(|_| ())
    }

    /// Unrevokes `tokens` as of `at_ms` (last writer wins, as [`Store::revoke_subaccounts`]);
    /// returns how many were revoked and no longer are. The unrevocation is remembered (up to
    /// 30 days), so an older revoke that arrives later does not undo it.
    pub fn unrevoke_subaccounts(
        &self,
        account: &AccountId,
        tokens: &[[u8; 36]],
        at_ms: i64,
    ) -> Result<usize, StoreError> {
        self.apply_revocations(account, tokens, at_ms, false)
    }

    fn apply_revocations(
        &self,
        account: &AccountId,
        tokens: &[[u8; 36]],
        at_ms: i64,
        revoke: bool,
    ) -> Result<usize, StoreError> {
        let state = TokenState {
            at_ms,
            revoked: revoke,
        };
        let states: Vec<_> = tokens.iter().map(|t| (*t, state)).collect();
        self.apply_states(account, &states, if revoke { "revoke" } else { "unrevoke" })
            .map(|(unrevoked, _)| unrevoked)
    }

    /// Applies `states` to `account`'s tokens, each unless a later operation on its token
    /// is already here, then bounds what is kept; returns (tokens no longer revoked, states
    /// applied).
    fn apply_states(
        &self,
        account: &AccountId,
        states: &[([u8; TOKEN_LEN], TokenState)],
        op: &'static str,
    ) -> Result<(usize, usize), StoreError> {
        let _g = self.inner.lock(account);
        let mut all = self.revocations_of(account)?;
        let fresh: BTreeSet<[u8; TOKEN_LEN]> = states.iter().map(|(t, _)| *t).collect();
        let cf = self.inner.cf(CF_REVOCATIONS)?;
        let mut batch = WriteBatch::default();
        let (mut changed, mut applied) = (0, 0);
        for (t, state) in states {
            let prior = all.get(t).copied();
            if prior.is_some_and(|p| !p.yields_to(state.at_ms, state.revoked)) {
                continue;
            }
            if !state.revoked && prior.is_some_and(|p| p.revoked) {
                changed += 1;
            }
            applied += 1;
            batch.put_cf(cf, keys::revocation_key(account, t), state.encode());
            all.insert(*t, *state);
        }
        if applied == 0 {
            return Ok((0, 0));
        }
        let at_ms = states.iter().map(|(_, st)| st.at_ms).max().unwrap_or(0);
        // Revoked tokens: the newest 50; then this request's; then token order.
        let mut revoked: Vec<_> = all.iter().filter(|(_, st)| st.revoked).collect();
        if revoked.len() > MAX_REVOKED_PER_ACCOUNT {
            revoked.sort_by(|(ta, a), (tb, b)| {
                b.at_ms
                    .cmp(&a.at_ms)
                    .then_with(|| fresh.contains(*tb).cmp(&fresh.contains(*ta)))
                    .then_with(|| ta.cmp(tb))
            });
            for (t, _) in &revoked[MAX_REVOKED_PER_ACCOUNT..] {
                batch.delete_cf(cf, keys::revocation_key(account, t));
            }
        }
        // Unrevocation markers: the newest ones within their lifetime.
        let newest = all.values().map(|st| st.at_ms).max().unwrap_or(at_ms);
        let mut markers: Vec<_> = all.iter().filter(|(_, st)| !st.revoked).collect();
        markers.sort_by(|(ta, a), (tb, b)| b.at_ms.cmp(&a.at_ms).then_with(|| ta.cmp(tb)));
        for (i, (t, st)) in markers.iter().enumerate() {
            if i >= MAX_UNREVOKED_MARKERS || st.at_ms < newest.saturating_sub(MARKER_LIFETIME_MS) {
                batch.delete_cf(cf, keys::revocation_key(account, t));
            }
        }
        self.inner.write(batch, op)?;
        Ok((changed, applied))
    }

    /// Merges states a peer sent (anti-entropy, hand-off), as if their requests had come
    /// here: per token the later signed time wins, on equal times the revocation. Returns
    /// how many changed something here.
    pub fn merge_revocations(&self, states: &[RevocationState]) -> Result<usize, StoreError> {
        let mut by_account: BTreeMap<AccountId, Vec<([u8; TOKEN_LEN], TokenState)>> =
            BTreeMap::new();
        for s in states {
            by_account.entry(s.account).or_default().push((
                s.token,
                TokenState {
                    at_ms: s.at_ms,
                    revoked: s.revoked,
                },
            ));
        }
        let mut applied = 0;
        for (account, list) in by_account {
            applied += self.apply_states(&account, &list, "merge revocations")?.1;
        }
        Ok(applied)
    }

    /// The token states of whole accounts in account order after `after`, at least `limit`
    /// of them unless the column family ends first (an account is never split: it holds at
    /// most 250); with the last account listed when more may follow.
    pub fn revocations_page(
        &self,
        after: Option<&AccountId>,
        limit: usize,
    ) -> Result<(Vec<RevocationState>, Option<AccountId>), StoreError> {
        let lower = match after {
            Some(a) => keys::prefix_end(&a.to_bytes()).unwrap_or_default(),
            None => Vec::new(),
        };
        if after.is_some() && lower.is_empty() {
            return Ok((Vec::new(), None));
        }
        let (mut out, mut more) = (Vec::<RevocationState>::new(), false);
        self.inner.scan(CF_REVOCATIONS, &lower, None, |k, v| {
            let corrupt = || StoreError::Corrupt { what: "revocation" };
            let account = k
                .get(..ACCOUNT_LEN)
                .and_then(|a| AccountId::from_bytes(a).ok())
                .ok_or_else(corrupt)?;
            if out.len() >= limit.max(1) && out.last().is_some_and(|l| l.account != account) {
                more = true;
                return Ok(false);
            }
            let token: [u8; TOKEN_LEN] = k
                .get(ACCOUNT_LEN..)
                .and_then(|t| t.try_into().ok())
                .ok_or_else(corrupt)?;
            let st = TokenState::decode(v).ok_or_else(corrupt)?;
            out.push(RevocationState {
                account,
                token,
                at_ms: st.at_ms,
                revoked: st.revoked,
            });
            Ok(true)
        })?;
        let next = if more {
            out.last().map(|s| s.account)
        } else {
            None
        };
        Ok((out, next))
    }

    /// `account`'s revoked tokens, in token order.
    pub fn revoked_subaccounts(&self, account: &AccountId) -> Result<Vec<[u8; 36]>, StoreError> {
        Ok(self
            .revocations_of(account)?
            .into_iter()
            .filter(|(_, st)| st.revoked)
            .map(|(t, _)| t)
            .collect())
    }

    /// Whether `token` is revoked for `account`.
    pub fn is_revoked(&self, account: &AccountId, token: &[u8; 36]) -> Result<bool, StoreError> {
        let v = self.inner.get(
            CF_REVOCATIONS,
            &keys::revocation_key(account, token),
            "read revocation",
        )?;
        match v {
            None => Ok(false),
            Some(v) => TokenState::decode(&v)
                .map(|st| st.revoked)
                .ok_or(StoreError::Corrupt { what: "revocation" }),
        }
    }

    /// The last operation on each token of `account`.
    fn revocations_of(
        &self,
        account: &AccountId,
    ) -> Result<BTreeMap<[u8; TOKEN_LEN], TokenState>, StoreError> {
        let prefix = account.to_bytes();
        let mut out = BTreeMap::new();
        self.inner.iterate(
            CF_REVOCATIONS,
            &prefix,
            keys::prefix_end(&prefix),
            |k, v| {
                let corrupt = || StoreError::Corrupt { what: "revocation" };
                let token: [u8; TOKEN_LEN] = k
                    .get(ACCOUNT_LEN..)
                    .and_then(|t| t.try_into().ok())
                    .ok_or_else(corrupt)?;
                out.insert(token, TokenState::decode(v).ok_or_else(corrupt)?);
                Ok(true)
            },
        )?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use crate::message::NamespaceSel;

    fn token(n: u8) -> [u8; 36] {
        [n; 36]
    }

    #[test]
    fn revoke_unrevoke_round_trip() {
        let dir = tempdir();
        let s = open(&dir);
        let a = account(1);
        // No messages at all: the revocation still takes effect (SS 2.8 drops it).
        s.revoke_subaccounts(&a, &[token(1), token(2), token(1)], NOW)
            .expect("revoke");
        assert!(s.is_revoked(&a, &token(1)).expect("q"));
        assert!(!s.is_revoked(&a, &token(3)).expect("q"));
        assert!(!s.is_revoked(&account(2), &token(1)).expect("q"));
        assert_eq!(
            s.revoked_subaccounts(&a).expect("list"),
            vec![token(1), token(2)]
        );
        assert_eq!(
            s.unrevoke_subaccounts(&a, &[token(2), token(3), token(2)], NOW + 1)
                .expect("un"),
            1
        );
        assert_eq!(s.revoked_subaccounts(&a).expect("list"), vec![token(1)]);
    }

    #[test]
    fn the_latest_signed_time_wins_whatever_the_arrival_order() {
        let dir = tempdir();
        let s = open(&dir);
        let a = account(1);
        // Revoked at T, unrevoked at T+10: applied in order, or the revoke arriving late.
        s.revoke_subaccounts(&a, &[token(1)], NOW).expect("revoke");
        s.unrevoke_subaccounts(&a, &[token(1)], NOW + 10)
            .expect("un");
        assert!(!s.is_revoked(&a, &token(1)).expect("q"));
        s.unrevoke_subaccounts(&a, &[token(2)], NOW + 10)
            .expect("un");
        s.revoke_subaccounts(&a, &[token(2)], NOW)
            .expect("late revoke");
        assert!(
            !s.is_revoked(&a, &token(2)).expect("q"),
            "an older revoke does not win"
        );
        // Unrevoked at T, revoked at T+10, the unrevoke arriving late.
        s.revoke_subaccounts(&a, &[token(3)], NOW + 10)
            .expect("revoke");
        assert_eq!(
            s.unrevoke_subaccounts(&a, &[token(3)], NOW)
                .expect("late un"),
            0
        );
        assert!(s.is_revoked(&a, &token(3)).expect("q"));
        // Equal times: revoked.
        s.unrevoke_subaccounts(&a, &[token(4)], NOW).expect("un");
        s.revoke_subaccounts(&a, &[token(4)], NOW).expect("revoke");
        assert!(s.is_revoked(&a, &token(4)).expect("q"));
        assert_eq!(
            s.revoked_subaccounts(&a).expect("list"),
            vec![token(3), token(4)]
        );
    }

    #[test]
    fn revocations_survive_messages_expiring_and_reopen() {
        let dir = tempdir();
        let a = account(1);
        {
            let s = open(&dir);
            s.store(&msg(&a, 0, b"m", NOW, NOW + 10_000), NOW)
                .expect("store");
            s.revoke_subaccounts(&a, &[token(7)], NOW).expect("revoke");
            assert_eq!(s.sweep_expired(NOW + 10_000).expect("sweep"), 1);
            assert_eq!(s.stats().accounts, 0);
            s.store(&msg(&a, 0, b"n", NOW, NOW + HOUR), NOW)
                .expect("store");
            s.delete_all(&a, NamespaceSel::All, NOW).expect("delete");
            assert!(s.is_revoked(&a, &token(7)).expect("q"));
        }
        let s = open(&dir);
        assert!(s.is_revoked(&a, &token(7)).expect("q"));
    }

    #[test]
    fn merged_states_order_like_requests_and_pages_list_whole_accounts() {
        use super::RevocationState;
        let dir = tempdir();
        let s = open(&dir);
        let (a, b) = (account(1), account(2));
        let st = |account, n, at_ms, revoked| RevocationState {
            account,
            token: token(n),
            at_ms,
            revoked,
        };
        s.revoke_subaccounts(&a, &[token(1)], NOW).expect("revoke");
        // A peer's older unrevoke loses; its newer revoke of another token and its state of
        // another account apply.
        let merged = s
            .merge_revocations(&[
                st(a, 1, NOW - 5, false),
                st(a, 2, NOW, true),
                st(b, 3, NOW, true),
            ])
            .expect("merge");
        assert_eq!(merged, 2);
        assert!(s.is_revoked(&a, &token(1)).expect("q"));
        assert!(s.is_revoked(&a, &token(2)).expect("q"));
        assert!(s.is_revoked(&b, &token(3)).expect("q"));
        // A later unrevoke from a peer wins, and merging it again changes nothing.
        assert_eq!(
            s.merge_revocations(&[st(a, 2, NOW + 1, false)]).expect("m"),
            1
        );
        assert_eq!(
            s.merge_revocations(&[st(a, 2, NOW + 1, false)]).expect("m"),
            0
        );
        assert!(!s.is_revoked(&a, &token(2)).expect("q"));

        // Pages: whole accounts, resumable.
        let (p1, next) = s.revocations_page(None, 1).expect("page");
        assert_eq!(p1, vec![st(a, 1, NOW, true), st(a, 2, NOW + 1, false)]);
        assert_eq!(next, Some(a));
        let (p2, next) = s.revocations_page(next.as_ref(), 1).expect("page");
        assert_eq!((p2, next), (vec![st(b, 3, NOW, true)], None));
    }

    #[test]
    fn at_most_50_newest_kept() {
        let dir = tempdir();
        let s = open(&dir);
        let a = account(1);
        for i in 0..40u8 {
            s.revoke_subaccounts(&a, &[token(i)], NOW + i64::from(i))
                .expect("revoke");
        }
        // 20 more at one later time: the 10 oldest (0..10) go.
        let batch: Vec<_> = (100..120u8).map(token).collect();
        s.revoke_subaccounts(&a, &batch, NOW + 1000)
            .expect("revoke");
        let list = s.revoked_subaccounts(&a).expect("list");
        assert_eq!(list.len(), 50);
        for i in 0..10u8 {
            assert!(!s.is_revoked(&a, &token(i)).expect("q"), "token {i}");
        }
        for i in (10..40u8).chain(100..120) {
            assert!(s.is_revoked(&a, &token(i)).expect("q"), "token {i}");
        }
        // Re-revoking an old token refreshes it, so the next oldest (10) goes instead.
        s.revoke_subaccounts(&a, &[token(200), token(11)], NOW + 2000)
            .expect("revoke");
        assert!(s.is_revoked(&a, &token(11)).expect("q"));
        assert!(s.is_revoked(&a, &token(200)).expect("q"));
        assert!(!s.is_revoked(&a, &token(10)).expect("q"));
        assert_eq!(s.revoked_subaccounts(&a).expect("list").len(), 50);
        // Equal times: the request's tokens win over older entries at the same time.
        let same: Vec<_> = (130..180u8).map(token).collect();
        s.revoke_subaccounts(&a, &same, NOW + 2000).expect("revoke");
        let list = s.revoked_subaccounts(&a).expect("list");
        assert_eq!(list, same);
    }
}
