//! Per-channel pacing: at most one post per interval in each channel, in the order callers
//! arrived, without busy waiting. Different channels never wait for each other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};
use tokio::time::Instant;

/// Channels remembered before idle ones are forgotten.
const MAX_IDLE_CHANNELS: usize = 1024;

pub(crate) struct ChannelGate {
    interval: Duration,
    /// Each channel's slot holds the earliest instant its next post may start.
    channels: Mutex<HashMap<String, Arc<AsyncMutex<Instant>>>>,
}

/// A channel's turn: held while the post is in flight. Dropping it starts the interval, so
/// the next post leaves one interval after this one's answer arrived — which Slack, measuring
/// arrivals, always sees as at least one interval apart.
pub(crate) struct Turn {
    slot: OwnedMutexGuard<Instant>,
    interval: Duration,
}

impl Drop for Turn {
    fn drop(&mut self) {
        *self.slot = Instant::now() + self.interval;
    }
}

impl ChannelGate {
    pub(crate) fn new(interval: Duration) -> Self {
        ChannelGate { interval, channels: Mutex::new(HashMap::new()) }
    }

    /// Waits for `channel`'s turn (tokio's mutex queues waiters fairly, so posts keep their order).
    pub(crate) async fn turn(&self, channel: &str) -> Turn {
        let slot = {
            let mut channels = self.channels.lock().expect("channel gate");
            if channels.len() >= MAX_IDLE_CHANNELS {
                let now = Instant::now();
                channels.retain(|_, slot| {
                    Arc::strong_count(slot) > 1 || slot.try_lock().map(|next| *next > now).unwrap_or(true)
                });
            }
            channels.entry(channel.to_string()).or_insert_with(|| Arc::new(AsyncMutex::new(Instant::now()))).clone()
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
    async fn one_turn_per_interval_per_channel_and_channels_are_independent() {
        let gate = Arc::new(ChannelGate::new(Duration::from_millis(100)));
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
}
