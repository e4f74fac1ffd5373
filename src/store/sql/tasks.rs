//! Follow-ups and checklist items. A reminder is claimed, recorded and queued in one
//! transaction (`reminded_at` set only where it was NULL; on PostgreSQL over rows locked
//! `FOR UPDATE SKIP LOCKED`), so a restart, a crash or a second replica never reminds twice.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{SqlStore, optional_text, optional_time, text};
use crate::incident::tasks::{NewTask, Task};
use crate::incident::{TimelineEvent, TimelineKind};
use crate::store::{OutboxKind, OwnerResolver, Reminded, StoreError, TaskStore, from_millis, millis};

pub(super) const TASK_COLUMNS: &str =
    "id, incident_id, checklist, text, owner, due_at, created_at, created_by, done_at, done_by, reminded_at";

pub(super) fn task_from_row(row: &AnyRow) -> Result<Task, StoreError> {
    Ok(Task {
        id: row.try_get("id")?,
        incident_id: row.try_get("incident_id")?,
        checklist: optional_text(row, "checklist")?,
        text: text(row, "text")?,
        owner: optional_text(row, "owner")?,
        due_at: optional_time(row, "due_at")?,
        created_at: from_millis(row.try_get("created_at")?),
        created_by: optional_text(row, "created_by")?,
        done_at: optional_time(row, "done_at")?,
        done_by: optional_text(row, "done_by")?,
        reminded_at: optional_time(row, "reminded_at")?,
    })
}

impl SqlStore {
    async fn insert_task(
        connection: &mut sqlx::AnyConnection,
        incident_id: i64,
        checklist: Option<(&str, usize)>,
        new: &NewTask,
        at: DateTime<Utc>,
    ) -> Result<Option<Task>, StoreError> {
        // A checklist's item that exists already (another lane opened it) is left as it is.
        let conflict = if checklist.is_some() {
            " ON CONFLICT (incident_id, checklist, position) WHERE checklist IS NOT NULL DO NOTHING"
        } else {
            ""
        };
        let sql = format!(
            "INSERT INTO tasks (incident_id, checklist, position, text, owner, due_at, created_at, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8){conflict} RETURNING {TASK_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(incident_id)
            .bind(checklist.map(|(name, _)| name.to_string()))
            .bind(checklist.map_or(0, |(_, position)| position as i64))
            .bind(new.text.clone())
            .bind(new.owner.clone())
            .bind(new.due_at.map(millis))
            .bind(millis(at))
            .bind(new.created_by.clone())
            .fetch_optional(&mut *connection)
            .await?;
        row.as_ref().map(task_from_row).transpose()
    }

    async fn incident_exists(connection: &mut sqlx::AnyConnection, id: i64) -> Result<(), StoreError> {
        let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM incidents WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *connection)
            .await?;
        exists.map(|_| ()).ok_or(StoreError::NotFound(id))
    }
}

fn task_detail(task: &Task) -> serde_json::Value {
    json!({"task": task.id, "text": task.text, "owner": task.owner, "due_at": task.due_at, "checklist": task.checklist})
}

#[async_trait]
impl TaskStore for SqlStore {
    async fn add_followup(&self, incident_id: i64, new: NewTask, at: DateTime<Utc>) -> Result<Task, StoreError> {
        let mut transaction = self.begin().await?;
        Self::incident_exists(&mut transaction, incident_id).await?;
        let task = Self::insert_task(&mut transaction, incident_id, None, &new, at)
            .await?
            .ok_or_else(|| StoreError::Database("the follow-up was not recorded".into()))?;
        let event = TimelineEvent::new(at, TimelineKind::Followup, new.created_by.as_deref(), task_detail(&task));
        Self::insert_event(&mut transaction, incident_id, &event).await?;
        transaction.commit().await?;
        Ok(task)
    }

    async fn open_checklist(
        &self,
        incident_id: i64,
        name: &str,
        items: Vec<NewTask>,
        at: DateTime<Utc>,
    ) -> Result<Vec<Task>, StoreError> {
        let mut transaction = self.begin().await?;
        Self::incident_exists(&mut transaction, incident_id).await?;
        let mut opened = false;
        for (position, item) in items.iter().enumerate() {
            opened |=
                Self::insert_task(&mut transaction, incident_id, Some((name, position)), item, at).await?.is_some();
        }
        let sql =
            format!("SELECT {TASK_COLUMNS} FROM tasks WHERE incident_id = $1 AND checklist = $2 ORDER BY position");
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(incident_id)
            .bind(name.to_string())
            .fetch_all(&mut *transaction)
            .await?;
        let tasks = rows.iter().map(task_from_row).collect::<Result<Vec<_>, _>>()?;
        if opened {
            let texts: Vec<&str> = tasks.iter().map(|task| task.text.as_str()).collect();
            let event =
                TimelineEvent::new(at, TimelineKind::Checklist, None, json!({"checklist": name, "items": texts}));
            Self::insert_event(&mut transaction, incident_id, &event).await?;
        }
        transaction.commit().await?;
        Ok(tasks)
    }

    async fn task(&self, id: i64) -> Result<Task, StoreError> {
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?;
        row.as_ref().map(task_from_row).transpose()?.ok_or(StoreError::NoTask(id))
    }

    async fn followups(&self, include_done: bool, limit: i64) -> Result<Vec<Task>, StoreError> {
        let open = if include_done { "" } else { " AND done_at IS NULL" };
        let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE checklist IS NULL{open} ORDER BY id DESC LIMIT $1");
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(limit).fetch_all(&self.pool).await?;
        rows.iter().map(task_from_row).collect()
    }

    async fn complete_task(&self, id: i64, by: &str, at: DateTime<Utc>) -> Result<Option<Task>, StoreError> {
        let mut transaction = self.begin().await?;
        let sql = format!(
            "UPDATE tasks SET done_at = $2, done_by = $3 WHERE id = $1 AND done_at IS NULL RETURNING {TASK_COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id)
            .bind(millis(at))
            .bind(by.to_string())
            .fetch_optional(&mut *transaction)
            .await?;
        let Some(row) = row else {
            let exists: Option<i64> = sqlx::query_scalar("SELECT id FROM tasks WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *transaction)
                .await?;
            return match exists {
                Some(_) => Ok(None),
                None => Err(StoreError::NoTask(id)),
            };
        };
        let task = task_from_row(&row)?;
        let kind = if task.checklist.is_some() { TimelineKind::ChecklistDone } else { TimelineKind::FollowupDone };
        Self::insert_event(
            &mut transaction,
            task.incident_id,
            &TimelineEvent::new(at, kind, Some(by), task_detail(&task)),
        )
        .await?;
        if let Some(checklist) = &task.checklist {
            sqlx::query(
                "INSERT INTO outbox (incident_id, kind, recipients, payload, created_at) VALUES ($1, $2, '[]', $3, $4)",
            )
            .bind(task.incident_id)
            .bind(OutboxKind::Checklist.as_str())
            .bind(json!({"incident_id": task.incident_id, "checklist": checklist}).to_string())
            .bind(millis(at))
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        Ok(Some(task))
    }

    async fn remind_due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
        owners: &dyn OwnerResolver,
    ) -> Result<Vec<Reminded>, StoreError> {
        let mut transaction = self.begin().await?;
        let claim = self.skip_locked();
        let sql = format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE due_at <= $1 AND done_at IS NULL AND reminded_at IS NULL AND owner IS NOT NULL \
             ORDER BY due_at, id LIMIT $2{claim}"
        );
        let rows = sqlx::query(AssertSqlSafe(sql)).bind(millis(now)).bind(limit).fetch_all(&mut *transaction).await?;
        let mut reminded = Vec::with_capacity(rows.len());
        for row in &rows {
            let task = task_from_row(row)?;
            let claimed = sqlx::query("UPDATE tasks SET reminded_at = $2 WHERE id = $1 AND reminded_at IS NULL")
                .bind(task.id)
                .bind(millis(now))
                .execute(&mut *transaction)
                .await?;
            if claimed.rows_affected() != 1 {
                continue;
            }
            let notified: Vec<String> = task
                .owner
                .as_deref()
                .map(|owner| owners.owners(owner, now))
                .unwrap_or_default()
                .iter()
                .map(ToString::to_string)
                .collect();
            let mut detail = task_detail(&task);
            detail["notified"] = json!(notified);
            Self::insert_event(
                &mut transaction,
                task.incident_id,
                &TimelineEvent::new(now, TimelineKind::Reminded, None, detail),
            )
            .await?;
            // Nobody behind the owner (an empty group): the thread is still told.
            sqlx::query(
                "INSERT INTO outbox (incident_id, kind, recipients, payload, created_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(task.incident_id)
            .bind(OutboxKind::Reminder.as_str())
            .bind(json!(notified).to_string())
            .bind(json!({"incident_id": task.incident_id, "task": task.id}).to_string())
            .bind(millis(now))
            .execute(&mut *transaction)
            .await?;
            reminded.push(Reminded { task: Task { reminded_at: Some(now), ..task }, notified });
        }
        transaction.commit().await?;
        Ok(reminded)
    }

    async fn next_task_due(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(due_at) FROM tasks WHERE done_at IS NULL AND reminded_at IS NULL AND owner IS NOT NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(next.map(from_millis))
    }

    async fn set_checklist_message(
        &self,
        incident_id: i64,
        checklist: &str,
        platform: &str,
        channel: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO checklist_messages (incident_id, checklist, platform, channel, message) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (incident_id, checklist, platform) DO UPDATE SET channel = excluded.channel, message = excluded.message",
        )
        .bind(incident_id)
        .bind(checklist.to_string())
        .bind(platform.to_string())
        .bind(channel.to_string())
        .bind(message.to_string())
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn checklist_message(
        &self,
        incident_id: i64,
        checklist: &str,
        platform: &str,
    ) -> Result<Option<(String, String)>, StoreError> {
        let row = sqlx::query(
            "SELECT channel, message FROM checklist_messages WHERE incident_id = $1 AND checklist = $2 AND platform = $3",
        )
        .bind(incident_id)
        .bind(checklist.to_string())
        .bind(platform.to_string())
        .fetch_optional(&self.writer)
        .await?;
        row.map(|row| Ok((text(&row, "channel")?, text(&row, "message")?))).transpose()
    }
}
