//! The platform-neutral [`Message`] and [`Form`] as Slack Block Kit, always within Slack's
//! limits: 50 blocks, 3,000 characters per section, 10 fields per section, 150 per header,
//! 75 per button label, and about 12,000 characters of block text in all (Slack answers
//! `msg_blocks_too_long` somewhere above 13,000, a limit it does not document).
//!
//! Long text and code are split into several sections at line breaks; what still does not fit
//! is cut with a visible "…(truncated)" marker. Headers and buttons are kept before anything
//! else, so a long diagnosis never loses its remediation buttons.

use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;
use slack_morphism::prelude::*;

use crate::chat::{Block, Button, ButtonStyle, Form, Message};

pub const MAX_BLOCKS: usize = 50;
pub const MAX_SECTION_TEXT: usize = 3_000;
pub const MAX_FIELDS_PER_SECTION: usize = 10;
pub const MAX_FIELD_TEXT: usize = 2_000;
pub const MAX_HEADER_TEXT: usize = 150;
pub const MAX_BUTTONS_PER_BLOCK: usize = 25;
pub const MAX_BUTTON_TEXT: usize = 75;
pub const MAX_BUTTON_VALUE: usize = 2_000;
pub const MAX_ACTION_ID: usize = 255;
/// Block text across the whole message; kept below the undocumented `msg_blocks_too_long`.
pub const MAX_TOTAL_BLOCK_TEXT: usize = 12_000;
/// The top-level `text` Slack allows is 40,000 characters; with blocks present it is only the
/// notification and search fallback, so a short one is enough.
pub const MAX_FALLBACK_TEXT: usize = 3_000;
/// Slack's limit on the top-level `text` of a message.
pub const MAX_MESSAGE_TEXT: usize = 40_000;
pub const MAX_MODAL_TITLE: usize = 24;
pub const MAX_INPUT_LABEL: usize = 2_000;
pub const MAX_CALLBACK_ID: usize = 255;
pub const MAX_PRIVATE_METADATA: usize = 3_000;

pub const TRUNCATED: &str = "…(truncated)";

/// Buttons with the same action in one block get `#2`, `#3`… appended to their `action_id`
/// (Slack requires unique ids within a block); [`button_action`] strips it again.
const ACTION_SUFFIX: char = '#';

/// A message as Slack takes it: `text` is the fallback, `blocks` what people see.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SlackRendered {
    pub text: String,
    pub blocks: Vec<SlackBlock>,
}

impl SlackRendered {
    pub fn content(&self) -> SlackMessageContent {
        let content = SlackMessageContent::new().with_text(self.text.clone());
        if self.blocks.is_empty() { content } else { content.with_blocks(self.blocks.clone()) }
    }
}

/// Renders `message` as Block Kit plus its plain-text fallback.
pub fn render_message(message: &Message) -> SlackRendered {
    let escape = |text: &str| escape(text, &|id| message.mentions("slack", id));
    let parts = message.blocks.iter().flat_map(|block| parts_of(block, &escape)).collect::<Vec<_>>();
    let blocks = fit(parts).into_iter().map(Part::into_block).collect::<Vec<_>>();
    let fallback = escape(&message.plain_text());
    // Every block was empty: Slack refuses a message without text.
    let text =
        if blocks.is_empty() { "(no content)".to_string() } else { truncate_markup(&fallback, MAX_FALLBACK_TEXT) };
    SlackRendered { text, blocks }
}

/// The modal for `form`. `metadata` goes into `private_metadata` (the form's value and where it
/// was opened); the form's action is the `callback_id`.
pub fn render_modal(form: &Form, metadata: &str) -> SlackView {
    let blocks = form
        .fields
        .iter()
        .take(MAX_BLOCKS)
        .map(|field| {
            let element = SlackBlockPlainTextInputElement::new()
                .with_action_id(clip(&field.id, MAX_ACTION_ID).into())
                .with_multiline(field.multiline);
            SlackInputBlock::new(plain(&field.label, MAX_INPUT_LABEL), element.into())
                .with_block_id(clip(&field.id, MAX_ACTION_ID).into())
                .with_optional(field.optional)
                .into()
        })
        .collect::<Vec<SlackBlock>>();
    let modal = SlackModalView::new(plain(&form.title, MAX_MODAL_TITLE), blocks)
        .with_submit(plain(&form.submit, MAX_MODAL_TITLE))
        .with_close(plain("Cancel", MAX_MODAL_TITLE))
        .with_callback_id(clip(&form.action, MAX_CALLBACK_ID).into())
        .with_private_metadata(clip(metadata, MAX_PRIVATE_METADATA));
    SlackView::Modal(modal)
}

/// The button's action as the core named it, without the suffix that kept it unique.
pub fn button_action(action_id: &str) -> &str {
    match action_id.rsplit_once(ACTION_SUFFIX) {
        Some((action, number)) if !number.is_empty() && number.bytes().all(|byte| byte.is_ascii_digit()) => action,
        _ => action_id,
    }
}

/// Characters of text in `blocks`, counted as the fake Slack API and the 12,000 budget do.
pub fn block_text_len(blocks: &[SlackBlock]) -> usize {
    serde_json::to_value(blocks).map(|value| json_text_len(&value)).unwrap_or(0)
}

/// Sums the `text` of every text object (`{"type": "mrkdwn"|"plain_text", "text": …}`).
pub fn json_text_len(value: &serde_json::Value) -> usize {
    match value {
        serde_json::Value::Array(items) => items.iter().map(json_text_len).sum(),
        serde_json::Value::Object(map) => match (map.get("type").and_then(|kind| kind.as_str()), map.get("text")) {
            (Some("mrkdwn" | "plain_text"), Some(serde_json::Value::String(text))) => text.chars().count(),
            _ => map.values().map(json_text_len).sum(),
        },
        _ => 0,
    }
}

static MENTION: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"<@(?:slack:)?([A-Z0-9]+)>").expect("mention pattern"));

/// Escapes `&`, `<` and `>` as Slack's mrkdwn requires, keeping `<@U…>` mentions of the people
/// `intended` says the message means to notify (the common markup's `<@slack:U…>` becomes
/// `<@U…>`). Anything else in angle brackets (`<!channel>`, links, a mention of someone else
/// that came with check output or an alert) is shown literally and pings nobody.
pub fn escape(text: &str, intended: &dyn Fn(&str) -> bool) -> String {
    let mut output = String::with_capacity(text.len() + text.len() / 8);
    let mut last = 0;
    for captures in MENTION.captures_iter(text) {
        let whole = captures.get(0).expect("match");
        if !intended(&captures[1]) {
            continue;
        }
        escape_into(&mut output, &text[last..whole.start()]);
        output.push_str("<@");
        output.push_str(&captures[1]);
        output.push('>');
        last = whole.end();
    }
    escape_into(&mut output, &text[last..]);
    output
}

fn escape_into(output: &mut String, text: &str) {
    for character in text.chars() {
        match character {
            '&' => output.push_str("&amp;"),
            '<' => output.push_str("&lt;"),
            '>' => output.push_str("&gt;"),
            other => output.push(other),
        }
    }
}

/// One block to be, with its text already escaped; the unit the budget works on.
#[derive(Debug, Clone)]
enum Part {
    Header(String),
    Section(String),
    /// Code without its fences.
    Code(String),
    Fields(Vec<String>),
    Context(String),
    Actions(Vec<Button>),
    Divider,
    /// The marker left where the budget ran out.
    Truncated,
}

fn parts_of(block: &Block, escape: &dyn Fn(&str) -> String) -> Vec<Part> {
    match block {
        Block::Header { text } if !text.trim().is_empty() => {
            vec![Part::Header(clip(text.trim(), MAX_HEADER_TEXT))]
        }
        Block::Text { text } if !text.trim().is_empty() => {
            split_markup(&escape(text), MAX_SECTION_TEXT).into_iter().map(Part::Section).collect()
        }
        Block::Code { text } if !text.is_empty() => {
            let code = escape(&text.replace("```", "`\u{200b}``"));
            split_markup(&code, MAX_SECTION_TEXT - fence_len()).into_iter().map(Part::Code).collect()
        }
        Block::Context { text } if !text.trim().is_empty() => {
            vec![Part::Context(truncate_markup(&escape(text), MAX_SECTION_TEXT))]
        }
        Block::Fields { fields } if !fields.is_empty() => fields
            .chunks(MAX_FIELDS_PER_SECTION)
            .map(|chunk| {
                let texts = chunk
                    .iter()
                    .map(|(label, value)| {
                        let value = if value.trim().is_empty() { "—" } else { value.as_str() };
                        truncate_markup(&format!("*{}*\n{}", escape(label), escape(value)), MAX_FIELD_TEXT)
                    })
                    .collect();
                Part::Fields(texts)
            })
            .collect(),
        Block::Buttons { buttons } if !buttons.is_empty() => {
            buttons.chunks(MAX_BUTTONS_PER_BLOCK).map(|chunk| Part::Actions(chunk.to_vec())).collect()
        }
        Block::Divider => vec![Part::Divider],
        _ => Vec::new(),
    }
}

fn fence_len() -> usize {
    "```\n\n```".len()
}

impl Part {
    /// Headers and buttons survive truncation: they say what this is and what to do next.
    fn essential(&self) -> bool {
        matches!(self, Part::Header(_) | Part::Actions(_))
    }

    fn text_len(&self) -> usize {
        match self {
            Part::Header(text) | Part::Section(text) | Part::Context(text) => text.chars().count(),
            Part::Code(code) => code.chars().count() + fence_len(),
            Part::Fields(fields) => fields.iter().map(|field| field.chars().count()).sum(),
            Part::Actions(buttons) => buttons.iter().map(|button| button_label(button).chars().count()).sum(),
            Part::Divider => 0,
            Part::Truncated => TRUNCATED.chars().count(),
        }
    }

    /// This part cut to `budget` characters with the marker, or `None` if too little fits to be
    /// worth showing.
    fn truncated_to(&self, budget: usize) -> Option<Part> {
        let marker = TRUNCATED.chars().count() + 1;
        if budget < marker + 40 {
            return None;
        }
        match self {
            Part::Section(text) => Some(Part::Section(format!("{}\n{TRUNCATED}", cut_markup(text, budget - marker)))),
            Part::Context(text) => Some(Part::Context(format!("{}\n{TRUNCATED}", cut_markup(text, budget - marker)))),
            Part::Code(code) => {
                let room = budget.checked_sub(marker + fence_len())?;
                Some(Part::Section(format!("```\n{}\n```\n{TRUNCATED}", cut_markup(code, room))))
            }
            Part::Fields(fields) => {
                let mut kept = Vec::new();
                let mut used = 0;
                for field in fields {
                    let length = field.chars().count();
                    if used + length + marker > budget {
                        break;
                    }
                    used += length;
                    kept.push(field.clone());
                }
                if kept.is_empty() {
                    return None;
                }
                kept.push(TRUNCATED.to_string());
                Some(Part::Fields(kept))
            }
            _ => None,
        }
    }

    fn into_block(self) -> SlackBlock {
        match self {
            Part::Header(text) => SlackHeaderBlock::new(plain(&text, MAX_HEADER_TEXT)).into(),
            Part::Section(text) => SlackSectionBlock::new().with_text(mrkdwn(text)).into(),
            Part::Code(code) => SlackSectionBlock::new().with_text(mrkdwn(format!("```\n{code}\n```"))).into(),
            Part::Fields(fields) => {
                SlackSectionBlock::new().with_fields(fields.into_iter().map(mrkdwn).collect()).into()
            }
            Part::Context(text) => {
                SlackContextBlock::new(vec![SlackContextBlockElement::MarkDown(SlackBlockMarkDownText::new(text))])
                    .into()
            }
            Part::Truncated => SlackContextBlock::new(vec![SlackContextBlockElement::MarkDown(
                SlackBlockMarkDownText::new(TRUNCATED.to_string()),
            )])
            .into(),
            Part::Actions(buttons) => SlackActionsBlock::new(action_elements(&buttons)).into(),
            Part::Divider => SlackDividerBlock::new().into(),
        }
    }
}

fn action_elements(buttons: &[Button]) -> Vec<SlackActionBlockElement> {
    let mut seen: Vec<String> = Vec::new();
    buttons
        .iter()
        .map(|button| {
            let base = clip(&button.action, MAX_ACTION_ID - 4);
            let count = seen.iter().filter(|action| **action == base).count();
            seen.push(base.clone());
            let action_id = if count == 0 { base } else { format!("{base}{ACTION_SUFFIX}{}", count + 1) };
            let element = SlackBlockButtonElement::new(plain(&button_label(button), MAX_BUTTON_TEXT))
                .with_action_id(action_id.into())
                .with_value(clip(&button.value, MAX_BUTTON_VALUE));
            let element = match button.style {
                ButtonStyle::Default => element,
                ButtonStyle::Primary => element.with_style(SlackBlockButtonStyle::Primary),
                ButtonStyle::Danger => element.with_style(SlackBlockButtonStyle::Danger),
            };
            element.into()
        })
        .collect()
}

fn button_label(button: &Button) -> String {
    let label = button.label.trim();
    clip(if label.is_empty() { button.action.as_str() } else { label }, MAX_BUTTON_TEXT)
}

/// Chooses which parts are shown: everything if it fits; otherwise headers and buttons, and the
/// other parts in order until the block count or the text budget runs out, where the part that
/// crosses the line is cut with the marker.
fn fit(parts: Vec<Part>) -> Vec<Part> {
    let total_text: usize = parts.iter().map(Part::text_len).sum();
    if parts.len() <= MAX_BLOCKS && total_text <= MAX_TOTAL_BLOCK_TEXT {
        return parts;
    }
    // Essentials are capped first, so that they alone always fit with room for the marker.
    let mut essential_blocks = 0;
    let mut essential_text = 0;
    let parts = parts
        .into_iter()
        .filter(|part| {
            if !part.essential() {
                return true;
            }
            let keep =
                essential_blocks + 1 < MAX_BLOCKS / 2 && essential_text + part.text_len() < MAX_TOTAL_BLOCK_TEXT / 2;
            if keep {
                essential_blocks += 1;
                essential_text += part.text_len();
            }
            keep
        })
        .collect::<Vec<_>>();

    let mut blocks_left = MAX_BLOCKS - essential_blocks - 1;
    let mut text_left = MAX_TOTAL_BLOCK_TEXT - essential_text - TRUNCATED.chars().count();
    let mut out_of_room = false;
    let mut fitted = Vec::with_capacity(parts.len());
    for part in parts {
        if part.essential() {
            fitted.push(part);
            continue;
        }
        if out_of_room {
            continue;
        }
        let length = part.text_len();
        if blocks_left > 0 && length <= text_left {
            blocks_left -= 1;
            text_left -= length;
            fitted.push(part);
            continue;
        }
        out_of_room = true;
        match part.truncated_to(text_left).filter(|_| blocks_left > 0) {
            Some(cut) => fitted.push(cut),
            None => fitted.push(Part::Truncated),
        }
    }
    fitted
}

fn mrkdwn(text: String) -> SlackBlockText {
    SlackBlockText::MarkDown(SlackBlockMarkDownText::new(text))
}

fn plain(text: &str, max: usize) -> SlackBlockPlainTextOnly {
    SlackBlockPlainText::new(clip(text, max)).into()
}

/// Plain text cut to `max` characters, ending in `…` when cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut clipped = text.chars().take(max.saturating_sub(1)).collect::<String>();
    clipped.push('…');
    clipped
}

/// Escaped markup cut to at most `max` characters, with the marker when cut.
fn truncate_markup(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let room = max - TRUNCATED.chars().count() - 1;
    format!("{}\n{TRUNCATED}", cut_markup(text, room))
}

/// The longest prefix of escaped markup within `max` characters that does not end inside an
/// entity (`&amp;`) or a mention (`<@U…>`), preferring to end at a line break.
fn cut_markup(text: &str, max: usize) -> &str {
    let end = match text.char_indices().nth(max) {
        Some((index, _)) => index,
        None => return text,
    };
    let mut end = safe_end(text, end);
    if let Some(newline) = text[..end].rfind('\n')
        && newline > 0
        && text[newline..end].chars().count() <= 500
    {
        end = newline;
    }
    &text[..end]
}

/// Moves a cut back to before an entity or mention it would split.
fn safe_end(text: &str, end: usize) -> usize {
    let head = &text[..end];
    let mut end = end;
    if let Some(ampersand) = head.rfind('&')
        && !head[ampersand..].contains(';')
        && head.len() - ampersand < 6
    {
        end = ampersand;
    }
    if let Some(open) = text[..end].rfind('<')
        && !text[open..end].contains('>')
    {
        end = open;
    }
    end
}

/// Escaped markup in pieces of at most `max` characters, split at line breaks where possible.
fn split_markup(text: &str, max: usize) -> Vec<String> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while rest.chars().count() > max {
        let mut piece = cut_markup(rest, max);
        if piece.is_empty() {
            // A single entity or mention longer than the limit cannot happen in practice; cut
            // anywhere rather than loop.
            let index = rest.char_indices().nth(max).map(|(index, _)| index).unwrap_or(rest.len());
            piece = &rest[..index];
        }
        if !piece.trim().is_empty() {
            pieces.push(piece.to_string());
        }
        rest = rest[piece.len()..].strip_prefix('\n').unwrap_or(&rest[piece.len()..]);
    }
    if !rest.trim().is_empty() {
        pieces.push(rest.to_string());
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat::FormField;

    // The messages below are built by the real views and templates, so these snapshots show
    // exactly what Slack receives.

    fn fixed_now() -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::parse_from_rfc3339("2026-11-22T10:05:00Z").unwrap().to_utc()
    }

    fn open_incident() -> crate::incident::Incident {
        crate::incident::summary::sample_open_incident()
    }

    fn incident_notification() -> Message {
        let incident = open_incident();
        let text = crate::incident::summary::Templates::shipped().notification(&incident, fixed_now()).unwrap();
        crate::chat::views::incident_notification(&incident, &text)
    }

    fn diagnosis(finished: bool) -> Message {
        crate::chat::views::sample_diagnosis(finished, "<@U0001>")
    }

    fn resolution_summary() -> Message {
        let incident = crate::incident::summary::sample_incident();
        let text = crate::incident::summary::Templates::shipped().resolution(&incident, fixed_now()).unwrap();
        Message::plain(text)
    }

    /// 10,000 lines of output: far beyond the 12,000-character budget.
    fn huge_output() -> Message {
        let output =
            (1..=10_000).map(|line| format!("line {line}: <row id={line}> & more")).collect::<Vec<_>>().join("\n");
        Message::new()
            .header("Diagnosis `bigexec`")
            .code(output)
            .buttons(vec![Button::new("Remediate", "remediate", "cleanup").danger()])
    }

    /// 70 paragraphs: beyond the 50-block limit.
    fn too_many_blocks() -> Message {
        let mut message = Message::new().header("Diagnosis `fleet`").context("70 hosts checked");
        for index in 1..=70 {
            message = message.text(format!("✅ *host-{index:02}* — ok"));
        }
        message.buttons(vec![Button::new("Rerun", "diagnose", "fleet")])
    }

    fn assert_within_limits(rendered: &SlackRendered) {
        assert!(rendered.blocks.len() <= MAX_BLOCKS, "{} blocks", rendered.blocks.len());
        assert!(block_text_len(&rendered.blocks) <= MAX_TOTAL_BLOCK_TEXT, "{} chars", block_text_len(&rendered.blocks));
        assert!(rendered.text.chars().count() <= MAX_FALLBACK_TEXT);
        let json = serde_json::to_value(&rendered.blocks).unwrap();
        for block in json.as_array().unwrap() {
            if let Some(text) = block.pointer("/text/text").and_then(|text| text.as_str()) {
                assert!(text.chars().count() <= MAX_SECTION_TEXT);
            }
            if let Some(fields) = block.get("fields").and_then(|fields| fields.as_array()) {
                assert!(fields.len() <= MAX_FIELDS_PER_SECTION);
            }
        }
    }

    #[test]
    fn incident_notification_snapshot() {
        let rendered = render_message(&incident_notification());
        assert_within_limits(&rendered);
        insta::assert_json_snapshot!("incident_notification", rendered);
    }

    #[test]
    fn diagnosis_in_progress_snapshot() {
        let rendered = render_message(&diagnosis(false));
        insta::assert_json_snapshot!("diagnosis_in_progress", rendered);
    }

    #[test]
    fn diagnosis_finished_snapshot() {
        let rendered = render_message(&diagnosis(true));
        assert_within_limits(&rendered);
        insta::assert_json_snapshot!("diagnosis_finished", rendered);
    }

    #[test]
    fn resolution_summary_snapshot() {
        let rendered = render_message(&resolution_summary());
        assert_within_limits(&rendered);
        // The 2,800-character root cause fits one section; nothing is truncated.
        assert!(!serde_json::to_string(&rendered.blocks).unwrap().contains(TRUNCATED));
        insta::assert_json_snapshot!("resolution_summary", rendered);
    }

    #[test]
    fn over_limit_message_snapshot() {
        let rendered = render_message(&too_many_blocks());
        assert_within_limits(&rendered);
        assert_eq!(rendered.blocks.len(), MAX_BLOCKS);
        insta::assert_json_snapshot!("over_limit", rendered);
    }

    #[test]
    fn huge_output_is_cut_with_a_marker_and_keeps_header_and_buttons() {
        let rendered = render_message(&huge_output());
        assert_within_limits(&rendered);
        let json = serde_json::to_value(&rendered.blocks).unwrap();
        let blocks = json.as_array().unwrap();
        assert_eq!(blocks.first().unwrap()["type"], "header");
        assert_eq!(blocks.last().unwrap()["type"], "actions");
        assert_eq!(blocks.last().unwrap()["elements"][0]["action_id"], "remediate");
        let last_text = blocks[blocks.len() - 2].pointer("/text/text").unwrap().as_str().unwrap();
        assert!(last_text.ends_with(&format!("```\n{TRUNCATED}")), "{last_text}");
        assert!(block_text_len(&rendered.blocks) > MAX_TOTAL_BLOCK_TEXT - 1_000, "the budget is used, not wasted");
        assert!(rendered.text.ends_with(TRUNCATED));
    }

    #[test]
    fn long_text_is_split_into_sections_not_lost() {
        let text = (0..400).map(|index| format!("check {index:03} ok")).collect::<Vec<_>>().join("\n");
        let rendered = render_message(&Message::plain(text.clone()));
        assert_within_limits(&rendered);
        assert!(rendered.blocks.len() >= 2);
        let shown = rendered
            .blocks
            .iter()
            .map(|block| match block {
                SlackBlock::Section(section) => match section.text.as_ref().unwrap() {
                    SlackBlockText::MarkDown(markdown) => markdown.text.clone(),
                    SlackBlockText::Plain(plain) => plain.text.clone(),
                },
                other => panic!("unexpected block {other:?}"),
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(shown, text);
    }

    #[test]
    fn many_fields_are_split_ten_per_section() {
        let fields = (0..23).map(|index| (format!("k{index}"), format!("v{index}"))).collect();
        let rendered = render_message(&Message::new().fields(fields));
        let counts = rendered
            .blocks
            .iter()
            .map(|block| match block {
                SlackBlock::Section(section) => section.fields.as_ref().unwrap().len(),
                other => panic!("unexpected block {other:?}"),
            })
            .collect::<Vec<_>>();
        assert_eq!(counts, vec![10, 10, 3]);
    }

    #[test]
    fn escaping_keeps_mentions_and_defuses_everything_else() {
        let everyone = |_: &str| true;
        assert_eq!(escape("a < b && c > d", &everyone), "a &lt; b &amp;&amp; c &gt; d");
        assert_eq!(escape("ping <@U0001> and <@slack:W0002>", &everyone), "ping <@U0001> and <@W0002>");
        assert_eq!(escape("<!channel> <https://evil|click>", &everyone), "&lt;!channel&gt; &lt;https://evil|click&gt;");
        assert_eq!(escape("<@discord:123>", &everyone), "&lt;@discord:123&gt;");
        // Only the people the message means: a mention that came with check output is text.
        let only_u1 = |id: &str| id == "U0001";
        assert_eq!(escape("<@U0001> see <@U0666>", &only_u1), "<@U0001> see &lt;@U0666&gt;");
        let message = Message::new().text("by <@U0001>; output: <@U0666> <@slack:U0667>").mentioning(["slack:U0001"]);
        let rendered = render_message(&message);
        assert!(
            rendered.text.contains("by <@U0001>; output: &lt;@U0666&gt; &lt;@slack:U0667&gt;"),
            "{}",
            rendered.text
        );
    }

    #[test]
    fn cuts_never_split_entities_or_mentions() {
        assert_eq!(cut_markup("abc&amp;def", 5), "abc");
        assert_eq!(cut_markup("abc<@U0001>", 6), "abc");
        assert_eq!(cut_markup("abc&amp;def", 8), "abc&amp;");
    }

    #[test]
    fn duplicate_actions_in_one_block_get_unique_ids_that_map_back() {
        let rendered =
            render_message(&Message::new().buttons(vec![
                Button::new("Restart", "remediate", "restart"),
                Button::new("Scale", "remediate", "scale"),
            ]));
        let json = serde_json::to_value(&rendered.blocks).unwrap();
        let first = json[0]["elements"][0]["action_id"].as_str().unwrap();
        let second = json[0]["elements"][1]["action_id"].as_str().unwrap();
        assert_eq!((first, second), ("remediate", "remediate#2"));
        assert_eq!(button_action(second), "remediate");
        assert_eq!(button_action("approve"), "approve");
        assert_eq!(button_action("tag#v2"), "tag#v2");
    }

    #[test]
    fn empty_blocks_are_skipped_and_an_empty_message_still_has_text() {
        let rendered = render_message(&Message::new().text("  ").code("").header(""));
        assert!(rendered.blocks.is_empty());
        assert_eq!(rendered.text, "(no content)");
    }

    #[test]
    fn resolve_form_modal_snapshot() {
        let form = Form {
            title: "Resolve incident #42 — Worker queue backlog".into(),
            submit: "Resolve".into(),
            action: "resolve".into(),
            value: "42".into(),
            fields: vec![
                FormField { id: "root_cause".into(), label: "Root cause".into(), multiline: true, optional: false },
                FormField { id: "fix".into(), label: "Fix".into(), multiline: true, optional: false },
                FormField { id: "prevention".into(), label: "Prevention".into(), multiline: true, optional: true },
            ],
            instead: "resolve with: /incident resolve id=42 root_cause=\"…\"".into(),
        };
        let view = render_modal(&form, r#"{"value":"42"}"#);
        insta::assert_json_snapshot!("resolve_form_modal", view);
    }
}
