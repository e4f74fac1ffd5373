//! firebell: a chat-ops bot for incident handling. Runbooks in `commands/*.toml` become chat
//! commands that run real checks; incidents escalate on durable timers.
//!
//! # Layout
//!
//! - [`cli`]: the command line (`firebell run`, `firebell commands …`), what `main.rs` calls.
//! - [`app`]: wiring: loads the configuration and the runbook catalogue from disk.
//! - [`config`]: `firebell.toml` → typed, validated configuration with `${VAR}` expansion.
//! - [`runbook`]: `commands/*.toml` → the catalogue; arguments, templates, CEL expressions. No IO.
//! - [`check`]: one file per check kind behind the `Check` trait, and the concurrent runner.
//! - [`redact`]: masks secrets in everything a person or a log sees.
//! - [`source`]: `file:line` errors and the value types config and runbooks share.

pub mod app;
pub mod check;
pub mod cli;
pub mod config;
pub mod redact;
pub mod runbook;
pub mod source;
