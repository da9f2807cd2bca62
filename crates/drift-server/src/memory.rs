//! Gives memory freed after a burst back to the operating system. glibc's allocator keeps what
//! it frees mapped in its arenas; after a reconnect storm (thousands of connections set up at
//! once, each with its transient buffers and futures) a gateway's resident memory would stay at
//! the storm's high-water mark for as long as it runs. A task checks how much the allocator
//! holds free and, past a slack, trims it.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How often the allocator's free memory is looked at.
const EVERY: Duration = Duration::from_secs(1);
/// Free memory the allocator may keep for the next allocations without a trim.
const SLACK_BYTES: usize = 8 << 20;

/// Runs until `shutdown`.
pub fn spawn_trimmer(shutdown: CancellationToken) {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            // Both walk the allocator's arenas under their locks: off the async threads.
            let trimmed = tokio::task::spawn_blocking(|| trim_if_above(SLACK_BYTES)).await;
            if let Ok(Some(freed)) = trimmed {
                metrics::counter!(drift_core::metrics::MEMORY_TRIMS.name).increment(1);
                tracing::debug!(free_before = freed, "returned free memory to the operating system");
            }
        }
    });
}

/// Trims when the allocator holds more than `slack` bytes free; answers how much it held.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_if_above(slack: usize) -> Option<usize> {
    // SAFETY: glibc's mallinfo2 and malloc_trim have no preconditions.
    let free = unsafe { libc::mallinfo2() }.fordblks;
    if free <= slack {
        return None;
    }
    // SAFETY: as above.
    unsafe { libc::malloc_trim(0) };
    Some(free)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_if_above(_slack: usize) -> Option<usize> {
    None
}
