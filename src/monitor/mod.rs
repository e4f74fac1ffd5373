//! Monitors (SPEC §10): runbooks run on a schedule. `mod.rs` builds them from `[[monitors]]`
//! and the catalogue (the checks that need the catalogue, with `file:line`) and computes their
//! next runs; `rules.rs` decides what a run does; `engine.rs` claims due runs from the store,
//! runs them on the `Runner` and acts through the escalator and [`MonitorHooks`].

pub mod engine;
pub mod rules;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::{Config, Severity};
use crate::runbook::{Args, Catalogue, CheckRun, Runbook};
use crate::source::LoadError;
pub use engine::{MonitorRun, Monitors};

/// When a monitor runs.
#[derive(Debug, Clone)]
pub enum Schedule {
    Every(Duration),
    Cron { cron: Box<croner::Cron>, timezone: chrono_tz::Tz, text: String },
}

impl Schedule {
    /// The first run of a monitor new to the store: an interval runs at once, a cron at its
    /// next time.
    pub fn first_run(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Schedule::Every(_) => now,
            Schedule::Cron { .. } => self.next_after(now, now),
        }
    }

    /// The run after one that was due at `due` and finished at `now`: on the beat, unless the
    /// beat is already past (a run after downtime), then counted from `now` — an overdue
    /// monitor runs once, not once per missed beat.
    pub fn next_after(&self, due: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Schedule::Every(every) => {
                let every = chrono::Duration::from_std(*every).unwrap_or(chrono::Duration::minutes(1));
                let on_beat = due + every;
                if on_beat > now { on_beat } else { now + every }
            }
            Schedule::Cron { cron, timezone, .. } => {
                let after = due.max(now).with_timezone(timezone);
                cron.find_next_occurrence(&after, false)
                    .map(|next| next.with_timezone(&Utc))
                    .unwrap_or(now + chrono::Duration::days(1))
            }
        }
    }

    /// As `firebell monitors list` shows it, and as the store keeps it.
    pub fn describe(&self) -> String {
        match self {
            Schedule::Every(every) => format!("every {}", humantime::format_duration(*every)),
            Schedule::Cron { timezone, text, .. } => format!("cron {text} ({timezone})"),
        }
    }
}

/// A configured monitor, bound to its runbook and arguments.
#[derive(Debug, Clone)]
pub struct Monitor {
    pub name: String,
    pub runbook: Arc<Runbook>,
    pub args: Args,
    pub schedule: Schedule,
    pub rule: rules::Rule,
    pub severity: Severity,
    pub policy: Option<String>,
}

impl Monitor {
    pub fn fingerprint(&self) -> String {
        format!("monitor:{}", self.name)
    }

    /// How long a claimed run may take before another process may take it: the runbook's
    /// longest check timeout (checks run concurrently), plus a margin for the queue and store.
    pub fn lease(&self) -> Duration {
        let longest = self.runbook.checks.iter().map(|check| check.timeout).max().unwrap_or(Duration::from_secs(10));
        longest + Duration::from_secs(10)
    }
}

/// The monitors of `config`, each checked against the catalogue: its topic must exist and its
/// arguments must pass the runbook's own checks. Problems carry `file:line`.
pub fn build(config: &Config, catalogue: &Catalogue) -> Result<Vec<Monitor>, Vec<LoadError>> {
    let path = config.path.clone().unwrap_or_else(|| "firebell.toml".into());
    let mut monitors = Vec::new();
    let mut errors = Vec::new();
    for entry in &config.monitors {
        let name = entry.name().to_string();
        let Some(runbook) = catalogue.get(entry.run.get_ref()) else {
            errors.push(LoadError {
                path: path.clone(),
                line: entry.lines.run,
                message: format!(
                    "monitors.{name}: run = \"{}\": no such runbook; topics: {}",
                    entry.run.get_ref(),
                    catalogue.topic_names().join(", ")
                ),
            });
            continue;
        };
        let given: Vec<(String, String)> = entry
            .args
            .as_ref()
            .map(|args| args.get_ref().iter().map(|(key, value)| (key.clone(), value.clone())).collect())
            .unwrap_or_default();
        let args = match runbook.bind_args(&given) {
            Ok(args) => args,
            Err(error) => {
                errors.push(LoadError {
                    path: path.clone(),
                    line: entry.lines.args,
                    message: format!("monitors.{name}.args: {error}"),
                });
                continue;
            }
        };
        // config.rs has checked the schedule; a failure here is a bug, reported the same way.
        let schedule = match (&entry.every, &entry.cron) {
            (Some(every), _) => Schedule::Every(every.get_ref().0),
            (None, Some(cron)) => {
                let timezone = entry
                    .timezone
                    .as_ref()
                    .and_then(|timezone| timezone.get_ref().parse().ok())
                    .unwrap_or(chrono_tz::Tz::UTC);
                match crate::config::parse_cron(cron.get_ref()) {
                    Ok(parsed) => Schedule::Cron { cron: Box::new(parsed), timezone, text: cron.get_ref().clone() },
                    Err(problem) => {
                        errors.push(LoadError {
                            path: path.clone(),
                            line: entry.lines.run,
                            message: format!("monitors.{name}.cron: {problem}"),
                        });
                        continue;
                    }
                }
            }
            (None, None) => continue,
        };
        monitors.push(Monitor {
            name,
            runbook,
            args,
            schedule,
            rule: rules::Rule { open: entry.open, for_runs: *entry.for_runs.get_ref(), resolve: entry.resolve },
            severity: entry.severity,
            policy: entry.policy.as_ref().map(|policy| policy.get_ref().clone()),
        });
    }
    if errors.is_empty() { Ok(monitors) } else { Err(errors) }
}

/// What a monitor's run hands to chat: the one seam between monitors and chat (the chat core
/// implements it; nothing in `src/monitor` imports `src/chat`).
pub trait MonitorHooks: Send + Sync {
    /// Something new waits in the outbox (a notification, a resolution): deliver it.
    fn notify_delivery(&self);
    /// Posts a run's results, already run, into the incident's thread once it exists, under
    /// `headline` (the monitor and what changed). Records nothing: the engine has.
    fn post_run(&self, incident_id: i64, headline: String, runbook: Arc<Runbook>, args: Args, results: Vec<CheckRun>);
}

/// Hooks that post nothing, for `firebell` without chat and for tests of the schedule alone.
pub struct NoHooks;

impl MonitorHooks for NoHooks {
    fn notify_delivery(&self) {}
    fn post_run(&self, _: i64, _: String, _: Arc<Runbook>, _: Args, _: Vec<CheckRun>) {}
}

/// A monitor as `firebell monitors list --json` and `GET /api/monitors` show it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MonitorView {
    pub name: String,
    pub topic: String,
    pub schedule: String,
    pub open: crate::config::MonitorOpen,
    #[serde(rename = "for")]
    pub for_runs: u32,
    pub last_verdict: Option<String>,
    pub last_run_at: Option<DateTime<Utc>>,
    /// None until the bot has scheduled it.
    pub next_run_at: Option<DateTime<Utc>>,
    pub incident_id: Option<i64>,
    pub runs: i64,
}

/// The configured monitors with what the store knows of each, by name.
pub fn views<'a>(monitors: impl Iterator<Item = &'a Monitor>, rows: &[crate::store::MonitorRow]) -> Vec<MonitorView> {
    let mut views: Vec<MonitorView> = monitors
        .map(|monitor| {
            let row = rows.iter().find(|row| row.name == monitor.name);
            MonitorView {
                name: monitor.name.clone(),
                topic: monitor.runbook.name.clone(),
                schedule: monitor.schedule.describe(),
                open: monitor.rule.open,
                for_runs: monitor.rule.for_runs,
                last_verdict: row.and_then(|row| row.last_verdict.clone()),
                last_run_at: row.and_then(|row| row.last_run_at),
                next_run_at: row.map(|row| row.next_run_at),
                incident_id: row.and_then(|row| row.incident_id),
                runs: row.map(|row| row.runs).unwrap_or(0),
            }
        })
        .collect();
    views.sort_by(|a, b| a.name.cmp(&b.name));
    views
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn an_interval_keeps_its_beat_and_after_downtime_counts_from_now() {
        let every = Schedule::Every(Duration::from_secs(60));
        let due = at("2026-01-03T09:00:00Z");
        assert_eq!(every.first_run(due), due);
        assert_eq!(every.next_after(due, at("2026-01-03T09:00:02Z")), at("2026-01-03T09:01:00Z"));
        // Down for an hour: one run now, the next a minute later, not 60 to catch up.
        assert_eq!(every.next_after(due, at("2026-01-03T10:00:30Z")), at("2026-01-03T10:01:30Z"));
        assert_eq!(every.describe(), "every 1m");
    }

    #[test]
    fn a_cron_runs_at_its_wall_clock_time_across_a_dst_change() {
        let cron = Schedule::Cron {
            cron: Box::new(crate::config::parse_cron("0 9 * * *").unwrap()),
            timezone: chrono_tz::Europe::Berlin,
            text: "0 9 * * *".into(),
        };
        // 09:00 in Berlin is 08:00 UTC in winter, 07:00 UTC from 29 March 2026 (CEST).
        let winter = at("2026-01-03T08:50:00Z");
        // 08:50 UTC is past 09:00 Berlin (08:00 UTC) that day: the next is the day after.
        assert_eq!(cron.first_run(winter), at("2026-01-04T08:00:00Z"));
        let spring = at("2026-03-28T12:00:00Z");
        assert_eq!(cron.next_after(spring, spring), at("2026-03-29T07:00:00Z"));
        assert_eq!(cron.describe(), "cron 0 9 * * * (Europe/Berlin)");
    }
}
