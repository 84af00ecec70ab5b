//! The body of a node-to-node onion hop (`POST /snode/v1/onion`): the original's
//! `sn.onion_request` data part, kept byte for byte (storage-server.md 2.4):
//! a bencoded dict with sorted keys
//! `{"data": <next layer's ciphertext>, "enc_type": <name>, "ephemeral_key": <32 raw bytes>,
//! "hop_no": <int>}`.
//!
//! snode carries it over signed HTTPS instead of OxenMQ; the dict stays the original's so the
//! hop is easy to bridge and to recognise. Owns only the shape of the dict (which keys, their
//! defaults and clamps); the bencode rules are `bencode`'s. The route that receives it and
//! what a node does with the layer are `api::onion`'s. Pure: no I/O; decoding is bounded by
//! its input and never panics.

use crate::bencode::{self, Decoder, Kind, Limits};
use crate::onion::EncType;

/// One hop's request, as the receiving node reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopRequest<'a> {
    /// The layer's ciphertext (borrowed from the body).
    pub data: &'a [u8],
    /// The layer's cipher (`aes-gcm` when absent, as the original defaults).
    pub enc_type: EncType,
    /// The client's ephemeral X25519 key of this layer.
    pub ephemeral_key: [u8; 32],
    /// The hop number, clamped to ≥ 1 as the original does.
    pub hop_no: u32,
}

/// Why a hop body did not decode (the receiving node answers `400 Error parsing onion
/// request: <this>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HopError {
    /// Not a bencoded dict of byte strings and integers.
    #[error("malformed hop request")]
    Malformed,
    /// No `data`.
    #[error("missing data")]
    MissingData,
    /// No valid 32-byte `ephemeral_key`.
    #[error("invalid ephemeral_key")]
    EphemeralKey,
    /// `enc_type` names no known cipher.
    #[error("unknown enc_type")]
    EncType,
}

/// A hop body is one small dict inside a request body the router already limits to 10 MiB.
const LIMITS: Limits = Limits {
    max_len: 10 * 1024 * 1024,
    max_depth: 1,
    max_values: 1_000,
};

/// Encodes a hop request (keys in sorted order, as bencode requires).
pub fn encode_hop(
    data: &[u8],
    enc_type: EncType,
    ephemeral_key: &[u8; 32],
    hop_no: u32,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 96);
    bencode::put_dict(&mut out);
    bencode::put_bytes(&mut out, b"data");
    bencode::put_bytes(&mut out, data);
    bencode::put_bytes(&mut out, b"enc_type");
    bencode::put_bytes(&mut out, enc_type.as_str().as_bytes());
    bencode::put_bytes(&mut out, b"ephemeral_key");
    bencode::put_bytes(&mut out, ephemeral_key);
    bencode::put_bytes(&mut out, b"hop_no");
    bencode::put_int(&mut out, i64::from(hop_no));
    bencode::put_end(&mut out);
    out
}

/// The fields of the dict, read with the shared reader; any bencode error is `Malformed`.
struct Fields<'a> {
    data: Option<&'a [u8]>,
    enc: Option<&'a [u8]>,
    eph: Option<&'a [u8]>,
    hop: Option<i64>,
}

fn read_fields(body: &[u8]) -> Result<Fields<'_>, bencode::Error> {
    let mut f = Fields {
        data: None,
        enc: None,
        eph: None,
        hop: None,
    };
    let mut d = Decoder::new(body, LIMITS)?;
    d.dict()?;
    while let Some(key) = d.next_key()? {
        match key {
            b"data" => f.data = Some(d.bytes()?),
            b"enc_type" => f.enc = Some(d.bytes()?),
            b"ephemeral_key" => f.eph = Some(d.bytes()?),
            b"hop_no" => f.hop = Some(d.int()?),
            // The original only ever sends byte strings and integers; a list or dict here is
            // refused (and the depth limit of 1 refuses it too).
            _ => match d.peek()? {
                Kind::Int | Kind::Bytes => d.skip()?,
                _ => return Err(bencode::Error::Malformed(d.position())),
            },
        }
    }
    d.finish()?;
    Ok(f)
}

/// Decodes a hop request. Unknown keys (byte strings or integers) are skipped, so a newer
/// sender can add fields; keys must be sorted and unique, as bencode requires.
pub fn decode_hop(body: &[u8]) -> Result<HopRequest<'_>, HopError> {
    let f = read_fields(body).map_err(|_| HopError::Malformed)?;
    let data = f.data.ok_or(HopError::MissingData)?;
    let ephemeral_key: [u8; 32] = f
        .eph
        .and_then(|b| b.try_into().ok())
        .ok_or(HopError::EphemeralKey)?;
    let enc_type = match f.enc {
        None => EncType::default(),
        Some(name) => std::str::from_utf8(name)
            .ok()
            .and_then(EncType::from_name)
            .ok_or(HopError::EncType)?,
    };
    // The original clamps to ≥ 1 (a hop is at least the second node); huge values saturate
    // and are refused by the hop limit.
    let hop_no = u32::try_from(f.hop.unwrap_or(1).max(1)).unwrap_or(u32::MAX);
    Ok(HopRequest {
        data,
        enc_type,
        ephemeral_key,
        hop_no,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_is_the_originals_sorted_dict() {
        let enc = encode_hop(b"ct", EncType::XChaCha20, &[0x41; 32], 2);
        let mut want = b"d4:data2:ct8:enc_type9:xchacha2013:ephemeral_key32:".to_vec();
        want.extend_from_slice(&[0x41; 32]);
        want.extend_from_slice(b"6:hop_noi2ee");
        assert_eq!(enc, want);
        let dec = decode_hop(&enc).unwrap();
        assert_eq!(
            dec,
            HopRequest {
                data: b"ct",
                enc_type: EncType::XChaCha20,
                ephemeral_key: [0x41; 32],
                hop_no: 2
            }
        );
    }

    #[test]
    fn defaults_clamps_and_unknown_keys() {
        let mut body = b"d4:data0:13:ephemeral_key32:".to_vec();
        body.extend_from_slice(&[1; 32]);
        body.extend_from_slice(b"5:extrai7ee");
        let dec = decode_hop(&body).unwrap();
        assert_eq!(
            (dec.enc_type, dec.hop_no, dec.data),
            (EncType::AesGcm, 1, &b""[..])
        );

        for (hop, want) in [("-3", 1), ("0", 1), ("16", 16), ("99999999999", u32::MAX)] {
            let mut body = b"d4:data1:x13:ephemeral_key32:".to_vec();
            body.extend_from_slice(&[1; 32]);
            body.extend_from_slice(format!("6:hop_noi{hop}ee").as_bytes());
            assert_eq!(decode_hop(&body).unwrap().hop_no, want, "{hop}");
        }
        let enc = encode_hop(b"x", EncType::AesCbc, &[2; 32], u32::MAX);
        assert_eq!(decode_hop(&enc).unwrap().hop_no, u32::MAX);
    }

    #[test]
    fn garbage_is_refused_without_panicking() {
        let good = encode_hop(b"abc", EncType::AesGcm, &[3; 32], 1);
        for cut in 0..good.len() {
            assert!(decode_hop(&good[..cut]).is_err(), "prefix {cut}");
        }
        let mut trailing = good.clone();
        trailing.push(b'x');
        assert_eq!(decode_hop(&trailing), Err(HopError::Malformed));

        let short_key = b"d4:data1:x13:ephemeral_key3:abce".to_vec();
        assert_eq!(decode_hop(&short_key), Err(HopError::EphemeralKey));
        let mut bad_enc = b"d4:data1:x8:enc_type5:rot1313:ephemeral_key32:".to_vec();
        bad_enc.extend_from_slice(&[1; 32]);
        bad_enc.push(b'e');
        assert_eq!(decode_hop(&bad_enc), Err(HopError::EncType));
        let mut no_data = b"d13:ephemeral_key32:".to_vec();
        no_data.extend_from_slice(&[1; 32]);
        no_data.push(b'e');
        assert_eq!(decode_hop(&no_data), Err(HopError::MissingData));

        for bad in [
            &b""[..],
            b"le",
            b"d",
            b"d4:datai1ee",
            b"d4:data01:xe",
            b"d4:data99999999999:xe",
            b"d4:data1:x4:data1:xe",
            b"d8:enc_type3:gcm4:data1:xe",
            b"d4:datal1:xee",
            b"d6:hop_no1:xe",
            b"d4:data-1:e",
            // Canonical bencode only (the shared reader): no leading zeros, `-0` or `+`.
            b"d4:data1:x6:hop_noi01ee",
            b"d4:data1:x6:hop_noi-0ee",
            b"d4:data1:x6:hop_noi+1ee",
            // Unknown keys may carry byte strings or integers, nothing nested.
            b"d4:data1:x5:extrali1eee",
        ] {
            assert!(decode_hop(bad).is_err(), "{bad:?}");
        }
    }
}
