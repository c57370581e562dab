//! Reading a finished run back for `diff` and `export`: [`open_run`] checks the directory and
//! its format version before anything else, and [`RunSeries`] is `series.csv` read whole and
//! checked against `summary.json`, so a truncated or hand-edited file is an error that names
//! the file and line instead of a silently shorter series.

use std::fs;
use std::path::Path;

use chrono::{DateTime, Utc};

use super::run_dir::{OutputError, RunDirectory, RUN_FORMAT, SUMMARY_FILE};
use super::series::{read_series, SeriesRow};

/// Opens the run directory at `path` for reading.
///
/// The format version is checked on the raw JSON first: a run written by a later version may
/// carry fields this one does not know, and "unsupported format" is the useful message then,
/// not "unknown field".
pub fn open_run(path: &Path) -> Result<RunDirectory, OutputError> {
    if !path.exists() {
        return Err(OutputError::Malformed {
            path: path.to_path_buf(),
            line: None,
            message: "no such run directory".to_string(),
        });
    }
    let summary_path = path.join(SUMMARY_FILE);
    if path.is_dir() && summary_path.is_file() {
        let text = fs::read_to_string(&summary_path).map_err(|source| OutputError::Io {
            path: summary_path.clone(),
            source,
        })?;
        // Only a readable `format` string is checked here; any other problem is left to the
        // typed parse in `RunDirectory::open`, which reports it with a line number.
        if let Ok(serde_json::Value::Object(object)) = serde_json::from_str(&text) {
            if let Some(serde_json::Value::String(format)) = object.get("format") {
                if format != RUN_FORMAT {
                    return Err(OutputError::Malformed {
                        path: summary_path,
                        line: None,
                        message: format!(
                            "run format `{format}` is not supported by this version; \
                             expected `{RUN_FORMAT}`"
                        ),
                    });
                }
            }
        }
    }
    RunDirectory::open(path)
}

/// A run's `series.csv`, complete: one row per bucket per stream, bucket-major, streams in the
/// order of `summary.json`, bucket starts `bucketMs` apart.
#[derive(Debug, Clone)]
pub struct RunSeries {
    pub stream_names: Vec<String>,
    /// Each bucket's start as written in the file.
    pub bucket_timestamps: Vec<String>,
    pub bucket_starts: Vec<DateTime<Utc>>,
    rows: Vec<SeriesRow>,
    /// Each row's line as written, so an export can pass it on byte for byte.
    raw_lines: Vec<String>,
}

impl RunSeries {
    /// Reads and checks the series of `run`.
    pub fn load(run: &RunDirectory) -> Result<Self, OutputError> {
        let path = run.series_path();
        let malformed = |line: Option<usize>, message: String| OutputError::Malformed {
            path: path.clone(),
            line,
            message,
        };
        // `read_series` checks each row's shape, numbers and flag; the text is read a second
        // time (the file is small) for what it does not keep: the raw lines and whether the
        // last one is complete (every line the writer emits ends with a line break).
        let rows = read_series(&path, None)?;
        let text = fs::read_to_string(&path).map_err(|source| OutputError::Io {
            path: path.clone(),
            source,
        })?;
        if !text.is_empty() && !text.ends_with('\n') {
            return Err(malformed(
                Some(rows.len() + 1),
                "the last line is incomplete (no line break at the end); a truncated file?"
                    .to_string(),
            ));
        }
        let raw_lines: Vec<String> = text.lines().skip(1).map(str::to_string).collect();

        let summary = &run.summary;
        let stream_names: Vec<String> = summary.streams.iter().map(|s| s.name.clone()).collect();
        let n_streams = stream_names.len();
        let expected_rows = summary.buckets * n_streams;
        if rows.len() < expected_rows {
            return Err(malformed(
                Some(rows.len() + 1),
                format!(
                    "ends after {} rows; {SUMMARY_FILE} promises {expected_rows} \
                     ({} buckets × {n_streams} streams); a truncated file?",
                    rows.len(),
                    summary.buckets
                ),
            ));
        }
        if rows.len() > expected_rows {
            return Err(malformed(
                Some(expected_rows + 2),
                format!(
                    "has {} rows; {SUMMARY_FILE} promises {expected_rows} \
                     ({} buckets × {n_streams} streams)",
                    rows.len(),
                    summary.buckets
                ),
            ));
        }

        let mut bucket_timestamps = Vec::with_capacity(summary.buckets);
        let mut bucket_starts: Vec<DateTime<Utc>> = Vec::with_capacity(summary.buckets);
        for (row_index, row) in rows.iter().enumerate() {
            // Line 1 is the header.
            let line = row_index + 2;
            let expected_stream = &stream_names[row_index % n_streams];
            if &row.stream != expected_stream {
                return Err(malformed(
                    Some(line),
                    format!(
                        "expected stream `{expected_stream}` here (the order of {SUMMARY_FILE}), \
                         found `{}`",
                        row.stream
                    ),
                ));
            }
            if row_index % n_streams == 0 {
                let start = DateTime::parse_from_rfc3339(&row.timestamp)
                    .map_err(|error| {
                        malformed(
                            Some(line),
                            format!("`{}` is not an RFC 3339 timestamp ({error})", row.timestamp),
                        )
                    })?
                    .with_timezone(&Utc);
                if let Some(previous) = bucket_starts.last() {
                    let step_ms = (start - *previous).num_milliseconds();
                    if step_ms != summary.bucket_ms as i64 {
                        return Err(malformed(
                            Some(line),
                            format!(
                                "bucket {} starts {step_ms} ms after the previous one; \
                                 {SUMMARY_FILE} says buckets are {} ms",
                                bucket_starts.len(),
                                summary.bucket_ms
                            ),
                        ));
                    }
                }
                bucket_starts.push(start);
                bucket_timestamps.push(row.timestamp.clone());
            } else if Some(&row.timestamp) != bucket_timestamps.last() {
                return Err(malformed(
                    Some(line),
                    format!(
                        "timestamp `{}` differs from the bucket's first row",
                        row.timestamp
                    ),
                ));
            }
        }
        Ok(RunSeries {
            stream_names,
            bucket_timestamps,
            bucket_starts,
            rows,
            raw_lines,
        })
    }

    pub fn n_buckets(&self) -> usize {
        self.bucket_timestamps.len()
    }

    pub fn n_streams(&self) -> usize {
        self.stream_names.len()
    }

    pub fn row(&self, bucket_index: usize, stream_index: usize) -> &SeriesRow {
        &self.rows[bucket_index * self.n_streams() + stream_index]
    }

    /// The row's line as written in `series.csv`, without the line break.
    pub fn raw_line(&self, bucket_index: usize, stream_index: usize) -> &str {
        &self.raw_lines[bucket_index * self.n_streams() + stream_index]
    }

    /// Whether the run was analyzed: some row carries a normalized score.
    pub fn is_analyzed(&self) -> bool {
        self.rows.iter().any(|row| row.normalized.is_some())
    }
}
