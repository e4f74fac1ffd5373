//! A fake Discord REST API (v10) for tests, on 127.0.0.1 (port 0): the routes firebell calls,
//! answered with realistic JSON, every call recorded with the time it arrived.
//!
//! Like Discord it keeps channels, threads (a thread started from a message has the message's
//! id) and messages; answers `10003 Unknown Channel` for a channel it does not have and
//! `160004` for a second thread from one message; refuses bodies over Discord's limits (2,000
//! characters of content, 10 embeds and 6,000 characters across them, 4,096 per description,
//! 25 fields, 5 rows of 5 buttons, labels of 80, custom ids of 100 and unique, modal titles of
//! 45…) with 400 `50035 Invalid Form Body`; sends `X-RateLimit-*` headers on every answer and
//! answers 429 with `Retry-After` (and `X-RateLimit-Scope`) when called faster than one post per
//! second per channel, one edit per two seconds per message, five calls per five seconds per
//! route and channel, or 50 per second in all. It can be told to answer 429 to the next calls.
//!
//! Anything Discord would call a client bug — an unknown route, a missing or wrong token, a
//! body over the limits, a second answer to one interaction — is recorded as unexpected, and the
//! test fails when the fake is dropped (or at [`FakeDiscord::assert_no_unexpected`]).

#![allow(dead_code)]

pub mod app;
pub mod gateway;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub const TOKEN: &str = "fake-discord-bot-token.0123456789.secret";
pub const APPLICATION: &str = "1100000000000000001";
pub const GUILD: &str = "1100000000000000002";
/// Where incident notifications go.
pub const INCIDENTS: &str = "1100000000000000010";
/// An ordinary channel people type commands in.
pub const OPS: &str = "1100000000000000011";

pub const MAX_CONTENT: usize = 2_000;
pub const MAX_EMBEDS: usize = 10;
pub const MAX_EMBED_TOTAL: usize = 6_000;
pub const MAX_DESCRIPTION: usize = 4_096;
pub const MAX_FIELDS: usize = 25;
/// Discord's per-route bucket for these fakes: five calls per five seconds.
pub const BUCKET_SIZE: usize = 5;
pub const BUCKET_WINDOW: Duration = Duration::from_secs(5);

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    /// The path under `/api/v10/`.
    pub path: String,
    /// The JSON body (for multipart, `payload_json` with `files` added: `[{"name", "content"}]`).
    pub body: Value,
    pub at: Instant,
    pub status: u16,
}

/// A message as it stands in the fake (after any edits).
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub id: String,
    pub channel: String,
    pub content: String,
    pub embeds: Value,
    pub components: Value,
    /// `(filename, content)` of its attachments.
    pub files: Vec<(String, String)>,
    pub edits: usize,
    /// When the fake received the post that created it (edits are `PATCH` calls).
    pub posted_at: Instant,
}

impl StoredMessage {
    /// What a person reads: the content, then each embed's title, description and fields.
    pub fn visible_text(&self) -> String {
        let mut parts = vec![self.content.clone()];
        for embed in self.embeds.as_array().into_iter().flatten() {
            for key in ["title", "description"] {
                if let Some(text) = embed.get(key).and_then(Value::as_str) {
                    parts.push(text.to_string());
                }
            }
            for field in embed.get("fields").and_then(Value::as_array).into_iter().flatten() {
                parts.push(format!(
                    "{}: {}",
                    field["name"].as_str().unwrap_or(""),
                    field["value"].as_str().unwrap_or("")
                ));
            }
        }
        parts.retain(|part| !part.is_empty());
        parts.join("\n")
    }

    /// `(label, custom_id)` of every button.
    pub fn buttons(&self) -> Vec<(String, String)> {
        let mut buttons = Vec::new();
        for row in self.components.as_array().into_iter().flatten() {
            for button in row.get("components").and_then(Value::as_array).into_iter().flatten() {
                buttons.push((
                    button["label"].as_str().unwrap_or("").to_string(),
                    button["custom_id"].as_str().unwrap_or("").to_string(),
                ));
            }
        }
        buttons
    }

    pub fn custom_id(&self, label: &str) -> String {
        self.buttons()
            .into_iter()
            .find(|(shown, _)| shown == label)
            .map(|(_, id)| id)
            .unwrap_or_else(|| panic!("no '{label}' button on the message; buttons: {:?}", self.buttons()))
    }
}

#[derive(Debug, Clone)]
pub struct Thread {
    pub id: String,
    pub parent: String,
    pub name: String,
}

struct FakeState {
    calls: Vec<Call>,
    unexpected: Vec<String>,
    /// Text channels (and DM channels once opened): id → parent for threads.
    channels: HashMap<String, Option<String>>,
    threads: Vec<Thread>,
    messages: Vec<StoredMessage>,
    next_id: u64,
    forced_429: Vec<(String, u32, f64)>,
    /// 429s whose only wait is `retry_after` in the body, as written (a broken or hostile peer).
    forced_raw_429: Vec<(String, u32, Value)>,
    last_post: HashMap<String, Instant>,
    last_edit: HashMap<String, Instant>,
    buckets: HashMap<String, Vec<Instant>>,
    global: Vec<Instant>,
    interaction_answers: HashMap<String, Value>,
    commands: Vec<(String, Value)>,
    /// `ws://…` the gateway route hands out.
    gateway_url: Option<String>,
}

impl FakeState {
    fn next_id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }
}

type Shared = Arc<Mutex<FakeState>>;

pub struct FakeDiscord {
    address: SocketAddr,
    state: Shared,
    server: tokio::task::JoinHandle<()>,
    check_on_drop: bool,
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        self.server.abort();
        if self.check_on_drop && !std::thread::panicking() {
            self.assert_no_unexpected();
        }
    }
}

impl FakeDiscord {
    /// A fake guild with the channels [`INCIDENTS`] and [`OPS`], accepting [`TOKEN`].
    pub async fn start() -> FakeDiscord {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake Discord API");
        let address = listener.local_addr().expect("fake Discord address");
        let channels = [(INCIDENTS.to_string(), None), (OPS.to_string(), None)].into_iter().collect();
        let state = Arc::new(Mutex::new(FakeState {
            calls: Vec::new(),
            unexpected: Vec::new(),
            channels,
            threads: Vec::new(),
            messages: Vec::new(),
            next_id: 1_300_000_000_000_000_000,
            forced_429: Vec::new(),
            forced_raw_429: Vec::new(),
            last_post: HashMap::new(),
            last_edit: HashMap::new(),
            buckets: HashMap::new(),
            global: Vec::new(),
            interaction_answers: HashMap::new(),
            commands: Vec::new(),
            gateway_url: None,
        }));
        let router = Router::new().fallback(api).with_state(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("fake Discord API server");
        });
        FakeDiscord { address, state, server, check_on_drop: true }
    }

    /// For `discord.api_url`.
    pub fn api_url(&self) -> String {
        format!("http://{}/api/", self.address)
    }

    /// What `GET /gateway/bot` answers.
    pub fn set_gateway_url(&self, url: &str) {
        self.state().gateway_url = Some(url.to_string());
    }

    /// The next `count` calls whose route contains `route` (`POST channels/…/messages`) are
    /// answered 429 with `Retry-After: retry_after` seconds.
    pub fn rate_limit_next(&self, route: &str, count: u32, retry_after: f64) {
        self.state().forced_429.push((route.to_string(), count, retry_after));
    }

    /// The next `count` calls whose route contains `route` are answered 429 with no
    /// `Retry-After` header and `retry_after` in the body as given, however nonsensical.
    pub fn rate_limit_next_with_body(&self, route: &str, count: u32, retry_after: Value) {
        self.state().forced_raw_429.push((route.to_string(), count, retry_after));
    }

    pub fn allow_unexpected(&mut self) {
        self.check_on_drop = false;
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Calls whose `METHOD path` contains `route` (e.g. `PATCH channels/`).
    pub fn calls_to(&self, route: &str) -> Vec<Call> {
        self.calls().into_iter().filter(|call| format!("{} {}", call.method, call.path).contains(route)).collect()
    }

    pub fn rate_limited(&self) -> Vec<Call> {
        self.calls().into_iter().filter(|call| call.status == 429).collect()
    }

    /// Calls Discord refused (4xx other than 429, 5xx).
    pub fn refused(&self) -> Vec<Call> {
        self.calls().into_iter().filter(|call| call.status >= 400 && call.status != 429).collect()
    }

    pub fn unexpected(&self) -> Vec<String> {
        self.state().unexpected.clone()
    }

    pub fn assert_no_unexpected(&self) {
        let what = "the fake Discord API got calls Discord would refuse as client bugs";
        crate::support::fakes::assert_none(what, &self.unexpected());
    }

    /// No unexpected call, and no 429 either: firebell paced itself.
    pub fn assert_paced(&self) {
        self.assert_no_unexpected();
        let limited: Vec<String> =
            self.rate_limited().iter().map(|call| format!("{} {}", call.method, call.path)).collect();
        crate::support::fakes::assert_none("firebell called faster than Discord allows", &limited);
    }

    /// Messages in `channel` (a thread is a channel), in order, as edited.
    pub fn messages(&self, channel: &str) -> Vec<StoredMessage> {
        self.state().messages.iter().filter(|message| message.channel == channel).cloned().collect()
    }

    pub fn message(&self, id: &str) -> Option<StoredMessage> {
        self.state().messages.iter().find(|message| message.id == id).cloned()
    }

    pub fn threads(&self) -> Vec<Thread> {
        self.state().threads.clone()
    }

    /// The first answer given to interaction `id` through its callback (gateway path).
    pub fn interaction_answer(&self, id: &str) -> Option<Value> {
        self.state().interaction_answers.get(id).cloned()
    }

    /// `(path, body)` of every command registration.
    pub fn registrations(&self) -> Vec<(String, Value)> {
        self.state().commands.clone()
    }

    /// Waits until `condition` holds for the fake, or panics after `timeout`.
    pub async fn wait_for(&self, what: &str, timeout: Duration, condition: impl Fn(&FakeDiscord) -> bool) {
        let saw = || {
            let calls = self.calls();
            calls
                .iter()
                .map(|call| format!("{} {} → {}", call.method, call.path, call.status))
                .collect::<Vec<_>>()
                .join("\n")
        };
        crate::support::fakes::wait_until(what, timeout, || condition(self), saw).await;
    }

    /// Waits for a message in `channel` that satisfies `condition`.
    pub async fn wait_message(
        &self,
        what: &str,
        channel: &str,
        timeout: Duration,
        condition: impl Fn(&StoredMessage) -> bool,
    ) -> StoredMessage {
        self.wait_for(what, timeout, |fake| fake.messages(channel).iter().any(&condition)).await;
        self.messages(channel).into_iter().find(condition).expect("the message is there")
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake Discord state")
    }
}

fn json_response(status: StatusCode, body: Value, headers: Vec<(&'static str, String)>) -> Response {
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    for (name, value) in headers {
        response.headers_mut().insert(name, value.parse().expect("a header value"));
    }
    response
}

/// An answer: status, body, and whether it was a client bug.
struct Answer {
    status: StatusCode,
    body: Value,
    bug: Option<String>,
    retry_after: Option<(f64, &'static str)>,
}

impl Answer {
    fn ok(body: Value) -> Answer {
        Answer { status: StatusCode::OK, body, bug: None, retry_after: None }
    }

    fn no_content() -> Answer {
        Answer { status: StatusCode::NO_CONTENT, body: Value::Null, bug: None, retry_after: None }
    }

    fn error(status: StatusCode, code: i64, message: &str) -> Answer {
        Answer { status, body: json!({"code": code, "message": message}), bug: None, retry_after: None }
    }

    fn bug(status: StatusCode, code: i64, message: &str, why: String) -> Answer {
        Answer { bug: Some(why), ..Answer::error(status, code, message) }
    }

    fn invalid(why: String) -> Answer {
        Answer::bug(StatusCode::BAD_REQUEST, 50_035, "Invalid Form Body", why)
    }
}

async fn api(State(state): State<Shared>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let path = uri.path().to_string();
    let Some(route) = path.strip_prefix("/api/v10/").map(str::to_string) else {
        return finish(
            &state,
            &method,
            &path,
            Value::Null,
            Answer::bug(StatusCode::NOT_FOUND, 0, "404: Not Found", format!("{method} {path}: not under /api/v10/")),
            None,
        );
    };
    let parsed = match parse_body(&headers, &body) {
        Ok(parsed) => parsed,
        Err(why) => return finish(&state, &method, &route, Value::Null, Answer::invalid(why), None),
    };
    let is_interaction = route.starts_with("interactions/");
    if !is_interaction {
        let authorized =
            headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()) == Some(&format!("Bot {TOKEN}"));
        if !authorized {
            let answer =
                Answer::bug(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized", "no or wrong bot token".to_string());
            return finish(&state, &method, &route, parsed, answer, None);
        }
    }
    let agent = headers.get(header::USER_AGENT).and_then(|value| value.to_str().ok()).unwrap_or("");
    if !agent.starts_with("DiscordBot (") {
        let answer = Answer::bug(
            StatusCode::BAD_REQUEST,
            0,
            "bad user agent",
            format!("User-Agent '{agent}' is not 'DiscordBot (url, version)'"),
        );
        return finish(&state, &method, &route, parsed, answer, None);
    }
    let segments: Vec<&str> = route.split('/').collect();
    let bucket = bucket_key(&method, &segments);
    if let Some(limited) = rate_limit(&state, &method, &route, &segments, &bucket) {
        return finish(&state, &method, &route, parsed, limited, Some(&bucket));
    }
    let answer = {
        let mut state = state.lock().expect("fake Discord state");
        handle(&mut state, &method, &segments, &parsed)
    };
    finish(&state, &method, &route, parsed, answer, Some(&bucket))
}

fn finish(state: &Shared, method: &Method, route: &str, body: Value, answer: Answer, bucket: Option<&str>) -> Response {
    let mut state = state.lock().expect("fake Discord state");
    if let Some(why) = &answer.bug {
        state.unexpected.push(format!("{method} {route}: {why}"));
    }
    state.calls.push(Call {
        method: method.to_string(),
        path: route.to_string(),
        body,
        at: Instant::now(),
        status: answer.status.as_u16(),
    });
    let mut headers = Vec::new();
    if let Some(bucket) = bucket {
        let now = Instant::now();
        let used = state
            .buckets
            .get(bucket)
            .map_or(0, |calls| calls.iter().filter(|at| now.duration_since(**at) < BUCKET_WINDOW).count());
        let reset_after = state
            .buckets
            .get(bucket)
            .and_then(|calls| calls.iter().find(|at| now.duration_since(**at) < BUCKET_WINDOW))
            .map_or(BUCKET_WINDOW.as_secs_f64(), |oldest| (BUCKET_WINDOW - now.duration_since(*oldest)).as_secs_f64());
        headers.push(("x-ratelimit-limit", BUCKET_SIZE.to_string()));
        headers.push(("x-ratelimit-remaining", BUCKET_SIZE.saturating_sub(used).to_string()));
        headers.push(("x-ratelimit-reset-after", format!("{reset_after:.3}")));
        // The same hash for the same route shape in every channel, as Discord does.
        let shape: String = bucket.chars().filter(|c| !c.is_ascii_digit()).collect();
        headers.push(("x-ratelimit-bucket", format!("{:x}", fxhash(&shape))));
    }
    if let Some((retry_after, scope)) = answer.retry_after {
        headers.push(("retry-after", format!("{}", retry_after.ceil() as u64)));
        headers.push(("x-ratelimit-scope", scope.to_string()));
        if scope == "global" {
            headers.push(("x-ratelimit-global", "true".to_string()));
        }
        let body =
            json!({"message": "You are being rate limited.", "retry_after": retry_after, "global": scope == "global"});
        return json_response(StatusCode::TOO_MANY_REQUESTS, body, headers);
    }
    if answer.status == StatusCode::NO_CONTENT {
        let mut response = StatusCode::NO_CONTENT.into_response();
        for (name, value) in headers {
            response.headers_mut().insert(name, value.parse().expect("a header value"));
        }
        return response;
    }
    json_response(answer.status, answer.body, headers)
}

fn fxhash(text: &str) -> u64 {
    text.bytes().fold(0xcbf29ce484222325u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x100000001b3))
}

/// The route's bucket: the method, the route with minor ids replaced, and its major id.
fn bucket_key(method: &Method, segments: &[&str]) -> String {
    let shape: Vec<String> = segments
        .iter()
        .enumerate()
        .map(|(index, segment)| {
            let major = index > 0 && matches!(segments[index - 1], "channels" | "guilds" | "webhooks");
            if !major && index > 0 && segment.bytes().all(|byte| byte.is_ascii_digit()) {
                ":id".to_string()
            } else {
                segment.to_string()
            }
        })
        .collect();
    format!("{method} {}", shape.join("/"))
}

/// Forced 429s, the global limit, the route bucket, and SPEC §8's post and edit spacing.
fn rate_limit(state: &Shared, method: &Method, route: &str, segments: &[&str], bucket: &str) -> Option<Answer> {
    let mut state = state.lock().expect("fake Discord state");
    let whole = format!("{method} {route}");
    let limited = |retry_after: f64, scope: &'static str| Answer {
        status: StatusCode::TOO_MANY_REQUESTS,
        body: Value::Null,
        bug: None,
        retry_after: Some((retry_after, scope)),
    };
    if let Some(forced) =
        state.forced_raw_429.iter_mut().find(|(pattern, count, _)| *count > 0 && whole.contains(pattern.as_str()))
    {
        forced.1 -= 1;
        let body = json!({"message": "You are being rate limited.", "retry_after": forced.2.clone(), "global": false});
        return Some(Answer { status: StatusCode::TOO_MANY_REQUESTS, body, bug: None, retry_after: None });
    }
    if let Some(forced) =
        state.forced_429.iter_mut().find(|(pattern, count, _)| *count > 0 && whole.contains(pattern.as_str()))
    {
        forced.1 -= 1;
        return Some(limited(forced.2, "user"));
    }
    let now = Instant::now();
    if !matches!(segments.first(), Some(&"interactions") | Some(&"webhooks")) {
        state.global.retain(|at| now.duration_since(*at) < Duration::from_secs(1));
        if state.global.len() >= 50 {
            return Some(limited(1.0, "global"));
        }
        state.global.push(now);
    }
    let calls = state.buckets.entry(bucket.to_string()).or_default();
    calls.retain(|at| now.duration_since(*at) < BUCKET_WINDOW);
    if calls.len() >= BUCKET_SIZE {
        let wait = BUCKET_WINDOW - now.duration_since(calls[0]);
        return Some(limited(wait.as_secs_f64(), "user"));
    }
    calls.push(now);
    // One post per second per channel, one edit per two seconds per message (SPEC §8).
    match (method.as_str(), segments) {
        ("POST", ["channels", channel, "messages"]) => {
            if let Some(last) = state.last_post.get(*channel)
                && now.duration_since(*last) < Duration::from_secs(1)
            {
                return Some(limited(1.0, "user"));
            }
            state.last_post.insert(channel.to_string(), now);
        }
        ("PATCH", ["channels", _, "messages", message]) => {
            if let Some(last) = state.last_edit.get(*message)
                && now.duration_since(*last) < Duration::from_secs(2)
            {
                return Some(limited(2.0, "user"));
            }
            state.last_edit.insert(message.to_string(), now);
        }
        _ => {}
    }
    None
}

/// JSON, or multipart with `payload_json` and `files[n]` (returned as the payload with a
/// `files` array added).
fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, String> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    if content_type.starts_with("application/json") {
        return serde_json::from_slice(body).map_err(|error| format!("body is not JSON: {error}"));
    }
    let Some(boundary) = content_type.strip_prefix("multipart/form-data; boundary=") else {
        return Err(format!("unsupported Content-Type '{content_type}'"));
    };
    let text = String::from_utf8_lossy(body);
    let mut payload = None;
    let mut files = Vec::new();
    for part in text.split(&format!("--{boundary}")).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let (head, content) = part.split_once("\r\n\r\n").ok_or("a multipart part without headers")?;
        let content = content.strip_suffix("\r\n").unwrap_or(content);
        let name = head.split("name=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap_or("");
        if name == "payload_json" {
            payload = Some(
                serde_json::from_str::<Value>(content).map_err(|error| format!("payload_json is not JSON: {error}"))?,
            );
        } else if name.starts_with("files[") {
            let filename = head.split("filename=\"").nth(1).and_then(|rest| rest.split('"').next()).unwrap_or("");
            files.push(json!({"name": name, "filename": filename, "content": content}));
        } else {
            return Err(format!("unknown multipart field '{name}'"));
        }
    }
    let mut payload = payload.ok_or("multipart without payload_json")?;
    payload["files"] = Value::Array(files);
    Ok(payload)
}

fn handle(state: &mut FakeState, method: &Method, segments: &[&str], body: &Value) -> Answer {
    match (method.as_str(), segments) {
        ("POST", ["channels", channel, "messages"]) => create_message(state, channel, body),
        ("PATCH", ["channels", channel, "messages", message]) => edit_message(state, channel, message, body),
        ("POST", ["channels", channel, "messages", message, "threads"]) => start_thread(state, channel, message, body),
        ("POST", ["users", "@me", "channels"]) => {
            let Some(user) = body.get("recipient_id").and_then(Value::as_str) else {
                return Answer::invalid("recipient_id missing".to_string());
            };
            let id = format!("2{user}");
            state.channels.insert(id.clone(), None);
            Answer::ok(json!({"id": id, "type": 1, "recipients": [{"id": user}]}))
        }
        ("PUT", ["applications", application, "commands"] | ["applications", application, "guilds", _, "commands"]) => {
            if *application != APPLICATION {
                return Answer::bug(
                    StatusCode::FORBIDDEN,
                    50_001,
                    "Missing Access",
                    format!("application {application}"),
                );
            }
            if let Err(why) = validate_commands(body) {
                return Answer::invalid(why);
            }
            state.commands.push((segments.join("/"), body.clone()));
            Answer::ok(body.clone())
        }
        ("GET", ["gateway", "bot"]) => match &state.gateway_url {
            Some(url) => Answer::ok(
                json!({"url": url, "shards": 1, "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}}),
            ),
            None => {
                Answer::bug(StatusCode::NOT_FOUND, 0, "no gateway", "the test did not expect the gateway".to_string())
            }
        },
        ("POST", ["interactions", id, _token, "callback"]) => {
            if state.interaction_answers.contains_key(*id) {
                return Answer::bug(
                    StatusCode::BAD_REQUEST,
                    40_060,
                    "Interaction has already been acknowledged.",
                    format!("interaction {id} answered twice"),
                );
            }
            if let Err(why) = validate_interaction_response(body) {
                return Answer::invalid(why);
            }
            state.interaction_answers.insert(id.to_string(), body.clone());
            Answer::no_content()
        }
        ("PATCH", ["webhooks", _, _, "messages", "@original"]) | ("POST", ["webhooks", _, _]) => {
            if let Err(why) = validate_message(body) {
                return Answer::invalid(why);
            }
            Answer::ok(json!({"id": state.next_id()}))
        }
        _ => Answer::bug(StatusCode::NOT_FOUND, 0, "404: Not Found", "not a route firebell should call".to_string()),
    }
}

fn create_message(state: &mut FakeState, channel: &str, body: &Value) -> Answer {
    if !state.channels.contains_key(channel) {
        return Answer::error(StatusCode::NOT_FOUND, 10_003, "Unknown Channel");
    }
    if let Err(why) = validate_message(body) {
        return Answer::invalid(why);
    }
    if body["content"].as_str().unwrap_or("").is_empty()
        && body["embeds"].as_array().is_none_or(Vec::is_empty)
        && body["files"].as_array().is_none_or(Vec::is_empty)
    {
        return Answer::bug(
            StatusCode::BAD_REQUEST,
            50_006,
            "Cannot send an empty message",
            "an empty message".to_string(),
        );
    }
    let id = state.next_id();
    let message = StoredMessage {
        id: id.clone(),
        channel: channel.to_string(),
        content: body["content"].as_str().unwrap_or("").to_string(),
        embeds: body.get("embeds").cloned().unwrap_or(json!([])),
        components: body.get("components").cloned().unwrap_or(json!([])),
        files: files_of(body),
        edits: 0,
        posted_at: Instant::now(),
    };
    state.messages.push(message);
    Answer::ok(json!({"id": id, "channel_id": channel, "content": body["content"], "type": 0}))
}

fn edit_message(state: &mut FakeState, channel: &str, message: &str, body: &Value) -> Answer {
    if let Err(why) = validate_message(body) {
        return Answer::invalid(why);
    }
    let Some(stored) = state.messages.iter_mut().find(|stored| stored.id == message && stored.channel == channel)
    else {
        return Answer::bug(
            StatusCode::NOT_FOUND,
            10_008,
            "Unknown Message",
            format!("no message {message} in channel {channel}"),
        );
    };
    if let Some(content) = body.get("content").and_then(Value::as_str) {
        stored.content = content.to_string();
    }
    if let Some(embeds) = body.get("embeds") {
        stored.embeds = embeds.clone();
    }
    if let Some(components) = body.get("components") {
        stored.components = components.clone();
    }
    if body.get("attachments").is_some() {
        stored.files = files_of(body);
    }
    stored.edits += 1;
    Answer::ok(json!({"id": message, "channel_id": channel}))
}

fn start_thread(state: &mut FakeState, channel: &str, message: &str, body: &Value) -> Answer {
    if !state.messages.iter().any(|stored| stored.id == message && stored.channel == channel) {
        return Answer::error(StatusCode::NOT_FOUND, 10_008, "Unknown Message");
    }
    if state.threads.iter().any(|thread| thread.id == message) {
        return Answer::error(StatusCode::BAD_REQUEST, 160_004, "A thread has already been created for this message");
    }
    let name = body.get("name").and_then(Value::as_str).unwrap_or("");
    if name.is_empty() || name.chars().count() > 100 {
        return Answer::invalid(format!("thread name of {} characters", name.chars().count()));
    }
    if let Some(minutes) = body.get("auto_archive_duration").and_then(Value::as_u64)
        && ![60, 1440, 4320, 10080].contains(&minutes)
    {
        return Answer::invalid(format!("auto_archive_duration {minutes}"));
    }
    state.threads.push(Thread { id: message.to_string(), parent: channel.to_string(), name: name.to_string() });
    state.channels.insert(message.to_string(), Some(channel.to_string()));
    Answer::ok(json!({"id": message, "type": 11, "parent_id": channel, "name": name}))
}

fn files_of(body: &Value) -> Vec<(String, String)> {
    body["files"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|file| {
            (file["filename"].as_str().unwrap_or("").to_string(), file["content"].as_str().unwrap_or("").to_string())
        })
        .collect()
}

fn chars(value: &Value) -> usize {
    value.as_str().map_or(0, |text| text.chars().count())
}

/// Discord's message limits.
pub fn validate_message(body: &Value) -> Result<(), String> {
    if chars(&body["content"]) > MAX_CONTENT {
        return Err(format!("content of {} characters", chars(&body["content"])));
    }
    let embeds = body["embeds"].as_array().cloned().unwrap_or_default();
    if embeds.len() > MAX_EMBEDS {
        return Err(format!("{} embeds", embeds.len()));
    }
    let mut total = 0;
    for embed in &embeds {
        if chars(&embed["title"]) > 256 || chars(&embed["description"]) > MAX_DESCRIPTION {
            return Err("an embed title or description over its limit".to_string());
        }
        let fields = embed["fields"].as_array().cloned().unwrap_or_default();
        if fields.len() > MAX_FIELDS {
            return Err(format!("{} fields in an embed", fields.len()));
        }
        total += chars(&embed["title"]) + chars(&embed["description"]);
        for field in &fields {
            if chars(&field["name"]) > 256 || chars(&field["value"]) > 1024 || chars(&field["value"]) == 0 {
                return Err("a field name or value over its limit, or empty".to_string());
            }
            total += chars(&field["name"]) + chars(&field["value"]);
        }
    }
    if total > MAX_EMBED_TOTAL {
        return Err(format!("{total} characters across embeds"));
    }
    validate_components(&body["components"])
}

fn validate_components(components: &Value) -> Result<(), String> {
    let rows = components.as_array().cloned().unwrap_or_default();
    if rows.len() > 5 {
        return Err(format!("{} action rows", rows.len()));
    }
    let mut ids = HashSet::new();
    for row in &rows {
        let buttons = row["components"].as_array().cloned().unwrap_or_default();
        if row["type"] != 1 || buttons.is_empty() || buttons.len() > 5 {
            return Err(format!("an action row with {} components", buttons.len()));
        }
        for button in &buttons {
            let id = button["custom_id"].as_str().unwrap_or("");
            if chars(&button["label"]) > 80 || id.is_empty() || id.chars().count() > 100 || !ids.insert(id.to_string())
            {
                return Err(format!("a button over its limits or with a repeated custom_id: {button}"));
            }
        }
    }
    Ok(())
}

fn validate_interaction_response(body: &Value) -> Result<(), String> {
    match body["type"].as_u64() {
        Some(1 | 6) => Ok(()),
        Some(4 | 5 | 7) => validate_message(&body["data"]),
        Some(8) => match body["data"]["choices"].as_array() {
            Some(choices) if choices.len() <= 25 => Ok(()),
            _ => Err("autocomplete with more than 25 choices".to_string()),
        },
        Some(9) => validate_modal(&body["data"]),
        other => Err(format!("interaction response type {other:?}")),
    }
}

/// Discord's modal limits.
pub fn validate_modal(modal: &Value) -> Result<(), String> {
    let title = chars(&modal["title"]);
    let rows = modal["components"].as_array().cloned().unwrap_or_default();
    if title == 0 || title > 45 || rows.is_empty() || rows.len() > 5 {
        return Err(format!("a modal with a title of {title} and {} rows", rows.len()));
    }
    if chars(&modal["custom_id"]) > 100 {
        return Err("a modal custom_id over 100".to_string());
    }
    for row in &rows {
        for input in row["components"].as_array().into_iter().flatten() {
            if input["type"] != 4 || chars(&input["label"]) > 45 || chars(&input["custom_id"]) > 100 {
                return Err(format!("a text input over its limits: {input}"));
            }
        }
    }
    Ok(())
}

/// Discord's command limits: names 1–32 lowercase, descriptions 1–100, 25 choices.
fn validate_commands(body: &Value) -> Result<(), String> {
    fn check(option: &Value) -> Result<(), String> {
        let name = option["name"].as_str().unwrap_or("");
        let valid_name = !name.is_empty()
            && name.len() <= 32
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        let description = chars(&option["description"]);
        if !valid_name || description == 0 || description > 100 {
            return Err(format!("bad name or description: {name}"));
        }
        let choices = option["choices"].as_array().cloned().unwrap_or_default();
        if choices.len() > 25
            || choices.iter().any(|choice| chars(&choice["name"]) > 100 || chars(&choice["value"]) > 100)
        {
            return Err(format!("option {name}: too many or too long choices"));
        }
        if !choices.is_empty() && option["autocomplete"] == true {
            return Err(format!("option {name}: choices and autocomplete together"));
        }
        for inner in option["options"].as_array().into_iter().flatten() {
            check(inner)?;
        }
        Ok(())
    }
    let commands = body.as_array().ok_or("commands must be an array")?;
    commands.iter().try_for_each(check)
}
