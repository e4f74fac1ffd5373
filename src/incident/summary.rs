//! Incident notification, resolution summary and post-mortem, rendered from MiniJinja templates.
//!
//! The shipped templates live in `templates/` and are embedded in the binary; a user overrides
//! any one by path under `[templates]` in `firebell.toml`. User templates are untrusted: they
//! run with a fuel budget and a recursion limit, so a runaway loop fails instead of hanging the
//! bot. Everything a template shows is worked out here in Rust, so templates only lay it out.
//!
//! # The variables a template sees
//!
//! Times are RFC 3339 in UTC (`2026-11-22T10:00:00Z`), `*_human` times read like
//! `Sun 22 Nov 2026 10:00 UTC`, durations read like `1h 5m` or `12m 3s`. Values marked "or none"
//! are `none` when absent, so `{% if acknowledged_by %}` works; the others always hold text.
//!
//! | variable | what it holds |
//! |---|---|
//! | `id`, `title` | the incident's number and title |
//! | `status`, `status_upper` | `triggered` / `acknowledged` / `resolved`, and `TRIGGERED` … |
//! | `severity`, `severity_upper` | `critical` / `high` / `medium` / `low`, and `CRITICAL` … |
//! | `impact` | who or what is affected; `not assessed yet` when not given |
//! | `commander` | the incident commander; `unassigned` when nobody is |
//! | `declared_by` | who declared it, or none (declared by an alert) |
//! | `open` | true until the incident is resolved |
//! | `now` | the time of rendering |
//! | `started`, `started_human`, `started_ago` | when it started, and how long ago (`12m 3s`) |
//! | `eta` | the latest `eta` given in a status update; `unknown` when none gave one |
//! | `duration` | total duration once resolved, the duration so far while open |
//! | `acknowledged_at`, `acknowledged_by`, `time_to_acknowledge` | or none |
//! | `resolved_at`, `resolved_by`, `time_to_resolve` | or none |
//! | `root_cause`, `fix`, `prevention` | as recorded at resolution; `not recorded` when absent |
//! | `latest_update` | the latest status update, or none: `phase` (`investigating`, `identified`, `monitoring`), `phase_title` (`Identified`), `text`, `eta` (or none), `by` (or none), `at`, `at_human` |
//! | `escalations` | every escalation step that fired, oldest first: `level` (1-based), `round` (1-based), `notified` (list of `platform:id`), `at`, `after` (time since the start) |
//! | `highest_level` | the highest escalation level reached; `0` when none fired |
//! | `checks` | every check run in a diagnosis, oldest first: `topic`, `name`, `status` (`ok`, `warn`, `crit`, `error`), `verdict` (`CRIT` …), `summary`, `by` (or none), `at` |
//! | `remediations` | every remediation that ran, oldest first: `name`, `status`, `status_upper`, `requested_by` (or none), `approved_by` (list), `by` (or none), `at`, `verified` (`fixed`, `not fixed`, or none) |
//! | `notes` | every `/incident note`, oldest first: `text`, `by` (or none), `at`, `at_time` (`10:04:31`) |
//! | `followups` | every `/incident followup`, oldest first: `text`, `owner`, `due`, `done_by`, `done_at` (each or none), `done` (true/false) |
//! | `checklists` | every checklist opened: `name`, `done` and `total` (counts), `items` (as `followups`) |
//! | `timeline` | every event, oldest first: `kind`, `by` (or none), `at`, `at_time`, `what` (one line saying what happened) |
//! | `incident` | the raw incident as the JSON API shows it, with its `timeline` |

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::Serde;
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};
use serde::Serialize;
use serde_json::Value as Json;

use super::{Incident, IncidentStatus, Severity, TimelineEvent, TimelineKind, human_duration};
use crate::config::TemplatesConfig;

/// How much work one rendering may do. MiniJinja charges one unit per instruction and one per
/// 64 bytes produced, so this allows some thousands of loop iterations and a few megabytes at
/// most; the shipped templates use a few hundred.
const FUEL: u64 = 50_000;

/// How deeply a template may nest loops, macros and includes.
const RECURSION_LIMIT: usize = 100;

/// The shipped templates: (which, registered name, source).
const SHIPPED: [(&str, &str, &str); 3] = [
    ("notification", "templates/notification.md.j2", include_str!("../../templates/notification.md.j2")),
    ("resolution", "templates/resolution.md.j2", include_str!("../../templates/resolution.md.j2")),
    ("postmortem", "templates/postmortem.md.j2", include_str!("../../templates/postmortem.md.j2")),
];

/// The incident messages and the post-mortem, compiled and ready to render.
#[derive(Debug, Clone)]
pub struct Templates {
    environment: Environment<'static>,
    /// The names the templates are registered under: the shipped name or the user's file path,
    /// so that a rendering error points at the file to fix.
    notification_name: String,
    resolution_name: String,
    postmortem_name: String,
}

impl Templates {
    /// The shipped defaults (embedded from `templates/*.md.j2`).
    pub fn shipped() -> Templates {
        let mut environment = bounded_environment();
        for (_, name, source) in SHIPPED {
            environment.add_template(name, source).expect("the shipped templates compile (tested)");
        }
        let [notification, resolution, postmortem] = SHIPPED.map(|(_, name, _)| name.to_string());
        Templates {
            environment,
            notification_name: notification,
            resolution_name: resolution,
            postmortem_name: postmortem,
        }
    }

    /// The templates `config` names, relative to its file's folder (see [`Templates::load`]).
    pub fn from_config(config: &crate::config::Config) -> Result<Templates, String> {
        let base_dir = config.path.as_ref().and_then(|path| path.parent()).map(Path::to_path_buf).unwrap_or_default();
        Templates::load(&config.templates, &base_dir)
    }

    /// The shipped defaults, with the ones named in `config` (relative to `base_dir`, the config
    /// file's folder) read from disk and compiled now, so that a syntax error is reported at
    /// start-up with the file name and line. Each user template is also rendered once against
    /// [`sample_incident`], so a misspelt variable is reported at start-up too.
    pub fn load(config: &TemplatesConfig, base_dir: &Path) -> Result<Templates, String> {
        let mut templates = Templates::shipped();
        let mut errors = Vec::new();
        let mut loaded = Vec::new();
        let overrides = [
            ("notification", &config.notification),
            ("resolution", &config.resolution),
            ("postmortem", &config.postmortem),
        ];
        for (which, path) in overrides {
            let Some(path) = path else { continue };
            let path = base_dir.join(path);
            let name = path.display().to_string();
            let source = match std::fs::read_to_string(&path) {
                Ok(source) => source,
                Err(error) => {
                    errors.push(format!("{name}: cannot read templates.{which}: {error}"));
                    continue;
                }
            };
            if let Err(error) = templates.environment.add_template_owned(name.clone(), source) {
                errors.push(describe_error(&error, &name));
                continue;
            }
            match which {
                "notification" => templates.notification_name = name.clone(),
                "resolution" => templates.resolution_name = name.clone(),
                _ => templates.postmortem_name = name.clone(),
            }
            loaded.push(name);
        }
        if errors.is_empty() {
            let sample = sample_incident();
            let now = sample.resolved_at.unwrap_or(sample.started_at);
            for name in &loaded {
                if let Err(error) = templates.render(name, &sample, now) {
                    errors.push(format!("{error} (rendering a sample incident)"));
                }
            }
        }
        if errors.is_empty() { Ok(templates) } else { Err(errors.join("\n")) }
    }

    /// The incident notification: title, status, severity, impact, started, ETA.
    pub fn notification(&self, incident: &Incident, now: DateTime<Utc>) -> Result<String, String> {
        self.render(&self.notification_name, incident, now)
    }

    /// The resolution summary: duration, root cause, fix, prevention, time to acknowledge and to
    /// resolve, escalation levels reached, checks with verdicts, remediations with approvers.
    pub fn resolution(&self, incident: &Incident, now: DateTime<Utc>) -> Result<String, String> {
        self.render(&self.resolution_name, incident, now)
    }

    /// The post-mortem in Markdown, built from the incident's own record: times with TTA and
    /// TTR, the timeline with notes, checks, remediations with requester, approvers and
    /// verification, root cause, fix and prevention.
    pub fn postmortem(&self, incident: &Incident, now: DateTime<Utc>) -> Result<String, String> {
        self.render(&self.postmortem_name, incident, now).map(|text| text + "\n")
    }

    fn render(&self, name: &str, incident: &Incident, now: DateTime<Utc>) -> Result<String, String> {
        let template = self.environment.get_template(name).map_err(|error| describe_error(&error, name))?;
        let context = Context::new(incident, now);
        // A chat message never needs to end in blank lines, whatever the template's last line.
        let text = template.render(Serde(&context)).map_err(|error| describe_error(&error, name))?;
        Ok(text.trim_end().to_string())
    }
}

/// An environment that bounds what an untrusted template can do and produces plain text.
fn bounded_environment() -> Environment<'static> {
    let mut environment = Environment::new();
    environment.set_fuel(Some(FUEL));
    environment.set_recursion_limit(RECURSION_LIMIT);
    // The output is chat text, never HTML, whatever the file is called.
    environment.set_auto_escape_callback(|_| AutoEscape::None);
    // Printing a misspelt variable fails instead of printing nothing; `{% if name %}` still works.
    environment.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    // Tags on lines of their own leave no blank lines, so templates can be laid out readably.
    let syntax = SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .expect("the default delimiters are valid");
    environment.set_syntax(syntax);
    environment
}

/// `file:line: what went wrong`, the way firebell reports every problem in a user's file.
fn describe_error(error: &minijinja::Error, name: &str) -> String {
    let name = error.name().unwrap_or(name);
    let location = match error.line() {
        Some(line) => format!("{name}:{line}"),
        None => name.to_string(),
    };
    let what = match error.detail() {
        Some(detail) => format!("{}: {detail}", error.kind()),
        None => error.kind().to_string(),
    };
    let hint = match error.kind() {
        ErrorKind::OutOfFuel => " (the template does too much work: a loop runs too long or the output is too large)",
        _ => "",
    };
    format!("{location}: {what}{hint}")
}

/// What a template sees; see the table at the top of this module.
#[derive(Debug, Serialize)]
struct Context<'a> {
    id: i64,
    title: &'a str,
    status: &'static str,
    status_upper: String,
    severity: &'static str,
    severity_upper: String,
    impact: String,
    commander: String,
    declared_by: Option<&'a str>,
    open: bool,
    now: String,
    started: String,
    started_human: String,
    started_ago: String,
    eta: String,
    duration: String,
    acknowledged_at: Option<String>,
    acknowledged_by: Option<&'a str>,
    time_to_acknowledge: Option<String>,
    resolved_at: Option<String>,
    resolved_by: Option<&'a str>,
    time_to_resolve: Option<String>,
    root_cause: String,
    fix: String,
    prevention: String,
    latest_update: Option<StatusUpdate>,
    escalations: Vec<Escalation>,
    highest_level: u64,
    checks: Vec<CheckVerdict>,
    remediations: Vec<Remediation>,
    notes: Vec<Note>,
    followups: Vec<TaskView>,
    checklists: Vec<ChecklistView>,
    timeline: Vec<Happened>,
    incident: &'a Incident,
}

/// A follow-up or checklist item as a template shows it.
#[derive(Debug, Serialize)]
struct TaskView {
    text: String,
    owner: Option<String>,
    due: Option<String>,
    done: bool,
    done_by: Option<String>,
    done_at: Option<String>,
}

impl TaskView {
    fn new(task: &crate::incident::tasks::Task) -> TaskView {
        TaskView {
            text: task.text.clone(),
            owner: task.owner.clone(),
            due: task.due_at.map(rfc3339),
            done: task.is_done(),
            done_by: task.done_by.clone(),
            done_at: task.done_at.map(rfc3339),
        }
    }
}

#[derive(Debug, Serialize)]
struct ChecklistView {
    name: String,
    done: usize,
    total: usize,
    items: Vec<TaskView>,
}

#[derive(Debug, Serialize)]
struct Note {
    text: String,
    by: Option<String>,
    at: String,
    at_time: String,
}

/// One timeline event, said in one line.
#[derive(Debug, Serialize)]
struct Happened {
    kind: &'static str,
    by: Option<String>,
    at: String,
    at_time: String,
    what: String,
}

#[derive(Debug, Serialize)]
struct StatusUpdate {
    phase: String,
    phase_title: String,
    text: String,
    eta: Option<String>,
    by: Option<String>,
    at: String,
    at_human: String,
}

#[derive(Debug, Serialize)]
struct Escalation {
    level: u64,
    round: u64,
    notified: Vec<String>,
    at: String,
    after: String,
}

#[derive(Debug, Serialize)]
struct CheckVerdict {
    topic: String,
    name: String,
    status: String,
    verdict: String,
    summary: String,
    by: Option<String>,
    at: String,
}

#[derive(Debug, Serialize)]
struct Remediation {
    name: String,
    status: String,
    status_upper: String,
    requested_by: Option<String>,
    approved_by: Vec<String>,
    by: Option<String>,
    at: String,
    /// "fixed" or "not fixed" once its checks re-ran (`remediation_verified`).
    verified: Option<&'static str>,
}

impl<'a> Context<'a> {
    fn new(incident: &'a Incident, now: DateTime<Utc>) -> Context<'a> {
        let not_recorded = |text: &Option<String>| text.clone().unwrap_or_else(|| "not recorded".to_string());
        let events = |kind: TimelineKind| incident.timeline.iter().filter(move |event| event.kind == kind);
        // The latest by time; on a tie the one recorded last, which is what `max_by_key` keeps.
        let latest_update = events(TimelineKind::Status).max_by_key(|event| event.at).map(status_update);
        // An update without an ETA (`monitoring`, say) doesn't withdraw the one given before.
        let latest_eta = events(TimelineKind::Status)
            .filter_map(|event| Some((event.at, text_field(&event.detail, "eta")?)))
            .max_by_key(|(at, _)| *at)
            .map(|(_, eta)| eta);
        let escalations: Vec<Escalation> =
            events(TimelineKind::Escalated).map(|event| escalation(event, incident.started_at)).collect();
        Context {
            id: incident.id,
            title: &incident.title,
            status: incident.status.name(),
            status_upper: incident.status.name().to_uppercase(),
            severity: incident.severity.name(),
            severity_upper: incident.severity.name().to_uppercase(),
            impact: incident.impact.clone().unwrap_or_else(|| "not assessed yet".to_string()),
            commander: incident.commander.clone().unwrap_or_else(|| "unassigned".to_string()),
            declared_by: incident.declared_by.as_deref(),
            open: incident.is_open(),
            now: rfc3339(now),
            started: rfc3339(incident.started_at),
            started_human: human_time(incident.started_at),
            started_ago: human_duration(now - incident.started_at),
            eta: latest_eta.unwrap_or_else(|| "unknown".to_string()),
            duration: human_duration(incident.resolved_at.unwrap_or(now) - incident.started_at),
            acknowledged_at: incident.acknowledged_at.map(rfc3339),
            acknowledged_by: incident.acknowledged_by.as_deref(),
            time_to_acknowledge: incident.time_to_acknowledge().map(human_duration),
            resolved_at: incident.resolved_at.map(rfc3339),
            resolved_by: incident.resolved_by.as_deref(),
            time_to_resolve: incident.time_to_resolve().map(human_duration),
            root_cause: not_recorded(&incident.root_cause),
            fix: not_recorded(&incident.fix),
            prevention: not_recorded(&incident.prevention),
            latest_update,
            highest_level: escalations.iter().map(|escalation| escalation.level).max().unwrap_or(0),
            escalations,
            checks: events(TimelineKind::Diagnosis).flat_map(check_verdicts).collect(),
            remediations: events(TimelineKind::RemediationRan)
                .map(|ran| remediation(ran, &incident.timeline))
                .collect(),
            notes: events(TimelineKind::Note)
                .map(|event| Note {
                    text: text_field(&event.detail, "text").unwrap_or_default(),
                    by: event.by.clone(),
                    at: rfc3339(event.at),
                    at_time: event.at.format("%H:%M:%S").to_string(),
                })
                .collect(),
            followups: incident.followups.iter().map(TaskView::new).collect(),
            checklists: incident
                .checklists
                .iter()
                .map(|checklist| ChecklistView {
                    name: checklist.name.clone(),
                    done: checklist.done(),
                    total: checklist.items.len(),
                    items: checklist.items.iter().map(TaskView::new).collect(),
                })
                .collect(),
            timeline: incident
                .timeline
                .iter()
                .map(|event| Happened {
                    kind: event.kind.as_str(),
                    by: event.by.clone(),
                    at: rfc3339(event.at),
                    at_time: event.at.format("%H:%M:%S").to_string(),
                    what: happened(event),
                })
                .collect(),
            incident,
        }
    }
}

fn status_update(event: &TimelineEvent) -> StatusUpdate {
    let phase = text_field(&event.detail, "phase").unwrap_or_else(|| "investigating".to_string());
    let mut phase_title = phase.clone();
    if let Some(first) = phase_title.get_mut(..1) {
        first.make_ascii_uppercase();
    }
    StatusUpdate {
        phase_title,
        phase,
        text: text_field(&event.detail, "text").unwrap_or_default(),
        eta: text_field(&event.detail, "eta"),
        by: event.by.clone(),
        at: rfc3339(event.at),
        at_human: human_time(event.at),
    }
}

fn escalation(event: &TimelineEvent, started_at: DateTime<Utc>) -> Escalation {
    let detail = &event.detail;
    // `step` and `repeat` are 0-based in the timeline; people count levels and rounds from 1.
    Escalation {
        level: detail["step"].as_u64().unwrap_or(0) + 1,
        round: detail["repeat"].as_u64().unwrap_or(0) + 1,
        notified: text_list(&detail["notified"]),
        at: rfc3339(event.at),
        after: human_duration(event.at - started_at),
    }
}

fn check_verdicts(event: &TimelineEvent) -> Vec<CheckVerdict> {
    let topic = text_field(&event.detail, "topic").unwrap_or_default();
    let Some(checks) = event.detail["checks"].as_array() else {
        return Vec::new();
    };
    checks
        .iter()
        .map(|check| {
            let status = text_field(check, "status").unwrap_or_else(|| "error".to_string());
            CheckVerdict {
                topic: topic.clone(),
                name: text_field(check, "name").unwrap_or_default(),
                verdict: status.to_uppercase(),
                status,
                summary: text_field(check, "summary").unwrap_or_default(),
                by: event.by.clone(),
                at: rfc3339(event.at),
            }
        })
        .collect()
}

/// A remediation that ran, with who asked for it and its verification from the same request's
/// other events on `timeline`.
fn remediation(event: &TimelineEvent, timeline: &[TimelineEvent]) -> Remediation {
    let status = text_field(&event.detail, "status").unwrap_or_else(|| "unknown".to_string());
    let of_request = |kind: TimelineKind| {
        timeline.iter().find(|other| other.kind == kind && other.detail["request"] == event.detail["request"])
    };
    let verified = of_request(TimelineKind::RemediationVerified)
        .map(|verified| if verified.detail["fixed"] == true { "fixed" } else { "not fixed" });
    let requested_by = of_request(TimelineKind::RemediationRequested).and_then(|requested| requested.by.clone());
    Remediation {
        name: text_field(&event.detail, "name").unwrap_or_default(),
        status_upper: status.to_uppercase(),
        status,
        approved_by: text_list(&event.detail["approved_by"]),
        by: event.by.clone(),
        at: rfc3339(event.at),
        verified,
        requested_by,
    }
}

/// What one timeline event records, in one line.
fn happened(event: &TimelineEvent) -> String {
    let detail = &event.detail;
    let field = |key: &str| text_field(detail, key).unwrap_or_default();
    match event.kind {
        TimelineKind::Declared => "declared".to_string(),
        TimelineKind::Acknowledged => "acknowledged; escalation stopped".to_string(),
        TimelineKind::Status => format!("{}: {}", field("phase"), field("text")),
        TimelineKind::Resolved => "resolved".to_string(),
        TimelineKind::Reopened => "re-opened: the alert fired again".to_string(),
        TimelineKind::Alert => format!("alert {}", field("status")),
        TimelineKind::Escalated => {
            let notified = text_list(&detail["notified"]);
            format!("escalation step {} paged {}", detail["step"].as_u64().unwrap_or(0) + 1, notified.join(", "))
        }
        TimelineKind::EscalationSkipped => "an escalation step had nobody to page".to_string(),
        TimelineKind::EscalationRequested => "asked to escalate now".to_string(),
        TimelineKind::Diagnosis => {
            // Older events carry only each check's status: the worst of them is the verdict.
            let rank = |status: &str| ["ok", "warn", "crit", "error"].iter().position(|name| *name == status);
            let checks = detail["checks"].as_array().cloned().unwrap_or_default();
            let worst = text_field(detail, "status").or_else(|| {
                let statuses = checks.iter().filter_map(|check| check["status"].as_str());
                statuses.max_by_key(|status| rank(status)).map(str::to_string)
            });
            let verdict = worst.map(|status| status.to_uppercase()).unwrap_or_else(|| "no verdict".to_string());
            let count = if checks.len() == 1 { "1 check".to_string() } else { format!("{} checks", checks.len()) };
            format!("diagnose {}: {verdict} ({count})", field("topic"))
        }
        TimelineKind::NotificationFailed => "a chat notification could not be delivered".to_string(),
        TimelineKind::NotificationRetrying => "a chat notification is being retried".to_string(),
        TimelineKind::Note => format!("note: {}", field("text")),
        TimelineKind::Followup => {
            let owner = text_field(detail, "owner").map(|owner| format!(" (owner {owner})")).unwrap_or_default();
            format!("follow-up: {}{owner}", field("text"))
        }
        TimelineKind::FollowupDone => format!("follow-up done: {}", field("text")),
        TimelineKind::Checklist => format!("checklist {} opened", field("checklist")),
        TimelineKind::ChecklistDone => format!("checklist {}: done: {}", field("checklist"), field("text")),
        TimelineKind::Reminded => {
            let notified: Vec<&str> =
                detail["notified"].as_array().into_iter().flatten().filter_map(|person| person.as_str()).collect();
            let who = if notified.is_empty() { "nobody to remind".to_string() } else { notified.join(", ") };
            format!("reminder ({who}): {}", field("text"))
        }
        TimelineKind::RemediationVerified => {
            let verdict = if detail["fixed"] == true { "fixed" } else { "not fixed" };
            format!("{} verified: {verdict}", field("name"))
        }
        kind => format!("{} {}", field("name"), kind.as_str().trim_start_matches("remediation_")),
    }
}

/// A detail field as text: strings as they are, numbers and the like as JSON, absent as `None`.
fn text_field(detail: &Json, key: &str) -> Option<String> {
    match &detail[key] {
        Json::Null => None,
        Json::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}

fn text_list(value: &Json) -> Vec<String> {
    let Some(items) = value.as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .map(|item| match item {
            Json::String(text) => text.clone(),
            other => other.to_string(),
        })
        .collect()
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn human_time(time: DateTime<Utc>) -> String {
    time.format("%a %-d %b %Y %H:%M UTC").to_string()
}

/// A resolved incident with every field and every timeline kind the templates show filled in:
/// what user templates are rendered against at start-up, and a preview for template authors.
///
/// The story: an alert declares it at 10:00 and a diagnosis runs at once; the on-call engineer
/// doesn't answer, so the secondary is paged at 10:15 and acknowledges; a remediation approved
/// by the lead fixes it; it is resolved at 10:42.
/// A task of the sample incident, done by `done` (who, when) if given.
fn sample_task(
    id: i64,
    checklist: Option<&str>,
    text: &str,
    owner: Option<&str>,
    due_at: Option<DateTime<Utc>>,
    done: Option<(&str, DateTime<Utc>)>,
) -> crate::incident::tasks::Task {
    let created_at = DateTime::parse_from_rfc3339("2026-11-22T10:30:00Z").expect("a valid time").to_utc();
    crate::incident::tasks::Task {
        id,
        incident_id: 7,
        checklist: checklist.map(str::to_string),
        text: text.to_string(),
        owner: owner.map(str::to_string),
        due_at,
        created_at,
        created_by: Some("slack:U01ONCALL".to_string()),
        done_at: done.map(|(_, at)| at),
        done_by: done.map(|(by, _)| by.to_string()),
        reminded_at: None,
    }
}

pub fn sample_incident() -> Incident {
    use serde_json::json;
    let started_at = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z").expect("a valid time").to_utc();
    let at = |minutes: i64| started_at + chrono::Duration::minutes(minutes);
    let (oncall, secondary, lead) = ("slack:U01ONCALL", "slack:U02SECOND", "slack:U03LEAD");
    let timeline = vec![
        TimelineEvent::new(at(0), TimelineKind::Declared, None, json!({"source": "alertmanager"})),
        TimelineEvent::new(at(0), TimelineKind::Escalated, None, json!({"step": 0, "repeat": 0, "notified": [oncall]})),
        TimelineEvent::new(
            at(1),
            TimelineKind::Diagnosis,
            None,
            json!({"topic": "queue", "checks": [
                {"name": "trade queue depth", "status": "crit", "summary": "12400 jobs waiting (crit above 5000)"},
                {"name": "workers alive", "status": "warn", "summary": "3 of 8 workers heartbeating"},
                {"name": "redis reachable", "status": "ok", "summary": "PONG in 2 ms"},
            ]}),
        ),
        TimelineEvent::new(
            at(15),
            TimelineKind::Escalated,
            None,
            json!({"step": 1, "repeat": 0, "notified": [secondary, "discord:4471"]}),
        ),
        TimelineEvent::new(at(17), TimelineKind::Acknowledged, Some(secondary), json!({})),
        TimelineEvent::new(
            at(18),
            TimelineKind::Status,
            Some(secondary),
            json!({"phase": "identified", "text": "Workers crash on a malformed order; restarting them.", "eta": "10:45 UTC"}),
        ),
        TimelineEvent::new(
            at(19),
            TimelineKind::RemediationRequested,
            Some(secondary),
            json!({"request": 3, "name": "restart workers"}),
        ),
        TimelineEvent::new(
            at(20),
            TimelineKind::RemediationApproved,
            Some(lead),
            json!({"request": 3, "name": "restart workers"}),
        ),
        TimelineEvent::new(
            at(20),
            TimelineKind::Note,
            Some(oncall),
            json!({"text": "Bad order came from the partner feed"}),
        ),
        TimelineEvent::new(
            at(21),
            TimelineKind::RemediationRan,
            Some(secondary),
            json!({"request": 3, "name": "restart workers", "approved_by": [lead], "status": "ok"}),
        ),
        TimelineEvent::new(
            at(22),
            TimelineKind::RemediationVerified,
            None,
            json!({"request": 3, "name": "restart workers", "before": {"depth": "crit"}, "after": {"depth": "ok"}, "fixed": true}),
        ),
        TimelineEvent::new(
            at(25),
            TimelineKind::Status,
            Some(secondary),
            json!({"phase": "monitoring", "text": "Queue is draining: 800 jobs left."}),
        ),
        TimelineEvent::new(at(42), TimelineKind::Resolved, Some(secondary), json!({})),
    ];
    Incident {
        id: 7,
        title: "Trade queue backlog".to_string(),
        severity: Severity::High,
        status: IncidentStatus::Resolved,
        impact: Some("Copied trades are delayed by up to 10 minutes".to_string()),
        commander: Some(secondary.to_string()),
        fingerprint: Some("alertmanager:QueueBacklog".to_string()),
        policy: Some("default".to_string()),
        declared_by: None,
        started_at,
        acknowledged_at: Some(at(17)),
        acknowledged_by: Some(secondary.to_string()),
        resolved_at: Some(at(42)),
        resolved_by: Some(secondary.to_string()),
        root_cause: Some("A malformed order crashed every worker that picked it up.".to_string()),
        fix: Some("Moved the order to the dead-letter queue and restarted the workers.".to_string()),
        prevention: Some("Validate orders before queueing; alert on worker heartbeats.".to_string()),
        chat: [(
            "slack".to_string(),
            super::ChatRef { channel: "C0INCIDENTS".into(), message: "1795341600.000100".into() },
        )]
        .into(),
        alert_repeats: 0,
        last_alert_at: None,
        timeline,
        followups: vec![sample_task(1, None, "Alert on queue depth above 500", Some(lead), Some(at(60 * 48)), None)],
        checklists: vec![crate::incident::tasks::ChecklistState {
            name: "post-incident".into(),
            items: vec![
                sample_task(2, Some("post-incident"), "Service restored", None, Some(at(30)), Some((oncall, at(31)))),
                sample_task(
                    3,
                    Some("post-incident"),
                    "Post-mortem scheduled",
                    Some("group:leads"),
                    Some(at(60 * 48)),
                    None,
                ),
            ],
        }],
    }
}

/// The sample incident as it was at 10:05: just declared, nobody acknowledged yet (what a
/// notification shows).
pub fn sample_open_incident() -> Incident {
    let mut incident = sample_incident();
    incident.status = IncidentStatus::Triggered;
    incident.acknowledged_at = None;
    incident.acknowledged_by = None;
    incident.resolved_at = None;
    incident.resolved_by = None;
    incident.root_cause = None;
    incident.fix = None;
    incident.prevention = None;
    incident.timeline.truncate(1);
    incident
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    /// Declared by an alert three minutes ago; nobody has acknowledged or said anything yet.
    fn fresh_incident() -> Incident {
        let started_at = time("2026-11-22T10:00:00Z");
        Incident {
            id: 12,
            title: "Checkout API returning 502".to_string(),
            severity: Severity::Critical,
            status: IncidentStatus::Triggered,
            impact: Some("Customers cannot pay".to_string()),
            commander: None,
            fingerprint: Some("alertmanager:Checkout5xx".to_string()),
            policy: Some("default".to_string()),
            declared_by: None,
            started_at,
            acknowledged_at: None,
            acknowledged_by: None,
            resolved_at: None,
            resolved_by: None,
            root_cause: None,
            fix: None,
            prevention: None,
            chat: Default::default(),
            alert_repeats: 0,
            last_alert_at: None,
            timeline: vec![TimelineEvent::new(started_at, TimelineKind::Declared, None, serde_json::json!({}))],
            followups: Vec::new(),
            checklists: Vec::new(),
        }
    }

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    fn overrides(notification: Option<&str>, resolution: Option<&str>) -> TemplatesConfig {
        TemplatesConfig {
            notification: notification.map(Into::into),
            resolution: resolution.map(Into::into),
            postmortem: None,
        }
    }

    #[test]
    fn notification_of_a_fresh_incident() {
        let text = Templates::shipped().notification(&fresh_incident(), time("2026-11-22T10:03:00Z")).unwrap();
        insta::assert_snapshot!("notification_fresh", text);
    }

    #[test]
    fn notification_shows_the_latest_status_update_and_the_last_eta_given() {
        let text = Templates::shipped().notification(&sample_incident(), time("2026-11-22T10:42:00Z")).unwrap();
        assert!(text.contains("*Status:* RESOLVED · Monitoring\n"), "{text}");
        // The monitoring update gave no ETA; the identified one before it did.
        assert!(text.contains("*ETA:* 10:45 UTC\n"), "{text}");
        assert!(text.contains("*Acknowledged:* by slack:U02SECOND after 17m 0s\n"), "{text}");
        assert!(
            text.contains("*Latest update* (Sun 22 Nov 2026 10:25 UTC, slack:U02SECOND): Queue is draining"),
            "{text}"
        );
    }

    #[test]
    fn escalation_rounds_and_empty_steps_read_plainly() {
        let mut incident = fresh_incident();
        let at = |minutes| incident.started_at + chrono::Duration::minutes(minutes);
        let escalated = |minutes, step, repeat, notified: &[&str]| {
            let detail = serde_json::json!({"step": step, "repeat": repeat, "notified": notified});
            TimelineEvent::new(at(minutes), TimelineKind::Escalated, None, detail)
        };
        let events = [escalated(0, 0, 0, &["slack:U1"]), escalated(10, 1, 0, &[]), escalated(20, 0, 1, &["slack:U1"])];
        incident.timeline.extend(events);
        let text = Templates::shipped().resolution(&incident, time("2026-11-22T10:30:00Z")).unwrap();
        let expected = "*Escalation levels reached:* 2\n\
                        • Level 1 (+0s): slack:U1\n\
                        • Level 2 (+10m 0s): nobody to notify\n\
                        • Level 1, round 2 (+20m 0s): slack:U1\n";
        assert!(text.contains(expected), "{text}");
        assert!(text.contains("*Duration:* 30m 0s\n"), "{text}");
        assert!(text.contains("*Time to resolve:* not resolved yet\n"), "{text}");
    }

    #[test]
    fn postmortem_of_a_fully_populated_incident() {
        let text = Templates::shipped().postmortem(&sample_incident(), time("2026-11-22T11:00:00Z")).unwrap();
        insta::assert_snapshot!("postmortem_full", text);
    }

    #[test]
    fn resolution_of_a_fully_populated_incident() {
        let text = Templates::shipped().resolution(&sample_incident(), time("2026-11-22T11:00:00Z")).unwrap();
        insta::assert_snapshot!("resolution_full", text);
    }

    #[test]
    fn resolution_without_details_says_what_is_missing() {
        let mut incident = fresh_incident();
        incident.status = IncidentStatus::Resolved;
        incident.resolved_at = Some(time("2026-11-22T10:09:30Z"));
        let text = Templates::shipped().resolution(&incident, time("2026-11-22T11:00:00Z")).unwrap();
        for line in [
            "*Duration:* 9m 30s\n",
            "*Root cause:* not recorded\n",
            "*Time to acknowledge:* never acknowledged\n",
            "*Time to resolve:* 9m 30s\n",
            "*Escalation levels reached:* none\n",
            "*Checks run:* none\n",
        ] {
            assert!(text.contains(line), "{line:?} missing from:\n{text}");
        }
        assert!(text.ends_with("*Remediations applied:* none"), "{text}");
    }

    #[test]
    fn a_long_incident_fits_in_the_fuel_budget() {
        let mut incident = sample_incident();
        let at = incident.started_at;
        let check = serde_json::json!({"name": "replica lag", "status": "warn", "summary": "x".repeat(200)});
        for round in 0..50 {
            let detail = serde_json::json!({"step": 0, "repeat": round, "notified": ["slack:U1", "slack:U2"]});
            incident.timeline.push(TimelineEvent::new(at, TimelineKind::Escalated, None, detail));
            let detail = serde_json::json!({"topic": "db", "checks": [check.clone(), check.clone(), check.clone()]});
            incident.timeline.push(TimelineEvent::new(at, TimelineKind::Diagnosis, None, detail));
        }
        let templates = Templates::shipped();
        let text = templates.resolution(&incident, at).unwrap();
        assert_eq!(text.matches("• [WARN] db / replica lag").count(), 150);
        templates.notification(&incident, at).unwrap();
    }

    #[test]
    fn a_user_template_overrides_the_shipped_one() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("templates")).unwrap();
        write(
            &dir.path().join("templates"),
            "page.txt.j2",
            "{{ severity_upper }} #{{ id }} {{ title }} since {{ started }} ({{ duration }})",
        );
        let templates = Templates::load(&overrides(Some("templates/page.txt.j2"), None), dir.path()).unwrap();
        let now = time("2026-11-22T10:03:00Z");
        let text = templates.notification(&fresh_incident(), now).unwrap();
        assert_eq!(text, "CRITICAL #12 Checkout API returning 502 since 2026-11-22T10:00:00Z (3m 0s)");
        // The other message stays the shipped one.
        let resolution = templates.resolution(&sample_incident(), now).unwrap();
        assert!(resolution.starts_with("✅ *RESOLVED #7: Trade queue backlog*"), "{resolution}");
    }

    #[test]
    fn a_syntax_error_fails_loading_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "resolution.md.j2", "Resolved: {{ title }}\n{% if root_cause %}\n{{ root_cause }}\n");
        let error = Templates::load(&overrides(None, Some("resolution.md.j2")), dir.path()).unwrap_err();
        let file = dir.path().join("resolution.md.j2").display().to_string();
        assert!(error.starts_with(&format!("{file}:3: syntax error: ")), "{error}");
        assert!(error.contains("end of input"), "{error}");
    }

    #[test]
    fn a_misspelt_variable_fails_loading_with_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "notify.j2", "Incident {{ title }}\nStarted {{ started_at }}\n");
        let error = Templates::load(&overrides(Some("notify.j2"), None), dir.path()).unwrap_err();
        let file = dir.path().join("notify.j2").display().to_string();
        assert!(error.starts_with(&format!("{file}:2: undefined value")), "{error}");
    }

    #[test]
    fn a_missing_template_file_fails_loading() {
        let dir = tempfile::tempdir().unwrap();
        let error = Templates::load(&overrides(Some("nope.j2"), None), dir.path()).unwrap_err();
        assert!(error.contains("nope.j2: cannot read templates.notification: "), "{error}");
    }

    #[test]
    fn runaway_templates_run_out_of_fuel() {
        let now = time("2026-11-22T10:03:00Z");
        let runaway = [
            "{% for i in range(100000) %}{% for j in range(100000) %}{{ title }}{% endfor %}{% endfor %}",
            "{{ title * 10000000 }}",
            "{% macro deeper(n) %}{{ deeper(n + 1) }}{% endmacro %}{{ deeper(0) }}",
        ];
        for source in runaway {
            let mut environment = bounded_environment();
            environment.add_template("runaway.j2", source).unwrap();
            let templates =
                Templates { environment, notification_name: "runaway.j2".to_string(), ..Templates::shipped() };
            let error = templates.notification(&fresh_incident(), now).unwrap_err();
            assert!(error.starts_with("runaway.j2:1: "), "{error}");
            assert!(error.contains("ran out of fuel") || error.contains("recursion limit"), "{source}: {error}");
        }
        // Loading reports the same at start-up.
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "loop.j2", runaway[0]);
        let error = Templates::load(&overrides(Some("loop.j2"), None), dir.path()).unwrap_err();
        assert!(error.contains("engine ran out of fuel (the template does too much work"), "{error}");
    }
}
