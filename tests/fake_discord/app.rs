//! The real app in-process on port 0, on the wall clock, with SQLite in a temporary folder,
//! connected to a [`FakeDiscord`] and receiving interactions signed with a test key, built the
//! way Discord builds them: slash commands, button clicks and modal submissions, in a channel
//! or inside a thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};

use super::{APPLICATION, FakeDiscord, GUILD, INCIDENTS, StoredMessage, TOKEN};
use crate::support::app::{AppBuilder, RunningApp, toml_str};

/// The application's key pair; the app is configured with its public half.
pub fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

pub fn public_key_hex() -> String {
    hex::encode(signing_key().verifying_key().to_bytes())
}

pub use crate::support::app::Workspace;

/// How the app receives interactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `POST /discord/interactions` (`public_key` set).
    Http,
    /// The gateway (no `public_key`).
    Gateway,
}

/// The running app with its fake Discord; the app's parts (address, client, JSON API) are
/// those of the [`RunningApp`] it derefs to.
pub struct DiscordApp {
    pub fake: FakeDiscord,
    pub app: RunningApp,
}

impl std::ops::Deref for DiscordApp {
    type Target = RunningApp;

    fn deref(&self) -> &RunningApp {
        &self.app
    }
}

pub use crate::support::app::Answer;

/// What the app answered to an interaction.
impl Answer {
    /// The interaction response type (4 message, 5 deferred, 6 deferred update, 9 modal…).
    pub fn kind(&self) -> u64 {
        self.json()["type"].as_u64().unwrap_or_else(|| panic!("no response type: {self:?}"))
    }

    /// The text of an ephemeral (or any message) answer.
    pub fn text(&self) -> String {
        let data = &self.json()["data"];
        let message = StoredMessage {
            id: String::new(),
            channel: String::new(),
            content: data["content"].as_str().unwrap_or("").to_string(),
            embeds: data["embeds"].clone(),
            components: data["components"].clone(),
            files: Vec::new(),
            edits: 0,
            posted_at: Instant::now(),
        };
        message.visible_text()
    }

    pub fn is_ephemeral(&self) -> bool {
        self.json()["data"]["flags"].as_u64().is_some_and(|flags| flags & 64 != 0)
    }
}

/// Where an interaction happens.
#[derive(Debug, Clone)]
pub enum Place {
    Channel(String),
    Thread { id: String, parent: String },
}

impl Place {
    pub fn channel(id: &str) -> Place {
        Place::Channel(id.to_string())
    }

    fn json(&self) -> Value {
        match self {
            Place::Channel(id) => json!({"id": id, "type": 0, "guild_id": GUILD}),
            Place::Thread { id, parent } => json!({"id": id, "type": 11, "parent_id": parent, "guild_id": GUILD}),
        }
    }
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs()
}

/// An interaction id no other interaction of this process has.
pub fn interaction_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1_400_000_000_000_000_000);
    NEXT.fetch_add(1, Ordering::Relaxed).to_string()
}

/// Starts the app (HTTP endpoint) with the runbooks in `workspace`; `rest` is appended to the
/// config (groups, permissions, policies).
pub async fn spawn(workspace: Workspace, rest: &str) -> DiscordApp {
    spawn_with(FakeDiscord::start().await, workspace, rest, Transport::Http).await
}

/// The `[discord]` section that connects the app to `fake`, receiving interactions over
/// `transport`.
pub fn discord_section(fake: &FakeDiscord, transport: Transport) -> String {
    let public_key = match transport {
        Transport::Http => format!("public_key = {}\n", toml_str(&public_key_hex())),
        Transport::Gateway => String::new(),
    };
    format!(
        "[discord]\ntoken = {token}\napplication_id = \"{APPLICATION}\"\n{public_key}guild_id = \"{GUILD}\"\n\
         incident_channel = \"{INCIDENTS}\"\napi_url = {api}\n",
        token = toml_str(TOKEN),
        api = toml_str(&fake.api_url()),
    )
}

pub async fn spawn_with(fake: FakeDiscord, workspace: Workspace, rest: &str, transport: Transport) -> DiscordApp {
    let app = AppBuilder::new(workspace).section(&discord_section(&fake, transport)).section(rest).spawn().await;
    DiscordApp { fake, app }
}

/// `X-Signature-Ed25519` and `X-Signature-Timestamp` for `body` signed by `key` at `timestamp`.
pub fn signature_headers(key: &SigningKey, timestamp: u64, body: &str) -> Vec<(&'static str, String)> {
    let signature = key.sign(format!("{timestamp}{body}").as_bytes());
    vec![("x-signature-ed25519", hex::encode(signature.to_bytes())), ("x-signature-timestamp", timestamp.to_string())]
}

/// A user object as Discord sends it.
pub fn user_json(id: &str) -> Value {
    json!({"id": id, "username": format!("user{id}"), "discriminator": "0", "global_name": null, "avatar": null})
}

/// A guild member as Discord sends it in an interaction.
pub fn member_json(id: &str) -> Value {
    json!({"user": user_json(id), "roles": [], "joined_at": "2026-01-01T00:00:00.000000+00:00", "deaf": false,
           "mute": false, "flags": 0, "permissions": "2248473465835073"})
}

/// An interaction of `kind` by `user` in `place`, with everything Discord sends in every one.
fn interaction(kind: u8, user: &str, place: &Place, data: Value) -> Value {
    let id = interaction_id();
    let channel = place.json();
    json!({
        "id": id, "application_id": APPLICATION, "type": kind, "token": format!("token-{id}"), "version": 1,
        "guild_id": GUILD, "channel_id": channel["id"], "channel": channel, "member": member_json(user),
        "app_permissions": "2248473465835073", "locale": "en-US", "guild_locale": "en-US", "entitlements": [],
        "authorizing_integration_owners": {"0": GUILD}, "context": 0, "attachment_size_limit": 10_485_760,
        "data": data
    })
}

/// The interaction Discord sends when `user` runs the slash command `name` with `options` in
/// `place`.
pub fn command(user: &str, place: &Place, name: &str, options: Value) -> Value {
    interaction(
        2,
        user,
        place,
        json!({"id": "1100000000000000100", "name": name, "type": 1, "options": options, "guild_id": GUILD}),
    )
}

/// A message the bot posted, as Discord sends it inside an interaction.
fn message_json(message: &StoredMessage) -> Value {
    let list = |value: &Value| if value.is_array() { value.clone() } else { json!([]) };
    let mut author = user_json(APPLICATION);
    author["bot"] = json!(true);
    json!({
        "id": message.id, "channel_id": message.channel, "author": author, "content": message.content,
        "timestamp": "2026-11-22T10:00:00.000000+00:00", "edited_timestamp": null, "tts": false,
        "mention_everyone": false, "mentions": [], "mention_roles": [], "attachments": [], "embeds": list(&message.embeds),
        "pinned": false, "type": 0, "flags": 0, "components": list(&message.components)
    })
}

impl DiscordApp {
    /// POSTs `body` to the interactions endpoint with exactly these headers.
    pub async fn send_raw(&self, body: &str, headers: &[(&str, String)]) -> Answer {
        self.app.send("/discord/interactions", "application/json", body, headers).await
    }

    /// Sends `interaction` signed now with the application's key.
    pub async fn send(&self, interaction: &Value) -> Answer {
        let body = interaction.to_string();
        self.send_raw(&body, &signature_headers(&signing_key(), now(), &body)).await
    }

    /// `user` runs `/name` with `options` in `place`.
    pub async fn slash(&self, user: &str, place: &Place, name: &str, options: Value) -> Answer {
        self.send(&command(user, place, name, options)).await
    }

    /// Where `message` is, as an interaction's channel.
    pub fn place_of(&self, message: &StoredMessage) -> Place {
        match self.fake.threads().into_iter().find(|thread| thread.id == message.channel) {
            Some(thread) => Place::Thread { id: thread.id, parent: thread.parent },
            None => Place::Channel(message.channel.clone()),
        }
    }

    /// The interaction Discord sends when `user` clicks the button labelled `label` on `message`.
    pub fn click_interaction(&self, user: &str, message: &StoredMessage, label: &str) -> Value {
        let custom_id = message.custom_id(label);
        let mut click =
            interaction(3, user, &self.place_of(message), json!({"custom_id": custom_id, "component_type": 2}));
        click["message"] = message_json(message);
        click
    }

    pub async fn click(&self, user: &str, message: &StoredMessage, label: &str) -> Answer {
        self.send(&self.click_interaction(user, message, label)).await
    }

    /// `user` fills in `modal` (as the app answered with it) with `values` (input id → text) and
    /// submits it, in `place`; `from_message` when a button on that message opened it.
    pub async fn submit(
        &self,
        user: &str,
        modal: &Value,
        values: &[(&str, &str)],
        place: &Place,
        from_message: Option<&StoredMessage>,
    ) -> Answer {
        let rows: Vec<Value> = modal["components"]
            .as_array()
            .expect("a modal has rows")
            .iter()
            .map(|row| {
                let input = &row["components"][0];
                let input_id = input["custom_id"].as_str().expect("an input has a custom_id");
                let value = values.iter().find(|(id, _)| *id == input_id).map_or("", |(_, value)| value);
                json!({"type": 1, "components": [{"type": 4, "custom_id": input_id, "value": value}]})
            })
            .collect();
        let mut submission = interaction(5, user, place, json!({"custom_id": modal["custom_id"], "components": rows}));
        if let Some(message) = from_message {
            submission["message"] = message_json(message);
        }
        self.send(&submission).await
    }

    /// Stops the app and waits for it.
    pub async fn stop(self) {
        self.app.stop().await;
    }
}
