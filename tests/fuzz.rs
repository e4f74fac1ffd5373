//! Property-based fuzzing of everything that reads outside input: runbook files, `firebell.toml`,
//! chat commands and their `key=value` arguments, the three alert payloads, Slack's signed
//! requests and the console's session and CSRF checks. No input may panic; bad input is refused
//! with a message; forged requests never reach the core.
//!
//! Inputs are either arbitrary or mutations (byte flips, insertions, deletions, splices,
//! truncations) of the committed corpus in `tests/fuzz-corpus/` and the shipped `commands/`.
//! `cargo test` runs 256 cases per property; `.ci/run` runs more (`PROPTEST_CASES`). A failing
//! case is saved by proptest in `tests/fuzz.proptest-regressions` (commit it: it is replayed
//! first on every later run).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use firebell::chat::platform::ChatHandler;
use firebell::chat::{ChatEvent, Reply};
use firebell::config::{Config, Secret};
use firebell::runbook::{Catalogue, TargetRefs};
use firebell::source::SourceFile;
use hmac::{Hmac, KeyInit, Mac};
use proptest::prelude::*;
use sha2::Sha256;
use tower::ServiceExt;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file of a corpus folder, as bytes.
fn corpus(folder: &Path, extension: &str) -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(folder)
        .unwrap_or_else(|error| panic!("the corpus {} is missing: {error}", folder.display()))
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|ext| ext == extension))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus {} is empty", folder.display());
    files.iter().map(|path| std::fs::read(path).expect("a corpus file")).collect()
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    // Bytes that matter to the formats here: quotes, brackets, separators, escapes, UTF-8.
    let interesting = prop::sample::select(vec![
        b'"', b'\'', b'[', b']', b'{', b'}', b'=', b'\\', b'\n', b'#', b':', b',', b'.', b'0', b'9', b'-', 0x00, 0xC3,
        0xFF, b'{', b' ',
    ]);
    prop_oneof![
        (any::<usize>(), interesting.clone()).prop_map(|(at, byte)| Mutation::Flip(at, byte)),
        (any::<usize>(), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        (any::<usize>(), 1usize..32).prop_map(|(at, len)| Mutation::Delete(at, len)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Duplicate(at, len)),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        let len = bytes.len().max(1);
        match mutation {
            Mutation::Flip(at, byte) if !bytes.is_empty() => bytes[at % len] = *byte,
            Mutation::Insert(at, new) => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, new.iter().copied());
            }
            Mutation::Delete(at, count) if !bytes.is_empty() => {
                let at = at % len;
                let end = (at + count).min(bytes.len());
                bytes.drain(at..end);
            }
            Mutation::Truncate(at) => bytes.truncate(at % (bytes.len() + 1)),
            Mutation::Duplicate(at, count) if !bytes.is_empty() => {
                let at = at % len;
                let end = (at + count).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
            _ => {}
        }
    }
    bytes
}

/// A corpus file, mutated a few times.
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (prop::sample::select(seeds), prop::collection::vec(mutation(), 0..6))
        .prop_map(|(seed, mutations)| mutate(seed, &mutations))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { failure_persistence: Some(Box::new(
        proptest::test_runner::FileFailurePersistence::WithSource("proptest-regressions"))), ..ProptestConfig::default() })]

    /// Runbook files: any text loads into a catalogue or into `file:line` errors, never a panic.
    #[test]
    fn runbook_files_load_or_say_what_is_wrong(bytes in mutated(corpus(&repo().join("commands"), "toml"))) {
        let source = SourceFile::new("commands/fuzzed.toml", text(&bytes));
        let (catalogue, errors) = Catalogue::load(&[source], &TargetRefs::Unchecked);
        for error in &errors {
            prop_assert!(!error.message.is_empty());
            prop_assert!(error.to_string().starts_with("commands/fuzzed.toml"), "{error}");
        }
        // Whatever loaded must bind arguments without panicking too.
        for runbook in catalogue.runbooks() {
            let _ = runbook.bind_args(&[]);
        }
    }

    /// `firebell.toml`: loads or refuses with `file:line`, never a panic.
    #[test]
    fn config_files_load_or_say_what_is_wrong(bytes in mutated(corpus(&repo().join("tests/fuzz-corpus/config"), "toml"))) {
        let source = SourceFile::new("firebell.toml", text(&bytes));
        if let Err(errors) = Config::parse(&source) {
            prop_assert!(errors.to_string().contains("firebell.toml"), "{errors}");
        }
    }

    /// Chat commands as typed: parsed or refused with a message.
    #[test]
    fn commands_parse_or_say_what_is_valid(
        bytes in prop_oneof![
            mutated(corpus(&repo().join("tests/fuzz-corpus/commands"), "txt")),
            "\\PC{0,200}".prop_map(String::into_bytes),
            "/(diagnose|incident|remediate|oncall)( [a-z_=\"' ]{0,12}){0,8}".prop_map(String::into_bytes),
        ]
    ) {
        if let Err(message) = firebell::chat::grammar::parse(text(&bytes).trim()) {
            prop_assert!(!message.is_empty());
        }
    }

    /// Arguments: whatever value a person types is matched against the whole pattern, and a
    /// refusal names the argument.
    #[test]
    fn arguments_match_their_whole_pattern(value in "\\PC{0,80}") {
        let runbook = r#"
name = "queue"
summary = "Queue depth"

[args.queue]
pattern = '^[a-z0-9_]{1,40}$'
help = "the queue's name"

[[checks]]
name = "depth"
kind = "exec"
argv = ["echo", "{{queue}}"]
"#;
        let (catalogue, errors) = Catalogue::load(&[SourceFile::new("queue.toml", runbook)], &TargetRefs::Unchecked);
        prop_assert!(errors.is_empty());
        let runbook = catalogue.get("queue").unwrap();
        let valid = !value.is_empty() && value.len() <= 40
            && value.bytes().all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'_');
        match runbook.bind_args(&[("queue".to_string(), value.clone())]) {
            Ok(args) => {
                prop_assert!(valid, "{value:?} was accepted");
                prop_assert_eq!(args.iter().next().map(|(_, bound)| bound.to_string()), Some(value));
            }
            Err(error) => {
                prop_assert!(!valid, "{value:?} was refused: {error}");
                prop_assert!(error.to_string().contains("queue"), "{error}");
            }
        }
    }

    /// The three alert payloads: parsed into an alert group or refused with a reason.
    #[test]
    fn alert_payloads_parse_or_say_what_is_wrong(
        bytes in prop_oneof![
            mutated(corpus(&repo().join("tests/fuzz-corpus/alerts"), "json")),
            prop::collection::vec(any::<u8>(), 0..512),
        ]
    ) {
        use firebell::ingest::payloads::{parse_alertmanager, parse_generic, parse_grafana};
        for parse in [parse_alertmanager, parse_grafana, parse_generic] {
            if let Err(reason) = parse(&bytes) {
                prop_assert!(!reason.is_empty());
            }
        }
    }

    /// The console's session cookies and CSRF checks: arbitrary cookies and headers never
    /// admit anyone or pass a write, unless they carry the real values.
    #[test]
    fn console_sessions_and_csrf_refuse_anything_forged(cookie in "\\PC{0,120}", header in "\\PC{0,60}") {
        use axum::http::{HeaderMap, HeaderValue};
        use firebell::chat::console::guard::{Access, check_same_origin};
        let access = Access::new(
            "10.0.0.1:8080".parse().unwrap(),
            Some(Secret::new("the-real-token")),
            &firebell::config::ConsoleConfig::default(),
        );
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            headers.insert("cookie", value);
        }
        prop_assert!(access.identify(&headers, None, chrono::Utc::now()).is_err(), "admitted with cookie {cookie:?}");
        let csrf_cookie = cookie.split(';').find_map(|pair| pair.trim().strip_prefix("firebell_csrf=")).unwrap_or("");
        if check_same_origin(&headers, Some(&header)).is_ok() {
            prop_assert!(!csrf_cookie.is_empty() && csrf_cookie == header, "{cookie:?} / {header:?}");
        }
    }
}

/// Counts what reached the core through the Slack endpoints.
#[derive(Default)]
struct Counting(AtomicUsize);

#[async_trait]
impl ChatHandler for Counting {
    async fn handle(&self, _event: ChatEvent) -> Reply {
        self.0.fetch_add(1, Ordering::SeqCst);
        Reply::Nothing
    }

    async fn first_seen(&self, _key: &str) -> bool {
        true
    }
}

const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";

fn sign(timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(SIGNING_SECRET.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

async fn slack(router: &axum::Router, path: &str, timestamp: &str, signature: &str, body: Vec<u8>) -> StatusCode {
    let request = Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", timestamp)
        .header("x-slack-signature", signature)
        .body(Body::from(body))
        .unwrap();
    router.clone().oneshot(request).await.unwrap().status()
}

fn slack_bodies() -> impl Strategy<Value = Vec<u8>> {
    let seeds = vec![
        b"command=%2Fdiagnose&text=queue+queue%3Dsignals&user_id=U1&channel_id=C1&trigger_id=t".to_vec(),
        br#"payload=%7B%22type%22%3A%22block_actions%22%2C%22user%22%3A%7B%22id%22%3A%22U1%22%7D%7D"#.to_vec(),
        br#"{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention","user":"U1","text":"<@B> /incident ack","channel":"C1","ts":"1.2"}}"#.to_vec(),
        br#"{"type":"url_verification","challenge":"abc"}"#.to_vec(),
    ];
    prop_oneof![mutated(seeds), prop::collection::vec(any::<u8>(), 0..256)]
}

/// Slack's endpoints: forged or stale requests are refused with 401 and reach nothing; signed
/// ones with any body get an answer (never a server error) without a panic.
#[test]
fn slack_requests_are_verified_before_anything_reads_them() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let handler = Arc::new(Counting::default());
    let router = firebell::chat::slack::http::routes(handler.clone(), Secret::new(SIGNING_SECRET));
    let config = ProptestConfig {
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let paths = prop::sample::select(vec!["/slack/commands", "/slack/interactions", "/slack/events"]);
    runner
        .run(
            &(paths, slack_bodies(), any::<bool>(), 0i64..1_000_000, "[0-9a-f=v]{0,70}"),
            |(path, body, fresh, age, forged)| {
                let now = chrono::Utc::now().timestamp();
                let timestamp = if fresh { now.to_string() } else { (now - 301 - age).to_string() };
                runtime.block_on(async {
                    let before = handler.0.load(Ordering::SeqCst);
                    // Forged: a signature that is not the body's.
                    let status = slack(&router, path, &timestamp, &forged, body.clone()).await;
                    prop_assert_eq!(status, StatusCode::UNAUTHORIZED, "forged signature {:?} on {}", forged, path);
                    // Signed, but maybe stale.
                    let status = slack(&router, path, &timestamp, &sign(&timestamp, &body), body.clone()).await;
                    if fresh {
                        prop_assert!(!status.is_server_error(), "{} answered {} to a signed body", path, status);
                    } else {
                        prop_assert_eq!(status, StatusCode::UNAUTHORIZED, "a stale timestamp on {}", path);
                        prop_assert_eq!(handler.0.load(Ordering::SeqCst), before, "a refused request reached the core");
                    }
                    Ok(())
                })
            },
        )
        .unwrap_or_else(|failure| panic!("{failure}"));
}
