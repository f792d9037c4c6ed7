//! Evaluating expressions where a runaway cannot starve the async runtime.
//!
//! Almost every evaluation takes microseconds, so it runs where it is asked for, on the runtime's
//! thread, under a small quota ([`EvalOptions::inline`]: a millisecond or two, a little memory and
//! stack). One that passes the quota is stopped there (cheaply: its checkpoints unwind it) and run
//! again from the start on a thread of its own, under the project's full limits
//! (`limits.expression_*`), while the task that asked waits without holding a runtime thread.
//! Expressions are pure functions of their input, so running one again gives what the first run
//! would have. At most [`EvalOptions::heavy_threads`] such threads run at once; more wait for a
//! turn.
//!
//! An evaluation is cancelled by the flags it is given (a run's cancellation, the hub stopping)
//! and when the future waiting for it is dropped; a thread whose evaluation is cancelled stops at
//! its next checkpoint.
//!
//! A heavy thread's stack holds the recursion the stack limit allows and, above it, room for the
//! deepest value the memory limit lets an expression build: values are freed, compared and
//! written recursively (by jaq, outside any checkpoint), each level of nesting costing at least
//! [`MIN_BYTES_PER_LEVEL`] of memory and at most [`STACK_PER_LEVEL`] of stack. The stack is
//! reserved address space; only what is used takes memory, and the thread ends with its
//! evaluation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;
use weft_core::expr::{Budget, EvalLimits, Limit};
use weft_core::{EvalError, Template, Val};

/// Least memory one level of nesting of a value takes (an array of one element; measured).
pub const MIN_BYTES_PER_LEVEL: u64 = 96;
/// Most stack one level of nesting takes when a value is freed, compared or written (measured in
/// debug builds, where frames are largest, with room to spare).
pub const STACK_PER_LEVEL: u64 = if cfg!(debug_assertions) { 512 } else { 256 };

/// How evaluations are placed.
#[derive(Clone, Debug)]
pub struct EvalOptions {
    /// The quota of an evaluation on the runtime's thread, before it moves to a thread of its own.
    /// Its stack must fit the runtime's threads with room to spare, together with freeing a
    /// value as deep as its memory allows (see the module docs).
    pub inline: EvalLimits,
    /// Most evaluations that run on threads of their own at once.
    pub heavy_threads: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            inline: EvalLimits {
                timeout: Duration::from_millis(2),
                memory_bytes: 256 << 10,
                stack_bytes: 256 << 10,
            },
            heavy_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        }
    }
}

/// Places evaluations (see the module docs). Cheap to share.
#[derive(Clone)]
pub struct Evaluator {
    options: EvalOptions,
    heavy: Arc<Semaphore>,
}

/// Sets a flag when dropped, unless disarmed: the evaluation a dropped future waited for stops.
struct CancelOnDrop(Option<Arc<AtomicBool>>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(flag) = self.0.take() {
            flag.store(true, Ordering::Relaxed);
        }
    }
}

impl Evaluator {
    /// An evaluator placing evaluations as `options` say.
    pub fn new(options: EvalOptions) -> Evaluator {
        Evaluator {
            heavy: Arc::new(Semaphore::new(options.heavy_threads.max(1))),
            options,
        }
    }

    /// Evaluates `template` on `context` under `limits`, stopped early when `cancel` becomes true.
    pub async fn eval(
        &self,
        template: &Template,
        context: &Val,
        limits: &EvalLimits,
        cancel: Option<&Arc<AtomicBool>>,
    ) -> Result<Val, EvalError> {
        if template.is_const() {
            return template.eval(context, &Budget::new(*limits, None));
        }
        let quota = limits.capped(&self.options.inline);
        let budget = Budget::new(quota, cancel.cloned());
        let first = template.eval(context, &budget);
        drop(budget);
        match &first {
            Err(e) if passed_quota(e.limit, &quota, limits) => {}
            _ => return first,
        }
        metrics::counter!("weft_expression_heavy_total").increment(1);
        self.eval_heavy(template, context, limits, cancel).await
    }

    /// Runs an evaluation on a thread of its own, under the full limits.
    async fn eval_heavy(
        &self,
        template: &Template,
        context: &Val,
        limits: &EvalLimits,
        cancel: Option<&Arc<AtomicBool>>,
    ) -> Result<Val, EvalError> {
        let code = first_code(template);
        let stopped = |code: String| EvalError {
            code,
            message: Limit::Cancelled.to_string(),
            limit: Some(Limit::Cancelled),
        };
        let Ok(permit) = self.heavy.clone().acquire_owned().await else {
            return Err(stopped(code));
        };
        let mine = Arc::new(AtomicBool::new(false));
        let mut guard = CancelOnDrop(Some(mine.clone()));
        let (tx, rx) = tokio::sync::oneshot::channel();
        let (template, context, limits) = (template.clone(), context.clone(), *limits);
        let cancel = cancel.cloned();
        let job = move || {
            let budget = Budget::new(limits, cancel).cancelled_by(mine);
            let result = template.eval(&context, &budget);
            // What the evaluation built is freed here, on this thread's stack.
            drop(context);
            let _ = tx.send(result);
            drop(permit);
        };
        let full = heavy_stack(&limits);
        let spawned = spawn(full, job).or_else(|job| {
            // The address space for the full stack was refused: try with room for the stack
            // limit only (deep values are then limited by the stack, with a smaller margin).
            spawn(limits.stack_bytes as usize + (16 << 20), job)
        });
        if spawned.is_err() {
            guard.0 = None;
            return Err(EvalError {
                code,
                message: "no thread could be started to evaluate the expression".into(),
                limit: None,
            });
        }
        let result = rx.await;
        guard.0 = None;
        result.unwrap_or_else(|_| Err(stopped(code)))
    }
}

/// Starts `job` on a thread with `stack` bytes of stack, or gives the job back.
fn spawn<F: FnOnce() + Send + 'static>(stack: usize, job: F) -> Result<(), F> {
    // The job is handed over through a slot so that it can be given back when the thread cannot
    // be started.
    let slot = Arc::new(std::sync::Mutex::new(Some(job)));
    let inner = slot.clone();
    let started = std::thread::Builder::new()
        .name("weft-expression".into())
        .stack_size(stack)
        .spawn(move || {
            let job = inner.lock().ok().and_then(|mut j| j.take());
            if let Some(job) = job {
                job();
            }
        });
    match started {
        Ok(_) => Ok(()),
        Err(_) => {
            let job = slot.lock().ok().and_then(|mut j| j.take());
            job.map_or(Ok(()), Err)
        }
    }
}

/// The stack of a heavy thread under `limits` (see the module docs).
pub fn heavy_stack(limits: &EvalLimits) -> usize {
    let levels = limits.memory_bytes / MIN_BYTES_PER_LEVEL;
    let bytes = limits
        .stack_bytes
        .saturating_add(levels.saturating_mul(STACK_PER_LEVEL))
        .saturating_add(16 << 20);
    bytes.min(8 << 30) as usize
}

/// Whether an evaluation stopped by `limit` under `quota` may succeed under `limits`.
fn passed_quota(limit: Option<Limit>, quota: &EvalLimits, limits: &EvalLimits) -> bool {
    match limit {
        Some(Limit::Time(_)) => quota.timeout < limits.timeout,
        Some(Limit::Memory(_)) => quota.memory_bytes < limits.memory_bytes,
        Some(Limit::Stack(_)) => quota.stack_bytes < limits.stack_bytes,
        _ => false,
    }
}

fn first_code(template: &Template) -> String {
    template
        .exprs()
        .first()
        .map(|e| e.code.clone())
        .unwrap_or_default()
}
