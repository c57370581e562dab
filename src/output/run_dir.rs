//! The run directory on disk: created in a temporary sibling and renamed into place, so a
//! failed or interrupted run never leaves a half-written directory where a good one was, and an
//! existing directory is replaced only when it is a run and `--force` says so.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::background_writer::BackgroundWriter;
use super::events::EventTable;
use super::labels::LabelRecord;
use super::series::write_series;
use crate::market::catalog::Catalog;
use crate::market::Epoch;
use crate::scenario::RunPlan;
use crate::session::RunCollector;
use crate::stats::ScoreTable;

/// The run-directory format this binary writes and reads.
pub const RUN_FORMAT: &str = "marketsim-run/1";
pub const SUMMARY_FILE: &str = "summary.json";
pub const SERIES_FILE: &str = "series.csv";
pub const EVENTS_FILE: &str = "events.jsonl";
pub const TRUTH_FILE: &str = "truth.json";
pub const TIMELINE_FILE: &str = "timeline.json";
/// `events.jsonl` goes to its writing thread in pieces of this size.
const EVENTS_WRITE_BYTES: usize = 1 << 20;

/// Errors reading or writing run directories.
#[derive(Debug, Error)]
pub enum OutputError {
    /// The output exists and holds a run; the caller may retry with `force`.
    #[error("{path} already holds a run; pass --force to replace it")]
    RunExists { path: PathBuf },
    /// Part of the output's path is a file, so nothing can be created inside it.
    #[error("{path} is not a folder, so {target} cannot be written inside it")]
    NotAFolder { path: PathBuf, target: PathBuf },
    /// The output exists and is not a run directory; it is never replaced.
    #[error("{path} exists and is not a marketsim run directory; refusing to replace it")]
    NotARunDirectory { path: PathBuf },
    /// Shown as `path: cause` by the `{:#}` chain printer, so the cause is not repeated here.
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// `--parquet` was asked of a binary built without the `parquet` cargo feature.
    #[error("--parquet: this marketsim was built without Parquet support (the `parquet` cargo feature, on by default); rebuild it with default features, e.g. `cargo install --path . --locked`, or leave out --parquet")]
    ParquetNotBuilt,
    /// A Parquet file could not be written; shown as `path: cause`, like `Io`.
    #[error("{path}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A file of the run is not what this version writes.
    #[error("{path}{}: {message}", line.map(|l| format!(":{l}")).unwrap_or_default())]
    Malformed {
        path: PathBuf,
        line: Option<usize>,
        message: String,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ToolInfo {
    pub name: String,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileReference {
    pub path: String,
    pub sha256: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamSummary {
    pub name: String,
    pub domain: String,
    pub events: u64,
    /// XXH3-64 of the stream's event sequence (time and payload), hex.
    pub fingerprint: String,
}

/// `summary.json`: what was run and what came out, per stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Summary {
    pub format: String,
    pub tool: ToolInfo,
    pub name: String,
    pub seed: u64,
    pub script: FileReference,
    pub catalog: FileReference,
    /// The marketplace's size factor (`scale:`, `--scale`): the catalog's students, tutors and
    /// demand times this. Written only when it is not 1.
    #[serde(
        default = "crate::market::catalog::unit_scale",
        skip_serializing_if = "crate::market::catalog::is_unit_scale"
    )]
    pub scale: u32,
    /// The instant virtual time 0 stands for, ISO 8601.
    pub epoch: String,
    /// Human-readable duration, e.g. `30days`.
    pub duration: String,
    pub duration_ms: u64,
    /// Days simulated before the script's start (`--warmup`), in ms: the buckets before
    /// `warmupEnd` are history, with no scripted item in them. 0 without a warm-up.
    #[serde(default)]
    pub warmup_ms: u64,
    /// Where the warm-up ends and the script's own time begins (the epoch without one).
    #[serde(default)]
    pub warmup_end: String,
    /// How far past an item's window ground truth followed its effect (`--truth-horizon`).
    #[serde(default)]
    pub truth_horizon_ms: u64,
    pub bucket_ms: u64,
    pub buckets: usize,
    pub total_events: u64,
    /// Whether `events.jsonl` was written.
    pub events_file: bool,
    pub streams: Vec<StreamSummary>,
}

/// Paths in outputs use forward slashes on every platform.
fn portable_path(path: &Path) -> String {
    path.to_string_lossy().replace('\\', "/")
}

impl Summary {
    pub fn new(plan: &RunPlan, collector: &RunCollector, events_file: bool) -> Self {
        let streams = plan
            .catalog
            .streams
            .iter()
            .map(|s| StreamSummary {
                name: s.name.clone(),
                domain: s.domain.clone(),
                events: collector.counts[s.id.index()],
                fingerprint: collector.fingerprint(s.id.index()),
            })
            .collect();
        Summary {
            format: RUN_FORMAT.to_string(),
            tool: ToolInfo {
                name: env!("CARGO_PKG_NAME").to_string(),
                version: env!("CARGO_PKG_VERSION").to_string(),
            },
            name: plan.script.name.clone(),
            seed: plan.seed,
            script: FileReference {
                path: portable_path(&plan.script.path),
                sha256: plan.script.sha256.clone(),
            },
            catalog: FileReference {
                path: portable_path(Path::new(&plan.catalog_name)),
                sha256: plan.catalog.sha256.clone(),
            },
            scale: plan.catalog.scale,
            epoch: plan.epoch().format(0),
            duration: humantime::format_duration(std::time::Duration::from_millis(
                plan.duration_ms,
            ))
            .to_string(),
            duration_ms: plan.duration_ms,
            warmup_ms: plan.warmup_ms,
            warmup_end: plan.epoch().format(plan.warmup_ms),
            truth_horizon_ms: plan.truth_horizon_ms,
            bucket_ms: plan.script.bucket_ms,
            buckets: plan.bucket_count(),
            total_events: collector.total_events(),
            events_file,
            streams,
        }
    }
}

/// A run directory being written: a temporary sibling of the target until [`commit`].
///
/// [`commit`]: PendingRunDirectory::commit
pub struct PendingRunDirectory {
    temp: tempfile::TempDir,
    target: PathBuf,
}

impl PendingRunDirectory {
    /// Checks that `target` may be written (before any work is done) and creates the
    /// temporary directory next to it.
    pub fn create(target: &Path, force: bool) -> Result<Self, OutputError> {
        check_replaceable(target, force)?;
        let parent = super::parent_folder(target);
        super::create_output_folder(&parent, target)?;
        let temp =
            super::output_temp_folder(&parent, ".marketsim-tmp-").map_err(io_error(&parent))?;
        Ok(PendingRunDirectory {
            temp,
            target: target.to_path_buf(),
        })
    }

    /// Writes one more file into the directory before it is committed.
    pub fn add_file(&self, name: &str, text: &str) -> Result<(), OutputError> {
        let path = self.temp.path().join(name);
        fs::write(&path, text).map_err(io_error(&path))
    }

    /// Opens `events.jsonl` in the temporary directory.
    pub fn events_writer(&self) -> Result<BackgroundWriter, OutputError> {
        let path = self.temp.path().join(EVENTS_FILE);
        let file = File::create(&path).map_err(io_error(&path))?;
        // The file is written on a thread of its own: copying gigabytes into the page cache
        // costs about as much as simulating them, and the other core can do it meanwhile.
        BackgroundWriter::spawn(file, EVENTS_WRITE_BYTES).map_err(io_error(&path))
    }

    /// Opens `events.parquet` in the temporary directory, for the events sink to hand every
    /// event it writes to ([`EventsJsonlSink::with_table`]); `scored`: the events carry their
    /// bucket's scores.
    ///
    /// [`EventsJsonlSink::with_table`]: super::events::EventsJsonlSink::with_table
    pub fn events_table<'a>(
        &self,
        catalog: &'a Catalog,
        epoch: Epoch,
        scored: bool,
    ) -> Result<Box<dyn EventTable + 'a>, OutputError> {
        #[cfg(feature = "parquet")]
        {
            let path = self.temp.path().join(super::parquet::EVENTS_PARQUET_FILE);
            let writer =
                super::parquet::EventsParquetWriter::create(&path, catalog, epoch, scored)?;
            Ok(Box::new(writer))
        }
        #[cfg(not(feature = "parquet"))]
        {
            let _ = (catalog, epoch, scored);
            Err(OutputError::ParquetNotBuilt)
        }
    }

    /// Writes `series.parquet` and, given the run's labels, `labels.parquet`: the rows of
    /// `series.csv` and `labels.csv`, typed.
    pub fn add_parquet_tables(
        &self,
        plan: &RunPlan,
        collector: &RunCollector,
        scores: Option<&ScoreTable>,
        labels: Option<&[LabelRecord]>,
    ) -> Result<(), OutputError> {
        #[cfg(feature = "parquet")]
        {
            use super::parquet::{
                write_labels_parquet, write_series_parquet, LABELS_PARQUET_FILE,
                SERIES_PARQUET_FILE,
            };
            let folder = self.temp.path();
            write_series_parquet(&folder.join(SERIES_PARQUET_FILE), plan, collector, scores)?;
            if let Some(labels) = labels {
                write_labels_parquet(&folder.join(LABELS_PARQUET_FILE), labels)?;
            }
            Ok(())
        }
        #[cfg(not(feature = "parquet"))]
        {
            let _ = (plan, collector, scores, labels);
            Err(OutputError::ParquetNotBuilt)
        }
    }

    /// Writes the summary and series, then moves the directory into place.
    pub fn commit(
        self,
        plan: &RunPlan,
        collector: &RunCollector,
        summary: &Summary,
        scores: Option<&ScoreTable>,
        extra_files: &[(&str, String)],
    ) -> Result<PathBuf, OutputError> {
        for (name, text) in extra_files {
            let path = self.temp.path().join(name);
            fs::write(&path, text).map_err(io_error(&path))?;
        }
        let summary_path = self.temp.path().join(SUMMARY_FILE);
        fs::write(&summary_path, super::to_pretty_json(summary))
            .map_err(io_error(&summary_path))?;
        let series_path = self.temp.path().join(SERIES_FILE);
        let file = File::create(&series_path).map_err(io_error(&series_path))?;
        let mut writer = BufWriter::new(file);
        write_series(plan, collector, scores, &mut writer).map_err(io_error(&series_path))?;
        writer.flush().map_err(io_error(&series_path))?;

        // Re-check: something may have appeared at the target while the run was going on.
        check_replaceable(&self.target, true)?;
        let staged = self.temp.keep();
        if self.target.exists() {
            let parent = staged.parent().unwrap_or(Path::new(".")).to_path_buf();
            let old = super::output_temp_folder(&parent, ".marketsim-old-")
                .map_err(io_error(&parent))?
                .keep();
            // `old` exists (empty); renaming onto an empty directory replaces it on Unix.
            fs::rename(&self.target, &old).map_err(io_error(&self.target))?;
            if let Err(source) = fs::rename(&staged, &self.target) {
                let _ = fs::rename(&old, &self.target);
                let _ = fs::remove_dir_all(&staged);
                return Err(OutputError::Io {
                    path: self.target,
                    source,
                });
            }
            fs::remove_dir_all(&old).map_err(io_error(&old))?;
        } else if let Err(source) = fs::rename(&staged, &self.target) {
            let _ = fs::remove_dir_all(&staged);
            return Err(OutputError::Io {
                path: self.target,
                source,
            });
        }
        Ok(self.target)
    }
}

/// May `target` be written? Missing or empty: yes. A run: only with `force`. Anything else: no.
fn check_replaceable(target: &Path, force: bool) -> Result<(), OutputError> {
    if !target.exists() {
        return Ok(());
    }
    if !target.is_dir() {
        return Err(OutputError::NotARunDirectory {
            path: target.to_path_buf(),
        });
    }
    let mut entries = fs::read_dir(target).map_err(io_error(target))?;
    if entries.next().is_none() {
        return Ok(());
    }
    if !target.join(SUMMARY_FILE).is_file() {
        return Err(OutputError::NotARunDirectory {
            path: target.to_path_buf(),
        });
    }
    if force {
        Ok(())
    } else {
        Err(OutputError::RunExists {
            path: target.to_path_buf(),
        })
    }
}

/// A finished run directory, opened for reading.
#[derive(Debug, Clone)]
pub struct RunDirectory {
    pub path: PathBuf,
    pub summary: Summary,
}

impl RunDirectory {
    pub fn open(path: &Path) -> Result<Self, OutputError> {
        let summary_path = path.join(SUMMARY_FILE);
        if !path.is_dir() || !summary_path.is_file() {
            return Err(OutputError::Malformed {
                path: path.to_path_buf(),
                line: None,
                message: format!("not a run directory (no {SUMMARY_FILE})"),
            });
        }
        let text = fs::read_to_string(&summary_path).map_err(io_error(&summary_path))?;
        let summary: Summary = serde_json::from_str(&text).map_err(|e| OutputError::Malformed {
            path: summary_path.clone(),
            line: Some(e.line()),
            message: format!(
                "{e} (is this a run written by marketsim {}?)",
                env!("CARGO_PKG_VERSION")
            ),
        })?;
        if summary.format != RUN_FORMAT {
            return Err(OutputError::Malformed {
                path: summary_path,
                line: None,
                message: format!(
                    "run format `{}` is not supported by this version; expected `{RUN_FORMAT}`",
                    summary.format
                ),
            });
        }
        Ok(RunDirectory {
            path: path.to_path_buf(),
            summary,
        })
    }

    pub fn events_path(&self) -> Option<PathBuf> {
        let path = self.path.join(EVENTS_FILE);
        path.is_file().then_some(path)
    }

    pub fn series_path(&self) -> PathBuf {
        self.path.join(SERIES_FILE)
    }
}
