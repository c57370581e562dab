//! The one context builder every analyst reads: at a moment of the run, the current anomalies,
//! the external events of the last seven days, baseline statistics and recent values of the
//! streams concerned, and correlations — the seed's "Dashboard AI" context, bounded in size so
//! a language model's prompt stays small whatever the run.
//!
//! The context holds only what an operations team would see at that moment: nothing from later
//! buckets, and nothing from ground truth (whether an event is a red herring is never in it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::{VirtualTimeMs, MS_PER_DAY};
use crate::market::Epoch;
use crate::scenario::definition::{EventType, ExpectedImpact, Severity};
use crate::stats::baseline::{slot_of_week, Baseline, BucketMatrix};
use crate::stats::correlation::{
    event_stream_shifts, stream_correlations, CorrelationRequest, EventCorrelation,
    StreamCorrelation,
};
use crate::stats::{AnomalyFlag, ScoreTable};

/// At most this many anomalies (the largest |z| first).
pub const MAX_ANOMALIES: usize = 20;
/// An anomaly's onset counts back through calm gaps of at most this many buckets.
pub const ONSET_GAP_BUCKETS: usize = 6;
/// And at most this far back.
pub const LOOKBACK_BUCKETS_FOR_ONSET: usize = 7 * 24;
/// At most this many external events (the most recent first).
pub const MAX_EVENTS: usize = 40;
/// Recent values per anomalous stream, in buckets.
pub const RECENT_BUCKETS: usize = 24;
/// How far back events and daily totals reach.
pub const LOOKBACK_MS: u64 = 7 * MS_PER_DAY;
/// Stream pairs kept in the correlations.
pub const MAX_STREAM_PAIRS: usize = 12;
/// Buckets the stream–stream correlations look back over.
pub const CORRELATION_BUCKETS: usize = 48;
/// Pairs correlated less than this are left out.
pub const MIN_STREAM_CORRELATION: f64 = 0.6;

/// An external event as the analyst sees it (the seed's `ExternalEvent`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextEvent {
    pub id: String,
    pub timestamp: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub title: String,
    pub description: String,
    pub severity: Severity,
    pub expected_impact: ExpectedImpact,
    /// Virtual time of the event.
    #[serde(skip)]
    pub time_ms: VirtualTimeMs,
}

/// A stream that is flagged now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextAnomaly {
    pub stream: String,
    pub domain: String,
    pub flag: AnomalyFlag,
    pub direction: String,
    pub z: f64,
    pub value: f64,
    pub expected: f64,
    pub normalized: f64,
    /// (value − expected) / expected, in percent.
    pub change_percent: f64,
    /// Start of the flagged episode this anomaly is part of: counted back through flagged buckets
    /// on the same side, bridging gaps of at most `ONSET_GAP_BUCKETS` quiet buckets (a surge that
    /// dips below the line for an hour is one episode, not two).
    pub since: String,
    #[serde(skip)]
    pub since_ms: VirtualTimeMs,
    /// Same-side flags in the [`EARLIER_FLAG_BUCKETS`] buckets before this episode began: bit
    /// k is the bucket k + 1 before `since` (a condition that was there before an event cannot
    /// have been started by it).
    #[serde(skip)]
    pub earlier_flags: u64,
    #[serde(skip)]
    pub stream_index: usize,
}

/// Buckets before an episode whose same-side flags are kept (`ContextAnomaly::earlier_flags`).
pub const EARLIER_FLAG_BUCKETS: usize = 64;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextBaseline {
    /// Expected value and σ for this hour of the week.
    pub mean: f64,
    pub std_dev: f64,
    /// Mean of a whole day (sum of the day's 24 hourly means averaged over the week).
    pub daily_mean: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextPoint {
    pub timestamp: String,
    pub value: f64,
    pub normalized: f64,
    /// Virtual time of the bucket's start.
    #[serde(skip)]
    pub bucket_start_ms: VirtualTimeMs,
}

/// A rate that moved: `numerator` per `denominator` over the last [`RATE_BUCKETS`] buckets,
/// against what the baseline expects of it. Counts scale with volume (more lessons, more low
/// ratings); a rate does not, so a diagnosis that is about quality or supply reads rates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextRate {
    pub numerator: String,
    pub denominator: String,
    /// Observed numerator per denominator.
    pub rate: f64,
    pub expected_rate: f64,
    /// (rate − expected) / expected, in percent.
    pub change_percent: f64,
    /// The numerator's standard score given the denominator's observed volume.
    pub z: f64,
    pub direction: String,
    /// The numerator's same-side flags before `since_ms` (see `ContextAnomaly::earlier_flags`).
    #[serde(skip)]
    pub earlier_flags: u64,
    /// When the numerator's flags began (its anomaly's `since`), or now when it is not flagged.
    #[serde(skip)]
    pub since_ms: VirtualTimeMs,
}

/// Rates the context reports when they move (numerator, denominator): outcomes per request,
/// per lesson, per charge, per ticket. Both streams of a pair happen within the same hour or
/// so, so the rate over a few buckets is not skewed by a lag between them.
pub const RATE_PAIRS: &[(&str, &str)] = &[
    ("session.booking.expired", "session.booking.requested"),
    ("session.booking.confirmed", "session.booking.requested"),
    ("session.booking.declined", "session.booking.requested"),
    ("session.booking.requested", "customer.tutor.search"),
    ("session.review.flagged", "session.rating.submitted"),
    ("payment.refund.issued", "session.completed"),
    ("session.noshow.tutor", "session.started"),
    ("session.noshow.student", "session.started"),
    ("payment.charge.failed", "payment.charge.attempted"),
    ("payment.charge.succeeded", "payment.charge.attempted"),
    ("support.ticket.escalated", "support.ticket.created"),
    ("customer.signup.completed", "marketing.campaign.click"),
];
/// Rates are measured over this many buckets up to now.
pub const RATE_BUCKETS: usize = 3;
/// A rate is reported when its numerator's conditional z reaches this.
pub const RATE_REPORT_Z: f64 = 2.5;

#[derive(Debug, Clone, PartialEq, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct ContextCorrelations {
    pub events: Vec<EventCorrelation>,
    pub streams: Vec<StreamCorrelation>,
}

/// The context handed to an analyst.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnalysisContext {
    pub now: String,
    pub anomalies: Vec<ContextAnomaly>,
    pub events: Vec<ContextEvent>,
    pub baseline_stats: BTreeMap<String, ContextBaseline>,
    pub recent_values: BTreeMap<String, Vec<ContextPoint>>,
    /// Rates (see [`RATE_PAIRS`]) that moved beyond [`RATE_REPORT_Z`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rates: Vec<ContextRate>,
    pub correlations: ContextCorrelations,
    /// Every stream name of the catalog, so an answer can be checked against it.
    #[serde(skip)]
    pub known_streams: Vec<String>,
    #[serde(skip)]
    pub now_ms: VirtualTimeMs,
    /// The run's bucket length.
    #[serde(skip)]
    pub bucket_ms: u64,
}

impl AnalysisContext {
    pub fn anomaly(&self, stream: &str) -> Option<&ContextAnomaly> {
        self.anomalies.iter().find(|a| a.stream == stream)
    }

    pub fn rate(&self, numerator: &str, denominator: &str) -> Option<&ContextRate> {
        self.rates
            .iter()
            .find(|r| r.numerator == numerator && r.denominator == denominator)
    }
}

/// Everything of a run the builder reads.
pub struct RunView<'a> {
    pub stream_names: &'a [String],
    pub stream_domains: &'a [String],
    pub epoch: Epoch,
    pub bucket_ms: u64,
    pub values: &'a BucketMatrix,
    pub scores: &'a ScoreTable,
    pub baseline: &'a Baseline,
    /// External events in time order.
    pub events: &'a [ContextEvent],
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

fn round4(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}

impl RunView<'_> {
    /// The rates of [`RATE_PAIRS`] over the buckets up to `bucket` that moved: the numerator
    /// against what the baseline expects of it given the denominator's observed volume.
    fn rates_at(&self, bucket: usize, anomalies: &[ContextAnomaly]) -> Vec<ContextRate> {
        let index_of = |name: &str| self.stream_names.iter().position(|n| n == name);
        let first = (bucket + 1).saturating_sub(RATE_BUCKETS);
        let mut rates = Vec::new();
        for (numerator, denominator) in RATE_PAIRS {
            let (Some(top), Some(bottom)) = (index_of(numerator), index_of(denominator)) else {
                continue;
            };
            let (mut value_top, mut value_bottom, mut expected_top, mut expected_bottom) =
                (0.0, 0.0, 0.0, 0.0);
            for b in first..=bucket {
                let (Some(score_top), Some(score_bottom)) =
                    (self.scores.get(b, top), self.scores.get(b, bottom))
                else {
                    continue;
                };
                value_top += self.values.get(b, top).unwrap_or(0.0);
                value_bottom += self.values.get(b, bottom).unwrap_or(0.0);
                expected_top += score_top.expected;
                expected_bottom += score_bottom.expected;
            }
            if expected_bottom <= 0.0 || value_bottom <= 0.0 || expected_top <= 0.0 {
                continue;
            }
            let expected_rate = expected_top / expected_bottom;
            // What the numerator should be given how many of the denominator there were.
            let conditional = expected_rate * value_bottom;
            let z = count_z(value_top, conditional);
            if z.abs() < RATE_REPORT_Z {
                continue;
            }
            let rate = value_top / value_bottom;
            let (since_ms, earlier_flags) = anomalies
                .iter()
                .find(|a| a.stream == *numerator)
                .map_or_else(
                    || {
                        (
                            bucket as u64 * self.bucket_ms,
                            self.earlier_flags(top, bucket, z),
                        )
                    },
                    |a| (a.since_ms, a.earlier_flags),
                );
            rates.push(ContextRate {
                numerator: numerator.to_string(),
                denominator: denominator.to_string(),
                rate: round4(rate),
                expected_rate: round4(expected_rate),
                change_percent: round2(100.0 * (rate - expected_rate) / expected_rate),
                z: round2(z),
                direction: if z >= 0.0 { "up" } else { "down" }.to_string(),
                since_ms,
                earlier_flags,
            });
        }
        rates
    }

    fn time(&self, bucket: usize) -> String {
        self.epoch.format(bucket as u64 * self.bucket_ms)
    }

    /// `stream`'s flags on the side of `z` in the [`EARLIER_FLAG_BUCKETS`] buckets before
    /// `since`: bit k is the bucket k + 1 before it.
    fn earlier_flags(&self, stream: usize, since: usize, z: f64) -> u64 {
        (0..EARLIER_FLAG_BUCKETS.min(since))
            .filter(|k| {
                self.scores
                    .get(since - 1 - k, stream)
                    .is_some_and(|s| s.flag != AnomalyFlag::Normal && s.z.signum() == z.signum())
            })
            .fold(0u64, |bits, k| bits | (1 << k))
    }

    /// The context after bucket `bucket` has closed.
    pub fn context_at(&self, bucket: usize) -> AnalysisContext {
        let now_ms = (bucket as u64 + 1) * self.bucket_ms;
        let mut anomalies = Vec::new();
        for (stream, name) in self.stream_names.iter().enumerate() {
            let Some(score) = self.scores.get(bucket, stream) else {
                continue;
            };
            if score.flag == AnomalyFlag::Normal {
                continue;
            }
            // The shift began where the stream was first flagged on this side, counting
            // through short calm gaps (a sparse stream flickers in and out of its flag).
            let same_side = |b: usize| {
                self.scores.get(b, stream).is_some_and(|s| {
                    s.flag != AnomalyFlag::Normal && s.z.signum() == score.z.signum()
                })
            };
            let mut since = bucket;
            let mut probe = bucket;
            while probe > 0 && bucket - probe <= LOOKBACK_BUCKETS_FOR_ONSET {
                probe -= 1;
                if same_side(probe) {
                    since = probe;
                } else if since - probe > ONSET_GAP_BUCKETS {
                    break;
                }
            }
            let earlier_flags = self.earlier_flags(stream, since, score.z);
            let value = self.values.get(bucket, stream).unwrap_or(0.0);
            anomalies.push(ContextAnomaly {
                stream: name.clone(),
                domain: self.stream_domains[stream].clone(),
                flag: score.flag,
                direction: if score.z >= 0.0 { "up" } else { "down" }.to_string(),
                z: round2(score.z),
                value: round2(value),
                expected: round2(score.expected),
                normalized: round2(score.normalized),
                change_percent: round2(100.0 * (value - score.expected) / score.expected.max(1e-9)),
                since: self.time(since),
                since_ms: since as u64 * self.bucket_ms,
                earlier_flags,
                stream_index: stream,
            });
        }
        anomalies.sort_by(|a, b| {
            b.z.abs()
                .total_cmp(&a.z.abs())
                .then_with(|| a.stream.cmp(&b.stream))
        });
        anomalies.truncate(MAX_ANOMALIES);

        let lookback_start = now_ms.saturating_sub(LOOKBACK_MS);
        let mut events: Vec<ContextEvent> = self
            .events
            .iter()
            .filter(|e| e.time_ms < now_ms && e.time_ms >= lookback_start)
            .cloned()
            .collect();
        events.sort_by(|a, b| b.time_ms.cmp(&a.time_ms).then_with(|| a.id.cmp(&b.id)));
        events.truncate(MAX_EVENTS);

        let mut baseline_stats = BTreeMap::new();
        let mut recent_values = BTreeMap::new();
        let slot = slot_of_week(
            self.epoch.absolute_ms(bucket as u64 * self.bucket_ms),
            self.bucket_ms,
        );
        let buckets_per_day = (MS_PER_DAY / self.bucket_ms) as f64;
        for anomaly in &anomalies {
            let stream = anomaly.stream_index;
            if let Some(baseline) = self.baseline.stream(stream) {
                if let Some(stats) = baseline.slot(slot) {
                    baseline_stats.insert(
                        anomaly.stream.clone(),
                        ContextBaseline {
                            mean: round2(stats.mean),
                            std_dev: round2(stats.std_dev),
                            daily_mean: round2(baseline.average_mean() * buckets_per_day),
                        },
                    );
                }
            }
            let first = (bucket + 1).saturating_sub(RECENT_BUCKETS);
            let points = (first..=bucket)
                .filter_map(|b| {
                    let score = self.scores.get(b, stream)?;
                    Some(ContextPoint {
                        timestamp: self.time(b),
                        value: round2(self.values.get(b, stream).unwrap_or(0.0)),
                        normalized: round2(score.normalized),
                        bucket_start_ms: b as u64 * self.bucket_ms,
                    })
                })
                .collect();
            recent_values.insert(anomaly.stream.clone(), points);
        }

        let rates = self.rates_at(bucket, &anomalies);
        let correlations = ContextCorrelations {
            events: events
                .iter()
                .filter_map(|event| {
                    let event_bucket = (event.time_ms / self.bucket_ms) as usize;
                    let streams = event_stream_shifts(
                        self.scores,
                        self.stream_names,
                        event_bucket,
                        event.time_ms,
                        self.bucket_ms,
                        bucket,
                    );
                    (!streams.is_empty()).then(|| EventCorrelation {
                        event_id: event.id.clone(),
                        streams: streams.into_iter().take(8).collect(),
                    })
                })
                .collect(),
            streams: {
                let indices: Vec<usize> = anomalies.iter().map(|a| a.stream_index).collect();
                stream_correlations(
                    self.scores,
                    self.stream_names,
                    &CorrelationRequest {
                        streams: &indices,
                        from: (bucket + 1).saturating_sub(CORRELATION_BUCKETS),
                        to: bucket + 1,
                        bucket_ms: self.bucket_ms,
                        min_correlation: MIN_STREAM_CORRELATION,
                        limit: MAX_STREAM_PAIRS,
                    },
                )
            },
        };
        AnalysisContext {
            now: self.epoch.format(now_ms),
            anomalies,
            events,
            baseline_stats,
            recent_values,
            rates,
            correlations,
            known_streams: self.stream_names.to_vec(),
            now_ms,
            bucket_ms: self.bucket_ms,
        }
    }
}

/// The standard score of `observed` events where a Poisson count of mean `expected` was due, on
/// Anscombe's variance-stabilising scale: `2 (√(x + 3/8) − √(λ + 3/8))` is close to a standard
/// normal even for a mean of a few events, where `(x − λ)/√λ` overstates the upper tail: nine
/// no-shows where 2.7 were due is z +3.8 on that scale (a normal tail of one in 15 000), while
/// a Poisson count gets there once in 520; here it is +2.6 (one in 220). Large counts score
/// about as before.
fn count_z(observed: f64, expected: f64) -> f64 {
    2.0 * ((observed.max(0.0) + 0.375).sqrt() - (expected.max(0.0) + 0.375).sqrt())
}

#[cfg(test)]
mod tests {
    use super::count_z;
    use proptest::prelude::*;

    proptest! {
        /// The count z is zero at the expectation, grows with the count, and for large counts
        /// is the familiar (x − λ)/√λ to within a few per cent.
        #[test]
        fn count_z_is_centred_monotone_and_normal_for_large_counts(
            expected in 0.0f64..5_000.0,
            observed in 0u32..10_000,
        ) {
            prop_assert!(count_z(expected, expected).abs() < 1e-9);
            let observed = f64::from(observed);
            prop_assert!(count_z(observed + 1.0, expected) > count_z(observed, expected));
            if expected >= 400.0 && (observed - expected).abs() <= 3.0 * expected.sqrt() {
                let plain = (observed - expected) / expected.sqrt();
                prop_assert!((count_z(observed, expected) - plain).abs() <= 0.1 + 0.05 * plain.abs());
            }
        }
    }

    /// A few rare events are no longer read as a long-tail surprise: nine where 2.7 were due is
    /// about one bucket in 520 for a Poisson count (z ≈ 2.9), not +3.8.
    #[test]
    fn small_counts_score_near_their_poisson_tail() {
        let z = count_z(9.0, 2.7);
        assert!((2.4..3.0).contains(&z), "z = {z}");
    }
}
