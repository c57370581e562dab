//! A headless run, start to finish: the session stepped to the end of the script, the
//! baseline's history on the other core, the sinks (events.jsonl, and events.parquet beside it
//! with `--parquet`), the analyst, and the run directory written atomically.

use std::path::{Path, PathBuf};

use super::analyst_choice::{make_analyst, AnalystChoice};
use super::history::simulate_baseline;
use super::AppError;
use crate::output::analysis::{
    self as analysis_files, ANALYST_REPLIES_FILE, ANOMALIES_FILE, BASELINE_FILE,
    RECOMMENDATIONS_FILE,
};
use std::sync::Arc;

use crate::analyst::{anomalies_file, AnomaliesFile};
use crate::engine::{NoSink, Sink, VirtualTimeMs, MS_PER_HOUR};
use crate::market::StreamEvent;
use crate::output::events::EventsJsonlSink;
use crate::output::labels::{label_records, labels_csv, LABELS_FILE};
use crate::output::run_dir::{PendingRunDirectory, TIMELINE_FILE, TRUTH_FILE};
use crate::output::truth::{build_timeline, build_truth};
use crate::output::{to_pretty_json, Summary};
use crate::scenario::{RunPlan, Script};
use crate::session::analysis::{AnalystRunner, SessionAnalysis};
use crate::session::Session;
use crate::stats::Baseline;

/// How to analyze a run.
#[derive(Debug, Clone)]
pub struct AnalysisOptions {
    pub analyst: AnalystChoice,
    /// Reuse this `baseline.json` instead of simulating the history.
    pub baseline_file: Option<PathBuf>,
    /// Answer from these recorded analyst replies (`analyst-replies.json`) instead of asking
    /// the analyst: a replay of a session makes its recommendations without the model.
    pub replies_file: Option<PathBuf>,
}

/// What `marketsim run` was asked to do besides the script.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub analysis: Option<AnalysisOptions>,
    pub seed: Option<u64>,
    /// The marketplace's size factor (`--scale`); `None`: the script's `scale:`.
    pub scale: Option<u32>,
    pub duration_ms: Option<u64>,
    pub write_events: bool,
    /// Also write the data sets as Parquet (`--parquet`): series, labels, and events when
    /// `write_events`.
    pub write_parquet: bool,
    pub force: bool,
    pub measure_truth: bool,
    /// How far past an item's window the twins follow its effect (`--truth-horizon`).
    pub truth_horizon_ms: u64,
    /// Days simulated before the script's start (`--warmup`); `None`: the script's `warmup:`.
    pub warmup_days: Option<u64>,
}

impl RunOptions {
    /// Options of a plain run: ground truth measured with the default horizon, no warm-up.
    pub fn with_truth() -> RunOptions {
        RunOptions {
            measure_truth: true,
            truth_horizon_ms: crate::scenario::plan::DEFAULT_TRUTH_HORIZON_MS,
            ..RunOptions::default()
        }
    }
}

/// What a finished run reports.
pub struct RunOutcome {
    pub path: PathBuf,
    pub summary: Summary,
    pub run_seconds: f64,
    pub analysis: Option<AnalysisReport>,
    /// Notes for the user (an analyst that fell back, for instance).
    pub notes: Vec<String>,
}

/// The analysis part of a run's report.
pub struct AnalysisReport {
    pub episodes: usize,
    pub recommendations: usize,
    pub analyst: String,
}

/// Runs `plan` headless through a session: advances it hour by hour to the end, calling
/// `progress` with the virtual time and the run's length, and feeds every event to `sink`.
pub fn run_session<S: Sink<StreamEvent>>(
    plan: &RunPlan,
    measure_truth: bool,
    sink: &mut S,
    progress: &mut dyn FnMut(VirtualTimeMs, VirtualTimeMs),
) -> Result<Session, AppError> {
    let session = Session::for_run(plan, measure_truth).map_err(AppError::Model)?;
    step_to_end(session, plan.duration_ms, sink, &mut |_, _| {}, progress)
}

/// Steps `session` to `end` an hour at a time and finishes it; `after_step` sees the session
/// and the sink after each step (to write events whose buckets were scored).
fn step_to_end<S: Sink<StreamEvent>>(
    mut session: Session,
    end: VirtualTimeMs,
    sink: &mut S,
    after_step: &mut dyn FnMut(&Session, &mut S),
    progress: &mut dyn FnMut(VirtualTimeMs, VirtualTimeMs),
) -> Result<Session, AppError> {
    let mut horizon = session.now();
    while horizon < end {
        horizon = (horizon + MS_PER_HOUR).min(end);
        session.advance_to(horizon, sink);
        after_step(&session, sink);
        progress(horizon, end);
    }
    session.finish(sink);
    after_step(&session, sink);
    Ok(session)
}

/// The analysis a run asks for, attached to `session` once the baseline is known.
fn analysis_for(
    plan: &RunPlan,
    baseline: Arc<Baseline>,
    options: &AnalysisOptions,
    notes: &mut Vec<String>,
) -> Result<SessionAnalysis, AppError> {
    let runner = match &options.replies_file {
        Some(path) => AnalystRunner::Replay(crate::output::read_json_file(path)?),
        None => {
            let (analyst, note) = make_analyst(options.analyst)?;
            notes.extend(note);
            AnalystRunner::InPlace(analyst)
        }
    };
    Ok(SessionAnalysis::new(
        &plan.catalog,
        baseline,
        plan.epoch(),
        plan.bucket_ms(),
        runner,
    ))
}

/// `marketsim run`: loads the script (a path, or a bundled script's name), runs it and writes
/// the run directory.
pub fn run_to_directory(
    script_path: &Path,
    out: &Path,
    options: &RunOptions,
    progress: &mut dyn FnMut(VirtualTimeMs, VirtualTimeMs),
) -> Result<RunOutcome, AppError> {
    if options.write_parquet {
        crate::output::require_parquet()?;
    }
    let mut script = Script::open(script_path)?;
    if let Some(scale) = options.scale {
        script.scale = scale;
    }
    let plan = RunPlan::from_script(script, options.seed, options.duration_ms)?
        .with_warmup(options.warmup_days)?
        .with_truth_horizon(options.truth_horizon_ms);
    // Refuse a bad output directory before spending time on the run.
    let pending = PendingRunDirectory::create(out, options.force)?;
    let loaded_baseline = match options
        .analysis
        .as_ref()
        .and_then(|a| a.baseline_file.as_deref())
    {
        Some(path) => Some(analysis_files::load_baseline(path, &plan)?),
        None => None,
    };
    let needs_history = options.analysis.is_some() && loaded_baseline.is_none();
    let started = std::time::Instant::now();
    let mut notes = Vec::new();
    let mut session = Session::for_run(&plan, options.measure_truth).map_err(AppError::Model)?;
    // The baseline's history is simulated on the other core while the run goes on, except when
    // events.jsonl needs scores as it is written: then it comes first.
    let session = std::thread::scope(|scope| -> Result<_, AppError> {
        let history_first = needs_history && options.write_events;
        let baseline: Option<Baseline> = match loaded_baseline {
            Some(baseline) => Some(baseline),
            None if history_first => Some(simulate_baseline(&plan)?),
            None => None,
        };
        let history =
            (needs_history && !history_first).then(|| scope.spawn(|| simulate_baseline(&plan)));
        if let (Some(baseline), Some(analysis)) = (baseline, &options.analysis) {
            let analysis = analysis_for(&plan, Arc::new(baseline), analysis, &mut notes)?;
            session.attach_analysis(analysis);
        }
        let mut session = if options.write_events {
            let writer = pending.events_writer()?;
            let scored = session.analysis().is_some();
            let mut table = match options.write_parquet {
                true => Some(pending.events_table(&plan.catalog, plan.epoch(), scored)?),
                false => None,
            };
            let mut events = EventsJsonlSink::new(writer, &plan.catalog, plan.epoch());
            if scored {
                events = events.with_scores(plan.bucket_ms());
            }
            if let Some(table) = &mut table {
                events = events.with_table(table.as_mut());
            }
            let mut write_scored = |session: &Session, events: &mut EventsJsonlSink<_>| {
                if let Some(analysis) = session.analysis() {
                    events.write_closed(session.closed_buckets(), analysis.scores());
                }
            };
            let session = step_to_end(
                session,
                plan.duration_ms,
                &mut events,
                &mut write_scored,
                progress,
            )?;
            events
                .finish(session.analysis().map(|a| a.scores()))
                .map_err(|source| AppError::Io {
                    what: format!("writing events.jsonl for {}", out.display()),
                    source,
                })?;
            if let Some(table) = table {
                table.finish()?;
            }
            session
        } else {
            step_to_end(
                session,
                plan.duration_ms,
                &mut NoSink,
                &mut |_, _| {},
                progress,
            )?
        };
        if let Some(history) = history {
            let simulated = history.join().map_err(|_| AppError::Panicked {
                what: "the history simulation".to_string(),
            })??;
            if let Some(analysis) = &options.analysis {
                let analysis = analysis_for(&plan, Arc::new(simulated), analysis, &mut notes)?;
                session.attach_analysis(analysis);
            }
        }
        Ok(session)
    })?;
    let run_seconds = started.elapsed().as_secs_f64();
    let files = RunFiles {
        events: options.write_events,
        parquet: options.write_parquet,
    };
    let summary = write_run_directory(pending, &plan, &session, files)?;
    Ok(RunOutcome {
        path: out.to_path_buf(),
        run_seconds,
        analysis: session.analysis().map(|analysis| AnalysisReport {
            episodes: anomalies_of(&plan, analysis).episodes.len(),
            recommendations: analysis.recommendations().len(),
            analyst: analysis.recommendations_file().analyst,
        }),
        summary,
        notes,
    })
}

/// `anomalies.json` of an analyzed session.
fn anomalies_of(plan: &RunPlan, analysis: &SessionAnalysis) -> AnomaliesFile {
    anomalies_file(
        analysis.scored_run(),
        plan.epoch(),
        analysis.events(),
        analysis.baseline(),
    )
}

/// What a run directory holds besides the files every run has.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunFiles {
    /// `events.jsonl` was written (by the caller's sink, as the session ran).
    pub events: bool,
    /// Write `series.parquet` and `labels.parquet` (`events.parquet` is the caller's, beside
    /// `events.jsonl`).
    pub parquet: bool,
}

/// Writes what `session` did under `plan` into `pending` and moves it into place: summary,
/// series, truth and timeline, labels when the session measured truth, the analysis files
/// when it was analyzed, and the Parquet tables when asked.
pub fn write_run_directory(
    pending: PendingRunDirectory,
    plan: &RunPlan,
    session: &Session,
    files: RunFiles,
) -> Result<Summary, AppError> {
    let collector = session.collector();
    let summary = Summary::new(plan, collector, files.events);
    let truth = build_truth(
        plan,
        session.items(),
        collector,
        session.twins(),
        session.records(),
    );
    let timeline = build_timeline(plan, session.items(), session.records());
    let mut extra = vec![
        (TRUTH_FILE, to_pretty_json(&truth)),
        (TIMELINE_FILE, to_pretty_json(&timeline)),
    ];
    let labels = session
        .measures_truth()
        .then(|| label_records(plan, session.items(), collector, session.twins()));
    if let Some(labels) = &labels {
        extra.push((LABELS_FILE, labels_csv(labels)));
    }
    if files.parquet {
        pending.add_parquet_tables(
            plan,
            collector,
            session.analysis().map(|analysis| analysis.scores()),
            labels.as_deref(),
        )?;
    }
    if let Some(analysis) = session.analysis() {
        let recommendations = analysis.recommendations_file();
        extra.push((
            BASELINE_FILE,
            analysis_files::baseline_json(analysis.baseline()),
        ));
        extra.push((
            ANOMALIES_FILE,
            to_pretty_json(&anomalies_of(plan, analysis)),
        ));
        if recommendations.analyst != "rules" {
            extra.push((
                ANALYST_REPLIES_FILE,
                to_pretty_json(&analysis.replies_file()),
            ));
        }
        extra.push((RECOMMENDATIONS_FILE, to_pretty_json(&recommendations)));
    }
    pending.commit(
        plan,
        collector,
        &summary,
        session.analysis().map(|analysis| analysis.scores()),
        &extra,
    )?;
    Ok(summary)
}
