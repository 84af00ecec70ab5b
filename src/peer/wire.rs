//! The bulk message format between swarm members: the original's `sn.data` serialization
//! (storage-server.md 3.5), `0x01 ‖ bencode(list of [pubkey33, hash, timestamp, expiry, data,
//! namespace])`.
//!
//! snode writes the namespace as a sixth element (the original 2.8 omitted it, so bootstrapped
//! messages landed in namespace 0 — fixed upstream in 2.11.3) and reads items of 5 or 6
//! elements. Pure: no I/O. Decoding is bounded by the input and never panics.

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

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

fn put_int(out: &mut Vec<u8>, i: i64) {
    out.push(b'i');
    out.extend_from_slice(i.to_string().as_bytes());
    out.push(b'e');
}

/// Encodes one message as a bencoded list item.
fn encode_item(m: &Message, with_namespace: bool, out: &mut Vec<u8>) {
    out.push(b'l');
    put_bytes(out, &m.account.to_bytes());
    put_bytes(out, m.hash.as_bytes());
    put_int(out, m.timestamp_ms);
    put_int(out, m.expiry_ms);
    put_bytes(out, &m.data);
    if with_namespace {
        put_int(out, i64::from(m.namespace.0));
    }
    out.push(b'e');
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
            cur.push(b'e');
            blobs.push(std::mem::replace(&mut cur, vec![VERSION, b'l']));
        }
        cur.extend_from_slice(&item);
    }
    if cur.len() > 2 {
        cur.push(b'e');
        blobs.push(cur);
    }
    blobs
}

struct Reader<'a> {
    b: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn err(&self) -> WireError {
        WireError::Malformed(self.pos)
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), WireError> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err())
        }
    }

    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
        }
        let len: usize = std::str::from_utf8(&self.b[start..self.pos])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| self.err())?;
        self.expect(b':')?;
        let end = self.pos.checked_add(len).ok_or_else(|| self.err())?;
        let out = self.b.get(self.pos..end).ok_or_else(|| self.err())?;
        self.pos = end;
        Ok(out)
    }

    fn int(&mut self) -> Result<i64, WireError> {
        self.expect(b'i')?;
        let start = self.pos;
        while self.peek().is_some_and(|c| c.is_ascii_digit() || c == b'-') {
            self.pos += 1;
        }
        let v = std::str::from_utf8(&self.b[start..self.pos])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| self.err())?;
        self.expect(b'e')?;
        Ok(v)
    }
}

/// Decodes one blob.
pub fn decode_batch(blob: &[u8]) -> Result<Vec<Message>, WireError> {
    if blob.first() != Some(&VERSION) {
        return Err(WireError::Version);
    }
    let mut r = Reader { b: blob, pos: 1 };
    r.expect(b'l')?;
    let mut out = Vec::new();
    while r.peek() == Some(b'l') {
        r.pos += 1;
        let pk = r.bytes()?;
        let account = AccountId::from_bytes(pk).map_err(|_| r.err())?;
        let hash = std::str::from_utf8(r.bytes()?)
            .map_err(|_| r.err())?
            .to_string();
        let timestamp_ms = r.int()?;
        let expiry_ms = r.int()?;
        let data = r.bytes()?.to_vec();
        let namespace = if r.peek() == Some(b'i') {
            Namespace(i16::try_from(r.int()?).map_err(|_| r.err())?)
        } else {
            Namespace::DEFAULT
        };
        r.expect(b'e')?;
        out.push(Message {
            account,
            namespace,
            hash,
            timestamp_ms,
            expiry_ms,
            data,
        });
    }
    r.expect(b'e')?;
    if r.pos != blob.len() {
        return Err(r.err());
    }
    Ok(out)
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
}
