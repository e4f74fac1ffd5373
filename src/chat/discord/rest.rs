//! Discord's REST API (v10) over reqwest: the bot token as `Authorization: Bot …`, JSON or
//! multipart bodies (attachments), the [`Limiter`] before every request, and 429s waited out
//! for exactly their `Retry-After` a few times before giving up. Errors carry Discord's code and
//! message, never the token or an interaction token from a URL.
//!
//! The bodies are serenity's builders serialised to JSON (see the module doc of `discord`); the
//! client is ours rather than serenity's `Http` because that can be pointed at a test double
//! (`HttpBuilder::proxy`) only with its ratelimiter disabled — serenity issue #1739 — and then
//! 429s and their `Retry-After`/`X-RateLimit-*` headers are not surfaced, so they could be
//! neither honoured nor tested. Here they are read on every response and tested against the
//! fake Discord.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use super::ratelimit::{self, Limiter, Route};
use serenity::builder::CreateAttachment;

use crate::chat::ChatError;
use crate::config::Secret;

/// 429s waited out before a call gives up with [`ChatError::RateLimited`].
pub const MAX_RATE_LIMIT_RETRIES: u32 = 3;
/// Longest `Retry-After` waited out inside one call; a longer one is returned to the caller
/// (the outbox retries later) instead of holding a request for minutes.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(60);

/// What a request sends.
#[derive(Debug, Clone)]
pub(crate) enum Body {
    Empty,
    Json(Value),
    /// `payload_json` plus files as `files[n]` (Discord's attachments).
    Multipart {
        payload: Value,
        files: Vec<CreateAttachment>,
    },
}

/// Discord's answer to a failed request, as far as firebell uses it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The HTTP status, or `None` when Discord could not be reached.
    pub status: Option<u16>,
    /// Discord's JSON error code (`10003` Unknown Channel, `160004` thread already created…).
    pub code: Option<i64>,
    pub message: String,
    /// Set for a 429 that was not waited out.
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub(crate) fn into_chat_error(self) -> ChatError {
        match (self.status, self.retry_after) {
            (_, Some(retry_after)) => ChatError::RateLimited { retry_after_secs: retry_after.as_secs().max(1) },
            (None, _) => ChatError::Unreachable(self.message),
            (Some(status), _) if status >= 500 => ChatError::Unreachable(format!("Discord answered HTTP {status}")),
            (Some(status), _) => ChatError::Refused(match self.code {
                Some(code) => format!("HTTP {status}, code {code}: {}", self.message),
                None => format!("HTTP {status}: {}", self.message),
            }),
        }
    }
}

pub(crate) struct Rest {
    http: reqwest::Client,
    /// `https://discord.com/api/v10`.
    base: String,
    token: Secret,
    authorization: Secret,
    limiter: Limiter,
}

impl Rest {
    /// A client for `api_url` (`https://discord.com/api/`, or `http://127.0.0.1:…/api/` for a
    /// local fake).
    pub(crate) fn new(api_url: &str, token: &Secret) -> anyhow::Result<Rest> {
        let api_url = api_url.trim().trim_end_matches('/');
        let parsed =
            url::Url::parse(api_url).map_err(|_| anyhow::anyhow!("discord.api_url '{api_url}' is not a URL"))?;
        anyhow::ensure!(
            matches!(parsed.scheme(), "https" | "http"),
            "discord.api_url '{api_url}' must start with https:// (or http:// for a local fake)"
        );
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("DiscordBot (https://github.com/firebell, ", env!("CARGO_PKG_VERSION"), ")"))
            .build()?;
        Ok(Rest {
            http,
            base: format!("{api_url}/v10"),
            token: token.clone(),
            authorization: Secret::new(&format!("Bot {}", token.expose())),
            limiter: Limiter::default(),
        })
    }

    /// The bot token (for the gateway's identify).
    pub(crate) fn token(&self) -> &Secret {
        &self.token
    }

    /// Sends one request (`path` without the version: `channels/123/messages`), waiting for the
    /// rate limits first and after each 429; returns the JSON answer (`null` for 204).
    pub(crate) async fn call(&self, method: Method, path: &str, body: &Body) -> Result<Value, Failure> {
        let route = Route::new(&method, path);
        let url = format!("{}/{}", self.base, path.trim_start_matches('/'));
        let mut retries = 0;
        loop {
            self.limiter.acquire(&route).await;
            let request = self
                .http
                .request(method.clone(), &url)
                .header(reqwest::header::AUTHORIZATION, self.authorization.expose());
            let request = match body {
                Body::Empty => request,
                Body::Json(json) => request.json(json),
                Body::Multipart { payload, files } => request.multipart(multipart(payload, files)?),
            };
            let response = request.send().await.map_err(|error| Failure {
                status: None,
                code: None,
                message: format!("Discord could not be reached: {}", error.without_url()),
                retry_after: None,
            })?;
            let status = response.status();
            self.limiter.observe(&route, response.headers());
            if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
                let headers = response.headers().clone();
                let answer: Value = response.json().await.unwrap_or(Value::Null);
                let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok());
                let retry_after = header("retry-after")
                    .and_then(ratelimit::seconds)
                    .or_else(|| answer.get("retry_after").and_then(Value::as_f64).and_then(ratelimit::seconds_from_f64))
                    .unwrap_or(Duration::from_secs(1));
                let global = header("x-ratelimit-global").is_some_and(|value| value.eq_ignore_ascii_case("true"))
                    || header("x-ratelimit-scope") == Some("global")
                    || answer.get("global").and_then(Value::as_bool).unwrap_or(false);
                self.limiter.rate_limited(&route, retry_after, global);
                if retries >= MAX_RATE_LIMIT_RETRIES || retry_after > MAX_RETRY_WAIT {
                    tracing::warn!(
                        route = route.key,
                        retries,
                        ?retry_after,
                        "Discord kept rate-limiting a call; giving up"
                    );
                    return Err(Failure {
                        status: Some(429),
                        code: None,
                        message: "rate limited".to_string(),
                        retry_after: Some(retry_after),
                    });
                }
                retries += 1;
                tracing::info!(
                    route = route.key,
                    retry = retries,
                    retry_after_ms = retry_after.as_millis() as u64,
                    global,
                    "Discord asked to slow down; waiting before retrying"
                );
                // The limiter now holds the bucket (or everything) until the time is up.
                continue;
            }
            if status == reqwest::StatusCode::NO_CONTENT {
                return Ok(Value::Null);
            }
            let text = response.text().await.unwrap_or_default();
            let answer: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if status.is_success() {
                return Ok(answer);
            }
            let failure = Failure {
                status: Some(status.as_u16()),
                code: answer.get("code").and_then(Value::as_i64),
                message: answer
                    .get("message")
                    .and_then(Value::as_str)
                    .map(str::to_string)
                    .unwrap_or_else(|| text.chars().take(200).collect()),
                retry_after: None,
            };
            tracing::debug!(route = route.key, status = status.as_u16(), code = failure.code, "Discord refused a call");
            return Err(failure);
        }
    }
}

fn multipart(payload: &Value, files: &[CreateAttachment]) -> Result<reqwest::multipart::Form, Failure> {
    let mut form = reqwest::multipart::Form::new().text("payload_json", payload.to_string());
    for (index, file) in files.iter().enumerate() {
        let part = reqwest::multipart::Part::bytes(file.data.clone())
            .file_name(file.filename.clone())
            .mime_str(content_type(&file.filename))
            .map_err(|error| Failure { status: None, code: None, message: error.to_string(), retry_after: None })?;
        form = form.part(format!("files[{index}]"), part);
    }
    Ok(form)
}

pub(crate) fn content_type(filename: &str) -> &'static str {
    match filename.rsplit_once('.').map(|(_, extension)| extension.to_ascii_lowercase()) {
        Some(extension) if matches!(extension.as_str(), "txt" | "log" | "out" | "md" | "csv") => {
            "text/plain; charset=utf-8"
        }
        Some(extension) if extension == "json" => "application/json",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_become_chat_errors() {
        let refused =
            Failure { status: Some(404), code: Some(10003), message: "Unknown Channel".into(), retry_after: None };
        assert!(matches!(refused.into_chat_error(), ChatError::Refused(text) if text.contains("10003")));
        let down = Failure { status: Some(502), code: None, message: String::new(), retry_after: None };
        assert!(matches!(down.into_chat_error(), ChatError::Unreachable(_)));
        let limited = Failure {
            status: Some(429),
            code: None,
            message: String::new(),
            retry_after: Some(Duration::from_millis(300)),
        };
        assert!(matches!(limited.into_chat_error(), ChatError::RateLimited { retry_after_secs: 1 }));
    }

    #[test]
    fn api_url_must_be_http_or_https() {
        assert!(Rest::new("ftp://example.com/api", &Secret::new("t")).is_err());
        let rest = Rest::new("http://127.0.0.1:9/api/", &Secret::new("t")).unwrap();
        assert_eq!(rest.base, "http://127.0.0.1:9/api/v10");
    }
}
