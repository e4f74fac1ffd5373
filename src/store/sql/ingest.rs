//! A batch of alerts in one transaction: the group-commit writer's unit of work.
//!
//! The batch reads the newest incident of all its fingerprints in one query, reserves the ids of
//! the incidents it will open in another, decides every alert in memory, and then writes what it
//! decided many rows per statement: incidents, timers, timeline events, outbox rows, alerts. Only
//! re-opening and resolving (rare) are statements of their own. Statement count, not row count,
//! is what a batch costs: on SQLite every statement hops to the connection's worker thread, on
//! PostgreSQL it is a round trip.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{AssertSqlSafe, Row};

use super::{Backend, SqlStore, declared_event, optional_time, text};
use crate::incident::{NewIncident, TimelineEvent};
use crate::store::{AlertOutcome, IncomingAlert, NewTimer, StoreError, millis};

/// The newest incident of a fingerprint, as a batch of alerts sees it.
#[derive(Debug, Clone)]
struct LatestIncident {
    id: i64,
    open: bool,
    resolved_at: Option<DateTime<Utc>>,
}

/// What a firing alert does to its fingerprint's newest incident.
enum Firing {
    Repeat(i64),
    Reopen(i64),
    Open,
}

fn firing(current: Option<&LatestIncident>, at: DateTime<Utc>, flap_window: chrono::Duration) -> Firing {
    match current {
        Some(incident) if incident.open => Firing::Repeat(incident.id),
        Some(LatestIncident { id, resolved_at: Some(resolved_at), .. }) if at - *resolved_at <= flap_window => {
            Firing::Reopen(*id)
        }
        _ => Firing::Open,
    }
}

/// How many incidents a batch opens. Only the state before the batch matters: once a fingerprint
/// has an incident in the batch, later alerts repeat, resolve or re-open it (resolved "now" is
/// always within the flap window), so each fingerprint opens at most one.
fn incidents_to_open(
    alerts: &[IncomingAlert],
    latest: &HashMap<String, LatestIncident>,
    at: DateTime<Utc>,
    flap_window: chrono::Duration,
) -> usize {
    let mut opening: Vec<&str> = alerts
        .iter()
        .filter(|alert| alert.firing)
        .filter(|alert| matches!(firing(latest.get(&alert.fingerprint), at, flap_window), Firing::Open))
        .map(|alert| alert.fingerprint.as_str())
        .collect();
    opening.sort_unstable();
    opening.dedup();
    opening.len()
}

struct AlertRow {
    source: String,
    fingerprint: String,
    status: &'static str,
    incident_id: Option<i64>,
    payload: String,
}

/// Rows a batch writes. Incidents and timers may be written early (before a statement that
/// changes them); everything else at the end.
struct Rows<'a> {
    at: DateTime<Utc>,
    incidents: Vec<(i64, &'a NewIncident)>,
    timers: Vec<(i64, &'a NewTimer)>,
    events: Vec<(i64, TimelineEvent)>,
    notices: Vec<(i64, &'static str)>,
    alerts: Vec<AlertRow>,
}

impl SqlStore {
    pub(super) async fn ingest_batch(
        &self,
        alerts: &[IncomingAlert],
        flap_window: chrono::Duration,
        at: DateTime<Utc>,
    ) -> Result<Vec<AlertOutcome>, StoreError> {
        let mut transaction = self.begin().await?;
        let mut fingerprints: Vec<&str> = alerts.iter().map(|alert| alert.fingerprint.as_str()).collect();
        fingerprints.sort_unstable();
        fingerprints.dedup();
        let mut latest = self.latest_incidents(&mut transaction, &fingerprints).await?;
        let wanted = incidents_to_open(alerts, &latest, at, flap_window);
        let mut ids = self.reserve_incident_ids(&mut transaction, wanted).await?.into_iter();

        let mut rows = Rows {
            at,
            incidents: Vec::new(),
            timers: Vec::new(),
            events: Vec::new(),
            notices: Vec::new(),
            alerts: Vec::new(),
        };
        let mut outcomes = Vec::with_capacity(alerts.len());
        for alert in alerts {
            let status = if alert.firing { "firing" } else { "resolved" };
            let source = alert.source.as_str();
            let event = |kind: &str, detail: serde_json::Value| TimelineEvent::new(at, kind, Some(source), detail);
            let current = latest.get(&alert.fingerprint);
            let outcome = if alert.firing {
                match firing(current, at, flap_window) {
                    Firing::Repeat(id) => {
                        rows.events.push((id, event("alert", json!({"status": status, "repeat": true}))));
                        AlertOutcome::Repeated(id)
                    }
                    Firing::Reopen(id) => {
                        self.write_incidents(&mut transaction, &mut rows).await?;
                        sqlx::query(
                            "UPDATE incidents SET status = 'triggered', resolved_at = NULL, resolved_by = NULL, \
                             acknowledged_at = NULL, acknowledged_by = NULL WHERE id = $1",
                        )
                        .bind(id)
                        .execute(&mut *transaction)
                        .await?;
                        let detail = json!({"reason": "the alert fired again within the flap window", "flap_window_s": flap_window.num_seconds()});
                        rows.events.push((id, event("reopened", detail)));
                        rows.timers.extend(alert.timers.iter().map(|timer| (id, timer)));
                        rows.notices.push((id, "incident_updated"));
                        AlertOutcome::Reopened(id)
                    }
                    Firing::Open => {
                        let id = ids.next().ok_or_else(|| {
                            StoreError::Database("an alert batch opened more incidents than it reserved ids for".into())
                        })?;
                        rows.incidents.push((id, &alert.incident));
                        rows.events.push((id, declared_event(&alert.incident, alert.timers.len(), at)));
                        // The incident shows what fired: the labels the routes matched on.
                        let labels = alert.payload.get("labels");
                        rows.events.push((id, event("alert", json!({"status": status, "labels": labels}))));
                        rows.timers.extend(alert.timers.iter().map(|timer| (id, timer)));
                        rows.notices.push((id, "incident_declared"));
                        AlertOutcome::Opened(id)
                    }
                }
            } else {
                match current {
                    Some(incident) if incident.open && alert.resolve => {
                        let id = incident.id;
                        self.write_incidents(&mut transaction, &mut rows).await?;
                        sqlx::query(
                            "UPDATE incidents SET status = 'resolved', resolved_at = $2, resolved_by = $3 WHERE id = $1",
                        )
                        .bind(id)
                        .bind(millis(at))
                        .bind(source.to_string())
                        .execute(&mut *transaction)
                        .await?;
                        let cancelled = Self::cancel_timers(&mut transaction, id, at, &self.instance).await?;
                        let detail = json!({"note": "the alert resolved", "cancelled_steps": cancelled});
                        rows.events.push((id, event("resolved", detail)));
                        rows.notices.push((id, "incident_resolved"));
                        AlertOutcome::Resolved(id)
                    }
                    Some(incident) if incident.open => {
                        let detail = json!({"status": status, "note": "the alert resolved; this route leaves resolving to people"});
                        rows.events.push((incident.id, event("alert", detail)));
                        AlertOutcome::Repeated(incident.id)
                    }
                    _ => AlertOutcome::Ignored,
                }
            };
            let incident_id = match outcome {
                AlertOutcome::Opened(id)
                | AlertOutcome::Repeated(id)
                | AlertOutcome::Reopened(id)
                | AlertOutcome::Resolved(id) => Some(id),
                AlertOutcome::Ignored => None,
            };
            match outcome {
                AlertOutcome::Opened(id) | AlertOutcome::Reopened(id) => {
                    latest.insert(alert.fingerprint.clone(), LatestIncident { id, open: true, resolved_at: None });
                }
                AlertOutcome::Resolved(id) => {
                    latest.insert(alert.fingerprint.clone(), LatestIncident { id, open: false, resolved_at: Some(at) });
                }
                AlertOutcome::Repeated(_) | AlertOutcome::Ignored => {}
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
        self.write_incidents(&mut transaction, &mut rows).await?;
        self.write_rest(&mut transaction, rows).await?;
        transaction.commit().await?;
        Ok(outcomes)
    }

    /// The newest incident of each fingerprint.
    async fn latest_incidents(
        &self,
        transaction: &mut sqlx::AnyConnection,
        fingerprints: &[&str],
    ) -> Result<HashMap<String, LatestIncident>, StoreError> {
        let mut latest = HashMap::with_capacity(fingerprints.len());
        for chunk in fingerprints.chunks(512) {
            // On PostgreSQL the list is padded to a power of two (repeating its last entry), so a
            // few prepared statements serve every batch.
            let length = match self.backend {
                Backend::Sqlite => chunk.len(),
                Backend::Postgres => chunk.len().next_power_of_two(),
            };
            let sql = format!(
                "SELECT i.id, i.fingerprint, i.status, i.resolved_at FROM incidents i JOIN \
                 (SELECT MAX(id) AS id FROM incidents WHERE fingerprint IN {} GROUP BY fingerprint) newest ON newest.id = i.id",
                self.backend.values(1, length)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for index in 0..length {
                query = query.bind(chunk[index.min(chunk.len() - 1)].to_string());
            }
            for row in query.fetch_all(&mut *transaction).await? {
                let state = LatestIncident {
                    id: row.try_get("id")?,
                    open: text(&row, "status")? != "resolved",
                    resolved_at: optional_time(&row, "resolved_at")?,
                };
                latest.insert(text(&row, "fingerprint")?, state);
            }
        }
        Ok(latest)
    }

    /// `count` incident ids nobody else will use, ascending. SQLite: the batch holds the write
    /// lock, so the next ids are free until it commits (inserting them moves `AUTOINCREMENT` on).
    /// PostgreSQL: taken from the sequence, which other replicas share.
    async fn reserve_incident_ids(
        &self,
        transaction: &mut sqlx::AnyConnection,
        count: usize,
    ) -> Result<Vec<i64>, StoreError> {
        if count == 0 {
            return Ok(Vec::new());
        }
        let count = count as i64;
        match self.backend {
            Backend::Sqlite => {
                let last: i64 = sqlx::query_scalar(
                    "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'incidents'), 0), \
                     COALESCE((SELECT MAX(id) FROM incidents), 0))",
                )
                .fetch_one(&mut *transaction)
                .await?;
                Ok((last + 1..=last + count).collect())
            }
            Backend::Postgres => {
                let mut ids: Vec<i64> = sqlx::query_scalar(
                    "SELECT nextval(pg_get_serial_sequence('incidents', 'id')) FROM generate_series(1::bigint, $1::bigint)",
                )
                .bind(count)
                .fetch_all(&mut *transaction)
                .await?;
                ids.sort_unstable();
                Ok(ids)
            }
        }
    }

    /// Inserts the incidents collected so far and their timers, so statements that change them
    /// find them.
    async fn write_incidents(
        &self,
        transaction: &mut sqlx::AnyConnection,
        rows: &mut Rows<'_>,
    ) -> Result<(), StoreError> {
        for chunk in self.backend.chunks(&rows.incidents) {
            let sql = format!(
                "INSERT INTO incidents (id, title, severity, status, impact, commander, fingerprint, policy, declared_by, started_at) VALUES {}",
                self.backend.values(chunk.len(), 10)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (id, new) in chunk {
                query = query
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
            query.execute(&mut *transaction).await?;
        }
        rows.incidents.clear();
        self.insert_timers(transaction, &rows.timers).await?;
        rows.timers.clear();
        Ok(())
    }

    /// The timeline events, outbox rows and alerts, after the incidents they refer to.
    async fn write_rest(&self, transaction: &mut sqlx::AnyConnection, rows: Rows<'_>) -> Result<(), StoreError> {
        let at = millis(rows.at);
        for chunk in self.backend.chunks(&rows.events) {
            let sql = format!(
                "INSERT INTO timeline (incident_id, at, kind, actor, detail) VALUES {}",
                self.backend.values(chunk.len(), 5)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (id, event) in chunk {
                query = query
                    .bind(*id)
                    .bind(millis(event.at))
                    .bind(event.kind.clone())
                    .bind(event.by.clone())
                    .bind(event.detail.to_string());
            }
            query.execute(&mut *transaction).await?;
        }
        for chunk in self.backend.chunks(&rows.notices) {
            let sql = format!(
                "INSERT INTO outbox (incident_id, kind, recipients, payload, created_at) VALUES {}",
                self.backend.values(chunk.len(), 5)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (id, kind) in chunk {
                query = query
                    .bind(*id)
                    .bind(kind.to_string())
                    .bind("[]")
                    .bind(json!({"incident_id": id}).to_string())
                    .bind(at);
            }
            query.execute(&mut *transaction).await?;
        }
        for chunk in self.backend.chunks(&rows.alerts) {
            let sql = format!(
                "INSERT INTO alerts (received_at, source, fingerprint, status, incident_id, payload) VALUES {}",
                self.backend.values(chunk.len(), 6)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for alert in chunk {
                query = query
                    .bind(at)
                    .bind(alert.source.clone())
                    .bind(alert.fingerprint.clone())
                    .bind(alert.status)
                    .bind(alert.incident_id)
                    .bind(alert.payload.clone());
            }
            query.execute(&mut *transaction).await?;
        }
        Ok(())
    }
}
