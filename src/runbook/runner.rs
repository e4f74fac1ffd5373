//! Runs the checks of one runbook: concurrently under a bound, each with its timeout and its
//! panics caught, judged by the runbook's expressions, and streamed as each one finishes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::{Semaphore, mpsc};

use super::{CheckSpec, Runbook};
use crate::attachment::FileAttachment;
use crate::check::{Action, CheckContext, LineSink, Observation, SUMMARY_CHARS, Status, Stream, Targets, truncate};
use crate::redact::Redactor;
use crate::template::Args;

/// The result of one check, as a person and a script see it.
#[derive(Debug, Clone, Serialize)]
pub struct CheckRun {
    pub name: String,
    pub kind: &'static str,
    pub status: Status,
    pub summary: String,
    #[serde(rename = "duration_ms")]
    #[serde(serialize_with = "as_millis")]
    pub duration: Duration,
    pub data: serde_json::Map<String, serde_json::Value>,
    /// Files that go with the result (a prometheus check's chart), posted under its verdict.
    #[serde(skip)]
    pub attachments: Vec<FileAttachment>,
}

fn as_millis<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(duration.as_millis() as u64)
}

/// What the runner reports while a runbook runs.
#[derive(Debug, Clone)]
pub enum CheckEvent {
    /// A line of output from a running check (exec), already redacted.
    Line {
        check: String,
        stream: Stream,
        line: String,
    },
    Finished(CheckRun),
}

/// How many events wait for their reader before a check producing output waits too: output
/// is held back by the reader's pace, never queued without bound.
pub const EVENT_QUEUE: usize = 1024;

/// Runs checks. One per process; cheap to clone.
#[derive(Clone)]
pub struct Runner {
    targets: Arc<Targets>,
    redactor: Redactor,
    concurrency: usize,
    max_output: usize,
    /// Turns for checks across every run of this runner (`[commands] max_running`).
    running: Arc<Semaphore>,
}

/// Checks running at once in the whole bot unless configured otherwise.
const MAX_RUNNING: usize = 32;

impl Runner {
    pub fn new(targets: Arc<Targets>, redactor: Redactor, concurrency: usize) -> Self {
        let max_output = crate::config::CommandsConfig::default().max_output.0;
        let running = Arc::new(Semaphore::new(MAX_RUNNING));
        Self { targets, redactor, concurrency: concurrency.max(1), max_output, running }
    }

    /// At most `checks` checks run at once across every run (`[commands] max_running`); the
    /// rest wait for a turn.
    pub fn with_max_running(mut self, checks: usize) -> Self {
        self.running = Arc::new(Semaphore::new(checks.max(1)));
        self
    }

    /// Caps each check's output at `bytes` (`[commands] max_output`).
    pub fn with_max_output(mut self, bytes: usize) -> Self {
        self.max_output = bytes.max(1);
        self
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }

    /// How many bytes of output one check keeps and shows.
    pub fn max_output(&self) -> usize {
        self.max_output
    }

    /// The configured targets: what an approval request shows and binds of them.
    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// Starts every check of `runbook` and returns the events as they happen; the channel
    /// closes after the last check finished.
    pub fn run(&self, runbook: Arc<Runbook>, args: Args) -> mpsc::Receiver<CheckEvent> {
        let all: Vec<usize> = (0..runbook.checks.len()).collect();
        self.run_checks(runbook, &all, args)
    }

    /// Starts the checks of `runbook` at `indices` (a remediation's verification re-runs some).
    pub fn run_checks(&self, runbook: Arc<Runbook>, indices: &[usize], args: Args) -> mpsc::Receiver<CheckEvent> {
        let (events, receiver) = mpsc::channel(EVENT_QUEUE);
        let bound = Arc::new(Semaphore::new(self.concurrency));
        let args = Arc::new(args);
        for &index in indices.iter().filter(|index| **index < runbook.checks.len()) {
            let runner = self.clone();
            let runbook = runbook.clone();
            let args = args.clone();
            let events = events.clone();
            let bound = bound.clone();
            let running = runner.running.clone();
            tokio::spawn(async move {
                let _permit = bound.acquire_owned().await;
                let _turn = running.acquire_owned().await;
                let started = Instant::now();
                let check = &runbook.checks[index];
                // The check runs in its own task so a panic there ends only that check.
                let outcome = {
                    let runner = runner.clone();
                    let runbook = runbook.clone();
                    let args = args.clone();
                    let events = events.clone();
                    tokio::spawn(async move { runner.run_one(&runbook.checks[index], &args, events).await }).await
                };
                let ((status, summary, data), attachments) = match outcome {
                    Ok(judged) => judged,
                    Err(join_error) => (
                        (
                            Status::Error,
                            format!("the check crashed: {}", panic_message(join_error)),
                            serde_json::Map::new(),
                        ),
                        Vec::new(),
                    ),
                };
                let run = CheckRun {
                    name: check.name.clone(),
                    kind: check.action.kind(),
                    status,
                    summary: runner.redactor.redact(&summary).into_owned(),
                    duration: started.elapsed(),
                    data: redact_data(&runner.redactor, data),
                    attachments,
                };
                metrics::histogram!("firebell_check_duration_seconds", "kind" => run.kind, "status" => run.status.name())
                    .record(run.duration.as_secs_f64());
                let _ = events.send(CheckEvent::Finished(run)).await;
            });
        }
        receiver
    }

    async fn run_one(
        &self,
        check: &CheckSpec,
        args: &Args,
        events: mpsc::Sender<CheckEvent>,
    ) -> ((Status, String, serde_json::Map<String, serde_json::Value>), Vec<FileAttachment>) {
        match self.observe(&check.name, &check.action, check.timeout, args, false, events).await {
            Ok(mut observation) => {
                let attachments = std::mem::take(&mut observation.attachments);
                (judge(check, args, self.shown_summary(observation)), attachments)
            }
            Err(reason) => ((Status::Error, reason, serde_json::Map::new()), Vec::new()),
        }
    }

    /// Runs `action` once with its timeout, forwarding its output lines as events.
    async fn observe(
        &self,
        name: &str,
        action: &Action,
        timeout: Duration,
        args: &Args,
        allow_writes: bool,
        events: mpsc::Sender<CheckEvent>,
    ) -> Result<Observation, String> {
        let (line_sender, mut line_receiver) = mpsc::channel(EVENT_QUEUE);
        let forward_name = name.to_string();
        let forward = tokio::spawn(async move {
            while let Some((stream, line)) = line_receiver.recv().await {
                let _ = events.send(CheckEvent::Line { check: forward_name.clone(), stream, line }).await;
            }
        });
        let context = CheckContext {
            args,
            targets: &self.targets,
            lines: LineSink::new(line_sender, self.redactor.clone()),
            allow_writes,
            max_output: self.max_output,
        };
        let observed = tokio::time::timeout(timeout, action.as_check().run(&context)).await;
        drop(context);
        let _ = forward.await;
        match observed {
            Err(_) => Err(format!("timed out after {}", humantime::format_duration(timeout))),
            Ok(result) => result,
        }
    }

    /// Runs remediation `index` of `runbook` (writes allowed), streaming its output like a check.
    /// Its verdict is the kind's own: exec exit 0, HTTP 2xx/3xx, a query or command that ran.
    pub fn run_remediation(&self, runbook: Arc<Runbook>, index: usize, args: Args) -> mpsc::Receiver<CheckEvent> {
        let (events, receiver) = mpsc::channel(EVENT_QUEUE);
        let runner = self.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let remediation = &runbook.remediations[index];
            let outcome = {
                let runner = runner.clone();
                let runbook = runbook.clone();
                let events = events.clone();
                tokio::spawn(async move {
                    let remediation = &runbook.remediations[index];
                    runner
                        .observe(&remediation.name, &remediation.action, remediation.timeout, &args, true, events)
                        .await
                })
                .await
            };
            let (status, summary, data) = match outcome {
                Ok(Ok(observation)) => {
                    let observation = runner.shown_summary(observation);
                    (observation.default_status, observation.summary, observation.data)
                }
                Ok(Err(reason)) => (Status::Error, reason, serde_json::Map::new()),
                Err(join_error) => (
                    Status::Error,
                    format!("the remediation crashed: {}", panic_message(join_error)),
                    serde_json::Map::new(),
                ),
            };
            let run = CheckRun {
                name: remediation.name.clone(),
                kind: remediation.action.kind(),
                status,
                summary: runner.redactor.redact(&summary).into_owned(),
                duration: started.elapsed(),
                data: redact_data(&runner.redactor, data),
                attachments: Vec::new(),
            };
            let _ = events.send(CheckEvent::Finished(run)).await;
        });
        receiver
    }

    /// Redacts the check's own summary whole, then cuts it to what is shown: cutting first could
    /// leave a secret's prefix that no rule recognises any more.
    fn shown_summary(&self, mut observation: Observation) -> Observation {
        observation.summary = truncate(&self.redactor.redact(&observation.summary), SUMMARY_CHARS);
        observation
    }
}

/// Applies the runbook's expressions: `expect` (when given) replaces the kind's own verdict,
/// then `crit` and `warn` can only make it worse.
fn judge(
    check: &CheckSpec,
    args: &Args,
    observation: Observation,
) -> (Status, String, serde_json::Map<String, serde_json::Value>) {
    let mut variables = observation.data.clone();
    let args_json: serde_json::Map<String, serde_json::Value> =
        args.iter().map(|(name, value)| (name.clone(), serde_json::Value::String(value.clone()))).collect();
    variables.insert("args".into(), serde_json::Value::Object(args_json));

    let mut status = observation.default_status;
    let mut reasons = Vec::new();
    let evaluations = [
        (&check.expect, Status::Crit, "expected", false),
        (&check.crit, Status::Crit, "crit", true),
        (&check.warn, Status::Warn, "warn", true),
    ];
    for (expr, verdict, label, raise_when) in evaluations {
        let Some(expr) = expr else { continue };
        match expr.eval_bool(&variables) {
            Err(reason) => {
                let summary = format!("{} — {label} expression {reason}", observation.summary);
                return (Status::Error, summary, observation.data);
            }
            Ok(result) if label == "expected" => {
                status = if result { Status::Ok } else { Status::Crit };
                if !result {
                    reasons.push(format!("expected {}", expr.source()));
                }
            }
            Ok(result) if result == raise_when && verdict > status => {
                status = verdict;
                reasons.push(format!("{label}: {}", expr.source()));
            }
            Ok(_) => {}
        }
    }
    let summary = if reasons.is_empty() {
        observation.summary
    } else {
        format!("{} ({})", observation.summary, reasons.join("; "))
    };
    (status, summary, observation.data)
}

fn redact_data(
    redactor: &Redactor,
    data: serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    fn walk(redactor: &Redactor, value: serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::String(text) => serde_json::Value::String(redactor.redact(&text).into_owned()),
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.into_iter().map(|item| walk(redactor, item)).collect())
            }
            serde_json::Value::Object(map) => {
                serde_json::Value::Object(map.into_iter().map(|(k, v)| (k, walk(redactor, v))).collect())
            }
            other => other,
        }
    }
    data.into_iter().map(|(key, value)| (key, walk(redactor, value))).collect()
}

fn panic_message(error: tokio::task::JoinError) -> String {
    match error.try_into_panic() {
        Ok(payload) => payload
            .downcast_ref::<&str>()
            .map(|text| text.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "panic".to_string()),
        Err(error) => error.to_string(),
    }
}
