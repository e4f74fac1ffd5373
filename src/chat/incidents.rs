//! Incident commands in chat: `/incident declare|list|summary|ack|resolve|escalate|status`, the
//! Acknowledge and Resolve buttons and the resolve form.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::context::{Context, CoreError};
use super::grammar::IncidentCommand;
use super::message::{FileAttachment, Message};
use super::{Form, FormField, Origin, Reply, views};
use crate::config::{NotifyTarget, Person};
use crate::incident::tasks::NewTask;
use crate::incident::{Incident, NewIncident, Resolution, TimelineEvent, TimelineKind};

pub(crate) struct IncidentCommands {
    context: Arc<Context>,
}

impl IncidentCommands {
    pub(crate) fn new(context: Arc<Context>) -> Self {
        Self { context }
    }

    pub(crate) async fn command(
        self: &Arc<Self>,
        origin: Origin,
        command: IncidentCommand,
    ) -> Result<Reply, CoreError> {
        if !matches!(
            command,
            IncidentCommand::List
                | IncidentCommand::Summary { .. }
                | IncidentCommand::Postmortem { .. }
                | IncidentCommand::Followups { .. }
        ) {
            self.context.require(&self.context.permissions.incident, &origin, "change incidents")?;
        }
        let store = self.context.store().clone();
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
                let incident = self.context.escalator.declare(new).await?;
                self.context.notify_delivery();
                // With no incident channel the notification belongs where it was declared.
                let adapter = self.context.adapter(origin.platform)?;
                if adapter.incident_channel().is_none() {
                    let incidents = self.clone();
                    tokio::spawn(async move { incidents.post_notification_here(&origin, incident).await });
                }
                Ok(Reply::Nothing)
            }
            IncidentCommand::List => {
                let incidents = store.incidents(false, 50).await?;
                Ok(Reply::Private(views::incident_list(&incidents, self.context.now())))
            }
            IncidentCommand::Summary { id } => {
                let incident = self.incident_here(&origin, id).await?;
                let now = self.context.now();
                let templates = self.context.escalator.templates();
                let text = if incident.is_open() {
                    templates.notification(&incident, now)
                } else {
                    templates.resolution(&incident, now)
                };
                Ok(Reply::Private(Message::plain(text?)))
            }
            IncidentCommand::Note { id, text } => {
                let incident = self.incident_here(&origin, id).await?;
                let by = origin.user.to_string();
                let detail = json!({"text": text});
                self.context.escalator.record(incident.id, TimelineKind::Note, Some(&by), detail).await?;
                Ok(Reply::private(format!("Noted on incident #{}'s timeline.", incident.id)))
            }
            IncidentCommand::Postmortem { id } => {
                let incident = self.incident_here(&origin, id).await?;
                let text = self.context.escalator.templates().postmortem(&incident, self.context.now())?;
                let file = FileAttachment {
                    filename: format!("incident-{}-postmortem.md", incident.id),
                    title: format!("Post-mortem draft: incident #{} — {}", incident.id, incident.title),
                    content: text.into_bytes(),
                };
                let adapter = self.context.adapter(origin.platform)?;
                adapter.upload(&origin.channel, origin.thread.as_deref(), &file).await?;
                Ok(Reply::Nothing)
            }
            IncidentCommand::Followup { id, text, owner, due } => {
                let incident = self.incident_here(&origin, id).await?;
                let owner = self.owner(&origin, owner.as_deref())?;
                let now = self.context.now();
                let due_at = due.map(|due| now + chrono::Duration::from_std(due).unwrap_or(chrono::Duration::MAX));
                let new = NewTask { text, owner: Some(owner), due_at, created_by: Some(origin.user.to_string()) };
                let task = store.add_followup(incident.id, new, now).await?;
                self.context.escalator.wake();
                let adapter = self.context.adapter(origin.platform)?;
                let message = views::followup(&task, now, &views::person_mention(adapter.as_ref()));
                let (channel, thread) = where_it_lives(&incident, &origin);
                adapter.post(&channel, thread.as_deref(), &message).await?;
                Ok(Reply::Nothing)
            }
            IncidentCommand::Followups { id } => {
                let incident = self.incident_here(&origin, id).await?;
                let adapter = self.context.adapter(origin.platform)?;
                let mention = views::person_mention(adapter.as_ref());
                Ok(Reply::Private(views::followup_list(&incident, self.context.now(), &mention)))
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
                let pulled = store.escalate_now(incident.id, self.context.now()).await?;
                if !pulled {
                    return Err(format!(
                        "incident #{} has no escalation steps left (acknowledged, or its policy is done)",
                        incident.id
                    )
                    .into());
                }
                let detail = json!({"requested": true});
                self.context
                    .escalator
                    .record(incident.id, TimelineKind::EscalationRequested, Some(&origin.user.to_string()), detail)
                    .await?;
                self.context.escalator.wake();
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
                    self.context.now(),
                    TimelineKind::Status,
                    Some(&origin.user.to_string()),
                    json!({"phase": phase.name(), "text": text, "eta": eta}),
                );
                store.record_with_notice(incident.id, event, crate::store::OutboxKind::IncidentUpdated).await?;
                self.context.notify_delivery();
                Ok(Reply::Nothing)
            }
        }
    }

    /// The incident named by `id`, or the one whose thread this is.
    async fn incident_here(&self, origin: &Origin, id: Option<i64>) -> Result<Incident, CoreError> {
        let store = self.context.store();
        let found = match id {
            Some(id) => Some(id),
            None => self.context.incident_in_thread(origin).await?,
        };
        let id = match found {
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
        };
        Ok(store.incident(id).await?)
    }

    /// The Acknowledge and Resolve buttons of an incident's notification (and of its pages).
    pub(crate) async fn button(&self, origin: &Origin, action: &str, value: &str) -> Result<Reply, CoreError> {
        let id = value.parse::<i64>().map_err(|_| "this button refers to no incident".to_string())?;
        if action == views::ACTION_ACK {
            self.context.require(&self.context.permissions.incident, origin, "acknowledge incidents")?;
            return self.acknowledge(id, &origin.user).await;
        }
        self.context.require(&self.context.permissions.incident, origin, "resolve incidents")?;
        self.context.store().incident(id).await?.check_resolve()?;
        Ok(Reply::Form(resolve_form(id)))
    }

    /// A follow-up's owner as typed: a person (`slack:U1`, or a mention on this platform),
    /// `me`, `group:NAME` or `schedule:NAME` that exists; nobody named is whoever typed it.
    fn owner(&self, origin: &Origin, typed: Option<&str>) -> Result<String, CoreError> {
        let Some(typed) = typed else {
            return Ok(origin.user.to_string());
        };
        if typed == "me" {
            return Ok(origin.user.to_string());
        }
        // A mention, as Slack (`<@U1|name>`) and Discord (`<@1>`, `<@!1>`) send it.
        if let Some(id) = typed.strip_prefix("<@").and_then(|rest| rest.strip_suffix('>')) {
            let id = id.trim_start_matches('!').split('|').next().unwrap_or_default();
            return Ok(Person { platform: origin.platform.to_string(), id: id.to_string() }.to_string());
        }
        let target = NotifyTarget::parse_owner(typed).map_err(|error| {
            format!("{error}; or owner=me. A bare @name cannot be looked up: name the person as PLATFORM:ID")
        })?;
        let directory = self.context.escalator.directory();
        let known = |names: Vec<&String>| names.into_iter().map(String::as_str).collect::<Vec<_>>().join(", ");
        match &target {
            NotifyTarget::Group(group) if !directory.groups.contains_key(group) => {
                Err(format!("unknown group '{group}'; groups: {}", known(directory.groups.keys().collect())).into())
            }
            NotifyTarget::Schedule(schedule) if !directory.schedules.contains_key(schedule) => Err(format!(
                "unknown schedule '{schedule}'; schedules: {}",
                known(directory.schedules.keys().collect())
            )
            .into()),
            _ => Ok(target.owner_name()),
        }
    }

    /// The Done button of a follow-up or a checklist item.
    pub(crate) async fn task_done(&self, origin: &Origin, value: &str) -> Result<Reply, CoreError> {
        self.context.require(&self.context.permissions.incident, origin, "tick follow-ups and checklist items")?;
        let id =
            value.parse::<i64>().map_err(|_| "this button refers to no follow-up or checklist item".to_string())?;
        let store = self.context.store();
        let Some(task) = store.complete_task(id, &origin.user.to_string(), self.context.now()).await? else {
            let task = store.task(id).await?;
            let by = task.done_by.as_deref().unwrap_or("someone");
            return Err(format!("'{}' is done already (ticked by {by})", task.text).into());
        };
        if task.checklist.is_some() {
            // The checklist's message is edited on every platform through the outbox.
            self.context.notify_delivery();
            return Ok(Reply::Nothing);
        }
        let incident = store.incident(task.incident_id).await?;
        let adapter = self.context.adapter(origin.platform)?;
        let mention = views::person_mention(adapter.as_ref());
        let message = views::followup(&task, self.context.now(), &mention);
        let (channel, thread) = where_it_lives(&incident, origin);
        adapter.post(&channel, thread.as_deref(), &message).await?;
        Ok(Reply::Nothing)
    }

    async fn acknowledge(&self, id: i64, person: &Person) -> Result<Reply, CoreError> {
        match self.context.escalator.acknowledge(id, &person.to_string()).await {
            Ok(_) => {
                self.context.notify_delivery();
                Ok(Reply::Nothing)
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn resolve(&self, id: i64, person: &Person, resolution: Resolution) -> Result<Reply, CoreError> {
        match self.context.escalator.resolve(id, &person.to_string(), resolution).await {
            Ok(_) => {
                self.context.notify_delivery();
                Ok(Reply::Nothing)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// The resolve form, submitted.
    pub(crate) async fn form(
        &self,
        origin: &Origin,
        action: &str,
        value: &str,
        fields: BTreeMap<String, String>,
    ) -> Result<Reply, CoreError> {
        if action != views::FORM_RESOLVE {
            return Err(format!("unknown form '{action}'").into());
        }
        self.context.require(&self.context.permissions.incident, origin, "resolve incidents")?;
        let id = value.parse::<i64>().map_err(|_| "this form refers to no incident".to_string())?;
        let field = |name: &str| fields.get(name).map(|text| text.trim().to_string()).filter(|text| !text.is_empty());
        let resolution =
            Resolution { root_cause: field("root_cause"), fix: field("fix"), prevention: field("prevention") };
        self.resolve(id, &origin.user, resolution).await
    }

    async fn post_notification_here(&self, origin: &Origin, incident: Incident) {
        let Ok(adapter) = self.context.adapter(origin.platform) else { return };
        let text = match self.context.escalator.templates().notification(&incident, self.context.now()) {
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
                    self.context.store().attach_chat(incident.id, origin.platform, &posted.channel, &posted.id).await
                {
                    tracing::error!(%error, "Remembering where the incident was posted failed");
                }
            }
            Err(error) => tracing::warn!(%error, incident = incident.id, "Posting the incident notification failed"),
        }
    }
}

/// The incident's thread on the origin's platform, or where the command was typed.
fn where_it_lives(incident: &Incident, origin: &Origin) -> (String, Option<String>) {
    match incident.chat.get(origin.platform) {
        Some(home) => (home.channel.clone(), Some(home.message.clone())),
        None => (origin.channel.clone(), origin.thread.clone()),
    }
}

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
