//! What every part of the chat core shares: who may do what (`[permissions]`), the connected
//! platforms, the escalation engine (store, clock, directory, templates), the catalogue, and the
//! bell that wakes the outbox deliverer; and [`CoreError`], how a part says it could not do what
//! was asked.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::Notify;

use super::{ChatAdapter, ChatError, Origin};
use crate::config::{PermissionsConfig, Person, Principal};
use crate::escalation::{DeclareError, Escalator};
use crate::incident::TransitionError;
use crate::runbook::{ArgError, Catalogue};
use crate::store::{Store, StoreError};

/// Who may do what, from `[permissions]`.
#[derive(Debug, Clone)]
pub struct Permissions {
    pub(crate) diagnose: Vec<Principal>,
    pub(crate) incident: Vec<Principal>,
    pub(crate) remediate: Vec<Principal>,
    pub(crate) channels: Vec<String>,
}

impl Permissions {
    pub fn from_config(config: &PermissionsConfig) -> Self {
        let list =
            |entries: &Vec<toml::Spanned<Principal>>| entries.iter().map(|entry| entry.get_ref().clone()).collect();
        Self {
            diagnose: list(&config.diagnose),
            incident: list(&config.incident),
            remediate: list(&config.remediate),
            channels: config.channels.clone(),
        }
    }

    fn describe(list: &[Principal]) -> String {
        if list.is_empty() {
            return "nobody (set it in [permissions] of firebell.toml)".to_string();
        }
        list.iter()
            .map(|principal| match principal {
                Principal::Everyone => "everyone".to_string(),
                Principal::Group(group) => format!("group {group}"),
                Principal::Person(person) => person.to_string(),
            })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Why the core could not do what an event asked. What the person can act on is said to them as
/// it is; what failed inside (the store, a platform) is logged in full and said in general words,
/// so a database's message never reaches a chat.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// Not allowed, not valid or not possible now: the text says why and what is valid.
    #[error("{0}")]
    Refused(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("chat platform: {0}")]
    Platform(#[from] ChatError),
}

impl From<String> for CoreError {
    fn from(text: String) -> Self {
        CoreError::Refused(text)
    }
}

impl From<&str> for CoreError {
    fn from(text: &str) -> Self {
        CoreError::Refused(text.to_string())
    }
}

impl From<DeclareError> for CoreError {
    fn from(error: DeclareError) -> Self {
        match error {
            DeclareError::Store(error) => CoreError::Store(error),
            unknown => CoreError::Refused(unknown.to_string()),
        }
    }
}

impl From<ArgError> for CoreError {
    fn from(error: ArgError) -> Self {
        CoreError::Refused(error.to_string())
    }
}

impl From<TransitionError> for CoreError {
    fn from(error: TransitionError) -> Self {
        CoreError::Refused(error.to_string())
    }
}

impl CoreError {
    /// What the person who asked is told.
    pub fn for_person(&self) -> String {
        match self {
            CoreError::Refused(text) => text.clone(),
            CoreError::Store(error) if !error.is_internal() => error.to_string(),
            CoreError::Store(error) => {
                tracing::error!(%error, "A chat request failed in the store");
                "firebell could not reach its store just now (the error is in its log); try again in a moment"
                    .to_string()
            }
            CoreError::Platform(error) => {
                tracing::error!(%error, "A chat request failed on its platform");
                "the chat platform did not take firebell's answer (the error is in its log); try again in a moment"
                    .to_string()
            }
        }
    }
}

/// The shared context of the chat core's parts (diagnoses, incident commands, approvals).
pub(crate) struct Context {
    pub(crate) catalogue: Arc<Catalogue>,
    pub(crate) escalator: Arc<Escalator>,
    pub(crate) permissions: Permissions,
    pub(crate) adapters: BTreeMap<&'static str, Arc<dyn ChatAdapter>>,
    /// Wakes the outbox deliverer after something was queued.
    deliver: Arc<Notify>,
}

impl Context {
    pub(crate) fn new(
        catalogue: Arc<Catalogue>,
        escalator: Arc<Escalator>,
        permissions: Permissions,
        adapters: BTreeMap<&'static str, Arc<dyn ChatAdapter>>,
        deliver: Arc<Notify>,
    ) -> Self {
        Self { catalogue, escalator, permissions, adapters, deliver }
    }

    pub(crate) fn store(&self) -> &Arc<dyn Store> {
        self.escalator.store()
    }

    pub(crate) fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.escalator.now()
    }

    /// Tells the outbox deliverer there is something new to deliver.
    pub(crate) fn notify_delivery(&self) {
        self.deliver.notify_one();
    }

    /// The incident whose thread `origin` is in, if it is in one.
    pub(crate) async fn incident_in_thread(&self, origin: &Origin) -> Result<Option<i64>, StoreError> {
        match &origin.thread {
            Some(thread) => self.store().incident_by_chat(origin.platform, &origin.channel, thread).await,
            None => Ok(None),
        }
    }

    fn allowed(&self, list: &[Principal], person: &Person) -> bool {
        let groups = &self.escalator.directory().groups;
        list.iter().any(|principal| match principal {
            Principal::Everyone => true,
            Principal::Person(allowed) => allowed == person,
            Principal::Group(group) => groups.get(group).is_some_and(|members| members.contains(person)),
        })
    }

    pub(crate) fn require(&self, list: &[Principal], origin: &Origin, what: &str) -> Result<(), String> {
        if self.allowed(list, &origin.user) {
            Ok(())
        } else {
            Err(format!("you ({}) may not {what}; allowed: {}", origin.user, Permissions::describe(list)))
        }
    }

    pub(crate) fn adapter(&self, platform: &str) -> Result<Arc<dyn ChatAdapter>, String> {
        self.adapters.get(platform).cloned().ok_or_else(|| format!("the {platform} platform is not connected"))
    }

    pub(crate) fn mention(&self, person: &Person) -> String {
        match self.adapters.get(person.platform.as_str()) {
            Some(adapter) => adapter.mention(&person.id),
            None => person.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_store_is_logged_but_never_quoted_to_the_person() {
        let leaked = "duplicate key value violates unique constraint \"incidents_pkey\" password=hunter2";
        let told = CoreError::Store(StoreError::Database(leaked.to_string())).for_person();
        assert!(!told.contains("hunter2") && !told.contains("incidents_pkey"), "{told}");
        assert!(told.contains("try again"), "{told}");
        assert!(!CoreError::Store(StoreError::Timeout).for_person().contains("store error"));
    }

    #[test]
    fn what_the_person_can_act_on_is_said_as_it_is() {
        assert_eq!(CoreError::Store(StoreError::NotFound(7)).for_person(), "there is no incident 7");
        assert_eq!(
            CoreError::from("you may not approve your own request").for_person(),
            "you may not approve your own request"
        );
        let declare =
            CoreError::from(DeclareError::UnknownPolicy { name: "gold".into(), known: vec!["default".into()] });
        assert!(matches!(declare, CoreError::Refused(_)), "{declare:?}");
        let told = declare.for_person();
        assert!(told.contains("gold") && told.contains("default"), "names the policy and the valid ones: {told}");
    }
}
