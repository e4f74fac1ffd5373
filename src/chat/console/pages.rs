//! The console's pages, rendered on the server from MiniJinja templates embedded in the binary
//! (HTML-escaped): the chat shell (its script does the rest), the incident list, one incident
//! (timeline, checks with their verdicts, remediations, the resolution summary, notes, follow-ups,
//! checklists and the post-mortem draft), login, and
//! refusals. Views are built here from the incident model; templates only lay them out.

use chrono::{DateTime, Utc};
use minijinja::Environment;
use minijinja::value::Serde;
use serde::Serialize;
use serde_json::{Value as Json, json};

use crate::incident::summary::Templates;
use crate::incident::{Incident, TimelineKind, human_duration};

pub struct Pages {
    env: Environment<'static>,
}

/// One row of the incident list.
#[derive(Serialize)]
struct Row {
    id: i64,
    title: String,
    severity: &'static str,
    status: &'static str,
    age: String,
    started: String,
    acknowledged_by: Option<String>,
    resolved_after: Option<String>,
}

/// One check's verdict from a diagnosis on the timeline.
#[derive(Serialize)]
struct CheckView {
    topic: String,
    name: String,
    status: String,
    summary: String,
    at: String,
}

/// A note on the timeline.
#[derive(Serialize)]
struct NoteView {
    at: String,
    by: Option<String>,
    text: String,
}

/// A follow-up or a checklist item, and where it stands.
#[derive(Serialize)]
struct TaskRow {
    text: String,
    owner: String,
    due: Option<String>,
    /// `done`, `overdue` or `open`.
    state: &'static str,
    done: Option<String>,
}

#[derive(Serialize)]
struct ChecklistRow {
    name: String,
    done: usize,
    total: usize,
    items: Vec<TaskRow>,
}

fn task_row(task: &crate::incident::tasks::Task, now: DateTime<Utc>) -> TaskRow {
    let state = if task.is_done() {
        "done"
    } else if task.is_overdue(now) {
        "overdue"
    } else {
        "open"
    };
    let done = task.done_at.map(|at| match &task.done_by {
        Some(by) => format!("{} by {by}", time(at)),
        None => time(at),
    });
    TaskRow {
        text: task.text.clone(),
        owner: task.owner.clone().unwrap_or_else(|| "nobody".to_string()),
        due: task.due_at.map(time),
        state,
        done,
    }
}

#[derive(Serialize)]
struct EventView {
    at: String,
    kind: &'static str,
    by: Option<String>,
    detail: String,
}

impl Default for Pages {
    fn default() -> Self {
        Self::new()
    }
}

impl Pages {
    pub fn new() -> Self {
        let mut env = Environment::new();
        for (name, source) in [
            ("layout.html", include_str!("assets/layout.html")),
            ("chat.html", include_str!("assets/chat.html")),
            ("incidents.html", include_str!("assets/incidents.html")),
            ("incident.html", include_str!("assets/incident.html")),
            ("login.html", include_str!("assets/login.html")),
            ("refusal.html", include_str!("assets/refusal.html")),
        ] {
            env.add_template(name, source).expect("the console's templates are valid");
        }
        env.add_filter("markup", markup);
        Pages { env }
    }

    fn render(&self, name: &str, context: Json) -> String {
        match self.env.get_template(name).and_then(|template| template.render(Serde(&context))) {
            Ok(page) => page,
            Err(error) => {
                tracing::error!(%error, page = name, "Rendering a console page failed");
                format!(
                    "<!doctype html><title>firebell</title><p>This page could not be shown: {}</p>",
                    escape(&error.to_string())
                )
            }
        }
    }

    pub fn chat(&self) -> String {
        self.render("chat.html", json!({"page": "chat"}))
    }

    /// The sign-in form: name and token with `[console] people`, the shared token otherwise.
    pub fn login(&self, csrf: &str, error: Option<&str>, people: bool, signed_in: Option<&str>) -> String {
        self.render(
            "login.html",
            json!({"page": "login", "csrf": csrf, "error": error, "people": people, "signed_in": signed_in}),
        )
    }

    /// A page that says why the request was refused.
    pub fn refusal(message: &str) -> String {
        thread_local! {
            static PAGES: Pages = Pages::new();
        }
        PAGES.with(|pages| pages.render("refusal.html", json!({"page": "refusal", "message": message})))
    }

    pub fn incidents(&self, incidents: &[Incident], now: DateTime<Utc>) -> String {
        let rows: Vec<Row> = incidents.iter().map(|incident| row(incident, now)).collect();
        let (open, recent): (Vec<Row>, Vec<Row>) = rows.into_iter().partition(|row| row.status != "resolved");
        self.render("incidents.html", json!({"page": "incidents", "open": open, "recent": recent}))
    }

    pub fn incident(&self, incident: &Incident, templates: &Templates, now: DateTime<Utc>) -> String {
        let summary = if incident.is_open() {
            templates.notification(incident, now)
        } else {
            templates.resolution(incident, now)
        }
        .unwrap_or_else(|error| format!("(the summary template failed: {error})"));
        let checks: Vec<CheckView> = incident
            .timeline
            .iter()
            .filter(|event| event.kind == TimelineKind::Diagnosis)
            .flat_map(|event| {
                let topic = event.detail["topic"].as_str().unwrap_or("").to_string();
                let at = time(event.at);
                event.detail["checks"].as_array().cloned().unwrap_or_default().into_iter().map(move |check| CheckView {
                    topic: topic.clone(),
                    name: text(&check["name"]),
                    status: text(&check["status"]),
                    summary: text(&check["summary"]),
                    at: at.clone(),
                })
            })
            .collect();
        let timeline: Vec<EventView> = incident
            .timeline
            .iter()
            .map(|event| EventView {
                at: time(event.at),
                kind: event.kind.as_str(),
                by: event.by.clone(),
                detail: describe(&event.detail),
            })
            .collect();
        let thread =
            incident.chat.get("console").map(|home| format!("/?channel={}&thread={}", home.channel, home.message));
        let notes: Vec<NoteView> = incident
            .timeline
            .iter()
            .filter(|event| event.kind == TimelineKind::Note)
            .map(|event| NoteView { at: time(event.at), by: event.by.clone(), text: text(&event.detail["text"]) })
            .collect();
        let followups: Vec<TaskRow> = incident.followups.iter().map(|task| task_row(task, now)).collect();
        let checklists: Vec<ChecklistRow> = incident
            .checklists
            .iter()
            .map(|checklist| ChecklistRow {
                name: checklist.name.clone(),
                done: checklist.done(),
                total: checklist.items.len(),
                items: checklist.items.iter().map(|item| task_row(item, now)).collect(),
            })
            .collect();
        let postmortem = templates
            .postmortem(incident, now)
            .unwrap_or_else(|error| format!("(the post-mortem template failed: {error})"));
        self.render(
            "incident.html",
            json!({
                "page": "incident", "incident": row(incident, now), "impact": incident.impact,
                "commander": incident.commander, "summary": summary, "checks": checks, "timeline": timeline,
                "thread": thread, "notes": notes, "followups": followups, "checklists": checklists,
                "postmortem": postmortem,
            }),
        )
    }
}

fn row(incident: &Incident, now: DateTime<Utc>) -> Row {
    Row {
        id: incident.id,
        title: incident.title.clone(),
        severity: incident.severity.name(),
        status: incident.status.name(),
        age: human_duration(now - incident.started_at),
        started: time(incident.started_at),
        acknowledged_by: incident.acknowledged_by.clone(),
        resolved_after: incident.resolved_at.map(|resolved| human_duration(resolved - incident.started_at)),
    }
}

fn time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn text(value: &Json) -> String {
    match value {
        Json::String(text) => text.clone(),
        Json::Null => String::new(),
        other => other.to_string(),
    }
}

/// A timeline event's detail as one line: `key: value` pairs, nested values as JSON.
fn describe(detail: &Json) -> String {
    match detail {
        Json::Object(map) => map
            .iter()
            .filter(|(key, _)| key.as_str() != "checks")
            .filter(|(_, value)| !value.is_null())
            .map(|(key, value)| format!("{key}: {}", text(value)))
            .collect::<Vec<_>>()
            .join(" · "),
        Json::Null => String::new(),
        other => text(other),
    }
}

/// The chat's common markup (`*bold*`, `` `code` ``) as HTML, everything else escaped.
fn markup(text: &str) -> minijinja::Value {
    static BOLD: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"\*([^*\n]+)\*").expect("a valid pattern"));
    static CODE: std::sync::LazyLock<regex::Regex> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"`([^`\n]+)`").expect("a valid pattern"));
    let escaped = escape(text).replace('"', "&quot;");
    let bold = BOLD.replace_all(&escaped, "<strong>$1</strong>");
    minijinja::Value::from_safe_string(CODE.replace_all(&bold, "<code>$1</code>").into_owned())
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_people_typed() {
        let mut incident = crate::incident::summary::sample_incident();
        incident.title = "<script>alert(1)</script>".to_string();
        let now = incident.started_at + chrono::Duration::minutes(5);
        let list = Pages::new().incidents(std::slice::from_ref(&incident), now);
        assert!(list.contains("&lt;script&gt;alert(1)"), "{list}");
        assert!(!list.contains("<script>alert"));
        let page = Pages::new().incident(&incident, &Templates::shipped(), now);
        assert!(!page.contains("<script>alert"));
        assert!(page.contains("queue depth"), "the checks of the diagnosis are listed: {page}");
    }

    #[test]
    fn refusals_say_why() {
        assert!(Pages::refusal("the web console is off: <set it>").contains("the web console is off: &lt;set it&gt;"));
    }

    #[test]
    fn summaries_keep_their_markup_and_nothing_else() {
        assert_eq!(
            markup("*Fix:* `kubectl` <b>x</b>").to_string(),
            "<strong>Fix:</strong> <code>kubectl</code> &lt;b&gt;x&lt;/b&gt;"
        );
    }
}
