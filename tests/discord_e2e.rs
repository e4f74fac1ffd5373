//! End to end through Discord: the real app (HTTP interactions endpoint, wall clock, SQLite)
//! receives interactions signed with the application's key — slash commands, clicks, modal
//! submissions, in channels and inside incident threads — and the tests read what people would
//! see from a fake Discord API that records every call and refuses what Discord refuses
//! (over-limit bodies, calls faster than its rate limits, unknown routes).

mod common;
mod fake_discord;
mod support;

use std::path::Path;
use std::time::Duration;

use ed25519_dalek::SigningKey;
use fake_discord::app::{DiscordApp, Place, Workspace, command, now, signature_headers, signing_key, spawn};
use fake_discord::{APPLICATION, GUILD, INCIDENTS, OPS, StoredMessage};
use serde_json::{Value, json};

/// Long enough for any of these stories on a loaded machine; they take seconds.
const WAIT: Duration = Duration::from_secs(30);
/// Discord's own deadline: an answer later than this is a failure the user sees. How fast answers
/// really are is measured by the benchmarks, not asserted here.
const ACK_BOUND: Duration = Duration::from_secs(3);

const REQUESTER: &str = "111111111111111111";
const APPROVER: &str = "222222222222222222";

const PEOPLE: &str = r#"[groups]
oncall = ["discord:111111111111111111", "discord:222222222222222222"]

[permissions]
remediate = ["group:oncall"]
"#;

use support::runbooks::workers as workers_runbook;

fn declare_options(title: &str) -> Value {
    json!([{"name": "declare", "type": 1, "options": [
        {"name": "title", "type": 3, "value": title},
        {"name": "sev", "type": 3, "value": "high"},
    ]}])
}

/// Declares an incident from OPS and returns its notification in the incident channel.
async fn declare(app: &DiscordApp, title: &str) -> StoredMessage {
    let answer = app.slash(REQUESTER, &Place::channel(OPS), "incident", declare_options(title)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.took < ACK_BOUND, "answered after {:?}", answer.took);
    app.fake.wait_message("the incident notification", INCIDENTS, WAIT, |message| message.content.contains(title)).await
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path).unwrap_or_default().lines().map(str::to_string).collect()
}

fn timeline_kinds(incident: &Value) -> Vec<String> {
    incident["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|event| event["kind"].as_str().unwrap_or("").to_string())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Signatures, deadlines, repeats

#[tokio::test]
async fn a_ping_is_answered_with_pong_and_forged_or_stale_interactions_get_401_and_do_nothing() {
    let workspace = Workspace::new();
    workers_runbook(&workspace);
    let app = spawn(workspace, PEOPLE).await;

    let ping = json!({"id": "1", "application_id": APPLICATION, "type": 1, "token": "t", "version": 1}).to_string();
    let answer = app.send_raw(&ping, &signature_headers(&signing_key(), now(), &ping)).await;
    // serenity writes `"data": null` for a PONG, which Discord accepts.
    assert_eq!((answer.status, answer.json()), (200, json!({"type": 1, "data": null})));
    assert!(answer.took < ACK_BOUND, "{:?}", answer.took);

    let declare = command(REQUESTER, &Place::channel(OPS), "incident", declare_options("Forged")).to_string();
    let forger = SigningKey::from_bytes(&[7; 32]);
    let mut tampered = signature_headers(&signing_key(), now(), &declare);
    tampered[1].1 = (now() + 1).to_string();
    let refusals: Vec<(&str, Vec<(&str, String)>)> = vec![
        ("signed by another key", signature_headers(&forger, now(), &declare)),
        ("signed for another timestamp", tampered),
        ("signed over another body", signature_headers(&signing_key(), now(), &ping)),
        // Ten seconds past the window, not one: the app reads its own clock a moment after `now()`,
        // and a second boundary crossed in between would otherwise land exactly on the window.
        ("five minutes and ten seconds old", signature_headers(&signing_key(), now() - 310, &declare)),
        ("five minutes and ten seconds ahead", signature_headers(&signing_key(), now() + 310, &declare)),
        ("without a signature", vec![("x-signature-timestamp", now().to_string())]),
        ("without headers", Vec::new()),
        (
            "with a signature that is not hex",
            vec![("x-signature-ed25519", "zz".repeat(64)), ("x-signature-timestamp", now().to_string())],
        ),
    ];
    for (what, headers) in refusals {
        let answer = app.send_raw(&declare, &headers).await;
        assert_eq!(answer.status, 401, "an interaction {what} was not refused: {answer:?}");
    }
    // A correctly signed request four minutes old is still fine (the window is five).
    let recent = app.send_raw(&ping, &signature_headers(&signing_key(), now() - 240, &ping)).await;
    assert_eq!(recent.status, 200);

    // Each refusal is decided before anything reads the body: nothing can still be on its way.
    assert_eq!(app.get_json("/api/incidents").await, json!([]), "a refused interaction declared an incident");
    assert!(app.fake.calls_to("channels/").is_empty(), "a refused interaction reached Discord");
    app.stop().await;
}

#[tokio::test]
async fn a_repeated_interaction_does_nothing_twice() {
    let workspace = Workspace::new();
    workers_runbook(&workspace);
    let app = spawn(workspace, PEOPLE).await;

    let interaction = command(REQUESTER, &Place::channel(OPS), "incident", declare_options("Checkout fails"));
    let first = app.send(&interaction).await;
    assert_eq!(first.status, 200);
    assert!(
        first.is_ephemeral() && first.text().contains("/incident declare \"Checkout fails\" sev=high"),
        "{first:?}"
    );
    let again = app.send(&interaction).await;
    assert_eq!(again.status, 200);
    assert!(again.text().contains("already handled"), "{again:?}");

    app.fake
        .wait_message("the notification", INCIDENTS, WAIT, |message| message.content.contains("Checkout fails"))
        .await;
    // The repeat was refused before its answer, so only the first can have declared anything.
    let incidents = app.get_json("/api/incidents").await;
    assert_eq!(incidents.as_array().unwrap().len(), 1, "{incidents:#}");
    assert_eq!(app.fake.messages(INCIDENTS).len(), 1, "one notification");
    app.fake.assert_paced();
    app.stop().await;
}

#[tokio::test]
async fn commands_are_registered_once_at_start_in_the_guild_with_the_catalogue() {
    let workspace = Workspace::new();
    workers_runbook(&workspace);
    let app = spawn(workspace, PEOPLE).await;
    app.fake.wait_for("the command registration", WAIT, |fake| !fake.registrations().is_empty()).await;
    let (path, commands) = app.fake.registrations().remove(0);
    assert_eq!(path, format!("applications/{APPLICATION}/guilds/{GUILD}/commands"));
    let names: Vec<&str> =
        commands.as_array().unwrap().iter().map(|command| command["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["diagnose", "remediate", "incident", "oncall"]);
    let topic = &commands[0]["options"][0];
    assert_eq!(topic["name"], "topic");
    assert_eq!(topic["choices"][0]["value"], "workers");
    let subcommands: Vec<&str> =
        commands[2]["options"].as_array().unwrap().iter().map(|sub| sub["name"].as_str().unwrap()).collect();
    assert_eq!(
        subcommands,
        [
            "declare",
            "ack",
            "resolve",
            "escalate",
            "status",
            "note",
            "followup",
            "followups",
            "list",
            "summary",
            "postmortem"
        ]
    );
    // Registration ends once Discord took the commands: nothing registers again.
    assert_eq!(app.fake.registrations().len(), 1, "registered once");
    app.fake.assert_paced();
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The incident story

#[tokio::test]
async fn diagnose_streams_into_the_incident_thread_and_a_remediation_needs_someone_else_to_approve() {
    let workspace = Workspace::new();
    let log = workers_runbook(&workspace);
    let app = spawn(workspace, PEOPLE).await;

    let notification = declare(&app, "Workers stuck").await;
    assert!(
        notification.content.contains(&format!("<@{REQUESTER}>")),
        "the commander is mentioned: {}",
        notification.content
    );
    let labels: Vec<String> = notification.buttons().into_iter().map(|(label, _)| label).collect();
    assert_eq!(labels, ["Acknowledge", "Diagnose", "Resolve"]);
    app.fake
        .wait_for("the incident thread", WAIT, |fake| fake.threads().iter().any(|thread| thread.id == notification.id))
        .await;
    let thread = app.fake.threads().into_iter().find(|thread| thread.id == notification.id).unwrap();
    assert_eq!(thread.parent, INCIDENTS);
    assert!(thread.name.contains("Workers stuck"), "{}", thread.name);

    // Typed inside the thread: Discord says the channel is the thread, its parent the channel.
    let in_thread = Place::Thread { id: thread.id.clone(), parent: INCIDENTS.to_string() };
    let answer = app
        .slash(
            REQUESTER,
            &in_thread,
            "diagnose",
            json!([
                {"name": "topic", "type": 3, "value": "workers"},
                {"name": "args", "type": 3, "value": "queue=trades"},
            ]),
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.took < ACK_BOUND, "answered after {:?}", answer.took);
    assert!(answer.is_ephemeral() && answer.text().contains("/diagnose workers queue=trades"), "{answer:?}");

    let running = app
        .fake
        .wait_message("the diagnosis in the thread", &thread.id, WAIT, |message| {
            message.visible_text().contains("diagnose workers")
        })
        .await;
    let finished = app
        .fake
        .wait_message("the finished diagnosis", &thread.id, WAIT, |message| {
            message.id == running.id && message.visible_text().contains("diagnose workers: WARN")
        })
        .await;
    let text = finished.visible_text();
    assert!(text.contains("**WARN** queue depth — "), "{text}");
    assert!(text.contains("heartbeats"), "{text}");
    // How it streamed (edits paced, the first verdict before the last) is a shared story in
    // chat_stories.rs.
    // The thread found its incident: the diagnosis is on the incident's timeline.
    let incident = app
        .wait_incident(1, "the diagnosis on the timeline", WAIT, |incident| {
            timeline_kinds(incident).contains(&"diagnosis".to_string())
        })
        .await;
    assert_eq!(incident["title"], "Workers stuck");

    // The suggested remediation: a request in the thread, which its requester cannot approve.
    let click = app.click(REQUESTER, &finished, "Run restart-workers").await;
    assert_eq!(click.status, 200, "{click:?}");
    assert_eq!(click.kind(), 6, "a click with nothing to say is acknowledged silently: {click:?}");
    let request = app
        .fake
        .wait_message("the approval request", &thread.id, WAIT, |message| {
            message.visible_text().contains("Remediation request #1: restart-workers")
        })
        .await;
    assert!(
        request.visible_text().contains("restarted") || request.visible_text().contains("trades"),
        "{}",
        request.visible_text()
    );
    let refused = app.click(REQUESTER, &request, "Approve").await;
    assert_eq!(refused.status, 200);
    assert!(refused.is_ephemeral(), "{refused:?}");
    assert!(refused.text().contains("approve"), "the requester is told why not: {}", refused.text());
    // That nothing ran, and that the approver is named on the request, is a shared story in
    // chat_stories.rs; here the approval by someone else in the incident's thread.

    let approved = app.click(APPROVER, &request, "Approve").await;
    assert_eq!(approved.status, 200, "{approved:?}");
    assert!(approved.took < ACK_BOUND, "{:?}", approved.took);
    let done = app
        .fake
        .wait_message("the request marked succeeded", &thread.id, WAIT, |message| {
            message.id == request.id && message.visible_text().contains("Succeeded")
        })
        .await;
    assert!(done.buttons().is_empty(), "a decided request has no buttons left");
    assert_eq!(lines(&log), ["restarted trades"]);
    let incident = app
        .wait_incident(1, "the approval on the timeline", WAIT, |incident| {
            timeline_kinds(incident).contains(&"remediation_ran".to_string())
        })
        .await;
    let approval =
        incident["timeline"].as_array().unwrap().iter().find(|event| event["kind"] == "remediation_approved").unwrap();
    assert_eq!(approval["by"], format!("discord:{APPROVER}"));

    app.fake.assert_paced();
    app.stop().await;
}

/// The story (the form's fields, the summary in the thread, the notification and the incident
/// resolved, a late click refused) is shared in chat_stories.rs; here, what is Discord's: the
/// form is a modal (type 9) within the 3-second deadline, also for the typed command, that
/// Discord accepts; the submission is acknowledged as a deferred update (6); a late click is
/// answered with an ephemeral message (4).
#[tokio::test]
async fn resolve_answers_with_a_modal_and_its_submission_with_a_deferred_update() {
    let workspace = Workspace::new();
    workers_runbook(&workspace);
    let app = spawn(workspace, PEOPLE).await;
    let notification = declare(&app, "Disk full").await;

    // The typed command with no fields answers with the form as well.
    let in_thread = Place::Thread { id: notification.id.clone(), parent: INCIDENTS.to_string() };
    app.fake.wait_for("the incident thread", WAIT, |fake| !fake.threads().is_empty()).await;
    let typed = app.slash(REQUESTER, &in_thread, "incident", json!([{"name": "resolve", "type": 1}])).await;
    assert_eq!(typed.kind(), 9, "{typed:?}");

    let clicked = app.click(APPROVER, &notification, "Resolve").await;
    assert_eq!(clicked.status, 200);
    assert!(clicked.took < ACK_BOUND);
    assert_eq!(clicked.kind(), 9, "a modal: {clicked:?}");
    let modal = clicked.json()["data"].clone();
    fake_discord::validate_modal(&modal).unwrap();

    let submitted = app
        .submit(
            APPROVER,
            &modal,
            &[("root_cause", "The log volume filled up"), ("fix", "Rotated the logs"), ("prevention", "Alert at 80%")],
            &Place::channel(INCIDENTS),
            Some(&notification),
        )
        .await;
    assert_eq!(submitted.status, 200, "{submitted:?}");
    assert_eq!(submitted.kind(), 6, "{submitted:?}");
    app.wait_incident(1, "the incident resolved", WAIT, |incident| incident["status"] == "resolved").await;

    let again = app.click(REQUESTER, &notification, "Resolve").await;
    assert_eq!(again.kind(), 4);
    assert!(again.is_ephemeral() && again.text().contains("resolved"), "{again:?}");
    app.fake.assert_paced();
    app.stop().await;
}

#[tokio::test]
async fn output_too_long_for_a_message_goes_as_a_file_into_a_thread_started_under_the_diagnosis() {
    let workspace = Workspace::new();
    workers_runbook(&workspace);
    let chatty = workspace
        .script("chatty", "i=1\nwhile [ $i -le 3000 ]; do echo \"line $i: <row id=$i> & more\"; i=$((i+1)); done");
    workspace.runbook(
        "chatty",
        &format!(
            "name = \"chatty\"\nsummary = \"Lots of output\"\n\n[[checks]]\nname = \"dump\"\nkind = \"exec\"\nargv = [{}]\n",
            common::toml_str(&chatty.display().to_string())
        ),
    );
    let app = spawn(workspace, PEOPLE).await;

    let answer = app
        .slash(REQUESTER, &Place::channel(OPS), "diagnose", json!([{"name": "topic", "type": 3, "value": "chatty"}]))
        .await;
    assert_eq!(answer.status, 200);
    let diagnosis = app
        .fake
        .wait_message("the diagnosis in the channel", OPS, WAIT, |message| {
            message.visible_text().contains("diagnose chatty: OK")
        })
        .await;
    // The output goes under the diagnosis: its thread is started on the first reply.
    let file = app.fake.wait_message("the output file", &diagnosis.id, WAIT, |message| !message.files.is_empty()).await;
    let (name, content) = &file.files[0];
    assert_eq!(name, "diagnose-chatty-output.txt");
    assert!(content.contains("line 3000: <row id=3000> & more"), "the whole output is in the file");
    assert!(file.content.contains("Output of diagnose chatty"), "{}", file.content);
    let thread =
        app.fake.threads().into_iter().find(|thread| thread.id == diagnosis.id).expect("a thread from the diagnosis");
    assert_eq!(thread.parent, OPS);
    app.fake.assert_paced();
    app.stop().await;
}

#[tokio::test]
async fn commands_that_only_answer_the_person_are_ephemeral_and_bad_arguments_say_what_is_valid() {
    let workspace = Workspace::new();
    workers_runbook(&workspace);
    let app = spawn(workspace, PEOPLE).await;

    let topics = app.slash(REQUESTER, &Place::channel(OPS), "diagnose", json!([])).await;
    assert!(topics.is_ephemeral(), "{topics:?}");
    assert!(
        topics.text().contains("workers") && topics.text().contains("Worker queue and heartbeats"),
        "{}",
        topics.text()
    );

    let bad = app
        .slash(
            REQUESTER,
            &Place::channel(OPS),
            "diagnose",
            json!([
                {"name": "topic", "type": 3, "value": "workers"},
                {"name": "args", "type": 3, "value": "queue=NOT-VALID"},
            ]),
        )
        .await;
    assert!(bad.is_ephemeral(), "{bad:?}");
    assert!(bad.text().contains("queue"), "{}", bad.text());

    let outside = app.slash(REQUESTER, &Place::channel(OPS), "incident", json!([{"name": "ack", "type": 1}])).await;
    assert!(outside.text().contains("which incident?"), "{}", outside.text());

    // Both were refused in their answers, before any work started.
    assert!(app.fake.calls_to("POST channels/").is_empty(), "nothing was posted for answers meant for one person");
    app.fake.assert_paced();
    app.stop().await;
}
