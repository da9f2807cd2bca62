//! Bounds on what callers can hold or send: blocked sync requests, live connections (in all
//! and per tenant) and requests per credential. Each refusal is a JSON error with
//! `Retry-After`, and nothing was started or changed by the refused call.

use super::error::{ApiError, ErrorCode};
use drift_core::domain::Caller;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone)]
pub struct LimitsConfig {
    pub max_waiters: usize,
    pub max_streams: usize,
    pub max_streams_per_tenant: usize,
    /// Requests per second per credential (tenant and client); 0 turns the limit off.
    pub rate_per_sec: u32,
    pub rate_burst: u32,
}

pub struct Limits {
    cfg: LimitsConfig,
    waiters: Arc<Semaphore>,
    streams: Arc<Semaphore>,
    per_tenant: Arc<Mutex<HashMap<String, usize>>>,
    /// WebSocket follows being set up (see `SETUPS_AT_ONCE`).
    setups: Semaphore,
    rate: Option<DefaultKeyedRateLimiter<String>>,
    /// Requests per answer link (by the token's digest), whoever sends them.
    links: DefaultKeyedRateLimiter<String>,
    /// Checks since the rate limiter last forgot idle credentials.
    checks: std::sync::atomic::AtomicU32,
}

/// Live follows (event streams and WebSocket subscriptions) set up at once: authentication,
/// the subscription, the catch-up read. After a gateway restart or a network blip every client
/// reconnects at the same moment; set up all at once, their transient buffers and futures
/// would all be alive together and leave the allocator fragmented at that high-water mark. A
/// set-up waits for no client (the request is already read), so the rest queue only briefly.
/// WebSockets take their turn here (`follow_setup`); event streams in the listener, which
/// serves them.
pub(super) const SETUPS_AT_ONCE: usize = 64;

/// Every this many checks, credentials whose limit has fully recovered are forgotten, so the
/// limiter holds only recently active ones.
const FORGET_EVERY: u32 = 10_000;

/// Requests one answer link may take a minute (its page, its screen, its answer, its stream),
/// after a burst of `LINK_BURST`: a person needs a handful; a guesser or a loop gets 429.
pub const LINK_PER_MINUTE: u32 = 30;
pub const LINK_BURST: u32 = 20;

/// The count token-only sockets open in, shared by every tenant until each names its own
/// (`Limits::claim`).
const TOKEN_ONLY: &str = "(stream tokens)";

/// Holds one live connection's place until dropped.
pub struct StreamSlot {
    _permit: OwnedSemaphorePermit,
    tenant: String,
    per_tenant: Arc<Mutex<HashMap<String, usize>>>,
}

impl StreamSlot {
    /// Still counted as a token-only socket that has named no tenant.
    pub fn unclaimed(&self) -> bool {
        self.tenant == TOKEN_ONLY
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        give_back(&self.per_tenant, &self.tenant);
    }
}

/// Counts one live connection of `tenant` less (forgetting a tenant at none).
fn give_back(per_tenant: &Mutex<HashMap<String, usize>>, tenant: &str) {
    let mut m = per_tenant.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(n) = m.get_mut(tenant) {
        *n -= 1;
        if *n == 0 {
            m.remove(tenant);
        }
    }
}

/// A live connection refused at a limit, counted as such.
fn streams_refused(what: String) -> ApiError {
    metrics::counter!(drift_core::metrics::LIMITED.name, "limit" => "streams").increment(1);
    ApiError::new(ErrorCode::TooManyConnections, what).retry_after(5)
}

impl Limits {
    /// A turn to set up a follow (see `SETUPS_AT_ONCE`); hold it until the follow exists.
    pub async fn follow_setup(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.setups
            .acquire()
            .await
            .expect("the set-up semaphore is never closed")
    }

    pub fn new(cfg: LimitsConfig) -> Self {
        let rate = NonZeroU32::new(cfg.rate_per_sec).map(|per_sec| {
            let burst = NonZeroU32::new(cfg.rate_burst).unwrap_or(per_sec);
            RateLimiter::keyed(Quota::per_second(per_sec).allow_burst(burst))
        });
        Self {
            waiters: Arc::new(Semaphore::new(cfg.max_waiters)),
            streams: Arc::new(Semaphore::new(cfg.max_streams)),
            per_tenant: Arc::default(),
            setups: Semaphore::new(SETUPS_AT_ONCE),
            rate,
            links: RateLimiter::keyed(
                Quota::per_minute(NonZeroU32::new(LINK_PER_MINUTE).expect("not zero"))
                    .allow_burst(NonZeroU32::new(LINK_BURST).expect("not zero")),
            ),
            checks: Default::default(),
            cfg,
        }
    }

    /// A place for one blocked sync request, taken before anything is dispatched.
    pub fn waiter(&self) -> Result<OwnedSemaphorePermit, ApiError> {
        self.waiters.clone().try_acquire_owned().map_err(|_| {
            metrics::counter!(drift_core::metrics::LIMITED.name, "limit" => "waiters").increment(1);
            ApiError::new(
                ErrorCode::TooManyWaiters,
                format!(
                    "{} requests are already waiting on this gateway; retry shortly, or use async mode",
                    self.cfg.max_waiters
                ),
            )
            .retry_after(1)
        })
    }

    /// A place for one SSE stream or WebSocket of `tenant` (None: a token-only socket).
    pub fn stream(&self, tenant: Option<&str>) -> Result<StreamSlot, ApiError> {
        let permit = self.streams.clone().try_acquire_owned().map_err(|_| {
            streams_refused(format!(
                "this gateway holds its limit of {} live connections",
                self.cfg.max_streams
            ))
        })?;
        let tenant = tenant.unwrap_or(TOKEN_ONLY).to_string();
        self.take_tenant_place(&tenant).map_err(streams_refused)?;
        Ok(StreamSlot {
            _permit: permit,
            tenant,
            per_tenant: self.per_tenant.clone(),
        })
    }

    /// Moves a token-only socket's place from the shared count to `tenant`'s, the tenant of
    /// the first stream token it follows with, so one tenant's sockets cannot use up another's
    /// places (or every token-only socket's). A place already counted for a tenant stays there.
    pub fn claim(&self, slot: &mut StreamSlot, tenant: &str) -> Result<(), ApiError> {
        if !slot.unclaimed() {
            return Ok(());
        }
        self.take_tenant_place(tenant).map_err(streams_refused)?;
        let old = std::mem::replace(&mut slot.tenant, tenant.to_string());
        give_back(&self.per_tenant, &old);
        Ok(())
    }

    /// Counts one more live connection for `tenant`, or says why not.
    fn take_tenant_place(&self, tenant: &str) -> Result<(), String> {
        let mut m = self
            .per_tenant
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = m.entry(tenant.to_string()).or_default();
        if *n >= self.cfg.max_streams_per_tenant {
            return Err(match tenant {
                TOKEN_ONLY => format!(
                    "{} sockets without credentials are still to name a workflow on this gateway",
                    self.cfg.max_streams_per_tenant
                ),
                _ => format!(
                    "this tenant holds its limit of {} live connections on this gateway",
                    self.cfg.max_streams_per_tenant
                ),
            });
        }
        *n += 1;
        Ok(())
    }

    /// Counts one request against its credential's rate.
    pub fn rate(&self, caller: &Caller) -> Result<(), ApiError> {
        let Some(limiter) = &self.rate else { return Ok(()) };
        if self.checks.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % FORGET_EVERY == FORGET_EVERY - 1 {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        let key = format!("{}/{}", caller.tenant, caller.client);
        limiter.check_key(&key).map_err(|not_until| {
            metrics::counter!(drift_core::metrics::LIMITED.name, "limit" => "rate").increment(1);
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            ApiError::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {} requests per second for this credential",
                    self.cfg.rate_per_sec
                ),
            )
            .retry_after(wait.as_secs().max(1))
        })
    }

    /// Counts one request against an answer link's rate (keyed by the token's digest, so no
    /// token is held).
    pub fn link_rate(&self, token: &str) -> Result<(), ApiError> {
        if self.checks.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % FORGET_EVERY == FORGET_EVERY - 1 {
            self.links.retain_recent();
            self.links.shrink_to_fit();
        }
        let key = drift_core::digest::sha256_hex_128(token);
        self.links.check_key(&key).map_err(|not_until| {
            metrics::counter!(drift_core::metrics::LIMITED.name, "limit" => "link").increment(1);
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            ApiError::new(
                ErrorCode::RateLimited,
                format!("more than {LINK_PER_MINUTE} requests a minute for this answer link"),
            )
            .retry_after(wait.as_secs().max(1))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_tenant: usize) -> Limits {
        Limits::new(LimitsConfig {
            max_waiters: 10,
            max_streams: 100,
            max_streams_per_tenant: per_tenant,
            rate_per_sec: 0,
            rate_burst: 0,
        })
    }

    fn count(l: &Limits, tenant: &str) -> usize {
        l.per_tenant.lock().unwrap().get(tenant).copied().unwrap_or(0)
    }

    #[test]
    fn a_token_only_socket_counts_against_its_first_tokens_tenant_once_it_follows() {
        let l = limits(2);
        let mut slot = l.stream(None).unwrap();
        assert!(slot.unclaimed());
        assert_eq!(count(&l, TOKEN_ONLY), 1);
        l.claim(&mut slot, "acme").unwrap();
        assert!(!slot.unclaimed());
        assert_eq!((count(&l, TOKEN_ONLY), count(&l, "acme")), (0, 1));
        // A second token of another tenant leaves it where it is.
        l.claim(&mut slot, "other").unwrap();
        assert_eq!((count(&l, "acme"), count(&l, "other")), (1, 0));
        drop(slot);
        assert_eq!(count(&l, "acme"), 0);
    }

    #[test]
    fn a_claim_over_the_tenants_limit_is_refused_and_the_socket_stays_unclaimed() {
        let l = limits(1);
        let _held = l.stream(Some("acme")).unwrap();
        let mut slot = l.stream(None).unwrap();
        let err = l.claim(&mut slot, "acme").unwrap_err();
        assert_eq!(err.code, ErrorCode::TooManyConnections);
        assert!(slot.unclaimed());
        assert_eq!((count(&l, TOKEN_ONLY), count(&l, "acme")), (1, 1));
        // Token-only sockets that name no workflow share one count of their own.
        assert_eq!(
            l.stream(None).err().map(|e| e.code),
            Some(ErrorCode::TooManyConnections)
        );
    }
}
