//! The outbox and incident lists at the store, on SQLite and on PostgreSQL: parts of an item
//! recorded once each in order, an item delivered once every platform finished it, pages read
//! first, and the incident list reading back exactly what one incident's page reads.

#[macro_use]
mod app;
mod support;

use app::{Backend, StoreSpace, new_incident, t0};
use firebell::incident::{TimelineEvent, TimelineKind};
use serde_json::json;

on_both_backends!(
    parts_are_recorded_once_each_and_an_item_is_delivered_when_every_platform_is_done,
    the_incident_list_reads_what_each_incident_reads,
    retention_deletes_what_is_old_and_handled_and_keeps_the_rest,
    console_history_cuts_files_to_their_previews_in_the_database,
);

async fn parts_are_recorded_once_each_and_an_item_is_delivered_when_every_platform_is_done(backend: Backend) {
    let Some(space) = StoreSpace::new(backend).await else { return };
    let store = space.open().await;
    for title in ["Queue backlog", "Disk full", "API errors"] {
        store.declare(new_incident(title, None), Vec::new(), t0()).await.expect("declared");
    }
    let items = store.due_outbox("slack:done", 10).await.unwrap();
    assert_eq!(items.len(), 3, "{items:?}");
    assert!(items.iter().all(|item| item.progress.is_empty()));

    let first = items[0].id;
    for part in ["slack:notification", "console:notification", "slack:notification", "it's \"quoted\""] {
        store.outbox_progress(first, part).await.expect("progress is recorded");
    }
    let items = store.due_outbox("slack:done", 10).await.unwrap();
    assert_eq!(items[0].progress, ["slack:notification", "console:notification", "it's \"quoted\""]);
    assert!(items[1].progress.is_empty(), "only the item named changes");

    // Slack finishes the first item: Slack's lane no longer reads it, the console's still does,
    // and it is not delivered until the console is done too.
    let needed = ["console:done".to_string(), "slack:done".to_string()];
    store.outbox_progress(first, "slack:done").await.unwrap();
    assert!(!store.outbox_settle(first, &needed, t0()).await.unwrap(), "the console has not finished it");
    let ids = |items: Vec<firebell::store::OutboxItem>| items.into_iter().map(|item| item.id).collect::<Vec<_>>();
    assert_eq!(ids(store.due_outbox("slack:done", 10).await.unwrap()), [items[1].id, items[2].id]);
    assert_eq!(ids(store.due_outbox("console:done", 10).await.unwrap()), [first, items[1].id, items[2].id]);
    assert_eq!(store.outbox_pending().await.unwrap(), 3);
    store.outbox_progress(first, "console:done").await.unwrap();
    assert!(store.outbox_settle(first, &needed, t0()).await.unwrap(), "both are done: delivered");
    assert!(!store.outbox_settle(first, &needed, t0()).await.unwrap(), "settled once");
    assert_eq!(ids(store.due_outbox("console:done", 10).await.unwrap()), [items[1].id, items[2].id]);
    assert_eq!(store.outbox_pending().await.unwrap(), 2);

    // An escalation page queued last is read first.
    let incident = items[2].incident_id.unwrap();
    let event = TimelineEvent::new(t0(), TimelineKind::Escalated, None, json!({"step": 0}));
    store.record_with_notice(incident, event, firebell::store::OutboxKind::Escalation).await.unwrap();
    let due = store.due_outbox("slack:done", 10).await.unwrap();
    assert_eq!(
        due.iter().map(|item| item.kind.as_str()).collect::<Vec<_>>(),
        ["escalation", "incident_declared", "incident_declared"]
    );
}

async fn the_incident_list_reads_what_each_incident_reads(backend: Backend) {
    let Some(space) = StoreSpace::new(backend).await else { return };
    let store = space.open().await;
    let mut ids = Vec::new();
    for n in 0..7 {
        let incident = store.declare(new_incident(&format!("Incident {n}"), None), Vec::new(), t0()).await.unwrap();
        ids.push(incident.id);
    }
    // Timelines of different lengths, chat homes on some, one resolved.
    for (n, id) in ids.iter().enumerate() {
        for note in 0..n {
            store
                .record(*id, TimelineEvent::new(t0(), TimelineKind::Status, Some("slack:U1"), json!({"n": note})))
                .await
                .unwrap();
        }
    }
    store.attach_chat(ids[1], "slack", "C1", "1700000000.000100").await.unwrap();
    store.attach_chat(ids[1], "console", "incidents", "42").await.unwrap();
    store.attach_chat(ids[4], "discord", "123", "456").await.unwrap();
    store.resolve(ids[3], "slack:U1", Default::default(), t0()).await.unwrap();

    let open = store.incidents(false, 50).await.unwrap();
    let expected: Vec<i64> = ids.iter().rev().copied().filter(|id| *id != ids[3]).collect();
    assert_eq!(open.iter().map(|incident| incident.id).collect::<Vec<_>>(), expected, "newest first, open only");
    for listed in &open {
        let single = store.incident(listed.id).await.unwrap();
        assert_eq!(
            serde_json::to_value(listed).unwrap(),
            serde_json::to_value(&single).unwrap(),
            "incident #{} as listed and as read alone",
            listed.id
        );
    }
    assert_eq!(open.iter().find(|incident| incident.id == ids[1]).unwrap().chat["console"].message, "42");
    let all = store.incidents(true, 3).await.unwrap();
    assert_eq!(
        all.iter().map(|incident| incident.id).collect::<Vec<_>>(),
        ids.iter().rev().take(3).copied().collect::<Vec<_>>()
    );
}

/// The WAL is copied into the database file in the background once it passes 1 MB, long before
/// the 4 MB at which SQLite would make a committing writer do it. In WAL mode only a checkpoint
/// writes to the database file, so the file growing is the checkpoint.
#[tokio::test]
async fn sqlite_checkpoints_its_log_in_the_background() {
    use sqlx::Connection;
    let Some(space) = StoreSpace::new(Backend::Sqlite).await else { return };
    let store = space.open().await;
    let database = space.dir.path().join("firebell.db");
    let wal = space.dir.path().join("firebell.db-wal");
    // Start from an empty log: everything so far (the schema) into the file.
    let mut connection = sqlx::SqliteConnection::connect(&space.url).await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut connection).await.unwrap();
    connection.close().await.unwrap();
    let before = std::fs::metadata(&database).unwrap().len();
    let impact = "x".repeat(2_000);
    while std::fs::metadata(&wal).map(|meta| meta.len()).unwrap_or(0) < 2 * 1024 * 1024 {
        let mut incident = new_incident("Filling the log", None);
        incident.impact = Some(impact.clone());
        store.declare(incident, Vec::new(), t0()).await.unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while std::fs::metadata(&database).unwrap().len() <= before {
        assert!(
            std::time::Instant::now() < deadline,
            "the database file is still {before} bytes with a 2 MB log: the log was not checkpointed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn retention_deletes_what_is_old_and_handled_and_keeps_the_rest(backend: Backend) {
    let Some(space) = StoreSpace::new(backend).await else { return };
    let store = space.open().await;
    let old = t0();
    let recent = t0() + chrono::Duration::days(100);
    let alert = |key: &str| firebell::store::IncomingAlert {
        source: "generic".into(),
        fingerprint: format!("generic:{key}"),
        firing: true,
        incident: new_incident(key, None),
        timers: Vec::new(),
        resolve: true,
        payload: json!({"dedup_key": key}),
    };
    for (key, at) in [("old", old), ("recent", recent)] {
        assert!(store.first_seen(&format!("slack:{key}"), at).await.unwrap());
        store.ingest_alerts(&[alert(key)], chrono::Duration::minutes(10), at).await.unwrap();
        store.console_post("ops", None, "firebell", &json!({"text": key}), at).await.unwrap();
    }
    // The old incident's notification was delivered back then; the recent one's was not yet.
    let due = store.due_outbox("console:done", 10).await.unwrap();
    assert_eq!(due.len(), 2, "{due:?}");
    store.outbox_progress(due[0].id, "console:done").await.unwrap();
    assert!(store.outbox_settle(due[0].id, &["console:done".to_string()], old).await.unwrap());
    let undelivered_old = store.declare(new_incident("Never delivered", None), Vec::new(), old).await.unwrap();

    let pruned = store.prune(t0() + chrono::Duration::days(50)).await.expect("pruning works");
    assert_eq!(pruned, firebell::store::Pruned { seen_events: 1, alerts: 1, outbox: 1, console_messages: 1 });
    assert_eq!(store.prune(t0() + chrono::Duration::days(50)).await.unwrap(), Default::default(), "nothing twice");

    assert!(store.first_seen("slack:old", recent).await.unwrap(), "the old event key is gone");
    assert!(!store.first_seen("slack:recent", recent).await.unwrap(), "the recent one is kept");
    let history = store.console_history("ops", 10, 2_000).await.unwrap();
    assert_eq!(history.iter().map(|message| message.body["text"].clone()).collect::<Vec<_>>(), [json!("recent")]);
    let waiting: Vec<Option<i64>> =
        store.due_outbox("console:done", 10).await.unwrap().into_iter().map(|item| item.incident_id).collect();
    assert!(waiting.contains(&Some(undelivered_old.id)), "an undelivered item is kept however old: {waiting:?}");
    // Incidents and their timelines stay.
    assert_eq!(store.incidents(true, 10).await.unwrap().len(), 3);
}

async fn console_history_cuts_files_to_their_previews_in_the_database(backend: Backend) {
    let Some(space) = StoreSpace::new(backend).await else { return };
    let store = space.open().await;
    let big = "é".repeat(3_000);
    let file = |text: &str| json!({"blocks": [], "file": {"filename": "out.txt", "title": "Output", "text": text}});
    store.console_post("ops", None, "firebell", &file(&big), t0()).await.unwrap();
    store.console_post("ops", None, "firebell", &file("short"), t0()).await.unwrap();
    store.console_post("ops", None, "alice", &json!({"text": "no file"}), t0()).await.unwrap();

    let history = store.console_history("ops", 10, 100).await.unwrap();
    let cut = &history[0].body["file"];
    assert_eq!(cut["preview"], json!("é".repeat(100)), "characters, not bytes");
    assert_eq!((cut["size"].clone(), cut["cut"].clone()), (json!(6_000), json!(true)), "{cut}");
    assert!(cut.get("text").is_none(), "the whole text stays in the database: {cut}");
    assert_eq!((cut["filename"].clone(), cut["title"].clone()), (json!("out.txt"), json!("Output")));
    let whole = &history[1].body["file"];
    assert_eq!(
        (whole["preview"].clone(), whole["size"].clone(), whole["cut"].clone()),
        (json!("short"), json!(5), json!(false))
    );
    assert_eq!(history[2].body, json!({"text": "no file"}));
    // The message itself still holds the whole file, for the download.
    assert_eq!(store.console_message(history[0].id).await.unwrap().body["file"]["text"], json!(big));
}
