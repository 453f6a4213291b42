//! Key building: one argument tuple, one key.
//!
//! A key template such as `"profile:{tenant}:{user}"` is literal text with
//! placeholders. Each placeholder value (and every `resource_id`) is written
//! with its `Display` and then **encoded**: the bytes `%`, `:`, `*`, `?`,
//! `[`, `]` and `\` become `%25`, `%3A`, `%2A`, `%3F`, `%5B`, `%5D` and `%5C`;
//! everything else is kept. The literal text of the template is never encoded.
//!
//! Two consequences users rely on:
//!
//! * **Distinct argument tuples build distinct keys.** An encoded value holds
//!   no `:`, and the macros require the literal text between two placeholders
//!   to hold one of the encoded characters (in practice `:`), so a key can be
//!   split back into its values: `("acme:admin", "bob")` and
//!   `("acme", "admin:bob")` give `profile:acme%3Aadmin:bob` and
//!   `profile:acme:admin%3Abob`.
//! * **A value inside an invalidation pattern is a literal.** An encoded value
//!   holds no glob syntax, so `patterns = ["notes:{owner}:*"]` with
//!   `owner = "*"` deletes only the notes of the owner literally named `*`.
//!
//! Integers, plain words and UUIDs are unchanged by the encoding, so the key of
//! `widget_id = 7` is still `widget:7`. To build the key of an annotated
//! function by hand (provider API), encode each value the same way with
//! [`part`] or [`encode`]:
//!
//! ```
//! use cache_core::keys::{encode, part};
//! assert_eq!(format!("profile:{}:{}", part(&"acme:admin"), part(&"bob")), "profile:acme%3Aadmin:bob");
//! assert_eq!(encode(&7u64), "7");
//! assert_eq!(encode(&"50%*"), "50%25%2A");
//! ```

use std::fmt::{self, Display, Write};

/// The characters encoded in key values (and in namespaces).
///
/// `cache-macros` keeps a copy of this list to check templates at compile
/// time; `tests/macros.rs` pins that the two agree.
pub const RESERVED: &[char] = &['%', ':', '*', '?', '[', ']', '\\'];

/// The escape of a reserved byte: the one list the encoders read
/// ([`RESERVED`] is pinned to it by a test). Every reserved character is
/// ASCII, and no byte of a multi-byte UTF-8 sequence is, so a byte scan
/// finds exactly the reserved characters and slices on char boundaries.
#[inline]
fn escape_of(b: u8) -> Option<&'static str> {
    Some(match b {
        b'%' => "%25",
        b':' => "%3A",
        b'*' => "%2A",
        b'?' => "%3F",
        b'[' => "%5B",
        b']' => "%5D",
        b'\\' => "%5C",
        _ => return None,
    })
}

/// Writes `s` encoded into `w`.
#[inline]
fn write_encoded<W: Write + ?Sized>(w: &mut W, s: &str) -> fmt::Result {
    let mut start = 0;
    for (at, &b) in s.as_bytes().iter().enumerate() {
        if let Some(escape) = escape_of(b) {
            w.write_str(&s[start..at])?;
            w.write_str(escape)?;
            start = at + 1;
        }
    }
    w.write_str(&s[start..])
}

/// A `fmt::Write` that encodes what passes through it.
struct Encoding<W>(W);

impl<W: Write> Write for Encoding<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        write_encoded(&mut self.0, s)
    }
}

/// A key value, displayed encoded (see the [module docs](self)).
///
/// ```
/// assert_eq!(cache_core::keys::part(&"a:b").to_string(), "a%3Ab");
/// ```
#[derive(Clone, Copy)]
pub struct Part<'a, T: ?Sized>(pub &'a T);

impl<T: Display + ?Sized> Display for Part<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(Encoding(f), "{}", self.0)
    }
}

impl<T: Display + ?Sized> fmt::Debug for Part<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Part({self})")
    }
}

/// Wraps a value so that it displays encoded, for `format!`-built keys.
///
/// ```
/// use cache_core::keys::part;
/// let (tenant, user) = ("acme", "admin:bob");
/// assert_eq!(format!("profile:{}:{}", part(&tenant), part(&user)), "profile:acme:admin%3Abob");
/// ```
pub fn part<T: Display + ?Sized>(value: &T) -> Part<'_, T> {
    Part(value)
}

/// The encoded form of one value.
///
/// ```
/// assert_eq!(cache_core::keys::encode(&"[x]"), "%5Bx%5D");
/// ```
pub fn encode<T: Display + ?Sized>(value: &T) -> String {
    let mut out = String::new();
    push(&mut out, value);
    out
}

/// Appends the encoded form of `value` to `out`.
///
/// ```
/// let mut key = String::from("widget:");
/// cache_core::keys::push(&mut key, &"7?");
/// assert_eq!(key, "widget:7%3F");
/// ```
pub fn push<T: Display + ?Sized>(out: &mut String, value: &T) {
    // Writing into a String cannot fail; a `Display` impl that fails
    // leaves what it wrote so far, as `format!` would panic instead.
    let _ = write!(Encoding(&mut *out), "{value}");
}

/// [`push`] for a string, without the formatting machinery.
///
/// ```
/// let mut key = String::from("user:");
/// cache_core::keys::push_str(&mut key, "a:b");
/// assert_eq!(key, "user:a%3Ab");
/// ```
#[inline]
pub fn push_str(out: &mut String, value: &str) {
    // `String`'s `write_str` cannot fail.
    let _ = write_encoded(out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_is_exactly_the_bytes_with_an_escape() {
        let escaped: Vec<char> = (0..=u8::MAX)
            .filter(|&b| escape_of(b).is_some())
            .map(char::from)
            .collect();
        let mut reserved = RESERVED.to_vec();
        reserved.sort_unstable();
        assert_eq!(escaped, reserved);
        for &c in RESERVED {
            let escape = escape_of(c as u8).unwrap_or_default();
            assert_eq!(escape, format!("%{:02X}", c as u32));
        }
        for s in ["", "plain", "a:b*c", "é:ü[", "%%", "\\:"] {
            let mut fast = String::new();
            push_str(&mut fast, s);
            assert_eq!(fast, encode(&s), "{s:?}");
        }
    }

    #[test]
    fn reserved_characters_are_encoded_and_others_kept() {
        assert_eq!(encode(&r"%:*?[]\"), "%25%3A%2A%3F%5B%5D%5C");
        assert_eq!(
            encode(&"plain-words_and.dots/é 7"),
            "plain-words_and.dots/é 7"
        );
        assert_eq!(encode(&-42i64), "-42");
    }

    #[test]
    fn the_encoding_is_injective_on_tricky_values() {
        let values = [
            "", "%", "%25", ":", "%3A", "a:b", "a%3Ab", "*", "\\", "%%", "::",
        ];
        let mut seen = std::collections::HashSet::new();
        for v in values {
            assert!(
                seen.insert(encode(&v)),
                "two values encode to {:?}",
                encode(&v)
            );
        }
    }

    #[test]
    fn encoded_values_hold_no_separator_and_no_glob_syntax() {
        for v in ["a:b", "*", "?", "[x]", r"\", "x*y:z?"] {
            let e = encode(&v);
            assert!(
                !e.contains(
                    RESERVED
                        .iter()
                        .copied()
                        .filter(|c| *c != '%')
                        .collect::<Vec<_>>()
                        .as_slice()
                ),
                "{e}"
            );
            assert!(crate::pattern::is_literal(&e), "{e}");
            assert!(crate::pattern::matches(&e, &e));
        }
    }

    #[test]
    fn the_two_tenants_of_the_issue_get_two_keys() {
        let a = format!("profile:{}:{}", part(&"acme:admin"), part(&"bob"));
        let b = format!("profile:{}:{}", part(&"acme"), part(&"admin:bob"));
        assert_ne!(a, b);
    }
}
