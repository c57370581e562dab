//! [`RunPlan`]: a script with its catalog and libraries loaded, command-line overrides applied
//! and its timeline resolved: everything a session needs before it starts. Pure: reads only the
//! catalog and library files the script names.

use std::path::Path;
use std::sync::Arc;

use super::definition::Library;
use super::script::{check_duration, CatalogSource, Script, MAX_WARMUP_DAYS};
use super::timeline::{ScriptTimeline, TimelineInput};
use crate::diagnostics::Diagnostic;
use crate::engine::{MS_PER_DAY, MS_PER_HOUR};
use crate::market::catalog::{Catalog, EMBEDDED_CATALOG_NAME};
use crate::market::Epoch;

/// Everything a run needs, resolved and validated. Catalog and library are shared (`Arc`), so a
/// long-lived session, its twins and the baseline's history hold them without copies.
#[derive(Debug, Clone)]
pub struct RunPlan {
    pub script: Script,
    pub catalog: Arc<Catalog>,
    /// Where the catalog came from, as written into the summary.
    pub catalog_name: String,
    pub seed: u64,
    pub duration_ms: u64,
    pub library: Arc<Library>,
    /// The script's timeline, resolved into commands.
    pub timeline: ScriptTimeline,
    /// Days simulated before the script's start (`--warmup`), so the marketplace is full when
    /// the script's time begins and detectors have clean history: the run starts this much
    /// earlier and every timeline entry keeps its own instant. 0 without a warm-up.
    pub warmup_ms: u64,
    /// How far past an item's window its twins may run to find where its effect ends.
    pub truth_horizon_ms: u64,
}

/// The default truth horizon (`--truth-horizon`): 72 hours past an item's window.
pub const DEFAULT_TRUTH_HORIZON_MS: u64 = 72 * MS_PER_HOUR;

impl RunPlan {
    /// Loads the script's catalog (scaled by the script's `scale`) and library and applies
    /// command-line overrides.
    pub fn from_script(
        script: Script,
        seed_override: Option<u64>,
        duration_override_ms: Option<u64>,
    ) -> Result<RunPlan, Diagnostic> {
        let (catalog, catalog_name) = match &script.catalog {
            CatalogSource::Embedded => (Catalog::embedded()?, EMBEDDED_CATALOG_NAME.to_string()),
            CatalogSource::File(path) => (load_catalog(path)?, path.display().to_string()),
        };
        // Scaled before the library and timeline are checked against it, so everything a run
        // builds from the catalog (model, twins, history, baseline) sees one marketplace.
        let catalog = catalog.scaled(script.scale);
        if let Some(duration) = duration_override_ms {
            check_duration(duration).map_err(|m| Diagnostic::new(&script.path, m))?;
        }
        let seed = seed_override.unwrap_or(script.seed);
        let duration_ms = duration_override_ms.unwrap_or(script.duration_ms);
        let library = Library::load(script.library_folder().as_deref(), &catalog)?;
        let timeline = ScriptTimeline::build(
            &TimelineInput {
                script: &script,
                duration_ms,
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
            timeline,
            script,
            warmup_ms: 0,
            truth_horizon_ms: DEFAULT_TRUTH_HORIZON_MS,
        })
    }

    /// The plan with the warm-up `--warmup` asks for, else the script's own (`warmup:`).
    pub fn with_warmup(self, override_days: Option<u64>) -> Result<RunPlan, Diagnostic> {
        let days = override_days.unwrap_or(self.script.warmup_days);
        self.with_warmup_days(days)
    }

    /// The plan with `days` simulated before the script's start: the run's epoch moves back by
    /// that much and its duration grows by it, while every timeline entry stays at its instant
    /// (so a script's incidents fall after the warm-up, on a marketplace already full).
    pub fn with_warmup_days(mut self, days: u64) -> Result<RunPlan, Diagnostic> {
        if days > MAX_WARMUP_DAYS {
            return Err(Diagnostic::new(
                &self.script.path,
                format!("--warmup {days}: a warm-up lasts 0 to {MAX_WARMUP_DAYS} days"),
            ));
        }
        if days == 0 || self.warmup_ms == days * MS_PER_DAY {
            return Ok(self);
        }
        if self.warmup_ms != 0 {
            return Err(Diagnostic::new(
                &self.script.path,
                "a plan's warm-up is set once",
            ));
        }
        let warmup_ms = days * MS_PER_DAY;
        let start = self
            .script
            .start
            .checked_sub_signed(chrono::Duration::days(days as i64))
            .ok_or_else(|| {
                Diagnostic::new(
                    &self.script.path,
                    format!("--warmup {days}: the run would start before the calendar's first day"),
                )
            })?;
        let duration_ms = self.duration_ms + warmup_ms;
        check_duration(duration_ms).map_err(|message| {
            Diagnostic::new(
                &self.script.path,
                format!("--warmup {days} with the script's length: {message}"),
            )
        })?;
        self.script.start = start;
        self.duration_ms = duration_ms;
        for action in &mut self.timeline.actions {
            action.at_ms += warmup_ms;
        }
        self.warmup_ms = warmup_ms;
        Ok(self)
    }

    /// The plan with another truth horizon.
    pub fn with_truth_horizon(mut self, horizon_ms: u64) -> RunPlan {
        self.truth_horizon_ms = horizon_ms;
        self
    }

    /// The instant the script's own time begins (the end of the warm-up).
    pub fn script_start_ms(&self) -> u64 {
        self.warmup_ms
    }

    pub fn epoch(&self) -> Epoch {
        Epoch::from_datetime(self.script.start)
    }

    pub fn bucket_ms(&self) -> u64 {
        self.script.bucket_ms
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
