//! Wiring shared by the commands of the CLI: the configuration, the runbook files on disk, and
//! the check runner built from them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::check::Targets;
use crate::config::Config;
use crate::runbook::{Catalogue, Runner, TargetRefs};
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
        .with_max_output(config.commands.max_output.0)
        .with_max_running(config.commands.max_running)
}

/// The running bot: HTTP server, store, timer engine, chat core and platforms, built from a
/// configuration.
pub struct App {
    listener: tokio::net::TcpListener,
    router: axum::Router,
    escalator: Arc<crate::escalation::Escalator>,
    catalogue: Arc<Catalogue>,
    chat: Arc<crate::chat::core::ChatCore>,
    /// The connected chat platforms (the console always), and what they hand events to.
    platforms: Vec<Box<dyn crate::chat::platform::Platform>>,
    handler: Arc<dyn crate::chat::platform::ChatHandler>,
    deliver_wake: Arc<tokio::sync::Notify>,
    /// What each background part is doing, for `/readyz`.
    health: Arc<crate::health::Health>,
    /// The server's header-read timeout and connection cap.
    limits: crate::server::ConnectionLimits,
    /// `[store] retention`: what the pruning loop keeps.
    retention: std::time::Duration,
    /// `[[monitors]]` and their loop.
    monitors: Arc<crate::monitor::Monitors>,
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
        let monitors = crate::monitor::build(&config, &catalogue)
            .map_err(|errors| anyhow::anyhow!("{}", crate::source::LoadErrors(errors)))?;
        let store = crate::store::open(config.store.url.get_ref().expose())
            .await
            .map_err(|error| anyhow::anyhow!("{error}"))?;
        let directory =
            crate::escalation::Directory::from_config(&config).map_err(|error| anyhow::anyhow!("{error}"))?;
        let templates =
            crate::incident::summary::Templates::from_config(&config).map_err(|error| anyhow::anyhow!("{error}"))?;
        let escalator = Arc::new(
            crate::escalation::Escalator::new(store, Arc::new(directory), clock.clone())
                .with_templates(templates)
                .with_checklists(
                    config.checklists.iter().map(crate::incident::tasks::Checklist::from_config).collect(),
                ),
        );
        let listen = config.server.listen.get_ref().0.clone();
        let listener =
            tokio::net::TcpListener::bind(&listen).await.with_context(|| format!("cannot listen on {listen}"))?;
        let local = listener.local_addr()?;
        let access = Arc::new(crate::chat::console::guard::Access::new(
            local,
            config.server.console_token.clone(),
            &config.console,
        ));
        if let Some(reason) = access.shut_reason() {
            tracing::warn!("{reason}");
        }
        let api_token_set = config.server.api_token.as_ref().is_some_and(|token| !token.is_empty());
        if !api_token_set && !local.ip().is_loopback() {
            tracing::warn!("{}", crate::server::api_closed_reason(local));
        }

        let deliver_wake = Arc::new(tokio::sync::Notify::new());
        let health = crate::health::Health::new();
        // The timer loop pages people: without it the bot is not ready.
        health.register("timers", true);
        let context = crate::chat::platform::Context {
            catalogue: catalogue.clone(),
            escalator: escalator.clone(),
            health: health.clone(),
            console_access: access.clone(),
        };
        let platforms = crate::chat::platform::from_config(&config, &context)?;
        let chat = crate::chat::core::ChatCore::new(crate::chat::core::CoreParts {
            catalogue: catalogue.clone(),
            runner: runner(&config),
            escalator: escalator.clone(),
            permissions: crate::chat::core::Permissions::from_config(&config.permissions),
            adapters: platforms.iter().map(|platform| platform.adapter()).collect(),
            deliver: deliver_wake.clone(),
            per_person: config.commands.per_person,
        });
        let handler: Arc<dyn crate::chat::platform::ChatHandler> = Arc::new(chat.clone());
        let monitors = Arc::new(crate::monitor::Monitors::new(
            monitors,
            escalator.clone(),
            runner(&config),
            Arc::new(chat.clone()),
        ));

        let alerts = Arc::new(crate::ingest::AlertService::new(
            crate::ingest::Ingestor::start(escalator.clone(), health.clone(), config.alerts.reopen_within.get_ref().0),
            crate::ingest::Routes::from_config(&config.routes),
            escalator.clone(),
            Arc::new(chat.clone()),
        ));
        let state = crate::server::AppState {
            escalator: escalator.clone(),
            api_token: config.server.api_token.clone(),
            metrics_token: config.server.metrics_token.clone(),
            listen: local,
            console: access,
            alerts,
            health: health.clone(),
            monitors: monitors.clone(),
        };
        let mut router = crate::server::router(state);
        for platform in &platforms {
            router = router.merge(platform.routes(&handler).unwrap_or_default());
        }
        // Host names are checked for every route, the platforms' webhooks included (SPEC §9).
        let allowed_hosts: Vec<String> =
            config.console.allowed_hosts.iter().map(|host| host.get_ref().clone()).collect();
        let host_guard = Arc::new(crate::server::HostGuard::new(local, &allowed_hosts));
        let router = router.layer(axum::middleware::from_fn_with_state(host_guard, crate::server::check_host));
        Ok(App {
            listener,
            router,
            escalator,
            catalogue,
            chat,
            platforms,
            handler,
            deliver_wake,
            health,
            retention: config.store.retention.get_ref().0,
            monitors,
            limits: crate::server::ConnectionLimits {
                header_timeout: config.server.header_timeout.get_ref().0,
                max_connections: *config.server.max_connections.get_ref(),
            },
        })
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

    /// The chat core, for tests that step its loops (`expire_due`) instead of waiting for them.
    pub fn chat(&self) -> Arc<crate::chat::core::ChatCore> {
        self.chat.clone()
    }

    /// The monitors, for tests that step them (`run_due`) instead of waiting for their loop.
    pub fn monitors(&self) -> Arc<crate::monitor::Monitors> {
        self.monitors.clone()
    }

    /// Serves until `shutdown` is cancelled; in-flight requests finish first.
    pub async fn run_until_stopped(self, shutdown: tokio_util::sync::CancellationToken) -> anyhow::Result<()> {
        // Every loop is supervised: one that panics is logged, shown by /readyz and restarted.
        let supervise = |part: &str, make: Box<dyn Fn() -> futures::future::BoxFuture<'static, ()> + Send>| {
            crate::health::supervise(part, self.health.clone(), shutdown.clone(), make)
        };
        let (escalator, stop) = (self.escalator.clone(), shutdown.clone());
        let mut tasks = vec![supervise("timers", Box::new(move || Box::pin(escalator.clone().run(stop.clone()))))];
        let (chat, stop) = (self.chat.clone(), shutdown.clone());
        tasks.push(supervise("expiry", Box::new(move || Box::pin(chat.clone().run_expiry(stop.clone())))));
        let (monitors, stop) = (self.monitors.clone(), shutdown.clone());
        tasks.push(supervise("monitors", Box::new(move || Box::pin(monitors.clone().run(stop.clone())))));
        let (escalator, retention, stop) = (self.escalator.clone(), self.retention, shutdown.clone());
        tasks.push(supervise(
            "retention",
            Box::new(move || Box::pin(prune_every_hour(escalator.clone(), retention, stop.clone()))),
        ));
        let adapters = self
            .platforms
            .iter()
            .map(|platform| {
                let adapter = platform.adapter();
                (adapter.platform(), adapter)
            })
            .collect();
        let deliverer = crate::chat::deliver::Deliverer::with_health(
            self.escalator.clone(),
            adapters,
            self.deliver_wake.clone(),
            self.health.clone(),
        );
        tasks.extend(Arc::new(deliverer).spawn(shutdown.clone()));
        for platform in &self.platforms {
            tasks.extend(platform.tasks(&self.handler, &shutdown));
        }
        // The peer's address reaches the handlers: `[console] trusted_proxies` and the sign-in
        // rate limit need it. Open console pages end their event streams when `shutdown` is
        // cancelled, so the graceful shutdown can finish.
        let stopping = shutdown.clone();
        crate::server::serve(self.listener, self.router, self.limits, async move { stopping.cancelled().await }).await;
        shutdown.cancel();
        for task in tasks {
            let _ = task.await;
        }
        Ok(())
    }
}

/// Deletes what `[store] retention` lets go, at start and then every hour, until `shutdown`.
async fn prune_every_hour(
    escalator: Arc<crate::escalation::Escalator>,
    retention: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let keep = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::days(90));
    loop {
        match escalator.store().prune(escalator.now() - keep).await {
            Ok(pruned) if pruned == crate::store::Pruned::default() => {}
            Ok(pruned) => tracing::info!(
                seen_events = pruned.seen_events,
                alerts = pruned.alerts,
                outbox = pruned.outbox,
                console_messages = pruned.console_messages,
                "Pruned rows older than the retention"
            ),
            Err(error) => tracing::warn!(%error, "Pruning old rows failed; trying again in an hour"),
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(3600)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
