//! Helpers for the incident and escalation tests: a fresh store on each backend (a SQLite file
//! in a temporary folder, or a PostgreSQL database of the test's own that is dropped when the
//! test ends), an `Escalator` on a manual clock, the real app spawned in-process on port 0, and
//! the real `firebell serve` binary for crash tests.
//!
//! Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

/// Each story runs on each backend with a fresh store; the tests are `sqlite::story` and
/// `postgres::story`. A leading `#[…];` replaces `#[tokio::test]` on each. Use it through
/// `#[macro_use] mod app;`.
#[allow(unused_macros)]
macro_rules! on_both_backends {
    (#[$test:meta]; $($story:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[$test]
                async fn $story() {
                    super::$story(super::Backend::Sqlite).await;
                }
            )*
        }
        mod postgres {
            $(
                #[$test]
                async fn $story() {
                    super::$story(super::Backend::Postgres).await;
                }
            )*
        }
    };
    ($($story:ident),* $(,)?) => {
        on_both_backends!(#[tokio::test]; $($story),*);
    };
}

use std::fmt::Display;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use firebell::clock::ManualClock;
use firebell::config::Config;
use firebell::escalation::{Directory, Escalator};
use firebell::incident::{Incident, NewIncident, Severity, TimelineEvent};
use firebell::source::SourceFile;
use firebell::store::Store;
use serde_json::{Value, json};
use sqlx::Connection;

use crate::support::app::{AppBuilder, RunningApp, Workspace};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub const TOKEN: &str = "s3cret-api-token";

/// A runbook small enough to write inline; `App::build` refuses to start without valid ones.
pub use crate::support::runbooks::PING as RUNBOOK;

// ---------------------------------------------------------------------------------------------
// Stores

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What a test does when PostgreSQL is not there: with `FIREBELL_TEST_REQUIRE_SERVICES=1` it
/// fails, otherwise it says why it skipped and the test returns.
fn unreachable<T>(url: &str, why: impl Display) -> Option<T> {
    let shown = firebell::redact::mask_url(url);
    if std::env::var("FIREBELL_TEST_REQUIRE_SERVICES").is_ok_and(|value| value == "1") {
        panic!("PostgreSQL not reachable at {shown}: {why} (FIREBELL_TEST_REQUIRE_SERVICES=1, so this is a failure)");
    }
    eprintln!("skipped: PostgreSQL not reachable at {shown}: {why}");
    None
}

fn unique_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|elapsed| elapsed.subsec_nanos()).unwrap_or(0);
    format!("firebell_t_{}_{nanos}_{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A PostgreSQL database of one test, dropped (`WITH (FORCE)`) when the test ends or panics.
pub struct PgDatabase {
    pub url: String,
    admin_url: String,
    name: String,
}

impl PgDatabase {
    pub async fn create() -> Option<PgDatabase> {
        let admin_url = std::env::var("FIREBELL_TEST_POSTGRES_URL")
            .ok()
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
        let name = unique_name();
        let created = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await?;
            admin.close().await
        })
        .await;
        match created {
            Err(_) => return unreachable(&admin_url, "no answer within 5 s"),
            Ok(Err(error)) => return unreachable(&admin_url, error),
            Ok(Ok(())) => {}
        }
        let mut url = url::Url::parse(&admin_url).expect("the PostgreSQL URL parses");
        url.set_path(&format!("/{name}"));
        Some(PgDatabase { url: url.to_string(), admin_url, name })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        // Drop cannot await (and may run while a failed test unwinds), so the database is
        // dropped from a thread with a runtime of its own.
        let admin_url = self.admin_url.clone();
        let statement = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || {
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime for cleanup");
            runtime.block_on(async move {
                let mut admin = sqlx::PgConnection::connect(&admin_url).await?;
                sqlx::query(sqlx::AssertSqlSafe(statement)).execute(&mut admin).await.map(|_| ())
            })
        })
        .join();
        if let Ok(Err(error)) = dropped {
            eprintln!("warning: could not drop test database {}: {error}", self.name);
        }
    }
}

/// Where a test's store lives; dropping it removes the file or the database.
pub struct StoreSpace {
    pub backend: Backend,
    pub url: String,
    /// The folder of the SQLite file (and of anything else the test writes).
    pub dir: tempfile::TempDir,
    _database: Option<PgDatabase>,
}

impl StoreSpace {
    /// A fresh, empty store location on `backend`; `None` when PostgreSQL is not reachable
    /// (and the test should return).
    pub async fn new(backend: Backend) -> Option<StoreSpace> {
        let dir = tempfile::tempdir().expect("a temporary folder");
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}", dir.path().join("firebell.db").display());
                Some(StoreSpace { backend, url, dir, _database: None })
            }
            Backend::Postgres => {
                let database = PgDatabase::create().await?;
                Some(StoreSpace { backend, url: database.url.clone(), dir, _database: Some(database) })
            }
        }
    }

    /// Opens the store (applying migrations), as `firebell serve` does.
    pub async fn open(&self) -> Arc<dyn Store> {
        firebell::store::open(&self.url)
            .await
            .unwrap_or_else(|error| panic!("opening the store at {} failed: {error}", self.url))
    }
}

/// Parses `firebell.toml` text as if it were at `dir/firebell.toml`.
pub fn parse_config(dir: &Path, text: &str) -> Config {
    Config::parse(&SourceFile::new(dir.join("firebell.toml"), text))
        .unwrap_or_else(|errors| panic!("the test config is invalid: {errors}\n{text}"))
}

pub use crate::support::app::toml_str;

/// 2026-01-03 08:50:00.250 UTC: ten minutes before a daily 09:00 handoff, with milliseconds to
/// show times are stored to the millisecond.
pub fn t0() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-01-03T08:50:00.250Z").expect("a time").to_utc()
}

pub fn secs(seconds: i64) -> chrono::Duration {
    chrono::Duration::seconds(seconds)
}

pub fn mins(minutes: i64) -> chrono::Duration {
    chrono::Duration::minutes(minutes)
}

/// An `Escalator` over a fresh store, with the policies, groups and schedules of `policies`
/// (the `[groups]`, `[[policies]]`, `[[schedules]]` part of `firebell.toml`) and a manual
/// clock standing at [`t0`].
pub struct Harness {
    pub space: StoreSpace,
    pub escalator: Arc<Escalator>,
    pub clock: Arc<ManualClock>,
    pub directory: Arc<Directory>,
}

impl Harness {
    pub async fn new(backend: Backend, policies: &str) -> Option<Harness> {
        let space = StoreSpace::new(backend).await?;
        let clock = Arc::new(ManualClock::new(t0()));
        let config = parse_config(space.dir.path(), &format!("[store]\nurl = {}\n{policies}", toml_str(&space.url)));
        let directory = Arc::new(Directory::from_config(&config).expect("the directory builds"));
        let escalator = Arc::new(Escalator::new(space.open().await, directory.clone(), clock.clone()));
        Some(Harness { space, escalator, clock, directory })
    }

    /// A second engine on the same store, with a pool of its own: another replica.
    pub async fn replica(&self) -> Arc<Escalator> {
        Arc::new(Escalator::new(self.space.open().await, self.directory.clone(), self.clock.clone()))
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        self.escalator.store()
    }

    /// Declares an incident now (per the manual clock), following `policy` (`None`: the default).
    pub async fn declare(&self, title: &str, policy: Option<&str>) -> Incident {
        self.escalator
            .declare(new_incident(title, policy))
            .await
            .unwrap_or_else(|error| panic!("declaring '{title}' failed: {error}"))
    }

    /// Fires what is due at `t0 + offset`; returns `(incident, step, repeat, notified)` per step.
    pub async fn fire_at(&self, offset: chrono::Duration) -> Vec<(i64, usize, u32, Vec<String>)> {
        let fired = self.escalator.fire_due(t0() + offset).await.expect("fire_due works");
        fired.into_iter().map(|step| (step.incident_id, step.step, step.round, step.notified)).collect()
    }

    pub async fn incident(&self, id: i64) -> Incident {
        self.store().incident(id).await.expect("the incident exists")
    }

    pub async fn pending(&self) -> i64 {
        self.store().pending_timers().await.expect("counting timers works")
    }

    /// The escalation notifications in the outbox, as `(incident, step, repeat, recipients)`.
    pub async fn escalation_outbox(&self) -> Vec<(i64, u64, u64, Vec<String>)> {
        let items = self.store().undelivered(10_000).await.expect("reading the outbox works");
        items
            .into_iter()
            .filter(|item| item.kind == firebell::store::OutboxKind::Escalation)
            .map(|item| {
                (
                    item.incident_id.expect("an escalation belongs to an incident"),
                    item.payload["step"].as_u64().expect("payload.step"),
                    item.payload["repeat"].as_u64().expect("payload.repeat"),
                    item.recipients,
                )
            })
            .collect()
    }
}

pub fn new_incident(title: &str, policy: Option<&str>) -> NewIncident {
    NewIncident {
        title: title.to_string(),
        severity: Severity::High,
        impact: Some("Signals are stale".to_string()),
        commander: None,
        fingerprint: None,
        policy: policy.map(str::to_string),
        declared_by: Some("console:tester".to_string()),
    }
}

/// The timeline events of one kind.
pub fn events<'a>(incident: &'a Incident, kind: &str) -> Vec<&'a TimelineEvent> {
    incident.timeline.iter().filter(|event| event.kind == kind).collect()
}

/// The `escalated` events as `(step, repeat, notified, at)`.
pub fn escalations(incident: &Incident) -> Vec<(u64, u64, Vec<String>, DateTime<Utc>)> {
    events(incident, "escalated")
        .into_iter()
        .map(|event| {
            let notified = event.detail["notified"].as_array().expect("detail.notified is a list");
            (
                event.detail["step"].as_u64().expect("detail.step"),
                event.detail["repeat"].as_u64().expect("detail.repeat"),
                notified.iter().map(|person| person.as_str().expect("a person").to_string()).collect(),
                event.at,
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The app in-process

/// The real app on port 0 with a manual clock, a config written the way a user writes it; its
/// address, client, escalator and workspace are the [`RunningApp`]'s.
pub struct TestApp {
    pub app: RunningApp,
    pub clock: Arc<ManualClock>,
}

impl std::ops::Deref for TestApp {
    type Target = RunningApp;

    fn deref(&self) -> &RunningApp {
        &self.app
    }
}

/// Spawns the app; `server_extra` goes into `[server]` (e.g. the `api_token` line) and `rest`
/// after it (groups, policies).
pub async fn spawn_app(server_extra: &str, rest: &str) -> TestApp {
    let workspace = Workspace::new();
    workspace.runbook("ping", RUNBOOK);
    let clock = Arc::new(ManualClock::new(t0()));
    let app = AppBuilder::new(workspace).server(server_extra).section(rest).clock(clock.clone()).spawn().await;
    TestApp { app, clock }
}

/// A response as the test reads it: status, the `Location` header and the JSON body (or the
/// text, as a JSON string, when the body is not JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub location: Option<String>,
    pub content_type: String,
    pub body: Value,
}

impl Reply {
    async fn read(response: reqwest::Response) -> Reply {
        let status = response.status().as_u16();
        let header = |name: reqwest::header::HeaderName| {
            response.headers().get(name).and_then(|value| value.to_str().ok()).map(str::to_string)
        };
        let location = header(reqwest::header::LOCATION);
        let content_type = header(reqwest::header::CONTENT_TYPE).unwrap_or_default();
        let text = response.text().await.expect("the body reads");
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, location, content_type, body }
    }

    /// The `error` sentence of a JSON error body; panics (naming the reply) when there is none.
    pub fn error(&self) -> &str {
        assert!(self.content_type.starts_with("application/json"), "an error should be JSON, got {self:?}");
        self.body["error"].as_str().unwrap_or_else(|| panic!("no \"error\" in {self:?}"))
    }
}

impl TestApp {
    /// GETs with the API token: with `api_token` set, API reads need it too (SPEC §9).
    pub async fn get(&self, path: &str) -> Reply {
        Reply::read(self.client.get(self.url(path)).bearer_auth(TOKEN).send().await.expect("GET works")).await
    }

    /// POSTs JSON with the right token.
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.post_raw(path, Some(&format!("Bearer {TOKEN}")), Some("application/json"), body.to_string().into_bytes())
            .await
    }

    /// POSTs exactly these bytes with exactly these headers (`None`: header left out).
    pub async fn post_raw(
        &self,
        path: &str,
        authorization: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Reply {
        let mut request = self.client.post(self.url(path)).body(body);
        if let Some(authorization) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        if let Some(content_type) = content_type {
            request = request.header(reqwest::header::CONTENT_TYPE, content_type);
        }
        Reply::read(request.send().await.expect("POST works")).await
    }

    /// Every incident, resolved or not, as the API shows them: what "nothing changed" compares.
    /// Every incident as the API shows it, without `chat` (where chat platforms show it): the
    /// web console posts each notification in the background, so that field changes on its own.
    pub async fn everything(&self) -> Value {
        let reply = self.get("/api/incidents?all=true").await;
        assert_eq!(reply.status, 200, "{reply:?}");
        let mut incidents = reply.body;
        for incident in incidents.as_array_mut().into_iter().flatten() {
            if let Some(fields) = incident.as_object_mut() {
                fields.remove("chat");
            }
        }
        incidents
    }

    pub async fn stop(self) {
        self.app.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// The real binary

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding port 0 works");
    listener.local_addr().expect("a bound address").port()
}

/// A folder with `firebell.toml` (whose `listen` is rewritten at each start) and `commands/`.
pub struct ServeDir {
    pub dir: tempfile::TempDir,
    pub url: String,
    /// The config without its `[server]` table.
    body: String,
    /// Extra keys for `[server]`.
    server: String,
    starts: u32,
}

impl ServeDir {
    /// `store_url` of `None` means a SQLite file in the folder; `rest` is everything after
    /// `[server]` and `[store]`: groups, policies.
    pub fn new(store_url: Option<&str>, rest: &str) -> ServeDir {
        let dir = tempfile::tempdir().expect("a temporary folder");
        std::fs::create_dir(dir.path().join("commands")).expect("a commands folder");
        std::fs::write(dir.path().join("commands/ping.toml"), RUNBOOK).expect("the runbook is written");
        let url = store_url
            .map(str::to_string)
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("firebell.db").display()));
        let body = format!("[store]\nurl = {}\n\n{rest}", toml_str(&url));
        ServeDir { dir, url, body, server: String::new(), starts: 0 }
    }

    /// Adds `keys` (lines of `key = value`) to the `[server]` table of later starts.
    pub fn with_server_keys(mut self, keys: &str) -> ServeDir {
        self.server = keys.to_string();
        self
    }

    /// Every server log of this folder, in start order, for failure messages.
    pub fn logs(&self) -> String {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|entry| entry.path())
                    .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
                    .collect()
            })
            .unwrap_or_default();
        paths.sort();
        paths
            .iter()
            .map(|path| format!("==> {} <==\n{}", path.display(), std::fs::read_to_string(path).unwrap_or_default()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Escalation pages the store queued (delivered or not: the web console delivers them).
    pub async fn escalation_rows(&self) -> i64 {
        self.outbox_rows("escalation").await
    }

    /// Outbox items of `kind` the store queued, delivered or not.
    pub async fn outbox_rows(&self, kind: &str) -> i64 {
        sqlx::any::install_default_drivers();
        let mut connection = sqlx::AnyConnection::connect(&self.url)
            .await
            .unwrap_or_else(|error| panic!("connecting to the store at {} failed: {error}", self.url));
        sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE kind = $1")
            .bind(kind.to_string())
            .fetch_one(&mut connection)
            .await
            .expect("the outbox can be counted")
    }

    /// Opens the store the servers use, from the test (reads and counts only).
    pub async fn open_store(&self) -> Arc<dyn Store> {
        firebell::store::open(&self.url)
            .await
            .unwrap_or_else(|error| panic!("opening the store at {} failed: {error}", self.url))
    }

    /// Starts `firebell serve` on a fresh port, with its own config file, and waits until
    /// `/readyz` answers 200 (up to 15 s).
    pub async fn start(&mut self, name: &str) -> Server {
        // The port was free when picked but another process may take it before firebell binds
        // it; then firebell exits saying so, and it gets another port.
        for _ in 0..3 {
            match self.try_start(name).await {
                Ok(server) => return server,
                Err(log) if log.contains("cannot listen") => continue,
                Err(log) => panic!("firebell serve exited before it was ready:\n{log}"),
            }
        }
        panic!("firebell serve found no free port in 3 tries:\n{}", self.logs())
    }

    async fn try_start(&mut self, name: &str) -> Result<Server, String> {
        self.starts += 1;
        let port = free_port();
        let config = self.dir.path().join(format!("firebell-{}.toml", self.starts));
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\napi_token = \"{TOKEN}\"\n{}\n\n[commands]\ndirs = [\"commands\"]\n\n{}",
            self.server, self.body
        );
        std::fs::write(&config, text).expect("the config is written");
        let log_path = self.dir.path().join(format!("{:02}-{name}.log", self.starts));
        let log = std::fs::File::create(&log_path).expect("a log file");
        let started_at = Utc::now();
        let child = Command::new(env!("CARGO_BIN_EXE_firebell"))
            .args(["serve", "--config"])
            .arg(&config)
            .current_dir(self.dir.path())
            .env("FIREBELL_LOG", "info")
            .env("HOSTNAME", name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("firebell serve starts");
        let mut server = Server {
            child: Some(child),
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            client: reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("an HTTP client"),
            log_path,
            started_at,
        };
        server.wait_ready().await?;
        Ok(server)
    }
}

/// A running `firebell serve`; killed (SIGKILL) when dropped.
pub struct Server {
    child: Option<Child>,
    pub address: SocketAddr,
    pub client: reqwest::Client,
    pub log_path: PathBuf,
    /// Just before the process was spawned.
    pub started_at: DateTime<Utc>,
}

impl Server {
    /// Waits until `/readyz` answers 200 (up to 15 s); `Err(log)` if the process exits first.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("(exit status {status})\n{}", self.log()));
            }
            if let Ok(response) = self.client.get(format!("http://{}/readyz", self.address)).send().await
                && response.status() == 200
            {
                return Ok(());
            }
            assert!(Instant::now() < deadline, "firebell serve was not ready within 15 s:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// `kill -9`, and reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL is delivered");
            child.wait().expect("the killed process is reaped");
        }
    }

    pub async fn declare(&self, title: &str) -> Value {
        let response = self
            .client
            .post(format!("http://{}/api/incidents", self.address))
            .bearer_auth(TOKEN)
            .json(&json!({"title": title, "severity": "critical"}))
            .send()
            .await
            .expect("declaring works");
        assert_eq!(response.status().as_u16(), 201, "declaring '{title}' failed:\n{}", self.log());
        response.json().await.expect("the incident is JSON")
    }

    pub async fn incident(&self, id: i64) -> Value {
        let response = self
            .client
            .get(format!("http://{}/api/incidents/{id}", self.address))
            .bearer_auth(TOKEN)
            .send()
            .await
            .expect("GET works");
        assert_eq!(response.status().as_u16(), 200, "reading incident {id} failed:\n{}", self.log());
        response.json().await.expect("the incident is JSON")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `(step, repeat)` of each `escalated` event of an incident read from the API.
pub fn api_escalations(incident: &Value) -> Vec<(u64, u64, DateTime<Utc>)> {
    incident["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .filter(|event| event["kind"] == "escalated")
        .map(|event| {
            (
                event["detail"]["step"].as_u64().expect("detail.step"),
                event["detail"]["repeat"].as_u64().expect("detail.repeat"),
                event["at"]
                    .as_str()
                    .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
                    .expect("event.at is RFC 3339")
                    .to_utc(),
            )
        })
        .collect()
}
