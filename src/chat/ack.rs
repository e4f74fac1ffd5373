//! What every platform does the same way when it answers people and posts for the bot:
//!
//! - [`within_deadline`]: platforms want an answer within a few seconds (Slack 3, Discord 3);
//!   the core's reply is waited for until the platform's deadline, and a slower one is handed
//!   back to be delivered later (a `response_url`, an interaction's webhook). A panic in the
//!   core becomes a private "something went wrong", never a silent drop.
//! - [`Gate`]: at most one turn per interval per key, in arrival order — one post per second per
//!   channel, one edit per two seconds per message (SPEC §8).
//!
//! Time is tokio's, so tests can pause it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::platform::ChatHandler;
use super::{ChatEvent, Reply};

/// What a person is told when the core failed while answering them (it is logged).
pub const FAILED: &str = "Something went wrong handling that; it has been logged.";

/// Keys remembered by a [`Gate`] before idle ones are forgotten.
const MAX_IDLE_KEYS: usize = 1024;

/// Hands `event` to `handler` and waits for its reply at most `deadline`. `Err` holds the
/// reply still on its way, for [`late`]; `platform` names who is waiting, for the logs.
pub async fn within_deadline(
    handler: &Arc<dyn ChatHandler>,
    event: ChatEvent,
    deadline: Duration,
    platform: &'static str,
) -> Result<Reply, JoinHandle<Reply>> {
    let mut task = answer_later(handler, event);
    match tokio::time::timeout(deadline, &mut task).await {
        Ok(reply) => Ok(reply.unwrap_or_else(|error| failed(error, platform))),
        Err(_) => {
            tracing::warn!(
                platform,
                deadline_ms = deadline.as_millis() as u64,
                "The chat core did not answer in time; acknowledged without its reply"
            );
            Err(task)
        }
    }
}

/// Hands `event` to `handler` without waiting: the reply, when it comes, is in the handle.
pub fn answer_later(handler: &Arc<dyn ChatHandler>, event: ChatEvent) -> JoinHandle<Reply> {
    let handler = handler.clone();
    tokio::spawn(async move { handler.handle(event).await })
}

/// The reply a deadline left behind, once it is there.
pub async fn late(task: JoinHandle<Reply>, platform: &'static str) -> Reply {
    task.await.unwrap_or_else(|error| failed(error, platform))
}

fn failed(error: tokio::task::JoinError, platform: &'static str) -> Reply {
    tracing::error!(platform, %error, "The chat core failed while handling an event");
    Reply::private(FAILED)
}

/// How often a channel may receive a post (SPEC §8; Slack's and Discord's own pace).
pub const POST_INTERVAL: Duration = Duration::from_secs(1);
/// How often one message may change: the core coalesces a streamed diagnosis to one edit per
/// interval, and the adapters hold each message to it (SPEC §8).
pub const EDIT_INTERVAL: Duration = Duration::from_secs(2);

/// One turn per interval per key (a channel, a message).
pub struct Gate {
    interval: Duration,
    /// Each key's slot holds the earliest instant its next turn may start.
    keys: Mutex<HashMap<String, Arc<AsyncMutex<Instant>>>>,
}

/// A key's turn, held while the request is in flight; dropping it starts the interval, so the
/// next request leaves one interval after this one's answer arrived — which a platform
/// measuring arrivals always sees as at least one interval apart.
pub struct Turn {
    slot: OwnedMutexGuard<Instant>,
    interval: Duration,
}

impl Drop for Turn {
    fn drop(&mut self) {
        *self.slot = Instant::now() + self.interval;
    }
}

impl Gate {
    pub fn new(interval: Duration) -> Self {
        Gate { interval, keys: Mutex::new(HashMap::new()) }
    }

    /// Waits for `key`'s turn (tokio's mutex queues waiters fairly, so requests keep their
    /// order). Different keys never wait for each other.
    pub async fn turn(&self, key: &str) -> Turn {
        let slot = {
            let mut keys = self.keys.lock().expect("gate keys");
            if keys.len() >= MAX_IDLE_KEYS {
                let now = Instant::now();
                keys.retain(|_, slot| {
                    Arc::strong_count(slot) > 1 || slot.try_lock().map(|next| *next > now).unwrap_or(true)
                });
            }
            keys.entry(key.to_string()).or_insert_with(|| Arc::new(AsyncMutex::new(Instant::now()))).clone()
        };
        let slot = slot.lock_owned().await;
        tokio::time::sleep_until(*slot).await;
        Turn { slot, interval: self.interval }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn one_turn_per_interval_per_key_and_keys_are_independent() {
        let gate = Arc::new(Gate::new(Duration::from_millis(100)));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for channel in ["A", "A", "A", "B"] {
            let gate = gate.clone();
            tasks.push(tokio::spawn(async move {
                let _turn = gate.turn(channel).await;
                (channel, started.elapsed())
            }));
        }
        let mut times = Vec::new();
        for task in tasks {
            times.push(task.await.unwrap());
        }
        let mut in_a = times.iter().filter(|(channel, _)| *channel == "A").map(|(_, at)| *at).collect::<Vec<_>>();
        in_a.sort();
        assert!(in_a[1] - in_a[0] >= Duration::from_millis(100), "{in_a:?}");
        assert!(in_a[2] - in_a[1] >= Duration::from_millis(100), "{in_a:?}");
        let in_b = times.iter().find(|(channel, _)| *channel == "B").unwrap().1;
        assert!(in_b < Duration::from_millis(50), "B waited {in_b:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_gate_spaces_turns_per_key() {
        let gate = Arc::new(Gate::new(Duration::from_millis(300)));
        let started = Instant::now();
        drop(gate.turn("a").await);
        drop(gate.turn("b").await);
        assert!(started.elapsed() < Duration::from_millis(100), "keys are independent");
        drop(gate.turn("a").await);
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    struct Answering(Duration, bool);

    #[async_trait::async_trait]
    impl ChatHandler for Answering {
        async fn handle(&self, _: ChatEvent) -> Reply {
            tokio::time::sleep(self.0).await;
            assert!(!self.1, "the core fails");
            Reply::private("done")
        }

        async fn first_seen(&self, _: &str) -> bool {
            true
        }
    }

    fn event() -> ChatEvent {
        ChatEvent::Command { origin: crate::chat::Origin::new("slack", "U1", "C1", None), text: "/oncall".into() }
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reply_is_handed_back_and_a_failure_is_said() {
        let quick: Arc<dyn ChatHandler> = Arc::new(Answering(Duration::from_millis(10), false));
        let reply = within_deadline(&quick, event(), Duration::from_secs(1), "slack").await;
        assert_eq!(reply.ok(), Some(Reply::private("done")));
        let slow: Arc<dyn ChatHandler> = Arc::new(Answering(Duration::from_secs(5), false));
        let Err(pending) = within_deadline(&slow, event(), Duration::from_secs(1), "slack").await else {
            panic!("answered before the deadline")
        };
        assert_eq!(late(pending, "slack").await, Reply::private("done"));
        let failing: Arc<dyn ChatHandler> = Arc::new(Answering(Duration::ZERO, true));
        let reply = within_deadline(&failing, event(), Duration::from_secs(1), "slack").await;
        assert_eq!(reply.ok(), Some(Reply::private(FAILED)));
    }
}
