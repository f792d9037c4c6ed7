//! Limits on the hub's own doors: requests per API token and per webhook path, each a token bucket
//! that holds ten seconds' worth of its rate (over it: 429 with `Retry-After`), and the size of
//! request bodies on `/api` and `/mcp` (over it: 413). A refused request changes nothing. Rate
//! limits hold per `weft serve` process.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Buckets by key (`token:<id>`, `hook:<path>`).
#[derive(Default)]
pub struct Throttle {
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Throttle {
    /// Takes one request from `key`'s bucket at `per_minute`; when it is empty, how long until it
    /// holds one again.
    pub fn take(&self, key: &str, per_minute: u64) -> Result<(), Duration> {
        let rate = per_minute.max(1) as f64 / 60.0;
        let capacity = (rate * 10.0).max(1.0);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = buckets.entry(key.to_string()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let elapsed = now.duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(capacity);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / rate))
        }
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

/// The middleware that refuses `/api` and `/mcp` bodies larger than `limits.max_request_bytes`:
/// at once when `Content-Length` says so, and while reading otherwise.
pub async fn limit_body(
    axum::extract::State(hub): axum::extract::State<std::sync::Arc<crate::Hub>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = req.uri().path();
    if !(path.starts_with("/api/") || path == "/mcp" || path.starts_with("/mcp/")) {
        return next.run(req).await;
    }
    let limit = hub.engine.project().settings.limits.max_request_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body is larger than limits.max_request_bytes ({limit})"),
        )
        .into_response();
    }
    let (parts, body) = req.into_parts();
    let body = axum::body::Body::new(http_body_util::Limited::new(body, limit as usize));
    next.run(axum::extract::Request::from_parts(parts, body))
        .await
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
}
