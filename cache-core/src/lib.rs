//! The core of [cacheside](https://docs.rs/cacheside): the cache handle and
//! everything under it that does not depend on a particular store.
//!
//! Users depend on the `cacheside` facade, which re-exports what is public
//! here; the facade also holds what needs the stores (configuration from
//! the environment, the registry of caches, the runtime the macros call).
//! The parts:
//!
//! * [`Cache`] / [`CacheBuilder`]: the handle, its provider API and [`Stats`];
//!   [`Outcome`]: which part of a return value is cached;
//! * [`Backend`]: the trait a store implements (see [`NullBackend`] for the smallest one);
//! * [`codec`]: [`Codec`], [`MsgPack`](codec::MsgPack) (default), [`Json`](codec::Json),
//!   `Bincode` (feature `bincode`), the value envelope and its compression (feature `compression`);
//!   [`shape`]: the type fingerprints the envelope carries;
//! * [`BreakerSettings`] and [`OncePerBurst`]: keeping a failing store cheap and its logs short;
//! * [`keys`] (how key values are encoded), [`pattern`] (globs), [`hash`] (stable hashing);
//! * [`env`](mod@env): the rules for reading configuration variables;
//! * [`redact_url`]: credentials out of anything shown;
//! * `testing` (feature `testing`): `Faulty`, a wrapper that injects store faults, for fail-open tests.
// docs.rs (nightly, `--cfg docsrs`): each feature-gated item shows the feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

pub mod backend;
pub mod backplane;
mod cache;
mod clock;
pub mod codec;
pub mod env;
mod error;
mod flight;
mod guard;
pub mod hash;
pub mod keys;
pub mod local;
mod null;
pub mod pattern;
mod pending;
mod redact;
pub mod shape;
mod stripe;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use async_trait::async_trait;
pub use backend::{Backend, Fence, Key};
pub use bytes::Bytes;
pub use cache::{
    report, Cache, CacheBuilder, Counter, FailSafe, NoneCached, Outcome, Plain, Policy, Refresh,
    RefreshGuard, Report, Served, Stats, TierUse, DEFAULT_BULK_TIMEOUT, DEFAULT_FENCE_WINDOW,
    DEFAULT_MAX_VALUE_SIZE, DEFAULT_OP_TIMEOUT, DEFAULT_TTL,
};
pub use codec::Codec;
pub use error::{BoxError, Error};
pub use guard::{BreakerSettings, OncePerBurst};
pub use local::{LocalSettings, SharedTier, Typed};
pub use null::NullBackend;
pub use redact::redact_url;
