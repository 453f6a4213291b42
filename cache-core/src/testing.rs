//! Store faults on demand, for testing fail-open paths (feature `testing`).
//!
//! [`Faulty`] wraps any [`Backend`] and makes chosen operations slow, failing,
//! hanging or corrupt ([`Fault`]), for every call or only the next few, while
//! the test runs; it counts the calls each operation receives. It is a shared
//! handle: keep a clone after handing one to
//! [`Cache::builder()`](crate::Cache::builder), and change the faults from the
//! test (or from another task) as the scenario goes on. [`MapStore`] is a
//! small in-process store to wrap when no other is at hand
//! ([`Faulty::memory`]).
//!
//! ```
//! use std::time::Duration;
//! use cache_core::testing::{Fault, Faulty, Op};
//! use cache_core::Cache;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let store = Faulty::memory();
//! let cache = Cache::builder(store.clone()).build();
//! cache.set("k", &1u32, None).await.unwrap();
//!
//! store.inject(Op::Get, Fault::Error); // the store goes down for reads
//! let computed = cache.get_or_set("k", None, || async { 2u32 }).await.unwrap();
//! assert_eq!(computed, 2, "the read failed, so the body ran: fail-open");
//!
//! store.clear_faults(); // and comes back
//! assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(2));
//! assert_eq!(store.calls(Op::Get), 2);
//! # }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::backend::{is_tombstone, tombstone, Fence};
use crate::{pattern, Backend, Error, Key};

/// One operation of the [`Backend`] trait (one of its async methods), as
/// [`Faulty`] tells them apart.
///
/// ```
/// use cache_core::testing::Op;
/// assert_eq!(Op::DeletePattern.name(), "delete_pattern");
/// assert!(Op::ALL.contains(&Op::Increment));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// [`Backend::get`].
    Get,
    /// [`Backend::set`].
    Set,
    /// [`Backend::delete`].
    Delete,
    /// [`Backend::delete_pattern`].
    DeletePattern,
    /// [`Backend::exists`].
    Exists,
    /// [`Backend::ttl`].
    Ttl,
    /// [`Backend::clear`].
    Clear,
    /// [`Backend::ping`].
    Ping,
    /// [`Backend::increment`].
    Increment,
}

/// How many operations there are (the length of [`Op::ALL`]).
const OPS: usize = 9;

impl Op {
    /// Every operation, in the order of the trait.
    ///
    /// ```
    /// use cache_core::testing::{Faulty, Op};
    /// let store = Faulty::memory();
    /// assert!(Op::ALL.iter().all(|&op| store.calls(op) == 0));
    /// ```
    pub const ALL: [Op; OPS] = [
        Op::Get,
        Op::Set,
        Op::Delete,
        Op::DeletePattern,
        Op::Exists,
        Op::Ttl,
        Op::Clear,
        Op::Ping,
        Op::Increment,
    ];

    /// The trait method's name (`"get"`, `"delete_pattern"`), which injected errors carry as their `op`.
    ///
    /// ```
    /// assert_eq!(cache_core::testing::Op::Get.name(), "get");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            Op::Get => "get",
            Op::Set => "set",
            Op::Delete => "delete",
            Op::DeletePattern => "delete_pattern",
            Op::Exists => "exists",
            Op::Ttl => "ttl",
            Op::Clear => "clear",
            Op::Ping => "ping",
            Op::Increment => "increment",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What a [`Faulty`] store does to a call of an operation instead of answering normally.
///
/// Faults that fail return the trait's own errors, so the [`Cache`](crate::Cache)
/// treats them exactly as it treats a real store's: [`Error`](Fault::Error)
/// and [`Hang`](Fault::Hang) (through the operation timeout) count towards the
/// circuit breaker, [`Unsupported`](Fault::Unsupported) does not.
///
/// ```
/// use std::time::Duration;
/// use cache_core::testing::{Fault, Faulty, Op};
/// let store = Faulty::memory();
/// store.inject(Op::Set, Fault::Delay(Duration::from_millis(30)));
/// store.inject(Op::Get, Fault::Garbage);
/// store.inject(Op::DeletePattern, Fault::Unsupported);
/// store.inject(Op::Ping, Fault::Hang);
/// store.inject(Op::Clear, Fault::Error);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Waits this long (on tokio's clock, so a paused clock skips it), then
    /// goes on to the inner store: a slow network.
    Delay(Duration),
    /// Fails at once with an [`Error::Backend`] (connection refused): a store that is down.
    Error,
    /// [`Op::Get`] only: answers bytes that are no cacheside envelope, which
    /// every codec rejects (the cache then reads a miss, counts an error and
    /// deletes the entry through the inner store).
    Garbage,
    /// Does not answer while it is in place, like a frozen server: the call
    /// waits until this operation's fault is replaced or cleared, then goes
    /// on to the inner store. The cache's operation timeout drops it first
    /// (calls are cancel-safe).
    Hang,
    /// Fails as a store without the operation does:
    /// [`Error::PatternNotSupported`] for [`Op::DeletePattern`] (like
    /// Memcached), [`Error::Unsupported`] for the others (like a backend
    /// written before [`Backend::increment`] existed).
    Unsupported,
}

/// The bytes a [`Fault::Garbage`] read answers: no envelope starts with `g`.
const GARBAGE: &[u8] = b"garbage, not a cacheside envelope";

/// A fault in place for one operation.
#[derive(Debug, Clone, Copy)]
struct Armed {
    fault: Fault,
    /// Calls it still applies to; `None`: every call until cleared.
    left: Option<u64>,
}

/// What a [`Faulty`] store shares between its clones and its calls.
#[derive(Debug, Default)]
struct State {
    armed: [Option<Armed>; OPS],
    calls: [u64; OPS],
    /// Moves on with every change of an operation's fault: what releases a [`Fault::Hang`].
    changes: [u64; OPS],
}

/// What a call goes on to do after meeting its operation's fault.
enum Passage {
    /// To the inner store.
    Inner,
    /// Answer [`GARBAGE`] (a read).
    Garbage,
}

struct Shared<B> {
    inner: B,
    state: watch::Sender<State>,
}

/// A [`Backend`] that passes every call to `inner` unless a [`Fault`] is in
/// place for its [`Op`], and counts the calls of each operation.
///
/// Clones share the faults, the counters and the inner store. Faults can be
/// set and cleared at any time, from any task: calls already waiting out a
/// [`Fault::Delay`] finish it, calls held by a [`Fault::Hang`] are released
/// when their operation's fault changes.
///
/// It is a network store of its own, whatever `inner` is: named `"faulty"`
/// and not [in-process](Backend::is_in_process), so the cache bounds its
/// calls by the operation timeout and guards them with the circuit breaker,
/// as it does for Redis or Memcached, and code that treats the in-process
/// stores specially (the HTTP rate limiter counts in its own store for
/// `memory` and `none`) uses it as given. Its
/// [`max_value_size`](Backend::max_value_size) is `inner`'s.
///
/// ```
/// use std::time::Duration;
/// use cache_core::testing::{Fault, Faulty, Op};
/// use cache_core::{BreakerSettings, Cache, Error};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let store = Faulty::memory();
/// let cache = Cache::builder(store.clone())
///     .op_timeout(Duration::from_millis(100))
///     .breaker(BreakerSettings { threshold: 2, cooldown: Duration::from_secs(1) })
///     .build();
/// store.inject_all(Fault::Hang);
/// for _ in 0..2 {
///     assert!(matches!(cache.get::<u8>("k").await, Err(Error::Timeout { .. })));
/// }
/// // Two timeouts opened the circuit: the store is not asked again.
/// assert!(matches!(cache.get::<u8>("k").await, Err(Error::CircuitOpen { .. })));
/// assert_eq!(store.calls(Op::Get), 2);
/// # }
/// ```
pub struct Faulty<B> {
    shared: Arc<Shared<B>>,
}

impl<B> Clone for Faulty<B> {
    fn clone(&self) -> Self {
        Faulty {
            shared: Arc::clone(&self.shared),
        }
    }
}

impl Faulty<MapStore> {
    /// A faulty store over a fresh, empty [`MapStore`].
    ///
    /// ```
    /// use cache_core::{testing::Faulty, Backend};
    /// let store = Faulty::memory();
    /// assert_eq!((store.name(), store.inner().name()), ("faulty", "map"));
    /// ```
    pub fn memory() -> Self {
        Faulty::new(MapStore::default())
    }
}

impl<B: Backend> Faulty<B> {
    /// Wraps `inner`, with no fault in place and every counter at 0.
    ///
    /// ```
    /// use cache_core::testing::{Fault, Faulty};
    /// use cache_core::{Cache, NullBackend};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// // A store that is down for good: every call fails (and is counted).
    /// let down = Faulty::new(NullBackend);
    /// down.inject_all(Fault::Error);
    /// let cache = Cache::builder(down.clone()).build();
    /// assert_eq!(cache.get_or_set("k", None, || async { 7u8 }).await.unwrap(), 7);
    /// assert!(down.total_calls() > 0);
    /// # }
    /// ```
    pub fn new(inner: B) -> Self {
        Faulty {
            shared: Arc::new(Shared {
                inner,
                state: watch::Sender::new(State::default()),
            }),
        }
    }

    /// The wrapped store, to look at or change its data past the faults and the counters.
    ///
    /// ```
    /// use cache_core::testing::{Fault, Faulty, Op};
    /// use cache_core::{Backend, Bytes, Key};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = Faulty::memory();
    /// store.inject(Op::Set, Fault::Error);
    /// store.inner().set(Key::plain("k"), Bytes::from_static(b"v"), None).await.unwrap();
    /// assert!(store.exists(Key::plain("k")).await.unwrap());
    /// assert_eq!(store.calls(Op::Set), 0);
    /// # }
    /// ```
    pub fn inner(&self) -> &B {
        &self.shared.inner
    }

    /// Puts `fault` in place for every later call of `op`, until it is
    /// replaced or cleared.
    ///
    /// # Panics
    /// When `fault` is [`Fault::Garbage`] and `op` is not [`Op::Get`] (only a
    /// read answers bytes to corrupt).
    ///
    /// ```
    /// use cache_core::testing::{Fault, Faulty, Op};
    /// use cache_core::{Backend, Key};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = Faulty::memory();
    /// store.inject(Op::Exists, Fault::Error);
    /// for _ in 0..3 {
    ///     assert!(store.exists(Key::plain("k")).await.unwrap_err().is_store_failure());
    /// }
    /// # }
    /// ```
    pub fn inject(&self, op: Op, fault: Fault) {
        self.arm(&[op], fault, None);
    }

    /// Puts `fault` in place for the next `n` calls of `op` only (none when
    /// `n` is 0); the calls after them reach the inner store again.
    ///
    /// # Panics
    /// As [`inject`](Faulty::inject).
    ///
    /// ```
    /// use cache_core::testing::{Fault, Faulty, Op};
    /// use cache_core::{Backend, Key};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = Faulty::memory();
    /// store.inject_next(Op::Ping, 2, Fault::Error);
    /// assert!(store.ping().await.is_err());
    /// assert!(store.ping().await.is_err());
    /// assert!(store.ping().await.is_ok());
    /// # }
    /// ```
    pub fn inject_next(&self, op: Op, n: u64, fault: Fault) {
        self.arm(&[op], fault, Some(n));
    }

    /// Puts `fault` in place for every operation ([`Op::ALL`]), until replaced or cleared.
    ///
    /// # Panics
    /// When `fault` is [`Fault::Garbage`] (it applies to [`Op::Get`] only).
    ///
    /// ```
    /// use cache_core::testing::{Fault, Faulty};
    /// use cache_core::{Backend, Key};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = Faulty::memory();
    /// store.inject_all(Fault::Unsupported);
    /// assert!(store.ping().await.is_err());
    /// assert!(store.delete_pattern("", "*").await.is_err());
    /// # }
    /// ```
    pub fn inject_all(&self, fault: Fault) {
        self.arm(&Op::ALL, fault, None);
    }

    /// Removes the fault of `op` (releasing its calls held by a [`Fault::Hang`]).
    ///
    /// ```
    /// use cache_core::testing::{Fault, Faulty, Op};
    /// use cache_core::Backend;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = Faulty::memory();
    /// store.inject_all(Fault::Error);
    /// store.clear_fault(Op::Ping);
    /// assert!(store.ping().await.is_ok());
    /// assert!(store.clear("").await.is_err());
    /// # }
    /// ```
    pub fn clear_fault(&self, op: Op) {
        self.change(&[op], None);
    }

    /// Removes every fault (releasing every call held by a [`Fault::Hang`]); the counters stay.
    ///
    /// ```
    /// use cache_core::testing::{Fault, Faulty, Op};
    /// use cache_core::Backend;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = Faulty::memory();
    /// store.inject_all(Fault::Error);
    /// assert!(store.ping().await.is_err());
    /// store.clear_faults();
    /// assert!(store.ping().await.is_ok());
    /// assert_eq!(store.calls(Op::Ping), 2);
    /// # }
    /// ```
    pub fn clear_faults(&self) {
        self.change(&Op::ALL, None);
    }

    /// How many calls of `op` this store (any clone) has received, faulted or not.
    ///
    /// ```
    /// use cache_core::testing::{Faulty, Op};
    /// use cache_core::Cache;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = Faulty::memory();
    /// let cache = Cache::builder(store.clone()).build();
    /// cache.get_or_set("k", None, || async { 1u8 }).await.unwrap();
    /// assert_eq!((store.calls(Op::Get), store.calls(Op::Set)), (1, 1));
    /// # }
    /// ```
    pub fn calls(&self, op: Op) -> u64 {
        self.shared.state.borrow().calls[op.index()]
    }

    /// How many calls of any operation this store has received.
    ///
    /// ```
    /// use cache_core::testing::Faulty;
    /// use cache_core::Backend;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = Faulty::memory();
    /// store.ping().await.unwrap();
    /// store.clear("").await.unwrap();
    /// assert_eq!(store.total_calls(), 2);
    /// # }
    /// ```
    pub fn total_calls(&self) -> u64 {
        self.shared.state.borrow().calls.iter().sum()
    }

    /// Waits until `op` has received `n` calls in all (at once when it has):
    /// to act while a call is in flight, for example held by a [`Fault::Hang`].
    ///
    /// ```
    /// use cache_core::testing::{Fault, Faulty, Op};
    /// use cache_core::{Backend, Bytes, Key};
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let store = Faulty::memory();
    /// store.inject(Op::Set, Fault::Hang);
    /// let writer = {
    ///     let store = store.clone();
    ///     tokio::spawn(async move { store.set(Key::plain("k"), Bytes::from_static(b"v"), None).await })
    /// };
    /// store.wait_for_calls(Op::Set, 1).await; // the write is held in the store
    /// assert!(!store.exists(Key::plain("k")).await.unwrap());
    /// store.clear_fault(Op::Set); // and goes through
    /// writer.await.unwrap().unwrap();
    /// assert!(store.exists(Key::plain("k")).await.unwrap());
    /// # }
    /// ```
    pub async fn wait_for_calls(&self, op: Op, n: u64) {
        let mut state = self.shared.state.subscribe();
        // The sender lives as long as `self`: waiting cannot fail.
        let _ = state.wait_for(|s| s.calls[op.index()] >= n).await;
    }

    fn arm(&self, ops: &[Op], fault: Fault, left: Option<u64>) {
        assert!(
            fault != Fault::Garbage || ops == [Op::Get],
            "Fault::Garbage corrupts what a read answers: inject it for Op::Get only"
        );
        let armed = match left {
            Some(0) => None,
            _ => Some(Armed { fault, left }),
        };
        self.change(ops, armed);
    }

    fn change(&self, ops: &[Op], armed: Option<Armed>) {
        self.shared.state.send_modify(|state| {
            for op in ops {
                state.armed[op.index()] = armed;
                state.changes[op.index()] += 1;
            }
        });
    }

    /// Counts a call of `op` and applies its fault, if any.
    async fn meet(&self, op: Op) -> Result<Passage, Error> {
        let i = op.index();
        let mut met = None;
        let mut seen = 0;
        self.shared.state.send_modify(|state| {
            state.calls[i] += 1;
            seen = state.changes[i];
            if let Some(armed) = state.armed[i].as_mut() {
                met = Some(armed.fault);
                if let Some(left) = armed.left.as_mut() {
                    *left -= 1;
                    if *left == 0 {
                        state.armed[i] = None;
                    }
                }
            }
        });
        let backend = self.name();
        match met {
            None => Ok(Passage::Inner),
            Some(Fault::Delay(delay)) => {
                tokio::time::sleep(delay).await;
                Ok(Passage::Inner)
            }
            Some(Fault::Error) => Err(Error::backend(
                backend,
                op.name(),
                std::io::Error::new(
                    std::io::ErrorKind::ConnectionRefused,
                    "connection refused (an injected fault)",
                ),
            )),
            Some(Fault::Garbage) => Ok(Passage::Garbage),
            Some(Fault::Hang) => {
                let mut state = self.shared.state.subscribe();
                let _ = state.wait_for(|s| s.changes[i] != seen).await;
                Ok(Passage::Inner)
            }
            Some(Fault::Unsupported) if op == Op::DeletePattern => {
                Err(Error::PatternNotSupported { backend })
            }
            Some(Fault::Unsupported) => Err(Error::Unsupported {
                backend,
                op: op.name(),
            }),
        }
    }
}

impl<B: Backend> fmt::Debug for Faulty<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.shared.state.borrow();
        let faults: Vec<_> = Op::ALL
            .iter()
            .filter_map(|&op| state.armed[op.index()].map(|armed| (op, armed)))
            .collect();
        f.debug_struct("Faulty")
            .field("inner", &self.shared.inner.name())
            .field("faults", &faults)
            .field("calls", &state.calls)
            .finish()
    }
}

#[async_trait]
impl<B: Backend> Backend for Faulty<B> {
    fn name(&self) -> &'static str {
        "faulty"
    }
    fn is_in_process(&self) -> bool {
        false
    }
    fn max_value_size(&self) -> Option<usize> {
        self.shared.inner.max_value_size()
    }
    async fn get(&self, key: Key<'_>) -> Result<Option<Bytes>, Error> {
        match self.meet(Op::Get).await? {
            Passage::Inner => self.shared.inner.get(key).await,
            Passage::Garbage => Ok(Some(Bytes::from_static(GARBAGE))),
        }
    }
    async fn set(&self, key: Key<'_>, value: Bytes, ttl: Option<Duration>) -> Result<(), Error> {
        self.meet(Op::Set).await?;
        self.shared.inner.set(key, value, ttl).await
    }
    async fn get_fenced(&self, key: Key<'_>) -> Result<(Option<Bytes>, Fence), Error> {
        match self.meet(Op::Get).await? {
            Passage::Inner => self.shared.inner.get_fenced(key).await,
            Passage::Garbage => Ok((Some(Bytes::from_static(GARBAGE)), Fence::None)),
        }
    }
    async fn set_fenced(
        &self,
        key: Key<'_>,
        value: Bytes,
        ttl: Option<Duration>,
        fence: &Fence,
    ) -> Result<bool, Error> {
        self.meet(Op::Set).await?;
        self.shared.inner.set_fenced(key, value, ttl, fence).await
    }
    async fn invalidate(&self, key: Key<'_>, window: Duration) -> Result<bool, Error> {
        self.meet(Op::Delete).await?;
        self.shared.inner.invalidate(key, window).await
    }
    async fn delete(&self, key: Key<'_>) -> Result<bool, Error> {
        self.meet(Op::Delete).await?;
        self.shared.inner.delete(key).await
    }
    async fn delete_pattern(&self, namespace: &str, pattern: &str) -> Result<u64, Error> {
        self.meet(Op::DeletePattern).await?;
        self.shared.inner.delete_pattern(namespace, pattern).await
    }
    async fn exists(&self, key: Key<'_>) -> Result<bool, Error> {
        self.meet(Op::Exists).await?;
        self.shared.inner.exists(key).await
    }
    async fn ttl(&self, key: Key<'_>) -> Result<Option<Duration>, Error> {
        self.meet(Op::Ttl).await?;
        self.shared.inner.ttl(key).await
    }
    async fn clear(&self, namespace: &str) -> Result<u64, Error> {
        self.meet(Op::Clear).await?;
        self.shared.inner.clear(namespace).await
    }
    async fn ping(&self) -> Result<(), Error> {
        self.meet(Op::Ping).await?;
        self.shared.inner.ping().await
    }
    async fn increment(
        &self,
        key: Key<'_>,
        delta: i64,
        ttl: Duration,
        peek: Option<Key<'_>>,
    ) -> Result<(u64, u64), Error> {
        self.meet(Op::Increment).await?;
        self.shared.inner.increment(key, delta, ttl, peek).await
    }
    /// Meets the faults of [`Op::Set`] (a lease is a conditional write).
    async fn lease(&self, key: Key<'_>, token: &[u8], ttl: Duration) -> Result<bool, Error> {
        self.meet(Op::Set).await?;
        self.shared.inner.lease(key, token, ttl).await
    }
    /// Meets the faults of [`Op::Delete`].
    async fn release(&self, key: Key<'_>, token: &[u8]) -> Result<(), Error> {
        self.meet(Op::Delete).await?;
        self.shared.inner.release(key, token).await
    }
}

/// A store in a `HashMap` behind a mutex: the whole [`Backend`] contract
/// (expiry, patterns, namespaces, counters) in a few lines, for tests.
///
/// Clones share the map. Expiry follows tokio's clock, so a test with a
/// paused clock moves entries past their TTL with `tokio::time::advance`.
/// It is named `"map"` and is in-process.
///
/// ```
/// use std::time::Duration;
/// use cache_core::{testing::MapStore, Cache};
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// let cache = Cache::builder(MapStore::default()).build();
/// cache.set("k", &1u8, Some(Duration::from_secs(10))).await.unwrap();
/// tokio::time::advance(Duration::from_secs(11)).await;
/// assert_eq!(cache.get::<u8>("k").await.unwrap(), None);
/// # }
/// ```
#[derive(Debug, Clone, Default)]
pub struct MapStore {
    entries: Arc<Mutex<HashMap<String, Stored>>>,
}

#[derive(Debug)]
struct Stored {
    value: Bytes,
    /// `None`: no expiry.
    expires_at: Option<Instant>,
}

impl MapStore {
    /// The map, without the entries that have expired.
    fn live(&self) -> MutexGuard<'_, HashMap<String, Stored>> {
        let mut map = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        map.retain(|_, stored| stored.expires_at.is_none_or(|at| at > now));
        map
    }

    /// Removes the live keys for which `doomed` holds; returns how many.
    fn remove_where(&self, doomed: impl Fn(&str) -> bool) -> u64 {
        let mut map = self.live();
        let before = map.len();
        map.retain(|key, _| !doomed(key));
        (before - map.len()) as u64
    }
}

/// The value of a counter (decimal digits), if `bytes` is one.
fn counter(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

#[async_trait]
impl Backend for MapStore {
    fn name(&self) -> &'static str {
        "map"
    }
    fn is_in_process(&self) -> bool {
        true
    }
    async fn get(&self, key: Key<'_>) -> Result<Option<Bytes>, Error> {
        Ok(self.get_fenced(key).await?.0)
    }
    async fn get_fenced(&self, key: Key<'_>) -> Result<(Option<Bytes>, Fence), Error> {
        Ok(match self.live().get(key.as_str()) {
            None => (None, Fence::Absent),
            Some(s) if is_tombstone(&s.value) => (None, Fence::Token(s.value.clone())),
            Some(s) => (Some(s.value.clone()), Fence::Token(s.value.clone())),
        })
    }
    async fn set_fenced(
        &self,
        key: Key<'_>,
        value: Bytes,
        ttl: Option<Duration>,
        fence: &Fence,
    ) -> Result<bool, Error> {
        let mut map = self.live();
        let holds = map.get(key.as_str()).map(|s| &s.value);
        let lands = match fence {
            Fence::None => true,
            Fence::Absent => holds.is_none(),
            Fence::Token(t) => holds == Some(t),
        };
        if lands {
            let expires_at = ttl.and_then(|ttl| Instant::now().checked_add(ttl));
            map.insert(key.as_str().to_owned(), Stored { value, expires_at });
        }
        Ok(lands)
    }
    async fn invalidate(&self, key: Key<'_>, window: Duration) -> Result<bool, Error> {
        let stored = Stored {
            value: tombstone(),
            expires_at: Instant::now().checked_add(window),
        };
        let old = self.live().insert(key.as_str().to_owned(), stored);
        Ok(old.is_some_and(|s| !is_tombstone(&s.value)))
    }
    async fn set(&self, key: Key<'_>, value: Bytes, ttl: Option<Duration>) -> Result<(), Error> {
        let expires_at = ttl.and_then(|ttl| Instant::now().checked_add(ttl));
        self.live()
            .insert(key.as_str().to_owned(), Stored { value, expires_at });
        Ok(())
    }
    async fn delete(&self, key: Key<'_>) -> Result<bool, Error> {
        Ok(self
            .live()
            .remove(key.as_str())
            .is_some_and(|s| !is_tombstone(&s.value)))
    }
    async fn delete_pattern(&self, namespace: &str, glob: &str) -> Result<u64, Error> {
        Ok(self.remove_where(|key| {
            key.strip_prefix(namespace)
                .is_some_and(|local| pattern::matches(glob, local))
        }))
    }
    async fn exists(&self, key: Key<'_>) -> Result<bool, Error> {
        Ok(self
            .live()
            .get(key.as_str())
            .is_some_and(|s| !is_tombstone(&s.value)))
    }
    async fn ttl(&self, key: Key<'_>) -> Result<Option<Duration>, Error> {
        let now = Instant::now();
        Ok(self
            .live()
            .get(key.as_str())
            .filter(|s| !is_tombstone(&s.value))
            .and_then(|s| s.expires_at)
            .map(|at| at.saturating_duration_since(now)))
    }
    async fn clear(&self, namespace: &str) -> Result<u64, Error> {
        Ok(self.remove_where(|key| key.starts_with(namespace)))
    }
    async fn ping(&self) -> Result<(), Error> {
        Ok(())
    }
    async fn lease(&self, key: Key<'_>, token: &[u8], ttl: Duration) -> Result<bool, Error> {
        let mut map = self.live();
        if map.contains_key(key.as_str()) {
            return Ok(false);
        }
        let stored = Stored {
            value: Bytes::copy_from_slice(token),
            expires_at: Instant::now().checked_add(ttl),
        };
        map.insert(key.as_str().to_owned(), stored);
        Ok(true)
    }
    async fn release(&self, key: Key<'_>, token: &[u8]) -> Result<(), Error> {
        let mut map = self.live();
        if map.get(key.as_str()).is_some_and(|s| s.value == token) {
            map.remove(key.as_str());
        }
        Ok(())
    }
    async fn increment(
        &self,
        key: Key<'_>,
        delta: i64,
        ttl: Duration,
        peek: Option<Key<'_>>,
    ) -> Result<(u64, u64), Error> {
        let refused = |why: &'static str| Error::backend("map", "increment", why);
        let mut map = self.live();
        let (next, expires_at) = match map.get(key.as_str()) {
            // A refund never creates a counter.
            None if delta <= 0 => (0, None),
            None => (delta.unsigned_abs(), Instant::now().checked_add(ttl)),
            Some(stored) => {
                let now = counter(&stored.value)
                    .ok_or_else(|| refused("the key holds a value that is not a counter"))?;
                let next = if delta < 0 {
                    now.saturating_sub(delta.unsigned_abs())
                } else {
                    now.checked_add(delta.unsigned_abs())
                        .ok_or_else(|| refused("the counter would overflow"))?
                };
                (next, stored.expires_at)
            }
        };
        if map.contains_key(key.as_str()) || delta > 0 {
            let value = Bytes::from(next.to_string());
            map.insert(key.as_str().to_owned(), Stored { value, expires_at });
        }
        let peeked = peek
            .and_then(|p| map.get(p.as_str()))
            .and_then(|s| counter(&s.value))
            .unwrap_or(0);
        Ok((next, peeked))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BreakerSettings, Cache};

    fn k(key: &str) -> Key<'_> {
        Key::plain(key)
    }

    fn v(bytes: &'static [u8]) -> Bytes {
        Bytes::from_static(bytes)
    }

    /// A cache over `store` with a 100 ms op timeout and no circuit breaker
    /// (every call reaches the store).
    fn unguarded(store: &Faulty<MapStore>) -> Cache {
        Cache::builder(store.clone())
            .op_timeout(Duration::from_millis(100))
            .breaker(BreakerSettings {
                threshold: 0,
                cooldown: Duration::ZERO,
            })
            .build()
    }

    #[tokio::test]
    async fn without_faults_every_call_reaches_the_inner_store_and_is_counted() {
        let store = Faulty::memory();
        store.set(k("a"), v(b"1"), None).await.unwrap();
        assert_eq!(store.get(k("a")).await.unwrap(), Some(v(b"1")));
        assert!(store.exists(k("a")).await.unwrap());
        assert_eq!(store.ttl(k("a")).await.unwrap(), None);
        assert_eq!(store.delete_pattern("", "a*").await.unwrap(), 1);
        store.set(k("b"), v(b"2"), None).await.unwrap();
        assert!(store.delete(k("b")).await.unwrap());
        assert_eq!(store.clear("").await.unwrap(), 0);
        store.ping().await.unwrap();
        let minute = Duration::from_secs(60);
        assert_eq!(
            store.increment(k("n"), 2, minute, None).await.unwrap(),
            (2, 0)
        );
        for op in Op::ALL {
            let expected = if op == Op::Set { 2 } else { 1 };
            assert_eq!(store.calls(op), expected, "{op:?}");
        }
        assert_eq!(store.total_calls(), 10);
        assert_eq!(store.name(), "faulty");
        assert!(!store.is_in_process(), "bounded by the op timeout");
        assert_eq!(store.max_value_size(), None);
    }

    #[tokio::test]
    async fn error_fails_every_call_of_its_operation_only_until_cleared() {
        let store = Faulty::memory();
        let other = store.clone();
        other.inject(Op::Get, Fault::Error);
        for _ in 0..3 {
            let err = store.get(k("a")).await.unwrap_err();
            assert!(err.is_store_failure(), "{err}");
            assert!(
                matches!(
                    err,
                    Error::Backend {
                        backend: "faulty",
                        op: "get",
                        ..
                    }
                ),
                "{err:?}"
            );
        }
        store.set(k("a"), v(b"1"), None).await.unwrap();
        other.clear_fault(Op::Get);
        assert_eq!(store.get(k("a")).await.unwrap(), Some(v(b"1")));
        assert_eq!(store.calls(Op::Get), 4, "faulted calls are counted too");
    }

    #[tokio::test]
    async fn every_operation_can_fail() {
        let store = Faulty::memory();
        store.inject_all(Fault::Error);
        let minute = Duration::from_secs(60);
        let results = [
            store.get(k("a")).await.map(drop),
            store.set(k("a"), v(b"1"), None).await,
            store.delete(k("a")).await.map(drop),
            store.delete_pattern("", "*").await.map(drop),
            store.exists(k("a")).await.map(drop),
            store.ttl(k("a")).await.map(drop),
            store.clear("").await.map(drop),
            store.ping().await,
            store.increment(k("n"), 1, minute, None).await.map(drop),
        ];
        for (op, result) in Op::ALL.into_iter().zip(results) {
            match result {
                Err(Error::Backend { op: named, .. }) => assert_eq!(named, op.name()),
                other => panic!("{op:?}: expected a store error, got {other:?}"),
            }
            assert_eq!(store.calls(op), 1, "{op:?}");
        }
        assert!(
            !store.inner().exists(k("a")).await.unwrap(),
            "a failed set writes nothing"
        );
    }

    #[tokio::test]
    async fn inject_next_applies_to_that_many_calls_then_the_store_answers() {
        let store = Faulty::memory();
        store.inject_next(Op::Ping, 2, Fault::Error);
        assert!(store.ping().await.is_err());
        assert!(store.ping().await.is_err());
        assert!(store.ping().await.is_ok());
        assert!(store.ping().await.is_ok());
        assert_eq!(store.calls(Op::Ping), 4);
        store.inject_next(Op::Ping, 0, Fault::Error);
        assert!(store.ping().await.is_ok(), "the next 0 calls: none");
        // A later injection replaces an unfinished one.
        store.inject_next(Op::Ping, 5, Fault::Error);
        store.inject_next(Op::Ping, 1, Fault::Unsupported);
        assert!(matches!(
            store.ping().await,
            Err(Error::Unsupported { op: "ping", .. })
        ));
        assert!(store.ping().await.is_ok());
    }

    #[tokio::test]
    async fn clear_faults_removes_every_fault_and_keeps_the_counters() {
        let store = Faulty::memory();
        store.inject_all(Fault::Error);
        store.inject(Op::Get, Fault::Garbage);
        assert!(store.ping().await.is_err());
        assert_eq!(store.get(k("a")).await.unwrap(), Some(v(GARBAGE)));
        store.clear_faults();
        assert!(store.ping().await.is_ok());
        assert_eq!(store.get(k("a")).await.unwrap(), None);
        assert_eq!((store.calls(Op::Ping), store.calls(Op::Get)), (2, 2));
        assert_eq!(
            format!("{store:?}"),
            "Faulty { inner: \"map\", faults: [], calls: [2, 0, 0, 0, 0, 0, 0, 2, 0] }"
        );
    }

    #[tokio::test]
    async fn garbage_is_rejected_by_the_codec_and_the_entry_deleted() {
        let store = Faulty::memory();
        let cache = unguarded(&store);
        cache.set("k", &1u32, None).await.unwrap();
        store.inject(Op::Get, Fault::Garbage);
        for codec_cache in [
            cache.clone(),
            Cache::builder(store.clone())
                .codec(crate::codec::Json)
                .build(),
        ] {
            let before = codec_cache.stats().errors;
            assert_eq!(codec_cache.get::<u32>("k").await.unwrap(), None);
            assert_eq!(
                codec_cache.stats().errors,
                before + 1,
                "counted as an error"
            );
        }
        assert!(
            !store.inner().exists(k("k")).await.unwrap(),
            "the undecodable entry was deleted through the inner store"
        );
        assert_eq!(
            cache
                .get_or_set("k", None, || async { 2u32 })
                .await
                .unwrap(),
            2
        );
        store.clear_fault(Op::Get);
        assert_eq!(cache.get::<u32>("k").await.unwrap(), Some(2));
    }

    #[test]
    #[should_panic(expected = "inject it for Op::Get only")]
    fn garbage_on_an_operation_without_bytes_is_refused() {
        Faulty::memory().inject(Op::Exists, Fault::Garbage);
    }

    #[test]
    #[should_panic(expected = "inject it for Op::Get only")]
    fn garbage_for_every_operation_is_refused() {
        Faulty::memory().inject_all(Fault::Garbage);
    }

    #[tokio::test]
    async fn unsupported_answers_what_a_store_without_the_operation_does() {
        let store = Faulty::memory();
        store.inject(Op::DeletePattern, Fault::Unsupported);
        store.inject(Op::Increment, Fault::Unsupported);
        assert!(matches!(
            store.delete_pattern("", "*").await,
            Err(Error::PatternNotSupported { backend: "faulty" })
        ));
        let err = store
            .increment(k("n"), 1, Duration::from_secs(1), None)
            .await
            .unwrap_err();
        assert!(matches!(
            err,
            Error::Unsupported {
                backend: "faulty",
                op: "increment"
            }
        ));
        assert!(!err.is_store_failure(), "not a failure of the store");
    }

    /// With tokio's clock paused, time moves only through timers: the measured
    /// durations are exact, not sleep-based guesses.
    #[tokio::test(start_paused = true)]
    async fn delay_holds_the_call_that_long_then_it_reaches_the_store() {
        let store = Faulty::memory();
        store.inject(Op::Set, Fault::Delay(Duration::from_millis(30)));
        let started = Instant::now();
        store.set(k("a"), v(b"1"), None).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_millis(30));
        assert_eq!(store.inner().get(k("a")).await.unwrap(), Some(v(b"1")));
        // Under the op timeout: the cache waits; over it: a timeout.
        let cache = unguarded(&store);
        let started = Instant::now();
        cache.set("b", &1u8, None).await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_millis(30));
        store.inject(Op::Get, Fault::Delay(Duration::from_millis(500)));
        let started = Instant::now();
        assert!(matches!(
            cache.get::<u8>("b").await,
            Err(Error::Timeout { op: "get", .. })
        ));
        assert_eq!(started.elapsed(), Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn hang_never_answers_and_the_op_timeout_bounds_it() {
        let store = Faulty::memory();
        store.inject(Op::Get, Fault::Hang);
        let hung = tokio::time::timeout(Duration::from_secs(3600), store.get(k("a"))).await;
        assert!(hung.is_err(), "no answer within an hour");
        let cache = unguarded(&store);
        let started = Instant::now();
        assert!(matches!(
            cache.get::<u8>("a").await,
            Err(Error::Timeout { op: "get", .. })
        ));
        assert_eq!(started.elapsed(), Duration::from_millis(100));
        assert_eq!(store.calls(Op::Get), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hung_call_goes_on_to_the_store_when_its_fault_changes() {
        let store = Faulty::memory();
        store.inject(Op::Set, Fault::Hang);
        store.inject_next(Op::Delete, 1, Fault::Hang);
        let spawn_set = |key: &'static str| {
            let store = store.clone();
            tokio::spawn(async move { store.set(k(key), v(b"1"), None).await })
        };
        let (first, second) = (spawn_set("a"), spawn_set("b"));
        store.wait_for_calls(Op::Set, 2).await;
        store.inner().set(k("c"), v(b"1"), None).await.unwrap();
        let deleter = {
            let store = store.clone();
            tokio::spawn(async move { store.delete(k("c")).await })
        };
        store.wait_for_calls(Op::Delete, 1).await;
        // The "next 1" hang was used up: a second delete goes through at once...
        assert!(!store.delete(k("missing")).await.unwrap());
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!first.is_finished() && !second.is_finished() && !deleter.is_finished());
        // ...but the call it holds waits until Delete's fault changes.
        store.clear_fault(Op::Delete);
        assert!(
            deleter.await.unwrap().unwrap(),
            "the held delete reached the store"
        );
        assert!(!first.is_finished(), "Set's fault has not changed");
        // Replacing a fault releases its held calls too.
        store.inject(Op::Set, Fault::Delay(Duration::from_millis(1)));
        first.await.unwrap().unwrap();
        second.await.unwrap().unwrap();
        assert!(store.inner().exists(k("a")).await.unwrap());
        assert!(store.inner().exists(k("b")).await.unwrap());
    }

    #[tokio::test(start_paused = true)]
    async fn faults_change_from_another_task_while_calls_run() {
        let store = Faulty::memory();
        let cache = unguarded(&store);
        let chaos = {
            let store = store.clone();
            tokio::spawn(async move {
                store.wait_for_calls(Op::Get, 1).await;
                store.inject(Op::Get, Fault::Error);
                store.wait_for_calls(Op::Get, 2).await;
                store.clear_faults();
            })
        };
        assert_eq!(cache.get::<u8>("k").await.unwrap(), None);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert!(cache.get::<u8>("k").await.is_err());
        chaos.await.unwrap();
        assert_eq!(cache.get::<u8>("k").await.unwrap(), None);
        assert_eq!(store.calls(Op::Get), 3);
    }

    #[tokio::test]
    async fn wait_for_calls_returns_at_once_when_they_were_made() {
        let store = Faulty::memory();
        store.wait_for_calls(Op::Ping, 0).await;
        store.ping().await.unwrap();
        store.wait_for_calls(Op::Ping, 1).await;
    }

    #[tokio::test(start_paused = true)]
    async fn map_store_keeps_the_backend_contract() {
        let store = MapStore::default();
        let minute = Duration::from_secs(60);
        store.set(k("app:a"), v(b"1"), Some(minute)).await.unwrap();
        store.set(k("app:ab"), v(b"2"), None).await.unwrap();
        store.set(k("app%3Aeu:a"), v(b"3"), None).await.unwrap();
        store.set(k("other:a"), v(b"4"), None).await.unwrap();
        assert_eq!(store.ttl(k("app:a")).await.unwrap(), Some(minute));
        assert_eq!(store.delete_pattern("app:", "a?").await.unwrap(), 1);
        assert_eq!(store.clear("app:").await.unwrap(), 1);
        assert!(
            store.exists(k("app%3Aeu:a")).await.unwrap(),
            "another namespace"
        );
        store.set(k("short"), v(b"5"), Some(minute)).await.unwrap();
        tokio::time::advance(minute).await;
        assert!(
            !store.exists(k("short")).await.unwrap(),
            "expired on tokio's clock"
        );
        assert_eq!(store.clear("").await.unwrap(), 2);
        // Counters: created with the TTL, kept by increments, refunds create nothing.
        let inc = |key: &'static str, delta: i64, peek: Option<&'static str>| {
            let store = store.clone();
            async move { store.increment(k(key), delta, minute, peek.map(k)).await }
        };
        assert_eq!(inc("n", -1, None).await.unwrap(), (0, 0));
        assert!(!store.exists(k("n")).await.unwrap());
        assert_eq!(inc("n", 2, None).await.unwrap(), (2, 0));
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(inc("n", 3, Some("m")).await.unwrap(), (5, 0));
        assert_eq!(inc("m", 1, Some("n")).await.unwrap(), (1, 5));
        assert_eq!(inc("n", -9, None).await.unwrap(), (0, 0));
        assert_eq!(
            store.ttl(k("n")).await.unwrap(),
            Some(Duration::from_secs(30))
        );
        store.set(k("text"), v(b"abc"), None).await.unwrap();
        assert!(inc("text", 1, None).await.is_err());
    }
}
