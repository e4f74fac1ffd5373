//! Remediations end to end through Slack: several people type `/remediate`, click Approve and
//! Deny (and forge clicks) as signed requests to the real app, which runs on SQLite against a
//! fake Slack Web API. The tests read what people see in Slack, what the side effect did (a
//! script appending to a file, an HTTP server counting hits), and what the API, the incident
//! timeline and `firebell audit` record.

mod common;
mod fake_slack;
mod slack_e2e_support;
mod support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use common::toml_str;
use fake_slack::StoredMessage;
use firebell::clock::{Clock, ManualClock, SystemClock};
use serde_json::Value;
use slack_e2e_support::{
    FORM, INCIDENTS, OPS, SIGNING_SECRET, SlackApp, Workspace, button, button_labels, now, signature, spawn, spawn_with,
};

/// Long enough for any of these stories on a loaded machine; they take seconds.
const WAIT: Duration = Duration::from_secs(20);

/// Asks for remediations; on call, so also an approver of other people's requests.
const REQUESTER: &str = "U0001";
/// On call: approves.
const APPROVER: &str = "U0002";
/// On call too: the second approval.
const SECOND_APPROVER: &str = "U0003";
/// A DBA: may ask for remediations and approve the DBA's, not the worker's.
const DBA: &str = "U0004";
/// In no group at all.
const OUTSIDER: &str = "U0009";

const POLICY: &str = r#"[groups]
oncall = ["slack:U0001", "slack:U0002", "slack:U0003"]
dba = ["slack:U0004"]

[permissions]
remediate = ["group:oncall", "group:dba"]
"#;

// ---------------------------------------------------------------------------------------------
// The runbook of these stories

/// A workspace with the `worker` runbook (see [`Scripts::runbook`]) and its scripts.
struct Worker {
    workspace: Workspace,
    scripts: Scripts,
}

/// The scripts of the `worker` runbook, and the file the restart appends to.
struct Scripts {
    /// `restarted QUEUE`, one line per run of `restart-worker`.
    log: PathBuf,
    restart: PathBuf,
    depth: PathBuf,
    drain: PathBuf,
}

impl Worker {
    fn new(approvals: u32) -> Worker {
        let workspace = Workspace::new();
        let log = workspace.path().join("ran.log");
        let restart = workspace.script(
            "restart",
            &format!(
                "echo \"restarted $1\" >> {}\necho \"worker for $1 restarted\"",
                toml_str(&log.display().to_string())
            ),
        );
        let depth = workspace.script(
            "depth",
            "if [ \"$1\" = trades ]; then echo \"depth of $1: 900\"; exit 1; fi\necho \"depth of $1: 3\"",
        );
        let drain = workspace.script(
            "drain",
            "echo \"draining $1\"\necho \"drain failed: queue $1 is locked by another drain\" >&2\nexit 1",
        );
        let scripts = Scripts { log, restart, depth, drain };
        workspace.runbook("worker", &scripts.runbook(approvals, ""));
        Worker { workspace, scripts }
    }
}

impl Worker {
    /// The app on a fresh worker workspace with [`POLICY`]; the file the restart appends to.
    async fn spawn(approvals: u32) -> (SlackApp, PathBuf) {
        let worker = Worker::new(approvals);
        (spawn(worker.workspace, POLICY).await, worker.scripts.log)
    }
}

impl Scripts {
    /// `commands/worker.toml`: a `depth` check that warns for the queue `trades`;
    /// `restart-worker` (exec, approvers `oncall`, `approvals` of them, suggested when the depth
    /// warns), which appends `restarted QUEUE` to [`Scripts::log`] and says so, with
    /// `extra_argv` after the queue; and `drain-worker` (two approvals), which fails (exit 1).
    fn runbook(&self, approvals: u32, extra_argv: &str) -> String {
        let path = |path: &Path| toml_str(&path.display().to_string());
        format!(
            r#"name = "worker"
summary = "The worker service"

[args.queue]
pattern = '^[a-z0-9_]{{1,32}}$'
help = "queue name"

[[checks]]
name = "depth"
kind = "exec"
argv = [{depth}, "{{{{queue}}}}"]

[[remediations]]
name = "restart-worker"
summary = "Restart the worker of one queue"
kind = "exec"
argv = [{restart}, "{{{{queue}}}}"{extra_argv}]
approvals = {approvals}
approvers = ["oncall"]
suggest_when = "checks['depth'].status in ['warn', 'crit']"

[[remediations]]
name = "drain-worker"
summary = "Drain the worker of one queue"
kind = "exec"
argv = [{drain}, "{{{{queue}}}}"]
approvals = 2
approvers = ["oncall"]
"#,
            depth = path(&self.depth),
            restart = path(&self.restart),
            drain = path(&self.drain),
        )
    }

    /// What the restart shows as its command for `queue`.
    fn restart_command(&self, queue: &str) -> String {
        format!("run [\"{}\", \"{queue}\"]\ntimeout 10s", self.restart.display())
    }
}

/// The lines of the side-effect file (none when it was never written).
fn lines_in(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).map(|text| text.lines().map(str::to_string).collect()).unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Reading what people see

/// What a person reads: mrkdwn carries `&`, `<` and `>` as entities, Slack shows the characters.
fn seen(message: &StoredMessage) -> String {
    message.visible_text().replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// The request id an Approve button carries.
fn request_id(message: &StoredMessage) -> i64 {
    let (action, value, _) = button(message, "Approve").expect("an Approve button");
    assert_eq!(action, "remediation_approve");
    let (deny_action, deny_value, _) = button(message, "Deny").expect("a Deny button");
    assert_eq!((deny_action.as_str(), deny_value.as_str()), ("remediation_deny", value.as_str()));
    value.parse().expect("the Approve button carries the request id")
}

/// Waits for the request message `#id` in `channel`, and until the app knows its message (a
/// person cannot click faster than Slack shows the message; a test can).
async fn request_message(app: &SlackApp, channel: &str, id: i64) -> StoredMessage {
    let header = format!("Remediation request #{id}:");
    let message = app
        .wait_message(&format!("request #{id}"), channel, WAIT, |message| message.visible_text().contains(&header))
        .await;
    wait_request(app, id, "the request message to be remembered", |request| request["message"] == message.ts.as_str())
        .await;
    message
}

/// Waits until the message `message` (by its ts) satisfies `condition`, and returns it.
async fn message_becomes(
    app: &SlackApp,
    message: &StoredMessage,
    what: &str,
    condition: impl Fn(&StoredMessage) -> bool,
) -> StoredMessage {
    app.wait_message(what, &message.channel, WAIT, |candidate| candidate.ts == message.ts && condition(candidate)).await
}

/// Waits until the request message says `state` ("Denied", "Expired", …) and returns what it
/// shows; a decided request keeps no buttons.
async fn decided(app: &SlackApp, request: &StoredMessage, state: &str) -> String {
    let what = format!("the request to say {state}");
    let message = message_becomes(app, request, &what, |message| message.visible_text().contains(state)).await;
    assert!(button_labels(&message).is_empty(), "{state}, yet buttons: {:?}", button_labels(&message));
    seen(&message)
}

/// `GET /api/remediations/{id}` once it satisfies `condition`.
async fn wait_request(app: &SlackApp, id: i64, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let request = app.get_json(&format!("/api/remediations/{id}")).await;
        if condition(&request) {
            return request;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; request: {request:#}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits for the next private reply (through the click's `response_url`) after `before` of them.
async fn private_reply_after(app: &SlackApp, before: usize) -> String {
    app.fake.wait_for("a private reply", WAIT, |fake| fake.responses().len() > before).await;
    let reply = &app.fake.responses()[before];
    assert_eq!(reply["response_type"], "ephemeral", "{reply}");
    reply["text"].as_str().unwrap_or("").to_string()
}

/// `user` clicks `label` on `message` and is answered privately: the answer.
async fn refused_click(app: &SlackApp, user: &str, message: &StoredMessage, label: &str) -> String {
    let before = app.fake.responses().len();
    let answer = app.click(user, message, label).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""), "{answer:?}");
    private_reply_after(app, before).await
}

/// `user` sends a forged click (`action_id`, `value`) on `message`: the private answer.
async fn refused_forgery(app: &SlackApp, user: &str, message: &StoredMessage, action_id: &str, value: &str) -> String {
    let before = app.fake.responses().len();
    let answer = app.click_forged(user, message, action_id, value).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""), "{answer:?}");
    private_reply_after(app, before).await
}

/// `user` clicks `label` and the click is taken without a private word (the message changes).
async fn accepted_click(app: &SlackApp, user: &str, message: &StoredMessage, label: &str) {
    let answer = app.click(user, message, label).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""), "{answer:?}");
}

/// `user` types `/remediate text` in `channel`; the command is taken silently.
async fn remediate(app: &SlackApp, user: &str, channel: &str, text: &str) {
    let answer = app.slash(user, channel, "/remediate", text).await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""), "/remediate {text}: {answer:?}");
}

/// The audit log, oldest first.
async fn audit(app: &SlackApp) -> Vec<Value> {
    let mut entries = app.get_json("/api/audit").await.as_array().expect("the audit log is a list").clone();
    entries.reverse();
    entries
}

/// `(action, actor)` of the audit entries about request `id`, oldest first.
fn audit_trail(entries: &[Value], id: i64) -> Vec<(String, Option<String>)> {
    entries
        .iter()
        .filter(|entry| entry["request_id"] == id)
        .map(|entry| (entry["action"].as_str().unwrap_or("").to_string(), entry["actor"].as_str().map(str::to_string)))
        .collect()
}

fn person(id: &str) -> Option<String> {
    Some(format!("slack:{id}"))
}

fn trail(entries: &[(&str, Option<String>)]) -> Vec<(String, Option<String>)> {
    entries.iter().map(|(action, actor)| (action.to_string(), actor.clone())).collect()
}

/// Request #1, now `state` (`denied`, `expired`, `stale`) by `decider` (`None`: by nobody),
/// stays so: a later approval is told it is already `state`, nothing ran, and the audit shows
/// the request and that one decision.
async fn assert_stays_decided(
    app: &SlackApp,
    request: &StoredMessage,
    log: &Path,
    state: &str,
    decider: Option<String>,
) {
    let again = refused_click(app, SECOND_APPROVER, request, "Approve").await;
    assert!(again.contains(&format!("already {state}")), "{again}");
    assert_eq!(app.get_json("/api/remediations/1").await["state"], state);
    assert!(lines_in(log).is_empty(), "a request {state} ran");
    let decision = format!("remediation_{state}");
    assert_eq!(
        audit_trail(&audit(app).await, 1),
        trail(&[("remediation_requested", person(REQUESTER)), (decision.as_str(), decider)]),
        "decided once"
    );
}

// ---------------------------------------------------------------------------------------------
// Requests, approvers, and running once

#[tokio::test]
async fn a_request_shows_what_will_run_and_only_someone_else_in_the_approver_group_can_run_it() {
    let worker = Worker::new(1);
    let command = worker.scripts.restart_command("emails");
    let log = worker.scripts.log.clone();
    let app = spawn(worker.workspace, POLICY).await;

    remediate(&app, REQUESTER, OPS, "restart-worker queue=emails").await;
    let request = request_message(&app, OPS, 1).await;
    assert_eq!(request.thread_ts, None, "a request typed in the channel is posted there");
    let stored = app.get_json("/api/remediations/1").await;
    let created: DateTime<Utc> = serde_json::from_value(stored["created_at"].clone()).expect("created_at");
    let expires: DateTime<Utc> = serde_json::from_value(stored["expires_at"].clone()).expect("expires_at");
    assert_eq!(expires - created, chrono::Duration::minutes(15), "requests expire after 15 minutes");
    let text = seen(&request);
    for expected in [
        "🛠 Remediation request #1: restart-worker".to_string(),
        "Restart the worker of one queue".to_string(),
        format!("```\n{command}\n```"),
        "*Requested by*\n<@U0001>".to_string(),
        "*Approvals*\n0 of 1 (from oncall)".to_string(),
        format!("*Expires*\n{}", expires.format("%H:%M:%S UTC")),
    ] {
        assert!(text.contains(&expected), "no {expected:?} in the request:\n{text}");
    }
    assert_eq!(button_labels(&request), ["Approve", "Deny"]);
    assert_eq!(request_id(&request), 1);
    assert_eq!(stored["state"], "pending");
    assert_eq!(stored["command"], command.as_str());
    assert_eq!(stored["requested_by"], "slack:U0001");

    // The requester cannot approve their own request.
    let own = refused_click(&app, REQUESTER, &request, "Approve").await;
    assert!(own.contains("someone else must approve"), "{own}");
    // A DBA may ask for remediations but is not in the worker's approver group.
    let outsider = refused_click(&app, DBA, &request, "Approve").await;
    assert!(outsider.contains("not an approver of restart-worker") && outsider.contains("group oncall"), "{outsider}");
    let nobody = refused_click(&app, OUTSIDER, &request, "Approve").await;
    assert!(nobody.contains("not an approver") && nobody.contains("group oncall"), "{nobody}");
    let stored = app.get_json("/api/remediations/1").await;
    assert_eq!((stored["state"].as_str(), stored["votes"].as_array().map(Vec::len)), (Some("pending"), Some(0)));
    assert_eq!(app.fake.message(OPS, &request.ts).expect("the request").edits, 0, "refusals change nothing");
    assert!(lines_in(&log).is_empty(), "a refused approval ran the remediation");

    // Someone else on call approves: it runs once.
    accepted_click(&app, APPROVER, &request, "Approve").await;
    let done = message_becomes(&app, &request, "the request turned succeeded", |message| {
        message.visible_text().contains("Succeeded")
    })
    .await;
    assert!(
        seen(&done).contains("✅ Succeeded (approved by <@U0002>): exit 0: worker for emails restarted"),
        "{}",
        seen(&done)
    );
    assert!(button_labels(&done).is_empty(), "a decided request has no buttons: {:?}", button_labels(&done));
    assert!(seen(&done).contains(&command), "the request still shows what ran");
    app.fake
        .wait_for("the result in the request's thread", WAIT, |fake| !fake.thread(OPS, &request.ts).is_empty())
        .await;
    let replies = app.fake.thread(OPS, &request.ts);
    assert_eq!(replies.len(), 1, "{replies:#?}");
    let result = seen(&replies[0]);
    assert!(result.contains("✅ *restart-worker* (request #1): exit 0: worker for emails restarted"), "{result}");
    assert!(result.contains("```\nworker for emails restarted\n```"), "the output is in the thread:\n{result}");
    assert_eq!(lines_in(&log), ["restarted emails"]);

    // A late approval changes nothing: a shared story in chat_stories.rs.
    app.fake.assert_all_accepted();
    app.stop().await;
}

#[tokio::test]
async fn two_approvals_are_needed_when_configured() {
    let (app, log) = Worker::spawn(2).await;

    remediate(&app, REQUESTER, OPS, "restart-worker queue=emails").await;
    let request = request_message(&app, OPS, 1).await;
    assert!(seen(&request).contains("*Approvals*\n0 of 2 (from oncall)"), "{}", seen(&request));

    let first = refused_click(&app, APPROVER, &request, "Approve").await;
    assert!(first.contains("Approval recorded: 1 of 2"), "{first}");
    let half =
        message_becomes(&app, &request, "1 of 2 on the request", |message| message.visible_text().contains("1 of 2"))
            .await;
    assert_eq!(button_labels(&half), ["Approve", "Deny"], "still waiting for a second approval");
    let again = refused_click(&app, APPROVER, &half, "Approve").await;
    assert!(again.contains("you already voted on request #1"), "{again}");
    // A run starts only where the vote turns the request `running`: still pending, nothing ran.
    assert_eq!(app.get_json("/api/remediations/1").await["state"], "pending");
    assert!(lines_in(&log).is_empty(), "one approval of two ran it");

    accepted_click(&app, SECOND_APPROVER, &half, "Approve").await;
    let done = message_becomes(&app, &request, "the request turned succeeded", |message| {
        message.visible_text().contains("Succeeded")
    })
    .await;
    assert!(seen(&done).contains("✅ Succeeded (approved by <@U0002>, <@U0003>)"), "{}", seen(&done));
    assert!(seen(&done).contains("2 of 2"), "{}", seen(&done));
    app.fake.wait_for("the result", WAIT, |fake| !fake.thread(OPS, &request.ts).is_empty()).await;
    assert_eq!(lines_in(&log), ["restarted emails"]);
    let entries = audit(&app).await;
    assert_eq!(
        audit_trail(&entries, 1),
        trail(&[
            ("remediation_requested", person(REQUESTER)),
            ("remediation_approval", person(APPROVER)),
            ("remediation_approval", person(SECOND_APPROVER)),
            ("remediation_approved", person(SECOND_APPROVER)),
            ("remediation_ran", None),
        ])
    );
    app.fake.assert_all_accepted();
    app.stop().await;
}

#[tokio::test]
async fn two_approvers_at_the_same_moment_or_a_repeated_click_run_it_once() {
    let (app, log) = Worker::spawn(1).await;
    remediate(&app, REQUESTER, OPS, "restart-worker queue=emails").await;
    let first = request_message(&app, OPS, 1).await;
    remediate(&app, REQUESTER, OPS, "restart-worker queue=trades").await;
    let second = request_message(&app, OPS, 2).await;

    // Two approvers click Approve on request #1 at the same moment.
    let bob = app.click_body(APPROVER, &first, "Approve");
    let carol = app.click_body(SECOND_APPROVER, &first, "Approve");
    let (bob, carol) = tokio::join!(
        app.signed("/slack/interactions", FORM, &bob, &[]),
        app.signed("/slack/interactions", FORM, &carol, &[])
    );
    assert_eq!((bob.status, carol.status), (200, 200), "{bob:?} {carol:?}");
    // The same person's click arrives twice, byte for byte and with the same signature, on
    // request #2: the copy is a replay, answered with nothing.
    let click = app.click_body(APPROVER, &second, "Approve");
    let timestamp = now();
    let headers = [
        ("x-slack-request-timestamp", timestamp.to_string()),
        ("x-slack-signature", signature(SIGNING_SECRET, timestamp, &click)),
    ];
    let (once, twice) = tokio::join!(
        app.send("/slack/interactions", FORM, &click, &headers),
        app.send("/slack/interactions", FORM, &click, &headers)
    );
    assert_eq!((once.status, twice.status), (200, 200), "{once:?} {twice:?}");

    for (id, message) in [(1, &first), (2, &second)] {
        wait_request(&app, id, "the run to finish", |request| request["state"] == "succeeded").await;
        app.fake.wait_for("the result", WAIT, |fake| !fake.thread(OPS, &message.ts).is_empty()).await;
    }
    // The losing click on #1 was told, privately, that the request was already decided; the
    // replay on #2 was refused before its answer. Every click is decided, so the log is final.
    app.fake.wait_for("a private reply", WAIT, |fake| !fake.responses().is_empty()).await;
    let mut ran = lines_in(&log);
    ran.sort();
    assert_eq!(ran, ["restarted emails", "restarted trades"], "each request ran exactly once");
    let replies: Vec<String> =
        app.fake.responses().iter().map(|reply| reply["text"].as_str().unwrap_or("").to_string()).collect();
    assert_eq!(replies.len(), 1, "the replay got no reply: {replies:#?}");
    for reply in &replies {
        assert!(reply.contains("is already running") || reply.contains("is already succeeded"), "{reply}");
    }
    for (id, message) in [(1, &first), (2, &second)] {
        assert_eq!(app.fake.thread(OPS, &message.ts).len(), 1, "one result for request #{id}");
        let stored = app.get_json(&format!("/api/remediations/{id}")).await;
        assert_eq!(stored["votes"].as_array().map(Vec::len), Some(1), "one vote counted: {stored:#}");
        let entries = audit(&app).await;
        let runs = audit_trail(&entries, id).into_iter().filter(|(action, _)| action == "remediation_ran").count();
        assert_eq!(runs, 1, "request #{id} ran once in the audit");
    }

    // And the same click once more, much later: refused, nothing runs.
    let late = refused_click(&app, APPROVER, &second, "Approve").await;
    assert!(late.contains("request #2 is already succeeded"), "{late}");
    assert_eq!(lines_in(&log).len(), 2);
    app.fake.assert_all_accepted();
    app.stop().await;
}

#[tokio::test]
async fn a_denied_request_says_so_runs_nothing_and_refuses_a_later_approval() {
    let (app, log) = Worker::spawn(1).await;
    remediate(&app, REQUESTER, OPS, "restart-worker queue=emails").await;
    let request = request_message(&app, OPS, 1).await;

    // Denying takes an approver too.
    let outsider = refused_click(&app, OUTSIDER, &request, "Deny").await;
    assert!(outsider.contains("not an approver") && outsider.contains("group oncall"), "{outsider}");
    assert_eq!(app.get_json("/api/remediations/1").await["state"], "pending");

    accepted_click(&app, APPROVER, &request, "Deny").await;
    let denied = decided(&app, &request, "Denied").await;
    assert!(denied.contains("🚫 Denied by <@U0002>; nothing ran."), "{denied}");

    assert_stays_decided(&app, &request, &log, "denied", person(APPROVER)).await;
    assert!(app.fake.thread(OPS, &request.ts).is_empty(), "no result for a denied request");
    app.fake.assert_all_accepted();
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Time: expiry, restarts

#[tokio::test]
async fn an_expired_request_cannot_run_and_its_message_says_it_expired() {
    let worker = Worker::new(1);
    let log = worker.scripts.log.clone();
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let app = spawn_with(fake_slack::FakeSlack::start().await, worker.workspace, POLICY, clock.clone()).await;
    remediate(&app, REQUESTER, OPS, "restart-worker queue=emails").await;
    let request = request_message(&app, OPS, 1).await;

    // Fourteen minutes later it still waits: a step of the expiry loop at that time expires nothing.
    clock.advance(chrono::Duration::minutes(14));
    assert_eq!(app.chat.expire_due(clock.now()).await, Vec::<i64>::new());
    assert_eq!(app.get_json("/api/remediations/1").await["state"], "pending");
    assert_eq!(app.fake.message(OPS, &request.ts).expect("the request").edits, 0);

    // Past fifteen: an approval now is refused, whether it or the expiry loop gets there first.
    clock.advance(chrono::Duration::seconds(61));
    let first = refused_click(&app, APPROVER, &request, "Approve").await;
    assert!(first.contains("expired"), "{first}");
    let expired = decided(&app, &request, "Expired").await;
    assert!(expired.contains("⌛ Expired before it was approved; nothing ran."), "{expired}");
    assert_stays_decided(&app, &request, &log, "expired", None).await;
    app.fake.assert_all_accepted();
    app.stop().await;
}

#[tokio::test]
async fn pending_requests_survive_a_restart_can_still_be_approved_and_still_expire_on_time() {
    let worker = Worker::new(1);
    let log = worker.scripts.log.clone();
    let start = Utc::now();
    let clock = Arc::new(ManualClock::new(start));
    let app = spawn_with(fake_slack::FakeSlack::start().await, worker.workspace, POLICY, clock.clone()).await;
    remediate(&app, REQUESTER, OPS, "restart-worker queue=emails").await;
    let approved_later = request_message(&app, OPS, 1).await;
    remediate(&app, REQUESTER, OPS, "restart-worker queue=trades").await;
    let left_alone = request_message(&app, OPS, 2).await;

    // The bot is down for five minutes; it comes back on the same store.
    let clock = Arc::new(ManualClock::new(start + chrono::Duration::minutes(5)));
    let app = app.restart(POLICY, clock.clone()).await;
    assert_eq!(app.get_json("/api/remediations/1").await["state"], "pending");

    accepted_click(&app, APPROVER, &approved_later, "Approve").await;
    let done = message_becomes(&app, &approved_later, "request #1 turned succeeded", |message| {
        message.visible_text().contains("Succeeded")
    })
    .await;
    assert!(seen(&done).contains("approved by <@U0002>"), "{}", seen(&done));
    app.fake.wait_for("the result", WAIT, |fake| !fake.thread(OPS, &approved_later.ts).is_empty()).await;
    assert_eq!(lines_in(&log), ["restarted emails"]);

    // Request #2 expires fifteen minutes after it was made, not after the restart.
    clock.set(start + chrono::Duration::minutes(14) + chrono::Duration::seconds(50));
    assert_eq!(app.chat.expire_due(clock.now()).await, Vec::<i64>::new(), "expired early");
    assert_eq!(app.get_json("/api/remediations/2").await["state"], "pending", "expired early");
    clock.set(start + chrono::Duration::minutes(15) + chrono::Duration::seconds(1));
    decided(&app, &left_alone, "Expired").await;
    let late = refused_click(&app, APPROVER, &left_alone, "Approve").await;
    assert!(late.contains("expired"), "{late}");
    assert_eq!(lines_in(&log), ["restarted emails"], "the expired request did not run");
    assert_eq!(
        audit_trail(&audit(&app).await, 2),
        trail(&[("remediation_requested", person(REQUESTER)), ("remediation_expired", None)])
    );
    app.fake.assert_all_accepted();
    app.stop().await;
}

#[tokio::test]
async fn a_runbook_changed_after_the_request_makes_it_stale_and_nothing_runs() {
    let Worker { workspace, scripts } = Worker::new(1);
    let log = scripts.log.clone();
    let app = spawn(workspace, POLICY).await;
    remediate(&app, REQUESTER, OPS, "restart-worker queue=emails").await;
    let request = request_message(&app, OPS, 1).await;

    // Someone edits the remediation (it now forces the restart) and the bot restarts.
    app.workspace().runbook("worker", &scripts.runbook(1, ", \"--force\""));
    let app = app.restart(POLICY, Arc::new(SystemClock)).await;

    let stale = refused_click(&app, APPROVER, &request, "Approve").await;
    assert!(
        stale.contains("the runbook for restart-worker changed after request #1") && stale.contains("nothing ran"),
        "{stale}"
    );
    decided(&app, &request, "The runbook changed").await;
    assert_stays_decided(&app, &request, &log, "stale", person(APPROVER)).await;
    app.fake.assert_all_accepted();
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Payloads, secrets, permissions

#[tokio::test]
async fn a_tampered_button_is_refused_and_nothing_runs() {
    let worker = Worker::new(1);
    let log = worker.scripts.log.clone();
    let purge = worker.workspace.script("purge", &format!("echo purged >> {}", toml_str(&log.display().to_string())));
    worker.workspace.runbook(
        "queue",
        &format!(
            "name = \"queue\"\nsummary = \"Queues\"\n\n[[remediations]]\nname = \"purge-queue\"\nsummary = \"Purge the queue table\"\n\
             kind = \"exec\"\nargv = [{}]\napprovers = [\"dba\"]\n",
            toml_str(&purge.display().to_string())
        ),
    );
    let app = spawn(worker.workspace, POLICY).await;
    remediate(&app, REQUESTER, OPS, "restart-worker queue=emails").await;
    let restart = request_message(&app, OPS, 1).await;
    remediate(&app, REQUESTER, OPS, "purge-queue").await;
    let purge = request_message(&app, OPS, 2).await;
    assert_eq!(request_id(&purge), 2);

    // An on-call approver may approve #1 but not the DBA's #2: pointing #1's button at #2 fails.
    let other = refused_forgery(&app, APPROVER, &restart, "remediation_approve", "2").await;
    assert!(other.contains("not an approver of purge-queue") && other.contains("group dba"), "{other}");
    let missing = refused_forgery(&app, APPROVER, &restart, "remediation_approve", "999").await;
    assert!(missing.contains("there is no remediation request 999"), "{missing}");
    for value in ["1 OR 1=1", "abc", "", "1.0"] {
        let garbled = refused_forgery(&app, APPROVER, &restart, "remediation_approve", value).await;
        assert!(garbled.contains("this button refers to no remediation request"), "{value:?}: {garbled}");
    }
    // A suggested-remediation button whose argument was edited fails its pattern.
    let injected =
        refused_forgery(&app, APPROVER, &restart, "remediate", "restart-worker?queue=emails%3Brm%20-rf").await;
    assert!(
        injected.starts_with("argument queue='emails;rm -rf' does not match ^[a-z0-9_]{1,32}$ (queue name)"),
        "{injected}"
    );

    // Every refusal above was answered after its vote was decided: nothing turned `running`.
    for id in [1, 2] {
        let stored = app.get_json(&format!("/api/remediations/{id}")).await;
        assert_eq!(stored["state"], "pending");
        assert_eq!(stored["votes"].as_array().map(Vec::len), Some(0), "{stored:#}");
    }
    assert!(lines_in(&log).is_empty(), "a forged click ran something: {:?}", lines_in(&log));
    assert_eq!(app.fake.messages(OPS).len(), 2, "nothing new was posted: {:#?}", app.fake.messages(OPS));
    assert!(app.fake.calls_to("chat.update").is_empty(), "no request message changed");
    let entries = audit(&app).await;
    assert!(entries.iter().all(|entry| entry["action"] == "remediation_requested"), "{entries:#?}");

    // The real buttons still work: the forgeries spoiled nothing.
    accepted_click(&app, APPROVER, &restart, "Approve").await;
    wait_request(&app, 1, "request #1 to run", |request| request["state"] == "succeeded").await;
    assert_eq!(lines_in(&log), ["restarted emails"]);
    app.fake.assert_all_accepted();
    app.stop().await;
}

/// A stand-in for an internal API on 127.0.0.1: every request is answered by `answer` (from
/// its path) and counted; its address (`127.0.0.1:PORT`) and the count.
async fn internal_api(
    answer: impl Fn(&str) -> (axum::http::StatusCode, String) + Clone + Send + Sync + 'static,
) -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let router = axum::Router::new().fallback(move |uri: axum::http::Uri| {
        let (counter, answer) = (counter.clone(), answer.clone());
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            answer(uri.path())
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the API");
    let address = listener.local_addr().expect("an address");
    tokio::spawn(async move { axum::serve(listener, router).await.expect("the API serves") });
    (address.to_string(), hits)
}

/// An internal API whose `POST /reload/{queue}` answers 500 with a body that quotes the
/// credentials it was given; its URL (with them) and its hits.
async fn failing_api() -> (String, Arc<AtomicUsize>) {
    let (address, hits) = internal_api(|path| {
        let queue = path.rsplit('/').next().unwrap_or_default();
        (
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload of {queue} refused: credentials deploy:Hunter2Hunter2 are read-only"),
        )
    })
    .await;
    (format!("http://deploy:Hunter2Hunter2@{address}"), hits)
}

#[tokio::test]
async fn secrets_are_masked_in_the_request_in_the_output_and_in_the_audit() {
    const DB_PASSWORD: &str = "Sup3rSecretPw";
    const API_PASSWORD: &str = "Hunter2Hunter2";
    let (api_url, hits) = failing_api().await;
    let workspace = Workspace::new();
    let login = workspace.script("login", "echo \"logging in to $3 with password $2\"");
    workspace.runbook(
        "db",
        &format!(
            r#"name = "db"
summary = "The database and its API"

[args.queue]
pattern = '^[a-z0-9_]{{1,32}}$'
help = "queue name"

[[remediations]]
name = "reset-connections"
summary = "Reset the pool's connections"
kind = "exec"
argv = [{login}, "--password", "{DB_PASSWORD}", "{{{{queue}}}}"]
approvers = ["oncall"]

[[remediations]]
name = "reload-api"
summary = "Reload the queue's API"
kind = "http"
method = "POST"
target = "api"
path = "/reload/{{{{queue}}}}"
approvers = ["oncall"]
"#,
            login = toml_str(&login.display().to_string()),
        ),
    );
    let config = format!(
        "[targets.db]\nkind = \"postgres\"\nurl = \"postgres://app:{DB_PASSWORD}@127.0.0.1:1/app\"\n\n\
         [targets.api]\nkind = \"http\"\nurl = {}\n\n{POLICY}",
        toml_str(&api_url)
    );
    let app = spawn(workspace, &config).await;

    remediate(&app, REQUESTER, OPS, "reset-connections queue=emails").await;
    let reset = request_message(&app, OPS, 1).await;
    let shown = seen(&reset);
    assert!(
        shown.contains(&format!(
            "```\nrun [\"{}\", \"--password\", \"***\", \"emails\"]\ntimeout 10s\n```",
            login.display()
        )),
        "the password is masked in the request:\n{shown}"
    );
    accepted_click(&app, APPROVER, &reset, "Approve").await;
    wait_request(&app, 1, "request #1 to run", |request| request["state"] == "succeeded").await;
    app.fake.wait_for("the output", WAIT, |fake| !fake.thread(OPS, &reset.ts).is_empty()).await;
    let output = seen(&app.fake.thread(OPS, &reset.ts)[0]);
    assert!(
        output.contains("logging in to emails with password ***"),
        "the password is masked in the output:\n{output}"
    );

    // An HTTP remediation against a target whose URL holds a password: the error quotes it.
    remediate(&app, REQUESTER, OPS, "reload-api queue=emails").await;
    let reload = request_message(&app, OPS, 2).await;
    assert!(seen(&reload).contains("```\nPOST [api]/reload/emails\ntimeout 10s\n```"), "{}", seen(&reload));
    accepted_click(&app, APPROVER, &reload, "Approve").await;
    let failed =
        message_becomes(&app, &reload, "request #2 turned failed", |message| message.visible_text().contains("Failed"))
            .await;
    app.fake.wait_for("the error", WAIT, |fake| !fake.thread(OPS, &reload.ts).is_empty()).await;
    let error = seen(&app.fake.thread(OPS, &reload.ts)[0]);
    assert!(
        error.contains("❌ *reload-api* (request #2): 500 Internal Server Error")
            && error.contains("reload of emails refused: credentials deploy:*** are read-only"),
        "{error}"
    );
    assert!(seen(&failed).contains("deploy:***"), "{}", seen(&failed));
    assert_eq!(hits.load(Ordering::SeqCst), 1, "the API was called once");

    // Nowhere: not in anything sent to Slack, not in the API's answers, not in the audit.
    let audit_text = app.get_json("/api/audit").await.to_string();
    assert!(
        audit_text.contains(r#"\"--password\", \"***\", \"emails\""#),
        "the audit shows the masked command: {audit_text}"
    );
    let mut everything = vec![audit_text];
    everything.extend(app.fake.calls().iter().map(|call| call.body.to_string()));
    everything.extend(app.fake.responses().iter().map(Value::to_string));
    for id in [1, 2] {
        everything.push(app.get_json(&format!("/api/remediations/{id}")).await.to_string());
    }
    for text in &everything {
        assert!(!text.contains(DB_PASSWORD) && !text.contains(API_PASSWORD), "a secret leaked: {text}");
    }
    app.fake.assert_all_accepted();
    app.stop().await;
}

#[tokio::test]
async fn only_the_permitted_may_ask_for_remediations_and_by_default_nobody_may() {
    let worker = Worker::new(1);
    let log = worker.scripts.log.clone();
    let app = spawn(worker.workspace, &format!("{POLICY}channels = [\"COPS\", \"CINC\"]\n")).await;

    let answer = app.slash(OUTSIDER, OPS, "/remediate", "restart-worker queue=emails").await;
    assert_eq!(answer.status, 200);
    let reply = answer.json();
    assert_eq!(reply["response_type"], "ephemeral");
    assert_eq!(
        reply["text"], "you (slack:U0009) may not request remediations; allowed: group oncall, group dba",
        "the refusal says who may"
    );
    let listing = app.slash(OUTSIDER, OPS, "/remediate", "").await.json();
    assert!(listing["text"].as_str().unwrap_or("").contains("may not request remediations"), "{listing}");
    // Commands are accepted only in the configured channels, even from someone permitted.
    let elsewhere = app.slash(REQUESTER, "CDEV", "/remediate", "restart-worker queue=emails").await.json();
    assert_eq!(elsewhere["text"], "commands are not accepted in this channel; use one of: COPS, CINC");
    // A request is stored (with its audit entry) before its message is posted: none was.
    assert!(audit(&app).await.is_empty());
    assert!(app.fake.all_messages().is_empty(), "a refused request was posted");
    app.fake.assert_all_accepted();
    app.stop().await;

    // Without a `remediate` entry nobody may, not even a member of the approver group.
    let worker = Worker::new(1);
    let app = spawn(worker.workspace, "[groups]\noncall = [\"slack:U0001\", \"slack:U0002\"]\n").await;
    for user in [REQUESTER, APPROVER] {
        let reply = app.slash(user, OPS, "/remediate", "restart-worker queue=emails").await.json();
        assert_eq!(
            reply["text"],
            format!(
                "you (slack:{user}) may not request remediations; allowed: nobody (set it in [permissions] of firebell.toml)"
            )
        );
    }
    // Refused before anything was stored: no request, so nothing to post or run.
    assert!(audit(&app).await.is_empty());
    assert!(app.fake.all_messages().is_empty());
    assert!(lines_in(&log).is_empty());
    app.fake.assert_all_accepted();
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Suggestions, incidents, failure

#[tokio::test]
async fn a_suggested_remediation_button_opens_a_request_with_the_diagnosis_argument() {
    let worker = Worker::new(1);
    let command = worker.scripts.restart_command("trades");
    let log = worker.scripts.log.clone();
    let app = spawn(worker.workspace, POLICY).await;

    // A calm queue: no suggestion.
    let answer = app.slash(REQUESTER, OPS, "/diagnose", "worker queue=emails").await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    let calm = app
        .wait_message("the calm diagnosis", OPS, WAIT, |message| message.visible_text().contains("diagnose worker: OK"))
        .await;
    assert!(button_labels(&calm).is_empty(), "{:?}", button_labels(&calm));

    // A backed-up queue: the restart is suggested for that queue.
    let answer = app.slash(REQUESTER, OPS, "/diagnose", "worker queue=trades").await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    let diagnosis = app
        .wait_message("the warning diagnosis", OPS, WAIT, |message| {
            message.visible_text().contains("diagnose worker: WARN") && !button_labels(message).is_empty()
        })
        .await;
    assert_eq!(button_labels(&diagnosis), ["Run restart-worker"]);
    let (action, value, _) = button(&diagnosis, "Run restart-worker").expect("the suggestion");
    assert_eq!((action.as_str(), value.as_str()), ("remediate", "restart-worker?queue=trades"));
    assert!(seen(&diagnosis).contains("Suggested remediations (each needs approval):"));

    accepted_click(&app, APPROVER, &diagnosis, "Run restart-worker").await;
    let request = request_message(&app, OPS, 1).await;
    assert_eq!(request.thread_ts.as_deref(), Some(diagnosis.ts.as_str()), "the request goes in the diagnosis's thread");
    assert!(seen(&request).contains(&format!("```\n{command}\n```")), "{}", seen(&request));
    assert!(seen(&request).contains("*Requested by*\n<@U0002>"), "{}", seen(&request));
    assert!(lines_in(&log).is_empty(), "a suggestion runs nothing by itself");

    // The one who clicked the suggestion asked for it: someone else approves.
    let own = refused_click(&app, APPROVER, &request, "Approve").await;
    assert!(own.contains("someone else must approve"), "{own}");
    accepted_click(&app, REQUESTER, &request, "Approve").await;
    wait_request(&app, 1, "the run", |request| request["state"] == "succeeded").await;
    assert_eq!(lines_in(&log), ["restarted trades"]);
    app.fake
        .wait_for("the result in the diagnosis's thread", WAIT, |fake| {
            fake.thread(OPS, &diagnosis.ts)
                .iter()
                .any(|reply| reply.visible_text().contains("✅ *restart-worker* (request #1)"))
        })
        .await;
    app.fake.assert_all_accepted();
    app.stop().await;
}

#[tokio::test]
async fn a_failing_remediation_reports_its_error_in_the_incident_thread_the_timeline_and_the_audit() {
    let worker = Worker::new(1);
    let drain = worker.scripts.drain.clone();
    let config_path = worker.workspace.path().join("firebell.toml");
    let app = spawn(worker.workspace, POLICY).await;

    let answer = app.slash(REQUESTER, OPS, "/incident", "declare Workers stuck sev=high").await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    let notification = app
        .wait_message("the notification", INCIDENTS, WAIT, |message| {
            message.visible_text().contains("INCIDENT #1: Workers stuck")
        })
        .await;
    let root = notification.ts.clone();

    // Asked for in the incident's thread (slash commands carry no thread; mentions do).
    let answer = app.mention_in_thread(REQUESTER, INCIDENTS, &root, "remediate drain-worker queue=emails").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let request = request_message(&app, INCIDENTS, 1).await;
    assert_eq!(request.thread_ts.as_deref(), Some(root.as_str()), "the request is in the incident's thread");
    assert!(seen(&request).contains("*Incident*\n#1"), "{}", seen(&request));
    assert!(seen(&request).contains(&format!("run [\"{}\", \"emails\"]", drain.display())), "{}", seen(&request));

    let first = refused_click(&app, APPROVER, &request, "Approve").await;
    assert!(first.contains("Approval recorded: 1 of 2"), "{first}");
    accepted_click(&app, SECOND_APPROVER, &request, "Approve").await;
    let failed = message_becomes(&app, &request, "the request turned failed", |message| {
        message.visible_text().contains("Failed")
    })
    .await;
    assert!(
        seen(&failed).contains("❌ Failed (approved by <@U0002>, <@U0003>): exit 1: draining emails"),
        "{}",
        seen(&failed)
    );
    app.fake
        .wait_for("the error in the thread", WAIT, |fake| {
            fake.thread(INCIDENTS, &root).iter().any(|reply| reply.visible_text().contains("(request #1)"))
        })
        .await;
    let error = app
        .fake
        .thread(INCIDENTS, &root)
        .into_iter()
        .find(|reply| reply.visible_text().contains("(request #1)"))
        .map(|reply| seen(&reply))
        .expect("the error");
    assert!(error.contains("❌ *drain-worker* (request #1): exit 1: draining emails"), "{error}");
    assert!(error.contains("drain failed: queue emails is locked by another drain"), "stderr is shown:\n{error}");

    // The incident's timeline.
    let incident = app
        .wait_incident(1, "the run on the timeline", WAIT, |incident| {
            incident["timeline"].as_array().is_some_and(|events| events.iter().any(|e| e["kind"] == "remediation_ran"))
        })
        .await;
    let events: Vec<&Value> = incident["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .filter(|event| event["kind"].as_str().unwrap_or("").starts_with("remediation_"))
        .collect();
    let kinds: Vec<(&str, Option<&str>)> =
        events.iter().map(|event| (event["kind"].as_str().unwrap_or(""), event["by"].as_str())).collect();
    // Every approval is there with who and when, then the decision and the run.
    assert_eq!(
        kinds,
        [
            ("remediation_requested", Some("slack:U0001")),
            ("remediation_approval", Some("slack:U0002")),
            ("remediation_approval", Some("slack:U0003")),
            ("remediation_approved", Some("slack:U0003")),
            ("remediation_ran", None)
        ]
    );
    let ran = &events[4]["detail"];
    assert_eq!(ran["status"], "failed", "{ran}");
    assert_eq!(ran["approved_by"], serde_json::json!(["slack:U0002", "slack:U0003"]));
    assert_eq!(ran["command"], format!("run [\"{}\", \"emails\"]\ntimeout 10s", drain.display()));
    assert!(ran["result"].as_str().unwrap_or("").contains("exit 1"), "{ran}");

    // The audit log, through the API and through the CLI on the same store.
    let entries = audit(&app).await;
    assert_eq!(
        audit_trail(&entries, 1),
        trail(&[
            ("remediation_requested", person(REQUESTER)),
            ("remediation_approval", person(APPROVER)),
            ("remediation_approval", person(SECOND_APPROVER)),
            ("remediation_approved", person(SECOND_APPROVER)),
            ("remediation_ran", None),
        ])
    );
    assert!(entries.iter().all(|entry| entry["incident_id"] == 1), "{entries:#?}");
    let from_api = app.get_json("/api/audit").await;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_firebell"))
        .arg("--config")
        .arg(&config_path)
        .args(["audit", "--json"])
        .env_remove("FIREBELL_CONFIG")
        .env_remove("FIREBELL_LOG")
        .output()
        .await
        .expect("firebell runs");
    assert!(output.status.success(), "firebell audit: {}", String::from_utf8_lossy(&output.stderr));
    let from_cli: Value = serde_json::from_slice(&output.stdout).expect("firebell audit --json prints JSON");
    assert_eq!(from_cli, from_api, "the CLI and the API show the same audit log");
    app.fake.assert_all_accepted();
    app.stop().await;
}

/// An internal API that counts its hits and answers 200; its URL and its hits.
async fn counting_api() -> (String, Arc<AtomicUsize>) {
    let (address, hits) = internal_api(|_| (axum::http::StatusCode::OK, "reloaded".to_string())).await;
    (format!("http://{address}"), hits)
}

#[tokio::test]
async fn a_request_shows_the_whole_request_and_a_changed_target_makes_it_stale() {
    const TOKEN: &str = "Bearer TopSecretToken123";
    let (api_url, hits) = counting_api().await;
    let workspace = Workspace::new();
    workspace.runbook(
        "api",
        r#"name = "api"
summary = "The internal API"

[args.queue]
pattern = '^[a-z0-9_]{1,32}$'
help = "queue name"

[[remediations]]
name = "reload-queue"
summary = "Reload one queue"
kind = "http"
method = "POST"
target = "api"
path = "/reload/./{{queue}}?x= y"
headers = { Content-Type = "application/json" }
body = '{"queue": "{{queue}}", "force": true}'
approvers = ["oncall"]
"#,
    );
    let config = |url: &str| {
        format!(
            "[targets.api]\nkind = \"http\"\nurl = {}\nheaders = {{ Authorization = {} }}\n\n{POLICY}",
            toml_str(url),
            toml_str(TOKEN)
        )
    };
    let app = spawn(workspace, &config(&api_url)).await;
    remediate(&app, REQUESTER, OPS, "reload-queue queue=emails").await;
    let request = request_message(&app, OPS, 1).await;

    // Approvers read everything that will be sent: the target and the normalised path, every
    // header (the target's value masked), the whole body, and the timeout.
    let body = r#"{"queue": "emails", "force": true}"#;
    let expected = format!(
        "```\nPOST [api]/reload/emails?x=%20y\nheader Authorization: \"***\"\nheader Content-Type: \"application/json\"\n\
         body (JSON, {} bytes):\n{body}\ntimeout 10s\n```",
        body.len()
    );
    assert!(seen(&request).contains(&expected), "expected\n{expected}\nin\n{}", seen(&request));
    assert!(!app.fake.calls().iter().any(|call| call.body.to_string().contains("TopSecretToken123")));

    // The target moves (someone edits firebell.toml) and the bot restarts: the approval that was
    // asked for the old address does not run against the new one.
    let (moved_url, moved_hits) = counting_api().await;
    let app = app.restart(&config(&moved_url), Arc::new(SystemClock)).await;
    let stale = refused_click(&app, APPROVER, &request, "Approve").await;
    assert!(stale.contains("changed after request #1") && stale.contains("nothing ran"), "{stale}");
    assert_eq!(app.get_json("/api/remediations/1").await["state"], "stale");

    // Asked anew, it shows the new address and runs there once approved.
    remediate(&app, REQUESTER, OPS, "reload-queue queue=emails").await;
    let again = request_message(&app, OPS, 2).await;
    assert_eq!(
        app.get_json("/api/remediations/2").await["command"],
        app.get_json("/api/remediations/1").await["command"]
    );
    assert_ne!(
        app.get_json("/api/remediations/2").await["action_hash"],
        app.get_json("/api/remediations/1").await["action_hash"],
        "what people read is the same, what the approval binds is not"
    );
    accepted_click(&app, APPROVER, &again, "Approve").await;
    wait_request(&app, 2, "request #2 to run", |request| request["state"] == "succeeded").await;
    assert_eq!((hits.load(Ordering::SeqCst), moved_hits.load(Ordering::SeqCst)), (0, 1));
    app.fake.assert_all_accepted();
    app.stop().await;
}
