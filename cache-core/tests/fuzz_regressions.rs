//! Inputs the fuzz targets in `fuzz/` found, kept as regression tests.

use cache_core::codec::{open, seal, Codec, Json, MsgPack};

/// `fuzz/` target `envelope`: a `serde_json::Value` holding this float came
/// back from the `Json` codec one ULP off (`…023e-305`), because serde_json
/// parses floats best-effort unless its `float_roundtrip` feature is on.
#[test]
fn json_codec_reads_back_the_exact_float_it_wrote() {
    let x = 1.7939124982602025e-305_f64;
    let value = serde_json::json!({ "x": x });
    for codec in [&MsgPack as &dyn Codec, &Json] {
        let back: serde_json::Value = open(codec, &seal(codec, &value).unwrap()).unwrap();
        assert_eq!(back, value, "{}", codec.name());
        let back: f64 = open(codec, &seal(codec, &x).unwrap()).unwrap();
        assert_eq!(back.to_bits(), x.to_bits(), "{}", codec.name());
    }
}
