//! Keeps secrets out of everything a person or a log sees: masks configured secret values,
//! passwords inside connection strings, and the common token shapes in any line of text.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use regex::Regex;

const MASK: &str = "***";

/// What a token shape is replaced with: all of it, or everything after the groups that name it
/// (`password=***`, `Bearer ***`, `scheme://user:***@`).
const WHOLE: &str = "***";
const AFTER_KEY: &str = "${1}${2}***";
const AFTER_SCHEME: &str = "${1} ***";
const URL_PASSWORD: &str = "${1}:***@";

/// Token shapes masked wherever they appear, whether or not they were configured, each with
/// its replacement.
static TOKEN_SHAPES: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        // Private keys, the whole armoured block (or its opening line when cut).
        (r"-----BEGIN [A-Z ]*PRIVATE KEY-----(?s:.*?)(-----END [A-Z ]*PRIVATE KEY-----|\z)", WHOLE),
        // Slack bot, user, app and config tokens.
        (r"\bxox[abposre]-[A-Za-z0-9-]{8,}", WHOLE),
        (r"\bxapp-[A-Za-z0-9-]{8,}", WHOLE),
        // AWS access key ids and secret keys given by name.
        (r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[A-Z0-9]{16}\b", WHOLE),
        (r#"(?i)(aws_secret_access_key|secret_access_key)(["']?\s*[:=]\s*["']?)[A-Za-z0-9/+=]{40}"#, AFTER_KEY),
        // GitHub tokens and JWTs.
        (r"\bgh[pousr]_[A-Za-z0-9]{30,}", WHOLE),
        (r"\beyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}", WHOLE),
        // Authorization headers: bearer and basic credentials.
        (r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}", AFTER_SCHEME),
        // Passwords inside URLs: scheme://user:password@host
        (r"(?i)\b([a-z][a-z0-9+.-]*://[^:/@\s]*):([^@\s/]+)@", URL_PASSWORD),
        // key=value and "key": "value" pairs whose key says it is secret.
        (
            r#"(?i)\b(password|passwd|pwd|secret|token|api[_-]?key|apikey|access[_-]?key)(["']?\s*[:=]\s*["']?)([^\s"'&,;]{4,})"#,
            AFTER_KEY,
        ),
    ]
    .into_iter()
    .map(|(pattern, replacement)| (Regex::new(pattern).expect("built-in redaction pattern compiles"), replacement))
    .collect()
});

/// Masks secrets in text. Cheap to clone; built once from the configuration.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Exact values to mask, longest first so a secret containing another is masked whole.
    secret_values: Arc<Vec<String>>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secret values)", self.secret_values.len())
    }
}

impl Redactor {
    /// Values shorter than four characters are not masked: they would mangle ordinary words.
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut secret_values: Vec<String> = values.into_iter().filter(|value| value.len() >= 4).collect();
        // A connection string's password is a secret too, wherever it shows up alone.
        let passwords: Vec<String> = secret_values
            .iter()
            .filter_map(|value| url_password(value))
            .filter(|password| password.len() >= 4)
            .collect();
        secret_values.extend(passwords);
        secret_values.sort_by_key(|value| std::cmp::Reverse(value.len()));
        secret_values.dedup();
        Self { secret_values: Arc::new(secret_values) }
    }

    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut output = Cow::Borrowed(text);
        for value in self.secret_values.iter() {
            if output.contains(value.as_str()) {
                output = Cow::Owned(output.replace(value.as_str(), MASK));
            }
        }
        for (pattern, replacement) in TOKEN_SHAPES.iter() {
            if pattern.is_match(&output) {
                output = Cow::Owned(pattern.replace_all(&output, *replacement).into_owned());
            }
        }
        output
    }
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`; anything else unchanged.
pub fn mask_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some(MASK));
            parsed.to_string().replace("%2A%2A%2A", MASK)
        }
        _ => url.to_string(),
    }
}

fn url_password(value: &str) -> Option<String> {
    let parsed = url::Url::parse(value).ok()?;
    let password = parsed.password()?;
    percent_encoding::percent_decode_str(password).decode_utf8().ok().map(|decoded| decoded.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_configured_values_and_their_url_passwords() {
        let redactor = Redactor::new(["postgres://app:hunter22@db:5432/signals".to_string()]);
        assert_eq!(
            redactor.redact("connecting to postgres://app:hunter22@db:5432/signals failed"),
            "connecting to *** failed"
        );
        assert_eq!(redactor.redact("password hunter22 rejected"), "password *** rejected");
    }

    #[test]
    fn masks_token_shapes() {
        let redactor = Redactor::default();
        let cases = [
            ("token xoxb-1234567890-abcdefghij", "xoxb"),
            ("xapp-1-A0123-4567-abcdef", "xapp-1"),
            ("Authorization: Bearer abc.def.ghi-jkl", "abc.def"),
            ("key AKIAIOSFODNN7EXAMPLE here", "AKIAIOSFODNN7EXAMPLE"),
            ("aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "wJalrXUtnFEMI"),
            ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----", "MIIEow"),
            ("redis://:s3cretpass@cache:6379", "s3cretpass"),
            ("password=swordfish123", "swordfish123"),
            ("{\"api_key\": \"abcd1234efgh\"}", "abcd1234efgh"),
        ];
        for (input, secret) in cases {
            let output = redactor.redact(input);
            assert!(!output.contains(secret), "{input} → {output}");
            assert!(output.contains(MASK), "{input} → {output}");
        }
    }

    #[test]
    fn leaves_ordinary_text_alone() {
        let redactor = Redactor::new(["ab".to_string()]);
        let text = "queue ingest_indicators depth 42, about 3 rows";
        assert_eq!(redactor.redact(text), text);
    }

    #[test]
    fn mask_url_keeps_user_and_host() {
        assert_eq!(mask_url("postgres://user:pa55word@host/db"), "postgres://user:***@host/db");
        assert_eq!(mask_url("sqlite://firebell.db"), "sqlite://firebell.db");
    }
}
