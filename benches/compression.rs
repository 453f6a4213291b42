//! What lz4 compression and the bincode codec cost and save on a large value
//! (features `compression` and `bincode`): a ~64 KiB JSON-like document, a
//! `Vec` of 400 catalogue items (strings and numbers), sealed and opened the
//! way a cache writes and reads it (`codec::seal` + `codec::compress`,
//! `codec::open`), no store in between.
//!
//! 1. bytes stored: MessagePack, MessagePack + lz4, bincode (and bincode + lz4);
//! 2. interleaved paired rounds (`common/paired.rs`), 1 task on a
//!    current-thread runtime: time per encode and per decode with lz4 over
//!    without (MessagePack), and bincode over MessagePack (no compression).
//!
//! Ratios are of time per operation (below 1: the first side is faster).
//! `scripts/bench.sh` and `scripts/bench.sh memory` run it;
//! `COMPRESSION_BENCH_ROUNDS` sets the rounds (default 30).

use std::sync::Arc;

use cacheside::codec::{compress, open, seal, Bincode, Compression, MsgPack};
use serde::{Deserialize, Serialize};

#[path = "common/paired.rs"]
#[allow(dead_code)] // `compare` and `quantile` serve the other benches
mod paired;

use paired::{pair, rounds, Paired, Side};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Item {
    id: u64,
    sku: String,
    name: String,
    description: String,
    category: String,
    price: f64,
    stock: u32,
    rating: f32,
    tags: Vec<String>,
    active: bool,
    updated_at: String,
}

const WORDS: [&str; 32] = [
    "steel", "spanner", "metric", "torque", "set", "of", "with", "case", "chrome", "vanadium",
    "handle", "grip", "heavy", "duty", "garage", "workshop", "ratchet", "socket", "drive", "inch",
    "pro", "series", "coated", "anti", "slip", "compact", "travel", "kit", "blue", "black", "red",
    "pack",
];

/// 300 items of varied text (xorshift-picked words), ~64 KiB as JSON.
fn document() -> Vec<Item> {
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let mut words = |n: usize| {
        (0..n)
            .map(|_| WORDS[(next() % WORDS.len() as u64) as usize])
            .collect::<Vec<_>>()
            .join(" ")
    };
    (0..300u64)
        .map(|id| Item {
            id: 100_000 + id * 7,
            sku: format!("SKU-{:06}-{}", id * 37 % 999_983, id % 17),
            name: words(2),
            description: words(4),
            category: ["tools", "hardware", "garden", "electrical"][id as usize % 4].into(),
            price: (id * 1_999 % 100_000) as f64 / 100.0,
            stock: (id * 7_919 % 5_000) as u32,
            rating: (id % 50) as f32 / 10.0,
            tags: vec![words(1), words(1)],
            active: id % 5 != 0,
            updated_at: format!(
                "2026-{:02}-{:02}T{:02}:{:02}:00Z",
                id % 12 + 1,
                id % 28 + 1,
                id % 24,
                id % 60
            ),
        })
        .collect()
}

/// Items opened back from `bytes` (with `codec`), checked against the document once.
fn opener(name: &'static str, codec: &'static dyn cacheside::codec::Codec, bytes: Vec<u8>) -> Side {
    let bytes = Arc::new(bytes);
    Side::new(name, move |_| {
        let bytes = Arc::clone(&bytes);
        async move {
            std::hint::black_box(open::<Vec<Item>>(codec, &bytes).expect("opens"));
        }
    })
}

/// Prints one comparison as time per operation, `a / b`.
fn line(what: &str, p: &Paired, a: &str, b: &str) -> f64 {
    // Throughput ratio a / b = time ratio b / a: invert, quartiles swapped.
    let (ratio, low, high) = (1.0 / p.ratio, 1.0 / p.high, 1.0 / p.low);
    println!(
        "  {what:<8} {a:<18} {:8.1} us  {b:<18} {:8.1} us  time ratio = {ratio:.3} (quartiles {low:.3}-{high:.3})",
        1e6 / p.a,
        1e6 / p.b,
    );
    ratio
}

fn main() {
    let rounds = rounds("COMPRESSION_BENCH_ROUNDS");
    let lz4 = Compression::lz4(16 * 1024);
    let doc = Arc::new(document());
    let json = serde_json::to_vec(&*doc).expect("json").len();
    let msgpack = seal(&MsgPack, &*doc).expect("seal");
    let packed = compress(msgpack.clone(), lz4);
    let bincode = seal(&Bincode, &*doc).expect("seal");
    let bincode_packed = compress(bincode.clone(), lz4);
    for (bytes, codec) in [
        (&msgpack, &MsgPack as &dyn cacheside::codec::Codec),
        (&packed, &MsgPack),
        (&bincode, &Bincode),
        (&bincode_packed, &Bincode),
    ] {
        assert_eq!(open::<Vec<Item>>(codec, bytes).expect("opens"), *doc);
    }
    assert!(packed.len() < msgpack.len(), "lz4 shrinks the document");
    println!(
        "a document of {} items, {json} bytes as JSON; bytes stored (envelope included):",
        doc.len()
    );
    let ratio = |n: usize| n as f64 / msgpack.len() as f64;
    println!("  msgpack            {:7}", msgpack.len());
    println!(
        "  msgpack + lz4      {:7}  ratio = {:.3}",
        packed.len(),
        ratio(packed.len())
    );
    println!(
        "  bincode            {:7}  ratio = {:.3}",
        bincode.len(),
        ratio(bincode.len())
    );
    println!(
        "  bincode + lz4      {:7}  ratio = {:.3}",
        bincode_packed.len(),
        ratio(bincode_packed.len())
    );

    let current = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let sealer =
        |name: &'static str, codec: &'static dyn cacheside::codec::Codec, with_lz4: bool| {
            let doc = Arc::clone(&doc);
            Side::new(name, move |_| {
                let doc = Arc::clone(&doc);
                async move {
                    let sealed = seal(codec, &*doc).expect("seal");
                    let stored = if with_lz4 {
                        compress(sealed, lz4)
                    } else {
                        sealed
                    };
                    std::hint::black_box(stored);
                }
            })
        };
    println!("{rounds} interleaved paired rounds, 1 task, time per operation:");
    let seal_lz4 = sealer("msgpack + lz4", &MsgPack, true);
    let seal_plain = sealer("msgpack", &MsgPack, false);
    let p = current.block_on(pair(&seal_lz4, 1, &seal_plain, 1, rounds, 0.15));
    line("encode", &p, "msgpack + lz4", "msgpack");
    let open_lz4 = opener("msgpack + lz4", &MsgPack, packed.clone());
    let open_plain = opener("msgpack", &MsgPack, msgpack.clone());
    let p = current.block_on(pair(&open_lz4, 1, &open_plain, 1, rounds, 0.15));
    line("decode", &p, "msgpack + lz4", "msgpack");
    let seal_bincode = sealer("bincode", &Bincode, false);
    let p = current.block_on(pair(&seal_bincode, 1, &seal_plain, 1, rounds, 0.15));
    line("encode", &p, "bincode", "msgpack");
    let open_bincode = opener("bincode", &Bincode, bincode.clone());
    let p = current.block_on(pair(&open_bincode, 1, &open_plain, 1, rounds, 0.15));
    line("decode", &p, "bincode", "msgpack");
}
