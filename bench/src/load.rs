//! The load generator: HTTP/1.1 over loopback with one kept-alive connection per client, built on
//! hyper so that the generator costs the machine as little as it can (it shares the 2 cores with
//! the hub it measures).
//!
//! Two shapes: [`closed`] (each client sends its next request as soon as the last is answered: the
//! most the hub takes) and [`open`] (requests start on a fixed schedule whatever the answers do;
//! latency counts from the scheduled start, so a stalled hub is not hidden by fewer requests).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;

/// Makes the body of request number `n` (numbers are unique across clients).
pub type BodyFn = Arc<dyn Fn(u64) -> Bytes + Send + Sync>;

/// What one load run saw.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Requests answered with the expected status.
    pub ok: u64,
    /// Requests that failed or got another status.
    pub errors: u64,
    /// The numbers of the requests answered with the expected status.
    pub ok_numbers: Vec<u64>,
    /// Latency of each answered request, in microseconds.
    pub latencies_us: Vec<u64>,
    /// From the first request to the last answer.
    pub elapsed: Duration,
}

impl Outcome {
    /// Answered requests per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// The `p`th percentile (0–100) of the latencies, in milliseconds.
    pub fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        self.latencies_us.sort_unstable();
        let rank = ((p / 100.0) * (self.latencies_us.len() - 1) as f64).round() as usize;
        self.latencies_us[rank] as f64 / 1000.0
    }
}

/// Where to send, and what counts as success.
#[derive(Clone)]
pub struct Target {
    /// The hub's address.
    pub addr: SocketAddr,
    /// The path, such as `/hooks/relay`.
    pub path: String,
    /// The status that counts as accepted.
    pub expect: u16,
    /// The body of each request.
    pub body: BodyFn,
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Sends one request on `sender` and says whether it got the expected status.
async fn send(sender: &mut SendRequest<Full<Bytes>>, target: &Target, n: u64) -> bool {
    if sender.ready().await.is_err() {
        return false;
    }
    let request = Request::builder()
        .method(Method::POST)
        .uri(&target.path)
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .body(Full::new((target.body)(n)));
    let Ok(request) = request else {
        return false;
    };
    match sender.send_request(request).await {
        Ok(response) => {
            let status = response.status().as_u16();
            // Read the whole answer, so the connection can carry the next request.
            let drained = response.into_body().collect().await.is_ok();
            drained && status == target.expect
        }
        Err(_) => false,
    }
}

/// `clients` clients send back to back until `total` requests were sent or `limit` passed.
pub async fn closed(target: &Target, clients: usize, total: u64, limit: Duration) -> Outcome {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let deadline = start + limit;
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let target = target.clone();
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            let mut sender = None;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= total || Instant::now() >= deadline {
                    break;
                }
                if sender.is_none() {
                    sender = connect(target.addr).await.ok();
                }
                let Some(s) = sender.as_mut() else {
                    out.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let began = Instant::now();
                if send(s, &target, n).await {
                    out.ok += 1;
                    out.ok_numbers.push(n);
                    out.latencies_us.push(began.elapsed().as_micros() as u64);
                } else {
                    out.errors += 1;
                    sender = None;
                }
            }
            out
        }));
    }
    gather(tasks, start).await
}

/// Starts `rate` requests per second for `duration` on a fixed schedule, over up to `clients`
/// connections.
pub async fn open(target: &Target, rate: u64, duration: Duration, clients: usize) -> Outcome {
    let total = rate * duration.as_secs();
    let (tx, rx) = tokio::sync::mpsc::channel::<(u64, Instant)>(clients * 4);
    let rx = Arc::new(tokio::sync::Mutex::new(rx));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let target = target.clone();
        let rx = rx.clone();
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome::default();
            let mut sender = None;
            loop {
                let job = rx.lock().await.recv().await;
                let Some((n, due)) = job else {
                    break;
                };
                if sender.is_none() {
                    sender = connect(target.addr).await.ok();
                }
                let ok = match sender.as_mut() {
                    Some(s) => send(s, &target, n).await,
                    None => false,
                };
                if ok {
                    out.ok += 1;
                    out.ok_numbers.push(n);
                    out.latencies_us
                        .push(Instant::now().saturating_duration_since(due).as_micros() as u64);
                } else {
                    out.errors += 1;
                    sender = None;
                }
            }
            out
        }));
    }
    let every = Duration::from_secs_f64(1.0 / rate as f64);
    for n in 0..total {
        let due = start + every * n as u32;
        tokio::time::sleep_until(due.into()).await;
        if tx.send((n, due)).await.is_err() {
            break;
        }
    }
    drop(tx);
    gather(tasks, start).await
}

async fn gather(tasks: Vec<tokio::task::JoinHandle<Outcome>>, start: Instant) -> Outcome {
    let mut all = Outcome::default();
    for task in tasks {
        if let Ok(out) = task.await {
            all.ok += out.ok;
            all.errors += out.errors;
            all.ok_numbers.extend(out.ok_numbers);
            all.latencies_us.extend(out.latencies_us);
        }
    }
    all.elapsed = start.elapsed();
    all
}
