//! A headless run, start to finish: the session stepped to the end of the script, the
//! baseline's history on the other core, the sinks (events.jsonl), the analyst, and the run
//! directory written atomically.

use std::path::{Path, PathBuf};

use super::analyst_choice::{make_analyst, AnalystChoice};
use crate::output::analysis::{
    self as analysis_files, ANOMALIES_FILE, BASELINE_FILE, RECOMMENDATIONS_FILE,
};
use super::history::simulate_baseline;
use super::AppError;
use crate::analyst::{analyze_run, context_events, RunAnalysis};
use crate::engine::{Sink, VirtualTimeMs, MS_PER_HOUR};
use crate::market::StreamEvent;
use crate::output::events::EventsJsonlSink;
use crate::output::run_dir::{PendingRunDirectory, TIMELINE_FILE, TRUTH_FILE};
use crate::output::truth::{build_timeline, build_truth};
use crate::output::{to_pretty_json, Summary};
use crate::scenario::{RunPlan, Script};
use crate::session::Session;
use crate::stats::{Baseline, Scorer};

/// How to analyze a run.
#[derive(Debug, Clone)]
pub struct AnalysisOptions {
    pub analyst: AnalystChoice,
    /// Reuse this `baseline.json` instead of simulating the history.
    pub baseline_file: Option<PathBuf>,
}

/// What `marketsim run` was asked to do besides the script.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub analysis: Option<AnalysisOptions>,
    pub seed: Option<u64>,
    pub duration_ms: Option<u64>,
    pub write_events: bool,
    pub force: bool,
    pub measure_truth: bool,
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
    pub seconds: f64,
}

/// Runs `plan` headless through a session: advances it hour by hour to the end, calling
/// `progress` with the virtual time and the run's length, and feeds every event to `sink`.
pub fn run_session<S: Sink<StreamEvent>>(
    plan: &RunPlan,
    measure_truth: bool,
    sink: &mut S,
    progress: &mut dyn FnMut(VirtualTimeMs, VirtualTimeMs),
) -> Result<Session, AppError> {
    let mut session = Session::for_run(plan, measure_truth).map_err(AppError::Model)?;
    let mut horizon = 0;
    while horizon < plan.duration_ms {
        horizon = (horizon + MS_PER_HOUR).min(plan.duration_ms);
        session.advance_to(horizon, sink);
        progress(horizon, plan.duration_ms);
    }
    session.finish(sink);
    Ok(session)
}

/// `marketsim run`: loads the script (a path, or a bundled script's name), runs it and writes
/// the run directory.
pub fn run_to_directory(
    script_path: &Path,
    out: &Path,
    options: &RunOptions,
    progress: &mut dyn FnMut(VirtualTimeMs, VirtualTimeMs),
) -> Result<RunOutcome, AppError> {
    let script = Script::load(script_path)?;
    let plan = RunPlan::from_script(script, options.seed, options.duration_ms)?;
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
    // The baseline's history is simulated on the other core while the run goes on, except when
    // events.jsonl needs scores as it is written: then it comes first.
    let (session, baseline) = std::thread::scope(|scope| -> Result<_, AppError> {
        let history_first = needs_history && options.write_events;
        let mut baseline: Option<Baseline> = match loaded_baseline {
            Some(baseline) => Some(baseline),
            None if history_first => Some(simulate_baseline(&plan)?),
            None => None,
        };
        let history =
            (needs_history && !history_first).then(|| scope.spawn(|| simulate_baseline(&plan)));
        let session = if options.write_events {
            let writer = pending.events_writer()?;
            let mut events = EventsJsonlSink::new(writer, &plan.catalog, plan.epoch());
            if let Some(baseline) = &baseline {
                let scorer = Scorer::new(&plan.catalog, baseline, plan.epoch(), plan.bucket_ms());
                events = events.with_scores(scorer, plan.bucket_ms(), plan.bucket_count());
            }
            let session = run_session(&plan, options.measure_truth, &mut events, progress)?;
            events.finish().map_err(|source| AppError::Io {
                what: "writing events.jsonl".to_string(),
                source,
            })?;
            session
        } else {
            run_session(
                &plan,
                options.measure_truth,
                &mut crate::engine::NoSink,
                progress,
            )?
        };
        if let Some(history) = history {
            let simulated = history.join().map_err(|_| AppError::Panicked {
                what: "the history simulation".to_string(),
            })??;
            baseline = Some(simulated);
        }
        Ok((session, baseline))
    })?;
    let run_seconds = started.elapsed().as_secs_f64();
    let analysis_started = std::time::Instant::now();
    let mut notes = Vec::new();
    let analysis: Option<RunAnalysis> = match (&options.analysis, &baseline) {
        (Some(choice), Some(baseline)) => {
            let (mut analyst, note) = make_analyst(choice.analyst)?;
            notes.extend(note);
            let events = context_events(plan.epoch(), session.items(), session.records());
            let values = session
                .collector()
                .to_matrix(plan.epoch().unix_ms(), plan.bucket_count());
            Some(analyze_run(
                &plan.catalog,
                plan.epoch(),
                values,
                &events,
                baseline,
                analyst.as_mut(),
            ))
        }
        _ => None,
    };
    let analysis_seconds = analysis_started.elapsed().as_secs_f64();
    let summary = write_run_directory(
        pending,
        &plan,
        &session,
        options.write_events,
        analysis.as_ref().zip(baseline.as_ref()),
    )?;
    Ok(RunOutcome {
        path: out.to_path_buf(),
        run_seconds,
        analysis: analysis.as_ref().map(|analysis| AnalysisReport {
            episodes: analysis.anomalies.episodes.len(),
            recommendations: analysis.recommendations.recommendations.len(),
            analyst: analysis.recommendations.analyst.clone(),
            seconds: analysis_seconds,
        }),
        summary,
        notes,
    })
}

/// Writes what `session` did under `plan` into `pending` and moves it into place: summary,
/// series, truth and timeline, and the analysis files when there is an analysis.
pub fn write_run_directory(
    pending: PendingRunDirectory,
    plan: &RunPlan,
    session: &Session,
    events_file: bool,
    analysis: Option<(&RunAnalysis, &Baseline)>,
) -> Result<Summary, AppError> {
    let collector = session.collector();
    let summary = Summary::new(plan, collector, events_file);
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
    if let Some((analysis, baseline)) = analysis {
        extra.push((BASELINE_FILE, analysis_files::baseline_json(baseline)));
        extra.push((ANOMALIES_FILE, to_pretty_json(&analysis.anomalies)));
        extra.push((
            RECOMMENDATIONS_FILE,
            to_pretty_json(&analysis.recommendations),
        ));
    }
    pending.commit(
        plan,
        collector,
        &summary,
        analysis.map(|(analysis, _)| &analysis.scores),
        &extra,
    )?;
    Ok(summary)
}
