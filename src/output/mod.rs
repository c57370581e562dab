//! Run outputs: what a run directory holds, how it is collected during a run, written
//! atomically, and read back.
//!
//! A run directory has `summary.json` (metadata, totals and per-stream fingerprints),
//! `series.csv` (one row per bucket per stream) and, when asked, `events.jsonl` (every event in
//! the seed's `StreamEvent` shape). Everything written is a pure function of the run's inputs:
//! no wall-clock time, host name or absolute path appears in it.
//!
//! Finished runs are read back by [`run_reader`] (format checked first, series checked
//! against the summary), compared by [`diff`] and exported by [`export`].

pub mod analysis;
pub mod diff;
pub mod events;
pub mod export;
pub mod run_dir;
pub mod run_reader;
pub mod series;
pub mod truth;

pub use run_dir::{OutputError, RunDirectory, Summary};

/// Pretty JSON with a trailing newline, as every JSON file of a run directory is written.
pub fn to_pretty_json<T: serde::Serialize>(value: &T) -> String {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    text
}

/// Reads and parses a JSON file of a run directory; errors name the file and line.
pub fn read_json_file<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
) -> Result<T, OutputError> {
    let text = std::fs::read_to_string(path).map_err(|source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| OutputError::Malformed {
        path: path.to_path_buf(),
        line: Some(e.line()),
        message: e.to_string(),
    })
}
