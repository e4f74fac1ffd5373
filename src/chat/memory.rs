//! An in-memory chat platform for tests: records every post, edit, upload, direct message and
//! form, and hands out message ids like a real platform would.

use std::sync::Mutex;

use async_trait::async_trait;

use super::{ChatAdapter, ChatError, FileAttachment, Form, Limits, Message, MessageRef};

/// Everything the bot did on the platform, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    Post { channel: String, thread: Option<String>, id: String, message: Message },
    Update { channel: String, id: String, message: Message },
    Upload { channel: String, thread: Option<String>, file: FileAttachment },
    Direct { user: String, message: Message },
    Form { trigger: String, form: Form },
}

#[derive(Debug)]
pub struct MemoryAdapter {
    platform: &'static str,
    incident_channel: Option<String>,
    limits: Limits,
    recorded: Mutex<Vec<Recorded>>,
}

impl MemoryAdapter {
    pub fn new(platform: &'static str, incident_channel: Option<&str>) -> Self {
        Self {
            platform,
            incident_channel: incident_channel.map(str::to_string),
            limits: Limits { max_text: 40_000, max_block_text: 3_000, max_blocks: 50 },
            recorded: Mutex::new(Vec::new()),
        }
    }

    /// Records a form shown to someone (the core's [`crate::chat::Reply::Form`], as a platform
    /// shows it in answer to `trigger`).
    pub fn show_form(&self, trigger: &str, form: &Form) {
        self.push(Recorded::Form { trigger: trigger.into(), form: form.clone() });
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        self.recorded.lock().expect("recorder lock").clone()
    }

    /// The latest text of message `id`, after every edit.
    pub fn current_text(&self, id: &str) -> Option<String> {
        self.recorded().iter().rev().find_map(|entry| match entry {
            Recorded::Update { id: updated, message, .. } | Recorded::Post { id: updated, message, .. }
                if updated == id =>
            {
                Some(message.plain_text())
            }
            _ => None,
        })
    }

    fn push(&self, entry: Recorded) -> usize {
        let mut recorded = self.recorded.lock().expect("recorder lock");
        recorded.push(entry);
        recorded.len()
    }
}

#[async_trait]
impl ChatAdapter for MemoryAdapter {
    fn platform(&self) -> &'static str {
        self.platform
    }

    fn limits(&self) -> Limits {
        self.limits
    }

    fn mention(&self, user_id: &str) -> String {
        format!("<@{user_id}>")
    }

    fn incident_channel(&self) -> Option<String> {
        self.incident_channel.clone()
    }

    async fn post(&self, channel: &str, thread: Option<&str>, message: &Message) -> Result<MessageRef, ChatError> {
        let mut recorded = self.recorded.lock().expect("recorder lock");
        let id = format!("m{}", recorded.len() + 1);
        recorded.push(Recorded::Post {
            channel: channel.into(),
            thread: thread.map(str::to_string),
            id: id.clone(),
            message: message.clone(),
        });
        Ok(MessageRef { channel: channel.into(), id })
    }

    async fn update(&self, at: &MessageRef, message: &Message) -> Result<(), ChatError> {
        self.push(Recorded::Update { channel: at.channel.clone(), id: at.id.clone(), message: message.clone() });
        Ok(())
    }

    async fn upload(&self, channel: &str, thread: Option<&str>, file: &FileAttachment) -> Result<(), ChatError> {
        self.push(Recorded::Upload { channel: channel.into(), thread: thread.map(str::to_string), file: file.clone() });
        Ok(())
    }

    async fn direct(&self, user_id: &str, message: &Message) -> Result<MessageRef, ChatError> {
        let count = self.push(Recorded::Direct { user: user_id.into(), message: message.clone() });
        Ok(MessageRef { channel: format!("D-{user_id}"), id: format!("d{count}") })
    }
}
