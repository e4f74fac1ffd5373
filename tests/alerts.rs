//! Alerts in (SPEC §6): webhooks from a real Alertmanager, Grafana's and the generic shape open,
//! repeat, resolve and reopen incidents; routes pick severity, policy and a runbook that runs at
//! once; bad requests are refused with a reason and store nothing; an answered alert survives
//! `kill -9`.
//!
//! The app runs in-process on port 0 with a SQLite file and a manual clock (the flap window is
//! crossed by moving that clock), except for the crash test, which runs the real binary.
//! Waiting for deliveries that happen on their own (Alertmanager's notifications, the route's
//! runbook, an escalation step) is bounded polling: the bounds are test timeouts, not
//! performance claims.

mod app;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use app::{Reply, ServeDir, TOKEN, TestApp, free_port, spawn_app, toml_str};
use chrono::Utc;
use serde_json::{Value, json};
use sqlx::Connection;

const TOKEN_LINE: &str = "api_token = \"s3cret-api-token\"";
const ALERTMANAGER: &str = "/usr/bin/prometheus-alertmanager";
/// How long a delivery that happens on its own may take before the test gives up.
const PATIENCE: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Helpers

/// Polls `probe` until it returns something; fails with `context()` after `limit`.
async fn eventually<T>(limit: Duration, context: impl Fn() -> String, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "not within {limit:?}: {}", context());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn list(value: &Value) -> &Vec<Value> {
    value.as_array().unwrap_or_else(|| panic!("a list, got {value}"))
}

fn kinds(incident: &Value) -> Vec<&str> {
    list(&incident["timeline"]).iter().map(|event| event["kind"].as_str().expect("a kind")).collect()
}

fn events<'a>(incident: &'a Value, kind: &str) -> Vec<&'a Value> {
    list(&incident["timeline"]).iter().filter(|event| event["kind"] == kind).collect()
}

/// The labels the incident was opened with, from its first `alert` event.
fn labels(incident: &Value) -> Value {
    let opened = events(incident, "alert");
    opened.first().unwrap_or_else(|| panic!("no alert event on {incident}"))["detail"]["labels"].clone()
}

async fn incident(app: &TestApp, id: i64) -> Value {
    let reply = app.get(&format!("/api/incidents/{id}")).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    reply.body
}

/// Rows in the `alerts` table, read from the SQLite file itself.
async fn stored_alerts(database: &Path) -> i64 {
    let url = format!("sqlite://{}?mode=ro", database.display());
    let mut connection = sqlx::SqliteConnection::connect(&url).await.expect("the SQLite file opens");
    let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM alerts").fetch_one(&mut connection).await.expect("count");
    connection.close().await.expect("the connection closes");
    count
}

/// Posts `body` as JSON with the right token and expects a 2xx; returns the answer.
async fn deliver(app: &TestApp, path: &str, body: &Value) -> Value {
    let reply = app.post(path, body.clone()).await;
    assert_eq!(reply.status, 200, "{path} refused {body}: {reply:?}");
    assert_eq!(reply.body["status"], "accepted", "{reply:?}");
    reply.body
}

/// `(outcome, incident)` of an accepted alert.
fn outcome(accepted: &Value) -> (&str, Option<i64>) {
    (accepted["outcome"].as_str().expect("an outcome"), accepted["incident"].as_i64())
}

/// The generic shape documented in `src/ingest/payloads.rs`.
fn generic(dedup_key: &str, status: &str, severity: Option<&str>, labels: Value) -> Value {
    let mut body = json!({
        "title": format!("Disk almost full on {dedup_key}"),
        "status": status,
        "dedup_key": dedup_key,
        "description": "/var is 91% full",
        "labels": labels,
    });
    if let Some(severity) = severity {
        body["severity"] = json!(severity);
    }
    body
}

/// Grafana alerting's documented webhook example (contact point "webhook", unified alerting).
const GRAFANA_FIRING: &str = r#"{
  "receiver": "My Super Webhook",
  "status": "firing",
  "orgId": 1,
  "alerts": [
    {
      "status": "firing",
      "labels": { "alertname": "High memory usage", "team": "blue", "zone": "us-1" },
      "annotations": {
        "description": "The system has high memory usage",
        "runbook_url": "https://myrunbook.com/runbook/1234",
        "summary": "This alert was triggered for zone us-1"
      },
      "startsAt": "2021-10-12T09:51:03.157076+02:00",
      "endsAt": "0001-01-01T00:00:00Z",
      "generatorURL": "https://play.grafana.org/alerting/1afz29v7z/edit",
      "fingerprint": "c6eadffa33fcdf37",
      "silenceURL": "https://play.grafana.org/alerting/silence/new?alertmanager=grafana&matchers=alertname%3DT2%2Cteam%3Dblue%2Czone%3Dus-1",
      "dashboardURL": "",
      "panelURL": "",
      "values": { "B": 44.23943737541908, "C": 1 }
    },
    {
      "status": "firing",
      "labels": { "alertname": "High CPU usage", "team": "blue", "zone": "eu-1" },
      "annotations": {
        "description": "The system has high CPU usage",
        "runbook_url": "https://myrunbook.com/runbook/1234",
        "summary": "This alert was triggered for zone eu-1"
      },
      "startsAt": "2021-10-12T09:56:03.157076+02:00",
      "endsAt": "0001-01-01T00:00:00Z",
      "generatorURL": "https://play.grafana.org/alerting/d1rdpdv7k/edit",
      "fingerprint": "bc97ff14869b13e3",
      "silenceURL": "https://play.grafana.org/alerting/silence/new?alertmanager=grafana&matchers=alertname%3DT1%2Cteam%3Dblue%2Czone%3Deu-1",
      "dashboardURL": "",
      "panelURL": "",
      "values": { "B": 44.23943737541908, "C": 1 }
    }
  ],
  "groupLabels": {},
  "commonLabels": { "team": "blue" },
  "commonAnnotations": {},
  "externalURL": "https://play.grafana.org/",
  "version": "1",
  "groupKey": "{}:{}",
  "truncatedAlerts": 0,
  "title": "[FIRING:2]  (blue)",
  "state": "alerting",
  "message": "**Firing**\n\nLabels:\n - alertname = T2\n - team = blue\n - zone = us-1\nAnnotations:\n - description = This is the alert rule checking the second system\n - runbook_url = https://myrunbook.com\n - summary = This is my summary\nSource: https://play.grafana.org/alerting/1afz29v7z/edit\nSilence: https://play.grafana.org/alerting/silence/new?alertmanager=grafana&matchers=alertname%3DT2%2Cteam%3Dblue%2Czone%3Dus-1\n\nLabels:\n - alertname = T1\n - team = blue\n - zone = eu-1\nAnnotations:\nSource: https://play.grafana.org/alerting/d1rdpdv7k/edit\nSilence: https://play.grafana.org/alerting/silence/new?alertmanager=grafana&matchers=alertname%3DT1%2Cteam%3Dblue%2Czone%3Deu-1\n"
}"#;

fn grafana_firing() -> Value {
    serde_json::from_str(GRAFANA_FIRING).expect("the Grafana example parses")
}

/// The same group once Grafana sees both alerts recover: what its webhook sends then.
fn grafana_resolved() -> Value {
    let mut body = grafana_firing();
    body["status"] = json!("resolved");
    body["state"] = json!("ok");
    body["title"] = json!("[RESOLVED]  (blue)");
    for alert in body["alerts"].as_array_mut().expect("alerts") {
        alert["status"] = json!("resolved");
        alert["endsAt"] = json!("2021-10-12T10:21:03.157076+02:00");
    }
    body
}

// ---------------------------------------------------------------------------------------------
// A real Alertmanager

/// `prometheus-alertmanager` on a loopback port, clustering off, state in a temporary folder;
/// killed when dropped.
struct Alertmanager {
    child: Option<Child>,
    address: String,
    dir: tempfile::TempDir,
    client: reqwest::Client,
}

impl Alertmanager {
    /// The binary, or `None` (the test skips) when it is not installed, unless
    /// `FIREBELL_TEST_REQUIRE_SERVICES=1`, where its absence fails the test.
    fn binary() -> Option<PathBuf> {
        let path = PathBuf::from(ALERTMANAGER);
        if path.is_file() {
            return Some(path);
        }
        if std::env::var("FIREBELL_TEST_REQUIRE_SERVICES").is_ok_and(|value| value == "1") {
            panic!(
                "{ALERTMANAGER} is not installed (FIREBELL_TEST_REQUIRE_SERVICES=1, so this is a failure): \
                 apt-get install prometheus-alertmanager"
            );
        }
        eprintln!("skipped: {ALERTMANAGER} is not installed (apt-get install prometheus-alertmanager)");
        None
    }

    /// Starts Alertmanager with one webhook receiver: the bot's `/alerts/alertmanager`, with the
    /// bot's API token, resolved notifications on, and one-second grouping.
    async fn start(binary: &Path, bot: std::net::SocketAddr) -> Alertmanager {
        let dir = tempfile::tempdir().expect("a temporary folder");
        let config = format!(
            r#"global:
  resolve_timeout: 10s
route:
  receiver: firebell
  group_by: ['alertname']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: firebell
    webhook_configs:
      - url: 'http://{bot}/alerts/alertmanager'
        send_resolved: true
        http_config:
          authorization:
            type: Bearer
            credentials: '{TOKEN}'
"#
        );
        std::fs::write(dir.path().join("am.yml"), config).expect("the Alertmanager config is written");
        let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("an HTTP client");
        // The port was free when picked; should something else take it first, pick another.
        for attempt in 1..=3 {
            let address = format!("127.0.0.1:{}", free_port());
            let log_path = dir.path().join(format!("alertmanager-{attempt}.log"));
            let log = std::fs::File::create(&log_path).expect("a log file");
            let mut child = Command::new(binary)
                .arg(format!("--web.listen-address={address}"))
                .arg("--cluster.listen-address=")
                .arg(format!("--storage.path={}", dir.path().join("data").display()))
                .arg(format!("--config.file={}", dir.path().join("am.yml").display()))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("Alertmanager starts");
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
                    assert!(
                        log.contains("address already in use") && attempt < 3,
                        "Alertmanager exited ({status}) before it was ready:\n{log}"
                    );
                    break;
                }
                if let Ok(response) = client.get(format!("http://{address}/-/ready")).send().await
                    && response.status() == 200
                {
                    return Alertmanager { child: Some(child), address, dir, client };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "Alertmanager was not ready within 15 s:\n{}",
                        std::fs::read_to_string(&log_path).unwrap_or_default()
                    );
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        unreachable!("the loop returns or panics")
    }

    fn log(&self) -> String {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(self.dir.path())
            .map(|entries| entries.filter_map(Result::ok).map(|entry| entry.path()).collect())
            .unwrap_or_default();
        paths.retain(|path| path.extension().is_some_and(|ext| ext == "log"));
        paths.sort();
        paths.iter().map(|path| std::fs::read_to_string(path).unwrap_or_default()).collect::<Vec<_>>().join("\n")
    }

    /// `POST /api/v2/alerts`, as Prometheus does.
    async fn post_alerts(&self, alerts: Value) {
        let response = self
            .client
            .post(format!("http://{}/api/v2/alerts", self.address))
            .json(&alerts)
            .send()
            .await
            .expect("Alertmanager answers");
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(status, 200, "Alertmanager refused {alerts}: {text}\n{}", self.log());
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One alert as Prometheus posts it to Alertmanager; it ends at `ends_in` from now (negative:
/// it has ended).
fn prometheus_alert(instance: &str, ends_in: chrono::Duration) -> Value {
    let now = Utc::now();
    json!({
        "labels": {"alertname": "QueueBacklog", "severity": "critical", "queue": "ingest", "instance": instance},
        "annotations": {"summary": "Queue ingest is backing up", "description": "depth 812 > 500"},
        "startsAt": (now - chrono::Duration::minutes(5)).to_rfc3339(),
        "endsAt": (now + ends_in).to_rfc3339(),
        "generatorURL": "http://prometheus.example/graph?g0.expr=queue_depth+%3E+500",
    })
}

#[tokio::test]
async fn an_alert_through_a_real_alertmanager_opens_one_incident_and_its_end_resolves_it() {
    let Some(binary) = Alertmanager::binary() else { return };
    let app = spawn_app(TOKEN_LINE, "").await;
    let alertmanager = Alertmanager::start(&binary, app.address).await;
    let context = || format!("Alertmanager log:\n{}", alertmanager.log());

    alertmanager.post_alerts(json!([prometheus_alert("w1", chrono::Duration::hours(1))])).await;
    let opened = eventually(PATIENCE, context, async || {
        let open = app.get("/api/incidents").await.body;
        (!list(&open).is_empty()).then_some(open)
    })
    .await;
    assert_eq!(list(&opened).len(), 1, "one alert, one incident: {opened}");
    let first = &opened[0];
    let id = first["id"].as_i64().expect("an id");
    assert_eq!(first["fingerprint"], "alertmanager:{}:{alertname=\"QueueBacklog\"}");
    assert_eq!(first["title"], "Queue ingest is backing up");
    assert_eq!(first["impact"], "depth 812 > 500");
    assert_eq!(first["severity"], "critical", "the default route reads the severity label");
    assert_eq!((first["status"].as_str(), first["declared_by"].as_str()), (Some("triggered"), Some("alertmanager")));
    assert_eq!(
        labels(first),
        json!({"alertname": "QueueBacklog", "severity": "critical", "queue": "ingest", "instance": "w1"})
    );

    // The same alert again changes nothing Alertmanager notifies about; a second instance of it
    // joins the group, and Alertmanager sends the group again: a repeat, not a new incident.
    alertmanager.post_alerts(json!([prometheus_alert("w1", chrono::Duration::hours(1))])).await;
    alertmanager.post_alerts(json!([prometheus_alert("w2", chrono::Duration::hours(1))])).await;
    let repeated = eventually(PATIENCE, context, async || {
        let incident = incident(&app, id).await;
        (incident["alert_repeats"].as_i64() >= Some(1)).then_some(incident)
    })
    .await;
    assert_eq!(repeated["status"], "triggered");
    assert_eq!(list(&app.everything().await).len(), 1, "the repeat opened nothing new");

    // Both instances end: Alertmanager's resolved notification resolves the incident.
    alertmanager
        .post_alerts(json!([
            prometheus_alert("w1", chrono::Duration::seconds(-1)),
            prometheus_alert("w2", chrono::Duration::seconds(-1)),
        ]))
        .await;
    let resolved = eventually(PATIENCE, context, async || {
        let incident = incident(&app, id).await;
        (incident["status"] == "resolved").then_some(incident)
    })
    .await;
    assert_eq!(resolved["resolved_by"], "alertmanager");
    // The repeats are counted on the incident, not written on its timeline.
    assert_eq!(kinds(&resolved), ["declared", "alert", "resolved"]);
    assert!(resolved["alert_repeats"].as_i64() >= Some(1), "{resolved:#}");
    assert_eq!(events(&resolved, "resolved")[0]["detail"]["note"], "the alert resolved");
    let everything = app.everything().await;
    assert_eq!(list(&everything).len(), 1, "{everything}");
    assert!(stored_alerts(&app.workspace().path().join("firebell.db")).await >= 3, "every notification is stored");
    drop(alertmanager);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Grafana and generic webhooks

#[tokio::test]
async fn grafanas_documented_webhook_opens_repeats_resolves_and_reopens_within_the_flap_window() {
    let app = spawn_app(TOKEN_LINE, "").await;

    let accepted = deliver(&app, "/alerts/grafana", &grafana_firing()).await;
    let (what, id) = outcome(&accepted);
    assert_eq!(what, "opened", "{accepted}");
    assert_eq!(accepted["alerts"], 2);
    let id = id.expect("an incident");
    let opened = incident(&app, id).await;
    assert_eq!(opened["title"], "[FIRING:2]  (blue)");
    assert_eq!(opened["fingerprint"], "grafana:{}:{}");
    assert_eq!(opened["severity"], "high", "no severity label and no route: the default");
    assert_eq!(opened["impact"], "The system has high memory usage");
    assert_eq!(opened["declared_by"], "grafana");
    assert_eq!(labels(&opened), json!({"alertname": "High memory usage", "team": "blue", "zone": "us-1"}));

    // Grafana sends the group again while it keeps firing.
    let again = deliver(&app, "/alerts/grafana", &grafana_firing()).await;
    assert_eq!(outcome(&again), ("repeated", Some(id)));
    assert_eq!(list(&app.everything().await).len(), 1);

    let resolved = deliver(&app, "/alerts/grafana", &grafana_resolved()).await;
    assert_eq!(outcome(&resolved), ("resolved", Some(id)));
    let after = incident(&app, id).await;
    assert_eq!((after["status"].as_str(), after["resolved_by"].as_str()), (Some("resolved"), Some("grafana")));

    // It fires again five minutes later: the same incident opens again.
    app.clock.advance(chrono::Duration::minutes(5));
    let flapped = deliver(&app, "/alerts/grafana", &grafana_firing()).await;
    assert_eq!(outcome(&flapped), ("reopened", Some(id)));
    let reopened = incident(&app, id).await;
    assert_eq!(reopened["status"], "triggered");
    assert_eq!(reopened["resolved_at"], Value::Null);
    assert_eq!(kinds(&reopened), ["declared", "alert", "resolved", "reopened"], "the repeat is counted instead");
    assert_eq!(reopened["alert_repeats"], 1);
    assert_eq!(list(&app.everything().await).len(), 1, "flapping reopened, it did not spawn a new incident");

    // Resolved, and firing again only after the flap window: that is a new incident.
    deliver(&app, "/alerts/grafana", &grafana_resolved()).await;
    app.clock.advance(chrono::Duration::minutes(11));
    let later = deliver(&app, "/alerts/grafana", &grafana_firing()).await;
    let (what, new_id) = outcome(&later);
    assert_eq!(what, "opened", "{later}");
    assert_ne!(new_id, Some(id));
    assert_eq!(list(&app.everything().await).len(), 2);
    app.stop().await;
}

#[tokio::test]
async fn reopen_within_sets_the_flap_window_and_a_bad_one_is_refused_with_its_line() {
    let app = spawn_app(TOKEN_LINE, "[alerts]\nreopen_within = \"2m\"\n").await;
    let first = deliver(&app, "/alerts/grafana", &grafana_firing()).await;
    let (_, id) = outcome(&first);
    deliver(&app, "/alerts/grafana", &grafana_resolved()).await;
    app.clock.advance(chrono::Duration::minutes(2));
    assert_eq!(outcome(&deliver(&app, "/alerts/grafana", &grafana_firing()).await), ("reopened", id));
    let reopened = incident(&app, id.expect("an incident")).await;
    assert_eq!(events(&reopened, "reopened")[0]["detail"]["flap_window_s"], 120);
    deliver(&app, "/alerts/grafana", &grafana_resolved()).await;
    app.clock.advance(chrono::Duration::minutes(3));
    let later = deliver(&app, "/alerts/grafana", &grafana_firing()).await;
    let (what, new_id) = outcome(&later);
    assert_eq!(what, "opened", "three minutes is past a two-minute window");
    assert_ne!(new_id, id);
    app.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let source =
        firebell::source::SourceFile::new(dir.path().join("firebell.toml"), "[alerts]\nreopen_within = \"soon\"\n");
    let errors = firebell::config::Config::parse(&source).expect_err("a bad duration is refused").to_string();
    assert!(errors.contains("firebell.toml:2") && errors.contains("invalid duration 'soon'"), "{errors}");
    let source = firebell::source::SourceFile::new(dir.path().join("firebell.toml"), "[alerts]\nflap = \"1m\"\n");
    let errors = firebell::config::Config::parse(&source).expect_err("an unknown key is refused").to_string();
    assert!(errors.contains("flap") && errors.contains("reopen_within"), "{errors}");
}

#[tokio::test]
async fn generic_alerts_group_by_dedup_key_resolve_and_reopen_within_the_flap_window() {
    let app = spawn_app(TOKEN_LINE, "").await;

    let disk = generic("db1-disk", "firing", Some("critical"), json!({"host": "db1", "team": "storage"}));
    let accepted = deliver(&app, "/alerts/generic", &disk).await;
    assert_eq!(accepted["fingerprint"], "generic:db1-disk");
    let (what, id) = outcome(&accepted);
    assert_eq!(what, "opened");
    let id = id.expect("an incident");
    let opened = incident(&app, id).await;
    assert_eq!(opened["title"], "Disk almost full on db1-disk");
    assert_eq!(opened["severity"], "critical");
    assert_eq!(opened["impact"], "/var is 91% full");
    assert_eq!(labels(&opened), json!({"host": "db1", "team": "storage", "severity": "critical"}));

    // Repeats of the same dedup_key update the open incident; another key is another incident.
    for _ in 0..3 {
        assert_eq!(outcome(&deliver(&app, "/alerts/generic", &disk).await), ("repeated", Some(id)));
    }
    let other = deliver(&app, "/alerts/generic", &generic("db2-disk", "firing", None, json!({}))).await;
    let other_id = outcome(&other).1.expect("an incident");
    assert_ne!(other_id, id);
    let open = app.get("/api/incidents").await.body;
    assert_eq!(list(&open).len(), 2, "{open}");
    let repeated = incident(&app, id).await;
    assert_eq!(events(&repeated, "alert").len(), 1, "the open alert on the timeline: {repeated:#}");
    assert_eq!(repeated["alert_repeats"], 3, "and three repeats counted");
    assert!(repeated["last_alert_at"].is_string(), "{repeated:#}");

    let resolve = generic("db1-disk", "resolved", Some("critical"), json!({"host": "db1", "team": "storage"}));
    assert_eq!(outcome(&deliver(&app, "/alerts/generic", &resolve).await), ("resolved", Some(id)));
    let resolved = incident(&app, id).await;
    assert_eq!((resolved["status"].as_str(), resolved["resolved_by"].as_str()), (Some("resolved"), Some("generic")));
    // Resolving again, or resolving what never fired, touches no incident.
    assert_eq!(outcome(&deliver(&app, "/alerts/generic", &resolve).await), ("ignored", None));
    let stranger = generic("never-fired", "resolved", None, json!({}));
    assert_eq!(outcome(&deliver(&app, "/alerts/generic", &stranger).await), ("ignored", None));

    app.clock.advance(chrono::Duration::minutes(9));
    assert_eq!(outcome(&deliver(&app, "/alerts/generic", &disk).await), ("reopened", Some(id)));
    let reopened = incident(&app, id).await;
    assert_eq!(reopened["status"], "triggered");
    assert_eq!(events(&reopened, "reopened")[0]["detail"]["flap_window_s"], 600);
    let everything = app.everything().await;
    assert_eq!(list(&everything).len(), 2, "{everything}");
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Routes

/// A runbook folder of the test's own: `hostcheck` runs a monitoring-plugin style script there
/// (exit 1: warn) and `true` (ok).
fn hostcheck_runbooks() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let script = dir.path().join("check_disk.sh");
    std::fs::write(&script, "#!/bin/sh\necho \"DISK WARNING - /var 91% full\"\nexit 1\n").expect("the script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    let runbook = format!(
        r#"name = "hostcheck"
summary = "Disk and liveness of a host"

[[checks]]
name = "disk"
kind = "exec"
argv = [{}]

[[checks]]
name = "alive"
kind = "exec"
argv = ["true"]
"#,
        toml_str(&script.display().to_string())
    );
    std::fs::write(dir.path().join("hostcheck.toml"), runbook).expect("the runbook is written");
    dir
}

#[tokio::test]
async fn a_routes_runbook_runs_as_soon_as_the_incident_opens_and_its_verdicts_are_on_the_timeline() {
    let runbooks = hostcheck_runbooks();
    let rest = format!(
        "[commands]\ndirs = [\"commands\", {}]\n\n[[routes]]\nmatch = {{ alertname = \"HostDown\" }}\nseverity = \"critical\"\nrun = \"hostcheck\"\n",
        toml_str(&runbooks.path().display().to_string())
    );
    let app = spawn_app(TOKEN_LINE, &rest).await;

    let down = generic("web1-down", "firing", None, json!({"alertname": "HostDown", "host": "web1"}));
    let id = outcome(&deliver(&app, "/alerts/generic", &down).await).1.expect("an incident");
    let diagnosed = eventually(
        PATIENCE,
        || "no diagnosis on the timeline".to_string(),
        async || {
            let incident = incident(&app, id).await;
            (!events(&incident, "diagnosis").is_empty()).then_some(incident)
        },
    )
    .await;
    assert_eq!(diagnosed["severity"], "critical");
    let diagnosis = events(&diagnosed, "diagnosis")[0];
    assert_eq!(diagnosis["by"], "alert:generic");
    assert_eq!(diagnosis["detail"]["topic"], "hostcheck");
    assert_eq!(diagnosis["detail"]["status"], "warn", "the worst verdict: {diagnosis}");
    let mut checks: Vec<(String, String, String)> = list(&diagnosis["detail"]["checks"])
        .iter()
        .map(|check| {
            let field = |name: &str| check[name].as_str().expect("a text field").to_string();
            (field("name"), field("status"), field("summary"))
        })
        .collect();
    checks.sort();
    assert_eq!(
        checks,
        [
            ("alive".to_string(), "ok".to_string(), "exit 0".to_string()),
            ("disk".to_string(), "warn".to_string(), "exit 1: DISK WARNING - /var 91% full".to_string()),
        ]
    );

    // An alert that matches no route runs nothing: by the time a second HostDown incident has
    // its diagnosis, the unmatched one (opened first) still has none.
    let unmatched = generic("web1-disk", "firing", None, json!({"alertname": "DiskFull", "host": "web1"}));
    let unmatched_id = outcome(&deliver(&app, "/alerts/generic", &unmatched).await).1.expect("an incident");
    let second = generic("web2-down", "firing", None, json!({"alertname": "HostDown", "host": "web2"}));
    let second_id = outcome(&deliver(&app, "/alerts/generic", &second).await).1.expect("an incident");
    eventually(
        PATIENCE,
        || "no diagnosis on the second HostDown incident".to_string(),
        async || (!events(&incident(&app, second_id).await, "diagnosis").is_empty()).then_some(()),
    )
    .await;
    assert!(events(&incident(&app, unmatched_id).await, "diagnosis").is_empty());
    app.stop().await;
}

const ROUTED: &str = r#"
[groups]
dba = ["console:alice"]

[[policies]]
name = "page-dba"
steps = [ { after = "0s", notify = ["group:dba"] }, { after = "30m", notify = ["group:dba"] } ]

[[policies]]
name = "default"
steps = [ { after = "1h", notify = ["group:dba"] } ]

[[routes]]
match = { alertname = "DiskFull", team = "db" }
severity = "critical"
policy = "page-dba"
"#;

#[tokio::test]
async fn labels_matching_a_route_take_its_severity_and_policy_and_others_take_the_default_route() {
    let app = spawn_app(TOKEN_LINE, ROUTED).await;

    // The route's severity wins over the alert's own, and its policy's first step fires at once.
    let matched = generic("pg1-disk", "firing", Some("low"), json!({"alertname": "DiskFull", "team": "db"}));
    let id = outcome(&deliver(&app, "/alerts/generic", &matched).await).1.expect("an incident");
    let escalated = eventually(
        PATIENCE,
        || "the first step of page-dba did not fire".to_string(),
        async || {
            let incident = incident(&app, id).await;
            (!events(&incident, "escalated").is_empty()).then_some(incident)
        },
    )
    .await;
    assert_eq!((escalated["severity"].as_str(), escalated["policy"].as_str()), (Some("critical"), Some("page-dba")));
    let step = &events(&escalated, "escalated")[0]["detail"];
    assert_eq!((step["step"].as_u64(), step["notified"].clone()), (Some(0), json!(["console:alice"])));

    // Same alertname, another team: no route matches; the severity label decides, the default
    // policy applies (its step is an hour away, so nothing escalates).
    let warning = generic("web-disk", "firing", Some("warning"), json!({"alertname": "DiskFull", "team": "web"}));
    let warning_id = outcome(&deliver(&app, "/alerts/generic", &warning).await).1.expect("an incident");
    let unlabelled = generic("tmp-disk", "firing", None, json!({"alertname": "DiskFull"}));
    let unlabelled_id = outcome(&deliver(&app, "/alerts/generic", &unlabelled).await).1.expect("an incident");
    let warning = incident(&app, warning_id).await;
    assert_eq!((warning["severity"].as_str(), warning["policy"].as_str()), (Some("medium"), Some("default")));
    let unlabelled = incident(&app, unlabelled_id).await;
    assert_eq!((unlabelled["severity"].as_str(), unlabelled["policy"].as_str()), (Some("high"), Some("default")));
    assert!(events(&warning, "escalated").is_empty() && events(&unlabelled, "escalated").is_empty());
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Bad input

const ALERTMANAGER_BODY: &str = r#"{
  "version": "4", "groupKey": "{}:{alertname=\"QueueBacklog\"}", "truncatedAlerts": 0, "status": "firing",
  "receiver": "firebell", "groupLabels": {"alertname": "QueueBacklog"},
  "commonLabels": {"alertname": "QueueBacklog", "severity": "critical"}, "commonAnnotations": {},
  "externalURL": "http://alertmanager.example:9093",
  "alerts": [{"status": "firing", "labels": {"alertname": "QueueBacklog", "severity": "critical"}, "annotations": {},
              "startsAt": "2026-11-22T10:00:00Z", "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": "c0ffee"}]
}"#;

/// Path, authorization, content type, body; the status expected and words its reason contains.
type BadRequest<'a> = (&'a str, Option<&'a str>, Option<&'a str>, Vec<u8>, u16, &'a str);

#[tokio::test]
async fn bad_requests_get_a_4xx_with_the_reason_and_store_nothing() {
    let app = spawn_app(TOKEN_LINE, "").await;
    let database = app.workspace().path().join("firebell.db");
    // Something stored already, so "unchanged" compares against more than nothing.
    deliver(&app, "/alerts/generic", &generic("db1-disk", "firing", None, json!({}))).await;
    let before = app.everything().await;
    let rows_before = stored_alerts(&database).await;
    assert_eq!(rows_before, 1);

    let bearer = format!("Bearer {TOKEN}");
    let (token, json) = (Some(bearer.as_str()), Some("application/json"));
    let edited = |body: &str, pointer: &str, value: Value| {
        let mut body: Value = serde_json::from_str(body).expect("the body parses");
        *body.pointer_mut(pointer).expect("the field exists") = value;
        body.to_string().into_bytes()
    };
    let generic_body = generic("db9-disk", "firing", None, json!({})).to_string().into_bytes();
    let mut oversize = br#"{"title": "big", "status": "firing", "dedup_key": "big", "description": ""#.to_vec();
    oversize.resize(oversize.len() + 1024 * 1024, b'x');
    oversize.extend_from_slice(b"\"}");
    let not_a_list = edited(ALERTMANAGER_BODY, "/alerts", json!({"status": "firing"}));
    let burning = edited(ALERTMANAGER_BODY, "/status", json!("burning"));
    let version_3 = edited(ALERTMANAGER_BODY, "/version", json!("3"));
    let labels_list = edited(GRAFANA_FIRING, "/alerts/0/labels", json!(["team", "blue"]));
    let unknown_field = [&generic_body[..generic_body.len() - 1], br#","sev":"high"}"#].concat();
    let number_label = edited(std::str::from_utf8(&generic_body).expect("UTF-8"), "/labels", json!({"cpu": 97}));
    let no_dedup_key = br#"{"title": "x", "status": "firing"}"#.to_vec();
    let blank_title = br#"{"title": " ", "status": "firing", "dedup_key": "k"}"#.to_vec();
    let (am, grafana) = (ALERTMANAGER_BODY.as_bytes().to_vec(), GRAFANA_FIRING.as_bytes().to_vec());
    let form = Some("application/x-www-form-urlencoded");

    let cases: Vec<BadRequest> = vec![
        ("/alerts/alertmanager", token, json, br#"{"status": "firing", "alerts": ["#.to_vec(), 400, "EOF"),
        ("/alerts/grafana", token, json, b"status=firing".to_vec(), 400, "expected value"),
        ("/alerts/generic", token, json, Vec::new(), 400, "EOF"),
        ("/alerts/alertmanager", token, Some("text/plain"), am.clone(), 415, "Content-Type: application/json"),
        ("/alerts/grafana", token, None, grafana.clone(), 415, "Content-Type: application/json"),
        ("/alerts/generic", token, form, generic_body.clone(), 415, "Content-Type: application/json"),
        ("/alerts/generic", token, json, oversize.clone(), 413, "larger than 1024 KiB"),
        ("/alerts/alertmanager", token, json, oversize, 413, "larger than 1024 KiB"),
        ("/alerts/alertmanager", token, json, not_a_list, 400, "invalid type: map, expected a sequence"),
        ("/alerts/alertmanager", token, json, burning, 400, "must be \"firing\" or \"resolved\""),
        ("/alerts/alertmanager", token, json, version_3, 400, "version \"3\" is not supported"),
        ("/alerts/grafana", token, json, labels_list, 400, "invalid type: sequence, expected a map"),
        ("/alerts/generic", token, json, unknown_field, 400, "unknown field `sev`"),
        ("/alerts/generic", token, json, number_label, 400, "invalid type: integer `97`, expected a string"),
        ("/alerts/generic", token, json, no_dedup_key, 400, "missing field `dedup_key`"),
        ("/alerts/generic", token, json, blank_title, 400, "must not be empty"),
        ("/alerts/generic", None, json, generic_body.clone(), 401, "missing Authorization"),
        ("/alerts/generic", Some("Bearer wrong-token"), json, generic_body.clone(), 401, "wrong bearer token"),
        ("/alerts/generic", Some(TOKEN), json, generic_body.clone(), 401, "missing Authorization: Bearer"),
        ("/alerts/alertmanager", None, json, am.clone(), 401, "missing Authorization"),
        ("/alerts/alertmanager", Some("Bearer wrong-token"), json, am, 401, "wrong bearer token"),
        ("/alerts/grafana", None, json, grafana.clone(), 401, "missing Authorization"),
        ("/alerts/grafana", Some("Bearer wrong-token"), json, grafana, 401, "wrong bearer token"),
    ];
    for (path, authorization, content_type, body, status, reason) in cases {
        let reply: Reply = app.post_raw(path, authorization, content_type, body).await;
        assert_eq!(reply.status, status, "{path} with {authorization:?}, {content_type:?}: {reply:?}");
        assert!(reply.error().contains(reason), "{path}: the reason should say {reason:?}: {reply:?}");
        assert_eq!(app.everything().await, before, "{path} ({status}) changed the incidents");
        assert_eq!(stored_alerts(&database).await, rows_before, "{path} ({status}) stored an alert");
    }
    app.stop().await;
}

#[tokio::test]
async fn without_an_api_token_the_generic_endpoint_is_refused_and_alertmanager_is_accepted() {
    let app = spawn_app("", "").await;
    let database = app.workspace().path().join("firebell.db");
    let body = generic("db1-disk", "firing", None, json!({})).to_string().into_bytes();
    for authorization in [None, Some("Bearer anything")] {
        let reply = app.post_raw("/alerts/generic", authorization, Some("application/json"), body.clone()).await;
        assert_eq!(reply.status, 403, "{reply:?}");
        assert!(reply.error().contains("server.api_token"), "{reply:?}");
    }
    assert_eq!(app.everything().await, json!([]));
    assert_eq!(stored_alerts(&database).await, 0);

    // Alertmanager's and Grafana's webhooks need no token when none is configured.
    let reply = app.post_raw("/alerts/alertmanager", None, Some("application/json"), ALERTMANAGER_BODY.into()).await;
    assert_eq!((reply.status, reply.body["outcome"].as_str()), (200, Some("opened")), "{reply:?}");
    assert_eq!(list(&app.everything().await).len(), 1);
    app.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Durable before the answer

#[tokio::test]
async fn an_answered_alert_survives_kill_9_of_the_real_binary() {
    let mut dir = ServeDir::new(None, "");
    let mut first = dir.start("first").await;
    // Twenty alerts at once, so they are committed in shared batches; the process is killed the
    // moment the last answer arrives.
    let keys: Vec<String> = (0..20).map(|n| format!("host{n}-disk")).collect();
    let posts = keys.iter().map(|key| {
        first
            .client
            .post(format!("http://{}/alerts/generic", first.address))
            .bearer_auth(TOKEN)
            .json(&generic(key, "firing", Some("critical"), json!({"host": key})))
            .send()
    });
    let answers = futures::future::join_all(posts).await;
    for answer in answers {
        let answer = answer.expect("the alert is answered");
        assert_eq!(answer.status().as_u16(), 200, "{}", first.log());
    }
    first.kill();

    let second = dir.start("second").await;
    let response = second
        .client
        .get(format!("http://{}/api/incidents?all=true&limit=1000", second.address))
        .bearer_auth(TOKEN)
        .send()
        .await
        .expect("the list answers");
    let incidents: Value = response.json().await.expect("the list is JSON");
    let mut fingerprints: Vec<String> = list(&incidents)
        .iter()
        .map(|incident| incident["fingerprint"].as_str().expect("a fingerprint").to_string())
        .collect();
    fingerprints.sort();
    let mut expected: Vec<String> = keys.iter().map(|key| format!("generic:{key}")).collect();
    expected.sort();
    assert_eq!(fingerprints, expected, "every answered alert is an incident after the crash:\n{}", dir.logs());
    assert_eq!(stored_alerts(&dir.dir.path().join("firebell.db")).await, 20);
}
