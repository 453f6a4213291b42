//! [`Bincode`] (feature `bincode`): bincode 2's serde encoding, and the
//! checks that keep what it cannot represent out of the store.

use serde::de::{DeserializeOwned, DeserializeSeed};
use serde::ser::{self, Serialize};

use super::{Builtin, Codec, CodecError};

/// The largest allocation one decode may claim (a string's or a vector's
/// length, before its bytes are read): a corrupt or hostile length is then an
/// error instead of an allocation of that size. Legitimate values stay far
/// below it (the payload itself is bounded by the cache's `max_value_size`).
const DECODE_LIMIT: usize = 256 * 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_LIMIT>()
}

/// bincode 2 through serde (`bincode::serde`, `config::standard()`: varint
/// integers, little-endian, no field names). Opt-in, feature `bincode`.
///
/// Smaller and faster than [`MsgPack`](super::MsgPack) on plain structs
/// (figures in BENCHMARKS.md), but bincode is not self-describing, so it
/// **cannot carry the serde attributes web DTOs use**: `#[serde(tag = …)]`,
/// `#[serde(untagged)]`, `#[serde(flatten)]`, `skip_serializing_if`, and
/// `serde_json::Value` need a self-describing format. cacheside keeps them
/// out of the store instead of serving a wrong value:
///
/// - a type with an untagged or internally tagged enum, a `flatten` or a
///   `serde_json::Value` (a shape that reads through `deserialize_any`,
///   [`Shape::complete`](crate::shape::Shape) false) is refused at write;
/// - a value whose serialization skips a field (`skip_serializing_if`) is
///   refused at write: bincode would write the other fields in its place, and
///   a reader could decode them as a different, valid value;
/// - a refused write is an encode error: the annotated function returns its
///   value uncached, logs it and counts it in `Stats::errors`
///   (`Cache::set` returns [`Error::Encode`](crate::Error::Encode));
/// - bytes that do not decode (corrupt, truncated, trailing bytes, a length
///   over 256 MiB) are a miss: the entry is deleted and counted, never a
///   panic or a value.
///
/// Not caught: `#[serde(skip_serializing)]` without `skip_deserializing`, and
/// hand-written `Serialize`/`Deserialize` pairs that disagree; do not cache
/// such types with bincode.
///
/// **Why it is not the default:** bincode is unmaintained
/// ([RUSTSEC-2025-0141](https://rustsec.org/advisories/RUSTSEC-2025-0141)),
/// and MessagePack round-trips every attribute above.
///
/// ```
/// use cache_core::codec::{open, seal, Bincode, MsgPack};
/// use cache_core::{Cache, NullBackend};
/// #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
/// struct Widget { id: u64, name: String }
///
/// let w = Widget { id: 7, name: "spanner".into() };
/// let small = seal(&Bincode, &w).unwrap();
/// assert!(small.len() < seal(&MsgPack, &w).unwrap().len());
/// assert_eq!(open::<Widget>(&Bincode, &small).unwrap(), w);
/// // A cache selects it like any codec:
/// let cache = Cache::builder(NullBackend).codec(Bincode).build();
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct Bincode;

impl Codec for Bincode {
    fn id(&self) -> u8 {
        3
    }
    fn name(&self) -> &'static str {
        "bincode"
    }
    fn builtin(&self) -> Option<Builtin> {
        Some(Builtin::Bincode)
    }
    fn encode(
        &self,
        value: &dyn erased_serde::Serialize,
        out: &mut Vec<u8>,
    ) -> Result<(), CodecError> {
        encode(value, out)
    }
    fn decode(
        &self,
        bytes: &[u8],
        visit: &mut dyn FnMut(
            &mut dyn erased_serde::Deserializer<'_>,
        ) -> Result<(), erased_serde::Error>,
    ) -> Result<(), CodecError> {
        let ((), read) = bincode::serde::seed_decode_from_slice(Visit(visit), bytes, config())
            .map_err(CodecError::from_display)?;
        whole(read, bytes.len())
    }
}

/// Hands bincode's deserializer to an erased visitor.
struct Visit<'v>(
    &'v mut dyn FnMut(&mut dyn erased_serde::Deserializer<'_>) -> Result<(), erased_serde::Error>,
);

impl<'de> DeserializeSeed<'de> for Visit<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        let mut erased = <dyn erased_serde::Deserializer>::erase(de);
        (self.0)(&mut erased).map_err(serde::de::Error::custom)
    }
}

fn whole(read: usize, len: usize) -> Result<(), CodecError> {
    if read == len {
        Ok(())
    } else {
        Err(CodecError(format!(
            "{} trailing bytes after the bincode value",
            len - read
        )))
    }
}

/// Refuses, before writing, a type bincode cannot read back: one whose
/// shape reads through `deserialize_any`.
pub(super) fn check_shape<T: DeserializeOwned>() -> Result<(), CodecError> {
    if crate::shape::shape_of::<T>().complete {
        return Ok(());
    }
    Err(CodecError(format!(
        "{} has parts bincode cannot read back (untagged or internally tagged enums, \
         #[serde(flatten)], serde_json::Value: they need a self-describing format); \
         cache it with the MsgPack codec",
        std::any::type_name::<T>()
    )))
}

/// Encodes `value`, refusing one whose serialization skips a field.
pub(super) fn encode<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), CodecError> {
    value.serialize(Probe).map_err(|Refused(why)| {
        CodecError(format!(
            "{why}; bincode cannot represent it, cache this type with the MsgPack codec"
        ))
    })?;
    bincode::serde::encode_into_std_write(value, out, config())
        .map(|_| ())
        .map_err(CodecError::from_display)
}

/// Decodes a whole payload as `T`.
pub(super) fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, read) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(CodecError::from_display)?;
    whole(read, bytes.len())?;
    Ok(value)
}

/// Why [`Probe`] refused a value.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

impl ser::Error for Refused {
    fn custom<M: std::fmt::Display>(msg: M) -> Self {
        Refused(msg.to_string())
    }
}

/// A serializer that writes nothing and fails where a value would not
/// survive bincode: a skipped struct field (serde calls `skip_field` for each
/// field `skip_serializing_if` leaves out), a sequence or map of unknown
/// length. It walks the value as bincode does (not human-readable).
#[derive(Clone, Copy)]
struct Probe;

/// [`Probe`] inside a struct (or struct variant): names it in its refusal.
struct ProbeStruct(&'static str);

macro_rules! accept {
    ($($method:ident($ty:ty)),* $(,)?) => {
        $(fn $method(self, _: $ty) -> Result<(), Refused> { Ok(()) })*
    };
}

impl ser::Serializer for Probe {
    type Ok = ();
    type Error = Refused;
    type SerializeSeq = Probe;
    type SerializeTuple = Probe;
    type SerializeTupleStruct = Probe;
    type SerializeTupleVariant = Probe;
    type SerializeMap = Probe;
    type SerializeStruct = ProbeStruct;
    type SerializeStructVariant = ProbeStruct;

    accept!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_i128(i128),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_u128(u128),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
    );
    fn serialize_none(self) -> Result<(), Refused> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Refused> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Refused> {
        Ok(())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
    ) -> Result<(), Refused> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Refused> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        value: &T,
    ) -> Result<(), Refused> {
        value.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Probe, Refused> {
        match len {
            Some(_) => Ok(self),
            None => Err(Refused("a sequence of unknown length".into())),
        }
    }
    fn serialize_tuple(self, _: usize) -> Result<Probe, Refused> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Probe, Refused> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Probe, Refused> {
        Ok(self)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Probe, Refused> {
        match len {
            Some(_) => Ok(self),
            None => Err(Refused(
                "a map of unknown length (#[serde(flatten)]?)".into(),
            )),
        }
    }
    fn serialize_struct(self, name: &'static str, _: usize) -> Result<ProbeStruct, Refused> {
        Ok(ProbeStruct(name))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<ProbeStruct, Refused> {
        Ok(ProbeStruct(variant))
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

impl ser::SerializeSeq for Probe {
    type Ok = ();
    type Error = Refused;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Refused> {
        value.serialize(Probe)
    }
    fn end(self) -> Result<(), Refused> {
        Ok(())
    }
}

impl ser::SerializeTuple for Probe {
    type Ok = ();
    type Error = Refused;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Refused> {
        value.serialize(Probe)
    }
    fn end(self) -> Result<(), Refused> {
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Probe {
    type Ok = ();
    type Error = Refused;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Refused> {
        value.serialize(Probe)
    }
    fn end(self) -> Result<(), Refused> {
        Ok(())
    }
}

impl ser::SerializeTupleVariant for Probe {
    type Ok = ();
    type Error = Refused;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Refused> {
        value.serialize(Probe)
    }
    fn end(self) -> Result<(), Refused> {
        Ok(())
    }
}

impl ser::SerializeMap for Probe {
    type Ok = ();
    type Error = Refused;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Refused> {
        key.serialize(Probe)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Refused> {
        value.serialize(Probe)
    }
    fn end(self) -> Result<(), Refused> {
        Ok(())
    }
}

impl ProbeStruct {
    fn skipped(&self, key: &'static str) -> Refused {
        Refused(format!(
            "field `{key}` of `{}` was left out by #[serde(skip_serializing_if)]",
            self.0
        ))
    }
}

impl ser::SerializeStruct for ProbeStruct {
    type Ok = ();
    type Error = Refused;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Refused> {
        value.serialize(Probe)
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), Refused> {
        Err(self.skipped(key))
    }
    fn end(self) -> Result<(), Refused> {
        Ok(())
    }
}

impl ser::SerializeStructVariant for ProbeStruct {
    type Ok = ();
    type Error = Refused;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Refused> {
        value.serialize(Probe)
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), Refused> {
        Err(self.skipped(key))
    }
    fn end(self) -> Result<(), Refused> {
        Ok(())
    }
}
