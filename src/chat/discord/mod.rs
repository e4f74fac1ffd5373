//! Discord: the [`ChatAdapter`] over Discord's REST API, the embed renderer, the application
//! commands, the signed HTTP interactions endpoint and the gateway. Only this folder knows
//! Discord's JSON.
//!
//! # What is serenity's and what is ours
//!
//! Discord's protocol model is serenity's (0.12, features `model` and `interactions_endpoint`,
//! without `gateway`, `client` or `cache`): incoming interactions are parsed into
//! `serenity::model::application::Interaction`; every body firebell sends is one of serenity's
//! builders (`CreateMessage`, `EditMessage`, `CreateEmbed`, `CreateActionRow`/`CreateButton`,
//! `CreateAllowedMentions`, `CreateAttachment`, `CreateThread`, `CreateInteractionResponse`,
//! `CreateModal`/`CreateInputText`, `CreateCommand`/`CreateCommandOption`…) serialised to JSON;
//! request signatures are checked by serenity's `interactions_endpoint::Verifier`.
//!
//! The transport is ours: [`rest`] sends those bodies with reqwest through [`ratelimit`], and
//! [`gateway`] holds the WebSocket. serenity's HTTP client is not used because it cannot be both
//! rate-limited and tested: its base URL can be pointed elsewhere (`HttpBuilder::proxy`) only
//! with its ratelimiter disabled — the ratelimiter builds every request without the proxy
//! (serenity issue #1739) — and with the ratelimiter disabled a 429 and its `Retry-After` and
//! `X-RateLimit-*` headers are not surfaced to the caller, so nothing would honour them. Ours
//! keeps Discord's global limit and per-route buckets from those headers, waits out every
//! `Retry-After`, paces posts per channel and edits per message, and is tested against the fake
//! Discord in `tests/fake_discord`. serenity's gateway needs its `gateway`/`client` features (a
//! second WebSocket and TLS stack, the cache, an event framework); see [`gateway`] for why its
//! event models are not used either.
//!
//! - [`DiscordAdapter`]: posts, edits, file uploads (multipart), direct messages, threads and
//!   modals; one post per second per channel, one edit per two seconds per message, Discord's
//!   global and per-route limits, every `Retry-After` waited out ([`ratelimit`], [`rest`]).
//! - [`render`]: [`Message`] → content, embeds and buttons within Discord's limits; [`Form`] →
//!   a modal. [`commands`]: the slash commands registered at start, and their options back into
//!   the command text the core's grammar reads.
//! - [`http`]: `POST /discord/interactions` (Ed25519, 5-minute window); [`gateway`]: the
//!   WebSocket for bots without a public endpoint. Both hand interactions to the same
//!   [`inbound`] code, which answers them (PONG, an ephemeral reply, a deferral, a modal).
//!
//! # Channels, threads and messages
//!
//! Discord makes a thread a channel of its own, and a thread started from a message has that
//! message's id. firebell keeps Slack's shape on top of that:
//!
//! - An incident lives at `(incident channel, notification message id)`. Posting the
//!   notification starts a thread from it, so the thread's id is the notification's id.
//! - A command typed inside a thread has `Origin { channel: parent channel, thread: Some(thread
//!   id) }`, which is how `Store::incident_by_chat` finds the incident. A click on a message in
//!   a channel has `thread: Some(message id)` (the message is, or becomes, its thread's start).
//! - `post(channel, Some(thread), …)` posts into the thread's own channel, starting the thread
//!   from the message of that id when it does not exist yet.
//! - A message posted inside a thread is referred to as `MessageRef { channel: parent, id:
//!   "THREAD/MESSAGE" }`, so a reference rebuilt from the parent channel and the stored id (as
//!   remediation requests do) still finds it; a top-level message's id is the bare message id.

pub mod commands;
pub mod gateway;
pub mod http;
mod inbound;
mod ratelimit;
pub mod render;
mod rest;

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};
use serenity::all::AutoArchiveDuration;
use serenity::builder::{
    CreateCommand, CreateInteractionResponse, CreateInteractionResponseFollowup, CreateMessage, CreateThread,
    EditInteractionResponse,
};

use crate::chat::ack::Gate;
use crate::chat::platform::{ChatHandler, Context, Platform};
use crate::chat::{ChatAdapter, ChatError, FileAttachment, Limits, Message, MessageRef};
use crate::config::{Config, DiscordConfig, Secret};
use crate::runbook::Catalogue;

pub use render::{DiscordRendered, render_message, render_modal};
use rest::{Body, Failure, Rest};

/// `[discord]` as a platform: on when a token is set; the HTTP interactions endpoint with a
/// public key, else the gateway. Its slash commands are registered when it starts.
pub fn platform(config: &Config, context: &Context) -> anyhow::Result<Option<Box<dyn Platform>>> {
    let Some(discord) = config.discord.as_ref().filter(|discord| discord.enabled()) else { return Ok(None) };
    let adapter = Arc::new(DiscordAdapter::new(discord).context("cannot set up Discord")?);
    let public_key = discord.public_key.as_ref().map(|key| key.get_ref().trim()).filter(|key| !key.is_empty());
    let endpoint_key = public_key.map(http::public_key).transpose()?;
    Ok(Some(Box::new(DiscordPlatform {
        adapter,
        endpoint_key,
        catalogue: context.catalogue.clone(),
        health: context.health.clone(),
    })))
}

struct DiscordPlatform {
    adapter: Arc<DiscordAdapter>,
    /// The application's public key: interactions arrive at the endpoint; without it, over the
    /// gateway.
    endpoint_key: Option<serenity::interactions_endpoint::Verifier>,
    catalogue: Arc<Catalogue>,
    health: Arc<crate::health::Health>,
}

impl Platform for DiscordPlatform {
    fn adapter(&self) -> Arc<dyn ChatAdapter> {
        self.adapter.clone()
    }

    fn routes(&self, handler: &Arc<dyn ChatHandler>) -> Option<axum::Router> {
        let key = self.endpoint_key.clone()?;
        Some(http::routes(handler.clone(), self.adapter.clone(), self.catalogue.clone(), key))
    }

    /// Registers the slash commands once (retrying with backoff until Discord takes them) and,
    /// without a public endpoint, runs the gateway.
    fn tasks(
        &self,
        handler: &Arc<dyn ChatHandler>,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let (adapter, commands, stop) =
            (self.adapter.clone(), commands::definitions(&self.catalogue), shutdown.clone());
        let mut tasks = vec![tokio::spawn(async move {
            let mut wait = Duration::from_secs(5);
            loop {
                match adapter.register_commands(&commands).await {
                    Ok(count) => {
                        tracing::info!(count, "Registered the Discord slash commands");
                        return;
                    }
                    Err(error) => {
                        tracing::warn!(%error, retry_in_s = wait.as_secs(), "Registering the Discord slash commands failed")
                    }
                }
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = stop.cancelled() => return,
                }
                wait = (wait * 2).min(Duration::from_secs(600));
            }
        })];
        if self.endpoint_key.is_none() {
            let (handler, adapter, catalogue, stop) =
                (handler.clone(), self.adapter.clone(), self.catalogue.clone(), shutdown.clone());
            tasks.push(crate::health::supervise("discord-gateway", self.health.clone(), shutdown.clone(), move || {
                let (handler, adapter, catalogue, stop) =
                    (handler.clone(), adapter.clone(), catalogue.clone(), stop.clone());
                async move {
                    if let Err(error) = gateway::run(handler, adapter, catalogue, stop).await {
                        tracing::error!(error = %format!("{error:#}"), "The Discord gateway stopped");
                    }
                }
            }));
        }
        tasks
    }
}

pub use super::ack::{EDIT_INTERVAL, POST_INTERVAL};
/// Threads stay open a week without activity (the longest Discord offers); a post reopens them.
const THREAD_ARCHIVE: AutoArchiveDuration = AutoArchiveDuration::OneWeek;
/// Discord's upload limit for bots is 10 MiB; files are cut below it.
pub const MAX_FILE_BYTES: usize = 10 * 1024 * 1024 - 64 * 1024;
/// Discord's JSON error codes firebell acts on.
const UNKNOWN_CHANNEL: i64 = 10_003;
const THREAD_ALREADY_CREATED: i64 = 160_004;
/// Entries kept in the adapter's small memories (threads, names, long button values).
const MEMORY: usize = 10_000;

/// The Discord REST API as a [`ChatAdapter`].
pub struct DiscordAdapter {
    rest: Rest,
    application_id: String,
    guild_id: Option<String>,
    incident_channel: Option<String>,
    posts: Gate,
    edits: Gate,
    /// Threads known to exist, so a post into one does not first try to start it.
    threads: Mutex<Bounded<String, ()>>,
    /// Top-level message id → a name for the thread that may start from it.
    thread_names: Mutex<Bounded<String, String>>,
    /// User id → their direct-message channel.
    direct_channels: Mutex<HashMap<String, String>>,
    /// `custom_id` → value, for buttons whose value is longer than a `custom_id` can carry.
    long_values: Mutex<Bounded<String, String>>,
}

impl fmt::Debug for DiscordAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DiscordAdapter")
            .field("application_id", &self.application_id)
            .field("guild_id", &self.guild_id)
            .field("incident_channel", &self.incident_channel)
            .field("token", &"***")
            .finish_non_exhaustive()
    }
}

impl DiscordAdapter {
    /// The adapter for `[discord]`: needs `token` and `application_id`; talks to `api_url`.
    pub fn new(config: &DiscordConfig) -> anyhow::Result<Self> {
        let token = config
            .token
            .as_ref()
            .map(toml::Spanned::get_ref)
            .filter(|token| !token.is_empty())
            .context("discord.token is not set: add the bot token to [discord] in firebell.toml")?;
        let application_id = config
            .application_id
            .as_ref()
            .map(|id| id.get_ref().trim().to_string())
            .filter(|id| !id.is_empty())
            .context("discord.application_id is not set: add the application id to [discord] in firebell.toml")?;
        let text = |value: &Option<toml::Spanned<crate::config::EnvString>>| {
            value.as_ref().map(|value| value.get_ref().trim().to_string()).filter(|value| !value.is_empty())
        };
        Self::with_api_url(
            token,
            config.api_url.get_ref(),
            &application_id,
            text(&config.guild_id),
            text(&config.incident_channel),
        )
    }

    /// The adapter for an explicit API URL (`http://127.0.0.1:…/api/` for a fake in tests).
    pub fn with_api_url(
        token: &Secret,
        api_url: &str,
        application_id: &str,
        guild_id: Option<String>,
        incident_channel: Option<String>,
    ) -> anyhow::Result<Self> {
        Ok(DiscordAdapter {
            rest: Rest::new(api_url, token)?,
            application_id: application_id.to_string(),
            guild_id,
            incident_channel,
            posts: Gate::new(POST_INTERVAL),
            edits: Gate::new(EDIT_INTERVAL),
            threads: Mutex::new(Bounded::new(MEMORY)),
            thread_names: Mutex::new(Bounded::new(MEMORY)),
            direct_channels: Mutex::new(HashMap::new()),
            long_values: Mutex::new(Bounded::new(MEMORY)),
        })
    }

    pub fn application_id(&self) -> &str {
        &self.application_id
    }

    /// Replaces the application's slash commands with `commands` in one call (per guild when
    /// `guild_id` is set, so changes show at once; else globally). Returns how many Discord
    /// holds now.
    pub async fn register_commands(&self, commands: &[CreateCommand]) -> Result<usize, ChatError> {
        let path = match &self.guild_id {
            Some(guild) => format!("applications/{}/guilds/{guild}/commands", self.application_id),
            None => format!("applications/{}/commands", self.application_id),
        };
        let answer = self.call(Method::PUT, &path, &Body::Json(wire(&commands))).await?;
        Ok(answer.as_array().map_or(0, Vec::len))
    }

    /// The gateway's WebSocket URL (`GET /gateway/bot`).
    pub async fn gateway_url(&self) -> Result<String, ChatError> {
        let answer = self.call(Method::GET, "gateway/bot", &Body::Empty).await?;
        answer
            .get("url")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ChatError::Refused("GET /gateway/bot answered without a url".to_string()))
    }

    pub(crate) fn token(&self) -> &Secret {
        self.rest.token()
    }

    /// Answers an interaction that arrived over the gateway (HTTP answers in the response body).
    pub(crate) async fn interaction_callback(
        &self,
        id: &str,
        token: &str,
        response: &CreateInteractionResponse,
    ) -> Result<(), ChatError> {
        self.call(Method::POST, &format!("interactions/{id}/{token}/callback"), &Body::Json(wire(response)))
            .await
            .map(|_| ())
    }

    /// Replaces the first answer to an interaction (after a deferral).
    pub(crate) async fn edit_original(&self, token: &str, data: &EditInteractionResponse) -> Result<(), ChatError> {
        let path = format!("webhooks/{}/{token}/messages/@original", self.application_id);
        self.call(Method::PATCH, &path, &Body::Json(wire(data))).await.map(|_| ())
    }

    /// A further message to the person who interacted.
    pub(crate) async fn follow_up(
        &self,
        token: &str,
        data: &CreateInteractionResponseFollowup,
    ) -> Result<(), ChatError> {
        let path = format!("webhooks/{}/{token}", self.application_id);
        self.call(Method::POST, &path, &Body::Json(wire(data))).await.map(|_| ())
    }

    /// The value behind a `custom_id` that carried a hash instead (see [`render::custom_id`]).
    pub(crate) fn long_value(&self, custom_id: &str) -> Option<String> {
        self.long_values.lock().expect("long values").get(custom_id).cloned()
    }

    /// `message` rendered for Discord, remembering the long button values it refers to.
    pub(crate) fn rendered(&self, message: &Message) -> DiscordRendered {
        let rendered = render_message(message);
        let mut long_values = self.long_values.lock().expect("long values");
        for (custom_id, value) in &rendered.long_values {
            long_values.insert(custom_id.clone(), value.clone());
        }
        rendered
    }

    async fn call(&self, method: Method, path: &str, body: &Body) -> Result<Value, ChatError> {
        self.rest.call(method, path, body).await.map_err(|failure| {
            let error = failure.into_chat_error();
            tracing::warn!(%error, "Discord call failed");
            error
        })
    }

    /// The body of a message with an optional file: JSON, or multipart with the file attached
    /// (the builder already lists it in `attachments`).
    fn with_file(payload: Value, file: Option<&FileAttachment>) -> Body {
        match file {
            None => Body::Json(payload),
            Some(file) => Body::Multipart { payload, files: vec![render::attachment(file)] },
        }
    }

    /// Posts into the channel `target` (a thread's own channel when `thread_parent` is given),
    /// starting the thread from its message first if Discord does not know the channel yet.
    async fn create_message(
        &self,
        target: &str,
        thread_parent: Option<&str>,
        body: &Body,
    ) -> Result<String, ChatError> {
        let path = format!("channels/{target}/messages");
        let turn = self.posts.turn(target).await;
        let answer = match self.rest.call(Method::POST, &path, body).await {
            Ok(answer) => answer,
            Err(Failure { code: Some(UNKNOWN_CHANNEL), .. }) if thread_parent.is_some() => {
                let parent = thread_parent.expect("checked");
                self.start_thread(parent, target).await?;
                // The refused post counted against the channel too: wait for the next turn.
                drop(turn);
                let _turn = self.posts.turn(target).await;
                self.call(Method::POST, &path, body).await?
            }
            Err(failure) => {
                let error = failure.into_chat_error();
                tracing::warn!(%error, "Posting to Discord failed");
                return Err(error);
            }
        };
        if thread_parent.is_some() {
            self.threads.lock().expect("threads").insert(target.to_string(), ());
        }
        answer
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ChatError::Refused("Discord answered a post without a message id".to_string()))
    }

    /// Starts a thread from `message` in `channel`; one that already exists is fine.
    async fn start_thread(&self, channel: &str, message: &str) -> Result<(), ChatError> {
        let name = self
            .thread_names
            .lock()
            .expect("thread names")
            .get(message)
            .cloned()
            .unwrap_or_else(|| "firebell".to_string());
        let body = Body::Json(wire(&CreateThread::new(name).auto_archive_duration(THREAD_ARCHIVE)));
        match self.rest.call(Method::POST, &format!("channels/{channel}/messages/{message}/threads"), &body).await {
            Ok(_) | Err(Failure { code: Some(THREAD_ALREADY_CREATED), .. }) => {
                self.threads.lock().expect("threads").insert(message.to_string(), ());
                Ok(())
            }
            Err(failure) => {
                let error = failure.into_chat_error();
                tracing::warn!(%error, channel, message, "Starting a Discord thread failed");
                Err(error)
            }
        }
    }

    async fn direct_channel(&self, user: &str) -> Result<String, ChatError> {
        if let Some(channel) = self.direct_channels.lock().expect("direct channels").get(user) {
            return Ok(channel.clone());
        }
        let answer = self.call(Method::POST, "users/@me/channels", &Body::Json(json!({"recipient_id": user}))).await?;
        let channel = answer
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| ChatError::Refused("Discord opened a direct message without an id".to_string()))?;
        self.direct_channels.lock().expect("direct channels").insert(user.to_string(), channel.clone());
        Ok(channel)
    }
}

/// `THREAD/MESSAGE` or `MESSAGE`, as [`MessageRef::id`] holds them: (channel to use, message).
fn locate(at: &MessageRef) -> (String, String) {
    match at.id.split_once('/') {
        Some((thread, message)) => (thread.to_string(), message.to_string()),
        None => (at.channel.clone(), at.id.clone()),
    }
}

/// A thread named by a message reference's id (`THREAD/MESSAGE` → `THREAD`).
fn thread_channel(thread: &str) -> &str {
    thread.split_once('/').map_or(thread, |(thread, _)| thread)
}

#[async_trait]
impl ChatAdapter for DiscordAdapter {
    fn platform(&self) -> &'static str {
        "discord"
    }

    /// `max_block_text` is what one embed description holds with its code fences; `max_text`
    /// what all embeds of a message hold. Beyond them the core uploads a file.
    fn limits(&self) -> Limits {
        Limits {
            max_text: render::MAX_EMBED_TOTAL,
            max_block_text: render::MAX_EMBED_DESCRIPTION - 96,
            max_blocks: render::MAX_EMBEDS,
        }
    }

    fn mention(&self, user_id: &str) -> String {
        format!("<@{}>", user_id.strip_prefix("discord:").unwrap_or(user_id))
    }

    fn incident_channel(&self) -> Option<String> {
        self.incident_channel.clone()
    }

    async fn post(&self, channel: &str, thread: Option<&str>, message: &Message) -> Result<MessageRef, ChatError> {
        let rendered = self.rendered(message);
        let body = Self::with_file(wire(&rendered.create_message()), rendered.overflow.as_ref());
        match thread {
            Some(thread) => {
                let thread = thread_channel(thread);
                let known = self.threads.lock().expect("threads").contains(thread);
                let id = self.create_message(thread, (!known).then_some(channel), &body).await?;
                Ok(MessageRef { channel: channel.to_string(), id: format!("{thread}/{id}") })
            }
            None => {
                let id = self.create_message(channel, None, &body).await?;
                self.thread_names.lock().expect("thread names").insert(id.clone(), render::thread_name(message));
                // An incident's notification starts its thread at once; elsewhere a thread
                // starts with the first reply.
                if self.incident_channel.as_deref() == Some(channel)
                    && let Err(error) = self.start_thread(channel, &id).await
                {
                    tracing::warn!(%error, "The incident thread will be started with its first reply");
                }
                Ok(MessageRef { channel: channel.to_string(), id })
            }
        }
    }

    async fn update(&self, at: &MessageRef, message: &Message) -> Result<(), ChatError> {
        let (channel, id) = locate(at);
        let rendered = self.rendered(message);
        // An edit keeps no earlier attachment unless told; the new file, if any, replaces it.
        let body = Self::with_file(wire(&rendered.edit_message()), rendered.overflow.as_ref());
        let _turn = self.edits.turn(&id).await;
        self.call(Method::PATCH, &format!("channels/{channel}/messages/{id}"), &body).await.map(|_| ())
    }

    async fn upload(&self, channel: &str, thread: Option<&str>, file: &FileAttachment) -> Result<(), ChatError> {
        if file.content.is_empty() {
            return Err(ChatError::Refused("the file is empty".to_string()));
        }
        let mut file = file.clone();
        if file.content.len() > MAX_FILE_BYTES {
            let cut = file.content[..MAX_FILE_BYTES].iter().rposition(|byte| *byte == b'\n').unwrap_or(MAX_FILE_BYTES);
            let dropped = file.content.len() - cut;
            file.content.truncate(cut);
            file.content.extend_from_slice(format!("\n…(truncated: {dropped} more bytes)\n").as_bytes());
        }
        let caption = format!("📎 **{}**", render::clip(&file.title, render::MAX_CONTENT - 10));
        let caption = CreateMessage::new()
            .content(caption)
            .allowed_mentions(render::no_mentions())
            .add_file(render::attachment(&file));
        let body = Self::with_file(wire(&caption), Some(&file));
        match thread {
            Some(thread) => {
                let thread = thread_channel(thread);
                let known = self.threads.lock().expect("threads").contains(thread);
                self.create_message(thread, (!known).then_some(channel), &body).await.map(|_| ())
            }
            None => self.create_message(channel, None, &body).await.map(|_| ()),
        }
    }

    async fn direct(&self, user_id: &str, message: &Message) -> Result<MessageRef, ChatError> {
        let channel = self.direct_channel(user_id.strip_prefix("discord:").unwrap_or(user_id)).await?;
        self.post(&channel, None, message).await
    }
}

/// One of serenity's builders as the JSON Discord receives.
fn wire(builder: &impl Serialize) -> Value {
    serde_json::to_value(builder).expect("serenity's builders serialise to JSON")
}

/// A map that forgets its oldest entries beyond a bound.
struct Bounded<K, V> {
    capacity: usize,
    entries: HashMap<K, V>,
    order: VecDeque<K>,
}

impl<K: std::hash::Hash + Eq + Clone, V> Bounded<K, V> {
    fn new(capacity: usize) -> Self {
        Bounded { capacity, entries: HashMap::new(), order: VecDeque::new() }
    }

    fn insert(&mut self, key: K, value: V) {
        if self.entries.insert(key.clone(), value).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.entries.remove(&oldest);
            }
        }
    }

    fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.entries.get(key)
    }

    fn contains<Q>(&self, key: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
        Q: std::hash::Hash + Eq + ?Sized,
    {
        self.entries.contains_key(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter() -> DiscordAdapter {
        DiscordAdapter::with_api_url(
            &Secret::new("bot-token-secret"),
            "https://discord.com/api/",
            "4242",
            None,
            Some("900".into()),
        )
        .unwrap()
    }

    #[test]
    fn mentions_platform_and_no_token_in_debug() {
        let adapter = adapter();
        assert_eq!(adapter.platform(), "discord");
        assert_eq!(adapter.mention("123"), "<@123>");
        assert_eq!(adapter.mention("discord:123"), "<@123>");
        assert_eq!(adapter.incident_channel().as_deref(), Some("900"));
        assert!(!format!("{adapter:?}").contains("bot-token-secret"));
    }

    #[test]
    fn message_refs_in_threads_locate_their_channel() {
        let top = MessageRef { channel: "900".into(), id: "1001".into() };
        assert_eq!(locate(&top), ("900".to_string(), "1001".to_string()));
        let in_thread = MessageRef { channel: "900".into(), id: "1001/1005".into() };
        assert_eq!(locate(&in_thread), ("1001".to_string(), "1005".to_string()));
        assert_eq!(thread_channel("1001/1005"), "1001");
        assert_eq!(thread_channel("1001"), "1001");
    }

    #[test]
    fn bounded_memory_forgets_the_oldest() {
        let mut memory = Bounded::new(2);
        memory.insert("a".to_string(), 1);
        memory.insert("b".to_string(), 2);
        memory.insert("c".to_string(), 3);
        assert!(!memory.contains("a"));
        assert_eq!(memory.get("c"), Some(&3));
    }
}
