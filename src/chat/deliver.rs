//! Delivers the store's outbox to the chat platforms: incident notifications and their edits,
//! resolution summaries, and escalation pages (a mention in the incident's thread and a direct
//! message to each person).
//!
//! Each platform has its own lane: a task that reads the items it has not finished (pages
//! first), delivers them one at a time with a deadline on each, and records each part it
//! delivered, so a retry repeats none of them. One stalled or failing platform therefore holds up
//! only itself. A failure is retried with backoff (1 s doubling) and shown on the incident's
//! timeline (`notification_retrying` once, `notification_failed` when given up after
//! [`MAX_ATTEMPTS`]); an item is delivered once every lane finished it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::message::{FileAttachment, Message};
use super::{ChatAdapter, views};
use crate::escalation::Escalator;
use crate::health::{Health, supervise};
use crate::incident::tasks::{ChecklistOn, ChecklistState};
use crate::incident::{ChatRef, Incident, TimelineEvent, TimelineKind};
use crate::store::{OutboxItem, OutboxKind};

/// Attempts before a platform gives an item up and the failure is put on the timeline.
pub const MAX_ATTEMPTS: u32 = 5;

/// The most one item may take on one platform, all its calls together (each call has its own,
/// shorter deadline in the adapter); past it the attempt counts as failed.
pub const ITEM_DEADLINE: Duration = Duration::from_secs(60);

/// Items one lane reads per pass.
const BATCH: i64 = 50;

pub struct Deliverer {
    lanes: Vec<Arc<Lane>>,
    wake: Arc<Notify>,
}

/// One platform's deliveries.
struct Lane {
    escalator: Arc<Escalator>,
    adapter: Arc<dyn ChatAdapter>,
    /// The `done` part of every lane: an item is delivered once all of them are recorded.
    needed: Vec<String>,
    wake: Notify,
    /// Failed items waiting for their next attempt.
    retries: Mutex<HashMap<i64, Retry>>,
    health: Arc<Health>,
}

#[derive(Debug, Clone, Copy)]
struct Retry {
    attempts: u32,
    next: DateTime<Utc>,
}

impl Deliverer {
    pub fn new(
        escalator: Arc<Escalator>,
        adapters: BTreeMap<&'static str, Arc<dyn ChatAdapter>>,
        wake: Arc<Notify>,
    ) -> Self {
        Self::with_health(escalator, adapters, wake, Health::new())
    }

    /// A deliverer whose lanes report into `health` (`delivery:PLATFORM`).
    pub fn with_health(
        escalator: Arc<Escalator>,
        adapters: BTreeMap<&'static str, Arc<dyn ChatAdapter>>,
        wake: Arc<Notify>,
        health: Arc<Health>,
    ) -> Self {
        let needed: Vec<String> = adapters.keys().map(|platform| done_part(platform)).collect();
        let lanes = adapters
            .into_values()
            .map(|adapter| {
                health.register(&format!("delivery:{}", adapter.platform()), false);
                Arc::new(Lane {
                    escalator: escalator.clone(),
                    adapter,
                    needed: needed.clone(),
                    wake: Notify::new(),
                    retries: Mutex::new(HashMap::new()),
                    health: health.clone(),
                })
            })
            .collect();
        Self { lanes, wake }
    }

    /// Starts each platform's lane, supervised (`delivery:PLATFORM`), and the task that wakes
    /// them all when something is queued; they run until `shutdown`.
    pub fn spawn(self: Arc<Self>, shutdown: CancellationToken) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        for lane in &self.lanes {
            let health = lane.health.clone();
            let lane = lane.clone();
            let stop = shutdown.clone();
            tasks.push(supervise(
                &format!("delivery:{}", lane.adapter.platform()),
                health,
                shutdown.clone(),
                move || lane.clone().run(stop.clone()),
            ));
        }
        let deliverer = self.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = deliverer.wake.notified() => deliverer.lanes.iter().for_each(|lane| lane.wake.notify_one()),
                    _ = shutdown.cancelled() => return,
                }
            }
        }));
        tasks
    }

    /// One pass of every lane at once (what their loops do when woken); returns how many
    /// deliveries, one per item and platform, were made.
    pub async fn deliver_due(&self) -> usize {
        futures::future::join_all(self.lanes.iter().map(|lane| lane.pass())).await.into_iter().sum()
    }
}

/// The part a lane records when it finished an item (delivered or given up).
fn done_part(platform: &str) -> String {
    format!("{platform}:done")
}

impl Lane {
    fn platform(&self) -> &'static str {
        self.adapter.platform()
    }

    /// Delivers until `shutdown`: when woken, and every second for retries.
    async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            self.pass().await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// One pass over the items this platform has not finished; returns how many it delivered.
    async fn pass(&self) -> usize {
        let store = self.escalator.store();
        let waiting = self.retries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).len() as i64;
        let items = match crate::store::timed(store.due_outbox(&done_part(self.platform()), BATCH + waiting)).await {
            Ok(items) => items,
            Err(error) => {
                tracing::error!(%error, platform = self.platform(), "Reading the outbox failed");
                self.health
                    .failing(&format!("delivery:{}", self.platform()), format!("cannot read the outbox: {error}"));
                return 0;
            }
        };
        if let Ok(pending) = store.outbox_pending().await {
            metrics::gauge!("firebell_outbox_pending").set(pending as f64);
        }
        let mut finished = 0;
        for item in items {
            let retry = self.retries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get(&item.id).copied();
            if retry.is_some_and(|retry| retry.next > self.escalator.now()) {
                continue;
            }
            let result = match tokio::time::timeout(ITEM_DEADLINE, self.deliver(&item)).await {
                Ok(result) => result,
                Err(_) => Err(format!("did not finish within {} s", ITEM_DEADLINE.as_secs())),
            };
            match result {
                Ok(()) => {
                    metrics::counter!("firebell_deliveries_total", "result" => "ok", "platform" => self.platform())
                        .increment(1);
                    self.finish(&item).await;
                    self.health.ok(&format!("delivery:{}", self.platform()));
                    finished += 1;
                }
                Err(error) => self.failed(&item, retry.map_or(0, |retry| retry.attempts), &error).await,
            }
        }
        finished
    }

    /// Records that this platform is done with `item`, and marks it delivered when every
    /// platform is.
    async fn finish(&self, item: &OutboxItem) {
        self.retries.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&item.id);
        let store = self.escalator.store();
        if let Err(error) = store.outbox_progress(item.id, &done_part(self.platform())).await {
            tracing::error!(%error, item = item.id, "Recording a finished delivery failed");
            return;
        }
        if let Err(error) = store.outbox_settle(item.id, &self.needed, self.escalator.now()).await {
            tracing::error!(%error, item = item.id, "Marking an outbox item delivered failed");
        }
    }

    /// Counts a failed attempt: schedules the next with backoff, or gives up after
    /// [`MAX_ATTEMPTS`]; either shows on the incident's timeline.
    async fn failed(&self, item: &OutboxItem, attempts_before: u32, error: &str) {
        let platform = self.platform();
        let attempts = attempts_before + 1;
        let now = self.escalator.now();
        let part = format!("delivery:{platform}");
        self.health.failing(&part, format!("delivering outbox item {} ({}) failed: {error}", item.id, item.kind));
        let detail = |extra: serde_json::Value| {
            let mut detail = serde_json::json!({
                "outbox_id": item.id, "kind": item.kind, "platform": platform, "attempts": attempts, "error": error,
            });
            if let (Some(detail), serde_json::Value::Object(extra)) = (detail.as_object_mut(), extra) {
                detail.extend(extra);
            }
            detail
        };
        if attempts >= MAX_ATTEMPTS {
            metrics::counter!("firebell_deliveries_total", "result" => "given_up", "platform" => platform).increment(1);
            tracing::error!(
                item = item.id,
                kind = item.kind.as_str(),
                platform,
                error,
                "Giving up delivering a chat message"
            );
            self.on_timeline(
                item,
                TimelineEvent::new(now, TimelineKind::NotificationFailed, None, detail(serde_json::json!({}))),
            )
            .await;
            self.finish(item).await;
            return;
        }
        metrics::counter!("firebell_deliveries_total", "result" => "failed", "platform" => platform).increment(1);
        let backoff = chrono::Duration::seconds(1 << attempts_before.min(6));
        tracing::warn!(
            item = item.id,
            kind = item.kind.as_str(),
            platform,
            error,
            retry_in_s = backoff.num_seconds(),
            "Delivering a chat message failed; will retry"
        );
        if attempts == 1 {
            let retry = serde_json::json!({"retry_in_s": backoff.num_seconds()});
            self.on_timeline(item, TimelineEvent::new(now, TimelineKind::NotificationRetrying, None, detail(retry)))
                .await;
        }
        self.retries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(item.id, Retry { attempts, next: now + backoff });
    }

    async fn on_timeline(&self, item: &OutboxItem, event: TimelineEvent) {
        if let Some(id) = item.incident_id
            && let Err(error) = self.escalator.store().record(id, event).await
        {
            tracing::error!(%error, item = item.id, "Recording the delivery failure on the timeline failed");
        }
    }

    async fn deliver(&self, item: &OutboxItem) -> Result<(), String> {
        let Some(id) = item.incident_id else {
            return Ok(());
        };
        let mut incident = self.escalator.store().incident(id).await.map_err(|error| error.to_string())?;
        let adapter = self.adapter.as_ref();
        match item.kind {
            OutboxKind::IncidentDeclared => self.declared(item, adapter, &mut incident).await,
            OutboxKind::IncidentUpdated => self.updated(item, adapter, &incident, false).await,
            OutboxKind::IncidentResolved => self.updated(item, adapter, &incident, true).await,
            OutboxKind::Escalation => self.escalation(item, adapter, &incident).await,
            OutboxKind::Checklist => {
                let name = item.payload["checklist"].as_str().unwrap_or_default();
                match incident.checklists.iter().find(|checklist| checklist.name == name) {
                    Some(checklist) => self.show_checklist(adapter, &incident, checklist).await,
                    None => Ok(()),
                }
            }
            OutboxKind::Reminder => self.reminder(item, adapter, &incident).await,
        }
    }

    /// Runs `part` unless an earlier attempt delivered it, and records it once done.
    async fn part<F>(&self, item: &OutboxItem, part: &str, deliver: F) -> Result<(), String>
    where
        F: std::future::Future<Output = Result<(), String>>,
    {
        if item.progress.iter().any(|done| done == part) {
            return Ok(());
        }
        deliver.await?;
        self.escalator.store().outbox_progress(item.id, part).await.map_err(|error| error.to_string())
    }

    fn notification(&self, incident: &Incident, adapter: &dyn ChatAdapter) -> Message {
        let text = self.escalator.templates().notification(incident, self.escalator.now()).unwrap_or_else(|error| {
            tracing::error!(%error, "Rendering the incident notification failed");
            format!("Incident #{}: {} ({})", incident.id, incident.title, incident.status)
        });
        let people = views::incident_people(incident);
        views::incident_notification(incident, &views::mention_people(&text, adapter, &people)).mentioning(people)
    }

    /// Where the incident lives on this platform: (channel, root message id).
    fn home(incident: &Incident, platform: &str) -> Option<(String, String)> {
        let home = incident.chat.get(platform)?;
        Some((home.channel.clone(), home.message.clone()))
    }

    async fn declared(
        &self,
        item: &OutboxItem,
        adapter: &dyn ChatAdapter,
        incident: &mut Incident,
    ) -> Result<(), String> {
        let platform = adapter.platform();
        let Some(channel) = adapter.incident_channel() else {
            return Ok(());
        };
        if Self::home(incident, platform).is_some() {
            return Ok(());
        }
        let message = self.notification(incident, adapter);
        let mut posted = None;
        self.part(item, &format!("{platform}:notification"), async {
            let message = adapter.post(&channel, None, &message).await.map_err(|error| error.to_string())?;
            self.escalator
                .store()
                .attach_chat(incident.id, platform, &message.channel, &message.id)
                .await
                .map_err(|error| error.to_string())?;
            posted = Some(message);
            Ok(())
        })
        .await?;
        // Where it lives now, for this item's other parts (an earlier attempt's post is in the
        // incident as loaded).
        if let Some(message) = posted {
            incident.chat.insert(platform.to_string(), ChatRef { channel: message.channel, message: message.id });
        }
        self.checklists(item, adapter, incident, ChecklistOn::Declared).await
    }

    /// Opens the checklists `on` brings (once, whichever lane comes first) and shows each in the
    /// incident's thread on this platform.
    async fn checklists(
        &self,
        item: &OutboxItem,
        adapter: &dyn ChatAdapter,
        incident: &Incident,
        on: ChecklistOn,
    ) -> Result<(), String> {
        let store = self.escalator.store();
        for checklist in self.escalator.checklists_for(incident, on) {
            let part = format!("{}:checklist:{}", adapter.platform(), checklist.name);
            if item.progress.contains(&part) {
                continue;
            }
            let items = store
                .open_checklist(incident.id, &checklist.name, checklist.tasks(item.created_at), self.escalator.now())
                .await
                .map_err(|error| error.to_string())?;
            let state = ChecklistState { name: checklist.name.clone(), items };
            self.part(item, &part, self.show_checklist(adapter, incident, &state)).await?;
        }
        Ok(())
    }

    /// Posts a checklist into the incident's thread, or edits its message there as it is now.
    async fn show_checklist(
        &self,
        adapter: &dyn ChatAdapter,
        incident: &Incident,
        checklist: &ChecklistState,
    ) -> Result<(), String> {
        let platform = adapter.platform();
        let store = self.escalator.store();
        let message = views::checklist(checklist, self.escalator.now(), &views::person_mention(adapter));
        let shown =
            store.checklist_message(incident.id, &checklist.name, platform).await.map_err(|error| error.to_string())?;
        if let Some((channel, id)) = shown {
            let at = super::MessageRef { channel, id };
            return adapter.update(&at, &message).await.map_err(|error| error.to_string());
        }
        let Some((channel, root)) = Self::home(incident, platform) else {
            return Ok(());
        };
        let posted = adapter.post(&channel, Some(&root), &message).await.map_err(|error| error.to_string())?;
        store
            .set_checklist_message(incident.id, &checklist.name, platform, &posted.channel, &posted.id)
            .await
            .map_err(|error| error.to_string())
    }

    async fn updated(
        &self,
        item: &OutboxItem,
        adapter: &dyn ChatAdapter,
        incident: &Incident,
        resolved: bool,
    ) -> Result<(), String> {
        let platform = adapter.platform();
        let Some((channel, root)) = Self::home(incident, platform) else {
            return Ok(());
        };
        let top = self.notification(incident, adapter);
        self.part(item, &format!("{platform}:top"), async {
            let at = super::MessageRef { channel: channel.clone(), id: root.clone() };
            adapter.update(&at, &top).await.map_err(|error| error.to_string())
        })
        .await?;
        let people = views::incident_people(incident);
        let note = if resolved {
            let summary = self.escalator.templates().resolution(incident, self.escalator.now())?;
            views::mention_people(&summary, adapter, &people)
        } else {
            change_note(incident, adapter, item.created_at)
        };
        if !note.is_empty() {
            self.part(item, &format!("{platform}:thread"), self.thread_note(adapter, incident, &channel, &root, note))
                .await?;
        }
        if resolved {
            self.checklists(item, adapter, incident, ChecklistOn::Resolved).await?;
        }
        Ok(())
    }

    /// A note in the incident's thread, as a file when it is longer than a message can be.
    async fn thread_note(
        &self,
        adapter: &dyn ChatAdapter,
        incident: &Incident,
        channel: &str,
        root: &str,
        note: String,
    ) -> Result<(), String> {
        let people = views::incident_people(incident);
        if note.chars().count() > adapter.limits().max_block_text {
            let file = FileAttachment {
                filename: format!("incident-{}-summary.md", incident.id),
                title: format!("Incident #{} summary", incident.id),
                content: note.into_bytes(),
            };
            adapter.upload(channel, Some(root), &file).await.map_err(|error| error.to_string())
        } else {
            adapter
                .post(channel, Some(root), &Message::plain(note).mentioning(people))
                .await
                .map(|_| ())
                .map_err(|error| error.to_string())
        }
    }

    async fn escalation(
        &self,
        item: &OutboxItem,
        adapter: &dyn ChatAdapter,
        incident: &Incident,
    ) -> Result<(), String> {
        let level = item.payload["step"].as_u64().unwrap_or(0) as usize;
        let round = item.payload["repeat"].as_u64().unwrap_or(0) as u32;
        let page = |mentions: &[String]| views::escalation_page(incident, mentions, level, round);
        self.page(item, adapter, incident, &page, &views::page_direct(incident, level)).await
    }

    /// A reminder of a due follow-up or checklist item: its owners in the thread and by DM.
    async fn reminder(&self, item: &OutboxItem, adapter: &dyn ChatAdapter, incident: &Incident) -> Result<(), String> {
        let id = item.payload["task"].as_i64().unwrap_or_default();
        let tasks = incident.followups.iter().chain(incident.checklists.iter().flat_map(|checklist| &checklist.items));
        let Some(task) = tasks.into_iter().find(|task| task.id == id) else {
            return Ok(());
        };
        if task.is_done() {
            return Ok(());
        }
        let now = self.escalator.now();
        let page = |mentions: &[String]| views::reminder(incident, task, mentions, now);
        self.page(item, adapter, incident, &page, &views::reminder_direct(incident, task, now)).await
    }

    /// Tells the item's recipients on this platform: `page` (given their mentions) in the
    /// incident's thread, `direct` to each by direct message. While the notification that starts
    /// the thread is still being delivered, the direct messages go now and the rest is retried.
    async fn page(
        &self,
        item: &OutboxItem,
        adapter: &dyn ChatAdapter,
        incident: &Incident,
        page: &(dyn Fn(&[String]) -> Message + Sync),
        direct: &Message,
    ) -> Result<(), String> {
        let platform = adapter.platform();
        let people: Vec<String> = item
            .recipients
            .iter()
            .filter_map(|person| person.strip_prefix(&format!("{platform}:")).map(str::to_string))
            .collect();
        // A page is for people; a reminder with nobody to remind still belongs in the thread.
        if people.is_empty() && item.kind == OutboxKind::Escalation {
            return Ok(());
        }
        let mut waiting_for_thread = None;
        match Self::home(incident, platform) {
            Some((channel, root)) => {
                let mentions: Vec<String> = people.iter().map(|id| adapter.mention(id)).collect();
                let message = page(&mentions).mentioning(people.clone());
                self.part(item, &format!("{platform}:thread"), async {
                    adapter.post(&channel, Some(&root), &message).await.map(|_| ()).map_err(|error| error.to_string())
                })
                .await?;
            }
            None if adapter.incident_channel().is_some() => {
                waiting_for_thread = Some(format!(
                    "incident #{}'s notification is not posted yet, so the {} has no thread",
                    incident.id,
                    if item.kind == OutboxKind::Escalation { "page" } else { "reminder" }
                ));
            }
            None => {}
        }
        for person in &people {
            self.part(item, &format!("{platform}:dm:{person}"), async {
                adapter.direct(person, direct).await.map(|_| ()).map_err(|error| error.to_string())
            })
            .await?;
        }
        waiting_for_thread.map_or(Ok(()), Err)
    }
}

/// A line for the thread about the change an item was queued for (acknowledgement, status
/// update): the latest one at the item's time, so items delivered together each get their own.
fn change_note(incident: &Incident, adapter: &dyn ChatAdapter, queued_at: chrono::DateTime<chrono::Utc>) -> String {
    let mention = |by: &Option<String>| {
        by.as_deref()
            .map(|by| match by.split_once(':') {
                Some((platform, id)) if platform == adapter.platform() => adapter.mention(id),
                _ => by.to_string(),
            })
            .unwrap_or_else(|| "someone".to_string())
    };
    let Some(event) =
        incident.timeline.iter().rev().find(|event| {
            event.at <= queued_at && matches!(event.kind, TimelineKind::Acknowledged | TimelineKind::Status)
        })
    else {
        return String::new();
    };
    match event.kind {
        TimelineKind::Acknowledged => format!("👀 Acknowledged by {}; escalation stopped.", mention(&event.by)),
        _ => {
            let phase = event.detail["phase"].as_str().unwrap_or("update");
            let text = event.detail["text"].as_str().unwrap_or("");
            let eta = event.detail["eta"].as_str().map(|eta| format!(" (ETA {eta})")).unwrap_or_default();
            format!("📣 *{}* — {text}{eta} ({})", phase.to_uppercase(), mention(&event.by))
        }
    }
}
