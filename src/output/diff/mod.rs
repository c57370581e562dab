//! `marketsim diff`: compares two run directories (metadata, per-stream event totals and
//! fingerprints, bucket series, the external events of their timelines, and their
//! recommendations when both were analyzed) into a [`DiffReport`],
//! which renders as text ([`DiffReport::render_text`]) or serializes as JSON, and is the data an
//! HTML report is rendered from.
//!
//! # Tolerance
//!
//! Two numbers `a` and `b` differ by the *relative difference* `|a − b| / max(|a|, |b|)` (0 when
//! both are 0; symmetric, so `diff A B` and `diff B A` agree, as in Python's `math.isclose`). A
//! bucket value that is missing in one run (a gauge without a reading) and present in the other
//! differs by 1. With a tolerance `t`, a bucket or an event total differs only when its relative
//! difference exceeds `t`. A stream is then
//! - `different` when its total or any bucket differs beyond `t`, or, with `t = 0` only, when
//!   its fingerprint differs (the same counts in every bucket, yet other events or payloads);
//! - `withinTolerance` when something differs (fingerprint, total or a bucket) but nothing
//!   beyond `t`: a fingerprint difference alone never counts when `t > 0`;
//! - `identical` otherwise.
//!
//! The runs are `different` (exit code 1) when any stream is, when a stream or a bucket exists
//! in one run only, when their series cannot be aligned (different bucket sizes), or when their
//! external events or their recommendations differ (the tolerance applies to neither). Metadata differences
//! (seed, script, tool version, …) are reported but do not by themselves make runs different:
//! the verdict is about what the runs produced.

mod recommendations;
mod text;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::run_dir::{OutputError, RunDirectory, TIMELINE_FILE};
use super::run_reader::{open_run, RunSeries};
pub use recommendations::{
    diff_recommendations, read_recommendations, ChangedRecommendation, RecommendationSummary,
    RecommendationsDiff,
};

/// The `format` of the JSON document `diff --json` prints.
pub const DIFF_FORMAT: &str = "marketsim-diff/1";
/// How many bucket differences the report lists, largest first.
pub const LARGEST_DELTAS_LIMIT: usize = 10;

/// Errors comparing runs.
#[derive(Debug, Error)]
pub enum DiffError {
    /// A run directory or one of its files is missing, unreadable, or not what this version
    /// writes; the message names the file (and line where known).
    #[error(transparent)]
    Output(OutputError),
    /// The tolerance is not a relative difference between 0 and 1.
    #[error("--tolerance {value}: {reason}")]
    Tolerance { value: f64, reason: String },
}

impl From<OutputError> for DiffError {
    fn from(error: OutputError) -> Self {
        DiffError::Output(error)
    }
}

/// Parses `--tolerance`: a fraction (`0.05`) or a percentage (`5%`), from 0 to 1.
pub fn parse_tolerance(text: &str) -> Result<f64, String> {
    let trimmed = text.trim();
    let value = match trimmed.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().map(|p| p / 100.0),
        None => trimmed.parse::<f64>(),
    }
    .map_err(|_| format!("`{text}` is not a number; write a fraction such as 0.05 or 5%"))?;
    check_tolerance(value).map_err(|reason| format!("`{text}`: {reason}"))?;
    Ok(value)
}

fn check_tolerance(value: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err("a tolerance is a relative difference from 0 to 1 (0 % to 100 %)".to_string())
    }
}

/// What to compare and what to keep.
#[derive(Debug, Clone, Default)]
pub struct DiffOptions {
    /// The largest relative difference that is ignored (see the module docs).
    pub tolerance: f64,
    /// Keep both runs' bucket series, aligned by timestamp, in the report (for charts).
    pub include_series: bool,
}

/// The comparison of two runs. Field order is the JSON key order.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffReport {
    pub format: &'static str,
    pub verdict: Verdict,
    pub tolerance: f64,
    /// The runs' scripts differ in content: the runs are two different experiments.
    pub different_scripts: bool,
    pub a: RunIdentity,
    pub b: RunIdentity,
    /// Metadata fields whose values differ, in a fixed order.
    pub metadata: Vec<FieldDifference>,
    pub structure: StructureDiff,
    pub counts: StreamCounts,
    /// Every stream the two runs share, in A's order.
    pub streams: Vec<StreamDiff>,
    pub largest_deltas: LargestDeltas,
    pub timeline: TimelineDiff,
    /// Both runs' `recommendations.json`, when both were analyzed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recommendations: Option<RecommendationsDiff>,
    /// Both runs' bucket series, when asked for and the bucket sizes agree.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<AlignedSeries>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Verdict {
    Identical,
    /// Something differs, but nothing beyond the tolerance.
    WithinTolerance,
    Different,
}

impl Verdict {
    /// Whether the runs count as the same (exit code 0).
    pub fn is_same(self) -> bool {
        self != Verdict::Different
    }
}

/// One run's metadata, from its `summary.json`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunIdentity {
    /// The directory as given on the command line.
    pub path: String,
    pub name: String,
    pub seed: u64,
    pub script: String,
    pub script_sha256: String,
    pub catalog: String,
    pub catalog_sha256: String,
    /// The marketplace's size factor; left out at 1.
    #[serde(skip_serializing_if = "crate::market::catalog::is_unit_scale")]
    pub scale: u32,
    pub tool_version: String,
    pub epoch: String,
    pub duration: String,
    pub bucket_ms: u64,
    pub buckets: usize,
    /// Whether `series.csv` carries scores (`expected`, `z`, `normalized`, `flag`).
    pub analyzed: bool,
}

impl RunIdentity {
    fn new(run: &RunDirectory, analyzed: bool) -> Self {
        let summary = &run.summary;
        RunIdentity {
            path: run.path.to_string_lossy().into_owned(),
            name: summary.name.clone(),
            seed: summary.seed,
            script: summary.script.path.clone(),
            script_sha256: summary.script.sha256.clone(),
            catalog: summary.catalog.path.clone(),
            catalog_sha256: summary.catalog.sha256.clone(),
            scale: summary.scale,
            tool_version: summary.tool.version.clone(),
            epoch: summary.epoch.clone(),
            duration: summary.duration.clone(),
            bucket_ms: summary.bucket_ms,
            buckets: summary.buckets,
            analyzed,
        }
    }

    /// The compared metadata fields, as (JSON name, value).
    fn fields(&self) -> [(&'static str, String); 11] {
        [
            ("name", self.name.clone()),
            ("seed", self.seed.to_string()),
            ("script", self.script.clone()),
            ("scriptSha256", self.script_sha256.clone()),
            ("catalog", self.catalog.clone()),
            ("catalogSha256", self.catalog_sha256.clone()),
            ("scale", self.scale.to_string()),
            ("toolVersion", self.tool_version.clone()),
            ("epoch", self.epoch.clone()),
            ("duration", self.duration.clone()),
            ("bucketMs", self.bucket_ms.to_string()),
        ]
    }
}

/// A field whose value differs between A and B.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldDifference {
    pub field: String,
    pub a: String,
    pub b: String,
}

/// What exists in one run only.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StructureDiff {
    pub streams_only_in_a: Vec<String>,
    pub streams_only_in_b: Vec<String>,
    /// Buckets whose start time the other run does not have.
    pub buckets_only_in_a: usize,
    pub buckets_only_in_b: usize,
    /// Buckets both runs have, compared value by value.
    pub buckets_compared: usize,
    /// False when the bucket sizes differ: then only totals and fingerprints are compared.
    pub series_compared: bool,
}

impl StructureDiff {
    fn differs(&self) -> bool {
        !self.streams_only_in_a.is_empty()
            || !self.streams_only_in_b.is_empty()
            || self.buckets_only_in_a > 0
            || self.buckets_only_in_b > 0
            || !self.series_compared
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamCounts {
    pub compared: usize,
    pub identical: usize,
    pub within_tolerance: usize,
    pub different: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StreamStatus {
    Identical,
    WithinTolerance,
    Different,
}

/// One stream both runs have.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamDiff {
    pub name: String,
    pub domain: String,
    pub status: StreamStatus,
    pub events_a: u64,
    pub events_b: u64,
    /// Relative difference of the event totals.
    pub events_relative_difference: f64,
    pub fingerprint_a: String,
    pub fingerprint_b: String,
    /// Compared buckets whose values differ at all.
    pub buckets_differing: usize,
    /// Compared buckets whose values differ beyond the tolerance.
    pub buckets_beyond_tolerance: usize,
    /// The earliest bucket that differs beyond the tolerance.
    pub first_divergence: Option<BucketDelta>,
    /// This stream's largest bucket difference beyond the tolerance (ranked as in
    /// [`LargestDeltas`]).
    pub largest_delta: Option<BucketDelta>,
}

/// One bucket of one stream in both runs.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BucketDelta {
    pub stream: String,
    pub timestamp: String,
    pub a: Option<f64>,
    pub b: Option<f64>,
    /// `b − a`, when both have a value.
    pub delta: Option<f64>,
    pub relative_difference: f64,
    pub normalized_a: Option<f64>,
    pub normalized_b: Option<f64>,
    /// `normalized_b − normalized_a`, when both runs were analyzed.
    pub normalized_delta: Option<f64>,
}

/// How the largest differences are ranked: by the change of the normalized score (0–100) when
/// both runs were analyzed, else by the relative difference of the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum DeltaBasis {
    Normalized,
    Relative,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LargestDeltas {
    pub basis: DeltaBasis,
    /// At most [`LARGEST_DELTAS_LIMIT`] bucket differences beyond the tolerance, over all
    /// streams, largest first.
    pub deltas: Vec<BucketDelta>,
}

/// An external event as `timeline.json` lists it (only the fields compared).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineEvent {
    pub id: String,
    pub timestamp: String,
    #[serde(rename = "ref")]
    pub reference: String,
    pub title: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangedEvent {
    pub id: String,
    pub changes: Vec<FieldDifference>,
}

/// External events matched by id: in B only (added), in A only (removed), or in both with
/// another timestamp, ref or title (changed).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TimelineDiff {
    pub events_a: usize,
    pub events_b: usize,
    pub added: Vec<TimelineEvent>,
    pub removed: Vec<TimelineEvent>,
    pub changed: Vec<ChangedEvent>,
}

impl TimelineDiff {
    pub fn n_differences(&self) -> usize {
        self.added.len() + self.removed.len() + self.changed.len()
    }
}

/// Both runs' series over the union of their bucket starts; `null` where a run has no bucket
/// at that time or a gauge had no reading.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlignedSeries {
    pub timestamps: Vec<String>,
    pub streams: Vec<AlignedStream>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AlignedStream {
    pub name: String,
    pub a: Vec<Option<f64>>,
    pub b: Vec<Option<f64>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TimelineFile {
    external_events: Vec<TimelineEvent>,
}

fn read_timeline(run: &RunDirectory) -> Result<Vec<TimelineEvent>, OutputError> {
    let path = run.path.join(TIMELINE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| OutputError::Io {
        path: path.clone(),
        source,
    })?;
    let file: TimelineFile =
        serde_json::from_str(&text).map_err(|error| OutputError::Malformed {
            path: path.clone(),
            line: Some(error.line()),
            message: error.to_string(),
        })?;
    Ok(file.external_events)
}

/// `|a − b| / max(|a|, |b|)`; 0 when equal, 1 when exactly one is missing.
pub fn relative_difference(a: Option<f64>, b: Option<f64>) -> f64 {
    match (a, b) {
        (None, None) => 0.0,
        (Some(_), None) | (None, Some(_)) => 1.0,
        (Some(a), Some(b)) => {
            if a == b {
                0.0
            } else {
                (a - b).abs() / a.abs().max(b.abs())
            }
        }
    }
}

/// Classifies one stream under the tolerance rule of the module docs.
pub fn stream_status(
    tolerance: f64,
    totals_relative_difference: f64,
    fingerprints_equal: bool,
    buckets_differing: usize,
    buckets_beyond_tolerance: usize,
) -> StreamStatus {
    let beyond = totals_relative_difference > tolerance
        || buckets_beyond_tolerance > 0
        || (tolerance == 0.0 && !fingerprints_equal);
    let anything = totals_relative_difference > 0.0 || buckets_differing > 0 || !fingerprints_equal;
    if beyond {
        StreamStatus::Different
    } else if anything {
        StreamStatus::WithinTolerance
    } else {
        StreamStatus::Identical
    }
}

fn round_to(value: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (value * scale).round() / scale
}

/// A bucket difference with what ranks it among the others.
struct RankedDelta {
    delta: BucketDelta,
    /// |normalized delta| when ranking by normalized scores, else the relative difference.
    primary: f64,
    relative: f64,
    magnitude: f64,
    stream_index: usize,
    bucket_index: usize,
}

/// Largest first; ties go to the earlier stream (A's order), then the earlier bucket, so the
/// ranking is deterministic.
fn rank_order(x: &RankedDelta, y: &RankedDelta) -> std::cmp::Ordering {
    y.primary
        .total_cmp(&x.primary)
        .then_with(|| y.relative.total_cmp(&x.relative))
        .then_with(|| y.magnitude.total_cmp(&x.magnitude))
        .then_with(|| x.stream_index.cmp(&y.stream_index))
        .then_with(|| x.bucket_index.cmp(&y.bucket_index))
}

/// Opens, checks and compares the runs at `path_a` and `path_b`.
pub fn diff_runs(
    path_a: &Path,
    path_b: &Path,
    options: &DiffOptions,
) -> Result<DiffReport, DiffError> {
    let tolerance = options.tolerance;
    check_tolerance(tolerance).map_err(|reason| DiffError::Tolerance {
        value: tolerance,
        reason,
    })?;
    let run_a = open_run(path_a)?;
    let run_b = open_run(path_b)?;
    let series_a = RunSeries::load(&run_a)?;
    let series_b = RunSeries::load(&run_b)?;
    let timeline_a = read_timeline(&run_a)?;
    let timeline_b = read_timeline(&run_b)?;

    let identity_a = RunIdentity::new(&run_a, series_a.is_analyzed());
    let identity_b = RunIdentity::new(&run_b, series_b.is_analyzed());
    let metadata: Vec<FieldDifference> = identity_a
        .fields()
        .into_iter()
        .zip(identity_b.fields())
        .filter(|((_, a), (_, b))| a != b)
        .map(|((field, a), (_, b))| FieldDifference {
            field: field.to_string(),
            a,
            b,
        })
        .collect();
    let different_scripts = identity_a.script_sha256 != identity_b.script_sha256;

    // Buckets are matched by start time, so runs of different lengths compare where they
    // overlap; with different bucket sizes no two buckets mean the same thing.
    let series_compared = run_a.summary.bucket_ms == run_b.summary.bucket_ms;
    let bucket_pairs: Vec<(usize, usize)> = if series_compared {
        let index_b: BTreeMap<_, usize> = series_b
            .bucket_starts
            .iter()
            .enumerate()
            .map(|(index, start)| (*start, index))
            .collect();
        series_a
            .bucket_starts
            .iter()
            .enumerate()
            .filter_map(|(index_a, start)| index_b.get(start).map(|&index_b| (index_a, index_b)))
            .collect()
    } else {
        Vec::new()
    };

    let stream_index_b: BTreeMap<&str, usize> = run_b
        .summary
        .streams
        .iter()
        .enumerate()
        .map(|(index, stream)| (stream.name.as_str(), index))
        .collect();
    let stream_names_a: std::collections::BTreeSet<&str> = run_a
        .summary
        .streams
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    let structure = StructureDiff {
        streams_only_in_a: run_a
            .summary
            .streams
            .iter()
            .filter(|s| !stream_index_b.contains_key(s.name.as_str()))
            .map(|s| s.name.clone())
            .collect(),
        streams_only_in_b: run_b
            .summary
            .streams
            .iter()
            .filter(|s| !stream_names_a.contains(s.name.as_str()))
            .map(|s| s.name.clone())
            .collect(),
        buckets_only_in_a: if series_compared {
            series_a.n_buckets() - bucket_pairs.len()
        } else {
            0
        },
        buckets_only_in_b: if series_compared {
            series_b.n_buckets() - bucket_pairs.len()
        } else {
            0
        },
        buckets_compared: bucket_pairs.len(),
        series_compared,
    };

    let use_normalized = identity_a.analyzed && identity_b.analyzed;
    let mut streams = Vec::new();
    let mut all_deltas: Vec<RankedDelta> = Vec::new();
    for (stream_index_a, stream_a) in run_a.summary.streams.iter().enumerate() {
        let Some(&stream_index_b) = stream_index_b.get(stream_a.name.as_str()) else {
            continue;
        };
        let stream_b = &run_b.summary.streams[stream_index_b];
        let mut buckets_differing = 0;
        let mut stream_deltas: Vec<RankedDelta> = Vec::new();
        for &(bucket_a, bucket_b) in &bucket_pairs {
            let row_a = series_a.row(bucket_a, stream_index_a);
            let row_b = series_b.row(bucket_b, stream_index_b);
            let relative = relative_difference(row_a.value, row_b.value);
            if relative > 0.0 {
                buckets_differing += 1;
            }
            if relative <= tolerance {
                continue;
            }
            let delta = match (row_a.value, row_b.value) {
                (Some(a), Some(b)) => Some(round_to(b - a, 3)),
                _ => None,
            };
            let normalized_delta = match (row_a.normalized, row_b.normalized) {
                (Some(a), Some(b)) if use_normalized => Some(round_to(b - a, 1)),
                _ => None,
            };
            let primary = if use_normalized {
                // Buckets without scores in both runs rank after every scored one.
                normalized_delta.map_or(-1.0, f64::abs)
            } else {
                relative
            };
            stream_deltas.push(RankedDelta {
                delta: BucketDelta {
                    stream: stream_a.name.clone(),
                    timestamp: series_a.bucket_timestamps[bucket_a].clone(),
                    a: row_a.value,
                    b: row_b.value,
                    delta,
                    relative_difference: round_to(relative, 4),
                    normalized_a: row_a.normalized,
                    normalized_b: row_b.normalized,
                    normalized_delta,
                },
                primary,
                relative,
                magnitude: delta.map_or(f64::INFINITY, f64::abs),
                stream_index: stream_index_a,
                bucket_index: bucket_a,
            });
        }
        let events_relative_difference =
            relative_difference(Some(stream_a.events as f64), Some(stream_b.events as f64));
        let status = stream_status(
            tolerance,
            events_relative_difference,
            stream_a.fingerprint == stream_b.fingerprint,
            buckets_differing,
            stream_deltas.len(),
        );
        // Bucket pairs are in A's time order, so the first kept delta is the first divergence.
        let first_divergence = stream_deltas.first().map(|ranked| ranked.delta.clone());
        let largest_delta = stream_deltas
            .iter()
            .min_by(|x, y| rank_order(x, y))
            .map(|ranked| ranked.delta.clone());
        streams.push(StreamDiff {
            name: stream_a.name.clone(),
            domain: stream_a.domain.clone(),
            status,
            events_a: stream_a.events,
            events_b: stream_b.events,
            events_relative_difference: round_to(events_relative_difference, 4),
            fingerprint_a: stream_a.fingerprint.clone(),
            fingerprint_b: stream_b.fingerprint.clone(),
            buckets_differing,
            buckets_beyond_tolerance: stream_deltas.len(),
            first_divergence,
            largest_delta,
        });
        all_deltas.append(&mut stream_deltas);
    }
    all_deltas.sort_by(rank_order);
    all_deltas.truncate(LARGEST_DELTAS_LIMIT);
    let largest_deltas = LargestDeltas {
        basis: if use_normalized {
            DeltaBasis::Normalized
        } else {
            DeltaBasis::Relative
        },
        deltas: all_deltas.into_iter().map(|ranked| ranked.delta).collect(),
    };

    let count = |status| streams.iter().filter(|s| s.status == status).count();
    let counts = StreamCounts {
        compared: streams.len(),
        identical: count(StreamStatus::Identical),
        within_tolerance: count(StreamStatus::WithinTolerance),
        different: count(StreamStatus::Different),
    };
    let timeline = diff_timelines(&timeline_a, &timeline_b);
    let recommendations = match (
        read_recommendations(&run_a.path)?,
        read_recommendations(&run_b.path)?,
    ) {
        (Some(a), Some(b)) => Some(diff_recommendations(&a, &b)),
        _ => None,
    };
    let recommendations_differ = recommendations
        .as_ref()
        .is_some_and(|diff| diff.n_differences() > 0);
    let verdict = if counts.different > 0
        || structure.differs()
        || timeline.n_differences() > 0
        || recommendations_differ
    {
        Verdict::Different
    } else if counts.within_tolerance > 0 {
        Verdict::WithinTolerance
    } else {
        Verdict::Identical
    };
    let series = (options.include_series && series_compared)
        .then(|| align_series(&series_a, &series_b, &stream_index_b));

    Ok(DiffReport {
        format: DIFF_FORMAT,
        verdict,
        tolerance,
        different_scripts,
        a: identity_a,
        b: identity_b,
        metadata,
        structure,
        counts,
        streams,
        largest_deltas,
        timeline,
        recommendations,
        series,
    })
}

fn diff_timelines(a: &[TimelineEvent], b: &[TimelineEvent]) -> TimelineDiff {
    let by_id_a: BTreeMap<&str, &TimelineEvent> = a.iter().map(|e| (e.id.as_str(), e)).collect();
    let by_id_b: BTreeMap<&str, &TimelineEvent> = b.iter().map(|e| (e.id.as_str(), e)).collect();
    let removed = a
        .iter()
        .filter(|e| !by_id_b.contains_key(e.id.as_str()))
        .cloned()
        .collect();
    let added = b
        .iter()
        .filter(|e| !by_id_a.contains_key(e.id.as_str()))
        .cloned()
        .collect();
    let mut changed = Vec::new();
    for event_a in a {
        let Some(event_b) = by_id_b.get(event_a.id.as_str()) else {
            continue;
        };
        let changes: Vec<FieldDifference> = [
            ("timestamp", &event_a.timestamp, &event_b.timestamp),
            ("ref", &event_a.reference, &event_b.reference),
            ("title", &event_a.title, &event_b.title),
        ]
        .into_iter()
        .filter(|(_, x, y)| x != y)
        .map(|(field, x, y)| FieldDifference {
            field: field.to_string(),
            a: x.clone(),
            b: y.clone(),
        })
        .collect();
        if !changes.is_empty() {
            changed.push(ChangedEvent {
                id: event_a.id.clone(),
                changes,
            });
        }
    }
    TimelineDiff {
        events_a: a.len(),
        events_b: b.len(),
        added,
        removed,
        changed,
    }
}

/// Both series over the union of their bucket starts (the caller checked the bucket sizes).
fn align_series(
    series_a: &RunSeries,
    series_b: &RunSeries,
    stream_index_b: &BTreeMap<&str, usize>,
) -> AlignedSeries {
    let mut starts: BTreeMap<_, (Option<usize>, Option<usize>, &str)> = BTreeMap::new();
    for (index, start) in series_a.bucket_starts.iter().enumerate() {
        starts.insert(
            *start,
            (Some(index), None, &series_a.bucket_timestamps[index]),
        );
    }
    for (index, start) in series_b.bucket_starts.iter().enumerate() {
        starts
            .entry(*start)
            .or_insert((None, None, &series_b.bucket_timestamps[index]))
            .1 = Some(index);
    }
    let streams = series_a
        .stream_names
        .iter()
        .enumerate()
        .filter_map(|(stream_a, name)| {
            let stream_b = *stream_index_b.get(name.as_str())?;
            let (a, b) = starts
                .values()
                .map(|(bucket_a, bucket_b, _)| {
                    (
                        bucket_a.and_then(|bucket| series_a.row(bucket, stream_a).value),
                        bucket_b.and_then(|bucket| series_b.row(bucket, stream_b).value),
                    )
                })
                .unzip();
            Some(AlignedStream {
                name: name.clone(),
                a,
                b,
            })
        })
        .collect();
    AlignedSeries {
        timestamps: starts.values().map(|(_, _, t)| t.to_string()).collect(),
        streams,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_difference_is_symmetric_and_bounded_for_counts() {
        assert_eq!(relative_difference(Some(0.0), Some(0.0)), 0.0);
        assert_eq!(relative_difference(Some(100.0), Some(95.0)), 0.05);
        assert_eq!(relative_difference(Some(95.0), Some(100.0)), 0.05);
        assert_eq!(relative_difference(Some(0.0), Some(3.0)), 1.0);
        assert_eq!(relative_difference(None, Some(3.0)), 1.0);
        assert_eq!(relative_difference(None, None), 0.0);
    }

    #[test]
    fn tolerance_rule_ignores_fingerprints_only_when_tolerant() {
        // Same buckets and totals, other fingerprint: different when exact, within otherwise.
        assert_eq!(
            stream_status(0.0, 0.0, false, 0, 0),
            StreamStatus::Different
        );
        assert_eq!(
            stream_status(0.05, 0.0, false, 0, 0),
            StreamStatus::WithinTolerance
        );
        // A 4 % total difference is within 5 %, a 6 % one is not.
        assert_eq!(
            stream_status(0.05, 0.04, false, 3, 0),
            StreamStatus::WithinTolerance
        );
        assert_eq!(
            stream_status(0.05, 0.06, false, 3, 0),
            StreamStatus::Different
        );
        // One bucket beyond the tolerance is enough.
        assert_eq!(
            stream_status(0.05, 0.0, false, 3, 1),
            StreamStatus::Different
        );
        assert_eq!(stream_status(0.0, 0.0, true, 0, 0), StreamStatus::Identical);
    }

    #[test]
    fn tolerances_parse_as_fractions_or_percentages() {
        assert_eq!(parse_tolerance("0.05"), Ok(0.05));
        assert_eq!(parse_tolerance("5%"), Ok(0.05));
        assert_eq!(parse_tolerance("0"), Ok(0.0));
        assert!(parse_tolerance("-0.1").is_err());
        assert!(parse_tolerance("1.5").is_err());
        assert!(parse_tolerance("five").is_err());
        assert!(parse_tolerance("NaN").is_err());
    }
}
