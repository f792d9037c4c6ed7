//! How runs and steps look on a terminal and as JSON.

use std::time::Duration;

use serde_json::Value;
use weft_core::AttemptState;
use weft_engine::Event;
use weft_store::{AttemptRecord, RunRecord};

/// A timestamp as RFC 3339 in UTC.
pub(crate) use weft_engine::view::time;

/// A duration for people: `12 ms`, `1.4 s`, `3 min 5 s`.
pub(crate) fn elapsed(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

fn state_word(state: AttemptState) -> &'static str {
    match state {
        AttemptState::Started => "start",
        AttemptState::Interrupted => "intr",
        AttemptState::Succeeded => "ok",
        AttemptState::Skipped => "skip",
        AttemptState::Waiting => "wait",
        AttemptState::Retrying => "retry",
        AttemptState::Failed => "FAIL",
        AttemptState::Handled => "error",
    }
}

/// One line for an event, or none for events not worth a line: a step starting, and the end of the
/// run being followed (its summary is printed instead).
pub(crate) fn event_line(
    event: &Event,
    prefix_run: bool,
    followed: Option<&str>,
) -> Option<String> {
    match event {
        Event::Step {
            run_id,
            workflow,
            step,
            attempt,
            state,
            elapsed: took,
            error,
            until,
            ..
        } => {
            if *state == AttemptState::Started {
                return None;
            }
            let prefix = if prefix_run {
                format!("{} ", &run_id[..run_id.len().min(13)])
            } else {
                String::new()
            };
            // Steps of child runs carry their workflow's name.
            let label = match followed {
                Some(id) if id != run_id => format!("{workflow}:{step}"),
                _ => step.to_string(),
            };
            let mut line = format!(
                "  {prefix}{:<5} {label:<24} attempt {:<2} {:>9}",
                state_word(*state),
                attempt,
                elapsed(*took)
            );
            match state {
                AttemptState::Retrying => {
                    if let Some(at) = until {
                        line.push_str(&format!("  next attempt at {}", time(*at)));
                    }
                }
                AttemptState::Waiting => {
                    if let Some(at) = until {
                        line.push_str(&format!("  until {}", time(*at)));
                    }
                }
                _ => {}
            }
            if let Some(e) = error {
                line.push_str(&format!("\n        {e}"));
            }
            Some(line)
        }
        Event::Run {
            run_id,
            workflow,
            state,
            until,
        } => {
            if followed == Some(run_id.as_str()) {
                return None;
            }
            let mut line = format!("run {run_id} ({workflow}) {state}");
            if let Some(at) = until {
                line.push_str(&format!(" until {}", time(*at)));
            }
            Some(line)
        }
    }
}

/// A value shortened to one line of at most `max` characters.
pub(crate) fn short(v: &Value, max: usize) -> String {
    let text = v.to_string();
    if text.chars().count() <= max {
        text
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// A run and its attempts for people.
pub(crate) fn print_run(run: &RunRecord, attempts: &[AttemptRecord]) {
    println!("run       {}", run.id);
    println!(
        "workflow  {} (version {})",
        run.workflow,
        &run.version[..run.version.len().min(12)]
    );
    println!("state     {}", run.state);
    if let Some(parent) = &run.parent_id {
        println!(
            "parent    {} (step {})",
            parent,
            run.parent_step.as_deref().unwrap_or("?")
        );
    }
    if let Some(key) = &run.idempotency_key {
        println!("key       {key}");
    }
    println!("created   {}", time(run.created_at));
    if let Some(t) = run.finished_at {
        println!(
            "finished  {} ({})",
            time(t),
            elapsed(Duration::from_millis((t - run.created_at).max(0) as u64))
        );
    }
    if let Some(at) = run.wake_at {
        println!("wakes     {}", time(at));
    }
    println!("input     {}", short(&run.input, 100));
    println!("steps:");
    for a in attempts {
        let took = a
            .finished_at
            .map(|f| elapsed(Duration::from_millis((f - a.started_at).max(0) as u64)))
            .unwrap_or_default();
        println!(
            "  {:<5} {:<24} attempt {:<2} {:>9}  {}",
            state_word(a.state),
            a.step_key.as_str(),
            a.attempt,
            took,
            time(a.started_at)
        );
        if let Some(input) = &a.input {
            println!("        input  {}", short(input, 100));
        }
        if let Some(output) = &a.output {
            println!("        output {}", short(output, 100));
        }
        if let Some(error) = &a.error {
            let message = error
                .get("message")
                .and_then(Value::as_str)
                .map_or_else(|| error.to_string(), String::from);
            println!("        error  {message}");
        }
    }
    if let Some(output) = &run.output {
        println!(
            "output    {}",
            serde_json::to_string_pretty(output).unwrap_or_default()
        );
    }
    if let Some(error) = &run.error {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| error.to_string(), String::from);
        println!("error     {message}");
    }
}
