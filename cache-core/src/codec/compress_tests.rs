//! Compressed payloads: the threshold, the header kept readable, old
//! formats, and corrupt, truncated or hostile bytes as errors.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::*;
use crate::backend::{Backend, Key};
use crate::testing::MapStore;
use crate::{Cache, FailSafe};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Row {
    id: u64,
    name: String,
    status: String,
    score: f64,
}

fn rows(n: u64) -> Vec<Row> {
    (0..n)
        .map(|id| Row {
            id,
            name: format!("customer number {id}"),
            status: if id % 3 == 0 { "active" } else { "suspended" }.into(),
            score: id as f64 / 7.0,
        })
        .collect()
}

const LZ4: Compression = Compression::lz4(1024);

/// Bytes that lz4 cannot shrink (xorshift).
fn noise(n: usize) -> Vec<u8> {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn payloads_from_the_threshold_up_are_compressed_and_read_back() {
    let big = rows(200);
    let plain = seal(&MsgPack, &big).unwrap();
    let packed = compress(plain.clone(), LZ4);
    assert_eq!(packed[1], FORMAT_VERSION | COMPRESSED);
    assert_eq!(packed[0], MAGIC);
    assert_eq!(
        packed[2..ENVELOPE_LEN],
        plain[2..ENVELOPE_LEN],
        "codec and fingerprint kept"
    );
    assert!(
        packed.len() * 3 < plain.len(),
        "{} vs {}",
        packed.len(),
        plain.len()
    );
    assert_eq!(open::<Vec<Row>>(&MsgPack, &packed).unwrap(), big);
    // Below the threshold: as it was.
    let small = seal(&MsgPack, &rows(2)).unwrap();
    assert!(small.len() - ENVELOPE_LEN < 1024);
    assert_eq!(compress(small.clone(), LZ4), small);
    // At the threshold exactly: compressed.
    let at = Compression::lz4(plain.len() - ENVELOPE_LEN);
    assert_eq!(compress(plain.clone(), at)[1], FORMAT_VERSION | COMPRESSED);
    let above = Compression::lz4(plain.len() - ENVELOPE_LEN + 1);
    assert_eq!(compress(plain.clone(), above), plain);
    // Compressing twice changes nothing; foreign bytes are left alone.
    assert_eq!(compress(packed.clone(), LZ4), packed);
    assert_eq!(
        compress(b"not an entry".to_vec(), Compression::lz4(0)),
        b"not an entry"
    );
    // Every codec.
    for codec in [&MsgPack as &dyn Codec, &Json] {
        let packed = compress(seal(codec, &big).unwrap(), LZ4);
        assert_ne!(packed[1] & COMPRESSED, 0);
        assert_eq!(
            open::<Vec<Row>>(codec, &packed).unwrap(),
            big,
            "{}",
            codec.name()
        );
    }
}

#[test]
fn a_payload_that_does_not_shrink_is_stored_uncompressed() {
    let entry = seal(&MsgPack, &serde_bytes_like(noise(8 * 1024))).unwrap();
    assert_eq!(compress(entry.clone(), Compression::lz4(0)), entry);
}

/// `Vec<u8>` as MessagePack bytes (`bin`), not an array of small integers
/// (which lz4 would shrink: every element is a byte and a marker).
fn serde_bytes_like(v: Vec<u8>) -> Bin {
    Bin(v)
}

#[derive(Debug, PartialEq, Deserialize)]
struct Bin(#[serde(deserialize_with = "bin")] Vec<u8>);

impl Serialize for Bin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

fn bin<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Vec<u8>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("bytes")
        }
        fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }
    }
    d.deserialize_bytes(V)
}

#[test]
fn old_formats_open_and_compressed_headers_keep_freshness_tags_and_restamps() {
    let big = rows(100);
    let fresh = Freshness {
        fresh_until_ms: 10,
        stale_until_ms: 20,
        body_ms: 3,
    };
    let tags = ["user:7".to_owned(), "orders".to_owned()];
    let tagged = Tagged {
        since_ms: 5,
        tags: &tags,
    };
    let entries = [
        seal(&MsgPack, &big).unwrap(),
        seal_fresh(&MsgPack, &big, Salt::NONE, Some(fresh)).unwrap(),
        seal_tagged(&MsgPack, &big, Salt::NONE, fresh, tagged).unwrap(),
    ];
    for (format, plain) in [FORMAT_VERSION, FRESH_VERSION, TAGGED_VERSION]
        .into_iter()
        .zip(entries)
    {
        // Formats 2, 3 and 4 as written before compression existed.
        assert_eq!(plain[1], format);
        assert_eq!(open::<Vec<Row>>(&MsgPack, &plain).unwrap(), big);
        let packed = compress(plain.clone(), LZ4);
        assert_eq!(packed[1], format | COMPRESSED);
        let header = payload_offset(&plain).unwrap();
        assert_eq!(payload_offset(&packed), Some(header));
        assert_eq!(packed[2..header], plain[2..header]);
        assert_eq!(freshness(&packed), freshness(&plain));
        assert_eq!(entry_tags(&packed), entry_tags(&plain));
        assert_eq!(open::<Vec<Row>>(&MsgPack, &packed).unwrap(), big);
        assert!(
            open::<Vec<u32>>(&MsgPack, &packed).is_err(),
            "the fingerprint holds"
        );
        // Restamped (fail-safe's fallback): still compressed, the payload copied as it is.
        let later = Freshness {
            fresh_until_ms: 15,
            ..fresh
        };
        let again = restamp(&packed, later).unwrap();
        assert_ne!(again[1] & COMPRESSED, 0);
        assert_eq!(freshness(&again), Some(later));
        assert_eq!(entry_tags(&again), entry_tags(&plain));
        assert_eq!(again[payload_offset(&again).unwrap()..], packed[header..]);
        assert_eq!(open::<Vec<Row>>(&MsgPack, &again).unwrap(), big);
    }
}

#[test]
fn corrupt_truncated_and_hostile_compressed_payloads_are_errors() {
    let big = rows(200);
    let packed = compress(seal(&MsgPack, &big).unwrap(), LZ4);
    let at = payload_offset(&packed).unwrap();
    // Cut anywhere: an error, never a panic.
    for cut in 0..packed.len() {
        assert!(
            open::<Vec<Row>>(&MsgPack, &packed[..cut]).is_err(),
            "cut at {cut}"
        );
    }
    // The block overwritten, or garbage after it.
    let mut garbage = packed.clone();
    garbage[at + 4..].fill(0xFF);
    assert!(open::<Vec<Row>>(&MsgPack, &garbage).is_err());
    let mut longer = packed.clone();
    longer.extend_from_slice(&[0x50, 1, 2, 3, 4]);
    assert!(open::<Vec<Row>>(&MsgPack, &longer).is_err());
    // Every single-byte corruption of the block: an error or, where lz4 cannot
    // tell (a literal byte), a payload the codec rejects or a value; never a panic.
    for i in at + 4..packed.len() {
        let mut flipped = packed.clone();
        flipped[i] ^= 0x55;
        let _ = open::<Vec<Row>>(&MsgPack, &flipped);
    }
    let inflated_len = {
        let mut len = [0u8; 4];
        len.copy_from_slice(&packed[at..at + 4]);
        u32::from_le_bytes(len)
    };
    let with_len = |len: u32| {
        let mut hostile = packed.clone();
        hostile[at..at + 4].copy_from_slice(&len.to_le_bytes());
        hostile
    };
    // A length of 4 GiB: refused before anything is allocated.
    let e = open::<Vec<Row>>(&MsgPack, &with_len(u32::MAX)).unwrap_err();
    assert!(e.0.contains("over the limit"), "{e}");
    // Longer or shorter than what the block holds: an error.
    assert!(open::<Vec<Row>>(&MsgPack, &with_len(inflated_len + 1)).is_err());
    assert!(open::<Vec<Row>>(&MsgPack, &with_len(inflated_len - 1)).is_err());
    assert!(open::<Vec<Row>>(&MsgPack, &with_len(0)).is_err());
    // The caller's bound: what inflates past it is not read.
    let bound = inflated_len as usize;
    assert!(open_bounded::<Vec<Row>>(&MsgPack, &packed, Salt::NONE, bound).is_ok());
    assert!(open_bounded::<Vec<Row>>(&MsgPack, &packed, Salt::NONE, bound - 1).is_err());
}

#[tokio::test]
async fn a_cache_compresses_what_it_stores_and_reads_it_back() {
    let store = MapStore::default();
    let cache = Cache::builder(store.clone()).compress(LZ4).build();
    let big = rows(300);
    cache.set("big", &big, None).await.unwrap();
    cache.set("small", &rows(1), None).await.unwrap();
    let raw = store.get(Key::plain("big")).await.unwrap().unwrap();
    assert_eq!(raw[1], FORMAT_VERSION | COMPRESSED);
    assert!(raw.len() * 3 < seal(&MsgPack, &big).unwrap().len());
    let raw_small = store.get(Key::plain("small")).await.unwrap().unwrap();
    assert_eq!(raw_small[1], FORMAT_VERSION);
    assert_eq!(
        cache.get::<Vec<Row>>("big").await.unwrap(),
        Some(big.clone())
    );
    assert_eq!(cache.get::<Vec<Row>>("small").await.unwrap(), Some(rows(1)));

    // A reader that does not compress reads both (the flag is in the entry).
    let plain_reader = Cache::builder(store.clone()).build();
    assert_eq!(
        plain_reader.get::<Vec<Row>>("big").await.unwrap(),
        Some(big.clone())
    );

    // A reader whose bound is below the inflated size: a miss, deleted, counted.
    let strict = Cache::builder(store.clone()).max_value_size(4096).build();
    let errors = strict.stats().errors;
    assert_eq!(strict.get::<Vec<Row>>("big").await.unwrap(), None);
    assert_eq!(strict.stats().errors, errors + 1);
    assert!(store.get(Key::plain("big")).await.unwrap().is_none());

    // The builder's bound applies before compression: a value over it is
    // skipped even when it would compress below it.
    let bounded = Cache::builder(store.clone())
        .compress(LZ4)
        .max_value_size(4096)
        .build();
    assert!(matches!(
        bounded.set("big", &big, None).await,
        Err(crate::Error::ValueTooLarge { limit: 4096, .. })
    ));
    assert_eq!(bounded.stats().skipped, 1);
}

#[tokio::test]
async fn fail_safe_entries_are_compressed_with_their_freshness_readable() {
    let store = MapStore::default();
    let cache = Cache::builder(store.clone())
        .compress(LZ4)
        .fail_safe(FailSafe::new(Duration::from_secs(3600)))
        .build();
    let big = rows(300);
    let out: Vec<Row> = cache
        .get_or_set("page", Some(Duration::from_secs(60)), || async {
            rows(300)
        })
        .await
        .unwrap();
    assert_eq!(out, big);
    let raw = store.get(Key::plain("page")).await.unwrap().unwrap();
    assert_eq!(raw[1], FRESH_VERSION | COMPRESSED);
    let fresh = freshness(&raw).expect("freshness of a compressed entry");
    assert!(fresh.stale_until_ms > fresh.fresh_until_ms);
    let hits = cache.stats().hits;
    let again: Vec<Row> = cache
        .get_or_set("page", None, || async { unreachable!("a hit") })
        .await
        .unwrap();
    assert_eq!(again, big);
    assert_eq!(cache.stats().hits, hits + 1);
}
