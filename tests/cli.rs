//! Black-box tests of the `firebell` binary as a user runs it: in a folder holding
//! `firebell.toml` and `commands/*.toml`, reading what it prints and its exit code.

mod common;
mod support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

use common::{Workspace, toml_str};
use serde_json::{Value, json};

/// A runbook of exec checks, each running `script` with the given arguments.
fn exec_runbook(name: &str, args: &str, checks: &[(&str, &Path, &[&str])]) -> String {
    let mut text = format!("name = \"{name}\"\nsummary = \"{name} checks\"\n{args}\n");
    for (check, script, extra) in checks {
        let mut argv = vec![toml_str(&script.display().to_string())];
        argv.extend(extra.iter().map(|word| toml_str(word)));
        text.push_str(&format!(
            "[[checks]]\nname = \"{check}\"\nkind = \"exec\"\nargv = [{}]\ntimeout = \"20s\"\n\n",
            argv.join(", ")
        ));
    }
    text
}

/// Kills the child if the test fails while it still runs.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn run_prints_each_check_as_it_finishes() {
    let workspace = Workspace::new();
    let release = workspace.path().join("release");
    let fast = workspace.script("fast", "echo 'fast done'");
    let slow = workspace.script(
        "slow",
        &format!(
            "echo 'waiting for release'\nwhile [ ! -e '{}' ]; do sleep 0.02; done\necho 'released'",
            release.display()
        ),
    );
    workspace.runbook(
        "workers.toml",
        &exec_runbook("workers", "", &[("slow check", &slow, &[]), ("fast check", &fast, &[])]),
    );

    let child =
        workspace.command(&["run", "diagnose", "workers"]).stdout(Stdio::piped()).spawn().expect("firebell starts");
    let mut child = KillOnDrop(child);
    let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    // The slow check cannot finish before the release file exists, so the fast check's result
    // line must be on the terminal while the slow one still runs.
    loop {
        let line = lines.next().expect("firebell ended before printing the fast check's result").unwrap();
        assert!(!line.starts_with("OK    slow check"), "the slow check finished before its release: {seen:?}");
        let fast_result = line.starts_with("OK    fast check — exit 0: fast done (") && line.ends_with(" ms)");
        seen.push(line);
        if fast_result {
            break;
        }
    }
    assert!(seen[0].starts_with("diagnose workers"), "{seen:?}");
    std::fs::write(&release, "").unwrap();
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = child.0.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{seen:?} {rest:?}");
    assert!(rest.iter().any(|line| line == "      slow check | released"), "{rest:?}");
    assert!(rest.iter().any(|line| line.starts_with("OK    slow check — exit 0: waiting for release (")), "{rest:?}");
    let last = rest.last().expect("a summary line");
    assert!(last.starts_with("OK — 2 checks: 2 ok, 0 warn, 0 crit, 0 error in "), "{last}");
}

#[test]
fn run_json_prints_one_event_per_line_ending_with_done_matching_the_exit_code() {
    let workspace = Workspace::new();
    let exits = workspace.script("exits", "echo \"exiting with $1\"\nexit \"$1\"");
    let fine = workspace.script("fine", "echo 'fine'");
    let args = "[args.code]\npattern = '^[0-9]$'\nhelp = \"exit code\"\n";
    workspace.runbook(
        "plugin.toml",
        &exec_runbook("plugin", args, &[("fine", &fine, &[]), ("plugin", &exits, &["{{code}}"])]),
    );

    for (code, status) in [(0, "ok"), (1, "warn"), (2, "crit"), (3, "error")] {
        let finished = workspace.run(&["run", "diagnose", "plugin", &format!("code={code}"), "--json"]);
        assert_eq!(finished.code, code, "{finished:?}");
        let events: Vec<Value> = finished
            .stdout
            .lines()
            .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON: {line}: {error}")))
            .collect();
        let done = events.last().expect("at least the done event");
        assert_eq!(done["event"], json!("done"), "{events:?}");
        assert_eq!(done["status"], json!(status));
        assert_eq!(
            (done["ok"].clone(), done[status].clone()),
            if code == 0 { (json!(2), json!(2)) } else { (json!(1), json!(1)) }
        );
        let checks: Vec<&Value> = events.iter().filter(|event| event["event"] == "check").collect();
        assert_eq!(checks.len(), 2, "{events:?}");
        let plugin = checks.iter().find(|event| event["name"] == "plugin").expect("the plugin check");
        assert_eq!(plugin["status"], json!(status));
        assert_eq!(plugin["summary"], json!(format!("exit {code}: exiting with {code}")));
        assert_eq!(plugin["data"]["exit_code"], json!(code));
        assert!(plugin["duration_ms"].is_u64(), "{plugin}");
        let line = events
            .iter()
            .find(|event| event["event"] == "line" && event["name"] == "plugin")
            .expect("the streamed output line");
        assert_eq!(line["stream"], json!("stdout"));
        assert_eq!(line["line"], json!(format!("exiting with {code}")));
        assert!(
            events.iter().all(|event| ["line", "check", "done"].contains(&event["event"].as_str().unwrap_or(""))),
            "{events:?}"
        );
    }
}

fn two_topics(workspace: &Workspace) {
    let marker = workspace.path().join("ran");
    let touch = workspace.script("touch_marker", &format!("touch '{}-'\"$1\"", marker.display()));
    let args = "[args.queue]\npattern = '[a-z0-9_]{1,64}'\nhelp = \"queue name\"\nexample = \"ingest_indicators\"\n";
    workspace.runbook("queue.toml", &exec_runbook("queue", args, &[("touch", &touch, &["{{queue}}"])]));
    let fine = workspace.script("fine", "echo fine");
    workspace.runbook("alpha.toml", &exec_runbook("alpha", "", &[("fine", &fine, &[])]));
}

#[test]
fn run_unknown_topic_is_a_usage_error_listing_the_topics() {
    let workspace = Workspace::new();
    two_topics(&workspace);
    let finished = workspace.run(&["run", "diagnose", "qeue"]);
    assert_eq!(finished.code, 64, "{finished:?}");
    assert_eq!(finished.stderr.trim(), "firebell: unknown topic 'qeue'; valid topics: alpha, queue");
    assert_eq!(finished.stdout, "");
}

#[test]
fn run_bad_argument_is_refused_before_anything_runs() {
    let workspace = Workspace::new();
    two_topics(&workspace);
    let ran = |value: &str| workspace.path().join(format!("ran-{value}")).exists();
    let any_ran = || {
        std::fs::read_dir(workspace.path())
            .unwrap()
            .any(|entry| entry.unwrap().file_name().to_string_lossy().starts_with("ran-"))
    };

    // The pattern is written without anchors and must still match the whole value.
    for value in ["ingest;touch", "Ingest", "ingest indicators", ""] {
        let finished = workspace.run(&["run", "diagnose", "queue", &format!("queue={value}")]);
        assert_eq!(finished.code, 64, "{finished:?}");
        assert_eq!(
            finished.stderr.trim(),
            format!(
                "firebell: argument queue='{value}' does not match [a-z0-9_]{{1,64}} (queue name); example: queue=ingest_indicators"
            )
        );
        assert_eq!(finished.stdout, "", "nothing ran, so nothing was printed");
        assert!(!any_ran(), "the check ran although its argument was refused");
    }
    let finished = workspace.run(&["run", "diagnose", "queue"]);
    assert_eq!(finished.code, 64, "{finished:?}");
    assert!(finished.stderr.contains("diagnose queue needs argument queue (queue name; must match [a-z0-9_]{1,64}); example: queue=ingest_indicators"), "{finished:?}");
    let finished = workspace.run(&["run", "diagnose", "queue", "qeue=signals"]);
    assert_eq!(finished.code, 64, "{finished:?}");
    assert!(finished.stderr.contains("unknown argument 'qeue' for diagnose queue; valid: queue (queue name; must match [a-z0-9_]{1,64}; required)"), "{finished:?}");
    assert!(!any_ran());

    // The same command with a good value does run: the refusals above were not vacuous.
    let finished = workspace.run(&["run", "diagnose", "queue", "queue=signals"]);
    assert_eq!(finished.code, 0, "{finished:?}");
    assert!(ran("signals"));
}

#[test]
fn exec_arguments_reach_argv_literally_with_no_shell() {
    let workspace = Workspace::new();
    workspace.runbook(
        "echo.toml",
        r#"name = "echo"
summary = "Prints its argument"

[args.x]
pattern = '^.*$'
help = "anything at all"

[[checks]]
name = "printf"
kind = "exec"
argv = ["printf", "%s", "{{x}}"]
"#,
    );
    let value = "; touch pwned";
    let finished = workspace.run(&["run", "diagnose", "echo", &format!("x={value}"), "--json"]);
    assert_eq!(finished.code, 0, "{finished:?}");
    let check: Value = finished
        .stdout
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap())
        .find(|event| event["event"] == "check")
        .expect("a check event");
    assert_eq!(check["data"]["stdout"], json!(value), "printf received the value as one literal argument");
    assert_eq!(check["summary"], json!(format!("exit 0: {value}")));
    assert!(!workspace.path().join("pwned").exists(), "a shell ran the argument");
}

#[test]
fn secrets_are_masked_in_summary_lines_and_data() {
    let workspace = Workspace::new();
    let password = "hunter2hunter2";
    let token = "xoxb-1234567890-abcdefghijkl";
    workspace.config(&format!(
        "[targets.signals_db]\nkind = \"postgres\"\nurl = \"postgres://app:{password}@127.0.0.1:5432/signals\"\n"
    ));
    let leak = workspace.script("leak", &format!("echo 'connecting with {password}'\necho 'slack token {token}' >&2"));
    workspace.runbook("leak.toml", &exec_runbook("leak", "", &[("leaky", &leak, &[])]));

    for json_output in [true, false] {
        let mut args = vec!["run", "diagnose", "leak"];
        if json_output {
            args.push("--json");
        }
        let finished = workspace.run(&args);
        assert_eq!(finished.code, 0, "{finished:?}");
        assert!(!finished.stdout.contains(password) && !finished.stderr.contains(password), "{finished:?}");
        assert!(!finished.stdout.contains("abcdefghijkl") && !finished.stderr.contains("abcdefghijkl"), "{finished:?}");
        if !json_output {
            assert!(finished.stdout.contains("OK    leaky — exit 0: connecting with *** ("), "{}", finished.stdout);
            continue;
        }
        let events: Vec<Value> = finished.stdout.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
        let lines: Vec<&str> = events
            .iter()
            .filter(|event| event["event"] == "line")
            .map(|event| event["line"].as_str().unwrap())
            .collect();
        assert!(lines.contains(&"connecting with ***"), "{lines:?}");
        assert!(lines.contains(&"slack token ***"), "{lines:?}");
        let check = events.iter().find(|event| event["event"] == "check").unwrap();
        assert_eq!(check["summary"], json!("exit 0: connecting with ***"));
        assert_eq!(check["data"]["stdout"], json!("connecting with ***\n"));
        assert_eq!(check["data"]["stderr"], json!("slack token ***\n"));
    }
}

/// The 1-based line of the first occurrence of `needle` in `text`.
fn line_of(text: &str, needle: &str) -> usize {
    let offset = text.find(needle).unwrap_or_else(|| panic!("{needle} is not in the text"));
    text[..offset].matches('\n').count() + 1
}

const GOOD_RUNBOOK: &str = r#"name = "NAME"
summary = "Depth of the worker queues"

[args.queue]
pattern = '^[a-z0-9_]{1,64}$'
default = "ingest_indicators"
help = "queue name"

[[checks]]
name = "queue depth"
kind = "sql"
target = "signals_db"
query = "SELECT count(*) AS depth FROM queue_messages WHERE queue = $1"
params = ["{{queue}}"]
warn = "row.depth > 100"
crit = "row.depth > 500"
timeout = "5s"
"#;

#[test]
fn commands_check_reports_each_broken_file_with_its_line() {
    let workspace = Workspace::new();
    workspace
        .config("[targets.signals_db]\nkind = \"postgres\"\nurl = \"postgres://firebell@127.0.0.1:5432/signals\"\n");
    // Each file breaks the good runbook in one way: (file, what to replace, with what, the
    // text on the broken line, what the message must say).
    let cases = [
        ("unknown_key", "timeout = \"5s\"", "timout = \"5s\"", "timout", "unknown field `timout`"),
        (
            "bad_regex",
            "'^[a-z0-9_]{1,64}$'",
            "'^[a-z0-9_{1,64}$'",
            "pattern =",
            "argument 'queue': invalid regex '^[a-z0-9_{1,64}$'",
        ),
        (
            "bad_cel",
            "\"row.depth > 100\"",
            "\"row.depth >\"",
            "warn =",
            "check 'queue depth': warn: invalid CEL expression 'row.depth >'",
        ),
        (
            "unknown_var",
            "\"row.depth > 500\"",
            "\"rwo.depth > 500\"",
            "crit =",
            "check 'queue depth': crit: unknown variable 'rwo'",
        ),
        (
            "unknown_target",
            "target = \"signals_db\"",
            "target = \"signal_db\"",
            "target =",
            "check 'queue depth': unknown target 'signal_db' (defined: signals_db); add [targets.signal_db] to firebell.toml",
        ),
        (
            "arg_in_sql",
            "WHERE queue = $1\"",
            "WHERE queue = '{{queue}}'\"",
            "query =",
            "check 'queue depth': query: '{{queue}}' inside SQL text: arguments reach SQL only as bind parameters",
        ),
    ];
    let mut expected = Vec::new();
    for (file, from, to, broken_line, message) in cases {
        assert!(GOOD_RUNBOOK.contains(from), "case {file} does not apply");
        let text = GOOD_RUNBOOK.replace("NAME", file).replacen(from, to, 1);
        workspace.runbook(&format!("{file}.toml"), &text);
        expected.push(format!("commands/{file}.toml:{}: {message}", line_of(&text, broken_line)));
    }
    workspace.runbook("good.toml", &GOOD_RUNBOOK.replace("NAME", "good"));

    let finished = workspace.run(&["commands", "check"]);
    assert_eq!(finished.code, 1, "{finished:?}");
    let reported: Vec<&str> = finished.stdout.lines().filter(|line| line.starts_with("commands/")).collect();
    for expected in &expected {
        assert_eq!(
            reported.iter().filter(|line| line.starts_with(expected.as_str())).count(),
            1,
            "missing {expected}\nin:\n{}",
            finished.stdout
        );
    }
    assert_eq!(reported.len(), cases.len(), "one problem per broken file, none in good.toml:\n{}", finished.stdout);
    assert!(finished.stdout.contains("6 problem(s) in 7 files"), "{}", finished.stdout);

    // `run` refuses to start with broken runbooks, and says where to look.
    let finished = workspace.run(&["run", "diagnose", "good"]);
    assert_eq!(finished.code, 78, "{finished:?}");
    assert!(finished.stderr.contains("commands/bad_cel.toml:"), "{}", finished.stderr);
}

#[test]
fn commands_list_json_describes_the_catalogue() {
    let workspace = Workspace::new();
    workspace
        .config("[targets.signals_db]\nkind = \"postgres\"\nurl = \"postgres://firebell@127.0.0.1:5432/signals\"\n");
    workspace.runbook("queue.toml", &GOOD_RUNBOOK.replace("NAME", "queue"));
    let fine = workspace.script("fine", "echo fine");
    workspace.runbook("alpha.toml", &exec_runbook("alpha", "", &[("fine", &fine, &[])]));

    let finished = workspace.run(&["commands", "list", "--json"]);
    assert_eq!(finished.code, 0, "{finished:?}");
    let topics: Value =
        serde_json::from_str(&finished.stdout).unwrap_or_else(|error| panic!("not JSON: {error}\n{}", finished.stdout));
    let names: Vec<&str> = topics.as_array().unwrap().iter().map(|topic| topic["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["alpha", "queue"]);
    let queue = &topics[1];
    assert_eq!(queue["summary"], json!("Depth of the worker queues"));
    assert_eq!(
        queue["args"],
        json!([{"name": "queue", "pattern": "^[a-z0-9_]{1,64}$", "default": "ingest_indicators", "help": "queue name"}])
    );
    assert_eq!(queue["checks"], json!([{"name": "queue depth", "kind": "sql", "timeout_ms": 5000}]));
    assert_eq!(queue["remediations"], json!([]));
}

/// Runs `firebell commands check` in the repository, as a user would before committing.
fn check_shipped_commands(args: &[&str]) -> common::Finished {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_firebell"));
    command.args(args).current_dir(root).env_remove("FIREBELL_CONFIG").env_remove("FIREBELL_LOG");
    common::Finished::from(command.output().expect("firebell starts"))
}

#[test]
fn tidy_every_shipped_runbook_loads_against_the_example_config() {
    let finished = check_shipped_commands(&["commands", "check", "--config", "firebell.example.toml"]);
    assert_eq!(finished.code, 0, "{}{}", finished.stdout, finished.stderr);
    let shipped = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("commands"))
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().path().extension().is_some_and(|ext| ext == "toml"))
        .count();
    assert!(shipped > 0);
    assert!(finished.stdout.contains(&format!("ok: {shipped} files, {shipped} topics")), "{}", finished.stdout);
    assert!(!finished.stdout.contains("note: no firebell.toml"), "target names were checked: {}", finished.stdout);
}

#[test]
fn tidy_every_shipped_runbook_loads_without_a_config() {
    let finished = check_shipped_commands(&["commands", "check"]);
    assert_eq!(finished.code, 0, "{}{}", finished.stdout, finished.stderr);
    assert!(finished.stdout.lines().any(|line| line.starts_with("ok: ")), "{}", finished.stdout);
}
