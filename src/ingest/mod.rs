//! Alerts in: webhook bodies → alert groups → routes (severity, policy, runbook) → incidents.
//! Alerts are written through one writer task that commits whatever has queued up in one
//! transaction (group commit), and each webhook is answered only after its alerts are durable.

pub mod payloads;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::config::{RouteConfig, Severity};
use crate::escalation::Escalator;
use crate::incident::NewIncident;
use crate::store::{AlertOutcome, AlertStore, IncomingAlert, StoreError, timed};
pub use payloads::{AlertGroup, parse_alertmanager, parse_generic, parse_grafana};

/// Alerts per transaction at most.
const MAX_BATCH: usize = 2_000;

/// What a matched route decides for an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteDecision {
    pub severity: Severity,
    pub policy: Option<String>,
    pub run: Option<String>,
    pub resolve: bool,
}

/// The `[[routes]]` of `firebell.toml`, first match wins; unmatched alerts take the default.
#[derive(Debug, Clone, Default)]
pub struct Routes(Vec<(BTreeMap<String, String>, RouteDecision)>);

impl Routes {
    pub fn from_config(routes: &[RouteConfig]) -> Routes {
        Routes(
            routes
                .iter()
                .map(|route| {
                    let decision = RouteDecision {
                        severity: route.severity,
                        policy: route.policy.as_ref().map(|policy| policy.get_ref().clone()),
                        run: route.run.as_ref().map(|run| run.get_ref().clone()),
                        resolve: route.resolve,
                    };
                    (route.matchers.clone(), decision)
                })
                .collect(),
        )
    }

    /// The first route whose labels all match; else the default route: severity from the
    /// alert's `severity` label, the default policy, no runbook, resolve when resolved.
    pub fn decide(&self, labels: &BTreeMap<String, String>) -> RouteDecision {
        for (matchers, decision) in &self.0 {
            if matchers.iter().all(|(name, value)| labels.get(name) == Some(value)) {
                return decision.clone();
            }
        }
        RouteDecision { severity: severity_from_label(labels.get("severity")), policy: None, run: None, resolve: true }
    }
}

fn severity_from_label(label: Option<&String>) -> Severity {
    match label.map(|label| label.to_ascii_lowercase()).as_deref() {
        Some("critical" | "page" | "p1" | "emergency") => Severity::Critical,
        Some("medium" | "warning" | "warn" | "p3") => Severity::Medium,
        Some("low" | "info" | "p4" | "p5") => Severity::Low,
        _ => Severity::High,
    }
}

struct Job {
    alerts: Vec<IncomingAlert>,
    done: oneshot::Sender<Result<Vec<AlertOutcome>, String>>,
}

/// The single writer: batches what has queued up and commits it in one transaction.
#[derive(Clone)]
pub struct Ingestor {
    jobs: mpsc::Sender<Job>,
}

impl Ingestor {
    /// Starts the writer, supervised (`ingest` in `health`): a panic restarts it on the same
    /// queue. It ends when the last `Ingestor` is dropped.
    /// A firing alert within `reopen_within` of its incident's resolution re-opens it.
    pub fn start(
        escalator: Arc<Escalator>,
        health: Arc<crate::health::Health>,
        reopen_within: std::time::Duration,
    ) -> Ingestor {
        let (jobs, receiver) = mpsc::channel(8_192);
        let receiver = Arc::new(tokio::sync::Mutex::new(receiver));
        let flap_window = chrono::Duration::from_std(reopen_within).unwrap_or(chrono::Duration::days(365));
        crate::health::supervise("ingest", health, tokio_util::sync::CancellationToken::new(), move || {
            write_batches(escalator.clone(), receiver.clone(), flap_window)
        });
        Ingestor { jobs }
    }

    /// Returns once the alerts are committed.
    pub async fn submit(&self, alerts: Vec<IncomingAlert>) -> Result<Vec<AlertOutcome>, String> {
        let (done, outcome) = oneshot::channel();
        self.jobs.send(Job { alerts, done }).await.map_err(|_| "the alert writer stopped".to_string())?;
        outcome.await.map_err(|_| "the alert writer stopped".to_string())?
    }
}

/// Commits the queued webhooks in batches. Each store call has [`timed`]'s deadline, so a store
/// that stops answering fails the waiting webhooks (503) instead of holding them.
async fn write_batches(
    escalator: Arc<Escalator>,
    receiver: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>,
    flap_window: chrono::Duration,
) {
    let mut receiver = receiver.lock().await;
    let store: Arc<dyn AlertStore> = escalator.store().clone();
    while let Some(first) = receiver.recv().await {
        let mut count = first.alerts.len();
        let mut jobs = vec![first];
        while count < MAX_BATCH {
            match receiver.try_recv() {
                Ok(job) => {
                    count += job.alerts.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let all: Vec<IncomingAlert> = jobs.iter().flat_map(|job| job.alerts.iter().cloned()).collect();
        match timed(store.ingest_alerts(&all, flap_window, escalator.now())).await {
            Ok(outcomes) => {
                let mut outcomes = outcomes.into_iter();
                for job in jobs {
                    let mine: Vec<AlertOutcome> = outcomes.by_ref().take(job.alerts.len()).collect();
                    let _ = job.done.send(Ok(mine));
                }
            }
            // One bad job must not fail the others: retry each on its own (not when the store
            // did not answer at all: each retry would wait as long again).
            Err(error) if jobs.len() > 1 && !matches!(error, StoreError::Timeout) => {
                tracing::warn!(%error, jobs = jobs.len(), "An alert batch failed; committing its webhooks one by one");
                for job in jobs {
                    let result = timed(store.ingest_alerts(&job.alerts, flap_window, escalator.now()))
                        .await
                        .map_err(|error| error.to_string());
                    let _ = job.done.send(result);
                }
            }
            Err(error) => {
                for job in jobs {
                    let _ = job.done.send(Err(error.to_string()));
                }
            }
        }
    }
}

/// The answer to one webhook.
#[derive(Debug, Clone, Serialize)]
pub struct Accepted {
    pub status: &'static str,
    pub fingerprint: String,
    pub alerts: usize,
    #[serde(flatten)]
    pub outcome: AlertOutcome,
}

/// What chat does once an alert changed an incident: the one seam between ingestion and chat
/// (the chat core implements it; ingestion knows nothing else of chat).
pub trait IncidentHooks: Send + Sync {
    /// Something new waits in the outbox: deliver it.
    fn notify_delivery(&self);
    /// Runs the route's runbook `topic` for an incident the alert from `source` opened.
    fn diagnose_incident(&self, incident_id: i64, topic: &str, source: &str);
}

/// Alerts → incidents, and what happens right after: escalation woken, notifications sent, the
/// route's runbook started in the incident's thread.
pub struct AlertService {
    ingestor: Ingestor,
    routes: Routes,
    escalator: Arc<Escalator>,
    hooks: Arc<dyn IncidentHooks>,
}

impl AlertService {
    pub fn new(ingestor: Ingestor, routes: Routes, escalator: Arc<Escalator>, hooks: Arc<dyn IncidentHooks>) -> Self {
        Self { ingestor, routes, escalator, hooks }
    }

    pub async fn receive(&self, group: AlertGroup) -> Result<Accepted, String> {
        let decision = self.routes.decide(&group.labels);
        let directory = self.escalator.directory();
        let policy = match &decision.policy {
            Some(name) => directory.policies.get(name),
            None => directory.default_policy(),
        };
        let now = self.escalator.now();
        let incident = NewIncident {
            title: group.title.clone(),
            severity: decision.severity,
            impact: group.description.clone(),
            commander: None,
            fingerprint: Some(group.fingerprint.clone()),
            policy: policy.map(|policy| policy.name.clone()),
            declared_by: Some(group.source.to_string()),
        };
        let alert = IncomingAlert {
            source: group.source.to_string(),
            fingerprint: group.fingerprint.clone(),
            firing: group.firing,
            incident,
            timers: policy.map(|policy| policy.timers(now)).unwrap_or_default(),
            resolve: decision.resolve,
            payload: serde_json::json!({"labels": group.labels, "alerts": group.alerts, "body": group.payload}),
        };
        let schedules_steps = !alert.timers.is_empty();
        let outcome = self.ingestor.submit(vec![alert]).await?.into_iter().next().unwrap_or(AlertOutcome::Ignored);
        let outcome_name = match outcome {
            AlertOutcome::Opened(_) => "opened",
            AlertOutcome::Repeated(_) => "deduplicated",
            AlertOutcome::Reopened(_) => "reopened",
            AlertOutcome::Resolved(_) => "resolved",
            AlertOutcome::Ignored => "ignored",
        };
        metrics::counter!("firebell_alerts_total", "source" => group.source, "outcome" => outcome_name).increment(1);
        match outcome {
            AlertOutcome::Opened(id) | AlertOutcome::Reopened(id) => {
                tracing::info!(incident = id, fingerprint = group.fingerprint, ?outcome, "Alert opened an incident");
                // Only an incident with steps gives the timer loop anything to do.
                if schedules_steps {
                    self.escalator.wake();
                }
                self.hooks.notify_delivery();
                if let Some(topic) = &decision.run {
                    self.hooks.diagnose_incident(id, topic, group.source);
                }
            }
            AlertOutcome::Resolved(id) => {
                tracing::info!(incident = id, fingerprint = group.fingerprint, "Alert resolved its incident");
                self.hooks.notify_delivery();
            }
            AlertOutcome::Repeated(_) | AlertOutcome::Ignored => {}
        }
        Ok(Accepted { status: "accepted", fingerprint: group.fingerprint, alerts: group.alerts, outcome })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::source::SourceFile;

    #[test]
    fn first_matching_route_wins_and_unmatched_alerts_take_the_default() {
        let text = r#"
[[policies]]
name = "default"
steps = [ { after = "0s", notify = ["user:slack:U1"] } ]
[[routes]]
match = { alertname = "QueueBacklog", team = "data" }
severity = "critical"
policy = "default"
run = "queue"
[[routes]]
match = { alertname = "QueueBacklog" }
severity = "medium"
resolve = false
"#;
        let config = Config::parse(&SourceFile::new("firebell.toml", text)).unwrap();
        let routes = Routes::from_config(&config.routes);
        let labels = |pairs: &[(&str, &str)]| {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()
        };
        let first = routes.decide(&labels(&[("alertname", "QueueBacklog"), ("team", "data")]));
        assert_eq!(first.severity, Severity::Critical);
        assert_eq!(first.run.as_deref(), Some("queue"));
        let second = routes.decide(&labels(&[("alertname", "QueueBacklog"), ("team", "web")]));
        assert_eq!((second.severity, second.resolve, second.run), (Severity::Medium, false, None));
        let default = routes.decide(&labels(&[("alertname", "DiskFull"), ("severity", "warning")]));
        assert_eq!((default.severity, default.resolve), (Severity::Medium, true));
        assert_eq!(routes.decide(&labels(&[])).severity, Severity::High);
    }
}
