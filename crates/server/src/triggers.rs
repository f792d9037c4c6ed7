//! The hub's own trigger tasks: one per workflow whose trigger fires by itself (a schedule, a
//! poll or a queue), all restarted together when the project is reloaded. Webhooks need no task; the router
//! serves them. [`Health`] keeps what each task last did, for the console's overview.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;
use weft_core::Trigger;
use weft_engine::Engine;

use crate::{poll, queue, schedule};

/// How a workflow's poll or queue trigger last went, on this hub since it started.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TriggerStatus {
    /// When it last did its work (a poll, a message committed), in milliseconds.
    pub last_ok: Option<i64>,
    /// When it last failed, and why.
    pub last_error: Option<(i64, String)>,
    /// Failures since the last success.
    pub failures_in_a_row: u64,
}

/// What the trigger tasks last did, by workflow.
#[derive(Debug, Default)]
pub struct Health {
    status: Mutex<HashMap<String, TriggerStatus>>,
}

impl Health {
    fn update(&self, workflow: &str, f: impl FnOnce(&mut TriggerStatus)) {
        let mut map = self.status.lock().unwrap_or_else(|p| p.into_inner());
        // Called per message of a queue: no allocation once the workflow has an entry.
        match map.get_mut(workflow) {
            Some(status) => f(status),
            None => f(map.entry(workflow.to_string()).or_default()),
        }
    }

    /// `workflow`'s trigger did its work.
    pub fn ok(&self, workflow: &str) {
        self.update(workflow, |s| {
            s.last_ok = Some(weft_store::now_millis());
            s.failures_in_a_row = 0;
        });
    }

    /// `workflow`'s trigger failed.
    pub fn failed(&self, workflow: &str, error: impl std::fmt::Display) {
        self.update(workflow, |s| {
            s.last_error = Some((weft_store::now_millis(), error.to_string()));
            s.failures_in_a_row += 1;
        });
    }

    /// How `workflow`'s trigger is doing.
    pub fn get(&self, workflow: &str) -> TriggerStatus {
        let map = self.status.lock().unwrap_or_else(|p| p.into_inner());
        map.get(workflow).cloned().unwrap_or_default()
    }
}

/// The running trigger tasks.
#[derive(Clone)]
pub struct TriggerTasks {
    engine: Engine,
    health: Arc<Health>,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl TriggerTasks {
    /// Starts a task for every scheduled or polling workflow of the engine's current project; they
    /// report to `health`.
    pub fn start(engine: Engine, health: Arc<Health>) -> TriggerTasks {
        let t = TriggerTasks {
            engine,
            health,
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        t.restart();
        t
    }

    /// Stops every task and starts them again for the current project.
    pub fn restart(&self) {
        self.stop();
        let project = self.engine.project();
        let mut tasks = match self.tasks.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        for workflow in project.workflows.values() {
            let engine = self.engine.clone();
            let health = self.health.clone();
            let workflow = workflow.clone();
            match &workflow.trigger {
                Trigger::Schedule(schedule) => {
                    let schedule = schedule.clone();
                    tasks.push(tokio::spawn(async move {
                        schedule::run_schedule(engine, workflow, schedule).await;
                    }));
                }
                Trigger::Poll(p) => {
                    let p = p.clone();
                    tasks.push(tokio::spawn(async move {
                        poll::run_poll(engine, workflow, p, health).await;
                    }));
                }
                Trigger::Queue(q) => {
                    let q = q.clone();
                    tasks.push(tokio::spawn(async move {
                        queue::run_queue(engine, workflow, q, health).await;
                    }));
                }
                Trigger::Manual | Trigger::Webhook(_) | Trigger::Tool(_) => {}
            }
        }
    }

    /// Stops every task.
    pub fn stop(&self) {
        let mut tasks = match self.tasks.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        for t in tasks.drain(..) {
            t.abort();
        }
    }
}
