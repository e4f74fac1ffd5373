//! What Slack sends us, whichever way it arrives (signed HTTP or Socket Mode): slash commands,
//! interactions (buttons, modal submissions) and Events API callbacks (app mentions), turned into
//! [`ChatEvent`]s and handed to the [`ChatHandler`], with Slack's acknowledgement rules applied:
//! answer within 3 s, never do an event twice, deliver a private reply wherever it can go, and
//! show a form with the `trigger_id` of the command or click it answers.
//!
//! Parsing reads the JSON leniently (only the fields firebell uses), so one code path serves
//! both transports: Socket Mode's typed payloads are turned back into the same JSON first.

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::task::JoinHandle;

use super::SlackAdapter;
use super::render::{self, render_message};
use crate::chat::ack;
use crate::chat::platform::ChatHandler;
use crate::chat::{ChatEvent, Message, MessageRef, Origin, Reply};

/// Slack shows an error after 3 s; answer well before, whatever the handler is doing.
pub(crate) const ACK_DEADLINE: Duration = Duration::from_millis(2_500);
pub(crate) const WORKING_ON_IT: &str = "Working on it…";

/// A slash command, from the HTTP form or Socket Mode's payload (same field names).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct CommandForm {
    pub command: String,
    #[serde(default)]
    pub text: Option<String>,
    pub user_id: String,
    pub channel_id: String,
    #[serde(default)]
    pub trigger_id: Option<String>,
    #[serde(default)]
    pub response_url: Option<String>,
}

impl CommandForm {
    /// Reads the urlencoded body of `/slack/commands`.
    pub(crate) fn from_urlencoded(body: &str) -> Result<CommandForm, String> {
        let fields = url::form_urlencoded::parse(body.as_bytes())
            .map(|(key, value)| (key.into_owned(), Value::String(value.into_owned())))
            .collect::<serde_json::Map<_, _>>();
        serde_json::from_value(Value::Object(fields)).map_err(|error| format!("not a slash command: {error}"))
    }

    pub(crate) fn event(&self) -> ChatEvent {
        let text = unescape(self.text.as_deref().unwrap_or("").trim());
        let text = if text.is_empty() { self.command.clone() } else { format!("{} {text}", self.command) };
        ChatEvent::Command { origin: origin(&self.user_id, &self.channel_id, None), text }
    }

    /// What a form opens with in answer to this command.
    fn trigger(&self) -> Option<String> {
        self.trigger_id.clone().filter(|trigger| !trigger.is_empty())
    }
}

/// An interaction as the core sees it, plus what Slack needs to answer it.
#[derive(Debug, Clone)]
pub(crate) enum Interaction {
    Button {
        event: ChatEvent,
        trigger: Option<String>,
        response_url: Option<String>,
    },
    Form {
        event: ChatEvent,
        first_input: Option<String>,
    },
    /// Something firebell does not act on (`view_closed`, a shortcut).
    Ignored(String),
}

pub(crate) fn parse_interaction(payload: &Value) -> Result<Interaction, String> {
    let kind = text_at(payload, "/type").ok_or("an interaction payload needs a type")?;
    match kind {
        "block_actions" => parse_block_actions(payload),
        "view_submission" => parse_view_submission(payload),
        other => Ok(Interaction::Ignored(other.to_string())),
    }
}

fn parse_block_actions(payload: &Value) -> Result<Interaction, String> {
    let user = text_at(payload, "/user/id").ok_or("block_actions without user.id")?;
    let action = payload.pointer("/actions/0").ok_or("block_actions without actions")?;
    let action_id = text_at(action, "/action_id").ok_or("an action without action_id")?;
    let value = text_at(action, "/value").unwrap_or("");
    if text_at(payload, "/container/type") != Some("message") {
        return Ok(Interaction::Ignored("block_actions outside a message".to_string()));
    }
    let channel = text_at(payload, "/channel/id")
        .or_else(|| text_at(payload, "/container/channel_id"))
        .ok_or("block_actions without a channel")?;
    let message_ts = text_at(payload, "/container/message_ts").or_else(|| text_at(payload, "/message/ts"));
    let thread =
        text_at(payload, "/message/thread_ts").or_else(|| text_at(payload, "/container/thread_ts")).or(message_ts);
    let ephemeral = payload.pointer("/container/is_ephemeral").and_then(Value::as_bool).unwrap_or(false);
    let message =
        message_ts.filter(|_| !ephemeral).map(|ts| MessageRef { channel: channel.to_string(), id: ts.to_string() });
    let event = ChatEvent::Button {
        origin: origin(user, channel, thread),
        action: render::button_action(action_id).to_string(),
        value: value.to_string(),
        message,
    };
    Ok(Interaction::Button {
        event,
        trigger: text_at(payload, "/trigger_id").map(str::to_string),
        response_url: text_at(payload, "/response_url").map(str::to_string),
    })
}

fn parse_view_submission(payload: &Value) -> Result<Interaction, String> {
    let user = text_at(payload, "/user/id").ok_or("view_submission without user.id")?;
    let view = payload.get("view").ok_or("view_submission without a view")?;
    let action = text_at(view, "/callback_id").filter(|id| !id.is_empty()).ok_or("a form without callback_id")?;
    let metadata = FormMetadata::decode(text_at(view, "/private_metadata").unwrap_or(""));
    let mut fields = BTreeMap::new();
    if let Some(blocks) = view.pointer("/state/values").and_then(Value::as_object) {
        for (block_id, actions) in blocks {
            for (action_id, state) in actions.as_object().into_iter().flatten() {
                let key = if action_id.is_empty() { block_id } else { action_id };
                let value = text_at(state, "/value").unwrap_or("");
                fields.insert(key.clone(), value.to_string());
            }
        }
    }
    let first_input = view.get("blocks").and_then(Value::as_array).and_then(|blocks| {
        blocks
            .iter()
            .find(|block| text_at(block, "/type") == Some("input"))
            .and_then(|block| text_at(block, "/block_id"))
            .map(str::to_string)
    });
    let event = ChatEvent::FormSubmitted {
        origin: origin(user, metadata.channel.as_deref().unwrap_or(""), metadata.thread.as_deref()),
        action: action.to_string(),
        value: metadata.value,
        fields,
    };
    Ok(Interaction::Form { event, first_input })
}

/// An Events API callback, as firebell reads it.
#[derive(Debug, Clone)]
pub(crate) enum Push {
    Mention { event_id: String, event: Box<ChatEvent> },
    Ignored { event_id: Option<String>, kind: String },
}

/// Reads an `event_callback` envelope (HTTP) or Socket Mode's push payload.
pub(crate) fn parse_event_callback(callback: &Value) -> Result<Push, String> {
    let event_id = text_at(callback, "/event_id").map(str::to_string);
    let event = callback.get("event").ok_or("an event callback without an event")?;
    let kind = text_at(event, "/type").unwrap_or("").to_string();
    // Messages from bots (ours included) are never commands: no loops.
    if kind != "app_mention" || event.get("bot_id").is_some_and(|bot| !bot.is_null()) {
        return Ok(Push::Ignored { event_id, kind });
    }
    let event_id = event_id.ok_or("an event callback without event_id")?;
    let user = text_at(event, "/user").ok_or("app_mention without user")?;
    let channel = text_at(event, "/channel").ok_or("app_mention without channel")?;
    let bot_user = text_at(callback, "/authorizations/0/user_id");
    let text = mention_command(text_at(event, "/text").unwrap_or(""), bot_user);
    let event = ChatEvent::Command { origin: origin(user, channel, text_at(event, "/thread_ts")), text };
    Ok(Push::Mention { event_id, event: Box::new(event) })
}

static ANY_MENTION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<@[A-Z0-9]+(?:\|[^>]*)?>").expect("mention pattern"));

/// `<@BOT> diagnose queue` → `/diagnose queue`: the bot's mention goes (or, when the bot's id
/// is unknown, the first mention), and a leading `/` is added.
fn mention_command(text: &str, bot_user: Option<&str>) -> String {
    let without_bot = match bot_user {
        Some(bot) => {
            let pattern = Regex::new(&format!(r"<@{}(?:\|[^>]*)?>", regex::escape(bot))).expect("escaped pattern");
            pattern.replace_all(text, " ").into_owned()
        }
        None => ANY_MENTION.replace(text, " ").into_owned(),
    };
    let command = unescape(without_bot.split_whitespace().collect::<Vec<_>>().join(" ").as_str());
    if command.starts_with('/') { command } else { format!("/{command}") }
}

/// Slack sends `&`, `<` and `>` as entities in typed text.
fn unescape(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

fn origin(user: &str, channel: &str, thread: Option<&str>) -> Origin {
    Origin::new("slack", user, channel, thread)
}

fn text_at<'a>(value: &'a Value, pointer: &str) -> Option<&'a str> {
    value.pointer(pointer).and_then(Value::as_str)
}

/// A modal's `private_metadata`: the form's value, and where the form was opened (Slack's
/// `view_submission` does not say which channel or thread it came from).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FormMetadata {
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
}

impl FormMetadata {
    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(self).expect("metadata serialises")
    }

    /// Metadata written by [`Self::encode`]; anything else is taken as the bare value.
    pub(crate) fn decode(text: &str) -> FormMetadata {
        serde_json::from_str(text)
            .unwrap_or_else(|_| FormMetadata { value: text.to_string(), ..FormMetadata::default() })
    }
}

/// What to answer a view submission with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum InteractionAck {
    /// An empty 200: the modal closes, the click is taken.
    Nothing,
    /// `response_action: errors`: the modal stays open with this message under a field.
    Errors(BTreeMap<String, String>),
}

/// Hands Slack's events to the handler and applies Slack's rules for answering them.
#[derive(Clone)]
pub(crate) struct Dispatcher {
    handler: Arc<dyn ChatHandler>,
    /// Opens forms and posts private replies that cannot be the acknowledgement (to app
    /// mentions); without it, forms are answered with the command to type instead.
    adapter: Option<Arc<SlackAdapter>>,
    http: reqwest::Client,
    ack_deadline: Duration,
}

impl Dispatcher {
    pub(crate) fn new(handler: Arc<dyn ChatHandler>, adapter: Option<Arc<SlackAdapter>>) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().expect("an HTTP client");
        Dispatcher { handler, adapter, http, ack_deadline: ACK_DEADLINE }
    }

    pub(crate) async fn first_seen(&self, key: &str) -> bool {
        self.handler.first_seen(key).await
    }

    /// A slash command: the private message to acknowledge it with, if any. A reply that takes
    /// longer than the deadline is acknowledged with "Working on it…" and follows through the
    /// command's `response_url`.
    pub(crate) async fn command(&self, form: CommandForm) -> Option<Message> {
        let event = form.event();
        let origin = event.origin().clone();
        match ack::within_deadline(&self.handler, event, self.ack_deadline, "slack").await {
            Ok(reply) => self.settle(reply, &origin, form.trigger().as_deref()).await,
            Err(late) => {
                // Slack's trigger lives 3 s: a form that comes this late cannot open any more.
                self.follow_up(late, origin, None, form.response_url);
                Some(Message::plain(WORKING_ON_IT))
            }
        }
    }

    pub(crate) async fn interaction(&self, payload: &Value) -> Result<InteractionAck, String> {
        match parse_interaction(payload)? {
            Interaction::Ignored(kind) => {
                tracing::debug!(kind, "Ignored a Slack interaction");
                Ok(InteractionAck::Nothing)
            }
            Interaction::Button { event, trigger, response_url } => {
                // Slack shows nothing of a click's acknowledgement, and a click's reply goes
                // through `response_url` (or opens a form) anyway: acknowledge at once, as Slack
                // asks, and handle the click meanwhile rather than keep Slack waiting on the store.
                let origin = event.origin().clone();
                self.follow_up(ack::answer_later(&self.handler, event), origin, trigger, response_url);
                Ok(InteractionAck::Nothing)
            }
            Interaction::Form { event, first_input } => {
                match ack::within_deadline(&self.handler, event, self.ack_deadline, "slack").await {
                    Ok(reply) => Ok(match (reply.without_form(), first_input) {
                        (Reply::Private(message), Some(block)) => {
                            let text = message.plain_text().chars().take(render::MAX_SECTION_TEXT).collect();
                            InteractionAck::Errors(BTreeMap::from([(block, text)]))
                        }
                        (Reply::Private(_), None) => {
                            tracing::info!("A private reply to a form without inputs was dropped");
                            InteractionAck::Nothing
                        }
                        _ => InteractionAck::Nothing,
                    }),
                    Err(late) => {
                        // The modal closes now; a late reply has nowhere to go.
                        tokio::spawn(ack::late(late, "slack"));
                        Ok(InteractionAck::Nothing)
                    }
                }
            }
        }
    }

    /// An Events API callback: acted on once per `event_id`, without waiting for the work.
    pub(crate) async fn event_callback(&self, callback: &Value) -> Result<(), String> {
        match parse_event_callback(callback)? {
            Push::Ignored { event_id, kind } => {
                tracing::debug!(kind, event_id, "Ignored a Slack event");
            }
            Push::Mention { event_id, event } => {
                if !self.first_seen(&format!("slack:event:{event_id}")).await {
                    tracing::info!(event_id, "Slack delivered an event again; it was already handled");
                    return Ok(());
                }
                let dispatcher = self.clone();
                tokio::spawn(async move {
                    let origin = event.origin().clone();
                    // A mention has no trigger to open a form with.
                    if let Reply::Private(message) = dispatcher.handler.handle(*event).await.without_form() {
                        dispatcher.reply_privately(&origin, &message).await;
                    }
                });
            }
        }
        Ok(())
    }

    /// What the person is shown of `reply` besides the channel: a private message, or nothing
    /// when the reply was nothing or a form that opened with `trigger`.
    async fn settle(&self, reply: Reply, origin: &Origin, trigger: Option<&str>) -> Option<Message> {
        match reply {
            Reply::Nothing => None,
            Reply::Private(message) => Some(message),
            Reply::Form(form) => match (&self.adapter, trigger) {
                (Some(adapter), Some(trigger)) => match adapter.open_form(trigger, &form, Some(origin)).await {
                    Ok(()) => None,
                    Err(error) => Some(Message::plain(format!("could not open the form: {error}; {}", form.instead))),
                },
                _ => Some(Message::plain(form.instead)),
            },
        }
    }

    /// Delivers a reply that came after the acknowledgement: a form opens with `trigger`, a
    /// private message goes through `response_url`.
    fn follow_up(
        &self,
        late: JoinHandle<Reply>,
        origin: Origin,
        trigger: Option<String>,
        response_url: Option<String>,
    ) {
        let dispatcher = self.clone();
        tokio::spawn(async move {
            let reply = ack::late(late, "slack").await;
            let Some(message) = dispatcher.settle(reply, &origin, trigger.as_deref()).await else { return };
            match response_url {
                Some(url) => dispatcher.post_response(&url, &message).await,
                None => tracing::info!("A late private reply had nowhere to go and was dropped"),
            }
        });
    }

    /// An ephemeral message through an interaction's `response_url`.
    async fn post_response(&self, url: &str, message: &Message) {
        let mut body = ephemeral_json(message);
        body["replace_original"] = Value::Bool(false);
        match self.http.post(url).json(&body).send().await {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                tracing::warn!(status = response.status().as_u16(), "Slack refused a reply sent to response_url")
            }
            Err(error) => {
                tracing::warn!(error = %error.without_url(), "Could not send a reply to Slack's response_url")
            }
        }
    }

    async fn reply_privately(&self, origin: &Origin, message: &Message) {
        let Some(adapter) = &self.adapter else {
            tracing::info!("A private reply to an app mention was dropped: no Slack adapter to post it");
            return;
        };
        if let Err(error) =
            adapter.post_ephemeral(&origin.channel, &origin.user.id, origin.thread.as_deref(), message).await
        {
            tracing::warn!(%error, "Could not post a private reply to an app mention");
        }
    }
}

/// `{"response_type": "ephemeral", "text": …, "blocks": […]}`, the answer to a command.
pub(crate) fn ephemeral_json(message: &Message) -> Value {
    let rendered = render_message(message);
    let mut body = serde_json::json!({"response_type": "ephemeral", "text": rendered.text});
    if !rendered.blocks.is_empty() {
        body["blocks"] = serde_json::to_value(&rendered.blocks).expect("blocks serialise");
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn slash_command_form() {
        let form = CommandForm::from_urlencoded(
            "token=x&team_id=T1&channel_id=C1&user_id=U1&command=%2Fdiagnose&text=queue+queue%3Dsignals+x%3D%26lt%3B5&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2F1&trigger_id=13345.98",
        )
        .unwrap();
        match form.event() {
            ChatEvent::Command { origin, text } => {
                assert_eq!(text, "/diagnose queue queue=signals x=<5");
                assert_eq!(origin.user.to_string(), "slack:U1");
                assert_eq!(origin.channel, "C1");
                assert_eq!(origin.thread, None);
                assert_eq!(form.trigger().as_deref(), Some("13345.98"));
            }
            other => panic!("{other:?}"),
        }
        let bare = CommandForm::from_urlencoded("command=%2Fdiagnose&text=&user_id=U1&channel_id=C1").unwrap();
        assert!(matches!(bare.event(), ChatEvent::Command { text, .. } if text == "/diagnose"));
        assert!(CommandForm::from_urlencoded("text=hello").is_err());
    }

    #[test]
    fn mentions_become_commands() {
        assert_eq!(mention_command("<@UBOT> diagnose queue", Some("UBOT")), "/diagnose queue");
        assert_eq!(mention_command("<@UBOT|firebell>   /incident ack", Some("UBOT")), "/incident ack");
        assert_eq!(mention_command("hey <@UBOT> oncall", None), "/hey oncall");
        assert_eq!(mention_command("<@UBOT> diagnose queue x=&gt;3", None), "/diagnose queue x=>3");
        assert_eq!(mention_command("<@UBOT> page <@U0002>", Some("UBOT")), "/page <@U0002>");
    }

    #[test]
    fn app_mention_in_a_thread() {
        let callback = json!({
            "type": "event_callback", "team_id": "T1", "api_app_id": "A1", "event_id": "Ev1", "event_time": 1,
            "authorizations": [{"user_id": "UBOT", "team_id": "T1", "is_bot": true}],
            "event": {"type": "app_mention", "user": "U1", "channel": "C1", "text": "<@UBOT> diagnose queue", "ts": "2.000002", "thread_ts": "1.000001"}
        });
        let Push::Mention { event_id, event } = parse_event_callback(&callback).unwrap() else { panic!("a mention") };
        assert_eq!(event_id, "Ev1");
        match *event {
            ChatEvent::Command { origin, text } => {
                assert_eq!(text, "/diagnose queue");
                assert_eq!(origin.thread.as_deref(), Some("1.000001"));
            }
            other => panic!("{other:?}"),
        }
        let from_bot = json!({"event_id": "Ev2", "event": {"type": "app_mention", "user": "U1", "channel": "C1", "text": "<@UBOT> x", "bot_id": "B1"}});
        assert!(matches!(parse_event_callback(&from_bot).unwrap(), Push::Ignored { .. }));
    }

    #[test]
    fn view_submission_round_trips_the_form() {
        let metadata = FormMetadata { value: "42".into(), channel: Some("C1".into()), thread: Some("1.000001".into()) };
        let payload = json!({
            "type": "view_submission", "team": {"id": "T1"}, "user": {"id": "U7"},
            "view": {
                "id": "V1", "type": "modal", "callback_id": "resolve", "private_metadata": metadata.encode(),
                "blocks": [{"type": "input", "block_id": "root_cause", "label": {"type": "plain_text", "text": "Root cause"}, "element": {"type": "plain_text_input", "action_id": "root_cause"}}],
                "state": {"values": {
                    "root_cause": {"root_cause": {"type": "plain_text_input", "value": "lock"}},
                    "prevention": {"prevention": {"type": "plain_text_input", "value": null}}
                }}
            }
        });
        match parse_interaction(&payload).unwrap() {
            Interaction::Form { event: ChatEvent::FormSubmitted { origin, action, value, fields }, first_input } => {
                assert_eq!((action.as_str(), value.as_str()), ("resolve", "42"));
                assert_eq!(origin.channel, "C1");
                assert_eq!(origin.thread.as_deref(), Some("1.000001"));
                assert_eq!(fields["root_cause"], "lock");
                assert_eq!(fields["prevention"], "");
                assert_eq!(first_input.as_deref(), Some("root_cause"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(FormMetadata::decode("plain").value, "plain");
    }

    #[test]
    fn a_button_on_an_ephemeral_message_has_no_message_to_edit() {
        let payload = json!({
            "type": "block_actions", "user": {"id": "U1"}, "trigger_id": "t1",
            "container": {"type": "message", "message_ts": "5.000005", "channel_id": "C1", "is_ephemeral": true},
            "actions": [{"type": "button", "action_id": "approve#2", "value": "7"}]
        });
        match parse_interaction(&payload).unwrap() {
            Interaction::Button { event: ChatEvent::Button { action, value, message, origin, .. }, .. } => {
                assert_eq!((action.as_str(), value.as_str()), ("approve", "7"));
                assert_eq!(message, None);
                assert_eq!(origin.thread.as_deref(), Some("5.000005"));
            }
            other => panic!("{other:?}"),
        }
    }
}
