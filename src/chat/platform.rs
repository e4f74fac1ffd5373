//! The one seam between the core and the chat platforms.
//!
//! - [`ChatHandler`]: what every platform hands its events to. The core implements it once;
//!   a platform never names the core.
//! - [`Platform`]: one connected chat platform — its outbound [`ChatAdapter`], the HTTP routes
//!   it serves (signed webhooks, the console's pages) and the background tasks it runs (a
//!   WebSocket, command registration).
//! - [`from_config`]: the only list of platforms. Adding one is its folder, one line in
//!   [`PLATFORMS`] and its section in `firebell.toml`.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{ChatAdapter, ChatEvent, Reply};
use crate::config::Config;
use crate::escalation::Escalator;
use crate::health::Health;
use crate::runbook::Catalogue;

/// What a platform's endpoints and sockets hand events to.
#[async_trait]
pub trait ChatHandler: Send + Sync {
    /// The immediate reply (the platform's acknowledgement); the work goes on in the background.
    async fn handle(&self, event: ChatEvent) -> Reply;
    /// True the first time `key` is seen (dedupes a platform's retries and redeliveries); backed
    /// by the store.
    async fn first_seen(&self, key: &str) -> bool;
}

/// What platforms are built with, besides their own `firebell.toml` section.
#[derive(Clone)]
pub struct Context {
    pub catalogue: Arc<Catalogue>,
    /// The store, the clock, the templates and the people.
    pub escalator: Arc<Escalator>,
    /// Where a platform's background tasks report whether they work (`/readyz`).
    pub health: Arc<Health>,
    /// Who may use the web console (it knows the address the server is bound to).
    pub console_access: Arc<crate::chat::console::guard::Access>,
}

/// One connected chat platform.
pub trait Platform: Send + Sync {
    /// Its outbound side, which the core and the deliverer post through.
    fn adapter(&self) -> Arc<dyn ChatAdapter>;

    /// The routes it serves, handing what arrives to `handler`.
    fn routes(&self, _handler: &Arc<dyn ChatHandler>) -> Option<axum::Router> {
        None
    }

    /// Starts what it runs in the background until `shutdown`, handing events to `handler`.
    fn tasks(&self, _handler: &Arc<dyn ChatHandler>, _shutdown: &CancellationToken) -> Vec<JoinHandle<()>> {
        Vec::new()
    }
}

/// A platform's constructor: `Ok(None)` when its section does not turn it on.
pub type Builder = fn(&Config, &Context) -> anyhow::Result<Option<Box<dyn Platform>>>;

/// Every platform firebell knows, by name (the prefix of its people: `slack:U0001`).
pub const PLATFORMS: &[(&str, Builder)] = &[
    ("console", crate::chat::console::platform),
    ("slack", crate::chat::slack::platform),
    ("discord", crate::chat::discord::platform),
];

/// The platforms `config` turns on (the console always), each set up and checked.
pub fn from_config(config: &Config, context: &Context) -> anyhow::Result<Vec<Box<dyn Platform>>> {
    let mut platforms = Vec::new();
    for (_, build) in PLATFORMS {
        platforms.extend(build(config, context)?);
    }
    Ok(platforms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn people_can_be_named_on_exactly_the_platforms_that_are_built() {
        let mut built: Vec<&str> = PLATFORMS.iter().map(|(name, _)| *name).collect();
        let mut named = crate::config::PLATFORMS.to_vec();
        built.sort_unstable();
        named.sort_unstable();
        assert_eq!(built, named, "add the platform's name to config::PLATFORMS too");
    }
}
