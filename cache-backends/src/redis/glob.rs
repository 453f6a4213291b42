//! cacheside globs (see [`cache_core::pattern`]) as Redis `MATCH` patterns,
//! and the exact filter applied to what a `SCAN` returns.

use cache_core::pattern::{self, Token};

/// Translates a cacheside glob into a Redis `MATCH` pattern with the same meaning.
///
/// Redis also treats `[`, `]` and `^` specially; they are escaped here so that they stay literal.
///
/// ```
/// assert_eq!(cache_backends::redis_glob("page:[1]:*"), r"page:\[1\]:*");
/// assert_eq!(cache_backends::redis_glob(r"a\*"), r"a\*");
/// ```
pub fn redis_glob(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 8);
    for tok in pattern::tokens(pattern) {
        match tok {
            Token::Any => out.push('*'),
            Token::One => out.push('?'),
            Token::Lit(c) => {
                if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
                    out.push('\\');
                }
                out.push(c);
            }
        }
    }
    out
}

/// The Redis `MATCH` pattern for keys `namespace` + local part matching `glob`.
///
/// The namespace is escaped so that its `*`, `?`, `[` stay literal. Redis's
/// `?` matches one *byte* while cacheside's matches one *character*, so `?`
/// is widened to `*` here and the exact glob is applied to every key the
/// scan returns (see [`glob_keeps`]).
pub(crate) fn redis_match(namespace: &str, glob: &str) -> String {
    let mut out = redis_glob(&pattern::escape(namespace));
    let translated = redis_glob(glob);
    let mut chars = translated.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push('\\');
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            '?' => out.push('*'),
            other => out.push(other),
        }
    }
    out
}

/// The `MATCH` pattern of every key under `namespace` (`*` when empty).
pub(crate) fn namespace_match(namespace: &str) -> String {
    let mut out = redis_glob(&pattern::escape(namespace));
    out.push('*');
    out
}

/// True when the store key `key` is `namespace` + a local part matching `glob`.
pub(crate) fn glob_keeps(namespace: &str, glob: &str, key: &[u8]) -> bool {
    std::str::from_utf8(key)
        .ok()
        .and_then(|k| k.strip_prefix(namespace))
        .is_some_and(|local| pattern::matches(glob, local))
}

/// True when the store key `key` lies under `namespace`.
pub(crate) fn namespace_keeps(namespace: &str, key: &[u8]) -> bool {
    key.starts_with(namespace.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_glob_chars_stay_literal() {
        assert_eq!(redis_match("a*b?:", "x*"), r"a\*b\?:x*");
        assert_eq!(redis_match("[t]:", "p:?"), r"\[t\]:p:*");
        assert_eq!(redis_match("ns:", r"lit\*"), r"ns:lit\*");
        assert_eq!(redis_match("ns:", r"lit\?"), r"ns:lit\?");
        assert_eq!(redis_match(r"back\slash:", "*"), r"back\\slash:*");
        assert_eq!(namespace_match(""), "*");
        assert_eq!(namespace_match("t*:"), r"t\*:*");
    }

    #[test]
    fn exact_filter_applies_the_cacheside_glob() {
        assert!(glob_keeps("n:", "k:?", "n:k:я".as_bytes()));
        assert!(!glob_keeps("n:", "k:?", "n:k:яя".as_bytes()));
        assert!(!glob_keeps("n:", "k:*", b"m:k:1"));
        assert!(!glob_keeps("n:", "k:*", b"n:k\xff"));
        assert!(namespace_keeps("", b"anything"));
        assert!(!namespace_keeps("a:", b"b:a:"));
    }
}
