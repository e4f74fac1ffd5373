//! Helpers shared by the black-box tests: throwaway databases and Redis key prefixes on the
//! services of this machine, a runbook engine wired the way the binary wires it, scripts for
//! `exec` checks, and a scratch folder for running the `firebell` binary.
//!
//! Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use firebell::check::{Status, TargetInfo, Targets};
use firebell::config::{Secret, TargetKind};
use firebell::redact::Redactor;
use firebell::runbook::{Catalogue, CheckEvent, CheckRun, Runbook, Runner, TargetRefs};
use firebell::source::SourceFile;
use sqlx::Connection;

// Each test file uses part of this module, these included.
#[allow(unused_imports)]
pub use crate::support::files::{toml_str, write_script};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------------
// Services

/// The URL of a service from its environment variable, or the local default.
fn service_url(variable: &str, default: &str) -> String {
    std::env::var(variable).ok().filter(|url| !url.is_empty()).unwrap_or_else(|| default.to_string())
}

/// What a test does when a service it needs is not there: with
/// `FIREBELL_TEST_REQUIRE_SERVICES=1` it fails, otherwise it says why it skipped and returns
/// `None` so the test can `return`.
pub fn service_unreachable<T>(service: &str, url: &str, why: impl Display) -> Option<T> {
    let shown = firebell::redact::mask_url(url);
    if std::env::var("FIREBELL_TEST_REQUIRE_SERVICES").is_ok_and(|value| value == "1") {
        panic!("{service} not reachable at {shown}: {why} (FIREBELL_TEST_REQUIRE_SERVICES=1, so this is a failure)");
    }
    eprintln!("skipped: {service} not reachable at {shown}: {why}");
    None
}

/// A name no other test (or earlier run) uses: `firebell_t_<pid>_<nanos>_<counter>`.
pub fn unique_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.subsec_nanos()).unwrap_or(0);
    format!("firebell_t_{}_{nanos}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavour {
    Postgres,
    Mysql,
}

/// A database created for one test and dropped when the test ends (also when it panics).
pub struct TestDatabase {
    flavour: Flavour,
    /// Connection string of the test's own database, for targets.
    pub url: String,
    admin_url: String,
    pub name: String,
    pool: TestPool,
}

enum TestPool {
    Postgres(sqlx::PgPool),
    Mysql(sqlx::MySqlPool),
}

/// A database of its own on the PostgreSQL of `FIREBELL_TEST_POSTGRES_URL`.
pub async fn postgres_database() -> Option<TestDatabase> {
    let admin_url = service_url("FIREBELL_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres");
    TestDatabase::create(Flavour::Postgres, admin_url).await
}

/// A database of its own on the MariaDB/MySQL of `FIREBELL_TEST_MYSQL_URL`.
pub async fn mysql_database() -> Option<TestDatabase> {
    let admin_url = service_url("FIREBELL_TEST_MYSQL_URL", "mysql://root@127.0.0.1:3306/test");
    TestDatabase::create(Flavour::Mysql, admin_url).await
}

impl TestDatabase {
    async fn create(flavour: Flavour, admin_url: String) -> Option<TestDatabase> {
        let service = match flavour {
            Flavour::Postgres => "PostgreSQL",
            Flavour::Mysql => "MariaDB",
        };
        let name = unique_name();
        let created = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let statement = format!("CREATE DATABASE {name}");
            match flavour {
                Flavour::Postgres => {
                    let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                    sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut admin).await?;
                    admin.close().await
                }
                Flavour::Mysql => {
                    let mut admin = sqlx::MySqlConnection::connect(&admin_url).await?;
                    sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut admin).await?;
                    admin.close().await
                }
            }
        })
        .await;
        match created {
            Err(_) => return service_unreachable(service, &admin_url, "no answer within 5 s"),
            Ok(Err(error)) => return service_unreachable(service, &admin_url, error),
            Ok(Ok(())) => {}
        }
        let mut url = url::Url::parse(&admin_url).expect("the service URL parses");
        url.set_path(&format!("/{name}"));
        let url = url.to_string();
        let pool = match flavour {
            Flavour::Postgres => TestPool::Postgres(
                sqlx::postgres::PgPoolOptions::new().max_connections(2).connect_lazy(&url).expect("the URL parses"),
            ),
            Flavour::Mysql => TestPool::Mysql(
                sqlx::mysql::MySqlPoolOptions::new().max_connections(2).connect_lazy(&url).expect("the URL parses"),
            ),
        };
        Some(TestDatabase { flavour, url, admin_url, name, pool })
    }

    /// Runs one statement in the test's database, as its owner (not through firebell).
    pub async fn execute(&self, statement: &str) {
        let sql = || sqlx::AssertSqlSafe(statement.to_string());
        let result = match &self.pool {
            TestPool::Postgres(pool) => sqlx::query(sql()).execute(pool).await.map(|_| ()),
            TestPool::Mysql(pool) => sqlx::query(sql()).execute(pool).await.map(|_| ()),
        };
        result.unwrap_or_else(|error| panic!("setting up the test database failed: {statement}: {error}"));
    }

    /// The first column of the first row of `query`, as an integer.
    pub async fn count(&self, query: &str) -> i64 {
        let sql = || sqlx::AssertSqlSafe(query.to_string());
        let result = match &self.pool {
            TestPool::Postgres(pool) => sqlx::query_scalar::<_, i64>(sql()).fetch_one(pool).await,
            TestPool::Mysql(pool) => sqlx::query_scalar::<_, i64>(sql()).fetch_one(pool).await,
        };
        result.unwrap_or_else(|error| panic!("the count query failed: {query}: {error}"))
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs outside any async context we could await in (and also while a failed test
        // unwinds), so the database is dropped from a thread with a runtime of its own.
        let flavour = self.flavour;
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime for cleanup");
            runtime.block_on(async move {
                match flavour {
                    Flavour::Postgres => {
                        let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                        // FORCE ends the sessions firebell's pools still hold.
                        let statement = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut admin).await.map(|_| ())
                    }
                    Flavour::Mysql => {
                        let mut admin = sqlx::MySqlConnection::connect(&admin_url).await?;
                        let statement = format!("DROP DATABASE IF EXISTS {name}");
                        sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut admin).await.map(|_| ())
                    }
                }
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("warning: could not drop test database {}: {error}", self.name);
        }
    }
}

/// A Redis key prefix of one test; every key under it is deleted when the test ends.
pub struct TestRedis {
    pub url: String,
    pub prefix: String,
    connection: redis::aio::MultiplexedConnection,
}

/// A key prefix of its own on the Redis of `FIREBELL_TEST_REDIS_URL`.
pub async fn redis_prefix() -> Option<TestRedis> {
    let url = service_url("FIREBELL_TEST_REDIS_URL", "redis://127.0.0.1:6379");
    let connected = tokio::time::timeout(CONNECT_TIMEOUT, async {
        let client = redis::Client::open(url.as_str())?;
        let mut connection = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut connection).await?;
        Ok::<_, redis::RedisError>(connection)
    })
    .await;
    let connection = match connected {
        Err(_) => return service_unreachable("Redis", &url, "no answer within 5 s"),
        Ok(Err(error)) => return service_unreachable("Redis", &url, error),
        Ok(Ok(connection)) => connection,
    };
    Some(TestRedis { url, prefix: unique_name(), connection })
}

impl TestRedis {
    /// `prefix:name`, a key of this test.
    pub fn key(&self, name: &str) -> String {
        format!("{}:{name}", self.prefix)
    }

    /// Runs a command as the test (not through firebell), e.g. `["RPUSH", key, "a"]`.
    pub async fn command(&self, words: &[&str]) {
        let mut command = redis::cmd(words[0]);
        for word in &words[1..] {
            command.arg(*word);
        }
        let mut connection = self.connection.clone();
        command
            .query_async::<redis::Value>(&mut connection)
            .await
            .unwrap_or_else(|error| panic!("setting up Redis failed: {words:?}: {error}"));
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let delete = || -> redis::RedisResult<()> {
            let client = redis::Client::open(self.url.as_str())?;
            let mut connection = client.get_connection_with_timeout(CONNECT_TIMEOUT)?;
            let keys: Vec<String> = redis::cmd("KEYS").arg(format!("{}:*", self.prefix)).query(&mut connection)?;
            if !keys.is_empty() {
                redis::cmd("DEL").arg(keys).query::<()>(&mut connection)?;
            }
            Ok(())
        };
        if let Err(error) = delete() {
            eprintln!("warning: could not delete the Redis keys {}:*: {error}", self.prefix);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The engine, driven through the library

/// The runbook engine as `firebell run` builds it: named targets, a runner whose redactor knows
/// the targets' connection strings, and a catalogue loaded with those target names.
pub struct Engine {
    runner: Runner,
    kinds: BTreeMap<String, TargetKind>,
}

impl Engine {
    pub fn new(targets: &[(&str, TargetKind, &str)]) -> Engine {
        let infos: BTreeMap<String, TargetInfo> = targets
            .iter()
            .map(|(name, kind, url)| {
                let info = TargetInfo { kind: *kind, url: Secret::new(url), headers: BTreeMap::new() };
                (name.to_string(), info)
            })
            .collect();
        let redactor = Redactor::new(targets.iter().map(|(_, _, url)| url.to_string()));
        Engine {
            runner: Runner::new(Arc::new(Targets::new(infos)), redactor, 8),
            kinds: targets.iter().map(|(name, kind, _)| (name.to_string(), *kind)).collect(),
        }
    }

    /// Loads one runbook (stored as `commands/<name>.toml`), or the `file:line: message` problems.
    pub fn try_load(&self, text: &str) -> Result<Arc<Runbook>, Vec<String>> {
        let table: toml::Table = toml::from_str(text).map_err(|error| vec![error.to_string()])?;
        let name = table.get("name").and_then(|name| name.as_str()).expect("the runbook has a name").to_string();
        let source = SourceFile::new(format!("commands/{name}.toml"), text);
        let (catalogue, errors) = Catalogue::load(&[source], &TargetRefs::Known(self.kinds.clone()));
        if !errors.is_empty() {
            return Err(errors.iter().map(ToString::to_string).collect());
        }
        Ok(catalogue.get(&name).expect("a runbook that loaded is in the catalogue"))
    }

    pub fn load(&self, text: &str) -> Arc<Runbook> {
        self.try_load(text).unwrap_or_else(|errors| panic!("the runbook does not load:\n{}", errors.join("\n")))
    }

    /// Starts every check of `runbook` with `args` (validated as `/diagnose` does).
    pub fn start(&self, runbook: &Arc<Runbook>, args: &[(&str, &str)]) -> tokio::sync::mpsc::Receiver<CheckEvent> {
        let pairs: Vec<(String, String)> =
            args.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect();
        let args = runbook.bind_args(&pairs).unwrap_or_else(|error| panic!("arguments refused: {error}"));
        self.runner.run(runbook.clone(), args)
    }

    /// Runs every check and returns all events, in the order they arrived.
    pub async fn run(&self, runbook: &Arc<Runbook>, args: &[(&str, &str)]) -> Vec<CheckEvent> {
        let mut receiver = self.start(runbook, args);
        let mut events = Vec::new();
        while let Some(event) = receiver.recv().await {
            events.push(event);
        }
        events
    }

    /// Runs a runbook's checks and returns each result by check name.
    pub async fn results(&self, runbook: &Arc<Runbook>, args: &[(&str, &str)]) -> BTreeMap<String, CheckRun> {
        let results: BTreeMap<String, CheckRun> =
            finished(&self.run(runbook, args).await).into_iter().map(|run| (run.name.clone(), run)).collect();
        assert_eq!(results.len(), runbook.checks.len(), "every check reports exactly once");
        results
    }

    /// Runs a runbook of one check and returns its result.
    pub async fn run_one(&self, runbook: &Arc<Runbook>, args: &[(&str, &str)]) -> CheckRun {
        let mut runs = finished(&self.run(runbook, args).await);
        assert_eq!(runs.len(), 1, "one check, one result: {runs:?}");
        runs.remove(0)
    }
}

pub fn finished(events: &[CheckEvent]) -> Vec<CheckRun> {
    events
        .iter()
        .filter_map(|event| match event {
            CheckEvent::Finished(run) => Some(run.clone()),
            CheckEvent::Line { .. } => None,
        })
        .collect()
}

/// Status and summary side by side, so a failing assertion shows both.
pub fn verdict(run: &CheckRun) -> (Status, &str) {
    (run.status, run.summary.as_str())
}

// ---------------------------------------------------------------------------------------------
// Scripts and processes

/// Whether process `pid` has ended. A killed process whose parent has not reaped it yet is a
/// zombie: it has ended and holds no resources, so it counts as gone.
pub fn process_is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            // The state follows the parenthesised command name, which may itself hold spaces.
            let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
            matches!(state, Some("Z" | "X"))
        }
    }
}

/// Polls until `pid` is gone, for a bounded number of tries.
pub async fn wait_until_gone(pid: u32) -> bool {
    for _ in 0..200 {
        if process_is_gone(pid) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

/// Reads a pid a script wrote, waiting (bounded) for the script to have written it.
pub async fn read_pid(path: &Path) -> u32 {
    for _ in 0..200 {
        let written = std::fs::read_to_string(path).ok();
        if let Some(pid) = written.and_then(|text| text.trim().parse().ok()) {
            return pid;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no pid in {}", path.display());
}

// ---------------------------------------------------------------------------------------------
// The binary

/// A scratch folder laid out as a user's: `firebell.toml` (optional) and `commands/*.toml`,
/// where the `firebell` binary runs as its working directory.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Workspace {
    pub fn new() -> Workspace {
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::create_dir(dir.path().join("commands")).expect("commands/ is created");
        Workspace { dir }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn config(&self, text: &str) -> &Self {
        std::fs::write(self.path().join("firebell.toml"), text).expect("firebell.toml is written");
        self
    }

    /// Writes `commands/<file>`.
    pub fn runbook(&self, file: &str, text: &str) -> &Self {
        std::fs::write(self.path().join("commands").join(file), text).expect("the runbook is written");
        self
    }

    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        write_script(self.path(), name, body)
    }

    /// `firebell ARGS...` in this folder, with no configuration leaking in from the environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_firebell"));
        command.args(args).current_dir(self.path()).env_remove("FIREBELL_CONFIG").env_remove("FIREBELL_LOG");
        command
    }

    pub fn run(&self, args: &[&str]) -> Finished {
        Finished::from(self.command(args).output().expect("firebell starts"))
    }
}

/// What a finished `firebell` process showed.
#[derive(Debug)]
pub struct Finished {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Finished {
    fn from(output: Output) -> Self {
        Finished {
            code: output.status.code().expect("firebell exited (not killed by a signal)"),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}
