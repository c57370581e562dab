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
pub mod event_line;
pub mod events;
pub mod export;
pub mod labels;
#[cfg(feature = "parquet")]
pub mod parquet;
pub mod run_dir;
pub(crate) mod run_reader;
pub(crate) mod series;
pub mod truth;

use std::path::{Path, PathBuf};

use tempfile::{NamedTempFile, TempDir};

pub use run_dir::{OutputError, RunDirectory, Summary};

/// Whether this binary writes Parquet files (the `parquet` cargo feature, on by default).
pub const PARQUET_SUPPORTED: bool = cfg!(feature = "parquet");

/// Ok when this binary writes Parquet files; else the error that says it was built without
/// them, for a run asked for `--parquet` to fail before it starts.
pub fn require_parquet() -> Result<(), OutputError> {
    if PARQUET_SUPPORTED {
        Ok(())
    } else {
        Err(OutputError::ParquetNotBuilt)
    }
}

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

/// Creates `folder` and its missing parents. When part of the path exists and is not a folder,
/// the error names that part: the OS says only "File exists" or "Not a directory".
pub fn create_output_folder(folder: &Path, target: &Path) -> Result<(), OutputError> {
    let not_a_folder = folder
        .ancestors()
        .filter(|part| !part.as_os_str().is_empty())
        .find(|part| part.exists() && !part.is_dir());
    if let Some(part) = not_a_folder {
        return Err(OutputError::NotAFolder {
            path: part.to_path_buf(),
            target: target.to_path_buf(),
        });
    }
    std::fs::create_dir_all(folder).map_err(|source| OutputError::Io {
        path: folder.to_path_buf(),
        source,
    })
}

/// The folder a file or run directory at `target` is written in (`.` for a bare name).
fn parent_folder(target: &Path) -> PathBuf {
    match target.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The mode of an output file and of a run directory before the umask: what any program's new
/// files and folders get (0644 and 0755 under the usual umask 022).
const OUTPUT_FILE_MODE: u32 = 0o666;
const OUTPUT_FOLDER_MODE: u32 = 0o777;

/// A builder of temporary siblings named `prefix…` that become outputs when renamed into place,
/// created with `mode` masked by the umask (the system call applies it, so nothing reads or sets
/// the process's umask). tempfile's own default for files, 0600, is meant for secrets: an export
/// or an evaluation left unreadable to the group and others surprises whoever shares it.
fn output_temp_builder(prefix: &str, mode: u32) -> tempfile::Builder<'_, 'static> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(prefix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(std::fs::Permissions::from_mode(mode));
    }
    #[cfg(not(unix))]
    let _ = mode;
    builder
}

/// A temporary sibling file for an output, with the usual permissions (see
/// [`output_temp_builder`]).
pub(crate) fn output_temp_file(folder: &Path, prefix: &str) -> std::io::Result<NamedTempFile> {
    output_temp_builder(prefix, OUTPUT_FILE_MODE).tempfile_in(folder)
}

/// A temporary sibling folder for a run directory, with the usual permissions.
pub(crate) fn output_temp_folder(folder: &Path, prefix: &str) -> std::io::Result<TempDir> {
    output_temp_builder(prefix, OUTPUT_FOLDER_MODE).tempdir_in(folder)
}

/// A file being written: a temporary sibling of its target, created up front so an unwritable
/// place fails before any work, and renamed over the target by [`PendingFile::commit`].
pub struct PendingFile {
    temp: NamedTempFile,
    target: PathBuf,
}

impl PendingFile {
    pub fn create(target: &Path) -> Result<Self, OutputError> {
        let folder = parent_folder(target);
        create_output_folder(&folder, target)?;
        let temp =
            output_temp_file(&folder, ".marketsim-tmp-").map_err(|source| OutputError::Io {
                path: std::path::absolute(&folder).unwrap_or(folder),
                source,
            })?;
        Ok(PendingFile {
            temp,
            target: target.to_path_buf(),
        })
    }

    /// Writes `text` and moves the file into place.
    pub fn commit(self, text: &str) -> Result<PathBuf, OutputError> {
        use std::io::Write as _;
        let io_error = |source| OutputError::Io {
            path: self.target.clone(),
            source,
        };
        self.temp
            .as_file()
            .write_all(text.as_bytes())
            .map_err(io_error)?;
        self.temp
            .persist(&self.target)
            .map_err(|error| OutputError::Io {
                path: self.target.clone(),
                source: error.error,
            })?;
        Ok(self.target)
    }
}
