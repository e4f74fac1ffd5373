//! After the incident (SPEC §13): notes typed in the thread land on the timeline, and the
//! post-mortem draft — posted into the thread as a Markdown file by `/incident postmortem` — is
//! built from the incident's own record: times with TTA and TTR, the timeline with the notes,
//! the checks, the remediation with who asked, who approved and whether it fixed things, and the
//! root cause, fix and prevention given at resolution.

mod chat_support;
mod common;
mod support;

use chat_support::{Bot, INCIDENT_CHANNEL, OPS_CHANNEL, Post, TWO_ONCALL, private};
use common::{toml_str, write_script};
use firebell::chat::Reply;

#[tokio::test]
async fn notes_a_remediation_and_the_resolution_all_end_up_in_the_postmortem_posted_in_the_thread() {
    let scratch = tempfile::tempdir().unwrap();
    let depth = write_script(scratch.path(), "depth.sh", "echo '12 jobs waiting'\nexit 0");
    let runbook = format!(
        r#"
name = "workers"
summary = "The worker pool"

[[checks]]
name = "queue depth"
kind = "exec"
argv = [{}]

[[remediations]]
name = "restart-workers"
summary = "Restart the worker pool"
kind = "exec"
argv = ["true"]
approvers = ["oncall"]
verify_after = "0s"
"#,
        toml_str(&depth.display().to_string())
    );
    let bot = Bot::new(scratch, TWO_ONCALL, &[&runbook]).await;
    assert_eq!(
        bot.command("U1", OPS_CHANNEL, None, "/incident declare Workers stuck sev=critical").await,
        Reply::Nothing
    );
    bot.deliver().await;
    let top: Post = bot.notification();
    let thread = Some(top.id.as_str());

    // A note, and one that names no text gets told what to write.
    let noted =
        private(&bot.command("U2", INCIDENT_CHANNEL, thread, "/incident note consumer lag started at 09:12").await);
    assert_eq!(noted, "Noted on incident #1's timeline.");
    let empty = private(&bot.command("U2", INCIDENT_CHANNEL, thread, "/incident note").await);
    assert!(empty.contains("/incident note TEXT"), "{empty}");
    let notes = bot.wait_for_events(1, "note").await;
    assert_eq!(notes.len(), 1);
    assert_eq!(
        (notes[0].by.as_deref(), &notes[0].detail),
        (Some("slack:U2"), &serde_json::json!({"text": "consumer lag started at 09:12"}))
    );

    // A diagnosis, and a remediation U1 asks for and U2 approves, verified afterwards.
    bot.command("U1", INCIDENT_CHANNEL, thread, "/diagnose workers").await;
    bot.finished_diagnosis(INCIDENT_CHANNEL, thread).await;
    bot.wait_for_events(1, "diagnosis").await;
    bot.command("U1", INCIDENT_CHANNEL, thread, "/remediate restart-workers").await;
    let request = |bot: &Bot| bot.thread(&top.id).into_iter().find(|post| post.text().contains("Approve"));
    bot.wait_until("the request in the thread", |bot| request(bot).is_some()).await;
    assert_eq!(bot.click("U2", &request(&bot).unwrap(), "Approve").await, Reply::Nothing);
    bot.wait_for_events(1, "remediation_verified").await;

    let resolve =
        "/incident resolve root_cause=\"a poison message\" fix=\"dead-lettered it\" prevention=\"validate on enqueue\"";
    assert_eq!(bot.command("U1", INCIDENT_CHANNEL, thread, resolve).await, Reply::Nothing);

    // The post-mortem, as a file in the thread; reading it needs no permission.
    assert_eq!(bot.command("U9", INCIDENT_CHANNEL, thread, "/incident postmortem").await, Reply::Nothing);
    let uploads = bot.uploads();
    let (channel, in_thread, file) = uploads.last().expect("the post-mortem was uploaded");
    assert_eq!((channel.as_str(), in_thread.as_deref()), (INCIDENT_CHANNEL, thread));
    assert_eq!(file.filename, "incident-1-postmortem.md");
    let text = String::from_utf8(file.content.clone()).unwrap();
    for fact in [
        "# Post-mortem: incident #1 — Workers stuck",
        "| Severity | CRITICAL |",
        "| Status | RESOLVED |",
        "| Time to acknowledge (TTA) | — |",
        "| Time to resolve (TTR) | 0s |",
        "## Root cause\n\na poison message",
        "## Fix\n\ndead-lettered it",
        "## Prevention\n\nvalidate on enqueue",
        "note: consumer lag started at 09:12 (slack:U2)",
        "- [OK] workers / queue depth: exit 0: 12 jobs waiting",
        "- **restart-workers**: SUCCEEDED; requested by slack:U1, approved by slack:U2; fixed",
    ] {
        assert!(text.contains(fact), "the post-mortem lacks '{fact}':\n{text}");
    }
}
