//! Alert ingestion, durable before the answer (SPEC §8: ≥ 10,000 alerts/s sustained with group
//! commit, repeats deduplicated), on SQLite and on PostgreSQL.
//!
//! `cargo bench --bench alerts` starts the real app in-process (store in a temporary SQLite
//! file; then a scratch PostgreSQL database from `FIREBELL_BENCH_POSTGRES_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`, created and dropped) and drives
//! `POST /alerts/generic` from `FIREBELL_BENCH_CONNECTIONS` (default 64) keep-alive connections
//! (a minimal HTTP/1.1 client, one request in flight on each) for `FIREBELL_BENCH_SECONDS`
//! (default 10): half the alerts carry a new `dedup_key` (a new
//! incident), half repeat one of 1,000 incidents opened beforehand (deduplicated). A 2xx means
//! the alert is committed. Then, for comparison, the store alone: `Store::ingest_alerts` in
//! batches of 500 with the same mix, no HTTP. `FIREBELL_BENCH_ONLY=sqlite|postgres` runs one.
//! No escalation policy is configured, so this measures ingestion only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use firebell::clock::SystemClock;
use firebell::config::{Config, Severity};
use firebell::incident::NewIncident;
use firebell::source::SourceFile;
use firebell::store::{AlertOutcome, IncomingAlert};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "bench-token";
/// Open incidents the repeats go to.
const HOT: usize = 1_000;
const RUNBOOK: &str = "name = \"ping\"\nsummary = \"Is the host alive\"\n\n[[checks]]\nname = \"true\"\nkind = \"exec\"\nargv = [\"true\"]\n";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[u32], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    f64::from(sorted[index]) / 1000.0
}

fn body(dedup_key: &str) -> String {
    format!(
        r#"{{"title":"Disk almost full on {dedup_key}","status":"firing","dedup_key":"{dedup_key}","severity":"high","description":"/var is 91% full","labels":{{"alertname":"DiskFull","host":"{dedup_key}"}}}}"#
    )
}

/// A small deterministic generator, so each task picks repeats without a shared lock.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[derive(Default)]
struct Tally {
    answered: u64,
    refused: u64,
    opened: u64,
    repeated: u64,
    latencies_us: Vec<u32>,
}

/// A minimal HTTP/1.1 keep-alive client: one request in flight, written in one piece, the answer
/// read until its `Content-Length` is complete. The load generator shares the 2 cores with the
/// bot; this one costs a fraction of what a full client (reqwest: a pool, a dispatch task and a
/// channel hop per request) does, like `wrk` would, so the figure is the bot's.
struct Connection {
    stream: tokio::net::TcpStream,
    buffer: Vec<u8>,
}

impl Connection {
    async fn open(address: std::net::SocketAddr) -> std::io::Result<Connection> {
        let stream = tokio::net::TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        Ok(Connection { stream, buffer: Vec::with_capacity(4096) })
    }

    /// Posts an alert; the answer's status and body.
    async fn post(&mut self, dedup_key: &str) -> std::io::Result<(u16, String)> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let body = body(dedup_key);
        let request = format!(
            "POST /alerts/generic HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.stream.write_all(request.as_bytes()).await?;
        self.buffer.clear();
        loop {
            if let Some(answer) = complete_answer(&self.buffer)? {
                return Ok(answer);
            }
            if self.stream.read_buf(&mut self.buffer).await? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
        }
    }
}

/// The status and body once `buffer` holds a whole answer with a `Content-Length`.
fn complete_answer(buffer: &[u8]) -> std::io::Result<Option<(u16, String)>> {
    let invalid = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    let Some(end) = buffer.windows(4).position(|window| window == b"\r\n\r\n") else { return Ok(None) };
    let head = std::str::from_utf8(&buffer[..end]).map_err(|_| invalid("a head that is not UTF-8"))?;
    let status = head.get(9..12).and_then(|code| code.parse().ok()).ok_or_else(|| invalid(head))?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
        })
        .ok_or_else(|| invalid("an answer without Content-Length"))?;
    let start = end + 4;
    if buffer.len() < start + length {
        return Ok(None);
    }
    Ok(Some((status, String::from_utf8_lossy(&buffer[start..start + length]).into_owned())))
}

async fn post(connection: &mut Connection, dedup_key: &str) -> Result<String, String> {
    let (status, text) = connection.post(dedup_key).await.map_err(|error| error.to_string())?;
    if (200..300).contains(&status) { Ok(text) } else { Err(format!("{status}: {text}")) }
}

/// One connection's loop: a new alert, then a repeat, until `deadline`.
async fn drive(task: usize, address: std::net::SocketAddr, deadline: Instant) -> Tally {
    let mut connection = Connection::open(address).await.expect("a connection to the bot");
    let mut tally = Tally::default();
    let mut random = 0x9E37_79B9_7F4A_7C15 ^ (task as u64 + 1);
    let mut sent = 0u64;
    while Instant::now() < deadline {
        let dedup_key = if sent.is_multiple_of(2) {
            format!("new-{task}-{sent}")
        } else {
            format!("hot-{}", next_random(&mut random) % HOT as u64)
        };
        sent += 1;
        let started = Instant::now();
        match post(&mut connection, &dedup_key).await {
            Ok(text) => {
                tally.latencies_us.push(started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                tally.answered += 1;
                if text.contains(r#""outcome":"opened""#) {
                    tally.opened += 1;
                } else if text.contains(r#""outcome":"repeated""#) {
                    tally.repeated += 1;
                }
            }
            Err(error) => {
                if tally.refused == 0 {
                    eprintln!("  a request failed: {error}");
                }
                tally.refused += 1;
            }
        }
    }
    tally
}

async fn http_phase(label: &str, url: &str, dir: &std::path::Path) {
    let connections = env_number("FIREBELL_BENCH_CONNECTIONS", 64) as usize;
    let seconds = env_number("FIREBELL_BENCH_SECONDS", 10);
    std::fs::create_dir_all(dir.join("commands")).expect("a commands folder");
    std::fs::write(dir.join("commands/ping.toml"), RUNBOOK).expect("the runbook");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\napi_token = \"{TOKEN}\"\n\n[store]\nurl = {}\n",
        toml::Value::String(url.to_string())
    );
    let config = Config::parse(&SourceFile::new(dir.join("firebell.toml"), text)).expect("the bench config parses");
    let app = firebell::app::App::build(config, Arc::new(SystemClock)).await.expect("the app starts");
    let address = app.address();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(app.run_until_stopped(shutdown.clone()));

    // The incidents the repeats go to, opened before the clock starts.
    let opened = Arc::new(AtomicU64::new(0));
    let warmups: Vec<_> = (0..16)
        .map(|worker| {
            let opened = opened.clone();
            tokio::spawn(async move {
                let mut connection = Connection::open(address).await.expect("a connection to the bot");
                for hot in (worker..HOT).step_by(16) {
                    post(&mut connection, &format!("hot-{hot}")).await.expect("a warm-up alert is accepted");
                    opened.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for warmup in warmups {
        warmup.await.expect("the warm-up finishes");
    }
    assert_eq!(opened.load(Ordering::Relaxed), HOT as u64);

    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    let tasks: Vec<_> = (0..connections).map(|task| tokio::spawn(drive(task, address, deadline))).collect();
    let mut total = Tally::default();
    for task in tasks {
        let tally = task.await.expect("a load task finishes");
        total.answered += tally.answered;
        total.refused += tally.refused;
        total.opened += tally.opened;
        total.repeated += tally.repeated;
        total.latencies_us.extend(tally.latencies_us);
    }
    let elapsed = started.elapsed().as_secs_f64();
    total.latencies_us.sort_unstable();
    println!(
        "{label} HTTP: {connections} connections, {elapsed:.1} s: {} alerts answered 2xx ({:.0} alerts/s), {} refused; \
         {} opened, {} deduplicated; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        total.answered,
        total.answered as f64 / elapsed,
        total.refused,
        total.opened,
        total.repeated,
        percentile(&total.latencies_us, 0.50),
        percentile(&total.latencies_us, 0.99),
        percentile(&total.latencies_us, 1.0),
    );
    shutdown.cancel();
    let _ = running.await;
}

fn incoming(dedup_key: &str) -> IncomingAlert {
    let labels = serde_json::json!({"alertname": "DiskFull", "host": dedup_key, "severity": "high"});
    IncomingAlert {
        source: "generic".into(),
        fingerprint: format!("generic:{dedup_key}"),
        firing: true,
        incident: NewIncident {
            title: format!("Disk almost full on {dedup_key}"),
            severity: Severity::High,
            impact: Some("/var is 91% full".into()),
            commander: None,
            fingerprint: Some(format!("generic:{dedup_key}")),
            policy: None,
            declared_by: Some("generic".into()),
        },
        timers: Vec::new(),
        resolve: true,
        payload: serde_json::json!({"labels": labels, "alerts": 1, "body": serde_json::from_str::<serde_json::Value>(&body(dedup_key)).unwrap_or_default()}),
    }
}

/// The store alone, no HTTP: what one writer commits in transactions of `BATCH` alerts, for
/// the benchmark's mix and for new alerts and repeats on their own (what each costs).
async fn store_phase(label: &str, url: &str) {
    const BATCH: usize = 500;
    let store = firebell::store::open(url).await.expect("the store opens");
    let mut random = 0x2545_F491_4F6C_DD1D_u64;
    let mut batches = 0u64;
    for (mix, new_every) in [("mixed", 2), ("new only", 1), ("repeats only", 0)] {
        let started = Instant::now();
        let (mut alerts, mut opened, mut repeated) = (0u64, 0u64, 0u64);
        while started.elapsed() < Duration::from_secs(2) {
            let work: Vec<IncomingAlert> = (0..BATCH)
                .map(|n| {
                    if new_every > 0 && n % new_every == 0 {
                        incoming(&format!("direct-{batches}-{n}"))
                    } else {
                        incoming(&format!("hot-{}", next_random(&mut random) % HOT as u64))
                    }
                })
                .collect();
            let outcomes = store
                .ingest_alerts(&work, chrono::Duration::minutes(10), chrono::Utc::now())
                .await
                .expect("a batch commits");
            for outcome in outcomes {
                match outcome {
                    AlertOutcome::Opened(_) => opened += 1,
                    AlertOutcome::Repeated(_) => repeated += 1,
                    _ => {}
                }
            }
            alerts += BATCH as u64;
            batches += 1;
        }
        let elapsed = started.elapsed().as_secs_f64();
        println!(
            "{label} store alone, {mix}: {alerts} alerts in transactions of {BATCH}, {elapsed:.1} s: {:.0} alerts/s \
             ({:.0} µs each); {opened} opened, {repeated} deduplicated",
            alerts as f64 / elapsed,
            elapsed * 1e6 / alerts as f64,
        );
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let only = std::env::var("FIREBELL_BENCH_ONLY").unwrap_or_default();
        if only.is_empty() || only == "sqlite" {
            let dir = tempfile::tempdir().expect("a temporary folder");
            let url = format!("sqlite://{}", dir.path().join("bench.db").display());
            http_phase("sqlite", &url, dir.path()).await;
            store_phase("sqlite", &url).await;
        }
        if only.is_empty() || only == "postgres" {
            let admin_url = std::env::var("FIREBELL_BENCH_POSTGRES_URL")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            let database = format!("firebell_bench_alerts_{}", std::process::id());
            let admin = sqlx::PgPool::connect(&admin_url).await.expect("connect to PostgreSQL");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
                .execute(&admin)
                .await
                .expect("create the scratch database");
            let url = format!("{}/{database}", admin_url.rsplit_once('/').map(|(base, _)| base).unwrap_or(&admin_url));
            let dir = tempfile::tempdir().expect("a temporary folder");
            http_phase("postgres", &url, dir.path()).await;
            store_phase("postgres", &url).await;
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE {database} WITH (FORCE)")))
                .execute(&admin)
                .await
                .expect("drop the scratch database");
        }
    });
}
