//! The marketplace catalog: subjects, seasonality profiles, flow parameters and stream
//! definitions, parsed from YAML in two stages (raw serde shape, then a validated [`Catalog`]).
//!
//! A `Catalog` is only ever built by [`Catalog::parse`], so holding one means every reference
//! inside it resolves: profile names exist, probabilities are in [0, 1], each stream the model's
//! flows emit is present with the right origin, and each stream's payload keys match what the
//! model writes. The model can then index without checks.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::{self, Deserializer};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::roles::{self, Role};
use crate::diagnostics::{locate, parse_duration_ms, suggestion, Diagnostic};

/// The catalog bundled into the binary, used when a script names none.
pub const EMBEDDED_CATALOG: &str = include_str!("../../scenarios/marketplace.yaml");
/// The name under which the embedded catalog appears in messages and summaries.
pub const EMBEDDED_CATALOG_NAME: &str = "<embedded>/marketplace.yaml";

/// Limits that keep a catalog from exhausting memory or time.
pub const MAX_CATALOG_BYTES: usize = 4 * 1024 * 1024;
pub const MAX_STREAMS: usize = 1_000;
pub const MAX_SUBJECTS: usize = 32;
pub const MAX_TUTORS_PER_SUBJECT: u32 = 100_000;
pub const MAX_RATE_PER_HOUR: f64 = 1_000_000.0;

/// The domains a stream may belong to; a stream's name starts with its domain.
pub const DOMAINS: &[&str] = &[
    "customer",
    "tutor",
    "session",
    "payment",
    "support",
    "marketing",
    "platform",
];

/// Index of a stream in catalog order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StreamId(pub u16);

impl StreamId {
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cadence {
    /// Several events per second at peak.
    High,
    /// Events per minute.
    Medium,
    /// Events per hour or per day.
    Low,
}

impl Cadence {
    pub fn as_str(self) -> &'static str {
        match self {
            Cadence::High => "high",
            Cadence::Medium => "medium",
            Cadence::Low => "low",
        }
    }
}

/// A reading of model state that a gauge stream reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GaugeMetric {
    TutorsOnline,
    SupportQueueDepth,
    ApiLatencyMs,
    AdSpend,
}

impl GaugeMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            GaugeMetric::TutorsOnline => "tutors_online",
            GaugeMetric::SupportQueueDepth => "support_queue_depth",
            GaugeMetric::ApiLatencyMs => "api_latency_ms",
            GaugeMetric::AdSpend => "ad_spend",
        }
    }
}

/// Where a stream's events come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// Independent arrivals at `per_hour` × the profile's multiplier.
    Source { per_hour: f64, profile: usize },
    /// Emitted by entity flows only.
    Flow,
    /// A reading every `every_ms`.
    Gauge { every_ms: u64, metric: GaugeMetric },
}

impl Origin {
    pub fn kind_name(&self) -> &'static str {
        match self {
            Origin::Source { .. } => "source",
            Origin::Flow => "flow",
            Origin::Gauge { .. } => "gauge",
        }
    }
    pub fn is_gauge(&self) -> bool {
        matches!(self, Origin::Gauge { .. })
    }
}

#[derive(Debug, Clone)]
pub struct StreamDefinition {
    pub id: StreamId,
    pub name: String,
    pub domain: String,
    pub description: String,
    pub cadence: Cadence,
    pub unit: String,
    pub origin: Origin,
    pub role: Role,
    pub payload_fields: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Subject {
    pub name: String,
    pub demand_share: f64,
    pub tutors: u32,
    pub price_per_hour: f64,
}

#[derive(Debug, Clone)]
pub struct Profile {
    pub name: String,
    pub hourly: [f64; 24],
    /// Monday first.
    pub weekly: [f64; 7],
    /// Whether the academic calendar multiplies this profile.
    pub academic: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PeriodKind {
    Exam,
    Holiday,
}

/// A recurring month-day, e.g. 01-06.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct MonthDay {
    pub month: u32,
    pub day: u32,
}

impl<'de> Deserialize<'de> for MonthDay {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let parsed = text
            .split_once('-')
            .and_then(|(m, d)| Some((m.parse::<u32>().ok()?, d.parse::<u32>().ok()?)));
        match parsed {
            Some((month, day)) if (1..=12).contains(&month) && (1..=31).contains(&day) => {
                Ok(MonthDay { month, day })
            }
            _ => Err(de::Error::custom(format!(
                "`{text}` is not a month-day; write MM-DD, e.g. 05-01"
            ))),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarPeriod {
    pub name: String,
    pub kind: PeriodKind,
    pub from: MonthDay,
    pub to: MonthDay,
    #[serde(deserialize_with = "multiplier")]
    pub demand: f64,
}

impl CalendarPeriod {
    /// Whether the period covers `date` (inclusive; a period may wrap over the new year).
    pub fn covers(&self, date: MonthDay) -> bool {
        if self.from <= self.to {
            self.from <= date && date <= self.to
        } else {
            date >= self.from || date <= self.to
        }
    }
}

/// The numbers that drive the entity flows. Probabilities are in [0, 1]; durations in ms.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowParameters {
    #[serde(deserialize_with = "non_negative")]
    pub profile_views_per_search: f64,
    #[serde(deserialize_with = "probability")]
    pub view_to_message: f64,
    #[serde(deserialize_with = "probability")]
    pub view_to_favorite: f64,
    #[serde(deserialize_with = "probability")]
    pub search_to_request: f64,
    #[serde(deserialize_with = "non_negative")]
    pub supply_visibility_half: f64,
    #[serde(deserialize_with = "positive")]
    pub response_tutor_minutes: f64,
    #[serde(deserialize_with = "positive")]
    pub requests_per_tutor: f64,
    #[serde(deserialize_with = "duration_ms")]
    pub request_expiry: u64,
    #[serde(deserialize_with = "probability")]
    pub tutor_accept: f64,
    #[serde(deserialize_with = "duration_ms")]
    pub booking_lead_mean: u64,
    #[serde(deserialize_with = "probability")]
    pub cancel_before_start: f64,
    #[serde(deserialize_with = "probability")]
    pub reschedule_before_start: f64,
    #[serde(deserialize_with = "probability")]
    pub noshow_student: f64,
    #[serde(deserialize_with = "probability")]
    pub noshow_tutor: f64,
    pub session_minutes: Vec<u16>,
    pub session_minutes_weights: Vec<f64>,
    #[serde(deserialize_with = "probability")]
    pub rating_share: f64,
    #[serde(deserialize_with = "probability")]
    pub low_rating_share: f64,
    #[serde(deserialize_with = "probability")]
    pub subscription_after_session: f64,
    #[serde(deserialize_with = "probability")]
    pub referral_after_top_rating: f64,
    #[serde(deserialize_with = "probability")]
    pub payment_failure: f64,
    #[serde(deserialize_with = "probability")]
    pub ticket_after_payment_failure: f64,
    #[serde(deserialize_with = "probability")]
    pub churn_after_payment_failure: f64,
    #[serde(deserialize_with = "probability")]
    pub ticket_after_low_rating: f64,
    #[serde(deserialize_with = "probability")]
    pub churn_after_low_rating: f64,
    #[serde(deserialize_with = "probability")]
    pub refund_after_low_rating: f64,
    #[serde(deserialize_with = "probability")]
    pub chargeback_after_low_rating: f64,
    #[serde(deserialize_with = "probability")]
    pub tutor_churn_after_low_rating: f64,
    #[serde(deserialize_with = "probability")]
    pub ticket_after_tutor_noshow: f64,
    #[serde(deserialize_with = "probability")]
    pub refund_after_tutor_noshow: f64,
    #[serde(deserialize_with = "probability")]
    pub churn_to_deletion: f64,
    #[serde(deserialize_with = "duration_ms")]
    pub ticket_delay_mean: u64,
    /// Tickets the support team resolves per hour at support-profile multiplier 1.0.
    pub support_capacity: u32,
    #[serde(deserialize_with = "probability")]
    pub escalation_share: f64,
    #[serde(deserialize_with = "probability")]
    pub csat_after_resolution: f64,
    #[serde(deserialize_with = "probability")]
    pub chat_to_ticket: f64,
    #[serde(deserialize_with = "probability")]
    pub crash_to_ticket: f64,
    #[serde(deserialize_with = "probability")]
    pub api_error_to_ticket: f64,
    #[serde(deserialize_with = "probability")]
    pub impression_to_click: f64,
    #[serde(deserialize_with = "probability")]
    pub click_to_search: f64,
    #[serde(deserialize_with = "probability")]
    pub click_to_signup: f64,
    #[serde(deserialize_with = "probability")]
    pub signup_to_search: f64,
    #[serde(deserialize_with = "probability")]
    pub email_open: f64,
    #[serde(deserialize_with = "probability")]
    pub open_to_search: f64,
    #[serde(deserialize_with = "non_negative")]
    pub tutor_online_rate_per_hour: f64,
    #[serde(deserialize_with = "duration_ms")]
    pub tutor_stint_mean: u64,
    #[serde(deserialize_with = "probability")]
    pub tutor_onboarding_share: f64,
    pub payout_hour: u8,
    /// The profile that paces tutors coming online.
    pub supply_profile: String,
    /// The profile that scales staffed support capacity.
    pub support_profile: String,
    #[serde(deserialize_with = "positive")]
    pub api_latency_ms: f64,
    pub customers_initial: u32,
}

fn probability<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    let value = f64::deserialize(deserializer)?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(de::Error::custom(format!(
            "{value} is not a probability; allowed: 0.0 to 1.0"
        )))
    }
}

fn non_negative<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    let value = f64::deserialize(deserializer)?;
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(de::Error::custom(format!(
            "{value} must be a finite number ≥ 0"
        )))
    }
}

fn positive<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    let value = f64::deserialize(deserializer)?;
    if value.is_finite() && value > 0.0 {
        Ok(value)
    } else {
        Err(de::Error::custom(format!(
            "{value} must be a finite number > 0"
        )))
    }
}

/// A seasonal or calendar multiplier; 0 to 20 keeps rates sane.
fn multiplier<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
    let value = f64::deserialize(deserializer)?;
    if value.is_finite() && (0.0..=20.0).contains(&value) {
        Ok(value)
    } else {
        Err(de::Error::custom(format!(
            "{value} is not a multiplier; allowed: 0.0 to 20.0"
        )))
    }
}

fn duration_ms<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration_ms(&text).map_err(de::Error::custom)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    version: u32,
    subjects: Vec<RawSubject>,
    seasonality: RawSeasonality,
    flows: FlowParameters,
    streams: Vec<RawStream>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSubject {
    name: String,
    #[serde(deserialize_with = "non_negative")]
    demand_share: f64,
    tutors: u32,
    #[serde(deserialize_with = "positive")]
    price_per_hour: f64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeasonality {
    #[serde(deserialize_with = "non_negative")]
    growth_per_month: f64,
    #[serde(deserialize_with = "non_negative")]
    daily_noise: f64,
    profiles: BTreeMap<String, RawProfile>,
    calendar: Vec<CalendarPeriod>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    hourly: [f64; 24],
    weekly: [f64; 7],
    academic: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStream {
    name: String,
    domain: String,
    description: String,
    cadence: Cadence,
    unit: String,
    origin: RawOrigin,
    payload: Vec<String>,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum RawOrigin {
    Source {
        #[serde(deserialize_with = "non_negative")]
        per_hour: f64,
        profile: String,
    },
    Flow,
    Gauge {
        #[serde(deserialize_with = "duration_ms")]
        every: u64,
        metric: GaugeMetric,
    },
}

/// The validated marketplace definition.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub version: u32,
    pub subjects: Vec<Subject>,
    pub profiles: Vec<Profile>,
    pub growth_per_month: f64,
    pub daily_noise: f64,
    pub calendar: Vec<CalendarPeriod>,
    pub flows: FlowParameters,
    /// Index of `flows.supply_profile` in `profiles`.
    pub supply_profile: usize,
    /// Index of `flows.support_profile` in `profiles`.
    pub support_profile: usize,
    pub streams: Vec<StreamDefinition>,
    /// SHA-256 of the catalog text, hex (the text's, whatever the scale).
    pub sha256: String,
    /// The marketplace size factor this catalog was scaled by ([`Catalog::scaled`]); 1 as read.
    pub scale: u32,
}

/// The largest marketplace size factor (`scale:`, `--scale`). At ×100 a run holds about 1.7 M
/// events pending at once, a tenth of the event queue's limit.
pub const MAX_SCALE: u32 = 100;

/// The scale of a file that does not say (`#[serde(default = …)]`): the catalog as read.
pub fn unit_scale() -> u32 {
    1
}

/// Whether a scale is the default, so files written at it leave the field out
/// (`#[serde(skip_serializing_if = …)]`) and read the same as before the field existed.
pub fn is_unit_scale(scale: &u32) -> bool {
    *scale == 1
}

impl Catalog {
    /// The catalog bundled with the binary.
    pub fn embedded() -> Result<Catalog, Diagnostic> {
        Catalog::parse(Path::new(EMBEDDED_CATALOG_NAME), EMBEDDED_CATALOG)
    }

    /// Parses and validates catalog text; `path` is used in diagnostics only.
    pub fn parse(path: &Path, source: &str) -> Result<Catalog, Diagnostic> {
        if source.len() > MAX_CATALOG_BYTES {
            return Err(Diagnostic::new(
                path,
                format!(
                    "catalog is {} bytes; the limit is {MAX_CATALOG_BYTES}",
                    source.len()
                ),
            ));
        }
        let raw: RawCatalog =
            serde_yaml::from_str(source).map_err(|e| Diagnostic::from_yaml(path, &e))?;
        let error = |anchors: &[&str], message: String| {
            Diagnostic::new(path, message).at(locate(source, anchors))
        };

        if raw.version != 1 {
            return Err(error(
                &["version:"],
                format!("catalog version {} is not supported", raw.version),
            )
            .with_help("allowed: 1"));
        }

        if raw.subjects.is_empty() || raw.subjects.len() > MAX_SUBJECTS {
            return Err(error(
                &["subjects:"],
                format!(
                    "a catalog needs 1 to {MAX_SUBJECTS} subjects, found {}",
                    raw.subjects.len()
                ),
            ));
        }
        let mut subjects = Vec::new();
        for subject in &raw.subjects {
            let anchor = format!("name: {}", subject.name);
            if subjects.iter().any(|s: &Subject| s.name == subject.name) {
                return Err(error(
                    &["subjects:", &anchor],
                    format!("duplicate subject `{}`", subject.name),
                ));
            }
            if subject.tutors == 0 || subject.tutors > MAX_TUTORS_PER_SUBJECT {
                return Err(error(
                    &["subjects:", &anchor, "tutors:"],
                    format!(
                        "subject `{}` has {} tutors; allowed: 1 to {MAX_TUTORS_PER_SUBJECT}",
                        subject.name, subject.tutors
                    ),
                ));
            }
            subjects.push(Subject {
                name: subject.name.clone(),
                demand_share: subject.demand_share,
                tutors: subject.tutors,
                price_per_hour: subject.price_per_hour,
            });
        }
        if subjects.iter().all(|s| s.demand_share == 0.0) {
            return Err(error(
                &["subjects:"],
                "every subject has demand_share 0".to_string(),
            ));
        }

        let mut profiles = Vec::new();
        for (name, profile) in &raw.seasonality.profiles {
            let values = profile.hourly.iter().chain(profile.weekly.iter());
            if values
                .clone()
                .any(|v| !v.is_finite() || *v < 0.0 || *v > 20.0)
            {
                return Err(error(
                    &["profiles:", &format!("{name}:")],
                    format!("profile `{name}` has a multiplier outside 0.0 to 20.0"),
                ));
            }
            profiles.push(Profile {
                name: name.clone(),
                hourly: profile.hourly,
                weekly: profile.weekly,
                academic: profile.academic,
            });
        }

        let flows = raw.flows;
        if flows.session_minutes.is_empty()
            || flows.session_minutes.len() != flows.session_minutes_weights.len()
            || flows
                .session_minutes_weights
                .iter()
                .any(|w| !w.is_finite() || *w < 0.0)
            || flows.session_minutes_weights.iter().sum::<f64>() <= 0.0
            || flows.session_minutes.iter().any(|m| *m == 0 || *m > 480)
        {
            return Err(error(
                &["session_minutes:"],
                "session_minutes (1 to 480 each) and session_minutes_weights (≥ 0, not all 0) must be non-empty lists of the same length".to_string(),
            ));
        }
        if flows.payout_hour > 23 {
            return Err(error(
                &["payout_hour:"],
                format!(
                    "payout_hour {} is not an hour; allowed: 0 to 23",
                    flows.payout_hour
                ),
            ));
        }
        if flows.request_expiry == 0 || flows.tutor_stint_mean == 0 {
            return Err(error(
                &["flows:"],
                "request_expiry and tutor_stint_mean must be longer than 0".to_string(),
            ));
        }

        let profile_index = |field: &str, name: &str| {
            profiles.iter().position(|p| p.name == name).ok_or_else(|| {
                error(
                    &["flows:", &format!("{field}:")],
                    format!("{field} names unknown profile `{name}`"),
                )
                .with_help(suggestion(name, profiles.iter().map(|p| p.name.as_str())))
            })
        };
        let supply_profile = profile_index("supply_profile", &flows.supply_profile)?;
        let support_profile = profile_index("support_profile", &flows.support_profile)?;

        if raw.streams.len() > MAX_STREAMS {
            return Err(error(
                &["streams:"],
                format!("{} streams; the limit is {MAX_STREAMS}", raw.streams.len()),
            ));
        }
        let mut streams: Vec<StreamDefinition> = Vec::new();
        for (index, stream) in raw.streams.into_iter().enumerate() {
            let anchor = format!("name: {}", stream.name);
            let at = |field: &str| {
                let field_anchor = format!("{field}:");
                locate(source, &["streams:", &anchor, &field_anchor])
            };
            check_stream_name(&stream.name).map_err(|m| Diagnostic::new(path, m).at(at("name")))?;
            if streams.iter().any(|s| s.name == stream.name) {
                return Err(
                    Diagnostic::new(path, format!("duplicate stream `{}`", stream.name))
                        .at(at("name")),
                );
            }
            if !DOMAINS.contains(&stream.domain.as_str()) {
                return Err(Diagnostic::new(
                    path,
                    format!(
                        "stream `{}` has unknown domain `{}`",
                        stream.name, stream.domain
                    ),
                )
                .at(at("domain"))
                .with_help(suggestion(&stream.domain, DOMAINS.iter().copied())));
            }
            if !stream.name.starts_with(&format!("{}.", stream.domain)) {
                return Err(Diagnostic::new(
                    path,
                    format!(
                        "stream `{}` must start with its domain `{}.`",
                        stream.name, stream.domain
                    ),
                )
                .at(at("name")));
            }
            let origin = match stream.origin {
                RawOrigin::Source { per_hour, profile } => {
                    let Some(profile_index) = profiles.iter().position(|p| p.name == profile)
                    else {
                        return Err(Diagnostic::new(
                            path,
                            format!("stream `{}` names unknown profile `{profile}`", stream.name),
                        )
                        .at(at("profile"))
                        .with_help(suggestion(
                            &profile,
                            profiles.iter().map(|p| p.name.as_str()),
                        )));
                    };
                    if per_hour > MAX_RATE_PER_HOUR {
                        return Err(Diagnostic::new(path, format!("stream `{}` rate {per_hour}/h is over the limit {MAX_RATE_PER_HOUR}/h", stream.name)).at(at("per_hour")));
                    }
                    Origin::Source {
                        per_hour,
                        profile: profile_index,
                    }
                }
                RawOrigin::Flow => Origin::Flow,
                RawOrigin::Gauge { every, metric } => {
                    if !(1_000..=86_400_000).contains(&every) {
                        return Err(Diagnostic::new(
                            path,
                            format!(
                                "gauge `{}` reads every {every} ms; allowed: 1s to 1d",
                                stream.name
                            ),
                        )
                        .at(at("every")));
                    }
                    Origin::Gauge {
                        every_ms: every,
                        metric,
                    }
                }
            };
            let role = roles::role_for_name(&stream.name);
            let expected_origin = roles::origin_kind(role, &origin);
            if origin.kind_name() != expected_origin {
                let help = if role == Role::Generic && origin == Origin::Flow {
                    format!(
                        "only the model's flows emit flow streams; they are: {}",
                        roles::flow_stream_names().join(", ")
                    )
                } else {
                    format!("`{}` must have origin `{expected_origin}`", stream.name)
                };
                return Err(Diagnostic::new(
                    path,
                    format!(
                        "stream `{}` cannot have origin `{}`",
                        stream.name,
                        origin.kind_name()
                    ),
                )
                .at(at("origin"))
                .with_help(help));
            }
            let expected_fields = roles::payload_fields(role, &origin);
            if stream.payload != expected_fields {
                return Err(Diagnostic::new(
                    path,
                    format!(
                        "stream `{}` lists payload {:?}, but the model writes {:?}",
                        stream.name, stream.payload, expected_fields
                    ),
                )
                .at(at("payload"))
                .with_help(format!("payload: [{}]", expected_fields.join(", "))));
            }
            streams.push(StreamDefinition {
                id: StreamId(index as u16),
                name: stream.name,
                domain: stream.domain,
                description: stream.description,
                cadence: stream.cadence,
                unit: stream.unit,
                origin,
                role,
                payload_fields: stream.payload,
            });
        }
        for required in roles::REQUIRED {
            if !streams.iter().any(|s| s.name == required.name) {
                return Err(error(
                    &["streams:"],
                    format!(
                        "the catalog lacks stream `{}`, which the model's flows emit",
                        required.name
                    ),
                )
                .with_help(format!(
                    "add `- name: {}` with origin `{}`",
                    required.name, required.origin
                )));
            }
        }

        Ok(Catalog {
            version: raw.version,
            subjects,
            profiles,
            growth_per_month: raw.seasonality.growth_per_month,
            daily_noise: raw.seasonality.daily_noise,
            calendar: raw.seasonality.calendar,
            flows,
            supply_profile,
            support_profile,
            streams,
            sha256: hex_sha256(source.as_bytes()),
            scale: 1,
        })
    }

    /// The same marketplace `factor` times as large: `factor` times the tutors, the customers,
    /// every source's rate but deploys' (engineering does not grow with the marketplace), the
    /// support team's capacity — and, so that each student and tutor sees the marketplace they
    /// saw before, the supply it takes to be visible (`supply_visibility_half`) and the tutor
    /// pool's response constant (`response_tutor_minutes`, divided by a supply `factor` times
    /// larger). A scaled world is `factor` copies of the original in its ratios: conversion,
    /// expiry, queue waits and latency keep their levels while counts grow `factor`-fold, so
    /// cost per event can be measured as the world grows (`marketsim run --scale`).
    pub fn scaled(&self, factor: u32) -> Catalog {
        let mut scaled = self.clone();
        if factor == 1 {
            return scaled;
        }
        let k = f64::from(factor);
        scaled.scale = self.scale * factor;
        for subject in &mut scaled.subjects {
            subject.tutors = subject.tutors.saturating_mul(factor);
        }
        for stream in &mut scaled.streams {
            if let Origin::Source { per_hour, .. } = &mut stream.origin {
                if stream.role != Role::Deploy {
                    *per_hour *= k;
                }
            }
        }
        let flows = &mut scaled.flows;
        flows.customers_initial = flows.customers_initial.saturating_mul(factor);
        flows.support_capacity = flows.support_capacity.saturating_mul(factor);
        flows.supply_visibility_half *= k;
        flows.response_tutor_minutes *= k;
        scaled
    }

    /// How much a stream's level grows with the marketplace's size in this catalog: the scale
    /// for counts (sources but deploys, flows, gauges of tutors online, queue depth and ad spend),
    /// 1 for deploys and API latency. A scenario's offset or override on the stream is scaled
    /// by it, so "+40 an hour" means the same share of the marketplace at every size.
    pub fn volume_scale(&self, stream: usize) -> f64 {
        let definition = &self.streams[stream];
        let fixed = definition.role == Role::Deploy
            || matches!(
                definition.origin,
                Origin::Gauge {
                    metric: GaugeMetric::ApiLatencyMs,
                    ..
                }
            );
        if fixed {
            1.0
        } else {
            f64::from(self.scale)
        }
    }

    /// Looks up a stream by exact name.
    pub fn stream(&self, name: &str) -> Option<&StreamDefinition> {
        self.streams.iter().find(|s| s.name == name)
    }

    /// Looks up a stream, or explains what was meant.
    pub fn stream_or_suggest(&self, name: &str) -> Result<&StreamDefinition, String> {
        self.stream(name).ok_or_else(|| {
            format!(
                "no stream named `{name}`; {}",
                suggestion(name, self.streams.iter().map(|s| s.name.as_str()))
            )
        })
    }

    pub fn stream_names(&self) -> impl Iterator<Item = &str> + Clone {
        self.streams.iter().map(|s| s.name.as_str())
    }
}

fn check_stream_name(name: &str) -> Result<(), String> {
    let segments: Vec<&str> = name.split('.').collect();
    let well_formed = (2..=4).contains(&segments.len())
        && segments.iter().all(|s| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
    if well_formed && name.len() <= 64 {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a stream name; write 2 to 4 dot-separated segments of a-z, 0-9 and _, e.g. customer.tutor.search"
        ))
    }
}

/// Lower-case hex SHA-256.
pub fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_is_valid_and_has_fifty_streams() {
        let catalog = Catalog::embedded().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(catalog.streams.len(), 50);
    }

    #[test]
    fn calendar_periods_wrap_over_new_year() {
        let period = CalendarPeriod {
            name: "w".into(),
            kind: PeriodKind::Holiday,
            from: MonthDay { month: 12, day: 20 },
            to: MonthDay { month: 1, day: 3 },
            demand: 0.6,
        };
        assert!(period.covers(MonthDay { month: 1, day: 2 }));
        assert!(period.covers(MonthDay { month: 12, day: 25 }));
        assert!(!period.covers(MonthDay { month: 1, day: 4 }));
    }
}
