//! Random run scripts for measuring how the analyst generalizes (issue 13 item 10): a
//! deterministic generator that draws, from `(seed, index)`, a script in the documented format —
//! any month of 2024–2026, any hour and weekday, 3–10 days, 0–3 library scenarios at daytimes,
//! nights and weekends, overlaps, early stops and resets, overrides, inline variants, injected
//! events with red herrings placed just before real causes, backdated times, and quiet runs.
//!
//! Everything it names comes from the embedded library as [`Library::load`] reads it, so a
//! scenario or event added to the library is drawn without touching this file. The script is
//! built from the same serde shapes the parser reads ([`RawEntry`], [`RawScenario`]) and
//! serialised with serde_yaml, so it is valid by construction wherever the shapes can make it
//! so; the rest (times inside the run, `stop:` after its start) is kept by how times are drawn,
//! and a proptest checks every generated script with the validation API.

use chrono::{DateTime, Datelike, Duration, TimeZone, Timelike, Utc, Weekday};
use rand::Rng;
use rand_pcg::Pcg64;
use serde::Serialize;

use super::definition::{Library, RawScenario, ScenarioDefinition, EMBEDDED_SCENARIOS};
use super::timeline::{RawEntry, RawEventEntry};
use crate::diagnostics::Diagnostic;
use crate::engine::{MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE};
use crate::market::Catalog;

/// Shortest and longest generated run, in days.
pub const MIN_RANDOM_DAYS: u32 = 3;
pub const MAX_RANDOM_DAYS: u32 = 10;
/// The share of runs with no timeline at all: the false-alarm side of the measurement.
pub const QUIET_RUN_SHARE: f64 = 0.15;
/// How long before a real scenario's start a red herring may be placed.
pub const RED_HERRING_LEAD_MS: u64 = 3 * MS_PER_HOUR;

/// Options that shape every script of a set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RandomScriptOptions {
    /// The longest run drawn, in days (at least [`MIN_RANDOM_DAYS`]): CI's fixed set is kept
    /// short so it stays cheap. The draws do not depend on it, only the duration is clamped.
    pub max_days: u32,
    /// Draw only this library scenario (its index in the library), at least once per script
    /// and never a quiet run: a set about one kind of incident (`generate --scenario ID`). The
    /// other draws are the same as without it.
    pub only_scenario: Option<usize>,
}

impl Default for RandomScriptOptions {
    fn default() -> Self {
        RandomScriptOptions {
            max_days: MAX_RANDOM_DAYS,
            only_scenario: None,
        }
    }
}

/// When a generated run starts and how long it lasts.
#[derive(Debug, Clone, Copy)]
struct RunSpan {
    start: DateTime<Utc>,
    duration_ms: u64,
}

/// The file name a generated script is written under: `random-<seed>-<index>.yaml`.
pub fn random_script_file_name(seed: u64, index: u32) -> String {
    format!("random-{seed}-{index}.yaml")
}

/// The script for `(seed, index)` over the embedded library, with the default options.
pub fn generate_script(seed: u64, index: u32) -> Result<String, Diagnostic> {
    RandomScripts::embedded()?.generate(seed, index, RandomScriptOptions::default())
}

/// A generator over one library; build it once and draw many scripts from it.
pub struct RandomScripts {
    library: Library,
    catalog: Catalog,
}

/// The header and timeline of a generated script, in the order the README documents the keys.
#[derive(Serialize)]
struct GeneratedScript {
    name: String,
    description: String,
    seed: u64,
    start: String,
    duration: String,
    bucket: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    now: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    scenarios: Vec<RawScenario>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    timeline: Vec<RawEntry>,
}

/// A timeline entry before its time is written in one of the documented forms.
struct Planned {
    at_ms: u64,
    entry: RawEntry,
}

/// What the description counts.
#[derive(Default)]
struct Tally {
    scenarios: usize,
    inline: usize,
    events: usize,
    red_herrings: usize,
    stops: usize,
    resets: usize,
}

impl RandomScripts {
    /// The index of library scenario `id`, for [`RandomScriptOptions::only_scenario`]; an
    /// unknown id is an error that lists the library's ids.
    pub fn scenario_index(&self, id: &str) -> Result<usize, String> {
        self.library
            .scenarios
            .iter()
            .position(|definition| definition.id == id)
            .ok_or_else(|| {
                let ids: Vec<&str> = self
                    .library
                    .scenarios
                    .iter()
                    .map(|d| d.id.as_str())
                    .collect();
                format!(
                    "--scenario `{id}` is not in the library; allowed: {}",
                    ids.join(", ")
                )
            })
    }

    /// The id of the library scenario at `index`.
    pub fn scenario_id(&self, index: usize) -> Option<&str> {
        self.library.scenarios.get(index).map(|d| d.id.as_str())
    }

    /// A generator over the library and catalog built into the binary.
    pub fn embedded() -> Result<RandomScripts, Diagnostic> {
        let catalog = Catalog::embedded()?;
        let library = Library::load(None, &catalog)?;
        Ok(RandomScripts { library, catalog })
    }

    /// The script for `(seed, index)`: the same pair always gives the same text.
    pub fn generate(
        &self,
        seed: u64,
        index: u32,
        options: RandomScriptOptions,
    ) -> Result<String, Diagnostic> {
        // The set's seed picks the generator's state and the index its stream, so scripts of
        // one set are independent and a set can grow without changing its earlier scripts.
        let mut rng = Pcg64::new(u128::from(seed), u128::from(index));
        let script = self.draw(&mut rng, seed, index, options)?;
        serde_yaml::to_string(&script).map_err(|e| {
            Diagnostic::new(
                std::path::Path::new(&random_script_file_name(seed, index)),
                format!("cannot write the generated script: {e}"),
            )
        })
    }

    fn draw(
        &self,
        rng: &mut Pcg64,
        seed: u64,
        index: u32,
        options: RandomScriptOptions,
    ) -> Result<GeneratedScript, Diagnostic> {
        let script_seed = rng.random_range(0..1_000_000u64);
        let drawn_days = rng.random_range(MIN_RANDOM_DAYS..=MAX_RANDOM_DAYS);
        let days = drawn_days.min(options.max_days.max(MIN_RANDOM_DAYS));
        let duration_ms = u64::from(days) * MS_PER_DAY;
        let start = draw_start(rng, days);
        let quiet = rng.random_bool(QUIET_RUN_SHARE) && options.only_scenario.is_none();

        let mut planned: Vec<Planned> = Vec::new();
        let mut inline: Vec<RawScenario> = Vec::new();
        let mut tally = Tally::default();
        if !quiet {
            self.draw_timeline(
                rng,
                RunSpan { start, duration_ms },
                options.only_scenario,
                &mut planned,
                &mut inline,
                &mut tally,
            )?;
        }
        // Entries go in time order: `+2h` counts from the entry above, and `stop:` must come
        // after the entry that starts its scenario (a stable sort keeps that order at equal
        // times).
        planned.sort_by_key(|p| p.at_ms);

        // Backdating: sometimes the script says when "now" is, and some entries count back
        // from it (or, without `now:`, from the run's end).
        let now_ms = if !planned.is_empty() && rng.random_bool(0.25) {
            let latest = planned.iter().map(|p| p.at_ms).max().unwrap_or(0);
            let hours_back = rng.random_range(0..=24u64);
            Some(
                duration_ms
                    .saturating_sub(hours_back * MS_PER_HOUR)
                    .max(latest),
            )
        } else {
            None
        };
        let backdate_from = now_ms.unwrap_or(duration_ms);
        let mut previous_ms = 0u64;
        let mut timeline = Vec::new();
        for Planned { at_ms, mut entry } in planned {
            entry.at = write_at(rng, start, at_ms, previous_ms, backdate_from);
            previous_ms = at_ms;
            timeline.push(entry);
        }

        let description = describe(start, days, quiet, &tally);
        Ok(GeneratedScript {
            name: format!("random-{seed}-{index}"),
            description,
            seed: script_seed,
            start: rfc3339(start),
            duration: format!("{days}d"),
            bucket: "1h",
            now: now_ms.map(|ms| rfc3339(start + Duration::milliseconds(ms as i64))),
            scenarios: inline,
            timeline,
        })
    }

    fn draw_timeline(
        &self,
        rng: &mut Pcg64,
        RunSpan { start, duration_ms }: RunSpan,
        only_scenario: Option<usize>,
        planned: &mut Vec<Planned>,
        inline: &mut Vec<RawScenario>,
        tally: &mut Tally,
    ) -> Result<(), Diagnostic> {
        let mut scenario_count = [0usize, 1, 1, 1, 1, 2, 2, 2, 3, 3][rng.random_range(0..10)];
        if only_scenario.is_some() {
            scenario_count = scenario_count.max(1);
        }
        let mut starts: Vec<(u64, u64)> = Vec::new(); // (start, active duration) of real ones
        for _ in 0..scenario_count {
            let drawn = rng.random_range(0..self.library.scenarios.len());
            let definition = &self.library.scenarios[only_scenario.unwrap_or(drawn)];
            // Sometimes on top of one already drawn, so causes overlap.
            let at_ms = match starts.last() {
                Some(&(previous, active)) if rng.random_bool(0.3) => {
                    let within = active.clamp(MS_PER_HOUR, 12 * MS_PER_HOUR);
                    let offset = rng.random_range(0..within) / (15 * MS_PER_MINUTE);
                    (previous + offset * 15 * MS_PER_MINUTE).min(duration_ms - MS_PER_HOUR)
                }
                _ => draw_time(rng, start, duration_ms),
            };
            let mut entry = RawEntry::default();
            let mut active_ms = definition.duration_ms;
            let id = if rng.random_bool(0.2) {
                let variant = self.inline_variant(rng, definition, inline.len())?;
                active_ms = duration_of(&variant.duration).unwrap_or(active_ms);
                let id = variant.id.clone();
                inline.push(variant);
                tally.inline += 1;
                id
            } else {
                definition.id.clone()
            };
            entry.scenario = Some(id.clone());
            if rng.random_bool(0.3) {
                entry.intensity = Some(f64::from(rng.random_range(5..=20u32)) / 10.0);
            }
            if rng.random_bool(0.2) {
                let hours = (active_ms / MS_PER_HOUR).max(2);
                let new_hours = rng
                    .random_range(hours / 2..=hours + hours / 2)
                    .clamp(1, 14 * 24);
                active_ms = new_hours * MS_PER_HOUR;
                entry.duration = Some(format!("{new_hours}h"));
            }
            if rng.random_bool(0.15) {
                entry.settlement = Some(format!("{}h", rng.random_range(0..=24u32)));
            }
            if let Some(domain) = stream_domain(&self.catalog, definition) {
                if rng.random_bool(0.15) {
                    entry.streams = Some(vec![format!("{domain}.*")]);
                }
            }
            planned.push(Planned { at_ms, entry });
            tally.scenarios += 1;

            // An early stop or a reset, inside the active phase.
            let roll = rng.random_range(0..100u32);
            let quarter = (active_ms / 4).max(30 * MS_PER_MINUTE);
            let end_at = at_ms + rng.random_range(quarter..=3 * quarter);
            if roll < 20 && end_at <= duration_ms {
                let stop = RawEntry {
                    stop: Some(id.clone()),
                    ..RawEntry::default()
                };
                planned.push(Planned {
                    at_ms: round_to_minutes(end_at),
                    entry: stop,
                });
                tally.stops += 1;
            } else if roll < 28 && end_at <= duration_ms {
                let reset = RawEntry {
                    reset: Some(true),
                    ..RawEntry::default()
                };
                planned.push(Planned {
                    at_ms: round_to_minutes(end_at),
                    entry: reset,
                });
                tally.resets += 1;
            }

            // A red herring just before the real cause: a headline 0–3 h earlier that the
            // analyst must not blame.
            if rng.random_bool(0.4) {
                let lead = rng.random_range(0..=RED_HERRING_LEAD_MS / (15 * MS_PER_MINUTE))
                    * 15
                    * MS_PER_MINUTE;
                self.push_red_herring(rng, at_ms.saturating_sub(lead), planned);
                tally.red_herrings += 1;
            }
            starts.push((at_ms, active_ms));
        }

        // Events injected on their own: real ones, and sometimes a stray red herring. Mostly
        // incidents (templates with an effect and no background schedule); the rest may be
        // background texture, whose small effects often measure as no cause at all.
        let with_effect = |incidents_only: bool| -> Vec<&str> {
            self.library
                .events
                .iter()
                .filter(|e| e.effect.is_some() && (!incidents_only || e.background.is_none()))
                .map(|e| e.id.as_str())
                .collect()
        };
        let (incidents, any_real) = (with_effect(true), with_effect(false));
        let mut event_count = [0usize, 0, 1, 1, 2, 3][rng.random_range(0..6)];
        if scenario_count == 0 {
            event_count = event_count.max(1);
        }
        for _ in 0..event_count {
            let pool = if !incidents.is_empty() && rng.random_bool(0.75) {
                &incidents
            } else {
                &any_real
            };
            if pool.is_empty() {
                break;
            }
            let id = pool[rng.random_range(0..pool.len())];
            let entry = RawEntry {
                event: Some(RawEventEntry::Id(id.to_string())),
                ..RawEntry::default()
            };
            let at_ms = draw_time(rng, start, duration_ms);
            planned.push(Planned { at_ms, entry });
            tally.events += 1;
            if rng.random_bool(0.3) {
                let lead = rng.random_range(0..=RED_HERRING_LEAD_MS / (15 * MS_PER_MINUTE))
                    * 15
                    * MS_PER_MINUTE;
                self.push_red_herring(rng, at_ms.saturating_sub(lead), planned);
                tally.red_herrings += 1;
            }
        }
        if rng.random_bool(0.2) {
            let at_ms = draw_time(rng, start, duration_ms);
            self.push_red_herring(rng, at_ms, planned);
            tally.red_herrings += 1;
        }
        Ok(())
    }

    /// A red herring at `at_ms`: a template with no effect, or (a third of the time) a real
    /// template injected with `red_herring: true`, so its headline is believable.
    fn push_red_herring(&self, rng: &mut Pcg64, at_ms: u64, planned: &mut Vec<Planned>) {
        let want_effect = rng.random_bool(1.0 / 3.0);
        let pool: Vec<&str> = self
            .library
            .events
            .iter()
            .filter(|e| e.effect.is_some() == want_effect)
            .map(|e| e.id.as_str())
            .collect();
        if pool.is_empty() {
            return;
        }
        let mut entry = RawEntry {
            event: Some(RawEventEntry::Id(
                pool[rng.random_range(0..pool.len())].to_string(),
            )),
            ..RawEntry::default()
        };
        if want_effect {
            entry.red_herring = Some(true);
        }
        planned.push(Planned {
            at_ms: round_to_minutes(at_ms),
            entry,
        });
    }

    /// A library scenario written inline under a new id, with its duration and settlement
    /// redrawn: the analyst sees a cause it has never seen by that name.
    fn inline_variant(
        &self,
        rng: &mut Pcg64,
        definition: &ScenarioDefinition,
        number: usize,
    ) -> Result<RawScenario, Diagnostic> {
        let text = EMBEDDED_SCENARIOS
            .iter()
            .find(|(id, _)| *id == definition.id)
            .map(|(_, text)| *text)
            .ok_or_else(|| {
                Diagnostic::new(
                    &definition.source,
                    format!("no embedded text for scenario `{}`", definition.id),
                )
            })?;
        let mut raw: RawScenario = serde_yaml::from_str(text).map_err(|e| {
            Diagnostic::new(
                &definition.source,
                format!("cannot read it as a scenario: {e}"),
            )
        })?;
        raw.id = format!("{}-variant-{}", definition.id, number + 1);
        raw.name = format!("{} (variant {})", raw.name, number + 1);
        let hours = (definition.duration_ms / MS_PER_HOUR).max(2);
        raw.duration = format!(
            "{}h",
            rng.random_range(hours / 2..=hours * 2).clamp(1, 14 * 24)
        );
        raw.settlement = format!("{}h", rng.random_range(0..=24u32));
        Ok(raw)
    }
}

/// The domain of the first stream a scenario's stream modifiers touch (`marketing`), for a
/// `streams: ["marketing.*"]` override; `None` for a scenario of levers only.
fn stream_domain(catalog: &Catalog, definition: &ScenarioDefinition) -> Option<String> {
    let (stream, _) = definition.modifiers.streams.first()?;
    Some(catalog.streams.get(stream.index())?.domain.clone())
}

fn duration_of(text: &str) -> Option<u64> {
    crate::diagnostics::parse_duration_ms(text).ok()
}

fn round_to_minutes(ms: u64) -> u64 {
    ms / MS_PER_MINUTE * MS_PER_MINUTE
}

fn rfc3339(instant: DateTime<Utc>) -> String {
    instant.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A start anywhere in 2024–2026 that leaves the run inside 2026: any month (exam seasons and
/// holidays included), any weekday, any hour, sometimes on the half hour.
fn draw_start(rng: &mut Pcg64, days: u32) -> DateTime<Utc> {
    let first = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).single();
    let last = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).single();
    let (Some(first), Some(last)) = (first, last) else {
        return DateTime::<Utc>::UNIX_EPOCH;
    };
    let span_days = (last - first).num_days() - i64::from(days);
    let day = rng.random_range(0..span_days);
    let hour = rng.random_range(0..24i64);
    let minute = if rng.random_bool(0.25) { 30 } else { 0 };
    first + Duration::days(day) + Duration::hours(hour) + Duration::minutes(minute)
}

/// A time in the run for a cause: a weekday daytime, a night, or a weekend, on a quarter hour,
/// at least an hour after the start and 12 h before the end so some of its effect is seen.
fn draw_time(rng: &mut Pcg64, start: DateTime<Utc>, duration_ms: u64) -> u64 {
    let earliest = MS_PER_HOUR;
    let latest = duration_ms.saturating_sub(12 * MS_PER_HOUR).max(earliest);
    let days = duration_ms / MS_PER_DAY + 1;
    let into_first_day = (u64::from(start.hour()) * 60 + u64::from(start.minute())) * MS_PER_MINUTE;
    for _ in 0..16 {
        let kind = rng.random_range(0..3u32);
        let day = rng.random_range(0..days);
        let date = start + Duration::days(day as i64);
        let weekend = matches!(date.weekday(), Weekday::Sat | Weekday::Sun);
        let hour = match kind {
            0 if !weekend => rng.random_range(8..18u64),
            1 => [20, 21, 22, 23, 0, 1, 2, 3, 4, 5][rng.random_range(0..10)],
            2 if weekend => rng.random_range(7..23u64),
            _ => continue,
        };
        let minute = rng.random_range(0..4u64) * 15;
        let at =
            (day * MS_PER_DAY + (hour * 60 + minute) * MS_PER_MINUTE).checked_sub(into_first_day);
        if let Some(at) = at.filter(|at| (earliest..=latest).contains(at)) {
            return at;
        }
    }
    // Rare: no draw fit (a short run with few matching hours); any quarter hour will do.
    earliest + rng.random_range(0..=(latest - earliest) / (15 * MS_PER_MINUTE)) * 15 * MS_PER_MINUTE
}

/// Writes `at_ms` in one of the documented forms: `day N HH:MM`, an RFC 3339 instant, `+…`
/// after the entry above, or `-…` before `now`.
fn write_at(
    rng: &mut Pcg64,
    start: DateTime<Utc>,
    at_ms: u64,
    previous_ms: u64,
    backdate_from_ms: u64,
) -> String {
    let instant = start + Duration::milliseconds(at_ms as i64);
    let roll = rng.random_range(0..100u32);
    if roll < 20 && at_ms > previous_ms {
        format!("+{}", span(at_ms - previous_ms))
    } else if roll < 35 && at_ms < backdate_from_ms {
        format!("-{}", span(backdate_from_ms - at_ms))
    } else if roll < 55 {
        rfc3339(instant)
    } else {
        let day = (instant.date_naive() - start.date_naive()).num_days() + 1;
        format!("day {day} {:02}:{:02}", instant.hour(), instant.minute())
    }
}

/// A whole number of minutes as `2d 5h 30m`, the largest units first.
fn span(ms: u64) -> String {
    let minutes = ms / MS_PER_MINUTE;
    let (d, h, m) = (minutes / (24 * 60), minutes / 60 % 24, minutes % 60);
    let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "m")]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect();
    if parts.is_empty() {
        "0m".to_string()
    } else {
        parts.join(" ")
    }
}

fn describe(start: DateTime<Utc>, days: u32, quiet: bool, tally: &Tally) -> String {
    let when = format!(
        "{days} days from {} {}",
        start.weekday(),
        start.format("%Y-%m-%d %H:%M")
    );
    if quiet {
        return format!("Generated: a quiet run of {when}, no timeline.");
    }
    let counted = |n: usize, one: &str| match n {
        1 => format!("1 {one}"),
        n => format!("{n} {one}s"),
    };
    format!(
        "Generated: {when}; {} ({} inline), {}, {}, {}, {}.",
        counted(tally.scenarios, "scenario"),
        tally.inline,
        counted(tally.events, "event"),
        counted(tally.red_herrings, "red herring"),
        counted(tally.stops, "stop"),
        counted(tally.resets, "reset"),
    )
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;
    use crate::scenario::{RunPlan, Script};

    fn generator() -> RandomScripts {
        RandomScripts::embedded().unwrap_or_else(|e| panic!("{e}"))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

        /// Every generated script parses and validates as `marketsim validate` checks it.
        #[test]
        fn generated_scripts_validate(seed in any::<u64>(), index in 0u32..1_000, short in any::<bool>()) {
            let options = RandomScriptOptions {
                max_days: if short { 4 } else { MAX_RANDOM_DAYS },
                ..RandomScriptOptions::default()
            };
            let text = generator().generate(seed, index, options).unwrap_or_else(|e| panic!("{e}"));
            let path = Path::new("random.yaml");
            let script = Script::parse(path, &text).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
            let limit = u64::from(options.max_days) * MS_PER_DAY;
            prop_assert!(script.duration_ms <= limit && script.duration_ms >= 3 * MS_PER_DAY);
            RunPlan::from_script(script, None, None).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        }
    }

    #[test]
    fn the_same_seed_and_index_give_the_same_text() {
        let scripts = generator();
        let options = RandomScriptOptions::default();
        for index in 0..8 {
            let once = scripts.generate(5000, index, options);
            let again = scripts.generate(5000, index, options);
            assert_eq!(once.ok(), again.ok());
        }
        assert_ne!(
            scripts.generate(5000, 0, options).ok(),
            scripts.generate(5000, 1, options).ok()
        );
    }

    /// Over a set, each feature of the format shows up somewhere: a generator that never
    /// drew a quiet run or a backdated time would measure less than it claims.
    #[test]
    fn a_set_of_fifty_uses_every_feature() {
        let scripts = generator();
        let texts: Vec<String> = (0..50)
            .map(|i| {
                scripts
                    .generate(1000, i, RandomScriptOptions::default())
                    .unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        let count = |needle: &str| texts.iter().filter(|t| t.contains(needle)).count();
        for feature in [
            "stop:",
            "reset: true",
            "intensity:",
            "red_herring: true",
            "scenarios:",
            "now:",
            "at: -",
            "at: +",
            "at: day ",
        ] {
            assert!(count(feature) > 0, "no script of 50 has `{feature}`");
        }
        let quiet = texts.iter().filter(|t| !t.contains("timeline:")).count();
        assert!((2..=15).contains(&quiet), "{quiet} quiet runs of 50");
    }
}
