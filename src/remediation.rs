//! The rules of remediation approval, as pure functions: what a request shows, the hash that
//! binds an approval to everything that will run, and who may approve a request.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::check::Targets;
use crate::config::Person;
use crate::runbook::{Args, Remediation};

/// Everything that will run, as approvers read it: the argv and env of a program; the method,
/// normalised URL, headers and whole body of a request; the SQL and its parameters; the Redis
/// command; and the timeout. A target's URL password and header values show as `***` (the
/// caller's redactor then masks configured secrets wherever else they appear).
pub fn describe_action(remediation: &Remediation, args: &Args, targets: &Targets) -> String {
    describe(remediation, args, targets, false)
}

/// The same description with nothing masked, plus the settings of the target it uses: what the
/// hash binds, so an edit to any of it (in the runbook or in `firebell.toml`) is noticed.
fn bound_action(remediation: &Remediation, args: &Args, targets: &Targets) -> String {
    let mut text = describe(remediation, args, targets, true);
    if let Some(name) = remediation.action.as_check().bound_target() {
        match targets.get(name) {
            Ok(info) => {
                text.push_str(&format!("\ntarget {name}: {} {}", info.kind.name(), info.url.expose()));
                for (header, value) in &info.headers {
                    text.push_str(&format!("\ntarget header {header}: {}", value.expose()));
                }
            }
            Err(missing) => text.push_str(&format!("\ntarget {name}: {missing}")),
        }
    }
    text
}

fn describe(remediation: &Remediation, args: &Args, targets: &Targets, reveal: bool) -> String {
    let body = remediation.action.as_check().describe_for_approval(args, targets, reveal);
    format!("{body}\ntimeout {}", humantime::format_duration(remediation.timeout))
}

/// How long a request waits for its approvals.
pub const REQUEST_LIFETIME: chrono::Duration = chrono::Duration::minutes(15);

/// A hash of everything that decides what runs and who must agree: the topic, the remediation's
/// name and kind, the whole action unmasked (argv and env, URL, headers and body, SQL and its
/// parameters, the Redis command, the timeout, the target's settings), the bound arguments, and
/// its approval policy. An edit that changes any of them changes the hash, and pending requests
/// for it become stale.
pub fn action_hash(topic: &str, remediation: &Remediation, args: &Args, targets: &Targets) -> String {
    let identity = serde_json::json!({
        "topic": topic,
        "name": remediation.name,
        "kind": remediation.action.kind(),
        "command": bound_action(remediation, args, targets),
        "args": args.iter().collect::<BTreeMap<_, _>>(),
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
