//! The bincode codec: what it round-trips, and that what it cannot carry is
//! a skipped write or a miss, never a wrong value.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::*;
use crate::backend::{Backend, Key};
use crate::testing::MapStore;
use crate::{Cache, Error};
use bytes::Bytes;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Kind {
    Plain,
    Sized(u32),
    Named { label: String, weight: f64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Widget {
    id: u64,
    name: String,
    price: f64,
    delta: i64,
    tags: Vec<String>,
    kind: Kind,
    note: Option<String>,
    attrs: HashMap<String, u32>,
    sorted: BTreeMap<u16, bool>,
    blob: Vec<u8>,
    unit: (),
}

fn widget(id: u64) -> Widget {
    Widget {
        id,
        name: format!("spanner ñ 🚀 {id}"),
        price: 0.1,
        delta: -42,
        tags: vec!["tools".into(), "metal".into()],
        kind: Kind::Named {
            label: "big".into(),
            weight: 2.5,
        },
        note: None,
        attrs: (0..5).map(|i| (format!("k{i}"), i)).collect(),
        sorted: [(1, true), (700, false)].into_iter().collect(),
        blob: vec![0, 255, 10],
        unit: (),
    }
}

#[test]
fn plain_types_round_trip_smaller_than_msgpack_on_both_paths() {
    for w in [
        widget(7),
        Widget {
            kind: Kind::Sized(3),
            ..widget(8)
        },
        Widget {
            kind: Kind::Plain,
            note: Some("n".into()),
            ..widget(9)
        },
    ] {
        let bytes = seal(&Bincode, &w).unwrap();
        assert_eq!(bytes[2], 3, "codec id");
        assert_eq!(open::<Widget>(&Bincode, &bytes).unwrap(), w);
        assert!(bytes.len() < seal(&MsgPack, &w).unwrap().len());
        // The erased trait methods read and write the same bytes.
        let mut erased = Vec::new();
        Bincode.encode(&w, &mut erased).unwrap();
        assert_eq!(erased, bytes[ENVELOPE_LEN..]);
        let mut slot = None;
        Bincode
            .decode(&erased, &mut |de| {
                slot = Some(erased_serde::deserialize::<Widget>(de)?);
                Ok(())
            })
            .unwrap();
        assert_eq!(slot.unwrap(), w);
        // Another codec does not read it, and bincode reads no other codec's bytes.
        assert!(open::<Widget>(&MsgPack, &bytes).is_err());
        assert!(open::<Widget>(&Bincode, &seal(&MsgPack, &w).unwrap()).is_err());
    }
    // The ids in use are distinct.
    let ids = [MsgPack.id(), Json.id(), Bincode.id()];
    assert_eq!(ids, [1, 2, 3]);
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
enum Internally {
    Created { id: u64 },
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
enum Untagged {
    Id(u64),
    Name(String),
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Inner {
    created_by: String,
}

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Flattened {
    id: u64,
    #[serde(flatten)]
    inner: Inner,
}

#[test]
fn types_that_need_a_self_describing_format_are_refused_at_write() {
    let refused = [
        seal(&Bincode, &Internally::Created { id: 1 }).unwrap_err(),
        seal(&Bincode, &Untagged::Name("x".into())).unwrap_err(),
        seal(
            &Bincode,
            &Flattened {
                id: 1,
                inner: Inner {
                    created_by: "ana".into(),
                },
            },
        )
        .unwrap_err(),
        seal(&Bincode, &serde_json::json!({"a": [1, 2]})).unwrap_err(),
        // Inside another type too.
        seal(&Bincode, &vec![Untagged::Id(1)]).unwrap_err(),
    ];
    for e in refused {
        assert!(e.0.contains("MsgPack"), "{e}");
    }
    // Raw bincode would write them, and could not read them back: entries that only ever miss.
    let raw = ::bincode::serde::encode_to_vec(
        Internally::Created { id: 1 },
        ::bincode::config::standard(),
    )
    .unwrap();
    assert!(::bincode::serde::decode_from_slice::<Internally, _>(
        &raw,
        ::bincode::config::standard()
    )
    .is_err());
}

/// `a` is left out when `None`: bincode then writes `b` and `c` where `a` was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sparse {
    #[serde(skip_serializing_if = "Option::is_none", default)]
    a: Option<u8>,
    b: u8,
    c: Vec<u8>,
}

#[test]
fn a_value_that_skips_a_field_is_refused_because_it_would_read_back_as_another() {
    let v = Sparse {
        a: None,
        b: 1,
        c: vec![5, 0],
    };
    // What bincode alone does with it: the bytes of `b` and `c` read back
    // as `a = Some(2)`, `b = 5`, `c = []`, every byte consumed, no error.
    let cfg = ::bincode::config::standard();
    let raw = ::bincode::serde::encode_to_vec(&v, cfg).unwrap();
    let (back, read) = ::bincode::serde::decode_from_slice::<Sparse, _>(&raw, cfg).unwrap();
    assert_eq!(read, raw.len());
    assert_eq!(
        back,
        Sparse {
            a: Some(2),
            b: 5,
            c: vec![]
        },
        "a wrong value, silently"
    );
    // The codec refuses to write it.
    let e = seal(&Bincode, &v).unwrap_err();
    assert!(
        e.0.contains("`a`") && e.0.contains("skip_serializing_if"),
        "{e}"
    );
    assert!(encode_value(&Bincode, &v).is_err());
    // A value of the same type that skips nothing is written and read back.
    let full = Sparse { a: Some(9), ..v };
    assert_eq!(
        open::<Sparse>(&Bincode, &seal(&Bincode, &full).unwrap()).unwrap(),
        full
    );
}

#[test]
fn corrupt_truncated_trailing_and_hostile_payloads_are_errors() {
    let w = widget(7);
    let bytes = seal(&Bincode, &w).unwrap();
    for cut in 0..bytes.len() {
        assert!(
            open::<Widget>(&Bincode, &bytes[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert!(open::<Widget>(&Bincode, &trailing)
        .unwrap_err()
        .0
        .contains("trailing"));
    // A length of 2^40 for a string, a byte vector and a vector: an error, not an allocation.
    let mut huge = vec![253]; // varint: a u64 follows
    huge.extend_from_slice(&(1u64 << 40).to_le_bytes());
    huge.extend_from_slice(b"abc");
    assert!(open::<String>(&Bincode, &entry_for::<String>(&huge)).is_err());
    assert!(open::<Vec<u8>>(&Bincode, &entry_for::<Vec<u8>>(&huge)).is_err());
    assert!(open::<Vec<u64>>(&Bincode, &entry_for::<Vec<u64>>(&huge)).is_err());
    let header = &seal(&Bincode, "").unwrap()[..ENVELOPE_LEN];
    // Bytes that are not UTF-8 where a string is asked for.
    let mut bad_utf8 = header.to_vec();
    bad_utf8.extend_from_slice(&[2, 0xC3, 0x28]);
    assert!(open::<String>(&Bincode, &bad_utf8).is_err());
}

/// The envelope bincode writes for a `T`, then `payload`.
fn entry_for<T: Storable + Default>(payload: &[u8]) -> Vec<u8> {
    let mut entry = seal(&Bincode, &T::default()).unwrap()[..ENVELOPE_LEN].to_vec();
    entry.extend_from_slice(payload);
    entry
}

fn bincode_cache(store: &MapStore) -> Cache {
    Cache::builder(store.clone()).codec(Bincode).build()
}

#[tokio::test]
async fn through_a_cache_a_refused_write_is_skipped_and_counted_and_a_bad_entry_is_a_deleted_miss()
{
    let store = MapStore::default();
    let cache = bincode_cache(&store);
    // Round trip.
    cache.set("w", &widget(1), None).await.unwrap();
    assert_eq!(cache.get::<Widget>("w").await.unwrap(), Some(widget(1)));

    // A value that skips a field: the read-through returns it, stores nothing, counts it.
    let sparse = Sparse {
        a: None,
        b: 1,
        c: vec![5, 0],
    };
    let before = cache.stats();
    let out: Option<Sparse> = cache
        .get_or_compute("sparse", None, || async { Some(sparse.clone()) })
        .await;
    assert_eq!(out, Some(sparse.clone()));
    assert_eq!(cache.stats().errors, before.errors + 1);
    assert!(store.get(Key::plain("sparse")).await.unwrap().is_none());
    assert!(matches!(
        cache.set("sparse", &sparse, None).await,
        Err(Error::Encode {
            codec: "bincode",
            ..
        })
    ));
    // And again on the next call: never a value from the store.
    let out: Option<Sparse> = cache
        .get_or_compute("sparse", None, || async { Some(sparse.clone()) })
        .await;
    assert_eq!(out, Some(sparse.clone()));

    // A type bincode cannot read back: not stored either.
    let value = serde_json::json!({"nested": {"k": [true, 1.5, "s"]}});
    let out: Option<serde_json::Value> = cache
        .get_or_compute("json", None, || async { Some(value.clone()) })
        .await;
    assert_eq!(out, Some(value));
    assert!(store.get(Key::plain("json")).await.unwrap().is_none());

    // An entry with the right envelope and a payload that does not decode:
    // a miss, counted, deleted.
    let mut bad = seal(&Bincode, &widget(2)).unwrap();
    bad.truncate(bad.len() - 4);
    store
        .set(Key::plain("bad"), Bytes::from(bad), None)
        .await
        .unwrap();
    let before = cache.stats();
    assert_eq!(cache.get::<Widget>("bad").await.unwrap(), None);
    let after = cache.stats();
    assert_eq!(
        (after.misses, after.errors),
        (before.misses + 1, before.errors + 1)
    );
    assert!(
        store.get(Key::plain("bad")).await.unwrap().is_none(),
        "deleted"
    );
}
