//! `kind = "http"`: one request; sees `status`, `latency_ms`, `body` and `json`. Without
//! expressions 2xx/3xx is ok and anything else crit. Redirects are not followed.

use std::collections::BTreeMap;
use std::time::Instant;

use futures::StreamExt;
use futures::future::BoxFuture;
use serde_json::json;

use super::{Check, CheckContext, Observation, Status, millis, summary_source, truncate};
use crate::config::TargetKind;
use crate::redact::mask_url;
use crate::runbook::{Args, Encoding, Fields, Template};

#[derive(Debug)]
pub struct HttpCheck {
    url: Option<Template>,
    target: Option<String>,
    path: Option<Template>,
    method: reqwest::Method,
    headers: BTreeMap<String, Template>,
    body: Option<Template>,
}

impl HttpCheck {
    pub const KEYS: &'static [&'static str] = &["url", "target", "path", "method", "headers", "body"];
    pub const VARIABLES: &'static [&'static str] = &["status", "latency_ms", "body", "json"];
    const METHODS: [&'static str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

    pub fn from_fields(fields: &mut Fields<'_>) -> Option<Self> {
        let raw = fields.raw;
        let url = fields.template("url", &raw.url);
        let target = fields.target(&[TargetKind::Http]);
        let path = fields.template("path", &raw.path);
        let headers = fields.template_map("headers", &raw.headers);
        let body = fields.template("body", &raw.body);
        match (&raw.url, &raw.target) {
            (Some(_), Some(target)) => fields.error(target.span(), "give either `url` or `target` + `path`, not both"),
            (None, None) => fields
                .error(fields.kind_span(), "needs `url` (e.g. https://api.example.com/health) or `target` + `path`"),
            (Some(_), None) if raw.path.is_some() => fields
                .error(raw.path.as_ref().unwrap().span(), "`path` goes with `target`; put the whole address in `url`"),
            _ => {}
        }
        if let (Some(template), Some(field)) = (&url, &raw.url) {
            let sample = template.render(&Args::default(), Encoding::Url);
            match url::Url::parse(&sample) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => {}
                _ => fields
                    .error(field.span(), format!("url '{}' is not an http:// or https:// address", field.get_ref())),
            }
            // Arguments may fill in the path and query, never the scheme or host.
            let source = template.source();
            let prefix = source.split("{{").next().unwrap_or("");
            let host_written = prefix.split_once("://").is_some_and(|(_, rest)| rest.contains(['/', '?']));
            if !template.is_literal() && !host_written {
                fields.error(
                    field.span(),
                    "the scheme and host of `url` must be written out; arguments may fill in the path and query",
                );
            }
        }
        let method_text = raw.method.as_ref().map(|m| m.get_ref().to_ascii_uppercase()).unwrap_or_else(|| "GET".into());
        if !Self::METHODS.contains(&method_text.as_str()) {
            let span = raw.method.as_ref().map(|m| m.span()).unwrap_or_default();
            fields.error(span, format!("method '{method_text}' is not one of {}", Self::METHODS.join(", ")));
            return None;
        }
        let method = reqwest::Method::from_bytes(method_text.as_bytes()).ok()?;
        if url.is_none() && target.is_none() {
            return None;
        }
        Some(HttpCheck { url, target, path, method, headers: headers?, body })
    }

    fn address(&self, context: &CheckContext<'_>) -> Result<(String, Vec<(String, String)>), String> {
        let mut headers = Vec::new();
        let url = match (&self.url, &self.target) {
            (Some(url), _) => url.render(context.args, Encoding::Url),
            (None, Some(target)) => {
                let info = context.targets.get(target)?;
                headers.extend(info.headers.iter().map(|(name, value)| (name.clone(), value.expose().to_string())));
                let path = self.path.as_ref().map(|path| path.render(context.args, Encoding::Url)).unwrap_or_default();
                if path.is_empty() {
                    info.url.expose().to_string()
                } else {
                    format!("{}/{}", info.url.expose().trim_end_matches('/'), path.trim_start_matches('/'))
                }
            }
            (None, None) => return Err("no url".into()),
        };
        headers
            .extend(self.headers.iter().map(|(name, value)| (name.clone(), value.render(context.args, Encoding::Raw))));
        Ok((url, headers))
    }
}

impl Check for HttpCheck {
    fn run<'a>(&'a self, context: &'a CheckContext<'a>) -> BoxFuture<'a, Result<Observation, String>> {
        Box::pin(async move {
            let (url, headers) = self.address(context)?;
            let shown_url = mask_url(&url);
            let mut request = context.targets.http_client().request(self.method.clone(), &url);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            if let Some(body) = &self.body {
                request = request.body(body.render(context.args, Encoding::Raw));
            }
            let started = Instant::now();
            let response =
                request.send().await.map_err(|error| format!("{} {shown_url}: {}", self.method, root_cause(&error)))?;
            let latency_ms = millis(started.elapsed());
            let status = response.status();
            let (body, more_followed) = read_capped_body(response, context.read_limit())
                .await
                .map_err(|error| format!("{} {shown_url}: reading the body failed: {error}", self.method))?;
            let raw_body = String::from_utf8_lossy(&body);
            // JSON from the body as sent (the runner redacts its strings); a cut body is no JSON.
            let parsed: serde_json::Value = if more_followed {
                serde_json::Value::Null
            } else {
                serde_json::from_str(&raw_body).unwrap_or(serde_json::Value::Null)
            };
            // Redacted before the cut, so a secret across it is masked whole.
            let body = context.capped_output(&raw_body, more_followed);
            let default_status = if status.is_success() || status.is_redirection() { Status::Ok } else { Status::Crit };
            let reason = status.canonical_reason().unwrap_or("");
            let mut summary = format!("{} {} in {latency_ms} ms", status.as_u16(), reason);
            if !status.is_success() && !body.trim().is_empty() {
                summary.push_str(&format!(": {}", summary_source(body.trim().lines().next().unwrap_or(""))));
            }
            Ok(Observation::new(
                summary,
                default_status,
                json!({"status": status.as_u16(), "latency_ms": latency_ms, "body": body, "json": parsed, "url": shown_url}),
            ))
        })
    }

    fn describe(&self, args: &Args) -> String {
        let address = match (&self.url, &self.target) {
            (Some(url), _) => mask_url(&url.render(args, Encoding::Url)),
            (None, target) => format!(
                "[{}]{}",
                target.as_deref().unwrap_or(""),
                self.path.as_ref().map(|p| p.render(args, Encoding::Url)).unwrap_or_default()
            ),
        };
        match &self.body {
            Some(body) => {
                format!("{} {address} with body {}", self.method, truncate(&body.render(args, Encoding::Raw), 200))
            }
            None => format!("{} {address}", self.method),
        }
    }
}

/// Reads a response body up to `max_bytes` and says whether more followed; the rest is never
/// read into memory.
pub(crate) async fn read_capped_body(response: reqwest::Response, max_bytes: usize) -> Result<(Vec<u8>, bool), String> {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| root_cause(&error))?;
        let room = max_bytes.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if chunk.len() > room {
            return Ok((body, true));
        }
    }
    Ok((body, false))
}

/// The innermost error's words: "connection refused", not "error sending request".
pub(crate) fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut current: &(dyn std::error::Error + 'static) = error;
    let mut text = current.to_string();
    while let Some(source) = current.source() {
        current = source;
        text = current.to_string();
    }
    if error.to_string().contains("timed out") || text.contains("timed out") {
        return "timed out".to_string();
    }
    text
}
