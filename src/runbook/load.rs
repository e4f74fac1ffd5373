//! Parsing and validating one runbook file. Every problem is reported with its line; a file with
//! any problem is not loaded at all.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use super::args::{ArgSpec, Template};
use super::expr::Expr;
use super::{CheckSpec, DEFAULT_TIMEOUT, Remediation, Runbook};
use crate::check::Kind;
use crate::config::TargetKind;
use crate::source::{Dur, LoadError, SourceFile};

static TOPIC_NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9_-]{0,31}$").unwrap());
static REMEDIATION_NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9-]{0,47}$").unwrap());
static ARG_NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9_]{0,31}$").unwrap());

/// Which targets runbooks may name: those of `firebell.toml`, or unchecked when there is none.
#[derive(Debug, Clone)]
pub enum TargetRefs {
    Unchecked,
    Known(BTreeMap<String, TargetKind>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRunbook {
    name: Spanned<String>,
    summary: Spanned<String>,
    runbook: Option<Spanned<String>>,
    #[serde(default)]
    args: BTreeMap<String, Spanned<RawArg>>,
    #[serde(default)]
    checks: Vec<RawAction>,
    #[serde(default)]
    remediations: Vec<RawAction>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArg {
    pattern: Option<Spanned<String>>,
    default: Option<Spanned<String>>,
    help: Option<String>,
    example: Option<Spanned<String>>,
}

/// A `[[checks]]` or `[[remediations]]` table as written: every key any kind may use.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    pub name: Spanned<String>,
    pub kind: Spanned<String>,
    pub summary: Option<Spanned<String>>,
    pub timeout: Option<Spanned<Dur>>,
    pub expect: Option<Spanned<String>>,
    pub warn: Option<Spanned<String>>,
    pub crit: Option<Spanned<String>>,
    pub approvals: Option<Spanned<u32>>,
    pub approvers: Option<Spanned<Vec<String>>>,
    pub self_approve: Option<Spanned<bool>>,
    pub suggest_when: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub target: Option<Spanned<String>>,
    pub path: Option<Spanned<String>>,
    pub method: Option<Spanned<String>>,
    pub headers: Option<Spanned<BTreeMap<String, String>>>,
    pub body: Option<Spanned<String>>,
    pub query: Option<Spanned<String>>,
    pub params: Option<Spanned<Vec<String>>>,
    pub command: Option<Spanned<Vec<String>>>,
    pub host: Option<Spanned<String>>,
    pub port: Option<Spanned<u16>>,
    pub server_name: Option<Spanned<String>>,
    pub ca_file: Option<Spanned<String>>,
    pub verify: Option<Spanned<bool>>,
    pub argv: Option<Spanned<Vec<String>>>,
    pub env: Option<Spanned<BTreeMap<String, String>>>,
}

impl RawAction {
    /// The keys that were written, with where.
    fn present(&self) -> Vec<(&'static str, Range<usize>)> {
        fn span<T>(field: &Option<Spanned<T>>) -> Option<Range<usize>> {
            field.as_ref().map(Spanned::span)
        }
        let all = [
            ("summary", span(&self.summary)),
            ("timeout", span(&self.timeout)),
            ("expect", span(&self.expect)),
            ("warn", span(&self.warn)),
            ("crit", span(&self.crit)),
            ("approvals", span(&self.approvals)),
            ("approvers", span(&self.approvers)),
            ("self_approve", span(&self.self_approve)),
            ("suggest_when", span(&self.suggest_when)),
            ("url", span(&self.url)),
            ("target", span(&self.target)),
            ("path", span(&self.path)),
            ("method", span(&self.method)),
            ("headers", span(&self.headers)),
            ("body", span(&self.body)),
            ("query", span(&self.query)),
            ("params", span(&self.params)),
            ("command", span(&self.command)),
            ("host", span(&self.host)),
            ("port", span(&self.port)),
            ("server_name", span(&self.server_name)),
            ("ca_file", span(&self.ca_file)),
            ("verify", span(&self.verify)),
            ("argv", span(&self.argv)),
            ("env", span(&self.env)),
        ];
        all.into_iter().filter_map(|(key, span)| span.map(|span| (key, span))).collect()
    }
}

const CHECK_KEYS: [&str; 4] = ["timeout", "expect", "warn", "crit"];
const REMEDIATION_KEYS: [&str; 6] = ["summary", "timeout", "approvals", "approvers", "self_approve", "suggest_when"];

/// What a check kind's constructor reads its keys through: each accessor validates templates,
/// argument references and targets, and records problems with their lines.
pub struct Fields<'a> {
    pub raw: &'a RawAction,
    pub is_check: bool,
    source: &'a SourceFile,
    args: &'a BTreeMap<String, ArgSpec>,
    /// Arguments declared with a problem (already reported); references to them are not errors.
    broken_args: &'a BTreeSet<String>,
    targets: &'a TargetRefs,
    errors: &'a mut Vec<LoadError>,
    /// Arguments referenced anywhere in this action.
    used_args: BTreeSet<String>,
    /// Arguments this action puts into a URL (their dot segments are refused when they bind).
    url_args: BTreeSet<String>,
}

impl Fields<'_> {
    pub fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        let message = format!("{} '{}': {}", self.what(), self.raw.name.get_ref(), message.into());
        self.errors.push(self.source.error_at(span, message));
    }

    fn what(&self) -> &'static str {
        if self.is_check { "check" } else { "remediation" }
    }

    pub fn kind_span(&self) -> Range<usize> {
        self.raw.kind.span()
    }

    /// Records that `template` is (part of) a URL, so its arguments may not be `.` or `..`.
    pub fn url_placed(&mut self, template: &Template) {
        self.url_args.extend(template.arg_names().map(str::to_string));
    }

    /// A value that may hold `{{arg}}` references to declared arguments.
    pub fn template(&mut self, key: &str, field: &Option<Spanned<String>>) -> Option<Template> {
        let field = field.as_ref()?;
        self.parse_template(key, field.get_ref(), field.span())
    }

    pub fn required_template(&mut self, key: &str, field: &Option<Spanned<String>>) -> Option<Template> {
        if field.is_none() {
            let span = self.kind_span();
            let kind = self.raw.kind.get_ref().clone();
            self.error(span, format!("a {kind} {} needs `{key}`", self.what()));
            return None;
        }
        self.template(key, field)
    }

    pub fn template_list(&mut self, key: &str, field: &Option<Spanned<Vec<String>>>) -> Option<Vec<Template>> {
        let field = field.as_ref()?;
        let span = field.span();
        field.get_ref().iter().map(|item| self.parse_template(key, item, span.clone())).collect()
    }

    pub fn template_map(
        &mut self,
        key: &str,
        field: &Option<Spanned<BTreeMap<String, String>>>,
    ) -> Option<BTreeMap<String, Template>> {
        let Some(field) = field.as_ref() else {
            return Some(BTreeMap::new());
        };
        let span = field.span();
        field
            .get_ref()
            .iter()
            .map(|(name, value)| self.parse_template(key, value, span.clone()).map(|template| (name.clone(), template)))
            .collect()
    }

    fn parse_template(&mut self, key: &str, text: &str, span: Range<usize>) -> Option<Template> {
        let template = match Template::parse(text) {
            Ok(template) => template,
            Err(message) => {
                self.error(span, format!("{key}: {message}"));
                return None;
            }
        };
        let mut ok = true;
        for name in template.arg_names() {
            if self.args.contains_key(name) {
                self.used_args.insert(name.to_string());
            } else if self.broken_args.contains(name) {
                ok = false;
                self.used_args.insert(name.to_string());
            } else {
                ok = false;
                let declared = if self.args.is_empty() {
                    "this file declares none".to_string()
                } else {
                    format!("declared: {}", self.args.keys().cloned().collect::<Vec<_>>().join(", "))
                };
                self.error(span.clone(), format!("{key}: '{{{{{name}}}}}' is not a declared argument ({declared}); add [args.{name}] with a pattern"));
            }
        }
        ok.then_some(template)
    }

    /// The named target, checked against `firebell.toml` when there is one.
    pub fn target(&mut self, allowed: &[TargetKind]) -> Option<String> {
        let field = self.raw.target.as_ref()?;
        let name = field.get_ref().clone();
        if let TargetRefs::Known(known) = self.targets {
            match known.get(&name) {
                None => {
                    let list = if known.is_empty() {
                        "firebell.toml defines none".to_string()
                    } else {
                        format!("defined: {}", known.keys().cloned().collect::<Vec<_>>().join(", "))
                    };
                    self.error(
                        field.span(),
                        format!("unknown target '{name}' ({list}); add [targets.{name}] to firebell.toml"),
                    );
                    return None;
                }
                Some(kind) if !allowed.contains(kind) => {
                    let kinds: Vec<&str> = allowed.iter().map(|kind| kind.name()).collect();
                    let message =
                        format!("target '{name}' is a {} target; this kind needs {}", kind.name(), kinds.join(" or "));
                    self.error(field.span(), message);
                    return None;
                }
                Some(_) => {}
            }
        }
        Some(name)
    }

    pub fn required_target(&mut self, allowed: &[TargetKind]) -> Option<String> {
        if self.raw.target.is_none() {
            let span = self.kind_span();
            let kind = self.raw.kind.get_ref().clone();
            self.error(
                span,
                format!("a {kind} {} needs `target`, a name from [targets] in firebell.toml", self.what()),
            );
            return None;
        }
        self.target(allowed)
    }
}

pub(super) fn load_runbook(source: &SourceFile, targets: &TargetRefs) -> Result<Runbook, Vec<LoadError>> {
    let raw: RawRunbook = source.parse().map_err(|error| vec![error])?;
    let mut errors = Vec::new();

    let name = raw.name.get_ref().clone();
    if !TOPIC_NAME.is_match(&name) {
        errors.push(source.error_at(
            raw.name.span(),
            format!("name '{name}' must match ^[a-z][a-z0-9_-]{{0,31}}$ (it is typed as /diagnose {name})"),
        ));
    }
    let stem = source.path.file_stem().and_then(|stem| stem.to_str()).unwrap_or_default();
    if stem != name {
        errors.push(source.error_at(
            raw.name.span(),
            format!("name '{name}' must equal the file name '{stem}', so each topic has one file"),
        ));
    }
    if raw.summary.get_ref().trim().is_empty() || raw.summary.get_ref().contains('\n') {
        errors.push(source.error_at(raw.summary.span(), "summary must be one non-empty line"));
    }
    if let Some(link) = &raw.runbook
        && url::Url::parse(link.get_ref()).is_err()
    {
        errors.push(source.error_at(
            link.span(),
            format!("runbook '{}' is not a URL (e.g. https://wiki.example/oncall#queue)", link.get_ref()),
        ));
    }

    let mut args = BTreeMap::new();
    let mut broken_args = BTreeSet::new();
    for (arg_name, arg) in &raw.args {
        match load_arg(source, arg_name, arg, &mut errors) {
            Some(spec) => {
                args.insert(arg_name.clone(), spec);
            }
            None => {
                broken_args.insert(arg_name.clone());
            }
        }
    }

    let mut used_args = BTreeSet::new();
    let mut url_args = BTreeSet::new();
    let mut check_args = BTreeSet::new();
    let mut checks = Vec::new();
    let mut check_names = BTreeSet::new();
    for raw_check in &raw.checks {
        if !check_names.insert(raw_check.name.get_ref().clone()) {
            errors.push(source.error_at(
                raw_check.name.span(),
                format!("check name '{}' is used twice in this file", raw_check.name.get_ref()),
            ));
        }
        let mut fields = Fields {
            raw: raw_check,
            is_check: true,
            source,
            args: &args,
            broken_args: &broken_args,
            targets,
            errors: &mut errors,
            used_args: BTreeSet::new(),
            url_args: BTreeSet::new(),
        };
        if let Some(check) = load_check(&mut fields) {
            checks.push(check);
        }
        check_args.extend(fields.used_args.iter().cloned());
        used_args.extend(fields.used_args);
        url_args.extend(fields.url_args);
    }

    let mut remediations = Vec::new();
    let mut remediation_names = BTreeSet::new();
    for raw_remediation in &raw.remediations {
        if !remediation_names.insert(raw_remediation.name.get_ref().clone()) {
            errors.push(source.error_at(
                raw_remediation.name.span(),
                format!("remediation name '{}' is used twice in this file", raw_remediation.name.get_ref()),
            ));
        }
        let mut fields = Fields {
            raw: raw_remediation,
            is_check: false,
            source,
            args: &args,
            broken_args: &broken_args,
            targets,
            errors: &mut errors,
            used_args: BTreeSet::new(),
            url_args: BTreeSet::new(),
        };
        if let Some(mut remediation) = load_remediation(&mut fields) {
            remediation.args = fields.used_args.clone();
            remediations.push(remediation);
        }
        used_args.extend(fields.used_args);
        url_args.extend(fields.url_args);
    }

    if raw.checks.is_empty() && raw.remediations.is_empty() {
        errors.push(
            source.error_at(raw.name.span(), "a runbook needs at least one [[checks]] or [[remediations]] entry"),
        );
    }
    for (arg_name, arg) in &raw.args {
        if !used_args.contains(arg_name) {
            errors.push(source.error_at(
                arg.span(),
                format!("argument '{arg_name}' is declared but no check or remediation uses {{{{{arg_name}}}}}"),
            ));
        }
    }

    if !errors.is_empty() {
        return Err(errors);
    }
    for name in &url_args {
        if let Some(spec) = args.get_mut(name) {
            spec.url_placed = true;
        }
    }
    Ok(Runbook {
        name,
        summary: raw.summary.into_inner(),
        runbook_url: raw.runbook.map(Spanned::into_inner),
        args,
        check_args,
        checks,
        remediations,
        path: source.path.clone(),
    })
}

fn load_arg(source: &SourceFile, name: &str, arg: &Spanned<RawArg>, errors: &mut Vec<LoadError>) -> Option<ArgSpec> {
    let span = arg.span();
    let arg = arg.get_ref();
    let before = errors.len();
    if !ARG_NAME.is_match(name) {
        errors
            .push(source.error_at(span.clone(), format!("argument name '{name}' must match ^[a-z][a-z0-9_]{{0,31}}$")));
    }
    let Some(pattern_field) = &arg.pattern else {
        errors.push(source.error_at(
            span,
            format!(
                "argument '{name}' needs a `pattern` (a regex its value must match in full, e.g. '^[a-z0-9_]{{1,64}}$')"
            ),
        ));
        return None;
    };
    let pattern = match ArgSpec::compile_pattern(pattern_field.get_ref()) {
        Ok(pattern) => Some(pattern),
        Err(message) => {
            errors.push(source.error_at(pattern_field.span(), format!("argument '{name}': {message}")));
            None
        }
    };
    let help = arg.help.clone().unwrap_or_default();
    if help.trim().is_empty() {
        errors.push(
            source.error_at(span.clone(), format!("argument '{name}' needs `help`, a few words saying what it is")),
        );
    }
    if let Some(pattern) = &pattern {
        for (key, value) in [("default", &arg.default), ("example", &arg.example)] {
            if let Some(value) = value
                && !pattern.is_match(value.get_ref())
            {
                errors.push(source.error_at(
                    value.span(),
                    format!(
                        "argument '{name}': {key} '{}' does not match its own pattern {}",
                        value.get_ref(),
                        pattern_field.get_ref()
                    ),
                ));
            }
        }
    }
    if errors.len() > before {
        return None;
    }
    Some(ArgSpec {
        name: name.to_string(),
        pattern_source: pattern_field.get_ref().clone(),
        pattern: pattern?,
        default: arg.default.as_ref().map(|value| value.get_ref().clone()),
        help,
        example: arg.example.as_ref().map(|value| value.get_ref().clone()),
        url_placed: false,
    })
}

/// Keys valid for checks (or remediations) of any kind, then the kind's own.
fn reject_foreign_keys(fields: &mut Fields<'_>, general: &[&str], kind_keys: &[&str]) {
    for (key, span) in fields.raw.present() {
        if general.contains(&key) || kind_keys.contains(&key) {
            continue;
        }
        let kind = fields.raw.kind.get_ref().clone();
        let mut valid: Vec<&str> = general.iter().chain(kind_keys.iter()).copied().collect();
        valid.sort_unstable();
        let message =
            format!("`{key}` is not a key of a {kind} {}; valid: name, kind, {}", fields.what(), valid.join(", "));
        fields.error(span, message);
    }
}

fn load_expr(
    fields: &mut Fields<'_>,
    key: &str,
    field: &Option<Spanned<String>>,
    variables: &[&str],
) -> Option<Option<Expr>> {
    let Some(field) = field else {
        return Some(None);
    };
    match Expr::compile(field.get_ref(), variables) {
        Ok(expr) => Some(Some(expr)),
        Err(message) => {
            fields.error(field.span(), format!("{key}: {message}"));
            None
        }
    }
}

fn load_timeout(fields: &Fields<'_>) -> std::time::Duration {
    fields.raw.timeout.as_ref().map(|timeout| timeout.get_ref().0).unwrap_or(DEFAULT_TIMEOUT)
}

fn load_check(fields: &mut Fields<'_>) -> Option<CheckSpec> {
    let kind = fields.raw.kind.get_ref().clone();
    let Some(found) = Kind::find(&kind, true) else {
        let span = fields.kind_span();
        fields.error(span, format!("unknown kind '{kind}'; check kinds: {}", Kind::names(true).join(", ")));
        return None;
    };
    reject_foreign_keys(fields, &CHECK_KEYS, found.keys);
    let mut variables: Vec<&str> = found.variables.to_vec();
    variables.push("args");
    let raw = fields.raw;
    let expect = load_expr(fields, "expect", &raw.expect, &variables);
    let warn = load_expr(fields, "warn", &raw.warn, &variables);
    let crit = load_expr(fields, "crit", &raw.crit, &variables);
    let timeout = load_timeout(fields);
    let action = found.build(fields);
    Some(CheckSpec {
        name: raw.name.get_ref().clone(),
        timeout,
        expect: expect?,
        warn: warn?,
        crit: crit?,
        action: action?,
    })
}

fn load_remediation(fields: &mut Fields<'_>) -> Option<Remediation> {
    let raw = fields.raw;
    let kind = raw.kind.get_ref().clone();
    let name = raw.name.get_ref().clone();
    if !REMEDIATION_NAME.is_match(&name) {
        fields.error(raw.name.span(), "the name must match ^[a-z][a-z0-9-]{0,47}$ (it is typed as /remediate NAME)");
    }
    let Some(found) = Kind::find(&kind, false) else {
        let span = fields.kind_span();
        fields.error(span, format!("unknown kind '{kind}'; remediation kinds: {}", Kind::names(false).join(", ")));
        return None;
    };
    reject_foreign_keys(fields, &REMEDIATION_KEYS, found.keys);
    let summary = match &raw.summary {
        Some(summary) if !summary.get_ref().trim().is_empty() => summary.get_ref().clone(),
        _ => {
            fields.error(raw.name.span(), "needs a one-line `summary` saying what it changes");
            String::new()
        }
    };
    let approvals = raw.approvals.as_ref().map(|a| *a.get_ref()).unwrap_or(1);
    if approvals == 0 {
        let span = raw.approvals.as_ref().map(Spanned::span).unwrap_or_default();
        fields.error(span, "approvals must be at least 1: a remediation always needs someone to approve it");
    }
    let approvers = raw.approvers.as_ref().map(|a| a.get_ref().clone()).unwrap_or_default();
    if approvers.is_empty() {
        fields.error(raw.name.span(), "needs `approvers`, the groups from firebell.toml whose members may approve (e.g. approvers = [\"oncall\"])");
    }
    let suggest_when = load_expr(fields, "suggest_when", &raw.suggest_when, &["checks", "args"]);
    let timeout = load_timeout(fields);
    let action = found.build(fields);
    Some(Remediation {
        name,
        summary,
        timeout,
        approvals,
        approvers,
        self_approve: raw.self_approve.as_ref().map(|s| *s.get_ref()).unwrap_or(false),
        suggest_when: suggest_when?,
        args: BTreeSet::new(),
        action: action?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runbook::Catalogue;

    fn load(text: &str) -> Result<Runbook, String> {
        let targets = TargetRefs::Known(BTreeMap::from([
            ("signals_db".to_string(), TargetKind::Postgres),
            ("jobs".to_string(), TargetKind::Redis),
        ]));
        load_runbook(&SourceFile::new("commands/queue.toml", text), &targets)
            .map_err(|errors| errors.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
    }

    const GOOD: &str = r#"
name = "queue"
summary = "Depth of the worker queues"

[args.queue]
pattern = '^[a-z0-9_]{1,64}$'
default = "ingest_indicators"
help = "queue name"

[[checks]]
name = "pgmq depth"
kind = "sql"
target = "signals_db"
query = "SELECT pgmq.queue_depth($1) AS depth"
params = ["{{queue}}"]
warn = "row.depth > 100"
crit = "row.depth > 500"

[[checks]]
name = "trade queue"
kind = "redis"
target = "jobs"
command = ["LLEN", "trade_execution_queue"]
warn = "value > 50"

[[remediations]]
name = "restart-worker"
summary = "Restart the worker service"
kind = "exec"
argv = ["systemctl", "restart", "autotrader-workers"]
approvers = ["oncall"]
suggest_when = "checks['trade queue'].status in ['warn', 'crit']"
"#;

    #[test]
    fn the_spec_example_loads() {
        let runbook = load(GOOD).unwrap();
        assert_eq!(runbook.name, "queue");
        assert_eq!(runbook.checks.len(), 2);
        assert_eq!(runbook.checks[0].timeout, DEFAULT_TIMEOUT);
        assert_eq!(runbook.remediations[0].approvals, 1);
        assert!(!runbook.remediations[0].self_approve);
    }

    #[test]
    fn each_mistake_is_reported_with_its_line() {
        let cases = [
            (
                "kind = \"sql\"\n",
                "kind = \"sqll\"\n",
                ":12: check 'pgmq depth': unknown kind 'sqll'; check kinds: http, sql, redis, tls, tcp, exec, prometheus",
            ),
            (
                "warn = \"row.depth > 100\"",
                "warn = \"row.depth >\"",
                ":16: check 'pgmq depth': warn: invalid CEL expression 'row.depth >'",
            ),
            (
                "warn = \"row.depth > 100\"",
                "warn = \"rwo.depth > 100\"",
                ":16: check 'pgmq depth': warn: unknown variable 'rwo'",
            ),
            ("pattern = '^[a-z0-9_]{1,64}$'", "pattern = '^[a-z0-9_{1,64}$'", ":6: argument 'queue': invalid regex"),
            (
                "target = \"signals_db\"",
                "target = \"signal_db\"",
                ":13: check 'pgmq depth': unknown target 'signal_db' (defined: jobs, signals_db); add [targets.signal_db] to firebell.toml",
            ),
            (
                "target = \"jobs\"",
                "target = \"signals_db\"",
                ":22: check 'trade queue': target 'signals_db' is a postgres target; this kind needs redis",
            ),
            (
                "query = \"SELECT pgmq.queue_depth($1) AS depth\"",
                "query = \"SELECT pgmq.queue_depth('{{queue}}') AS depth\"",
                ":14: check 'pgmq depth': query: '{{queue}}' inside SQL text",
            ),
            ("help = \"queue name\"", "help = \"queue name\"\nhlep = \"x\"", ":9: unknown field `hlep`"),
            (
                "warn = \"value > 50\"",
                "warn = \"value > 50\"\nargv = [\"x\"]",
                ":25: check 'trade queue': `argv` is not a key of a redis check",
            ),
            (
                "command = [\"LLEN\", \"trade_execution_queue\"]",
                "command = [\"DEL\", \"trade_execution_queue\"]",
                ":23: check 'trade queue': command: DEL is not a read-only Redis command",
            ),
            (
                "params = [\"{{queue}}\"]",
                "params = [\"{{queeu}}\"]",
                ":15: check 'pgmq depth': params: '{{queeu}}' is not a declared argument (declared: queue)",
            ),
            (
                "default = \"ingest_indicators\"",
                "default = \"Ingest Indicators\"",
                ":7: argument 'queue': default 'Ingest Indicators' does not match its own pattern",
            ),
            ("approvers = [\"oncall\"]", "approvers = []", ":27: remediation 'restart-worker': needs `approvers`"),
            (
                "argv = [\"systemctl\", \"restart\", \"autotrader-workers\"]",
                "argv = [\"sh\", \"-c\", \"systemctl restart x\"]",
                ":30: remediation 'restart-worker': argv: 'sh' runs a shell",
            ),
        ];
        for (from, to, expected) in cases {
            assert!(GOOD.contains(from), "case does not apply: {from}");
            let text = GOOD.replacen(from, to, 1);
            let errors = load(&text).expect_err(expected);
            assert!(errors.contains(&format!("commands/queue.toml{expected}")), "expected …{expected}\n got: {errors}");
        }
    }

    #[test]
    fn without_a_config_targets_are_not_checked() {
        let source = SourceFile::new("commands/queue.toml", GOOD.replace("signals_db", "anything"));
        let (catalogue, errors) = Catalogue::load(&[source], &TargetRefs::Unchecked);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(catalogue.topic_names(), ["queue"]);
        assert!(catalogue.remediation("restart-worker").is_some());
    }

    #[test]
    fn topic_and_remediation_names_are_unique() {
        let first = SourceFile::new("a/queue.toml", GOOD);
        let second = SourceFile::new("b/queue.toml", GOOD);
        let (catalogue, errors) = Catalogue::load(&[first, second], &TargetRefs::Unchecked);
        assert_eq!(catalogue.len(), 1);
        assert!(
            errors[0].to_string().starts_with("b/queue.toml:1: topic 'queue' is already defined in a/queue.toml"),
            "{errors:?}"
        );
    }
}
