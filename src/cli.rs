//! The command line of SPEC §2. Exit codes: 0/1/2/3 follow the monitoring-plugin convention for
//! `run`; 64 is a usage error (unknown command, bad argument); 78 a broken config or runbook.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, Subcommand};
use serde_json::json;

use crate::app;
use crate::attachment::FileAttachment;
use crate::chat::{OutputPost, output_post};
use crate::check::{Status, Stream};
use crate::config::Config;
use crate::runbook::{Catalogue, CheckEvent, CheckRun, Runbook, parse_pairs};

pub const EXIT_USAGE: u8 = 64;
pub const EXIT_CONFIG: u8 = 78;

#[derive(Parser, Debug)]
#[command(name = "firebell", version, about = "Chat-ops bot for incident handling: runbooks as commands")]
struct Cli {
    /// Configuration file (default: $FIREBELL_CONFIG, then ./firebell.toml, then built-in defaults)
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<PathBuf>,
    /// Log lines as text (default) or as one JSON object per line
    #[arg(long, global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one runbook command here and stream its results: `firebell run diagnose queue queue=signals`
    Run {
        /// `diagnose TOPIC [key=value...]`
        #[arg(required = true, value_name = "WORDS")]
        words: Vec<String>,
        /// One JSON object per line instead of text
        #[arg(long)]
        json: bool,
        /// Write every file the bot would attach (charts, long output) into DIR, creating it
        #[arg(long, value_name = "DIR")]
        save: Option<PathBuf>,
    },
    /// The runbook catalogue
    Commands {
        #[command(subcommand)]
        action: CommandsAction,
    },
    /// Run the bot: HTTP server, escalation engine (and chat adapters when configured)
    Serve,
    /// Apply the store's migrations and exit
    Migrate,
    /// The audit log: remediation requests, approvals, denials, expiries and runs
    Audit {
        #[arg(long, default_value_t = 100)]
        limit: i64,
        #[arg(long)]
        json: bool,
    },
    /// Read incidents from the store
    Incidents {
        #[command(subcommand)]
        action: IncidentsAction,
    },
    /// The `[[monitors]]`: runbooks on a schedule
    Monitors {
        #[command(subcommand)]
        action: MonitorsAction,
    },
    /// Follow-ups assigned in incidents (`/incident followup`)
    Followups {
        #[command(subcommand)]
        action: FollowupsAction,
    },
}

#[derive(Subcommand, Debug)]
enum FollowupsAction {
    /// Open follow-ups of every incident, newest first (`--all` includes done ones)
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum MonitorsAction {
    /// Each monitor's topic, schedule, last verdict, last and next run, open incident
    List {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
enum IncidentsAction {
    /// Open incidents, newest first (`--all` includes resolved ones)
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// One incident with its timeline
    Show {
        id: i64,
        #[arg(long)]
        json: bool,
    },
    /// The post-mortem draft of an incident, in Markdown, from its record
    Postmortem { id: i64 },
}

#[derive(Subcommand, Debug)]
enum CommandsAction {
    /// List topics with their arguments, checks and remediations
    List {
        #[arg(long)]
        json: bool,
    },
    /// Validate every runbook file; problems are printed as file:line
    Check,
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return match error.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => ExitCode::SUCCESS,
                _ => ExitCode::from(EXIT_USAGE),
            };
        }
    };
    // The bot logs what it does; one-shot commands only warn.
    let default_level = if matches!(cli.command, Command::Serve) { "info" } else { "warn" };
    let filter = tracing_subscriber::EnvFilter::try_from_env("FIREBELL_LOG").unwrap_or_else(|_| default_level.into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).init(),
    }
    let config = match Config::discover(cli.config.as_deref()) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match cli.command {
        Command::Run { words, json, save } => run_command(&config, &words, json, save.as_deref()),
        Command::Commands { action: CommandsAction::List { json } } => list_commands(&config, json),
        Command::Commands { action: CommandsAction::Check } => check_commands(&config),
        Command::Serve => serve(config),
        Command::Migrate => with_store(&config, |store| async move {
            println!("store migrated ({})", store.backend());
            ExitCode::SUCCESS
        }),
        Command::Audit { limit, json } => with_store(&config, |store| async move {
            match store.audit(limit.max(1)).await {
                Ok(entries) if json => {
                    println!("{}", serde_json::to_string_pretty(&entries).expect("audit entries serialise"));
                    ExitCode::SUCCESS
                }
                Ok(entries) => {
                    if entries.is_empty() {
                        println!("the audit log is empty");
                    }
                    for entry in entries.iter().rev() {
                        let request = entry.request_id.map(|id| format!("request #{id}")).unwrap_or_default();
                        let incident = entry.incident_id.map(|id| format!(" incident #{id}")).unwrap_or_default();
                        println!(
                            "{}  {:<22} {:<18} {request}{incident}  {}",
                            entry.at.format("%Y-%m-%d %H:%M:%S"),
                            entry.action,
                            entry.actor.as_deref().unwrap_or("-"),
                            entry.detail
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("firebell: {error}");
                    ExitCode::from(1)
                }
            }
        }),
        Command::Incidents { action: IncidentsAction::List { all, json } } => with_store(&config, |store| async move {
            match store.incidents(all, 1000).await {
                Ok(incidents) if json => {
                    println!("{}", serde_json::to_string_pretty(&incidents).expect("incidents serialise"));
                    ExitCode::SUCCESS
                }
                Ok(incidents) => {
                    print_incidents(&incidents);
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("firebell: {error}");
                    ExitCode::from(1)
                }
            }
        }),
        Command::Incidents { action: IncidentsAction::Postmortem { id } } => {
            let templates = match crate::incident::summary::Templates::from_config(&config) {
                Ok(templates) => templates,
                Err(error) => {
                    eprintln!("firebell: {error}");
                    return ExitCode::from(EXIT_CONFIG);
                }
            };
            with_store(&config, |store| async move {
                let rendered = match store.incident(id).await {
                    Ok(incident) => templates.postmortem(&incident, chrono::Utc::now()),
                    Err(error @ (crate::store::StoreError::NotFound(_) | crate::store::StoreError::NoRequest(_))) => {
                        return usage(error);
                    }
                    Err(error) => Err(error.to_string()),
                };
                match rendered {
                    Ok(text) => {
                        print!("{text}");
                        ExitCode::SUCCESS
                    }
                    Err(error) => {
                        eprintln!("firebell: {error}");
                        ExitCode::from(1)
                    }
                }
            })
        }
        Command::Monitors { action: MonitorsAction::List { json } } => list_monitors(&config, json),
        Command::Followups { action: FollowupsAction::List { all, json } } => with_store(&config, |store| async move {
            let followups = match store.followups(all, 1000).await {
                Ok(followups) => followups,
                Err(error) => {
                    eprintln!("firebell: {error}");
                    return ExitCode::from(1);
                }
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&followups).expect("follow-ups serialise"));
                return ExitCode::SUCCESS;
            }
            if followups.is_empty() {
                println!("{}", if all { "no follow-ups" } else { "no open follow-ups" });
            }
            let time = |at: Option<chrono::DateTime<chrono::Utc>>| {
                at.map(|at| at.format("%Y-%m-%d %H:%M").to_string()).unwrap_or_else(|| "-".into())
            };
            for task in &followups {
                let state = match &task.done_by {
                    Some(by) => format!("done by {by}"),
                    None if task.done_at.is_some() => "done".to_string(),
                    None => "open".to_string(),
                };
                println!(
                    "#{:<5} incident #{:<5} {:<24} due {:<16} {:<20} {}",
                    task.id,
                    task.incident_id,
                    task.owner.as_deref().unwrap_or("-"),
                    time(task.due_at),
                    state,
                    task.text
                );
            }
            ExitCode::SUCCESS
        }),
        Command::Incidents { action: IncidentsAction::Show { id, json } } => with_store(&config, |store| async move {
            match store.incident(id).await {
                Ok(incident) if json => {
                    println!("{}", serde_json::to_string_pretty(&incident).expect("an incident serialises"));
                    ExitCode::SUCCESS
                }
                Ok(incident) => {
                    print_incident(&incident);
                    ExitCode::SUCCESS
                }
                Err(error @ (crate::store::StoreError::NotFound(_) | crate::store::StoreError::NoRequest(_))) => {
                    usage(error)
                }
                Err(error) => {
                    eprintln!("firebell: {error}");
                    ExitCode::from(1)
                }
            }
        }),
    }
}

fn list_monitors(config: &Config, json_output: bool) -> ExitCode {
    let catalogue = match load_or_report(config) {
        Ok(catalogue) => catalogue,
        Err(code) => return code,
    };
    let monitors = match crate::monitor::build(config, &catalogue) {
        Ok(monitors) => monitors,
        Err(errors) => {
            errors.iter().for_each(|error| eprintln!("{error}"));
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    with_store(config, |store| async move {
        let rows = match store.monitors().await {
            Ok(rows) => rows,
            Err(error) => {
                eprintln!("firebell: {error}");
                return ExitCode::from(1);
            }
        };
        let views = crate::monitor::views(monitors.iter(), &rows);
        if json_output {
            println!("{}", serde_json::to_string_pretty(&views).expect("monitors serialise"));
            return ExitCode::SUCCESS;
        }
        if views.is_empty() {
            println!("no [[monitors]] in the configuration");
        }
        let time = |at: Option<chrono::DateTime<chrono::Utc>>| {
            at.map(|at| at.format("%Y-%m-%d %H:%M:%S").to_string()).unwrap_or_else(|| "-".into())
        };
        for view in &views {
            println!(
                "{:<20} {:<12} {:<34} last {:<5} at {}  next {}  incident {}",
                view.name,
                view.topic,
                view.schedule,
                view.last_verdict.as_deref().unwrap_or("-"),
                time(view.last_run_at),
                time(view.next_run_at),
                view.incident_id.map(|id| format!("#{id}")).unwrap_or_else(|| "-".into())
            );
        }
        ExitCode::SUCCESS
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("the tokio runtime starts")
}

/// Opens the store (applying migrations) and runs `body` with it.
fn with_store<F, Fut>(config: &Config, body: F) -> ExitCode
where
    F: FnOnce(Arc<dyn crate::store::Store>) -> Fut,
    Fut: std::future::Future<Output = ExitCode>,
{
    runtime().block_on(async {
        match crate::store::open(config.store.url.get_ref().expose()).await {
            Ok(store) => body(store).await,
            Err(error) => {
                eprintln!("firebell: {}", config.redactor().redact(&error.to_string()));
                ExitCode::from(EXIT_CONFIG)
            }
        }
    })
}

fn serve(config: Config) -> ExitCode {
    runtime().block_on(async {
        let redactor = config.redactor();
        let app = match app::App::build(config, Arc::new(crate::clock::SystemClock)).await {
            Ok(app) => app,
            Err(error) => {
                eprintln!("firebell: {}", redactor.redact(&format!("{error:#}")));
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        let shutdown = tokio_util::sync::CancellationToken::new();
        tokio::spawn(stop_on_signal(shutdown.clone()));
        tracing::info!(address = %app.address(), topics = app.catalogue().len(), "Firebell is listening on http://{}", app.address());
        match app.run_until_stopped(shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("firebell: {error:#}");
                ExitCode::from(1)
            }
        }
    })
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
async fn stop_on_signal(shutdown: tokio_util::sync::CancellationToken) {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM can be handled");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("Shutting down");
    shutdown.cancel();
}

fn print_incidents(incidents: &[crate::incident::Incident]) {
    if incidents.is_empty() {
        println!("no incidents");
        return;
    }
    let now = chrono::Utc::now();
    for incident in incidents {
        println!(
            "#{:<5} {:<12} {:<8} {:>10}  {}",
            incident.id,
            incident.status.name(),
            incident.severity.name(),
            crate::incident::human_duration(now - incident.started_at),
            incident.title
        );
    }
}

fn print_incident(incident: &crate::incident::Incident) {
    println!(
        "#{} {} — {} ({})",
        incident.id,
        incident.title,
        incident.status.name().to_uppercase(),
        incident.severity.name()
    );
    if let Some(impact) = &incident.impact {
        println!("impact: {impact}");
    }
    println!("started: {}", incident.started_at.to_rfc3339());
    for event in &incident.timeline {
        println!(
            "  {}  {:<22} {:<16} {}",
            event.at.format("%Y-%m-%d %H:%M:%S"),
            event.kind,
            event.by.as_deref().unwrap_or("-"),
            event.detail
        );
    }
    let templates = crate::incident::summary::Templates::shipped();
    let message = if incident.is_open() {
        templates.notification(incident, chrono::Utc::now())
    } else {
        templates.resolution(incident, chrono::Utc::now())
    };
    match message {
        Ok(text) => println!("\n{text}"),
        Err(error) => eprintln!("firebell: {error}"),
    }
}

fn load_or_report(config: &Config) -> Result<Catalogue, ExitCode> {
    let (catalogue, errors) = app::load_catalogue(config);
    if errors.is_empty() {
        return Ok(catalogue);
    }
    for error in &errors {
        eprintln!("{error}");
    }
    eprintln!("{} problem(s) in the runbooks; `firebell commands check` lists them", errors.len());
    Err(ExitCode::from(EXIT_CONFIG))
}

fn usage(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("firebell: {message}");
    ExitCode::from(EXIT_USAGE)
}

fn topic_list(catalogue: &Catalogue) -> String {
    catalogue
        .runbooks()
        .map(|runbook| format!("  {:<14} {}", runbook.name, runbook.summary))
        .collect::<Vec<_>>()
        .join("\n")
}

fn run_command(config: &Config, words: &[String], json_output: bool, save: Option<&Path>) -> ExitCode {
    let catalogue = match load_or_report(config) {
        Ok(catalogue) => catalogue,
        Err(code) => return code,
    };
    let (verb, rest) = words.split_first().expect("clap requires at least one word");
    match verb.as_str() {
        "diagnose" => {}
        "remediate" => {
            return usage(
                "remediations run only after someone approves them in chat (firebell serve); `firebell run` runs diagnoses: firebell run diagnose TOPIC",
            );
        }
        other => return usage(format!("unknown command '{other}'; valid: diagnose TOPIC [key=value...]")),
    }
    let Some((topic, arg_words)) = rest.split_first() else {
        println!("Topics (firebell run diagnose TOPIC [key=value...]):\n{}", topic_list(&catalogue));
        return ExitCode::SUCCESS;
    };
    let Some(runbook) = catalogue.get(topic) else {
        return usage(format!("unknown topic '{topic}'; valid topics: {}", catalogue.topic_names().join(", ")));
    };
    let args = match parse_pairs(arg_words).and_then(|pairs| runbook.bind_args(&pairs)) {
        Ok(args) => args,
        Err(error) => return usage(error),
    };
    if runbook.checks.is_empty() {
        println!("{} has no checks, only remediations; see `firebell commands list`", runbook.name);
        return ExitCode::SUCCESS;
    }
    if let Some(dir) = save
        && let Err(reason) = writable_folder(dir)
    {
        return usage(format!("--save {}: {reason}", dir.display()));
    }
    let (worst, files) = runtime().block_on(stream_run(config, runbook, args, json_output));
    if let Some(dir) = save
        && let Err(reason) = save_files(dir, &files, json_output)
    {
        return usage(format!("--save {}: {reason}", dir.display()));
    }
    ExitCode::from(worst.exit_code() as u8)
}

/// Creates `dir` if needed and proves a file can be written there, before any check runs.
fn writable_folder(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|error| format!("cannot create the folder: {error}"))?;
    let probe = dir.join(format!(".firebell-save-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|error| format!("cannot write into the folder: {error}"))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Writes `files` into `dir` (a second file of the same name gets `-2`, …) and says which.
fn save_files(dir: &Path, files: &[FileAttachment], json_output: bool) -> Result<(), String> {
    let mut stdout = std::io::stdout().lock();
    if files.is_empty() && !json_output {
        let _ = writeln!(stdout, "saved nothing in {}: no check drew a chart or printed long output", dir.display());
    }
    let mut used = std::collections::BTreeSet::new();
    for file in files {
        let mut name = file.filename.clone();
        let mut copy = 1;
        while !used.insert(name.clone()) {
            copy += 1;
            name = match file.filename.rsplit_once('.') {
                Some((stem, extension)) => format!("{stem}-{copy}.{extension}"),
                None => format!("{}-{copy}", file.filename),
            };
        }
        let path = dir.join(&name);
        std::fs::write(&path, &file.content).map_err(|error| format!("writing {} failed: {error}", path.display()))?;
        let line = if json_output {
            json!({"event": "saved", "path": path.display().to_string(), "title": file.title, "bytes": file.content.len()})
                .to_string()
        } else {
            format!("saved {} ({} bytes): {}", path.display(), file.content.len(), file.title)
        };
        let _ = writeln!(stdout, "{line}");
    }
    Ok(())
}

/// Runs the checks, printing each event; the worst verdict and the files the bot would attach.
async fn stream_run(
    config: &Config,
    runbook: Arc<Runbook>,
    args: crate::runbook::Args,
    json_output: bool,
) -> (Status, Vec<FileAttachment>) {
    let runner = app::runner(config);
    let started = Instant::now();
    let mut stdout = std::io::stdout().lock();
    if !json_output {
        let shown_args: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let _ = writeln!(stdout, "diagnose {} {} — {}", runbook.name, shown_args.join(" "), runbook.summary);
        if let Some(link) = &runbook.runbook_url {
            let _ = writeln!(stdout, "runbook: {link}");
        }
    }
    let mut events = runner.run(runbook.clone(), args);
    let mut results: Vec<CheckRun> = Vec::new();
    // Output as the chat keeps it for its file: one text per check, bounded by bytes.
    let mut output: BTreeMap<String, String> = BTreeMap::new();
    let (mut output_lines, mut dropped_lines, mut kept_bytes) = (0usize, 0usize, 0usize);
    let keep_at_most = runner.max_output().saturating_mul(4);
    while let Some(event) = events.recv().await {
        if let CheckEvent::Line { check, line, .. } = &event {
            output_lines += 1;
            if kept_bytes + line.len() < keep_at_most {
                kept_bytes += line.len() + 1;
                let text = output.entry(check.clone()).or_default();
                text.push_str(line);
                text.push('\n');
            } else {
                dropped_lines += 1;
            }
        }
        let line = match &event {
            CheckEvent::Line { check, stream, line } if json_output => {
                json!({"event": "line", "name": check, "stream": stream, "line": line}).to_string()
            }
            CheckEvent::Line { check, stream, line } => {
                let marker = if *stream == Stream::Stderr { "!" } else { "|" };
                format!("      {check} {marker} {line}")
            }
            CheckEvent::Finished(run) if json_output => {
                let mut value = serde_json::to_value(run).expect("a check result serialises");
                value.as_object_mut().expect("an object").insert("event".into(), json!("check"));
                value.to_string()
            }
            CheckEvent::Finished(run) => format!(
                "{:<5} {} — {} ({} ms)",
                run.status.name().to_uppercase(),
                run.name,
                run.summary,
                run.duration.as_millis()
            ),
        };
        let _ = writeln!(stdout, "{line}");
        let _ = stdout.flush();
        if let CheckEvent::Finished(run) = event {
            results.push(run);
        }
    }
    let worst = results.iter().map(|run| run.status).max().unwrap_or(Status::Ok);
    let count = |status: Status| results.iter().filter(|run| run.status == status).count();
    if json_output {
        let done = json!({
            "event": "done", "status": worst, "duration_ms": started.elapsed().as_millis() as u64,
            "ok": count(Status::Ok), "warn": count(Status::Warn), "crit": count(Status::Crit), "error": count(Status::Error),
        });
        let _ = writeln!(stdout, "{done}");
    } else {
        let _ = writeln!(
            stdout,
            "{} — {} checks: {} ok, {} warn, {} crit, {} error in {:.1} s",
            worst.name().to_uppercase(),
            results.len(),
            count(Status::Ok),
            count(Status::Warn),
            count(Status::Crit),
            count(Status::Error),
            started.elapsed().as_secs_f64()
        );
    }
    let mut files = Vec::new();
    if !output.is_empty()
        && let OutputPost::File(file) =
            output_post(runner.redactor(), &runbook.name, &output, (output_lines, dropped_lines), usize::MAX)
    {
        files.push(file);
    }
    // Each check's files in the runbook's order, as the chat posts them.
    for check in &runbook.checks {
        files.extend(results.iter().filter(|run| run.name == check.name).flat_map(|run| run.attachments.clone()));
    }
    (worst, files)
}

fn list_commands(config: &Config, json_output: bool) -> ExitCode {
    let catalogue = match load_or_report(config) {
        Ok(catalogue) => catalogue,
        Err(code) => return code,
    };
    if json_output {
        let topics: Vec<serde_json::Value> = catalogue
            .runbooks()
            .map(|runbook| {
                json!({
                    "name": runbook.name,
                    "summary": runbook.summary,
                    "runbook": runbook.runbook_url,
                    "file": runbook.path.display().to_string(),
                    "args": runbook.args.values().map(|arg| json!({"name": arg.name, "pattern": arg.pattern_source, "default": arg.default, "help": arg.help})).collect::<Vec<_>>(),
                    "checks": runbook.checks.iter().map(|check| json!({"name": check.name, "kind": check.action.kind(), "timeout_ms": check.timeout.as_millis() as u64})).collect::<Vec<_>>(),
                    "remediations": runbook.remediations.iter().map(|r| json!({"name": r.name, "summary": r.summary, "kind": r.action.kind(), "approvals": r.approvals, "approvers": r.approvers, "self_approve": r.self_approve})).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&topics).expect("the catalogue serialises"));
        return ExitCode::SUCCESS;
    }
    for runbook in catalogue.runbooks() {
        println!("{:<14} {}", runbook.name, runbook.summary);
        for arg in runbook.args.values() {
            println!("    arg  {}", arg.describe());
        }
        for check in &runbook.checks {
            println!("    check  [{}] {}", check.action.kind(), check.name);
        }
        for remediation in &runbook.remediations {
            println!(
                "    remediate  {} — {} ({} approval(s) from {})",
                remediation.name,
                remediation.summary,
                remediation.approvals,
                remediation.approvers.join(", ")
            );
        }
    }
    ExitCode::SUCCESS
}

fn check_commands(config: &Config) -> ExitCode {
    let files = match app::read_command_files(config) {
        Ok(files) => files,
        Err(errors) => {
            errors.iter().for_each(|error| println!("{error}"));
            return ExitCode::from(1);
        }
    };
    let (catalogue, mut errors) = Catalogue::load(&files, &app::target_refs(config));
    // The monitors name topics and arguments of these files: checked with them.
    if let Err(monitor_errors) = crate::monitor::build(config, &catalogue) {
        errors.extend(monitor_errors);
    }
    for error in &errors {
        println!("{error}");
    }
    if config.path.is_none() {
        println!("note: no firebell.toml, so target names were not checked (pass --config to check them)");
    }
    let checks: usize = catalogue.runbooks().map(|runbook| runbook.checks.len()).sum();
    let remediations: usize = catalogue.runbooks().map(|runbook| runbook.remediations.len()).sum();
    if errors.is_empty() {
        println!("ok: {} files, {} topics, {checks} checks, {remediations} remediations", files.len(), catalogue.len());
        ExitCode::SUCCESS
    } else {
        println!("{} problem(s) in {} files", errors.len(), files.len());
        ExitCode::from(1)
    }
}
