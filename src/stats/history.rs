//! The history a baseline is fitted on: the weeks before a run's epoch, simulated with the same
//! catalog and library, ordinary background events and no scripted scenarios, in a neutral
//! season (no academic calendar, no growth; the scorer applies both to its expectations).
//!
//! Simulating the history instead of reading a stored one keeps a run self-contained: the same
//! script and seed always give the same baseline, and no file has to travel with the script.

use std::sync::Arc;

use super::baseline::{Baseline, BaselineSource, BucketMatrix};
use crate::diagnostics::Diagnostic;
use crate::engine::{Simulation, UnpacedClock, MS_PER_DAY};
use crate::market::{Epoch, Marketplace};
use crate::output::RunCollector;
use crate::run::RunPlan;
use crate::scenario::timeline::TimelineInput;
use crate::scenario::ScenarioPlan;

/// Weeks of history a baseline is fitted on: four samples of every slot of the week.
pub const HISTORY_WEEKS: u64 = 4;
/// Mixed into the run's seed so the history is not a copy of the run's first weeks.
const HISTORY_SEED_SALT: u64 = 0x6869_7374_6f72_7921;

/// Simulates the history before `plan`'s epoch and fits the baseline on it.
pub fn simulate_baseline(plan: &RunPlan) -> Result<Baseline, Diagnostic> {
    let history_ms = HISTORY_WEEKS * 7 * MS_PER_DAY;
    let mut script = plan.script.clone();
    script.start -= chrono::Duration::milliseconds(history_ms as i64);
    script.duration_ms = history_ms;
    script.timeline.clear();
    script.scenarios.clear();
    script.now = None;
    let seed = plan.seed ^ HISTORY_SEED_SALT;
    let scenarios = ScenarioPlan::build(
        &TimelineInput {
            script: &script,
            duration_ms: history_ms,
            seed,
        },
        &plan.catalog,
        &plan.library,
    )?;
    let epoch = Epoch::from_datetime(script.start);
    let model = Marketplace::new(Arc::clone(&plan.catalog), seed, epoch)
        .map_err(|m| Diagnostic::new(std::path::Path::new(&plan.catalog_name), m))?
        .with_plan(scenarios.control)
        .with_neutral_season();
    let mut simulation = Simulation::new(model);
    let bucket_ms = plan.script.bucket_ms;
    let n_buckets = history_ms.div_ceil(bucket_ms) as usize;
    let mut collector = RunCollector::new(&plan.catalog, bucket_ms, n_buckets);
    simulation.run_until(history_ms - 1, &mut UnpacedClock, &mut collector);
    let matrix = BucketMatrix::from_collector(&collector, epoch.unix_ms(), bucket_ms);
    let source = BaselineSource {
        kind: "simulated-history".to_string(),
        start: epoch.format(0),
        end: epoch.format(history_ms),
        seed,
        weeks: HISTORY_WEEKS,
        excluded: Vec::new(),
    };
    Ok(Baseline::fit(&plan.catalog, &matrix, &[], source))
}
