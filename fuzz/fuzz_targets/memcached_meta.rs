//! The Memcached meta reply parser (`cache-backends/src/memcached/meta.rs`)
//! on any bytes a server (or a man in the middle) may send.
//!
//! Properties:
//! - it never panics;
//! - a reply takes at least one byte and no more than there are; "incomplete"
//!   always asks for more bytes than there are;
//! - the answer for a prefix does not change when more bytes arrive (a
//!   reply, or a fatal error, stays the same; "incomplete" stays incomplete
//!   while fewer bytes than it asked for are there);
//! - reading a stream of replies gives the same replies and the same end,
//!   whether the bytes arrive at once or in chunks (TCP segmentation must not
//!   change what the client sees).
#![no_main]

use cache_backends::__fuzz_memcached_meta::{parse_reply, Parse};
use libfuzzer_sys::fuzz_target;

/// Replies parsed from the front of `buf` until the parser stops, and why it stopped.
fn drain(buf: &[u8], out: &mut Vec<Parse>) -> (usize, Parse) {
    let mut at = 0;
    loop {
        match parse_reply(&buf[at..]) {
            Parse::Reply(r, taken) => {
                assert!(taken >= 1, "a reply that took no bytes: {r:?}");
                assert!(
                    taken <= buf.len() - at,
                    "reply took {taken} of {} bytes",
                    buf.len() - at
                );
                out.push(Parse::Reply(r, taken));
                at += taken;
            }
            Parse::Incomplete(n) => {
                assert!(
                    n > buf.len() - at,
                    "incomplete asks for {n} with {} there",
                    buf.len() - at
                );
                return (at, Parse::Incomplete(n));
            }
            fatal @ Parse::Fatal(_) => return (at, fatal),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte sizes the chunks the bytes arrive in.
    let Some((&chunk, data)) = data.split_first() else {
        return;
    };
    let chunk = 1 + chunk as usize;

    let whole = parse_reply(data);

    // Prefix stability.
    for cut in (0..data.len()).step_by(chunk) {
        match parse_reply(&data[..cut]) {
            Parse::Incomplete(n) => {
                assert!(n > cut, "incomplete({n}) at {cut} bytes");
                if data.len() < n {
                    assert!(
                        matches!(whole, Parse::Incomplete(_)),
                        "{cut} bytes: incomplete({n}); all {} bytes: {whole:?}",
                        data.len()
                    );
                }
            }
            early => assert_eq!(
                early,
                whole,
                "{cut} bytes gave {early:?}, all {} bytes differ",
                data.len()
            ),
        }
    }

    // The whole stream at once versus in chunks, as the client's read loop does.
    let mut at_once = Vec::new();
    let (_, end_at_once) = drain(data, &mut at_once);
    let mut chunked = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let end_chunked = loop {
        let (used, stop) = drain(&buf, &mut chunked);
        buf.drain(..used);
        match stop {
            Parse::Incomplete(_) if fed < data.len() => {
                let next = (fed + chunk).min(data.len());
                buf.extend_from_slice(&data[fed..next]);
                fed = next;
            }
            stop => break stop,
        }
    };
    assert_eq!(
        at_once, chunked,
        "replies differ when the bytes arrive in chunks of {chunk}"
    );
    match (&end_at_once, &end_chunked) {
        (Parse::Incomplete(_), Parse::Incomplete(_)) => {}
        (a, b) => assert_eq!(a, b, "the stream ends differently in chunks of {chunk}"),
    }
});
