//! The local side of anti-entropy: this node's digest and bucket views, and the answers to a
//! swarm peer's anti-entropy requests (the routes in `api::peer` call [`Responder::admit`],
//! then [`serve`]).
//!
//! Owns who may reconcile with us (members of our own swarm only), how often (a per-peer
//! budget sized from what an honest peer's sessions need, [`PeerBudget`]) and which messages a
//! view holds (owned by our swarm, in scope at the reference time). Digests come from the
//! node's [`DigestCache`], so however many peers ask, the store is scanned about once per
//! epoch. Blocking: everything but [`Responder::admit`] reads the store, so async callers run
//! it on a blocking thread. Must not send anything.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::directory::limit::{Buckets, Rate};
use crate::message::{AccountId, b64, b64_decode};
use crate::peer::reply::{BINARY, JSON, Reply};
use crate::peer::wire;
use crate::store::{Store, StoreError};
use crate::swarm::{Membership, SwarmId};

use super::digest::{Digest, View, in_scope};
use super::digest_cache::{DigestCache, DigestKey};
use super::protocol::{
    BucketEntry, BucketRequest, BucketResponse, DIGEST_EPOCH_MS, DeleteResponse, DigestRequest,
    DigestResponse, HashesRequest, MAX_AT_SKEW_MS, MAX_BUCKETS_PER_REQUEST, MAX_FETCH_BYTES,
    MAX_HASHES_PER_REQUEST, MAX_LISTED_HASHES, MAX_REQUESTS_PER_SESSION, PATH_AE_BUCKET,
    PATH_AE_DELETE, PATH_AE_DIGEST, PATH_AE_FETCH, digest_at_fits, is_aligned,
};

/// Sessions one peer may run with us per `anti_entropy_interval` before it is refused: an
/// honest peer runs one (its round robin visits one member per interval), and one more when
/// it sees us join its swarm (joiners are reconciled at once, outside the schedule). The
/// sustained rate has the same headroom over the one session an honest peer needs.
pub const SESSIONS_PER_INTERVAL: u32 = 2;
/// Peers with a budget held at once. Only members of our swarm reach the table (at most 10,
/// storage-server.md 3.3); a member that left keeps its entry until its bucket refills (two
/// intervals), so this leaves room for churn while bounding memory whatever happens.
pub const MAX_BUDGETED_PEERS: usize = 64;

/// The anti-entropy requests one peer may make of us: a token bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PeerBudget {
    /// Requests at once after a quiet period.
    pub burst: u32,
    /// Requests per second, sustained.
    pub per_second: f64,
}

impl PeerBudget {
    /// The budget for a network reconciling every `interval`: [`SESSIONS_PER_INTERVAL`]
    /// sessions of at most [`MAX_REQUESTS_PER_SESSION`] requests (386) at once, refilled at
    /// that many per interval (12.9/s at the default 30 s).
    pub fn for_interval(interval: Duration) -> PeerBudget {
        let burst = SESSIONS_PER_INTERVAL * MAX_REQUESTS_PER_SESSION;
        let secs = interval.as_secs_f64().max(0.001);
        PeerBudget {
            burst,
            per_second: f64::from(burst) / secs,
        }
    }
}

/// What the anti-entropy routes share across requests: the digest cache (shared with our own
/// sessions) and each peer's budget.
pub struct Responder {
    digests: Arc<DigestCache>,
    budgets: Mutex<Buckets<[u8; 32]>>,
}

impl Responder {
    /// A responder answering from `digests`, each peer within `budget`.
    pub fn new(digests: Arc<DigestCache>, budget: PeerBudget) -> Responder {
        let rate = Rate::new(budget.per_second, budget.burst);
        Responder {
            digests,
            budgets: Mutex::new(Buckets::new(Some(rate), MAX_BUDGETED_PEERS)),
        }
    }

    /// The node's digest cache.
    pub fn digests(&self) -> &Arc<DigestCache> {
        &self.digests
    }

    /// The gate before any store read, cheap and not blocking: members of our swarm only
    /// (403; checked first, so no one else takes a place in the budget table), each within
    /// its budget (429). Returns our swarm.
    pub fn admit(
        &self,
        m: &Membership,
        me: &[u8; 32],
        sender: &[u8; 32],
        now: Instant,
    ) -> Result<SwarmId, Reply> {
        let ours = member_of_our_swarm(m, me, sender)?;
        let allowed = self
            .budgets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .allow(*sender, now);
        if !allowed {
            return Err(Reply::text(
                429,
                "anti-entropy budget of this peer spent; try again next interval",
            ));
        }
        Ok(ours)
    }
}

/// Our swarm, if `sender` is a member of it (else the 403 answer).
fn member_of_our_swarm(m: &Membership, me: &[u8; 32], sender: &[u8; 32]) -> Result<SwarmId, Reply> {
    let Some(ours) = m.swarm_of(me) else {
        return Err(Reply::text(403, "not a member of any swarm"));
    };
    if m.swarm_of(sender) != Some(ours) {
        return Err(Reply::text(403, "not a member of this swarm"));
    }
    Ok(ours)
}

/// Whether `account` belongs to swarm `ours` in `m`.
pub(crate) fn owned_by(m: &Membership, ours: SwarmId) -> impl Fn(&AccountId) -> bool + '_ {
    move |a| m.swarm_for(a) == Some(ours)
}

/// Our digest at reference time `at_ms`, from the cache or computed once for all who ask
/// ([`DigestCache::get_or_compute`]).
pub(crate) fn cached_digest(
    store: &Store,
    digests: &DigestCache,
    m: &Membership,
    ours: SwarmId,
    at_ms: i64,
) -> Result<Arc<Digest>, StoreError> {
    digests.get_or_compute(DigestKey::new(m, ours, at_ms), || {
        local_digest(store, m, ours, at_ms)
    })
}

/// Our digest at reference time `at_ms`: every stored message owned by `ours` and in scope.
/// One pass over the whole store: callers go through [`cached_digest`].
pub(crate) fn local_digest(
    store: &Store,
    m: &Membership,
    ours: SwarmId,
    at_ms: i64,
) -> Result<Digest, StoreError> {
    let owned = owned_by(m, ours);
    let mut d = Digest::default();
    // Consecutive messages share an account (key order), so ownership is computed once per
    // account rather than once per message.
    let mut last: Option<(AccountId, bool)> = None;
    store.visit_meta(|meta| {
        let mine = match last {
            Some((a, mine)) if a == meta.account => mine,
            _ => {
                let mine = owned(&meta.account);
                last = Some((meta.account, mine));
                mine
            }
        };
        if mine && in_scope(meta, at_ms) {
            d.toggle(meta.hash, meta.expiry_ms);
        }
    })?;
    Ok(d)
}

/// Our view of one bucket at `at_ms`: owned, in-scope live hashes and tombstones in force.
pub(crate) fn local_view(
    store: &Store,
    m: &Membership,
    ours: SwarmId,
    at_ms: i64,
    bucket: u8,
) -> Result<View, StoreError> {
    let owned = owned_by(m, ours);
    let mut v = View::default();
    store.bucket_meta(bucket, |meta| {
        if owned(&meta.account) && in_scope(meta, at_ms) {
            v.live.insert(meta.hash.to_string());
            v.expiries.insert(meta.hash.to_string(), meta.expiry_ms);
        }
    })?;
    v.tombstones = store
        .tombstones_in_bucket(bucket, at_ms)?
        .into_iter()
        .collect();
    Ok(v)
}

/// A 200 answer with a JSON body.
fn json(v: &impl serde::Serialize) -> Reply {
    Reply::new(200, JSON, serde_json::to_vec(v).unwrap_or_default())
}

/// Answers the anti-entropy request `body` that `sender` (authenticated, listed, admitted by
/// [`Responder::admit`]) made to `path`. Only members of our own swarm may reconcile with us
/// (403 otherwise, checked again here); malformed or oversized requests, and reference times
/// that are not epoch starts or too far from our clock, get 400; a store failure 500.
/// Blocking.
#[allow(clippy::too_many_arguments)]
pub fn serve(
    path: &str,
    store: &Store,
    digests: &DigestCache,
    m: &Membership,
    me: &[u8; 32],
    sender: &[u8; 32],
    body: &[u8],
    now_ms: i64,
) -> Reply {
    let ours = match member_of_our_swarm(m, me, sender) {
        Ok(ours) => ours,
        Err(refused) => return refused,
    };
    let result = match path {
        PATH_AE_DIGEST => digest(store, digests, m, ours, body, now_ms),
        PATH_AE_BUCKET => buckets(store, m, ours, body, now_ms),
        PATH_AE_FETCH => fetch(store, m, ours, body, now_ms),
        PATH_AE_DELETE => delete(store, m, ours, body, now_ms),
        _ => Ok(Reply::text(404, "no such anti-entropy endpoint")),
    };
    result.unwrap_or_else(|e| {
        tracing::warn!(error = %crate::error::chain(&e), path, "anti-entropy request failed");
        Reply::text(500, "Internal Server Error\n")
    })
}

/// Parses a JSON body, or the 400 answer.
fn parse<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Reply> {
    serde_json::from_slice(body).map_err(|_| Reply::text(400, "invalid anti-entropy request"))
}

/// The 400 of a reference time that is not an epoch start: every initiator rounds its clock
/// down, and refusing other values keeps requesters from naming fresh digest cache keys.
fn misaligned() -> Reply {
    Reply::text(
        400,
        format!("reference time must be a multiple of {DIGEST_EPOCH_MS} ms"),
    )
}

/// Checks a bucket request's reference time against our clock: aligned, and within
/// [`MAX_AT_SKEW_MS`] (a long session keeps the `at` of its digest exchange).
fn check_at(at: i64, now_ms: i64) -> Result<(), Reply> {
    if !is_aligned(at) {
        return Err(misaligned());
    }
    if at.saturating_sub(now_ms).saturating_abs() > MAX_AT_SKEW_MS {
        return Err(Reply::text(400, "reference time too far from current time"));
    }
    Ok(())
}

/// Checks a digest request's reference time: aligned, and one an initiator could have taken
/// from its clock just now ([`digest_at_fits`]), so only a few digests can be asked for.
fn check_digest_at(at: i64, now_ms: i64) -> Result<(), Reply> {
    if !is_aligned(at) {
        return Err(misaligned());
    }
    if !digest_at_fits(at, now_ms) {
        return Err(Reply::text(400, "reference time too far from current time"));
    }
    Ok(())
}

/// Parses a hash list within its bound.
fn hash_list(body: &[u8]) -> Result<Vec<String>, Reply> {
    let r: HashesRequest = parse(body)?;
    if r.hashes.len() > MAX_HASHES_PER_REQUEST {
        return Err(Reply::text(400, "too many hashes"));
    }
    Ok(r.hashes)
}

type Served = Result<Reply, StoreError>;

fn digest(
    store: &Store,
    digests: &DigestCache,
    m: &Membership,
    ours: SwarmId,
    body: &[u8],
    now: i64,
) -> Served {
    let r: DigestRequest = match parse(body) {
        Ok(r) => r,
        Err(e) => return Ok(e),
    };
    if let Err(e) = check_digest_at(r.at, now) {
        return Ok(e);
    }
    let d = cached_digest(store, digests, m, ours, r.at)?;
    Ok(json(&DigestResponse {
        digest: b64(&d.to_bytes()),
    }))
}

fn buckets(store: &Store, m: &Membership, ours: SwarmId, body: &[u8], now: i64) -> Served {
    let r: BucketRequest = match parse(body) {
        Ok(r) => r,
        Err(e) => return Ok(e),
    };
    if let Err(e) = check_at(r.at, now) {
        return Ok(e);
    }
    if r.buckets.len() > MAX_BUCKETS_PER_REQUEST {
        return Ok(Reply::text(400, "too many buckets"));
    }
    let mut out = Vec::new();
    let mut listed = 0usize;
    for b in r.buckets {
        let v = local_view(store, m, ours, r.at, b)?;
        listed += v.live.len() + v.tombstones.len();
        // Always answer at least one bucket, so a huge bucket still makes progress.
        if listed > MAX_LISTED_HASHES && !out.is_empty() {
            break;
        }
        let expiries = v
            .live
            .iter()
            .filter_map(|h| v.expiries.get(h).copied())
            .collect();
        out.push(BucketEntry {
            bucket: b,
            expiries,
            live: v.live.into_iter().collect(),
            tombstones: v.tombstones.into_iter().collect(),
        });
    }
    Ok(json(&BucketResponse { buckets: out }))
}

fn fetch(store: &Store, m: &Membership, ours: SwarmId, body: &[u8], _now: i64) -> Served {
    let hashes = match hash_list(body) {
        Ok(h) => h,
        Err(e) => return Ok(e),
    };
    let owned = owned_by(m, ours);
    // Held, not only live: a copy whose history ended it (a shortening), swept to a husk or
    // not yet, is what a member that missed the shortening needs, and our views list it
    // while its horizon is in scope. The receiver never stores an expired copy or a husk, it
    // only merges their histories.
    let msgs: Vec<_> = store
        .get_held(&hashes)?
        .into_iter()
        .filter(|msg| owned(&msg.account))
        .collect();
    // One blob, cut at the bound: what does not fit is fetched on a later round.
    let blob = wire::encode_batches(&msgs, MAX_FETCH_BYTES)
        .into_iter()
        .next()
        .unwrap_or_else(|| vec![0x01, b'l', b'e']);
    Ok(Reply::new(200, BINARY, blob))
}

fn delete(store: &Store, m: &Membership, ours: SwarmId, body: &[u8], now: i64) -> Served {
    let hashes = match hash_list(body) {
        Ok(h) => h,
        Err(e) => return Ok(e),
    };
    // Trust: a member of our swarm can make us delete what it says a client deleted. It could
    // equally withhold or drop data it holds itself; swarm members are trusted to replicate
    // honestly, as in the original. Only messages our swarm owns are touched.
    let owned = owned_by(m, ours);
    let live: HashSet<String> = store
        .get_live(&hashes, now)?
        .into_iter()
        .filter(|msg| owned(&msg.account))
        .map(|msg| msg.hash)
        .collect();
    let targets: Vec<String> = hashes.into_iter().filter(|h| live.contains(h)).collect();
    let deleted = store.delete_by_hashes_any(&targets, now)?.len();
    Ok(json(&DeleteResponse { deleted }))
}

/// Decodes a digest response body.
pub(crate) fn decode_digest(body: &[u8]) -> Option<Digest> {
    let r: DigestResponse = serde_json::from_slice(body).ok()?;
    Digest::from_bytes(&b64_decode(&r.digest)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Message, Namespace, message_hash};
    use crate::replication::digest::{EXPIRY_MARGIN_MS, RECENT_MARGIN_MS};
    use crate::store::StoreOptions;
    use crate::swarm::NodeInfo;
    use std::net::Ipv4Addr;

    /// A reference time an initiator could send (a multiple of `DIGEST_EPOCH_MS`).
    const NOW: i64 = 1_700_000_010_000;
    const HOUR: i64 = 3_600_000;

    fn node(id: u8, swarm: u64) -> NodeInfo {
        NodeInfo {
            pubkey_ed25519: [id; 32],
            pubkey_x25519: [id; 32],
            ip: Ipv4Addr::LOCALHOST,
            https_port: 1,
            omq_port: 0,
            swarm_id: SwarmId(swarm),
            version: [2, 8, 0],
        }
    }

    /// Two swarms (0 and u64::MAX/2); nodes 1, 2 in swarm 0, node 3 in the other.
    fn membership() -> Membership {
        Membership::new(
            1,
            "00".repeat(32),
            vec![node(1, 0), node(2, 0), node(3, u64::MAX / 2)],
        )
    }

    /// An account owned by swarm 0 (space near 0) or the other one.
    fn account(n: u8, near_zero: bool) -> AccountId {
        let mut key = [0u8; 32];
        key[31] = n;
        if !near_zero {
            key[24] = 0x80;
        }
        AccountId { kind: 5, key }
    }

    fn msg(a: &AccountId, data: &[u8], ts: i64, exp: i64) -> Message {
        Message {
            account: *a,
            namespace: Namespace(0),
            hash: message_hash(a, Namespace(0), data),
            timestamp_ms: ts,
            expiry_ms: exp,
            data: data.to_vec(),
            expiry_log: None,
        }
    }

    fn cache() -> DigestCache {
        DigestCache::new(prometheus::IntCounter::new("scans", "scans").unwrap())
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(
            dir.path(),
            StoreOptions {
                max_bytes: 1 << 40,
                ..Default::default()
            },
        )
        .unwrap();
        (dir, s)
    }

    #[test]
    fn digest_and_views_cover_owned_in_scope_messages_only() {
        let (_d, s) = open();
        let m = membership();
        let ours = SwarmId(0);
        let mine = msg(&account(1, true), b"mine", NOW - HOUR, NOW + HOUR);
        let other = msg(&account(2, false), b"other", NOW - HOUR, NOW + HOUR);
        let recent = msg(
            &account(3, true),
            b"recent",
            NOW - RECENT_MARGIN_MS + 1,
            NOW + HOUR,
        );
        let expiring = msg(
            &account(4, true),
            b"exp",
            NOW - HOUR,
            NOW + EXPIRY_MARGIN_MS,
        );
        s.bulk_store(&[mine.clone(), other.clone(), recent, expiring], NOW)
            .unwrap();
        let d = local_digest(&s, &m, ours, NOW).unwrap();
        let mut want = Digest::default();
        want.toggle(&mine.hash, mine.expiry_ms);
        assert_eq!(d, want);
        let b = crate::store::hash_bucket(&mine.hash).unwrap();
        let v = local_view(&s, &m, ours, NOW, b).unwrap();
        assert_eq!(
            v.live.into_iter().collect::<Vec<_>>(),
            vec![mine.hash.clone()]
        );
    }

    #[test]
    fn only_members_of_our_swarm_are_answered() {
        let (_d, s) = open();
        let c = cache();
        let m = membership();
        let body = serde_json::to_vec(&DigestRequest { at: NOW }).unwrap();
        let r = serve(PATH_AE_DIGEST, &s, &c, &m, &[1; 32], &[3; 32], &body, NOW);
        assert_eq!(r.status, 403);
        let r = serve(PATH_AE_DIGEST, &s, &c, &m, &[9; 32], &[1; 32], &body, NOW);
        assert_eq!(r.status, 403, "we are in no swarm");
        let r = serve(PATH_AE_DIGEST, &s, &c, &m, &[1; 32], &[2; 32], &body, NOW);
        assert_eq!(r.status, 200);
        assert_eq!(decode_digest(&r.body), Some(Digest::default()));
        let late = serde_json::to_vec(&DigestRequest { at: NOW - HOUR }).unwrap();
        assert_eq!(
            serve(PATH_AE_DIGEST, &s, &c, &m, &[1; 32], &[2; 32], &late, NOW).status,
            400
        );
        assert_eq!(
            serve(PATH_AE_DIGEST, &s, &c, &m, &[1; 32], &[2; 32], b"{", NOW).status,
            400
        );
        assert_eq!(
            serve("/nope", &s, &c, &m, &[1; 32], &[2; 32], &body, NOW).status,
            404
        );
    }

    #[test]
    fn bucket_fetch_and_delete_answers() {
        let (_d, s) = open();
        let c = cache();
        let m = membership();
        let (me, peer) = ([1u8; 32], [2u8; 32]);
        let a = account(1, true);
        let live = msg(&a, b"live", NOW - HOUR, NOW + HOUR);
        let dead = msg(&a, b"dead", NOW - HOUR, NOW + HOUR);
        let foreign = msg(&account(2, false), b"foreign", NOW - HOUR, NOW + HOUR);
        s.bulk_store(&[live.clone(), dead.clone(), foreign.clone()], NOW)
            .unwrap();
        s.delete_hashes(&a, std::slice::from_ref(&dead.hash), NOW)
            .unwrap();

        let buckets: Vec<u8> = [&live, &dead]
            .iter()
            .map(|x| crate::store::hash_bucket(&x.hash).unwrap())
            .collect();
        let body = serde_json::to_vec(&BucketRequest { at: NOW, buckets }).unwrap();
        let r = serve(PATH_AE_BUCKET, &s, &c, &m, &me, &peer, &body, NOW);
        assert_eq!(r.status, 200);
        let resp: BucketResponse = serde_json::from_slice(&r.body).unwrap();
        let all_live: Vec<_> = resp.buckets.iter().flat_map(|e| e.live.clone()).collect();
        let all_dead: Vec<_> = resp
            .buckets
            .iter()
            .flat_map(|e| e.tombstones.clone())
            .collect();
        assert!(all_live.contains(&live.hash) && !all_live.contains(&dead.hash));
        assert!(all_dead.contains(&dead.hash));
        let too_many = serde_json::to_vec(&BucketRequest {
            at: NOW,
            buckets: (0..=MAX_BUCKETS_PER_REQUEST as u8).collect(),
        })
        .unwrap();
        assert_eq!(
            serve(PATH_AE_BUCKET, &s, &c, &m, &me, &peer, &too_many, NOW).status,
            400
        );

        let want = vec![live.hash.clone(), foreign.hash.clone(), dead.hash.clone()];
        let body = serde_json::to_vec(&HashesRequest { hashes: want }).unwrap();
        let r = serve(PATH_AE_FETCH, &s, &c, &m, &me, &peer, &body, NOW);
        assert_eq!(r.status, 200);
        assert_eq!(wire::decode_batch(&r.body).unwrap(), vec![live.clone()]);
        let none = serde_json::to_vec(&HashesRequest { hashes: vec![] }).unwrap();
        let r = serve(PATH_AE_FETCH, &s, &c, &m, &me, &peer, &none, NOW);
        assert!(wire::decode_batch(&r.body).unwrap().is_empty());

        let r = serve(PATH_AE_DELETE, &s, &c, &m, &me, &peer, &body, NOW);
        let resp: DeleteResponse = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(resp.deleted, 1, "only the owned live one");
        assert!(s.get_by_hash(&foreign.hash, NOW).unwrap().is_some());
        assert_eq!(
            s.tombstoned(std::slice::from_ref(&live.hash))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn reference_times_must_be_epoch_starts() {
        let (_d, s) = open();
        let c = cache();
        let m = membership();
        let (me, peer) = ([1u8; 32], [2u8; 32]);
        let ask = |path: &str, body: Vec<u8>| serve(path, &s, &c, &m, &me, &peer, &body, NOW);
        let odd = NOW + 1;
        let r = ask(
            PATH_AE_DIGEST,
            serde_json::to_vec(&DigestRequest { at: odd }).unwrap(),
        );
        assert_eq!(r.status, 400);
        assert_eq!(
            &r.body[..],
            b"reference time must be a multiple of 30000 ms"
        );
        let bucket = |at| {
            serde_json::to_vec(&BucketRequest {
                at,
                buckets: vec![1],
            })
            .unwrap()
        };
        assert_eq!(ask(PATH_AE_BUCKET, bucket(odd)).status, 400);
        assert_eq!(ask(PATH_AE_BUCKET, bucket(NOW)).status, 200);
        // Digests: only the few epochs an honest initiator could name; bucket requests of a
        // long session may still use an older one.
        let old = NOW - 5 * DIGEST_EPOCH_MS;
        let r = ask(
            PATH_AE_DIGEST,
            serde_json::to_vec(&DigestRequest { at: old }).unwrap(),
        );
        assert_eq!(r.status, 400);
        assert_eq!(&r.body[..], b"reference time too far from current time");
        assert_eq!(ask(PATH_AE_BUCKET, bucket(old)).status, 200);
        assert!(c.is_empty(), "refused requests compute nothing");
    }

    #[test]
    fn many_digest_requests_scan_once() {
        let (_d, s) = open();
        let scans = prometheus::IntCounter::new("scans", "scans").unwrap();
        let c = DigestCache::new(scans.clone());
        let m = membership();
        let mine = msg(&account(1, true), b"mine", NOW - HOUR, NOW + HOUR);
        s.bulk_store(std::slice::from_ref(&mine), NOW).unwrap();
        let body = serde_json::to_vec(&DigestRequest { at: NOW }).unwrap();
        let mut want = Digest::default();
        want.toggle(&mine.hash, mine.expiry_ms);
        for i in 0..50 {
            let r = serve(
                PATH_AE_DIGEST,
                &s,
                &c,
                &m,
                &[1; 32],
                &[2; 32],
                &body,
                NOW + i,
            );
            assert_eq!(decode_digest(&r.body), Some(want.clone()));
        }
        assert_eq!(scans.get(), 1);
        // Our own sessions share the entry.
        let own = cached_digest(&s, &c, &m, SwarmId(0), NOW).unwrap();
        assert_eq!(*own, want);
        assert_eq!(scans.get(), 1);
        // The next epoch is a new digest, computed once.
        let next = NOW + DIGEST_EPOCH_MS;
        let body = serde_json::to_vec(&DigestRequest { at: next }).unwrap();
        for _ in 0..5 {
            serve(PATH_AE_DIGEST, &s, &c, &m, &[1; 32], &[2; 32], &body, next);
        }
        assert_eq!(scans.get(), 2);
    }

    #[test]
    fn the_budget_fits_honest_sessions_and_refuses_more() {
        let b = PeerBudget::for_interval(Duration::from_secs(30));
        assert_eq!(b.burst, 2 * MAX_REQUESTS_PER_SESSION);
        assert!((b.per_second - f64::from(b.burst) / 30.0).abs() < 1e-9);
        let r = Responder::new(Arc::new(cache()), b);
        let m = membership();
        let (me, peer, stranger) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        let t0 = Instant::now();
        // Two whole sessions at once pass; the next request is refused.
        for i in 0..b.burst {
            assert!(r.admit(&m, &me, &peer, t0).is_ok(), "request {i}");
        }
        let refused = r.admit(&m, &me, &peer, t0).unwrap_err();
        assert_eq!(refused.status, 429);
        // One interval later, one more session's worth is back.
        let later = t0 + Duration::from_secs(15);
        let passed = (0..2 * MAX_REQUESTS_PER_SESSION)
            .take_while(|_| r.admit(&m, &me, &peer, later).is_ok())
            .count() as u32;
        assert!(
            (MAX_REQUESTS_PER_SESSION - 1..=MAX_REQUESTS_PER_SESSION).contains(&passed),
            "{passed}"
        );
        // A listed node outside our swarm gets 403 and no place in the table.
        assert_eq!(r.admit(&m, &me, &stranger, t0).unwrap_err().status, 403);
        assert_eq!(r.budgets.lock().unwrap().len(), 1);
        // The table is bounded: with every place taken by a drained bucket, newcomers wait.
        let many: Vec<NodeInfo> = (0..=MAX_BUDGETED_PEERS as u8)
            .map(|i| node(i.wrapping_add(10), 0))
            .chain([node(1, 0)])
            .collect();
        let big = Membership::new(2, "00".repeat(32), many);
        let tight = Responder::new(
            Arc::new(cache()),
            PeerBudget {
                burst: 1,
                per_second: 1e-6,
            },
        );
        for i in 0..MAX_BUDGETED_PEERS as u8 {
            assert!(tight.admit(&big, &me, &[i + 10; 32], t0).is_ok());
        }
        let last = [MAX_BUDGETED_PEERS as u8 + 10; 32];
        assert_eq!(tight.admit(&big, &me, &last, t0).unwrap_err().status, 429);
        assert_eq!(tight.budgets.lock().unwrap().len(), MAX_BUDGETED_PEERS);
    }
}
