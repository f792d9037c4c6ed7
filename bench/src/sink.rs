//! The sink: a small HTTP server on loopback that stands for the systems workflows post to. It
//! answers every request `200 {}` at once and counts what arrived, by the body's `id` (so that the
//! durability scenario can tell lost events from duplicated deliveries).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

/// What the sink has seen.
#[derive(Default)]
pub struct Seen {
    /// Requests received.
    pub count: AtomicU64,
    /// Deliveries per body `id`, when the body has one.
    pub ids: Mutex<HashMap<u64, u32>>,
    /// When the last request arrived.
    pub last: Mutex<Option<Instant>>,
}

impl Seen {
    /// Requests received so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Forgets everything, between repetitions.
    pub fn reset(&self) {
        self.count.store(0, Ordering::Relaxed);
        self.ids.lock().unwrap_or_else(|e| e.into_inner()).clear();
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// When the last request arrived.
    pub fn last(&self) -> Option<Instant> {
        *self.last.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Starts the sink on a free loopback port.
pub async fn start() -> anyhow::Result<(SocketAddr, Arc<Seen>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let seen = Arc::new(Seen::default());
    let shared = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let seen = shared.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let body = request.into_body().collect().await?.to_bytes();
                        record(&seen, &body);
                        Ok::<_, hyper::Error>(Response::new(Full::new(Bytes::from_static(b"{}"))))
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok((addr, seen))
}

fn record(seen: &Seen, body: &[u8]) {
    if let Some(id) = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["id"].as_u64())
    {
        *seen
            .ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(id)
            .or_default() += 1;
    }
    *seen.last.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    seen.count.fetch_add(1, Ordering::Relaxed);
}
