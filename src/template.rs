//! Runbook arguments: declared with a full-match pattern, given as `key=value`, and placed into
//! values only through `{{name}}` templates (percent-encoded in URLs, escaped in JSON and PromQL
//! strings, regex-escaped in PromQL regex matchers). An argument that goes into a URL may not be
//! a dot segment (`.`, `..`, however percent-encoded): it would move the request to another path.

use std::collections::BTreeMap;
use std::fmt;

use regex::Regex;

/// One `[args.NAME]` declaration.
#[derive(Debug, Clone)]
pub struct ArgSpec {
    pub name: String,
    /// The pattern as written; `pattern` is the same, anchored at both ends.
    pub pattern_source: String,
    pub pattern: Regex,
    pub default: Option<String>,
    pub help: String,
    pub example: Option<String>,
    /// Some template puts this argument into a URL, so `.` and `..` are refused when it binds.
    pub url_placed: bool,
}

impl ArgSpec {
    /// Compiles `source` so it must match the whole value, whatever anchors it has.
    pub fn compile_pattern(source: &str) -> Result<Regex, String> {
        Regex::new(&format!("^(?:{source})$")).map_err(|error| {
            let detail = error.to_string();
            let last = detail.lines().last().unwrap_or("").trim().to_string();
            format!("invalid regex '{source}': {last}")
        })
    }

    pub fn example_value(&self) -> Option<&str> {
        self.example.as_deref().or(self.default.as_deref())
    }

    /// `queue (queue name; must match ^[a-z0-9_]{1,64}$; default ingest_indicators)`
    pub fn describe(&self) -> String {
        let mut text = format!("{} ({}; must match {}", self.name, self.help, self.pattern_source);
        match &self.default {
            Some(default) => text.push_str(&format!("; default {default})")),
            None => text.push_str("; required)"),
        }
        text
    }
}

/// Argument values that matched their patterns: the only values templates may use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Args(BTreeMap<String, String>);

impl Args {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &String)> {
        self.0.iter()
    }

    /// Matches `given` against `specs`: unknown names, missing required values and values that
    /// do not match in full are refused, naming what is valid.
    /// Only arguments in `needed` must have a value (given or default); the others are
    /// checked if given and left out otherwise.
    pub fn bind(
        specs: &BTreeMap<String, ArgSpec>,
        needed: &std::collections::BTreeSet<String>,
        given: &[(String, String)],
        command: &str,
    ) -> Result<Args, ArgError> {
        let mut values = BTreeMap::new();
        for (name, value) in given {
            let Some(spec) = specs.get(name) else {
                return Err(ArgError::Unknown {
                    command: command.to_string(),
                    name: name.clone(),
                    valid: specs.values().map(ArgSpec::describe).collect(),
                });
            };
            if values.contains_key(name) {
                return Err(ArgError::Repeated { name: name.clone() });
            }
            if spec.url_placed && is_dot_segment(value) {
                return Err(ArgError::DotSegment {
                    name: name.clone(),
                    value: value.clone(),
                    pattern: spec.pattern_source.clone(),
                    help: spec.help.clone(),
                });
            }
            if !spec.pattern.is_match(value) {
                return Err(ArgError::NoMatch {
                    name: name.clone(),
                    value: value.clone(),
                    pattern: spec.pattern_source.clone(),
                    help: spec.help.clone(),
                    example: spec.example_value().map(str::to_string),
                });
            }
            values.insert(name.clone(), value.clone());
        }
        for spec in specs.values() {
            if values.contains_key(&spec.name) || !needed.contains(&spec.name) {
                continue;
            }
            match &spec.default {
                Some(default) => {
                    values.insert(spec.name.clone(), default.clone());
                }
                None => {
                    return Err(ArgError::Missing {
                        command: command.to_string(),
                        name: spec.name.clone(),
                        pattern: spec.pattern_source.clone(),
                        help: spec.help.clone(),
                        example: spec.example_value().map(str::to_string),
                    });
                }
            }
        }
        Ok(Args(values))
    }

    /// Every name in `names` set to `value`: a stand-in for checking, at load, what a template
    /// looks like once filled in.
    pub fn sample<'a>(names: impl IntoIterator<Item = &'a str>, value: &str) -> Args {
        Args(names.into_iter().map(|name| (name.to_string(), value.to_string())).collect())
    }

    /// Builds arguments without patterns; for tests and for internal callers that already checked.
    pub fn from_pairs<const N: usize>(pairs: [(&str, &str); N]) -> Args {
        Args(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }
}

/// Why the given arguments were refused; every message says what would have been valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgError {
    Unknown {
        command: String,
        name: String,
        valid: Vec<String>,
    },
    Repeated {
        name: String,
    },
    NoMatch {
        name: String,
        value: String,
        pattern: String,
        help: String,
        example: Option<String>,
    },
    Missing {
        command: String,
        name: String,
        pattern: String,
        help: String,
        example: Option<String>,
    },
    /// A URL-placed value that is `.` or `..` (however percent-encoded).
    DotSegment {
        name: String,
        value: String,
        pattern: String,
        help: String,
    },
    /// A word that is not `key=value`.
    NotKeyValue {
        word: String,
    },
}

impl fmt::Display for ArgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let example = |f: &mut fmt::Formatter<'_>, name: &str, example: &Option<String>| match example {
            Some(example) => write!(f, "; example: {name}={example}"),
            None => Ok(()),
        };
        match self {
            ArgError::Unknown { command, name, valid } if valid.is_empty() => {
                write!(f, "unknown argument '{name}': {command} takes no arguments")
            }
            ArgError::Unknown { command, name, valid } => {
                write!(f, "unknown argument '{name}' for {command}; valid: {}", valid.join(", "))
            }
            ArgError::Repeated { name } => write!(f, "argument '{name}' is given twice; give it once"),
            ArgError::NoMatch { name, value, pattern, help, example: ex } => {
                write!(f, "argument {name}='{value}' does not match {pattern} ({help})")?;
                example(f, name, ex)
            }
            ArgError::Missing { command, name, pattern, help, example: ex } => {
                write!(f, "{command} needs argument {name} ({help}; must match {pattern})")?;
                example(f, name, ex)
            }
            ArgError::DotSegment { name, value, pattern, help } => write!(
                f,
                "argument {name}='{value}' is refused: it goes into a URL, where '.' and '..' (also written %2e) \
                 climb to another path; give a {help} that is not just dots (must match {pattern})"
            ),
            ArgError::NotKeyValue { word } => {
                write!(f, "'{word}' is not an argument: write key=value (e.g. queue=ingest_indicators)")
            }
        }
    }
}

impl std::error::Error for ArgError {}

/// Splits `key=value` words; the first word that is not one is refused.
pub fn parse_pairs<S: AsRef<str>>(words: &[S]) -> Result<Vec<(String, String)>, ArgError> {
    words
        .iter()
        .map(|word| {
            let word = word.as_ref();
            match word.split_once('=') {
                Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
                _ => Err(ArgError::NotKeyValue { word: word.to_string() }),
            }
        })
        .collect()
}

/// Whether `value` is a dot segment once percent-decoded, as the URL parser sees it: `.`, `..`,
/// `%2e`, `.%2E`, and so on (decoded repeatedly, so `%252e` counts too, for servers that decode
/// twice).
pub fn is_dot_segment(value: &str) -> bool {
    let mut current = value.to_string();
    for _ in 0..4 {
        if current == "." || current == ".." {
            return true;
        }
        let decoded = percent_encoding::percent_decode_str(&current).decode_utf8_lossy().into_owned();
        if decoded == current {
            return false;
        }
        current = decoded;
    }
    current == "." || current == ".."
}

/// How an argument's value is written into its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// As is: bind parameters, argv elements, Redis arguments, header values.
    Raw,
    /// Percent-encoded, for any part of a URL and for form (urlencoded) bodies.
    Url,
    /// Escaped as the inside of a JSON string (`"`, `\`, control characters), for JSON bodies.
    Json,
    /// Escaped for a double-quoted PromQL string (`"…"`, the only place a query takes arguments).
    Promql,
    /// Inside the string of a `=~` / `!~` matcher: regex metacharacters escaped first, so the
    /// argument matches itself only, then escaped for the PromQL string.
    PromqlRegex,
}

/// A value with `{{name}}` placeholders, parsed once when the runbook loads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Arg(String),
}

impl Template {
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after.find("}}").ok_or_else(|| format!("unclosed '{{{{' in '{text}': write {{{{name}}}}"))?;
            let name = after[..end].trim();
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "'{{{{{}}}}}' is not an argument reference: write {{{{name}}}} with letters, digits and _",
                    &after[..end]
                ));
            }
            parts.push(Part::Arg(name.to_string()));
            rest = &after[end + 2..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_string()));
        }
        Ok(Template { parts })
    }

    pub fn literal(text: &str) -> Template {
        Template { parts: vec![Part::Text(text.to_string())] }
    }

    /// Names of the arguments this template uses.
    pub fn arg_names(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|part| match part {
            Part::Arg(name) => Some(name.as_str()),
            Part::Text(_) => None,
        })
    }

    pub fn is_literal(&self) -> bool {
        self.arg_names().next().is_none()
    }

    pub fn render(&self, args: &Args, encoding: Encoding) -> String {
        self.render_each(args, |_| encoding)
    }

    /// Renders with an encoding chosen per placeholder: `encoding_of(n)` for the `n`th
    /// `{{arg}}` (0-based), for values where places differ (PromQL strings and regexes).
    pub fn render_each(&self, args: &Args, encoding_of: impl Fn(usize) -> Encoding) -> String {
        let mut output = String::new();
        let mut placeholder = 0;
        for part in &self.parts {
            match part {
                Part::Text(text) => output.push_str(text),
                Part::Arg(name) => {
                    let value = args.get(name).unwrap_or_default();
                    encode_into(&mut output, value, encoding_of(placeholder));
                    placeholder += 1;
                }
            }
        }
        output
    }

    /// The template as written, for showing what will run.
    pub fn source(&self) -> String {
        self.parts
            .iter()
            .map(|part| match part {
                Part::Text(text) => text.clone(),
                Part::Arg(name) => format!("{{{{{name}}}}}"),
            })
            .collect()
    }
}

fn encode_into(output: &mut String, value: &str, encoding: Encoding) {
    // A double-quoted PromQL string reads Go's escapes; `\'` is an error there, so `'` stays.
    let promql_escape = |output: &mut String, text: &str| {
        for c in text.chars() {
            match c {
                '\\' => output.push_str("\\\\"),
                '"' => output.push_str("\\\""),
                '\n' => output.push_str("\\n"),
                '\r' => output.push_str("\\r"),
                other => output.push(other),
            }
        }
    };
    match encoding {
        Encoding::Raw => output.push_str(value),
        Encoding::Url => {
            output.extend(percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC))
        }
        Encoding::Json => {
            let quoted = serde_json::Value::String(value.to_string()).to_string();
            output.push_str(&quoted[1..quoted.len() - 1]);
        }
        Encoding::Promql => promql_escape(output, value),
        Encoding::PromqlRegex => {
            // The metacharacters of Prometheus's regexes (Go's RE2), as `regexp.QuoteMeta` escapes them.
            let mut literal = String::with_capacity(value.len());
            for c in value.chars() {
                if "\\.+*?()|[]{}^$".contains(c) {
                    literal.push('\\');
                }
                literal.push(c);
            }
            promql_escape(output, &literal);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(specs: &BTreeMap<String, ArgSpec>) -> std::collections::BTreeSet<String> {
        specs.keys().cloned().collect()
    }

    #[test]
    fn only_needed_arguments_are_required() {
        let mut specs = queue_spec();
        specs.get_mut("queue").unwrap().default = None;
        let none = std::collections::BTreeSet::new();
        assert_eq!(Args::bind(&specs, &none, &[], "diagnose queue").unwrap().get("queue"), None);
        assert!(Args::bind(&specs, &none, &[("queue".into(), "BAD VALUE".into())], "diagnose queue").is_err());
    }

    fn queue_spec() -> BTreeMap<String, ArgSpec> {
        let spec = ArgSpec {
            name: "queue".into(),
            pattern_source: "[a-z0-9_]{1,64}".into(),
            pattern: ArgSpec::compile_pattern("[a-z0-9_]{1,64}").unwrap(),
            default: Some("ingest_indicators".into()),
            help: "queue name".into(),
            example: None,
            url_placed: false,
        };
        BTreeMap::from([("queue".to_string(), spec)])
    }

    #[test]
    fn patterns_match_the_whole_value() {
        let specs = queue_spec();
        let ok = Args::bind(&specs, &all(&specs), &[("queue".into(), "signals".into())], "diagnose queue").unwrap();
        assert_eq!(ok.get("queue"), Some("signals"));
        let error =
            Args::bind(&specs, &all(&specs), &[("queue".into(), "signals; DROP TABLE x".into())], "diagnose queue")
                .unwrap_err();
        assert_eq!(
            error.to_string(),
            "argument queue='signals; DROP TABLE x' does not match [a-z0-9_]{1,64} (queue name); example: queue=ingest_indicators"
        );
        // An unanchored pattern still has to match in full.
        let pattern = ArgSpec::compile_pattern("[a-z]+").unwrap();
        assert!(!pattern.is_match("abc1"));
        assert!(pattern.is_match("abc"));
    }

    #[test]
    fn defaults_unknown_and_missing() {
        let specs = queue_spec();
        assert_eq!(
            Args::bind(&specs, &all(&specs), &[], "diagnose queue").unwrap().get("queue"),
            Some("ingest_indicators")
        );
        let error = Args::bind(&specs, &all(&specs), &[("qeue".into(), "x".into())], "diagnose queue").unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("unknown argument 'qeue' for diagnose queue; valid: queue (queue name; must match"),
            "{error}"
        );
        let mut required = queue_spec();
        required.get_mut("queue").unwrap().default = None;
        let error = Args::bind(&required, &all(&required), &[], "diagnose queue").unwrap_err();
        assert_eq!(error.to_string(), "diagnose queue needs argument queue (queue name; must match [a-z0-9_]{1,64})");
    }

    #[test]
    fn templates_render_with_encoding() {
        let template = Template::parse("https://h/api/{{queue}}?q={{queue}}").unwrap();
        assert_eq!(template.arg_names().collect::<Vec<_>>(), ["queue", "queue"]);
        let args = Args::from_pairs([("queue", "a b/c")]);
        assert_eq!(template.render(&args, Encoding::Url), "https://h/api/a%20b%2Fc?q=a%20b%2Fc");
        assert_eq!(
            Template::parse("x{{ q }}").unwrap().render(&Args::from_pairs([("q", "a\"b")]), Encoding::Promql),
            "xa\\\"b"
        );
        assert!(Template::parse("{{oops").is_err());
        assert!(Template::parse("{{a-b}}").is_err());
        assert_eq!(Template::parse("{{queue}}").unwrap().source(), "{{queue}}");
    }

    #[test]
    fn dot_segments_are_recognised_however_encoded() {
        for value in [".", "..", "%2e", "%2E%2e", ".%2E", "%252e%252e"] {
            assert!(is_dot_segment(value), "{value}");
        }
        for value in ["...", "a.", ".a", "%2e%2f", "", "%zz"] {
            assert!(!is_dot_segment(value), "{value}");
        }
    }

    #[test]
    fn a_url_placed_argument_may_not_be_a_dot_segment() {
        let mut specs = queue_spec();
        let spec = specs.get_mut("queue").unwrap();
        spec.pattern = regex::Regex::new("^[a-z.%0-9]{1,16}$").unwrap();
        spec.pattern_source = "[a-z.%0-9]{1,16}".into();
        let pairs = |value: &str| vec![("queue".to_string(), value.to_string())];
        assert!(Args::bind(&specs, &all(&specs), &pairs(".."), "diagnose queue").is_ok(), "not in a URL: fine");
        specs.get_mut("queue").unwrap().url_placed = true;
        let error = Args::bind(&specs, &all(&specs), &pairs("%2e%2E"), "diagnose queue").unwrap_err();
        assert_eq!(
            error.to_string(),
            "argument queue='%2e%2E' is refused: it goes into a URL, where '.' and '..' (also written %2e) climb to \
             another path; give a queue name that is not just dots (must match [a-z.%0-9]{1,16})"
        );
        assert!(Args::bind(&specs, &all(&specs), &pairs("a.b"), "diagnose queue").is_ok());
    }

    #[test]
    fn json_and_promql_regex_encodings_keep_a_value_inside_its_string() {
        let args = Args::from_pairs([("v", "a\"b\\c\nd")]);
        let json = Template::parse("{\"name\":\"{{v}}\"}").unwrap().render(&args, Encoding::Json);
        let parsed: serde_json::Value = serde_json::from_str(&json).expect("still JSON");
        assert_eq!(parsed, serde_json::json!({"name": "a\"b\\c\nd"}), "one field, the value intact");

        let regex = Template::parse("{{v}}").unwrap();
        assert_eq!(regex.render(&Args::from_pairs([("v", ".*|x")]), Encoding::PromqlRegex), "\\\\.\\\\*\\\\|x");
        assert_eq!(
            regex.render(&Args::from_pairs([("v", "it's")]), Encoding::Promql),
            "it's",
            "' needs no escape in \"…\""
        );
        let each = Template::parse("{{v}}={{v}}").unwrap().render_each(&Args::from_pairs([("v", ".")]), |n| {
            if n == 0 { Encoding::Raw } else { Encoding::PromqlRegex }
        });
        assert_eq!(each, ".=\\\\.");
    }

    #[test]
    fn key_value_words() {
        assert_eq!(parse_pairs(&["a=1", "b=x=y"]).unwrap(), vec![("a".into(), "1".into()), ("b".into(), "x=y".into())]);
        assert!(parse_pairs(&["oops"]).is_err());
    }
}
