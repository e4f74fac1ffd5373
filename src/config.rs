//! `firebell.toml` → typed configuration. Every section is parsed and validated here, with
//! `${VAR}` expansion and errors that name the key, the file and the line.
//!
//! Lookup order: `--config PATH`, then `FIREBELL_CONFIG`, then `./firebell.toml` if it exists,
//! else the embedded defaults (SQLite at `./firebell.db`, `./commands`, `127.0.0.1:8080`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use toml::Spanned;

use crate::redact::Redactor;
use crate::source::{Dur, LoadError, LoadErrors, SourceFile};

/// The whole configuration; every key has a default.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub commands: CommandsConfig,
    pub slack: Option<SlackConfig>,
    pub discord: Option<DiscordConfig>,
    /// Named systems that runbook checks point at (`target = "signals_db"`).
    #[serde(default)]
    pub targets: BTreeMap<String, TargetConfig>,
    /// Groups of people, each `platform:id` (`slack:U0001`, `discord:1234`, `console:alice`).
    #[serde(default)]
    pub groups: BTreeMap<String, Vec<Spanned<Person>>>,
    #[serde(default)]
    pub policies: Vec<PolicyConfig>,
    #[serde(default)]
    pub schedules: Vec<ScheduleConfig>,
    #[serde(default)]
    pub permissions: PermissionsConfig,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// How alerts open and re-open incidents.
    #[serde(default)]
    pub alerts: AlertsConfig,
    /// Runbooks run on a schedule (SPEC §10).
    #[serde(default)]
    pub monitors: Vec<MonitorConfig>,
    /// Checklists posted into an incident's thread when it is declared or resolved (SPEC §13).
    #[serde(default)]
    pub checklists: Vec<ChecklistConfig>,
    #[serde(default)]
    pub templates: TemplatesConfig,
    /// Who is who on the web console: per-person sign-in, a trusted sign-in proxy, host names.
    #[serde(default)]
    pub console: ConsoleConfig,
    /// Where this configuration came from; `None` for the embedded defaults.
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address of the HTTP server and the web console.
    #[serde(default = "default_listen")]
    pub listen: Spanned<EnvString>,
    /// Bearer token for `/api` (reads and writes) and `/alerts/*`. Unset: writes are refused,
    /// and on a non-loopback address `/api` and `/alerts/*` are refused altogether.
    pub api_token: Option<Secret>,
    /// The web console's shared login token: everyone who knows it may use the console, with
    /// names chosen, not proven (see `[console] people` for sign-in per person).
    pub console_token: Option<Secret>,
    /// Bearer token for `/metrics`; unset: `/metrics` is open.
    pub metrics_token: Option<Secret>,
    /// How long a connection may take to send a request's headers (a silent or trickling
    /// client is closed after it).
    #[serde(default = "default_header_timeout")]
    pub header_timeout: Spanned<Dur>,
    /// Connections served at once; more wait to be accepted.
    #[serde(default = "default_max_connections")]
    pub max_connections: Spanned<usize>,
}

fn default_header_timeout() -> Spanned<Dur> {
    Spanned::new(0..0, Dur(std::time::Duration::from_secs(10)))
}

fn default_max_connections() -> Spanned<usize> {
    Spanned::new(0..0, 512)
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            api_token: None,
            console_token: None,
            metrics_token: None,
            header_timeout: default_header_timeout(),
            max_connections: default_max_connections(),
        }
    }
}

/// `[console]` (SPEC §9): how a console person is proven, and which host names the server
/// answers to.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Per-person sign-in tokens: `people = { alice = "${ALICE_CONSOLE_TOKEN}" }`. Signing in
    /// at `/login` with a name and that name's token proves the person.
    #[serde(default)]
    pub people: BTreeMap<String, Spanned<Secret>>,
    /// A request header naming the person, set by a sign-in proxy (oauth2-proxy, Authelia):
    /// `X-Forwarded-User`. Honoured only from `trusted_proxies`.
    pub auth_header: Option<Spanned<EnvString>>,
    /// The proxies (CIDRs, `127.0.0.1/32`) allowed to set `auth_header` and
    /// `X-Forwarded-Proto`; any other peer's headers are ignored.
    #[serde(default)]
    pub trusted_proxies: Vec<Spanned<String>>,
    /// Host names the server answers besides `localhost`, `127.0.0.1` and `[::1]` on loopback;
    /// on any other address, when set, the only ones it answers. `host` or `host:port`.
    #[serde(default)]
    pub allowed_hosts: Vec<Spanned<String>>,
}

/// Console names: what `console:NAME` may be.
pub static CONSOLE_NAME: std::sync::LazyLock<regex::Regex> =
    std::sync::LazyLock::new(|| regex::Regex::new(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$").expect("a valid pattern"));

/// A sign-in token shorter than this is refused at load: it could be guessed.
pub const MIN_CONSOLE_TOKEN_CHARS: usize = 16;

/// An IP network in CIDR notation (`10.0.0.0/8`, `::1/128`; a bare address is a single host).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: std::net::IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(text: &str) -> Result<Cidr, String> {
        let invalid = || format!("'{text}' is not a CIDR: write ADDRESS/PREFIX, e.g. 127.0.0.1/32 or 10.0.0.0/8");
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let network: std::net::IpAddr = address.parse().map_err(|_| invalid())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix.parse::<u8>().ok().filter(|prefix| *prefix <= max).ok_or_else(invalid)?,
            None => max,
        };
        Ok(Cidr { network, prefix })
    }

    pub fn contains(&self, address: std::net::IpAddr) -> bool {
        // An IPv4 peer may arrive as an IPv4-mapped IPv6 address on a dual-stack socket.
        let address = match address {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(address),
            v4 => v4,
        };
        let bits = |address: std::net::IpAddr| -> (u128, u32) {
            match address {
                std::net::IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
                std::net::IpAddr::V6(v6) => (u128::from(v6), 128),
            }
        };
        let ((network, width), (candidate, candidate_width)) = (bits(self.network), bits(address));
        if width != candidate_width {
            return false;
        }
        let shift = width - u32::from(self.prefix);
        shift >= width || (network >> shift) == (candidate >> shift)
    }
}

impl ConsoleConfig {
    /// The trusted proxies, parsed (validation has refused bad ones).
    pub fn trusted_proxy_networks(&self) -> Vec<Cidr> {
        self.trusted_proxies.iter().filter_map(|entry| Cidr::parse(entry.get_ref()).ok()).collect()
    }

    /// The header a trusted proxy names the person in, when set.
    pub fn auth_header_name(&self) -> Option<&str> {
        self.auth_header.as_ref().map(|header| header.get_ref().trim()).filter(|header| !header.is_empty())
    }

    /// What is wrong with `[console]`, each with its span.
    fn problems(&self) -> Vec<(std::ops::Range<usize>, String)> {
        let mut problems = Vec::new();
        let mut tokens: BTreeMap<&str, &str> = BTreeMap::new();
        for (name, token) in &self.people {
            if !CONSOLE_NAME.is_match(name) {
                problems.push((
                    token.span(),
                    format!(
                        "console.people: '{name}' is not a console name: use 1–32 letters, digits, '.', '_' or '-', starting with a letter or digit (e.g. alice)"
                    ),
                ));
            }
            let secret = token.get_ref().expose();
            if secret.chars().count() < MIN_CONSOLE_TOKEN_CHARS {
                problems.push((
                    token.span(),
                    format!(
                        "console.people.{name}: the sign-in token is {} characters; it needs at least {MIN_CONSOLE_TOKEN_CHARS} (e.g. openssl rand -hex 32), or leave {name} out",
                        secret.chars().count()
                    ),
                ));
            } else if let Some(other) = tokens.insert(secret, name) {
                problems.push((
                    token.span(),
                    format!(
                        "console.people.{name}: has the same token as {other}; each person needs a token of their own"
                    ),
                ));
            }
        }
        for entry in &self.trusted_proxies {
            if let Err(message) = Cidr::parse(entry.get_ref()) {
                problems.push((entry.span(), format!("console.trusted_proxies: {message}")));
            }
        }
        if let Some(header) = &self.auth_header {
            let name = header.get_ref().trim();
            if !name.is_empty() && axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                problems.push((
                    header.span(),
                    format!("console.auth_header: '{name}' is not an HTTP header name (e.g. X-Forwarded-User)"),
                ));
            }
            if !name.is_empty() && self.trusted_proxies.is_empty() {
                problems.push((
                    header.span(),
                    "console.auth_header: needs console.trusted_proxies, the addresses of the proxy that sets it (e.g. [\"127.0.0.1/32\"]); without them anyone could send the header".to_string(),
                ));
            }
        }
        for host in &self.allowed_hosts {
            let text = host.get_ref();
            let valid = !text.is_empty()
                && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
            if !valid {
                problems.push((
                    host.span(),
                    format!(
                        "console.allowed_hosts: '{text}' is not a host name: write the name people and proxies use, with an optional port (e.g. firebell.example.com or firebell.example.com:8443), no scheme or path"
                    ),
                ));
            }
        }
        problems
    }
}

fn default_listen() -> Spanned<EnvString> {
    Spanned::new(0..0, EnvString("127.0.0.1:8080".to_string()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `sqlite://firebell.db` (the default) or `postgres://user@host/db`.
    #[serde(default = "default_store_url")]
    pub url: Spanned<Secret>,
    /// How long handled events, received alerts, delivered outbox items and console messages
    /// are kept (incidents, their timelines and the audit log are kept for good).
    #[serde(default = "default_retention")]
    pub retention: Spanned<Dur>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self { url: default_store_url(), retention: default_retention() }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertsConfig {
    /// A firing alert this soon after its incident resolved re-opens that incident instead of
    /// opening a new one (the flap window); `0s` always opens a new one.
    #[serde(default = "default_reopen_within")]
    pub reopen_within: Spanned<Dur>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self { reopen_within: default_reopen_within() }
    }
}

fn default_reopen_within() -> Spanned<Dur> {
    Spanned::new(0..0, Dur(Duration::from_secs(600)))
}

fn default_retention() -> Spanned<Dur> {
    Spanned::new(0..0, Dur(Duration::from_secs(90 * 86_400)))
}

fn default_store_url() -> Spanned<Secret> {
    Spanned::new(0..0, Secret::new("sqlite://firebell.db"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandsConfig {
    /// Folders of runbook files, relative to the config file's folder.
    #[serde(default = "default_command_dirs")]
    pub dirs: Vec<PathBuf>,
    /// How many checks of one command run at the same time.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// How much output one check may show (exec output, SQL rows, Redis replies, HTTP and
    /// Prometheus bodies); the rest is cut with a visible marker. `1MiB`, `512KiB` or bytes.
    #[serde(default = "default_max_output")]
    pub max_output: ByteSize,
    /// How many checks run at the same time in the whole bot, across every diagnosis (the rest
    /// wait their turn): a storm of alerts or commands cannot start thousands of processes.
    #[serde(default = "default_max_running")]
    pub max_running: usize,
    /// How many diagnoses one person may start per minute; more are refused with the wait.
    #[serde(default = "default_per_person")]
    pub per_person: usize,
}

impl Default for CommandsConfig {
    fn default() -> Self {
        Self {
            dirs: default_command_dirs(),
            concurrency: default_concurrency(),
            max_output: default_max_output(),
            max_running: default_max_running(),
            per_person: default_per_person(),
        }
    }
}

fn default_max_running() -> usize {
    32
}

fn default_per_person() -> usize {
    20
}

fn default_max_output() -> ByteSize {
    ByteSize(1 << 20)
}

/// A size written as bytes (`65536`) or with a binary unit: `512KiB`, `1MiB` (also `KB`, `MB`,
/// `K`, `M`, meaning the same powers of two). Between 1 KiB and 64 MiB, so a check always shows
/// something and one check cannot hold the bot's memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl ByteSize {
    pub const MIN: usize = 1 << 10;
    pub const MAX: usize = 64 << 20;

    pub fn parse(text: &str) -> Result<Self, String> {
        let invalid = || format!("invalid size '{text}': write bytes or a number with KiB or MiB, e.g. 512KiB, 1MiB");
        let trimmed = text.trim();
        let digits_end = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
        let (number, unit) = trimmed.split_at(digits_end);
        let number: usize = number.parse().map_err(|_| invalid())?;
        let multiplier: usize = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kb" | "kib" => 1 << 10,
            "m" | "mb" | "mib" => 1 << 20,
            "g" | "gb" | "gib" => 1 << 30,
            _ => return Err(invalid()),
        };
        let bytes = number.checked_mul(multiplier).ok_or_else(invalid)?;
        if !(Self::MIN..=Self::MAX).contains(&bytes) {
            return Err(format!("size '{text}' is out of range: between 1KiB and 64MiB, e.g. 1MiB"));
        }
        Ok(ByteSize(bytes))
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Bytes(u64),
            Text(String),
        }
        let text = match Written::deserialize(deserializer)? {
            Written::Bytes(bytes) => bytes.to_string(),
            Written::Text(text) => text,
        };
        ByteSize::parse(&text).map_err(|message| serde::de::Error::custom(format!("commands.max_output: {message}")))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            bytes if bytes % (1 << 20) == 0 => write!(f, "{} MiB", bytes >> 20),
            bytes if bytes % (1 << 10) == 0 => write!(f, "{} KiB", bytes >> 10),
            bytes => write!(f, "{bytes} bytes"),
        }
    }
}

fn default_command_dirs() -> Vec<PathBuf> {
    vec![PathBuf::from("commands")]
}

fn default_concurrency() -> usize {
    8
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    pub bot_token: Option<Secret>,
    /// Set: Socket Mode, no public URL needed.
    pub app_token: Option<Secret>,
    /// HTTP mode: verifies `/slack/*` requests.
    pub signing_secret: Option<Secret>,
    pub incident_channel: Option<EnvString>,
    #[serde(default = "default_slack_api_url")]
    pub api_url: EnvString,
    /// The most one Web API call may take before it counts as failed (and is retried later).
    #[serde(default = "default_chat_timeout")]
    pub timeout: Dur,
}

/// How long one chat API call may take.
pub fn default_chat_timeout() -> Dur {
    Dur(std::time::Duration::from_secs(15))
}

fn default_slack_api_url() -> EnvString {
    EnvString("https://slack.com/api/".to_string())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    /// The bot token; Discord starts when it is set.
    pub token: Option<Spanned<Secret>>,
    /// The application's id (a snowflake): needed to register commands and answer interactions.
    pub application_id: Option<Spanned<EnvString>>,
    /// Hex Ed25519 public key for `/discord/interactions`. Set: HTTP interactions endpoint;
    /// unset: the gateway.
    pub public_key: Option<Spanned<EnvString>>,
    /// Register commands in this guild only (they show at once); else globally.
    pub guild_id: Option<Spanned<EnvString>>,
    pub incident_channel: Option<Spanned<EnvString>>,
    #[serde(default = "default_discord_api_url")]
    pub api_url: Spanned<EnvString>,
}

fn default_discord_api_url() -> Spanned<EnvString> {
    Spanned::new(0..0, EnvString("https://discord.com/api/".to_string()))
}

impl DiscordConfig {
    /// True when a bot token is set, so Discord starts.
    pub fn enabled(&self) -> bool {
        self.token.as_ref().is_some_and(|token| !token.get_ref().is_empty())
    }

    /// What is wrong with `[discord]`, each with its span.
    fn problems(&self) -> Vec<(std::ops::Range<usize>, String)> {
        let mut problems = Vec::new();
        let snowflake =
            |value: &str| (1..=20).contains(&value.len()) && value.bytes().all(|byte| byte.is_ascii_digit());
        let ids = [
            ("application_id", &self.application_id),
            ("guild_id", &self.guild_id),
            ("incident_channel", &self.incident_channel),
        ];
        for (key, value) in ids {
            if let Some(value) = value
                && !value.get_ref().trim().is_empty()
                && !snowflake(value.get_ref().trim())
            {
                problems.push((
                    value.span(),
                    format!(
                        "discord.{key}: '{}' is not a Discord id: write the number Discord shows with developer mode on (e.g. \"123456789012345678\")",
                        value.get_ref().0
                    ),
                ));
            }
        }
        if let Some(key) = &self.public_key {
            let text = key.get_ref().trim();
            if !text.is_empty() && (text.len() != 64 || !text.bytes().all(|byte| byte.is_ascii_hexdigit())) {
                problems.push((
                    key.span(),
                    "discord.public_key: must be the application's public key, 64 hex characters (Developer Portal → General Information); leave it out to use the gateway".to_string(),
                ));
            }
        }
        let api_url = self.api_url.get_ref().trim();
        if !(api_url.starts_with("https://") || api_url.starts_with("http://")) {
            problems.push((
                self.api_url.span(),
                format!("discord.api_url: '{api_url}' must start with https:// (e.g. https://discord.com/api/)"),
            ));
        }
        let blank =
            |value: &Option<Spanned<EnvString>>| value.as_ref().is_none_or(|value| value.get_ref().trim().is_empty());
        if let Some(token) = self.token.as_ref().filter(|_| self.enabled())
            && blank(&self.application_id)
        {
            problems.push((
                token.span(),
                "discord.application_id: needed with discord.token (Developer Portal → General Information → Application ID)".to_string(),
            ));
        }
        problems
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub kind: TargetKind,
    /// Connection string or base URL. Empty means "declared but not configured here".
    pub url: Spanned<Secret>,
    /// Extra HTTP headers for `http` and `prometheus` targets (e.g. an Authorization header).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Postgres,
    Mysql,
    Sqlite,
    Redis,
    Http,
    Prometheus,
}

impl TargetKind {
    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Postgres => "postgres",
            TargetKind::Mysql => "mysql",
            TargetKind::Sqlite => "sqlite",
            TargetKind::Redis => "redis",
            TargetKind::Http => "http",
            TargetKind::Prometheus => "prometheus",
        }
    }

    fn url_schemes(self) -> &'static [&'static str] {
        match self {
            TargetKind::Postgres => &["postgres", "postgresql"],
            TargetKind::Mysql => &["mysql", "mariadb"],
            TargetKind::Sqlite => &["sqlite"],
            TargetKind::Redis => &["redis", "rediss"],
            TargetKind::Http | TargetKind::Prometheus => &["http", "https"],
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub name: Spanned<String>,
    /// Run the steps again this many times if nobody acknowledges.
    #[serde(default)]
    pub repeat: u32,
    /// How long one round of steps lasts before a repeat starts again at step one. Default:
    /// the last step's offset plus the gap before it (15 min for a single step).
    pub repeat_every: Option<Dur>,
    pub steps: Vec<StepConfig>,
}

/// The longest a step may wait, and the longest round: an escalation that waits longer is a
/// reminder, and the bound keeps every timer's time far from what a date can hold.
pub const MAX_POLICY_WAIT: Duration = Duration::from_secs(30 * 24 * 3600);
/// The most rounds a policy may repeat: each round is a timer row per step per incident.
pub const MAX_POLICY_REPEAT: u32 = 100;

/// What is out of bounds in a policy, as sentences that say what is valid.
fn policy_bounds(policy: &PolicyConfig) -> Vec<String> {
    let mut problems = Vec::new();
    let days = MAX_POLICY_WAIT.as_secs() / 86_400;
    for step in &policy.steps {
        if step.after.0 > MAX_POLICY_WAIT {
            problems.push(format!(
                "a step's after = \"{}\" is too long: at most {days} days (write e.g. \"15m\", \"4h\")",
                in_days(step.after.0)
            ));
        }
    }
    if let Some(every) = policy.repeat_every
        && every.0 > MAX_POLICY_WAIT
    {
        problems.push(format!("repeat_every = \"{}\" is too long: at most {days} days", in_days(every.0)));
    }
    if policy.repeat > MAX_POLICY_REPEAT {
        problems.push(format!("repeat = {} is too many: at most {MAX_POLICY_REPEAT}", policy.repeat));
    }
    problems
}

/// A long duration as the days it spans (`400d`), which reads better than months and years.
fn in_days(duration: Duration) -> String {
    match duration.as_secs() % 86_400 {
        0 => format!("{}d", duration.as_secs() / 86_400),
        _ => humantime::format_duration(duration).to_string(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepConfig {
    /// Offset from the trigger time (`0s`, `15m`).
    pub after: Dur,
    pub notify: Vec<Spanned<NotifyTarget>>,
}

/// Who a step notifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyTarget {
    User(Person),
    Group(String),
    Schedule(String),
}

impl NotifyTarget {
    pub fn parse(text: &str) -> Result<NotifyTarget, String> {
        let invalid = || {
            format!(
                "invalid notify target '{text}': write user:PLATFORM:ID, group:NAME or schedule:NAME (e.g. schedule:primary)"
            )
        };
        let (prefix, rest) = text.split_once(':').ok_or_else(invalid)?;
        match prefix {
            "user" => Person::parse(rest).map(NotifyTarget::User),
            "group" if !rest.is_empty() => Ok(NotifyTarget::Group(rest.to_string())),
            "schedule" if !rest.is_empty() => Ok(NotifyTarget::Schedule(rest.to_string())),
            _ => Err(invalid()),
        }
    }

    /// An owner of a follow-up or checklist item: a target, or a person named without `user:`.
    pub fn parse_owner(text: &str) -> Result<NotifyTarget, String> {
        let prefix = text.split_once(':').map(|(prefix, _)| prefix);
        if prefix.is_some_and(|prefix| PLATFORMS.contains(&prefix)) {
            return Person::parse(text).map(NotifyTarget::User);
        }
        NotifyTarget::parse(text).map_err(|_| {
            format!(
                "invalid owner '{text}': write a person (PLATFORM:ID, e.g. slack:U0001), group:NAME or schedule:NAME"
            )
        })
    }

    /// As an owner is written and stored: `slack:U1`, `group:leads`, `schedule:primary`.
    pub fn owner_name(&self) -> String {
        match self {
            NotifyTarget::User(person) => person.to_string(),
            NotifyTarget::Group(group) => format!("group:{group}"),
            NotifyTarget::Schedule(schedule) => format!("schedule:{schedule}"),
        }
    }
}

impl<'de> Deserialize<'de> for NotifyTarget {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        NotifyTarget::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Who owns a follow-up or a checklist item (see [`NotifyTarget::parse_owner`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner(pub NotifyTarget);

impl fmt::Display for Owner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.owner_name())
    }
}

impl<'de> Deserialize<'de> for Owner {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        NotifyTarget::parse_owner(&text).map(Owner).map_err(serde::de::Error::custom)
    }
}

/// A person on one platform: `slack:U0001`, `discord:1234`, `console:alice`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Person {
    pub platform: String,
    pub id: String,
}

/// The platforms a person can be named on: the names of the builders
/// in `chat::platform::PLATFORMS` (a test there keeps them equal).
pub const PLATFORMS: [&str; 3] = ["slack", "discord", "console"];

impl Person {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text.split_once(':') {
            Some((platform, id))
                if PLATFORMS.contains(&platform) && !id.is_empty() && !id.contains(char::is_whitespace) =>
            {
                Ok(Person { platform: platform.to_string(), id: id.to_string() })
            }
            _ => Err(format!(
                "invalid person '{text}': write PLATFORM:ID with PLATFORM one of {} (e.g. slack:U0001)",
                PLATFORMS.join(", ")
            )),
        }
    }
}

impl fmt::Display for Person {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.platform, self.id)
    }
}

impl<'de> Deserialize<'de> for Person {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Person::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    pub name: Spanned<String>,
    pub rotation: Rotation,
    /// `Mon 09:00` for weekly rotations, `09:00` for daily ones.
    pub handoff: Spanned<String>,
    pub timezone: Spanned<String>,
    pub members: Vec<Person>,
    /// The date (YYYY-MM-DD, in `timezone`) whose handoff starts members[0]'s first shift.
    /// Default 2024-01-01.
    pub start: Option<Spanned<String>>,
    #[serde(default)]
    pub overrides: Vec<OverrideConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Rotation {
    Weekly,
    Daily,
}

/// Someone covers a schedule from `start` to `end` (RFC 3339 times).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverrideConfig {
    pub start: Spanned<String>,
    pub end: Spanned<String>,
    pub person: Person,
}

/// Who may do what: entries are `everyone`, `group:NAME` or a person `platform:id`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionsConfig {
    #[serde(default = "everyone")]
    pub diagnose: Vec<Spanned<Principal>>,
    #[serde(default = "everyone")]
    pub incident: Vec<Spanned<Principal>>,
    /// Deny by default: nobody may request remediations until this is set.
    #[serde(default)]
    pub remediate: Vec<Spanned<Principal>>,
    /// When set, commands are accepted only in these channels.
    #[serde(default)]
    pub channels: Vec<String>,
}

impl Default for PermissionsConfig {
    fn default() -> Self {
        Self { diagnose: everyone(), incident: everyone(), remediate: Vec::new(), channels: Vec::new() }
    }
}

fn everyone() -> Vec<Spanned<Principal>> {
    vec![Spanned::new(0..0, Principal::Everyone)]
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Everyone,
    Group(String),
    Person(Person),
}

impl<'de> Deserialize<'de> for Principal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        if text == "everyone" {
            return Ok(Principal::Everyone);
        }
        if let Some(group) = text.strip_prefix("group:").filter(|group| !group.is_empty()) {
            return Ok(Principal::Group(group.to_string()));
        }
        Person::parse(&text).map(Principal::Person).map_err(|_| {
            serde::de::Error::custom(format!(
                "invalid permission entry '{text}': write everyone, group:NAME or PLATFORM:ID (e.g. group:oncall, slack:U0001)"
            ))
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Alert labels that must all be equal for the route to match.
    #[serde(rename = "match", default)]
    pub matchers: BTreeMap<String, String>,
    #[serde(default = "default_severity")]
    pub severity: Severity,
    pub policy: Option<Spanned<String>>,
    /// Runbook to run as soon as the incident opens.
    pub run: Option<Spanned<String>>,
    /// Resolve the incident when the alert resolves.
    #[serde(default = "yes")]
    pub resolve: bool,
}

fn yes() -> bool {
    true
}

/// One `[[checklists]]` entry: items posted with a Done button each when an incident of one of
/// `severities` is declared or resolved.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecklistConfig {
    pub name: Spanned<String>,
    pub on: ChecklistOn,
    /// Default: every severity.
    pub severities: Option<Vec<Severity>>,
    pub items: Spanned<Vec<ChecklistItemConfig>>,
}

/// When a checklist opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChecklistOn {
    Declared,
    Resolved,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChecklistItemConfig {
    pub text: Spanned<String>,
    /// Due this long after the checklist opened (default 0s); an item open past it reminds its
    /// owner once.
    pub after: Option<Spanned<Dur>>,
    pub owner: Option<Spanned<Owner>>,
}

/// The longest a follow-up or checklist item may be due after it was made.
pub const MAX_DUE: std::time::Duration = std::time::Duration::from_secs(366 * 24 * 3600);

/// One `[[monitors]]` entry: a runbook run on a schedule that opens an incident when it trips.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// Default: the topic.
    pub name: Option<Spanned<String>>,
    /// The runbook topic to run.
    pub run: Spanned<String>,
    /// The runbook's arguments, checked against its patterns when the catalogue is loaded.
    pub args: Option<Spanned<BTreeMap<String, String>>>,
    /// An interval (at least 1 s); or `cron`.
    pub every: Option<Spanned<Dur>>,
    /// Five fields (minute hour day month weekday), or six with seconds first.
    pub cron: Option<Spanned<String>>,
    /// The cron's time zone (IANA name; default UTC).
    pub timezone: Option<Spanned<String>>,
    /// The verdict that counts as tripping, or worse (default crit).
    #[serde(default)]
    pub open: MonitorOpen,
    /// Consecutive tripping runs before an incident opens; ok runs before it resolves.
    #[serde(rename = "for", default = "one_run")]
    pub for_runs: Spanned<u32>,
    #[serde(default = "default_severity")]
    pub severity: Severity,
    pub policy: Option<Spanned<String>>,
    /// Resolve the monitor's incident after `for` ok runs.
    #[serde(default = "yes")]
    pub resolve: bool,
    /// Lines of `run` and `args`, for the checks that need the catalogue (`monitor::build`).
    #[serde(skip)]
    pub lines: MonitorLines,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct MonitorLines {
    pub run: usize,
    pub args: usize,
}

impl MonitorConfig {
    pub fn name(&self) -> &str {
        self.name.as_ref().map(|name| name.get_ref().as_str()).unwrap_or(self.run.get_ref())
    }
}

fn one_run() -> Spanned<u32> {
    Spanned::new(0..0, 1)
}

/// `open = …`: the verdict at which (or worse) a monitor's run counts as tripping.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MonitorOpen {
    Warn,
    #[default]
    Crit,
    Error,
    /// Never opens an incident: the monitor only records its verdicts.
    Never,
}

fn default_severity() -> Severity {
    Severity::High
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    High,
    Medium,
    Low,
}

impl Severity {
    pub const NAMES: [&'static str; 4] = ["critical", "high", "medium", "low"];

    pub fn name(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::High => "high",
            Severity::Medium => "medium",
            Severity::Low => "low",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "critical" => Some(Severity::Critical),
            "high" => Some(Severity::High),
            "medium" => Some(Severity::Medium),
            "low" => Some(Severity::Low),
            _ => None,
        }
    }
}

/// MiniJinja templates overriding the shipped incident messages.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TemplatesConfig {
    pub notification: Option<PathBuf>,
    pub resolution: Option<PathBuf>,
    pub postmortem: Option<PathBuf>,
}

/// A string with `${VAR}` and `${VAR:-default}` expanded from the environment.
#[derive(Clone, PartialEq, Eq)]
pub struct EnvString(pub String);

impl fmt::Debug for EnvString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<'de> Deserialize<'de> for EnvString {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        expand_env(&text, |name| std::env::var(name).ok()).map(EnvString).map_err(serde::de::Error::custom)
    }
}

impl std::ops::Deref for EnvString {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

/// A secret value (token, password, connection string): expanded like [`EnvString`], redacted
/// in `Debug`, and registered with the [`Redactor`].
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(value: &str) -> Self {
        Secret(SecretString::from(value.to_string()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn is_empty(&self) -> bool {
        self.expose().is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        EnvString::deserialize(deserializer).map(|value| Secret::new(&value.0))
    }
}

/// Expands `${VAR}` (an error when unset) and `${VAR:-default}`; `$$` is a literal `$`.
pub fn expand_env(text: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut output = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(position) = rest.find('$') {
        output.push_str(&rest[..position]);
        rest = &rest[position..];
        if let Some(after) = rest.strip_prefix("$$") {
            output.push('$');
            rest = after;
            continue;
        }
        let Some(inner_start) = rest.strip_prefix("${") else {
            output.push('$');
            rest = &rest[1..];
            continue;
        };
        let end = inner_start
            .find('}')
            .ok_or_else(|| format!("unclosed '${{' in '{text}': write ${{VAR}} or ${{VAR:-default}}"))?;
        let inner = &inner_start[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (inner, None),
        };
        let valid_name = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid_name {
            return Err(format!("invalid variable name '{name}' in '${{{inner}}}': use letters, digits and _"));
        }
        match (lookup(name), default) {
            (Some(value), _) => output.push_str(&value),
            (None, Some(default)) => output.push_str(default),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set (write ${{{name}:-}} to allow it to be empty)"
                ));
            }
        }
        rest = &inner_start[end + 1..];
    }
    output.push_str(rest);
    Ok(output)
}

impl Config {
    /// Finds and loads the configuration: `explicit`, then `FIREBELL_CONFIG`, then
    /// `./firebell.toml`, else the embedded defaults.
    pub fn discover(explicit: Option<&Path>) -> Result<Config, LoadErrors> {
        let from_env = std::env::var_os("FIREBELL_CONFIG").map(PathBuf::from);
        let path = match (explicit, from_env) {
            (Some(path), _) => Some(path.to_path_buf()),
            (None, Some(path)) => Some(path),
            (None, None) => Some(PathBuf::from("firebell.toml")).filter(|path| path.exists()),
        };
        match path {
            Some(path) => Config::load(&path),
            None => Ok(Config::default()),
        }
    }

    pub fn load(path: &Path) -> Result<Config, LoadErrors> {
        let source = SourceFile::read(path).map_err(|error| LoadErrors(vec![error]))?;
        Config::parse(&source)
    }

    pub fn parse(source: &SourceFile) -> Result<Config, LoadErrors> {
        let mut config: Config = source.parse().map_err(|error| LoadErrors(vec![error]))?;
        config.path = Some(source.path.clone());
        for monitor in &mut config.monitors {
            let run = source.line_of(monitor.run.span().start);
            let args = monitor.args.as_ref().map(|args| source.line_of(args.span().start)).unwrap_or(run);
            monitor.lines = MonitorLines { run, args };
        }
        let errors = config.validate(source);
        if errors.is_empty() { Ok(config) } else { Err(LoadErrors(errors)) }
    }

    /// Cross-checks what serde cannot: references between sections, addresses, time zones.
    fn validate(&self, source: &SourceFile) -> Vec<LoadError> {
        let mut errors = Vec::new();
        let mut error = |span: std::ops::Range<usize>, message: String| {
            errors.push(source.error_at(span, message));
        };

        if self.server.listen.get_ref().parse::<std::net::SocketAddr>().is_err() {
            error(
                self.server.listen.span(),
                format!(
                    "server.listen: '{}' is not an address: write IP:PORT, e.g. 127.0.0.1:8080",
                    self.server.listen.get_ref().0
                ),
            );
        }
        let header_timeout = self.server.header_timeout.get_ref().0;
        if !(std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(300)).contains(&header_timeout) {
            error(
                self.server.header_timeout.span(),
                format!(
                    "server.header_timeout: {} is out of range: give 1s to 5m (default 10s)",
                    humantime::format_duration(header_timeout)
                ),
            );
        }
        if let Some(slack) = &self.slack
            && !(std::time::Duration::from_secs(1)..=std::time::Duration::from_secs(300)).contains(&slack.timeout.0)
        {
            error(
                0..0,
                format!(
                    "slack.timeout: {} is out of range: give 1s to 5m (default 15s)",
                    humantime::format_duration(slack.timeout.0)
                ),
            );
        }
        let retention = self.store.retention.get_ref().0;
        if !(Duration::from_secs(86_400)..=Duration::from_secs(10 * 366 * 86_400)).contains(&retention) {
            error(
                self.store.retention.span(),
                format!(
                    "store.retention: {} is out of range: give 1d to 10y (default 90d)",
                    humantime::format_duration(retention)
                ),
            );
        }
        if !(1..=65_536).contains(self.server.max_connections.get_ref()) {
            error(
                self.server.max_connections.span(),
                format!(
                    "server.max_connections: {} is out of range: give 1 to 65536 (default 512)",
                    self.server.max_connections.get_ref()
                ),
            );
        }
        let store_url = self.store.url.get_ref().expose();
        if !(store_url.starts_with("sqlite:")
            || store_url.starts_with("postgres://")
            || store_url.starts_with("postgresql://"))
        {
            error(
                self.store.url.span(),
                "store.url: must start with sqlite: or postgres:// (e.g. sqlite://firebell.db)".to_string(),
            );
        }
        if self.commands.concurrency == 0 {
            error(0..0, "commands.concurrency: must be at least 1".to_string());
        }
        if !(1..=10_000).contains(&self.commands.max_running) {
            error(
                0..0,
                format!(
                    "commands.max_running: {} is out of range: give 1 to 10000 (default 32)",
                    self.commands.max_running
                ),
            );
        }
        if !(1..=10_000).contains(&self.commands.per_person) {
            error(
                0..0,
                format!(
                    "commands.per_person: {} is out of range: give 1 to 10000 (default 20)",
                    self.commands.per_person
                ),
            );
        }

        for (name, target) in &self.targets {
            let url = target.url.get_ref().expose();
            if url.is_empty() {
                continue;
            }
            let scheme = url.split_once(':').map(|(scheme, _)| scheme).unwrap_or("");
            if !target.kind.url_schemes().contains(&scheme) {
                error(
                    target.url.span(),
                    format!(
                        "targets.{name}.url: a {} target needs a URL starting with {} (got scheme '{scheme}')",
                        target.kind.name(),
                        target.kind.url_schemes().iter().map(|s| format!("{s}://")).collect::<Vec<_>>().join(" or ")
                    ),
                );
            }
        }

        let schedule_names: BTreeSet<&str> = self.schedules.iter().map(|s| s.name.get_ref().as_str()).collect();
        let mut seen_policies = BTreeSet::new();
        for policy in &self.policies {
            if !seen_policies.insert(policy.name.get_ref().as_str()) {
                error(policy.name.span(), format!("policies: the name '{}' is used twice", policy.name.get_ref()));
            }
            if policy.steps.is_empty() {
                error(policy.name.span(), format!("policies.{}: needs at least one step", policy.name.get_ref()));
            }
            for problem in policy_bounds(policy) {
                error(policy.name.span(), format!("policies.{}: {problem}", policy.name.get_ref()));
            }
            for step in &policy.steps {
                for target in &step.notify {
                    match target.get_ref() {
                        NotifyTarget::Group(group) if !self.groups.contains_key(group) => error(
                            target.span(),
                            format!(
                                "policies.{}: unknown group '{group}'; groups: {}",
                                policy.name.get_ref(),
                                names(self.groups.keys())
                            ),
                        ),
                        NotifyTarget::Schedule(schedule) if !schedule_names.contains(schedule.as_str()) => error(
                            target.span(),
                            format!(
                                "policies.{}: unknown schedule '{schedule}'; schedules: {}",
                                policy.name.get_ref(),
                                names(schedule_names.iter())
                            ),
                        ),
                        _ => {}
                    }
                }
            }
        }

        let mut seen_schedules = BTreeSet::new();
        for schedule in &self.schedules {
            let name = schedule.name.get_ref();
            if !seen_schedules.insert(name.as_str()) {
                error(schedule.name.span(), format!("schedules: the name '{name}' is used twice"));
            }
            if schedule.members.is_empty() {
                error(schedule.name.span(), format!("schedules.{name}: needs at least one member"));
            }
            if schedule.timezone.get_ref().parse::<chrono_tz::Tz>().is_err() {
                error(
                    schedule.timezone.span(),
                    format!(
                        "schedules.{name}.timezone: unknown time zone '{}': use an IANA name such as Europe/Berlin or UTC",
                        schedule.timezone.get_ref()
                    ),
                );
            }
            if let Err(message) = parse_handoff(schedule.rotation, schedule.handoff.get_ref()) {
                error(schedule.handoff.span(), format!("schedules.{name}.handoff: {message}"));
            }
            if let Some(start) = &schedule.start
                && chrono::NaiveDate::parse_from_str(start.get_ref(), "%Y-%m-%d").is_err()
            {
                error(
                    start.span(),
                    format!("schedules.{name}.start: '{}' is not a date: write YYYY-MM-DD", start.get_ref()),
                );
            }
            for entry in &schedule.overrides {
                for time in [&entry.start, &entry.end] {
                    if chrono::DateTime::parse_from_rfc3339(time.get_ref()).is_err() {
                        error(
                            time.span(),
                            format!(
                                "schedules.{name}.overrides: '{}' is not an RFC 3339 time (e.g. 2026-11-20T09:00:00+01:00)",
                                time.get_ref()
                            ),
                        );
                    }
                }
            }
        }

        let permission_lists = [
            ("diagnose", &self.permissions.diagnose),
            ("incident", &self.permissions.incident),
            ("remediate", &self.permissions.remediate),
        ];
        for (key, list) in permission_lists {
            for entry in list {
                if let Principal::Group(group) = entry.get_ref()
                    && !self.groups.contains_key(group)
                {
                    error(
                        entry.span(),
                        format!("permissions.{key}: unknown group '{group}'; groups: {}", names(self.groups.keys())),
                    );
                }
            }
        }

        if let Some(discord) = &self.discord {
            for (span, message) in discord.problems() {
                error(span, message);
            }
        }
        for (span, message) in self.console.problems() {
            error(span, message);
        }

        for route in &self.routes {
            if let Some(policy) = &route.policy
                && !seen_policies.contains(policy.get_ref().as_str())
            {
                error(
                    policy.span(),
                    format!("routes: unknown policy '{}'; policies: {}", policy.get_ref(), names(seen_policies.iter())),
                );
            }
        }

        let mut seen_monitors = BTreeSet::new();
        for monitor in &self.monitors {
            let name = monitor.name();
            let name_span = monitor.name.as_ref().map(Spanned::span).unwrap_or_else(|| monitor.run.span());
            if !seen_monitors.insert(name) {
                error(
                    name_span.clone(),
                    format!("monitors: the name '{name}' is used twice (give each monitor of one topic its own name)"),
                );
            }
            if !simple_name_ok(name) {
                error(
                    name_span,
                    format!("monitors.{name}: a name is 1 to 64 letters, digits, '-', '_' or '.' (e.g. queue-depth)"),
                );
            }
            match (&monitor.every, &monitor.cron) {
                (Some(_), Some(cron)) => error(
                    cron.span(),
                    format!("monitors.{name}: give either every or cron, not both (e.g. every = \"1m\")"),
                ),
                (None, None) => error(
                    monitor.run.span(),
                    format!(
                        "monitors.{name}: needs a schedule: every = \"1m\" or cron = \"*/5 * * * *\" (with timezone = \"Europe/Berlin\")"
                    ),
                ),
                (Some(every), None) => {
                    if every.get_ref().0 < Duration::from_secs(1) {
                        error(
                            every.span(),
                            format!(
                                "monitors.{name}.every: {} is too short: give 1s or more (e.g. \"30s\", \"1m\")",
                                every.get_ref()
                            ),
                        );
                    }
                    if let Some(timezone) = &monitor.timezone {
                        error(
                            timezone.span(),
                            format!("monitors.{name}.timezone: a time zone applies to cron only, not to every"),
                        );
                    }
                }
                (None, Some(cron)) => {
                    if let Err(problem) = parse_cron(cron.get_ref()) {
                        error(cron.span(), format!("monitors.{name}.cron: {problem}"));
                    }
                    if let Some(timezone) = &monitor.timezone
                        && timezone.get_ref().parse::<chrono_tz::Tz>().is_err()
                    {
                        error(
                            timezone.span(),
                            format!(
                                "monitors.{name}.timezone: unknown time zone '{}': use an IANA name such as Europe/Berlin or UTC",
                                timezone.get_ref()
                            ),
                        );
                    }
                }
            }
            if *monitor.for_runs.get_ref() == 0 || *monitor.for_runs.get_ref() > 1000 {
                error(
                    monitor.for_runs.span(),
                    format!(
                        "monitors.{name}.for: {} is out of range: give 1 to 1000 (default 1)",
                        monitor.for_runs.get_ref()
                    ),
                );
            }
            if let Some(policy) = &monitor.policy
                && !seen_policies.contains(policy.get_ref().as_str())
            {
                error(
                    policy.span(),
                    format!(
                        "monitors.{name}: unknown policy '{}'; policies: {}",
                        policy.get_ref(),
                        names(seen_policies.iter())
                    ),
                );
            }
        }
        let mut seen_checklists = BTreeSet::new();
        for checklist in &self.checklists {
            let name = checklist.name.get_ref();
            if !seen_checklists.insert(name.as_str()) {
                error(checklist.name.span(), format!("checklists: the name '{name}' is used twice"));
            }
            if !simple_name_ok(name) {
                error(
                    checklist.name.span(),
                    format!(
                        "checklists.{name}: a name is 1 to 64 letters, digits, '-', '_' or '.' (e.g. post-incident)"
                    ),
                );
            }
            if checklist.items.get_ref().is_empty() || checklist.items.get_ref().len() > 25 {
                error(
                    checklist.items.span(),
                    format!(
                        "checklists.{name}.items: give 1 to 25 items, e.g. items = [{{ text = \"Service restored\" }}]"
                    ),
                );
            }
            for item in checklist.items.get_ref() {
                let text = item.text.get_ref().trim();
                if text.is_empty() || text.chars().count() > 300 {
                    error(item.text.span(), format!("checklists.{name}: an item's text is 1 to 300 characters"));
                }
                if let Some(after) = &item.after
                    && after.get_ref().0 > MAX_DUE
                {
                    error(after.span(), format!("checklists.{name}: after is more than 366 days: give at most 366d"));
                }
                if let Some(owner) = &item.owner {
                    match &owner.get_ref().0 {
                        NotifyTarget::Group(group) if !self.groups.contains_key(group) => error(
                            owner.span(),
                            format!(
                                "checklists.{name}: unknown group '{group}'; groups: {}",
                                names(self.groups.keys())
                            ),
                        ),
                        NotifyTarget::Schedule(schedule) if !schedule_names.contains(schedule.as_str()) => error(
                            owner.span(),
                            format!(
                                "checklists.{name}: unknown schedule '{schedule}'; schedules: {}",
                                names(schedule_names.iter())
                            ),
                        ),
                        _ => {}
                    }
                }
            }
        }
        errors
    }

    /// The folders runbooks are loaded from, relative to the config file's folder.
    pub fn command_dirs(&self) -> Vec<PathBuf> {
        let base = self.path.as_ref().and_then(|path| path.parent()).map(Path::to_path_buf).unwrap_or_default();
        self.commands.dirs.iter().map(|dir| base.join(dir)).collect()
    }

    /// A redactor that knows every secret in this configuration.
    pub fn redactor(&self) -> Redactor {
        let mut values: Vec<String> = Vec::new();
        let mut add = |secret: &Secret| values.push(secret.expose().to_string());
        add(self.store.url.get_ref());
        self.server
            .api_token
            .iter()
            .chain(self.server.console_token.iter())
            .chain(self.server.metrics_token.iter())
            .for_each(&mut add);
        self.console.people.values().map(Spanned::get_ref).for_each(&mut add);
        if let Some(slack) = &self.slack {
            slack.bot_token.iter().chain(slack.app_token.iter()).chain(slack.signing_secret.iter()).for_each(&mut add);
        }
        if let Some(discord) = &self.discord {
            discord.token.iter().map(Spanned::get_ref).for_each(&mut add);
        }
        for target in self.targets.values() {
            add(target.url.get_ref());
            target.headers.values().for_each(&mut add);
        }
        Redactor::new(values)
    }
}

/// Parses a handoff: `Mon 09:00` (weekly) or `09:00` (daily).
pub fn parse_handoff(rotation: Rotation, text: &str) -> Result<(Option<chrono::Weekday>, chrono::NaiveTime), String> {
    let parts: Vec<&str> = text.split_whitespace().collect();
    let (weekday, time) = match (rotation, parts.as_slice()) {
        (Rotation::Weekly, [day, time]) => {
            let weekday = day
                .parse::<chrono::Weekday>()
                .map_err(|_| format!("'{day}' is not a weekday: write Mon, Tue, … Sun"))?;
            (Some(weekday), *time)
        }
        (Rotation::Daily, [time]) => (None, *time),
        (Rotation::Weekly, _) => {
            return Err(format!("'{text}': a weekly handoff is a weekday and a time, e.g. Mon 09:00"));
        }
        (Rotation::Daily, _) => return Err(format!("'{text}': a daily handoff is a time, e.g. 09:00")),
    };
    let time = chrono::NaiveTime::parse_from_str(time, "%H:%M")
        .map_err(|_| format!("'{time}' is not a time: write HH:MM, e.g. 09:00"))?;
    Ok((weekday, time))
}

fn simple_name_ok(name: &str) -> bool {
    (1..=64).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// A monitor's cron: five fields (minute hour day-of-month month day-of-week) or six with
/// seconds first; the message says what is wrong and what is valid.
pub fn parse_cron(text: &str) -> Result<croner::Cron, String> {
    let fields = text.split_whitespace().count();
    if !(5..=6).contains(&fields) {
        return Err(format!(
            "'{text}' has {fields} fields: write 5 (minute hour day month weekday, e.g. \"*/5 * * * *\") or 6 with seconds first"
        ));
    }
    croner::parser::CronParser::builder().seconds(croner::parser::Seconds::Optional).build().parse(text).map_err(
        |error| format!("'{text}' is not a cron expression ({error}); e.g. \"*/5 * * * *\" or \"0 9 * * Mon-Fri\""),
    )
}

fn names<T: AsRef<str>>(items: impl Iterator<Item = T>) -> String {
    let list: Vec<String> = items.map(|item| item.as_ref().to_string()).collect();
    if list.is_empty() { "(none defined)".to_string() } else { list.join(", ") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, LoadErrors> {
        Config::parse(&SourceFile::new("firebell.toml", text))
    }

    #[test]
    fn the_embedded_defaults_match_the_spec() {
        let config = parse("").unwrap();
        assert_eq!(config.server.listen.get_ref().0, "127.0.0.1:8080");
        assert_eq!(config.store.url.get_ref().expose(), "sqlite://firebell.db");
        assert_eq!(config.commands.dirs, vec![PathBuf::from("commands")]);
        assert_eq!(config.permissions.diagnose.len(), 1);
        assert!(config.permissions.remediate.is_empty());
    }

    #[test]
    fn expands_variables_with_defaults_and_refuses_unset_ones() {
        let lookup = |name: &str| (name == "SET").then(|| "value".to_string());
        assert_eq!(expand_env("a-${SET}-b", lookup).unwrap(), "a-value-b");
        assert_eq!(expand_env("${UNSET:-fallback}", lookup).unwrap(), "fallback");
        assert_eq!(expand_env("${UNSET:-}", lookup).unwrap(), "");
        assert_eq!(expand_env("cost $$5 and $x", lookup).unwrap(), "cost $5 and $x");
        let error = expand_env("${UNSET}", lookup).unwrap_err();
        assert!(error.contains("UNSET is not set"), "{error}");
        assert!(expand_env("${BAD NAME}", lookup).is_err());
        assert!(expand_env("${OPEN", lookup).is_err());
    }

    #[test]
    fn server_limits_have_defaults_and_bounds() {
        let config = parse("").unwrap();
        assert_eq!(config.server.header_timeout.get_ref().0, Duration::from_secs(10));
        assert_eq!(*config.server.max_connections.get_ref(), 512);
        assert_eq!(default_chat_timeout().0, Duration::from_secs(15));
        assert_eq!(config.store.retention.get_ref().0, Duration::from_secs(90 * 86_400));
        let short = parse("[store]\nretention = \"12h\"\n").unwrap_err().to_string();
        assert!(
            short.contains("firebell.toml:2: store.retention: 12h is out of range: give 1d to 10y (default 90d)"),
            "{short}"
        );
        let errors = parse("[server]\nheader_timeout = \"500ms\"\nmax_connections = 0\n").unwrap_err().to_string();
        assert!(
            errors
                .contains("firebell.toml:2: server.header_timeout: 500ms is out of range: give 1s to 5m (default 10s)"),
            "{errors}"
        );
        assert!(
            errors
                .contains("firebell.toml:3: server.max_connections: 0 is out of range: give 1 to 65536 (default 512)"),
            "{errors}"
        );
    }

    #[test]
    fn unknown_keys_name_the_key_and_line() {
        let errors = parse("[server]\nlisten = \"127.0.0.1:9000\"\nlisen = \"x\"\n").unwrap_err();
        let text = errors.to_string();
        assert!(text.starts_with("firebell.toml:3: unknown field `lisen`"), "{text}");
    }

    #[test]
    fn bad_values_name_the_key_and_line() {
        let text = r#"
[server]
listen = "nowhere"

[[policies]]
name = "default"
steps = [ { after = "15x", notify = ["group:managers"] } ]
"#;
        let errors = parse(text).unwrap_err().to_string();
        assert!(errors.contains("firebell.toml:7: invalid duration '15x'"), "{errors}");

        let text = r#"
[server]
listen = "nowhere"

[[policies]]
name = "default"
steps = [ { after = "15m", notify = ["group:managers", "schedule:nope"] } ]
"#;
        let errors = parse(text).unwrap_err().to_string();
        assert!(errors.contains("firebell.toml:3: server.listen: 'nowhere' is not an address"), "{errors}");
        assert!(errors.contains("firebell.toml:7: policies.default: unknown group 'managers'"), "{errors}");
        assert!(errors.contains("firebell.toml:7: policies.default: unknown schedule 'nope'"), "{errors}");
    }

    #[test]
    fn policies_out_of_bounds_are_refused_at_load() {
        // Audit #27: a huge `after` panicked every declare, a slightly smaller one paged at once.
        let text = r#"
[groups]
oncall = ["console:alice"]

[[policies]]
name = "slow"
repeat = 100000
repeat_every = "400d"
steps = [ { after = "300000y", notify = ["group:oncall"] }, { after = "31d", notify = ["group:oncall"] } ]
"#;
        let errors = parse(text).unwrap_err().to_string();
        assert!(errors.contains("firebell.toml:6: policies.slow: a step's after = \"109575000d\""), "{errors}");
        assert!(errors.contains("is too long: at most 30 days"), "{errors}");
        assert!(errors.contains("policies.slow: a step's after = \"31d\" is too long"), "{errors}");
        assert!(errors.contains("policies.slow: repeat_every = \"400d\" is too long"), "{errors}");
        assert!(errors.contains("policies.slow: repeat = 100000 is too many: at most 100"), "{errors}");

        let text = r#"
[groups]
oncall = ["console:alice"]

[[policies]]
name = "longest"
repeat = 100
repeat_every = "30d"
steps = [ { after = "30d", notify = ["group:oncall"] } ]
"#;
        let config = parse(text).expect("the bounds themselves are allowed");
        let policy = crate::escalation::Policy::from_config(&config.policies[0]);
        let start = chrono::Utc::now();
        let timers = policy.timers(start);
        assert_eq!(timers.len(), 101);
        assert!(timers.iter().all(|timer| timer.fire_at > start), "no step fires at once");
    }

    #[test]
    fn schedules_validate_zone_handoff_and_overrides() {
        let text = r#"
[[schedules]]
name = "primary"
rotation = "weekly"
handoff = "Someday 09:00"
timezone = "Mars/Olympus"
members = ["slack:U1"]
overrides = [ { start = "yesterday", end = "2026-11-20T09:00:00Z", person = "slack:U2" } ]
"#;
        let errors = parse(text).unwrap_err().to_string();
        assert!(errors.contains(":6: schedules.primary.timezone: unknown time zone 'Mars/Olympus'"), "{errors}");
        assert!(errors.contains(":5: schedules.primary.handoff: 'Someday' is not a weekday"), "{errors}");
        assert!(errors.contains(":8: schedules.primary.overrides: 'yesterday' is not an RFC 3339 time"), "{errors}");
    }

    #[test]
    fn people_and_targets_are_checked() {
        let errors = parse("[groups]\noncall = [\"irc:bob\"]\n").unwrap_err().to_string();
        assert!(errors.contains("firebell.toml:2: invalid person 'irc:bob'"), "{errors}");

        let errors = parse("[targets.db]\nkind = \"postgres\"\nurl = \"mysql://x@y/z\"\n").unwrap_err().to_string();
        assert!(
            errors.contains("firebell.toml:3: targets.db.url: a postgres target needs a URL starting with postgres://"),
            "{errors}"
        );

        let errors = parse("[targets.db]\nkind = \"oracle\"\nurl = \"\"\n").unwrap_err().to_string();
        assert!(errors.contains("firebell.toml:2: unknown variant `oracle`"), "{errors}");
    }

    #[test]
    fn checklists_are_checked_with_lines() {
        let text = r#"[groups]
leads = ["slack:U3"]

[[checklists]]
name = "post incident"
on = "resolved"
items = [ { text = "", after = "400d" },
          { text = "Schedule it", owner = "group:managers" },
          { text = "Page", owner = "schedule:primary" } ]

[[checklists]]
name = "empty"
on = "declared"
items = []
"#;
        let errors = parse(text).unwrap_err().to_string();
        for expected in [
            "firebell.toml:5: checklists.post incident: a name is 1 to 64 letters",
            "firebell.toml:7: checklists.post incident: an item's text is 1 to 300 characters",
            "firebell.toml:7: checklists.post incident: after is more than 366 days: give at most 366d",
            "firebell.toml:8: checklists.post incident: unknown group 'managers'; groups: leads",
            "firebell.toml:9: checklists.post incident: unknown schedule 'primary'; schedules: (none defined)",
            "firebell.toml:14: checklists.empty.items: give 1 to 25 items",
        ] {
            assert!(errors.contains(expected), "missing {expected:?} in:\n{errors}");
        }
        let errors = parse("[[checklists]]\nname = \"x\"\non = \"opened\"\nitems = [ { text = \"a\" } ]\n")
            .unwrap_err()
            .to_string();
        assert!(
            errors.contains("firebell.toml:3: unknown variant `opened`, expected `declared` or `resolved`"),
            "{errors}"
        );
        let errors =
            parse("[[checklists]]\nname = \"x\"\non = \"declared\"\nitems = [ { text = \"a\", owner = \"bob\" } ]\n")
                .unwrap_err()
                .to_string();
        assert!(errors.contains("invalid owner 'bob': write a person (PLATFORM:ID"), "{errors}");
    }

    #[test]
    fn secrets_are_redacted_in_debug_and_known_to_the_redactor() {
        // SAFETY-free: this test reads a variable it sets under a unique name.
        let text = "[targets.db]\nkind = \"postgres\"\nurl = \"postgres://app:topsecret1@db/x\"\n[server]\napi_token = \"tok-123456789\"\n";
        let config = parse(text).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("topsecret1") && !debug.contains("tok-123456789"), "{debug}");
        let redactor = config.redactor();
        assert_eq!(redactor.redact("auth failed for topsecret1 / tok-123456789"), "auth failed for *** / ***");
    }

    #[test]
    fn the_console_section_is_checked_and_its_tokens_are_redacted() {
        let text = "[console]\npeople = { alice = \"short\", \"b b\" = \"a-long-enough-token-1\", carol = \"a-long-enough-token-1\" }\nauth_header = \"X-Forwarded-User\"\ntrusted_proxies = []\nallowed_hosts = [\"https://x.example/\"]\n";
        let errors = parse(text).unwrap_err().to_string();
        assert!(errors.contains(":2: console.people.alice: the sign-in token is 5 characters"), "{errors}");
        assert!(errors.contains(":2: console.people: 'b b' is not a console name"), "{errors}");
        assert!(errors.contains("has the same token as b b"), "{errors}");
        assert!(errors.contains(":3: console.auth_header: needs console.trusted_proxies"), "{errors}");
        assert!(errors.contains(":5: console.allowed_hosts: 'https://x.example/' is not a host name"), "{errors}");
        let errors = parse("[console]\ntrusted_proxies = [\"10.0.0.0/33\"]\n").unwrap_err().to_string();
        assert!(errors.contains(":2: console.trusted_proxies: '10.0.0.0/33' is not a CIDR"), "{errors}");

        let config = parse("[console]\npeople = { alice = \"alice-token-0123456789\" }\n").unwrap();
        assert_eq!(config.redactor().redact("token alice-token-0123456789"), "token ***");
        let network = Cidr::parse("10.9.0.0/16").unwrap();
        assert!(network.contains("10.9.255.1".parse().unwrap()) && !network.contains("10.8.0.1".parse().unwrap()));
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("192.0.2.1".parse().unwrap()));
    }
}
