//! Who is who on the web console, and who may reach the server at all (SPEC §9), against the
//! real app on port 0: per-person sign-in binds every action to its person (so one person can
//! no longer request as alice and approve as bob), chosen names take no part in remediations,
//! direct messages stay with their person, sign-in is rate-limited and can be ended, a sign-in
//! proxy is believed only from its own address, foreign Host names get 421, and the API and the
//! metrics ask for their tokens. The audit's reproductions of findings 1, 2, 11, 12, 23 and 24
//! are here as regression tests.

mod support;

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{COOKIE, HOST, SET_COOKIE};
use serde_json::{Value, json};
use support::app::{AppBuilder, RunningApp, Workspace, toml_str};

const WAIT: Duration = Duration::from_secs(20);

const ALICE_TOKEN: &str = "alice-token-0123456789abcdef";
const BOB_TOKEN: &str = "bob-token-0123456789abcdef";

/// The audit's `touch-file` remediation (finding 1): it touches `touched` in the app's folder.
fn runbook(dir: &Path) -> String {
    format!(
        r#"name = "ping"
summary = "Is the host alive"

[[checks]]
name = "true"
kind = "exec"
argv = ["true"]

[[remediations]]
name = "touch-file"
summary = "Touch a file"
kind = "exec"
argv = ["touch", {touched}]
approvals = 1
approvers = ["oncall"]
"#,
        touched = toml_str(&dir.join("touched").display().to_string())
    )
}

/// The audit's setup for finding 1: alice and bob on call, on call may remediate.
const PEOPLE_RULES: &str = r#"
[groups]
oncall = ["console:alice", "console:bob"]

[permissions]
remediate = ["group:oncall"]
"#;

fn people(alice: &str, bob: &str) -> String {
    format!("[console]\npeople = {{ alice = {}, bob = {} }}\n", toml_str(alice), toml_str(bob))
}

/// The app, whose console and API these tests drive; its address, client and stop are the
/// [`RunningApp`]'s.
struct App {
    app: RunningApp,
    port: u16,
}

impl std::ops::Deref for App {
    type Target = RunningApp;

    fn deref(&self) -> &RunningApp {
        &self.app
    }
}

impl App {
    /// The app on `listen` with `server_extra` in `[server]` and `rest` after it; the store and
    /// the runbook live in `dir`, so a second start on it finds what the first stored.
    async fn start(dir: &Path, listen: &str, server_extra: &str, rest: &str) -> App {
        let workspace = Workspace::at(dir);
        workspace.runbook("ping", &runbook(dir));
        let app = AppBuilder::new(workspace).listen(listen).server(server_extra).section(rest).spawn().await;
        App { port: app.address.port(), app }
    }

    async fn stop(self) {
        self.app.stop().await;
    }

    async fn get(&self, path: &str, cookies: &str) -> reqwest::Response {
        self.client.get(self.url(path)).header(COOKIE, cookies).send().await.expect("GET works")
    }

    async fn get_json(&self, path: &str, cookies: &str) -> (u16, Value) {
        let response = self.get(path, cookies).await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// A CSRF token the server handed out (from the sign-in page, which every caller may see).
    async fn csrf(&self) -> String {
        let response = self.get("/login", "").await;
        set_cookie(&response, "firebell_csrf").expect("the server hands out a CSRF cookie")
    }

    /// Signs in at `/login`; the response as it came.
    async fn sign_in(&self, csrf: &str, name: &str, token: &str) -> reqwest::Response {
        self.client
            .post(self.url("/login"))
            .header(COOKIE, format!("firebell_csrf={csrf}"))
            .form(&[("name", name), ("token", token), ("csrf", csrf)])
            .send()
            .await
            .expect("POST /login works")
    }

    /// Signs in and returns the cookies of the session (with the CSRF cookie).
    async fn session(&self, csrf: &str, name: &str, token: &str) -> String {
        let response = self.sign_in(csrf, name, token).await;
        assert_eq!(response.status(), 303, "{name} signs in: {}", response.text().await.unwrap_or_default());
        let session = set_cookie(&response, "firebell_session").expect("a session cookie");
        format!("firebell_csrf={csrf}; firebell_session={session}")
    }

    /// POSTs JSON as the console's page does (CSRF cookie echoed, same origin).
    async fn write(&self, path: &str, csrf: &str, cookies: &str, body: Value) -> (u16, Value) {
        let cookies = if cookies.is_empty() { format!("firebell_csrf={csrf}") } else { cookies.to_string() };
        let response = self
            .client
            .post(self.url(path))
            .header(COOKIE, cookies)
            .header("x-firebell-csrf", csrf)
            .header("origin", &self.base)
            .json(&body)
            .send()
            .await
            .expect("POST works");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Waits for a message in `channel` (as the session `cookies` sees it) whose body contains
    /// `text`.
    async fn wait_message(&self, cookies: &str, channel: &str, text: &str) -> Value {
        // A chosen name (no session) is sent as `user`, as the open console's page does.
        let user = if cookies.is_empty() { "&user=alice" } else { "" };
        let path = format!("/console/history?channel={}{user}", channel.replace('@', "%40"));
        tokio::time::timeout(WAIT, async {
            loop {
                let (status, history) = self.get_json(&path, cookies).await;
                assert_eq!(status, 200, "{history}");
                let found = history["messages"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|message| message["body"].to_string().contains(text))
                    .cloned();
                if let Some(found) = found {
                    return found;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no message with '{text}' in {channel}"))
    }
}

fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    support::app::set_cookie(response.headers(), name)
}

fn set_cookie_line(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find(|value| value.starts_with(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no Set-Cookie for {name}"))
        .to_string()
}

fn reply_text(reply: &Value) -> String {
    reply["reply"]["body"]["blocks"].to_string()
}

fn approve(message: &Value, request: i64) -> Value {
    json!({"channel": "ops", "message": message["id"].to_string(), "action": "remediation_approve", "value": request.to_string()})
}

#[tokio::test]
async fn one_person_cannot_request_as_alice_and_approve_as_bob() {
    let dir = tempfile::tempdir().unwrap();
    let rest = format!("{}{PEOPLE_RULES}", people(ALICE_TOKEN, BOB_TOKEN));
    let app = App::start(dir.path(), "127.0.0.1:0", "", &rest).await;
    let csrf = app.csrf().await;
    let alice = app.session(&csrf, "alice", ALICE_TOKEN).await;
    let (status, me) = app.get_json("/console/catalogue", &alice).await;
    assert_eq!(status, 200);
    assert_eq!(
        me["me"],
        json!({"person": "alice", "proven": true, "signed_in": true, "sign_in": true, "how_to_prove": me["me"]["how_to_prove"]})
    );

    // Signed in as alice, a request naming bob is refused: the name is no longer free text.
    let as_bob = json!({"user": "bob", "channel": "ops", "text": "/incident list"});
    let (status, refused) = app.write("/console/command", &csrf, &alice, as_bob).await;
    assert_eq!(status, 403, "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(error.contains("signed in as console:alice") && error.contains("'bob'"), "{error}");

    // alice requests; her own approval is refused; bob, signed in with his own token, approves.
    let (status, reply) =
        app.write("/console/command", &csrf, &alice, json!({"channel": "ops", "text": "/remediate touch-file"})).await;
    assert_eq!(status, 200, "{reply}");
    let request = app.wait_message(&alice, "ops", "Remediation request #1").await;
    let (status, own) = app.write("/console/button", &csrf, &alice, approve(&request, 1)).await;
    assert_eq!(status, 200, "{own}");
    assert!(reply_text(&own).contains("someone else must approve it"), "{own}");
    let mut forged = approve(&request, 1);
    forged["user"] = json!("bob");
    let (status, forged) = app.write("/console/button", &csrf, &alice, forged).await;
    assert_eq!(status, 403, "alice cannot click as bob: {forged}");
    assert!(!dir.path().join("touched").exists(), "nothing ran before bob approved");

    let bob = app.session(&csrf, "bob", BOB_TOKEN).await;
    let (status, approved) = app.write("/console/button", &csrf, &bob, approve(&request, 1)).await;
    assert_eq!(status, 200, "{approved}");
    let stored = tokio::time::timeout(WAIT, async {
        loop {
            let (_, stored) = app.get_json("/api/remediations/1", "").await;
            if stored["state"] == "succeeded" {
                return stored;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the approved remediation runs");
    assert_eq!(stored["requested_by"], "console:alice");
    assert!(stored.to_string().contains("console:bob"), "bob's vote is recorded: {stored}");
    assert!(dir.path().join("touched").exists(), "the remediation ran once bob approved");
    app.stop().await;
}

#[tokio::test]
async fn the_open_loopback_console_refuses_remediations_and_says_how_to_turn_sign_in_on() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(dir.path(), "127.0.0.1:0", "", PEOPLE_RULES).await;
    let page = app.get("/", "").await;
    let csrf = set_cookie(&page, "firebell_csrf").expect("a CSRF cookie");

    // The audit's reproduction of finding 1 on the open console: a typed /remediate as alice.
    let typed = json!({"user": "alice", "channel": "ops", "text": "/remediate touch-file"});
    let (status, refused) = app.write("/console/command", &csrf, "", typed).await;
    assert_eq!(status, 403, "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(error.contains("chosen, not proven"), "{error}");
    assert!(error.contains("[console] people") && error.contains("auth_header"), "names the keys: {error}");
    let clicked =
        json!({"user": "bob", "channel": "ops", "message": "1", "action": "remediation_approve", "value": "1"});
    let (status, refused) = app.write("/console/button", &csrf, "", clicked).await;
    assert_eq!(status, 403, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("[console] people"), "{refused}");
    let (_, audit) = app.get_json("/api/audit", "").await;
    assert_eq!(audit, json!([]), "no request was taken");

    // Diagnoses and incidents still work with a chosen name.
    let (status, reply) = app
        .write("/console/command", &csrf, "", json!({"user": "alice", "channel": "ops", "text": "/incident list"}))
        .await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply_text(&reply).contains("No open incidents"), "{reply}");
    let (_, me) = app.get_json("/console/catalogue", "").await;
    assert_eq!(me["me"]["proven"], false);
    app.stop().await;
}

#[tokio::test]
async fn a_forged_host_gets_421_on_console_and_api_routes() {
    let dir = tempfile::tempdir().unwrap();
    let app =
        App::start(dir.path(), "127.0.0.1:0", "", "[console]\nallowed_hosts = [\"firebell.example.com\"]\n").await;
    let evil = format!("evil.example:{}", app.port);
    // The audit's reproduction of finding 2, with the forged headers of a rebound page.
    let command = app
        .client
        .post(app.url("/console/command"))
        .header(HOST, &evil)
        .header("origin", format!("http://{evil}"))
        .header("sec-fetch-site", "same-origin")
        .header(COOKIE, "firebell_csrf=x")
        .header("x-firebell-csrf", "x")
        .json(&json!({"user": "alice", "channel": "ops", "text": "/incident declare Rebound"}))
        .send()
        .await
        .unwrap();
    assert_eq!(command.status(), 421);
    let error: Value = command.json().await.unwrap();
    let error = error["error"].as_str().unwrap();
    assert!(error.contains(&format!("'{evil}'")) && error.contains("allowed_hosts"), "{error}");
    assert!(error.contains(&format!("localhost:{}", app.port)), "says what is answered: {error}");
    for (method, path) in [
        ("GET", "/"),
        ("GET", "/api/incidents"),
        ("GET", "/api/audit"),
        ("POST", "/alerts/alertmanager"),
        ("GET", "/metrics"),
    ] {
        let request = app.client.request(method.parse().unwrap(), app.url(path)).header(HOST, &evil);
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 421, "{method} {path}");
    }
    let probe = app.client.get(app.url("/healthz")).header(HOST, &evil).send().await.unwrap();
    assert_eq!(probe.status(), 200, "probes answer any host");
    for host in [format!("localhost:{}", app.port), format!("[::1]:{}", app.port), "firebell.example.com".to_string()] {
        let response = app.client.get(app.url("/api/incidents")).header(HOST, &host).send().await.unwrap();
        assert_eq!(response.status(), 200, "{host}");
    }
    let (_, incidents) = app.get_json("/api/incidents", "").await;
    assert_eq!(incidents, json!([]), "the rebound request declared nothing");
    app.stop().await;
}

#[tokio::test]
async fn direct_messages_are_readable_only_by_their_proven_person() {
    let dir = tempfile::tempdir().unwrap();
    let policy = r#"
[[policies]]
name = "default"
steps = [ { after = "0s", notify = ["user:console:bob"] } ]
"#;
    let rest = format!("{}{policy}", people(ALICE_TOKEN, BOB_TOKEN));
    let app = App::start(dir.path(), "127.0.0.1:0", "", &rest).await;
    let csrf = app.csrf().await;
    let alice = app.session(&csrf, "alice", ALICE_TOKEN).await;
    let bob = app.session(&csrf, "bob", BOB_TOKEN).await;
    let alice_events = app.get("/console/events", &alice).await;
    assert_eq!(alice_events.status(), 200);
    let mut alice_stream = alice_events.bytes_stream();

    let (status, reply) = app
        .write("/console/command", &csrf, &alice, json!({"channel": "ops", "text": "/incident declare Disk full"}))
        .await;
    assert_eq!(status, 200, "{reply}");
    let page = app.wait_message(&bob, "@bob", "Disk full").await;
    assert_eq!(page["channel"], "@bob");

    let (status, refused) = app.get_json("/console/history?channel=%40bob", &alice).await;
    assert_eq!(status, 403, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("you are console:alice"), "{refused}");
    let (status, _) = app.get_json("/console/history?user=bob&channel=%40bob", &alice).await;
    assert_eq!(status, 403, "naming bob does not make alice bob");
    let (status, refused) = app.get_json("/console/history?user=bob&channel=%40bob", "").await;
    assert_eq!(status, 403);
    assert!(refused["error"].as_str().unwrap().contains("chosen, not proven"), "{refused}");

    // alice's event stream, open since before the page was posted, carries everything up to her
    // next command (events arrive in order) but never bob's page.
    let (status, _) = app.write("/console/command", &csrf, &alice, json!({"channel": "ops", "text": "/oncall"})).await;
    assert_eq!(status, 200);
    let seen = tokio::time::timeout(WAIT, async {
        let mut seen = String::new();
        while let Some(chunk) = alice_stream.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.expect("the stream stays up")));
            if seen.contains("\"command\":\"/oncall\"") {
                break;
            }
        }
        seen
    })
    .await
    .expect("alice sees her own command");
    assert!(seen.contains("Disk full"), "the notification in #incidents reaches alice: {seen}");
    assert!(!seen.contains("\"channel\":\"@bob\""), "alice's stream carried bob's page: {seen}");
    app.stop().await;
}

#[tokio::test]
async fn sign_in_is_rate_limited_per_name_with_a_clear_429() {
    let dir = tempfile::tempdir().unwrap();
    let app =
        App::start(dir.path(), "0.0.0.0:0", "api_token = \"api-token-0123456789\"", &people(ALICE_TOKEN, BOB_TOKEN))
            .await;
    let csrf = app.csrf().await;
    for _ in 0..5 {
        let wrong = app.sign_in(&csrf, "alice", "guess-guess-guess").await;
        assert_eq!(wrong.status(), 401);
        assert!(wrong.text().await.unwrap().contains("That name and token do not match"));
    }
    let limited = app.sign_in(&csrf, "alice", ALICE_TOKEN).await;
    assert_eq!(limited.status(), 429, "even the right token waits out the window");
    assert!(limited.headers().contains_key("retry-after"));
    let page = limited.text().await.unwrap();
    assert!(page.contains("Too many failed sign-ins for the name alice") && page.contains("wait"), "{page}");
    assert!(set_cookie(&app.sign_in(&csrf, "alice", ALICE_TOKEN).await, "firebell_session").is_none());
    // Another person is not locked out by alice's failures.
    app.session(&csrf, "bob", BOB_TOKEN).await;
    app.stop().await;
}

#[tokio::test]
async fn sign_out_clears_the_cookie_and_rotating_a_token_ends_only_that_persons_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let server = "api_token = \"api-token-0123456789\"";
    let app = App::start(dir.path(), "0.0.0.0:0", server, &people(ALICE_TOKEN, BOB_TOKEN)).await;
    let csrf = app.csrf().await;
    let alice = app.session(&csrf, "alice", ALICE_TOKEN).await;
    let bob = app.session(&csrf, "bob", BOB_TOKEN).await;
    let plain = app.sign_in(&csrf, "alice", ALICE_TOKEN).await;
    assert!(!set_cookie_line(&plain, "firebell_session").contains("Secure"), "served over plain HTTP");
    // Served over HTTPS (the page's Origin says so), the session cookie is Secure.
    let https = app
        .client
        .post(app.url("/login"))
        .header(COOKIE, format!("firebell_csrf={csrf}"))
        .header(HOST, format!("127.0.0.1:{}", app.port))
        .header("origin", format!("https://127.0.0.1:{}", app.port))
        .form(&[("name", "alice"), ("token", ALICE_TOKEN), ("csrf", &csrf)])
        .send()
        .await
        .unwrap();
    let line = set_cookie_line(&https, "firebell_session");
    assert!(line.contains("; Secure") && line.contains("HttpOnly"), "{line}");

    let signed_out = app
        .client
        .post(app.url("/logout"))
        .header(COOKIE, &alice)
        .header("x-firebell-csrf", &csrf)
        .header("origin", &app.base)
        .send()
        .await
        .unwrap();
    assert_eq!(signed_out.status(), 303);
    let cleared = set_cookie_line(&signed_out, "firebell_session");
    assert!(cleared.starts_with("firebell_session=;") && cleared.contains("Max-Age=0"), "{cleared}");
    let without = format!("firebell_csrf={csrf}; firebell_session=");
    assert_eq!(app.get("/console/catalogue", &without).await.status(), 401, "the cleared cookie is no session");
    app.stop().await;

    // alice's token is rotated: her sessions end, bob's go on.
    let app = App::start(dir.path(), "0.0.0.0:0", server, &people("alice-rotated-0123456789ab", BOB_TOKEN)).await;
    let (status, refused) = app.get_json("/console/catalogue", &alice).await;
    assert_eq!(status, 401, "{refused}");
    assert!(refused["error"].as_str().unwrap().contains("sign in"), "{refused}");
    let (status, me) = app.get_json("/console/catalogue", &bob).await;
    assert_eq!((status, &me["me"]["person"]), (200, &json!("bob")));
    app.stop().await;
}

#[tokio::test]
async fn a_sign_in_proxys_header_counts_only_from_a_trusted_peer() {
    let dir = tempfile::tempdir().unwrap();
    let server = "api_token = \"api-token-0123456789\"";
    let trusted = "[console]\nauth_header = \"X-Forwarded-User\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n";
    let app = App::start(dir.path(), "0.0.0.0:0", server, trusted).await;
    let response =
        app.client.get(app.url("/console/catalogue")).header("x-forwarded-user", "carol").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let me: Value = response.json().await.unwrap();
    assert_eq!((&me["me"]["person"], &me["me"]["proven"]), (&json!("carol"), &json!(true)));
    let odd =
        app.client.get(app.url("/console/catalogue")).header("x-forwarded-user", "carol smith").send().await.unwrap();
    assert_eq!(odd.status(), 403);
    assert!(odd.text().await.unwrap().contains("not a console name"));
    app.stop().await;

    // The same header from a peer outside trusted_proxies is ignored: no sign-in, no console.
    let elsewhere = "[console]\nauth_header = \"X-Forwarded-User\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n";
    let app = App::start(dir.path(), "0.0.0.0:0", server, elsewhere).await;
    let response =
        app.client.get(app.url("/console/catalogue")).header("x-forwarded-user", "carol").send().await.unwrap();
    assert_eq!(response.status(), 401);
    let response = app.client.get(app.url("/")).header("x-forwarded-user", "carol").send().await.unwrap();
    assert_eq!((response.status().as_u16(), response.headers()["location"].to_str().unwrap()), (303, "/login"));
    app.stop().await;
}

#[tokio::test]
async fn beyond_loopback_without_an_api_token_the_api_and_alerts_refuse_with_401() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(dir.path(), "0.0.0.0:0", "", "").await;
    let alert = json!({"version": "4", "status": "firing", "groupKey": "x", "alerts": [{"status": "firing", "labels": {"alertname": "X"}}]});
    let requests = [
        app.client.get(app.url("/api/incidents")),
        app.client.get(app.url("/api/audit")),
        app.client.get(app.url("/api/remediations/1")),
        app.client.post(app.url("/api/incidents")).json(&json!({"title": "x"})),
        // The audit's reproduction of finding 12: an open Alertmanager webhook on 0.0.0.0.
        app.client.post(app.url("/alerts/alertmanager")).json(&alert),
        app.client.post(app.url("/alerts/grafana")).json(&json!({})),
        app.client.post(app.url("/alerts/generic")).bearer_auth("anything").json(&json!({})),
    ];
    for request in requests {
        let response = request.send().await.unwrap();
        let url = response.url().path().to_string();
        assert_eq!(response.status(), 401, "{url}");
        let body: Value = response.json().await.unwrap();
        let error = body["error"].as_str().unwrap();
        assert!(error.contains("not a loopback address") && error.contains("Set api_token"), "{url}: {error}");
    }
    assert_eq!(app.get("/healthz", "").await.status(), 200);
    assert_eq!(app.get("/metrics", "").await.status(), 200, "metrics stay open without metrics_token");
    app.stop().await;
    let store = firebell::store::open(&format!("sqlite://{}", dir.path().join("firebell.db").display())).await.unwrap();
    assert!(store.incidents(true, 10).await.unwrap().is_empty(), "no alert opened an incident");
}

#[tokio::test]
async fn with_an_api_token_reads_need_it_or_a_console_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let server = "api_token = \"api-token-0123456789\"\nmetrics_token = \"metrics-token-0123456789\"";
    let app = App::start(dir.path(), "127.0.0.1:0", server, &people(ALICE_TOKEN, BOB_TOKEN)).await;
    // The audit's reproduction of finding 11: the audit log read without a header.
    for path in ["/api/audit", "/api/incidents", "/api/remediations/1"] {
        let (status, refused) = app.get_json(path, "").await;
        assert_eq!(status, 401, "{path}: {refused}");
        let error = refused["error"].as_str().unwrap();
        assert!(error.contains("Bearer <server.api_token>") && error.contains("reads need it"), "{error}");
    }
    let wrong = app.client.get(app.url("/api/incidents")).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let right = app.client.get(app.url("/api/incidents")).bearer_auth("api-token-0123456789").send().await.unwrap();
    assert_eq!(right.status(), 200);
    let csrf = app.csrf().await;
    let alice = app.session(&csrf, "alice", ALICE_TOKEN).await;
    let (status, _) = app.get_json("/api/incidents", &alice).await;
    assert_eq!(status, 200, "a signed-in person reads the API from the browser");

    let metrics = app.get("/metrics", "").await;
    assert_eq!(metrics.status(), 401);
    assert!(metrics.text().await.unwrap().contains("server.metrics_token"));
    let wrong = app.client.get(app.url("/metrics")).bearer_auth("api-token-0123456789").send().await.unwrap();
    assert_eq!(wrong.status(), 401, "the API token is not the metrics token");
    let scraped = app.client.get(app.url("/metrics")).bearer_auth("metrics-token-0123456789").send().await.unwrap();
    assert_eq!(scraped.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn a_console_button_in_a_channel_outside_permissions_channels_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(dir.path(), "127.0.0.1:0", "", "[permissions]\nchannels = [\"ops\"]\n").await;
    let page = app.get("/", "").await;
    let csrf = set_cookie(&page, "firebell_csrf").expect("a CSRF cookie");
    let typed = json!({"user": "alice", "channel": "dev", "text": "/diagnose ping"});
    let (status, reply) = app.write("/console/command", &csrf, "", typed).await;
    assert_eq!(status, 200);
    assert!(reply_text(&reply).contains("not accepted in this channel"), "{reply}");
    let typed = app.wait_message("", "dev", "/diagnose ping").await;

    // The audit's finding 24: a diagnose button payload claiming #dev.
    let click = json!({"user": "alice", "channel": "dev", "message": typed["id"].to_string(), "action": "diagnose", "value": "ping"});
    let (status, reply) = app.write("/console/button", &csrf, "", click).await;
    assert_eq!(status, 200, "{reply}");
    let text = reply_text(&reply);
    assert!(
        text.contains("buttons are not accepted in this channel (dev)") && text.contains("ops, incidents"),
        "{text}"
    );
    // In #ops the same button starts the diagnosis.
    let typed = json!({"user": "alice", "channel": "ops", "text": "/oncall"});
    app.write("/console/command", &csrf, "", typed).await;
    let own = app.wait_message("", "ops", "/oncall").await;
    let click = json!({"user": "alice", "channel": "ops", "message": own["id"].to_string(), "action": "diagnose", "value": "ping"});
    let (status, reply) = app.write("/console/button", &csrf, "", click).await;
    assert_eq!((status, &reply["reply"]), (200, &Value::Null), "{reply}");
    app.wait_message("", "ops", "diagnose ping").await;
    let (_, dev) = app.get_json("/console/history?user=alice&channel=dev", "").await;
    assert_eq!(dev["messages"].as_array().unwrap().len(), 1, "only the typed command is in #dev: {dev}");
    app.stop().await;
}
