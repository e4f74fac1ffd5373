//! What the bot says, as platform-neutral [`Message`]s: topic lists, diagnoses in progress and
//! finished, incident notifications with their buttons, escalation pages, on-call answers.

use chrono::{DateTime, Utc};

use super::message::{Button, Message};
use crate::check::Status;
use crate::escalation::Directory;
use crate::incident::tasks::{ChecklistState, Task};
use crate::incident::{Incident, IncidentStatus, human_duration};
use crate::runbook::Catalogue;

pub const ACTION_ACK: &str = "incident_ack";
pub const ACTION_RESOLVE: &str = "incident_resolve";
pub const ACTION_DIAGNOSE_MENU: &str = "incident_diagnose";
pub const ACTION_DIAGNOSE: &str = "diagnose";
pub const ACTION_REMEDIATE: &str = "remediate";
pub const FORM_RESOLVE: &str = "resolve_form";

/// Characters of check lines per text block (Slack's section limit is 3,000).
const BLOCK_TEXT_BUDGET: usize = 2_800;

pub fn status_mark(status: Status) -> &'static str {
    match status {
        Status::Ok => "✅",
        Status::Warn => "⚠️",
        Status::Crit => "🔴",
        Status::Error => "⛔",
    }
}

pub fn topics(catalogue: &Catalogue) -> Message {
    let lines: Vec<String> =
        catalogue.runbooks().map(|runbook| format!("• `{}` — {}", runbook.name, runbook.summary)).collect();
    Message::new()
        .header("Diagnosis topics")
        .text(if lines.is_empty() { "No runbooks are loaded.".to_string() } else { lines.join("\n") })
        .context("Run one with /diagnose TOPIC [key=value…]")
}

/// One check's line in a diagnosis message.
#[derive(Debug, Clone)]
pub enum CheckLine {
    Running { name: String },
    Done { name: String, status: Status, summary: String, duration_ms: u64 },
}

pub struct DiagnosisView<'a> {
    pub topic: &'a str,
    pub summary: &'a str,
    pub args: &'a str,
    pub requested_by: &'a str,
    pub runbook_url: Option<&'a str>,
    pub lines: &'a [CheckLine],
    /// The worst verdict, once every check finished.
    pub finished: Option<Status>,
    pub suggestions: Vec<Button>,
}

pub fn diagnosis(view: DiagnosisView<'_>) -> Message {
    let title = match view.finished {
        Some(worst) => format!("{} diagnose {}: {}", status_mark(worst), view.topic, worst.name().to_uppercase()),
        None => format!("🔎 diagnose {} — running", view.topic),
    };
    let body: Vec<String> = view
        .lines
        .iter()
        .map(|line| match line {
            CheckLine::Running { name } => format!("⏳ *{name}* — running"),
            CheckLine::Done { name, status, summary, duration_ms } => {
                format!(
                    "{} *{}* {name} — {summary} ({duration_ms} ms)",
                    status_mark(*status),
                    status.name().to_uppercase()
                )
            }
        })
        .collect();
    let mut context = format!("{} · requested by {}", view.summary, view.requested_by);
    if !view.args.is_empty() {
        context.push_str(&format!(" · {}", view.args));
    }
    if let Some(link) = view.runbook_url {
        context.push_str(&format!(" · runbook: {link}"));
    }
    let mut message = Message::new().header(title).context(context);
    // One text block per ~2,800 characters of lines: platforms cap a block's text.
    let mut block = String::new();
    for line in body {
        if !block.is_empty() && block.chars().count() + line.chars().count() + 1 > BLOCK_TEXT_BUDGET {
            message = message.text(std::mem::take(&mut block));
        }
        if !block.is_empty() {
            block.push('\n');
        }
        block.push_str(&line);
    }
    if !block.is_empty() {
        message = message.text(block);
    }
    if !view.suggestions.is_empty() {
        message = message.text("Suggested remediations (each needs approval):").buttons(view.suggestions);
    }
    message
}

/// The incident's top message: the notification template's text, then the buttons that fit its
/// state.
pub fn incident_notification(incident: &Incident, rendered: &str) -> Message {
    let id = incident.id.to_string();
    let buttons = match incident.status {
        IncidentStatus::Triggered => vec![
            Button::new("Acknowledge", ACTION_ACK, &id).primary(),
            Button::new("Diagnose", ACTION_DIAGNOSE_MENU, &id),
            Button::new("Resolve", ACTION_RESOLVE, &id).danger(),
        ],
        IncidentStatus::Acknowledged => vec![
            Button::new("Diagnose", ACTION_DIAGNOSE_MENU, &id),
            Button::new("Resolve", ACTION_RESOLVE, &id).danger(),
        ],
        IncidentStatus::Resolved => Vec::new(),
    };
    Message::new().text(rendered).buttons(buttons)
}

/// Topics as buttons, to run one in the incident's thread.
pub fn diagnose_menu(catalogue: &Catalogue) -> Message {
    let buttons: Vec<Button> = catalogue
        .runbooks()
        .take(25)
        .map(|runbook| Button::new(&runbook.name, ACTION_DIAGNOSE, &runbook.name))
        .collect();
    Message::new().text("Which runbook should run here?").buttons(buttons)
}

pub fn escalation_page(incident: &Incident, mentions: &[String], level: usize, round: u32) -> Message {
    let repeat = if round > 0 { format!(" (repeat {round})") } else { String::new() };
    Message::new()
        .text(format!(
            "🚨 Escalation level {}{repeat}: {} — incident #{} *{}* is not acknowledged yet.",
            level + 1,
            mentions.join(" "),
            incident.id,
            incident.title
        ))
        .buttons(vec![Button::new("Acknowledge", ACTION_ACK, incident.id.to_string()).primary()])
}

pub fn page_direct(incident: &Incident, level: usize) -> Message {
    Message::new()
        .text(format!(
            "🚨 You are paged for incident #{} *{}* ({}), escalation level {}. Impact: {}",
            incident.id,
            incident.title,
            incident.severity.name(),
            level + 1,
            incident.impact.as_deref().unwrap_or("not assessed yet")
        ))
        .buttons(vec![Button::new("Acknowledge", ACTION_ACK, incident.id.to_string()).primary()])
}

pub fn incident_list(incidents: &[Incident], now: DateTime<Utc>) -> Message {
    if incidents.is_empty() {
        return Message::plain("No open incidents.");
    }
    let lines: Vec<String> = incidents
        .iter()
        .map(|incident| {
            let acknowledged =
                incident.acknowledged_by.as_deref().map(|by| format!(", acknowledged by {by}")).unwrap_or_default();
            format!(
                "• #{} *{}* — {} {}, open {}{acknowledged}",
                incident.id,
                incident.title,
                incident.severity.name(),
                incident.status.name(),
                human_duration(now - incident.started_at)
            )
        })
        .collect();
    Message::new().header("Open incidents").text(lines.join("\n"))
}

pub fn oncall(
    directory: &Directory,
    schedule: Option<&str>,
    now: DateTime<Utc>,
    mention: &dyn Fn(&crate::config::Person) -> String,
) -> Result<Message, String> {
    let names: Vec<&String> = match schedule {
        Some(name) => {
            if !directory.schedules.contains_key(name) {
                let known: Vec<&str> = directory.schedules.keys().map(String::as_str).collect();
                return Err(if known.is_empty() {
                    "no schedules are configured ([[schedules]] in firebell.toml)".to_string()
                } else {
                    format!("unknown schedule '{name}'; schedules: {}", known.join(", "))
                });
            }
            directory.schedules.keys().filter(|key| key.as_str() == name).collect()
        }
        None => directory.schedules.keys().collect(),
    };
    if names.is_empty() {
        return Err("no schedules are configured ([[schedules]] in firebell.toml)".to_string());
    }
    let mut people = Vec::new();
    let lines: Vec<String> = names
        .into_iter()
        .map(|name| {
            let schedule = &directory.schedules[name];
            let current = schedule.on_call(now);
            let next = schedule.next(now);
            let covering = if current.is_override { " (override)" } else { "" };
            people.extend([current.person.to_string(), next.person.to_string()]);
            format!(
                "• *{name}*: {}{covering} until {} · next: {}",
                mention(&current.person),
                current.until.format("%a %d %b %H:%M UTC"),
                mention(&next.person)
            )
        })
        .collect();
    Ok(Message::new().header("On call").text(lines.join("\n")).mentioning(people))
}

pub const ACTION_APPROVE: &str = "remediation_approve";
pub const ACTION_DENY: &str = "remediation_deny";

/// `name` or `name?key=value&key=value`: a suggested remediation with the diagnosis's arguments.
/// Untrusted when it comes back: the arguments are checked against their patterns again and the
/// request shows exactly what would run before anyone approves it.
pub fn remediation_value(name: &str, args: &[(String, String)]) -> String {
    if args.is_empty() {
        return name.to_string();
    }
    let query: Vec<String> = args
        .iter()
        .map(|(key, value)| {
            let encode = |text: &str| {
                percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
            };
            format!("{}={}", encode(key), encode(value))
        })
        .collect();
    format!("{name}?{}", query.join("&"))
}

pub fn parse_remediation_value(value: &str) -> (String, Vec<(String, String)>) {
    let (name, query) = value.split_once('?').unwrap_or((value, ""));
    let decode = |text: &str| percent_encoding::percent_decode_str(text).decode_utf8_lossy().into_owned();
    let args = query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect();
    (name.to_string(), args)
}

pub fn remediations(catalogue: &Catalogue) -> Message {
    let lines: Vec<String> = catalogue
        .runbooks()
        .flat_map(|runbook| runbook.remediations.iter().map(move |remediation| (runbook, remediation)))
        .map(|(runbook, remediation)| {
            format!(
                "• `{}` — {} ({}; {} approval(s) from {})",
                remediation.name,
                remediation.summary,
                runbook.name,
                remediation.approvals,
                remediation.approvers.join(", ")
            )
        })
        .collect();
    Message::new()
        .header("Remediations")
        .text(if lines.is_empty() { "No remediations are loaded.".to_string() } else { lines.join("\n") })
        .context("Request one with /remediate NAME [key=value…]; it runs once approved.")
}

/// Characters of a request's action shown in its message; a longer one is shown cut, with a
/// pointer to the file holding it whole (approvers never approve what they could not read).
pub const REQUEST_INLINE_CHARS: usize = 2_500;

/// The whole action of a request too long for its message, as the file posted beside it.
pub fn remediation_request_file(request: &crate::store::RemediationRequest) -> Option<super::message::FileAttachment> {
    (request.command.chars().count() > REQUEST_INLINE_CHARS).then(|| super::message::FileAttachment {
        filename: format!("remediation-request-{}-{}.txt", request.id, request.action),
        title: format!("What request #{} runs, in full ({})", request.id, request.action),
        content: request.command.clone().into_bytes(),
    })
}

/// A remediation request as it stands: what runs (the whole action, or the start of it and the
/// file that holds it all), with which arguments, who asked, who approved, and its state.
pub fn remediation_request(
    request: &crate::store::RemediationRequest,
    summary: &str,
    approver_groups: &[String],
    mention: &dyn Fn(&str) -> String,
) -> Message {
    let approvals = request.approvers();
    let arguments = if request.args.is_empty() {
        "none".to_string()
    } else {
        request
            .args
            .iter()
            .map(|(name, value)| format!("{name}={}", serde_json::Value::String(value.clone())))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut fields = vec![
        ("Arguments".to_string(), arguments),
        ("Requested by".to_string(), mention(&request.requested_by)),
        (
            "Approvals".to_string(),
            format!("{} of {} (from {})", approvals.len(), request.approvals_needed, approver_groups.join(", ")),
        ),
        ("Expires".to_string(), request.expires_at.format("%H:%M:%S UTC").to_string()),
    ];
    if let Some(incident) = request.incident_id {
        fields.push(("Incident".to_string(), format!("#{incident}")));
    }
    let approved_by = approvals.iter().map(|voter| mention(voter)).collect::<Vec<_>>().join(", ");
    let denied_by = request
        .votes
        .iter()
        .filter(|vote| vote.decision == "deny")
        .map(|vote| mention(&vote.voter))
        .collect::<Vec<_>>()
        .join(", ");
    let result = request.result.clone().unwrap_or_default();
    let state = match request.state.as_str() {
        "pending" => None,
        "running" => Some(format!("▶️ Approved by {approved_by} — running…")),
        "succeeded" => Some(format!("✅ Succeeded (approved by {approved_by}): {result}")),
        "failed" => Some(format!("❌ Failed (approved by {approved_by}): {result}")),
        "denied" => Some(format!("🚫 Denied by {denied_by}; nothing ran.")),
        "interrupted" => Some(format!(
            "⚠️ Interrupted (approved by {approved_by}): firebell stopped while it ran, so whether it took effect is unknown."
        )),
        "expired" => Some("⌛ Expired before it was approved; nothing ran. Request it again if it is still needed.".to_string()),
        "stale" => Some("⚠️ The runbook changed after this request, so its approvals no longer apply; nothing ran. Request it again.".to_string()),
        other => Some(format!("State: {other}")),
    };
    let mut message = Message::new()
        .header(format!("🛠 Remediation request #{}: {}", request.id, request.action))
        .text(summary.to_string());
    message = match remediation_request_file(request) {
        None => message.code(request.command.clone()),
        Some(file) => {
            let shown: String = request.command.chars().take(REQUEST_INLINE_CHARS).collect();
            let rest = request.command.chars().count() - REQUEST_INLINE_CHARS;
            message.code(shown).context(format!(
                "…and {rest} more characters: the whole action is in the file {} in this thread. Read it before approving.",
                file.filename
            ))
        }
    };
    message = message.fields(fields).mentioning(
        std::iter::once(request.requested_by.clone()).chain(request.votes.iter().map(|vote| vote.voter.clone())),
    );
    match state {
        None => {
            message = message.buttons(vec![
                Button::new("Approve", ACTION_APPROVE, request.id.to_string()).primary(),
                Button::new("Deny", ACTION_DENY, request.id.to_string()).danger(),
            ])
        }
        Some(state) => message = message.text(state),
    }
    message
}

/// The incident's own people: its commander, who declared, acknowledged and resolved it, and who
/// posted its updates. Only they are mentioned in its notification, thread notes and summary; a
/// person named in its title or impact (an alert's text) is not.
pub fn incident_people(incident: &Incident) -> Vec<String> {
    let mut people: Vec<String> =
        [&incident.commander, &incident.declared_by, &incident.acknowledged_by, &incident.resolved_by]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
    let updates = incident.timeline.iter().filter(|event| {
        use crate::incident::TimelineKind::*;
        matches!(event.kind, Declared | Acknowledged | Status | Resolved)
    });
    people.extend(updates.filter_map(|event| event.by.clone()));
    people.sort();
    people.dedup();
    people
}

/// Turns `slack:U0001` in rendered text into the platform's mention (`<@U0001>`) for those of
/// `people` on that platform; anyone else stays as written.
/// A person on `adapter`'s platform (`slack:U1`) as its mention; `None` for anyone else.
pub fn person_mention(adapter: &dyn super::ChatAdapter) -> impl Fn(&str) -> Option<String> + '_ {
    move |person: &str| {
        person
            .strip_prefix(adapter.platform())
            .and_then(|rest| rest.strip_prefix(':'))
            .filter(|id| !id.is_empty())
            .map(|id| adapter.mention(id))
    }
}

pub fn mention_people(text: &str, adapter: &dyn super::ChatAdapter, people: &[String]) -> String {
    let platform = adapter.platform();
    let pattern = format!(r"\b{}:([A-Za-z0-9][A-Za-z0-9._-]*)", regex::escape(platform));
    match regex::Regex::new(&pattern) {
        Ok(pattern) => pattern
            .replace_all(text, |captures: &regex::Captures<'_>| {
                if people.iter().any(|person| person == &captures[0]) {
                    adapter.mention(&captures[1])
                } else {
                    captures[0].to_string()
                }
            })
            .into_owned(),
        Err(_) => text.to_string(),
    }
}

/// A diagnosis of the worker queues, running or finished with a suggested remediation: what the
/// platform renderers' snapshots show.
#[cfg(test)]
pub(crate) fn sample_diagnosis(finished: bool, requested_by: &str) -> Message {
    use crate::check::Status;
    let done = |name: &str, status: Status, summary: &str, duration_ms: u64| CheckLine::Done {
        name: name.into(),
        status,
        summary: summary.into(),
        duration_ms,
    };
    let mut lines = vec![
        done("redis ping", Status::Ok, "PING = PONG", 3),
        done("queue depth", Status::Warn, "LLEN trade_execution_queue = 57 (warn: value > 50)", 12),
    ];
    if finished {
        lines.push(done("oldest job", Status::Crit, "1 row: age_s=1620 (crit: row.age_s > 900)", 8));
        lines.push(done("workers", Status::Ok, "exit 0: 4 of 4 workers heartbeating", 5));
    } else {
        lines.push(CheckLine::Running { name: "oldest job".into() });
        lines.push(CheckLine::Running { name: "workers".into() });
    }
    let suggestions = if finished {
        vec![
            Button::new(
                "Run restart-worker",
                ACTION_REMEDIATE,
                remediation_value("restart-worker", &[("queue".into(), "trade_execution_queue".into())]),
            )
            .danger(),
        ]
    } else {
        Vec::new()
    };
    diagnosis(DiagnosisView {
        topic: "queue",
        summary: "Depth of the worker queues",
        args: "queue=trade_execution_queue",
        requested_by,
        runbook_url: Some("https://wiki.example/oncall#worker-queue-backlog"),
        lines: &lines,
        finished: finished.then_some(Status::Crit),
        suggestions,
    })
    .mentioning([requested_by.trim_start_matches("<@").trim_end_matches('>')])
}

/// One re-run check of a remediation's verification: its verdict before the remediation ran
/// (when it could be read) and after.
pub struct VerifiedCheck {
    pub name: String,
    pub before: Option<Status>,
    pub after: Status,
    pub summary: String,
}

/// The Verification message in a remediation's thread: each check before → after, and whether
/// the remediation fixed things (every re-run check ok).
pub fn verification(remediation: &str, request: i64, checks: &[VerifiedCheck], fixed: bool) -> Message {
    let verdict = if fixed { "✅ fixed" } else { "❌ not fixed" };
    let lines: Vec<String> = checks
        .iter()
        .map(|check| {
            let before = match check.before {
                Some(status) => format!("{} {}", status_mark(status), status.name()),
                None => "not read".to_string(),
            };
            let after = format!("{} {}", status_mark(check.after), check.after.name());
            format!("• *{}*: {before} → {after} — {}", check.name, check.summary)
        })
        .collect();
    Message::new()
        .header(format!("Verification: {remediation} (request #{request})"))
        .text(format!("{verdict}\n{}", lines.join("\n")))
}

pub const ACTION_TASK_DONE: &str = "task_done";

/// How an owner reads in chat: a person on this platform mentioned, anyone else as written.
fn owner_text(owner: Option<&str>, mention: &dyn Fn(&str) -> Option<String>) -> String {
    match owner {
        None => "no owner".to_string(),
        Some(owner) => mention(owner).unwrap_or_else(|| format!("`{owner}`")),
    }
}

fn due_text(task: &Task, now: DateTime<Utc>) -> String {
    match (task.done_at, task.due_at) {
        (Some(_), _) => String::new(),
        (None, Some(due)) if due <= now => format!(", overdue since {}", due.format("%Y-%m-%d %H:%M UTC")),
        (None, Some(due)) => format!(", due {} (in {})", due.format("%Y-%m-%d %H:%M UTC"), human_duration(due - now)),
        (None, None) => String::new(),
    }
}

fn task_line(task: &Task, now: DateTime<Utc>, mention: &dyn Fn(&str) -> Option<String>) -> String {
    let done = match (&task.done_at, &task.done_by) {
        (Some(at), by) => format!(
            " — done {}{}",
            at.format("%Y-%m-%d %H:%M UTC"),
            by.as_deref()
                .map(|by| format!(" by {}", mention(by).unwrap_or_else(|| by.to_string())))
                .unwrap_or_default()
        ),
        (None, _) => String::new(),
    };
    let mark = if task.is_done() { "✅" } else { "⬜" };
    format!("{mark} {} — {}{}{done}", task.text, owner_text(task.owner.as_deref(), mention), due_text(task, now))
}

/// A follow-up as posted in the incident's thread, with its Done button while it is open.
pub fn followup(task: &Task, now: DateTime<Utc>, mention: &dyn Fn(&str) -> Option<String>) -> Message {
    let message = Message::new().text(format!("📌 Follow-up #{}: {}", task.id, task_line(task, now, mention)));
    if task.is_done() {
        message
    } else {
        message.buttons(vec![Button::new("Done", ACTION_TASK_DONE, task.id.to_string()).primary()])
    }
}

/// An incident's follow-ups, for `/incident followups`.
pub fn followup_list(incident: &Incident, now: DateTime<Utc>, mention: &dyn Fn(&str) -> Option<String>) -> Message {
    if incident.followups.is_empty() {
        return Message::plain(format!(
            "Incident #{} has no follow-ups. Add one: /incident followup TEXT [owner=PERSON] [due=48h]",
            incident.id
        ));
    }
    let lines: Vec<String> =
        incident.followups.iter().map(|task| format!("#{} {}", task.id, task_line(task, now, mention))).collect();
    let open: Vec<Button> = incident
        .followups
        .iter()
        .filter(|task| !task.is_done())
        .map(|task| Button::new(format!("Done #{}", task.id), ACTION_TASK_DONE, task.id.to_string()))
        .collect();
    Message::new().header(format!("Follow-ups of incident #{}", incident.id)).text(lines.join("\n")).buttons(open)
}

/// A checklist as posted in the incident's thread: one line per item and a Done button for each
/// open one; edited as items are ticked.
pub fn checklist(checklist: &ChecklistState, now: DateTime<Utc>, mention: &dyn Fn(&str) -> Option<String>) -> Message {
    let lines: Vec<String> = checklist.items.iter().map(|item| task_line(item, now, mention)).collect();
    let buttons: Vec<Button> = checklist
        .items
        .iter()
        .filter(|item| !item.is_done())
        .map(|item| Button::new(format!("Done: {}", short(&item.text, 60)), ACTION_TASK_DONE, item.id.to_string()))
        .collect();
    Message::new()
        .header(format!("Checklist: {} ({}/{} done)", checklist.name, checklist.done(), checklist.items.len()))
        .text(lines.join("\n"))
        .buttons(buttons)
}

/// The reminder of a due task, in the incident's thread.
pub fn reminder(incident: &Incident, task: &Task, mentions: &[String], now: DateTime<Utc>) -> Message {
    let what = match &task.checklist {
        Some(name) => format!("checklist *{name}* item"),
        None => format!("follow-up #{}", task.id),
    };
    let who = if mentions.is_empty() { String::new() } else { format!("{} — ", mentions.join(" ")) };
    Message::new()
        .text(format!("⏰ {who}{what} of incident #{} is due: {}{}", incident.id, task.text, due_text(task, now)))
        .buttons(vec![Button::new("Done", ACTION_TASK_DONE, task.id.to_string()).primary()])
}

/// The reminder by direct message.
pub fn reminder_direct(incident: &Incident, task: &Task, now: DateTime<Utc>) -> Message {
    Message::new()
        .text(format!(
            "⏰ Due for incident #{} *{}*: {}{}",
            incident.id,
            incident.title,
            task.text,
            due_text(task, now)
        ))
        .buttons(vec![Button::new("Done", ACTION_TASK_DONE, task.id.to_string()).primary()])
}

fn short(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let cut: String = text.chars().take(max - 1).collect();
    format!("{cut}…")
}
