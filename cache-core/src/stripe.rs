//! Per-thread stripes: counters and read locks that threads working at the
//! same time do not fight over.
//!
//! Two cores that write one cache line (an atomic add, or the reader count
//! inside a read lock) pass the line back and forth, and on a hit path of
//! ~100 ns that costs more than the work. Here each thread has a stripe
//! (threads are numbered as they first touch one, modulo [`STRIPES`]); a
//! counter adds on its thread's stripe, a read lock takes only its thread's
//! stripe, and the rare writer takes them all.

use std::cell::{Cell, UnsafeCell};
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// How many stripes: threads past this many share one (still correct, and
/// they only contend with each other).
pub(crate) const STRIPES: usize = 8;

/// A value alone on its cache line (128 bytes: adjacent-line prefetch pairs 64-byte lines).
#[repr(align(128))]
#[derive(Default)]
pub(crate) struct Padded<T>(pub(crate) T);

/// This thread's stripe, in `0..STRIPES`.
#[inline]
pub(crate) fn index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    // A `const` thread-local without `Drop` is a plain load; `UNSET` until
    // the thread's first stripe.
    const UNSET: usize = usize::MAX;
    thread_local! {
        static INDEX: Cell<usize> = const { Cell::new(UNSET) };
    }
    INDEX.with(|i| match i.get() {
        UNSET => {
            let n = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
            i.set(n);
            n
        }
        n => n,
    })
}

/// A read-write lock whose readers lock only their own thread's stripe
/// (a "big-reader" lock): readers on different threads share no written
/// cache line; a writer locks every stripe, in order.
///
/// Poisoning is ignored, as with the rest of the tier: a panic inside a
/// write leaves the value as the panicking code left it.
pub(crate) struct StripedRwLock<T> {
    stripes: [Padded<RwLock<()>>; STRIPES],
    value: UnsafeCell<T>,
}

// SAFETY: the same bounds as `std::sync::RwLock<T>`'s. Shared between
// threads, the lock hands out `&T` to several threads at once (so `T: Sync`)
// and `&mut T` to one thread at a time, possibly not the one that made it
// (so `T: Send`). Exclusion: every `&T` lives inside a `ReadGuard`, which
// holds a read lock on one stripe; every `&mut T` lives inside a
// `WriteGuard`, which holds the write lock of every stripe. So while a
// `&mut T` exists no reader and no other writer holds any stripe, and
// while a `&T` exists no writer can hold all stripes.
unsafe impl<T: Send + Sync> Sync for StripedRwLock<T> {}

impl<T: Default> Default for StripedRwLock<T> {
    fn default() -> Self {
        StripedRwLock {
            stripes: std::array::from_fn(|_| Padded::default()),
            value: UnsafeCell::new(T::default()),
        }
    }
}

/// Shared access: holds this thread's stripe.
pub(crate) struct ReadGuard<'a, T> {
    _stripe: RwLockReadGuard<'a, ()>,
    value: &'a T,
}

/// Exclusive access: holds every stripe.
pub(crate) struct WriteGuard<'a, T> {
    _stripes: [RwLockWriteGuard<'a, ()>; STRIPES],
    value: &'a mut T,
}

impl<T> StripedRwLock<T> {
    /// Shared access, contending only with writers and with threads on this stripe.
    #[inline]
    pub(crate) fn read(&self) -> ReadGuard<'_, T> {
        let stripe = self.stripes[index()]
            .0
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        // SAFETY: a read lock on a stripe is held for the guard's life (see `Sync`).
        let value = unsafe { &*self.value.get() };
        ReadGuard {
            _stripe: stripe,
            value,
        }
    }

    /// Exclusive access: waits for every reader.
    pub(crate) fn write(&self) -> WriteGuard<'_, T> {
        // Always in index order, so two writers cannot deadlock.
        let stripes = std::array::from_fn(|i| {
            self.stripes[i]
                .0
                .write()
                .unwrap_or_else(PoisonError::into_inner)
        });
        // SAFETY: every stripe's write lock is held for the guard's life (see `Sync`).
        let value = unsafe { &mut *self.value.get() };
        WriteGuard {
            _stripes: stripes,
            value,
        }
    }
}

impl<T> Deref for ReadGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        self.value
    }
}

impl<T> Deref for WriteGuard<'_, T> {
    type Target = T;
    #[inline]
    fn deref(&self) -> &T {
        self.value
    }
}

impl<T> DerefMut for WriteGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        self.value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Writers keep two fields equal under the lock; readers on other
    /// threads (so on other stripes) must never see them differ.
    #[test]
    fn readers_on_every_stripe_never_see_a_write_half_done() {
        let lock = Arc::new(StripedRwLock::<(u64, Vec<u64>)>::default());
        let threads: Vec<_> = (0..(STRIPES + 2) as u64)
            .map(|t| {
                let lock = Arc::clone(&lock);
                std::thread::spawn(move || {
                    let mut seen = 0;
                    for i in 0..2_000u64 {
                        if (i + t) % 7 == 0 {
                            let mut w = lock.write();
                            w.0 += 1;
                            let n = w.0;
                            w.1.push(n);
                        } else {
                            let r = lock.read();
                            assert_eq!(r.0, r.1.len() as u64, "a reader saw a write half done");
                            assert_eq!(r.1.last().copied().unwrap_or(0), r.0);
                            seen = seen.max(r.0);
                        }
                    }
                    seen
                })
            })
            .collect();
        for t in threads {
            t.join().expect("no thread panicked");
        }
        let expected: u64 = (0..(STRIPES + 2) as u64)
            .map(|t| (0..2_000u64).filter(|i| (i + t) % 7 == 0).count() as u64)
            .sum();
        assert_eq!(lock.read().0, expected, "every write landed once");
    }

    #[test]
    fn stripes_are_stable_per_thread_and_in_range() {
        assert_eq!(index(), index());
        let other = std::thread::spawn(index).join().expect("thread");
        assert!(other < STRIPES && index() < STRIPES);
    }
}
