//! Micro-benchmarks of the engine's per-step overhead: a run of 20 `map` steps, each committed
//! (attempt recorded before, outcome after) to a real SQLite store in a temporary folder, with the
//! store's default `synchronous=FULL` and with `NORMAL`. Divide a run's time by 20 for one step.

use std::sync::Arc;

use divan::Bencher;
use serde_json::json;
use weft_connectors::Registry;
use weft_core::{Project, Sources};
use weft_engine::{Engine, EngineOptions, EngineParts, SystemClock, Until};
use weft_store::{ClaimScope, SqliteOptions, SqliteStore};

fn main() {
    divan::main();
}

fn chain(steps: usize) -> String {
    let mut text = String::from("trigger: manual\nsteps:\n  - id: s0\n    map: ${{ .input.n }}\n");
    for i in 1..steps {
        text.push_str(&format!(
            "  - id: s{i}\n    map: ${{{{ .steps.s{} + 1 }}}}\n",
            i - 1
        ));
    }
    text
}

struct Setup {
    runtime: tokio::runtime::Runtime,
    engine: Engine,
    _dir: tempfile::TempDir,
}

fn setup(steps: usize, sync_full: bool) -> Setup {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut sources = Sources::new("weft.yaml", "");
    sources.add_workflow("workflows/chain.yaml", chain(steps));
    let project = Arc::new(Project::load(&sources, &weft_connectors::catalog()).unwrap());
    let mut options = SqliteOptions::new(dir.path().join("weft.db"));
    options.sync_full = sync_full;
    let store = runtime.block_on(SqliteStore::open(options)).unwrap();
    let engine = Engine::new(EngineParts {
        store: Arc::new(store),
        registry: Registry::default(),
        project,
        clock: Arc::new(SystemClock),
        options: EngineOptions::default(),
        mocks: None,
    });
    Setup {
        runtime,
        engine,
        _dir: dir,
    }
}

fn run_once(s: &Setup) {
    s.runtime.block_on(async {
        let id = s
            .engine
            .start_run("chain", json!({"n": 1}), None)
            .await
            .unwrap()
            .id()
            .to_string();
        s.engine
            .drive(ClaimScope::Tree(id.clone()), Until::RunFinished(id))
            .await
            .unwrap();
    });
}

#[divan::bench(args = [true, false])]
fn run_of_20_map_steps(bencher: Bencher, sync_full: bool) {
    let s = setup(20, sync_full);
    bencher.bench_local(|| run_once(&s));
}

#[divan::bench(args = [true, false])]
fn run_of_1_map_step(bencher: Bencher, sync_full: bool) {
    let s = setup(1, sync_full);
    bencher.bench_local(|| run_once(&s));
}
