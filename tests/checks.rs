//! Black-box tests of the check kinds against real systems: the PostgreSQL, MariaDB and Redis
//! of this machine, SQLite files, and HTTP and TLS servers each test starts. Every test drives
//! the engine the way `firebell run` does (runbook text → catalogue → runner) and asserts what a
//! user would see: the verdict, the one-line summary and the data the expressions judged.

mod common;
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Engine, finished, toml_str, verdict, write_script};
use firebell::check::{Status, Stream};
use firebell::config::TargetKind;
use firebell::runbook::CheckEvent;
use serde_json::json;
use sqlx::Connection;

// ---------------------------------------------------------------------------------------------
// PostgreSQL

const QUEUE_RUNBOOK: &str = r#"
name = "queue"
summary = "Depth of the worker queues"

[args.queue]
pattern = '^[a-z0-9_]{1,64}$'
default = "ingest_indicators"
help = "queue name"

[[checks]]
name = "queue depth"
kind = "sql"
target = "signals_db"
query = "SELECT count(*) AS depth FROM queue_messages WHERE queue = $1"
params = ["{{queue}}"]
warn = "row.depth > 100"
crit = "row.depth > 500"
"#;

#[tokio::test]
async fn postgres_queue_depth_goes_ok_then_warn_then_crit_as_messages_arrive() {
    let Some(database) = common::postgres_database().await else {
        return;
    };
    database.execute("CREATE TABLE queue_messages (id bigserial PRIMARY KEY, queue text NOT NULL)").await;
    // Another queue is already deep: the bind parameter must keep its rows out of the count.
    database.execute("INSERT INTO queue_messages (queue) SELECT 'trade_execution' FROM generate_series(1, 1000)").await;
    let enqueue = |count: u32| {
        format!("INSERT INTO queue_messages (queue) SELECT 'ingest_indicators' FROM generate_series(1, {count})")
    };
    let engine = Engine::new(&[("signals_db", TargetKind::Postgres, &database.url)]);
    let runbook = engine.load(QUEUE_RUNBOOK);

    database.execute(&enqueue(50)).await;
    let run = engine.run_one(&runbook, &[]).await;
    assert_eq!(verdict(&run), (Status::Ok, "1 row: depth=50"));
    assert_eq!(run.data["row"], json!({"depth": 50}));
    assert_eq!(run.data["rows"], json!([{"depth": 50}]));
    assert_eq!(run.data["count"], json!(1));

    database.execute(&enqueue(100)).await;
    let run = engine.run_one(&runbook, &[("queue", "ingest_indicators")]).await;
    assert_eq!(verdict(&run), (Status::Warn, "1 row: depth=150 (warn: row.depth > 100)"));

    database.execute(&enqueue(400)).await;
    let run = engine.run_one(&runbook, &[("queue", "ingest_indicators")]).await;
    assert_eq!(verdict(&run), (Status::Crit, "1 row: depth=550 (crit: row.depth > 500)"));
    assert_eq!(run.kind, "sql");

    // The same runbook, pointed at the other queue by its argument.
    let run = engine.run_one(&runbook, &[("queue", "trade_execution")]).await;
    assert_eq!(verdict(&run), (Status::Crit, "1 row: depth=1000 (crit: row.depth > 500)"));
}

const CONNECTIONS_RUNBOOK: &str = r#"
name = "db"
summary = "Database connections"

[[checks]]
name = "connections by state"
kind = "sql"
target = "signals_db"
query = """
SELECT state, count(*) AS connections
FROM pg_stat_activity
WHERE datname = current_database() AND backend_type = 'client backend' AND state IS NOT NULL
GROUP BY state
ORDER BY state"""
expect = "rows.exists(r, r.state == 'active')"
warn = "rows.exists(r, r.state == 'idle in transaction')"
"#;

#[tokio::test]
async fn postgres_pg_stat_activity_by_state_flags_an_idle_transaction() {
    let Some(database) = common::postgres_database().await else {
        return;
    };
    let engine = Engine::new(&[("signals_db", TargetKind::Postgres, &database.url)]);
    let runbook = engine.load(CONNECTIONS_RUNBOOK);

    // A session that opened a transaction and went quiet: what the seed runbooks hunt for.
    let mut stuck = sqlx::PgConnection::connect(&database.url).await.expect("a second session connects");
    sqlx::query("BEGIN").execute(&mut stuck).await.unwrap();
    sqlx::query("SELECT 1").execute(&mut stuck).await.unwrap();

    let run = engine.run_one(&runbook, &[]).await;
    assert_eq!(run.status, Status::Warn, "{}", run.summary);
    let rows = run.data["rows"].as_array().expect("rows is a list");
    // The check's own session is the active one; connection counts are numbers.
    assert!(rows.contains(&json!({"state": "active", "connections": 1})), "{rows:?}");
    assert!(rows.contains(&json!({"state": "idle in transaction", "connections": 1})), "{rows:?}");
    assert_eq!(run.data["count"], json!(rows.len()));
    assert!(run.summary.starts_with(&format!("{} rows; first: ", rows.len())), "{}", run.summary);
    assert!(run.summary.contains("state=active"), "{}", run.summary);
    assert!(run.summary.ends_with("(warn: rows.exists(r, r.state == 'idle in transaction'))"), "{}", run.summary);

    sqlx::query("ROLLBACK").execute(&mut stuck).await.unwrap();
    let run = engine.run_one(&runbook, &[]).await;
    assert_eq!(run.status, Status::Ok, "{}", run.summary);
    // The rolled-back session is idle now (the engine's pool may hold idle sessions of its own).
    let idle = run.data["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["state"] == "idle")
        .map(|row| row["connections"].as_i64().unwrap());
    assert!(idle >= Some(1), "{:?}", run.data);
    assert!(
        !run.data["rows"].as_array().unwrap().iter().any(|row| row["state"] == "idle in transaction"),
        "{:?}",
        run.data
    );
    stuck.close().await.unwrap();
}

#[tokio::test]
async fn postgres_query_error_is_an_error_with_the_database_message() {
    let Some(database) = common::postgres_database().await else {
        return;
    };
    let engine = Engine::new(&[("signals_db", TargetKind::Postgres, &database.url)]);
    let runbook = engine.load(&QUEUE_RUNBOOK.replace("FROM queue_messages", "FROM no_such_table"));
    let run = engine.run_one(&runbook, &[]).await;
    assert_eq!(
        verdict(&run),
        (Status::Error, r#"query on 'signals_db' failed: relation "no_such_table" does not exist"#)
    );
}

#[tokio::test]
async fn postgres_checks_run_in_a_read_only_transaction() {
    let Some(database) = common::postgres_database().await else {
        return;
    };
    database.execute("CREATE TABLE queue_messages (id bigserial PRIMARY KEY, queue text NOT NULL)").await;
    let engine = Engine::new(&[("signals_db", TargetKind::Postgres, &database.url)]);
    let runbook = engine.load(&QUEUE_RUNBOOK.replace(
        "SELECT count(*) AS depth FROM queue_messages WHERE queue = $1",
        "WITH added AS (INSERT INTO queue_messages (queue) VALUES ($1) RETURNING id) SELECT count(*) FROM added",
    ));
    // A plain INSERT is refused at load now; a writable CTE passes the load and the database refuses it.
    let run = engine.run_one(&runbook, &[]).await;
    assert_eq!(
        verdict(&run),
        (Status::Error, "query on 'signals_db' failed: cannot execute SELECT in a read-only transaction")
    );
    assert_eq!(database.count("SELECT count(*) FROM queue_messages").await, 0, "nothing was written");
}

// ---------------------------------------------------------------------------------------------
// MariaDB

const JOBS_RUNBOOK: &str = r#"
name = "jobs"
summary = "Pending background jobs"

[args.queue]
pattern = '^[a-z_]{1,32}$'
default = "mail"
help = "job queue"

[[checks]]
name = "pending jobs"
kind = "sql"
target = "jobs_db"
query = "SELECT COUNT(*) AS pending, MIN(queue) AS queue FROM jobs WHERE queue = ? AND done = 0"
params = ["{{queue}}"]
warn = "row.pending >= 3"
"#;

#[tokio::test]
async fn mariadb_query_with_a_bind_parameter_crosses_its_threshold() {
    let Some(database) = common::mysql_database().await else {
        return;
    };
    database
        .execute(
            "CREATE TABLE jobs (id INT AUTO_INCREMENT PRIMARY KEY, queue VARCHAR(32) NOT NULL, done TINYINT NOT NULL)",
        )
        .await;
    database.execute("INSERT INTO jobs (queue, done) VALUES ('mail', 0), ('mail', 0), ('mail', 1), ('billing', 0), ('billing', 0), ('billing', 0)").await;
    let engine = Engine::new(&[("jobs_db", TargetKind::Mysql, &database.url)]);
    let runbook = engine.load(JOBS_RUNBOOK);

    let run = engine.run_one(&runbook, &[("queue", "mail")]).await;
    assert_eq!(verdict(&run), (Status::Ok, "1 row: pending=2, queue=mail"));
    assert_eq!(run.data["row"], json!({"pending": 2, "queue": "mail"}));

    database.execute("INSERT INTO jobs (queue, done) VALUES ('mail', 0)").await;
    let run = engine.run_one(&runbook, &[("queue", "mail")]).await;
    assert_eq!(verdict(&run), (Status::Warn, "1 row: pending=3, queue=mail (warn: row.pending >= 3)"));

    let run = engine.run_one(&runbook, &[("queue", "billing")]).await;
    assert_eq!(verdict(&run), (Status::Warn, "1 row: pending=3, queue=billing (warn: row.pending >= 3)"));

    // Checks only read here too.
    // A write is refused at load (tests/check_readonly.rs covers what the session refuses at run).
    let errors = engine
        .try_load(&JOBS_RUNBOOK.replace(
            "SELECT COUNT(*) AS pending, MIN(queue) AS queue FROM jobs WHERE queue = ? AND done = 0",
            "INSERT INTO jobs (queue, done) VALUES (?, 0)",
        ))
        .expect_err("a write is refused");
    assert!(errors[0].contains("query starts with INSERT, which is not a read"), "{errors:?}");
    assert_eq!(database.count("SELECT COUNT(*) FROM jobs").await, 7, "nothing was written");
}

// ---------------------------------------------------------------------------------------------
// SQLite

#[tokio::test]
async fn sqlite_values_come_back_as_numbers_and_strings() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signals.db");
    let options = sqlx::sqlite::SqliteConnectOptions::new().filename(&path).create_if_missing(true);
    let mut setup = sqlx::SqliteConnection::connect_with(&options).await.expect("the SQLite file is created");
    sqlx::query("CREATE TABLE signals (source TEXT NOT NULL, code TEXT NOT NULL, age_seconds INTEGER NOT NULL, score REAL NOT NULL)")
        .execute(&mut setup)
        .await
        .unwrap();
    sqlx::query("INSERT INTO signals VALUES ('binance', '007', 420, 0.25), ('kraken', '042', 30, 0.75)")
        .execute(&mut setup)
        .await
        .unwrap();
    setup.close().await.unwrap();

    let url = format!("sqlite://{}", path.display());
    let engine = Engine::new(&[("signals", TargetKind::Sqlite, &url)]);
    let runbook = engine.load(
        r#"
name = "freshness"
summary = "Age of the latest signal per source"

[args.source]
pattern = '^[a-z]{1,16}$'
help = "signal source"

[[checks]]
name = "latest signal"
kind = "sql"
target = "signals"
query = "SELECT code, age_seconds, score FROM signals WHERE source = ?1"
params = ["{{source}}"]
expect = "row.score >= 0.0 && row.code.startsWith('0')"
warn = "row.age_seconds > 300"
crit = "row.age_seconds > 3600"
"#,
    );

    let run = engine.run_one(&runbook, &[("source", "binance")]).await;
    assert_eq!(run.status, Status::Warn, "{}", run.summary);
    // '007' stays the text it is; integers and reals become numbers the expressions compare.
    assert_eq!(run.data["row"], json!({"code": "007", "age_seconds": 420, "score": 0.25}));
    assert!(run.summary.ends_with("(warn: row.age_seconds > 300)"), "{}", run.summary);

    let run = engine.run_one(&runbook, &[("source", "kraken")]).await;
    assert_eq!(run.status, Status::Ok, "{}", run.summary);
    assert_eq!(run.data["row"], json!({"code": "042", "age_seconds": 30, "score": 0.75}));

    let run = engine.run_one(&runbook, &[("source", "bitstamp")]).await;
    assert_eq!(run.data["count"], json!(0));
    assert_eq!(run.status, Status::Error, "no row: the expression cannot read row.score: {}", run.summary);

    // Writes are refused at load (and the file is opened read-only besides).
    let errors = engine.try_load(
        r#"
name = "writer"
summary = "Tries to write"

[[checks]]
name = "insert"
kind = "sql"
target = "signals"
query = "INSERT INTO signals VALUES ('x', 'y', 1, 1.0)"
"#,
    );
    let errors = errors.expect_err("a write is refused");
    assert!(errors[0].contains("query starts with INSERT, which is not a read"), "{errors:?}");
}

// ---------------------------------------------------------------------------------------------
// Redis

#[tokio::test]
async fn redis_llen_crosses_warn_then_crit() {
    let Some(redis) = common::redis_prefix().await else {
        return;
    };
    let key = redis.key("trade_execution_queue");
    let engine = Engine::new(&[("jobs", TargetKind::Redis, &redis.url)]);
    let runbook = engine.load(
        r#"
name = "trades"
summary = "Trade execution backlog"

[args.queue]
pattern = '^[a-z0-9_:]{1,80}$'
help = "Redis list holding the queue"

[[checks]]
name = "trade queue"
kind = "redis"
target = "jobs"
command = ["LLEN", "{{queue}}"]
warn = "value > 5"
crit = "value > 10"
"#,
    );
    let args = [("queue", key.as_str())];

    redis.command(&["RPUSH", &key, "t1", "t2", "t3"]).await;
    let run = engine.run_one(&runbook, &args).await;
    assert_eq!(verdict(&run), (Status::Ok, format!("LLEN {key} = 3").as_str()));
    assert_eq!(run.data["value"], json!(3));

    redis.command(&["RPUSH", &key, "t4", "t5", "t6"]).await;
    let run = engine.run_one(&runbook, &args).await;
    assert_eq!(verdict(&run), (Status::Warn, format!("LLEN {key} = 6 (warn: value > 5)").as_str()));

    redis.command(&["RPUSH", &key, "t7", "t8", "t9", "t10", "t11"]).await;
    let run = engine.run_one(&runbook, &args).await;
    assert_eq!(verdict(&run), (Status::Crit, format!("LLEN {key} = 11 (crit: value > 10)").as_str()));
}

#[tokio::test]
async fn redis_get_of_a_numeric_string_compares_as_a_number() {
    let Some(redis) = common::redis_prefix().await else {
        return;
    };
    let price = redis.key("last_price");
    let label = redis.key("mode");
    redis.command(&["SET", &price, "42"]).await;
    redis.command(&["SET", &label, "maintenance"]).await;
    let engine = Engine::new(&[("cache", TargetKind::Redis, &redis.url)]);
    let text = format!(
        r#"
name = "cache"
summary = "Cached values"

[[checks]]
name = "last price"
kind = "redis"
target = "cache"
command = ["GET", {price}]
expect = "value == 42"
warn = "value > 40"

[[checks]]
name = "mode"
kind = "redis"
target = "cache"
command = ["GET", {label}]
expect = "value == 'normal'"
"#,
        price = toml_str(&price),
        label = toml_str(&label),
    );
    let results = engine.results(&engine.load(&text), &[]).await;
    let run = &results["last price"];
    assert_eq!(verdict(run), (Status::Warn, format!("GET {price} = 42 (warn: value > 40)").as_str()));
    assert_eq!(run.data["value"], json!(42));
    let run = &results["mode"];
    assert_eq!(
        verdict(run),
        (Status::Crit, format!("GET {label} = maintenance (expected value == 'normal')").as_str())
    );
    assert_eq!(run.data["value"], json!("maintenance"));
}

#[tokio::test]
async fn redis_write_commands_are_refused_when_the_runbook_loads() {
    // No Redis needed: the runbook is refused before anything connects.
    let engine = Engine::new(&[("jobs", TargetKind::Redis, "redis://127.0.0.1:6379")]);
    let text = r#"name = "trades"
summary = "Trade execution backlog"

[[checks]]
name = "trade queue"
kind = "redis"
target = "jobs"
command = ["LLEN", "trade_execution_queue"]

[[checks]]
name = "drain"
kind = "redis"
target = "jobs"
command = ["DEL", "trade_execution_queue"]
"#;
    let errors = engine.try_load(text).expect_err("a check that writes must not load");
    let line = line_of(text, r#"command = ["DEL""#);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(&format!(
            "commands/trades.toml:{line}: check 'drain': command: DEL is not a read-only Redis command"
        )),
        "{errors:?}"
    );
    // The same command is fine where writes belong: in a remediation.
    let remediation = text.replace(
        "[[checks]]\nname = \"drain\"\nkind = \"redis\"",
        "[[remediations]]\nname = \"drain\"\nsummary = \"Empty the queue\"\napprovers = [\"oncall\"]\nkind = \"redis\"",
    );
    assert!(engine.try_load(&remediation).is_ok(), "{:?}", engine.try_load(&remediation).err());
}

// ---------------------------------------------------------------------------------------------
// HTTP

/// A real HTTP server on a free loopback port: `/health` (JSON), `/broken` (500), `/slow`
/// (answers after 30 s), and anything else echoes the path exactly as the request wrote it.
async fn spawn_http_server() -> SocketAddr {
    use axum::http::{StatusCode, Uri};
    use axum::routing::get;

    let app = axum::Router::new()
        .route("/health", get(|| async { axum::Json(json!({"status": "ok", "version": "1.4.2"})) }))
        .route("/broken", get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "database unavailable\nretry later") }))
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(30)).await;
                "too late"
            }),
        )
        .fallback(|uri: Uri| async move { format!("seen {}", uri.path()) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a free port");
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// Runs one HTTP check, written as its `[[checks]]` table and named `health`.
async fn run_http_check(check: &str, args: &[(&str, &str)]) -> firebell::runbook::CheckRun {
    let mut text = "name = \"api\"\nsummary = \"API health\"\n".to_string();
    if check.contains("{{item}}") {
        text.push_str("[args.item]\npattern = '^[a-z /]{1,32}$'\nhelp = \"item name\"\n");
    }
    text.push_str(check);
    let engine = Engine::new(&[]);
    let run = engine.run_one(&engine.load(&text), args).await;
    assert_eq!(run.name, "health");
    run
}

#[tokio::test]
async fn http_json_field_expectation_and_latency() {
    let address = spawn_http_server().await;
    let check = format!(
        r#"[[checks]]
name = "health"
kind = "http"
url = "http://{address}/health"
expect = "status == 200 && json.status == 'ok'"
"#
    );
    let run = run_http_check(&check, &[]).await;
    assert_eq!(run.status, Status::Ok, "{}", run.summary);
    assert!(run.summary.starts_with("200 OK in ") && run.summary.ends_with(" ms"), "{}", run.summary);
    assert_eq!(run.data["status"], json!(200));
    assert_eq!(run.data["json"], json!({"status": "ok", "version": "1.4.2"}));
    assert!(run.data["latency_ms"].is_u64(), "latency_ms is a whole number of milliseconds: {:?}", run.data);

    // The same expectation against a different field value fails, and says which.
    let failing = check.replace("json.status == 'ok'", "json.version == '2.0.0'");
    let run = run_http_check(&failing, &[]).await;
    assert_eq!(run.status, Status::Crit, "{}", run.summary);
    assert!(run.summary.ends_with(" ms (expected status == 200 && json.version == '2.0.0')"), "{}", run.summary);
}

#[tokio::test]
async fn http_500_is_crit_by_default_and_shows_the_body() {
    let address = spawn_http_server().await;
    let check = format!("[[checks]]\nname = \"health\"\nkind = \"http\"\nurl = \"http://{address}/broken\"\n");
    let run = run_http_check(&check, &[]).await;
    assert_eq!(run.status, Status::Crit, "{}", run.summary);
    assert!(run.summary.starts_with("500 Internal Server Error in "), "{}", run.summary);
    assert!(run.summary.ends_with(" ms: database unavailable"), "{}", run.summary);
    assert_eq!(run.data["status"], json!(500));
    assert_eq!(run.data["body"], json!("database unavailable\nretry later"));
}

#[tokio::test]
async fn http_connection_refused_is_an_error() {
    // A port that was just free and has nobody listening on it now.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let check = format!("[[checks]]\nname = \"health\"\nkind = \"http\"\nurl = \"http://127.0.0.1:{port}/health\"\n");
    let run = run_http_check(&check, &[]).await;
    assert_eq!(run.status, Status::Error, "{}", run.summary);
    assert!(run.summary.starts_with(&format!("GET http://127.0.0.1:{port}/health: ")), "{}", run.summary);
    assert!(run.summary.to_lowercase().contains("connection refused"), "{}", run.summary);
}

#[tokio::test]
async fn http_slower_than_the_timeout_is_an_error() {
    let address = spawn_http_server().await;
    let check =
        format!("[[checks]]\nname = \"health\"\nkind = \"http\"\nurl = \"http://{address}/slow\"\ntimeout = \"1s\"\n");
    let run = run_http_check(&check, &[]).await;
    assert_eq!(verdict(&run), (Status::Error, "timed out after 1s"));
}

#[tokio::test]
async fn http_arguments_are_percent_encoded_into_the_path() {
    let address = spawn_http_server().await;
    let check = format!(
        r#"[[checks]]
name = "health"
kind = "http"
url = "http://{address}/items/{{{{item}}}}?q={{{{item}}}}"
"#
    );
    let run = run_http_check(&check, &[("item", "a b/c")]).await;
    assert_eq!(run.status, Status::Ok, "{}", run.summary);
    // The slash in the value stays inside one path segment; the server sees it encoded.
    assert_eq!(run.data["body"], json!("seen /items/a%20b%2Fc"));
    assert_eq!(run.data["url"], json!(format!("http://{address}/items/a%20b%2Fc?q=a%20b%2Fc")));
}

// ---------------------------------------------------------------------------------------------
// TLS

/// A private CA whose certificate is in a PEM file, for `ca_file`.
struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    pem_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

const DAY: i64 = 86_400;

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Sets a certificate's validity in seconds relative to now (rcgen takes `time` dates, which
/// are built here from the Unix epoch so this crate needs no `time` dependency of its own).
fn set_validity(params: &mut rcgen::CertificateParams, not_before: i64, not_after: i64) {
    let at = |unix: i64| rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(u64::try_from(unix).unwrap());
    params.not_before = at(not_before);
    params.not_after = at(not_after);
}

impl TestCa {
    fn new() -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, "firebell test CA");
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, unix_now() - 365 * DAY, unix_now() + 3650 * DAY);
        let issuer = rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pem_path = dir.path().join("ca.pem");
        std::fs::write(&pem_path, issuer.pem()).unwrap();
        TestCa { issuer, pem_path, _dir: dir }
    }

    /// Serves a `localhost` certificate valid between the given Unix times on a loopback port.
    async fn serve_leaf(&self, not_before: i64, not_after: i64) -> u16 {
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(rcgen::DnType::CommonName, "localhost");
        set_validity(&mut params, not_before, not_after);
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.signed_by(&key, &*self.issuer).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![certificate.der().clone()], key)
            .expect("the server accepts its certificate");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let _ = acceptor.accept(stream).await;
                });
            }
        });
        port
    }
}

async fn run_tls_check(port: u16, ca_file: Option<&Path>) -> firebell::runbook::CheckRun {
    let ca_line =
        ca_file.map(|path| format!("ca_file = {}", toml_str(&path.display().to_string()))).unwrap_or_default();
    let engine = Engine::new(&[]);
    let runbook = engine.load(&format!(
        r#"
name = "cert"
summary = "Certificate expiry"

[[checks]]
name = "api certificate"
kind = "tls"
host = "127.0.0.1"
port = {port}
server_name = "localhost"
{ca_line}
"#
    ));
    engine.run_one(&runbook, &[]).await
}

fn date_of(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).unwrap().format("%Y-%m-%d %H:%M UTC").to_string()
}

#[tokio::test]
async fn tls_certificate_valid_for_60_days_is_ok() {
    let ca = TestCa::new();
    let not_after = unix_now() + 60 * DAY + 3600;
    let port = ca.serve_leaf(unix_now() - DAY, not_after).await;
    let run = run_tls_check(port, Some(&ca.pem_path)).await;
    assert_eq!(
        verdict(&run),
        (
            Status::Ok,
            format!("certificate valid until {}, 60 days left; subject CN=localhost", date_of(not_after)).as_str()
        )
    );
    assert_eq!(run.data["days_left"], json!(60));
    assert_eq!(run.data["trusted"], json!(true));
    assert_eq!(run.data["issuer"], json!("CN=firebell test CA"));
    assert_eq!(run.data["not_after"], json!(chrono::DateTime::from_timestamp(not_after, 0).unwrap().to_rfc3339()));
}

#[tokio::test]
async fn tls_certificate_expiring_in_5_days_is_crit() {
    let ca = TestCa::new();
    let not_after = unix_now() + 5 * DAY + 3600;
    let port = ca.serve_leaf(unix_now() - 80 * DAY, not_after).await;
    let run = run_tls_check(port, Some(&ca.pem_path)).await;
    assert_eq!(
        verdict(&run),
        (
            Status::Crit,
            format!("certificate expires {}, 5 days left; subject CN=localhost", date_of(not_after)).as_str()
        )
    );
    assert_eq!(run.data["days_left"], json!(5));
}

#[tokio::test]
async fn tls_certificate_already_expired_is_crit_and_names_its_date() {
    let ca = TestCa::new();
    let not_after = unix_now() - 2 * DAY - 3600;
    let port = ca.serve_leaf(unix_now() - 90 * DAY, not_after).await;
    let run = run_tls_check(port, Some(&ca.pem_path)).await;
    // The handshake still happens and the dates are read: not just "handshake failed".
    assert_eq!(
        verdict(&run),
        (
            Status::Crit,
            format!("certificate EXPIRED on {} (2 days ago); subject CN=localhost", date_of(not_after)).as_str()
        )
    );
    assert!(run.data["days_left"].as_i64().unwrap() < 0, "{:?}", run.data);
    assert_eq!(run.data["trusted"], json!(true), "expired, but signed by the trusted CA");
}

#[tokio::test]
async fn tls_certificate_not_signed_by_a_trusted_ca_is_crit() {
    let ca = TestCa::new();
    let port = ca.serve_leaf(unix_now() - DAY, unix_now() + 60 * DAY + 3600).await;
    // Without ca_file only the public roots are trusted, and they did not sign this.
    let run = run_tls_check(port, None).await;
    assert_eq!(run.status, Status::Crit, "{}", run.summary);
    assert!(run.summary.starts_with("certificate valid until "), "{}", run.summary);
    assert!(run.summary.contains("60 days left; NOT TRUSTED: "), "{}", run.summary);
    assert_eq!(run.data["trusted"], json!(false));
    assert_eq!(run.data["days_left"], json!(60));
}

// ---------------------------------------------------------------------------------------------
// exec

fn exec_check(name: &str, script: &Path, extra: &str) -> String {
    format!(
        "[[checks]]\nname = \"{name}\"\nkind = \"exec\"\nargv = [{}]\n{extra}\n",
        toml_str(&script.display().to_string())
    )
}

#[tokio::test]
async fn exec_exit_codes_follow_the_monitoring_plugin_convention() {
    let dir = tempfile::tempdir().unwrap();
    let scripts = [
        ("exit 0", "echo 'all good'\nexit 0"),
        ("exit 1", "echo 'disk 85% full'\nexit 1"),
        ("exit 2", "echo 'disk 97% full'\nexit 2"),
        ("exit 3", "echo 'cannot read /proc/mounts' >&2\nexit 3"),
    ];
    let mut text = "name = \"host\"\nsummary = \"Host checks\"\n".to_string();
    for (name, body) in scripts {
        let script = write_script(dir.path(), &name.replace(' ', "_"), body);
        text.push_str(&exec_check(name, &script, ""));
    }
    let engine = Engine::new(&[]);
    let runbook = engine.load(&text);
    let events = engine.run(&runbook, &[]).await;
    let results: std::collections::BTreeMap<String, _> =
        finished(&events).into_iter().map(|run| (run.name.clone(), run)).collect();
    assert_eq!(verdict(&results["exit 0"]), (Status::Ok, "exit 0: all good"));
    assert_eq!(verdict(&results["exit 1"]), (Status::Warn, "exit 1: disk 85% full"));
    assert_eq!(verdict(&results["exit 2"]), (Status::Crit, "exit 2: disk 97% full"));
    assert_eq!(verdict(&results["exit 3"]), (Status::Error, "exit 3: cannot read /proc/mounts"));
    assert_eq!(results["exit 1"].data["exit_code"], json!(1));
    assert_eq!(results["exit 1"].data["stdout"], json!("disk 85% full\n"));
    assert_eq!(results["exit 3"].data["stderr"], json!("cannot read /proc/mounts\n"));
    let stderr_line = events.iter().any(|event| {
        matches!(event, CheckEvent::Line { check, stream: Stream::Stderr, line } if check == "exit 3" && line == "cannot read /proc/mounts")
    });
    assert!(stderr_line, "stderr is streamed as stderr lines: {events:?}");
}

#[tokio::test]
async fn exec_lines_stream_in_order_while_the_process_runs() {
    let dir = tempfile::tempdir().unwrap();
    let release = dir.path().join("release");
    // Line 2 can only be printed after the test saw line 1 and created the release file.
    let script = write_script(
        dir.path(),
        "two_lines",
        &format!("echo 'line 1'\nwhile [ ! -e '{}' ]; do sleep 0.02; done\necho 'line 2'", release.display()),
    );
    let engine = Engine::new(&[]);
    let runbook = engine.load(&format!(
        "name = \"stream\"\nsummary = \"Streaming\"\n{}",
        exec_check("worker", &script, "timeout = \"20s\"")
    ));
    let mut events = engine.start(&runbook, &[]);

    match events.recv().await {
        Some(CheckEvent::Line { check, stream, line }) => {
            assert_eq!((check.as_str(), stream, line.as_str()), ("worker", Stream::Stdout, "line 1"));
        }
        other => panic!("the first line must arrive while the process still runs, got {other:?}"),
    }
    std::fs::write(&release, "").unwrap();
    let mut rest = Vec::new();
    while let Some(event) = events.recv().await {
        rest.push(event);
    }
    match rest.as_slice() {
        [CheckEvent::Line { line, .. }, CheckEvent::Finished(run)] => {
            assert_eq!(line, "line 2");
            assert_eq!(verdict(run), (Status::Ok, "exit 0: line 1"));
            assert_eq!(run.data["stdout"], json!("line 1\nline 2\n"));
        }
        other => panic!("expected line 2 then the result, got {other:?}"),
    }
}

#[tokio::test]
async fn exec_timeout_kills_the_process_and_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let script_pid = dir.path().join("script.pid");
    let child_pid = dir.path().join("child.pid");
    let script = write_script(
        dir.path(),
        "hang",
        &format!(
            "echo $$ > '{}'\nsleep 60 &\necho $! > '{}'\necho 'started'\nwait",
            script_pid.display(),
            child_pid.display()
        ),
    );
    let engine = Engine::new(&[]);
    let runbook = engine
        .load(&format!("name = \"hang\"\nsummary = \"Hangs\"\n{}", exec_check("hang", &script, "timeout = \"1s\"")));
    let events = engine.run(&runbook, &[]).await;
    let run = finished(&events).remove(0);
    assert_eq!(verdict(&run), (Status::Error, "timed out after 1s"));
    let script_pid = common::read_pid(&script_pid).await;
    let child_pid = common::read_pid(&child_pid).await;
    assert!(common::wait_until_gone(script_pid).await, "the script (pid {script_pid}) still runs after the timeout");
    assert!(common::wait_until_gone(child_pid).await, "its child sleep (pid {child_pid}) still runs after the timeout");
}

#[tokio::test]
async fn exec_output_that_is_not_utf8_keeps_streaming() {
    let dir = tempfile::tempdir().unwrap();
    // \351 is a lone Latin-1 byte: not UTF-8. The lines after it must still arrive.
    let script = write_script(dir.path(), "latin1", "printf 'caf\\351\\n'\necho 'after'\nprintf 'no newline'");
    let engine = Engine::new(&[]);
    let runbook = engine.load(&format!("name = \"bytes\"\nsummary = \"Bytes\"\n{}", exec_check("latin1", &script, "")));
    let events = engine.run(&runbook, &[]).await;
    let lines: Vec<&str> = events
        .iter()
        .filter_map(|event| match event {
            CheckEvent::Line { line, .. } => Some(line.as_str()),
            CheckEvent::Finished(_) => None,
        })
        .collect();
    assert_eq!(lines, ["caf\u{FFFD}", "after", "no newline"]);
    let run = finished(&events).remove(0);
    assert_eq!(verdict(&run), (Status::Ok, "exit 0: caf\u{FFFD}"));
    assert_eq!(run.data["stdout"], json!("caf\u{FFFD}\nafter\nno newline"));
}

/// The 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let offset = text.find(needle).unwrap_or_else(|| panic!("{needle} is not in the text"));
    text[..offset].matches('\n').count() + 1
}

// ---------------------------------------------------------------------------------------------
// TCP, Prometheus, and HTTP targets with headers and a body

#[tokio::test]
async fn tcp_connects_or_reports_the_refusal() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open_port = listener.local_addr().unwrap().port();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let text = format!(
        "name = \"ports\"\nsummary = \"Ports\"\n[[checks]]\nname = \"open\"\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = {open_port}\nwarn = \"latency_ms > 60000\"\n\
         [[checks]]\nname = \"closed\"\nkind = \"tcp\"\nhost = \"127.0.0.1\"\nport = {closed_port}\n"
    );
    let engine = Engine::new(&[]);
    let runs = finished(&engine.run(&engine.load(&text), &[]).await);
    let open = runs.iter().find(|run| run.name == "open").unwrap();
    assert_eq!(open.status, Status::Ok, "{}", open.summary);
    assert!(open.summary.starts_with(&format!("connected to 127.0.0.1:{open_port} in ")), "{}", open.summary);
    assert!(open.data["latency_ms"].is_u64());
    let closed = runs.iter().find(|run| run.name == "closed").unwrap();
    assert_eq!(closed.status, Status::Error, "{}", closed.summary);
    assert!(closed.summary.starts_with(&format!("cannot connect to 127.0.0.1:{closed_port}: ")), "{}", closed.summary);
    assert!(closed.summary.to_lowercase().contains("refused"), "{}", closed.summary);
}

/// A Prometheus stand-in answering `/api/v1/query` the way Prometheus does; it returns one
/// series per `job` label value it finds in the query, and remembers the last query.
async fn spawn_prometheus() -> (SocketAddr, Arc<std::sync::Mutex<String>>) {
    use axum::extract::{Query, State};
    use axum::routing::get;
    type Seen = Arc<std::sync::Mutex<String>>;
    let seen: Seen = Arc::default();
    let app = axum::Router::new()
        .route(
            "/api/v1/query",
            get(
                |State(seen): State<Seen>, Query(params): Query<std::collections::HashMap<String, String>>| async move {
                    let query = params.get("query").cloned().unwrap_or_default();
                    *seen.lock().unwrap() = query.clone();
                    if query.contains("[5m]") && !query.contains("rate(") {
                        return axum::Json(
                            json!({"status": "success", "data": {"resultType": "matrix", "result": []}}),
                        );
                    }
                    if query.starts_with("bad") {
                        return axum::Json(
                            json!({"status": "error", "errorType": "bad_data", "error": "parse error at char 4"}),
                        );
                    }
                    axum::Json(json!({"status": "success", "data": {"resultType": "vector", "result": [
                        {"metric": {"job": "api", "instance": "a:9100"}, "value": [1700000000.1, "0.25"]},
                        {"metric": {"job": "api", "instance": "b:9100"}, "value": [1700000000.1, "0.75"]}
                    ]}}))
                },
            ),
        )
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, seen)
}

#[tokio::test]
async fn prometheus_instant_query_gives_value_and_series_and_escapes_arguments() {
    let (address, seen) = spawn_prometheus().await;
    let text = r#"
name = "errors"
summary = "Error ratio"
[args.job]
pattern = '^[a-z"\\]{1,16}$'
default = "api"
help = "job label"
[[checks]]
name = "error ratio"
kind = "prometheus"
target = "metrics"
query = 'sum by (instance) (rate(errors_total{job="{{job}}"}[5m]))'
warn = "value > 0.2"
crit = "series.exists(s, s.value > 0.9)"
"#;
    let engine = Engine::new(&[("metrics", TargetKind::Prometheus, &format!("http://{address}"))]);
    let runbook = engine.load(text);
    let run = engine.run_one(&runbook, &[]).await;
    assert_eq!(run.status, Status::Warn, "{}", run.summary);
    assert_eq!(run.data["value"], json!(0.25));
    assert_eq!(run.data["series"].as_array().unwrap().len(), 2);
    assert!(run.summary.starts_with("2 series; first {job=api,instance=a:9100} = 0.25"), "{}", run.summary);
    assert_eq!(*seen.lock().unwrap(), r#"sum by (instance) (rate(errors_total{job="api"}[5m]))"#);

    // A quote in the argument cannot end the label value: it arrives escaped.
    let run = engine.run_one(&runbook, &[("job", "a\"b")]).await;
    assert_eq!(run.status, Status::Warn, "{}", run.summary);
    assert_eq!(*seen.lock().unwrap(), r#"sum by (instance) (rate(errors_total{job="a\"b"}[5m]))"#);

    // Outside a quoted label value an argument is refused when the file loads.
    let unquoted = text.replace(r#"job="{{job}}""#, "job={{job}}");
    let errors = engine.try_load(&unquoted).unwrap_err();
    assert!(errors[0].contains("an argument may only fill in a double-quoted string"), "{errors:?}");
    // Nor in the strings and comments where PromQL reads no escapes or no string at all: a quote
    // in them cannot make the argument look quoted.
    for (query, reason) in [
        (r#"up{job='{{job}}'}"#, "may not go in a '…' string"),
        ("up{job=`{{job}}`}", "may not go in a `…` string"),
        ("up{job=\"api\"} # \"{{job}}\"", "may not go in a # comment"),
        ("up{job=`\"`} + up{job=\"x\"} or {{job}}", "outside any string"),
    ] {
        let line = format!("query = '''{query}'''");
        let errors = engine
            .try_load(&text.replace(r#"query = 'sum by (instance) (rate(errors_total{job="{{job}}"}[5m]))'"#, &line))
            .unwrap_err();
        assert!(errors[0].contains(reason) && errors[0].contains("e.g. up{job=\"{{job}}\"}"), "{query}: {errors:?}");
    }

    // In a regex matcher the argument matches itself only: its metacharacters arrive escaped.
    let regex = engine.load(
        &text
            .replace(r#"job="{{job}}""#, r#"job=~"{{job}}|api""#)
            .replace(r#"'^[a-z"\\]{1,16}$'"#, "'^[a-z.*]{1,16}$'"),
    );
    engine.run_one(&regex, &[("job", ".*")]).await;
    assert_eq!(*seen.lock().unwrap(), r#"sum by (instance) (rate(errors_total{job=~"\\.\\*|api"}[5m]))"#);

    // Prometheus refusing the query is an error with its reason.
    let bad = "name = \"errors\"\nsummary = \"x\"\n[[checks]]\nname = \"bad\"\nkind = \"prometheus\"\ntarget = \"metrics\"\nquery = \"bad{\"\n";
    let run = engine.run_one(&engine.load(bad), &[]).await;
    assert_eq!(verdict(&run), (Status::Error, "Prometheus 'metrics' refused the query: parse error at char 4"));
}

#[tokio::test]
async fn http_target_sends_its_headers_and_the_body_with_the_method() {
    use axum::http::HeaderMap;
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/rpc",
        post(|headers: HeaderMap, body: String| async move {
            let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
            axum::Json(json!({"auth": auth, "echo": body}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut headers = std::collections::BTreeMap::new();
    headers.insert("Authorization".to_string(), firebell::config::Secret::new("Bearer s3cr3t-t0ken-value"));
    let targets = std::collections::BTreeMap::from([(
        "rpc".to_string(),
        firebell::check::TargetInfo {
            kind: TargetKind::Http,
            url: firebell::config::Secret::new(&format!("http://{address}")),
            headers,
        },
    )]);
    let runner = firebell::runbook::Runner::new(
        Arc::new(firebell::check::Targets::new(targets)),
        firebell::redact::Redactor::new(["Bearer s3cr3t-t0ken-value".to_string()]),
        4,
    );
    let text = r#"
name = "rpc"
summary = "JSON-RPC"
[args.block]
pattern = '^[a-z]{1,10}$'
default = "latest"
help = "block tag"
[[checks]]
name = "block number"
kind = "http"
target = "rpc"
path = "/rpc"
method = "post"
headers = { Content-Type = "application/json" }
body = '{"jsonrpc":"2.0","method":"eth_getBlockByNumber","params":["{{block}}",false],"id":1}'
expect = "status == 200 && json.echo.contains('\"latest\"')"
"#;
    let (catalogue, errors) = firebell::runbook::Catalogue::load(
        &[firebell::source::SourceFile::new("commands/rpc.toml", text)],
        &firebell::runbook::TargetRefs::Known(std::collections::BTreeMap::from([(
            "rpc".to_string(),
            TargetKind::Http,
        )])),
    );
    assert!(errors.is_empty(), "{errors:?}");
    let runbook = catalogue.get("rpc").unwrap();
    let args = runbook.bind_args(&[]).unwrap();
    let mut events = runner.run(runbook, args);
    let mut run = None;
    while let Some(event) = events.recv().await {
        if let CheckEvent::Finished(finished) = event {
            run = Some(finished);
        }
    }
    let run = run.unwrap();
    assert_eq!(run.status, Status::Ok, "{}", run.summary);
    // The target's secret header reached the server but is masked in what the user sees.
    assert_eq!(run.data["json"]["auth"], json!("***"));
    assert!(!json!(run.data).to_string().contains("s3cr3t"), "{:?}", run.data);
}

/// A server that echoes each request's path (as sent) and body, so a test sees exactly what
/// went out.
async fn spawn_echo() -> SocketAddr {
    use axum::http::Uri;
    let app = axum::Router::new().fallback(|uri: Uri, body: String| async move {
        axum::Json(json!({"path": uri.path(), "query": uri.query(), "body": body}))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

#[tokio::test]
async fn arguments_are_encoded_for_json_and_form_bodies_and_cannot_climb_a_url() {
    let address = spawn_echo().await;
    let runbook = |extra: &str| {
        format!(
            r#"name = "api"
summary = "The API"
[args.name]
pattern = '^[a-z0-9 ."%&=,:\\]{{1,32}}$'
help = "a name"
[[checks]]
name = "health"
kind = "http"
method = "POST"
url = "http://{address}/items/{{{{name}}}}"
{extra}
"#
        )
    };
    let engine = Engine::new(&[]);
    let hostile = r#"x", "admin": "true"#;

    // A body that is JSON (here without a Content-Type): the quote stays inside the string.
    let json_body = engine.load(&runbook(r#"body = '{"user": "{{name}}"}'"#));
    let run = engine.run_one(&json_body, &[("name", hostile)]).await;
    let sent: serde_json::Value = serde_json::from_str(run.data["json"]["body"].as_str().unwrap()).unwrap();
    assert_eq!(sent, json!({"user": hostile}), "one field, holding the whole value");

    // Declared as JSON, a body that is not JSON yet still gets JSON escapes.
    let declared = engine
        .load(&runbook("headers = { Content-Type = \"application/json; charset=utf-8\" }\nbody = 'user={{name}}'"));
    let run = engine.run_one(&declared, &[("name", "a\"b")]).await;
    assert_eq!(run.data["json"]["body"], json!("user=a\\\"b"));

    // A form body: percent-encoded, so `&` cannot add a field.
    let form = engine.load(&runbook(
        "headers = { Content-Type = \"application/x-www-form-urlencoded\" }\nbody = 'user={{name}}&role=viewer'",
    ));
    let run = engine.run_one(&form, &[("name", "x&role=admin")]).await;
    assert_eq!(run.data["json"]["body"], json!("user=x%26role%3Dadmin&role=viewer"));
    let fields: Vec<(String, String)> =
        url::form_urlencoded::parse(run.data["json"]["body"].as_str().unwrap().as_bytes()).into_owned().collect();
    assert_eq!(fields, [("user".to_string(), "x&role=admin".to_string()), ("role".to_string(), "viewer".to_string())]);

    // Any other body takes the value as is.
    let text = engine.load(&runbook("headers = { Content-Type = \"text/plain\" }\nbody = 'hello {{name}}'"));
    assert_eq!(engine.run_one(&text, &[("name", "a\"b")]).await.data["json"]["body"], json!("hello a\"b"));

    // In the URL a value of `.` or `..` would climb to another path: refused when it binds.
    for value in ["..", ".", "%2e%2e", "%2E."] {
        let error = json_body.bind_args(&[("name".to_string(), value.to_string())]).unwrap_err().to_string();
        assert!(
            error.starts_with(&format!("argument name='{value}' is refused: it goes into a URL, where '.' and '..'")),
            "{value}: {error}"
        );
    }
    // Dots inside a longer value are an ordinary, encoded path segment.
    let run = engine.run_one(&json_body, &[("name", "v1.2")]).await;
    assert_eq!(run.data["json"]["path"], json!("/items/v1%2E2"));
}

#[tokio::test]
async fn redis_replies_are_bounded_before_they_are_read() {
    let Some(redis) = common::redis_prefix().await else {
        return;
    };
    let list = redis.key("backlog");
    let hash = redis.key("workers");
    let set = redis.key("members");
    let big = redis.key("blob");
    let items: Vec<String> = (0..2_500).map(|n| format!("job{n}")).collect();
    for chunk in items.chunks(500) {
        let mut words = vec!["RPUSH", list.as_str()];
        words.extend(chunk.iter().map(String::as_str));
        redis.command(&words).await;
    }
    let mut fields = vec!["HSET".to_string(), hash.clone()];
    let mut members = vec!["SADD".to_string(), set.clone()];
    for n in 0..1_200 {
        fields.extend([format!("w{n}"), "up".to_string()]);
        members.push(format!("m{n}"));
    }
    redis.command(&fields.iter().map(String::as_str).collect::<Vec<_>>()).await;
    redis.command(&members.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let blob = "x".repeat(3 << 20);
    redis.command(&["SET", &big, &blob]).await;

    let engine = Engine::new(&[("cache", TargetKind::Redis, &redis.url)]);
    let check = |command: &str| {
        format!(
            "name = \"cache\"\nsummary = \"Cache\"\n[[checks]]\nname = \"read\"\nkind = \"redis\"\ntarget = \"cache\"\ncommand = {command}\n"
        )
    };
    let run = |command: String| {
        let engine = &engine;
        async move { engine.run_one(&engine.load(&check(&command)), &[]).await }
    };

    // The whole list asked for: the first 1000 come back, and the check says it was cut.
    let whole = run(format!("[\"LRANGE\", {}, \"0\", \"-1\"]", toml_str(&list))).await;
    assert_eq!(whole.status, Status::Ok, "{}", whole.summary);
    assert_eq!(whole.data["value"].as_array().map(Vec::len), Some(1_000));
    assert_eq!((whole.data["value"][0].clone(), whole.data["truncated"].clone()), (json!("job0"), json!(true)));
    // From the end, the same bound from where it starts.
    let tail = run(format!("[\"LRANGE\", {}, \"-1200\", \"-1\"]", toml_str(&list))).await;
    assert_eq!(tail.data["value"][0], json!("job1300"));
    assert_eq!(tail.data["value"].as_array().map(Vec::len), Some(1_000));
    // A small range is read as asked.
    let few = run(format!("[\"LRANGE\", {}, \"0\", \"2\"]", toml_str(&list))).await;
    assert_eq!(
        (few.data["value"].clone(), few.data["truncated"].clone()),
        (json!(["job0", "job1", "job2"]), json!(false))
    );

    // A 3 MiB value: only what the check shows is read, with the cut marked.
    let value = run(format!("[\"GET\", {}]", toml_str(&big))).await;
    assert_eq!(value.data["truncated"], json!(true));
    let text = value.data["value"].as_str().unwrap();
    assert!(text.len() < (1 << 20) + 100 && text.ends_with("… output cut at 1 MiB"), "{}", &text[text.len() - 40..]);

    // Whole hashes and sets past the bound are refused, saying what to run instead.
    let fields = run(format!("[\"HGETALL\", {}]", toml_str(&hash))).await;
    assert_eq!(
        verdict(&fields),
        (
            Status::Error,
            format!("HGETALL {hash} would read 1200 fields, more than the 1000 a check reads; use HLEN, HGET or HMGET instead").as_str()
        )
    );
    let set_members = run(format!("[\"SMEMBERS\", {}]", toml_str(&set))).await;
    assert!(set_members.summary.contains("would read 1200 members"), "{}", set_members.summary);
}
