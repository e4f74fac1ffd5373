//! Slack's Socket Mode (when `slack.app_token` is set): a WebSocket to Slack instead of public
//! URLs. Commands, interactions and events are turned into [`crate::chat::ChatEvent`]s by the
//! same code as the HTTP endpoints ([`super::inbound`]), after turning slack-morphism's typed
//! payloads back into Slack's JSON.
//!
//! Deduplication: slack-morphism does not hand envelope ids to callbacks, so events are
//! deduplicated by `event_id` (as in HTTP mode) and commands and interactions by their
//! `trigger_id`, which is unique per invocation and the same in a redelivered envelope.

use std::sync::Arc;

use anyhow::Context as _;
use serde_json::Value;

use slack_morphism::prelude::*;
use tokio_util::sync::CancellationToken;

use super::inbound::{CommandForm, Dispatcher, InteractionAck};
use super::{SlackAdapter, render_message, web_api_client};
use crate::chat::platform::ChatHandler;
use crate::config::SlackConfig;

/// slack-morphism's error type for callbacks (its own alias is private).
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Listens on Socket Mode until `shutdown` is cancelled.
pub async fn run_socket_mode(
    config: &SlackConfig,
    handler: Arc<dyn ChatHandler>,
    adapter: Arc<SlackAdapter>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app_token = config
        .app_token
        .as_ref()
        .filter(|token| !token.is_empty())
        .context("slack.app_token is not set: Socket Mode needs the app-level token (xapp-…)")?;
    let client = Arc::new(web_api_client(&config.api_url)?);
    let environment = Arc::new(
        SlackClientEventsListenerEnvironment::new(client)
            .with_error_handler(on_error)
            .with_user_state(Dispatcher::new(handler, Some(adapter))),
    );
    let callbacks = SlackSocketModeListenerCallbacks::new()
        .with_command_events(on_command)
        .with_interaction_events(on_interaction)
        .with_push_events(on_push);
    let listener = SlackClientSocketModeListener::new(&SlackClientSocketModeConfig::new(), environment, callbacks);
    listener
        .listen_for(&SlackApiToken::new(app_token.expose().to_string().into()))
        .await
        .map_err(|error| anyhow::anyhow!("Socket Mode could not start: {error}"))?;
    listener.start().await;
    tracing::info!("Slack Socket Mode is listening");
    shutdown.cancelled().await;
    listener.shutdown().await;
    tracing::info!("Slack Socket Mode stopped");
    Ok(())
}

async fn dispatcher(states: &SlackClientEventsUserState) -> Result<Dispatcher, BoxError> {
    let storage = states.read().await;
    storage.get_user_state::<Dispatcher>().cloned().ok_or_else(|| "the Slack dispatcher is missing".into())
}

async fn on_command(
    event: SlackCommandEvent,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    let dispatcher = dispatcher(&states).await?;
    let form: CommandForm = serde_json::from_value(serde_json::to_value(&event)?)?;
    if let Some(trigger) = &form.trigger_id
        && !dispatcher.first_seen(&format!("slack:trigger:{trigger}")).await
    {
        return Ok(SlackCommandEventResponse::new(SlackMessageContent::new()));
    }
    Ok(match dispatcher.command(form).await {
        Some(message) => SlackCommandEventResponse::new(render_message(&message).content())
            .with_response_type(SlackMessageResponseType::Ephemeral),
        None => SlackCommandEventResponse::new(SlackMessageContent::new()),
    })
}

async fn on_interaction(
    event: SlackInteractionEvent,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackInteractionResponse> {
    let dispatcher = dispatcher(&states).await?;
    let payload = serde_json::to_value(&event)?;
    if let Some(trigger) = payload.get("trigger_id").and_then(Value::as_str)
        && !dispatcher.first_seen(&format!("slack:trigger:{trigger}")).await
    {
        return Ok(SlackInteractionResponse::Empty);
    }
    match dispatcher.interaction(&payload).await? {
        InteractionAck::Nothing => Ok(SlackInteractionResponse::Empty),
        InteractionAck::Errors(errors) => Ok(SlackInteractionResponse::ViewSubmission(
            SlackViewSubmissionResponse::Errors(SlackViewSubmissionErrorsResponse::new(errors.into_iter().collect())),
        )),
    }
}

async fn on_push(
    event: SlackPushEventCallback,
    _client: Arc<SlackHyperClient>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let dispatcher = dispatcher(&states).await?;
    let payload = serde_json::to_value(&event)?;
    dispatcher.event_callback(&payload).await?;
    Ok(())
}

/// Errors in Socket Mode are logged and the envelope acknowledged: a payload that failed once
/// fails again on redelivery.
fn on_error(error: BoxError, _client: Arc<SlackHyperClient>, _states: SlackClientEventsUserState) -> HttpStatusCode {
    let message = error.to_string().chars().take(300).collect::<String>();
    tracing::warn!(error = message, "Slack Socket Mode error");
    HttpStatusCode::OK
}

#[cfg(test)]
mod tests {
    //! Socket Mode hands over slack-morphism's typed payloads; these check that they come back
    //! to the JSON the shared parser reads, giving the same events as HTTP mode.

    use serde_json::json;

    use super::*;
    use crate::chat::slack::inbound::{Interaction, Push, parse_event_callback, parse_interaction};
    use crate::chat::{ChatEvent, MessageRef};
    use crate::config::{EnvString, Secret};

    #[test]
    fn a_typed_command_reads_like_the_http_form() {
        let event: SlackCommandEvent = serde_json::from_value(json!({
            "team_id": "T1", "channel_id": "C1", "user_id": "U1", "command": "/incident",
            "text": "declare Queue backlog sev=high", "response_url": "https://hooks.slack.com/commands/1/2", "trigger_id": "t.1"
        }))
        .unwrap();
        let form: CommandForm = serde_json::from_value(serde_json::to_value(&event).unwrap()).unwrap();
        match form.event() {
            ChatEvent::Command { origin, text } => {
                assert_eq!(text, "/incident declare Queue backlog sev=high");
                assert_eq!((origin.user.to_string().as_str(), origin.channel.as_str()), ("slack:U1", "C1"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(form.trigger_id.as_deref(), Some("t.1"));
        assert_eq!(form.response_url.as_deref(), Some("https://hooks.slack.com/commands/1/2"));
    }

    #[test]
    fn a_typed_button_click_reads_like_the_http_payload() {
        let event: SlackInteractionEvent = serde_json::from_value(json!({
            "type": "block_actions", "team": {"id": "T1"}, "user": {"id": "U3"}, "api_app_id": "A1", "trigger_id": "t.2",
            "container": {"type": "message", "message_ts": "1700000001.000200", "channel_id": "C1", "is_ephemeral": false},
            "channel": {"id": "C1", "name": "incidents"},
            "message": {"type": "message", "ts": "1700000001.000200", "thread_ts": "1700000000.000100", "text": "Run restart?", "user": "UBOT"},
            "response_url": "https://hooks.slack.com/actions/1/2",
            "actions": [{"type": "button", "action_id": "remediate#2", "block_id": "b", "value": "restart", "action_ts": "1700000002.000300"}]
        }))
        .unwrap();
        match parse_interaction(&serde_json::to_value(&event).unwrap()).unwrap() {
            Interaction::Button {
                event: ChatEvent::Button { origin, action, value, message },
                trigger,
                response_url,
            } => {
                assert_eq!((action.as_str(), value.as_str()), ("remediate", "restart"));
                assert_eq!(origin.thread.as_deref(), Some("1700000000.000100"));
                assert_eq!(trigger.as_deref(), Some("t.2"));
                assert_eq!(message, Some(MessageRef { channel: "C1".into(), id: "1700000001.000200".into() }));
                assert_eq!(response_url.as_deref(), Some("https://hooks.slack.com/actions/1/2"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_typed_form_submission_reads_like_the_http_payload() {
        let event: SlackInteractionEvent = serde_json::from_value(json!({
            "type": "view_submission", "team": {"id": "T1"}, "user": {"id": "U3"},
            "view": {
                "id": "V1", "team_id": "T1", "hash": "h", "type": "modal", "callback_id": "resolve",
                "private_metadata": "{\"value\":\"7\",\"channel\":\"C1\"}",
                "title": {"type": "plain_text", "text": "Resolve"},
                "blocks": [{"type": "input", "block_id": "fix", "label": {"type": "plain_text", "text": "Fix"}, "element": {"type": "plain_text_input", "action_id": "fix"}}],
                "state": {"values": {"fix": {"fix": {"type": "plain_text_input", "value": "Restarted"}}}}
            }
        }))
        .unwrap();
        match parse_interaction(&serde_json::to_value(&event).unwrap()).unwrap() {
            Interaction::Form { event: ChatEvent::FormSubmitted { origin, action, value, fields }, first_input } => {
                assert_eq!((action.as_str(), value.as_str(), origin.channel.as_str()), ("resolve", "7", "C1"));
                assert_eq!(fields["fix"], "Restarted");
                assert_eq!(first_input.as_deref(), Some("fix"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_typed_app_mention_reads_like_the_http_envelope() {
        let event: SlackPushEventCallback = serde_json::from_value(json!({
            "team_id": "T1", "api_app_id": "A1", "event_id": "Ev9", "event_time": 1700000000,
            "authorizations": [{"team_id": "T1", "user_id": "UBOT", "is_bot": true}],
            "event": {"type": "app_mention", "user": "U1", "channel": "C1", "text": "<@UBOT> oncall primary", "ts": "1700000003.000400", "thread_ts": "1700000000.000100"}
        }))
        .unwrap();
        match parse_event_callback(&serde_json::to_value(&event).unwrap()).unwrap() {
            Push::Mention { event_id, event } => {
                assert_eq!(event_id, "Ev9");
                assert!(
                    matches!(*event, ChatEvent::Command { ref text, ref origin, .. } if text == "/oncall primary" && origin.thread.as_deref() == Some("1700000000.000100"))
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn socket_mode_needs_the_app_token() {
        struct Nobody;
        #[async_trait::async_trait]
        impl ChatHandler for Nobody {
            async fn handle(&self, _event: crate::chat::ChatEvent) -> crate::chat::Reply {
                crate::chat::Reply::Nothing
            }
            async fn first_seen(&self, _key: &str) -> bool {
                true
            }
        }
        let config = SlackConfig {
            bot_token: Some(Secret::new("xoxb-1")),
            app_token: None,
            signing_secret: None,
            incident_channel: None,
            api_url: EnvString("http://127.0.0.1:9/api/".into()),
            timeout: crate::config::default_chat_timeout(),
        };
        let adapter = Arc::new(SlackAdapter::new(&config).unwrap());
        let error = run_socket_mode(&config, Arc::new(Nobody), adapter, CancellationToken::new()).await.unwrap_err();
        assert!(error.to_string().contains("slack.app_token"), "{error}");
    }
}
