//! `kind = "prometheus"`: an instant query; sees `value` (the first sample) and `series`.
//! With `chart = "1h"` it also runs the range query over that last hour and attaches a PNG line
//! chart of it, with the `warn`/`crit` thresholds that compare `value` with a number drawn as
//! lines. The verdict is the instant query's alone: a chart that cannot be had is a note in the
//! summary, never a different verdict.
//!
//! Arguments go only inside double-quoted strings, where they are escaped; the query is lexed
//! as PromQL reads it (`"…"` and `'…'` with backslash escapes, `` `…` `` without, `#` comments
//! to the end of the line), so a quote inside another kind of string or a comment cannot make an
//! argument look quoted. Inside the string of a `=~` or `!~` matcher an argument's regex
//! metacharacters are escaped too, so it matches only itself (`job=~"{{job}}"` with `job=.*`
//! matches a job named `.*`, not every job).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};
use toml::Spanned;

use super::chart::{self, Chart, Series, Threshold};
use super::http::{read_capped_body, root_cause};
use super::{Check, CheckContext, Fields, Observation, Status, output_cut_marker, summary_source};
use crate::attachment::FileAttachment;
use crate::config::TargetKind;
use crate::source::Dur;
use crate::template::{Args, Encoding, Template};

/// The shortest and longest `chart` range.
const CHART_RANGE: (Duration, Duration) = (Duration::from_secs(60), Duration::from_secs(31 * 86_400));
/// Points per series a chart asks for: the range query's step is the range divided by this.
const CHART_POINTS: u64 = 120;
/// How long the chart may still take once the instant query answered; past that the check
/// reports its verdict without a chart.
const CHART_GRACE: Duration = Duration::from_secs(2);

/// The keys of a `kind = "prometheus"` table, besides those every check has.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Keys {
    target: Option<Spanned<String>>,
    query: Option<Spanned<String>>,
    /// The range of a chart of the query, ending now (`"1h"`).
    chart: Option<Spanned<String>>,
}

#[derive(Debug)]
pub struct PrometheusCheck {
    /// The check's name, for the chart's title and file name.
    name: String,
    target: String,
    query: Template,
    /// The encoding of each `{{arg}}` in `query`, in order: a string or a regex matcher's string.
    encodings: Vec<Encoding>,
    /// The range a chart covers, when the check draws one.
    chart: Option<Duration>,
    /// The lines a chart draws: the thresholds of `warn`/`crit` that compare `value` with a number.
    thresholds: Vec<Threshold>,
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
        let chart = match &raw.chart {
            None => None,
            Some(field) => match chart_range(field.get_ref()) {
                Ok(range) => Some(range),
                Err(reason) => {
                    fields.error(field.span(), format!("chart: {reason}"));
                    return None;
                }
            },
        };
        let mut thresholds = Vec::new();
        for (expression, crit) in [(&fields.raw.warn, false), (&fields.raw.crit, true)] {
            let Some(expression) = expression else { continue };
            if let Some((operator, value)) = threshold(expression.get_ref()) {
                let label = format!("{} {operator} {}", if crit { "crit" } else { "warn" }, expression_number(value));
                thresholds.push(Threshold { label, value, crit });
            }
        }
        let name = fields.raw.name.get_ref().clone();
        Some(PrometheusCheck { name, target: target?, query, encodings, chart, thresholds })
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

impl PrometheusCheck {
    /// Asks Prometheus's `path` (`query` or `query_range`) with `params`; its `data`, or why not.
    async fn ask(&self, context: &CheckContext<'_>, path: &str, params: &[(&str, String)]) -> Result<Value, String> {
        let info = context.targets.get(&self.target)?;
        let url = format!("{}/api/v1/{path}", info.url.expose().trim_end_matches('/'));
        let mut request = context.targets.http_client().get(&url).query(params);
        for (name, value) in &info.headers {
            request = request.header(name, value.expose());
        }
        let response =
            request.send().await.map_err(|error| format!("Prometheus '{}': {}", self.target, root_cause(&error)))?;
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
        let mut body: Value = serde_json::from_slice(&body)
            .map_err(|error| format!("Prometheus '{}' answered {status} without JSON: {error}", self.target))?;
        if body["status"] != "success" {
            let reason = body["error"].as_str().unwrap_or("unknown error");
            return Err(format!("Prometheus '{}' refused the query: {reason}", self.target));
        }
        Ok(body["data"].take())
    }

    /// The chart of `query` over the last `range`, as a PNG attachment, or why there is none.
    async fn chart(&self, context: &CheckContext<'_>, query: &str, range: Duration) -> Result<FileAttachment, String> {
        let end = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let start = end.saturating_sub(range.as_secs());
        let step = (range.as_secs() / CHART_POINTS).max(1);
        let params = [
            ("query", query.to_string()),
            ("start", start.to_string()),
            ("end", end.to_string()),
            ("step", step.to_string()),
        ];
        let data = self.ask(context, "query_range", &params).await?;
        let series: Vec<Series> = match data["resultType"].as_str() {
            Some("matrix") => data["result"]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|item| Series {
                            label: context.redacted(&series_label(item)),
                            points: item["values"]
                                .as_array()
                                .map(|values| values.iter().filter_map(point).collect())
                                .unwrap_or_default(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            other => return Err(format!("the range query answered {}, not a matrix", other.unwrap_or("nothing"))),
        };
        if series.iter().all(|series| series.points.is_empty()) {
            return Err(format!("the range query has no data in the last {}", humantime::format_duration(range)));
        }
        let chart = Chart {
            title: context.redacted(&format!("{}: {query}", self.name)),
            start: start as f64,
            end: end as f64,
            series,
            thresholds: self.thresholds.clone(),
        };
        // Drawing is a few milliseconds of CPU: off the async workers, and a panic in the
        // plotting library ends only the chart.
        let png = tokio::task::spawn_blocking(move || chart::render_png(&chart))
            .await
            .map_err(|_| "drawing the chart failed".to_string())??;
        Ok(FileAttachment {
            filename: format!("chart-{}.png", file_stem(&self.name)),
            title: context.redacted(&format!("{} over the last {}", self.name, humantime::format_duration(range))),
            content: png,
        })
    }

    async fn instant(&self, context: &CheckContext<'_>, query: &str) -> Result<Observation, String> {
        let data = self.ask(context, "query", &[("query", query.to_string())]).await?;
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
    }
}

impl Check for PrometheusCheck {
    fn run<'a>(&'a self, context: &'a CheckContext<'a>) -> BoxFuture<'a, Result<Observation, String>> {
        Box::pin(async move {
            let query = self.rendered(context.args);
            let Some(range) = self.chart else {
                return self.instant(context, &query).await;
            };
            // Both queries at once; the chart gets a short grace after the verdict is known.
            let chart = self.chart(context, &query, range).fuse();
            let instant = self.instant(context, &query).fuse();
            futures::pin_mut!(chart, instant);
            let mut charted = None;
            let observed = loop {
                futures::select! {
                    observed = instant => break observed,
                    outcome = chart => charted = Some(outcome),
                }
            };
            let mut observation = observed?;
            let charted = match charted {
                Some(outcome) => outcome,
                None => tokio::time::timeout(CHART_GRACE, chart).await.unwrap_or_else(|_| {
                    Err(format!(
                        "the range query took more than {} after the instant query",
                        humantime::format_duration(CHART_GRACE)
                    ))
                }),
            };
            match charted {
                Ok(file) => observation.attachments.push(file),
                Err(reason) => {
                    tracing::warn!(
                        check = self.name,
                        target = self.target,
                        reason,
                        "A check's chart could not be drawn"
                    );
                    observation.summary = format!("{}; no chart: {reason}", observation.summary);
                }
            }
            Ok(observation)
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

/// `[1700000000, "0.98"]` → a chart point (no point for NaN, infinities or text).
fn point(pair: &Value) -> Option<(f64, f64)> {
    let at = pair.get(0)?.as_f64()?;
    let value = pair.get(1)?.as_str()?.parse::<f64>().ok().filter(|value| value.is_finite())?;
    Some((at, value))
}

/// A `chart` value: a duration from one minute to 31 days.
fn chart_range(text: &str) -> Result<Duration, String> {
    const VALID: &str = "chart takes the range to draw, from 1m to 31d, e.g. chart = \"1h\"";
    let range = Dur::parse(text).map_err(|reason| format!("{reason}; {VALID}"))?.0;
    if range < CHART_RANGE.0 || range > CHART_RANGE.1 {
        return Err(format!("'{text}' is out of range; {VALID}"));
    }
    Ok(range)
}

/// The threshold of a `warn`/`crit` expression that compares `value` with a number
/// (`value > 500`, `value >= 0.9`, `500 < value`), with its comparison as read from `value`'s
/// side; `None` for anything else, which a chart does not draw.
fn threshold(expression: &str) -> Option<(&'static str, f64)> {
    const OPERATORS: [(&str, &str); 4] = [(">=", "<="), ("<=", ">="), (">", "<"), ("<", ">")];
    let expression = expression.trim();
    for (operator, flipped) in OPERATORS {
        let Some((left, right)) = expression.split_once(operator) else { continue };
        let (left, right) = (left.trim(), right.trim());
        let number = |text: &str| text.parse::<f64>().ok().filter(|value| value.is_finite());
        if left == "value" {
            return number(right).map(|value| (operator, value));
        }
        if right == "value" {
            return number(left).map(|value| (flipped, value));
        }
        return None;
    }
    None
}

/// A threshold's number as its label shows it.
fn expression_number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 { format!("{}", value as i64) } else { format!("{value}") }
}

/// A check name as part of a file name: letters, digits and dashes.
fn file_stem(name: &str) -> String {
    let stem: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    let stem = stem.split('-').filter(|part| !part.is_empty()).collect::<Vec<_>>().join("-");
    if stem.is_empty() { "check".to_string() } else { stem }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_are_read_from_simple_comparisons_only() {
        assert_eq!(threshold("value > 500"), Some((">", 500.0)));
        assert_eq!(threshold("value >= 100"), Some((">=", 100.0)));
        assert_eq!(threshold("500 < value"), Some((">", 500.0)));
        assert_eq!(threshold(" 0.5>=value "), Some(("<=", 0.5)));
        assert_eq!(threshold("value < -2.5"), Some(("<", -2.5)));
        assert_eq!(threshold("series.exists(s, s.value > 0.9)"), None);
        assert_eq!(threshold("value > 1 && value < 5"), None);
        assert_eq!(threshold("value == 3"), None);
        assert_eq!(threshold("value > limit"), None);
    }

    #[test]
    fn chart_ranges_are_durations_within_bounds() {
        assert_eq!(chart_range("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(chart_range("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(chart_range("10s").unwrap_err().contains("from 1m to 31d"));
        assert!(chart_range("an hour").unwrap_err().contains("e.g. chart = \"1h\""));
    }

    #[test]
    fn chart_file_names_are_plain() {
        assert_eq!(file_stem("Queue depth (ingest)"), "queue-depth-ingest");
        assert_eq!(file_stem("ü"), "check");
    }
}
