//! Chat: the platform-neutral message model, the [`ChatAdapter`] trait every platform
//! implements, the events platforms hand to the core, and the core that answers them.
//!
//! Flow: a platform's HTTP handler or socket verifies the request, turns it into a
//! [`ChatEvent`], and hands it to the [`platform::ChatHandler`] (the core), which answers at
//! once with a [`Reply`] — nothing, a private message or a form — that the platform sends as its
//! acknowledgement, and does the work in the background through the adapters. Which platforms
//! there are is decided in one place: [`platform::from_config`].

pub mod ack;
mod approvals;
pub mod console;
mod context;
pub mod core;
pub mod deliver;
mod diagnosis;
pub mod discord;
pub mod endpoint;
pub mod grammar;
mod incidents;
pub mod memory;
pub mod message;
pub mod platform;
pub mod slack;
pub mod views;

use std::collections::BTreeMap;
use std::fmt;

pub use diagnosis::{OutputPost, output_post};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use message::{Block, Button, ButtonStyle, FileAttachment, Message};

use crate::config::Person;

/// Where an event came from: who, in which channel, in which thread.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub platform: &'static str,
    pub user: Person,
    pub channel: String,
    /// The thread the command was typed in, if any (its root message id).
    pub thread: Option<String>,
}

impl Origin {
    /// `user` of `platform` (its id without the prefix), in `channel` and maybe a thread; an
    /// empty thread is none.
    pub fn new(platform: &'static str, user: &str, channel: &str, thread: Option<&str>) -> Origin {
        Origin {
            platform,
            user: Person { platform: platform.to_string(), id: user.to_string() },
            channel: channel.to_string(),
            thread: thread.filter(|thread| !thread.is_empty()).map(str::to_string),
        }
    }
}

/// A message the bot posted, so it can be edited or replied to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRef {
    pub channel: String,
    /// The platform's message id (Slack's `ts`).
    pub id: String,
}

/// What a platform accepts in one message.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Characters of text across the message; beyond it output goes as a file.
    pub max_text: usize,
    /// Characters in one block of text.
    pub max_block_text: usize,
    pub max_blocks: usize,
}

/// A form to fill in (the resolve form), the core's [`Reply::Form`]: submitted back as
/// [`ChatEvent::FormSubmitted`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Form {
    pub title: String,
    pub submit: String,
    /// What the submission does, and on what (like a button's action and value).
    pub action: String,
    pub value: String,
    pub fields: Vec<FormField>,
    /// What to tell the person where a form cannot open (a mention has nothing to open it
    /// with): the command to type instead.
    pub instead: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormField {
    pub id: String,
    pub label: String,
    pub multiline: bool,
    pub optional: bool,
}

#[derive(Debug)]
pub enum ChatError {
    /// The platform asked us to slow down; the adapter already waited and retried.
    RateLimited { retry_after_secs: u64 },
    /// The platform refused the call, with its reason (`channel_not_found`).
    Refused(String),
    /// The platform could not be reached.
    Unreachable(String),
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatError::RateLimited { retry_after_secs } => write!(f, "rate limited (retry after {retry_after_secs} s)"),
            ChatError::Refused(reason) => write!(f, "refused: {reason}"),
            ChatError::Unreachable(reason) => write!(f, "unreachable: {reason}"),
        }
    }
}

impl std::error::Error for ChatError {}

/// One chat platform. Implementations pace their own calls (at most one post per second per
/// channel) and honour every `Retry-After` before returning.
#[async_trait]
pub trait ChatAdapter: Send + Sync {
    /// `slack`, `discord`, `console`: the prefix of this platform's people.
    fn platform(&self) -> &'static str;
    fn limits(&self) -> Limits;
    /// How to mention a person of this platform in text (`<@U0001>` on Slack).
    fn mention(&self, user_id: &str) -> String;
    /// The channel incident notifications go to, if configured.
    fn incident_channel(&self) -> Option<String>;

    /// Posts in `channel`, inside `thread` when given.
    async fn post(&self, channel: &str, thread: Option<&str>, message: &Message) -> Result<MessageRef, ChatError>;
    async fn update(&self, at: &MessageRef, message: &Message) -> Result<(), ChatError>;
    /// Posts a file in `channel`, inside `thread` when given.
    async fn upload(&self, channel: &str, thread: Option<&str>, file: &FileAttachment) -> Result<(), ChatError>;
    /// A direct message to one person of this platform.
    async fn direct(&self, user_id: &str, message: &Message) -> Result<MessageRef, ChatError>;
}

/// What a platform hands the core.
#[derive(Debug, Clone)]
pub enum ChatEvent {
    /// A command as typed: `/diagnose queue queue=signals`.
    Command { origin: Origin, text: String },
    /// A button: its action and value, and the message it was on.
    Button { origin: Origin, action: String, value: String, message: Option<MessageRef> },
    /// A form was submitted.
    FormSubmitted { origin: Origin, action: String, value: String, fields: BTreeMap<String, String> },
}

impl ChatEvent {
    /// Who acted, and where.
    pub fn origin(&self) -> &Origin {
        match self {
            ChatEvent::Command { origin, .. }
            | ChatEvent::Button { origin, .. }
            | ChatEvent::FormSubmitted { origin, .. } => origin,
        }
    }
}

/// The core's immediate answer, which the platform sends as its acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Nothing to say now; the work shows up in the channel.
    Nothing,
    /// Seen only by the person who acted (a mistake, a refusal, a list).
    Private(Message),
    /// A form for the person who acted, shown by the platform with what its acknowledgement
    /// can carry (Slack's `trigger_id`, a Discord modal, the console's answer).
    Form(Form),
}

impl Reply {
    pub fn private(text: impl Into<String>) -> Reply {
        Reply::Private(Message::plain(text))
    }

    /// The reply for a platform that cannot show a form here: the form's typed alternative.
    pub fn without_form(self) -> Reply {
        match self {
            Reply::Form(form) => Reply::private(form.instead),
            reply => reply,
        }
    }
}
