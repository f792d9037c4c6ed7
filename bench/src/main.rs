//! `weft-bench`: the project's benchmark. It builds `weft` in release mode, starts a sink HTTP
//! server, and for each scenario starts a fresh `weft serve` on a bench project with the embedded
//! store, drives load over loopback with its own HTTP/1.1 generator and prints one table of medians
//! over the repetitions, with the machine it ran on.
//!
//! Run it from the repository: `cargo run --release -p weft-bench` (`--help` for the options).
//! BENCHMARKS.md holds the latest results and what each optimisation bought.

mod hub;
mod load;
mod scenarios;
mod sink;

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Parser;

/// Benchmarks `weft serve` on this machine.
#[derive(Parser)]
struct Args {
    /// Scenarios to run, comma-separated: ingest, relay, fixed, fanout, chain, durability, memory.
    #[arg(
        long,
        default_value = "memory,ingest,relay,fixed,fanout,chain,durability"
    )]
    scenarios: String,
    /// Repetitions of each scenario; the table shows the median.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Seconds each load measurement sends for.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Webhooks of the durability scenario.
    #[arg(long, default_value_t = 5000)]
    durability_events: u64,
    /// Use this `weft` binary instead of building one.
    #[arg(long)]
    weft: Option<PathBuf>,
}

const SCENARIOS: &[&str] = &[
    "memory",
    "ingest",
    "relay",
    "fixed",
    "fanout",
    "chain",
    "durability",
];

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let chosen: Vec<String> = args
        .scenarios
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    if let Some(unknown) = chosen.iter().find(|s| !SCENARIOS.contains(&s.as_str())) {
        anyhow::bail!(
            "unknown scenario `{unknown}`; the scenarios are {}",
            SCENARIOS.join(", ")
        );
    }
    anyhow::ensure!(args.repeat >= 1, "--repeat must be at least 1");
    anyhow::ensure!(args.seconds >= 1, "--seconds must be at least 1");
    anyhow::ensure!(
        args.durability_events >= 100,
        "--durability-events must be at least 100, for the kill to land among them"
    );
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let weft = match args.weft.clone() {
        Some(path) => path,
        None => hub::build_release(&root)?,
    };
    // The hub runs in its project's folder: the path must not depend on ours.
    let weft =
        std::fs::canonicalize(&weft).map_err(|e| anyhow::anyhow!("{}: {e}", weft.display()))?;
    // The generator and the sink share the machine with the hub: two threads leave it the rest.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(args, chosen, weft))
}

async fn run(args: Args, chosen: Vec<String>, weft: PathBuf) -> anyhow::Result<()> {
    let (sink, seen) = sink::start().await?;
    let bench = scenarios::Bench {
        weft: &weft,
        sink,
        seen,
        size: scenarios::Size {
            seconds: args.seconds,
            durability_events: args.durability_events,
        },
    };
    // Figure name → one value per repetition, in the order they were first seen.
    let mut order: Vec<String> = Vec::new();
    let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for scenario in &chosen {
        for round in 1..=args.repeat {
            eprintln!("{scenario}: run {round} of {}", args.repeat);
            let figures = match scenario.as_str() {
                "memory" => bench.idle_memory().await?,
                "ingest" => bench.ingest().await?,
                "relay" => {
                    let mut all = Vec::new();
                    for clients in [1, 16, 64] {
                        all.extend(bench.relay(clients).await?);
                    }
                    all
                }
                "fixed" => bench.relay_fixed().await?,
                "fanout" => bench.fanout().await?,
                "chain" => bench.chain().await?,
                "durability" => bench.durability().await?,
                _ => unreachable!("checked above"),
            };
            for (name, value) in figures {
                eprintln!("  {name}: {value:.2}");
                if !values.contains_key(&name) {
                    order.push(name.clone());
                }
                values.entry(name).or_default().push(value);
            }
        }
    }
    print_table(&args, &order, &values);
    Ok(())
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn print_table(args: &Args, order: &[String], values: &BTreeMap<String, Vec<f64>>) {
    println!("machine: {}", machine());
    println!(
        "{} repetitions per scenario, {} s per load measurement; median (min – max)",
        args.repeat, args.seconds
    );
    println!();
    println!("| figure | median | min | max |");
    println!("|---|---:|---:|---:|");
    for name in order {
        let v = &values[name];
        let min = v.iter().copied().fold(f64::INFINITY, f64::min);
        let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        println!(
            "| {name} | {} | {} | {} |",
            show(median(v)),
            show(min),
            show(max)
        );
    }
}

fn show(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

/// Cores, memory and CPU model, read from the system.
fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0 / 1024.0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map_or("unknown CPU".to_string(), |m| m.trim().to_string());
    format!("{cores} cores, {memory_gib:.1} GiB memory, {model}")
}
