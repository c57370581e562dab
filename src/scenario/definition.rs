//! Scenario definitions (`scenarios/library/*.yaml`), external-event templates
//! (`scenarios/events.yaml`) and the modifier vocabulary they share.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::diagnostics::{locate, parse_duration_ms, suggestion, Diagnostic};
use crate::engine::MS_PER_DAY;
use crate::market::catalog::{Catalog, Origin};
use crate::market::director::{LeverChanges, Modifiers, StreamChange};

/// Limits on what a scenario may ask for.
pub const MAX_MULTIPLIER: f64 = 20.0;
pub const MAX_SCENARIO_DURATION_MS: u64 = 14 * MS_PER_DAY;
pub const MAX_SETTLEMENT_MS: u64 = 7 * MS_PER_DAY;
pub const MAX_OFFSET: f64 = 1_000_000.0;

/// The library bundled into the binary: used when a script has no `library/` folder beside it.
pub const EMBEDDED_EVENTS: &str = include_str!("../../scenarios/events.yaml");
pub const EMBEDDED_SCENARIOS: &[(&str, &str)] = &[
    (
        "app-release-bug",
        include_str!("../../scenarios/library/app-release-bug.yaml"),
    ),
    (
        "churn-pattern",
        include_str!("../../scenarios/library/churn-pattern.yaml"),
    ),
    (
        "competitor-disruption",
        include_str!("../../scenarios/library/competitor-disruption.yaml"),
    ),
    (
        "exam-season-surge",
        include_str!("../../scenarios/library/exam-season-surge.yaml"),
    ),
    (
        "normal-operations",
        include_str!("../../scenarios/library/normal-operations.yaml"),
    ),
    (
        "payment-outage",
        include_str!("../../scenarios/library/payment-outage.yaml"),
    ),
    (
        "quality-crisis",
        include_str!("../../scenarios/library/quality-crisis.yaml"),
    ),
    (
        "recruiting-crisis",
        include_str!("../../scenarios/library/recruiting-crisis.yaml"),
    ),
    (
        "school-holidays",
        include_str!("../../scenarios/library/school-holidays.yaml"),
    ),
    (
        "supply-crisis",
        include_str!("../../scenarios/library/supply-crisis.yaml"),
    ),
    (
        "support-overload",
        include_str!("../../scenarios/library/support-overload.yaml"),
    ),
    (
        "viral-blog-post",
        include_str!("../../scenarios/library/viral-blog-post.yaml"),
    ),
];

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawStreamChange {
    #[serde(skip_serializing_if = "Option::is_none")]
    multiplier: Option<f64>,
    #[serde(rename = "override")]
    #[serde(skip_serializing_if = "Option::is_none")]
    override_value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLevers {
    #[serde(skip_serializing_if = "Option::is_none")]
    demand: Option<BTreeMap<String, f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    supply: Option<BTreeMap<String, f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payment_failure: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_errors: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    app_crashes: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    support_staffing: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ad_spend: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    low_ratings: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tutor_accept: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawModifiers {
    #[serde(default)]
    streams: BTreeMap<String, RawStreamChange>,
    #[serde(default)]
    levers: RawLevers,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEventRef {
    #[serde(rename = "ref")]
    reference: String,
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    pub id: String,
    pub name: String,
    pub description: String,
    pub duration: String,
    pub settlement: String,
    #[serde(default)]
    pub modifiers: RawModifiers,
    #[serde(default)]
    pub events: Vec<RawEventRef>,
    #[serde(default)]
    pub cascade: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EventType {
    Marketing,
    Product,
    Infrastructure,
    Academic,
    Competitive,
    Operational,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Increase,
    Decrease,
    Mixed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Magnitude {
    Low,
    Medium,
    High,
}

/// The seed's `expectedImpact`: what people expect an event to do.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedImpact {
    pub streams: Vec<String>,
    pub direction: Direction,
    pub magnitude: Magnitude,
    pub duration: String,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEffect {
    duration: String,
    settlement: String,
    #[serde(default)]
    levers: RawLevers,
    #[serde(default)]
    streams: BTreeMap<String, RawStreamChange>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEventTemplate {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub title: String,
    pub description: String,
    pub severity: Severity,
    #[serde(rename = "expectedImpact")]
    pub expected_impact: ExpectedImpact,
    pub icon: String,
    #[serde(rename = "externalLink", default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_link: Option<String>,
    #[serde(default, skip_serializing_if = "RawBackground::is_off")]
    pub background: RawBackground,
    #[serde(default)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<RawEffect>,
}

/// A template's `background:` as written: `false` (the default: only scripts inject it), `true`
/// (the old spelling: weekly, always), or a schedule.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum RawBackground {
    Always(bool),
    Schedule(RawBackgroundSchedule),
}

impl Default for RawBackground {
    fn default() -> Self {
        RawBackground::Always(false)
    }
}

impl RawBackground {
    fn is_off(&self) -> bool {
        *self == RawBackground::Always(false)
    }
}

impl<'de> Deserialize<'de> for RawBackground {
    /// A boolean or a schedule mapping; the mapping's own errors (an unknown field, a wrong
    /// recurrence) are passed on as they are, rather than an untagged enum's "matched no variant".
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_yaml::Value::deserialize(deserializer)?;
        match value {
            serde_yaml::Value::Bool(flag) => Ok(RawBackground::Always(flag)),
            other => serde_yaml::from_value(other)
                .map(RawBackground::Schedule)
                .map_err(|e| {
                    serde::de::Error::custom(format!(
                        "background: {e} (write `background: {{ recurrence: weekly, chance: 0.5 }}`, \
                         or true or false)"
                    ))
                }),
        }
    }
}

/// How often a background template happens on its own, as written.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackgroundSchedule {
    pub recurrence: Recurrence,
    /// The probability that it happens in a period (for `once`: in any 30 days, until it has).
    pub chance: f64,
    /// The days of the week it may fall on (`mon` … `sun`); all when absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weekdays: Vec<String>,
    /// The hours of the day it may start in, `[from, to)`; `[7, 22]` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<[u32; 2]>,
}

/// How often a background event recurs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Recurrence {
    /// At most once in a run (a rollout, a policy change).
    Once,
    /// At most once a calendar month.
    Monthly,
    /// At most once an ISO week.
    Weekly,
}

/// A validated background schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct BackgroundSchedule {
    pub recurrence: Recurrence,
    pub chance: f64,
    /// Allowed weekdays, Monday first.
    pub weekdays: [bool; 7],
    pub from_hour: u32,
    pub to_hour: u32,
}

impl BackgroundSchedule {
    /// The schedule `background: true` stands for: every week.
    const WEEKLY: BackgroundSchedule = BackgroundSchedule {
        recurrence: Recurrence::Weekly,
        chance: 1.0,
        weekdays: [true; 7],
        from_hour: 7,
        to_hour: 22,
    };

    pub fn allows(&self, weekday: chrono::Weekday) -> bool {
        self.weekdays[weekday.num_days_from_monday() as usize]
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEventsFile {
    events: Vec<RawEventTemplate>,
}

/// What an event really does: modifiers for a while, then a fade.
#[derive(Debug, Clone, PartialEq)]
pub struct Effect {
    pub duration_ms: u64,
    pub settlement_ms: u64,
    pub modifiers: Modifiers,
}

/// A validated external-event template.
#[derive(Debug, Clone, PartialEq)]
pub struct EventTemplate {
    pub id: String,
    pub kind: EventType,
    pub title: String,
    pub description: String,
    pub severity: Severity,
    pub expected_impact: ExpectedImpact,
    pub expected_duration_ms: u64,
    pub icon: String,
    pub external_link: Option<String>,
    /// When it happens on its own in a run's background; `None`: only when a script or a
    /// scenario injects it.
    pub background: Option<BackgroundSchedule>,
    /// `None`: a red herring.
    pub effect: Option<Effect>,
}

/// A validated scenario definition.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioDefinition {
    pub id: String,
    pub name: String,
    pub description: String,
    pub duration_ms: u64,
    pub settlement_ms: u64,
    pub modifiers: Modifiers,
    /// Names of the streams the stream modifiers touch, and the levers moved (for listings).
    pub touches: Vec<String>,
    /// (event template id, offset after the scenario's start).
    pub events: Vec<(String, u64)>,
    pub cascade: String,
    pub source: PathBuf,
}

/// The scenario and event libraries.
#[derive(Debug, Clone, Default)]
pub struct Library {
    pub scenarios: Vec<ScenarioDefinition>,
    pub events: Vec<EventTemplate>,
}

/// Where a value sits in a source text, for diagnostics.
pub struct SourceText<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl SourceText<'_> {
    pub fn error(&self, anchors: &[&str], message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(self.path, message).at(locate(self.text, anchors))
    }
}

fn duration_field(
    source: &SourceText,
    anchors: &[&str],
    text: &str,
    max_ms: u64,
    what: &str,
) -> Result<u64, Diagnostic> {
    let ms = parse_duration_ms(text).map_err(|m| source.error(anchors, m))?;
    if ms > max_ms {
        return Err(source.error(
            anchors,
            format!(
                "{what} `{text}` is longer than the limit of {}",
                humantime::format_duration(std::time::Duration::from_millis(max_ms))
            ),
        ));
    }
    Ok(ms)
}

fn check_multiplier(
    source: &SourceText,
    anchors: &[&str],
    name: &str,
    value: f64,
) -> Result<f64, Diagnostic> {
    if value.is_finite() && (0.0..=MAX_MULTIPLIER).contains(&value) {
        Ok(value)
    } else {
        Err(source.error(
            anchors,
            format!(
                "{name} multiplier {value} is outside the limit; allowed: 0.0 to {MAX_MULTIPLIER}"
            ),
        ))
    }
}

/// Stream names matching `pattern`: an exact name, or a glob with `*` (any run of characters).
pub fn matching_streams<'a>(catalog: &'a Catalog, pattern: &str) -> Vec<&'a str> {
    catalog
        .stream_names()
        .filter(|name| glob_matches(pattern, name))
        .collect()
}

/// Minimal glob: `*` matches any run of characters (including dots); everything else is literal.
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (index, part) in parts.iter().enumerate() {
        if index == 0 {
            let Some(stripped) = rest.strip_prefix(part) else {
                return false;
            };
            rest = stripped;
        } else if index == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(position) = rest.find(part) else {
                return false;
            };
            rest = &rest[position + part.len()..];
        }
    }
    true
}

/// Resolves raw stream and lever modifiers against the catalog.
pub fn resolve_modifiers(
    source: &SourceText,
    anchor: &str,
    catalog: &Catalog,
    streams: &BTreeMap<String, RawStreamChange>,
    levers: &RawLevers,
) -> Result<(Modifiers, Vec<String>), Diagnostic> {
    let mut touches = Vec::new();
    let mut stream_changes = Vec::new();
    for (pattern, change) in streams {
        let anchors = [anchor, pattern.as_str()];
        let matched = matching_streams(catalog, pattern);
        if matched.is_empty() {
            return Err(source
                .error(&anchors, format!("`{pattern}` matches no stream"))
                .with_help(suggestion(pattern, catalog.stream_names())));
        }
        let kind = match (change.multiplier, change.override_value, change.offset) {
            (Some(m), None, None) => {
                StreamChange::Multiplier(check_multiplier(source, &anchors, pattern, m)?)
            }
            (None, Some(v), None) if v.is_finite() && (0.0..=MAX_OFFSET).contains(&v) => {
                StreamChange::Override(v)
            }
            (None, None, Some(o)) if o.is_finite() && o.abs() <= MAX_OFFSET => {
                StreamChange::Offset(o)
            }
            _ => {
                return Err(source.error(&anchors, format!("`{pattern}` needs exactly one of multiplier (0 to {MAX_MULTIPLIER}), override (0 to {MAX_OFFSET}) or offset (±{MAX_OFFSET})")));
            }
        };
        for name in matched {
            let Some(stream) = catalog.stream(name) else {
                continue;
            };
            if matches!(stream.origin, Origin::Flow) {
                if pattern.contains('*') {
                    continue; // Globs skip flow streams; their changes come from levers.
                }
                return Err(source.error(&anchors, format!("`{name}` is emitted by the entity flows, so it cannot be modified directly"))
                    .with_help("move it through a lever instead (demand, supply, payment_failure, api_errors, app_crashes, support_staffing, ad_spend, low_ratings, tutor_accept)"));
            }
            stream_changes.push((stream.id, kind));
            touches.push(name.to_string());
        }
    }
    let n_subjects = catalog.subjects.len();
    let mut changes = LeverChanges::neutral(n_subjects);
    let per_subject = |lever: &str,
                       map: &Option<BTreeMap<String, f64>>|
     -> Result<Vec<f64>, Diagnostic> {
        let mut values = vec![1.0; n_subjects];
        for (subject, value) in map.iter().flatten() {
            let anchors = [anchor, lever, subject.as_str()];
            let value = check_multiplier(source, &anchors, &format!("{lever}.{subject}"), *value)?;
            if subject == "all" {
                values.iter_mut().for_each(|v| *v *= value);
            } else if let Some(index) = catalog.subjects.iter().position(|s| &s.name == subject) {
                values[index] *= value;
            } else {
                let names =
                    std::iter::once("all").chain(catalog.subjects.iter().map(|s| s.name.as_str()));
                return Err(source
                    .error(
                        &anchors,
                        format!("unknown subject `{subject}` in lever `{lever}`"),
                    )
                    .with_help(suggestion(subject, names)));
            }
        }
        Ok(values)
    };
    changes.demand_by_subject = per_subject("demand", &levers.demand)?;
    changes.supply_by_subject = per_subject("supply", &levers.supply)?;
    let scalar = |name: &str, value: Option<f64>| -> Result<f64, Diagnostic> {
        match value {
            None => Ok(1.0),
            Some(v) => check_multiplier(source, &[anchor, name], name, v),
        }
    };
    changes.payment_failure = scalar("payment_failure", levers.payment_failure)?;
    changes.api_errors = scalar("api_errors", levers.api_errors)?;
    changes.app_crashes = scalar("app_crashes", levers.app_crashes)?;
    changes.support_staffing = scalar("support_staffing", levers.support_staffing)?;
    changes.ad_spend = scalar("ad_spend", levers.ad_spend)?;
    changes.low_ratings = scalar("low_ratings", levers.low_ratings)?;
    changes.tutor_accept = scalar("tutor_accept", levers.tutor_accept)?;
    for (name, moved) in [
        (
            "demand",
            changes.demand_by_subject.iter().any(|v| *v != 1.0),
        ),
        (
            "supply",
            changes.supply_by_subject.iter().any(|v| *v != 1.0),
        ),
        ("payment_failure", changes.payment_failure != 1.0),
        ("api_errors", changes.api_errors != 1.0),
        ("app_crashes", changes.app_crashes != 1.0),
        ("support_staffing", changes.support_staffing != 1.0),
        ("ad_spend", changes.ad_spend != 1.0),
        ("low_ratings", changes.low_ratings != 1.0),
        ("tutor_accept", changes.tutor_accept != 1.0),
    ] {
        if moved {
            touches.push(format!("lever:{name}"));
        }
    }
    Ok((
        Modifiers {
            streams: stream_changes,
            levers: changes,
        },
        touches,
    ))
}

impl ScenarioDefinition {
    /// Validates a raw scenario against the catalog and the events library.
    pub fn resolve(
        source: &SourceText,
        raw: &RawScenario,
        catalog: &Catalog,
        events: &[EventTemplate],
    ) -> Result<Self, Diagnostic> {
        let id_anchor = format!("id: {}", raw.id);
        check_id(source, &id_anchor, &raw.id)?;
        let duration_ms = duration_field(
            source,
            &[&id_anchor, "duration:"],
            &raw.duration,
            MAX_SCENARIO_DURATION_MS,
            "duration",
        )?;
        if duration_ms == 0 {
            return Err(source.error(
                &[&id_anchor, "duration:"],
                "a scenario lasts longer than 0s",
            ));
        }
        let settlement_ms = duration_field(
            source,
            &[&id_anchor, "settlement:"],
            &raw.settlement,
            MAX_SETTLEMENT_MS,
            "settlement",
        )?;
        let (modifiers, touches) = resolve_modifiers(
            source,
            &id_anchor,
            catalog,
            &raw.modifiers.streams,
            &raw.modifiers.levers,
        )?;
        let mut injected = Vec::new();
        for reference in &raw.events {
            let anchors = [id_anchor.as_str(), "ref:", reference.reference.as_str()];
            if !events.iter().any(|e| e.id == reference.reference) {
                return Err(source
                    .error(&anchors, format!("unknown event `{}`", reference.reference))
                    .with_help(suggestion(
                        &reference.reference,
                        events.iter().map(|e| e.id.as_str()),
                    )));
            }
            let offset = match &reference.offset {
                None => 0,
                Some(text) => {
                    duration_field(source, &anchors, text, MAX_SCENARIO_DURATION_MS, "offset")?
                }
            };
            injected.push((reference.reference.clone(), offset));
        }
        Ok(ScenarioDefinition {
            id: raw.id.clone(),
            name: raw.name.clone(),
            description: raw.description.clone(),
            duration_ms,
            settlement_ms,
            modifiers,
            touches,
            events: injected,
            cascade: raw.cascade.trim().to_string(),
            source: source.path.to_path_buf(),
        })
    }
}

fn check_id(source: &SourceText, anchor: &str, id: &str) -> Result<(), Diagnostic> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(source.error(
            &[anchor],
            format!("`{id}` is not an id; use 1 to 64 characters of a-z, 0-9 and -"),
        ))
    }
}

impl EventTemplate {
    pub fn resolve(
        source: &SourceText,
        raw: &RawEventTemplate,
        catalog: &Catalog,
    ) -> Result<Self, Diagnostic> {
        let id_anchor = format!("id: {}", raw.id);
        check_id(source, &id_anchor, &raw.id)?;
        for pattern in &raw.expected_impact.streams {
            if matching_streams(catalog, pattern).is_empty() {
                return Err(source
                    .error(
                        &[&id_anchor, pattern],
                        format!("expectedImpact names `{pattern}`, which matches no stream"),
                    )
                    .with_help(suggestion(pattern, catalog.stream_names())));
            }
        }
        let expected_duration_ms = duration_field(
            source,
            &[&id_anchor, "duration:"],
            &raw.expected_impact.duration,
            366 * MS_PER_DAY,
            "expected duration",
        )?;
        let effect = match &raw.effect {
            None => None,
            Some(effect) => {
                let anchors = [id_anchor.as_str(), "effect:"];
                let duration_ms = duration_field(
                    source,
                    &anchors,
                    &effect.duration,
                    MAX_SCENARIO_DURATION_MS,
                    "effect duration",
                )?;
                let settlement_ms = duration_field(
                    source,
                    &anchors,
                    &effect.settlement,
                    MAX_SETTLEMENT_MS,
                    "effect settlement",
                )?;
                let (modifiers, _) = resolve_modifiers(
                    source,
                    &id_anchor,
                    catalog,
                    &effect.streams,
                    &effect.levers,
                )?;
                Some(Effect {
                    duration_ms,
                    settlement_ms,
                    modifiers,
                })
            }
        };
        Ok(EventTemplate {
            id: raw.id.clone(),
            kind: raw.kind,
            title: raw.title.clone(),
            description: raw.description.clone(),
            severity: raw.severity,
            expected_impact: raw.expected_impact.clone(),
            expected_duration_ms,
            icon: raw.icon.clone(),
            external_link: raw.external_link.clone(),
            background: resolve_background(source, &id_anchor, &raw.background)?,
            effect,
        })
    }
}

/// Checks a template's background schedule: a chance in (0, 1], known weekdays, hours in order.
fn resolve_background(
    source: &SourceText,
    id_anchor: &str,
    raw: &RawBackground,
) -> Result<Option<BackgroundSchedule>, Diagnostic> {
    let schedule = match raw {
        RawBackground::Always(false) => return Ok(None),
        RawBackground::Always(true) => return Ok(Some(BackgroundSchedule::WEEKLY)),
        RawBackground::Schedule(schedule) => schedule,
    };
    let anchors = [id_anchor, "background:"];
    if !(schedule.chance > 0.0 && schedule.chance <= 1.0) {
        return Err(source.error(
            &[id_anchor, "chance:"],
            format!(
                "background chance {} is not a probability in (0, 1]",
                schedule.chance
            ),
        ));
    }
    let mut weekdays = [schedule.weekdays.is_empty(); 7];
    for name in &schedule.weekdays {
        let weekday: chrono::Weekday = name.parse().map_err(|_| {
            source.error(
                &[id_anchor, "weekdays:"],
                format!("`{name}` is not a weekday; write mon, tue, wed, thu, fri, sat or sun"),
            )
        })?;
        weekdays[weekday.num_days_from_monday() as usize] = true;
    }
    let [from_hour, to_hour] = schedule.hours.unwrap_or([7, 22]);
    if from_hour >= to_hour || to_hour > 24 {
        return Err(source.error(
            &anchors,
            format!(
                "background hours [{from_hour}, {to_hour}] are not a range of the day \
                 (from < to ≤ 24)"
            ),
        ));
    }
    Ok(Some(BackgroundSchedule {
        recurrence: schedule.recurrence,
        chance: schedule.chance,
        weekdays,
        from_hour,
        to_hour,
    }))
}

/// Parses and validates an event library (`events.yaml`) against the catalog.
pub fn parse_event_library(
    path: &Path,
    text: &str,
    catalog: &Catalog,
) -> Result<Vec<EventTemplate>, Diagnostic> {
    let raw_events: RawEventsFile =
        serde_yaml::from_str(text).map_err(|e| Diagnostic::from_yaml_in(path, text, &e))?;
    let source = SourceText { path, text };
    let mut events: Vec<EventTemplate> = Vec::new();
    for raw in &raw_events.events {
        if events.iter().any(|e| e.id == raw.id) {
            return Err(source.error(
                &[&format!("id: {}", raw.id), &format!("id: {}", raw.id)],
                format!("duplicate event id `{}`", raw.id),
            ));
        }
        events.push(EventTemplate::resolve(&source, raw, catalog)?);
    }
    Ok(events)
}

/// Parses and validates one scenario library file (`library/<id>.yaml`) against the catalog
/// and the event library; its id must equal its file name.
pub fn parse_scenario_file(
    path: &Path,
    text: &str,
    catalog: &Catalog,
    events: &[EventTemplate],
) -> Result<ScenarioDefinition, Diagnostic> {
    let raw: RawScenario =
        serde_yaml::from_str(text).map_err(|e| Diagnostic::from_yaml_in(path, text, &e))?;
    let source = SourceText { path, text };
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    if raw.id != stem {
        return Err(source.error(
            &["id:"],
            format!(
                "scenario id `{}` differs from its file name `{stem}.yaml`",
                raw.id
            ),
        ));
    }
    ScenarioDefinition::resolve(&source, &raw, catalog, events)
}

impl Library {
    /// Loads the events file and every scenario file of a library folder, or the embedded
    /// library when `folder` is `None`.
    pub fn load(folder: Option<&Path>, catalog: &Catalog) -> Result<Library, Diagnostic> {
        let (events_path, events_text, scenario_texts) = match folder {
            None => (
                PathBuf::from("<embedded>/events.yaml"),
                EMBEDDED_EVENTS.to_string(),
                EMBEDDED_SCENARIOS
                    .iter()
                    .map(|(id, text)| {
                        (
                            PathBuf::from(format!("<embedded>/library/{id}.yaml")),
                            text.to_string(),
                        )
                    })
                    .collect::<Vec<_>>(),
            ),
            Some(folder) => {
                let events_path = folder.join("events.yaml");
                let events_text = std::fs::read_to_string(&events_path).map_err(|e| {
                    Diagnostic::new(&events_path, format!("cannot read the events library: {e}"))
                })?;
                let library = folder.join("library");
                let mut files: Vec<PathBuf> = std::fs::read_dir(&library)
                    .map_err(|e| {
                        Diagnostic::new(&library, format!("cannot read the scenario library: {e}"))
                    })?
                    .flatten()
                    .map(|entry| entry.path())
                    .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
                    .collect();
                files.sort();
                let mut texts = Vec::new();
                for file in files {
                    let text = std::fs::read_to_string(&file)
                        .map_err(|e| Diagnostic::new(&file, format!("cannot read: {e}")))?;
                    texts.push((file, text));
                }
                (events_path, events_text, texts)
            }
        };
        let events = parse_event_library(&events_path, &events_text, catalog)?;
        let mut scenarios: Vec<ScenarioDefinition> = Vec::new();
        for (path, text) in &scenario_texts {
            let scenario = parse_scenario_file(path, text, catalog, &events)?;
            if scenarios.iter().any(|s| s.id == scenario.id) {
                let source = SourceText { path, text };
                return Err(
                    source.error(&["id:"], format!("duplicate scenario id `{}`", scenario.id))
                );
            }
            scenarios.push(scenario);
        }
        Ok(Library { scenarios, events })
    }

    pub fn scenario(&self, id: &str) -> Option<&ScenarioDefinition> {
        self.scenarios.iter().find(|s| s.id == id)
    }

    pub fn event(&self, id: &str) -> Option<&EventTemplate> {
        self.events.iter().find(|e| e.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_across_dots() {
        assert!(glob_matches("customer.*", "customer.tutor.search"));
        assert!(glob_matches("*.search", "customer.tutor.search"));
        assert!(glob_matches(
            "session.*.requested",
            "session.booking.requested"
        ));
        assert!(!glob_matches("customer.*", "session.started"));
        assert!(glob_matches("session.started", "session.started"));
    }

    #[test]
    fn the_embedded_library_is_valid() {
        let catalog = Catalog::embedded().unwrap_or_else(|e| panic!("{e}"));
        let library = Library::load(None, &catalog).unwrap_or_else(|e| panic!("{e}"));
        assert!(library.scenarios.len() >= 12);
        assert!(library.events.len() >= 30);
    }
}
