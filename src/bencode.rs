//! The one bencode reader and writer of the node: the peer bulk-data format (`peer::wire`),
//! the onion hop body (`peer::hop`), and later the QUIC request stream, whose messages are
//! bencoded lists (storage-server.md 3.5 and 2.4, quic.md 4.2–4.4).
//!
//! Owns the encoding rules: integers are `i<decimal>e`, byte strings `<len>:<bytes>`, lists
//! `l…e`, dicts `d…e` with byte-string keys. Reading is strict and canonical — what the
//! original's serializer (and ours) writes, nothing else: no leading zeros or `-0`, no `+`,
//! dict keys sorted and unique, integers within `i64` — because a second spelling of the same
//! value is only ever a sign of a broken or hostile sender, and one spelling keeps signed and
//! hashed bytes unambiguous. Reading is bounded ([`Limits`]: input length, nesting depth,
//! number of values), never panics, allocates only a stack of open containers (at most
//! `max_depth` deep) unless the caller asks for a [`Value`] tree, and tells input that ends
//! early ([`Error::Truncated`]) from input that is wrong, so a stream reader can wait for
//! more bytes. The one tolerance is [`split_frame`]'s length prefix, as quic.md 4.4 requires.
//!
//! Must not: know any message shape (callers read fields in their own order), do I/O, or
//! depend on the async runtime or the HTTP stack.

/// How much a reader accepts before refusing an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest input, in bytes.
    pub max_len: usize,
    /// Deepest nesting of lists and dicts (a top-level list is depth 1).
    pub max_depth: usize,
    /// Most values in one input, dict keys and containers included.
    pub max_values: usize,
}

impl Limits {
    /// Limits for small structured messages (requests, hop bodies): 10 MiB, depth 32,
    /// 100 000 values.
    pub const DEFAULT: Limits = Limits {
        max_len: 10 * 1024 * 1024,
        max_depth: 32,
        max_values: 100_000,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// Why an input was refused. Positions are byte offsets into the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The input ends inside a value: more bytes could make it valid.
    #[error("bencode ends early at byte {0}")]
    Truncated(usize),
    /// Not canonical bencode, or not the kind of value the caller asked for.
    #[error("malformed bencode at byte {0}")]
    Malformed(usize),
    /// Longer than [`Limits::max_len`].
    #[error("bencode input is too long")]
    TooLong,
    /// Nested deeper than [`Limits::max_depth`].
    #[error("bencode nested too deeply at byte {0}")]
    TooDeep(usize),
    /// More values than [`Limits::max_values`].
    #[error("too many bencode values at byte {0}")]
    TooMany(usize),
}

impl Error {
    /// The byte offset the error was found at (the input's length for [`Error::TooLong`]).
    pub fn position(self) -> Option<usize> {
        match self {
            Error::Truncated(p) | Error::Malformed(p) | Error::TooDeep(p) | Error::TooMany(p) => {
                Some(p)
            }
            Error::TooLong => None,
        }
    }
}

/// The kind of the next token, as [`Decoder::peek`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `i…e`.
    Int,
    /// `<len>:…`.
    Bytes,
    /// `l…e`.
    List,
    /// `d…e`.
    Dict,
    /// The `e` that closes the innermost open list or dict.
    End,
}

/// An open container and, for a dict, the last key read (to check the order).
#[derive(Debug, Clone, Copy)]
enum Open<'a> {
    List,
    Dict(Option<&'a [u8]>),
}

/// A pull reader over one input: the caller asks for the values it expects, in order, and
/// [`Decoder::skip`]s the ones it does not know.
#[derive(Debug)]
pub struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
    limits: Limits,
    values: usize,
    open: Vec<Open<'a>>,
}

impl<'a> Decoder<'a> {
    /// A reader of `input`, refused at once if longer than `limits.max_len`.
    pub fn new(input: &'a [u8], limits: Limits) -> Result<Decoder<'a>, Error> {
        if input.len() > limits.max_len {
            return Err(Error::TooLong);
        }
        Ok(Decoder {
            input,
            pos: 0,
            limits,
            values: 0,
            open: Vec::new(),
        })
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Lists and dicts currently open.
    pub fn depth(&self) -> usize {
        self.open.len()
    }

    fn byte(&self) -> Result<u8, Error> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or(Error::Truncated(self.pos))
    }

    /// The kind of the next token, without consuming it.
    pub fn peek(&self) -> Result<Kind, Error> {
        match self.byte()? {
            b'i' => Ok(Kind::Int),
            b'0'..=b'9' => Ok(Kind::Bytes),
            b'l' => Ok(Kind::List),
            b'd' => Ok(Kind::Dict),
            b'e' if !self.open.is_empty() => Ok(Kind::End),
            _ => Err(Error::Malformed(self.pos)),
        }
    }

    fn count(&mut self) -> Result<(), Error> {
        if self.values >= self.limits.max_values {
            return Err(Error::TooMany(self.pos));
        }
        self.values += 1;
        Ok(())
    }

    /// Reads a run of ASCII digits from the current position: its end, or `Truncated` if
    /// the input ends inside it.
    fn digits_end(&self, from: usize) -> Result<usize, Error> {
        let run = self.input[from..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        let end = from + run;
        if end == self.input.len() {
            return Err(Error::Truncated(end));
        }
        Ok(end)
    }

    /// Reads an integer.
    pub fn int(&mut self) -> Result<i64, Error> {
        let start = self.pos;
        if self.byte()? != b'i' {
            return Err(Error::Malformed(start));
        }
        let mut from = start + 1;
        let negative = self.input.get(from) == Some(&b'-');
        if negative {
            from += 1;
        }
        let end = self.digits_end(from)?;
        let digits = &self.input[from..end];
        let canonical = match digits {
            [] => false,
            [b'0'] => !negative,
            [b'0', ..] => false,
            _ => true,
        };
        if !canonical || self.input[end] != b'e' {
            return Err(Error::Malformed(start));
        }
        // Sign and ASCII digits only, so this fails only on overflow.
        let v = std::str::from_utf8(&self.input[start + 1..end])
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or(Error::Malformed(start))?;
        self.count()?;
        self.pos = end + 1;
        Ok(v)
    }

    /// Reads a byte string (borrowed from the input).
    pub fn bytes(&mut self) -> Result<&'a [u8], Error> {
        let start = self.pos;
        if !self.byte()?.is_ascii_digit() {
            return Err(Error::Malformed(start));
        }
        let end = self.digits_end(start)?;
        let digits = &self.input[start..end];
        if (digits.len() > 1 && digits[0] == b'0') || self.input[end] != b':' {
            return Err(Error::Malformed(start));
        }
        let len = digits
            .iter()
            .try_fold(0usize, |n, &d| {
                n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
            })
            .ok_or(Error::Malformed(start))?;
        let data_start = end + 1;
        let data_end = data_start
            .checked_add(len)
            .filter(|&e| e <= self.input.len())
            .ok_or(Error::Truncated(self.input.len()))?;
        self.count()?;
        self.pos = data_end;
        Ok(&self.input[data_start..data_end])
    }

    fn open(&mut self, tag: u8, container: Open<'a>) -> Result<(), Error> {
        let start = self.pos;
        if self.byte()? != tag {
            return Err(Error::Malformed(start));
        }
        if self.open.len() >= self.limits.max_depth {
            return Err(Error::TooDeep(start));
        }
        self.count()?;
        self.open.push(container);
        self.pos += 1;
        Ok(())
    }

    /// Opens a list; read its items with [`Decoder::next_item`].
    pub fn list(&mut self) -> Result<(), Error> {
        self.open(b'l', Open::List)
    }

    /// Opens a dict; read its entries with [`Decoder::next_key`] and a value each.
    pub fn dict(&mut self) -> Result<(), Error> {
        self.open(b'd', Open::Dict(None))
    }

    /// In an open list: `true` if an item follows (read it next), `false` if the list ended
    /// here (its `e` is consumed).
    pub fn next_item(&mut self) -> Result<bool, Error> {
        if !matches!(self.open.last(), Some(Open::List)) {
            return Err(Error::Malformed(self.pos));
        }
        if self.byte()? == b'e' {
            self.open.pop();
            self.pos += 1;
            return Ok(false);
        }
        Ok(true)
    }

    /// In an open dict: the next key (read its value next), or `None` if the dict ended here
    /// (its `e` is consumed). Keys must be byte strings in strictly ascending order.
    pub fn next_key(&mut self) -> Result<Option<&'a [u8]>, Error> {
        let Some(&Open::Dict(last)) = self.open.last() else {
            return Err(Error::Malformed(self.pos));
        };
        if self.byte()? == b'e' {
            self.open.pop();
            self.pos += 1;
            return Ok(None);
        }
        let start = self.pos;
        let key = self.bytes()?;
        if last.is_some_and(|l| l >= key) {
            return Err(Error::Malformed(start));
        }
        if let Some(top) = self.open.last_mut() {
            *top = Open::Dict(Some(key));
        }
        Ok(Some(key))
    }

    /// Skips one value of any kind (checked like any other).
    pub fn skip(&mut self) -> Result<(), Error> {
        let base = self.open.len();
        loop {
            match self.peek()? {
                Kind::Int => {
                    self.int()?;
                }
                Kind::Bytes => {
                    self.bytes()?;
                }
                Kind::List => self.list()?,
                Kind::Dict => self.dict()?,
                Kind::End => return Err(Error::Malformed(self.pos)),
            }
            // Close every container that ends here, down to where we started.
            loop {
                if self.open.len() == base {
                    return Ok(());
                }
                let more = match self.open.last() {
                    Some(Open::List) => self.next_item()?,
                    _ => self.next_key()?.is_some(),
                };
                if more {
                    break;
                }
            }
        }
    }

    /// Checks that every container is closed and the input is used up (no trailing bytes).
    pub fn finish(self) -> Result<(), Error> {
        if !self.open.is_empty() {
            return Err(Error::Truncated(self.pos));
        }
        if self.pos != self.input.len() {
            return Err(Error::Malformed(self.pos));
        }
        Ok(())
    }
}

/// A whole bencoded value, for callers that need the tree (a generic request body) rather than
/// a known shape. Byte strings and keys borrow from the input; dict entries stay in their
/// (sorted) order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    /// An integer.
    Int(i64),
    /// A byte string.
    Bytes(&'a [u8]),
    /// A list.
    List(Vec<Value<'a>>),
    /// A dict, keys ascending.
    Dict(Vec<(&'a [u8], Value<'a>)>),
}

impl<'a> Value<'a> {
    /// Decodes exactly one value filling `input`.
    pub fn decode(input: &'a [u8], limits: Limits) -> Result<Value<'a>, Error> {
        let mut d = Decoder::new(input, limits)?;
        let v = Value::read(&mut d)?;
        d.finish()?;
        Ok(v)
    }

    /// Reads the next value from `d`. Recursion is bounded by `max_depth`.
    pub fn read(d: &mut Decoder<'a>) -> Result<Value<'a>, Error> {
        match d.peek()? {
            Kind::Int => d.int().map(Value::Int),
            Kind::Bytes => d.bytes().map(Value::Bytes),
            Kind::List => {
                d.list()?;
                let mut items = Vec::new();
                while d.next_item()? {
                    items.push(Value::read(d)?);
                }
                Ok(Value::List(items))
            }
            Kind::Dict => {
                d.dict()?;
                let mut entries = Vec::new();
                while let Some(k) = d.next_key()? {
                    entries.push((k, Value::read(d)?));
                }
                Ok(Value::Dict(entries))
            }
            Kind::End => Err(Error::Malformed(d.position())),
        }
    }

    /// Appends the encoding to `out` (dict entries in their stored order: keep them sorted).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Int(i) => put_int(out, *i),
            Value::Bytes(b) => put_bytes(out, b),
            Value::List(items) => {
                out.push(b'l');
                for v in items {
                    v.encode(out);
                }
                out.push(b'e');
            }
            Value::Dict(entries) => {
                out.push(b'd');
                for (k, v) in entries {
                    put_bytes(out, k);
                    v.encode(out);
                }
                out.push(b'e');
            }
        }
    }
}

/// Appends a byte string.
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

/// Appends an integer.
pub fn put_int(out: &mut Vec<u8>, i: i64) {
    out.push(b'i');
    out.extend_from_slice(i.to_string().as_bytes());
    out.push(b'e');
}

/// Opens a list: its items follow, then [`put_end`].
pub fn put_list(out: &mut Vec<u8>) {
    out.push(b'l');
}

/// Opens a dict: sorted, unique keys ([`put_bytes`]) each followed by its value, then
/// [`put_end`].
pub fn put_dict(out: &mut Vec<u8>) {
    out.push(b'd');
}

/// Closes the innermost list or dict.
pub fn put_end(out: &mut Vec<u8>) {
    out.push(b'e');
}

/// Splits one stream message `<len>:<payload>` off the front of `buf` (the QUIC request
/// stream's framing, quic.md 4.4): `Ok(Some((payload, consumed)))`, or `Ok(None)` when `buf`
/// holds only part of it. Unlike [`Decoder::bytes`] the length tolerates leading zeros, as the
/// original's stream parser does; its `:` must come within the digits `max_len` needs, and a
/// length of 0 or over `max_len` is refused. Writers frame with [`put_bytes`] (no zeros).
pub fn split_frame(buf: &[u8], max_len: usize) -> Result<Option<(&[u8], usize)>, Error> {
    let max_digits = max_len.to_string().len();
    let run = buf.iter().take_while(|c| c.is_ascii_digit()).count();
    if run > max_digits {
        return Err(Error::TooLong);
    }
    let Some(&after) = buf.get(run) else {
        return Ok(None);
    };
    if run == 0 || after != b':' {
        return Err(Error::Malformed(run));
    }
    let len = buf[..run].iter().try_fold(0usize, |n, &d| {
        n.checked_mul(10)?.checked_add(usize::from(d - b'0'))
    });
    match len {
        Some(0) => Err(Error::Malformed(0)),
        Some(n) if n <= max_len => Ok(buf
            .get(run + 1..run + 1 + n)
            .map(|payload| (payload, run + 1 + n))),
        _ => Err(Error::TooLong),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(b: &[u8]) -> Result<Value<'_>, Error> {
        Value::decode(b, Limits::DEFAULT)
    }

    fn encode(v: &Value<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        v.encode(&mut out);
        out
    }

    #[test]
    fn values_round_trip() {
        let v = Value::Dict(vec![
            (b"", Value::Int(0)),
            (b"a", Value::Int(i64::MIN)),
            (b"ab", Value::Int(i64::MAX)),
            (
                b"b",
                Value::List(vec![
                    Value::Bytes(b""),
                    Value::Bytes(b"\x00\xffe:"),
                    Value::Int(-7),
                    Value::List(vec![]),
                    Value::Dict(vec![]),
                ]),
            ),
        ]);
        let enc = encode(&v);
        assert_eq!(
            enc,
            b"d0:i0e1:ai-9223372036854775808e2:abi9223372036854775807e1:bl0:4:\x00\xffe:i-7eledeee"
                .to_vec()
        );
        assert_eq!(decode(&enc).unwrap(), v);
    }

    #[test]
    fn the_quic_capture_reads() {
        // quic.md 4.2: a command, then a reply with an extra element to skip.
        let (msg, used) = split_frame(b"18:l1:Ci0e4:info2:{}eXYZ", 10_000_000)
            .unwrap()
            .unwrap();
        assert_eq!(used, 21);
        let mut d = Decoder::new(msg, Limits::DEFAULT).unwrap();
        d.list().unwrap();
        assert!(d.next_item().unwrap());
        assert_eq!(d.bytes().unwrap(), b"C");
        assert!(d.next_item().unwrap());
        assert_eq!(d.int().unwrap(), 0);
        assert!(d.next_item().unwrap());
        assert_eq!(d.bytes().unwrap(), b"info");
        assert!(d.next_item().unwrap());
        assert_eq!(d.bytes().unwrap(), b"{}");
        assert!(!d.next_item().unwrap());
        d.finish().unwrap();

        let msg = b"l1:Ri41e4:pongd1:xli1eeei9ee";
        let mut d = Decoder::new(msg, Limits::DEFAULT).unwrap();
        d.list().unwrap();
        for _ in 0..3 {
            assert!(d.next_item().unwrap());
            d.skip().unwrap();
        }
        while d.next_item().unwrap() {
            d.skip().unwrap();
        }
        d.finish().unwrap();
    }

    #[test]
    fn frames_tolerate_leading_zeros_and_wait_for_more() {
        assert_eq!(split_frame(b"", 100), Ok(None));
        assert_eq!(split_frame(b"12", 100), Ok(None));
        assert_eq!(split_frame(b"3:ab", 100), Ok(None));
        assert_eq!(split_frame(b"003:abc", 100), Ok(Some((&b"abc"[..], 7))));
        assert_eq!(split_frame(b"0:", 100), Err(Error::Malformed(0)));
        assert_eq!(split_frame(b"101:", 100), Err(Error::TooLong));
        assert_eq!(split_frame(b"0001:", 100), Err(Error::TooLong));
        assert_eq!(split_frame(b":", 100), Err(Error::Malformed(0)));
        assert_eq!(split_frame(b"1x", 100), Err(Error::Malformed(1)));
        assert_eq!(split_frame(b"10000000:", 10_000_000), Ok(None));
    }

    #[test]
    fn non_canonical_input_is_refused() {
        for bad in [
            &b"i01e"[..],
            b"i-0e",
            b"i+1e",
            b"ie",
            b"i-e",
            b"i1.0e",
            b"i9223372036854775808e",
            b"i-9223372036854775809e",
            b"01:a",
            b"-1:a",
            b"d1:bi1e1:ai2ee",
            b"d1:ai1e1:ai2ee",
            b"di1ei2ee",
            b"le1:a",
            b"x",
            b"e",
            b"d1:ae",
        ] {
            let r = decode(bad);
            assert!(
                matches!(r, Err(Error::Malformed(_))),
                "{}: {r:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn truncated_input_says_so() {
        let good = b"d1:ali1e2:xyd1:bi-3eeee";
        decode(good).unwrap();
        for cut in 0..good.len() {
            let r = decode(&good[..cut]);
            assert!(matches!(r, Err(Error::Truncated(_))), "{cut}: {r:?}");
        }
        assert_eq!(decode(b"5:abc"), Err(Error::Truncated(5)));
        assert_eq!(
            decode(b"99999999999999999999999:"),
            Err(Error::Malformed(0))
        );
    }

    #[test]
    fn limits_hold() {
        let small = Limits {
            max_len: 8,
            max_depth: 2,
            max_values: 3,
        };
        assert_eq!(Value::decode(b"i123456e", small), Ok(Value::Int(123_456)));
        assert_eq!(Value::decode(b"i1234567e", small), Err(Error::TooLong));
        assert!(Value::decode(b"llee", small).is_ok());
        assert_eq!(Value::decode(b"llleee", small), Err(Error::TooDeep(2)));
        assert!(Value::decode(b"li1ei2ee", small).is_ok());
        assert_eq!(Value::decode(b"l0:0:0:e", small), Err(Error::TooMany(5)));

        // Deep nesting is refused, not a stack overflow, and skip() obeys the same limit.
        let deep = [vec![b'l'; 100_000], vec![b'e'; 100_000]].concat();
        let limits = Limits {
            max_len: usize::MAX,
            ..Limits::DEFAULT
        };
        assert_eq!(Value::decode(&deep, limits), Err(Error::TooDeep(32)));
        let mut d = Decoder::new(&deep, limits).unwrap();
        assert_eq!(d.skip(), Err(Error::TooDeep(32)));
    }

    #[test]
    fn misuse_and_trailing_bytes_are_errors() {
        let mut d = Decoder::new(b"li1ee", Limits::DEFAULT).unwrap();
        assert_eq!(d.next_item(), Err(Error::Malformed(0)));
        assert_eq!(d.next_key(), Err(Error::Malformed(0)));
        d.list().unwrap();
        assert_eq!(d.next_key(), Err(Error::Malformed(1)));
        assert_eq!(d.bytes(), Err(Error::Malformed(1)));
        assert!(d.next_item().unwrap());
        assert_eq!(d.int(), Ok(1));
        assert!(!d.next_item().unwrap());
        d.finish().unwrap();

        assert_eq!(decode(b"i1ei2e"), Err(Error::Malformed(3)));
        assert_eq!(decode(b""), Err(Error::Truncated(0)));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic sweep: every prefix and every one-byte corruption of a value
        // that exercises each token.
        let good = b"d1:ali1e2:xyd1:bi-3eee1:ci0e2:zz0:e";
        for i in 0..good.len() {
            for b in [
                b'0', b'9', b'-', b':', b'e', b'i', b'l', b'd', b'x', 0, 0xff,
            ] {
                let mut v = good.to_vec();
                v[i] = b;
                let _ = decode(&v);
                let _ = decode(&v[..i]);
                let mut d = Decoder::new(&v, Limits::DEFAULT).unwrap();
                let _ = d.skip();
                let _ = split_frame(&v, 100);
            }
        }
    }
}
