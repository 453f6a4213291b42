//! The response cache's hit path (`src/http/response_cache.rs`): the bytes a
//! store holds under a base or variant key, opened and rendered into the
//! response a request gets.
//!
//! Properties:
//! - no bytes make it panic (raw bytes behind a valid envelope, so that the
//!   decoder is reached, under `MsgPack` and `Json`);
//! - every `StoredResponse` built from the input, sealed, is served: with
//!   `X-Cache: HIT`, `Age` and `Cache-Control`; as `304` only when it is a
//!   2xx whose `ETag` the request's `If-None-Match` names; otherwise with its
//!   status (200 for one `http` refuses), its body, and for `HEAD` an empty
//!   body with the stored body's `Content-Length`.
#![no_main]

use arbitrary::Arbitrary;
use axum::body::HttpBody;
use cache_core::codec::{seal, Codec, Json, MsgPack, ENVELOPE_LEN};
use cacheside::http::response_cache::__fuzz::serve_stored;
use cacheside::http::{ResponseEntry, StoredResponse};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use libfuzzer_sys::fuzz_target;

const NAMES: [&str; 8] = [
    "etag",
    "if-none-match",
    "vary",
    "accept-language",
    "cache-control",
    "content-length",
    "age",
    "x-cache",
];

#[derive(Debug, Arbitrary)]
enum Name {
    Known(u8),
    Other(String),
}

impl Name {
    fn text(&self) -> String {
        match self {
            Name::Known(i) => NAMES[*i as usize % NAMES.len()].to_owned(),
            Name::Other(s) => s.clone(),
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Input {
    json: bool,
    variant: bool,
    head: bool,
    private: bool,
    /// Raw payload behind the envelope (when `built` is false).
    raw: Vec<u8>,
    built: bool,
    status: u16,
    headers: Vec<(Name, Vec<u8>)>,
    body: Vec<u8>,
    stored_at: u64,
    ttl: u64,
    request: Vec<(Name, Vec<u8>)>,
    /// Copy the stored `ETag` into the request's `If-None-Match`.
    echo_etag: bool,
}

fuzz_target!(|input: Input| {
    let codec: &dyn Codec = if input.json { &Json } else { &MsgPack };
    let mut request = HeaderMap::new();
    for (n, v) in &input.request {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.text().as_bytes()),
            HeaderValue::from_bytes(v),
        ) {
            request.append(n, v);
        }
    }

    if !input.built {
        let header = if input.variant {
            seal(
                codec,
                &StoredResponse {
                    status: 200,
                    headers: vec![],
                    body: vec![],
                    stored_at: 0,
                    ttl: 0,
                    stale_while_revalidate: 0,
                    stale_if_error: 0,
                },
            )
        } else {
            seal(codec, &ResponseEntry::Vary(vec![]))
        }
        .expect("seal a header");
        let mut stored = header[..ENVELOPE_LEN].to_vec();
        stored.extend_from_slice(&input.raw);
        let _ = serve_stored(
            codec,
            &stored,
            input.variant,
            &request,
            input.head,
            input.private,
        );
        return;
    }

    let entry = StoredResponse {
        status: input.status,
        headers: input
            .headers
            .iter()
            .map(|(n, v)| (n.text(), v.clone()))
            .collect(),
        body: input.body.clone(),
        stored_at: input.stored_at,
        ttl: input.ttl,
        stale_while_revalidate: 0,
        stale_if_error: 0,
    };
    // The stored ETag as the response will carry it: the first valid one
    // (names are case-insensitive; invalid names or values are dropped).
    let etag = entry.headers.iter().find_map(|(n, v)| {
        (HeaderName::from_bytes(n.as_bytes()).ok()? == http::header::ETAG)
            .then(|| HeaderValue::from_bytes(v).ok())
            .flatten()
    });
    if input.echo_etag {
        if let Some(etag) = &etag {
            request.insert(http::header::IF_NONE_MATCH, etag.clone());
        }
    }
    let stored = if input.variant {
        seal(codec, &entry)
    } else {
        seal(codec, &ResponseEntry::Response(entry.clone()))
    }
    .expect("seal a built entry");
    let res = serve_stored(
        codec,
        &stored,
        input.variant,
        &request,
        input.head,
        input.private,
    )
    .unwrap_or_else(|| panic!("{}: a sealed entry was not served: {entry:?}", codec.name()));

    let h = res.headers();
    assert_eq!(h.get("x-cache").map(|v| v.as_bytes()), Some(&b"HIT"[..]));
    assert!(h.contains_key(http::header::AGE), "no Age: {h:?}");
    assert!(
        h.contains_key(http::header::CACHE_CONTROL),
        "no Cache-Control: {h:?}"
    );
    let size = res.body().size_hint().exact();
    if res.status() == StatusCode::NOT_MODIFIED && entry.status != 304 {
        assert!(
            (200..300).contains(&entry.status),
            "304 for a stored {}",
            entry.status
        );
        // RFC 9110 §13.1.2: `*`, or a listed entity-tag that weakly equals ours.
        let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
        let ours = etag
            .as_ref()
            .and_then(|e| e.to_str().ok())
            .map(opaque)
            .expect("304 without a stored ETag");
        let listed = request
            .get_all(http::header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim() == "*" || opaque(t) == ours);
        assert!(listed, "304 though If-None-Match does not name {ours:?}");
        assert_eq!(size, Some(0));
        return;
    }
    let expected = StatusCode::from_u16(entry.status).unwrap_or(StatusCode::OK);
    assert_eq!(res.status(), expected, "stored {}", entry.status);
    if res.status() == StatusCode::NOT_MODIFIED {
        return;
    }
    if input.head {
        assert_eq!(size, Some(0), "HEAD with a body");
        let len = entry.body.len().to_string();
        assert_eq!(
            h.get(http::header::CONTENT_LENGTH).map(|v| v.as_bytes()),
            Some(len.as_bytes())
        );
    } else {
        assert_eq!(size, Some(entry.body.len() as u64), "body length");
    }
});
