//! `kind = "sql"` on PostgreSQL, MySQL/MariaDB and SQLite: one query with bind parameters; sees
//! `rows`, `row` (the first) and `count`. Checks run read-only; arguments never enter SQL text.

mod statement;

use serde::Deserialize;
use std::time::{Duration, Instant};
use toml::Spanned;

use futures::TryStreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde_json::{Map, Value, json};
use sqlx::pool::PoolConnection;
use sqlx::{AssertSqlSafe, Column, Row, TypeInfo, ValueRef};

use super::targets::SqlPool;
use super::{Check, CheckContext, Fields, Observation, Status, summary_source};
use crate::config::TargetKind;
use crate::template::{Args, Encoding, Template};
pub use statement::Dialect;

/// Rows beyond this are not read: the stream stops and the output says the rows were cut.
const MAX_ROWS: usize = 1000;
/// What the kept rows may hold, as JSON text; reading stops past it. One row is still read whole
/// by the driver, so a single huge value is bounded only by the server. // max_output: the
/// generic `[commands] max_output` cap applies on top of this.
const MAX_KEPT_BYTES: usize = 1024 * 1024;
/// How many SQLite virtual-machine steps pass between two looks at the check's deadline.
const SQLITE_STEPS_BETWEEN_DEADLINE_CHECKS: i32 = 1000;

/// The keys of a `kind = "sql"` table, besides those every check has.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Keys {
    target: Option<Spanned<String>>,
    query: Option<Spanned<String>>,
    params: Option<Spanned<Vec<String>>>,
}

#[derive(Debug)]
pub struct SqlCheck {
    target: String,
    query: String,
    params: Vec<Template>,
    /// The check's timeout, which the server enforces too (`statement_timeout`,
    /// `max_statement_time`), so a timed-out query does not keep running there.
    timeout: Duration,
}

impl SqlCheck {
    pub const VARIABLES: &'static [&'static str] = &["rows", "row", "count", "truncated"];

    pub fn from_fields(fields: &mut Fields<'_>) -> Option<Self> {
        let raw: Keys = fields.keys()?;
        let target =
            fields.required_target(&raw.target, &[TargetKind::Postgres, TargetKind::Mysql, TargetKind::Sqlite]);
        let params = fields.template_list("params", &raw.params).unwrap_or_default();
        let Some(query) = &raw.query else {
            fields.error(
                fields.kind_span(),
                "a sql check needs `query` (placeholders $1, $2 … or ? for MySQL, values in `params`)",
            );
            return None;
        };
        if let Some(start) = query.get_ref().find("{{") {
            let end = query.get_ref()[start..].find("}}").map(|end| start + end + 2).unwrap_or(query.get_ref().len());
            let reference = &query.get_ref()[start..end];
            fields.error(
                query.span(),
                format!("query: '{reference}' inside SQL text: arguments reach SQL only as bind parameters; write $1 (or ? for MySQL) in the query and params = [\"{reference}\"]"),
            );
            return None;
        }
        if query.get_ref().trim().is_empty() {
            fields.error(query.span(), "query is empty");
            return None;
        }
        // The target's kind is not known here, so the dialect is checked again when the check runs.
        if fields.is_check
            && let Err(refusal) = statement::check_read_only_in_any_dialect(query.get_ref())
        {
            fields.error(query.span(), refusal.to_string());
            return None;
        }
        let timeout = fields.raw.timeout.as_ref().map(|timeout| timeout.get_ref().0).unwrap_or(super::DEFAULT_TIMEOUT);
        Some(SqlCheck { target: target?, query: query.get_ref().clone(), params, timeout })
    }

    fn bound_values(&self, args: &Args) -> Vec<String> {
        self.params.iter().map(|param| param.render(args, Encoding::Raw)).collect()
    }

    /// What is left of the check's timeout, for the server's own limit (at least 1 ms: zero
    /// means "no limit" to both PostgreSQL and MariaDB).
    fn server_timeout(&self, started: Instant) -> Duration {
        self.timeout.saturating_sub(started.elapsed()).max(Duration::from_millis(1))
    }

    async fn run_postgres(
        &self,
        pool: &sqlx::PgPool,
        values: &[String],
        allow_writes: bool,
        started: Instant,
    ) -> Result<KeptRows, sqlx::Error> {
        let mut session = Session::new(pool.acquire().await?);
        let begin = if allow_writes { "BEGIN" } else { "BEGIN TRANSACTION READ ONLY" };
        sqlx::query(begin).execute(&mut **session).await?;
        // SET LOCAL: the limit ends with the transaction and never reaches the pool's next user.
        let milliseconds = self.server_timeout(started).as_millis().to_string();
        sqlx::query("SELECT set_config('statement_timeout', $1, true)")
            .bind(milliseconds)
            .execute(&mut **session)
            .await?;
        let mut query = sqlx::query(AssertSqlSafe(self.query.clone()));
        for value in values {
            query = query.bind(value.clone());
        }
        let kept = keep_rows(query.fetch(&mut **session), postgres_row).await?;
        if kept.cut.is_none() {
            let end = if allow_writes { "COMMIT" } else { "ROLLBACK" };
            sqlx::query(end).execute(&mut **session).await?;
            session.finished();
        }
        Ok(kept)
    }

    async fn run_mysql(
        &self,
        pool: &sqlx::MySqlPool,
        values: &[String],
        allow_writes: bool,
        started: Instant,
    ) -> Result<KeptRows, sqlx::Error> {
        let mut session = Session::new(pool.acquire().await?);
        let limit = self.server_timeout(started);
        // MariaDB names the limit max_statement_time (seconds); MySQL max_execution_time (ms).
        let mariadb = format!("SET SESSION max_statement_time = {:.3}", limit.as_secs_f64());
        if let Err(error) = sqlx::query(AssertSqlSafe(mariadb)).execute(&mut **session).await {
            if !is_unknown_variable(&error) {
                return Err(error);
            }
            let mysql = format!("SET SESSION max_execution_time = {}", limit.as_millis());
            sqlx::query(AssertSqlSafe(mysql)).execute(&mut **session).await?;
        }
        // The session is read-only too (targets.rs): DDL commits a read-only transaction
        // implicitly and would then run in the session's own mode.
        let begin = if allow_writes { "START TRANSACTION" } else { "START TRANSACTION READ ONLY" };
        sqlx::query(begin).execute(&mut **session).await?;
        let mut query = sqlx::query(AssertSqlSafe(self.query.clone()));
        for value in values {
            query = query.bind(value.clone());
        }
        let kept = keep_rows(query.fetch(&mut **session), mysql_row).await;
        let finished_cleanly = matches!(&kept, Ok(kept) if kept.cut.is_none());
        if finished_cleanly || kept.is_err() {
            let end = if allow_writes && kept.is_ok() { "COMMIT" } else { "ROLLBACK" };
            sqlx::query(end).execute(&mut **session).await?;
            session.finished();
        }
        kept
    }

    async fn run_sqlite(
        &self,
        pool: &sqlx::SqlitePool,
        values: &[String],
        started: Instant,
    ) -> Result<KeptRows, sqlx::Error> {
        let mut session = Session::new(pool.acquire().await?);
        // SQLite runs in this process: stop its work at the deadline rather than let it run on
        // in the connection's thread after the check was given up.
        let deadline = started + self.timeout;
        session
            .lock_handle()
            .await?
            .set_progress_handler(SQLITE_STEPS_BETWEEN_DEADLINE_CHECKS, move || Instant::now() < deadline);
        let mut query = sqlx::query(AssertSqlSafe(self.query.clone()));
        for value in values {
            query = query.bind(value.clone());
        }
        let kept = keep_rows(query.fetch(&mut **session), sqlite_row).await?;
        if kept.cut.is_none() {
            session.lock_handle().await?.remove_progress_handler();
            session.finished();
        }
        Ok(kept)
    }
}

/// MySQL's answer to a MariaDB-only variable (ER_UNKNOWN_SYSTEM_VARIABLE).
fn is_unknown_variable(error: &sqlx::Error) -> bool {
    const ER_UNKNOWN_SYSTEM_VARIABLE: u16 = 1193;
    match error {
        sqlx::Error::Database(database) => database
            .try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>()
            .is_some_and(|mysql| mysql.number() == ER_UNKNOWN_SYSTEM_VARIABLE),
        _ => false,
    }
}

/// A pooled connection that goes back to the pool only when the check finished with it: one
/// left mid-result (rows cut short, or the check timed out and was dropped) or mid-transaction
/// is closed instead, so the next check never inherits its unread rows or open transaction.
struct Session<DB: sqlx::Database> {
    connection: PoolConnection<DB>,
    finished: bool,
}

impl<DB: sqlx::Database> Session<DB> {
    fn new(connection: PoolConnection<DB>) -> Self {
        Self { connection, finished: false }
    }

    fn finished(&mut self) {
        self.finished = true;
    }
}

impl<DB: sqlx::Database> std::ops::Deref for Session<DB> {
    type Target = PoolConnection<DB>;

    fn deref(&self) -> &Self::Target {
        &self.connection
    }
}

impl<DB: sqlx::Database> std::ops::DerefMut for Session<DB> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.connection
    }
}

impl<DB: sqlx::Database> Drop for Session<DB> {
    fn drop(&mut self) {
        if !self.finished {
            self.connection.close_on_drop();
        }
    }
}

/// Why fewer rows were kept than the query returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    Rows,
    Bytes,
}

#[derive(Debug, Default)]
struct KeptRows {
    rows: Vec<Map<String, Value>>,
    cut: Option<Cut>,
}

/// Reads rows as they arrive and stops at `MAX_ROWS` rows or `MAX_KEPT_BYTES`, so what a query
/// returns never has to fit in memory at once.
async fn keep_rows<R>(
    mut stream: BoxStream<'_, Result<R, sqlx::Error>>,
    to_json: fn(&R) -> Map<String, Value>,
) -> Result<KeptRows, sqlx::Error> {
    let mut kept = KeptRows::default();
    let mut kept_bytes = 0usize;
    while let Some(row) = stream.try_next().await? {
        if kept.rows.len() == MAX_ROWS {
            kept.cut = Some(Cut::Rows);
            break;
        }
        let row = to_json(&row);
        kept_bytes += serde_json::to_string(&row).map(|text| text.len()).unwrap_or(0);
        if kept_bytes > MAX_KEPT_BYTES {
            kept.cut = Some(Cut::Bytes);
            break;
        }
        kept.rows.push(row);
    }
    Ok(kept)
}

impl Check for SqlCheck {
    fn run<'a>(&'a self, context: &'a CheckContext<'a>) -> BoxFuture<'a, Result<Observation, String>> {
        Box::pin(async move {
            let started = Instant::now();
            let pool = context.targets.sql_pool(&self.target, !context.allow_writes).await?;
            // The load could not know the target's dialect; now it is known.
            if !context.allow_writes
                && let Err(refusal) = statement::check_read_only(&self.query, pool.dialect())
            {
                return Err(format!("query on '{}' refused: {refusal}", self.target));
            }
            let values = self.bound_values(context.args);
            let fail = |error: sqlx::Error| format!("query on '{}' failed: {}", self.target, describe_error(&error));
            let kept = match &pool {
                SqlPool::Postgres(pool) => self.run_postgres(pool, &values, context.allow_writes, started).await,
                SqlPool::Mysql(pool) => self.run_mysql(pool, &values, context.allow_writes, started).await,
                SqlPool::Sqlite(pool) => self.run_sqlite(pool, &values, started).await,
            }
            .map_err(fail)?;
            let rows = kept.rows;
            let count = rows.len();
            let first = rows.first().cloned().unwrap_or_default();
            let cut = match kept.cut {
                None => String::new(),
                Some(Cut::Rows) => format!(" (cut: the query returned more; a check reads the first {MAX_ROWS})"),
                Some(Cut::Bytes) => {
                    format!(" (cut: the rows passed {} KiB; a check reads no more)", MAX_KEPT_BYTES / 1024)
                }
            };
            let summary = match count {
                0 => format!("no rows{cut}"),
                1 => format!("1 row{cut}: {}", compact_row(&first)),
                n => format!("{n} rows{cut}; first: {}", compact_row(&first)),
            };
            let data = json!({"rows": rows, "row": first, "count": count, "truncated": kept.cut.is_some()});
            Ok(Observation::new(summary, Status::Ok, data))
        })
    }

    /// The statement as written, then each bound parameter by position, quoted.
    fn describe(&self, args: &Args) -> String {
        let values = self.bound_values(args);
        let mut text = format!("SQL on {}:\n{}", self.target, self.query);
        if !values.is_empty() {
            let params: Vec<String> = values
                .iter()
                .enumerate()
                .map(|(index, value)| format!("${} = {}", index + 1, super::http::quoted(value)))
                .collect();
            text.push_str(&format!("\nparameters: {}", params.join(", ")));
        }
        text
    }

    fn bound_target(&self) -> Option<&str> {
        Some(self.target_name())
    }
}

impl SqlCheck {
    /// The target it queries, whose settings an approval binds too.
    pub fn target_name(&self) -> &str {
        &self.target
    }
}

/// `depth=42, state=idle`, cut to fit on one line.
fn compact_row(row: &Map<String, Value>) -> String {
    let text = row
        .iter()
        .map(|(name, value)| match value {
            Value::String(text) => format!("{name}={text}"),
            other => format!("{name}={other}"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    summary_source(&text).replace('\n', " ")
}

/// The database's own words, without sqlx's wrapping.
fn describe_error(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(database) => database.message().to_string(),
        sqlx::Error::PoolTimedOut => "timed out waiting for a connection (is the database reachable?)".to_string(),
        sqlx::Error::Io(io) => format!("cannot connect: {io}"),
        other => super::http::root_cause(other),
    }
}

fn decimal_json(decimal: rust_decimal::Decimal) -> Value {
    use rust_decimal::prelude::ToPrimitive;
    if decimal.fract().is_zero()
        && let Some(int) = decimal.to_i64()
    {
        return json!(int);
    }
    decimal.to_f64().map(|float| json!(float)).unwrap_or_else(|| json!(decimal.to_string()))
}

fn unsupported(type_name: &str) -> Value {
    Value::String(format!("<{type_name}: cast this column to text in the query>"))
}

fn postgres_row(row: &sqlx::postgres::PgRow) -> Map<String, Value> {
    let mut map = Map::new();
    for (index, column) in row.columns().iter().enumerate() {
        let type_name = column.type_info().name().to_string();
        let is_null = row.try_get_raw(index).map(|raw| raw.is_null()).unwrap_or(true);
        let value = if is_null {
            Value::Null
        } else {
            let decoded: Result<Value, sqlx::Error> = match type_name.as_str() {
                "BOOL" => row.try_get::<bool, _>(index).map(Value::from),
                "INT2" => row.try_get::<i16, _>(index).map(Value::from),
                "INT4" => row.try_get::<i32, _>(index).map(Value::from),
                "INT8" => row.try_get::<i64, _>(index).map(Value::from),
                "OID" => row.try_get::<sqlx::postgres::types::Oid, _>(index).map(|oid| Value::from(oid.0)),
                "FLOAT4" => row.try_get::<f32, _>(index).map(|f| json!(f)),
                "FLOAT8" => row.try_get::<f64, _>(index).map(|f| json!(f)),
                "NUMERIC" => row.try_get::<rust_decimal::Decimal, _>(index).map(decimal_json),
                "TEXT" | "VARCHAR" | "NAME" | "BPCHAR" | "CHAR" | "UNKNOWN" | "CITEXT" => {
                    row.try_get::<String, _>(index).map(Value::from)
                }
                "TIMESTAMPTZ" => {
                    row.try_get::<chrono::DateTime<chrono::Utc>, _>(index).map(|t| Value::from(t.to_rfc3339()))
                }
                "TIMESTAMP" => row.try_get::<chrono::NaiveDateTime, _>(index).map(|t| Value::from(t.to_string())),
                "DATE" => row.try_get::<chrono::NaiveDate, _>(index).map(|t| Value::from(t.to_string())),
                "TIME" => row.try_get::<chrono::NaiveTime, _>(index).map(|t| Value::from(t.to_string())),
                "JSON" | "JSONB" => row.try_get::<Value, _>(index),
                "INTERVAL" => row.try_get::<sqlx::postgres::types::PgInterval, _>(index).map(|interval| {
                    let seconds = interval.months as f64 * 30.0 * 86400.0
                        + interval.days as f64 * 86400.0
                        + interval.microseconds as f64 / 1e6;
                    json!(seconds)
                }),
                "TEXT[]" | "VARCHAR[]" | "NAME[]" => row.try_get::<Vec<String>, _>(index).map(|v| json!(v)),
                "INT4[]" => row.try_get::<Vec<i32>, _>(index).map(|v| json!(v)),
                "INT8[]" => row.try_get::<Vec<i64>, _>(index).map(|v| json!(v)),
                _ => Ok(unsupported(&type_name)),
            };
            decoded.unwrap_or_else(|_| unsupported(&type_name))
        };
        map.insert(column.name().to_string(), value);
    }
    map
}

fn mysql_row(row: &sqlx::mysql::MySqlRow) -> Map<String, Value> {
    let mut map = Map::new();
    for (index, column) in row.columns().iter().enumerate() {
        let type_name = column.type_info().name().to_string();
        let is_null = row.try_get_raw(index).map(|raw| raw.is_null()).unwrap_or(true);
        let value = if is_null {
            Value::Null
        } else {
            let decoded: Result<Value, sqlx::Error> = match type_name.as_str() {
                "BOOLEAN" => row.try_get::<bool, _>(index).map(Value::from),
                "TINYINT" | "SMALLINT" | "MEDIUMINT" | "INT" | "BIGINT" | "YEAR" => {
                    row.try_get_unchecked::<i64, _>(index).map(Value::from)
                }
                "TINYINT UNSIGNED" | "SMALLINT UNSIGNED" | "MEDIUMINT UNSIGNED" | "INT UNSIGNED"
                | "BIGINT UNSIGNED" => row.try_get_unchecked::<u64, _>(index).map(Value::from),
                "FLOAT" => row.try_get::<f32, _>(index).map(|f| json!(f)),
                "DOUBLE" => row.try_get::<f64, _>(index).map(|f| json!(f)),
                "DECIMAL" => row.try_get::<rust_decimal::Decimal, _>(index).map(decimal_json),
                "DATETIME" => row.try_get::<chrono::NaiveDateTime, _>(index).map(|t| Value::from(t.to_string())),
                "TIMESTAMP" => {
                    row.try_get::<chrono::DateTime<chrono::Utc>, _>(index).map(|t| Value::from(t.to_rfc3339()))
                }
                "DATE" => row.try_get::<chrono::NaiveDate, _>(index).map(|t| Value::from(t.to_string())),
                "TIME" => row.try_get::<chrono::NaiveTime, _>(index).map(|t| Value::from(t.to_string())),
                "JSON" => row.try_get::<Value, _>(index),
                _ => row.try_get::<String, _>(index).map(Value::from).or_else(|_| {
                    row.try_get_unchecked::<Vec<u8>, _>(index)
                        .map(|bytes| Value::from(String::from_utf8_lossy(&bytes).into_owned()))
                }),
            };
            decoded.unwrap_or_else(|_| unsupported(&type_name))
        };
        map.insert(column.name().to_string(), value);
    }
    map
}

fn sqlite_row(row: &sqlx::sqlite::SqliteRow) -> Map<String, Value> {
    let mut map = Map::new();
    for (index, column) in row.columns().iter().enumerate() {
        // SQLite types values, not columns: ask the value what it holds.
        let storage = match row.try_get_raw(index) {
            Ok(raw) if raw.is_null() => "NULL".to_string(),
            Ok(raw) => raw.type_info().name().to_string(),
            Err(_) => "NULL".to_string(),
        };
        let decoded: Result<Value, sqlx::Error> = match storage.as_str() {
            "NULL" => Ok(Value::Null),
            "INTEGER" | "BOOLEAN" => row.try_get_unchecked::<i64, _>(index).map(Value::from),
            "REAL" | "NUMERIC" => row.try_get_unchecked::<f64, _>(index).map(|f| json!(f)),
            "BLOB" => row
                .try_get_unchecked::<Vec<u8>, _>(index)
                .map(|bytes| Value::from(String::from_utf8_lossy(&bytes).into_owned())),
            _ => row.try_get_unchecked::<String, _>(index).map(Value::from),
        };
        map.insert(column.name().to_string(), decoded.unwrap_or_else(|_| unsupported(&storage)));
    }
    map
}
