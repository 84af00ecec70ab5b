//! The messages of libquic's `BTRequestStream` (quic.md 4.2–4.4): each is a bencoded byte
//! string `<len>:<payload>` whose payload is a bencoded list — a command
//! `l 1:C i<rid>e <endpoint> <body> e`, a reply `l 1:R i<rid>e <body> e` or an error
//! `l 1:E i<rid>e <body> e`.
//!
//! Owns encoding those messages and reading them incrementally off a stream (several per read,
//! or one split over many), with the original's limits. Must not know endpoints or do I/O.

use crate::bencode::{self, Decoder, Limits};

/// Largest message, length prefix included for the sender and payload for the receiver, as the
/// original (`MAX_REQ_LEN = 10_M`, decimal; quic.md 4.4).
pub const MAX_MESSAGE: usize = 10_000_000;

/// The libquic application error code a stream is reset with when its framing is broken
/// (`BPARSER_ERROR_EXCEPTION`, quic.md 2.6).
pub const BPARSER_ERROR: u32 = 777_000_105;

/// One message of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A request (`C`) the other side must answer once, with the same `rid`; or a
    /// notification (e.g. `notify`) that nobody answers.
    Command {
        /// The sender's request id.
        rid: i64,
        /// The endpoint name (empty for an unknown message type, as libquic reads one).
        endpoint: Vec<u8>,
        /// The opaque body.
        body: Vec<u8>,
    },
    /// A success answer (`R`) to the command with this `rid`.
    Reply {
        /// The answered command's id.
        rid: i64,
        /// The body.
        body: Vec<u8>,
    },
    /// An error answer (`E`) to the command with this `rid`.
    Error {
        /// The answered command's id.
        rid: i64,
        /// The error text.
        body: Vec<u8>,
    },
}

/// Why a stream's framing is broken; the stream is then reset with [`BPARSER_ERROR`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The length prefix is malformed, zero, or above [`MAX_MESSAGE`].
    #[error("bad message length prefix")]
    Length(#[source] bencode::Error),
    /// The payload is not `l <type> <rid> [<endpoint>] <body> … e`.
    #[error("malformed message")]
    Payload(#[source] bencode::Error),
    /// A message to send would exceed [`MAX_MESSAGE`] once framed.
    #[error("message exceeds the maximum size")]
    TooLarge,
}

impl Frame {
    /// The framed bytes `<len>:<list>`, or [`FrameError::TooLarge`] when the whole framed
    /// message would exceed [`MAX_MESSAGE`] (the original's `sent_request` check).
    pub fn encode(&self) -> Result<Vec<u8>, FrameError> {
        let (kind, rid, endpoint, body): (&[u8], i64, Option<&[u8]>, &[u8]) = match self {
            Frame::Command {
                rid,
                endpoint,
                body,
            } => (&b"C"[..], *rid, Some(endpoint.as_slice()), body.as_slice()),
            Frame::Reply { rid, body } => (&b"R"[..], *rid, None, body.as_slice()),
            Frame::Error { rid, body } => (&b"E"[..], *rid, None, body.as_slice()),
        };
        let mut list = Vec::with_capacity(body.len() + endpoint.map_or(0, <[u8]>::len) + 40);
        bencode::put_list(&mut list);
        bencode::put_bytes(&mut list, kind);
        bencode::put_int(&mut list, rid);
        if let Some(ep) = endpoint {
            bencode::put_bytes(&mut list, ep);
        }
        bencode::put_bytes(&mut list, body);
        bencode::put_end(&mut list);
        let mut out = Vec::with_capacity(list.len() + 9);
        bencode::put_bytes(&mut out, &list);
        if out.len() > MAX_MESSAGE {
            return Err(FrameError::TooLarge);
        }
        Ok(out)
    }

    /// Reads one payload (the list inside the length prefix).
    pub fn decode(payload: &[u8]) -> Result<Frame, FrameError> {
        let limits = Limits {
            max_len: MAX_MESSAGE,
            ..Limits::DEFAULT
        };
        let read = || -> Result<Frame, bencode::Error> {
            let mut d = Decoder::new(payload, limits)?;
            d.list()?;
            let item = |d: &mut Decoder<'_>| -> Result<(), bencode::Error> {
                if d.next_item()? {
                    Ok(())
                } else {
                    Err(bencode::Error::Malformed(d.position()))
                }
            };
            item(&mut d)?;
            let kind = d.bytes()?.to_vec();
            item(&mut d)?;
            let rid = d.int()?;
            let endpoint = if kind == b"C" {
                item(&mut d)?;
                d.bytes()?.to_vec()
            } else {
                Vec::new()
            };
            item(&mut d)?;
            let body = d.bytes()?.to_vec();
            // Extra elements are skipped, as libquic does; trailing bytes are an error.
            while d.next_item()? {
                d.skip()?;
            }
            d.finish()?;
            Ok(match kind.as_slice() {
                b"R" => Frame::Reply { rid, body },
                b"E" => Frame::Error { rid, body },
                _ => Frame::Command {
                    rid,
                    endpoint,
                    body,
                },
            })
        };
        read().map_err(FrameError::Payload)
    }
}

/// Buffer capacity a reader keeps between messages. After a larger message (peer batches and
/// anti-entropy answers are MiBs) the buffer is given back: a node holds two request streams
/// per peer, and keeping each one's largest message cost a restarted node of the soak 40–80 MiB
/// of RSS that never came back (BENCHMARKS.md "Soak").
const KEEP_CAPACITY: usize = 64 * 1024;

/// Incremental reader of one stream's messages: feed it what arrives, take whole frames out.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    start: usize,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    /// Appends bytes read from the stream.
    pub fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.buf.shrink_to(KEEP_CAPACITY);
            self.start = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes held that are not yet a whole message (what a slow sender makes us keep).
    pub fn pending(&self) -> usize {
        self.buf.len() - self.start
    }

    /// The next whole message, `Ok(None)` when more bytes are needed, or the error that breaks
    /// the stream (after which the reader must not be used).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let rest = &self.buf[self.start..];
        let Some((payload, used)) =
            bencode::split_frame(rest, MAX_MESSAGE).map_err(FrameError::Length)?
        else {
            self.compact();
            return Ok(None);
        };
        let frame = Frame::decode(payload)?;
        self.start += used;
        Ok(Some(frame))
    }

    /// Drops consumed bytes once they are most of the buffer, and gives back capacity beyond
    /// what the unread bytes need (at least [`KEEP_CAPACITY`] is kept).
    fn compact(&mut self) {
        if self.start > 0 && self.start * 2 >= self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        if self.buf.capacity() > KEEP_CAPACITY.max(self.buf.len() * 2) {
            self.buf.shrink_to(KEEP_CAPACITY.max(self.buf.len()));
        }
    }

    /// The buffer's capacity (tests: what an idle stream holds).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(rid: i64, ep: &str, body: &[u8]) -> Frame {
        Frame::Command {
            rid,
            endpoint: ep.as_bytes().to_vec(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn encodes_the_captured_bytes() {
        // quic.md 4.2, from a capture of the real library.
        assert_eq!(
            cmd(0, "info", b"{}").encode().expect("fits"),
            b"18:l1:Ci0e4:info2:{}e"
        );
        assert_eq!(
            cmd(0, "snode_ping", b"").encode().expect("fits"),
            b"23:l1:Ci0e10:snode_ping0:e"
        );
        assert_eq!(
            Frame::Reply {
                rid: 0,
                body: b"pong".to_vec()
            }
            .encode()
            .expect("fits"),
            b"14:l1:Ri0e4:ponge"
        );
        assert_eq!(
            Frame::Error {
                rid: 0,
                body: b"Invalid endpoint 'no_such_ep'".to_vec()
            }
            .encode()
            .expect("fits"),
            b"40:l1:Ei0e29:Invalid endpoint 'no_such_ep'e"
        );
    }

    #[test]
    fn reads_split_and_coalesced_messages() {
        let mut all = cmd(0, "info", b"{}").encode().expect("fits");
        all.extend(cmd(1, "snode_ping", b"").encode().expect("fits"));
        all.extend(b"17:l1:Ri7e4:pong1:xe"); // an extra element is skipped
        let mut r = FrameReader::new();
        let mut got = Vec::new();
        for b in &all {
            r.push(std::slice::from_ref(b));
            while let Some(f) = r.next_frame().expect("valid") {
                got.push(f);
            }
        }
        assert_eq!(
            got,
            vec![
                cmd(0, "info", b"{}"),
                cmd(1, "snode_ping", b""),
                Frame::Reply {
                    rid: 7,
                    body: b"pong".to_vec()
                }
            ]
        );
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn a_large_message_does_not_leave_a_large_buffer_behind() {
        let big = cmd(1, "/snode/v1/data", &vec![7u8; 4 << 20])
            .encode()
            .expect("fits");
        let mut r = FrameReader::new();
        let mut frames = 0;
        let mut peak = 0;
        for chunk in big.chunks(64 * 1024) {
            r.push(chunk);
            peak = peak.max(r.capacity());
            while r.next_frame().expect("valid").is_some() {
                frames += 1;
            }
        }
        assert_eq!(frames, 1);
        assert!(peak >= 4 << 20, "the message was buffered whole");
        assert!(r.capacity() <= KEEP_CAPACITY, "{} bytes kept", r.capacity());
        // The next small message fits the small buffer.
        r.push(&cmd(2, "info", b"{}").encode().expect("fits"));
        assert!(matches!(r.next_frame(), Ok(Some(_))));
        assert!(r.capacity() <= KEEP_CAPACITY, "{} bytes kept", r.capacity());
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn refuses_broken_framing() {
        for bad in [
            &b"0:"[..],
            b"x:",
            b"10000001:",
            b"123456789012:",
            b"5:i42ee",        // not a list
            b"8:l1:Ci0ee",     // command without endpoint and body
            b"11:l1:Ri0e0:ex", // trailing byte inside the payload
            b"9:l1:Rie0:e",    // rid not an integer
        ] {
            let mut r = FrameReader::new();
            r.push(bad);
            assert!(
                r.next_frame().is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn unknown_type_reads_as_a_command_without_endpoint() {
        assert_eq!(
            Frame::decode(b"l1:Xi3e4:bodye").expect("valid"),
            cmd(3, "", b"body")
        );
    }

    #[test]
    fn a_message_over_the_limit_is_not_sent() {
        let body = vec![0u8; MAX_MESSAGE];
        assert_eq!(cmd(1, "store", &body).encode(), Err(FrameError::TooLarge));
    }
}
