//! [`Report`]: how one read-through call was answered, for the caller's
//! span and metrics (the cache's own [`Stats`](super::Stats) count the same
//! events for the whole cache).

use std::time::Duration;

/// How a call was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Answer {
    /// The body ran (nothing usable was cached).
    #[default]
    Miss,
    /// A live entry answered.
    Hit,
    /// A stale entry answered (fail-safe: the body failed, or the store
    /// could not be read; or a soft timeout).
    Stale,
    /// Another caller's body answered (single-flight, in this process or across the fleet).
    Coalesced,
}

impl Answer {
    /// `hit`, `miss`, `stale`, `coalesced`: the span field and metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Answer::Miss => "miss",
            Answer::Hit => "hit",
            Answer::Stale => "stale",
            Answer::Coalesced => "coalesced",
        }
    }
}

/// Where a hit was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This process's local tier (or the in-process store).
    Local,
    /// The network store.
    Store,
}

impl Source {
    /// `local`, `store`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::Store => "store",
        }
    }
}

/// How one read-through call was answered.
#[doc(hidden)] // for the facade's macro runtime (cacheside::__private), not API
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Report {
    /// Hit, miss, stale or coalesced.
    pub answer: Answer,
    /// Where a hit (or a stale answer) was read.
    pub source: Option<Source>,
    /// Time spent reading the network store.
    pub store: Option<Duration>,
    /// Time the body took, when it ran.
    pub body: Option<Duration>,
    /// How old the value served from the cache was (since it was stored;
    /// past the TTL for a stale one), when the call asked for it
    /// ([`Policy::observe`](super::Policy::observe)) and the entry tells.
    pub age: Option<Duration>,
    /// The store failed during the call (it was answered anyway).
    pub store_error: bool,
}

impl Report {
    pub(super) fn answered(self, answer: Answer, source: Option<Source>) -> Report {
        Report {
            answer,
            source,
            ..self
        }
    }
}
