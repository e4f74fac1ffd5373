//! Prometheus metrics: one process-wide recorder, rendered by `GET /metrics`. The names:
//!
//! - `firebell_chat_events_total{platform,kind}` — commands, clicks and forms received
//! - `firebell_ack_seconds{platform}` — time to answer a chat event (the acknowledgement)
//! - `firebell_check_duration_seconds{kind,status}` — every check run
//! - `firebell_outbox_pending`, `firebell_deliveries_total{result}` — chat delivery
//! - `firebell_timers_pending`, `firebell_timer_lateness_seconds`,
//!   `firebell_escalation_steps_total{outcome}` — the escalation engine
//! - `firebell_alerts_total{source,outcome}` — alerts received, opened, deduplicated, resolved
//! - `firebell_monitor_runs_total{monitor,status}`, `firebell_monitor_lateness_seconds` — monitors

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the recorder on first use and returns the handle that renders it.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0])
            .expect("the bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (an embedding program's): keep ours for
        // rendering either way, rather than failing.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// The current metrics in Prometheus's text format.
pub fn render() -> String {
    handle().render()
}
