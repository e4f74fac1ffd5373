//! The platform-neutral message model: what the core says, before any adapter turns it into
//! Block Kit, Discord embeds or console HTML. Text uses a small common markup: `*bold*`,
//! `` `code` `` and `<@PERSON>` mentions, which every renderer understands.

use serde::Serialize;

/// One message: blocks in order, plus a plain-text fallback for notifications and search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Message {
    pub blocks: Vec<Block>,
    /// The people this message means to notify (`slack:U0001` or the platform's own id). A
    /// `<@…>` in the text for anyone else (from check output, an alert's title) is shown as
    /// text and pings nobody.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    /// A title line.
    Header {
        text: String,
    },
    /// A paragraph of text with the common markup.
    Text {
        text: String,
    },
    /// Label/value pairs shown as a grid (severity, status, started…).
    Fields {
        fields: Vec<(String, String)>,
    },
    /// Preformatted text (command output).
    Code {
        text: String,
    },
    /// Small, secondary text (who asked, durations).
    Context {
        text: String,
    },
    Buttons {
        buttons: Vec<Button>,
    },
    Divider,
}

/// A button: `action` says what it does, `value` what it acts on (an incident id, a request id).
/// The server never trusts either: it looks the action up again when the click arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Button {
    pub label: String,
    pub action: String,
    pub value: String,
    pub style: ButtonStyle,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ButtonStyle {
    Default,
    Primary,
    Danger,
}

/// A file posted into a thread: output too long for a message, a check's chart. Defined below
/// chat, in [`crate::attachment`], because check results carry files too.
pub use crate::attachment::FileAttachment;

impl Message {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `people` to those this message means to notify.
    pub fn mentioning<S: Into<String>>(mut self, people: impl IntoIterator<Item = S>) -> Self {
        for person in people {
            let person = person.into();
            if !self.mentions.contains(&person) {
                self.mentions.push(person);
            }
        }
        self
    }

    /// Whether the message means to notify `id` of `platform` (written `platform:id` or `id`).
    pub fn mentions(&self, platform: &str, id: &str) -> bool {
        self.mentions.iter().any(|person| {
            person == id || person.strip_prefix(platform).and_then(|rest| rest.strip_prefix(':')) == Some(id)
        })
    }

    pub fn header(mut self, text: impl Into<String>) -> Self {
        self.blocks.push(Block::Header { text: text.into() });
        self
    }

    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.blocks.push(Block::Text { text: text.into() });
        self
    }

    pub fn fields(mut self, fields: Vec<(String, String)>) -> Self {
        self.blocks.push(Block::Fields { fields });
        self
    }

    pub fn code(mut self, text: impl Into<String>) -> Self {
        self.blocks.push(Block::Code { text: text.into() });
        self
    }

    pub fn context(mut self, text: impl Into<String>) -> Self {
        self.blocks.push(Block::Context { text: text.into() });
        self
    }

    pub fn buttons(mut self, buttons: Vec<Button>) -> Self {
        if !buttons.is_empty() {
            self.blocks.push(Block::Buttons { buttons });
        }
        self
    }

    pub fn divider(mut self) -> Self {
        self.blocks.push(Block::Divider);
        self
    }

    /// A message that is just one paragraph.
    pub fn plain(text: impl Into<String>) -> Self {
        Self::new().text(text)
    }

    /// Every block's text, one per line: the fallback a notification shows, and what the
    /// console and tests read.
    pub fn plain_text(&self) -> String {
        let mut lines = Vec::new();
        for block in &self.blocks {
            match block {
                Block::Header { text } | Block::Text { text } | Block::Context { text } => lines.push(text.clone()),
                Block::Code { text } => lines.push(format!("```\n{text}\n```")),
                Block::Fields { fields } => {
                    lines.extend(fields.iter().map(|(label, value)| format!("{label}: {value}")));
                }
                Block::Buttons { buttons } => {
                    lines
                        .push(buttons.iter().map(|button| format!("[{}]", button.label)).collect::<Vec<_>>().join(" "));
                }
                Block::Divider => lines.push("---".to_string()),
            }
        }
        lines.join("\n")
    }

    /// Characters of text in all blocks, to compare with a platform's limits.
    pub fn text_len(&self) -> usize {
        self.plain_text().chars().count()
    }
}

impl Button {
    pub fn new(label: impl Into<String>, action: impl Into<String>, value: impl Into<String>) -> Self {
        Self { label: label.into(), action: action.into(), value: value.into(), style: ButtonStyle::Default }
    }

    pub fn primary(mut self) -> Self {
        self.style = ButtonStyle::Primary;
        self
    }

    pub fn danger(mut self) -> Self {
        self.style = ButtonStyle::Danger;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_reads_every_block() {
        let message = Message::new()
            .header("Incident #3")
            .fields(vec![("Severity".into(), "high".into())])
            .code("line 1")
            .buttons(vec![Button::new("Acknowledge", "ack", "3").primary()]);
        assert_eq!(message.plain_text(), "Incident #3\nSeverity: high\n```\nline 1\n```\n[Acknowledge]");
        assert!(Message::new().buttons(vec![]).blocks.is_empty());
    }
}
