//! The cache-aside path: read the entry, on a miss run the body once per
//! key (single-flight), write what is cacheable; and the entry I/O under it
//! (read and decode, encode and write), shared with the provider API.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::stats::bump;
use super::Cache;
use crate::codec::{self, Salt, Storable};
use crate::flight::{self, Role};
use crate::guard::Bound;
use crate::pending::Target;
use crate::{Error, Outcome};

impl Cache {
    /// The cache-aside path shared by [`get_or_set`](Cache::get_or_set) and the macros:
    /// lookup; on a miss, single-flight; run `body`; store what is cacheable.
    ///
    /// Never fails: store errors fall back to `body`. An encode error is
    /// returned beside the value so each caller decides how loud to be.
    #[doc(hidden)] // for the facade's macro runtime (cacheside::__private), not API
    pub async fn read_through<O, Fut>(
        &self,
        full: &str,
        ttl: Duration,
        salt: Salt,
        body: Fut,
    ) -> (O, Option<Error>)
    where
        O: Outcome,
        Fut: Future<Output = O>,
    {
        // One store budget per call: the write after the body gets what the
        // read left of the op timeout, so a hanging store costs a call at most
        // one timeout plus the body's own time.
        let deadline = self.inner.gate.call_deadline();
        match self.read_entry::<O::Value>(full, deadline, salt).await {
            Ok(Some(v)) => return (O::from_cached(v), None),
            Ok(None) => {}
            Err(e) => self.note_failure("read", full, &e),
        }
        let write_budget = deadline.map_or(self.inner.gate.op_timeout(), |d| {
            d.saturating_duration_since(tokio::time::Instant::now())
        });
        match self.inner.flights.join(full) {
            Role::Leader(guard) => {
                let out = body.await;
                let (sealed, encode_error) = self.encode_outcome(full, &out, salt);
                guard.land(sealed.clone());
                if let Some(bytes) = sealed {
                    // Invalidated while the body ran: its value may predate the mutation.
                    if !guard.is_stale() {
                        self.fill(full, bytes, ttl, write_budget, || guard.is_stale())
                            .await;
                    }
                }
                drop(guard);
                (out, encode_error)
            }
            Role::Follower(rx) => {
                // An invalidation from here on makes what this caller computes stale too.
                let epoch = self.inner.flights.epoch();
                if let Some(bytes) = flight::follow(rx).await {
                    if let Ok(v) = codec::open_salted::<O::Value>(&*self.inner.codec, &bytes, salt)
                    {
                        bump(&self.inner.counters.coalesced);
                        return (O::from_cached(v), None);
                    }
                }
                // The leader had nothing to share (error, None, cancelled):
                // run our own body, and store what it gives like a leader would.
                let out = body.await;
                let (sealed, encode_error) = self.encode_outcome(full, &out, salt);
                let stale = || self.inner.flights.epoch() != epoch;
                if let Some(bytes) = sealed {
                    if !stale() {
                        self.fill(full, bytes, ttl, write_budget, stale).await;
                    }
                }
                (out, encode_error)
            }
        }
    }

    /// The encoded cacheable part of `out` (`None`: nothing to store), and an encode error.
    fn encode_outcome<O: Outcome>(
        &self,
        full: &str,
        out: &O,
        salt: Salt,
    ) -> (Option<Bytes>, Option<Error>) {
        match out.cacheable() {
            Some(v) => match self.encode_for_fill(full, v, salt) {
                Ok(b) => (b, None),
                Err(e) => (None, Some(e)),
            },
            None => (None, None),
        }
    }

    /// Writes a miss's value, unless the read used the whole budget (the
    /// store hangs or is down, already counted) or the circuit is open.
    /// When `stale()` turns true while the write is in flight (an
    /// invalidation landed meanwhile), the write is undone: the delete that
    /// raced it must win.
    async fn fill(
        &self,
        full: &str,
        bytes: Bytes,
        ttl: Duration,
        budget: Duration,
        stale: impl Fn() -> bool,
    ) {
        if budget.is_zero() || self.inner.gate.is_open() {
            return;
        }
        if let Err(e) = self.write_entry(full, bytes, ttl, budget).await {
            self.note_failure("write", full, &e);
        }
        if stale() {
            let undo = self
                .call_store(
                    "delete",
                    Bound::Op,
                    self.inner.backend.delete(self.key(full)),
                )
                .await;
            if let Err(e) = undo {
                if e.is_store_failure() {
                    self.keep_invalidation(Target::Key(full), "undo of a stale write", &e);
                }
            }
        }
    }

    /// Reads and decodes the entry under `full`, bounded by `deadline`
    /// (from [`StoreGate::call_deadline`](crate::guard::StoreGate::call_deadline); `None`: an in-process store).
    ///
    /// An entry that does not decode as `T` (wrong type, wrong fingerprint
    /// `salt`, corrupt bytes) is a miss: it is deleted and counted as an
    /// error. Store failures are returned (uncounted) for the caller to
    /// propagate or fail open on.
    pub(super) async fn read_entry<T: DeserializeOwned>(
        &self,
        full: &str,
        deadline: Option<tokio::time::Instant>,
        salt: Salt,
    ) -> Result<Option<T>, Error> {
        let key = self.key(full);
        if self.inner.pending.covers(full, self.inner.prefix.len()) {
            // A kept invalidation covers this key: the store may still hold
            // the old value. A miss, and another try at delivering.
            bump(&self.inner.counters.misses);
            self.deliver_pending();
            return Ok(None);
        }
        let get = self.inner.backend.get(key);
        let got = match deadline {
            Some(deadline) => {
                self.call_store(
                    "get",
                    Bound::Until(self.inner.gate.op_timeout(), deadline),
                    get,
                )
                .await
            }
            None => get.await,
        };
        let Some(bytes) = got? else {
            bump(&self.inner.counters.misses);
            return Ok(None);
        };
        match codec::open_salted::<T>(&*self.inner.codec, &bytes, salt) {
            Ok(v) => {
                bump(&self.inner.counters.hits);
                Ok(Some(v))
            }
            Err(reason) => {
                bump(&self.inner.counters.misses);
                bump(&self.inner.counters.errors);
                tracing::warn!(key = full, expected = std::any::type_name::<T>(), %reason, "cache entry does not decode; treating as a miss and deleting it");
                // The delete shares the call's one budget: a store that
                // answers the read and then hangs costs one op timeout, not two.
                let delete = self.inner.backend.delete(key);
                match deadline {
                    Some(deadline) => {
                        self.call_store(
                            "delete",
                            Bound::Until(self.inner.gate.op_timeout(), deadline),
                            delete,
                        )
                        .await?
                    }
                    None => delete.await?,
                };
                Ok(None)
            }
        }
    }

    /// The envelope plus the encoded value; a value over the size limit is
    /// counted in `skipped` and refused with [`Error::ValueTooLarge`].
    pub(super) fn encode_entry<T: Storable + ?Sized>(
        &self,
        value: &T,
        salt: Salt,
    ) -> Result<Bytes, Error> {
        let bytes =
            codec::seal_salted(&*self.inner.codec, value, salt).map_err(|e| Error::Encode {
                codec: self.inner.codec.name(),
                message: e.0,
            })?;
        if bytes.len() > self.inner.max_value_size {
            bump(&self.inner.counters.skipped);
            return Err(Error::ValueTooLarge {
                size: bytes.len(),
                limit: self.inner.max_value_size,
            });
        }
        Ok(Bytes::from(bytes))
    }

    /// [`encode_entry`](Cache::encode_entry) for the cache-aside path: an oversize value
    /// is skipped (logged), not an error. `Ok(None)` = skipped.
    fn encode_for_fill<T: Storable + ?Sized>(
        &self,
        full: &str,
        value: &T,
        salt: Salt,
    ) -> Result<Option<Bytes>, Error> {
        match self.encode_entry(value, salt) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(Error::ValueTooLarge { size, limit }) => {
                tracing::warn!(
                    key = full,
                    size,
                    limit,
                    "value over the cache's size limit; not stored"
                );
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Writes an encoded entry within `limit`; a success supersedes kept
    /// deletes of the key that started before it.
    pub(super) async fn write_entry(
        &self,
        full: &str,
        bytes: Bytes,
        ttl: Duration,
        limit: Duration,
    ) -> Result<(), Error> {
        let key = self.key(full);
        let upto = self.inner.pending.seq();
        let result = self
            .call_store(
                "set",
                Bound::Within(limit),
                self.inner.backend.set(key, bytes, Some(ttl)),
            )
            .await;
        if result.is_ok() {
            // A fresh value replaced whatever a kept delete of this key was for.
            self.inner
                .pending
                .superseded(Target::Key(full), upto, self.inner.prefix.len());
        }
        result
    }

    /// [`get`](Cache::get) with the fingerprint salt of an annotated function.
    #[doc(hidden)] // for the facade's macro runtime (cacheside::__private), not API
    pub async fn get_salted<T: DeserializeOwned>(
        &self,
        key: &str,
        salt: Salt,
    ) -> Result<Option<T>, Error> {
        self.read_entry(&self.full_key(key), self.inner.gate.call_deadline(), salt)
            .await
            .inspect_err(|_| bump(&self.inner.counters.errors))
    }

    /// [`set`](Cache::set) with the fingerprint salt of an annotated function.
    #[doc(hidden)] // for the facade's macro runtime (cacheside::__private), not API
    pub async fn set_salted<T: Storable + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
        salt: Salt,
    ) -> Result<(), Error> {
        let bytes = self.encode_entry(value, salt)?;
        let full = self.full_key(key);
        self.write_entry(
            &full,
            bytes,
            self.resolve_ttl(ttl),
            self.inner.gate.op_timeout(),
        )
        .await
    }
}
