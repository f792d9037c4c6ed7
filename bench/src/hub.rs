//! The hub under test: the release `weft` binary serving a bench project with the embedded store,
//! started fresh for every repetition, and what can be read off it (its address, its memory, its
//! metrics).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The admin token the bench hub is started with (it guards `/metrics` and `/api`).
pub const TOKEN: &str = "weft-bench-admin-token-0123456789";

/// Builds `weft` in release mode and returns the binary's path.
pub fn build_release(root: &Path) -> anyhow::Result<PathBuf> {
    eprintln!("building weft (release)…");
    let status = std::process::Command::new(env_or("CARGO", "cargo"))
        .args(["build", "--release", "--quiet", "-p", "weft"])
        .current_dir(root)
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build --release -p weft failed");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    Ok(target.join("release").join("weft"))
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

/// The bench project: its `weft.yaml` (a connection `sink` to the sink) and workflows.
pub fn write_project(dir: &Path, sink: SocketAddr) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir.join("workflows"))?;
    std::fs::write(
        dir.join("weft.yaml"),
        format!(
            "name: bench\n\
             limits:\n  token_requests_per_minute: 10000000\n  webhook_requests_per_minute: 10000000\n\
             connections:\n  sink:\n    type: http\n    base_url: http://{sink}\n    timeout: 30s\n    allow_private_network: true\n"
        ),
    )?;
    let mut chain = String::from("trigger: webhook\nsteps:\n");
    for i in 1..=20 {
        let prev = if i == 1 {
            ".input.n".to_string()
        } else {
            format!(".steps.s{}", i - 1)
        };
        chain.push_str(&format!("  - id: s{i}\n    map: ${{{{ {prev} + 1 }}}}\n"));
    }
    let workflows = [
        (
            "ingest",
            "trigger: webhook\nsteps:\n  - id: seen\n    map: ${{ .input.id }}\n".to_string(),
        ),
        (
            "relay",
            "trigger: webhook\nsteps:\n  - id: shape\n    map: ${{ {id: .input.id, customer: .input.customer.email, total: ([.input.items[].price] | add)} }}\n  - id: post\n    uses: sink.request\n    with: { method: POST, path: /relay, body: \"${{ .steps.shape }}\" }\n".to_string(),
        ),
        (
            "fanout",
            "trigger: webhook\nsteps:\n  - id: each\n    for_each: ${{ [range(100)] }}\n    concurrency: 10\n    steps:\n      - id: post\n        uses: sink.request\n        with: { method: POST, path: /fanout, body: \"${{ {item: .item} }}\" }\n".to_string(),
        ),
        ("chain", chain),
        (
            "chain1",
            "trigger: webhook\nsteps:\n  - id: s1\n    map: ${{ .input.n + 1 }}\n".to_string(),
        ),
    ];
    for (name, text) in workflows {
        std::fs::write(dir.join(format!("workflows/{name}.yaml")), text)?;
    }
    Ok(())
}

/// A running `weft serve`.
pub struct Hub {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    client: reqwest_lite::Client,
}

impl Hub {
    /// Starts `weft serve` on the project in `dir` and waits until it listens.
    pub async fn start(weft: &Path, dir: &Path) -> anyhow::Result<Hub> {
        let mut child = Command::new(weft)
            .args([
                "serve",
                ".",
                "--listen",
                "127.0.0.1:0",
                "--log-format",
                "json",
            ])
            .current_dir(dir)
            .env("WEFT_ADMIN_TOKEN", TOKEN)
            .env("WEFT_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", weft.display()))?;
        let stderr = child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?;
        let mut lines = BufReader::new(stderr).lines();
        let addr = tokio::time::timeout(Duration::from_secs(60), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && let Some(a) = v["address"].as_str()
                {
                    return a.parse::<SocketAddr>().ok();
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .ok_or_else(|| anyhow!("weft serve did not say where it listens"))?;
        // Keep draining the log so the hub never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok(Hub {
            child,
            addr,
            client: reqwest_lite::Client::new(addr),
        })
    }

    /// The hub's process id.
    pub fn pid(&self) -> u32 {
        self.child.id().unwrap_or(0)
    }

    /// The hub's memory now, in MiB (from /proc).
    pub fn memory(&self) -> Memory {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
                .map_or(f64::NAN, |kb| kb / 1024.0)
        };
        Memory {
            rss: field("VmRSS:"),
            peak: field("VmHWM:"),
            anon: field("RssAnon:"),
        }
    }

    /// The CPU time the hub has used so far, all its threads, user and system, in seconds (from
    /// /proc; the kernel counts it in ticks of 1/100 s, `USER_HZ`).
    pub fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // The fields after the command name, which is in parentheses and may hold spaces.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
        // utime and stime are fields 14 and 15 of the line; field 3 is the first after the name.
        let ticks = |i: usize| fields.get(i).and_then(|t| t.parse::<f64>().ok());
        match (ticks(11), ticks(12)) {
            (Some(user), Some(system)) => (user + system) / 100.0,
            _ => f64::NAN,
        }
    }

    /// The sum of a Prometheus counter's series whose labels include `label` (such as
    /// `workflow="chain"`).
    pub async fn counter(&self, name: &str, label: &str) -> anyhow::Result<f64> {
        let text = self.client.get_text("/metrics", TOKEN).await?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum())
    }

    /// Waits until `workflow` has finished `count` runs (by the hub's metrics); returns when the
    /// last one finished, or fails after `limit`.
    pub async fn until_finished(
        &self,
        workflow: &str,
        count: u64,
        limit: Duration,
    ) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + limit;
        let label = format!("workflow=\"{workflow}\"");
        loop {
            let done = self.counter("weft_runs_finished_total", &label).await?;
            if done >= count as f64 {
                return Ok(Instant::now());
            }
            if Instant::now() > deadline {
                bail!("only {done} of {count} runs of {workflow} finished in {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Kills the hub with SIGKILL, as a crash would.
    pub async fn kill(mut self) {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
    }

    /// Stops the hub with SIGTERM and waits for it.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        if tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.start_kill();
        }
    }
}

/// The few GET requests the bench makes to the hub, over a fresh connection each.
mod reqwest_lite {
    use std::net::SocketAddr;

    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use hyper::Request;
    use hyper_util::rt::TokioIo;

    pub struct Client {
        addr: SocketAddr,
    }

    impl Client {
        pub fn new(addr: SocketAddr) -> Client {
            Client { addr }
        }

        pub async fn get_text(&self, path: &str, token: &str) -> anyhow::Result<String> {
            let stream = tokio::net::TcpStream::connect(self.addr).await?;
            let (mut sender, connection) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(connection);
            let request = Request::get(path)
                .header("host", "127.0.0.1")
                .header("authorization", format!("Bearer {token}"))
                .body(Empty::<Bytes>::new())?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::ensure!(status.is_success(), "GET {path}: {status}");
            Ok(String::from_utf8_lossy(&body).into_owned())
        }
    }
}

/// A process's memory, in MiB.
pub struct Memory {
    /// Resident now (`VmRSS`): its own memory plus the pages of its binary and libraries it maps.
    pub rss: f64,
    /// The most ever resident (`VmHWM`).
    pub peak: f64,
    /// Resident memory of its own (`RssAnon`: heap, stacks), without the mapped files, whose
    /// resident share depends on what the page cache holds (a freshly built binary maps more).
    pub anon: f64,
}
