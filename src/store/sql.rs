//! The SQL store for both backends. The schema and nearly every statement are the same on SQLite
//! and PostgreSQL (integers, text, `$N` placeholders), so one implementation over sqlx's `Any`
//! driver serves both; the differences — how a write transaction begins, row locks, connection
//! settings, the migration folder, multi-row statements, reserving ids — are the `Backend`
//! matches below and in [`ingest`] (a batch of alerts).

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, AssertSqlSafe, Executor, Row, Transaction};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{
    AlertOutcome, AlertStore, AuditEntry, ConsoleMessage, ConsoleStore, DueTimer, FiredStep, IncomingAlert, NewRequest,
    NewTimer, OutboxItem, OutboxKind, OutboxStore, Pruned, RemediationRequest, RemediationStore, StepResolver, Store,
    StoreError, Vote, VoteOutcome, from_millis, millis,
};
use crate::config::Severity;
use crate::incident::{ChatRef, Incident, IncidentStatus, NewIncident, Resolution, TimelineEvent, TimelineKind};

mod ingest;
mod monitors;
mod script;
mod tasks;

use script::Script;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// `(…), (…)` placeholders for `rows` rows of `columns` values. SQLite gets anonymous `?`:
    /// sqlx looks each `$N` up by name, and SQLite's lookup walks every name, which made a
    /// 1,000-value statement spend most of its time there.
    fn values(self, rows: usize, columns: usize) -> String {
        let mut sql = String::with_capacity(rows * columns * 5);
        for row in 0..rows {
            sql.push_str(if row == 0 { "(" } else { ", (" });
            for column in 0..columns {
                if column > 0 {
                    sql.push_str(", ");
                }
                match self {
                    Backend::Sqlite => sql.push('?'),
                    Backend::Postgres => {
                        let _ = std::fmt::Write::write_fmt(&mut sql, format_args!("${}", row * columns + column + 1));
                    }
                }
            }
            sql.push(')');
        }
        sql
    }

    /// The `n`th parameter of a statement (from 1), for statements that go into a [`Script`]:
    /// `?` on SQLite, whose values are bound in order (a `$N` there would name the `N`th value of
    /// the whole script), `$n` on PostgreSQL.
    fn parameter(self, n: usize) -> String {
        match self {
            Backend::Sqlite => "?".to_string(),
            Backend::Postgres => format!("${n}"),
        }
    }

    /// Splits rows for multi-row statements. SQLite: up to 500 rows each. PostgreSQL: chunks of
    /// 256, 64, 16, 4 or 1 rows, so a handful of prepared statements serve every batch instead
    /// of one new statement (prepared, then evicted from the cache) per batch size.
    fn chunks<T>(self, rows: &[T]) -> Vec<&[T]> {
        let mut chunks = Vec::new();
        let mut rest = rows;
        while !rest.is_empty() {
            let length = match self {
                Backend::Sqlite => rest.len().min(500),
                Backend::Postgres => [256, 64, 16, 4, 1].into_iter().find(|size| *size <= rest.len()).unwrap_or(1),
            };
            let (chunk, after) = rest.split_at(length);
            chunks.push(chunk);
            rest = after;
        }
        chunks
    }
}

pub struct SqlStore {
    /// Reads (and, on PostgreSQL, everything).
    pool: AnyPool,
    /// Writes: on SQLite a pool of one connection, on PostgreSQL the same pool as `pool`.
    writer: AnyPool,
    backend: Backend,
    /// Names this process in `timers.done_by`, so a replica's work can be told apart.
    instance: String,
    /// SQLite: stops the background WAL checkpointer with the store.
    _checkpointer: Option<DropGuard>,
}

const INCIDENT_COLUMNS: &str = "id, title, severity, status, impact, commander, fingerprint, policy, declared_by, started_at, \
     acknowledged_at, acknowledged_by, resolved_at, resolved_by, root_cause, fix, prevention, alert_repeats, last_alert_at";

/// WAL size from which the background checkpointer copies the log into the database file.
const CHECKPOINT_FROM_BYTES: u64 = 1024 * 1024;
/// How often the checkpointer looks. An alert storm writes 50–100 MB of WAL a second, so it
/// must look often for the writer's own checkpoint never to come due.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(250);
/// The writer checkpoints (and waits for the fsyncs) itself only past this many WAL pages
/// (64 MiB), a backstop should the checkpointer fall behind. At SQLite's default of 1,000 pages
/// an alert storm reached it several times a second and the writer spent most of its time in
/// fsync; see docs/benchmarks.md.
const AUTOCHECKPOINT_PAGES: u32 = 16_384;

fn pool_options(backend: Backend, max_connections: u32, port: u16) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(Duration::from_secs(10))
        // A SQLite connection is a file handle that cannot drop out from under us, and the
        // check would cost a round trip to the connection's thread on every statement.
        .test_before_acquire(backend == Backend::Postgres)
        .after_connect(move |connection, _| {
            Box::pin(async move {
                match backend {
                    Backend::Sqlite => {
                        connection.execute("PRAGMA journal_mode = WAL").await?;
                        connection.execute("PRAGMA synchronous = NORMAL").await?;
                        connection.execute("PRAGMA busy_timeout = 10000").await?;
                        connection.execute("PRAGMA foreign_keys = ON").await?;
                        let autocheckpoint = format!("PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT_PAGES}");
                        connection.execute(AssertSqlSafe(autocheckpoint)).await?;
                        // Statement journals of multi-row inserts stay in memory instead of a
                        // temporary file created and deleted per statement.
                        connection.execute("PRAGMA temp_store = MEMORY").await?;
                    }
                    // A replica that dies or hangs inside a transaction gives up its claims
                    // (row locks) within this time, and another replica takes them over.
                    Backend::Postgres => {
                        super::nodelay::set_on_sockets_to(port);
                        connection.execute("SET idle_in_transaction_session_timeout = '30s'").await?;
                    }
                }
                Ok(())
            })
        })
}

/// The database file a `sqlite:` URL names, when it is a file.
fn sqlite_file(url: &str) -> Option<std::path::PathBuf> {
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = path.split('?').next().unwrap_or_default();
    (!path.is_empty() && !path.contains(":memory:")).then(|| std::path::PathBuf::from(path))
}

/// Copies the WAL into the database file from a reader connection, every `CHECKPOINT_EVERY`
/// while it holds more than `CHECKPOINT_FROM_BYTES`. Otherwise the commit that crosses the
/// automatic checkpoint's mark does the checkpoint and its fsyncs itself, and every write queued
/// behind it (an acknowledge click, an alert batch) waits for the disk. That automatic
/// checkpoint stays as the backstop (`AUTOCHECKPOINT_PAGES`); it finds little left to copy. An
/// idle store costs four `stat`s a second. Stops when the guard drops with the store.
fn spawn_checkpointer(readers: AnyPool, database: std::path::PathBuf) -> DropGuard {
    let mut wal = database.into_os_string();
    wal.push("-wal");
    let wal = std::path::PathBuf::from(wal);
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = stopped.cancelled() => return,
            }
            let size = tokio::fs::metadata(&wal).await.map(|meta| meta.len()).unwrap_or(0);
            if size < CHECKPOINT_FROM_BYTES {
                continue;
            }
            if let Err(error) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&readers).await {
                tracing::warn!(%error, "Checkpointing the SQLite WAL failed; the writer will do it later");
            }
        }
    });
    stop.drop_guard()
}

impl SqlStore {
    pub async fn connect(url: &str) -> Result<SqlStore, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else {
            return Err(StoreError::Database("store.url must start with sqlite: or postgres://".into()));
        };
        let (url, max_connections) = match backend {
            // Create the file when missing; one process writes, WAL lets readers go on meanwhile.
            Backend::Sqlite if !url.contains("mode=") => {
                (format!("{url}{}mode=rwc", if url.contains('?') { "&" } else { "?" }), 4)
            }
            Backend::Sqlite => (url.to_string(), 4),
            Backend::Postgres => (url.to_string(), 8),
        };
        let options = sqlx::any::AnyConnectOptions::from_str(&url).map_err(|error| {
            StoreError::Database(format!(
                "invalid store.url: {}",
                crate::redact::Redactor::new([url.clone()]).redact(&error.to_string())
            ))
        })?;
        let port = url::Url::parse(&url).ok().and_then(|url| url.port()).unwrap_or(5432);
        let opened = match backend {
            // SQLite lets one connection write at a time; writers queued inside SQLite wait in its
            // busy handler's sleeps (1, 2, 5 … 100 ms). One writer connection queues them here
            // instead, in order, and WAL lets the readers go on meanwhile. The readers connect
            // when first used, so start-up opens one connection, not two.
            Backend::Sqlite => pool_options(backend, 1, port).connect_with(options.clone()).await.map(|writer| {
                (pool_options(backend, max_connections, port).connect_lazy_with(options.clone()), writer)
            }),
            Backend::Postgres => pool_options(backend, max_connections, port)
                .connect_with(options)
                .await
                .map(|pool| (pool.clone(), pool)),
        };
        let (pool, writer) = opened.map_err(|error| {
            StoreError::Database(format!(
                "cannot open the store: {}",
                crate::redact::Redactor::new([url.clone()]).redact(&error.to_string())
            ))
        })?;
        let checkpointer = sqlite_file(&url)
            .filter(|_| backend == Backend::Sqlite)
            .map(|database| spawn_checkpointer(pool.clone(), database));
        let instance =
            format!("{}-{}", std::env::var("HOSTNAME").unwrap_or_else(|_| "firebell".into()), std::process::id());
        Ok(SqlStore { pool, writer, backend, instance, _checkpointer: checkpointer })
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        let migrated = match self.backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&self.writer).await,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&self.writer).await,
        };
        migrated.map_err(|error| StoreError::Database(format!("migrations failed: {error}")))
    }

    /// A write transaction. SQLite takes the write lock up front so two writers never deadlock
    /// upgrading a read lock.
    async fn begin(&self) -> Result<Transaction<'static, Any>, StoreError> {
        let transaction = match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.writer.begin().await?,
        };
        Ok(transaction)
    }

    /// The claim of rows a replica works on: on PostgreSQL they stay locked by this transaction
    /// until it commits, and another replica skips them (if this process dies, the database drops
    /// the locks and another takes them). SQLite's write lock already serialises.
    fn skip_locked(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        }
    }

    /// `FOR NO KEY UPDATE` on PostgreSQL: locks the incident against other state changes without
    /// blocking timeline inserts that reference it. SQLite's write lock already serialises.
    fn lock_incident(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR NO KEY UPDATE",
        }
    }

    async fn load_incident(
        &self,
        executor: &mut sqlx::AnyConnection,
        id: i64,
        lock: bool,
    ) -> Result<Incident, StoreError> {
        let suffix = if lock { self.lock_incident() } else { "" };
        let sql = format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1{suffix}");
        let row = sqlx::query(AssertSqlSafe(sql)).bind(id).fetch_optional(&mut *executor).await?;
        let row = row.ok_or(StoreError::NotFound(id))?;
        let mut incident = incident_from_row(&row)?;
        let events = sqlx::query("SELECT at, kind, actor, detail FROM timeline WHERE incident_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(&mut *executor)
            .await?;
        incident.timeline = events.iter().map(event_from_row).collect::<Result<_, _>>()?;
        let refs =
            sqlx::query("SELECT platform, channel, message FROM chat_refs WHERE incident_id = $1 ORDER BY platform")
                .bind(id)
                .fetch_all(&mut *executor)
                .await?;
        for reference in &refs {
            add_chat_ref(&mut incident, reference)?;
        }
        let sql = format!("SELECT {} FROM tasks WHERE incident_id = $1 ORDER BY position, id", tasks::TASK_COLUMNS);
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(id).fetch_all(&mut *executor).await?;
        let found = rows.iter().map(tasks::task_from_row).collect::<Result<Vec<_>, _>>()?;
        (incident.followups, incident.checklists) = crate::incident::tasks::split(found);
        Ok(incident)
    }

    /// Incidents by id, in the order given, with their timelines, chat references and tasks:
    /// four statements per 500 incidents rather than four per incident.
    async fn load_incidents(
        &self,
        executor: &mut sqlx::AnyConnection,
        ids: &[i64],
    ) -> Result<Vec<Incident>, StoreError> {
        let mut loaded: HashMap<i64, Incident> = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let list = self.backend.values(1, chunk.len());
            let statements = [
                format!("SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id IN {list}"),
                format!(
                    "SELECT incident_id, at, kind, actor, detail FROM timeline WHERE incident_id IN {list} ORDER BY id"
                ),
                format!(
                    "SELECT incident_id, platform, channel, message FROM chat_refs WHERE incident_id IN {list} \
                     ORDER BY platform"
                ),
                format!("SELECT {} FROM tasks WHERE incident_id IN {list} ORDER BY position, id", tasks::TASK_COLUMNS),
            ];
            let mut found: HashMap<i64, Vec<crate::incident::tasks::Task>> = HashMap::new();
            for (step, sql) in statements.into_iter().enumerate() {
                let query = chunk.iter().fold(sqlx::query(AssertSqlSafe(sql)), |query, id| query.bind(*id));
                for row in query.fetch_all(&mut *executor).await? {
                    if step == 0 {
                        let incident = incident_from_row(&row)?;
                        loaded.insert(incident.id, incident);
                        continue;
                    }
                    let Some(incident) = loaded.get_mut(&row.try_get::<i64, _>("incident_id")?) else { continue };
                    match step {
                        1 => incident.timeline.push(event_from_row(&row)?),
                        2 => add_chat_ref(incident, &row)?,
                        _ => found.entry(incident.id).or_default().push(tasks::task_from_row(&row)?),
                    }
                }
            }
            for (id, tasks) in found {
                if let Some(incident) = loaded.get_mut(&id) {
                    (incident.followups, incident.checklists) = crate::incident::tasks::split(tasks);
                }
            }
        }
        Ok(ids.iter().filter_map(|id| loaded.remove(id)).collect())
    }

    async fn insert_event(
        transaction: &mut sqlx::AnyConnection,
        id: i64,
        event: &TimelineEvent,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO timeline (incident_id, at, kind, actor, detail) VALUES ($1, $2, $3, $4, $5)")
            .bind(id)
            .bind(millis(event.at))
            .bind(event.kind.as_str())
            .bind(event.by.clone())
            .bind(event.detail.to_string())
            .execute(&mut *transaction)
            .await?;
        Ok(())
    }

    /// Queues a message about the incident for the chat adapters, in the caller's transaction;
    /// they render it from the incident as it is when they deliver.
    async fn enqueue(
        transaction: &mut sqlx::AnyConnection,
        id: i64,
        kind: OutboxKind,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO outbox (incident_id, kind, recipients, payload, created_at) VALUES ($1, $2, '[]', $3, $4)",
        )
        .bind(id)
        .bind(kind.as_str())
        .bind(json!({"incident_id": id}).to_string())
        .bind(millis(at))
        .execute(&mut *transaction)
        .await?;
        Ok(())
    }

    /// Adds `event` to an existing incident, and queues a chat message of kind `notice` with it.
    async fn record_event(&self, id: i64, event: &TimelineEvent, notice: Option<OutboxKind>) -> Result<(), StoreError> {
        let mut transaction = self.begin().await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM incidents WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *transaction)
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound(id));
        }
        Self::insert_event(&mut transaction, id, event).await?;
        if let Some(notice) = notice {
            Self::enqueue(&mut transaction, id, notice, event.at).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    /// Inserts an incident with its `declared` event, its timers and its notification.
    async fn insert_incident(
        &self,
        transaction: &mut sqlx::AnyConnection,
        new: &NewIncident,
        timers: &[NewTimer],
        at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        let id = Self::insert_incident_row(&mut *transaction, new, at).await?;
        Self::insert_event(&mut *transaction, id, &declared_event(new, timers.len(), at)).await?;
        let rows: Vec<(i64, &NewTimer)> = timers.iter().map(|timer| (id, timer)).collect();
        let mut script = Script::new(self.backend);
        self.timers_statements(&mut script, &rows);
        script.run(&mut *transaction).await?;
        Self::enqueue(&mut *transaction, id, OutboxKind::IncidentDeclared, at).await?;
        Ok(id)
    }

    async fn insert_incident_row(
        transaction: &mut sqlx::AnyConnection,
        new: &NewIncident,
        at: DateTime<Utc>,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(
            "INSERT INTO incidents (title, severity, status, impact, commander, fingerprint, policy, declared_by, started_at) \
             VALUES ($1, $2, 'triggered', $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(new.title.clone())
        .bind(new.severity.name())
        .bind(new.impact.clone())
        .bind(new.commander.clone())
        .bind(new.fingerprint.clone())
        .bind(new.policy.clone())
        .bind(new.declared_by.clone())
        .bind(millis(at))
        .fetch_one(&mut *transaction)
        .await?)
    }

    /// Adds `(incident, timer)` rows to the script, many per statement.
    fn timers_statements(&self, script: &mut Script, timers: &[(i64, &NewTimer)]) {
        for chunk in self.backend.chunks(timers) {
            let sql = format!(
                "INSERT INTO timers (incident_id, policy, step, round, fire_at) VALUES {}",
                self.backend.values(chunk.len(), 5)
            );
            script.statement(&sql);
            for (id, timer) in chunk {
                script
                    .bind(*id)
                    .bind(timer.policy.clone())
                    .bind(timer.step as i64)
                    .bind(i64::from(timer.round))
                    .bind(millis(timer.fire_at));
            }
        }
    }

    async fn load_request(
        &self,
        executor: &mut sqlx::AnyConnection,
        id: i64,
        lock: bool,
    ) -> Result<RemediationRequest, StoreError> {
        let suffix = if lock { self.lock_incident() } else { "" };
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM remediation_requests WHERE id = $1{suffix}");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&mut *executor)
            .await?
            .ok_or(StoreError::NoRequest(id))?;
        let mut request = request_from_row(&row)?;
        let votes =
            sqlx::query("SELECT voter, decision, at FROM remediation_votes WHERE request_id = $1 ORDER BY at, voter")
                .bind(id)
                .fetch_all(&mut *executor)
                .await?;
        request.votes = votes
            .iter()
            .map(|vote| {
                Ok(Vote {
                    voter: text(vote, "voter")?,
                    decision: text(vote, "decision")?,
                    at: from_millis(vote.try_get("at")?),
                })
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(request)
    }

    /// Writes the audit entry and, when the request belongs to an incident, its timeline event.
    async fn audit_request(
        transaction: &mut sqlx::AnyConnection,
        request: &RemediationRequest,
        actor: Option<&str>,
        kind: TimelineKind,
        detail: serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO audit_log (at, actor, action, request_id, incident_id, detail) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(millis(at))
            .bind(actor.map(str::to_string))
            .bind(kind.as_str())
            .bind(request.id)
            .bind(request.incident_id)
            .bind(detail.to_string())
            .execute(&mut *transaction)
            .await?;
        if let Some(incident_id) = request.incident_id {
            Self::insert_event(&mut *transaction, incident_id, &TimelineEvent::new(at, kind, actor, detail)).await?;
        }
        Ok(())
    }

    /// Ends up to 100 requests in `ending.state` whose `ending.since` is at or before
    /// `ending.before`: each becomes `ending.becomes` with its audit entry and timeline event, in
    /// one transaction (on PostgreSQL skipping rows another replica is ending); returns them.
    async fn end_requests(
        &self,
        ending: Ending,
        kind: TimelineKind,
        detail: impl Fn(&RemediationRequest) -> serde_json::Value,
        now: DateTime<Utc>,
    ) -> Result<Vec<RemediationRequest>, StoreError> {
        let mut transaction = self.begin().await?;
        let claim = self.skip_locked();
        let Ending { state, since, before, becomes } = ending;
        let sql = format!(
            "SELECT id FROM remediation_requests WHERE state = '{state}' AND {since} <= $1 ORDER BY id LIMIT 100{claim}"
        );
        let ids: Vec<i64> =
            sqlx::query_scalar(AssertSqlSafe(sql)).bind(millis(before)).fetch_all(&mut *transaction).await?;
        let mut ended = Vec::with_capacity(ids.len());
        for id in ids {
            let request = self.load_request(&mut transaction, id, false).await?;
            Self::set_request_state(&mut transaction, id, becomes, now).await?;
            Self::audit_request(&mut transaction, &request, None, kind, detail(&request), now).await?;
            ended.push(RemediationRequest { state: becomes.into(), decided_at: Some(now), ..request });
        }
        transaction.commit().await?;
        Ok(ended)
    }

    async fn set_request_state(
        transaction: &mut sqlx::AnyConnection,
        id: i64,
        state: &str,
        at: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let updated = sqlx::query("UPDATE remediation_requests SET state = $2, decided_at = $3 WHERE id = $1")
            .bind(id)
            .bind(state.to_string())
            .bind(millis(at))
            .execute(&mut *transaction)
            .await?;
        Ok(updated.rows_affected())
    }

    async fn cancel_timers(
        transaction: &mut sqlx::AnyConnection,
        id: i64,
        at: DateTime<Utc>,
        instance: &str,
    ) -> Result<u64, StoreError> {
        let cancelled = sqlx::query("UPDATE timers SET state = 'cancelled', done_at = $2, done_by = $3 WHERE incident_id = $1 AND state = 'pending'")
            .bind(id)
            .bind(millis(at))
            .bind(instance.to_string())
            .execute(&mut *transaction)
            .await?;
        Ok(cancelled.rows_affected())
    }
}

fn declared_event(new: &NewIncident, steps: usize, at: DateTime<Utc>) -> TimelineEvent {
    let detail = json!({"title": new.title, "severity": new.severity, "impact": new.impact, "policy": new.policy, "steps_scheduled": steps});
    TimelineEvent::new(at, TimelineKind::Declared, new.declared_by.as_deref(), detail)
}

const REQUEST_COLUMNS: &str = "id, incident_id, topic, action, args, command, action_hash, requested_by, approvals_needed, platform, \
     channel, thread, message, state, created_at, expires_at, decided_at, result";

fn request_from_row(row: &AnyRow) -> Result<RemediationRequest, StoreError> {
    Ok(RemediationRequest {
        id: row.try_get("id")?,
        incident_id: row.try_get("incident_id")?,
        topic: text(row, "topic")?,
        action: text(row, "action")?,
        args: serde_json::from_str(&text(row, "args")?).unwrap_or_default(),
        command: text(row, "command")?,
        action_hash: text(row, "action_hash")?,
        requested_by: text(row, "requested_by")?,
        approvals_needed: row.try_get("approvals_needed")?,
        platform: text(row, "platform")?,
        channel: text(row, "channel")?,
        thread: optional_text(row, "thread")?,
        message: optional_text(row, "message")?,
        state: text(row, "state")?,
        created_at: from_millis(row.try_get("created_at")?),
        expires_at: from_millis(row.try_get("expires_at")?),
        decided_at: optional_time(row, "decided_at")?,
        result: optional_text(row, "result")?,
        votes: Vec::new(),
    })
}

const CONSOLE_COLUMNS: &str = "id, channel, thread, author, body, posted_at, edited_at";

fn console_from_row(row: &AnyRow) -> Result<ConsoleMessage, StoreError> {
    Ok(ConsoleMessage {
        id: row.try_get("id")?,
        channel: text(row, "channel")?,
        thread: optional_text(row, "thread")?,
        author: text(row, "author")?,
        body: serde_json::from_str(&text(row, "body")?).unwrap_or_default(),
        posted_at: from_millis(row.try_get("posted_at")?),
        edited_at: optional_time(row, "edited_at")?,
    })
}

const OUTBOX_COLUMNS: &str = "id, incident_id, kind, recipients, payload, created_at, attempts, progress";

fn outbox_from_row(row: &AnyRow) -> Result<OutboxItem, StoreError> {
    Ok(OutboxItem {
        id: row.try_get("id")?,
        incident_id: row.try_get("incident_id")?,
        kind: {
            let kind = text(row, "kind")?;
            OutboxKind::parse(&kind)
                .ok_or_else(|| StoreError::Database(format!("unknown outbox kind '{kind}' in the store")))?
        },
        recipients: serde_json::from_str(&text(row, "recipients")?).unwrap_or_default(),
        payload: serde_json::from_str(&text(row, "payload")?).unwrap_or_default(),
        created_at: from_millis(row.try_get("created_at")?),
        attempts: row.try_get("attempts")?,
        progress: serde_json::from_str(&text(row, "progress")?).unwrap_or_default(),
    })
}

fn text(row: &AnyRow, column: &str) -> Result<String, StoreError> {
    Ok(row.try_get::<String, _>(column)?)
}

fn optional_text(row: &AnyRow, column: &str) -> Result<Option<String>, StoreError> {
    Ok(row.try_get::<Option<String>, _>(column)?)
}

fn optional_time(row: &AnyRow, column: &str) -> Result<Option<DateTime<Utc>>, StoreError> {
    Ok(row.try_get::<Option<i64>, _>(column)?.map(from_millis))
}

fn incident_from_row(row: &AnyRow) -> Result<Incident, StoreError> {
    let severity = text(row, "severity")?;
    let status = text(row, "status")?;
    Ok(Incident {
        id: row.try_get("id")?,
        title: text(row, "title")?,
        severity: Severity::parse(&severity)
            .ok_or_else(|| StoreError::Database(format!("unknown severity '{severity}' in the store")))?,
        status: IncidentStatus::parse(&status)
            .ok_or_else(|| StoreError::Database(format!("unknown status '{status}' in the store")))?,
        impact: optional_text(row, "impact")?,
        commander: optional_text(row, "commander")?,
        fingerprint: optional_text(row, "fingerprint")?,
        policy: optional_text(row, "policy")?,
        declared_by: optional_text(row, "declared_by")?,
        started_at: from_millis(row.try_get("started_at")?),
        acknowledged_at: optional_time(row, "acknowledged_at")?,
        acknowledged_by: optional_text(row, "acknowledged_by")?,
        resolved_at: optional_time(row, "resolved_at")?,
        resolved_by: optional_text(row, "resolved_by")?,
        root_cause: optional_text(row, "root_cause")?,
        fix: optional_text(row, "fix")?,
        prevention: optional_text(row, "prevention")?,
        chat: Default::default(),
        alert_repeats: row.try_get("alert_repeats")?,
        last_alert_at: optional_time(row, "last_alert_at")?,
        timeline: Vec::new(),
        followups: Vec::new(),
        checklists: Vec::new(),
    })
}

/// Adds one `chat_refs` row (platform, channel, message) to the incident's `chat` map.
fn add_chat_ref(incident: &mut Incident, row: &AnyRow) -> Result<(), StoreError> {
    let reference = ChatRef { channel: text(row, "channel")?, message: text(row, "message")? };
    incident.chat.insert(text(row, "platform")?, reference);
    Ok(())
}

/// Which requests [`SqlStore::end_requests`] ends, and how: its fields are the code's own
/// constants, never input.
struct Ending {
    state: &'static str,
    since: &'static str,
    before: DateTime<Utc>,
    becomes: &'static str,
}

fn event_from_row(row: &AnyRow) -> Result<TimelineEvent, StoreError> {
    Ok(TimelineEvent {
        at: from_millis(row.try_get("at")?),
        kind: {
            let kind = text(row, "kind")?;
            TimelineKind::parse(&kind)
                .ok_or_else(|| StoreError::Database(format!("unknown timeline kind '{kind}' in the store")))?
        },
        by: optional_text(row, "actor")?,
        detail: serde_json::from_str(&text(row, "detail")?).unwrap_or(serde_json::Value::Null),
    })
}

#[async_trait]
impl Store for SqlStore {
    fn backend(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }

    /// Through the writer: on SQLite the one connection opened at start.
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.writer).await?;
        Ok(())
    }

    async fn declare(
        &self,
        new: NewIncident,
        timers: Vec<NewTimer>,
        at: DateTime<Utc>,
    ) -> Result<Incident, StoreError> {
        let mut transaction = self.begin().await?;
        let id = self.insert_incident(&mut transaction, &new, &timers, at).await?;
        let incident = self.load_incident(&mut transaction, id, false).await?;
        transaction.commit().await?;
        Ok(incident)
    }

    async fn incident(&self, id: i64) -> Result<Incident, StoreError> {
        let mut connection = self.pool.acquire().await?;
        self.load_incident(&mut connection, id, false).await
    }

    async fn incidents(&self, include_resolved: bool, limit: i64) -> Result<Vec<Incident>, StoreError> {
        let filter = if include_resolved { "" } else { "WHERE status <> 'resolved'" };
        let sql = format!("SELECT id FROM incidents {filter} ORDER BY id DESC LIMIT $1");
        let mut connection = self.pool.acquire().await?;
        let ids: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(sql)).bind(limit).fetch_all(&mut *connection).await?;
        self.load_incidents(&mut connection, &ids).await
    }

    async fn acknowledge(&self, id: i64, by: &str, at: DateTime<Utc>) -> Result<Incident, StoreError> {
        let mut transaction = self.begin().await?;
        let incident = self.load_incident(&mut transaction, id, true).await?;
        incident.check_acknowledge().map_err(StoreError::Transition)?;
        sqlx::query(
            "UPDATE incidents SET status = 'acknowledged', acknowledged_at = $2, acknowledged_by = $3 WHERE id = $1",
        )
        .bind(id)
        .bind(millis(at))
        .bind(by.to_string())
        .execute(&mut *transaction)
        .await?;
        let cancelled = Self::cancel_timers(&mut transaction, id, at, &self.instance).await?;
        Self::insert_event(
            &mut transaction,
            id,
            &TimelineEvent::new(at, TimelineKind::Acknowledged, Some(by), json!({"cancelled_steps": cancelled})),
        )
        .await?;
        Self::enqueue(&mut transaction, id, OutboxKind::IncidentUpdated, at).await?;
        let incident = self.load_incident(&mut transaction, id, false).await?;
        transaction.commit().await?;
        Ok(incident)
    }

    async fn resolve(
        &self,
        id: i64,
        by: &str,
        resolution: Resolution,
        at: DateTime<Utc>,
    ) -> Result<Incident, StoreError> {
        let mut transaction = self.begin().await?;
        let incident = self.load_incident(&mut transaction, id, true).await?;
        incident.check_resolve().map_err(StoreError::Transition)?;
        sqlx::query("UPDATE incidents SET status = 'resolved', resolved_at = $2, resolved_by = $3, root_cause = $4, fix = $5, prevention = $6 WHERE id = $1")
            .bind(id)
            .bind(millis(at))
            .bind(by.to_string())
            .bind(resolution.root_cause.clone())
            .bind(resolution.fix.clone())
            .bind(resolution.prevention.clone())
            .execute(&mut *transaction)
            .await?;
        let cancelled = Self::cancel_timers(&mut transaction, id, at, &self.instance).await?;
        let detail = json!({"root_cause": resolution.root_cause, "fix": resolution.fix, "prevention": resolution.prevention, "cancelled_steps": cancelled});
        Self::insert_event(&mut transaction, id, &TimelineEvent::new(at, TimelineKind::Resolved, Some(by), detail))
            .await?;
        Self::enqueue(&mut transaction, id, OutboxKind::IncidentResolved, at).await?;
        let incident = self.load_incident(&mut transaction, id, false).await?;
        transaction.commit().await?;
        Ok(incident)
    }

    async fn record(&self, id: i64, event: TimelineEvent) -> Result<(), StoreError> {
        self.record_event(id, &event, None).await
    }

    async fn fire_due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        resolver: &dyn StepResolver,
    ) -> Result<Vec<FiredStep>, StoreError> {
        let mut transaction = self.begin().await?;
        let claim = self.skip_locked();
        let sql = format!(
            "SELECT id, incident_id, policy, step, round, fire_at FROM timers WHERE state = 'pending' AND fire_at <= $1 ORDER BY fire_at, id LIMIT $2{claim}"
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(millis(now)).bind(limit).fetch_all(&mut *transaction).await?;
        let mut fired = Vec::with_capacity(rows.len());
        for row in &rows {
            let due = DueTimer {
                id: row.try_get("id")?,
                incident_id: row.try_get("incident_id")?,
                policy: text(row, "policy")?,
                step: usize::try_from(row.try_get::<i64, _>("step")?).unwrap_or_default(),
                round: u32::try_from(row.try_get::<i64, _>("round")?).unwrap_or_default(),
                fire_at: from_millis(row.try_get("fire_at")?),
            };
            let recipients = resolver.recipients(&due, now);
            let notified: Vec<String> = recipients.people.iter().map(ToString::to_string).collect();
            let state = if notified.is_empty() { "skipped" } else { "fired" };
            let claimed = sqlx::query(
                "UPDATE timers SET state = $2, done_at = $3, done_by = $4 WHERE id = $1 AND state = 'pending'",
            )
            .bind(due.id)
            .bind(state)
            .bind(millis(now))
            .bind(self.instance.clone())
            .execute(&mut *transaction)
            .await?;
            if claimed.rows_affected() != 1 {
                continue;
            }
            let lateness_ms = (now - due.fire_at).num_milliseconds();
            if notified.is_empty() {
                let detail = json!({"step": due.step, "repeat": due.round, "targets": recipients.targets, "reason": "nobody to notify"});
                Self::insert_event(
                    &mut transaction,
                    due.incident_id,
                    &TimelineEvent::new(now, TimelineKind::EscalationSkipped, None, detail),
                )
                .await?;
                // Nobody to page at this step: the next one fires now instead of waiting.
                sqlx::query(
                    "UPDATE timers SET fire_at = $2 WHERE state = 'pending' AND id = \
                     (SELECT id FROM timers WHERE incident_id = $1 AND state = 'pending' AND fire_at > $2 ORDER BY fire_at, id LIMIT 1)",
                )
                .bind(due.incident_id)
                .bind(millis(now))
                .execute(&mut *transaction)
                .await?;
            } else {
                let detail = json!({"step": due.step, "repeat": due.round, "notified": notified, "targets": recipients.targets, "due_at": due.fire_at, "late_ms": lateness_ms});
                Self::insert_event(
                    &mut transaction,
                    due.incident_id,
                    &TimelineEvent::new(now, TimelineKind::Escalated, None, detail),
                )
                .await?;
                let payload = json!({"incident_id": due.incident_id, "step": due.step, "repeat": due.round, "policy": due.policy});
                sqlx::query("INSERT INTO outbox (incident_id, kind, recipients, payload, created_at) VALUES ($1, 'escalation', $2, $3, $4)")
                    .bind(due.incident_id)
                    .bind(json!(notified).to_string())
                    .bind(payload.to_string())
                    .bind(millis(now))
                    .execute(&mut *transaction)
                    .await?;
            }
            fired.push(FiredStep {
                timer_id: due.id,
                incident_id: due.incident_id,
                step: due.step,
                round: due.round,
                due_at: due.fire_at,
                fired_at: now,
                notified,
            });
        }
        transaction.commit().await?;
        Ok(fired)
    }

    async fn next_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<i64> =
            sqlx::query_scalar("SELECT MIN(fire_at) FROM timers WHERE state = 'pending'").fetch_one(&self.pool).await?;
        Ok(next.map(from_millis))
    }

    async fn pending_timers(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM timers WHERE state = 'pending'").fetch_one(&self.pool).await?)
    }

    async fn record_with_notice(&self, id: i64, event: TimelineEvent, notice: OutboxKind) -> Result<(), StoreError> {
        self.record_event(id, &event, Some(notice)).await
    }

    async fn escalate_now(&self, id: i64, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let pulled = sqlx::query(
            "UPDATE timers SET fire_at = $2 WHERE state = 'pending' AND id = \
             (SELECT id FROM timers WHERE incident_id = $1 AND state = 'pending' ORDER BY fire_at, id LIMIT 1)",
        )
        .bind(id)
        .bind(millis(at))
        .execute(&self.writer)
        .await?;
        Ok(pulled.rows_affected() == 1)
    }

    async fn attach_chat(&self, id: i64, platform: &str, channel: &str, message: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO chat_refs (incident_id, platform, channel, message) VALUES ($1, $2, $3, $4) ON CONFLICT (platform, channel, message) DO NOTHING")
            .bind(id)
            .bind(platform.to_string())
            .bind(channel.to_string())
            .bind(message.to_string())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn incident_by_chat(&self, platform: &str, channel: &str, message: &str) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT incident_id FROM chat_refs WHERE platform = $1 AND channel = $2 AND message = $3",
        )
        .bind(platform.to_string())
        .bind(channel.to_string())
        .bind(message.to_string())
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn first_seen(&self, key: &str, at: DateTime<Utc>) -> Result<bool, StoreError> {
        let inserted = sqlx::query("INSERT INTO seen_events (key, at) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key.to_string())
            .bind(millis(at))
            .execute(&self.writer)
            .await?;
        Ok(inserted.rows_affected() == 1)
    }

    async fn prune(&self, before: DateTime<Utc>) -> Result<Pruned, StoreError> {
        // Batches keep each delete short: other writers (the alert writer on SQLite) wait at
        // most one batch.
        const BATCH: i64 = 5_000;
        let tables = [
            ("seen_events", "key", "at < $1"),
            ("alerts", "id", "received_at < $1"),
            ("outbox", "id", "(delivered_at < $1 OR failed_at < $1)"),
            ("console_messages", "id", "posted_at < $1"),
        ];
        let mut counts = [0u64; 4];
        for ((table, key, old), count) in tables.iter().zip(counts.iter_mut()) {
            let sql = format!("DELETE FROM {table} WHERE {key} IN (SELECT {key} FROM {table} WHERE {old} LIMIT $2)");
            loop {
                let deleted = sqlx::query(AssertSqlSafe(sql.clone()))
                    .bind(millis(before))
                    .bind(BATCH)
                    .execute(&self.writer)
                    .await?
                    .rows_affected();
                *count += deleted;
                if deleted < BATCH as u64 {
                    break;
                }
            }
        }
        let [seen_events, alerts, outbox, console_messages] = counts;
        Ok(Pruned { seen_events, alerts, outbox, console_messages })
    }
}

#[async_trait]
impl OutboxStore for SqlStore {
    async fn outbox_pending(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND failed_at IS NULL")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn undelivered(&self, limit: i64) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE delivered_at IS NULL AND failed_at IS NULL ORDER BY id LIMIT $1"
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(outbox_from_row).collect()
    }

    async fn due_outbox(&self, done: &str, limit: i64) -> Result<Vec<OutboxItem>, StoreError> {
        let unfinished = match self.backend {
            Backend::Sqlite => "NOT EXISTS (SELECT 1 FROM json_each(outbox.progress) WHERE value = $1)",
            Backend::Postgres => "NOT (progress::jsonb ? $1)",
        };
        let sql = format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE delivered_at IS NULL AND failed_at IS NULL AND {unfinished} \
             ORDER BY CASE WHEN kind = 'escalation' THEN 0 ELSE 1 END, id LIMIT $2"
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(done.to_string()).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(outbox_from_row).collect()
    }

    /// One statement: adds `part` to the item's JSON list unless it is there already.
    async fn outbox_progress(&self, id: i64, part: &str) -> Result<(), StoreError> {
        let sql = match self.backend {
            Backend::Sqlite => {
                "UPDATE outbox SET progress = json_insert(progress, '$[#]', $2) \
                 WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM json_each(outbox.progress) WHERE value = $2)"
            }
            Backend::Postgres => {
                "UPDATE outbox SET progress = (progress::jsonb || jsonb_build_array($2::text))::text \
                 WHERE id = $1 AND NOT (progress::jsonb ? $2)"
            }
        };
        sqlx::query(sql).bind(id).bind(part.to_string()).execute(&self.writer).await?;
        Ok(())
    }

    async fn outbox_settle(&self, id: i64, needed: &[String], at: DateTime<Utc>) -> Result<bool, StoreError> {
        let all_there = match self.backend {
            Backend::Sqlite => {
                "NOT EXISTS (SELECT 1 FROM json_each($2) AS need \
                 WHERE need.value NOT IN (SELECT value FROM json_each(outbox.progress)))"
            }
            Backend::Postgres => "progress::jsonb @> $2::jsonb",
        };
        let sql = format!("UPDATE outbox SET delivered_at = $3 WHERE id = $1 AND delivered_at IS NULL AND {all_there}");
        let settled = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .bind(serde_json::to_string(needed).map_err(|error| StoreError::Database(error.to_string()))?)
            .bind(millis(at))
            .execute(&self.writer)
            .await?;
        Ok(settled.rows_affected() == 1)
    }
}

#[async_trait]
impl RemediationStore for SqlStore {
    async fn create_request(&self, new: NewRequest, at: DateTime<Utc>) -> Result<RemediationRequest, StoreError> {
        let mut transaction = self.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO remediation_requests (incident_id, topic, action, args, command, action_hash, requested_by, approvals_needed, \
             platform, channel, thread, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) RETURNING id",
        )
        .bind(new.incident_id)
        .bind(new.topic.clone())
        .bind(new.action.clone())
        .bind(json!(new.args).to_string())
        .bind(new.command.clone())
        .bind(new.action_hash.clone())
        .bind(new.requested_by.clone())
        .bind(new.approvals_needed)
        .bind(new.platform.clone())
        .bind(new.channel.clone())
        .bind(new.thread.clone())
        .bind(millis(at))
        .bind(millis(new.expires_at))
        .fetch_one(&mut *transaction)
        .await?;
        let request = self.load_request(&mut transaction, id, false).await?;
        let detail = json!({"request": id, "name": request.action, "command": request.command, "approvals_needed": request.approvals_needed, "expires_at": request.expires_at});
        Self::audit_request(
            &mut transaction,
            &request,
            Some(&request.requested_by),
            TimelineKind::RemediationRequested,
            detail,
            at,
        )
        .await?;
        transaction.commit().await?;
        Ok(request)
    }

    async fn request(&self, id: i64) -> Result<RemediationRequest, StoreError> {
        let mut connection = self.pool.acquire().await?;
        self.load_request(&mut connection, id, false).await
    }

    async fn set_request_message(&self, id: i64, message: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE remediation_requests SET message = $2 WHERE id = $1")
            .bind(id)
            .bind(message.to_string())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn vote(
        &self,
        id: i64,
        voter: &str,
        approve: bool,
        current_hash: &str,
        at: DateTime<Utc>,
    ) -> Result<VoteOutcome, StoreError> {
        let mut transaction = self.begin().await?;
        let request = self.load_request(&mut transaction, id, true).await?;
        if request.state != "pending" {
            return Ok(VoteOutcome::NotPending(request.state));
        }
        let detail = |extra: serde_json::Value| {
            let mut detail = json!({"request": id, "name": request.action, "command": request.command});
            if let (Some(map), serde_json::Value::Object(extra)) = (detail.as_object_mut(), extra) {
                map.extend(extra);
            }
            detail
        };
        if request.expires_at <= at {
            Self::set_request_state(&mut transaction, id, "expired", at).await?;
            Self::audit_request(
                &mut transaction,
                &request,
                None,
                TimelineKind::RemediationExpired,
                detail(json!({})),
                at,
            )
            .await?;
            transaction.commit().await?;
            return Ok(VoteOutcome::Expired);
        }
        if request.action_hash != current_hash {
            Self::set_request_state(&mut transaction, id, "stale", at).await?;
            let reason = json!({"reason": "the runbook changed since the request; request it again"});
            Self::audit_request(
                &mut transaction,
                &request,
                Some(voter),
                TimelineKind::RemediationStale,
                detail(reason),
                at,
            )
            .await?;
            transaction.commit().await?;
            return Ok(VoteOutcome::Stale);
        }
        let decision = if approve { "approve" } else { "deny" };
        let inserted = sqlx::query("INSERT INTO remediation_votes (request_id, voter, decision, at) VALUES ($1, $2, $3, $4) ON CONFLICT (request_id, voter) DO NOTHING")
            .bind(id)
            .bind(voter.to_string())
            .bind(decision)
            .bind(millis(at))
            .execute(&mut *transaction)
            .await?;
        if inserted.rows_affected() == 0 {
            return Ok(VoteOutcome::AlreadyVoted);
        }
        if !approve {
            Self::set_request_state(&mut transaction, id, "denied", at).await?;
            Self::audit_request(
                &mut transaction,
                &request,
                Some(voter),
                TimelineKind::RemediationDenied,
                detail(json!({})),
                at,
            )
            .await?;
            transaction.commit().await?;
            return Ok(VoteOutcome::Denied);
        }
        let approvers: Vec<String> = sqlx::query_scalar(
            "SELECT voter FROM remediation_votes WHERE request_id = $1 AND decision = 'approve' ORDER BY at, voter",
        )
        .bind(id)
        .fetch_all(&mut *transaction)
        .await?;
        let approvals = approvers.len() as i64;
        // Each approval is on the timeline too, with who and when: with `approvals = 2` the
        // first one would otherwise show only in the audit log.
        let counted = detail(json!({"approvals": approvals, "needed": request.approvals_needed}));
        Self::audit_request(&mut transaction, &request, Some(voter), TimelineKind::RemediationApproval, counted, at)
            .await?;
        if approvals < request.approvals_needed {
            transaction.commit().await?;
            return Ok(VoteOutcome::Counted { approvals, needed: request.approvals_needed });
        }
        Self::set_request_state(&mut transaction, id, "running", at).await?;
        Self::audit_request(
            &mut transaction,
            &request,
            Some(voter),
            TimelineKind::RemediationApproved,
            detail(json!({"approved_by": approvers})),
            at,
        )
        .await?;
        transaction.commit().await?;
        Ok(VoteOutcome::Approved { approvers })
    }

    async fn finish_request(
        &self,
        id: i64,
        succeeded: bool,
        result: &str,
        at: DateTime<Utc>,
    ) -> Result<RemediationRequest, StoreError> {
        let mut transaction = self.begin().await?;
        let request = self.load_request(&mut transaction, id, true).await?;
        let state = if succeeded { "succeeded" } else { "failed" };
        sqlx::query("UPDATE remediation_requests SET state = $2, result = $3 WHERE id = $1")
            .bind(id)
            .bind(state)
            .bind(result.to_string())
            .execute(&mut *transaction)
            .await?;
        let detail = json!({"request": id, "name": request.action, "command": request.command, "approved_by": request.approvers(), "status": state, "result": result});
        Self::audit_request(&mut transaction, &request, None, TimelineKind::RemediationRan, detail, at).await?;
        let finished = self.load_request(&mut transaction, id, false).await?;
        transaction.commit().await?;
        Ok(finished)
    }

    async fn expire_requests(&self, now: DateTime<Utc>) -> Result<Vec<RemediationRequest>, StoreError> {
        let detail = |request: &RemediationRequest| json!({"request": request.id, "name": request.action, "command": request.command, "expires_at": request.expires_at});
        let expiring = Ending { state: "pending", since: "expires_at", before: now, becomes: "expired" };
        self.end_requests(expiring, TimelineKind::RemediationExpired, detail, now).await
    }

    async fn interrupt_requests(
        &self,
        started_before: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Vec<RemediationRequest>, StoreError> {
        let detail = |request: &RemediationRequest| {
            json!({
                "request": request.id, "name": request.action, "command": request.command,
                "approved_by": request.approvers(), "started_at": request.decided_at,
                "reason": "firebell stopped while it ran, so whether it took effect is unknown",
            })
        };
        let dead = Ending { state: "running", since: "decided_at", before: started_before, becomes: "interrupted" };
        self.end_requests(dead, TimelineKind::RemediationInterrupted, detail, now).await
    }

    async fn audit(&self, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, request_id, incident_id, detail FROM audit_log ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.try_get("id")?,
                    at: from_millis(row.try_get("at")?),
                    actor: optional_text(row, "actor")?,
                    action: text(row, "action")?,
                    request_id: row.try_get("request_id")?,
                    incident_id: row.try_get("incident_id")?,
                    detail: serde_json::from_str(&text(row, "detail")?).unwrap_or_default(),
                })
            })
            .collect()
    }
}

#[async_trait]
impl AlertStore for SqlStore {
    /// One transaction per batch: the newest incident of every fingerprint is read once, each
    /// alert is decided in memory (later alerts of the batch see what earlier ones did), and the
    /// timeline events, outbox rows and alert rows are written many per statement at the end.
    async fn ingest_alerts(
        &self,
        alerts: &[IncomingAlert],
        flap_window: chrono::Duration,
        at: DateTime<Utc>,
    ) -> Result<Vec<AlertOutcome>, StoreError> {
        self.ingest_batch(alerts, flap_window, at).await
    }
}

#[async_trait]
impl ConsoleStore for SqlStore {
    async fn console_post(
        &self,
        channel: &str,
        thread: Option<&str>,
        author: &str,
        body: &serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<ConsoleMessage, StoreError> {
        let sql = format!(
            "INSERT INTO console_messages (channel, thread, author, body, posted_at) VALUES ($1, $2, $3, $4, $5) RETURNING {CONSOLE_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(channel.to_string())
            .bind(thread.map(str::to_string))
            .bind(author.to_string())
            .bind(body.to_string())
            .bind(millis(at))
            .fetch_one(&self.writer)
            .await?;
        console_from_row(&row)
    }

    async fn console_edit(
        &self,
        id: i64,
        body: &serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<ConsoleMessage, StoreError> {
        let sql =
            format!("UPDATE console_messages SET body = $1, edited_at = $2 WHERE id = $3 RETURNING {CONSOLE_COLUMNS}");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(body.to_string())
            .bind(millis(at))
            .bind(id)
            .fetch_optional(&self.writer)
            .await?
            .ok_or(StoreError::NoConsoleMessage(id))?;
        console_from_row(&row)
    }

    async fn console_message(&self, id: i64) -> Result<ConsoleMessage, StoreError> {
        let sql = format!("SELECT {CONSOLE_COLUMNS} FROM console_messages WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NoConsoleMessage(id))?;
        console_from_row(&row)
    }

    async fn console_history(
        &self,
        channel: &str,
        limit: i64,
        preview_chars: i64,
    ) -> Result<Vec<ConsoleMessage>, StoreError> {
        let body = match self.backend {
            Backend::Sqlite => {
                "CASE WHEN json_type(body, '$.file.text') = 'text' THEN json_set(json_remove(body, '$.file.text'), \
                 '$.file.preview', substr(json_extract(body, '$.file.text'), 1, $3), \
                 '$.file.size', length(CAST(json_extract(body, '$.file.text') AS BLOB)), \
                 '$.file.cut', json(CASE WHEN length(json_extract(body, '$.file.text')) > $3 THEN 'true' ELSE 'false' END)) \
                 ELSE body END"
            }
            Backend::Postgres => {
                "CASE WHEN body::jsonb #> '{file,text}' IS NOT NULL THEN \
                 jsonb_set(body::jsonb #- '{file,text}', '{file}', ((body::jsonb -> 'file') - 'text') || jsonb_build_object(\
                 'preview', left(body::jsonb #>> '{file,text}', $3::int), \
                 'size', octet_length(body::jsonb #>> '{file,text}'), \
                 'cut', char_length(body::jsonb #>> '{file,text}') > $3::int))::text \
                 ELSE body END"
            }
        };
        let sql = format!(
            "SELECT {CONSOLE_COLUMNS} FROM (SELECT id, channel, thread, author, {body} AS body, posted_at, edited_at \
             FROM console_messages WHERE channel = $1 ORDER BY id DESC LIMIT $2) newest ORDER BY id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(channel.to_string())
            .bind(limit)
            .bind(preview_chars)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(console_from_row).collect()
    }
}
