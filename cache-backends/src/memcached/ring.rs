//! The servers and the rendezvous hashing over them: which server holds a
//! key (see [`MemcachedBackend`](super::MemcachedBackend), *Servers*), and
//! each server's tag in the keys of the generations and counters it holds.

use std::borrow::Cow;

use cache_core::hash::bytes128;

use super::keys::{counter_key, generation_key};

/// The servers, their hashes and tags: the consistent hash.
#[derive(Debug)]
pub(super) struct Ring {
    /// The server addresses, as configured.
    pub(super) addrs: Vec<String>,
    ids: Vec<u128>,
    /// 16 hex digits per server, used in generation keys.
    tags: Vec<String>,
    /// Per server, the key of the global generation (read on every exact hit).
    global_gen: Vec<String>,
}

impl Ring {
    pub(super) fn new(addrs: Vec<String>) -> Ring {
        let ids: Vec<u128> = addrs.iter().map(|a| bytes128(a.as_bytes())).collect();
        let tags: Vec<String> = ids
            .iter()
            .map(|id| format!("{:016x}", (*id >> 64) as u64))
            .collect();
        let global_gen = tags.iter().map(|tag| generation_key(tag, "")).collect();
        Ring {
            addrs,
            ids,
            tags,
            global_gen,
        }
    }

    /// The server of a wire key: rendezvous over SipHash (see `MemcachedBackend`).
    pub(super) fn route(&self, wire_key: &[u8]) -> usize {
        if self.ids.len() == 1 {
            return 0;
        }
        let key_hash = bytes128(wire_key).to_le_bytes();
        let mut buf = [0u8; 32];
        buf[16..].copy_from_slice(&key_hash);
        let mut best = (0usize, 0u64);
        for (index, id) in self.ids.iter().enumerate() {
            buf[..16].copy_from_slice(&id.to_le_bytes());
            let score = bytes128(&buf) as u64;
            if index == 0 || score > best.1 {
                best = (index, score);
            }
        }
        best.0
    }

    /// The server of the counter `key` (by its `{hash tag}`, see [`counter_route`]).
    pub(super) fn counter_server(&self, key: &str) -> usize {
        self.route(counter_route(key).as_bytes())
    }

    /// The key of `namespace`'s generation on `server` ([`generation_key`]
    /// with the server's tag; the global one is made once, in [`Ring::new`]).
    pub(super) fn gen_key(&self, server: usize, namespace: &str) -> Cow<'_, str> {
        if namespace.is_empty() {
            return Cow::Borrowed(&self.global_gen[server]);
        }
        Cow::Owned(generation_key(&self.tags[server], namespace))
    }

    /// The key of the counter `key` on `server` under `stamp` ([`counter_key`] with the server's tag).
    pub(super) fn counter_key(&self, server: usize, stamp: u32, key: &str) -> String {
        counter_key(&self.tags[server], stamp, key)
    }
}

/// The server of a counter: by its `{hash tag}` when it has one (so the
/// counters of one rate-limit window pair share a server and a batch), else
/// by the whole key.
fn counter_route(key: &str) -> &str {
    key.find('{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.find('}').map(|close| &rest[..close])
        })
        .filter(|tag| !tag.is_empty())
        .unwrap_or(key)
}

#[cfg(test)]
mod tests {
    use super::super::keys::{COUNTER_PREFIX, GEN_PREFIX};
    use super::super::meta::MAX_KEY_LEN;
    use super::*;

    fn ring(n: usize) -> Ring {
        Ring::new((0..n).map(|i| format!("127.0.0.1:{}", 11211 + i)).collect())
    }

    #[test]
    fn assignments_are_pinned() {
        let r = ring(3);
        let got: Vec<usize> = [
            "widget:1",
            "widget:2",
            "widget:3",
            "user:42",
            "myapp:page:9",
            "a",
            "b",
            "c",
        ]
        .iter()
        .map(|k| r.route(k.as_bytes()))
        .collect();
        // Pinned: a change here re-homes keys in every deployment.
        assert_eq!(got, PINNED_ROUTES);
        assert_eq!(ring(1).route(b"anything"), 0);
    }

    const PINNED_ROUTES: [usize; 8] = [2, 1, 1, 1, 2, 1, 0, 1];

    #[test]
    fn adding_a_server_moves_about_a_quarter() {
        let three = ring(3);
        let four = ring(4);
        let mut moved = 0;
        let mut counts = [0usize; 4];
        for i in 0..10_000 {
            let key = format!("key:{i}");
            let before = three.route(key.as_bytes());
            let after = four.route(key.as_bytes());
            counts[after] += 1;
            if before != after {
                assert_eq!(after, 3, "a key may only move to the new server");
                moved += 1;
            }
        }
        assert!((2000..3000).contains(&moved), "moved {moved} of 10000");
        for c in counts {
            assert!(c > 2000, "unbalanced: {counts:?}");
        }
    }

    #[test]
    fn generation_keys_are_safe_and_carry_their_servers_tag() {
        let r = ring(3);
        for server in 0..3 {
            for ns in ["", "myapp:", "with space:", &"n".repeat(300)] {
                let key = r.gen_key(server, ns);
                assert!(key.len() <= MAX_KEY_LEN, "{key}");
                assert!(key.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{key}");
                // Two addresses of one memcached never share a counter.
                assert!(key.starts_with(&format!("{GEN_PREFIX}{}:", r.tags[server])));
                assert_ne!(key, r.gen_key((server + 1) % 3, ns));
            }
        }
        assert_ne!(r.gen_key(0, ""), r.gen_key(0, "a:"));
    }

    #[test]
    fn counter_keys_are_safe_and_route_by_tag() {
        let r = ring(3);
        for key in [
            "rl:{1.2.3.4}:60000:7",
            "plain",
            "with space {t}",
            &"x".repeat(400),
        ] {
            for server in 0..3 {
                let wire = r.counter_key(server, 0xdead_beef, key);
                assert!(wire.len() <= MAX_KEY_LEN, "{wire}");
                assert!(wire.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{wire}");
                assert!(wire.starts_with(&format!("{COUNTER_PREFIX}{}:deadbeef:", r.tags[server])));
            }
        }
        assert_ne!(r.counter_key(0, 1, "k"), r.counter_key(0, 2, "k"));
        assert_eq!(counter_route("ns:rl:{1.2.3.4}:60000:7"), "1.2.3.4");
        assert_eq!(
            counter_route("ns:rl:{1.2.3.4}:60000:6"),
            counter_route("ns:rl:{1.2.3.4}:60000:7")
        );
        assert_eq!(counter_route("a{}b"), "a{}b");
        assert_eq!(counter_route("no-tag"), "no-tag");
    }
}
