//! What each background part of the bot is doing, for `/readyz`, and the supervisor that keeps
//! those parts running: a part that panics is logged, shown as failing and restarted with
//! backoff; it shows as working again once it has run for a while (or reports so itself).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How long a restarted part must run without panicking before it counts as working again.
pub const SETTLE: Duration = Duration::from_secs(30);

/// The state of every part that reported one.
#[derive(Debug, Default)]
pub struct Health {
    parts: Mutex<BTreeMap<String, Part>>,
}

#[derive(Debug, Clone)]
struct Part {
    /// Without it the bot cannot page (the timer loop): failing makes `/readyz` not ready.
    critical: bool,
    failing: Option<String>,
}

impl Health {
    pub fn new() -> Arc<Health> {
        Arc::new(Health::default())
    }

    /// Declares `part`, working; `critical` parts make the bot not ready while they fail.
    pub fn register(&self, part: &str, critical: bool) {
        self.lock().entry(part.to_string()).or_insert(Part { critical, failing: None }).critical = critical;
    }

    pub fn ok(&self, part: &str) {
        if let Some(state) = self.lock().get_mut(part) {
            state.failing = None;
        }
    }

    /// Marks `part` as not working, with what is wrong (shown by `/readyz`).
    pub fn failing(&self, part: &str, detail: impl Into<String>) {
        let mut parts = self.lock();
        let state = parts.entry(part.to_string()).or_insert(Part { critical: false, failing: None });
        state.failing = Some(detail.into());
    }

    /// The parts not working now, each with what is wrong, and whether any of them is critical.
    pub fn report(&self) -> (BTreeMap<String, String>, bool) {
        let parts = self.lock();
        let failing: BTreeMap<String, String> = parts
            .iter()
            .filter_map(|(name, state)| state.failing.clone().map(|detail| (name.clone(), detail)))
            .collect();
        let critical = parts.values().any(|state| state.critical && state.failing.is_some());
        (failing, critical)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Part>> {
        self.parts.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Runs `make()`'s task until `shutdown`; if it panics it is logged, shown as failing in
/// `health` under `part`, and started again after a backoff (1 s doubling to 30 s, reset once a
/// run lasted [`SETTLE`]). A task that ends on its own before shutdown chose to stop (a refused
/// token cannot be fixed by retrying): it is shown as failing and not restarted.
pub fn supervise<F, Fut>(part: &str, health: Arc<Health>, shutdown: CancellationToken, make: F) -> JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let part = part.to_string();
    tokio::spawn(async move {
        let mut backoff = Duration::from_secs(1);
        let mut restarts = 0u32;
        loop {
            let mut task = tokio::spawn(make());
            let mut settled = false;
            let ended = loop {
                tokio::select! {
                    ended = &mut task => break ended,
                    _ = tokio::time::sleep(SETTLE), if !settled && restarts > 0 => {
                        settled = true;
                        backoff = Duration::from_secs(1);
                        health.ok(&part);
                        tracing::info!(part, "Restarted part is working again");
                    }
                }
            };
            if shutdown.is_cancelled() {
                return;
            }
            let detail = match ended {
                Ok(()) => {
                    tracing::error!(part, "A background part stopped; see the log above for why");
                    health.failing(&part, "stopped (see the log for why); restart firebell once that is fixed");
                    return;
                }
                Err(error) if error.is_panic() => format!("panicked: {}", panic_message(error.into_panic())),
                Err(error) => format!("was cancelled: {error}"),
            };
            restarts += 1;
            tracing::error!(
                part,
                restarts,
                detail,
                retry_in_s = backoff.as_secs(),
                "A background part failed; restarting it"
            );
            metrics::counter!("firebell_task_restarts_total", "part" => part.clone()).increment(1);
            health
                .failing(&part, format!("{detail}; restarted {restarts} time(s), the last {}s ago", backoff.as_secs()));
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = shutdown.cancelled() => return,
            }
            backoff = (backoff * 2).min(SETTLE);
        }
    })
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|text| text.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test(start_paused = true)]
    async fn a_panicking_part_is_shown_failing_and_restarted_until_it_works() {
        let health = Health::new();
        health.register("timers", true);
        let shutdown = CancellationToken::new();
        let runs = Arc::new(AtomicU32::new(0));
        let (working, mut worked) = tokio::sync::mpsc::unbounded_channel();
        let counter = runs.clone();
        let task = supervise("timers", health.clone(), shutdown.clone(), move || {
            let run = counter.fetch_add(1, Ordering::SeqCst);
            let working = working.clone();
            async move {
                if run < 2 {
                    panic!("boom {run}");
                }
                let _ = working.send(run);
                std::future::pending::<()>().await;
            }
        });
        assert_eq!(worked.recv().await, Some(2), "the third start runs");
        let (failing, critical) = health.report();
        assert!(failing["timers"].starts_with("panicked: boom 1; restarted 2 time(s)"), "{failing:?}");
        assert!(critical, "the timer loop failing makes the bot not ready");

        // Once it has run for a while it counts as working again.
        tokio::time::sleep(SETTLE + Duration::from_secs(1)).await;
        assert_eq!(health.report(), (BTreeMap::new(), false));
        shutdown.cancel();
        task.abort();
        assert_eq!(runs.load(Ordering::SeqCst), 3);
    }
}
