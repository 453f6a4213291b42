//! Meta commands and how they are written: one [`Cmd`] per request, keys
//! checked before a byte is written.

use std::borrow::Cow;

use super::MetaError;

/// Longest key memcached accepts.
pub(crate) const MAX_KEY_LEN: usize = 250;

/// When an `ms` stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Store {
    /// Always (mode `S`, the default): `HD`.
    Always,
    /// Only when the key holds no item (`ME`, add): `HD`, else `NS`.
    IfAbsent,
    /// Only when the item's CAS is still this (`C<cas>`): `HD`, else `EX`
    /// (changed) or `NF` (gone).
    IfCas(u64),
}

/// One meta command. Keys are wire keys (checked when encoded).
#[derive(Debug, Clone)]
pub(crate) enum Cmd<'a> {
    /// `mg <key> [v] [f] [t] [c] [T<touch>]`
    Get {
        key: Cow<'a, str>,
        value: bool,
        client_flags: bool,
        ttl: bool,
        /// `c`: return the item's CAS value.
        cas: bool,
        /// `T<n>`: set the item's expiry (0 = never) as it is read.
        touch: Option<u32>,
    },
    /// `ms <key> <len> F<flags> T<expiry> [ME | C<cas>]` and the data block.
    Set {
        key: Cow<'a, str>,
        value: &'a [u8],
        client_flags: u32,
        expiry: u32,
        store: Store,
    },
    /// `md <key> [C<cas>]`
    Delete {
        key: Cow<'a, str>,
        /// `C<cas>`: only while the item's CAS value is this.
        cas: Option<u64>,
    },
    /// `ma <key> [N<vivify expiry> J<initial>] [MD] D<delta> [T<expiry>] v`
    Arith {
        key: Cow<'a, str>,
        delta: u64,
        decrement: bool,
        /// Autovivify: create a missing counter at `initial` with this expiry.
        vivify: Option<(u32, u64)>,
        /// `T<n>`: the expiry to set (0 = never).
        expiry: Option<u32>,
    },
    /// `mn`
    Noop,
}

impl<'a> Cmd<'a> {
    /// True when running the command twice has the effect of running it
    /// once: reads, writes of the same value, arithmetic of zero. Not a
    /// count, a delete (its second run reports "not found"), a generation
    /// bump, a conditional write (a fenced fill that landed would report,
    /// resent, that it did not: its own first run changed the item), nor a
    /// tombstone (the probe sent beside it, resent, would find the first
    /// run's tombstone instead of the value it replaced).
    pub(super) fn repeatable(&self) -> bool {
        match self {
            Cmd::Get { .. } | Cmd::Noop => true,
            Cmd::Set { store, value, .. } => {
                *store == Store::Always && !cache_core::backend::is_tombstone(value)
            }
            Cmd::Arith { delta, .. } => *delta == 0,
            Cmd::Delete { .. } => false,
        }
    }

    /// `mg <key> v f`: the value and the client flags.
    pub(crate) fn get(key: impl Into<Cow<'a, str>>) -> Cmd<'a> {
        Cmd::Get {
            key: key.into(),
            value: true,
            client_flags: true,
            ttl: false,
            cas: false,
            touch: None,
        }
    }

    /// `mg <key> f`: the client flags only (existence).
    pub(crate) fn probe(key: impl Into<Cow<'a, str>>) -> Cmd<'a> {
        Cmd::Get {
            key: key.into(),
            value: false,
            client_flags: true,
            ttl: false,
            cas: false,
            touch: None,
        }
    }

    /// Adds `t` (remaining seconds, -1 for none) to a `Get`.
    pub(crate) fn with_ttl(mut self) -> Cmd<'a> {
        if let Cmd::Get { ttl, .. } = &mut self {
            *ttl = true;
        }
        self
    }

    /// Adds `c` (the item's CAS value) to a `Get`.
    pub(crate) fn with_cas(mut self) -> Cmd<'a> {
        if let Cmd::Get { cas, .. } = &mut self {
            *cas = true;
        }
        self
    }

    pub(super) fn encode(&self, out: &mut Vec<u8>) -> Result<(), MetaError> {
        match self {
            Cmd::Get {
                key,
                value,
                client_flags,
                ttl,
                cas,
                touch,
            } => {
                head(out, b"mg ", key)?;
                if *value {
                    out.extend_from_slice(b" v");
                }
                if *client_flags {
                    out.extend_from_slice(b" f");
                }
                if *ttl {
                    out.extend_from_slice(b" t");
                }
                if *cas {
                    out.extend_from_slice(b" c");
                }
                if let Some(t) = touch {
                    flag(out, b'T', u64::from(*t));
                }
            }
            Cmd::Set {
                key,
                value,
                client_flags,
                expiry,
                store,
            } => {
                head(out, b"ms ", key)?;
                out.push(b' ');
                push_num(out, value.len() as u64);
                flag(out, b'F', u64::from(*client_flags));
                flag(out, b'T', u64::from(*expiry));
                match store {
                    Store::Always => {}
                    Store::IfAbsent => out.extend_from_slice(b" ME"),
                    Store::IfCas(cas) => flag(out, b'C', *cas),
                }
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(value);
            }
            Cmd::Delete { key, cas } => {
                head(out, b"md ", key)?;
                if let Some(cas) = cas {
                    flag(out, b'C', *cas);
                }
            }
            Cmd::Arith {
                key,
                delta,
                decrement,
                vivify,
                expiry,
            } => {
                head(out, b"ma ", key)?;
                if let Some((vivify_expiry, initial)) = vivify {
                    flag(out, b'N', u64::from(*vivify_expiry));
                    flag(out, b'J', *initial);
                }
                if *decrement {
                    out.extend_from_slice(b" MD");
                }
                flag(out, b'D', *delta);
                if let Some(t) = expiry {
                    flag(out, b'T', u64::from(*t));
                }
                out.extend_from_slice(b" v");
            }
            Cmd::Noop => out.extend_from_slice(b"mn"),
        }
        out.extend_from_slice(b"\r\n");
        Ok(())
    }
}

/// A key memcached accepts and that cannot inject a command: 1 to 250
/// bytes of printable ASCII without spaces (`0x21..=0x7e`).
pub(crate) fn is_valid_key(key: &str) -> bool {
    !key.is_empty() && key.len() <= MAX_KEY_LEN && key.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

fn head(out: &mut Vec<u8>, verb: &[u8], key: &str) -> Result<(), MetaError> {
    if !is_valid_key(key) {
        return Err(MetaError::InvalidKey(key.to_owned()));
    }
    out.extend_from_slice(verb);
    out.extend_from_slice(key.as_bytes());
    Ok(())
}

fn flag(out: &mut Vec<u8>, name: u8, value: u64) {
    out.push(b' ');
    out.push(name);
    push_num(out, value);
}

fn push_num(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(cmd: Cmd<'_>) -> Result<String, MetaError> {
        let mut out = Vec::new();
        cmd.encode(&mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    #[test]
    fn commands_encode_as_the_protocol_spells_them() -> Result<(), MetaError> {
        assert_eq!(encoded(Cmd::get("k"))?, "mg k v f\r\n");
        assert_eq!(encoded(Cmd::probe("k").with_ttl())?, "mg k f t\r\n");
        let touch = Cmd::Get {
            key: "g".into(),
            value: false,
            client_flags: false,
            ttl: false,
            cas: false,
            touch: Some(0),
        };
        assert_eq!(encoded(touch)?, "mg g T0\r\n");
        assert_eq!(encoded(Cmd::get("k").with_cas())?, "mg k v f c\r\n");
        let set = |store| Cmd::Set {
            key: "k".into(),
            value: b"a\r\nb",
            client_flags: 4_294_967_295,
            expiry: 0,
            store,
        };
        assert_eq!(
            encoded(set(Store::Always))?,
            "ms k 4 F4294967295 T0\r\na\r\nb\r\n"
        );
        assert_eq!(
            encoded(set(Store::IfAbsent))?,
            "ms k 4 F4294967295 T0 ME\r\na\r\nb\r\n"
        );
        assert_eq!(
            encoded(set(Store::IfCas(18_446_744_073_709_551_615)))?,
            "ms k 4 F4294967295 T0 C18446744073709551615\r\na\r\nb\r\n"
        );
        assert_eq!(
            encoded(Cmd::Delete {
                key: "k".into(),
                cas: None
            })?,
            "md k\r\n"
        );
        assert_eq!(
            encoded(Cmd::Delete {
                key: "k".into(),
                cas: Some(42)
            })?,
            "md k C42\r\n"
        );
        let vivify = Cmd::Arith {
            key: "n".into(),
            delta: 0,
            decrement: false,
            vivify: Some((2_592_000, 1_764_000_000)),
            expiry: Some(0),
        };
        assert_eq!(encoded(vivify)?, "ma n N2592000 J1764000000 D0 T0 v\r\n");
        let refund = Cmd::Arith {
            key: "n".into(),
            delta: 3,
            decrement: true,
            vivify: None,
            expiry: None,
        };
        assert_eq!(encoded(refund)?, "ma n MD D3 v\r\n");
        assert_eq!(encoded(Cmd::Noop)?, "mn\r\n");
        Ok(())
    }

    #[test]
    fn only_effects_a_resend_cannot_change_are_repeatable() {
        let tombstone = cache_core::backend::tombstone();
        let set = |value, store| Cmd::Set {
            key: "k".into(),
            value,
            client_flags: 0,
            expiry: 0,
            store,
        };
        assert!(set(b"v", Store::Always).repeatable());
        assert!(!set(b"v", Store::IfAbsent).repeatable());
        assert!(!set(b"v", Store::IfCas(7)).repeatable());
        assert!(!set(&tombstone, Store::Always).repeatable());
        assert!(Cmd::get("k").with_cas().repeatable());
        assert!(!Cmd::Delete {
            key: "k".into(),
            cas: None
        }
        .repeatable());
    }

    #[test]
    fn keys_that_could_inject_or_that_memcached_refuses_are_errors() {
        for key in [
            String::new(),
            "a b".to_owned(),
            "a\r\nflush_all".to_owned(),
            "ключ".to_owned(),
            "x".repeat(251),
        ] {
            assert!(
                matches!(
                    encoded(Cmd::get(key.clone())),
                    Err(MetaError::InvalidKey(_))
                ),
                "{key:?}"
            );
        }
        assert!(encoded(Cmd::get("x".repeat(250))).is_ok());
    }
}
