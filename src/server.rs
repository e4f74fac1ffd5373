//! The HTTP surface of SPEC §7: every route in one place. Health and readiness, and the JSON
//! API for scripts (writes need `Authorization: Bearer <server.api_token>`). Errors are
//! `{"error": "…"}` with a status that says whose mistake it was.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
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
    pub alerts: Arc<crate::ingest::AlertService>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/api/incidents", get(list_incidents).post(declare_incident))
        .route("/api/incidents/{id}", get(show_incident))
        .route("/api/incidents/{id}/ack", post(acknowledge_incident))
        .route("/api/incidents/{id}/resolve", post(resolve_incident))
        .route("/api/remediations/{id}", get(show_remediation))
        .route("/api/audit", get(audit_log))
        .route("/alerts/alertmanager", post(alertmanager_webhook).layer(DefaultBodyLimit::max(MAX_ALERT_BODY)))
        .route("/alerts/grafana", post(grafana_webhook).layer(DefaultBodyLimit::max(MAX_ALERT_BODY)))
        .route("/alerts/generic", post(generic_alert).layer(DefaultBodyLimit::max(MAX_ALERT_BODY)))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

/// An API failure: status and a sentence saying what was wrong and what is valid.
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn bad_request(message: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, message.into())
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
            StoreError::NotFound(_) | StoreError::NoRequest(_) | StoreError::NoConsoleMessage(_) => {
                ApiError(StatusCode::NOT_FOUND, error.to_string())
            }
            StoreError::Transition(_) => ApiError(StatusCode::CONFLICT, error.to_string()),
            StoreError::Database(message) => {
                tracing::error!(error = %message, "Store failed while serving the API");
                ApiError(StatusCode::SERVICE_UNAVAILABLE, "the incident store is unavailable; try again".into())
            }
        }
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(state): State<AppState>) -> Response {
    let store = state.escalator.store();
    match store.ping().await {
        Ok(()) => Json(json!({"status": "ready", "store": store.backend()})).into_response(),
        Err(error) => {
            tracing::warn!(%error, "Not ready: the store does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"status": "not ready", "error": "the store does not answer"})),
            )
                .into_response()
        }
    }
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(expected) = state.api_token.as_ref().filter(|token| !token.is_empty()) else {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "API writes are disabled: set server.api_token in firebell.toml".into(),
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "missing Authorization: Bearer <server.api_token>".into()))?;
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

async fn list_incidents(
    State(state): State<AppState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|error| ApiError::bad_request(format!("{error}; valid: ?all=true&limit=N")))?;
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let incidents = state.escalator.store().incidents(query.all, limit).await?;
    Ok(Json(incidents).into_response())
}

async fn show_incident(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let incident = state.escalator.store().incident(parse_id(&id)?).await?;
    Ok(Json(incident).into_response())
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
/// (Alertmanager's and Grafana's webhook settings can send one); without it, Alertmanager and
/// Grafana are accepted and the generic endpoint is refused.
async fn receive_alert(
    state: AppState,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
    parse: fn(&[u8]) -> Result<crate::ingest::AlertGroup, String>,
    needs_token: bool,
) -> Result<Response, ApiError> {
    let token_configured = state.api_token.as_ref().is_some_and(|token| !token.is_empty());
    if token_configured || needs_token {
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

async fn metrics_text() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], crate::metrics::render()).into_response()
}
