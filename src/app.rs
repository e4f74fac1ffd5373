//! Wiring shared by the commands of the CLI: the configuration, the runbook files on disk, and
//! the check runner built from them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::check::{Runner, Targets};
use crate::config::Config;
use crate::runbook::{Catalogue, TargetRefs};
use crate::source::{LoadError, SourceFile};

/// Reads every `*.toml` in the configured command folders, in name order.
pub fn read_command_files(config: &Config) -> Result<Vec<SourceFile>, Vec<LoadError>> {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for dir in config.command_dirs() {
        match list_toml_files(&dir) {
            Ok(paths) => {
                for path in paths {
                    match SourceFile::read(&path) {
                        Ok(file) => files.push(file),
                        Err(error) => errors.push(error),
                    }
                }
            }
            Err(message) => errors.push(LoadError { path: dir.clone(), line: 0, message }),
        }
    }
    if errors.is_empty() { Ok(files) } else { Err(errors) }
}

fn list_toml_files(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = std::fs::read_dir(dir).map_err(|error| {
        format!("cannot read the commands folder: {error} (set [commands] dirs in firebell.toml, or run from the folder that holds commands/)")
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml") && path.is_file())
        .collect();
    paths.sort();
    Ok(paths)
}

/// Targets are checked against `firebell.toml` when there is one; with the embedded defaults
/// there is nothing to check them against.
pub fn target_refs(config: &Config) -> TargetRefs {
    match config.path {
        Some(_) => TargetRefs::Known(config.targets.iter().map(|(name, target)| (name.clone(), target.kind)).collect()),
        None => TargetRefs::Unchecked,
    }
}

/// Loads the catalogue; every problem in every file is returned, as `file:line` errors.
pub fn load_catalogue(config: &Config) -> (Catalogue, Vec<LoadError>) {
    let files = match read_command_files(config) {
        Ok(files) => files,
        Err(errors) => return (Catalogue::default(), errors),
    };
    Catalogue::load(&files, &target_refs(config))
}

pub fn runner(config: &Config) -> Runner {
    Runner::new(Arc::new(Targets::from_config(config)), config.redactor(), config.commands.concurrency)
}

/// The running bot: HTTP server, store, timer engine, chat core and adapters, built from a
/// configuration.
pub struct App {
    listener: tokio::net::TcpListener,
    router: axum::Router,
    escalator: Arc<crate::escalation::Escalator>,
    catalogue: Arc<Catalogue>,
    chat: Arc<crate::chat::core::ChatCore>,
    deliver_wake: Arc<tokio::sync::Notify>,
    /// Slack in Socket Mode: connected when the app runs.
    slack_socket: Option<crate::config::SlackConfig>,
}

impl App {
    /// Opens the store (applying migrations), loads the runbooks, connects the configured chat
    /// platforms and binds the listener. Any problem is reported here, before the bot says it
    /// is ready.
    pub async fn build(config: Config, clock: Arc<dyn crate::clock::Clock>) -> anyhow::Result<App> {
        use anyhow::Context;
        crate::metrics::handle();
        let (catalogue, errors) = load_catalogue(&config);
        if !errors.is_empty() {
            anyhow::bail!("{}", crate::source::LoadErrors(errors));
        }
        let catalogue = Arc::new(catalogue);
        let store = crate::store::open(config.store.url.get_ref().expose())
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        let directory =
            crate::escalation::Directory::from_config(&config).map_err(|error| anyhow::anyhow!("{error}"))?;
        let base_dir = config.path.as_ref().and_then(|path| path.parent()).map(Path::to_path_buf).unwrap_or_default();
        let templates = crate::incident::summary::Templates::load(&config.templates, &base_dir)
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        let escalator =
            Arc::new(crate::escalation::Escalator::new(store, Arc::new(directory), clock).with_templates(templates));

        let deliver_wake = Arc::new(tokio::sync::Notify::new());
        let mut chat = crate::chat::core::ChatCore::new(
            catalogue.clone(),
            runner(&config),
            escalator.clone(),
            crate::chat::core::Permissions::from_config(&config.permissions),
            deliver_wake.clone(),
        );
        // Slack starts when a bot token is set: Socket Mode with an app token, else HTTP mode.
        let slack =
            config.slack.as_ref().filter(|slack| slack.bot_token.as_ref().is_some_and(|token| !token.is_empty()));
        let mut slack_adapter = None;
        if let Some(slack_config) = slack {
            let adapter = Arc::new(crate::chat::slack::SlackAdapter::new(slack_config).context("cannot set up Slack")?);
            chat = chat.with_adapter(adapter.clone());
            slack_adapter = Some(adapter);
        }
        let chat = Arc::new(chat);

        for route in &config.routes {
            if let Some(run) = &route.run
                && catalogue.get(run.get_ref()).is_none()
            {
                anyhow::bail!(
                    "[[routes]] run = \"{}\": no such runbook; topics: {}",
                    run.get_ref(),
                    catalogue.topic_names().join(", ")
                );
            }
        }
        let alerts = Arc::new(crate::ingest::AlertService::new(
            crate::ingest::Ingestor::start(escalator.clone()),
            crate::ingest::Routes::from_config(&config.routes),
            escalator.clone(),
            chat.clone(),
        ));
        let state = crate::server::AppState {
            escalator: escalator.clone(),
            api_token: config.server.api_token.clone(),
            alerts,
        };
        let mut router = crate::server::router(state);
        let mut slack_socket = None;
        if let (Some(slack_config), Some(adapter)) = (slack, slack_adapter) {
            let app_token = slack_config.app_token.as_ref().filter(|token| !token.is_empty());
            match (app_token, &slack_config.signing_secret) {
                (Some(_), _) => slack_socket = Some(slack_config.clone()),
                (None, Some(secret)) if !secret.is_empty() => {
                    let handler: Arc<dyn crate::chat::slack::SlackHandler> = Arc::new(chat.clone());
                    router =
                        router.merge(crate::chat::slack::http::routes_with_adapter(handler, secret.clone(), adapter));
                }
                _ => anyhow::bail!(
                    "[slack] needs app_token (Socket Mode) or signing_secret (HTTP mode) besides bot_token"
                ),
            }
        }
        let listen = config.server.listen.get_ref().0.clone();
        let listener =
            tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        Ok(App { listener, router, escalator, catalogue, chat, deliver_wake, slack_socket })
    }

    pub fn address(&self) -> std::net::SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn escalator(&self) -> Arc<crate::escalation::Escalator> {
        self.escalator.clone()
    }

    pub fn catalogue(&self) -> Arc<Catalogue> {
        self.catalogue.clone()
    }

    pub fn chat(&self) -> Arc<crate::chat::core::ChatCore> {
        self.chat.clone()
    }

    /// Serves until `shutdown` is cancelled; in-flight requests finish first.
    pub async fn run_until_stopped(self, shutdown: tokio_util::sync::CancellationToken) -> anyhow::Result<()> {
        let mut tasks = vec![tokio::spawn(self.escalator.clone().run(shutdown.clone()))];
        tasks.push(tokio::spawn(self.chat.clone().run_expiry(shutdown.clone())));
        if !self.chat.adapters().is_empty() {
            let deliverer = crate::chat::deliver::Deliverer::new(
                self.escalator.clone(),
                self.chat.adapters().clone(),
                self.deliver_wake.clone(),
            );
            tasks.push(tokio::spawn(Arc::new(deliverer).run(shutdown.clone())));
        }
        if let Some(slack_config) = self.slack_socket.clone() {
            let handler: Arc<dyn crate::chat::slack::SlackHandler> = Arc::new(self.chat.clone());
            let socket_shutdown = shutdown.clone();
            tasks.push(tokio::spawn(async move {
                if let Err(error) =
                    crate::chat::slack::socket::run_socket_mode(&slack_config, handler, socket_shutdown).await
                {
                    tracing::error!(error = %format!("{error:#}"), "Slack Socket Mode stopped");
                }
            }));
        }
        axum::serve(self.listener, self.router).with_graceful_shutdown(shutdown.clone().cancelled_owned()).await?;
        shutdown.cancel();
        for task in tasks {
            let _ = task.await;
        }
        Ok(())
    }
}
