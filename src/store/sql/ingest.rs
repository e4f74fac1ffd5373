//! A batch of alerts in one transaction: the group-commit writer's unit of work.
//!
//! The batch reads the newest incident of all its fingerprints, reserves the ids of the incidents
//! it will open, decides every alert in memory, and then writes what it decided many rows per
//! statement: incidents, timers, timeline events, outbox rows, alerts. Queries, not rows, are
//! what a batch costs: on SQLite every query hops to the connection's worker thread and back, on
//! PostgreSQL it is a round trip. So on SQLite a batch is two queries: `BEGIN IMMEDIATE` with
//! every read, then every write with the `COMMIT` (a [`Script`]); only resolving an incident
//! (rare) adds one, to count the steps it cancels. Unlike the store's other writes, a batch's
//! commit waits for the disk (`synchronous = FULL` around it): its alerts are answered as
//! durable.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AssertSqlSafe, Row};

use super::script::Script;
use super::{Backend, SqlStore, declared_event, optional_time, text};
use crate::incident::lifecycle::{self, Decision, Latest};
use crate::incident::{NewIncident, TimelineEvent, TimelineKind};
use crate::store::{AlertOutcome, IncomingAlert, NewTimer, OutboxKind, StoreError, millis};

/// A row of `id, fingerprint, status, resolved_at` as its fingerprint and newest incident.
fn read_latest(row: &sqlx::any::AnyRow) -> Result<(String, Latest), StoreError> {
    let state = Latest {
        id: row.try_get("id")?,
        open: text(row, "status")? != "resolved",
        resolved_at: optional_time(row, "resolved_at")?,
    };
    Ok((text(row, "fingerprint")?, state))
}

struct AlertRow {
    source: String,
    fingerprint: String,
    status: &'static str,
    incident_id: Option<i64>,
    payload: String,
}

/// Rows a batch writes. Incidents and timers go into the script before a statement that changes
/// them; everything else at the end.
struct Rows<'a> {
    at: DateTime<Utc>,
    incidents: Vec<(i64, &'a NewIncident)>,
    timers: Vec<(i64, &'a NewTimer)>,
    events: Vec<(i64, TimelineEvent)>,
    notices: Vec<(i64, OutboxKind)>,
    alerts: Vec<AlertRow>,
    /// Firing repeats per open incident: a count, not a timeline row each.
    repeats: BTreeMap<i64, i64>,
}

/// The writer connection while a batch's transaction is open. Dropped before the batch committed
/// (an error, or a cancelled future), the connection is closed rather than handed back to the
/// pool, and closing it rolls the transaction back.
struct OpenBatch {
    connection: PoolConnection<Any>,
    committed: bool,
}

impl Drop for OpenBatch {
    fn drop(&mut self) {
        if !self.committed {
            self.connection.close_on_drop();
        }
    }
}

impl SqlStore {
    pub(super) async fn ingest_batch(
        &self,
        alerts: &[IncomingAlert],
        flap_window: chrono::Duration,
        at: DateTime<Utc>,
    ) -> Result<Vec<AlertOutcome>, StoreError> {
        let mut batch = OpenBatch { connection: self.writer.acquire().await?, committed: false };
        let mut fingerprints: Vec<&str> = alerts.iter().map(|alert| alert.fingerprint.as_str()).collect();
        fingerprints.sort_unstable();
        fingerprints.dedup();
        let (mut latest, last_id) = self.begin_and_read(&mut batch.connection, &fingerprints).await?;
        if self.backend == Backend::Postgres {
            self.lock_reopen_candidates(&mut batch.connection, &mut latest, at, flap_window).await?;
        }
        let firing = alerts.iter().map(|alert| (alert.fingerprint.as_str(), alert.firing));
        let wanted = lifecycle::incidents_to_open(firing, &latest, at, flap_window);
        let mut ids = self.reserve_incident_ids(&mut batch.connection, wanted, last_id).await?.into_iter();

        let mut script = Script::new(self.backend);
        let mut rows = Rows {
            at,
            incidents: Vec::new(),
            timers: Vec::new(),
            events: Vec::new(),
            notices: Vec::new(),
            alerts: Vec::new(),
            repeats: BTreeMap::new(),
        };
        let mut outcomes = Vec::with_capacity(alerts.len());
        for alert in alerts {
            let status = if alert.firing { "firing" } else { "resolved" };
            let source = alert.source.as_str();
            let event =
                |kind: TimelineKind, detail: serde_json::Value| TimelineEvent::new(at, kind, Some(source), detail);
            let current = latest.get(&alert.fingerprint).copied();
            let decision = lifecycle::decide(current.as_ref(), alert.firing, alert.resolve, at, flap_window);
            let outcome = match decision {
                Decision::Repeat(id) => {
                    *rows.repeats.entry(id).or_default() += 1;
                    AlertOutcome::Repeated(id)
                }
                Decision::Reopen(id) => {
                    self.write_incidents(&mut script, &mut rows);
                    let sql = format!(
                        "UPDATE incidents SET status = 'triggered', resolved_at = NULL, resolved_by = NULL, \
                         acknowledged_at = NULL, acknowledged_by = NULL WHERE id = {}",
                        self.backend.parameter(1)
                    );
                    script.statement(&sql).bind(id);
                    let detail = json!({"reason": "the alert fired again within the flap window", "flap_window_s": flap_window.num_seconds()});
                    rows.events.push((id, event(TimelineKind::Reopened, detail)));
                    rows.timers.extend(alert.timers.iter().map(|timer| (id, timer)));
                    rows.notices.push((id, OutboxKind::IncidentUpdated));
                    AlertOutcome::Reopened(id)
                }
                Decision::Open => {
                    let id = ids.next().ok_or_else(|| {
                        StoreError::Database("an alert batch opened more incidents than it reserved ids for".into())
                    })?;
                    rows.incidents.push((id, &alert.incident));
                    rows.events.push((id, declared_event(&alert.incident, alert.timers.len(), at)));
                    // The incident shows what fired: the labels the routes matched on.
                    let labels = alert.payload.get("labels");
                    rows.events.push((id, event(TimelineKind::Alert, json!({"status": status, "labels": labels}))));
                    rows.timers.extend(alert.timers.iter().map(|timer| (id, timer)));
                    rows.notices.push((id, OutboxKind::IncidentDeclared));
                    AlertOutcome::Opened(id)
                }
                Decision::Resolve(id) => {
                    self.write_incidents(&mut script, &mut rows);
                    let parameter = |n| self.backend.parameter(n);
                    let sql = format!(
                        "UPDATE incidents SET status = 'resolved', resolved_at = {}, resolved_by = {} WHERE id = {}",
                        parameter(1),
                        parameter(2),
                        parameter(3)
                    );
                    script.statement(&sql).bind(millis(at)).bind(source.to_string()).bind(id);
                    // The timeline tells how many steps resolving cancelled: that count needs
                    // the script so far to have run.
                    script.run(&mut batch.connection).await?;
                    let cancelled = Self::cancel_timers(&mut batch.connection, id, at, &self.instance).await?;
                    let detail = json!({"note": "the alert resolved", "cancelled_steps": cancelled});
                    rows.events.push((id, event(TimelineKind::Resolved, detail)));
                    rows.notices.push((id, OutboxKind::IncidentResolved));
                    AlertOutcome::Resolved(id)
                }
                Decision::Note(id) => {
                    let detail =
                        json!({"status": status, "note": "the alert resolved; this route leaves resolving to people"});
                    rows.events.push((id, event(TimelineKind::Alert, detail)));
                    AlertOutcome::Repeated(id)
                }
                Decision::Ignore => AlertOutcome::Ignored,
            };
            let opened = match outcome {
                AlertOutcome::Opened(id) => Some(id),
                _ => None,
            };
            let incident_id = match outcome {
                AlertOutcome::Opened(id)
                | AlertOutcome::Repeated(id)
                | AlertOutcome::Reopened(id)
                | AlertOutcome::Resolved(id) => Some(id),
                AlertOutcome::Ignored => None,
            };
            if let Some(next) = lifecycle::after(current, decision, opened, at) {
                latest.insert(alert.fingerprint.clone(), next);
            }
            rows.alerts.push(AlertRow {
                source: source.to_string(),
                fingerprint: alert.fingerprint.clone(),
                status,
                incident_id,
                payload: alert.payload.to_string(),
            });
            outcomes.push(outcome);
        }
        self.write_incidents(&mut script, &mut rows);
        self.write_rest(&mut script, rows);
        script.statement("COMMIT");
        if self.backend == Backend::Sqlite {
            script.statement("PRAGMA synchronous = NORMAL");
        }
        script.run(&mut batch.connection).await?;
        batch.committed = true;
        Ok(outcomes)
    }

    /// Opens the batch's transaction and reads the newest incident of each fingerprint. On SQLite
    /// that is one query — `synchronous = FULL`, `BEGIN IMMEDIATE`, the reads, and the last
    /// incident id (the batch's new incidents take the next ones) — on PostgreSQL one per
    /// statement.
    async fn begin_and_read(
        &self,
        connection: &mut sqlx::AnyConnection,
        fingerprints: &[&str],
    ) -> Result<(HashMap<String, Latest>, Option<i64>), StoreError> {
        const NEWEST: &str = "SELECT i.id, i.fingerprint, i.status, i.resolved_at FROM incidents i JOIN \
             (SELECT MAX(id) AS id FROM incidents WHERE fingerprint IN {} GROUP BY fingerprint) newest ON newest.id = i.id";
        let mut latest = HashMap::with_capacity(fingerprints.len());
        let mut last_id = None;
        let mut read = |rows: Vec<sqlx::any::AnyRow>| -> Result<(), StoreError> {
            for row in rows {
                if row.try_column("last_id").is_ok() {
                    last_id = Some(row.try_get("last_id")?);
                    continue;
                }
                let (fingerprint, state) = read_latest(&row)?;
                latest.insert(fingerprint, state);
            }
            Ok(())
        };
        match self.backend {
            Backend::Sqlite => {
                // The store runs with `synchronous = NORMAL`: a commit survives the process
                // dying, not the machine losing power. Alerts are answered as durable and their
                // sender will not send them again, so a batch's commit waits for the disk (SQLite
                // takes the setting only outside a transaction; the writes set it back after
                // the commit). PostgreSQL's commits always wait (`synchronous_commit`).
                let mut sql = String::from("PRAGMA synchronous = FULL;\nBEGIN IMMEDIATE");
                for chunk in fingerprints.chunks(512) {
                    sql.push_str(";\n");
                    sql.push_str(&NEWEST.replace("{}", &self.backend.values(1, chunk.len())));
                }
                // The batch holds the write lock from here on, so the ids after this one stay
                // free until it commits (inserting them moves `AUTOINCREMENT` on).
                sql.push_str(
                    ";\nSELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'incidents'), 0), \
                     COALESCE((SELECT MAX(id) FROM incidents), 0)) AS last_id",
                );
                let mut query = sqlx::query(AssertSqlSafe(sql));
                for fingerprint in fingerprints {
                    query = query.bind(fingerprint.to_string());
                }
                read(query.fetch_all(&mut *connection).await?)?;
            }
            Backend::Postgres => {
                sqlx::query("BEGIN").execute(&mut *connection).await?;
                for chunk in fingerprints.chunks(512) {
                    // The list is padded to a power of two (repeating its last entry), so a few
                    // prepared statements serve every batch.
                    let length = chunk.len().next_power_of_two();
                    let sql = NEWEST.replace("{}", &self.backend.values(1, length));
                    let mut query = sqlx::query(AssertSqlSafe(sql));
                    for index in 0..length {
                        query = query.bind(chunk[index.min(chunk.len() - 1)].to_string());
                    }
                    read(query.fetch_all(&mut *connection).await?)?;
                }
            }
        }
        Ok((latest, last_id))
    }

    /// Locks the resolved incidents this batch may re-open and reads them again. On SQLite the
    /// batch already holds the only write lock; on PostgreSQL another replica may be re-opening
    /// the same incident right now (Alertmanager HA sends each alert to every replica). Waiting
    /// for its row lock and reading the row as committed turns the second re-open into a repeat,
    /// so the incident's timers are scheduled once, not once per replica (audit #17).
    async fn lock_reopen_candidates(
        &self,
        connection: &mut sqlx::AnyConnection,
        latest: &mut HashMap<String, Latest>,
        at: DateTime<Utc>,
        flap_window: chrono::Duration,
    ) -> Result<(), StoreError> {
        let mut candidates: Vec<i64> = latest
            .values()
            .filter(|incident| {
                matches!(lifecycle::decide(Some(incident), true, false, at, flap_window), Decision::Reopen(_))
            })
            .map(|incident| incident.id)
            .collect();
        if candidates.is_empty() {
            return Ok(());
        }
        candidates.sort_unstable();
        // In id order, so two batches locking the same rows never wait on each other in a cycle.
        let sql = format!(
            "SELECT id, fingerprint, status, resolved_at FROM incidents WHERE id IN {} ORDER BY id FOR UPDATE",
            self.backend.values(1, candidates.len())
        );
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for id in &candidates {
            query = query.bind(*id);
        }
        for row in query.fetch_all(&mut *connection).await? {
            let (fingerprint, state) = read_latest(&row)?;
            latest.insert(fingerprint, state);
        }
        Ok(())
    }

    /// `count` incident ids nobody else will use, ascending: on SQLite the ones after `last_id`,
    /// read under the batch's write lock; on PostgreSQL from the sequence, which other replicas
    /// share.
    async fn reserve_incident_ids(
        &self,
        connection: &mut sqlx::AnyConnection,
        count: usize,
        last_id: Option<i64>,
    ) -> Result<Vec<i64>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let count = count as i64;
        match (self.backend, last_id) {
            (Backend::Sqlite, Some(last)) => Ok((last + 1..=last + count).collect()),
            (Backend::Sqlite, None) => Err(StoreError::Database("the batch read no last incident id".into())),
            (Backend::Postgres, _) => {
                let mut ids: Vec<i64> = sqlx::query_scalar(
                    "SELECT nextval(pg_get_serial_sequence('incidents', 'id')) FROM generate_series(1::bigint, $1::bigint)",
                )
                .bind(count)
                .fetch_all(&mut *connection)
                .await?;
                ids.sort_unstable();
                Ok(ids)
            }
        }
    }

    /// Adds the incidents collected so far and their timers to the script, so statements after
    /// them that change them find them.
    fn write_incidents(&self, script: &mut Script, rows: &mut Rows<'_>) {
        for chunk in self.backend.chunks(&rows.incidents) {
            let sql = format!(
                "INSERT INTO incidents (id, title, severity, status, impact, commander, fingerprint, policy, declared_by, started_at) VALUES {}",
                self.backend.values(chunk.len(), 10)
            );
            script.statement(&sql);
            for (id, new) in chunk {
                script
                    .bind(*id)
                    .bind(new.title.clone())
                    .bind(new.severity.name())
                    .bind("triggered")
                    .bind(new.impact.clone())
                    .bind(new.commander.clone())
                    .bind(new.fingerprint.clone())
                    .bind(new.policy.clone())
                    .bind(new.declared_by.clone())
                    .bind(millis(rows.at));
            }
        }
        rows.incidents.clear();
        self.timers_statements(script, &rows.timers);
        rows.timers.clear();
    }

    /// The timeline events, outbox rows and alerts, after the incidents they refer to; and the
    /// repeats, one count per incident.
    fn write_rest(&self, script: &mut Script, rows: Rows<'_>) {
        let at = millis(rows.at);
        let parameter = |n| self.backend.parameter(n);
        let repeat = format!(
            "UPDATE incidents SET alert_repeats = alert_repeats + {}, last_alert_at = {} WHERE id = {}",
            parameter(1),
            parameter(2),
            parameter(3)
        );
        for (id, count) in &rows.repeats {
            script.statement(&repeat).bind(*count).bind(at).bind(*id);
        }
        for chunk in self.backend.chunks(&rows.events) {
            let sql = format!(
                "INSERT INTO timeline (incident_id, at, kind, actor, detail) VALUES {}",
                self.backend.values(chunk.len(), 5)
            );
            script.statement(&sql);
            for (id, event) in chunk {
                script
                    .bind(*id)
                    .bind(millis(event.at))
                    .bind(event.kind.as_str())
                    .bind(event.by.clone())
                    .bind(event.detail.to_string());
            }
        }
        for chunk in self.backend.chunks(&rows.notices) {
            let sql = format!(
                "INSERT INTO outbox (incident_id, kind, recipients, payload, created_at) VALUES {}",
                self.backend.values(chunk.len(), 5)
            );
            script.statement(&sql);
            for (id, kind) in chunk {
                script
                    .bind(*id)
                    .bind(kind.to_string())
                    .bind("[]")
                    .bind(json!({"incident_id": id}).to_string())
                    .bind(at);
            }
        }
        for chunk in self.backend.chunks(&rows.alerts) {
            let sql = format!(
                "INSERT INTO alerts (received_at, source, fingerprint, status, incident_id, payload) VALUES {}",
                self.backend.values(chunk.len(), 6)
            );
            script.statement(&sql);
            for alert in chunk {
                script
                    .bind(at)
                    .bind(alert.source.clone())
                    .bind(alert.fingerprint.clone())
                    .bind(alert.status)
                    .bind(alert.incident_id)
                    .bind(alert.payload.clone());
            }
        }
    }
}
