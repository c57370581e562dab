//! Recordings: every script or live command a session applied, at its virtual time, written
//! as a run script that `marketsim run` replays into the same run directory.

use std::path::PathBuf;

use serde::Serialize;

use super::Session;
use crate::engine::VirtualTimeMs;
use crate::scenario::definition::RawScenario;
use crate::scenario::timeline::{Policy, RawEntry};

/// One applied command: its entry as a script writes it, with an absolute time.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedCommand {
    pub at_ms: VirtualTimeMs,
    pub entry: RawEntry,
}

/// A session as a run script (the same keys `Script` reads).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub struct RecordingScript {
    pub name: String,
    pub description: String,
    pub seed: u64,
    pub start: String,
    pub duration: String,
    pub bucket: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog: Option<PathBuf>,
    /// The marketplace's size factor; left out at 1.
    #[serde(skip_serializing_if = "crate::market::catalog::is_unit_scale")]
    pub scale: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub library: Option<PathBuf>,
    pub policy: Policy,
    pub background_events: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub scenarios: Vec<RawScenario>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub timeline: Vec<RawEntry>,
}

fn format_duration_ms(ms: u64) -> String {
    if ms == 0 {
        return "0ms".to_string();
    }
    humantime::format_duration(std::time::Duration::from_millis(ms)).to_string()
}

impl RecordingScript {
    pub(super) fn new(session: &Session, name: &str, recorded: &[RecordedCommand]) -> Self {
        let setup = &session.setup;
        let epoch = setup.epoch();
        RecordingScript {
            name: name.to_string(),
            description: format!(
                "Recording of a session: {} commands over {}.",
                recorded.len(),
                format_duration_ms(session.now())
            ),
            seed: setup.seed,
            start: epoch.format(0),
            duration: format_duration_ms(session.now().max(1)),
            bucket: format_duration_ms(setup.bucket_ms),
            catalog: setup.catalog_file.clone(),
            scale: setup.catalog.scale,
            library: setup.library_folder.clone(),
            policy: if setup.one_at_a_time {
                Policy::OneAtATime
            } else {
                Policy::Concurrent
            },
            background_events: setup.background_events,
            scenarios: setup
                .inline_scenarios
                .iter()
                .map(|(raw, _)| raw.clone())
                .collect(),
            timeline: recorded.iter().map(|r| r.entry.clone()).collect(),
        }
    }

    /// The script's text.
    pub fn to_yaml(&self) -> String {
        let body = serde_yaml::to_string(self).unwrap_or_default();
        format!(
            "# Written by marketsim {}: replay with `marketsim run`.\n{body}",
            env!("CARGO_PKG_VERSION")
        )
    }
}
