//! Slack: the [`ChatAdapter`] over Slack's Web API (slack-morphism), the Block Kit renderer,
//! the signed HTTP endpoints (`/slack/commands`, `/slack/interactions`, `/slack/events`) and
//! Socket Mode. Only this folder knows Slack's JSON.
//!
//! - [`SlackAdapter`]: posts, edits, uploads (files v2), direct messages and modals; paces
//!   posts to one per second per channel and waits out every `Retry-After`.
//! - [`render`]: [`Message`] → Block Kit within Slack's limits; [`Form`] → a modal.
//! - [`http`]: the signed endpoints; [`socket`]: Socket Mode. Both turn Slack's payloads into
//!   [`crate::chat::ChatEvent`]s with the same code ([`inbound`]) and hand them to the
//!   [`ChatHandler`], showing a [`Reply::Form`] as a modal with the event's `trigger_id`.
//! - [`platform`]: `[slack]` as a [`Platform`]: Socket Mode with an app token, else the signed
//!   endpoints.

pub mod http;
mod inbound;
pub mod render;
pub mod socket;

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use hyper_rustls::HttpsConnectorBuilder;
use slack_morphism::errors::SlackClientError;
use slack_morphism::prelude::*;

use crate::attachment::content_type;
use crate::chat::ack::Gate;
use crate::chat::platform::{ChatHandler, Context, Platform};
use crate::chat::{ChatAdapter, ChatError, FileAttachment, Form, Limits, Message, MessageRef, Origin};
use crate::config::{Config, Secret, SlackConfig};

pub use render::{SlackRendered, render_message, render_modal};

/// `[slack]` as a platform: on when a bot token is set; Socket Mode with an app token, else the
/// signed HTTP endpoints.
pub fn platform(config: &Config, context: &Context) -> anyhow::Result<Option<Box<dyn Platform>>> {
    let Some(slack) =
        config.slack.as_ref().filter(|slack| slack.bot_token.as_ref().is_some_and(|token| !token.is_empty()))
    else {
        return Ok(None);
    };
    let adapter = Arc::new(SlackAdapter::new(slack).context("cannot set up Slack")?);
    let app_token = slack.app_token.as_ref().filter(|token| !token.is_empty());
    let signing_secret = slack.signing_secret.as_ref().filter(|secret| !secret.is_empty());
    let mode = match (app_token, signing_secret) {
        (Some(_), _) => Mode::SocketMode(slack.clone()),
        (None, Some(secret)) => Mode::Http(secret.clone()),
        (None, None) => {
            anyhow::bail!("[slack] needs app_token (Socket Mode) or signing_secret (HTTP mode) besides bot_token")
        }
    };
    Ok(Some(Box::new(SlackPlatform { adapter, mode, health: context.health.clone() })))
}

enum Mode {
    SocketMode(SlackConfig),
    Http(Secret),
}

struct SlackPlatform {
    adapter: Arc<SlackAdapter>,
    mode: Mode,
    health: Arc<crate::health::Health>,
}

impl Platform for SlackPlatform {
    fn adapter(&self) -> Arc<dyn ChatAdapter> {
        self.adapter.clone()
    }

    fn routes(&self, handler: &Arc<dyn ChatHandler>) -> Option<axum::Router> {
        match &self.mode {
            Mode::Http(secret) => {
                Some(http::routes_with_adapter(handler.clone(), secret.clone(), self.adapter.clone()))
            }
            Mode::SocketMode(_) => None,
        }
    }

    fn tasks(
        &self,
        handler: &Arc<dyn ChatHandler>,
        shutdown: &tokio_util::sync::CancellationToken,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let Mode::SocketMode(config) = &self.mode else { return Vec::new() };
        let (config, handler, adapter, stop) =
            (config.clone(), handler.clone(), self.adapter.clone(), shutdown.clone());
        vec![crate::health::supervise("slack-socket-mode", self.health.clone(), shutdown.clone(), move || {
            let (config, handler, adapter, stop) = (config.clone(), handler.clone(), adapter.clone(), stop.clone());
            async move {
                if let Err(error) = socket::run_socket_mode(&config, handler, adapter, stop).await {
                    tracing::error!(error = %format!("{error:#}"), "Slack Socket Mode stopped");
                }
            }
        })]
    }
}

pub use super::ack::POST_INTERVAL;
/// 429s waited out before a call gives up with [`ChatError::RateLimited`].
pub const MAX_RATE_LIMIT_RETRIES: u32 = 3;

/// The Slack Web API as a [`ChatAdapter`].
pub struct SlackAdapter {
    client: SlackHyperClient,
    token: SlackApiToken,
    incident_channel: Option<String>,
    gate: Gate,
    /// User id → their direct-message channel, so `conversations.open` runs once per person.
    direct_channels: Mutex<HashMap<String, String>>,
    /// The most one Web API call may take (`[slack] timeout`).
    timeout: Duration,
}

impl fmt::Debug for SlackAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackAdapter")
            .field("incident_channel", &self.incident_channel)
            .field("token", &"***")
            .finish_non_exhaustive()
    }
}

/// Runs one Web API call (an expression giving a future), waiting out 429s as
/// [`SlackAdapter::retry_delay`] says. A macro rather than a closure-taking method: the client's
/// futures borrow the session, which async closures cannot yet express as `Send`.
macro_rules! with_retries {
    ($adapter:expr, $method:expr, $call:expr) => {{
        let mut retries = 0;
        loop {
            // A call that does not answer in time is not retried here: the caller's retry (the
            // outbox's backoff) comes later, and nothing waits on a stalled connection forever.
            let Ok(result) = tokio::time::timeout($adapter.timeout, $call).await else {
                break Err(ChatError::Unreachable(format!(
                    "{} did not answer within {}",
                    $method,
                    humantime::format_duration($adapter.timeout)
                )));
            };
            match result {
                Ok(response) => break Ok::<_, ChatError>(response),
                Err(error) => match $adapter.retry_delay($method, error, &mut retries) {
                    Ok(delay) => tokio::time::sleep(delay).await,
                    Err(error) => break Err(error),
                },
            }
        }
    }};
}

impl SlackAdapter {
    /// The adapter for `[slack]`: needs `bot_token`; talks to `api_url`.
    pub fn new(config: &SlackConfig) -> anyhow::Result<Self> {
        let bot_token = config
            .bot_token
            .as_ref()
            .filter(|token| !token.is_empty())
            .context("slack.bot_token is not set: add the bot token (xoxb-…) to [slack] in firebell.toml")?;
        let incident_channel = config
            .incident_channel
            .as_ref()
            .map(|channel| channel.trim().to_string())
            .filter(|channel| !channel.is_empty());
        Ok(Self::with_api_url(bot_token, &config.api_url, incident_channel)?.with_timeout(config.timeout.0))
    }

    /// The most one Web API call may take.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The adapter for an explicit API URL (`http://127.0.0.1:…/api/` for a fake in tests).
    pub fn with_api_url(bot_token: &Secret, api_url: &str, incident_channel: Option<String>) -> anyhow::Result<Self> {
        Ok(SlackAdapter {
            client: web_api_client(api_url)?,
            token: SlackApiToken::new(bot_token.expose().to_string().into()),
            incident_channel,
            gate: Gate::new(POST_INTERVAL),
            direct_channels: Mutex::new(HashMap::new()),
            timeout: crate::config::default_chat_timeout().0,
        })
    }

    /// Checks the token with `auth.test`; returns the bot's user id.
    pub async fn auth_test(&self) -> Result<String, ChatError> {
        let session = self.client.open_session(&self.token);
        let response = with_retries!(self, "auth.test", session.auth_test())?;
        Ok(response.user_id.to_string())
    }

    /// A message only `user` sees, in `channel` (and `thread`): answers to app mentions.
    pub async fn post_ephemeral(
        &self,
        channel: &str,
        user: &str,
        thread: Option<&str>,
        message: &Message,
    ) -> Result<(), ChatError> {
        let rendered = render_message(message);
        let request = SlackApiChatPostEphemeralRequest::new(channel.into(), user_id(user).into(), rendered.content())
            .opt_thread_ts(thread.map(SlackTs::from));
        let session = self.client.open_session(&self.token);
        with_retries!(self, "chat.postEphemeral", session.chat_post_ephemeral(&request))?;
        Ok(())
    }

    /// Shows `form` as a modal in answer to the interaction `trigger` (its `trigger_id`); its
    /// submission comes back with the channel and thread of `opened_in`.
    pub async fn open_form(&self, trigger: &str, form: &Form, opened_in: Option<&Origin>) -> Result<(), ChatError> {
        let metadata = inbound::FormMetadata {
            value: form.value.clone(),
            channel: opened_in.map(|origin| origin.channel.clone()).filter(|channel| !channel.is_empty()),
            thread: opened_in.and_then(|origin| origin.thread.clone()),
        };
        let request = SlackApiViewsOpenRequest::new(trigger.into(), render_modal(form, &metadata.encode()));
        let session = self.client.open_session(&self.token);
        with_retries!(self, "views.open", session.views_open(&request))?;
        Ok(())
    }

    async fn direct_channel(&self, user: &str) -> Result<String, ChatError> {
        if let Some(channel) = self.direct_channels.lock().expect("direct channels").get(user) {
            return Ok(channel.clone());
        }
        let request = SlackApiConversationsOpenRequest::new().with_users(vec![user.into()]);
        let session = self.client.open_session(&self.token);
        let response = with_retries!(self, "conversations.open", session.conversations_open(&request))?;
        let channel = response.channel.id.to_string();
        self.direct_channels.lock().expect("direct channels").insert(user.to_string(), channel.clone());
        Ok(channel)
    }

    /// After a failed call: how long to wait before trying again (a 429 within
    /// [`MAX_RATE_LIMIT_RETRIES`], for exactly its `Retry-After`), or the error to return.
    fn retry_delay(
        &self,
        method: &'static str,
        error: SlackClientError,
        retries: &mut u32,
    ) -> Result<Duration, ChatError> {
        let SlackClientError::RateLimitError(error) = error else {
            return Err(self.chat_error(method, error));
        };
        let retry_after = error.retry_after.unwrap_or(Duration::from_secs(1));
        if *retries >= MAX_RATE_LIMIT_RETRIES {
            tracing::warn!(
                method,
                retries = *retries,
                retry_after_secs = retry_after.as_secs(),
                "Slack kept rate-limiting a call; giving up"
            );
            return Err(ChatError::RateLimited { retry_after_secs: retry_after.as_secs() });
        }
        *retries += 1;
        tracing::info!(
            method,
            retry = *retries,
            retry_after_ms = retry_after.as_millis() as u64,
            "Slack asked to slow down; waiting before retrying"
        );
        Ok(retry_after)
    }

    /// Slack's error as the core sees it; the token never appears in it.
    fn chat_error(&self, method: &'static str, error: SlackClientError) -> ChatError {
        let error = match error {
            SlackClientError::ApiError(error) => ChatError::Refused(error.code),
            SlackClientError::HttpError(error) if error.status_code.is_server_error() => {
                ChatError::Unreachable(format!("Slack answered HTTP {}", error.status_code))
            }
            SlackClientError::HttpError(error) => ChatError::Refused(format!("HTTP {}", error.status_code)),
            SlackClientError::ProtocolError(_) => {
                ChatError::Unreachable("Slack's answer could not be read".to_string())
            }
            other => ChatError::Unreachable(self.scrub(&other.to_string())),
        };
        tracing::warn!(method, %error, "Slack call failed");
        error
    }

    fn scrub(&self, text: &str) -> String {
        let token = self.token.token_value.0.as_str();
        let text = if token.is_empty() { text.to_string() } else { text.replace(token, "***") };
        text.chars().take(300).collect()
    }
}

#[async_trait]
impl ChatAdapter for SlackAdapter {
    fn platform(&self) -> &'static str {
        "slack"
    }

    /// Slack's limits as the core should plan with them. `max_text` is the block text a message
    /// can carry (Slack refuses about 13,000 with `msg_blocks_too_long`, although a message's
    /// `text` may have 40,000): beyond it the core should upload a file rather than lose lines.
    fn limits(&self) -> Limits {
        Limits {
            max_text: render::MAX_TOTAL_BLOCK_TEXT,
            max_block_text: render::MAX_SECTION_TEXT,
            max_blocks: render::MAX_BLOCKS,
        }
    }

    fn mention(&self, user_id: &str) -> String {
        format!("<@{}>", self::user_id(user_id))
    }

    fn incident_channel(&self) -> Option<String> {
        self.incident_channel.clone()
    }

    async fn post(&self, channel: &str, thread: Option<&str>, message: &Message) -> Result<MessageRef, ChatError> {
        let rendered = render_message(message);
        let request = SlackApiChatPostMessageRequest::new(channel.into(), rendered.content())
            .opt_thread_ts(thread.map(SlackTs::from));
        let session = self.client.open_session(&self.token);
        let _turn = self.gate.turn(channel).await;
        let response = with_retries!(self, "chat.postMessage", session.chat_post_message(&request))?;
        Ok(MessageRef { channel: response.channel.to_string(), id: response.ts.to_string() })
    }

    async fn update(&self, at: &MessageRef, message: &Message) -> Result<(), ChatError> {
        let rendered = render_message(message);
        let request =
            SlackApiChatUpdateRequest::new(at.channel.as_str().into(), rendered.content(), at.id.as_str().into());
        let session = self.client.open_session(&self.token);
        with_retries!(self, "chat.update", session.chat_update(&request))?;
        Ok(())
    }

    async fn upload(&self, channel: &str, thread: Option<&str>, file: &FileAttachment) -> Result<(), ChatError> {
        if file.content.is_empty() {
            return Err(ChatError::Refused("the file is empty".to_string()));
        }
        let session = self.client.open_session(&self.token);
        let url_request = SlackApiFilesGetUploadUrlExternalRequest::new(file.filename.clone(), file.content.len());
        let upload = with_retries!(self, "files.getUploadURLExternal", session.get_upload_url_external(&url_request))?;
        let bytes_request = SlackApiFilesUploadViaUrlRequest::new(
            upload.upload_url.clone(),
            file.content.clone(),
            content_type(&file.filename).to_string(),
        );
        with_retries!(self, "files.uploadViaUrl", session.files_upload_via_url(&bytes_request))?;
        let complete_request = SlackApiFilesCompleteUploadExternalRequest::new(vec![
            SlackApiFilesComplete::new(upload.file_id.clone()).with_title(file.title.clone()),
        ])
        .with_channel_id(channel.into())
        .opt_thread_ts(thread.map(SlackTs::from));
        // Sharing the file is what posts into the channel, so it takes the channel's turn.
        let _turn = self.gate.turn(channel).await;
        with_retries!(self, "files.completeUploadExternal", session.files_complete_upload_external(&complete_request))?;
        Ok(())
    }

    async fn direct(&self, user_id: &str, message: &Message) -> Result<MessageRef, ChatError> {
        let channel = self.direct_channel(self::user_id(user_id)).await?;
        self.post(&channel, None, message).await
    }
}

/// `slack:U0001` or `U0001` → `U0001`.
fn user_id(user: &str) -> &str {
    user.strip_prefix("slack:").unwrap_or(user)
}

/// A Web API client for `api_url` (`https://slack.com/api/`, or `http://127.0.0.1:…/api/` for a
/// local fake: the connector accepts both schemes). TLS uses the system's roots, or Mozilla's
/// bundled ones where the system has none.
pub(crate) fn web_api_client(api_url: &str) -> anyhow::Result<SlackHyperClient> {
    let api_url = api_url.trim().trim_end_matches('/');
    let parsed = url::Url::parse(api_url).with_context(|| format!("slack.api_url '{api_url}' is not a URL"))?;
    anyhow::ensure!(
        matches!(parsed.scheme(), "https" | "http"),
        "slack.api_url '{api_url}' must start with https:// (or http:// for a local fake)"
    );
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = match HttpsConnectorBuilder::new().with_provider_and_native_roots(provider.clone()) {
        Ok(builder) => builder,
        Err(error) => {
            tracing::info!(%error, "No usable system CA certificates; using the bundled Mozilla roots for Slack");
            let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
            let tls = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .context("TLS set-up for Slack")?
                .with_root_certificates(roots)
                .with_no_client_auth();
            HttpsConnectorBuilder::new().with_tls_config(tls)
        }
    };
    let connector = builder.https_or_http().enable_http1().enable_http2().build();
    Ok(SlackClient::new(SlackClientHyperConnector::with_connector(connector).with_slack_api_url(api_url)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_and_platform() {
        let adapter =
            SlackAdapter::with_api_url(&Secret::new("xoxb-secret"), "https://slack.com/api/", Some("C1".into()))
                .unwrap();
        assert_eq!(adapter.platform(), "slack");
        assert_eq!(adapter.mention("U0001"), "<@U0001>");
        assert_eq!(adapter.mention("slack:U0001"), "<@U0001>");
        assert_eq!(adapter.incident_channel().as_deref(), Some("C1"));
        assert!(!format!("{adapter:?}").contains("xoxb-secret"));
        assert_eq!(adapter.limits().max_blocks, 50);
    }

    #[test]
    fn api_url_must_be_http_or_https() {
        assert!(SlackAdapter::with_api_url(&Secret::new("x"), "ftp://example.com/api", None).is_err());
        assert!(SlackAdapter::with_api_url(&Secret::new("x"), "http://127.0.0.1:9/api/", None).is_ok());
    }

    #[test]
    fn file_content_types() {
        assert_eq!(content_type("output.txt"), "text/plain");
        assert_eq!(content_type("data.JSON"), "application/json");
        assert_eq!(content_type("blob"), "application/octet-stream");
        assert_eq!(content_type("chart-queue.png"), "image/png");
    }
}
