//! A remediation's checks re-run after it ran (SPEC §11): against a real Redis queue, one that
//! drains the queue shows crit → ok and "fixed", one that changes nothing shows crit → crit and
//! "not fixed"; the timeline keeps `remediation_verified` and the resolution summary says which.
//! Bad `verify_checks` and `verify_after` are refused with the line and what is valid.

mod chat_support;
mod common;
mod support;

use std::collections::BTreeMap;

use chat_support::{Bot, INCIDENT_CHANNEL, OPS_CHANNEL, Post, TWO_ONCALL, private};
use common::{redis_prefix, toml_str};
use firebell::chat::Reply;
use firebell::check::TargetInfo;
use firebell::config::{Secret, TargetKind};

/// A queue check (crit above 500) and two remediations: one empties the queue, one does nothing.
fn runbook(queue: &str) -> String {
    format!(
        r#"
name = "jobs"
summary = "Job queue in Redis"

[[checks]]
name = "trade queue"
kind = "redis"
target = "jobs"
command = ["LLEN", {queue}]
warn = "value > 100"
crit = "value > 500"

[[checks]]
name = "always fine"
kind = "exec"
argv = ["true"]

[[remediations]]
name = "drain-queue"
summary = "Empty the trade queue"
kind = "redis"
target = "jobs"
command = ["DEL", {queue}]
approvers = ["oncall"]
suggest_when = "checks['trade queue'].status == 'crit'"
verify_after = "0s"

[[remediations]]
name = "poke"
summary = "Changes nothing"
kind = "exec"
argv = ["true"]
approvers = ["oncall"]
verify_checks = ["trade queue"]
verify_after = "0s"
"#,
        queue = toml_str(queue)
    )
}

/// The incident's thread root (its notification in the incident channel).
async fn declare(bot: &Bot) -> Post {
    assert_eq!(bot.command("U1", OPS_CHANNEL, None, "/incident declare Orders stuck").await, Reply::Nothing);
    bot.deliver().await;
    bot.notification()
}

/// U1 asks for `remediation` in the incident's thread, U2 approves; returns the Verification
/// message that follows in the thread.
async fn remediate_and_verify(bot: &Bot, top: &Post, remediation: &str) -> String {
    let thread = Some(top.id.as_str());
    let reply = bot.command("U1", INCIDENT_CHANNEL, thread, &format!("/remediate {remediation}")).await;
    assert_eq!(reply, Reply::Nothing, "{reply:?}");
    let request = |bot: &Bot| {
        bot.thread(&top.id)
            .into_iter()
            .find(|post| post.text().contains(remediation) && post.text().contains("Approve"))
    };
    bot.wait_until("the request in the thread", |bot| request(bot).is_some()).await;
    let request = request(bot).expect("the request message");
    assert_eq!(bot.click("U2", &request, "Approve").await, Reply::Nothing);
    let header = format!("Verification: {remediation}");
    let verification =
        |bot: &Bot| bot.thread(&top.id).into_iter().find(|post| post.text().contains(&header)).map(|post| post.text());
    bot.wait_until("the verification in the thread", |bot| verification(bot).is_some()).await;
    verification(bot).expect("the verification message")
}

#[tokio::test]
async fn a_fix_that_drains_the_queue_is_verified_fixed_and_one_that_does_nothing_is_not() {
    let Some(redis) = redis_prefix().await else {
        return;
    };
    let queue = redis.key("trade_queue");
    let fill = || async {
        let orders: Vec<String> = (0..600).map(|n| format!("order-{n}")).collect();
        let mut words = vec!["RPUSH", queue.as_str()];
        words.extend(orders.iter().map(String::as_str));
        redis.command(&words).await;
    };
    fill().await;
    let targets = BTreeMap::from([(
        "jobs".to_string(),
        TargetInfo { kind: TargetKind::Redis, url: Secret::new(&redis.url), headers: BTreeMap::new() },
    )]);
    let bot = Bot::with_targets(tempfile::tempdir().unwrap(), TWO_ONCALL, &[&runbook(&queue)], targets).await;
    let top = declare(&bot).await;

    // The queue drains: the suggest_when check is the one re-run, crit → ok.
    let fixed = remediate_and_verify(&bot, &top, "drain-queue").await;
    assert!(fixed.contains("✅ fixed"), "{fixed}");
    assert!(fixed.contains("*trade queue*: 🔴 crit → ✅ ok"), "{fixed}");
    assert!(!fixed.contains("always fine"), "only the checks suggest_when names re-run: {fixed}");

    // Full again, and a remediation that changes nothing: crit → crit.
    fill().await;
    let not_fixed = remediate_and_verify(&bot, &top, "poke").await;
    assert!(not_fixed.contains("❌ not fixed"), "{not_fixed}");
    assert!(not_fixed.contains("*trade queue*: 🔴 crit → 🔴 crit"), "{not_fixed}");

    // Both on the timeline, with before, after and fixed.
    let verified = bot.wait_for_events(1, "remediation_verified").await;
    let verified: Vec<(String, serde_json::Value, serde_json::Value, bool)> = verified
        .iter()
        .map(|event| {
            let detail = &event.detail;
            let name = detail["name"].as_str().unwrap_or_default().to_string();
            (name, detail["before"].clone(), detail["after"].clone(), detail["fixed"] == true)
        })
        .collect();
    assert_eq!(
        verified,
        [
            (
                "drain-queue".to_string(),
                serde_json::json!({"trade queue": "crit"}),
                serde_json::json!({"trade queue": "ok"}),
                true
            ),
            (
                "poke".to_string(),
                serde_json::json!({"trade queue": "crit"}),
                serde_json::json!({"trade queue": "crit"}),
                false
            ),
        ]
    );

    // The resolution summary says which fixed it.
    let resolved =
        bot.command("U1", INCIDENT_CHANNEL, Some(&top.id), "/incident resolve root_cause=\"stuck consumer\"");
    assert_eq!(resolved.await, Reply::Nothing);
    let summary = private(&bot.command("U1", INCIDENT_CHANNEL, Some(&top.id), "/incident summary").await);
    let line = |name: &str| summary.lines().find(|line| line.contains(name)).unwrap_or_default().to_string();
    assert!(line("drain-queue").ends_with("; fixed"), "{summary}");
    assert!(line("poke").ends_with("; not fixed"), "{summary}");
}

#[tokio::test]
async fn a_verify_checks_name_that_is_no_check_and_a_verify_after_over_an_hour_are_refused() {
    let base = runbook("q");
    let cases = [
        (
            base.replace("verify_checks = [\"trade queue\"]", "verify_checks = [\"trade queu\"]"),
            "verify_checks: this runbook has no check 'trade queu'; its checks: trade queue, always fine",
        ),
        (base.replacen("verify_after = \"0s\"", "verify_after = \"2h\"", 1), "verify_after must be at most 1h"),
        (base.replacen("verify_after = \"0s\"", "verify_after = \"soon\"", 1), "invalid duration 'soon'"),
    ];
    for (text, expected) in cases {
        let source = firebell::source::SourceFile::new("commands/jobs.toml", text.as_str());
        let (_, errors) = firebell::runbook::Catalogue::load(&[source], &firebell::check::TargetRefs::Unchecked);
        let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            errors.iter().any(|error| error.starts_with("commands/jobs.toml:") && error.contains(expected)),
            "expected '{expected}' with its line in {errors:?}"
        );
    }
}
