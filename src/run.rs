//! One headless run: a script and a catalog in, stream events out to a sink.
//!
//! This is the pure core of `marketsim run`: it builds the model, advances the engine with the
//! unpaced clock and reports progress by virtual time. Writing files is the caller's business.

use std::path::Path;
use std::sync::Arc;

use crate::diagnostics::Diagnostic;
use crate::engine::{Simulation, Sink, UnpacedClock, VirtualTimeMs, MS_PER_HOUR};
use crate::market::catalog::{Catalog, EMBEDDED_CATALOG_NAME};
use crate::market::{Epoch, Marketplace, StreamEvent};
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
        Ok(RunPlan {
            seed: seed_override.unwrap_or(script.seed),
            duration_ms: duration_override_ms.unwrap_or(script.duration_ms),
            catalog: Arc::new(catalog),
            catalog_name,
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
        .map_err(|m| Diagnostic::new(Path::new(&plan.catalog_name), m))?;
    Ok(Simulation::new(model))
}

/// Runs the plan headless, as fast as possible, feeding every stream event to `sink`.
/// `progress` is called with the virtual time after each simulated hour.
pub fn run_headless<S: Sink<StreamEvent>>(
    plan: &RunPlan,
    sink: &mut S,
    progress: &mut dyn FnMut(VirtualTimeMs),
) -> Result<EngineStats, Diagnostic> {
    let mut simulation = build_simulation(plan)?;
    let mut clock = UnpacedClock;
    let mut horizon = 0;
    while horizon < plan.duration_ms {
        horizon = (horizon + MS_PER_HOUR).min(plan.duration_ms);
        // Events due exactly at the end belong to the next run window, so stop just before it.
        simulation.run_until(horizon - 1, &mut clock, sink);
        progress(horizon);
    }
    Ok(EngineStats {
        handled: simulation.handled_count(),
        pending: simulation.pending_count(),
    })
}
