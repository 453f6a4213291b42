//! Invalidations the store did not take: kept, and delivered when it answers again.
//!
//! A delete that fails (the circuit is open, the store timed out or errored)
//! would otherwise be lost: after the cool-down the store serves the old value.
//! The cache keeps such deletes here (deduplicated, bounded), treats every key
//! they cover as a miss without reading the store, and delivers them as soon
//! as the store answers again. When more than [`MAX_PENDING`] distinct targets
//! pile up, they collapse into one `clear()` of the namespace: wider, but
//! nothing is lost (and that is logged as an error once and counted).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

/// Distinct keys and patterns kept before they collapse into one clear.
pub(crate) const MAX_PENDING: usize = 1024;

/// What is waiting to be delivered. Each target keeps the number of the
/// latest push that named it, so that a delivery removes only what it sent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Batch {
    /// Full store keys.
    pub keys: BTreeMap<String, u64>,
    /// Globs over the local part of keys.
    pub patterns: BTreeMap<String, u64>,
    /// The whole namespace (with its push number).
    pub clear: Option<u64>,
    /// Stored tag names (`{ns}%tag:{tag}`): entries carrying one are dead.
    pub tags: BTreeMap<String, u64>,
    next: u64,
}

impl Batch {
    fn len(&self) -> usize {
        self.keys.len() + self.patterns.len() + self.tags.len()
    }

    fn is_empty(&self) -> bool {
        self.clear.is_none()
            && self.keys.is_empty()
            && self.patterns.is_empty()
            && self.tags.is_empty()
    }

    fn collapse(&mut self) {
        self.keys.clear();
        self.patterns.clear();
        self.tags.clear();
    }
}

/// What [`Pending::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Kept (or already kept).
    Kept,
    /// The queue was full: everything collapsed into a clear of the namespace.
    Collapsed,
}

#[derive(Debug, Default)]
pub(crate) struct Pending {
    batch: Mutex<Batch>,
    /// Fast check for the read path: false means "nothing pending".
    any: AtomicBool,
    /// A delivery is running (at most one at a time).
    delivering: AtomicBool,
}

/// One invalidation target.
pub(crate) enum Target<'a> {
    Key(&'a str),
    Pattern(&'a str),
    Clear,
    /// A stored tag name.
    Tag(&'a str),
}

impl Pending {
    pub(crate) fn push(&self, target: Target<'_>) -> Pushed {
        let mut batch = self.batch.lock().unwrap_or_else(PoisonError::into_inner);
        batch.next += 1;
        let n = batch.next;
        let mut pushed = Pushed::Kept;
        match target {
            Target::Clear => batch.clear = Some(n),
            _ if batch.clear.is_some() => batch.clear = Some(n),
            Target::Key(k) => {
                batch.keys.insert(k.to_owned(), n);
            }
            Target::Pattern(p) => {
                batch.patterns.insert(p.to_owned(), n);
            }
            Target::Tag(t) => {
                batch.tags.insert(t.to_owned(), n);
            }
        }
        if batch.len() > MAX_PENDING {
            pushed = Pushed::Collapsed;
            batch.clear = Some(n);
        }
        if batch.clear.is_some() {
            batch.collapse();
        }
        self.any.store(true, Ordering::Release);
        pushed
    }

    /// True when nothing waits (one atomic load: the read path's check).
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        !self.any.load(Ordering::Acquire)
    }

    /// True when `full` (a full key whose local part starts at `ns_len`) is
    /// covered by something waiting: it must not be read from the store.
    /// True when a kept tag invalidation covers one of `tags` (stored names).
    pub(crate) fn covers_tags(&self, tags: &[String]) -> bool {
        if self.is_empty() {
            return false;
        }
        let batch = self.batch.lock().unwrap_or_else(PoisonError::into_inner);
        batch.clear.is_some() || tags.iter().any(|t| batch.tags.contains_key(t))
    }

    pub(crate) fn covers(&self, full: &str, ns_len: usize) -> bool {
        if self.is_empty() {
            return false;
        }
        let batch = self.batch.lock().unwrap_or_else(PoisonError::into_inner);
        batch.clear.is_some()
            || batch.keys.contains_key(full)
            || full.get(ns_len..).is_some_and(|local| {
                batch
                    .patterns
                    .keys()
                    .any(|p| crate::pattern::matches(p, local))
            })
    }

    /// The number of the latest push: an operation that reads it before it
    /// is sent and then succeeds supersedes what was pushed up to it.
    pub(crate) fn seq(&self) -> u64 {
        if self.is_empty() {
            return u64::MAX; // nothing to supersede; never compared
        }
        self.batch
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .next
    }

    /// A store operation that started after push number `upto` succeeded:
    /// what it covers no longer needs delivering. `Key` (a delete, or a write
    /// of a fresh value) covers that key; `Pattern` that pattern and the keys
    /// it matches; `Clear` everything. `ns_len` is the namespace's length in
    /// the full keys.
    pub(crate) fn superseded(&self, done: Target<'_>, upto: u64, ns_len: usize) {
        if self.is_empty() || upto == u64::MAX {
            return;
        }
        let mut batch = self.batch.lock().unwrap_or_else(PoisonError::into_inner);
        match done {
            Target::Key(k) => {
                if batch.keys.get(k).is_some_and(|n| *n <= upto) {
                    batch.keys.remove(k);
                }
            }
            Target::Pattern(p) => {
                batch.patterns.retain(|q, n| !(q == p && *n <= upto));
                batch.keys.retain(|k, n| {
                    !(*n <= upto
                        && k.get(ns_len..)
                            .is_some_and(|local| crate::pattern::matches(p, local)))
                });
            }
            Target::Clear => {
                if batch.clear.is_some_and(|n| n <= upto) {
                    batch.clear = None;
                }
                batch.keys.retain(|_, n| *n > upto);
                batch.patterns.retain(|_, n| *n > upto);
                batch.tags.retain(|_, n| *n > upto);
            }
            Target::Tag(t) => {
                if batch.tags.get(t).is_some_and(|n| *n <= upto) {
                    batch.tags.remove(t);
                }
            }
        }
        if batch.is_empty() && !self.delivering.load(Ordering::Acquire) {
            self.any.store(false, Ordering::Release);
        }
    }

    /// True while `target` still waits (a delivery skips what was superseded
    /// after it took its batch).
    pub(crate) fn holds(&self, target: &Target<'_>) -> bool {
        let batch = self.batch.lock().unwrap_or_else(PoisonError::into_inner);
        match target {
            Target::Key(k) => batch.keys.contains_key(*k),
            Target::Pattern(p) => batch.patterns.contains_key(*p),
            Target::Clear => batch.clear.is_some(),
            Target::Tag(t) => batch.tags.contains_key(*t),
        }
    }

    /// A copy of what waits, for delivery, unless another delivery runs or
    /// nothing waits. The targets stay pending (reads keep missing them)
    /// until [`delivered`](Pending::delivered) removes them.
    pub(crate) fn take(&self) -> Option<Batch> {
        if self.is_empty() || self.delivering.swap(true, Ordering::AcqRel) {
            return None;
        }
        let batch = self.batch.lock().unwrap_or_else(PoisonError::into_inner);
        if batch.is_empty() {
            self.delivering.store(false, Ordering::Release);
            return None;
        }
        Some(batch.clone())
    }

    /// Ends a delivery: removes what `sent` delivered, unless it was pushed
    /// again since (a newer invalidation of the same target must still go out).
    pub(crate) fn delivered(&self, sent: &Batch) {
        let mut batch = self.batch.lock().unwrap_or_else(PoisonError::into_inner);
        if let (Some(done), Some(now)) = (sent.clear, batch.clear) {
            if now <= done {
                batch.clear = None;
            }
        }
        for (k, done) in &sent.keys {
            if batch.keys.get(k).is_some_and(|now| now <= done) {
                batch.keys.remove(k);
            }
        }
        for (p, done) in &sent.patterns {
            if batch.patterns.get(p).is_some_and(|now| now <= done) {
                batch.patterns.remove(p);
            }
        }
        for (t, done) in &sent.tags {
            if batch.tags.get(t).is_some_and(|now| now <= done) {
                batch.tags.remove(t);
            }
        }
        self.any.store(!batch.is_empty(), Ordering::Release);
        self.delivering.store(false, Ordering::Release);
    }

    /// Ends a delivery that could not finish: everything stays pending.
    pub(crate) fn failed(&self) {
        self.delivering.store(false, Ordering::Release);
    }

    /// The number of targets waiting (a clear counts one).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let batch = self.batch.lock().unwrap_or_else(PoisonError::into_inner);
        batch.len() + usize::from(batch.clear.is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_deduplicated_and_cover_what_they_name() {
        let p = Pending::default();
        assert!(p.is_empty());
        assert!(!p.covers("ns:a", 3));
        p.push(Target::Key("ns:a"));
        p.push(Target::Key("ns:a"));
        p.push(Target::Pattern("page:*"));
        assert_eq!(p.len(), 2);
        assert!(p.covers("ns:a", 3));
        assert!(p.covers("ns:page:2", 3));
        assert!(!p.covers("ns:b", 3));
    }

    #[test]
    fn overflow_collapses_into_a_clear_that_covers_everything() {
        let p = Pending::default();
        for i in 0..MAX_PENDING {
            assert_eq!(p.push(Target::Key(&format!("k{i}"))), Pushed::Kept);
        }
        assert_eq!(p.push(Target::Key("one more")), Pushed::Collapsed);
        assert_eq!(p.len(), 1);
        assert!(p.covers("anything", 0));
    }

    #[test]
    fn a_later_successful_operation_supersedes_what_it_covers() {
        let p = Pending::default();
        p.push(Target::Key("ns:a"));
        p.push(Target::Key("ns:page:1"));
        p.push(Target::Pattern("page:*"));
        let upto = p.seq();
        p.push(Target::Key("ns:b")); // pushed after the operation started
        p.superseded(Target::Key("ns:a"), upto, 3);
        assert!(!p.covers("ns:a", 3));
        p.superseded(Target::Pattern("page:*"), upto, 3);
        assert!(!p.covers("ns:page:1", 3));
        assert!(p.covers("ns:b", 3));
        p.superseded(Target::Clear, upto, 3);
        assert!(p.covers("ns:b", 3), "a push after the clear started stays");
        p.superseded(Target::Clear, p.seq(), 3);
        assert!(p.is_empty());
        assert!(!p.holds(&Target::Key("ns:b")) && !p.holds(&Target::Clear));
    }

    #[test]
    fn a_delivery_removes_only_what_it_sent_and_one_runs_at_a_time() {
        let p = Pending::default();
        p.push(Target::Key("a"));
        p.push(Target::Key("b"));
        let batch = p.take().expect("something to deliver");
        assert!(p.take().is_none(), "one delivery at a time");
        assert!(p.covers("a", 0), "still covered while delivering");
        // Pushed again while the delivery ran: a newer delete of `b`.
        p.push(Target::Key("b"));
        p.push(Target::Key("c"));
        p.delivered(&batch);
        assert!(!p.covers("a", 0));
        assert!(p.covers("b", 0), "the newer delete of b must still go out");
        assert!(p.covers("c", 0));
        let again = p.take().expect("b and c wait");
        assert_eq!(again.keys.len(), 2);
        p.failed();
        assert_eq!(p.len(), 2, "a failed delivery keeps everything");
        let last = p.take().expect("still there");
        p.delivered(&last);
        assert!(p.is_empty());
    }
}
