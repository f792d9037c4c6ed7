//! The HTTP server's connections: accepting, TLS handshakes, HTTP/1.1 on each connection, and the
//! limits that keep slow or numerous clients from holding the hub's memory and sockets.
//!
//! - At most `limits.max_connections` connections are served at once; one more is answered `503`
//!   with `Retry-After` at once and closed, without reading it.
//! - A client has `limits.request_header_timeout` to send a request's headers, including the first
//!   request of a connection and every later one on a kept-alive connection (so an idle connection
//!   is closed after it too), and 10 s for its TLS handshake.
//! - Bodies are read under their own limits (time, size, and the bytes of webhook bodies being
//!   received at once) by [`crate::throttle::read_body`].
//!
//! On shutdown the listener closes at once, every connection finishes the request it is serving
//! and closes, and [`serve`] returns when the last one has.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::Hub;

/// Longest time a client may take for its TLS handshake.
const HANDSHAKE: Duration = Duration::from_secs(10);

/// The answer to a connection over `limits.max_connections`.
const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 107\r\n\r\n{\"error\":{\"code\":\"unavailable\",\"message\":\"the hub is serving as many connections as it takes; try again\"}}";

/// Counts the connections being served; each connection holds one [`Slot`].
#[derive(Clone, Default)]
struct Connections(Arc<AtomicUsize>);

struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Connections {
    /// A slot, unless `max` connections are served already.
    fn take(&self, max: usize) -> Option<Slot> {
        let mut now = self.0.load(Ordering::Acquire);
        loop {
            if now >= max {
                return None;
            }
            match self
                .0
                .compare_exchange(now, now + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(Slot(self.0.clone())),
                Err(seen) => now = seen,
            }
        }
    }

    fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// Serves `app` on `listener` (with TLS when `tls` is given) until `stop` turns true, then lets
/// the connections finish their requests and returns once all are closed.
pub async fn serve(
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    hub: Arc<Hub>,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
) {
    let tls = tls.map(TlsAcceptor::from);
    let connections = Connections::default();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: wait for some to be freed.
                tracing::warn!(error = %e, "Accepting a connection failed.");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let limits = hub.engine.project().settings.limits.clone();
        let Some(slot) = connections.take(limits.max_connections as usize) else {
            metrics::counter!("weft_http_connections_refused_total").increment(1);
            tokio::spawn(refuse(stream));
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        let stop = stop.clone();
        let header_timeout = limits.request_header_timeout;
        tokio::spawn(async move {
            let _slot = slot;
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => {
                            let via = Via { peer, tls: true };
                            connection(stream, via, app, header_timeout, stop).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "A TLS handshake failed."),
                        Err(_) => tracing::debug!(%peer, "A TLS handshake took too long."),
                    }
                }
                None => {
                    let via = Via { peer, tls: false };
                    connection(stream, via, app, header_timeout, stop).await;
                }
            }
        });
    }
    drop(listener);
    // Wait for the connections to finish what they serve (the caller bounds the wait).
    while connections.count() > 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Answers a connection over the limit `503` and closes it.
async fn refuse(mut stream: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(BUSY).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

/// How a request reached the hub: left on every request as an extension.
#[derive(Clone, Copy, Debug)]
pub struct Via {
    /// The client's address.
    pub peer: SocketAddr,
    /// Whether the connection is HTTPS (cookies are then `Secure`).
    pub tls: bool,
}

/// Serves HTTP/1.1 on one connection until the client closes it, a timeout closes it, or the hub
/// stops (then after the request in progress).
async fn connection<S>(
    stream: S,
    via: Via,
    app: axum::Router,
    header_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let peer = via.peer;
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let app = app.clone();
            req.extensions_mut().insert(via);
            async move {
                let response = app
                    .oneshot(req.map(axum::body::Body::new))
                    .await
                    .unwrap_or_else(|never: Infallible| match never {});
                Ok::<_, Infallible>(response)
            }
        });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let stopping = async {
        let _ = stop.wait_for(|s| *s).await;
    };
    let result = tokio::select! {
        result = conn.as_mut() => Some(result),
        () = stopping => None,
    };
    let result = match result {
        Some(result) => result,
        None => {
            conn.as_mut().graceful_shutdown();
            conn.as_mut().await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "A connection ended with an error.");
    }
}
