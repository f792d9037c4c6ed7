//! Weft's pure core: what a project and a workflow are, how they are read and checked, and the rules a
//! run follows. Nothing here does I/O, spawns tasks or knows about a database or the network.
//!
//! # Brief overview
//!
//! - [`yaml`] reads YAML into [`Node`]s that keep their source positions.
//! - [`Project`] and [`Workflow`] are the checked, compiled model of a project folder, built from the
//!   files' text by [`Project::load`]; every problem found is a [`Diagnostic`] with file, line and column.
//! - [`Template`] and [`Expr`] hold `${{ … }}` jq expressions, compiled once per workflow version.
//! - [`RetryPolicy`], [`RunState`] and [`AttemptState`] are the rules of durable execution.
//! - [`schema`] is the JSON Schema of the workflow file format; [`testcase`] is the format of
//!   workflow test files.
//!
//! ```
//! use weft_core::{Catalog, Project, Sources};
//!
//! let mut sources = Sources::new("weft.yaml", "name: demo\n");
//! sources.add_workflow(
//!     "workflows/hello.yaml",
//!     "trigger: manual\nsteps:\n  - id: greet\n    map: ${{ \"Hello, \\(.input.name)!\" }}\n",
//! );
//! let project = Project::load(&sources, &Catalog::empty()).expect("the project is valid");
//! assert!(project.workflows.contains_key("hello"));
//! ```

#![deny(missing_docs)]

pub mod auth;
pub mod catalog;
pub mod decode;
pub mod definition;
pub mod diag;
pub mod duration;
pub mod edit;
pub mod expr;
pub mod project;
pub mod retry;
pub mod run;
pub mod schema;
pub mod secret;
pub mod signature;
pub mod testcase;
pub mod tool;
pub mod trigger;
pub mod workflow;
pub mod yaml;

pub use catalog::{Action, ActionSpec, Catalog, ConnectorSpec, ConsumeSpec, Spec};
pub use diag::{Diagnostic, Diagnostics};
pub use expr::{EvalError, Expr, Template, Val, ValMap, json_kind, json_to_val, val_to_json};
pub use project::{Connection, Limits, Project, RateLimit, Settings, Sources};
pub use retry::{Backoff, RetryPolicy};
pub use run::{AttemptState, RunState, StepKey};
pub use trigger::Trigger;
pub use workflow::{OnError, Step, StepKind, WaitSpec, Workflow};
pub use yaml::{Node, Pos};

// The unit tests measure expressions' memory as the binary does.
#[cfg(test)]
#[global_allocator]
static ALLOCATOR: expr::Metered<std::alloc::System> = expr::Metered(std::alloc::System);
