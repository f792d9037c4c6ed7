//! What can go wrong while reading a knowledge base folder or searching it.
//!
//! Every variant that concerns a file names that file, so an operator can fix the folder without
//! guessing. A question itself never causes an error: any text is a valid question.

use std::path::PathBuf;

/// An error from loading or searching a knowledge base.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KbError {
    /// A file or folder of the knowledge base could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A file is not UTF-8 text.
    #[error("{path} is not UTF-8 text (invalid byte at offset {offset}); save it as UTF-8")]
    NotUtf8 {
        /// The file.
        path: PathBuf,
        /// The offset of the first byte that is not valid UTF-8.
        offset: usize,
    },
    /// A file is larger than the knowledge base accepts.
    #[error("{path} is {len} bytes, more than the {limit} bytes a knowledge base file may have")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The file's size in bytes.
        len: u64,
        /// The largest size accepted, in bytes.
        limit: u64,
    },
    /// The search engine failed while building the index. This is a bug or a lack of memory,
    /// not a problem with the files.
    #[error("cannot build the knowledge base index: {source}")]
    Index {
        /// The search engine's error.
        source: tantivy::TantivyError,
    },
    /// The search engine failed while answering a question.
    #[error("cannot search the knowledge base: {source}")]
    Search {
        /// The search engine's error.
        source: tantivy::TantivyError,
    },
}
