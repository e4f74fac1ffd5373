//! The real `firebell serve` process (the release binary cargo built for this bench): its
//! start-up to ready and its memory, on an empty store and with 10,000 open incidents holding
//! 100,000 pending escalation steps (SPEC §8: ready ≤ 50 ms empty, ≤ 500 ms with 100k timers;
//! RSS ≤ 20 MB idle, ≤ 64 MB with 10k incidents and 100k timers).
//!
//! `cargo bench --bench serve`. The config is the shipped `firebell.example.toml` (every target,
//! policy and schedule of it) with the shipped `commands/` folder, on a SQLite file in a
//! temporary folder. `FIREBELL_BENCH_RUNS` (default 10) starts per store;
//! `FIREBELL_BENCH_IDLE_S` (default 5) how long it sits idle before its memory is read again;
//! `FIREBELL_BENCH_ONLY=empty|loaded` runs one half.
//!
//! Start-up is measured from just before `spawn` to the first 200 from `GET /readyz`, polled
//! every 0.5 ms on a fresh connection; memory is `VmRSS` and `VmHWM` of `/proc/PID/status`.

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use firebell::config::Severity;
use firebell::incident::NewIncident;
use firebell::store::NewTimer;
use support::{env_number, free_port, memory_mib, ms, percentile, selected, spawn_serve, stop, wait_ready};

/// The example config, with this run's port and store.
fn write_config(dir: &Path, store_url: &str, port: u16) -> std::path::PathBuf {
    let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/firebell.example.toml"))
        .expect("firebell.example.toml is readable");
    let listen = "listen = \"127.0.0.1:8080\"";
    let store = "url = \"${FIREBELL_STORE_URL:-sqlite://firebell.db}\"";
    assert!(
        example.contains(listen) && example.contains(store),
        "firebell.example.toml changed its [server]/[store] lines"
    );
    let text = example
        .replace(listen, &format!("listen = \"127.0.0.1:{port}\""))
        .replace(store, &format!("url = {}", support::toml_str(store_url)));
    let path = dir.join("firebell.toml");
    std::fs::write(&path, text).expect("the config is written");
    path
}

fn workspace() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::os::unix::fs::symlink(concat!(env!("CARGO_MANIFEST_DIR"), "/commands"), dir.path().join("commands"))
        .expect("a link to the shipped commands/");
    dir
}

struct Start {
    ready: Duration,
    rss_ready: f64,
    rss_idle: f64,
    hwm: f64,
    /// Of `rss_idle`: anonymous memory (heap, stacks) and pages of mapped files (mostly the
    /// executable's own code, shared with every process that runs it).
    anon: f64,
    file: f64,
}

/// Starts `firebell serve` on `store_url`, waits for ready, idles, reads memory, stops it.
fn start_once(dir: &Path, store_url: &str, run: usize) -> Start {
    let idle = Duration::from_secs(env_number("FIREBELL_BENCH_IDLE_S", 5));
    for _attempt in 0..3 {
        let port = free_port();
        let config = write_config(dir, store_url, port);
        let address = format!("127.0.0.1:{port}").parse().expect("an address");
        let started = Instant::now();
        let mut child = spawn_serve(dir, &config, &format!("serve-{run}.log"));
        let Some(ready) = wait_ready(&mut child, address, started, Duration::from_secs(60)) else {
            stop(&mut child);
            let log = std::fs::read_to_string(dir.join(format!("serve-{run}.log"))).unwrap_or_default();
            if log.contains("cannot listen") {
                continue;
            }
            panic!("firebell serve did not become ready:\n{log}");
        };
        let (rss_ready, _) = memory_mib(child.id());
        std::thread::sleep(idle);
        let (rss_idle, hwm) = memory_mib(child.id());
        let anon = support::status_mib(child.id(), "RssAnon");
        let file = support::status_mib(child.id(), "RssFile");
        stop(&mut child);
        return Start { ready, rss_ready, rss_idle, hwm, anon, file };
    }
    panic!("no free port in 3 tries");
}

fn report(label: &str, starts: &[Start]) {
    let mut ready: Vec<Duration> = starts.iter().map(|start| start.ready).collect();
    ready.sort();
    let max_of = |pick: fn(&Start) -> f64| starts.iter().map(pick).fold(0.0, f64::max);
    let median_of = |pick: fn(&Start) -> f64| {
        let mut values: Vec<f64> = starts.iter().map(pick).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    println!(
        "{label}: {} starts; ready median {}, min {}, max {}; RSS at ready median {:.1} MiB, after idle median {:.1} MiB (max {:.1}), VmHWM max {:.1} MiB",
        starts.len(),
        ms(percentile(&ready, 0.5)),
        ms(ready[0]),
        ms(*ready.last().expect("at least one start")),
        median_of(|start| start.rss_ready),
        median_of(|start| start.rss_idle),
        max_of(|start| start.rss_idle),
        max_of(|start| start.hwm),
    );
    println!(
        "{label}: of the RSS after idle, median: RssAnon {:.1} MiB (heap, stacks), RssFile {:.1} MiB (mapped files: the executable's code)",
        median_of(|start| start.anon),
        median_of(|start| start.file),
    );
    println!(
        "{label}: each start (ms): {}",
        starts.iter().map(|start| format!("{:.1}", start.ready.as_secs_f64() * 1000.0)).collect::<Vec<_>>().join(" ")
    );
}

fn new_incident(title: String) -> NewIncident {
    NewIncident {
        title,
        severity: Severity::High,
        impact: None,
        commander: None,
        fingerprint: None,
        policy: Some("default".into()),
        declared_by: Some("bench".into()),
    }
}

/// 10,000 open incidents × 10 steps of policy `default` due hours from now, through the
/// library's store (what `firebell serve` will find).
async fn fill(store_url: &str) {
    let started = Instant::now();
    let store = firebell::store::open(store_url).await.expect("open the store");
    let now = Utc::now();
    for incident in 0..10_000 {
        let timers = (0..10)
            .map(|round| NewTimer {
                policy: "default".into(),
                step: 0,
                round,
                fire_at: now + chrono::Duration::hours(2 + i64::from(round)),
            })
            .collect();
        store.declare(new_incident(format!("background {incident}")), timers, now).await.expect("declare");
    }
    let pending = store.pending_timers().await.expect("count the timers");
    let open = store.incidents(false, 20_000).await.expect("list").len();
    println!(
        "loaded store: {open} open incidents, {pending} pending steps, written in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

fn main() {
    let runs = env_number("FIREBELL_BENCH_RUNS", 10).max(1) as usize;
    println!("binary: {}; machine load average: {}", support::firebell(), support::load_average());
    if selected("empty") {
        // A new empty file each time: start-up includes creating the schema.
        let dir = workspace();
        let starts: Vec<Start> = (0..runs)
            .map(|run| {
                let url = format!("sqlite://{}", dir.path().join(format!("empty-{run}.db")).display());
                start_once(dir.path(), &url, run)
            })
            .collect();
        report("empty store, new file each start", &starts);
        // The same empty store again: what a restart costs once the schema is there.
        let url = format!("sqlite://{}", dir.path().join("empty-0.db").display());
        let starts: Vec<Start> = (0..runs).map(|run| start_once(dir.path(), &url, runs + run)).collect();
        report("empty store, restarted", &starts);
    }
    if selected("loaded") {
        let dir = workspace();
        let url = format!("sqlite://{}", dir.path().join("loaded.db").display());
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
        runtime.block_on(fill(&url));
        drop(runtime);
        let starts: Vec<Start> = (0..runs).map(|run| start_once(dir.path(), &url, run)).collect();
        report("10,000 open incidents, 100,000 pending steps", &starts);
        println!("machine load average after: {}", support::load_average());
    }
}
