//! A running `weft serve` for end-to-end tests: start it on a free port, call its hooks and API,
//! wait for runs to settle, stop it with SIGTERM or SIGKILL.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

use crate::support::command;

pub const SECRET: &str = "e2e-shared-secret";
/// The admin token every test hub starts with (`WEFT_ADMIN_TOKEN`); its client sends it.
pub const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789";
/// A Standard Webhooks secret: `whsec_` and base64.
pub const WHSEC: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// A running `weft serve` and its address.
pub struct Hub {
    pub child: Child,
    pub base: String,
    pub client: reqwest::Client,
    /// Every JSON log line after the one that gave the address.
    pub log: Log,
}

/// `weft serve` on `listen` with JSON logs, the test admin token and the test secrets, not started.
pub fn serve_command(dir: &Path, listen: &str, extra: &[&str]) -> tokio::process::Command {
    let mut args = vec!["serve", ".", "--listen", listen, "--log-format", "json"];
    args.extend_from_slice(extra);
    let mut cmd = command(dir, &args);
    cmd.env("WEFT_LOG", "info")
        .env("WEFT_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("E2E_SECRET", SECRET)
        .env("E2E_WHSEC", WHSEC);
    cmd
}

/// The log of a `weft serve`: every JSON line after the one that gave the address.
pub type Log = std::sync::Arc<std::sync::Mutex<Vec<Value>>>;

/// Waits (at most a minute) until a `weft serve --log-format json` child says where it listens, and
/// returns that log line; the rest of its log is drained into [`Log`] so that it never blocks on a
/// full pipe.
pub async fn until_listening(child: &mut Child) -> (Value, Log) {
    let (listening, log, _) = until_listening_with_text(child).await;
    (listening, log)
}

/// [`until_listening`], also returning the lines before it that are not JSON (what `weft serve`
/// prints for a person, such as a first start's token).
pub async fn until_listening_with_text(child: &mut Child) -> (Value, Log, Vec<String>) {
    let stderr = child.stderr.take().expect("stderr is piped");
    let mut lines = BufReader::new(stderr).lines();
    let mut text = Vec::new();
    let listening = tokio::time::timeout(Duration::from_secs(60), async {
        while let Ok(Some(line)) = lines.next_line().await {
            match serde_json::from_str::<Value>(&line) {
                Ok(v) if v["address"].is_string() => return v,
                Ok(_) => {}
                Err(_) => text.push(line),
            }
        }
        panic!("weft serve ended before it listened");
    })
    .await
    .expect("weft serve listens within a minute");
    let log: Log = Default::default();
    let sink = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                sink.lock().unwrap().push(v);
            }
        }
    });
    (listening, log, text)
}

impl Hub {
    /// Starts `weft serve` on a free loopback port and waits until it listens.
    pub async fn start(dir: &Path, extra: &[&str]) -> Hub {
        Hub::start_at(dir, "127.0.0.1:0", extra).await
    }

    /// Starts `weft serve` on `listen` and waits until it listens.
    pub async fn start_at(dir: &Path, listen: &str, extra: &[&str]) -> Hub {
        Hub::start_command(serve_command(dir, listen, extra)).await
    }

    /// Starts a `weft serve` command made by [`serve_command`] (with more settings of its own) and
    /// waits until it listens.
    pub async fn start_command(mut command: tokio::process::Command) -> Hub {
        let mut child = command.spawn().expect("weft serve starts");
        let (listening, log) = until_listening(&mut child).await;
        let address = listening["address"].as_str().unwrap().to_string();
        let _ = rustls::crypto::ring::default_provider().install_default();
        Hub {
            child,
            base: format!("http://{address}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .default_headers(
                    [(
                        reqwest::header::AUTHORIZATION,
                        format!("Bearer {ADMIN_TOKEN}").parse().unwrap(),
                    )]
                    .into_iter()
                    .collect(),
                )
                .build()
                .unwrap(),
            log,
        }
    }

    pub async fn post_hook(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: &str,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}/hooks/{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.expect("the hub answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Starts a run of manual workflow `workflow` with `input` and returns its id.
    pub async fn start_run(&self, workflow: &str, input: Value) -> String {
        let (status, body) = self
            .post_json(
                &format!("/api/workflows/{workflow}/runs"),
                serde_json::json!({ "input": input }),
            )
            .await;
        assert_eq!(status, 202, "starting {workflow}: {body}");
        body["run_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no run id in {body}"))
            .to_string()
    }

    /// Waits (up to 20 s) until run `id` is in `state`, and returns it.
    pub async fn until_state(&self, id: &str, state: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, run) = self.get(&format!("/api/runs/{id}")).await;
            if run["state"] == state {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} never became {state}: {run}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (at most 20 s) until run `id` is in one of `states`, and returns it.
    pub async fn until_state_any(&self, id: &str, states: &[&str]) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, run) = self.get(&format!("/api/runs/{id}")).await;
            if states.iter().any(|s| run["state"] == *s) {
                return run;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} never became one of {states:?}: {run}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// POSTs a JSON body to an API path.
    pub async fn post_json(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .client
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("the hub answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Sends only the head of a POST that declares `length` body bytes and returns the status.
    pub async fn raw_post_status(&self, path: &str, length: usize) -> u16 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = self.base.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
                .await
                .expect("the hub answers before the body arrives")
                .unwrap();
            assert!(n > 0, "the hub closed the connection without answering");
            answer.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&answer);
        text.split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("the hub answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    pub async fn text(&self, path: &str) -> String {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("the hub answers")
            .text()
            .await
            .unwrap()
    }

    /// Every run, following the cursor.
    pub async fn all_runs(&self, workflow: &str) -> Vec<Value> {
        let mut runs = Vec::new();
        let mut cursor = String::new();
        loop {
            let (status, page) = self
                .get(&format!("/api/runs?workflow={workflow}&limit=500{cursor}"))
                .await;
            assert_eq!(status, 200, "{page}");
            runs.extend(page["runs"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => return runs,
            }
        }
    }

    /// Waits until no run of `workflow` is unfinished.
    pub async fn settle(&self, workflow: &str, limit: Duration) -> Vec<Value> {
        let start = Instant::now();
        loop {
            let runs = self.all_runs(workflow).await;
            if runs.iter().all(|r| {
                ["succeeded", "failed", "cancelled"].contains(&r["state"].as_str().unwrap())
            }) {
                return runs;
            }
            assert!(start.elapsed() < limit, "runs did not finish: {runs:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn sigterm(&self) {
        let pid = self.child.id().expect("running") as i32;
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}
