//! Persistence: one [`Store`] trait for incidents, timelines, escalation timers and the outbox,
//! chosen by `store.url` — SQLite (the default, one process) or PostgreSQL (several replicas).

mod nodelay;
mod sql;

use std::fmt;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

pub use sql::SqlStore;

use crate::config::Person;
use crate::incident::tasks::{NewTask, Task};
use crate::incident::{Incident, NewIncident, Resolution, TimelineEvent, TransitionError};

/// What an outbox item asks chat to do; stored as its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutboxKind {
    /// Post the incident's notification where it will live.
    IncidentDeclared,
    /// Edit its top message and say what changed in its thread.
    IncidentUpdated,
    /// Edit its top message and post the resolution summary.
    IncidentResolved,
    /// Page people: in the incident's thread and by direct message.
    Escalation,
    /// Edit a checklist's message after an item was ticked (`{"checklist": NAME}`).
    Checklist,
    /// Remind a follow-up's or checklist item's owner that it is due (`{"task": ID}`): in the
    /// incident's thread and by direct message.
    Reminder,
}

impl OutboxKind {
    pub const ALL: [OutboxKind; 6] = [
        OutboxKind::IncidentDeclared,
        OutboxKind::IncidentUpdated,
        OutboxKind::IncidentResolved,
        OutboxKind::Escalation,
        OutboxKind::Checklist,
        OutboxKind::Reminder,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            OutboxKind::IncidentDeclared => "incident_declared",
            OutboxKind::IncidentUpdated => "incident_updated",
            OutboxKind::IncidentResolved => "incident_resolved",
            OutboxKind::Escalation => "escalation",
            OutboxKind::Checklist => "checklist",
            OutboxKind::Reminder => "reminder",
        }
    }

    pub fn parse(name: &str) -> Option<OutboxKind> {
        OutboxKind::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

impl fmt::Display for OutboxKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The most one store call may take where a caller waits on it (the alert writer, the timer
/// loop, the deliverer): past it the call fails, and the caller answers 503 or retries.
pub const CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `call`, failed with [`StoreError::Timeout`] if it takes longer than [`CALL_TIMEOUT`].
pub async fn timed<T>(call: impl std::future::Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    tokio::time::timeout(CALL_TIMEOUT, call).await.unwrap_or(Err(StoreError::Timeout))
}

#[derive(Debug)]
pub enum StoreError {
    NotFound(i64),
    NoRequest(i64),
    NoConsoleMessage(i64),
    NoTask(i64),
    Transition(TransitionError),
    Database(String),
    /// The call did not finish within [`CALL_TIMEOUT`].
    Timeout,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::NotFound(id) => write!(f, "there is no incident {id}"),
            StoreError::NoRequest(id) => write!(f, "there is no remediation request {id}"),
            StoreError::NoConsoleMessage(id) => write!(f, "there is no console message {id}"),
            StoreError::NoTask(id) => write!(f, "there is no follow-up or checklist item {id}"),
            StoreError::Transition(error) => write!(f, "{error}"),
            StoreError::Database(message) => write!(f, "store error: {message}"),
            StoreError::Timeout => write!(f, "the store did not answer within {} s", CALL_TIMEOUT.as_secs()),
        }
    }
}

impl std::error::Error for StoreError {}

impl StoreError {
    /// A failure inside firebell (the database, a timeout) rather than something about the
    /// request: logged in full, and never quoted to a person, a page or an API client.
    pub fn is_internal(&self) -> bool {
        matches!(self, StoreError::Database(_) | StoreError::Timeout)
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        StoreError::Database(error.to_string())
    }
}

/// A step to schedule when an incident is declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTimer {
    pub policy: String,
    pub step: usize,
    pub round: u32,
    pub fire_at: DateTime<Utc>,
}

/// A pending step that has come due, as the resolver sees it.
#[derive(Debug, Clone)]
pub struct DueTimer {
    pub id: i64,
    pub incident_id: i64,
    pub policy: String,
    pub step: usize,
    pub round: u32,
    pub fire_at: DateTime<Utc>,
}

/// Who a step notifies when it fires; nobody means the step is skipped.
#[derive(Debug, Clone, Default)]
pub struct StepRecipients {
    pub people: Vec<Person>,
    /// The step's targets as configured (`schedule:primary`), for the timeline.
    pub targets: Vec<String>,
}

/// Turns a due step into people, from the policies, groups and schedules in force at `now`.
pub trait StepResolver: Send + Sync {
    fn recipients(&self, timer: &DueTimer, now: DateTime<Utc>) -> StepRecipients;
}

/// What firing a step did.
#[derive(Debug, Clone, Serialize)]
pub struct FiredStep {
    pub timer_id: i64,
    pub incident_id: i64,
    pub step: usize,
    pub round: u32,
    pub due_at: DateTime<Utc>,
    pub fired_at: DateTime<Utc>,
    /// Empty when the step was skipped for having nobody to notify.
    pub notified: Vec<String>,
}

/// A notification waiting for a chat adapter.
#[derive(Debug, Clone, Serialize)]
pub struct OutboxItem {
    pub id: i64,
    pub incident_id: Option<i64>,
    pub kind: OutboxKind,
    pub recipients: Vec<String>,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub attempts: i64,
    /// Parts already delivered.
    pub progress: Vec<String>,
}

/// A request to run a remediation, waiting for (or past) its approvals.
#[derive(Debug, Clone, Serialize)]
pub struct RemediationRequest {
    pub id: i64,
    pub incident_id: Option<i64>,
    pub topic: String,
    pub action: String,
    pub args: std::collections::BTreeMap<String, String>,
    /// Exactly what runs, arguments filled in, secrets masked.
    pub command: String,
    pub action_hash: String,
    pub requested_by: String,
    pub approvals_needed: i64,
    pub platform: String,
    pub channel: String,
    pub thread: Option<String>,
    pub message: Option<String>,
    /// pending, running, succeeded, failed, interrupted, denied, expired or stale.
    pub state: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub decided_at: Option<DateTime<Utc>>,
    pub result: Option<String>,
    pub votes: Vec<Vote>,
}

impl RemediationRequest {
    pub fn approvers(&self) -> Vec<String> {
        self.votes.iter().filter(|vote| vote.decision == "approve").map(|vote| vote.voter.clone()).collect()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Vote {
    pub voter: String,
    pub decision: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewRequest {
    pub incident_id: Option<i64>,
    pub topic: String,
    pub action: String,
    pub args: std::collections::BTreeMap<String, String>,
    pub command: String,
    pub action_hash: String,
    pub requested_by: String,
    pub approvals_needed: i64,
    pub platform: String,
    pub channel: String,
    pub thread: Option<String>,
    pub expires_at: DateTime<Utc>,
}

/// What one vote did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoteOutcome {
    /// Recorded; more approvals are needed.
    Counted {
        approvals: i64,
        needed: i64,
    },
    /// This vote completed the approvals: the caller runs the remediation (exactly one caller
    /// ever gets this).
    Approved {
        approvers: Vec<String>,
    },
    Denied,
    /// Already decided: the state it is in.
    NotPending(String),
    AlreadyVoted,
    Expired,
    /// The runbook changed since the request: approvals are bound to the exact action.
    Stale,
}

/// One line of the audit log: who did what to which request, when.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: Option<String>,
    pub action: String,
    pub request_id: Option<i64>,
    pub incident_id: Option<i64>,
    pub detail: serde_json::Value,
}

/// One message of the web console (a chat platform kept in the store).
#[derive(Debug, Clone, Serialize)]
pub struct ConsoleMessage {
    pub id: i64,
    pub channel: String,
    /// The id of the thread's first message, for replies.
    pub thread: Option<String>,
    /// `console:alice`, or `firebell` for the bot.
    pub author: String,
    /// The platform-neutral message (and a file, for long output) as JSON.
    pub body: serde_json::Value,
    pub posted_at: DateTime<Utc>,
    pub edited_at: Option<DateTime<Utc>>,
}

/// One alert (or alert group) as ingestion hands it to the store.
#[derive(Debug, Clone)]
pub struct IncomingAlert {
    /// `alertmanager`, `grafana` or `generic`.
    pub source: String,
    /// Groups repeats into one incident.
    pub fingerprint: String,
    pub firing: bool,
    /// The incident to open if there is none.
    pub incident: NewIncident,
    /// Its escalation steps, from the route's policy, should it open.
    pub timers: Vec<NewTimer>,
    /// Resolve the incident when the alert resolves.
    pub resolve: bool,
    pub payload: serde_json::Value,
}

/// What an alert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "incident", rename_all = "snake_case")]
pub enum AlertOutcome {
    Opened(i64),
    /// A repeat of a firing alert: recorded on the open incident, nothing new opened.
    Repeated(i64),
    /// Fired again soon after its incident resolved: the same incident opens again.
    Reopened(i64),
    Resolved(i64),
    /// A resolved alert with no open incident.
    Ignored,
}

/// Everything the bot keeps: incidents, their timelines and timers, where they live in chat, and
/// (through the traits it builds on) the outbox, remediations, alerts and the console's messages.
#[async_trait]
pub trait Store:
    OutboxStore + RemediationStore + AlertStore + ConsoleStore + MonitorStore + TaskStore + Send + Sync
{
    /// Which backend this is: "sqlite" or "postgres".
    fn backend(&self) -> &'static str;
    async fn ping(&self) -> Result<(), StoreError>;

    /// Opens an incident with its `declared` event and its escalation timers, in one transaction.
    async fn declare(&self, new: NewIncident, timers: Vec<NewTimer>, at: DateTime<Utc>)
    -> Result<Incident, StoreError>;
    async fn incident(&self, id: i64) -> Result<Incident, StoreError>;
    /// Newest first; open ones only unless `include_resolved`.
    async fn incidents(&self, include_resolved: bool, limit: i64) -> Result<Vec<Incident>, StoreError>;
    /// Acknowledges and cancels the pending steps, in one transaction.
    async fn acknowledge(&self, id: i64, by: &str, at: DateTime<Utc>) -> Result<Incident, StoreError>;
    /// Resolves, records the resolution and cancels the pending steps, in one transaction.
    async fn resolve(
        &self,
        id: i64,
        by: &str,
        resolution: Resolution,
        at: DateTime<Utc>,
    ) -> Result<Incident, StoreError>;
    async fn record(&self, id: i64, event: TimelineEvent) -> Result<(), StoreError>;

    /// Fires up to `limit` due steps. Each step is claimed, recorded on the timeline and put in
    /// the outbox in one transaction, so it fires exactly once however many replicas race.
    async fn fire_due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        resolver: &dyn StepResolver,
    ) -> Result<Vec<FiredStep>, StoreError>;
    /// When the earliest pending step is due.
    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    async fn pending_timers(&self) -> Result<i64, StoreError>;
    /// Records an event and queues a chat message of `notice` kind about it, in one transaction.
    async fn record_with_notice(&self, id: i64, event: TimelineEvent, notice: OutboxKind) -> Result<(), StoreError>;
    /// Pulls the incident's next pending step forward to `at`; false when none is pending.
    async fn escalate_now(&self, id: i64, at: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Remembers that the incident lives at this message of this platform.
    async fn attach_chat(&self, id: i64, platform: &str, channel: &str, message: &str) -> Result<(), StoreError>;
    /// The incident whose message (thread root) this is.
    async fn incident_by_chat(&self, platform: &str, channel: &str, message: &str) -> Result<Option<i64>, StoreError>;
    /// True the first time `key` is offered: platforms retry deliveries, work must not repeat.
    async fn first_seen(&self, key: &str, at: DateTime<Utc>) -> Result<bool, StoreError>;

    /// Deletes what retention lets go, older than `before`: handled events (`seen_events`),
    /// received alerts, delivered or given-up outbox items and console messages, in batches;
    /// returns how many rows of each went.
    async fn prune(&self, before: DateTime<Utc>) -> Result<Pruned, StoreError>;
}

/// The outbox of chat messages: what each platform still has to deliver.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    async fn undelivered(&self, limit: i64) -> Result<Vec<OutboxItem>, StoreError>;
    /// How many outbox items wait for delivery (the `firebell_outbox_pending` gauge).
    async fn outbox_pending(&self) -> Result<i64, StoreError>;

    /// Undelivered outbox items that have no `done` part yet (one platform's lane reads the
    /// items it has not finished): escalation pages first, then oldest first.
    async fn due_outbox(&self, done: &str, limit: i64) -> Result<Vec<OutboxItem>, StoreError>;
    /// Marks one part of an item delivered (`slack:thread`), so a retry skips it.
    async fn outbox_progress(&self, id: i64, part: &str) -> Result<(), StoreError>;
    /// Marks the item delivered if every part in `needed` is recorded (each platform's `done`);
    /// true when this call did. One statement, so of lanes finishing at once one settles it.
    async fn outbox_settle(&self, id: i64, needed: &[String], at: DateTime<Utc>) -> Result<bool, StoreError>;
}

/// Remediation requests, their votes and runs, and the audit log.
#[async_trait]
pub trait RemediationStore: Send + Sync {
    /// Stores a remediation request, with its audit entry and timeline event.
    async fn create_request(&self, new: NewRequest, at: DateTime<Utc>) -> Result<RemediationRequest, StoreError>;
    async fn request(&self, id: i64) -> Result<RemediationRequest, StoreError>;
    async fn set_request_message(&self, id: i64, message: &str) -> Result<(), StoreError>;
    /// Records an approval or denial in one transaction with the state change it causes, so
    /// racing approvers and repeated clicks run the remediation once.
    async fn vote(
        &self,
        id: i64,
        voter: &str,
        approve: bool,
        current_hash: &str,
        at: DateTime<Utc>,
    ) -> Result<VoteOutcome, StoreError>;
    /// Records how a run ended.
    async fn finish_request(
        &self,
        id: i64,
        succeeded: bool,
        result: &str,
        at: DateTime<Utc>,
    ) -> Result<RemediationRequest, StoreError>;
    /// Expires the pending requests whose time is up, and returns them.
    async fn expire_requests(&self, now: DateTime<Utc>) -> Result<Vec<RemediationRequest>, StoreError>;
    /// Marks `interrupted` every request `running` since `started_before` or earlier (its process
    /// died with the bot: it would have finished or been killed by its timeout by now), with an
    /// audit entry each; returns them.
    async fn interrupt_requests(
        &self,
        started_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<RemediationRequest>, StoreError>;
    /// Newest first.
    async fn audit(&self, limit: i64) -> Result<Vec<AuditEntry>, StoreError>;
}

/// The alert lifecycle: batches of received alerts open, repeat, resolve and re-open incidents.
#[async_trait]
pub trait AlertStore: Send + Sync {
    /// Stores a batch of alerts and applies them to incidents (open, repeat, reopen within
    /// `flap_window`, resolve) in one transaction: durable before anyone is answered.
    async fn ingest_alerts(
        &self,
        alerts: &[IncomingAlert],
        flap_window: chrono::Duration,
        at: DateTime<Utc>,
    ) -> Result<Vec<AlertOutcome>, StoreError>;
}

/// The web console's own messages: it is a chat platform whose history lives here.
#[async_trait]
pub trait ConsoleStore: Send + Sync {
    /// Posts a web-console message.
    async fn console_post(
        &self,
        channel: &str,
        thread: Option<&str>,
        author: &str,
        body: &serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<ConsoleMessage, StoreError>;
    /// Replaces a web-console message's body.
    async fn console_edit(
        &self,
        id: i64,
        body: &serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<ConsoleMessage, StoreError>;
    async fn console_message(&self, id: i64) -> Result<ConsoleMessage, StoreError>;
    /// The last `limit` messages of a console channel (threads included), oldest first, as
    /// pages show them: a file's text is cut to its first `preview_chars` characters in the
    /// database (`file.preview`, with `file.size` in bytes and `file.cut`), so a page of history
    /// never loads whole files.
    async fn console_history(
        &self,
        channel: &str,
        limit: i64,
        preview_chars: i64,
    ) -> Result<Vec<ConsoleMessage>, StoreError>;
}

/// A monitor's row: its schedule, lease, streak, last run and incident.
#[derive(Debug, Clone, Serialize)]
pub struct MonitorRow {
    pub name: String,
    /// The schedule as configured (`every 1m`), so a changed one is scheduled anew.
    pub schedule: String,
    pub next_run_at: DateTime<Utc>,
    /// Who runs it now, and until when; another takes it once the lease is over.
    pub lease_owner: Option<String>,
    pub lease_until: Option<DateTime<Utc>>,
    /// The verdict of the newest run and how many runs in a row were of its kind.
    pub streak_verdict: Option<String>,
    pub streak_count: i64,
    pub last_verdict: Option<String>,
    pub last_run_at: Option<DateTime<Utc>>,
    /// The incident it opened, while that is its incident.
    pub incident_id: Option<i64>,
    /// Runs recorded so far.
    pub runs: i64,
}

/// A configured monitor as the store schedules it.
#[derive(Debug, Clone)]
pub struct MonitorSchedule {
    pub name: String,
    pub schedule: String,
    /// When a new (or rescheduled) monitor first runs.
    pub first_run_at: DateTime<Utc>,
}

/// What one run of a monitor leaves behind.
#[derive(Debug, Clone)]
pub struct MonitorResult {
    pub name: String,
    /// The lease holder: only the holder's result is recorded.
    pub owner: String,
    pub streak_verdict: String,
    pub streak_count: i64,
    pub ran_at: DateTime<Utc>,
    pub next_run_at: DateTime<Utc>,
    pub incident_id: Option<i64>,
}

/// Turns a task's owner (`slack:U1`, `group:leads`, `schedule:primary`) into the people to remind
/// at `now`.
pub trait OwnerResolver: Send + Sync {
    fn owners(&self, owner: &str, now: DateTime<Utc>) -> Vec<Person>;
}

/// What reminding did: the task, and whom it reminded (nobody when its owner resolves to nobody).
#[derive(Debug, Clone, Serialize)]
pub struct Reminded {
    pub task: Task,
    pub notified: Vec<String>,
}

/// Follow-ups and checklist items (SPEC §13).
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Records a follow-up and its `followup` timeline event, in one transaction.
    async fn add_followup(&self, incident_id: i64, new: NewTask, at: DateTime<Utc>) -> Result<Task, StoreError>;
    /// Opens the checklist `name` on the incident with `items`, unless it is open already (then
    /// its items as they are): however many callers race, it opens once, with its `checklist`
    /// timeline event.
    async fn open_checklist(
        &self,
        incident_id: i64,
        name: &str,
        items: Vec<NewTask>,
        at: DateTime<Utc>,
    ) -> Result<Vec<Task>, StoreError>;
    async fn task(&self, id: i64) -> Result<Task, StoreError>;
    /// Follow-ups of every incident, newest first; open ones only unless `include_done`.
    async fn followups(&self, include_done: bool, limit: i64) -> Result<Vec<Task>, StoreError>;
    /// Marks a task done, with its timeline event (`followup_done`, `checklist_done`) and, for a
    /// checklist's item, a `checklist` outbox item to edit its message. `Ok(None)`: it was done
    /// already.
    async fn complete_task(&self, id: i64, by: &str, at: DateTime<Utc>) -> Result<Option<Task>, StoreError>;
    /// Reminds the owners of up to `limit` open, owned tasks due at `now`, each once: the claim, the
    /// `reminded` event and the `reminder` outbox item are one transaction (PostgreSQL: rows
    /// locked `FOR UPDATE SKIP LOCKED`, so replicas split them).
    async fn remind_due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        owners: &dyn OwnerResolver,
    ) -> Result<Vec<Reminded>, StoreError>;
    /// When the next open task falls due.
    async fn next_task_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Remembers where a checklist's message is on a platform.
    async fn set_checklist_message(
        &self,
        incident_id: i64,
        checklist: &str,
        platform: &str,
        channel: &str,
        message: &str,
    ) -> Result<(), StoreError>;
    async fn checklist_message(
        &self,
        incident_id: i64,
        checklist: &str,
        platform: &str,
    ) -> Result<Option<(String, String)>, StoreError>;
}

/// Monitors' schedules: claimed under a lease, finished in one statement.
#[async_trait]
pub trait MonitorStore: Send + Sync {
    /// Adds new monitors, schedules anew those whose schedule changed, drops the rows of
    /// monitors no longer configured.
    async fn sync_monitors(&self, monitors: &[MonitorSchedule]) -> Result<(), StoreError>;
    /// Takes a lease until `lease_until` on up to `limit` monitors due at `now` whose lease (if
    /// any) is over, in one statement (PostgreSQL: `FOR UPDATE SKIP LOCKED`), and returns them:
    /// of replicas claiming at once, each monitor goes to one.
    async fn claim_monitors(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<MonitorRow>, StoreError>;
    /// Records a run, schedules the next and ends the lease, in one statement; false (nothing
    /// written) when `owner` no longer holds the lease.
    async fn finish_monitor_run(&self, result: &MonitorResult) -> Result<bool, StoreError>;
    /// Gives a claimed monitor back without a run (it is not configured here).
    async fn release_monitor(&self, name: &str, owner: &str) -> Result<(), StoreError>;
    /// Every monitor's row, by name.
    async fn monitors(&self) -> Result<Vec<MonitorRow>, StoreError>;
    /// When the next monitor is due (a leased one: when its lease ends, if later).
    async fn next_monitor_due(&self) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// The newest open incident with this fingerprint.
    async fn open_incident_with_fingerprint(&self, fingerprint: &str) -> Result<Option<i64>, StoreError>;
}

/// What one [`Store::prune`] deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    pub seen_events: u64,
    pub alerts: u64,
    pub outbox: u64,
    pub console_messages: u64,
}

/// Opens the store named by `url` and applies its migrations.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    let store = SqlStore::connect(url).await?;
    store.migrate().await?;
    Ok(std::sync::Arc::new(store))
}

pub(crate) fn millis(at: DateTime<Utc>) -> i64 {
    at.timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
