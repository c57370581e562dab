//! Commands a session takes at run time — activate, stop, reset, inject — what applying one
//! did ([`Applied`]), and why one was refused ([`CommandError`]).
//!
//! A command is resolved through the same code as a script's timeline entry
//! ([`resolve_entry`]): it becomes the entry a recording writes back, and the validated action
//! the session feeds in.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::core::FeedEntry;
use super::recording::RecordedCommand;
use super::{Advance, Session};
use crate::analyst::recommendation::{check_resolvable, ResolveError};
use crate::engine::VirtualTimeMs;
use crate::market::director::Phase;
use crate::scenario::definition::{RawScenario, ScenarioDefinition, SourceText};
use crate::scenario::timeline::{resolve_entry, RawEntry, RawEventEntry, TimelineAction};

/// Something a live client (or a test) asks a session to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase", deny_unknown_fields)]
pub enum Command {
    /// Start a scenario: one of the library, or `definition` (an inline scenario whose id is
    /// `scenario`). The overrides are those of a timeline entry.
    #[serde(rename_all = "camelCase")]
    Activate {
        scenario: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        definition: Option<Box<RawScenario>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        intensity: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        settlement: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        streams: Option<Vec<String>>,
    },
    /// Start settling every active instance of a scenario.
    Stop { scenario: String },
    /// Cancel everything that took effect.
    Reset,
    /// Take action on a recommendation: the seed's "take action" workflow (fake execution).
    Resolve {
        recommendation: String,
        action: String,
    },
    /// Announce an external event: a library id, or an inline template.
    #[serde(rename_all = "camelCase")]
    Inject {
        event: RawEventEntry,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        red_herring: Option<bool>,
    },
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// When it took effect.
    pub at_ms: VirtualTimeMs,
    pub advance: Advance,
    /// For a backdated command: the buckets whose values changed when the history from its
    /// time on was re-simulated.
    pub rewritten_buckets: Option<Vec<usize>>,
}

/// Why a command was refused. Nothing changes when a command is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CommandError {
    #[error("unknown scenario `{id}`; the scenarios are: {}", valid.join(", "))]
    UnknownScenario { id: String, valid: Vec<String> },
    #[error("unknown event `{id}`; the events are: {}", valid.join(", "))]
    UnknownEvent { id: String, valid: Vec<String> },
    #[error("scenario `{id}` is not active; active: {}", if active.is_empty() { "none".to_string() } else { active.join(", ") })]
    NotActive { id: String, active: Vec<String> },
    #[error("scenario `{id}` is already active; stop it first (active: {})", active.join(", "))]
    AlreadyActive { id: String, active: Vec<String> },
    #[error("an inline scenario `{id}` was already defined differently in this session")]
    Redefined { id: String },
    #[error("a command cannot be dated in the future (at {at_ms} ms; now is {now} ms)")]
    InTheFuture {
        at_ms: VirtualTimeMs,
        now: VirtualTimeMs,
    },
    #[error("{}", match earliest_ms { Some(ms) => format!("a command can be backdated to {ms} ms of virtual time at the earliest (asked: {at_ms} ms)"), None => "this session keeps no history to backdate into".to_string() })]
    TooFarBack {
        at_ms: VirtualTimeMs,
        earliest_ms: Option<VirtualTimeMs>,
    },
    #[error("this session is not analyzed, so it has no recommendations")]
    NotAnalyzed,
    #[error("{0}")]
    Resolve(#[from] ResolveError),
    #[error("{message}")]
    Invalid { message: String },
}

/// The entry a command becomes (dated `at_ms`), and its validated action. A new inline
/// scenario joins the session's definitions, so the recording carries it.
pub(super) fn resolve(
    command: &Command,
    session: &mut Session,
    at_ms: VirtualTimeMs,
) -> Result<(RawEntry, TimelineAction), CommandError> {
    let at = session.epoch().format(at_ms);
    let mut entry = RawEntry {
        at,
        ..RawEntry::default()
    };
    match command {
        Command::Activate {
            scenario,
            definition,
            intensity,
            duration,
            settlement,
            streams,
        } => {
            if let Some(raw) = definition {
                add_inline_scenario(session, scenario, raw)?;
            }
            let known = session
                .setup
                .inline_scenarios
                .iter()
                .any(|(_, d)| &d.id == scenario)
                || session.setup.library.scenario(scenario).is_some();
            if !known {
                return Err(CommandError::UnknownScenario {
                    id: scenario.clone(),
                    valid: scenario_ids(session),
                });
            }
            // Twice the same scenario at once would double its modifiers — never what a
            // second click on "activate" means. (Backdated starts are the caller's explicit
            // choice and are left alone.)
            if at_ms == session.now() {
                let active = active_scenarios(session);
                if active.contains(scenario) {
                    return Err(CommandError::AlreadyActive {
                        id: scenario.clone(),
                        active,
                    });
                }
            }
            entry.scenario = Some(scenario.clone());
            entry.intensity = *intensity;
            entry.duration = duration.clone();
            entry.settlement = settlement.clone();
            entry.streams = streams.clone();
        }
        Command::Stop { scenario } => {
            // As in a script, a stop needs an earlier start (a recording must replay).
            let started_before = session.recording.iter().any(|recorded| {
                recorded.at_ms <= at_ms && recorded.entry.scenario.as_deref() == Some(scenario)
            });
            if !started_before {
                return Err(CommandError::NotActive {
                    id: scenario.clone(),
                    active: active_scenarios(session),
                });
            }
            if at_ms == session.now() {
                let active = active_scenarios(session);
                if !active.contains(scenario) {
                    return Err(CommandError::NotActive {
                        id: scenario.clone(),
                        active,
                    });
                }
            }
            entry.stop = Some(scenario.clone());
        }
        Command::Reset => entry.reset = Some(true),
        Command::Resolve {
            recommendation,
            action,
        } => {
            if at_ms != session.now() {
                return Err(CommandError::Invalid {
                    message: "taking action cannot be backdated".to_string(),
                });
            }
            let analysis = session.analysis().ok_or(CommandError::NotAnalyzed)?;
            check_resolvable(analysis.recommendations(), recommendation, action)?;
            entry.resolve = Some(recommendation.clone());
            entry.action = Some(action.clone());
        }
        Command::Inject { event, red_herring } => {
            if let RawEventEntry::Id(id) = event {
                if session.setup.library.event(id).is_none() {
                    return Err(CommandError::UnknownEvent {
                        id: id.clone(),
                        valid: session
                            .setup
                            .library
                            .events
                            .iter()
                            .map(|e| e.id.clone())
                            .collect(),
                    });
                }
            }
            entry.event = Some(event.clone());
            entry.red_herring = *red_herring;
        }
    }
    let action = resolve_raw(&entry, session)?;
    Ok((entry, action))
}

/// A recorded entry, resolved again (re-simulating after a backdated command).
pub(super) fn resolve_recorded(
    recorded: &RecordedCommand,
    session: &Session,
) -> Result<FeedEntry, CommandError> {
    Ok(FeedEntry {
        at_ms: recorded.at_ms,
        action: resolve_raw(&recorded.entry, session)?,
    })
}

fn resolve_raw(entry: &RawEntry, session: &Session) -> Result<TimelineAction, CommandError> {
    let text = serde_yaml::to_string(entry).unwrap_or_default();
    let source = SourceText {
        path: Path::new("command"),
        text: &text,
    };
    let inline: Vec<ScenarioDefinition> = session
        .setup
        .inline_scenarios
        .iter()
        .map(|(_, definition)| definition.clone())
        .collect();
    let invalid =
        |message: String| crate::diagnostics::Diagnostic::new(Path::new("command"), message);
    resolve_entry(
        entry,
        &source,
        &session.setup.catalog,
        &session.setup.library,
        &inline,
        &invalid,
    )
    .map_err(|diagnostic| CommandError::Invalid {
        message: diagnostic.to_string(),
    })
}

fn add_inline_scenario(
    session: &mut Session,
    id: &str,
    raw: &RawScenario,
) -> Result<(), CommandError> {
    if raw.id != id {
        return Err(CommandError::Invalid {
            message: format!(
                "the inline definition's id `{}` differs from `scenario: {id}`",
                raw.id
            ),
        });
    }
    let text = serde_yaml::to_string(raw).unwrap_or_default();
    let source = SourceText {
        path: Path::new("command"),
        text: &text,
    };
    let definition = ScenarioDefinition::resolve(
        &source,
        raw,
        &session.setup.catalog,
        &session.setup.library.events,
    )
    .map_err(|diagnostic| CommandError::Invalid {
        message: diagnostic.to_string(),
    })?;
    let inline = &mut session.setup.inline_scenarios;
    match inline.iter().find(|(_, d)| d.id == id) {
        Some((_, existing)) if *existing != definition => {
            Err(CommandError::Redefined { id: id.to_string() })
        }
        Some(_) => Ok(()),
        None => {
            inline.push((raw.clone(), definition));
            Ok(())
        }
    }
}

fn scenario_ids(session: &Session) -> Vec<String> {
    session
        .setup
        .inline_scenarios
        .iter()
        .map(|(_, d)| d.id.clone())
        .chain(session.setup.library.scenarios.iter().map(|s| s.id.clone()))
        .collect()
}

/// Ids of the scenarios in their active phase now.
pub fn active_scenarios(session: &Session) -> Vec<String> {
    let now = session.now();
    let mut active: Vec<String> = session
        .model()
        .instances()
        .iter()
        .filter(|planned| {
            planned.kind == crate::market::director::InstanceKind::Scenario
                && planned.instance.phase(now) == Phase::Active
        })
        .map(|planned| planned.label.clone())
        .collect();
    active.dedup();
    active
}
