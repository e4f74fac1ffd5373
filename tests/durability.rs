//! Durable timers on the real binary: `firebell serve` is killed with SIGKILL (`kill -9`) while
//! escalation steps are pending, restarted, and every step must fire exactly once — none lost,
//! none twice. With PostgreSQL, two replicas share the timers and one of them is killed.
//!
//! Waiting here is bounded polling: the bounds are test timeouts, not performance claims.

mod app;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use app::{PgDatabase, ServeDir, Server, api_escalations};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

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

    // No timer is left to fire, so once each stays once each; one notification each in the outbox.
    let store = dir.open_store().await;
    assert_eq!(store.pending_timers().await.unwrap(), 0);
    assert_eq!(fired_counts(&second, &[id]).await, each_once(&[id], 2));
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
    // Nothing is left to fire (a step is claimed and recorded in one transaction), so no step
    // can fire again later.
    let store = dir.open_store().await;
    assert_eq!(store.pending_timers().await.unwrap(), 0);
    assert_eq!(fired_counts(&last, &ids).await, each_once(&ids, STEPS), "and no step fires again later");
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

/// Declares `count` incidents, on `a` and `b` in turn: their ids, and when the last one started.
async fn declare_on_both(a: &Server, b: &Server, count: usize) -> (Vec<i64>, DateTime<Utc>) {
    let mut ids = Vec::new();
    let mut last_started = Utc::now();
    for n in 0..count {
        let replica = if n % 2 == 0 { a } else { b };
        let incident = replica.declare(&format!("Incident {n}")).await;
        ids.push(incident["id"].as_i64().expect("an id"));
        last_started = started_at(&incident);
    }
    (ids, last_started)
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

    let (ids, last_started) = declare_on_both(&a, &b, 6).await;
    let last_due = last_started + chrono::Duration::seconds(STEPS as i64 * 2);

    // Mid-escalation: the first steps have fired, the later ones are pending.
    sleep_until(last_due - chrono::Duration::milliseconds(5_000)).await;
    a.kill();
    sleep_until(last_due).await;
    let counts = wait_for_escalations(&b, &ids, ids.len() * STEPS as usize, Duration::from_secs(10)).await;
    assert_eq!(counts, each_once(&ids, STEPS), "every step of every incident fires exactly once:\n{}", dir.logs());
    // Nothing is left to fire on either replica, so no step can fire again later.
    let store = dir.open_store().await;
    assert_eq!(store.pending_timers().await.unwrap(), 0);
    assert_eq!(fired_counts(&b, &ids).await, each_once(&ids, STEPS), "and no step fires again later");
    assert_eq!(dir.escalation_rows().await, (ids.len() * STEPS as usize) as i64, "one page per fired step");
}

// ---------------------------------------------------------------------------------------------
// Reminders of checklist items (and follow-ups: the same rows) when firebell is killed

/// A checklist opened on every declare whose item is due after `after`, owned by alice.
fn checklist_config(after: &str) -> String {
    format!(
        "{}\n[[checklists]]\nname = \"first-steps\"\non = \"declared\"\n\
         items = [ {{ text = \"Page the database owner\", after = \"{after}\", owner = \"console:alice\" }} ]\n",
        policy(&["1h"])
    )
}

/// How many `kind` events incident `id` has, through `server`'s API.
async fn count_events(server: &Server, id: i64, kind: &str) -> usize {
    server.incident(id).await["timeline"].as_array().unwrap().iter().filter(|event| event["kind"] == kind).count()
}

/// Polls until every incident of `ids` has at least one `kind` event (or `limit` passes).
async fn wait_for_each(server: &Server, ids: &[i64], kind: &str, limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let mut all = true;
        for id in ids {
            all &= count_events(server, *id, kind).await > 0;
        }
        if all || std::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_checklist_item_that_came_due_while_firebell_was_down_reminds_its_owner_once() {
    let mut dir = ServeDir::new(None, &checklist_config("3s"));
    let mut first = dir.start("first").await;
    let incident = first.declare("Disk full on db-1").await;
    let id = incident["id"].as_i64().expect("an id");
    wait_for_each(&first, &[id], "checklist", Duration::from_secs(10)).await;
    first.kill();
    assert_eq!(
        dir.open_store().await.incident(id).await.unwrap().timeline.iter().filter(|e| e.kind == "reminded").count(),
        0,
        "reminded before the kill; this machine was too slow for the test:\n{}",
        dir.logs()
    );

    sleep_until(started_at(&incident) + chrono::Duration::milliseconds(3_500)).await;
    let mut second = dir.start("second").await;
    wait_for_each(&second, &[id], "reminded", Duration::from_secs(10)).await;
    assert_eq!(count_events(&second, id, "reminded").await, 1, "reminded once after the restart:\n{}", dir.logs());
    second.kill();

    // Nothing is left to remind, so a third start reminds nobody again.
    let store = dir.open_store().await;
    assert_eq!(store.next_task_due().await.unwrap(), None);
    let third = dir.start("third").await;
    assert_eq!(count_events(&third, id, "reminded").await, 1);
    assert_eq!(dir.outbox_rows("reminder").await, 1, "one reminder queued for chat");
}

#[tokio::test]
async fn two_replicas_on_postgresql_remind_each_due_item_once_when_one_is_killed() {
    let Some(database) = PgDatabase::create().await else {
        return;
    };
    let mut dir = ServeDir::new(Some(&database.url), &checklist_config("4s"));
    let mut a = dir.start("replica-a").await;
    let b = dir.start("replica-b").await;
    let (ids, last_started) = declare_on_both(&a, &b, 6).await;
    let last_due = last_started + chrono::Duration::seconds(4);
    wait_for_each(&b, &ids, "checklist", Duration::from_secs(10)).await;
    // Both replicas look for due items; one of them dies just before the last ones are due.
    sleep_until(last_due - chrono::Duration::milliseconds(1_000)).await;
    a.kill();
    sleep_until(last_due).await;
    wait_for_each(&b, &ids, "reminded", Duration::from_secs(10)).await;
    for id in &ids {
        assert_eq!(count_events(&b, *id, "reminded").await, 1, "incident {id}:\n{}", dir.logs());
        assert_eq!(count_events(&b, *id, "checklist").await, 1, "incident {id}: the checklist opened once");
    }
    let store = dir.open_store().await;
    assert_eq!(store.next_task_due().await.unwrap(), None);
    assert_eq!(dir.outbox_rows("reminder").await, ids.len() as i64, "one reminder per item");
}

// ---------------------------------------------------------------------------------------------
// A remediation running when firebell is killed

const ALICE: &str = "alice-token-0123456789abcdef";
const BOB: &str = "bob-token-0123456789abcdef";

/// A console session: the CSRF token and the cookies of one signed-in person.
struct Session {
    csrf: String,
    cookies: String,
}

fn cookie(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok()?.split(';').next()?.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.to_string())
        .unwrap_or_else(|| panic!("no {name} cookie"))
}

async fn sign_in(server: &Server, name: &str, token: &str) -> Session {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let base = format!("http://{}", server.address);
    let csrf = cookie(&client.get(format!("{base}/login")).send().await.unwrap(), "firebell_csrf");
    let signed = client
        .post(format!("{base}/login"))
        .header(reqwest::header::COOKIE, format!("firebell_csrf={csrf}"))
        .form(&[("name", name), ("token", token), ("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(signed.status(), 303, "{name} signs in:\n{}", server.log());
    let session = cookie(&signed, "firebell_session");
    Session { cookies: format!("firebell_csrf={csrf}; firebell_session={session}"), csrf }
}

async fn console_write(server: &Server, session: &Session, path: &str, body: Value) -> Value {
    let base = format!("http://{}", server.address);
    let response = server
        .client
        .post(format!("{base}{path}"))
        .header(reqwest::header::COOKIE, &session.cookies)
        .header("x-firebell-csrf", &session.csrf)
        .header("origin", &base)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{path}:\n{}", server.log());
    response.json().await.unwrap()
}

/// Polls `GET path` (with the API token) until `condition` holds, for up to 20 s.
async fn api_until(server: &Server, path: &str, condition: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let response = server
            .client
            .get(format!("http://{}{path}", server.address))
            .bearer_auth(app::TOKEN)
            .send()
            .await
            .expect("GET works");
        let value: Value = response.json().await.unwrap_or(Value::Null);
        if condition(&value) {
            return value;
        }
        assert!(std::time::Instant::now() < deadline, "{path} never got there: {value:#}\n{}", server.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_remediation_running_when_firebell_is_killed_is_interrupted_after_restart() {
    let rest = format!(
        "[console]\npeople = {{ alice = \"{ALICE}\", bob = \"{BOB}\" }}\n\n[groups]\noncall = [\"console:alice\", \"console:bob\"]\n\n\
         [permissions]\nremediate = [\"group:oncall\"]\n"
    );
    let mut dir = ServeDir::new(None, &rest);
    let started = dir.dir.path().join("started");
    let script = dir.dir.path().join("slow-fix");
    std::fs::write(&script, format!("#!/bin/sh\ntouch '{}'\nexec sleep 20\n", started.display())).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(
        dir.dir.path().join("commands/fix.toml"),
        format!(
            "name = \"fix\"\nsummary = \"The slow fix\"\n\n[[remediations]]\nname = \"slow-fix\"\nsummary = \"Takes a while\"\n\
             kind = \"exec\"\nargv = [\"{}\"]\ntimeout = \"60s\"\napprovers = [\"oncall\"]\n",
            script.display()
        ),
    )
    .unwrap();

    let mut first = dir.start("first").await;
    let alice = sign_in(&first, "alice", ALICE).await;
    let bob = sign_in(&first, "bob", BOB).await;
    console_write(&first, &alice, "/console/command", json!({"channel": "ops", "text": "/remediate slow-fix"})).await;
    let request = api_until(&first, "/api/remediations/1", |request| {
        request["state"] == "pending" && request["message"].is_string()
    })
    .await;
    let message = request["message"].as_str().expect("the request message").to_string();
    let approve = json!({"channel": "ops", "message": message, "action": "remediation_approve", "value": "1"});
    console_write(&first, &bob, "/console/button", approve).await;
    api_until(&first, "/api/remediations/1", |request| request["state"] == "running").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !started.exists() {
        assert!(std::time::Instant::now() < deadline, "the fix never started:\n{}", first.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill();

    // The new process cannot know what the dead one's run did: it says so, once.
    let second = dir.start("second").await;
    let request = api_until(&second, "/api/remediations/1", |request| request["state"] == "interrupted").await;
    assert_eq!(request["votes"].as_array().map(Vec::len), Some(1), "{request:#}");
    let audit = api_until(&second, "/api/audit", |entries| {
        entries
            .as_array()
            .is_some_and(|entries| entries.iter().any(|entry| entry["action"] == "remediation_interrupted"))
    })
    .await;
    let interrupted: Vec<&Value> =
        audit.as_array().unwrap().iter().filter(|entry| entry["action"] == "remediation_interrupted").collect();
    assert_eq!(interrupted.len(), 1, "{audit:#}");
    assert_eq!(interrupted[0]["detail"]["approved_by"], json!(["console:bob"]));
    let history = second
        .client
        .get(format!("http://{}/console/history?channel=ops", second.address))
        .header(reqwest::header::COOKIE, &sign_in(&second, "alice", ALICE).await.cookies)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(history.contains("(request #1) was interrupted: firebell stopped while it ran"), "{history}");
    assert!(history.contains("⚠️ Interrupted (approved by"), "the request message says so too: {history}");
}
