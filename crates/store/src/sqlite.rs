//! The embedded store: SQLite in WAL mode, one writer connection and a few readers.
//!
//! Every write about a running run happens in a transaction of its own (a savepoint of the shared
//! transaction that [group commit](crate::group) commits) that first checks the caller's lease (the
//! fence), so a stale process changes nothing. A process announces that it is
//! alive by holding an exclusive lock on `nodes/<node id>.lock` next to the database; when the lock
//! of a lease's owner can be taken, the owner died and its runs are claimed at once instead of after
//! the lease expires.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use weft_core::{AttemptState, RunState, StepKey};

use crate::group::{Group, GroupTx};
use crate::{
    ApprovalRecord, ApprovalState, AttemptRecord, AuditEntry, CancelOutcome, ClaimScope, Claimed,
    Created, Fence, Lease, Millis, NewApproval, NewRun, Outcome, Result, RunFilter, RunRecord,
    SecretRecord, Store, StoreError, StoredVersion, TokenRecord,
};
use weft_core::auth::Role;

/// The newest schema version this code knows.
const SCHEMA_VERSION: i64 = 8;

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

const TOKEN_COLUMNS: &str = "id, hash, role, tools, name, created_at, expires_at, revoked_at";

const APPROVAL_SELECT: &str = "SELECT a.id, a.run_id, a.step_key, a.attempt, a.workflow, a.message, a.data, a.state, a.created_at, a.expires_at, a.answered_at, a.answer, a.answered_by, r.state AS run_state FROM approvals a JOIN runs r ON r.id = a.run_id";

const RUN_COLUMNS: &str = "id, workflow, version, state, root_id, parent_id, parent_step, depth, idempotency_key, trigger, input, output, error, wake_at, cancel_requested, created_at, started_at, finished_at, lease_owner, lease_epoch";

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
    /// The one writer connection, shared by group commit.
    pub(crate) writer: Group,
    pub(crate) reader: SqlitePool,
    node: NodeLock,
    nodes_dir: PathBuf,
    inline_limit: usize,
    /// Owners known to be dead, so their lock files are not checked again.
    dead: Mutex<HashSet<String>>,
    /// Workflow versions known to be committed (versions are never deleted), so that creating a
    /// run does not write its version again.
    stored_versions: Mutex<HashSet<String>>,
}

impl SqliteStore {
    /// Erases one batch of run trees (see [`Store::erase_trees`]) in one transaction.
    async fn erase_batch(&self, roots: &[String]) -> Result<(u64, u64)> {
        let mut tx = self.begin().await?;
        let (mut deleted, mut skipped) = (0u64, 0u64);
        for root in roots {
            let unfinished: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM runs WHERE root_id = ?1 AND state IN ('queued', 'running', 'waiting')",
            )
            .bind(root)
            .fetch_one(&mut *tx)
            .await?;
            if unfinished > 0 {
                skipped += 1;
                continue;
            }
            deleted += sqlx::query("DELETE FROM runs WHERE root_id = ?1")
                .bind(root)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        self.finish_deletion(tx, deleted > 0).await?;
        Ok((deleted, skipped))
    }

    /// Ends a transaction that deleted runs: drops the payloads no attempt refers to any more,
    /// commits, and gives the freed space back.
    async fn finish_deletion(&self, mut tx: GroupTx<'_>, deleted: bool) -> Result<()> {
        if deleted {
            sqlx::query("DELETE FROM blobs WHERE hash NOT IN (SELECT input_blob FROM attempts WHERE input_blob IS NOT NULL UNION SELECT output_blob FROM attempts WHERE output_blob IS NOT NULL)")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        if deleted {
            let mut tx = self.begin().await?;
            sqlx::raw_sql("PRAGMA incremental_vacuum")
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// Opens (creating if needed) the database and its schema, and registers this process as a node.
    pub async fn open(options: SqliteOptions) -> Result<SqliteStore> {
        let open_err = |message: String| StoreError::Open {
            path: options.path.display().to_string(),
            message,
        };
        let dir = options
            .path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let nodes_dir = dir.join("nodes");
        std::fs::create_dir_all(&nodes_dir).map_err(|e| open_err(e.to_string()))?;
        let node = lock_node(&nodes_dir)
            .map_err(|e| open_err(format!("cannot create a node lock: {e}")))?;

        let connect = SqliteConnectOptions::new()
            .filename(&options.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if options.sync_full {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(connect.clone())
            .await
            .map_err(|e| open_err(e.to_string()))?;
        migrate(&writer).await?;
        let writer = Group::start(
            writer
                .acquire()
                .await
                .map_err(|e| open_err(e.to_string()))?
                .detach(),
        );
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(connect.read_only(true))
            .await
            .map_err(|e| open_err(e.to_string()))?;
        Ok(SqliteStore {
            writer,
            reader,
            node,
            nodes_dir,
            inline_limit: options.inline_limit,
            dead: Mutex::new(HashSet::new()),
            stored_versions: Mutex::new(HashSet::new()),
        })
    }

    /// Starts a write: its statements commit together with the other writes queued meanwhile
    /// (see [`crate::group`]), and `commit` returns once they are on disk.
    async fn begin(&self) -> Result<GroupTx<'_>> {
        self.writer.begin().await
    }

    /// Whether the process that owns `owner`'s leases is gone. Its lock file is free (or missing)
    /// exactly when it died.
    fn owner_dead(&self, owner: &str) -> bool {
        if owner == self.node.id {
            return false;
        }
        if self.dead.lock().map(|d| d.contains(owner)).unwrap_or(false) {
            return true;
        }
        if !owner.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return false;
        }
        let path = self.nodes_dir.join(format!("{owner}.lock"));
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

    /// The owners of live-looking leases whose processes are in fact gone, as a JSON array.
    async fn dead_owners(&self, now: Millis) -> Result<String> {
        let owners: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT lease_owner FROM runs WHERE lease_owner IS NOT NULL AND lease_owner <> ?1 AND lease_until >= ?2 AND state IN ('queued', 'running', 'waiting')",
        )
        .bind(&self.node.id)
        .bind(now)
        .fetch_all(&self.reader)
        .await?;
        let dead: Vec<String> = owners.into_iter().filter(|o| self.owner_dead(o)).collect();
        Ok(serde_json::to_string(&dead).unwrap_or_else(|_| "[]".into()))
    }

    /// Stores a payload inline or, when large, once in the blob table. Returns (inline, blob hash).
    async fn payload(
        &self,
        tx: &mut GroupTx<'_>,
        json: Option<&str>,
        now: Millis,
    ) -> Result<(Option<String>, Option<String>)> {
        let Some(json) = json else {
            return Ok((None, None));
        };
        if json.len() <= self.inline_limit {
            return Ok((Some(json.to_string()), None));
        }
        let hash: String = Sha256::digest(json.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        sqlx::query(
            "INSERT OR IGNORE INTO blobs (hash, size, data, created_at) VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(&hash)
        .bind(json.len() as i64)
        .bind(json)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok((None, Some(hash)))
    }

    /// Checks the lease and touches the run; every fenced write starts here.
    async fn fence(&self, tx: &mut GroupTx<'_>, lease: &Lease, now: Millis) -> Result<Fence> {
        let cancel: Option<i64> = sqlx::query_scalar(
            "UPDATE runs SET updated_at = ?1 WHERE id = ?2 AND lease_owner = ?3 AND lease_epoch = ?4 AND state = 'running' RETURNING cancel_requested",
        )
        .bind(now)
        .bind(&lease.run_id)
        .bind(&lease.owner)
        .bind(lease.epoch)
        .fetch_optional(&mut **tx)
        .await?;
        match cancel {
            Some(c) => Ok(Fence {
                cancel_requested: c != 0,
            }),
            None => Err(StoreError::LeaseLost {
                run: lease.run_id.clone(),
            }),
        }
    }

    async fn run_state(&self, tx: &mut GroupTx<'_>, id: &str) -> Result<RunState> {
        let state: Option<String> = sqlx::query_scalar("SELECT state FROM runs WHERE id = ?1")
            .bind(id)
            .fetch_optional(&mut **tx)
            .await?;
        let state = state.ok_or_else(|| StoreError::NotFound(id.to_string()))?;
        parse_state(&state)
    }
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

async fn migrate(pool: &SqlitePool) -> Result<()> {
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *tx)
        .await?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "the database has schema version {version}, written by a newer Weft; this one knows up to {SCHEMA_VERSION}"
        )));
    }
    if version < 1 {
        sqlx::raw_sql(SCHEMA_V1).execute(&mut *tx).await?;
    }
    if version < 2 {
        sqlx::raw_sql(SCHEMA_V2).execute(&mut *tx).await?;
    }
    if version < 3 {
        sqlx::raw_sql(SCHEMA_V3).execute(&mut *tx).await?;
    }
    if version < 4 {
        sqlx::raw_sql(SCHEMA_V4).execute(&mut *tx).await?;
    }
    if version < 5 {
        sqlx::raw_sql(SCHEMA_V5).execute(&mut *tx).await?;
    }
    if version < 6 {
        sqlx::raw_sql(SCHEMA_V6).execute(&mut *tx).await?;
    }
    if version < 7 {
        sqlx::raw_sql(SCHEMA_V7).execute(&mut *tx).await?;
    }
    if version < 8 {
        sqlx::raw_sql(SCHEMA_V8).execute(&mut *tx).await?;
    }
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "PRAGMA user_version = {SCHEMA_VERSION}"
    )))
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    // Retention gives space back through incremental vacuum, which a database created without it
    // gets once, here.
    let auto_vacuum: i64 = sqlx::query_scalar("PRAGMA auto_vacuum")
        .fetch_one(pool)
        .await?;
    if auto_vacuum != 2 {
        sqlx::raw_sql("PRAGMA auto_vacuum = INCREMENTAL; VACUUM")
            .execute(pool)
            .await?;
    }
    Ok(())
}

fn token_from_row(row: &SqliteRow) -> Result<TokenRecord> {
    let role: String = row.try_get("role")?;
    let tools: Option<String> = row.try_get("tools")?;
    Ok(TokenRecord {
        id: row.try_get("id")?,
        hash: row.try_get("hash")?,
        role: Role::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown token role `{role}`")))?,
        tools: tools
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("token tools: {e}")))?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn approval_from_row(row: &SqliteRow) -> Result<ApprovalRecord> {
    let state: String = row.try_get("state")?;
    let run_state: String = row.try_get("run_state")?;
    Ok(ApprovalRecord {
        id: row.try_get("id")?,
        run_id: row.try_get("run_id")?,
        step_key: StepKey::from_stored(row.try_get("step_key")?),
        attempt: row.try_get::<i64, _>("attempt")? as u32,
        workflow: row.try_get("workflow")?,
        message: row.try_get("message")?,
        data: parse_json(row.try_get("data")?, "approval data")?.unwrap_or(Value::Null),
        state: ApprovalState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown approval state `{state}`")))?,
        run_state: parse_state(&run_state)?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        answered_at: row.try_get("answered_at")?,
        answer: parse_json(row.try_get("answer")?, "approval answer")?.unwrap_or(Value::Null),
        answered_by: row.try_get("answered_by")?,
    })
}

async fn approval_where(
    conn: &mut sqlx::SqliteConnection,
    condition: &str,
    binds: &[&str],
) -> Result<Option<ApprovalRecord>> {
    let sql = format!("{APPROVAL_SELECT} WHERE {condition}");
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for b in binds {
        query = query.bind(*b);
    }
    query
        .fetch_optional(conn)
        .await?
        .map(|r| approval_from_row(&r))
        .transpose()
}

fn parse_state(s: &str) -> Result<RunState> {
    RunState::from_str(s).map_err(StoreError::Corrupt)
}

fn parse_json(text: Option<String>, what: &str) -> Result<Option<Value>> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("{what}: {e}"))))
        .transpose()
}

fn run_from_row(row: &SqliteRow) -> Result<RunRecord> {
    let state: String = row.try_get("state")?;
    Ok(RunRecord {
        id: row.try_get("id")?,
        workflow: row.try_get("workflow")?,
        version: row.try_get("version")?,
        state: parse_state(&state)?,
        root_id: row.try_get("root_id")?,
        parent_id: row.try_get("parent_id")?,
        parent_step: row.try_get("parent_step")?,
        depth: row.try_get::<i64, _>("depth")? as u32,
        idempotency_key: row.try_get("idempotency_key")?,
        trigger: parse_json(row.try_get("trigger")?, "run trigger")?.unwrap_or(Value::Null),
        input: parse_json(row.try_get("input")?, "run input")?.unwrap_or(Value::Null),
        output: parse_json(row.try_get("output")?, "run output")?,
        error: parse_json(row.try_get("error")?, "run error")?,
        wake_at: row.try_get("wake_at")?,
        cancel_requested: row.try_get::<i64, _>("cancel_requested")? != 0,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        finished_at: row.try_get("finished_at")?,
    })
}

/// Inserts a run (or finds the one with its idempotency key) inside a transaction; its workflow
/// version too, unless `version_stored` says a committed write stored it already.
async fn insert_run(tx: &mut GroupTx<'_>, run: &NewRun, version_stored: bool) -> Result<Created> {
    if let Some(key) = &run.idempotency_key {
        let existing: Option<String> =
            sqlx::query_scalar("SELECT id FROM runs WHERE workflow = ?1 AND idempotency_key = ?2")
                .bind(&run.workflow)
                .bind(key)
                .fetch_optional(&mut **tx)
                .await?;
        if let Some(id) = existing {
            return Ok(Created::Existing(id));
        }
    }
    if !version_stored {
        sqlx::query("INSERT OR IGNORE INTO versions (version, workflow, file, source, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
            .bind(&run.version)
            .bind(&run.workflow)
            .bind(&run.file)
            .bind(&run.source)
            .bind(run.now)
            .execute(&mut **tx)
            .await?;
    }
    let id = uuid::Uuid::now_v7().to_string();
    let (parent_id, parent_step) = match &run.parent {
        Some((p, s)) => (Some(p.clone()), Some(s.as_str().to_string())),
        None => (None, None),
    };
    sqlx::query(
        "INSERT INTO runs (id, workflow, version, state, root_id, parent_id, parent_step, depth, idempotency_key, trigger, input, created_at, updated_at) VALUES (?1, ?2, ?3, 'queued', ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
    )
    .bind(&id)
    .bind(&run.workflow)
    .bind(&run.version)
    .bind(run.root.as_deref().unwrap_or(&id))
    .bind(parent_id)
    .bind(parent_step)
    .bind(i64::from(run.depth))
    .bind(&run.idempotency_key)
    .bind(run.trigger.to_string())
    .bind(run.input.to_string())
    .bind(run.now)
    .execute(&mut **tx)
    .await?;
    Ok(Created::New(id))
}

/// The SQL set of a run's unfinished descendants (`?1` is the run).
const DESCENDANTS: &str = "WITH RECURSIVE d(id) AS (SELECT id FROM runs WHERE parent_id = ?1 UNION ALL SELECT r.id FROM runs r JOIN d ON r.parent_id = d.id)";

#[async_trait]
impl Store for SqliteStore {
    fn node_id(&self) -> &str {
        &self.node.id
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
        let stored: Vec<bool> = {
            let known = self
                .stored_versions
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            runs.iter().map(|r| known.contains(&r.version)).collect()
        };
        let mut tx = self.begin().await?;
        let mut created = Vec::with_capacity(runs.len());
        for (run, &stored) in runs.iter().zip(&stored) {
            created.push(insert_run(&mut tx, run, stored).await?);
        }
        if let Some((key, value)) = state {
            sqlx::query("INSERT INTO trigger_state (key, value, updated_at) VALUES (?1, ?2, ?3) ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at")
                .bind(key)
                .bind(value.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        // Only a run created here stored its version: a de-duplicated one may belong to another
        // version of its workflow.
        let mut known = self
            .stored_versions
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        for ((run, stored), c) in runs.iter().zip(stored).zip(&created) {
            if !stored && matches!(c, Created::New(_)) {
                known.insert(run.version.clone());
            }
        }
        drop(known);
        Ok(created)
    }

    async fn trigger_state(&self, key: &str) -> Result<Option<Value>> {
        let text: Option<String> =
            sqlx::query_scalar("SELECT value FROM trigger_state WHERE key = ?1")
                .bind(key)
                .fetch_optional(&self.reader)
                .await?;
        parse_json(text, "trigger state")
    }

    async fn state_get(&self, namespace: &str, key: &str, now: Millis) -> Result<Option<Value>> {
        let text: Option<String> = sqlx::query_scalar(
            "SELECT value FROM kv_state WHERE namespace = ?1 AND key = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
        )
        .bind(namespace)
        .bind(key)
        .bind(now)
        .fetch_optional(&self.reader)
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
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO kv_state (namespace, key, value, expires_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (namespace, key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at, updated_at = excluded.updated_at",
        )
        .bind(namespace)
        .bind(key)
        .bind(value.to_string())
        .bind(expires_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn state_delete(&self, namespace: &str, key: &str, now: Millis) -> Result<bool> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query(
            "DELETE FROM kv_state WHERE namespace = ?1 AND key = ?2 RETURNING expires_at IS NULL OR expires_at > ?3",
        )
        .bind(namespace)
        .bind(key)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| row.try_get::<bool, _>(0))
        .transpose()?
        .unwrap_or(false);
        tx.commit().await?;
        Ok(deleted)
    }

    async fn purge_expired_state(&self, now: Millis, limit: u32) -> Result<u64> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query(
            "DELETE FROM kv_state WHERE (namespace, key) IN (SELECT namespace, key FROM kv_state WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2)",
        )
        .bind(now)
        .bind(i64::from(limit.max(1)))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(deleted)
    }

    async fn create_token(&self, token: &TokenRecord) -> Result<()> {
        let tools = token
            .tools
            .as_ref()
            .map(|t| serde_json::to_string(t).unwrap_or_default());
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO tokens (id, hash, role, tools, name, created_at, expires_at, revoked_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, NULL)",
        )
        .bind(&token.id)
        .bind(&token.hash)
        .bind(token.role.as_str())
        .bind(tools)
        .bind(&token.name)
        .bind(token.created_at)
        .bind(token.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens WHERE hash = ?1"
        )))
        .bind(hash)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY created_at, id"
        )))
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, id: &str, now: Millis) -> Result<bool> {
        let mut tx = self.begin().await?;
        let changed =
            sqlx::query("UPDATE tokens SET revoked_at = ?2 WHERE id = ?1 AND revoked_at IS NULL")
                .bind(id)
                .bind(now)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        tx.commit().await?;
        Ok(changed > 0)
    }

    async fn put_secret(&self, secret: &SecretRecord) -> Result<bool> {
        let mut tx = self.begin().await?;
        // All secrets stay under one key: a write racing a rotation must not land under the old.
        let other: Option<String> = sqlx::query_scalar(
            "SELECT name FROM secrets WHERE key_id != ?1 AND name != ?2 LIMIT 1",
        )
        .bind(&secret.key_id)
        .bind(&secret.name)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(other) = other {
            return Err(StoreError::Conflict(format!(
                "the secret `{other}` is under another master key than this write; nothing was changed"
            )));
        }
        let existed: Option<i64> =
            sqlx::query_scalar("SELECT created_at FROM secrets WHERE name = ?1")
                .bind(&secret.name)
                .fetch_optional(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO secrets (name, key_id, nonce, ciphertext, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
             ON CONFLICT (name) DO UPDATE SET key_id = excluded.key_id, nonce = excluded.nonce, ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
        )
        .bind(&secret.name)
        .bind(&secret.key_id)
        .bind(&secret.nonce)
        .bind(&secret.ciphertext)
        .bind(secret.created_at)
        .bind(secret.updated_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(existed.is_none())
    }

    async fn list_secrets(&self) -> Result<Vec<SecretRecord>> {
        let rows = sqlx::query(
            "SELECT name, key_id, nonce, ciphertext, created_at, updated_at FROM secrets ORDER BY name",
        )
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(SecretRecord {
                    name: row.try_get("name")?,
                    key_id: row.try_get("key_id")?,
                    nonce: row.try_get("nonce")?,
                    ciphertext: row.try_get("ciphertext")?,
                    created_at: row.try_get("created_at")?,
                    updated_at: row.try_get("updated_at")?,
                })
            })
            .collect()
    }

    async fn delete_secret(&self, name: &str) -> Result<bool> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query("DELETE FROM secrets WHERE name = ?1")
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(deleted > 0)
    }

    async fn reencrypt_secrets(&self, from_key: &str, secrets: &[SecretRecord]) -> Result<()> {
        let mut tx = self.begin().await?;
        let under_old: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM secrets WHERE key_id = ?1")
            .bind(from_key)
            .fetch_one(&mut *tx)
            .await?;
        if under_old as usize != secrets.len() {
            return Err(StoreError::Conflict(format!(
                "{under_old} secrets are under key {from_key}, but {} were re-encrypted; the secrets changed meanwhile, nothing was changed",
                secrets.len()
            )));
        }
        for secret in secrets {
            let changed = sqlx::query(
                "UPDATE secrets SET key_id = ?2, nonce = ?3, ciphertext = ?4 WHERE name = ?1 AND key_id = ?5 AND updated_at = ?6",
            )
            .bind(&secret.name)
            .bind(&secret.key_id)
            .bind(&secret.nonce)
            .bind(&secret.ciphertext)
            .bind(from_key)
            .bind(secret.updated_at)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if changed != 1 {
                return Err(StoreError::Conflict(format!(
                    "the secret `{}` changed meanwhile; nothing was changed",
                    secret.name
                )));
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn append_audit(&self, entry: &AuditEntry) -> Result<u64> {
        let mut tx = self.begin().await?;
        let seq: i64 = sqlx::query_scalar(
            "INSERT INTO audit (at, actor, action, target, details) VALUES (?1, ?2, ?3, ?4, ?5) RETURNING seq",
        )
        .bind(entry.at)
        .bind(&entry.actor)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(entry.details.to_string())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(seq as u64)
    }

    async fn list_audit(&self, before: Option<u64>, limit: u32) -> Result<Vec<(u64, AuditEntry)>> {
        let rows = sqlx::query(
            "SELECT seq, at, actor, action, target, details FROM audit WHERE seq < ?1 ORDER BY seq DESC LIMIT ?2",
        )
        .bind(before.map_or(i64::MAX, |b| b as i64))
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let details: String = row.try_get("details")?;
                Ok((
                    row.try_get::<i64, _>("seq")? as u64,
                    AuditEntry {
                        at: row.try_get("at")?,
                        actor: row.try_get("actor")?,
                        action: row.try_get("action")?,
                        target: row.try_get("target")?,
                        details: serde_json::from_str(&details)
                            .map_err(|e| StoreError::Corrupt(format!("audit details: {e}")))?,
                    },
                ))
            })
            .collect()
    }

    async fn count_unfinished(&self) -> Result<Vec<(String, RunState, u64)>> {
        let rows = sqlx::query("SELECT workflow, state, COUNT(*) AS n FROM runs WHERE state IN ('queued', 'running', 'waiting') GROUP BY workflow, state")
            .fetch_all(&self.reader)
            .await?;
        rows.iter()
            .map(|row| {
                let state: String = row.try_get("state")?;
                Ok((
                    row.try_get("workflow")?,
                    parse_state(&state)?,
                    row.try_get::<i64, _>("n")? as u64,
                ))
            })
            .collect()
    }

    async fn purge_finished(&self, before: Millis, limit: u32) -> Result<u64> {
        let mut tx = self.begin().await?;
        let deleted = sqlx::query(
            "DELETE FROM runs WHERE root_id IN (SELECT id FROM runs WHERE parent_id IS NULL AND finished_at IS NOT NULL AND finished_at < ?1 ORDER BY finished_at LIMIT ?2)",
        )
        .bind(before)
        .bind(i64::from(limit.max(1)))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        self.finish_deletion(tx, deleted > 0).await?;
        Ok(deleted)
    }

    async fn erase_trees(&self, roots: &[String]) -> Result<(u64, u64)> {
        let (mut deleted, mut skipped) = (0u64, 0u64);
        // In batches, so that a large erasure does not hold the database for long.
        for batch in roots.chunks(200) {
            let (d, s) = self.erase_batch(batch).await?;
            deleted += d;
            skipped += s;
        }
        Ok((deleted, skipped))
    }

    async fn load_version(&self, version: &str) -> Result<Option<StoredVersion>> {
        let row = sqlx::query("SELECT workflow, file, source FROM versions WHERE version = ?1")
            .bind(version)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|r| {
            Ok(StoredVersion {
                workflow: r.try_get("workflow")?,
                file: r.try_get("file")?,
                source: r.try_get("source")?,
            })
        })
        .transpose()
    }

    async fn get_run(&self, id: &str) -> Result<Option<RunRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE id = ?1"
        )))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    async fn resolve_run_id(&self, prefix: &str) -> Result<String> {
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(StoreError::NotFound(prefix.to_string()));
        }
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM runs WHERE id >= ?1 AND id < ?1 || 'g' ORDER BY id LIMIT 2",
        )
        .bind(prefix.to_ascii_lowercase())
        .fetch_all(&self.reader)
        .await?;
        match ids.as_slice() {
            [one] => Ok(one.clone()),
            [] => Err(StoreError::NotFound(prefix.to_string())),
            _ => {
                let count: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM runs WHERE id >= ?1 AND id < ?1 || 'g'",
                )
                .bind(prefix.to_ascii_lowercase())
                .fetch_one(&self.reader)
                .await?;
                Err(StoreError::Ambiguous {
                    prefix: prefix.to_string(),
                    count: count as usize,
                })
            }
        }
    }

    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE (?1 IS NULL OR workflow = ?1) AND (?2 IS NULL OR state = ?2) AND (?3 IS NULL OR id < ?3) AND (?5 IS NULL OR root_id = ?5) ORDER BY id DESC LIMIT ?4"
        )))
        .bind(&filter.workflow)
        .bind(filter.state.map(RunState::as_str))
        .bind(&filter.before)
        .bind(i64::from(filter.limit.max(1)))
        .bind(&filter.root)
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    async fn children(&self, parent: &str, step: &StepKey) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs WHERE parent_id = ?1 AND parent_step = ?2 ORDER BY id"
        )))
        .bind(parent)
        .bind(step.as_str())
        .fetch_all(&self.reader)
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    async fn attempts(&self, run: &str) -> Result<Vec<AttemptRecord>> {
        let rows = sqlx::query(
            "SELECT a.step_key, a.attempt, a.state, COALESCE(a.input, bi.data) AS input, COALESCE(a.output, bo.data) AS output, a.error, a.wake_at, a.budget_reset, a.started_at, a.finished_at, a.input_blob, a.output_blob
             FROM attempts a LEFT JOIN blobs bi ON bi.hash = a.input_blob LEFT JOIN blobs bo ON bo.hash = a.output_blob
             WHERE a.run_id = ?1 ORDER BY a.rowid",
        )
        .bind(run)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get("state")?;
                let input: Option<String> = r.try_get("input")?;
                let output: Option<String> = r.try_get("output")?;
                let missing =
                    |col: &str, blob: Option<String>, value: &Option<String>| match (blob, value) {
                        (Some(hash), None) => Err(StoreError::Corrupt(format!(
                            "the {col} blob {hash} is missing"
                        ))),
                        _ => Ok(()),
                    };
                missing("input", r.try_get("input_blob")?, &input)?;
                missing("output", r.try_get("output_blob")?, &output)?;
                Ok(AttemptRecord {
                    step_key: StepKey::from_stored(r.try_get("step_key")?),
                    attempt: r.try_get::<i64, _>("attempt")? as u32,
                    state: AttemptState::from_str(&state).map_err(StoreError::Corrupt)?,
                    input: parse_json(input, "attempt input")?,
                    output: parse_json(output, "attempt output")?,
                    error: parse_json(r.try_get("error")?, "attempt error")?,
                    wake_at: r.try_get("wake_at")?,
                    budget_reset: r.try_get::<i64, _>("budget_reset")? != 0,
                    started_at: r.try_get("started_at")?,
                    finished_at: r.try_get("finished_at")?,
                })
            })
            .collect()
    }

    async fn claim(
        &self,
        scope: &ClaimScope,
        limit: usize,
        now: Millis,
        lease: Duration,
    ) -> Result<Vec<Claimed>> {
        let dead = self.dead_owners(now).await?;
        let root = match scope {
            ClaimScope::All => None,
            ClaimScope::Tree(root) => Some(root.as_str()),
        };
        let mut tx = self.begin().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE runs SET state = 'running', lease_owner = ?1, lease_until = ?2, lease_epoch = lease_epoch + 1,
                 started_at = COALESCE(started_at, ?3), updated_at = ?3, wake_at = NULL
             WHERE id IN (
                 SELECT id FROM runs
                 WHERE (state IN ('queued', 'running') OR (state = 'waiting' AND wake_at <= ?3))
                   AND (lease_owner IS NULL OR lease_until < ?3 OR lease_owner IN (SELECT value FROM json_each(?4)))
                   AND (?5 IS NULL OR root_id = ?5)
                 ORDER BY COALESCE(wake_at, created_at), id
                 LIMIT ?6)
             RETURNING {RUN_COLUMNS}"
        )))
        .bind(&self.node.id)
        .bind(now + lease.as_millis() as i64)
        .bind(now)
        .bind(&dead)
        .bind(root)
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        rows.iter()
            .map(|row| {
                Ok(Claimed {
                    lease: Lease {
                        run_id: row.try_get("id")?,
                        owner: row.try_get("lease_owner")?,
                        epoch: row.try_get("lease_epoch")?,
                    },
                    run: run_from_row(row)?,
                })
            })
            .collect()
    }

    async fn renew_leases(&self, now: Millis, lease: Duration) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "UPDATE runs SET lease_until = ?1 WHERE lease_owner = ?2 AND state = 'running'",
        )
        .bind(now + lease.as_millis() as i64)
        .bind(&self.node.id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn next_wake(&self, scope: &ClaimScope, now: Millis) -> Result<Option<Millis>> {
        let root = match scope {
            ClaimScope::All => None,
            ClaimScope::Tree(root) => Some(root.as_str()),
        };
        // Waiting runs that are not due yet, and runs leased by other live processes (their lease
        // may expire).
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT min(t) FROM (
                 SELECT wake_at AS t FROM runs WHERE state = 'waiting' AND wake_at > ?1 AND (?2 IS NULL OR root_id = ?2)
                 UNION ALL
                 SELECT lease_until + 1 AS t FROM runs WHERE state = 'running' AND lease_owner <> ?3 AND lease_until >= ?1 AND (?2 IS NULL OR root_id = ?2))",
        )
        .bind(now)
        .bind(root)
        .bind(&self.node.id)
        .fetch_one(&self.reader)
        .await?;
        Ok(next)
    }

    async fn unfinished(&self, scope: &ClaimScope) -> Result<u64> {
        let root = match scope {
            ClaimScope::All => None,
            ClaimScope::Tree(root) => Some(root.as_str()),
        };
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM runs WHERE state IN ('queued', 'running', 'waiting') AND (?1 IS NULL OR root_id = ?1)",
        )
        .bind(root)
        .fetch_one(&self.reader)
        .await?;
        Ok(n as u64)
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
        let mut tx = self.begin().await?;
        let fence = self.fence(&mut tx, lease, now).await?;
        sqlx::query("UPDATE attempts SET state = 'interrupted', finished_at = ?3 WHERE run_id = ?1 AND step_key = ?2 AND state = 'started'")
            .bind(&lease.run_id)
            .bind(step.as_str())
            .bind(now)
            .execute(&mut *tx)
            .await?;
        let (inline, blob) = self.payload(&mut tx, input, now).await?;
        sqlx::query(
            "INSERT INTO attempts (run_id, step_key, attempt, state, input, input_blob, wake_at, started_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )
        .bind(&lease.run_id)
        .bind(step.as_str())
        .bind(i64::from(attempt))
        .bind(state.as_str())
        .bind(inline)
        .bind(blob)
        .bind(wake_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(fence)
    }

    async fn finish_attempt(
        &self,
        lease: &Lease,
        step: &StepKey,
        attempt: u32,
        outcome: &Outcome,
        now: Millis,
    ) -> Result<Fence> {
        let mut tx = self.begin().await?;
        let fence = self.fence(&mut tx, lease, now).await?;
        let (inline, blob) = self
            .payload(&mut tx, outcome.output.as_deref(), now)
            .await?;
        let finished = (outcome.state != AttemptState::Waiting).then_some(now);
        let updated = sqlx::query(
            "UPDATE attempts SET state = ?4, output = ?5, output_blob = ?6, error = ?7, wake_at = COALESCE(?8, wake_at), finished_at = ?9 WHERE run_id = ?1 AND step_key = ?2 AND attempt = ?3",
        )
        .bind(&lease.run_id)
        .bind(step.as_str())
        .bind(i64::from(attempt))
        .bind(outcome.state.as_str())
        .bind(inline)
        .bind(blob)
        .bind(&outcome.error)
        .bind(outcome.wake_at)
        .bind(finished)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::Corrupt(format!(
                "run {} has no attempt {attempt} of step {step} to finish",
                lease.run_id
            )));
        }
        tx.commit().await?;
        Ok(fence)
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
        let mut tx = self.begin().await?;
        let fence = self.fence(&mut tx, lease, now).await?;
        let (input, input_blob) = self.payload(&mut tx, input, now).await?;
        let (output, output_blob) = self
            .payload(&mut tx, outcome.output.as_deref(), now)
            .await?;
        sqlx::query(
            "INSERT INTO attempts (run_id, step_key, attempt, state, input, input_blob, output, output_blob, error, wake_at, started_at, finished_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
        )
        .bind(&lease.run_id)
        .bind(step.as_str())
        .bind(i64::from(attempt))
        .bind(outcome.state.as_str())
        .bind(input)
        .bind(input_blob)
        .bind(output)
        .bind(output_blob)
        .bind(&outcome.error)
        .bind(outcome.wake_at)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(fence)
    }

    async fn park(&self, lease: &Lease, wake_at: Millis, now: Millis) -> Result<()> {
        let mut tx = self.begin().await?;
        self.fence(&mut tx, lease, now).await?;
        sqlx::query("UPDATE runs SET state = 'waiting', wake_at = ?2, lease_owner = NULL, lease_until = NULL WHERE id = ?1")
            .bind(&lease.run_id)
            .bind(wake_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn open_approval(&self, approval: &NewApproval) -> Result<ApprovalRecord> {
        let mut tx = self.begin().await?;
        let id = uuid::Uuid::now_v7().to_string();
        sqlx::query("INSERT INTO approvals (id, run_id, step_key, attempt, workflow, message, data, state, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8, ?9) ON CONFLICT (run_id, step_key, attempt) DO NOTHING")
            .bind(&id)
            .bind(&approval.run_id)
            .bind(approval.step_key.as_str())
            .bind(approval.attempt)
            .bind(&approval.workflow)
            .bind(&approval.message)
            .bind(approval.data.to_string())
            .bind(approval.now)
            .bind(approval.expires_at)
            .execute(&mut *tx)
            .await?;
        let attempt = approval.attempt.to_string();
        let record = approval_where(
            &mut tx,
            "a.run_id = ?1 AND a.step_key = ?2 AND a.attempt = CAST(?3 AS INTEGER)",
            &[&approval.run_id, approval.step_key.as_str(), &attempt],
        )
        .await?
        .ok_or_else(|| StoreError::NotFound(approval.run_id.clone()))?;
        tx.commit().await?;
        Ok(record)
    }

    async fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>> {
        let mut conn = self.reader.acquire().await?;
        approval_where(&mut conn, "a.id = ?1", &[id]).await
    }

    async fn approval_for(
        &self,
        run_id: &str,
        step_key: &StepKey,
        attempt: u32,
    ) -> Result<Option<ApprovalRecord>> {
        let mut conn = self.reader.acquire().await?;
        let attempt = attempt.to_string();
        approval_where(
            &mut conn,
            "a.run_id = ?1 AND a.step_key = ?2 AND a.attempt = CAST(?3 AS INTEGER)",
            &[run_id, step_key.as_str(), &attempt],
        )
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
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(limit)
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(approval_from_row)
            .collect()
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
        let mut tx = self.begin().await?;
        let current = approval_where(&mut tx, "a.id = ?1", &[id])
            .await?
            .ok_or_else(|| StoreError::ApprovalNotFound(id.to_string()))?;
        if current.state != ApprovalState::Pending {
            return Err(StoreError::ApprovalClosed {
                id: id.to_string(),
                state: current.state.as_str().to_string(),
            });
        }
        if current.run_state.is_terminal() {
            return Err(StoreError::ApprovalClosed {
                id: id.to_string(),
                state: format!("moot: its run is {}", current.run_state),
            });
        }
        sqlx::query("UPDATE approvals SET state = ?2, answer = ?3, answered_by = ?4, answered_at = ?5 WHERE id = ?1")
            .bind(id)
            .bind(decision.as_str())
            .bind(answer.to_string())
            .bind(by)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        // The run is due now. A run still executing keeps this wake time when it parks (see `park`),
        // so an answer that comes between its last look and its parking is not missed.
        sqlx::query(
            "UPDATE runs SET wake_at = ?2, updated_at = ?2 WHERE id = ?1 AND state IN ('running', 'waiting')",
        )
        .bind(&current.run_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let record = approval_where(&mut tx, "a.id = ?1", &[id])
            .await?
            .ok_or_else(|| StoreError::ApprovalNotFound(id.to_string()))?;
        tx.commit().await?;
        Ok(record)
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
        let mut tx = self.begin().await?;
        self.fence(&mut tx, lease, now).await?;
        sqlx::query(
            "UPDATE runs SET state = ?2, output = ?3, error = ?4, finished_at = ?5, wake_at = NULL, lease_owner = NULL, lease_until = NULL WHERE id = ?1",
        )
        .bind(&lease.run_id)
        .bind(state.as_str())
        .bind(output)
        .bind(error)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn release(&self, lease: &Lease) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE runs SET lease_owner = NULL, lease_until = NULL WHERE id = ?1 AND lease_owner = ?2 AND lease_epoch = ?3")
            .bind(&lease.run_id)
            .bind(&lease.owner)
            .bind(lease.epoch)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn request_cancel(&self, id: &str, now: Millis) -> Result<CancelOutcome> {
        let dead = self.dead_owners(now).await?;
        let mut tx = self.begin().await?;
        let state = self.run_state(&mut tx, id).await?;
        if state.is_terminal() {
            return Err(StoreError::InvalidState {
                run: id.to_string(),
                state,
                action: "it has already finished".into(),
            });
        }
        let error = serde_json::json!({"message": "the run was cancelled"}).to_string();
        // Ask every unfinished run of the subtree to stop, then finish at once the ones that no live
        // process is executing.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DESCENDANTS} UPDATE runs SET cancel_requested = 1 WHERE (id = ?1 OR id IN (SELECT id FROM d)) AND state IN ('queued', 'running', 'waiting')"
        )))
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "{DESCENDANTS} UPDATE runs SET state = 'cancelled', error = ?2, finished_at = ?3, wake_at = NULL, lease_owner = NULL, lease_until = NULL
             WHERE (id = ?1 OR id IN (SELECT id FROM d)) AND state IN ('queued', 'running', 'waiting')
               AND (lease_owner IS NULL OR lease_until < ?3 OR lease_owner IN (SELECT value FROM json_each(?4)))"
        )))
        .bind(id)
        .bind(&error)
        .bind(now)
        .bind(&dead)
        .execute(&mut *tx)
        .await?;
        let after = self.run_state(&mut tx, id).await?;
        tx.commit().await?;
        Ok(if after == RunState::Cancelled {
            CancelOutcome::Cancelled
        } else {
            CancelOutcome::Requested
        })
    }

    async fn retry_run(&self, id: &str, now: Millis) -> Result<()> {
        let mut tx = self.begin().await?;
        let state = self.run_state(&mut tx, id).await?;
        if state != RunState::Failed {
            return Err(StoreError::InvalidState {
                run: id.to_string(),
                state,
                action: "only failed runs can be retried (replay starts a new run from any run)"
                    .into(),
            });
        }
        sqlx::query("UPDATE attempts SET state = 'retrying', budget_reset = 1, wake_at = ?2 WHERE run_id = ?1 AND state = 'failed'")
            .bind(id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE runs SET state = 'queued', output = NULL, error = NULL, finished_at = NULL, wake_at = NULL, cancel_requested = 0, updated_at = ?2 WHERE id = ?1",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_owner_is_dead_exactly_when_its_lock_is_free() {
        let dir = tempfile::tempdir().unwrap();
        let mut options = SqliteOptions::new(dir.path().join("weft.db"));
        options.sync_full = false;
        let store = SqliteStore::open(options).await.unwrap();
        assert!(!store.owner_dead(store.node_id()));

        let held = uuid::Uuid::now_v7().to_string();
        let file = File::create(store.nodes_dir.join(format!("{held}.lock"))).unwrap();
        file.lock().unwrap();
        // A lock held through another open file of this process counts as alive, as it would for
        // another process.
        assert!(!store.owner_dead(&held));
        drop(file);
        // The process died: its file is still there, but nobody holds the lock.
        assert!(store.owner_dead(&held));
        assert!(!store.nodes_dir.join(format!("{held}.lock")).exists());
        assert!(store.owner_dead(&uuid::Uuid::now_v7().to_string()));
        assert!(!store.owner_dead("../etc/passwd"));
    }
}
