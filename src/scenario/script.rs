//! Run scripts: the YAML file that names a run, its seed, epoch, duration, bucket size and
//! catalog. Parsed in two stages, a raw serde shape and a validated [`Script`].
//!
//! The format is designed to grow: later sections (a scenario timeline, external events) are
//! new top-level keys. Unknown keys are errors today, so a script written for a newer version
//! fails loudly instead of running without the part this version does not understand.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Utc};
use serde::{Deserialize, Deserializer};

use super::definition::RawScenario;
use super::timeline::{Policy, RawEntry};
use crate::bundled::{bundled_script, bundled_script_names, bundled_script_path};
use crate::diagnostics::{locate, nearest, parse_duration_ms, Diagnostic};
use crate::engine::{MS_PER_DAY, MS_PER_MINUTE};
use crate::market::catalog::{hex_sha256, MAX_SCALE};

pub const MAX_SCRIPT_BYTES: usize = 1024 * 1024;
/// The longest run a script may ask for.
pub const MAX_DURATION_MS: u64 = 366 * MS_PER_DAY;
/// The longest warm-up (`warmup:` or `--warmup`), in days.
pub const MAX_WARMUP_DAYS: u64 = 90;
pub const MIN_BUCKET_MS: u64 = MS_PER_MINUTE;
pub const MAX_BUCKET_MS: u64 = MS_PER_DAY;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScript {
    name: String,
    #[serde(default)]
    description: String,
    seed: Seed,
    start: Instant,
    duration: String,
    /// Whole days simulated before `start`, so the marketplace is full when the script's time
    /// begins (`--warmup` overrides it).
    #[serde(default)]
    warmup: Option<String>,
    #[serde(default = "default_bucket")]
    bucket: String,
    #[serde(default)]
    catalog: Option<PathBuf>,
    /// The marketplace's size factor (`--scale` overrides it): this many times the students,
    /// tutors and demand of the catalog.
    #[serde(default)]
    scale: Option<u64>,
    /// A folder holding `events.yaml` and `library/`; default: the script's folder when it has
    /// them, else the embedded library.
    #[serde(default)]
    library: Option<PathBuf>,
    /// The live "now" that backdated entries (`-7d`) count back from; default: the run's end.
    #[serde(default)]
    now: Option<Instant>,
    #[serde(default)]
    policy: Policy,
    /// Whether the run carries a background of ordinary external events (each library template
    /// marked `background`, on its schedule).
    #[serde(default = "default_true")]
    background_events: bool,
    #[serde(default)]
    scenarios: Vec<RawScenario>,
    #[serde(default)]
    timeline: Vec<RawEntry>,
}

/// An RFC 3339 instant, refused with an example of the form: chrono alone says only "premature
/// end of input" for a bare date. Parsed inside the scalar's visitor, so serde_yaml places the
/// error on the value.
#[derive(Debug, Clone, Copy)]
struct Instant(DateTime<Utc>);

impl<'de> Deserialize<'de> for Instant {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct InstantVisitor;
        impl serde::de::Visitor<'_> for InstantVisitor {
            type Value = Instant;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("an RFC 3339 instant such as 2025-02-03T00:00:00Z")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Instant, E> {
                parse_instant(text).map(Instant).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(InstantVisitor)
    }
}

/// A seed, refused as the command line refuses one ("seeds are whole numbers from 0 to
/// 2^64 - 1") rather than as "expected u64".
#[derive(Debug, Clone, Copy)]
struct Seed(u64);

impl<'de> Deserialize<'de> for Seed {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SeedVisitor;
        impl serde::de::Visitor<'_> for SeedVisitor {
            type Value = Seed;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                write!(
                    formatter,
                    "a seed: a whole number from 0 to 2^64 - 1 ({})",
                    u64::MAX
                )
            }
            fn visit_u64<E: serde::de::Error>(self, seed: u64) -> Result<Seed, E> {
                Ok(Seed(seed))
            }
        }
        deserializer.deserialize_u64(SeedVisitor)
    }
}

/// Parses an RFC 3339 instant; the error shows the instant the user probably meant.
pub fn parse_instant(text: &str) -> Result<DateTime<Utc>, String> {
    text.parse::<DateTime<Utc>>().map_err(|reason| {
        let example = match NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
            Ok(date) => format!("{date}T00:00:00Z"),
            Err(_) => "2025-02-03T00:00:00Z".to_string(),
        };
        format!(
            "`{text}` is not an RFC 3339 instant ({reason}); write the date, time and zone, e.g. {example}"
        )
    })
}

fn default_true() -> bool {
    true
}

fn default_bucket() -> String {
    "1h".to_string()
}

/// Where the catalog comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogSource {
    Embedded,
    /// A path as resolved against the script's folder.
    File(PathBuf),
}

/// A validated run script.
#[derive(Debug, Clone)]
pub struct Script {
    /// The path the script was read from, as the user gave it.
    pub path: PathBuf,
    pub sha256: String,
    pub name: String,
    pub description: String,
    pub seed: u64,
    pub start: DateTime<Utc>,
    pub duration_ms: u64,
    /// Days simulated before `start` (the header's `warmup`, whole days; 0 without one).
    pub warmup_days: u64,
    pub bucket_ms: u64,
    pub catalog: CatalogSource,
    /// The marketplace's size factor, 1 to [`MAX_SCALE`] (the header's `scale`, else 1).
    pub scale: u32,
    /// The library folder the script names (resolved against its folder), if any.
    pub library: Option<PathBuf>,
    pub now: Option<DateTime<Utc>>,
    pub policy: Policy,
    pub background_events: bool,
    pub scenarios: Vec<RawScenario>,
    pub timeline: Vec<RawEntry>,
    /// The script's text, for locating errors found when the timeline is resolved.
    pub source_text: String,
}

impl Script {
    /// The library folder a run uses: the one the script names; else the script's own folder
    /// when it holds `events.yaml` and `library/`; else `None`, the embedded library.
    pub fn library_folder(&self) -> Option<PathBuf> {
        if self.library.is_some() {
            return self.library.clone();
        }
        let folder = self.path.parent().unwrap_or(Path::new(""));
        let has_library = folder.join("events.yaml").is_file() && folder.join("library").is_dir();
        has_library.then(|| folder.to_path_buf())
    }

    /// Reads the script a command line names: the file at `argument` when one exists (a path
    /// always wins), else the bundled script of that name (`supply-crisis`).
    pub fn open(argument: &Path) -> Result<Script, Diagnostic> {
        if argument.exists() {
            return Script::load(argument);
        }
        let name = argument.to_str().unwrap_or_default();
        match bundled_script(name) {
            Some(text) => Script::parse(&bundled_script_path(name), text),
            None => Err(no_such_script(argument)),
        }
    }

    /// Reads and validates a script file.
    pub fn load(path: &Path) -> Result<Script, Diagnostic> {
        let source = std::fs::read_to_string(path)
            .map_err(|e| Diagnostic::new(path, format!("cannot read script: {e}")))?;
        Script::parse(path, &source)
    }

    /// Validates script text; `path` names it in diagnostics and resolves a relative catalog.
    pub fn parse(path: &Path, source: &str) -> Result<Script, Diagnostic> {
        if source.len() > MAX_SCRIPT_BYTES {
            return Err(Diagnostic::new(
                path,
                format!(
                    "script is {} bytes; the limit is {MAX_SCRIPT_BYTES}",
                    source.len()
                ),
            ));
        }
        let raw: RawScript = serde_yaml::from_str(source).map_err(|error| {
            // A catalog or a library file given as a script fails on its first key; say what
            // it is instead.
            match super::input_kind::InputKind::detect(source) {
                Some(kind) if kind != super::input_kind::InputKind::RunScript => {
                    Diagnostic::new(path, format!("this is {}, not a run script", kind.with_article()))
                        .with_help("a run script has name, seed, start and duration; `marketsim validate FILE` checks any kind of file")
                }
                _ => Diagnostic::from_yaml_in(path, source, &error),
            }
        })?;
        let at = |key: &str| locate(source, &[&format!("{key}:")]);
        let Instant(start) = raw.start;

        let name_ok = !raw.name.is_empty()
            && raw.name.len() <= 64
            && raw
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if !name_ok {
            return Err(
                Diagnostic::new(path, format!("`{}` is not a run name", raw.name))
                    .at(at("name"))
                    .with_help("use 1 to 64 characters of a-z, A-Z, 0-9, '-', '_' and '.'"),
            );
        }
        if !(1970..=9999).contains(&start.year()) {
            return Err(
                Diagnostic::new(path, format!("start {start} is out of range"))
                    .at(at("start"))
                    .with_help("allowed: years 1970 to 9999"),
            );
        }
        let duration_ms = parse_duration_ms(&raw.duration)
            .map_err(|m| Diagnostic::new(path, m).at(at("duration")))?;
        let bucket_ms = parse_duration_ms(&raw.bucket)
            .map_err(|m| Diagnostic::new(path, m).at(at("bucket")))?;
        let warmup_days = match &raw.warmup {
            None => 0,
            Some(text) => {
                let warmup_ms = parse_duration_ms(text)
                    .map_err(|m| Diagnostic::new(path, m).at(at("warmup")))?;
                if warmup_ms % MS_PER_DAY != 0 || warmup_ms > MAX_WARMUP_DAYS * MS_PER_DAY {
                    return Err(
                        Diagnostic::new(path, format!("warmup `{text}` is not allowed"))
                            .at(at("warmup"))
                            .with_help(format!("allowed: whole days, 0d to {MAX_WARMUP_DAYS}d")),
                    );
                }
                warmup_ms / MS_PER_DAY
            }
        };
        check_duration(duration_ms).map_err(|m| Diagnostic::new(path, m).at(at("duration")))?;
        check_run_end(start, duration_ms).map_err(|m| {
            Diagnostic::new(path, m)
                .at(at("start"))
                .with_help("outputs write four-digit years: start earlier or shorten the run")
        })?;
        if !(MIN_BUCKET_MS..=MAX_BUCKET_MS).contains(&bucket_ms) || MS_PER_DAY % bucket_ms != 0 {
            return Err(Diagnostic::new(path, format!("bucket `{}` is not allowed", raw.bucket))
                .at(at("bucket"))
                .with_help("allowed: 1m to 1d, dividing a day evenly (1m, 5m, 15m, 30m, 1h, 2h, 6h, 1d …)"));
        }
        let scale = match raw.scale {
            None => 1,
            Some(scale) => {
                check_scale(scale).map_err(|m| Diagnostic::new(path, m).at(at("scale")))?
            }
        };
        let catalog = match raw.catalog {
            None => CatalogSource::Embedded,
            Some(relative) => {
                let folder = path.parent().unwrap_or(Path::new(""));
                CatalogSource::File(folder.join(relative))
            }
        };
        let library = raw
            .library
            .map(|relative| path.parent().unwrap_or(Path::new("")).join(relative));
        Ok(Script {
            library,
            now: raw.now.map(|Instant(now)| now),
            policy: raw.policy,
            background_events: raw.background_events,
            scenarios: raw.scenarios,
            timeline: raw.timeline,
            source_text: source.to_string(),
            path: path.to_path_buf(),
            sha256: hex_sha256(source.as_bytes()),
            name: raw.name,
            description: raw.description,
            seed: raw.seed.0,
            start,
            duration_ms,
            warmup_days,
            bucket_ms,
            catalog,
            scale,
        })
    }
}

/// A marketplace size factor (`scale:`, `--scale`) checked against its range.
pub fn check_scale(scale: u64) -> Result<u32, String> {
    match u32::try_from(scale) {
        Ok(scale) if (1..=MAX_SCALE).contains(&scale) => Ok(scale),
        _ => Err(format!(
            "scale {scale} is out of range (allowed: a whole number from 1 to {MAX_SCALE}, the marketplace's size as a multiple of the catalog's)"
        )),
    }
}

/// "`x`: no such file" with the bundled names, the nearest first when there is one close.
fn no_such_script(argument: &Path) -> Diagnostic {
    let asked = argument
        .file_stem()
        .map(|stem| stem.to_string_lossy().into_owned())
        .unwrap_or_default();
    let names: Vec<&str> = bundled_script_names().collect();
    let close = nearest(&asked, names.iter().copied())
        .map(|name| format!("did you mean `{name}`? "))
        .unwrap_or_default();
    Diagnostic::new(
        argument,
        "no such file, and no bundled script has this name",
    )
    .with_help(format!("{close}bundled scripts: {}", names.join(", ")))
}

/// The first instant a run may not reach: outputs write four-digit years (`+10000-…` is not
/// RFC 3339, so `report` could not read such a run back).
fn latest_run_end() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(10_000, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Checks that a run starting at `start` and lasting `duration_ms` ends before the year 10000.
pub fn check_run_end(start: DateTime<Utc>, duration_ms: u64) -> Result<(), String> {
    let end = i64::try_from(duration_ms)
        .ok()
        .and_then(chrono::TimeDelta::try_milliseconds)
        .and_then(|duration| start.checked_add_signed(duration));
    match end {
        Some(end) if end < latest_run_end() => Ok(()),
        _ => Err(format!(
            "a run must end before the year 10000; this one starts at {} and lasts {}",
            start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            humantime::format_duration(std::time::Duration::from_millis(duration_ms))
        )),
    }
}

/// Checks a run length against the limits.
pub fn check_duration(duration_ms: u64) -> Result<(), String> {
    if duration_ms == 0 || duration_ms > MAX_DURATION_MS {
        Err(format!(
            "a run lasts from 1 ms to 366 days; {:.1} days asked",
            duration_ms as f64 / MS_PER_DAY as f64
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Script, String> {
        Script::parse(Path::new("s.yaml"), text).map_err(|d| d.to_string())
    }

    #[test]
    fn minimal_script_gets_defaults() {
        let script = parse("name: a\nseed: 1\nstart: 2025-01-01T00:00:00Z\nduration: 2d\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(script.bucket_ms, 3_600_000);
        assert_eq!(script.duration_ms, 2 * MS_PER_DAY);
        assert_eq!(script.catalog, CatalogSource::Embedded);
    }

    #[test]
    fn errors_name_the_place() {
        let error =
            parse("name: a\nseed: 1\nstart: 2025-01-01T00:00:00Z\nduration: 2d\nbucket: 7m\n");
        assert_eq!(
            error
                .err()
                .as_deref()
                .map(|e| e.lines().next().unwrap_or("")),
            Some("s.yaml:5:1: bucket `7m` is not allowed")
        );
    }
}
