//! [`RunPlan`]: a script with its catalog and libraries loaded, command-line overrides applied
//! and its timeline resolved: everything a session needs before it starts. Pure: reads only the
//! catalog and library files the script names.

use std::path::Path;
use std::sync::Arc;

use super::definition::Library;
use super::script::{check_duration, CatalogSource, Script};
use super::timeline::{ScriptTimeline, TimelineInput};
use crate::diagnostics::Diagnostic;
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
}

impl RunPlan {
    /// Loads the script's catalog and library and applies command-line overrides.
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
        })
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
