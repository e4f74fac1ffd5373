//! The web console in a real browser: headless Chromium (Debian's `chromium`), driven by
//! playwright-core (`tests/browser/console.test.mjs`), against the real app on port 0 with a
//! runbook that reads the real Redis. Two people: alice diagnoses, requests a remediation she may
//! not approve herself, declares, resolves with the form and reads the incident pages; bob, on a
//! phone-sized window, approves and acknowledges; carol logs in to a second app that listens
//! beyond loopback and so asks for the console token. Afterwards this test reads the store to see
//! that the clicks did what the pages said. Screenshots of every page are kept in
//! `target/test-artifacts/console/`.
//!
//! Needs Chromium, Node.js and `npm ci --prefix tests/browser`; without them the test says it
//! skipped, unless `FIREBELL_TEST_REQUIRE_SERVICES=1` (set by `.ci/run`), where it fails.

mod common;
mod support;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use support::app::{AppBuilder, Workspace, toml_str};

/// The whole story takes seconds; this bounds a hung browser.
const STORY_TIMEOUT: Duration = Duration::from_secs(240);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The browser, Node.js and playwright-core, or why they are missing.
fn browser_kit() -> Result<(PathBuf, PathBuf), String> {
    let chromium = std::env::var("FIREBELL_TEST_CHROMIUM").map(PathBuf::from).unwrap_or("/usr/bin/chromium".into());
    if !chromium.exists() {
        return Err(format!(
            "no Chromium at {} (apt-get install chromium, or set FIREBELL_TEST_CHROMIUM)",
            chromium.display()
        ));
    }
    let node = std::env::var("FIREBELL_TEST_NODE").map(PathBuf::from).unwrap_or("node".into());
    let version = std::process::Command::new(&node).arg("--version").output();
    if !version.is_ok_and(|output| output.status.success()) {
        return Err(format!("no Node.js ({}) to run playwright-core", node.display()));
    }
    if !repo().join("tests/browser/node_modules/playwright-core").exists() {
        return Err("playwright-core is not installed: run npm ci --prefix tests/browser".to_string());
    }
    Ok((chromium, node))
}

const RUNBOOK: &str = r#"
name = "cache"
summary = "Is the cache queue draining"

[args.queue]
pattern = '^[A-Za-z0-9_:]{1,120}$'
help = "the Redis list of pending jobs"
example = "jobs:pending"

[[checks]]
name = "queue depth"
kind = "redis"
target = "cache"
command = ["LLEN", "{{queue}}"]
warn = "value > 5"
crit = "value > 10"

[[checks]]
name = "redis reachable"
kind = "redis"
target = "cache"
command = ["PING"]

[[remediations]]
name = "trim-queue"
summary = "Trim the queue to its newest jobs"
kind = "exec"
argv = ["echo", "trimmed", "{{queue}}"]
approvers = ["oncall"]
suggest_when = "checks['queue depth'].status in ['warn', 'crit']"
"#;

/// alice's and bob's own sign-in tokens: remediations need proven people (SPEC §9).
const ALICE_TOKEN: &str = "alice-browser-token-0123456789";
const BOB_TOKEN: &str = "bob-browser-token-0123456789";

/// The config after `[server]`, `[store]` and `[commands]`: the Redis target, alice and bob
/// on call, on call may remediate, and a checklist when an incident is resolved.
fn rest(redis_url: &str) -> String {
    format!(
        "[targets.cache]\nkind = \"redis\"\nurl = {redis}\n\n[groups]\noncall = [\"console:alice\", \"console:bob\"]\n\n\
         [permissions]\nremediate = [\"group:oncall\"]\n\n[[checklists]]\nname = \"post-incident\"\non = \"resolved\"\n\
         items = [ {{ text = \"Service restored\" }}, {{ text = \"Post-mortem scheduled\", after = \"48h\", owner = \"console:bob\" }} ]\n",
        redis = toml_str(redis_url),
    )
}

/// A workspace with the `cache` runbook.
fn cache_workspace() -> Workspace {
    let workspace = Workspace::new();
    workspace.runbook("cache", RUNBOOK);
    workspace
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_diagnose_declare_resolve_and_approve_in_the_browser() {
    let (chromium, node) = match browser_kit() {
        Ok(kit) => kit,
        Err(why) => {
            if std::env::var("FIREBELL_TEST_REQUIRE_SERVICES").is_ok_and(|value| value == "1") {
                panic!("{why} (FIREBELL_TEST_REQUIRE_SERVICES=1, so this is a failure)");
            }
            eprintln!("skipped: {why}");
            return;
        }
    };
    let Some(redis) = common::redis_prefix().await else { return };
    let queue = redis.key("jobs");
    redis.command(&["RPUSH", &queue, "1", "2", "3", "4", "5", "6", "7"]).await;

    let people = format!("[console]\npeople = {{ alice = \"{ALICE_TOKEN}\", bob = \"{BOB_TOKEN}\" }}\n");
    let app = AppBuilder::new(cache_workspace()).section(&rest(&redis.url)).section(&people).spawn().await;
    let base = app.base.clone();
    let store = app.escalator.store().clone();

    // A second app, listening beyond loopback: its console asks for the login token. Only the
    // shared token there: carol's name is chosen, not proven.
    let guarded = AppBuilder::new(cache_workspace())
        .listen("0.0.0.0:0")
        .server("console_token = \"open-sesame\"\napi_token = \"api-token-0123456789\"")
        .section(&rest(&redis.url))
        .spawn()
        .await;
    let guarded_base = guarded.base.clone();

    let artifacts = repo().join("target/test-artifacts/console");
    let mut child = tokio::process::Command::new(node)
        .arg(repo().join("tests/browser/console.test.mjs"))
        .env("BASE_URL", &base)
        .env("GUARDED_URL", &guarded_base)
        .env("CONSOLE_TOKEN", "open-sesame")
        .env("ALICE_TOKEN", ALICE_TOKEN)
        .env("BOB_TOKEN", BOB_TOKEN)
        .env("ARTIFACTS", &artifacts)
        .env("CHROMIUM", &chromium)
        .env("QUEUE", &queue)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let (stdout, stderr) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let output = tokio::time::timeout(STORY_TIMEOUT, async {
        use tokio::io::AsyncReadExt;
        let (mut out, mut err) = (String::new(), String::new());
        let (mut stdout, mut stderr) = (stdout, stderr);
        let _ = tokio::join!(stdout.read_to_string(&mut out), stderr.read_to_string(&mut err));
        (child.wait().await, out, err)
    })
    .await;
    let (status, out, err) = output.unwrap_or_else(|_| panic!("the browser story did not finish in {STORY_TIMEOUT:?}"));
    println!("{out}");
    eprintln!("{err}");
    assert!(
        status.expect("node ran").success(),
        "the browser story failed (screenshots in {}):\n{out}\n{err}",
        artifacts.display()
    );
    assert!(out.trim_end().ends_with("passed"), "{out}");

    // What the clicks did, as the store has it.
    let incidents = store.incidents(true, 10).await.expect("incidents");
    let incident = incidents
        .iter()
        .find(|incident| incident.title == "Checkout is down")
        .unwrap_or_else(|| panic!("the declared incident: {incidents:?}"));
    assert_eq!(incident.status.name(), "resolved");
    assert_eq!(incident.acknowledged_by.as_deref(), Some("console:bob"));
    assert_eq!(incident.resolved_by.as_deref(), Some("console:alice"));
    assert_eq!(incident.root_cause.as_deref(), Some("A bad deploy of the payment client"));
    assert_eq!(incident.fix.as_deref(), Some("Rolled back to v41"));
    assert_eq!(incident.impact.as_deref(), Some("Nobody can pay"));
    assert!(
        incident.timeline.iter().any(|event| event.kind == "diagnosis" && event.detail["status"] == "warn"),
        "the diagnosis in the thread is on the timeline: {:?}",
        incident.timeline
    );
    let notes: Vec<&str> = incident
        .timeline
        .iter()
        .filter(|event| event.kind == "note")
        .filter_map(|event| event.detail["text"].as_str())
        .collect();
    assert_eq!(notes, ["the payment client was deployed at 09:12"]);
    assert_eq!(incident.followups.len(), 1);
    assert_eq!(incident.followups[0].owner.as_deref(), Some("console:bob"));
    let reminded: Vec<&serde_json::Value> =
        incident.timeline.iter().filter(|event| event.kind == "reminded").map(|event| &event.detail).collect();
    assert_eq!(reminded.len(), 1, "bob's follow-up reminded him once: {:?}", incident.timeline);
    assert_eq!(reminded[0]["notified"], serde_json::json!(["console:bob"]));
    let ticked: Vec<(&str, Option<&str>)> =
        incident.checklists[0].items.iter().map(|item| (item.text.as_str(), item.done_by.as_deref())).collect();
    assert_eq!(ticked, [("Service restored", Some("console:alice")), ("Post-mortem scheduled", None)]);
    let request = store.request(1).await.expect("the remediation request");
    assert_eq!(request.action, "trim-queue");
    assert_eq!(request.requested_by, "console:alice");
    assert_eq!(request.state, "succeeded", "{request:?}");
    assert_eq!(request.approvers(), vec!["console:bob".to_string()]);
    assert!(request.result.as_deref().unwrap_or("").contains(&format!("trimmed {queue}")), "{request:?}");
    for page in [
        "chat-diagnosis",
        "chat-phone-approved",
        "chat-incident-thread",
        "chat-checklist",
        "incidents",
        "incident",
        "login",
    ] {
        assert!(artifacts.join(format!("{page}.png")).exists(), "a screenshot of {page}");
    }

    app.stop().await;
    guarded.stop().await;
}
