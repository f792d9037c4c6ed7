//! The states of runs and step attempts, and the keys that name a step execution.
//!
//! These are the words every other crate uses for durable execution: the store persists them, the
//! engine moves runs through them, and the CLI and API show them.

use std::fmt;
use std::str::FromStr;

/// Where a run is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunState {
    /// Accepted and committed; no step has started yet.
    Queued,
    /// Claimed by an engine that is executing its steps.
    Running,
    /// Paused until a time (a `wait` step or a retry delay) or until a child run finishes.
    Waiting,
    /// Every step finished and the output is stored.
    Succeeded,
    /// A step failed for good; the run can be retried from that step.
    Failed,
    /// Stopped on request; it will not run again.
    Cancelled,
}

impl RunState {
    /// Every state, in life order.
    pub const ALL: [RunState; 6] = [
        RunState::Queued,
        RunState::Running,
        RunState::Waiting,
        RunState::Succeeded,
        RunState::Failed,
        RunState::Cancelled,
    ];

    /// The state's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Queued => "queued",
            RunState::Running => "running",
            RunState::Waiting => "waiting",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::Cancelled => "cancelled",
        }
    }

    /// Whether the run is over and will not change by itself.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunState::Succeeded | RunState::Failed | RunState::Cancelled
        )
    }
}

impl fmt::Display for RunState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RunState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RunState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                format!("unknown run state `{s}`; expected queued, running, waiting, succeeded, failed or cancelled")
            })
    }
}

/// Where one attempt of one step is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttemptState {
    /// Recorded before the step started; still in flight, or the process died during it.
    Started,
    /// A later attempt found this one unfinished: the process died while it ran.
    Interrupted,
    /// Finished with an output.
    Succeeded,
    /// The step's `if` was false; it did not run.
    Skipped,
    /// A `wait` step or a `call` step paused the run; the attempt continues when it is due.
    Waiting,
    /// Failed, and another attempt follows after a delay.
    Retrying,
    /// Failed for good, and the run failed with it.
    Failed,
    /// Failed for good, and the step's `on_error` let the run go on.
    Handled,
}

impl AttemptState {
    /// Every state.
    pub const ALL: [AttemptState; 8] = [
        AttemptState::Started,
        AttemptState::Interrupted,
        AttemptState::Succeeded,
        AttemptState::Skipped,
        AttemptState::Waiting,
        AttemptState::Retrying,
        AttemptState::Failed,
        AttemptState::Handled,
    ];

    /// The state's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptState::Started => "started",
            AttemptState::Interrupted => "interrupted",
            AttemptState::Succeeded => "succeeded",
            AttemptState::Skipped => "skipped",
            AttemptState::Waiting => "waiting",
            AttemptState::Retrying => "retrying",
            AttemptState::Failed => "failed",
            AttemptState::Handled => "handled",
        }
    }

    /// Whether this attempt settles the step: the run goes on (or ends) from it without running the
    /// step again.
    pub fn is_outcome(self) -> bool {
        matches!(
            self,
            AttemptState::Succeeded
                | AttemptState::Skipped
                | AttemptState::Failed
                | AttemptState::Handled
        )
    }
}

impl fmt::Display for AttemptState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AttemptState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AttemptState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| format!("unknown attempt state `{s}`"))
    }
}

/// Names one execution of a step in a run: the step id, then the item index of every `for_each`
/// around it, outermost first (`notify`, `post/3`, `line/3/0`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StepKey(String);

impl StepKey {
    /// The key of a step outside any `for_each`.
    pub fn top(id: &str) -> StepKey {
        StepKey(id.to_string())
    }

    /// The key of step `id` inside `for_each` items `indices`.
    pub fn new(id: &str, indices: &[usize]) -> StepKey {
        let mut key = id.to_string();
        for i in indices {
            key.push('/');
            key.push_str(&i.to_string());
        }
        StepKey(key)
    }

    /// Wraps a stored key.
    pub fn from_stored(key: String) -> StepKey {
        StepKey(key)
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The step id part of the key.
    pub fn step_id(&self) -> &str {
        self.0.split('/').next().unwrap_or(&self.0)
    }

    /// The idempotency key of this step execution in `run`: `<run id>/<step id>[/<item>…]`. It is the
    /// same for every attempt, so a repeated attempt can be recognised by the receiving system.
    pub fn idempotency_key(&self, run: &str) -> String {
        format!("{run}/{}", self.0)
    }
}

impl fmt::Display for StepKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_through_text() {
        for s in RunState::ALL {
            assert_eq!(s.as_str().parse::<RunState>(), Ok(s));
        }
        for s in AttemptState::ALL {
            assert_eq!(s.as_str().parse::<AttemptState>(), Ok(s));
        }
        assert!("done".parse::<RunState>().is_err());
    }

    #[test]
    fn step_keys_carry_item_indices() {
        let key = StepKey::new("post", &[3, 0]);
        assert_eq!(key.as_str(), "post/3/0");
        assert_eq!(key.step_id(), "post");
        assert_eq!(key.idempotency_key("run1"), "run1/post/3/0");
        assert_eq!(StepKey::top("order").idempotency_key("r"), "r/order");
    }
}
