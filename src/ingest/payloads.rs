//! The webhook shapes firebell accepts: Alertmanager's (version 4), Grafana alerting's, and a
//! documented generic one. Each parses into [`AlertGroup`]s, or a message saying what is wrong.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One thing that fires and resolves: an Alertmanager/Grafana alert group, or a generic alert.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertGroup {
    pub source: &'static str,
    /// What groups repeats into one incident.
    pub fingerprint: String,
    pub firing: bool,
    pub title: String,
    pub description: Option<String>,
    /// Labels the routes match on (the group's common labels, then the first alert's).
    pub labels: BTreeMap<String, String>,
    /// How many alerts the group holds.
    pub alerts: usize,
    pub payload: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct WebhookAlert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    fingerprint: Option<String>,
}

/// Alertmanager's webhook body (version 4); Grafana alerting sends the same shape plus a few
/// fields (`title`, `message`, `orgId`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlertmanagerWebhook {
    version: Option<String>,
    group_key: Option<String>,
    status: String,
    alerts: Vec<WebhookAlert>,
    #[serde(default)]
    group_labels: BTreeMap<String, String>,
    #[serde(default)]
    common_labels: BTreeMap<String, String>,
    #[serde(default)]
    common_annotations: BTreeMap<String, String>,
    /// Grafana only.
    title: Option<String>,
    /// Grafana only.
    message: Option<String>,
}

fn firing(status: &str, field: &str) -> Result<bool, String> {
    match status {
        "firing" => Ok(true),
        "resolved" => Ok(false),
        other => Err(format!("{field} is '{other}': it must be \"firing\" or \"resolved\"")),
    }
}

fn parse_webhook(body: &[u8], source: &'static str) -> Result<AlertGroup, String> {
    let webhook: AlertmanagerWebhook =
        serde_json::from_slice(body).map_err(|error| format!("not a valid {source} webhook body: {error}"))?;
    if source == "alertmanager" && webhook.version.as_deref().is_some_and(|version| version != "4") {
        return Err(format!(
            "webhook version {:?} is not supported: firebell reads version \"4\"",
            webhook.version.unwrap_or_default()
        ));
    }
    let group_firing = firing(&webhook.status, "status")?;
    for (index, alert) in webhook.alerts.iter().enumerate() {
        firing(&alert.status, &format!("alerts[{index}].status"))?;
    }
    let first = webhook.alerts.first();
    let mut labels = first.map(|alert| alert.labels.clone()).unwrap_or_default();
    labels.extend(webhook.group_labels.clone());
    labels.extend(webhook.common_labels.clone());
    // Alertmanager's group key names the group; without one, the first alert's fingerprint.
    let key = webhook
        .group_key
        .clone()
        .filter(|key| !key.is_empty())
        .or_else(|| first.and_then(|alert| alert.fingerprint.clone()))
        .ok_or_else(|| "the body has neither groupKey nor an alert fingerprint to group by".to_string())?;
    let annotation = |name: &str| {
        webhook
            .common_annotations
            .get(name)
            .cloned()
            .or_else(|| first.and_then(|alert| alert.annotations.get(name).cloned()))
    };
    let title = webhook
        .title
        .clone()
        .filter(|title| !title.trim().is_empty() && source == "grafana")
        .or_else(|| annotation("summary"))
        .or_else(|| labels.get("alertname").cloned())
        .unwrap_or_else(|| format!("{source} alert"));
    let description =
        annotation("description").or_else(|| webhook.message.clone().filter(|message| !message.trim().is_empty()));
    Ok(AlertGroup {
        source,
        fingerprint: format!("{source}:{key}"),
        firing: group_firing,
        title: title.chars().take(200).collect(),
        description,
        labels,
        alerts: webhook.alerts.len(),
        payload: serde_json::from_slice(body).unwrap_or_default(),
    })
}

pub fn parse_alertmanager(body: &[u8]) -> Result<AlertGroup, String> {
    parse_webhook(body, "alertmanager")
}

pub fn parse_grafana(body: &[u8]) -> Result<AlertGroup, String> {
    parse_webhook(body, "grafana")
}

/// The generic shape, for anything that can POST JSON:
/// `{"title": "…", "status": "firing|resolved", "dedup_key": "…", "severity"?: "…",
///   "description"?: "…", "labels"?: {"…": "…"}}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GenericAlert {
    title: String,
    status: String,
    dedup_key: String,
    severity: Option<String>,
    description: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

pub fn parse_generic(body: &[u8]) -> Result<AlertGroup, String> {
    let alert: GenericAlert = serde_json::from_slice(body).map_err(|error| {
        format!("not a generic alert: {error}; expected {{\"title\", \"status\": \"firing|resolved\", \"dedup_key\", \"severity\"?, \"description\"?, \"labels\"?}}")
    })?;
    if alert.title.trim().is_empty() || alert.dedup_key.trim().is_empty() {
        return Err("title and dedup_key must not be empty".to_string());
    }
    let mut labels = alert.labels;
    if let Some(severity) = alert.severity {
        labels.insert("severity".to_string(), severity);
    }
    Ok(AlertGroup {
        source: "generic",
        fingerprint: format!("generic:{}", alert.dedup_key),
        firing: firing(&alert.status, "status")?,
        title: alert.title.chars().take(200).collect(),
        description: alert.description,
        labels,
        alerts: 1,
        payload: serde_json::from_slice(body).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALERTMANAGER: &str = r#"{
      "version": "4", "groupKey": "{}:{alertname=\"QueueBacklog\"}", "truncatedAlerts": 0, "status": "firing",
      "receiver": "firebell", "groupLabels": {"alertname": "QueueBacklog"},
      "commonLabels": {"alertname": "QueueBacklog", "severity": "critical", "queue": "ingest"},
      "commonAnnotations": {"summary": "Queue ingest is backing up", "description": "depth 812 > 500"},
      "externalURL": "http://alertmanager:9093",
      "alerts": [{"status": "firing", "labels": {"alertname": "QueueBacklog", "severity": "critical", "queue": "ingest", "instance": "w1"},
                  "annotations": {"summary": "Queue ingest is backing up"}, "startsAt": "2026-11-22T10:00:00Z",
                  "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "http://prometheus/graph", "fingerprint": "c0ffee"}]
    }"#;

    #[test]
    fn alertmanager_groups_by_group_key_and_reads_labels_and_annotations() {
        let group = parse_alertmanager(ALERTMANAGER.as_bytes()).unwrap();
        assert_eq!(group.fingerprint, "alertmanager:{}:{alertname=\"QueueBacklog\"}");
        assert!(group.firing);
        assert_eq!(group.title, "Queue ingest is backing up");
        assert_eq!(group.description.as_deref(), Some("depth 812 > 500"));
        assert_eq!(group.labels["queue"], "ingest");
        assert_eq!(group.labels["instance"], "w1");
        let mut resolved: serde_json::Value = serde_json::from_str(ALERTMANAGER).unwrap();
        resolved["status"] = "resolved".into();
        assert!(!parse_alertmanager(resolved.to_string().as_bytes()).unwrap().firing);
    }

    #[test]
    fn bad_shapes_say_what_is_wrong() {
        assert!(parse_alertmanager(b"{").unwrap_err().starts_with("not a valid alertmanager webhook body"));
        assert!(parse_alertmanager(br#"{"status": "firing", "alerts": {}}"#).unwrap_err().contains("invalid type"));
        assert!(
            parse_alertmanager(br#"{"status": "burning", "alerts": [], "groupKey": "k"}"#)
                .unwrap_err()
                .contains("\"firing\" or \"resolved\"")
        );
        assert!(
            parse_alertmanager(br#"{"version": "3", "status": "firing", "alerts": [], "groupKey": "k"}"#)
                .unwrap_err()
                .contains("version")
        );
        assert!(parse_alertmanager(br#"{"status": "firing", "alerts": []}"#).unwrap_err().contains("groupKey"));
        assert!(parse_generic(br#"{"title": "x", "status": "firing"}"#).unwrap_err().contains("dedup_key"));
        assert!(
            parse_generic(br#"{"title": "x", "status": "firing", "dedup_key": "k", "sev": "high"}"#)
                .unwrap_err()
                .contains("unknown field")
        );
    }

    #[test]
    fn grafana_uses_its_title_and_message() {
        let body = r#"{"receiver": "firebell", "status": "firing", "orgId": 1, "groupKey": "{}/{}:{alertname=\"High latency\"}",
          "alerts": [{"status": "firing", "labels": {"alertname": "High latency", "team": "api"}, "annotations": {}, "fingerprint": "abc"}],
          "groupLabels": {"alertname": "High latency"}, "commonLabels": {"alertname": "High latency", "team": "api"}, "commonAnnotations": {},
          "externalURL": "http://grafana:3000/", "version": "1", "title": "[FIRING:1] High latency (api)", "state": "alerting",
          "message": "p99 latency above 2 s"}"#;
        let group = parse_grafana(body.as_bytes()).unwrap();
        assert_eq!(group.title, "[FIRING:1] High latency (api)");
        assert_eq!(group.description.as_deref(), Some("p99 latency above 2 s"));
        assert_eq!(group.labels["team"], "api");
    }

    #[test]
    fn generic_alerts_carry_their_severity_as_a_label() {
        let group = parse_generic(br#"{"title": "Disk full", "status": "firing", "dedup_key": "db1-disk", "severity": "high", "labels": {"host": "db1"}}"#).unwrap();
        assert_eq!(group.fingerprint, "generic:db1-disk");
        assert_eq!(group.labels["severity"], "high");
        assert_eq!(group.labels["host"], "db1");
    }
}
