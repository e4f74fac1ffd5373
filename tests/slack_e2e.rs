//! End to end through Slack: the real app (HTTP mode, wall clock, SQLite) receives real signed
//! requests — slash commands, button clicks, modal submissions, Events API callbacks — and the
//! tests read what people would see from a fake Slack Web API that records every call and
//! refuses what Slack refuses (over-limit messages, calls faster than its rate limits).

mod common;
mod fake_slack;
mod slack_e2e_support;
mod support;

use std::time::{Duration, Instant};

use common::toml_str;
use fake_slack::{Call, StoredMessage};
use serde_json::{Value, json};
use slack_e2e_support::{
    FORM, INCIDENTS, OPS, SIGNING_SECRET, SlackApp, Workspace, app_mention_body, now, signature, slash_command_body,
    spawn,
};
use support::runbooks::PING;
use support::wait::eventually;

/// Long enough for any of these stories on a loaded machine; they take seconds.
const WAIT: Duration = Duration::from_secs(20);
/// Slack's own deadline: an acknowledgement later than this is a failure the user sees. How fast
/// acknowledgements really are is measured by `cargo bench --bench slack`, not asserted here.
const ACK_BOUND: Duration = Duration::from_secs(3);

/// `chat.update` calls of the message `ts`, in order.
fn edits_of(app: &SlackApp, ts: &str) -> Vec<Call> {
    app.fake.calls_to("chat.update").into_iter().filter(|call| call.body["ts"] == ts).collect()
}

/// Asserts consecutive instants are at least `gap` apart.
fn assert_spaced(what: &str, times: &[Instant], gap: Duration) {
    for pair in times.windows(2) {
        let apart = pair[1].duration_since(pair[0]);
        assert!(
            apart >= gap,
            "{what}: two were {apart:?} apart (at least {gap:?} expected); gaps: {:?}",
            times.windows(2).map(|pair| pair[1].duration_since(pair[0])).collect::<Vec<_>>()
        );
    }
}

/// What a person reads: mrkdwn carries `&`, `<` and `>` as entities, Slack shows the characters.
fn seen(text: &str) -> String {
    text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

fn lines_of(message: &StoredMessage) -> Vec<String> {
    seen(&message.visible_text()).lines().map(str::to_string).collect()
}

/// The app with the `ping` runbook; `rest` appended to the config.
async fn spawn_pinging(rest: &str) -> SlackApp {
    let workspace = Workspace::new();
    workspace.runbook("ping", PING);
    spawn(workspace, rest).await
}

// ---------------------------------------------------------------------------------------------
// Diagnoses

#[tokio::test]
/// The stream itself (one message, its pace, its verdicts, the output in its thread) is a shared
/// story in chat_stories.rs; here, what is Slack's: the empty acknowledgement within Slack's
/// deadline, before the diagnosis finished, and the verdicts in mrkdwn.
async fn diagnose_is_acknowledged_empty_at_once_and_its_redis_verdicts_read_as_mrkdwn() {
    let Some(redis) = common::redis_prefix().await else {
        return;
    };
    let emails = redis.key("email_queue");
    let trades = redis.key("trade_queue");
    redis.command(&["RPUSH", &emails, "e1", "e2"]).await;
    redis.command(&["RPUSH", &trades, "t1", "t2", "t3", "t4", "t5", "t6", "t7", "t8"]).await;
    let workspace = Workspace::new();
    // Slower than the first edit, so the stream shows the Redis verdicts while it still runs.
    let drain = workspace.script("drain", "sleep 4\necho 'workers drained'");
    workspace.runbook(
        "backlog",
        &format!(
            r#"name = "backlog"
summary = "Job queue backlogs"

[[checks]]
name = "email queue"
kind = "redis"
target = "jobs"
command = ["LLEN", {emails}]
warn = "value > 5"

[[checks]]
name = "trade queue"
kind = "redis"
target = "jobs"
command = ["LLEN", {trades}]
warn = "value > 5"

[[checks]]
name = "worker drain"
kind = "exec"
argv = [{drain}]
"#,
            emails = toml_str(&emails),
            trades = toml_str(&trades),
            drain = toml_str(&drain.display().to_string()),
        ),
    );
    let app = spawn(workspace, &format!("[targets.jobs]\nkind = \"redis\"\nurl = {}\n", toml_str(&redis.url))).await;

    let answer = app.slash("U0001", OPS, "/diagnose", "backlog").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, "", "an empty 200 acknowledges without a private reply");
    assert!(answer.took < ACK_BOUND, "acknowledged after {:?}", answer.took);

    let finished = app
        .wait_message("the finished diagnosis", OPS, WAIT, |message| {
            message.visible_text().contains("diagnose backlog: WARN")
        })
        .await;
    let lines = lines_of(&finished);
    for expected in [
        format!("✅ *OK* email queue — LLEN {emails} = 2 ("),
        format!("⚠️ *WARN* trade queue — LLEN {trades} = 8 (warn: value > 5) ("),
        "✅ *OK* worker drain — exit 0".to_string(),
    ] {
        assert!(
            lines.iter().any(|line| line.starts_with(&expected)),
            "no line starting {expected:?} in the finished message:\n{}",
            finished.visible_text()
        );
    }
    let edits = edits_of(&app, &finished.ts);
    assert_eq!(finished.edits, edits.len());
    assert!(
        answer.at < edits.last().expect("a final edit").at,
        "the command was answered only after the diagnosis had finished"
    );
    assert!(app.fake.rate_limited().is_empty());
    app.fake.assert_all_accepted();
    app.stop().await;
}

#[tokio::test]
async fn ten_thousand_lines_of_output_end_as_a_file_in_the_thread_and_no_message_is_over_the_limits() {
    let workspace = Workspace::new();
    let flood = workspace
        .script("flood", r#"awk 'BEGIN { for (i = 1; i <= 10000; i++) printf "output line %05d of the flood\n", i }'"#);
    workspace.runbook(
        "flood",
        &format!(
            "name = \"flood\"\nsummary = \"A chatty check\"\n\n[[checks]]\nname = \"dump\"\nkind = \"exec\"\nargv = [{}]\n",
            toml_str(&flood.display().to_string())
        ),
    );
    let app = spawn(workspace, "").await;

    let answer = app.slash("U0001", OPS, "/diagnose", "flood").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.took < ACK_BOUND, "acknowledged after {:?}", answer.took);

    app.fake.wait_for("the output file", WAIT, |fake| !fake.files().is_empty()).await;
    let diagnosis = app.top_level(OPS).into_iter().next().expect("the diagnosis message");
    assert!(
        lines_of(&diagnosis).iter().any(|line| line.starts_with("✅ *OK* dump — exit 0")),
        "{}",
        diagnosis.visible_text()
    );
    let files = app.fake.files();
    assert_eq!(files.len(), 1, "one file: {files:#?}");
    let file = &files[0];
    assert_eq!(file.channel, OPS);
    assert_eq!(file.thread_ts.as_deref(), Some(diagnosis.ts.as_str()), "the file goes in the diagnosis's thread");
    assert!(file.title.as_deref().unwrap_or("").contains("10000 lines"), "{:?}", file.title);
    let content = String::from_utf8(file.content.clone()).expect("the file is text");
    let lines: Vec<&str> = content.lines().filter(|line| line.starts_with("output line ")).collect();
    assert_eq!(lines.len(), 10_000, "every line is in the file");
    assert_eq!(lines[0], "output line 00001 of the flood");
    assert_eq!(lines[9_999], "output line 10000 of the flood");

    // Nothing tried to put the output into a message: every call was within Slack's limits,
    // and the only messages are the diagnosis (the fake refuses anything over the limits).
    assert_eq!(app.fake.messages(OPS).len(), 1, "{:#?}", app.fake.messages(OPS));
    for call in app.fake.calls() {
        assert!(
            call.body["text"].as_str().unwrap_or("").chars().count() <= fake_slack::MAX_TEXT
                && fake_slack::block_text_len(&call.body["blocks"]) <= fake_slack::MAX_TOTAL_BLOCK_TEXT,
            "{} over the limits",
            call.method
        );
    }
    app.fake.assert_all_accepted();
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Incidents

/// The story itself (declare, acknowledge, diagnose from the menu, resolve through the form,
/// in the notification, its thread and the incident) is shared in chat_stories.rs; here, what is
/// Slack's: empty acknowledgements within Slack's deadline, the notification's mrkdwn, a late
/// click answered through its `response_url`, and the form as a `views.open` modal.
#[tokio::test]
async fn incident_commands_and_clicks_are_acknowledged_empty_and_resolve_opens_a_modal() {
    let app = spawn_pinging("").await;

    let answer = app.slash("U0001", OPS, "/incident", r#"declare API down sev=critical impact="checkout fails""#).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(answer.body, "");
    assert!(answer.took < ACK_BOUND, "acknowledged after {:?}", answer.took);

    let notification = app
        .wait_message("the notification", INCIDENTS, WAIT, |message| {
            message.visible_text().contains("INCIDENT #1: API down")
        })
        .await;
    assert_eq!(notification.thread_ts, None, "the notification is top level");
    let text = notification.visible_text();
    for expected in ["*Status:* TRIGGERED", "*Severity:* CRITICAL", "*Impact:* checkout fails", "*Started:*", "*ETA:*"]
    {
        assert!(text.contains(expected), "no {expected:?} in:\n{text}");
    }

    // Acknowledge, clicked by U0002.
    let answer = app.click("U0002", &notification, "Acknowledge").await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    assert!(answer.took < ACK_BOUND, "acknowledged after {:?}", answer.took);
    let root = notification.ts.clone();
    let acknowledged = app
        .wait_message("the edited notification", INCIDENTS, WAIT, |message| {
            message.ts == root && message.visible_text().contains("*Status:* ACKNOWLEDGED")
        })
        .await;

    // Someone else clicks Acknowledge on the message as it was before the edit: a private
    // answer through the click's response_url.
    let answer = app.click("U0003", &notification, "Acknowledge").await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    app.fake.wait_for("the private answer", WAIT, |fake| !fake.responses().is_empty()).await;
    let late = &app.fake.responses()[0];
    assert_eq!(late["response_type"], "ephemeral");
    assert!(late["text"].as_str().unwrap_or("").contains("already acknowledged by slack:U0002"), "{late}");

    // Resolve: a modal opens with views.open, its fields as input blocks.
    let answer = app.click("U0002", &acknowledged, "Resolve").await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    app.fake.wait_for("the resolve modal", WAIT, |fake| !fake.views().is_empty()).await;
    let views = app.fake.views();
    assert_eq!(views.len(), 1);
    let view = &views[0];
    assert_eq!(view["type"], "modal", "{view}");
    assert_eq!(view["title"]["text"], "Resolve incident #1");
    let fields: Vec<&str> =
        view["blocks"].as_array().expect("blocks").iter().filter_map(|block| block["block_id"].as_str()).collect();
    assert_eq!(fields, ["root_cause", "fix", "prevention"]);
    let answer = app
        .submit(
            "U0002",
            view,
            &[("root_cause", "A retry storm"), ("fix", "Restarted checkout"), ("prevention", "Jitter")],
        )
        .await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""), "an empty answer closes the modal");
    app.wait_message("the notification turned resolved", INCIDENTS, WAIT, |message| {
        message.ts == root && message.visible_text().contains("*Status:* RESOLVED")
    })
    .await;
    app.fake.assert_all_accepted();
    app.stop().await;
}

#[tokio::test]
async fn an_escalation_pages_in_the_thread_and_by_direct_message_paced_and_through_a_429() {
    let app = spawn_pinging(PAGE_U0007).await;
    // Slack's next post to the incident channel answers 429 with Retry-After: 1 (the direct
    // message may go first: pages go before notifications).
    app.fake.rate_limit_next_in("chat.postMessage", INCIDENTS, 1, 1);

    let answer = app.slash("U0001", OPS, "/incident", "declare Payments failing sev=high").await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));

    let direct = app
        .wait_message("the direct message to U0007", "D0007", WAIT, |message| {
            message.visible_text().contains("You are paged for incident #1")
        })
        .await;
    let notification =
        app.wait_message("the notification", INCIDENTS, WAIT, |message| message.thread_ts.is_none()).await;
    let root = notification.ts.clone();
    app.fake
        .wait_for("the page in the thread", WAIT, |fake| {
            fake.thread(INCIDENTS, &root).iter().any(|reply| reply.visible_text().contains("<@U0007>"))
        })
        .await;
    assert!(direct.visible_text().contains("Payments failing"));
    let opened = app.fake.accepted("conversations.open");
    assert_eq!(opened.len(), 1);
    assert_eq!(opened[0].body["users"], json!(["U0007"]));

    // The 429 was waited out for its Retry-After, and the notification arrived once.
    let limited = app.fake.rate_limited();
    assert_eq!(limited.len(), 1, "only the forced 429: the app paces itself");
    assert_eq!(limited[0].method, "chat.postMessage");
    assert_eq!(limited[0].body["channel"], INCIDENTS);
    let retried = app
        .fake
        .accepted("chat.postMessage")
        .into_iter()
        .find(|call| call.body["channel"] == INCIDENTS)
        .expect("the notification was posted");
    assert_eq!(retried.body["blocks"], limited[0].body["blocks"]);
    assert!(
        retried.at.duration_since(limited[0].at) >= Duration::from_secs(1),
        "retried {:?} after a 429 with Retry-After: 1",
        retried.at.duration_since(limited[0].at)
    );
    assert_eq!(app.top_level(INCIDENTS).len(), 1, "the notification once");

    // U0007 acknowledges from the direct message; the thread gets a third post.
    let answer = app.click("U0007", &direct, "Acknowledge").await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    app.fake
        .wait_for("the acknowledgement in the thread", WAIT, |fake| {
            fake.thread(INCIDENTS, &root).iter().any(|reply| reply.visible_text().contains("Acknowledged by <@U0007>"))
        })
        .await;
    let pages: Vec<StoredMessage> = app
        .fake
        .thread(INCIDENTS, &root)
        .into_iter()
        .filter(|reply| reply.visible_text().contains("Escalation level 1"))
        .collect();
    assert_eq!(pages.len(), 1, "one page in the thread");
    assert_eq!(app.fake.messages("D0007").len(), 1, "one direct message");

    // Every post to the incident channel, refused or not, left at least a second after the
    // one before (Slack: one message per second per channel).
    let posts: Vec<Instant> = app
        .fake
        .calls_to("chat.postMessage")
        .into_iter()
        .filter(|call| call.body["channel"] == INCIDENTS)
        .map(|call| call.at)
        .collect();
    assert_eq!(posts.len(), 4, "429, notification, page, acknowledgement note");
    assert_spaced("posts to the incident channel", &posts, Duration::from_secs(1));
    assert_eq!(app.fake.rate_limited().len(), 1);

    let incident = app.get_json("/api/incidents/1").await;
    let escalated: Vec<&Value> = incident["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .filter(|event| event["kind"] == "escalated")
        .collect();
    assert_eq!(escalated.len(), 1);
    assert_eq!(escalated[0]["detail"]["notified"], json!(["slack:U0007"]));
    assert_eq!(incident["acknowledged_by"], "slack:U0007");
    app.fake.assert_all_accepted();
    app.stop().await;
}

const PAGE_U0007: &str = r#"[groups]
pagers = ["slack:U0007"]

[[policies]]
name = "default"
steps = [{ after = "0s", notify = ["group:pagers"] }]
"#;

#[tokio::test]
async fn a_page_still_reaches_the_thread_when_the_notification_took_a_second_delivery() {
    let app = spawn_pinging(PAGE_U0007).await;
    // 429 eight times: the first two deliveries of the notification give up after three retries
    // each, while the page for the same incident is already due.
    app.fake.rate_limit_next("chat.postMessage", 8, 1);

    let answer = app.slash("U0001", OPS, "/incident", "declare Ledger lagging sev=high").await;
    assert_eq!((answer.status, answer.body.as_str()), (200, ""));

    let notification =
        app.wait_message("the notification", INCIDENTS, WAIT, |message| message.thread_ts.is_none()).await;
    let root = notification.ts.clone();
    app.fake
        .wait_for("the page in the thread", WAIT, |fake| {
            fake.thread(INCIDENTS, &root).iter().any(|reply| reply.visible_text().contains("<@U0007>"))
        })
        .await;
    app.fake.wait_for("the direct message", WAIT, |fake| !fake.messages("D0007").is_empty()).await;
    // Give a repeated delivery the time to show: a retry would come from the outbox loop, which
    // has no event to wait for when it (correctly) does nothing.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(app.top_level(INCIDENTS).len(), 1, "the notification once");
    assert_eq!(app.fake.thread(INCIDENTS, &root).len(), 1, "the page once");
    assert_eq!(app.fake.messages("D0007").len(), 1, "the direct message once");
    assert_eq!(app.fake.rate_limited().len(), 8);
    app.fake.assert_all_accepted();
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Security and mistakes

#[tokio::test]
async fn a_bad_or_stale_signature_is_refused_and_nothing_is_posted() {
    let app = spawn_pinging("").await;
    let body = slash_command_body(&app.fake, "U0001", OPS, "/diagnose", "ping");
    let timestamp = now();
    let attempts = [
        (
            "signed with another secret",
            vec![
                ("x-slack-request-timestamp", timestamp.to_string()),
                ("x-slack-signature", signature("not-the-signing-secret", timestamp, &body)),
            ],
        ),
        (
            "signed six minutes ago",
            vec![
                ("x-slack-request-timestamp", (timestamp - 360).to_string()),
                ("x-slack-signature", signature(SIGNING_SECRET, timestamp - 360, &body)),
            ],
        ),
        ("not signed", vec![("x-slack-request-timestamp", timestamp.to_string())]),
    ];
    for (what, headers) in &attempts {
        let answer = app.send("/slack/commands", FORM, &body, headers).await;
        assert_eq!(answer.status, 401, "{what}: {answer:?}");
    }
    // The signature is checked before anything is started, so a 401 means nothing will happen.
    assert!(app.fake.calls().is_empty(), "a refused request reached Slack: {:#?}", app.fake.calls());

    // The same command, signed now, runs: the refusals above are what kept it quiet.
    let answer = app.signed("/slack/commands", FORM, &body, &[]).await;
    assert_eq!(answer.status, 200);
    app.wait_message("the diagnosis", OPS, WAIT, |message| message.visible_text().contains("diagnose ping: OK")).await;
    app.fake.assert_all_accepted();
    app.stop().await;
}

#[tokio::test]
async fn a_replayed_signed_command_is_answered_empty_and_does_nothing() {
    let app = spawn_pinging("").await;
    let body = slash_command_body(&app.fake, "U0001", OPS, "/diagnose", "ping");
    let timestamp = now();
    let headers = [
        ("x-slack-request-timestamp", timestamp.to_string()),
        ("x-slack-signature", signature(SIGNING_SECRET, timestamp, &body)),
    ];
    assert_eq!(app.send("/slack/commands", FORM, &body, &headers).await.status, 200);
    app.wait_message("the diagnosis", OPS, WAIT, |message| message.visible_text().contains("diagnose ping: OK")).await;

    // Someone who captured the request (a proxy's log, say) sends it again within the 5 minutes.
    let replay = app.send("/slack/commands", FORM, &body, &headers).await;
    assert_eq!((replay.status, replay.body.as_str()), (200, ""), "{replay:?}");
    // The same command signed anew is a new request and runs: the replay's silence is the dedup.
    let resigned = [
        ("x-slack-request-timestamp", (timestamp - 1).to_string()),
        ("x-slack-signature", signature(SIGNING_SECRET, timestamp - 1, &body)),
    ];
    assert_eq!(app.send("/slack/commands", FORM, &body, &resigned).await.status, 200);
    app.fake.wait_for("the second diagnosis", WAIT, |fake| fake.calls_to("chat.postMessage").len() >= 2).await;
    let diagnoses = app.top_level(OPS).into_iter().filter(|m| m.visible_text().contains("diagnose ping")).count();
    assert_eq!(
        diagnoses,
        2,
        "the original and the re-signed one ran, the replay did not: {:#?}",
        app.fake.messages(OPS)
    );
    app.fake.assert_all_accepted();
    app.stop().await;
}

#[tokio::test]
async fn an_app_mention_delivered_twice_runs_its_diagnosis_once() {
    let app = spawn_pinging("").await;
    let body = app_mention_body("Ev0E2EONCE01", "U0001", OPS, &format!("<@{}> diagnose ping", fake_slack::BOT_USER));
    let first = app.event(&body, None).await;
    assert_eq!(first.status, 200, "{first:?}");
    assert!(first.took < ACK_BOUND, "acknowledged after {:?}", first.took);
    let retry = app.event(&body, Some(1)).await;
    assert_eq!(retry.status, 200, "{retry:?}");

    app.wait_message("the diagnosis", OPS, WAIT, |message| message.visible_text().contains("diagnose ping: OK")).await;
    // The retry was recognised before it was answered: no second run can have started.
    assert_eq!(app.fake.calls_to("chat.postMessage").len(), 1, "{:#?}", app.fake.messages(OPS));

    // Another event is not mistaken for the retry.
    let other = app_mention_body("Ev0E2EONCE02", "U0001", OPS, &format!("<@{}> diagnose ping", fake_slack::BOT_USER));
    assert_eq!(app.event(&other, None).await.status, 200);
    app.fake.wait_for("a second diagnosis", WAIT, |fake| fake.calls_to("chat.postMessage").len() == 2).await;
    app.fake.assert_all_accepted();
    app.stop().await;
}

/// The slash command's private reply is a shared story in chat_stories.rs; here, what is
/// Slack's: it is the command's own answer within Slack's deadline, and a mention's is a
/// `chat.postEphemeral`, the only call made.
#[tokio::test]
async fn a_mistyped_topic_is_answered_privately_in_the_answer_or_with_post_ephemeral() {
    let workspace = Workspace::new();
    workspace.runbook("ping", PING);
    workspace.runbook(
        "disk",
        "name = \"disk\"\nsummary = \"Free space\"\n\n[[checks]]\nname = \"df\"\nkind = \"exec\"\nargv = [\"true\"]\n",
    );
    let app = spawn(workspace, "").await;

    let answer = app.slash("U0001", OPS, "/diagnose", "nope").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(answer.took < ACK_BOUND, "acknowledged after {:?}", answer.took);
    assert_eq!(answer.json()["response_type"], "ephemeral", "{answer:?}");

    // The same mistake in a mention is answered privately with chat.postEphemeral.
    let mention = app_mention_body("Ev0E2ENOPE01", "U0001", OPS, &format!("<@{}> diagnose nope", fake_slack::BOT_USER));
    assert_eq!(app.event(&mention, None).await.status, 200);
    app.fake.wait_for("the private reply", WAIT, |fake| !fake.ephemerals().is_empty()).await;
    let ephemeral = &app.fake.ephemerals()[0];
    assert_eq!(ephemeral["channel"], OPS);
    assert_eq!(ephemeral["user"], "U0001");
    let text = ephemeral["text"].as_str().unwrap_or("");
    assert!(text.contains("'nope'") && text.contains("disk") && text.contains("ping"), "{ephemeral}");

    // The topic is decided before anything starts: past the private reply, nothing follows.
    let methods: Vec<String> = app.fake.calls().into_iter().map(|call| call.method).collect();
    assert_eq!(methods, ["chat.postEphemeral"], "nothing but the private reply reached Slack");
    assert!(app.fake.all_messages().is_empty());
    app.fake.assert_all_accepted();
    app.stop().await;
}

/// An alert whose route names a runbook: the diagnosis streams into the incident's Slack thread
/// (the team's own platform), not into the web console's, which is always there too.
#[tokio::test]
async fn a_routes_diagnosis_streams_into_the_slack_thread() {
    let workspace = Workspace::new();
    workspace.runbook(
        "host",
        "name = \"host\"\nsummary = \"Is the host up\"\n\n[[checks]]\nname = \"alive\"\nkind = \"exec\"\nargv = [\"true\"]\n",
    );
    let app =
        spawn(workspace, "[[routes]]\nmatch = { alertname = \"HostDown\" }\nseverity = \"critical\"\nrun = \"host\"\n")
            .await;
    let response = app
        .client
        .post(format!("http://{}/alerts/alertmanager", app.address))
        .json(&json!({
            "version": "4", "status": "firing", "receiver": "firebell", "groupKey": "{}:{alertname=\"HostDown\"}",
            "alerts": [{"status": "firing", "labels": {"alertname": "HostDown", "instance": "web1"},
                        "annotations": {"summary": "web1 is down"}, "fingerprint": "f1",
                        "startsAt": "2026-11-22T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z"}],
        }))
        .send()
        .await
        .expect("the webhook answers");
    assert!(response.status().is_success(), "{}", response.status());
    app.fake
        .wait_for("the diagnosis in the incident's thread", WAIT, |fake| {
            fake.messages(INCIDENTS).iter().any(|message| {
                message.thread_ts.as_ref().is_some_and(|thread| *thread != message.ts)
                    && message.visible_text().contains("diagnose host: OK")
            })
        })
        .await;
    app.fake.assert_no_unexpected();
}

/// The console's messages in `channel`, as its page reads them.
async fn console_history(app: &SlackApp, channel: &str) -> Vec<Value> {
    let url = app.url(&format!("/console/history?user=tester&channel={channel}"));
    let history: Value = reqwest::get(url).await.expect("the console answers").json().await.expect("JSON");
    history["messages"].as_array().cloned().unwrap_or_default()
}

async fn readyz(app: &SlackApp) -> (u16, Value) {
    let response = reqwest::get(app.url("/readyz")).await.expect("the app answers");
    (response.status().as_u16(), response.json().await.expect("JSON"))
}

#[tokio::test]
async fn a_stalled_slack_holds_up_nothing_else_shows_in_readyz_and_catches_up_once_it_answers() {
    let workspace = Workspace::new();
    workspace.runbook("ping", PING);
    // `timeout` belongs to [slack]: each Web API call may take 1 s. Every incident pages alice
    // on the console at once, and U0007 on Slack.
    let rest = "timeout = \"1s\"\n\n[groups]\npagers = [\"console:alice\", \"slack:U0007\"]\n\n\
                [[policies]]\nname = \"default\"\nsteps = [{ after = \"0s\", notify = [\"group:pagers\"] }]\n";
    let app = spawn(workspace, rest).await;
    assert_eq!(readyz(&app).await, (200, json!({"status": "ready", "store": "sqlite"})));
    app.fake.stall();

    for key in ["db1-disk", "db2-disk"] {
        let answer = app.slash("U0001", OPS, "/incident", &format!("declare Disk almost full on {key}")).await;
        assert_eq!((answer.status, answer.body.as_str()), (200, ""));
    }

    // The console gets both notifications while Slack hangs: a platform waits only on itself.
    let top_level = |messages: &Vec<Value>| -> Vec<Value> {
        messages.iter().filter(|message| message["thread"].is_null()).cloned().collect()
    };
    let history = eventually(
        "both notifications on the console",
        || console_history(&app, "incidents"),
        |messages| top_level(messages).len() >= 2,
    )
    .await;
    let notifications = top_level(&history);
    assert_eq!(notifications.len(), 2, "{notifications:#?}");
    // And the escalation pages fire on time and reach alice there, in each incident's thread.
    let pages = |messages: &Vec<Value>| -> usize {
        messages
            .iter()
            .filter(|message| {
                !message["thread"].is_null() && message["body"].to_string().contains("Escalation level 1")
            })
            .count()
    };
    eventually("both pages on the console", || console_history(&app, "incidents"), |messages| pages(messages) >= 2)
        .await;

    // /readyz says what is wrong (and stays 200: paging through other platforms works).
    let (status, ready) =
        eventually("readyz to name Slack", || readyz(&app), |(_, body)| body["status"] == "degraded").await;
    assert_eq!(status, 200);
    let failing = ready["failing"]["delivery:slack"].as_str().unwrap_or_default();
    assert!(failing.contains("did not answer within 1s"), "{ready:#}");
    assert_eq!(ready["failing"].as_object().map(|parts| parts.len()), Some(1), "{ready:#}");
    // The delay is on the incident's timeline: once for its notification and once for its
    // page, each said once however often it is retried.
    let retrying = |incident: &Value| -> Vec<Value> {
        incident["timeline"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|event| event["kind"] == "notification_retrying")
            .cloned()
            .collect()
    };
    let incident = eventually(
        "both delays on the timeline",
        || app.get_json("/api/incidents/1"),
        |incident| retrying(incident).len() >= 2,
    )
    .await;
    let delays = retrying(&incident);
    assert_eq!(delays.len(), 2, "{incident:#}");
    assert!(delays.iter().all(|event| event["detail"]["platform"] == "slack"), "{delays:#?}");
    let stalled = app.fake.stalled_calls();
    assert!(
        stalled.iter().all(|method| ["chat.postMessage", "conversations.open"].contains(&method.as_str())),
        "{stalled:?}"
    );

    // Slack answers again: each notification arrives once, and the bot is ready again.
    app.fake.unstall();
    app.fake
        .wait_for("both notifications in Slack", WAIT, |fake| {
            fake.messages(INCIDENTS).iter().filter(|message| message.thread_ts.is_none()).count() >= 2
        })
        .await;
    app.fake.wait_for("both pages to U0007", WAIT, |fake| fake.messages("D0007").len() >= 2).await;
    eventually("readyz to be ready again", || readyz(&app), |(_, body)| body["status"] == "ready").await;
    let posted: Vec<String> = app.top_level(INCIDENTS).iter().map(StoredMessage::visible_text).collect();
    assert_eq!(posted.len(), 2, "{posted:#?}");
    assert!(posted.iter().any(|text| text.contains("db1-disk")) && posted.iter().any(|text| text.contains("db2-disk")));
    app.fake.assert_all_accepted();
    app.stop().await;
}

#[tokio::test]
async fn only_the_people_a_message_means_are_mentioned_never_someone_named_in_a_title_or_output() {
    let workspace = Workspace::new();
    let noisy = workspace.script("noisy", "echo 'paging <@U0666> and <!channel> from the output'");
    workspace.runbook(
        "noisy",
        &format!(
            "name = \"noisy\"\nsummary = \"Prints mentions\"\n\n[[checks]]\nname = \"noisy\"\nkind = \"exec\"\nargv = [{}]\n",
            toml_str(&noisy.display().to_string())
        ),
    );
    let app = spawn(workspace, "").await;

    // A title naming people: they stay text; the commander (who declared it) is mentioned.
    let answer = app.slash("U0001", OPS, "/incident", "declare Disk full <@U0666> slack:U0667 sev=high").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let notification =
        app.wait_message("the notification", INCIDENTS, WAIT, |message| message.thread_ts.is_none()).await;
    let sent = notification.blocks.to_string() + &notification.text;
    assert!(sent.contains("&lt;@U0666&gt;"), "the title's mention is shown as text: {sent}");
    assert!(
        sent.contains("slack:U0667") && !sent.contains("<@U0667>"),
        "a person id in the title is not turned into a mention: {sent}"
    );
    assert!(sent.contains("<@U0001>"), "the commander is mentioned: {sent}");
    assert!(!sent.contains("<@U0666>"), "{sent}");

    // Check output naming someone: text; the person who asked: mentioned.
    assert_eq!(app.slash("U0001", OPS, "/diagnose", "noisy").await.status, 200);
    let diagnosis = app
        .wait_message("the diagnosis", OPS, WAIT, |message| message.visible_text().contains("diagnose noisy: OK"))
        .await;
    let output = app.fake.thread(OPS, &diagnosis.ts);
    let everything: String = std::iter::once(&diagnosis)
        .chain(output.iter())
        .map(|message| message.blocks.to_string() + &message.text)
        .collect();
    assert!(everything.contains("<@U0001>"), "{everything}");
    assert!(!everything.contains("<@U0666>") && !everything.contains("<!channel>"), "{everything}");
    app.fake.assert_all_accepted();
    app.stop().await;
}

#[tokio::test]
async fn a_private_key_in_check_output_never_reaches_the_slack_thread() {
    let workspace = Workspace::new();
    let key_path = workspace.path().join("k.pem");
    let made = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out"])
        .arg(&key_path)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(made.success(), "openssl genpkey failed");
    let key = std::fs::read_to_string(&key_path).unwrap();
    let leaky = workspace.script(
        "leaky",
        &format!("echo 'key follows'\ncat {}\necho 'after the key'", toml_str(&key_path.display().to_string())),
    );
    workspace.runbook(
        "leaky",
        &format!(
            "name = \"leaky\"\nsummary = \"Prints a key\"\n\n[[checks]]\nname = \"leaky\"\nkind = \"exec\"\nargv = [{}]\n",
            toml_str(&leaky.display().to_string())
        ),
    );
    let app = spawn(workspace, "").await;
    assert_eq!(app.slash("U0001", OPS, "/diagnose", "leaky").await.status, 200);
    let diagnosis = app
        .wait_message("the diagnosis", OPS, WAIT, |message| message.visible_text().contains("diagnose leaky: OK"))
        .await;
    app.fake.wait_for("the output in the thread", WAIT, |fake| !fake.thread(OPS, &diagnosis.ts).is_empty()).await;
    let output: String = app.fake.thread(OPS, &diagnosis.ts).iter().map(StoredMessage::visible_text).collect();
    assert!(output.contains("key follows") && output.contains("after the key"), "{output}");
    let mut sent: Vec<String> = app.fake.calls().iter().map(|call| call.body.to_string()).collect();
    sent.extend(app.fake.files().iter().map(|file| String::from_utf8_lossy(&file.content).into_owned()));
    for line in key.lines().filter(|line| !line.starts_with("-----")) {
        assert!(sent.iter().all(|text| !text.contains(line)), "a key line reached Slack: {line}");
    }
    assert!(sent.iter().all(|text| !text.contains("BEGIN PRIVATE KEY")), "the key's header is masked with it");
    app.fake.assert_all_accepted();
    app.stop().await;
}
