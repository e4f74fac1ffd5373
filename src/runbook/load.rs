//! Parsing and validating one runbook file. Every problem is reported with its line; a file with
//! any problem is not loaded at all.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use regex::Regex;
use serde::Deserialize;
use toml::Spanned;

use serde::de::IgnoredAny;
use toml::de::{DeTable, DeValue};

use super::expr::Expr;
use super::{CheckSpec, DEFAULT_TIMEOUT, Remediation, Runbook, Verify};
use crate::check::{Fields, Kind, RawAction, TargetRefs};
use crate::source::{LoadError, SourceFile};
use crate::template::ArgSpec;

static TOPIC_NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9_-]{0,31}$").unwrap());
static REMEDIATION_NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9-]{0,47}$").unwrap());
static ARG_NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9_]{0,31}$").unwrap());

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRunbook {
    name: Spanned<String>,
    summary: Spanned<String>,
    runbook: Option<Spanned<String>>,
    #[serde(default)]
    args: BTreeMap<String, Spanned<RawArg>>,
    /// Read again, table by table, by [`action_tables`]: each kind reads its own keys.
    #[serde(default)]
    checks: Vec<IgnoredAny>,
    #[serde(default)]
    remediations: Vec<IgnoredAny>,
}

/// The `[[checks]]` (or `[[remediations]]`) tables of the file, each split into the keys every
/// action has and its kind's own; a table that cannot be read is reported and left out.
fn action_tables<'i>(
    document: &Spanned<DeTable<'i>>,
    key: &str,
    source: &SourceFile,
    errors: &mut Vec<LoadError>,
) -> Vec<(RawAction, Spanned<DeTable<'i>>)> {
    let Some((_, value)) = document.get_ref().iter().find(|(name, _)| name.get_ref() == key) else {
        return Vec::new();
    };
    let DeValue::Array(items) = value.get_ref() else {
        return Vec::new(); // the first parse already said it must be an array
    };
    let mut tables = Vec::new();
    for item in items.iter() {
        let DeValue::Table(table) = item.get_ref() else {
            errors.push(source.error_at(item.span(), format!("each [[{key}]] entry must be a table")));
            continue;
        };
        match RawAction::split(Spanned::new(item.span(), table.clone()), source) {
            Ok(split) => tables.push(split),
            Err(error) => errors.push(error),
        }
    }
    tables
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArg {
    pattern: Option<Spanned<String>>,
    default: Option<Spanned<String>>,
    help: Option<String>,
    example: Option<Spanned<String>>,
}

pub(super) fn load_runbook(source: &SourceFile, targets: &TargetRefs) -> Result<Runbook, Vec<LoadError>> {
    let raw: RawRunbook = source.parse().map_err(|error| vec![error])?;
    let document = DeTable::parse(&source.text)
        .map_err(|error| vec![source.error_at(error.span().unwrap_or_default(), error.message())])?;
    let mut errors = Vec::new();
    let check_tables = action_tables(&document, "checks", source, &mut errors);
    let remediation_tables = action_tables(&document, "remediations", source, &mut errors);

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
    for (raw_check, own) in &check_tables {
        if !check_names.insert(raw_check.name.get_ref().clone()) {
            errors.push(source.error_at(
                raw_check.name.span(),
                format!("check name '{}' is used twice in this file", raw_check.name.get_ref()),
            ));
        }
        let mut fields = Fields {
            raw: raw_check,
            own,
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
    for (raw_remediation, own) in &remediation_tables {
        if !remediation_names.insert(raw_remediation.name.get_ref().clone()) {
            errors.push(source.error_at(
                raw_remediation.name.span(),
                format!("remediation name '{}' is used twice in this file", raw_remediation.name.get_ref()),
            ));
        }
        let mut fields = Fields {
            raw: raw_remediation,
            own,
            is_check: false,
            source,
            args: &args,
            broken_args: &broken_args,
            targets,
            errors: &mut errors,
            used_args: BTreeSet::new(),
            url_args: BTreeSet::new(),
        };
        if let Some(mut remediation) = load_remediation(&mut fields, &checks) {
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

fn load_remediation(fields: &mut Fields<'_>, checks: &[CheckSpec]) -> Option<Remediation> {
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
    let verify = load_verify(fields, checks);
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
        verify,
    })
}

/// After a remediation ran, its checks re-run this long later unless `verify_after` says.
const DEFAULT_VERIFY_AFTER: std::time::Duration = std::time::Duration::from_secs(10);
const MAX_VERIFY_AFTER: std::time::Duration = std::time::Duration::from_secs(3600);

/// `verify_checks` and `verify_after` (SPEC §11). Without `verify_checks` the checks are the
/// ones `suggest_when` names (`checks['NAME']`, `checks["NAME"]` or `checks.NAME`), else all
/// of the topic's; `[]` turns verification off.
fn load_verify(fields: &mut Fields<'_>, checks: &[CheckSpec]) -> Option<Verify> {
    let raw = fields.raw;
    let after = match &raw.verify_after {
        Some(after) if after.get_ref().0 > MAX_VERIFY_AFTER => {
            fields.error(after.span(), "verify_after must be at most 1h: a fix is judged while the incident is fresh");
            DEFAULT_VERIFY_AFTER
        }
        Some(after) => after.get_ref().0,
        None => DEFAULT_VERIFY_AFTER,
    };
    let indices: Vec<usize> = match &raw.verify_checks {
        Some(names) => {
            let mut indices = Vec::new();
            for name in names.get_ref() {
                match checks.iter().position(|check| &check.name == name) {
                    Some(index) if !indices.contains(&index) => indices.push(index),
                    Some(_) => {}
                    None => {
                        let valid: Vec<&str> = checks.iter().map(|check| check.name.as_str()).collect();
                        let valid = if valid.is_empty() { "(none)".to_string() } else { valid.join(", ") };
                        fields.error(
                            names.span(),
                            format!("verify_checks: this runbook has no check '{name}'; its checks: {valid}"),
                        );
                    }
                }
            }
            indices
        }
        None => {
            let source = raw.suggest_when.as_ref().map(|when| when.get_ref().as_str()).unwrap_or("");
            let named = |name: &str| {
                let dotted = format!("checks.{name}");
                let dotted_at = source.match_indices(&dotted).any(|(at, _)| {
                    let next = source[at + dotted.len()..].chars().next();
                    !next.is_some_and(|next| next.is_alphanumeric() || next == '_')
                });
                dotted_at
                    || source.contains(&format!("checks['{name}']"))
                    || source.contains(&format!("checks[\"{name}\"]"))
            };
            let suggested: Vec<usize> = (0..checks.len()).filter(|index| named(&checks[*index].name)).collect();
            if suggested.is_empty() { (0..checks.len()).collect() } else { suggested }
        }
    };
    (!indices.is_empty()).then_some(Verify { checks: indices, after })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TargetKind;
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
    fn a_kind_reads_only_its_own_keys_and_every_stray_key_is_named_with_the_valid_ones() {
        let text = GOOD
            .replacen(
                "command = [\"LLEN\", \"trade_execution_queue\"]",
                "command = [\"DEL\", \"x\"]\ncomand = 1\nport = 6379\nflavour = \"x\"",
                1,
            )
            .replacen("approvers = [\"oncall\"]", "approvers = [\"oncall\"]\nexpect = \"true\"", 1);
        let errors = load(&text).unwrap_err();
        let lines: Vec<&str> = errors.lines().collect();
        let valid = "valid: name, kind, command, crit, expect, target, timeout, warn";
        for expected in [
            ":23: check 'trade queue': command: DEL is not a read-only Redis command".to_string(),
            format!(":24: unknown field `comand`; {valid}"),
            format!(
                ":25: check 'trade queue': `port` is not a key of a redis check (it is a key of tls, tcp checks); {valid}"
            ),
            format!(":26: unknown field `flavour`; {valid}"),
            ":35: remediation 'restart-worker': `expect` is not a key of an exec remediation".to_string(),
        ] {
            assert!(lines.iter().any(|line| line.contains(&expected)), "missing {expected} in:\n{errors}");
        }
        assert_eq!(lines.len(), 5, "one line per problem:\n{errors}");

        let errors = load(&GOOD.replacen("name = \"trade queue\"\n", "", 1)).unwrap_err();
        assert!(errors.contains(":19: missing field `name`"), "{errors}");
        let errors = load("name = \"queue\"\nsummary = \"s\"\nchecks = [1]\n").unwrap_err();
        assert!(errors.contains(":3: each [[checks]] entry must be a table"), "{errors}");
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

    #[test]
    fn verification_re_runs_the_checks_suggest_when_names_else_all_and_none_when_turned_off() {
        let verify = |from: &str, to: &str| load(&GOOD.replacen(from, to, 1)).unwrap().remediations[0].verify.clone();
        let ten_seconds = std::time::Duration::from_secs(10);
        // GOOD's suggest_when names the trade queue, its second check.
        assert_eq!(verify("", ""), Some(Verify { checks: vec![1], after: ten_seconds }));
        let dotted = "suggest_when = \"checks.trade_queue_x.status == 'crit' || checks['nothing'].status == 'ok'\"";
        let all = Some(Verify { checks: vec![0, 1], after: ten_seconds });
        assert_eq!(verify("suggest_when = \"checks['trade queue'].status in ['warn', 'crit']\"", dotted), all);
        let listed =
            "approvers = [\"oncall\"]\nverify_checks = [\"trade queue\", \"pgmq depth\"]\nverify_after = \"1m\"";
        let expected = Some(Verify { checks: vec![1, 0], after: std::time::Duration::from_secs(60) });
        assert_eq!(verify("approvers = [\"oncall\"]", listed), expected);
        assert_eq!(verify("approvers = [\"oncall\"]", "approvers = [\"oncall\"]\nverify_checks = []"), None);
    }
}
