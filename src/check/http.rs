//! `kind = "http"`: one request; sees `status`, `latency_ms`, `body` and `json`. Without
//! expressions 2xx/3xx is ok and anything else crit. Redirects are not followed.
//!
//! Arguments are encoded for their place: percent-encoded in the URL (where `.` and `..` are
//! refused when they bind), JSON-string-escaped in a JSON body (a `Content-Type` naming JSON, or
//! a body that is JSON once filled in), percent-encoded in a form body, as is elsewhere.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Instant;
use toml::Spanned;

use futures::StreamExt;
use futures::future::BoxFuture;
use serde_json::json;

use super::{Check, CheckContext, Fields, Observation, Status, TargetInfo, millis, summary_source};
use crate::config::TargetKind;
use crate::redact::mask_url;
use crate::template::{Args, Encoding, Template, is_dot_segment};

/// The keys of a `kind = "http"` table, besides those every check has.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Keys {
    url: Option<Spanned<String>>,
    target: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    method: Option<Spanned<String>>,
    headers: Option<Spanned<BTreeMap<String, String>>>,
    body: Option<Spanned<String>>,
}

#[derive(Debug)]
pub struct HttpCheck {
    url: Option<Template>,
    target: Option<String>,
    path: Option<Template>,
    method: reqwest::Method,
    headers: BTreeMap<String, Template>,
    body: Option<Template>,
    /// How arguments are written into `body`, decided at load from its type.
    body_encoding: Encoding,
}

impl HttpCheck {
    pub const VARIABLES: &'static [&'static str] = &["status", "latency_ms", "body", "json"];
    const METHODS: [&'static str; 7] = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

    pub fn from_fields(fields: &mut Fields<'_>) -> Option<Self> {
        let raw: Keys = fields.keys()?;
        let url = fields.template("url", &raw.url);
        let target = fields.target(&raw.target, &[TargetKind::Http]);
        let path = fields.template("path", &raw.path);
        let headers = fields.template_map("headers", &raw.headers);
        let body = fields.template("body", &raw.body);
        for template in url.iter().chain(path.iter()) {
            fields.url_placed(template);
        }
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
        let headers = headers?;
        let body_encoding = body.as_ref().map(|body| body_encoding(&headers, body)).unwrap_or(Encoding::Raw);
        Some(HttpCheck { url, target, path, method, headers, body, body_encoding })
    }

    /// The target this request goes to, when it names one.
    pub fn target_name(&self) -> Option<&str> {
        if self.url.is_some() { None } else { self.target.as_deref() }
    }

    /// The address as the request will use it, after the URL parser normalised it (so what is
    /// shown is what is sent), with the target's headers then the runbook's.
    fn address(&self, args: &Args, target: Option<&TargetInfo>) -> Result<(String, Vec<(String, String)>), String> {
        // Binding refuses these already; this keeps a caller that skipped it from climbing paths.
        for name in self.url.iter().chain(self.path.iter()).flat_map(Template::arg_names) {
            if args.get(name).is_some_and(is_dot_segment) {
                return Err(format!("argument {name} may not be '.' or '..' in a URL"));
            }
        }
        let mut headers = Vec::new();
        let url = match (&self.url, &self.target, target) {
            (Some(url), _, _) => url.render(args, Encoding::Url),
            (None, Some(_), Some(info)) => {
                headers.extend(info.headers.iter().map(|(name, value)| (name.clone(), value.expose().to_string())));
                let path = self.path.as_ref().map(|path| path.render(args, Encoding::Url)).unwrap_or_default();
                if path.is_empty() {
                    info.url.expose().to_string()
                } else {
                    format!("{}/{}", info.url.expose().trim_end_matches('/'), path.trim_start_matches('/'))
                }
            }
            (None, Some(name), None) => return Err(format!("target '{name}' is not configured")),
            (None, None, _) => return Err("no url".into()),
        };
        let url = url::Url::parse(&url).map(String::from).unwrap_or(url);
        headers.extend(self.headers.iter().map(|(name, value)| (name.clone(), value.render(args, Encoding::Raw))));
        Ok((url, headers))
    }

    /// Everything the request will send, for approvers and the approval hash: the method and
    /// the normalised URL, every header, and the whole body. With `reveal` false (what people
    /// see) the target's URL password and header values show as `***`; with `reveal` true (what
    /// the hash binds) nothing is masked. `target` is the configured target, when there is one.
    pub fn describe_request(&self, args: &Args, target: Option<&TargetInfo>, reveal: bool) -> String {
        let mut lines = Vec::new();
        match self.address(args, target) {
            Ok((url, _)) => {
                // A target's URL is one of the configured secrets, so people see its name and
                // the normalised path and query after it; the hash binds the whole URL.
                let shown = match (reveal, self.target_name(), url::Url::parse(&url)) {
                    (true, _, _) => url,
                    (false, Some(name), Ok(parsed)) => format!("[{name}]{}", &parsed[url::Position::BeforePath..]),
                    (false, _, _) => mask_url(&url),
                };
                lines.push(format!("{} {shown}", self.method));
            }
            Err(_) => {
                let path = self.path.as_ref().map(|path| path.render(args, Encoding::Url)).unwrap_or_default();
                lines.push(format!("{} [{}]{path}", self.method, self.target.as_deref().unwrap_or("")));
            }
        }
        if let (None, Some(info)) = (&self.url, target) {
            for (name, value) in &info.headers {
                let value = if reveal { value.expose().to_string() } else { "***".to_string() };
                lines.push(format!("header {name}: {}", quoted(&value)));
            }
        }
        for (name, value) in &self.headers {
            lines.push(format!("header {name}: {}", quoted(&value.render(args, Encoding::Raw))));
        }
        if let Some(body) = &self.body {
            let text = body.render(args, self.body_encoding);
            let kind = match self.body_encoding {
                Encoding::Json => "JSON, ",
                Encoding::Url => "form, ",
                _ => "",
            };
            lines.push(format!("body ({kind}{} bytes):", text.len()));
            lines.push(text);
        }
        lines.join("\n")
    }
}

/// How arguments are written into a body: JSON-escaped when the body is JSON (its
/// `Content-Type` says so, or, without one, it parses as JSON once filled in), percent-encoded
/// in a form, as is otherwise.
fn body_encoding(headers: &BTreeMap<String, Template>, body: &Template) -> Encoding {
    let content_type = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-type"))
        .map(|(_, value)| value.source().to_ascii_lowercase());
    match content_type {
        Some(content_type) if content_type.contains("json") => Encoding::Json,
        Some(content_type) if content_type.contains("x-www-form-urlencoded") => Encoding::Url,
        Some(_) => Encoding::Raw,
        None => {
            // "0" fits both places an argument takes in JSON: inside a string and as a number.
            let sample = body.render(&Args::sample(body.arg_names(), "0"), Encoding::Json);
            if serde_json::from_str::<serde_json::Value>(&sample).is_ok() { Encoding::Json } else { Encoding::Raw }
        }
    }
}

/// `"text"` with JSON's escapes, so a value's quotes, spaces and newlines cannot be misread.
pub(crate) fn quoted(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

impl Check for HttpCheck {
    fn run<'a>(&'a self, context: &'a CheckContext<'a>) -> BoxFuture<'a, Result<Observation, String>> {
        Box::pin(async move {
            let target = match &self.target {
                Some(name) if self.url.is_none() => Some(context.targets.get(name)?),
                _ => None,
            };
            let (url, headers) = self.address(context.args, target)?;
            let shown_url = mask_url(&url);
            let mut request = context.targets.http_client().request(self.method.clone(), &url);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            if let Some(body) = &self.body {
                request = request.body(body.render(context.args, self.body_encoding));
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
        self.describe_request(args, None, false)
    }

    fn describe_for_approval(&self, args: &Args, targets: &super::Targets, reveal: bool) -> String {
        let target = self.target_name().and_then(|name| targets.get(name).ok());
        self.describe_request(args, target, reveal)
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
