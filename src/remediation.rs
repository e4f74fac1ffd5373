//! The rules of remediation approval, as pure functions: the hash that binds an approval to the
//! exact action and arguments, and who may approve a request.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::config::Person;
use crate::runbook::{Args, Remediation};

/// How long a request waits for its approvals.
pub const REQUEST_LIFETIME: chrono::Duration = chrono::Duration::minutes(15);

/// A hash of everything that decides what runs and who must agree: the topic, the remediation's
/// name and kind, the exact command with its arguments, and its approval policy. A runbook edit
/// that changes any of them changes the hash, and pending requests for it become stale.
pub fn action_hash(topic: &str, remediation: &Remediation, args: &Args) -> String {
    let identity = serde_json::json!({
        "topic": topic,
        "name": remediation.name,
        "kind": remediation.action.kind(),
        "command": remediation.action.as_check().describe(args),
        "approvals": remediation.approvals,
        "approvers": remediation.approvers,
        "self_approve": remediation.self_approve,
    });
    hex::encode(Sha256::digest(identity.to_string().as_bytes()))
}

/// Whether `voter` may approve a request `requested_by` made: a member of one of the
/// remediation's approver groups, and not the requester unless `self_approve` allows it.
pub fn may_approve(
    remediation: &Remediation,
    groups: &BTreeMap<String, Vec<Person>>,
    requested_by: &str,
    voter: &Person,
) -> Result<(), String> {
    if !remediation.self_approve && voter.to_string() == requested_by {
        return Err("you asked for this remediation, so someone else must approve it".to_string());
    }
    let member =
        remediation.approvers.iter().any(|group| groups.get(group).is_some_and(|members| members.contains(voter)));
    if member {
        Ok(())
    } else {
        Err(format!(
            "you ({voter}) are not an approver of {}; approvers are the members of {}",
            remediation.name,
            remediation.approvers.iter().map(|group| format!("group {group}")).collect::<Vec<_>>().join(", ")
        ))
    }
}
