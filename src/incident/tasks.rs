//! Things to do about an incident (SPEC §13): follow-ups people assign in chat, and the items of
//! the checklists `[[checklists]]` opens when an incident is declared or resolved. Each has an
//! owner and a due time; an item still open when due reminds its owner once.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Severity;
use crate::config::ChecklistConfig;
pub use crate::config::ChecklistOn;

/// A follow-up or a checklist item, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Task {
    pub id: i64,
    pub incident_id: i64,
    /// The checklist it belongs to; `None` for a follow-up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub checklist: Option<String>,
    pub text: String,
    /// `slack:U1`, `group:leads`, `schedule:primary`.
    pub owner: Option<String>,
    pub due_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub created_by: Option<String>,
    pub done_at: Option<DateTime<Utc>>,
    pub done_by: Option<String>,
    pub reminded_at: Option<DateTime<Utc>>,
}

impl Task {
    pub fn is_done(&self) -> bool {
        self.done_at.is_some()
    }

    /// Open past its due time.
    pub fn is_overdue(&self, now: DateTime<Utc>) -> bool {
        !self.is_done() && self.due_at.is_some_and(|due| due <= now)
    }
}

/// What recording a task needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTask {
    pub text: String,
    pub owner: Option<String>,
    pub due_at: Option<DateTime<Utc>>,
    pub created_by: Option<String>,
}

/// One checklist of an incident and the state of its items, in their order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChecklistState {
    pub name: String,
    pub items: Vec<Task>,
}

impl ChecklistState {
    pub fn done(&self) -> usize {
        self.items.iter().filter(|item| item.is_done()).count()
    }
}

/// Groups an incident's tasks (in id order) into its follow-ups and its checklists.
pub fn split(tasks: Vec<Task>) -> (Vec<Task>, Vec<ChecklistState>) {
    let mut followups = Vec::new();
    let mut checklists: Vec<ChecklistState> = Vec::new();
    for task in tasks {
        match task.checklist.clone() {
            None => followups.push(task),
            Some(name) => match checklists.iter_mut().find(|checklist| checklist.name == name) {
                Some(checklist) => checklist.items.push(task),
                None => checklists.push(ChecklistState { name, items: vec![task] }),
            },
        }
    }
    (followups, checklists)
}

/// A `[[checklists]]` entry, built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checklist {
    pub name: String,
    pub on: ChecklistOn,
    /// Empty: every severity.
    pub severities: Vec<Severity>,
    pub items: Vec<ChecklistItem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecklistItem {
    pub text: String,
    /// Due this long after the checklist opened.
    pub after: chrono::Duration,
    pub owner: Option<String>,
}

impl Checklist {
    pub fn from_config(config: &ChecklistConfig) -> Checklist {
        Checklist {
            name: config.name.get_ref().clone(),
            on: config.on,
            severities: config.severities.clone().unwrap_or_default(),
            items: config
                .items
                .get_ref()
                .iter()
                .map(|item| ChecklistItem {
                    text: item.text.get_ref().clone(),
                    after: chrono::Duration::from_std(
                        item.after.as_ref().map(|after| after.get_ref().0).unwrap_or_default(),
                    )
                    .unwrap_or(chrono::Duration::MAX),
                    owner: item.owner.as_ref().map(|owner| owner.get_ref().to_string()),
                })
                .collect(),
        }
    }

    /// Whether it opens for an incident of `severity` at `on`.
    pub fn applies(&self, on: ChecklistOn, severity: Severity) -> bool {
        self.on == on && (self.severities.is_empty() || self.severities.contains(&severity))
    }

    /// Its items as tasks of a checklist opened at `opened_at`.
    pub fn tasks(&self, opened_at: DateTime<Utc>) -> Vec<NewTask> {
        self.items
            .iter()
            .map(|item| NewTask {
                text: item.text.clone(),
                owner: item.owner.clone(),
                due_at: Some(opened_at + item.after),
                created_by: None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: i64, checklist: Option<&str>) -> Task {
        Task {
            id,
            incident_id: 1,
            checklist: checklist.map(str::to_string),
            text: format!("task {id}"),
            owner: None,
            due_at: None,
            created_at: DateTime::UNIX_EPOCH,
            created_by: None,
            done_at: None,
            done_by: None,
            reminded_at: None,
        }
    }

    #[test]
    fn tasks_split_into_followups_and_checklists_in_order() {
        let (followups, checklists) =
            split(vec![task(1, None), task(2, Some("post")), task(3, Some("security")), task(4, Some("post"))]);
        assert_eq!(followups.iter().map(|task| task.id).collect::<Vec<_>>(), [1]);
        let names: Vec<(&str, Vec<i64>)> = checklists
            .iter()
            .map(|checklist| (checklist.name.as_str(), checklist.items.iter().map(|item| item.id).collect()))
            .collect();
        assert_eq!(names, [("post", vec![2, 4]), ("security", vec![3])]);
    }

    #[test]
    fn a_checklist_applies_to_its_trigger_and_severities() {
        let checklist = Checklist {
            name: "post".into(),
            on: ChecklistOn::Resolved,
            severities: vec![Severity::Critical, Severity::High],
            items: vec![ChecklistItem { text: "Post-mortem".into(), after: chrono::Duration::hours(48), owner: None }],
        };
        assert!(checklist.applies(ChecklistOn::Resolved, Severity::High));
        assert!(!checklist.applies(ChecklistOn::Resolved, Severity::Low));
        assert!(!checklist.applies(ChecklistOn::Declared, Severity::High));
        let opened = DateTime::UNIX_EPOCH;
        assert_eq!(checklist.tasks(opened)[0].due_at, Some(opened + chrono::Duration::hours(48)));
    }
}
