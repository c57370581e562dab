//! `marketsim export`: a run's bucket series (`series.csv`) or, with `--events`, its events
//! (`events.jsonl`), filtered by stream globs and a time range, written as CSV or JSON Lines to
//! standard output or atomically (a temporary sibling renamed into place) to a file.
//!
//! Filters: a row is kept when its stream matches one of the patterns (`*` matches any run of
//! characters, as in scenario modifiers) and its time lies in `[from, to)`. A series row's time
//! is its bucket's start, so a bucket that starts before `--from` is left out even if it ends
//! after it. Everything is checked before the first byte is written (the run, its format, the
//! patterns, the range, the whole series); an events file is read as it is written, so a
//! malformed line deep in it stops an export to standard output midway (a file is then not
//! created).

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::run_dir::{OutputError, RunDirectory, EVENTS_FILE};
use super::run_reader::{open_run, RunSeries};
use super::series::SERIES_HEADER;
use crate::diagnostics::nearest;
use crate::market::calendar::format_unix_ms;
use crate::scenario::definition::glob_matches;

/// The header of an events CSV: the event's `data` object is one JSON-text column, because
/// payload fields differ from stream to stream; the bucket's `normalizedValue` and
/// `anomalyFlag` follow, empty when the run was made without `--analyze`.
pub const EVENTS_CSV_HEADER: &str = "timestamp,stream,data,normalizedValue,anomalyFlag";

/// Errors exporting from a run.
#[derive(Debug, Error)]
pub enum ExportError {
    /// The run directory or one of its files is missing, unreadable or malformed; the message
    /// names the file (and line where known).
    #[error(transparent)]
    Output(OutputError),
    /// `--from` or `--to` is not an RFC 3339 instant.
    #[error(
        "{flag} `{text}` is not an RFC 3339 instant ({reason}); \
         write e.g. 2025-03-03T06:00:00Z or 2025-03-03T07:00:00+01:00"
    )]
    BadTime {
        flag: &'static str,
        text: String,
        reason: String,
    },
    /// The range is empty: `--from` is not before `--to`.
    #[error("--from {from} is not before --to {to} (the range includes --from and excludes --to)")]
    EmptyRange { from: String, to: String },
    /// A `--streams` pattern matches no stream of the run; `help` says what does exist.
    #[error("--streams `{pattern}` matches no stream in {run}\n{help}")]
    NoMatchingStream {
        pattern: String,
        run: PathBuf,
        help: String,
    },
    /// `--events` on a run recorded without `--events`.
    #[error(
        "{run} has no {EVENTS_FILE}: the run was made without --events; \
         re-run it with `marketsim run SCRIPT --out DIR --events`, or export its series"
    )]
    NoEventsFile { run: PathBuf },
    /// Writing the export failed (the message includes the cause).
    #[error("{target}: {error}")]
    Write { target: String, error: io::Error },
}

impl From<OutputError> for ExportError {
    fn from(error: OutputError) -> Self {
        ExportError::Output(error)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    Csv,
    /// JSON Lines: one object per row.
    Jsonl,
}

/// Which file of the run to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportSource {
    /// `series.csv`: one row per bucket per stream.
    Series,
    /// `events.jsonl`: every event.
    Events,
}

/// What to export, as given on the command line (checked by [`export`]).
#[derive(Debug, Clone)]
pub struct ExportRequest {
    pub format: ExportFormat,
    pub source: ExportSource,
    /// Stream globs; empty means every stream.
    pub stream_patterns: Vec<String>,
    /// RFC 3339 instants: rows at or after `from` and before `to`.
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExportTarget {
    Stdout,
    /// Written to a temporary file next to it, then renamed over it.
    File(PathBuf),
}

/// What an export wrote, so the caller can say when nothing matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOutcome {
    /// Rows written; `None` when standard output was closed before the end.
    pub rows: Option<u64>,
    /// The time the run covers, `[start, end)`, RFC 3339.
    pub run_start: String,
    pub run_end: String,
}

/// The checked time range `[from, to)`; an open end is unbounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TimeRange {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

impl TimeRange {
    /// Parses `--from` and `--to`, each an RFC 3339 instant, and checks `from < to`.
    pub fn parse(from: Option<&str>, to: Option<&str>) -> Result<Self, ExportError> {
        let from = from.map(|text| parse_instant("--from", text)).transpose()?;
        let to = to.map(|text| parse_instant("--to", text)).transpose()?;
        if let (Some(from), Some(to)) = (from, to) {
            if from >= to {
                return Err(ExportError::EmptyRange {
                    from: format_unix_ms(from.timestamp_millis()),
                    to: format_unix_ms(to.timestamp_millis()),
                });
            }
        }
        Ok(TimeRange { from, to })
    }

    pub fn contains(&self, instant: DateTime<Utc>) -> bool {
        self.from.is_none_or(|from| instant >= from) && self.to.is_none_or(|to| instant < to)
    }

    /// Whether `instant` is at or past the end (nothing later can be in range).
    fn is_past_end(&self, instant: DateTime<Utc>) -> bool {
        self.to.is_some_and(|to| instant >= to)
    }
}

fn parse_instant(flag: &'static str, text: &str) -> Result<DateTime<Utc>, ExportError> {
    DateTime::parse_from_rfc3339(text.trim())
        .map(|instant| instant.with_timezone(&Utc))
        .map_err(|error| ExportError::BadTime {
            flag,
            text: text.to_string(),
            reason: error.to_string(),
        })
}

/// The streams of `run` that the patterns select, as flags per stream in the order of
/// `summary.json`; every pattern must match at least one stream.
pub fn select_streams(run: &RunDirectory, patterns: &[String]) -> Result<Vec<bool>, ExportError> {
    let names: Vec<&str> = run
        .summary
        .streams
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    if patterns.is_empty() {
        return Ok(vec![true; names.len()]);
    }
    let mut selected = vec![false; names.len()];
    for pattern in patterns {
        let pattern = pattern.trim();
        let mut matched = false;
        for (index, name) in names.iter().enumerate() {
            if glob_matches(pattern, name) {
                selected[index] = true;
                matched = true;
            }
        }
        if !matched {
            return Err(ExportError::NoMatchingStream {
                pattern: pattern.to_string(),
                run: run.path.clone(),
                help: stream_help(run, pattern),
            });
        }
    }
    Ok(selected)
}

/// "did you mean …?" (against names and `domain.*` globs) and the run's streams by domain.
fn stream_help(run: &RunDirectory, pattern: &str) -> String {
    let mut domains: Vec<(&str, Vec<&str>)> = Vec::new();
    for stream in &run.summary.streams {
        let short = stream
            .name
            .strip_prefix(&stream.domain)
            .and_then(|rest| rest.strip_prefix('.'))
            .unwrap_or(&stream.name);
        match domains
            .iter_mut()
            .find(|(domain, _)| *domain == stream.domain)
        {
            Some((_, members)) => members.push(short),
            None => domains.push((&stream.domain, vec![short])),
        }
    }
    let domain_globs: Vec<String> = domains.iter().map(|(d, _)| format!("{d}.*")).collect();
    let candidates = run
        .summary
        .streams
        .iter()
        .map(|s| s.name.as_str())
        .chain(domain_globs.iter().map(String::as_str));
    let mut help = String::new();
    if let Some(close) = nearest(pattern, candidates) {
        help.push_str(&format!("  help: did you mean `{close}`?\n"));
    }
    help.push_str("  the run's streams, by domain (`*` matches any run of characters):");
    let width = domain_globs.iter().map(String::len).max().unwrap_or(0);
    for (glob, (_, members)) in domain_globs.iter().zip(&domains) {
        help.push_str(&format!("\n    {glob:<width$}  {}", members.join(", ")));
    }
    help
}

/// Exports from the run at `run_path` to `target`.
pub fn export(
    run_path: &Path,
    request: &ExportRequest,
    target: &ExportTarget,
) -> Result<ExportOutcome, ExportError> {
    // Cheap checks of the command line first, then the run.
    let range = TimeRange::parse(request.from.as_deref(), request.to.as_deref())?;
    let run = open_run(run_path)?;
    let selected = select_streams(&run, &request.stream_patterns)?;
    let source = match request.source {
        ExportSource::Series => Source::Series(RunSeries::load(&run)?),
        ExportSource::Events => {
            Source::Events(run.events_path().ok_or_else(|| ExportError::NoEventsFile {
                run: run.path.clone(),
            })?)
        }
    };
    let (run_start, run_end) = run_span(&run);
    let job = ExportJob {
        run: &run,
        format: request.format,
        selected: &selected,
        range,
        source: &source,
        target_name: match target {
            ExportTarget::Stdout => "<stdout>".to_string(),
            ExportTarget::File(path) => path.to_string_lossy().into_owned(),
        },
    };
    let rows = match target {
        ExportTarget::Stdout => {
            let stdout = io::stdout();
            let mut writer = BufWriter::new(stdout.lock());
            match job.write(&mut writer).and_then(|rows| {
                writer.flush().map_err(write_error("<stdout>"))?;
                Ok(rows)
            }) {
                // A reader that stops early (`| head`) is not an error of the export.
                Err(ExportError::Write { error, .. })
                    if error.kind() == io::ErrorKind::BrokenPipe =>
                {
                    None
                }
                other => Some(other?),
            }
        }
        ExportTarget::File(path) => Some(write_atomically(path, |writer| job.write(writer))?),
    };
    Ok(ExportOutcome {
        rows,
        run_start,
        run_end,
    })
}

fn write_error(target: &str) -> impl FnOnce(io::Error) -> ExportError + '_ {
    move |error| ExportError::Write {
        target: target.to_string(),
        error,
    }
}

/// Writes into a temporary file beside `path` and renames it over `path` only on success, so a
/// failed export leaves no partial file and any previous file at `path` untouched.
fn write_atomically(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> Result<u64, ExportError>,
) -> Result<u64, ExportError> {
    let shown = path.to_string_lossy().into_owned();
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let temp =
        super::output_temp_file(&parent, ".marketsim-export-").map_err(write_error(&shown))?;
    let mut writer = BufWriter::new(temp);
    let rows = write(&mut writer)?;
    let temp = writer
        .into_inner()
        .map_err(|error| write_error(&shown)(error.into_error()))?;
    temp.as_file().sync_all().map_err(write_error(&shown))?;
    temp.persist(path)
        .map_err(|error| write_error(&shown)(error.error))?;
    Ok(rows)
}

/// The run's time span from its summary, in the one timestamp format of every output.
fn run_span(run: &RunDirectory) -> (String, String) {
    let summary = &run.summary;
    match DateTime::parse_from_rfc3339(&summary.epoch) {
        Ok(start) => {
            let start_ms = start.timestamp_millis();
            (
                format_unix_ms(start_ms),
                format_unix_ms(start_ms + summary.duration_ms as i64),
            )
        }
        Err(_) => (summary.epoch.clone(), format!("+{}", summary.duration)),
    }
}

enum Source {
    Series(RunSeries),
    Events(PathBuf),
}

/// Everything checked, ready to write.
struct ExportJob<'a> {
    run: &'a RunDirectory,
    format: ExportFormat,
    selected: &'a [bool],
    range: TimeRange,
    source: &'a Source,
    /// How write errors name the output: `<stdout>` or the file.
    target_name: String,
}

impl ExportJob<'_> {
    fn write(&self, out: &mut dyn Write) -> Result<u64, ExportError> {
        match self.source {
            Source::Series(series) => self.write_series(series, out),
            Source::Events(path) => self.write_events(path, out),
        }
    }

    fn write_failed(&self, error: io::Error) -> ExportError {
        ExportError::Write {
            target: self.target_name.clone(),
            error,
        }
    }

    fn write_series(&self, series: &RunSeries, out: &mut dyn Write) -> Result<u64, ExportError> {
        let mut text = String::new();
        if self.format == ExportFormat::Csv {
            text.push_str(SERIES_HEADER);
            text.push('\n');
        }
        let mut rows = 0;
        for (bucket, start) in series.bucket_starts.iter().enumerate() {
            if !self.range.contains(*start) {
                continue;
            }
            for (stream, selected) in self.selected.iter().enumerate() {
                if !selected {
                    continue;
                }
                let line = series.raw_line(bucket, stream);
                match self.format {
                    // The row as the run wrote it, so values keep their exact text.
                    ExportFormat::Csv => text.push_str(line),
                    ExportFormat::Jsonl => text.push_str(&series_line_to_json(line)),
                }
                text.push('\n');
                rows += 1;
            }
            // Written a bucket at a time: the series of a long run is a few megabytes.
            out.write_all(text.as_bytes())
                .map_err(|e| self.write_failed(e))?;
            text.clear();
        }
        out.write_all(text.as_bytes())
            .map_err(|e| self.write_failed(e))?;
        Ok(rows)
    }

    fn write_events(&self, path: &Path, out: &mut dyn Write) -> Result<u64, ExportError> {
        let read_failed = |source| {
            ExportError::Output(OutputError::Io {
                path: path.to_path_buf(),
                source,
            })
        };
        let malformed = |line: usize, message: String| {
            ExportError::Output(OutputError::Malformed {
                path: path.to_path_buf(),
                line: Some(line),
                message,
            })
        };
        let selected: BTreeSet<&str> = self
            .run
            .summary
            .streams
            .iter()
            .zip(self.selected)
            .filter(|(_, selected)| **selected)
            .map(|(stream, _)| stream.name.as_str())
            .collect();
        if self.format == ExportFormat::Csv {
            writeln!(out, "{EVENTS_CSV_HEADER}").map_err(|e| self.write_failed(e))?;
        }
        let file = File::open(path).map_err(read_failed)?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        let mut line = String::new();
        let mut line_number = 0;
        let mut previous: Option<DateTime<Utc>> = None;
        let mut rows = 0;
        loop {
            line.clear();
            let n_read = reader.read_line(&mut line).map_err(read_failed)?;
            if n_read == 0 {
                break;
            }
            line_number += 1;
            let Some(text) = line.strip_suffix('\n') else {
                return Err(malformed(
                    line_number,
                    "the last line is incomplete (no line break at the end); a truncated file?"
                        .to_string(),
                ));
            };
            let event: EventLine = serde_json::from_str(text)
                .map_err(|error| malformed(line_number, format!("not an event: {error}")))?;
            let instant = DateTime::parse_from_rfc3339(&event.timestamp)
                .map_err(|error| {
                    malformed(
                        line_number,
                        format!(
                            "`{}` is not an RFC 3339 timestamp ({error})",
                            event.timestamp
                        ),
                    )
                })?
                .with_timezone(&Utc);
            if previous.is_some_and(|previous| instant < previous) {
                return Err(malformed(
                    line_number,
                    format!("`{}` is earlier than the line before", event.timestamp),
                ));
            }
            previous = Some(instant);
            // Events are in time order, so the first one past the range ends the export.
            if self.range.is_past_end(instant) {
                break;
            }
            if !self.range.contains(instant) || !selected.contains(event.stream.as_str()) {
                continue;
            }
            match self.format {
                // The line as the run wrote it.
                ExportFormat::Jsonl => writeln!(out, "{text}"),
                ExportFormat::Csv => writeln!(
                    out,
                    "{},{},{},{},{}",
                    csv_field(&event.timestamp),
                    csv_field(&event.stream),
                    csv_field(&event.data.to_string()),
                    event
                        .normalized_value
                        .map(|value| value.to_string())
                        .unwrap_or_default(),
                    csv_field(event.anomaly_flag.as_deref().unwrap_or_default())
                ),
            }
            .map_err(|e| self.write_failed(e))?;
            rows += 1;
        }
        Ok(rows)
    }
}

/// The fields of an `events.jsonl` line that an export reads; the scores are there when the run
/// was analyzed.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EventLine {
    stream: String,
    timestamp: String,
    #[serde(default)]
    data: serde_json::Value,
    #[serde(default)]
    normalized_value: Option<serde_json::Number>,
    #[serde(default)]
    anomaly_flag: Option<String>,
}

/// A `series.csv` row as one JSON object; every column is present, `null` when empty. Numbers
/// written without a decimal point (counts) stay integers.
#[derive(Serialize)]
struct SeriesRecord<'a> {
    timestamp: &'a str,
    stream: &'a str,
    value: Option<serde_json::Number>,
    expected: Option<serde_json::Number>,
    z: Option<serde_json::Number>,
    normalized: Option<serde_json::Number>,
    flag: Option<&'a str>,
}

fn json_number(text: &str) -> Option<serde_json::Number> {
    if text.is_empty() {
        return None;
    }
    match text.parse::<i64>() {
        Ok(integer) => Some(integer.into()),
        Err(_) => text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64),
    }
}

/// Converts a row that `RunSeries` has already checked (7 fields, numbers parse).
fn series_line_to_json(line: &str) -> String {
    let mut fields = line.split(',');
    let mut next = || fields.next().unwrap_or_default();
    let (timestamp, stream, value, expected, z, normalized, flag) =
        (next(), next(), next(), next(), next(), next(), next());
    let record = SeriesRecord {
        timestamp,
        stream,
        value: json_number(value),
        expected: json_number(expected),
        z: json_number(z),
        normalized: json_number(normalized),
        flag: (!flag.is_empty()).then_some(flag),
    };
    serde_json::to_string(&record).unwrap_or_default()
}

/// A CSV field, quoted when it holds a comma, quote or line break (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_include_from_and_exclude_to() {
        let range = TimeRange::parse(Some("2025-03-03T01:00:00Z"), Some("2025-03-03T03:00:00Z"))
            .unwrap_or_default();
        let at = |text: &str| {
            DateTime::parse_from_rfc3339(text)
                .map(|t| t.with_timezone(&Utc))
                .unwrap_or_default()
        };
        assert!(!range.contains(at("2025-03-03T00:59:59Z")));
        assert!(range.contains(at("2025-03-03T01:00:00Z")));
        assert!(range.contains(at("2025-03-03T02:00:00+00:00")));
        assert!(!range.contains(at("2025-03-03T03:00:00Z")));
        // Offsets are instants: 04:00+01:00 is 03:00Z.
        assert!(!range.contains(at("2025-03-03T04:00:00+01:00")));
    }

    #[test]
    fn bad_and_reversed_ranges_are_refused() {
        assert!(matches!(
            TimeRange::parse(Some("yesterday"), None),
            Err(ExportError::BadTime { flag: "--from", .. })
        ));
        assert!(matches!(
            TimeRange::parse(None, Some("2025-03-03")),
            Err(ExportError::BadTime { flag: "--to", .. })
        ));
        assert!(matches!(
            TimeRange::parse(Some("2025-03-03T02:00:00Z"), Some("2025-03-03T01:00:00Z")),
            Err(ExportError::EmptyRange { .. })
        ));
    }

    #[test]
    fn series_rows_become_objects_with_every_column() {
        assert_eq!(
            series_line_to_json("2025-03-03T00:00:00Z,support.queue.depth,3.500,,,,"),
            r#"{"timestamp":"2025-03-03T00:00:00Z","stream":"support.queue.depth","value":3.5,"expected":null,"z":null,"normalized":null,"flag":null}"#
        );
        assert_eq!(
            series_line_to_json("2025-03-03T00:00:00Z,a.b,28,30.000,-0.400,46.0,normal"),
            r#"{"timestamp":"2025-03-03T00:00:00Z","stream":"a.b","value":28,"expected":30.0,"z":-0.4,"normalized":46.0,"flag":"normal"}"#
        );
    }

    #[test]
    fn csv_fields_are_quoted_only_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(
            csv_field(r#"{"a":1,"b":"x"}"#),
            r#""{""a"":1,""b"":""x""}""#
        );
    }
}
