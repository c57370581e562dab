//! Re-analysis of a run directory from its files, and its evaluation against its
//! `truth.json` (with its own recommendations, or a fresh analyst's).

use std::path::Path;

use crate::analyst::context::ContextEvent;
use crate::analyst::eval::{
    call_figures, count_false_alarms, evaluate_run, RunEvaluation, TruthFile,
};
use crate::analyst::{recommend_over_run, Analyst, RecommendationsFile, ScoredRun};
use crate::engine::MS_PER_DAY;
use crate::market::catalog::{Catalog, EMBEDDED_CATALOG_NAME};
use crate::market::Epoch;
use crate::output::analysis::{BASELINE_FILE, RECOMMENDATIONS_FILE};
use crate::output::read_json_file as parse;
use crate::output::run_dir::{OutputError, RunDirectory, TIMELINE_FILE, TRUTH_FILE};
use crate::output::run_reader::RunSeries;
use crate::scenario::plan::load_catalog;
use crate::stats::{Baseline, BucketMatrix};

/// The catalog a run was made with, checked against the summary's hash.
fn run_catalog(run: &RunDirectory) -> Result<Catalog, OutputError> {
    let reference = &run.summary.catalog;
    let catalog = if reference.path == EMBEDDED_CATALOG_NAME {
        Catalog::embedded()
    } else {
        load_catalog(Path::new(&reference.path))
    }
    .map_err(|d| OutputError::Malformed {
        path: run.path.join("summary.json"),
        line: None,
        message: format!("cannot load the run's catalog: {d}"),
    })?;
    if catalog.sha256 != reference.sha256 {
        return Err(OutputError::Malformed {
            path: run.path.join("summary.json"),
            line: None,
            message: format!(
                "the catalog {} has changed since the run (sha256 differs)",
                reference.path
            ),
        });
    }
    Ok(catalog.scaled(run.summary.scale))
}

/// External events of a run directory, from `timeline.json`.
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimelineEvents {
    external_events: Vec<ContextEvent>,
}

/// Re-runs the analysis of a run directory from its files with `analyst`.
pub fn reanalyze(
    run: &RunDirectory,
    analyst: &mut dyn Analyst,
) -> Result<RecommendationsFile, OutputError> {
    let catalog = run_catalog(run)?;
    let baseline_path = run.path.join(BASELINE_FILE);
    if !baseline_path.is_file() {
        return Err(OutputError::Malformed {
            path: run.path.clone(),
            line: None,
            message: format!("no {BASELINE_FILE}: write the run with `marketsim run --analyze`"),
        });
    }
    let baseline: Baseline = parse(&baseline_path)?;
    let bucket_ms = run.summary.bucket_ms;
    baseline
        .check_compatible(&catalog, bucket_ms)
        .map_err(|message| OutputError::Malformed {
            path: baseline_path.clone(),
            line: None,
            message,
        })?;
    let epoch_time = chrono::DateTime::parse_from_rfc3339(&run.summary.epoch)
        .map_err(|e| OutputError::Malformed {
            path: run.path.join("summary.json"),
            line: None,
            message: format!("epoch `{}`: {e}", run.summary.epoch),
        })?
        .with_timezone(&chrono::Utc);
    let epoch = Epoch::from_datetime(epoch_time);
    // The series is checked complete and in the summary's stream order, which is the
    // catalog's (the catalog's hash was checked above).
    let series = RunSeries::load(run)?;
    let mut values = BucketMatrix::new(
        epoch.unix_ms(),
        bucket_ms,
        series.n_streams(),
        series.n_buckets(),
    );
    for bucket in 0..series.n_buckets() {
        for stream in 0..series.n_streams() {
            values.set(bucket, stream, series.row(bucket, stream).value);
        }
    }
    let timeline_path = run.path.join(TIMELINE_FILE);
    let mut events = parse::<TimelineEvents>(&timeline_path)?.external_events;
    for event in &mut events {
        let at = chrono::DateTime::parse_from_rfc3339(&event.timestamp)
            .map(|t| t.timestamp_millis())
            .map_err(|e| OutputError::Malformed {
                path: timeline_path.clone(),
                line: None,
                message: format!("event {} timestamp: {e}", event.id),
            })?;
        event.time_ms = (at - epoch.unix_ms()).max(0) as u64;
    }
    let scored = ScoredRun::new(&catalog, &baseline, epoch, values);
    Ok(recommend_over_run(
        &scored.view(epoch, &baseline, &events),
        analyst,
    ))
}

/// Evaluates a run directory: its own `recommendations.json`, or a fresh analysis by
/// `analyst`.
pub fn evaluate_directory(
    path: &Path,
    analyst: Option<&mut dyn Analyst>,
) -> Result<RunEvaluation, OutputError> {
    let run = RunDirectory::open(path)?;
    let truth_path = path.join(TRUTH_FILE);
    let truth: TruthFile = parse(&truth_path)?;
    let recommendations = match analyst {
        Some(analyst) => reanalyze(&run, analyst)?,
        None => {
            let recommendations_path = path.join(RECOMMENDATIONS_FILE);
            if !recommendations_path.is_file() {
                return Err(OutputError::Malformed {
                    path: path.to_path_buf(),
                    line: None,
                    message: format!(
                        "no {RECOMMENDATIONS_FILE}: write the run with `marketsim run --analyze`, or pass --analyst"
                    ),
                });
            }
            parse(&recommendations_path)?
        }
    };
    let mut evaluation = evaluate_run(
        &path.display().to_string(),
        &recommendations.analyst,
        &truth,
        &recommendations.recommendations,
    );
    evaluation.calls = call_figures(&recommendations.calls);
    let series = RunSeries::load(&run)?;
    if series.is_analyzed() {
        let rows = (0..series.n_buckets()).flat_map(|bucket| {
            let start_ms = series.bucket_starts[bucket].timestamp_millis();
            (0..series.n_streams()).filter_map({
                let series = &series;
                move |stream| {
                    let flag = series.row(bucket, stream).flag?;
                    Some((series.stream_names[stream].as_str(), start_ms, flag))
                }
            })
        });
        let days = run.summary.duration_ms as f64 / MS_PER_DAY as f64;
        evaluation.false_alarms = Some(count_false_alarms(
            &truth,
            rows,
            days,
            recommendations.recommendations.len(),
        ));
    }
    Ok(evaluation)
}
