//! Charts (SPEC §12): a prometheus check with `chart = "1h"` asks a test Prometheus for the range
//! too and attaches a PNG line chart of it. The PNG is decoded and its pixels read: each series
//! drawn where its values put it, the thresholds at their values. The chart then goes into the
//! diagnosis thread after the verdict (the chat core, and the console, which shows it inline),
//! and `firebell run … --save DIR` writes it. A chart that cannot be had never changes a verdict;
//! `chart` where it does not belong is a config error with its line.
//!
//! Each chart a test draws is kept in `target/test-artifacts/charts/` to look at.

mod chat_support;
mod common;
mod fake_discord;
mod fake_slack;
mod support;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Query, State};
use axum::routing::get;
use chat_support::{Bot, OPS_CHANNEL};
use common::{Engine, Workspace, toml_str};
use firebell::chat::memory::Recorded;
use firebell::check::{
    CHART_HEIGHT, CHART_LEGEND_HEIGHT, CHART_WIDTH, CRIT_COLOUR, SERIES_COLOURS, Status, TargetInfo, WARN_COLOUR,
};
use firebell::config::{Secret, TargetKind};
use serde_json::{Value, json};

/// The range queries the test Prometheus was asked: their `query`, `start`, `end` and `step`.
type Asked = Arc<Mutex<Vec<HashMap<String, String>>>>;

/// A Prometheus query API on port 0. The instant query answers two series, `{job="rise"}` = 1000
/// and `{job="steady"}` = 300; the range query answers the same two over the asked range, `rise`
/// going from 0 at `start` to 1000 at `end`, `steady` at 300 throughout. A query naming
/// `no_range` is refused by the range endpoint only.
async fn test_prometheus() -> (SocketAddr, Asked) {
    let asked: Asked = Arc::default();
    let app = axum::Router::new()
        .route(
            "/api/v1/query",
            get(|| async {
                axum::Json(json!({"status": "success", "data": {"resultType": "vector", "result": [
                    {"metric": {"job": "rise"}, "value": [1700000000.0, "1000"]},
                    {"metric": {"job": "steady"}, "value": [1700000000.0, "300"]}
                ]}}))
            }),
        )
        .route(
            "/api/v1/query_range",
            get(|State(asked): State<Asked>, Query(params): Query<HashMap<String, String>>| async move {
                asked.lock().unwrap().push(params.clone());
                let query = params.get("query").cloned().unwrap_or_default();
                if query.contains("no_range") {
                    return axum::Json(json!({"status": "error", "errorType": "bad_data", "error": "range refused"}));
                }
                let number = |key: &str| params.get(key).and_then(|text| text.parse::<f64>().ok()).unwrap_or(0.0);
                let (start, end, step) = (number("start"), number("end"), number("step").max(1.0));
                let mut rise = Vec::new();
                let mut steady = Vec::new();
                let mut at = start;
                while at <= end {
                    let value = 1000.0 * (at - start) / (end - start);
                    rise.push(json!([at, value.to_string()]));
                    steady.push(json!([at, "300"]));
                    at += step;
                }
                axum::Json(json!({"status": "success", "data": {"resultType": "matrix", "result": [
                    {"metric": {"job": "rise"}, "values": rise},
                    {"metric": {"job": "steady"}, "values": steady}
                ]}}))
            }),
        )
        .with_state(asked.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, asked)
}

/// A runbook with one prometheus check drawing the last hour, `warn`/`crit` at 100 and 500.
fn queue_runbook(query: &str) -> String {
    format!(
        r#"name = "queue"
summary = "Queue depth"

[[checks]]
name = "queue depth"
kind = "prometheus"
target = "metrics"
query = {}
chart = "1h"
warn = "value > 100"
crit = "500 < value"
"#,
        toml_str(query)
    )
}

const QUERY: &str = "sum by (job) (queue_depth)";

/// A decoded RGB image.
struct Image {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

impl Image {
    fn decode(png_bytes: &[u8]) -> Image {
        assert!(png_bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG file");
        let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
        let mut reader = decoder.read_info().expect("the PNG header reads");
        let mut pixels = vec![0; reader.output_buffer_size().expect("a sane size")];
        let frame = reader.next_frame(&mut pixels).expect("the PNG decodes");
        assert_eq!(frame.color_type, png::ColorType::Rgb, "an RGB image");
        assert_eq!(frame.bit_depth, png::BitDepth::Eight);
        pixels.truncate(frame.buffer_size());
        Image { width: frame.width, height: frame.height, pixels }
    }

    fn at(&self, x: u32, y: u32) -> (u8, u8, u8) {
        let index = ((y * self.width + x) * 3) as usize;
        (self.pixels[index], self.pixels[index + 1], self.pixels[index + 2])
    }

    /// Every pixel of exactly `colour` above the legend strip, as `(x, y)`.
    fn plotted(&self, colour: (u8, u8, u8)) -> Vec<(u32, u32)> {
        let mut found = Vec::new();
        for y in 0..self.height - CHART_LEGEND_HEIGHT {
            for x in 0..self.width {
                if self.at(x, y) == colour {
                    found.push((x, y));
                }
            }
        }
        found
    }
}

/// The row holding the most pixels of `colour` (a horizontal line's row).
fn busiest_row(pixels: &[(u32, u32)]) -> u32 {
    let mut rows: BTreeMap<u32, usize> = BTreeMap::new();
    for (_, y) in pixels {
        *rows.entry(*y).or_default() += 1;
    }
    rows.into_iter().max_by_key(|(_, count)| *count).map(|(row, _)| row).expect("some pixels")
}

/// Keeps a chart where a person can look at it.
fn keep_artifact(name: &str, png_bytes: &[u8]) -> PathBuf {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts/charts");
    std::fs::create_dir_all(&folder).expect("the artifact folder is created");
    let path = folder.join(name);
    std::fs::write(&path, png_bytes).expect("the artifact is written");
    path
}

// ---------------------------------------------------------------------------------------------
// The check and its picture

#[tokio::test]
async fn a_chart_draws_each_series_where_its_values_are_and_the_thresholds_at_theirs() {
    let (address, asked) = test_prometheus().await;
    let engine = Engine::new(&[("metrics", TargetKind::Prometheus, &format!("http://{address}"))]);
    let run = engine.run_one(&engine.load(&queue_runbook(QUERY)), &[]).await;

    // The verdict is the instant query's: the first series is 1000, past crit.
    assert_eq!(run.status, Status::Crit, "{}", run.summary);
    assert!(run.summary.starts_with("2 series; first {job=rise} = 1000"), "{}", run.summary);
    assert!(!run.summary.contains("no chart"), "{}", run.summary);
    // The range query: the last hour, 120 points a series.
    let range = asked.lock().unwrap().pop().expect("the range query was asked");
    assert_eq!(range["query"], QUERY);
    assert_eq!(range["step"], "30");
    let (start, end): (u64, u64) = (range["start"].parse().unwrap(), range["end"].parse().unwrap());
    assert_eq!(end - start, 3600);

    assert_eq!(run.attachments.len(), 1, "one chart");
    let chart = &run.attachments[0];
    assert_eq!(chart.filename, "chart-queue-depth.png");
    assert_eq!(chart.title, "queue depth over the last 1h");
    let kept = keep_artifact("rise-and-steady.png", &chart.content);
    let image = Image::decode(&chart.content);
    assert_eq!((image.width, image.height), (CHART_WIDTH, CHART_HEIGHT), "kept at {}", kept.display());

    // The rising series (the first colour) is drawn low on the left and high on the right.
    let rise = image.plotted(SERIES_COLOURS[0]);
    assert!(rise.len() > 500, "the first series is drawn: {} pixels ({})", rise.len(), kept.display());
    let (left_edge, right_edge) =
        (rise.iter().map(|(x, _)| *x).min().unwrap(), rise.iter().map(|(x, _)| *x).max().unwrap());
    assert!(right_edge - left_edge > CHART_WIDTH / 2, "the line spans the time axis: {left_edge}..{right_edge}");
    let top_row = |from: u32, to: u32| {
        let rows: Vec<u32> =
            (from..=to).filter_map(|x| rise.iter().filter(|(px, _)| *px == x).map(|(_, y)| *y).min()).collect();
        rows.iter().sum::<u32>() as f64 / rows.len() as f64
    };
    let quarter = (right_edge - left_edge) / 4;
    let (left_rows, right_rows) = (top_row(left_edge, left_edge + quarter), top_row(right_edge - quarter, right_edge));
    assert!(
        left_rows > right_rows + 100.0,
        "higher values are higher in the image: left quarter at row {left_rows:.0}, right quarter at {right_rows:.0} ({})",
        kept.display()
    );
    // Where the line starts (0) and ends (1000) fixes the value axis for the rest.
    let row_of_zero = top_row(left_edge, left_edge + 2);
    let row_of_thousand = top_row(right_edge - 2, right_edge);
    let row_of = |value: f64| row_of_zero + (row_of_thousand - row_of_zero) * value / 1000.0;

    // The steady series (the second colour) lies flat at 300.
    let steady = image.plotted(SERIES_COLOURS[1]);
    assert!(steady.len() > 500, "the second series is drawn ({})", kept.display());
    let steady_row = busiest_row(&steady) as f64;
    assert!((steady_row - row_of(300.0)).abs() <= 4.0, "300 at row {steady_row}, expected {:.0}", row_of(300.0));

    // The thresholds: crit (`500 < value`) at 500, warn (`value > 100`) at 100.
    let crit = image.plotted(CRIT_COLOUR);
    let warn = image.plotted(WARN_COLOUR);
    assert!(crit.len() > 300 && warn.len() > 300, "both threshold lines are drawn ({})", kept.display());
    let (crit_row, warn_row) = (busiest_row(&crit) as f64, busiest_row(&warn) as f64);
    assert!((crit_row - row_of(500.0)).abs() <= 4.0, "crit at row {crit_row}, expected {:.0}", row_of(500.0));
    assert!((warn_row - row_of(100.0)).abs() <= 4.0, "warn at row {warn_row}, expected {:.0}", row_of(100.0));
}

#[tokio::test]
async fn a_chart_that_cannot_be_had_leaves_the_verdict_alone_and_says_why() {
    let (address, _) = test_prometheus().await;
    let engine = Engine::new(&[("metrics", TargetKind::Prometheus, &format!("http://{address}"))]);
    let run = engine.run_one(&engine.load(&queue_runbook("sum by (job) (no_range)")), &[]).await;
    assert_eq!(run.status, Status::Crit, "{}", run.summary);
    assert!(run.summary.starts_with("2 series; first {job=rise} = 1000"), "{}", run.summary);
    assert!(run.summary.contains("no chart: Prometheus 'metrics' refused the query: range refused"), "{}", run.summary);
    assert!(run.attachments.is_empty());

    // Prometheus not there at all: the instant query's error, as without a chart.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let engine = Engine::new(&[("metrics", TargetKind::Prometheus, &format!("http://127.0.0.1:{port}"))]);
    let run = engine.run_one(&engine.load(&queue_runbook(QUERY)), &[]).await;
    assert_eq!(run.status, Status::Error, "{}", run.summary);
    assert!(run.summary.starts_with("Prometheus 'metrics': "), "{}", run.summary);
    assert!(run.attachments.is_empty());
}

#[test]
fn chart_where_it_does_not_belong_or_with_a_bad_range_is_a_config_error_with_its_line() {
    let engine = Engine::new(&[
        ("jobs", TargetKind::Redis, "redis://127.0.0.1:6379"),
        ("db", TargetKind::Sqlite, "sqlite:///tmp/x.db"),
        ("metrics", TargetKind::Prometheus, "http://127.0.0.1:9"),
    ]);
    let redis = "name = \"q\"\nsummary = \"x\"\n[[checks]]\nname = \"depth\"\nkind = \"redis\"\ntarget = \"jobs\"\ncommand = [\"LLEN\", \"q\"]\nchart = \"1h\"\n";
    let errors = engine.try_load(redis).unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with(
            "commands/q.toml:8: check 'depth': `chart` is not a key of a redis check (it is a key of prometheus checks); valid: "
        ),
        "{errors:?}"
    );
    assert!(errors[0].contains("command, crit, expect"), "the keys valid here are named: {errors:?}");

    let sql = "name = \"q\"\nsummary = \"x\"\n[[checks]]\nname = \"rows\"\nkind = \"sql\"\ntarget = \"db\"\nquery = \"SELECT 1\"\nchart = \"1h\"\n";
    let errors = engine.try_load(sql).unwrap_err();
    assert!(
        errors[0].starts_with(
            "commands/q.toml:8: check 'rows': `chart` is not a key of a sql check (it is a key of prometheus checks)"
        ),
        "{errors:?}"
    );

    for (range, reason) in
        [("an hour", "invalid duration 'an hour'"), ("10s", "'10s' is out of range"), ("90d", "'90d' is out of range")]
    {
        let text = queue_runbook(QUERY).replace("chart = \"1h\"", &format!("chart = {}", toml_str(range)));
        let errors = engine.try_load(&text).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].starts_with("commands/queue.toml:9: check 'queue depth': chart: "), "{errors:?}");
        assert!(errors[0].contains(reason), "{range}: {errors:?}");
        assert!(
            errors[0].ends_with("chart takes the range to draw, from 1m to 31d, e.g. chart = \"1h\""),
            "{range}: {errors:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Into the thread, and onto disk

#[tokio::test]
async fn a_diagnosis_uploads_the_chart_into_its_thread_after_the_verdict() {
    let (address, _) = test_prometheus().await;
    let targets = BTreeMap::from([(
        "metrics".to_string(),
        TargetInfo {
            kind: TargetKind::Prometheus,
            url: Secret::new(&format!("http://{address}")),
            headers: BTreeMap::new(),
        },
    )]);
    let runbook = queue_runbook(QUERY);
    let bot = Bot::with_targets(tempfile::tempdir().unwrap(), "", &[&runbook], targets).await;
    bot.command("U1", OPS_CHANNEL, None, "/diagnose queue").await;
    let diagnosis = bot.finished_diagnosis(OPS_CHANNEL, None).await;
    assert!(diagnosis.text().contains("queue depth"), "{}", diagnosis.text());
    bot.wait_until("the chart upload", |bot| !bot.uploads().is_empty()).await;

    let uploads = bot.uploads();
    assert_eq!(uploads.len(), 1, "{}", bot.transcript());
    let (channel, thread, file) = &uploads[0];
    assert_eq!((channel.as_str(), thread.as_deref()), (OPS_CHANNEL, Some(diagnosis.id.as_str())), "in its thread");
    assert_eq!(file.filename, "chart-queue-depth.png");
    assert_eq!(file.content_type(), "image/png");
    let image = Image::decode(&file.content);
    assert_eq!((image.width, image.height), (CHART_WIDTH, CHART_HEIGHT));
    keep_artifact("diagnosis-upload.png", &file.content);

    // The upload comes after the final edit of the verdicts.
    let recorded = bot.recorded();
    let upload_at = recorded.iter().position(|entry| matches!(entry, Recorded::Upload { .. })).unwrap();
    let last_edit_at = recorded
        .iter()
        .rposition(|entry| matches!(entry, Recorded::Update { id, .. } if *id == diagnosis.id))
        .expect("the diagnosis was edited");
    assert!(last_edit_at < upload_at, "the chart is posted after the verdict:\n{}", bot.transcript());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_save_writes_the_chart_and_says_so_and_refuses_a_folder_it_cannot_write() {
    let (address, _) = test_prometheus().await;
    let workspace = Workspace::new();
    workspace.config(&format!("[targets.metrics]\nkind = \"prometheus\"\nurl = \"http://{address}\"\n"));
    workspace.runbook("queue.toml", &queue_runbook(QUERY));
    let saved = workspace.path().join("out/charts");
    let saved_arg = saved.display().to_string();

    let finished = tokio::task::spawn_blocking({
        let command = workspace.command(&["run", "diagnose", "queue", "--save", &saved_arg]);
        move || {
            let mut command = command;
            common::Finished::from(command.output().expect("firebell starts"))
        }
    })
    .await
    .unwrap();
    assert_eq!(finished.code, 2, "crit: {finished:?}");
    let path = saved.join("chart-queue-depth.png");
    let bytes = std::fs::read(&path)
        .unwrap_or_else(|error| panic!("{} was not written ({error}): {finished:?}", path.display()));
    let image = Image::decode(&bytes);
    assert_eq!((image.width, image.height), (CHART_WIDTH, CHART_HEIGHT));
    keep_artifact("run-save.png", &bytes);
    let said = format!("saved {} ({} bytes): queue depth over the last 1h", path.display(), bytes.len());
    assert!(finished.stdout.lines().any(|line| line == said), "{}", finished.stdout);

    // A folder that cannot be made (a file is in the way) is refused before anything runs.
    std::fs::write(workspace.path().join("blocked"), "a file").unwrap();
    let blocked = workspace.path().join("blocked/charts").display().to_string();
    let finished = tokio::task::spawn_blocking({
        let command = workspace.command(&["run", "diagnose", "queue", "--save", &blocked]);
        move || {
            let mut command = command;
            common::Finished::from(command.output().expect("firebell starts"))
        }
    })
    .await
    .unwrap();
    assert_eq!(finished.code, 64, "{finished:?}");
    assert!(
        finished.stderr.contains(&format!("firebell: --save {blocked}: cannot create the folder: ")),
        "{}",
        finished.stderr
    );
    assert!(finished.stdout.is_empty(), "nothing ran: {}", finished.stdout);
}

// ---------------------------------------------------------------------------------------------
// The console shows it inline

#[tokio::test]
async fn the_console_shows_a_chart_as_an_image_served_as_png() {
    let (address, _) = test_prometheus().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("commands")).unwrap();
    std::fs::write(dir.path().join("commands/queue.toml"), queue_runbook(QUERY)).unwrap();
    let config = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[store]\nurl = {}\n\n[commands]\ndirs = [{}]\n\n[targets.metrics]\nkind = \"prometheus\"\nurl = \"http://{address}\"\n",
        toml_str(&format!("sqlite://{}", dir.path().join("firebell.db").display())),
        toml_str(&dir.path().join("commands").display().to_string())
    );
    let path = dir.path().join("firebell.toml");
    std::fs::write(&path, config).unwrap();
    let config = firebell::config::Config::load(&path).unwrap_or_else(|errors| panic!("{errors}"));
    let app = firebell::app::App::build(config, Arc::new(firebell::clock::SystemClock)).await.expect("the app starts");
    let base = format!("http://127.0.0.1:{}", app.address().port());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let task = tokio::spawn(app.run_until_stopped(shutdown.clone()));
    let client = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();

    // The page's CSRF cookie, echoed as the page does.
    let page = client.get(format!("{base}/")).send().await.unwrap();
    let csrf = page
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok()?.split(';').next()?.strip_prefix("firebell_csrf=").map(str::to_string))
        .next()
        .expect("the page sets a CSRF cookie");
    let posted = client
        .post(format!("{base}/console/command"))
        .header(reqwest::header::COOKIE, format!("firebell_csrf={csrf}"))
        .header("x-firebell-csrf", &csrf)
        .header("origin", &base)
        .json(&json!({"user": "alice", "channel": "ops", "text": "/diagnose queue"}))
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);

    let chart_message: Value = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let history: Value = client
                .get(format!("{base}/console/history?user=alice&channel=ops"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let found = history["messages"]
                .as_array()
                .unwrap()
                .iter()
                .find(|message| message["body"]["file"]["content_type"] == "image/png")
                .cloned();
            if let Some(found) = found {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the chart is posted on the console");
    let file = &chart_message["body"]["file"];
    assert_eq!(file["filename"], "chart-queue-depth.png");
    assert_eq!(file["title"], "queue depth over the last 1h");
    assert!(chart_message["thread"].is_string(), "in the diagnosis's thread: {chart_message}");

    let id = chart_message["id"].as_i64().unwrap();
    let image = client.get(format!("{base}/console/files/{id}?user=alice")).send().await.unwrap();
    assert_eq!(image.status(), 200);
    assert_eq!(image.headers()["content-type"], "image/png");
    assert!(image.headers()["content-disposition"].to_str().unwrap().starts_with("inline"));
    let bytes = image.bytes().await.unwrap();
    assert_eq!(file["bytes"], bytes.len(), "the whole image is served");
    let decoded = Image::decode(&bytes);
    assert_eq!((decoded.width, decoded.height), (CHART_WIDTH, CHART_HEIGHT));

    // The page's script shows an image file as an <img> from that address.
    let script = client.get(format!("{base}/assets/console.js")).send().await.unwrap().text().await.unwrap();
    assert!(script.contains("image.src = `/console/files/${message.id}"), "console.js shows images inline");

    shutdown.cancel();
    let _ = task.await;
}

// ---------------------------------------------------------------------------------------------
// Slack and Discord take it as a .png file

#[tokio::test]
async fn slack_and_discord_take_the_chart_as_a_png_file_in_the_thread() {
    use firebell::chat::{ChatAdapter, Message};
    let (address, _) = test_prometheus().await;
    let engine = Engine::new(&[("metrics", TargetKind::Prometheus, &format!("http://{address}"))]);
    let run = engine.run_one(&engine.load(&queue_runbook(QUERY)), &[]).await;
    let chart = run.attachments.first().expect("a chart").clone();

    let fake = fake_slack::FakeSlack::start().await;
    let config = firebell::config::SlackConfig {
        bot_token: Some(Secret::new(&fake.token())),
        app_token: None,
        signing_secret: None,
        incident_channel: Some(firebell::config::EnvString("CINCIDENTS".into())),
        api_url: firebell::config::EnvString(fake.api_url()),
        timeout: firebell::config::default_chat_timeout(),
    };
    let slack = firebell::chat::slack::SlackAdapter::new(&config).expect("a Slack adapter");
    let root = slack.post("CINCIDENTS", None, &Message::plain("diagnose queue")).await.unwrap();
    slack.upload("CINCIDENTS", Some(&root.id), &chart).await.expect("Slack takes the chart");
    let shared = &fake.files()[0];
    assert_eq!(shared.filename, "chart-queue-depth.png");
    assert_eq!(shared.thread_ts.as_deref(), Some(root.id.as_str()));
    assert_eq!(shared.content, chart.content, "the PNG arrives byte for byte");
    fake.assert_all_accepted();

    let fake = fake_discord::FakeDiscord::start().await;
    let discord = firebell::chat::discord::DiscordAdapter::with_api_url(
        &Secret::new(fake_discord::TOKEN),
        &fake.api_url(),
        fake_discord::APPLICATION,
        None,
        Some(fake_discord::INCIDENTS.to_string()),
    )
    .expect("a Discord adapter");
    let posted = discord.post(fake_discord::OPS, None, &Message::plain("diagnose queue")).await.unwrap();
    discord.upload(fake_discord::OPS, Some(&posted.id), &chart).await.expect("Discord takes the chart");
    let uploaded = fake.messages(&posted.id);
    assert_eq!(uploaded.len(), 1, "in the diagnosis's thread");
    assert_eq!(uploaded[0].files.len(), 1);
    assert_eq!(uploaded[0].files[0].0, "chart-queue-depth.png");
    assert!(uploaded[0].content.contains("queue depth over the last 1h"), "{}", uploaded[0].content);
}
