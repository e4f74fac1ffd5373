//! `kind = "prometheus"`: an instant query; sees `value` (the first sample) and `series`.
//!
//! Arguments go only inside double-quoted strings, where they are escaped; the query is lexed
//! as PromQL reads it (`"…"` and `'…'` with backslash escapes, `` `…` `` without, `#` comments
//! to the end of the line), so a quote inside another kind of string or a comment cannot make an
//! argument look quoted. Inside the string of a `=~` or `!~` matcher an argument's regex
//! metacharacters are escaped too, so it matches only itself (`job=~"{{job}}"` with `job=.*`
//! matches a job named `.*`, not every job).

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};
use toml::Spanned;

use super::http::{read_capped_body, root_cause};
use super::{Check, CheckContext, Fields, Observation, Status, output_cut_marker, summary_source};
use crate::config::TargetKind;
use crate::template::{Args, Encoding, Template};

/// The keys of a `kind = "prometheus"` table, besides those every check has.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Keys {
    target: Option<Spanned<String>>,
    query: Option<Spanned<String>>,
}

#[derive(Debug)]
pub struct PrometheusCheck {
    target: String,
    query: Template,
    /// The encoding of each `{{arg}}` in `query`, in order: a string or a regex matcher's string.
    encodings: Vec<Encoding>,
}

impl PrometheusCheck {
    pub const VARIABLES: &'static [&'static str] = &["value", "series"];

    pub fn from_fields(fields: &mut Fields<'_>) -> Option<Self> {
        let raw: Keys = fields.keys()?;
        let target = fields.required_target(&raw.target, &[TargetKind::Prometheus]);
        let query = fields.required_template("query", &raw.query)?;
        let encodings = match argument_places(&query.source()) {
            Ok(encodings) => encodings,
            Err(reason) => {
                fields.error(
                    raw.query.as_ref().map(|field| field.span()).unwrap_or_default(),
                    format!("query: {reason}"),
                );
                return None;
            }
        };
        Some(PrometheusCheck { target: target?, query, encodings })
    }

    fn rendered(&self, args: &Args) -> String {
        self.query.render_each(args, |index| self.encodings.get(index).copied().unwrap_or(Encoding::Promql))
    }
}

/// Lexes `source` (a query with `{{arg}}` placeholders) the way PromQL does and says how each
/// placeholder is encoded, or why one sits where no encoding makes it safe.
fn argument_places(source: &str) -> Result<Vec<Encoding>, String> {
    const EXAMPLE: &str = "e.g. up{job=\"{{job}}\"}";
    #[derive(Clone, Copy, PartialEq)]
    enum State {
        Code,
        Quoted(char),
        Backtick,
        Comment,
    }
    let chars: Vec<char> = source.chars().collect();
    let mut encodings = Vec::new();
    let mut state = State::Code;
    let mut code = String::new();
    let mut regex_string = false;
    let mut index = 0;
    while index < chars.len() {
        let c = chars[index];
        if c == '{' && chars.get(index + 1) == Some(&'{') {
            match state {
                State::Code => {
                    return Err(format!(
                        "an argument may only fill in a double-quoted string, {EXAMPLE}; this one is outside any string"
                    ));
                }
                State::Quoted('"') => {
                    encodings.push(if regex_string { Encoding::PromqlRegex } else { Encoding::Promql });
                }
                State::Quoted(_) => {
                    return Err(format!("an argument may not go in a '…' string; use a double-quoted one, {EXAMPLE}"));
                }
                State::Backtick => {
                    return Err(format!(
                        "an argument may not go in a `…` string (PromQL reads no escapes there, so it cannot be escaped); use a double-quoted one, {EXAMPLE}"
                    ));
                }
                State::Comment => {
                    return Err(format!(
                        "an argument may not go in a # comment; put it in a double-quoted string, {EXAMPLE}"
                    ));
                }
            }
            // Past the placeholder: its name holds no quotes.
            let rest: String = chars[index..].iter().collect();
            index += rest.find("}}").map(|end| rest[..end + 2].chars().count()).unwrap_or(chars.len() - index);
            continue;
        }
        match state {
            State::Code => match c {
                '#' => state = State::Comment,
                '"' | '\'' => {
                    let before = code.trim_end();
                    regex_string = before.ends_with("=~") || before.ends_with("!~");
                    state = State::Quoted(c);
                }
                '`' => state = State::Backtick,
                other => code.push(other),
            },
            State::Quoted(quote) => {
                if c == '\\' {
                    // An escape: the next character is part of the string (a placeholder right
                    // after it is still looked at as one).
                    if chars.get(index + 1) != Some(&'{') {
                        index += 1;
                    }
                } else if c == quote {
                    state = State::Code;
                }
            }
            State::Backtick if c == '`' => state = State::Code,
            State::Comment if c == '\n' => state = State::Code,
            State::Backtick | State::Comment => {}
        }
        index += 1;
    }
    if matches!(state, State::Quoted(_) | State::Backtick) && !encodings.is_empty() {
        return Err("a string is not closed: close every quote".to_string());
    }
    Ok(encodings)
}

impl Check for PrometheusCheck {
    fn run<'a>(&'a self, context: &'a CheckContext<'a>) -> BoxFuture<'a, Result<Observation, String>> {
        Box::pin(async move {
            let info = context.targets.get(&self.target)?;
            let query = self.rendered(context.args);
            let url = format!("{}/api/v1/query", info.url.expose().trim_end_matches('/'));
            let mut request = context.targets.http_client().get(&url).query(&[("query", &query)]);
            for (name, value) in &info.headers {
                request = request.header(name, value.expose());
            }
            let response = request
                .send()
                .await
                .map_err(|error| format!("Prometheus '{}': {}", self.target, root_cause(&error)))?;
            let status = response.status();
            // Read no more than max_output: a huge answer is refused, not held in memory.
            let (body, cut) = read_capped_body(response, context.max_output)
                .await
                .map_err(|error| format!("Prometheus '{}': reading the answer failed: {error}", self.target))?;
            if cut {
                return Err(format!(
                    "Prometheus '{}' answered more than the check may read ({}); narrow the query",
                    self.target,
                    output_cut_marker(context.max_output)
                ));
            }
            let body: Value = serde_json::from_slice(&body)
                .map_err(|error| format!("Prometheus '{}' answered {status} without JSON: {error}", self.target))?;
            if body["status"] != "success" {
                let reason = body["error"].as_str().unwrap_or("unknown error");
                return Err(format!("Prometheus '{}' refused the query: {reason}", self.target));
            }
            let data = &body["data"];
            let series: Vec<Value> = match data["resultType"].as_str() {
                Some("vector") => data["result"]
                    .as_array()
                    .map(|items| {
                        items
                            .iter()
                            .map(|item| json!({"metric": item["metric"], "value": sample(&item["value"])}))
                            .collect()
                    })
                    .unwrap_or_default(),
                Some("scalar") | Some("string") => vec![json!({"metric": {}, "value": sample(&data["result"])})],
                Some("matrix") => {
                    return Err("the query returned a range vector; write an instant query (no [5m] at the end)".into());
                }
                _ => Vec::new(),
            };
            let value = series.first().map(|first| first["value"].clone()).unwrap_or(Value::Null);
            let summary = match series.len() {
                0 => "no data".to_string(),
                1 => format!("{} = {}", summary_source(&series_label(&series[0])), value),
                n => format!("{n} series; first {} = {}", summary_source(&series_label(&series[0])), value),
            };
            Ok(Observation::new(summary, Status::Ok, json!({"value": value, "series": series})))
        })
    }

    fn describe(&self, args: &Args) -> String {
        format!("PromQL on {}: {}", self.target, self.rendered(args))
    }
}

/// `[1700000000.1, "0.98"]` → 0.98 (NaN and infinities become null).
fn sample(pair: &Value) -> Value {
    pair.get(1)
        .and_then(Value::as_str)
        .and_then(|text| text.parse::<f64>().ok())
        .filter(|number| number.is_finite())
        .map(|number| if number.fract() == 0.0 && number.abs() < 9e15 { json!(number as i64) } else { json!(number) })
        .unwrap_or(Value::Null)
}

fn series_label(series: &Value) -> String {
    let labels: Vec<String> = series["metric"]
        .as_object()
        .map(|metric| metric.iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or(""))).collect())
        .unwrap_or_default();
    format!("{{{}}}", labels.join(","))
}
