//! Reading `Cache-Control`: directive names (of requests and responses) and
//! how long a response may be kept by a shared cache.

use std::time::Duration;

use http::header::{self, HeaderMap};

/// Lower-cased directive names of every `Cache-Control` value in `headers`.
fn directives(headers: &HeaderMap) -> impl Iterator<Item = String> + '_ {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| {
            d.split('=')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

pub(super) fn has_directive(headers: &HeaderMap, names: &[&str]) -> bool {
    directives(headers).any(|d| names.contains(&d.as_str()))
}

/// How long a shared cache may keep a response whose headers are `headers`,
/// at most `ttl`: `s-maxage` when present, else `max-age`, else `ttl`.
/// `None` when a directive the response carries has no valid number of
/// seconds (RFC 9111 §4.2.1: treat it as stale). Of repeated directives the
/// smallest counts.
pub(super) fn freshness(headers: &HeaderMap, ttl: Duration) -> Option<Duration> {
    let (mut s_maxage, mut max_age): (Option<u64>, Option<u64>) = (None, None);
    for (name, secs) in valued_directives(headers) {
        let slot = match name.as_str() {
            "s-maxage" => &mut s_maxage,
            "max-age" => &mut max_age,
            _ => continue,
        };
        let secs = secs?;
        *slot = Some(slot.map_or(secs, |s| s.min(secs)));
    }
    Some(match s_maxage.or(max_age) {
        Some(secs) => ttl.min(Duration::from_secs(secs)),
        None => ttl,
    })
}

/// RFC 5861's `stale-while-revalidate` and `stale-if-error` of a response,
/// in seconds (0: absent or not a number; of repeated directives the smallest counts).
pub(super) fn stale_extensions(headers: &HeaderMap) -> (u64, u64) {
    let (mut swr, mut sie): (Option<u64>, Option<u64>) = (None, None);
    for (name, secs) in valued_directives(headers) {
        let slot = match name.as_str() {
            "stale-while-revalidate" => &mut swr,
            "stale-if-error" => &mut sie,
            _ => continue,
        };
        let secs = secs.unwrap_or(0);
        *slot = Some(slot.map_or(secs, |s| s.min(secs)));
    }
    (swr.unwrap_or(0), sie.unwrap_or(0))
}

/// Every `Cache-Control` directive of `headers`: its lower-cased name, and
/// its value as whole seconds (`None`: absent or not a number).
fn valued_directives(headers: &HeaderMap) -> impl Iterator<Item = (String, Option<u64>)> + '_ {
    headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|d| {
            let (name, value) = d.split_once('=').unwrap_or((d, ""));
            let secs = value.trim().trim_matches('"').parse().ok();
            (name.trim().to_ascii_lowercase(), secs)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::HeaderValue;

    #[test]
    fn stale_extensions_are_read_and_a_bad_number_is_none() {
        let ext = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_str(v).unwrap());
            stale_extensions(&h)
        };
        assert_eq!(
            ext("max-age=60, stale-while-revalidate=30, stale-if-error=600"),
            (30, 600)
        );
        assert_eq!(ext("max-age=60"), (0, 0));
        assert_eq!(ext("stale-if-error=abc, Stale-While-Revalidate=5"), (5, 0));
        assert_eq!(
            ext("stale-while-revalidate=9, stale-while-revalidate=4"),
            (4, 0)
        );
    }

    #[test]
    fn freshness_takes_s_maxage_over_max_age_capped_by_the_layer() {
        let h = |v: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static(v));
            h
        };
        let ttl = Duration::from_secs(60);
        let secs = |v| freshness(&h(v), ttl).map(|d| d.as_secs());
        assert_eq!(freshness(&HeaderMap::new(), ttl), Some(ttl));
        assert_eq!(secs("max-age=10"), Some(10));
        assert_eq!(secs("max-age=600"), Some(60));
        assert_eq!(secs("max-age=10, s-maxage=30"), Some(30));
        assert_eq!(secs("S-MaxAge=\"5\", max-age=1"), Some(5));
        assert_eq!(secs("max-age=0"), Some(0));
        assert_eq!(secs("max-age=20, max-age=3"), Some(3));
        assert_eq!(secs("max-age=soon"), None);
        assert_eq!(secs("public"), Some(60));
    }
}
