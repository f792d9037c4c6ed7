//! Helpers for running the real `weft` binary on temporary projects.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

/// The `weft` binary built for these tests.
pub fn weft_path() -> &'static str {
    env!("CARGO_BIN_EXE_weft")
}

/// What a finished command printed, and its exit code.
#[derive(Debug)]
pub struct Output {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Output {
    fn from(out: std::process::Output) -> Output {
        Output {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Output {
    /// Standard output parsed as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// A command for the `weft` binary, quiet logs, run in `dir`.
pub fn command(dir: &Path, args: &[&str]) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(weft_path());
    cmd.args(args)
        .current_dir(dir)
        .env("WEFT_LOG", "error")
        .env_remove("WEFT_PROJECT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Runs `weft args…` in `dir` to completion (at most two minutes).
pub async fn weft(dir: &Path, args: &[&str]) -> Output {
    let child = command(dir, args).spawn().expect("weft starts");
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("weft {args:?} did not finish within two minutes"))
        .expect("weft runs");
    Output::from(out)
}

/// A temporary project folder.
pub struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    /// A project with this `weft.yaml` and these workflows (`name`, text).
    pub fn new(weft_yaml: &str, workflows: &[(&str, &str)]) -> Project {
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::write(dir.path().join("weft.yaml"), weft_yaml).expect("weft.yaml is written");
        std::fs::create_dir(dir.path().join("workflows")).expect("workflows/ is created");
        for (name, text) in workflows {
            std::fs::write(dir.path().join(format!("workflows/{name}.yaml")), text)
                .expect("a workflow is written");
        }
        Project { dir }
    }

    /// A project whose connection `api` points at `addr`.
    pub fn with_api(addr: std::net::SocketAddr, workflows: &[(&str, &str)]) -> Project {
        Project::new(
            &format!(
                "connections:\n  api:\n    type: http\n    base_url: http://{addr}\n    timeout: 30s\n    allow_private_network: true\n"
            ),
            workflows,
        )
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `weft args…` in the project folder.
    pub async fn weft(&self, args: &[&str]) -> Output {
        weft(self.path(), args).await
    }
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// A loopback port that was free a moment ago (for servers that must be told their port first).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Copies a folder, leaving out hidden entries (such as a project's `.weft/`).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}
