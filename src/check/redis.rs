//! `kind = "redis"`: one command; sees `value`. Checks may only run read-only commands;
//! remediations may write. Numeric replies become numbers and `INFO` becomes a map.

use futures::future::BoxFuture;
use serde_json::{Value, json};

use super::{Check, CheckContext, Observation, Status, summary_source};
use crate::config::TargetKind;
use crate::runbook::{Args, Encoding, Fields, Template};

/// Commands a check may run: they read and never change data.
const READ_ONLY: [&str; 36] = [
    "GET",
    "MGET",
    "STRLEN",
    "GETRANGE",
    "EXISTS",
    "TTL",
    "PTTL",
    "TYPE",
    "LLEN",
    "LRANGE",
    "LINDEX",
    "LPOS",
    "SCARD",
    "SISMEMBER",
    "SMISMEMBER",
    "SMEMBERS",
    "ZCARD",
    "ZCOUNT",
    "ZSCORE",
    "ZRANGE",
    "ZRANK",
    "HLEN",
    "HGET",
    "HMGET",
    "HGETALL",
    "HEXISTS",
    "HKEYS",
    "XLEN",
    "XINFO",
    "XPENDING",
    "XRANGE",
    "INFO",
    "PING",
    "DBSIZE",
    "LASTSAVE",
    "TIME",
];
/// Two-word commands whose sub-command decides whether they read. `CONFIG GET` is not here: it
/// reads secrets (`CONFIG GET *` answers `masterauth` and `requirepass`), and the redactor knows
/// only the target URL's password.
const READ_ONLY_SUBCOMMANDS: [(&str, &[&str]); 4] = [
    ("MEMORY", &["USAGE", "STATS"]),
    ("SLOWLOG", &["GET", "LEN"]),
    ("CLIENT", &["LIST", "INFO"]),
    ("CLUSTER", &["INFO", "NODES"]),
];

#[derive(Debug)]
pub struct RedisCheck {
    target: String,
    command: Vec<Template>,
}

impl RedisCheck {
    pub const KEYS: &'static [&'static str] = &["target", "command"];
    pub const VARIABLES: &'static [&'static str] = &["value"];

    pub fn from_fields(fields: &mut Fields<'_>) -> Option<Self> {
        let raw = fields.raw;
        let target = fields.required_target(&[TargetKind::Redis]);
        let Some(field) = &raw.command else {
            fields.error(fields.kind_span(), "needs `command`, e.g. command = [\"LLEN\", \"trade_execution_queue\"]");
            return None;
        };
        let command = fields.template_list("command", &raw.command)?;
        let Some(name) = command.first() else {
            fields.error(
                field.span(),
                "command is empty: write the command and its arguments, e.g. [\"LLEN\", \"jobs\"]",
            );
            return None;
        };
        if !name.is_literal() {
            fields.error(
                field.span(),
                "command: the command name must be written out; arguments may only fill in its arguments",
            );
            return None;
        }
        if fields.is_check {
            let words: Vec<String> = field.get_ref().iter().take(2).map(|word| word.to_ascii_uppercase()).collect();
            if !is_read_only(&words) {
                fields.error(field.span(), refusal(&words));
                return None;
            }
        }
        Some(RedisCheck { target: target?, command })
    }

    fn words(&self, args: &Args) -> Vec<String> {
        self.command.iter().map(|word| word.render(args, Encoding::Raw)).collect()
    }
}

/// Why a check may not run `words`, and what it may run instead.
fn refusal(words: &[String]) -> String {
    let two_words = READ_ONLY_SUBCOMMANDS.iter().any(|(command, _)| *command == words[0]);
    let shown = if two_words { words.join(" ") } else { words[0].clone() };
    let why =
        if words[0] == "CONFIG" { " (CONFIG GET answers secrets such as masterauth and requirepass)" } else { "" };
    let subcommands: Vec<String> = READ_ONLY_SUBCOMMANDS
        .iter()
        .map(|(command, subcommands)| format!("{command} {}", subcommands.join("|")))
        .collect();
    format!(
        "command: {shown} is not a read-only Redis command{why}; checks may run {}, {} (write commands belong in [[remediations]])",
        READ_ONLY.join(", "),
        subcommands.join(", ")
    )
}

fn is_read_only(words: &[String]) -> bool {
    let name = words[0].as_str();
    if READ_ONLY.contains(&name) {
        return true;
    }
    READ_ONLY_SUBCOMMANDS.iter().any(|(command, subcommands)| {
        *command == name && words.get(1).is_some_and(|sub| subcommands.contains(&sub.as_str()))
    })
}

impl Check for RedisCheck {
    fn run<'a>(&'a self, context: &'a CheckContext<'a>) -> BoxFuture<'a, Result<Observation, String>> {
        Box::pin(async move {
            let words = self.words(context.args);
            let mut connection = context.targets.redis_connection(&self.target).await?;
            let mut command = redis::cmd(&words[0]);
            for word in &words[1..] {
                command.arg(word);
            }
            let reply: redis::Value = match command.query_async(&mut connection).await {
                Ok(reply) => reply,
                Err(error) => {
                    if error.is_io_error() || error.is_connection_dropped() {
                        context.targets.drop_redis_connection(&self.target).await;
                    }
                    return Err(format!("{} on '{}' failed: {error}", words[0], self.target));
                }
            };
            let mut value = reply_to_json(&reply);
            if words[0].eq_ignore_ascii_case("INFO")
                && let Value::String(text) = &value
            {
                value = parse_info(text);
            }
            let shown = match &value {
                Value::String(text) => summary_source(text).to_string(),
                Value::Object(map) => format!("{} fields", map.len()),
                other => summary_source(&other.to_string()).to_string(),
            };
            let summary = format!("{} = {shown}", words.join(" "));
            Ok(Observation::new(summary, Status::Ok, json!({"value": value})))
        })
    }

    /// The command as the words sent, each quoted.
    fn describe(&self, args: &Args) -> String {
        let words: Vec<String> = self.words(args).iter().map(|word| super::http::quoted(word)).collect();
        format!("Redis on {}: [{}]", self.target, words.join(", "))
    }
}

impl RedisCheck {
    /// The target it talks to, whose settings an approval binds too.
    pub fn target_name(&self) -> &str {
        &self.target
    }
}

fn text_to_json(text: String) -> Value {
    if let Ok(int) = text.parse::<i64>() {
        return json!(int);
    }
    if let Ok(float) = text.parse::<f64>()
        && float.is_finite()
        && !text.trim().is_empty()
    {
        return json!(float);
    }
    Value::String(text)
}

fn reply_to_json(reply: &redis::Value) -> Value {
    use redis::Value as R;
    match reply {
        R::Nil => Value::Null,
        R::Int(int) => json!(int),
        R::BulkString(bytes) => text_to_json(String::from_utf8_lossy(bytes).into_owned()),
        R::SimpleString(text) => text_to_json(text.clone()),
        R::Okay => json!("OK"),
        R::Double(float) => json!(float),
        R::Boolean(flag) => json!(flag),
        R::VerbatimString { text, .. } => text_to_json(text.clone()),
        R::BigNumber(number) => text_to_json(String::from_utf8_lossy(number).into_owned()),
        R::Array(items) | R::Set(items) => Value::Array(items.iter().map(reply_to_json).collect()),
        R::Map(pairs) => {
            let map = pairs
                .iter()
                .map(|(key, value)| {
                    let key = match reply_to_json(key) {
                        Value::String(text) => text,
                        other => other.to_string(),
                    };
                    (key, reply_to_json(value))
                })
                .collect();
            Value::Object(map)
        }
        R::Attribute { data, .. } => reply_to_json(data),
        R::Push { data, .. } => Value::Array(data.iter().map(reply_to_json).collect()),
        R::ServerError(error) => json!(format!("{error:?}")),
        _ => Value::Null,
    }
}

/// `INFO` text → `{"connected_clients": 3, "used_memory": 1048576, …}`.
fn parse_info(text: &str) -> Value {
    let map = text
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(key, value)| (key.to_string(), text_to_json(value.trim().to_string())))
        .collect();
    Value::Object(map)
}
