//! `series.csv`: one row per bucket per stream, bucket-major, and its reader.
//!
//! Columns: `timestamp` (bucket start, RFC 3339 UTC with milliseconds, as in every other file
//! of the run; the reader also takes the `…T00:00:00Z` of earlier versions), `stream`, `value` — the event count of a
//! count stream, or the mean reading of a gauge with 3 decimals (empty when a gauge had no
//! reading in the bucket); and, when the run was analyzed (`--analyze`), `expected` (the
//! baseline's seasonally adjusted expectation), `z`, `normalized` (0–100, 50 = expected) and
//! `flag` (`normal`, `warning`, `critical`). Those four are empty otherwise, or where the
//! baseline has nothing to say (a gauge without a reading).

use std::io::{self, Write};
use std::path::Path;

use super::run_dir::OutputError;
use crate::scenario::RunPlan;
use crate::session::RunCollector;
use crate::stats::{AnomalyFlag, ScoreTable};

pub const SERIES_HEADER: &str = "timestamp,stream,value,expected,z,normalized,flag";

/// Formats a bucket value as written.
pub fn format_value(value: Option<f64>, is_gauge: bool) -> String {
    match value {
        None => String::new(),
        Some(v) if is_gauge => format!("{v:.3}"),
        Some(v) => format!("{}", v as u64),
    }
}

pub fn write_series<W: Write>(
    plan: &RunPlan,
    collector: &RunCollector,
    scores: Option<&ScoreTable>,
    out: &mut W,
) -> io::Result<()> {
    writeln!(out, "{SERIES_HEADER}")?;
    let epoch = plan.epoch();
    for bucket in 0..plan.bucket_count() {
        // The one timestamp format of every output, milliseconds included (`…T00:00:00.000Z`).
        let timestamp = epoch.format(bucket as u64 * plan.script.bucket_ms);
        for stream in &plan.catalog.streams {
            let index = stream.id.index();
            let value = format_value(
                collector.bucket_value(bucket, index),
                collector.is_gauge(index),
            );
            match scores.and_then(|table| table.get(bucket, index)) {
                Some(score) => writeln!(
                    out,
                    "{timestamp},{},{value},{:.3},{:.3},{:.1},{}",
                    stream.name,
                    score.expected,
                    score.z,
                    score.normalized,
                    score.flag.as_str()
                )?,
                None => writeln!(out, "{timestamp},{},{value},,,,", stream.name)?,
            }
        }
    }
    Ok(())
}

/// One row of `series.csv`.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRow {
    pub timestamp: String,
    pub stream: String,
    pub value: Option<f64>,
    pub expected: Option<f64>,
    pub z: Option<f64>,
    pub normalized: Option<f64>,
    pub flag: Option<AnomalyFlag>,
}

/// Reads `series.csv`, keeping only rows of `stream` when given.
pub fn read_series(path: &Path, stream: Option<&str>) -> Result<Vec<SeriesRow>, OutputError> {
    let text = std::fs::read_to_string(path).map_err(|source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let malformed = |line: usize, message: String| OutputError::Malformed {
        path: path.to_path_buf(),
        line: Some(line),
        message,
    };
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header == SERIES_HEADER => {}
        _ => {
            return Err(malformed(
                1,
                format!("expected the header `{SERIES_HEADER}`"),
            ))
        }
    }
    let mut rows = Vec::new();
    for (index, line) in lines {
        let fields: Vec<&str> = line.split(',').collect();
        let [timestamp, name, value, expected, z, normalized, flag] = fields[..] else {
            return Err(malformed(
                index + 1,
                format!(
                    "expected 7 comma-separated fields, found {} (a truncated file?)",
                    fields.len()
                ),
            ));
        };
        if stream.is_some_and(|s| s != name) {
            continue;
        }
        let number = |text: &str| -> Result<Option<f64>, OutputError> {
            if text.is_empty() {
                Ok(None)
            } else {
                text.parse::<f64>()
                    .map(Some)
                    .map_err(|_| malformed(index + 1, format!("`{text}` is not a number")))
            }
        };
        let flag = if flag.is_empty() {
            None
        } else {
            Some(AnomalyFlag::parse(flag).ok_or_else(|| {
                malformed(
                    index + 1,
                    format!("flag `{flag}` is not one of normal, warning, critical"),
                )
            })?)
        };
        rows.push(SeriesRow {
            timestamp: timestamp.to_string(),
            stream: name.to_string(),
            value: number(value)?,
            expected: number(expected)?,
            z: number(z)?,
            normalized: number(normalized)?,
            flag,
        });
    }
    Ok(rows)
}
