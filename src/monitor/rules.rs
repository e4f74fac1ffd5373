//! What one run of a monitor does, as a pure function of its state and verdict: open an
//! incident, post the verdict change into its thread, resolve it, or nothing.

use crate::check::Status;
use crate::config::MonitorOpen;

/// How a monitor reads verdicts: what trips it, for how many runs, and whether ok runs resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub open: MonitorOpen,
    pub for_runs: u32,
    pub resolve: bool,
}

/// What the store remembers between runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct State {
    /// The newest run's verdict (none before the first run).
    pub last: Option<Status>,
    /// Runs in a row of the same kind as `last` (tripping, ok, or in between).
    pub streak: u32,
    /// Whether the monitor's incident is open.
    pub incident_open: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// `for` tripping runs in a row and no incident: open one, the diagnosis in its thread.
    Open,
    /// The verdict changed while the incident is open: say so in its thread.
    PostChange {
        from: Option<Status>,
        to: Status,
    },
    /// `for` ok runs in a row: resolve the incident.
    Resolve,
    Nothing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Tripping,
    Ok,
    Between,
}

impl Rule {
    fn kind(&self, verdict: Status) -> Kind {
        let threshold = match self.open {
            MonitorOpen::Warn => Some(Status::Warn),
            MonitorOpen::Crit => Some(Status::Crit),
            MonitorOpen::Error => Some(Status::Error),
            MonitorOpen::Never => None,
        };
        match threshold {
            Some(threshold) if verdict >= threshold => Kind::Tripping,
            _ if verdict == Status::Ok => Kind::Ok,
            _ => Kind::Between,
        }
    }

    /// The state after a run with `verdict`, and what to do about it.
    pub fn decide(&self, state: State, verdict: Status) -> (State, Action) {
        let kind = self.kind(verdict);
        let streak = match state.last {
            Some(last) if self.kind(last) == kind => state.streak.saturating_add(1),
            _ => 1,
        };
        let for_runs = self.for_runs.max(1);
        let action = if !state.incident_open {
            if kind == Kind::Tripping && streak >= for_runs { Action::Open } else { Action::Nothing }
        } else if self.resolve && kind == Kind::Ok && streak >= for_runs {
            Action::Resolve
        } else if state.last != Some(verdict) {
            Action::PostChange { from: state.last, to: verdict }
        } else {
            Action::Nothing
        };
        let incident_open = match action {
            Action::Open => true,
            Action::Resolve => false,
            _ => state.incident_open,
        };
        (State { last: Some(verdict), streak, incident_open }, action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::{Crit, Error, Ok, Warn};

    fn run(rule: Rule, verdicts: &[Status]) -> Vec<Action> {
        let mut state = State::default();
        verdicts
            .iter()
            .map(|verdict| {
                let (next, action) = rule.decide(state, *verdict);
                state = next;
                action
            })
            .collect()
    }

    const TWICE: Rule = Rule { open: MonitorOpen::Crit, for_runs: 2, resolve: true };

    #[test]
    fn opens_after_for_tripping_runs_in_a_row_and_not_before() {
        use Action::Nothing;
        assert_eq!(run(TWICE, &[Crit, Ok, Crit, Crit]), vec![Nothing, Nothing, Nothing, Action::Open]);
    }

    #[test]
    fn worse_than_open_counts_as_tripping() {
        assert_eq!(run(TWICE, &[Crit, Error])[1], Action::Open);
    }

    #[test]
    fn unchanged_runs_post_nothing_and_changes_post_once() {
        let actions = run(TWICE, &[Crit, Crit, Crit, Crit, Error, Error, Warn]);
        assert_eq!(
            actions[2..],
            [
                Action::Nothing,
                Action::Nothing,
                Action::PostChange { from: Some(Crit), to: Error },
                Action::Nothing,
                Action::PostChange { from: Some(Error), to: Warn },
            ]
        );
    }

    #[test]
    fn resolves_after_for_ok_runs_only_when_resolve_is_on() {
        let actions = run(TWICE, &[Crit, Crit, Ok, Ok, Ok]);
        assert_eq!(actions[2..], [Action::PostChange { from: Some(Crit), to: Ok }, Action::Resolve, Action::Nothing]);
        let manual = Rule { resolve: false, ..TWICE };
        let actions = run(manual, &[Crit, Crit, Ok, Ok, Ok]);
        assert_eq!(actions[2..], [Action::PostChange { from: Some(Crit), to: Ok }, Action::Nothing, Action::Nothing]);
    }

    #[test]
    fn warn_between_ok_runs_breaks_the_ok_streak() {
        let actions = run(TWICE, &[Crit, Crit, Ok, Warn, Ok, Ok]);
        assert_eq!(actions[5], Action::Resolve);
        assert_ne!(actions[4], Action::Resolve);
    }

    #[test]
    fn never_never_opens() {
        let never = Rule { open: MonitorOpen::Never, for_runs: 1, resolve: true };
        assert!(run(never, &[Error, Error, Crit]).iter().all(|action| *action == Action::Nothing));
    }

    #[test]
    fn opens_again_after_a_resolve_once_it_trips_for_runs_again() {
        let actions = run(TWICE, &[Crit, Crit, Ok, Ok, Crit, Crit]);
        assert_eq!(actions[3], Action::Resolve);
        assert_eq!(actions[4], Action::Nothing);
        assert_eq!(actions[5], Action::Open);
    }
}
