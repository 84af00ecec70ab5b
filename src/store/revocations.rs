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

impl Store {
    /// Revokes `tokens` for `account` at `now_ms` (re-revoking refreshes the time), then
    /// keeps only the newest [`MAX_REVOKED_PER_ACCOUNT`] tokens by revocation time; on equal
    /// times the tokens of this request win.
    pub fn revoke_subaccounts(
        &self,
        account: &AccountId,
        tokens: &[[u8; 36]],
        now_ms: i64,
    ) -> Result<(), StoreError> {
        let _g = self.inner.lock(account);
        let mut all: BTreeMap<[u8; TOKEN_LEN], i64> = self.revocations_of(account)?;
        let fresh: BTreeSet<[u8; TOKEN_LEN]> = tokens.iter().copied().collect();
        let cf = self.inner.cf(CF_REVOCATIONS)?;
        let mut batch = WriteBatch::default();
        for t in &fresh {
            batch.put_cf(cf, keys::revocation_key(account, t), now_ms.to_be_bytes());
            all.insert(*t, now_ms);
        }
        if all.len() > MAX_REVOKED_PER_ACCOUNT {
            let mut ranked: Vec<_> = all.into_iter().collect();
            // Newest first; then this request's tokens; then token order for determinism.
            ranked.sort_by(|(ta, a), (tb, b)| {
                b.cmp(a)
                    .then_with(|| fresh.contains(tb).cmp(&fresh.contains(ta)))
                    .then_with(|| ta.cmp(tb))
            });
            for (t, _) in &ranked[MAX_REVOKED_PER_ACCOUNT..] {
                batch.delete_cf(cf, keys::revocation_key(account, t));
            }
        }
        self.inner.write(batch, "revoke")
    }

    /// Removes `tokens` from `account`'s revocations; returns how many were revoked.
    pub fn unrevoke_subaccounts(
        &self,
        account: &AccountId,
        tokens: &[[u8; 36]],
    ) -> Result<usize, StoreError> {
        let _g = self.inner.lock(account);
        let cf = self.inner.cf(CF_REVOCATIONS)?;
        let mut batch = WriteBatch::default();
        let mut removed = 0;
        for t in tokens.iter().collect::<BTreeSet<_>>() {
            let key = keys::revocation_key(account, t);
            if self
                .inner
                .get(CF_REVOCATIONS, &key, "read revocation")?
                .is_some()
            {
                batch.delete_cf(cf, key);
                removed += 1;
            }
        }
        self.inner.write(batch, "unrevoke")?;
        Ok(removed)
    }

    /// `account`'s revoked tokens, in token order.
    pub fn revoked_subaccounts(&self, account: &AccountId) -> Result<Vec<[u8; 36]>, StoreError> {
        Ok(self.revocations_of(account)?.into_keys().collect())
    }

    /// Whether `token` is revoked for `account`.
    pub fn is_revoked(&self, account: &AccountId, token: &[u8; 36]) -> Result<bool, StoreError> {
        Ok(self
            .inner
            .get(
                CF_REVOCATIONS,
                &keys::revocation_key(account, token),
                "read revocation",
            )?
            .is_some())
    }

    /// Every revocation of `account` with its time.
    fn revocations_of(
        &self,
        account: &AccountId,
    ) -> Result<BTreeMap<[u8; TOKEN_LEN], i64>, StoreError> {
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
                let at: [u8; 8] = v.try_into().map_err(|_| corrupt())?;
                out.insert(token, i64::from_be_bytes(at));
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
            s.unrevoke_subaccounts(&a, &[token(2), token(3), token(2)])
                .expect("un"),
            1
        );
        assert_eq!(s.revoked_subaccounts(&a).expect("list"), vec![token(1)]);
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
