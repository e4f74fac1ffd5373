//! The chat core as a user meets it, on an in-memory platform that records every post, edit,
//! upload, direct message and form: `/diagnose` streamed into one message and its thread,
//! incident commands and buttons, the outbox delivered into the incident's thread, escalation
//! pages, retries and give-ups, and permissions. Checks are real: `exec` scripts written by the
//! test, and Redis on this machine. Diagnoses run in real time (a finished diagnosis takes at
//! least one 2 s edit interval); incident time is a manual clock the tests move.

mod chat_support;
mod common;
mod support;

use std::collections::{BTreeMap, BTreeSet};

use chat_support::{Bot, Call, INCIDENT_CHANNEL, OPS_CHANNEL, button_labels, events, is_finished, private};
use common::{redis_prefix, toml_str, write_script};
use firebell::chat::Block;
use firebell::chat::core::EDIT_INTERVAL;
use firebell::chat::deliver::MAX_ATTEMPTS;
use firebell::chat::memory::Recorded;
use firebell::chat::{ChatAdapter, Reply};
use firebell::check::TargetInfo;
use firebell::config::{Secret, TargetKind};
use firebell::incident::IncidentStatus;

/// No groups, no policies: incidents open without escalation.
const NO_CONFIG: &str = "";

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().expect("a temporary folder")
}

/// A runbook whose checks are the scripts `(check name, script path)`.
fn exec_runbook(topic: &str, summary: &str, checks: &[(&str, &std::path::Path)]) -> String {
    let mut text = format!("name = \"{topic}\"\nsummary = \"{summary}\"\n");
    for (name, script) in checks {
        text.push_str(&format!(
            "\n[[checks]]\nname = \"{name}\"\nkind = \"exec\"\nargv = [{}]\n",
            toml_str(&script.display().to_string())
        ));
    }
    text
}

/// The incident notification.
fn notification(bot: &Bot) -> chat_support::Post {
    bot.notification()
}

// ---------------------------------------------------------------------------------------------
// /diagnose: answers and mistakes

#[tokio::test]
async fn diagnose_without_a_topic_lists_topics_and_a_mistake_says_what_is_valid() {
    let scratch = scratch();
    let depth = write_script(scratch.path(), "depth.sh", "echo \"depth of $1: 3\"");
    let queue = format!(
        r#"
name = "queue"
summary = "Depth of the worker queues"

[args.queue]
pattern = '^[a-z0-9_]{{1,64}}$'
default = "ingest_indicators"
help = "queue name"
example = "trade_execution"

[[checks]]
name = "depth"
kind = "exec"
argv = [{}, "{{{{queue}}}}"]
"#,
        toml_str(&depth.display().to_string())
    );
    let disk = exec_runbook("disk", "Free space on the data volume", &[("df", depth.as_path())]);
    let bot = Bot::new(scratch, NO_CONFIG, &[&queue, &disk]).await;

    let topics = private(&bot.command("U1", OPS_CHANNEL, None, "/diagnose").await);
    assert!(topics.contains("queue` — Depth of the worker queues"), "{topics}");
    assert!(topics.contains("disk` — Free space on the data volume"), "{topics}");
    assert!(topics.contains("/diagnose TOPIC"), "{topics}");

    let unknown = private(&bot.command("U1", OPS_CHANNEL, None, "/diagnose quue").await);
    assert!(unknown.contains("unknown topic 'quue'"), "{unknown}");
    assert!(unknown.contains("disk, queue"), "{unknown}");

    let bad = private(&bot.command("U1", OPS_CHANNEL, None, "/diagnose queue queue=Trades;rm").await);
    assert!(bad.contains("queue='Trades;rm'"), "names the argument: {bad}");
    assert!(bad.contains("^[a-z0-9_]{1,64}$"), "names the pattern: {bad}");
    assert!(bad.contains("queue=trade_execution"), "gives the example: {bad}");

    let unknown_argument = private(&bot.command("U1", OPS_CHANNEL, None, "/diagnose queue depth=3").await);
    assert!(unknown_argument.contains("unknown argument 'depth'"), "{unknown_argument}");
    let not_a_pair = private(&bot.command("U1", OPS_CHANNEL, None, "/diagnose queue trades").await);
    assert!(not_a_pair.contains("'trades' is not an argument"), "{not_a_pair}");

    // Nothing ran: a command is refused before anything is started, so nothing shows up.
    assert!(bot.recorded().is_empty(), "a refused command posted:\n{}", bot.transcript());
}

// ---------------------------------------------------------------------------------------------
// /diagnose: streaming, verdicts, suggestions, output

/// Four checks that finish at once with each verdict, one that finishes 3 s later, and two
/// remediations of which only one matches the results.
fn burst_runbook(scratch: &std::path::Path) -> String {
    let ok = write_script(scratch, "ok.sh", "echo 'disk 41% used'\nexit 0");
    let warn = write_script(scratch, "warn.sh", "echo '120 jobs waiting'\nexit 1");
    let crit = write_script(scratch, "crit.sh", "echo '502 from /healthz'\nexit 2");
    let error = write_script(scratch, "error.sh", "echo 'cannot reach cache'\nexit 3");
    let late = write_script(scratch, "late.sh", "sleep 3\necho 'lag 0 s'\nexit 0");
    let mut text = exec_runbook(
        "burst",
        "Everything at once",
        &[
            ("disk", ok.as_path()),
            ("queue depth", warn.as_path()),
            ("api", crit.as_path()),
            ("cache", error.as_path()),
            ("replication", late.as_path()),
        ],
    );
    text.push_str(
        r#"
[[remediations]]
name = "restart-api"
summary = "Restart the API"
kind = "exec"
argv = ["true"]
approvers = ["oncall"]
suggest_when = "checks['api'].status == 'crit'"

[[remediations]]
name = "grow-disk"
summary = "Grow the data volume"
kind = "exec"
argv = ["true"]
approvers = ["oncall"]
suggest_when = "checks['disk'].status in ['warn', 'crit']"
"#,
    );
    text
}

#[tokio::test]
async fn diagnose_posts_one_message_edits_it_at_most_every_two_seconds_and_ends_with_every_verdict() {
    let scratch = scratch();
    let runbook = burst_runbook(scratch.path());
    let bot = Bot::new(scratch, NO_CONFIG, &[&runbook]).await;

    let reply = bot.command("U1", OPS_CHANNEL, None, "/diagnose burst").await;
    assert_eq!(reply, Reply::Nothing, "the work shows up in the channel");
    let finished = bot.finished_diagnosis(OPS_CHANNEL, None).await;

    // One message in the channel, started as "running", then edited.
    let top_level: Vec<_> = bot.posts().into_iter().filter(|post| post.thread.is_none()).collect();
    assert_eq!(top_level.len(), 1, "one message in the channel:\n{}", bot.transcript());
    assert!(top_level[0].text().starts_with("🔎 diagnose burst — running"), "{}", top_level[0].text());
    assert!(top_level[0].text().contains("⏳ *replication* — running"));
    let edits = bot.edits(&finished.id);
    assert!(is_finished(edits.last().expect("edited")), "the last edit is the final one");

    // Edits are coalesced: the four checks that finished together show up in one edit, and
    // the message never changes twice within the interval (counting from its post).
    let intermediate: Vec<_> = edits.iter().filter(|message| !is_finished(message)).collect();
    assert!(
        (1..=2).contains(&intermediate.len()),
        "the four checks that finished in a burst cost one edit, not four:\n{}",
        bot.transcript()
    );
    let first = intermediate[0].plain_text();
    assert!(first.contains("⏳ *replication* — running"), "{first}");
    let instants = bot.platform.change_instants(&finished.id);
    assert_eq!(instants.len(), edits.len() + 1, "the post and each edit");
    for pair in instants.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= EDIT_INTERVAL, "two changes of the message {gap:?} apart");
    }

    // The final message: the worst verdict in the title and a verdict line per check.
    let text = finished.text();
    let title = text.lines().next().unwrap_or_default();
    assert_eq!(title, "⛔ diagnose burst: ERROR", "{text}");
    for line in [
        "✅ *OK* disk — exit 0: disk 41% used",
        "⚠️ *WARN* queue depth — exit 1: 120 jobs waiting",
        "🔴 *CRIT* api — exit 2: 502 from /healthz",
        "⛔ *ERROR* cache — exit 3: cannot reach cache",
        "✅ *OK* replication — exit 0: lag 0 s",
    ] {
        assert!(text.contains(line), "missing '{line}' in:\n{text}");
    }
    assert!(!text.contains("running"), "{text}");
    assert!(text.contains("requested by <@U1>"), "says who asked: {text}");

    // Only the remediation whose suggest_when holds is offered.
    assert_eq!(button_labels(&finished.message), vec!["Run restart-api"]);

    // Remediations are deny-by-default: the button answers privately and runs nothing.
    let refused = private(&bot.click("U1", &finished, "Run restart-api").await);
    assert!(refused.contains("may not request remediations"), "{refused}");
}

#[tokio::test]
async fn a_short_output_goes_into_the_thread_as_a_code_block() {
    let scratch = scratch();
    let script = write_script(
        scratch.path(),
        "three.sh",
        "echo 'worker-1 up'\necho 'worker-2 up'\necho 'worker-3 down'\nexit 1",
    );
    let runbook = exec_runbook("workers", "Worker health", &[("workers", script.as_path())]);
    let bot = Bot::new(scratch, NO_CONFIG, &[&runbook]).await;

    assert_eq!(bot.command("U1", OPS_CHANNEL, None, "/diagnose workers").await, Reply::Nothing);
    let diagnosis = bot.finished_diagnosis(OPS_CHANNEL, None).await;
    assert!(diagnosis.text().starts_with("⚠️ diagnose workers: WARN"), "{}", diagnosis.text());
    bot.wait_until("the output in the thread", |bot| !bot.thread(&diagnosis.id).is_empty()).await;

    let thread = bot.thread(&diagnosis.id);
    assert_eq!(thread.len(), 1, "{}", bot.transcript());
    assert_eq!(thread[0].channel, OPS_CHANNEL);
    let code: Vec<&String> = thread[0]
        .message
        .blocks
        .iter()
        .filter_map(|block| match block {
            Block::Code { text } => Some(text),
            _ => None,
        })
        .collect();
    assert_eq!(code.len(), 1, "one code block: {:?}", thread[0].message);
    for line in ["worker-1 up", "worker-2 up", "worker-3 down"] {
        assert!(code[0].contains(line), "{}", code[0]);
    }
    assert!(bot.uploads().is_empty(), "three lines need no file");
}

#[tokio::test]
async fn ten_thousand_lines_of_output_go_as_a_file_and_no_message_is_over_the_limit() {
    let scratch = scratch();
    let script = write_script(
        scratch.path(),
        "long.sh",
        "i=1\nwhile [ $i -le 10000 ]; do echo \"line $i of the slow query log\"; i=$((i+1)); done",
    );
    let runbook = exec_runbook("slowlog", "The slow query log", &[("slow log", script.as_path())]);
    let bot = Bot::new(scratch, NO_CONFIG, &[&runbook]).await;

    bot.command("U1", OPS_CHANNEL, None, "/diagnose slowlog").await;
    let diagnosis = bot.finished_diagnosis(OPS_CHANNEL, None).await;
    assert!(
        diagnosis.text().contains("✅ *OK* slow log — exit 0: line 1 of the slow query log"),
        "{}",
        diagnosis.text()
    );
    bot.wait_until("the output file", |bot| !bot.uploads().is_empty()).await;

    let uploads = bot.uploads();
    assert_eq!(uploads.len(), 1);
    let (channel, thread, file) = &uploads[0];
    assert_eq!(channel, OPS_CHANNEL);
    assert_eq!(thread.as_deref(), Some(diagnosis.id.as_str()), "the file is in the diagnosis thread");
    let content = String::from_utf8(file.content.clone()).expect("the file is text");
    assert!(content.contains("line 1 of the slow query log\n"));
    assert!(content.contains("line 10000 of the slow query log"));
    assert_eq!(content.lines().filter(|line| line.starts_with("line ")).count(), 10_000, "every line is in the file");
    assert!(file.title.contains("10000 lines"), "{}", file.title);

    let limits = bot.platform.limits();
    for entry in bot.recorded() {
        let message = match &entry {
            Recorded::Post { message, .. } | Recorded::Update { message, .. } | Recorded::Direct { message, .. } => {
                message
            }
            _ => continue,
        };
        assert!(
            message.text_len() <= limits.max_text,
            "a message of {} characters (limit {})",
            message.text_len(),
            limits.max_text
        );
        assert!(message.blocks.len() <= limits.max_blocks);
        for block in &message.blocks {
            if let Block::Code { text } | Block::Text { text } = block {
                assert!(text.chars().count() <= limits.max_block_text);
            }
        }
    }
    assert!(
        bot.thread(&diagnosis.id).is_empty(),
        "the output is not also pasted into the thread:\n{}",
        bot.transcript()
    );
}

#[tokio::test]
async fn diagnose_against_redis_ends_with_the_checks_final_verdict() {
    let Some(redis) = redis_prefix().await else {
        return;
    };
    let queue = redis.key("trade_queue");
    redis.command(&["RPUSH", &queue, "order-1", "order-2", "order-3"]).await;
    let runbook = format!(
        r#"
name = "jobs"
summary = "Job queues in Redis"

[[checks]]
name = "trade queue"
kind = "redis"
target = "jobs"
command = ["LLEN", {}]
warn = "value > 2"
crit = "value > 10"

[[checks]]
name = "retry queue"
kind = "redis"
target = "jobs"
command = ["LLEN", {}]
warn = "value > 2"
"#,
        toml_str(&queue),
        toml_str(&redis.key("retry_queue"))
    );
    let targets = BTreeMap::from([(
        "jobs".to_string(),
        TargetInfo { kind: TargetKind::Redis, url: Secret::new(&redis.url), headers: BTreeMap::new() },
    )]);
    let bot = Bot::with_targets(scratch(), NO_CONFIG, &[&runbook], targets).await;

    bot.command("U1", OPS_CHANNEL, None, "/diagnose jobs").await;
    let diagnosis = bot.finished_diagnosis(OPS_CHANNEL, None).await;
    let text = diagnosis.text();
    assert!(text.starts_with("⚠️ diagnose jobs: WARN"), "{text}");
    assert!(text.contains("⚠️ *WARN* trade queue"), "{text}");
    assert!(text.contains("✅ *OK* retry queue"), "{text}");
}

// ---------------------------------------------------------------------------------------------
// Incidents

#[tokio::test]
async fn declare_ack_status_resolve_from_chat_show_in_the_incident_channel_and_thread() {
    let bot = Bot::new(scratch(), NO_CONFIG, &[]).await;

    let reply =
        bot.command("U1", OPS_CHANNEL, None, "/incident declare API down sev=critical impact=\"checkout fails\"").await;
    assert_eq!(reply, Reply::Nothing);
    assert!(bot.recorded().is_empty(), "the notification waits for the deliverer");
    assert_eq!(bot.deliver().await, 1);

    // The notification, in the incident channel, with its three buttons.
    let top = notification(&bot);
    let text = top.text();
    assert!(text.contains("INCIDENT #1: API down"), "{text}");
    assert!(text.contains("*Status:* TRIGGERED"), "{text}");
    assert!(text.contains("*Severity:* CRITICAL"), "{text}");
    assert!(text.contains("*Impact:* checkout fails"), "{text}");
    assert_eq!(button_labels(&top.message), vec!["Acknowledge", "Diagnose", "Resolve"]);
    let incident = bot.incident(1).await;
    assert_eq!(
        serde_json::to_value(&incident.chat["slack"]).unwrap(),
        serde_json::json!({"channel": INCIDENT_CHANNEL, "message": top.id})
    );
    assert_eq!(
        bot.escalator.store().incident_by_chat("slack", INCIDENT_CHANNEL, &top.id).await.expect("the store answers"),
        Some(1)
    );
    assert_eq!(bot.deliver().await, 0, "delivered once");
    assert_eq!(bot.posts().len(), 1);

    // Lists and summaries are private.
    let list = private(&bot.command("U3", OPS_CHANNEL, None, "/incident list").await);
    assert!(list.contains("#1 *API down* — critical triggered"), "{list}");
    let summary = private(&bot.command("U3", INCIDENT_CHANNEL, Some(&top.id), "/incident summary").await);
    assert!(summary.contains("INCIDENT #1: API down"), "{summary}");

    // /incident ack, typed in the incident's thread.
    let reply = bot.command("U2", INCIDENT_CHANNEL, Some(&top.id), "/incident ack").await;
    assert_eq!(reply, Reply::Nothing);
    assert_eq!(bot.deliver().await, 1);
    let edited = bot.current(&top.id);
    assert!(edited.text().contains("*Status:* ACKNOWLEDGED"), "{}", edited.text());
    assert_eq!(button_labels(&edited.message), vec!["Diagnose", "Resolve"]);
    let thread = bot.thread(&top.id);
    assert_eq!(thread.len(), 1, "{}", bot.transcript());
    assert!(thread[0].text().contains("Acknowledged by <@U2>"), "{}", thread[0].text());
    assert_eq!(thread[0].channel, INCIDENT_CHANNEL);

    // A status update: a note in the thread, and the top message shows it.
    let reply =
        bot.command("U2", INCIDENT_CHANNEL, Some(&top.id), "/incident status identified bad deploy eta=15m").await;
    assert_eq!(reply, Reply::Nothing);
    assert_eq!(bot.deliver().await, 1);
    let thread = bot.thread(&top.id);
    assert_eq!(thread.len(), 2, "{}", bot.transcript());
    let note = thread[1].text();
    assert!(note.contains("IDENTIFIED"), "{note}");
    assert!(note.contains("bad deploy"), "{note}");
    assert!(note.contains("ETA 15m"), "{note}");
    let edited = bot.current(&top.id).text();
    assert!(edited.contains("Identified"), "{edited}");
    assert!(edited.contains("*ETA:* 15m"), "{edited}");
    assert!(edited.contains("bad deploy"), "{edited}");

    // Resolve: the button opens a form asking for root cause, fix and prevention.
    let top = bot.current(&top.id);
    assert_eq!(bot.click("U2", &top, "Resolve").await, Reply::Nothing);
    let forms = bot.forms();
    assert_eq!(forms.len(), 1, "{}", bot.transcript());
    let (trigger, form) = &forms[0];
    assert_eq!(trigger, "trigger-U2", "the form answers the click");
    let labels: Vec<&str> = form.fields.iter().map(|field| field.label.as_str()).collect();
    assert_eq!(labels, vec!["Root cause", "Fix", "Prevention"]);
    assert!(form.title.contains("#1"), "{}", form.title);
    assert_eq!(bot.incident(1).await.status, IncidentStatus::Acknowledged, "opening the form changes nothing");

    let reply = bot
        .submit(
            "U2",
            form,
            &[
                ("root_cause", "a bad deploy of the payment client"),
                ("fix", "rolled back to 4.2.1"),
                ("prevention", "canary the payment client"),
            ],
        )
        .await;
    assert_eq!(reply, Reply::Nothing);
    assert_eq!(bot.deliver().await, 1);
    let resolved = bot.incident(1).await;
    assert_eq!(resolved.status, IncidentStatus::Resolved);
    assert_eq!(resolved.resolved_by.as_deref(), Some("slack:U2"));

    let thread = bot.thread(&top.id);
    assert_eq!(thread.len(), 3, "{}", bot.transcript());
    let summary = thread[2].text();
    assert!(summary.contains("RESOLVED #1: API down"), "{summary}");
    assert!(summary.contains("*Root cause:* a bad deploy of the payment client"), "{summary}");
    assert!(summary.contains("*Fix:* rolled back to 4.2.1"), "{summary}");
    assert!(summary.contains("*Prevention:* canary the payment client"), "{summary}");
    let edited = bot.current(&top.id);
    assert!(edited.text().contains("*Status:* RESOLVED"), "{}", edited.text());
    assert!(button_labels(&edited.message).is_empty(), "a resolved incident has no buttons");

    // Acting on the resolved incident says so, privately.
    let again = private(&bot.command("U3", INCIDENT_CHANNEL, Some(&top.id), "/incident ack").await);
    assert!(again.contains("is resolved"), "{again}");
    let summary = private(&bot.command("U3", INCIDENT_CHANNEL, Some(&top.id), "/incident summary").await);
    assert!(summary.contains("RESOLVED #1: API down"), "{summary}");
    let list = private(&bot.command("U3", OPS_CHANNEL, None, "/incident list").await);
    assert!(list.contains("No open incidents"), "{list}");
    assert_eq!(bot.deliver().await, 0);
}

#[tokio::test]
async fn ack_and_status_delivered_in_one_pass_each_get_their_own_thread_note() {
    let bot = Bot::new(scratch(), NO_CONFIG, &[]).await;
    bot.command("U1", OPS_CHANNEL, None, "/incident declare Queue backlog").await;
    bot.deliver().await;
    let top = notification(&bot);

    // The platform was slow: both changes are waiting when the deliverer comes round.
    bot.clock.advance(chrono::Duration::minutes(1));
    bot.command("U2", INCIDENT_CHANNEL, Some(&top.id), "/incident ack").await;
    bot.clock.advance(chrono::Duration::minutes(1));
    bot.command("U3", INCIDENT_CHANNEL, Some(&top.id), "/incident status monitoring workers restarted").await;
    assert_eq!(bot.deliver().await, 2);

    let notes: Vec<String> = bot.thread(&top.id).iter().map(chat_support::Post::text).collect();
    assert_eq!(notes.len(), 2, "{}", bot.transcript());
    assert!(notes[0].contains("Acknowledged by <@U2>"), "the first note is the acknowledgement: {notes:?}");
    assert!(notes[1].contains("MONITORING") && notes[1].contains("workers restarted"), "{notes:?}");
}

#[tokio::test]
async fn without_an_incident_channel_the_notification_goes_where_it_was_declared() {
    let bot = Bot::without_incident_channel(scratch(), NO_CONFIG, &[]).await;
    bot.command("U1", OPS_CHANNEL, None, "/incident declare Disk full sev=high").await;
    bot.wait_until("the notification", |bot| !bot.posts().is_empty()).await;
    assert_eq!(bot.deliver().await, 1, "the outbox item is done, nothing to post");
    let posts = bot.posts();
    assert_eq!(posts.len(), 1, "{}", bot.transcript());
    assert_eq!(posts[0].channel, OPS_CHANNEL);
    assert!(posts[0].text().contains("INCIDENT #1: Disk full"));

    // Its thread is the incident's thread.
    bot.command("U2", OPS_CHANNEL, Some(&posts[0].id), "/incident ack").await;
    bot.deliver().await;
    assert!(bot.current(&posts[0].id).text().contains("*Status:* ACKNOWLEDGED"));
    let thread = bot.thread(&posts[0].id);
    assert_eq!(thread.len(), 1, "{}", bot.transcript());
    assert!(thread[0].text().contains("Acknowledged by <@U2>"));
}

#[tokio::test]
async fn incident_commands_outside_a_thread_ask_which_incident() {
    let bot = Bot::new(scratch(), NO_CONFIG, &[]).await;
    let none = private(&bot.command("U1", OPS_CHANNEL, None, "/incident ack").await);
    assert!(none.contains("no open incidents"), "{none}");
    bot.command("U1", OPS_CHANNEL, None, "/incident declare One").await;
    bot.command("U1", OPS_CHANNEL, None, "/incident declare Two").await;
    let which = private(&bot.command("U1", OPS_CHANNEL, None, "/incident ack").await);
    assert!(which.contains("id=N"), "{which}");
    assert!(which.contains("#1") && which.contains("#2"), "{which}");
    assert_eq!(bot.command("U1", OPS_CHANNEL, None, "/incident ack id=2").await, Reply::Nothing);
    assert_eq!(bot.incident(2).await.status, IncidentStatus::Acknowledged);
    assert_eq!(bot.incident(1).await.status, IncidentStatus::Triggered);
    let typo = private(&bot.command("U1", OPS_CHANNEL, None, "/incident declare x sev=urgent").await);
    assert!(typo.contains("critical|high|medium|low"), "{typo}");
}

// ---------------------------------------------------------------------------------------------
// Escalation delivery

const ONCALL_POLICY: &str = r#"
[groups]
oncall = ["slack:U1", "slack:U2"]

[[policies]]
name = "default"
steps = [
  { after = "0s", notify = ["group:oncall"] },
  { after = "15m", notify = ["user:slack:U3"] },
]
"#;

#[tokio::test]
async fn an_escalation_step_mentions_everyone_in_the_thread_and_messages_each_directly_once() {
    let bot = Bot::new(scratch(), ONCALL_POLICY, &[]).await;
    bot.command("U9", OPS_CHANNEL, None, "/incident declare API down sev=critical").await;
    assert_eq!(bot.deliver().await, 1);
    let top = notification(&bot);

    let fired = bot.escalator.fire_due(bot.now()).await.expect("firing works");
    assert_eq!(fired.len(), 1, "the first step is due at once");
    assert_eq!(bot.deliver().await, 1);

    let thread = bot.thread(&top.id);
    assert_eq!(thread.len(), 1, "one page in the thread:\n{}", bot.transcript());
    let page = thread[0].text();
    assert!(page.contains("<@U1>") && page.contains("<@U2>"), "{page}");
    assert!(page.contains("Escalation level 1"), "{page}");
    assert!(page.contains("incident #1"), "{page}");
    let directs = bot.directs();
    let recipients: Vec<&str> = directs.iter().map(|(user, _)| user.as_str()).collect();
    assert_eq!(recipients, vec!["U1", "U2"]);
    for (_, message) in &directs {
        assert!(message.plain_text().contains("You are paged for incident #1"), "{}", message.plain_text());
        assert_eq!(button_labels(message), vec!["Acknowledge"]);
    }

    // Delivering again repeats nothing.
    let before = bot.recorded().len();
    assert_eq!(bot.deliver().await, 0);
    assert_eq!(bot.recorded().len(), before, "{}", bot.transcript());

    // The paged person acknowledges from the direct message; the next step never fires.
    assert_eq!(bot.click_direct("U2", &directs[1].1, "Acknowledge").await, Reply::Nothing);
    assert_eq!(bot.deliver().await, 1);
    assert!(
        bot.thread(&top.id).last().is_some_and(|post| post.text().contains("Acknowledged by <@U2>")),
        "{}",
        bot.transcript()
    );
    bot.clock.advance(chrono::Duration::minutes(20));
    let fired = bot.escalator.fire_due(bot.now()).await.expect("firing works");
    assert!(fired.is_empty(), "acknowledged: no more steps");
    assert_eq!(bot.deliver().await, 0);
}

#[tokio::test]
async fn a_failed_delivery_is_retried_later_and_repeats_none_of_the_parts_already_delivered() {
    let bot = Bot::new(scratch(), ONCALL_POLICY, &[]).await;
    bot.command("U9", OPS_CHANNEL, None, "/incident declare API down").await;
    bot.deliver().await;
    let top = notification(&bot);
    bot.escalator.fire_due(bot.now()).await.expect("firing works");

    // The direct message to U2 fails once: the thread page and U1's message went out.
    bot.platform.fail(1, |call| matches!(call, Call::Direct { user } if user == "U2"));
    assert_eq!(bot.deliver().await, 0);
    assert_eq!(bot.platform.failed_calls(), 1);
    assert_eq!(bot.thread(&top.id).len(), 1);
    let users = |bot: &Bot| -> Vec<String> { bot.directs().into_iter().map(|(user, _)| user).collect() };
    assert_eq!(users(&bot), vec!["U1"]);

    // Not retried before its backoff is over.
    assert_eq!(bot.deliver().await, 0);
    assert_eq!(users(&bot), vec!["U1"]);

    bot.clock.advance(chrono::Duration::seconds(2));
    assert_eq!(bot.deliver().await, 1);
    assert_eq!(users(&bot), vec!["U1", "U2"], "only the missing part is sent");
    assert_eq!(bot.thread(&top.id).len(), 1, "the page is not posted twice:\n{}", bot.transcript());

    bot.clock.advance(chrono::Duration::minutes(5));
    assert_eq!(bot.deliver().await, 0);
    assert_eq!(users(&bot), vec!["U1", "U2"]);
}

#[tokio::test]
async fn a_delivery_that_keeps_failing_is_given_up_and_shows_on_the_timeline() {
    let bot = Bot::new(scratch(), NO_CONFIG, &[]).await;
    bot.platform.fail(usize::MAX, |call| matches!(call, Call::Post { channel } if channel == INCIDENT_CHANNEL));
    bot.command("U1", OPS_CHANNEL, None, "/incident declare API down").await;

    for attempt in 1..=MAX_ATTEMPTS {
        assert_eq!(bot.deliver().await, 0);
        assert_eq!(bot.platform.failed_calls() as u32, attempt, "attempt {attempt} was made");
        // The retry waits for its backoff: a pass now attempts nothing.
        assert_eq!(bot.deliver().await, 0);
        assert_eq!(bot.platform.failed_calls() as u32, attempt);
        assert!(
            events(&bot.incident(1).await, "notification_failed").is_empty() || attempt == MAX_ATTEMPTS,
            "given up after attempt {attempt} of {MAX_ATTEMPTS}"
        );
        bot.clock.advance(chrono::Duration::minutes(2));
    }

    let incident = bot.incident(1).await;
    let failed = events(&incident, "notification_failed");
    assert_eq!(failed.len(), 1, "{:?}", incident.timeline);
    assert_eq!(failed[0].detail["kind"], "incident_declared");
    let error = failed[0].detail["error"].as_str().unwrap_or_default();
    assert!(error.contains("test platform is down"), "{error}");

    // Given up means given up: the platform heals, nothing is attempted again.
    bot.platform.heal();
    bot.clock.advance(chrono::Duration::hours(1));
    assert_eq!(bot.deliver().await, 0);
    assert!(bot.posts().is_empty(), "{}", bot.transcript());
}

// ---------------------------------------------------------------------------------------------
// Permissions

#[tokio::test]
async fn only_the_allowed_group_changes_incidents_and_remediations_are_deny_by_default() {
    let config = r#"
[groups]
oncall = ["slack:U1"]

[permissions]
incident = ["group:oncall"]
"#;
    let bot = Bot::new(scratch(), config, &[]).await;

    let refused = private(&bot.command("U9", OPS_CHANNEL, None, "/incident declare Site down").await);
    assert!(refused.contains("slack:U9"), "{refused}");
    assert!(refused.contains("group oncall"), "names who may: {refused}");
    assert!(bot.open_incidents().await.is_empty());
    assert_eq!(bot.deliver().await, 0);

    assert_eq!(bot.command("U1", OPS_CHANNEL, None, "/incident declare Site down").await, Reply::Nothing);
    bot.deliver().await;
    let top = notification(&bot);
    let refused = private(&bot.click("U9", &top, "Acknowledge").await);
    assert!(refused.contains("may not acknowledge"), "{refused}");
    assert_eq!(bot.incident(1).await.status, IncidentStatus::Triggered);
    // Reading is open to everyone.
    let list = private(&bot.command("U9", OPS_CHANNEL, None, "/incident list").await);
    assert!(list.contains("Site down"), "{list}");

    let remediate = private(&bot.command("U1", OPS_CHANNEL, None, "/remediate restart-api").await);
    assert!(remediate.contains("may not request remediations"), "{remediate}");
    assert!(remediate.contains("nobody"), "{remediate}");
}

#[tokio::test]
async fn commands_are_refused_outside_the_allowed_channels_but_buttons_the_bot_sent_work() {
    let config = r#"
[groups]
oncall = ["slack:U1"]

[[policies]]
name = "default"
steps = [{ after = "0s", notify = ["group:oncall"] }]

[permissions]
channels = ["C1"]
"#;
    let scratch = scratch();
    let ok = write_script(scratch.path(), "ok.sh", "echo fine");
    let runbook = exec_runbook("ping", "Is it up", &[("ping", ok.as_path())]);
    let bot = Bot::new(scratch, config, &[&runbook]).await;

    for command in ["/diagnose", "/diagnose ping", "/incident list", "/oncall", "/incident declare x"] {
        let refused = private(&bot.command("U1", "C2", None, command).await);
        assert!(refused.contains("not accepted in this channel") && refused.contains("C1"), "{command}: {refused}");
    }
    assert!(bot.open_incidents().await.is_empty());
    let topics = private(&bot.command("U1", "C1", None, "/diagnose").await);
    assert!(topics.contains("ping"), "{topics}");

    // The page's Acknowledge button works in the direct message, and the notification's buttons
    // work in the incident channel: they are the bot's own messages, not commands.
    bot.command("U1", "C1", None, "/incident declare Site down").await;
    bot.deliver().await;
    bot.escalator.fire_due(bot.now()).await.expect("firing works");
    bot.deliver().await;
    let directs = bot.directs();
    assert_eq!(directs.len(), 1, "{}", bot.transcript());
    assert_eq!(bot.click_direct("U1", &directs[0].1, "Acknowledge").await, Reply::Nothing);
    assert_eq!(bot.incident(1).await.status, IncidentStatus::Acknowledged);
    let top = notification(&bot);
    assert_eq!(bot.click("U1", &top, "Resolve").await, Reply::Nothing);
    assert_eq!(bot.forms().len(), 1, "{}", bot.transcript());
}

// ---------------------------------------------------------------------------------------------
// Diagnosis inside an incident

#[tokio::test]
async fn a_diagnosis_in_the_incident_thread_streams_there_and_goes_on_the_timeline() {
    let scratch = scratch();
    let crit = write_script(scratch.path(), "crit.sh", "echo '502 from /healthz'\nexit 2");
    let ok = write_script(scratch.path(), "ok.sh", "echo 'db answers in 3 ms'");
    let runbook = exec_runbook("api", "API health", &[("healthz", crit.as_path()), ("db", ok.as_path())]);
    let bot = Bot::new(scratch, NO_CONFIG, &[&runbook]).await;
    bot.command("U1", OPS_CHANNEL, None, "/incident declare API down").await;
    bot.deliver().await;
    let top = notification(&bot);

    bot.command("U2", INCIDENT_CHANNEL, Some(&top.id), "/diagnose api").await;
    let diagnosis = bot.finished_diagnosis(INCIDENT_CHANNEL, Some(&top.id)).await;
    assert_eq!(diagnosis.thread.as_deref(), Some(top.id.as_str()));
    assert!(diagnosis.text().starts_with("🔴 diagnose api: CRIT"), "{}", diagnosis.text());
    let recorded = bot.wait_for_events(1, "diagnosis").await;
    assert_eq!(recorded.len(), 1, "one diagnosis event");
    let detail = &recorded[0].detail;
    assert_eq!(detail["topic"], "api");
    assert_eq!(detail["status"], "crit");
    assert_eq!(recorded[0].by.as_deref(), Some("slack:U2"));
    // Checks run concurrently, so the event lists them in the order they finished.
    let checks: BTreeSet<(&str, &str)> = detail["checks"]
        .as_array()
        .expect("a list of checks")
        .iter()
        .map(|check| (check["name"].as_str().unwrap_or_default(), check["status"].as_str().unwrap_or_default()))
        .collect();
    assert_eq!(checks, BTreeSet::from([("db", "ok"), ("healthz", "crit")]));

    // The output went into the same thread, and everything stayed in it.
    let outside: Vec<_> = bot
        .posts()
        .into_iter()
        .filter(|post| post.id != top.id && post.thread.as_deref() != Some(top.id.as_str()))
        .collect();
    assert!(outside.is_empty(), "{}", bot.transcript());

    // The resolution summary lists the checks with their verdicts.
    bot.command(
        "U2",
        INCIDENT_CHANNEL,
        Some(&top.id),
        "/incident resolve root_cause=\"bad deploy\" fix=rollback prevention=canary",
    )
    .await;
    bot.deliver().await;
    let summary = bot.thread(&top.id).last().map(chat_support::Post::text).unwrap_or_default();
    assert!(summary.contains("RESOLVED #1"), "{summary}");
    assert!(summary.contains("[CRIT] api / healthz"), "{summary}");
    assert!(summary.contains("[OK] api / db"), "{summary}");
}

#[tokio::test]
async fn the_diagnose_button_offers_the_runbooks_in_the_thread_and_runs_the_one_chosen() {
    let scratch = scratch();
    let ok = write_script(scratch.path(), "ok.sh", "echo 'all workers up'");
    let runbook = exec_runbook("workers", "Worker health", &[("workers", ok.as_path())]);
    let bot = Bot::new(scratch, NO_CONFIG, &[&runbook]).await;
    bot.command("U1", OPS_CHANNEL, None, "/incident declare Jobs stuck").await;
    bot.deliver().await;
    let top = notification(&bot);

    assert_eq!(bot.click("U2", &top, "Diagnose").await, Reply::Nothing);
    bot.wait_until("the runbook menu", |bot| !bot.thread(&top.id).is_empty()).await;
    let menu = bot.thread(&top.id).remove(0);
    assert_eq!(button_labels(&menu.message), vec!["workers"]);

    assert_eq!(bot.click("U2", &menu, "workers").await, Reply::Nothing);
    let diagnosis = bot.finished_diagnosis(INCIDENT_CHANNEL, Some(&top.id)).await;
    assert!(diagnosis.text().contains("✅ *OK* workers — exit 0: all workers up"), "{}", diagnosis.text());
}

#[tokio::test]
async fn incident_escalate_pages_the_next_step_now() {
    let bot = Bot::new(scratch(), ONCALL_POLICY, &[]).await;
    bot.command("U9", OPS_CHANNEL, None, "/incident declare API down").await;
    bot.deliver().await;
    let top = notification(&bot);
    bot.escalator.fire_due(bot.now()).await.expect("firing works");
    bot.deliver().await;

    let reply = private(&bot.command("U1", INCIDENT_CHANNEL, Some(&top.id), "/incident escalate").await);
    assert!(reply.contains("Escalating incident #1"), "{reply}");
    let fired = bot.escalator.fire_due(bot.now()).await.expect("firing works");
    assert_eq!(fired.len(), 1, "the 15 min step fires now");
    assert_eq!(bot.deliver().await, 1);
    let page = bot.thread(&top.id).last().map(chat_support::Post::text).unwrap_or_default();
    assert!(page.contains("Escalation level 2"), "{page}");
    assert!(page.contains("<@U3>"), "{page}");
    assert_eq!(bot.directs().last().map(|(user, _)| user.as_str()), Some("U3"));
    let requested = events(&bot.incident(1).await, "escalation_requested")
        .into_iter()
        .map(|event| event.by.clone())
        .collect::<Vec<_>>();
    assert_eq!(requested, vec![Some("slack:U1".to_string())]);

    let nothing_left = private(&bot.command("U1", INCIDENT_CHANNEL, Some(&top.id), "/incident escalate").await);
    assert!(nothing_left.contains("no escalation steps left"), "{nothing_left}");
}

#[tokio::test]
async fn oncall_names_who_is_on_call_now_and_next() {
    let config = r#"
[[schedules]]
name = "primary"
rotation = "daily"
handoff = "09:00"
timezone = "UTC"
start = "2026-01-01"
members = ["slack:U1", "slack:U2", "slack:U3"]
"#;
    let bot = Bot::new(scratch(), config, &[]).await;
    bot.clock.set(chrono::DateTime::parse_from_rfc3339("2026-01-03T08:50:00Z").expect("a time").to_utc());
    let answer = private(&bot.command("U9", OPS_CHANNEL, None, "/oncall").await);
    assert!(answer.contains("*primary*: <@U2> until Sat 03 Jan 09:00 UTC · next: <@U3>"), "{answer}");
    let unknown = private(&bot.command("U9", OPS_CHANNEL, None, "/oncall secondary").await);
    assert!(unknown.contains("unknown schedule 'secondary'; schedules: primary"), "{unknown}");
    assert!(bot.recorded().is_empty(), "answers are private");
}

// ---------------------------------------------------------------------------------------------
// Bounds

/// The title of each finished `ping` diagnosis, as its message reads now.
fn finished_pings(bot: &Bot) -> Vec<String> {
    bot.posts()
        .iter()
        .filter_map(|post| bot.current(&post.id).text().lines().next().map(str::to_string))
        .filter(|title| title.contains("diagnose ping: ") && !title.contains("running"))
        .collect()
}

#[tokio::test]
async fn one_person_starting_too_many_diagnoses_is_told_how_long_to_wait() {
    let scratch = scratch();
    let ok = write_script(scratch.path(), "ok.sh", "echo fine");
    let ping = exec_runbook("ping", "Is it up", &[("up", ok.as_path())]);
    let bot = Bot::new(scratch, "[commands]\nper_person = 2\n", &[&ping]).await;

    for _ in 0..2 {
        assert!(matches!(bot.command("U1", OPS_CHANNEL, None, "/diagnose ping").await, Reply::Nothing));
    }
    bot.clock.advance(chrono::Duration::seconds(20));
    let refused = private(&bot.command("U1", OPS_CHANNEL, None, "/diagnose ping").await);
    assert_eq!(
        refused,
        "you started 2 diagnoses in the last minute, the most one person may ([commands] per_person); try again in 40 s"
    );
    // Someone else is not held up by it.
    assert!(matches!(bot.command("U2", OPS_CHANNEL, None, "/diagnose ping").await, Reply::Nothing));
    bot.wait_until("three diagnoses", |bot| finished_pings(bot).len() == 3).await;

    // A minute after the first one, U1 may start one again.
    bot.clock.advance(chrono::Duration::seconds(41));
    assert!(matches!(bot.command("U1", OPS_CHANNEL, None, "/diagnose ping").await, Reply::Nothing));
    bot.wait_until("the fourth diagnosis", |bot| finished_pings(bot).len() == 4).await;
}

#[tokio::test]
async fn checks_take_turns_across_diagnoses_under_max_running() {
    let scratch = scratch();
    // Each check holds a lock directory while it runs: two at once and the second one fails.
    let lock = scratch.path().join("lock").display().to_string();
    let exclusive = write_script(
        scratch.path(),
        "exclusive.sh",
        &format!(
            "mkdir '{lock}' || {{ echo 'another check is running'; exit 2; }}\nsleep 0.2\nrmdir '{lock}'\necho alone"
        ),
    );
    let checks: Vec<(&str, &std::path::Path)> = vec![("a", exclusive.as_path()), ("b", exclusive.as_path())];
    let ping = exec_runbook("ping", "Is it up", &checks);
    let bot = Bot::new(scratch, "[commands]\nmax_running = 1\n", &[&ping]).await;
    for user in ["U1", "U2"] {
        assert!(matches!(bot.command(user, OPS_CHANNEL, None, "/diagnose ping").await, Reply::Nothing));
    }
    bot.wait_until("both diagnoses to finish", |bot| finished_pings(bot).len() == 2).await;
    let verdicts = finished_pings(&bot);
    assert!(
        verdicts.iter().all(|title| title.ends_with("diagnose ping: OK")),
        "four checks, one at a time: {verdicts:#?}"
    );
}
