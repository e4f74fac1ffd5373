//! The chat core, shared by every platform: answers each [`ChatEvent`] at once with a
//! [`Reply`] and hands the work to the part whose job it is — [`Diagnoses`], [`IncidentCommands`]
//! or [`Approvals`] — over one shared [`Context`].

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::approvals::Approvals;
use super::diagnosis::Diagnoses;
use super::grammar::{self, Command};
use super::incidents::IncidentCommands;
use super::{ChatAdapter, ChatEvent, MessageRef, Origin, Reply, views};
use crate::escalation::Escalator;
use crate::runbook::{Catalogue, Runner};

use super::context::Context;
pub use super::context::{CoreError, Permissions};
pub use super::diagnosis::{EDIT_INTERVAL, THREAD_WAIT};

/// What the chat core is built from.
pub struct CoreParts {
    pub catalogue: Arc<Catalogue>,
    pub runner: Runner,
    pub escalator: Arc<Escalator>,
    pub permissions: Permissions,
    /// The connected platforms' outbound adapters.
    pub adapters: Vec<Arc<dyn ChatAdapter>>,
    /// Wakes the outbox deliverer after something was queued.
    pub deliver: Arc<Notify>,
    /// Diagnoses one person may start per minute (`[commands] per_person`).
    pub per_person: usize,
}

pub struct ChatCore {
    context: Arc<Context>,
    diagnoses: Arc<Diagnoses>,
    incidents: Arc<IncidentCommands>,
    approvals: Arc<Approvals>,
}

impl ChatCore {
    pub fn new(parts: CoreParts) -> Arc<ChatCore> {
        let adapters = parts.adapters.into_iter().map(|adapter| (adapter.platform(), adapter)).collect();
        let context =
            Arc::new(Context::new(parts.catalogue, parts.escalator, parts.permissions, adapters, parts.deliver));
        Arc::new(ChatCore {
            diagnoses: Arc::new(Diagnoses::new(context.clone(), parts.runner.clone(), parts.per_person)),
            incidents: Arc::new(IncidentCommands::new(context.clone())),
            approvals: Arc::new(Approvals::new(context.clone(), parts.runner)),
            context,
        })
    }

    pub fn adapters(&self) -> &BTreeMap<&'static str, Arc<dyn ChatAdapter>> {
        &self.context.adapters
    }

    /// Expires remediation requests whose time is up and marks dead runs, until `shutdown`.
    pub async fn run_expiry(self: Arc<Self>, shutdown: CancellationToken) {
        self.approvals.clone().run_expiry(shutdown).await
    }

    /// One step of the expiry loop at `now` (tests drive it like `Escalator::fire_due`): returns
    /// the ids of the requests it expired.
    pub async fn expire_due(&self, now: chrono::DateTime<chrono::Utc>) -> Vec<i64> {
        self.approvals.expire_due(now).await
    }

    /// True the first time a platform delivers `key` (dedupes retried deliveries).
    pub async fn first_seen(&self, key: &str) -> bool {
        match self.context.store().first_seen(key, self.context.now()).await {
            Ok(first) => first,
            Err(error) => {
                // Better to risk doing something twice than to drop a command on the floor.
                tracing::warn!(%error, "Could not record a delivery key; handling it anyway");
                true
            }
        }
    }

    /// Answers at once; the work continues in the background.
    pub async fn handle(&self, event: ChatEvent) -> Reply {
        let started = Instant::now();
        let (platform, kind) = match &event {
            ChatEvent::Command { origin, .. } => (origin.platform, "command"),
            ChatEvent::Button { origin, .. } => (origin.platform, "button"),
            ChatEvent::FormSubmitted { origin, .. } => (origin.platform, "form"),
        };
        metrics::counter!("firebell_chat_events_total", "platform" => platform, "kind" => kind).increment(1);
        let outcome = match event {
            ChatEvent::Command { origin, text } => self.command(origin, &text).await,
            ChatEvent::Button { origin, action, value, message } => self.button(origin, &action, &value, message).await,
            ChatEvent::FormSubmitted { origin, action, value, fields } => {
                self.incidents.form(&origin, &action, &value, fields).await
            }
        };
        let reply = outcome.unwrap_or_else(|error| Reply::private(error.for_person()));
        metrics::histogram!("firebell_ack_seconds", "platform" => platform).record(started.elapsed().as_secs_f64());
        reply
    }

    async fn command(&self, origin: Origin, text: &str) -> Result<Reply, CoreError> {
        let context = &self.context;
        let permissions = &context.permissions;
        // Typed commands only: buttons and forms are on the bot's own messages, which include
        // the incident channel, direct messages with pages and forms that have no channel.
        if !permissions.channels.is_empty() && !permissions.channels.contains(&origin.channel) {
            return Err(format!(
                "commands are not accepted in this channel; use one of: {}",
                permissions.channels.join(", ")
            )
            .into());
        }
        match grammar::parse(text)? {
            Command::Diagnose { topic: None, .. } => {
                context.require(&permissions.diagnose, &origin, "run diagnoses")?;
                Ok(Reply::Private(views::topics(&context.catalogue)))
            }
            Command::Diagnose { topic: Some(topic), args } => {
                context.require(&permissions.diagnose, &origin, "run diagnoses")?;
                let runbook = context.catalogue.get(&topic).ok_or_else(|| {
                    format!("unknown topic '{topic}'; valid topics: {}", context.catalogue.topic_names().join(", "))
                })?;
                let args = runbook.bind_args(&args)?;
                self.diagnoses.start(origin, runbook, args)?;
                Ok(Reply::Nothing)
            }
            Command::Remediate { action: None, .. } => {
                context.require(&permissions.remediate, &origin, "request remediations")?;
                Ok(Reply::Private(views::remediations(&context.catalogue)))
            }
            Command::Remediate { action: Some(action), args } => self.approvals.request(origin, &action, &args).await,
            Command::Oncall { schedule } => {
                let directory = context.escalator.directory();
                let mention = |person: &crate::config::Person| context.mention(person);
                Ok(Reply::Private(views::oncall(directory, schedule.as_deref(), context.now(), &mention)?))
            }
            Command::Incident(command) => self.incidents.command(origin, command).await,
        }
    }

    async fn button(
        &self,
        origin: Origin,
        action: &str,
        value: &str,
        message: Option<MessageRef>,
    ) -> Result<Reply, CoreError> {
        let context = &self.context;
        let permissions = &context.permissions;
        // `[permissions] channels` holds for buttons too, on every platform: a button payload
        // names its channel, so without this a click could start work anywhere. The bot's own
        // messages live in those channels or the platform's incident channel; Acknowledge alone
        // also comes in direct-message pages.
        if action != views::ACTION_ACK && !permissions.channels.is_empty() {
            let incident_channel = context.adapter(origin.platform)?.incident_channel();
            if !permissions.channels.contains(&origin.channel) && incident_channel.as_ref() != Some(&origin.channel) {
                let mut valid = permissions.channels.clone();
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
            views::ACTION_ACK | views::ACTION_RESOLVE => self.incidents.button(&origin, action, value).await,
            views::ACTION_TASK_DONE => self.incidents.task_done(&origin, value).await,
            views::ACTION_DIAGNOSE_MENU => {
                context.require(&permissions.diagnose, &origin, "run diagnoses")?;
                let adapter = context.adapter(origin.platform)?;
                // The menu goes into the incident's thread: under the notification it was on.
                let thread = origin.thread.clone().or(message.map(|message| message.id));
                let channel = origin.channel.clone();
                let menu = views::diagnose_menu(&context.catalogue);
                tokio::spawn(async move {
                    if let Err(error) = adapter.post(&channel, thread.as_deref(), &menu).await {
                        tracing::warn!(%error, "Posting the diagnosis menu failed");
                    }
                });
                Ok(Reply::Nothing)
            }
            views::ACTION_DIAGNOSE => {
                context.require(&permissions.diagnose, &origin, "run diagnoses")?;
                let runbook =
                    context.catalogue.get(value).ok_or_else(|| format!("the runbook '{value}' is no longer loaded"))?;
                let args = runbook
                    .bind_args(&[])
                    .map_err(|error| format!("{error}; type /diagnose {value} key=value… instead"))?;
                self.diagnoses.start(origin, runbook, args)?;
                Ok(Reply::Nothing)
            }
            views::ACTION_REMEDIATE => {
                let (name, args) = views::parse_remediation_value(value);
                self.approvals.request(origin, &name, &args).await
            }
            views::ACTION_APPROVE | views::ACTION_DENY => {
                let id =
                    value.parse::<i64>().map_err(|_| "this button refers to no remediation request".to_string())?;
                self.approvals.vote(origin, id, action == views::ACTION_APPROVE).await
            }
            other => {
                Err(format!("this button ('{other}') is from an older version of firebell and does nothing now").into())
            }
        }
    }
}

/// What ingestion asks of chat once an alert changed an incident.
impl crate::ingest::IncidentHooks for Arc<ChatCore> {
    fn notify_delivery(&self) {
        self.context.notify_delivery();
    }

    fn diagnose_incident(&self, incident_id: i64, topic: &str, source: &str) {
        self.diagnoses.diagnose_incident(incident_id, topic, source);
    }
}

impl crate::monitor::MonitorHooks for Arc<ChatCore> {
    fn notify_delivery(&self) {
        self.context.notify_delivery();
    }

    fn post_run(
        &self,
        incident_id: i64,
        headline: String,
        runbook: Arc<crate::runbook::Runbook>,
        args: crate::runbook::Args,
        results: Vec<crate::runbook::CheckRun>,
    ) {
        self.diagnoses.post_run(incident_id, headline, runbook, args, results);
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
