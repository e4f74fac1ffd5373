//! The real app in-process on port 0, on the wall clock, connected to a fake Slack Web API in
//! HTTP mode, and a Slack that talks to it: signed slash commands, button clicks, modal
//! submissions and Events API callbacks, built the way Slack builds them.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use firebell::clock::{Clock, SystemClock};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::fake_slack::{self, FakeSlack, StoredMessage};
use crate::support::app::{AppBuilder, RunningApp, toml_str};

pub const SIGNING_SECRET: &str = "e2e0c4a1f9b84d7f9a0b5c3d2e1f0a9b";
/// Where incident notifications go (`slack.incident_channel`).
pub const INCIDENTS: &str = "CINC";
/// An ordinary channel people type commands in.
pub const OPS: &str = "COPS";

pub const FORM: &str = "application/x-www-form-urlencoded";
pub const JSON: &str = "application/json";

pub use crate::support::app::Workspace;

/// The running app with its fake Slack; the app's parts (address, client, chat core, JSON
/// API) are those of the [`RunningApp`] it derefs to.
pub struct SlackApp {
    pub fake: FakeSlack,
    pub app: RunningApp,
}

impl std::ops::Deref for SlackApp {
    type Target = RunningApp;

    fn deref(&self) -> &RunningApp {
        &self.app
    }
}

pub use crate::support::app::Answer;

/// Starts the app with the runbooks already in `workspace`; `rest` is appended to the config
/// (targets, groups, policies).
pub async fn spawn(workspace: Workspace, rest: &str) -> SlackApp {
    spawn_with(FakeSlack::start().await, workspace, rest, Arc::new(SystemClock)).await
}

/// The `[slack]` section that connects the app to `fake` in HTTP mode; keys that follow it
/// (`timeout = "1s"`) belong to it.
pub fn slack_section(fake: &FakeSlack) -> String {
    format!(
        "[slack]\nbot_token = {token}\nsigning_secret = {secret}\nincident_channel = \"{INCIDENTS}\"\napi_url = {api}\n",
        token = toml_str(&fake.token()),
        secret = toml_str(SIGNING_SECRET),
        api = toml_str(&fake.api_url()),
    )
}

/// [`spawn`] with a given fake Slack (one that already holds messages, after a restart) and a
/// given clock (a `ManualClock` to move time by hand). The store is `firebell.db` in
/// `workspace`, so an app started again on the same workspace finds what the last one stored.
pub async fn spawn_with(fake: FakeSlack, workspace: Workspace, rest: &str, clock: Arc<dyn Clock>) -> SlackApp {
    let app = AppBuilder::new(workspace).section(&slack_section(&fake)).section(rest).clock(clock).spawn().await;
    SlackApp { fake, app }
}

pub fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64
}

/// `v0=hex(HMAC-SHA256(secret, "v0:{timestamp}:{body}"))`, as Slack signs requests.
pub fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

pub fn form(fields: &[(&str, &str)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in fields {
        serializer.append_pair(key, value);
    }
    serializer.finish()
}

/// A trigger id no other test uses (the app remembers triggers process-wide).
pub fn trigger_id() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    format!("{}.{}.e2e{}", now(), std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A response URL id no other request uses, starting with the id of the person it answers
/// (`U0001.…`), so a private reply can be told apart by whom it is for.
pub fn response_id(user: &str) -> String {
    format!("{user}.{}", trigger_id())
}

/// The body Slack posts to `/slack/commands` when `user` types `command text` in `channel`.
pub fn slash_command_body(fake: &FakeSlack, user: &str, channel: &str, command: &str, text: &str) -> String {
    form(&[
        ("token", "gIkuvaNzQIHg97ATvDxqgjtO"),
        ("team_id", fake_slack::TEAM),
        ("team_domain", "fake"),
        ("channel_id", channel),
        ("channel_name", "ops"),
        ("user_id", user),
        ("user_name", "someone"),
        ("command", command),
        ("text", text),
        ("api_app_id", "A0FAKE"),
        ("is_enterprise_install", "false"),
        ("response_url", &fake.response_url(&response_id(user))),
        ("trigger_id", &trigger_id()),
    ])
}

/// An `app_mention` callback: `user` wrote `text` (with the bot's mention) in `channel`.
pub fn app_mention_body(event_id: &str, user: &str, channel: &str, text: &str) -> String {
    let ts = format!("{}.000100", now());
    json!({
        "token": "XXYYZZ", "team_id": fake_slack::TEAM, "api_app_id": "A0FAKE", "type": "event_callback",
        "event_id": event_id, "event_time": now(),
        "authorizations": [{"enterprise_id": null, "team_id": fake_slack::TEAM, "user_id": fake_slack::BOT_USER, "is_bot": true}],
        "event": {
            "type": "app_mention", "user": user, "channel": channel, "text": text,
            "ts": ts, "event_ts": ts
        }
    })
    .to_string()
}

/// The `(action_id, value, block_id)` of the button labelled `label` on `message`.
pub fn button(message: &StoredMessage, label: &str) -> Option<(String, String, String)> {
    for block in message.blocks.as_array().into_iter().flatten() {
        for element in block.get("elements").and_then(Value::as_array).into_iter().flatten() {
            if element["type"] == "button" && element["text"]["text"] == label {
                return Some((
                    element["action_id"].as_str().unwrap_or("").to_string(),
                    element["value"].as_str().unwrap_or("").to_string(),
                    block["block_id"].as_str().unwrap_or("").to_string(),
                ));
            }
        }
    }
    None
}

/// The labels of the buttons on `message`.
pub fn button_labels(message: &StoredMessage) -> Vec<String> {
    let mut labels = Vec::new();
    for block in message.blocks.as_array().into_iter().flatten() {
        for element in block.get("elements").and_then(Value::as_array).into_iter().flatten() {
            if element["type"] == "button"
                && let Some(label) = element["text"]["text"].as_str()
            {
                labels.push(label.to_string());
            }
        }
    }
    labels
}

impl SlackApp {
    /// POSTs `body` signed now with the app's signing secret, plus `extra` headers.
    pub async fn signed(&self, path: &str, content_type: &str, body: &str, extra: &[(&str, String)]) -> Answer {
        let timestamp = now();
        let mut headers = vec![
            ("x-slack-request-timestamp", timestamp.to_string()),
            ("x-slack-signature", signature(SIGNING_SECRET, timestamp, body)),
        ];
        headers.extend(extra.iter().cloned());
        self.send(path, content_type, body, &headers).await
    }

    /// `user` types `command text` in `channel`.
    pub async fn slash(&self, user: &str, channel: &str, command: &str, text: &str) -> Answer {
        let body = slash_command_body(&self.fake, user, channel, command, text);
        self.signed("/slack/commands", FORM, &body, &[]).await
    }

    /// `user` clicks the button labelled `label` on `message` (a message of the bot's, as the
    /// fake holds it).
    pub async fn click(&self, user: &str, message: &StoredMessage, label: &str) -> Answer {
        let body = self.click_body(user, message, label);
        self.signed("/slack/interactions", FORM, &body, &[]).await
    }

    /// The form body Slack posts when `user` clicks the button labelled `label` on `message`;
    /// send it with [`SlackApp::signed`] (twice, for a repeated interaction).
    pub fn click_body(&self, user: &str, message: &StoredMessage, label: &str) -> String {
        let (action_id, value, block_id) = button(message, label)
            .unwrap_or_else(|| panic!("no '{label}' button on the message; buttons: {:?}", button_labels(message)));
        let mut shown = json!({
            "type": "message", "user": fake_slack::BOT_USER, "bot_id": fake_slack::BOT_ID,
            "ts": message.ts, "text": message.text, "blocks": message.blocks,
        });
        let mut container = json!({
            "type": "message", "message_ts": message.ts, "channel_id": message.channel, "is_ephemeral": false,
        });
        if let Some(thread) = &message.thread_ts {
            shown["thread_ts"] = json!(thread);
            container["thread_ts"] = json!(thread);
        }
        let payload = json!({
            "type": "block_actions",
            "user": {"id": user, "username": "someone", "name": "someone", "team_id": fake_slack::TEAM},
            "api_app_id": "A0FAKE", "token": "9s8d9as89d8as9d8as989", "trigger_id": trigger_id(),
            "team": {"id": fake_slack::TEAM, "domain": "fake"},
            "container": container,
            "channel": {"id": message.channel, "name": "incidents"},
            "message": shown,
            "response_url": self.fake.response_url(&response_id(user)),
            "actions": [{
                "type": "button", "action_id": action_id, "block_id": block_id,
                "text": {"type": "plain_text", "text": label, "emoji": true},
                "value": value, "action_ts": format!("{}.000300", now()),
            }]
        });
        form(&[("payload", &payload.to_string())])
    }

    /// `user` fills in the modal `view` (as the app opened it with `views.open`) with
    /// `values` (block id → text) and presses its submit button.
    pub async fn submit(&self, user: &str, view: &Value, values: &[(&str, &str)]) -> Answer {
        let mut state = serde_json::Map::new();
        for block in view["blocks"].as_array().into_iter().flatten() {
            let block_id = block["block_id"].as_str().expect("an input block has a block_id");
            let action_id = block["element"]["action_id"].as_str().expect("an input has an action_id");
            let value =
                values.iter().find(|(id, _)| *id == block_id).map(|(_, value)| json!(value)).unwrap_or(Value::Null);
            state.insert(block_id.to_string(), json!({action_id: {"type": "plain_text_input", "value": value}}));
        }
        let mut submitted = view.clone();
        submitted["id"] = json!("V0E2E");
        submitted["team_id"] = json!(fake_slack::TEAM);
        submitted["state"] = json!({"values": state});
        submitted["hash"] = json!("1700000000.e2e");
        submitted["app_id"] = json!("A0FAKE");
        submitted["bot_id"] = json!(fake_slack::BOT_ID);
        let payload = json!({
            "type": "view_submission",
            "team": {"id": fake_slack::TEAM, "domain": "fake"},
            "user": {"id": user, "username": "someone", "name": "someone", "team_id": fake_slack::TEAM},
            "api_app_id": "A0FAKE", "token": "x", "trigger_id": trigger_id(),
            "view": submitted,
            "response_urls": [],
        });
        self.signed("/slack/interactions", FORM, &form(&[("payload", &payload.to_string())]), &[]).await
    }

    /// Slack delivers an Events API callback; `retry` is its `X-Slack-Retry-Num`.
    pub async fn event(&self, body: &str, retry: Option<u32>) -> Answer {
        let extra: Vec<(&str, String)> = match retry {
            Some(number) => {
                vec![("x-slack-retry-num", number.to_string()), ("x-slack-retry-reason", "http_timeout".to_string())]
            }
            None => Vec::new(),
        };
        self.signed("/slack/events", JSON, body, &extra).await
    }

    /// Top-level messages in `channel` (not thread replies), as they stand now.
    pub fn top_level(&self, channel: &str) -> Vec<StoredMessage> {
        self.fake.messages(channel).into_iter().filter(|message| message.thread_ts.is_none()).collect()
    }

    /// Waits for the message in `channel` whose visible text satisfies `condition`.
    pub async fn wait_message(
        &self,
        what: &str,
        channel: &str,
        timeout: Duration,
        condition: impl Fn(&StoredMessage) -> bool,
    ) -> StoredMessage {
        self.fake.wait_for(what, timeout, |fake| fake.messages(channel).iter().any(&condition)).await;
        self.fake.messages(channel).into_iter().find(condition).expect("the message is there")
    }

    /// Stops the app and starts a new one on the same workspace (store, runbooks as they are
    /// now) and the same fake Slack, configured with `rest` and running on `clock`.
    pub async fn restart(self, rest: &str, clock: Arc<dyn Clock>) -> SlackApp {
        let SlackApp { fake, app } = self;
        spawn_with(fake, app.stop().await, rest, clock).await
    }

    /// `user` clicks a button with this `action_id` and `value` on `message`: what a forged or
    /// tampered interaction payload looks like (Slack signs whatever the client sent).
    pub async fn click_forged(&self, user: &str, message: &StoredMessage, action_id: &str, value: &str) -> Answer {
        let payload = json!({
            "type": "block_actions",
            "user": {"id": user, "username": "someone", "name": "someone", "team_id": fake_slack::TEAM},
            "api_app_id": "A0FAKE", "token": "9s8d9as89d8as9d8as989", "trigger_id": trigger_id(),
            "team": {"id": fake_slack::TEAM, "domain": "fake"},
            "container": {
                "type": "message", "message_ts": message.ts, "channel_id": message.channel, "is_ephemeral": false,
            },
            "channel": {"id": message.channel, "name": "ops"},
            "message": {
                "type": "message", "user": fake_slack::BOT_USER, "bot_id": fake_slack::BOT_ID,
                "ts": message.ts, "text": message.text, "blocks": message.blocks,
            },
            "response_url": self.fake.response_url(&trigger_id()),
            "actions": [{
                "type": "button", "action_id": action_id, "block_id": "forged",
                "text": {"type": "plain_text", "text": "Approve", "emoji": true},
                "value": value, "action_ts": format!("{}.000300", now()),
            }]
        });
        self.signed("/slack/interactions", FORM, &form(&[("payload", &payload.to_string())]), &[]).await
    }

    /// `user` mentions the bot with `text` in the thread under `thread_ts` of `channel` (how a
    /// command reaches an incident's thread: slash commands carry no thread).
    pub async fn mention_in_thread(&self, user: &str, channel: &str, thread_ts: &str, text: &str) -> Answer {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let event_id = format!("Ev0THREAD{}x{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed));
        let mut body: Value = serde_json::from_str(&app_mention_body(
            &event_id,
            user,
            channel,
            &format!("<@{}> {text}", fake_slack::BOT_USER),
        ))
        .expect("the mention is JSON");
        body["event"]["thread_ts"] = json!(thread_ts);
        self.event(&body.to_string(), None).await
    }

    /// Stops the app and waits for it (the outbox deliverer and timers end with it).
    pub async fn stop(self) {
        self.app.stop().await;
    }
}
