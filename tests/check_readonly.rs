//! Checks cannot write, on every SQL backend, and a check's timeout ends its query on the server:
//! runbooks are loaded and run the way `firebell run` does, against this machine's PostgreSQL,
//! MariaDB and Redis and SQLite files, and what a user sees is asserted, with the data intact.

mod common;
mod support;

use std::time::{Duration, Instant};

use common::{Engine, verdict};
use firebell::check::Status;
use firebell::config::TargetKind;

fn runbook(target: &str, query: &str, timeout: &str) -> String {
    format!(
        "name = \"ro\"\nsummary = \"Tries to write\"\n\n[[checks]]\nname = \"probe\"\nkind = \"sql\"\ntarget = \"{target}\"\ntimeout = \"{timeout}\"\nquery = {}\n",
        common::toml_str(query)
    )
}

/// The load error of a runbook with one check of `query`.
fn load_error(engine: &Engine, target: &str, query: &str) -> String {
    let errors = engine.try_load(&runbook(target, query, "5s")).expect_err("the runbook is refused");
    assert_eq!(errors.len(), 1, "{errors:?}");
    errors[0].clone()
}

fn assert_refused_at_load(error: &str, starts: &str) {
    assert!(error.starts_with("commands/ro.toml:9: check 'probe': "), "file:line first: {error}");
    assert!(error.contains(starts), "says what is wrong ({starts}): {error}");
    assert!(error.contains("a check's query is one SELECT, WITH … SELECT, VALUES"), "says what is valid: {error}");
}

/// Polls `still_there` until it is false, for at most 20 s.
async fn gone_within_deadline<F, Fut>(mut still_there: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if !still_there().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn postgres_refuses_writes_at_load_and_at_run_and_the_data_stays() {
    let Some(database) = common::postgres_database().await else {
        return;
    };
    database.execute("CREATE TABLE victim (x int)").await;
    database.execute("INSERT INTO victim VALUES (1), (2)").await;
    database
        .execute("CREATE FUNCTION sneaky() RETURNS int LANGUAGE sql AS 'INSERT INTO victim VALUES (3) RETURNING 1'")
        .await;
    let engine = Engine::new(&[("db", TargetKind::Postgres, &database.url)]);

    assert_refused_at_load(
        &load_error(&engine, "db", "DROP TABLE victim"),
        "query starts with DROP, which is not a read",
    );
    assert_refused_at_load(&load_error(&engine, "db", "INSERT INTO victim VALUES (9)"), "query starts with INSERT");
    assert_refused_at_load(
        &load_error(&engine, "db", "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"),
        "query calls pg_terminate_backend(…)",
    );

    // What the load rule lets by, the read-only transaction refuses.
    for (query, refusal) in [
        (
            "WITH gone AS (DELETE FROM victim RETURNING x) SELECT count(*) FROM gone",
            "cannot execute SELECT in a read-only transaction",
        ),
        ("SELECT sneaky()", "cannot execute INSERT in a read-only transaction"),
    ] {
        let run = engine.run_one(&engine.load(&runbook("db", query, "5s")), &[]).await;
        assert_eq!(verdict(&run), (Status::Error, format!("query on 'db' failed: {refusal}").as_str()));
    }
    assert_eq!(database.count("SELECT count(*) FROM victim").await, 2, "the data is intact");
}

#[tokio::test]
async fn mariadb_refuses_ddl_at_load_and_writes_at_run_and_the_data_stays() {
    let Some(database) = common::mysql_database().await else {
        return;
    };
    database.execute("CREATE TABLE victim (x int)").await;
    database.execute("INSERT INTO victim VALUES (1), (2)").await;
    database
        .execute(
            "CREATE FUNCTION sneaky() RETURNS int MODIFIES SQL DATA BEGIN INSERT INTO victim VALUES (3); RETURN 1; END",
        )
        .await;
    let engine = Engine::new(&[("db", TargetKind::Mysql, &database.url)]);

    assert_refused_at_load(&load_error(&engine, "db", "DROP TABLE victim"), "query starts with DROP");
    assert_refused_at_load(&load_error(&engine, "db", "INSERT INTO victim VALUES (9)"), "query starts with INSERT");
    assert_refused_at_load(
        &load_error(&engine, "db", "SELECT x INTO OUTFILE '/tmp/firebell-outfile' FROM victim"),
        "INTO OUTFILE, which writes a file",
    );

    let run = engine.run_one(&engine.load(&runbook("db", "SELECT sneaky() AS written", "5s")), &[]).await;
    assert_eq!(
        verdict(&run),
        (Status::Error, "query on 'db' failed: Cannot execute statement in a READ ONLY transaction")
    );
    assert_eq!(database.count("SELECT COUNT(*) FROM victim").await, 2, "the data is intact");
}

#[tokio::test]
async fn sqlite_refuses_vacuum_into_and_writes_and_no_file_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("signals.db");
    let status = std::process::Command::new("sqlite3")
        .arg(&path)
        .arg("CREATE TABLE victim (x); INSERT INTO victim VALUES (1), (2);")
        .status();
    if !status.is_ok_and(|status| status.success()) {
        eprintln!("skipped: the sqlite3 program is not there to make the test file");
        return;
    }
    let url = format!("sqlite://{}", path.display());
    let engine = Engine::new(&[("db", TargetKind::Sqlite, &url)]);
    let copy = dir.path().join("copy.db");
    let vacuum = format!("VACUUM INTO '{}'", copy.display());
    assert_refused_at_load(&load_error(&engine, "db", &vacuum), "query starts with VACUUM");
    assert_refused_at_load(&load_error(&engine, "db", &format!("SELECT 1; {vacuum}")), "more than one statement");
    assert_refused_at_load(&load_error(&engine, "db", "DROP TABLE victim"), "query starts with DROP");
    assert_refused_at_load(&load_error(&engine, "db", "PRAGMA query_only = OFF"), "query starts with PRAGMA");

    assert_refused_at_load(
        &load_error(&engine, "db", "WITH x AS (SELECT 1) DELETE FROM victim"),
        "query is WITH … DELETE, which writes",
    );
    assert!(!copy.exists(), "VACUUM INTO wrote nothing");
    let run = engine.run_one(&engine.load(&runbook("db", "SELECT count(*) AS n FROM victim", "5s")), &[]).await;
    assert_eq!(verdict(&run), (Status::Ok, "1 row: n=2"), "the data is intact");
}

#[tokio::test]
async fn postgres_slow_query_is_gone_from_the_server_after_its_timeout() {
    let Some(database) = common::postgres_database().await else {
        return;
    };
    let engine = Engine::new(&[("db", TargetKind::Postgres, &database.url)]);
    let run = engine.run_one(&engine.load(&runbook("db", "SELECT pg_sleep(600)", "2s")), &[]).await;
    assert_eq!(run.status, Status::Error, "{}", run.summary);
    let sleeping = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND query = 'SELECT pg_sleep(600)' AND state = 'active'",
        database.name
    );
    assert!(gone_within_deadline(|| async { database.count(&sleeping).await > 0 }).await, "pg_sleep still runs");
}

#[tokio::test]
async fn mariadb_slow_query_is_gone_from_the_server_after_its_timeout() {
    let Some(database) = common::mysql_database().await else {
        return;
    };
    let engine = Engine::new(&[("db", TargetKind::Mysql, &database.url)]);
    let run = engine.run_one(&engine.load(&runbook("db", "SELECT SLEEP(600)", "2s")), &[]).await;
    assert_eq!(run.status, Status::Error, "{}", run.summary);
    let sleeping = format!(
        "SELECT COUNT(*) FROM information_schema.processlist WHERE db = '{}' AND info = 'SELECT SLEEP(600)'",
        database.name
    );
    assert!(gone_within_deadline(|| async { database.count(&sleeping).await > 0 }).await, "SLEEP still runs");
}

#[tokio::test]
async fn a_big_sql_result_is_cut_and_says_so() {
    let Some(database) = common::postgres_database().await else {
        return;
    };
    let engine = Engine::new(&[("db", TargetKind::Postgres, &database.url)]);
    let run = engine.run_one(&engine.load(&runbook("db", "SELECT generate_series(1, 5000000) AS n", "20s")), &[]).await;
    assert_eq!(
        verdict(&run),
        (Status::Ok, "1000 rows (cut: the query returned more; a check reads the first 1000); first: n=1")
    );
    assert_eq!(run.data["count"], serde_json::json!(1000));
    assert_eq!(run.data["truncated"], serde_json::json!(true));
}

#[tokio::test]
async fn redis_config_get_is_refused_at_load() {
    let engine = Engine::new(&[("cache", TargetKind::Redis, "redis://127.0.0.1:6379")]);
    let errors = engine
        .try_load("name = \"ro\"\nsummary = \"Reads secrets\"\n\n[[checks]]\nname = \"probe\"\nkind = \"redis\"\ntarget = \"cache\"\ncommand = [\"CONFIG\", \"GET\", \"*\"]\n")
        .expect_err("CONFIG GET is refused");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("commands/ro.toml:8: check 'probe': command: CONFIG is not a read-only Redis command (CONFIG GET answers secrets"),
        "{}",
        errors[0]
    );
    assert!(errors[0].contains("checks may run GET, MGET"), "says what is valid: {}", errors[0]);
}
