//! Running checks against live systems: one file per kind behind the [`Check`] trait, the
//! [`Action`] a built check is, [`KINDS`] that registers them, and [`Fields`], through
//! which each kind reads its own keys.

mod argv_rule;
mod chart;
mod exec;
mod fields;
mod http;
mod prometheus;
mod redis;
mod sql;
mod targets;
mod tcp;
mod tls;

use std::fmt;

use futures::future::BoxFuture;
use serde::Serialize;
use tokio::sync::mpsc;

pub use chart::{
    CHART_HEIGHT, CHART_WIDTH, CRIT_COLOUR, LEGEND_HEIGHT as CHART_LEGEND_HEIGHT, SERIES_COLOURS, WARN_COLOUR,
};
pub use exec::ExecCheck;
pub use fields::{CHECK_KEYS, Fields, REMEDIATION_KEYS, RawAction, TargetRefs, key_names};
pub use http::HttpCheck;
pub use prometheus::PrometheusCheck;
pub use redis::RedisCheck;
pub use sql::SqlCheck;
pub use targets::{SqlPool, TargetInfo, Targets};
pub use tcp::TcpCheck;
pub use tls::TlsCheck;

use crate::attachment::FileAttachment;
use crate::redact::{LineRedactor, Redactor};
use crate::template::Args;

/// A check's verdict, ordered from best to worst.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Crit,
    /// The check could not run (timeout, connection refused, bad credentials).
    Error,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Crit => "crit",
            Status::Error => "error",
        }
    }

    /// The monitoring-plugin exit code: 0 ok, 1 warn, 2 crit, 3 unknown.
    pub fn exit_code(self) -> i32 {
        match self {
            Status::Ok => 0,
            Status::Warn => 1,
            Status::Crit => 2,
            Status::Error => 3,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a check saw: the values its expressions judge, a one-line summary, the kind's own
/// verdict for when the runbook gives no `expect`, and the files that go with it (a chart).
#[derive(Debug, Clone)]
pub struct Observation {
    pub data: serde_json::Map<String, serde_json::Value>,
    pub summary: String,
    pub default_status: Status,
    pub attachments: Vec<FileAttachment>,
}

impl Observation {
    pub fn new(summary: impl Into<String>, default_status: Status, data: serde_json::Value) -> Self {
        let data = match data {
            serde_json::Value::Object(map) => map,
            _ => serde_json::Map::new(),
        };
        Self { data, summary: summary.into(), default_status, attachments: Vec::new() }
    }
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// Where a running check sends output lines as they appear. The channel is bounded: a check
/// printing faster than the lines are shown waits, rather than queueing them in memory.
#[derive(Clone)]
pub struct LineSink {
    sender: Option<mpsc::Sender<(Stream, String)>>,
    redactor: Redactor,
}

impl LineSink {
    pub fn new(sender: mpsc::Sender<(Stream, String)>, redactor: Redactor) -> Self {
        Self { sender: Some(sender), redactor }
    }

    pub fn discard() -> Self {
        Self { sender: None, redactor: Redactor::default() }
    }

    /// A redactor for one stream's lines; it remembers an open key block from line to line.
    pub fn line_redactor(&self) -> LineRedactor {
        LineRedactor::new(self.redactor.clone())
    }

    /// How far past a cut redaction has to look to see a configured secret whole.
    pub fn redaction_lookahead(&self) -> usize {
        REDACTION_LOOKAHEAD_BYTES.max(self.redactor.longest_secret() + 1)
    }

    /// Sends a line that was already redacted (by this sink's [`LineRedactor`]).
    pub async fn send_redacted(&self, stream: Stream, line: String) {
        if let Some(sender) = &self.sender {
            let _ = sender.send((stream, line)).await;
        }
    }
}

/// What a check gets when it runs.
pub struct CheckContext<'a> {
    pub args: &'a Args,
    pub targets: &'a Targets,
    pub lines: LineSink,
    /// Remediations may run write commands; checks may not.
    pub allow_writes: bool,
    /// How many bytes of output the check keeps and shows (`[commands] max_output`).
    pub max_output: usize,
}

impl CheckContext<'_> {
    /// `text` as a check may keep it: redacted whole, then cut at `max_output` bytes with the
    /// marker. `more_followed` says the source had more than `text` (it was read only so far).
    pub fn capped_output(&self, text: &str, more_followed: bool) -> String {
        let redacted = self.lines.redactor.redact(text);
        let cut = more_followed || redacted.len() > self.max_output;
        let mut end = redacted.len().min(self.max_output);
        while !redacted.is_char_boundary(end) {
            end -= 1;
        }
        let mut kept = redacted[..end].to_string();
        if cut {
            kept.push('\n');
            kept.push_str(&output_cut_marker(self.max_output));
        }
        kept
    }

    /// `text` redacted, for what a check shows other than through its summary and data (the
    /// text drawn into a chart).
    pub fn redacted(&self, text: &str) -> String {
        self.lines.redactor.redact(text).into_owned()
    }

    /// How many bytes a check reads of something it will cut at `max_output`: enough past the
    /// cut for redaction to see a secret there whole.
    pub fn read_limit(&self) -> usize {
        self.max_output + self.lines.redaction_lookahead()
    }
}

/// The marker that ends output cut at `max_output` bytes.
pub fn output_cut_marker(max_output: usize) -> String {
    format!("… output cut at {}", crate::config::ByteSize(max_output))
}

/// How many characters of a summary are shown; the runner cuts there, after redacting.
pub const SUMMARY_CHARS: usize = 200;
/// How much of a long value a check puts into its summary: far more than is shown, so the
/// runner's redaction sees any secret that reaches into the shown part whole before it cuts.
const SUMMARY_SOURCE_CHARS: usize = 4096;
/// How far past a cut redaction looks at least (token shapes and configured values).
const REDACTION_LOOKAHEAD_BYTES: usize = 4096;

/// The part of `text` a check puts into its summary: bounded, but never cut near what is shown.
pub(crate) fn summary_source(text: &str) -> &str {
    match text.char_indices().nth(SUMMARY_SOURCE_CHARS) {
        Some((index, _)) => &text[..index],
        None => text,
    }
}

/// How long a check or remediation may run when its runbook gives no `timeout`.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// One kind of check (or remediation action). Expected failures are `Err(reason)`: the check
/// ends `error` and the reason is shown.
pub trait Check: Send + Sync + fmt::Debug {
    fn run<'a>(&'a self, context: &'a CheckContext<'a>) -> BoxFuture<'a, Result<Observation, String>>;

    /// Exactly what would run, with the arguments filled in, for approval requests and logs.
    fn describe(&self, args: &Args) -> String;

    /// What an approver reads: [`Check::describe`] unless the kind needs its target's settings
    /// to say it (`reveal` shows what is otherwise masked, for the approval hash).
    fn describe_for_approval(&self, args: &Args, _targets: &Targets, _reveal: bool) -> String {
        self.describe(args)
    }

    /// The target whose settings an approval is bound to, for kinds whose target decides what
    /// a remediation changes.
    fn bound_target(&self) -> Option<&str> {
        None
    }
}

/// A check or remediation as built from its table: its kind's name and its config.
#[derive(Debug)]
pub struct Action {
    kind: &'static str,
    check: Box<dyn Check>,
}

/// One check kind, registered once in [`KINDS`]: its name, its keys, the variables its
/// expressions see, whether remediations may use it, and how it is built from a runbook's keys.
pub struct Kind {
    pub name: &'static str,
    /// The kind's own keys: the fields of the struct it deserialises them into.
    pub keys: fn() -> &'static [&'static str],
    pub variables: &'static [&'static str],
    /// Also a remediation kind (writes allowed there).
    pub remediation: bool,
    build: fn(&mut Fields<'_>) -> Option<Box<dyn Check>>,
}

/// Every kind. Adding a kind is its file and one line here; nothing else lists kinds.
pub const KINDS: &[Kind] = &[
    Kind::new("http", key_names::<http::Keys>, HttpCheck::VARIABLES, true, |f| boxed(HttpCheck::from_fields(f))),
    Kind::new("sql", key_names::<sql::Keys>, SqlCheck::VARIABLES, true, |f| boxed(SqlCheck::from_fields(f))),
    Kind::new("redis", key_names::<redis::Keys>, RedisCheck::VARIABLES, true, |f| boxed(RedisCheck::from_fields(f))),
    Kind::new("tls", key_names::<tls::Keys>, TlsCheck::VARIABLES, false, |f| boxed(TlsCheck::from_fields(f))),
    Kind::new("tcp", key_names::<tcp::Keys>, TcpCheck::VARIABLES, false, |f| boxed(TcpCheck::from_fields(f))),
    Kind::new("exec", key_names::<exec::Keys>, ExecCheck::VARIABLES, true, |f| boxed(ExecCheck::from_fields(f))),
    Kind::new("prometheus", key_names::<prometheus::Keys>, PrometheusCheck::VARIABLES, false, |f| {
        boxed(PrometheusCheck::from_fields(f))
    }),
];

impl Kind {
    const fn new(
        name: &'static str,
        keys: fn() -> &'static [&'static str],
        variables: &'static [&'static str],
        remediation: bool,
        build: fn(&mut Fields<'_>) -> Option<Box<dyn Check>>,
    ) -> Kind {
        Kind { name, keys, variables, remediation, build }
    }

    /// The kind named `name` among checks (`is_check`) or remediations.
    pub fn find(name: &str, is_check: bool) -> Option<&'static Kind> {
        KINDS.iter().find(|kind| kind.name == name && (is_check || kind.remediation))
    }

    /// The names of the check kinds, or of the remediation kinds, for error messages.
    pub fn names(is_check: bool) -> Vec<&'static str> {
        KINDS.iter().filter(|kind| is_check || kind.remediation).map(|kind| kind.name).collect()
    }

    /// Builds this kind's config from the runbook's keys; `None` when a problem was recorded.
    pub fn build(&self, fields: &mut Fields<'_>) -> Option<Action> {
        (self.build)(fields).map(|check| Action { kind: self.name, check })
    }
}

fn boxed<C: Check + 'static>(check: Option<C>) -> Option<Box<dyn Check>> {
    check.map(|check| Box::new(check) as Box<dyn Check>)
}

impl Action {
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    pub fn as_check(&self) -> &dyn Check {
        self.check.as_ref()
    }
}

/// Milliseconds, as the integer the expressions compare.
pub(crate) fn millis(duration: std::time::Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// Cuts `text` to at most `max` characters on a character boundary, marking the cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((index, _)) => format!("{}…", &text[..index]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_registered_once() {
        let mut names: Vec<&str> = KINDS.iter().map(|kind| kind.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), KINDS.len(), "a kind is listed twice");
        assert_eq!(Kind::names(true), ["http", "sql", "redis", "tls", "tcp", "exec", "prometheus"]);
        assert_eq!(Kind::names(false), ["http", "sql", "redis", "exec"]);
        assert!(Kind::find("tls", false).is_none(), "tls is a check kind only");
        assert!(Kind::find("nope", true).is_none(), "no fallback: an unknown kind is unknown");
        assert_eq!(Kind::find("tcp", true).map(|kind| (kind.keys)()), Some(&["host", "port"][..]));
    }
}
