//! Which key a request reads: [`classify`] decides whether a request goes
//! through the cache at all and, when it does, builds its base key from the
//! scheme, the authority, the path, the sorted query and the caller (see
//! [the key layout](super::ResponseCacheLayer#keys)).

use http::header;
use http::request::Parts;
use http::Method;

use super::cache_control::has_directive;
use super::layer::Settings;

/// One entry of [`ResponseCacheLayer::allowed_hosts`]: a lower-case host and,
/// when given, a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct AllowedHost {
    pub(super) host: String,
    pub(super) port: Option<u16>,
}

impl AllowedHost {
    /// Whether a request for `host` (lower-case) on `port` (`None`: the
    /// scheme's default, `default_port`) is covered by this entry.
    fn covers(&self, host: &str, port: Option<u16>, default_port: Option<u16>) -> bool {
        self.host == host
            && match self.port {
                None => port.is_none(),
                Some(p) => port.or(default_port) == Some(p),
            }
    }
}

/// What [`classify`] decided for a request.
pub(super) enum Plan {
    /// Straight to the inner service, `X-Cache: BYPASS`.
    Bypass,
    /// Through the cache.
    Cache(Lookup),
}

/// A request that goes through the cache.
pub(super) struct Lookup {
    /// The base key.
    pub(super) base: String,
    /// `no-cache`: run the handler and replace what is stored.
    pub(super) revalidate: bool,
    /// A `HEAD`: answered from the `GET` entry, never stored.
    pub(super) head: bool,
    /// Keyed per caller: the added `Cache-Control` says `private`.
    pub(super) private: bool,
}

/// The query with its parameters sorted by name (stable: repeated names keep their order).
fn sorted_query(query: &str) -> String {
    let mut params: Vec<&str> = query.split('&').filter(|p| !p.is_empty()).collect();
    params.sort_by(|a, b| {
        let name = |p: &str| p.split('=').next().unwrap_or("").to_owned();
        name(a).cmp(&name(b))
    });
    params.join("&")
}

/// A host and optional port from an authority's bytes: the host lower-cased,
/// an empty port (`example.com:`) read as none. `None` when the bytes are not
/// an authority, carry user info, or have a port that is not a number.
pub(super) fn parse_authority(bytes: &[u8]) -> Option<(String, Option<u16>)> {
    let authority = http::uri::Authority::try_from(bytes).ok()?;
    let text = authority.as_str();
    if text.contains('@') {
        return None;
    }
    let host = authority.host();
    if host.is_empty() {
        return None;
    }
    let port = match text.strip_prefix(host)? {
        "" | ":" => None,
        rest => Some(rest.strip_prefix(':')?.parse::<u16>().ok()?),
    };
    Some((host.to_ascii_lowercase(), port))
}

/// `{scheme}://{authority}` of the request's target, normalised (lower-case
/// scheme and host, no default port); `None` when the request names no
/// usable authority or one outside `allowed`.
fn origin(parts: &Parts, allowed: Option<&[AllowedHost]>) -> Option<String> {
    let scheme = parts
        .uri
        .scheme_str()
        .unwrap_or("http")
        .to_ascii_lowercase();
    let (host, port) = match parts.uri.authority() {
        Some(authority) => parse_authority(authority.as_str().as_bytes())?,
        None => {
            let mut hosts = parts.headers.get_all(header::HOST).iter();
            let host = hosts.next()?;
            if hosts.next().is_some() {
                return None;
            }
            parse_authority(host.as_bytes())?
        }
    };
    let default_port = match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    let port = port.filter(|p| Some(*p) != default_port);
    if let Some(allowed) = allowed {
        if !allowed.iter().any(|a| a.covers(&host, port, default_port)) {
            return None;
        }
    }
    Some(match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    })
}

/// Whether a request goes through the cache and, when it does, its base key.
pub(super) fn classify(settings: &Settings, parts: &Parts) -> Plan {
    // `CACHE_ENABLED=false`: the process runs uncached, this layer included.
    if !crate::is_enabled() {
        return Plan::Bypass;
    }
    let head = match parts.method {
        Method::GET => false,
        Method::HEAD => true,
        _ => return Plan::Bypass,
    };
    if settings.ttl.is_zero() || has_directive(&parts.headers, &["no-store"]) {
        return Plan::Bypass;
    }
    let credentials = parts.headers.contains_key(header::AUTHORIZATION)
        || parts.headers.contains_key(header::COOKIE);
    let caller = settings.vary_caller.and_then(|f| f(parts));
    if credentials && caller.is_none() {
        return Plan::Bypass;
    }
    let revalidate = if parts.headers.contains_key(header::CACHE_CONTROL) {
        has_directive(&parts.headers, &["no-cache"])
    } else {
        parts
            .headers
            .get_all(header::PRAGMA)
            .iter()
            .any(|v| v.as_bytes().eq_ignore_ascii_case(b"no-cache"))
    };
    let Some(origin) = origin(parts, settings.allowed_hosts.as_deref()) else {
        return Plan::Bypass;
    };
    let mut base = format!("{}:GET:{origin}{}", settings.key_prefix, parts.uri.path());
    if let Some(q) = parts.uri.query() {
        let q = sorted_query(q);
        if !q.is_empty() {
            base.push('?');
            base.push_str(&q);
        }
    }
    let private = caller.is_some();
    if let Some(c) = caller {
        // A hash, not the caller itself: a caller key (often a token) never
        // reaches store key names, and no caller can spell another's `#v=` part.
        base.push_str("#c=");
        base.push_str(&format!(
            "{:032x}",
            cache_core::hash::bytes128(c.as_bytes())
        ));
    }
    Plan::Cache(Lookup {
        base,
        revalidate,
        head,
        private,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_is_sorted_by_name_keeping_repeats_in_order() {
        assert_eq!(sorted_query("b=2&a=1&c=3"), "a=1&b=2&c=3");
        assert_eq!(sorted_query("t=2&a=1&t=1"), "a=1&t=2&t=1");
        assert_eq!(sorted_query("&&"), "");
    }

    #[test]
    fn authorities_are_normalised_and_checked() {
        let ok = |s: &str, host: &str, port: Option<u16>| {
            assert_eq!(
                parse_authority(s.as_bytes()),
                Some((host.to_owned(), port)),
                "{s}"
            );
        };
        ok("Example.COM", "example.com", None);
        ok("example.com:", "example.com", None);
        ok("example.com:8080", "example.com", Some(8080));
        ok("[::1]:3000", "[::1]", Some(3000));
        ok("127.0.0.1", "127.0.0.1", None);
        for bad in [
            "",
            "a b",
            "user@example.com",
            "example.com:http",
            "example.com:99999",
            "/x",
        ] {
            assert_eq!(parse_authority(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
