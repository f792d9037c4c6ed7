//! Limits on one evaluation of expressions: time, memory, stack, cancellation.
//!
//! jaq has no fuel, so the budget is checked at checkpoints: every time jaq clones its execution
//! context (which it does on every function call, pipe, loop turn and variable binding, so no
//! program can loop or recurse without passing one), inside the built-in generators that Weft
//! replaces (`range`, `path`, …), and before the single operations whose result can be much larger
//! than their input (a string repeated, split or matched). A checkpoint that finds a limit passed
//! unwinds out of jaq with a private payload that [`Budget::run`] catches: nothing in jaq can catch
//! it (`try` does not), no panic message is printed, and everything the evaluation built is freed on
//! the way out.
//!
//! What is measured:
//! - time: wall-clock time since the evaluation started, read every [`TIME_EVERY`] checkpoints;
//! - memory: bytes the evaluating thread holds beyond what it held at the start, read from the
//!   allocation meter ([`super::meter`]) at every checkpoint;
//! - stack: how far the stack grew since the start, at every checkpoint, which bounds recursion
//!   (deep jq recursion grows the stack between checkpoints only by the frames of one call);
//! - cancellation: a flag the caller sets, read with the time.
//!
//! JSON nesting is bounded separately: `fromjson` and the values an expression returns may nest at
//! most [`MAX_JSON_DEPTH`] levels, the depth every JSON reader in Weft accepts.

use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Deepest nesting of arrays and objects that `fromjson` reads and that an expression may return:
/// the limit of the JSON reader that reads every stored value back (serde_json's).
pub const MAX_JSON_DEPTH: usize = 128;

/// Checkpoints between two readings of the clock and the cancellation flag.
pub const TIME_EVERY: u32 = 64;

/// The limits one evaluation runs under, as `limits:` in `weft.yaml` sets them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalLimits {
    /// Longest wall-clock time (`limits.expression_timeout`).
    pub timeout: Duration,
    /// Most bytes held at once beyond the input (`limits.expression_memory_bytes`).
    pub memory_bytes: u64,
    /// Most stack the evaluation may grow, which bounds recursion (`limits.expression_stack_bytes`).
    pub stack_bytes: u64,
}

impl Default for EvalLimits {
    fn default() -> Self {
        EvalLimits {
            timeout: Duration::from_secs(10),
            memory_bytes: 128 << 20,
            stack_bytes: 64 << 20,
        }
    }
}

impl EvalLimits {
    /// Each limit at most the one in `cap`.
    pub fn capped(&self, cap: &EvalLimits) -> EvalLimits {
        EvalLimits {
            timeout: self.timeout.min(cap.timeout),
            memory_bytes: self.memory_bytes.min(cap.memory_bytes),
            stack_bytes: self.stack_bytes.min(cap.stack_bytes),
        }
    }
}

/// Which limit stopped an evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// It ran longer than this.
    Time(Duration),
    /// It held more memory than this many bytes.
    Memory(u64),
    /// It recursed deeper than this many bytes of stack allow.
    Stack(u64),
    /// It read or returned JSON nested deeper than [`MAX_JSON_DEPTH`].
    Depth,
    /// Its caller cancelled it (the run was cancelled or the hub is stopping).
    Cancelled,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Limit::Time(d) => write!(
                f,
                "it ran longer than limits.expression_timeout ({})",
                crate::duration::format(*d)
            ),
            Limit::Memory(n) => write!(
                f,
                "it needed more memory than limits.expression_memory_bytes ({n} bytes)"
            ),
            Limit::Stack(n) => write!(
                f,
                "it recursed deeper than limits.expression_stack_bytes ({n} bytes of stack) allows"
            ),
            Limit::Depth => write!(
                f,
                "it read or made a value nested deeper than {MAX_JSON_DEPTH} levels, the most JSON in Weft may nest"
            ),
            Limit::Cancelled => f.write_str("it was cancelled"),
        }
    }
}

/// The payload of the unwinding that stops an evaluation.
struct Stopped(Limit);

/// Why [`Budget::run`] gave no value.
pub(crate) enum Stop {
    /// A limit was passed.
    Limit(Limit),
    /// jaq panicked, with this message.
    Panic(String),
}

/// The budget of one evaluation on one thread. Create it where the evaluation runs: it measures
/// that thread's stack and memory.
pub struct Budget {
    limits: EvalLimits,
    cancel: [Option<Arc<AtomicBool>>; 2],
    started: Instant,
    deadline: Instant,
    ticks: Cell<u32>,
    stack_base: Cell<usize>,
    memory_base: Cell<i64>,
}

/// The address of a local: where the stack is now.
#[inline(always)]
fn stack_position() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

impl Budget {
    /// A budget of `limits`, stopped early when `cancel` becomes true.
    pub fn new(limits: EvalLimits, cancel: Option<Arc<AtomicBool>>) -> Budget {
        let started = Instant::now();
        Budget {
            limits,
            cancel: [cancel, None],
            started,
            deadline: started.checked_add(limits.timeout).unwrap_or(started),
            ticks: Cell::new(0),
            stack_base: Cell::new(stack_position()),
            memory_base: Cell::new(super::meter::live_bytes()),
        }
    }

    /// Also stopped early when `flag` becomes true.
    pub fn cancelled_by(mut self, flag: Arc<AtomicBool>) -> Budget {
        self.cancel[1] = Some(flag);
        self
    }

    /// The limits this budget holds.
    pub fn limits(&self) -> &EvalLimits {
        &self.limits
    }

    /// How long the evaluation has run.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Runs `f` under this budget: `Err` when a checkpoint inside it found a limit passed (or jaq
    /// panicked, which is a bug there, not a reason to take the process down). The stack is
    /// measured from here.
    pub(crate) fn run<T>(&self, f: impl FnOnce() -> T) -> Result<T, Stop> {
        self.stack_base.set(stack_position());
        match catch_unwind(AssertUnwindSafe(f)) {
            Ok(value) => Ok(value),
            Err(payload) => match payload.downcast::<Stopped>() {
                Ok(stopped) => Err(Stop::Limit(stopped.0)),
                Err(other) => Err(Stop::Panic(
                    other
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| other.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".into()),
                )),
            },
        }
    }

    /// Stops the evaluation: unwinds to [`Budget::run`].
    pub(crate) fn stop(&self, limit: Limit) -> ! {
        resume_unwind(Box::new(Stopped(limit)))
    }

    /// A checkpoint: stops the evaluation when a limit is passed.
    #[inline]
    pub(crate) fn tick(&self) {
        let ticks = self.ticks.get().wrapping_add(1);
        self.ticks.set(ticks);
        let base = self.stack_base.get();
        if base.saturating_sub(stack_position()) as u64 > self.limits.stack_bytes {
            self.stop(Limit::Stack(self.limits.stack_bytes));
        }
        if self.held() > self.limits.memory_bytes as i64 {
            self.stop(Limit::Memory(self.limits.memory_bytes));
        }
        if ticks.is_multiple_of(TIME_EVERY) {
            self.check_time();
        }
    }

    #[cold]
    fn check_time(&self) {
        if self
            .cancel
            .iter()
            .flatten()
            .any(|c| c.load(Ordering::Relaxed))
        {
            self.stop(Limit::Cancelled);
        }
        if Instant::now() >= self.deadline {
            self.stop(Limit::Time(self.limits.timeout));
        }
    }

    /// Bytes the evaluating thread holds beyond what it held at the start.
    fn held(&self) -> i64 {
        super::meter::live_bytes().wrapping_sub(self.memory_base.get())
    }

    /// Stops the evaluation when `bytes` more would pass the memory limit: for single operations
    /// that allocate their whole result at once, checked before they start.
    pub(crate) fn reserve(&self, bytes: u64) {
        let held = self.held().max(0) as u64;
        if held.saturating_add(bytes) > self.limits.memory_bytes {
            self.stop(Limit::Memory(self.limits.memory_bytes));
        }
    }
}
