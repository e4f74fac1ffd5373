//! The JSON API of SPEC §7 against the real app, spawned in-process on port 0 with a SQLite
//! store in a temporary folder and a manual clock. Requests are what a script would send;
//! assertions are what it would read back. Every refused request is followed by reading all
//! incidents again to show that nothing changed.

mod app;
mod support;

use app::{TOKEN, TestApp, mins, secs, spawn_app, t0};
use firebell::clock::Clock;
use serde_json::{Value, json};

const TOKEN_LINE: &str = "api_token = \"s3cret-api-token\"";

/// A policy far enough out that the (manual) clock never reaches it: incidents that follow it
/// have a pending step, and nothing fires on its own while the test runs.
const POLICY: &str = r#"
[groups]
ops = ["slack:U2"]

[[policies]]
name = "slow"
steps = [ { after = "1h", notify = ["group:ops"] } ]
"#;

fn rfc3339(at: chrono::DateTime<chrono::Utc>) -> Value {
    serde_json::to_value(at).expect("a time serialises")
}

fn kinds(incident: &Value) -> Vec<&str> {
    incident["timeline"]
        .as_array()
        .expect("a timeline")
        .iter()
        .map(|event| event["kind"].as_str().expect("a kind"))
        .collect()
}

fn ids(list: &Value) -> Vec<i64> {
    list.as_array().expect("a list").iter().map(|incident| incident["id"].as_i64().expect("an id")).collect()
}

#[tokio::test]
async fn health_and_readiness_answer() {
    let app = spawn_app(TOKEN_LINE, "").await;
    let health = app.get("/healthz").await;
    assert_eq!((health.status, health.body.clone()), (200, json!("ok\n")));
    let ready = app.get("/readyz").await;
    assert_eq!((ready.status, ready.body.clone()), (200, json!({"status": "ready", "store": "sqlite"})));
    app.stop().await;
}

#[tokio::test]
async fn an_incident_is_declared_acknowledged_and_resolved_through_the_api() {
    let app = spawn_app(TOKEN_LINE, POLICY).await;

    let declared = app
        .post(
            "/api/incidents",
            json!({"title": "Worker queue backlog", "severity": "critical", "impact": "Signals are 20 minutes late"}),
        )
        .await;
    assert_eq!(declared.status, 201, "{declared:?}");
    assert_eq!(declared.location.as_deref(), Some("/api/incidents/1"));
    let incident = &declared.body;
    for key in [
        "id",
        "title",
        "severity",
        "status",
        "impact",
        "fingerprint",
        "started_at",
        "acknowledged_at",
        "resolved_at",
        "timeline",
    ] {
        assert!(incident.get(key).is_some(), "the incident has no \"{key}\": {incident}");
    }
    assert_eq!(incident["id"], json!(1));
    assert_eq!(incident["title"], json!("Worker queue backlog"));
    assert_eq!(incident["severity"], json!("critical"));
    assert_eq!(incident["status"], json!("triggered"));
    assert_eq!(incident["impact"], json!("Signals are 20 minutes late"));
    assert_eq!(incident["fingerprint"], Value::Null);
    assert_eq!(incident["started_at"], rfc3339(t0()));
    assert_eq!((&incident["acknowledged_at"], &incident["resolved_at"]), (&Value::Null, &Value::Null));
    assert_eq!(kinds(incident), ["declared"]);
    let event = &incident["timeline"][0];
    for key in ["at", "kind", "by", "detail"] {
        assert!(event.get(key).is_some(), "the timeline event has no \"{key}\": {event}");
    }
    assert_eq!(event["at"], rfc3339(t0()));
    assert_eq!(event["by"], json!("api"), "declared through the API without \"by\"");

    // The Location header leads to the same incident. Its announcement in the console is posted
    // after the 201, so `chat` may have gained the console's message in between.
    let shown = app.get("/api/incidents/1").await;
    let without_chat = |incident: &Value| {
        let mut incident = incident.clone();
        incident.as_object_mut().unwrap().remove("chat");
        incident
    };
    assert_eq!((shown.status, without_chat(&shown.body)), (200, without_chat(incident)));

    // A second incident, following the slow policy and declared by someone.
    app.clock.advance(secs(30));
    let second =
        app.post("/api/incidents", json!({"title": "Stale signals", "policy": "slow", "by": "console:alice"})).await;
    assert_eq!(second.status, 201, "{second:?}");
    assert_eq!(second.body["severity"], json!("high"), "the default severity");
    assert_eq!(second.body["timeline"][0]["by"], json!("console:alice"));
    assert_eq!(app.escalator.store().pending_timers().await.unwrap(), 1);
    assert_eq!(ids(&app.get("/api/incidents").await.body), [2, 1], "newest first");

    app.clock.set(t0() + mins(4));
    let acked = app.post("/api/incidents/1/ack", json!({"by": "slack:U1"})).await;
    assert_eq!(acked.status, 200, "{acked:?}");
    assert_eq!(acked.body["status"], json!("acknowledged"));
    assert_eq!(acked.body["acknowledged_at"], rfc3339(t0() + mins(4)));
    assert_eq!(kinds(&acked.body), ["declared", "acknowledged"]);
    assert_eq!(acked.body["timeline"][1]["by"], json!("slack:U1"));

    app.clock.set(t0() + mins(42));
    let resolved = app
        .post(
            "/api/incidents/1/resolve",
            json!({"by": "slack:U1", "root_cause": "Worker pool exhausted", "fix": "Scaled workers to 8", "prevention": "Autoscale on queue depth"}),
        )
        .await;
    assert_eq!(resolved.status, 200, "{resolved:?}");
    assert_eq!(resolved.body["status"], json!("resolved"));
    assert_eq!(resolved.body["resolved_at"], rfc3339(t0() + mins(42)));
    assert_eq!(resolved.body["acknowledged_at"], rfc3339(t0() + mins(4)), "the ack time is kept");
    assert_eq!(kinds(&resolved.body), ["declared", "acknowledged", "resolved"]);
    let detail = &resolved.body["timeline"][2]["detail"];
    assert_eq!(detail["root_cause"], json!("Worker pool exhausted"));
    assert_eq!(detail["fix"], json!("Scaled workers to 8"));
    assert_eq!(detail["prevention"], json!("Autoscale on queue depth"));

    // Resolving straight from triggered cancels the pending step.
    let resolved = app.post("/api/incidents/2/resolve", json!({"by": "console:alice"})).await;
    assert_eq!(resolved.status, 200, "{resolved:?}");
    assert_eq!(resolved.body["timeline"][1]["detail"]["cancelled_steps"], json!(1));
    assert_eq!(app.escalator.store().pending_timers().await.unwrap(), 0);

    let third = app.post("/api/incidents", json!({"title": "Still open"})).await;
    assert_eq!(third.status, 201);
    let open = app.get("/api/incidents").await;
    assert_eq!((open.status, ids(&open.body)), (200, vec![3]), "open incidents only by default");
    assert_eq!(ids(&app.get("/api/incidents?all=true").await.body), [3, 2, 1]);
    assert_eq!(ids(&app.get("/api/incidents?all=true&limit=2").await.body), [3, 2]);

    // What was resolved reads back the same as the resolve answered, times included.
    let shown = app.get("/api/incidents/1").await.body;
    assert_eq!(shown["root_cause"], json!("Worker pool exhausted"));
    let at = |field: &str| chrono::DateTime::parse_from_rfc3339(shown[field].as_str().unwrap()).unwrap();
    assert_eq!(at("acknowledged_at") - at("started_at"), mins(4), "time to acknowledge");
    assert_eq!(at("resolved_at") - at("started_at"), mins(42), "time to resolve");

    // The post-mortem draft, in Markdown, from the same record.
    let postmortem = app.client.get(app.url("/api/incidents/1/postmortem")).bearer_auth(TOKEN);
    let postmortem = postmortem.send().await.expect("the app answers");
    assert_eq!(postmortem.status(), 200);
    let content_type = postmortem.headers()["content-type"].to_str().unwrap().to_string();
    assert_eq!(content_type, "text/markdown; charset=utf-8");
    let text = postmortem.text().await.unwrap();
    for fact in [
        "# Post-mortem: incident #1 — Worker queue backlog",
        "| Severity | CRITICAL |",
        "| Impact | Signals are 20 minutes late |",
        "| Time to acknowledge (TTA) | 4m 0s |",
        "| Time to resolve (TTR) | 42m 0s |",
        "## Root cause\n\nWorker pool exhausted",
        "## Fix\n\nScaled workers to 8",
        "## Prevention\n\nAutoscale on queue depth",
        "- 08:54:00 — acknowledged; escalation stopped (slack:U1)",
    ] {
        assert!(text.contains(fact), "the post-mortem lacks '{fact}':\n{text}");
    }
    assert_eq!(app.get("/api/incidents/99/postmortem").await.status, 404);
    app.stop().await;
}

/// Three incidents in three states, for the refusals to try to change.
async fn app_with_three_incidents() -> TestApp {
    let app = spawn_app(TOKEN_LINE, POLICY).await;
    for title in ["Resolved one", "Acknowledged one", "Triggered one"] {
        let reply = app.post("/api/incidents", json!({"title": title, "policy": "slow"})).await;
        assert_eq!(reply.status, 201, "{reply:?}");
    }
    app.clock.advance(mins(1));
    assert_eq!(
        app.post("/api/incidents/1/resolve", json!({"by": "slack:U1", "root_cause": "first"})).await.status,
        200
    );
    assert_eq!(app.post("/api/incidents/2/ack", json!({"by": "slack:U1"})).await.status, 200);
    app.clock.advance(mins(1));
    app
}

/// Sends one bad request and checks the status, that the reason contains `reason`, and that
/// no incident changed.
async fn refused(app: &TestApp, before: &Value, status: u16, reason: &str, reply: app::Reply) {
    assert_eq!(reply.status, status, "expected {status} ({reason}), got {reply:?}");
    let error = reply.error();
    assert!(error.contains(reason), "the reason should mention '{reason}': {error}");
    assert_eq!(&app.everything().await, before, "a refused request changed something ({reason})");
    assert_eq!(app.escalator.store().pending_timers().await.unwrap(), 1, "the triggered incident keeps its step");
}

#[tokio::test]
async fn bad_input_gets_a_clear_4xx_with_the_reason_and_changes_nothing() {
    let app = app_with_three_incidents().await;
    let before = app.everything().await;
    assert_eq!(ids(&before), [3, 2, 1]);
    let bearer = format!("Bearer {TOKEN}");
    let auth = Some(bearer.as_str());
    let json_type = Some("application/json");
    let raw = |text: &str| text.as_bytes().to_vec();

    // Malformed JSON, on each write.
    for path in ["/api/incidents", "/api/incidents/3/ack", "/api/incidents/3/resolve"] {
        let reply = app.post_raw(path, auth, json_type, raw(r#"{"title": "Queue backlog", "by": "slack:U1""#)).await;
        refused(&app, &before, 400, "invalid JSON body", reply).await;
    }
    let reply = app.post_raw("/api/incidents", auth, json_type, raw("[1, 2]")).await;
    refused(&app, &before, 400, "invalid JSON body", reply).await;

    // Not JSON at all, or not said to be.
    let reply = app.post_raw("/api/incidents", auth, Some("text/plain"), raw(r#"{"title": "Queue backlog"}"#)).await;
    refused(&app, &before, 415, "Content-Type: application/json", reply).await;
    let reply = app.post_raw("/api/incidents/3/ack", auth, None, raw(r#"{"by": "slack:U1"}"#)).await;
    refused(&app, &before, 415, "Content-Type: application/json", reply).await;

    // Tokens: missing, wrong, or not a bearer token.
    let (title, by) = (r#"{"title": "Queue backlog"}"#, r#"{"by": "slack:U1"}"#);
    let basic = format!("Basic {TOKEN}");
    let (missing, wrong) = ("missing Authorization: Bearer", "wrong bearer token");
    let tokens: [(&str, Option<&str>, &str, &str); 6] = [
        ("/api/incidents", None, title, missing),
        ("/api/incidents", Some("Bearer nope"), title, wrong),
        ("/api/incidents/3/ack", None, by, missing),
        ("/api/incidents/3/ack", Some("Bearer s3cret"), by, wrong),
        ("/api/incidents/3/resolve", Some("Bearer x"), by, wrong),
        ("/api/incidents/3/resolve", Some(&basic), by, missing),
    ];
    for (path, token, body, reason) in tokens {
        refused(&app, &before, 401, reason, app.post_raw(path, token, json_type, raw(body)).await).await;
    }

    // Unknown incidents and ids that are not ids.
    refused(&app, &before, 404, "there is no incident 999", app.get("/api/incidents/999").await).await;
    for path in ["/api/incidents/999/ack", "/api/incidents/999/resolve"] {
        refused(&app, &before, 404, "there is no incident 999", app.post(path, json!({"by": "slack:U1"})).await).await;
    }
    for id in ["abc", "0", "-1", "1.5"] {
        refused(&app, &before, 400, "is not an incident id", app.get(&format!("/api/incidents/{id}")).await).await;
        refused(
            &app,
            &before,
            400,
            "is not an incident id",
            app.post(&format!("/api/incidents/{id}/ack"), json!({"by": "slack:U1"})).await,
        )
        .await;
    }

    // Changes the state machine does not allow.
    refused(
        &app,
        &before,
        409,
        "incident 1 is resolved by slack:U1",
        app.post("/api/incidents/1/ack", json!({"by": "slack:U2"})).await,
    )
    .await;
    refused(
        &app,
        &before,
        409,
        "incident 1 is resolved by slack:U1",
        app.post("/api/incidents/1/resolve", json!({"by": "slack:U2"})).await,
    )
    .await;
    refused(
        &app,
        &before,
        409,
        "incident 2 was already acknowledged by slack:U1",
        app.post("/api/incidents/2/ack", json!({"by": "slack:U2"})).await,
    )
    .await;

    // Fields: unknown, invalid, missing.
    let reply = app.post("/api/incidents", json!({"title": "Queue backlog", "sevrity": "low"})).await;
    refused(&app, &before, 400, "unknown field `sevrity`", reply).await;
    refused(
        &app,
        &before,
        400,
        "unknown field `who`",
        app.post("/api/incidents/3/ack", json!({"who": "slack:U1"})).await,
    )
    .await;
    let reply = app.post("/api/incidents/3/resolve", json!({"by": "slack:U1", "cause": "x"})).await;
    refused(&app, &before, 400, "unknown field `cause`", reply).await;
    let reply = app.post("/api/incidents", json!({"title": "Queue backlog", "severity": "urgent"})).await;
    refused(&app, &before, 400, "\"severity\" must be one of critical, high, medium, low (got \"urgent\")", reply)
        .await;
    refused(&app, &before, 400, "\"title\" is required", app.post("/api/incidents", json!({"severity": "low"})).await)
        .await;
    refused(&app, &before, 400, "\"title\" is required", app.post("/api/incidents", json!({"title": "   "})).await)
        .await;
    refused(
        &app,
        &before,
        400,
        "\"title\" is longer than 200 characters",
        app.post("/api/incidents", json!({"title": "x".repeat(201)})).await,
    )
    .await;
    refused(&app, &before, 400, "\"by\" is required", app.post("/api/incidents/3/ack", json!({})).await).await;
    refused(
        &app,
        &before,
        400,
        "\"by\" is required",
        app.post("/api/incidents/3/resolve", json!({"root_cause": "x"})).await,
    )
    .await;
    let reply = app.post("/api/incidents", json!({"title": "Queue backlog", "policy": "fast"})).await;
    refused(&app, &before, 400, "unknown policy 'fast'; policies: slow", reply).await;
    refused(&app, &before, 400, "?all=true&limit=N", app.get("/api/incidents?all=maybe").await).await;

    // A body over 64 KiB.
    let huge = json!({"title": "Queue backlog", "impact": "x".repeat(70 * 1024)});
    refused(&app, &before, 413, "64 KiB", app.post("/api/incidents", huge).await).await;

    // And the same requests done right do change things.
    assert_eq!(app.post("/api/incidents/3/ack", json!({"by": "slack:U1"})).await.status, 200);
    assert_ne!(app.everything().await, before);
    app.stop().await;
}

#[tokio::test]
async fn without_an_api_token_writes_are_forbidden_and_reads_still_work() {
    let app = spawn_app("", POLICY).await;
    let before = app.everything().await;
    assert_eq!(before, json!([]));
    let body = br#"{"title": "Queue backlog"}"#.to_vec();
    let bearer = format!("Bearer {TOKEN}");
    for authorization in [None, Some(bearer.as_str())] {
        let reply = app.post_raw("/api/incidents", authorization, Some("application/json"), body.clone()).await;
        assert_eq!(reply.status, 403, "{reply:?}");
        assert!(reply.error().contains("set server.api_token"), "{reply:?}");
        let reply = app
            .post_raw(
                "/api/incidents/1/ack",
                authorization,
                Some("application/json"),
                br#"{"by": "slack:U1"}"#.to_vec(),
            )
            .await;
        assert_eq!(reply.status, 403, "{reply:?}");
    }
    assert_eq!(app.everything().await, before);
    assert_eq!(app.get("/api/incidents").await.status, 200);
    app.stop().await;
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_text_and_count_what_happened() {
    let policy = r#"
[groups]
ops = ["slack:U2"]

[[policies]]
name = "default"
steps = [ { after = "0s", notify = ["group:ops"] } ]
"#;
    let app = spawn_app(TOKEN_LINE, policy).await;
    let declared = app.post("/api/incidents", json!({"title": "Metrics incident"})).await;
    assert_eq!(declared.status, 201, "{declared:?}");
    let alert = app
        .post("/alerts/generic", json!({"title": "Disk full", "status": "firing", "dedup_key": "metrics-disk"}))
        .await;
    assert_eq!(alert.status, 200, "{alert:?}");

    // The step due at once fires on the engine's loop; wait for it to be counted (a bound for
    // the test, not a speed check).
    let mut text = String::new();
    for _ in 0..100 {
        let reply = app.get("/metrics").await;
        assert_eq!(reply.status, 200);
        assert!(reply.content_type.starts_with("text/plain"), "{reply:?}");
        text = reply.body.as_str().unwrap_or_default().to_string();
        if text.contains("firebell_escalation_steps_total{outcome=\"fired\"}") {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for expected in [
        "firebell_escalation_steps_total{outcome=\"fired\"}",
        "firebell_timer_lateness_seconds_bucket",
        "firebell_alerts_total{source=\"generic\",outcome=\"opened\"}",
        "# TYPE firebell_timers_pending gauge",
    ] {
        assert!(text.contains(expected), "no {expected} in:\n{text}");
    }
    app.stop().await;
}

#[tokio::test]
async fn followups_are_listed_open_first_and_all_on_request() {
    let app = app_with_three_incidents().await;
    let store = app.escalator.store();
    let followup = |text: &str| firebell::incident::tasks::NewTask {
        text: text.to_string(),
        owner: Some("group:ops".to_string()),
        due_at: Some(t0() + mins(60)),
        created_by: Some("slack:U1".to_string()),
    };
    let first = store.add_followup(1, followup("Alert on queue depth"), app.clock.now()).await.unwrap();
    store.add_followup(2, followup("Write the runbook"), app.clock.now()).await.unwrap();
    store.complete_task(first.id, "slack:U2", app.clock.now()).await.unwrap();

    let open = app.get("/api/followups").await;
    assert_eq!(open.status, 200);
    let texts = |list: &Value| -> Vec<String> {
        list.as_array().unwrap().iter().map(|task| task["text"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(texts(&open.body), ["Write the runbook"]);
    let task = &open.body[0];
    assert_eq!(
        (&task["incident_id"], &task["owner"], &task["done_at"]),
        (&json!(2), &json!("group:ops"), &Value::Null)
    );
    assert_eq!(task["due_at"], rfc3339(t0() + mins(60)));

    let all = app.get("/api/followups?all=true").await;
    assert_eq!(texts(&all.body), ["Write the runbook", "Alert on queue depth"], "newest first");
    assert_eq!(all.body[1]["done_by"], json!("slack:U2"));
    // The incident shows its own.
    assert_eq!(app.get("/api/incidents/1").await.body["followups"][0]["text"], json!("Alert on queue depth"));

    let bad = app.get("/api/followups?all=maybe").await;
    assert_eq!(bad.status, 400);
    assert!(bad.error().contains("valid: ?all=true&limit=N"), "{bad:?}");
}
