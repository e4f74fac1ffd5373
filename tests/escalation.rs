//! The escalation stories, told once and run against both stores: SQLite (a file of each test's
//! own) and PostgreSQL (a database of each test's own). Time is a manual clock and the tests
//! call `fire_due(now)` themselves, so every assertion is about *which* steps fire at *which*
//! instant — never about how long anything took.

#[macro_use]
mod app;
mod support;

use std::collections::BTreeMap;

use app::{Backend, Harness, escalations, events, mins, secs, t0};
use firebell::escalation::DeclareError;
use firebell::incident::{IncidentStatus, Resolution};
use firebell::store::StoreError;
use serde_json::json;

/// People, a daily rotation that hands over at 09:00 UTC (bob until 2026-01-03 09:00, carol
/// after), and one policy per story.
const POLICIES: &str = r#"
[groups]
ops = ["slack:U2", "discord:42"]
empty = []

[[schedules]]
name = "primary"
rotation = "daily"
handoff = "09:00"
timezone = "UTC"
start = "2026-01-01"
members = ["console:alice", "console:bob", "console:carol"]

[[policies]]
name = "default"
steps = [
  { after = "0s", notify = ["user:slack:U1", "schedule:primary"] },
  { after = "10m", notify = ["group:ops"] },
  { after = "20m", notify = ["schedule:primary", "user:slack:U1"] },
]

[[policies]]
name = "repeating"
repeat = 1
repeat_every = "30m"
steps = [
  { after = "0s", notify = ["group:ops"] },
  { after = "10m", notify = ["user:slack:U1"] },
]

[[policies]]
name = "repeating_default"
repeat = 1
steps = [
  { after = "0s", notify = ["group:ops"] },
  { after = "10m", notify = ["user:slack:U1"] },
]

[[policies]]
name = "skipping"
steps = [
  { after = "0s", notify = ["user:slack:U1"] },
  { after = "5m", notify = ["group:empty"] },
  { after = "15m", notify = ["group:ops"] },
  { after = "25m", notify = ["user:slack:U3"] },
]

[[policies]]
name = "empty_first"
steps = [
  { after = "0s", notify = ["group:empty"] },
  { after = "10m", notify = ["user:slack:U1"] },
]
"#;

fn people(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| name.to_string()).collect()
}

on_both_backends!(
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)];
    steps_fire_at_their_offsets_and_not_before,
    acknowledging_stops_the_later_steps_even_overdue_ones,
    resolving_cancels_the_pending_steps_from_triggered_and_from_acknowledged,
    repeat_runs_the_steps_again_after_repeat_every,
    repeat_without_repeat_every_starts_the_next_round_after_the_last_gap,
    a_step_with_nobody_to_notify_is_skipped_and_the_next_step_fires_at_once,
    firing_again_at_the_same_instant_fires_nothing,
    two_engines_racing_on_one_store_fire_each_step_once,
    without_a_default_policy_nothing_is_scheduled,
    an_unknown_policy_is_refused_with_the_list_of_policies,
    times_to_acknowledge_and_resolve_come_from_the_stored_times,
);

async fn steps_fire_at_their_offsets_and_not_before(backend: Backend) {
    let Some(h) = Harness::new(backend, POLICIES).await else {
        return;
    };
    let incident = h.declare("Signals are stale", None).await;
    assert_eq!(incident.policy.as_deref(), Some("default"));
    assert_eq!(incident.started_at, t0());
    assert_eq!(h.pending().await, 3);
    let declared = events(&incident, "declared");
    assert_eq!(declared.len(), 1, "{:?}", incident.timeline);
    assert_eq!(declared[0].detail["steps_scheduled"], json!(3));

    // Step 0 is due at once: user and the schedule's person on call at 08:50 (bob).
    let fired = h.fire_at(secs(0)).await;
    assert_eq!(fired, vec![(incident.id, 0, 0, people(&["slack:U1", "console:bob"]))]);
    assert_eq!(h.pending().await, 2);

    // One second before 10 minutes: nothing; at 10 minutes exactly: step 1, the group.
    assert_eq!(h.fire_at(mins(10) - secs(1)).await, vec![]);
    let fired = h.fire_at(mins(10)).await;
    assert_eq!(fired, vec![(incident.id, 1, 0, people(&["slack:U2", "discord:42"]))]);

    // Step 2 at 20 minutes names whoever is on call *then*: carol took over at 09:00.
    assert_eq!(h.fire_at(mins(20) - secs(1)).await, vec![]);
    let fired = h.fire_at(mins(20)).await;
    assert_eq!(fired, vec![(incident.id, 2, 0, people(&["console:carol", "slack:U1"]))]);
    assert_eq!(h.pending().await, 0);
    assert_eq!(h.fire_at(mins(24 * 60)).await, vec![], "a policy without repeat has nothing more to fire");

    let incident = h.incident(incident.id).await;
    assert_eq!(
        escalations(&incident),
        vec![
            (0, 0, people(&["slack:U1", "console:bob"]), t0()),
            (1, 0, people(&["slack:U2", "discord:42"]), t0() + mins(10)),
            (2, 0, people(&["console:carol", "slack:U1"]), t0() + mins(20)),
        ]
    );
    let step2 = &events(&incident, "escalated")[2].detail;
    assert_eq!(step2["targets"], json!(["schedule:primary", "user:slack:U1"]));
    assert_eq!(incident.status, IncidentStatus::Triggered, "escalating does not change the state");
    assert_eq!(
        h.escalation_outbox().await,
        vec![
            (incident.id, 0, 0, people(&["slack:U1", "console:bob"])),
            (incident.id, 1, 0, people(&["slack:U2", "discord:42"])),
            (incident.id, 2, 0, people(&["console:carol", "slack:U1"])),
        ]
    );
}

async fn acknowledging_stops_the_later_steps_even_overdue_ones(backend: Backend) {
    let Some(h) = Harness::new(backend, POLICIES).await else {
        return;
    };
    let incident = h.declare("Queue backlog", None).await;
    assert_eq!(h.fire_at(secs(0)).await.len(), 1);

    // Step 1 came due at 10 minutes but the engine has not run since; the ack at 12 minutes
    // stops it as well as step 2.
    h.clock.set(t0() + mins(12));
    let acknowledged = h.escalator.acknowledge(incident.id, "slack:U1").await.expect("acknowledging works");
    assert_eq!(acknowledged.status, IncidentStatus::Acknowledged);
    assert_eq!(acknowledged.acknowledged_by.as_deref(), Some("slack:U1"));
    assert_eq!(h.pending().await, 0);
    let ack = events(&acknowledged, "acknowledged");
    assert_eq!(ack.len(), 1);
    assert_eq!(
        (ack[0].at, ack[0].by.as_deref(), &ack[0].detail["cancelled_steps"]),
        (t0() + mins(12), Some("slack:U1"), &json!(2))
    );

    assert_eq!(h.fire_at(mins(12)).await, vec![]);
    assert_eq!(h.fire_at(mins(30)).await, vec![]);
    assert_eq!(h.fire_at(mins(60 * 24 * 30)).await, vec![], "nothing fires after an ack, even a month later");
    let incident = h.incident(incident.id).await;
    assert_eq!(escalations(&incident).len(), 1, "{:?}", incident.timeline);
    assert_eq!(h.escalation_outbox().await.len(), 1);

    // A second ack is refused and says who acknowledged when; nothing changes.
    let error = h.escalator.acknowledge(incident.id, "slack:U2").await.unwrap_err();
    assert!(matches!(error, StoreError::Transition(_)), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("incident {} was already acknowledged by slack:U1 at 2026-01-03T09:02:00.250+00:00", incident.id)
    );
    let after = h.incident(incident.id).await;
    assert_eq!(after.timeline, incident.timeline);
    assert_eq!(after.acknowledged_by.as_deref(), Some("slack:U1"));
}

async fn resolving_cancels_the_pending_steps_from_triggered_and_from_acknowledged(backend: Backend) {
    let Some(h) = Harness::new(backend, POLICIES).await else {
        return;
    };
    let straight = h.declare("Resolved without an ack", None).await;
    let acked = h.declare("Acknowledged, then resolved", None).await;
    assert_eq!(h.pending().await, 6);
    assert_eq!(h.fire_at(secs(0)).await.len(), 2);

    h.clock.set(t0() + mins(1));
    h.escalator.acknowledge(acked.id, "slack:U2").await.expect("acknowledging works");
    assert_eq!(h.pending().await, 2, "the ack cancels only its own incident's steps");

    h.clock.set(t0() + mins(3));
    let resolution = Resolution {
        root_cause: Some("Scheduler lost its lock".into()),
        fix: Some("Restarted the scheduler".into()),
        prevention: Some("Alert on a stale lock".into()),
    };
    let resolved =
        h.escalator.resolve(straight.id, "slack:U1", resolution).await.expect("resolving from triggered works");
    assert_eq!(resolved.status, IncidentStatus::Resolved);
    assert_eq!(resolved.acknowledged_at, None);
    assert_eq!(h.pending().await, 0);
    let event = events(&resolved, "resolved");
    assert_eq!(event.len(), 1);
    assert_eq!(event[0].by.as_deref(), Some("slack:U1"));
    assert_eq!(event[0].detail["cancelled_steps"], json!(2));
    assert_eq!(event[0].detail["root_cause"], json!("Scheduler lost its lock"));

    h.clock.set(t0() + mins(30));
    let resolved = h
        .escalator
        .resolve(acked.id, "slack:U2", Resolution::default())
        .await
        .expect("resolving from acknowledged works");
    assert_eq!(resolved.status, IncidentStatus::Resolved);
    assert_eq!(events(&resolved, "resolved")[0].detail["cancelled_steps"], json!(0));

    for at in [mins(10), mins(20), mins(60 * 24)] {
        assert_eq!(h.fire_at(at).await, vec![], "nothing fires after resolve (at +{at})");
    }
    for id in [straight.id, acked.id] {
        let incident = h.incident(id).await;
        assert_eq!(escalations(&incident).iter().map(|e| (e.0, e.1)).collect::<Vec<_>>(), vec![(0, 0)]);
    }

    // Resolved is final: no second resolve, no ack.
    let error = h.escalator.resolve(straight.id, "slack:U3", Resolution::default()).await.unwrap_err();
    assert!(error.to_string().contains("is resolved by slack:U1"), "{error}");
    let error = h.escalator.acknowledge(straight.id, "slack:U3").await.unwrap_err();
    assert!(matches!(error, StoreError::Transition(_)), "{error:?}");
    let incident = h.incident(straight.id).await;
    assert_eq!(incident.resolved_by.as_deref(), Some("slack:U1"));
    assert_eq!(incident.root_cause.as_deref(), Some("Scheduler lost its lock"));
    assert_eq!(incident.fix.as_deref(), Some("Restarted the scheduler"));
    assert_eq!(incident.prevention.as_deref(), Some("Alert on a stale lock"));
    assert_eq!(events(&incident, "resolved").len(), 1);
    assert_eq!(events(&incident, "acknowledged").len(), 0);

    let open = h.store().incidents(false, 100).await.expect("listing works");
    assert!(open.is_empty(), "both are resolved: {open:?}");
    let all = h.store().incidents(true, 100).await.expect("listing works");
    assert_eq!(all.iter().map(|incident| incident.id).collect::<Vec<_>>(), vec![acked.id, straight.id], "newest first");
}

async fn repeat_runs_the_steps_again_after_repeat_every(backend: Backend) {
    let Some(h) = Harness::new(backend, POLICIES).await else {
        return;
    };
    let incident = h.declare("Nobody answers", Some("repeating")).await;
    assert_eq!(h.pending().await, 4, "two steps, two rounds");
    let ops = people(&["slack:U2", "discord:42"]);
    let u1 = people(&["slack:U1"]);
    let id = incident.id;

    assert_eq!(h.fire_at(secs(0)).await, vec![(id, 0, 0, ops.clone())]);
    assert_eq!(h.fire_at(mins(10)).await, vec![(id, 1, 0, u1.clone())]);
    // The second round starts 30 minutes (repeat_every) after the trigger.
    assert_eq!(h.fire_at(mins(30) - secs(1)).await, vec![]);
    assert_eq!(h.fire_at(mins(30)).await, vec![(id, 0, 1, ops.clone())]);
    assert_eq!(h.fire_at(mins(40) - secs(1)).await, vec![]);
    assert_eq!(h.fire_at(mins(40)).await, vec![(id, 1, 1, u1.clone())]);
    assert_eq!(h.fire_at(mins(24 * 60)).await, vec![], "repeat = 1 means two rounds, no third");

    let incident = h.incident(id).await;
    let seen: Vec<(u64, u64, chrono::DateTime<chrono::Utc>)> =
        escalations(&incident).into_iter().map(|(step, repeat, _, at)| (step, repeat, at)).collect();
    assert_eq!(seen, vec![(0, 0, t0()), (1, 0, t0() + mins(10)), (0, 1, t0() + mins(30)), (1, 1, t0() + mins(40))]);
    assert_eq!(
        h.escalation_outbox().await.iter().map(|item| (item.1, item.2)).collect::<Vec<_>>(),
        vec![(0, 0), (1, 0), (0, 1), (1, 1)]
    );
}

async fn repeat_without_repeat_every_starts_the_next_round_after_the_last_gap(backend: Backend) {
    let Some(h) = Harness::new(backend, POLICIES).await else {
        return;
    };
    let incident = h.declare("Nobody answers", Some("repeating_default")).await;
    let id = incident.id;

    assert_eq!(h.fire_at(secs(0)).await.len(), 1);
    assert_eq!(h.fire_at(mins(10)).await.len(), 1);
    // Steps at 0 and 10 minutes: the round lasts the last offset plus the last gap, 20 minutes.
    assert_eq!(h.fire_at(mins(20) - secs(1)).await, vec![]);
    assert_eq!(h.fire_at(mins(20)).await, vec![(id, 0, 1, people(&["slack:U2", "discord:42"]))]);
    assert_eq!(h.fire_at(mins(30) - secs(1)).await, vec![]);
    assert_eq!(h.fire_at(mins(30)).await, vec![(id, 1, 1, people(&["slack:U1"]))]);
    assert_eq!(h.pending().await, 0);

    // An ack during the second round stops it too.
    let second = h.declare("Acknowledged in round two", Some("repeating_default")).await;
    h.fire_at(mins(20)).await;
    h.clock.set(t0() + mins(25));
    h.escalator.acknowledge(second.id, "slack:U2").await.expect("acknowledging works");
    assert_eq!(h.fire_at(mins(24 * 60)).await, vec![]);
    let second = h.incident(second.id).await;
    let seen: Vec<(u64, u64)> = escalations(&second).into_iter().map(|(step, repeat, _, _)| (step, repeat)).collect();
    // Declared at t0 too (the manual clock had not moved): by +20 min three steps were due, and
    // the ack at +25 min stopped the fourth.
    assert_eq!(second.started_at, t0());
    assert_eq!(seen, vec![(0, 0), (1, 0), (0, 1)]);
}

async fn a_step_with_nobody_to_notify_is_skipped_and_the_next_step_fires_at_once(backend: Backend) {
    let Some(h) = Harness::new(backend, POLICIES).await else {
        return;
    };
    let incident = h.declare("Pager group is empty", Some("skipping")).await;
    let id = incident.id;

    assert_eq!(h.fire_at(secs(0)).await, vec![(id, 0, 0, people(&["slack:U1"]))]);
    assert_eq!(h.fire_at(mins(5) - secs(1)).await, vec![]);
    // At 5 minutes step 1 has nobody: it is skipped, and step 2 (due at 15) fires right away.
    let fired = h.fire_at(mins(5)).await;
    assert_eq!(fired, vec![(id, 1, 0, vec![]), (id, 2, 0, people(&["slack:U2", "discord:42"]))]);
    // Step 3 keeps its own time.
    assert_eq!(h.fire_at(mins(15)).await, vec![]);
    assert_eq!(h.fire_at(mins(25) - secs(1)).await, vec![]);
    assert_eq!(h.fire_at(mins(25)).await, vec![(id, 3, 0, people(&["slack:U3"]))]);

    let incident = h.incident(id).await;
    let skipped = events(&incident, "escalation_skipped");
    assert_eq!(skipped.len(), 1, "{:?}", incident.timeline);
    assert_eq!(skipped[0].at, t0() + mins(5));
    assert_eq!(skipped[0].detail["step"], json!(1));
    assert_eq!(skipped[0].detail["repeat"], json!(0));
    assert_eq!(skipped[0].detail["targets"], json!(["group:empty"]));
    assert_eq!(
        escalations(&incident).into_iter().map(|(step, _, _, at)| (step, at)).collect::<Vec<_>>(),
        vec![(0, t0()), (2, t0() + mins(5)), (3, t0() + mins(25))]
    );
    assert_eq!(
        h.escalation_outbox().await.iter().map(|item| item.1).collect::<Vec<_>>(),
        vec![0, 2, 3],
        "a skipped step sends nothing"
    );

    // An empty first step: skipped at the trigger, and the second step fires at the trigger too.
    let first = h.declare("First step is empty", Some("empty_first")).await;
    let fired = h.fire_at(secs(0)).await;
    assert_eq!(fired, vec![(first.id, 0, 0, vec![]), (first.id, 1, 0, people(&["slack:U1"]))]);
    assert_eq!(h.fire_at(mins(10)).await, vec![]);
}

async fn firing_again_at_the_same_instant_fires_nothing(backend: Backend) {
    let Some(h) = Harness::new(backend, POLICIES).await else {
        return;
    };
    let incident = h.declare("Once only", None).await;
    assert_eq!(h.fire_at(mins(10)).await.len(), 2, "steps 0 and 1 are due at +10 min");
    assert_eq!(h.fire_at(mins(10)).await, vec![]);
    assert_eq!(h.fire_at(mins(10)).await, vec![]);
    let incident = h.incident(incident.id).await;
    assert_eq!(escalations(&incident).len(), 2);
    assert_eq!(h.escalation_outbox().await.len(), 2);
    assert_eq!(h.pending().await, 1);
}

async fn two_engines_racing_on_one_store_fire_each_step_once(backend: Backend) {
    let Some(h) = Harness::new(backend, POLICIES).await else {
        return;
    };
    let other = h.replica().await;
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(h.declare(&format!("Incident {n}"), None).await.id);
    }
    assert_eq!(h.pending().await, 60);

    let mut fired: Vec<(i64, usize, u32)> = Vec::new();
    for at in [secs(0), mins(10), mins(20)] {
        let now = t0() + at;
        // Two engines (separate pools) and two calls each, all at once.
        let (a, b, c, d) = tokio::join!(
            h.escalator.fire_due(now),
            other.fire_due(now),
            h.escalator.fire_due(now),
            other.fire_due(now)
        );
        for batch in [a, b, c, d] {
            fired.extend(
                batch.expect("fire_due works").into_iter().map(|step| (step.incident_id, step.step, step.round)),
            );
        }
    }
    fired.sort();
    let expected: Vec<(i64, usize, u32)> = ids.iter().flat_map(|id| (0..3).map(move |step| (*id, step, 0))).collect();
    assert_eq!(fired, expected, "every step fired once between the two engines");
    assert_eq!(h.pending().await, 0);

    let mut recorded: BTreeMap<(i64, u64, u64), usize> = BTreeMap::new();
    for id in &ids {
        for (step, repeat, _, _) in escalations(&h.incident(*id).await) {
            *recorded.entry((*id, step, repeat)).or_default() += 1;
        }
    }
    assert_eq!(recorded.len(), 60);
    assert!(recorded.values().all(|count| *count == 1), "a step was recorded twice: {recorded:?}");
    assert_eq!(h.escalation_outbox().await.len(), 60, "one notification per step");
}

async fn without_a_default_policy_nothing_is_scheduled(backend: Backend) {
    let Some(h) = Harness::new(backend, "[groups]\nops = [\"slack:U1\"]\n").await else {
        return;
    };
    let incident = h.declare("No policy here", None).await;
    assert_eq!(incident.policy, None);
    assert_eq!(events(&incident, "declared")[0].detail["steps_scheduled"], json!(0));
    assert_eq!(h.pending().await, 0);
    assert_eq!(h.fire_at(mins(24 * 60)).await, vec![]);
    let incident = h.incident(incident.id).await;
    assert_eq!(incident.timeline.iter().map(|event| event.kind.as_str()).collect::<Vec<_>>(), vec!["declared"]);

    let error = h.escalator.declare(app::new_incident("Wants a policy", Some("default"))).await.unwrap_err();
    assert!(matches!(error, DeclareError::UnknownPolicy { .. }), "{error:?}");
    assert_eq!(error.to_string(), "unknown policy 'default': firebell.toml defines no [[policies]]");
    assert_eq!(
        h.store().incidents(true, 100).await.expect("listing works").len(),
        1,
        "the refused incident was not stored"
    );
}

async fn an_unknown_policy_is_refused_with_the_list_of_policies(backend: Backend) {
    let Some(h) = Harness::new(backend, POLICIES).await else {
        return;
    };
    let error = h.escalator.declare(app::new_incident("Typo in the policy", Some("defualt"))).await.unwrap_err();
    assert!(matches!(error, DeclareError::UnknownPolicy { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "unknown policy 'defualt'; policies: default, empty_first, repeating, repeating_default, skipping"
    );
    assert!(h.store().incidents(true, 100).await.expect("listing works").is_empty(), "nothing was stored");
    assert_eq!(h.pending().await, 0);

    // A named policy is followed instead of the default.
    let incident = h.declare("Named policy", Some("skipping")).await;
    assert_eq!(incident.policy.as_deref(), Some("skipping"));
    assert_eq!(h.pending().await, 4);
}

async fn times_to_acknowledge_and_resolve_come_from_the_stored_times(backend: Backend) {
    let Some(h) = Harness::new(backend, POLICIES).await else {
        return;
    };
    let incident = h.declare("Timed", None).await;
    h.clock.set(t0() + mins(4) + secs(7));
    h.escalator.acknowledge(incident.id, "slack:U1").await.expect("acknowledging works");
    h.clock.set(t0() + mins(42));
    h.escalator.resolve(incident.id, "slack:U2", Resolution::default()).await.expect("resolving works");

    // Read back through a store opened afresh, as `firebell incidents show` would.
    let reopened = h.space.open().await;
    let stored = reopened.incident(incident.id).await.expect("the incident is stored");
    assert_eq!(stored.started_at, t0(), "milliseconds survive the store");
    assert_eq!(stored.acknowledged_at, Some(t0() + mins(4) + secs(7)));
    assert_eq!(stored.resolved_at, Some(t0() + mins(42)));
    assert_eq!(stored.time_to_acknowledge(), Some(mins(4) + secs(7)));
    assert_eq!(stored.time_to_resolve(), Some(mins(42)));
    assert_eq!(firebell::incident::human_duration(stored.time_to_acknowledge().unwrap()), "4m 7s");

    let open = h.declare("Still open", None).await;
    let stored = reopened.incident(open.id).await.expect("the incident is stored");
    assert_eq!((stored.time_to_acknowledge(), stored.time_to_resolve()), (None, None));
}
