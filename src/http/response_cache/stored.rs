//! What the response cache stores: [`StoredResponse`] and [`ResponseEntry`]
//! (their serialized form is what sits in the store, so it must not change),
//! and [`prepare`], which turns a handler's response into one when it
//! qualifies.

use std::collections::VecDeque;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderName};
use http::Response;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};

use super::cache_control::{freshness, has_directive, stale_extensions};
use super::layer::Settings;
use super::vary::vary_names;
use crate::backend::Bytes;
use crate::http::ResponseBody;

/// One stored response, as it sits in the cache (MessagePack by default).
///
/// A variant of a `Vary` response is stored as is; a response without
/// `Vary` is stored as [`ResponseEntry::Response`] under its base key, e.g.
/// `cache.get::<ResponseEntry>("http:GET:http://example.com/items")` with the provider API.
///
/// ```
/// use cacheside::http::StoredResponse;
/// let s = StoredResponse {
///     status: 200,
///     headers: vec![],
///     body: b"hi".to_vec(),
///     stored_at: 0,
///     ttl: 60,
///     stale_while_revalidate: 0,
///     stale_if_error: 0,
/// };
/// assert_eq!(s.body, b"hi");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredResponse {
    /// The status code.
    pub status: u16,
    /// End-to-end headers in order (names lower-case), including the `ETag` the layer added.
    #[serde(with = "bin_pairs")]
    pub headers: Vec<(String, Vec<u8>)>,
    /// The whole body.
    #[serde(with = "bin")]
    pub body: Vec<u8>,
    /// When it was stored, in seconds since the Unix epoch.
    pub stored_at: u64,
    /// The TTL it was stored with, in seconds: the layer's, or less when the
    /// handler's `s-maxage`/`max-age` said so. Used for the `Cache-Control:
    /// max-age` the layer adds; an entry older than this is not served
    /// fresh.
    pub ttl: u64,
    /// RFC 5861 `stale-while-revalidate` of the handler's response, in
    /// seconds: past `ttl` it is served at once for this long while the
    /// handler runs again in the background.
    #[serde(default, rename = "swr")]
    pub stale_while_revalidate: u64,
    /// RFC 5861 `stale-if-error`, in seconds: past `ttl` it is served for
    /// this long in place of a handler that fails (an error, a 5xx).
    #[serde(default, rename = "sie")]
    pub stale_if_error: u64,
}

/// What a response cache's base key holds (see [the key layout](super::ResponseCacheLayer#keys)).
///
/// ```
/// use cacheside::http::{ResponseEntry, StoredResponse};
/// let index = ResponseEntry::Vary(vec!["accept-language".to_string()]);
/// assert!(matches!(index, ResponseEntry::Vary(ref names) if names.len() == 1));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResponseEntry {
    /// The response, which has no `Vary` header.
    Response(StoredResponse),
    /// The vary index: the response varies on these request headers
    /// (lower-case, sorted), and each variant is a [`StoredResponse`] under
    /// `{base}#v={hash of their values}`.
    Vary(Vec<String>),
}

/// `Vec<u8>` as a MessagePack `bin` (a JSON array of numbers under a JSON codec).
mod bin {
    use serde::de::{Deserializer, SeqAccess, Visitor};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }

    pub struct BytesVisitor;

    impl<'de> Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
            Ok(v.as_bytes().to_vec())
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
            while let Some(b) = seq.next_element::<u8>()? {
                out.push(b);
            }
            Ok(out)
        }
    }

    /// A byte slice that serializes as `bin`.
    pub struct Ser<'a>(pub &'a [u8]);

    impl serde::Serialize for Ser<'_> {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(self.0)
        }
    }

    /// Owned bytes that deserialize from `bin` (or a sequence).
    pub struct De(pub Vec<u8>);

    impl<'de> serde::Deserialize<'de> for De {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_byte_buf(BytesVisitor).map(De)
        }
    }
}

/// `Vec<(String, Vec<u8>)>` with the values as `bin`.
mod bin_pairs {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[(String, Vec<u8>)], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for (name, value) in v {
            seq.serialize_element(&(name, super::bin::Ser(value)))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<(String, Vec<u8>)>, D::Error> {
        let pairs = Vec::<(String, super::bin::De)>::deserialize(d)?;
        Ok(pairs.into_iter().map(|(n, v)| (n, v.0)).collect())
    }
}

/// Seconds since the Unix epoch, as [`StoredResponse::stored_at`] keeps them.
pub(super) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Hop-by-hop headers (RFC 9110 §7.6.1, plus those `Connection` names) and
/// the headers this layer sets itself are not stored.
fn not_stored(name: &HeaderName, connection: &[String]) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "age"
            | "x-cache"
    ) || connection.iter().any(|c| c == name.as_str())
}

/// The handler's response, turned into a stored entry when it qualifies.
pub(super) enum Prepared<B: Body> {
    Store(StoredResponse),
    Pass(Response<ResponseBody<B>>),
}

/// The body length a response announces: its exact size hint, else its
/// `Content-Length`. `None`: unknown (a stream).
fn known_length<B: Body>(res: &Response<B>) -> Option<u64> {
    res.body().size_hint().exact().or_else(|| {
        let mut values = res.headers().get_all(header::CONTENT_LENGTH).iter();
        let first = values.next()?;
        if values.next().is_some() {
            return None;
        }
        first.to_str().ok()?.trim().parse().ok()
    })
}

/// Reads the handler's response into a [`StoredResponse`] when it may be
/// stored; otherwise hands it back with its body untouched, or, when the body
/// turned out not to qualify while it was read, with what was read replayed
/// before the rest.
pub(super) async fn prepare<B>(settings: &Settings, res: Response<B>) -> Prepared<B>
where
    B: Body<Data = Bytes>,
{
    let storable = (settings.cache_status)(res.status())
        && !res.headers().contains_key(header::SET_COOKIE)
        && !has_directive(res.headers(), &["private", "no-store", "no-cache"])
        && vary_names(res.headers()).is_some();
    let pass = |res: Response<B>| Prepared::Pass(res.map(ResponseBody::inner));
    if !storable {
        return pass(res);
    }
    let ttl = match freshness(res.headers(), settings.ttl) {
        Some(ttl) if !ttl.is_zero() => ttl,
        _ => return pass(res),
    };
    let limit = settings.max_body_bytes;
    // Only a body that says how long it is, and fits, is read before the
    // response goes on: a stream (unknown length) passes at once, so its
    // status line and headers are not held back until it ends.
    match known_length(&res) {
        Some(len) if len <= limit as u64 => {}
        _ => return pass(res),
    }
    let (parts, body) = res.into_parts();
    // Read in place, then moved into the response if the layer gives up.
    let mut body = Box::pin(body);
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    let give_up = |parts, chunks: Vec<Bytes>, extra: Option<Frame<Bytes>>, error, body| {
        let mut head: VecDeque<Frame<Bytes>> = chunks.into_iter().map(Frame::data).collect();
        head.extend(extra);
        Prepared::Pass(Response::from_parts(
            parts,
            ResponseBody::replay(head, error, body),
        ))
    };
    loop {
        match body.frame().await {
            None => break,
            Some(Err(e)) => return give_up(parts, chunks, None, Some(e), body),
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    total += data.len();
                    chunks.push(data);
                    if total > limit {
                        return give_up(parts, chunks, None, None, body);
                    }
                }
                // Trailers: not stored; pass everything through.
                Err(frame) => return give_up(parts, chunks, Some(frame), None, body),
            },
        }
    }
    let mut bytes = Vec::with_capacity(total);
    for c in &chunks {
        bytes.extend_from_slice(c);
    }
    let connection: Vec<String> = parts
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .collect();
    let mut headers: Vec<(String, Vec<u8>)> = parts
        .headers
        .iter()
        .filter(|(n, _)| !not_stored(n, &connection))
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    if !parts.headers.contains_key(header::ETAG) {
        let tag = format!("\"{:032x}\"", crate::backend::hash::bytes128(&bytes));
        headers.push(("etag".to_owned(), tag.into_bytes()));
    }
    let (stale_while_revalidate, stale_if_error) = stale_extensions(&parts.headers);
    Prepared::Store(StoredResponse {
        status: parts.status.as_u16(),
        headers,
        body: bytes,
        stored_at: now_secs(),
        ttl: ttl.as_secs(),
        stale_while_revalidate,
        stale_if_error,
    })
}

/// The store TTL of an entry just prepared: the layer's, or the shorter one
/// the handler asked for (whole seconds, as [`StoredResponse::ttl`] keeps it).
pub(super) fn store_ttl(settings: &Settings, entry: &StoredResponse) -> Duration {
    let own = Duration::from_secs(entry.ttl);
    let fresh = if entry.ttl == 0 || own >= settings.ttl {
        settings.ttl
    } else {
        own
    };
    // Kept past its freshness for as long as RFC 5861 lets it be served stale.
    let stale = entry.stale_while_revalidate.max(entry.stale_if_error);
    fresh.saturating_add(Duration::from_secs(stale))
}

/// Where a stored entry is in its life (RFC 5861).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Within its TTL.
    Fresh,
    /// Past it, within `stale-while-revalidate`: served, refreshed in the background.
    Revalidate,
    /// Past that, within `stale-if-error`: served only in place of a failing handler.
    IfError,
    /// Past both.
    Dead,
}

/// The phase of `entry` now.
pub(super) fn phase(entry: &StoredResponse) -> Phase {
    if !expired(entry) {
        return Phase::Fresh;
    }
    let past = now_secs()
        .saturating_sub(entry.stored_at)
        .saturating_sub(entry.ttl);
    if past < entry.stale_while_revalidate {
        Phase::Revalidate
    } else if past < entry.stale_if_error {
        Phase::IfError
    } else {
        Phase::Dead
    }
}

/// Whether a stored entry is past the TTL it was stored with (the store's
/// own expiry normally removes it first; this covers a store that kept it
/// longer, e.g. an entry written with the layer's TTL before the handler
/// asked for less). TTL 0 (a layer TTL under a second): the store decides.
pub(super) fn expired(entry: &StoredResponse) -> bool {
    entry.ttl > 0 && now_secs().saturating_sub(entry.stored_at) >= entry.ttl
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_response_uses_bin_in_msgpack() {
        let s = StoredResponse {
            status: 200,
            headers: vec![("etag".into(), vec![0xff; 4])],
            body: vec![0xff; 100],
            stored_at: 1,
            ttl: 2,
            stale_while_revalidate: 3,
            stale_if_error: 4,
        };
        let bytes = rmp_serde::to_vec_named(&s).unwrap();
        // As an array of numbers the 100-byte body alone would take 200 bytes.
        assert!(bytes.len() < 180, "{} bytes", bytes.len());
        let back: StoredResponse = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, s);
        let json = serde_json::to_string(&s).unwrap();
        let back: StoredResponse = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
    }
}
