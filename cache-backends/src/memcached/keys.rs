//! What this backend sends memcached for a cacheside key and a TTL: the
//! wire key ([`memcached_wire_key`]), the keys of its own items (generation
//! counters and rate-limit counters, under the reserved prefix), and the
//! expiry of a TTL.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_core::hash::bytes128;

use super::meta::{is_valid_key, MAX_KEY_LEN};

/// Keys starting with this are reserved for cacheside's own items (hashed keys, generations).
const RESERVED: &str = "__cacheside_";
const HASHED_PREFIX: &str = "__cacheside_h:";
pub(super) const GEN_PREFIX: &str = "__cacheside_gen:";
pub(super) const COUNTER_PREFIX: &str = "__cacheside_n:";

/// The key sent to memcached for a cacheside key (see [`MemcachedBackend`], *Keys*).
///
/// [`MemcachedBackend`]: super::MemcachedBackend
///
/// ```
/// use cache_backends::memcached_wire_key;
/// assert_eq!(memcached_wire_key("myapp:widget:7"), "myapp:widget:7");
/// let hashed = memcached_wire_key("a\r\nflush_all");
/// assert!(hashed.starts_with("__cacheside_h:") && hashed.len() == 46);
/// assert!(memcached_wire_key(&"x".repeat(300)).len() <= 250);
/// ```
pub fn memcached_wire_key(key: &str) -> Cow<'_, str> {
    if is_valid_key(key) && !key.starts_with(RESERVED) {
        Cow::Borrowed(key)
    } else {
        Cow::Owned(format!("{HASHED_PREFIX}{:032x}", bytes128(key.as_bytes())))
    }
}

/// `__cacheside_gen:<tag>:<namespace>`, the generation counter of
/// `namespace` on the server with this tag (namespace hashed when unsafe or long).
pub(super) fn generation_key(tag: &str, namespace: &str) -> String {
    let key = format!("{GEN_PREFIX}{tag}:{namespace}");
    if is_valid_key(&key) {
        key
    } else {
        // A hashed namespace never ends with ':' while real ones do: no clash.
        format!("{GEN_PREFIX}{tag}:#{:032x}", bytes128(namespace.as_bytes()))
    }
}

/// `__cacheside_n:<server-tag>:<stamp>:<wire key>` (the wire key hashed when too long).
///
/// The stamp in the key is what makes `clear` reset counters: `ma` cannot
/// set client flags, so a counter of a retired generation is simply
/// another key, never read again, gone at its TTL.
pub(super) fn counter_key(tag: &str, stamp: u32, key: &str) -> String {
    let wire = memcached_wire_key(key);
    let out = format!("{COUNTER_PREFIX}{tag}:{stamp:08x}:{wire}");
    if out.len() <= MAX_KEY_LEN {
        out
    } else {
        format!(
            "{COUNTER_PREFIX}{tag}:{stamp:08x}:#{:032x}",
            bytes128(key.as_bytes())
        )
    }
}

/// The longest TTL memcached takes as relative seconds: 30 days.
const RELATIVE_LIMIT: Duration = Duration::from_secs(30 * 24 * 60 * 60);

/// The `T` (or `N`) of a TTL: whole seconds rounded up (at least 1), sent
/// as an absolute unix time past 30 days as the protocol requires, and 0
/// (never expires) when that time is past what memcached parses: it reads
/// the number as a signed 32-bit value, so a time after 2038-01-19 would
/// turn negative and expire the item at once.
pub(super) fn expiry(ttl: Duration) -> u32 {
    let secs = ttl
        .as_secs()
        .saturating_add(u64::from(ttl.subsec_nanos() > 0))
        .max(1);
    if secs <= RELATIVE_LIMIT.as_secs() {
        return secs as u32;
    }
    let at = unix_secs().saturating_add(secs);
    if at > i32::MAX as u64 {
        0
    } else {
        at as u32
    }
}

/// The `T` of an `ms`: [`expiry`], or 0 (no expiry) without a TTL.
pub(super) fn wire_ttl(ttl: Option<Duration>) -> u32 {
    ttl.map_or(0, expiry)
}

/// The `T` of a stored entry: [`wire_ttl`], one second longer for an entry
/// whose envelope says when a reader must stop using it (fills with
/// fail-safe or early refresh are stamped so).
///
/// Memcached's clock moves once a second and an item expires when its time
/// is reached, so `T2` keeps an item between one and two seconds. An entry
/// whose reader checks the stamp to the millisecond is kept at least its
/// TTL this way and still used no longer than it. Every other entry
/// (unstamped, or tagged without a limit of its own) keeps the plain
/// rounding up: it may go up to a second early, or late by what rounding a
/// fractional TTL up to whole seconds added.
pub(super) fn entry_ttl(value: &[u8], ttl: Option<Duration>) -> u32 {
    let limited = cache_core::codec::freshness(value).is_some_and(|f| f.stale_until_ms < u64::MAX);
    match ttl {
        // Not past 30 days: that would turn a relative TTL into an absolute
        // time on this client's clock (tag records stay relative at 30 days).
        Some(ttl) if limited && ttl < RELATIVE_LIMIT => {
            expiry((ttl + Duration::from_secs(1)).min(RELATIVE_LIMIT))
        }
        ttl => wire_ttl(ttl),
    }
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_secs().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry with a freshness stamp that ends its use at `until_ms`
    /// (`u64::MAX`: no limit of its own, as a tagged entry without one).
    fn stamped_entry(until_ms: u64) -> Vec<u8> {
        let fresh = cache_core::codec::Freshness {
            fresh_until_ms: until_ms,
            stale_until_ms: until_ms,
            body_ms: 1,
        };
        cache_core::codec::seal_fresh(
            &cache_core::codec::MsgPack,
            &7u32,
            cache_core::codec::Salt::NONE,
            Some(fresh),
        )
        .unwrap()
    }

    #[test]
    fn safe_keys_are_unchanged() {
        for key in [
            "widget:7",
            "myapp:widget:7",
            "a",
            "k-_.~!{}[]",
            &"x".repeat(250),
        ] {
            assert_eq!(memcached_wire_key(key), key);
        }
    }

    #[test]
    fn unsafe_or_long_keys_are_hashed() {
        let bad = [
            "a\r\nflush_all",
            "with space",
            "tab\there",
            "nul\0",
            "caf\u{e9}",
            "",
            "__cacheside_gen:x",
            &"x".repeat(251),
            &"y".repeat(10_000),
        ];
        for key in bad {
            let wire = memcached_wire_key(key);
            assert!(wire.starts_with(HASHED_PREFIX), "{key:?} -> {wire}");
            assert_eq!(wire.len(), HASHED_PREFIX.len() + 32);
            assert!(wire.len() <= MAX_KEY_LEN);
            assert!(wire.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        }
        assert_ne!(memcached_wire_key("a b"), memcached_wire_key("a  b"));
        // Pinned: the mapping must not change between builds.
        assert_eq!(
            memcached_wire_key("a\r\nflush_all"),
            format!("{HASHED_PREFIX}{:032x}", bytes128(b"a\r\nflush_all"))
        );
    }

    #[test]
    fn ttls_round_up_to_whole_seconds() {
        assert_eq!(wire_ttl(None), 0);
        // A stamped entry outlives memcached's one-second clock; raw bytes do not.
        let ttl = Some(Duration::from_secs(2));
        let stamped = stamped_entry(2_000);
        assert!(cache_core::codec::freshness(&stamped).is_some());
        assert_eq!(entry_ttl(&stamped, ttl), 3);
        assert_eq!(entry_ttl(&stamped, Some(Duration::from_millis(1500))), 3);
        assert_eq!(entry_ttl(&stamped, None), 0);
        assert_eq!(entry_ttl(b"raw provider bytes", ttl), 2);
        // At 30 days the extra second would make the TTL an absolute time.
        let thirty_days = Duration::from_secs(30 * 86_400);
        assert_eq!(entry_ttl(&stamped, Some(thirty_days)), 30 * 86_400);
        assert_eq!(
            entry_ttl(&stamped, Some(thirty_days - Duration::from_millis(500))),
            30 * 86_400
        );
        assert_eq!(
            entry_ttl(&stamped_entry(u64::MAX), ttl),
            2,
            "no limit of its own: the store's TTL is the limit"
        );
        assert_eq!(wire_ttl(Some(Duration::from_millis(1))), 1);
        assert_eq!(wire_ttl(Some(Duration::ZERO)), 1);
        assert_eq!(wire_ttl(Some(Duration::from_millis(1500))), 2);
        assert_eq!(wire_ttl(Some(Duration::from_secs(60))), 60);
        assert_eq!(wire_ttl(Some(Duration::MAX)), 0);
        assert_eq!(wire_ttl(Some(Duration::from_secs(200 * 365 * 86_400))), 0);
        // Past 2038-01-19 memcached's signed 32-bit parse would expire the item at once.
        let until_2038 = i32::MAX as u64 - unix_secs();
        assert_eq!(wire_ttl(Some(Duration::from_secs(until_2038 + 10))), 0);
        let ten_years = wire_ttl(Some(Duration::from_secs(10 * 365 * 86_400)));
        assert!(
            ten_years > 1_900_000_000 && ten_years <= i32::MAX as u32,
            "{ten_years}"
        );
        assert_eq!(expiry(Duration::from_millis(1)), 1);
        assert_eq!(expiry(Duration::from_secs(120)), 120);
        assert!(expiry(Duration::from_secs(40 * 86_400)) > 1_000_000_000);
    }
}
