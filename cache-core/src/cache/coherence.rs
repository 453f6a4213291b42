//! Coherence across processes: this cache's invalidations go out on the
//! backplane; the other processes' come in and drop entries from the local
//! tier (and mark misses in flight stale, like a local invalidation).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use super::stats::bump;
use super::{Cache, Inner};
use crate::backplane::{BackplaneEvents, Invalidation, Message};
use crate::local::TierCounters;

/// What the backplane reports to: the cache it was given for (weakly: the
/// backplane's task must not keep a dropped cache alive).
struct Events {
    inner: Weak<Inner>,
    down: AtomicBool,
}

impl BackplaneEvents for Events {
    fn message(&self, payload: &[u8]) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        match Message::decode(payload) {
            Some(m) if m.origin == inner.origin => {}
            Some(m) => apply(&inner, m.what),
            None => {
                // Another version or garbage on our channel: it may have
                // meant an invalidation; only an empty tier is sure to be right.
                bump(&inner.counters.backplane_failures);
                if let Some(tier) = inner.tier.any() {
                    tier.flush();
                }
                if let Some(suppressed) = inner.warn.should_log() {
                    tracing::warn!(
                        backend = inner.backend.name(),
                        suppressed,
                        "unreadable backplane message (another cacheside version on the channel?); local tier flushed"
                    );
                }
            }
        }
    }

    fn disconnected(&self) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        if !self.down.swap(true, Ordering::AcqRel) {
            bump(&inner.counters.backplane_disconnects);
            tracing::warn!(
                backend = inner.backend.name(),
                "cache backplane lost: invalidations from other processes are not received; local entries live at most their local TTL, and the local tier is flushed when it comes back"
            );
        }
    }

    fn connected(&self) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        let was_down = self.down.swap(false, Ordering::AcqRel);
        // Also on the first connect: entries kept before it may predate an
        // invalidation that was never received.
        if let Some(tier) = inner.tier.any() {
            tier.flush();
        }
        // After the flush: a cache that waited for this starts with nothing to refuse.
        inner.backplane_up.send_replace(true);
        if was_down {
            tracing::info!(
                backend = inner.backend.name(),
                "cache backplane back; local tier flushed"
            );
        }
    }
}

/// An invalidation from another process: the two halves of a local one
/// ([`Cache::begin_invalidation`], then the tier part of [`Cache::spread`]).
fn apply(inner: &Inner, what: Invalidation) {
    // A tag covers entries by their tags, which flights do not know: all go stale.
    let tag = matches!(what, Invalidation::Tag(_));
    inner.flights.invalidate_where(|k| tag || what.covers(k));
    if let Some(tier) = inner.tier.any() {
        tier.invalidate(what);
    }
}

impl Cache {
    /// Subscribes to the backplane now when a runtime is there to run it.
    pub(super) fn subscribe_if_in_runtime(&self) {
        if tokio::runtime::Handle::try_current().is_ok() {
            self.ensure_subscribed();
        }
    }

    /// Subscribes to the backplane once (call from async code only).
    #[inline]
    pub(super) fn ensure_subscribed(&self) {
        if let Some(backplane) = &self.inner.backplane {
            self.inner.subscribed.call_once(|| {
                backplane.subscribe(Arc::new(Events {
                    inner: Arc::downgrade(&self.inner),
                    down: AtomicBool::new(false),
                }));
            });
        }
    }

    /// The start of every invalidation made here: marks this cache's fills
    /// in flight that `what` covers stale. Over the in-process store, whose
    /// entries the tier holds, that tier takes the whole invalidation: the
    /// answer is how many live entries it removed (`None`: a network store,
    /// to be invalidated next, then [`spread`](Self::spread)).
    pub(super) fn begin_invalidation(&self, what: &Invalidation) -> Option<u64> {
        // A tag covers entries by their tags, which flights do not know: all go stale.
        let tag = matches!(what, Invalidation::Tag(_));
        self.inner
            .flights
            .invalidate_where(|k| tag || what.covers(k));
        self.tier_store().map(|t| t.invalidate(what.clone()))
    }

    /// Applies an invalidation of a network store, made here, to the local
    /// tier in front of it and publishes it to the other processes. Called
    /// after the store took it (or failed to): a process, this one included,
    /// that drops its copy before the store changed could read the old
    /// value back and keep it.
    pub(super) async fn spread(&self, what: Invalidation) {
        let inner = &*self.inner;
        if let Some(tier) = inner.tier.any() {
            tier.invalidate(what.clone());
        }
        let Some(backplane) = &inner.backplane else {
            return;
        };
        self.ensure_subscribed();
        let message = Message {
            origin: inner.origin,
            what,
        }
        .encode();
        let sent = tokio::time::timeout(inner.gate.op_timeout(), backplane.publish(&message)).await;
        let error = match sent {
            Ok(Ok(())) => return,
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {:?}", inner.gate.op_timeout()),
        };
        bump(&inner.counters.backplane_failures);
        if let Some(suppressed) = inner.warn.should_log() {
            tracing::warn!(backplane = backplane.name(), %error, suppressed, "cache invalidation not published: other processes keep their local copies until their local TTL ends or their backplane reconnects");
        }
    }

    /// Waits until the backplane has subscribed once (at most `limit`);
    /// true when it has, or when the cache has no backplane. `connect`
    /// calls it at startup, so that the local tier starts coherent.
    pub async fn backplane_ready(&self, limit: std::time::Duration) -> bool {
        if self.inner.backplane.is_none() {
            return true;
        }
        self.ensure_subscribed();
        let mut up = self.inner.backplane_up.subscribe();
        let waited =
            tokio::time::timeout(limit, async { up.wait_for(|up| *up).await.is_ok() }).await;
        waited.unwrap_or(false)
    }

    pub(super) fn tier_counter(&self, pick: impl Fn(&TierCounters) -> &AtomicU64) -> u64 {
        self.inner
            .tier
            .any()
            .map_or(0, |t| pick(&t.counters).load(Ordering::Relaxed))
    }
}
