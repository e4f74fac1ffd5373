//! Waiting for what the app does in the background: poll with a deadline, never a fixed sleep.

use std::future::Future;
use std::time::{Duration, Instant};

/// Long enough for any story on a loaded machine; they take seconds.
pub const WAIT: Duration = Duration::from_secs(30);

/// Reads with `read` until `condition` holds for what it returns, and returns that; fails
/// after [`WAIT`], naming `what` and showing the last value read.
pub async fn eventually<T, F, Fut>(what: &str, read: F, condition: impl Fn(&T) -> bool) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = T>,
    T: std::fmt::Debug,
{
    let deadline = Instant::now() + WAIT;
    loop {
        let value = read().await;
        if condition(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out after {WAIT:?} waiting for {what}; last: {value:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
