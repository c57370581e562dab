//! One headless run: a script and a catalog in, stream events out to a sink.
//!
//! This is the pure core of `marketsim run`: it builds the model, advances the engine with the
//! unpaced clock and reports progress by virtual time. Writing files is the caller's business.

use std::path::Path;
use std::sync::Arc;

use crate::diagnostics::Diagnostic;
use crate::engine::{Simulation, Sink, UnpacedClock, VirtualTimeMs, MS_PER_HOUR};
use crate::market::catalog::{Catalog, EMBEDDED_CATALOG_NAME};
use crate::market::director::TimelineRecord;
use crate::market::{Epoch, Marketplace, StreamEvent};
use crate::output::truth::TwinMeasurement;
use crate::output::RunCollector;
use crate::scenario::timeline::TimelineInput;
use crate::scenario::{Library, ScenarioPlan};
use crate::script::{CatalogSource, Script};

/// Everything a run needs, resolved and validated.
#[derive(Debug, Clone)]
pub struct RunPlan {
    pub script: Script,
    pub catalog: Arc<Catalog>,
    /// Where the catalog came from, as written into the summary.
    pub catalog_name: String,
    pub seed: u64,
    pub duration_ms: u64,
    pub library: Arc<Library>,
    /// The resolved timeline: scenarios, injected and background events.
    pub scenarios: ScenarioPlan,
}

impl RunPlan {
    /// Loads the script's catalog and applies command-line overrides.
    pub fn from_script(
        script: Script,
        seed_override: Option<u64>,
        duration_override_ms: Option<u64>,
    ) -> Result<RunPlan, Diagnostic> {
        let (catalog, catalog_name) = match &script.catalog {
            CatalogSource::Embedded => (Catalog::embedded()?, EMBEDDED_CATALOG_NAME.to_string()),
            CatalogSource::File(path) => (load_catalog(path)?, path.display().to_string()),
        };
        if let Some(duration) = duration_override_ms {
            crate::script::check_duration(duration)
                .map_err(|m| Diagnostic::new(&script.path, m))?;
        }
        let seed = seed_override.unwrap_or(script.seed);
        let duration_ms = duration_override_ms.unwrap_or(script.duration_ms);
        let library = Library::load(script.library_folder().as_deref(), &catalog)?;
        let scenarios = ScenarioPlan::build(
            &TimelineInput {
                script: &script,
                duration_ms,
                seed,
            },
            &catalog,
            &library,
        )?;
        Ok(RunPlan {
            seed,
            duration_ms,
            catalog: Arc::new(catalog),
            catalog_name,
            library: Arc::new(library),
            scenarios,
            script,
        })
    }

    pub fn epoch(&self) -> Epoch {
        Epoch::from_datetime(self.script.start)
    }

    /// Number of buckets that cover the run (the last may be partial).
    pub fn bucket_count(&self) -> usize {
        self.duration_ms.div_ceil(self.script.bucket_ms) as usize
    }
}

/// Reads and validates a catalog file.
pub fn load_catalog(path: &Path) -> Result<Catalog, Diagnostic> {
    let source = std::fs::read_to_string(path)
        .map_err(|e| Diagnostic::new(path, format!("cannot read catalog: {e}")))?;
    Catalog::parse(path, &source)
}

/// Counts of what the engine did during a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineStats {
    /// Queue events handled (arrivals, timers, emissions).
    pub handled: u64,
    /// Events still scheduled after the end (flows under way when the run stopped).
    pub pending: usize,
}

/// Builds the model for a plan.
pub fn build_simulation(plan: &RunPlan) -> Result<Simulation<Marketplace>, Diagnostic> {
    let model = Marketplace::new(Arc::clone(&plan.catalog), plan.seed, plan.epoch())
        .map_err(|m| Diagnostic::new(Path::new(&plan.catalog_name), m))?
        .with_plan(plan.scenarios.control.clone());
    Ok(Simulation::new(model))
}

/// Runs the plan headless, as fast as possible, feeding every stream event to `sink`.
/// `progress` is called with the virtual time after each simulated hour.
pub fn run_headless<S: Sink<StreamEvent>>(
    plan: &RunPlan,
    sink: &mut S,
    progress: &mut dyn FnMut(VirtualTimeMs),
) -> Result<EngineStats, Diagnostic> {
    Ok(run_measured(plan, sink, progress, false)?.stats)
}

/// What a run produced besides its stream events.
pub struct RunResult {
    pub stats: EngineStats,
    /// What happened to the timeline (events injected, lifecycle transitions).
    pub records: Vec<TimelineRecord>,
    /// One counterfactual twin per plan item, when truth was measured.
    pub twins: Vec<TwinMeasurement>,
}

/// Runs the plan headless; with `measure_truth`, forks a counterfactual twin before each
/// scenario and external event (suppressing it) and runs the twin over the item's window.
pub fn run_measured<S: Sink<StreamEvent>>(
    plan: &RunPlan,
    sink: &mut S,
    progress: &mut dyn FnMut(VirtualTimeMs),
    measure_truth: bool,
) -> Result<RunResult, Diagnostic> {
    let mut simulation = build_simulation(plan)?;
    let mut clock = UnpacedClock;
    let bucket_ms = plan.script.bucket_ms;
    // Fork points: the bucket boundary at or before each item's start.
    let mut forks: Vec<(VirtualTimeMs, usize)> = if measure_truth {
        plan.scenarios
            .items
            .iter()
            .enumerate()
            .map(|(index, item)| ((item.start_ms / bucket_ms) * bucket_ms, index))
            .collect()
    } else {
        Vec::new()
    };
    forks.sort();
    let mut next_fork = 0;
    let mut twins = Vec::new();
    let mut horizon = 0;
    while horizon < plan.duration_ms {
        horizon = (horizon + MS_PER_HOUR).min(plan.duration_ms);
        while next_fork < forks.len() && forks[next_fork].0 < horizon {
            let (fork_time, item) = forks[next_fork];
            next_fork += 1;
            if fork_time > 0 {
                simulation.run_until(fork_time - 1, &mut clock, sink);
            }
            twins.push(run_twin(plan, &simulation, fork_time, item));
        }
        // Events due exactly at the end belong to the next run window, so stop just before it.
        simulation.run_until(horizon - 1, &mut clock, sink);
        progress(horizon);
    }
    Ok(RunResult {
        stats: EngineStats {
            handled: simulation.handled_count(),
            pending: simulation.pending_count(),
        },
        records: simulation.model().timeline_records().to_vec(),
        twins,
    })
}

/// Runs a fork of `simulation` with plan item `item` suppressed, over the item's window.
fn run_twin(
    plan: &RunPlan,
    simulation: &Simulation<Marketplace>,
    fork_time: VirtualTimeMs,
    item: usize,
) -> TwinMeasurement {
    let bucket_ms = plan.script.bucket_ms;
    let mut twin = simulation.clone();
    twin.model_mut().suppress(item);
    let window_end = plan.scenarios.items[item].window_end_ms.max(fork_time + 1);
    let end_bucket = (window_end.div_ceil(bucket_ms) as usize).min(plan.bucket_count());
    let mut collector = RunCollector::new(&plan.catalog, bucket_ms, plan.bucket_count());
    let end_time = (end_bucket as u64 * bucket_ms).min(plan.duration_ms);
    if end_time > fork_time {
        twin.run_until(end_time - 1, &mut UnpacedClock, &mut collector);
    }
    TwinMeasurement {
        item,
        first_bucket: (fork_time / bucket_ms) as usize,
        end_bucket,
        twin: collector,
    }
}
