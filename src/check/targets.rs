//! The named targets of `firebell.toml` as live connections: SQL pools, Redis connections and
//! one HTTP client, created on first use and shared by every check afterwards.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::{MySqlConnectOptions, MySqlPool, MySqlPoolOptions};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use tokio::sync::Mutex;

use crate::config::{Config, Secret, TargetKind};

/// How long a query waits for a free connection; the check's own timeout bounds the rest.
const SQL_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// One target's settings, detached from the config file.
#[derive(Debug, Clone)]
pub struct TargetInfo {
    pub kind: TargetKind,
    pub url: Secret,
    pub headers: BTreeMap<String, Secret>,
}

/// A pool for one SQL target.
#[derive(Clone)]
pub enum SqlPool {
    Postgres(PgPool),
    Mysql(MySqlPool),
    Sqlite(SqlitePool),
}

impl SqlPool {
    /// Whose SQL this database reads.
    pub fn dialect(&self) -> super::sql::Dialect {
        match self {
            SqlPool::Postgres(_) => super::sql::Dialect::Postgres,
            SqlPool::Mysql(_) => super::sql::Dialect::Mysql,
            SqlPool::Sqlite(_) => super::sql::Dialect::Sqlite,
        }
    }
}

pub struct Targets {
    targets: BTreeMap<String, TargetInfo>,
    sql: Mutex<HashMap<String, SqlPool>>,
    redis: Mutex<HashMap<String, redis::aio::MultiplexedConnection>>,
    http: reqwest::Client,
}

impl std::fmt::Debug for Targets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Targets").field("names", &self.targets.keys().collect::<Vec<_>>()).finish()
    }
}

impl Targets {
    pub fn new(targets: BTreeMap<String, TargetInfo>) -> Self {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("firebell/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("the HTTP client builds with rustls");
        Self { targets, sql: Mutex::new(HashMap::new()), redis: Mutex::new(HashMap::new()), http }
    }

    pub fn from_config(config: &Config) -> Self {
        let targets = config
            .targets
            .iter()
            .map(|(name, target)| {
                let info = TargetInfo {
                    kind: target.kind,
                    url: target.url.get_ref().clone(),
                    headers: target.headers.clone(),
                };
                (name.clone(), info)
            })
            .collect();
        Self::new(targets)
    }

    /// The HTTP client checks share; it never follows redirects (3xx is a verdict, not a hop).
    pub fn http_client(&self) -> &reqwest::Client {
        &self.http
    }

    /// The target's settings, or a message saying how to configure it.
    pub fn get(&self, name: &str) -> Result<&TargetInfo, String> {
        let info = self.targets.get(name).ok_or_else(|| {
            format!("target '{name}' is not configured: add [targets.{name}] with kind and url to firebell.toml")
        })?;
        if info.url.is_empty() {
            return Err(format!(
                "target '{name}' has no url: set it in firebell.toml [targets.{name}] (or the variable it names)"
            ));
        }
        Ok(info)
    }

    /// The SQL pool of `name`, created on first use; connecting happens on the first query.
    /// Read-only pools (for checks) and writable ones (for remediations) are kept apart.
    pub async fn sql_pool(&self, name: &str, read_only: bool) -> Result<SqlPool, String> {
        let info = self.get(name)?;
        let key = format!("{name}#{}", if read_only { "ro" } else { "rw" });
        let mut pools = self.sql.lock().await;
        if let Some(pool) = pools.get(&key) {
            return Ok(pool.clone());
        }
        let timeout = SQL_ACQUIRE_TIMEOUT;
        let url = info.url.expose();
        let invalid = |error: sqlx::Error| format!("target '{name}': invalid connection string: {error}");
        // Pools for checks are read-only in the database itself, on every connection, beneath the
        // read-only transaction each check opens: the server refuses a write whatever the query.
        let pool = match info.kind {
            TargetKind::Postgres => {
                let mut options = PgConnectOptions::from_str(url).map_err(invalid)?.application_name("firebell");
                if read_only {
                    options = options.options([("default_transaction_read_only", "on")]);
                }
                SqlPool::Postgres(
                    PgPoolOptions::new().max_connections(4).acquire_timeout(timeout).connect_lazy_with(options),
                )
            }
            TargetKind::Mysql => {
                let options = MySqlConnectOptions::from_str(url).map_err(invalid)?;
                let mut pool_options = MySqlPoolOptions::new().max_connections(4).acquire_timeout(timeout);
                if read_only {
                    // A read-only transaction is not enough on MySQL/MariaDB: DDL commits it
                    // implicitly and runs in the session's mode. A read-only session refuses DDL
                    // too ("Cannot execute statement in a READ ONLY transaction").
                    pool_options = pool_options.after_connect(|connection, _| {
                        Box::pin(async move {
                            sqlx::query("SET SESSION TRANSACTION READ ONLY").execute(connection).await.map(|_| ())
                        })
                    });
                }
                SqlPool::Mysql(pool_options.connect_lazy_with(options))
            }
            TargetKind::Sqlite => {
                // Checks only read: open read-only so a check cannot create or change the file,
                // and query_only so the connection refuses changes to attached databases too.
                let mut options = SqliteConnectOptions::from_str(url).map_err(invalid)?.read_only(read_only);
                if read_only {
                    options = options.pragma("query_only", "ON");
                }
                SqlPool::Sqlite(
                    SqlitePoolOptions::new().max_connections(2).acquire_timeout(timeout).connect_lazy_with(options),
                )
            }
            other => return Err(format!("target '{name}' is a {} target, not a SQL database", other.name())),
        };
        pools.insert(key, pool.clone());
        Ok(pool)
    }

    /// A multiplexed Redis connection to `name`, opened on first use and reused.
    pub async fn redis_connection(&self, name: &str) -> Result<redis::aio::MultiplexedConnection, String> {
        let info = self.get(name)?;
        if info.kind != TargetKind::Redis {
            return Err(format!("target '{name}' is a {} target, not Redis", info.kind.name()));
        }
        let mut connections = self.redis.lock().await;
        if let Some(connection) = connections.get(name) {
            return Ok(connection.clone());
        }
        let client = redis::Client::open(info.url.expose())
            .map_err(|error| format!("target '{name}': invalid Redis URL: {error}"))?;
        let connection = client
            .get_multiplexed_async_connection()
            .await
            .map_err(|error| format!("cannot connect to Redis target '{name}': {error}"))?;
        connections.insert(name.to_string(), connection.clone());
        Ok(connection)
    }

    /// Forgets a Redis connection that failed, so the next check reconnects.
    pub async fn drop_redis_connection(&self, name: &str) {
        self.redis.lock().await.remove(name);
    }
}
