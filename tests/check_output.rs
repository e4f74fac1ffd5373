//! What a check's output looks like once it leaves firebell, through the real binary: a PEM key
//! and a configured secret are masked whole (also where a summary is cut), output is cut at
//! `[commands] max_output` with a visible marker, and a program printing 200 MB without a
//! newline leaves firebell's memory bounded.

mod common;
mod support;

use std::io::Read;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Workspace, toml_str};
use serde_json::Value;

/// The audit's token (finding #5), set as `[server] api_token` so the redactor knows it.
const TOKEN: &str = "Zq7vN2kLp9XwR4tY8mB3cD6fH1jK5sQ0";

/// A runbook of exec checks, each running one script.
fn exec_runbook(name: &str, checks: &[(&str, &std::path::Path)]) -> String {
    let mut text = format!("name = \"{name}\"\nsummary = \"{name} checks\"\n");
    for (check, script) in checks {
        text.push_str(&format!(
            "\n[[checks]]\nname = \"{check}\"\nkind = \"exec\"\nargv = [{}]\ntimeout = \"60s\"\n",
            toml_str(&script.display().to_string())
        ));
    }
    text
}

/// A fresh RSA key in PEM, made by openssl for this test.
fn private_key(workspace: &Workspace) -> String {
    let path = workspace.path().join("k.pem");
    let status = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024", "-out"])
        .arg(&path)
        .stderr(Stdio::null())
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl genpkey failed");
    std::fs::read_to_string(&path).expect("the key is written")
}

/// The key's base64 body lines: none of them may be shown anywhere.
fn key_body(key: &str) -> Vec<String> {
    key.lines().filter(|line| !line.starts_with("-----")).map(str::to_string).collect()
}

fn json_events(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}")))
        .collect()
}

#[test]
fn a_pem_key_and_a_secret_across_the_summary_cut_are_masked_in_lines_summaries_and_data() {
    let workspace = Workspace::new();
    workspace.config(&format!("[server]\napi_token = \"{TOKEN}\"\n"));
    let key = private_key(&workspace);
    let key_path = workspace.path().join("k.pem");
    // #4: `cat key` printed the key body in clear, one redacted line at a time.
    let pem =
        workspace.script("pem", &format!("echo 'key follows'\ncat '{}'\necho 'after the key'", key_path.display()));
    // #5: the summary was cut at 160 characters before redaction, leaving 10 of the token's 32.
    let cut = workspace.script("cut", &format!("printf '%s{TOKEN}\\n' \"$(printf 'x%.0s' $(seq 150))\""));
    // The token straddles the 200 characters a summary shows.
    let straddle = workspace.script("straddle", &format!("printf '%s{TOKEN}\\n' \"$(printf 'x%.0s' $(seq 190))\""));
    workspace.runbook("leaks.toml", &exec_runbook("leaks", &[("pem", &pem), ("cut", &cut), ("straddle", &straddle)]));

    let finished = workspace.run(&["run", "diagnose", "leaks", "--json"]);
    assert_eq!(finished.code, 0, "{finished:?}");
    let events = json_events(&finished.stdout);
    let lines: Vec<&str> = events
        .iter()
        .filter(|event| event["event"] == "line" && event["name"] == "pem")
        .map(|event| event["line"].as_str().unwrap())
        .collect();
    assert_eq!(lines.first(), Some(&"key follows"), "{lines:?}");
    assert_eq!(lines.last(), Some(&"after the key"), "{lines:?}");
    assert!(lines[1..lines.len() - 1].iter().all(|line| *line == "***"), "every key line is masked: {lines:?}");
    let check = |name: &str| events.iter().find(|event| event["event"] == "check" && event["name"] == name).unwrap();
    let kept = check("pem")["data"]["stdout"].as_str().unwrap();
    assert_eq!(kept, format!("{}\n", lines.join("\n")), "the data holds what the lines showed");
    assert_eq!(check("pem")["summary"], Value::from("exit 0: key follows"));
    assert_eq!(check("cut")["summary"], Value::from(format!("exit 0: {}***", "x".repeat(150))));
    let straddled = check("straddle")["summary"].as_str().unwrap();
    assert!(straddled.starts_with(&format!("exit 0: {}", "x".repeat(190))), "{straddled}");
    assert!(straddled.ends_with('…'), "the summary is cut, visibly: {straddled}");
    for leaked in key_body(&key).iter().map(String::as_str).chain([&TOKEN[..4], "BEGIN PRIVATE KEY"]) {
        assert!(!finished.stdout.contains(leaked), "'{leaked}' is shown:\n{}", finished.stdout);
    }

    // The terminal shows the same: no key body, no token, not even its start.
    let finished = workspace.run(&["run", "diagnose", "leaks"]);
    assert_eq!(finished.code, 0, "{finished:?}");
    // Checks run at once, so their lines interleave: read the pem check's own lines in order.
    let pem: Vec<&str> = finished.stdout.lines().filter(|line| line.starts_with("      pem | ")).collect();
    assert_eq!(pem[..2], ["      pem | key follows", "      pem | ***"], "{}", finished.stdout);
    assert!(finished.stdout.contains(&format!("OK    cut — exit 0: {}*** (", "x".repeat(150))), "{}", finished.stdout);
    for leaked in key_body(&key).iter().map(String::as_str).chain([&TOKEN[..4]]) {
        assert!(!finished.stdout.contains(leaked), "'{leaked}' is shown:\n{}", finished.stdout);
    }
}

#[test]
fn output_past_max_output_is_cut_with_a_marker_and_a_secret_across_the_cut_is_masked_whole() {
    let workspace = Workspace::new();
    workspace.config(&format!("[server]\napi_token = \"{TOKEN}\"\n\n[commands]\nmax_output = \"2KiB\"\n"));
    // 2046 bytes of one line, then the token across the 2 KiB cut, then more lines.
    let long =
        workspace.script("long", &format!("printf '%s{TOKEN}tail\\n' \"$(printf 'y%.0s' $(seq 2046))\"\nseq 1 1000"));
    workspace.runbook("long.toml", &exec_runbook("long", &[("long", &long)]));

    let finished = workspace.run(&["run", "diagnose", "long", "--json"]);
    assert_eq!(finished.code, 0, "{finished:?}");
    let events = json_events(&finished.stdout);
    let lines: Vec<&str> =
        events.iter().filter(|event| event["event"] == "line").map(|event| event["line"].as_str().unwrap()).collect();
    // Masked first, then cut: what is left of the mask shows, none of the token.
    assert_eq!(lines, [format!("{}**", "y".repeat(2046)).as_str(), "… output cut at 2 KiB"], "{}", finished.stdout);
    let check = events.iter().find(|event| event["event"] == "check").unwrap();
    let stdout = check["data"]["stdout"].as_str().unwrap();
    assert!(stdout.ends_with("\n… output cut at 2 KiB\n"), "{stdout}");
    assert!(stdout.len() <= 2048 + "\n… output cut at 2 KiB\n".len(), "{} bytes kept", stdout.len());
    assert!(!finished.stdout.contains(&TOKEN[..4]), "{}", finished.stdout);
}

#[test]
fn max_output_that_is_not_a_size_is_refused_with_its_line_and_what_is_valid() {
    let workspace = Workspace::new();
    workspace.config("[commands]\nconcurrency = 4\nmax_output = \"12XB\"\n");
    let finished = workspace.run(&["commands", "check"]);
    assert_ne!(finished.code, 0, "{finished:?}");
    let shown = format!("{}{}", finished.stdout, finished.stderr);
    assert!(shown.contains("firebell.toml:3:"), "{shown}");
    assert!(shown.contains("commands.max_output: invalid size '12XB'"), "{shown}");
    assert!(shown.contains("512KiB, 1MiB"), "says what is valid: {shown}");

    workspace.config("[commands]\nmax_output = \"1GiB\"\n");
    let finished = workspace.run(&["commands", "check"]);
    let shown = format!("{}{}", finished.stdout, finished.stderr);
    assert!(shown.contains("firebell.toml:2:") && shown.contains("between 1KiB and 64MiB"), "{shown}");
}

/// The peak resident memory of a running process, from `/proc/PID/status` (Linux).
fn peak_resident_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn two_hundred_megabytes_without_a_newline_keep_memory_bounded_and_say_they_were_cut() {
    let workspace = Workspace::new();
    let flood = workspace.script("flood", "head -c 200000000 /dev/zero | tr '\\000' 'z'");
    workspace.runbook("flood.toml", &exec_runbook("flood", &[("flood", &flood)]));

    let mut child = workspace
        .command(&["run", "diagnose", "flood", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("firebell starts");
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut peak_kib = 0;
    let status = loop {
        // Read before reaping: the high-water mark is gone once the process is waited for.
        if let Some(kib) = peak_resident_kib(pid) {
            peak_kib = peak_kib.max(kib);
        }
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("firebell did not finish within 120 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = reader.join().unwrap().expect("stdout is UTF-8");
    assert_eq!(status.code(), Some(0), "{text:.500}");
    assert!(peak_kib > 0, "the peak was read");
    assert!(peak_kib < 100 * 1024, "firebell peaked at {peak_kib} KiB for 200 MB of output");
    let events = json_events(&text);
    let lines: Vec<&str> =
        events.iter().filter(|event| event["event"] == "line").map(|event| event["line"].as_str().unwrap()).collect();
    assert_eq!(lines.len(), 2, "the cut line and the marker");
    assert_eq!(lines[0].len(), 1 << 20, "the first MiB is shown");
    assert_eq!(lines[1], "… output cut at 1 MiB");
}
