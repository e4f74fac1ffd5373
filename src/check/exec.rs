//! `kind = "exec"`: runs a program from an argv (never a shell, see [`super::argv_rule`]),
//! streams its output line by line (redacted, and cut at `[commands] max_output` with a marker),
//! and kills its whole process group on timeout. Sees `exit_code`, `stdout`, `stderr`.
//! Without expressions it follows the monitoring-plugin convention: 0 ok, 1 warn, 2 crit.
//!
//! A child that leaves the process group (`setsid`, `setpgid`, `sudo` with `use_pty`) is not
//! reached by the group kill; its pipes close when it exits, and the check itself still ends at
//! its timeout. Killing those too needs a cgroup per run, which firebell does not create.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use toml::Spanned;

use futures::future::BoxFuture;
use serde_json::json;
use tokio::io::{AsyncRead, AsyncReadExt};

use super::{Check, CheckContext, Fields, LineSink, Observation, Status, Stream, output_cut_marker, summary_source};
use crate::template::{Args, Encoding, Template};

/// The variables a program inherits; everything else it gets from `env`.
const INHERITED_ENV: [&str; 8] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "TMPDIR", "KUBECONFIG"];
/// How much is read from a pipe at a time; a line is gathered from these, never read whole.
const READ_CHUNK_BYTES: usize = 16 << 10;

/// The keys of a `kind = "exec"` table, besides those every check has.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Keys {
    argv: Option<Spanned<Vec<String>>>,
    env: Option<Spanned<BTreeMap<String, String>>>,
}

#[derive(Debug)]
pub struct ExecCheck {
    argv: Vec<Template>,
    env: BTreeMap<String, Template>,
}

impl ExecCheck {
    pub const VARIABLES: &'static [&'static str] = &["exit_code", "stdout", "stderr"];

    pub fn from_fields(fields: &mut Fields<'_>) -> Option<Self> {
        let raw: Keys = fields.keys()?;
        let Some(field) = &raw.argv else {
            fields.error(fields.kind_span(), "an exec needs `argv`, the program and its arguments, e.g. argv = [\"systemctl\", \"is-active\", \"worker\"]");
            return None;
        };
        let argv = fields.template_list("argv", &raw.argv)?;
        let env = fields.template_map("env", &raw.env)?;
        let Some(program) = argv.first() else {
            fields.error(field.span(), "argv is empty: write the program and its arguments");
            return None;
        };
        if !program.is_literal() {
            fields.error(
                field.span(),
                "argv: the program (argv[0]) must be written out; arguments may only fill in later elements",
            );
            return None;
        }
        if let Err(refusal) = super::argv_rule::refuse_shells_and_inline_code(field.get_ref()) {
            fields.error(field.span(), format!("argv: {refusal}"));
            return None;
        }
        Some(ExecCheck { argv, env })
    }

    fn command_line(&self, args: &Args) -> Vec<String> {
        self.argv.iter().map(|word| word.render(args, Encoding::Raw)).collect()
    }
}

/// Kills the child's whole process group when dropped early (timeout, cancellation), so
/// grandchildren do not outlive the check.
struct ProcessGroupGuard(Option<i32>);

impl Drop for ProcessGroupGuard {
    fn drop(&mut self) {
        if let Some(group) = self.0.take() {
            // SAFETY: kill(2) with a negative pid signals that process group; no memory is touched.
            unsafe {
                libc::kill(-group, libc::SIGKILL);
            }
        }
    }
}

/// What is left of one run's `max_output`, shared by its stdout and stderr.
struct OutputBudget {
    max_output: usize,
    remaining: AtomicUsize,
    cut: AtomicBool,
}

impl OutputBudget {
    fn new(max_output: usize) -> Self {
        Self { max_output, remaining: AtomicUsize::new(max_output), cut: AtomicBool::new(false) }
    }

    fn remaining(&self) -> usize {
        self.remaining.load(Ordering::Relaxed)
    }

    /// Takes `wanted` bytes when that many are left; otherwise takes what is left and returns
    /// how much that was, as `Err`.
    fn take(&self, wanted: usize) -> Result<(), usize> {
        let mut granted = 0;
        let _ = self.remaining.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            granted = wanted.min(left);
            Some(left - granted)
        });
        if granted == wanted { Ok(()) } else { Err(granted) }
    }

    /// True for the one caller that gets to write the "output cut" marker.
    fn mark_cut(&self) -> bool {
        self.remaining.store(0, Ordering::Relaxed);
        !self.cut.swap(true, Ordering::Relaxed)
    }

    fn is_cut(&self) -> bool {
        self.cut.load(Ordering::Relaxed)
    }
}

/// One output stream of a run: redacts each line (remembering an open key block), forwards it,
/// keeps it for the expressions, and cuts everything at the budget.
struct StreamPump<'a> {
    stream: Stream,
    sink: LineSink,
    redactor: crate::redact::LineRedactor,
    budget: &'a OutputBudget,
    kept: String,
}

impl StreamPump<'_> {
    /// Shows one line (without its newline). Returns false once the output was cut: the rest
    /// of the stream is read and dropped.
    async fn line(&mut self, raw: &[u8], ends_with_newline: bool) -> bool {
        if self.budget.is_cut() {
            return false;
        }
        let text = String::from_utf8_lossy(raw);
        let (line, carriage_return) = match text.strip_suffix('\r') {
            Some(line) => (line, "\r"),
            None => (text.as_ref(), ""),
        };
        // Redaction sees the whole line (bounded by the caller) before anything is cut.
        let shown = self.redactor.redact_line(line);
        let newline = if ends_with_newline { "\n" } else { "" };
        match self.budget.take(shown.len() + carriage_return.len() + newline.len()) {
            Ok(()) => {
                self.kept.push_str(&shown);
                self.kept.push_str(carriage_return);
                self.kept.push_str(newline);
                self.sink.send_redacted(self.stream, shown).await;
                true
            }
            Err(granted) => {
                let part = prefix_within(&shown, granted);
                if !part.is_empty() {
                    self.kept.push_str(part);
                    self.kept.push('\n');
                    self.sink.send_redacted(self.stream, part.to_string()).await;
                }
                if self.budget.mark_cut() {
                    let marker = output_cut_marker(self.budget.max_output);
                    self.kept.push_str(&marker);
                    self.kept.push('\n');
                    self.sink.send_redacted(self.stream, marker).await;
                }
                false
            }
        }
    }
}

/// The longest prefix of `text` of at most `bytes` bytes that ends on a character boundary.
fn prefix_within(text: &str, bytes: usize) -> &str {
    let mut end = bytes.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Streams `reader` line by line and keeps the output as written (a last line without a
/// newline stays without one), redacted and cut at the budget. It reads in chunks, so a line
/// without a newline never grows past what could still be shown plus the redaction lookahead.
/// Bytes that are not UTF-8 are shown as U+FFFD rather than ending the stream, and after a cut
/// the pipe is still drained, so the program never blocks on it.
async fn pump(mut reader: impl AsyncRead + Unpin, stream: Stream, sink: LineSink, budget: &OutputBudget) -> String {
    let lookahead = sink.redaction_lookahead();
    let mut pump = StreamPump { stream, redactor: sink.line_redactor(), sink, budget, kept: String::new() };
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let mut pending: Vec<u8> = Vec::new();
    let mut showing = true;
    loop {
        let read = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(read) => read,
        };
        if !showing {
            continue;
        }
        let scanned = pending.len();
        pending.extend_from_slice(&chunk[..read]);
        let mut line_start = 0;
        let mut search_from = scanned;
        while let Some(offset) = pending[search_from..].iter().position(|byte| *byte == b'\n') {
            let newline = search_from + offset;
            if !pump.line(&pending[line_start..newline], true).await {
                showing = false;
                break;
            }
            line_start = newline + 1;
            search_from = line_start;
        }
        pending.drain(..line_start);
        if !showing {
            pending = Vec::new();
            continue;
        }
        // A line longer than what can still be shown: its end would be cut anyway, so it is
        // shown now with just enough beyond the cut for redaction to see a secret whole.
        if pending.len() > budget.remaining() + lookahead {
            pump.line(&pending, false).await;
            showing = false;
            pending = Vec::new();
        }
    }
    if showing && !pending.is_empty() {
        pump.line(&pending, false).await;
    }
    pump.kept
}

impl Check for ExecCheck {
    fn run<'a>(&'a self, context: &'a CheckContext<'a>) -> BoxFuture<'a, Result<Observation, String>> {
        Box::pin(async move {
            let argv = self.command_line(context.args);
            let mut command = tokio::process::Command::new(&argv[0]);
            command
                .args(&argv[1..])
                .env_clear()
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                .process_group(0);
            for name in INHERITED_ENV {
                if let Some(value) = std::env::var_os(name) {
                    command.env(name, value);
                }
            }
            for (name, value) in &self.env {
                command.env(name, value.render(context.args, Encoding::Raw));
            }
            let mut child = command.spawn().map_err(|error| format!("cannot start {}: {error}", argv[0]))?;
            let mut guard = ProcessGroupGuard(child.id().and_then(|pid| i32::try_from(pid).ok()));
            let stdout = child.stdout.take().expect("stdout is piped");
            let stderr = child.stderr.take().expect("stderr is piped");
            let budget = OutputBudget::new(context.max_output);
            let (stdout, stderr, status) = tokio::join!(
                pump(stdout, Stream::Stdout, context.lines.clone(), &budget),
                pump(stderr, Stream::Stderr, context.lines.clone(), &budget),
                child.wait()
            );
            let status = status.map_err(|error| format!("waiting for {} failed: {error}", argv[0]))?;
            guard.0 = None;
            let Some(exit_code) = status.code() else {
                return Err(format!("{} was killed by a signal", argv[0]));
            };
            let default_status = match exit_code {
                0 => Status::Ok,
                1 => Status::Warn,
                2 => Status::Crit,
                _ => Status::Error,
            };
            let first_line = stdout
                .lines()
                .find(|line| !line.trim().is_empty())
                .or_else(|| stderr.lines().find(|line| !line.trim().is_empty()));
            let summary = match first_line {
                Some(line) => format!("exit {exit_code}: {}", summary_source(line.trim())),
                None => format!("exit {exit_code}"),
            };
            Ok(Observation::new(
                summary,
                default_status,
                json!({"exit_code": exit_code, "stdout": stdout, "stderr": stderr}),
            ))
        })
    }

    /// `run ["prog", "arg with space"]` then `env NAME: "value"` per variable: each word quoted,
    /// so no two argvs read the same, and every variable the program is given.
    fn describe(&self, args: &Args) -> String {
        let words: Vec<String> = self.command_line(args).iter().map(|word| super::http::quoted(word)).collect();
        let mut lines = vec![format!("run [{}]", words.join(", "))];
        for (name, value) in &self.env {
            lines.push(format!("env {name}: {}", super::http::quoted(&value.render(args, Encoding::Raw))));
        }
        lines.join("\n")
    }
}
