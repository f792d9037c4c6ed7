//! The writer thread and its group commit: the writes that queue up while one commit is on its way
//! to disk share the next.
//!
//! The embedded store has one writer connection and commits with `synchronous=FULL`, so every
//! commit waits for the disk. One transaction per write would make that wait the hub's speed limit
//! (one webhook, one step start, one step outcome per fsync), and handing every statement of a
//! write to a database thread and back costs a thread wake-up each. So a write is one job: a
//! closure with owned arguments that runs all its statements at once on the writer thread, which
//! owns the connection. The thread:
//!
//! - takes the first queued job, opens a *shared* transaction (`BEGIN IMMEDIATE`) and runs the job
//!   inside a savepoint of its own (or, for a job that makes its checks before its first change,
//!   without one: see [`Isolation`]);
//! - runs every further job already queued the same way, up to [`MAX_GROUP`];
//! - commits the shared transaction and only then answers every job of the group. Jobs that arrive
//!   while it waits for the disk queue up and form the next group, so groups grow with the load and
//!   a lone write waits for one commit.
//!
//! # Invariants
//!
//! - A job that fails (or panics) has its savepoint rolled back before the next job runs: none of
//!   its changes reach the disk, and the other jobs' changes are untouched. A job queued with
//!   [`Isolation::ChecksFirst`] runs without a savepoint: when it fails without having changed
//!   anything, the others are untouched likewise; when it fails after a change, the whole shared
//!   transaction is rolled back and every job in it gets the error (as when the commit fails).
//! - A caller is answered `Ok` only once the shared transaction holding its changes has committed.
//!   When the shared commit fails, or a savepoint cannot be rolled back, the whole shared
//!   transaction is rolled back and every job in it gets the error: nothing any of them wrote is
//!   on disk, and none was told otherwise.
//! - A job sees the uncommitted changes of the jobs before it in its group (they share the
//!   connection); if those never commit, neither does it.
//! - Jobs run, and commit, in the order they were queued, and every job of a group is answered
//!   before the next group begins: once a write has been answered, the result of every write
//!   queued before it is known ([`Writer::queue`] relies on this).
//! - A queued job runs even when its caller stops waiting (a client hung up, a future was
//!   dropped): the write stands, the caller just does not learn it. Callers that must not write
//!   after giving up check before they queue.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::{Result, StoreError};

/// The most jobs one shared transaction carries, so that a steady stream of writes still commits
/// (and answers its callers) regularly.
const MAX_GROUP: usize = 256;

/// How a group ended, as its jobs learn it.
type Ending = std::result::Result<(), Arc<str>>;

/// How a write is kept apart from the other writes of its group when it fails.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isolation {
    /// In a savepoint of its own: a failure at any point is undone alone.
    Savepoint,
    /// Without one, for a write that makes every check that can fail before its first change: a
    /// failure that changed nothing needs no undoing. Should such a write still fail after a change
    /// (a bug, or the disk failing), its whole group is rolled back and every write in it gets a
    /// retryable error. (A savepoint makes SQLite copy every page the write touches first; for the
    /// writes of every step that is a large part of the writer's work.)
    ChecksFirst,
}

/// One queued write, with its closure's result type erased.
trait Job: Send {
    /// How it is kept apart from the other jobs of its group.
    fn isolation(&self) -> Isolation;
    /// Runs the write on the connection; `true` when it succeeded (its changes are kept).
    fn run(&mut self, conn: &Connection) -> bool;
    /// Answers the caller once the group has ended.
    fn answer(self: Box<Self>, ending: &Ending);
}

struct Pending<F, R, A> {
    isolation: Isolation,
    write: Option<F>,
    result: Option<Result<R>>,
    /// Takes the answer, on the writer thread, before the next group starts.
    reply: A,
}

impl<F, R, A> Job for Pending<F, R, A>
where
    F: FnOnce(&Connection) -> Result<R> + Send,
    R: Send,
    A: FnOnce(Result<R>) + Send,
{
    fn isolation(&self) -> Isolation {
        self.isolation
    }

    fn run(&mut self, conn: &Connection) -> bool {
        let Some(write) = self.write.take() else {
            return false;
        };
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| write(conn)))
            .unwrap_or_else(|_| Err(StoreError::Internal("a write panicked".into())));
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn answer(self: Box<Self>, ending: &Ending) {
        let answer = match (self.result, ending) {
            // A failed write is answered with its own error: nothing of it was kept either way.
            (Some(Err(e)), _) => Err(e),
            (Some(Ok(value)), Ok(())) => Ok(value),
            (Some(Ok(_)), Err(e)) | (None, Err(e)) => Err(StoreError::Commit(e.to_string())),
            (None, Ok(())) => Err(StoreError::Internal("a write was never run".into())),
        };
        (self.reply)(answer);
    }
}

/// The writer thread's handle: queue writes with [`Writer::write`].
pub(crate) struct Writer {
    jobs: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
    /// Shared transactions committed so far (tests check that writes share them).
    #[cfg_attr(not(test), expect(dead_code, reason = "only tests read it"))]
    commits: Arc<AtomicU64>,
}

impl Writer {
    /// Starts the writer thread on `conn`, which must have no transaction open.
    pub(crate) fn start(conn: Connection) -> std::io::Result<Writer> {
        let (jobs, queue) = mpsc::channel();
        let commits = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&commits);
        let thread = std::thread::Builder::new()
            .name("weft-store-writer".into())
            .spawn(move || run(conn, queue, counter))?;
        Ok(Writer {
            jobs: Some(jobs),
            thread: Some(thread),
            commits,
        })
    }

    /// Runs `write` in the next group, kept apart from the group's other writes as `isolation`
    /// says, and returns its result once the group is committed to disk. When `write` fails,
    /// nothing it did is kept and its error is returned.
    pub(crate) async fn write<F, R>(&self, isolation: Isolation, write: F) -> Result<R>
    where
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        self.write_then(isolation, write, |_| {}).await
    }

    /// Runs `write` like [`Writer::write`], and `then` on the writer thread with its result once
    /// its group has ended, before the caller is answered and whether or not it still waits.
    pub(crate) async fn write_then<F, R, T>(
        &self,
        isolation: Isolation,
        write: F,
        then: T,
    ) -> Result<R>
    where
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
        T: FnOnce(&Result<R>) + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        // The caller may have given up waiting; its write stands regardless.
        self.queue(isolation, write, move |result| {
            then(&result);
            let _ = reply.send(result);
        })?;
        answer.await.map_err(|_| closed())?
    }

    /// Queues `write` like [`Writer::write`] without waiting for it: `answer` gets its result on the
    /// writer thread once its group has ended, before any write queued after it runs in a later
    /// group. Writes run and commit in the order they are queued. Fails only when the store is
    /// closed, and then `answer` is not called.
    pub(crate) fn queue<F, R, A>(&self, isolation: Isolation, write: F, answer: A) -> Result<()>
    where
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
        A: FnOnce(Result<R>) + Send + 'static,
    {
        let job = Box::new(Pending {
            isolation,
            write: Some(write),
            result: None,
            reply: answer,
        });
        self.jobs
            .as_ref()
            .ok_or_else(closed)?
            .send(job)
            .map_err(|_| closed())
    }

    /// How many shared transactions have committed.
    #[cfg(test)]
    pub(crate) fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread once the writes queued so far are committed.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn closed() -> StoreError {
    StoreError::Commit("the store is closed".into())
}

/// The writer thread: groups queued jobs into shared transactions until the queue closes.
fn run(conn: Connection, queue: mpsc::Receiver<Box<dyn Job>>, commits: Arc<AtomicU64>) {
    let mut group: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_GROUP);
    while let Ok(first) = queue.recv() {
        let ending = match control(&conn, "BEGIN IMMEDIATE") {
            Ok(()) => {
                let mut next = Some(first);
                let mut broken = None;
                while let Some(mut job) = next.take() {
                    let run = match job.isolation() {
                        Isolation::Savepoint => savepoint(&conn, job.as_mut()),
                        Isolation::ChecksFirst => checks_first(&conn, job.as_mut()),
                    };
                    if let Err(e) = run {
                        broken = Some(e);
                    }
                    group.push(job);
                    if broken.is_some() || group.len() >= MAX_GROUP {
                        break;
                    }
                    next = queue.try_recv().ok();
                }
                end(&conn, broken)
            }
            Err(e) => {
                group.push(first);
                Err(Arc::from(format!("a transaction could not begin: {e}")))
            }
        };
        if ending.is_ok() {
            commits.fetch_add(1, Ordering::Relaxed);
        }
        for job in group.drain(..) {
            job.answer(&ending);
        }
    }
}

/// Runs one job in a savepoint, keeping its changes when it succeeded and undoing them when not.
/// An error means the savepoint could not be handled and the shared transaction must be abandoned.
fn savepoint(conn: &Connection, job: &mut dyn Job) -> std::result::Result<(), Arc<str>> {
    control(conn, "SAVEPOINT member")
        .map_err(|e| Arc::from(format!("a write could not start its savepoint: {e}")))?;
    let kept = if job.run(conn) {
        control(conn, "RELEASE member")
    } else {
        control(conn, "ROLLBACK TO member").and_then(|()| control(conn, "RELEASE member"))
    };
    kept.map_err(|e| {
        Arc::from(format!(
            "a write could not be kept or undone alone ({e}), so its whole group was rolled back"
        ))
    })
}

/// Runs one job without a savepoint; an error means it failed after changing the database (or
/// SQLite gave up the transaction), so the shared transaction must be abandoned.
fn checks_first(conn: &Connection, job: &mut dyn Job) -> std::result::Result<(), Arc<str>> {
    let before = conn.total_changes();
    if job.run(conn) {
        return Ok(());
    }
    if conn.is_autocommit() {
        return Err(Arc::from(
            "a write failed and SQLite rolled back its transaction, so its whole group was rolled back",
        ));
    }
    if conn.total_changes() != before {
        return Err(Arc::from(
            "a write failed after changing the database, so its whole group was rolled back",
        ));
    }
    Ok(())
}

/// Ends the shared transaction: commits it unless `broken`, otherwise (or when the commit fails)
/// rolls it back.
fn end(conn: &Connection, broken: Option<Arc<str>>) -> Ending {
    let ending = match broken {
        None => control(conn, "COMMIT").map_err(|e| Arc::from(format!("the commit failed: {e}"))),
        Some(e) => Err(e),
    };
    if ending.is_err() {
        // The transaction may already be gone (SQLite rolls back by itself on some errors).
        let _ = control(conn, "ROLLBACK");
    }
    ending
}

/// Runs a transaction-control statement, prepared once (every write runs two).
fn control(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A write that panics half-way is undone like a failed one, and the writer goes on.
    #[tokio::test]
    async fn a_panicking_write_is_undone_and_the_writer_goes_on() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (n INTEGER)").unwrap();
        let writer = Writer::start(conn).unwrap();
        let panicked: Result<()> = writer
            .write(Isolation::Savepoint, |c| {
                c.execute("INSERT INTO t VALUES (1)", [])?;
                panic!("a bug in a write");
            })
            .await;
        assert!(
            matches!(panicked, Err(StoreError::Internal(_))),
            "{panicked:?}"
        );
        let sum: i64 = writer
            .write(Isolation::Savepoint, |c| {
                c.execute("INSERT INTO t VALUES (2)", [])?;
                Ok(c.query_row("SELECT sum(n) FROM t", [], |r| r.get(0))?)
            })
            .await
            .unwrap();
        assert_eq!(sum, 2, "the panicked write's row was kept");
    }

    /// A write of the tests below.
    type TestJob = Box<dyn FnOnce(&Connection) -> Result<()> + Send>;

    /// Queues a job that holds the writer until `release` is sent, then `jobs`: they all form one
    /// group. Returns which of them (the holder first) were answered `Ok`.
    fn one_group(writer: &Writer, jobs: Vec<(Isolation, TestJob)>) -> Vec<bool> {
        let (answers, answered) = std::sync::mpsc::channel::<(usize, bool)>();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let answer = |i: usize| {
            let answers = answers.clone();
            move |r: Result<()>| {
                let _ = answers.send((i, r.is_ok()));
            }
        };
        writer
            .queue(
                Isolation::Savepoint,
                move |_: &Connection| {
                    let _ = hold.recv();
                    Ok(())
                },
                answer(0),
            )
            .unwrap();
        let count = jobs.len() + 1;
        for (i, (isolation, job)) in jobs.into_iter().enumerate() {
            writer.queue(isolation, job, answer(i + 1)).unwrap();
        }
        release.send(()).unwrap();
        let mut ok = vec![false; count];
        for _ in 0..count {
            let (i, answer) = answered.recv().unwrap();
            ok[i] = answer;
        }
        ok
    }

    /// A write without a savepoint that fails before changing anything leaves the others of its
    /// group alone; one that fails after a change takes the writes of its group before it down
    /// with it, and nothing of them is kept.
    #[test]
    fn a_write_without_savepoint_that_fails_after_a_change_undoes_its_group() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (n INTEGER)").unwrap();
        let writer = Writer::start(conn).unwrap();
        fn insert(n: i64) -> TestJob {
            Box::new(move |c| {
                c.execute("INSERT INTO t VALUES (?1)", [n])?;
                Ok(())
            })
        }
        let commits = writer.commits();
        let checked_and_refused: TestJob = Box::new(|c| {
            let _: i64 = c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?;
            Err(StoreError::Conflict("refused before any change".into()))
        });
        let ok = one_group(
            &writer,
            vec![
                (Isolation::ChecksFirst, insert(1)),
                (Isolation::ChecksFirst, checked_and_refused),
                (Isolation::Savepoint, insert(2)),
            ],
        );
        assert_eq!(ok, [true, true, false, true]);
        assert_eq!(
            writer.commits(),
            commits + 1,
            "the jobs did not share a group"
        );

        let changed_then_failed: TestJob = Box::new(|c| {
            c.execute("INSERT INTO t VALUES (100)", [])?;
            Err(StoreError::Conflict("failed after a change".into()))
        });
        let ok = one_group(
            &writer,
            vec![
                (Isolation::ChecksFirst, insert(10)),
                (Isolation::ChecksFirst, changed_then_failed),
                (Isolation::Savepoint, insert(20)),
            ],
        );
        // The group ends at the failed write; the one queued after it goes into the next group.
        assert_eq!(ok, [false, false, false, true]);

        let sum = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            runtime.block_on(writer.write(Isolation::Savepoint, |c| {
                Ok(c.query_row("SELECT sum(n) FROM t", [], |r| r.get::<_, i64>(0))?)
            }))
        })
        .join()
        .unwrap()
        .unwrap();
        assert_eq!(sum, 1 + 2 + 20, "a write of the failed group was kept");
    }
}
