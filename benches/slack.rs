//! Slack in HTTP mode against the real `firebell serve` process (the release binary cargo built
//! for this bench), with a fake Slack Web API inside this program on 127.0.0.1 (SPEC §8):
//!
//! - `ack`: how fast signed slash commands and button clicks are acknowledged while
//!   `FIREBELL_BENCH_INTERACTIONS` (default 50) interactions/s and `FIREBELL_BENCH_ALERTS`
//!   (default 200) alerts/s arrive together, for `FIREBELL_BENCH_SECONDS` (default 30). The load
//!   is open-loop: every request has a scheduled send time at a fixed rate, is sent then whatever
//!   the earlier ones are doing, and its latency runs from that scheduled time to the complete
//!   answer (so a stall counts for every request it delayed). Target: p50 ≤ 2 ms, p99 ≤ 10 ms,
//!   none > 1 s.
//! - `bare`: the same load, the same generator, against a bare axum handler that answers 200
//!   to everything, in a child process of this program: what the machine and the generator
//!   themselves cost.
//! - `pacing`: bursts of chat output (alerts opening incidents, streamed diagnoses, output too
//!   long for a message, status updates) through the app to a fake Slack that limits
//!   `chat.postMessage` to one per second per channel and answers some calls 429 with
//!   `Retry-After`; then, from the fake's record of every call: posts per second per channel,
//!   the shortest gap between edits of one message, whether each refused call was retried only
//!   after its `Retry-After`, and whether any message was over Slack's limits.
//!
//! `cargo bench --bench slack`; `FIREBELL_BENCH_ONLY=ack,bare,pacing` picks parts.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use support::{env_number, ms, percentile, selected};

const SIGNING_SECRET: &str = "bench0c4a1f9b84d7f9a0b5c3d2e1f0a9b";
const BOT_TOKEN: &str = "xoxb-bench-1234567890";
const API_TOKEN: &str = "bench-token";
const INCIDENTS: &str = "CINC";
const OPS: &str = "COPS";
const OPS_LONG: &str = "COPSLONG";
const FORM: &str = "application/x-www-form-urlencoded";

// ---------------------------------------------------------------------------------------------
// The fake Slack Web API: answers what firebell calls with the JSON Slack answers, records
// every call with the moment it arrived.

#[derive(Debug, Clone)]
struct Call {
    method: String,
    /// `chat.postMessage`: the channel; `chat.update`: channel and message ts.
    key: String,
    at: Instant,
    /// `Some(seconds)` when answered 429 with that `Retry-After`.
    refused: Option<u64>,
    /// The body's hash: a retry of a refused call sends the same body.
    body_hash: u64,
    text_chars: usize,
    blocks: usize,
    max_section_chars: usize,
    block_text_chars: usize,
}

#[derive(Default)]
struct FakeState {
    calls: Vec<Call>,
    counter: u64,
    /// Limit `chat.postMessage` to 1/s per channel and refuse some calls (pacing); or answer
    /// everything at once (ack).
    limit: bool,
    last_post: HashMap<String, Instant>,
    per_method: HashMap<String, u64>,
    upload_bytes: Vec<usize>,
}

/// Calls of these methods answered 429 with `Retry-After: 2`, every Nth, when limiting.
const FORCED_429_EVERY: u64 = 5;
const FORCED_RETRY_AFTER: u64 = 2;

#[derive(Clone)]
struct Fake {
    address: SocketAddr,
    state: Arc<Mutex<FakeState>>,
}

fn texts_in(value: &Value, total: &mut usize) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                match item {
                    Value::String(text) if key == "text" => *total += text.chars().count(),
                    other => texts_in(other, total),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| texts_in(item, total)),
        _ => {}
    }
}

fn measure(fields: &Value) -> (usize, usize, usize, usize) {
    let text_chars = fields["text"].as_str().map(|text| text.chars().count()).unwrap_or(0);
    let blocks: Vec<Value> = match &fields["blocks"] {
        Value::Array(blocks) => blocks.clone(),
        // Form bodies carry blocks as a JSON string.
        Value::String(text) => serde_json::from_str(text).unwrap_or_default(),
        _ => Vec::new(),
    };
    let max_section = blocks
        .iter()
        .filter(|block| block["type"] == "section")
        .map(|block| block["text"]["text"].as_str().map(|text| text.chars().count()).unwrap_or(0))
        .max()
        .unwrap_or(0);
    let mut block_text = 0;
    texts_in(&Value::Array(blocks.clone()), &mut block_text);
    (text_chars, blocks.len(), max_section, block_text)
}

fn fields_of(headers: &HeaderMap, body: &Bytes) -> Value {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    if content_type.starts_with("application/json") {
        serde_json::from_slice(body).unwrap_or(Value::Null)
    } else {
        Value::Object(
            url::form_urlencoded::parse(body)
                .map(|(key, value)| (key.into_owned(), Value::String(value.into_owned())))
                .collect(),
        )
    }
}

fn slack_json(status: StatusCode, body: Value, retry_after: Option<u64>) -> Response {
    let mut response =
        (status, [(header::CONTENT_TYPE, "application/json; charset=utf-8")], body.to_string()).into_response();
    if let Some(seconds) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, seconds.into());
    }
    response
}

async fn api(State(fake): State<Fake>, UrlPath(method): UrlPath<String>, headers: HeaderMap, body: Bytes) -> Response {
    let fields = fields_of(&headers, &body);
    let now = Instant::now();
    let channel = fields["channel"].as_str().or(fields["channel_id"].as_str()).unwrap_or("").to_string();
    let key = match method.as_str() {
        "chat.update" => format!("{channel} {}", fields["ts"].as_str().unwrap_or("")),
        _ => channel.clone(),
    };
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    method.hash(&mut hasher);
    body.hash(&mut hasher);
    let (text_chars, blocks, max_section_chars, block_text_chars) = measure(&fields);
    let mut state = fake.state.lock().expect("fake state");
    let mut refused = None;
    if state.limit && matches!(method.as_str(), "chat.postMessage" | "chat.update") {
        let count = state.per_method.entry(method.clone()).or_default();
        *count += 1;
        if (*count).is_multiple_of(FORCED_429_EVERY) {
            refused = Some(FORCED_RETRY_AFTER);
        } else if method == "chat.postMessage" {
            // One post per second per channel, as Slack: every request that gets past spends it.
            match state.last_post.get(&channel) {
                Some(last) if now.duration_since(*last) < Duration::from_secs(1) => refused = Some(1),
                _ => {
                    state.last_post.insert(channel.clone(), now);
                }
            }
        }
    }
    state.calls.push(Call {
        method: method.clone(),
        key,
        at: now,
        refused,
        body_hash: hasher.finish(),
        text_chars,
        blocks,
        max_section_chars,
        block_text_chars,
    });
    if let Some(seconds) = refused {
        return slack_json(StatusCode::TOO_MANY_REQUESTS, json!({"ok": false, "error": "ratelimited"}), Some(seconds));
    }
    state.counter += 1;
    let number = state.counter;
    let ts = format!("{}.{:06}", 1_700_000_000 + number, number);
    let text = fields["text"].as_str().unwrap_or("").to_string();
    let answer = match method.as_str() {
        "auth.test" => json!({
            "url": "https://fake.slack.com/", "team": "Fake", "user": "firebell",
            "team_id": "T0FAKE", "user_id": "UFIREBELL", "bot_id": "BFIREBELL"
        }),
        "chat.postMessage" => {
            let mut message =
                json!({"type": "message", "user": "UFIREBELL", "bot_id": "BFIREBELL", "ts": ts, "text": text});
            if let Some(thread) = fields["thread_ts"].as_str() {
                message["thread_ts"] = json!(thread);
            }
            json!({"channel": channel, "ts": ts, "message": message})
        }
        "chat.update" => json!({
            "channel": channel, "ts": fields["ts"], "text": text,
            "message": {"user": "UFIREBELL", "bot_id": "BFIREBELL", "text": text}
        }),
        "chat.postEphemeral" => json!({"message_ts": ts}),
        "conversations.open" => {
            let user = match &fields["users"] {
                Value::Array(users) => users.first().and_then(Value::as_str).unwrap_or("U0000").to_string(),
                other => other.as_str().unwrap_or("U0000").split(',').next().unwrap_or("U0000").to_string(),
            };
            json!({"channel": {"id": format!("D{}", user.trim_start_matches('U'))}})
        }
        "files.getUploadURLExternal" => {
            json!({"upload_url": format!("http://{}/upload/F{number:08}", fake.address), "file_id": format!("F{number:08}")})
        }
        "files.completeUploadExternal" => {
            let files: Vec<Value> = fields["files"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|file| json!({"id": file["id"], "name": "output.txt", "title": file["title"]}))
                .collect();
            json!({"files": files})
        }
        _ => json!({}),
    };
    let mut answer = answer;
    answer["ok"] = json!(true);
    slack_json(StatusCode::OK, answer, None)
}

async fn upload(State(fake): State<Fake>, UrlPath(file_id): UrlPath<String>, body: Bytes) -> Response {
    fake.state.lock().expect("fake state").upload_bytes.push(body.len());
    (StatusCode::OK, format!("OK - {} ({file_id})", body.len())).into_response()
}

async fn response_url() -> Response {
    slack_json(StatusCode::OK, json!({"ok": true}), None)
}

impl Fake {
    async fn start(limit: bool) -> Fake {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the fake Slack");
        let address = listener.local_addr().expect("an address");
        let fake = Fake { address, state: Arc::new(Mutex::new(FakeState { limit, ..FakeState::default() })) };
        let router = Router::new()
            .route("/api/{method}", any(api))
            .route("/upload/{file_id}", post(upload))
            .route("/response/{id}", post(response_url))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.expect("the fake Slack serves") });
        fake
    }

    fn calls(&self) -> Vec<Call> {
        self.state.lock().expect("fake state").calls.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// The app under test, and what Slack sends it.

struct Served {
    child: Child,
    address: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        support::stop(&mut self.child);
    }
}

const CONFIG_REST: &str = r#"
[groups]
oncall = ["slack:U0001"]

[[policies]]
name = "default"
steps = [ { after = "10m", notify = ["group:oncall"] } ]

[[routes]]
match = { alertname = "DiskFull" }
policy = "default"

[[schedules]]
name = "primary"
rotation = "weekly"
handoff = "Mon 09:00"
timezone = "UTC"
members = ["slack:U0001", "slack:U0002"]
"#;

const PING: &str = "name = \"ping\"\nsummary = \"Is the host alive\"\n\n[[checks]]\nname = \"true\"\nkind = \"exec\"\nargv = [\"true\"]\n";

/// Starts `firebell serve` in HTTP mode against `fake`, with `runbooks` (name, text) and
/// `rest` appended to the config; waits for `/readyz`.
fn serve(fake: &Fake, runbooks: &[(&str, &str)], rest: &str) -> Served {
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::create_dir(dir.path().join("commands")).expect("a commands folder");
    let scripts = dir.path().join("scripts");
    std::fs::create_dir(&scripts).expect("a scripts folder");
    let script = scripts.join("sleep-then-say.sh");
    std::fs::write(&script, "#!/bin/sh\nsleep \"$1\"\necho \"$2\"\n").expect("a script");
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("executable");
    for (name, text) in runbooks {
        let text = text.replace("@SCRIPTS@", &scripts.display().to_string());
        std::fs::write(dir.path().join(format!("commands/{name}.toml")), text).expect("a runbook");
    }
    for attempt in 0..3 {
        let port = support::free_port();
        let store = format!("sqlite://{}", dir.path().join("firebell.db").display());
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\napi_token = \"{API_TOKEN}\"\n\n[store]\nurl = {store}\n\n\
             [commands]\ndirs = [\"commands\"]\n\n[slack]\nbot_token = \"{BOT_TOKEN}\"\nsigning_secret = \"{SIGNING_SECRET}\"\n\
             incident_channel = \"{INCIDENTS}\"\napi_url = \"http://{fake}/api/\"\n\n{rest}\n",
            store = support::toml_str(&store),
            fake = fake.address,
        );
        let config = dir.path().join("firebell.toml");
        std::fs::write(&config, text).expect("the config is written");
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().expect("an address");
        let log = format!("serve-{attempt}.log");
        let mut child = support::spawn_serve(dir.path(), &config, &log);
        if support::wait_ready(&mut child, address, Instant::now(), Duration::from_secs(30)).is_some() {
            return Served { child, address, dir };
        }
        support::stop(&mut child);
        let text = std::fs::read_to_string(dir.path().join(&log)).unwrap_or_default();
        if !text.contains("cannot listen") {
            panic!("firebell serve did not become ready:\n{text}");
        }
    }
    panic!("no free port in 3 tries")
}

fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_secs() as i64
}

/// `v0=hex(HMAC-SHA256(secret, "v0:{timestamp}:{body}"))`, as Slack signs requests.
fn signature(timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SIGNING_SECRET.as_bytes()).expect("any key length");
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

static TRIGGERS: AtomicU64 = AtomicU64::new(0);

fn trigger_id() -> String {
    format!("{}.{}.bench{}", unix_now(), std::process::id(), TRIGGERS.fetch_add(1, Ordering::Relaxed))
}

fn slash_body(response_base: &str, user: &str, channel: &str, command: &str, text: &str) -> String {
    let trigger = trigger_id();
    form(&[
        ("token", "gIkuvaNzQIHg97ATvDxqgjtO"),
        ("team_id", "T0FAKE"),
        ("team_domain", "fake"),
        ("channel_id", channel),
        ("channel_name", "ops"),
        ("user_id", user),
        ("user_name", "someone"),
        ("command", command),
        ("text", text),
        ("api_app_id", "A0FAKE"),
        ("is_enterprise_install", "false"),
        ("response_url", &format!("{response_base}/response/{trigger}")),
        ("trigger_id", &trigger),
    ])
}

/// A click on the Acknowledge button of incident `id`'s notification in the incident channel.
fn ack_click_body(response_base: &str, user: &str, id: i64) -> String {
    let ts = format!("{}.{:06}", 1_600_000_000 + id, id);
    let trigger = trigger_id();
    let payload = json!({
        "type": "block_actions",
        "user": {"id": user, "username": "someone", "name": "someone", "team_id": "T0FAKE"},
        "api_app_id": "A0FAKE", "token": "9s8d9as89d8as9d8as989", "trigger_id": trigger,
        "team": {"id": "T0FAKE", "domain": "fake"},
        "container": {"type": "message", "message_ts": ts, "channel_id": INCIDENTS, "is_ephemeral": false},
        "channel": {"id": INCIDENTS, "name": "incidents"},
        "message": {"type": "message", "user": "UFIREBELL", "bot_id": "BFIREBELL", "ts": ts, "text": format!("Incident #{id}")},
        "response_url": format!("{response_base}/response/{trigger}"),
        "actions": [{
            "type": "button", "action_id": "incident_ack", "block_id": "actions",
            "text": {"type": "plain_text", "text": "Acknowledge", "emoji": true},
            "value": id.to_string(), "action_ts": format!("{}.000300", unix_now()),
        }]
    });
    form(&[("payload", &payload.to_string())])
}

fn alert_body(dedup_key: &str) -> String {
    format!(
        r#"{{"title":"Disk almost full on {dedup_key}","status":"firing","dedup_key":"{dedup_key}","severity":"high","description":"/var is 91% full","labels":{{"alertname":"DiskFull","host":"{dedup_key}"}}}}"#
    )
}

async fn send_signed(client: &reqwest::Client, url: &str, body: String) -> Result<(u16, String), String> {
    let timestamp = unix_now();
    let response = client
        .post(url)
        .header("content-type", FORM)
        .header("x-slack-request-timestamp", timestamp.to_string())
        .header("x-slack-signature", signature(timestamp, &body))
        .body(body)
        .send()
        .await
        .map_err(|error| error.to_string())?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(|error| error.to_string())?;
    Ok((status, text))
}

async fn send_alert(client: &reqwest::Client, url: &str, dedup_key: &str) -> Result<(u16, String), String> {
    let response = client
        .post(url)
        .bearer_auth(API_TOKEN)
        .header("content-type", "application/json")
        .body(alert_body(dedup_key))
        .send()
        .await
        .map_err(|error| error.to_string())?;
    let status = response.status().as_u16();
    let text = response.text().await.map_err(|error| error.to_string())?;
    Ok((status, text))
}

/// Opens one incident per key by alert; their ids.
async fn open_incidents(base: String, keys: Vec<String>) -> Vec<i64> {
    let client = reqwest::Client::new();
    let url = format!("{base}/alerts/generic");
    let keys = Arc::new(Mutex::new(keys.into_iter().enumerate().collect::<Vec<_>>()));
    let ids = Arc::new(Mutex::new(BTreeMap::new()));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (client, url, keys, ids) = (client.clone(), url.clone(), keys.clone(), ids.clone());
            tokio::spawn(async move {
                loop {
                    let Some((index, key)) = keys.lock().expect("keys").pop() else { break };
                    let (status, text) = send_alert(&client, &url, &key).await.expect("an alert is sent");
                    assert!(status < 300, "the alert was refused: {status} {text}");
                    let answer: Value = serde_json::from_str(&text).expect("the answer is JSON");
                    let id = answer["incident"].as_i64().expect("the answer names the incident");
                    ids.lock().expect("ids").insert(index, id);
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await.expect("a worker finishes");
    }
    let ids = ids.lock().expect("ids");
    ids.values().copied().collect()
}

// ---------------------------------------------------------------------------------------------
// Ack latency under load.

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Kind {
    Click,
    IncidentList,
    Oncall,
    Topics,
    Status,
    Summary,
    Diagnose,
    Alert,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Click => "button: Acknowledge",
            Kind::IncidentList => "/incident list",
            Kind::Oncall => "/oncall",
            Kind::Topics => "/diagnose (topics)",
            Kind::Status => "/incident status … id=N",
            Kind::Summary => "/incident summary id=N",
            Kind::Diagnose => "/diagnose ping",
            Kind::Alert => "alert (POST /alerts/generic)",
        }
    }
}

/// One interaction of ten: four clicks, six slash commands of five kinds.
const MIX: [Kind; 10] = [
    Kind::Click,
    Kind::IncidentList,
    Kind::Click,
    Kind::Oncall,
    Kind::Click,
    Kind::Topics,
    Kind::Click,
    Kind::Status,
    Kind::Summary,
    Kind::Diagnose,
];

struct Sample {
    kind: Kind,
    latency: Duration,
    ok: bool,
}

#[derive(Clone)]
struct Target {
    base: String,
    /// Where the fake takes `response_url` posts.
    response_base: String,
    /// Incidents for the clicks (one each) and the `id=N` commands.
    click_ids: Arc<Vec<i64>>,
}

async fn one_request(target: &Target, client: &reqwest::Client, kind: Kind, index: u64) -> bool {
    let user = format!("U{:04}", 1 + index % 7);
    let ids = &target.click_ids;
    let some_id = ids.get(index as usize % ids.len().max(1)).copied().unwrap_or(1);
    let commands = format!("{}/slack/commands", target.base);
    let result = match kind {
        Kind::Alert => {
            // Every other alert opens an incident, the others repeat one of 1,000.
            let key = if index.is_multiple_of(2) {
                format!("load-{index}")
            } else {
                format!("hot-{}", (index * 7919) % 1000)
            };
            send_alert(client, &format!("{}/alerts/generic", target.base), &key).await
        }
        Kind::Click => {
            let id = ids.get(index as usize).copied().unwrap_or(some_id);
            send_signed(
                client,
                &format!("{}/slack/interactions", target.base),
                ack_click_body(&target.response_base, &user, id),
            )
            .await
        }
        Kind::IncidentList => {
            send_signed(client, &commands, slash_body(&target.response_base, &user, OPS, "/incident", "list")).await
        }
        Kind::Oncall => {
            send_signed(client, &commands, slash_body(&target.response_base, &user, OPS, "/oncall", "")).await
        }
        Kind::Topics => {
            send_signed(client, &commands, slash_body(&target.response_base, &user, OPS, "/diagnose", "")).await
        }
        Kind::Status => {
            let text = format!("status investigating looking at the disks id={some_id}");
            send_signed(client, &commands, slash_body(&target.response_base, &user, OPS, "/incident", &text)).await
        }
        Kind::Summary => {
            let text = format!("summary id={some_id}");
            send_signed(client, &commands, slash_body(&target.response_base, &user, OPS, "/incident", &text)).await
        }
        Kind::Diagnose => {
            send_signed(client, &commands, slash_body(&target.response_base, &user, OPS, "/diagnose", "ping")).await
        }
    };
    match result {
        Ok((status, _)) if status < 300 => true,
        Ok((status, text)) => {
            eprintln!("  {}: answered {status}: {}", kind.name(), text.chars().take(200).collect::<String>());
            false
        }
        Err(error) => {
            eprintln!("  {}: {error}", kind.name());
            false
        }
    }
}

/// Sends at `rate` per second for `duration`, each at its scheduled moment; the latency of each
/// runs from that moment.
async fn open_loop(
    target: Target,
    rate: u64,
    duration: Duration,
    start: tokio::time::Instant,
    kind_of: fn(u64) -> Kind,
) -> Vec<Sample> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().expect("an HTTP client");
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let total = (duration.as_secs_f64() * rate as f64) as u64;
    let samples = Arc::new(Mutex::new(Vec::with_capacity(total as usize)));
    let mut tasks = Vec::with_capacity(total as usize);
    let mut counters: HashMap<Kind, u64> = HashMap::new();
    for sent in 0..total {
        let scheduled = start + interval.mul_f64(sent as f64);
        tokio::time::sleep_until(scheduled).await;
        let kind = kind_of(sent);
        let counter = counters.entry(kind).or_default();
        let index = *counter;
        *counter += 1;
        let (target, client, samples) = (target.clone(), client.clone(), samples.clone());
        tasks.push(tokio::spawn(async move {
            let ok = one_request(&target, &client, kind, index).await;
            let latency = tokio::time::Instant::now() - scheduled;
            samples.lock().expect("samples").push(Sample { kind, latency, ok });
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    Arc::try_unwrap(samples).map(|samples| samples.into_inner().expect("samples")).unwrap_or_default()
}

fn summarize(label: &str, samples: &[Sample]) {
    let mut groups: BTreeMap<&'static str, Vec<&Sample>> = BTreeMap::new();
    for sample in samples {
        let group = if sample.kind == Kind::Alert { "alerts" } else { "interactions (all)" };
        groups.entry(group).or_default().push(sample);
        if sample.kind != Kind::Alert {
            groups.entry(sample.kind.name()).or_default().push(sample);
        }
    }
    for (group, samples) in groups {
        let mut latencies: Vec<Duration> = samples.iter().map(|sample| sample.latency).collect();
        latencies.sort();
        let failed = samples.iter().filter(|sample| !sample.ok).count();
        let over_1s = latencies.iter().filter(|latency| **latency > Duration::from_secs(1)).count();
        let over_10ms = latencies.iter().filter(|latency| **latency > Duration::from_millis(10)).count();
        println!(
            "{label}: {group:<30} n={:<6} p50 {:>9}  p99 {:>9}  max {:>10}  >10 ms {over_10ms:<5} >1 s {over_1s:<4} failed {failed}",
            latencies.len(),
            ms(percentile(&latencies, 0.50)),
            ms(percentile(&latencies, 0.99)),
            ms(*latencies.last().unwrap_or(&Duration::ZERO)),
        );
    }
}

async fn run_load(label: &str, target: Target) {
    let interactions = env_number("FIREBELL_BENCH_INTERACTIONS", 50).max(1);
    let alerts = env_number("FIREBELL_BENCH_ALERTS", 200);
    let duration = Duration::from_secs(env_number("FIREBELL_BENCH_SECONDS", 30));
    println!(
        "{label}: {interactions} interactions/s + {alerts} alerts/s for {} s, open loop; load average before: {}",
        duration.as_secs(),
        support::load_average()
    );
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let chat = tokio::spawn(open_loop(target.clone(), interactions, duration, start, |sent| MIX[(sent % 10) as usize]));
    let alert_load = if alerts > 0 {
        Some(tokio::spawn(open_loop(target, alerts, duration, start + Duration::from_micros(2_500), |_| Kind::Alert)))
    } else {
        None
    };
    let mut samples = chat.await.expect("the interaction load");
    if let Some(alert_load) = alert_load {
        samples.extend(alert_load.await.expect("the alert load"));
    }
    summarize(label, &samples);
    println!("{label}: load average after: {}", support::load_average());
}

async fn ack_bench() {
    let fake = Fake::start(false).await;
    let served = serve(&fake, &[("ping", PING)], CONFIG_REST);
    let base = format!("http://{}", served.address);
    let interactions = env_number("FIREBELL_BENCH_INTERACTIONS", 50).max(1);
    let seconds = env_number("FIREBELL_BENCH_SECONDS", 30);
    // One incident for each click (each acknowledges a different one), and the 1,000 that
    // repeated alerts go to.
    let clicks = (interactions * seconds * 4).div_ceil(10) + 10;
    let prepared = Instant::now();
    let click_ids = open_incidents(base.clone(), (0..clicks).map(|index| format!("click-{index}")).collect()).await;
    open_incidents(base.clone(), (0..1000).map(|index| format!("hot-{index}")).collect()).await;
    println!(
        "ack: opened {} incidents beforehand in {:.1} s",
        click_ids.len() + 1000,
        prepared.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_before, _) = support::memory_mib(served.child.id());
    let click_ids = Arc::new(click_ids);
    let target =
        Target { base: base.clone(), response_base: format!("http://{}", fake.address), click_ids: click_ids.clone() };
    run_load("ack", target).await;
    // The clicks did what they say: each clicked incident is acknowledged.
    let client = reqwest::Client::new();
    let clicked = (interactions * seconds * 4 / 10) as usize;
    let mut acknowledged = 0;
    for id in click_ids.iter().take(clicked) {
        let incident: Value = client
            .get(format!("{base}/api/incidents/{id}"))
            .send()
            .await
            .expect("the API answers")
            .json()
            .await
            .expect("an incident");
        acknowledged += usize::from(incident["acknowledged_at"].is_string());
    }
    println!("ack: {acknowledged} of the {clicked} incidents clicked are acknowledged");
    let (rss, hwm) = support::memory_mib(served.child.id());
    let calls = fake.calls();
    let count = |method: &str| calls.iter().filter(|call| call.method == method).count();
    println!(
        "ack: firebell RSS {rss_before:.1} MiB before the load, {rss:.1} MiB after (VmHWM {hwm:.1}); fake Slack got {} calls ({} chat.postMessage, {} chat.update)",
        calls.len(),
        count("chat.postMessage"),
        count("chat.update"),
    );
    let log = std::fs::read_to_string(served.dir.path().join("serve-0.log")).unwrap_or_default();
    let warnings = log.lines().filter(|line| line.contains("WARN") || line.contains("ERROR")).count();
    println!("ack: {warnings} warning/error lines in firebell's log");
    if let Some(line) = log.lines().find(|line| line.contains("WARN") || line.contains("ERROR")) {
        println!("ack: first: {}", line.chars().take(300).collect::<String>());
    }
}

/// The reference: a bare axum handler in a child process of this program, under the same load.
fn bare_server_main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        println!("{}", listener.local_addr().expect("an address").port());
        use std::io::Write;
        std::io::stdout().flush().expect("the port is written");
        async fn ok(_body: Bytes) -> StatusCode {
            StatusCode::OK
        }
        let router = Router::new().fallback(ok);
        axum::serve(listener, router).await.expect("the bare server serves");
    });
}

async fn bare_bench() {
    let mut child = Command::new(std::env::current_exe().expect("this program"))
        .env("FIREBELL_BENCH_BARE_SERVER", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("the bare server starts");
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().expect("its stdout")), &mut line)
        .expect("the bare server says its port");
    let port: u16 = line.trim().parse().expect("a port");
    let target = Target {
        base: format!("http://127.0.0.1:{port}"),
        response_base: format!("http://127.0.0.1:{port}"),
        click_ids: Arc::new(Vec::new()),
    };
    run_load("bare axum", target).await;
    support::stop(&mut child);
}

// ---------------------------------------------------------------------------------------------
// Chat output pacing.

const SLOW: &str = r#"name = "slow"
summary = "Checks that finish one after another over seven seconds"

[[checks]]
name = "one"
kind = "exec"
argv = ["@SCRIPTS@/sleep-then-say.sh", "1", "one"]

[[checks]]
name = "two"
kind = "exec"
argv = ["@SCRIPTS@/sleep-then-say.sh", "2", "two"]

[[checks]]
name = "three"
kind = "exec"
argv = ["@SCRIPTS@/sleep-then-say.sh", "3", "three"]

[[checks]]
name = "five"
kind = "exec"
argv = ["@SCRIPTS@/sleep-then-say.sh", "5", "five"]

[[checks]]
name = "seven"
kind = "exec"
argv = ["@SCRIPTS@/sleep-then-say.sh", "7", "seven"]
"#;

const LONG: &str = r#"name = "long"
summary = "A check whose output is far too long for a message"

[[checks]]
name = "lines"
kind = "exec"
argv = ["seq", "-f", "output line number %g of a check that says far too much", "1", "30000"]
"#;

const PACING_REST: &str = r#"
[groups]
oncall = ["slack:U0001", "slack:U0002"]

[[policies]]
name = "default"
steps = [ { after = "0s", notify = ["group:oncall"] } ]

[[routes]]
match = { alertname = "DiskFull" }
policy = "default"
"#;

fn window_max(times: &[Instant], window: Duration) -> usize {
    let mut best = 0;
    let mut first = 0;
    for (last, at) in times.iter().enumerate() {
        while at.duration_since(times[first]) >= window {
            first += 1;
        }
        best = best.max(last - first + 1);
    }
    best
}

fn min_gap(times: &[Instant]) -> Option<Duration> {
    times.windows(2).map(|pair| pair[1].duration_since(pair[0])).min()
}

async fn pacing_bench() {
    let fake = Fake::start(true).await;
    let served = serve(&fake, &[("ping", PING), ("slow", SLOW), ("long", LONG)], PACING_REST);
    let base = format!("http://{}", served.address);
    let response_base = format!("http://{}", fake.address);
    let burst = env_number("FIREBELL_BENCH_BURST", 30);
    let started = Instant::now();
    println!("pacing: load average before: {}", support::load_average());

    // All at once: alerts opening incidents (a notification each in the incident channel and
    // pages to two people), streamed diagnoses in one channel, over-long output in another.
    let client = reqwest::Client::new();
    let alert_keys: Vec<String> = (0..burst).map(|index| format!("burst-{index}")).collect();
    let alerts = tokio::spawn(open_incidents(base.clone(), alert_keys));
    let commands_url = format!("{base}/slack/commands");
    let mut sends = Vec::new();
    for index in 0..6 {
        let body = slash_body(&response_base, &format!("U{index:04}"), OPS, "/diagnose", "slow");
        sends.push(send_signed(&client, &commands_url, body));
    }
    for index in 0..3 {
        let body = slash_body(&response_base, &format!("U{index:04}"), OPS_LONG, "/diagnose", "long");
        sends.push(send_signed(&client, &commands_url, body));
    }
    for answer in futures::future::join_all(sends).await {
        let (status, text) = answer.expect("the command is answered");
        assert!(status < 300, "a command was refused: {status} {text}");
    }
    let ids = alerts.await.expect("the alerts are sent");
    // Then status updates on ten of the incidents, twice each, a second apart.
    for round in 0..2 {
        for id in ids.iter().take(10) {
            let text = format!("status identified round {round} of the bench id={id}");
            let body = slash_body(&response_base, "U0001", OPS, "/incident", &text);
            let (status, answer) =
                send_signed(&client, &format!("{base}/slack/commands"), body).await.expect("the command is answered");
            assert!(status < 300, "a status update was refused: {status} {answer}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // Until the fake has heard nothing for 10 s (everything delivered), at most 5 minutes.
    let quiet = Duration::from_secs(10);
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let last = fake.calls().last().map(|call| call.at).unwrap_or(started);
        if last.elapsed() >= quiet || started.elapsed() > Duration::from_secs(300) {
            break;
        }
    }
    let calls = fake.calls();
    let took = calls.last().map(|call| call.at.duration_since(started)).unwrap_or_default();
    println!("pacing: {} calls to the fake Slack over {:.1} s", calls.len(), took.as_secs_f64());
    let mut by_method: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for call in &calls {
        let entry = by_method.entry(call.method.as_str()).or_default();
        entry.0 += 1;
        entry.1 += usize::from(call.refused.is_some());
    }
    for (method, (count, refused)) in &by_method {
        println!("pacing:   {method:<30} {count:>4} calls, {refused:>3} answered 429");
    }

    // Posts per channel: every request (Slack counts requests), and the accepted ones.
    let mut posts: BTreeMap<&str, (Vec<Instant>, Vec<Instant>)> = BTreeMap::new();
    for call in calls.iter().filter(|call| call.method == "chat.postMessage") {
        let entry = posts.entry(call.key.as_str()).or_default();
        entry.0.push(call.at);
        if call.refused.is_none() {
            entry.1.push(call.at);
        }
    }
    for (channel, (requests, accepted)) in &posts {
        println!(
            "pacing:   posts in {channel:<9} {:>3} requests ({} accepted); most in any 1 s: {} requests, {} accepted; shortest gap between requests {}",
            requests.len(),
            accepted.len(),
            window_max(requests, Duration::from_secs(1)),
            window_max(accepted, Duration::from_secs(1)),
            min_gap(requests).map(ms).unwrap_or_else(|| "-".into()),
        );
    }

    // Edits per message.
    let mut edits: BTreeMap<&str, Vec<Instant>> = BTreeMap::new();
    for call in calls.iter().filter(|call| call.method == "chat.update") {
        edits.entry(call.key.as_str()).or_default().push(call.at);
    }
    let mut shortest: Option<(Duration, &str)> = None;
    let mut edited_by_channel: BTreeMap<&str, (usize, usize, Option<Duration>)> = BTreeMap::new();
    for (message, times) in &edits {
        let channel = message.split(' ').next().unwrap_or("");
        let gap = min_gap(times);
        let entry = edited_by_channel.entry(channel).or_default();
        entry.0 += 1;
        entry.1 += times.len();
        if let Some(gap) = gap {
            entry.2 = Some(entry.2.map_or(gap, |best: Duration| best.min(gap)));
            if shortest.is_none_or(|(best, _)| gap < best) {
                shortest = Some((gap, message));
            }
        }
    }
    for (channel, (messages, count, gap)) in &edited_by_channel {
        println!(
            "pacing:   edits in {channel:<9} {messages} messages, {count} chat.update requests; shortest gap between two edits of one message {}",
            gap.map(ms).unwrap_or_else(|| "- (one edit each)".into())
        );
    }
    if let Some((gap, message)) = shortest {
        println!("pacing:   shortest gap between edits of one message overall: {} ({message})", ms(gap));
    }

    // Retry-After: the retry of each refused call (same method, same body) came no earlier than
    // the refusal's time plus its Retry-After; and no other call of that method went to the
    // same channel (posts) or message (edits) inside that window.
    let mut retried = 0;
    let mut early = 0;
    let mut never = 0;
    let mut margin: Option<Duration> = None;
    let mut others_inside = 0;
    for (index, call) in calls.iter().enumerate() {
        let Some(seconds) = call.refused else { continue };
        let allowed = call.at + Duration::from_secs(seconds);
        let later = &calls[index + 1..];
        match later.iter().find(|next| next.method == call.method && next.body_hash == call.body_hash) {
            Some(retry) => {
                retried += 1;
                if retry.at < allowed {
                    early += 1;
                    println!(
                        "pacing:   EARLY retry of {} {}: {} before its Retry-After",
                        call.method,
                        call.key,
                        ms(allowed - retry.at)
                    );
                } else {
                    let after = retry.at - allowed;
                    margin = Some(margin.map_or(after, |best: Duration| best.min(after)));
                }
            }
            None => never += 1,
        }
        others_inside += later
            .iter()
            .filter(|next| {
                next.at < allowed
                    && next.method == call.method
                    && next.key == call.key
                    && next.body_hash != call.body_hash
            })
            .count();
    }
    println!(
        "pacing: Retry-After: {} refusals; {retried} retried, {early} of them early, {never} never retried; retries came {} or more after the Retry-After ran out; {others_inside} other calls to the same channel/message inside a Retry-After window",
        calls.iter().filter(|call| call.refused.is_some()).count(),
        margin.map(ms).unwrap_or_else(|| "-".into()),
    );

    // Slack's limits: text ≤ 40,000 characters, ≤ 50 blocks, ≤ 3,000 in a section, about
    // 13,200 of block text in all.
    let messages: Vec<&Call> = calls
        .iter()
        .filter(|call| matches!(call.method.as_str(), "chat.postMessage" | "chat.update" | "chat.postEphemeral"))
        .collect();
    let over: Vec<&&Call> = messages
        .iter()
        .filter(|call| {
            call.text_chars > 40_000
                || call.blocks > 50
                || call.max_section_chars > 3_000
                || call.block_text_chars > 13_200
        })
        .collect();
    let biggest_text = messages.iter().map(|call| call.text_chars).max().unwrap_or(0);
    let most_blocks = messages.iter().map(|call| call.blocks).max().unwrap_or(0);
    let biggest_section = messages.iter().map(|call| call.max_section_chars).max().unwrap_or(0);
    let biggest_block_text = messages.iter().map(|call| call.block_text_chars).max().unwrap_or(0);
    let uploads = fake.state.lock().expect("fake state").upload_bytes.clone();
    println!(
        "pacing: limits: {} of {} messages over a limit; largest text {biggest_text} chars, most blocks {most_blocks}, largest section {biggest_section} chars, most block text {biggest_block_text} chars; {} files uploaded ({:?} bytes)",
        over.len(),
        messages.len(),
        uploads.len(),
        uploads,
    );
    println!("pacing: load average after: {}", support::load_average());
    drop(served);
}

fn main() {
    if std::env::var_os("FIREBELL_BENCH_BARE_SERVER").is_some() {
        bare_server_main();
        return;
    }
    println!("binary: {}; machine load average: {}", support::firebell(), support::load_average());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a runtime");
    runtime.block_on(async {
        if selected("bare") {
            bare_bench().await;
        }
        if selected("ack") {
            ack_bench().await;
        }
        if selected("pacing") {
            pacing_bench().await;
        }
    });
}
