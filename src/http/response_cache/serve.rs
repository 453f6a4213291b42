//! Serving a stored response: the headers the layer adds (`X-Cache`, `Age`,
//! `Cache-Control`), `304 Not Modified` for a matching `If-None-Match`, and
//! `HEAD`.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use http_body::Body;
use http_body_util::Full;

use super::stored::now_secs;
use super::{StoredResponse, X_CACHE};
use crate::backend::Bytes;
use crate::http::ResponseBody;

/// True when `If-None-Match` in `request` matches `etag` (weak comparison).
fn not_modified(request: &HeaderMap, etag: Option<&HeaderValue>) -> bool {
    let Some(etag) = etag.and_then(|e| e.to_str().ok()) else {
        return false;
    };
    let opaque = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let ours = opaque(etag);
    if ours.is_empty() {
        return false;
    }
    // Empty list elements (`"a", , "b"`) are ignored (RFC 9110 §5.6.1).
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter(|t| !t.trim().is_empty())
        .any(|t| t.trim() == "*" || opaque(t) == ours)
}

/// How a stored response is being served.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Served {
    Hit,
    Miss,
    /// Past its freshness, served under RFC 5861 (`stale-while-revalidate`, `stale-if-error`).
    Stale,
}

/// The request as [`render`] needs it.
#[derive(Clone)]
pub(super) struct View {
    pub(super) headers: HeaderMap,
    pub(super) private: bool,
}

/// The response a stored entry makes for the request `view` describes.
pub(super) fn render(
    entry: StoredResponse,
    served: Served,
    head: bool,
    view: &View,
) -> Response<Full<Bytes>> {
    let request = &view.headers;
    let mut headers = HeaderMap::with_capacity(entry.headers.len() + 4);
    for (n, v) in &entry.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(n.as_bytes()),
            HeaderValue::from_bytes(v),
        ) {
            headers.append(n, v);
        }
    }
    let age = match served {
        Served::Hit | Served::Stale => now_secs().saturating_sub(entry.stored_at),
        Served::Miss => 0,
    };
    if !headers.contains_key(header::CACHE_CONTROL) {
        let remaining = entry.ttl.saturating_sub(age);
        let v = if view.private {
            format!("private, max-age={remaining}")
        } else {
            format!("max-age={remaining}")
        };
        headers.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_str(&v).expect("ascii"),
        );
    }
    if served != Served::Miss {
        headers.insert(header::AGE, HeaderValue::from(age));
    }
    headers.insert(
        X_CACHE,
        HeaderValue::from_static(match served {
            Served::Hit => "HIT",
            Served::Miss => "MISS",
            Served::Stale => "STALE",
        }),
    );
    // RFC 9110 §13.2.1: If-None-Match is evaluated only for responses that
    // would be 2xx; a stored 404 or 301 is served as is, never as a 304.
    let success = (200..300).contains(&entry.status);
    if success && not_modified(request, headers.get(header::ETAG)) {
        // RFC 9110 §15.4.5: keep the validators and caching headers only.
        let mut res = Response::new(Full::new(Bytes::new()));
        *res.status_mut() = StatusCode::NOT_MODIFIED;
        for name in [
            header::ETAG,
            header::CACHE_CONTROL,
            header::AGE,
            header::VARY,
            header::EXPIRES,
            header::DATE,
            header::CONTENT_LOCATION,
            header::LAST_MODIFIED,
            X_CACHE,
        ] {
            for v in headers.get_all(&name) {
                res.headers_mut().append(name.clone(), v.clone());
            }
        }
        return res;
    }
    let status = StatusCode::from_u16(entry.status).unwrap_or(StatusCode::OK);
    let body = if head {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(entry.body.len()));
        Full::new(Bytes::new())
    } else {
        Full::new(Bytes::from(entry.body))
    };
    let mut res = Response::new(body);
    *res.status_mut() = status;
    *res.headers_mut() = headers;
    res
}

/// [`render`], as the service returns it.
pub(super) fn respond<B: Body>(
    entry: StoredResponse,
    served: Served,
    head: bool,
    view: &View,
) -> Response<ResponseBody<B>> {
    render(entry, served, head, view).map(ResponseBody::full)
}

/// `res` with `X-Cache: {label}`.
pub(super) fn mark<B>(mut res: Response<B>, label: &'static str) -> Response<B> {
    res.headers_mut()
        .insert(X_CACHE, HeaderValue::from_static(label));
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_etags_and_empty_list_elements_never_match() {
        let mut req = HeaderMap::new();
        req.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", , \"b\""),
        );
        assert!(!not_modified(&req, Some(&HeaderValue::from_static(""))));
        assert!(not_modified(&req, Some(&HeaderValue::from_static("\"b\""))));
        assert!(!not_modified(
            &req,
            Some(&HeaderValue::from_static("\"c\""))
        ));
    }

    #[test]
    fn if_none_match_forms() {
        let tag = HeaderValue::from_static("\"abc\"");
        let req = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::IF_NONE_MATCH, HeaderValue::from_static(v));
            h
        };
        assert!(not_modified(&req("\"abc\""), Some(&tag)));
        assert!(not_modified(&req("W/\"abc\""), Some(&tag)));
        assert!(not_modified(&req("\"x\", \"abc\""), Some(&tag)));
        assert!(not_modified(&req("*"), Some(&tag)));
        assert!(!not_modified(&req("\"x\""), Some(&tag)));
        assert!(!not_modified(&HeaderMap::new(), Some(&tag)));
    }
}
