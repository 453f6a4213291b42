//! Keeping secrets out of logs, errors and `Debug`: [`redact_url`].

/// What a redacted secret is replaced with.
pub(crate) const MASK: &str = "***";

/// Query parameters that carry a password in store URLs (`?password=…`, and
/// redis-rs's `?pass=…` of `redis+unix://` URLs).
const SECRET_PARAMS: [&str; 2] = ["password", "pass"];

/// `text` with the credentials of every URL in it replaced by `***`: the
/// password of the userinfo (`redis://user:secret@host` →
/// `redis://user:***@host`) and the value of `password=` / `pass=` query
/// parameters.
///
/// `text` may be one URL, a comma-separated list of them, or a message that
/// embeds URLs; text without `://` is returned unchanged. When a URL is
/// malformed (an unencoded `@`, `/` or `,` in its password), the part up to
/// its last `@` counts as userinfo: more may be masked, never less. Every
/// URL cacheside logs, puts in an [`Error`](crate::Error) or shows in
/// `cacheside::Config`'s `Debug` goes through this function; use it for
/// store URLs in your own logs too.
///
/// ```
/// use cache_core::redact_url;
/// assert_eq!(redact_url("redis://:hunter2@cache:6379/0"), "redis://:***@cache:6379/0");
/// assert_eq!(redact_url("rediss://app:hunter2@cache/1"), "rediss://app:***@cache/1");
/// assert_eq!(redact_url("redis+unix:///run/redis.sock?db=1&pass=hunter2"), "redis+unix:///run/redis.sock?db=1&pass=***");
/// assert_eq!(
///     redact_url("redis-cluster://:a@h1:7000,redis://:b@h2:7001"),
///     "redis-cluster://:***@h1:7000,redis://:***@h2:7001"
/// );
/// assert_eq!(redact_url("redis://cache:6379/0"), "redis://cache:6379/0");
/// assert_eq!(redact_url("no url here"), "no url here");
/// ```
pub fn redact_url(text: &str) -> String {
    if !text.contains("://") {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(sep) = rest.find("://") {
        let body_start = sep + 3;
        out.push_str(&rest[..body_start]);
        let body = &rest[body_start..];
        // The URL ends at white space or a quote, or where the next URL's scheme begins.
        let mut end = body
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(body.len());
        if let Some(next) = body[..end].find("://") {
            end = scheme_start(&body[..next]);
        }
        redact_one(&body[..end], &mut out);
        rest = &body[end..];
    }
    out.push_str(rest);
    out
}

/// Where the scheme that ends at `before.len()` starts (its letters, digits, `+`, `-`, `.`).
fn scheme_start(before: &str) -> usize {
    before
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        .last()
        .map_or(before.len(), |(i, _)| i)
}

/// Appends one URL body (what follows `scheme://`) to `out`, credentials masked.
fn redact_one(body: &str, out: &mut String) {
    let after_userinfo = match body.rfind('@') {
        Some(at) => {
            let userinfo = &body[..at];
            match userinfo.find(':') {
                Some(colon) => {
                    out.push_str(&userinfo[..=colon]);
                    out.push_str(MASK);
                }
                None => out.push_str(userinfo),
            }
            out.push('@');
            &body[at + 1..]
        }
        None => body,
    };
    redact_query(after_userinfo, out);
}

/// Appends `s` with the values of the secret query parameters masked.
fn redact_query(s: &str, out: &mut String) {
    let Some(q) = s.find('?') else {
        out.push_str(s);
        return;
    };
    out.push_str(&s[..=q]);
    let query = &s[q + 1..];
    let (query, fragment) = match query.find('#') {
        Some(h) => (&query[..h], &query[h..]),
        None => (query, ""),
    };
    for (i, pair) in query.split('&').enumerate() {
        if i > 0 {
            out.push('&');
        }
        match pair.split_once('=') {
            Some((name, _)) if SECRET_PARAMS.iter().any(|p| name.eq_ignore_ascii_case(p)) => {
                out.push_str(name);
                out.push('=');
                out.push_str(MASK);
            }
            _ => out.push_str(pair),
        }
    }
    out.push_str(fragment);
}

/// The text shown for `value` of the variable `var` in errors and logs:
/// nothing of a password variable, URLs redacted otherwise.
pub(crate) fn shown_value(var: &str, value: &str) -> String {
    if is_secret_var(var) {
        if value.is_empty() {
            String::new()
        } else {
            MASK.to_owned()
        }
    } else if value.contains("://") {
        redact_url(value)
    } else if value.contains('@') || value.contains('?') {
        // A URL without its `://` (`cache:6379?password=…`, `redis//:pw@h`):
        // the whole value counts as one URL body.
        let mut out = String::with_capacity(value.len());
        redact_one(value, &mut out);
        out
    } else {
        value.to_owned()
    }
}

/// Variables whose whole value is a secret.
fn is_secret_var(var: &str) -> bool {
    let var = var.to_ascii_uppercase();
    var.ends_with("PASSWORD") || var.ends_with("_PASS") || var.ends_with("SECRET")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_passwords_are_masked() {
        let cases = [
            ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
            ("redis://user:s3cret@h", "redis://user:***@h"),
            ("redis://user@h", "redis://user@h"),
            ("rediss://:p%40ss@h/2", "rediss://:***@h/2"),
            // Unencoded '@', '/', ',' and '?' in the password: masked all the same.
            ("redis://:p@ss@h:1/0", "redis://:***@h:1/0"),
            ("redis://:p/ss@h:1/0", "redis://:***@h:1/0"),
            ("redis://:p,ss@h:1/0", "redis://:***@h:1/0"),
            ("redis://:p?ss@h:1/0", "redis://:***@h:1/0"),
            ("redis://h:1/0", "redis://h:1/0"),
            ("", ""),
        ];
        for (input, want) in cases {
            assert_eq!(redact_url(input), want, "{input}");
            assert!(!redact_url(input).contains("ss@"), "{input}");
        }
    }

    #[test]
    fn secret_query_parameters_are_masked() {
        assert_eq!(
            redact_url("redis://h/0?password=x&db=1#frag"),
            "redis://h/0?password=***&db=1#frag"
        );
        assert_eq!(
            redact_url("unix:///s.sock?db=2&PASS=x&user=u"),
            "unix:///s.sock?db=2&PASS=***&user=u"
        );
        assert_eq!(
            redact_url("redis://h/0?protocol=3"),
            "redis://h/0?protocol=3"
        );
    }

    #[test]
    fn urls_inside_messages_and_lists_are_masked() {
        assert_eq!(
            redact_url("connect to \"redis://:a@h1:1\" failed: refused"),
            "connect to \"redis://:***@h1:1\" failed: refused"
        );
        assert_eq!(
            redact_url("redis://:a@h1:1, redis://:b@h2:2,memcached://h3:3"),
            "redis://:***@h1:1, redis://:***@h2:2,memcached://h3:3"
        );
        assert_eq!(
            redact_url("redis-cluster://:a@h1:1,:b@h2:2"),
            "redis-cluster://:***@h2:2"
        );
    }

    #[test]
    fn password_variables_are_never_echoed() {
        assert_eq!(shown_value("CACHE_REDIS_PASSWORD", "hunter2"), "***");
        assert_eq!(shown_value("CACHE_REDIS_PASSWORD", ""), "");
        assert_eq!(
            shown_value("CACHE_REDIS_URL", "redis://:hunter2@h"),
            "redis://:***@h"
        );
        assert_eq!(shown_value("CACHE_BACKEND", "rdis"), "rdis");
        assert_eq!(
            shown_value("CACHE_REDIS_URL", "h:1?password=pw"),
            "h:1?password=***"
        );
        assert_eq!(
            shown_value("CACHE_REDIS_URL", "redis//:pw@h"),
            "redis//:***@h"
        );
    }
}
