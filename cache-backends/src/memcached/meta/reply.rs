//! Meta replies and their parser: one [`Reply`] from the front of a read
//! buffer, or how many bytes it still needs, or why the stream can no longer
//! be trusted.

use bytes::Bytes;

use super::MetaError;

/// Longest reply line accepted before a `\n` (flags included); longer is a desynchronised stream.
const MAX_LINE: usize = 8 * 1024;

/// Largest value block accepted in a `VA` reply (memcached's own maximum item size is 1 GiB).
const MAX_VALUE: usize = 1024 * 1024 * 1024;

/// The status of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Code {
    /// `VA`: a value follows.
    Value,
    /// `HD`: success without a value (a hit without `v`, stored, deleted).
    Done,
    /// `EN`: miss.
    Miss,
    /// `NF`: not found.
    NotFound,
    /// `NS`: not stored.
    NotStored,
    /// `EX`: CAS mismatch.
    Exists,
    /// `MN`: the no-op's answer.
    Noop,
}

/// One reply, with the return flags cacheside asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(super) code: Code,
    pub(crate) value: Option<Bytes>,
    /// `f<n>`
    pub(crate) client_flags: Option<u32>,
    /// `t<n>`: remaining seconds, -1 when the item never expires.
    pub(crate) ttl: Option<i64>,
    /// `c<n>`: the item's CAS value.
    pub(crate) cas: Option<u64>,
}

impl Reply {
    /// An `mg` found the item.
    pub(crate) fn hit(&self) -> bool {
        matches!(self.code, Code::Value | Code::Done)
    }

    /// An `ms` stored, an `md` deleted.
    pub(crate) fn applied(&self) -> bool {
        self.code == Code::Done
    }

    /// `NF`: a `C<cas>` store found no item (it expired or was evicted).
    pub(crate) fn not_found(&self) -> bool {
        self.code == Code::NotFound
    }

    /// A conditional `ms` whose condition did not hold: `NS` (mode `E`: the
    /// key holds an item), `EX` (`C<cas>`: the item changed), `NF` (`C<cas>`:
    /// the item is gone).
    pub(crate) fn condition_failed(&self) -> bool {
        matches!(self.code, Code::NotStored | Code::Exists | Code::NotFound)
    }

    /// The value as an ASCII decimal number (an `ma … v` result, a counter read).
    pub(crate) fn number(&self) -> Option<u64> {
        std::str::from_utf8(self.value.as_deref()?)
            .ok()?
            .trim()
            .parse()
            .ok()
    }
}

#[cfg(test)]
impl Reply {
    /// A hit (`VA`) with this value and these client flags, for tests outside `meta`.
    pub(crate) fn found(value: &[u8], client_flags: u32) -> Reply {
        Reply {
            code: Code::Value,
            value: Some(Bytes::copy_from_slice(value)),
            client_flags: Some(client_flags),
            ttl: None,
            cas: None,
        }
    }

    /// A miss (`EN`), for tests outside `meta`.
    pub(crate) fn missing() -> Reply {
        Reply {
            code: Code::Miss,
            value: None,
            client_flags: None,
            ttl: None,
            cas: None,
        }
    }
}

/// A parse of the front of a read buffer.
#[derive(Debug)]
pub(super) enum Parsed {
    /// More bytes are needed: at least this many in total.
    Incomplete(usize),
    /// One reply (or the server's per-command error) and the bytes it took.
    Reply(Result<Reply, MetaError>, usize),
}

fn num<T: std::str::FromStr>(digits: &[u8]) -> Result<T, MetaError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(MetaError::Protocol("malformed number"))
}

/// Parses one reply from the front of `buf`. An `Err` means the stream can
/// no longer be trusted (the connection is dropped); a server's per-command
/// `SERVER_ERROR` is a `Parsed::Reply` holding an error.
pub(super) fn parse(buf: &[u8]) -> Result<Parsed, MetaError> {
    // Only the first MAX_LINE + 1 bytes: a longer line is refused whether or
    // not its `\n` came in the same read.
    let Some(nl) = buf.iter().take(MAX_LINE + 1).position(|&b| b == b'\n') else {
        if buf.len() > MAX_LINE {
            return Err(MetaError::Protocol("reply line too long"));
        }
        return Ok(Parsed::Incomplete(buf.len() + 1));
    };
    let line = buf[..nl]
        .strip_suffix(b"\r")
        .ok_or(MetaError::Protocol("reply line without CRLF"))?;
    let mut taken = nl + 1;
    let mut words = line.split(|&b| b == b' ').filter(|w| !w.is_empty());
    let code = match words.next().unwrap_or_default() {
        b"VA" => Code::Value,
        b"HD" => Code::Done,
        b"EN" => Code::Miss,
        b"NF" => Code::NotFound,
        b"NS" => Code::NotStored,
        b"EX" => Code::Exists,
        b"MN" => Code::Noop,
        b"SERVER_ERROR" => {
            let message = String::from_utf8_lossy(line.get(13..).unwrap_or_default());
            return Ok(Parsed::Reply(
                Err(MetaError::Server(message.into_owned())),
                taken,
            ));
        }
        b"CLIENT_ERROR" | b"ERROR" => {
            return Err(MetaError::Client(
                String::from_utf8_lossy(line).into_owned(),
            ))
        }
        _ => return Err(MetaError::Protocol("unknown reply code")),
    };
    let mut value = None;
    if code == Code::Value {
        let size: usize = num(words
            .next()
            .ok_or(MetaError::Protocol("VA without a size"))?)?;
        if size > MAX_VALUE {
            return Err(MetaError::Protocol("value block larger than 1 GiB"));
        }
        let end = taken + size;
        if buf.len() < end + 2 {
            return Ok(Parsed::Incomplete(end + 2));
        }
        if &buf[end..end + 2] != b"\r\n" {
            return Err(MetaError::Protocol("value block without CRLF"));
        }
        value = Some(Bytes::copy_from_slice(&buf[taken..end]));
        taken = end + 2;
    }
    let mut reply = Reply {
        code,
        value,
        client_flags: None,
        ttl: None,
        cas: None,
    };
    for word in words {
        match word.split_first() {
            Some((b'f', n)) => reply.client_flags = Some(num(n)?),
            Some((b't', n)) => reply.ttl = Some(num(n)?),
            Some((b'c', n)) => reply.cas = Some(num(n)?),
            _ => {}
        }
    }
    Ok(Parsed::Reply(Ok(reply), taken))
}

/// Fuzzing hook (`fuzz/`), not API: `parse` on any bytes, as plain data.
#[doc(hidden)]
pub mod __fuzz {
    /// What the parser made of the front of a buffer.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Parse {
        /// More bytes are needed: at least this many in total.
        Incomplete(usize),
        /// A reply, or a server's per-command error (`Err`), and the bytes it took.
        Reply(Result<Reply, String>, usize),
        /// The stream can no longer be trusted.
        Fatal(String),
    }

    /// A reply as plain data.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Reply {
        pub code: String,
        pub value: Option<Vec<u8>>,
        pub client_flags: Option<u32>,
        pub ttl: Option<i64>,
        pub hit: bool,
        pub applied: bool,
        pub number: Option<u64>,
    }

    /// Parses one reply from the front of `buf`.
    pub fn parse_reply(buf: &[u8]) -> Parse {
        match super::parse(buf) {
            Ok(super::Parsed::Incomplete(n)) => Parse::Incomplete(n),
            Ok(super::Parsed::Reply(r, taken)) => Parse::Reply(
                r.map(|r| Reply {
                    code: format!("{:?}", r.code),
                    value: r.value.as_deref().map(<[u8]>::to_vec),
                    client_flags: r.client_flags,
                    ttl: r.ttl,
                    hit: r.hit(),
                    applied: r.applied(),
                    number: r.number(),
                })
                .map_err(|e| e.to_string()),
                taken,
            ),
            Err(e) => Parse::Fatal(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(buf: &[u8]) -> (Result<Reply, MetaError>, usize) {
        match parse(buf) {
            Ok(Parsed::Reply(reply, taken)) => (reply, taken),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn replies_parse_with_their_flags_and_values() {
        let (r, taken) = reply(b"VA 3 f7 t-1\r\nabc\r\nEN\r\n");
        let r = r.expect("VA");
        assert_eq!(taken, 18);
        assert!(r.hit());
        assert_eq!(r.value.as_deref(), Some(&b"abc"[..]));
        assert_eq!((r.client_flags, r.ttl), (Some(7), Some(-1)));
        let (r, _) = reply(b"EN\r\n");
        assert!(!r.expect("EN").hit());
        let (r, _) = reply(b"HD f9\r\n");
        let r = r.expect("HD");
        assert!(r.hit() && r.applied() && r.client_flags == Some(9));
        let (r, _) = reply(b"HD f9 c18446744073709551615\r\n");
        assert_eq!(r.expect("HD c").cas, Some(u64::MAX));
        for (line, failed) in [
            (&b"NS\r\n"[..], true),
            (b"EX\r\n", true),
            (b"NF\r\n", true),
            (b"HD\r\n", false),
            (b"EN\r\n", false),
        ] {
            let (r, _) = reply(line);
            assert_eq!(r.expect("status").condition_failed(), failed, "{line:?}");
        }
        let (r, _) = reply(b"VA 2\r\n42\r\n");
        assert_eq!(r.expect("ma").number(), Some(42));
        // Binary values may hold CRLF: the size frames them, not the bytes.
        let (r, _) = reply(b"VA 4 f0\r\n\r\n\r\n\r\n");
        assert_eq!(r.expect("VA").value.as_deref(), Some(&b"\r\n\r\n"[..]));
        let (r, taken) = reply(b"SERVER_ERROR object too large for cache\r\nHD\r\n");
        assert!(r.expect_err("SERVER_ERROR").is_too_large());
        assert_eq!(taken, 41);
    }

    #[test]
    fn partial_replies_ask_for_more_and_garbage_is_fatal() {
        assert!(matches!(
            parse(b"VA 10 f1\r\nabc"),
            Ok(Parsed::Incomplete(22))
        ));
        assert!(matches!(parse(b"HD"), Ok(Parsed::Incomplete(3))));
        assert!(matches!(parse(b""), Ok(Parsed::Incomplete(1))));
        for garbage in [
            &b"XX\r\n"[..],
            b"VA 3\r\nabcde\r\n",
            b"VA x\r\n",
            b"HD f12x\r\n",
            b"HD\n",
            b"CLIENT_ERROR bad command line format\r\n",
        ] {
            assert!(
                parse(garbage).is_err(),
                "{:?}",
                String::from_utf8_lossy(garbage)
            );
        }
        assert!(parse(&[b'x'; MAX_LINE + 1]).is_err());
    }

    /// The fuzz target `memcached_meta`'s chunking property: what the parser
    /// answers must not depend on how TCP cut the bytes. A line past
    /// `MAX_LINE` was refused while its `\n` had not arrived, but accepted
    /// when it came in the same read.
    #[test]
    fn a_reply_line_past_the_limit_is_refused_however_it_arrives() {
        let mut line = b"HD f1 ".to_vec();
        line.resize(MAX_LINE + 10, b'x');
        let cut = line[..MAX_LINE + 1].to_vec();
        line.extend_from_slice(b"\r\n");
        assert!(parse(&cut).is_err(), "the first read of the line");
        assert!(parse(&line).is_err(), "the whole line in one read");
        let mut longest = b"HD f1 ".to_vec();
        longest.resize(MAX_LINE - 1, b'x');
        longest.extend_from_slice(b"\r\n");
        assert!(matches!(parse(&longest), Ok(Parsed::Reply(Ok(_), n)) if n == longest.len()));
    }

    #[test]
    fn every_prefix_of_a_reply_asks_for_more_and_random_bytes_never_panic() {
        let replies: [&[u8]; 5] = [
            b"VA 5 f42 t-1\r\nab\r\nc\r\n",
            b"HD f7 t30\r\n",
            b"EN\r\n",
            b"VA 0 f1\r\n\r\n",
            b"SERVER_ERROR out of memory storing object\r\n",
        ];
        for reply in replies {
            for cut in 0..reply.len() {
                assert!(
                    matches!(parse(&reply[..cut]), Ok(Parsed::Incomplete(n)) if n > cut),
                    "{:?} cut at {cut}",
                    String::from_utf8_lossy(reply)
                );
            }
            assert!(matches!(parse(reply), Ok(Parsed::Reply(_, n)) if n == reply.len()));
        }
        // Bounded pseudo-random input, biased towards protocol bytes: any
        // outcome but a panic, and a reply never claims more bytes than there are.
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let alphabet = b"VAHDENSX 0123456789ftv\r\n-";
        for _ in 0..20_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let len = (state % 24) as usize;
            let buf: Vec<u8> = (0..len)
                .map(|i| alphabet[((state >> (i % 8 * 8)) as usize + i) % alphabet.len()])
                .collect();
            if let Ok(Parsed::Reply(_, taken)) = parse(&buf) {
                assert!(taken <= buf.len());
            }
        }
    }
}
