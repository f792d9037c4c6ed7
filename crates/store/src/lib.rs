//! Weft's durable store: runs, step attempts and large payloads, behind the [`Store`] trait.
//!
//! # Brief overview
//!
//! - [`Store`] is everything the engine and the CLI may ask of the database. It is shaped for several
//!   engine processes sharing one database (the PostgreSQL implementation of a later version): a run
//!   is executed only by the process that [claimed](Store::claim) it and holds its [`Lease`]; every
//!   write about a running run is *fenced* by that lease, so a process whose lease was taken over
//!   cannot overwrite the new owner's work ([`StoreError::LeaseLost`]).
//! - [`SqliteStore`] is the embedded default: one file under the project's `.weft/`, WAL mode,
//!   `synchronous=FULL`, one writer connection whose writes commit in groups (the writes that queue
//!   while one commit waits for the disk share the next; each caller is answered once its own
//!   write is on disk). A crashed process's leases are recognised at once
//!   through per-process lock files, so a restart resumes work without waiting for leases to expire.
//!
//! The store keeps no clock: every timestamp (milliseconds since the Unix epoch) comes from the
//! caller, so that tests can drive time and all nodes agree on the engine's notion of "now".
//!
//! # Invariants
//!
//! - An attempt is recorded before its step runs ([`Store::begin_attempt`]), or whole once it has
//!   run when the step acts on nothing outside the run ([`Store::record_attempt`]), and its outcome
//!   is stored before any later write under the same lease ([`Store::finish_attempt`], or queued).
//! - A run with an idempotency key exists at most once per workflow and key.
//! - Step inputs and outputs larger than the inline limit live in a content-addressed blob table,
//!   stored once however many attempts carry them.

#![deny(missing_docs)]

mod readers;
mod sqlite;
mod writer;

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use weft_core::{AttemptState, RunState, StepKey};

pub use sqlite::{SqliteOptions, SqliteStore};

/// Milliseconds since the Unix epoch.
pub type Millis = i64;

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The caller's lease on the run is gone: it expired and another process claimed the run, or the
    /// run was finished or cancelled by someone else. The caller must stop working on the run.
    #[error("the lease on run {run} is no longer held by this process")]
    LeaseLost {
        /// The run.
        run: String,
    },
    /// No run has this id.
    #[error("no run has the id {0}")]
    NotFound(String),
    /// A run id prefix matches more than one run.
    #[error("the id prefix {prefix} matches several runs ({count}); give more characters")]
    Ambiguous {
        /// The prefix given.
        prefix: String,
        /// How many runs it matches.
        count: usize,
    },
    /// The run is not in a state that allows the operation.
    #[error("run {run} is {state}; {action}")]
    InvalidState {
        /// The run.
        run: String,
        /// Its state.
        state: RunState,
        /// What cannot be done, and what can.
        action: String,
    },
    /// The database failed.
    #[error("database error: {0}")]
    Database(#[from] rusqlite::Error),
    /// A group of writes could not be committed; none of it is on disk.
    #[error("the database could not commit: {0}")]
    Commit(String),
    /// The database holds something this version cannot read.
    #[error("the store holds unreadable data: {0}")]
    Corrupt(String),
    /// No approval has this id.
    #[error("no approval has the id {0}")]
    ApprovalNotFound(String),
    /// The approval was answered (or expired) already, or its run has finished.
    #[error("approval {id} is {state} already; it cannot be answered again")]
    ApprovalClosed {
        /// The approval.
        id: String,
        /// What it is now: `approved`, `rejected`, `expired`, or its run's final state.
        state: String,
    },
    /// The data changed under an operation that needed it unchanged; nothing was written.
    #[error("{0}")]
    Conflict(String),
    /// An outcome queued earlier under this lease could not be stored (see
    /// [`Store::queue_finish_attempt`]), so nothing more is written under it: the run continues
    /// later from what is stored.
    #[error(
        "an earlier outcome of run {run} could not be stored ({message}); the run continues later from what is stored"
    )]
    Unsettled {
        /// The run.
        run: String,
        /// Why the earlier write failed.
        message: String,
    },
    /// The store itself failed (a write or read panicked, or its threads are gone): a bug in Weft.
    #[error("the store failed internally: {0}")]
    Internal(String),
    /// The store's files could not be opened or created.
    #[error("cannot open the store at {path}: {message}")]
    Open {
        /// The path.
        path: String,
        /// Why.
        message: String,
    },
}

impl StoreError {
    /// Whether trying again later may succeed (the database was busy or unreachable).
    pub fn is_retryable(&self) -> bool {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked, SystemIoFailure};
        match self {
            StoreError::Commit(_) | StoreError::Unsettled { .. } => true,
            StoreError::Database(rusqlite::Error::SqliteFailure(e, _)) => {
                matches!(e.code, DatabaseBusy | DatabaseLocked | SystemIoFailure)
            }
            _ => false,
        }
    }
}

/// Result of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A run to create.
#[derive(Clone, Debug)]
pub struct NewRun {
    /// The workflow's name.
    pub workflow: String,
    /// The workflow version the run executes.
    pub version: String,
    /// The workflow file, relative to the project folder (kept with the version).
    pub file: String,
    /// The workflow's text at that version (stored once per version).
    pub source: String,
    /// The trigger event as delivered (`.trigger`).
    pub trigger: Value,
    /// The run's input (`.input`).
    pub input: Value,
    /// An idempotency key from the trigger: a second run with the same workflow and key is not
    /// created; the existing one is returned.
    pub idempotency_key: Option<String>,
    /// The parent run and step, for runs started by a `call` step.
    pub parent: Option<(String, StepKey)>,
    /// The root of the run tree (the run itself for top-level runs; `None` means itself).
    pub root: Option<String>,
    /// How many `call` steps deep the run is (0 for top-level runs).
    pub depth: u32,
    /// When the run was accepted.
    pub now: Millis,
}

/// Whether [`Store::create_run`] created a run or found one with the same idempotency key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Created {
    /// A new run with this id.
    New(String),
    /// The run that already carries the idempotency key.
    Existing(String),
}

impl Created {
    /// The run's id.
    pub fn id(&self) -> &str {
        match self {
            Created::New(id) | Created::Existing(id) => id,
        }
    }
}

/// A stored workflow version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredVersion {
    /// The workflow's name.
    pub workflow: String,
    /// The file it came from.
    pub file: String,
    /// Its text.
    pub source: String,
}

/// A run as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    /// The run's id (a UUIDv7, so ids sort by creation time).
    pub id: String,
    /// The workflow's name.
    pub workflow: String,
    /// The workflow version.
    pub version: String,
    /// The run's state.
    pub state: RunState,
    /// The root of the run's tree.
    pub root_id: String,
    /// The parent run, for child runs.
    pub parent_id: Option<String>,
    /// The parent's `call` step.
    pub parent_step: Option<String>,
    /// Depth in the run tree.
    pub depth: u32,
    /// The idempotency key from the trigger.
    pub idempotency_key: Option<String>,
    /// The trigger event.
    pub trigger: Value,
    /// The input.
    pub input: Value,
    /// The output, once succeeded.
    pub output: Option<Value>,
    /// The error, once failed or cancelled.
    pub error: Option<Value>,
    /// When a waiting run becomes runnable again.
    pub wake_at: Option<Millis>,
    /// Whether cancellation was requested while the run was executing.
    pub cancel_requested: bool,
    /// When the run was accepted.
    pub created_at: Millis,
    /// When an engine first claimed it.
    pub started_at: Option<Millis>,
    /// When it reached a final state.
    pub finished_at: Option<Millis>,
}

/// One attempt of one step, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptRecord {
    /// Which step execution (step id and item indices).
    pub step_key: StepKey,
    /// The attempt number, from 1.
    pub attempt: u32,
    /// Where the attempt is.
    pub state: AttemptState,
    /// The step's evaluated input.
    pub input: Option<Value>,
    /// The output, once succeeded.
    pub output: Option<Value>,
    /// The error, once failed.
    pub error: Option<Value>,
    /// For `waiting`: when the wait ends. For `retrying`: when the next attempt may start.
    pub wake_at: Option<Millis>,
    /// Set by an operator's retry: attempts before and including this one do not count against the
    /// step's attempt limit.
    pub budget_reset: bool,
    /// When the attempt was recorded.
    pub started_at: Millis,
    /// When it reached its final state.
    pub finished_at: Option<Millis>,
}

/// The right to execute one run, held by one process until it expires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The run.
    pub run_id: String,
    /// The process holding it (its node id).
    pub owner: String,
    /// Incremented by every claim: writes carry it, so a stale holder is fenced off. A run's
    /// first claim has epoch 1; since attempts are recorded only under a lease, a run at epoch 1
    /// has none yet.
    pub epoch: i64,
}

/// Receives the claims of runs created claimed ([`Store::create_claimed_runs`]).
pub type Deliver = Box<dyn FnOnce(Vec<Claimed>) + Send>;

/// A run claimed for execution.
#[derive(Clone, Debug, PartialEq)]
pub struct Claimed {
    /// The lease to present with every write.
    pub lease: Lease,
    /// The run as it was when claimed.
    pub run: RunRecord,
}

/// Which runs a [`Store::claim`] may pick.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimScope {
    /// Any runnable run.
    All,
    /// Only runs of the tree rooted at this run (the CLI's `weft run` executes its own run and the
    /// child runs it starts, nothing else).
    Tree(String),
}

/// What a fenced write learned about the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fence {
    /// Cancellation was requested; the engine should stop the run at the next step boundary.
    pub cancel_requested: bool,
}

/// The outcome to record for an attempt.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The attempt's new state.
    pub state: AttemptState,
    /// The output as JSON text.
    pub output: Option<String>,
    /// The error as JSON text.
    pub error: Option<String>,
    /// When a `waiting` attempt ends or a `retrying` attempt's successor may start. `None` keeps the
    /// time already recorded (a finished wait keeps the time it waited for).
    pub wake_at: Option<Millis>,
}

/// Filters for [`Store::list_runs`].
#[derive(Clone, Debug, Default)]
pub struct RunFilter {
    /// Only runs of this workflow.
    pub workflow: Option<String>,
    /// Only runs in this state.
    pub state: Option<RunState>,
    /// Only runs of the tree rooted at this run (the run itself and the child runs it started).
    pub root: Option<String>,
    /// Only runs whose id sorts before this one (the cursor for the next page).
    pub before: Option<String>,
    /// Only runs created at or after this time.
    pub since: Option<Millis>,
    /// Only runs created before this time.
    pub until: Option<Millis>,
    /// Only runs whose input or error holds this text (case-insensitive for ASCII).
    pub text: Option<String>,
    /// Most runs to return (newest first).
    pub limit: u32,
}

/// What [`Store::request_cancel`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    /// The run was not executing and is now cancelled.
    Cancelled,
    /// The run is executing; its engine stops it at the next step boundary.
    Requested,
}

/// Where an approval stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApprovalState {
    /// Nobody has answered yet.
    Pending,
    /// Answered: yes.
    Approved,
    /// Answered: no.
    Rejected,
    /// Nobody answered before the timeout.
    Expired,
}

impl ApprovalState {
    /// The state as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Rejected => "rejected",
            ApprovalState::Expired => "expired",
        }
    }

    /// The state named `s`.
    pub fn parse(s: &str) -> Option<ApprovalState> {
        Some(match s {
            "pending" => ApprovalState::Pending,
            "approved" => ApprovalState::Approved,
            "rejected" => ApprovalState::Rejected,
            "expired" => ApprovalState::Expired,
            _ => return None,
        })
    }
}

/// An approval step's question, as its run asks it.
#[derive(Clone, Debug)]
pub struct NewApproval {
    /// The run that waits.
    pub run_id: String,
    /// The approval step.
    pub step_key: StepKey,
    /// The step's attempt: a run retried after its approval failed (expired with
    /// `on_timeout: fail`) asks again, with a new attempt.
    pub attempt: u32,
    /// The run's workflow.
    pub workflow: String,
    /// What the approver reads.
    pub message: String,
    /// What they decide on.
    pub data: Value,
    /// When it expires, if ever.
    pub expires_at: Option<Millis>,
    /// Now.
    pub now: Millis,
}

/// An approval and, once given, its answer.
#[derive(Clone, Debug, PartialEq)]
pub struct ApprovalRecord {
    /// Its id (what `POST /api/approvals/<id>` names).
    pub id: String,
    /// The run that waits for it.
    pub run_id: String,
    /// The approval step.
    pub step_key: StepKey,
    /// The step's attempt that asked.
    pub attempt: u32,
    /// The run's workflow.
    pub workflow: String,
    /// What the approver reads.
    pub message: String,
    /// What they decide on.
    pub data: Value,
    /// Where it stands.
    pub state: ApprovalState,
    /// The state of the run that asked.
    pub run_state: RunState,
    /// When it was asked.
    pub created_at: Millis,
    /// When it expires, if ever.
    pub expires_at: Option<Millis>,
    /// When it was answered or expired.
    pub answered_at: Option<Millis>,
    /// What the answer carried (`null` when nothing).
    pub answer: Value,
    /// Who answered, as they said.
    pub answered_by: Option<String>,
}

/// The runs of one workflow in one state, as [`Store::overview`] counts them.
#[derive(Clone, Debug, PartialEq)]
pub struct RunCount {
    /// The workflow.
    pub workflow: String,
    /// The state.
    pub state: RunState,
    /// How many runs.
    pub count: u64,
    /// The newest of them.
    pub newest_id: String,
}

/// What [`Store::overview`] returns.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Overview {
    /// Runs created in the window, by workflow and state.
    pub counts: Vec<RunCount>,
    /// When the queued run that has waited longest became due (created, or due after a wait).
    pub oldest_queued: Option<Millis>,
    /// Pending approvals of unfinished runs.
    pub pending_approvals: u64,
    /// Unfinished runs (queued, running, waiting), whenever created, by state.
    pub unfinished: Vec<(RunState, u64)>,
}

/// An API token as stored: never its secret, only the secret's SHA-256.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenRecord {
    /// Its public id (what `weft tokens list` shows and `revoke` takes).
    pub id: String,
    /// The SHA-256 of its secret, in hex.
    pub hash: String,
    /// What it may do.
    pub role: weft_core::auth::Role,
    /// For the `tool` role: the tools it may call.
    pub tools: Option<Vec<String>>,
    /// A label for people.
    pub name: Option<String>,
    /// When it was made.
    pub created_at: Millis,
    /// When it stops working, if ever.
    pub expires_at: Option<Millis>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<Millis>,
    /// For a console session: the token it was signed in with. Revoking that token revokes its
    /// sessions; `weft tokens list` does not list sessions.
    pub parent: Option<String>,
}

impl TokenRecord {
    /// Whether it works at `now`: not revoked, not expired.
    pub fn is_live(&self, now: Millis) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| t > now)
    }
}

/// A secret of the secret store as stored: its value encrypted (AES-256-GCM) by the caller.
#[derive(Clone, Debug, PartialEq)]
pub struct SecretRecord {
    /// Its name, as `{ secret: NAME }` refers to it.
    pub name: String,
    /// Which master key encrypted it (a fingerprint of the key, never the key).
    pub key_id: String,
    /// The nonce of its encryption, fresh for every write.
    pub nonce: Vec<u8>,
    /// The encrypted value with its authentication tag.
    pub ciphertext: Vec<u8>,
    /// When it was first set.
    pub created_at: Millis,
    /// When it was last set.
    pub updated_at: Millis,
}

/// One entry of the audit log: who did what to what, and when.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    /// When.
    pub at: Millis,
    /// Who: a token id (`tok_…`), `cli` (a command on the hub's machine), `stdio` (`weft mcp`) or
    /// `system`.
    pub actor: String,
    /// What, such as `token.create`, `approval.answer`, `tool.call`, `run.retry`.
    pub action: String,
    /// To what: a token, approval, run or tool.
    pub target: String,
    /// More, such as a tool call's arguments (sensitive fields masked); never a secret.
    pub details: Value,
}

/// The durable store of runs. See the crate documentation for the lease model.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The id of this process as a lease owner.
    fn node_id(&self) -> &str;

    /// Creates a run in state `queued`, storing its workflow version if new. With an idempotency key
    /// that an existing run of the same workflow carries, returns that run instead.
    async fn create_run(&self, run: NewRun) -> Result<Created>;

    /// Creates runs as [`Store::create_run`] does and, in the same transaction, stores a trigger's
    /// state under `key` (a schedule's last slot, a poll's cursor), so that the state never runs
    /// ahead of the runs it produced nor behind them.
    async fn create_runs(
        &self,
        runs: &[NewRun],
        state: Option<(&str, &Value)>,
        now: Millis,
    ) -> Result<Vec<Created>>;

    /// Creates runs as [`Store::create_runs`] does, but each new run already claimed by this
    /// process until `now + lease` (state `running`, lease epoch 1, started at its acceptance), as
    /// if [`Store::claim`] had taken it in the same transaction: the process that accepts an event
    /// and has room to execute it needs no claim of its own. `deliver` gets the new runs' claims
    /// as soon as they are committed, on the store's own thread (it must not block), also when
    /// the caller has stopped waiting, so that a run created claimed always reaches its executor;
    /// it is dropped uncalled when nothing was committed. A run found by its idempotency key is
    /// returned as it is, unclaimed, and not delivered.
    async fn create_claimed_runs(
        &self,
        runs: &[NewRun],
        state: Option<(&str, &Value)>,
        now: Millis,
        lease: Duration,
        deliver: Deliver,
    ) -> Result<Vec<Created>>;

    /// Opens the approval that an attempt of a run's step asks for, or returns the one that attempt
    /// opened before (a step that resumes after a crash asks again).
    async fn open_approval(&self, approval: &NewApproval) -> Result<ApprovalRecord>;

    /// The approval with this id.
    async fn approval(&self, id: &str) -> Result<Option<ApprovalRecord>>;

    /// The approval an attempt of a run's step opened, if any.
    async fn approval_for(
        &self,
        run_id: &str,
        step_key: &StepKey,
        attempt: u32,
    ) -> Result<Option<ApprovalRecord>>;

    /// Approvals, newest first: only the pending ones of unfinished runs, or all.
    async fn list_approvals(&self, pending_only: bool, limit: u32) -> Result<Vec<ApprovalRecord>>;

    /// Answers a pending approval (`Approved`, `Rejected`, or `Expired` when its timeout passed) and,
    /// in the same transaction, makes its run due now (a run that is still executing keeps that wake
    /// time when it parks, so the answer is never missed). An approval that is no longer pending, or
    /// whose run has finished, is [`StoreError::ApprovalClosed`] and changes nothing.
    async fn answer_approval(
        &self,
        id: &str,
        decision: ApprovalState,
        answer: &Value,
        by: Option<&str>,
        now: Millis,
    ) -> Result<ApprovalRecord>;

    /// The state a trigger stored with [`Store::create_runs`].
    async fn trigger_state(&self, key: &str) -> Result<Option<Value>>;

    /// The value of `key` in `namespace` of the conversation state, unless it expired by `now`.
    async fn state_get(&self, namespace: &str, key: &str, now: Millis) -> Result<Option<Value>>;

    /// Writes `key` in `namespace`, replacing any value, to be forgotten at `expires_at` if given.
    async fn state_set(
        &self,
        namespace: &str,
        key: &str,
        value: &Value,
        expires_at: Option<Millis>,
        now: Millis,
    ) -> Result<()>;

    /// Forgets `key` in `namespace`; whether it was there (and not yet expired).
    async fn state_delete(&self, namespace: &str, key: &str, now: Millis) -> Result<bool>;

    /// Deletes up to `limit` keys that expired by `now`; returns how many.
    async fn purge_expired_state(&self, now: Millis, limit: u32) -> Result<u64>;

    /// Writes a secret (a new one, or a new value of one; `created_at` is kept then). Says whether
    /// it is new. Refuses ([`StoreError::Conflict`]) while another secret is under a different key.
    async fn put_secret(&self, secret: &SecretRecord) -> Result<bool>;

    /// Every secret, by name.
    async fn list_secrets(&self) -> Result<Vec<SecretRecord>>;

    /// Deletes a secret; says whether there was one.
    async fn delete_secret(&self, name: &str) -> Result<bool>;

    /// Replaces, in one transaction, the encryption of every secret that `from_key` encrypted with
    /// `secrets` (same names and `updated_at`, new key). Changes nothing, with
    /// [`StoreError::Conflict`], unless `secrets` names exactly the secrets under `from_key`, each
    /// as last written (a value set meanwhile is not overwritten with the older one).
    async fn reencrypt_secrets(&self, from_key: &str, secrets: &[SecretRecord]) -> Result<()>;

    /// Appends an entry to the audit log and returns its sequence number. Entries are never changed
    /// or deleted through the store.
    async fn append_audit(&self, entry: &AuditEntry) -> Result<u64>;

    /// Audit entries, newest first, with sequence numbers below `before` (all without it), and with
    /// `matching`, only those whose actor, action, target or details hold that text.
    async fn list_audit(
        &self,
        before: Option<u64>,
        limit: u32,
        matching: Option<&str>,
    ) -> Result<Vec<(u64, AuditEntry)>>;

    /// Stores a new API token (its hash, never its secret).
    async fn create_token(&self, token: &TokenRecord) -> Result<()>;

    /// The token whose secret has this SHA-256, revoked or expired ones included.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;

    /// Every token, oldest first.
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>>;

    /// Revokes token `id` and the sessions signed in with it; whether `id` was live before.
    async fn revoke_token(&self, id: &str, now: Millis) -> Result<bool>;

    /// Deletes up to `limit` console sessions (tokens with a parent) that ended, by expiry or
    /// revocation, before `before`; returns how many. Tokens themselves are never deleted.
    async fn purge_sessions(&self, before: Millis, limit: u32) -> Result<u64>;

    /// How many runs are queued, running and waiting, by workflow and state.
    async fn count_unfinished(&self) -> Result<Vec<(String, RunState, u64)>>;

    /// What the console's overview shows: the runs created since `since` by workflow and state,
    /// when the longest-waiting queued run became due, and how many approvals of unfinished runs are
    /// pending. It reads only the runs of the window (run ids begin with their creation time),
    /// however many runs the store holds.
    async fn overview(&self, since: Millis) -> Result<Overview>;

    /// Commits a small write of its own and returns once it is on disk: whether the store takes
    /// writes now (a full disk, a read-only file system, a broken database fail it). For readiness
    /// checks.
    async fn check_writable(&self, now: Millis) -> Result<()>;

    /// Deletes up to `limit` top-level runs that finished before `before`, with their child runs,
    /// attempts and payloads, and gives the space back. Returns how many runs were deleted.
    async fn purge_finished(&self, before: Millis, limit: u32) -> Result<u64>;

    /// Deletes the run trees rooted at `roots` (each run with its child runs, attempts, approvals and
    /// payloads) whose runs have all finished, and gives the space back. Returns how many runs were
    /// deleted and how many trees were left because a run in them is unfinished.
    async fn erase_trees(&self, roots: &[String]) -> Result<(u64, u64)>;

    /// The stored text of a workflow version.
    async fn load_version(&self, version: &str) -> Result<Option<StoredVersion>>;

    /// A run by id.
    async fn get_run(&self, id: &str) -> Result<Option<RunRecord>>;

    /// The full id of the one run whose id starts with `prefix`.
    async fn resolve_run_id(&self, prefix: &str) -> Result<String>;

    /// Runs, newest first.
    async fn list_runs(&self, filter: &RunFilter) -> Result<Vec<RunRecord>>;

    /// The child runs that `call` step `step` of run `parent` started, oldest first.
    async fn children(&self, parent: &str, step: &StepKey) -> Result<Vec<RunRecord>>;

    /// Every attempt of a run, in the order they were recorded, with payloads loaded.
    async fn attempts(&self, run: &str) -> Result<Vec<AttemptRecord>>;

    /// Claims up to `limit` runnable runs for this process until `now + lease`: queued runs, waiting
    /// runs that are due, and runs whose previous holder's lease expired or whose process died.
    async fn claim(
        &self,
        scope: &ClaimScope,
        limit: usize,
        now: Millis,
        lease: Duration,
    ) -> Result<Vec<Claimed>>;

    /// Extends every lease this process holds to `now + lease`.
    async fn renew_leases(&self, now: Millis, lease: Duration) -> Result<()>;

    /// The earliest time a run in `scope` that is not runnable now becomes runnable, so that an idle
    /// engine can sleep until then.
    async fn next_wake(&self, scope: &ClaimScope, now: Millis) -> Result<Option<Millis>>;

    /// How many runs in `scope` are not finished.
    async fn unfinished(&self, scope: &ClaimScope) -> Result<u64>;

    /// Records attempt `attempt` of `step` before the step runs (state `started`, or `waiting` for a
    /// wait), marking an earlier unfinished attempt of the step as `interrupted`. Fenced; when
    /// cancellation was requested it records nothing (the step must not start) and says so.
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
    ) -> Result<Fence>;

    /// Records the outcome of an attempt. Fenced.
    async fn finish_attempt(
        &self,
        lease: &Lease,
        step: &StepKey,
        attempt: u32,
        outcome: &Outcome,
        now: Millis,
    ) -> Result<Fence>;

    /// Queues [`Store::finish_attempt`] and returns at once, for an outcome that nothing outside
    /// the run depends on until the run's next write: writes are stored in the order they are
    /// queued, so once a later fenced write under the same lease has returned `Ok`, this outcome
    /// is stored too. If it cannot be stored, every later fenced write under the lease fails with
    /// [`StoreError::Unsettled`] instead, until the lease is released: nothing is built on an
    /// outcome that is not on disk. (This spares the run one wait for the disk per step.)
    fn queue_finish_attempt(
        &self,
        lease: &Lease,
        step: &StepKey,
        attempt: u32,
        outcome: &Outcome,
        now: Millis,
    );

    /// Queues [`Store::record_attempt`] of an attempt without an input (a skipped step, an
    /// `if`/`switch` decision) as [`Store::queue_finish_attempt`] queues its write.
    fn queue_record_attempt(
        &self,
        lease: &Lease,
        step: &StepKey,
        attempt: u32,
        outcome: &Outcome,
        now: Millis,
    );

    /// Records a whole attempt at once, for steps that settle without running (a skipped step) or
    /// that cannot crash the process (a `fail` step). Fenced.
    async fn record_attempt(
        &self,
        lease: &Lease,
        step: &StepKey,
        attempt: u32,
        input: Option<&str>,
        outcome: &Outcome,
        now: Millis,
    ) -> Result<Fence>;

    /// Pauses the run until `wake_at` (state `waiting`) and gives up the lease; an earlier wake time
    /// set while it ran (an approval's answer) is kept. Fenced.
    async fn park(&self, lease: &Lease, wake_at: Millis, now: Millis) -> Result<()>;

    /// Ends the run in a final state with its output or error and gives up the lease. Fenced.
    async fn finish_run(
        &self,
        lease: &Lease,
        state: RunState,
        output: Option<&str>,
        error: Option<&str>,
        now: Millis,
    ) -> Result<()>;

    /// Gives up the lease without changing the run, for a clean shutdown or after a failed write:
    /// another process (or a later start) continues it at once.
    async fn release(&self, lease: &Lease) -> Result<()>;

    /// Cancels a run and its unfinished child runs: at once when not executing, otherwise by asking
    /// the executing engine to stop.
    async fn request_cancel(&self, id: &str, now: Millis) -> Result<CancelOutcome>;

    /// Makes a failed run runnable again from its failed steps, which get a fresh attempt budget.
    async fn retry_run(&self, id: &str, now: Millis) -> Result<()>;
}

/// The current time in milliseconds since the Unix epoch.
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

#[cfg(test)]
mod tests;
