//! Where a problem in a user's file is: `file:line: message` errors, and the small value types
//! (durations) that both `firebell.toml` and `commands/*.toml` parse with line numbers.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

/// One problem in one file, located by line so an editor can jump to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub path: PathBuf,
    pub line: usize,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

impl std::error::Error for LoadError {}

/// Every problem found in a set of files; loading reports all of them, not just the first.
#[derive(Debug, Clone, Default)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

/// A file's text with its path, so spans can be turned into `file:line`.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    pub fn new(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        Self { path: path.into(), text: text.into() }
    }

    pub fn read(path: &Path) -> Result<Self, LoadError> {
        std::fs::read_to_string(path).map(|text| Self::new(path, text)).map_err(|error| LoadError {
            path: path.to_path_buf(),
            line: 0,
            message: format!("cannot read file: {error}"),
        })
    }

    /// 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        let end = offset.min(self.text.len());
        self.text.as_bytes()[..end].iter().filter(|byte| **byte == b'\n').count() + 1
    }

    pub fn error_at(&self, span: Range<usize>, message: impl Into<String>) -> LoadError {
        LoadError { path: self.path.clone(), line: self.line_of(span.start), message: message.into() }
    }

    /// Parses the whole file as `T`, turning serde's complaint into `file:line: message`.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, LoadError> {
        toml::from_str(&self.text).map_err(|error| {
            let line = error.span().map(|span| self.line_of(span.start)).unwrap_or(1);
            LoadError { path: self.path.clone(), line, message: error.message().trim().to_string() }
        })
    }
}

/// A duration written as `500ms`, `30s`, `15m`, `1h` or `1h 30m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Dur(pub Duration);

impl Dur {
    pub fn parse(text: &str) -> Result<Self, String> {
        humantime::parse_duration(text.trim())
            .map(Dur)
            .map_err(|_| format!("invalid duration '{text}': write a number and a unit, e.g. 500ms, 30s, 15m, 1h"))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Dur::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_of_counts_newlines_before_the_offset() {
        let file = SourceFile::new("a.toml", "a = 1\nb = 2\nc = 3\n");
        assert_eq!(file.line_of(0), 1);
        assert_eq!(file.line_of(6), 2);
        assert_eq!(file.line_of(12), 3);
    }

    #[test]
    fn durations_parse_with_units_and_reject_bare_numbers() {
        assert_eq!(Dur::parse("15m").unwrap().0, Duration::from_secs(900));
        assert_eq!(Dur::parse("500ms").unwrap().0, Duration::from_millis(500));
        let error = Dur::parse("15").unwrap_err();
        assert!(error.contains("e.g. 500ms, 30s"), "{error}");
    }

    #[test]
    fn parse_errors_name_file_and_line() {
        #[derive(Deserialize, Debug)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Small {
            a: i64,
        }
        let file = SourceFile::new("x.toml", "a = 1\nbogus = 2\n");
        let error = file.parse::<Small>().unwrap_err();
        assert_eq!(error.line, 2);
        assert!(error.to_string().starts_with("x.toml:2: unknown field `bogus`"), "{error}");
    }
}
