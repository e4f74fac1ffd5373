//! The console's HTTP side: the pages, the embedded assets, the JSON endpoints the chat page
//! calls (`/console/*`), and the server-sent event stream that carries every post and edit to
//! open pages. Every route passes [`admit`] first (who the caller is, sign-in and cross-site
//! checks).
//!
//! A proven caller (see [`guard`]) acts only as themselves: a `user` field naming anyone else is
//! refused (403). Callers whose names are chosen neither take nor approve remediation requests
//! and read no direct messages; the refusals say how to turn sign-in on.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Form as UrlForm, Json, Router};
use base64::prelude::{BASE64_STANDARD, Engine as _};
use futures::Stream;
use regex::Regex;
use serde::Deserialize;
use serde_json::json;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;
use tokio_util::sync::CancellationToken;

use super::guard::{self, Access, Caller, LoginError, NotAdmitted};
use super::pages::Pages;
use super::{BOT, CHANNELS, ConsoleAdapter, ConsoleEvent, FormView, INCIDENT_CHANNEL, direct_channel};
use crate::chat::grammar::{self, Command};
use crate::chat::platform::{ChatHandler, Context};
use crate::chat::{ChatEvent, MessageRef, Origin, Reply, views};
use crate::config::Person;
use crate::runbook::Catalogue;

/// Messages a page loads when it opens a channel.
const HISTORY: i64 = 500;
/// Characters a typed command may have.
const MAX_COMMAND_CHARS: usize = 4_000;

static CHANNEL: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z0-9][a-z0-9_-]{0,31}$").expect("a valid pattern"));

/// Everything the console's routes share.
pub struct Console {
    handler: Arc<dyn ChatHandler>,
    escalator: Arc<crate::escalation::Escalator>,
    adapter: Arc<ConsoleAdapter>,
    catalogue: Arc<Catalogue>,
    access: Arc<Access>,
    pages: Pages,
    /// Cancelled when the server stops: ends every event stream, so open pages do not hold up
    /// a graceful shutdown.
    closing: CancellationToken,
}

impl Console {
    /// The console's routes' state; cancelling `closing` ends every open page's event stream.
    pub fn new(
        handler: Arc<dyn ChatHandler>,
        adapter: Arc<ConsoleAdapter>,
        context: &Context,
        closing: CancellationToken,
    ) -> Self {
        Console {
            handler,
            escalator: context.escalator.clone(),
            adapter,
            catalogue: context.catalogue.clone(),
            access: context.console_access.clone(),
            pages: Pages::new(),
            closing,
        }
    }

    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.escalator.now()
    }
}

/// The CSRF token of this request (the cookie's, or a new one the response sets).
#[derive(Debug, Clone)]
pub struct CsrfToken(pub String);

/// The console's routes.
pub fn routes(console: Arc<Console>) -> Router {
    Router::new()
        .route("/", get(chat_page))
        .route("/incidents", get(incidents_page))
        .route("/incidents/{id}", get(incident_page))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
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

/// The TCP peer of a request (set by `into_make_service_with_connect_info`).
fn peer(request: &Request) -> Option<std::net::SocketAddr> {
    request.extensions().get::<ConnectInfo<std::net::SocketAddr>>().map(|info| info.0)
}

/// True when the browser reached this page over HTTPS: its Origin says so (the Host check and
/// the same-origin check hold it to this server), or a trusted proxy says so.
fn served_over_https(access: &Access, headers: &HeaderMap, peer: Option<std::net::SocketAddr>) -> bool {
    let origin = headers.get(header::ORIGIN).and_then(|value| value.to_str().ok()).unwrap_or("");
    let forwarded = headers.get("x-forwarded-proto").and_then(|value| value.to_str().ok()).unwrap_or("");
    origin.starts_with("https://") || (access.trusted_peer(peer) && forwarded.eq_ignore_ascii_case("https"))
}

/// Lets a request through when the console is open to its sender, says who the sender is
/// ([`Caller`]), checks that writes come from the console's own page, and gives every page a
/// CSRF cookie.
async fn admit(State(console): State<Arc<Console>>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_string();
    let public = path == "/login" || path.starts_with("/assets/");
    let peer = peer(&request);
    let caller = match console.access.identify(request.headers(), peer, console.now()) {
        Ok(caller) => Some(caller),
        Err(NotAdmitted::Shut(reason)) if !path.starts_with("/assets/") => {
            return refuse(StatusCode::FORBIDDEN, &path, reason);
        }
        Err(NotAdmitted::BadProxyName(reason)) if !path.starts_with("/assets/") => {
            return refuse(StatusCode::FORBIDDEN, &path, reason);
        }
        Err(_) if public => None,
        Err(_) => {
            if path.starts_with("/console/") || path == "/logout" {
                return refuse(StatusCode::UNAUTHORIZED, &path, "sign in first: open /login".to_string());
            }
            return Redirect::to("/login").into_response();
        }
    };
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
    let https = served_over_https(&console.access, request.headers(), peer);
    request.extensions_mut().insert(CsrfToken(token));
    request.extensions_mut().insert(Https(https));
    request.extensions_mut().insert(Client(peer.map(|peer| peer.ip())));
    if let Some(caller) = caller {
        request.extensions_mut().insert(caller);
    }
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

/// Whether this request reached the console over HTTPS (the session cookie is then `Secure`).
#[derive(Debug, Clone, Copy)]
struct Https(bool);

/// The client's address, for the sign-in rate limit.
#[derive(Debug, Clone, Copy)]
struct Client(Option<std::net::IpAddr>);

/// Logs what the store said and tells the browser only that it is unavailable: a database's
/// message never reaches a page.
fn store_unavailable(error: &crate::store::StoreError) -> String {
    if !error.is_internal() {
        return error.to_string();
    }
    tracing::error!(%error, "A console request failed in the store");
    "the store is unavailable just now (the error is in firebell's log); try again in a moment".to_string()
}

async fn chat_page(State(console): State<Arc<Console>>) -> Response {
    Html(console.pages.chat()).into_response()
}

async fn incidents_page(State(console): State<Arc<Console>>) -> Response {
    match console.escalator.store().incidents(true, 200).await {
        Ok(incidents) => Html(console.pages.incidents(&incidents, console.now())).into_response(),
        Err(error) => refuse(StatusCode::SERVICE_UNAVAILABLE, "/incidents", store_unavailable(&error)),
    }
}

async fn incident_page(State(console): State<Arc<Console>>, Path(id): Path<String>) -> Response {
    let path = format!("/incidents/{id}");
    let Ok(id) = id.parse::<i64>() else {
        return refuse(StatusCode::NOT_FOUND, &path, format!("'{id}' is not an incident number"));
    };
    match console.escalator.store().incident(id).await {
        Ok(incident) => {
            let templates = console.escalator.templates();
            Html(console.pages.incident(&incident, templates, console.now())).into_response()
        }
        Err(crate::store::StoreError::NotFound(_)) => {
            refuse(StatusCode::NOT_FOUND, &path, format!("there is no incident #{id}"))
        }
        Err(error) => refuse(StatusCode::SERVICE_UNAVAILABLE, &path, store_unavailable(&error)),
    }
}

async fn login_page(
    State(console): State<Arc<Console>>,
    Extension(csrf): Extension<CsrfToken>,
    caller: Option<Extension<Caller>>,
) -> Response {
    if !console.access.offers_sign_in() {
        return Redirect::to("/").into_response();
    }
    let signed_in = caller.and_then(|Extension(caller)| caller.proven);
    Html(console.pages.login(&csrf.0, None, console.access.signs_in_people(), signed_in.as_deref())).into_response()
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    csrf: String,
}

async fn login(
    State(console): State<Arc<Console>>,
    Extension(csrf): Extension<CsrfToken>,
    Extension(Https(https)): Extension<Https>,
    Extension(Client(client)): Extension<Client>,
    headers: HeaderMap,
    UrlForm(form): UrlForm<LoginForm>,
) -> Response {
    if let Err(reason) = guard::check_same_origin(&headers, Some(&form.csrf)) {
        return refuse(StatusCode::FORBIDDEN, "/login", format!("refused: {reason}"));
    }
    let people = console.access.signs_in_people();
    let page = |status: StatusCode, message: &str| {
        (status, Html(console.pages.login(&csrf.0, Some(message), people, None))).into_response()
    };
    let client = client.unwrap_or(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED));
    match console.access.login(client, &form.name, &form.token, console.now()) {
        Ok((caller, value)) => {
            match &caller.proven {
                Some(name) => tracing::info!(person = %name, "A person signed in to the console"),
                None => tracing::info!("Someone signed in to the console with the shared token"),
            }
            let mut response = Redirect::to("/").into_response();
            response.headers_mut().append(header::SET_COOKIE, guard::session_cookie(&value, https));
            response
        }
        Err(LoginError::TooMany { what, retry_after_secs }) => {
            tracing::warn!(%client, name = form.name.trim(), "Console sign-ins refused: too many failures");
            let message = format!(
                "Too many failed sign-ins {what}: wait {retry_after_secs} s and try again (at most {} failures per name and {} per address in {} minutes).",
                guard::LOGIN_FAILURES_PER_NAME,
                guard::LOGIN_FAILURES_PER_ADDRESS,
                guard::LOGIN_WINDOW_SECS / 60
            );
            let mut response = page(StatusCode::TOO_MANY_REQUESTS, &message);
            if let Ok(value) = HeaderValue::from_str(&retry_after_secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
        Err(LoginError::NotConfigured) => page(
            StatusCode::NOT_FOUND,
            "There is nothing to sign in with here: set [console] people (or [server] console_token) in firebell.toml.",
        ),
        Err(LoginError::Wrong) => {
            tracing::warn!(%client, name = form.name.trim(), "A console sign-in failed: wrong name or token");
            let message = if people {
                "That name and token do not match: sign in with your name and your own token from [console] people."
            } else {
                "That is not the console token."
            };
            page(StatusCode::UNAUTHORIZED, message)
        }
    }
}

/// Ends the session in this browser. To end a person's sessions everywhere, rotate their token
/// in `[console] people` (each session is signed with its person's token).
async fn logout(State(console): State<Arc<Console>>, Extension(Https(https)): Extension<Https>) -> Response {
    let to = if console.access.needs_login() { "/login" } else { "/" };
    let mut response = Redirect::to(to).into_response();
    response.headers_mut().append(header::SET_COOKIE, guard::cleared_session_cookie(https));
    response
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

/// What Tab completes, the channels a page lists, and who the caller is.
async fn catalogue(State(console): State<Arc<Console>>, Extension(caller): Extension<Caller>) -> Response {
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
        "me": {
            "person": caller.proven,
            "proven": caller.proven.is_some(),
            "signed_in": caller.has_session(),
            "sign_in": console.access.offers_sign_in(),
            "how_to_prove": console.access.how_to_prove(),
        },
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

fn forbidden(message: impl Into<String>) -> Refusal {
    Refusal(StatusCode::FORBIDDEN, message.into())
}

/// The person a request acts as: the proven person (a `user` naming anyone else is refused), or
/// the chosen name in `user`.
fn person(caller: &Caller, user: Option<&str>) -> Result<Person, Refusal> {
    let user = user.map(str::trim).filter(|user| !user.is_empty());
    let name = match (&caller.proven, user) {
        (Some(proven), Some(named)) if named != proven => {
            return Err(forbidden(format!(
                "you are signed in as console:{proven}, and this request names '{named}': every console action is the \
                 signed-in person's. Leave out \"user\", or sign out and sign in as {named} with their own token."
            )));
        }
        (Some(proven), _) => proven.as_str(),
        (None, Some(named)) => named,
        (None, None) => return Err(bad_request("\"user\" is required: the name you act as (e.g. alice)")),
    };
    if crate::config::CONSOLE_NAME.is_match(name) {
        Ok(Person { platform: "console".to_string(), id: name.to_string() })
    } else {
        Err(bad_request(format!(
            "name '{name}' is not valid: use 1–32 letters, digits, '.', '_' or '-', starting with a letter or digit (e.g. alice)"
        )))
    }
}

/// A channel the person may read and write: a named channel, or their own direct messages —
/// which only a proven person has.
fn channel_for(console: &Console, caller: &Caller, channel: &str, user: &Person) -> Result<String, Refusal> {
    if CHANNEL.is_match(channel) {
        return Ok(channel.to_string());
    }
    if channel.starts_with('@') {
        return match &caller.proven {
            Some(proven) if channel == direct_channel(proven) => Ok(channel.to_string()),
            Some(proven) => Err(forbidden(format!(
                "{channel} holds someone else's direct messages: you are console:{proven}, and yours are @{proven}"
            ))),
            None => Err(forbidden(format!(
                "direct messages are readable only by their own person, and names on this console are chosen, not \
                 proven; {}",
                console.access.how_to_prove()
            ))),
        };
    }
    let own =
        if caller.proven.is_some() { format!(", or @{} for your direct messages", user.id) } else { String::new() };
    Err(bad_request(format!(
        "channel '{channel}' is not valid: use 1–32 lowercase letters, digits, '_' or '-' (e.g. {INCIDENT_CHANNEL}){own}"
    )))
}

/// Refuses what takes part in remediations unless the person is proven: a chosen name could be
/// anyone's, so "someone else approves" would mean nothing.
fn require_proven(console: &Console, caller: &Caller, what: &str) -> Result<(), Refusal> {
    if caller.proven.is_some() {
        return Ok(());
    }
    Err(forbidden(format!(
        "{what} needs a proven name, and names on this console are chosen, not proven (anyone could type any name, so \
         \"approved by someone else\" would mean nothing); {}. Diagnoses and incidents work without it.",
        console.access.how_to_prove()
    )))
}

fn message_id(id: &str, what: &str) -> Result<String, Refusal> {
    match id.parse::<i64>() {
        Ok(number) if number > 0 => Ok(number.to_string()),
        _ => Err(bad_request(format!("{what} '{id}' is not a console message id (a positive number)"))),
    }
}

#[derive(Deserialize)]
struct HistoryQuery {
    #[serde(default)]
    user: Option<String>,
    channel: String,
}

async fn history(
    State(console): State<Arc<Console>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<HistoryQuery>,
) -> Response {
    let channel = match person(&caller, query.user.as_deref())
        .and_then(|user| channel_for(&console, &caller, &query.channel, &user))
    {
        Ok(channel) => channel,
        Err(refusal) => return refusal.into_response(),
    };
    match console.adapter.store().console_history(&channel, HISTORY, super::FILE_PREVIEW_CHARS as i64).await {
        Ok(messages) => {
            // Already as pages show them: files cut to their previews by the store.
            Json(json!({"channel": channel, "messages": messages})).into_response()
        }
        Err(error) => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"error": store_unavailable(&error)}))).into_response()
        }
    }
}

#[derive(Deserialize)]
struct FileQuery {
    #[serde(default)]
    user: Option<String>,
}

/// A file posted on the console (long output), whole, as a download.
async fn file(
    State(console): State<Arc<Console>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(query): Query<FileQuery>,
) -> Response {
    let found = async {
        let user = person(&caller, query.user.as_deref())?;
        let id = message_id(&id, "file")?;
        let message = console
            .adapter
            .store()
            .console_message(id.parse().unwrap_or_default())
            .await
            .map_err(|error| Refusal(StatusCode::NOT_FOUND, error.to_string()))?;
        channel_for(&console, &caller, &message.channel, &user)?;
        let file = message
            .body
            .get("file")
            .ok_or_else(|| Refusal(StatusCode::NOT_FOUND, format!("message {id} has no file")))?;
        let name = file["filename"]
            .as_str()
            .unwrap_or("output.txt")
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '.' && c != '-' && c != '_', "_");
        let text = file["text"].as_str().unwrap_or("").to_string();
        // A picture (a chart) is stored as base64 and served as itself, shown in the page.
        if file["content_type"].as_str() == Some("image/png") {
            let bytes = BASE64_STANDARD
                .decode(text.as_bytes())
                .map_err(|_| Refusal(StatusCode::NOT_FOUND, format!("message {id} has no readable image")))?;
            return Ok::<_, Refusal>((name, "image/png", "inline", bytes));
        }
        Ok((name, "text/plain; charset=utf-8", "attachment", text.into_bytes()))
    }
    .await;
    match found {
        Ok((name, content_type, disposition, content)) => (
            [
                (header::CONTENT_TYPE, content_type.to_string()),
                (header::CONTENT_DISPOSITION, format!("{disposition}; filename=\"{name}\"")),
            ],
            content,
        )
            .into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

#[derive(Deserialize)]
struct EventsQuery {
    #[serde(default)]
    user: Option<String>,
}

/// Every post and edit from now on, as server-sent events (`message`), except direct messages
/// other than the proven person's own; `resync` when the page fell too far behind and must
/// reload its history.
async fn events(
    State(console): State<Arc<Console>>,
    Extension(caller): Extension<Caller>,
    Query(query): Query<EventsQuery>,
) -> Response {
    if let Err(refusal) = person(&caller, query.user.as_deref()) {
        return refusal.into_response();
    }
    // A chosen name proves nothing, so it reads nobody's direct messages.
    let own_direct = caller.proven.as_deref().map(direct_channel);
    let stream = BroadcastStream::new(console.adapter.subscribe()).filter_map(move |item| match item {
        Ok(ConsoleEvent::Message { message }) => {
            if message.channel.starts_with('@') && Some(&message.channel) != own_direct.as_ref() {
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
    #[serde(default)]
    user: Option<String>,
    channel: String,
    #[serde(default)]
    thread: Option<String>,
    text: String,
}

/// A typed command: shown in the channel as the person's message, then answered by the core.
async fn command(
    State(console): State<Arc<Console>>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<CommandBody>,
) -> Response {
    let result = async {
        let user = person(&caller, body.user.as_deref())?;
        let channel = channel_for(&console, &caller, &body.channel, &user)?;
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
        if matches!(grammar::parse(text), Ok(Command::Remediate { .. })) {
            require_proven(&console, &caller, "/remediate")?;
        }
        console
            .adapter
            .post_as(&user.to_string(), &channel, thread.as_deref(), json!({"command": text}))
            .await
            .map_err(|error| Refusal(StatusCode::SERVICE_UNAVAILABLE, error.to_string()))?;
        let origin = Origin { platform: "console", user, channel, thread };
        let event = ChatEvent::Command { origin, text: text.to_string() };
        Ok(console.handler.handle(event).await)
    }
    .await;
    answer(result)
}

/// The actions that take part in remediations: requesting one, approving or denying one.
fn remediation_action(action: &str) -> Option<&'static str> {
    match action {
        views::ACTION_REMEDIATE => Some("requesting a remediation"),
        views::ACTION_APPROVE => Some("approving a remediation"),
        views::ACTION_DENY => Some("denying a remediation"),
        _ => None,
    }
}

#[derive(Deserialize)]
struct ButtonBody {
    #[serde(default)]
    user: Option<String>,
    channel: String,
    #[serde(default)]
    thread: Option<String>,
    message: String,
    action: String,
    value: String,
}

async fn button(
    State(console): State<Arc<Console>>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<ButtonBody>,
) -> Response {
    let result =
        async {
            let user = person(&caller, body.user.as_deref())?;
            let channel = channel_for(&console, &caller, &body.channel, &user)?;
            let thread = body.thread.as_deref().map(|thread| message_id(thread, "thread")).transpose()?;
            let message_id = message_id(&body.message, "message")?;
            if let Some(what) = remediation_action(&body.action) {
                require_proven(&console, &caller, what)?;
            }
            // The button is on a message of the bot's in that channel: the channel a click claims
            // is what `[permissions] channels` is checked against.
            let clicked =
                console.adapter.store().console_message(message_id.parse().unwrap_or_default()).await.map_err(
                    |_| bad_request(format!("there is no console message {message_id} to click a button on")),
                )?;
            if clicked.channel != channel {
                return Err(bad_request(format!("message {message_id} is not in channel {channel}")));
            }
            let message = MessageRef { channel: channel.clone(), id: message_id };
            let origin = Origin { platform: "console", user, channel, thread };
            let event = ChatEvent::Button { origin, action: body.action, value: body.value, message: Some(message) };
            Ok(console.handler.handle(event).await)
        }
        .await;
    answer(result)
}

#[derive(Deserialize)]
struct FormBody {
    #[serde(default)]
    user: Option<String>,
    channel: String,
    #[serde(default)]
    thread: Option<String>,
    action: String,
    value: String,
    #[serde(default)]
    fields: BTreeMap<String, String>,
}

async fn form(
    State(console): State<Arc<Console>>,
    Extension(caller): Extension<Caller>,
    Json(body): Json<FormBody>,
) -> Response {
    let result = async {
        let user = person(&caller, body.user.as_deref())?;
        let channel = channel_for(&console, &caller, &body.channel, &user)?;
        let thread = body.thread.as_deref().map(|thread| message_id(thread, "thread")).transpose()?;
        if let Some(what) = remediation_action(&body.action) {
            require_proven(&console, &caller, what)?;
        }
        let origin = Origin { platform: "console", user, channel, thread };
        let event = ChatEvent::FormSubmitted { origin, action: body.action, value: body.value, fields: body.fields };
        Ok(console.handler.handle(event).await)
    }
    .await;
    answer(result)
}

/// The core's reply for the page: a message only this person sees, and a form to fill in.
fn answer(result: Result<Reply, Refusal>) -> Response {
    let (reply, form) = match result {
        Ok(Reply::Nothing) => (None, None),
        Ok(Reply::Private(message)) => (Some(json!({"author": BOT, "body": {"blocks": message.blocks}})), None),
        Ok(Reply::Form(form)) => (None, Some(FormView::from(&form))),
        Err(refusal) => return refusal.into_response(),
    };
    Json(json!({"reply": reply, "form": form})).into_response()
}
