//! The web console: firebell's own chat platform, served by the binary at `/`. People give a
//! name (`console:alice`), type the same commands as on Slack, and see the bot's messages, the
//! incident threads and the streamed diagnoses live.
//!
//! - [`ConsoleAdapter`]: the [`ChatAdapter`]. Messages live in the store (so history and the
//!   ids incidents remember outlive restarts) and are pushed to open pages over a broadcast
//!   channel, which `web` streams as server-sent events.
//! - [`web`]: the chat endpoints, the server-sent event stream and the pages (chat, incidents,
//!   one incident), with the assets embedded in the binary.
//! - [`guard`]: who may use it — open on loopback, a login token elsewhere — and the
//!   cross-site request checks on every form.

pub mod guard;
mod pages;
pub mod web;

use std::sync::Arc;

use async_trait::async_trait;
use base64::prelude::{BASE64_STANDARD, Engine as _};
use serde::Serialize;
use serde_json::json;
use tokio::sync::broadcast;

use super::platform::{ChatHandler, Context, Platform};
use super::{ChatAdapter, ChatError, FileAttachment, Form, Limits, Message, MessageRef};
use crate::clock::Clock;
use crate::store::{ConsoleMessage, ConsoleStore};

/// The console as a [`Platform`]: always there, the chat platform of a bot with no other.
pub fn platform(_config: &crate::config::Config, context: &Context) -> anyhow::Result<Option<Box<dyn Platform>>> {
    let adapter = Arc::new(ConsoleAdapter::new(context.escalator.store().clone(), context.escalator.clock().clone()));
    Ok(Some(Box::new(ConsolePlatform { adapter, context: context.clone(), closing: Default::default() })))
}

struct ConsolePlatform {
    adapter: Arc<ConsoleAdapter>,
    context: Context,
    /// Ends the event streams of open pages when the server stops, so they do not hold up a
    /// graceful shutdown (they reconnect to whatever serves next).
    closing: tokio_util::sync::CancellationToken,
}

impl Platform for ConsolePlatform {
    fn adapter(&self) -> Arc<dyn ChatAdapter> {
        self.adapter.clone()
    }

    fn routes(&self, handler: &Arc<dyn ChatHandler>) -> Option<axum::Router> {
        let console = web::Console::new(handler.clone(), self.adapter.clone(), &self.context, self.closing.clone());
        Some(web::routes(Arc::new(console)))
    }

    fn tasks(
        &self,
        _handler: &Arc<dyn ChatHandler>,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let (shutdown, closing) = (shutdown.clone(), self.closing.clone());
        vec![tokio::spawn(async move {
            shutdown.cancelled().await;
            closing.cancel();
        })]
    }
}

/// Where incident notifications go on the console.
pub const INCIDENT_CHANNEL: &str = "incidents";
/// The channels every page lists (people can add their own by typing `#name`).
pub const CHANNELS: [&str; 2] = [INCIDENT_CHANNEL, "ops"];
/// The author of the bot's messages.
pub const BOT: &str = "firebell";
/// A file posted on the console keeps at most this much text.
const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;
/// Events kept for pages that fall behind; a page further behind reloads its history.
const EVENT_BUFFER: usize = 1024;

/// What open pages are told: a message was posted or edited (the whole message, as it is now).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ConsoleEvent {
    Message { message: ConsoleMessage },
}

/// A [`Form`] as the page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct FormView {
    pub title: String,
    pub submit: String,
    pub action: String,
    pub value: String,
    pub fields: Vec<FieldView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldView {
    pub id: String,
    pub label: String,
    pub multiline: bool,
    pub optional: bool,
}

impl From<&Form> for FormView {
    fn from(form: &Form) -> Self {
        FormView {
            title: form.title.clone(),
            submit: form.submit.clone(),
            action: form.action.clone(),
            value: form.value.clone(),
            fields: form
                .fields
                .iter()
                .map(|field| FieldView {
                    id: field.id.clone(),
                    label: field.label.clone(),
                    multiline: field.multiline,
                    optional: field.optional,
                })
                .collect(),
        }
    }
}

/// The console as a chat platform.
pub struct ConsoleAdapter {
    store: Arc<dyn ConsoleStore>,
    clock: Arc<dyn Clock>,
    events: broadcast::Sender<ConsoleEvent>,
}

impl ConsoleAdapter {
    pub fn new(store: Arc<dyn ConsoleStore>, clock: Arc<dyn Clock>) -> Self {
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        Self { store, clock, events }
    }

    /// Everything posted, edited or asked from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<ConsoleEvent> {
        self.events.subscribe()
    }

    pub fn store(&self) -> &Arc<dyn ConsoleStore> {
        &self.store
    }

    /// Posts as a person (the command they typed shows in the channel like any message).
    pub async fn post_as(
        &self,
        author: &str,
        channel: &str,
        thread: Option<&str>,
        body: serde_json::Value,
    ) -> Result<ConsoleMessage, ChatError> {
        let message = self
            .store
            .console_post(channel, thread, author, &body, self.clock.now())
            .await
            .map_err(|error| ChatError::Unreachable(error.to_string()))?;
        // Nobody listening is fine: the message is in the store for the next page.
        let _ = self.events.send(ConsoleEvent::Message { message: for_pages(message.clone()) });
        Ok(message)
    }
}

/// Characters of a file shown inline; the whole file is downloaded from `/console/files/{id}`.
pub(crate) const FILE_PREVIEW_CHARS: usize = 2_000;

/// A message as pages receive it: a file's text cut to its preview (files can be megabytes,
/// and every page and the event buffer would hold a copy), with its size and whether it was cut.
pub fn for_pages(mut message: ConsoleMessage) -> ConsoleMessage {
    if let Some(file) = message.body.get_mut("file").and_then(serde_json::Value::as_object_mut)
        && file.contains_key("text")
    {
        let text = file.remove("text").and_then(|text| text.as_str().map(str::to_string)).unwrap_or_default();
        let preview: String = text.chars().take(FILE_PREVIEW_CHARS).collect();
        file.insert("size".to_string(), json!(text.len()));
        file.insert("cut".to_string(), json!(preview.len() < text.len()));
        file.insert("preview".to_string(), json!(preview));
    }
    message
}

/// The id of a person's direct-message channel.
pub fn direct_channel(user: &str) -> String {
    format!("@{user}")
}

#[async_trait]
impl ChatAdapter for ConsoleAdapter {
    fn platform(&self) -> &'static str {
        "console"
    }

    fn limits(&self) -> Limits {
        Limits { max_text: 40_000, max_block_text: 3_000, max_blocks: 50 }
    }

    fn mention(&self, user_id: &str) -> String {
        format!("<@{user_id}>")
    }

    fn incident_channel(&self) -> Option<String> {
        Some(INCIDENT_CHANNEL.to_string())
    }

    async fn post(&self, channel: &str, thread: Option<&str>, message: &Message) -> Result<MessageRef, ChatError> {
        let posted = self.post_as(BOT, channel, thread, json!({"blocks": message.blocks})).await?;
        Ok(MessageRef { channel: posted.channel, id: posted.id.to_string() })
    }

    async fn update(&self, at: &MessageRef, message: &Message) -> Result<(), ChatError> {
        let id = at.id.parse::<i64>().map_err(|_| ChatError::Refused(format!("no console message '{}'", at.id)))?;
        let edited = self
            .store
            .console_edit(id, &json!({"blocks": message.blocks}), self.clock.now())
            .await
            .map_err(|error| ChatError::Refused(error.to_string()))?;
        let _ = self.events.send(ConsoleEvent::Message { message: for_pages(edited) });
        Ok(())
    }

    async fn upload(&self, channel: &str, thread: Option<&str>, file: &FileAttachment) -> Result<(), ChatError> {
        if file.is_image() {
            // A picture is kept whole (a cut one shows nothing), as base64 in the file's `text`,
            // so history and previews treat it like any file; pages show it as an image from
            // `/console/files/{id}`.
            if file.content.len() > MAX_FILE_BYTES {
                return Err(ChatError::Refused(format!("the image {} is over 4 MiB", file.filename)));
            }
            let body = json!({
                "blocks": [],
                "file": {
                    "filename": file.filename,
                    "title": file.title,
                    "content_type": file.content_type(),
                    "bytes": file.content.len(),
                    "text": BASE64_STANDARD.encode(&file.content),
                },
            });
            self.post_as(BOT, channel, thread, body).await?;
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&file.content).into_owned();
        if text.len() > MAX_FILE_BYTES {
            let mut cut = MAX_FILE_BYTES;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push_str("\n… (cut: the console keeps the first 4 MiB)");
        }
        let body = json!({
            "blocks": [],
            "file": {"filename": file.filename, "title": file.title, "text": text},
        });
        self.post_as(BOT, channel, thread, body).await?;
        Ok(())
    }

    async fn direct(&self, user_id: &str, message: &Message) -> Result<MessageRef, ChatError> {
        self.post(&direct_channel(user_id), None, message).await
    }
}
