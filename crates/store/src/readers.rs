//! The reader connections: a few read-only connections that queries borrow on tokio's blocking
//! threads, so that a long query never stalls the async workers.
//!
//! In WAL mode readers never wait for the writer and see the last committed state. Connections
//! are opened on first need, up to [`Readers::new`]'s limit, and kept for reuse.

use std::sync::{Arc, Mutex};

use rusqlite::Connection;
use tokio::sync::Semaphore;

use crate::{Result, StoreError};

/// Opens one reader connection.
type Open = dyn Fn() -> rusqlite::Result<Connection> + Send + Sync;

/// A small pool of read-only connections.
pub(crate) struct Readers {
    permits: Semaphore,
    shared: Arc<Shared>,
}

struct Shared {
    idle: Mutex<Vec<Connection>>,
    open: Box<Open>,
}

impl Readers {
    /// A pool of at most `limit` connections, each made by `open`.
    pub(crate) fn new(
        limit: usize,
        open: impl Fn() -> rusqlite::Result<Connection> + Send + Sync + 'static,
    ) -> Readers {
        Readers {
            permits: Semaphore::new(limit.max(1)),
            shared: Arc::new(Shared {
                idle: Mutex::new(Vec::with_capacity(limit)),
                open: Box::new(open),
            }),
        }
    }

    /// Runs `read` on a reader connection, on a blocking thread.
    pub(crate) async fn read<F, R>(&self, read: F) -> Result<R>
    where
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Internal("the store's readers are closed".into()))?;
        let shared = Arc::clone(&self.shared);
        tokio::task::spawn_blocking(move || {
            let idle = shared.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let conn = match idle {
                Some(conn) => conn,
                None => (shared.open)()?,
            };
            let result = read(&conn);
            shared
                .idle
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Internal(format!("a read failed: {e}")))?
    }
}
