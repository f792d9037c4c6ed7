//! Weft's knowledge base: the documents in a project's `kb/` folder, cut into passages by heading
//! and searched with BM25, so a workflow step or an agent's tool can answer questions from them.
//!
//! # Brief overview
//!
//! - [`Kb`] is an immutable in-memory index of one folder. [`Kb::load`] reads the Markdown, text
//!   and HTML files in it; [`Kb::search`] returns the best [`Passage`]s for a question, each with
//!   its title, source file, heading path and score.
//! - [`Kb::ask`] also applies a score floor ([`DEFAULT_MIN_SCORE`]) and returns [`Hits`], whose
//!   `matched` is false when the knowledge base has no good answer, so a workflow can hand the
//!   question over to a person.
//! - [`Library`] follows a folder: it checks it for changes at most once per [`CHECK_INTERVAL`] and
//!   rebuilds the index when a file was added, removed or edited, keeping the last good index when
//!   the new files cannot be read.
//! - [`KbError`] names the file behind every problem.
//!
//! The crate knows nothing about workflows, steps or tools; the `kb.search` step and the
//! `kb_search` tool are built on it elsewhere. Indexes live in memory only.
//!
//! ```
//! use weft_kb::{DEFAULT_MIN_SCORE, Kb};
//!
//! let dir = tempfile::tempdir()?;
//! let faq = "# FAQ\n## Refunds\nRefunds reach your card within five days.\n## Shipping\n\
//!            Parcels leave the warehouse within a day.\n";
//! std::fs::write(dir.path().join("faq.md"), faq)?;
//! let kb = Kb::load(dir.path())?;
//!
//! let hits = kb.ask("How long does a refund take?", 3, DEFAULT_MIN_SCORE)?;
//! assert!(hits.matched);
//! assert_eq!(hits.passages[0].heading, "Refunds");
//! assert_eq!(hits.passages[0].source, "faq.md");
//!
//! assert!(!kb.ask("How do I bake bread?", 3, DEFAULT_MIN_SCORE)?.matched);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(missing_docs)]

mod analyzer;
mod chunk;
mod error;
mod files;
mod kb;
mod library;
#[cfg(test)]
mod test_corpus;

pub use error::KbError;
pub use files::MAX_FILE_BYTES;
pub use kb::{DEFAULT_MIN_SCORE, Hits, Kb, MAX_LIMIT, Passage};
pub use library::{CHECK_INTERVAL, Library};
