//! Diagnostics for bad input: an error that names the file, line, column and what was expected.
//!
//! YAML syntax and shape errors come from serde_yaml with a location. Errors found after parsing
//! (an unknown stream name, a probability above 1) are located by searching the source text for
//! the offending key along a path of anchors, which is exact for the files we write and a close
//! pointer for hand-edited ones.

use std::fmt;
use std::path::{Path, PathBuf};

/// One problem in one input file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub path: PathBuf,
    /// 1-based line and column, when known.
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub message: String,
    /// What would be accepted instead ("allowed: …", "did you mean …?").
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(path: &Path, message: impl Into<String>) -> Self {
        Diagnostic {
            path: path.to_path_buf(),
            line: None,
            column: None,
            message: message.into(),
            help: None,
        }
    }

    pub fn at(mut self, location: Option<(usize, usize)>) -> Self {
        if let Some((line, column)) = location {
            self.line = Some(line);
            self.column = Some(column);
        }
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Wraps a serde_yaml error, keeping its location.
    pub fn from_yaml(path: &Path, error: &serde_yaml::Error) -> Self {
        let location = error.location().map(|l| (l.line(), l.column()));
        // serde_yaml appends " at line L column C" to the message; the location is shown by us.
        let mut message = error.to_string();
        if let Some(index) = message.find(" at line ") {
            message.truncate(index);
        }
        Diagnostic::new(path, message).at(location)
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(help) = &self.help {
            write!(f, "\n  help: {help}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostic {}

/// Finds each anchor in turn, each after the previous one, and returns the 1-based line and
/// column of the last. `None` if any anchor is missing.
pub fn locate(source: &str, anchors: &[&str]) -> Option<(usize, usize)> {
    let mut offset = 0;
    let mut found = None;
    for anchor in anchors {
        let index = source[offset..].find(anchor)? + offset;
        found = Some(index);
        offset = index + anchor.len();
    }
    found.map(|index| line_column(source, index))
}

fn line_column(source: &str, byte_index: usize) -> (usize, usize) {
    let before = &source[..byte_index];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

/// The closest of `candidates` to `name`, if it is close enough to be a plausible typo.
pub fn nearest<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::damerau_levenshtein(name, candidate), candidate))
        .filter(|(distance, candidate)| *distance <= (candidate.len() / 3).max(2))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// "did you mean `x`?" or the list of allowed names when nothing is close.
pub fn suggestion<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str> + Clone) -> String {
    match nearest(name, candidates.clone()) {
        Some(close) => format!("did you mean `{close}`?"),
        None => {
            let all: Vec<&str> = candidates.into_iter().collect();
            if all.len() <= 12 {
                format!("allowed: {}", all.join(", "))
            } else {
                format!("allowed: {} … ({} names)", all[..12].join(", "), all.len())
            }
        }
    }
}

/// Parses a duration such as `90s`, `60m`, `2h`, `30d` or `1h 30m` into milliseconds.
pub fn parse_duration_ms(text: &str) -> Result<u64, String> {
    humantime::parse_duration(text.trim())
        .map(|d| d.as_millis() as u64)
        .map_err(|error| {
            format!("`{text}` is not a duration ({error}); write e.g. 90s, 60m, 2h, 30d")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locate_follows_anchors() {
        let source =
            "a: 1\nstreams:\n  - name: x\n    cadence: high\n  - name: y\n    cadence: fast\n";
        assert_eq!(locate(source, &["name: y", "cadence:"]), Some((6, 5)));
        assert_eq!(locate(source, &["name: z"]), None);
    }

    #[test]
    fn nearest_finds_typos_only() {
        let names = ["customer.tutor.search", "session.started"];
        assert_eq!(
            nearest("customer.tutor.serch", names),
            Some("customer.tutor.search")
        );
        assert_eq!(nearest("payment.refund", names), None);
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ms("60m"), Ok(3_600_000));
        assert_eq!(parse_duration_ms("1h 30m"), Ok(5_400_000));
        assert!(parse_duration_ms("soon").is_err());
    }
}
