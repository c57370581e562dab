//! `labels.csv`: ground truth per stream-bucket, for scoring an anomaly detector bucket by
//! bucket, written from the counterfactual twins the run already measured (`truth.json` is the
//! per-item summary of the same twins).
//!
//! One row per item and stream-bucket that the item affected — the run and its twin without the
//! item differ there — or that the item declares (a red herring's declared streams, which it
//! leaves exactly as they were), from the item's bucket to the end of its tail: the twins run
//! past the item's window until every stream it moved has been back inside its noise band for
//! an hour (`truthEnd` in `truth.json`), or the truth horizon, or the run's end. Rows are in
//! bucket order, then catalog order of the stream, then the order items took effect; a
//! stream-bucket two items affected has two rows.
//!
//! Columns (the README documents them for users):
//! - `timestamp`: the bucket's start, as in `series.csv`; `stream`.
//! - `item` (`evt_007`, `mod_002`), `kind` (`scenario`, `event`), `ref` (library id).
//! - `origin`: `script` (the script or a live command named it), `injected` (a scenario injected
//!   it; `parent` is that scenario's item) or `background`; `scripted` is `true` unless
//!   background; `red_herring`.
//! - `actual`, `counterfactual`: the bucket's value in the run and in the twin without the item
//!   (counts, or a gauge's mean reading with 3 decimals); `delta` = actual − counterfactual;
//!   `relative_delta` = delta / max(|counterfactual|, 1).
//! - `band`: the bucket's noise band (see [`TwinMeasurement::band`]); `significant`: |delta| >
//!   band — the item, not chance, moved this bucket.

use std::fmt::Write as _;

use crate::scenario::timeline::{PlanItem, PlanSubject};
use crate::scenario::RunPlan;
use crate::session::{RunCollector, TwinMeasurement};

pub const LABELS_FILE: &str = "labels.csv";
pub const LABELS_HEADER: &str = "timestamp,stream,item,kind,ref,origin,parent,scripted,red_herring,actual,counterfactual,delta,relative_delta,band,significant";

/// One row of `labels.csv`, typed: what every writer of the labels (CSV, columnar) writes.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelRecord {
    /// The bucket's start, ms since the Unix epoch, and as written (`2025-03-03T00:00:00.000Z`).
    pub timestamp_unix_ms: i64,
    pub timestamp: String,
    pub stream: String,
    /// The stream is a gauge: values are mean readings (3 decimals), else counts.
    pub gauge: bool,
    pub item: String,
    /// `scenario` or `event`.
    pub kind: &'static str,
    pub reference: String,
    /// `script`, `injected` or `background`.
    pub origin: &'static str,
    /// The item of the scenario that injected this one (empty unless `origin` is `injected`).
    pub parent: String,
    pub scripted: bool,
    pub red_herring: bool,
    pub actual: f64,
    pub counterfactual: f64,
    pub delta: f64,
    pub relative_delta: f64,
    pub band: f64,
    pub significant: bool,
}

/// One row before it is described: (bucket, stream index, item index) orders the file.
struct LabelRow {
    bucket: usize,
    stream: usize,
    item: usize,
    actual: f64,
    counterfactual: f64,
    band: f64,
}

/// Where an item came from, as the `origin` column says it, and the item of the scenario that
/// injected it.
fn origin_and_parent(items: &[PlanItem], index: usize) -> (&'static str, String) {
    let item = &items[index];
    if item.origin == "background" {
        return ("background", String::new());
    }
    let Some(scenario_id) = item.origin.strip_prefix("scenario:") else {
        return ("script", String::new());
    };
    // The latest instance of that scenario to start at or before the event: the one whose
    // schedule injected it.
    let parent = items[..index]
        .iter()
        .rev()
        .find(|candidate| {
            matches!(candidate.subject, PlanSubject::Scenario(_))
                && candidate.label() == scenario_id
                && candidate.start_ms <= item.start_ms
        })
        .map(|candidate| candidate.instance_id.clone())
        .unwrap_or_default();
    ("injected", parent)
}

/// The streams an item declares it moves: a scenario's stream modifiers, an event's expected
/// impact.
fn declares(item: &PlanItem, stream_name: &str) -> bool {
    match &item.subject {
        PlanSubject::Scenario(scenario) => scenario.touches.iter().any(|t| t == stream_name),
        PlanSubject::Event(event) => event
            .expected_impact
            .streams
            .iter()
            .any(|s| s == stream_name),
    }
}

/// A value of the `actual`, `counterfactual` or `delta` column as written: 3 decimals for a
/// gauge, whole numbers for counts.
pub(crate) fn format_number(value: f64, gauge: bool) -> String {
    if gauge {
        format!("{value:.3}")
    } else {
        // Counts and their differences are whole numbers.
        format!("{value:.0}")
    }
}

/// The labels of a run, in file order: every item's twin compared with the run, bucket by
/// bucket.
pub fn label_records(
    plan: &RunPlan,
    items: &[PlanItem],
    actual: &RunCollector,
    twins: &[TwinMeasurement],
) -> Vec<LabelRecord> {
    let epoch = plan.epoch();
    let bucket_ms = plan.bucket_ms();
    let run_buckets = plan.bucket_count();
    let mut rows = Vec::new();
    for twin in twins {
        let Some(item) = items.get(twin.item) else {
            continue;
        };
        for stream in &plan.catalog.streams {
            let index = stream.id.index();
            let declared = declares(item, &stream.name);
            for bucket in twin.first_bucket..twin.end_bucket.min(run_buckets) {
                let Some(delta) = twin.delta(actual, bucket, index) else {
                    continue;
                };
                if delta == 0.0 && !declared {
                    continue;
                }
                rows.push(LabelRow {
                    bucket,
                    stream: index,
                    item: twin.item,
                    actual: actual.bucket_value(bucket, index).unwrap_or(0.0),
                    counterfactual: twin.twin.bucket_value(bucket, index).unwrap_or(0.0),
                    band: twin.band(bucket, index),
                });
            }
        }
    }
    rows.sort_by_key(|row| (row.bucket, row.stream, row.item));
    rows.into_iter()
        .map(|row| {
            let item = &items[row.item];
            let stream = &plan.catalog.streams[row.stream];
            let (origin, parent) = origin_and_parent(items, row.item);
            let delta = row.actual - row.counterfactual;
            let start_ms = row.bucket as u64 * bucket_ms;
            LabelRecord {
                timestamp_unix_ms: epoch.absolute_ms(start_ms),
                timestamp: epoch.format(start_ms),
                stream: stream.name.clone(),
                gauge: stream.origin.is_gauge(),
                item: item.instance_id.clone(),
                kind: match item.subject {
                    PlanSubject::Scenario(_) => "scenario",
                    PlanSubject::Event(_) => "event",
                },
                reference: item.label().to_string(),
                origin,
                parent,
                scripted: origin != "background",
                red_herring: item.is_red_herring(),
                actual: row.actual,
                counterfactual: row.counterfactual,
                delta,
                relative_delta: delta / row.counterfactual.abs().max(1.0),
                band: row.band,
                significant: delta.abs() > row.band,
            }
        })
        .collect()
}

/// `labels.csv`: the records as CSV, with [`LABELS_HEADER`].
pub fn labels_csv(records: &[LabelRecord]) -> String {
    let mut out = String::with_capacity(64 + records.len() * 120);
    out.push_str(LABELS_HEADER);
    out.push('\n');
    for record in records {
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{:.3},{:.3},{}",
            record.timestamp,
            record.stream,
            record.item,
            record.kind,
            record.reference,
            record.origin,
            record.parent,
            record.scripted,
            record.red_herring,
            format_number(record.actual, record.gauge),
            format_number(record.counterfactual, record.gauge),
            format_number(record.delta, record.gauge),
            record.relative_delta,
            record.band,
            record.significant,
        );
    }
    out
}
