//! What the benches that run the real `firebell serve` binary share: starting it on a free
//! port, waiting for `/readyz`, reading its memory from `/proc`, and percentiles.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

/// Whether `FIREBELL_BENCH_ONLY` (a comma-separated list) is unset or names `part`.
pub fn selected(part: &str) -> bool {
    let only = std::env::var("FIREBELL_BENCH_ONLY").unwrap_or_default();
    only.is_empty() || only.split(',').any(|name| name.trim() == part)
}

/// The binary under test: `FIREBELL_BENCH_BINARY` when set, else the release binary cargo built
/// for this bench. They differ: `cargo bench` builds the binary with the dev-dependencies'
/// features (tokio's `test-util`, …), so its symbols do not match `link/startup-order.txt`,
/// which is made from `cargo build --release`, the binary people run. Memory is measured on that
/// one: `cargo build --release && FIREBELL_BENCH_BINARY=target/release/firebell cargo bench …`.
pub fn firebell() -> String {
    std::env::var("FIREBELL_BENCH_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_firebell").to_string())
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// A TOML string literal.
pub fn toml_str(text: &str) -> String {
    toml::Value::String(text.to_string()).to_string()
}

/// `firebell serve --config CONFIG` in `dir`, its log in `dir/serve-N.log`.
pub fn spawn_serve(dir: &Path, config: &Path, log_name: &str) -> Child {
    let log = std::fs::File::create(dir.join(log_name)).expect("a log file");
    Command::new(firebell())
        .args(["serve", "--config"])
        .arg(config)
        .current_dir(dir)
        .env("FIREBELL_LOG", std::env::var("FIREBELL_BENCH_LOG").unwrap_or_else(|_| "warn".into()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("firebell serve starts")
}

/// The status code of `GET path` on `address`, or `None` when nothing answers yet. A plain
/// blocking socket, so the poll adds no runtime of its own to what is measured.
pub fn http_get_status(address: SocketAddr, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect_timeout(&address, Duration::from_millis(200)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let _ = stream.set_nodelay(true);
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Polls `/readyz` every `poll` until it answers 200; the time from `since`, or `None` when the
/// process exited or `timeout` passed.
pub fn wait_ready(child: &mut Child, address: SocketAddr, since: Instant, timeout: Duration) -> Option<Duration> {
    loop {
        if http_get_status(address, "/readyz") == Some(200) {
            return Some(since.elapsed());
        }
        if since.elapsed() > timeout || child.try_wait().ok().flatten().is_some() {
            return None;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// A field of `/proc/PID/status` given in kB, in MiB (0 when absent).
pub fn status_mib(pid: u32, name: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|line| line.split(':').next() == Some(name))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

/// `VmRSS` and `VmHWM` of `pid` in MiB.
pub fn memory_mib(pid: u32) -> (f64, f64) {
    (status_mib(pid, "VmRSS"), status_mib(pid, "VmHWM"))
}

/// Stops the child with SIGTERM (a graceful stop), then waits for it.
pub fn stop(child: &mut Child) {
    // SAFETY: kill(2) on the pid of a child this process started and has not reaped.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The value at `fraction` of sorted durations, nearest rank.
pub fn percentile(sorted: &[Duration], fraction: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index]
}

pub fn ms(duration: Duration) -> String {
    format!("{:.2} ms", duration.as_secs_f64() * 1000.0)
}

/// `uptime`'s load averages, for the machine-state column.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|text| text.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}
