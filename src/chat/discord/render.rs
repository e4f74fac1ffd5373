//! The platform-neutral [`Message`] and [`Form`] as Discord messages, always within
//! Discord's limits: 2,000 characters of `content`; up to 10 embeds with 6,000 characters in all,
//! a title of 256, a description of 4,096 and 25 fields (name 256, value 1,024) each; 5 action
//! rows of 5 buttons, labels of 80 and `custom_id`s of 100 characters; modals with a title of 45
//! and 5 text inputs.
//!
//! A message with no header and no fields whose text fits is plain `content` (mentions in it
//! ping). Anything richer becomes embeds, and the people mentioned in them are repeated in
//! `content`, because Discord only pings mentions in `content`. Text that does not fit is cut with
//! a visible "…(truncated)" marker and the whole message goes along as a text file
//! ([`DiscordRendered::overflow`]); buttons are never lost to truncation.
//!
//! The common markup becomes Discord markdown: `*bold*` → `**bold**`, `<@discord:ID>` → `<@ID>`
//! (people of other platforms are written out, not mentioned), and code keeps its fences.
//! `allowed_mentions` lets only the message's own people ping (`Message::mentions`), so command
//! output cannot page `@everyone` or anyone it names.
//!
//! The fitting is ours ([`DiscordRendered`] is the measured result, checked against the limits);
//! the wire format is serenity's: [`DiscordRendered::create_message`] and its siblings build
//! serenity's `CreateMessage`, `EditMessage`, `CreateEmbed`, `CreateActionRow`/`CreateButton`
//! and `CreateAllowedMentions`, and [`render_modal`] a `CreateModal` of `CreateInputText`s. The
//! adapter serialises them and sends them over its own REST client.

use std::sync::LazyLock;

use regex::Regex;
use serenity::all::{ButtonStyle as DiscordButtonStyle, InputTextStyle};
use serenity::builder::{
    CreateActionRow, CreateAllowedMentions, CreateAttachment, CreateButton, CreateEmbed, CreateInputText,
    CreateInteractionResponseFollowup, CreateInteractionResponseMessage, CreateMessage, CreateModal, EditAttachments,
    EditInteractionResponse, EditMessage,
};
use sha2::{Digest, Sha256};

use crate::chat::{Block, Button, ButtonStyle, FileAttachment, Form, Message};

pub const MAX_CONTENT: usize = 2_000;
pub const MAX_EMBEDS: usize = 10;
pub const MAX_EMBED_TITLE: usize = 256;
pub const MAX_EMBED_DESCRIPTION: usize = 4_096;
pub const MAX_EMBED_FIELDS: usize = 25;
pub const MAX_FIELD_NAME: usize = 256;
pub const MAX_FIELD_VALUE: usize = 1_024;
/// Characters across every embed of a message (titles, descriptions, field names and values).
pub const MAX_EMBED_TOTAL: usize = 6_000;
pub const MAX_ACTION_ROWS: usize = 5;
pub const MAX_BUTTONS_PER_ROW: usize = 5;
pub const MAX_BUTTON_LABEL: usize = 80;
pub const MAX_CUSTOM_ID: usize = 100;
pub const MAX_MODAL_TITLE: usize = 45;
pub const MAX_INPUT_LABEL: usize = 45;
pub const MAX_MODAL_INPUTS: usize = 5;
pub const MAX_INPUT_LENGTH: u16 = 4_000;
/// Discord's limit on a thread's name.
pub const MAX_THREAD_NAME: usize = 100;

pub const TRUNCATED: &str = "…(truncated)";

/// Marks a `custom_id` whose value is kept by the adapter because it is too long to carry.
const LONG_VALUE_MARK: char = '~';
/// Separates an action from the number that keeps two equal buttons' ids apart.
const DUPLICATE_MARK: char = '#';

/// A message fitted to Discord's limits, before it becomes one of serenity's builders (whose
/// fields cannot be read back, so the limits are measured here).
#[derive(Debug, Clone, PartialEq)]
pub struct DiscordRendered {
    pub content: String,
    pub embeds: Vec<Embed>,
    /// Action rows of buttons.
    pub components: Vec<Vec<ButtonComponent>>,
    /// The whole message as text, when it had to be cut: posted as an attachment.
    pub overflow: Option<FileAttachment>,
    /// `custom_id` → value of buttons whose value was too long to carry in the id.
    pub long_values: Vec<(String, String)>,
    /// The people whose mentions may ping: those the message means to notify.
    pub mentions: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Embed {
    pub title: Option<String>,
    pub description: String,
    pub fields: Vec<EmbedField>,
    pub color: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EmbedField {
    pub name: String,
    pub value: String,
    pub inline: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ButtonComponent {
    pub style: ButtonStyle,
    pub label: String,
    pub custom_id: String,
}

/// Which mentions may ping: the people in `users` only, never `@everyone`, `@here`, roles, or
/// someone named in check output or an alert.
pub fn people_only(users: &[u64]) -> CreateAllowedMentions {
    CreateAllowedMentions::new().users(users.iter().copied().map(serenity::all::UserId::new))
}

/// No mention pings.
pub fn no_mentions() -> CreateAllowedMentions {
    CreateAllowedMentions::new()
}

/// `file` as serenity's attachment (its metadata goes in the JSON, its bytes in the multipart).
pub fn attachment(file: &FileAttachment) -> CreateAttachment {
    CreateAttachment::bytes(file.content.clone(), file.filename.clone()).description(file.title.clone())
}

impl DiscordRendered {
    fn embed_builders(&self) -> Vec<CreateEmbed> {
        self.embeds
            .iter()
            .map(|embed| {
                let mut builder = CreateEmbed::new().colour(embed.color);
                if let Some(title) = &embed.title {
                    builder = builder.title(title);
                }
                if !embed.description.is_empty() {
                    builder = builder.description(&embed.description);
                }
                builder.fields(embed.fields.iter().map(|field| (&field.name, &field.value, field.inline)))
            })
            .collect()
    }

    /// Always given, so an edit without buttons removes the old ones.
    fn component_builders(&self) -> Vec<CreateActionRow> {
        self.components
            .iter()
            .map(|row| {
                CreateActionRow::Buttons(
                    row.iter()
                        .map(|button| {
                            CreateButton::new(&button.custom_id).label(&button.label).style(match button.style {
                                ButtonStyle::Primary => DiscordButtonStyle::Primary,
                                ButtonStyle::Default => DiscordButtonStyle::Secondary,
                                ButtonStyle::Danger => DiscordButtonStyle::Danger,
                            })
                        })
                        .collect(),
                )
            })
            .collect()
    }

    /// A new message (`POST /channels/{id}/messages`), with the overflow file attached when
    /// there is one.
    pub fn create_message(&self) -> CreateMessage {
        let message = CreateMessage::new()
            .content(&self.content)
            .embeds(self.embed_builders())
            .components(self.component_builders())
            .allowed_mentions(people_only(&self.mentions));
        match &self.overflow {
            Some(file) => message.add_file(attachment(file)),
            None => message,
        }
    }

    /// An edit of a message (`PATCH /channels/{id}/messages/{id}`): it replaces the text, the
    /// embeds, the buttons and the attachments (an earlier file goes unless a new one replaces it).
    pub fn edit_message(&self) -> EditMessage {
        let attachments = match &self.overflow {
            Some(file) => EditAttachments::new().add(attachment(file)),
            None => EditAttachments::new(),
        };
        EditMessage::new()
            .content(&self.content)
            .embeds(self.embed_builders())
            .components(self.component_builders())
            .allowed_mentions(people_only(&self.mentions))
            .attachments(attachments)
    }

    /// The message of an interaction response (no attachment: answers are cut to fit).
    pub fn interaction_message(&self) -> CreateInteractionResponseMessage {
        CreateInteractionResponseMessage::new()
            .content(&self.content)
            .embeds(self.embed_builders())
            .components(self.component_builders())
            .allowed_mentions(people_only(&self.mentions))
    }

    /// A follow-up message through an interaction's webhook.
    pub fn followup(&self) -> CreateInteractionResponseFollowup {
        CreateInteractionResponseFollowup::new()
            .content(&self.content)
            .embeds(self.embed_builders())
            .components(self.component_builders())
            .allowed_mentions(people_only(&self.mentions))
    }

    /// The replacement of an interaction's first answer.
    pub fn edit_response(&self) -> EditInteractionResponse {
        EditInteractionResponse::new()
            .content(&self.content)
            .embeds(self.embed_builders())
            .components(self.component_builders())
            .allowed_mentions(people_only(&self.mentions))
    }

    /// Characters of text in the embeds, as Discord counts them against [`MAX_EMBED_TOTAL`].
    pub fn embed_text_len(&self) -> usize {
        self.embeds
            .iter()
            .map(|embed| {
                embed.title.as_deref().map_or(0, count)
                    + count(&embed.description)
                    + embed.fields.iter().map(|field| count(&field.name) + count(&field.value)).sum::<usize>()
            })
            .sum()
    }
}

/// Colours of the embed's left bar, from the first status mark in its title.
const COLOR_DEFAULT: u32 = 0x5865F2;
const COLOR_OK: u32 = 0x2ECC71;
const COLOR_WARN: u32 = 0xF1C40F;
const COLOR_CRIT: u32 = 0xE74C3C;

fn color_of(title: Option<&str>) -> u32 {
    let Some(title) = title else { return COLOR_DEFAULT };
    if title.contains('🔴') || title.contains('⛔') || title.contains('🚨') {
        COLOR_CRIT
    } else if title.contains('⚠') {
        COLOR_WARN
    } else if title.contains('✅') {
        COLOR_OK
    } else {
        COLOR_DEFAULT
    }
}

/// Renders `message` for Discord.
pub fn render_message(message: &Message) -> DiscordRendered {
    let (components, long_values) = render_buttons(message);
    let rich = message.blocks.iter().any(|block| matches!(block, Block::Header { .. } | Block::Fields { .. }));
    let paragraphs = message.blocks.iter().filter_map(paragraph).collect::<Vec<_>>();
    let plain = paragraphs.iter().map(|paragraph| paragraph.text()).collect::<Vec<_>>().join("\n");
    let mentions = message
        .mentions
        .iter()
        .filter_map(|person| person.strip_prefix("discord:").unwrap_or(person).parse::<u64>().ok())
        .collect();
    let mut rendered = DiscordRendered {
        content: String::new(),
        embeds: Vec::new(),
        components,
        overflow: None,
        long_values,
        mentions,
    };
    if !rich && count(&plain) <= MAX_CONTENT {
        rendered.content = plain;
    } else {
        let (embeds, truncated) = fit_embeds(&message.blocks);
        rendered.embeds = embeds;
        rendered.content = mentions_line(&rendered.embeds);
        if truncated {
            rendered.overflow = Some(FileAttachment {
                filename: "message.txt".to_string(),
                title: "The whole message".to_string(),
                content: message.plain_text().into_bytes(),
            });
        }
    }
    if rendered.content.is_empty() && rendered.embeds.is_empty() {
        // Discord refuses a message with nothing to show.
        rendered.content = "(no content)".to_string();
    }
    rendered
}

/// The modal for `form` (interaction response type 9). Its `custom_id` carries the form's action
/// and value, so the submission says what it is for.
pub fn render_modal(form: &Form) -> CreateModal {
    let rows = form
        .fields
        .iter()
        .take(MAX_MODAL_INPUTS)
        .map(|field| {
            let style = if field.multiline { InputTextStyle::Paragraph } else { InputTextStyle::Short };
            CreateActionRow::InputText(
                CreateInputText::new(style, clip(&field.label, MAX_INPUT_LABEL), clip(&field.id, MAX_CUSTOM_ID))
                    .required(!field.optional)
                    .max_length(MAX_INPUT_LENGTH),
            )
        })
        .collect::<Vec<_>>();
    let (custom_id, _) = custom_id(&form.action, &form.value, 1);
    CreateModal::new(custom_id, clip(&form.title, MAX_MODAL_TITLE)).components(rows)
}

/// A thread name for a message: its header, or its first line of text, without markup.
pub fn thread_name(message: &Message) -> String {
    let first = message.blocks.iter().find_map(|block| match block {
        Block::Header { text } | Block::Text { text } if !text.trim().is_empty() => {
            text.lines().find(|line| !line.trim().is_empty()).map(str::to_string)
        }
        _ => None,
    });
    let name = first.unwrap_or_else(|| "firebell".to_string()).replace(['*', '`'], "");
    clip(name.trim(), MAX_THREAD_NAME)
}

/// The `custom_id` of a button or form: `action:value`, with `#n` after the action for the
/// n-th equal button of a message. A value too long to carry becomes `~` and a hash of it; the
/// pair to remember is returned with it.
pub fn custom_id(action: &str, value: &str, occurrence: usize) -> (String, Option<(String, String)>) {
    let action = if occurrence > 1 {
        format!("{}{DUPLICATE_MARK}{occurrence}", clip_raw(action, 40))
    } else {
        action.to_string()
    };
    let direct = format!("{action}:{value}");
    if count(&direct) <= MAX_CUSTOM_ID && !value.starts_with(LONG_VALUE_MARK) {
        return (direct, None);
    }
    let digest = hex::encode(Sha256::digest(value.as_bytes()));
    let id = format!("{}:{LONG_VALUE_MARK}{}", clip_raw(&action, 60), &digest[..24]);
    (id.clone(), Some((id, value.to_string())))
}

/// A `custom_id` read back: the action as the core named it, and the value — or, for a value the
/// adapter keeps, `Err` with the id to look it up by.
pub fn parse_custom_id(custom_id: &str) -> (String, Result<String, String>) {
    let (action, value) = custom_id.split_once(':').unwrap_or((custom_id, ""));
    let action = match action.rsplit_once(DUPLICATE_MARK) {
        Some((base, number)) if !number.is_empty() && number.bytes().all(|byte| byte.is_ascii_digit()) => base,
        _ => action,
    };
    if value.starts_with(LONG_VALUE_MARK) {
        (action.to_string(), Err(custom_id.to_string()))
    } else {
        (action.to_string(), Ok(value.to_string()))
    }
}

fn render_buttons(message: &Message) -> (Vec<Vec<ButtonComponent>>, Vec<(String, String)>) {
    let buttons: Vec<&Button> = message
        .blocks
        .iter()
        .flat_map(|block| match block {
            Block::Buttons { buttons } => buttons.iter().collect::<Vec<_>>(),
            _ => Vec::new(),
        })
        .collect();
    let limit = MAX_ACTION_ROWS * MAX_BUTTONS_PER_ROW;
    if buttons.len() > limit {
        tracing::warn!(buttons = buttons.len(), kept = limit, "A message has more buttons than Discord shows");
    }
    let mut seen: Vec<String> = Vec::new();
    let mut long_values = Vec::new();
    let components = buttons
        .iter()
        .take(limit)
        .map(|button| {
            let key = format!("{}:{}", button.action, button.value);
            let occurrence = seen.iter().filter(|earlier| **earlier == key).count() + 1;
            seen.push(key);
            let (id, long) = custom_id(&button.action, &button.value, occurrence);
            long_values.extend(long);
            let label = button.label.trim();
            ButtonComponent {
                style: button.style,
                label: clip(if label.is_empty() { &button.action } else { label }, MAX_BUTTON_LABEL),
                custom_id: id,
            }
        })
        .collect::<Vec<_>>();
    let rows = components.chunks(MAX_BUTTONS_PER_ROW).map(<[ButtonComponent]>::to_vec).collect();
    (rows, long_values)
}

/// A piece of an embed description or of `content`, already in Discord markdown.
#[derive(Debug, Clone)]
enum Paragraph {
    Text(String),
    /// Code without its fences.
    Code(String),
}

impl Paragraph {
    fn text(&self) -> String {
        match self {
            Paragraph::Text(text) => text.clone(),
            Paragraph::Code(code) => fenced(code),
        }
    }
}

fn paragraph(block: &Block) -> Option<Paragraph> {
    match block {
        Block::Text { text } if !text.trim().is_empty() => Some(Paragraph::Text(markdown(text.trim_end()))),
        Block::Context { text } if !text.trim().is_empty() => Some(Paragraph::Text(
            markdown(text.trim()).lines().map(|line| format!("-# {line}")).collect::<Vec<_>>().join("\n"),
        )),
        Block::Code { text } if !text.is_empty() => Some(Paragraph::Code(text.replace("```", "`\u{200b}``"))),
        Block::Header { text } if !text.trim().is_empty() => Some(Paragraph::Text(format!("**{}**", text.trim()))),
        Block::Divider => Some(Paragraph::Text("───".to_string())),
        _ => None,
    }
}

fn fenced(code: &str) -> String {
    format!("```\n{code}\n```")
}

const FENCES: usize = "```\n\n```".len();

/// Builds the embeds; true when something had to be cut.
fn fit_embeds(blocks: &[Block]) -> (Vec<Embed>, bool) {
    let mut builder = EmbedBuilder::default();
    for block in blocks {
        let fits = match block {
            Block::Header { text } if !text.trim().is_empty() => builder.title(text.trim()),
            Block::Fields { fields } => fields.iter().all(|(name, value)| builder.field(name, value)),
            Block::Buttons { .. } | Block::Header { .. } => true,
            other => match paragraph(other) {
                Some(Paragraph::Text(text)) => builder.text(&text),
                Some(Paragraph::Code(code)) => builder.code(&code),
                None => true,
            },
        };
        if !fits {
            builder.mark_truncated();
            return (builder.finish(), true);
        }
    }
    (builder.finish(), false)
}

/// Fills embeds in order, within each embed's and the message's limits.
#[derive(Default)]
struct EmbedBuilder {
    embeds: Vec<Embed>,
    /// Characters used across all embeds.
    used: usize,
}

impl EmbedBuilder {
    /// Room left in the message, keeping space for the truncation marker.
    fn room(&self) -> usize {
        MAX_EMBED_TOTAL.saturating_sub(self.used + count(TRUNCATED) + 1)
    }

    fn new_embed(&mut self, title: Option<String>) -> bool {
        if self.embeds.len() >= MAX_EMBEDS {
            return false;
        }
        self.embeds.push(Embed {
            color: color_of(title.as_deref()),
            title,
            description: String::new(),
            fields: vec![],
        });
        true
    }

    fn current(&mut self) -> Option<&mut Embed> {
        if self.embeds.is_empty() && !self.new_embed(None) {
            return None;
        }
        self.embeds.last_mut()
    }

    fn title(&mut self, text: &str) -> bool {
        let title = clip(&markdown(text), MAX_EMBED_TITLE);
        if count(&title) > self.room() || !self.new_embed(Some(title.clone())) {
            return false;
        }
        self.used += count(&title);
        true
    }

    fn field(&mut self, name: &str, value: &str) -> bool {
        let name = clip(&markdown(name), MAX_FIELD_NAME);
        let value = if value.trim().is_empty() { "—".to_string() } else { clip(&markdown(value), MAX_FIELD_VALUE) };
        let length = count(&name) + count(&value);
        if length > self.room() {
            return false;
        }
        let full = self.current().is_none_or(|embed| embed.fields.len() >= MAX_EMBED_FIELDS);
        if full && !self.new_embed(None) {
            return false;
        }
        self.used += length;
        self.embeds.last_mut().expect("an embed").fields.push(EmbedField { name, value, inline: true });
        true
    }

    /// Appends text to the descriptions, splitting at line breaks across embeds; false if it
    /// could not all fit (what fit is kept).
    fn text(&mut self, text: &str) -> bool {
        self.append(text, false)
    }

    fn code(&mut self, code: &str) -> bool {
        self.append(code, true)
    }

    fn append(&mut self, text: &str, code: bool) -> bool {
        let mut rest = text;
        while !rest.is_empty() {
            let Some(embed) = self.current() else { return false };
            let separator = if embed.description.is_empty() { 0 } else { 2 };
            let overhead = separator + if code { FENCES } else { 0 };
            let in_embed = MAX_EMBED_DESCRIPTION.saturating_sub(count(&embed.description) + overhead);
            let room = in_embed.min(self.room().saturating_sub(overhead));
            if room < 40 && !(count(rest) <= room && room > 0) {
                if self.room() < 40 + overhead || !self.new_embed(None) {
                    return false;
                }
                continue;
            }
            let piece = cut_at_line(rest, room);
            let piece_text = if code { fenced(piece) } else { piece.to_string() };
            let embed = self.embeds.last_mut().expect("an embed");
            if !embed.description.is_empty() {
                embed.description.push_str("\n\n");
            }
            embed.description.push_str(&piece_text);
            self.used += separator + count(&piece_text);
            rest = rest[piece.len()..].strip_prefix('\n').unwrap_or(&rest[piece.len()..]);
        }
        true
    }

    fn mark_truncated(&mut self) {
        let marker = format!("\n{TRUNCATED}");
        match self.embeds.last_mut() {
            Some(embed) if count(&embed.description) + count(&marker) <= MAX_EMBED_DESCRIPTION => {
                embed.description.push_str(&marker);
            }
            _ => {
                if let Some(embed) = self.embeds.last_mut() {
                    // The last embed is full: its last characters give way to the marker.
                    let keep = MAX_EMBED_DESCRIPTION - count(&marker);
                    embed.description = format!("{}{marker}", cut_at_line(&embed.description, keep));
                }
            }
        }
    }

    fn finish(self) -> Vec<Embed> {
        self.embeds
    }
}

/// The longest prefix of `text` within `max` characters, ending at a line break when one is
/// near, never inside a mention.
fn cut_at_line(text: &str, max: usize) -> &str {
    let end = match text.char_indices().nth(max) {
        Some((index, _)) => index,
        None => return text,
    };
    let mut end = end;
    if let Some(open) = text[..end].rfind('<')
        && !text[open..end].contains('>')
        && open > 0
    {
        end = open;
    }
    if let Some(newline) = text[..end].rfind('\n')
        && newline > 0
        && text[newline..end].chars().count() <= 500
    {
        end = newline;
    }
    &text[..end]
}

static MENTION: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<@!?(?:([a-z]+):)?([A-Za-z0-9._-]+)>").expect("mention pattern"));
static USER_MENTION: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"<@!?([0-9]+)>").expect("user mention pattern"));

/// The common markup as Discord markdown.
pub fn markdown(text: &str) -> String {
    let mentions = MENTION.replace_all(text, |captures: &regex::Captures<'_>| {
        let id = &captures[2];
        match captures.get(1).map(|platform| platform.as_str()) {
            None | Some("discord") if id.bytes().all(|byte| byte.is_ascii_digit()) => format!("<@{id}>"),
            Some(platform) => format!("{platform}:{id}"),
            None => format!("@{id}"),
        }
    });
    bold(&mentions)
}

/// `*bold*` → `**bold**`, outside inline code; a lone `*` stays as it is.
fn bold(text: &str) -> String {
    let mut output = String::with_capacity(text.len() + 8);
    for (index, segment) in text.split('`').enumerate() {
        if index > 0 {
            output.push('`');
        }
        if index % 2 == 1 {
            output.push_str(segment);
            continue;
        }
        let mut rest = segment;
        while let Some(open) = rest.find('*') {
            let after = &rest[open + 1..];
            if let Some(more) = after.strip_prefix('*') {
                // Already Discord's bold (or more stars): kept as written.
                output.push_str(&rest[..open + 2]);
                rest = more;
                continue;
            }
            let close = after.find(['*', '\n']).filter(|&close| after[close..].starts_with('*') && close > 0);
            match close {
                Some(close) if !after.starts_with(' ') => {
                    output.push_str(&rest[..open]);
                    output.push_str("**");
                    output.push_str(&after[..close]);
                    output.push_str("**");
                    rest = &after[close + 1..];
                }
                _ => {
                    output.push_str(&rest[..=open]);
                    rest = after;
                }
            }
        }
        output.push_str(rest);
    }
    output
}

/// The people mentioned in the embeds, for `content` (embeds never ping).
fn mentions_line(embeds: &[Embed]) -> String {
    let mut people: Vec<String> = Vec::new();
    let mut collect = |text: &str| {
        for captures in USER_MENTION.captures_iter(text) {
            let mention = format!("<@{}>", &captures[1]);
            if !people.contains(&mention) {
                people.push(mention);
            }
        }
    };
    for embed in embeds {
        collect(&embed.description);
        for field in &embed.fields {
            collect(&field.value);
        }
    }
    let mut line = String::new();
    for person in people {
        if count(&line) + count(&person) + 1 > MAX_CONTENT {
            break;
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&person);
    }
    line
}

fn count(text: &str) -> usize {
    text.chars().count()
}

/// Text cut to `max` characters, ending in `…` when cut.
pub fn clip(text: &str, max: usize) -> String {
    if count(text) <= max {
        return text.to_string();
    }
    let mut clipped = text.chars().take(max.saturating_sub(1)).collect::<String>();
    clipped.push('…');
    clipped
}

fn clip_raw(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::FormField;
    use crate::chat::views;

    // The messages below are built by the real views and templates, so these snapshots show
    // exactly what Discord receives.

    fn fixed_now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339("2026-11-22T10:05:00Z").unwrap().to_utc()
    }

    /// The sample incident as it was at 10:05, with its commander on Discord.
    fn open_incident() -> crate::incident::Incident {
        let mut incident = crate::incident::summary::sample_open_incident();
        incident.commander = Some("discord:112233445566778899".to_string());
        incident
    }

    /// Mentions as the Discord adapter writes them.
    struct Mentions;

    #[async_trait::async_trait]
    impl crate::chat::ChatAdapter for Mentions {
        fn platform(&self) -> &'static str {
            "discord"
        }
        fn limits(&self) -> crate::chat::Limits {
            crate::chat::Limits { max_text: 6_000, max_block_text: 4_000, max_blocks: 50 }
        }
        fn mention(&self, user_id: &str) -> String {
            format!("<@{user_id}>")
        }
        fn incident_channel(&self) -> Option<String> {
            None
        }
        async fn post(
            &self,
            _: &str,
            _: Option<&str>,
            _: &Message,
        ) -> Result<crate::chat::MessageRef, crate::chat::ChatError> {
            unreachable!()
        }
        async fn update(&self, _: &crate::chat::MessageRef, _: &Message) -> Result<(), crate::chat::ChatError> {
            unreachable!()
        }
        async fn upload(&self, _: &str, _: Option<&str>, _: &FileAttachment) -> Result<(), crate::chat::ChatError> {
            unreachable!()
        }
        async fn direct(&self, _: &str, _: &Message) -> Result<crate::chat::MessageRef, crate::chat::ChatError> {
            unreachable!()
        }
    }

    fn incident_notification() -> Message {
        let incident = open_incident();
        let text = crate::incident::summary::Templates::shipped().notification(&incident, fixed_now()).unwrap();
        let people = views::incident_people(&incident);
        views::incident_notification(&incident, &views::mention_people(&text, &Mentions, &people)).mentioning(people)
    }

    fn diagnosis(finished: bool) -> Message {
        views::sample_diagnosis(finished, "<@112233445566778899>")
    }

    fn resolution_summary() -> Message {
        let incident = crate::incident::summary::sample_incident();
        let text = crate::incident::summary::Templates::shipped().resolution(&incident, fixed_now()).unwrap();
        Message::plain(text)
    }

    fn remediation_request() -> Message {
        let request = crate::store::RemediationRequest {
            id: 12,
            incident_id: Some(7),
            topic: "queue".into(),
            action: "restart-worker".into(),
            args: [("queue".to_string(), "trade_execution_queue".to_string())].into_iter().collect(),
            command: "systemctl restart autotrader-workers".into(),
            action_hash: "h".into(),
            requested_by: "discord:112233445566778899".into(),
            approvals_needed: 1,
            platform: "discord".into(),
            channel: "900000000000000001".into(),
            thread: Some("900000000000000002".into()),
            message: None,
            state: "pending".into(),
            votes: Vec::new(),
            result: None,
            created_at: fixed_now(),
            expires_at: fixed_now() + chrono::Duration::minutes(30),
            decided_at: None,
        };
        views::remediation_request(&request, "Restart the worker service", &["oncall".to_string()], &|person| {
            format!("<@{}>", person.trim_start_matches("discord:"))
        })
    }

    fn assert_within_limits(rendered: &DiscordRendered) {
        assert!(count(&rendered.content) <= MAX_CONTENT, "content of {} chars", count(&rendered.content));
        assert!(rendered.embeds.len() <= MAX_EMBEDS);
        assert!(rendered.embed_text_len() <= MAX_EMBED_TOTAL, "{} embed chars", rendered.embed_text_len());
        for embed in &rendered.embeds {
            assert!(embed.title.as_deref().map_or(0, count) <= MAX_EMBED_TITLE);
            assert!(count(&embed.description) <= MAX_EMBED_DESCRIPTION);
            assert!(embed.fields.len() <= MAX_EMBED_FIELDS);
            for field in &embed.fields {
                assert!(count(&field.name) <= MAX_FIELD_NAME && count(&field.value) <= MAX_FIELD_VALUE);
            }
            // Every code block that opens is closed again.
            assert_eq!(embed.description.matches("```").count() % 2, 0, "{}", embed.description);
        }
        assert!(rendered.components.len() <= MAX_ACTION_ROWS);
        for row in &rendered.components {
            assert!(row.len() <= MAX_BUTTONS_PER_ROW);
            for button in row {
                assert!(count(&button.label) <= MAX_BUTTON_LABEL);
                assert!(count(&button.custom_id) <= MAX_CUSTOM_ID);
            }
        }
        let ids: Vec<&str> =
            rendered.components.iter().flat_map(|row| row.iter().map(|b| b.custom_id.as_str())).collect();
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "custom_ids are unique in a message: {ids:?}");
    }

    #[test]
    fn incident_notification_snapshot() {
        let rendered = render_message(&incident_notification());
        assert_within_limits(&rendered);
        // Plain content, so the commander's mention pings.
        assert!(rendered.embeds.is_empty());
        assert!(rendered.content.contains("<@112233445566778899>"), "{}", rendered.content);
        insta::assert_json_snapshot!("incident_notification", rendered.create_message());
    }

    #[test]
    fn diagnosis_in_progress_snapshot() {
        let rendered = render_message(&diagnosis(false));
        assert_within_limits(&rendered);
        insta::assert_json_snapshot!("diagnosis_in_progress", rendered.create_message());
    }

    #[test]
    fn diagnosis_finished_snapshot() {
        let rendered = render_message(&diagnosis(true));
        assert_within_limits(&rendered);
        assert_eq!(rendered.content, "<@112233445566778899>", "the requester is named in content");
        assert_eq!(rendered.embeds[0].color, COLOR_CRIT);
        insta::assert_json_snapshot!("diagnosis_finished", rendered.create_message());
    }

    #[test]
    fn resolution_summary_snapshot() {
        let rendered = render_message(&resolution_summary());
        assert_within_limits(&rendered);
        assert!(rendered.overflow.is_none(), "the summary fits in embeds");
        insta::assert_json_snapshot!("resolution_summary", rendered.create_message());
    }

    #[test]
    fn remediation_request_snapshot() {
        let rendered = render_message(&remediation_request());
        assert_within_limits(&rendered);
        insta::assert_json_snapshot!("remediation_request", rendered.create_message());
    }

    #[test]
    fn resolve_form_modal_snapshot() {
        let form = Form {
            title: "Resolve incident #42 — Worker queue backlog after the deploy".into(),
            submit: "Resolve".into(),
            action: views::FORM_RESOLVE.into(),
            value: "42".into(),
            fields: vec![
                FormField { id: "root_cause".into(), label: "Root cause".into(), multiline: true, optional: false },
                FormField { id: "fix".into(), label: "Fix".into(), multiline: true, optional: true },
                FormField { id: "prevention".into(), label: "Prevention".into(), multiline: true, optional: true },
            ],
            instead: "resolve with: /incident resolve id=42 root_cause=\"…\"".into(),
        };
        let modal = serde_json::to_value(render_modal(&form)).unwrap();
        assert!(count(modal["title"].as_str().unwrap()) <= MAX_MODAL_TITLE);
        insta::assert_json_snapshot!("resolve_form_modal", modal);
    }

    #[test]
    fn huge_output_is_cut_with_a_marker_keeps_buttons_and_goes_along_as_a_file() {
        let output =
            (1..=10_000).map(|line| format!("line {line}: <row id={line}> & more")).collect::<Vec<_>>().join("\n");
        let message = Message::new()
            .header("Diagnosis `bigexec`")
            .code(output.clone())
            .buttons(vec![Button::new("Remediate", "remediate", "cleanup").danger()]);
        let rendered = render_message(&message);
        assert_within_limits(&rendered);
        assert!(rendered.embeds.len() > 1, "the budget spreads over several embeds");
        assert!(rendered.embed_text_len() > MAX_EMBED_TOTAL - 600, "the budget is used, not wasted");
        let last = &rendered.embeds.last().unwrap().description;
        assert!(last.ends_with(&format!("```\n{TRUNCATED}")), "{}", &last[last.len() - 80..]);
        assert_eq!(rendered.components[0][0].custom_id, "remediate:cleanup");
        let file = rendered.overflow.expect("the whole text goes as a file");
        assert!(String::from_utf8(file.content).unwrap().contains("line 10000: <row id=10000> & more"));
    }

    #[test]
    fn long_text_fits_in_embeds_without_loss() {
        let text = (0..300).map(|index| format!("check {index:03} ok")).collect::<Vec<_>>().join("\n");
        let rendered = render_message(&Message::plain(text.clone()));
        assert_within_limits(&rendered);
        assert!(rendered.overflow.is_none());
        let shown = rendered.embeds.iter().map(|embed| embed.description.as_str()).collect::<Vec<_>>().join("\n");
        assert_eq!(shown, text);
    }

    #[test]
    fn many_fields_spread_over_embeds_of_25() {
        let fields = (0..30).map(|index| (format!("k{index}"), format!("v{index}"))).collect();
        let rendered = render_message(&Message::new().fields(fields));
        assert_within_limits(&rendered);
        let counts = rendered.embeds.iter().map(|embed| embed.fields.len()).collect::<Vec<_>>();
        assert_eq!(counts, vec![25, 5]);
    }

    #[test]
    fn many_buttons_fill_five_rows_of_five() {
        let buttons = (0..30).map(|index| Button::new(format!("topic {index}"), "diagnose", format!("t{index}")));
        let rendered = render_message(&Message::plain("Which runbook?").buttons(buttons.collect()));
        assert_within_limits(&rendered);
        assert_eq!(rendered.components.len(), MAX_ACTION_ROWS);
        assert_eq!(rendered.components[4][4].custom_id, "diagnose:t24");
    }

    #[test]
    fn markup_becomes_discord_markdown() {
        assert_eq!(markdown("*INCIDENT #7* is `a*b*c` now"), "**INCIDENT #7** is `a*b*c` now");
        assert_eq!(markdown("2 * 3 = 6 and *x"), "2 * 3 = 6 and *x");
        assert_eq!(markdown("ping <@discord:123> and <@456>"), "ping <@123> and <@456>");
        assert_eq!(markdown("from <@slack:U0001>"), "from slack:U0001");
        assert_eq!(markdown("**already bold**"), "**already bold**");
    }

    #[test]
    fn custom_ids_round_trip_and_long_values_are_kept_aside() {
        let (id, long) = custom_id("remediation_approve", "12", 1);
        assert_eq!((id.as_str(), long), ("remediation_approve:12", None));
        assert_eq!(parse_custom_id(&id), ("remediation_approve".to_string(), Ok("12".to_string())));
        let (second, _) = custom_id("diagnose", "queue", 2);
        assert_eq!(parse_custom_id(&second), ("diagnose".to_string(), Ok("queue".to_string())));
        let value = format!("restart-worker?queue={}", "q".repeat(120));
        let (id, long) = custom_id("remediate", &value, 1);
        assert!(count(&id) <= MAX_CUSTOM_ID);
        assert_eq!(long, Some((id.clone(), value)));
        assert_eq!(parse_custom_id(&id), ("remediate".to_string(), Err(id.clone())));
        // A value that looks like a kept one is kept too, so a click cannot forge a lookup.
        assert!(custom_id("diagnose", "~abc", 1).1.is_some());
    }

    #[test]
    fn empty_message_still_shows_something() {
        let rendered = render_message(&Message::new().text("  ").code(""));
        assert_eq!(rendered.content, "(no content)");
    }

    #[test]
    fn thread_names_come_from_the_first_line() {
        assert_eq!(thread_name(&incident_notification()), "🚨 INCIDENT #7: Trade queue backlog");
        assert_eq!(thread_name(&Message::new().header(format!("x{}", "y".repeat(200)))).chars().count(), 100);
    }
}
