//! The hub's own trigger tasks: one per workflow whose trigger fires by itself (a schedule, a
//! poll or a queue), all restarted together when the project is reloaded. Webhooks need no task; the router
//! serves them.

use std::sync::{Arc, Mutex};

use tokio::task::JoinHandle;
use weft_core::Trigger;
use weft_engine::Engine;

use crate::{poll, queue, schedule};

/// The running trigger tasks.
#[derive(Clone)]
pub struct TriggerTasks {
    engine: Engine,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl TriggerTasks {
    /// Starts a task for every scheduled or polling workflow of the engine's current project.
    pub fn start(engine: Engine) -> TriggerTasks {
        let t = TriggerTasks {
            engine,
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
                        poll::run_poll(engine, workflow, p).await;
                    }));
                }
                Trigger::Queue(q) => {
                    let q = q.clone();
                    tasks.push(tokio::spawn(async move {
                        queue::run_queue(engine, workflow, q).await;
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
