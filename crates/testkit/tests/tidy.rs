//! Repository hygiene, checked as tests: every Rust file says what it is for, and the crates depend on
//! each other only as ARCHITECTURE.md allows.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n == "target" || n == "fixtures")
            {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_rust_file_starts_with_a_module_doc() {
    let mut files = Vec::new();
    for dir in ["crates", "bench", "fuzz"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() > 20);
    let missing: Vec<String> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap().starts_with("//!"))
        .map(|f| f.strip_prefix(root()).unwrap().display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "these files need a `//!` module doc saying what they are for: {missing:?}"
    );
}

/// The `weft-*` crates a crate's `[dependencies]` (not dev-dependencies) name.
fn weft_dependencies(krate: &str) -> Vec<String> {
    let manifest =
        std::fs::read_to_string(root().join("crates").join(krate).join("Cargo.toml")).unwrap();
    let mut section = String::new();
    let mut out = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        if section == "[dependencies]" && line.starts_with("weft-") {
            out.push(line.split(['.', ' ', '=']).next().unwrap().to_string());
        }
    }
    out.sort();
    out
}

/// Every non-weft dependency of a crate.
fn all_dependencies(krate: &str) -> Vec<String> {
    let manifest =
        std::fs::read_to_string(root().join("crates").join(krate).join("Cargo.toml")).unwrap();
    let mut section = String::new();
    let mut out = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            section = line.to_string();
            continue;
        }
        if section == "[dependencies]" && !line.is_empty() && !line.starts_with('#') {
            out.push(line.split(['.', ' ', '=']).next().unwrap().to_string());
        }
    }
    out
}

#[test]
fn crates_depend_only_as_the_architecture_allows() {
    assert_eq!(
        weft_dependencies("core"),
        Vec::<String>::new(),
        "core depends on no other weft crate"
    );
    assert_eq!(
        weft_dependencies("store"),
        vec!["weft-core"],
        "store depends only on core"
    );
    assert_eq!(
        weft_dependencies("connectors"),
        vec!["weft-core"],
        "connectors depend only on core"
    );
    assert_eq!(
        weft_dependencies("engine"),
        vec!["weft-connectors", "weft-core", "weft-store"],
        "engine depends on core, store and the connectors"
    );
    assert_eq!(
        weft_dependencies("server"),
        vec!["weft-connectors", "weft-core", "weft-engine", "weft-store"],
        "server depends on the engine and what it is built from, never on the cli"
    );
    assert_eq!(
        weft_dependencies("kb"),
        Vec::<String>::new(),
        "the knowledge base knows nothing of workflows; the cli adapts it to a connector"
    );
    assert_eq!(
        weft_dependencies("testkit"),
        Vec::<String>::new(),
        "testkit is test support only"
    );
    for krate in [
        "core",
        "store",
        "connectors",
        "engine",
        "server",
        "kb",
        "testkit",
    ] {
        assert!(
            !weft_dependencies(krate).contains(&"weft".to_string()),
            "nothing depends on the cli"
        );
        assert!(
            !weft_dependencies(krate).contains(&"weft-testkit".to_string()),
            "{krate} may use the testkit only as a dev-dependency"
        );
    }
    // The core does no I/O: no runtime, database, HTTP or file-system crates.
    let core = all_dependencies("core");
    for forbidden in ["tokio", "sqlx", "rusqlite", "reqwest", "axum", "tempfile"] {
        assert!(
            !core.contains(&forbidden.to_string()),
            "core must not depend on {forbidden}"
        );
    }
    // Only the store speaks SQL about our own state (through rusqlite); the connectors use sqlx
    // for the users' databases, and nothing else touches a database.
    for krate in ["engine", "server", "cli"] {
        for driver in ["sqlx", "rusqlite"] {
            assert!(
                !all_dependencies(krate).contains(&driver.to_string()),
                "{krate} must not use {driver}"
            );
        }
    }
}
