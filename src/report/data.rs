//! The data of a run report, read from a run directory: metadata, every stream's bucket series
//! (values, normalized scores, flags), scenario windows, external events with their declared and
//! measured impact, anomalies, recommendations and, when there are recommendations, their
//! evaluation against ground truth.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::analyst::eval::{evaluate_run, RunEvaluation, TruthEntry, TruthFile, TruthMeasured};
use crate::analyst::recommendation::Recommendation;
use crate::analyst::RecommendationsFile;
use crate::output::analysis::{ANOMALIES_FILE, RECOMMENDATIONS_FILE};
use crate::output::read_json_file as parse_file;
use crate::output::run_dir::{OutputError, TIMELINE_FILE, TRUTH_FILE};
use crate::output::run_reader::{open_run, RunSeries};
use crate::scenario::definition::ExpectedImpact;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportMeta {
    pub name: String,
    pub tool_version: String,
    pub seed: u64,
    pub script: String,
    pub script_sha256: String,
    pub catalog: String,
    pub catalog_sha256: String,
    pub epoch: String,
    pub duration: String,
    pub bucket_ms: u64,
    pub buckets: usize,
    pub total_events: u64,
    /// Whether series carry normalized scores (`run --analyze`).
    pub analyzed: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportStream {
    pub name: String,
    pub domain: String,
    pub events: u64,
    pub fingerprint: String,
    /// Bucket values (counts, or mean gauge readings; `null` when a gauge did not report).
    pub values: Vec<Option<f64>>,
    /// 0–100, 50 = expected; empty when the run was not analyzed.
    pub normalized: Vec<Option<f64>>,
    /// One letter a bucket: `n`ormal, `w`arning, `c`ritical, `-` unscored.
    pub flags: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportDomain {
    pub name: String,
    pub streams: Vec<String>,
}

/// A scenario window of the truth file, for shading and the lifecycle chart.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportWindow {
    pub id: String,
    pub kind: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub origin: String,
    pub name: String,
    pub start: String,
    pub active_until: String,
    pub settled_at: String,
    pub red_herring: bool,
}

impl ReportWindow {
    fn of(item: &TruthEntry) -> Self {
        ReportWindow {
            id: item.id.clone(),
            kind: item.kind.clone(),
            reference: item.reference.clone(),
            origin: item.origin.clone(),
            name: item.name.clone(),
            start: item.start.clone(),
            active_until: item.active_until.clone(),
            settled_at: item.settled_at.clone(),
            red_herring: item.red_herring,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimelineEventView {
    id: String,
    timestamp: String,
    #[serde(rename = "type")]
    kind: String,
    title: String,
    severity: String,
    expected_impact: ExpectedImpact,
    origin: String,
    red_herring: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimelineView {
    external_events: Vec<TimelineEventView>,
}

/// An external event as the report shows it: declared and measured impact side by side.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportEvent {
    pub id: String,
    pub timestamp: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub severity: String,
    pub origin: String,
    pub red_herring: bool,
    pub expected_impact: ExpectedImpact,
    /// The largest measured effects (relative to the counterfactual), at most five.
    pub measured: Vec<TruthMeasured>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportEpisode {
    pub stream: String,
    pub direction: String,
    pub flag: String,
    pub start: String,
    pub end: String,
    pub buckets: usize,
    pub peak_z: f64,
    pub peak_at: String,
}

#[derive(Debug, Clone, Deserialize)]
struct AnomaliesView {
    episodes: Vec<ReportEpisode>,
}

/// Everything a run report shows.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportData {
    pub format: &'static str,
    pub meta: ReportMeta,
    /// Bucket starts, Unix milliseconds.
    pub timestamps: Vec<i64>,
    pub domains: Vec<ReportDomain>,
    pub streams: Vec<ReportStream>,
    /// Scenario windows (scripted and injected), not background events.
    pub windows: Vec<ReportWindow>,
    pub events: Vec<ReportEvent>,
    pub anomalies: Vec<ReportEpisode>,
    pub recommendations: Vec<Recommendation>,
    pub analyst: Option<String>,
    pub evaluation: Option<RunEvaluation>,
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Reads a run directory into report data.
pub fn build_report_data(path: &Path) -> Result<ReportData, OutputError> {
    let run = open_run(path)?;
    let series = RunSeries::load(&run)?;
    let summary = &run.summary;
    let mut streams = Vec::new();
    let mut domains: Vec<ReportDomain> = Vec::new();
    for (index, stream) in summary.streams.iter().enumerate() {
        let rows = (0..series.n_buckets()).map(|b| series.row(b, index));
        let mut values = Vec::new();
        let mut normalized = Vec::new();
        let mut flags = String::new();
        for row in rows {
            values.push(row.value.map(round2));
            normalized.push(row.normalized);
            flags.push(match row.flag.map(|f| f.as_str()) {
                Some("warning") => 'w',
                Some("critical") => 'c',
                Some(_) => 'n',
                None => '-',
            });
        }
        if !series.is_analyzed() {
            normalized.clear();
        }
        match domains.iter_mut().find(|d| d.name == stream.domain) {
            Some(domain) => domain.streams.push(stream.name.clone()),
            None => domains.push(ReportDomain {
                name: stream.domain.clone(),
                streams: vec![stream.name.clone()],
            }),
        }
        streams.push(ReportStream {
            name: stream.name.clone(),
            domain: stream.domain.clone(),
            events: stream.events,
            fingerprint: stream.fingerprint.clone(),
            values,
            normalized,
            flags,
        });
    }
    // Streams grouped by domain, in the catalog's order within each.
    streams.sort_by_key(|s| domains.iter().position(|d| d.name == s.domain));

    let truth: TruthFile = parse_file(&path.join(TRUTH_FILE))?;
    let timeline: TimelineView = parse_file(&path.join(TIMELINE_FILE))?;
    let windows = truth
        .items
        .iter()
        .filter(|i| i.kind == "scenario")
        .map(ReportWindow::of)
        .collect();
    let events = timeline
        .external_events
        .into_iter()
        .map(|event| {
            let mut measured = truth
                .items
                .iter()
                .find(|i| i.id == event.id)
                .map(|i| i.measured.clone())
                .unwrap_or_default();
            measured.truncate(5);
            ReportEvent {
                id: event.id,
                timestamp: event.timestamp,
                kind: event.kind,
                title: event.title,
                severity: event.severity,
                origin: event.origin,
                red_herring: event.red_herring,
                expected_impact: event.expected_impact,
                measured,
            }
        })
        .collect();
    let anomalies = if path.join(ANOMALIES_FILE).is_file() {
        parse_file::<AnomaliesView>(&path.join(ANOMALIES_FILE))?.episodes
    } else {
        Vec::new()
    };
    let (recommendations, analyst, evaluation) = if path.join(RECOMMENDATIONS_FILE).is_file() {
        let file: RecommendationsFile = parse_file(&path.join(RECOMMENDATIONS_FILE))?;
        let evaluation = evaluate_run(&summary.name, &file.analyst, &truth, &file.recommendations);
        (file.recommendations, Some(file.analyst), Some(evaluation))
    } else {
        (Vec::new(), None, None)
    };
    Ok(ReportData {
        format: "marketsim-report/1",
        meta: ReportMeta {
            name: summary.name.clone(),
            tool_version: summary.tool.version.clone(),
            seed: summary.seed,
            script: summary.script.path.clone(),
            script_sha256: summary.script.sha256.clone(),
            catalog: summary.catalog.path.clone(),
            catalog_sha256: summary.catalog.sha256.clone(),
            epoch: summary.epoch.clone(),
            duration: summary.duration.clone(),
            bucket_ms: summary.bucket_ms,
            buckets: summary.buckets,
            total_events: summary.total_events,
            analyzed: series.is_analyzed(),
        },
        timestamps: series
            .bucket_starts
            .iter()
            .map(|t| t.timestamp_millis())
            .collect(),
        domains,
        streams,
        windows,
        events,
        anomalies,
        recommendations,
        analyst,
        evaluation,
    })
}
