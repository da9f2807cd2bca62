//! The channels local subscribers want, each with its fan-out sender and reference count: what
//! links deliver into and what the manager keeps subscribed.

use super::HubMsg;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

/// Per-channel fan-out buffer. States supersede each other, so a subscriber that falls this
/// far behind is told to resync from the latest state instead of getting a backlog. Every
/// blocked sync caller has a channel of its own, and each slot costs about 48 bytes.
const CHANNEL_BUFFER: usize = 16;

struct Entry {
    tx: broadcast::Sender<HubMsg>,
    refs: usize,
    /// Redis confirmed the subscription and it has not been lost since.
    live: bool,
    /// When its last local subscriber left (None while it has one): it stays subscribed for a
    /// while (`hub::LINGER`), so a call right after another on the same workflow needs no
    /// SUBSCRIBE and no UNSUBSCRIBE.
    idle_since: Option<Instant>,
}

#[derive(Default)]
pub struct Registry {
    map: Mutex<HashMap<String, Entry>>,
}

impl Registry {
    /// A panic elsewhere while the lock was held must not turn every later subscription into a
    /// panic: each change to the map is one step, so what a poisoned lock guards is whole.
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One more local subscriber: its receiver, and whether the channel is live already.
    pub fn join(&self, channel: &str) -> (broadcast::Receiver<HubMsg>, bool) {
        let mut map = self.lock();
        let e = map.entry(channel.to_string()).or_insert_with(|| Entry {
            tx: broadcast::channel(CHANNEL_BUFFER).0,
            refs: 0,
            live: false,
            idle_since: None,
        });
        e.refs += 1;
        e.idle_since = None;
        (e.tx.subscribe(), e.live)
    }

    /// One local subscriber fewer; true when it was the last (the channel is then idle, kept
    /// until `forget_idle` forgets it).
    pub fn leave(&self, channel: &str) -> bool {
        let mut map = self.lock();
        let Some(e) = map.get_mut(channel) else { return false };
        e.refs -= 1;
        if e.refs > 0 {
            return false;
        }
        e.idle_since = Some(Instant::now());
        true
    }

    /// Forgets a channel no local subscriber has joined for `linger`; true if it did.
    pub fn forget_idle(&self, channel: &str, linger: Duration) -> bool {
        let mut map = self.lock();
        let idle = map
            .get(channel)
            .is_some_and(|e| e.refs == 0 && e.idle_since.is_some_and(|t| t.elapsed() >= linger));
        if idle {
            map.remove(channel);
        }
        idle
    }

    pub fn wanted(&self, channel: &str) -> bool {
        self.lock().contains_key(channel)
    }

    pub fn is_live(&self, channel: &str) -> bool {
        self.lock().get(channel).is_some_and(|e| e.live)
    }

    /// Marks a wanted channel (un)confirmed; its previous mark (None: not wanted).
    pub fn set_live(&self, channel: &str, live: bool) -> Option<bool> {
        self.lock()
            .get_mut(channel)
            .map(|e| std::mem::replace(&mut e.live, live))
    }

    /// Hands a message to the channel's local subscribers.
    pub fn dispatch(&self, channel: &str, msg: HubMsg) {
        if let Some(e) = self.lock().get(channel) {
            let _ = e.tx.send(msg);
        }
    }

    pub fn channels(&self) -> Vec<String> {
        self.lock().keys().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_channel_whose_last_subscriber_left_stays_until_it_was_idle_for_the_linger() {
        let r = Registry::default();
        let (rx, _) = r.join("c");
        assert!(r.set_live("c", true).is_some());
        drop(rx);
        assert!(r.leave("c"), "the last subscriber left");
        assert!(r.wanted("c") && r.is_live("c"), "still subscribed while it lingers");
        assert!(!r.forget_idle("c", Duration::from_secs(60)), "not idle for long enough");
        let (_rx, live) = r.join("c");
        assert!(live, "a subscriber joining a lingering channel needs no SUBSCRIBE");
        assert!(
            !r.forget_idle("c", Duration::ZERO),
            "a channel with a subscriber is kept"
        );
        assert!(r.leave("c"));
        assert!(r.forget_idle("c", Duration::ZERO));
        assert!(!r.wanted("c"));
    }
}
