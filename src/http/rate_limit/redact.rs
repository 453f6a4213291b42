//! Keeping the password of a `RATE_LIMIT_STORAGE_URI` out of the limiter's
//! errors, logs and `Debug` output.
//!
//! Not [`cache_core::redact_url`], because the two mask different things and
//! what each shows is relied on: this one reads one storage URI, masks every
//! node of a `redis-cluster://`/`memcached://` list on its own (the core one
//! takes a whole list as one URL and masks up to its last `@`, so
//! `:a@h1,:b@h2` shows as `:***@h2`), takes a userinfo without `:` for a
//! password (`redis://secret@host` → `redis://***@host`), masks `auth=` as
//! well as `password=`/`pass=`, and masks URIs without `://` (`redis:pw@host`);
//! the core one finds URLs inside any text (messages, lists) and leaves a
//! user name without a password alone. [`scrub`] also masks the secrets of
//! the URI wherever a store's error quotes them.

use crate::Error;

/// What replaces a secret.
pub(super) const MASK: &str = "***";

/// Schemes whose authority is a comma-separated list of nodes, each with its own credentials.
fn is_list_scheme(scheme: &str) -> bool {
    matches!(
        scheme.to_ascii_lowercase().as_str(),
        "redis-cluster" | "redis+cluster" | "memcached"
    )
}

/// The credentials of one `[user[:password]@]host…` part: `(user, secret)`.
/// Everything before the last `@` is credentials (a password may hold `@`
/// or `/`); with a `:` the user is what precedes it, else the whole part is
/// taken for a secret (`redis://secret@host` is how some write a password).
fn split_userinfo(part: &str) -> Option<(&str, &str)> {
    let at = part.rfind('@')?;
    let userinfo = &part[..at];
    Some(match userinfo.split_once(':') {
        Some((user, secret)) => (user, secret),
        None => ("", userinfo),
    })
}

/// The parts of `uri` that hold credentials, after the scheme.
fn parts(uri: &str) -> (Option<&str>, Vec<&str>) {
    match uri.split_once("://") {
        Some((scheme, rest)) if is_list_scheme(scheme) => (Some(scheme), rest.split(',').collect()),
        Some((scheme, rest)) => (Some(scheme), vec![rest]),
        None => (None, vec![uri]),
    }
}

/// The secrets of `uri`: passwords in its userinfo parts and `password=` query values.
pub(super) fn secrets(uri: &str) -> Vec<String> {
    let (_, parts) = parts(uri);
    let mut found: Vec<String> = parts
        .iter()
        .filter_map(|p| split_userinfo(p))
        .map(|(_, secret)| secret.to_owned())
        .filter(|s| !s.is_empty())
        .collect();
    found.extend(query_passwords(uri).map(|(start, end)| uri[start..end].to_owned()));
    found.sort();
    found.dedup();
    // Longest first, so that a secret holding another is masked whole.
    found.sort_by_key(|s| std::cmp::Reverse(s.len()));
    found
}

/// Byte ranges of `password=…` / `pass=…` / `auth=…` values in a query.
fn query_passwords(uri: &str) -> impl Iterator<Item = (usize, usize)> + '_ {
    let query_start = uri.find('?').map_or(uri.len(), |q| q + 1);
    let mut offset = query_start;
    uri[query_start.min(uri.len())..]
        .split('&')
        .filter_map(move |pair| {
            let start = offset;
            offset += pair.len() + 1;
            let (name, value) = pair.split_once('=')?;
            let secretish = ["password", "pass", "auth"]
                .iter()
                .any(|n| name.eq_ignore_ascii_case(n));
            (secretish && !value.is_empty()).then(|| {
                let value_start = start + name.len() + 1;
                (value_start, value_start + value.len())
            })
        })
}

/// `uri` with every password replaced by `***` (the user name stays).
///
/// `redis://user:pw@host:6379/0` → `redis://user:***@host:6379/0`,
/// `redis-cluster://:pw@a:7000,:pw@b:7001` → `redis-cluster://:***@a:7000,:***@b:7001`.
pub(super) fn redact_uri(uri: &str) -> String {
    let (scheme, parts) = parts(uri);
    let redacted: Vec<String> = parts
        .iter()
        .map(|part| match split_userinfo(part) {
            Some((user, secret)) => {
                let at = part.rfind('@').map_or(0, |a| a + 1);
                let sep = if part[..at].contains(':') { ":" } else { "" };
                let mask = if secret.is_empty() { "" } else { MASK };
                format!("{user}{sep}{mask}@{}", &part[at..])
            }
            None => (*part).to_owned(),
        })
        .collect();
    let mut out = match scheme {
        Some(scheme) => format!("{scheme}://{}", redacted.join(",")),
        None => redacted.join(","),
    };
    for secret in query_secrets_of(&out) {
        out = out.replace(&format!("={secret}"), &format!("={MASK}"));
    }
    out
}

fn query_secrets_of(uri: &str) -> Vec<String> {
    query_passwords(uri)
        .map(|(s, e)| uri[s..e].to_owned())
        .filter(|s| s != MASK)
        .collect()
}

/// `text` with every one of `secrets` replaced by `***`.
fn mask(text: &str, secrets: &[String]) -> String {
    secrets
        .iter()
        .fold(text.to_owned(), |acc, s| acc.replace(s.as_str(), MASK))
}

/// `err` with the secrets of `uri` masked wherever the error carries text.
///
/// The limiter's own errors never hold a secret; this also covers what a
/// store's connect step reports, in case its message quotes the URI.
pub(super) fn scrub(err: Error, uri: &str) -> Error {
    let secrets = secrets(uri);
    if secrets.is_empty() {
        return err;
    }
    let leaks = |e: &Error| {
        let shown = format!("{e} {e:?}");
        secrets.iter().any(|s| shown.contains(s.as_str()))
    };
    if !leaks(&err) {
        return err;
    }
    match err {
        Error::Config {
            var,
            value,
            allowed,
        } => Error::Config {
            var,
            value: mask(&value, &secrets),
            allowed,
        },
        Error::Backend {
            backend,
            op,
            source,
            ..
        } => Error::backend(backend, op, mask(&source.to_string(), &secrets)),
        Error::BackendNotCompiled { backend, feature } => Error::BackendNotCompiled {
            backend: mask(&backend, &secrets),
            feature,
        },
        Error::InvalidKey { key, reason } => Error::InvalidKey {
            key: mask(&key, &secrets),
            reason,
        },
        Error::Decode {
            key,
            expected,
            reason,
        } => Error::Decode {
            key: mask(&key, &secrets),
            expected,
            reason: mask(&reason, &secrets),
        },
        Error::Encode { codec, message } => Error::Encode {
            codec,
            message: mask(&message, &secrets),
        },
        // A variant added later whose text quotes the secret: keep only that it failed.
        other => Error::backend("rate-limit", "connect", mask(&other.to_string(), &secrets)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_lose_their_passwords_and_keep_the_rest() {
        for (uri, expected) in [
            ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
            (
                "redis://user:pw@host:6379/0",
                "redis://user:***@host:6379/0",
            ),
            ("redis://lonesecret@host", "redis://***@host"),
            ("redis://user:p@ss/w:rd@host/0", "redis://user:***@host/0"),
            ("redis://host:6379/0", "redis://host:6379/0"),
            ("memory://", "memory://"),
            (
                "redis-cluster://:pw@a:7000,:pw2@b:7001,c:7002",
                "redis-cluster://:***@a:7000,:***@b:7001,c:7002",
            ),
            ("memcached://u:pw@a:11211", "memcached://u:***@a:11211"),
            ("mongodb://u:p,w@h1,h2", "mongodb://u:***@h1,h2"),
            ("redis:pw@host", "redis:***@host"),
            (
                "redis://h/0?password=pw&x=1",
                "redis://h/0?password=***&x=1",
            ),
            ("redis://:@host", "redis://:@host"),
        ] {
            assert_eq!(redact_uri(uri), expected, "{uri}");
            for secret in secrets(uri) {
                assert!(!redact_uri(uri).contains(&secret), "{uri}: {secret}");
            }
        }
        assert_eq!(secrets("redis://:pw@h,x"), ["pw"]);
        assert_eq!(secrets("redis-cluster://:a@x:1,:bb@y:2"), ["bb", "a"]);
    }

    #[test]
    fn errors_that_quote_a_secret_are_scrubbed() {
        let uri = "memcached://u:hunter2@a:11211";
        let err = Error::backend("memcached", "connect", format!("cannot reach {uri}"));
        let scrubbed = scrub(err, uri);
        let shown = format!("{scrubbed} {scrubbed:?}");
        assert!(
            !shown.contains("hunter2") && shown.contains("***"),
            "{shown}"
        );
        assert!(
            shown.contains("memcached store error during connect"),
            "{shown}"
        );
        let clean = scrub(Error::CircuitOpen { backend: "redis" }, uri);
        assert!(matches!(clean, Error::CircuitOpen { .. }));
    }
}
