//! `kind = "prometheus"`: an instant query; sees `value` (the first sample) and `series`.

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::http::{read_capped_body, root_cause};
use super::{Check, CheckContext, Observation, Status, output_cut_marker, summary_source};
use crate::config::TargetKind;
use crate::runbook::{Args, Encoding, Fields, Template};

#[derive(Debug)]
pub struct PrometheusCheck {
    target: String,
    query: Template,
}

impl PrometheusCheck {
    pub const KEYS: &'static [&'static str] = &["target", "query"];
    pub const VARIABLES: &'static [&'static str] = &["value", "series"];

    pub fn from_fields(fields: &mut Fields<'_>) -> Option<Self> {
        let raw = fields.raw;
        let target = fields.required_target(&[TargetKind::Prometheus]);
        let query = fields.required_template("query", &raw.query)?;
        // Arguments go only inside quoted label values, where they are escaped.
        let source = query.source();
        let mut in_quotes = false;
        let mut chars = source.char_indices().peekable();
        while let Some((index, c)) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => in_quotes = !in_quotes,
                '{' if source[index..].starts_with("{{") && !in_quotes => {
                    fields.error(
                        raw.query.as_ref().unwrap().span(),
                        "query: an argument may only fill in a quoted label value, e.g. up{job=\"{{job}}\"}",
                    );
                    return None;
                }
                '{' if source[index..].starts_with("{{") => {
                    chars.next();
                }
                _ => {}
            }
        }
        Some(PrometheusCheck { target: target?, query })
    }
}

impl Check for PrometheusCheck {
    fn run<'a>(&'a self, context: &'a CheckContext<'a>) -> BoxFuture<'a, Result<Observation, String>> {
        Box::pin(async move {
            let info = context.targets.get(&self.target)?;
            let query = self.query.render(context.args, Encoding::Promql);
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
        format!("PromQL on {}: {}", self.target, self.query.render(args, Encoding::Promql))
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
