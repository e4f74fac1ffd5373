//! Escalation timer lateness with 100,000 pending steps, on SQLite and on PostgreSQL, and the
//! process's memory at that size (SPEC §8).
//!
//! `cargo bench --bench timers` — PostgreSQL from `FIREBELL_BENCH_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`; a scratch database is created and dropped).
//! `FIREBELL_BENCH_PROBES` (default 2000) steps come due over `FIREBELL_BENCH_WINDOW_S` (default
//! 20) seconds while 10,000 open incidents hold 100,000 pending steps in the future.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use firebell::clock::SystemClock;
use firebell::config::{Config, Severity};
use firebell::escalation::{Directory, Escalator};
use firebell::incident::NewIncident;
use firebell::source::SourceFile;
use firebell::store::{NewTimer, Store};
use tokio_util::sync::CancellationToken;

const CONFIG: &str = r#"
[groups]
oncall = ["slack:U0001"]
[[policies]]
name = "default"
steps = [ { after = "0s", notify = ["group:oncall"] } ]
"#;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

fn percentile(sorted: &[i64], fraction: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

fn new_incident(title: String) -> NewIncident {
    NewIncident {
        title,
        severity: Severity::High,
        impact: None,
        commander: None,
        fingerprint: None,
        policy: None,
        declared_by: Some("bench".into()),
    }
}

async fn run(label: &str, store: Arc<dyn Store>) {
    let probes = env_number("FIREBELL_BENCH_PROBES", 2000) as usize;
    let window = Duration::from_secs(env_number("FIREBELL_BENCH_WINDOW_S", 20));
    let config = Config::parse(&SourceFile::new("bench.toml", CONFIG)).expect("the bench config parses");
    let directory = Arc::new(Directory::from_config(&config).expect("the bench directory builds"));

    // 10,000 open incidents × 10 steps, all due hours from now: the 100,000 pending rows.
    let setup_started = std::time::Instant::now();
    let now = Utc::now();
    for incident in 0..10_000 {
        let timers = (0..10)
            .map(|step| NewTimer {
                policy: "default".into(),
                step: 0,
                round: step,
                fire_at: now + chrono::Duration::hours(2 + i64::from(step)),
            })
            .collect();
        store.declare(new_incident(format!("background {incident}")), timers, now).await.expect("declare");
    }
    let pending = store.pending_timers().await.expect("count");
    let rss_loaded = rss_mib();

    // Probe steps spread over the window, each its own incident.
    let start = Utc::now() + chrono::Duration::seconds(2);
    let spread_ms = window.as_millis() as i64;
    for probe in 0..probes {
        let offset = (probe as i64 * 7919) % spread_ms;
        let timers = vec![NewTimer {
            policy: "default".into(),
            step: 0,
            round: 0,
            fire_at: start + chrono::Duration::milliseconds(offset),
        }];
        store.declare(new_incident(format!("probe {probe}")), timers, Utc::now()).await.expect("declare probe");
    }
    println!(
        "{label}: setup {:.1} s, {pending} pending steps in 10,000 open incidents, RSS {rss_loaded:.1} MiB",
        setup_started.elapsed().as_secs_f64()
    );

    let escalator = Arc::new(Escalator::new(store.clone(), directory, Arc::new(SystemClock)));
    let shutdown = CancellationToken::new();
    let engine = tokio::spawn(escalator.clone().run(shutdown.clone()));
    let deadline = start + chrono::Duration::milliseconds(spread_ms) + chrono::Duration::seconds(3);
    tokio::time::sleep((deadline - Utc::now()).to_std().unwrap_or_default()).await;
    shutdown.cancel();
    let _ = engine.await;
    let rss_running = rss_mib();

    let mut lateness: Vec<i64> = Vec::new();
    let incidents = store.incidents(false, 100_000).await.expect("list");
    for incident in incidents.iter().filter(|incident| incident.title.starts_with("probe ")) {
        for event in incident.timeline.iter().filter(|event| event.kind == "escalated") {
            lateness.push(event.detail["late_ms"].as_i64().unwrap_or(i64::MAX));
        }
    }
    lateness.sort_unstable();
    println!(
        "{label}: fired {}/{probes} probe steps; lateness p50 {} ms, p99 {} ms, max {} ms; RSS after run {rss_running:.1} MiB",
        lateness.len(),
        percentile(&lateness, 0.50),
        percentile(&lateness, 0.99),
        lateness.last().copied().unwrap_or(0)
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let only = std::env::var("FIREBELL_BENCH_ONLY").unwrap_or_default();
        if only.is_empty() || only == "sqlite" {
            let dir = tempfile::tempdir().expect("tempdir");
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            let store = firebell::store::open(&url).await.expect("open sqlite");
            run("sqlite", store).await;
        }
        if only.is_empty() || only == "postgres" {
            let admin_url = std::env::var("FIREBELL_BENCH_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            let database = format!("firebell_bench_{}", std::process::id());
            let admin = sqlx::PgPool::connect(&admin_url).await.expect("connect to PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
                .execute(&admin)
                .await
                .expect("create database");
            let url = format!("{}/{database}", admin_url.rsplit_once('/').map(|(base, _)| base).unwrap_or(&admin_url));
            {
                let store = firebell::store::open(&url).await.expect("open postgres");
                run("postgres", store).await;
            }
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {database} WITH (FORCE)")))
                .execute(&admin)
                .await
                .expect("drop database");
        }
    });
}
