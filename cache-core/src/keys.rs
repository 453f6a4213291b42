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

fn escape_of(c: char) -> Option<&'static str> {
    Some(match c {
        '%' => "%25",
        ':' => "%3A",
        '*' => "%2A",
        '?' => "%3F",
        '[' => "%5B",
        ']' => "%5D",
        '\\' => "%5C",
        _ => return None,
    })
}

/// A `fmt::Write` that encodes what passes through it.
struct Encoding<W>(W);

impl<W: Write> Write for Encoding<W> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut rest = s;
        while let Some(at) = rest.find(RESERVED) {
            self.0.write_str(&rest[..at])?;
            let c = rest[at..].chars().next().unwrap_or('%');
            self.0.write_str(escape_of(c).unwrap_or("%25"))?;
            rest = &rest[at + c.len_utf8()..];
        }
        self.0.write_str(rest)
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

#[cfg(test)]
mod tests {
    use super::*;

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
