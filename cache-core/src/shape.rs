//! The shape of a type, traced through its `Deserialize`: the fingerprint
//! that makes bytes written for another shape of a type a miss.
//!
//! A recording deserializer drives `T::deserialize` without any data and
//! notes what `T` asks for: struct and field names, enum and variant names,
//! and the primitive or composite type of every field, recursively. The
//! fingerprint is a stable hash of that description, so adding, removing,
//! renaming or retyping a field (or a variant) anywhere inside the type
//! changes it, while moving or renaming the Rust type alone does not.
//!
//! Tracing is tolerant where [`serde-reflection`](https://docs.rs/serde-reflection)
//! (which we evaluated first) stops: a field whose own `Deserialize` rejects
//! the placeholder data (a `DateTime` parsing `""`, a `Uuid` wanting 16 bytes)
//! is recorded as what it asked for (a string, bytes) and tracing goes on
//! with the other fields in later passes, instead of failing the whole type.
//! What no deserializer can learn without data is marked *untraced*: parts
//! that deserialize through `deserialize_any` (untagged and internally
//! tagged enums, `#[serde(flatten)]`, `serde_json::Value`) or read an
//! identifier as a value. Such a type still gets a fingerprint of what was
//! traced, and [`Shape::complete`] is false: the cache then also mixes in what
//! the user controls (`#[cache(version = N)]`, the crate's version).
//!
//! A type is traced once per process; later calls read a per-thread memo
//! (a few nanoseconds).
//!
//! Over 600 lines: the tracer is one `Deserializer` (every `deserialize_*`
//! method serde defines) with the access types it hands out, which read
//! best side by side; the unit tests are the last 220 lines.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::rc::Rc;
use std::sync::{LazyLock, PoisonError, RwLock};

use serde::de::{self, DeserializeOwned, DeserializeSeed, Visitor};

use crate::hash::bytes128;

/// What tracing learnt of a type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Stable hash of the traced description.
    pub fingerprint: u64,
    /// False when part of the type could not be traced (see the module docs).
    pub complete: bool,
}

/// The shape of `T`, traced on first use and remembered.
///
/// ```
/// use cache_core::shape::shape_of;
/// #[derive(serde::Deserialize)] struct V1 { id: u64, name: String }
/// #[derive(serde::Deserialize)] struct V2 { id: u64, name: String, email: Option<String> }
/// assert_ne!(shape_of::<V1>().fingerprint, shape_of::<V2>().fingerprint);
/// assert!(shape_of::<V1>().complete);
/// assert!(!shape_of::<serde_json::Value>().complete);
/// ```
pub fn shape_of<T: DeserializeOwned>() -> Shape {
    let id = typeid::of::<T>();
    // Per-thread memo, indexed by the type name's address and checked by
    // the (lifetime-erased) TypeId: no lock and no hashing on a hit.
    const SLOTS: usize = 64;
    type Slot = RefCell<Option<(std::any::TypeId, Shape)>>;
    thread_local! {
        static MEMO: [Slot; SLOTS] = const { [const { RefCell::new(None) }; SLOTS] };
    }
    let slot = (std::any::type_name::<T>().as_ptr() as usize >> 3) % SLOTS;
    let memo = MEMO.with(|m| *m[slot].borrow());
    if let Some((seen, shape)) = memo {
        if seen == id {
            return shape;
        }
    }
    let shape = shared_shape::<T>(id);
    MEMO.with(|m| *m[slot].borrow_mut() = Some((id, shape)));
    shape
}

fn shared_shape<T: DeserializeOwned>(id: std::any::TypeId) -> Shape {
    static SHAPES: LazyLock<RwLock<HashMap<std::any::TypeId, Shape>>> =
        LazyLock::new(Default::default);
    if let Some(s) = SHAPES
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&id)
    {
        return *s;
    }
    // A `Deserialize` impl may panic on the placeholder data (an `unwrap` in
    // a hand-written visitor): that must not take the caller down. Such a
    // type is fingerprinted by its name and counts as untraced.
    let shape =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(trace::<T>)).unwrap_or_else(|_| {
            Shape {
                fingerprint: bytes128(
                    format!("cacheside-shape-1|panicked|{}", std::any::type_name::<T>()).as_bytes(),
                ) as u64,
                complete: false,
            }
        });
    if !shape.complete {
        tracing::info!(
            r#type = std::any::type_name::<T>(),
            "cacheside cannot trace the whole shape of this type (it has parts that deserialize through \
             deserialize_any: untagged or internally tagged enums, #[serde(flatten)], serde_json::Value); \
             entries written by #[cache] also carry your crate's version and #[cache(version = N)]: \
             bump `version` when such a part changes within one release"
        );
    }
    SHAPES
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id, shape);
    shape
}

/// The traced description of `T` (for tests and for the curious).
///
/// ```
/// #[derive(serde::Deserialize)] struct W { id: u64, tags: Vec<String> }
/// assert_eq!(cache_core::shape::describe::<W>(), "struct W{id:u64,tags:seq(str)}");
/// ```
pub fn describe<T: DeserializeOwned>() -> String {
    let state = State::default();
    let root = state.drive::<T>();
    state.render(&root)
}

fn trace<T: DeserializeOwned>() -> Shape {
    let state = State::default();
    let root = state.drive::<T>();
    let text = state.render(&root);
    let complete = !state.untraced.get() && is_complete(&state, &root, &mut Vec::new());
    Shape {
        fingerprint: bytes128(format!("cacheside-shape-1|{text}").as_bytes()) as u64,
        complete,
    }
}

/// Bounds, so that a pathological type cannot make tracing run away.
const MAX_PASSES: usize = 4096;
const MAX_DEPTH: usize = 96;

type Slot = Rc<RefCell<Format>>;

fn slot() -> Slot {
    Rc::new(RefCell::new(Format::Unknown))
}

#[derive(Debug, Clone)]
enum Format {
    Unknown,
    Prim(&'static str),
    Option(Slot),
    Seq(Slot),
    Map(Slot, Slot),
    Tuple(Vec<Slot>),
    Container(usize),
    /// `deserialize_any`: only data could tell.
    Any,
    /// An identifier read as a value (adjacently tagged enums): only data could tell.
    Identifier,
}

struct Member {
    name: String,
    slot: Slot,
    explored: bool,
}

struct Container {
    kind: &'static str,
    name: String,
    members: Vec<Member>,
}

#[derive(Default)]
struct State {
    containers: RefCell<Vec<Container>>,
    index: RefCell<HashMap<String, usize>>,
    stack: RefCell<Vec<usize>>,
    /// Members explored so far: a pass that adds none made no progress.
    explored: std::cell::Cell<usize>,
    untraced: std::cell::Cell<bool>,
}

impl State {
    fn drive<T: DeserializeOwned>(&self) -> Slot {
        let root = slot();
        for _ in 0..MAX_PASSES {
            let before = self.explored.get();
            self.stack.borrow_mut().clear();
            let _ = T::deserialize(Tracer {
                state: self,
                slot: root.clone(),
            });
            if is_complete(self, &root, &mut Vec::new()) {
                return root;
            }
            if self.explored.get() == before {
                break;
            }
        }
        self.untraced.set(true);
        root
    }

    fn intern(&self, kind: &'static str, name: &str, members: &[&str]) -> usize {
        let id = format!("{kind} {name} {members:?}");
        if let Some(&i) = self.index.borrow().get(&id) {
            return i;
        }
        let mut containers = self.containers.borrow_mut();
        containers.push(Container {
            kind,
            name: name.to_owned(),
            members: members
                .iter()
                .map(|m| Member {
                    name: (*m).to_owned(),
                    slot: slot(),
                    explored: false,
                })
                .collect(),
        });
        let i = containers.len() - 1;
        self.index.borrow_mut().insert(id, i);
        i
    }

    /// Member indices, most useful first: unexplored, then explored but
    /// incomplete, then complete (a complete member that fails cannot cut
    /// a pass short before the others were reached).
    fn order(&self, container: usize) -> Vec<usize> {
        let members: Vec<(bool, Slot)> = self.containers.borrow()[container]
            .members
            .iter()
            .map(|m| (m.explored, m.slot.clone()))
            .collect();
        let rank = |(explored, slot): &(bool, Slot)| -> u8 {
            if !explored {
                0
            } else if !is_complete(self, slot, &mut vec![container]) {
                1
            } else {
                2
            }
        };
        let mut order: Vec<usize> = (0..members.len()).collect();
        order.sort_by_key(|&i| rank(&members[i]));
        order
    }

    fn member(&self, container: usize, i: usize) -> Slot {
        let mut containers = self.containers.borrow_mut();
        let m = &mut containers[container].members[i];
        if !m.explored {
            m.explored = true;
            self.explored.set(self.explored.get() + 1);
        }
        m.slot.clone()
    }

    fn render(&self, root: &Slot) -> String {
        let mut out = String::new();
        let mut seen = HashMap::new();
        self.render_into(root, &mut out, &mut seen);
        out
    }

    fn render_into(&self, slot: &Slot, out: &mut String, seen: &mut HashMap<usize, usize>) {
        let format = slot.borrow().clone();
        match format {
            Format::Unknown => out.push('?'),
            Format::Prim(p) => out.push_str(p),
            Format::Any => out.push_str("any"),
            Format::Identifier => out.push_str("ident"),
            Format::Option(c) => self.wrap("opt", &[c], out, seen),
            Format::Seq(c) => self.wrap("seq", &[c], out, seen),
            Format::Map(k, v) => self.wrap("map", &[k, v], out, seen),
            Format::Tuple(cs) => self.wrap("tup", &cs, out, seen),
            Format::Container(id) => {
                if let Some(n) = seen.get(&id) {
                    out.push_str(&format!("#{n}"));
                    return;
                }
                let n = seen.len();
                seen.insert(id, n);
                let (kind, name, members): (&str, String, Vec<(String, Slot)>) = {
                    let c = &self.containers.borrow()[id];
                    (
                        c.kind,
                        c.name.clone(),
                        c.members
                            .iter()
                            .map(|m| (m.name.clone(), m.slot.clone()))
                            .collect(),
                    )
                };
                out.push_str(kind);
                out.push(' ');
                out.push_str(&name);
                out.push('{');
                for (i, (member, slot)) in members.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(member);
                    out.push(':');
                    self.render_into(slot, out, seen);
                }
                out.push('}');
            }
        }
    }

    fn wrap(&self, tag: &str, parts: &[Slot], out: &mut String, seen: &mut HashMap<usize, usize>) {
        out.push_str(tag);
        out.push('(');
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            self.render_into(p, out, seen);
        }
        out.push(')');
    }
}

/// True when nothing under `slot` is unknown or untraceable. `path` holds
/// the containers being checked (a recursive type is complete when the rest is).
fn is_complete(state: &State, slot: &Slot, path: &mut Vec<usize>) -> bool {
    let format = slot.borrow().clone();
    match format {
        Format::Unknown | Format::Any | Format::Identifier => false,
        Format::Prim(_) => true,
        Format::Option(c) | Format::Seq(c) => is_complete(state, &c, path),
        Format::Map(k, v) => is_complete(state, &k, path) && is_complete(state, &v, path),
        Format::Tuple(cs) => cs.iter().all(|c| is_complete(state, c, path)),
        Format::Container(id) => {
            if path.contains(&id) {
                return true;
            }
            let members: Vec<(bool, Slot)> = state.containers.borrow()[id]
                .members
                .iter()
                .map(|m| (m.explored, m.slot.clone()))
                .collect();
            path.push(id);
            let ok = members
                .iter()
                .all(|(explored, s)| *explored && is_complete(state, s, path));
            path.pop();
            ok
        }
    }
}

/// Why a trace pass stopped early; never shown to users.
#[derive(Debug)]
struct Stop(String);

impl fmt::Display for Stop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Stop {}

impl de::Error for Stop {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Stop(msg.to_string())
    }
}

fn stop(why: &str) -> Stop {
    Stop(why.to_owned())
}

struct Tracer<'s> {
    state: &'s State,
    slot: Slot,
}

impl<'s> Tracer<'s> {
    fn set(&self, f: Format) {
        *self.slot.borrow_mut() = f;
    }

    fn prim(&self, p: &'static str) {
        self.set(Format::Prim(p));
    }

    /// The child slots of a composite, reused across passes so that what
    /// was learnt of them is kept.
    fn children(&self, tag: &'static str, n: usize) -> Vec<Slot> {
        let mut f = self.slot.borrow_mut();
        let existing = match (&*f, tag) {
            (Format::Option(c), "opt") | (Format::Seq(c), "seq") => Some(vec![c.clone()]),
            (Format::Map(k, v), "map") => Some(vec![k.clone(), v.clone()]),
            (Format::Tuple(cs), "tup") if cs.len() == n => Some(cs.clone()),
            _ => None,
        };
        if let Some(c) = existing {
            return c;
        }
        let cs: Vec<Slot> = (0..n).map(|_| slot()).collect();
        *f = match tag {
            "opt" => Format::Option(cs[0].clone()),
            "seq" => Format::Seq(cs[0].clone()),
            "map" => Format::Map(cs[0].clone(), cs[1].clone()),
            _ => Format::Tuple(cs.clone()),
        };
        cs
    }

    fn child(&self, slot: Slot) -> Tracer<'s> {
        Tracer {
            state: self.state,
            slot,
        }
    }

    /// Records a container here and enters it; a container already being
    /// traced further up (a recursive type) is recorded and not entered.
    fn enter(&self, kind: &'static str, name: &str, members: &[&str]) -> Result<Entered<'s>, Stop> {
        let id = self.state.intern(kind, name, members);
        self.set(Format::Container(id));
        let mut stack = self.state.stack.borrow_mut();
        if stack.contains(&id) {
            return Err(stop("recursive type"));
        }
        if stack.len() >= MAX_DEPTH {
            self.state.untraced.set(true);
            return Err(stop("too deep"));
        }
        stack.push(id);
        Ok(Entered {
            state: self.state,
            id,
        })
    }
}

impl Tracer<'_> {
    /// Records a struct (or struct variant) here and drives `visitor` over
    /// its fields, most useful first.
    fn visit_struct<'de, V: Visitor<'de>>(
        &self,
        name: &str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        let entered = self.enter("struct", name, fields)?;
        let order = self.state.order(entered.id);
        visitor.visit_map(Fields {
            state: self.state,
            container: entered.id,
            names: fields,
            order,
            next: 0,
        })
    }
}

/// Pops the container off the trace stack when its visit ends (also on error).
struct Entered<'s> {
    state: &'s State,
    id: usize,
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        self.state.stack.borrow_mut().pop();
    }
}

macro_rules! prims {
    ($($method:ident => $visit:ident($($value:expr)?), $name:literal;)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
                self.prim($name);
                visitor.$visit($($value)?)
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for Tracer<'_> {
    type Error = Stop;

    fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Stop> {
        self.set(Format::Any);
        self.state.untraced.set(true);
        Err(stop("deserialize_any"))
    }

    prims! {
        deserialize_bool => visit_bool(false), "bool";
        deserialize_i8 => visit_i8(0), "i8";
        deserialize_i16 => visit_i16(0), "i16";
        deserialize_i32 => visit_i32(0), "i32";
        deserialize_i64 => visit_i64(0), "i64";
        deserialize_i128 => visit_i128(0), "i128";
        deserialize_u8 => visit_u8(0), "u8";
        deserialize_u16 => visit_u16(0), "u16";
        deserialize_u32 => visit_u32(0), "u32";
        deserialize_u64 => visit_u64(0), "u64";
        deserialize_u128 => visit_u128(0), "u128";
        deserialize_f32 => visit_f32(0.0), "f32";
        deserialize_f64 => visit_f64(0.0), "f64";
        deserialize_char => visit_char('A'), "char";
        deserialize_str => visit_str(""), "str";
        deserialize_string => visit_str(""), "str";
        deserialize_bytes => visit_bytes(b""), "bytes";
        deserialize_byte_buf => visit_bytes(b""), "bytes";
        deserialize_unit => visit_unit(), "unit";
        deserialize_ignored_any => visit_unit(), "ignored";
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        let c = self.children("opt", 1);
        visitor.visit_some(self.child(c[0].clone()))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        let _entered = self.enter("unit", name, &[])?;
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        let entered = self.enter("newtype", name, &["0"])?;
        let inner = self.state.member(entered.id, 0);
        visitor.visit_newtype_struct(self.child(inner))
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        let c = self.children("seq", 1);
        visitor.visit_seq(Elements {
            state: self.state,
            slots: c,
            next: 0,
            container: None,
        })
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Stop> {
        let cs = self.children("tup", len);
        visitor.visit_seq(Elements {
            state: self.state,
            slots: cs,
            next: 0,
            container: None,
        })
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        let names: Vec<String> = (0..len).map(|i| i.to_string()).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let entered = self.enter("tuple", name, &names)?;
        visitor.visit_seq(Elements {
            state: self.state,
            slots: Vec::new(),
            next: 0,
            container: Some((entered.id, len)),
        })
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        let kv = self.children("map", 2);
        visitor.visit_map(Entries {
            state: self.state,
            key: kv[0].clone(),
            value: kv[1].clone(),
            done: false,
        })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        self.visit_struct(name, fields, visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        let entered = self.enter("enum", name, variants)?;
        let Some(&chosen) = self.state.order(entered.id).first() else {
            return Err(stop("enum without variants"));
        };
        visitor.visit_enum(Variant {
            state: self.state,
            container: entered.id,
            index: chosen,
            enum_name: name,
            variant: variants[chosen],
        })
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        self.set(Format::Identifier);
        self.state.untraced.set(true);
        visitor.visit_str("")
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// Sequence elements: one slot each (tuples, and the one sampled element of
/// a sequence), or the members of a tuple struct.
struct Elements<'s> {
    state: &'s State,
    slots: Vec<Slot>,
    next: usize,
    container: Option<(usize, usize)>,
}

impl<'de> de::SeqAccess<'de> for Elements<'_> {
    type Error = Stop;

    fn next_element_seed<S: DeserializeSeed<'de>>(
        &mut self,
        seed: S,
    ) -> Result<Option<S::Value>, Stop> {
        let slot = match self.container {
            Some((id, len)) if self.next < len => self.state.member(id, self.next),
            Some(_) => return Ok(None),
            None => match self.slots.get(self.next) {
                Some(s) => s.clone(),
                None => return Ok(None),
            },
        };
        self.next += 1;
        seed.deserialize(Tracer {
            state: self.state,
            slot,
        })
        .map(Some)
    }
}

/// One sampled entry of a map.
struct Entries<'s> {
    state: &'s State,
    key: Slot,
    value: Slot,
    done: bool,
}

impl<'de> de::MapAccess<'de> for Entries<'_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        seed.deserialize(Tracer {
            state: self.state,
            slot: self.key.clone(),
        })
        .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        seed.deserialize(Tracer {
            state: self.state,
            slot: self.value.clone(),
        })
    }
}

/// The fields of a struct, most useful first.
struct Fields<'s> {
    state: &'s State,
    container: usize,
    names: &'static [&'static str],
    order: Vec<usize>,
    next: usize,
}

impl<'de> de::MapAccess<'de> for Fields<'_> {
    type Error = Stop;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        let Some(&i) = self.order.get(self.next) else {
            return Ok(None);
        };
        seed.deserialize(de::value::StrDeserializer::<Stop>::new(self.names[i]))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        let i = self.order[self.next];
        self.next += 1;
        let slot = self.state.member(self.container, i);
        seed.deserialize(Tracer {
            state: self.state,
            slot,
        })
    }
}

/// The variant chosen for this pass.
struct Variant<'s> {
    state: &'s State,
    container: usize,
    index: usize,
    enum_name: &'static str,
    variant: &'static str,
}

impl<'de, 's> de::EnumAccess<'de> for Variant<'s> {
    type Error = Stop;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<(S::Value, Self), Stop> {
        let v = seed.deserialize(de::value::U64Deserializer::<Stop>::new(self.index as u64))?;
        Ok((v, self))
    }
}

impl<'de> de::VariantAccess<'de> for Variant<'_> {
    type Error = Stop;

    fn unit_variant(self) -> Result<(), Stop> {
        let slot = self.state.member(self.container, self.index);
        *slot.borrow_mut() = Format::Prim("unit");
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'de>>(self, seed: S) -> Result<S::Value, Stop> {
        let slot = self.state.member(self.container, self.index);
        seed.deserialize(Tracer {
            state: self.state,
            slot,
        })
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Stop> {
        let slot = self.state.member(self.container, self.index);
        de::Deserializer::deserialize_tuple(
            Tracer {
                state: self.state,
                slot,
            },
            len,
            visitor,
        )
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        let slot = self.state.member(self.container, self.index);
        let name = format!("{}::{}", self.enum_name, self.variant);
        Tracer {
            state: self.state,
            slot,
        }
        .visit_struct(&name, fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::collections::BTreeMap;

    mod v1 {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        pub struct User {
            pub id: u64,
            pub name: String,
        }
    }
    mod v2 {
        #[derive(serde::Deserialize)]
        #[allow(dead_code)]
        pub struct User {
            pub id: u64,
            pub name: String,
            pub email: Option<String>,
            #[serde(default)]
            pub is_admin: bool,
        }
    }

    #[test]
    fn a_field_added_between_deploys_changes_the_fingerprint() {
        assert_ne!(
            shape_of::<v1::User>().fingerprint,
            shape_of::<v2::User>().fingerprint
        );
        assert!(shape_of::<v1::User>().complete && shape_of::<v2::User>().complete);
        assert_eq!(
            describe::<v2::User>(),
            "struct User{id:u64,name:str,email:opt(str),is_admin:bool}"
        );
    }

    #[test]
    fn retyped_renamed_and_reordered_fields_change_it_too() {
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct A {
            id: u64,
        }
        #[derive(Deserialize)]
        #[allow(dead_code)]
        #[serde(rename = "A")]
        struct RetypedA {
            id: u32,
        }
        #[derive(Deserialize)]
        #[allow(dead_code)]
        #[serde(rename = "A")]
        struct RenamedA {
            #[serde(rename = "ident")]
            id: u64,
        }
        let a = shape_of::<A>().fingerprint;
        assert_ne!(a, shape_of::<RetypedA>().fingerprint);
        assert_ne!(a, shape_of::<RenamedA>().fingerprint);
    }

    #[derive(Deserialize)]
    #[allow(dead_code)]
    enum Event {
        Created,
        Renamed(String),
        Moved { from: u32, to: u32 },
        Pair(u8, u8),
    }

    #[test]
    fn every_variant_of_an_enum_is_traced() {
        assert_eq!(
            describe::<Event>(),
            "enum Event{Created:unit,Renamed:str,Moved:struct Event::Moved{from:u32,to:u32},Pair:tup(u8,u8)}"
        );
        assert!(shape_of::<Event>().complete);
    }

    #[test]
    fn nested_and_recursive_types_terminate() {
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Tree {
            label: String,
            children: Vec<Tree>,
            parent: Option<Box<Tree>>,
            index: BTreeMap<String, Vec<Event>>,
        }
        let d = describe::<Tree>();
        assert!(d.starts_with("struct Tree{label:str,children:seq(#0),parent:opt(#0),index:map(str,seq(enum Event{"), "{d}");
        assert!(shape_of::<Tree>().complete);
    }

    /// Like a `DateTime` or a `Uuid`: its own `Deserialize` rejects the placeholder.
    #[derive(Debug)]
    struct Strict;
    impl<'de> Deserialize<'de> for Strict {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let s = String::deserialize(d)?;
            if s.is_empty() {
                return Err(serde::de::Error::custom("empty"));
            }
            Ok(Strict)
        }
    }

    #[test]
    fn a_field_that_rejects_the_placeholder_does_not_stop_the_trace() {
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Stamped {
            at: Strict,
            id: u64,
            later: Option<Strict>,
            note: String,
        }
        assert_eq!(
            describe::<Stamped>(),
            "struct Stamped{at:str,id:u64,later:opt(str),note:str}"
        );
        assert!(shape_of::<Stamped>().complete);
    }

    #[test]
    fn untagged_flatten_and_json_values_are_untraced() {
        #[derive(Deserialize)]
        #[serde(untagged)]
        #[allow(dead_code)]
        enum IdOrName {
            Id(u64),
            Name(String),
        }
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Flat {
            id: u64,
            #[serde(flatten)]
            rest: BTreeMap<String, u8>,
        }
        #[derive(Deserialize)]
        #[serde(tag = "type")]
        #[allow(dead_code)]
        enum Tagged {
            A { x: u8 },
        }
        assert!(!shape_of::<IdOrName>().complete);
        assert!(!shape_of::<Flat>().complete);
        assert!(!shape_of::<Tagged>().complete);
        assert!(!shape_of::<serde_json::Value>().complete);
        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct WithValue {
            id: u64,
            extra: serde_json::Value,
        }
        let s = shape_of::<WithValue>();
        assert!(!s.complete);
    }

    /// A hand-written `Deserialize` that panics when it meets data it did not expect.
    struct Panicky;
    impl<'de> Deserialize<'de> for Panicky {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let n = u64::deserialize(d)?;
            assert!(n > 0, "this impl panics on 0");
            Ok(Panicky)
        }
    }

    #[test]
    fn a_deserialize_that_panics_is_untraced_not_a_crash() {
        let s = shape_of::<Panicky>();
        assert!(!s.complete);
        assert_eq!(s, shape_of::<Panicky>());
        assert_ne!(s.fingerprint, shape_of::<u64>().fingerprint);
    }

    #[test]
    fn std_types_have_distinct_shapes() {
        let fps = [
            shape_of::<u32>().fingerprint,
            shape_of::<u64>().fingerprint,
            shape_of::<String>().fingerprint,
            shape_of::<Vec<u8>>().fingerprint,
            shape_of::<Option<u64>>().fingerprint,
            shape_of::<(u64, String)>().fingerprint,
            shape_of::<[u8; 4]>().fingerprint,
            shape_of::<BTreeMap<String, u64>>().fingerprint,
            shape_of::<()>().fingerprint,
        ];
        let unique: std::collections::HashSet<_> = fps.iter().collect();
        assert_eq!(unique.len(), fps.len());
        assert_eq!(shape_of::<Box<u64>>(), shape_of::<u64>());
    }

    #[test]
    fn the_memo_agrees_with_a_fresh_trace_and_is_stable() {
        for _ in 0..3 {
            assert_eq!(shape_of::<v2::User>(), trace::<v2::User>());
        }
        let other_thread = std::thread::spawn(shape_of::<v2::User>).join().unwrap();
        assert_eq!(other_thread, trace::<v2::User>());
    }

    #[test]
    fn the_fingerprint_is_pinned() {
        // A change here changes every stored entry's fingerprint: bump the
        // envelope's format version with it, on purpose.
        assert_eq!(
            format!("{:016x}", shape_of::<v1::User>().fingerprint),
            PINNED_USER_V1
        );
    }
    const PINNED_USER_V1: &str = "4691f7aeacef6ae0";
}
