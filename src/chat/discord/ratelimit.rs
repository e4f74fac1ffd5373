//! Discord's rate limits, kept on our side so the API rarely has to answer 429:
//!
//! - [`Limiter`]: the global limit (50 requests per second per bot; interaction callbacks and
//!   their webhooks are exempt) and Discord's per-route buckets as its `X-RateLimit-Bucket`, `-Remaining` and
//!   `-Reset-After` headers describe them. A 429 empties the bucket (or, with
//!   `X-RateLimit-Global`/`X-RateLimit-Scope: global`, stops every request) for its `Retry-After`.
//!
//! Time is tokio's, so tests can pause it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::HeaderMap;
use tokio::sync::Mutex as AsyncMutex;
use tokio::time::Instant;

/// Requests per second Discord allows a bot across all routes.
pub const GLOBAL_PER_SECOND: usize = 50;
/// Buckets remembered before expired ones are forgotten.
const MAX_BUCKETS: usize = 4096;

/// A request's route as Discord buckets it: the method and path with only the major parameters
/// (channel, guild, webhook) kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Route {
    /// `POST channels/123/messages/:id`.
    pub key: String,
    /// `channels/123`: buckets with the same hash are still separate per major parameter.
    pub major: String,
    /// Counts against the global limit (everything but interaction callbacks and webhooks).
    pub global: bool,
}

impl Route {
    pub(crate) fn new(method: &reqwest::Method, path: &str) -> Route {
        let segments: Vec<&str> = path.trim_matches('/').split('/').filter(|segment| !segment.is_empty()).collect();
        let mut key: Vec<String> = Vec::with_capacity(segments.len());
        let mut major = String::new();
        let mut index = 0;
        while index < segments.len() {
            let segment = segments[index];
            key.push(segment.to_string());
            match segment {
                "channels" | "guilds" if major.is_empty() && index + 1 < segments.len() => {
                    major = format!("{segment}/{}", segments[index + 1]);
                    key.push(segments[index + 1].to_string());
                    index += 2;
                }
                // A webhook's (an interaction's) token is part of its identity but never of a
                // key that is logged.
                "webhooks" | "interactions" if index + 2 < segments.len() => {
                    if segment == "webhooks" && major.is_empty() {
                        major = format!("{segment}/{}/{}", segments[index + 1], segments[index + 2]);
                    }
                    key.push(if segment == "webhooks" { segments[index + 1].to_string() } else { ":id".to_string() });
                    key.push(":token".to_string());
                    index += 3;
                }
                _ => {
                    if index > 0 && segment.bytes().all(|byte| byte.is_ascii_digit()) {
                        *key.last_mut().expect("just pushed") = ":id".to_string();
                    }
                    index += 1;
                }
            }
        }
        // Interaction callbacks and their webhook (follow-ups, edits of the first answer) are
        // not under the bot's global limit.
        let global = !matches!(segments.first(), Some(&"interactions") | Some(&"webhooks"));
        Route { key: format!("{method} {}", key.join("/")), major, global }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    remaining: u32,
    reset_at: Instant,
}

#[derive(Default)]
struct LimiterState {
    /// Nothing may be sent before this (a global 429).
    global_until: Option<Instant>,
    /// Route key → Discord's bucket hash, once a response named it.
    route_buckets: HashMap<String, String>,
    buckets: HashMap<String, Bucket>,
}

impl LimiterState {
    fn bucket_key(&self, route: &Route) -> String {
        match self.route_buckets.get(&route.key) {
            Some(hash) => format!("{hash}:{}", route.major),
            None => route.key.clone(),
        }
    }
}

/// The global limit and the route buckets, shared by every request of one bot token.
pub(crate) struct Limiter {
    per_second: usize,
    sent: AsyncMutex<VecDeque<Instant>>,
    state: Mutex<LimiterState>,
}

impl Default for Limiter {
    fn default() -> Self {
        Limiter::new(GLOBAL_PER_SECOND)
    }
}

impl Limiter {
    pub(crate) fn new(per_second: usize) -> Self {
        Limiter { per_second: per_second.max(1), sent: AsyncMutex::new(VecDeque::new()), state: Mutex::default() }
    }

    /// Waits until `route` may be called: no global stop, room in its bucket, and (for routes
    /// under the global limit) fewer than 50 requests in the last second.
    pub(crate) async fn acquire(&self, route: &Route) {
        loop {
            let wait = {
                let mut state = self.state.lock().expect("limiter state");
                let now = Instant::now();
                let key = state.bucket_key(route);
                match (state.global_until.filter(|until| *until > now), state.buckets.get_mut(&key)) {
                    (Some(until), _) => Some(until),
                    (None, Some(bucket)) if bucket.reset_at <= now => {
                        state.buckets.remove(&key);
                        None
                    }
                    (None, Some(bucket)) if bucket.remaining == 0 => Some(bucket.reset_at),
                    (None, Some(bucket)) => {
                        bucket.remaining -= 1;
                        None
                    }
                    (None, None) => None,
                }
            };
            match wait {
                Some(until) => tokio::time::sleep_until(until).await,
                None => break,
            }
        }
        if route.global {
            let mut sent = self.sent.lock().await;
            loop {
                let now = Instant::now();
                while sent.front().is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(1)) {
                    sent.pop_front();
                }
                if sent.len() < self.per_second {
                    sent.push_back(now);
                    break;
                }
                let oldest = *sent.front().expect("the window is full");
                tokio::time::sleep_until(oldest + Duration::from_secs(1)).await;
            }
        }
    }

    /// Learns the route's bucket from a response's `X-RateLimit-*` headers.
    pub(crate) fn observe(&self, route: &Route, headers: &HeaderMap) {
        let header = |name: &str| headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim);
        let mut state = self.state.lock().expect("limiter state");
        if let Some(hash) = header("x-ratelimit-bucket").filter(|hash| !hash.is_empty()) {
            state.route_buckets.insert(route.key.clone(), hash.to_string());
        }
        let remaining = header("x-ratelimit-remaining").and_then(|value| value.parse::<u32>().ok());
        let reset_after = header("x-ratelimit-reset-after").and_then(seconds);
        if let (Some(remaining), Some(reset_after)) = (remaining, reset_after) {
            let key = state.bucket_key(route);
            if state.buckets.len() >= MAX_BUCKETS {
                let now = Instant::now();
                state.buckets.retain(|_, bucket| bucket.reset_at > now);
            }
            state.buckets.insert(key, Bucket { remaining, reset_at: after(reset_after) });
        }
    }

    /// After a 429: nothing more on this route's bucket, or on any route when the limit was
    /// global, for `retry_after`.
    pub(crate) fn rate_limited(&self, route: &Route, retry_after: Duration, global: bool) {
        let until = after(retry_after);
        let mut state = self.state.lock().expect("limiter state");
        if global {
            state.global_until = Some(state.global_until.map_or(until, |current| current.max(until)));
        } else {
            let key = state.bucket_key(route);
            state.buckets.insert(key, Bucket { remaining: 0, reset_at: until });
        }
    }
}

/// The longest wait a peer's answer can impose. Discord's real resets are seconds; a larger
/// value is nonsense (or hostile) and is held to this, so a wait never overflows a clock.
pub(crate) const MAX_PEER_WAIT: Duration = Duration::from_secs(3600);

/// Seconds as Discord writes them (`1`, `0.25`, `64.57`).
pub(crate) fn seconds(text: &str) -> Option<Duration> {
    text.trim().parse::<f64>().ok().and_then(seconds_from_f64)
}

/// A number of seconds from a peer: `None` when negative or not a number, at most
/// [`MAX_PEER_WAIT`] however large.
pub(crate) fn seconds_from_f64(seconds: f64) -> Option<Duration> {
    if seconds.is_nan() || seconds < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(seconds).map_or(MAX_PEER_WAIT, |wait| wait.min(MAX_PEER_WAIT)))
}

/// `now + wait`, which cannot overflow once `wait` is held to [`MAX_PEER_WAIT`].
fn after(wait: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(wait.min(MAX_PEER_WAIT)).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::Method;
    use reqwest::header::HeaderValue;

    #[test]
    fn routes_keep_major_parameters_only() {
        let post = Route::new(&Method::POST, "channels/123/messages");
        assert_eq!(post.key, "POST channels/123/messages");
        assert_eq!(post.major, "channels/123");
        let edit = Route::new(&Method::PATCH, "channels/123/messages/456");
        assert_eq!(edit.key, "PATCH channels/123/messages/:id");
        assert_eq!(Route::new(&Method::PATCH, "channels/123/messages/789").key, edit.key);
        let original = Route::new(&Method::PATCH, "webhooks/42/tok-en/messages/@original");
        assert_eq!(original.major, "webhooks/42/tok-en");
        assert_eq!(original.key, "PATCH webhooks/42/:token/messages/@original", "tokens never reach logs");
        assert!(!original.global, "interaction webhooks are not under the global limit");
        let callback = Route::new(&Method::POST, "interactions/99/tok/callback");
        assert_eq!(callback.key, "POST interactions/:id/:token/callback");
        assert!(!callback.global, "interaction callbacks are not under the global limit");
        assert_eq!(Route::new(&Method::PUT, "applications/1/guilds/2/commands").major, "guilds/2");
    }

    #[test]
    fn seconds_parse_like_discord_writes_them() {
        assert_eq!(seconds("1"), Some(Duration::from_secs(1)));
        assert_eq!(seconds("0.25"), Some(Duration::from_millis(250)));
        assert_eq!(seconds("-1"), None);
        assert_eq!(seconds("soon"), None);
        // Audit #7: nonsense from a peer is held, never a panic.
        assert_eq!(seconds("1e20"), Some(MAX_PEER_WAIT));
        assert_eq!(seconds("inf"), Some(MAX_PEER_WAIT));
        assert_eq!(seconds("NaN"), None);
        assert_eq!(seconds_from_f64(-1.0), None);
        assert_eq!(seconds_from_f64(f64::MAX), Some(MAX_PEER_WAIT));
    }

    #[test]
    fn huge_resets_do_not_overflow_the_clock() {
        let limiter = Limiter::default();
        let route = Route::new(&Method::POST, "channels/1/messages");
        limiter.rate_limited(&route, Duration::MAX, true);
        limiter.rate_limited(&route, Duration::MAX, false);
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        headers.insert("x-ratelimit-reset-after", HeaderValue::from_static("1e300"));
        limiter.observe(&route, &headers);
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_bucket_waits_for_its_reset() {
        let limiter = Limiter::default();
        let route = Route::new(&Method::POST, "channels/1/messages");
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-bucket", HeaderValue::from_static("abc"));
        headers.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        headers.insert("x-ratelimit-reset-after", HeaderValue::from_static("0.3"));
        limiter.observe(&route, &headers);
        let started = Instant::now();
        limiter.acquire(&route).await;
        assert!(started.elapsed() >= Duration::from_millis(300), "waited {:?}", started.elapsed());
        // Another channel's bucket with the same hash is independent.
        let other = Route::new(&Method::POST, "channels/2/messages");
        limiter.observe(&other, &HeaderMap::new());
        let started = Instant::now();
        limiter.acquire(&other).await;
        assert!(started.elapsed() < Duration::from_millis(100));
    }

    #[tokio::test(start_paused = true)]
    async fn a_global_429_stops_every_route() {
        let limiter = Limiter::default();
        let route = Route::new(&Method::POST, "channels/1/messages");
        limiter.rate_limited(&route, Duration::from_millis(300), true);
        let started = Instant::now();
        limiter.acquire(&Route::new(&Method::PATCH, "channels/9/messages/1")).await;
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn at_most_the_global_rate_per_second() {
        let limiter = Limiter::new(10);
        let started = Instant::now();
        for index in 0..10 {
            limiter.acquire(&Route::new(&Method::POST, &format!("channels/{index}/messages"))).await;
        }
        assert!(started.elapsed() < Duration::from_millis(200), "the first ten go at once");
        // The eleventh waits until the first is a second old.
        limiter.acquire(&Route::new(&Method::POST, "channels/11/messages")).await;
        assert!(started.elapsed() >= Duration::from_millis(990), "{:?}", started.elapsed());
        let callback = Route::new(&Method::POST, "interactions/1/t/callback");
        let before = Instant::now();
        for _ in 0..20 {
            limiter.acquire(&callback).await;
        }
        assert!(before.elapsed() < Duration::from_millis(100), "interaction callbacks are exempt");
    }
}
