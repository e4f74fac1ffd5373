//! Monitors' schedules: a claim is one `UPDATE … RETURNING` that takes a lease (on PostgreSQL
//! over rows locked `FOR UPDATE SKIP LOCKED`, so replicas claiming at once split the due
//! monitors), and a run is recorded, its next run scheduled and its lease ended in one statement
//! that only the lease holder's result passes.

use std::collections::BTreeSet;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{SqlStore, optional_text, optional_time, text};
use crate::store::{MonitorResult, MonitorRow, MonitorSchedule, MonitorStore, StoreError, from_millis, millis};

const MONITOR_COLUMNS: &str = "name, schedule, next_run_at, lease_owner, lease_until, streak_verdict, streak_count, \
     last_verdict, last_run_at, incident_id, runs";

fn monitor_from_row(row: &AnyRow) -> Result<MonitorRow, StoreError> {
    Ok(MonitorRow {
        name: text(row, "name")?,
        schedule: text(row, "schedule")?,
        next_run_at: from_millis(row.try_get("next_run_at")?),
        lease_owner: optional_text(row, "lease_owner")?,
        lease_until: optional_time(row, "lease_until")?,
        streak_verdict: optional_text(row, "streak_verdict")?,
        streak_count: row.try_get("streak_count")?,
        last_verdict: optional_text(row, "last_verdict")?,
        last_run_at: optional_time(row, "last_run_at")?,
        incident_id: row.try_get("incident_id")?,
        runs: row.try_get("runs")?,
    })
}

#[async_trait]
impl MonitorStore for SqlStore {
    async fn sync_monitors(&self, monitors: &[MonitorSchedule]) -> Result<(), StoreError> {
        let mut transaction = self.begin().await?;
        for monitor in monitors {
            sqlx::query(
                "INSERT INTO monitors (name, schedule, next_run_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET schedule = excluded.schedule, next_run_at = excluded.next_run_at \
                 WHERE monitors.schedule <> excluded.schedule",
            )
            .bind(monitor.name.clone())
            .bind(monitor.schedule.clone())
            .bind(millis(monitor.first_run_at))
            .execute(&mut *transaction)
            .await?;
        }
        let configured: BTreeSet<&str> = monitors.iter().map(|monitor| monitor.name.as_str()).collect();
        let stored: Vec<String> = sqlx::query_scalar("SELECT name FROM monitors").fetch_all(&mut *transaction).await?;
        for name in stored.into_iter().filter(|name| !configured.contains(name.as_str())) {
            sqlx::query("DELETE FROM monitors WHERE name = $1").bind(name).execute(&mut *transaction).await?;
        }
        transaction.commit().await?;
        Ok(())
    }

    async fn claim_monitors(
        &self,
        now: DateTime<Utc>,
        owner: &str,
        lease_until: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<MonitorRow>, StoreError> {
        let lock = self.skip_locked();
        let sql = format!(
            "UPDATE monitors SET lease_owner = $1, lease_until = $2 \
             WHERE (lease_until IS NULL OR lease_until <= $3) AND next_run_at <= $3 AND name IN ( \
               SELECT name FROM monitors WHERE next_run_at <= $3 AND (lease_until IS NULL OR lease_until <= $3) \
               ORDER BY next_run_at, name LIMIT $4{lock}) \
             RETURNING {MONITOR_COLUMNS}"
        );
        // SQLite: the writer's BEGIN IMMEDIATE makes the claim one writer's at a time.
        let mut transaction = self.begin().await?;
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(owner.to_string())
            .bind(millis(lease_until))
            .bind(millis(now))
            .bind(limit)
            .fetch_all(&mut *transaction)
            .await?;
        transaction.commit().await?;
        let mut claimed = rows.iter().map(monitor_from_row).collect::<Result<Vec<_>, _>>()?;
        claimed.sort_by(|a, b| (a.next_run_at, &a.name).cmp(&(b.next_run_at, &b.name)));
        Ok(claimed)
    }

    async fn finish_monitor_run(&self, result: &MonitorResult) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE monitors SET lease_owner = NULL, lease_until = NULL, streak_verdict = $3, streak_count = $4, \
             last_verdict = $3, last_run_at = $5, next_run_at = $6, incident_id = $7, runs = runs + 1 \
             WHERE name = $1 AND lease_owner = $2",
        )
        .bind(result.name.clone())
        .bind(result.owner.clone())
        .bind(result.streak_verdict.clone())
        .bind(result.streak_count)
        .bind(millis(result.ran_at))
        .bind(millis(result.next_run_at))
        .bind(result.incident_id)
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_monitor(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE monitors SET lease_owner = NULL, lease_until = NULL WHERE name = $1 AND lease_owner = $2")
            .bind(name.to_string())
            .bind(owner.to_string())
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn monitors(&self) -> Result<Vec<MonitorRow>, StoreError> {
        let sql = format!("SELECT {MONITOR_COLUMNS} FROM monitors ORDER BY name");
        let rows = sqlx::query(AssertSqlSafe(sql)).fetch_all(&self.pool).await?;
        rows.iter().map(monitor_from_row).collect()
    }

    async fn next_monitor_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(CASE WHEN lease_until IS NOT NULL AND lease_until > next_run_at THEN lease_until ELSE next_run_at END) FROM monitors",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(next.map(from_millis))
    }

    async fn open_incident_with_fingerprint(&self, fingerprint: &str) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM incidents WHERE fingerprint = $1 AND status <> 'resolved' ORDER BY id DESC LIMIT 1",
        )
        .bind(fingerprint.to_string())
        .fetch_optional(&self.pool)
        .await?)
    }
}
