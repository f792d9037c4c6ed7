//! Time for the engine: the wall clock, or a virtual clock that `weft test` advances instantly.
//!
//! Every timestamp the engine writes and every delay it waits goes through a [`Clock`], so retries and
//! `wait` steps can be tested without waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use futures_util::future::BoxFuture;
use weft_store::Millis;

/// A source of time and of delays.
pub trait Clock: Send + Sync + 'static {
    /// Milliseconds since the Unix epoch.
    fn now(&self) -> Millis;
    /// Waits for `d`.
    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()>;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        weft_store::now_millis()
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        Box::pin(tokio::time::sleep(d))
    }
}

/// A clock whose time moves only when someone sleeps on it: each sleep returns at once and moves the
/// time forward by its duration.
#[derive(Clone, Debug)]
pub struct VirtualClock {
    now: Arc<AtomicI64>,
}

impl VirtualClock {
    /// A virtual clock starting at `start`.
    pub fn new(start: Millis) -> VirtualClock {
        VirtualClock {
            now: Arc::new(AtomicI64::new(start)),
        }
    }
}

impl Clock for VirtualClock {
    fn now(&self) -> Millis {
        self.now.load(Ordering::SeqCst)
    }

    fn sleep(&self, d: Duration) -> BoxFuture<'static, ()> {
        self.now.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
        Box::pin(tokio::task::yield_now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn virtual_time_moves_by_sleeping() {
        let clock = VirtualClock::new(1_000);
        clock.sleep(Duration::from_secs(3)).await;
        assert_eq!(clock.now(), 4_000);
    }
}
