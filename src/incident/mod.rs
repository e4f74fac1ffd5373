//! The incident model: states triggered → acknowledged → resolved, the timeline, and the rules
//! for moving between states. Pure logic; the store persists it.

pub mod lifecycle;
pub mod summary;
pub mod tasks;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use crate::config::Severity;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentStatus {
    Triggered,
    Acknowledged,
    Resolved,
}

impl IncidentStatus {
    pub fn name(self) -> &'static str {
        match self {
            IncidentStatus::Triggered => "triggered",
            IncidentStatus::Acknowledged => "acknowledged",
            IncidentStatus::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "triggered" => Some(IncidentStatus::Triggered),
            "acknowledged" => Some(IncidentStatus::Acknowledged),
            "resolved" => Some(IncidentStatus::Resolved),
            _ => None,
        }
    }
}

impl fmt::Display for IncidentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Declares [`TimelineKind`] with each kind's name as stored and shown, in one list.
macro_rules! timeline_kinds {
    ($($(#[$doc:meta])* $kind:ident = $name:literal,)*) => {
        /// What a timeline event records. Stored and shown by its name (`remediation_ran`).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
        pub enum TimelineKind {
            $($(#[$doc])* #[serde(rename = $name)] $kind,)*
        }

        impl TimelineKind {
            pub const ALL: &[TimelineKind] = &[$(TimelineKind::$kind,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $(TimelineKind::$kind => $name,)*
                }
            }

            pub fn parse(name: &str) -> Option<TimelineKind> {
                match name {
                    $($name => Some(TimelineKind::$kind),)*
                    _ => None,
                }
            }
        }
    };
}

timeline_kinds! {
    Declared = "declared",
    Acknowledged = "acknowledged",
    /// `/incident status`: phase, text and ETA.
    Status = "status",
    Resolved = "resolved",
    /// An alert fired again soon after its incident resolved, and opened it again.
    Reopened = "reopened",
    /// An alert of the incident's fingerprint changed state.
    Alert = "alert",
    Escalated = "escalated",
    /// A step was due but had nobody to page.
    EscalationSkipped = "escalation_skipped",
    /// Someone asked for the next step now (`/incident escalate`).
    EscalationRequested = "escalation_requested",
    Diagnosis = "diagnosis",
    /// A monitor's verdict changed while its incident was open (`from`, `to`, `monitor`).
    MonitorVerdict = "monitor_verdict",
    NotificationFailed = "notification_failed",
    NotificationRetrying = "notification_retrying",
    RemediationRequested = "remediation_requested",
    /// One approval of several needed.
    RemediationApproval = "remediation_approval",
    RemediationApproved = "remediation_approved",
    RemediationDenied = "remediation_denied",
    RemediationExpired = "remediation_expired",
    /// The runbook changed after the request; its approvals no longer apply.
    RemediationStale = "remediation_stale",
    RemediationRan = "remediation_ran",
    /// The bot stopped while the remediation ran.
    RemediationInterrupted = "remediation_interrupted",
    /// Its checks re-ran after it ran: `before`, `after` and `fixed` (SPEC §11).
    RemediationVerified = "remediation_verified",
    /// `/incident note TEXT`, or a pinned message of the incident's thread (SPEC §13).
    Note = "note",
    /// `/incident followup TEXT`: the follow-up's id, text, owner and due time.
    Followup = "followup",
    FollowupDone = "followup_done",
    /// A checklist opened (its name and items).
    Checklist = "checklist",
    /// An item of a checklist was ticked.
    ChecklistDone = "checklist_done",
    /// A follow-up or checklist item was due and still open: its owner was reminded, once.
    Reminded = "reminded",
}

impl fmt::Display for TimelineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Lets a story compare a kind with its name (`event.kind == TimelineKind::Escalated`).
impl PartialEq<&str> for TimelineKind {
    fn eq(&self, name: &&str) -> bool {
        self.as_str() == *name
    }
}

/// One entry of an incident's timeline: every change, check run, approval and notification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEvent {
    pub at: DateTime<Utc>,
    pub kind: TimelineKind,
    pub by: Option<String>,
    pub detail: serde_json::Value,
}

impl TimelineEvent {
    pub fn new(at: DateTime<Utc>, kind: TimelineKind, by: Option<&str>, detail: serde_json::Value) -> Self {
        Self { at, kind, by: by.map(str::to_string), detail }
    }
}

/// Where an incident lives on one chat platform: its notification, the root of its thread.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatRef {
    pub channel: String,
    pub message: String,
}

/// An incident as the API, the CLI and the templates see it.
#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    pub id: i64,
    pub title: String,
    pub severity: Severity,
    pub status: IncidentStatus,
    pub impact: Option<String>,
    pub commander: Option<String>,
    /// Groups repeats of the same alert into this incident.
    pub fingerprint: Option<String>,
    /// The escalation policy it follows, if any.
    pub policy: Option<String>,
    pub declared_by: Option<String>,
    pub started_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolved_by: Option<String>,
    pub root_cause: Option<String>,
    pub fix: Option<String>,
    pub prevention: Option<String>,
    /// Where the incident lives in chat, by platform: `{"slack": {"channel": …, "message": …}}`.
    pub chat: std::collections::BTreeMap<String, ChatRef>,
    /// Firing alerts of its fingerprint that repeated while it was open, counted here rather
    /// than each put on the timeline; and when the last one came.
    pub alert_repeats: i64,
    pub last_alert_at: Option<DateTime<Utc>>,
    pub timeline: Vec<TimelineEvent>,
    /// Follow-ups assigned in chat, oldest first (SPEC §13).
    pub followups: Vec<tasks::Task>,
    /// The checklists opened for it, each item with its state.
    pub checklists: Vec<tasks::ChecklistState>,
}

/// What declaring an incident needs.
#[derive(Debug, Clone)]
pub struct NewIncident {
    pub title: String,
    pub severity: Severity,
    pub impact: Option<String>,
    pub commander: Option<String>,
    pub fingerprint: Option<String>,
    pub policy: Option<String>,
    pub declared_by: Option<String>,
}

/// What resolving records: the resolution template's fields.
#[derive(Debug, Clone, Default)]
pub struct Resolution {
    pub root_cause: Option<String>,
    pub fix: Option<String>,
    pub prevention: Option<String>,
}

/// Why a state change was refused; the message says what state the incident is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransitionError {
    AlreadyAcknowledged { id: i64, by: Option<String>, at: DateTime<Utc> },
    AlreadyResolved { id: i64, by: Option<String>, at: DateTime<Utc> },
}

impl fmt::Display for TransitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = |by: &Option<String>| by.as_deref().map(|by| format!(" by {by}")).unwrap_or_default();
        match self {
            TransitionError::AlreadyAcknowledged { id, by, at } => {
                write!(f, "incident {id} was already acknowledged{} at {}", who(by), at.to_rfc3339())
            }
            TransitionError::AlreadyResolved { id, by, at } => write!(
                f,
                "incident {id} is resolved{} since {}; it cannot change any more (declare a new incident)",
                who(by),
                at.to_rfc3339()
            ),
        }
    }
}

impl std::error::Error for TransitionError {}

impl Incident {
    pub fn check_acknowledge(&self) -> Result<(), TransitionError> {
        match self.status {
            IncidentStatus::Triggered => Ok(()),
            IncidentStatus::Acknowledged => Err(TransitionError::AlreadyAcknowledged {
                id: self.id,
                by: self.acknowledged_by.clone(),
                at: self.acknowledged_at.unwrap_or(self.started_at),
            }),
            IncidentStatus::Resolved => Err(self.resolved_error()),
        }
    }

    /// Resolving works from triggered and from acknowledged.
    pub fn check_resolve(&self) -> Result<(), TransitionError> {
        match self.status {
            IncidentStatus::Resolved => Err(self.resolved_error()),
            _ => Ok(()),
        }
    }

    fn resolved_error(&self) -> TransitionError {
        TransitionError::AlreadyResolved {
            id: self.id,
            by: self.resolved_by.clone(),
            at: self.resolved_at.unwrap_or(self.started_at),
        }
    }

    pub fn is_open(&self) -> bool {
        self.status != IncidentStatus::Resolved
    }

    pub fn time_to_acknowledge(&self) -> Option<chrono::Duration> {
        self.acknowledged_at.map(|at| at - self.started_at)
    }

    pub fn time_to_resolve(&self) -> Option<chrono::Duration> {
        self.resolved_at.map(|at| at - self.started_at)
    }

    /// The highest escalation step reached (1-based), counting repeats, from the timeline.
    pub fn escalation_levels_reached(&self) -> Vec<serde_json::Value> {
        self.timeline
            .iter()
            .filter(|event| event.kind == TimelineKind::Escalated)
            .map(|event| event.detail.clone())
            .collect()
    }
}

/// `1h 5m`, `12m 3s`, `45s`: how long something took, for people.
pub fn human_duration(duration: chrono::Duration) -> String {
    let total = duration.num_seconds().max(0);
    let (days, hours, minutes, seconds) = (total / 86_400, total / 3600 % 24, total / 60 % 60, total % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{seconds}s"),
        (0, 0, _) => format!("{minutes}m {seconds}s"),
        (0, _, _) => format!("{hours}h {minutes}m"),
        _ => format!("{days}d {hours}h {minutes}m"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn incident(status: IncidentStatus) -> Incident {
        let started_at = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z").unwrap().to_utc();
        Incident {
            id: 7,
            title: "Queue backlog".into(),
            severity: Severity::High,
            status,
            impact: None,
            commander: None,
            fingerprint: None,
            policy: None,
            declared_by: None,
            started_at,
            acknowledged_at: Some(started_at + chrono::Duration::minutes(4)),
            acknowledged_by: Some("slack:U1".into()),
            resolved_at: Some(started_at + chrono::Duration::minutes(42)),
            resolved_by: Some("slack:U2".into()),
            root_cause: None,
            fix: None,
            prevention: None,
            chat: Default::default(),
            alert_repeats: 0,
            last_alert_at: None,
            timeline: Vec::new(),
            followups: Vec::new(),
            checklists: Vec::new(),
        }
    }

    #[test]
    fn transitions_follow_the_state_machine() {
        assert!(incident(IncidentStatus::Triggered).check_acknowledge().is_ok());
        assert!(incident(IncidentStatus::Triggered).check_resolve().is_ok());
        assert!(incident(IncidentStatus::Acknowledged).check_resolve().is_ok());
        let error = incident(IncidentStatus::Acknowledged).check_acknowledge().unwrap_err();
        assert_eq!(error.to_string(), "incident 7 was already acknowledged by slack:U1 at 2026-11-22T10:04:00+00:00");
        let error = incident(IncidentStatus::Resolved).check_acknowledge().unwrap_err();
        assert!(
            error.to_string().starts_with("incident 7 is resolved by slack:U2 since 2026-11-22T10:42:00+00:00"),
            "{error}"
        );
        assert!(incident(IncidentStatus::Resolved).check_resolve().is_err());
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human_duration(chrono::Duration::seconds(45)), "45s");
        assert_eq!(human_duration(chrono::Duration::seconds(723)), "12m 3s");
        assert_eq!(human_duration(chrono::Duration::seconds(3900)), "1h 5m");
        assert_eq!(human_duration(chrono::Duration::seconds(90_000)), "1d 1h 0m");
        let resolved = incident(IncidentStatus::Resolved);
        assert_eq!(resolved.time_to_acknowledge(), Some(chrono::Duration::minutes(4)));
        assert_eq!(resolved.time_to_resolve(), Some(chrono::Duration::minutes(42)));
    }
}
