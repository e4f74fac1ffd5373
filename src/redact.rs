//! Keeps secrets out of everything a person or a log sees: masks configured secret values (also
//! when a tool folded them across lines), passwords inside connection strings, armoured secret
//! blocks (PEM private keys) whole, and the common token shapes. [`Redactor::redact`] works on
//! a whole text; [`LineRedactor`] on output that arrives one line at a time, remembering that
//! it is inside a key block until the block's END line.

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

/// The opening and closing lines of an armoured block: PEM's `-----BEGIN RSA PRIVATE KEY-----`,
/// OpenPGP's `-----BEGIN PGP PRIVATE KEY BLOCK-----`, RFC 4716's `---- BEGIN SSH2 … ----`.
static ARMOUR_BEGIN: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"-{4,5} ?BEGIN ([A-Z0-9][A-Z0-9 ]*?) ?-{4,5}").expect("armour pattern compiles"));
static ARMOUR_END: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"-{4,5} ?END [A-Z0-9][A-Z0-9 ]*? ?-{4,5}").expect("armour pattern compiles"));

/// Whether an armoured block with this label is public (certificates, public keys, signatures).
/// Every other label is treated as a secret, so a kind of key we did not think of is masked too.
fn armour_is_public(label: &str) -> bool {
    ["CERTIFICATE", "PUBLIC KEY", "X509 CRL", "SIGNATURE", "SIGNED MESSAGE", "PKCS7", "PARAMETERS"]
        .iter()
        .any(|public| label.contains(public))
}

/// The next opening line of a secret armoured block in `text`.
fn secret_block_start(text: &str) -> Option<regex::Match<'_>> {
    ARMOUR_BEGIN
        .captures_iter(text)
        .find(|captures| !armour_is_public(&captures[1]))
        .and_then(|captures| captures.get(0))
}

/// Masks every secret armoured block, BEGIN through END, as one `***` (through the end of the
/// text when it was cut before the END line).
fn mask_secret_blocks(text: &str) -> Cow<'_, str> {
    let Some(first) = secret_block_start(text) else { return Cow::Borrowed(text) };
    let mut output = String::with_capacity(text.len());
    let mut rest = text;
    let mut start = Some(first);
    while let Some(begin) = start {
        output.push_str(&rest[..begin.start()]);
        output.push_str(MASK);
        rest = match ARMOUR_END.find(&rest[begin.end()..]) {
            Some(end) => &rest[begin.end() + end.end()..],
            None => "",
        };
        start = secret_block_start(rest);
    }
    output.push_str(rest);
    Cow::Owned(output)
}

/// Masks secrets in text. Cheap to clone; built once from the configuration.
#[derive(Clone, Default)]
pub struct Redactor {
    /// Exact values to mask, longest first so a secret containing another is masked whole.
    secret_values: Arc<Vec<String>>,
    /// The longer values again, matching with a line break between any two characters: what
    /// `fold`, `base64 -w` or a narrow terminal makes of a token.
    folded_values: Arc<Vec<Regex>>,
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
        let folded_values = secret_values
            .iter()
            .filter(|value| value.chars().count() >= MIN_FOLDED_CHARS)
            .filter_map(|value| {
                let pattern: Vec<String> = value.chars().map(|c| regex::escape(&c.to_string())).collect();
                Regex::new(&pattern.join(r"(?:\r?\n)?")).ok()
            })
            .collect();
        Self { secret_values: Arc::new(secret_values), folded_values: Arc::new(folded_values) }
    }

    /// The longest configured secret in bytes: how far past a cut redaction has to look so a
    /// value that straddles the cut is still recognised whole.
    pub fn longest_secret(&self) -> usize {
        self.secret_values.first().map(String::len).unwrap_or(0)
    }

    /// Masks every secret in `text`, which may hold many lines: armoured blocks are masked
    /// whole and configured values also when folded across lines. Run it over the whole text
    /// before cutting it; a cut first can leave a prefix nothing recognises any more.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut output = Cow::Borrowed(text);
        for value in self.secret_values.iter() {
            if output.contains(value.as_str()) {
                output = Cow::Owned(output.replace(value.as_str(), MASK));
            }
        }
        if output.contains('\n') {
            for folded in self.folded_values.iter() {
                if folded.is_match(&output) {
                    output = Cow::Owned(folded.replace_all(&output, MASK).into_owned());
                }
            }
        }
        if let Cow::Owned(masked) = mask_secret_blocks(&output) {
            output = Cow::Owned(masked);
        }
        for (pattern, replacement) in TOKEN_SHAPES.iter() {
            if pattern.is_match(&output) {
                output = Cow::Owned(pattern.replace_all(&output, *replacement).into_owned());
            }
        }
        output
    }
}

/// Values shorter than this are not looked for across line breaks: short ones would match
/// ordinary text broken over lines.
const MIN_FOLDED_CHARS: usize = 8;

/// Redacts output that arrives one line at a time (one per output stream). A secret armoured
/// block spans lines, so once a BEGIN line was seen every line is masked through the END line.
#[derive(Debug, Clone)]
pub struct LineRedactor {
    redactor: Redactor,
    inside_secret_block: bool,
}

impl LineRedactor {
    pub fn new(redactor: Redactor) -> Self {
        Self { redactor, inside_secret_block: false }
    }

    /// The line as it may be shown. A line inside a secret block becomes `***`.
    pub fn redact_line(&mut self, line: &str) -> String {
        let mut shown = String::with_capacity(line.len());
        let mut rest = line;
        loop {
            if self.inside_secret_block {
                shown.push_str(MASK);
                match ARMOUR_END.find(rest) {
                    Some(end) => {
                        rest = &rest[end.end()..];
                        self.inside_secret_block = false;
                    }
                    None => return self.redactor.redact(&shown).into_owned(),
                }
            }
            match secret_block_start(rest) {
                Some(begin) => {
                    shown.push_str(&rest[..begin.start()]);
                    rest = &rest[begin.end()..];
                    self.inside_secret_block = true;
                }
                None => {
                    shown.push_str(rest);
                    return self.redactor.redact(&shown).into_owned();
                }
            }
        }
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

    const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIICdgIBADANBgkqhkiG9w0BAQEFAASC\nAmAwggJcAgEAAoGBAMlvX1sK2p0\n-----END PRIVATE KEY-----";

    #[test]
    fn masks_a_key_block_whole_in_a_text_and_keeps_what_follows() {
        let redactor = Redactor::default();
        let text = format!("cat key\n{KEY}\ndone\n");
        assert_eq!(redactor.redact(&text), "cat key\n***\ndone\n");
        let cut = "before -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA";
        assert_eq!(redactor.redact(cut), "before ***");
        let certificate = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----";
        assert_eq!(redactor.redact(certificate), certificate, "certificates are public");
    }

    #[test]
    fn line_redactor_masks_every_line_of_a_key_block() {
        let mut lines = LineRedactor::new(Redactor::default());
        let text = format!("key follows\n{KEY}\nafter the key");
        let shown: Vec<String> = text.lines().map(|line| lines.redact_line(line)).collect();
        assert_eq!(shown, ["key follows", "***", "***", "***", "***", "after the key"]);
        let same_line = lines.redact_line("a -----BEGIN EC PRIVATE KEY-----MHcC-----END EC PRIVATE KEY----- b");
        assert_eq!(same_line, "a *** b");
    }

    #[test]
    fn masks_a_configured_value_folded_across_lines() {
        let redactor = Redactor::new(["Zq7vN2kLp9XwR4tY8mB3cD6fH1jK5sQ0".to_string()]);
        assert_eq!(redactor.redact("token:\nZq7vN2kLp9XwR4tY\n8mB3cD6fH1jK5sQ0\nok"), "token:\n***\nok");
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
