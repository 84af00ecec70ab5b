//! The bulk message format between swarm members: the original's `sn.data` serialization
//! (storage-server.md 3.5), `0x01 ‖ bencode(list of [pubkey33, hash, timestamp, expiry, data,
//! namespace])`.
//!
//! snode writes the namespace as a sixth element (the original 2.8 omitted it, so bootstrapped
//! messages landed in namespace 0 — fixed upstream in 2.11.3) and reads items of 5 or 6
//! elements, or 7: a message whose expiry a client's `expire` moved carries its history
//! ([`ExpiryLog`](crate::expiry_log::ExpiryLog), encoded) as a seventh, so that a member that
//! missed a request takes it from the copy (snode only: the original has no such element, and
//! reads none). Owns the shape of a batch; the bencode rules are `bencode`'s (canonical, so a
//! blob has one spelling). Pure: no I/O. Decoding is bounded by the input and never panics.

use crate::bencode::{self, Decoder, Limits};
use crate::expiry_log::ExpiryLog;
use crate::message::{AccountId, Message, Namespace};

/// The only version byte understood.
const VERSION: u8 = 0x01;
/// The original's largest blob.
pub const MAX_BATCH_BYTES: usize = 9_000_000;

/// Why a blob did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not version 1.
    #[error("unsupported serialization version")]
    Version,
    /// Broken bencode or wrong item shape.
    #[error("malformed message batch at byte {0}")]
    Malformed(usize),
}

/// The reader's bounds. Length: the transports bound a blob (the peer router's body limit,
/// the fetch answer's `MAX_FETCH_BYTES`), so none is added here. Depth: a list of lists.
/// Values: a reader allocates nothing per value and each message is tens of bytes, so the
/// messages decoded are bounded by the blob; a count limit would only refuse real batches.
const LIMITS: Limits = Limits {
    max_len: usize::MAX,
    max_depth: 2,
    max_values: usize::MAX,
};

/// Encodes one message as a bencoded list item.
fn encode_item(m: &Message, with_namespace: bool, out: &mut Vec<u8>) {
    bencode::put_list(out);
    bencode::put_bytes(out, &m.account.to_bytes());
    bencode::put_bytes(out, m.hash.as_bytes());
    bencode::put_int(out, m.timestamp_ms);
    bencode::put_int(out, m.expiry_ms);
    bencode::put_bytes(out, &m.data);
    if with_namespace {
        bencode::put_int(out, i64::from(m.namespace.0));
        if let Some(log) = &m.expiry_log {
            bencode::put_bytes(out, &log.encode());
        }
    }
    bencode::put_end(out);
}

/// Splits `msgs` into blobs of at most `max_bytes` each (a single larger message gets a blob
/// of its own).
pub fn encode_batches(msgs: &[Message], max_bytes: usize) -> Vec<Vec<u8>> {
    let mut blobs = Vec::new();
    let mut cur = vec![VERSION, b'l'];
    let mut item = Vec::new();
    for m in msgs {
        item.clear();
        encode_item(m, true, &mut item);
        if cur.len() > 2 && cur.len() + item.len() + 1 > max_bytes {
            bencode::put_end(&mut cur);
            blobs.push(std::mem::replace(&mut cur, vec![VERSION, b'l']));
        }
        cur.extend_from_slice(&item);
    }
    if cur.len() > 2 {
        bencode::put_end(&mut cur);
        blobs.push(cur);
    }
    blobs
}

/// Decodes one blob.
pub fn decode_batch(blob: &[u8]) -> Result<Vec<Message>, WireError> {
    let Some((&VERSION, list)) = blob.split_first() else {
        return Err(WireError::Version);
    };
    // Positions count from the start of the blob, version byte included.
    let at = |e: bencode::Error| WireError::Malformed(e.position().unwrap_or(0) + 1);
    let mut d = Decoder::new(list, LIMITS).map_err(at)?;
    d.list().map_err(at)?;
    let mut out = Vec::new();
    while d.next_item().map_err(at)? {
        out.push(decode_item(&mut d).map_err(at)?);
    }
    d.finish().map_err(at)?;
    Ok(out)
}

/// Moves to the next element of an item, which must have one.
fn field(d: &mut Decoder<'_>) -> Result<(), bencode::Error> {
    if d.next_item()? {
        Ok(())
    } else {
        Err(bencode::Error::Malformed(d.position().saturating_sub(1)))
    }
}

/// Reads one item: a list of 5 elements, 6 with the namespace, 7 with an expiry history.
fn decode_item(d: &mut Decoder<'_>) -> Result<Message, bencode::Error> {
    d.list()?;
    field(d)?;
    let at = d.position();
    let account = AccountId::from_bytes(d.bytes()?).map_err(|_| bencode::Error::Malformed(at))?;
    field(d)?;
    let at = d.position();
    let hash = std::str::from_utf8(d.bytes()?)
        .map_err(|_| bencode::Error::Malformed(at))?
        .to_string();
    field(d)?;
    let timestamp_ms = d.int()?;
    field(d)?;
    let expiry_ms = d.int()?;
    field(d)?;
    let data = d.bytes()?.to_vec();
    let mut expiry_log = None;
    let namespace = if d.next_item()? {
        let at = d.position();
        let ns = Namespace(i16::try_from(d.int()?).map_err(|_| bencode::Error::Malformed(at))?);
        if d.next_item()? {
            let at = d.position();
            let log = ExpiryLog::decode(d.bytes()?).ok_or(bencode::Error::Malformed(at))?;
            // The expiry is the history's fold: an item whose two disagree is not ours.
            if log.expiry() != expiry_ms || d.next_item()? {
                return Err(bencode::Error::Malformed(d.position()));
            }
            expiry_log = Some(log);
        }
        ns
    } else {
        Namespace::DEFAULT
    };
    Ok(Message {
        account,
        namespace,
        hash,
        timestamp_ms,
        expiry_ms,
        data,
        expiry_log,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vector_message() -> Message {
        Message {
            account: AccountId::from_hex(
                "054368520005786b249bcd461d28f75e560ea794014eeb17fcf6003f37d876783e",
            )
            .expect("pk"),
            namespace: Namespace::DEFAULT,
            hash: "hash\0\u{1}\u{2}\u{3}".to_string(),
            timestamp_ms: 12_345_678,
            expiry_ms: 12_345_678 + 3_456_000,
            data: b"da\0ta".to_vec(),
            expiry_log: None,
        }
    }

    fn upstream_item() -> Vec<u8> {
        let mut v = b"l33:".to_vec();
        v.extend_from_slice(
            &hex::decode("054368520005786b249bcd461d28f75e560ea794014eeb17fcf6003f37d876783e")
                .expect("hex"),
        );
        v.extend_from_slice(b"8:hash\x00\x01\x02\x03i12345678ei15801678e5:da\x00tae");
        v
    }

    #[test]
    fn upstream_vector_without_namespace_decodes() {
        let mut blob = vec![1u8, b'l'];
        blob.extend(upstream_item());
        blob.extend(upstream_item());
        blob.push(b'e');
        let msgs = decode_batch(&blob).expect("decodes");
        assert_eq!(msgs, vec![vector_message(), vector_message()]);
    }

    #[test]
    fn encoding_matches_upstream_plus_namespace() {
        let mut m = vector_message();
        let blob = encode_batches(std::slice::from_ref(&m), MAX_BATCH_BYTES);
        let mut expected = vec![1u8, b'l'];
        let mut item = upstream_item();
        item.pop();
        item.extend_from_slice(b"i0ee");
        expected.extend(item);
        expected.push(b'e');
        assert_eq!(blob, vec![expected]);
        m.namespace = Namespace(-21);
        let back = decode_batch(&encode_batches(std::slice::from_ref(&m), MAX_BATCH_BYTES)[0])
            .expect("decodes");
        assert_eq!(back, vec![m]);
    }

    #[test]
    fn batches_split_at_the_limit() {
        let mut m = vector_message();
        m.data = vec![7u8; 100_000];
        let one = encode_batches(std::slice::from_ref(&m), MAX_BATCH_BYTES)[0].len();
        let fit = MAX_BATCH_BYTES / (one - 3);
        let msgs = vec![m.clone(); fit];
        assert_eq!(encode_batches(&msgs, MAX_BATCH_BYTES).len(), 1);
        let msgs = vec![m; fit + 1];
        let blobs = encode_batches(&msgs, MAX_BATCH_BYTES);
        assert_eq!(blobs.len(), 2);
        let total: usize = blobs
            .iter()
            .map(|b| decode_batch(b).expect("ok").len())
            .sum();
        assert_eq!(total, fit + 1);
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        for bad in [
            &b""[..],
            b"\x02le",
            b"\x01",
            b"\x01l",
            b"\x01ll99999999999999999999:e",
            b"\x01ll3:abce",
            b"\x01lei",
        ] {
            assert!(decode_batch(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn items_of_other_shapes_are_refused() {
        let blob = |item: Vec<u8>| [vec![1u8, b'l'], item, vec![b'e']].concat();
        let with_tail = |tail: &[u8]| {
            let mut item = upstream_item();
            item.pop();
            item.extend_from_slice(tail);
            blob(item)
        };
        assert!(decode_batch(&with_tail(b"i-21ee")).is_ok());
        // A sixth element that is not an integer, a seventh, a namespace beyond i16.
        assert!(decode_batch(&with_tail(b"1:xe")).is_err());
        assert!(decode_batch(&with_tail(b"i0ei0ee")).is_err());
        assert!(decode_batch(&with_tail(b"i32768ee")).is_err());
        // Four elements.
        let mut short = upstream_item();
        let cut = short.len() - b"5:da\x00tae".len();
        short.truncate(cut);
        short.push(b'e');
        assert!(decode_batch(&blob(short)).is_err());
        // Canonical bencode only (the shared reader): no leading zeros.
        let item = upstream_item();
        let zero_len = [&b"l033:"[..], &item[4..]].concat();
        assert!(decode_batch(&blob(zero_len)).is_err());
        let at = item
            .windows(10)
            .position(|w| w == b"i12345678e")
            .expect("timestamp");
        let zero_int = [&item[..=at], &b"0"[..], &item[at + 1..]].concat();
        assert!(decode_batch(&blob(zero_int)).is_err());
    }

    #[test]
    fn an_expiry_history_travels_as_a_seventh_element_and_must_match_the_expiry() {
        use crate::expiry_log::{ExpiryOp, OpKind};
        let mut m = vector_message();
        let mut log = ExpiryLog::new(m.expiry_ms);
        log.insert(ExpiryOp {
            at_ms: m.timestamp_ms + 1,
            kind: OpKind::Shorten,
            value_ms: m.timestamp_ms + 60_000,
        });
        m.expiry_ms = log.expiry();
        m.expiry_log = Some(log);
        let blob = &encode_batches(std::slice::from_ref(&m), MAX_BATCH_BYTES)[0];
        assert_eq!(decode_batch(blob).expect("decodes"), vec![m.clone()]);
        // The same item claiming the old expiry: its history does not explain it.
        let mut lying = m.clone();
        lying.expiry_ms += 1;
        let blob = &encode_batches(std::slice::from_ref(&lying), MAX_BATCH_BYTES)[0];
        assert!(decode_batch(blob).is_err());
        // A broken history, or an eighth element.
        let good = encode_batches(std::slice::from_ref(&m), MAX_BATCH_BYTES)[0].clone();
        let mut eighth = good[..good.len() - 2].to_vec();
        eighth.extend_from_slice(b"i0eee");
        assert!(decode_batch(&eighth).is_err());
        let mut broken = good.clone();
        let n = broken.len();
        broken[n - 3] ^= 0xff;
        assert!(
            decode_batch(&broken).is_err(),
            "a changed request changes the fold"
        );
    }
}
