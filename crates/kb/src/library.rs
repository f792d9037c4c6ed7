//! A knowledge base that follows its folder: edits are picked up without a restart.
//!
//! [`Library`] holds the current [`Kb`] behind an `Arc`, so a rebuild never disturbs a search in
//! progress. Before a search it lists the folder again, at most once per [`CHECK_INTERVAL`]; listing
//! only reads directory entries and file metadata, so it is cheap. When the listing (names, sizes,
//! modification times) differs from the one the current index was built from, the caller that
//! noticed rebuilds the index synchronously, while other callers keep searching the current one. A
//! rebuild that fails keeps the last good index and logs a warning; the broken listing is
//! remembered so the same broken files are not read again every second.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, TryLockError};
use std::time::{Duration, Instant};

use crate::files::{self, SourceFile};
use crate::{Hits, Kb, KbError, Passage};

/// How often a [`Library`] checks its folder for changes, at most.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A knowledge base folder and its current index, rebuilt when the folder changes.
///
/// It is `Send + Sync`; share it with an `Arc`. Searches are synchronous; a search that notices a
/// change also pays for the rebuild.
#[derive(Debug)]
pub struct Library {
    dir: PathBuf,
    current: RwLock<Arc<Kb>>,
    watch: Mutex<Watch>,
    /// [`CHECK_INTERVAL`], except in tests.
    check_interval: Duration,
}

/// What the last check of the folder saw.
#[derive(Debug)]
struct Watch {
    /// The listing the last rebuild attempt read, successful or not.
    listing: Vec<SourceFile>,
    checked_at: Instant,
}

impl Library {
    /// Loads the knowledge base in `dir`. Fails like [`Kb::load`]: there is no previous index to
    /// fall back on yet.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Library, KbError> {
        let dir = dir.into();
        let listing = files::list(&dir)?;
        let kb = Kb::from_files(&listing)?;
        Ok(Library {
            dir,
            current: RwLock::new(Arc::new(kb)),
            watch: Mutex::new(Watch {
                listing,
                checked_at: Instant::now(),
            }),
            check_interval: CHECK_INTERVAL,
        })
    }

    /// The knowledge base folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The current index, after checking the folder for changes if the last check is older than
    /// [`CHECK_INTERVAL`]. Keep the returned `Arc` to run several searches on one version.
    pub fn kb(&self) -> Arc<Kb> {
        self.refresh_if_due();
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Searches the current index; see [`Kb::search`].
    pub fn search(&self, question: &str, limit: usize) -> Result<Vec<Passage>, KbError> {
        self.kb().search(question, limit)
    }

    /// Asks the current index; see [`Kb::ask`].
    pub fn ask(&self, question: &str, limit: usize, min_score: f32) -> Result<Hits, KbError> {
        self.kb().ask(question, limit, min_score)
    }

    /// Rebuilds the index now, whether or not the folder looks changed. On error the previous
    /// index stays in use.
    pub fn reload(&self) -> Result<(), KbError> {
        let mut watch = self.watch.lock().unwrap_or_else(PoisonError::into_inner);
        let result = self.rebuild(&mut watch, true);
        watch.checked_at = Instant::now();
        result
    }

    /// Checks the folder if the last check is old enough and no other caller is checking it.
    fn refresh_if_due(&self) {
        let mut watch = match self.watch.try_lock() {
            Ok(watch) => watch,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            // Another caller is checking or rebuilding; the current index will do.
            Err(TryLockError::WouldBlock) => return,
        };
        if watch.checked_at.elapsed() < self.check_interval {
            return;
        }
        if let Err(error) = self.rebuild(&mut watch, false) {
            tracing::warn!(
                dir = %self.dir.display(),
                %error,
                "The knowledge base could not be re-indexed; searches use the previous index."
            );
        }
        // Measured after the rebuild, so a slow rebuild does not start the next check at once.
        watch.checked_at = Instant::now();
    }

    /// Lists the folder and rebuilds the index if the listing changed, or always when `force`.
    fn rebuild(&self, watch: &mut Watch, force: bool) -> Result<(), KbError> {
        let listing = files::list(&self.dir)?;
        if !force && listing == watch.listing {
            return Ok(());
        }
        let built = Kb::from_files(&listing);
        watch.listing = listing;
        let kb = built?;
        tracing::info!(
            dir = %self.dir.display(),
            files = kb.files(),
            passages = kb.len(),
            "Re-indexed the knowledge base."
        );
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(kb);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::thread::sleep;

    use super::*;
    use crate::test_corpus;

    /// A library that checks its folder before every search.
    fn eager(dir: &Path) -> Library {
        let mut library = Library::open(dir).unwrap();
        library.check_interval = Duration::ZERO;
        library
    }

    fn top_text(library: &Library, question: &str) -> Option<String> {
        library
            .search(question, 1)
            .unwrap()
            .into_iter()
            .next()
            .map(|passage| passage.text)
    }

    #[test]
    fn is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Library>();
    }

    #[test]
    fn an_edited_file_is_re_indexed() {
        let dir = test_corpus::write();
        let library = eager(dir.path());
        assert!(
            top_text(&library, "warehouse")
                .unwrap()
                .contains("warehouse")
        );
        assert_eq!(top_text(&library, "depot"), None);

        let faq = dir.path().join("faq.md");
        let edited = fs::read_to_string(&faq)
            .unwrap()
            .replace("our warehouse", "the regional depot near you");
        fs::write(&faq, edited).unwrap();

        assert!(
            top_text(&library, "depot")
                .unwrap()
                .contains("regional depot")
        );
        assert_eq!(top_text(&library, "warehouse"), None);
    }

    #[test]
    fn new_and_removed_files_are_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let kb = dir.path().join("kb");
        let library = eager(&kb);
        assert!(
            library.kb().is_empty(),
            "a missing folder is an empty knowledge base"
        );

        fs::create_dir(&kb).unwrap();
        fs::write(
            kb.join("pets.md"),
            "## Dogs\nDogs are welcome in the shop.\n",
        )
        .unwrap();
        assert_eq!(library.search("dogs", 5).unwrap()[0].heading, "Dogs");

        fs::remove_file(kb.join("pets.md")).unwrap();
        assert!(library.search("dogs", 5).unwrap().is_empty());
    }

    #[test]
    fn the_folder_is_checked_at_most_once_per_interval() {
        let dir = test_corpus::write();
        let library = Library::open(dir.path()).unwrap();
        assert_eq!(library.check_interval, CHECK_INTERVAL);
        fs::write(dir.path().join("new.md"), "The llama farm is closed.\n").unwrap();
        assert_eq!(top_text(&library, "llama"), None, "too early to look again");
        sleep(CHECK_INTERVAL + Duration::from_millis(100));
        assert_eq!(
            top_text(&library, "llama").unwrap(),
            "The llama farm is closed."
        );
    }

    #[test]
    fn a_broken_file_keeps_the_last_good_index() {
        let dir = test_corpus::write();
        let library = eager(dir.path());
        fs::write(dir.path().join("broken.md"), b"caf\xe9 au lait").unwrap();

        // The automatic check fails, logs and keeps answering from the old index.
        assert!(top_text(&library, "warehouse").is_some());
        match library.reload() {
            Err(KbError::NotUtf8 { path, .. }) => assert!(path.ends_with("broken.md")),
            other => panic!("expected NotUtf8, got {other:?}"),
        }
        assert!(top_text(&library, "warehouse").is_some());

        // Once the file is fixed, the next check picks it up.
        fs::write(dir.path().join("broken.md"), "café au lait").unwrap();
        assert_eq!(top_text(&library, "cafe").unwrap(), "café au lait");
    }

    #[test]
    fn opening_a_broken_folder_fails() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("broken.txt"), b"\xff").unwrap();
        let err = Library::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("broken.txt"), "{err}");
    }

    #[test]
    fn reload_rebuilds_even_without_a_visible_change() {
        let dir = test_corpus::write();
        let library = Library::open(dir.path()).unwrap();
        let before = library.kb();
        library.reload().unwrap();
        assert!(!Arc::ptr_eq(&before, &library.kb()));
    }
}
