//! The one test app builder: a [`Workspace`] laid out as a user's (`commands/`, `scripts/`,
//! `firebell.toml`), a config assembled from sections, and the real app spawned in-process on
//! port 0 ([`firebell::app::App`]) on the clock the test chooses, stopped when the
//! [`RunningApp`] is dropped. Platforms plug in as config sections (the fake Slack's and the
//! fake Discord's helpers write theirs); nothing here knows a platform.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use super::files::{toml_str, write_script};
use std::sync::Arc;
use std::time::Duration;

use firebell::chat::core::ChatCore;
use firebell::clock::{Clock, SystemClock};
use firebell::config::Config;
use firebell::escalation::Escalator;
use firebell::source::SourceFile;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// A folder the test writes runbooks and scripts into before the app starts; the app's store
/// (`firebell.db`) and config live in it too, so an app started again on it finds what the
/// last one stored.
pub struct Workspace {
    dir: Folder,
}

enum Folder {
    /// A temporary folder of its own, removed with the workspace.
    Own(tempfile::TempDir),
    /// A folder the test keeps (to start the app on it again, or look into it afterwards).
    At(PathBuf),
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Workspace {
    /// A fresh temporary folder with `commands/` and `scripts/`.
    pub fn new() -> Workspace {
        Workspace::laid_out(Folder::Own(tempfile::tempdir().expect("a temporary folder")))
    }

    /// The folder `dir`, which the test keeps, with `commands/` and `scripts/` made if missing.
    pub fn at(dir: &Path) -> Workspace {
        Workspace::laid_out(Folder::At(dir.to_path_buf()))
    }

    fn laid_out(dir: Folder) -> Workspace {
        let workspace = Workspace { dir };
        for folder in ["commands", "scripts"] {
            std::fs::create_dir_all(workspace.path().join(folder)).expect("the workspace's folders");
        }
        workspace
    }

    pub fn path(&self) -> &Path {
        match &self.dir {
            Folder::Own(dir) => dir.path(),
            Folder::At(dir) => dir,
        }
    }

    /// Writes `commands/<name>.toml`.
    pub fn runbook(&self, name: &str, text: &str) {
        std::fs::write(self.path().join(format!("commands/{name}.toml")), text).expect("the runbook is written");
    }

    /// A `#!/bin/sh` script in `scripts/`, executable, for exec checks (which run argv without
    /// a shell).
    pub fn script(&self, name: &str, body: &str) -> PathBuf {
        write_script(&self.path().join("scripts"), name, body)
    }

    /// The SQLite store of this workspace.
    pub fn store_url(&self) -> String {
        format!("sqlite://{}", self.path().join("firebell.db").display())
    }
}

/// How to start the app: where it listens, its `[server]` keys, its store, the sections after
/// them, and its clock.
pub struct AppBuilder {
    workspace: Workspace,
    listen: String,
    server: Vec<String>,
    store: Option<String>,
    sections: Vec<String>,
    clock: Arc<dyn Clock>,
}

impl AppBuilder {
    /// On `127.0.0.1:0`, the wall clock, the workspace's SQLite store, `commands/` loaded.
    pub fn new(workspace: Workspace) -> AppBuilder {
        AppBuilder {
            workspace,
            listen: "127.0.0.1:0".to_string(),
            server: Vec::new(),
            store: None,
            sections: Vec::new(),
            clock: Arc::new(SystemClock),
        }
    }

    /// `listen` (e.g. `0.0.0.0:0`, which is "not loopback" to the console).
    pub fn listen(mut self, listen: &str) -> AppBuilder {
        self.listen = listen.to_string();
        self
    }

    /// Lines of `key = value` for `[server]`.
    pub fn server(mut self, keys: &str) -> AppBuilder {
        self.server.push(keys.to_string());
        self
    }

    /// Another store than the workspace's SQLite file (a PostgreSQL database of the test's).
    pub fn store(mut self, url: &str) -> AppBuilder {
        self.store = Some(url.to_string());
        self
    }

    /// A part of the config after `[server]`, `[store]` and `[commands]`: a platform's section,
    /// groups, permissions, policies, targets. Sections are written in the order given.
    pub fn section(mut self, text: &str) -> AppBuilder {
        self.sections.push(text.to_string());
        self
    }

    pub fn clock(mut self, clock: Arc<dyn Clock>) -> AppBuilder {
        self.clock = clock;
        self
    }

    /// The config as written to `firebell.toml`: `[commands]` names the workspace's
    /// `commands/`, unless a section brings its own `[commands]` table.
    pub fn config_text(&self) -> String {
        let store = self.store.clone().unwrap_or_else(|| self.workspace.store_url());
        let sections = self.sections.join("\n");
        let own_commands = sections.lines().any(|line| line.trim() == "[commands]");
        let commands = if own_commands {
            String::new()
        } else {
            let dir = self.workspace.path().join("commands").display().to_string();
            format!("[commands]\ndirs = [{}]\n\n", toml_str(&dir))
        };
        format!(
            "[server]\nlisten = {listen}\n{server}\n\n[store]\nurl = {store}\n\n{commands}{sections}\n",
            listen = toml_str(&self.listen),
            server = self.server.join("\n"),
            store = toml_str(&store),
        )
    }

    /// Writes `firebell.toml`, builds the app and runs it until the [`RunningApp`] stops or
    /// is dropped.
    pub async fn spawn(self) -> RunningApp {
        let text = self.config_text();
        let path = self.workspace.path().join("firebell.toml");
        std::fs::write(&path, &text).expect("the config is written");
        let config = Config::parse(&SourceFile::new(path, &text))
            .unwrap_or_else(|errors| panic!("the test config is invalid: {errors}\n{text}"));
        let app = firebell::app::App::build(config, self.clock)
            .await
            .unwrap_or_else(|error| panic!("the app does not start: {error:#}"));
        let address = app.address();
        let chat = app.chat();
        let escalator = app.escalator();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
        RunningApp {
            address,
            base: format!("http://127.0.0.1:{}", address.port()),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client"),
            chat,
            escalator,
            workspace: Some(self.workspace),
            shutdown,
            task: Some(task),
        }
    }
}

/// The value of the cookie `name` that `headers` (of a response) set.
pub fn set_cookie(headers: &reqwest::header::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .filter_map(|value| value.split(';').next()?.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
}

/// What the app answered to a request a platform (or a test) sent it.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
    /// From sending the request to having the whole answer.
    pub took: Duration,
    /// When the answer had arrived (to compare with a fake's call times).
    pub at: std::time::Instant,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| panic!("the answer is not JSON ({error}): {self:?}"))
    }
}

/// The app running in-process; stopped (its shutdown token cancelled) when dropped.
pub struct RunningApp {
    /// Where it listens, as bound (`0.0.0.0:…` when asked for "not loopback").
    pub address: SocketAddr,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Follows no redirects, so a test sees each one.
    pub client: reqwest::Client,
    /// The chat core, to step its expiry loop (`expire_due`) instead of waiting for it.
    pub chat: Arc<ChatCore>,
    pub escalator: Arc<Escalator>,
    workspace: Option<Workspace>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl RunningApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn workspace(&self) -> &Workspace {
        self.workspace.as_ref().expect("the workspace is there until the app stops")
    }

    /// `GET path`, which must answer 200 with JSON.
    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.client.get(self.url(path)).send().await.expect("GET works");
        assert_eq!(response.status().as_u16(), 200, "GET {path}");
        response.json().await.expect("the answer is JSON")
    }

    /// POSTs `body` to `path` as `content_type` with exactly these other headers.
    pub async fn send(&self, path: &str, content_type: &str, body: &str, headers: &[(&str, String)]) -> Answer {
        let mut request = self.client.post(self.url(path)).header("content-type", content_type).body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let started = std::time::Instant::now();
        let response = request.send().await.expect("the app answers");
        let status = response.status().as_u16();
        let body = response.text().await.expect("the answer reads");
        Answer { status, body, took: started.elapsed(), at: std::time::Instant::now() }
    }

    /// Waits until the API shows incident `id` satisfying `condition`; returns it.
    pub async fn wait_incident(
        &self,
        id: i64,
        what: &str,
        timeout: Duration,
        condition: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let incident = self.get_json(&format!("/api/incidents/{id}")).await;
            if condition(&incident) {
                return incident;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}; incident: {incident:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the app, waits until it has (the outbox deliverer and timers end with it), and
    /// hands back its workspace for another start.
    pub async fn stop(mut self) -> Workspace {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            task.await.expect("the app task ends cleanly").expect("the app stops without error");
        }
        self.workspace.take().expect("the workspace")
    }
}

impl Drop for RunningApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
