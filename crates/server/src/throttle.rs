//! Limits on the hub's own doors: requests per API token and per webhook path, each a token bucket
//! that holds ten seconds' worth of its rate (over it: 429 with `Retry-After`), failed console
//! sign-ins per client address (a bounded table: addresses are chosen by outsiders), and how request
//! bodies are read ([`read_body`]: in time, within their size, and for webhooks within the memory
//! all webhook bodies may take at once). A refused request changes nothing. Rate limits hold per
//! `weft serve` process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::BytesMut;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::error::ApiError;

/// Buckets by key (`token:<id>`, `hook:<path>`, a client address).
#[derive(Default)]
pub struct Throttle {
    buckets: Mutex<HashMap<String, Bucket>>,
    /// For keys that outsiders choose (client addresses): most buckets kept at once.
    max: Option<usize>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
    rate: f64,
    capacity: f64,
}

impl Bucket {
    /// How full it is at `now`.
    fn level(&self, now: Instant) -> f64 {
        (self.tokens + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.capacity)
    }
}

/// How long a bounded table that is full of limited keys makes a new key wait.
const FULL_WAIT: Duration = Duration::from_secs(10);

impl Throttle {
    /// A throttle that keeps at most `max` buckets: when it is full, the buckets that have filled
    /// up again (as good as new) are dropped, and if none has, a new key counts as limited — so
    /// that keys an outsider chooses cannot grow it without bound, nor get around it.
    pub fn bounded(max: usize) -> Throttle {
        Throttle {
            buckets: Mutex::default(),
            max: Some(max),
        }
    }

    /// Takes one request from `key`'s bucket at `per_minute`; when it is empty, how long until it
    /// holds one again.
    pub fn take(&self, key: &str, per_minute: u64) -> Result<(), Duration> {
        let rate = per_minute.max(1) as f64 / 60.0;
        self.take_from(key, rate, (rate * 10.0).max(1.0))
    }

    /// Takes one from `key`'s bucket, which holds `per_minute` when full (a minute's worth at
    /// once, for rare events such as failed sign-ins).
    pub fn take_minute(&self, key: &str, per_minute: u64) -> Result<(), Duration> {
        let per_minute = per_minute.max(1);
        self.take_from(key, per_minute as f64 / 60.0, per_minute as f64)
    }

    /// Whether `key`'s bucket is empty, without taking from it; if it is, how long until it holds
    /// one again.
    pub fn empty(&self, key: &str) -> Option<Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(bucket) = buckets.get(key) {
            let level = bucket.level(now);
            return (level < 1.0).then(|| Duration::from_secs_f64((1.0 - level) / bucket.rate));
        }
        (!self.room(&mut buckets, now)).then_some(FULL_WAIT)
    }

    fn take_from(&self, key: &str, rate: f64, capacity: f64) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if !buckets.contains_key(key) && !self.room(&mut buckets, now) {
            return Err(FULL_WAIT);
        }
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: capacity,
            at: now,
            rate,
            capacity,
        });
        bucket.tokens = bucket.level(now);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
    }

    /// Whether a new bucket fits, after dropping the full ones of a bounded table at its limit.
    fn room(&self, buckets: &mut HashMap<String, Bucket>, now: Instant) -> bool {
        let Some(max) = self.max else {
            return true;
        };
        if buckets.len() >= max {
            buckets.retain(|_, b| b.level(now) < b.capacity);
        }
        buckets.len() < max
    }
}

/// The 429 answer, with `Retry-After` in whole seconds (at least 1).
pub fn too_many(what: &str, per_minute: u64, wait: Duration) -> Response {
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    let mut response = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "rate_limited",
        format!("{what} is limited to {per_minute} requests a minute; try again in {seconds} s"),
    )
    .into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_str(&seconds.to_string()).expect("digits"),
    );
    response
}

/// What [`read_body`] shares across requests: the bytes of webhook bodies being received or held
/// at once, bounded by `limits.webhook_buffer_bytes` (read when the hub starts).
pub struct Intake {
    webhook_bytes: Arc<Semaphore>,
    capacity: u64,
}

impl Intake {
    /// Room for `capacity` bytes of webhook bodies at once.
    pub fn new(capacity: u64) -> Intake {
        Intake {
            webhook_bytes: Arc::new(Semaphore::new(
                capacity.min(Semaphore::MAX_PERMITS as u64) as usize
            )),
            capacity,
        }
    }

    /// Takes room for `bytes` more, or `None` when there is not that much left now.
    fn reserve(&self, bytes: u64) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(bytes).ok()?;
        if n == 0 {
            return None;
        }
        self.webhook_bytes.clone().try_acquire_many_owned(n).ok()
    }
}

/// Why a body could not be read.
enum Refused {
    TooLarge(u64, &'static str),
    Slow(Duration),
    Busy(u64),
    Broken(String),
}

impl Refused {
    fn answer(self) -> Response {
        match self {
            Refused::TooLarge(limit, what) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("the body is larger than {what} ({limit})"),
            )
            .into_response(),
            Refused::Slow(limit) => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "request_timeout",
                format!(
                    "the body did not arrive within limits.request_body_timeout ({})",
                    weft_core::duration::format(limit)
                ),
            )
            .into_response(),
            Refused::Busy(capacity) => {
                let mut response = ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!(
                        "the hub is receiving as many webhook bodies as limits.webhook_buffer_bytes ({capacity}) allows; try again"
                    ),
                )
                .into_response();
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                response
            }
            Refused::Broken(reason) => {
                ApiError::bad_request(format!("the body could not be read: {reason}"))
                    .into_response()
            }
        }
    }
}

/// The middleware that reads every request body before its handler runs, so that no handler
/// waits on a slow client: the whole body must arrive within `limits.request_body_timeout` (else
/// 408) and be at most the route's size limit (else 413: a webhook's `max_body_bytes`,
/// `limits.max_request_bytes` elsewhere). A webhook body, which arrives before anyone is
/// authenticated, also takes its size from `limits.webhook_buffer_bytes`, shared by all webhook
/// requests and held until the request is answered; when that is used up the request gets 503
/// with `Retry-After` instead of more memory. The request to a webhook path nobody listens on, or
/// with a declared length over the limit, goes to its handler unread (which refuses it).
pub async fn read_body(
    axum::extract::State(hub): axum::extract::State<Arc<crate::Hub>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    use http_body::Body as _;
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let limits = &hub.engine.project().settings.limits;
    let timeout = limits.request_body_timeout;
    let (limit, what, webhook) = match req.uri().path().strip_prefix("/hooks/") {
        Some(path) => match hub.hook(path).map(|w| w.trigger.clone()) {
            Some(weft_core::Trigger::Webhook(hook)) => {
                (hook.max_body_bytes, "this webhook's max_body_bytes", true)
            }
            _ => return next.run(req).await,
        },
        None => (limits.max_request_bytes, "limits.max_request_bytes", false),
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        if webhook {
            return next.run(req).await;
        }
        return Refused::TooLarge(limit, what).answer();
    }
    let (parts, body) = req.into_parts();
    let intake = &hub.intake;
    let mut held: Vec<OwnedSemaphorePermit> = Vec::new();
    if webhook && let Some(n) = declared {
        match intake.reserve(n) {
            Some(permit) => held.push(permit),
            None => return Refused::Busy(intake.capacity).answer(),
        }
    }
    let read = async {
        let mut body = std::pin::pin!(body);
        let mut bytes = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| Refused::Broken(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            if bytes.len() as u64 + data.len() as u64 > limit {
                return Err(Refused::TooLarge(limit, what));
            }
            if webhook && declared.is_none() {
                match intake.reserve(data.len() as u64) {
                    Some(permit) => held.push(permit),
                    None if data.is_empty() => {}
                    None => return Err(Refused::Busy(intake.capacity)),
                }
            }
            bytes.extend_from_slice(&data);
        }
        Ok(bytes.freeze())
    };
    let bytes = match tokio::time::timeout(timeout, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(refused)) => return refused.answer(),
        Err(_) => return Refused::Slow(timeout).answer(),
    };
    let response = next
        .run(axum::extract::Request::from_parts(
            parts,
            axum::body::Body::from(bytes),
        ))
        .await;
    // The room a webhook body took is given back once it is answered.
    drop(held);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_holds_ten_seconds_and_says_when_to_come_back() {
        let t = Throttle::default();
        // 60 a minute: one a second, ten at once.
        for _ in 0..10 {
            assert!(t.take("k", 60).is_ok());
        }
        let wait = t.take("k", 60).unwrap_err();
        assert!(
            wait > Duration::from_millis(900) && wait <= Duration::from_secs(1),
            "{wait:?}"
        );
        // Other keys have their own bucket.
        assert!(t.take("other", 60).is_ok());
        let response = too_many("this token", 60, wait);
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
    }

    #[test]
    fn a_bounded_table_forgets_full_buckets_and_limits_new_keys_when_none_is_full() {
        let t = Throttle::bounded(2);
        assert!(t.take_minute("a", 3).is_ok());
        assert!(t.take_minute("b", 3).is_ok());
        // Full of buckets in use: a new key is limited, in the peek and in the take.
        assert_eq!(t.empty("c"), Some(FULL_WAIT));
        assert_eq!(t.take_minute("c", 3), Err(FULL_WAIT));
        // Known keys go on as before.
        assert!(t.take_minute("a", 3).is_ok());
        assert!(t.take_minute("a", 3).is_ok());
        assert!(t.take_minute("a", 3).is_err());
        assert!(t.empty("a").is_some());
        // A bucket that has filled up again is as good as none: it makes room.
        let unlimited = Throttle::bounded(1);
        assert!(unlimited.take_minute("x", 6_000_000).is_ok());
        std::thread::sleep(Duration::from_millis(5));
        assert!(unlimited.take_minute("y", 6_000_000).is_ok());
        assert_eq!(unlimited.buckets.lock().unwrap().len(), 1);
    }
}
