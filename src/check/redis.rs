//! `kind = "redis"`: one command; sees `value` and `truncated`. Checks may only run read-only
//! commands; remediations may write. Numeric replies become numbers and `INFO` becomes a map.
//!
//! Replies are bounded before they are read: `GET` of a value longer than `max_output` reads
//! only its start (`GETRANGE`), `LRANGE` and index `ZRANGE` read at most [`MAX_ITEMS`]
//! elements (`LLEN`/`ZCARD` first), `ZRANGE … BYSCORE|BYLEX` and `XRANGE` get a `LIMIT`/`COUNT`,
//! and `HGETALL`, `HKEYS` and `SMEMBERS` of more than [`MAX_ITEMS`] fields or members, or `HGET`
//! of a field longer than `max_output`, are refused saying what to run instead. `truncated` says
//! when a reply was cut.

use futures::future::BoxFuture;
use serde::Deserialize;
use serde_json::{Value, json};
use toml::Spanned;

use super::{Check, CheckContext, Fields, Observation, Status, summary_source};
use crate::config::TargetKind;
use crate::template::{Args, Encoding, Template};

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

/// The keys of a `kind = "redis"` table, besides those every check has.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Keys {
    target: Option<Spanned<String>>,
    command: Option<Spanned<Vec<String>>>,
}

#[derive(Debug)]
pub struct RedisCheck {
    target: String,
    command: Vec<Template>,
}

impl RedisCheck {
    pub const VARIABLES: &'static [&'static str] = &["value", "truncated"];

    pub fn from_fields(fields: &mut Fields<'_>) -> Option<Self> {
        let raw: Keys = fields.keys()?;
        let target = fields.required_target(&raw.target, &[TargetKind::Redis]);
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
            let (words, mut truncated) = bounded(words, &mut connection, context.read_limit()).await?;
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
            if let Value::Array(items) = &value {
                truncated |= items.len() as i64 >= MAX_ITEMS && appended_limit(&words);
            }
            if truncated && let Value::String(text) = &value {
                value = Value::String(context.capped_output(text, true));
            }
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
            Ok(Observation::new(summary, Status::Ok, json!({"value": value, "truncated": truncated})))
        })
    }

    /// The command as the words sent, each quoted.
    fn describe(&self, args: &Args) -> String {
        let words: Vec<String> = self.words(args).iter().map(|word| super::http::quoted(word)).collect();
        format!("Redis on {}: [{}]", self.target, words.join(", "))
    }

    fn bound_target(&self) -> Option<&str> {
        Some(self.target_name())
    }
}

/// Elements, fields or members one reply may hold.
pub const MAX_ITEMS: i64 = 1000;

/// The command to send instead of `words` so its reply stays bounded, and whether it already
/// reads less than all (see the module's comment). `read_limit` is how many bytes of a value
/// the check reads.
async fn bounded(
    mut words: Vec<String>,
    connection: &mut redis::aio::MultiplexedConnection,
    read_limit: usize,
) -> Result<(Vec<String>, bool), String> {
    let name = words[0].to_ascii_uppercase();
    let mut count = async |probe: &[&str]| -> Result<i64, String> {
        let mut command = redis::cmd(probe[0]);
        for word in &probe[1..] {
            command.arg(*word);
        }
        command.query_async::<i64>(connection).await.map_err(|error| format!("{} failed: {error}", probe[0]))
    };
    let too_many = |what: &str, key: &str, n: i64, instead: &str| {
        Err(format!(
            "{name} {key} would read {n} {what}, more than the {MAX_ITEMS} a check reads; use {instead} instead"
        ))
    };
    match (name.as_str(), words.len()) {
        ("GET", 2) => {
            let length = count(&["STRLEN", &words[1]]).await?;
            if length as usize > read_limit {
                let key = words[1].clone();
                return Ok((vec!["GETRANGE".into(), key, "0".into(), (read_limit - 1).to_string()], true));
            }
        }
        ("HGET", 3) => {
            let length = count(&["HSTRLEN", &words[1], &words[2]]).await?;
            if length as usize > read_limit {
                return Err(format!(
                    "HGET {} {} would read {length} bytes, more than the check may show ([commands] max_output); \
                     use HSTRLEN to check its size instead",
                    words[1], words[2]
                ));
            }
        }
        ("LRANGE", 4) | ("ZRANGE", 4) => {
            let size = count(&[if name == "LRANGE" { "LLEN" } else { "ZCARD" }, &words[1]]).await?;
            if let (Ok(start), Ok(stop)) = (words[2].parse::<i64>(), words[3].parse::<i64>()) {
                let from = if start < 0 { (size + start).max(0) } else { start };
                let to = if stop < 0 { size + stop } else { stop.min(size - 1) };
                if to - from + 1 > MAX_ITEMS {
                    words[2] = from.to_string();
                    words[3] = (from + MAX_ITEMS - 1).to_string();
                    return Ok((words, true));
                }
            }
        }
        ("ZRANGE", _)
            if words.iter().any(|word| matches!(word.to_ascii_uppercase().as_str(), "BYSCORE" | "BYLEX"))
                && !has(&words, "LIMIT") =>
        {
            words.extend(["LIMIT".to_string(), "0".to_string(), MAX_ITEMS.to_string()]);
        }
        ("XRANGE", _) | ("XREVRANGE", _) if !has(&words, "COUNT") => {
            words.extend(["COUNT".to_string(), MAX_ITEMS.to_string()]);
        }
        ("HGETALL", 2) | ("HKEYS", 2) => {
            let fields = count(&["HLEN", &words[1]]).await?;
            if fields > MAX_ITEMS {
                return too_many("fields", &words[1], fields, "HLEN, HGET or HMGET");
            }
        }
        ("SMEMBERS", 2) => {
            let members = count(&["SCARD", &words[1]]).await?;
            if members > MAX_ITEMS {
                return too_many("members", &words[1], members, "SCARD or SISMEMBER");
            }
        }
        _ => {}
    }
    Ok((words, false))
}

/// Whether `words` holds the option `name`, in any case.
fn has(words: &[String], name: &str) -> bool {
    words.iter().any(|word| word.eq_ignore_ascii_case(name))
}

/// Whether `words` end with the `LIMIT`/`COUNT` [`bounded`] added, so a full reply may be cut.
fn appended_limit(words: &[String]) -> bool {
    words.last().is_some_and(|last| last == &MAX_ITEMS.to_string())
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
