//! How a check kind reads its keys. Every action has the keys of [`RawAction`]; the rest of
//! its table belongs to its kind, which deserialises them into its own struct (with
//! `deny_unknown_fields`) through [`Fields::keys`]. The accessors validate templates, argument
//! references and targets, and record each problem with its line.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::sync::LazyLock;

use serde::de::{DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::config::TargetKind;
use crate::source::{Dur, LoadError, SourceFile};
use crate::template::{ArgSpec, Template};

/// Keys any check may have besides `name` and `kind`.
pub const CHECK_KEYS: [&str; 4] = ["timeout", "expect", "warn", "crit"];
/// Keys any remediation may have besides `name` and `kind`.
pub const REMEDIATION_KEYS: [&str; 8] =
    ["summary", "timeout", "approvals", "approvers", "self_approve", "suggest_when", "verify_checks", "verify_after"];

/// The keys every `[[checks]]` or `[[remediations]]` table may have, whatever its kind.
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
    pub verify_checks: Option<Spanned<Vec<String>>>,
    pub verify_after: Option<Spanned<Dur>>,
}

impl RawAction {
    /// Splits one action's table into the keys every action has, deserialised, and its kind's.
    pub fn split<'i>(
        table: Spanned<DeTable<'i>>,
        source: &SourceFile,
    ) -> Result<(RawAction, Spanned<DeTable<'i>>), LoadError> {
        static COMMON: LazyLock<&'static [&'static str]> = LazyLock::new(key_names::<RawAction>);
        let span = table.span();
        let (mut common, mut own) = (DeTable::new(), DeTable::new());
        for (key, value) in table.into_inner() {
            let part = if COMMON.contains(&key.get_ref().as_ref()) { &mut common } else { &mut own };
            part.insert(key, value);
        }
        let raw = deserialize_table(common, span.clone(), source)?;
        Ok((raw, Spanned::new(span, own)))
    }

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
            ("verify_checks", span(&self.verify_checks)),
            ("verify_after", span(&self.verify_after)),
        ];
        all.into_iter().filter_map(|(key, span)| span.map(|span| (key, span))).collect()
    }
}

/// `T` from a table of the file, its errors turned into `file:line: message`.
fn deserialize_table<T: DeserializeOwned>(
    table: DeTable<'_>,
    span: Range<usize>,
    source: &SourceFile,
) -> Result<T, LoadError> {
    let value = Spanned::new(span.clone(), DeValue::Table(table));
    T::deserialize(toml::de::ValueDeserializer::from(value)).map_err(|error| {
        let at = error.span().unwrap_or(span);
        source.error_at(at, error.message().trim())
    })
}

/// The field names of a struct that derives `Deserialize`: its keys, from the struct itself.
pub fn key_names<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Names(&'static [&'static str]);
    impl<'de> Deserializer<'de> for &mut Names {
        type Error = serde::de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(serde::de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0 = fields;
            Err(serde::de::Error::custom("names read"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
            unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }
    let mut names = Names(&[]);
    let _ = T::deserialize(&mut names);
    names.0
}

/// Which targets runbooks may name: those of `firebell.toml`, or unchecked when there is none.
#[derive(Debug, Clone)]
pub enum TargetRefs {
    Unchecked,
    Known(BTreeMap<String, TargetKind>),
}

/// What a check kind's constructor reads its keys through: each accessor validates templates,
/// argument references and targets, and records problems with their lines.
pub struct Fields<'a> {
    pub raw: &'a RawAction,
    /// The kind's own keys, as written.
    pub(crate) own: &'a Spanned<DeTable<'a>>,
    pub is_check: bool,
    pub(crate) source: &'a SourceFile,
    pub(crate) args: &'a BTreeMap<String, ArgSpec>,
    /// Arguments declared with a problem (already reported); references to them are not errors.
    pub(crate) broken_args: &'a BTreeSet<String>,
    pub(crate) targets: &'a TargetRefs,
    pub(crate) errors: &'a mut Vec<LoadError>,
    /// Arguments referenced anywhere in this action.
    pub(crate) used_args: BTreeSet<String>,
    /// Arguments this action puts into a URL (their dot segments are refused when they bind).
    pub(crate) url_args: BTreeSet<String>,
}

impl Fields<'_> {
    /// The kind's keys as its struct `K`, which denies unknown fields. A key of another kind, or
    /// of remediations on a check (and the other way round), is reported with the keys valid
    /// here and left out, so the kind's other problems still show.
    pub fn keys<K: DeserializeOwned>(&mut self) -> Option<K> {
        let own_keys = key_names::<K>();
        let general: &[&str] = if self.is_check { &CHECK_KEYS } else { &REMEDIATION_KEYS };
        let mut valid: Vec<&str> = general.iter().chain(own_keys.iter()).copied().collect();
        valid.sort_unstable();
        let valid = format!("valid: name, kind, {}", valid.join(", "));
        let mut misplaced: Vec<(String, Range<usize>)> = self
            .raw
            .present()
            .into_iter()
            .filter(|(key, _)| !general.contains(key))
            .map(|(key, span)| (key.to_string(), span))
            .collect();
        let span = self.own.span();
        let mut table = DeTable::new();
        for (key, value) in self.own.get_ref().iter() {
            let name = key.get_ref().as_ref();
            let elsewhere = super::KINDS.iter().any(|kind| (kind.keys)().contains(&name));
            if !own_keys.contains(&name) && elsewhere {
                misplaced.push((name.to_string(), value.span()));
            } else {
                table.insert(key.clone(), value.clone());
            }
        }
        misplaced.sort_by_key(|(_, span)| span.start);
        for (key, span) in misplaced {
            let kind = self.raw.kind.get_ref().clone();
            // Say whose key it is, so a key put on the wrong kind (`chart` on a redis check)
            // points at the kind that has it.
            let owners: Vec<&str> = super::KINDS
                .iter()
                .filter(|owner| (owner.keys)().contains(&key.as_str()))
                .map(|owner| owner.name)
                .collect();
            let whose = if owners.is_empty() {
                String::new()
            } else {
                format!(" (it is a key of {} checks)", owners.join(", "))
            };
            let article = if kind.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" };
            self.error(span, format!("`{key}` is not a key of {article} {kind} {}{whose}; {valid}", self.what()));
        }
        // An unknown key is reported and left out, and the rest read again, so every unknown key
        // and the kind's own problems show in one pass.
        loop {
            match deserialize_table(table.clone(), span.clone(), self.source) {
                Ok(keys) => return Some(keys),
                Err(mut error) => {
                    let unknown = error
                        .message
                        .strip_prefix("unknown field `")
                        .and_then(|rest| rest.split_once('`'))
                        .map(|(key, _)| key.to_string());
                    let Some(key) = unknown.filter(|key| table.remove(key.as_str()).is_some()) else {
                        self.errors.push(error);
                        return None;
                    };
                    // serde names only `K`'s fields; say every key valid here.
                    error.message = format!("unknown field `{key}`; {valid}");
                    self.errors.push(error);
                }
            }
        }
    }

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
    pub fn target(&mut self, field: &Option<Spanned<String>>, allowed: &[TargetKind]) -> Option<String> {
        let field = field.as_ref()?;
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

    pub fn required_target(&mut self, field: &Option<Spanned<String>>, allowed: &[TargetKind]) -> Option<String> {
        if field.is_none() {
            let span = self.kind_span();
            let kind = self.raw.kind.get_ref().clone();
            self.error(
                span,
                format!("a {kind} {} needs `target`, a name from [targets] in firebell.toml", self.what()),
            );
            return None;
        }
        self.target(field, allowed)
    }
}
