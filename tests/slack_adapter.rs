//! The Slack adapter against a fake Slack Web API, and the Slack endpoints with real signed
//! requests.

mod fake_slack;
mod support;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use fake_slack::{FakeSlack, Outcome};
use firebell::chat::platform::ChatHandler;
use firebell::chat::slack::render::TRUNCATED;
use firebell::chat::slack::{SlackAdapter, http};
use firebell::chat::{
    Button, ChatAdapter, ChatError, ChatEvent, FileAttachment, Form, FormField, Message, MessageRef, Reply,
};
use firebell::config::{EnvString, Secret, SlackConfig};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

fn adapter_for(fake: &FakeSlack) -> SlackAdapter {
    let config = SlackConfig {
        bot_token: Some(Secret::new(&fake.token())),
        app_token: None,
        signing_secret: None,
        incident_channel: Some(EnvString("CINCIDENTS".into())),
        api_url: EnvString(fake.api_url()),
        timeout: firebell::config::default_chat_timeout(),
    };
    SlackAdapter::new(&config).expect("a Slack adapter")
}

fn incident_message(title: &str) -> Message {
    Message::new()
        .header(title)
        .fields(vec![("Severity".into(), "high".into()), ("Status".into(), "investigating".into())])
        .text("Declared by <@U0001>")
        .buttons(vec![
            Button::new("Acknowledge", "ack", "7").primary(),
            Button::new("Diagnose", "diagnose", "7"),
            Button::new("Resolve", "resolve", "7").danger(),
        ])
}

fn resolve_form() -> Form {
    Form {
        title: "Resolve incident #7".into(),
        submit: "Resolve".into(),
        action: "resolve".into(),
        value: "7".into(),
        fields: vec![
            FormField { id: "root_cause".into(), label: "Root cause".into(), multiline: true, optional: false },
            FormField { id: "prevention".into(), label: "Prevention".into(), multiline: false, optional: true },
        ],
        instead: "resolve with: /incident resolve id=7 root_cause=\"…\"".into(),
    }
}

#[tokio::test]
async fn posts_threads_edits_direct_messages_uploads_and_forms_reach_slack_with_the_right_fields() {
    let fake = FakeSlack::start().await;
    let slack = adapter_for(&fake);
    assert_eq!(slack.incident_channel().as_deref(), Some("CINCIDENTS"));

    let root = slack.post("CINCIDENTS", None, &incident_message("Incident #7: queue backlog")).await.unwrap();
    let post = &fake.accepted("chat.postMessage")[0];
    assert_eq!(post.body["channel"], "CINCIDENTS");
    assert!(post.body.get("thread_ts").is_none());
    assert!(post.body["text"].as_str().unwrap().starts_with("Incident #7: queue backlog"));
    assert_eq!(post.body["blocks"][0]["type"], "header");
    assert_eq!(fake.message("CINCIDENTS", &root.id).unwrap().action_ids(), ["ack", "diagnose", "resolve"]);

    let reply = slack.post("CINCIDENTS", Some(&root.id), &Message::plain("Diagnosis started")).await.unwrap();
    assert_eq!(fake.accepted("chat.postMessage")[1].body["thread_ts"], root.id.as_str());
    assert_eq!(fake.thread("CINCIDENTS", &root.id).len(), 1);
    assert_ne!(reply.id, root.id);

    slack.update(&root, &incident_message("Incident #7: RESOLVED")).await.unwrap();
    let update = &fake.accepted("chat.update")[0];
    assert_eq!(
        (update.body["channel"].as_str(), update.body["ts"].as_str()),
        (Some("CINCIDENTS"), Some(root.id.as_str()))
    );
    let edited = fake.message("CINCIDENTS", &root.id).unwrap();
    assert_eq!(edited.edits, 1);
    assert!(edited.visible_text().contains("RESOLVED"));

    let direct = slack.direct("U0002", &Message::plain("You are paged for incident #7")).await.unwrap();
    assert_eq!(fake.accepted("conversations.open")[0].body["users"], json!(["U0002"]));
    assert_eq!(direct.channel, "D0002");
    assert_eq!(fake.messages("D0002").len(), 1);
    slack.direct("slack:U0002", &Message::plain("Still paged")).await.unwrap();
    assert_eq!(fake.calls_to("conversations.open").len(), 1, "the direct channel is remembered");

    let output = "line\n".repeat(5_000).into_bytes();
    let file = FileAttachment {
        filename: "queue-diagnosis.txt".into(),
        title: "Full output of queue".into(),
        content: output.clone(),
    };
    slack.upload("CINCIDENTS", Some(&root.id), &file).await.unwrap();
    let url_call = &fake.accepted("files.getUploadURLExternal")[0];
    assert_eq!(url_call.body["filename"], "queue-diagnosis.txt");
    assert_eq!(url_call.body["length"], output.len().to_string());
    assert_eq!(fake.accepted("upload")[0].body["bytes"], output.len());
    let complete = &fake.accepted("files.completeUploadExternal")[0];
    assert_eq!(complete.body["channel_id"], "CINCIDENTS");
    assert_eq!(complete.body["thread_ts"], root.id.as_str());
    assert_eq!(complete.body["files"][0]["title"], "Full output of queue");
    let shared = &fake.files()[0];
    assert_eq!((shared.channel.as_str(), shared.thread_ts.as_deref()), ("CINCIDENTS", Some(root.id.as_str())));
    assert_eq!(shared.content, output);

    slack.open_form("trigger-basic", &resolve_form(), None).await.unwrap();
    let view = &fake.views()[0];
    assert_eq!(fake.accepted("views.open")[0].body["trigger_id"], "trigger-basic");
    assert_eq!(view["callback_id"], "resolve");
    let metadata: Value = serde_json::from_str(view["private_metadata"].as_str().unwrap()).unwrap();
    assert_eq!(metadata["value"], "7");
    assert_eq!(view["blocks"][0]["element"]["multiline"], true);
    assert_eq!(view["blocks"][1]["element"]["multiline"], false);
    assert_eq!(view["blocks"][1]["optional"], true);

    assert_eq!(slack.auth_test().await.unwrap(), fake_slack::BOT_USER);
    fake.assert_all_accepted();
}

#[tokio::test]
async fn posts_to_one_channel_are_a_second_apart_and_other_channels_do_not_wait() {
    let fake = FakeSlack::start().await;
    let slack = adapter_for(&fake);
    let message = Message::plain("step");
    let (first, second, third, other) = tokio::join!(
        slack.post("CPACED", None, &message),
        slack.post("CPACED", None, &message),
        slack.post("CPACED", None, &message),
        slack.post("COTHER", None, &message),
    );
    for result in [first, second, third, other] {
        result.unwrap();
    }
    assert!(fake.rate_limited().is_empty(), "the adapter paced itself: {:?}", fake.rate_limited());
    let mut paced = fake
        .accepted("chat.postMessage")
        .into_iter()
        .filter(|call| call.body["channel"] == "CPACED")
        .map(|call| call.at)
        .collect::<Vec<_>>();
    paced.sort();
    assert_eq!(paced.len(), 3);
    for pair in paced.windows(2) {
        assert!(pair[1] - pair[0] >= Duration::from_secs(1), "posts {:?} apart", pair[1] - pair[0]);
    }
    assert!(paced[2] - paced[0] >= Duration::from_secs(2));
    let other_at =
        fake.accepted("chat.postMessage").into_iter().find(|call| call.body["channel"] == "COTHER").unwrap().at;
    assert!(other_at < paced[2], "another channel waited for this channel's pacing");
    fake.assert_all_accepted();
}

#[tokio::test]
async fn a_429_is_waited_out_for_its_retry_after_and_the_call_succeeds() {
    let fake = FakeSlack::start().await;
    let slack = adapter_for(&fake);
    fake.rate_limit_next("chat.postMessage", 1, 1);
    let posted = slack.post("CBUSY", None, &Message::plain("after a 429")).await.unwrap();
    let calls = fake.calls_to("chat.postMessage");
    assert_eq!(calls.iter().map(|call| call.outcome.clone()).collect::<Vec<_>>(), [Outcome::RateLimited, Outcome::Ok]);
    assert!(calls[1].at - calls[0].at >= Duration::from_secs(1), "retried after {:?}", calls[1].at - calls[0].at);
    assert!(fake.message("CBUSY", &posted.id).is_some());

    fake.rate_limit_next("chat.update", 2, 1);
    slack.update(&posted, &Message::plain("edited after two 429s")).await.unwrap();
    assert_eq!(fake.calls_to("chat.update").len(), 3);
    fake.assert_all_accepted();
}

#[tokio::test]
async fn a_call_still_rate_limited_after_three_retries_gives_up() {
    let fake = FakeSlack::start().await;
    let slack = adapter_for(&fake);
    fake.rate_limit_next("views.open", 4, 1);
    let started = Instant::now();
    let error = slack.open_form("trigger-busy", &resolve_form(), None).await.unwrap_err();
    assert!(matches!(error, ChatError::RateLimited { retry_after_secs: 1 }), "{error:?}");
    assert_eq!(fake.calls_to("views.open").len(), 4);
    assert!(started.elapsed() >= Duration::from_secs(3));
}

#[tokio::test]
async fn ten_thousand_lines_of_output_never_go_over_slacks_limits() {
    let fake = FakeSlack::start().await;
    let slack = adapter_for(&fake);
    let output = (1..=10_000)
        .map(|line| format!("{line:05} worker-{} processed <job> & acked", line % 7))
        .collect::<Vec<_>>()
        .join("\n");
    let message = Message::new()
        .header("Diagnosis `bigexec`")
        .text(output.clone())
        .code(output)
        .buttons(vec![Button::new("Restart", "remediate", "restart").danger()]);
    slack.post("CBIG", None, &message).await.unwrap();
    fake.assert_all_accepted();
    let stored = &fake.messages("CBIG")[0];
    let blocks = stored.blocks.as_array().unwrap();
    assert!(blocks.len() <= fake_slack::MAX_BLOCKS);
    assert!(fake_slack::block_text_len(&stored.blocks) <= 12_000);
    assert!(stored.text.chars().count() <= fake_slack::MAX_TEXT);
    assert!(stored.visible_text().contains(TRUNCATED));
    assert_eq!(stored.action_ids(), ["remediate"], "the buttons survive the cut");
}

#[tokio::test]
async fn the_fake_refuses_what_slack_refuses() {
    let fake = FakeSlack::start().await;
    let client = reqwest::Client::new();
    let send = |body: Value| {
        client.post(format!("{}chat.postMessage", fake.api_url())).bearer_auth(fake.token()).json(&body).send()
    };
    let long_section = json!({"channel": "CA1", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x".repeat(3_001)}}]});
    let answer: Value = send(long_section).await.unwrap().json().await.unwrap();
    assert_eq!(answer["error"], "invalid_blocks");
    // A refused post still counts against its channel's one per second: each goes elsewhere.
    let many_blocks = json!({"channel": "CA2", "blocks": vec![json!({"type": "divider"}); 51]});
    let answer: Value = send(many_blocks).await.unwrap().json().await.unwrap();
    assert_eq!(answer["error"], "invalid_blocks");
    let answer: Value =
        send(json!({"channel": "CA3", "text": "x".repeat(40_001)})).await.unwrap().json().await.unwrap();
    assert_eq!(answer["error"], "msg_too_long");
    let too_soon = send(json!({"channel": "CA3", "text": "hi"})).await.unwrap();
    assert_eq!(too_soon.status(), 429);
    assert_eq!(too_soon.headers()["retry-after"], "1");
    assert_eq!(fake.rejected().len(), 3);
    assert_eq!(fake.rate_limited().len(), 1);
    fake.assert_no_unexpected();
}

#[tokio::test]
async fn the_fake_records_calls_slack_would_not_expect() {
    let mut fake = FakeSlack::start().await;
    let client = reqwest::Client::new();
    client
        .post(format!("{}chat.meMessage", fake.api_url()))
        .bearer_auth(fake.token())
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    client
        .post(format!("{}chat.postMessage", fake.api_url()))
        .json(&json!({"channel": "C1", "text": "no token"}))
        .send()
        .await
        .unwrap();
    client
        .post(format!("{}chat.postMessage", fake.api_url()))
        .bearer_auth(fake.token())
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(fake.unexpected().len(), 3, "{:?}", fake.unexpected());
    assert!(std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fake.assert_no_unexpected())).is_err());
    fake.allow_unexpected();
}

#[tokio::test]
async fn slack_errors_never_carry_the_token() {
    let fake = FakeSlack::start().await;
    let slack = adapter_for(&fake);
    let refused = slack.post("not-a-channel", None, &Message::plain("hi")).await.unwrap_err();
    assert!(matches!(&refused, ChatError::Refused(reason) if reason == "channel_not_found"), "{refused:?}");

    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}/api/", closed.local_addr().unwrap());
    drop(closed);
    let unreachable = SlackAdapter::with_api_url(&Secret::new(&fake.token()), &dead_url, None)
        .unwrap()
        .post("C1", None, &Message::plain("hi"))
        .await
        .unwrap_err();
    assert!(matches!(unreachable, ChatError::Unreachable(_)), "{unreachable:?}");

    let wrong = SlackAdapter::with_api_url(&Secret::new("xoxb-wrong-token"), &fake.api_url(), None).unwrap();
    let invalid = wrong
        .update(&MessageRef { channel: "C1".into(), id: "1.000001".into() }, &Message::plain("x"))
        .await
        .unwrap_err();
    assert!(matches!(&invalid, ChatError::Refused(reason) if reason == "invalid_auth"), "{invalid:?}");

    for error in [&refused, &unreachable, &invalid] {
        for shown in [error.to_string(), format!("{error:?}")] {
            assert!(!shown.contains(&fake.token()) && !shown.contains("xoxb-wrong-token"), "{shown}");
        }
    }
    assert!(!format!("{slack:?}").contains(&fake.token()));
}

/// A handler that records what it is given and answers with a fixed reply (a form only to
/// what can open one: the form's submission is answered with nothing).
struct Recorder {
    events: Mutex<Vec<ChatEvent>>,
    seen: Mutex<HashSet<String>>,
    reply: Reply,
    delay: Duration,
}

impl Recorder {
    fn new(reply: Reply) -> Arc<Recorder> {
        Recorder::slow(reply, Duration::ZERO)
    }

    fn slow(reply: Reply, delay: Duration) -> Arc<Recorder> {
        Arc::new(Recorder { events: Mutex::new(Vec::new()), seen: Mutex::new(HashSet::new()), reply, delay })
    }

    fn events(&self) -> Vec<ChatEvent> {
        self.events.lock().unwrap().clone()
    }

    /// The events once there are `count` (waiting up to 10 s): a click is acknowledged before
    /// it is handled.
    async fn wait_for_events(&self, count: usize) -> Vec<ChatEvent> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.events().len() < count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.events()
    }
}

#[async_trait]
impl ChatHandler for Recorder {
    async fn handle(&self, event: ChatEvent) -> Reply {
        let submitted = matches!(event, ChatEvent::FormSubmitted { .. });
        self.events.lock().unwrap().push(event);
        tokio::time::sleep(self.delay).await;
        match &self.reply {
            Reply::Form(_) if submitted => Reply::Nothing,
            reply => reply.clone(),
        }
    }

    async fn first_seen(&self, key: &str) -> bool {
        self.seen.lock().unwrap().insert(key.to_string())
    }
}

struct Endpoints {
    base: String,
    client: reqwest::Client,
}

async fn serve(router: axum::Router) -> Endpoints {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Endpoints { base, client: reqwest::Client::new() }
}

async fn endpoints(handler: Arc<Recorder>) -> Endpoints {
    serve(http::routes(handler, Secret::new(SIGNING_SECRET))).await
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

fn form(fields: &[(&str, &str)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in fields {
        serializer.append_pair(key, value);
    }
    serializer.finish()
}

fn slash_command(text: &str) -> String {
    slash_command_answered_at(text, "https://hooks.slack.com/commands/1234/5678")
}

fn slash_command_answered_at(text: &str, response_url: &str) -> String {
    form(&[
        ("token", "gIkuvaNzQIHg97ATvDxqgjtO"),
        ("team_id", "T0001"),
        ("team_domain", "example"),
        ("channel_id", "C2147483705"),
        ("channel_name", "incidents"),
        ("user_id", "U2147483697"),
        ("user_name", "steve"),
        ("command", "/diagnose"),
        ("text", text),
        ("api_app_id", "A123456"),
        ("response_url", response_url),
        ("trigger_id", "13345224609.738474920.8088930838d88f008e0"),
    ])
}

impl Endpoints {
    async fn send(&self, path: &str, content_type: &str, body: &str, headers: &[(&str, String)]) -> reqwest::Response {
        let mut request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        request.send().await.unwrap()
    }

    /// Sends `body` signed as Slack signs it.
    async fn signed(&self, path: &str, content_type: &str, body: &str, extra: &[(&str, String)]) -> reqwest::Response {
        let timestamp = now();
        let mut headers = vec![
            ("x-slack-request-timestamp", timestamp.to_string()),
            ("x-slack-signature", signature(SIGNING_SECRET, timestamp, body)),
        ];
        headers.extend(extra.iter().cloned());
        self.send(path, content_type, body, &headers).await
    }
}

const FORM: &str = "application/x-www-form-urlencoded";

#[tokio::test]
async fn a_signed_slash_command_is_answered_at_once_with_the_private_reply() {
    let handler = Recorder::new(Reply::private("Unknown topic 'queu'. Valid: `queue`, `postgres`."));
    let slack = endpoints(handler.clone()).await;
    let response = slack.signed("/slack/commands", FORM, &slash_command("queu queue=signals"), &[]).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["response_type"], "ephemeral");
    assert_eq!(body["text"], "Unknown topic 'queu'. Valid: `queue`, `postgres`.");
    assert_eq!(body["blocks"][0]["type"], "section");
    match &handler.events()[..] {
        [ChatEvent::Command { origin, text }] => {
            assert_eq!(text, "/diagnose queu queue=signals");
            assert_eq!(origin.user.to_string(), "slack:U2147483697");
            assert_eq!(origin.channel, "C2147483705");
            assert_eq!(origin.thread, None);
        }
        other => panic!("{other:?}"),
    }

    let nothing = Recorder::new(Reply::Nothing);
    let slack = endpoints(nothing).await;
    let response = slack.signed("/slack/commands", FORM, &slash_command("queue"), &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "");
}

#[tokio::test]
async fn bad_missing_and_stale_signatures_are_refused_and_nothing_happens() {
    let handler = Recorder::new(Reply::Nothing);
    let slack = endpoints(handler.clone()).await;
    let body = slash_command("queue");
    let timestamp = now();
    let attempts = [
        (
            "bad signature",
            vec![
                ("x-slack-request-timestamp", timestamp.to_string()),
                ("x-slack-signature", signature("not-the-secret", timestamp, &body)),
            ],
        ),
        ("missing signature", vec![("x-slack-request-timestamp", timestamp.to_string())]),
        ("missing timestamp", vec![("x-slack-signature", signature(SIGNING_SECRET, timestamp, &body))]),
        (
            "six minutes old",
            vec![
                ("x-slack-request-timestamp", (timestamp - 360).to_string()),
                ("x-slack-signature", signature(SIGNING_SECRET, timestamp - 360, &body)),
            ],
        ),
        (
            "six minutes ahead",
            vec![
                ("x-slack-request-timestamp", (timestamp + 360).to_string()),
                ("x-slack-signature", signature(SIGNING_SECRET, timestamp + 360, &body)),
            ],
        ),
        (
            "body changed after signing",
            vec![
                ("x-slack-request-timestamp", timestamp.to_string()),
                ("x-slack-signature", signature(SIGNING_SECRET, timestamp, "command=%2Fother")),
            ],
        ),
    ];
    for path in ["/slack/commands", "/slack/interactions", "/slack/events"] {
        for (what, headers) in &attempts {
            let response = slack.send(path, FORM, &body, headers).await;
            assert_eq!(response.status(), 401, "{what} on {path}");
            assert!(!response.text().await.unwrap().is_empty(), "{what} says why");
        }
    }
    assert!(handler.events().is_empty(), "the handler was called: {:?}", handler.events());
    assert!(handler.seen.lock().unwrap().is_empty());

    // Within the window is fine (clocks drift a little).
    let timestamp = now() - 240;
    let headers = [
        ("x-slack-request-timestamp", timestamp.to_string()),
        ("x-slack-signature", signature(SIGNING_SECRET, timestamp, &body)),
    ];
    assert_eq!(slack.send("/slack/commands", FORM, &body, &headers).await.status(), 200);
}

fn app_mention(event_id: &str) -> String {
    json!({
        "token": "XXYYZZ", "team_id": "T0001", "api_app_id": "A0001", "type": "event_callback",
        "event_id": event_id, "event_time": 1_700_000_000,
        "authorizations": [{"enterprise_id": null, "team_id": "T0001", "user_id": "UBOT", "is_bot": true}],
        "event": {
            "type": "app_mention", "user": "U0001", "channel": "C0001", "text": "<@UBOT> diagnose queue queue=signals",
            "ts": "1700000100.000200", "thread_ts": "1700000000.000100", "event_ts": "1700000100.000200"
        }
    })
    .to_string()
}

#[tokio::test]
async fn an_event_delivered_twice_reaches_the_handler_once() {
    let handler = Recorder::new(Reply::Nothing);
    let slack = endpoints(handler.clone()).await;
    let body = app_mention("Ev0PV52K21");
    let first = slack.signed("/slack/events", "application/json", &body, &[]).await;
    assert_eq!(first.status(), 200);
    let retry = slack
        .signed(
            "/slack/events",
            "application/json",
            &body,
            &[("x-slack-retry-num", "1".into()), ("x-slack-retry-reason", "http_timeout".into())],
        )
        .await;
    assert_eq!(retry.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    while handler.events().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    match &handler.events()[..] {
        [ChatEvent::Command { origin, text }] => {
            assert_eq!(text, "/diagnose queue queue=signals");
            assert_eq!(origin.channel, "C0001");
            assert_eq!(origin.thread.as_deref(), Some("1700000000.000100"));
        }
        other => panic!("expected one command, got {other:?}"),
    }

    slack.signed("/slack/events", "application/json", &app_mention("Ev0PV52K22"), &[]).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while handler.events().len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(handler.events().len(), 2, "a different event is handled");
}

#[tokio::test]
async fn url_verification_echoes_the_challenge() {
    let slack = endpoints(Recorder::new(Reply::Nothing)).await;
    let body = json!({"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"}).to_string();
    let response = slack.signed("/slack/events", "application/json", &body, &[]).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["challenge"], "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P");
}

fn button_click(response_url: &str, trigger: &str) -> String {
    let payload = json!({
        "type": "block_actions",
        "user": {"id": "U0003", "username": "maria", "name": "maria", "team_id": "T0001"},
        "api_app_id": "A0001", "token": "9s8d9as89d8as9d8as989", "trigger_id": trigger,
        "team": {"id": "T0001", "domain": "example"},
        "container": {"type": "message", "message_ts": "1700000000.000100", "channel_id": "C0001", "is_ephemeral": false},
        "channel": {"id": "C0001", "name": "incidents"},
        "message": {
            "type": "message", "user": "UBOT", "bot_id": "B0001", "ts": "1700000000.000100", "text": "Incident #7",
            "blocks": [{"type": "actions", "block_id": "x1", "elements": [{"type": "button", "action_id": "ack", "text": {"type": "plain_text", "text": "Acknowledge"}, "value": "7"}]}]
        },
        "response_url": response_url,
        "actions": [{"type": "button", "action_id": "ack", "block_id": "x1", "text": {"type": "plain_text", "text": "Acknowledge"}, "value": "7", "action_ts": "1700000200.000300"}]
    });
    form(&[("payload", &payload.to_string())])
}

#[tokio::test]
async fn a_button_click_becomes_a_button_event_and_a_private_reply_goes_to_response_url() {
    let fake = FakeSlack::start().await;
    // A reply that means to mention someone says so; only then is `<@U0001>` a mention.
    let handler = Recorder::new(Reply::Private(
        Message::plain("Incident #7 is already acknowledged by <@U0001>.").mentioning(["slack:U0001"]),
    ));
    let slack = endpoints(handler.clone()).await;
    let response =
        slack.signed("/slack/interactions", FORM, &button_click(&fake.response_url("r1"), "trigger-click"), &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "", "a click is acknowledged with an empty answer");
    match &handler.wait_for_events(1).await[..] {
        [ChatEvent::Button { origin, action, value, message }] => {
            assert_eq!((action.as_str(), value.as_str()), ("ack", "7"));
            assert_eq!(origin.user.to_string(), "slack:U0003");
            assert_eq!(origin.channel, "C0001");
            assert_eq!(origin.thread.as_deref(), Some("1700000000.000100"));
            assert_eq!(message, &Some(MessageRef { channel: "C0001".into(), id: "1700000000.000100".into() }));
        }
        other => panic!("{other:?}"),
    }
    fake.wait_for("the private reply", Duration::from_secs(10), |fake| !fake.responses().is_empty()).await;
    let reply = &fake.responses()[0];
    assert_eq!(reply["response_type"], "ephemeral");
    assert_eq!(reply["replace_original"], false);
    assert_eq!(reply["text"], "Incident #7 is already acknowledged by <@U0001>.");
}

#[tokio::test]
async fn a_slow_handler_is_acknowledged_in_time_and_its_reply_follows() {
    let fake = FakeSlack::start().await;
    let handler = Recorder::slow(Reply::private("Here is the list of topics"), Duration::from_millis(3_200));
    let slack = endpoints(handler).await;
    let body = slash_command_answered_at("", &fake.response_url("late"));
    let response = slack.signed("/slack/commands", FORM, &body, &[]).await;
    // "Working on it…" is only ever the answer when the handler has not finished (it takes 3.2 s).
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["text"], "Working on it…");
    fake.wait_for("the late reply", Duration::from_secs(10), |fake| !fake.responses().is_empty()).await;
    assert_eq!(fake.responses()[0]["text"], "Here is the list of topics");
}

fn view_submission(metadata: &str) -> String {
    let payload = json!({
        "type": "view_submission",
        "team": {"id": "T0001", "domain": "example"},
        "user": {"id": "U0003", "username": "maria", "name": "maria", "team_id": "T0001"},
        "api_app_id": "A0001", "token": "x", "trigger_id": "12466734323.1395872398.abc",
        "view": {
            "id": "V0001", "team_id": "T0001", "type": "modal", "callback_id": "resolve", "private_metadata": metadata,
            "title": {"type": "plain_text", "text": "Resolve incident #7"},
            "blocks": [
                {"type": "input", "block_id": "root_cause", "label": {"type": "plain_text", "text": "Root cause"}, "element": {"type": "plain_text_input", "action_id": "root_cause", "multiline": true}},
                {"type": "input", "block_id": "prevention", "optional": true, "label": {"type": "plain_text", "text": "Prevention"}, "element": {"type": "plain_text_input", "action_id": "prevention"}}
            ],
            "state": {"values": {
                "root_cause": {"root_cause": {"type": "plain_text_input", "value": "Migration held a lock"}},
                "prevention": {"prevention": {"type": "plain_text_input", "value": null}}
            }},
            "hash": "156772938.1827394", "app_id": "A0001", "bot_id": "B0001"
        }
    });
    form(&[("payload", &payload.to_string())])
}

#[tokio::test]
async fn a_form_opened_from_a_click_comes_back_as_form_submitted_from_the_same_place() {
    let fake = FakeSlack::start().await;
    let adapter = Arc::new(adapter_for(&fake));
    // The core answers the click with a form: the endpoint opens it with the click's trigger.
    let handler = Recorder::new(Reply::Form(resolve_form()));
    let slack = serve(http::routes_with_adapter(handler.clone(), Secret::new(SIGNING_SECRET), adapter)).await;
    slack
        .signed("/slack/interactions", FORM, &button_click(&fake.response_url("r2"), "trigger-resolve-form"), &[])
        .await;
    fake.wait_for("the modal", Duration::from_secs(10), |fake| !fake.views().is_empty()).await;
    assert_eq!(fake.accepted("views.open")[0].body["trigger_id"], "trigger-resolve-form");
    assert!(fake.responses().is_empty(), "a form that opened is the whole answer");
    let metadata = fake.views()[0]["private_metadata"].as_str().unwrap().to_string();

    let response = slack.signed("/slack/interactions", FORM, &view_submission(&metadata), &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "", "an empty answer closes the modal");
    match &handler.wait_for_events(2).await[1] {
        ChatEvent::FormSubmitted { origin, action, value, fields } => {
            assert_eq!((action.as_str(), value.as_str()), ("resolve", "7"));
            assert_eq!(origin.user.to_string(), "slack:U0003");
            assert_eq!(origin.channel, "C0001");
            assert_eq!(origin.thread.as_deref(), Some("1700000000.000100"));
            assert_eq!(fields["root_cause"], "Migration held a lock");
            assert_eq!(fields["prevention"], "");
        }
        other => panic!("{other:?}"),
    }

    let refusing = endpoints(Recorder::new(Reply::private("Incident #7 is already resolved."))).await;
    let response = refusing.signed("/slack/interactions", FORM, &view_submission(&metadata), &[]).await;
    let answer: Value = response.json().await.unwrap();
    assert_eq!(
        answer,
        json!({"response_action": "errors", "errors": {"root_cause": "Incident #7 is already resolved."}})
    );
    fake.assert_all_accepted();
}

#[tokio::test]
async fn a_form_answering_a_slash_command_opens_with_its_trigger_or_says_what_to_type() {
    let fake = FakeSlack::start().await;
    let adapter = Arc::new(adapter_for(&fake));
    let handler = Recorder::new(Reply::Form(resolve_form()));
    let slack = serve(http::routes_with_adapter(handler, Secret::new(SIGNING_SECRET), adapter)).await;
    let response = slack.signed("/slack/commands", FORM, &slash_command("resolve"), &[]).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "", "the modal is the answer");
    assert_eq!(fake.accepted("views.open")[0].body["trigger_id"], "13345224609.738474920.8088930838d88f008e0");
    let metadata: Value = serde_json::from_str(fake.views()[0]["private_metadata"].as_str().unwrap()).unwrap();
    assert_eq!(metadata, json!({"value": "7", "channel": "C2147483705"}));

    // Without a Web API client nothing can open a modal: the reply says what to type instead.
    let without = endpoints(Recorder::new(Reply::Form(resolve_form()))).await;
    let response = without.signed("/slack/commands", FORM, &slash_command("resolve"), &[]).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["text"], "resolve with: /incident resolve id=7 root_cause=\"…\"");
    fake.assert_all_accepted();
}

#[tokio::test]
async fn a_private_reply_to_an_app_mention_is_posted_ephemerally() {
    let fake = FakeSlack::start().await;
    let adapter = Arc::new(adapter_for(&fake));
    let handler = Recorder::new(Reply::private("Unknown command `/diagnose queue queue=signals`?"));
    let slack = serve(http::routes_with_adapter(handler, Secret::new(SIGNING_SECRET), adapter)).await;
    slack.signed("/slack/events", "application/json", &app_mention("Ev0EPHEMERAL"), &[]).await;
    fake.wait_for("the ephemeral reply", Duration::from_secs(10), |fake| !fake.ephemerals().is_empty()).await;
    let ephemeral = &fake.ephemerals()[0];
    assert_eq!((ephemeral["channel"].as_str(), ephemeral["user"].as_str()), (Some("C0001"), Some("U0001")));
    assert_eq!(ephemeral["thread_ts"], "1700000000.000100");
    fake.assert_all_accepted();
}
