//! Delivers the store's outbox to the chat platforms: incident notifications and their edits,
//! resolution summaries, and escalation pages (a mention in the incident's thread and a direct
//! message to each person). Each part delivered is recorded, so a retry repeats none of them; an
//! item that keeps failing is given up after a few attempts and shows on the incident timeline.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::message::{FileAttachment, Message};
use super::{ChatAdapter, views};
use crate::escalation::Escalator;
use crate::incident::Incident;
use crate::store::OutboxItem;

/// Attempts before an item is given up and the failure put on the timeline.
pub const MAX_ATTEMPTS: i64 = 5;

pub struct Deliverer {
    escalator: Arc<Escalator>,
    adapters: BTreeMap<&'static str, Arc<dyn ChatAdapter>>,
    wake: Arc<Notify>,
}

impl Deliverer {
    pub fn new(
        escalator: Arc<Escalator>,
        adapters: BTreeMap<&'static str, Arc<dyn ChatAdapter>>,
        wake: Arc<Notify>,
    ) -> Self {
        Self { escalator, adapters, wake }
    }

    /// Delivers until `shutdown`: when woken, and every second for retries.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            self.deliver_due().await;
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// One pass over the items that are due; returns how many were delivered.
    pub async fn deliver_due(&self) -> usize {
        let store = self.escalator.store();
        let items = match store.due_outbox(self.escalator.now(), 50).await {
            Ok(items) => items,
            Err(error) => {
                tracing::error!(%error, "Reading the outbox failed");
                return 0;
            }
        };
        if let Ok(pending) = store.outbox_pending().await {
            metrics::gauge!("firebell_outbox_pending").set(pending as f64);
        }
        // Marked delivered together at the end of the pass: if that write is lost, each part
        // of them is recorded as done, so the next pass repeats nothing.
        let mut delivered = Vec::with_capacity(items.len());
        for item in items {
            match self.deliver(&item).await {
                Ok(()) => {
                    delivered.push(item.id);
                    metrics::counter!("firebell_deliveries_total", "result" => "ok").increment(1);
                }
                Err(error) => self.failed(&item, &error).await,
            }
        }
        if !delivered.is_empty()
            && let Err(error) = store.outbox_delivered(&delivered, self.escalator.now()).await
        {
            tracing::error!(%error, items = delivered.len(), "Marking outbox items delivered failed");
        }
        delivered.len()
    }

    async fn failed(&self, item: &OutboxItem, error: &str) {
        let store = self.escalator.store();
        let now = self.escalator.now();
        let result = if item.attempts + 1 >= MAX_ATTEMPTS { "given_up" } else { "failed" };
        metrics::counter!("firebell_deliveries_total", "result" => result).increment(1);
        if item.attempts + 1 >= MAX_ATTEMPTS {
            tracing::error!(item = item.id, kind = item.kind, error, "Giving up delivering a chat message");
            if let Err(store_error) = store.outbox_give_up(item.id, error, now).await {
                tracing::error!(%store_error, "Recording the failed delivery failed");
            }
            return;
        }
        let backoff = chrono::Duration::seconds(1 << item.attempts.clamp(0, 6));
        tracing::warn!(
            item = item.id,
            kind = item.kind,
            error,
            retry_in_s = backoff.num_seconds(),
            "Delivering a chat message failed; will retry"
        );
        if let Err(store_error) = store.outbox_retry(item.id, error, now + backoff).await {
            tracing::error!(%store_error, "Scheduling the retry failed");
        }
    }

    async fn deliver(&self, item: &OutboxItem) -> Result<(), String> {
        let Some(id) = item.incident_id else {
            return Ok(());
        };
        let mut incident = self.escalator.store().incident(id).await.map_err(|error| error.to_string())?;
        let mut errors = Vec::new();
        for (platform, adapter) in &self.adapters {
            let result = match item.kind.as_str() {
                "incident_declared" => self.declared(item, adapter.as_ref(), &mut incident).await,
                "incident_updated" => self.updated(item, adapter.as_ref(), &incident, false).await,
                "incident_resolved" => self.updated(item, adapter.as_ref(), &incident, true).await,
                "escalation" => self.escalation(item, adapter.as_ref(), &incident).await,
                other => {
                    tracing::warn!(kind = other, "Unknown outbox item kind; skipping");
                    Ok(())
                }
            };
            if let Err(error) = result {
                errors.push(format!("{platform}: {error}"));
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
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
        views::incident_notification(incident, &views::mention_people(&text, adapter))
    }

    /// Where the incident lives on this platform: (channel, root message id).
    fn home(incident: &Incident, platform: &str) -> Option<(String, String)> {
        let entry = incident.chat.get(platform)?;
        Some((entry.get("channel")?.as_str()?.to_string(), entry.get("message")?.as_str()?.to_string()))
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
        if let (Some(message), serde_json::Value::Object(chat)) = (posted, &mut incident.chat) {
            chat.insert(platform.to_string(), serde_json::json!({"channel": message.channel, "message": message.id}));
        }
        Ok(())
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
        let note = if resolved {
            views::mention_people(&self.escalator.templates().resolution(incident, self.escalator.now())?, adapter)
        } else {
            change_note(incident, adapter, item.created_at)
        };
        if note.is_empty() {
            return Ok(());
        }
        self.part(item, &format!("{platform}:thread"), async {
            if note.chars().count() > adapter.limits().max_block_text {
                let file = FileAttachment {
                    filename: format!("incident-{}-summary.md", incident.id),
                    title: format!("Incident #{} summary", incident.id),
                    content: note.clone().into_bytes(),
                };
                adapter.upload(&channel, Some(&root), &file).await.map_err(|error| error.to_string())
            } else {
                adapter
                    .post(&channel, Some(&root), &Message::plain(note.clone()))
                    .await
                    .map(|_| ())
                    .map_err(|error| error.to_string())
            }
        })
        .await
    }

    async fn escalation(
        &self,
        item: &OutboxItem,
        adapter: &dyn ChatAdapter,
        incident: &Incident,
    ) -> Result<(), String> {
        let platform = adapter.platform();
        let people: Vec<String> = item
            .recipients
            .iter()
            .filter_map(|person| person.strip_prefix(&format!("{platform}:")).map(str::to_string))
            .collect();
        if people.is_empty() {
            return Ok(());
        }
        let level = item.payload["step"].as_u64().unwrap_or(0) as usize;
        let round = item.payload["repeat"].as_u64().unwrap_or(0) as u32;
        // The page belongs in the incident's thread; while the notification that starts it is
        // still being delivered, the direct messages go now and the page is retried.
        let mut waiting_for_thread = None;
        match Self::home(incident, platform) {
            Some((channel, root)) => {
                let mentions: Vec<String> = people.iter().map(|id| adapter.mention(id)).collect();
                let page = views::escalation_page(incident, &mentions, level, round);
                self.part(item, &format!("{platform}:thread"), async {
                    adapter.post(&channel, Some(&root), &page).await.map(|_| ()).map_err(|error| error.to_string())
                })
                .await?;
            }
            None if adapter.incident_channel().is_some() => {
                waiting_for_thread = Some(format!(
                    "incident #{}'s notification is not posted yet, so the page has no thread",
                    incident.id
                ));
            }
            None => {}
        }
        let direct = views::page_direct(incident, level);
        for person in &people {
            self.part(item, &format!("{platform}:dm:{person}"), async {
                adapter.direct(person, &direct).await.map(|_| ()).map_err(|error| error.to_string())
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
    let Some(event) = incident
        .timeline
        .iter()
        .rev()
        .find(|event| event.at <= queued_at && matches!(event.kind.as_str(), "acknowledged" | "status"))
    else {
        return String::new();
    };
    match event.kind.as_str() {
        "acknowledged" => format!("👀 Acknowledged by {}; escalation stopped.", mention(&event.by)),
        _ => {
            let phase = event.detail["phase"].as_str().unwrap_or("update");
            let text = event.detail["text"].as_str().unwrap_or("");
            let eta = event.detail["eta"].as_str().map(|eta| format!(" (ETA {eta})")).unwrap_or_default();
            format!("📣 *{}* — {text}{eta} ({})", phase.to_uppercase(), mention(&event.by))
        }
    }
}
