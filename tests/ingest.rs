//! A batch of alerts through `Store::ingest_alerts`, on SQLite and on PostgreSQL: everything one
//! batch can do to a fingerprint (open, repeat, resolve, re-open, ignore, open and resolve in the
//! same batch), the ids it gives new incidents, that what it wrote reads back as it decided, and
//! that a batch that fails part-way leaves nothing behind.

#[macro_use]
mod app;
mod support;

use app::{Backend, StoreSpace, mins, new_incident, t0};
use firebell::incident::IncidentStatus;
use firebell::store::{AlertOutcome, IncomingAlert, NewTimer};
use serde_json::json;

fn alert(fingerprint: &str, firing: bool, steps: usize) -> IncomingAlert {
    let mut incident = new_incident(&format!("{fingerprint} is failing"), steps.gt(&0).then_some("default"));
    incident.fingerprint = Some(fingerprint.to_string());
    incident.declared_by = Some("generic".to_string());
    IncomingAlert {
        source: "generic".to_string(),
        fingerprint: fingerprint.to_string(),
        firing,
        timers: (0..steps)
            .map(|step| NewTimer { policy: "default".into(), step, round: 0, fire_at: t0() + mins(10 * step as i64) })
            .collect(),
        incident,
        resolve: true,
        payload: json!({"labels": {"service": fingerprint}, "alerts": 1}),
    }
}

on_both_backends!(
    one_batch_opens_repeats_resolves_reopens_and_ignores_in_order,
    new_incidents_take_the_next_ids_and_later_incidents_continue_after_them,
    a_batch_that_fails_stores_nothing_and_the_store_goes_on,
);

async fn one_batch_opens_repeats_resolves_reopens_and_ignores_in_order(backend: Backend) {
    let Some(space) = StoreSpace::new(backend).await else { return };
    let store = space.open().await;
    let batch = vec![
        alert("api", true, 0),
        alert("db", true, 0),
        alert("api", true, 0),
        alert("db", false, 0),
        alert("db", true, 0),
        alert("cache", false, 0),
        alert("disk", true, 2),
        alert("disk", false, 0),
    ];
    let outcomes = store.ingest_alerts(&batch, mins(10), t0()).await.expect("the batch commits");
    let [api, db, disk] = [outcomes[0], outcomes[1], outcomes[6]].map(|outcome| match outcome {
        AlertOutcome::Opened(id) => id,
        other => panic!("expected an opened incident, got {other:?} in {outcomes:?}"),
    });
    assert_eq!(
        outcomes,
        vec![
            AlertOutcome::Opened(api),
            AlertOutcome::Opened(db),
            AlertOutcome::Repeated(api),
            AlertOutcome::Resolved(db),
            AlertOutcome::Reopened(db),
            AlertOutcome::Ignored,
            AlertOutcome::Opened(disk),
            AlertOutcome::Resolved(disk),
        ]
    );

    let api = store.incident(api).await.unwrap();
    assert_eq!(
        (api.status, api.started_at, api.fingerprint.as_deref()),
        (IncidentStatus::Triggered, t0(), Some("api"))
    );
    let kinds = |incident: &firebell::incident::Incident| -> Vec<String> {
        incident.timeline.iter().map(|event| event.kind.to_string()).collect()
    };
    // The repeat is counted on the incident, not written on its timeline.
    assert_eq!(kinds(&api), ["declared", "alert"]);
    assert_eq!(api.timeline[1].detail["labels"], json!({"service": "api"}));
    assert_eq!((api.alert_repeats, api.last_alert_at), (1, Some(t0())));

    let db = store.incident(db).await.unwrap();
    assert_eq!(db.status, IncidentStatus::Triggered, "resolved, then re-opened within the flap window");
    assert_eq!(db.resolved_at, None);
    assert_eq!(kinds(&db), ["declared", "alert", "resolved", "reopened"]);

    let disk = store.incident(disk).await.unwrap();
    assert_eq!((disk.status, disk.resolved_at), (IncidentStatus::Resolved, Some(t0())));
    assert_eq!(kinds(&disk), ["declared", "alert", "resolved"]);
    assert_eq!(disk.timeline[0].detail["steps_scheduled"], 2);
    assert_eq!(disk.timeline[2].detail["cancelled_steps"], 2, "its steps were written, then cancelled");
    assert_eq!(store.pending_timers().await.unwrap(), 0);

    // Each new incident is announced once; the re-opened one is announced as updated.
    let mut notices: Vec<(Option<i64>, String)> = store
        .undelivered(100)
        .await
        .unwrap()
        .into_iter()
        .map(|item| (item.incident_id, item.kind.to_string()))
        .collect();
    notices.sort();
    let mut expected = vec![
        (Some(api.id), "incident_declared".to_string()),
        (Some(db.id), "incident_declared".to_string()),
        (Some(db.id), "incident_resolved".to_string()),
        (Some(db.id), "incident_updated".to_string()),
        (Some(disk.id), "incident_declared".to_string()),
        (Some(disk.id), "incident_resolved".to_string()),
    ];
    expected.sort();
    assert_eq!(notices, expected);
}

async fn new_incidents_take_the_next_ids_and_later_incidents_continue_after_them(backend: Backend) {
    let Some(space) = StoreSpace::new(backend).await else { return };
    let store = space.open().await;
    let first = store.declare(new_incident("Declared by a person", None), Vec::new(), t0()).await.unwrap();

    let batch: Vec<IncomingAlert> = (0..300).map(|index| alert(&format!("host-{index}"), true, 1)).collect();
    let outcomes = store.ingest_alerts(&batch, mins(10), t0()).await.expect("the batch commits");
    let ids: Vec<i64> = outcomes
        .iter()
        .map(|outcome| match outcome {
            AlertOutcome::Opened(id) => *id,
            other => panic!("expected an opened incident, got {other:?}"),
        })
        .collect();
    assert_eq!(ids, (first.id + 1..=first.id + 300).collect::<Vec<_>>(), "in order, no gaps");
    assert_eq!(store.pending_timers().await.unwrap(), 300);
    assert_eq!(store.incident(ids[299]).await.unwrap().title, "host-299 is failing");

    // The same fingerprints again repeat; a person's next incident gets the next id.
    let again = store.ingest_alerts(&batch[..3], mins(10), t0() + mins(1)).await.unwrap();
    assert_eq!(again, ids[..3].iter().map(|id| AlertOutcome::Repeated(*id)).collect::<Vec<_>>());
    let next = store.declare(new_incident("Declared afterwards", None), Vec::new(), t0() + mins(2)).await.unwrap();
    assert_eq!(next.id, first.id + 301);

    // After the flap window, a resolved fingerprint that fires again opens a new incident.
    let resolved = store.ingest_alerts(&[alert("host-0", false, 0)], mins(10), t0() + mins(3)).await.unwrap();
    assert_eq!(resolved, vec![AlertOutcome::Resolved(ids[0])]);
    let later = store.ingest_alerts(&[alert("host-0", true, 0)], mins(10), t0() + mins(30)).await.unwrap();
    assert_eq!(later, vec![AlertOutcome::Opened(next.id + 1)]);
}

/// Makes the database refuse any alert row with the fingerprint `poison`, as a full disk or a
/// broken constraint would refuse a write in the middle of a batch.
async fn poison_alerts(space: &StoreSpace) {
    use sqlx::Connection;
    match space.backend {
        Backend::Sqlite => {
            let mut connection = sqlx::SqliteConnection::connect(&space.url).await.unwrap();
            sqlx::raw_sql(
                "CREATE TRIGGER poison BEFORE INSERT ON alerts WHEN NEW.fingerprint = 'poison' \
                 BEGIN SELECT RAISE(ABORT, 'poisoned alert'); END",
            )
            .execute(&mut connection)
            .await
            .unwrap();
        }
        Backend::Postgres => {
            let mut connection = sqlx::PgConnection::connect(&space.url).await.unwrap();
            sqlx::raw_sql(
                "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN \
                   IF NEW.fingerprint = 'poison' THEN RAISE EXCEPTION 'poisoned alert'; END IF; RETURN NEW; \
                 END $$ LANGUAGE plpgsql; \
                 CREATE TRIGGER poison BEFORE INSERT ON alerts FOR EACH ROW EXECUTE FUNCTION poison();",
            )
            .execute(&mut connection)
            .await
            .unwrap();
        }
    }
}

async fn a_batch_that_fails_stores_nothing_and_the_store_goes_on(backend: Backend) {
    let Some(space) = StoreSpace::new(backend).await else { return };
    let store = space.open().await;
    let resolved_later = store.ingest_alerts(&[alert("cache", true, 1)], mins(10), t0()).await.unwrap();
    poison_alerts(&space).await;

    // The poisoned alert is the last row the batch writes: everything before it must go too.
    let batch = vec![alert("api", true, 2), alert("db", true, 0), alert("cache", false, 0), alert("poison", true, 0)];
    let error = store.ingest_alerts(&batch, mins(10), t0() + mins(1)).await.expect_err("the batch fails");
    assert!(error.to_string().contains("poisoned alert"), "{error}");
    let incidents = store.incidents(true, 100).await.unwrap();
    assert_eq!(incidents.len(), 1, "only the incident from before the batch: {incidents:?}");
    assert_eq!(incidents[0].status, IncidentStatus::Triggered, "the resolve was rolled back too");
    assert_eq!(store.pending_timers().await.unwrap(), 1, "no timers of the failed batch");

    // The writer is not left inside the failed transaction: the same alerts without the poison
    // commit, and a person can declare an incident.
    let outcomes = store.ingest_alerts(&batch[..3], mins(10), t0() + mins(2)).await.expect("the batch commits");
    let cache = match resolved_later[0] {
        AlertOutcome::Opened(id) => id,
        other => panic!("expected an opened incident, got {other:?}"),
    };
    assert!(
        matches!(outcomes[..], [AlertOutcome::Opened(_), AlertOutcome::Opened(_), AlertOutcome::Resolved(id)] if id == cache),
        "{outcomes:?}"
    );
    assert_eq!(store.pending_timers().await.unwrap(), 2, "the api incident's two steps; the cache's was cancelled");
    store.declare(new_incident("Declared after the failure", None), Vec::new(), t0() + mins(3)).await.unwrap();
    assert_eq!(store.incidents(true, 100).await.unwrap().len(), 4);
}

/// Audit #17: two replicas get the same "firing" for a just-resolved incident at the same moment
/// (Alertmanager HA sends every alert to each). Both re-open it; its steps must be scheduled once.
/// The test holds the incident's row lock while both batches run, so both read it resolved and
/// then wait: the race happens every time, not by chance.
#[tokio::test]
async fn replicas_reopening_one_incident_at_once_schedule_its_steps_once() {
    use sqlx::Connection;
    let Some(space) = StoreSpace::new(Backend::Postgres).await else { return };
    let (one, two) = (space.open().await, space.open().await);
    let opened = one.ingest_alerts(&[alert("api", true, 2)], mins(10), t0()).await.expect("opened");
    let AlertOutcome::Opened(id) = opened[0] else { panic!("expected an opened incident, got {opened:?}") };
    one.ingest_alerts(&[alert("api", false, 0)], mins(10), t0() + mins(1)).await.expect("resolved");

    let mut holder = sqlx::PgConnection::connect(&space.url).await.expect("a connection of the test's own");
    sqlx::query("BEGIN").execute(&mut holder).await.unwrap();
    sqlx::query("SELECT id FROM incidents WHERE id = $1 FOR UPDATE").bind(id).execute(&mut holder).await.unwrap();

    let reopen = |store: std::sync::Arc<dyn firebell::store::Store>| {
        tokio::spawn(async move { store.ingest_alerts(&[alert("api", true, 2)], mins(10), t0() + mins(2)).await })
    };
    let (first, second) = (reopen(one.clone()), reopen(two.clone()));
    // Both batches are waiting for the row (or one has failed, which the joins below report).
    let mut watcher = sqlx::PgConnection::connect(&space.url).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if waiting >= 2 || first.is_finished() || second.is_finished() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the two batches never both waited for the incident's row");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();

    let mut outcomes =
        vec![first.await.unwrap().expect("a batch commits"), second.await.unwrap().expect("a batch commits")];
    outcomes.sort_by_key(|outcome| format!("{outcome:?}"));
    assert_eq!(outcomes, vec![vec![AlertOutcome::Reopened(id)], vec![AlertOutcome::Repeated(id)]]);
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM timers WHERE incident_id = $1 AND state = 'pending'")
        .bind(id)
        .fetch_one(&mut watcher)
        .await
        .unwrap();
    assert_eq!(pending, 2, "the re-opened incident's two steps, once");
}
