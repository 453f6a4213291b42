//! The value envelope: `cache_core::codec::open::<T>` on bytes from a store
//! that cannot be trusted, and `seal` then `open` on values built from the input.
//!
//! Properties, for a DTO-like struct, `serde_json::Value`, `u64` and
//! `String`, under `MsgPack` and `Json`:
//! - `open` never panics, whatever the bytes (raw, or behind a valid envelope
//!   of the right codec and type, so that the payload decoder is reached);
//! - `open(seal(v)) == v` for every value the input builds;
//! - what `open` accepts, `seal` writes again and `open` reads back equal
//!   (decode, encode, decode is stable).
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use cache_core::codec::{open, seal, Codec, Json, MsgPack, ENVELOPE_LEN};
use libfuzzer_sys::fuzz_target;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Arbitrary)]
enum Kind {
    Plain,
    Tuple(u8, i64),
    Named { label: String, weight: u32 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Arbitrary)]
struct Dto {
    id: u64,
    name: String,
    tags: Vec<String>,
    bytes: Vec<u8>,
    note: Option<String>,
    parent: Option<u64>,
    kind: Kind,
    kinds: Vec<Kind>,
    score: i32,
    flag: bool,
    ch: char,
}

/// A `serde_json::Value` built from the input, without NaN/infinite floats
/// (JSON has no spelling for them and `Value` cannot hold them).
fn json_value(u: &mut Unstructured<'_>, depth: u32) -> arbitrary::Result<serde_json::Value> {
    use serde_json::Value;
    let pick = if depth == 0 { 5 } else { 7 };
    Ok(match u.int_in_range(0..=pick)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::from(u.arbitrary::<i64>()?),
        3 => Value::from(u.arbitrary::<u64>()?),
        4 => serde_json::Number::from_f64(u.arbitrary()?).map_or(Value::Null, Value::Number),
        5 => Value::String(u.arbitrary()?),
        6 => {
            let n = u.int_in_range(0..=4)?;
            Value::Array(
                (0..n)
                    .map(|_| json_value(u, depth - 1))
                    .collect::<Result<_, _>>()?,
            )
        }
        _ => {
            let n = u.int_in_range(0..=4)?;
            let mut map = serde_json::Map::new();
            for _ in 0..n {
                map.insert(u.arbitrary()?, json_value(u, depth - 1)?);
            }
            Value::Object(map)
        }
    })
}

/// `open` on `bytes` as they are, and behind the envelope `seal` writes for
/// `T` (so that the decoder sees them); whatever decodes must re-seal stably.
fn open_untrusted<T>(codec: &dyn Codec, bytes: &[u8], header_of: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let _ = open::<T>(codec, bytes);
    let mut framed =
        seal(codec, header_of).expect("seal the header value")[..ENVELOPE_LEN].to_vec();
    framed.extend_from_slice(bytes);
    if let Ok(v) = open::<T>(codec, &framed) {
        let again =
            seal(codec, &v).unwrap_or_else(|e| panic!("{}: re-seal {v:?}: {e}", codec.name()));
        let back: T =
            open(codec, &again).unwrap_or_else(|e| panic!("{}: re-open {v:?}: {e}", codec.name()));
        assert_eq!(back, v, "{}: decode, encode, decode", codec.name());
    }
}

fn round_trip<T>(codec: &dyn Codec, v: &T)
where
    T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let bytes = seal(codec, v).unwrap_or_else(|e| panic!("{}: seal {v:?}: {e}", codec.name()));
    let back: T =
        open(codec, &bytes).unwrap_or_else(|e| panic!("{}: open {v:?}: {e}", codec.name()));
    assert_eq!(&back, v, "{}", codec.name());
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let codec: &dyn Codec = if selector & 1 == 0 { &MsgPack } else { &Json };
    if selector & 2 == 0 {
        // Untrusted bytes.
        match (selector >> 2) % 4 {
            0 => open_untrusted::<Dto>(
                codec,
                rest,
                &Dto {
                    id: 0,
                    name: String::new(),
                    tags: vec![],
                    bytes: vec![],
                    note: None,
                    parent: None,
                    kind: Kind::Plain,
                    kinds: vec![],
                    score: 0,
                    flag: false,
                    ch: 'x',
                },
            ),
            1 => open_untrusted::<serde_json::Value>(codec, rest, &serde_json::Value::Null),
            2 => open_untrusted::<u64>(codec, rest, &0),
            _ => open_untrusted::<String>(codec, rest, &String::new()),
        }
    } else {
        // Values built from the input.
        let mut u = Unstructured::new(rest);
        match (selector >> 2) % 4 {
            0 => {
                if let Ok(v) = Dto::arbitrary(&mut u) {
                    round_trip(codec, &v);
                }
            }
            1 => {
                if let Ok(v) = json_value(&mut u, 4) {
                    round_trip(codec, &v);
                }
            }
            2 => {
                if let Ok(v) = u64::arbitrary(&mut u) {
                    round_trip(codec, &v);
                }
            }
            _ => {
                if let Ok(v) = String::arbitrary(&mut u) {
                    round_trip(codec, &v);
                }
            }
        }
    }
});
