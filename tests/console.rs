//! The web console over HTTP, without a browser: who may use it (open on loopback, a login token
//! elsewhere, shut without one), the cross-site checks on every write, clear refusals of bad
//! input, the server-sent event stream, and history that outlives a restart. The browser story
//! is in `console_browser.rs`.

mod support;

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};
use support::app::{AppBuilder, RunningApp, Workspace};
use support::runbooks::PING;

const WAIT: Duration = Duration::from_secs(20);

/// A check with 5,000 lines of output: too long for a message, so it goes as a file.
const NOISY: &str = r#"
name = "noisy"
summary = "Prints a lot"

[[checks]]
name = "count"
kind = "exec"
argv = ["seq", "1", "5000"]
"#;

/// The app listening on `listen` (`127.0.0.1:0`, or `0.0.0.0:0` for "not loopback"), with its
/// store in `dir`.
async fn start(dir: &Path, listen: &str, server_extra: &str) -> RunningApp {
    let workspace = Workspace::at(dir);
    workspace.runbook("ping", PING);
    workspace.runbook("noisy", NOISY);
    AppBuilder::new(workspace).listen(listen).server(server_extra).spawn().await
}

/// What the console's own page does, against the app that serves it.
trait Page {
    async fn get(&self, path: &str, cookies: &str) -> reqwest::Response;
    async fn csrf(&self, cookies: &str) -> String;
    async fn write(&self, path: &str, csrf: &str, extra_cookies: &str, body: Value) -> (u16, Value);
}

impl Page for RunningApp {
    async fn get(&self, path: &str, cookies: &str) -> reqwest::Response {
        self.client.get(format!("{}{path}", self.base)).header(COOKIE, cookies).send().await.expect("GET works")
    }

    /// The CSRF cookie a page hands out.
    async fn csrf(&self, cookies: &str) -> String {
        let response = self.get("/", cookies).await;
        assert_eq!(response.status(), 200);
        cookie_value(response.headers(), "firebell_csrf").expect("the page sets a CSRF cookie")
    }

    /// POSTs JSON as the console's own page would: the CSRF cookie echoed in the header.
    async fn write(&self, path: &str, csrf: &str, extra_cookies: &str, body: Value) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header(COOKIE, format!("firebell_csrf={csrf}; {extra_cookies}"))
            .header("x-firebell-csrf", csrf)
            .header("origin", &self.base)
            .json(&body)
            .send()
            .await
            .expect("POST works");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }
}

use support::app::set_cookie as cookie_value;

fn command(user: &str, channel: &str, text: &str) -> Value {
    json!({"user": user, "channel": channel, "text": text})
}

#[tokio::test]
async fn writes_need_the_pages_csrf_token_from_the_same_origin() {
    let dir = tempfile::tempdir().unwrap();
    let console = start(dir.path(), "127.0.0.1:0", "").await;
    let page = console.get("/", "").await;
    let headers = page.headers().clone();
    assert!(headers["content-security-policy"].to_str().unwrap().contains("frame-ancestors 'none'"));
    assert_eq!(headers["x-frame-options"], "DENY");
    let csrf = cookie_value(&headers, "firebell_csrf").expect("a CSRF cookie");
    assert!(page.text().await.unwrap().contains("/assets/console.js"));

    let url = format!("{}/console/command", console.base);
    let body = command("alice", "ops", "/incident list");
    let without_header =
        console.client.post(&url).header(COOKIE, format!("firebell_csrf={csrf}")).json(&body).send().await.unwrap();
    assert_eq!(without_header.status(), 403);
    assert!(without_header.text().await.unwrap().contains("CSRF"));
    let other_origin = console
        .client
        .post(&url)
        .header(COOKIE, format!("firebell_csrf={csrf}"))
        .header("x-firebell-csrf", &csrf)
        .header("origin", "https://evil.example")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(other_origin.status(), 403);
    let (status, reply) = console.write("/console/command", &csrf, "", body).await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply["reply"]["body"]["blocks"].to_string().contains("No open incidents"), "{reply}");
    console.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_with_what_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let console = start(dir.path(), "127.0.0.1:0", "").await;
    let csrf = console.csrf("").await;
    let cases = [
        (command("al ice", "ops", "/incident list"), "name 'al ice' is not valid"),
        (command("alice", "Ops!", "/incident list"), "channel 'Ops!' is not valid"),
        (command("alice", "ops", "hello"), "commands start with /"),
        (json!({"user": "alice", "channel": "ops", "thread": "x1", "text": "/oncall"}), "thread 'x1'"),
    ];
    for (body, expected) in cases {
        let (status, reply) = console.write("/console/command", &csrf, "", body.clone()).await;
        assert_eq!(status, 400, "{body} → {reply}");
        assert!(reply["error"].as_str().unwrap_or("").contains(expected), "{body} → {reply}");
    }
    // A chosen name proves nothing, so the open console reads nobody's direct messages (SPEC §9).
    let (status, reply) =
        console.write("/console/command", &csrf, "", command("alice", "@bob", "/incident list")).await;
    assert_eq!(status, 403, "{reply}");
    assert!(reply["error"].as_str().unwrap_or("").contains("chosen, not proven"), "{reply}");
    let history = console.get("/console/history?user=alice&channel=%40bob", "").await;
    assert_eq!(history.status(), 403, "nobody reads another person's direct messages");
    let (status, reply) = console.write("/console/command", &csrf, "", command("alice", "ops", "/diagnose nope")).await;
    assert_eq!(status, 200);
    let text = reply["reply"]["body"]["blocks"].to_string();
    assert!(text.contains("nope") && text.contains("ping"), "names the valid topics: {text}");
    console.stop().await;
}

#[tokio::test]
async fn pages_see_posts_and_edits_as_server_sent_events() {
    let dir = tempfile::tempdir().unwrap();
    let console = start(dir.path(), "127.0.0.1:0", "").await;
    let csrf = console.csrf("").await;
    let events = console.get("/console/events?user=alice", "").await;
    assert_eq!(events.headers()["content-type"], "text/event-stream");
    let mut stream = events.bytes_stream();

    let (status, _) = console.write("/console/command", &csrf, "", command("alice", "ops", "/diagnose ping")).await;
    assert_eq!(status, 200);
    let mut seen = String::new();
    let done = tokio::time::timeout(WAIT, async {
        while let Some(chunk) = stream.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk.expect("the stream stays up")));
            if seen.contains("diagnose ping: OK") {
                return;
            }
        }
    })
    .await;
    assert!(done.is_ok(), "the diagnosis, edited to its verdict, arrives as events:\n{seen}");
    assert!(seen.contains("event: message"));
    assert!(seen.contains("\"author\":\"console:alice\""), "the typed command shows as alice's message: {seen}");
    assert!(seen.contains("diagnose ping — running"), "the first post, before the edit: {seen}");

    let history: Value = console.get("/console/history?user=alice&channel=ops", "").await.json().await.unwrap();
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{history}");
    assert_eq!(messages[0]["body"]["command"], "/diagnose ping");
    assert!(messages[1]["edited_at"].is_string(), "the diagnosis was edited in place: {history}");
    console.stop().await;
}

#[tokio::test]
async fn history_outlives_a_restart_and_ids_are_never_reused() {
    let dir = tempfile::tempdir().unwrap();
    let console = start(dir.path(), "127.0.0.1:0", "").await;
    let csrf = console.csrf("").await;
    let (status, _) =
        console.write("/console/command", &csrf, "", command("alice", "ops", "/incident declare Disk full")).await;
    assert_eq!(status, 200);
    let history = |console: &RunningApp| {
        let url = format!("{}/console/history?user=alice&channel=incidents", console.base);
        let client = console.client.clone();
        async move { client.get(url).send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let before = tokio::time::timeout(WAIT, async {
        loop {
            let page = history(&console).await;
            if page["messages"].as_array().is_some_and(|messages| !messages.is_empty()) {
                return page;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the incident notification is posted in #incidents");
    console.stop().await;

    let console = start(dir.path(), "127.0.0.1:0", "").await;
    let after = history(&console).await;
    assert_eq!(after["messages"], before["messages"], "the same history after a restart");
    let csrf = console.csrf("").await;
    let (status, _) = console.write("/console/command", &csrf, "", command("bob", "ops", "/oncall")).await;
    assert_eq!(status, 200);
    let ops: Value =
        console.get("/console/history?user=bob&channel=ops", "").await.json().await.expect("the history of #ops");
    let newest = ops["messages"].as_array().unwrap().last().unwrap()["id"].as_i64().unwrap();
    let notification = before["messages"][0]["id"].as_i64().unwrap();
    assert!(newest > notification, "new ids continue after the old ones ({newest} after {notification})");
    console.stop().await;
}

#[tokio::test]
async fn beyond_loopback_the_console_needs_a_login_token() {
    let dir = tempfile::tempdir().unwrap();
    let console = start(dir.path(), "0.0.0.0:0", "console_token = \"open-sesame\"\napi_token = \"api\"").await;
    let page = console.get("/", "").await;
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()[LOCATION], "/login");
    assert_eq!(console.get("/console/catalogue", "").await.status(), 401);
    assert_eq!(console.get("/healthz", "").await.status(), 200, "health stays open for probes");

    let login_page = console.get("/login", "").await;
    let csrf = cookie_value(login_page.headers(), "firebell_csrf").expect("the login page sets a CSRF cookie");
    assert!(login_page.text().await.unwrap().contains(&format!("value=\"{csrf}\"")));
    let login = |token: &str, form_csrf: &str| {
        console
            .client
            .post(format!("{}/login", console.base))
            .header(COOKIE, format!("firebell_csrf={csrf}"))
            .form(&[("token", token), ("csrf", form_csrf)])
            .send()
    };
    let wrong = login("guess", &csrf).await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.text().await.unwrap().contains("not the console token"));
    assert_eq!(login("open-sesame", "forged").await.unwrap().status(), 403, "the login form is CSRF-checked too");
    let right = login("open-sesame", &csrf).await.unwrap();
    assert_eq!(right.status(), 303);
    let session = cookie_value(right.headers(), "firebell_session").expect("a session cookie");
    let set_cookie = right.headers()[SET_COOKIE].to_str().unwrap().to_string();
    assert!(set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Strict"), "{set_cookie}");
    assert!(!set_cookie.contains("open-sesame"), "the token itself is never the cookie");

    let cookies = format!("firebell_session={session}");
    assert_eq!(console.get("/", &cookies).await.status(), 200);
    let (status, reply) = console.write("/console/command", &csrf, &cookies, command("alice", "ops", "/oncall")).await;
    assert_eq!(status, 200, "{reply}");
    let (status, _) = console.write("/console/command", &csrf, "", command("alice", "ops", "/oncall")).await;
    assert_eq!(status, 401, "no session, no command");
    console.stop().await;
}

#[tokio::test]
async fn beyond_loopback_without_a_token_the_console_stays_shut_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let console = start(dir.path(), "0.0.0.0:0", "").await;
    let page = console.get("/", "").await;
    assert_eq!(page.status(), 403);
    let text = page.text().await.unwrap();
    assert!(text.contains("console_token") && text.contains("127.0.0.1"), "{text}");
    assert_eq!(console.get("/incidents", "").await.status(), 403);
    assert_eq!(console.get("/console/history?user=a&channel=ops", "").await.status(), 403);
    assert_eq!(console.get("/healthz", "").await.status(), 200);
    // Without api_token on a non-loopback address the API is off too (SPEC §9, secure by default).
    assert_eq!(console.get("/api/incidents", "").await.status(), 401, "the JSON API needs server.api_token");
    console.stop().await;
}

#[tokio::test]
async fn long_output_goes_as_a_file_that_pages_preview_and_download_whole() {
    let dir = tempfile::tempdir().unwrap();
    let console = start(dir.path(), "127.0.0.1:0", "").await;
    let csrf = console.csrf("").await;
    let (status, _) = console.write("/console/command", &csrf, "", command("alice", "ops", "/diagnose noisy")).await;
    assert_eq!(status, 200);
    let file_message = tokio::time::timeout(WAIT, async {
        loop {
            let history: Value = console.get("/console/history?user=alice&channel=ops", "").await.json().await.unwrap();
            let found = history["messages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|message| message["body"]["file"].is_object())
                .cloned();
            if let Some(found) = found {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the output is posted as a file");
    let file = &file_message["body"]["file"];
    let whole: String = (1..=5000).map(|n| format!("{n}\n")).collect();
    assert!(file.get("text").is_none(), "pages get a preview, not the whole file: {file}");
    assert_eq!(file["cut"], true);
    assert!(file["preview"].as_str().unwrap().starts_with("== count ==\n1\n2\n3\n"), "{file}");
    assert!(file["size"].as_u64().unwrap() >= whole.len() as u64 - 1, "{file}");
    assert!(file_message["thread"].is_string(), "the file is in the diagnosis's thread: {file_message}");

    let id = file_message["id"].as_i64().unwrap();
    let download = console.get(&format!("/console/files/{id}?user=alice"), "").await;
    assert_eq!(download.status(), 200);
    assert!(download.headers()["content-disposition"].to_str().unwrap().starts_with("attachment"));
    let text = download.text().await.unwrap();
    assert!(text.contains("4999\n5000"), "the whole output downloads: {} bytes", text.len());
    let missing = console.get("/console/files/999999?user=alice", "").await;
    assert_eq!(missing.status(), 404);
    console.stop().await;
}
