//! Remediations in chat: a request shows exactly what will run and waits for approvals from
//! someone else; once approved it runs once and streams its output into the thread; denied,
//! expired or stale requests say so and nothing runs. Every click is checked against the stored
//! request and the current runbook — nothing in a button's payload is trusted.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::context::{Context, CoreError};
use super::message::{FileAttachment, Message};
use super::{MessageRef, Origin, Reply, views};
use crate::check::Status;
use crate::incident::TimelineKind;
use crate::remediation::{REQUEST_LIFETIME, action_hash, describe_action, may_approve};
use crate::runbook::{Args, CheckEvent, CheckRun, Runbook, Runner};
use crate::store::{NewRequest, RemediationRequest, VoteOutcome};

/// Output up to this size is shown inline after a run; beyond it, as a file.
const INLINE_OUTPUT_CHARS: usize = 2_500;

pub(crate) struct Approvals {
    context: Arc<Context>,
    runner: Runner,
}

impl Approvals {
    pub(crate) fn new(context: Arc<Context>, runner: Runner) -> Self {
        Self { context, runner }
    }

    /// `/remediate NAME k=v…` or a suggested-remediation button: posts the approval request.
    pub(crate) async fn request(
        self: &Arc<Self>,
        origin: Origin,
        name: &str,
        pairs: &[(String, String)],
    ) -> Result<Reply, CoreError> {
        self.context.require(&self.context.permissions.remediate, &origin, "request remediations")?;
        let (runbook, index) = self.context.catalogue.remediation(name).ok_or_else(|| {
            let names: Vec<String> = self
                .context
                .catalogue
                .runbooks()
                .flat_map(|runbook| runbook.remediations.iter().map(|r| r.name.clone()))
                .collect();
            format!(
                "unknown remediation '{name}'; valid: {}",
                if names.is_empty() { "(none loaded)".to_string() } else { names.join(", ") }
            )
        })?;
        let args = runbook.bind_remediation_args(index, pairs)?;
        let remediation = &runbook.remediations[index];
        let store = self.context.store();
        let incident_id = self.context.incident_in_thread(&origin).await?;
        let now = self.context.now();
        let command =
            self.runner.redactor().redact(&describe_action(remediation, &args, self.runner.targets())).into_owned();
        let new = NewRequest {
            incident_id,
            topic: runbook.name.clone(),
            action: remediation.name.clone(),
            args: args.iter().map(|(key, value)| (key.clone(), value.clone())).collect(),
            command,
            action_hash: action_hash(&runbook.name, remediation, &args, self.runner.targets()),
            requested_by: origin.user.to_string(),
            approvals_needed: i64::from(remediation.approvals),
            platform: origin.platform.to_string(),
            channel: origin.channel.clone(),
            thread: origin.thread.clone(),
            expires_at: now + REQUEST_LIFETIME,
        };
        let request = store.create_request(new, now).await?;
        let approvals = self.clone();
        tokio::spawn(async move {
            let message = approvals.request_view(&request);
            let Ok(adapter) = approvals.context.adapter(&request.platform) else { return };
            match adapter.post(&request.channel, request.thread.as_deref(), &message).await {
                Ok(posted) => {
                    if let Err(error) = approvals.context.store().set_request_message(request.id, &posted.id).await {
                        tracing::error!(%error, request = request.id, "Remembering the request message failed");
                    }
                    // Too long to show whole in the message: the whole action goes beside it.
                    if let Some(file) = views::remediation_request_file(&request) {
                        let thread = request.thread.clone().unwrap_or(posted.id.clone());
                        if let Err(error) = adapter.upload(&request.channel, Some(&thread), &file).await {
                            tracing::warn!(%error, request = request.id, "Uploading the remediation request's action failed");
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, request = request.id, "Posting the remediation request failed"),
            }
        });
        Ok(Reply::Nothing)
    }

    /// The request message as the request stands, worded from the remediation's current runbook
    /// (or bare, when the runbook no longer has it).
    fn request_view(&self, request: &RemediationRequest) -> Message {
        let current = self.context.catalogue.remediation(&request.action);
        let remediation = current.as_ref().map(|(runbook, index)| &runbook.remediations[*index]);
        let summary = remediation.map(|remediation| remediation.summary.clone()).unwrap_or_default();
        let groups = remediation.map(|remediation| remediation.approvers.clone()).unwrap_or_default();
        let mention = |person: &str| match crate::config::Person::parse(person) {
            Ok(person) => self.context.mention(&person),
            Err(_) => person.to_string(),
        };
        views::remediation_request(request, &summary, &groups, &mention)
    }

    /// Re-renders the request message from the store, as it stands now.
    async fn refresh_request(&self, id: i64) {
        let store = self.context.store();
        let Ok(request) = store.request(id).await else { return };
        let (Some(message_id), Ok(adapter)) = (request.message.clone(), self.context.adapter(&request.platform)) else {
            return;
        };
        let view = self.request_view(&request);
        if let Err(error) =
            adapter.update(&MessageRef { channel: request.channel.clone(), id: message_id }, &view).await
        {
            tracing::warn!(%error, request = id, "Updating the remediation request message failed");
        }
    }

    /// An Approve or Deny click: checked against the stored request and the current runbook.
    pub(crate) async fn vote(self: &Arc<Self>, origin: Origin, id: i64, approve: bool) -> Result<Reply, CoreError> {
        let store = self.context.store();
        let request = store
            .request(id)
            .await
            .map_err(|_| format!("there is no remediation request {id}; nothing was approved"))?;
        if request.platform != origin.platform {
            return Err(format!("request #{id} belongs to {}; vote there", request.platform).into());
        }
        let current = self.context.catalogue.remediation(&request.action);
        let (hash, runbook_and_args) = match &current {
            Some((runbook, index)) => {
                let pairs: Vec<(String, String)> = request.args.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                match runbook.bind_remediation_args(*index, &pairs) {
                    Ok(args) => (
                        action_hash(&runbook.name, &runbook.remediations[*index], &args, self.runner.targets()),
                        Some((runbook.clone(), *index, args)),
                    ),
                    Err(_) => (String::new(), None),
                }
            }
            None => (String::new(), None),
        };
        if let Some((runbook, index, _)) = &runbook_and_args {
            let remediation = &runbook.remediations[*index];
            let requester_cancels = !approve && origin.user.to_string() == request.requested_by;
            if !requester_cancels {
                may_approve(
                    remediation,
                    &self.context.escalator.directory().groups,
                    &request.requested_by,
                    &origin.user,
                )?;
            }
        }
        let outcome = store.vote(id, &origin.user.to_string(), approve, &hash, self.context.now()).await?;
        match outcome {
            VoteOutcome::Counted { approvals, needed } => {
                self.refresh_request(id).await;
                Ok(Reply::private(format!(
                    "Approval recorded: {approvals} of {needed}. It runs when the last one is in."
                )))
            }
            VoteOutcome::Approved { .. } => {
                self.refresh_request(id).await;
                let (runbook, index, args) = runbook_and_args.ok_or("the remediation is no longer loaded")?;
                let approvals = self.clone();
                tokio::spawn(async move { approvals.run_approved(id, runbook, index, args).await });
                Ok(Reply::Nothing)
            }
            VoteOutcome::Denied => {
                self.refresh_request(id).await;
                Ok(Reply::Nothing)
            }
            VoteOutcome::AlreadyVoted => Err(format!("you already voted on request #{id}").into()),
            VoteOutcome::NotPending(state) => {
                Err(format!("request #{id} is already {state}; nothing more happens").into())
            }
            VoteOutcome::Expired => {
                self.refresh_request(id).await;
                Err(format!(
                    "request #{id} expired at {}; nothing ran. Request it again.",
                    request.expires_at.format("%H:%M:%S UTC")
                )
                .into())
            }
            VoteOutcome::Stale => {
                self.refresh_request(id).await;
                Err(format!(
                    "the runbook for {} changed after request #{id}; its approvals no longer apply and nothing ran. Request it again.",
                    request.action
                ).into())
            }
        }
    }

    /// Requests still `running` although no process can be running them: every one at start on
    /// SQLite (`all`), and otherwise those running longer than the longest remediation timeout
    /// plus 30 s (a replica would have finished or killed them by then). Each becomes
    /// `interrupted`, in the audit log and on the timeline, and its thread says so.
    async fn interrupt_dead_runs(&self, all: bool) {
        let now = self.context.now();
        let longest = self
            .context
            .catalogue
            .runbooks()
            .flat_map(|runbook| runbook.remediations.iter().map(|remediation| remediation.timeout))
            .max()
            .unwrap_or_default();
        let grace = chrono::Duration::from_std(longest + std::time::Duration::from_secs(30))
            .unwrap_or(chrono::Duration::hours(1));
        let started_before = if all { now } else { now - grace };
        let interrupted = match self.context.store().interrupt_requests(started_before, now).await {
            Ok(interrupted) => interrupted,
            Err(error) => {
                tracing::error!(%error, "Looking for interrupted remediations failed");
                return;
            }
        };
        for request in interrupted {
            tracing::warn!(request = request.id, remediation = request.action, "Remediation was interrupted by a stop");
            self.refresh_request(request.id).await;
            let Ok(adapter) = self.context.adapter(&request.platform) else { continue };
            let thread = request.thread.clone().or(request.message.clone());
            let message = Message::new().text(format!(
                "⚠️ *{}* (request #{}) was interrupted: firebell stopped while it ran, so whether it took effect \
                 is unknown. Check before requesting it again.",
                request.action, request.id
            ));
            if let Err(error) = adapter.post(&request.channel, thread.as_deref(), &message).await {
                tracing::warn!(%error, request = request.id, "Posting the interruption failed");
            }
        }
    }

    /// Runs an approved request once and reports in its thread, on the timeline and in the audit.
    async fn run_approved(self: Arc<Self>, id: i64, runbook: Arc<Runbook>, index: usize, args: Args) {
        let store = self.context.store().clone();
        let Ok(request) = store.request(id).await else { return };
        let name = runbook.remediations[index].name.clone();
        // The checks that judge the fix, read once before it runs and again after.
        let verify = runbook.remediations[index].verify.clone().map(|verify| {
            let pairs: Vec<(String, String)> = request.args.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            (verify, runbook.bind_args(&pairs))
        });
        let before = match &verify {
            Some((verify, Ok(check_args))) => self.verdicts(&runbook, &verify.checks, check_args.clone()).await,
            _ => Vec::new(),
        };
        let mut events = self.runner.run_remediation(runbook.clone(), index, args);
        // One text bounded by bytes (the run itself stops at max_output, and this holds if not).
        let keep_at_most = self.runner.max_output();
        let mut output = String::new();
        let mut dropped_lines = 0usize;
        let mut finished = None;
        while let Some(event) = events.recv().await {
            match event {
                CheckEvent::Line { line, .. } if output.len() + line.len() < keep_at_most => {
                    if !output.is_empty() {
                        output.push('\n');
                    }
                    output.push_str(&line);
                }
                CheckEvent::Line { .. } => dropped_lines += 1,
                CheckEvent::Finished(run) => finished = Some(run),
            }
        }
        if dropped_lines > 0 {
            output.push_str(&format!("\n… {dropped_lines} more lines not kept"));
        }
        let (succeeded, summary) = match &finished {
            Some(run) => (run.status == Status::Ok, run.summary.clone()),
            None => (false, "the run ended without a result".to_string()),
        };
        if let Err(error) = store.finish_request(id, succeeded, &summary, self.context.now()).await {
            tracing::error!(%error, request = id, "Recording the remediation result failed");
        }
        tracing::info!(request = id, remediation = name, succeeded, "Remediation ran");
        self.refresh_request(id).await;
        let Ok(adapter) = self.context.adapter(&request.platform) else { return };
        let thread = request.thread.clone().or(request.message.clone());
        let mark = if succeeded { "✅" } else { "❌" };
        let mut message = Message::new().text(format!("{mark} *{name}* (request #{id}): {summary}"));
        // Redacted again as one text, for secrets that span lines (a key block, a folded token).
        let text = self.runner.redactor().redact(&output).into_owned();
        let inline = !text.is_empty()
            && text.chars().count() <= INLINE_OUTPUT_CHARS.min(adapter.limits().max_block_text.saturating_sub(100));
        if inline {
            message = message.code(text.clone());
        }
        if let Err(error) = adapter.post(&request.channel, thread.as_deref(), &message).await {
            tracing::warn!(%error, request = id, "Posting the remediation result failed");
        }
        if !inline && !text.is_empty() {
            let file = FileAttachment {
                filename: format!("remediation-{id}-{name}.txt"),
                title: format!("Output of {name} (request #{id})"),
                content: text.into_bytes(),
            };
            if let Err(error) = adapter.upload(&request.channel, thread.as_deref(), &file).await {
                tracing::warn!(%error, request = id, "Uploading the remediation output failed");
            }
        }
        if !succeeded {
            return;
        }
        let message = match verify {
            None => return,
            Some((verify, Ok(check_args))) => {
                tokio::time::sleep(verify.after).await;
                let after = self.verdicts(&runbook, &verify.checks, check_args).await;
                self.record_verification(&request, &name, before, after).await
            }
            Some((_, Err(error))) => Message::new().text(format!(
                "Verification of *{name}* (request #{id}) could not run its checks: {error}. Run /diagnose {} to see \
                 whether it worked.",
                runbook.name
            )),
        };
        if let Err(error) = adapter.post(&request.channel, thread.as_deref(), &message).await {
            tracing::warn!(%error, request = id, "Posting the verification failed");
        }
    }

    /// The verdicts of `runbook`'s checks at `indices`, in that order.
    async fn verdicts(&self, runbook: &Arc<Runbook>, indices: &[usize], args: Args) -> Vec<CheckRun> {
        let mut events = self.runner.run_checks(runbook.clone(), indices, args);
        let mut runs = Vec::new();
        while let Some(event) = events.recv().await {
            if let CheckEvent::Finished(run) = event {
                runs.push(run);
            }
        }
        let position = |run: &CheckRun| indices.iter().position(|index| runbook.checks[*index].name == run.name);
        runs.sort_by_key(position);
        runs
    }

    /// Records a remediation's verification on its incident's timeline (`remediation_verified`)
    /// and returns the message that shows it: each check before → after, fixed when every one
    /// is ok after.
    async fn record_verification(
        &self,
        request: &RemediationRequest,
        name: &str,
        before: Vec<CheckRun>,
        after: Vec<CheckRun>,
    ) -> Message {
        let fixed = !after.is_empty() && after.iter().all(|run| run.status == Status::Ok);
        let checks: Vec<views::VerifiedCheck> = after
            .iter()
            .map(|run| views::VerifiedCheck {
                name: run.name.clone(),
                before: before.iter().find(|earlier| earlier.name == run.name).map(|earlier| earlier.status),
                after: run.status,
                summary: run.summary.clone(),
            })
            .collect();
        let statuses = |runs: &[CheckRun]| -> serde_json::Map<String, serde_json::Value> {
            runs.iter().map(|run| (run.name.clone(), serde_json::json!(run.status))).collect()
        };
        tracing::info!(request = request.id, remediation = name, fixed, "Remediation verified");
        if let Some(incident) = request.incident_id {
            let detail = serde_json::json!({
                "request": request.id, "name": name, "before": statuses(&before), "after": statuses(&after),
                "fixed": fixed,
                "checks": after.iter().map(|run| serde_json::json!({"name": run.name, "status": run.status, "summary": run.summary})).collect::<Vec<_>>(),
            });
            if let Err(error) =
                self.context.escalator.record(incident, TimelineKind::RemediationVerified, None, detail).await
            {
                tracing::error!(%error, request = request.id, "Recording the verification failed");
            }
        }
        views::verification(name, request.id, &checks, fixed)
    }

    /// Expires requests whose time is up, every second until `shutdown`; their messages say so.
    /// Also marks `interrupted` the requests whose run died with a bot (see [`Self::interrupt_dead_runs`]).
    pub async fn run_expiry(self: Arc<Self>, shutdown: CancellationToken) {
        // A SQLite store belongs to one bot, so at start whatever is `running` died with the last one.
        let mut starting = self.context.store().backend() == "sqlite";
        loop {
            self.interrupt_dead_runs(starting).await;
            starting = false;
            self.expire_due(self.context.now()).await;
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// One step of the expiry loop at `now` (tests drive it like `Escalator::fire_due`): the
    /// requests whose time is up are expired and their messages edited; returns their ids.
    pub async fn expire_due(&self, now: chrono::DateTime<chrono::Utc>) -> Vec<i64> {
        match self.context.store().expire_requests(now).await {
            Ok(expired) => {
                let mut ids = Vec::new();
                for request in expired {
                    tracing::info!(request = request.id, remediation = request.action, "Remediation request expired");
                    self.refresh_request(request.id).await;
                    ids.push(request.id);
                }
                ids
            }
            Err(error) => {
                tracing::error!(%error, "Expiring remediation requests failed");
                Vec::new()
            }
        }
    }
}
