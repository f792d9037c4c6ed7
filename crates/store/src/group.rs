//! Group commit: the writes that queue up while one commit is on its way to disk share the next.
//!
//! The embedded store has one writer connection and commits with `synchronous=FULL`, so every
//! commit waits for the disk. One transaction per write made that wait the hub's speed limit (one
//! webhook, one step start, one step outcome per fsync). A [`Group`] keeps the promise "answered only
//! once durable" and drops the limit:
//!
//! - A writer ([`Group::begin`]) takes the connection, joins the open *shared* transaction (opening
//!   one with `BEGIN IMMEDIATE` if none is open) and runs its statements inside a savepoint of its
//!   own.
//! - [`GroupTx::commit`] releases the savepoint, hands the connection on and waits: it returns only
//!   once the shared transaction holding its changes has committed to disk (or with the error that
//!   stopped it).
//! - The committer task commits the shared transaction as soon as the writers queued before it
//!   have released their savepoints. Writers that arrive while it waits for the disk queue behind
//!   it and form the next group, so groups grow with the load and a lone writer waits for one
//!   commit, as before.
//!
//! # Invariants
//!
//! - A writer that drops its [`GroupTx`] without committing (an error, a `?`, a cancelled future)
//!   has its savepoint rolled back before anyone else uses the connection: none of its changes
//!   reach the disk, and the other writers' changes are untouched.
//! - When the shared commit fails, or a savepoint cannot be rolled back, the whole shared
//!   transaction is rolled back and every writer in it gets the error: nothing any of them wrote is
//!   on disk, and none was told otherwise.
//! - A writer sees the uncommitted changes of the writers before it in its group (they share the
//!   connection); if those never commit, neither does it.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use sqlx::Executor;
use sqlx::sqlite::SqliteConnection;
use tokio::sync::{MutexGuard, Notify, watch};

use crate::{Result, StoreError};

/// What a group's writers learn when it ends: `None` while it is open.
type Ending = Option<Result<(), Arc<str>>>;

/// The writer connection, shared by group commit.
pub(crate) struct Group {
    shared: Arc<Shared>,
}

struct Shared {
    writer: tokio::sync::Mutex<Writer>,
    /// Wakes the committer: a writer left the connection.
    wake: Notify,
    /// The store is gone: the committer finishes the open group and stops.
    closed: AtomicBool,
    /// Shared transactions committed so far (tests check that writes share them).
    commits: AtomicU64,
}

struct Writer {
    conn: SqliteConnection,
    /// The open shared transaction, through which its writers learn how it ended.
    group: Option<watch::Sender<Ending>>,
    /// A writer left without committing; its savepoint must be rolled back first.
    abandoned: bool,
}

impl Writer {
    /// Rolls back an abandoned writer's savepoint; if that fails, rolls back the whole group and
    /// tells its writers why.
    async fn tidy(&mut self) {
        if !self.abandoned {
            return;
        }
        self.abandoned = false;
        if self.group.is_none() {
            return;
        }
        if let Err(e) = self
            .conn
            .execute(sqlx::raw_sql("ROLLBACK TO member; RELEASE member"))
            .await
        {
            self.end_group(Err(Arc::from(format!(
                "a failed write could not be undone alone ({e}), so its whole group was rolled back"
            ))))
            .await;
        }
    }

    /// Ends the open group: commits it when `result` is `Ok`, otherwise rolls it back, and tells
    /// its writers.
    async fn end_group(&mut self, result: Result<(), Arc<str>>) -> bool {
        let Some(group) = self.group.take() else {
            return false;
        };
        let result = match result {
            Ok(()) => match self.conn.execute(sqlx::raw_sql("COMMIT")).await {
                Ok(_) => Ok(()),
                Err(e) => Err(Arc::from(format!("the commit failed: {e}"))),
            },
            Err(e) => Err(e),
        };
        if result.is_err() {
            // The transaction may already be gone (SQLite rolls back by itself on some errors).
            let _ = self.conn.execute(sqlx::raw_sql("ROLLBACK")).await;
        }
        let committed = result.is_ok();
        group.send_replace(Some(result));
        committed
    }
}

impl Group {
    /// Takes over `conn` (which must have no transaction open) and starts the committer. The
    /// connection is a plain one, not a pool's, so that it may be dropped outside the runtime.
    pub(crate) fn start(conn: SqliteConnection) -> Group {
        let shared = Arc::new(Shared {
            writer: tokio::sync::Mutex::new(Writer {
                conn,
                group: None,
                abandoned: false,
            }),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            commits: AtomicU64::new(0),
        });
        tokio::spawn(committer(Arc::clone(&shared)));
        Group { shared }
    }

    /// Joins the open shared transaction (opening one if needed) with a savepoint of its own.
    pub(crate) async fn begin(&self) -> Result<GroupTx<'_>> {
        let mut writer = self.shared.writer.lock().await;
        writer.tidy().await;
        let opened = if writer.group.is_none() {
            // One round trip to the connection for both.
            let opened = writer
                .conn
                .execute(sqlx::raw_sql("BEGIN IMMEDIATE; SAVEPOINT member"))
                .await;
            if opened.is_err() {
                // The BEGIN may have succeeded and the SAVEPOINT not.
                let _ = writer.conn.execute(sqlx::raw_sql("ROLLBACK")).await;
            } else {
                writer.group = Some(watch::channel(None).0);
            }
            opened
        } else {
            writer.conn.execute(sqlx::raw_sql("SAVEPOINT member")).await
        };
        // On failure nothing is left to undo: the savepoint does not exist. An open group is not
        // left waiting: each writer already in it woke the committer when it left.
        opened?;
        let ending = writer
            .group
            .as_ref()
            .map(watch::Sender::subscribe)
            .expect("a group is open");
        Ok(GroupTx {
            writer: Some(writer),
            ending,
            shared: &self.shared,
        })
    }

    /// How many shared transactions have committed.
    #[cfg(test)]
    pub(crate) fn commits(&self) -> u64 {
        self.shared.commits.load(Ordering::Relaxed)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.wake.notify_one();
    }
}

/// Commits the open group whenever a writer has left the connection.
async fn committer(shared: Arc<Shared>) {
    loop {
        shared.wake.notified().await;
        let mut writer = shared.writer.lock().await;
        writer.tidy().await;
        if writer.end_group(Ok(())).await {
            shared.commits.fetch_add(1, Ordering::Relaxed);
        }
        drop(writer);
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
    }
}

/// One writer's part of a shared transaction: use it as the connection (`&mut *tx`), then
/// [`commit`](GroupTx::commit). Dropping it undoes what it wrote.
pub(crate) struct GroupTx<'g> {
    /// Held from `begin` until the savepoint is released (or abandoned).
    writer: Option<MutexGuard<'g, Writer>>,
    ending: watch::Receiver<Ending>,
    shared: &'g Shared,
}

impl GroupTx<'_> {
    /// Keeps what this writer wrote and returns once it is committed to disk.
    pub(crate) async fn commit(mut self) -> Result<()> {
        self.execute(sqlx::raw_sql("RELEASE member")).await?;
        // Released: from here the changes belong to the group, and leaving is not abandoning.
        self.writer = None;
        self.shared.wake.notify_one();
        let ending = self
            .ending
            .wait_for(Option::is_some)
            .await
            .map_err(|_| StoreError::Commit("the store closed before the commit".into()))?;
        match ending.as_ref() {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => Err(StoreError::Commit(e.to_string())),
            None => unreachable!("waited for an ending"),
        }
    }
}

impl Drop for GroupTx<'_> {
    fn drop(&mut self) {
        if let Some(mut writer) = self.writer.take() {
            writer.abandoned = true;
            drop(writer);
        }
        // Whether it committed or not, the committer must not leave the group open.
        self.shared.wake.notify_one();
    }
}

impl Deref for GroupTx<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        &self.writer.as_ref().expect("used before commit").conn
    }
}

impl DerefMut for GroupTx<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.writer.as_mut().expect("used before commit").conn
    }
}
