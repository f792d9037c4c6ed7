//! Micro-benchmarks of the store's commit path, on a real SQLite file in a temporary folder with
//! the default `synchronous=FULL` (every commit waits for the disk) and with `NORMAL`:
//!
//! - one webhook-sized run created by a lone writer (one commit per write);
//! - 64 runs created by 64 concurrent writers, as 64 webhook clients do: group commit lets them
//!   share commits, so divide the time by 64 for one write's share;
//! - one step's pair of writes (attempt recorded, outcome recorded) on a claimed run.
//!
//! The temporary folder is where `TMPDIR` points; the figures depend on that disk's fsync.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use divan::Bencher;
use serde_json::json;
use weft_core::{AttemptState, StepKey};
use weft_store::{ClaimScope, Lease, NewRun, Outcome, SqliteOptions, SqliteStore, Store};

fn main() {
    divan::main();
}

/// The store first: it is dropped before the runtime.
struct Setup {
    store: Arc<SqliteStore>,
    runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn setup(sync_full: bool) -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut options = SqliteOptions::new(dir.path().join("weft.db"));
    options.sync_full = sync_full;
    let store = Arc::new(runtime.block_on(SqliteStore::open(options)).unwrap());
    Setup {
        store,
        runtime,
        _dir: dir,
    }
}

/// A unique key for every run, so that no write is an idempotent repeat.
static SEQ: AtomicU64 = AtomicU64::new(0);

fn new_run() -> NewRun {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    NewRun {
        workflow: "relay".into(),
        version: "v1".into(),
        file: "workflows/relay.yaml".into(),
        source: "trigger: webhook\nsteps: [{id: a, map: 1}]\n".into(),
        trigger: json!({"type": "webhook", "path": "relay", "method": "POST", "headers": {"content-type": "application/json"}, "query": {}}),
        input: json!({"id": n, "customer": {"email": "ada@example.com"}, "items": [{"price": 9.5}, {"price": 12.0}]}),
        idempotency_key: Some(format!("webhook:{n}")),
        parent: None,
        root: None,
        depth: 0,
        now: 1,
    }
}

#[divan::bench(args = [true, false])]
fn create_run_alone(bencher: Bencher, sync_full: bool) {
    let s = setup(sync_full);
    bencher.bench_local(|| {
        s.runtime
            .block_on(s.store.create_run(new_run()))
            .expect("created")
    });
}

#[divan::bench(args = [true, false])]
fn create_64_runs_concurrently(bencher: Bencher, sync_full: bool) {
    let s = setup(sync_full);
    bencher.bench_local(|| {
        s.runtime.block_on(async {
            let tasks: Vec<_> = (0..64)
                .map(|_| {
                    let store = Arc::clone(&s.store);
                    tokio::spawn(async move { store.create_run(new_run()).await })
                })
                .collect();
            for task in tasks {
                task.await.expect("joins").expect("created");
            }
        })
    });
}

#[divan::bench(args = [true, false])]
fn step_attempt_and_outcome(bencher: Bencher, sync_full: bool) {
    let s = setup(sync_full);
    let lease: Lease = s.runtime.block_on(async {
        s.store.create_run(new_run()).await.unwrap();
        let mut claimed = s
            .store
            .claim(&ClaimScope::All, 1, 2, Duration::from_secs(3600))
            .await
            .unwrap();
        claimed.remove(0).lease
    });
    let step = StepKey::top("shape");
    let output = json!({"id": 1, "customer": "ada@example.com", "total": 21.5}).to_string();
    let mut attempt = 0u32;
    bencher.bench_local(|| {
        attempt += 1;
        s.runtime.block_on(async {
            s.store
                .begin_attempt(&lease, &step, attempt, None, AttemptState::Started, None, 3)
                .await
                .expect("begun");
            let outcome = Outcome {
                state: AttemptState::Succeeded,
                output: Some(output.clone()),
                error: None,
                wake_at: None,
            };
            s.store
                .finish_attempt(&lease, &step, attempt, &outcome, 4)
                .await
                .expect("finished");
        })
    });
}
