//! Codecs turn values into bytes for the store, and back, inside a small envelope.
//!
//! Every stored value is `envelope ++ payload`. The envelope is 11 bytes:
//! a magic byte `0xC5`, the format version `2`, the codec id, and an 8-byte
//! fingerprint of the Rust type that was written. An entry that carries its
//! [`Freshness`] (written under fail-safe) is format `3`: the same 11 bytes,
//! then when it stops being fresh and until when it is kept (8 bytes each,
//! Unix milliseconds), and how long its value took to compute (4 bytes,
//! milliseconds). An entry that carries tags is format `4`: format 3, then
//! when it was read-through (8 bytes, Unix milliseconds: a tag invalidated
//! at or after it makes the entry dead), the number of tags (1 byte) and
//! each tag (2-byte length, UTF-8). On read, any mismatch
//! (foreign bytes, another codec, another type, a truncated payload) is a miss:
//! the entry is deleted and the error counted, so wrong data is never served.
//!
//! Bit 7 of the version byte (`0x82`, `0x83`, `0x84`) says the payload is
//! compressed (feature `compression`, `compress`): an lz4 block behind its
//! uncompressed length (4 bytes, little-endian). The header stays as it is, so
//! [`freshness`], [`restamp`] and [`entry_tags`] read and write compressed
//! entries without inflating them. A reader built without the feature, or an
//! older one, takes such an entry for another format: a miss, never a decode
//! of compressed bytes.
//!
//! [`MsgPack`] (MessagePack with named fields, via `rmp-serde`) is the default: it
//! round-trips the serde attributes web DTOs use (`tag`, `untagged`, `flatten`,
//! `skip_serializing_if`, `serde_json::Value`). [`Json`] is there for stores
//! that humans read. `Bincode` (feature `bincode`) is smaller and faster for
//! plain structs, cannot carry those attributes, and is opt-in only: bincode is
//! unmaintained (RUSTSEC-2025-0141).

#[cfg(feature = "bincode")]
mod bincode;
#[cfg(all(test, feature = "bincode"))]
mod bincode_tests;
#[cfg(feature = "compression")]
mod compress;
#[cfg(all(test, feature = "compression"))]
mod compress_tests;

#[cfg(feature = "bincode")]
pub use self::bincode::Bincode;
#[cfg(feature = "compression")]
pub use self::compress::{compress, Compression};

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
/// any codec. Ids `0..=15` are reserved for cacheside (1 [`MsgPack`], 2 [`Json`],
/// 3 `Bincode`); pick another for your own.
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
    #[cfg(feature = "bincode")]
    Bincode,
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
        #[cfg(feature = "bincode")]
        Some(Builtin::Bincode) => self::bincode::encode(value, out),
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
        #[cfg(feature = "bincode")]
        Some(Builtin::Bincode) => return self::bincode::decode(bytes),
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
/// 2: the fingerprint is the type's traced shape (1 was its name).
const FORMAT_VERSION: u8 = 2;
/// 3: format 2 followed by the entry's [`Freshness`].
const FRESH_VERSION: u8 = 3;
/// 4: format 3 followed by the entry's [`Tagged`] section.
const TAGGED_VERSION: u8 = 4;
/// Set in the version byte of an entry whose payload is compressed (formats 2, 3 and 4 alike).
const COMPRESSED: u8 = 0x80;

/// The format of an entry (2, 3 or 4 as far as it says; the compression bit
/// cleared), and whether its payload is compressed.
fn version(bytes: &[u8]) -> Option<(u8, bool)> {
    if bytes.first() != Some(&MAGIC) {
        return None;
    }
    let v = *bytes.get(1)?;
    Some((v & !COMPRESSED, v & COMPRESSED != 0))
}

/// The tags an entry carries, and when the read that computed it started
/// (Unix milliseconds): a tag invalidated at or after `since_ms` kills it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tagged<'a> {
    /// When the read that computed the value started.
    pub since_ms: u64,
    /// The tags (at most 255, each at most 65,535 bytes).
    pub tags: &'a [String],
}

/// The tags of an entry of format 4: `(since_ms, tags)` (`None`: no tags, or not an entry).
///
/// ```
/// use cache_core::codec::{entry_tags, seal_tagged, Freshness, MsgPack, Salt, Tagged};
/// let fresh = Freshness { fresh_until_ms: 9, stale_until_ms: 9, body_ms: 0 };
/// let tags = ["user:7".to_owned(), "widgets".to_owned()];
/// let bytes = seal_tagged(&MsgPack, &1u8, Salt::NONE, fresh, Tagged { since_ms: 5, tags: &tags }).unwrap();
/// assert_eq!(entry_tags(&bytes), Some((5, vec!["user:7".to_owned(), "widgets".to_owned()])));
/// assert_eq!(cache_core::codec::open::<u8>(&MsgPack, &bytes), Ok(1));
/// ```
pub fn entry_tags(bytes: &[u8]) -> Option<(u64, Vec<String>)> {
    if version(bytes)?.0 != TAGGED_VERSION {
        return None;
    }
    let (since_ms, tags, _) = tag_section(bytes)?;
    Some((since_ms, tags))
}

/// Parses the tag section of a format-4 entry: since, tags, payload offset.
fn tag_section(bytes: &[u8]) -> Option<(u64, Vec<String>, usize)> {
    let mut at = FRESH_ENVELOPE_LEN;
    let since = bytes.get(at..at + 8)?;
    let since_ms = u64::from_le_bytes(since.try_into().ok()?);
    at += 8;
    let count = *bytes.get(at)?;
    at += 1;
    let mut tags = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let len = bytes.get(at..at + 2)?;
        let len = usize::from(u16::from_le_bytes(len.try_into().ok()?));
        at += 2;
        let tag = std::str::from_utf8(bytes.get(at..at + len)?).ok()?;
        tags.push(tag.to_owned());
        at += len;
    }
    Some((since_ms, tags, at))
}

/// [`seal_fresh`] with tags: format 4.
pub fn seal_tagged<T: Storable + ?Sized>(
    codec: &dyn Codec,
    value: &T,
    salt: Salt,
    fresh: Freshness,
    tagged: Tagged<'_>,
) -> Result<Vec<u8>, CodecError> {
    if tagged.tags.len() > usize::from(u8::MAX) {
        return Err(CodecError(format!(
            "{} tags on one entry; at most 255",
            tagged.tags.len()
        )));
    }
    let mut out = Vec::with_capacity(FRESH_ENVELOPE_LEN + 64);
    out.push(MAGIC);
    out.push(TAGGED_VERSION);
    out.push(codec.id());
    out.extend_from_slice(&fingerprint::<T::Owned>(salt).to_le_bytes());
    push_freshness(&mut out, fresh);
    out.extend_from_slice(&tagged.since_ms.to_le_bytes());
    out.push(tagged.tags.len() as u8);
    for tag in tagged.tags {
        let len = u16::try_from(tag.len())
            .map_err(|_| CodecError(format!("a tag of {} bytes; at most 65,535", tag.len())))?;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(tag.as_bytes());
    }
    encode_payload(codec, value, &mut out)?;
    Ok(out)
}

/// Appends the payload of an entry: `value` encoded with `codec`.
fn encode_payload<T: Storable + ?Sized>(
    codec: &dyn Codec,
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    #[cfg(feature = "bincode")]
    if codec.builtin() == Some(Builtin::Bincode) {
        self::bincode::check_shape::<T::Owned>()?;
    }
    encode_into(codec, value, out)
}

/// Length of the envelope in front of every stored payload (format 2).
pub const ENVELOPE_LEN: usize = 11;
/// Length of the envelope of an entry that carries its [`Freshness`] (format 3).
pub const FRESH_ENVELOPE_LEN: usize = ENVELOPE_LEN + 20;

/// When an entry stops being fresh, and what its value cost to compute:
/// stamped into entries kept past their TTL (fail-safe), so that every
/// process reading the entry agrees on both.
///
/// ```
/// use cache_core::codec::{freshness, restamp, seal_fresh, Freshness, MsgPack, Salt};
/// let fresh = Freshness {
///     fresh_until_ms: 1_700_000_060_000,
///     stale_until_ms: 1_700_003_660_000,
///     body_ms: 12,
/// };
/// let bytes = seal_fresh(&MsgPack, &7u32, Salt::NONE, Some(fresh)).unwrap();
/// assert_eq!(freshness(&bytes), Some(fresh));
/// let later = Freshness { fresh_until_ms: 1_700_000_090_000, ..fresh };
/// assert_eq!(freshness(&restamp(&bytes, later).unwrap()), Some(later));
/// assert_eq!(cache_core::codec::open::<u32>(&MsgPack, &bytes), Ok(7));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// The entry is fresh before this instant (milliseconds since the Unix epoch), stale after.
    pub fresh_until_ms: u64,
    /// The entry is kept, stale, until this instant (its store TTL ends about then).
    pub stale_until_ms: u64,
    /// How long the body took to compute the value, in milliseconds.
    pub body_ms: u32,
}

impl Freshness {
    /// Whether the entry is still fresh at `now_ms`.
    pub fn is_fresh_at(&self, now_ms: u64) -> bool {
        now_ms < self.fresh_until_ms
    }
}

/// The freshness an entry carries (`None`: format 2, or not an entry).
pub fn freshness(bytes: &[u8]) -> Option<Freshness> {
    let (format, _) = version(bytes)?;
    if bytes.len() < FRESH_ENVELOPE_LEN || !matches!(format, FRESH_VERSION | TAGGED_VERSION) {
        return None;
    }
    let at = |i: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[i..i + 8]);
        u64::from_le_bytes(word)
    };
    let mut body = [0u8; 4];
    body.copy_from_slice(&bytes[ENVELOPE_LEN + 16..FRESH_ENVELOPE_LEN]);
    Some(Freshness {
        fresh_until_ms: at(ENVELOPE_LEN),
        stale_until_ms: at(ENVELOPE_LEN + 8),
        body_ms: u32::from_le_bytes(body),
    })
}

/// `bytes` (an entry of format 2 or 3) with `fresh` stamped in, as format 3
/// (format 4 stays 4, with its tags); `None` when `bytes` is not an entry.
/// The payload is copied as it is: neither decoded nor, when compressed, inflated.
pub fn restamp(bytes: &[u8], fresh: Freshness) -> Option<Vec<u8>> {
    let payload_at = payload_offset(bytes)?;
    let (format, compressed) = version(bytes)?;
    let tagged = format == TAGGED_VERSION;
    let mut out = Vec::with_capacity(FRESH_ENVELOPE_LEN + bytes.len());
    out.push(MAGIC);
    let format = if tagged {
        TAGGED_VERSION
    } else {
        FRESH_VERSION
    };
    out.push(if compressed {
        format | COMPRESSED
    } else {
        format
    });
    out.extend_from_slice(&bytes[2..ENVELOPE_LEN]);
    push_freshness(&mut out, fresh);
    if tagged {
        // The tag section as it was: the entry still dies with its tags.
        out.extend_from_slice(&bytes[FRESH_ENVELOPE_LEN..payload_at]);
    }
    out.extend_from_slice(&bytes[payload_at..]);
    Some(out)
}

fn push_freshness(out: &mut Vec<u8>, fresh: Freshness) {
    out.extend_from_slice(&fresh.fresh_until_ms.to_le_bytes());
    out.extend_from_slice(&fresh.stale_until_ms.to_le_bytes());
    out.extend_from_slice(&fresh.body_ms.to_le_bytes());
}

/// Where the payload of an entry starts (`None`: not an entry of a known format).
fn payload_offset(bytes: &[u8]) -> Option<usize> {
    let len = match version(bytes)?.0 {
        FORMAT_VERSION => ENVELOPE_LEN,
        FRESH_VERSION => FRESH_ENVELOPE_LEN,
        TAGGED_VERSION => tag_section(bytes)?.2,
        _ => return None,
    };
    (bytes.len() >= len).then_some(len)
}

/// What a caller mixes into the type fingerprint besides the type's shape.
///
/// `always` is mixed into every entry (`#[cache(version = N)]`, the type
/// parameters of a generic function); `untraced` only into entries of types
/// whose shape could not be traced whole ([`Shape::complete`](crate::shape::Shape)
/// false: the annotated function's crate version). [`Salt::NONE`] is what the
/// provider API uses.
///
/// ```
/// use cache_core::codec::{fingerprint, Salt};
/// #[derive(serde::Deserialize)] struct W { id: u64 }
/// assert_eq!(fingerprint::<W>(Salt::NONE), fingerprint::<W>(Salt::NONE));
/// assert_ne!(fingerprint::<W>(Salt::NONE), fingerprint::<W>(Salt::of_version(2)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Salt {
    /// Mixed into every fingerprint.
    pub always: u64,
    /// Mixed in only when the type's shape is not fully traced.
    pub untraced: u64,
}

impl Salt {
    /// No salt: the fingerprint is the shape's.
    pub const NONE: Salt = Salt {
        always: 0,
        untraced: 0,
    };

    /// The salt of `#[cache(version = N)]` (`0`: none).
    pub fn of_version(version: u32) -> Salt {
        Salt {
            always: if version == 0 {
                0
            } else {
                bytes128(format!("version|{version}").as_bytes()) as u64
            },
            untraced: 0,
        }
    }

    /// `self` with `text` (a crate version, a list of type parameters) mixed into `always`.
    pub fn with(self, text: &str) -> Salt {
        Salt {
            always: self.always ^ bytes128(text.as_bytes()) as u64,
            ..self
        }
    }

    /// `self` with `text` mixed into `untraced`.
    pub fn with_untraced(self, text: &str) -> Salt {
        Salt {
            untraced: self.untraced ^ bytes128(text.as_bytes()) as u64,
            ..self
        }
    }
}

/// The type fingerprint stored in the envelope: the traced shape of `T`
/// ([`crate::shape`]) mixed with `salt`.
///
/// Any change to the shape (a field added, removed, renamed or retyped, a
/// variant added, recursively) changes it, so bytes written for another shape
/// are a miss, never decoded into the new one. Renaming or moving the Rust
/// type alone does not.
///
/// ```
/// use cache_core::codec::{fingerprint, Salt};
/// assert_ne!(fingerprint::<u32>(Salt::NONE), fingerprint::<u64>(Salt::NONE));
/// assert_eq!(fingerprint::<Box<String>>(Salt::NONE), fingerprint::<String>(Salt::NONE));
/// ```
pub fn fingerprint<T: DeserializeOwned>(salt: Salt) -> u64 {
    let shape = crate::shape::shape_of::<T>();
    let mut fp = shape.fingerprint ^ salt.always;
    if !shape.complete {
        fp ^= salt.untraced;
    }
    fp
}

/// A value that can be written: its type, or the owned type readers ask for
/// (`str` is read as `String`, `[T]` as `Vec<T>`), which gives the fingerprint.
///
/// ```
/// use cache_core::codec::{fingerprint, Salt, Storable};
/// fn owned_fp<V: Storable + ?Sized>() -> u64 { fingerprint::<V::Owned>(Salt::NONE) }
/// assert_eq!(owned_fp::<str>(), fingerprint::<String>(Salt::NONE));
/// assert_eq!(owned_fp::<[u8]>(), fingerprint::<Vec<u8>>(Salt::NONE));
/// ```
pub trait Storable: Serialize {
    /// The type a reader decodes this value as.
    type Owned: Serialize + DeserializeOwned;
}

impl<T: Serialize + DeserializeOwned> Storable for T {
    type Owned = T;
}

impl Storable for str {
    type Owned = String;
}

impl<T: Serialize + DeserializeOwned> Storable for [T] {
    type Owned = Vec<T>;
}

/// Envelope plus payload, ready for the store (no salt).
pub fn seal<T: Storable + ?Sized>(codec: &dyn Codec, value: &T) -> Result<Vec<u8>, CodecError> {
    seal_salted(codec, value, Salt::NONE)
}

/// [`seal`] with a [`Salt`] mixed into the fingerprint.
pub fn seal_salted<T: Storable + ?Sized>(
    codec: &dyn Codec,
    value: &T,
    salt: Salt,
) -> Result<Vec<u8>, CodecError> {
    seal_fresh(codec, value, salt, None)
}

/// [`seal_salted`], stamping `fresh` into the envelope (format 3) when given.
pub fn seal_fresh<T: Storable + ?Sized>(
    codec: &dyn Codec,
    value: &T,
    salt: Salt,
    fresh: Option<Freshness>,
) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(FRESH_ENVELOPE_LEN + 64);
    out.push(MAGIC);
    out.push(if fresh.is_some() {
        FRESH_VERSION
    } else {
        FORMAT_VERSION
    });
    out.push(codec.id());
    out.extend_from_slice(&fingerprint::<T::Owned>(salt).to_le_bytes());
    if let Some(fresh) = fresh {
        push_freshness(&mut out, fresh);
    }
    encode_payload(codec, value, &mut out)?;
    Ok(out)
}

/// Checks the envelope and decodes the payload as `T` (no salt).
pub fn open<T: DeserializeOwned>(codec: &dyn Codec, bytes: &[u8]) -> Result<T, CodecError> {
    open_salted(codec, bytes, Salt::NONE)
}

/// [`open`] for entries sealed with `salt`.
///
/// A compressed payload is inflated up to [`DEFAULT_MAX_VALUE_SIZE`](crate::DEFAULT_MAX_VALUE_SIZE);
/// [`open_bounded`] takes another bound.
pub fn open_salted<T: DeserializeOwned>(
    codec: &dyn Codec,
    bytes: &[u8],
    salt: Salt,
) -> Result<T, CodecError> {
    open_bounded(codec, bytes, salt, crate::DEFAULT_MAX_VALUE_SIZE)
}

/// [`open_salted`], inflating a compressed payload only when it says it is
/// at most `max_payload` bytes (a [`Cache`](crate::Cache) passes its
/// [`max_value_size`](crate::CacheBuilder::max_value_size)): a corrupt or hostile
/// length is an error, before anything is allocated for it. A compressed
/// entry is an error in a build without the `compression` feature.
///
/// ```
/// use cache_core::codec::{open_bounded, seal, MsgPack, Salt};
/// let bytes = seal(&MsgPack, "spanner").unwrap();
/// assert_eq!(open_bounded::<String>(&MsgPack, &bytes, Salt::NONE, 1024).unwrap(), "spanner");
/// ```
pub fn open_bounded<T: DeserializeOwned>(
    codec: &dyn Codec,
    bytes: &[u8],
    salt: Salt,
    max_payload: usize,
) -> Result<T, CodecError> {
    if bytes.len() < ENVELOPE_LEN {
        return Err(CodecError(format!(
            "{} bytes, shorter than the envelope",
            bytes.len()
        )));
    }
    let Some(payload_at) = payload_offset(bytes) else {
        return Err(CodecError(
            "not a cacheside entry (or another format version)".into(),
        ));
    };
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
    if u64::from_le_bytes(fp) != fingerprint::<T>(salt) {
        return Err(CodecError(
            "written for another shape of the type (or another version)".into(),
        ));
    }
    let payload = &bytes[payload_at..];
    if bytes[1] & COMPRESSED == 0 {
        return decode_value(codec, payload);
    }
    #[cfg(feature = "compression")]
    {
        let inflated = self::compress::inflate(payload, max_payload)?;
        decode_value(codec, &inflated)
    }
    #[cfg(not(feature = "compression"))]
    {
        let _ = max_payload;
        Err(CodecError(
            "a compressed entry, and this build has no `compression` feature (enable it on cacheside to read such entries)".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_entries_read_as_plain_ones_and_truncation_is_an_error() {
        let fresh = Freshness {
            fresh_until_ms: 10,
            stale_until_ms: 20,
            body_ms: 3,
        };
        for codec in [&MsgPack as &dyn Codec, &Json] {
            let plain = seal(codec, "value").unwrap();
            let stamped = seal_fresh(codec, "value", Salt::NONE, Some(fresh)).unwrap();
            assert_eq!(
                stamped.len(),
                plain.len() + FRESH_ENVELOPE_LEN - ENVELOPE_LEN
            );
            assert_eq!(freshness(&plain), None);
            assert_eq!(freshness(&stamped), Some(fresh));
            assert_eq!(open::<String>(codec, &stamped).unwrap(), "value");
            // Restamping keeps the payload and the fingerprint.
            let later = Freshness {
                fresh_until_ms: 15,
                ..fresh
            };
            for from in [&plain, &stamped] {
                let again = restamp(from, later).unwrap();
                assert_eq!(freshness(&again), Some(later));
                assert_eq!(open::<String>(codec, &again).unwrap(), "value");
                assert!(
                    open::<u32>(codec, &again).is_err(),
                    "the fingerprint still holds"
                );
            }
            // A format-3 header cut short is not an entry.
            for cut in ENVELOPE_LEN..FRESH_ENVELOPE_LEN {
                assert!(open::<String>(codec, &stamped[..cut]).is_err());
                assert_eq!(freshness(&stamped[..cut]), None);
                assert!(restamp(&stamped[..cut], later).is_none());
            }
        }
        assert!(restamp(b"foreign bytes, not an entry", fresh).is_none());
        // Tagged entries: the tags survive a restamp, and a cut tag section is no entry.
        let tags = ["user:7".to_owned(), "é:%".to_owned()];
        let tagged = Tagged {
            since_ms: 3,
            tags: &tags,
        };
        let bytes = seal_tagged(&MsgPack, "v", Salt::NONE, fresh, tagged).unwrap();
        assert_eq!(entry_tags(&bytes), Some((3, tags.to_vec())));
        let later = Freshness {
            fresh_until_ms: 15,
            ..fresh
        };
        let again = restamp(&bytes, later).unwrap();
        assert_eq!(
            (freshness(&again), entry_tags(&again)),
            (Some(later), Some((3, tags.to_vec())))
        );
        assert_eq!(open::<String>(&MsgPack, &again).unwrap(), "v");
        let payload_at = payload_offset(&bytes).unwrap();
        for cut in FRESH_ENVELOPE_LEN..payload_at {
            assert!(
                open::<String>(&MsgPack, &bytes[..cut]).is_err(),
                "cut at {cut}"
            );
            assert_eq!(entry_tags(&bytes[..cut]), None);
        }
        let too_many: Vec<String> = (0..256).map(|i| i.to_string()).collect();
        let over = Tagged {
            since_ms: 0,
            tags: &too_many,
        };
        assert!(seal_tagged(&MsgPack, "v", Salt::NONE, fresh, over).is_err());
        assert!(fresh.is_fresh_at(9) && !fresh.is_fresh_at(10));
    }
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
    fn bytes_written_for_an_older_shape_are_rejected() {
        #[derive(Serialize, Deserialize)]
        struct User {
            id: u64,
            name: String,
        }
        mod next {
            #[derive(serde::Serialize, serde::Deserialize, Debug)]
            pub struct User {
                pub id: u64,
                pub name: String,
                pub email: Option<String>,
                #[serde(default)]
                pub is_admin: bool,
            }
        }
        for codec in [&MsgPack as &dyn Codec, &Json] {
            let old = seal(
                codec,
                &User {
                    id: 1,
                    name: "ana".into(),
                },
            )
            .unwrap();
            // The payload alone would decode into the new shape (wrong data)…
            assert!(decode_value::<next::User>(codec, &old[ENVELOPE_LEN..]).is_ok());
            // …the envelope makes it a miss.
            assert!(open::<next::User>(codec, &old).is_err(), "{}", codec.name());
            assert!(open::<User>(codec, &old).is_ok());
        }
    }

    #[test]
    fn salts_separate_versions_and_untraced_types_only_where_asked() {
        let v = seal_salted(&MsgPack, &5u32, Salt::of_version(3)).unwrap();
        assert!(open::<u32>(&MsgPack, &v).is_err());
        assert!(open_salted::<u32>(&MsgPack, &v, Salt::of_version(4)).is_err());
        assert_eq!(
            open_salted::<u32>(&MsgPack, &v, Salt::of_version(3)).unwrap(),
            5
        );
        // The crate version only matters for types that cannot be traced whole.
        let crate_v1 = Salt::NONE.with_untraced("1.0.0");
        let crate_v2 = Salt::NONE.with_untraced("1.0.1");
        let traced = seal_salted(&MsgPack, &5u32, crate_v1).unwrap();
        assert_eq!(open_salted::<u32>(&MsgPack, &traced, crate_v2).unwrap(), 5);
        let value = serde_json::json!({"a": 1});
        let untraced = seal_salted(&MsgPack, &value, crate_v1).unwrap();
        assert!(open_salted::<serde_json::Value>(&MsgPack, &untraced, crate_v2).is_err());
        assert!(open_salted::<serde_json::Value>(&MsgPack, &untraced, crate_v1).is_ok());
        assert_eq!(Salt::of_version(0), Salt::NONE);
    }

    #[test]
    fn a_compressed_entry_reads_only_where_the_feature_is() {
        // `5u32` in MessagePack is the byte 0x05; as an lz4 block behind its
        // length: one literal (token 0x10), then the byte.
        let mut bytes = seal(&MsgPack, &5u32).unwrap()[..ENVELOPE_LEN].to_vec();
        bytes[1] |= COMPRESSED;
        bytes.extend_from_slice(&[1, 0, 0, 0, 0x10, 0x05]);
        let read = open::<u32>(&MsgPack, &bytes);
        #[cfg(feature = "compression")]
        assert_eq!(read, Ok(5));
        #[cfg(not(feature = "compression"))]
        assert!(read.unwrap_err().0.contains("`compression` feature"));
        // Not lz4 at all: an error either way.
        bytes.truncate(ENVELOPE_LEN);
        bytes.push(0x05);
        assert!(open::<u32>(&MsgPack, &bytes).is_err());
        // Another bit set in the version byte: not an entry.
        bytes[1] = FORMAT_VERSION | 0x40;
        assert!(open::<u32>(&MsgPack, &bytes).is_err());
    }

    #[test]
    fn format_version_1_entries_are_a_miss() {
        let mut bytes = seal(&MsgPack, &5u32).unwrap();
        bytes[1] = 1;
        assert!(open::<u32>(&MsgPack, &bytes).is_err());
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
