//! What the fake platforms (`tests/fake_slack`, `tests/fake_discord`) share: waiting for their
//! state with a deadline, and failing with what they saw.

use std::time::{Duration, Instant};

/// Polls `done` until it holds; after `timeout`, fails naming `what` and showing `saw()`.
pub async fn wait_until(what: &str, timeout: Duration, done: impl Fn() -> bool, saw: impl Fn() -> String) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}; calls:\n{}", saw());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Fails with `what` and each of `found`, one a line, unless there are none.
pub fn assert_none(what: &str, found: &[String]) {
    assert!(found.is_empty(), "{what}:\n{}", found.join("\n"));
}
