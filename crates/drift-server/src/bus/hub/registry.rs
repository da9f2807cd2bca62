//! The channels local subscribers want, each with its fan-out sender and reference count: what
//! links deliver into and what the manager keeps subscribed.

use super::HubMsg;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::broadcast;

/// Per-channel fan-out buffer. States supersede each other, so a subscriber that falls this
/// far behind is told to resync from the latest state instead of getting a backlog. Every
/// blocked sync caller has a channel of its own, and each slot costs about 48 bytes.
const CHANNEL_BUFFER: usize = 16;

struct Entry {
    tx: broadcast::Sender<HubMsg>,
    refs: usize,
    /// Redis confirmed the subscription and it has not been lost since.
    live: bool,
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
        });
        e.refs += 1;
        (e.tx.subscribe(), e.live)
    }

    /// One local subscriber fewer; true when it was the last (the channel is forgotten).
    pub fn leave(&self, channel: &str) -> bool {
        let mut map = self.lock();
        let Some(e) = map.get_mut(channel) else { return false };
        e.refs -= 1;
        if e.refs > 0 {
            return false;
        }
        map.remove(channel);
        true
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
