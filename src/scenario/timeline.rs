//! Script timelines: entries at absolute, relative, day-of-run or backdated times, resolved with
//! the libraries into timed commands; what a command becomes when it takes effect (a
//! [`PlanItem`] and the model's instance); the daily background of external events.

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use serde::{Deserialize, Serialize};

use super::definition::{
    glob_matches, BackgroundSchedule, EventTemplate, Library, RawEventTemplate, RawScenario,
    Recurrence, ScenarioDefinition, SourceText,
};
use super::script::Script;
use crate::diagnostics::{parse_duration_ms, suggestion, Diagnostic};
use crate::engine::{RandomStream, VirtualTimeMs, MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE};
use crate::market::catalog::Catalog;
use crate::market::director::{Instance, InstanceKind, LeverChanges, Modifiers, PlannedInstance};

/// Most entries a timeline may hold.
pub const MAX_TIMELINE_ENTRIES: usize = 1_000;
/// Scenario intensity limits: 0 switches a scenario off, 10 is ten times its deviation.
pub const MAX_INTENSITY: f64 = 10.0;
/// Red herrings are measured over this window (they have no effect duration of their own).
pub const RED_HERRING_WINDOW_MS: u64 = 2 * MS_PER_HOUR;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RawEventEntry {
    Id(String),
    Inline(Box<RawEventTemplate>),
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEntry {
    pub at: String,
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<RawEventEntry>,
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop: Option<String>,
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reset: Option<bool>,
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<String>,
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub settlement: Option<String>,
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intensity: Option<f64>,
    /// Only these streams (exact names or globs) keep the scenario's stream modifiers.
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub streams: Option<Vec<String>>,
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub red_herring: Option<bool>,
    /// Take action on a recommendation (`rec_001`): the seed's "take action" workflow, as a
    /// live session records it.
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolve: Option<String>,
    /// With `resolve`: the action taken (`act_001_1`).
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
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

/// What outputs need to know about each instance that took effect, in the order they did.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanItem {
    pub subject: PlanSubject,
    /// `script`, `scenario:<id>` (injected by a scenario) or `background`.
    pub origin: String,
    /// For events: `evt_001`, … in the order they took effect; for scenarios: `mod_001`, ….
    pub instance_id: String,
    pub start_ms: VirtualTimeMs,
    /// End of the window over which ground truth measures the effect (not cut at the run's
    /// end: a live session does not know its end; readers clamp it).
    pub window_end_ms: VirtualTimeMs,
    /// The instance as planned when it took effect (a later stop or reset shows in the
    /// timeline records, not here).
    pub instance: Instance,
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

    /// Whether taking this item into the model changes nothing the model reads, proved from
    /// what it carries rather than from what it is called: no stream modifiers, every lever at
    /// 1.0, and activating it stops nothing (an event, or a scenario when scenarios run
    /// concurrently; one at a time, a scenario settles the one running). A scenario's events are
    /// items of their own. The model composes modifiers by multiplying levers and listing stream
    /// changes, so such an item leaves every rate, gauge and draw as it was: its twin is the run
    /// itself, step for step.
    pub fn changes_nothing_the_model_reads(&self, one_at_a_time: bool) -> bool {
        let modifiers = &self.instance.modifiers;
        let stops_nothing = self.kind() == InstanceKind::Event || !one_at_a_time;
        modifiers.streams.is_empty() && modifiers.levers.is_neutral() && stops_nothing
    }

    /// The instance the model runs for this item.
    pub fn planned_instance(&self) -> PlannedInstance {
        PlannedInstance {
            label: self.label().to_string(),
            kind: self.kind(),
            instance: self.instance.clone(),
        }
    }
}

/// Where a command came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOrigin {
    /// A script's timeline entry or a live command: what a recording holds.
    Script,
    /// An event a scenario injects at an offset after its start.
    Scenario(String),
    /// The daily background of ordinary external events.
    Background,
}

impl CommandOrigin {
    /// As `truth.json` and `timeline.json` write it.
    pub fn label(&self) -> String {
        match self {
            CommandOrigin::Script => "script".to_string(),
            CommandOrigin::Scenario(id) => format!("scenario:{id}"),
            CommandOrigin::Background => "background".to_string(),
        }
    }
}

/// A validated command: every reference resolved against the catalog and libraries.
#[derive(Debug, Clone, PartialEq)]
pub enum TimelineAction {
    /// Start a scenario (its duration, settlement and streams already overridden).
    Activate {
        definition: Box<ScenarioDefinition>,
        intensity: f64,
    },
    /// Announce an external event (its effect, if any, starts with it).
    Inject { template: Box<EventTemplate> },
    /// Start settling every active scenario with this id.
    Stop { scenario: String },
    /// Cancel everything that took effect so far.
    Reset,
    /// Take action on a recommendation (applied to a session's analysis, if it has one).
    Resolve {
        recommendation: String,
        action: String,
    },
}

/// A resolved timeline entry at its virtual time.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedAction {
    pub at_ms: VirtualTimeMs,
    pub action: TimelineAction,
    pub origin: CommandOrigin,
    /// The entry as the script wrote it (a recording writes it back with an absolute time).
    pub raw: Option<RawEntry>,
}

/// A script's timeline, resolved: the commands in script order, and the policy.
#[derive(Debug, Clone, Default)]
pub struct ScriptTimeline {
    pub actions: Vec<TimedAction>,
    pub one_at_a_time: bool,
    /// The script's inline scenarios, as written and resolved.
    pub inline_scenarios: Vec<(RawScenario, ScenarioDefinition)>,
}

/// The item and instance an activation becomes at `start`, with the events the scenario injects
/// (template, time).
pub fn plan_scenario(
    definition: &ScenarioDefinition,
    intensity: f64,
    start: VirtualTimeMs,
    origin: &CommandOrigin,
    library: &Library,
) -> (PlanItem, Vec<(EventTemplate, VirtualTimeMs)>) {
    let active_until = start.saturating_add(definition.duration_ms);
    let instance = Instance {
        start,
        active_until,
        settlement_ms: definition.settlement_ms,
        intensity,
        modifiers: definition.modifiers.clone(),
        cancelled: false,
    };
    let item = PlanItem {
        subject: PlanSubject::Scenario(definition.clone()),
        origin: origin.label(),
        instance_id: String::new(),
        start_ms: start,
        window_end_ms: active_until.saturating_add(definition.settlement_ms),
        instance,
    };
    let injected = definition
        .events
        .iter()
        .filter_map(|(event_id, offset)| {
            let template = library.event(event_id)?;
            Some((template.clone(), start.saturating_add(*offset)))
        })
        .collect();
    (item, injected)
}

/// The item and instance an external event becomes at `start`.
pub fn plan_event(
    template: &EventTemplate,
    start: VirtualTimeMs,
    origin: &CommandOrigin,
    n_subjects: usize,
) -> PlanItem {
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
                levers: LeverChanges::neutral(n_subjects),
            },
        ),
    };
    let window = if template.effect.is_some() {
        duration + settlement
    } else {
        RED_HERRING_WINDOW_MS
    };
    PlanItem {
        subject: PlanSubject::Event(template.clone()),
        origin: origin.label(),
        instance_id: String::new(),
        start_ms: start,
        window_end_ms: start.saturating_add(window.max(RED_HERRING_WINDOW_MS)),
        instance: Instance {
            start,
            active_until: start.saturating_add(duration),
            settlement_ms: settlement,
            intensity: 1.0,
            modifiers,
            cancelled: false,
        },
    }
}

/// The background of ordinary external events: each template marked `background` happens on
/// its own schedule (at most once a week, a month or a run, with a chance, on its weekdays and
/// hours), drawn one calendar day at a time from the template's own random stream, so a session
/// that does not know its end draws exactly what a run of any length does, and adding a
/// template leaves the others' draws alone.
#[derive(Debug, Clone)]
pub struct BackgroundEvents {
    templates: Vec<BackgroundTemplate>,
    /// The calendar date of the run's first day.
    first_date: NaiveDate,
    /// How far into its first calendar day the run starts (hours and minutes).
    into_day_ms: u64,
    next_day: u64,
}

/// One background template's schedule and where it stands.
#[derive(Debug, Clone)]
struct BackgroundTemplate {
    /// Index in the library's event list.
    index: usize,
    schedule: BackgroundSchedule,
    random: RandomStream,
    /// The week or month decided last, and the day (from the run's first) chosen in it.
    period: Option<(i32, u32)>,
    chosen_day: Option<u64>,
    /// For `once`: it has happened.
    done: bool,
}

/// The days over which a `once` template's chance is spread.
const ONCE_CHANCE_DAYS: f64 = 30.0;

impl BackgroundEvents {
    /// `None` when the library has no background templates.
    pub fn new(library: &Library, epoch: DateTime<Utc>, seed: u64) -> Option<Self> {
        let templates: Vec<BackgroundTemplate> = library
            .events
            .iter()
            .enumerate()
            .filter_map(|(index, event)| {
                Some(BackgroundTemplate {
                    index,
                    schedule: event.background.clone()?,
                    random: RandomStream::for_name(seed, &format!("background/{}", event.id)),
                    period: None,
                    chosen_day: None,
                    done: false,
                })
            })
            .collect();
        if templates.is_empty() {
            return None;
        }
        Some(BackgroundEvents {
            templates,
            first_date: epoch.date_naive(),
            into_day_ms: (epoch.hour() as u64 * 60 + epoch.minute() as u64) * MS_PER_MINUTE,
            next_day: 0,
        })
    }

    /// The virtual time at which the next undrawn day starts (0 for the run's first day).
    pub fn next_day_start_ms(&self) -> VirtualTimeMs {
        (self.next_day * MS_PER_DAY).saturating_sub(self.into_day_ms)
    }

    /// Draws the next day's events: (virtual time, index into the library's events), in time
    /// order; times before the run's start are dropped.
    pub fn draw_next_day(&mut self) -> Vec<(VirtualTimeMs, usize)> {
        let day = self.next_day;
        self.next_day += 1;
        let date = self.first_date + chrono::Days::new(day);
        let mut drawn = Vec::new();
        for template in &mut self.templates {
            let schedule = &template.schedule;
            let happens = match schedule.recurrence {
                Recurrence::Once => {
                    let weekdays = schedule.weekdays.iter().filter(|allowed| **allowed).count();
                    let per_day = schedule.chance / ONCE_CHANCE_DAYS * 7.0 / weekdays as f64;
                    !template.done
                        && schedule.allows(date.weekday())
                        && template.random.chance(per_day.min(1.0))
                }
                Recurrence::Weekly | Recurrence::Monthly => {
                    let monthly = schedule.recurrence == Recurrence::Monthly;
                    let (period, last_date) = period_of(monthly, date);
                    if template.period != Some(period) {
                        // A new period: decide now whether it has the event, and on which of
                        // its remaining allowed days.
                        template.period = Some(period);
                        let eligible: Vec<u64> = (0..=(last_date - date).num_days())
                            .filter(|offset| {
                                let candidate = date + chrono::Days::new(*offset as u64);
                                schedule.allows(candidate.weekday())
                            })
                            .map(|offset| day + offset as u64)
                            .collect();
                        template.chosen_day = (!eligible.is_empty()
                            && template.random.chance(schedule.chance))
                        .then(|| eligible[template.random.below(eligible.len() as u64) as usize]);
                    }
                    template.chosen_day == Some(day)
                }
            };
            if !happens {
                continue;
            }
            template.done = true;
            let minutes = u64::from(schedule.to_hour - schedule.from_hour) * 60;
            let offset = u64::from(schedule.from_hour) * MS_PER_HOUR
                + template.random.below(minutes) * MS_PER_MINUTE;
            let absolute = day * MS_PER_DAY + offset;
            if absolute >= self.into_day_ms {
                drawn.push((absolute - self.into_day_ms, template.index));
            }
        }
        // Stable: two at the same minute keep the library's order.
        drawn.sort_by_key(|(time, _)| *time);
        drawn
    }
}

/// The calendar month (`monthly`) or the ISO week of `date`, as a key, and the period's last
/// date.
fn period_of(monthly: bool, date: NaiveDate) -> ((i32, u32), NaiveDate) {
    if monthly {
        let first_of_next = if date.month() == 12 {
            NaiveDate::from_ymd_opt(date.year() + 1, 1, 1)
        } else {
            NaiveDate::from_ymd_opt(date.year(), date.month() + 1, 1)
        };
        let last = first_of_next
            .and_then(|first| first.pred_opt())
            .unwrap_or(date);
        ((date.year(), date.month()), last)
    } else {
        let week = date.iso_week();
        let days_to_sunday = 6 - u64::from(date.weekday().num_days_from_monday());
        (
            (week.year(), week.week()),
            date + chrono::Days::new(days_to_sunday),
        )
    }
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
            crate::scenario::script::MAX_DURATION_MS / MS_PER_DAY
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
}

impl ScriptTimeline {
    /// Resolves a script's timeline and its inline scenarios against the catalog and
    /// libraries. (The background of external events is drawn as a session runs, day by day.)
    pub fn build(
        input: &TimelineInput,
        catalog: &Catalog,
        library: &Library,
    ) -> Result<ScriptTimeline, Diagnostic> {
        let script = input.script;
        let source = SourceText {
            path: &script.path,
            text: &script.source_text,
        };
        let duration_ms = input.duration_ms;
        // The script's own duration was checked when it was parsed; a command-line override
        // is checked here, where the run's real length is first known.
        crate::scenario::script::check_run_end(script.start, duration_ms).map_err(|message| {
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

        let mut actions = Vec::new();
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
            let action =
                resolve_entry(entry, &source, catalog, library, &definitions, &entry_error)?;
            match &action {
                TimelineAction::Activate { definition, .. } => {
                    started.push(definition.id.clone());
                }
                TimelineAction::Stop { scenario } if !started.contains(scenario) => {
                    return Err(entry_error(format!(
                        "`stop: {scenario}` names a scenario that no earlier entry starts"
                    ))
                    .with_help(suggestion(scenario, started.iter().map(String::as_str))));
                }
                _ => {}
            }
            actions.push(TimedAction {
                at_ms: at,
                action,
                origin: CommandOrigin::Script,
                raw: Some(entry.clone()),
            });
        }
        Ok(ScriptTimeline {
            actions,
            one_at_a_time: script.policy == Policy::OneAtATime,
            inline_scenarios: script.scenarios.iter().cloned().zip(definitions).collect(),
        })
    }
}

/// Resolves one timeline entry (its time already checked) against the catalog, the libraries
/// and the script's inline scenarios: the one place script entries and live commands are
/// validated. `entry_error` puts a message in its place.
pub fn resolve_entry(
    entry: &RawEntry,
    source: &SourceText,
    catalog: &Catalog,
    library: &Library,
    inline: &[ScenarioDefinition],
    entry_error: &dyn Fn(String) -> Diagnostic,
) -> Result<TimelineAction, Diagnostic> {
    let kinds = [
        entry.scenario.is_some(),
        entry.event.is_some(),
        entry.stop.is_some(),
        entry.reset.is_some(),
        entry.resolve.is_some(),
    ];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err(entry_error(
            "needs exactly one of `scenario`, `event`, `stop`, `reset` or `resolve`".to_string(),
        ));
    }
    if entry.action.is_some() != entry.resolve.is_some() {
        return Err(entry_error(
            "`resolve: rec_NNN` goes with `action: act_NNN_N`, and only with it".to_string(),
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
        let found = inline
            .iter()
            .find(|d| &d.id == id)
            .or_else(|| library.scenario(id));
        let Some(definition) = found else {
            let names = inline
                .iter()
                .map(|d| d.id.as_str())
                .chain(library.scenarios.iter().map(|s| s.id.as_str()));
            return Err(
                entry_error(format!("unknown scenario `{id}`")).with_help(suggestion(id, names))
            );
        };
        let mut definition = definition.clone();
        if let Some(text) = &entry.duration {
            definition.duration_ms =
                parse_duration_ms(text).map_err(|e| entry_error(e.to_string()))?;
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
                parse_duration_ms(text).map_err(|e| entry_error(e.to_string()))?;
            if definition.settlement_ms > super::definition::MAX_SETTLEMENT_MS {
                return Err(entry_error(format!(
                    "settlement `{text}` is longer than 7d"
                )));
            }
        }
        let intensity = entry.intensity.unwrap_or(1.0);
        if !intensity.is_finite() || !(0.0..=MAX_INTENSITY).contains(&intensity) {
            return Err(entry_error(format!(
                "intensity {intensity} is outside the limit; allowed: 0.0 to {MAX_INTENSITY}"
            )));
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
        return Ok(TimelineAction::Activate {
            definition: Box::new(definition),
            intensity,
        });
    } else if let Some(event) = &entry.event {
        let mut template = match event {
            RawEventEntry::Id(id) => library.event(id).cloned().ok_or_else(|| {
                entry_error(format!("unknown event `{id}`"))
                    .with_help(suggestion(id, library.events.iter().map(|e| e.id.as_str())))
            })?,
            RawEventEntry::Inline(raw) => EventTemplate::resolve(source, raw, catalog)?,
        };
        if entry.red_herring == Some(true) {
            template.effect = None;
        }
        return Ok(TimelineAction::Inject {
            template: Box::new(template),
        });
    } else if let Some(id) = &entry.stop {
        return Ok(TimelineAction::Stop {
            scenario: id.clone(),
        });
    } else if entry.reset == Some(true) {
        return Ok(TimelineAction::Reset);
    } else if let (Some(recommendation), Some(action)) = (&entry.resolve, &entry.action) {
        return Ok(TimelineAction::Resolve {
            recommendation: recommendation.clone(),
            action: action.clone(),
        });
    }
    Err(entry_error("`reset` takes `true`".to_string()))
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike, TimeZone, Timelike, Utc};
    use proptest::prelude::*;

    use super::{BackgroundEvents, Recurrence};
    use crate::market::Catalog;
    use crate::scenario::definition::Library;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

        /// Over a year from any start, each background template keeps its schedule: at most
        /// once a period (week, month, run), on its weekdays, within its hours; and the draws
        /// come in time order.
        #[test]
        fn background_events_keep_their_schedules(
            seed in any::<u64>(),
            start_day in 0u32..365,
            start_minute in 0u32..(24 * 60),
        ) {
            let catalog = Catalog::embedded().map_err(|e| TestCaseError::fail(e.to_string()))?;
            let library = Library::load(None, &catalog).map_err(|e| TestCaseError::fail(e.to_string()))?;
            let epoch = Utc.with_ymd_and_hms(2025, 1, 1, 0, 0, 0).single().unwrap_or_default()
                + chrono::Duration::days(i64::from(start_day))
                + chrono::Duration::minutes(i64::from(start_minute));
            let mut background = BackgroundEvents::new(&library, epoch, seed)
                .ok_or_else(|| TestCaseError::fail("no background templates"))?;
            let mut seen = std::collections::BTreeMap::new();
            let mut total = 0usize;
            for _ in 0..366 {
                let day = background.draw_next_day();
                prop_assert!(day.windows(2).all(|pair| pair[0].0 <= pair[1].0), "{day:?}");
                for (time, index) in day {
                    total += 1;
                    let event = &library.events[index];
                    let schedule = event.background.as_ref()
                        .ok_or_else(|| TestCaseError::fail("drew a template not marked background"))?;
                    let at = epoch + chrono::Duration::milliseconds(time as i64);
                    prop_assert!(schedule.allows(at.weekday()), "{} on a {}", event.id, at.weekday());
                    let hour = at.hour();
                    prop_assert!(hour >= schedule.from_hour && hour < schedule.to_hour, "{} at {}", event.id, at);
                    let period = match schedule.recurrence {
                        Recurrence::Once => (0, 0),
                        Recurrence::Monthly => (at.year(), at.month()),
                        Recurrence::Weekly => (at.iso_week().year(), at.iso_week().week()),
                    };
                    let count = seen.entry((event.id.clone(), period)).or_insert(0);
                    *count += 1;
                    prop_assert_eq!(*count, 1, "{} twice in {:?}", event.id, period);
                }
            }
            // About seven a month: the year has between 40 and 160.
            prop_assert!((40..=160).contains(&total), "{total} background events in a year");
        }
    }
}
