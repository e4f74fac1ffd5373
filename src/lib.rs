//! firebell: a chat-ops bot for incident handling. Runbooks in `commands/*.toml` become chat
//! commands that run real checks; incidents escalate on durable timers.
//!
//! # Layout
//!
//! - [`cli`]: the command line (`firebell run`, `firebell commands …`), what `main.rs` calls.
//! - [`app`]: wiring: the runbook files on disk, and `App` (store, engine, HTTP server).
//! - [`chat`]: the platform-neutral message model, the `ChatAdapter` trait, the chat grammar and
//!   core, the outbox deliverer, and one folder per platform (`slack/`, `discord/`).
//! - [`config`]: `firebell.toml` → typed, validated configuration with `${VAR}` expansion.
//! - [`runbook`]: `commands/*.toml` → the catalogue; arguments, templates, CEL expressions. No IO.
//! - [`check`]: one file per check kind behind the `Check` trait, and the concurrent runner.
//! - [`incident`]: the incident model, its state machine and timeline, and its messages.
//! - [`ingest`]: alert webhooks (Alertmanager, Grafana, generic) → routes → incidents, group commit.
//! - [`escalation`]: policies, on-call schedules and the durable timer engine.
//! - [`monitor`]: `[[monitors]]`: runbooks on a schedule kept in the store, opening, updating and
//!   resolving their incidents.
//! - [`store`]: the `Store` trait over SQLite or PostgreSQL: incidents, timeline, timers, outbox.
//! - [`server`]: every HTTP route (health, readiness, the JSON API).
//! - [`health`]: what each background part is doing (for `/readyz`) and the supervisor that
//!   restarts one that panicked.
//! - [`clock`]: time as an input (system clock, manual clock for tests).
//! - [`remediation`]: approval rules: the action hash and who may approve.
//! - [`metrics`]: the Prometheus recorder behind `GET /metrics`.
//! - [`redact`]: masks secrets in everything a person or a log sees.
//! - [`attachment`]: the file type a check result and a chat thread share (charts, long output).
//! - [`source`]: `file:line` errors and the value types config and runbooks share.

pub mod app;
pub mod attachment;
pub mod chat;
pub mod check;
pub mod cli;
pub mod clock;
pub mod config;
pub mod escalation;
pub mod health;
pub mod incident;
pub mod ingest;
pub mod metrics;
pub mod monitor;
pub mod redact;
pub mod remediation;
pub mod runbook;
pub mod server;
pub mod source;
pub mod store;
pub mod template;
