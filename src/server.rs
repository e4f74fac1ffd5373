//! The HTTP surface of SPEC §7: every route in one place. Health and readiness, and the JSON
//! API for scripts. Errors are `{"error": "…"}` with a status that says whose mistake it was.
//!
//! Access (SPEC §9):
//! - `/api` writes need `Authorization: Bearer <server.api_token>`; with the token set, reads
//!   need it too (or a console session). On a non-loopback address without the token, `/api`
//!   and `/alerts/*` are refused outright: nothing on the network may read or open incidents.
//! - `/metrics` needs `Bearer <server.metrics_token>` when that is set.
//! - [`HostGuard`] answers only the host names the server is meant to be reached by (421 for
//!   others), so a page elsewhere cannot rebind its own name to a loopback firebell.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::config::{Secret, Severity};
use crate::escalation::{DeclareError, Escalator};
use crate::incident::{NewIncident, Resolution};
use crate::store::StoreError;

/// Request bodies beyond this are refused.
const MAX_BODY: usize = 64 * 1024;
/// Alert webhooks carry whole alert groups.
const MAX_ALERT_BODY: usize = 1024 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub escalator: Arc<Escalator>,
    pub api_token: Option<Secret>,
    pub metrics_token: Option<Secret>,
    /// The address the server is bound to: on a non-loopback one, no `api_token` means no API.
    pub listen: SocketAddr,
    /// The console's sign-in, so a signed-in person may read the API from the browser.
    pub console: Arc<crate::chat::console::guard::Access>,
    pub alerts: Arc<crate::ingest::AlertService>,
    /// The background parts: `/readyz` names the ones not working.
    pub health: Arc<crate::health::Health>,
    /// `[[monitors]]`, for `GET /api/monitors`.
    pub monitors: Arc<crate::monitor::Monitors>,
}

impl AppState {
    fn api_token(&self) -> Option<&Secret> {
        self.api_token.as_ref().filter(|token| !token.is_empty())
    }

    /// `/api` and `/alerts/*` are off: a non-loopback listener without `api_token`.
    fn api_closed(&self) -> Option<ApiError> {
        (self.api_token().is_none() && !self.listen.ip().is_loopback())
            .then(|| ApiError(StatusCode::UNAUTHORIZED, api_closed_reason(self.listen)))
    }
}

/// Why `/api` and `/alerts/*` refuse everything, for the refusal and the start-up warning.
pub fn api_closed_reason(listen: SocketAddr) -> String {
    format!(
        "the API and the alert endpoints are off: firebell listens on {listen}, which is not a loopback address, and \
         [server] api_token is not set. Set api_token in firebell.toml (e.g. api_token = \"${{FIREBELL_API_TOKEN}}\" \
         with a long random value) and send it as Authorization: Bearer <api_token>"
    )
}

pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/api/incidents", get(list_incidents).post(declare_incident))
        .route("/api/incidents/{id}", get(show_incident))
        .route("/api/incidents/{id}/postmortem", get(incident_postmortem))
        .route("/api/incidents/{id}/ack", post(acknowledge_incident))
        .route("/api/incidents/{id}/resolve", post(resolve_incident))
        .route("/api/remediations/{id}", get(show_remediation))
        .route("/api/audit", get(audit_log))
        .route("/api/monitors", get(list_monitors))
        .route("/api/followups", get(list_followups))
        .layer(middleware::from_fn_with_state(state.clone(), authorize_reads));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .merge(api)
        .route("/alerts/alertmanager", post(alertmanager_webhook).layer(DefaultBodyLimit::max(MAX_ALERT_BODY)))
        .route("/alerts/grafana", post(grafana_webhook).layer(DefaultBodyLimit::max(MAX_ALERT_BODY)))
        .route("/alerts/generic", post(generic_alert).layer(DefaultBodyLimit::max(MAX_ALERT_BODY)))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// Every `/api` request: refused when the API is off; with `api_token` set, a read needs the
/// bearer token or a console session (writes check the token in their handlers, as before).
async fn authorize_reads(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(closed) = state.api_closed() {
        return closed.into_response();
    }
    let reads = matches!(*request.method(), axum::http::Method::GET | axum::http::Method::HEAD);
    if reads && let Some(expected) = state.api_token() {
        let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0);
        let signed_in = state
            .console
            .identify(request.headers(), peer, state.escalator.now())
            .is_ok_and(|caller| caller.has_session() || caller.via == crate::chat::console::guard::Via::Proxy);
        if !signed_in && let Err(error) = bearer(request.headers(), expected, "server.api_token") {
            return ApiError(
                error.0,
                format!("{}; with server.api_token set, API reads need it too (or a console sign-in)", error.1),
            )
            .into_response();
        }
    }
    next.run(request).await
}

/// Which host names the server answers (SPEC §9): on loopback `localhost`, `127.0.0.1` and
/// `[::1]` with the port, plus `[console] allowed_hosts`; elsewhere `allowed_hosts` when set,
/// else any. Health and readiness answer any host: probes use the pod's address.
#[derive(Debug, Clone)]
pub struct HostGuard {
    listen: SocketAddr,
    allowed: Vec<String>,
}

impl HostGuard {
    pub fn new(listen: SocketAddr, allowed_hosts: &[String]) -> Self {
        let mut allowed: Vec<String> = allowed_hosts.iter().map(|host| host.trim().to_ascii_lowercase()).collect();
        if listen.ip().is_loopback() {
            let port = listen.port();
            allowed.extend([format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("[::1]:{port}")]);
            // A client leaves the default port out of Host.
            if port == 80 {
                allowed.extend(["localhost".to_string(), "127.0.0.1".to_string(), "[::1]".to_string()]);
            }
        }
        HostGuard { listen, allowed }
    }

    fn enforced(&self) -> bool {
        self.listen.ip().is_loopback() || !self.allowed.is_empty()
    }

    /// True when `host` (the Host header) is one this server answers.
    pub fn admits(&self, host: &str) -> bool {
        if !self.enforced() {
            return true;
        }
        let host = host.trim().to_ascii_lowercase();
        let name = host_name(&host);
        // An allowed host written without a port matches on any port (a proxy's port).
        self.allowed.iter().any(|allowed| *allowed == host || (host_name(allowed) == allowed && allowed == name))
    }

    fn refusal(&self, host: &str) -> String {
        let mut names: Vec<&str> = self.allowed.iter().map(String::as_str).collect();
        names.dedup();
        format!(
            "firebell does not answer to the host '{host}': it listens on {} and answers only {}. If you reach it by \
             another name, add that name to [console] allowed_hosts in firebell.toml.",
            self.listen,
            names.join(", ")
        )
    }
}

/// A Host value without its port: `[::1]:8080` → `[::1]`, `example.com:443` → `example.com`.
fn host_name(host: &str) -> &str {
    if host.starts_with('[') {
        return match host.find(']') {
            Some(end) => &host[..=end],
            None => host,
        };
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|byte| byte.is_ascii_digit()) => name,
        _ => host,
    }
}

/// Refuses requests for other host names with 421 (the whole server, but for the probes).
pub async fn check_host(State(guard): State<Arc<HostGuard>>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if path == "/healthz" || path == "/readyz" {
        return next.run(request).await;
    }
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .or_else(|| request.uri().authority().map(|authority| authority.as_str()))
        .unwrap_or("")
        .to_string();
    if !guard.admits(&host) {
        tracing::warn!(host, "Refused a request for another host name");
        return ApiError(StatusCode::MISDIRECTED_REQUEST, guard.refusal(&host)).into_response();
    }
    next.run(request).await
}

/// An API failure: status and a sentence saying what was wrong and what is valid.
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, message.into())
    }

    fn internal(message: impl Into<String>) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, message.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({"error": self.1}))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound(_)
            | StoreError::NoRequest(_)
            | StoreError::NoConsoleMessage(_)
            | StoreError::NoTask(_) => ApiError(StatusCode::NOT_FOUND, error.to_string()),
            StoreError::Transition(_) => ApiError(StatusCode::CONFLICT, error.to_string()),
            StoreError::Database(message) => {
                tracing::error!(error = %message, "Store failed while serving the API");
                ApiError(StatusCode::SERVICE_UNAVAILABLE, "the incident store is unavailable; try again".into())
            }
            StoreError::Timeout => {
                tracing::error!("The store did not answer while serving the API");
                ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("{error}; try again"))
            }
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the store answers and the timer loop runs; "degraded" (still 200) when another
/// part is not working, such as delivery to one platform. `failing` names each part that is not
/// working and what is wrong with it.
async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.escalator.store();
    let (mut failing, critical) = state.health.report();
    let store_ok = match tokio::time::timeout(std::time::Duration::from_secs(5), store.ping()).await {
        Ok(Ok(())) => true,
        Ok(Err(error)) => {
            tracing::warn!(%error, "Not ready: the store does not answer");
            failing.insert("store".to_string(), "the store does not answer".to_string());
            false
        }
        Err(_) => {
            tracing::warn!("Not ready: the store did not answer within 5 s");
            failing.insert("store".to_string(), "the store did not answer within 5 s".to_string());
            false
        }
    };
    let (code, status) = match (store_ok && !critical, failing.is_empty()) {
        (true, true) => (StatusCode::OK, "ready"),
        (true, false) => (StatusCode::OK, "degraded"),
        (false, _) => (StatusCode::SERVICE_UNAVAILABLE, "not ready"),
    };
    let mut body = json!({"status": status, "store": store.backend()});
    if !failing.is_empty() {
        body["failing"] = json!(failing);
    }
    if !store_ok {
        body["error"] = json!("the store does not answer");
    }
    (code, Json(body)).into_response()
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    if let Some(closed) = state.api_closed() {
        return Err(closed);
    }
    let Some(expected) = state.api_token() else {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "API writes are disabled: set server.api_token in firebell.toml".into(),
        ));
    };
    bearer(headers, expected, "server.api_token")
}

/// Checks `Authorization: Bearer <expected>`; `key` names the setting in refusals.
fn bearer(headers: &HeaderMap, expected: &Secret, key: &str) -> Result<(), ApiError> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, format!("missing Authorization: Bearer <{key}>")))?;
    if !constant_time_eq(given.trim().as_bytes(), expected.expose().as_bytes()) {
        return Err(ApiError(StatusCode::UNAUTHORIZED, "wrong bearer token".into()));
    }
    Ok(())
}

fn constant_time_eq(left: &[u8], right: &[u8]) -> bool {
    left.len() == right.len() && left.iter().zip(right).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Parses a JSON body strictly: size, content type, syntax and unknown fields are all reported.
fn parse_body<T: DeserializeOwned>(headers: &HeaderMap, body: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let body = json_body(headers, body, MAX_BODY)?;
    serde_json::from_slice(&body).map_err(|error| ApiError::bad_request(format!("invalid JSON body: {error}")))
}

/// The raw body of a JSON request: within `limit`, with a JSON content type.
fn json_body(headers: &HeaderMap, body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError(StatusCode::PAYLOAD_TOO_LARGE, format!("the request body is larger than {} KiB", limit / 1024))
        }
        status => ApiError(status, rejection.body_text()),
    })?;
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|value| value.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("application/json") {
        return Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("send the body as JSON with Content-Type: application/json (got '{content_type}')"),
        ));
    }
    Ok(body)
}

fn parse_id(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad_request(format!("'{text}' is not an incident id: ids are positive integers")))
}

fn required_text(value: Option<String>, field: &str, example: &str, max: usize) -> Result<String, ApiError> {
    let value = value.map(|value| value.trim().to_string()).unwrap_or_default();
    if value.is_empty() {
        return Err(ApiError::bad_request(format!("\"{field}\" is required, e.g. {example}")));
    }
    if value.chars().count() > max {
        return Err(ApiError::bad_request(format!("\"{field}\" is longer than {max} characters")));
    }
    Ok(value)
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    all: bool,
    limit: Option<i64>,
}

type ListParams = Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>;

impl ListQuery {
    /// `?all=true&limit=N` as (all, limit 1 to 1,000, default 100), or what is valid.
    fn read(params: ListParams) -> Result<(bool, i64), ApiError> {
        let Query(query) =
            params.map_err(|error| ApiError::bad_request(format!("{error}; valid: ?all=true&limit=N")))?;
        Ok((query.all, query.limit.unwrap_or(100).clamp(1, 1000)))
    }
}

async fn list_incidents(State(state): State<AppState>, params: ListParams) -> Result<Response, ApiError> {
    let (all, limit) = ListQuery::read(params)?;
    Ok(Json(state.escalator.store().incidents(all, limit).await?).into_response())
}

/// Follow-ups of every incident, newest first: open ones, or all with `?all=true` (SPEC §13).
async fn list_followups(State(state): State<AppState>, params: ListParams) -> Result<Response, ApiError> {
    let (all, limit) = ListQuery::read(params)?;
    Ok(Json(state.escalator.store().followups(all, limit).await?).into_response())
}

/// Each monitor: topic, schedule, last verdict, last and next run, open incident (SPEC §10).
async fn list_monitors(State(state): State<AppState>) -> Result<Response, ApiError> {
    let rows = state.escalator.store().monitors().await?;
    Ok(Json(crate::monitor::views(state.monitors.monitors(), &rows)).into_response())
}

async fn show_incident(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let incident = state.escalator.store().incident(parse_id(&id)?).await?;
    Ok(Json(incident).into_response())
}

/// The post-mortem draft in Markdown, built from the incident's record (SPEC §13).
async fn incident_postmortem(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let incident = state.escalator.store().incident(parse_id(&id)?).await?;
    let text = state.escalator.templates().postmortem(&incident, state.escalator.now()).map_err(|error| {
        tracing::error!(%error, incident = incident.id, "Rendering the post-mortem failed");
        ApiError::internal("the post-mortem template failed; the error is in firebell's log")
    })?;
    Ok(([(axum::http::header::CONTENT_TYPE, "text/markdown; charset=utf-8")], text).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeclareBody {
    title: Option<String>,
    severity: Option<String>,
    impact: Option<String>,
    policy: Option<String>,
    commander: Option<String>,
    by: Option<String>,
}

async fn declare_incident(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let body: DeclareBody = parse_body(&headers, body)?;
    let title = required_text(body.title, "title", "\"Worker queue backlog\"", 200)?;
    let severity = match body.severity.as_deref() {
        None => Severity::High,
        Some(text) => Severity::parse(text).ok_or_else(|| {
            ApiError::bad_request(format!(
                "\"severity\" must be one of {} (got \"{text}\")",
                Severity::NAMES.join(", ")
            ))
        })?,
    };
    let new = NewIncident {
        title,
        severity,
        impact: body.impact.filter(|impact| !impact.trim().is_empty()),
        commander: body.commander,
        fingerprint: None,
        policy: body.policy,
        declared_by: Some(body.by.unwrap_or_else(|| "api".to_string())),
    };
    let incident = state.escalator.declare(new).await.map_err(|error| match error {
        DeclareError::UnknownPolicy { .. } => ApiError::bad_request(error.to_string()),
        DeclareError::Store(error) => ApiError::from(error),
    })?;
    Ok((StatusCode::CREATED, [(header::LOCATION, format!("/api/incidents/{}", incident.id))], Json(incident))
        .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AckBody {
    by: Option<String>,
}

async fn acknowledge_incident(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let id = parse_id(&id)?;
    let body: AckBody = parse_body(&headers, body)?;
    let by = required_text(body.by, "by", "\"slack:U0001\" (who acknowledges)", 200)?;
    let incident = state.escalator.acknowledge(id, &by).await?;
    Ok(Json(incident).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveBody {
    by: Option<String>,
    root_cause: Option<String>,
    fix: Option<String>,
    prevention: Option<String>,
}

async fn resolve_incident(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let id = parse_id(&id)?;
    let body: ResolveBody = parse_body(&headers, body)?;
    let by = required_text(body.by, "by", "\"slack:U0001\" (who resolves)", 200)?;
    let resolution = Resolution { root_cause: body.root_cause, fix: body.fix, prevention: body.prevention };
    let incident = state.escalator.resolve(id, &by, resolution).await?;
    Ok(Json(incident).into_response())
}

async fn show_remediation(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let id = id
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::bad_request(format!("'{id}' is not a request id: ids are positive integers")))?;
    let request = state.escalator.store().request(id).await?;
    Ok(Json(request).into_response())
}

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<i64>,
}

/// Every remediation request, approval, denial, expiry and run: who, when, and what exactly ran.
async fn audit_log(
    State(state): State<AppState>,
    query: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|error| ApiError::bad_request(format!("{error}; valid: ?limit=N")))?;
    let entries = state.escalator.store().audit(query.limit.unwrap_or(200).clamp(1, 5000)).await?;
    Ok(Json(entries).into_response())
}

/// Alert webhooks: with `server.api_token` set, every one needs it as a bearer token
/// (Alertmanager's and Grafana's webhook settings can send one); without it, on loopback,
/// Alertmanager and Grafana are accepted and the generic endpoint is refused, and on any other
/// address all of them are refused.
async fn receive_alert(
    state: AppState,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    parse: fn(&[u8]) -> Result<crate::ingest::AlertGroup, String>,
    needs_token: bool,
) -> Result<Response, ApiError> {
    if let Some(closed) = state.api_closed() {
        return Err(closed);
    }
    if state.api_token().is_some() || needs_token {
        authorize(&state, &headers)?;
    }
    let body = json_body(&headers, body, MAX_ALERT_BODY)?;
    let group = parse(&body).map_err(ApiError::bad_request)?;
    match state.alerts.receive(group).await {
        Ok(accepted) => Ok(Json(accepted).into_response()),
        Err(error) => {
            tracing::error!(%error, "Storing an alert failed");
            Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "the alert could not be stored; retry".into()))
        }
    }
}

async fn alertmanager_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    receive_alert(state, headers, body, crate::ingest::parse_alertmanager, false).await
}

async fn grafana_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    receive_alert(state, headers, body, crate::ingest::parse_grafana, false).await
}

async fn generic_alert(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    receive_alert(state, headers, body, crate::ingest::parse_generic, true).await
}

async fn metrics_text(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(expected) = state.metrics_token.as_ref().filter(|token| !token.is_empty())
        && let Err(error) = bearer(&headers, expected, "server.metrics_token")
    {
        return error.into_response();
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::metrics::render()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_answers_its_own_names_with_the_port_and_the_allowed_hosts() {
        let guard = HostGuard::new("127.0.0.1:8080".parse().unwrap(), &["firebell.example.com".to_string()]);
        for host in ["localhost:8080", "127.0.0.1:8080", "[::1]:8080", "LOCALHOST:8080", "firebell.example.com:443"] {
            assert!(guard.admits(host), "{host}");
        }
        for host in ["evil.example:8080", "localhost:9090", "localhost", "", "127.0.0.1.evil.example:8080"] {
            assert!(!guard.admits(host), "{host}");
        }
        assert!(guard.refusal("evil.example:8080").contains("allowed_hosts"));
    }

    #[test]
    fn elsewhere_only_allowed_hosts_are_enforced() {
        let open = HostGuard::new("0.0.0.0:8080".parse().unwrap(), &[]);
        assert!(open.admits("10.1.2.3:8080") && open.admits("anything"));
        let pinned = HostGuard::new("0.0.0.0:8080".parse().unwrap(), &["firebell.example.com:8443".to_string()]);
        assert!(pinned.admits("firebell.example.com:8443"));
        assert!(!pinned.admits("firebell.example.com:8080") && !pinned.admits("10.1.2.3:8080"));
    }
}

/// What the accept loop bounds (`[server] header_timeout`, `max_connections`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_timeout: std::time::Duration,
    pub max_connections: usize,
}

/// Serves `router` on `listener` until `stop` resolves, then lets open requests finish. Each
/// connection must send its request headers within `header_timeout` (a silent or trickling
/// client is closed), at most `max_connections` are served at once (the rest wait in the
/// listen backlog), and handlers see the peer's address as `ConnectInfo<SocketAddr>`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    stop: impl std::future::Future<Output = ()>,
) {
    use tower::ServiceExt as _;

    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(limits.header_timeout);
    tokio::pin!(stop);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            _ = &mut stop => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors, say: wait a little rather than spin.
                    tracing::warn!(%error, "Accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let service = router.clone().map_request(move |mut request: axum::extract::Request| {
            request.extensions_mut().insert(ConnectInfo(peer));
            request
        });
        let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
            service.clone().oneshot(request.map(axum::body::Body::new))
        });
        // No upgrades: nothing here speaks WebSocket (the console streams with SSE).
        let connection = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "A connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
