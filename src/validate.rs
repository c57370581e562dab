//! `marketsim validate`: tells the four kinds of YAML file marketsim reads apart by their
//! top-level keys, and checks each file as what it is — run script, catalog, event library or
//! scenario definition — without running anything.
//!
//! The kind comes from the document, never from the file name: a file is taken for the kind
//! whose top-level keys it uses most ([`InputKind::KEYS`]), ties going to the earlier kind in
//! [`InputKind::ALL`]. So `events.yaml` (only `events`) is an event library, a scenario
//! definition (`id`, `settlement`, `modifiers`, …) is one even with a key misspelt, and a run
//! script with a typo is still checked as a run script and told which key is wrong.

use std::fmt;
use std::path::Path;

use crate::diagnostics::Diagnostic;
use crate::market::catalog::Catalog;
use crate::scenario::definition::{parse_event_library, parse_scenario_file, EMBEDDED_EVENTS};
use crate::scenario::input_kind::InputKind;
use crate::scenario::script::Script;
use crate::scenario::RunPlan;

/// A file that passed validation: what it was taken for and a line about what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Validated {
    pub kind: InputKind,
    pub contents: String,
}

impl fmt::Display for Validated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ok ({}, {})", self.kind.name(), self.contents)
    }
}

/// Validates what a command-line argument names: a file of any kind, or a bundled run
/// script's name when no file exists at that path.
pub fn validate_input(argument: &Path) -> Result<Validated, Diagnostic> {
    if !argument.exists() {
        return validate_run_script(Script::open(argument)?);
    }
    let text = read_input(argument)?;
    let kind = InputKind::detect(&text).ok_or_else(|| unknown_kind(argument, &text))?;
    match kind {
        InputKind::RunScript => validate_run_script(Script::parse(argument, &text)?),
        InputKind::Catalog => {
            let catalog = Catalog::parse(argument, &text)?;
            Ok(Validated {
                kind,
                contents: format!(
                    "{} streams, {} subjects",
                    catalog.streams.len(),
                    catalog.subjects.len()
                ),
            })
        }
        InputKind::EventLibrary => {
            let events = parse_event_library(argument, &text, &Catalog::embedded()?)?;
            let red_herrings = events.iter().filter(|e| e.effect.is_none()).count();
            Ok(Validated {
                kind,
                contents: format!("{} templates, {red_herrings} red herrings", events.len()),
            })
        }
        InputKind::ScenarioDefinition => {
            let catalog = Catalog::embedded()?;
            let events_path = sibling_event_library(argument);
            let events = match &events_path {
                Some(path) => parse_event_library(path, &read_input(path)?, &catalog)?,
                None => parse_event_library(
                    Path::new("<embedded>/events.yaml"),
                    EMBEDDED_EVENTS,
                    &catalog,
                )?,
            };
            let scenario = parse_scenario_file(argument, &text, &catalog, &events)?;
            let events_name = events_path.map_or("<embedded>/events.yaml".to_string(), |p| {
                p.display().to_string()
            });
            Ok(Validated {
                kind,
                contents: format!("`{}`, events from {events_name}", scenario.id),
            })
        }
    }
}

fn validate_run_script(script: Script) -> Result<Validated, Diagnostic> {
    let plan = RunPlan::from_script(script, None, None)?;
    Ok(Validated {
        kind: InputKind::RunScript,
        contents: format!(
            "{} timeline entries, {} scenarios and {} events in the library",
            plan.timeline.actions.len(),
            plan.library.scenarios.len(),
            plan.library.events.len()
        ),
    })
}

/// The event library a scenario file is checked against: `../events.yaml` when the file sits
/// in a library folder's `library/` (as `Library::load` reads them), else the embedded one.
fn sibling_event_library(scenario_path: &Path) -> Option<std::path::PathBuf> {
    let folder = scenario_path.parent()?;
    if folder.file_name()? != "library" {
        return None;
    }
    let events = folder.parent()?.join("events.yaml");
    events.is_file().then_some(events)
}

fn read_input(path: &Path) -> Result<String, Diagnostic> {
    std::fs::read_to_string(path).map_err(|e| Diagnostic::new(path, format!("cannot read: {e}")))
}

/// The error for a file of no known kind: its YAML error if it is not YAML, else the kinds.
fn unknown_kind(path: &Path, text: &str) -> Diagnostic {
    if let Err(error) = serde_yaml::from_str::<serde_yaml::Value>(text) {
        return Diagnostic::from_yaml_in(path, text, &error);
    }
    let kinds: Vec<String> = InputKind::ALL
        .iter()
        .map(|kind| {
            let keys = kind.keys();
            let shown = keys.iter().take(5).copied().collect::<Vec<_>>().join(", ");
            let more = if keys.len() > 5 { ", …" } else { "" };
            format!("{} ({shown}{more})", kind.name())
        })
        .collect();
    Diagnostic::new(
        path,
        "not a file marketsim reads: its top-level keys match no kind",
    )
    .with_help(format!(
        "the kinds, by their top-level keys: {}",
        kinds.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::input_kind::top_level_keys;

    fn detect(text: &str) -> Option<InputKind> {
        InputKind::detect(text)
    }

    #[test]
    fn kinds_come_from_top_level_keys() {
        assert_eq!(detect("events: []\n"), Some(InputKind::EventLibrary));
        assert_eq!(
            detect("id: x\nname: X\nduration: 1h\nsettlement: 0s\n"),
            Some(InputKind::ScenarioDefinition)
        );
        // A script that misspells `timeline` as `events` is still a script.
        assert_eq!(
            detect("name: a\nseed: 1\nstart: 2025-01-01T00:00:00Z\nduration: 1d\nevents: []\n"),
            Some(InputKind::RunScript)
        );
        assert_eq!(
            detect("version: 1\nstreams: []\n"),
            Some(InputKind::Catalog)
        );
        assert_eq!(detect("colour: blue\n"), None);
        assert_eq!(detect("- a list\n"), None);
    }

    /// The key lists are the loaders' own: every key the bundled files use is listed, and the
    /// catalog's (all required) are exactly the embedded catalog's.
    #[test]
    fn the_key_lists_cover_the_bundled_files() {
        let keys_of = |text: &str| -> Vec<String> {
            let document: serde_yaml::Value =
                serde_yaml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
            top_level_keys(&document)
                .unwrap_or_default()
                .into_iter()
                .map(str::to_string)
                .collect()
        };
        let catalog_keys = keys_of(crate::market::catalog::EMBEDDED_CATALOG);
        assert_eq!(catalog_keys, InputKind::Catalog.keys());
        assert_eq!(keys_of(EMBEDDED_EVENTS), InputKind::EventLibrary.keys());
        for (id, text) in crate::scenario::definition::EMBEDDED_SCENARIOS {
            assert_eq!(detect(text), Some(InputKind::ScenarioDefinition), "{id}");
            for key in keys_of(text) {
                assert!(
                    InputKind::ScenarioDefinition.keys().contains(&key.as_str()),
                    "{id}: {key}"
                );
            }
        }
        for (name, text) in crate::bundled::BUNDLED_SCRIPTS {
            assert_eq!(detect(text), Some(InputKind::RunScript), "{name}");
        }
    }
}
