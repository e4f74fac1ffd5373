//! The monitor loop. Every monitor is a row in the store; [`Monitors::run_due`] is the step
//! function (tests call it with the time they choose): it claims the due monitors under a
//! lease, runs each on the `Runner`, acts on the verdict and records the run with its next one.
//! [`Monitors::run`] sleeps until the next monitor is due and runs each claimed run in its own
//! task, so one slow runbook does not hold up the others.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::rules::{Action, State};
use super::{Monitor, MonitorHooks};
use crate::check::Status;
use crate::escalation::Escalator;
use crate::incident::{NewIncident, Resolution, TimelineKind};
use crate::runbook::{CheckEvent, CheckRun, Runner};
use crate::store::{MonitorResult, MonitorRow, MonitorSchedule, StoreError};

/// Monitors claimed per statement.
const BATCH: i64 = 200;

/// What one run did.
#[derive(Debug, Clone)]
pub struct MonitorRun {
    pub name: String,
    pub due_at: DateTime<Utc>,
    pub ran_at: DateTime<Utc>,
    pub verdict: Status,
    pub action: Action,
    pub incident_id: Option<i64>,
    /// False when the lease had passed to another process before the run was recorded.
    pub recorded: bool,
}

pub struct Monitors {
    monitors: BTreeMap<String, Monitor>,
    escalator: Arc<Escalator>,
    runner: Runner,
    hooks: Arc<dyn MonitorHooks>,
    /// This engine's name on the leases it takes.
    owner: String,
    /// The longest lease any monitor needs; a claim takes this long.
    lease: chrono::Duration,
    /// Upper bound on a sleep: other replicas move the schedule too.
    poll: Duration,
}

impl Monitors {
    pub fn new(
        monitors: Vec<Monitor>,
        escalator: Arc<Escalator>,
        runner: Runner,
        hooks: Arc<dyn MonitorHooks>,
    ) -> Self {
        let lease = monitors.iter().map(Monitor::lease).max().unwrap_or(Duration::from_secs(30));
        let mut suffix = [0u8; 4];
        getrandom::fill(&mut suffix).expect("the operating system provides random bytes");
        let owner = format!(
            "{}-{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "firebell".into()),
            std::process::id(),
            hex::encode(suffix)
        );
        let poll =
            if escalator.store().backend() == "postgres" { Duration::from_secs(1) } else { Duration::from_secs(5) };
        Self {
            monitors: monitors.into_iter().map(|monitor| (monitor.name.clone(), monitor)).collect(),
            escalator,
            runner,
            hooks,
            owner,
            lease: chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::minutes(5)),
            poll,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.monitors.is_empty()
    }

    pub fn get(&self, name: &str) -> Option<&Monitor> {
        self.monitors.get(name)
    }

    pub fn monitors(&self) -> impl Iterator<Item = &Monitor> {
        self.monitors.values()
    }

    /// Puts the configured monitors in the store: new ones scheduled, changed schedules
    /// scheduled anew, removed ones dropped. Call once at start, before the loop.
    pub async fn sync(&self) -> Result<(), StoreError> {
        let now = self.escalator.now();
        let schedules: Vec<MonitorSchedule> = self
            .monitors
            .values()
            .map(|monitor| MonitorSchedule {
                name: monitor.name.clone(),
                schedule: monitor.schedule.describe(),
                first_run_at: monitor.schedule.first_run(now),
            })
            .collect();
        self.escalator.store().sync_monitors(&schedules).await
    }

    /// Claims every monitor due at `now` and runs them (concurrently), returning what each did.
    pub async fn run_due(&self, now: DateTime<Utc>) -> Result<Vec<MonitorRun>, StoreError> {
        let mut done = Vec::new();
        loop {
            let claimed = self.claim(now).await?;
            let more = claimed.len() as i64 == BATCH;
            let runs = claimed.into_iter().map(|row| self.run_claimed(row, now));
            for run in futures::future::join_all(runs).await {
                done.extend(run?);
            }
            if !more {
                return Ok(done);
            }
        }
    }

    async fn claim(&self, now: DateTime<Utc>) -> Result<Vec<MonitorRow>, StoreError> {
        let store = self.escalator.store();
        let claimed = store.claim_monitors(now, &self.owner, now + self.lease, BATCH).await?;
        let mut known = Vec::with_capacity(claimed.len());
        for row in claimed {
            if self.monitors.contains_key(&row.name) {
                known.push(row);
            } else {
                // Another replica's configuration has it; this one gives it back.
                store.release_monitor(&row.name, &self.owner).await?;
            }
        }
        Ok(known)
    }

    /// Runs one claimed monitor and records the run; `None` if it is not configured here.
    async fn run_claimed(&self, row: MonitorRow, now: DateTime<Utc>) -> Result<Option<MonitorRun>, StoreError> {
        let Some(monitor) = self.monitors.get(&row.name) else { return Ok(None) };
        let late = (now - row.next_run_at).num_milliseconds().max(0) as f64 / 1000.0;
        metrics::histogram!("firebell_monitor_lateness_seconds").record(late);
        let results = self.run_checks(monitor).await;
        let verdict = results.iter().map(|run| run.status).max().unwrap_or(Status::Ok);
        let ran_at = self.escalator.now().max(now);

        let store = self.escalator.store();
        let incident_open = match row.incident_id {
            Some(id) => store.incident(id).await.map(|incident| incident.is_open()).unwrap_or(false),
            None => false,
        };
        let state = State {
            last: row.streak_verdict.as_deref().and_then(parse_status),
            streak: u32::try_from(row.streak_count).unwrap_or(u32::MAX),
            incident_open,
        };
        let (next_state, action) = monitor.rule.decide(state, verdict);
        let mut incident_id = if incident_open { row.incident_id } else { None };
        match self.act(monitor, action, incident_id, verdict, &results).await {
            Ok(now_incident) => incident_id = now_incident,
            Err(error) => tracing::error!(monitor = monitor.name, %error, "Acting on a monitor's verdict failed"),
        }
        let result = MonitorResult {
            name: monitor.name.clone(),
            owner: self.owner.clone(),
            streak_verdict: verdict.name().to_string(),
            streak_count: i64::from(next_state.streak),
            ran_at,
            next_run_at: monitor.schedule.next_after(row.next_run_at, ran_at),
            incident_id,
        };
        let recorded = store.finish_monitor_run(&result).await?;
        if !recorded {
            tracing::warn!(monitor = monitor.name, "A monitor's lease ran out before its run was recorded");
        }
        metrics::counter!("firebell_monitor_runs_total", "monitor" => monitor.name.clone(), "status" => verdict.name())
            .increment(1);
        tracing::debug!(monitor = monitor.name, verdict = verdict.name(), ?action, "Monitor ran");
        Ok(Some(MonitorRun {
            name: monitor.name.clone(),
            due_at: row.next_run_at,
            ran_at,
            verdict,
            action,
            incident_id,
            recorded,
        }))
    }

    async fn run_checks(&self, monitor: &Monitor) -> Vec<CheckRun> {
        let mut events = self.runner.run(monitor.runbook.clone(), monitor.args.clone());
        let mut results = Vec::new();
        while let Some(event) = events.recv().await {
            if let CheckEvent::Finished(run) = event {
                results.push(run);
            }
        }
        results
    }

    /// Does what the rules decided; returns the monitor's incident afterwards.
    async fn act(
        &self,
        monitor: &Monitor,
        action: Action,
        incident_id: Option<i64>,
        verdict: Status,
        results: &[CheckRun],
    ) -> anyhow::Result<Option<i64>> {
        let by = monitor.fingerprint();
        match (action, incident_id) {
            (Action::Open, _) => {
                let store = self.escalator.store();
                // An incident of this fingerprint already open (an alert's, or one this monitor
                // opened before a crash kept the run from being recorded) is the one.
                let id = match store.open_incident_with_fingerprint(&monitor.fingerprint()).await? {
                    Some(id) => id,
                    None => {
                        let incident = self
                            .escalator
                            .declare(NewIncident {
                                title: format!(
                                    "Monitor {}: {} is {}",
                                    monitor.name,
                                    monitor.runbook.name,
                                    verdict.name()
                                ),
                                severity: monitor.severity,
                                impact: Some(monitor.runbook.summary.clone()).filter(|summary| !summary.is_empty()),
                                commander: None,
                                fingerprint: Some(monitor.fingerprint()),
                                policy: monitor.policy.clone(),
                                declared_by: Some(by.clone()),
                            })
                            .await
                            .map_err(|error| anyhow::anyhow!("{error}"))?;
                        incident.id
                    }
                };
                self.escalator
                    .record(id, TimelineKind::Diagnosis, Some(&by), diagnosis_detail(monitor, verdict, results))
                    .await?;
                self.hooks.notify_delivery();
                let headline = format!(
                    "Monitor *{}* tripped: {} after {} run(s) at {} or worse",
                    monitor.name,
                    verdict.name().to_uppercase(),
                    monitor.rule.for_runs,
                    open_name(monitor)
                );
                self.post(monitor, id, headline, results);
                Ok(Some(id))
            }
            (Action::PostChange { from, to }, Some(id)) => {
                self.record_change(monitor, id, from, to).await?;
                let from = from.map(|from| from.name().to_uppercase()).unwrap_or_else(|| "-".into());
                let headline = format!("Monitor *{}*: {from} → {}", monitor.name, to.name().to_uppercase());
                self.post(monitor, id, headline, results);
                Ok(Some(id))
            }
            (Action::Resolve, Some(id)) => {
                self.record_change(monitor, id, None, verdict).await?;
                let fix = format!("monitor {} was ok for {} run(s) in a row", monitor.name, monitor.rule.for_runs);
                self.escalator
                    .resolve(id, &by, Resolution { root_cause: None, fix: Some(fix), prevention: None })
                    .await?;
                self.hooks.notify_delivery();
                Ok(None)
            }
            (_, incident_id) => Ok(incident_id),
        }
    }

    async fn record_change(
        &self,
        monitor: &Monitor,
        id: i64,
        from: Option<Status>,
        to: Status,
    ) -> Result<(), StoreError> {
        let detail = json!({"monitor": monitor.name, "topic": monitor.runbook.name, "from": from, "to": to});
        self.escalator.record(id, TimelineKind::MonitorVerdict, Some(&monitor.fingerprint()), detail).await
    }

    fn post(&self, monitor: &Monitor, id: i64, headline: String, results: &[CheckRun]) {
        self.hooks.post_run(id, headline, monitor.runbook.clone(), monitor.args.clone(), results.to_vec());
    }

    /// Runs monitors as they come due until `shutdown`; runs in flight finish first. Store
    /// errors are logged and retried.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        if self.monitors.is_empty() {
            shutdown.cancelled().await;
            return;
        }
        while let Err(error) = crate::store::timed(self.sync()).await {
            tracing::error!(%error, "Scheduling the monitors failed; retrying in 1 s");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
        let mut running = tokio::task::JoinSet::new();
        loop {
            let now = self.escalator.now();
            match crate::store::timed(self.claim(now)).await {
                Ok(claimed) => {
                    for row in claimed {
                        let monitors = self.clone();
                        running.spawn(async move {
                            let name = row.name.clone();
                            if let Err(error) = monitors.run_claimed(row, now).await {
                                tracing::error!(monitor = name, %error, "Recording a monitor's run failed");
                            }
                        });
                    }
                }
                Err(error) => tracing::error!(%error, "Claiming due monitors failed; retrying"),
            }
            while running.try_join_next().is_some() {}
            let sleep = match crate::store::timed(self.escalator.store().next_monitor_due()).await {
                Ok(Some(next)) => (next - self.escalator.now()).to_std().unwrap_or(Duration::ZERO).min(self.poll),
                Ok(None) => self.poll,
                Err(error) => {
                    tracing::error!(%error, "Reading the next due monitor failed");
                    Duration::from_secs(1)
                }
            };
            // A monitor being run here is due again only after its run: wake when one ends too.
            tokio::select! {
                _ = tokio::time::sleep(sleep.max(Duration::from_millis(10))) => {}
                Some(_) = running.join_next(), if !running.is_empty() => {}
                _ = shutdown.cancelled() => break,
            }
        }
        while running.join_next().await.is_some() {}
    }
}

fn open_name(monitor: &Monitor) -> &'static str {
    match monitor.rule.open {
        crate::config::MonitorOpen::Warn => "warn",
        crate::config::MonitorOpen::Crit => "crit",
        crate::config::MonitorOpen::Error => "error",
        crate::config::MonitorOpen::Never => "never",
    }
}

fn parse_status(name: &str) -> Option<Status> {
    [Status::Ok, Status::Warn, Status::Crit, Status::Error].into_iter().find(|status| status.name() == name)
}

/// The tripping run as a `diagnosis` event records it, as a chat diagnosis does.
fn diagnosis_detail(monitor: &Monitor, verdict: Status, results: &[CheckRun]) -> serde_json::Value {
    let args: Vec<String> = monitor.args.iter().map(|(key, value)| format!("{key}={value}")).collect();
    let checks: Vec<serde_json::Value> =
        results.iter().map(|run| json!({"name": run.name, "status": run.status, "summary": run.summary})).collect();
    json!({"topic": monitor.runbook.name, "args": args.join(" "), "status": verdict, "checks": checks, "monitor": monitor.name})
}
