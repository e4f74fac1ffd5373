//! `kind = "sql"` on PostgreSQL, MySQL/MariaDB and SQLite: one query with bind parameters; sees
//! `rows`, `row` (the first) and `count`. Checks run read-only; arguments never enter SQL text.

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};
use sqlx::{AssertSqlSafe, Column, Row, TypeInfo, ValueRef};

use super::targets::SqlPool;
use super::{Check, CheckContext, Observation, Status, summary_source};
use crate::config::TargetKind;
use crate::runbook::{Args, Encoding, Fields, Template};

/// Rows beyond this are not kept; `count` still says how many came back.
const MAX_ROWS: usize = 1000;

#[derive(Debug)]
pub struct SqlCheck {
    target: String,
    query: String,
    params: Vec<Template>,
}

impl SqlCheck {
    pub const KEYS: &'static [&'static str] = &["target", "query", "params"];
    pub const VARIABLES: &'static [&'static str] = &["rows", "row", "count"];

    pub fn from_fields(fields: &mut Fields<'_>) -> Option<Self> {
        let raw = fields.raw;
        let target = fields.required_target(&[TargetKind::Postgres, TargetKind::Mysql, TargetKind::Sqlite]);
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
        Some(SqlCheck { target: target?, query: query.get_ref().clone(), params })
    }

    fn bound_values(&self, args: &Args) -> Vec<String> {
        self.params.iter().map(|param| param.render(args, Encoding::Raw)).collect()
    }
}

impl Check for SqlCheck {
    fn run<'a>(&'a self, context: &'a CheckContext<'a>) -> BoxFuture<'a, Result<Observation, String>> {
        Box::pin(async move {
            let pool = context.targets.sql_pool(&self.target, !context.allow_writes).await?;
            let values = self.bound_values(context.args);
            let fail = |error: sqlx::Error| format!("query on '{}' failed: {}", self.target, describe_error(&error));
            let (rows, count) = match pool {
                SqlPool::Postgres(pool) => {
                    let mut transaction = pool.begin().await.map_err(fail)?;
                    if !context.allow_writes {
                        sqlx::query("SET TRANSACTION READ ONLY").execute(&mut *transaction).await.map_err(fail)?;
                    }
                    let mut query = sqlx::query(AssertSqlSafe(self.query.clone()));
                    for value in &values {
                        query = query.bind(value.clone());
                    }
                    let rows = query.fetch_all(&mut *transaction).await.map_err(fail)?;
                    if context.allow_writes {
                        transaction.commit().await.map_err(fail)?;
                    }
                    (rows.iter().take(MAX_ROWS).map(postgres_row).collect::<Vec<_>>(), rows.len())
                }
                SqlPool::Mysql(pool) => {
                    let mut connection = pool.acquire().await.map_err(fail)?;
                    let begin = if context.allow_writes { "START TRANSACTION" } else { "START TRANSACTION READ ONLY" };
                    sqlx::query(begin).execute(&mut *connection).await.map_err(fail)?;
                    let mut query = sqlx::query(AssertSqlSafe(self.query.clone()));
                    for value in &values {
                        query = query.bind(value.clone());
                    }
                    let result = query.fetch_all(&mut *connection).await;
                    let end = if context.allow_writes && result.is_ok() { "COMMIT" } else { "ROLLBACK" };
                    sqlx::query(end).execute(&mut *connection).await.map_err(fail)?;
                    let rows = result.map_err(fail)?;
                    (rows.iter().take(MAX_ROWS).map(mysql_row).collect::<Vec<_>>(), rows.len())
                }
                SqlPool::Sqlite(pool) => {
                    let mut query = sqlx::query(AssertSqlSafe(self.query.clone()));
                    for value in &values {
                        query = query.bind(value.clone());
                    }
                    let rows = query.fetch_all(&pool).await.map_err(fail)?;
                    (rows.iter().take(MAX_ROWS).map(sqlite_row).collect::<Vec<_>>(), rows.len())
                }
            };
            let first = rows.first().cloned().unwrap_or_default();
            let summary = match count {
                0 => "no rows".to_string(),
                1 => format!("1 row: {}", compact_row(&first)),
                n => format!("{n} rows; first: {}", compact_row(&first)),
            };
            Ok(Observation::new(summary, Status::Ok, json!({"rows": rows, "row": first, "count": count})))
        })
    }

    fn describe(&self, args: &Args) -> String {
        let values = self.bound_values(args);
        if values.is_empty() {
            format!("SQL on {}: {}", self.target, self.query)
        } else {
            format!("SQL on {}: {} with parameters {:?}", self.target, self.query, values)
        }
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
