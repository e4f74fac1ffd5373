//! Escalation policies from `firebell.toml`, and the [`Directory`] that turns a due step into
//! the people to notify (users, group members, whoever a schedule has on call).

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::schedule::Schedule;
use crate::config::{Config, NotifyTarget, Person, PolicyConfig};
use crate::store::{DueTimer, NewTimer, OwnerResolver, StepRecipients, StepResolver};

/// A round with nothing else to go by lasts this long before it repeats.
const DEFAULT_ROUND: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone)]
pub struct PolicyStep {
    pub after: Duration,
    pub notify: Vec<NotifyTarget>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub name: String,
    /// Sorted by offset.
    pub steps: Vec<PolicyStep>,
    pub repeat: u32,
    /// How long one round lasts; round N starts N × this after the trigger.
    pub round_length: Duration,
}

impl Policy {
    pub fn from_config(config: &PolicyConfig) -> Policy {
        let mut steps: Vec<PolicyStep> = config
            .steps
            .iter()
            .map(|step| PolicyStep {
                after: step.after.0,
                notify: step.notify.iter().map(|target| target.get_ref().clone()).collect(),
            })
            .collect();
        steps.sort_by_key(|step| step.after);
        let round_length = config.repeat_every.map(|every| every.0).unwrap_or_else(|| default_round_length(&steps));
        Policy { name: config.name.get_ref().clone(), steps, repeat: config.repeat, round_length }
    }

    /// Every step of every round, as timers to store when an incident opens at `started_at`.
    pub fn timers(&self, started_at: DateTime<Utc>) -> Vec<NewTimer> {
        (0..=self.repeat)
            .flat_map(|round| {
                self.steps.iter().enumerate().map(move |(step, policy_step)| {
                    // Config bounds `after`, `repeat_every` and `repeat`, so this never saturates
                    // for a loaded policy; if it did, the step would wait for ever rather than
                    // page at once.
                    let offset = self
                        .round_length
                        .checked_mul(round)
                        .and_then(|start| start.checked_add(policy_step.after))
                        .and_then(|offset| chrono::Duration::from_std(offset).ok());
                    NewTimer {
                        policy: self.name.clone(),
                        step,
                        round,
                        fire_at: offset
                            .and_then(|offset| started_at.checked_add_signed(offset))
                            .unwrap_or(DateTime::<Utc>::MAX_UTC),
                    }
                })
            })
            .collect()
    }
}

/// The last offset plus the gap before it: 0/15/30/60 min repeats after 90 min.
fn default_round_length(steps: &[PolicyStep]) -> Duration {
    let length = match steps {
        [] => Duration::ZERO,
        [only] => only.after + DEFAULT_ROUND,
        [.., before, last] => last.after + (last.after - before.after).max(Duration::from_secs(60)),
    };
    length.max(Duration::from_secs(60))
}

/// Policies, groups and schedules: who a step reaches at a given moment.
#[derive(Debug, Default)]
pub struct Directory {
    pub policies: BTreeMap<String, Policy>,
    pub groups: BTreeMap<String, Vec<Person>>,
    pub schedules: BTreeMap<String, Schedule>,
}

impl Directory {
    pub fn from_config(config: &Config) -> Result<Directory, String> {
        let schedules = config
            .schedules
            .iter()
            .map(|schedule| Schedule::from_config(schedule).map(|built| (schedule.name.get_ref().clone(), built)))
            .collect::<Result<_, _>>()?;
        Ok(Directory {
            policies: config
                .policies
                .iter()
                .map(|policy| (policy.name.get_ref().clone(), Policy::from_config(policy)))
                .collect(),
            groups: config
                .groups
                .iter()
                .map(|(name, members)| (name.clone(), members.iter().map(|member| member.get_ref().clone()).collect()))
                .collect(),
            schedules,
        })
    }

    /// The policy an incident follows when none is named: `default` if it exists.
    pub fn default_policy(&self) -> Option<&Policy> {
        self.policies.get("default")
    }

    /// The people behind `targets` at `at`, each once, in order.
    pub fn people(&self, targets: &[NotifyTarget], at: DateTime<Utc>) -> Vec<Person> {
        let mut people: Vec<Person> = Vec::new();
        for target in targets {
            let found: Vec<Person> = match target {
                NotifyTarget::User(person) => vec![person.clone()],
                NotifyTarget::Group(group) => self.groups.get(group).cloned().unwrap_or_default(),
                NotifyTarget::Schedule(schedule) => {
                    self.schedules.get(schedule).map(|s| vec![s.on_call(at).person]).unwrap_or_default()
                }
            };
            for person in found {
                if !people.contains(&person) {
                    people.push(person);
                }
            }
        }
        people
    }
}

fn target_name(target: &NotifyTarget) -> String {
    match target {
        NotifyTarget::User(person) => format!("user:{person}"),
        NotifyTarget::Group(group) => format!("group:{group}"),
        NotifyTarget::Schedule(schedule) => format!("schedule:{schedule}"),
    }
}

impl OwnerResolver for Directory {
    fn owners(&self, owner: &str, now: DateTime<Utc>) -> Vec<Person> {
        // Owners were checked when they were written; one that no longer parses has nobody.
        NotifyTarget::parse_owner(owner).map(|target| self.people(&[target], now)).unwrap_or_default()
    }
}

impl StepResolver for Directory {
    fn recipients(&self, timer: &DueTimer, now: DateTime<Utc>) -> StepRecipients {
        // A policy edited since the incident opened may have lost this step: nobody to notify.
        let Some(step) = self.policies.get(&timer.policy).and_then(|policy| policy.steps.get(timer.step)) else {
            return StepRecipients::default();
        };
        StepRecipients {
            people: self.people(&step.notify, now),
            targets: step.notify.iter().map(target_name).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::SourceFile;

    fn policy(text: &str) -> Policy {
        let config = Config::parse(&SourceFile::new("firebell.toml", text)).unwrap();
        Policy::from_config(&config.policies[0])
    }

    #[test]
    fn the_seed_policy_repeats_after_its_last_gap() {
        let policy = policy(
            r#"
[groups]
a = ["slack:U1"]
[[policies]]
name = "default"
repeat = 1
steps = [ { after = "15m", notify = ["group:a"] }, { after = "0s", notify = ["group:a"] }, { after = "30m", notify = ["group:a"] }, { after = "60m", notify = ["group:a"] } ]
"#,
        );
        let start = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z").unwrap().to_utc();
        let minutes: Vec<(u32, usize, i64)> =
            policy.timers(start).iter().map(|t| (t.round, t.step, (t.fire_at - start).num_minutes())).collect();
        assert_eq!(
            minutes,
            vec![(0, 0, 0), (0, 1, 15), (0, 2, 30), (0, 3, 60), (1, 0, 90), (1, 1, 105), (1, 2, 120), (1, 3, 150)]
        );
    }

    #[test]
    fn repeat_every_sets_the_round_length() {
        let policy = policy(
            "[groups]\na = [\"slack:U1\"]\n[[policies]]\nname = \"p\"\nrepeat = 2\nrepeat_every = \"10m\"\nsteps = [ { after = \"0s\", notify = [\"group:a\"] } ]\n",
        );
        let start = DateTime::parse_from_rfc3339("2026-11-22T10:00:00Z").unwrap().to_utc();
        let offsets: Vec<i64> = policy.timers(start).iter().map(|t| (t.fire_at - start).num_minutes()).collect();
        assert_eq!(offsets, vec![0, 10, 20]);
    }

    #[test]
    fn people_are_deduplicated_in_order() {
        let config = Config::parse(&SourceFile::new(
            "firebell.toml",
            "[groups]\nops = [\"slack:U1\", \"slack:U2\"]\nempty = []\n",
        ))
        .unwrap();
        let directory = Directory::from_config(&config).unwrap();
        let targets = vec![
            NotifyTarget::User(Person::parse("slack:U2").unwrap()),
            NotifyTarget::Group("ops".into()),
            NotifyTarget::Group("empty".into()),
        ];
        let people: Vec<String> = directory.people(&targets, Utc::now()).iter().map(ToString::to_string).collect();
        assert_eq!(people, ["slack:U2", "slack:U1"]);
        assert!(directory.people(&[NotifyTarget::Group("empty".into())], Utc::now()).is_empty());
    }
}
