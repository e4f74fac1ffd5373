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
        .with_max_output(config.commands.max_output.0)
        .with_max_running(config.commands.max_running)
}

/// The running bot: HTTP server, store, timer engine, chat core and adapters, built from a
/// configuration.
pub struct App {
    listener: tokio::net::TcpListener,
    router: axum::Router,
    escalator: Arc<crate::escalation::Escalator>,
    catalogue: Arc<Catalogue>,
    chat: Arc<crate::chat::core::ChatCore>,
    console: Arc<crate::chat::console::web::Console>,
    deliver_wake: Arc<tokio::sync::Notify>,
    /// What each background part is doing, for `/readyz`.
    health: Arc<crate::health::Health>,
    /// The server's header-read timeout and connection cap.
    limits: crate::server::ConnectionLimits,
    /// `[store] retention`: what the pruning loop keeps.
    retention: std::time::Duration,
    /// Slack in Socket Mode: connected when the app runs.
    slack_socket: Option<crate::config::SlackConfig>,
    /// Discord: its commands are registered, and without a public key its gateway connected,
    /// when the app runs.
    discord: Option<DiscordStart>,
}

/// What Discord does once the app runs.
struct DiscordStart {
    adapter: Arc<crate::chat::discord::DiscordAdapter>,
    gateway: bool,
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
        let escalator = Arc::new(
            crate::escalation::Escalator::new(store, Arc::new(directory), clock.clone()).with_templates(templates),
        );

        let deliver_wake = Arc::new(tokio::sync::Notify::new());
        let health = crate::health::Health::new();
        // The timer loop pages people: without it the bot is not ready.
        health.register("timers", true);
        // The web console is always there: it is the chat platform of a bot with no other.
        let console = Arc::new(crate::chat::console::ConsoleAdapter::new(escalator.store().clone(), clock.clone()));
        let mut chat = crate::chat::core::ChatCore::new(
            catalogue.clone(),
            runner(&config),
            escalator.clone(),
            crate::chat::core::Permissions::from_config(&config.permissions),
            deliver_wake.clone(),
        )
        .with_per_person(config.commands.per_person)
        .with_adapter(console.clone());
        // Slack starts when a bot token is set: Socket Mode with an app token, else HTTP mode.
        let slack =
            config.slack.as_ref().filter(|slack| slack.bot_token.as_ref().is_some_and(|token| !token.is_empty()));
        let mut slack_adapter = None;
        if let Some(slack_config) = slack {
            let adapter = Arc::new(crate::chat::slack::SlackAdapter::new(slack_config).context("cannot set up Slack")?);
            chat = chat.with_adapter(adapter.clone());
            slack_adapter = Some(adapter);
        }
        // Discord starts when a token is set: the HTTP endpoint with a public key, else the gateway.
        let discord = config.discord.as_ref().filter(|discord| discord.enabled());
        let mut discord_adapter = None;
        if let Some(discord_config) = discord {
            let adapter =
                Arc::new(crate::chat::discord::DiscordAdapter::new(discord_config).context("cannot set up Discord")?);
            chat = chat.with_adapter(adapter.clone());
            discord_adapter = Some(adapter);
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
            crate::ingest::Ingestor::start(escalator.clone(), health.clone()),
            crate::ingest::Routes::from_config(&config.routes),
            escalator.clone(),
            Arc::new(chat.clone()),
        ));
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
        let state = crate::server::AppState {
            escalator: escalator.clone(),
            api_token: config.server.api_token.clone(),
            metrics_token: config.server.metrics_token.clone(),
            listen: local,
            console: access.clone(),
            alerts,
            health: health.clone(),
        };
        let console_web =
            Arc::new(crate::chat::console::web::Console::new(chat.clone(), console, catalogue.clone(), access));
        let mut router = crate::server::router(state).merge(crate::chat::console::web::routes(console_web.clone()));
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
        let mut discord_start = None;
        if let (Some(discord_config), Some(adapter)) = (discord, discord_adapter) {
            let public_key =
                discord_config.public_key.as_ref().map(|key| key.get_ref().trim()).filter(|key| !key.is_empty());
            if let Some(public_key) = public_key {
                let key = crate::chat::discord::http::public_key(public_key)?;
                let handler: Arc<dyn crate::chat::discord::DiscordHandler> = Arc::new(chat.clone());
                router =
                    router.merge(crate::chat::discord::http::routes(handler, adapter.clone(), catalogue.clone(), key));
            }
            discord_start = Some(DiscordStart { adapter, gateway: public_key.is_none() });
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
            console: console_web,
            deliver_wake,
            health,
            retention: config.store.retention.get_ref().0,
            limits: crate::server::ConnectionLimits {
                header_timeout: config.server.header_timeout.get_ref().0,
                max_connections: *config.server.max_connections.get_ref(),
            },
            slack_socket,
            discord: discord_start,
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

    pub fn chat(&self) -> Arc<crate::chat::core::ChatCore> {
        self.chat.clone()
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
        let (escalator, retention, stop) = (self.escalator.clone(), self.retention, shutdown.clone());
        tasks.push(supervise(
            "retention",
            Box::new(move || Box::pin(prune_every_hour(escalator.clone(), retention, stop.clone()))),
        ));
        if !self.chat.adapters().is_empty() {
            let deliverer = crate::chat::deliver::Deliverer::with_health(
                self.escalator.clone(),
                self.chat.adapters().clone(),
                self.deliver_wake.clone(),
                self.health.clone(),
            );
            tasks.extend(Arc::new(deliverer).spawn(shutdown.clone()));
        }
        if let Some(slack_config) = self.slack_socket.clone() {
            let handler: Arc<dyn crate::chat::slack::SlackHandler> = Arc::new(self.chat.clone());
            let stop = shutdown.clone();
            tasks.push(supervise(
                "slack-socket-mode",
                Box::new(move || {
                    let (slack_config, handler, stop) = (slack_config.clone(), handler.clone(), stop.clone());
                    Box::pin(async move {
                        if let Err(error) =
                            crate::chat::slack::socket::run_socket_mode(&slack_config, handler, stop).await
                        {
                            tracing::error!(error = %format!("{error:#}"), "Slack Socket Mode stopped");
                        }
                    })
                }),
            ));
        }
        if let Some(discord) = &self.discord {
            tasks.extend(self.start_discord(discord, &shutdown));
        }
        let console = self.console.clone();
        let stopping = shutdown.clone();
        // Open console pages hold event streams; end them so the graceful shutdown can finish.
        let graceful = async move {
            stopping.cancelled().await;
            console.close_streams();
        };
        // The peer's address reaches the handlers: `[console] trusted_proxies` and the sign-in
        // rate limit need it.
        crate::server::serve(self.listener, self.router, self.limits, graceful).await;
        shutdown.cancel();
        for task in tasks {
            let _ = task.await;
        }
        Ok(())
    }

    /// Registers the slash commands once (retrying with backoff until Discord takes them) and,
    /// without a public endpoint, runs the gateway.
    fn start_discord(
        &self,
        discord: &DiscordStart,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        let adapter = discord.adapter.clone();
        let commands = crate::chat::discord::commands::definitions(&self.catalogue);
        let registration_shutdown = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            let mut wait = std::time::Duration::from_secs(5);
            loop {
                match adapter.register_commands(&commands).await {
                    Ok(count) => {
                        tracing::info!(count, "Registered the Discord slash commands");
                        return;
                    }
                    Err(error) => tracing::warn!(%error, retry_in_s = wait.as_secs(), "Registering the Discord slash commands failed"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = registration_shutdown.cancelled() => return,
                }
                wait = (wait * 2).min(std::time::Duration::from_secs(600));
            }
        }));
        if discord.gateway {
            let handler: Arc<dyn crate::chat::discord::DiscordHandler> = Arc::new(self.chat.clone());
            let adapter = discord.adapter.clone();
            let catalogue = self.catalogue.clone();
            let stop = shutdown.clone();
            tasks.push(crate::health::supervise("discord-gateway", self.health.clone(), shutdown.clone(), move || {
                let (handler, adapter, catalogue, stop) =
                    (handler.clone(), adapter.clone(), catalogue.clone(), stop.clone());
                async move {
                    if let Err(error) = crate::chat::discord::gateway::run(handler, adapter, catalogue, stop).await {
                        tracing::error!(error = %format!("{error:#}"), "The Discord gateway stopped");
                    }
                }
            }));
        }
        tasks
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
