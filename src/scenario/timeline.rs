//! Script timelines: entries at absolute, relative, day-of-run or backdated times, resolved with
//! the libraries into the model's [`ControlPlan`] plus the labels outputs need.

use chrono::{DateTime, Timelike, Utc};
use serde::Deserialize;

use super::definition::{
    glob_matches, EventTemplate, Library, RawEventTemplate, ScenarioDefinition, SourceText,
};
use crate::diagnostics::{parse_duration_ms, suggestion, Diagnostic};
use crate::engine::{RandomStream, VirtualTimeMs, MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE};
use crate::market::catalog::Catalog;
use crate::market::director::{
    ActionKind, ControlPlan, Instance, InstanceKind, LeverChanges, Modifiers, PlannedAction,
    PlannedInstance,
};
use crate::script::Script;

/// Most entries a timeline may hold, and most background events a day.
pub const MAX_TIMELINE_ENTRIES: usize = 1_000;
/// Scenario intensity limits: 0 switches a scenario off, 10 is ten times its deviation.
pub const MAX_INTENSITY: f64 = 10.0;
/// Red herrings are measured over this window (they have no effect duration of their own).
pub const RED_HERRING_WINDOW_MS: u64 = 2 * MS_PER_HOUR;

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawEventEntry {
    Id(String),
    Inline(Box<RawEventTemplate>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEntry {
    pub at: String,
    #[serde(default)]
    pub scenario: Option<String>,
    #[serde(default)]
    pub event: Option<RawEventEntry>,
    #[serde(default)]
    pub stop: Option<String>,
    #[serde(default)]
    pub reset: Option<bool>,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub settlement: Option<String>,
    #[serde(default)]
    pub intensity: Option<f64>,
    /// Only these streams (exact names or globs) keep the scenario's stream modifiers.
    #[serde(default)]
    pub streams: Option<Vec<String>>,
    #[serde(default)]
    pub red_herring: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Policy {
    /// Several scenarios may run at once; their modifiers compose.
    #[default]
    Concurrent,
    /// The seed's policy: a scenario that starts stops the one running.
    OneAtATime,
}

/// What a planned instance activates: a scenario, or an external event (whose effect, if any,
/// is the instance's modifiers).
#[derive(Debug, Clone, PartialEq)]
pub enum PlanSubject {
    Scenario(ScenarioDefinition),
    Event(EventTemplate),
}

/// What outputs need to know about each planned instance (parallel to the plan's instances).
#[derive(Debug, Clone, PartialEq)]
pub struct PlanItem {
    pub subject: PlanSubject,
    /// `script`, `scenario:<id>` (injected by a scenario) or `background`.
    pub origin: String,
    /// For events: `evt_001`, … in start order; for scenarios: `mod_001`, ….
    pub instance_id: String,
    pub start_ms: VirtualTimeMs,
    /// End of the window over which ground truth measures the effect.
    pub window_end_ms: VirtualTimeMs,
}

impl PlanItem {
    /// The scenario id or event template id.
    pub fn label(&self) -> &str {
        match &self.subject {
            PlanSubject::Scenario(scenario) => &scenario.id,
            PlanSubject::Event(event) => &event.id,
        }
    }

    pub fn kind(&self) -> InstanceKind {
        match self.subject {
            PlanSubject::Scenario(_) => InstanceKind::Scenario,
            PlanSubject::Event(_) => InstanceKind::Event,
        }
    }

    /// An event that changes nothing.
    pub fn is_red_herring(&self) -> bool {
        matches!(&self.subject, PlanSubject::Event(event) if event.effect.is_none())
    }
}

/// The resolved timeline of a run.
#[derive(Debug, Clone, Default)]
pub struct ScenarioPlan {
    pub control: ControlPlan,
    pub items: Vec<PlanItem>,
}

/// Parses a timeline time: RFC 3339, `+2h` (after the previous entry), `day 3 09:00` (day 1 is
/// the start's calendar day), or `-7d` (before the script's `now`).
///
/// The result is milliseconds from the epoch, negative before it. Every step is checked: a
/// number too large for the arithmetic is refused as beyond any run, never wrapped into one.
pub fn parse_at(
    text: &str,
    epoch: DateTime<Utc>,
    previous_ms: u64,
    now_ms: u64,
) -> Result<i64, String> {
    let text = text.trim();
    let beyond_any_run = || {
        format!(
            "`{text}` is beyond any run (a run lasts at most {} days)",
            crate::script::MAX_DURATION_MS / MS_PER_DAY
        )
    };
    let offset_ms = |rest: &str| -> Result<i64, String> {
        i64::try_from(parse_duration_ms(rest)?).map_err(|_| beyond_any_run())
    };
    let anchor_ms = |anchor: u64| i64::try_from(anchor).map_err(|_| beyond_any_run());
    if let Some(rest) = text.strip_prefix('+') {
        return anchor_ms(previous_ms)?
            .checked_add(offset_ms(rest)?)
            .ok_or_else(beyond_any_run);
    }
    if let Some(rest) = text.strip_prefix('-') {
        return anchor_ms(now_ms)?
            .checked_sub(offset_ms(rest)?)
            .ok_or_else(beyond_any_run);
    }
    if let Some(rest) = text.strip_prefix("day ") {
        let mut parts = rest.split_whitespace();
        let day_text = parts.next().unwrap_or_default();
        let day: i64 = match day_text.parse::<i64>() {
            Ok(day) if day >= 1 => day,
            // All digits and still no i64: a day far beyond any run, not a typo.
            Err(_) if !day_text.is_empty() && day_text.bytes().all(|b| b.is_ascii_digit()) => {
                return Err(beyond_any_run())
            }
            _ => return Err(format!("`{text}`: the day is a number from 1")),
        };
        let (hour, minute) = match parts.next() {
            None => (0, 0),
            Some(clock) => clock
                .split_once(':')
                .and_then(|(h, m)| Some((h.parse::<i64>().ok()?, m.parse::<i64>().ok()?)))
                .filter(|(h, m)| (0..24).contains(h) && (0..60).contains(m))
                .ok_or_else(|| format!("`{text}`: write the time as HH:MM"))?,
        };
        if parts.next().is_some() {
            return Err(format!("`{text}`: write `day N` or `day N HH:MM`"));
        }
        // The clock is bounded above, so only the day can overflow.
        let clock_ms = (hour * 60 + minute) * MS_PER_MINUTE as i64;
        let into_day = (epoch.hour() as i64 * 60 + epoch.minute() as i64) * MS_PER_MINUTE as i64
            + epoch.second() as i64 * 1_000;
        return (day - 1)
            .checked_mul(MS_PER_DAY as i64)
            .and_then(|ms| ms.checked_add(clock_ms - into_day))
            .ok_or_else(beyond_any_run);
    }
    match text.parse::<DateTime<Utc>>() {
        Ok(instant) => Ok((instant - epoch).num_milliseconds()),
        Err(_) => Err(format!(
            "`{text}` is not a time; write 2025-01-16T14:30:00Z, +2h, day 3 09:00 or -7d"
        )),
    }
}

/// The header fields of a script that concern the timeline.
pub struct TimelineInput<'a> {
    pub script: &'a Script,
    pub duration_ms: u64,
    pub seed: u64,
}

impl ScenarioPlan {
    /// Resolves a script's timeline, its inline scenarios, and the background of external
    /// events against the catalog and libraries.
    pub fn build(
        input: &TimelineInput,
        catalog: &Catalog,
        library: &Library,
    ) -> Result<ScenarioPlan, Diagnostic> {
        let script = input.script;
        let source = SourceText {
            path: &script.path,
            text: &script.source_text,
        };
        let duration_ms = input.duration_ms;
        // The script's own duration was checked when it was parsed; a command-line override
        // is checked here, where the run's real length is first known.
        crate::script::check_run_end(script.start, duration_ms).map_err(|message| {
            source
                .error(&["start:"], message)
                .with_help("outputs write four-digit years: start earlier or shorten the run")
        })?;
        let now_ms = match script.now {
            Some(now) => {
                let within_run = u64::try_from((now - script.start).num_milliseconds())
                    .ok()
                    .filter(|ms| *ms <= duration_ms);
                within_run.ok_or_else(|| {
                    source.error(
                        &["now:"],
                        "`now` must fall within the run (between start and start + duration)",
                    )
                })?
            }
            None => duration_ms,
        };
        if script.timeline.len() > MAX_TIMELINE_ENTRIES {
            return Err(source.error(
                &["timeline:"],
                format!(
                    "{} timeline entries; the limit is {MAX_TIMELINE_ENTRIES}",
                    script.timeline.len()
                ),
            ));
        }
        // Inline scenarios shadow library ones with the same id.
        let mut definitions: Vec<ScenarioDefinition> = Vec::new();
        for raw in &script.scenarios {
            if definitions.iter().any(|d| d.id == raw.id) {
                return Err(source.error(
                    &[
                        "scenarios:",
                        &format!("id: {}", raw.id),
                        &format!("id: {}", raw.id),
                    ],
                    format!("duplicate scenario id `{}`", raw.id),
                ));
            }
            definitions.push(ScenarioDefinition::resolve(
                &source,
                raw,
                catalog,
                &library.events,
            )?);
        }
        let find_scenario = |id: &str| {
            definitions
                .iter()
                .find(|d| d.id == id)
                .or_else(|| library.scenario(id))
        };

        let mut builder = Builder {
            n_subjects: catalog.subjects.len(),
            items: Vec::new(),
            instances: Vec::new(),
            actions: Vec::new(),
        };
        let mut previous_ms = 0u64;
        let mut started: Vec<String> = Vec::new();
        for (index, entry) in script.timeline.iter().enumerate() {
            let at_anchor = format!("at: {}", entry.at);
            let anchors = ["timeline:", at_anchor.as_str()];
            let entry_error = |message: String| {
                source.error(&anchors, format!("timeline entry {}: {message}", index + 1))
            };
            let at =
                parse_at(&entry.at, script.start, previous_ms, now_ms).map_err(&entry_error)?;
            let Some(at) = u64::try_from(at).ok().filter(|at| *at <= duration_ms) else {
                return Err(entry_error(format!(
                    "`{}` falls outside the run (from its start to {})",
                    entry.at,
                    humantime::format_duration(std::time::Duration::from_millis(duration_ms))
                )));
            };
            previous_ms = at;
            let kinds = [
                entry.scenario.is_some(),
                entry.event.is_some(),
                entry.stop.is_some(),
                entry.reset.is_some(),
            ];
            if kinds.iter().filter(|k| **k).count() != 1 {
                return Err(entry_error(
                    "needs exactly one of `scenario`, `event`, `stop` or `reset`".to_string(),
                ));
            }
            let overrides = entry.duration.is_some()
                || entry.settlement.is_some()
                || entry.intensity.is_some()
                || entry.streams.is_some();
            if overrides && entry.scenario.is_none() {
                return Err(entry_error(
                    "duration, settlement, intensity and streams apply to `scenario` entries only"
                        .to_string(),
                ));
            }
            if entry.red_herring.is_some() && entry.event.is_none() {
                return Err(entry_error(
                    "red_herring applies to `event` entries only".to_string(),
                ));
            }
            if let Some(id) = &entry.scenario {
                let Some(definition) = find_scenario(id) else {
                    let names = definitions
                        .iter()
                        .map(|d| d.id.as_str())
                        .chain(library.scenarios.iter().map(|s| s.id.as_str()));
                    return Err(entry_error(format!("unknown scenario `{id}`"))
                        .with_help(suggestion(id, names)));
                };
                let mut definition = definition.clone();
                if let Some(text) = &entry.duration {
                    definition.duration_ms =
                        parse_duration_ms(text).map_err(|e| entry_error(e.into()))?;
                    if definition.duration_ms == 0
                        || definition.duration_ms > super::definition::MAX_SCENARIO_DURATION_MS
                    {
                        return Err(entry_error(format!(
                            "duration `{text}` is outside 1ms to 14d"
                        )));
                    }
                }
                if let Some(text) = &entry.settlement {
                    definition.settlement_ms =
                        parse_duration_ms(text).map_err(|e| entry_error(e.into()))?;
                    if definition.settlement_ms > super::definition::MAX_SETTLEMENT_MS {
                        return Err(entry_error(format!(
                            "settlement `{text}` is longer than 7d"
                        )));
                    }
                }
                let intensity = entry.intensity.unwrap_or(1.0);
                if !intensity.is_finite() || !(0.0..=MAX_INTENSITY).contains(&intensity) {
                    return Err(entry_error(format!("intensity {intensity} is outside the limit; allowed: 0.0 to {MAX_INTENSITY}")));
                }
                if let Some(patterns) = &entry.streams {
                    for pattern in patterns {
                        if super::definition::matching_streams(catalog, pattern).is_empty() {
                            return Err(entry_error(format!("`{pattern}` matches no stream"))
                                .with_help(suggestion(pattern, catalog.stream_names())));
                        }
                    }
                    definition.modifiers.streams.retain(|(stream, _)| {
                        let name = &catalog.streams[stream.index()].name;
                        patterns.iter().any(|p| glob_matches(p, name))
                    });
                }
                builder.add_scenario(&definition, at, intensity, "script", library, duration_ms);
                started.push(id.clone());
            } else if let Some(event) = &entry.event {
                let mut template = match event {
                    RawEventEntry::Id(id) => library.event(id).cloned().ok_or_else(|| {
                        entry_error(format!("unknown event `{id}`"))
                            .with_help(suggestion(id, library.events.iter().map(|e| e.id.as_str())))
                    })?,
                    RawEventEntry::Inline(raw) => EventTemplate::resolve(&source, raw, catalog)?,
                };
                if entry.red_herring == Some(true) {
                    template.effect = None;
                }
                builder.add_event(&template, at, "script", duration_ms);
            } else if let Some(id) = &entry.stop {
                if !started.contains(id) {
                    return Err(entry_error(format!(
                        "`stop: {id}` names a scenario that no earlier entry starts"
                    ))
                    .with_help(suggestion(id, started.iter().map(String::as_str))));
                }
                builder.actions.push(PlannedAction {
                    time: at,
                    kind: ActionKind::Stop(id.clone()),
                });
            } else if entry.reset == Some(true) {
                builder.actions.push(PlannedAction {
                    time: at,
                    kind: ActionKind::Reset,
                });
            } else {
                return Err(entry_error("`reset` takes `true`".to_string()));
            }
        }
        if script.background_events {
            builder.add_background(library, script.start, input.seed, duration_ms);
        }
        Ok(builder.finish(script.policy == Policy::OneAtATime))
    }
}

struct Builder {
    n_subjects: usize,
    items: Vec<PlanItem>,
    instances: Vec<PlannedInstance>,
    actions: Vec<PlannedAction>,
}

impl Builder {
    fn push(&mut self, item: PlanItem, instance: PlannedInstance) {
        self.actions.push(PlannedAction {
            time: item.start_ms,
            kind: ActionKind::Activate(self.instances.len()),
        });
        self.items.push(item);
        self.instances.push(instance);
    }

    fn add_scenario(
        &mut self,
        definition: &ScenarioDefinition,
        start: u64,
        intensity: f64,
        origin: &str,
        library: &Library,
        run_ms: u64,
    ) {
        let active_until = start + definition.duration_ms;
        let instance = Instance {
            start,
            active_until,
            settlement_ms: definition.settlement_ms,
            intensity,
            modifiers: definition.modifiers.clone(),
            cancelled: false,
        };
        self.push(
            PlanItem {
                subject: PlanSubject::Scenario(definition.clone()),
                origin: origin.to_string(),
                instance_id: String::new(),
                start_ms: start,
                window_end_ms: (active_until + definition.settlement_ms).min(run_ms),
            },
            PlannedInstance {
                label: definition.id.clone(),
                kind: InstanceKind::Scenario,
                instance,
                suppressed: false,
            },
        );
        for (event_id, offset) in &definition.events {
            if let Some(template) = library.event(event_id) {
                if start + offset <= run_ms {
                    self.add_event(
                        template,
                        start + offset,
                        &format!("scenario:{}", definition.id),
                        run_ms,
                    );
                }
            }
        }
    }

    fn add_event(&mut self, template: &EventTemplate, start: u64, origin: &str, run_ms: u64) {
        let (duration, settlement, modifiers) = match &template.effect {
            Some(effect) => (
                effect.duration_ms,
                effect.settlement_ms,
                effect.modifiers.clone(),
            ),
            None => (
                0,
                0,
                Modifiers {
                    streams: Vec::new(),
                    levers: LeverChanges::neutral(self.n_subjects),
                },
            ),
        };
        let window = if template.effect.is_some() {
            duration + settlement
        } else {
            RED_HERRING_WINDOW_MS
        };
        let instance = Instance {
            start,
            active_until: start + duration,
            settlement_ms: settlement,
            intensity: 1.0,
            modifiers,
            cancelled: false,
        };
        self.push(
            PlanItem {
                subject: PlanSubject::Event(template.clone()),
                origin: origin.to_string(),
                instance_id: String::new(),
                start_ms: start,
                window_end_ms: (start + window.max(RED_HERRING_WINDOW_MS)).min(run_ms),
            },
            PlannedInstance {
                label: template.id.clone(),
                kind: InstanceKind::Event,
                instance,
                suppressed: false,
            },
        );
    }

    /// Two to five background events a day from the templates marked `background`, at times
    /// between 07:00 and 22:00, drawn from their own random stream.
    fn add_background(&mut self, library: &Library, epoch: DateTime<Utc>, seed: u64, run_ms: u64) {
        let templates: Vec<&EventTemplate> =
            library.events.iter().filter(|e| e.background).collect();
        if templates.is_empty() {
            return;
        }
        let mut random = RandomStream::for_name(seed, "background-events");
        let into_day = (epoch.hour() as u64 * 60 + epoch.minute() as u64) * MS_PER_MINUTE;
        let days = (run_ms + into_day).div_ceil(MS_PER_DAY);
        for day in 0..days {
            let count = random.between(2, 5);
            let mut times: Vec<u64> = (0..count)
                .map(|_| 7 * MS_PER_HOUR + random.below(15 * 60) * MS_PER_MINUTE)
                .collect();
            times.sort_unstable();
            for offset in times {
                let template = templates[random.below(templates.len() as u64) as usize];
                let absolute = day * MS_PER_DAY + offset;
                if absolute >= into_day && absolute - into_day < run_ms {
                    self.add_event(template, absolute - into_day, "background", run_ms);
                }
            }
        }
    }

    fn finish(mut self, one_at_a_time: bool) -> ScenarioPlan {
        // Order instances by start (stable), renumber, and sort actions by time (stable, so
        // entries at the same time keep their script order).
        let mut order: Vec<usize> = (0..self.items.len()).collect();
        order.sort_by_key(|&i| self.items[i].start_ms);
        let mut new_index = vec![0; order.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = new;
        }
        let items: Vec<PlanItem> = order.iter().map(|&i| self.items[i].clone()).collect();
        let instances: Vec<PlannedInstance> =
            order.iter().map(|&i| self.instances[i].clone()).collect();
        for action in &mut self.actions {
            if let ActionKind::Activate(index) = &mut action.kind {
                *index = new_index[*index];
            }
        }
        self.actions.sort_by_key(|a| a.time);
        let (mut n_events, mut n_scenarios) = (0, 0);
        let items = items
            .into_iter()
            .map(|mut item| {
                item.instance_id = match item.kind() {
                    InstanceKind::Event => {
                        n_events += 1;
                        format!("evt_{n_events:03}")
                    }
                    InstanceKind::Scenario => {
                        n_scenarios += 1;
                        format!("mod_{n_scenarios:03}")
                    }
                };
                item
            })
            .collect();
        ScenarioPlan {
            control: ControlPlan {
                instances,
                actions: self.actions,
                one_at_a_time,
            },
            items,
        }
    }
}
