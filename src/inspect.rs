//! The stream inspector: a stream's definition, its place in the flows, and statistics and
//! sample events from a run. Text for people; the data come from the catalog, the flow table
//! and the run directory.

use std::fmt::Write as _;
use std::io::BufRead;
use std::path::Path;

use thiserror::Error;

use crate::bundled::{bundled_script_path, BUNDLED_SCRIPTS};
use crate::diagnostics::Diagnostic;
use crate::market::catalog::{Catalog, Origin, DOMAINS};
use crate::market::roles::FLOW_EDGES;
use crate::output::series::read_series;
use crate::output::{OutputError, RunDirectory};
use crate::scenario::script::Script;
use crate::scenario::Library;

#[derive(Debug, Error)]
pub enum InspectError {
    /// The stream is not in the catalog; the message suggests the nearest name.
    #[error("{0}")]
    UnknownStream(String),
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// All streams grouped by domain, with cadence and origin.
pub fn list_streams(catalog: &Catalog) -> String {
    let mut text = String::new();
    for domain in DOMAINS {
        let streams: Vec<_> = catalog
            .streams
            .iter()
            .filter(|s| s.domain == *domain)
            .collect();
        if streams.is_empty() {
            continue;
        }
        let _ = writeln!(text, "{domain} ({})", streams.len());
        for stream in streams {
            let _ = writeln!(
                text,
                "  {:<34} {:<6} {:<6} {}",
                stream.name,
                stream.cadence.as_str(),
                stream.origin.kind_name(),
                stream.description
            );
        }
    }
    let _ = writeln!(text, "{} streams", catalog.streams.len());
    text
}

/// The scenario library: id, name, duration, settlement and what each scenario touches.
pub fn list_scenarios(library: &Library) -> String {
    let mut text = String::new();
    let format =
        |ms: u64| humantime::format_duration(std::time::Duration::from_millis(ms)).to_string();
    for scenario in &library.scenarios {
        let _ = writeln!(text, "{:<24} {}", scenario.id, scenario.name);
        let _ = writeln!(text, "  {}", scenario.description);
        let _ = writeln!(
            text,
            "  duration {}, settlement {}",
            format(scenario.duration_ms),
            format(scenario.settlement_ms)
        );
        if !scenario.touches.is_empty() {
            let _ = writeln!(text, "  touches: {}", scenario.touches.join(", "));
        }
        if !scenario.events.is_empty() {
            let events: Vec<&str> = scenario.events.iter().map(|(id, _)| id.as_str()).collect();
            let _ = writeln!(text, "  injects: {}", events.join(", "));
        }
    }
    let red_herrings = library.events.iter().filter(|e| e.effect.is_none()).count();
    let _ =
        writeln!(
        text,
        "{} scenarios; {} external event templates ({} red herrings, {} in the daily background)",
        library.scenarios.len(),
        library.events.len(),
        red_herrings,
        library.events.iter().filter(|e| e.background.is_some()).count()
    );
    text
}

/// The bundled run scripts, runnable by name: name, duration and description.
pub fn list_bundled_scripts() -> Result<String, Diagnostic> {
    let mut text = String::from("\nbundled run scripts (marketsim run NAME --out DIR):\n");
    for (name, source) in BUNDLED_SCRIPTS {
        let script = Script::parse(&bundled_script_path(name), source)?;
        // Padding needs a `String`: humantime's `Display` ignores the width.
        let duration =
            humantime::format_duration(std::time::Duration::from_millis(script.duration_ms))
                .to_string();
        let _ = writeln!(text, "  {name:<24} {duration:<7} {}", script.description);
    }
    Ok(text)
}

/// The inspector's report for one stream.
pub fn describe(catalog: &Catalog, name: &str, run: Option<&Path>) -> Result<String, InspectError> {
    let stream = catalog
        .stream_or_suggest(name)
        .map_err(InspectError::UnknownStream)?;
    let mut text = String::new();
    let _ = writeln!(text, "{}", stream.name);
    let _ = writeln!(text, "  {}", stream.description);
    let _ = writeln!(text, "  domain:  {}", stream.domain);
    let _ = writeln!(text, "  cadence: {}", stream.cadence.as_str());
    let _ = writeln!(text, "  unit:    {}", stream.unit);
    let origin = match &stream.origin {
        Origin::Source { per_hour, profile } => format!(
            "source, {per_hour}/h at multiplier 1.0, seasonal profile `{}`",
            catalog.profiles[*profile].name
        ),
        Origin::Flow => "flow (emitted by the entity flows below)".to_string(),
        Origin::Gauge { every_ms, metric } => format!(
            "gauge, reads `{}` every {}",
            metric.as_str(),
            humantime::format_duration(std::time::Duration::from_millis(*every_ms))
        ),
    };
    let _ = writeln!(text, "  origin:  {origin}");
    let _ = writeln!(text, "  payload: {}", stream.payload_fields.join(", "));
    let fed_by: Vec<_> = FLOW_EDGES
        .iter()
        .filter(|(_, to, _)| *to == stream.name)
        .collect();
    let feeds: Vec<_> = FLOW_EDGES
        .iter()
        .filter(|(from, _, _)| *from == stream.name)
        .collect();
    let _ = writeln!(
        text,
        "  fed by:{}",
        if fed_by.is_empty() {
            " (nothing: an independent arrival process)"
        } else {
            ""
        }
    );
    for (from, _, how) in fed_by {
        let _ = writeln!(text, "    {from:<34} {how}");
    }
    let _ = writeln!(
        text,
        "  feeds:{}",
        if feeds.is_empty() {
            " (nothing downstream)"
        } else {
            ""
        }
    );
    for (_, to, how) in feeds {
        let _ = writeln!(text, "    {to:<34} {how}");
    }
    if let Some(run_path) = run {
        describe_run(
            &mut text,
            stream.name.as_str(),
            stream.origin.is_gauge(),
            run_path,
        )?;
    }
    Ok(text)
}

fn describe_run(
    text: &mut String,
    name: &str,
    is_gauge: bool,
    run_path: &Path,
) -> Result<(), InspectError> {
    let run = RunDirectory::open(run_path)?;
    let summary = &run.summary;
    let _ = writeln!(
        text,
        "run {} ({}, seed {}, {} from {}, buckets of {} min)",
        run_path.display(),
        summary.name,
        summary.seed,
        summary.duration,
        summary.epoch,
        summary.bucket_ms / 60_000
    );
    let Some(stream_summary) = summary.streams.iter().find(|s| s.name == name) else {
        let _ = writeln!(
            text,
            "  this run has no stream `{name}` (it used another catalog)"
        );
        return Ok(());
    };
    let hours = summary.duration_ms as f64 / 3_600_000.0;
    let _ = writeln!(
        text,
        "  events:      {} ({:.2}/h, {:.3}/s on average)",
        stream_summary.events,
        stream_summary.events as f64 / hours,
        stream_summary.events as f64 / hours / 3_600.0
    );
    let _ = writeln!(text, "  fingerprint: {}", stream_summary.fingerprint);
    let rows = read_series(&run.series_path(), Some(name))?;
    let values: Vec<(usize, f64)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.value.map(|v| (i, v)))
        .collect();
    if !values.is_empty() {
        let n = values.len() as f64;
        let mean = values.iter().map(|(_, v)| v).sum::<f64>() / n;
        let variance = values.iter().map(|(_, v)| (v - mean).powi(2)).sum::<f64>() / n;
        let (min_index, min) =
            values
                .iter()
                .copied()
                .fold((0, f64::INFINITY), |a, b| if b.1 < a.1 { b } else { a });
        let (max_index, max) =
            values
                .iter()
                .copied()
                .fold((0, f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
        let what = if is_gauge { "mean reading" } else { "events" };
        let _ = writeln!(
            text,
            "  per bucket ({what}): mean {mean:.2}, sd {:.2}",
            variance.sqrt()
        );
        let _ = writeln!(text, "    min {min:.2} at {}", rows[min_index].timestamp);
        let _ = writeln!(text, "    max {max:.2} at {}", rows[max_index].timestamp);
        let mut by_hour = [(0.0, 0u32); 24];
        for (index, value) in &values {
            if let Some(hour) = rows[*index]
                .timestamp
                .get(11..13)
                .and_then(|h| h.parse::<usize>().ok())
            {
                by_hour[hour % 24].0 += value;
                by_hour[hour % 24].1 += 1;
            }
        }
        let means: Vec<f64> = by_hour
            .iter()
            .map(|(sum, n)| if *n > 0 { sum / *n as f64 } else { 0.0 })
            .collect();
        let _ = writeln!(
            text,
            "  by hour of day (UTC, 00 → 23): {}",
            sparkline(&means)
        );
    }
    match run.events_path() {
        None => {
            let _ = writeln!(
                text,
                "  sample events: none (the run was made without --events)"
            );
        }
        Some(path) => {
            let file = std::fs::File::open(&path).map_err(|source| OutputError::Io {
                path: path.clone(),
                source,
            })?;
            let needle = format!("\"stream\":\"{name}\"");
            let samples: Vec<String> = std::io::BufReader::new(file)
                .lines()
                .map_while(Result::ok)
                .filter(|line| line.contains(&needle))
                .take(3)
                .collect();
            let _ = writeln!(text, "  sample events:");
            for sample in samples {
                let _ = writeln!(text, "    {sample}");
            }
        }
    }
    Ok(())
}

fn sparkline(values: &[f64]) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let max = values.iter().copied().fold(0.0, f64::max);
    values
        .iter()
        .map(|v| {
            if max > 0.0 {
                BARS[((v / max) * 7.0).round() as usize]
            } else {
                BARS[0]
            }
        })
        .collect()
}
