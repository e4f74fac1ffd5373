//! Diagnoses in chat: a runbook's checks run and stream into one message (edited at most every
//! [`EDIT_INTERVAL`]), then the final verdicts, the output (inline or as a file), each check's
//! files (charts) and suggested remediations as buttons; a route's diagnosis finds its incident's thread, or goes straight
//! onto the timeline when there is no chat.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::time::Instant;

use super::context::{Context, CoreError};
use super::message::{Button, FileAttachment, Message};
use super::views::{self, CheckLine, DiagnosisView};
use super::{ChatAdapter, Origin};
use crate::check::Status;
use crate::config::Person;
use crate::incident::TimelineKind;
use crate::runbook::{Args, CheckEvent, CheckRun, Runbook, Runner};

pub use super::ack::EDIT_INTERVAL;
/// Output up to this size goes into the thread as a code block; beyond it, as a file.
const INLINE_OUTPUT_CHARS: usize = 2_500;
const INLINE_OUTPUT_LINES: usize = 40;
/// How many checks' worth of `max_output` one diagnosis keeps for its output file; lines past
/// that are counted, not kept, so memory stays bounded however many checks print.
const KEPT_OUTPUT_CHECKS: usize = 4;
/// How long a route's runbook waits for the incident's thread before it runs without chat.
pub const THREAD_WAIT: Duration = Duration::from_secs(15);

pub(crate) struct Diagnoses {
    context: Arc<Context>,
    runner: Runner,
    /// Diagnoses one person may start per minute (`[commands] per_person`).
    per_person: usize,
    /// When each person started their diagnoses of the last minute.
    recent: Mutex<HashMap<String, VecDeque<DateTime<Utc>>>>,
}

impl Diagnoses {
    pub(crate) fn new(context: Arc<Context>, runner: Runner, per_person: usize) -> Self {
        Self { context, runner, per_person: per_person.max(1), recent: Mutex::default() }
    }

    /// Starts a diagnosis the person of `origin` asked for, in the background; or says how long
    /// they must wait when they started `per_person` of them in the last minute.
    pub(crate) fn start(self: &Arc<Self>, origin: Origin, runbook: Arc<Runbook>, args: Args) -> Result<(), String> {
        self.admit(&origin)?;
        let diagnoses = self.clone();
        tokio::spawn(async move {
            let topic = runbook.name.clone();
            if let Err(error) = diagnoses.diagnose(origin, runbook, args).await {
                tracing::warn!(%error, topic, "A diagnosis could not be posted");
            }
        });
        Ok(())
    }

    /// Counts a diagnosis the person of `origin` starts now, or says how long they must wait.
    fn admit(&self, origin: &Origin) -> Result<(), String> {
        let now = self.context.now();
        let window = chrono::Duration::minutes(1);
        let mut recent = self.recent.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if recent.len() > 10_000 {
            recent.retain(|_, starts| starts.back().is_some_and(|at| *at > now - window));
        }
        let starts = recent.entry(origin.user.to_string()).or_default();
        while starts.front().is_some_and(|at| *at <= now - window) {
            starts.pop_front();
        }
        if let Some(oldest) = starts.front()
            && starts.len() >= self.per_person
        {
            let wait = (*oldest + window - now).num_seconds().max(1);
            return Err(format!(
                "you started {} diagnoses in the last minute, the most one person may ([commands] per_person); \
                 try again in {wait} s",
                starts.len()
            ));
        }
        starts.push_back(now);
        Ok(())
    }

    /// Runs `topic` for an incident opened by an alert: in the incident's thread once its
    /// notification is posted, or — with no chat platform — straight onto the timeline.
    pub(crate) fn diagnose_incident(self: &Arc<Self>, incident_id: i64, topic: &str, source: &str) {
        let diagnoses = self.clone();
        let topic = topic.to_string();
        let requester = Person { platform: "alert".to_string(), id: source.to_string() };
        tokio::spawn(async move {
            let Some(runbook) = diagnoses.context.catalogue.get(&topic) else {
                tracing::error!(topic, incident = incident_id, "A route names a runbook that is not loaded");
                return;
            };
            let args = match runbook.bind_args(&[]) {
                Ok(args) => args,
                Err(error) => {
                    let detail = json!({"topic": topic, "error": error.to_string()});
                    let _ = diagnoses
                        .context
                        .escalator
                        .record(incident_id, TimelineKind::Diagnosis, Some(&requester.to_string()), detail)
                        .await;
                    return;
                }
            };
            if let Some((platform, channel, message)) = diagnoses.wait_for_thread(incident_id).await {
                let origin = Origin { platform, user: requester.clone(), channel, thread: Some(message) };
                if let Err(error) = diagnoses.diagnose(origin, runbook.clone(), args.clone()).await {
                    tracing::warn!(%error, incident = incident_id, "The route's diagnosis could not be posted");
                }
                return;
            }
            diagnoses.diagnose_without_chat(incident_id, runbook, args, &requester).await;
        });
    }

    /// Where an incident's thread is, once its notification is posted: a team's own chat
    /// platform first (the console shows results on the timeline); any platform's thread if
    /// that one never appears within [`THREAD_WAIT`]; `None` with no platform to wait for.
    async fn wait_for_thread(&self, incident_id: i64) -> Option<(&'static str, String, String)> {
        let store = self.context.store().clone();
        let by_preference = || {
            let external = self.context.adapters.iter().filter(|(platform, _)| **platform != "console");
            external.chain(self.context.adapters.iter().filter(|(platform, _)| **platform == "console"))
        };
        let wanted = by_preference().find(|(_, adapter)| adapter.incident_channel().is_some()).map(|(p, _)| *p);
        let deadline = Instant::now() + THREAD_WAIT;
        while wanted.is_some() {
            let timed_out = Instant::now() >= deadline;
            if let Ok(incident) = store.incident(incident_id).await {
                let home = by_preference().filter(|(platform, _)| timed_out || Some(**platform) == wanted).find_map(
                    |(platform, _)| {
                        let home = incident.chat.get(*platform)?;
                        Some((*platform, home.channel.clone(), home.message.clone()))
                    },
                );
                if home.is_some() {
                    return home;
                }
            }
            if timed_out {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        None
    }

    /// Posts a monitor's run — already run, already on the timeline — into its incident's
    /// thread once the thread exists: `headline`, then the finished diagnosis.
    pub(crate) fn post_run(
        self: &Arc<Self>,
        incident_id: i64,
        headline: String,
        runbook: Arc<Runbook>,
        args: Args,
        results: Vec<CheckRun>,
    ) {
        let diagnoses = self.clone();
        tokio::spawn(async move {
            let Some((platform, channel, thread)) = diagnoses.wait_for_thread(incident_id).await else { return };
            let Ok(adapter) = diagnoses.context.adapter(platform) else { return };
            let lines: Vec<CheckLine> = results
                .iter()
                .map(|run| CheckLine::Done {
                    name: run.name.clone(),
                    status: run.status,
                    summary: run.summary.clone(),
                    duration_ms: run.duration.as_millis() as u64,
                })
                .collect();
            let worst = results.iter().map(|run| run.status).max().unwrap_or(Status::Ok);
            let suggestions = diagnoses.suggestions(&runbook, &args, &results);
            let message = views::diagnosis(DiagnosisView {
                topic: &runbook.name,
                summary: &runbook.summary,
                args: &args_line(&args),
                requested_by: "a monitor",
                runbook_url: runbook.runbook_url.as_deref(),
                lines: &lines,
                finished: Some(worst),
                suggestions,
            });
            for message in [Message::new().text(headline), message] {
                if let Err(error) = adapter.post(&channel, Some(&thread), &message).await {
                    tracing::warn!(%error, incident = incident_id, "A monitor's run could not be posted");
                    return;
                }
            }
        });
    }

    async fn diagnose_without_chat(&self, incident_id: i64, runbook: Arc<Runbook>, args: Args, requester: &Person) {
        let mut events = self.runner.run(runbook.clone(), args.clone());
        let mut results: Vec<CheckRun> = Vec::new();
        while let Some(event) = events.recv().await {
            if let CheckEvent::Finished(run) = event {
                results.push(run);
            }
        }
        let detail = timeline_detail(&runbook, &args_line(&args), &results);
        if let Err(error) = self
            .context
            .escalator
            .record(incident_id, TimelineKind::Diagnosis, Some(&requester.to_string()), detail)
            .await
        {
            tracing::error!(%error, incident = incident_id, "Recording the route's diagnosis failed");
        }
    }

    /// Posts one message, edits it as checks finish (coalesced to one edit per
    /// [`EDIT_INTERVAL`]), then the final verdicts, the output, and suggested remediations.
    async fn diagnose(&self, origin: Origin, runbook: Arc<Runbook>, args: Args) -> Result<(), CoreError> {
        let adapter = self.context.adapter(origin.platform)?;
        let incident_id = self.context.incident_in_thread(&origin).await?;
        let requested_by = self.context.mention(&origin.user);
        let args_text = args_line(&args);
        let mut lines: Vec<CheckLine> =
            runbook.checks.iter().map(|check| CheckLine::Running { name: check.name.clone() }).collect();
        let render = |lines: &[CheckLine], finished: Option<Status>, suggestions: Vec<Button>| {
            views::diagnosis(DiagnosisView {
                topic: &runbook.name,
                summary: &runbook.summary,
                args: &args_text,
                requested_by: &requested_by,
                runbook_url: runbook.runbook_url.as_deref(),
                lines,
                finished,
                suggestions,
            })
            .mentioning([origin.user.to_string()])
        };
        let posted = adapter.post(&origin.channel, origin.thread.as_deref(), &render(&lines, None, Vec::new())).await?;
        let output_thread = origin.thread.clone().unwrap_or_else(|| posted.id.clone());

        let mut events = self.runner.run(runbook.clone(), args.clone());
        let mut results: Vec<CheckRun> = Vec::new();
        let mut output: BTreeMap<String, String> = BTreeMap::new();
        let mut output_lines = 0usize;
        let mut dropped_lines = 0usize;
        let mut kept_bytes = 0usize;
        let keep_at_most = self.runner.max_output().saturating_mul(KEPT_OUTPUT_CHECKS);
        let mut last_edit = Instant::now();
        let mut dirty = false;
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    None => break,
                    Some(CheckEvent::Line { check, line, .. }) => {
                        output_lines += 1;
                        // Kept as one text per check: no per-line overhead, bounded by bytes.
                        if kept_bytes + line.len() < keep_at_most {
                            kept_bytes += line.len() + 1;
                            let text = output.entry(check).or_default();
                            text.push_str(&line);
                            text.push('\n');
                        } else {
                            dropped_lines += 1;
                        }
                    }
                    Some(CheckEvent::Finished(run)) => {
                        if let Some(slot) = runbook.checks.iter().position(|check| check.name == run.name) {
                            lines[slot] = CheckLine::Done { name: run.name.clone(), status: run.status, summary: run.summary.clone(), duration_ms: run.duration.as_millis() as u64 };
                        }
                        results.push(run);
                        dirty = true;
                    }
                },
                _ = tokio::time::sleep_until(last_edit + EDIT_INTERVAL), if dirty => {
                    if let Err(error) = adapter.update(&posted, &render(&lines, None, Vec::new())).await {
                        tracing::warn!(%error, "Editing the diagnosis message failed");
                    }
                    last_edit = Instant::now();
                    dirty = false;
                }
            }
        }
        let worst = results.iter().map(|run| run.status).max().unwrap_or(Status::Ok);
        let suggestions = self.suggestions(&runbook, &args, &results);
        tokio::time::sleep_until(last_edit + EDIT_INTERVAL).await;
        adapter.update(&posted, &render(&lines, Some(worst), suggestions)).await?;

        if !output.is_empty() {
            let counts = (output_lines, dropped_lines);
            self.post_output(adapter.as_ref(), &origin.channel, &output_thread, &runbook.name, &output, counts).await;
        }
        // Each check's files (a chart) under the verdicts, in the checks' order.
        for check in &runbook.checks {
            let files = results.iter().filter(|run| run.name == check.name).flat_map(|run| &run.attachments);
            for file in files {
                if let Err(error) = adapter.upload(&origin.channel, Some(&output_thread), file).await {
                    tracing::warn!(%error, check = check.name, file = file.filename, "Posting a check's file failed");
                }
            }
        }
        if let Some(id) = incident_id {
            let detail = timeline_detail(&runbook, &args_text, &results);
            self.context.escalator.record(id, TimelineKind::Diagnosis, Some(&origin.user.to_string()), detail).await?;
        }
        Ok(())
    }

    /// Remediations whose `suggest_when` holds over these results, as buttons.
    fn suggestions(&self, runbook: &Runbook, args: &Args, results: &[CheckRun]) -> Vec<Button> {
        let checks: serde_json::Map<String, serde_json::Value> = results
            .iter()
            .map(|run| (run.name.clone(), json!({"status": run.status, "summary": run.summary, "data": run.data})))
            .collect();
        let args_json: serde_json::Map<String, serde_json::Value> =
            args.iter().map(|(key, value)| (key.clone(), json!(value))).collect();
        let variables: serde_json::Map<String, serde_json::Value> = [
            ("checks".to_string(), serde_json::Value::Object(checks)),
            ("args".to_string(), serde_json::Value::Object(args_json)),
        ]
        .into_iter()
        .collect();
        runbook
            .remediations
            .iter()
            .filter(|remediation| match &remediation.suggest_when {
                Some(expr) => expr.eval_bool(&variables).unwrap_or_else(|error| {
                    tracing::debug!(remediation = remediation.name, %error, "suggest_when did not evaluate");
                    false
                }),
                None => false,
            })
            .map(|remediation| {
                let used: Vec<(String, String)> = args
                    .iter()
                    .filter(|(name, _)| remediation.args.contains(*name))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                Button::new(
                    format!("Run {}", remediation.name),
                    views::ACTION_REMEDIATE,
                    views::remediation_value(&remediation.name, &used),
                )
                .danger()
            })
            .collect()
    }

    async fn post_output(
        &self,
        adapter: &dyn ChatAdapter,
        channel: &str,
        thread: &str,
        topic: &str,
        output: &BTreeMap<String, String>,
        (total_lines, dropped_lines): (usize, usize),
    ) {
        let limit = adapter.limits().max_block_text;
        let result = match output_post(self.runner.redactor(), topic, output, (total_lines, dropped_lines), limit) {
            OutputPost::Inline(text) => {
                adapter.post(channel, Some(thread), &Message::new().code(text.trim_end())).await.map(|_| ())
            }
            OutputPost::File(file) => adapter.upload(channel, Some(thread), &file).await,
        };
        if let Err(error) = result {
            tracing::warn!(%error, "Posting the diagnosis output failed");
        }
    }
}

/// How a diagnosis's output goes into its thread.
pub enum OutputPost {
    /// Short enough for a code block.
    Inline(String),
    /// Too long: a file.
    File(FileAttachment),
}

/// The output of a diagnosis of `topic` (each check's lines, `dropped_lines` of them not kept)
/// as it is posted on a platform whose blocks hold `max_block_text` characters: inline when
/// short, else as a file (what `firebell run --save` writes, too).
pub fn output_post(
    redactor: &crate::redact::Redactor,
    topic: &str,
    output: &BTreeMap<String, String>,
    (total_lines, dropped_lines): (usize, usize),
    max_block_text: usize,
) -> OutputPost {
    let mut text = String::new();
    for (check, lines) in output {
        text.push_str(&format!("== {check} ==\n"));
        text.push_str(lines);
    }
    if dropped_lines > 0 {
        text.push_str(&format!("… {dropped_lines} more lines not kept\n"));
    }
    // The lines were redacted one by one; the joined text again, for secrets that span
    // lines (a key block, a folded token), before any of it is posted.
    let text = redactor.redact(&text).into_owned();
    let limit = INLINE_OUTPUT_CHARS.min(max_block_text.saturating_sub(100));
    if text.chars().count() <= limit && total_lines <= INLINE_OUTPUT_LINES {
        OutputPost::Inline(text)
    } else {
        OutputPost::File(FileAttachment {
            filename: format!("diagnose-{topic}-output.txt"),
            title: format!("Output of diagnose {topic} ({total_lines} lines)"),
            content: text.into_bytes(),
        })
    }
}

/// `key=value key=value`, as a diagnosis shows its arguments.
fn args_line(args: &Args) -> String {
    args.iter().map(|(key, value)| format!("{key}={value}")).collect::<Vec<_>>().join(" ")
}

/// A diagnosis as its timeline event records it: topic, arguments, the worst verdict and each
/// check's verdict.
fn timeline_detail(runbook: &Runbook, args: &str, results: &[CheckRun]) -> serde_json::Value {
    let worst = results.iter().map(|run| run.status).max().unwrap_or(Status::Ok);
    let checks: Vec<serde_json::Value> =
        results.iter().map(|run| json!({"name": run.name, "status": run.status, "summary": run.summary})).collect();
    json!({"topic": runbook.name, "args": args, "status": worst, "checks": checks})
}
