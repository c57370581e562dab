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

    /// Wraps a serde_yaml error, keeping its location. Without the source text a duplicate
    /// key is placed where its mapping starts; prefer [`Diagnostic::from_yaml_in`].
    pub fn from_yaml(path: &Path, error: &serde_yaml::Error) -> Self {
        let location = error.location().map(|l| (l.line(), l.column()));
        // serde_yaml appends " at line L column C" to the message; the location is shown by us.
        let mut message = error.to_string();
        if let Some(index) = message.find(" at line ") {
            message.truncate(index);
        }
        Diagnostic::new(path, message).at(location)
    }

    /// Wraps a serde_yaml error on `source`, keeping its location, except that a duplicate key
    /// is placed on its second occurrence: serde_yaml reports it where the mapping starts,
    /// which for a top-level key is always 1:1.
    pub fn from_yaml_in(path: &Path, source: &str, error: &serde_yaml::Error) -> Self {
        let diagnostic = Diagnostic::from_yaml(path, error);
        let (Some(line), Some(column)) = (diagnostic.line, diagnostic.column) else {
            return diagnostic;
        };
        match duplicate_key(&diagnostic.message)
            .and_then(|key| second_occurrence_of_key(source, key, line, column))
        {
            Some(location) => diagnostic.at(Some(location)),
            None => diagnostic,
        }
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

/// The key a serde_yaml duplicate error names: "duplicate field `seed`" for a struct,
/// "duplicate entry with key \"x\"" for a map, after the path to it ("timeline[0]: …").
fn duplicate_key(message: &str) -> Option<&str> {
    if let Some((_, rest)) = message.split_once("duplicate field `") {
        return rest.strip_suffix('`');
    }
    message
        .split_once("duplicate entry with key \"")?
        .1
        .strip_suffix('"')
}

/// The 1-based line and column of the second `key:` of the block mapping that starts at
/// `line`:`column`, or `None` (a flow mapping, a quoted key) so the caller keeps serde_yaml's.
fn second_occurrence_of_key(
    source: &str,
    key: &str,
    line: usize,
    column: usize,
) -> Option<(usize, usize)> {
    let indent = column.checked_sub(1)?;
    let mut occurrences = 0;
    for (index, text) in source.lines().enumerate().skip(line.checked_sub(1)?) {
        let first_line = index + 1 == line;
        let content = text.trim_start();
        let text_indent = text.len() - content.len();
        if !first_line && !content.is_empty() && !content.starts_with('#') && text_indent < indent {
            break; // The mapping has ended.
        }
        let (head, rest) = (text.get(..indent)?, text.get(indent..)?);
        // Keys of the mapping sit at its column; only its first line may begin with `- `.
        let head_is_indentation = head.chars().all(|c| c == ' ' || (first_line && c == '-'));
        let is_key = rest
            .strip_prefix(key)
            .is_some_and(|after| after.trim_start().starts_with(':'));
        if head_is_indentation && is_key {
            occurrences += 1;
            if occurrences == 2 {
                return Some((index + 1, column));
            }
        }
    }
    None
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

/// Why a duration was refused. Every way text becomes a count of milliseconds goes through
/// [`parse_duration_ms`], so these are the only ways it can fail.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a number followed by a unit.
    #[error("`{text}` is not a duration ({problem}); write e.g. 90s, 60m, 2h, 30d or 1h 30m")]
    Malformed { text: String, problem: String },
    /// A leading minus: durations count forward (a timeline's `-7d` is its own form).
    #[error("`{text}` is negative; a duration is a whole number and a unit, e.g. 3d")]
    Negative { text: String },
    /// More milliseconds than a `u64` holds (about 584 million years), or finer than 1 ns.
    #[error("`{text}` is too long to count in milliseconds; write e.g. 90s, 60m, 2h, 30d")]
    TooLong { text: String },
    /// Virtual time is whole milliseconds, so `1500us` would silently become `1ms`.
    #[error("`{text}` is not a whole number of milliseconds; the smallest step is 1ms")]
    SubMillisecond { text: String },
}

/// Messages are strings where a duration error joins others (a timeline entry's, clap's).
impl From<DurationError> for String {
    fn from(error: DurationError) -> String {
        error.to_string()
    }
}

/// Parses a duration such as `90s`, `60m`, `2h`, `30d`, `30days` or `1h 30m` into milliseconds.
/// The sum is checked, never truncated: a value that does not fit a `u64` of milliseconds is an
/// error, not a short run.
pub fn parse_duration_ms(text: &str) -> Result<u64, DurationError> {
    let trimmed = text.trim();
    if trimmed.starts_with('-') {
        return Err(DurationError::Negative {
            text: text.to_string(),
        });
    }
    let malformed = |problem: String| DurationError::Malformed {
        text: text.to_string(),
        problem,
    };
    let duration = humantime::parse_duration(trimmed).map_err(|error| match error {
        humantime::DurationError::NumberOverflow => DurationError::TooLong {
            text: text.to_string(),
        },
        humantime::DurationError::Empty => malformed("it is empty".to_string()),
        humantime::DurationError::NumberExpected(offset)
        | humantime::DurationError::InvalidCharacter(offset) => {
            let rest = trimmed.get(offset..).unwrap_or_default();
            malformed(format!("expected a number where it says `{rest}`"))
        }
        humantime::DurationError::UnknownUnit { unit, value, .. } if unit.is_empty() => {
            malformed(format!("`{value}` needs a unit: ms, s, m, h or d"))
        }
        humantime::DurationError::UnknownUnit { unit, .. } => {
            malformed(format!("unknown unit `{unit}`; units: ms, s, m, h, d, w"))
        }
    })?;
    if duration.subsec_nanos() % 1_000_000 != 0 {
        return Err(DurationError::SubMillisecond {
            text: text.to_string(),
        });
    }
    u64::try_from(duration.as_millis()).map_err(|_| DurationError::TooLong {
        text: text.to_string(),
    })
}

/// Parses a number of days from the command line: `30`, `30d`, `30days` or `30 days` (the
/// form `summary.json` writes), from 1 to 366.
pub fn parse_days(text: &str) -> Result<u64, String> {
    let number = ["days", "day", "d"]
        .iter()
        .find_map(|unit| text.trim().strip_suffix(unit))
        .unwrap_or(text.trim())
        .trim();
    number
        .parse::<u64>()
        .ok()
        .filter(|days| (1..=366).contains(days))
        .ok_or_else(|| {
            format!("`{text}` is not a number of days; write a whole number from 1 to 366, e.g. 30 or 30d")
        })
}

/// Parses a seed from the command line: a whole number from 0 to 2^64 − 1.
pub fn parse_seed(text: &str) -> Result<u64, String> {
    text.trim().parse::<u64>().map_err(|_| {
        format!(
            "`{text}` is not a seed; seeds are whole numbers from 0 to 2^64 - 1 ({})",
            u64::MAX
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// A duration that parses is exactly the sum of its parts, whatever their size.
        #[test]
        fn a_parsed_duration_is_the_exact_sum_of_its_parts(
            seconds in prop_oneof![0u64..1_000_000, any::<u64>()],
            millis in 0u64..1_000,
            days in prop_oneof![0u64..400, any::<u64>()],
        ) {
            let exact = u128::from(days) * 86_400_000 + u128::from(seconds) * 1_000 + u128::from(millis);
            match parse_duration_ms(&format!("{days}d {seconds}s {millis}ms")) {
                Ok(ms) => prop_assert_eq!(u128::from(ms), exact),
                Err(_) => prop_assert!(exact > u128::from(u64::MAX)),
            }
        }
    }

    #[test]
    fn locate_follows_anchors() {
        let source =
            "a: 1\nstreams:\n  - name: x\n    cadence: high\n  - name: y\n    cadence: fast\n";
        assert_eq!(locate(source, &["name: y", "cadence:"]), Some((6, 5)));
        assert_eq!(locate(source, &["name: z"]), None);
    }

    #[test]
    fn a_duplicate_key_is_located_at_its_second_occurrence() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Entry {
            at: String,
            scenario: Option<String>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Document {
            name: String,
            seed: u64,
            timeline: Vec<Entry>,
        }
        let locate_duplicate = |source: &str| {
            let error = serde_yaml::from_str::<Document>(source)
                .err()
                .map(|e| Diagnostic::from_yaml_in(Path::new("s.yaml"), source, &e));
            error.and_then(|d| d.line.zip(d.column))
        };
        assert_eq!(
            locate_duplicate("name: a\nseed: 1\ntimeline: []\nseed: 2\n"),
            Some((4, 1))
        );
        assert_eq!(
            locate_duplicate(
                "name: a\nseed: 1\ntimeline:\n  - at: x\n    scenario: a\n    scenario: b\n"
            ),
            Some((6, 5))
        );
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
        assert_eq!(parse_duration_ms("30days"), Ok(30 * 86_400_000));
        assert!(parse_duration_ms("soon").is_err());
    }

    #[test]
    fn days_take_an_optional_unit() {
        for text in ["30", "30d", "30days", "30 days", " 30day "] {
            assert_eq!(parse_days(text), Ok(30), "{text}");
        }
        for text in ["0", "367", "-1", "thirty", "30h", ""] {
            assert!(parse_days(text).is_err(), "{text}");
        }
        assert_eq!(parse_seed("18446744073709551615"), Ok(u64::MAX));
        assert!(parse_seed("-1").is_err());
    }

    #[test]
    fn durations_too_long_for_milliseconds_are_refused_not_truncated() {
        // 18446744073795951 s 616 ms is 2^64 ms + 1 day: `as u64` used to make it one day.
        assert!(matches!(
            parse_duration_ms("18446744073795951s 616ms"),
            Err(DurationError::TooLong { .. })
        ));
        assert!(matches!(
            parse_duration_ms("-3d"),
            Err(DurationError::Negative { .. })
        ));
        assert!(matches!(
            parse_duration_ms("1500us"),
            Err(DurationError::SubMillisecond { .. })
        ));
    }
}
