//! Watching a notice channel: what a gateway re-reads when another process says its source
//! changed (definitions, revoked keys), and every `poll` in case a notice was missed while
//! Redis was away.

use super::{Hub, HubMsg, Notice};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Why a watcher woke.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Woke {
    Notice(Notice),
    /// Notices may have been missed (a resubscription): check the source.
    Resync,
    /// The periodic check.
    Tick,
}

pub struct Watch {
    hub: Hub,
    channel: String,
    sub: Option<super::Subscription>,
    tick: tokio::time::Interval,
}

impl Watch {
    /// Subscribes before it returns, so a notice sent from then on is heard; without Redis,
    /// it polls and keeps trying to subscribe.
    pub async fn new(hub: Hub, channel: String, poll: Duration) -> Self {
        let sub = hub.subscribe(&channel).await.ok();
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Self {
            hub,
            channel,
            sub,
            tick,
        }
    }

    /// The next reason to look at the source; None once `shutdown` is cancelled. The first
    /// call answers `Tick` at once.
    pub async fn next(&mut self, shutdown: &CancellationToken) -> Option<Woke> {
        if self.sub.is_none() {
            match self.hub.subscribe(&self.channel).await {
                Ok(s) => {
                    self.sub = Some(s);
                    return Some(Woke::Resync);
                }
                Err(e) => tracing::debug!(error = %e, channel = %self.channel, "notices unavailable; polling"),
            }
        }
        let notice = async {
            match self.sub.as_mut() {
                Some(s) => loop {
                    match s.recv().await {
                        HubMsg::Notice(n) => return Woke::Notice(n),
                        HubMsg::Resync => return Woke::Resync,
                        // Not a notice channel's message: nothing to re-read.
                        HubMsg::Event(_) => {}
                    }
                },
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.cancelled() => None,
            w = notice => Some(w),
            _ = self.tick.tick() => Some(Woke::Tick),
        }
    }
}
