//! The alert lifecycle: what one alert does to the newest incident of its fingerprint. Pure
//! rules; a store applies them to a batch and writes what they decide.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

/// The newest incident of a fingerprint, as an alert finds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latest {
    pub id: i64,
    pub open: bool,
    pub resolved_at: Option<DateTime<Utc>>,
}

/// What an alert does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Firing, and no incident of its fingerprint is open or recently resolved.
    Open,
    /// Firing while its incident is open: counted on it, nothing new opened.
    Repeat(i64),
    /// Firing within the flap window after its incident resolved: the same incident opens again.
    Reopen(i64),
    /// Resolved, and its route resolves incidents.
    Resolve(i64),
    /// Resolved, but its route leaves resolving to people: only noted on the timeline.
    Note(i64),
    /// Resolved with no open incident.
    Ignore,
}

/// What an alert (`firing` or resolved; `resolves` when its route resolves incidents) does to
/// `latest` at `at`.
pub fn decide(
    latest: Option<&Latest>,
    firing: bool,
    resolves: bool,
    at: DateTime<Utc>,
    flap_window: Duration,
) -> Decision {
    match latest {
        Some(incident) if incident.open && !firing && resolves => Decision::Resolve(incident.id),
        Some(incident) if incident.open && !firing => Decision::Note(incident.id),
        Some(incident) if incident.open => Decision::Repeat(incident.id),
        _ if !firing => Decision::Ignore,
        Some(Latest { id, resolved_at: Some(resolved_at), .. }) if at - *resolved_at <= flap_window => {
            Decision::Reopen(*id)
        }
        _ => Decision::Open,
    }
}

/// The fingerprint's newest incident after `decision` at `at`: later alerts of the same batch
/// see it.
pub fn after(latest: Option<Latest>, decision: Decision, opened: Option<i64>, at: DateTime<Utc>) -> Option<Latest> {
    match decision {
        Decision::Open => opened.map(|id| Latest { id, open: true, resolved_at: None }),
        Decision::Reopen(id) => Some(Latest { id, open: true, resolved_at: None }),
        Decision::Resolve(id) => Some(Latest { id, open: false, resolved_at: Some(at) }),
        Decision::Repeat(_) | Decision::Note(_) | Decision::Ignore => latest,
    }
}

/// How many incidents a batch of `(fingerprint, firing)` alerts opens. Only the state before the
/// batch matters: once a fingerprint has an incident in the batch, later alerts repeat, resolve
/// or re-open it (resolved "now" is always within the flap window), so each opens at most one.
pub fn incidents_to_open<'a>(
    alerts: impl Iterator<Item = (&'a str, bool)>,
    latest: &HashMap<String, Latest>,
    at: DateTime<Utc>,
    flap_window: Duration,
) -> usize {
    let mut opening: Vec<&str> = alerts
        .filter(|(fingerprint, firing)| {
            *firing && decide(latest.get(*fingerprint), true, false, at, flap_window) == Decision::Open
        })
        .map(|(fingerprint, _)| fingerprint)
        .collect();
    opening.sort_unstable();
    opening.dedup();
    opening.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(minute: i64) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z").unwrap().to_utc() + Duration::minutes(minute)
    }

    const OPEN: Latest = Latest { id: 7, open: true, resolved_at: None };

    fn resolved_at(minute: i64) -> Latest {
        Latest { id: 7, open: false, resolved_at: Some(at(minute)) }
    }

    #[test]
    fn a_firing_alert_opens_repeats_or_reopens_within_the_flap_window() {
        let window = Duration::minutes(5);
        assert_eq!(decide(None, true, true, at(0), window), Decision::Open);
        assert_eq!(decide(Some(&OPEN), true, true, at(0), window), Decision::Repeat(7));
        assert_eq!(decide(Some(&resolved_at(0)), true, true, at(5), window), Decision::Reopen(7));
        assert_eq!(decide(Some(&resolved_at(0)), true, true, at(6), window), Decision::Open);
    }

    #[test]
    fn a_resolved_alert_resolves_only_where_its_route_lets_it_and_only_an_open_incident() {
        let window = Duration::minutes(5);
        assert_eq!(decide(Some(&OPEN), false, true, at(0), window), Decision::Resolve(7));
        assert_eq!(decide(Some(&OPEN), false, false, at(0), window), Decision::Note(7));
        assert_eq!(decide(Some(&resolved_at(0)), false, true, at(1), window), Decision::Ignore);
        assert_eq!(decide(None, false, true, at(0), window), Decision::Ignore);
    }

    #[test]
    fn a_batch_opens_one_incident_per_new_fingerprint_and_later_alerts_see_it() {
        let latest: HashMap<String, Latest> =
            [("open".to_string(), OPEN), ("flapped".to_string(), resolved_at(0))].into_iter().collect();
        let alerts =
            [("new", true), ("new", true), ("open", true), ("flapped", true), ("gone", false), ("other", true)];
        assert_eq!(incidents_to_open(alerts.into_iter(), &latest, at(1), Duration::minutes(5)), 2);

        let opened = after(None, Decision::Open, Some(9), at(1));
        assert_eq!(decide(opened.as_ref(), true, true, at(1), Duration::minutes(5)), Decision::Repeat(9));
        let resolved = after(opened, Decision::Resolve(9), None, at(2));
        assert_eq!(decide(resolved.as_ref(), true, true, at(2), Duration::zero()), Decision::Reopen(9));
    }
}
