//! Ground truth: `truth.json` (what each scenario and external event declared and what it
//! measurably did) and `timeline.json` (every external event and lifecycle transition).
//!
//! The measured effect of an instance comes from a counterfactual twin: the run is forked at the
//! bucket boundary before the instance starts, the instance is suppressed in the fork, and both
//! branches are compared bucket by bucket over the instance's window. Both branches share every
//! random draw until the instance changes something, so an instance with no effect (a red
//! herring) measures exactly zero.
//!
//! Once the instance has changed a draw, the branches' random paths part and noisy streams drift
//! apart by chance. Each measured stream therefore carries the size of that drift, taken from a
//! noise twin (the counterfactual on other random paths): `noise` (one standard deviation of
//! `totalDelta` under drift alone), a 95 % `interval` around `relativeDelta`, and `material`
//! (the effect lies outside a 99 % drift band, so the instance really did it).

use serde::Serialize;

use crate::market::director::{InstanceKind, Phase, RecordKind, TimelineRecord};
use crate::market::Epoch;
use crate::scenario::definition::ExpectedImpact;
use crate::scenario::timeline::{PlanItem, PlanSubject};
use crate::scenario::RunPlan;
use crate::session::{RunCollector, TwinMeasurement};

fn round3(value: f64) -> f64 {
    (value * 1_000.0).round() / 1_000.0
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MeasuredStream {
    pub stream: String,
    /// Sum over the window of (actual − counterfactual): events, or for gauges the mean reading.
    pub total_delta: f64,
    /// `total_delta` relative to the counterfactual total.
    pub relative_delta: f64,
    /// The bucket difference of largest magnitude, with its sign.
    pub peak_delta: f64,
    pub peak_at: String,
    /// From the instance's start to the first bucket that differs beyond noise.
    pub lag_ms: u64,
    /// From the first to the end of the last bucket that differs beyond noise.
    pub duration_ms: u64,
    /// One standard deviation of `total_delta` under random drift alone (from the noise twin);
    /// 0 when the instance changes nothing the model reads.
    pub noise: f64,
    /// 95 % interval of `relative_delta` given that drift: [low, high].
    pub interval: [f64; 2],
    /// The effect lies outside the 99 % drift band: the instance, not chance, moved the stream.
    pub material: bool,
}

/// z of the 95 % interval written with each measured stream.
const INTERVAL_Z: f64 = 1.96;
/// z beyond which a measured difference is the instance's doing rather than drift (99 %).
const MATERIAL_Z: f64 = 2.576;
/// Cap on the lag-1 autocorrelation used to widen the drift of slow streams (a queue's depth
/// carries its past): at 0.9 the band is √19 ≈ 4.4 times the independent-bucket width.
const MAX_DRIFT_AUTOCORRELATION: f64 = 0.9;

/// One standard deviation of a window's summed difference between two branches under drift
/// alone, from their bucket differences: √Σd² widened by the lag-1 autocorrelation of d (buckets
/// of a slow stream do not drift independently).
fn pair_drift_sd(differences: &[f64]) -> f64 {
    let sum_squares: f64 = differences.iter().map(|d| d * d).sum();
    if sum_squares == 0.0 {
        return 0.0;
    }
    let lagged: f64 = differences.windows(2).map(|w| w[0] * w[1]).sum();
    let rho = (lagged / sum_squares).clamp(0.0, MAX_DRIFT_AUTOCORRELATION);
    (sum_squares * (1.0 + rho) / (1.0 - rho)).sqrt()
}

/// One standard deviation of (run − twin) under drift alone, from the counterfactual branches
/// (the twin first, then its noise twins), each a list of bucket values over the window. Two
/// estimates, the larger wins: the bucket-level one per twin–noise pair, and the spread of the
/// branches' totals (which catches a queue's slow wander that lag-1 cannot see).
fn drift_sd(branches: &[Vec<f64>]) -> f64 {
    let Some((twin, noise_twins)) = branches.split_first() else {
        return 0.0;
    };
    if noise_twins.is_empty() {
        return 0.0;
    }
    let pair_variance = noise_twins
        .iter()
        .map(|noise| {
            let differences: Vec<f64> = twin.iter().zip(noise).map(|(t, n)| t - n).collect();
            pair_drift_sd(&differences).powi(2)
        })
        .sum::<f64>()
        / noise_twins.len() as f64;
    let totals: Vec<f64> = branches.iter().map(|b| b.iter().sum()).collect();
    let mean = totals.iter().sum::<f64>() / totals.len() as f64;
    let branch_variance =
        totals.iter().map(|t| (t - mean).powi(2)).sum::<f64>() / (totals.len() - 1) as f64;
    // A difference of two branches has twice one branch's variance.
    pair_variance.max(2.0 * branch_variance).sqrt()
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Declared {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_impact: Option<ExpectedImpact>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub touches: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub cascade: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TruthItem {
    pub id: String,
    pub kind: &'static str,
    #[serde(rename = "ref")]
    pub reference: String,
    pub origin: String,
    pub name: String,
    pub start: String,
    pub active_until: String,
    pub settled_at: String,
    pub red_herring: bool,
    pub declared: Declared,
    pub window_start: String,
    pub window_end: String,
    /// Where the item's labels in `labels.csv` end: the twins ran past the window until every
    /// stream the item moved was back inside its noise band for an hour (`tail`: `converged`),
    /// or the truth horizon past the window (`horizon`), or the run's end (`runEnd`).
    pub truth_end: String,
    pub tail: &'static str,
    /// Streams whose difference exceeds noise, largest relative change first.
    pub measured: Vec<MeasuredStream>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Truth {
    pub format: &'static str,
    pub items: Vec<TruthItem>,
}

/// Compares the actual run with each twin.
pub fn build_truth(
    plan: &RunPlan,
    plan_items: &[PlanItem],
    actual: &RunCollector,
    twins: &[TwinMeasurement],
    records: &[TimelineRecord],
) -> Truth {
    let epoch = plan.epoch();
    let bucket_ms = plan.script.bucket_ms;
    let mut items = Vec::new();
    for (index, item) in plan_items.iter().enumerate() {
        // The instance as the run changed it (a stop brings settling forward).
        let planned = &item.instance;
        let mut active_until = planned.active_until;
        for record in records {
            if let RecordKind::Phase {
                instance,
                phase: Phase::Settling | Phase::Settled,
            } = record.kind
            {
                if instance == index {
                    active_until = active_until.min(record.time);
                    break;
                }
            }
        }
        // A stop or reset brings the window's end forward too: after the item settled, what
        // the twin still differs by is the divergence of two random paths, not the item.
        let window_end_ms = if active_until < planned.active_until {
            item.window_end_ms
                .min(active_until.saturating_add(planned.settlement_ms))
        } else {
            item.window_end_ms
        };
        let measured_until_bucket = window_end_ms.div_ceil(bucket_ms) as usize;
        let twin_of_item = twins.iter().find(|t| t.item == index);
        let measured = twin_of_item
            .map(|twin| {
                measure(
                    plan,
                    actual,
                    twin,
                    measured_until_bucket,
                    item.start_ms,
                    epoch,
                )
            })
            .unwrap_or_default();
        let (name, declared) = match &item.subject {
            PlanSubject::Scenario(scenario) => (
                scenario.name.clone(),
                Declared {
                    expected_impact: None,
                    touches: scenario.touches.clone(),
                    cascade: scenario.cascade.clone(),
                },
            ),
            PlanSubject::Event(event) => (
                event.title.clone(),
                Declared {
                    expected_impact: Some(event.expected_impact.clone()),
                    touches: Vec::new(),
                    cascade: String::new(),
                },
            ),
        };
        items.push(TruthItem {
            id: item.instance_id.clone(),
            kind: match item.kind() {
                InstanceKind::Scenario => "scenario",
                InstanceKind::Event => "event",
            },
            reference: item.label().to_string(),
            origin: item.origin.clone(),
            name,
            start: epoch.format(item.start_ms),
            active_until: epoch.format(active_until),
            settled_at: epoch.format(active_until + planned.settlement_ms),
            red_herring: item.is_red_herring(),
            declared,
            window_start: epoch.format((item.start_ms / bucket_ms) * bucket_ms),
            window_end: epoch.format(window_end_ms.min(plan.duration_ms)),
            truth_end: epoch.format(
                twin_of_item
                    .map_or(window_end_ms, |twin| twin.end_bucket as u64 * bucket_ms)
                    .min(plan.duration_ms),
            ),
            tail: twin_of_item.map_or("none", |twin| twin.tail_end.as_str()),
            measured,
        });
    }
    Truth {
        format: "marketsim-truth/1",
        items,
    }
}

/// The item's measured streams over the twin's buckets, up to `until_bucket` (exclusive).
fn measure(
    plan: &RunPlan,
    actual: &RunCollector,
    twin: &TwinMeasurement,
    until_bucket: usize,
    start_ms: u64,
    epoch: Epoch,
) -> Vec<MeasuredStream> {
    let bucket_ms = plan.script.bucket_ms;
    let mut measured = Vec::new();
    for stream in &plan.catalog.streams {
        let index = stream.id.index();
        let gauge = stream.origin.is_gauge();
        let mut total_actual = 0.0;
        let mut total_twin = 0.0;
        let mut peak = (0.0f64, twin.first_bucket);
        let mut significant: Option<(usize, usize)> = None;
        let mut branches = vec![Vec::new(); 1 + twin.noise.len()];
        for bucket in twin.first_bucket..twin.end_bucket.min(until_bucket) {
            let a = actual.bucket_value(bucket, index).unwrap_or(0.0);
            let b = twin.twin.bucket_value(bucket, index).unwrap_or(0.0);
            for (branch, collector) in branches
                .iter_mut()
                .zip(std::iter::once(&twin.twin).chain(&twin.noise))
            {
                branch.push(collector.bucket_value(bucket, index).unwrap_or(0.0));
            }
            total_actual += a;
            total_twin += b;
            let diff = a - b;
            if diff.abs() > peak.0.abs() {
                peak = (diff, bucket);
            }
            // Beyond noise: three Poisson standard deviations for counts; for gauges 5 % of the
            // reading and at least one unit.
            let noise = if gauge {
                (0.05 * b.abs()).max(1.0)
            } else {
                3.0 * b.max(1.0).sqrt()
            };
            if diff.abs() > noise {
                significant = Some(match significant {
                    None => (bucket, bucket),
                    Some((first, _)) => (first, bucket),
                });
            }
        }
        let total_delta = total_actual - total_twin;
        let relative = total_delta / total_twin.abs().max(1.0);
        let beyond_noise = if gauge {
            relative.abs() >= 0.05
        } else {
            total_delta.abs() > 3.0 * total_twin.max(1.0).sqrt() && relative.abs() >= 0.02
        };
        let Some((first, last)) = significant.filter(|_| beyond_noise) else {
            continue;
        };
        let noise = drift_sd(&branches);
        let scale = total_twin.abs().max(1.0);
        measured.push(MeasuredStream {
            stream: stream.name.clone(),
            total_delta: round3(total_delta),
            relative_delta: round3(relative),
            peak_delta: round3(peak.0),
            peak_at: epoch.format(peak.1 as u64 * bucket_ms),
            lag_ms: (first as u64 * bucket_ms).saturating_sub(start_ms),
            duration_ms: (last + 1 - first) as u64 * bucket_ms,
            noise: round3(noise),
            interval: [
                round3((total_delta - INTERVAL_Z * noise) / scale),
                round3((total_delta + INTERVAL_Z * noise) / scale),
            ],
            material: total_delta.abs() > MATERIAL_Z * noise,
        });
    }
    measured.sort_by(|a, b| {
        b.relative_delta
            .abs()
            .total_cmp(&a.relative_delta.abs())
            .then_with(|| a.stream.cmp(&b.stream))
    });
    measured
}

/// The seed's `ExternalEvent`, as injected during a run.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalEventRecord {
    pub id: String,
    pub timestamp: String,
    #[serde(rename = "type")]
    pub kind: crate::scenario::definition::EventType,
    pub title: String,
    pub description: String,
    pub severity: crate::scenario::definition::Severity,
    pub expected_impact: ExpectedImpact,
    pub icon: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_link: Option<String>,
    #[serde(rename = "injectedByAI")]
    pub injected_by_ai: bool,
    /// The library template it came from.
    #[serde(rename = "ref")]
    pub reference: String,
    /// `script`, `scenario:<id>` or `background`.
    pub origin: String,
    /// Ground truth: the event changes nothing.
    pub red_herring: bool,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    pub timestamp: String,
    /// `active`, `settling`, `settled`, `stop` or `reset`.
    pub transition: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Timeline {
    pub format: &'static str,
    pub external_events: Vec<ExternalEventRecord>,
    pub transitions: Vec<Transition>,
}

pub fn build_timeline(plan: &RunPlan, items: &[PlanItem], records: &[TimelineRecord]) -> Timeline {
    let epoch = plan.epoch();
    let mut external_events = Vec::new();
    let mut transitions = Vec::new();
    for record in records {
        let timestamp = epoch.format(record.time);
        match &record.kind {
            RecordKind::EventFired { instance } => {
                let Some(item) = items.get(*instance) else {
                    continue;
                };
                let PlanSubject::Event(event) = &item.subject else {
                    continue;
                };
                external_events.push(ExternalEventRecord {
                    id: item.instance_id.clone(),
                    timestamp,
                    kind: event.kind,
                    title: event.title.clone(),
                    description: event.description.clone(),
                    severity: event.severity,
                    expected_impact: event.expected_impact.clone(),
                    icon: event.icon.clone(),
                    external_link: event.external_link.clone(),
                    injected_by_ai: false,
                    reference: item.label().to_string(),
                    origin: item.origin.clone(),
                    red_herring: item.is_red_herring(),
                });
            }
            RecordKind::Phase { instance, phase } => {
                let Some(item) = items.get(*instance) else {
                    continue;
                };
                // Red herrings have no lifecycle worth listing.
                if item.is_red_herring() {
                    continue;
                }
                transitions.push(Transition {
                    timestamp,
                    transition: phase.as_str(),
                    instance: Some(item.instance_id.clone()),
                    reference: Some(item.label().to_string()),
                });
            }
            RecordKind::Stop { label } => transitions.push(Transition {
                timestamp,
                transition: "stop",
                instance: None,
                reference: Some(label.clone()),
            }),
            RecordKind::Reset => transitions.push(Transition {
                timestamp,
                transition: "reset",
                instance: None,
                reference: None,
            }),
        }
    }
    Timeline {
        format: "marketsim-timeline/1",
        external_events,
        transitions,
    }
}
