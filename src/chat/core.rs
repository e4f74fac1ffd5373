//! The chat core, shared by every platform: answers each [`ChatEvent`] at once with a
//! [`Reply`] and does the work in the background — runs diagnoses and streams them into a
//! thread (one message, edited at most every two seconds), and acts on incidents.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::grammar::{self, Command, IncidentCommand};
use super::message::{Button, FileAttachment, Message};
use super::views::{self, CheckLine, DiagnosisView};
use super::{ChatAdapter, ChatError, ChatEvent, Form, FormField, MessageRef, Origin, Reply};
use crate::check::Status;
use crate::config::{PermissionsConfig, Person, Principal};
use crate::escalation::{DeclareError, Escalator};
use crate::incident::{Incident, NewIncident, Resolution, TimelineEvent, TransitionError};
use crate::runbook::{ArgError, Args, Catalogue, CheckEvent, CheckRun, Runbook, Runner};
use crate::store::StoreError;

/// At most one edit of a streamed message per this interval (SPEC §8).
pub const EDIT_INTERVAL: Duration = Duration::from_secs(2);
/// Output up to this size goes into the thread as a code block; beyond it, as a file.
const INLINE_OUTPUT_CHARS: usize = 2_500;
const INLINE_OUTPUT_LINES: usize = 40;
/// How many checks' worth of `max_output` one diagnosis keeps for its output file; lines past
/// that are counted, not kept, so memory stays bounded however many checks print.
const KEPT_OUTPUT_CHECKS: usize = 4;

/// Who may do what, from `[permissions]`.
#[derive(Debug, Clone)]
pub struct Permissions {
    pub(crate) diagnose: Vec<Principal>,
    pub(crate) incident: Vec<Principal>,
    pub(crate) remediate: Vec<Principal>,
    pub(crate) channels: Vec<String>,
}

impl Permissions {
    pub fn from_config(config: &PermissionsConfig) -> Self {
        let list =
            |entries: &Vec<toml::Spanned<Principal>>| entries.iter().map(|entry| entry.get_ref().clone()).collect();
        Self {
            diagnose: list(&config.diagnose),
            incident: list(&config.incident),
            remediate: list(&config.remediate),
            channels: config.channels.clone(),
        }
    }

    fn describe(list: &[Principal]) -> String {
        if list.is_empty() {
            return "nobody (set it in [permissions] of firebell.toml)".to_string();
        }
        list.iter()
            .map(|principal| match principal {
                Principal::Everyone => "everyone".to_string(),
                Principal::Group(group) => format!("group {group}"),
                Principal::Person(person) => person.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Why the core could not do what an event asked. What the person can act on is said to them as
/// it is; what failed inside (the store, a platform) is logged in full and said in general words,
/// so a database's message never reaches a chat.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// Not allowed, not valid or not possible now: the text says why and what is valid.
    #[error("{0}")]
    Refused(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("chat platform: {0}")]
    Platform(#[from] ChatError),
}

impl From<String> for CoreError {
    fn from(text: String) -> Self {
        CoreError::Refused(text)
    }
}

impl From<&str> for CoreError {
    fn from(text: &str) -> Self {
        CoreError::Refused(text.to_string())
    }
}

impl From<DeclareError> for CoreError {
    fn from(error: DeclareError) -> Self {
        match error {
            DeclareError::Store(error) => CoreError::Store(error),
            unknown => CoreError::Refused(unknown.to_string()),
        }
    }
}

impl From<ArgError> for CoreError {
    fn from(error: ArgError) -> Self {
        CoreError::Refused(error.to_string())
    }
}

impl From<TransitionError> for CoreError {
    fn from(error: TransitionError) -> Self {
        CoreError::Refused(error.to_string())
    }
}

impl CoreError {
    /// What the person who asked is told.
    pub fn for_person(&self) -> String {
        match self {
            CoreError::Refused(text) => text.clone(),
            CoreError::Store(error) if !error.is_internal() => error.to_string(),
            CoreError::Store(error) => {
                tracing::error!(%error, "A chat request failed in the store");
                "firebell could not reach its store just now (the error is in its log); try again in a moment"
                    .to_string()
            }
            CoreError::Platform(error) => {
                tracing::error!(%error, "A chat request failed on its platform");
                "the chat platform did not take firebell's answer (the error is in its log); try again in a moment"
                    .to_string()
            }
        }
    }
}

pub struct ChatCore {
    pub(crate) catalogue: Arc<Catalogue>,
    pub(crate) runner: Runner,
    pub(crate) escalator: Arc<Escalator>,
    pub(crate) permissions: Permissions,
    pub(crate) adapters: BTreeMap<&'static str, Arc<dyn ChatAdapter>>,
    /// Wakes the outbox deliverer after something was queued.
    deliver: Arc<Notify>,
    /// Diagnoses one person may start per minute (`[commands] per_person`).
    per_person: usize,
    /// When each person started their diagnoses of the last minute.
    recent_diagnoses:
        std::sync::Mutex<std::collections::HashMap<String, std::collections::VecDeque<chrono::DateTime<chrono::Utc>>>>,
}

impl ChatCore {
    pub fn new(
        catalogue: Arc<Catalogue>,
        runner: Runner,
        escalator: Arc<Escalator>,
        permissions: Permissions,
        deliver: Arc<Notify>,
    ) -> Self {
        Self {
            catalogue,
            runner,
            escalator,
            permissions,
            adapters: BTreeMap::new(),
            deliver,
            per_person: 20,
            recent_diagnoses: Default::default(),
        }
    }

    /// At most `diagnoses` per person per minute (`[commands] per_person`).
    pub fn with_per_person(mut self, diagnoses: usize) -> Self {
        self.per_person = diagnoses.max(1);
        self
    }

    /// Counts a diagnosis the person of `origin` starts now, or says how long they must wait
    /// when they started [`Self::with_per_person`] of them in the last minute.
    fn admit_diagnosis(&self, origin: &Origin) -> Result<(), String> {
        let now = self.escalator.now();
        let window = chrono::Duration::minutes(1);
        let mut recent = self.recent_diagnoses.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
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

    pub fn with_adapter(mut self, adapter: Arc<dyn ChatAdapter>) -> Self {
        self.adapters.insert(adapter.platform(), adapter);
        self
    }

    pub fn adapters(&self) -> &BTreeMap<&'static str, Arc<dyn ChatAdapter>> {
        &self.adapters
    }

    pub fn escalator(&self) -> &Arc<Escalator> {
        &self.escalator
    }

    /// Tells the outbox deliverer there is something new to deliver.
    pub fn notify_delivery(&self) {
        self.deliver.notify_one();
    }
}

/// How long a route's runbook waits for the incident's thread before it runs without chat.
pub const THREAD_WAIT: Duration = Duration::from_secs(15);

/// What ingestion asks of chat once an alert changed an incident.
impl crate::ingest::IncidentHooks for Arc<ChatCore> {
    fn notify_delivery(&self) {
        ChatCore::notify_delivery(self);
    }

    fn diagnose_incident(&self, incident_id: i64, topic: &str, source: &str) {
        ChatCore::diagnose_incident(self, incident_id, topic, source);
    }
}

impl ChatCore {
    /// Runs `topic` for an incident opened by an alert: in the incident's thread once its
    /// notification is posted, or — with no chat platform — straight onto the timeline.
    pub fn diagnose_incident(self: &Arc<Self>, incident_id: i64, topic: &str, source: &str) {
        let core = self.clone();
        let topic = topic.to_string();
        let requester = Person { platform: "alert".to_string(), id: source.to_string() };
        tokio::spawn(async move {
            let store = core.escalator.store().clone();
            let Some(runbook) = core.catalogue.get(&topic) else {
                tracing::error!(topic, incident = incident_id, "A route names a runbook that is not loaded");
                return;
            };
            let args = match runbook.bind_args(&[]) {
                Ok(args) => args,
                Err(error) => {
                    let detail = json!({"topic": topic, "error": error.to_string()});
                    let _ = core.escalator.record(incident_id, "diagnosis", Some(&requester.to_string()), detail).await;
                    return;
                }
            };
            // The thread to stream into: a team's own chat platform first (the console shows
            // the result on the timeline); any platform's thread if that one never appears.
            let by_preference = || {
                let external = core.adapters.iter().filter(|(platform, _)| **platform != "console");
                external.chain(core.adapters.iter().filter(|(platform, _)| **platform == "console"))
            };
            let wanted = by_preference().find(|(_, adapter)| adapter.incident_channel().is_some()).map(|(p, _)| *p);
            let deadline = Instant::now() + THREAD_WAIT;
            while wanted.is_some() {
                let timed_out = Instant::now() >= deadline;
                if let Ok(incident) = store.incident(incident_id).await {
                    let home = by_preference()
                        .filter(|(platform, _)| timed_out || Some(**platform) == wanted)
                        .find_map(|(platform, _)| {
                            let entry = incident.chat.get(*platform)?;
                            Some((
                                *platform,
                                entry.get("channel")?.as_str()?.to_string(),
                                entry.get("message")?.as_str()?.to_string(),
                            ))
                        });
                    if let Some((platform, channel, message)) = home {
                        let origin = Origin { platform, user: requester.clone(), channel, thread: Some(message) };
                        if let Err(error) = core.diagnose(origin, runbook.clone(), args.clone()).await {
                            tracing::warn!(%error, incident = incident_id, "The route's diagnosis could not be posted");
                        }
                        return;
                    }
                }
                if timed_out {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            core.diagnose_without_chat(incident_id, runbook, args, &requester).await;
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
        let worst = results.iter().map(|run| run.status).max().unwrap_or(Status::Ok);
        let checks: Vec<serde_json::Value> =
            results.iter().map(|run| json!({"name": run.name, "status": run.status, "summary": run.summary})).collect();
        let args_text: String = args.iter().map(|(key, value)| format!("{key}={value}")).collect::<Vec<_>>().join(" ");
        let detail = json!({"topic": runbook.name, "args": args_text, "status": worst, "checks": checks});
        if let Err(error) = self.escalator.record(incident_id, "diagnosis", Some(&requester.to_string()), detail).await
        {
            tracing::error!(%error, incident = incident_id, "Recording the route's diagnosis failed");
        }
    }

    /// True the first time a platform delivers `key` (dedupes retried deliveries).
    pub async fn first_seen(&self, key: &str) -> bool {
        match self.escalator.store().first_seen(key, self.escalator.now()).await {
            Ok(first) => first,
            Err(error) => {
                // Better to risk doing something twice than to drop a command on the floor.
                tracing::warn!(%error, "Could not record a delivery key; handling it anyway");
                true
            }
        }
    }

    /// Answers at once; the work continues in the background.
    pub async fn handle(self: &Arc<Self>, event: ChatEvent) -> Reply {
        let started = Instant::now();
        let (platform, kind) = match &event {
            ChatEvent::Command { origin, .. } => (origin.platform, "command"),
            ChatEvent::Button { origin, .. } => (origin.platform, "button"),
            ChatEvent::FormSubmitted { origin, .. } => (origin.platform, "form"),
        };
        metrics::counter!("firebell_chat_events_total", "platform" => platform, "kind" => kind).increment(1);
        let reply = self.answer(event).await;
        metrics::histogram!("firebell_ack_seconds", "platform" => platform).record(started.elapsed().as_secs_f64());
        reply
    }

    async fn answer(self: &Arc<Self>, event: ChatEvent) -> Reply {
        let outcome = match event {
            ChatEvent::Command { origin, text } => self.command(origin, &text).await,
            ChatEvent::Button { origin, action, value, message } => self.button(origin, &action, &value, message).await,
            ChatEvent::FormSubmitted { origin, action, value, fields } => {
                self.form(origin, &action, &value, fields).await
            }
        };
        outcome.unwrap_or_else(|error| Reply::private(error.for_person()))
    }

    fn allowed(&self, list: &[Principal], person: &Person) -> bool {
        let groups = &self.escalator.directory().groups;
        list.iter().any(|principal| match principal {
            Principal::Everyone => true,
            Principal::Person(allowed) => allowed == person,
            Principal::Group(group) => groups.get(group).is_some_and(|members| members.contains(person)),
        })
    }

    pub(crate) fn require(&self, list: &[Principal], origin: &Origin, what: &str) -> Result<(), String> {
        if self.allowed(list, &origin.user) {
            Ok(())
        } else {
            Err(format!("you ({}) may not {what}; allowed: {}", origin.user, Permissions::describe(list)))
        }
    }

    pub(crate) fn adapter(&self, platform: &str) -> Result<Arc<dyn ChatAdapter>, String> {
        self.adapters.get(platform).cloned().ok_or_else(|| format!("the {platform} platform is not connected"))
    }

    pub(crate) fn mention(&self, person: &Person) -> String {
        match self.adapters.get(person.platform.as_str()) {
            Some(adapter) => adapter.mention(&person.id),
            None => person.to_string(),
        }
    }

    async fn command(self: &Arc<Self>, origin: Origin, text: &str) -> Result<Reply, CoreError> {
        // Typed commands only: buttons and forms are on the bot's own messages, which include
        // the incident channel, direct messages with pages and forms that have no channel.
        if !self.permissions.channels.is_empty() && !self.permissions.channels.contains(&origin.channel) {
            return Err(format!(
                "commands are not accepted in this channel; use one of: {}",
                self.permissions.channels.join(", ")
            )
            .into());
        }
        match grammar::parse(text)? {
            Command::Diagnose { topic: None, .. } => {
                self.require(&self.permissions.diagnose, &origin, "run diagnoses")?;
                Ok(Reply::Private(views::topics(&self.catalogue)))
            }
            Command::Diagnose { topic: Some(topic), args } => {
                self.require(&self.permissions.diagnose, &origin, "run diagnoses")?;
                let runbook = self.catalogue.get(&topic).ok_or_else(|| {
                    format!("unknown topic '{topic}'; valid topics: {}", self.catalogue.topic_names().join(", "))
                })?;
                let args = runbook.bind_args(&args)?;
                self.admit_diagnosis(&origin)?;
                self.start_diagnosis(origin, runbook, args);
                Ok(Reply::Nothing)
            }
            Command::Remediate { action: None, .. } => {
                self.require(&self.permissions.remediate, &origin, "request remediations")?;
                Ok(Reply::Private(views::remediations(&self.catalogue)))
            }
            Command::Remediate { action: Some(action), args } => self.request_remediation(origin, &action, &args).await,
            Command::Oncall { schedule } => {
                let now = self.escalator.now();
                let message = views::oncall(self.escalator.directory(), schedule.as_deref(), now, &|person| {
                    self.mention(person)
                })?;
                Ok(Reply::Private(message))
            }
            Command::Incident(command) => self.incident_command(origin, command).await,
        }
    }

    async fn incident_command(self: &Arc<Self>, origin: Origin, command: IncidentCommand) -> Result<Reply, CoreError> {
        if !matches!(command, IncidentCommand::List | IncidentCommand::Summary { .. }) {
            self.require(&self.permissions.incident, &origin, "change incidents")?;
        }
        let store = self.escalator.store().clone();
        match command {
            IncidentCommand::Declare { title, severity, impact } => {
                let new = NewIncident {
                    title,
                    severity: severity.unwrap_or(crate::config::Severity::High),
                    impact,
                    commander: Some(origin.user.to_string()),
                    fingerprint: None,
                    policy: None,
                    declared_by: Some(origin.user.to_string()),
                };
                let incident = self.escalator.declare(new).await?;
                self.deliver.notify_one();
                // With no incident channel the notification belongs where it was declared.
                let adapter = self.adapter(origin.platform)?;
                if adapter.incident_channel().is_none() {
                    let core = self.clone();
                    tokio::spawn(async move { core.post_notification_here(&origin, incident).await });
                }
                Ok(Reply::Nothing)
            }
            IncidentCommand::List => {
                let incidents = store.incidents(false, 50).await?;
                Ok(Reply::Private(views::incident_list(&incidents, self.escalator.now())))
            }
            IncidentCommand::Summary { id } => {
                let incident = self.incident_here(&origin, id).await?;
                let now = self.escalator.now();
                let templates = self.escalator.templates();
                let text = if incident.is_open() {
                    templates.notification(&incident, now)
                } else {
                    templates.resolution(&incident, now)
                };
                Ok(Reply::Private(Message::plain(text?)))
            }
            IncidentCommand::Ack { id } => {
                let incident = self.incident_here(&origin, id).await?;
                self.acknowledge(incident.id, &origin.user).await
            }
            IncidentCommand::Resolve { id, root_cause, fix, prevention } => {
                let incident = self.incident_here(&origin, id).await?;
                if root_cause.is_none() && fix.is_none() && prevention.is_none() {
                    return Ok(Reply::Form(resolve_form(incident.id)));
                }
                self.resolve(incident.id, &origin.user, Resolution { root_cause, fix, prevention }).await
            }
            IncidentCommand::Escalate { id } => {
                let incident = self.incident_here(&origin, id).await?;
                if !incident.is_open() {
                    return Err(
                        format!("incident #{} is resolved; there is nobody left to escalate to", incident.id).into()
                    );
                }
                let pulled = store.escalate_now(incident.id, self.escalator.now()).await?;
                if !pulled {
                    return Err(format!(
                        "incident #{} has no escalation steps left (acknowledged, or its policy is done)",
                        incident.id
                    )
                    .into());
                }
                let detail = json!({"requested": true});
                self.escalator
                    .record(incident.id, "escalation_requested", Some(&origin.user.to_string()), detail)
                    .await?;
                self.escalator.wake();
                Ok(Reply::private(format!("Escalating incident #{} to its next step now.", incident.id)))
            }
            IncidentCommand::Status { id, phase, text, eta } => {
                let incident = self.incident_here(&origin, id).await?;
                if !incident.is_open() {
                    return Err(
                        format!("incident #{} is resolved; declare a new one if it is back", incident.id).into()
                    );
                }
                let event = TimelineEvent::new(
                    self.escalator.now(),
                    "status",
                    Some(&origin.user.to_string()),
                    json!({"phase": phase.name(), "text": text, "eta": eta}),
                );
                store.record_with_notice(incident.id, event, crate::store::OutboxKind::IncidentUpdated).await?;
                self.deliver.notify_one();
                Ok(Reply::Nothing)
            }
        }
    }

    /// The incident named by `id`, or the one whose thread this is.
    pub(crate) async fn incident_here(&self, origin: &Origin, id: Option<i64>) -> Result<Incident, CoreError> {
        let store = self.escalator.store();
        let id = match id {
            Some(id) => id,
            None => {
                let thread = origin.thread.as_deref();
                let found = match thread {
                    Some(thread) => store.incident_by_chat(origin.platform, &origin.channel, thread).await?,
                    None => None,
                };
                match found {
                    Some(id) => id,
                    None => {
                        let open = store.incidents(false, 10).await?;
                        let ids: Vec<String> = open.iter().map(|incident| format!("#{}", incident.id)).collect();
                        return Err(format!(
                            "which incident? type the command in its thread or add id=N{}",
                            if ids.is_empty() {
                                " (there are no open incidents)".to_string()
                            } else {
                                format!("; open: {}", ids.join(", "))
                            }
                        )
                        .into());
                    }
                }
            }
        };
        Ok(store.incident(id).await?)
    }

    async fn acknowledge(&self, id: i64, person: &Person) -> Result<Reply, CoreError> {
        match self.escalator.acknowledge(id, &person.to_string()).await {
            Ok(_) => {
                self.deliver.notify_one();
                Ok(Reply::Nothing)
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn resolve(&self, id: i64, person: &Person, resolution: Resolution) -> Result<Reply, CoreError> {
        match self.escalator.resolve(id, &person.to_string(), resolution).await {
            Ok(_) => {
                self.deliver.notify_one();
                Ok(Reply::Nothing)
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn button(
        self: &Arc<Self>,
        origin: Origin,
        action: &str,
        value: &str,
        message: Option<MessageRef>,
    ) -> Result<Reply, CoreError> {
        let incident_id = || value.parse::<i64>().map_err(|_| "this button refers to no incident".to_string());
        // `[permissions] channels` holds for buttons too, on every platform: a button payload
        // names its channel, so without this a click could start work anywhere. The bot's own
        // messages live in those channels or the platform's incident channel; Acknowledge alone
        // also comes in direct-message pages.
        if action != views::ACTION_ACK && !self.permissions.channels.is_empty() {
            let incident_channel = self.adapter(origin.platform)?.incident_channel();
            if !self.permissions.channels.contains(&origin.channel)
                && incident_channel.as_ref() != Some(&origin.channel)
            {
                let mut valid = self.permissions.channels.clone();
                valid.extend(incident_channel);
                return Err(format!(
                    "buttons are not accepted in this channel ({}); use one of: {}",
                    origin.channel,
                    valid.join(", ")
                )
                .into());
            }
        }
        match action {
            views::ACTION_ACK => {
                self.require(&self.permissions.incident, &origin, "acknowledge incidents")?;
                self.acknowledge(incident_id()?, &origin.user).await
            }
            views::ACTION_RESOLVE => {
                self.require(&self.permissions.incident, &origin, "resolve incidents")?;
                let id = incident_id()?;
                let incident = self.escalator.store().incident(id).await?;
                incident.check_resolve()?;
                Ok(Reply::Form(resolve_form(id)))
            }
            views::ACTION_DIAGNOSE_MENU => {
                self.require(&self.permissions.diagnose, &origin, "run diagnoses")?;
                let adapter = self.adapter(origin.platform)?;
                // The menu goes into the incident's thread: under the notification it was on.
                let thread = origin.thread.clone().or(message.map(|message| message.id));
                let channel = origin.channel.clone();
                let menu = views::diagnose_menu(&self.catalogue);
                tokio::spawn(async move {
                    if let Err(error) = adapter.post(&channel, thread.as_deref(), &menu).await {
                        tracing::warn!(%error, "Posting the diagnosis menu failed");
                    }
                });
                Ok(Reply::Nothing)
            }
            views::ACTION_DIAGNOSE => {
                self.require(&self.permissions.diagnose, &origin, "run diagnoses")?;
                let runbook =
                    self.catalogue.get(value).ok_or_else(|| format!("the runbook '{value}' is no longer loaded"))?;
                let args = runbook
                    .bind_args(&[])
                    .map_err(|error| format!("{error}; type /diagnose {value} key=value… instead"))?;
                self.admit_diagnosis(&origin)?;
                self.start_diagnosis(origin, runbook, args);
                Ok(Reply::Nothing)
            }
            views::ACTION_REMEDIATE => {
                let (name, args) = views::parse_remediation_value(value);
                self.request_remediation(origin, &name, &args).await
            }
            views::ACTION_APPROVE | views::ACTION_DENY => {
                let id =
                    value.parse::<i64>().map_err(|_| "this button refers to no remediation request".to_string())?;
                self.vote(origin, id, action == views::ACTION_APPROVE).await
            }
            other => {
                Err(format!("this button ('{other}') is from an older version of firebell and does nothing now").into())
            }
        }
    }

    async fn form(
        self: &Arc<Self>,
        origin: Origin,
        action: &str,
        value: &str,
        fields: BTreeMap<String, String>,
    ) -> Result<Reply, CoreError> {
        if action != views::FORM_RESOLVE {
            return Err(format!("unknown form '{action}'").into());
        }
        self.require(&self.permissions.incident, &origin, "resolve incidents")?;
        let id = value.parse::<i64>().map_err(|_| "this form refers to no incident".to_string())?;
        let field = |name: &str| fields.get(name).map(|text| text.trim().to_string()).filter(|text| !text.is_empty());
        let resolution =
            Resolution { root_cause: field("root_cause"), fix: field("fix"), prevention: field("prevention") };
        self.resolve(id, &origin.user, resolution).await
    }

    async fn post_notification_here(&self, origin: &Origin, incident: Incident) {
        let Ok(adapter) = self.adapter(origin.platform) else { return };
        let text = match self.escalator.templates().notification(&incident, self.escalator.now()) {
            Ok(text) => text,
            Err(error) => {
                tracing::error!(%error, "Rendering the incident notification failed");
                format!("Incident #{}: {}", incident.id, incident.title)
            }
        };
        let people = views::incident_people(&incident);
        let text = views::mention_people(&text, adapter.as_ref(), &people);
        let notification = views::incident_notification(&incident, &text).mentioning(people);
        match adapter.post(&origin.channel, origin.thread.as_deref(), &notification).await {
            Ok(posted) => {
                if let Err(error) =
                    self.escalator.store().attach_chat(incident.id, origin.platform, &posted.channel, &posted.id).await
                {
                    tracing::error!(%error, "Remembering where the incident was posted failed");
                }
            }
            Err(error) => tracing::warn!(%error, incident = incident.id, "Posting the incident notification failed"),
        }
    }

    fn start_diagnosis(self: &Arc<Self>, origin: Origin, runbook: Arc<Runbook>, args: Args) {
        let core = self.clone();
        tokio::spawn(async move {
            let topic = runbook.name.clone();
            if let Err(error) = core.diagnose(origin, runbook, args).await {
                tracing::warn!(%error, topic, "A diagnosis could not be posted");
            }
        });
    }

    /// Posts one message, edits it as checks finish (coalesced to one edit per
    /// [`EDIT_INTERVAL`]), then the final verdicts, the output, and suggested remediations.
    pub async fn diagnose(&self, origin: Origin, runbook: Arc<Runbook>, args: Args) -> Result<(), CoreError> {
        let adapter = self.adapter(origin.platform)?;
        let store = self.escalator.store();
        let incident_id = match &origin.thread {
            Some(thread) => store.incident_by_chat(origin.platform, &origin.channel, thread).await?,
            None => None,
        };
        let requested_by = self.mention(&origin.user);
        let args_text: String = args.iter().map(|(key, value)| format!("{key}={value}")).collect::<Vec<_>>().join(" ");
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
        if let Some(id) = incident_id {
            let checks: Vec<serde_json::Value> = results
                .iter()
                .map(|run| json!({"name": run.name, "status": run.status, "summary": run.summary}))
                .collect();
            let detail = json!({"topic": runbook.name, "args": args_text, "status": worst, "checks": checks});
            self.escalator.record(id, "diagnosis", Some(&origin.user.to_string()), detail).await?;
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
        let text = self.runner.redactor().redact(&text).into_owned();
        let limit = INLINE_OUTPUT_CHARS.min(adapter.limits().max_block_text.saturating_sub(100));
        let result = if text.chars().count() <= limit && total_lines <= INLINE_OUTPUT_LINES {
            adapter.post(channel, Some(thread), &Message::new().code(text.trim_end())).await.map(|_| ())
        } else {
            let file = FileAttachment {
                filename: format!("diagnose-{topic}-output.txt"),
                title: format!("Output of diagnose {topic} ({total_lines} lines)"),
                content: text.into_bytes(),
            };
            adapter.upload(channel, Some(thread), &file).await
        };
        if let Err(error) = result {
            tracing::warn!(%error, "Posting the diagnosis output failed");
        }
    }
}

/// Every platform hands events to the core through this; the `Arc` lets the work outlive the
/// request.
#[async_trait::async_trait]
impl super::platform::ChatHandler for Arc<ChatCore> {
    async fn handle(&self, event: ChatEvent) -> Reply {
        ChatCore::handle(self, event).await
    }

    async fn first_seen(&self, key: &str) -> bool {
        ChatCore::first_seen(self, key).await
    }
}

/// The form that resolves incident `id`, with the command to type where it cannot open.
fn resolve_form(id: i64) -> Form {
    let field = |field: &str, label: &str| FormField {
        id: field.into(),
        label: label.into(),
        multiline: true,
        optional: field != "root_cause",
    };
    Form {
        title: format!("Resolve incident #{id}"),
        submit: "Resolve".into(),
        action: views::FORM_RESOLVE.into(),
        value: id.to_string(),
        fields: vec![field("root_cause", "Root cause"), field("fix", "Fix"), field("prevention", "Prevention")],
        instead: format!("resolve with: /incident resolve id={id} root_cause=\"…\" fix=\"…\" prevention=\"…\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_store_is_logged_but_never_quoted_to_the_person() {
        let leaked = "duplicate key value violates unique constraint \"incidents_pkey\" password=hunter2";
        let told = CoreError::Store(StoreError::Database(leaked.to_string())).for_person();
        assert!(!told.contains("hunter2") && !told.contains("incidents_pkey"), "{told}");
        assert!(told.contains("try again"), "{told}");
        assert!(!CoreError::Store(StoreError::Timeout).for_person().contains("store error"));
    }

    #[test]
    fn what_the_person_can_act_on_is_said_as_it_is() {
        assert_eq!(CoreError::Store(StoreError::NotFound(7)).for_person(), "there is no incident 7");
        assert_eq!(
            CoreError::from("you may not approve your own request").for_person(),
            "you may not approve your own request"
        );
        let declare =
            CoreError::from(DeclareError::UnknownPolicy { name: "gold".into(), known: vec!["default".into()] });
        assert!(matches!(declare, CoreError::Refused(_)), "{declare:?}");
        let told = declare.for_person();
        assert!(told.contains("gold") && told.contains("default"), "names the policy and the valid ones: {told}");
    }
}
