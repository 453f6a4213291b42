//! Fenced fills on Memcached (see [`MemcachedBackend`], *Fencing*): the
//! tombstone an invalidation leaves, the [`Fence`] a read hands out (the
//! item's CAS value), and the conditional `ms` a fill sends with it.

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use cache_core::backend::tombstone;
use cache_core::{Error, Fence, Key};

use super::backend::{protocol_error, MemcachedBackend};
use super::keys::{entry_ttl, expiry};
use super::meta::{Cmd, Reply, Store};

/// The fence of an item that is there but not a value (a tombstone, an
/// entry of a retired generation): its CAS, 8 bytes little-endian.
fn cas_token(cas: u64) -> Fence {
    Fence::Token(Bytes::copy_from_slice(&cas.to_le_bytes()))
}

/// How a fill with `fence` stores: `None` for a plain write, and `Err(())`
/// for a token this backend did not give out (8 bytes), which nothing in
/// the store can match.
fn store_for(fence: &Fence) -> Result<Option<Store>, ()> {
    match fence {
        Fence::None => Ok(None),
        Fence::Absent => Ok(Some(Store::IfAbsent)),
        Fence::Token(token) => <[u8; 8]>::try_from(&token[..])
            .map(|cas| Some(Store::IfCas(u64::from_le_bytes(cas))))
            .map_err(|_| ()),
    }
}

/// What a fenced read found: a live value (its CAS, for a refresh of a
/// stale entry that must find it unchanged), no item (the fill must find
/// none), or an item that reads as absent, a tombstone or an entry of a
/// retired generation (the fill must find the same item, by its CAS: an
/// `ME` would never land on it).
fn fenced(
    value: Option<Bytes>,
    got: &Reply,
    op: &'static str,
) -> Result<(Option<Bytes>, Fence), Error> {
    match value {
        Some(value) => Ok((Some(value), got.cas.map_or(Fence::None, cas_token))),
        None if !got.hit() => Ok((None, Fence::Absent)),
        None => got
            .cas
            .map(|cas| (None, cas_token(cas)))
            .ok_or_else(|| protocol_error(op, "mg without the CAS value it was asked for")),
    }
}

impl MemcachedBackend {
    /// `mg <key> v f c` with the generations: see [`Backend::get_fenced`](cache_core::Backend::get_fenced).
    pub(super) async fn read_fenced(&self, key: Key<'_>) -> Result<(Option<Bytes>, Fence), Error> {
        const OP: &str = "get_fenced";
        let (wire, server) = self.route_key(key);
        let (gens, got) = self
            .read_entry(OP, server, key.namespace(), Cmd::get(&*wire).with_cas())
            .await?;
        let value = gens.value_of(got.clone());
        fenced(value, &got, OP)
    }

    /// `ms … ME` or `ms … C<cas>` with the generations: see
    /// [`Backend::set_fenced`](cache_core::Backend::set_fenced).
    pub(super) async fn write_fenced(
        &self,
        key: Key<'_>,
        value: Bytes,
        ttl: Option<Duration>,
        fence: &Fence,
    ) -> Result<bool, Error> {
        const OP: &str = "set_fenced";
        let store = match store_for(fence) {
            Ok(Some(store)) => store,
            Ok(None) => {
                return cache_core::Backend::set(self, key, value, ttl)
                    .await
                    .map(|()| true)
            }
            Err(()) => return Ok(false),
        };
        self.fits(&value)?;
        let (wire, server) = self.route_key(key);
        let namespace = key.namespace();
        let gens = self.remembered(OP, server, namespace).await?;
        let mut store = store;
        loop {
            let set = Cmd::Set {
                key: Cow::Borrowed(&wire),
                value: &value,
                client_flags: gens.stamp(),
                expiry: entry_ttl(&value, ttl),
                store,
            };
            let (current, stored) = self.write(OP, server, namespace, set).await?;
            if stored.applied() {
                // Stamped with generations a clear has retired since: the fill
                // is invisible, as if it had not landed (no second try: the
                // clear overtook it).
                return Ok(current == gens);
            }
            if stored.not_found() && matches!(store, Store::IfCas(_)) {
                // The item the fence named is gone: it expired (a dead
                // entry is kept up to two seconds past its stamp) or was
                // evicted. An invalidation would have left a tombstone (a
                // CAS mismatch), so this fill stands as one whose read
                // found nothing: it lands while the key is still empty.
                store = Store::IfAbsent;
                continue;
            }
            if stored.condition_failed() {
                return Ok(false);
            }
            return Err(protocol_error(
                OP,
                "ms answered neither stored nor not stored",
            ));
        }
    }

    /// `mg <key> f` and `ms <key> … T<window>` of a fresh tombstone, in one
    /// batch: see [`Backend::invalidate`](cache_core::Backend::invalidate).
    pub(super) async fn leave_tombstone(
        &self,
        key: Key<'_>,
        window: Duration,
    ) -> Result<bool, Error> {
        const OP: &str = "invalidate";
        let (wire, server) = self.route_key(key);
        let namespace = key.namespace();
        let gens = self.remembered(OP, server, namespace).await?;
        let mark = tombstone();
        let ops = vec![
            Cmd::probe(&*wire),
            Cmd::Set {
                key: Cow::Borrowed(&wire),
                value: &mark,
                client_flags: gens.tombstone_flags(),
                // A second more: memcached's once-a-second clock may end
                // `T<window>` up to a second early, and fills the tombstone
                // keeps out may land until the window's end.
                expiry: expiry(window + Duration::from_secs(1)),
                store: Store::Always,
            },
        ];
        // Flags from generations a clear has moved since are still not
        // the current stamp: the tombstone reads as absent all the same.
        let (current, results) = self.batch(OP, server, namespace, ops).await?;
        let was_live = Self::live(current, results.first(), OP)?.is_some();
        let fenced = results
            .get(1)
            .ok_or_else(|| protocol_error(OP, "missing ms result"))?
            .applied();
        if !fenced {
            return Err(protocol_error(OP, "ms of the tombstone was not applied"));
        }
        Ok(was_live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_map_to_the_ms_condition_that_checks_them() {
        assert_eq!(store_for(&Fence::None), Ok(None));
        assert_eq!(store_for(&Fence::Absent), Ok(Some(Store::IfAbsent)));
        for cas in [0, 1, 0x0102_0304_0506_0708, u64::MAX] {
            assert_eq!(store_for(&cas_token(cas)), Ok(Some(Store::IfCas(cas))));
        }
        assert_eq!(
            cas_token(0x0102_0304_0506_0708),
            Fence::Token(Bytes::from_static(&[8, 7, 6, 5, 4, 3, 2, 1]))
        );
        // Another store's token (a tombstone, say) is nothing an item here can match.
        for foreign in [Bytes::new(), tombstone(), Bytes::from_static(&[1; 9])] {
            assert_eq!(store_for(&Fence::Token(foreign)), Err(()));
        }
    }

    #[test]
    fn a_fenced_read_fences_by_what_it_found() -> Result<(), Error> {
        let v = Bytes::from_static(b"v");
        let hit = Reply::found(b"v", 1);
        assert_eq!(fenced(Some(v.clone()), &hit, "t")?, (Some(v), Fence::None));
        assert_eq!(fenced(None, &Reply::missing(), "t")?, (None, Fence::Absent));
        let mut there = Reply::found(&tombstone(), 1);
        there.cas = Some(42);
        assert_eq!(fenced(None, &there, "t")?, (None, cas_token(42)));
        // A CAS asked for and not returned is the server's fault, not a miss.
        there.cas = None;
        assert!(fenced(None, &there, "t").is_err());
        Ok(())
    }
}
