//! Durable timers on the real binary: `firebell serve` is killed with SIGKILL (`kill -9`) while
//! escalation steps are pending, restarted, and every step must fire exactly once — none lost,
//! none twice. With PostgreSQL, two replicas share the timers and one of them is killed.
//!
//! Waiting here is bounded polling: the bounds are test timeouts, not performance claims.

mod app;

use std::collections::BTreeMap;
use std::time::Duration;

use app::{PgDatabase, ServeDir, Server, api_escalations};
use chrono::{DateTime, Utc};
use serde_json::Value;

/// One person, so every step has someone to notify.
fn policy(offsets: &[&str]) -> String {
    let steps: Vec<String> =
        offsets.iter().map(|after| format!("{{ after = \"{after}\", notify = [\"group:oncall\"] }}")).collect();
    format!(
        "[groups]\noncall = [\"console:alice\"]\n\n[[policies]]\nname = \"default\"\nsteps = [ {} ]\n",
        steps.join(", ")
    )
}

fn started_at(incident: &Value) -> DateTime<Utc> {
    incident["started_at"]
        .as_str()
        .and_then(|at| DateTime::parse_from_rfc3339(at).ok())
        .expect("started_at is RFC 3339")
        .to_utc()
}

async fn sleep_until(at: DateTime<Utc>) {
    if let Ok(wait) = (at - Utc::now()).to_std() {
        tokio::time::sleep(wait).await;
    }
}

/// How many `escalated` events each (incident, step, repeat) has, read through `server`'s API.
async fn fired_counts(server: &Server, ids: &[i64]) -> BTreeMap<(i64, u64, u64), usize> {
    let mut counts = BTreeMap::new();
    for id in ids {
        for (step, repeat, _) in api_escalations(&server.incident(*id).await) {
            *counts.entry((*id, step, repeat)).or_insert(0) += 1;
        }
    }
    counts
}

/// Polls until `expected` escalations are recorded (or `limit` passes), then returns the counts.
async fn wait_for_escalations(
    server: &Server,
    ids: &[i64],
    expected: usize,
    limit: Duration,
) -> BTreeMap<(i64, u64, u64), usize> {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let counts = fired_counts(server, ids).await;
        if counts.values().sum::<usize>() >= expected || std::time::Instant::now() >= deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every step of every incident, once.
fn each_once(ids: &[i64], steps: u64) -> BTreeMap<(i64, u64, u64), usize> {
    ids.iter().flat_map(|id| (0..steps).map(move |step| ((*id, step, 0), 1))).collect()
}

#[tokio::test]
async fn a_step_that_came_due_while_firebell_was_down_fires_once_after_restart() {
    let mut dir = ServeDir::new(None, &policy(&["3s", "6s"]));
    let mut first = dir.start("first").await;
    let incident = first.declare("Disk full on db-1").await;
    first.kill();
    let id = incident["id"].as_i64().expect("an id");
    let started = started_at(&incident);

    // Killed before the first step was due: both steps are still pending in the store.
    {
        let store = dir.open_store().await;
        let stored = store.incident(id).await.expect("the incident survived the kill");
        let kinds: Vec<&str> = stored.timeline.iter().map(|event| event.kind.as_str()).collect();
        assert_eq!(
            kinds,
            ["declared"],
            "a step fired before the kill; this machine was too slow for the test:\n{}",
            dir.logs()
        );
        assert_eq!(store.pending_timers().await.unwrap(), 2);
    }

    // Both steps are overdue by the time firebell comes back.
    sleep_until(started + chrono::Duration::milliseconds(6_500)).await;
    let second = dir.start("second").await;
    let restarted = second.started_at;
    let counts = wait_for_escalations(&second, &[id], 2, Duration::from_secs(10)).await;
    assert_eq!(counts, each_once(&[id], 2), "after the restart each step fires once:\n{}", dir.logs());

    let incident = second.incident(id).await;
    for (step, _, at) in api_escalations(&incident) {
        assert!(at >= restarted, "step {step} is recorded at {at}, before the restart at {restarted}");
        eprintln!("step {step} fired {} ms after the restart", (at - restarted).num_milliseconds());
    }
    let escalated: Vec<&Value> =
        incident["timeline"].as_array().unwrap().iter().filter(|event| event["kind"] == "escalated").collect();
    for event in &escalated {
        assert_eq!(event["detail"]["notified"], serde_json::json!(["console:alice"]));
    }

    // A moment later still once each, and one notification each in the outbox.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fired_counts(&second, &[id]).await, each_once(&[id], 2));
    let store = dir.open_store().await;
    assert_eq!(store.pending_timers().await.unwrap(), 0);
    assert_eq!(dir.escalation_rows().await, 2, "one page per fired step");
}

#[tokio::test]
async fn repeated_kill_9_cycles_lose_no_step_and_fire_none_twice() {
    const STEPS: u64 = 5;
    let mut dir = ServeDir::new(None, &policy(&["1s", "2s", "3s", "4s", "5s"]));
    // (incidents declared, time up after that, time down after the kill), in milliseconds:
    // kills land before, between and right on the steps' due times.
    let cycles: [(usize, u64, u64); 5] =
        [(2, 1_300, 700), (1, 400, 1_500), (1, 2_100, 200), (0, 900, 1_100), (0, 100, 600)];
    let mut ids = Vec::new();
    let mut last_due = Utc::now();
    for (cycle, (declare, up, down)) in cycles.into_iter().enumerate() {
        let mut server = dir.start(&format!("cycle{cycle}")).await;
        for _ in 0..declare {
            let incident = server.declare(&format!("Incident of cycle {cycle}")).await;
            ids.push(incident["id"].as_i64().expect("an id"));
            last_due = started_at(&incident) + chrono::Duration::seconds(STEPS as i64);
        }
        tokio::time::sleep(Duration::from_millis(up)).await;
        server.kill();
        tokio::time::sleep(Duration::from_millis(down)).await;
    }
    assert_eq!(ids, [1, 2, 3, 4]);

    let last = dir.start("last").await;
    sleep_until(last_due).await;
    let counts = wait_for_escalations(&last, &ids, ids.len() * STEPS as usize, Duration::from_secs(10)).await;
    assert_eq!(counts, each_once(&ids, STEPS), "every step of every incident fires exactly once:\n{}", dir.logs());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fired_counts(&last, &ids).await, each_once(&ids, STEPS), "and no step fires again later");

    let store = dir.open_store().await;
    assert_eq!(store.pending_timers().await.unwrap(), 0);
    assert_eq!(dir.escalation_rows().await, (ids.len() * STEPS as usize) as i64, "one page per fired step");
    // The kills really did interrupt the escalation: some steps came due while nobody ran and
    // fired late, after a restart.
    let mut latest = 0;
    for id in &ids {
        for event in
            last.incident(*id).await["timeline"].as_array().unwrap().iter().filter(|event| event["kind"] == "escalated")
        {
            latest = latest.max(event["detail"]["late_ms"].as_i64().expect("detail.late_ms"));
        }
    }
    assert!(
        latest >= 300,
        "no step came due while firebell was down (latest fired {latest} ms late); the cycles test nothing"
    );
}

#[tokio::test]
async fn two_replicas_on_postgresql_fire_each_step_once_when_one_is_killed() {
    const STEPS: u64 = 4;
    let Some(database) = PgDatabase::create().await else {
        return;
    };
    let mut dir = ServeDir::new(Some(&database.url), &policy(&["2s", "4s", "6s", "8s"]));
    let mut a = dir.start("replica-a").await;
    let b = dir.start("replica-b").await;

    let mut ids = Vec::new();
    let mut last_due = Utc::now();
    for n in 0..6 {
        let replica = if n % 2 == 0 { &a } else { &b };
        let incident = replica.declare(&format!("Incident {n}")).await;
        ids.push(incident["id"].as_i64().expect("an id"));
        last_due = started_at(&incident) + chrono::Duration::seconds(STEPS as i64 * 2);
    }

    // Mid-escalation: the first steps have fired, the later ones are pending.
    sleep_until(last_due - chrono::Duration::milliseconds(5_000)).await;
    a.kill();
    sleep_until(last_due).await;
    let counts = wait_for_escalations(&b, &ids, ids.len() * STEPS as usize, Duration::from_secs(10)).await;
    assert_eq!(counts, each_once(&ids, STEPS), "every step of every incident fires exactly once:\n{}", dir.logs());
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(fired_counts(&b, &ids).await, each_once(&ids, STEPS), "and no step fires again later");

    let store = dir.open_store().await;
    assert_eq!(store.pending_timers().await.unwrap(), 0);
    assert_eq!(dir.escalation_rows().await, (ids.len() * STEPS as usize) as i64, "one page per fired step");
}
