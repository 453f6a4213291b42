//! Single-flight: concurrent misses on one key in one process run the body once.
//!
//! The first caller to miss becomes the leader; callers that miss while it
//! runs wait for its result. The leader hands them the sealed bytes it is about
//! to store, so coalescing works even when the store itself is down. If the
//! leader produced nothing cacheable (an `Err`, a `None`) or was cancelled,
//! each waiting caller runs the body itself.
//!
//! An invalidation of a key (delete, pattern, clear) marks its flight stale:
//! callers that arrive afterwards start a new flight instead of joining one
//! whose body may have read the data before the mutation, and the stale
//! leader does not write its value to the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::watch;

/// What a leader hands to its followers: the sealed value, or nothing cacheable.
pub(crate) type Landing = Option<Bytes>;

struct Flight {
    rx: watch::Receiver<Option<Landing>>,
    stale: Arc<AtomicBool>,
}

#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, Flight>>,
    /// Bumped by every invalidation: a caller that computes a value outside
    /// a flight (a follower whose leader failed) compares it before and
    /// after, and does not keep a value an invalidation may have outdated.
    epoch: AtomicU64,
}

pub(crate) enum Role<'a> {
    Leader(LeaderGuard<'a>),
    Follower(watch::Receiver<Option<Landing>>),
}

impl Flights {
    pub(crate) fn join(&self, key: &str) -> Role<'_> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(flight) = map.get(key) {
            return Role::Follower(flight.rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        let stale = Arc::new(AtomicBool::new(false));
        map.insert(
            key.to_owned(),
            Flight {
                rx,
                stale: Arc::clone(&stale),
            },
        );
        Role::Leader(LeaderGuard {
            flights: self,
            key: key.to_owned(),
            tx,
            stale,
        })
    }

    /// Marks the flights whose key satisfies `pred` stale and forgets them.
    pub(crate) fn invalidate_where(&self, pred: impl Fn(&str) -> bool) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|key, flight| {
            if pred(key) {
                flight.stale.store(true, Ordering::Release);
                false
            } else {
                true
            }
        });
    }

    /// The number of invalidations so far (see the field).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// Held by the leader; removes the flight when dropped (also on cancellation).
pub(crate) struct LeaderGuard<'a> {
    flights: &'a Flights,
    key: String,
    tx: watch::Sender<Option<Landing>>,
    stale: Arc<AtomicBool>,
}

impl LeaderGuard<'_> {
    /// Wakes every follower with the result.
    pub(crate) fn land(&self, landing: Landing) {
        self.tx.send_replace(Some(landing));
    }

    /// True when the key was invalidated while the body ran: do not store.
    pub(crate) fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Acquire)
    }
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        let mut map = self
            .flights
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Only our own flight: after an invalidation a newer one may own the key.
        if map
            .get(&self.key)
            .is_some_and(|f| Arc::ptr_eq(&f.stale, &self.stale))
        {
            map.remove(&self.key);
        }
        // Dropping the sender wakes followers that still wait (cancelled leader).
    }
}

/// Waits for the leader: `Some(bytes)` to decode, or `None` to run the body yourself.
pub(crate) async fn follow(mut rx: watch::Receiver<Option<Landing>>) -> Option<Bytes> {
    match rx.wait_for(Option::is_some).await {
        Ok(landing) => landing.clone().flatten(),
        Err(_) => None, // leader cancelled before landing
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_the_leaders_bytes_and_map_empties() {
        let flights = Flights::default();
        let Role::Leader(guard) = flights.join("k") else {
            panic!("first caller must lead")
        };
        let Role::Follower(rx) = flights.join("k") else {
            panic!("second caller must follow")
        };
        let waiter = tokio::spawn(follow(rx));
        guard.land(Some(Bytes::from_static(b"v")));
        drop(guard);
        assert_eq!(waiter.await.unwrap(), Some(Bytes::from_static(b"v")));
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test]
    async fn cancelled_leader_releases_followers_empty_handed() {
        let flights = Flights::default();
        let guard = match flights.join("k") {
            Role::Leader(g) => g,
            Role::Follower(_) => panic!("first caller must lead"),
        };
        let rx = match flights.join("k") {
            Role::Follower(rx) => rx,
            Role::Leader(_) => panic!("second caller must follow"),
        };
        drop(guard);
        assert_eq!(follow(rx).await, None);
        assert!(matches!(flights.join("k"), Role::Leader(_)));
    }

    #[test]
    fn an_invalidated_flight_is_stale_and_later_callers_lead_anew() {
        let flights = Flights::default();
        let Role::Leader(old) = flights.join("k") else {
            panic!("first caller must lead")
        };
        flights.invalidate_where(|k| k == "k");
        assert!(old.is_stale());
        let Role::Leader(new) = flights.join("k") else {
            panic!("after an invalidation a caller must not join the stale flight")
        };
        assert!(!new.is_stale());
        drop(old); // must not remove the new flight
        assert!(matches!(flights.join("k"), Role::Follower(_)));
        drop(new);
        assert_eq!(flights.in_flight(), 0);
    }
}
