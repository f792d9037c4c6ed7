//! The scenarios of the benchmark. Each repetition starts a fresh hub on a fresh project (an empty
//! store), drives one kind of load and returns its figures; `main` repeats and takes medians.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use bytes::Bytes;

use crate::hub::{self, Hub};
use crate::load::{self, Target};
use crate::sink::Seen;

/// How long and how much: `--quick` shrinks every scenario for a smoke run.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    /// How long each closed-loop measurement sends.
    pub seconds: u64,
    /// Events of the durability scenario.
    pub durability_events: u64,
}

/// One figure of one repetition.
pub type Figures = Vec<(String, f64)>;

/// Everything one repetition needs.
pub struct Bench<'a> {
    pub weft: &'a Path,
    pub sink: std::net::SocketAddr,
    pub seen: Arc<Seen>,
    pub size: Size,
}

/// A relay-style event with a unique `id`, a customer and three items.
fn order_body(n: u64) -> Bytes {
    Bytes::from(format!(
        r#"{{"id":{n},"customer":{{"email":"c{n}@example.com","name":"Customer {n}"}},"items":[{{"sku":"A-1","price":12.5}},{{"sku":"B-2","price":7}},{{"sku":"C-3","price":30}}]}}"#
    ))
}

fn target(hub: &Hub, workflow: &str, body: load::BodyFn) -> Target {
    Target {
        addr: hub.addr,
        path: format!("/hooks/{workflow}"),
        expect: 202,
        body,
    }
}

impl Bench<'_> {
    async fn fresh_hub(&self) -> anyhow::Result<(tempfile::TempDir, Hub)> {
        let dir = tempfile::tempdir()?;
        hub::write_project(dir.path(), self.sink)?;
        self.seen.reset();
        let hub = Hub::start(self.weft, dir.path()).await?;
        Ok((dir, hub))
    }

    /// Waits until the sink holds `count` requests; returns when the last one arrived.
    async fn until_delivered(&self, count: u64, limit: Duration) -> anyhow::Result<Instant> {
        let deadline = Instant::now() + limit;
        while self.seen.count() < count {
            if Instant::now() > deadline {
                bail!(
                    "the sink got {} of {count} requests in {limit:?}",
                    self.seen.count()
                );
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(self.seen.last().unwrap_or_else(Instant::now))
    }

    /// Ingest: webhooks accepted and committed (202) at 64 clients; runs execute meanwhile.
    pub async fn ingest(&self) -> anyhow::Result<Figures> {
        let (_dir, hub) = self.fresh_hub().await?;
        let body: load::BodyFn = Arc::new(|n| Bytes::from(format!(r#"{{"id":{n}}}"#)));
        let out = load::closed(
            &target(&hub, "ingest", body),
            64,
            u64::MAX,
            Duration::from_secs(self.size.seconds),
        )
        .await;
        hub.stop().await;
        check_errors("ingest", out.errors, out.ok)?;
        Ok(vec![("ingest events/s".into(), out.rate())])
    }

    /// Relay at `clients` clients: runs/s end to end (202 to the sink's last delivery) and the
    /// webhook answer's latency; with `clients == 64` also the hub's CPU time per run and its peak memory.
    pub async fn relay(&self, clients: usize) -> anyhow::Result<Figures> {
        let (_dir, hub) = self.fresh_hub().await?;
        let cpu_before = hub.cpu_seconds();
        let start = Instant::now();
        let mut out = load::closed(
            &target(&hub, "relay", Arc::new(order_body)),
            clients,
            u64::MAX,
            Duration::from_secs(self.size.seconds),
        )
        .await;
        check_errors("relay", out.errors, out.ok)?;
        let last = self
            .until_delivered(out.ok, Duration::from_secs(300))
            .await?;
        let runs_per_s = out.ok as f64 / last.duration_since(start).as_secs_f64();
        let peak = hub.memory().peak;
        let cpu = hub.cpu_seconds() - cpu_before;
        hub.stop().await;
        let mut figures = vec![
            (format!("relay runs/s @{clients}"), runs_per_s),
            (format!("relay p50 ms @{clients}"), out.percentile_ms(50.0)),
            (format!("relay p99 ms @{clients}"), out.percentile_ms(99.0)),
        ];
        if clients == 64 {
            figures.push((
                "hub CPU µs per relay run @64".into(),
                cpu * 1e6 / out.ok as f64,
            ));
            figures.push(("peak RSS MiB (relay @64)".into(), peak));
        }
        Ok(figures)
    }

    /// Relay at a fixed 1,000 requests/s: the webhook answer's p50 and p99, and the hub's CPU time
    /// per run.
    pub async fn relay_fixed(&self) -> anyhow::Result<Figures> {
        let (_dir, hub) = self.fresh_hub().await?;
        let cpu_before = hub.cpu_seconds();
        let mut out = load::open(
            &target(&hub, "relay", Arc::new(order_body)),
            1000,
            Duration::from_secs(self.size.seconds),
            64,
        )
        .await;
        check_errors("relay at 1,000/s", out.errors, out.ok)?;
        self.until_delivered(out.ok, Duration::from_secs(300))
            .await?;
        let cpu = hub.cpu_seconds() - cpu_before;
        hub.stop().await;
        Ok(vec![
            ("relay p50 ms @1000/s".into(), out.percentile_ms(50.0)),
            ("relay p99 ms @1000/s".into(), out.percentile_ms(99.0)),
            // At a fixed rate the hub's CPU time per run is what a run costs, and unlike the
            // throughput it hardly moves with what else the machine is doing.
            (
                "hub CPU µs per relay run @1000/s".into(),
                cpu * 1e6 / out.ok as f64,
            ),
        ])
    }

    /// Fan-out: events of 100 items each, posted 10 at a time: items/s.
    pub async fn fanout(&self) -> anyhow::Result<Figures> {
        let (_dir, hub) = self.fresh_hub().await?;
        let events = (self.size.seconds * 4).max(8);
        let body: load::BodyFn = Arc::new(|n| Bytes::from(format!(r#"{{"id":{n}}}"#)));
        let start = Instant::now();
        let out = load::closed(
            &target(&hub, "fanout", body),
            4,
            events,
            Duration::from_secs(60),
        )
        .await;
        check_errors("fanout", out.errors, out.ok)?;
        let last = self
            .until_delivered(out.ok * 100, Duration::from_secs(600))
            .await?;
        hub.stop().await;
        Ok(vec![(
            "fan-out items/s".into(),
            (out.ok * 100) as f64 / last.duration_since(start).as_secs_f64(),
        )])
    }

    /// Chain: runs of 20 `map` steps against runs of one, at 16 clients: the cost of a step.
    pub async fn chain(&self) -> anyhow::Result<Figures> {
        let mut per_run = Vec::new();
        for workflow in ["chain", "chain1"] {
            let (_dir, hub) = self.fresh_hub().await?;
            let body: load::BodyFn = Arc::new(|n| Bytes::from(format!(r#"{{"n":{n}}}"#)));
            let start = Instant::now();
            let out = load::closed(
                &target(&hub, workflow, body),
                16,
                u64::MAX,
                Duration::from_secs(self.size.seconds),
            )
            .await;
            check_errors(workflow, out.errors, out.ok)?;
            let last = hub
                .until_finished(workflow, out.ok, Duration::from_secs(600))
                .await?;
            hub.stop().await;
            per_run.push(last.duration_since(start).as_secs_f64() / out.ok as f64);
        }
        let per_step_us = (per_run[0] - per_run[1]) / 19.0 * 1e6;
        Ok(vec![
            ("chain-20 runs/s".into(), 1.0 / per_run[0]),
            ("per-step overhead µs".into(), per_step_us),
        ])
    }

    /// Durability: relay events at 64 clients, SIGKILL at a random moment, restart, and count:
    /// acknowledged events, runs delivered to the sink, lost (acknowledged, never delivered) and
    /// duplicated deliveries.
    pub async fn durability(&self) -> anyhow::Result<Figures> {
        let (dir, hub) = self.fresh_hub().await?;
        let total = self.size.durability_events;
        let load_target = target(&hub, "relay", Arc::new(order_body));
        let sending = tokio::spawn(async move {
            load::closed(&load_target, 64, total, Duration::from_secs(300)).await
        });
        // Somewhere in the middle of the sending, by count.
        let kill_at = total / 5 + rand::random_range(0..total * 3 / 5);
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.seen.count() < kill_at && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        hub.kill().await;
        let out = sending.await?;
        let acked: HashSet<u64> = out.ok_numbers.iter().copied().collect();
        let hub = Hub::start(self.weft, dir.path()).await?;
        // Everything acknowledged must arrive; wait until it does or nothing moves for 20 s.
        let mut quiet_since = Instant::now();
        let mut last_count = self.seen.count();
        loop {
            let delivered = self.delivered_ids();
            if acked.iter().all(|n| delivered.contains(n)) {
                break;
            }
            let count = self.seen.count();
            if count != last_count {
                last_count = count;
                quiet_since = Instant::now();
            } else if quiet_since.elapsed() > Duration::from_secs(20) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        hub.stop().await;
        let delivered = self.delivered_ids();
        let lost = acked.iter().filter(|n| !delivered.contains(n)).count();
        let duplicates: u64 = self
            .seen
            .ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .map(|&c| u64::from(c.saturating_sub(1)))
            .sum();
        Ok(vec![
            ("durability acked".into(), acked.len() as f64),
            ("durability delivered".into(), delivered.len() as f64),
            ("durability lost".into(), lost as f64),
            ("durability duplicates".into(), duplicates as f64),
        ])
    }

    fn delivered_ids(&self) -> HashSet<u64> {
        self.seen
            .ids
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect()
    }

    /// Memory: resident size of an idle hub two seconds after it listens, in all and of its own.
    pub async fn idle_memory(&self) -> anyhow::Result<Figures> {
        let (_dir, hub) = self.fresh_hub().await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let memory = hub.memory();
        hub.stop().await;
        Ok(vec![
            ("idle RSS MiB".into(), memory.rss),
            ("idle RSS of its own (anonymous) MiB".into(), memory.anon),
        ])
    }
}

/// A load run in which most requests failed measures nothing.
fn check_errors(what: &str, errors: u64, ok: u64) -> anyhow::Result<()> {
    if ok == 0 || errors > ok / 100 {
        bail!(
            "{what}: {errors} requests failed and {ok} succeeded; the figures would mean nothing"
        );
    }
    Ok(())
}
