//! How the macros build a key: literal text and encoded values pushed into
//! one `String`, without `format!`.
//!
//! The text is exactly what `format!("{}", cache_core::keys::Part(&v))`
//! gives (`tests/macros.rs` pins it): integers are written with `itoa`
//! (digits and `-` are never encoded), strings go through
//! [`cache_core::keys::push_str`] (a byte scan), every other `Display` type goes through
//! [`cache_core::keys::push`]. Which of the two applies is picked by the
//! type system (autoref): `(&KeyValue(&v)).__cacheside_push(out)`.

use std::fmt::Display;

use cache_core::keys;

/// A key value on its way into a key.
pub struct KeyValue<'a, T: ?Sized>(pub &'a T);

/// Checks, spanned at the user's placeholder, that a key value is `Display`.
#[inline(always)]
pub fn key_display<T: KeyDisplay + ?Sized>(value: &T) -> &T {
    value
}

/// A type whose values can go into a key: `Display`, with a message that says so.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be a key value: key values are written with `Display`",
    label = "this value goes into the key",
    note = "implement `std::fmt::Display` for `{Self}`, name a field that has it (`{{id.0}}`), or drop `key`/`resource_id` to key on a hash of every argument"
)]
pub trait KeyDisplay: Display {}
impl<T: Display + ?Sized> KeyDisplay for T {}

/// Values with a faster way into a key than `Display` (first choice).
pub trait ViaFastKey {
    /// Appends the encoded value to `out`.
    fn __cacheside_push(&self, out: &mut String);
}

/// Any other `Display` value (second choice).
pub trait ViaDisplayKey {
    /// Appends the encoded value to `out`.
    fn __cacheside_push(&self, out: &mut String);
}

impl<T: FastKey + ?Sized> ViaFastKey for KeyValue<'_, T> {
    #[inline]
    fn __cacheside_push(&self, out: &mut String) {
        self.0.push_key(out)
    }
}

impl<T: Display + ?Sized> ViaDisplayKey for &KeyValue<'_, T> {
    #[inline]
    fn __cacheside_push(&self, out: &mut String) {
        keys::push(out, self.0)
    }
}

/// A value that writes its encoded `Display` form without the formatting machinery.
pub trait FastKey {
    /// Appends what `keys::push(out, self)` would.
    fn push_key(&self, out: &mut String);
}

macro_rules! integer_keys {
    ($($t:ty),*) => {$(
        impl FastKey for $t {
            #[inline]
            fn push_key(&self, out: &mut String) {
                out.push_str(itoa::Buffer::new().format(*self));
            }
        }
    )*};
}
integer_keys!(u8, u16, u32, u64, u128, usize, i8, i16, i32, i64, i128, isize);

impl FastKey for str {
    #[inline]
    fn push_key(&self, out: &mut String) {
        keys::push_str(out, self)
    }
}

impl FastKey for String {
    #[inline]
    fn push_key(&self, out: &mut String) {
        self.as_str().push_key(out)
    }
}

impl<T: FastKey + ?Sized> FastKey for &T {
    #[inline]
    fn push_key(&self, out: &mut String) {
        (**self).push_key(out)
    }
}

/// Checks, spanned at the parameter's type, that an argument of a hashed
/// default key is `Hash`.
#[inline(always)]
pub fn hashed_arg<T: HashedArg + ?Sized>(value: &T) -> &T {
    value
}

/// A type whose values can go into a hashed default key: `Hash`, with a
/// message that points at the key arguments rather than at the type.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not `Hash`, so it cannot be part of #[cache]'s default (hashed) key",
    label = "this argument is hashed into the key",
    note = "name the key instead: `resource_id = \"id\"` or `key = \"prefix:{{id}}\"` read only the values that identify the entry (they need `Display`, not `Hash`)",
    note = "`State<…>` and `Method` are left out of the hashed key; any other extractor (headers, the request body) is not"
)]
pub trait HashedArg: std::hash::Hash {}
impl<T: std::hash::Hash + ?Sized> HashedArg for T {}

/// Appends `:{hash}`, the stable hash of the arguments (the hashed default key).
pub fn push_hash<H: std::hash::Hash + ?Sized>(out: &mut String, args: &H) {
    out.push(':');
    out.push_str(&cache_core::hash::stable_hex(args));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast<T: FastKey + Display + ?Sized>(v: &T) {
        let mut out = String::from("x:");
        v.push_key(&mut out);
        assert_eq!(out, format!("x:{}", keys::part(v)), "{v}");
    }

    #[test]
    fn the_fast_paths_write_what_display_and_the_encoding_write() {
        for v in [
            "",
            "plain",
            "a:b",
            "%",
            "%25",
            "*?[]\\",
            "é:ü",
            "日本:語",
            "x y/z",
        ] {
            fast(v);
            fast(&v.to_owned());
            fast(&v);
        }
        fast(&0u8);
        fast(&u64::MAX);
        fast(&i64::MIN);
        fast(&-1i32);
        fast(&u128::MAX);
        fast(&isize::MIN);
    }

    #[test]
    #[allow(clippy::needless_borrow)] // the borrow is what the macros write: autoref picks the impl
    fn autoref_picks_the_fast_path_and_falls_back_to_display() {
        #[allow(unused_imports)]
        use super::{ViaDisplayKey as _, ViaFastKey as _};
        struct Shown;
        impl Display for Shown {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a:*")
            }
        }
        let mut out = String::new();
        (&KeyValue(&7u64)).__cacheside_push(&mut out);
        out.push(':');
        (&KeyValue(&"b:c")).__cacheside_push(&mut out);
        out.push(':');
        (&KeyValue(&Shown)).__cacheside_push(&mut out);
        assert_eq!(out, "7:b%3Ac:a%3A%2A");
    }
}
