//! After the incident (SPEC §13): follow-ups with owners and due times, checklists from config
//! posted into the thread with a Done button per item, and reminders on the durable timers — each
//! due item reminds its owner once, however often the timer loop looks and across restarts.

mod chat_support;
mod common;
mod support;

use chat_support::{Bot, INCIDENT_CHANNEL, OPS_CHANNEL, Post, button_labels, private};
use chrono::Duration;
use firebell::chat::Reply;

/// Two on-call people, a lead, and the post-incident checklist of seed 003 (shortened).
const CONFIG: &str = r#"
[groups]
oncall = ["slack:U1", "slack:U2"]
leads = ["slack:U3"]

[permissions]
incident = ["group:oncall"]

[[checklists]]
name = "post-incident"
on = "resolved"
severities = ["critical", "high"]
items = [ { text = "Service restored", after = "0s" },
          { text = "Post-mortem scheduled", after = "48h", owner = "group:leads" } ]

[[checklists]]
name = "security"
on = "declared"
severities = ["critical"]
items = [ { text = "Preserve evidence", after = "5m", owner = "slack:U1" } ]
"#;

async fn declared(bot: &Bot, severity: &str) -> Post {
    let declare = format!("/incident declare Queue backlog sev={severity}");
    assert_eq!(bot.command("U1", OPS_CHANNEL, None, &declare).await, Reply::Nothing);
    bot.deliver().await;
    bot.notification()
}

fn find<'a>(posts: &'a [Post], text: &str) -> Option<&'a Post> {
    posts.iter().find(|post| post.text().contains(text))
}

#[tokio::test]
async fn a_followup_is_assigned_its_owner_is_reminded_once_and_done_closes_it() {
    let bot = Bot::new(tempfile::tempdir().unwrap(), CONFIG, &[]).await;
    let top = declared(&bot, "high").await;
    let thread = Some(top.id.as_str());

    let assign = "/incident followup \"alert on queue depth\" owner=slack:U2 due=2s";
    assert_eq!(bot.command("U1", INCIDENT_CHANNEL, thread, assign).await, Reply::Nothing);
    let card = find(&bot.thread(&top.id), "Follow-up #").cloned().expect("the follow-up is posted in the thread");
    assert!(card.text().contains("alert on queue depth"), "{}", card.text());
    assert!(card.text().contains("<@U2>"), "the owner is mentioned: {}", card.text());
    assert_eq!(button_labels(&card.message), ["Done"]);
    let recorded = bot.wait_for_events(1, "followup").await;
    assert_eq!(recorded[0].by.as_deref(), Some("slack:U1"));
    assert_eq!(recorded[0].detail["owner"], "slack:U2");

    // Not due yet: nobody is reminded.
    assert!(bot.escalator.remind_due(bot.now()).await.unwrap().is_empty());

    // Due: U2 is reminded in the thread and by direct message, once however often the loop runs.
    bot.clock.advance(Duration::seconds(2));
    let reminded = bot.escalator.remind_due(bot.now()).await.unwrap();
    assert_eq!(reminded.len(), 1);
    assert_eq!(reminded[0].notified, ["slack:U2"]);
    assert!(bot.escalator.remind_due(bot.now() + Duration::hours(1)).await.unwrap().is_empty());
    bot.deliver().await;
    let reminders: Vec<Post> = bot.thread(&top.id).into_iter().filter(|post| post.text().contains("⏰")).collect();
    assert_eq!(reminders.len(), 1, "{}", bot.transcript());
    assert!(reminders[0].text().contains("<@U2>") && reminders[0].text().contains("alert on queue depth"));
    let directs: Vec<_> = bot.directs().into_iter().filter(|(user, _)| user == "U2").collect();
    assert_eq!(directs.len(), 1, "one direct message to the owner");
    assert_eq!(bot.incident(1).await.timeline.iter().filter(|event| event.kind == "reminded").count(), 1);

    // Listed with a Done button; someone without the incident permission cannot tick it.
    let list = private(&bot.command("U2", INCIDENT_CHANNEL, thread, "/incident followups").await);
    assert!(list.contains("alert on queue depth") && list.contains("overdue"), "{list}");
    let refused = private(&bot.click("U9", &card, "Done").await);
    assert!(refused.contains("may not tick follow-ups") && refused.contains("allowed: group oncall"), "{refused}");

    // Done from the reminder; a second click says it is done already.
    assert_eq!(bot.click("U2", &reminders[0], "Done").await, Reply::Nothing);
    let again = private(&bot.click("U1", &card, "Done").await);
    assert!(again.contains("done already") && again.contains("slack:U2"), "{again}");
    let incident = bot.incident(1).await;
    assert_eq!(incident.followups.len(), 1);
    assert_eq!(incident.followups[0].done_by.as_deref(), Some("slack:U2"));
    assert_eq!(incident.timeline.iter().filter(|event| event.kind == "followup_done").count(), 1);
    let store = bot.escalator.store();
    assert!(store.followups(false, 10).await.unwrap().is_empty(), "no open follow-ups are left");
    assert_eq!(store.followups(true, 10).await.unwrap().len(), 1);

    // The post-mortem holds it.
    let postmortem = bot.escalator.templates().postmortem(&incident, bot.now()).unwrap();
    assert!(postmortem.contains("- [x] alert on queue depth — slack:U2"), "{postmortem}");
}

#[tokio::test]
async fn bad_followups_are_told_what_is_valid() {
    let bot = Bot::new(tempfile::tempdir().unwrap(), CONFIG, &[]).await;
    let top = declared(&bot, "low").await;
    let thread = Some(top.id.as_str());
    let said = |text: &'static str| {
        let bot = &bot;
        async move { private(&bot.command("U1", INCIDENT_CHANNEL, thread, text).await) }
    };
    assert!(
        said("/incident followup x owner=group:nobody").await.contains("unknown group 'nobody'; groups: leads, oncall")
    );
    assert!(said("/incident followup x owner=schedule:primary").await.contains("unknown schedule 'primary'"));
    assert!(said("/incident followup x owner=@alice").await.contains("PLATFORM:ID"));
    assert!(said("/incident followup x due=tomorrow").await.contains("due=tomorrow is not a duration"));
    // No owner named: whoever typed it owns it; no due time, no reminder.
    assert_eq!(bot.command("U1", INCIDENT_CHANNEL, thread, "/incident followup write it up").await, Reply::Nothing);
    let incident = bot.incident(1).await;
    assert_eq!(incident.followups[0].owner.as_deref(), Some("slack:U1"));
    assert_eq!(incident.followups[0].due_at, None);
    bot.clock.advance(Duration::days(400));
    assert!(bot.escalator.remind_due(bot.now()).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_resolved_incident_posts_its_checklist_ticks_it_and_reminds_the_overdue_owner_once() {
    let bot = Bot::new(tempfile::tempdir().unwrap(), CONFIG, &[]).await;
    let top = declared(&bot, "critical").await;
    let thread = Some(top.id.as_str());

    // Declared critical: the security checklist opens in the thread.
    let security = find(&bot.thread(&top.id), "Checklist: security").cloned().expect("the security checklist");
    assert!(security.text().contains("Preserve evidence"), "{}", security.text());
    assert!(find(&bot.thread(&top.id), "Checklist: post-incident").is_none(), "that one waits for the resolve");

    let resolve = "/incident resolve root_cause=\"a poison message\" fix=\"dead-lettered it\"";
    assert_eq!(bot.command("U1", INCIDENT_CHANNEL, thread, resolve).await, Reply::Nothing);
    bot.deliver().await;
    let checklist =
        find(&bot.thread(&top.id), "Checklist: post-incident").cloned().expect("the post-incident checklist");
    assert!(checklist.text().contains("(0/2 done)"), "{}", checklist.text());
    assert_eq!(button_labels(&checklist.message), ["Done: Service restored", "Done: Post-mortem scheduled"]);

    // Ticking an item edits the message: one Done button fewer, the count up.
    assert_eq!(bot.click("U2", &checklist, "Done: Service restored").await, Reply::Nothing);
    bot.deliver().await;
    let now = bot.current(&checklist.id);
    assert!(now.text().contains("(1/2 done)") && now.text().contains("by <@U2>"), "{}", now.text());
    assert_eq!(button_labels(&now.message), ["Done: Post-mortem scheduled"]);
    let ticked = bot.wait_for_events(1, "checklist_done").await;
    assert_eq!((ticked[0].by.as_deref(), &ticked[0].detail["text"]), (Some("slack:U2"), &"Service restored".into()));

    // The lead's item is overdue after 48 h: the lead is reminded once; the security item
    // (due after 5 min, owner U1) too.
    bot.clock.advance(Duration::hours(48));
    let mut reminded: Vec<(String, Vec<String>)> = bot
        .escalator
        .remind_due(bot.now())
        .await
        .unwrap()
        .into_iter()
        .map(|done| (done.task.text, done.notified))
        .collect();
    reminded.sort();
    assert_eq!(
        reminded,
        [
            ("Post-mortem scheduled".to_string(), vec!["slack:U3".to_string()]),
            ("Preserve evidence".to_string(), vec!["slack:U1".to_string()]),
        ]
    );
    assert!(bot.escalator.remind_due(bot.now()).await.unwrap().is_empty());
    bot.deliver().await;
    assert_eq!(bot.directs().iter().filter(|(user, _)| user == "U3").count(), 1);

    // Delivering again repeats nothing: the checklists were opened and posted once.
    bot.deliver().await;
    let posted = bot.thread(&top.id).iter().filter(|post| post.text().contains("Checklist:")).count();
    assert_eq!(posted, 2, "{}", bot.transcript());

    // The post-mortem shows the checklist's state.
    let incident = bot.incident(1).await;
    let postmortem = bot.escalator.templates().postmortem(&incident, bot.now()).unwrap();
    assert!(postmortem.contains("### post-incident (1/2 done)"), "{postmortem}");
    assert!(postmortem.contains("- [x] Service restored"), "{postmortem}");
    assert!(postmortem.contains("- [ ] Post-mortem scheduled — group:leads"), "{postmortem}");
}

#[tokio::test]
async fn a_low_severity_incident_gets_no_checklist() {
    let bot = Bot::new(tempfile::tempdir().unwrap(), CONFIG, &[]).await;
    let top = declared(&bot, "low").await;
    let thread = Some(top.id.as_str());
    let resolve = "/incident resolve root_cause=\"none\"";
    assert_eq!(bot.command("U1", INCIDENT_CHANNEL, thread, resolve).await, Reply::Nothing);
    bot.deliver().await;
    assert!(find(&bot.thread(&top.id), "Checklist:").is_none(), "{}", bot.transcript());
    assert!(bot.incident(1).await.checklists.is_empty());
}

#[test]
fn the_example_config_ships_the_seed_checklists() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("firebell.example.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let config = firebell::config::Config::parse(&firebell::source::SourceFile::new(&path, text)).unwrap();
    let checklists: Vec<firebell::incident::tasks::Checklist> =
        config.checklists.iter().map(firebell::incident::tasks::Checklist::from_config).collect();
    let shown: Vec<(&str, usize, Vec<i64>)> = checklists
        .iter()
        .map(|checklist| {
            let mut minutes: Vec<i64> = checklist.items.iter().map(|item| item.after.num_minutes()).collect();
            minutes.dedup();
            (checklist.name.as_str(), checklist.items.len(), minutes)
        })
        .collect();
    // Seed 003: within 1 hour, the same day, 48 hours, a week after resolving; seed 001: 5, 30,
    // 120 and 240 minutes, then a week, after a critical incident is declared.
    assert_eq!(
        shown,
        [("post-incident", 12, vec![60, 720, 2_880, 10_080]), ("security-response", 17, vec![5, 30, 120, 240, 10_080]),]
    );
}
