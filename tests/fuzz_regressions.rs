//! Inputs the fuzz targets in `fuzz/` found in the facade crate's code, kept as tests.
#![cfg(feature = "http")]

use cache_core::codec::{seal, Json, MsgPack};
use cacheside::http::response_cache::__fuzz::serve_stored;
use cacheside::http::{ResponseEntry, StoredResponse};
use http::header::{HeaderMap, HeaderValue, ETAG, IF_NONE_MATCH};
use http::StatusCode;

/// From `fuzz/` target `response_decode` (crash-06c4ecdf…, which its own
/// model of the validator got wrong): a stored entry whose headers hold an
/// invalid value, an invalid name and a second `ETag` is served without a
/// panic, dropping what `http` refuses, and the `ETag` it keeps is the one
/// `If-None-Match` is compared with.
#[test]
fn a_stored_entry_with_invalid_headers_is_served_with_its_valid_etag() {
    let entry = StoredResponse {
        status: 200,
        headers: vec![
            ("etag".into(), vec![0]),
            ("ETag".into(), b"\"v1\"".to_vec()),
            ("bad name\n".into(), b"x".to_vec()),
        ],
        body: b"hi".to_vec(),
        stored_at: 0,
        ttl: 60,
        stale_while_revalidate: 0,
        stale_if_error: 0,
    };
    for codec in [&MsgPack as &dyn cache_core::codec::Codec, &Json] {
        let stored = seal(codec, &ResponseEntry::Response(entry.clone())).expect("seal");
        let mut request = HeaderMap::new();
        let res = serve_stored(codec, &stored, false, &request, false, false).expect("served");
        assert_eq!(res.status(), StatusCode::OK, "{}", codec.name());
        assert_eq!(res.headers().get_all(ETAG).iter().count(), 1);
        assert_eq!(res.headers()[ETAG], "\"v1\"");
        assert_eq!(res.headers()["x-cache"], "HIT");

        request.insert(IF_NONE_MATCH, HeaderValue::from_static("W/\"v1\""));
        let res = serve_stored(codec, &stored, false, &request, false, false).expect("served");
        assert_eq!(res.status(), StatusCode::NOT_MODIFIED, "{}", codec.name());

        // Bytes that are no entry are a miss, not a panic.
        assert!(serve_stored(
            codec,
            &stored[..stored.len() - 1],
            false,
            &request,
            false,
            false
        )
        .is_none());
    }
}
