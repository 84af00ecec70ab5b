//! Subaccount revocations between nodes: a token revoked through one member must be refused by
//! every member of the account's swarm, including one that lost its disk, one that joined
//! the swarm since, and the owners the account moves to. Forwards and their durable retries
//! reach only the members of the moment; the simulation's I7 showed revoked tokens admitted
//! again after each of those (docs/simulation.md, finding 7). The original keeps revocations
//! on the node that took the request only.
//!
//! Owns the three ways token states travel on `/snode/v1/revocations`
//! (`protocol::RevocationsRequest`): the anti-entropy step (send a digest of our swarm's
//! states; when the peer's differ, pull its pages, merge, then push ours), the hand-off step
//! (a foreign account's states to every member of its owning swarm, kept here: see
//! `handoff_revocations`), and the answer to both. Merging is the store's (`Store::merge_revocations`:
//! the later signed time wins, as for the client's own requests). Must not touch messages.
//!
//! Trust: a member's states are taken without the client's signature, as its messages and
//! deletions are. A hostile member could spread an unrevocation — but it already admits the
//! revoked token itself, so the token gains no reader it did not have.

use std::collections::BTreeMap;

use futures_util::future::join_all;

use crate::message::AccountId;
use crate::peer::PATH_REVOCATIONS;
use crate::store::{RevocationState, Store, StoreError};
use crate::swarm::{Membership, NodeInfo, SwarmId};

use super::protocol::{
    MAX_REVOCATIONS_PER_REQUEST, MAX_REVOCATIONS_SCANNED, RevocationEntry, RevocationsRequest,
    RevocationsResponse, digest_revocations,
};
use super::{BULK_TIMEOUT, ReplicationError, Replicator};

/// Pages pulled from one peer in one anti-entropy session.
const MAX_PULLED_PAGES: usize = 8;

/// The states of accounts swarm `ours` owns in `m`, in account order, as far as the first
/// [`MAX_REVOCATIONS_SCANNED`] states read: what both sides of a comparison digest and list.
pub(crate) fn owned_states(
    store: &Store,
    m: &Membership,
    ours: SwarmId,
) -> Result<Vec<RevocationState>, StoreError> {
    let (mut out, mut cursor, mut scanned) = (Vec::new(), None, 0usize);
    loop {
        let (page, next) = store.revocations_page(cursor.as_ref(), MAX_REVOCATIONS_PER_REQUEST)?;
        scanned += page.len();
        out.extend(
            page.into_iter()
                .filter(|s| m.swarm_for(&s.account) == Some(ours)),
        );
        match next {
            Some(n) if scanned < MAX_REVOCATIONS_SCANNED => cursor = Some(n),
            _ => return Ok(out),
        }
    }
}

/// The answer to a `/snode/v1/revocations` request once its states are merged: with a digest
/// that differs from ours, a page of our swarm's states after `after`. One read of our
/// states serves the comparison and the page; a page holds whole accounts (at most 250
/// states each) and never more than a request may carry, so the asker can take it.
pub(crate) fn answer(
    store: &Store,
    m: &Membership,
    ours: Option<SwarmId>,
    digest: Option<&str>,
    after: Option<&AccountId>,
    accepted: usize,
) -> Result<RevocationsResponse, StoreError> {
    let mut resp = RevocationsResponse {
        accepted,
        differs: false,
        revocations: Vec::new(),
        more: None,
    };
    let (Some(theirs), Some(ours)) = (digest, ours) else {
        return Ok(resp);
    };
    let all = owned_states(store, m, ours)?;
    if digest_revocations(&all) == theirs {
        return Ok(resp);
    }
    resp.differs = true;
    let start = after.map_or(0, |a| all.partition_point(|s| s.account <= *a));
    let rest = &all[start..];
    let mut end = rest.len().min(MAX_REVOCATIONS_PER_REQUEST);
    while end > 0 && end < rest.len() && rest[end].account == rest[end - 1].account {
        end -= 1;
    }
    resp.revocations = rest[..end]
        .iter()
        .map(RevocationEntry::from_state)
        .collect();
    if end < rest.len() {
        resp.more = rest[..end].last().map(|s| s.account.to_hex());
    }
    Ok(resp)
}

/// Parses and bounds the states a peer sent: every one must parse and none may be signed
/// later than `latest_ms` (the peers' clock tolerance ahead of ours), or the whole list is
/// refused (`None`), as a client request with such a timestamp would be.
pub(crate) fn admit_states(
    list: &[RevocationEntry],
    latest_ms: i64,
) -> Option<Vec<RevocationState>> {
    if list.len() > MAX_REVOCATIONS_PER_REQUEST {
        return None;
    }
    list.iter()
        .map(|e| e.to_state().filter(|s| s.at_ms <= latest_ms))
        .collect()
}

fn request_body(req: &RevocationsRequest) -> Vec<u8> {
    // Plain structs of strings and integers: serialising cannot fail.
    serde_json::to_vec(req).unwrap_or_default()
}

impl Replicator {
    /// The anti-entropy step with `peer`, a member of our swarm `ours`: compare digests;
    /// when they differ, pull the peer's pages and merge them, then push ours. Both sides
    /// then hold the union, each token at its latest operation. Returns the states merged here.
    pub(crate) async fn sync_revocations(
        &self,
        m: &std::sync::Arc<Membership>,
        ours: SwarmId,
        peer: &NodeInfo,
    ) -> Result<usize, ReplicationError> {
        let mm = m.clone();
        let mine = self
            .blocking("list revocations", move |s| owned_states(s, &mm, ours))
            .await?;
        let digest = digest_revocations(&mine);
        let (mut after, mut merged, mut differed) = (None, 0, false);
        for _ in 0..MAX_PULLED_PAGES {
            let req = RevocationsRequest {
                revocations: Vec::new(),
                digest: Some(digest.clone()),
                after: after.take(),
            };
            let r = self
                .post(peer, PATH_REVOCATIONS, request_body(&req), BULK_TIMEOUT)
                .await?;
            let resp: RevocationsResponse = match serde_json::from_slice(&r.body) {
                Ok(v) if r.status == 200 => v,
                _ => {
                    return Err(ReplicationError::BadAnswer {
                        path: PATH_REVOCATIONS,
                        status: r.status,
                    });
                }
            };
            differed |= resp.differs;
            if resp.revocations.is_empty() && resp.more.is_none() {
                break;
            }
            let latest = self
                .now()
                .saturating_add(crate::peer::auth::PEER_TOLERANCE_MS);
            let Some(mut states) = admit_states(&resp.revocations, latest) else {
                return Err(ReplicationError::BadAnswer {
                    path: PATH_REVOCATIONS,
                    status: r.status,
                });
            };
            // Only what our swarm owns: a confused peer must not fill our store.
            states.retain(|s| m.swarm_for(&s.account) == Some(ours));
            merged += self
                .blocking("merge revocations", move |s| s.merge_revocations(&states))
                .await?;
            match resp.more {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        if differed {
            for chunk in mine.chunks(MAX_REVOCATIONS_PER_REQUEST) {
                let req = RevocationsRequest {
                    revocations: chunk.iter().map(RevocationEntry::from_state).collect(),
                    digest: None,
                    after: None,
                };
                self.post(peer, PATH_REVOCATIONS, request_body(&req), BULK_TIMEOUT)
                    .await?;
            }
        }
        Ok(merged)
    }

    /// The hand-off step: sends the token states of accounts our swarm no longer owns to
    /// every member of their owning swarm (the receiver syncs its WAL before answering).
    /// Returns whether every owner took them all.
    pub(crate) async fn handoff_revocations(
        &self,
        m: &Membership,
        ours: Option<SwarmId>,
    ) -> Result<bool, ReplicationError> {
        let (mut after, mut complete) = (None::<AccountId>, true);
        loop {
            let a = after.take();
            let (page, next) = self
                .blocking("list revocations", move |s| {
                    s.revocations_page(a.as_ref(), MAX_REVOCATIONS_PER_REQUEST)
                })
                .await?;
            let mut by_owner: BTreeMap<SwarmId, Vec<RevocationState>> = BTreeMap::new();
            for s in page {
                match m.swarm_for(&s.account) {
                    Some(owner) if Some(owner) != ours && !m.members(owner).is_empty() => {
                        by_owner.entry(owner).or_default().push(s);
                    }
                    _ => {}
                }
            }
            for (owner, states) in by_owner {
                let members = m.members(owner);
                let mut took = true;
                for chunk in states.chunks(MAX_REVOCATIONS_PER_REQUEST) {
                    let body = request_body(&RevocationsRequest {
                        revocations: chunk.iter().map(RevocationEntry::from_state).collect(),
                        digest: None,
                        after: None,
                    });
                    let sent = members.iter().map(|peer| async {
                        let r = self
                            .post(peer, PATH_REVOCATIONS, body.clone(), BULK_TIMEOUT)
                            .await?;
                        Ok::<bool, ReplicationError>(
                            r.status == 200
                                && serde_json::from_slice::<RevocationsResponse>(&r.body)
                                    .is_ok_and(|a| a.accepted == chunk.len()),
                        )
                    });
                    took &= join_all(sent)
                        .await
                        .into_iter()
                        .all(|r| matches!(r, Ok(true)));
                }
                // Kept here even when every owner took them, unlike handed-off messages: a
                // member that leaves the account's swarm and comes back must still refuse the
                // tokens it acknowledged as revoked (seed 400357: dropped, it admitted one
                // again before its first anti-entropy session). A few bytes per token; a late
                // push of an old state changes nothing at the owners (the later signed time
                // wins) and is refused once our ownership ended 31 days ago.
                complete &= took;
            }
            match next {
                Some(n) => after = Some(n),
                None => return Ok(complete),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(at: i64) -> RevocationEntry {
        RevocationEntry {
            account: format!("05{}", "ab".repeat(32)),
            token: "05".repeat(36),
            at,
            revoked: true,
        }
    }

    /// 3,000 states in 20 accounts of 150: pages of whole accounts, none larger than a request
    /// may carry, resumable, and nothing when the digests agree.
    #[test]
    fn answers_page_whole_accounts_within_the_request_bound() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), crate::store::StoreOptions::default()).expect("open");
        let node = crate::swarm::NodeInfo {
            pubkey_ed25519: [1; 32],
            pubkey_x25519: [2; 32],
            ip: std::net::Ipv4Addr::LOCALHOST,
            https_port: 1,
            omq_port: 0,
            swarm_id: SwarmId(7),
            version: [2, 11, 0],
        };
        let m = Membership::new(1, "0".repeat(64), vec![node]);
        let states: Vec<RevocationState> = (0..20u8)
            .flat_map(|a| {
                (0..150u8).map(move |t| RevocationState {
                    account: AccountId {
                        kind: 0x05,
                        key: [a; 32],
                    },
                    token: [t; 36],
                    at_ms: 1,
                    // Unrevocation markers: an account keeps up to 200 (revoked tokens: 50).
                    revoked: false,
                })
            })
            .collect();
        store.merge_revocations(&states).expect("merge");
        let ours = Some(SwarmId(7));
        let first = answer(&store, &m, ours, Some("00"), None, 0).expect("answer");
        assert!(first.differs);
        // 13 whole accounts: the 14th would pass the request bound.
        assert_eq!(first.revocations.len(), 1_950);
        let after = AccountId::from_hex(first.more.as_deref().expect("more")).expect("hex");
        assert_eq!(after.key, [12; 32]);
        let second = answer(&store, &m, ours, Some("00"), Some(&after), 0).expect("answer");
        assert_eq!((second.revocations.len(), second.more), (1_050, None));
        let all = owned_states(&store, &m, SwarmId(7)).expect("states");
        let same = digest_revocations(&all);
        let quiet = answer(&store, &m, ours, Some(&same), None, 0).expect("answer");
        assert!(!quiet.differs && quiet.revocations.is_empty());
    }

    #[test]
    fn states_from_the_future_or_unparsable_refuse_the_list() {
        assert_eq!(admit_states(&[entry(10)], 10).map(|v| v.len()), Some(1));
        assert!(admit_states(&[entry(10), entry(11)], 10).is_none());
        let mut bad = entry(1);
        bad.token.pop();
        assert!(admit_states(&[bad], 10).is_none());
        let too_many = vec![entry(1); MAX_REVOCATIONS_PER_REQUEST + 1];
        assert!(admit_states(&too_many, 10).is_none());
    }
}
