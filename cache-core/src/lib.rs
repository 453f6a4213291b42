//! Runtime of [cacheside](https://docs.rs/cacheside): everything the macros
//! call that can be a plain function, unit-tested without macros.
//!
//! Users depend on the `cacheside` facade, which re-exports what is public
//! here. The parts:
//!
//! * [`Cache`] / [`CacheBuilder`]: the handle, its provider API and [`Stats`];
//! * [`Backend`]: the trait a store implements (see [`NullBackend`] for the smallest one);
//! * [`codec`]: [`Codec`], [`MsgPack`](codec::MsgPack) (default), [`Json`](codec::Json), the value envelope;
//! * [`Config`]: environment variables;
//! * the registry: [`init`], [`register`], [`global`], [`named`], [`set_enabled`], [`is_enabled`];
//! * [`keys`] (how key values are encoded), [`pattern`] (globs) and [`hash`] (stable hashing);
//! * `testing` (feature `testing`): `Faulty`, a wrapper that injects store faults, for fail-open tests.
#![warn(missing_docs)]

mod backend;
mod cache;
pub mod codec;
mod config;
mod error;
mod flight;
mod guard;
pub mod hash;
pub mod keys;
mod null;
pub mod pattern;
mod pending;
mod redact;
mod registry;
#[doc(hidden)]
pub mod runtime;
pub mod shape;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use async_trait::async_trait;
pub use backend::{Backend, Key};
pub use bytes::Bytes;
pub use cache::{
    Cache, CacheBuilder, CacheNone, Outcome, Plain, Stats, DEFAULT_BULK_TIMEOUT,
    DEFAULT_MAX_VALUE_SIZE, DEFAULT_OP_TIMEOUT, DEFAULT_TTL,
};
pub use codec::Codec;
pub use config::DEFAULT_CONNECT_TIMEOUT;
pub use config::{BackendKind, Config};
pub use error::{BoxError, Error};
pub use guard::Breaker;
pub use null::NullBackend;
pub use redact::redact_url;
pub use registry::{
    auto_init_failures, global, init, invalidation_enabled, is_enabled, mode, named, register,
    set_enabled, set_mode, AutoInit, CacheMode,
};
pub use runtime::Entry;
