//! The console's HTTP side: the pages, the embedded assets, the JSON endpoints the chat page
//! calls (`/console/*`), and the server-sent event stream that carries every post and edit to
//! open pages. Every route passes [`admit`] first (login and cross-site checks).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form as UrlForm, Json, Router};
use futures::Stream;
use regex::Regex;
use serde::Deserialize;
use serde_json::json;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_util::sync::CancellationToken;

use super::guard::{self, Access};
use super::pages::Pages;
use super::{BOT, CHANNELS, ConsoleAdapter, ConsoleEvent, INCIDENT_CHANNEL, direct_channel};
use crate::chat::core::ChatCore;
use crate::chat::{ChatEvent, MessageRef, Origin, Reply};
use crate::config::Person;
use crate::runbook::Catalogue;

/// Messages a page loads when it opens a channel.
const HISTORY: i64 = 500;
/// Characters a typed command may have.
const MAX_COMMAND_CHARS: usize = 4_000;

static NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$").expect("a valid pattern"));
static CHANNEL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9_-]{0,31}$").expect("a valid pattern"));

/// Everything the console's routes share.
pub struct Console {
    chat: Arc<ChatCore>,
    adapter: Arc<ConsoleAdapter>,
    catalogue: Arc<Catalogue>,
    access: Access,
    pages: Pages,
    /// Cancelled when the server stops: ends every event stream, so open pages do not hold up
    /// a graceful shutdown.
    closing: CancellationToken,
}

impl Console {
    pub fn new(chat: Arc<ChatCore>, adapter: Arc<ConsoleAdapter>, catalogue: Arc<Catalogue>, access: Access) -> Self {
        Console { chat, adapter, catalogue, access, pages: Pages::new(), closing: CancellationToken::new() }
    }

    /// Ends the event streams of open pages (they reconnect to whatever serves next).
    pub fn close_streams(&self) {
        self.closing.cancel();
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.chat.escalator().now()
    }
}

/// The CSRF token of this request (the cookie's, or a new one the response sets).
#[derive(Debug, Clone)]
pub struct CsrfToken(pub String);

/// The console's routes; call [`Console::close_streams`] when the server stops.
pub fn routes(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(chat_page))
        .route("/incidents", get(incidents_page))
        .route("/incidents/{id}", get(incident_page))
        .route("/login", get(login_page).post(login))
        .route("/assets/{name}", get(asset))
        .route("/console/catalogue", get(catalogue))
        .route("/console/history", get(history))
        .route("/console/files/{id}", get(file))
        .route("/console/events", get(events))
        .route("/console/command", post(command))
        .route("/console/button", post(button))
        .route("/console/form", post(form))
        .layer(middleware::from_fn_with_state(console.clone(), admit))
        .with_state(console)
}

/// A refusal: JSON for the page's script, a page for a person.
fn refuse(status: StatusCode, path: &str, message: String) -> Response {
    if path.starts_with("/console/") {
        (status, Json(json!({"error": message}))).into_response()
    } else {
        (status, Html(Pages::refusal(&message))).into_response()
    }
}

/// Lets a request through when the console is open to its sender, checks that writes come
/// from the console's own page, and gives every page a CSRF cookie.
async fn admit(State(console): State<Arc<Console>>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let public = path == "/login" || path.starts_with("/assets/");
    if let Some(reason) = console.access.shut_reason()
        && !path.starts_with("/assets/")
    {
        return refuse(StatusCode::FORBIDDEN, &path, reason);
    }
    if !public && !console.access.admits(request.headers(), console.now()) {
        if path.starts_with("/console/") {
            return refuse(StatusCode::UNAUTHORIZED, &path, "log in first: open /login".to_string());
        }
        return Redirect::to("/login").into_response();
    }
    let writes = !matches!(*request.method(), Method::GET | Method::HEAD);
    // The login form carries its token in a field; the handler checks it there.
    if writes && path != "/login" {
        let sent = request.headers().get(guard::CSRF_HEADER).and_then(|value| value.to_str().ok());
        if let Err(reason) = guard::check_same_origin(request.headers(), sent) {
            return refuse(StatusCode::FORBIDDEN, &path, format!("refused: {reason}"));
        }
    }
    let (token, new_cookie) = match guard::cookie(request.headers(), guard::CSRF_COOKIE).filter(|v| !v.is_empty()) {
        Some(token) => (token, None),
        None => {
            let (token, cookie) = guard::new_csrf_cookie();
            (token, Some(cookie))
        }
    };
    request.extensions_mut().insert(CsrfToken(token));
    let mut response = next.run(request).await;
    if let Some(cookie) = new_cookie {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    let headers = response.headers_mut();
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    headers.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    if !path.starts_with("/console/events") {
        headers.insert(
            "content-security-policy",
            HeaderValue::from_static(
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
            ),
        );
    }
    response
}

async fn chat_page(State(console): State<Arc<Console>>) -> Response {
    Html(console.pages.chat()).into_response()
}

async fn incidents_page(State(console): State<Arc<Console>>) -> Response {
    match console.chat.escalator().store().incidents(true, 200).await {
        Ok(incidents) => Html(console.pages.incidents(&incidents, console.now())).into_response(),
        Err(error) => {
            refuse(StatusCode::SERVICE_UNAVAILABLE, "/incidents", format!("the store is unavailable: {error}"))
        }
    }
}

async fn incident_page(State(console): State<Arc<Console>>, Path(id): Path<String>) -> Response {
    let path = format!("/incidents/{id}");
    let Ok(id) = id.parse::<i64>() else {
        return refuse(StatusCode::NOT_FOUND, &path, format!("'{id}' is not an incident number"));
    };
    match console.chat.escalator().store().incident(id).await {
        Ok(incident) => {
            let templates = console.chat.escalator().templates();
            Html(console.pages.incident(&incident, templates, console.now())).into_response()
        }
        Err(crate::store::StoreError::NotFound(_)) => {
            refuse(StatusCode::NOT_FOUND, &path, format!("there is no incident #{id}"))
        }
        Err(error) => refuse(StatusCode::SERVICE_UNAVAILABLE, &path, format!("the store is unavailable: {error}")),
    }
}

async fn login_page(State(console): State<Arc<Console>>, Extension(csrf): Extension<CsrfToken>) -> Response {
    if !console.access.needs_login() {
        return Redirect::to("/").into_response();
    }
    Html(console.pages.login(&csrf.0, None)).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

async fn login(
    State(console): State<Arc<Console>>,
    Extension(csrf): Extension<CsrfToken>,
    headers: HeaderMap,
    UrlForm(form): UrlForm<LoginForm>,
) -> Response {
    if let Err(reason) = guard::check_same_origin(&headers, Some(&form.csrf)) {
        return refuse(StatusCode::FORBIDDEN, "/login", format!("refused: {reason}"));
    }
    match console.access.login(&form.token, console.now()) {
        Some(cookie) => {
            let mut response = Redirect::to("/").into_response();
            response.headers_mut().append(header::SET_COOKIE, cookie);
            response
        }
        None => {
            tracing::warn!("A console login failed: wrong token");
            let page = console.pages.login(&csrf.0, Some("That is not the console token."));
            (StatusCode::UNAUTHORIZED, Html(page)).into_response()
        }
    }
}

async fn asset(Path(name): Path<String>) -> Response {
    let (body, content_type) = match name.as_str() {
        "console.js" => (include_str!("assets/console.js"), "text/javascript; charset=utf-8"),
        "console.css" => (include_str!("assets/console.css"), "text/css; charset=utf-8"),
        "favicon.svg" => (include_str!("assets/favicon.svg"), "image/svg+xml"),
        _ => return (StatusCode::NOT_FOUND, "no such asset").into_response(),
    };
    ([(header::CONTENT_TYPE, content_type), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

/// What Tab completes, and the channels a page lists.
async fn catalogue(State(console): State<Arc<Console>>) -> Response {
    let topics: Vec<_> = console
        .catalogue
        .runbooks()
        .map(|runbook| {
            json!({
                "name": runbook.name,
                "summary": runbook.summary,
                "args": runbook.args.values().map(|arg| json!({"name": arg.name, "help": arg.help, "example": arg.example})).collect::<Vec<_>>(),
                "remediations": runbook.remediations.iter().map(|remediation| json!({"name": remediation.name, "summary": remediation.summary})).collect::<Vec<_>>(),
            })
        })
        .collect();
    Json(json!({
        "commands": ["/diagnose", "/remediate", "/incident", "/oncall", "/help"],
        "incident_commands": ["declare", "ack", "resolve", "escalate", "status", "list", "summary"],
        "topics": topics,
        "channels": CHANNELS,
        "incident_channel": INCIDENT_CHANNEL,
    }))
    .into_response()
}

/// A refusal of what the page sent: the status, and which field is wrong and what it must be.
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

fn bad_request(message: impl Into<String>) -> Refusal {
    Refusal(StatusCode::BAD_REQUEST, message.into())
}

fn person(name: &str) -> Result<Person, Refusal> {
    if NAME.is_match(name) {
        Ok(Person { platform: "console".to_string(), id: name.to_string() })
    } else {
        Err(bad_request(format!(
            "name '{name}' is not valid: use 1–32 letters, digits, '.', '_' or '-', starting with a letter or digit (e.g. alice)"
        )))
    }
}

/// A channel the person may read and write: a named channel, or their own direct messages.
fn channel_for(channel: &str, user: &Person) -> Result<String, Refusal> {
    if CHANNEL.is_match(channel) || channel == direct_channel(&user.id) {
        Ok(channel.to_string())
    } else {
        Err(bad_request(format!(
            "channel '{channel}' is not valid: use 1–32 lowercase letters, digits, '_' or '-' (e.g. {INCIDENT_CHANNEL}), or @{} for your direct messages",
            user.id
        )))
    }
}

fn message_id(id: &str, what: &str) -> Result<String, Refusal> {
    match id.parse::<i64>() {
        Ok(number) if number > 0 => Ok(number.to_string()),
        _ => Err(bad_request(format!("{what} '{id}' is not a console message id (a positive number)"))),
    }
}

#[derive(Deserialize)]
struct HistoryQuery {
    user: String,
    channel: String,
}

async fn history(State(console): State<Arc<Console>>, Query(query): Query<HistoryQuery>) -> Response {
    let channel = match person(&query.user).and_then(|user| channel_for(&query.channel, &user)) {
        Ok(channel) => channel,
        Err(refusal) => return refusal.into_response(),
    };
    match console.adapter.store().console_history(&channel, HISTORY).await {
        Ok(messages) => {
            let messages: Vec<_> = messages.into_iter().map(super::for_pages).collect();
            Json(json!({"channel": channel, "messages": messages})).into_response()
        }
        Err(error) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": format!("the store is unavailable: {error}")})))
                .into_response()
        }
    }
}

#[derive(Deserialize)]
struct FileQuery {
    user: String,
}

/// A file posted on the console (long output), whole, as a download.
async fn file(State(console): State<Arc<Console>>, Path(id): Path<String>, Query(query): Query<FileQuery>) -> Response {
    let found = async {
        let user = person(&query.user)?;
        let id = message_id(&id, "file")?;
        let message = console
            .adapter
            .store()
            .console_message(id.parse().unwrap_or_default())
            .await
            .map_err(|error| Refusal(StatusCode::NOT_FOUND, error.to_string()))?;
        channel_for(&message.channel, &user)?;
        let file = message
            .body
            .get("file")
            .ok_or_else(|| Refusal(StatusCode::NOT_FOUND, format!("message {id} has no file")))?;
        let name = file["filename"]
            .as_str()
            .unwrap_or("output.txt")
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-' && c != '_', "_");
        Ok::<_, Refusal>((name, file["text"].as_str().unwrap_or("").to_string()))
    }
    .await;
    match found {
        Ok((name, text)) => (
            [
                (header::CONTENT_TYPE, "text/plain; charset=utf-8".to_string()),
                (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
            ],
            text,
        )
            .into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

#[derive(Deserialize)]
struct EventsQuery {
    user: String,
}

/// Every post and edit from now on, as server-sent events (`message`), except other people's
/// direct messages; `resync` when the page fell too far behind and must reload its history.
async fn events(State(console): State<Arc<Console>>, Query(query): Query<EventsQuery>) -> Response {
    let user = match person(&query.user) {
        Ok(user) => user,
        Err(refusal) => return refusal.into_response(),
    };
    let own_direct = direct_channel(&user.id);
    let stream = BroadcastStream::new(console.adapter.subscribe()).filter_map(move |item| match item {
        Ok(ConsoleEvent::Message { message }) => {
            if message.channel.starts_with('@') && message.channel != own_direct {
                return None;
            }
            let data = serde_json::to_string(&message).unwrap_or_default();
            Some(Ok::<_, Infallible>(Event::default().event("message").data(data)))
        }
        Err(BroadcastStreamRecvError::Lagged(_)) => Some(Ok(Event::default().event("resync").data("{}"))),
    });
    sse(futures::StreamExt::take_until(stream, console.closing.clone().cancelled_owned()))
}

fn sse(stream: impl Stream<Item = Result<Event, Infallible>> + Send + 'static) -> Response {
    let mut response = Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))).into_response();
    response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[derive(Deserialize)]
struct CommandBody {
    user: String,
    channel: String,
    #[serde(default)]
    thread: Option<String>,
    text: String,
}

/// A typed command: shown in the channel as the person's message, then answered by the core.
async fn command(State(console): State<Arc<Console>>, Json(body): Json<CommandBody>) -> Response {
    let result = async {
        let user = person(&body.user)?;
        let channel = channel_for(&body.channel, &user)?;
        let thread = body.thread.as_deref().map(|thread| message_id(thread, "thread")).transpose()?;
        let text = body.text.trim();
        if !text.starts_with('/') {
            return Err(bad_request(format!(
                "'{text}' is not a command: commands start with / ({})",
                "/diagnose, /remediate, /incident, /oncall"
            )));
        }
        if text.chars().count() > MAX_COMMAND_CHARS {
            return Err(bad_request(format!("a command may have at most {MAX_COMMAND_CHARS} characters")));
        }
        console
            .adapter
            .post_as(&user.to_string(), &channel, thread.as_deref(), json!({"command": text}))
            .await
            .map_err(|error| Refusal(StatusCode::SERVICE_UNAVAILABLE, error.to_string()))?;
        let origin = Origin { platform: "console", user, channel, thread };
        let trigger = new_trigger();
        let event = ChatEvent::Command { origin, text: text.to_string(), trigger: Some(trigger.clone()) };
        Ok((console.chat.handle(event).await, trigger))
    }
    .await;
    answer(&console, result)
}

#[derive(Deserialize)]
struct ButtonBody {
    user: String,
    channel: String,
    #[serde(default)]
    thread: Option<String>,
    message: String,
    action: String,
    value: String,
}

async fn button(State(console): State<Arc<Console>>, Json(body): Json<ButtonBody>) -> Response {
    let result = async {
        let user = person(&body.user)?;
        let channel = channel_for(&body.channel, &user)?;
        let thread = body.thread.as_deref().map(|thread| message_id(thread, "thread")).transpose()?;
        let message = MessageRef { channel: channel.clone(), id: message_id(&body.message, "message")? };
        let origin = Origin { platform: "console", user, channel, thread };
        let trigger = new_trigger();
        let event = ChatEvent::Button {
            origin,
            action: body.action,
            value: body.value,
            trigger: Some(trigger.clone()),
            message: Some(message),
        };
        Ok((console.chat.handle(event).await, trigger))
    }
    .await;
    answer(&console, result)
}

#[derive(Deserialize)]
struct FormBody {
    user: String,
    channel: String,
    #[serde(default)]
    thread: Option<String>,
    action: String,
    value: String,
    #[serde(default)]
    fields: BTreeMap<String, String>,
}

async fn form(State(console): State<Arc<Console>>, Json(body): Json<FormBody>) -> Response {
    let result = async {
        let user = person(&body.user)?;
        let channel = channel_for(&body.channel, &user)?;
        let thread = body.thread.as_deref().map(|thread| message_id(thread, "thread")).transpose()?;
        let origin = Origin { platform: "console", user, channel, thread };
        let event = ChatEvent::FormSubmitted { origin, action: body.action, value: body.value, fields: body.fields };
        Ok((console.chat.handle(event).await, new_trigger()))
    }
    .await;
    answer(&console, result)
}

/// The core's reply for the page: a message only this person sees, and a form to fill in.
fn answer(console: &Console, result: Result<(Reply, String), Refusal>) -> Response {
    match result {
        Ok((reply, trigger)) => {
            let form = console.adapter.take_form(&trigger);
            let reply = match reply {
                Reply::Nothing => None,
                Reply::Private(message) => Some(json!({"author": BOT, "body": {"blocks": message.blocks}})),
            };
            Json(json!({"reply": reply, "form": form})).into_response()
        }
        Err(refusal) => refusal.into_response(),
    }
}

/// A one-off id for one request, so a form the core opens reaches the page that asked.
fn new_trigger() -> String {
    let mut bytes = [0u8; 12];
    getrandom::fill(&mut bytes).expect("the operating system provides random bytes");
    hex::encode(bytes)
}
