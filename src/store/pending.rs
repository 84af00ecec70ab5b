//! The durable retry queue of replication: swarm forwards that a peer did not acknowledge,
//! kept on disk until the peer does or the entry is no longer worth sending.
//!
//! Owns the `pending` column family: key `due ‖ id` (both big-endian, `due` sign-flipped as
//! every signed key here), so the entries that are due are the head of the family and a
//! retry round reads only them. Must not decide what to retry or when (that is
//! `replication::retry`): it stores, lists, reschedules and removes entries.
//!
//! Entry layout: `version(1) ‖ peer ed25519(32) ‖ attempts(4) ‖ give_up_ms(8) ‖ kind(1) ‖
//! body`, where kind 1 is a message hash and kind 2 is `method length(2) ‖ method ‖ params
//! JSON`. Ids come from the store-wide sequence, so they are never reused, even across a
//! crash.

use super::StoreError;
use super::db::{CF_PENDING, Inner, Store};
use super::keys;
use rocksdb::WriteBatch;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

/// Format byte of every entry.
const ENTRY_VERSION: u8 = 1;
/// Payload kind: a stored message, pushed as bulk data.
const KIND_MESSAGE: u8 = 1;
/// Payload kind: a recursive request, re-sent as a forwarded request.
const KIND_REQUEST: u8 = 2;
/// version ‖ peer ‖ attempts ‖ give-up ‖ kind.
const HEADER_LEN: usize = 1 + 32 + 4 + 8 + 1;
/// due(8) ‖ id(8).
const KEY_LEN: usize = 16;

/// What a retry re-sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingPayload {
    /// A stored message, by hash: the retry loads it and pushes it as bulk data, so it
    /// carries whatever expiry the message has by then (and nothing once it is gone).
    Message {
        /// The message hash.
        hash: String,
    },
    /// Any other recursive request, re-sent as it was forwarded.
    Request {
        /// The method name.
        method: String,
        /// The client's params, as JSON text.
        params_json: String,
    },
}

/// One queued retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingItem {
    /// The peer (ed25519 pubkey) that must receive it.
    pub peer: [u8; 32],
    /// Attempts made so far after the first forward (0 for a fresh entry).
    pub attempts: u32,
    /// Past this time (ms) the entry is dropped unsent.
    pub give_up_ms: i64,
    /// When the entry is (was) due, ms.
    pub due_ms: i64,
    /// What to send.
    pub payload: PendingPayload,
    /// Unique id (the second half of the key).
    id: u64,
}

/// The queue's shared state inside the store.
#[derive(Debug, Default)]
pub(super) struct PendingState {
    /// Entries on disk: read once on open, then kept in step with every write.
    len: AtomicU64,
    /// Serialises done/reschedule, whose read-then-write must not race (adds need no lock:
    /// each writes a fresh key).
    lock: Mutex<()>,
}

/// The key of an entry.
fn pending_key(due_ms: i64, id: u64) -> [u8; KEY_LEN] {
    let mut k = [0u8; KEY_LEN];
    k[..8].copy_from_slice(&keys::ordered_i64(due_ms));
    k[8..].copy_from_slice(&id.to_be_bytes());
    k
}

/// Encodes an entry's value.
fn encode(
    peer: &[u8; 32],
    attempts: u32,
    give_up_ms: i64,
    payload: &PendingPayload,
) -> Result<Vec<u8>, StoreError> {
    let mut v = Vec::with_capacity(HEADER_LEN + 64);
    v.push(ENTRY_VERSION);
    v.extend_from_slice(peer);
    v.extend_from_slice(&attempts.to_be_bytes());
    v.extend_from_slice(&give_up_ms.to_be_bytes());
    match payload {
        PendingPayload::Message { hash } => {
            v.push(KIND_MESSAGE);
            v.extend_from_slice(hash.as_bytes());
        }
        PendingPayload::Request {
            method,
            params_json,
        } => {
            let len = u16::try_from(method.len()).map_err(|_| StoreError::Corrupt {
                what: "retry entry method name longer than 65535 bytes",
            })?;
            v.push(KIND_REQUEST);
            v.extend_from_slice(&len.to_be_bytes());
            v.extend_from_slice(method.as_bytes());
            v.extend_from_slice(params_json.as_bytes());
        }
    }
    Ok(v)
}

/// Decodes a key and value written by this file.
fn decode(key: &[u8], v: &[u8]) -> Result<PendingItem, StoreError> {
    let corrupt = || StoreError::Corrupt {
        what: "retry queue entry",
    };
    if key.len() != KEY_LEN || v.len() < HEADER_LEN || v[0] != ENTRY_VERSION {
        return Err(corrupt());
    }
    let b8 = |s: &[u8]| -> [u8; 8] {
        let mut b = [0u8; 8];
        b.copy_from_slice(s);
        b
    };
    let mut peer = [0u8; 32];
    peer.copy_from_slice(&v[1..33]);
    let attempts = u32::from_be_bytes([v[33], v[34], v[35], v[36]]);
    let give_up_ms = i64::from_be_bytes(b8(&v[37..45]));
    let body = &v[HEADER_LEN..];
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| corrupt());
    let payload = match v[45] {
        KIND_MESSAGE => PendingPayload::Message { hash: text(body)? },
        KIND_REQUEST => {
            if body.len() < 2 {
                return Err(corrupt());
            }
            let len = usize::from(u16::from_be_bytes([body[0], body[1]]));
            let rest = &body[2..];
            if rest.len() < len {
                return Err(corrupt());
            }
            PendingPayload::Request {
                method: text(&rest[..len])?,
                params_json: text(&rest[len..])?,
            }
        }
        _ => return Err(corrupt()),
    };
    Ok(PendingItem {
        peer,
        attempts,
        give_up_ms,
        // Inverse of `keys::ordered_i64`: flip the sign bit back.
        due_ms: (u64::from_be_bytes(b8(&key[..8])) ^ (1 << 63)) as i64,
        payload,
        id: u64::from_be_bytes(b8(&key[8..])),
    })
}

impl PendingItem {
    /// The entry's key.
    fn key(&self) -> [u8; KEY_LEN] {
        pending_key(self.due_ms, self.id)
    }
}

impl Inner {
    /// Counts the queue's entries (once, on open; the queue is small next to the messages).
    pub(super) fn load_pending_len(&mut self) -> Result<(), StoreError> {
        let mut n = 0u64;
        self.iterate(CF_PENDING, &[], None, |_, _| {
            n += 1;
            Ok(true)
        })?;
        *self.pending.len.get_mut() = n;
        Ok(())
    }
}

impl Store {
    /// Queues `payload` for `peer`, first due at `due_ms`, dropped unsent after `give_up_ms`.
    /// Durable once this returns (same WAL rule as message writes).
    pub fn pending_add(
        &self,
        peer: &[u8; 32],
        payload: &PendingPayload,
        due_ms: i64,
        give_up_ms: i64,
    ) -> Result<(), StoreError> {
        let i = &self.inner;
        let id = i.next_seq()?;
        let mut batch = WriteBatch::default();
        batch.put_cf(
            i.cf(CF_PENDING)?,
            pending_key(due_ms, id),
            encode(peer, 0, give_up_ms, payload)?,
        );
        i.write(batch, "queue retry")?;
        i.pending.len.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Up to `limit` entries due at `now_ms`, earliest first. An entry that does not decode
    /// (corruption) is removed and logged, so it cannot block the queue.
    pub fn pending_due(&self, now_ms: i64, limit: usize) -> Result<Vec<PendingItem>, StoreError> {
        let i = &self.inner;
        let upper = now_ms.checked_add(1).map(|t| keys::ordered_i64(t).to_vec());
        let mut out = Vec::new();
        let mut corrupt: Vec<Vec<u8>> = Vec::new();
        i.iterate(CF_PENDING, &[], upper, |k, v| {
            match decode(k, v) {
                Ok(item) => out.push(item),
                Err(_) => corrupt.push(k.to_vec()),
            }
            Ok(out.len() < limit)
        })?;
        if !corrupt.is_empty() {
            tracing::warn!(
                count = corrupt.len(),
                "dropping undecodable retry queue entries"
            );
            let _g = i
                .pending
                .lock
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let mut batch = WriteBatch::default();
            for k in &corrupt {
                batch.delete_cf(i.cf(CF_PENDING)?, k);
            }
            i.write(batch, "drop corrupt retry")?;
            sub_len(i, corrupt.len() as u64);
        }
        Ok(out)
    }

    /// Removes a delivered (or abandoned) entry. Removing one twice is harmless.
    pub fn pending_done(&self, item: &PendingItem) -> Result<(), StoreError> {
        self.pending_done_many(std::slice::from_ref(item))
    }

    /// Removes several entries in one write.
    pub fn pending_done_many(&self, items: &[PendingItem]) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let i = &self.inner;
        let _g = i
            .pending
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let cf = i.cf(CF_PENDING)?;
        let mut batch = WriteBatch::default();
        let mut removed = 0u64;
        for item in items {
            let key = item.key();
            if i.get(CF_PENDING, &key, "read retry")?.is_some() {
                batch.delete_cf(cf, key);
                removed += 1;
            }
        }
        if removed > 0 {
            i.write(batch, "finish retry")?;
            sub_len(i, removed);
        }
        Ok(())
    }

    /// Moves an entry to `due_ms` with one more attempt counted. Does nothing if the entry
    /// is gone.
    pub fn pending_reschedule(&self, item: &PendingItem, due_ms: i64) -> Result<(), StoreError> {
        self.pending_reschedule_many(&[(item.clone(), due_ms)])
    }

    /// Reschedules several entries in one write.
    pub fn pending_reschedule_many(&self, items: &[(PendingItem, i64)]) -> Result<(), StoreError> {
        if items.is_empty() {
            return Ok(());
        }
        let i = &self.inner;
        let _g = i
            .pending
            .lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let cf = i.cf(CF_PENDING)?;
        let mut batch = WriteBatch::default();
        for (item, due_ms) in items {
            let old = item.key();
            if i.get(CF_PENDING, &old, "read retry")?.is_none() {
                continue;
            }
            batch.delete_cf(cf, old);
            batch.put_cf(
                cf,
                pending_key(*due_ms, item.id),
                encode(
                    &item.peer,
                    item.attempts.saturating_add(1),
                    item.give_up_ms,
                    &item.payload,
                )?,
            );
        }
        if !batch.is_empty() {
            i.write(batch, "reschedule retry")?;
        }
        Ok(())
    }

    /// Entries in the queue (a counter: free to call on every metrics refresh).
    pub fn pending_len(&self) -> u64 {
        self.inner.pending.len.load(Ordering::Relaxed)
    }
}

/// Lowers the length counter without wrapping.
fn sub_len(i: &Inner, n: u64) {
    // fetch_update only fails when the closure returns None, which it never does.
    let _ = i
        .pending
        .len
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(n))
        });
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn msg_payload(h: &str) -> PendingPayload {
        PendingPayload::Message {
            hash: h.to_string(),
        }
    }

    fn req_payload() -> PendingPayload {
        PendingPayload::Request {
            method: "delete_all".into(),
            params_json: r#"{"pubkey":"05ab","timestamp":1}"#.into(),
        }
    }

    #[test]
    fn entries_round_trip_through_the_encoding() {
        for payload in [msg_payload("h"), msg_payload(""), req_payload()] {
            let v = encode(&[7; 32], 3, -5, &payload).expect("encode");
            let item = decode(&pending_key(-9, 42), &v).expect("decode");
            assert_eq!(item.peer, [7; 32]);
            assert_eq!(
                (item.attempts, item.give_up_ms, item.due_ms, item.id),
                (3, -5, -9, 42)
            );
            assert_eq!(item.payload, payload);
        }
        assert!(decode(&[0; 16], &[]).is_err());
        assert!(
            decode(
                &[0; 15],
                &encode(&[0; 32], 0, 0, &req_payload()).expect("e")
            )
            .is_err()
        );
        let mut bad = encode(&[0; 32], 0, 0, &req_payload()).expect("e");
        bad.truncate(HEADER_LEN + 3);
        assert!(decode(&[0; 16], &bad).is_err());
        bad[HEADER_LEN - 1] = 9;
        assert!(decode(&[0; 16], &bad).is_err());
    }

    #[test]
    fn due_entries_come_earliest_first_and_only_when_due() {
        let dir = tempdir();
        let s = open(&dir);
        s.pending_add(&[1; 32], &msg_payload("c"), NOW + 30, NOW + HOUR)
            .expect("add");
        s.pending_add(&[2; 32], &msg_payload("a"), NOW + 10, NOW + HOUR)
            .expect("add");
        s.pending_add(&[3; 32], &req_payload(), NOW + 20, NOW + HOUR)
            .expect("add");
        s.pending_add(&[4; 32], &msg_payload("past"), NOW - HOUR, NOW + HOUR)
            .expect("add");
        assert_eq!(s.pending_len(), 4);
        assert!(s.pending_due(NOW - HOUR - 1, 10).expect("due").is_empty());
        let due = s.pending_due(NOW + 20, 10).expect("due");
        let peers: Vec<u8> = due.iter().map(|i| i.peer[0]).collect();
        assert_eq!(peers, vec![4, 2, 3]);
        assert_eq!(due[2].payload, req_payload());
        // The limit keeps the earliest.
        let two = s.pending_due(NOW + HOUR, 2).expect("due");
        assert_eq!(
            two.iter().map(|i| i.peer[0]).collect::<Vec<_>>(),
            vec![4, 2]
        );
    }

    #[test]
    fn reschedule_counts_attempts_and_done_removes() {
        let dir = tempdir();
        let s = open(&dir);
        s.pending_add(&[1; 32], &msg_payload("x"), NOW, NOW + HOUR)
            .expect("add");
        s.pending_add(&[2; 32], &msg_payload("y"), NOW, NOW + HOUR)
            .expect("add");
        let due = s.pending_due(NOW, 10).expect("due");
        s.pending_reschedule(&due[0], NOW + 500)
            .expect("reschedule");
        // Rescheduling a stale copy of the entry (already moved) does nothing.
        s.pending_reschedule(&due[0], NOW + 900)
            .expect("stale reschedule");
        assert_eq!(s.pending_len(), 2);
        let now_due = s.pending_due(NOW + 499, 10).expect("due");
        assert_eq!(now_due, vec![due[1].clone()]);
        let later = s.pending_due(NOW + 500, 10).expect("due");
        assert_eq!(later.len(), 2);
        let moved = later.iter().find(|i| i.peer == [1; 32]).expect("moved");
        assert_eq!((moved.attempts, moved.due_ms), (1, NOW + 500));
        assert_eq!(moved.payload, msg_payload("x"));
        s.pending_done(moved).expect("done");
        s.pending_done(moved).expect("done twice is harmless");
        assert_eq!(s.pending_len(), 1);
        s.pending_done_many(&later).expect("done many");
        assert_eq!(s.pending_len(), 0);
        assert!(s.pending_due(i64::MAX, 10).expect("due").is_empty());
    }

    #[test]
    fn queue_survives_reopen() {
        let dir = tempdir();
        {
            let s = open(&dir);
            for n in 0..5u8 {
                s.pending_add(
                    &[n; 32],
                    &msg_payload(&n.to_string()),
                    NOW + i64::from(n),
                    NOW + HOUR,
                )
                .expect("add");
            }
            let first = s.pending_due(NOW, 1).expect("due");
            s.pending_done(&first[0]).expect("done");
            let second = s.pending_due(NOW + 1, 1).expect("due");
            s.pending_reschedule(&second[0], NOW + 100)
                .expect("reschedule");
        }
        let s = open(&dir);
        assert_eq!(s.pending_len(), 4);
        let all = s.pending_due(i64::MAX - 1, 100).expect("due");
        let order: Vec<(u8, u32)> = all.iter().map(|i| (i.peer[0], i.attempts)).collect();
        assert_eq!(order, vec![(2, 0), (3, 0), (4, 0), (1, 1)]);
        // New ids never collide with ones handed out before the reopen.
        s.pending_add(&[9; 32], &req_payload(), NOW + 2, NOW + HOUR)
            .expect("add");
        assert_eq!(s.pending_due(i64::MAX - 1, 100).expect("due").len(), 5);
    }

    #[test]
    fn corrupt_entries_are_dropped_not_blocking() {
        let dir = tempdir();
        let s = open(&dir);
        s.pending_add(&[1; 32], &msg_payload("ok"), NOW + 1, NOW + HOUR)
            .expect("add");
        let mut b = WriteBatch::default();
        b.put_cf(
            s.inner.cf(CF_PENDING).expect("cf"),
            pending_key(NOW, 1 << 60),
            b"garbage",
        );
        s.inner.write(b, "test").expect("write");
        s.inner.pending.len.fetch_add(1, Ordering::Relaxed);
        let due = s.pending_due(NOW + 1, 10).expect("due");
        assert_eq!(due.len(), 1);
        assert_eq!(s.pending_len(), 1);
        assert_eq!(s.pending_due(NOW + 1, 10).expect("due"), due);
    }
}
