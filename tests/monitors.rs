//! Monitors as their users meet them: a runbook on a schedule that opens one incident when a
//! real Redis queue passes its threshold for `for` runs, stays quiet while it stays there, and
//! resolves it when the queue drains; two replicas on one PostgreSQL database running each due
//! run once; `kill -9` of the real binary neither losing nor doubling runs; and every bad
//! `[[monitors]]` entry refused with `file:line` and what is valid. Time is a manual clock and
//! the stories call `run_due(now)` themselves, so nothing here sleeps for a schedule.

#[macro_use]
mod app;
mod common;
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use app::{Backend, ServeDir, StoreSpace, parse_config, secs, t0, toml_str};
use firebell::check::Status;
use firebell::clock::ManualClock;
use firebell::escalation::{Directory, Escalator};
use firebell::incident::{IncidentStatus, TimelineKind};
use firebell::monitor::rules::Action;
use firebell::monitor::{MonitorHooks, Monitors};
use firebell::runbook::{Args, CheckRun, Runbook};
use firebell::source::SourceFile;

/// What the engine asked chat to post: (incident, headline, worst verdict of the results).
#[derive(Default)]
struct Posts {
    posted: Mutex<Vec<(i64, String, Status)>>,
}

impl MonitorHooks for Posts {
    fn notify_delivery(&self) {}

    fn post_run(&self, incident_id: i64, headline: String, _: Arc<Runbook>, _: Args, results: Vec<CheckRun>) {
        let worst = results.iter().map(|run| run.status).max().unwrap_or(Status::Ok);
        self.posted.lock().unwrap().push((incident_id, headline, worst));
    }
}

impl Posts {
    fn all(&self) -> Vec<(i64, String, Status)> {
        self.posted.lock().unwrap().clone()
    }
}

const POLICY: &str = r#"
[groups]
oncall = ["console:alice"]

[[policies]]
name = "default"
steps = [{ after = "0s", notify = ["group:oncall"] }]
"#;

/// A monitor engine over `space`'s store with the runbooks in `runbooks` and `config` (the
/// `[targets]` and `[[monitors]]` part of firebell.toml), on `clock`.
async fn engine(
    space: &StoreSpace,
    runbooks: &[(&str, &str)],
    config: &str,
    clock: Arc<ManualClock>,
    posts: Arc<Posts>,
) -> Monitors {
    let commands = space.dir.path().join("commands");
    std::fs::create_dir_all(&commands).unwrap();
    for (file, text) in runbooks {
        std::fs::write(commands.join(file), text).unwrap();
    }
    let text =
        format!("[store]\nurl = {}\n\n[commands]\ndirs = [\"commands\"]\n{POLICY}\n{config}", toml_str(&space.url));
    let config = parse_config(space.dir.path(), &text);
    let (catalogue, errors) = firebell::app::load_catalogue(&config);
    assert!(errors.is_empty(), "the runbooks load: {errors:?}");
    let monitors = firebell::monitor::build(&config, &catalogue).expect("the monitors build");
    let directory = Arc::new(Directory::from_config(&config).unwrap());
    let escalator = Arc::new(Escalator::new(space.open().await, directory, clock));
    let engine = Monitors::new(monitors, escalator, firebell::app::runner(&config), posts);
    engine.sync().await.expect("the monitors are scheduled");
    engine
}

fn queue_runbook(key: &str) -> String {
    format!(
        r#"
name = "jobs"
summary = "Depth of the jobs queue"

[[checks]]
name = "jobs queue length"
kind = "redis"
target = "jobs"
command = ["LLEN", {}]
warn = "value > 3"
crit = "value > 5"
"#,
        toml_str(key)
    )
}

#[tokio::test]
async fn a_queue_past_its_threshold_opens_one_incident_stays_quiet_and_resolves_when_it_drains() {
    let Some(redis) = common::redis_prefix().await else { return };
    let Some(space) = StoreSpace::new(Backend::Sqlite).await else { return };
    let queue = redis.key("jobs");
    let clock = Arc::new(ManualClock::new(t0()));
    let posts = Arc::new(Posts::default());
    let config = format!(
        "[targets.jobs]\nkind = \"redis\"\nurl = {}\n\n[[monitors]]\nname = \"jobs-depth\"\nrun = \"jobs\"\nevery = \"10s\"\nfor = 2\nseverity = \"high\"\npolicy = \"default\"\n",
        toml_str(&redis.url)
    );
    let monitors =
        engine(&space, &[("jobs.toml", &queue_runbook(&queue))], &config, clock.clone(), posts.clone()).await;
    let store = space.open().await;
    let step = |offset: i64| {
        let (clock, monitors) = (clock.clone(), &monitors);
        async move {
            clock.set(t0() + secs(offset));
            monitors.run_due(t0() + secs(offset)).await.expect("the due monitors run")
        }
    };

    // An empty queue: ok, nothing opens.
    let runs = step(0).await;
    assert_eq!(runs.len(), 1);
    assert_eq!((runs[0].verdict, runs[0].action), (Status::Ok, Action::Nothing));

    // Six jobs: crit once is not yet `for = 2` runs.
    for job in 0..6 {
        redis.command(&["RPUSH", &queue, &format!("job-{job}")]).await;
    }
    assert_eq!(step(5).await.len(), 0, "not due before its 10 s");
    let runs = step(10).await;
    assert_eq!((runs[0].verdict, runs[0].action), (Status::Crit, Action::Nothing));
    assert!(store.incidents(true, 10).await.unwrap().is_empty(), "one crit run opens nothing");

    // The second crit run opens the incident, with the tripping diagnosis in its thread.
    let runs = step(20).await;
    assert_eq!(runs[0].action, Action::Open);
    let incidents = store.incidents(true, 10).await.unwrap();
    assert_eq!(incidents.len(), 1);
    let incident = store.incident(incidents[0].id).await.unwrap();
    assert_eq!(incident.fingerprint.as_deref(), Some("monitor:jobs-depth"));
    assert_eq!(incident.severity, firebell::config::Severity::High);
    assert_eq!(incident.policy.as_deref(), Some("default"));
    let diagnoses: Vec<_> = incident.timeline.iter().filter(|event| event.kind == TimelineKind::Diagnosis).collect();
    assert_eq!(diagnoses.len(), 1);
    assert_eq!(diagnoses[0].detail["status"], "crit");
    assert_eq!(diagnoses[0].detail["checks"][0]["name"], "jobs queue length");
    assert!(
        incident.timeline.iter().any(|event| event.kind == TimelineKind::Escalated)
            || store.pending_timers().await.unwrap() == 1,
        "escalation is scheduled"
    );
    let posted = posts.all();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].0, incident.id);
    assert_eq!(posted[0].2, Status::Crit);
    assert!(posted[0].1.contains("jobs-depth"), "{}", posted[0].1);

    // It stays crit: nothing is posted, nothing else opens.
    for offset in [30, 40, 50] {
        let runs = step(offset).await;
        assert_eq!((runs[0].verdict, runs[0].action), (Status::Crit, Action::Nothing));
    }
    assert_eq!(posts.all().len(), 1, "unchanged runs post nothing");
    assert_eq!(store.incidents(true, 10).await.unwrap().len(), 1);

    // Drained: the change is posted, and after `for` ok runs the incident resolves.
    redis.command(&["DEL", &queue]).await;
    let runs = step(60).await;
    assert_eq!(runs[0].action, Action::PostChange { from: Some(Status::Crit), to: Status::Ok });
    assert_eq!(posts.all().len(), 2);
    assert!(posts.all()[1].1.contains("CRIT → OK"), "{:?}", posts.all()[1]);
    assert!(store.incident(incident.id).await.unwrap().is_open());
    let runs = step(70).await;
    assert_eq!(runs[0].action, Action::Resolve);
    let resolved = store.incident(incident.id).await.unwrap();
    assert_eq!(resolved.status, IncidentStatus::Resolved);
    assert_eq!(resolved.resolved_by.as_deref(), Some("monitor:jobs-depth"));
    assert!(resolved.timeline.iter().any(|event| event.kind == TimelineKind::MonitorVerdict));
    assert_eq!(store.incidents(true, 10).await.unwrap().len(), 1, "exactly one incident in all");

    // What `GET /api/monitors` and `firebell monitors list` show.
    let rows = store.monitors().await.unwrap();
    let views = firebell::monitor::views(monitors.monitors(), &rows);
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].topic, "jobs");
    assert_eq!(views[0].schedule, "every 10s");
    assert_eq!(views[0].last_verdict.as_deref(), Some("ok"));
    assert_eq!(views[0].last_run_at, Some(t0() + secs(70)));
    assert_eq!(views[0].next_run_at, Some(t0() + secs(80)));
    assert_eq!(views[0].incident_id, None);
    assert_eq!(views[0].runs, 8);
}

const TRUE_RUNBOOK: &str = r#"
name = "ping"
summary = "Is the host alive"

[[checks]]
name = "true"
kind = "exec"
argv = ["true"]
"#;

#[tokio::test]
async fn two_replicas_on_one_postgresql_database_run_each_due_run_once() {
    let Some(space) = StoreSpace::new(Backend::Postgres).await else { return };
    let clock = Arc::new(ManualClock::new(t0()));
    let mut config = String::new();
    for n in 0..8 {
        config.push_str(&format!("[[monitors]]\nname = \"ping-{n}\"\nrun = \"ping\"\nevery = \"10s\"\n\n"));
    }
    let one = engine(&space, &[("ping.toml", TRUE_RUNBOOK)], &config, clock.clone(), Arc::default()).await;
    let two = engine(&space, &[("ping.toml", TRUE_RUNBOOK)], &config, clock.clone(), Arc::default()).await;
    for beat in 0..6 {
        let now = t0() + secs(10 * beat);
        clock.set(now);
        let (a, b) = tokio::join!(one.run_due(now), two.run_due(now));
        let mut names: Vec<String> = a.unwrap().into_iter().chain(b.unwrap()).map(|run| run.name).collect();
        names.sort();
        let expected: Vec<String> = (0..8).map(|n| format!("ping-{n}")).collect();
        assert_eq!(names, expected, "at beat {beat} every monitor ran exactly once across the replicas");
        // Stepping the same instant again runs nothing: each was scheduled 10 s on.
        let (a, b) = tokio::join!(one.run_due(now), two.run_due(now));
        assert_eq!(a.unwrap().len() + b.unwrap().len(), 0);
    }
    let rows = space.open().await.monitors().await.unwrap();
    assert!(rows.iter().all(|row| row.runs == 6 && row.lease_owner.is_none()), "{rows:?}");
}

#[tokio::test]
async fn a_restart_after_downtime_runs_an_overdue_monitor_once_and_a_dead_runs_lease_expires() {
    let Some(space) = StoreSpace::new(Backend::Sqlite).await else { return };
    let clock = Arc::new(ManualClock::new(t0()));
    let config = "[[monitors]]\nname = \"ping\"\nrun = \"ping\"\nevery = \"10s\"\n";
    let first = engine(&space, &[("ping.toml", TRUE_RUNBOOK)], config, clock.clone(), Arc::default()).await;
    assert_eq!(first.run_due(t0()).await.unwrap().len(), 1);
    drop(first);

    // Down for an hour: the restarted engine runs it once, then every 10 s from then.
    let later = t0() + secs(3600);
    clock.set(later);
    let second = engine(&space, &[("ping.toml", TRUE_RUNBOOK)], config, clock.clone(), Arc::default()).await;
    assert_eq!(second.run_due(later).await.unwrap().len(), 1, "one run for the missed hour, not 360");
    assert_eq!(second.run_due(later + secs(5)).await.unwrap().len(), 0);
    assert_eq!(second.run_due(later + secs(10)).await.unwrap().len(), 1);

    // A process that claimed the run and died: the lease holds it until it expires, then the
    // run happens once.
    let store = space.open().await;
    let claimed = store.claim_monitors(later + secs(20), "dead-replica", later + secs(50), 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(second.run_due(later + secs(30)).await.unwrap().len(), 0, "leased to the dead replica");
    assert_eq!(second.run_due(later + secs(50)).await.unwrap().len(), 1, "taken once its lease ended");
    assert_eq!(second.run_due(later + secs(50)).await.unwrap().len(), 0);
    let rows = store.monitors().await.unwrap();
    assert_eq!(rows[0].runs, 4);
}

#[tokio::test]
async fn kill_9_of_the_real_binary_neither_loses_nor_doubles_runs() {
    let marks = tempfile::tempdir().unwrap();
    let runbook = format!(
        "name = \"mark\"\nsummary = \"Leaves a file per run\"\n\n[[checks]]\nname = \"mark\"\nkind = \"exec\"\ntimeout = \"2s\"\nargv = [\"mktemp\", {}]\n",
        toml_str(&marks.path().join("run.XXXXXXXX").display().to_string())
    );
    let mut serve =
        ServeDir::new(None, "[[monitors]]\nname = \"mark\"\nrun = \"mark\"\nevery = \"1s\"\nopen = \"never\"\n");
    std::fs::write(serve.dir.path().join("commands/mark.toml"), runbook).unwrap();
    let files = || std::fs::read_dir(marks.path()).unwrap().count() as i64;
    let runs = |store: Arc<dyn firebell::store::Store>| async move {
        store.monitors().await.unwrap().iter().find(|row| row.name == "mark").map(|row| row.runs).unwrap_or(0)
    };
    let store = serve.open_store().await;
    let mut killed = 0;
    let started = std::time::Instant::now();
    for round in 0..3 {
        let mut server = serve.start(&format!("replica-{round}")).await;
        let before = runs(store.clone()).await;
        // Wait for three more runs recorded (one a second), then kill -9 mid-schedule.
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while runs(store.clone()).await < before + 3 {
            assert!(std::time::Instant::now() < deadline, "the monitor did not run:\n{}", server.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        server.kill();
        killed += 1;
    }
    let elapsed = started.elapsed().as_secs() as i64;
    let recorded = runs(store.clone()).await;
    let ran = files();
    // Every run that left a file was recorded, but for one a kill may have cut between the
    // program and the record (that run happens again after the restart, counted once).
    assert!(recorded >= 9, "runs were lost: {recorded} recorded");
    assert!(ran >= recorded && ran <= recorded + killed, "{ran} runs for {recorded} recorded ({killed} kills)");
    // Every 1 s, and no catch-up or doubled runs after restarts.
    assert!(recorded <= elapsed + 3 * killed, "{recorded} runs in {elapsed} s: runs were doubled");
}

#[test]
fn bad_monitor_entries_are_refused_with_file_and_line_saying_what_is_valid() {
    let refused = |text: &str| -> String {
        match firebell::config::Config::parse(&SourceFile::new("firebell.toml", text)) {
            Ok(_) => panic!("accepted:\n{text}"),
            Err(errors) => errors.to_string(),
        }
    };
    let errors = refused("[[monitors]]\nrun = \"queue\"\nevery = \"500ms\"\n");
    assert!(errors.contains("firebell.toml:3: monitors.queue.every: 500ms is too short: give 1s or more"), "{errors}");
    let errors = refused("[[monitors]]\nrun = \"queue\"\nevery = \"1m\"\ncron = \"* * * * *\"\n");
    assert!(errors.contains("firebell.toml:4: monitors.queue: give either every or cron, not both"), "{errors}");
    let errors = refused("[[monitors]]\nrun = \"queue\"\n");
    assert!(errors.contains("firebell.toml:2: monitors.queue: needs a schedule: every = \"1m\" or cron"), "{errors}");
    let errors = refused("[[monitors]]\nrun = \"queue\"\ncron = \"*/5 * * *\"\n");
    assert!(errors.contains("firebell.toml:3: monitors.queue.cron: '*/5 * * *' has 4 fields: write 5"), "{errors}");
    let errors = refused("[[monitors]]\nrun = \"queue\"\ncron = \"61 * * * *\"\n");
    assert!(errors.contains("firebell.toml:3: monitors.queue.cron: '61 * * * *' is not a cron expression"), "{errors}");
    let errors = refused("[[monitors]]\nrun = \"queue\"\ncron = \"0 9 * * *\"\ntimezone = \"Mars/Olympus\"\n");
    assert!(errors.contains("firebell.toml:4: monitors.queue.timezone: unknown time zone 'Mars/Olympus'"), "{errors}");
    let errors = refused(
        "[[policies]]\nname = \"default\"\nsteps = [{ after = \"0s\", notify = [\"user:console:a\"] }]\n\n[[monitors]]\nrun = \"queue\"\nevery = \"1m\"\npolicy = \"nope\"\n",
    );
    assert!(errors.contains("firebell.toml:8: monitors.queue: unknown policy 'nope'; policies: default"), "{errors}");
    let errors = refused("[[monitors]]\nrun = \"queue\"\nevery = \"1m\"\nopen = \"sometimes\"\n");
    assert!(errors.contains("firebell.toml:4:") && errors.contains("`warn`, `crit`, `error`, `never`"), "{errors}");
    let errors =
        refused("[[monitors]]\nrun = \"queue\"\nevery = \"1m\"\n\n[[monitors]]\nrun = \"queue\"\nevery = \"5m\"\n");
    assert!(errors.contains("firebell.toml:6: monitors: the name 'queue' is used twice"), "{errors}");
    let errors = refused("[[monitors]]\nrun = \"queue\"\nevery = \"1m\"\nfor = 0\n");
    assert!(errors.contains("firebell.toml:4: monitors.queue.for: 0 is out of range: give 1 to 1000"), "{errors}");

    // Topic and arguments are checked against the catalogue, with the line of the monitor.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("commands")).unwrap();
    let runbook = "name = \"queue\"\nsummary = \"q\"\n\n[args.queue]\npattern = '^[a-z_]{1,20}$'\ndefault = \"jobs\"\nhelp = \"queue name\"\n\n[[checks]]\nname = \"t\"\nkind = \"exec\"\nargv = [\"true\", \"{{queue}}\"]\n";
    std::fs::write(dir.path().join("commands/queue.toml"), runbook).unwrap();
    let text = "[[monitors]]\nrun = \"queues\"\nevery = \"1m\"\n\n[[monitors]]\nname = \"bad-args\"\nrun = \"queue\"\nargs = { queue = \"DROP TABLE\" }\nevery = \"1m\"\n\n[[monitors]]\nname = \"unknown-arg\"\nrun = \"queue\"\nargs = { colour = \"red\" }\nevery = \"1m\"\n";
    let path = dir.path().join("firebell.toml");
    let config = firebell::config::Config::parse(&SourceFile::new(&path, text)).unwrap();
    let (catalogue, errors) = firebell::app::load_catalogue(&config);
    assert!(errors.is_empty(), "{errors:?}");
    let errors: Vec<String> =
        firebell::monitor::build(&config, &catalogue).unwrap_err().iter().map(ToString::to_string).collect();
    let shown = path.display().to_string();
    assert!(
        errors[0].starts_with(&format!("{shown}:2: monitors.queues: run = \"queues\": no such runbook; topics: queue")),
        "{errors:?}"
    );
    assert!(errors[1].starts_with(&format!("{shown}:8: monitors.bad-args.args: ")), "{errors:?}");
    assert!(errors[1].contains("queue"), "names the argument: {errors:?}");
    assert!(errors[2].starts_with(&format!("{shown}:14: monitors.unknown-arg.args: ")), "{errors:?}");
}

#[test]
fn the_example_config_ships_monitors_for_the_seed_thresholds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let store = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_firebell"))
        .args(["monitors", "list", "--json", "--config"])
        .arg(root.join("firebell.example.toml"))
        .env("FIREBELL_STORE_URL", format!("sqlite://{}", store.path().join("firebell.db").display()))
        .env_remove("FIREBELL_CONFIG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    let monitors: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let shown: Vec<(String, String, String, String)> = monitors
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let text = |key: &str| m[key].as_str().unwrap_or_default().to_string();
            (text("name"), text("topic"), text("schedule"), text("open"))
        })
        .collect();
    let expected = [
        ("cert-expiry", "cert", "cron 0 9 * * * (Europe/Berlin)", "warn"),
        ("zmarty-freshness", "freshness", "every 1m", "crit"),
        ("zmarty-queue-backlog", "queue", "every 5m", "warn"),
        ("zmarty-queue-depth", "queue", "every 1m", "crit"),
    ];
    let expected: Vec<(String, String, String, String)> =
        expected.iter().map(|(a, b, c, d)| (a.to_string(), b.to_string(), c.to_string(), d.to_string())).collect();
    assert_eq!(shown, expected);
}

#[tokio::test]
async fn the_api_lists_each_monitor_and_reads_need_the_token() {
    let rest = "[[monitors]]\nname = \"ping-hourly\"\nrun = \"ping\"\ncron = \"0 * * * *\"\ntimezone = \"Europe/Berlin\"\nopen = \"warn\"\nfor = 3\n";
    let app = app::spawn_app(&format!("api_token = \"{}\"", app::TOKEN), rest).await;
    let refused = app.client.get(app.url("/api/monitors")).send().await.unwrap();
    assert_eq!(refused.status(), 401, "a read without the token is refused");
    // The loop schedules it at start; wait for that row rather than for a time.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let listed = loop {
        let reply = app.get("/api/monitors").await;
        assert_eq!(reply.status, 200, "{reply:?}");
        if reply.body[0]["next_run_at"].is_string() || std::time::Instant::now() > deadline {
            break reply.body;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(listed[0]["name"], "ping-hourly");
    assert_eq!(listed[0]["topic"], "ping");
    assert_eq!(listed[0]["schedule"], "cron 0 * * * * (Europe/Berlin)");
    assert_eq!(listed[0]["open"], "warn");
    assert_eq!(listed[0]["for"], 3);
    assert_eq!(listed[0]["last_verdict"], serde_json::Value::Null);
    // The manual clock stands at 08:50:00.250 UTC: the next full hour.
    assert_eq!(listed[0]["next_run_at"], "2026-01-03T09:00:00Z");
    assert_eq!(listed[0]["incident_id"], serde_json::Value::Null);
    app.stop().await;
}

/// The bot itself (its loop, its chat core, the web console as the chat platform): a monitor
/// that trips on its first run opens the incident, and the tripping diagnosis is posted in the
/// incident's thread.
#[tokio::test]
async fn the_tripping_diagnosis_is_posted_in_the_incidents_thread() {
    // `ls` of a missing path exits 2: crit, by the monitoring-plugin convention.
    let runbook = "name = \"broken\"\nsummary = \"Always crit\"\n\n[[checks]]\nname = \"missing path\"\nkind = \"exec\"\nargv = [\"ls\", \"/nonexistent-firebell-monitor-test\"]\n";
    let rest = "[[monitors]]\nname = \"broken\"\nrun = \"broken\"\nevery = \"1h\"\nseverity = \"medium\"\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("commands")).unwrap();
    std::fs::write(dir.path().join("commands/broken.toml"), runbook).unwrap();
    let url = format!("sqlite://{}", dir.path().join("firebell.db").display());
    let text = format!("[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\nurl = {}\n\n{rest}", toml_str(&url));
    let config = parse_config(dir.path(), &text);
    let clock = Arc::new(ManualClock::new(t0()));
    let built = firebell::app::App::build(config, clock).await.unwrap();
    let store = built.escalator().store().clone();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(built.run_until_stopped(shutdown.clone()));

    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let (incident, thread) = loop {
        let history = store.console_history("incidents", 50, 2_000).await.unwrap();
        let incidents = store.incidents(true, 10).await.unwrap();
        if let Some(incident) = incidents.first()
            && let Some(home) = store.incident(incident.id).await.unwrap().chat.get("console").cloned()
        {
            let thread: Vec<String> = history
                .iter()
                .filter(|message| message.thread.as_deref() == Some(home.message.as_str()))
                .map(|message| message.body.to_string())
                .collect();
            if thread.iter().any(|body| body.contains("diagnose broken")) {
                break (incident.clone(), thread);
            }
        }
        assert!(std::time::Instant::now() < deadline, "no diagnosis in the thread: {history:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(incident.fingerprint.as_deref(), Some("monitor:broken"));
    assert!(thread.iter().any(|body| body.contains("Monitor *broken* tripped: CRIT")), "{thread:?}");
    assert!(thread.iter().any(|body| body.contains("missing path")), "{thread:?}");
    assert_eq!(store.incidents(true, 10).await.unwrap().len(), 1);
    shutdown.cancel();
    let _ = task.await;
}
