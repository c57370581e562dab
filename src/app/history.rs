//! The history a baseline is fitted on: the weeks before a run's epoch, simulated by a session
//! with the same catalog and library, ordinary background events and no scripted scenarios, in a
//! neutral season (no academic calendar, no growth; the scorer applies both to its
//! expectations).
//!
//! Simulating the history instead of reading a stored one keeps a run self-contained: the same
//! script and seed always give the same baseline, and no file has to travel with the script.

use std::sync::Arc;

use crate::diagnostics::Diagnostic;
use crate::engine::MS_PER_DAY;
use crate::market::Epoch;
use crate::scenario::RunPlan;
use crate::session::{Session, SessionSetup};
use crate::stats::baseline::{Baseline, BaselineSource};

/// Weeks of history a baseline is fitted on: four samples of every slot of the week.
pub const HISTORY_WEEKS: u64 = 4;
/// Mixed into the run's seed so the history is not a copy of the run's first weeks.
const HISTORY_SEED_SALT: u64 = 0x6869_7374_6f72_7921;

/// Simulates the history before `plan`'s epoch and fits the baseline on it.
pub fn simulate_baseline(plan: &RunPlan) -> Result<Baseline, Diagnostic> {
    let history_ms = HISTORY_WEEKS * 7 * MS_PER_DAY;
    let start = plan.script.start - chrono::Duration::milliseconds(history_ms as i64);
    let seed = plan.seed ^ HISTORY_SEED_SALT;
    let bucket_ms = plan.script.bucket_ms;
    let n_buckets = history_ms.div_ceil(bucket_ms) as usize;
    let setup = SessionSetup {
        catalog: Arc::clone(&plan.catalog),
        library: Arc::clone(&plan.library),
        seed,
        start,
        bucket_ms,
        one_at_a_time: false,
        background_events: plan.script.background_events,
        neutral_season: true,
        truth_until_ms: None,
        truth_horizon_ms: 0,
        expected_buckets: n_buckets,
        inline_scenarios: Vec::new(),
        catalog_file: None,
        library_folder: None,
    };
    let mut session = Session::new(setup)
        .map_err(|m| Diagnostic::new(std::path::Path::new(&plan.catalog_name), m))?;
    session.advance_to(history_ms, &mut crate::engine::NoSink);
    let epoch = Epoch::from_datetime(start);
    let matrix = session.collector().to_matrix(epoch.unix_ms(), n_buckets);
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
