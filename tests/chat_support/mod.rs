//! The chat core wired in-process the way the app wires it: a SQLite store in a temporary
//! folder, the escalation engine on a manual clock, a catalogue from runbook text, the runner,
//! and a recording chat platform that can be told to fail. Helpers read like user actions
//! (`bot.command("U1", "C-OPS", None, "/diagnose queue")`) and the platform's record reads like
//! what a user sees (posts, edits, uploads, direct messages, forms).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use firebell::chat::core::{ChatCore, CoreParts, Permissions};
use firebell::chat::deliver::Deliverer;
use firebell::chat::memory::{MemoryAdapter, Recorded};
use firebell::chat::{
    ChatAdapter, ChatError, ChatEvent, FileAttachment, Form, Limits, Message, MessageRef, Origin, Reply,
};
use firebell::check::{TargetInfo, Targets};
use firebell::clock::ManualClock;
use firebell::config::{Config, Person};
use firebell::escalation::{Directory, Escalator};
use firebell::incident::tasks::Checklist;
use firebell::incident::{Incident, TimelineEvent};
use firebell::redact::Redactor;
use firebell::runbook::{Catalogue, Runner, TargetRefs};
use firebell::source::SourceFile;
use tokio::sync::Notify;

/// The channel incident notifications go to.
pub const INCIDENT_CHANNEL: &str = "C-INC";
/// Where people type commands when they are not in an incident thread.
pub const OPS_CHANNEL: &str = "C-OPS";

/// A platform call, as a failure plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Post { channel: String },
    Update { id: String },
    Upload,
    Direct { user: String },
}

type FailWhen = Box<dyn Fn(&Call) -> bool + Send>;

/// The in-memory platform, plus: the instant of every post and edit (to check the edit
/// interval), and a plan of calls that fail, as an unreachable platform does.
pub struct TestPlatform {
    pub memory: MemoryAdapter,
    changes: Mutex<Vec<(String, Instant)>>,
    failures: Mutex<Option<(FailWhen, usize)>>,
    failed: Mutex<usize>,
}

impl TestPlatform {
    pub fn new(memory: MemoryAdapter) -> Self {
        Self { memory, changes: Mutex::new(Vec::new()), failures: Mutex::new(None), failed: Mutex::new(0) }
    }

    /// The next `times` calls matching `when` fail (`usize::MAX`: every one).
    pub fn fail(&self, times: usize, when: impl Fn(&Call) -> bool + Send + 'static) {
        *self.failures.lock().expect("plan lock") = Some((Box::new(when), times));
    }

    /// Calls succeed again.
    pub fn heal(&self) {
        *self.failures.lock().expect("plan lock") = None;
    }

    /// How many calls failed on purpose so far.
    pub fn failed_calls(&self) -> usize {
        *self.failed.lock().expect("count lock")
    }

    /// When message `id` was posted and each time it was edited, in order.
    pub fn change_instants(&self, id: &str) -> Vec<Instant> {
        self.changes
            .lock()
            .expect("changes lock")
            .iter()
            .filter(|(edited, _)| edited == id)
            .map(|(_, at)| *at)
            .collect()
    }

    fn check(&self, call: Call) -> Result<(), ChatError> {
        let mut plan = self.failures.lock().expect("plan lock");
        if let Some((when, remaining)) = plan.as_mut()
            && *remaining > 0
            && when(&call)
        {
            if *remaining != usize::MAX {
                *remaining -= 1;
            }
            *self.failed.lock().expect("count lock") += 1;
            return Err(ChatError::Unreachable(format!("test platform is down ({call:?})")));
        }
        Ok(())
    }
}

#[async_trait]
impl ChatAdapter for TestPlatform {
    fn platform(&self) -> &'static str {
        self.memory.platform()
    }

    fn limits(&self) -> Limits {
        self.memory.limits()
    }

    fn mention(&self, user_id: &str) -> String {
        self.memory.mention(user_id)
    }

    fn incident_channel(&self) -> Option<String> {
        self.memory.incident_channel()
    }

    async fn post(&self, channel: &str, thread: Option<&str>, message: &Message) -> Result<MessageRef, ChatError> {
        self.check(Call::Post { channel: channel.to_string() })?;
        let posted = self.memory.post(channel, thread, message).await?;
        self.changes.lock().expect("changes lock").push((posted.id.clone(), Instant::now()));
        Ok(posted)
    }

    async fn update(&self, at: &MessageRef, message: &Message) -> Result<(), ChatError> {
        self.check(Call::Update { id: at.id.clone() })?;
        self.memory.update(at, message).await?;
        self.changes.lock().expect("changes lock").push((at.id.clone(), Instant::now()));
        Ok(())
    }

    async fn upload(&self, channel: &str, thread: Option<&str>, file: &FileAttachment) -> Result<(), ChatError> {
        self.check(Call::Upload)?;
        self.memory.upload(channel, thread, file).await
    }

    async fn direct(&self, user_id: &str, message: &Message) -> Result<MessageRef, ChatError> {
        self.check(Call::Direct { user: user_id.to_string() })?;
        self.memory.direct(user_id, message).await
    }
}

/// A post as a user sees it in the channel.
#[derive(Debug, Clone)]
pub struct Post {
    pub channel: String,
    pub thread: Option<String>,
    pub id: String,
    pub message: Message,
}

impl Post {
    pub fn text(&self) -> String {
        self.message.plain_text()
    }
}

/// The chat core, its outbox deliverer and the recording platform.
pub struct Bot {
    /// Scripts, the SQLite file; removed when the test ends.
    pub scratch: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    pub escalator: Arc<Escalator>,
    pub core: Arc<ChatCore>,
    pub deliverer: Deliverer,
    pub platform: Arc<TestPlatform>,
}

impl Bot {
    /// `config` is `firebell.toml` text (groups, policies, permissions); `runbooks` are
    /// `commands/*.toml` texts.
    pub async fn new(scratch: tempfile::TempDir, config: &str, runbooks: &[&str]) -> Bot {
        Bot::with_targets(scratch, config, runbooks, BTreeMap::new()).await
    }

    pub async fn with_targets(
        scratch: tempfile::TempDir,
        config: &str,
        runbooks: &[&str],
        targets: BTreeMap<String, TargetInfo>,
    ) -> Bot {
        Bot::build(scratch, config, runbooks, targets, Some(INCIDENT_CHANNEL)).await
    }

    /// A platform with no incident channel configured.
    pub async fn without_incident_channel(scratch: tempfile::TempDir, config: &str, runbooks: &[&str]) -> Bot {
        Bot::build(scratch, config, runbooks, BTreeMap::new(), None).await
    }

    async fn build(
        scratch: tempfile::TempDir,
        config: &str,
        runbooks: &[&str],
        targets: BTreeMap<String, TargetInfo>,
        incident_channel: Option<&str>,
    ) -> Bot {
        let config = Config::parse(&SourceFile::new(scratch.path().join("firebell.toml"), config))
            .unwrap_or_else(|errors| panic!("the test config is invalid: {errors}\n{config}"));
        let url = format!("sqlite://{}", scratch.path().join("firebell.db").display());
        let store = firebell::store::open(&url)
            .await
            .unwrap_or_else(|error| panic!("opening the store at {url} failed: {error}"));
        let directory = Arc::new(Directory::from_config(&config).expect("the directory builds"));
        let clock = Arc::new(ManualClock::new(Utc::now()));
        let checklists = config.checklists.iter().map(Checklist::from_config).collect();
        let escalator = Arc::new(Escalator::new(store, directory, clock.clone()).with_checklists(checklists));

        // Each topic lives in `commands/<name>.toml`, as the loader requires.
        let sources: Vec<SourceFile> = runbooks
            .iter()
            .map(|text| {
                let table: toml::Table = toml::from_str(text).expect("the runbook is TOML");
                let name = table["name"].as_str().expect("the runbook has a name");
                SourceFile::new(format!("commands/{name}.toml"), *text)
            })
            .collect();
        let (catalogue, errors) = Catalogue::load(&sources, &TargetRefs::Unchecked);
        assert!(errors.is_empty(), "the test runbooks do not load: {errors:?}");

        let redactor = Redactor::new(targets.values().map(|target| target.url.expose().to_string()));
        let runner =
            Runner::new(Arc::new(Targets::new(targets)), redactor, 8).with_max_running(config.commands.max_running);
        let platform = Arc::new(TestPlatform::new(MemoryAdapter::new("slack", incident_channel)));
        let notify = Arc::new(Notify::new());
        let core = ChatCore::new(CoreParts {
            catalogue: Arc::new(catalogue),
            runner,
            escalator: escalator.clone(),
            permissions: Permissions::from_config(&config.permissions),
            adapters: vec![platform.clone()],
            deliver: notify.clone(),
            per_person: config.commands.per_person,
        });
        let deliverer = Deliverer::new(escalator.clone(), core.adapters().clone(), notify);
        Bot { scratch, clock, escalator, core, deliverer, platform }
    }

    /// The first post the bot made in the incident channel: the incident notification.
    pub fn notification(&self) -> Post {
        self.posts()
            .into_iter()
            .find(|post| post.channel == INCIDENT_CHANNEL && post.thread.is_none())
            .unwrap_or_else(|| panic!("no notification in {INCIDENT_CHANNEL}:\n{}", self.transcript()))
    }

    pub fn origin(user: &str, channel: &str, thread: Option<&str>) -> Origin {
        Origin {
            platform: "slack",
            user: Person::parse(&format!("slack:{user}")).expect("a person"),
            channel: channel.to_string(),
            thread: thread.map(str::to_string),
        }
    }

    /// `user` (a Slack id, `U1`) types `text` in `channel`, inside `thread` when given.
    pub async fn command(&self, user: &str, channel: &str, thread: Option<&str>, text: &str) -> Reply {
        let reply = self
            .core
            .handle(ChatEvent::Command { origin: Bot::origin(user, channel, thread), text: text.to_string() })
            .await;
        self.shown(user, reply)
    }

    /// What `user` is answered with, a form shown as a platform shows it (recorded as opened
    /// with `trigger-USER`, not as a reply).
    fn shown(&self, user: &str, reply: Reply) -> Reply {
        match reply {
            Reply::Form(form) => {
                self.platform.memory.show_form(&format!("trigger-{user}"), &form);
                Reply::Nothing
            }
            reply => reply,
        }
    }

    /// `user` clicks the button `label` on message `on` (a post of the bot's).
    pub async fn click(&self, user: &str, on: &Post, label: &str) -> Reply {
        let button = buttons(&on.message)
            .into_iter()
            .find(|button| button.label == label)
            .unwrap_or_else(|| panic!("no button '{label}' on:\n{}", on.text()));
        let reply = self
            .core
            .handle(ChatEvent::Button {
                origin: Bot::origin(user, &on.channel, on.thread.as_deref()),
                action: button.action,
                value: button.value,
                message: Some(MessageRef { channel: on.channel.clone(), id: on.id.clone() }),
            })
            .await;
        self.shown(user, reply)
    }

    /// `user` clicks the button `label` on a direct message the bot sent them.
    pub async fn click_direct(&self, user: &str, message: &Message, label: &str) -> Reply {
        let direct =
            Post { channel: format!("D-{user}"), thread: None, id: "direct".to_string(), message: message.clone() };
        self.click(user, &direct, label).await
    }

    /// `user` submits `form` with these fields.
    pub async fn submit(&self, user: &str, form: &Form, fields: &[(&str, &str)]) -> Reply {
        self.core
            .handle(ChatEvent::FormSubmitted {
                origin: Bot::origin(user, INCIDENT_CHANNEL, None),
                action: form.action.clone(),
                value: form.value.clone(),
                fields: fields.iter().map(|(key, value)| (key.to_string(), value.to_string())).collect(),
            })
            .await
    }

    /// One delivery pass over the outbox, as the deliverer's loop makes.
    pub async fn deliver(&self) -> usize {
        self.deliverer.deliver_due().await
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        self.platform.memory.recorded()
    }

    pub fn posts(&self) -> Vec<Post> {
        self.recorded()
            .into_iter()
            .filter_map(|entry| match entry {
                Recorded::Post { channel, thread, id, message } => Some(Post { channel, thread, id, message }),
                _ => None,
            })
            .collect()
    }

    /// Posts inside the thread under message `root`.
    pub fn thread(&self, root: &str) -> Vec<Post> {
        self.posts().into_iter().filter(|post| post.thread.as_deref() == Some(root)).collect()
    }

    /// The edits of message `id`, oldest first.
    pub fn edits(&self, id: &str) -> Vec<Message> {
        self.recorded()
            .into_iter()
            .filter_map(|entry| match entry {
                Recorded::Update { id: edited, message, .. } if edited == id => Some(message),
                _ => None,
            })
            .collect()
    }

    /// Message `id` as it reads now: the post with every edit applied.
    pub fn current(&self, id: &str) -> Post {
        let mut post =
            self.posts().into_iter().find(|post| post.id == id).unwrap_or_else(|| panic!("no message {id} was posted"));
        if let Some(latest) = self.edits(id).pop() {
            post.message = latest;
        }
        post
    }

    pub fn directs(&self) -> Vec<(String, Message)> {
        self.recorded()
            .into_iter()
            .filter_map(|entry| match entry {
                Recorded::Direct { user, message } => Some((user, message)),
                _ => None,
            })
            .collect()
    }

    pub fn uploads(&self) -> Vec<(String, Option<String>, FileAttachment)> {
        self.recorded()
            .into_iter()
            .filter_map(|entry| match entry {
                Recorded::Upload { channel, thread, file } => Some((channel, thread, file)),
                _ => None,
            })
            .collect()
    }

    pub fn forms(&self) -> Vec<(String, Form)> {
        self.recorded()
            .into_iter()
            .filter_map(|entry| match entry {
                Recorded::Form { trigger, form } => Some((trigger, form)),
                _ => None,
            })
            .collect()
    }

    /// Waits (up to 20 s) until the platform's record satisfies `done`; the core works in the
    /// background after it answered.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&Bot) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while !done(self) {
            assert!(Instant::now() < deadline, "waited 20 s for {what}; the platform saw:\n{}", self.transcript());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until the diagnosis posted as the first message in `channel` (and `thread`) has
    /// its final edit; returns that message.
    pub async fn finished_diagnosis(&self, channel: &str, thread: Option<&str>) -> Post {
        let find = |bot: &Bot| {
            bot.posts().into_iter().find(|post| {
                post.channel == channel && post.thread.as_deref() == thread && post.text().contains("diagnose ")
            })
        };
        self.wait_until("the diagnosis to finish", |bot| {
            find(bot).is_some_and(|post| is_finished(&bot.current(&post.id).message))
        })
        .await;
        let posted = find(self).expect("the diagnosis was posted");
        self.current(&posted.id)
    }

    pub async fn incident(&self, id: i64) -> Incident {
        self.escalator.store().incident(id).await.expect("the incident exists")
    }

    /// Waits until incident `id` has events of `kind` on its timeline.
    pub async fn wait_for_events(&self, id: i64, kind: &str) -> Vec<TimelineEvent> {
        let what = format!("a '{kind}' event on incident {id}");
        let incident = crate::support::wait::eventually(
            &what,
            || self.incident(id),
            |incident| !events(incident, kind).is_empty(),
        )
        .await;
        events(&incident, kind).into_iter().cloned().collect()
    }

    pub async fn open_incidents(&self) -> Vec<Incident> {
        self.escalator.store().incidents(false, 100).await.expect("listing incidents works")
    }

    pub fn now(&self) -> DateTime<Utc> {
        self.escalator.now()
    }

    /// Everything the platform saw, for failure messages.
    pub fn transcript(&self) -> String {
        self.recorded()
            .iter()
            .map(|entry| match entry {
                Recorded::Post { channel, thread, id, message } => {
                    format!("POST {id} in {channel} (thread {thread:?}):\n{}", message.plain_text())
                }
                Recorded::Update { id, message, .. } => {
                    format!("EDIT {id}:\n{}", message.plain_text())
                }
                Recorded::Upload { channel, thread, file } => {
                    format!("UPLOAD {} in {channel} (thread {thread:?}), {} bytes", file.filename, file.content.len())
                }
                Recorded::Direct { user, message } => {
                    format!("DM to {user}:\n{}", message.plain_text())
                }
                Recorded::Form { trigger, form } => format!("FORM {} ({trigger})", form.title),
            })
            .collect::<Vec<_>>()
            .join("\n-----\n")
    }
}

/// Whether a diagnosis message shows its final verdict (its title no longer says running).
pub fn is_finished(message: &Message) -> bool {
    let title = message.plain_text();
    let title = title.lines().next().unwrap_or_default();
    title.contains("diagnose ") && !title.contains("running")
}

pub fn buttons(message: &Message) -> Vec<firebell::chat::Button> {
    message
        .blocks
        .iter()
        .flat_map(|block| match block {
            firebell::chat::Block::Buttons { buttons } => buttons.clone(),
            _ => Vec::new(),
        })
        .collect()
}

pub fn button_labels(message: &Message) -> Vec<String> {
    buttons(message).into_iter().map(|button| button.label).collect()
}

/// Two people in the `oncall` group who may change incidents and ask for and approve
/// remediations (each other's).
pub const TWO_ONCALL: &str = r#"
[groups]
oncall = ["slack:U1", "slack:U2"]

[permissions]
incident = ["group:oncall"]
remediate = ["group:oncall"]
"#;

/// The text of a private reply; fails the test on any other reply.
pub fn private(reply: &Reply) -> String {
    match reply {
        Reply::Private(message) => message.plain_text(),
        Reply::Nothing => panic!("expected a private reply, got none"),
        Reply::Form(form) => panic!("expected a private reply, got the form {}", form.title),
    }
}

/// The timeline events of one kind.
pub fn events<'a>(incident: &'a Incident, kind: &str) -> Vec<&'a TimelineEvent> {
    incident.timeline.iter().filter(|event| event.kind == kind).collect()
}
