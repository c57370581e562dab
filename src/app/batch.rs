//! `marketsim generate --runs N`: a labelled data set for detector testing — N random scripts
//! (the generator of `scenario::random`: scenarios, times, intensities, overlaps, red herrings,
//! seasons and seeds), each run to its own run directory with ground truth and `labels.csv`,
//! two runs at a time, and a `manifest.json` that lists them.
//!
//! Layout of the set's folder:
//! - `scripts/random-SEED-INDEX.yaml`: the scripts, as `generate --count` writes them;
//! - `runs/random-SEED-INDEX/`: each run directory (with `--parquet`, its data sets as Parquet
//!   too);
//! - `manifest.json`: the set (seed, options) and per run its script (path, sha256), the run's
//!   seed, epoch, warm-up end and length, and its items (id, kind, ref, origin, red herring,
//!   start, truth end, streams it materially moved).
//!
//! The folder is written in place, run by run (a set of 20 runs takes minutes; a failure leaves
//! the runs done so far); each run directory is itself written atomically, and the manifest
//! last, so a set with a manifest is complete.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::run::{run_to_directory, RunOptions};
use super::AppError;
use crate::output::run_dir::TRUTH_FILE;
use crate::output::{read_json_file, to_pretty_json, Summary};
use crate::scenario::random::{random_script_file_name, RandomScriptOptions, RandomScripts};

pub const MANIFEST_FILE: &str = "manifest.json";

/// What a batch is asked for.
#[derive(Debug, Clone)]
pub struct BatchOptions {
    pub seed: u64,
    pub runs: u32,
    pub scripts: RandomScriptOptions,
    /// Options of every run (truth is always measured: labels are the point).
    pub run: RunOptions,
    /// Worker threads (runs at once).
    pub workers: usize,
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub format: String,
    pub seed: u64,
    pub warmup_days: u64,
    pub truth_horizon_ms: u64,
    pub max_days: u32,
    /// The one library scenario every script draws (`--scenario`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    pub runs: Vec<ManifestRun>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManifestRun {
    pub index: u32,
    /// The script, relative to the set's folder.
    pub script: String,
    pub script_sha256: String,
    /// The run directory, relative to the set's folder.
    pub run: String,
    /// The run's own seed (drawn by the generator).
    pub seed: u64,
    pub epoch: String,
    pub warmup_end: String,
    pub duration_ms: u64,
    pub items: Vec<ManifestItem>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ManifestItem {
    pub id: String,
    pub kind: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub origin: String,
    pub red_herring: bool,
    pub start: String,
    pub truth_end: String,
    /// Streams the item moved beyond chance (`material` in truth.json).
    pub material_streams: Vec<String>,
}

/// The parts of truth.json the manifest repeats.
#[derive(Deserialize)]
struct TruthForManifest {
    items: Vec<TruthItemForManifest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TruthItemForManifest {
    id: String,
    kind: String,
    #[serde(rename = "ref")]
    reference: String,
    origin: String,
    red_herring: bool,
    start: String,
    truth_end: String,
    measured: Vec<MeasuredForManifest>,
}

#[derive(Deserialize)]
struct MeasuredForManifest {
    stream: String,
    material: bool,
}

/// Writes the set into `out` (which must be empty or missing unless `force`), calling
/// `progress` with (runs done, runs) as runs finish.
pub fn generate_runs(
    out: &Path,
    options: &BatchOptions,
    force: bool,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Result<Manifest, AppError> {
    // Before any script is written: a binary without Parquet cannot do what the set asks.
    if options.run.write_parquet {
        crate::output::require_parquet()?;
    }
    refuse_folder_with_files(out, force)?;
    let scripts_folder = out.join("scripts");
    let runs_folder = out.join("runs");
    for folder in [&scripts_folder, &runs_folder] {
        std::fs::create_dir_all(folder).map_err(|source| AppError::Io {
            what: format!("creating {}", folder.display()),
            source,
        })?;
    }
    let generator = RandomScripts::embedded()?;
    // Every script is written first: a bad one fails before hours of runs.
    let mut scripts = Vec::new();
    for index in 0..options.runs {
        let text = generator.generate(options.seed, index, options.scripts)?;
        let name = random_script_file_name(options.seed, index);
        let path = scripts_folder.join(&name);
        std::fs::write(&path, text).map_err(|source| AppError::Io {
            what: format!("writing {}", path.display()),
            source,
        })?;
        scripts.push((index, path));
    }
    let next = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    let results: Mutex<Vec<Result<ManifestRun, AppError>>> = Mutex::new(Vec::new());
    let run_options = RunOptions {
        measure_truth: true,
        force: true,
        ..options.run.clone()
    };
    std::thread::scope(|scope| {
        for _ in 0..options.workers.max(1) {
            scope.spawn(|| loop {
                let position = next.fetch_add(1, Ordering::Relaxed);
                let Some((index, script)) = scripts.get(position) else {
                    break;
                };
                let stem = script
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let run_dir = runs_folder.join(&stem);
                let outcome = run_to_directory(script, &run_dir, &run_options, &mut |_, _| {})
                    .and_then(|_| manifest_run(out, *index, script, &run_dir));
                let failed = outcome.is_err();
                if let Ok(mut results) = results.lock() {
                    results.push(outcome);
                }
                progress(done.fetch_add(1, Ordering::Relaxed) + 1, scripts.len());
                if failed {
                    // The other worker finishes its run; no new ones start.
                    next.store(scripts.len(), Ordering::Relaxed);
                    break;
                }
            });
        }
    });
    let results = results.into_inner().map_err(|_| AppError::Panicked {
        what: "a batch worker".to_string(),
    })?;
    let mut runs = results.into_iter().collect::<Result<Vec<_>, _>>()?;
    if runs.len() != scripts.len() {
        return Err(AppError::Panicked {
            what: "a batch worker".to_string(),
        });
    }
    runs.sort_by_key(|run| run.index);
    let manifest = Manifest {
        format: "marketsim-batch/1".to_string(),
        seed: options.seed,
        warmup_days: options.run.warmup_days.unwrap_or(0),
        truth_horizon_ms: options.run.truth_horizon_ms,
        max_days: options.scripts.max_days,
        scenario: options
            .scripts
            .only_scenario
            .and_then(|index| generator.scenario_id(index))
            .map(str::to_string),
        runs,
    };
    let path = out.join(MANIFEST_FILE);
    std::fs::write(&path, to_pretty_json(&manifest)).map_err(|source| AppError::Io {
        what: format!("writing {}", path.display()),
        source,
    })?;
    Ok(manifest)
}

/// Refuses to write into `out` when it already holds files, unless `force`: a folder with files
/// may hold someone's work, or an earlier set someone means to keep. A missing folder is fine.
pub fn refuse_folder_with_files(out: &Path, force: bool) -> Result<(), AppError> {
    let holds_files = match std::fs::read_dir(out) {
        Ok(mut entries) => entries.next().is_some(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
        Err(source) => {
            return Err(AppError::Io {
                what: format!("reading {}", out.display()),
                source,
            })
        }
    };
    if holds_files && !force {
        return Err(AppError::FolderNotEmpty {
            path: out.to_path_buf(),
        });
    }
    Ok(())
}

/// A path inside the set's folder, relative to it, with forward slashes.
fn relative(out: &Path, path: &Path) -> String {
    path.strip_prefix(out)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/")
}

/// The manifest's entry of a finished run, read back from its summary and truth.
fn manifest_run(
    out: &Path,
    index: u32,
    script: &Path,
    run_dir: &Path,
) -> Result<ManifestRun, AppError> {
    let summary: Summary = read_json_file(&run_dir.join(crate::output::run_dir::SUMMARY_FILE))?;
    let truth: TruthForManifest = read_json_file(&run_dir.join(TRUTH_FILE))?;
    Ok(ManifestRun {
        index,
        script: relative(out, script),
        script_sha256: summary.script.sha256.clone(),
        run: relative(out, run_dir),
        seed: summary.seed,
        epoch: summary.epoch.clone(),
        warmup_end: summary.warmup_end.clone(),
        duration_ms: summary.duration_ms,
        items: truth
            .items
            .into_iter()
            .map(|item| ManifestItem {
                id: item.id,
                kind: item.kind,
                reference: item.reference,
                origin: item.origin,
                red_herring: item.red_herring,
                start: item.start,
                truth_end: item.truth_end,
                material_streams: item
                    .measured
                    .into_iter()
                    .filter(|m| m.material)
                    .map(|m| m.stream)
                    .collect(),
            })
            .collect(),
    })
}
