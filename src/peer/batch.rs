//! The coalesced forward (`/snode/v1/storage_cc_batch`): several `/snode/v1/storage_cc`
//! bodies for one peer carried as one exchange, answered with one `[status, body]` per body,
//! in order.
//!
//! Request: the bencoded list of the bodies, each exactly what `/snode/v1/storage_cc` takes
//! (`l <body> <body> … e`). Answer: `l l i<status>e <body> e … e`, one pair per request, in
//! the same order. The authentication of the exchange (peer MAC or the QUIC handshake) covers
//! every item; each item keeps its own `accepted_at`, so the receiver's windows and ordering
//! rules are those of a single forward. Owns the two shapes and their bounds. Pure: no I/O,
//! never panics on any input.

use bytes::Bytes;

use crate::bencode::{self, Decoder, Limits};

/// Most forwards in one batch. A sender flushes a full batch at once; a receiver refuses more
/// (a hostile member must not make one exchange hold unbounded work).
pub const MAX_BATCH_ITEMS: usize = 64;
/// Most body bytes a sender puts in one batch (a single larger forward goes alone). A store
/// forward is at most about 105 kB (76,800 bytes of data in base64, plus params), so 2 MiB
/// holds about twenty of the largest and all 64 of typical 1–10 kB messages.
pub const MAX_BATCH_BODY_BYTES: usize = 2 << 20;

/// The request body of a batch of `bodies`.
pub fn encode_requests<B: AsRef<[u8]>>(bodies: &[B]) -> Vec<u8> {
    let len = bodies.iter().map(|b| b.as_ref().len() + 12).sum::<usize>() + 2;
    let mut out = Vec::with_capacity(len);
    bencode::put_list(&mut out);
    for b in bodies {
        bencode::put_bytes(&mut out, b.as_ref());
    }
    bencode::put_end(&mut out);
    out
}

/// The bodies of a batch request: `None` unless it is a list of 1 to [`MAX_BATCH_ITEMS`] byte
/// strings and nothing else.
pub fn decode_requests(b: &[u8]) -> Option<Vec<&[u8]>> {
    let mut d = Decoder::new(
        b,
        Limits {
            max_len: usize::MAX,
            max_depth: 1,
            max_values: MAX_BATCH_ITEMS + 1,
        },
    )
    .ok()?;
    d.list().ok()?;
    let mut out = Vec::new();
    while d.next_item().ok()? {
        out.push(d.bytes().ok()?);
    }
    d.finish().ok()?;
    (!out.is_empty() && out.len() <= MAX_BATCH_ITEMS).then_some(out)
}

/// Appends one peer answer, `l i<status>e <body> e` (also the whole answer of a single
/// peer command over QUIC, `peer::quic`).
pub(crate) fn put_answer(out: &mut Vec<u8>, status: u16, body: &[u8]) {
    bencode::put_list(out);
    bencode::put_int(out, i64::from(status));
    bencode::put_bytes(out, body);
    bencode::put_end(out);
}

/// Reads one [`put_answer`] pair at the decoder's position, which must be an item.
pub(crate) fn read_answer(d: &mut Decoder<'_>) -> Option<(u16, Bytes)> {
    d.list().ok()?;
    d.next_item().ok()?.then_some(())?;
    let status = u16::try_from(d.int().ok()?).ok()?;
    d.next_item().ok()?.then_some(())?;
    let body = Bytes::copy_from_slice(d.bytes().ok()?);
    (!d.next_item().ok()?).then_some(())?;
    Some((status, body))
}

/// The answer body of a batch: one `[status, body]` per request, in order.
pub fn encode_answers<B: AsRef<[u8]>>(answers: &[(u16, B)]) -> Vec<u8> {
    let len = answers
        .iter()
        .map(|(_, b)| b.as_ref().len() + 20)
        .sum::<usize>()
        + 2;
    let mut out = Vec::with_capacity(len);
    bencode::put_list(&mut out);
    for (status, body) in answers {
        put_answer(&mut out, *status, body.as_ref());
    }
    bencode::put_end(&mut out);
    out
}

/// Reads [`encode_answers`]'s bytes: `None` unless it holds exactly `expected` well-formed
/// pairs (an answer for another batch, or a truncated one, is no answer at all).
pub fn decode_answers(b: &[u8], expected: usize) -> Option<Vec<(u16, Bytes)>> {
    let mut d = Decoder::new(
        b,
        Limits {
            max_len: usize::MAX,
            max_depth: 2,
            max_values: expected.saturating_mul(3).saturating_add(1),
        },
    )
    .ok()?;
    d.list().ok()?;
    let mut out = Vec::with_capacity(expected.min(MAX_BATCH_ITEMS));
    while d.next_item().ok()? {
        out.push(read_answer(&mut d)?);
    }
    d.finish().ok()?;
    (out.len() == expected).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_refuse_other_shapes() {
        let bodies = [&b"{\"method\":\"store\"}"[..], b"", b"x"];
        let enc = encode_requests(&bodies);
        assert_eq!(enc, b"l18:{\"method\":\"store\"}0:1:xe");
        assert_eq!(decode_requests(&enc), Some(bodies.to_vec()));
        let too_many = encode_requests(&vec![b"a"; MAX_BATCH_ITEMS + 1]);
        assert_eq!(decode_requests(&too_many), None);
        let full = encode_requests(&vec![b"a"; MAX_BATCH_ITEMS]);
        assert_eq!(
            decode_requests(&full).map(|v| v.len()),
            Some(MAX_BATCH_ITEMS)
        );
        for bad in [
            &b"le"[..],
            b"l1:ae1:b",
            b"li5ee",
            b"ll1:aee",
            b"1:a",
            b"l1:a",
            b"",
        ] {
            assert_eq!(
                decode_requests(bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn answers_round_trip_and_must_match_the_batch() {
        let enc = encode_answers(&[(200, &b"{}"[..]), (421, b"wrong swarm")]);
        assert_eq!(enc, b"lli200e2:{}eli421e11:wrong swarmee");
        let dec = decode_answers(&enc, 2).expect("decodes");
        assert_eq!(dec[0], (200, Bytes::from_static(b"{}")));
        assert_eq!(dec[1], (421, Bytes::from_static(b"wrong swarm")));
        // One answer short, one too many, or any other shape: no answer at all.
        assert_eq!(decode_answers(&enc, 3), None);
        assert_eq!(decode_answers(&enc, 1), None);
        for bad in [
            &b"lli200eee"[..],
            b"lli70000e0:ee",
            b"lli200e0:0:ee",
            b"li200e0:e",
            b"lli200e0:e",
        ] {
            assert_eq!(
                decode_answers(bad, 1),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
