//! The chat driver: what people do on a chat platform and what they see there, in words that fit
//! every platform, so a story is written once and runs on each (`tests/chat_stories.rs`).
//!
//! A [`Driver`] starts the real app connected to its platform (the fake Slack, the fake
//! Discord, or the web console the app always serves), and then a person types a command in a
//! channel or a thread, clicks the button labelled X on a message, fills in and submits the
//! form a click opened; and the story reads the bot's messages of a channel or a thread as they
//! stand now, the instants each message was changed at (to check edit pacing), the private
//! replies a person got, and the files uploaded. Everything platform-specific — signatures,
//! payload shapes, ids, markup — stays inside the implementations.
//!
//! A new platform (Teams, Mattermost, Matrix) implements [`Driver`] over its fake and adds one
//! line to the `on_every_platform!` macro of the story file.
//!
//! Include it with `#[path = "support/driver.rs"] mod driver;` beside `mod support;`,
//! `mod fake_slack;`, `mod fake_discord;` and `mod slack_e2e_support;`.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde_json::{Value, json};

use crate::fake_discord::app::{DiscordApp, Place as DiscordPlace};
use crate::fake_slack::StoredMessage as SlackMessage;
use crate::slack_e2e_support::SlackApp;
use crate::support::app::{AppBuilder, RunningApp, Workspace, toml_str};
use crate::support::wait::eventually;

/// The people of the stories; each platform gives them ids of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Person {
    Alice,
    Bob,
    Carol,
}

impl Person {
    pub const ALL: [Person; 3] = [Person::Alice, Person::Bob, Person::Carol];

    fn index(self) -> usize {
        self as usize
    }
}

/// Where something is said: a channel, or the thread under one of its messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The platform's id of the channel.
    pub channel: String,
    /// The id of the thread's first message.
    pub thread: Option<String>,
}

impl Place {
    /// The top level of `channel`.
    pub fn channel(channel: &str) -> Place {
        Place { channel: channel.to_string(), thread: None }
    }
}

/// One of the bot's messages, as people see it when it is read.
#[derive(Debug, Clone)]
pub struct Shown {
    /// The platform's id of the message.
    pub id: String,
    pub place: Place,
    /// What a person reads, markup left out (`*OK*` reads `OK`).
    pub text: String,
    /// The labels of its buttons, in order.
    pub buttons: Vec<String>,
    /// The platform's message as it was read: a click is on the message as the person saw it
    /// (a late click on buttons since removed is a thing people do).
    seen: Value,
}

impl Shown {
    /// The thread under this message.
    pub fn thread(&self) -> Place {
        Place { channel: self.place.channel.clone(), thread: Some(self.id.clone()) }
    }

    /// The lines of its text.
    pub fn lines(&self) -> Vec<&str> {
        self.text.lines().collect()
    }
}

/// A post or an edit of a message, as the platform recorded it.
#[derive(Debug, Clone)]
pub struct Change {
    /// How long after the post the platform received it.
    pub after: Duration,
    /// What the message showed from then on.
    pub text: String,
}

/// A form the app opened for someone (Slack's modal, Discord's modal, the console's form).
#[derive(Debug, Clone)]
pub struct FormShown {
    pub title: String,
    /// The ids of its fields, in order.
    pub fields: Vec<String>,
    /// What the platform needs to submit it.
    handle: Value,
}

/// A file the bot uploaded.
#[derive(Debug, Clone)]
pub struct Upload {
    pub place: Place,
    pub name: String,
    pub content: String,
}

/// A chat platform, driven as people use it. Every action waits until the platform took it
/// (its answer arrived), not until the app has done what it asked: stories wait for what they
/// expect to see with [`Driver::wait_message`] and friends.
#[async_trait]
pub trait Driver: Sized + Send + Sync {
    /// `platform:id` of a person, as `[groups]` and the API write it.
    fn person(who: Person) -> String;

    /// How a message that mentions `who` shows the mention.
    fn mention(who: Person) -> String;

    /// The app on this platform with the runbooks in `workspace`; `rest` (groups, permissions,
    /// targets) follows the platform's own section of the config.
    async fn start(workspace: Workspace, rest: &str) -> Self;

    fn app(&self) -> &RunningApp;

    /// The channel people type commands in.
    fn ops(&self) -> Place;

    /// The channel incident notifications go to.
    fn incidents(&self) -> Place;

    /// `who` types `text` (`/diagnose disk`, `/incident declare …`) in `place`.
    async fn type_command(&self, who: Person, place: &Place, text: &str);

    /// `who` clicks the button labelled `label` on `message`.
    async fn click(&self, who: Person, message: &Shown, label: &str);

    /// The next form opened for `who` (by a click or a command), once it is open.
    async fn form(&self, who: Person) -> FormShown;

    /// `who` fills in `form` with `fields` (field id → text) and submits it.
    async fn submit(&self, who: Person, form: &FormShown, fields: &[(&str, &str)]);

    /// The bot's messages in `place`, oldest first, as they stand now (for a channel, its top
    /// level; for a thread, the replies under its first message).
    async fn messages(&self, place: &Place) -> Vec<Shown>;

    /// Each change of `message` as the platform recorded it: the post first (at zero), then
    /// every edit, with what it showed.
    async fn changes(&self, message: &Shown) -> Vec<Change>;

    /// Everything said to `who` privately so far (ephemeral replies), oldest first.
    async fn private_replies(&self, who: Person) -> Vec<String>;

    /// The files uploaded into `place`.
    async fn uploads(&self, place: &Place) -> Vec<Upload>;

    /// Whatever the platform's fake noticed the app doing wrong (calls the platform would
    /// refuse) fails the test here.
    fn assert_no_platform_errors(&self) {}

    async fn stop(self);

    /// `message` as it stands now.
    async fn current(&self, message: &Shown) -> Shown {
        self.messages(&message.place)
            .await
            .into_iter()
            .find(|candidate| candidate.id == message.id)
            .unwrap_or_else(|| panic!("message {} is gone from {:?}", message.id, message.place))
    }

    /// Waits for a message in `place` that satisfies `condition`.
    async fn wait_message(
        &self,
        what: &str,
        place: &Place,
        condition: impl for<'m> Fn(&'m Shown) -> bool + Send + Sync,
    ) -> Shown {
        let messages = eventually(what, || self.messages(place), |messages| messages.iter().any(&condition)).await;
        messages.into_iter().find(|message| condition(message)).expect("the message is there")
    }

    /// Waits until `message` satisfies `condition`.
    async fn wait_until(
        &self,
        what: &str,
        message: &Shown,
        condition: impl for<'m> Fn(&'m Shown) -> bool + Send + Sync,
    ) -> Shown {
        self.wait_message(what, &message.place, |candidate| candidate.id == message.id && condition(candidate)).await
    }

    /// Waits for a private reply to `who` that satisfies `condition`.
    async fn wait_private(
        &self,
        what: &str,
        who: Person,
        condition: impl for<'m> Fn(&'m str) -> bool + Send + Sync,
    ) -> String {
        let replies =
            eventually(what, || self.private_replies(who), |replies| replies.iter().any(|reply| condition(reply)))
                .await;
        replies.into_iter().find(|reply| condition(reply)).expect("the reply is there")
    }

    /// `GET path` of the app's JSON API.
    async fn api(&self, path: &str) -> Value {
        self.app().get_json(path).await
    }
}

/// What a person reads of marked-up text: Slack's entities as the characters they stand for,
/// emphasis marks (`*`, `**`) left out.
fn plain(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&").replace('*', "")
}

/// Splits a typed command into words the way a person means them: double quotes group words.
fn words(text: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut started = false;
    for character in text.chars() {
        match character {
            '"' => {
                quoted = !quoted;
                started = true;
            }
            ' ' if !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                }
                started = false;
            }
            _ => {
                word.push(character);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// What was said privately to whom, in the answers to their own actions.
#[derive(Default)]
struct Said(Mutex<Vec<(Person, String)>>);

impl Said {
    fn push(&self, who: Person, text: String) {
        self.0.lock().expect("private replies").push((who, text));
    }

    fn to(&self, who: Person) -> Vec<String> {
        let said = self.0.lock().expect("private replies");
        said.iter().filter(|(person, _)| *person == who).map(|(_, text)| text.clone()).collect()
    }
}

/// Forms opened, in order, with whom each was opened for (where the platform says).
#[derive(Default)]
struct Forms {
    opened: Vec<(Option<Person>, FormShown)>,
    taken: usize,
}

// ---------------------------------------------------------------------------------------------
// Slack

/// Slack: signed slash commands (or a mention, inside a thread), signed clicks and modal
/// submissions against the fake Slack Web API.
pub struct SlackDriver {
    pub slack: SlackApp,
    /// Private answers to slash commands, which come in the command's own answer.
    answered: Said,
    forms_taken: Mutex<usize>,
}

const SLACK_PEOPLE: [&str; 3] = ["U0001", "U0002", "U0003"];

impl SlackDriver {
    fn user(who: Person) -> &'static str {
        SLACK_PEOPLE[who.index()]
    }

    fn shown(message: &SlackMessage) -> Shown {
        let thread = message.thread_ts.clone().filter(|thread| *thread != message.ts);
        Shown {
            id: message.ts.clone(),
            place: Place { channel: message.channel.clone(), thread },
            text: plain(&message.visible_text()),
            buttons: crate::slack_e2e_support::button_labels(message),
            seen: json!({"text": message.text, "blocks": message.blocks, "thread_ts": message.thread_ts}),
        }
    }

    fn stored(&self, message: &Shown) -> SlackMessage {
        self.slack.fake.message(&message.place.channel, &message.id).expect("the message is in the fake Slack")
    }

    /// `message` as the person saw it when it was read.
    fn as_seen(message: &Shown) -> SlackMessage {
        SlackMessage {
            channel: message.place.channel.clone(),
            ts: message.id.clone(),
            thread_ts: message.seen["thread_ts"].as_str().map(str::to_string),
            text: message.seen["text"].as_str().unwrap_or_default().to_string(),
            blocks: message.seen["blocks"].clone(),
            edits: 0,
            posted_at: std::time::Instant::now(),
        }
    }
}

#[async_trait]
impl Driver for SlackDriver {
    fn person(who: Person) -> String {
        format!("slack:{}", SlackDriver::user(who))
    }

    fn mention(who: Person) -> String {
        format!("<@{}>", SlackDriver::user(who))
    }

    async fn start(workspace: Workspace, rest: &str) -> Self {
        SlackDriver {
            slack: crate::slack_e2e_support::spawn(workspace, rest).await,
            answered: Said::default(),
            forms_taken: Mutex::default(),
        }
    }

    fn app(&self) -> &RunningApp {
        &self.slack.app
    }

    fn ops(&self) -> Place {
        Place::channel(crate::slack_e2e_support::OPS)
    }

    fn incidents(&self) -> Place {
        Place::channel(crate::slack_e2e_support::INCIDENTS)
    }

    async fn type_command(&self, who: Person, place: &Place, text: &str) {
        let user = SlackDriver::user(who);
        // Slash commands carry no thread: in a thread, people mention the bot.
        let answer = match &place.thread {
            Some(thread) => {
                self.slack.mention_in_thread(user, &place.channel, thread, text.trim_start_matches('/')).await
            }
            None => {
                let (command, rest) = text.split_once(' ').unwrap_or((text, ""));
                self.slack.slash(user, &place.channel, command, rest).await
            }
        };
        assert_eq!(answer.status, 200, "Slack's request for {text:?} was refused: {answer:?}");
        if !answer.body.is_empty() {
            let reply = answer.json();
            assert_eq!(reply["response_type"], "ephemeral", "a command's answer is private: {reply}");
            let said = reply["text"].as_str().unwrap_or_default().to_string();
            self.answered.push(who, said);
        }
    }

    async fn click(&self, who: Person, message: &Shown, label: &str) {
        let answer = self.slack.click(SlackDriver::user(who), &SlackDriver::as_seen(message), label).await;
        assert_eq!((answer.status, answer.body.as_str()), (200, ""), "a click is acknowledged empty: {answer:?}");
    }

    async fn form(&self, _who: Person) -> FormShown {
        let taken = *self.forms_taken.lock().expect("forms");
        let views =
            eventually("a modal to open", || async { self.slack.fake.views() }, |views| views.len() > taken).await;
        *self.forms_taken.lock().expect("forms") = taken + 1;
        let view = views[taken].clone();
        let fields = view["blocks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|block| block["block_id"].as_str().map(str::to_string))
            .collect();
        FormShown { title: view["title"]["text"].as_str().unwrap_or_default().to_string(), fields, handle: view }
    }

    async fn submit(&self, who: Person, form: &FormShown, fields: &[(&str, &str)]) {
        let answer = self.slack.submit(SlackDriver::user(who), &form.handle, fields).await;
        assert_eq!((answer.status, answer.body.as_str()), (200, ""), "an empty answer closes the modal: {answer:?}");
    }

    async fn messages(&self, place: &Place) -> Vec<Shown> {
        self.slack
            .fake
            .messages(&place.channel)
            .iter()
            .map(SlackDriver::shown)
            .filter(|shown| shown.place == *place)
            .collect()
    }

    async fn changes(&self, message: &Shown) -> Vec<Change> {
        let stored = self.stored(message);
        // The post is the first one answered in its channel once the message was there.
        let post = self
            .slack
            .fake
            .accepted("chat.postMessage")
            .into_iter()
            .find(|call| call.body["channel"] == stored.channel && call.at >= stored.posted_at)
            .expect("the post of the message");
        let edits = self.slack.fake.accepted("chat.update").into_iter().filter(|call| call.body["ts"] == stored.ts);
        let posted = post.at;
        std::iter::once(post)
            .chain(edits)
            .map(|call| {
                let shown = SlackMessage {
                    text: call.body["text"].as_str().unwrap_or_default().to_string(),
                    blocks: call.body["blocks"].clone(),
                    ..stored.clone()
                };
                Change { after: call.at.duration_since(posted), text: plain(&shown.visible_text()) }
            })
            .collect()
    }

    async fn private_replies(&self, who: Person) -> Vec<String> {
        let user = SlackDriver::user(who);
        let mut replies = self.answered.to(who);
        let text = |body: &Value| plain(body["text"].as_str().unwrap_or_default());
        for (id, body) in self.slack.fake.responses_with_ids() {
            if id.starts_with(&format!("{user}.")) {
                replies.push(text(&body));
            }
        }
        for body in self.slack.fake.ephemerals() {
            if body["user"] == user {
                replies.push(text(&body));
            }
        }
        replies
    }

    async fn uploads(&self, place: &Place) -> Vec<Upload> {
        self.slack
            .fake
            .files()
            .into_iter()
            .map(|file| Upload {
                place: Place { channel: file.channel, thread: file.thread_ts },
                name: file.filename,
                content: String::from_utf8_lossy(&file.content).into_owned(),
            })
            .filter(|upload| upload.place == *place)
            .collect()
    }

    fn assert_no_platform_errors(&self) {
        self.slack.fake.assert_all_accepted();
    }

    async fn stop(self) {
        self.slack.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Discord

/// Discord: signed interactions (slash commands with options, component clicks, modal
/// submissions) on the HTTP endpoint, against the fake Discord API; a thread is the channel
/// Discord starts from a message, with the message's id.
pub struct DiscordDriver {
    pub discord: DiscordApp,
    /// Interactions sent, by id, with who sent them (their follow-ups are theirs too).
    interactions: Mutex<HashMap<String, Person>>,
    /// Private answers given in the interactions' own answers.
    answered: Said,
    forms: Mutex<Forms>,
}

const DISCORD_PEOPLE: [&str; 3] = ["111111111111111111", "222222222222222222", "333333333333333333"];

impl DiscordDriver {
    fn user(who: Person) -> &'static str {
        DISCORD_PEOPLE[who.index()]
    }

    fn place(place: &Place) -> DiscordPlace {
        match &place.thread {
            Some(thread) => DiscordPlace::Thread { id: thread.clone(), parent: place.channel.clone() },
            None => DiscordPlace::Channel(place.channel.clone()),
        }
    }

    /// The channel a message of `place` is in, as Discord counts channels (a thread is one).
    fn channel_of(place: &Place) -> &str {
        place.thread.as_deref().unwrap_or(&place.channel)
    }

    fn shown(&self, message: &crate::fake_discord::StoredMessage) -> Shown {
        let thread = self.discord.fake.threads().into_iter().find(|thread| thread.id == message.channel);
        let place = match thread {
            Some(thread) => Place { channel: thread.parent, thread: Some(thread.id) },
            None => Place { channel: message.channel.clone(), thread: None },
        };
        Shown {
            id: message.id.clone(),
            place,
            text: plain(&message.visible_text()),
            buttons: message.buttons().into_iter().map(|(label, _)| label).collect(),
            seen: json!({
                "channel": message.channel, "content": message.content, "embeds": message.embeds,
                "components": message.components,
            }),
        }
    }

    /// The options Discord sends for `text` typed as its slash command: the grammar's first
    /// word (topic, remediation, title) as its option, the rest as `args` or as options of the
    /// subcommand.
    fn options(text: &str) -> (String, Value) {
        let words = words(text);
        let (name, rest) = words.split_first().expect("a command");
        let name = name.trim_start_matches('/').to_string();
        let option = |name: &str, value: &str| json!({"name": name, "type": 3, "value": value});
        let options = match name.as_str() {
            "diagnose" | "remediate" => {
                let first = if name == "diagnose" { "topic" } else { "action" };
                let mut options = Vec::new();
                if let Some((word, args)) = rest.split_first() {
                    options.push(option(first, word));
                    if !args.is_empty() {
                        options.push(option("args", &args.join(" ")));
                    }
                }
                json!(options)
            }
            "incident" => {
                let (sub, rest) = rest.split_first().expect("an incident subcommand");
                let (named, positional): (Vec<&String>, Vec<&String>) =
                    rest.iter().partition(|word| word.contains('='));
                let mut options: Vec<Value> = named
                    .iter()
                    .map(|word| {
                        let (key, value) = word.split_once('=').expect("key=value");
                        option(key, value)
                    })
                    .collect();
                if !positional.is_empty() {
                    let words: Vec<&str> = positional.iter().map(|word| word.as_str()).collect();
                    options.insert(0, option("title", &words.join(" ")));
                }
                json!([{"name": sub, "type": 1, "options": options}])
            }
            _ => json!(rest.iter().map(|word| option("args", word)).collect::<Vec<_>>()),
        };
        (name, options)
    }

    /// Sends `interaction` as `who` and keeps what it answered: a private reply, or a form.
    async fn send(&self, who: Person, interaction: Value, place: Place, message: Option<String>) {
        let id = interaction["id"].as_str().expect("an interaction id").to_string();
        self.interactions.lock().expect("interactions").insert(id, who);
        let answer = self.discord.send(&interaction).await;
        assert_eq!(answer.status, 200, "Discord's interaction was refused: {answer:?}");
        match answer.kind() {
            4 if answer.is_ephemeral() => self.answered.push(who, plain(&answer.text())),
            9 => {
                let modal = answer.json()["data"].clone();
                let fields = modal["components"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|row| row["components"][0]["custom_id"].as_str().map(str::to_string))
                    .collect();
                let handle =
                    json!({"modal": modal, "channel": place.channel, "thread": place.thread, "message": message});
                let form = FormShown { title: modal["title"].as_str().unwrap_or_default().to_string(), fields, handle };
                self.forms.lock().expect("forms").opened.push((Some(who), form));
            }
            _ => {}
        }
    }
}

#[async_trait]
impl Driver for DiscordDriver {
    fn person(who: Person) -> String {
        format!("discord:{}", DiscordDriver::user(who))
    }

    fn mention(who: Person) -> String {
        format!("<@{}>", DiscordDriver::user(who))
    }

    async fn start(workspace: Workspace, rest: &str) -> Self {
        DiscordDriver {
            discord: crate::fake_discord::app::spawn(workspace, rest).await,
            interactions: Mutex::default(),
            answered: Said::default(),
            forms: Mutex::default(),
        }
    }

    fn app(&self) -> &RunningApp {
        &self.discord.app
    }

    fn ops(&self) -> Place {
        Place::channel(crate::fake_discord::OPS)
    }

    fn incidents(&self) -> Place {
        Place::channel(crate::fake_discord::INCIDENTS)
    }

    async fn type_command(&self, who: Person, place: &Place, text: &str) {
        let (name, options) = DiscordDriver::options(text);
        let interaction =
            crate::fake_discord::app::command(DiscordDriver::user(who), &DiscordDriver::place(place), &name, options);
        self.send(who, interaction, place.clone(), None).await;
    }

    async fn click(&self, who: Person, message: &Shown, label: &str) {
        let seen = crate::fake_discord::StoredMessage {
            id: message.id.clone(),
            channel: message.seen["channel"].as_str().unwrap_or_default().to_string(),
            content: message.seen["content"].as_str().unwrap_or_default().to_string(),
            embeds: message.seen["embeds"].clone(),
            components: message.seen["components"].clone(),
            files: Vec::new(),
            edits: 0,
            posted_at: std::time::Instant::now(),
        };
        let interaction = self.discord.click_interaction(DiscordDriver::user(who), &seen, label);
        self.send(who, interaction, message.place.clone(), Some(message.id.clone())).await;
    }

    async fn form(&self, who: Person) -> FormShown {
        take_form(&self.forms, who).await
    }

    async fn submit(&self, who: Person, form: &FormShown, fields: &[(&str, &str)]) {
        let place = Place {
            channel: form.handle["channel"].as_str().unwrap_or_default().to_string(),
            thread: form.handle["thread"].as_str().map(str::to_string),
        };
        let from = form.handle["message"].as_str().and_then(|id| self.discord.fake.message(id));
        let answer = self
            .discord
            .submit(
                DiscordDriver::user(who),
                &form.handle["modal"],
                fields,
                &DiscordDriver::place(&place),
                from.as_ref(),
            )
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
    }

    async fn messages(&self, place: &Place) -> Vec<Shown> {
        self.discord.fake.messages(DiscordDriver::channel_of(place)).iter().map(|message| self.shown(message)).collect()
    }

    async fn changes(&self, message: &Shown) -> Vec<Change> {
        let stored = self.discord.fake.message(&message.id).expect("the message is in the fake Discord");
        let accepted = |route: String| self.discord.fake.calls_to(&route).into_iter().filter(|call| call.status == 200);
        // The post is the first one answered in its channel once the message was there.
        let post = accepted(format!("POST channels/{}/messages", stored.channel))
            .find(|call| call.path.ends_with("/messages") && call.at >= stored.posted_at)
            .expect("the post of the message");
        let edits = accepted(format!("PATCH channels/{}/messages/{}", stored.channel, stored.id));
        let posted = post.at;
        std::iter::once(post)
            .chain(edits)
            .map(|call| {
                let shown = crate::fake_discord::StoredMessage {
                    content: call.body["content"].as_str().unwrap_or_default().to_string(),
                    embeds: call.body["embeds"].clone(),
                    ..stored.clone()
                };
                Change { after: call.at.duration_since(posted), text: plain(&shown.visible_text()) }
            })
            .collect()
    }

    async fn private_replies(&self, who: Person) -> Vec<String> {
        let mut replies = self.answered.to(who);
        // Follow-ups of deferred answers: `webhooks/{application}/token-{interaction id}`.
        let interactions = self.interactions.lock().expect("interactions").clone();
        for call in self.discord.fake.calls_to("webhooks/") {
            let sender =
                call.path.rsplit('/').find_map(|part| part.strip_prefix("token-")).and_then(|id| interactions.get(id));
            let ephemeral = call.body["flags"].as_u64().is_some_and(|flags| flags & 64 != 0);
            if sender == Some(&who) && ephemeral {
                replies.push(plain(call.body["content"].as_str().unwrap_or_default()));
            }
        }
        replies
    }

    async fn uploads(&self, place: &Place) -> Vec<Upload> {
        self.discord
            .fake
            .messages(DiscordDriver::channel_of(place))
            .into_iter()
            .flat_map(|message| message.files)
            .map(|(name, content)| Upload { place: place.clone(), name, content })
            .collect()
    }

    fn assert_no_platform_errors(&self) {
        self.discord.fake.assert_paced();
    }

    async fn stop(self) {
        self.discord.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// The web console

/// The web console, through the JSON endpoints its page calls, each person signed in with
/// their own `[console] people` token (only a proven person takes part in remediations); the
/// instants of posts and edits come from its server-sent event stream.
pub struct ConsoleDriver {
    pub app: RunningApp,
    csrf: String,
    /// Each person's cookies (CSRF and session).
    sessions: Vec<String>,
    answered: Said,
    forms: Mutex<Forms>,
    /// Every message event, in order.
    events: Arc<Mutex<Vec<Event>>>,
    listening: tokio::task::JoinHandle<()>,
}

/// A post or an edit, as the console's event stream told it.
#[derive(Debug, Clone)]
struct Event {
    message: String,
    posted: DateTime<Utc>,
    edited: Option<DateTime<Utc>>,
    text: String,
}

const CONSOLE_PEOPLE: [&str; 3] = ["alice", "bob", "carol"];

fn console_token(who: Person) -> String {
    format!("{}-console-token-0123456789abcdef", CONSOLE_PEOPLE[who.index()])
}

/// The text a person reads in a message of the console (its neutral blocks).
fn console_text(body: &Value) -> String {
    let mut lines = Vec::new();
    for block in body["blocks"].as_array().into_iter().flatten() {
        match block["type"].as_str().unwrap_or_default() {
            "fields" => {
                for pair in block["fields"].as_array().into_iter().flatten() {
                    lines.push(format!("{}: {}", pair[0].as_str().unwrap_or(""), pair[1].as_str().unwrap_or("")));
                }
            }
            "buttons" | "divider" => {}
            _ => lines.push(block["text"].as_str().unwrap_or_default().to_string()),
        }
    }
    if let Some(file) = body.get("file") {
        lines.push(file["title"].as_str().unwrap_or_default().to_string());
    }
    plain(&lines.join("\n"))
}

fn console_buttons(body: &Value) -> Vec<Value> {
    body["blocks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|block| block["type"] == "buttons")
        .flat_map(|block| block["buttons"].as_array().cloned().unwrap_or_default())
        .collect()
}

fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    crate::support::app::set_cookie(response.headers(), name)
}

impl ConsoleDriver {
    fn cookies(&self, who: Person) -> &str {
        &self.sessions[who.index()]
    }

    /// POSTs `body` to `path` as `who`, as the console's page does; the JSON answer.
    async fn write(&self, who: Person, path: &str, body: Value) -> Value {
        let response = self
            .app
            .client
            .post(self.app.url(path))
            .header(reqwest::header::COOKIE, self.cookies(who))
            .header("x-firebell-csrf", &self.csrf)
            .header("origin", &self.app.base)
            .json(&body)
            .send()
            .await
            .expect("the console answers");
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "the console refused {path} {body}: {answer}");
        answer
    }

    /// Keeps the private reply or the form of an answer.
    fn keep(&self, who: Person, answer: &Value, place: &Place) {
        if answer["reply"].is_object() {
            self.answered.push(who, console_text(&answer["reply"]["body"]));
        }
        if answer["form"].is_object() {
            let form = &answer["form"];
            let fields = form["fields"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|field| field["id"].as_str().map(str::to_string))
                .collect();
            let handle = json!({"form": form, "channel": place.channel, "thread": place.thread});
            let shown = FormShown { title: form["title"].as_str().unwrap_or_default().to_string(), fields, handle };
            self.forms.lock().expect("forms").opened.push((Some(who), shown));
        }
    }

    /// The messages of `channel`, as the page loads them.
    async fn history(&self, channel: &str) -> Vec<Value> {
        let path = format!("/console/history?channel={}", channel.replace('@', "%40"));
        let response = self
            .app
            .client
            .get(self.app.url(&path))
            .header(reqwest::header::COOKIE, self.cookies(Person::Alice))
            .send()
            .await
            .expect("the console answers");
        let history: Value = response.json().await.expect("the history is JSON");
        history["messages"].as_array().cloned().unwrap_or_default()
    }
}

#[async_trait]
impl Driver for ConsoleDriver {
    fn person(who: Person) -> String {
        format!("console:{}", CONSOLE_PEOPLE[who.index()])
    }

    fn mention(who: Person) -> String {
        format!("<@{}>", CONSOLE_PEOPLE[who.index()])
    }

    async fn start(workspace: Workspace, rest: &str) -> Self {
        let people: Vec<String> = Person::ALL
            .iter()
            .map(|who| format!("{} = {}", CONSOLE_PEOPLE[who.index()], toml_str(&console_token(*who))))
            .collect();
        let section = format!("[console]\npeople = {{ {} }}\n", people.join(", "));
        let app = AppBuilder::new(workspace).section(&section).section(rest).spawn().await;
        let login = app.client.get(app.url("/login")).send().await.expect("the sign-in page answers");
        let csrf = set_cookie(&login, "firebell_csrf").expect("a CSRF cookie");
        let mut sessions = Vec::new();
        for who in Person::ALL {
            let name = CONSOLE_PEOPLE[who.index()];
            let response = app
                .client
                .post(app.url("/login"))
                .header(reqwest::header::COOKIE, format!("firebell_csrf={csrf}"))
                .form(&[("name", name), ("token", &console_token(who)), ("csrf", &csrf)])
                .send()
                .await
                .expect("POST /login works");
            assert_eq!(response.status(), 303, "{name} signs in");
            let session = set_cookie(&response, "firebell_session").expect("a session cookie");
            sessions.push(format!("firebell_csrf={csrf}; firebell_session={session}"));
        }
        // The event stream stays open for the whole story, so its client has no timeout.
        let stream = reqwest::Client::new()
            .get(app.url("/console/events"))
            .header(reqwest::header::COOKIE, &sessions[0])
            .send()
            .await
            .expect("the event stream opens");
        assert_eq!(stream.status(), 200);
        let events = Arc::new(Mutex::new(Vec::new()));
        let recorded = events.clone();
        let listening = tokio::spawn(async move {
            let mut bytes = stream.bytes_stream();
            let mut buffer = String::new();
            while let Some(Ok(chunk)) = bytes.next().await {
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let event: String = buffer.drain(..end + 2).collect();
                    let Some(data) = event.lines().find_map(|line| line.strip_prefix("data:")) else { continue };
                    let Ok(message) = serde_json::from_str::<Value>(data.trim()) else { continue };
                    let at = |key: &str| serde_json::from_value::<DateTime<Utc>>(message[key].clone()).ok();
                    if let Some(posted) = at("posted_at") {
                        let text = console_text(&message["body"]);
                        let event = Event { message: message["id"].to_string(), posted, edited: at("edited_at"), text };
                        recorded.lock().expect("events").push(event);
                    }
                }
            }
        });
        ConsoleDriver { app, csrf, sessions, answered: Said::default(), forms: Mutex::default(), events, listening }
    }

    fn app(&self) -> &RunningApp {
        &self.app
    }

    fn ops(&self) -> Place {
        Place::channel("ops")
    }

    fn incidents(&self) -> Place {
        Place::channel("incidents")
    }

    async fn type_command(&self, who: Person, place: &Place, text: &str) {
        let body = json!({"channel": place.channel, "thread": place.thread, "text": text});
        let answer = self.write(who, "/console/command", body).await;
        self.keep(who, &answer, place);
    }

    async fn click(&self, who: Person, message: &Shown, label: &str) {
        let buttons = console_buttons(&message.seen);
        let button = buttons.iter().find(|button| button["label"] == label).unwrap_or_else(|| {
            panic!("no '{label}' button on the message; buttons: {:?}", message.buttons);
        });
        let body = json!({
            "channel": message.place.channel, "thread": message.place.thread, "message": message.id,
            "action": button["action"], "value": button["value"],
        });
        let answer = self.write(who, "/console/button", body).await;
        self.keep(who, &answer, &message.place);
    }

    async fn form(&self, who: Person) -> FormShown {
        take_form(&self.forms, who).await
    }

    async fn submit(&self, who: Person, form: &FormShown, fields: &[(&str, &str)]) {
        let fields: serde_json::Map<String, Value> =
            fields.iter().map(|(id, text)| (id.to_string(), json!(text))).collect();
        let body = json!({
            "channel": form.handle["channel"], "thread": form.handle["thread"],
            "action": form.handle["form"]["action"], "value": form.handle["form"]["value"], "fields": fields,
        });
        let place = Place {
            channel: form.handle["channel"].as_str().unwrap_or_default().to_string(),
            thread: form.handle["thread"].as_str().map(str::to_string),
        };
        let answer = self.write(who, "/console/form", body).await;
        self.keep(who, &answer, &place);
    }

    async fn messages(&self, place: &Place) -> Vec<Shown> {
        self.history(&place.channel)
            .await
            .iter()
            .filter(|message| message["author"] == firebell::chat::console::BOT)
            .map(|message| Shown {
                id: message["id"].to_string(),
                place: Place {
                    channel: message["channel"].as_str().unwrap_or_default().to_string(),
                    thread: message["thread"].as_str().map(str::to_string),
                },
                text: console_text(&message["body"]),
                buttons: console_buttons(&message["body"])
                    .iter()
                    .map(|button| button["label"].as_str().unwrap_or_default().to_string())
                    .collect(),
                seen: message["body"].clone(),
            })
            .filter(|shown| shown.place == *place)
            .collect()
    }

    async fn changes(&self, message: &Shown) -> Vec<Change> {
        let events = self.events.lock().expect("events").clone();
        let mine: Vec<Event> = events.into_iter().filter(|event| event.message == message.id).collect();
        let Some(posted) = mine.first().map(|event| event.posted) else { return Vec::new() };
        mine.into_iter()
            .map(|event| Change {
                after: (event.edited.unwrap_or(event.posted) - posted).to_std().unwrap_or_default(),
                text: event.text,
            })
            .collect()
    }

    async fn private_replies(&self, who: Person) -> Vec<String> {
        self.answered.to(who)
    }

    async fn uploads(&self, place: &Place) -> Vec<Upload> {
        let mut uploads = Vec::new();
        for message in self.history(&place.channel).await {
            let thread = message["thread"].as_str().map(str::to_string);
            if !message["body"]["file"].is_object() || thread != place.thread {
                continue;
            }
            let response = self
                .app
                .client
                .get(self.app.url(&format!("/console/files/{}", message["id"])))
                .header(reqwest::header::COOKIE, self.cookies(Person::Alice))
                .send()
                .await
                .expect("the file downloads");
            uploads.push(Upload {
                place: place.clone(),
                name: message["body"]["file"]["filename"].as_str().unwrap_or_default().to_string(),
                content: response.text().await.expect("the file is text"),
            });
        }
        uploads
    }

    async fn stop(self) {
        self.listening.abort();
        self.app.stop().await;
    }
}

/// The next form opened for `who`, waiting until there is one.
async fn take_form(forms: &Mutex<Forms>, who: Person) -> FormShown {
    let next = || {
        let forms = forms.lock().expect("forms");
        forms.opened.iter().skip(forms.taken).find(|(person, _)| person.is_none_or(|person| person == who)).cloned()
    };
    let (_, form) = eventually("a form to open", || async { next() }, Option::is_some).await.expect("a form");
    forms.lock().expect("forms").taken += 1;
    form
}
