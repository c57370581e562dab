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
pub mod background_writer;
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

/// A builder of temporary siblings named `prefix<host>-<pid>-…` that become outputs when renamed
/// into place, created with `mode` masked by the umask (the system call applies it, so nothing
/// reads or sets the process's umask). tempfile's own default for files, 0600, is meant for
/// secrets: an export or an evaluation left unreadable to the group and others surprises whoever
/// shares it. The host and process in the name let a later write sweep what a killed process
/// left ([`sweep_abandoned_temps`]).
fn output_temp_builder(owned_prefix: &str, mode: u32) -> tempfile::Builder<'_, 'static> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(owned_prefix);
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
    sweep_abandoned_temps(folder);
    output_temp_builder(&owned_temp_prefix(prefix), OUTPUT_FILE_MODE)
        .tempfile_in(folder)
        .map_err(without_temp_name)
}

/// A temporary sibling folder for a run directory, with the usual permissions.
pub(crate) fn output_temp_folder(folder: &Path, prefix: &str) -> std::io::Result<TempDir> {
    sweep_abandoned_temps(folder);
    output_temp_builder(&owned_temp_prefix(prefix), OUTPUT_FOLDER_MODE)
        .tempdir_in(folder)
        .map_err(without_temp_name)
}

/// tempfile's error with the operating system's own message only: tempfile appends the random
/// name it tried (`… at path "/out/.marketsim-tmp-x-1-Ab3dE"`), which names nothing the user
/// knows; the caller names the folder.
fn without_temp_name(error: std::io::Error) -> std::io::Error {
    // tempfile keeps the operating system's error only as text (its wrapper's `source` is the
    // inner error's source, none for an OS error), so the suffix is cut from the text.
    let text = error.to_string();
    match text.split_once(" at path ") {
        Some((message, _)) => std::io::Error::new(error.kind(), message.to_string()),
        None => error,
    }
}

/// The prefixes of every temporary sibling this crate creates.
const TEMP_PREFIXES: [&str; 2] = [".marketsim-tmp-", ".marketsim-old-"];

/// `prefix` followed by this host's name and this process's id: `.marketsim-tmp-box-4242-`.
fn owned_temp_prefix(prefix: &str) -> String {
    format!("{prefix}{}-{}-", host_name(), std::process::id())
}

/// This machine's name as the kernel knows it (`/proc/sys/kernel/hostname`), with anything that
/// does not belong in a file name replaced; `host` where there is none. Read once a process.
fn host_name() -> &'static str {
    static HOST_NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST_NAME.get_or_init(|| {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let name: String = name
            .trim()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        if name.is_empty() {
            "host".to_string()
        } else {
            name
        }
    })
}

/// Removes the temporary siblings in `folder` that a process of this host left when it was
/// killed before committing (kill -9, a power cut): their name names this host and a process
/// that no longer runs. Such a leftover is never a run directory or an output (those appear
/// only by rename, whole), but it holds disk space, up to gigabytes of `events.jsonl`. Only
/// Linux says which processes run (`/proc/<pid>`); elsewhere nothing is swept. A process of
/// another host or another PID namespace sharing the folder names another host (a container
/// has its own host name), so its work in progress is left alone. Failures are ignored: the
/// sweep is housekeeping, and the write that called it goes on.
pub(crate) fn sweep_abandoned_temps(folder: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    let host = format!("{}-", host_name());
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let Some(rest) = TEMP_PREFIXES
            .iter()
            .find_map(|prefix| name.strip_prefix(prefix))
            .and_then(|rest| rest.strip_prefix(&host))
        else {
            continue;
        };
        let Some(pid) = rest
            .split('-')
            .next()
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists() {
            continue;
        }
        let path = entry.path();
        let removed = if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        if removed.is_ok() {
            tracing::info!(path = %path.display(), pid, "removed what a killed marketsim left");
        }
    }
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
