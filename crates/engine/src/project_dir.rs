//! Reading a project folder: `weft.yaml`, `workflows/*.yaml`, `connectors/*.yaml` and
//! `tests/*.yaml`.
//!
//! The core turns the files' text into a checked project; this module only finds and reads the files,
//! and says clearly which one could not be read.

use std::path::{Path, PathBuf};

use weft_core::Sources;
use weft_core::project::PROJECT_FILE;

/// Where a project keeps its run data, relative to the project folder.
pub const DATA_DIR: &str = ".weft";

/// The files of a project, read.
#[derive(Clone, Debug)]
pub struct ProjectFiles {
    /// The project folder.
    pub root: PathBuf,
    /// `weft.yaml` and the workflow files.
    pub sources: Sources,
    /// Test files: path relative to the folder, and text.
    pub tests: Vec<(String, String)>,
}

impl ProjectFiles {
    /// The SQLite database of the project.
    pub fn database_path(&self) -> PathBuf {
        self.root.join(DATA_DIR).join("weft.db")
    }
}

/// Why a project folder could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The folder has no `weft.yaml`.
    #[error("{dir} is not a Weft project: it has no weft.yaml (create one with `weft init {dir}`)")]
    NotAProject {
        /// The folder.
        dir: String,
    },
    /// A file or folder could not be read.
    #[error("cannot read {path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

/// Reads a project folder.
pub fn read(dir: &Path) -> Result<ProjectFiles, ReadError> {
    let project_file = dir.join(PROJECT_FILE);
    if !project_file.is_file() {
        return Err(ReadError::NotAProject {
            dir: dir.display().to_string(),
        });
    }
    let text = read_text(&project_file)?;
    let mut sources = Sources::new(PROJECT_FILE, text);
    sources.has_kb = dir.join("kb").is_dir();
    for (rel, path) in yaml_files(dir, "workflows")? {
        sources.add_workflow(rel, read_text(&path)?);
    }
    for (rel, path) in yaml_files(dir, "connectors")? {
        sources.add_connector(rel, read_text(&path)?);
    }
    let mut tests = Vec::new();
    for (rel, path) in yaml_files(dir, "tests")? {
        tests.push((rel, read_text(&path)?));
    }
    Ok(ProjectFiles {
        root: dir.to_path_buf(),
        sources,
        tests,
    })
}

fn read_text(path: &Path) -> Result<String, ReadError> {
    let bytes = std::fs::read(path).map_err(|e| ReadError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    String::from_utf8(bytes).map_err(|e| ReadError::Io {
        path: path.display().to_string(),
        message: format!(
            "the file is not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ),
    })
}

/// The `.yaml`/`.yml` files directly in `dir/sub`, sorted, as (path relative to `dir`, full path).
fn yaml_files(dir: &Path, sub: &str) -> Result<Vec<(String, PathBuf)>, ReadError> {
    let folder = dir.join(sub);
    if !folder.is_dir() {
        return Ok(Vec::new());
    }
    let entries = std::fs::read_dir(&folder).map_err(|e| ReadError::Io {
        path: folder.display().to_string(),
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ReadError::Io {
            path: folder.display().to_string(),
            message: e.to_string(),
        })?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if path.is_file()
            && (name.ends_with(".yaml") || name.ends_with(".yml"))
            && !name.starts_with('.')
        {
            out.push((format!("{sub}/{name}"), path));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_project_workflow_and_test_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("weft.yaml"), "name: x\n").unwrap();
        std::fs::create_dir(dir.path().join("workflows")).unwrap();
        std::fs::write(dir.path().join("workflows/b.yaml"), "b").unwrap();
        std::fs::write(dir.path().join("workflows/a.yml"), "a").unwrap();
        std::fs::write(dir.path().join("workflows/notes.txt"), "ignored").unwrap();
        std::fs::create_dir(dir.path().join("tests")).unwrap();
        std::fs::write(dir.path().join("tests/a.yaml"), "t").unwrap();
        let files = read(dir.path()).unwrap();
        let names: Vec<&str> = files
            .sources
            .workflows
            .iter()
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(names, vec!["workflows/a.yml", "workflows/b.yaml"]);
        assert_eq!(files.tests[0].0, "tests/a.yaml");
        assert!(files.database_path().ends_with(".weft/weft.db"));
    }

    #[test]
    fn says_what_is_missing_or_unreadable() {
        let dir = tempfile::tempdir().unwrap();
        let err = read(dir.path()).unwrap_err();
        assert!(err.to_string().contains("has no weft.yaml"), "{err}");
        std::fs::write(dir.path().join("weft.yaml"), [0xff, 0xfe]).unwrap();
        let err = read(dir.path()).unwrap_err();
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }
}
