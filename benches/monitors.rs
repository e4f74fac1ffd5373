//! 100 monitors every 10 s (SPEC §17: lateness p99 ≤ 1 s, RSS ≤ 64 MiB), on the real
//! `firebell serve` binary in a process of its own.
//!
//! `cargo build --release && FIREBELL_BENCH_BINARY=$PWD/target/release/firebell cargo bench --bench monitors`
//! — `FIREBELL_BENCH_MONITORS` (default 100) monitors, each an exec check of `true` every
//! `FIREBELL_BENCH_EVERY_S` (default 10) seconds, for `FIREBELL_BENCH_WINDOW_S` (default 60)
//! seconds on a SQLite store in a scratch folder. This process reads the store every 100 ms:
//! a run's lateness is when it was recorded (`last_run_at`, after the check ran) minus when it
//! was due (the `next_run_at` seen before it) — an upper bound on when it started. Memory is the
//! server's `VmRSS`/`VmHWM` from `/proc`.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use support::{env_number, free_port, memory_mib, spawn_serve, stop, toml_str, wait_ready};

const RUNBOOK: &str =
    "name = \"ping\"\nsummary = \"true\"\n\n[[checks]]\nname = \"true\"\nkind = \"exec\"\nargv = [\"true\"]\n";

fn main() {
    let monitors = env_number("FIREBELL_BENCH_MONITORS", 100);
    let every = env_number("FIREBELL_BENCH_EVERY_S", 10);
    let window = Duration::from_secs(env_number("FIREBELL_BENCH_WINDOW_S", 60));
    let dir = tempfile::tempdir().expect("a scratch folder");
    std::fs::create_dir(dir.path().join("commands")).unwrap();
    std::fs::write(dir.path().join("commands/ping.toml"), RUNBOOK).unwrap();
    let port = free_port();
    let url = format!("sqlite://{}", dir.path().join("firebell.db").display());
    let mut config = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n\n[store]\nurl = {}\n\n", toml_str(&url));
    for n in 0..monitors {
        config.push_str(&format!(
            "[[monitors]]\nname = \"ping-{n}\"\nrun = \"ping\"\nevery = \"{every}s\"\nopen = \"never\"\n\n"
        ));
    }
    let config_path = dir.path().join("firebell.toml");
    std::fs::write(&config_path, config).unwrap();
    let mut child = spawn_serve(dir.path(), &config_path, "serve.log");
    let address = SocketAddr::from(([127, 0, 0, 1], port));
    wait_ready(&mut child, address, Instant::now(), Duration::from_secs(15)).expect("firebell serve is ready");

    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (lateness, runs, rss, hwm) = runtime.block_on(async {
        let store = firebell::store::open(&url).await.expect("the bench reads the store");
        let mut seen: HashMap<String, (i64, chrono::DateTime<chrono::Utc>)> = HashMap::new();
        let mut lateness_ms: Vec<i64> = Vec::new();
        let mut max_rss = 0.0f64;
        let started = Instant::now();
        while started.elapsed() < window {
            for row in store.monitors().await.expect("the monitors read") {
                if let Some((runs, due)) = seen.get(&row.name)
                    && row.runs > *runs
                    && let Some(ran) = row.last_run_at
                {
                    lateness_ms.push((ran - *due).num_milliseconds().max(0));
                }
                seen.insert(row.name.clone(), (row.runs, row.next_run_at));
            }
            max_rss = max_rss.max(memory_mib(child.id()).0);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (_, hwm) = memory_mib(child.id());
        let runs: i64 = store.monitors().await.unwrap().iter().map(|row| row.runs).sum();
        (lateness_ms, runs, max_rss, hwm)
    });
    stop(&mut child);
    let mut sorted = lateness;
    sorted.sort_unstable();
    let at = |fraction: f64| {
        if sorted.is_empty() { 0 } else { sorted[((sorted.len() as f64 - 1.0) * fraction).round() as usize] }
    };
    println!(
        "monitors: {monitors} every {every}s for {}s: {runs} runs, lateness (recorded − due) p50 {} ms, p99 {} ms, max {} ms over {} runs; server RSS max {rss:.1} MiB, VmHWM {hwm:.1} MiB",
        window.as_secs(),
        at(0.5),
        at(0.99),
        sorted.last().copied().unwrap_or(0),
        sorted.len()
    );
}
