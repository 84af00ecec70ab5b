//! Signature glue between the JSON params and `sign`: parses the auth fields every signed
//! method shares, checks timestamp windows, and verifies against the store's revocations.
//!
//! Owns the parse texts of the auth fields and the "fail closed" rule for revocation
//! lookups. Must not build signed messages (each handler does, with `sign::msg`) nor decide
//! statuses beyond the parse errors (handlers own their 401/406 texts).

use crate::message::AccountId;
use crate::sign::{self, Access, RequestAuth, SignedSubaccount, SubaccountToken};

use super::RpcContext;
use super::params::{PResult, ParamError, Params, missing};

/// The auth fields of a request, parsed but not yet verified.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Auth {
    /// `pubkey_ed25519` (only for `05` accounts).
    pub(crate) pubkey_ed25519: Option<[u8; 32]>,
    /// `signature`.
    pub(crate) signature: Option<[u8; 64]>,
    /// `subaccount` + `subaccount_sig`.
    pub(crate) subaccount: Option<SignedSubaccount>,
}

impl Auth {
    /// Parses `pubkey_ed25519`, `signature` and (when the method allows it) the subaccount
    /// pair. `pubkey_ed25519` for a non-`05` account is the original's parse error.
    pub(crate) fn parse(
        p: &Params<'_>,
        account: &AccountId,
        allow_subaccount: bool,
    ) -> PResult<Auth> {
        let pubkey_ed25519 = p.ed25519_pubkey("pubkey_ed25519")?;
        if pubkey_ed25519.is_some() && account.kind != 0x05 {
            return Err(ParamError(
                "pubkey_ed25519 is only permitted for 05[...] pubkeys".into(),
            ));
        }
        let signature = p.signature("signature")?;
        // Methods without subaccount auth (revoke/unrevoke) ignore the fields, as the
        // original does: the account key must then have signed, so nothing is weakened.
        let subaccount = if allow_subaccount {
            match (p.token("subaccount")?, p.signature("subaccount_sig")?) {
                (Some(token), Some(sig)) => Some(SignedSubaccount { token, sig }),
                (None, None) => None,
                (Some(_), None) => return Err(missing("subaccount_sig")),
                (None, Some(_)) => return Err(missing("subaccount")),
            }
        } else {
            None
        };
        Ok(Auth {
            pubkey_ed25519,
            signature,
            subaccount,
        })
    }

    /// The auth with its signature, or the parse error of a missing `signature`.
    pub(crate) fn required(&self) -> PResult<RequestAuth> {
        let signature = self.signature.ok_or_else(|| missing("signature"))?;
        Ok(RequestAuth {
            pubkey_ed25519: self.pubkey_ed25519,
            subaccount: self.subaccount,
            signature,
        })
    }
}

/// Whether `ts` lies within `tolerance_ms` of `now` on either side.
pub(crate) fn within(now_ms: i64, ts_ms: i64, tolerance_ms: i64) -> bool {
    now_ms.saturating_sub(ts_ms).saturating_abs() <= tolerance_ms
}

/// Verifies a request signature; `check_revoked` false skips the revocation lookup
/// (unrevocable namespaces). Logs only the reason, never keys.
pub(crate) fn verify(
    ctx: &RpcContext,
    account: &AccountId,
    auth: &RequestAuth,
    msg: &[u8],
    required: Access,
    check_revoked: bool,
) -> bool {
    let revoked = |t: &SubaccountToken| check_revoked && is_revoked(ctx, account, t);
    match sign::verify_request(account, auth, msg, required, revoked) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(account = %account.short(), reason = %e, "request signature refused");
            false
        }
    }
}

/// A failed lookup counts as revoked: refusing a member is recoverable, admitting a revoked
/// one is not.
fn is_revoked(ctx: &RpcContext, account: &AccountId, token: &SubaccountToken) -> bool {
    match ctx.store.is_revoked(account, &token.0) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %crate::error::chain(&e), "revocation lookup failed; refusing the subaccount");
            true
        }
    }
}

/// The subaccount's flags, when a subaccount signed (for access-dependent behaviour).
pub(crate) fn subaccount_flags(auth: &RequestAuth) -> Option<Access> {
    auth.subaccount.map(|s| s.token.flags())
}
