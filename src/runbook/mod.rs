//! `commands/*.toml` → the catalogue of chat commands: topics with their arguments, checks and
//! remediations, validated when they load. No IO here: callers hand in the files' text.

mod expr;
mod load;
mod runner;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use expr::{Expr, json_to_cel};
pub use runner::{CheckEvent, CheckRun, EVENT_QUEUE, Runner};

use crate::check::Action;
pub use crate::check::{DEFAULT_TIMEOUT, TargetRefs};
use crate::source::{LoadError, LoadErrors, SourceFile};
pub use crate::template::{ArgError, ArgSpec, Args, parse_pairs};

/// One topic: `/diagnose NAME`.
#[derive(Debug)]
pub struct Runbook {
    pub name: String,
    pub summary: String,
    /// A link to the team's written runbook, shown with the results.
    pub runbook_url: Option<String>,
    pub args: BTreeMap<String, ArgSpec>,
    /// The arguments the checks use: the ones `/diagnose` needs values for.
    pub check_args: BTreeSet<String>,
    pub checks: Vec<CheckSpec>,
    pub remediations: Vec<Remediation>,
    pub path: PathBuf,
}

impl Runbook {
    /// Arguments for a diagnosis: those the checks use must have values; the rest are checked
    /// if given.
    pub fn bind_args(&self, given: &[(String, String)]) -> Result<Args, ArgError> {
        Args::bind(&self.args, &self.check_args, given, &format!("diagnose {}", self.name))
    }

    /// Arguments for remediation `index`: those it uses must have values.
    pub fn bind_remediation_args(&self, index: usize, given: &[(String, String)]) -> Result<Args, ArgError> {
        let remediation = &self.remediations[index];
        Args::bind(&self.args, &remediation.args, given, &format!("remediate {}", remediation.name))
    }
}

/// One `[[checks]]` entry.
#[derive(Debug)]
pub struct CheckSpec {
    pub name: String,
    pub timeout: Duration,
    pub expect: Option<Expr>,
    pub warn: Option<Expr>,
    pub crit: Option<Expr>,
    pub action: Action,
}

/// One `[[remediations]]` entry: `/remediate NAME`, run only once approved.
#[derive(Debug)]
pub struct Remediation {
    pub name: String,
    pub summary: String,
    pub timeout: Duration,
    pub approvals: u32,
    /// Group names from `firebell.toml`.
    pub approvers: Vec<String>,
    pub self_approve: bool,
    /// When true over the diagnosis results, the remediation is offered as a button.
    pub suggest_when: Option<Expr>,
    /// The arguments this remediation uses.
    pub args: BTreeSet<String>,
    pub action: Action,
    /// Which checks re-run after it ran, and when (SPEC §11); `None` when `verify_checks = []`
    /// or the topic has no checks.
    pub verify: Option<Verify>,
}

/// How a remediation is verified: these checks (indices into the runbook's `checks`) re-run
/// `after` it ran, and it fixed things when every one of them is then ok.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verify {
    pub checks: Vec<usize>,
    pub after: Duration,
}

/// Every loaded runbook, by topic name.
#[derive(Debug, Default)]
pub struct Catalogue {
    runbooks: BTreeMap<String, Arc<Runbook>>,
    /// Remediation name → the topic that declares it.
    remediations: BTreeMap<String, String>,
}

impl Catalogue {
    /// Loads every file; a file with problems is left out and each problem reported.
    pub fn load(sources: &[SourceFile], targets: &TargetRefs) -> (Catalogue, Vec<LoadError>) {
        let mut catalogue = Catalogue::default();
        let mut errors = Vec::new();
        let mut origins: BTreeMap<String, PathBuf> = BTreeMap::new();
        for source in sources {
            let runbook = match load::load_runbook(source, targets) {
                Ok(runbook) => runbook,
                Err(file_errors) => {
                    errors.extend(file_errors);
                    continue;
                }
            };
            if let Some(first) = origins.get(&runbook.name) {
                errors.push(LoadError {
                    path: source.path.clone(),
                    line: 1,
                    message: format!("topic '{}' is already defined in {}", runbook.name, first.display()),
                });
                continue;
            }
            let mut clash = false;
            for remediation in &runbook.remediations {
                if let Some(topic) = catalogue.remediations.get(&remediation.name) {
                    clash = true;
                    errors.push(LoadError {
                        path: source.path.clone(),
                        line: 1,
                        message: format!("remediation '{}' is already defined by topic '{topic}'; names are global (/remediate NAME)", remediation.name),
                    });
                }
            }
            if clash {
                continue;
            }
            for remediation in &runbook.remediations {
                catalogue.remediations.insert(remediation.name.clone(), runbook.name.clone());
            }
            origins.insert(runbook.name.clone(), source.path.clone());
            catalogue.runbooks.insert(runbook.name.clone(), Arc::new(runbook));
        }
        (catalogue, errors)
    }

    /// Loads every file and fails if any has a problem.
    pub fn load_strict(sources: &[SourceFile], targets: &TargetRefs) -> Result<Catalogue, LoadErrors> {
        match Catalogue::load(sources, targets) {
            (catalogue, errors) if errors.is_empty() => Ok(catalogue),
            (_, errors) => Err(LoadErrors(errors)),
        }
    }

    pub fn get(&self, topic: &str) -> Option<Arc<Runbook>> {
        self.runbooks.get(topic).cloned()
    }

    pub fn runbooks(&self) -> impl Iterator<Item = &Arc<Runbook>> {
        self.runbooks.values()
    }

    pub fn topic_names(&self) -> Vec<&str> {
        self.runbooks.keys().map(String::as_str).collect()
    }

    /// The runbook declaring remediation `name`, and its index there.
    pub fn remediation(&self, name: &str) -> Option<(Arc<Runbook>, usize)> {
        let runbook = self.runbooks.get(self.remediations.get(name)?)?;
        let index = runbook.remediations.iter().position(|r| r.name == name)?;
        Some((runbook.clone(), index))
    }

    pub fn len(&self) -> usize {
        self.runbooks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.runbooks.is_empty()
    }
}
