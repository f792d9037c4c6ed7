//! The embedded store: SQLite in WAL mode, one writer thread and a few reader connections.
//!
//! Every write is one closure run on the [writer thread](crate::writer) in a transaction of its own
//! (a savepoint of the shared transaction that group commit commits); every write about a running
//! run first checks the caller's lease (the fence), so a stale process changes nothing. Reads run
//! on [reader connections](crate::readers). A process announces that it is alive by holding an
//! exclusive lock on `nodes/<node id>.lock` next to the database; when the lock of a lease's owner
//! can be taken, the owner died and its runs are claimed at once instead of after the lease
//! expires.
//!
//! Arguments are copied into the closures (they outlive the caller's borrow); JSON is serialised
//! before the write is queued, so that the one writer thread does only SQL.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, ToSql, params};
use serde_json::Value;
use sha2::{Digest, Sha256};
use weft_core::auth::Role;
use weft_core::{AttemptState, RunState, StepKey};

use crate::readers::Readers;
use crate::writer::{Isolation, Writer};
use crate::{
    ApprovalRecord, ApprovalState, AttemptRecord, AuditEntry, CancelOutcome, ClaimScope, Claimed,
    Created, Deliver, Fence, Lease, Millis, NewApproval, NewRun, Outcome, Overview, Result,
    RunCount, RunFilter, RunRecord, SecretRecord, Store, StoreError, StoredVersion, TokenRecord,
};

/// The newest schema version this code knows.
const SCHEMA_VERSION: i64 = 11;

const SCHEMA_V1: &str = r#"
CREATE TABLE versions (
    version    TEXT PRIMARY KEY,
    workflow   TEXT NOT NULL,
    file       TEXT NOT NULL,
    source     TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE runs (
    id               TEXT PRIMARY KEY,
    workflow         TEXT NOT NULL,
    version          TEXT NOT NULL REFERENCES versions(version),
    state            TEXT NOT NULL,
    root_id          TEXT NOT NULL,
    parent_id        TEXT,
    parent_step      TEXT,
    depth            INTEGER NOT NULL DEFAULT 0,
    idempotency_key  TEXT,
    trigger          TEXT NOT NULL,
    input            TEXT NOT NULL,
    output           TEXT,
    error            TEXT,
    wake_at          INTEGER,
    lease_owner      TEXT,
    lease_until      INTEGER,
    lease_epoch      INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    updated_at       INTEGER NOT NULL
);
CREATE UNIQUE INDEX runs_idempotency ON runs(workflow, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE INDEX runs_active ON runs(state, wake_at) WHERE state IN ('queued', 'running', 'waiting');
CREATE INDEX runs_root ON runs(root_id) WHERE state IN ('queued', 'running', 'waiting');
CREATE INDEX runs_parent ON runs(parent_id, parent_step) WHERE parent_id IS NOT NULL;
CREATE INDEX runs_workflow ON runs(workflow, id);
CREATE TABLE attempts (
    run_id       TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step_key     TEXT NOT NULL,
    attempt      INTEGER NOT NULL,
    state        TEXT NOT NULL,
    input        TEXT,
    input_blob   TEXT,
    output       TEXT,
    output_blob  TEXT,
    error        TEXT,
    wake_at      INTEGER,
    budget_reset INTEGER NOT NULL DEFAULT 0,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER,
    UNIQUE (run_id, step_key, attempt)
);
CREATE TABLE blobs (
    hash       TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    data       TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
"#;

/// Version 2: trigger state (a schedule's last slot, a poll's cursor) and an index for retention.
const SCHEMA_V2: &str = r#"
CREATE TABLE trigger_state (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX runs_finished ON runs(finished_at) WHERE parent_id IS NULL AND finished_at IS NOT NULL;
"#;

/// Version 3: approvals that waiting runs ask for, and their answers.
const SCHEMA_V3: &str = r#"
CREATE TABLE approvals (
    id          TEXT PRIMARY KEY,
    run_id      TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    step_key    TEXT NOT NULL,
    attempt     INTEGER NOT NULL,
    workflow    TEXT NOT NULL,
    message     TEXT NOT NULL,
    data        TEXT NOT NULL,
    state       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    answered_at INTEGER,
    answer      TEXT,
    answered_by TEXT,
    UNIQUE (run_id, step_key, attempt)
);
CREATE INDEX approvals_pending ON approvals(created_at) WHERE state = 'pending';
"#;

/// Version 4: conversation state (`state.get/set/delete` steps), keys in namespaces.
const SCHEMA_V4: &str = r#"
CREATE TABLE kv_state (
    namespace  TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    expires_at INTEGER,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, key)
) WITHOUT ROWID;
CREATE INDEX kv_state_expiry ON kv_state(expires_at) WHERE expires_at IS NOT NULL;
"#;

/// Version 5: API tokens, by the SHA-256 of their secret (the secret itself is never stored).
const SCHEMA_V5: &str = r#"
CREATE TABLE tokens (
    id         TEXT PRIMARY KEY,
    hash       TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL,
    tools      TEXT,
    name       TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER,
    revoked_at INTEGER
) WITHOUT ROWID;
"#;

/// Version 6: the audit log, appended to and read, never changed.
const SCHEMA_V6: &str = r#"
CREATE TABLE audit (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL,
    details TEXT NOT NULL
);
"#;

/// Version 7: every run by its tree, for erasing whole trees without a scan.
const SCHEMA_V7: &str = r#"
CREATE INDEX runs_tree ON runs(root_id);
"#;

/// Version 8: the secret store, each value encrypted by the caller (the store never sees it clear).
const SCHEMA_V8: &str = r#"
CREATE TABLE secrets (
    name       TEXT PRIMARY KEY,
    key_id     TEXT NOT NULL,
    nonce      BLOB NOT NULL,
    ciphertext BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) WITHOUT ROWID;
"#;

/// Version 9: indexes that let claiming walk only the runnable runs in the order it takes them
/// (queued and running runs by when they became due, waiting runs by their wake time), and find a
/// node's running runs, instead of scanning every run ever kept. `runs_root` goes: `runs_tree`
/// (version 7) indexes the same column for every run, and each index costs every write of a run.
const SCHEMA_V9: &str = r#"
CREATE INDEX runs_queue ON runs(COALESCE(wake_at, created_at), id) WHERE state IN ('queued', 'running');
CREATE INDEX runs_waiting ON runs(wake_at, id) WHERE state = 'waiting';
CREATE INDEX runs_running ON runs(lease_owner, lease_until) WHERE state = 'running';
DROP INDEX runs_root;
"#;

/// Version 10: one row that [`Store::check_writable`] rewrites, to see that a write commits.
const SCHEMA_V10: &str = r#"
CREATE TABLE write_probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at INTEGER NOT NULL
);
"#;

/// Version 11: console sessions are tokens too, each with the token it was signed in with
/// (`parent`), and end with it.
const SCHEMA_V11: &str = r#"
ALTER TABLE tokens ADD COLUMN parent TEXT;
CREATE INDEX tokens_parent ON tokens(parent) WHERE parent IS NOT NULL;
"#;

const TOKEN_COLUMNS: &str =
    "id, hash, role, tools, name, created_at, expires_at, revoked_at, parent";

const APPROVAL_SELECT: &str = "SELECT a.id, a.run_id, a.step_key, a.attempt, a.workflow, a.message, a.data, a.state, a.created_at, a.expires_at, a.answered_at, a.answer, a.answered_by, r.state AS run_state FROM approvals a JOIN runs r ON r.id = a.run_id";

const RUN_COLUMNS: &str = "id, workflow, version, state, root_id, parent_id, parent_step, depth, idempotency_key, trigger, input, output, error, wake_at, cancel_requested, created_at, started_at, finished_at, lease_owner, lease_epoch";

/// How many reader connections the store keeps at most.
const READERS: usize = 4;

/// How to open a [`SqliteStore`].
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// The database file; its folder also holds the node lock files.
    pub path: PathBuf,
    /// Inputs and outputs longer than this many bytes of JSON go to the blob table.
    pub inline_limit: usize,
    /// `synchronous=FULL` (every commit survives a power cut) rather than `NORMAL` (every commit
    /// survives a crash of the process).
    pub sync_full: bool,
}

impl SqliteOptions {
    /// Options for the database at `path` with the default limits.
    pub fn new(path: impl Into<PathBuf>) -> SqliteOptions {
        SqliteOptions {
            path: path.into(),
            inline_limit: 64 * 1024,
            sync_full: true,
        }
    }
}

/// Holds this process's node lock file for as long as the store lives.
struct NodeLock {
    id: String,
    path: PathBuf,
    _file: File,
}

impl Drop for NodeLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The embedded SQLite store.
pub struct SqliteStore {
    /// The writer thread, dropped first: the writes queued before the store goes still commit.
    pub(crate) writer: Writer,
    pub(crate) readers: Readers,
    /// This process's node, shared with the writes that need to know which owners are dead.
    nodes: Arc<Nodes>,
    inline_limit: usize,
    /// Leases under which a queued outcome could not be stored.
    unsettled: Arc<Unsettled>,
    /// Workflow versions known to be committed (versions are never deleted), so that creating a
    /// run does not write its version again.
    stored_versions: Mutex<HashSet<String>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database and its schema, and registers this process as a node.
    pub async fn open(options: SqliteOptions) -> Result<SqliteStore> {
        let shown = options.path.display().to_string();
        let open_err = move |message: String| StoreError::Open {
            path: shown.clone(),
            message,
        };
        let dir = options
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let nodes_dir = dir.join("nodes");
        std::fs::create_dir_all(&nodes_dir).map_err(|e| open_err(e.to_string()))?;
        // Run data and token hashes are for this user's eyes only, like the master key.
        private_files(&dir, &options.path).map_err(|e| open_err(e.to_string()))?;
        let lost_log = log_lost(&nodes_dir, &options.path);
        let node = lock_node(&nodes_dir)
            .map_err(|e| open_err(format!("cannot create a node lock: {e}")))?;

        let (path, sync_full) = (options.path.clone(), options.sync_full);
        let opening = open_err.clone();
        let conn = tokio::task::spawn_blocking(move || {
            // Another process creating or migrating the same new database holds it for a moment
            // (switching to WAL, the first VACUUM), which SQLite reports as busy at once rather
            // than waiting: try again for a while before giving up.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                let attempt = connect(&path, sync_full, false)
                    .map_err(|e| opening(e.to_string()))
                    .and_then(|mut conn| migrate(&mut conn).map(|()| conn));
                match attempt {
                    Err(e)
                        if e.to_string().contains("database is locked")
                            && std::time::Instant::now() < deadline =>
                    {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    other => break other,
                }
            }
        })
        .await
        .map_err(|e| open_err(e.to_string()))??;
        let writer = Writer::start(conn)
            .map_err(|e| open_err(format!("cannot start the writer thread: {e}")))?;
        let path = options.path.clone();
        let readers = Readers::new(READERS, move || connect(&path, sync_full, true));
        if let Some(stopped) = lost_log {
            tracing::error!(
                database = %options.path.display(),
                "{stopped} stopped without closing the store, and its write-ahead log ({}-wal) is gone: what was committed after the last checkpoint, acknowledged webhooks and messages included, is lost. The log must stay next to the database while Weft is down; if it was moved or deleted, put it back from a backup before starting again.",
                options.path.display()
            );
        }
        Ok(SqliteStore {
            writer,
            readers,
            nodes: Arc::new(Nodes {
                lock: node,
                dir: nodes_dir,
                dead: Mutex::new(HashSet::new()),
            }),
            inline_limit: options.inline_limit,
            unsettled: Arc::default(),
            stored_versions: Mutex::new(HashSet::new()),
        })
    }

    /// Runs `write` in a transaction of its own on the writer thread; returns once it is committed
    /// to disk (see [`crate::writer`]).
    async fn write<F, R>(&self, write: F) -> Result<R>
    where
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        self.writer.write(Isolation::Savepoint, write).await
    }

    /// Runs `write` like [`SqliteStore::write`] but without a savepoint of its own: for writes that
    /// make every check that can fail before their first change (see [`Isolation::ChecksFirst`]).
    /// The writes of every run step are such.
    async fn write_checked<F, R>(&self, write: F) -> Result<R>
    where
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        self.writer.write(Isolation::ChecksFirst, write).await
    }

    /// Creates runs and stores the trigger's state, in one write; with a claim, the runs are
    /// created under it and the new ones' claims are delivered on the writer thread once committed
    /// (see [`Store::create_claimed_runs`]).
    async fn insert_runs(
        &self,
        runs: &[NewRun],
        state: Option<(&str, &Value)>,
        now: Millis,
        claim: Option<(Claim, Deliver)>,
    ) -> Result<Vec<Created>> {
        let inserts: Vec<RunInsert> = {
            let known = self
                .stored_versions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            runs.iter()
                .map(|r| RunInsert::new(r, known.contains(&r.version)))
                .collect()
        };
        // The versions this write stores, by the position of their run.
        let storing: Vec<Option<String>> = inserts
            .iter()
            .map(|r| r.source.as_ref().map(|_| r.version.clone()))
            .collect();
        // The claims, built before the write so that the writer thread can deliver them.
        let (claim, deliver) = match claim {
            Some((claim, deliver)) => {
                let claims: Vec<Claimed> = inserts
                    .iter()
                    .zip(runs)
                    .map(|(insert, run)| claimed_record(&insert.id, run, &claim.owner))
                    .collect();
                (Some(claim), Some((claims, deliver)))
            }
            None => (None, None),
        };
        let state = state.map(|(key, value)| (key.to_string(), value.to_string()));
        let write = move |c: &Connection| {
            let mut created = Vec::with_capacity(inserts.len());
            for run in &inserts {
                created.push(insert_run(c, run, claim.as_ref())?);
            }
            if let Some((key, value)) = &state {
                exec(
                    c,
                    "INSERT INTO trigger_state (key, value, updated_at) VALUES (?1, ?2, ?3) ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
                    params![key, value, now],
                )?;
            }
            Ok(created)
        };
        // Delivered on the writer thread once the group has committed, whether or not this caller
        // still waits: a run created claimed always reaches its executor.
        let delivered = move |result: &Result<Vec<Created>>| {
            if let (Ok(created), Some((claims, deliver))) = (result, deliver) {
                let new = created
                    .iter()
                    .zip(claims)
                    .filter(|(c, _)| matches!(c, Created::New(_)))
                    .map(|(_, claimed)| claimed)
                    .collect();
                deliver(new);
            }
        };
        let created = self
            .writer
            .write_then(Isolation::ChecksFirst, write, delivered)
            .await?;
        // Only a run created here stored its version: a de-duplicated one may belong to another
        // version of its workflow.
        let mut known = self
            .stored_versions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for (version, c) in storing.into_iter().zip(&created) {
            if let (Some(version), Created::New(_)) = (version, c) {
                known.insert(version);
            }
        }
        drop(known);
        Ok(created)
    }

    /// Runs `read` on a reader connection.
    async fn read<F, R>(&self, read: F) -> Result<R>
    where
        F: FnOnce(&Connection) -> Result<R> + Send + 'static,
        R: Send + 'static,
    {
        self.readers.read(read).await
    }

    /// Erases one batch of run trees (see [`Store::erase_trees`]) in one transaction.
    async fn erase_batch(&self, roots: Vec<String>) -> Result<(u64, u64)> {
        let (deleted, skipped) = self
            .write(move |c| {
                let (mut deleted, mut skipped) = (0u64, 0u64);
                for root in &roots {
                    let unfinished: i64 = c.prepare_cached(
                        "SELECT COUNT(*) FROM runs WHERE root_id = ?1 AND state IN ('queued', 'running', 'waiting')",
                    )?
                    .query_row([root], |r| r.get(0))?;
                    if unfinished > 0 {
                        skipped += 1;
                        continue;
                    }
                    deleted += exec(c, "DELETE FROM runs WHERE root_id = ?1", [root])? as u64;
                }
                drop_orphan_blobs(c, deleted > 0)?;
                Ok((deleted, skipped))
            })
            .await?;
        self.vacuum(deleted > 0).await?;
        Ok((deleted, skipped))
    }

    /// Gives the space freed by deleted runs back to the file system, as a write of its own.
    async fn vacuum(&self, deleted: bool) -> Result<()> {
        if deleted {
            self.write(|c| Ok(c.execute_batch("PRAGMA incremental_vacuum")?))
                .await?;
        }
        Ok(())
    }

    /// Queues a fenced write under `lease` without waiting for it (see
    /// [`Store::queue_finish_attempt`]). When it fails, or its group does not commit, the lease is
    /// marked unsettled before any later write runs: at once when the write itself fails (a later
    /// write of the same group must not build on it), when its group ends otherwise.
    fn queue<F>(&self, lease: Lease, write: F)
    where
        F: FnOnce(&Connection, &Lease, &Unsettled) -> Result<Fence> + Send + 'static,
    {
        let run = {
            let (unsettled, lease) = (Arc::clone(&self.unsettled), lease.clone());
            move |c: &Connection| {
                // A panic is caught here too (the writer catches it as well), so that it marks the
                // lease before the group's next write runs.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    write(c, &lease, &unsettled)
                }))
                .unwrap_or_else(|_| Err(StoreError::Internal("a write panicked".into())));
                if let Err(e) = &result {
                    unsettled.mark(&lease, e);
                }
                result
            }
        };
        let ended = {
            let (unsettled, lease) = (Arc::clone(&self.unsettled), lease.clone());
            move |result: Result<Fence>| {
                if let Err(e) = result {
                    unsettled.mark(&lease, &e);
                }
            }
        };
        if let Err(e) = self.writer.queue(Isolation::ChecksFirst, run, ended) {
            self.unsettled.mark(&lease, &e);
        }
    }

    /// An outcome as a write job carries it, its output prepared for storage.
    fn outcome_row(&self, outcome: &Outcome, now: Millis) -> OutcomeRow {
        OutcomeRow {
            state: outcome.state,
            output: self.payload(outcome.output.as_deref()),
            error: outcome.error.clone(),
            wake_at: outcome.wake_at,
            now,
        }
    }

    /// Prepares a payload for storage: inline when small, otherwise by its hash in the blob table.
    fn payload(&self, json: Option<&str>) -> Payload {
        match json {
            None => Payload::None,
            Some(json) if json.len() <= self.inline_limit => Payload::Inline(json.to_string()),
            Some(json) => Payload::Blob {
                hash: Sha256::digest(json.as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect(),
                json: json.to_string(),
            },
        }
    }
}

/// This process's node (its lock file) and what it learned of the others.
struct Nodes {
    lock: NodeLock,
    /// The folder of the node lock files.
    dir: PathBuf,
    /// Owners known to be dead, so their lock files are not checked again.
    dead: Mutex<HashSet<String>>,
}

impl Nodes {
    /// Whether the process that owns `owner`'s leases is gone. Its lock file is free (or missing)
    /// exactly when it died.
    fn owner_dead(&self, owner: &str) -> bool {
        if owner == self.lock.id {
            return false;
        }
        if self.dead.lock().map(|d| d.contains(owner)).unwrap_or(false) {
            return true;
        }
        if !owner.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return false;
        }
        let path = self.dir.join(format!("{owner}.lock"));
        let dead = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(file) => match file.try_lock() {
                Ok(()) => {
                    let _ = std::fs::remove_file(&path);
                    true
                }
                Err(_) => false,
            },
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        };
        if dead && let Ok(mut d) = self.dead.lock() {
            d.insert(owner.to_string());
        }
        dead
    }

    /// The owners of live-looking leases whose processes are in fact gone, as a JSON array. Runs
    /// inside the write that needs it, so a claim is one job; the lock files are looked at only
    /// when other processes hold leases.
    fn dead_owners(&self, c: &Connection, now: Millis) -> Result<String> {
        let owners: Vec<String> = rows(
            c,
            "SELECT DISTINCT lease_owner FROM runs WHERE lease_owner IS NOT NULL AND lease_owner <> ?1 AND lease_until >= ?2 AND state IN ('queued', 'running', 'waiting')",
            params![self.lock.id, now],
            |r| Ok(r.get(0)?),
        )?;
        let dead: Vec<String> = owners.into_iter().filter(|o| self.owner_dead(o)).collect();
        Ok(serde_json::to_string(&dead).unwrap_or_else(|_| "[]".into()))
    }
}

/// A payload on its way to the store (see [`SqliteStore::payload`]).
enum Payload {
    None,
    Inline(String),
    Blob { hash: String, json: String },
}

impl Payload {
    /// Stores a large payload once in the blob table. Returns (inline text, blob hash).
    fn store(self, c: &Connection, now: Millis) -> Result<(Option<String>, Option<String>)> {
        match self {
            Payload::None => Ok((None, None)),
            Payload::Inline(json) => Ok((Some(json), None)),
            Payload::Blob { hash, json } => {
                exec(
                    c,
                    "INSERT OR IGNORE INTO blobs (hash, size, data, created_at) VALUES (?1, ?2, ?3, ?4)",
                    params![hash, json.len() as i64, json, now],
                )?;
                Ok((None, Some(hash)))
            }
        }
    }
}

/// Drops the payloads no attempt refers to any more, after runs were deleted.
fn drop_orphan_blobs(c: &Connection, deleted: bool) -> Result<()> {
    if deleted {
        exec(
            c,
            "DELETE FROM blobs WHERE hash NOT IN (SELECT input_blob FROM attempts WHERE input_blob IS NOT NULL UNION SELECT output_blob FROM attempts WHERE output_blob IS NOT NULL)",
            [],
        )?;
    }
    Ok(())
}

/// Checks the lease; every fenced write starts here.
///
/// A read, not a write: the writer's transaction holds the database's write lock, so the lease
/// cannot change between this check and the writes after it. (Touching the run here cost a
/// rewrite of its row, and a page written to disk, for every step start and outcome.)
fn fence(c: &Connection, lease: &Lease, unsettled: &Unsettled) -> Result<Fence> {
    unsettled.check(lease)?;
    let cancel: Option<i64> = row(
        c,
        "SELECT cancel_requested FROM runs WHERE id = ?1 AND lease_owner = ?2 AND lease_epoch = ?3 AND state = 'running'",
        params![lease.run_id, lease.owner, lease.epoch],
        |r| Ok(r.get(0)?),
    )?;
    match cancel {
        Some(c) => Ok(Fence {
            cancel_requested: c != 0,
        }),
        None => Err(StoreError::LeaseLost {
            run: lease.run_id.clone(),
        }),
    }
}

/// The leases under which a queued outcome could not be stored (see
/// [`Store::queue_finish_attempt`]): a later fenced write under one of them fails. Marked and
/// checked on the writer thread, so a mark is in place before any later write runs.
#[derive(Default)]
struct Unsettled {
    /// Whether any lease is marked: the check on every fenced write takes no lock otherwise.
    any: AtomicBool,
    /// Why, by run and lease epoch.
    leases: Mutex<HashMap<(String, i64), String>>,
}

impl Unsettled {
    fn mark(&self, lease: &Lease, error: &StoreError) {
        // A lost lease fences off every later write by itself.
        if matches!(error, StoreError::LeaseLost { .. }) {
            return;
        }
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        leases
            .entry((lease.run_id.clone(), lease.epoch))
            .or_insert_with(|| error.to_string());
        self.any.store(true, Ordering::Release);
    }

    fn check(&self, lease: &Lease) -> Result<()> {
        if !self.any.load(Ordering::Acquire) {
            return Ok(());
        }
        let leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        match leases.get(&(lease.run_id.clone(), lease.epoch)) {
            Some(message) => Err(StoreError::Unsettled {
                run: lease.run_id.clone(),
                message: message.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Forgets a lease that was given up.
    fn forget(&self, lease: &Lease) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let mut leases = self.leases.lock().unwrap_or_else(|p| p.into_inner());
        leases.remove(&(lease.run_id.clone(), lease.epoch));
        self.any.store(!leases.is_empty(), Ordering::Release);
    }
}

/// Stores the outcome of an existing attempt row (see [`Store::finish_attempt`]).
fn finish_attempt(
    c: &Connection,
    lease: &Lease,
    step: &StepKey,
    attempt: u32,
    outcome: OutcomeRow,
    unsettled: &Unsettled,
) -> Result<Fence> {
    let fence = fence(c, lease, unsettled)?;
    let (inline, blob) = outcome.output.store(c, outcome.now)?;
    let finished = (outcome.state != AttemptState::Waiting).then_some(outcome.now);
    let updated = exec(
        c,
        "UPDATE attempts SET state = ?4, output = ?5, output_blob = ?6, error = ?7, wake_at = COALESCE(?8, wake_at), finished_at = ?9 WHERE run_id = ?1 AND step_key = ?2 AND attempt = ?3",
        params![
            lease.run_id,
            step.as_str(),
            attempt,
            outcome.state.as_str(),
            inline,
            blob,
            outcome.error,
            outcome.wake_at,
            finished
        ],
    )?;
    if updated == 0 {
        return Err(StoreError::Corrupt(format!(
            "run {} has no attempt {attempt} of step {step} to finish",
            lease.run_id
        )));
    }
    Ok(fence)
}

/// Stores a whole attempt (see [`Store::record_attempt`]).
fn record_attempt(
    c: &Connection,
    lease: &Lease,
    step: &StepKey,
    attempt: u32,
    input: Payload,
    outcome: OutcomeRow,
    unsettled: &Unsettled,
) -> Result<Fence> {
    let fence = fence(c, lease, unsettled)?;
    let (input, input_blob) = input.store(c, outcome.now)?;
    let (output, output_blob) = outcome.output.store(c, outcome.now)?;
    exec(
        c,
        "INSERT INTO attempts (run_id, step_key, attempt, state, input, input_blob, output, output_blob, error, wake_at, started_at, finished_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
        params![
            lease.run_id,
            step.as_str(),
            attempt,
            outcome.state.as_str(),
            input,
            input_blob,
            output,
            output_blob,
            outcome.error,
            outcome.wake_at,
            outcome.now
        ],
    )?;
    Ok(fence)
}

/// An attempt's outcome as a write job carries it.
struct OutcomeRow {
    state: AttemptState,
    output: Payload,
    error: Option<String>,
    wake_at: Option<Millis>,
    now: Millis,
}

fn run_state(c: &Connection, id: &str) -> Result<RunState> {
    let state: Option<String> = row(c, "SELECT state FROM runs WHERE id = ?1", [id], |r| {
        Ok(r.get(0)?)
    })?;
    let state = state.ok_or_else(|| StoreError::NotFound(id.to_string()))?;
    parse_state(&state)
}

/// Runs a statement (prepared once per connection) and returns how many rows it changed.
fn exec(c: &Connection, sql: &str, params: impl rusqlite::Params) -> Result<usize> {
    Ok(c.prepare_cached(sql)?.execute(params)?)
}

/// Runs a query (prepared once per connection) and maps every row with `f`.
fn rows<T>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl Fn(&Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut statement = c.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(f(row)?);
    }
    Ok(out)
}

/// Runs a query (prepared once per connection) and maps its first row, if any, with `f`.
fn row<T>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    f: impl FnOnce(&Row<'_>) -> Result<T>,
) -> Result<Option<T>> {
    let mut statement = c.prepare_cached(sql)?;
    let mut rows = statement.query(params)?;
    rows.next()?.map(f).transpose()
}

/// Opens a connection to the database: the writer's (creating the file) or a read-only one.
fn connect(path: &Path, sync_full: bool, read_only: bool) -> rusqlite::Result<Connection> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(64);
    // Plans must not depend on bound values: SQLite otherwise re-prepares a statement whenever a
    // parameter it planned with (such as a `LIMIT ?`) is bound again, which for the claim, run on
    // every turn of the work loop, was a third of its cost.
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    if !read_only {
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
        conn.pragma_update(
            None,
            "synchronous",
            if sync_full { "FULL" } else { "NORMAL" },
        )?;
        conn.pragma_update(None, "foreign_keys", true)?;
    }
    Ok(conn)
}

/// Makes the store's folder `0700` and the database, its write-ahead log and shared-memory file
/// `0600` (SQLite gives the files it creates the database file's mode, so the database is created
/// with it before SQLite opens it).
#[cfg(unix)]
fn private_files(dir: &Path, db: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tighten = |path: &Path, mode: u32| -> std::io::Result<()> {
        match std::fs::metadata(path) {
            Ok(meta) if meta.permissions().mode() & 0o777 & !mode != 0 => {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            }
            _ => Ok(()),
        }
    };
    tighten(dir, 0o700)?;
    tighten(&dir.join("nodes"), 0o700)?;
    if !db.exists() {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(db)?;
    }
    for suffix in ["", "-wal", "-shm"] {
        let mut path = db.as_os_str().to_owned();
        path.push(suffix);
        tighten(Path::new(&path), 0o600)?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn private_files(_dir: &Path, _db: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Looks for the lock files of processes that stopped without closing the store (a crash, a
/// SIGKILL: the file is left and nobody holds its lock) and removes them. When there was one and
/// the database's write-ahead log is missing, that log was deleted or lost after the crash, and with
/// it whatever had not yet been checkpointed into the database: says which process it was. (A
/// store closed cleanly has no log; one left by a crash always does, so nothing else explains it.)
fn log_lost(nodes: &Path, db: &Path) -> Option<String> {
    let mut stopped = Vec::new();
    for entry in std::fs::read_dir(nodes).ok()?.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "lock") {
            continue;
        }
        // A lock file younger than a second may belong to a process still taking its lock.
        let settled = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(1));
        if !settled {
            continue;
        }
        let Ok(file) = File::open(&path) else {
            continue;
        };
        if file.try_lock().is_ok() {
            drop(file);
            let _ = std::fs::remove_file(&path);
            if let Some(id) = path.file_stem() {
                stopped.push(id.to_string_lossy().into_owned());
            }
        }
    }
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    let has_data = std::fs::metadata(db).is_ok_and(|m| m.len() > 0);
    if stopped.is_empty() || !has_data || Path::new(&wal).exists() {
        return None;
    }
    Some(format!("Weft process {}", stopped.join(", ")))
}

fn lock_node(dir: &Path) -> std::io::Result<NodeLock> {
    let id = uuid::Uuid::now_v7().to_string();
    let path = dir.join(format!("{id}.lock"));
    let file = OpenOptions::new()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)?;
    file.lock()?;
    Ok(NodeLock {
        id,
        path,
        _file: file,
    })
}

fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {version}, written by a newer Weft; this one knows up to {SCHEMA_VERSION}"
        )));
    }
    let steps = [
        SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6, SCHEMA_V7, SCHEMA_V8,
        SCHEMA_V9, SCHEMA_V10, SCHEMA_V11,
    ];
    for (to, sql) in (1..).zip(steps) {
        if version < to {
            tx.execute_batch(sql)?;
        }
    }
    tx.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
    tx.commit()?;
    // Retention gives space back through incremental vacuum, which a database created without it
    // gets once, here.
    let auto_vacuum: i64 = conn.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
    if auto_vacuum != 2 {
        conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM")?;
    }
    Ok(())
}

/// The smallest run id created at `at` or later: run ids are UUIDv7, whose text begins with the
/// creation time in milliseconds, so a time window is a range of the primary key.
fn first_id_at(at: Millis) -> String {
    format!(
        "{:08x}-{:04x}",
        (at.max(0) >> 16) & 0xffff_ffff,
        at.max(0) & 0xffff
    )
}

fn token_from_row(row: &Row<'_>) -> Result<TokenRecord> {
    let role: String = row.get("role")?;
    let tools: Option<String> = row.get("tools")?;
    Ok(TokenRecord {
        id: row.get("id")?,
        hash: row.get("hash")?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown token role `{role}`")))?,
        tools: tools
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("token tools: {e}")))?,
        name: row.get("name")?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
        revoked_at: row.get("revoked_at")?,
        parent: row.get("parent")?,
    })
}

fn approval_from_row(row: &Row<'_>) -> Result<ApprovalRecord> {
    let state: String = row.get("state")?;
    let run_state: String = row.get("run_state")?;
    Ok(ApprovalRecord {
        id: row.get("id")?,
        run_id: row.get("run_id")?,
        step_key: StepKey::from_stored(row.get("step_key")?),
        attempt: row.get::<_, i64>("attempt")? as u32,
        workflow: row.get("workflow")?,
        message: row.get("message")?,
        data: parse_json(row.get("data")?, "approval data")?.unwrap_or(Value::Null),
        state: ApprovalState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown approval state `{state}`")))?,
        run_state: parse_state(&run_state)?,
        created_at: row.get("created_at")?,
        expires_at: row.get("expires_at")?,
        answered_at: row.get("answered_at")?,
        answer: parse_json(row.get("answer")?, "approval answer")?.unwrap_or(Value::Null),
        answered_by: row.get("answered_by")?,
    })
}

fn approval_where(
    c: &Connection,
    condition: &str,
    params: &[&dyn ToSql],
) -> Result<Option<ApprovalRecord>> {
    row(
        c,
        &format!("{APPROVAL_SELECT} WHERE {condition}"),
        params,
        approval_from_row,
    )
}

/// The approval of one step attempt.
fn approval_of(
    c: &Connection,
    run_id: &str,
    step_key: &str,
    attempt: u32,
) -> Result<Option<ApprovalRecord>> {
    approval_where(
        c,
        "a.run_id = ?1 AND a.step_key = ?2 AND a.attempt = ?3",
        &[&run_id, &step_key, &attempt],
    )
}

fn parse_state(s: &str) -> Result<RunState> {
    RunState::from_str(s).map_err(StoreError::Corrupt)
}

fn parse_json(text: Option<String>, what: &str) -> Result<Option<Value>> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("{what}: {e}"))))
        .transpose()
}

fn run_from_row(row: &Row<'_>) -> Result<RunRecord> {
    let state: String = row.get("state")?;
    Ok(RunRecord {
        id: row.get("id")?,
        workflow: row.get("workflow")?,
        version: row.get("version")?,
        state: parse_state(&state)?,
        root_id: row.get("root_id")?,
        parent_id: row.get("parent_id")?,
        parent_step: row.get("parent_step")?,
        depth: row.get::<_, i64>("depth")? as u32,
        idempotency_key: row.get("idempotency_key")?,
        trigger: parse_json(row.get("trigger")?, "run trigger")?.unwrap_or(Value::Null),
        input: parse_json(row.get("input")?, "run input")?.unwrap_or(Value::Null),
        output: parse_json(row.get("output")?, "run output")?,
        error: parse_json(row.get("error")?, "run error")?,
        wake_at: row.get("wake_at")?,
        cancel_requested: row.get::<_, i64>("cancel_requested")? != 0,
        created_at: row.get("created_at")?,
        started_at: row.get("started_at")?,
        finished_at: row.get("finished_at")?,
    })
}

/// A run to insert, with its JSON already serialised.
struct RunInsert {
    /// The id the run gets when it is created (a UUIDv7, taken when the insert is prepared).
    id: String,
    workflow: String,
    version: String,
    /// The version's file and text, unless a committed write stored the version already.
    source: Option<(String, String)>,
    root: Option<String>,
    parent: Option<(String, String)>,
    depth: u32,
    idempotency_key: Option<String>,
    trigger: String,
    input: String,
    now: Millis,
}

impl RunInsert {
    fn new(run: &NewRun, version_stored: bool) -> RunInsert {
        RunInsert {
            id: uuid::Uuid::now_v7().to_string(),
            workflow: run.workflow.clone(),
            version: run.version.clone(),
            source: (!version_stored).then(|| (run.file.clone(), run.source.clone())),
            root: run.root.clone(),
            parent: run
                .parent
                .as_ref()
                .map(|(p, s)| (p.clone(), s.as_str().to_string())),
            depth: run.depth,
            idempotency_key: run.idempotency_key.clone(),
            trigger: run.trigger.to_string(),
            input: run.input.to_string(),
            now: run.now,
        }
    }
}

/// Inserts a run (or finds the one with its idempotency key) inside a transaction; its workflow
/// version too, when the insert carries it.
fn insert_run(c: &Connection, run: &RunInsert, claim: Option<&Claim>) -> Result<Created> {
    if let Some(key) = &run.idempotency_key {
        let existing: Option<String> = row(
            c,
            "SELECT id FROM runs WHERE workflow = ?1 AND idempotency_key = ?2",
            params![run.workflow, key],
            |r| Ok(r.get(0)?),
        )?;
        if let Some(id) = existing {
            return Ok(Created::Existing(id));
        }
    }
    if let Some((file, source)) = &run.source {
        exec(
            c,
            "INSERT OR IGNORE INTO versions (version, workflow, file, source, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![run.version, run.workflow, file, source, run.now],
        )?;
    }
    let id = run.id.clone();
    let (parent_id, parent_step) = match &run.parent {
        Some((p, s)) => (Some(p.as_str()), Some(s.as_str())),
        None => (None, None),
    };
    // A claimed run starts as a claim leaves one: running, leased to this process, epoch 1.
    let (state, owner, until, epoch, started_at) = match claim {
        Some(claim) => (
            "running",
            Some(claim.owner.as_str()),
            Some(claim.until),
            1,
            Some(run.now),
        ),
        None => ("queued", None, None, 0, None),
    };
    exec(
        c,
        "INSERT INTO runs (id, workflow, version, state, root_id, parent_id, parent_step, depth, idempotency_key, trigger, input, created_at, updated_at, lease_owner, lease_until, lease_epoch, started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13, ?14, ?15, ?16)",
        params![
            id,
            run.workflow,
            run.version,
            state,
            run.root.as_deref().unwrap_or(&id),
            parent_id,
            parent_step,
            run.depth,
            run.idempotency_key,
            run.trigger,
            run.input,
            run.now,
            owner,
            until,
            epoch,
            started_at
        ],
    )?;
    Ok(Created::New(id))
}

/// The lease a run is created under by [`Store::create_claimed_runs`].
struct Claim {
    owner: String,
    until: Millis,
}

/// The record of a run that [`insert_run`] created under `claim` from `run`, as a claim would have
/// read it back.
fn claimed_record(id: &str, run: &NewRun, owner: &str) -> Claimed {
    Claimed {
        lease: Lease {
            run_id: id.to_string(),
            owner: owner.to_string(),
            epoch: 1,
        },
        run: RunRecord {
            id: id.to_string(),
            workflow: run.workflow.clone(),
            version: run.version.clone(),
            state: RunState::Running,
            root_id: run.root.clone().unwrap_or_else(|| id.to_string()),
            parent_id: run.parent.as_ref().map(|(p, _)| p.clone()),
            parent_step: run.parent.as_ref().map(|(_, s)| s.as_str().to_string()),
            depth: run.depth,
            idempotency_key: run.idempotency_key.clone(),
            trigger: run.trigger.clone(),
            input: run.input.clone(),
            output: None,
            error: None,
            wake_at: None,
            cancel_requested: false,
            created_at: run.now,
            started_at: Some(run.now),
            finished_at: None,
        },
    }
}

/// The SQL set of a run's unfinished descendants (`?1` is the run).
const DESCENDANTS: &str = "WITH RECURSIVE d(id) AS (SELECT id FROM runs WHERE parent_id = ?1 UNION ALL SELECT r.id FROM runs r JOIN d ON r.parent_id = d.id)";

/// The runs a claim may take, each with the time it became due (`?3` is now, `?4` the dead owners
/// as a JSON array, `?5` the scope's root or `NULL`, `?6` the limit): the first `?6` queued or
/// running runs and the first `?6` due waiting runs, each part read in order from its own index
/// (`runs_queue`, `runs_waiting`) so that a claim never scans the runs it cannot take.
const CLAIMABLE: &str = "
    SELECT * FROM (
        SELECT id, COALESCE(wake_at, created_at) AS due FROM runs
        WHERE state IN ('queued', 'running')
          AND (lease_owner IS NULL OR lease_until < ?3 OR lease_owner IN (SELECT value FROM json_each(?4)))
          AND (?5 IS NULL OR root_id = ?5)
        ORDER BY COALESCE(wake_at, created_at), id LIMIT ?6)
    UNION ALL
    SELECT * FROM (
        SELECT id, wake_at AS due FROM runs
        WHERE state = 'waiting' AND wake_at <= ?3
          AND (lease_owner IS NULL OR lease_until < ?3 OR lease_owner IN (SELECT value FROM json_each(?4)))
          AND (?5 IS NULL OR root_id = ?5)
        ORDER BY wake_at, id LIMIT ?6)";

/// Claims the claimable runs (`?1` is this node, `?2` the lease's end, the rest as in
/// [`CLAIMABLE`]) and returns them. Built once: claiming is on every turn of the work loop.
static CLAIM: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE runs SET state = 'running', lease_owner = ?1, lease_until = ?2, lease_epoch = lease_epoch + 1,
             started_at = COALESCE(started_at, ?3), updated_at = ?3, wake_at = NULL
         WHERE id IN (SELECT id FROM ({CLAIMABLE}) ORDER BY due, id LIMIT ?6)
         RETURNING {RUN_COLUMNS}"
    )
});

/// The scope's root as a query parameter (`NULL` for all runs).
fn scope_root(scope: &ClaimScope) -> Option<String> {
    match scope {
        ClaimScope::All => None,
        ClaimScope::Tree(root) => Some(root.clone()),
    }
}

#[async_trait]
impl Store for SqliteStore {
    fn node_id(&self) -> &str {
        &self.nodes.lock.id
    }

    async fn create_run(&self, run: NewRun) -> Result<Created> {
        self.create_runs(std::slice::from_ref(&run), None, run.now)
            .await?
            .pop()
            .ok_or_else(|| StoreError::Corrupt("creating a run gave no run".into()))
    }

    async fn create_runs(
        &self,
        runs: &[NewRun],
        state: Option<(&str, &Value)>,
        now: Millis,
    ) -> Result<Vec<Created>> {
        self.insert_runs(runs, state, now, None).await
    }

    async fn create_claimed_runs(
        &self,
        runs: &[NewRun],
        state: Option<(&str, &Value)>,
        now: Millis,
        lease: Duration,
        deliver: Deliver,
    ) -> Result<Vec<Created>> {
        let claim = Claim {
            owner: self.nodes.lock.id.clone(),
            until: now + lease.as_millis() as i64,
        };
        self.insert_runs(runs, state, now, Some((claim, deliver)))
            .await
    }

    async fn trigger_state(&self, key: &str) -> Result<Option<Value>> {
        let key = key.to_string();
        let text: Option<String> = self
            .read(move |c| {
                row(
                    c,
                    "SELECT value FROM trigger_state WHERE key = ?1",
                    [key],
                    |r| Ok(r.get(0)?),
                )
            })
            .await?;
        parse_json(text, "trigger state")
    }

    async fn state_get(&self, namespace: &str, key: &str, now: Millis) -> Result<Option<Value>> {
        let (namespace, key) = (namespace.to_string(), key.to_string());
        let text: Option<String> = self
            .read(move |c| {
                row(
                    c,
                    "SELECT value FROM kv_state WHERE namespace = ?1 AND key = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
                    params![namespace, key, now],
                    |r| Ok(r.get(0)?),
                )
            })
            .await?;
        parse_json(text, "conversation state")
    }

    async fn state_set(
        &self,
        namespace: &str,
        key: &str,
        value: &Value,
        expires_at: Option<Millis>,
        now: Millis,
    ) -> Result<()> {
        let (namespace, key, value) = (namespace.to_string(), key.to_string(), value.to_string());
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO kv_state (namespace, key, value, expires_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at, updated_at = excluded.updated_at",
                params![namespace, key, value, expires_at, now],
            )?;
            Ok(())
        })
        .await
    }

    async fn state_delete(&self, namespace: &str, key: &str, now: Millis) -> Result<bool> {
        let (namespace, key) = (namespace.to_string(), key.to_string());
        self.write(move |c| {
            let live: Option<bool> = row(
                c,
                "DELETE FROM kv_state WHERE namespace = ?1 AND key = ?2 RETURNING expires_at IS NULL OR expires_at > ?3",
                params![namespace, key, now],
                |r| Ok(r.get(0)?),
            )?;
            Ok(live.unwrap_or(false))
        })
        .await
    }

    async fn purge_expired_state(&self, now: Millis, limit: u32) -> Result<u64> {
        self.write(move |c| {
            Ok(exec(
                c,
                "DELETE FROM kv_state WHERE (namespace, key) IN (SELECT namespace, key FROM kv_state WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2)",
                params![now, limit.max(1)],
            )? as u64)
        })
        .await
    }

    async fn create_token(&self, token: &TokenRecord) -> Result<()> {
        let tools = token
            .tools
            .as_ref()
            .map(|t| serde_json::to_string(t).unwrap_or_default());
        let token = token.clone();
        self.write(move |c| {
            exec(
                c,
                "INSERT INTO tokens (id, hash, role, tools, name, created_at, expires_at, revoked_at, parent) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL, ?8)",
                params![
                    token.id,
                    token.hash,
                    token.role.as_str(),
                    tools,
                    token.name,
                    token.created_at,
                    token.expires_at,
                    token.parent
                ],
            )?;
            Ok(())
        })
        .await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let hash = hash.to_string();
        self.read(move |c| {
            row(
                c,
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1"),
                [hash],
                token_from_row,
            )
        })
        .await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        self.read(|c| {
            rows(
                c,
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id"),
                [],
                token_from_row,
            )
        })
        .await
    }

    async fn purge_sessions(&self, before: Millis, limit: u32) -> Result<u64> {
        self.write(move |c| {
            let n = exec(
                c,
                "DELETE FROM tokens WHERE id IN (SELECT id FROM tokens WHERE parent IS NOT NULL AND (revoked_at < ?1 OR expires_at < ?1) LIMIT ?2)",
                params![before, limit],
            )?;
            Ok(n as u64)
        })
        .await
    }

    async fn revoke_token(&self, id: &str, now: Millis) -> Result<bool> {
        let id = id.to_string();
        self.write(move |c| {
            let changed = exec(
                c,
                "UPDATE tokens SET revoked_at = ?2 WHERE (id = ?1 OR parent = ?1) AND revoked_at IS NULL",
                params![id, now],
            )?;
            Ok(changed > 0)
        })
        .await
    }

    async fn put_secret(&self, secret: &SecretRecord) -> Result<bool> {
        let secret = secret.clone();
        self.write(move |c| {
            // All secrets stay under one key: a write racing a rotation must not land under the old.
            let other: Option<String> = row(
                c,
                "SELECT name FROM secrets WHERE key_id != ?1 AND name != ?2 LIMIT 1",
                params![secret.key_id, secret.name],
                |r| Ok(r.get(0)?),
            )?;
            if let Some(other) = other {
                return Err(StoreError::Conflict(format!(
                    "the secret `{other}` is under another master key than this write; nothing was changed"
                )));
            }
            let existed: Option<i64> = row(
                c,
                "SELECT created_at FROM secrets WHERE name = ?1",
                [&secret.name],
                |r| Ok(r.get(0)?),
            )?;
            exec(
                c,
                "INSERT INTO secrets (name, key_id, nonce, ciphertext, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (name) DO UPDATE SET key_id = excluded.key_id, nonce = excluded.nonce, ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
                params![
                    secret.name,
                    secret.key_id,
                    secret.nonce,
                    secret.ciphertext,
                    secret.created_at,
                    secret.updated_at
                ],
            )?;
            Ok(existed.is_none())
        })
        .await
    }

    async fn list_secrets(&self) -> Result<Vec<SecretRecord>> {
        self.read(|c| {
            rows(
                c,
                "SELECT name, key_id, nonce, ciphertext, created_at, updated_at FROM secrets ORDER BY name",
                [],
                |row| {
                    Ok(SecretRecord {
                        name: row.get("name")?,
                        key_id: row.get("key_id")?,
                        nonce: row.get("nonce")?,
                        ciphertext: row.get("ciphertext")?,
                        created_at: row.get("created_at")?,
                        updated_at: row.get("updated_at")?,
                    })
                },
            )
        })
        .await
    }

    async fn delete_secret(&self, name: &str) -> Result<bool> {
        let name = name.to_string();
        self.write(move |c| Ok(exec(c, "DELETE FROM secrets WHERE name = ?1", [name])? > 0))
            .await
    }

    async fn reencrypt_secrets(&self, from_key: &str, secrets: &[SecretRecord]) -> Result<()> {
        let (from_key, secrets) = (from_key.to_string(), secrets.to_vec());
        self.write(move |c| {
            let under_old: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM secrets WHERE key_id = ?1")?
                .query_row([&from_key], |r| r.get(0))?;
            if under_old as usize != secrets.len() {
                return Err(StoreError::Conflict(format!(
                    "{under_old} secrets are under key {from_key}, but {} were re-encrypted; the secrets changed meanwhile, nothing was changed",
                    secrets.len()
                )));
            }
            for secret in &secrets {
                let changed = exec(
                    c,
                    "UPDATE secrets SET key_id = ?2, nonce = ?3, ciphertext = ?4 WHERE name = ?1 AND key_id = ?5 AND updated_at = ?6",
                    params![
                        secret.name,
                        secret.key_id,
                        secret.nonce,
                        secret.ciphertext,
                        from_key,
                        secret.updated_at
                    ],
                )?;
                if changed != 1 {
                    return Err(StoreError::Conflict(format!(
                        "the secret `{}` changed meanwhile; nothing was changed",
                        secret.name
                    )));
                }
            }
            Ok(())
        })
        .await
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<u64> {
        let details = entry.details.to_string();
        let entry = AuditEntry {
            details: Value::Null,
            ..entry.clone()
        };
        self.write(move |c| {
            let seq: i64 = c
                .prepare_cached(
                    "INSERT INTO audit (at, actor, action, target, details) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING seq",
                )?
                .query_row(
                    params![entry.at, entry.actor, entry.action, entry.target, details],
                    |r| r.get(0),
                )?;
            Ok(seq as u64)
        })
        .await
    }

    async fn list_audit(
        &self,
        before: Option<u64>,
        limit: u32,
        matching: Option<&str>,
    ) -> Result<Vec<(u64, AuditEntry)>> {
        let before = before.map_or(i64::MAX, |b| b as i64);
        let matching = matching.map(str::to_lowercase);
        self.read(move |c| {
            rows(
                c,
                "SELECT seq, at, actor, action, target, details FROM audit WHERE seq < ?1 AND (?3 IS NULL OR instr(lower(actor || ' ' || action || ' ' || target || ' ' || details), ?3) > 0) ORDER BY seq DESC LIMIT ?2",
                params![before, limit.max(1), matching],
                |row| {
                    let details: String = row.get("details")?;
                    Ok((
                        row.get::<_, i64>("seq")? as u64,
                        AuditEntry {
                            at: row.get("at")?,
                            actor: row.get("actor")?,
                            action: row.get("action")?,
                            target: row.get("target")?,
                            details: serde_json::from_str(&details)
                                .map_err(|e| StoreError::Corrupt(format!("audit details: {e}")))?,
                        },
                    ))
                },
            )
        })
        .await
    }

    async fn count_unfinished(&self) -> Result<Vec<(String, RunState, u64)>> {
        self.read(|c| {
            rows(
                c,
                "SELECT workflow, state, COUNT(*) AS n FROM runs WHERE state IN ('queued', 'running', 'waiting') GROUP BY workflow, state",
                [],
                |row| {
                    let state: String = row.get("state")?;
                    Ok((
                        row.get("workflow")?,
                        parse_state(&state)?,
                        row.get::<_, i64>("n")? as u64,
                    ))
                },
            )
        })
        .await
    }

    async fn overview(&self, since: Millis) -> Result<Overview> {
        let first_id = first_id_at(since);
        self.read(move |c| {
            let counts = rows(
                c,
                // The window first, by its key range; grouping it alone would let the planner
                // (which plans without the bound values) scan every run in workflow order.
                "WITH w AS MATERIALIZED (SELECT workflow, state, id FROM runs WHERE id >= ?1 AND created_at >= ?2) SELECT workflow, state, COUNT(*) AS n, MAX(id) AS newest FROM w GROUP BY workflow, state ORDER BY workflow, state",
                params![first_id, since],
                |row| {
                    let state: String = row.get("state")?;
                    Ok(RunCount {
                        workflow: row.get("workflow")?,
                        state: parse_state(&state)?,
                        count: row.get::<_, i64>("n")? as u64,
                        newest_id: row.get("newest")?,
                    })
                },
            )?;
            // The queue's index, in due order, to its first queued run: no scan of the queue.
            let oldest_queued: Option<Millis> = c
                .prepare_cached("SELECT COALESCE(wake_at, created_at) FROM runs WHERE state IN ('queued', 'running') AND state = 'queued' ORDER BY COALESCE(wake_at, created_at), id LIMIT 1")?
                .query_row([], |r| r.get(0))
                .optional()?;
            // From the pending approvals to their runs (CROSS JOIN keeps that order): the other
            // way round reads every unfinished run, a million of them in a large backlog.
            let pending: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM approvals a CROSS JOIN runs r ON r.id = a.run_id WHERE a.state = 'pending' AND r.state IN ('queued', 'running', 'waiting')")?
                .query_row([], |r| r.get(0))?;
            // By state alone, which the active runs' index answers without reading a run.
            let unfinished = rows(
                c,
                "SELECT state, COUNT(*) AS n FROM runs WHERE state IN ('queued', 'running', 'waiting') GROUP BY state",
                [],
                |row| {
                    let state: String = row.get("state")?;
                    Ok((parse_state(&state)?, row.get::<_, i64>("n")? as u64))
                },
            )?;
            Ok(Overview {
                counts,
                oldest_queued,
                pending_approvals: pending as u64,
                unfinished,
            })
        })
        .await
    }

    async fn check_writable(&self, now: Millis) -> Result<()> {
        self.write(move |c| {
            c.prepare_cached(
                "INSERT INTO write_probe (id, at) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            )?
            .execute([now])?;
            Ok(())
        })
        .await
    }

    async fn purge_finished(&self, before: Millis, limit: u32) -> Result<u64> {
        let deleted = self
            .write(move |c| {
                let deleted = exec(
                    c,
                    "DELETE FROM runs WHERE root_id IN (SELECT id FROM runs WHERE parent_id IS NULL AND finished_at IS NOT NULL AND finished_at < ?1 ORDER BY finished_at LIMIT ?2)",
                    params![before, limit.max(1)],
                )? as u64;
                drop_orphan_blobs(c, deleted > 0)?;
                Ok(deleted)
            })
            .await?;
        self.vacuum(deleted > 0).await?;
        Ok(deleted)
    }

    async fn erase_trees(&self, roots: &[String]) -> Result<(u64, u64)> {
        let (mut deleted, mut skipped) = (0u64, 0u64);
        // In batches, so that a large erasure does not hold the database for long.
        for batch in roots.chunks(200) {
            let (d, s) = self.erase_batch(batch.to_vec()).await?;
            deleted += d;
            skipped += s;
        }
        Ok((deleted, skipped))
    }

    async fn load_version(&self, version: &str) -> Result<Option<StoredVersion>> {
        let version = version.to_string();
        self.read(move |c| {
            row(
                c,
                "SELECT workflow, file, source FROM versions WHERE version = ?1",
                [version],
                |r| {
                    Ok(StoredVersion {
                        workflow: r.get("workflow")?,
                        file: r.get("file")?,
                        source: r.get("source")?,
                    })
                },
            )
        })
        .await
    }

    async fn get_run(&self, id: &str) -> Result<Option<RunRecord>> {
        let id = id.to_string();
        self.read(move |c| {
            row(
                c,
                &format!("SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"),
                [id],
                run_from_row,
            )
        })
        .await
    }

    async fn resolve_run_id(&self, prefix: &str) -> Result<String> {
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(StoreError::NotFound(prefix.to_string()));
        }
        let lower = prefix.to_ascii_lowercase();
        let (ids, count) = self
            .read(move |c| {
                let ids: Vec<String> = rows(
                    c,
                    "SELECT id FROM runs WHERE id >= ?1 AND id < ?1 || 'g' ORDER BY id LIMIT 2",
                    [&lower],
                    |r| Ok(r.get(0)?),
                )?;
                let count: i64 = if ids.len() > 1 {
                    c.prepare_cached("SELECT count(*) FROM runs WHERE id >= ?1 AND id < ?1 || 'g'")?
                        .query_row([&lower], |r| r.get(0))?
                } else {
                    ids.len() as i64
                };
                Ok((ids, count))
            })
            .await?;
        match ids.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(StoreError::NotFound(prefix.to_string())),
            _ => Err(StoreError::Ambiguous {
                prefix: prefix.to_string(),
                count: count as usize,
            }),
        }
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let filter = filter.clone();
        self.read(move |c| {
            rows(
                c,
                &format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE (?1 IS NULL OR workflow = ?1) AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR id < ?3) AND (?5 IS NULL OR root_id = ?5) AND (?6 IS NULL OR id >= ?6) AND (?7 IS NULL OR created_at >= ?7) AND (?8 IS NULL OR created_at < ?8) AND (?9 IS NULL OR instr(lower(COALESCE(input, '') || ' ' || COALESCE(error, '')), lower(?9)) > 0) ORDER BY id DESC LIMIT ?4"
                ),
                params![
                    filter.workflow,
                    filter.state.map(RunState::as_str),
                    filter.before,
                    filter.limit.max(1),
                    filter.root,
                    filter.since.map(first_id_at),
                    filter.since,
                    filter.until,
                    filter.text
                ],
                run_from_row,
            )
        })
        .await
    }

    async fn children(&self, parent: &str, step: &StepKey) -> Result<Vec<RunRecord>> {
        let (parent, step) = (parent.to_string(), step.clone());
        self.read(move |c| {
            rows(
                c,
                &format!(
                    "SELECT {RUN_COLUMNS} FROM runs WHERE parent_id = ?1 AND parent_step = ?2 ORDER BY id"
                ),
                params![parent, step.as_str()],
                run_from_row,
            )
        })
        .await
    }

    async fn attempts(&self, run: &str) -> Result<Vec<AttemptRecord>> {
        let run = run.to_string();
        self.read(move |c| {
            rows(
                c,
                "SELECT a.step_key, a.attempt, a.state, COALESCE(a.input, bi.data) AS input, COALESCE(a.output, bo.data) AS output, a.error, a.wake_at, a.budget_reset, a.started_at, a.finished_at, a.input_blob, a.output_blob
                 FROM attempts a LEFT JOIN blobs bi ON bi.hash = a.input_blob LEFT JOIN blobs bo ON bo.hash = a.output_blob
                 WHERE a.run_id = ?1 ORDER BY a.rowid",
                [run],
                |r| {
                    let state: String = r.get("state")?;
                    let input: Option<String> = r.get("input")?;
                    let output: Option<String> = r.get("output")?;
                    let missing =
                        |col: &str, blob: Option<String>, value: &Option<String>| match (blob, value) {
                            (Some(hash), None) => Err(StoreError::Corrupt(format!(
                                "the {col} blob {hash} is missing"
                            ))),
                            _ => Ok(()),
                        };
                    missing("input", r.get("input_blob")?, &input)?;
                    missing("output", r.get("output_blob")?, &output)?;
                    Ok(AttemptRecord {
                        step_key: StepKey::from_stored(r.get("step_key")?),
                        attempt: r.get::<_, i64>("attempt")? as u32,
                        state: AttemptState::from_str(&state).map_err(StoreError::Corrupt)?,
                        input: parse_json(input, "attempt input")?,
                        output: parse_json(output, "attempt output")?,
                        error: parse_json(r.get("error")?, "attempt error")?,
                        wake_at: r.get("wake_at")?,
                        budget_reset: r.get::<_, i64>("budget_reset")? != 0,
                        started_at: r.get("started_at")?,
                        finished_at: r.get("finished_at")?,
                    })
                },
            )
        })
        .await
    }

    async fn claim(
        &self,
        scope: &ClaimScope,
        limit: usize,
        now: Millis,
        lease: Duration,
    ) -> Result<Vec<Claimed>> {
        let root = scope_root(scope);
        let nodes = Arc::clone(&self.nodes);
        let until = now + lease.as_millis() as i64;
        self.write(move |c| {
            let dead = nodes.dead_owners(c, now)?;
            rows(
                c,
                &CLAIM,
                params![nodes.lock.id, until, now, dead, root, limit as i64],
                |row| {
                    Ok(Claimed {
                        lease: Lease {
                            run_id: row.get("id")?,
                            owner: row.get("lease_owner")?,
                            epoch: row.get("lease_epoch")?,
                        },
                        run: run_from_row(row)?,
                    })
                },
            )
        })
        .await
    }

    async fn renew_leases(&self, now: Millis, lease: Duration) -> Result<()> {
        let me = self.nodes.lock.id.clone();
        let until = now + lease.as_millis() as i64;
        self.write(move |c| {
            exec(
                c,
                "UPDATE runs SET lease_until = ?1 WHERE lease_owner = ?2 AND state = 'running'",
                params![until, me],
            )?;
            Ok(())
        })
        .await
    }

    async fn next_wake(&self, scope: &ClaimScope, now: Millis) -> Result<Option<Millis>> {
        let root = scope_root(scope);
        let me = self.nodes.lock.id.clone();
        // Waiting runs that are not due yet, and runs leased by other live processes (their lease
        // may expire).
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT min(t) FROM (
                     SELECT wake_at AS t FROM runs WHERE state = 'waiting' AND wake_at > ?1 AND (?2 IS NULL OR root_id = ?2)
                     UNION ALL
                     SELECT lease_until + 1 AS t FROM runs WHERE state = 'running' AND lease_owner <> ?3 AND lease_until >= ?1 AND (?2 IS NULL OR root_id = ?2))",
            )?
            .query_row(params![now, root, me], |r| r.get(0))?)
        })
        .await
    }

    async fn unfinished(&self, scope: &ClaimScope) -> Result<u64> {
        let root = scope_root(scope);
        self.read(move |c| {
            let n: i64 = c
                .prepare_cached(
                    "SELECT count(*) FROM runs WHERE state IN ('queued', 'running', 'waiting') AND (?1 IS NULL OR root_id = ?1)",
                )?
                .query_row([root], |r| r.get(0))?;
            Ok(n as u64)
        })
        .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn begin_attempt(
        &self,
        lease: &Lease,
        step: &StepKey,
        attempt: u32,
        input: Option<&str>,
        state: AttemptState,
        wake_at: Option<Millis>,
        now: Millis,
    ) -> Result<Fence> {
        let (lease, step, input) = (lease.clone(), step.clone(), self.payload(input));
        let unsettled = Arc::clone(&self.unsettled);
        self.write_checked(move |c| {
            let fence = fence(c, &lease, &unsettled)?;
            if fence.cancel_requested {
                return Ok(fence);
            }
            exec(
                c,
                "UPDATE attempts SET state = 'interrupted', finished_at = ?3 WHERE run_id = ?1 AND step_key = ?2 AND state = 'started'",
                params![lease.run_id, step.as_str(), now],
            )?;
            let (inline, blob) = input.store(c, now)?;
            exec(
                c,
                "INSERT INTO attempts (run_id, step_key, attempt, state, input, input_blob, wake_at, started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    lease.run_id,
                    step.as_str(),
                    attempt,
                    state.as_str(),
                    inline,
                    blob,
                    wake_at,
                    now
                ],
            )?;
            Ok(fence)
        })
        .await
    }

    async fn finish_attempt(
        &self,
        lease: &Lease,
        step: &StepKey,
        attempt: u32,
        outcome: &Outcome,
        now: Millis,
    ) -> Result<Fence> {
        let (lease, step, row) = (lease.clone(), step.clone(), self.outcome_row(outcome, now));
        let unsettled = Arc::clone(&self.unsettled);
        self.write_checked(move |c| finish_attempt(c, &lease, &step, attempt, row, &unsettled))
            .await
    }

    fn queue_finish_attempt(
        &self,
        lease: &Lease,
        step: &StepKey,
        attempt: u32,
        outcome: &Outcome,
        now: Millis,
    ) {
        let (lease, step, row) = (lease.clone(), step.clone(), self.outcome_row(outcome, now));
        self.queue(lease, move |c, lease, unsettled| {
            finish_attempt(c, lease, &step, attempt, row, unsettled)
        });
    }

    async fn record_attempt(
        &self,
        lease: &Lease,
        step: &StepKey,
        attempt: u32,
        input: Option<&str>,
        outcome: &Outcome,
        now: Millis,
    ) -> Result<Fence> {
        let (lease, step, row) = (lease.clone(), step.clone(), self.outcome_row(outcome, now));
        let input = self.payload(input);
        let unsettled = Arc::clone(&self.unsettled);
        self.write_checked(move |c| {
            record_attempt(c, &lease, &step, attempt, input, row, &unsettled)
        })
        .await
    }

    fn queue_record_attempt(
        &self,
        lease: &Lease,
        step: &StepKey,
        attempt: u32,
        outcome: &Outcome,
        now: Millis,
    ) {
        let (lease, step, row) = (lease.clone(), step.clone(), self.outcome_row(outcome, now));
        self.queue(lease, move |c, lease, unsettled| {
            record_attempt(c, lease, &step, attempt, Payload::None, row, unsettled)
        });
    }

    async fn park(&self, lease: &Lease, wake_at: Millis, now: Millis) -> Result<()> {
        let lease = lease.clone();
        let unsettled = Arc::clone(&self.unsettled);
        self.write_checked(move |c| {
            fence(c, &lease, &unsettled)?;
            exec(
                c,
                "UPDATE runs SET state = 'waiting', wake_at = ?2, lease_owner = NULL, lease_until = NULL, updated_at = ?3 WHERE id = ?1",
                params![lease.run_id, wake_at, now],
            )?;
            Ok(())
        })
        .await
    }

    async fn open_approval(&self, approval: &NewApproval) -> Result<ApprovalRecord> {
        let approval = approval.clone();
        let data = approval.data.to_string();
        self.write(move |c| {
            let id = uuid::Uuid::now_v7().to_string();
            exec(
                c,
                "INSERT INTO approvals (id, run_id, step_key, attempt, workflow, message, data, state, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9) ON CONFLICT (run_id, step_key, attempt) DO NOTHING",
                params![
                    id,
                    approval.run_id,
                    approval.step_key.as_str(),
                    approval.attempt,
                    approval.workflow,
                    approval.message,
                    data,
                    approval.now,
                    approval.expires_at
                ],
            )?;
            approval_of(c, &approval.run_id, approval.step_key.as_str(), approval.attempt)?
                .ok_or_else(|| StoreError::NotFound(approval.run_id.clone()))
        })
        .await
    }

    async fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>> {
        let id = id.to_string();
        self.read(move |c| approval_where(c, "a.id = ?1", &[&id]))
            .await
    }

    async fn approval_for(
        &self,
        run_id: &str,
        step_key: &StepKey,
        attempt: u32,
    ) -> Result<Option<ApprovalRecord>> {
        let (run_id, step_key) = (run_id.to_string(), step_key.clone());
        self.read(move |c| approval_of(c, &run_id, step_key.as_str(), attempt))
            .await
    }

    async fn list_approvals(&self, pending_only: bool, limit: u32) -> Result<Vec<ApprovalRecord>> {
        let condition = if pending_only {
            " WHERE a.state = 'pending' AND r.state IN ('queued', 'running', 'waiting')"
        } else {
            ""
        };
        let sql =
            format!("{APPROVAL_SELECT}{condition} ORDER BY a.created_at DESC, a.id DESC LIMIT ?1");
        self.read(move |c| rows(c, &sql, [limit], approval_from_row))
            .await
    }

    async fn answer_approval(
        &self,
        id: &str,
        decision: ApprovalState,
        answer: &Value,
        by: Option<&str>,
        now: Millis,
    ) -> Result<ApprovalRecord> {
        debug_assert!(decision != ApprovalState::Pending);
        let (id, answer, by) = (id.to_string(), answer.to_string(), by.map(str::to_string));
        self.write(move |c| {
            let current = approval_where(c, "a.id = ?1", &[&id])?
                .ok_or_else(|| StoreError::ApprovalNotFound(id.clone()))?;
            if current.state != ApprovalState::Pending {
                return Err(StoreError::ApprovalClosed {
                    id,
                    state: current.state.as_str().to_string(),
                });
            }
            if current.run_state.is_terminal() {
                return Err(StoreError::ApprovalClosed {
                    id,
                    state: format!("moot: its run is {}", current.run_state),
                });
            }
            exec(
                c,
                "UPDATE approvals SET state = ?2, answer = ?3, answered_by = ?4, answered_at = ?5 WHERE id = ?1",
                params![id, decision.as_str(), answer, by, now],
            )?;
            // The run is due now. A run still executing keeps this wake time when it parks (see
            // `park`), so an answer that comes between its last look and its parking is not missed.
            exec(
                c,
                "UPDATE runs SET wake_at = ?2, updated_at = ?2 WHERE id = ?1 AND state IN ('running', 'waiting')",
                params![current.run_id, now],
            )?;
            approval_where(c, "a.id = ?1", &[&id])?.ok_or(StoreError::ApprovalNotFound(id))
        })
        .await
    }

    async fn finish_run(
        &self,
        lease: &Lease,
        state: RunState,
        output: Option<&str>,
        error: Option<&str>,
        now: Millis,
    ) -> Result<()> {
        debug_assert!(state.is_terminal());
        let lease = lease.clone();
        let (output, error) = (output.map(str::to_string), error.map(str::to_string));
        let unsettled = Arc::clone(&self.unsettled);
        self.write_checked(move |c| {
            fence(c, &lease, &unsettled)?;
            exec(
                c,
                "UPDATE runs SET state = ?2, output = ?3, error = ?4, finished_at = ?5, updated_at = ?5, wake_at = NULL, lease_owner = NULL, lease_until = NULL WHERE id = ?1",
                params![lease.run_id, state.as_str(), output, error, now],
            )?;
            Ok(())
        })
        .await
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        let lease = lease.clone();
        let unsettled = Arc::clone(&self.unsettled);
        self.write_checked(move |c| {
            exec(
                c,
                "UPDATE runs SET lease_owner = NULL, lease_until = NULL WHERE id = ?1 AND lease_owner = ?2 AND lease_epoch = ?3",
                params![lease.run_id, lease.owner, lease.epoch],
            )?;
            unsettled.forget(&lease);
            Ok(())
        })
        .await
    }

    async fn request_cancel(&self, id: &str, now: Millis) -> Result<CancelOutcome> {
        let nodes = Arc::clone(&self.nodes);
        let id = id.to_string();
        let error = serde_json::json!({"message": "the run was cancelled"}).to_string();
        let after = self
            .write(move |c| {
                let dead = nodes.dead_owners(c, now)?;
                let state = run_state(c, &id)?;
                if state.is_terminal() {
                    return Err(StoreError::InvalidState {
                        run: id,
                        state,
                        action: "it has already finished".into(),
                    });
                }
                // Ask every unfinished run of the subtree to stop, then finish at once the ones
                // that no live process is executing.
                exec(
                    c,
                    &format!(
                        "{DESCENDANTS} UPDATE runs SET cancel_requested = 1 WHERE (id = ?1 OR id IN (SELECT id FROM d)) AND state IN ('queued', 'running', 'waiting')"
                    ),
                    [&id],
                )?;
                exec(
                    c,
                    &format!(
                        "{DESCENDANTS} UPDATE runs SET state = 'cancelled', error = ?2, finished_at = ?3, wake_at = NULL, lease_owner = NULL, lease_until = NULL
                         WHERE (id = ?1 OR id IN (SELECT id FROM d)) AND state IN ('queued', 'running', 'waiting')
                           AND (lease_owner IS NULL OR lease_until < ?3 OR lease_owner IN (SELECT value FROM json_each(?4)))"
                    ),
                    params![id, error, now, dead],
                )?;
                run_state(c, &id)
            })
            .await?;
        Ok(if after == RunState::Cancelled {
            CancelOutcome::Cancelled
        } else {
            CancelOutcome::Requested
        })
    }

    async fn retry_run(&self, id: &str, now: Millis) -> Result<()> {
        let id = id.to_string();
        self.write(move |c| {
            let state = run_state(c, &id)?;
            if state != RunState::Failed {
                return Err(StoreError::InvalidState {
                    run: id,
                    state,
                    action: "only failed runs can be retried (replay starts a new run from any run)"
                        .into(),
                });
            }
            exec(
                c,
                "UPDATE attempts SET state = 'retrying', budget_reset = 1, wake_at = ?2 WHERE run_id = ?1 AND state = 'failed'",
                params![id, now],
            )?;
            exec(
                c,
                "UPDATE runs SET state = 'queued', output = NULL, error = NULL, finished_at = NULL, wake_at = NULL, cancel_requested = 0, updated_at = ?2 WHERE id = ?1",
                params![id, now],
            )?;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A claim reads the runnable runs in order from their indexes and stops at its limit; it
    /// never scans the runs table, which keeps every finished run until retention removes it.
    #[tokio::test]
    async fn claiming_reads_only_the_claimable_runs_through_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = SqliteOptions::new(dir.path().join("weft.db"));
        options.sync_full = false;
        let store = SqliteStore::open(options).await.unwrap();
        // The plan of the very statement a claim runs, on the writer's connection.
        let plan: Vec<String> = store
            .writer
            .write(Isolation::Savepoint, |c| {
                let sql = format!("EXPLAIN QUERY PLAN {}", *CLAIM);
                rows(c, &sql, params![0, 0, 0, "[]", None::<String>, 10], |r| {
                    Ok(r.get::<_, String>(3)?)
                })
            })
            .await
            .unwrap();
        assert!(
            plan.iter().any(|d| d.contains("INDEX runs_queue")),
            "{plan:?}"
        );
        assert!(
            plan.iter().any(|d| d.contains("INDEX runs_waiting")),
            "{plan:?}"
        );
        assert!(!plan.iter().any(|d| d == "SCAN runs"), "{plan:?}");
    }

    /// The claim statement is prepared once and then only run: binding another limit or another
    /// time does not make SQLite compile it again (it did, on every claim, before the connection
    /// asked for plans that do not depend on bound values).
    #[tokio::test]
    async fn claiming_again_does_not_prepare_the_statement_again() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = SqliteOptions::new(dir.path().join("weft.db"));
        options.sync_full = false;
        let store = SqliteStore::open(options).await.unwrap();
        for turn in 0..3 {
            store
                .create_run(crate::tests::new_run("order", None, turn))
                .await
                .unwrap();
            let limit = turn as usize + 1;
            let claimed = store
                .claim(&ClaimScope::All, limit, 10 + turn, Duration::from_secs(60))
                .await
                .unwrap();
            assert_eq!(claimed.len(), 1);
        }
        let reprepared = store
            .writer
            .write(Isolation::Savepoint, |c| {
                let statement = c.prepare_cached(&CLAIM)?;
                Ok(statement.get_status(rusqlite::StatementStatus::RePrepare))
            })
            .await
            .unwrap();
        assert_eq!(reprepared, 0, "the claim statement was compiled again");
    }

    #[tokio::test]
    async fn an_owner_is_dead_exactly_when_its_lock_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = SqliteOptions::new(dir.path().join("weft.db"));
        options.sync_full = false;
        let store = SqliteStore::open(options).await.unwrap();
        let nodes = &store.nodes;
        assert!(!nodes.owner_dead(store.node_id()));

        let held = uuid::Uuid::now_v7().to_string();
        let file = File::create(nodes.dir.join(format!("{held}.lock"))).unwrap();
        file.lock().unwrap();
        // A lock held through another open file of this process counts as alive, as it would for
        // another process.
        assert!(!nodes.owner_dead(&held));
        drop(file);
        // The process died: its file is still there, but nobody holds the lock.
        assert!(nodes.owner_dead(&held));
        assert!(!nodes.dir.join(format!("{held}.lock")).exists());
        assert!(nodes.owner_dead(&uuid::Uuid::now_v7().to_string()));
        assert!(!nodes.owner_dead("../etc/passwd"));
    }
}
