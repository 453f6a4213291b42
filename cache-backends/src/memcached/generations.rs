//! Namespace generations: how `clear` works without `flush_all` (see
//! [`MemcachedBackend`], "`clear` without `flush_all`"). The generations a
//! stamp is made of ([`Gens`]), the commands that read, create, repair and
//! bump them, the batches that carry them with an entry's commands, and
//! what a backend remembers of them per server.

use std::collections::HashMap;
use std::sync::MutexGuard;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cache_core::backend::is_tombstone;
use cache_core::Error;

use super::backend::{protocol_error, MemcachedBackend};
use super::meta::{Cmd, Reply};

/// The bit of a stamp that [`Gens::tombstone_flags`] flips.
const TOMBSTONE_BIT: u32 = 1 << 31;

/// Bound on the namespaces whose generations a backend remembers, per server.
const MAX_REMEMBERED_NAMESPACES: usize = 1024;

/// Lifetime given to a generation counter when it is created; each later
/// access sets it to "never expires" (`T0`).
const GEN_CREATE_TTL: u32 = 30 * 24 * 60 * 60;

/// A generation read by `mg … v t`: its value when present and permanent.
/// `None` asks for the `ma` that creates it or makes it permanent.
fn settled_generation(get: &Reply) -> Option<u64> {
    if !get.hit() || get.ttl != Some(-1) {
        return None;
    }
    get.number()
}

/// What this backend last read of one namespace's generations on one server, and when.
#[derive(Debug, Clone, Copy)]
pub(super) struct Seen {
    gens: Gens,
    at: tokio::time::Instant,
}

/// The generations an entry's stamp is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Gens {
    global: u64,
    namespace: Option<u64>,
}

impl Gens {
    /// The generations of `namespace`'s stamp from their values, in
    /// `stamp_namespaces` order; `None` when there are too few or too many.
    fn from_values(namespace: &str, mut values: impl Iterator<Item = u64>) -> Option<Gens> {
        let global = values.next()?;
        let namespace = match namespace.is_empty() {
            true => None,
            false => Some(values.next()?),
        };
        values
            .next()
            .is_none()
            .then_some(Gens { global, namespace })
    }

    pub(super) fn stamp(&self) -> u32 {
        self.global.wrapping_add(self.namespace.unwrap_or(0)) as u32
    }

    /// The client flags of a tombstone left under these generations: the
    /// stamp with its top bit flipped, so that it is never admitted (no
    /// probe needs the value to tell it from an entry) and it stays apart
    /// from the stamps of later generations (each clear adds 1).
    pub(super) fn tombstone_flags(&self) -> u32 {
        self.stamp() ^ TOMBSTONE_BIT
    }

    /// True when `get` found an entry written under these generations.
    pub(super) fn admits(&self, get: &Reply) -> bool {
        get.hit() && get.client_flags.unwrap_or(0) == self.stamp()
    }

    /// The value of `get` when it is live under these generations (a
    /// tombstone never is, whatever its flags).
    pub(super) fn value_of(&self, get: Reply) -> Option<Bytes> {
        self.admits(&get)
            .then(|| get.value.unwrap_or_default())
            .filter(|v| !is_tombstone(v))
    }
}

/// The initial value of a generation counter: microseconds since the epoch.
/// A counter lost and created again starts past every value the lost one
/// can have reached (a clear adds 1, and recreating takes more than a
/// microsecond), so entries it retired never match again.
fn unix_micros() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(1, |d| {
        u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
    })
}

impl MemcachedBackend {
    /// `ma <gen> N<30d> J<now> D<delta> T0 v`: reads (delta 0) or bumps a generation, creating it if absent.
    pub(super) fn gen_op(&self, server: usize, namespace: &str, delta: u64) -> Cmd<'_> {
        Cmd::Arith {
            key: self.ring.gen_key(server, namespace),
            delta,
            decrement: false,
            vivify: Some((GEN_CREATE_TTL, unix_micros())),
            expiry: Some(0),
        }
    }

    /// The namespaces whose generations make up a stamp: the global one
    /// (`""`), then `namespace` when it is not the global one.
    fn stamp_namespaces(namespace: &str) -> impl Iterator<Item = &str> {
        std::iter::once("").chain((!namespace.is_empty()).then_some(namespace))
    }

    /// Per generation, the `ma … D0` that reads it (creating it when
    /// missing) and an `mg … T0` that makes it permanent. (`ma`'s own `T0`
    /// is not applied reliably: seen skipped when the server rewrote the
    /// item instead of updating it in place.)
    fn gen_ops(&self, server: usize, namespace: &str) -> Vec<Cmd<'_>> {
        Self::stamp_namespaces(namespace)
            .flat_map(|ns| {
                let permanent = Cmd::Get {
                    key: self.ring.gen_key(server, ns),
                    value: false,
                    client_flags: false,
                    ttl: false,
                    cas: false,
                    touch: Some(0),
                };
                [self.gen_op(server, ns, 0), permanent]
            })
            .collect()
    }

    /// The plain `mg <gen> v t` reads of the steady state: read-only on the
    /// server, unlike `ma` (which rewrites the item and its CAS even for a
    /// delta of 0), so a hit costs the server about one extra lookup.
    fn gen_reads<'a>(
        &'a self,
        server: usize,
        namespace: &'a str,
    ) -> impl Iterator<Item = Cmd<'a>> + 'a {
        Self::stamp_namespaces(namespace).map(move |ns| Cmd::Get {
            key: self.ring.gen_key(server, ns),
            value: true,
            client_flags: false,
            ttl: true,
            cas: false,
            touch: None,
        })
    }

    /// Sends `gen_reads(server, namespace) ++ rest` as one pipelined batch
    /// on `server`: the generations, when every one is present and
    /// permanent, and the results of `rest`.
    pub(super) async fn read_with_gens<'a>(
        &'a self,
        op: &'static str,
        server: usize,
        namespace: &'a str,
        rest: impl IntoIterator<Item = Cmd<'a>>,
    ) -> Result<(Option<Gens>, Vec<Reply>), Error> {
        let mut ops = Vec::with_capacity(3);
        ops.extend(self.gen_reads(server, namespace));
        let n_gens = ops.len();
        ops.extend(rest);
        let mut out = self.run_batch(op, server, &ops).await?;
        if out.len() < n_gens {
            return Err(protocol_error(op, "fewer results than requests in a batch"));
        }
        // A read that is not settled ends the values early: too few, so `None`.
        let gens = Gens::from_values(
            namespace,
            out.drain(..n_gens).map_while(|r| settled_generation(&r)),
        );
        Ok((gens, out))
    }

    /// The generations `read_with_gens` found, or, when one is missing
    /// (first use, a restarted server) or still carries the lifetime it was
    /// created with, the values of the `ma` that creates it or makes it
    /// permanent, in a second round trip. Those are read *after* the rest
    /// of the first batch, which callers handle as they handle a concurrent
    /// `clear` (a read misses, a write or a count is repeated under the new
    /// stamp).
    pub(super) async fn settle(
        &self,
        op: &'static str,
        server: usize,
        namespace: &str,
        read: Option<Gens>,
    ) -> Result<Gens, Error> {
        if let Some(gens) = read {
            return Ok(gens);
        }
        // Seen on every call, this means the repair does not hold.
        tracing::debug!(
            server = %self.ring.addrs[server],
            namespace,
            "memcached generation missing or not permanent; creating or repairing it"
        );
        let made = self
            .run_batch(op, server, &self.gen_ops(server, namespace))
            .await?;
        let values = made
            .iter()
            .step_by(2)
            .map(|r| {
                r.number()
                    .ok_or_else(|| protocol_error(op, "generation counter without a value"))
            })
            .collect::<Result<Vec<u64>, Error>>()?;
        Gens::from_values(namespace, values.into_iter())
            .ok_or_else(|| protocol_error(op, "wrong number of generation counters"))
    }

    /// `read_with_gens` and `settle`, remembering the generations: returns
    /// them and the results of `rest`.
    pub(super) async fn batch(
        &self,
        op: &'static str,
        server: usize,
        namespace: &str,
        rest: Vec<Cmd<'_>>,
    ) -> Result<(Gens, Vec<Reply>), Error> {
        let (read, rest) = self.read_with_gens(op, server, namespace, rest).await?;
        let gens = self.settle(op, server, namespace, read).await?;
        self.remember(server, namespace, gens);
        Ok((gens, rest))
    }

    pub(super) fn remember(&self, server: usize, namespace: &str, gens: Gens) {
        // Exact hits (no refresh window) never read `at`: when nothing
        // changed, the steady state skips the clock and the write.
        let exact = self.generation_refresh.is_zero();
        let now = || Seen {
            gens,
            at: tokio::time::Instant::now(),
        };
        let mut seen = self.seen_on(server);
        match seen.get_mut(namespace) {
            Some(g) if exact && g.gens == gens => {}
            Some(g) => *g = now(),
            None => {
                if seen.len() >= MAX_REMEMBERED_NAMESPACES {
                    // Forgetting costs one round trip, never correctness.
                    seen.clear();
                }
                seen.insert(namespace.to_owned(), now());
            }
        }
    }

    /// What this backend remembers of `server`'s generations, locked (a
    /// poisoned lock is taken all the same).
    fn seen_on(&self, server: usize) -> MutexGuard<'_, HashMap<String, Seen>> {
        self.seen[server].lock().unwrap_or_else(|e| e.into_inner())
    }

    fn seen(&self, server: usize, namespace: &str) -> Option<Seen> {
        self.seen_on(server).get(namespace).copied()
    }

    /// The generations last read, however old, or, when none are
    /// remembered, read now: what writes and counts stamp with first.
    pub(super) async fn remembered(
        &self,
        op: &'static str,
        server: usize,
        namespace: &str,
    ) -> Result<Gens, Error> {
        match self.seen(server, namespace) {
            Some(seen) => Ok(seen.gens),
            None => Ok(self.batch(op, server, namespace, Vec::new()).await?.0),
        }
    }

    /// The generations last read, if read less than `generation_refresh` ago.
    pub(super) fn trusted(&self, server: usize, namespace: &str) -> Option<Gens> {
        if self.generation_refresh.is_zero() {
            return None;
        }
        self.seen(server, namespace)
            .filter(|s| s.at.elapsed() < self.generation_refresh)
            .map(|s| s.gens)
    }

    /// Forgets what was read of `namespace` on every server (of every
    /// namespace, for the global one `""`): after a `clear`, whatever its
    /// outcome, servers that took the bump must be read afresh.
    pub(super) fn forget(&self, namespace: &str) {
        for server in 0..self.seen.len() {
            let mut seen = self.seen_on(server);
            if namespace.is_empty() {
                seen.clear();
            } else {
                seen.remove(namespace);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_need_exactly_one_value_per_stamp_namespace() {
        let of = |ns: &str, v: &[u64]| Gens::from_values(ns, v.iter().copied());
        assert_eq!(
            of("", &[7]),
            Some(Gens {
                global: 7,
                namespace: None
            })
        );
        assert_eq!(
            of("app:", &[7, 9]),
            Some(Gens {
                global: 7,
                namespace: Some(9)
            })
        );
        for (ns, values) in [
            ("", &[][..]),
            ("", &[7, 9]),
            ("app:", &[7]),
            ("app:", &[7, 9, 1]),
        ] {
            assert_eq!(of(ns, values), None, "{ns:?} {values:?}");
        }
    }

    #[test]
    fn stamps_change_with_either_generation() {
        let g = Gens {
            global: 10,
            namespace: Some(20),
        };
        let bumped_ns = Gens {
            namespace: Some(21),
            ..g
        };
        let bumped_global = Gens { global: 11, ..g };
        assert_ne!(g.stamp(), bumped_ns.stamp());
        assert_ne!(g.stamp(), bumped_global.stamp());
        assert_eq!(
            Gens {
                global: 7,
                namespace: None
            }
            .stamp(),
            7
        );
    }

    #[test]
    fn tombstones_are_never_live_whatever_their_flags() {
        let g = Gens {
            global: 10,
            namespace: Some(20),
        };
        let retired = Gens { global: 11, ..g };
        let entry = || Reply::found(b"v", g.stamp());
        assert_eq!(g.value_of(entry()).as_deref(), Some(&b"v"[..]));
        assert_eq!(retired.value_of(entry()), None);
        let mark = cache_core::backend::tombstone();
        for gens in [g, retired] {
            assert_ne!(gens.tombstone_flags(), g.stamp());
            assert!(!g.admits(&Reply::found(&mark, gens.tombstone_flags())));
        }
        // Even one that carries the stamp (a tombstone from a collided
        // generation) is not a value.
        assert_eq!(g.value_of(Reply::found(&mark, g.stamp())), None);
    }
}
