//! Codecs turn values into bytes for the store, and back, inside a small envelope.
//!
//! Every stored value is `envelope ++ payload`. The envelope is 11 bytes:
//! a magic byte `0xC5`, the format version `1`, the codec id, and an 8-byte
//! fingerprint of the Rust type that was written. On read, any mismatch
//! (foreign bytes, another codec, another type, a truncated payload) is a miss:
//! the entry is deleted and the error counted, so wrong data is never served.
//!
//! [`MsgPack`] (MessagePack with named fields, via `rmp-serde`) is the default: it
//! round-trips the serde attributes web DTOs use (`tag`, `untagged`, `flatten`,
//! `skip_serializing_if`, `serde_json::Value`). [`Json`] is there for stores
//! that humans read.

use serde::{de::DeserializeOwned, Serialize};

use crate::hash::bytes128;

/// Why a codec could not encode or decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CodecError(pub String);

impl CodecError {
    fn from_display(e: impl std::fmt::Display) -> Self {
        CodecError(e.to_string())
    }
}

/// Turns serde values into bytes and back.
///
/// Object-safe through `erased_serde`, so a [`Cache`](crate::Cache) can hold
/// any codec. Ids `0..=15` are reserved for cacheside; pick another for your own.
///
/// ```
/// use cache_core::codec::{decode_value, encode_value, Codec, Json, MsgPack};
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Widget { id: u64, name: String }
///
/// let w = Widget { id: 7, name: "spanner".into() };
/// for codec in [&MsgPack as &dyn Codec, &Json] {
///     let bytes = encode_value(codec, &w).unwrap();
///     assert_eq!(decode_value::<Widget>(codec, &bytes).unwrap(), w);
/// }
/// ```
pub trait Codec: Send + Sync + 'static {
    /// Stable one-byte id written into the envelope.
    fn id(&self) -> u8;
    /// Name for errors and logs.
    fn name(&self) -> &'static str;
    /// Appends the encoding of `value` to `out`.
    fn encode(
        &self,
        value: &dyn erased_serde::Serialize,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError>;
    /// Builds a deserializer over `bytes` and hands it to `visit`.
    fn decode(
        &self,
        bytes: &[u8],
        visit: &mut dyn FnMut(
            &mut dyn erased_serde::Deserializer<'_>,
        ) -> Result<(), erased_serde::Error>,
    ) -> Result<(), CodecError>;

    /// Lets the built-in codecs skip type erasure on the hot path. Leave the default.
    #[doc(hidden)]
    fn builtin(&self) -> Option<Builtin> {
        None
    }
}

/// The codecs cacheside implements itself (their calls are monomorphised, not erased).
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    MsgPack,
    Json,
}

/// MessagePack with named struct fields (`rmp-serde`); the default codec.
#[derive(Debug, Clone, Copy, Default)]
pub struct MsgPack;

impl Codec for MsgPack {
    fn id(&self) -> u8 {
        1
    }
    fn name(&self) -> &'static str {
        "msgpack"
    }
    fn builtin(&self) -> Option<Builtin> {
        Some(Builtin::MsgPack)
    }
    fn encode(
        &self,
        value: &dyn erased_serde::Serialize,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        let mut ser = rmp_serde::Serializer::new(out).with_struct_map();
        erased_serde::serialize(value, &mut ser).map_err(CodecError::from_display)
    }
    fn decode(
        &self,
        bytes: &[u8],
        visit: &mut dyn FnMut(
            &mut dyn erased_serde::Deserializer<'_>,
        ) -> Result<(), erased_serde::Error>,
    ) -> Result<(), CodecError> {
        let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
        visit(&mut <dyn erased_serde::Deserializer>::erase(&mut de))
            .map_err(CodecError::from_display)
    }
}

/// JSON (`serde_json`): larger and slower than [`MsgPack`], but readable in `redis-cli`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Codec for Json {
    fn id(&self) -> u8 {
        2
    }
    fn name(&self) -> &'static str {
        "json"
    }
    fn builtin(&self) -> Option<Builtin> {
        Some(Builtin::Json)
    }
    fn encode(
        &self,
        value: &dyn erased_serde::Serialize,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        let mut ser = serde_json::Serializer::new(out);
        erased_serde::serialize(value, &mut ser).map_err(CodecError::from_display)
    }
    fn decode(
        &self,
        bytes: &[u8],
        visit: &mut dyn FnMut(
            &mut dyn erased_serde::Deserializer<'_>,
        ) -> Result<(), erased_serde::Error>,
    ) -> Result<(), CodecError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        visit(&mut <dyn erased_serde::Deserializer>::erase(&mut de))
            .map_err(CodecError::from_display)?;
        de.end().map_err(CodecError::from_display)
    }
}

/// Encodes `value` with `codec` (no envelope).
pub fn encode_value<T: Serialize + ?Sized>(
    codec: &dyn Codec,
    value: &T,
) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(64);
    encode_into(codec, value, &mut out)?;
    Ok(out)
}

fn encode_into<T: Serialize + ?Sized>(
    codec: &dyn Codec,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    match codec.builtin() {
        Some(Builtin::MsgPack) => value
            .serialize(&mut rmp_serde::Serializer::new(out).with_struct_map())
            .map_err(CodecError::from_display),
        Some(Builtin::Json) => serde_json::to_writer(out, value).map_err(CodecError::from_display),
        None => codec.encode(&value, out),
    }
}

/// Decodes a `T` that [`encode_value`] wrote (no envelope).
pub fn decode_value<T: DeserializeOwned>(codec: &dyn Codec, bytes: &[u8]) -> Result<T, CodecError> {
    match codec.builtin() {
        Some(Builtin::MsgPack) => {
            return rmp_serde::from_slice(bytes).map_err(CodecError::from_display);
        }
        Some(Builtin::Json) => {
            return serde_json::from_slice(bytes).map_err(CodecError::from_display)
        }
        None => {}
    }
    let mut slot: Option<T> = None;
    codec.decode(bytes, &mut |de| {
        slot = Some(erased_serde::deserialize::<T>(de)?);
        Ok(())
    })?;
    slot.ok_or_else(|| CodecError("codec produced no value".into()))
}

const MAGIC: u8 = 0xC5;
const FORMAT_VERSION: u8 = 1;
/// Length of the envelope in front of every stored payload.
pub const ENVELOPE_LEN: usize = 11;

/// The type fingerprint stored in the envelope: a stable hash of the type's name.
///
/// Two programs that share a store and cache the same type from the same
/// crate path read each other's entries; a renamed or moved type is a miss.
/// Borrowed and owned forms that serialize alike count as one type:
/// references are transparent, `str` is `String`, `[T]` is `Vec<T>`.
///
/// ```
/// use cache_core::codec::type_fingerprint;
/// assert_eq!(type_fingerprint::<&str>(), type_fingerprint::<String>());
/// assert_eq!(type_fingerprint::<&[u8]>(), type_fingerprint::<Vec<u8>>());
/// assert_eq!(type_fingerprint::<Vec<&str>>(), type_fingerprint::<Vec<String>>());
/// assert_ne!(type_fingerprint::<u32>(), type_fingerprint::<u64>());
/// assert_ne!(type_fingerprint::<[u8; 4]>(), type_fingerprint::<Vec<u8>>());
/// ```
pub fn type_fingerprint<T: ?Sized>() -> u64 {
    let name: &'static str = std::any::type_name::<T>();
    // Memoised per thread by the name's address: a hit costs a TLS read and
    // two compares instead of a scan and a hash of the name on every read.
    const SLOTS: usize = 64;
    type Slot = std::cell::Cell<(usize, usize, u64)>;
    thread_local! {
        static MEMO: [Slot; SLOTS] = const { [const { std::cell::Cell::new((0, 0, 0)) }; SLOTS] };
    }
    let (addr, len) = (name.as_ptr() as usize, name.len());
    let slot = (addr >> 3) % SLOTS;
    let memo = MEMO.with(|m| m[slot].get());
    if memo.0 == addr && memo.1 == len {
        return memo.2;
    }
    let fp = fingerprint_of_name(name);
    MEMO.with(|m| m[slot].set((addr, len, fp)));
    fp
}

fn fingerprint_of_name(name: &str) -> u64 {
    if needs_normalizing(name) {
        bytes128(normalize_type_name(name).as_bytes()) as u64
    } else {
        bytes128(name.as_bytes()) as u64
    }
}

/// True when `name` holds a reference, a slice/array, or a standalone `str`.
fn needs_normalizing(name: &str) -> bool {
    if name.contains(['&', '[']) {
        return true;
    }
    let b = name.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    name.match_indices("str")
        .any(|(i, _)| (i == 0 || !word(b[i - 1])) && b.get(i + 3).is_none_or(|&c| !word(c)))
}

/// Folds borrowed forms into owned ones in a `type_name` string.
fn normalize_type_name(name: &str) -> String {
    // Drop reference markers first.
    let mut plain = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(c) = rest.chars().next() {
        if c == '&' {
            rest = rest[1..].trim_start();
            rest = rest.strip_prefix("mut ").unwrap_or(rest);
            continue;
        }
        plain.push(c);
        rest = &rest[c.len_utf8()..];
    }
    // Then rewrite `str` and slices `[T]` (arrays `[T; N]` stay).
    let mut out = String::with_capacity(plain.len() + 16);
    let bytes = plain.as_bytes();
    let mut i = 0;
    let mut stack: Vec<bool> = Vec::new(); // for each open '[': is it a slice?
    while i < bytes.len() {
        let c = bytes[i] as char;
        let at_word_start = i == 0
            || !(bytes[i - 1].is_ascii_alphanumeric()
                || bytes[i - 1] == b'_'
                || bytes[i - 1] == b':');
        if at_word_start && plain[i..].starts_with("str") {
            let end = i + 3;
            let at_word_end =
                end == bytes.len() || !(bytes[end].is_ascii_alphanumeric() || bytes[end] == b'_');
            if at_word_end {
                out.push_str("alloc::string::String");
                i = end;
                continue;
            }
        }
        match c {
            '[' => {
                let is_slice = slice_bracket(&plain[i..]);
                stack.push(is_slice);
                out.push_str(if is_slice { "alloc::vec::Vec<" } else { "[" });
            }
            ']' => {
                let is_slice = stack.pop().unwrap_or(false);
                out.push(if is_slice { '>' } else { ']' });
            }
            _ => out.push(c),
        }
        i += c.len_utf8();
    }
    out
}

/// True when the `[` at the start of `s` opens a slice (no `;` at its own depth).
fn slice_bracket(s: &str) -> bool {
    let mut depth = 0usize;
    for c in s.chars() {
        match c {
            '[' | '<' | '(' => depth += 1,
            ']' | '>' | ')' => {
                depth -= 1;
                if depth == 0 {
                    return true;
                }
            }
            ';' if depth == 1 => return false,
            _ => {}
        }
    }
    true
}

/// Envelope plus payload, ready for the store.
pub fn seal<T: Serialize + ?Sized>(codec: &dyn Codec, value: &T) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(ENVELOPE_LEN + 64);
    out.push(MAGIC);
    out.push(FORMAT_VERSION);
    out.push(codec.id());
    out.extend_from_slice(&type_fingerprint::<T>().to_le_bytes());
    encode_into(codec, value, &mut out)?;
    Ok(out)
}

/// Checks the envelope and decodes the payload as `T`.
pub fn open<T: DeserializeOwned>(codec: &dyn Codec, bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() < ENVELOPE_LEN {
        return Err(CodecError(format!(
            "{} bytes, shorter than the envelope",
            bytes.len()
        )));
    }
    if bytes[0] != MAGIC || bytes[1] != FORMAT_VERSION {
        return Err(CodecError(
            "not a cacheside entry (or another format version)".into(),
        ));
    }
    if bytes[2] != codec.id() {
        return Err(CodecError(format!(
            "written with codec id {}, read with {} (id {})",
            bytes[2],
            codec.name(),
            codec.id()
        )));
    }
    let mut fp = [0u8; 8];
    fp.copy_from_slice(&bytes[3..ENVELOPE_LEN]);
    if u64::from_le_bytes(fp) != type_fingerprint::<T>() {
        return Err(CodecError("written for another type".into()));
    }
    decode_value(codec, &bytes[ENVELOPE_LEN..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case")]
    enum Event {
        Created { id: u64 },
        Renamed { id: u64, name: String },
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(untagged)]
    enum IdOrName {
        Id(u64),
        Name(String),
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Meta {
        created_by: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Dto {
        id: u64,
        #[serde(flatten)]
        meta: Meta,
        #[serde(skip_serializing_if = "Vec::is_empty", default)]
        tags: Vec<String>,
        events: Vec<Event>,
        refs: Vec<IdOrName>,
        extra: serde_json::Value,
        #[serde(flatten)]
        rest: BTreeMap<String, serde_json::Value>,
        bytes: Vec<u8>,
        float: f64,
        neg: i64,
        unit: (),
        opt: Option<u32>,
    }

    fn sample() -> Dto {
        let mut rest = BTreeMap::new();
        rest.insert(
            "zz_unknown".to_string(),
            serde_json::json!({"a": [1, 2, null]}),
        );
        Dto {
            id: 7,
            meta: Meta {
                created_by: "ana".into(),
                note: None,
            },
            tags: vec![],
            events: vec![
                Event::Created { id: 7 },
                Event::Renamed {
                    id: 7,
                    name: "ñ 🚀".into(),
                },
            ],
            refs: vec![IdOrName::Id(1), IdOrName::Name("x".into())],
            extra: serde_json::json!({"nested": {"k": [true, 1.5, "s"]}, "n": -3}),
            rest,
            bytes: vec![0, 255, 10],
            float: 0.1,
            neg: -42,
            unit: (),
            opt: Some(3),
        }
    }

    #[test]
    fn web_dto_serde_attributes_round_trip_in_every_builtin_codec() {
        for codec in [&MsgPack as &dyn Codec, &Json] {
            let bytes = seal(codec, &sample()).unwrap();
            let back: Dto = open(codec, &bytes).unwrap_or_else(|e| panic!("{}: {e}", codec.name()));
            assert_eq!(back, sample(), "{}", codec.name());
        }
    }

    #[test]
    fn other_type_other_codec_and_garbage_are_rejected() {
        let bytes = seal(&MsgPack, &5u32).unwrap();
        assert!(open::<u64>(&MsgPack, &bytes).is_err(), "type mismatch");
        assert!(open::<u32>(&Json, &bytes).is_err(), "codec mismatch");
        assert!(open::<u32>(&MsgPack, b"garbage bytes here").is_err());
        assert!(open::<u32>(&MsgPack, &[]).is_err());
        let mut truncated = seal(&MsgPack, &sample()).unwrap();
        truncated.truncate(truncated.len() - 3);
        assert!(open::<Dto>(&MsgPack, &truncated).is_err());
        let mut trailing = seal(&Json, &5u32).unwrap();
        trailing.extend_from_slice(b" 6");
        assert!(open::<u32>(&Json, &trailing).is_err());
    }

    /// A codec without a built-in fast path, to exercise the erased path.
    struct ErasedJson;
    impl Codec for ErasedJson {
        fn id(&self) -> u8 {
            100
        }
        fn name(&self) -> &'static str {
            "erased-json"
        }
        fn encode(
            &self,
            value: &dyn erased_serde::Serialize,
            out: &mut Vec<u8>,
        ) -> Result<(), CodecError> {
            Json.encode(value, out)
        }
        fn decode(
            &self,
            bytes: &[u8],
            visit: &mut dyn FnMut(
                &mut dyn erased_serde::Deserializer<'_>,
            ) -> Result<(), erased_serde::Error>,
        ) -> Result<(), CodecError> {
            Json.decode(bytes, visit)
        }
    }

    #[test]
    fn erased_path_matches_the_fast_path() {
        let fast = seal(&Json, &sample()).unwrap();
        let erased = seal(&ErasedJson, &sample()).unwrap();
        assert_eq!(fast[ENVELOPE_LEN..], erased[ENVELOPE_LEN..]);
        assert_eq!(open::<Dto>(&ErasedJson, &erased).unwrap(), sample());
        // And MsgPack through the erased trait methods decodes what the fast path wrote.
        let bytes = encode_value(&MsgPack, &sample()).unwrap();
        let mut slot = None;
        MsgPack
            .decode(&bytes, &mut |de| {
                slot = Some(erased_serde::deserialize::<Dto>(de)?);
                Ok(())
            })
            .unwrap();
        assert_eq!(slot.unwrap(), sample());
    }

    #[test]
    fn memoised_fingerprint_matches_the_computed_one() {
        for _ in 0..3 {
            assert_eq!(
                type_fingerprint::<Dto>(),
                fingerprint_of_name(std::any::type_name::<Dto>())
            );
            assert_eq!(type_fingerprint::<&str>(), type_fingerprint::<String>());
            assert_ne!(type_fingerprint::<u32>(), type_fingerprint::<u64>());
        }
    }

    #[test]
    fn fingerprint_fast_path_agrees_with_normalizing() {
        for name in [
            "app::Widget",
            "alloc::string::String",
            "alloc::vec::Vec<alloc::string::String>",
            "u8",
        ] {
            assert!(!needs_normalizing(name), "{name}");
            assert_eq!(normalize_type_name(name), name);
        }
        for name in [
            "&str",
            "str",
            "[u8]",
            "(u8, str)",
            "core::option::Option<&app::W>",
        ] {
            assert!(needs_normalizing(name), "{name}");
        }
    }

    #[test]
    fn msgpack_writes_field_names() {
        #[derive(Serialize)]
        struct S {
            field_name_here: u8,
        }
        let bytes = encode_value(&MsgPack, &S { field_name_here: 1 }).unwrap();
        assert!(bytes.windows(15).any(|w| w == b"field_name_here"));
    }
}
