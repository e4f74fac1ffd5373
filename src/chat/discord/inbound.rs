//! What Discord sends us, whichever way it arrives (signed HTTP or the gateway): interactions —
//! slash commands, autocomplete, button clicks, modal submissions — turned into
//! [`ChatEvent`]s and answered by Discord's rules: the first answer within 3 s (a deferral when
//! the core is slow, then an edit or a follow-up), a modal only as that first answer, and each
//! interaction acted on once.
//!
//! Interactions are read as serenity's typed [`Interaction`] (the gateway's
//! `INTERACTION_CREATE` and the endpoint's body are the same object), and every answer is one
//! of serenity's `CreateInteractionResponse`s.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use serenity::all::{
    ActionRowComponent, ChannelType, CommandInteraction, CommandType, ComponentInteractionDataKind, Interaction,
    Member, MessageFlags, PartialChannel, User,
};
use serenity::builder::{
    CreateAutocompleteResponse, CreateInteractionResponse, CreateInteractionResponseMessage, EditInteractionResponse,
};
use tokio::task::JoinHandle;

use super::{DiscordAdapter, commands, render};
use crate::chat::ack;
use crate::chat::platform::ChatHandler;
use crate::chat::{ChatEvent, Message, MessageRef, Origin, Reply};
use crate::runbook::Catalogue;

/// Discord invalidates an interaction not answered within 3 s; answer well before.
pub(crate) const ACK_DEADLINE: Duration = Duration::from_millis(2_000);

/// An interaction's body (the endpoint's request) as serenity's model.
pub(crate) fn parse(body: &[u8]) -> Result<Interaction, String> {
    let interaction = serde_json::from_slice(body).map_err(|error| format!("the interaction is not JSON: {error}"))?;
    parse_value(interaction)
}

/// The `d` of the gateway's `INTERACTION_CREATE` as serenity's model.
pub(crate) fn parse_value(mut interaction: Value) -> Result<Interaction, String> {
    if let Some(options) = interaction.pointer_mut("/data/options") {
        subcommand_options(options);
    }
    serde_json::from_value(interaction).map_err(|error| format!("not an interaction Discord sends: {error}"))
}

/// Discord documents a subcommand's `options` as optional; serenity 0.12 requires them, so a
/// subcommand given without options gets an empty list.
fn subcommand_options(options: &mut Value) {
    for option in options.as_array_mut().into_iter().flatten() {
        let is_group = matches!(option.get("type").and_then(Value::as_u64), Some(1 | 2));
        match option.get_mut("options") {
            Some(inner) => subcommand_options(inner),
            None if is_group => option["options"] = Value::Array(Vec::new()),
            None => {}
        }
    }
}

/// An interaction as firebell reads it.
#[derive(Debug, Clone)]
pub(crate) enum Parsed {
    Ping,
    /// Someone is typing an option that offers suggestions.
    Autocomplete {
        command: String,
        option: String,
        typed: String,
    },
    /// A command, click or form for the core; `source` says how Discord lets us answer it.
    Event {
        event: ChatEvent,
        source: Source,
    },
    /// Something firebell does not act on.
    Ignored(String),
}

/// What kind of interaction an event came from, which decides the answers Discord accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// A slash command, with its text for the acknowledgement.
    Command(String),
    /// A button on a message.
    Button,
    /// A modal's submission; `on_message` when the modal was opened from a button.
    Form { on_message: bool },
}

/// Reads an interaction. `long_value` finds the value behind a `custom_id` that carried a hash.
pub(crate) fn parse_interaction(
    interaction: &Interaction,
    long_value: &dyn Fn(&str) -> Option<String>,
) -> Result<Parsed, String> {
    match interaction {
        Interaction::Ping(_) => Ok(Parsed::Ping),
        Interaction::Autocomplete(command) => match commands::focused(&command.data) {
            Some((command, option, typed)) => Ok(Parsed::Autocomplete { command, option, typed }),
            None => Ok(Parsed::Ignored("autocomplete without a focused option".to_string())),
        },
        Interaction::Command(command) => parse_command(command),
        Interaction::Component(click) => {
            if !matches!(click.data.kind, ComponentInteractionDataKind::Button) {
                return Ok(Parsed::Ignored("a component that is not a button".to_string()));
            }
            let (action, value) = render::parse_custom_id(&click.data.custom_id);
            let value = match value {
                Ok(value) => value,
                Err(key) => long_value(&key).unwrap_or_default(),
            };
            let (origin, message) = clicked(
                person(click.member.as_ref(), &click.user),
                &place(click.channel.as_ref(), &click.channel_id.to_string()),
                Some((&click.message.id.to_string(), click.message.flags)),
            );
            let event = ChatEvent::Button { origin, action, value, message };
            Ok(Parsed::Event { event, source: Source::Button })
        }
        Interaction::Modal(form) => {
            let (action, value) = render::parse_custom_id(&form.data.custom_id);
            let mut fields = BTreeMap::new();
            for input in form.data.components.iter().flat_map(|row| &row.components) {
                if let ActionRowComponent::InputText(input) = input
                    && let Some(text) = &input.value
                {
                    fields.insert(input.custom_id.clone(), text.clone());
                }
            }
            let user = person(form.member.as_ref(), &form.user);
            let place = place(form.channel.as_ref(), &form.channel_id.to_string());
            let on_message = form.message.is_some();
            let origin = match &form.message {
                Some(message) => clicked(user, &place, Some((&message.id.to_string(), message.flags))).0,
                None => origin(&user, &place.0, place.1.as_deref()),
            };
            let event = ChatEvent::FormSubmitted { origin, action, value: value.unwrap_or_default(), fields };
            Ok(Parsed::Event { event, source: Source::Form { on_message } })
        }
        other => Ok(Parsed::Ignored(format!("interaction {:?}", other.kind()))),
    }
}

fn parse_command(command: &CommandInteraction) -> Result<Parsed, String> {
    if command.data.kind != CommandType::ChatInput {
        return Ok(Parsed::Ignored("a user or message command".to_string()));
    }
    let text = commands::command_text(&command.data);
    let (channel, thread) = place(command.channel.as_ref(), &command.channel_id.to_string());
    let event = ChatEvent::Command {
        origin: origin(&person(command.member.as_deref(), &command.user), &channel, thread.as_deref()),
        text: text.clone(),
    };
    Ok(Parsed::Event { event, source: Source::Command(text) })
}

/// The person: `member.user` in a server, `user` in a direct message.
fn person(member: Option<&Member>, user: &User) -> String {
    member.map_or(user.id, |member| member.user.id).to_string()
}

/// Where the interaction happened: (channel, thread). Inside a thread, the channel is the
/// thread's parent and the thread is the thread's id (see the module docs of `discord`).
fn place(channel: Option<&PartialChannel>, channel_id: &str) -> (String, Option<String>) {
    let thread = channel.filter(|channel| {
        matches!(channel.kind, ChannelType::PublicThread | ChannelType::PrivateThread | ChannelType::NewsThread)
    });
    match thread.and_then(|thread| thread.parent_id) {
        Some(parent) => (parent.to_string(), Some(channel_id.to_string())),
        None => (channel_id.to_string(), None),
    }
}

/// The origin of a click (or of a modal opened by one), and the message clicked on (its id and
/// flags). A message in a channel is its own thread's start; a message in a thread belongs to
/// that thread.
fn clicked(
    person: String,
    (channel, thread): &(String, Option<String>),
    message: Option<(&String, Option<MessageFlags>)>,
) -> (Origin, Option<MessageRef>) {
    let ephemeral = message.and_then(|(_, flags)| flags).is_some_and(|flags| flags.contains(MessageFlags::EPHEMERAL));
    let (thread, reference) = match (thread, message) {
        (Some(thread), Some((message, _))) => {
            let reference = MessageRef { channel: channel.clone(), id: format!("{thread}/{message}") };
            (Some(thread.clone()), Some(reference))
        }
        (None, Some((message, _))) => {
            (Some(message.clone()), Some(MessageRef { channel: channel.clone(), id: message.clone() }))
        }
        (thread, None) => (thread.clone(), None),
    };
    let reference = reference.filter(|_| !ephemeral);
    (origin(&person, channel, thread.as_deref()), reference)
}

fn origin(user: &str, channel: &str, thread: Option<&str>) -> Origin {
    Origin::new("discord", user, channel, thread)
}

/// The first answer to an interaction, or that it was already handled.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    /// The interaction response.
    Respond(Box<CreateInteractionResponse>),
    /// Discord delivered this interaction before; nothing was done again.
    Repeated,
}

impl Answer {
    fn respond(response: CreateInteractionResponse) -> Self {
        Answer::Respond(Box::new(response))
    }
}

/// Answers interactions for one application: hands events to the handler and applies Discord's
/// rules for answering them.
#[derive(Clone)]
pub(crate) struct Responder {
    handler: Arc<dyn ChatHandler>,
    adapter: Arc<DiscordAdapter>,
    catalogue: Arc<Catalogue>,
    ack_deadline: Duration,
}

impl Responder {
    pub(crate) fn new(handler: Arc<dyn ChatHandler>, adapter: Arc<DiscordAdapter>, catalogue: Arc<Catalogue>) -> Self {
        Responder { handler, adapter, catalogue, ack_deadline: ACK_DEADLINE }
    }

    pub(crate) fn adapter(&self) -> &Arc<DiscordAdapter> {
        &self.adapter
    }

    /// The first answer to `interaction`. Work that outlasts the deadline is acknowledged with
    /// a deferral and finished through the interaction's webhook.
    pub(crate) async fn answer(&self, interaction: &Interaction) -> Result<Answer, String> {
        let adapter = self.adapter.clone();
        let parsed = parse_interaction(interaction, &|key| adapter.long_value(key))?;
        let (event, source) = match parsed {
            Parsed::Ping => return Ok(Answer::respond(CreateInteractionResponse::Pong)),
            Parsed::Autocomplete { command, option, typed } => {
                let choices = commands::autocomplete(&self.catalogue, &command, &option, &typed);
                return Ok(Answer::respond(CreateInteractionResponse::Autocomplete(
                    CreateAutocompleteResponse::new().set_choices(choices),
                )));
            }
            Parsed::Ignored(kind) => {
                tracing::debug!(kind, "Ignored a Discord interaction");
                return Ok(Answer::respond(ephemeral_text("firebell does not act on this.")));
            }
            Parsed::Event { event, source } => (event, source),
        };
        let id = interaction.id().to_string();
        if !self.handler.first_seen(&format!("discord:interaction:{id}")).await {
            tracing::info!(interaction = id, "Discord delivered an interaction again; it was already handled");
            return Ok(Answer::Repeated);
        }
        let token = interaction.token().to_string();
        let reply = match ack::within_deadline(&self.handler, event, self.ack_deadline, "discord").await {
            Ok(reply) => reply,
            Err(late) => {
                self.finish_late(late, token, source.clone());
                return Ok(Answer::respond(deferral(&source)));
            }
        };
        Ok(Answer::respond(match (reply, &source) {
            // A modal is only ever the first answer to a command or a click.
            (Reply::Form(form), Source::Command(_) | Source::Button) => {
                CreateInteractionResponse::Modal(render::render_modal(&form))
            }
            (Reply::Form(form), Source::Form { .. }) => ephemeral_text(&form.instead),
            (Reply::Private(message), _) => self.private(&message),
            (Reply::Nothing, Source::Command(text)) => ephemeral_text(&format!("✓ `{}`", render::clip(text, 1_900))),
            (Reply::Nothing, Source::Button | Source::Form { on_message: true }) => {
                CreateInteractionResponse::Acknowledge
            }
            (Reply::Nothing, Source::Form { on_message: false }) => ephemeral_text("✓ Submitted."),
        }))
    }

    /// An ephemeral message as an interaction response (cut to fit; no attachment).
    fn private(&self, message: &Message) -> CreateInteractionResponse {
        CreateInteractionResponse::Message(self.adapter.rendered(message).interaction_message().ephemeral(true))
    }

    /// Delivers the core's late answer through the interaction's webhook: an edit of the
    /// deferred answer, or a follow-up after a deferred click.
    fn finish_late(&self, late: JoinHandle<Reply>, token: String, source: Source) {
        let responder = self.clone();
        tokio::spawn(async move {
            let reply = match ack::late(late, "discord").await {
                Reply::Form(form) => Reply::private(format!("The form could not open in time; {}", form.instead)),
                reply => reply,
            };
            let adapter = &responder.adapter;
            let result = match (reply, &source) {
                (Reply::Private(message), Source::Button | Source::Form { on_message: true }) => {
                    adapter.follow_up(&token, &adapter.rendered(&message).followup().ephemeral(true)).await
                }
                (Reply::Private(message), _) => {
                    adapter.edit_original(&token, &adapter.rendered(&message).edit_response()).await
                }
                (Reply::Nothing, Source::Command(text)) => {
                    let data = EditInteractionResponse::new().content(format!("✓ `{}`", render::clip(text, 1_900)));
                    adapter.edit_original(&token, &data).await
                }
                (Reply::Nothing, Source::Form { on_message: false }) => {
                    adapter.edit_original(&token, &EditInteractionResponse::new().content("✓ Submitted.")).await
                }
                (Reply::Nothing | Reply::Form(_), _) => Ok(()),
            };
            if let Err(error) = result {
                tracing::warn!(%error, "Could not deliver a late answer to a Discord interaction");
            }
        });
    }
}

/// The answer that buys time: "thinking…" for commands and forms, a silent acknowledgement for
/// clicks.
fn deferral(source: &Source) -> CreateInteractionResponse {
    match source {
        Source::Button | Source::Form { on_message: true } => CreateInteractionResponse::Acknowledge,
        _ => CreateInteractionResponse::Defer(CreateInteractionResponseMessage::new().ephemeral(true)),
    }
}

/// A short message only the person who interacted sees.
pub(crate) fn ephemeral_text(text: &str) -> CreateInteractionResponse {
    CreateInteractionResponse::Message(
        CreateInteractionResponseMessage::new()
            .content(render::clip(text, render::MAX_CONTENT))
            .ephemeral(true)
            .allowed_mentions(render::no_mentions()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn no_long_values(_: &str) -> Option<String> {
        None
    }

    /// A user object as Discord sends it.
    fn user(id: &str) -> Value {
        json!({"id": id, "username": format!("user{id}"), "discriminator": "0", "global_name": null, "avatar": null})
    }

    /// A guild member as Discord sends it in an interaction.
    fn member(id: &str) -> Value {
        json!({"user": user(id), "roles": [], "joined_at": "2026-01-01T00:00:00.000000+00:00", "deaf": false,
               "mute": false, "flags": 0, "permissions": "2248473465835073"})
    }

    /// A message as Discord sends it with a click.
    fn message_json(id: &str, flags: u64) -> Value {
        json!({"id": id, "channel_id": "900", "author": user("4242"), "content": "", "timestamp":
               "2026-11-22T10:00:00.000000+00:00", "edited_timestamp": null, "tts": false, "mention_everyone": false,
               "mentions": [], "mention_roles": [], "attachments": [], "embeds": [], "pinned": false, "type": 0,
               "flags": flags, "components": []})
    }

    /// `fields` with what Discord sends in every interaction, as serenity reads it.
    fn interaction(fields: Value) -> Interaction {
        let mut interaction = json!({
            "application_id": "4242", "token": "interaction-token", "version": 1, "guild_id": "800",
            "member": member("111"), "locale": "en-US", "guild_locale": "en-US", "entitlements": [],
            "authorizing_integration_owners": {"0": "800"}, "context": 0, "attachment_size_limit": 10_485_760,
            "app_permissions": "2248473465835073",
        });
        for (key, value) in fields.as_object().expect("an object") {
            interaction[key] = value.clone();
        }
        if let Some(channel) = interaction.get("channel").cloned() {
            interaction["channel_id"] = channel["id"].clone();
        }
        parse_value(interaction).expect("an interaction as Discord sends it")
    }

    fn command_in(channel: Value) -> Interaction {
        interaction(json!({
            "id": "1300000000000000001", "type": 2, "channel": channel,
            "data": {"id": "55", "name": "diagnose", "type": 1, "options": [{"name": "topic", "type": 3, "value": "queue"}]}
        }))
    }

    #[test]
    fn a_command_in_a_channel_and_in_a_thread() {
        let parsed = parse_interaction(&command_in(json!({"id": "900", "type": 0})), &no_long_values).unwrap();
        let Parsed::Event { event: ChatEvent::Command { origin, text }, source } = parsed else { panic!("a command") };
        assert_eq!(text, "/diagnose queue");
        assert_eq!(source, Source::Command("/diagnose queue".into()));
        assert_eq!((origin.channel.as_str(), origin.thread.as_deref()), ("900", None));
        assert_eq!(origin.user.to_string(), "discord:111");

        let in_thread = command_in(json!({"id": "1001", "type": 11, "parent_id": "900"}));
        let Parsed::Event { event: ChatEvent::Command { origin, .. }, .. } =
            parse_interaction(&in_thread, &no_long_values).unwrap()
        else {
            panic!("a command")
        };
        assert_eq!((origin.channel.as_str(), origin.thread.as_deref()), ("900", Some("1001")));
    }

    #[test]
    fn a_command_in_a_direct_message_names_the_user() {
        let mut direct = json!({
            "id": "1300000000000000001", "type": 2, "application_id": "4242", "token": "t", "version": 1,
            "channel_id": "700", "channel": {"id": "700", "type": 1}, "user": user("222"), "locale": "en-US",
            "entitlements": [], "context": 1, "attachment_size_limit": 10_485_760,
            "data": {"id": "55", "name": "oncall", "type": 1}
        });
        direct["authorizing_integration_owners"] = json!({"0": "800"});
        let interaction = parse_value(direct).unwrap();
        let Parsed::Event { event: ChatEvent::Command { origin, .. }, .. } =
            parse_interaction(&interaction, &no_long_values).unwrap()
        else {
            panic!("a command")
        };
        assert_eq!(origin.user.id, "222");
    }

    fn click(channel: Value, message: Value, custom_id: &str) -> Interaction {
        interaction(json!({
            "id": "1300000000000000002", "type": 3, "channel": channel, "message": message,
            "data": {"component_type": 2, "custom_id": custom_id}
        }))
    }

    #[test]
    fn clicks_know_their_message_and_thread() {
        let on_notification = click(json!({"id": "900", "type": 0}), message_json("1001", 0), "incident_ack:7");
        let Parsed::Event { event: ChatEvent::Button { origin, action, value, message, .. }, source } =
            parse_interaction(&on_notification, &no_long_values).unwrap()
        else {
            panic!("a click")
        };
        assert_eq!((action.as_str(), value.as_str(), source), ("incident_ack", "7", Source::Button));
        assert_eq!(origin.thread.as_deref(), Some("1001"), "the notification starts the incident's thread");
        assert_eq!(message, Some(MessageRef { channel: "900".into(), id: "1001".into() }));

        let in_thread = click(
            json!({"id": "1001", "type": 11, "parent_id": "900"}),
            message_json("1005", 0),
            "remediation_approve:12",
        );
        let Parsed::Event { event: ChatEvent::Button { origin, message, .. }, .. } =
            parse_interaction(&in_thread, &no_long_values).unwrap()
        else {
            panic!("a click")
        };
        assert_eq!((origin.channel.as_str(), origin.thread.as_deref()), ("900", Some("1001")));
        assert_eq!(message, Some(MessageRef { channel: "900".into(), id: "1001/1005".into() }));

        let ephemeral = click(json!({"id": "900", "type": 0}), message_json("1009", 64), "diagnose:queue");
        let Parsed::Event { event: ChatEvent::Button { message, .. }, .. } =
            parse_interaction(&ephemeral, &no_long_values).unwrap()
        else {
            panic!("a click")
        };
        assert_eq!(message, None, "an ephemeral message cannot be edited through its channel");
    }

    #[test]
    fn long_values_are_looked_up_and_unknown_ones_come_back_empty() {
        let (custom_id, kept) = render::custom_id("remediate", &"x".repeat(150), 1);
        let (key, value) = kept.unwrap();
        let interaction = click(json!({"id": "900", "type": 0}), message_json("1", 0), &custom_id);
        let lookup = |asked: &str| (asked == key).then(|| value.clone());
        let Parsed::Event { event: ChatEvent::Button { value: found, .. }, .. } =
            parse_interaction(&interaction, &lookup).unwrap()
        else {
            panic!("a click")
        };
        assert_eq!(found, "x".repeat(150));
        let Parsed::Event { event: ChatEvent::Button { value: lost, .. }, .. } =
            parse_interaction(&interaction, &no_long_values).unwrap()
        else {
            panic!("a click")
        };
        assert_eq!(lost, "");
    }

    #[test]
    fn modal_submissions_carry_their_inputs() {
        let interaction = interaction(json!({
            "id": "1300000000000000003", "type": 5,
            "channel": {"id": "1001", "type": 11, "parent_id": "900"},
            "data": {"custom_id": "resolve_form:7", "components": [
                {"type": 1, "components": [{"type": 4, "custom_id": "root_cause", "value": "a lock"}]},
                {"type": 1, "components": [{"type": 4, "custom_id": "fix", "value": ""}]},
                {"type": 1, "components": [{"type": 4, "custom_id": "prevention", "value": "alert on it"}]}
            ]}
        }));
        let Parsed::Event { event: ChatEvent::FormSubmitted { origin, action, value, fields }, source } =
            parse_interaction(&interaction, &no_long_values).unwrap()
        else {
            panic!("a form")
        };
        assert_eq!((action.as_str(), value.as_str()), ("resolve_form", "7"));
        assert_eq!(origin.thread.as_deref(), Some("1001"));
        assert_eq!(fields["root_cause"], "a lock");
        assert_eq!(fields["fix"], "");
        assert_eq!(fields["prevention"], "alert on it");
        assert_eq!(source, Source::Form { on_message: false });
    }

    /// A handler that answers after `delay`.
    struct SlowHandler {
        delay: Duration,
        reply: Reply,
        seen: std::sync::Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl ChatHandler for SlowHandler {
        async fn handle(&self, _event: ChatEvent) -> Reply {
            tokio::time::sleep(self.delay).await;
            self.reply.clone()
        }

        async fn first_seen(&self, key: &str) -> bool {
            let mut seen = self.seen.lock().unwrap();
            if seen.iter().any(|earlier| earlier == key) {
                return false;
            }
            seen.push(key.to_string());
            true
        }
    }

    fn responder(delay: Duration, reply: Reply) -> Responder {
        // Late answers go nowhere here (port 9 refuses); what is tested is the first answer.
        let adapter = Arc::new(
            DiscordAdapter::with_api_url(
                &crate::config::Secret::new("t"),
                "http://127.0.0.1:9/api/",
                "4242",
                None,
                None,
            )
            .unwrap(),
        );
        let handler = SlowHandler { delay, reply, seen: Default::default() };
        let mut responder = Responder::new(Arc::new(handler), adapter, Arc::new(Catalogue::default()));
        responder.ack_deadline = Duration::from_millis(100);
        responder
    }

    fn response(answer: Answer) -> Value {
        match answer {
            Answer::Respond(response) => serde_json::to_value(response).unwrap(),
            Answer::Repeated => panic!("answered as a repeat"),
        }
    }

    #[tokio::test]
    async fn a_slow_core_is_deferred_within_the_deadline() {
        let slow = responder(Duration::from_millis(400), Reply::Nothing);
        // A deferral (type 5) is only ever the answer when the handler has not finished.
        let deferred = response(slow.answer(&command_in(json!({"id": "900", "type": 0}))).await.unwrap());
        assert_eq!(deferred, json!({"type": 5, "data": {"flags": 64, "attachments": []}}));
        let click = click(json!({"id": "900", "type": 0}), message_json("1", 0), "incident_ack:7");
        assert_eq!(response(slow.answer(&click).await.unwrap()), json!({"type": 6, "data": null}));
    }

    #[tokio::test]
    async fn replies_forms_and_repeats() {
        let private = responder(Duration::ZERO, Reply::private("only you see this"));
        let interaction = command_in(json!({"id": "900", "type": 0}));
        let answer = response(private.answer(&interaction).await.unwrap());
        assert_eq!((answer["type"].clone(), answer["data"]["flags"].clone()), (json!(4), json!(64)));
        assert_eq!(answer["data"]["content"], "only you see this");
        assert!(matches!(private.answer(&interaction).await.unwrap(), Answer::Repeated));

        let form = crate::chat::Form {
            title: "Resolve incident #7".into(),
            submit: "Resolve".into(),
            action: "resolve_form".into(),
            value: "7".into(),
            fields: vec![crate::chat::FormField {
                id: "root_cause".into(),
                label: "Root cause".into(),
                multiline: true,
                optional: false,
            }],
            instead: "resolve with: /incident resolve id=7 root_cause=…".into(),
        };
        let modal = responder(Duration::ZERO, Reply::Form(form));
        let click = click(json!({"id": "900", "type": 0}), message_json("1", 0), "incident_resolve:7");
        let answer = response(modal.answer(&click).await.unwrap());
        assert_eq!(answer["type"], 9);
        assert_eq!(answer["data"]["custom_id"], "resolve_form:7");

        let acknowledged = responder(Duration::ZERO, Reply::Nothing);
        let answer = response(acknowledged.answer(&command_in(json!({"id": "900", "type": 0}))).await.unwrap());
        assert_eq!(answer["data"]["content"], "✓ `/diagnose queue`");
        let ping = parse(br#"{"type": 1, "id": "5", "application_id": "4242", "token": "t", "version": 1}"#).unwrap();
        assert_eq!(response(acknowledged.answer(&ping).await.unwrap()), json!({"type": 1, "data": null}));
    }

    #[test]
    fn pings_autocomplete_and_the_rest() {
        let ping = parse(br#"{"type": 1, "id": "1", "application_id": "4242", "token": "t", "version": 1}"#).unwrap();
        assert!(matches!(parse_interaction(&ping, &no_long_values).unwrap(), Parsed::Ping));
        let typing = interaction(json!({"type": 4, "id": "2", "channel": {"id": "900", "type": 0},
            "data": {"id": "55", "name": "diagnose", "type": 1, "options": [
                {"name": "topic", "type": 3, "value": "que", "focused": true}]}}));
        assert!(matches!(
            parse_interaction(&typing, &no_long_values).unwrap(),
            Parsed::Autocomplete { command, option, typed } if command == "diagnose" && option == "topic" && typed == "que"
        ));
        let select = interaction(json!({"type": 3, "id": "3", "channel": {"id": "900", "type": 0},
            "message": message_json("1", 0), "data": {"component_type": 3, "custom_id": "x", "values": ["a"]}}));
        assert!(matches!(parse_interaction(&select, &no_long_values).unwrap(), Parsed::Ignored(_)));
        let user_command = interaction(json!({"type": 2, "id": "4", "channel": {"id": "900", "type": 0},
            "data": {"id": "56", "name": "Page them", "type": 2, "target_id": "111"}}));
        assert!(matches!(parse_interaction(&user_command, &no_long_values).unwrap(), Parsed::Ignored(_)));
        assert!(parse(br#"{"id": "4"}"#).is_err(), "an interaction needs a type");
        assert!(parse(b"not json").is_err());
    }
}
