//! A fake Slack Web API for tests, on 127.0.0.1 (port 0): the methods firebell calls, answered
//! with realistic JSON (slack-morphism's response types are strict), every call recorded with the
//! time it arrived.
//!
//! Like Slack it refuses messages over the limits (`msg_too_long` above 40,000 characters of
//! `text`, `invalid_blocks` above 50 blocks or 3,000 characters in a section,
//! `msg_blocks_too_long` above 13,200 characters of block text), rate-limits `chat.postMessage`
//! to one per second per channel (burst 1) and the other methods to their tier, answering 429
//! with `Retry-After`, and can be told to answer 429 to the next calls of a method.
//!
//! Anything Slack would call a client bug — an unknown method, a missing token, a body that is
//! not the JSON the method takes, an upload to a URL it did not hand out — is recorded as
//! unexpected, and the test fails when the fake is dropped (or at [`FakeSlack::assert_no_unexpected`]).

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use serde_json::{Map, Value, json};

pub const TOKEN: &str = "xoxb-fake-1234567890-secret";
pub const BOT_USER: &str = "UFIREBELL";
pub const BOT_ID: &str = "BFIREBELL";
pub const TEAM: &str = "T0FAKE";

pub const MAX_TEXT: usize = 40_000;
pub const MAX_BLOCKS: usize = 50;
pub const MAX_SECTION_TEXT: usize = 3_000;
/// Where Slack starts answering `msg_blocks_too_long` (undocumented; observed near 13.2k).
pub const MAX_TOTAL_BLOCK_TEXT: usize = 13_200;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Call {
    /// The Web API method (`chat.postMessage`), or `upload` (bytes sent to an upload URL), or
    /// `response_url` (a reply to an interaction).
    pub method: String,
    /// The parsed body (JSON, or the query/form fields as an object; for `upload`,
    /// `{"file_id", "bytes", "content"}`).
    pub body: Value,
    /// When the fake received it.
    pub at: Instant,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    /// Answered `ok: false` with this error, as Slack would.
    Error(String),
    /// Answered 429 with `Retry-After`.
    RateLimited,
}

/// A message as it stands in the fake workspace (after any edits).
#[derive(Debug, Clone)]
pub struct StoredMessage {
    pub channel: String,
    pub ts: String,
    pub thread_ts: Option<String>,
    pub text: String,
    pub blocks: Value,
    pub edits: usize,
    /// When the fake received the `chat.postMessage` that created it.
    pub posted_at: Instant,
}

impl StoredMessage {
    /// The text a person sees: every text object in the blocks, else the fallback `text`.
    pub fn visible_text(&self) -> String {
        let mut texts = Vec::new();
        collect_texts(&self.blocks, &mut texts);
        if texts.is_empty() { self.text.clone() } else { texts.join("\n") }
    }

    pub fn action_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for block in self.blocks.as_array().into_iter().flatten() {
            for element in block.get("elements").and_then(Value::as_array).into_iter().flatten() {
                if let Some(id) = element.get("action_id").and_then(Value::as_str) {
                    ids.push(id.to_string());
                }
            }
        }
        ids
    }
}

/// A file shared with `files.completeUploadExternal`.
#[derive(Debug, Clone)]
pub struct SharedFile {
    pub id: String,
    pub title: Option<String>,
    pub filename: String,
    pub channel: String,
    pub thread_ts: Option<String>,
    pub content: Vec<u8>,
}

struct PendingUpload {
    filename: String,
    length: usize,
    content: Option<Vec<u8>>,
}

struct FakeState {
    base_url: String,
    token: String,
    calls: Vec<Call>,
    unexpected: Vec<String>,
    forced_429: HashMap<String, (u32, u64)>,
    post_interval: Duration,
    last_post: HashMap<String, Instant>,
    recent: HashMap<String, Vec<Instant>>,
    messages: Vec<StoredMessage>,
    counter: u64,
    uploads: HashMap<String, PendingUpload>,
    files: Vec<SharedFile>,
    views: Vec<Value>,
    ephemerals: Vec<Value>,
    responses: Vec<Value>,
    /// The id each response URL was called with, in the order of `responses`.
    response_ids: Vec<String>,
    /// Web API calls are read and never answered (a proxy or a half-open connection that hangs).
    stalled: bool,
    /// Calls that arrived while stalled, by method.
    stalled_calls: Vec<String>,
}

impl FakeState {
    fn next_number(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    fn next_ts(&mut self) -> String {
        let number = self.next_number();
        format!("{}.{:06}", 1_700_000_000 + number, number)
    }
}

type Shared = Arc<Mutex<FakeState>>;

pub struct FakeSlack {
    address: SocketAddr,
    state: Shared,
    server: tokio::task::JoinHandle<()>,
    check_on_drop: bool,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.server.abort();
        if self.check_on_drop && !std::thread::panicking() {
            self.assert_no_unexpected();
        }
    }
}

impl FakeSlack {
    /// A fake workspace accepting the bot token [`TOKEN`].
    pub async fn start() -> FakeSlack {
        FakeSlack::start_with_token(TOKEN).await
    }

    pub async fn start_with_token(token: &str) -> FakeSlack {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake Slack API");
        let address = listener.local_addr().expect("fake Slack address");
        let state = Arc::new(Mutex::new(FakeState {
            base_url: format!("http://{address}"),
            token: token.to_string(),
            calls: Vec::new(),
            unexpected: Vec::new(),
            forced_429: HashMap::new(),
            post_interval: Duration::from_secs(1),
            last_post: HashMap::new(),
            recent: HashMap::new(),
            messages: Vec::new(),
            counter: 0,
            uploads: HashMap::new(),
            files: Vec::new(),
            views: Vec::new(),
            ephemerals: Vec::new(),
            responses: Vec::new(),
            response_ids: Vec::new(),
            stalled: false,
            stalled_calls: Vec::new(),
        }));
        let router = Router::new()
            .route("/api/{method}", any(api))
            .route("/upload/{file_id}", post(upload))
            .route("/response/{id}", post(response_url))
            .fallback(unknown_path)
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.expect("fake Slack API server");
        });
        FakeSlack { address, state, server, check_on_drop: true }
    }

    /// For `slack.api_url`.
    pub fn api_url(&self) -> String {
        format!("http://{}/api/", self.address)
    }

    pub fn token(&self) -> String {
        self.state().token.clone()
    }

    /// A `response_url` to put in an interaction or command payload.
    pub fn response_url(&self, id: &str) -> String {
        format!("http://{}/response/{id}", self.address)
    }

    /// The next `count` calls of `method` are answered 429 with `Retry-After: retry_after_secs`.
    pub fn rate_limit_next(&self, method: &str, count: u32, retry_after_secs: u64) {
        self.state().forced_429.insert(method.to_string(), (count, retry_after_secs));
    }

    /// The next `count` calls of `method` to `channel` are answered 429 with
    /// `Retry-After: retry_after_secs` (calls to other channels go through).
    pub fn rate_limit_next_in(&self, method: &str, channel: &str, count: u32, retry_after_secs: u64) {
        self.state().forced_429.insert(format!("{method} in {channel}"), (count, retry_after_secs));
    }

    /// From now on every Web API call is read and never answered, until [`FakeSlack::unstall`];
    /// the calls it held are dropped unanswered, as a hung proxy would.
    pub fn stall(&self) {
        self.state().stalled = true;
    }

    pub fn unstall(&self) {
        self.state().stalled = false;
    }

    /// The methods of the calls that arrived while stalled.
    pub fn stalled_calls(&self) -> Vec<String> {
        self.state().stalled_calls.clone()
    }

    /// `chat.postMessage` spacing per channel (default 1 s, as Slack).
    pub fn set_post_interval(&self, interval: Duration) {
        self.state().post_interval = interval;
    }

    /// Don't fail the test on drop for unexpected calls (for tests that send them on purpose).
    pub fn allow_unexpected(&mut self) {
        self.check_on_drop = false;
    }

    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    pub fn calls_to(&self, method: &str) -> Vec<Call> {
        self.state().calls.iter().filter(|call| call.method == method).cloned().collect()
    }

    /// Calls answered with success.
    pub fn accepted(&self, method: &str) -> Vec<Call> {
        self.calls_to(method).into_iter().filter(|call| call.outcome == Outcome::Ok).collect()
    }

    /// Calls answered `ok: false` (over the limits, unknown channel…).
    pub fn rejected(&self) -> Vec<Call> {
        self.calls().into_iter().filter(|call| matches!(call.outcome, Outcome::Error(_))).collect()
    }

    pub fn rate_limited(&self) -> Vec<Call> {
        self.calls().into_iter().filter(|call| call.outcome == Outcome::RateLimited).collect()
    }

    pub fn unexpected(&self) -> Vec<String> {
        self.state().unexpected.clone()
    }

    pub fn assert_no_unexpected(&self) {
        let what = "the fake Slack API got calls Slack would refuse as client bugs";
        crate::support::fakes::assert_none(what, &self.unexpected());
    }

    /// No unexpected call and no `ok: false` answer (429s that were retried are fine).
    pub fn assert_all_accepted(&self) {
        self.assert_no_unexpected();
        let rejected: Vec<String> =
            self.rejected().iter().map(|call| format!("{} → {:?}", call.method, call.outcome)).collect();
        crate::support::fakes::assert_none("the fake Slack API refused calls", &rejected);
    }

    /// Every message posted in `channel` (top level and threads), in order, as edited.
    pub fn messages(&self, channel: &str) -> Vec<StoredMessage> {
        self.state().messages.iter().filter(|message| message.channel == channel).cloned().collect()
    }

    pub fn all_messages(&self) -> Vec<StoredMessage> {
        self.state().messages.clone()
    }

    pub fn message(&self, channel: &str, ts: &str) -> Option<StoredMessage> {
        self.state().messages.iter().find(|message| message.channel == channel && message.ts == ts).cloned()
    }

    /// The replies in the thread under `thread_ts`, in order.
    pub fn thread(&self, channel: &str, thread_ts: &str) -> Vec<StoredMessage> {
        self.state()
            .messages
            .iter()
            .filter(|message| message.channel == channel && message.thread_ts.as_deref() == Some(thread_ts))
            .cloned()
            .collect()
    }

    pub fn files(&self) -> Vec<SharedFile> {
        self.state().files.clone()
    }

    /// Views opened with `views.open`, as sent.
    pub fn views(&self) -> Vec<Value> {
        self.state().views.clone()
    }

    /// `chat.postEphemeral` bodies.
    pub fn ephemerals(&self) -> Vec<Value> {
        self.state().ephemerals.clone()
    }

    /// Bodies posted to response URLs.
    pub fn responses(&self) -> Vec<Value> {
        self.state().responses.clone()
    }

    /// `(id, body)` of what was posted to each response URL, in order.
    pub fn responses_with_ids(&self) -> Vec<(String, Value)> {
        let state = self.state();
        state.response_ids.iter().cloned().zip(state.responses.iter().cloned()).collect()
    }

    /// Waits until `condition` holds for the fake, or panics after `timeout`.
    pub async fn wait_for(&self, what: &str, timeout: Duration, condition: impl Fn(&FakeSlack) -> bool) {
        crate::support::fakes::wait_until(what, timeout, || condition(self), || format!("{:#?}", self.calls())).await;
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().expect("fake Slack state")
    }
}

fn collect_texts(value: &Value, texts: &mut Vec<String>) {
    match value {
        Value::Array(items) => items.iter().for_each(|item| collect_texts(item, texts)),
        Value::Object(map) => match (map.get("type").and_then(Value::as_str), map.get("text")) {
            (Some("mrkdwn" | "plain_text"), Some(Value::String(text))) => texts.push(text.clone()),
            _ => map.values().for_each(|value| collect_texts(value, texts)),
        },
        _ => {}
    }
}

/// Characters in every text object, as the block budget counts them.
pub fn block_text_len(value: &Value) -> usize {
    let mut texts = Vec::new();
    collect_texts(value, &mut texts);
    texts.iter().map(|text| text.chars().count()).sum()
}

/// What one API call answers: a JSON body (with `ok`), or a 429.
enum Answer {
    Ok(Value),
    Error(String, Vec<String>),
    RateLimited(u64),
    /// A client bug: recorded as unexpected and answered like Slack answers it.
    Malformed(String, String),
}

impl Answer {
    fn error(code: &str) -> Answer {
        Answer::Error(code.to_string(), Vec::new())
    }
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body.to_string()).into_response()
}

fn finish(state: &Shared, method: &str, body: Value, answer: Answer) -> Response {
    let mut state = state.lock().expect("fake Slack state");
    let (outcome, response) = match answer {
        Answer::Ok(mut response) => {
            response["ok"] = Value::Bool(true);
            (Outcome::Ok, json_response(StatusCode::OK, response))
        }
        Answer::Error(code, errors) => {
            let mut response = json!({"ok": false, "error": code});
            if !errors.is_empty() {
                response["errors"] = json!(errors);
            }
            (Outcome::Error(code), json_response(StatusCode::OK, response))
        }
        Answer::RateLimited(retry_after) => {
            let response = (
                StatusCode::TOO_MANY_REQUESTS,
                [
                    (header::CONTENT_TYPE, "application/json; charset=utf-8".to_string()),
                    (header::RETRY_AFTER, retry_after.to_string()),
                ],
                json!({"ok": false, "error": "ratelimited"}).to_string(),
            )
                .into_response();
            (Outcome::RateLimited, response)
        }
        Answer::Malformed(code, why) => {
            state.unexpected.push(format!("{method}: {why}"));
            (Outcome::Error(code.clone()), json_response(StatusCode::OK, json!({"ok": false, "error": code})))
        }
    };
    state.calls.push(Call { method: method.to_string(), body, at: Instant::now(), outcome });
    response
}

async fn unknown_path(State(state): State<Shared>, method: Method, uri: axum::http::Uri) -> Response {
    let mut state = state.lock().expect("fake Slack state");
    state.unexpected.push(format!("{method} {uri}: not a Slack API path"));
    state.calls.push(Call {
        method: uri.path().to_string(),
        body: Value::Null,
        at: Instant::now(),
        outcome: Outcome::Error("not_found".into()),
    });
    (StatusCode::NOT_FOUND, "not found").into_response()
}

/// The token check every Web API call and upload gets.
fn authorize(state: &Shared, headers: &HeaderMap) -> Result<(), Answer> {
    let expected = state.lock().expect("fake Slack state").token.clone();
    match headers.get(header::AUTHORIZATION).and_then(|value| value.to_str().ok()) {
        None => Err(Answer::Malformed("not_authed".into(), "no Authorization header".into())),
        Some(value) if value == format!("Bearer {expected}") => Ok(()),
        Some(_) => Err(Answer::error("invalid_auth")),
    }
}

/// The request's fields: JSON for POSTs, the query for GETs (and form bodies, which Slack
/// also accepts for most methods; firebell's client sends JSON).
fn parse_body(method: &Method, headers: &HeaderMap, query: Option<&str>, body: &Bytes) -> Result<Value, String> {
    if method == Method::GET {
        let fields = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .map(|(key, value)| (key.into_owned(), Value::String(value.into_owned())))
            .collect::<Map<_, _>>();
        return Ok(Value::Object(fields));
    }
    if method != Method::POST {
        return Err(format!("{method} is not how the Web API is called"));
    }
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    if content_type.starts_with("application/json") {
        let value: Value = serde_json::from_slice(body).map_err(|error| format!("body is not JSON: {error}"))?;
        return match value {
            Value::Object(_) => Ok(value),
            _ => Err("the JSON body is not an object".into()),
        };
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let fields = url::form_urlencoded::parse(body)
            .map(|(key, value)| (key.into_owned(), Value::String(value.into_owned())))
            .collect::<Map<_, _>>();
        return Ok(Value::Object(fields));
    }
    Err(format!("unsupported Content-Type '{content_type}'"))
}

/// Per-method tier limits (calls per minute), as Slack documents them.
fn tier_limit(method: &str) -> Option<usize> {
    match method {
        "chat.update" | "conversations.open" => Some(50),
        "views.open"
        | "chat.postEphemeral"
        | "files.getUploadURLExternal"
        | "files.completeUploadExternal"
        | "auth.test" => Some(100),
        _ => None,
    }
}

/// A forced 429, a tier limit, or (for posts) the per-channel limit.
fn rate_limit(state: &Shared, method: &str, body: &Value) -> Option<u64> {
    let mut state = state.lock().expect("fake Slack state");
    let in_channel = format!("{method} in {}", body["channel"].as_str().unwrap_or_default());
    for key in [in_channel.as_str(), method] {
        if let Some((count, retry_after)) = state.forced_429.get_mut(key)
            && *count > 0
        {
            *count -= 1;
            return Some(*retry_after);
        }
    }
    let now = Instant::now();
    if let Some(limit) = tier_limit(method) {
        let recent = state.recent.entry(method.to_string()).or_default();
        recent.retain(|at| now.duration_since(*at) < Duration::from_secs(60));
        if recent.len() >= limit {
            let wait = Duration::from_secs(60) - now.duration_since(recent[0]);
            return Some(wait.as_secs().max(1));
        }
        recent.push(now);
    }
    if method == "chat.postMessage"
        && let Some(channel) = body.get("channel").and_then(Value::as_str)
    {
        // A bucket of one token per channel, refilled every interval; every post that gets
        // past it spends the token, as Slack counts requests rather than successes.
        let interval = state.post_interval;
        if let Some(last) = state.last_post.get(channel)
            && now.duration_since(*last) < interval
        {
            return Some(interval.as_secs().max(1));
        }
        state.last_post.insert(channel.to_string(), now);
    }
    None
}

async fn api(
    State(state): State<Shared>,
    Path(method): Path<String>,
    http_method: Method,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let stalled = {
        let mut state = state.lock().unwrap();
        if state.stalled {
            state.stalled_calls.push(method.clone());
        }
        state.stalled
    };
    if stalled {
        // Never answers: the client gives up and drops the connection.
        std::future::pending::<()>().await;
    }
    let fields = match parse_body(&http_method, &headers, query.as_deref(), &body) {
        Ok(fields) => fields,
        Err(why) => {
            let raw = Value::String(String::from_utf8_lossy(&body).chars().take(2_000).collect());
            return finish(&state, &method, raw, Answer::Malformed("invalid_arguments".into(), why));
        }
    };
    if let Err(answer) = authorize(&state, &headers) {
        return finish(&state, &method, fields, answer);
    }
    if let Some(retry_after) = rate_limit(&state, &method, &fields) {
        return finish(&state, &method, fields, Answer::RateLimited(retry_after));
    }
    let answer = match method.as_str() {
        "auth.test" => Answer::Ok(json!({
            "url": "https://fake.slack.com/", "team": "Fake", "user": "firebell",
            "team_id": TEAM, "user_id": BOT_USER, "bot_id": BOT_ID
        })),
        "chat.postMessage" => post_message(&state, &fields),
        "chat.update" => update_message(&state, &fields),
        "chat.postEphemeral" => post_ephemeral(&state, &fields),
        "conversations.open" => open_conversation(&fields),
        "files.getUploadURLExternal" => upload_url(&state, &fields),
        "files.completeUploadExternal" => complete_upload(&state, &fields),
        "views.open" => open_view(&state, &fields),
        other => Answer::Malformed("unknown_method".into(), format!("firebell does not call {other}")),
    };
    finish(&state, &method, fields, answer)
}

fn string_field<'a>(fields: &'a Value, name: &str) -> Result<&'a str, Answer> {
    match fields.get(name) {
        Some(Value::String(text)) if !text.is_empty() => Ok(text),
        Some(Value::String(_)) | None => {
            Err(Answer::Malformed("invalid_arguments".into(), format!("missing '{name}'")))
        }
        Some(other) => {
            Err(Answer::Malformed("invalid_arguments".into(), format!("'{name}' must be a string, got {other}")))
        }
    }
}

fn is_ts(text: &str) -> bool {
    text.split_once('.').is_some_and(|(seconds, micros)| {
        !seconds.is_empty()
            && micros.len() == 6
            && (seconds.to_string() + micros).bytes().all(|byte| byte.is_ascii_digit())
    })
}

fn is_channel_id(text: &str) -> bool {
    text.len() >= 3
        && matches!(text.as_bytes()[0], b'C' | b'D' | b'G')
        && text.bytes().all(|byte| byte.is_ascii_uppercase() || byte.is_ascii_digit())
}

/// `text` and `blocks` of a message, checked as Slack checks them.
fn message_content(fields: &Value) -> Result<(String, Value), Answer> {
    let text = match fields.get("text") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => {
            return Err(Answer::Malformed("invalid_arguments".into(), format!("'text' must be a string, got {other}")));
        }
    };
    let blocks = match fields.get("blocks") {
        None | Some(Value::Null) => Value::Array(Vec::new()),
        Some(Value::String(encoded)) => {
            serde_json::from_str(encoded).map_err(|_| Answer::error("invalid_blocks_format"))?
        }
        Some(blocks @ Value::Array(_)) => blocks.clone(),
        Some(other) => {
            return Err(Answer::Malformed(
                "invalid_blocks_format".into(),
                format!("'blocks' must be an array, got {other}"),
            ));
        }
    };
    if text.chars().count() > MAX_TEXT {
        return Err(Answer::error("msg_too_long"));
    }
    let block_list = blocks.as_array().cloned().unwrap_or_default();
    if text.trim().is_empty() && block_list.is_empty() {
        return Err(Answer::error("no_text"));
    }
    validate_blocks(&block_list)?;
    Ok((text, blocks))
}

fn invalid(errors: Vec<String>) -> Answer {
    Answer::Error("invalid_blocks".to_string(), errors)
}

fn text_object(value: Option<&Value>, pointer: &str, max: usize, plain_only: bool) -> Result<(), String> {
    let Some(value) = value else {
        return Err(format!("missing required field: text [json-pointer:{pointer}]"));
    };
    let kind = value.get("type").and_then(Value::as_str).unwrap_or("");
    let allowed = if plain_only { kind == "plain_text" } else { matches!(kind, "plain_text" | "mrkdwn") };
    if !allowed {
        return Err(format!("must be a valid enum value [json-pointer:{pointer}/type]"));
    }
    let length = value.get("text").and_then(Value::as_str).map(|text| text.chars().count()).unwrap_or(0);
    if length == 0 {
        return Err(format!("must be more than 0 characters [json-pointer:{pointer}/text]"));
    }
    if length > max {
        return Err(format!("must be less than {} characters [json-pointer:{pointer}/text]", max + 1));
    }
    Ok(())
}

/// Block Kit as Slack validates it, for the block types firebell sends.
fn validate_blocks(blocks: &[Value]) -> Result<(), Answer> {
    if blocks.len() > MAX_BLOCKS {
        return Err(invalid(vec![format!(
            "must provide an array with no more than {MAX_BLOCKS} items [json-pointer:/blocks]"
        )]));
    }
    if block_text_len(&Value::Array(blocks.to_vec())) > MAX_TOTAL_BLOCK_TEXT {
        return Err(Answer::error("msg_blocks_too_long"));
    }
    let mut errors = Vec::new();
    let mut block_ids = Vec::new();
    for (index, block) in blocks.iter().enumerate() {
        let at = format!("/blocks/{index}");
        if let Some(id) = block.get("block_id").and_then(Value::as_str) {
            if id.chars().count() > 255 || block_ids.contains(&id) {
                errors.push(format!("invalid block_id [json-pointer:{at}/block_id]"));
            }
            block_ids.push(id);
        }
        let result = match block.get("type").and_then(Value::as_str) {
            Some("header") => text_object(block.get("text"), &format!("{at}/text"), 150, true),
            Some("divider") => Ok(()),
            Some("section") => validate_section(block, &at),
            Some("context") => validate_context(block, &at),
            Some("actions") => validate_actions(block, &at),
            other => Err(format!("unsupported block type {other:?} [json-pointer:{at}/type]")),
        };
        if let Err(error) = result {
            errors.push(error);
        }
    }
    if errors.is_empty() { Ok(()) } else { Err(invalid(errors)) }
}

fn validate_section(block: &Value, at: &str) -> Result<(), String> {
    let text = block.get("text");
    let fields = block.get("fields").and_then(Value::as_array);
    if text.is_none() && fields.is_none() {
        return Err(format!("must provide text or fields [json-pointer:{at}]"));
    }
    if text.is_some() {
        text_object(text, &format!("{at}/text"), MAX_SECTION_TEXT, false)?;
    }
    if let Some(fields) = fields {
        if fields.is_empty() || fields.len() > 10 {
            return Err(format!("must provide 1 to 10 fields [json-pointer:{at}/fields]"));
        }
        for (index, field) in fields.iter().enumerate() {
            text_object(Some(field), &format!("{at}/fields/{index}"), 2_000, false)?;
        }
    }
    Ok(())
}

fn validate_context(block: &Value, at: &str) -> Result<(), String> {
    let elements =
        block.get("elements").and_then(Value::as_array).ok_or(format!("missing elements [json-pointer:{at}]"))?;
    if elements.is_empty() || elements.len() > 10 {
        return Err(format!("must provide 1 to 10 elements [json-pointer:{at}/elements]"));
    }
    for (index, element) in elements.iter().enumerate() {
        text_object(Some(element), &format!("{at}/elements/{index}"), MAX_SECTION_TEXT, false)?;
    }
    Ok(())
}

fn validate_actions(block: &Value, at: &str) -> Result<(), String> {
    let elements =
        block.get("elements").and_then(Value::as_array).ok_or(format!("missing elements [json-pointer:{at}]"))?;
    if elements.is_empty() || elements.len() > 25 {
        return Err(format!("must provide 1 to 25 elements [json-pointer:{at}/elements]"));
    }
    let mut action_ids = Vec::new();
    for (index, element) in elements.iter().enumerate() {
        let here = format!("{at}/elements/{index}");
        if element.get("type").and_then(Value::as_str) != Some("button") {
            return Err(format!("unsupported element [json-pointer:{here}/type]"));
        }
        text_object(element.get("text"), &format!("{here}/text"), 75, true)?;
        let action_id = element.get("action_id").and_then(Value::as_str).unwrap_or("");
        if action_id.chars().count() > 255 {
            return Err(format!("must be less than 256 characters [json-pointer:{here}/action_id]"));
        }
        if !action_id.is_empty() {
            if action_ids.contains(&action_id) {
                return Err(format!("action_id already exists [json-pointer:{here}/action_id]"));
            }
            action_ids.push(action_id);
        }
        if element.get("value").and_then(Value::as_str).is_some_and(|value| value.chars().count() > 2_000) {
            return Err(format!("must be less than 2001 characters [json-pointer:{here}/value]"));
        }
        if let Some(style) = element.get("style").and_then(Value::as_str)
            && !matches!(style, "primary" | "danger")
        {
            return Err(format!("must be a valid enum value [json-pointer:{here}/style]"));
        }
    }
    Ok(())
}

fn bot_message(ts: &str, text: &str, blocks: &Value, thread_ts: Option<&str>) -> Value {
    let mut message = json!({"type": "message", "user": BOT_USER, "bot_id": BOT_ID, "app_id": "A0FAKE", "team": TEAM, "ts": ts, "text": text});
    if blocks.as_array().is_some_and(|blocks| !blocks.is_empty()) {
        message["blocks"] = blocks.clone();
    }
    if let Some(thread_ts) = thread_ts {
        message["thread_ts"] = Value::String(thread_ts.to_string());
    }
    message
}

fn post_message(state: &Shared, fields: &Value) -> Answer {
    let channel = match string_field(fields, "channel") {
        Ok(channel) => channel,
        Err(answer) => return answer,
    };
    if !is_channel_id(channel) {
        return Answer::error("channel_not_found");
    }
    let thread_ts = match fields.get("thread_ts") {
        None | Some(Value::Null) => None,
        Some(Value::String(ts)) if is_ts(ts) => Some(ts.clone()),
        Some(other) => {
            return Answer::Malformed(
                "invalid_thread_ts".into(),
                format!("thread_ts {other} is not a Slack timestamp"),
            );
        }
    };
    let (text, blocks) = match message_content(fields) {
        Ok(content) => content,
        Err(answer) => return answer,
    };
    let mut state = state.lock().expect("fake Slack state");
    let ts = state.next_ts();
    state.messages.push(StoredMessage {
        channel: channel.to_string(),
        ts: ts.clone(),
        thread_ts: thread_ts.clone(),
        text: text.clone(),
        blocks: blocks.clone(),
        edits: 0,
        posted_at: Instant::now(),
    });
    Answer::Ok(json!({"channel": channel, "ts": ts, "message": bot_message(&ts, &text, &blocks, thread_ts.as_deref())}))
}

fn update_message(state: &Shared, fields: &Value) -> Answer {
    let (channel, ts) = match (string_field(fields, "channel"), string_field(fields, "ts")) {
        (Ok(channel), Ok(ts)) => (channel, ts),
        (Err(answer), _) | (_, Err(answer)) => return answer,
    };
    let (text, blocks) = match message_content(fields) {
        Ok(content) => content,
        Err(answer) => return answer,
    };
    let mut state = state.lock().expect("fake Slack state");
    let Some(message) = state.messages.iter_mut().find(|message| message.channel == channel && message.ts == ts) else {
        return Answer::error("message_not_found");
    };
    message.text = text.clone();
    message.blocks = blocks.clone();
    message.edits += 1;
    let thread_ts = message.thread_ts.clone();
    let mut updated = json!({"user": BOT_USER, "bot_id": BOT_ID, "text": text});
    if blocks.as_array().is_some_and(|blocks| !blocks.is_empty()) {
        updated["blocks"] = blocks;
    }
    let mut response = json!({"channel": channel, "ts": ts, "text": text, "message": updated});
    if let Some(thread_ts) = thread_ts {
        response["thread_ts"] = Value::String(thread_ts);
    }
    Answer::Ok(response)
}

fn post_ephemeral(state: &Shared, fields: &Value) -> Answer {
    let (channel, _user) = match (string_field(fields, "channel"), string_field(fields, "user")) {
        (Ok(channel), Ok(user)) => (channel, user),
        (Err(answer), _) | (_, Err(answer)) => return answer,
    };
    if !is_channel_id(channel) {
        return Answer::error("channel_not_found");
    }
    if let Err(answer) = message_content(fields) {
        return answer;
    }
    let mut state = state.lock().expect("fake Slack state");
    let ts = state.next_ts();
    state.ephemerals.push(fields.clone());
    Answer::Ok(json!({"message_ts": ts}))
}

fn open_conversation(fields: &Value) -> Answer {
    let users = match fields.get("users") {
        Some(Value::String(users)) => users.split(',').map(str::to_string).collect::<Vec<_>>(),
        Some(Value::Array(users)) => users.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => {
            return Answer::Malformed("users_list_not_supplied".into(), "conversations.open without users".into());
        }
    };
    match users.as_slice() {
        [user] if user.starts_with('U') || user.starts_with('W') => {
            Answer::Ok(json!({"channel": {"id": format!("D{}", &user[1..])}}))
        }
        [_] => Answer::error("user_not_found"),
        _ => Answer::Malformed(
            "invalid_arguments".into(),
            format!("firebell opens one-to-one conversations only, got {users:?}"),
        ),
    }
}

fn upload_url(state: &Shared, fields: &Value) -> Answer {
    let filename = match string_field(fields, "filename") {
        Ok(filename) => filename.to_string(),
        Err(answer) => return answer,
    };
    let length = match fields.get("length") {
        Some(Value::String(text)) => text.parse::<usize>().ok(),
        Some(Value::Number(number)) => number.as_u64().map(|number| number as usize),
        _ => None,
    };
    let Some(length) = length.filter(|length| *length > 0) else {
        return Answer::Malformed("invalid_arguments".into(), "length must be a positive integer".into());
    };
    let mut state = state.lock().expect("fake Slack state");
    let file_id = format!("F{:08}", state.next_number());
    let upload_url = format!("{}/upload/{file_id}", state.base_url);
    state.uploads.insert(file_id.clone(), PendingUpload { filename, length, content: None });
    Answer::Ok(json!({"upload_url": upload_url, "file_id": file_id}))
}

async fn upload(State(state): State<Shared>, Path(file_id): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    let record = json!({"file_id": file_id, "bytes": body.len(), "content": String::from_utf8_lossy(&body).chars().take(2_000).collect::<String>()});
    if let Err(answer) = authorize(&state, &headers) {
        return finish(&state, "upload", record, answer);
    }
    let problem = {
        let mut guard = state.lock().expect("fake Slack state");
        match guard.uploads.get_mut(&file_id) {
            None => Some(format!("upload to {file_id}, a URL the fake never handed out")),
            Some(pending) if pending.length != body.len() => {
                Some(format!("{} bytes uploaded, {} announced", body.len(), pending.length))
            }
            Some(pending) => {
                pending.content = Some(body.to_vec());
                None
            }
        }
    };
    let mut guard = state.lock().expect("fake Slack state");
    let outcome = match &problem {
        Some(why) => {
            guard.unexpected.push(format!("upload: {why}"));
            Outcome::Error("upload_failed".into())
        }
        None => Outcome::Ok,
    };
    guard.calls.push(Call { method: "upload".into(), body: record, at: Instant::now(), outcome });
    match problem {
        None => {
            (StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], format!("OK - {}", body.len())).into_response()
        }
        Some(_) => (StatusCode::BAD_REQUEST, "upload failed").into_response(),
    }
}

fn complete_upload(state: &Shared, fields: &Value) -> Answer {
    let Some(files) = fields.get("files").and_then(Value::as_array).filter(|files| !files.is_empty()) else {
        return Answer::Malformed("invalid_arguments".into(), "files must be a non-empty array".into());
    };
    let channel = match fields.get("channel_id").or_else(|| fields.get("channels")) {
        Some(Value::String(channel)) if is_channel_id(channel) => channel.clone(),
        Some(Value::String(_)) => return Answer::error("channel_not_found"),
        _ => {
            return Answer::Malformed(
                "invalid_arguments".into(),
                "completeUploadExternal without channel_id: the file would not be shared".into(),
            );
        }
    };
    let thread_ts = match fields.get("thread_ts") {
        None | Some(Value::Null) => None,
        Some(Value::String(ts)) if is_ts(ts) => Some(ts.clone()),
        Some(other) => {
            return Answer::Malformed(
                "invalid_thread_ts".into(),
                format!("thread_ts {other} is not a Slack timestamp"),
            );
        }
    };
    let mut state = state.lock().expect("fake Slack state");
    let mut shared = Vec::new();
    for file in files {
        let Some(id) = file.get("id").and_then(Value::as_str) else {
            return Answer::Malformed("invalid_arguments".into(), "a file without id".into());
        };
        let Some(pending) = state.uploads.get(id) else {
            return Answer::Malformed(
                "file_not_found".into(),
                format!("{id} was never requested with files.getUploadURLExternal"),
            );
        };
        let Some(content) = pending.content.clone() else {
            return Answer::Malformed(
                "file_not_found".into(),
                format!("{id} was completed before its bytes were uploaded"),
            );
        };
        shared.push(SharedFile {
            id: id.to_string(),
            title: file.get("title").and_then(Value::as_str).map(str::to_string),
            filename: pending.filename.clone(),
            channel: channel.clone(),
            thread_ts: thread_ts.clone(),
            content,
        });
    }
    let response = shared
        .iter()
        .map(|file| json!({"id": file.id, "name": file.filename, "title": file.title.clone().unwrap_or_else(|| file.filename.clone())}))
        .collect::<Vec<_>>();
    for file in &shared {
        state.uploads.remove(&file.id);
    }
    state.files.extend(shared);
    Answer::Ok(json!({"files": response}))
}

fn open_view(state: &Shared, fields: &Value) -> Answer {
    if let Err(answer) = string_field(fields, "trigger_id") {
        return answer;
    }
    let Some(view) = fields.get("view").filter(|view| view.is_object()) else {
        return Answer::Malformed("invalid_arguments".into(), "views.open without a view object".into());
    };
    let mut errors = Vec::new();
    if view.get("type").and_then(Value::as_str) != Some("modal") {
        errors.push("view type must be modal [json-pointer:/view/type]".to_string());
    }
    for (name, max) in [("title", 24), ("submit", 24), ("close", 24)] {
        if (name == "title" || view.get(name).is_some())
            && let Err(error) = text_object(view.get(name), &format!("/view/{name}"), max, true)
        {
            errors.push(error);
        }
    }
    let blocks = view.get("blocks").and_then(Value::as_array).cloned().unwrap_or_default();
    if blocks.len() > 100 {
        errors.push("no more than 100 items [json-pointer:/view/blocks]".to_string());
    }
    for (index, block) in blocks.iter().enumerate() {
        let at = format!("/view/blocks/{index}");
        if block.get("type").and_then(Value::as_str) != Some("input") {
            errors.push(format!("firebell's forms have input blocks only [json-pointer:{at}/type]"));
            continue;
        }
        if let Err(error) = text_object(block.get("label"), &format!("{at}/label"), 2_000, true) {
            errors.push(error);
        }
        let element = block.get("element");
        if element.and_then(|element| element.get("type")).and_then(Value::as_str) != Some("plain_text_input") {
            errors.push(format!("unsupported element [json-pointer:{at}/element/type]"));
        }
    }
    if view.get("callback_id").and_then(Value::as_str).is_some_and(|id| id.chars().count() > 255) {
        errors.push("must be less than 256 characters [json-pointer:/view/callback_id]".to_string());
    }
    if view.get("private_metadata").and_then(Value::as_str).is_some_and(|metadata| metadata.chars().count() > 3_000) {
        errors.push("must be less than 3001 characters [json-pointer:/view/private_metadata]".to_string());
    }
    if !errors.is_empty() {
        return invalid(errors);
    }
    let mut state = state.lock().expect("fake Slack state");
    let number = state.next_number();
    state.views.push(view.clone());
    let mut opened = view.clone();
    opened["id"] = json!(format!("V{number:08}"));
    opened["team_id"] = json!(TEAM);
    opened["hash"] = json!(format!("{number}.hash"));
    opened["app_id"] = json!("A0FAKE");
    opened["bot_id"] = json!(BOT_ID);
    opened["state"] = json!({"values": {}});
    Answer::Ok(json!({"view": opened}))
}

async fn response_url(
    State(state): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = match parse_body(&Method::POST, &headers, None, &body) {
        Ok(fields) => fields,
        Err(why) => {
            let raw = Value::String(String::from_utf8_lossy(&body).chars().take(2_000).collect());
            return finish(&state, "response_url", raw, Answer::Malformed("invalid_payload".into(), why));
        }
    };
    let answer = match message_content(&fields) {
        Ok(_) => {
            let mut state = state.lock().expect("fake Slack state");
            state.responses.push(fields.clone());
            state.response_ids.push(id);
            Answer::Ok(json!({}))
        }
        Err(answer) => answer,
    };
    finish(&state, "response_url", fields, answer)
}
