//! Single-flight: concurrent misses on one key in one process run the body once.
//!
//! The first caller to miss becomes the leader; callers that miss while it
//! runs wait for its result. The leader hands them the sealed bytes it is about
//! to store, so coalescing works even when the store itself is down. If the
//! leader produced nothing cacheable (an `Err`, a `None`) or was cancelled,
//! each waiting caller runs the body itself.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::watch;

/// What a leader hands to its followers: the sealed value, or nothing cacheable.
pub(crate) type Landing = Option<Bytes>;

#[derive(Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, watch::Receiver<Option<Landing>>>>,
}

pub(crate) enum Role<'a> {
    Leader(LeaderGuard<'a>),
    Follower(watch::Receiver<Option<Landing>>),
}

impl Flights {
    pub(crate) fn join(&self, key: &str) -> Role<'_> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(rx) = map.get(key) {
            return Role::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        map.insert(key.to_owned(), rx);
        Role::Leader(LeaderGuard {
            flights: self,
            key: key.to_owned(),
            tx: Arc::new(tx),
        })
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
    tx: Arc<watch::Sender<Option<Landing>>>,
}

impl LeaderGuard<'_> {
    /// Wakes every follower with the result.
    pub(crate) fn land(&self, landing: Landing) {
        self.tx.send_replace(Some(landing));
    }
}

impl Drop for LeaderGuard<'_> {
    fn drop(&mut self) {
        let mut map = self
            .flights
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        map.remove(&self.key);
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
}
