//! The durable timer engine. Every pending step is a row in the store; [`Escalator::fire_due`]
//! is the step function (tests call it with the time they choose), and [`Escalator::run`] is
//! the loop that calls it when the next step is due, woken early when a sooner one is added.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::policy::Directory;
use crate::clock::Clock;
use crate::incident::summary::Templates;
use crate::incident::tasks::{Checklist, ChecklistOn};
use crate::incident::{Incident, NewIncident, Resolution, TimelineEvent, TimelineKind};
use crate::store::{FiredStep, Reminded, Store, StoreError};

/// Steps fired per transaction.
const BATCH: i64 = 500;

pub struct Escalator {
    store: Arc<dyn Store>,
    templates: Arc<Templates>,
    directory: Arc<Directory>,
    /// `[[checklists]]`: opened by the deliverer of the declare or resolve they follow.
    checklists: Vec<Checklist>,
    clock: Arc<dyn Clock>,
    wake: Notify,
    /// Upper bound on a sleep: other replicas may add steps this process was not told about.
    poll: Duration,
}

impl Escalator {
    pub fn new(store: Arc<dyn Store>, directory: Arc<Directory>, clock: Arc<dyn Clock>) -> Self {
        let poll = if store.backend() == "postgres" { Duration::from_millis(500) } else { Duration::from_secs(5) };
        Self {
            store,
            templates: Arc::new(Templates::shipped()),
            directory,
            checklists: Vec::new(),
            clock,
            wake: Notify::new(),
            poll,
        }
    }

    /// Uses `templates` (the user's overrides) for the incident messages.
    pub fn with_templates(mut self, templates: Templates) -> Self {
        self.templates = Arc::new(templates);
        self
    }

    /// Opens `checklists` on the incidents they apply to.
    pub fn with_checklists(mut self, checklists: Vec<Checklist>) -> Self {
        self.checklists = checklists;
        self
    }

    /// The checklists that open for `incident` at `on`.
    pub fn checklists_for<'a>(
        &'a self,
        incident: &'a Incident,
        on: ChecklistOn,
    ) -> impl Iterator<Item = &'a Checklist> {
        self.checklists.iter().filter(move |checklist| checklist.applies(on, incident.severity))
    }

    pub fn templates(&self) -> &Templates {
        &self.templates
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn directory(&self) -> &Arc<Directory> {
        &self.directory
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.clock.now()
    }

    /// Makes the timer loop look at the store again now (a step was added or pulled forward).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Opens an incident and schedules its policy's steps (the `default` policy when none is
    /// named). An unknown policy is refused, naming the ones that exist.
    pub async fn declare(&self, mut new: NewIncident) -> Result<Incident, DeclareError> {
        let policy = match &new.policy {
            Some(name) => Some(self.directory.policies.get(name).ok_or_else(|| DeclareError::UnknownPolicy {
                name: name.clone(),
                known: self.directory.policies.keys().cloned().collect(),
            })?),
            None => self.directory.default_policy(),
        };
        new.policy = policy.map(|policy| policy.name.clone());
        let now = self.clock.now();
        let timers = policy.map(|policy| policy.timers(now)).unwrap_or_default();
        let incident = self.store.declare(new, timers, now).await.map_err(DeclareError::Store)?;
        tracing::info!(incident = incident.id, title = %incident.title, policy = ?incident.policy, "Incident declared");
        self.log_message(&incident, self.templates.notification(&incident, now));
        self.wake.notify_one();
        Ok(incident)
    }

    pub async fn acknowledge(&self, id: i64, by: &str) -> Result<Incident, StoreError> {
        let incident = self.store.acknowledge(id, by, self.clock.now()).await?;
        tracing::info!(incident = id, by, "Incident acknowledged; escalation stopped");
        Ok(incident)
    }

    pub async fn resolve(&self, id: i64, by: &str, resolution: Resolution) -> Result<Incident, StoreError> {
        let now = self.clock.now();
        let incident = self.store.resolve(id, by, resolution, now).await?;
        tracing::info!(incident = id, by, "Incident resolved; escalation cancelled");
        self.log_message(&incident, self.templates.resolution(&incident, now));
        Ok(incident)
    }

    /// Until a chat adapter delivers the outbox, the log shows each incident message.
    fn log_message(&self, incident: &Incident, rendered: Result<String, String>) {
        match rendered {
            Ok(text) => tracing::info!(incident = incident.id, "Incident message:\n{text}"),
            Err(error) => tracing::error!(incident = incident.id, %error, "Rendering the incident message failed"),
        }
    }

    pub async fn record(
        &self,
        id: i64,
        kind: TimelineKind,
        by: Option<&str>,
        detail: serde_json::Value,
    ) -> Result<(), StoreError> {
        self.store.record(id, TimelineEvent::new(self.clock.now(), kind, by, detail)).await
    }

    /// Fires every step due at `now`, including steps pulled forward because the one before
    /// them had nobody to notify.
    pub async fn fire_due(&self, now: DateTime<Utc>) -> Result<Vec<FiredStep>, StoreError> {
        let mut fired = Vec::new();
        // Bounded: each pass fires or skips at least one step, and skipping pulls at most one
        // step forward per incident.
        for _ in 0..10_000 {
            let batch = self.store.fire_due(now, BATCH, self.directory.as_ref()).await?;
            let more = batch.len() as i64 == BATCH
                || (!batch.is_empty() && self.store.next_due().await?.is_some_and(|next| next <= now));
            for step in &batch {
                let late = (step.fired_at - step.due_at).num_milliseconds().max(0) as f64 / 1000.0;
                metrics::histogram!("firebell_timer_lateness_seconds").record(late);
                let outcome = if step.notified.is_empty() { "skipped" } else { "fired" };
                metrics::counter!("firebell_escalation_steps_total", "outcome" => outcome).increment(1);
                if step.notified.is_empty() {
                    tracing::info!(
                        incident = step.incident_id,
                        step = step.step,
                        round = step.round,
                        "Escalation step skipped: nobody to notify"
                    );
                } else {
                    tracing::info!(incident = step.incident_id, step = step.step, round = step.round, notified = ?step.notified, "Escalation step fired");
                }
            }
            fired.extend(batch);
            if !more {
                break;
            }
        }
        Ok(fired)
    }

    /// Reminds the owners of every follow-up and checklist item due at `now` and still open,
    /// each once (the step function the loop and the tests call).
    pub async fn remind_due(&self, now: DateTime<Utc>) -> Result<Vec<Reminded>, StoreError> {
        let mut reminded = Vec::new();
        loop {
            let batch = self.store.remind_due(now, BATCH, self.directory.as_ref()).await?;
            let full = batch.len() as i64 == BATCH;
            for done in &batch {
                metrics::counter!("firebell_reminders_total").increment(1);
                tracing::info!(incident = done.task.incident_id, task = done.task.id, notified = ?done.notified, "Reminded the owner of a due task");
            }
            reminded.extend(batch);
            if !full {
                return Ok(reminded);
            }
        }
    }

    /// When the loop next has work: the sooner of the next step and the next task.
    async fn next_work(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let step = self.store.next_due().await?;
        let task = self.store.next_task_due().await?;
        Ok(step.into_iter().chain(task).min())
    }

    /// Fires steps and reminds owners as they come due until `shutdown`. Store errors are
    /// logged and retried.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        // Counting pending steps is a query: at most every few seconds, not every wake-up.
        let mut counted_at: Option<std::time::Instant> = None;
        loop {
            if counted_at.is_none_or(|at| at.elapsed() >= Duration::from_secs(5)) {
                if let Ok(pending) = self.store.pending_timers().await {
                    metrics::gauge!("firebell_timers_pending").set(pending as f64);
                }
                counted_at = Some(std::time::Instant::now());
            }
            let now = self.clock.now();
            let work = async {
                self.fire_due(now).await?;
                self.remind_due(now).await?;
                Ok::<(), StoreError>(())
            };
            if let Err(error) = crate::store::timed(work).await {
                tracing::error!(%error, "Firing due escalation steps or reminders failed; retrying in 1 s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
            let sleep = match crate::store::timed(self.next_work()).await {
                Ok(Some(next)) => (next - self.clock.now()).to_std().unwrap_or(Duration::ZERO).min(self.poll),
                Ok(None) => self.poll,
                Err(error) => {
                    tracing::error!(%error, "Reading the next due step failed");
                    Duration::from_secs(1)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(sleep) => {}
                _ = self.wake.notified() => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

#[derive(Debug)]
pub enum DeclareError {
    UnknownPolicy { name: String, known: Vec<String> },
    Store(StoreError),
}

impl std::fmt::Display for DeclareError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeclareError::UnknownPolicy { name, known } if known.is_empty() => {
                write!(f, "unknown policy '{name}': firebell.toml defines no [[policies]]")
            }
            DeclareError::UnknownPolicy { name, known } => {
                write!(f, "unknown policy '{name}'; policies: {}", known.join(", "))
            }
            DeclareError::Store(error) => write!(f, "{error}"),
        }
    }
}

impl std::error::Error for DeclareError {}
