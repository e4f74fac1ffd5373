//! Slack's HTTP mode: `POST /slack/commands`, `/slack/interactions` and `/slack/events`.
//! Every request is verified first — `X-Slack-Signature` is HMAC-SHA256 of
//! `v0:{timestamp}:{body}` under the signing secret, compared in constant time, and the timestamp
//! must be within 5 minutes — and a request that fails gets 401 and does nothing.
//!
//! A signed command or interaction acts once: its timestamp and signature are remembered through
//! the store's seen-events, so a replay of the same request (captured from a proxy's logs, say)
//! within the 5 minutes gets an empty 200 and does nothing. 200 rather than an error because
//! the genuine request was already answered, a non-2xx would show people a failure for
//! something that worked, and the replayer learns nothing from it.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use sha2::Digest;
use slack_morphism::prelude::SlackSigningSecret;
use slack_morphism::signature_verifier::{SlackEventSignatureVerifier, SlackEventSignatureVerifierError};

use super::SlackAdapter;
use super::inbound::{CommandForm, Dispatcher, InteractionAck, ephemeral_json};
use crate::chat::endpoint::{MAX_BODY, Refusal, bad_request};
use crate::chat::platform::ChatHandler;
use crate::config::Secret;

#[derive(Clone)]
struct SlackHttp {
    dispatcher: Dispatcher,
    verifier: SlackEventSignatureVerifier,
    secret_is_empty: bool,
}

/// The three endpoints. Forms and private replies to app mentions need a Web API client: see
/// [`routes_with_adapter`]; here a form is answered with the command to type instead, and a
/// private reply to a mention is dropped (and logged).
pub fn routes(handler: Arc<dyn ChatHandler>, signing_secret: Secret) -> Router {
    build(handler, signing_secret, None)
}

/// The three endpoints, opening forms (`views.open`) and posting private replies to app
/// mentions (`chat.postEphemeral`) with `adapter`.
pub fn routes_with_adapter(
    handler: Arc<dyn ChatHandler>,
    signing_secret: Secret,
    adapter: Arc<SlackAdapter>,
) -> Router {
    build(handler, signing_secret, Some(adapter))
}

fn build(handler: Arc<dyn ChatHandler>, signing_secret: Secret, adapter: Option<Arc<SlackAdapter>>) -> Router {
    let state = SlackHttp {
        dispatcher: Dispatcher::new(handler, adapter),
        verifier: SlackEventSignatureVerifier::new(&SlackSigningSecret::new(signing_secret.expose().to_string())),
        secret_is_empty: signing_secret.is_empty(),
    };
    Router::new()
        .route("/slack/commands", post(commands))
        .route("/slack/interactions", post(interactions))
        .route("/slack/events", post(events))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}

impl SlackHttp {
    /// Whether this exact signed request (timestamp and signature) is new; a replay is not.
    async fn first_time(&self, headers: &HeaderMap) -> bool {
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or("").trim();
        let signed = format!(
            "{}:{}",
            header(SlackEventSignatureVerifier::SLACK_SIGNED_TIMESTAMP),
            header(SlackEventSignatureVerifier::SLACK_SIGNED_HASH_HEADER)
        );
        let key = format!("slack:signed:{}", hex::encode(sha2::Sha256::digest(signed.as_bytes())));
        let first = self.dispatcher.first_seen(&key).await;
        if !first {
            tracing::warn!("Ignored a replayed Slack request (same timestamp and signature as one already handled)");
        }
        first
    }

    /// The body as text once the request is proven to come from Slack, recently.
    fn verify<'a>(&self, headers: &HeaderMap, body: &'a Bytes) -> Result<&'a str, Refusal> {
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim);
        if self.secret_is_empty {
            tracing::error!("A Slack request arrived but slack.signing_secret is empty; refusing it");
            return Err(Refusal::unauthorized("slack", "request signing is not configured"));
        }
        let refuse = |reason: &'static str| Refusal::unauthorized("slack", reason);
        let timestamp = header(SlackEventSignatureVerifier::SLACK_SIGNED_TIMESTAMP)
            .ok_or_else(|| refuse("missing X-Slack-Request-Timestamp"))?;
        let signature = header(SlackEventSignatureVerifier::SLACK_SIGNED_HASH_HEADER)
            .ok_or_else(|| refuse("missing X-Slack-Signature"))?;
        let text = std::str::from_utf8(body).map_err(|_| refuse("body is not UTF-8"))?;
        match self.verifier.verify(signature, text, timestamp) {
            Ok(()) => Ok(text),
            Err(SlackEventSignatureVerifierError::IncorrectOrExpiredTimestampError(_)) => {
                Err(refuse("stale or invalid timestamp"))
            }
            Err(_) => Err(refuse("invalid signature")),
        }
    }
}

async fn commands(State(state): State<SlackHttp>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match state.verify(&headers, &body) {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(),
    };
    if url::form_urlencoded::parse(body.as_bytes()).any(|(key, value)| key == "ssl_check" && value == "1") {
        return StatusCode::OK.into_response();
    }
    if !state.first_time(&headers).await {
        return StatusCode::OK.into_response();
    }
    let form = match CommandForm::from_urlencoded(body) {
        Ok(form) => form,
        Err(reason) => return bad_request("slack", reason),
    };
    match state.dispatcher.command(form).await {
        Some(message) => axum::Json(ephemeral_json(&message)).into_response(),
        None => StatusCode::OK.into_response(),
    }
}

async fn interactions(State(state): State<SlackHttp>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match state.verify(&headers, &body) {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(),
    };
    if !state.first_time(&headers).await {
        return StatusCode::OK.into_response();
    }
    let payload = url::form_urlencoded::parse(body.as_bytes())
        .find(|(key, _)| key == "payload")
        .map(|(_, value)| value.into_owned());
    let Some(payload) = payload else {
        return bad_request("slack", "an interaction needs a payload field".to_string());
    };
    let payload: Value = match serde_json::from_str(&payload) {
        Ok(payload) => payload,
        Err(error) => return bad_request("slack", format!("the interaction payload is not JSON: {error}")),
    };
    match state.dispatcher.interaction(&payload).await {
        Ok(InteractionAck::Nothing) => StatusCode::OK.into_response(),
        Ok(InteractionAck::Errors(errors)) => {
            axum::Json(json!({"response_action": "errors", "errors": errors})).into_response()
        }
        Err(reason) => bad_request("slack", reason),
    }
}

async fn events(State(state): State<SlackHttp>, headers: HeaderMap, body: Bytes) -> Response {
    let body = match state.verify(&headers, &body) {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(),
    };
    let envelope: Value = match serde_json::from_str(body) {
        Ok(envelope) => envelope,
        Err(error) => return bad_request("slack", format!("the event is not JSON: {error}")),
    };
    if let Some(retry) = headers.get("x-slack-retry-num").and_then(|value| value.to_str().ok()) {
        let reason = headers.get("x-slack-retry-reason").and_then(|value| value.to_str().ok()).unwrap_or("");
        tracing::debug!(retry, reason, "Slack is delivering an event again");
    }
    match envelope.get("type").and_then(Value::as_str) {
        Some("url_verification") => {
            let challenge = envelope.get("challenge").and_then(Value::as_str).unwrap_or("");
            axum::Json(json!({"challenge": challenge})).into_response()
        }
        Some("event_callback") => match state.dispatcher.event_callback(&envelope).await {
            Ok(()) => StatusCode::OK.into_response(),
            Err(reason) => bad_request("slack", reason),
        },
        Some("app_rate_limited") => {
            tracing::warn!("Slack is dropping events for this app: more than 30,000 in an hour");
            StatusCode::OK.into_response()
        }
        other => {
            tracing::debug!(kind = other, "Ignored a Slack event envelope");
            StatusCode::OK.into_response()
        }
    }
}
