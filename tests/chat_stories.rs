//! The chat stories, each written once and run on every platform: the real app in-process,
//! driven through the platform-neutral [`Driver`] over the fake Slack (`slack::story`), the fake
//! Discord (`discord::story`) and the web console (`console::story`). What only one platform
//! has — Slack's modal shape and 3-second acknowledgement, Discord's ephemeral flag and
//! signatures, the console's sign-in — is asserted in that platform's own file.

#[path = "support/driver.rs"]
mod driver;
mod fake_discord;
mod fake_slack;
mod slack_e2e_support;
mod support;

use std::path::Path;

use driver::{Driver, Person};
use firebell::chat::core::EDIT_INTERVAL;
use serde_json::Value;
use support::app::{Workspace, toml_str};
use support::runbooks;
use support::wait::eventually;

/// Each story runs on each platform; the tests are `slack::story`, `discord::story` and
/// `console::story`.
macro_rules! on_every_platform {
    ($($story:ident),* $(,)?) => {
        mod slack {
            $(
                #[tokio::test]
                async fn $story() {
                    super::$story::<crate::driver::SlackDriver>().await;
                }
            )*
        }
        mod discord {
            $(
                #[tokio::test]
                async fn $story() {
                    super::$story::<crate::driver::DiscordDriver>().await;
                }
            )*
        }
        mod console {
            $(
                #[tokio::test]
                async fn $story() {
                    super::$story::<crate::driver::ConsoleDriver>().await;
                }
            )*
        }
    };
}

on_every_platform!(
    a_diagnosis_streams_one_message_edited_at_a_steady_pace_that_ends_with_every_verdict,
    declare_acknowledge_and_resolve_show_in_the_notification_its_thread_and_the_incident,
    a_remediation_is_refused_to_its_requester_and_runs_once_when_someone_else_approves,
    a_mistyped_topic_gets_a_private_reply_naming_the_valid_topics_and_nothing_is_posted,
);

/// The lines of the side-effect file (none when it was never written).
fn lines_in(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).map(|text| text.lines().map(str::to_string).collect()).unwrap_or_default()
}

async fn a_diagnosis_streams_one_message_edited_at_a_steady_pace_that_ends_with_every_verdict<D: Driver>() {
    let workspace = Workspace::new();
    runbooks::workers(&workspace);
    let chat = D::start(workspace, "").await;
    let ops = chat.ops();

    chat.type_command(Person::Alice, &ops, "/diagnose workers queue=trades").await;
    let finished = chat
        .wait_message("the finished diagnosis", &ops, |message| message.text.contains("diagnose workers: WARN"))
        .await;

    let top = chat.messages(&ops).await;
    assert_eq!(top.len(), 1, "one message for the diagnosis: {top:#?}");
    assert_eq!(top[0].id, finished.id);
    for expected in ["WARN queue depth — ", "OK heartbeats — "] {
        assert!(
            finished.lines().iter().any(|line| line.contains(expected)),
            "no line with {expected:?} in the finished message:\n{}",
            finished.text
        );
    }
    assert!(finished.text.contains("depth of trades: 57"), "the argument reached the check:\n{}", finished.text);
    assert!(!finished.text.contains("running"), "a check still shows as running:\n{}", finished.text);
    assert!(
        finished.text.contains(&format!("requested by {}", D::mention(Person::Alice))),
        "who asked is named:\n{}",
        finished.text
    );

    // Posted while the checks ran, edited when the quick one finished and again at the end:
    // never two changes within the core's edit interval, as the platform recorded them.
    let changes = chat.changes(&finished).await;
    assert!(changes.len() >= 3, "a post, an edit while running and a final edit: {changes:#?}");
    assert!(changes[0].text.contains("diagnose workers — running"), "the first post: {changes:#?}");
    assert!(
        changes[1].text.contains("WARN queue depth — ") && changes[1].text.contains("heartbeats — running"),
        "the first edit shows the quick check's verdict while the slow one runs: {changes:#?}"
    );
    assert_eq!(changes.last().map(|change| &change.text), Some(&finished.text), "the last change is what shows");
    for pair in changes.windows(2) {
        let apart = pair[1].after - pair[0].after;
        assert!(apart >= EDIT_INTERVAL, "two changes {apart:?} apart: {changes:#?}");
    }

    // The checks' output goes into the thread under the diagnosis.
    chat.wait_message("the output in the diagnosis's thread", &finished.thread(), |reply| {
        reply.text.contains("4 of 4 workers heartbeating")
    })
    .await;
    assert_eq!(chat.messages(&ops).await.len(), 1, "the output is not a new message in the channel");
    chat.assert_no_platform_errors();
    chat.stop().await;
}

/// The kinds and actors of an incident's `declared`, `acknowledged` and `resolved` events.
fn transitions(incident: &Value) -> Vec<(String, String)> {
    incident["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|event| ["declared", "acknowledged", "resolved"].contains(&event["kind"].as_str().unwrap_or("")))
        .map(|event| (event["kind"].as_str().unwrap_or("").to_string(), event["by"].as_str().unwrap_or("").to_string()))
        .collect()
}

async fn declare_acknowledge_and_resolve_show_in_the_notification_its_thread_and_the_incident<D: Driver>() {
    let workspace = Workspace::new();
    workspace.runbook("ping", runbooks::PING);
    let chat = D::start(workspace, "").await;
    let (ops, incidents) = (chat.ops(), chat.incidents());

    chat.type_command(Person::Alice, &ops, r#"/incident declare API down sev=critical impact="checkout fails""#).await;
    let notification =
        chat.wait_message("the notification", &incidents, |message| message.text.contains("API down")).await;
    for expected in ["#1", "TRIGGERED", "CRITICAL", "checkout fails", "Started", "ETA"] {
        assert!(notification.text.contains(expected), "no {expected:?} in the notification:\n{}", notification.text);
    }
    assert_eq!(notification.buttons, ["Acknowledge", "Diagnose", "Resolve"]);
    assert!(chat.messages(&ops).await.is_empty(), "nothing is posted where it was declared");

    chat.click(Person::Bob, &notification, "Acknowledge").await;
    let acknowledged_by = format!("Acknowledged by {}", D::mention(Person::Bob));
    chat.wait_message("the acknowledgement in the thread", &notification.thread(), |reply| {
        reply.text.contains(&acknowledged_by)
    })
    .await;
    let acknowledged = chat
        .wait_until("the notification turned acknowledged", &notification, |message| {
            message.text.contains("ACKNOWLEDGED")
        })
        .await;
    assert_eq!(acknowledged.buttons, ["Diagnose", "Resolve"]);

    // Someone clicks Acknowledge on the notification as it was before: told privately, and
    // nothing changes.
    chat.click(Person::Carol, &notification, "Acknowledge").await;
    let already = format!("already acknowledged by {}", D::person(Person::Bob));
    chat.wait_private("the late acknowledgement's answer", Person::Carol, |reply| reply.contains(&already)).await;
    assert_eq!(chat.api("/api/incidents/1").await["acknowledged_by"], D::person(Person::Bob));

    // Diagnose: a menu of runbooks in the thread, and the chosen one runs there.
    chat.click(Person::Bob, &acknowledged, "Diagnose").await;
    let menu = chat.wait_message("the runbook menu", &notification.thread(), |reply| reply.buttons == ["ping"]).await;
    chat.click(Person::Bob, &menu, "ping").await;
    chat.wait_message("the diagnosis in the thread", &notification.thread(), |reply| {
        reply.text.contains("diagnose ping: OK")
    })
    .await;
    eventually(
        "the diagnosis on the timeline",
        || chat.api("/api/incidents/1"),
        |incident| {
            incident["timeline"].as_array().is_some_and(|events| events.iter().any(|e| e["kind"] == "diagnosis"))
        },
    )
    .await;

    chat.click(Person::Bob, &acknowledged, "Resolve").await;
    let form = chat.form(Person::Bob).await;
    assert_eq!(form.title, "Resolve incident #1");
    assert_eq!(form.fields, ["root_cause", "fix", "prevention"]);
    let thread = chat.messages(&notification.thread()).await;
    assert!(!thread.iter().any(|reply| reply.text.contains("RESOLVED")), "opening the form resolves nothing yet");
    assert_eq!(chat.api("/api/incidents/1").await["status"], "acknowledged");

    chat.submit(
        Person::Bob,
        &form,
        &[
            ("root_cause", "Connection pool exhausted by a retry storm"),
            ("fix", "Raised the pool size and restarted checkout"),
            ("prevention", "Retry with jitter; alert on pool saturation"),
        ],
    )
    .await;
    let summary = chat
        .wait_message("the resolution summary in the thread", &notification.thread(), |reply| {
            reply.text.contains("RESOLVED")
        })
        .await;
    for expected in [
        "API down",
        "Connection pool exhausted by a retry storm",
        "Raised the pool size and restarted checkout",
        "Retry with jitter; alert on pool saturation",
        "Time to acknowledge",
        "Duration",
        "[OK] ping / true",
    ] {
        assert!(summary.text.contains(expected), "no {expected:?} in the summary:\n{}", summary.text);
    }
    let resolved = chat
        .wait_until("the notification turned resolved", &notification, |message| message.text.contains("RESOLVED"))
        .await;
    assert!(resolved.buttons.is_empty(), "a resolved incident has no buttons: {:?}", resolved.buttons);
    assert_eq!(chat.messages(&incidents).await.len(), 1, "edits, not new notifications");

    // Too late for the form now: whoever clicks Resolve on the old notification is told so.
    chat.click(Person::Carol, &notification, "Resolve").await;
    chat.wait_private("the late resolve's answer", Person::Carol, |reply| reply.contains("resolved")).await;

    let incident = chat.api("/api/incidents/1").await;
    assert_eq!(incident["title"], "API down");
    assert_eq!(incident["status"], "resolved");
    assert_eq!(incident["severity"], "critical");
    assert_eq!(incident["impact"], "checkout fails");
    assert_eq!(incident["root_cause"], "Connection pool exhausted by a retry storm");
    assert_eq!(incident["declared_by"], D::person(Person::Alice));
    assert_eq!(incident["acknowledged_by"], D::person(Person::Bob));
    assert_eq!(incident["resolved_by"], D::person(Person::Bob));
    let (alice, bob) = (D::person(Person::Alice), D::person(Person::Bob));
    assert_eq!(
        transitions(&incident),
        [("declared".to_string(), alice), ("acknowledged".to_string(), bob.clone()), ("resolved".to_string(), bob)]
    );
    chat.assert_no_platform_errors();
    chat.stop().await;
}

async fn a_remediation_is_refused_to_its_requester_and_runs_once_when_someone_else_approves<D: Driver>() {
    let workspace = Workspace::new();
    let log = runbooks::workers(&workspace);
    let oncall: Vec<String> = Person::ALL.iter().map(|who| toml_str(&D::person(*who))).collect();
    let rest = format!("[groups]\noncall = [{}]\n\n[permissions]\nremediate = [\"group:oncall\"]\n", oncall.join(", "));
    let chat = D::start(workspace, &rest).await;
    let ops = chat.ops();

    chat.type_command(Person::Alice, &ops, "/remediate restart-workers queue=emails").await;
    let request = chat
        .wait_message("the approval request", &ops, |message| {
            message.text.contains("Remediation request #1: restart-workers")
        })
        .await;
    assert_eq!(request.buttons, ["Approve", "Deny"]);
    assert!(request.text.contains("emails"), "the request shows what will run:\n{}", request.text);
    let stored = eventually(
        "the request to know its message",
        || chat.api("/api/remediations/1"),
        |stored| stored["message"].is_string(),
    )
    .await;
    assert_eq!(stored["requested_by"], D::person(Person::Alice));

    // The requester's own approval is refused, and nothing runs.
    chat.click(Person::Alice, &request, "Approve").await;
    chat.wait_private("the refusal", Person::Alice, |reply| reply.contains("someone else must approve")).await;
    let stored = chat.api("/api/remediations/1").await;
    assert_eq!((stored["state"].as_str(), stored["votes"].as_array().map(Vec::len)), (Some("pending"), Some(0)));
    assert!(lines_in(&log).is_empty(), "the requester's own approval ran the remediation");
    assert_eq!(chat.current(&request).await.buttons, ["Approve", "Deny"], "still waiting for an approval");

    // Someone else approves: it runs, once.
    chat.click(Person::Bob, &request, "Approve").await;
    let done =
        chat.wait_until("the request turned succeeded", &request, |message| message.text.contains("Succeeded")).await;
    assert!(
        done.text.contains(&format!("approved by {}", D::mention(Person::Bob))),
        "who approved is named:\n{}",
        done.text
    );
    assert!(done.buttons.is_empty(), "a decided request has no buttons: {:?}", done.buttons);
    eventually("the run to be recorded", || chat.api("/api/remediations/1"), |stored| stored["state"] == "succeeded")
        .await;
    assert_eq!(lines_in(&log), ["restarted emails"]);

    // A late approval on the message as it first stood changes nothing.
    chat.click(Person::Carol, &request, "Approve").await;
    chat.wait_private("the late approval's answer", Person::Carol, |reply| reply.contains("already succeeded")).await;
    let stored = chat.api("/api/remediations/1").await;
    let voters: Vec<&str> =
        stored["votes"].as_array().into_iter().flatten().filter_map(|vote| vote["voter"].as_str()).collect();
    assert_eq!(voters, [D::person(Person::Bob)]);
    assert_eq!(lines_in(&log), ["restarted emails"], "exactly one run");
    assert_eq!(chat.messages(&ops).await.len(), 1, "one request message, edited in place");
    chat.assert_no_platform_errors();
    chat.stop().await;
}

async fn a_mistyped_topic_gets_a_private_reply_naming_the_valid_topics_and_nothing_is_posted<D: Driver>() {
    let workspace = Workspace::new();
    workspace.runbook("ping", runbooks::PING);
    workspace.runbook(
        "disk",
        "name = \"disk\"\nsummary = \"Free space\"\n\n[[checks]]\nname = \"df\"\nkind = \"exec\"\nargv = [\"true\"]\n",
    );
    let chat = D::start(workspace, "").await;
    let ops = chat.ops();

    chat.type_command(Person::Alice, &ops, "/diagnose nope").await;
    let reply = chat.wait_private("the private reply", Person::Alice, |reply| reply.contains("nope")).await;
    assert!(reply.contains("disk") && reply.contains("ping"), "the reply names the valid topics: {reply}");
    assert!(chat.private_replies(Person::Bob).await.is_empty(), "only the one who typed it is told");

    // The topic is decided before anything starts: past the private reply, nothing follows.
    assert!(chat.messages(&ops).await.is_empty(), "{:#?}", chat.messages(&ops).await);
    assert!(chat.messages(&chat.incidents()).await.is_empty());
    chat.assert_no_platform_errors();
    chat.stop().await;
}
