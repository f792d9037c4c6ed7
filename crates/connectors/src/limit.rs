//! Rate limits per connection: `rate_limit: { requests, per, concurrency }` on any connection in
//! `weft.yaml`, held by a wrapper around the live connector, so that every run using the
//! connection shares one limit.
//!
//! Calls start at most `requests` within any window of `per` (the start times of the last
//! `requests` calls are kept; the next waits until the oldest is `per` ago) and at most
//! `concurrency` run at once. When the outside system asks for
//! patience (a retryable error with `Retry-After`, as the `http` connector reports 429 and 503
//! answers), the whole connection pauses for that long, so that other runs do not keep hitting a
//! system that is already refusing them; the rest of the hub goes on.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use tokio::sync::{Mutex, Semaphore};
use tokio::time::Instant;
use weft_core::RateLimit;

use crate::{ActionError, Call, Connector, Subscription};

struct Bucket {
    /// Start times of the last `requests` calls, oldest first.
    starts: std::collections::VecDeque<Instant>,
    /// No call starts before this (the system asked to wait).
    paused_until: Option<Instant>,
}

/// A connector whose calls keep to a rate limit.
pub struct Limited {
    inner: Arc<dyn Connector>,
    rate: Option<(u32, Duration)>,
    bucket: Mutex<Bucket>,
    concurrency: Option<Semaphore>,
}

impl Limited {
    /// Wraps `inner` in `limit`.
    pub fn new(inner: Arc<dyn Connector>, limit: &RateLimit) -> Limited {
        Limited {
            inner,
            rate: limit.rate,
            bucket: Mutex::new(Bucket {
                starts: std::collections::VecDeque::new(),
                paused_until: None,
            }),
            concurrency: limit.concurrency.map(|c| Semaphore::new(c as usize)),
        }
    }

    /// Waits until a call may start, and records its start.
    async fn turn(&self) {
        loop {
            let wait = {
                let mut b = self.bucket.lock().await;
                let now = Instant::now();
                match b.paused_until {
                    Some(until) if until > now => until - now,
                    _ => {
                        b.paused_until = None;
                        let Some((requests, per)) = self.rate else {
                            return;
                        };
                        while b.starts.front().is_some_and(|t| now - *t >= per) {
                            b.starts.pop_front();
                        }
                        if b.starts.len() < requests as usize {
                            b.starts.push_back(now);
                            return;
                        }
                        let oldest = b.starts.front().copied().unwrap_or(now);
                        per - (now - oldest)
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Pauses the whole connection for `wait`.
    async fn pause(&self, wait: Duration) {
        let mut b = self.bucket.lock().await;
        let until = Instant::now() + wait;
        if b.paused_until.is_none_or(|p| p < until) {
            b.paused_until = Some(until);
        }
    }
}

#[async_trait]
impl Connector for Limited {
    async fn call(&self, call: Call<'_>) -> Result<Value, ActionError> {
        self.call_defined(call, None).await
    }

    async fn call_defined(
        &self,
        call: Call<'_>,
        definition: Option<&Arc<weft_core::definition::Definition>>,
    ) -> Result<Value, ActionError> {
        let _permit = match &self.concurrency {
            Some(s) => Some(s.acquire().await.map_err(|_| {
                ActionError::retryable("the connection's concurrency limit is closed")
            })?),
            None => None,
        };
        self.turn().await;
        let result = self.inner.call_defined(call, definition).await;
        if let Err(ActionError::Retryable {
            retry_after: Some(wait),
            ..
        }) = &result
        {
            self.pause(*wait).await;
        }
        result
    }

    fn sign_in(&self) -> Option<Arc<crate::http::SignIn>> {
        self.inner.sign_in()
    }

    /// A check is a request like any other for the outside system, so it waits its turn.
    async fn probe(&self) -> Result<String, ActionError> {
        self.turn().await;
        self.inner.probe().await
    }

    async fn subscribe(
        &self,
        consumer: &str,
        settings: &Value,
    ) -> Result<Box<dyn Subscription>, ActionError> {
        self.inner.subscribe(consumer, settings).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;

    /// Records when each call starts and how many run at once; fails on cue with Retry-After.
    #[derive(Default)]
    struct Probe {
        starts: std::sync::Mutex<Vec<Duration>>,
        running: AtomicUsize,
        most: AtomicUsize,
        busy_once: std::sync::atomic::AtomicBool,
    }

    struct ProbeConnector(Arc<Probe>, Instant);

    #[async_trait]
    impl Connector for ProbeConnector {
        async fn call(&self, _call: Call<'_>) -> Result<Value, ActionError> {
            let p = &self.0;
            p.starts.lock().unwrap().push(Instant::now() - self.1);
            let now = p.running.fetch_add(1, Ordering::SeqCst) + 1;
            p.most.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(100)).await;
            p.running.fetch_sub(1, Ordering::SeqCst);
            if p.busy_once.swap(false, Ordering::SeqCst) {
                return Err(ActionError::Retryable {
                    message: "HTTP 429".into(),
                    retry_after: Some(Duration::from_secs(5)),
                    details: Value::Null,
                });
            }
            Ok(json!(null))
        }
    }

    async fn call(c: &Limited) -> Result<Value, ActionError> {
        c.call(Call {
            action: "request",
            input: json!({}),
            idempotency_key: "k",
            max_output_bytes: 1,
        })
        .await
    }

    fn limited(limit: RateLimit) -> (Arc<Limited>, Arc<Probe>) {
        let probe = Arc::new(Probe::default());
        let inner = Arc::new(ProbeConnector(probe.clone(), Instant::now()));
        (Arc::new(Limited::new(inner, &limit)), probe)
    }

    #[tokio::test(start_paused = true)]
    async fn calls_keep_to_the_rate_and_the_concurrency_across_callers() {
        let (c, probe) = limited(RateLimit {
            rate: Some((5, Duration::from_secs(1))),
            concurrency: Some(2),
        });
        let calls: Vec<_> = (0..15)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { call(&c).await.unwrap() })
            })
            .collect();
        for t in calls {
            t.await.unwrap();
        }
        let starts = probe.starts.lock().unwrap().clone();
        assert_eq!(starts.len(), 15);
        assert_eq!(
            probe.most.load(Ordering::SeqCst),
            2,
            "never more than 2 at once"
        );
        // Never 6 starts within one second.
        for window in starts.windows(6) {
            assert!(
                window[5] - window[0] >= Duration::from_millis(999),
                "6 starts within a second: {starts:?}"
            );
        }
        assert!(starts[14] >= Duration::from_secs(2), "{starts:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_pauses_the_whole_connection() {
        let (c, probe) = limited(RateLimit {
            rate: None,
            concurrency: Some(1),
        });
        probe.busy_once.store(true, Ordering::SeqCst);
        assert!(call(&c).await.is_err());
        call(&c).await.unwrap();
        let starts = probe.starts.lock().unwrap().clone();
        assert!(
            starts[1] - starts[0] >= Duration::from_secs(5),
            "the next call waited for Retry-After: {starts:?}"
        );
    }
}
