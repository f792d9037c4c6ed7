//! Finding and reading the files of a knowledge base folder.
//!
//! The walk is recursive and sorted by name, so the same folder always gives the same passages in
//! the same order. Hidden files and folders (names starting with `.`) and files of other formats
//! are skipped. Symbolic links to files are followed, links to folders are not, so a link cannot
//! make the walk loop. The listing, with each file's size and modification time, doubles as the
//! folder's fingerprint: when it changes, the knowledge base is rebuilt.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::KbError;
use crate::chunk::Format;

/// The largest file the knowledge base reads, in bytes (10 MiB).
pub const MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;

/// A file of the knowledge base, as the folder listing found it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SourceFile {
    /// The path relative to the knowledge base folder, with `/` separators.
    pub rel: String,
    /// The full path.
    pub path: PathBuf,
    /// The format, from the extension.
    pub format: Format,
    /// The size in bytes.
    pub len: u64,
    /// The modification time, where the file system has one.
    pub modified: Option<SystemTime>,
}

/// Lists the knowledge base files under `dir`, sorted. A folder that does not exist has no files.
pub(crate) fn list(dir: &Path) -> Result<Vec<SourceFile>, KbError> {
    let mut files = Vec::new();
    match fs::metadata(dir) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(files),
        Err(source) => {
            return Err(KbError::Read {
                path: dir.to_owned(),
                source,
            });
        }
        Ok(_) => {}
    }
    walk(dir, "", &mut files)?;
    Ok(files)
}

/// Adds the files under `dir` to `files`; `prefix` is the relative path of `dir`.
fn walk(dir: &Path, prefix: &str, files: &mut Vec<SourceFile>) -> Result<(), KbError> {
    let read_error = |path: &Path| {
        let path = path.to_owned();
        move |source| KbError::Read { path, source }
    };
    let mut entries = fs::read_dir(dir)
        .and_then(|entries| entries.collect::<io::Result<Vec<_>>>())
        .map_err(read_error(dir))?;
    entries.sort_by_key(|entry| entry.file_name());
    for entry in entries {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let rel = if prefix.is_empty() {
            name.into_owned()
        } else {
            format!("{prefix}/{name}")
        };
        let file_type = entry.file_type().map_err(read_error(&path))?;
        if file_type.is_dir() {
            walk(&path, &rel, files)?;
            continue;
        }
        let Some(format) = path
            .extension()
            .and_then(|extension| extension.to_str())
            .and_then(Format::from_extension)
        else {
            continue;
        };
        // `fs::metadata` follows a symbolic link to the file it points at.
        let metadata = fs::metadata(&path).map_err(read_error(&path))?;
        if !metadata.is_file() {
            continue;
        }
        files.push(SourceFile {
            rel,
            path,
            format,
            len: metadata.len(),
            modified: metadata.modified().ok(),
        });
    }
    Ok(())
}

/// Reads a listed file as UTF-8 text, refusing files over [`MAX_FILE_BYTES`].
pub(crate) fn read(file: &SourceFile) -> Result<String, KbError> {
    let too_large = |len| KbError::TooLarge {
        path: file.path.clone(),
        len,
        limit: MAX_FILE_BYTES,
    };
    if file.len > MAX_FILE_BYTES {
        return Err(too_large(file.len));
    }
    // The file may have grown since it was listed; read one byte past the limit to notice.
    let mut bytes = Vec::new();
    File::open(&file.path)
        .and_then(|opened| opened.take(MAX_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|source| KbError::Read {
            path: file.path.clone(),
            source,
        })?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|err| KbError::NotUtf8 {
        path: file.path.clone(),
        offset: err.utf8_error().valid_up_to(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_is_sorted_recursive_and_skips_hidden_and_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for rel in [
            "b.md",
            "a.TXT",
            "sub/z.html",
            "sub/deeper/y.htm",
            "c.markdown",
            "image.png",
            "notes",
            ".hidden.md",
            ".drafts/secret.md",
        ] {
            let path = root.join(rel);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, "text").unwrap();
        }
        fs::create_dir(root.join("folder.md")).unwrap();
        let rels: Vec<String> = list(root).unwrap().into_iter().map(|f| f.rel).collect();
        assert_eq!(
            rels,
            vec![
                "a.TXT",
                "b.md",
                "c.markdown",
                "sub/deeper/y.htm",
                "sub/z.html"
            ]
        );
    }

    #[test]
    fn a_missing_folder_has_no_files() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list(&dir.path().join("nope")).unwrap().is_empty());
    }

    #[test]
    fn the_listing_changes_when_a_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.md"), "one").unwrap();
        let before = list(dir.path()).unwrap();
        assert_eq!(before, list(dir.path()).unwrap());
        fs::write(dir.path().join("a.md"), "one two").unwrap();
        assert_ne!(before, list(dir.path()).unwrap());
    }

    #[test]
    fn reading_checks_encoding_and_size() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("ok.md"), "héllo").unwrap();
        fs::write(dir.path().join("bad.md"), b"ab\xff\xfe").unwrap();
        File::create(dir.path().join("big.txt"))
            .unwrap()
            .set_len(MAX_FILE_BYTES + 1)
            .unwrap();
        let files = list(dir.path()).unwrap();
        let by_name = |name: &str| files.iter().find(|f| f.rel == name).unwrap();

        assert_eq!(read(by_name("ok.md")).unwrap(), "héllo");
        match read(by_name("bad.md")) {
            Err(KbError::NotUtf8 { path, offset }) => {
                assert!(path.ends_with("bad.md"));
                assert_eq!(offset, 2);
            }
            other => panic!("expected NotUtf8, got {other:?}"),
        }
        match read(by_name("big.txt")) {
            Err(err @ KbError::TooLarge { .. }) => {
                assert!(err.to_string().contains("big.txt"), "{err}");
            }
            other => panic!("expected TooLarge, got {other:?}"),
        }
    }
}
