//! Fuzz target: a jq program run on a JSON input under the limits the hub runs expressions with,
//! measured as the hub measures them (the metered allocator, a thread whose stack holds what the
//! limits allow).
//!
//! The input's first line is the program, the rest the JSON it runs on (text that is not JSON is
//! taken as a string). Whatever the program does, its run must end within the time limit, in a
//! value, an error or a limit, never in a panic, a stack overflow, a hang or memory beyond the
//! limit (libFuzzer's `-rss_limit_mb` and `-timeout` catch the last two).

#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use weft_core::expr::{Budget, EvalLimits, Metered, Program};
use weft_core::json_to_val;

#[global_allocator]
static ALLOCATOR: Metered<std::alloc::System> = Metered(std::alloc::System);

const LIMITS: EvalLimits = EvalLimits {
    timeout: Duration::from_millis(200),
    memory_bytes: 64 << 20,
    stack_bytes: 4 << 20,
};

/// The stack the engine gives a thread evaluating under [`LIMITS`]: the stack limit, and room to
/// free a value as deep as the memory limit allows (see `weft_engine::eval`).
const STACK: usize = (4 << 20) + (64 << 20) / 96 * 512 + (16 << 20);

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (code, input) = text.split_once('\n').unwrap_or((text, "null"));
    let input = serde_json::from_str::<serde_json::Value>(input)
        .unwrap_or_else(|_| serde_json::Value::String(input.to_string()));
    let Ok(program) = Program::compile(code) else {
        return;
    };
    std::thread::Builder::new()
        .stack_size(STACK)
        .spawn(move || {
            let budget = Budget::new(LIMITS, None);
            let result = program.run(json_to_val(&input), &budget);
            std::hint::black_box(&result);
            assert!(
                budget.elapsed() < Duration::from_secs(5),
                "an evaluation took {:?}, past its limit of {:?}",
                budget.elapsed(),
                LIMITS.timeout
            );
        })
        .expect("a thread starts")
        .join()
        .expect("the evaluation does not panic");
});
