//! `kind = "exec"`: runs a program from an argv (never a shell), streams its output line by
//! line, and kills its whole process group on timeout. Sees `exit_code`, `stdout`, `stderr`.
//! Without expressions it follows the monitoring-plugin convention: 0 ok, 1 warn, 2 crit.

use std::collections::BTreeMap;
use std::process::Stdio;

use futures::future::BoxFuture;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use super::{Check, CheckContext, LineSink, Observation, Status, Stream, truncate};
use crate::runbook::{Args, Encoding, Fields, Template};

/// Output beyond this is streamed but not kept for the expressions.
const MAX_KEPT_BYTES: usize = 1 << 20;
/// The variables a program inherits; everything else it gets from `env`.
const INHERITED_ENV: [&str; 8] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ", "USER", "TMPDIR", "KUBECONFIG"];
const SHELLS: [&str; 10] = ["sh", "bash", "zsh", "dash", "ksh", "fish", "csh", "tcsh", "busybox", "env"];

#[derive(Debug)]
pub struct ExecCheck {
    argv: Vec<Template>,
    env: BTreeMap<String, Template>,
}

impl ExecCheck {
    pub const KEYS: &'static [&'static str] = &["argv", "env"];
    pub const VARIABLES: &'static [&'static str] = &["exit_code", "stdout", "stderr"];

    pub fn from_fields(fields: &mut Fields<'_>) -> Option<Self> {
        let raw = fields.raw;
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
        let program_name = field.get_ref()[0].rsplit('/').next().unwrap_or_default().to_string();
        let runs_shell = SHELLS.contains(&program_name.as_str())
            && field.get_ref().iter().skip(1).any(|word| word.starts_with('-') && word.contains('c'));
        if runs_shell || (program_name == "env" && field.get_ref().len() > 1) {
            fields.error(field.span(), format!("argv: runs a shell ({program_name} -c); write the program and each argument as its own argv element, no shell"));
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

/// Streams `reader` line by line and keeps the output exactly as written (a last line without
/// a newline stays without one). Bytes that are not UTF-8 are shown as U+FFFD rather than
/// ending the stream, so the pipe is always drained and the program never blocks on it.
async fn pump(reader: impl AsyncRead + Unpin, stream: Stream, sink: LineSink) -> String {
    let mut reader = BufReader::new(reader);
    let mut kept = String::new();
    let mut buffer = Vec::new();
    loop {
        buffer.clear();
        match reader.read_until(b'\n', &mut buffer).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                let text = String::from_utf8_lossy(&buffer);
                let line = text.strip_suffix('\n').unwrap_or(&text);
                sink.send(stream, line.strip_suffix('\r').unwrap_or(line));
                if kept.len() + text.len() <= MAX_KEPT_BYTES {
                    kept.push_str(&text);
                }
            }
        }
    }
    kept
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
            let (stdout, stderr, status) = tokio::join!(
                pump(stdout, Stream::Stdout, context.lines.clone()),
                pump(stderr, Stream::Stderr, context.lines.clone()),
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
                Some(line) => format!("exit {exit_code}: {}", truncate(line.trim(), 160)),
                None => format!("exit {exit_code}"),
            };
            Ok(Observation::new(
                summary,
                default_status,
                json!({"exit_code": exit_code, "stdout": stdout, "stderr": stderr}),
            ))
        })
    }

    fn describe(&self, args: &Args) -> String {
        let words: Vec<String> = self
            .command_line(args)
            .into_iter()
            .map(|word| if word.is_empty() || word.contains(char::is_whitespace) { format!("{word:?}") } else { word })
            .collect();
        format!("run {}", words.join(" "))
    }
}
