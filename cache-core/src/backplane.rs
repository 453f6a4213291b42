//! The backplane: how one process tells the others which entries of their
//! local tiers (see [`crate::local`]) to drop.
//!
//! A [`Backplane`] moves opaque messages between the processes that share a
//! store; [`Message`] is what cacheside sends over it. The Redis backplane
//! (`cacheside::backends::RedisBackplane`, pub/sub) is the built-in one.

use std::sync::Arc;

use async_trait::async_trait;

use crate::Error;

/// What the processes sharing a store send each other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invalidation {
    /// One full store key (namespace included).
    Key(String),
    /// Every key under `namespace` (with its `:`; `""` for none) whose local part matches `glob`.
    Pattern {
        /// The namespace prefix, separator included.
        namespace: String,
        /// The glob over the local part (see [`crate::pattern`]).
        glob: String,
    },
    /// Every key under `namespace` (`""`: every key).
    Clear {
        /// The namespace prefix, separator included.
        namespace: String,
    },
    /// Every entry carrying this tag (as stored: `{namespace}%tag:{tag}`).
    Tag(String),
}

impl Invalidation {
    /// True when this invalidation removes the entry under the full key `key`.
    ///
    /// ```
    /// use cache_core::backplane::Invalidation;
    /// let p = Invalidation::Pattern { namespace: "app:".into(), glob: "user:*".into() };
    /// assert!(p.covers("app:user:7"));
    /// assert!(!p.covers("other:user:7"));
    /// assert!(Invalidation::Clear { namespace: String::new() }.covers("anything"));
    /// ```
    pub fn covers(&self, key: &str) -> bool {
        match self {
            Invalidation::Key(k) => k == key,
            Invalidation::Pattern { namespace, glob } => key
                .strip_prefix(namespace.as_str())
                .is_some_and(|local| crate::pattern::matches(glob, local)),
            Invalidation::Clear { namespace } => key.starts_with(namespace.as_str()),
            // By the entry's tags, not its key: see `covers_tagged`.
            Invalidation::Tag(_) => false,
        }
    }

    /// Whether this invalidation removes an entry under `key` that carries
    /// `tags` (stored tag names, as [`Invalidation::Tag`] holds them).
    ///
    /// ```
    /// use cache_core::backplane::Invalidation;
    /// let t = Invalidation::Tag("app:%tag:user:7".into());
    /// assert!(t.covers_tagged("app:profile:7", &["app:%tag:user:7".to_owned()]));
    /// assert!(!t.covers("app:profile:7"));
    /// ```
    pub fn covers_tagged(&self, key: &str, tags: &[String]) -> bool {
        match self {
            Invalidation::Tag(tag) => tags.iter().any(|t| t == tag),
            other => other.covers(key),
        }
    }
}

/// One backplane message: who sent it and what it invalidates.
///
/// ```
/// use cache_core::backplane::{Invalidation, Message};
/// let m = Message { origin: 7, what: Invalidation::Key("app:widget:7".into()) };
/// assert_eq!(Message::decode(&m.encode()), Some(m));
/// assert_eq!(Message::decode(b"garbage"), None);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The sending cache's random id: a cache ignores its own messages.
    pub origin: u64,
    /// What to drop.
    pub what: Invalidation,
}

const VERSION: &str = "cs1";

impl Message {
    /// `cs1 {origin:016x} K {key}` / `… P {ns-len} {ns}{glob}` / `… C {ns}`.
    pub fn encode(&self) -> Vec<u8> {
        let head = format!("{VERSION} {:016x} ", self.origin);
        let body = match &self.what {
            Invalidation::Key(k) => format!("K {k}"),
            Invalidation::Pattern { namespace, glob } => {
                format!("P {} {namespace}{glob}", namespace.len())
            }
            Invalidation::Clear { namespace } => format!("C {namespace}"),
            Invalidation::Tag(tag) => format!("T {tag}"),
        };
        let mut out = head.into_bytes();
        out.extend_from_slice(body.as_bytes());
        out
    }

    /// The message in `bytes`, or `None` when it is not one (another
    /// version, garbage): the receiver then flushes its tier, to be safe.
    pub fn decode(bytes: &[u8]) -> Option<Message> {
        let text = std::str::from_utf8(bytes).ok()?;
        let rest = text.strip_prefix(VERSION)?.strip_prefix(' ')?;
        let (origin, rest) = rest.split_once(' ')?;
        if origin.len() != 16 {
            return None;
        }
        let origin = u64::from_str_radix(origin, 16).ok()?;
        let (tag, rest) = rest.split_once(' ')?;
        let what = match tag {
            "K" => Invalidation::Key(rest.to_owned()),
            "C" => Invalidation::Clear {
                namespace: rest.to_owned(),
            },
            "T" => Invalidation::Tag(rest.to_owned()),
            "P" => {
                let (len, rest) = rest.split_once(' ')?;
                let len: usize = len.parse().ok()?;
                if !rest.is_char_boundary(len) {
                    return None;
                }
                let (namespace, glob) = rest.split_at(len);
                Invalidation::Pattern {
                    namespace: namespace.to_owned(),
                    glob: glob.to_owned(),
                }
            }
            _ => return None,
        };
        Some(Message { origin, what })
    }
}

/// What a [`Backplane`] reports to the cache that subscribed.
pub trait BackplaneEvents: Send + Sync + 'static {
    /// A message from another process (its bytes as published).
    fn message(&self, payload: &[u8]);
    /// The subscription is lost: messages may be missed from now on.
    fn disconnected(&self);
    /// The subscription is (again) in place: messages are received from now on.
    /// After a [`disconnected`](BackplaneEvents::disconnected), the cache
    /// flushes its local tier here, before the next hit.
    fn connected(&self);
}

/// A channel between the processes sharing one store.
///
/// Implementations publish to every other subscriber of their channel and
/// deliver what they receive to the [`BackplaneEvents`] given to
/// [`subscribe`](Backplane::subscribe), reconnecting on their own.
#[async_trait]
pub trait Backplane: Send + Sync + 'static {
    /// Short name for logs (`"redis"`).
    fn name(&self) -> &'static str;
    /// Sends `payload` to every subscriber (this process's own subscription may receive it too).
    async fn publish(&self, payload: &[u8]) -> Result<(), Error>;
    /// Starts delivering to `events` (called once, from within a tokio runtime).
    fn subscribe(&self, events: Arc<dyn BackplaneEvents>);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_survive_hostile_keys() {
        for what in [
            Invalidation::Key("a b:c*\u{e9}:\n".into()),
            Invalidation::Pattern {
                namespace: "ns%3Ax:".into(),
                glob: "user:* 7?".into(),
            },
            Invalidation::Pattern {
                namespace: String::new(),
                glob: "*".into(),
            },
            Invalidation::Clear {
                namespace: String::new(),
            },
            Invalidation::Tag("ns:%tag:user: 7\n".into()),
        ] {
            let m = Message {
                origin: u64::MAX,
                what,
            };
            assert_eq!(Message::decode(&m.encode()), Some(m));
        }
        assert_eq!(Message::decode(b"cs1 0000000000000001 P 99 ab"), None);
        assert_eq!(Message::decode(b"cs2 0000000000000001 K a"), None);
        assert_eq!(Message::decode(&[0xff, 0xfe]), None);
    }
}
