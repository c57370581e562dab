//! Scoring buckets against the baseline, one bucket at a time (headless runs and the live
//! server use the same scorer): expected value, z, the 0–100 normalization and the anomaly
//! flag with its persistence rule. See the module above for the mapping users read.

use serde::{Deserialize, Serialize};

use super::baseline::{slot_of_week, Baseline, BucketMatrix, SeasonalFactor, COUNT_VARIANCE_FLOOR};
use std::sync::Arc;

use crate::engine::VirtualTimeMs;
use crate::market::calendar::{growth_factor, DayTable};
use crate::market::catalog::Catalog;
use crate::market::Epoch;

/// |z| at which a bucket reaches `warning`.
pub const WARNING_Z: f64 = 2.0;
/// |z| at which a bucket reaches `critical`.
pub const CRITICAL_Z: f64 = 3.5;
/// Normalization points per standard deviation.
pub const POINTS_PER_SIGMA: f64 = 10.0;
/// A count stream expecting fewer events than this a bucket is scored over a rolling window
/// long enough to expect this many.
pub const SPARSE_EXPECTED_EVENTS: f64 = 5.0;
/// The longest rolling window for sparse streams, in buckets.
pub const MAX_SPARSE_WINDOW: usize = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AnomalyFlag {
    Normal,
    Warning,
    Critical,
}

impl AnomalyFlag {
    pub fn as_str(self) -> &'static str {
        match self {
            AnomalyFlag::Normal => "normal",
            AnomalyFlag::Warning => "warning",
            AnomalyFlag::Critical => "critical",
        }
    }

    /// The level one bucket reaches on its own.
    pub fn level_of(z: f64) -> AnomalyFlag {
        if z.abs() >= CRITICAL_Z {
            AnomalyFlag::Critical
        } else if z.abs() >= WARNING_Z {
            AnomalyFlag::Warning
        } else {
            AnomalyFlag::Normal
        }
    }

    pub fn parse(text: &str) -> Option<AnomalyFlag> {
        match text {
            "normal" => Some(AnomalyFlag::Normal),
            "warning" => Some(AnomalyFlag::Warning),
            "critical" => Some(AnomalyFlag::Critical),
            _ => None,
        }
    }
}

/// `clamp(50 + 10·z, 0, 100)`: 50 is the expectation.
pub fn normalize(z: f64) -> f64 {
    if z.is_nan() {
        return 50.0;
    }
    (50.0 + POINTS_PER_SIGMA * z).clamp(0.0, 100.0)
}

/// The score of one stream in one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketScore {
    /// What the baseline expects for this bucket (seasonally adjusted).
    pub expected: f64,
    /// Standard score; for sparse streams, of the rolling window ending at this bucket.
    pub z: f64,
    pub normalized: f64,
    /// The flag after the persistence rule.
    pub flag: AnomalyFlag,
}

/// Scores of every stream in every bucket of a run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScoreTable {
    pub n_streams: usize,
    /// Bucket-major, like [`BucketMatrix`].
    scores: Vec<Option<BucketScore>>,
}

impl ScoreTable {
    /// An empty table for `n_streams` streams, to push buckets into.
    pub fn empty(n_streams: usize) -> Self {
        ScoreTable {
            n_streams,
            scores: Vec::new(),
        }
    }

    pub fn get(&self, bucket: usize, stream: usize) -> Option<BucketScore> {
        self.scores
            .get(bucket * self.n_streams + stream)
            .copied()
            .flatten()
    }

    pub fn n_buckets(&self) -> usize {
        self.scores.len().checked_div(self.n_streams).unwrap_or(0)
    }

    pub fn push_bucket(&mut self, scores: &[Option<BucketScore>]) {
        self.scores.extend_from_slice(scores);
    }
}

/// The academic calendar and growth, as the model applies them to demand-driven rates.
#[derive(Clone)]
pub struct SeasonalFactors {
    days: DayTable,
    growth_per_month: f64,
    booking_lead_ms: u64,
}

/// The lagged academic factor averages the calendar over this many steps of
/// [`LAG_STEP_MS`] before a bucket, weighted like the booking lead.
const LAG_STEPS: u64 = 48;
const LAG_STEP_MS: u64 = 2 * 3_600_000;

impl SeasonalFactors {
    pub fn new(catalog: &Catalog, epoch: Epoch) -> Self {
        SeasonalFactors {
            days: DayTable::new(epoch, &catalog.calendar),
            growth_per_month: catalog.growth_per_month,
            booking_lead_ms: catalog.flows.booking_lead_mean.max(1),
        }
    }

    pub fn at(&mut self, t: VirtualTimeMs) -> SeasonalFactor {
        SeasonalFactor {
            academic: self.days.facts(t).academic_factor,
            academic_lagged: self.lagged_academic(t),
            growth: growth_factor(self.growth_per_month, self.days.epoch(), t),
        }
    }

    /// The academic factor of the hours before `t`, weighted by how likely a lesson starting
    /// at `t` was booked then (an exponential booking lead): lessons on the first day after a
    /// holiday were booked in the holiday.
    fn lagged_academic(&mut self, t: VirtualTimeMs) -> f64 {
        let (mut sum, mut weights) = (0.0, 0.0);
        for step in 0..LAG_STEPS {
            let lag = step * LAG_STEP_MS + LAG_STEP_MS / 2;
            let weight = (-(lag as f64) / self.booking_lead_ms as f64).exp();
            sum += weight * self.days.facts(t.saturating_sub(lag)).academic_factor;
            weights += weight;
        }
        sum / weights
    }
}

/// Per stream: the last few buckets' (value, expected, variance), for rolling windows.
#[derive(Debug, Clone, Default)]
struct StreamWindow {
    length: usize,
    recent: std::collections::VecDeque<(f64, f64, f64)>,
    previous: Option<(AnomalyFlag, f64)>,
    /// The stream's last value, for queues predicted one bucket ahead.
    last_value: Option<f64>,
}

/// Scores buckets one after the other against a baseline (shared, so a long-lived session owns
/// its scorer).
#[derive(Clone)]
pub struct Scorer {
    baseline: Arc<Baseline>,
    epoch: Epoch,
    bucket_ms: u64,
    seasons: SeasonalFactors,
    windows: Vec<StreamWindow>,
}

impl Scorer {
    pub fn new(catalog: &Catalog, baseline: Arc<Baseline>, epoch: Epoch, bucket_ms: u64) -> Self {
        let windows = baseline
            .streams
            .iter()
            .map(|stream| {
                let average = stream.average_mean();
                let length = if stream.gauge || average >= SPARSE_EXPECTED_EVENTS {
                    1
                } else if average <= 0.0 {
                    MAX_SPARSE_WINDOW
                } else {
                    ((SPARSE_EXPECTED_EVENTS / average).ceil() as usize).clamp(1, MAX_SPARSE_WINDOW)
                };
                StreamWindow {
                    length,
                    ..StreamWindow::default()
                }
            })
            .collect();
        Scorer {
            baseline,
            epoch,
            bucket_ms,
            seasons: SeasonalFactors::new(catalog, epoch),
            windows,
        }
    }

    /// A scorer that starts again from the first bucket.
    pub fn restarted(&self) -> Scorer {
        let mut scorer = self.clone();
        for window in &mut scorer.windows {
            window.recent.clear();
            window.previous = None;
            window.last_value = None;
        }
        scorer
    }

    /// The rolling-window length of each stream, in buckets.
    pub fn window_lengths(&self) -> Vec<usize> {
        self.windows.iter().map(|w| w.length).collect()
    }

    /// Scores the bucket starting at virtual time `start` (buckets must come in order).
    pub fn score_bucket(
        &mut self,
        start: VirtualTimeMs,
        values: &[Option<f64>],
    ) -> Vec<Option<BucketScore>> {
        let slot = slot_of_week(self.epoch.absolute_ms(start), self.bucket_ms);
        let previous_slot = slot_of_week(
            self.epoch.absolute_ms(start) - self.bucket_ms as i64,
            self.bucket_ms,
        );
        let factor = self.seasons.at(start);
        let mut scores = Vec::with_capacity(values.len());
        let last_values: Vec<Option<f64>> = self.windows.iter().map(|w| w.last_value).collect();
        for (stream, value) in values.iter().enumerate() {
            let (Some(baseline), Some(window)) =
                (self.baseline.stream(stream), self.windows.get_mut(stream))
            else {
                scores.push(None);
                continue;
            };
            window.last_value = *value;
            let count_factor = |slot: usize| {
                baseline
                    .slot(slot)
                    .map(|stats| 1.0 + 1.0 / f64::from(stats.count))
            };
            let last = |stream: usize| last_values.get(stream).copied().flatten();
            let now = |stream: usize| values.get(stream).copied().flatten();
            let queue_expectation = baseline.queue.as_ref().and_then(|queue| {
                let previous = last(stream)?;
                let arrived = (now(queue.arrivals)?, last(queue.arrivals)?);
                let (expected, served) = queue.predict(previous, arrived, (slot, previous_slot));
                Some((
                    expected,
                    queue.variance(arrived.0 + served) * count_factor(slot)?,
                ))
            });
            let served_expectation = baseline.serves.and_then(|queue_stream| {
                let queue = self.baseline.stream(queue_stream)?.queue.as_ref()?;
                let backlog = last(queue_stream)?;
                let expected = queue.served(backlog, now(queue.arrivals)?, slot);
                Some((
                    expected,
                    expected.max(COUNT_VARIANCE_FLOOR) * count_factor(slot)?,
                ))
            });
            let followed_expectation = baseline.follows.and_then(|follow| {
                let backlog = follow.pressure.and_then(|(queue, _)| last(queue));
                let expected = follow.expected((now(follow.feed)?, last(follow.feed)?), backlog)?;
                let variance = expected + baseline.dispersion * expected * expected;
                Some((
                    expected,
                    variance.max(COUNT_VARIANCE_FLOOR) * count_factor(slot)?,
                ))
            });
            let contended_expectation = baseline.contended.and_then(|contended| {
                let expected = contended.expected(now(contended.feed)?, now(contended.supply)?)?;
                let variance = expected + baseline.dispersion * expected * expected;
                Some((
                    expected,
                    variance.max(COUNT_VARIANCE_FLOOR) * count_factor(slot)?,
                ))
            });
            let load_expectation = baseline.load.and_then(|load| {
                let usual = self.baseline.stream(load.stream)?.slot(slot)?.mean;
                let own = baseline.slot(slot)?.mean;
                let (_, variance) = baseline.expectation(slot, factor, start)?;
                Some((own * load.ratio(now(load.stream)?, usual), variance))
            });
            let model_expectation = queue_expectation
                .or(load_expectation)
                .or(served_expectation)
                .or(followed_expectation)
                .or(contended_expectation);
            let expectation =
                model_expectation.or_else(|| baseline.expectation(slot, factor, start));
            let (Some(value), Some((expected, variance))) = (*value, expectation) else {
                // No reading (a gauge that did not report) or no history for the slot.
                window.previous = None;
                scores.push(None);
                continue;
            };
            window.recent.push_back((value, expected, variance));
            while window.recent.len() > window.length {
                window.recent.pop_front();
            }
            let (sum_value, sum_expected, sum_variance) = window
                .recent
                .iter()
                .fold((0.0, 0.0, 0.0), |(a, b, c), (v, e, s)| {
                    (a + v, b + e, c + s)
                });
            let z = (sum_value - sum_expected) / sum_variance.sqrt();
            let level = AnomalyFlag::level_of(z);
            // Persistence: a flag needs this bucket and the one before at that level, on the
            // same side of the expectation.
            let flag = match window.previous {
                Some((previous_level, previous_z)) if previous_z.signum() == z.signum() => {
                    level.min(previous_level)
                }
                _ => AnomalyFlag::Normal,
            };
            window.previous = Some((level, z));
            scores.push(Some(BucketScore {
                expected,
                z,
                normalized: normalize(z),
                flag,
            }));
        }
        scores
    }

    /// Scores every bucket of a run.
    pub fn score_matrix(&mut self, matrix: &BucketMatrix) -> ScoreTable {
        let mut table = ScoreTable {
            n_streams: matrix.n_streams,
            scores: Vec::new(),
        };
        let mut values = Vec::with_capacity(matrix.n_streams);
        for bucket in 0..matrix.n_buckets() {
            values.clear();
            values.extend((0..matrix.n_streams).map(|s| matrix.get(bucket, s)));
            let scores = self.score_bucket(bucket as u64 * self.bucket_ms, &values);
            table.push_bucket(&scores);
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn normalization_is_monotone_clamped_and_fifty_at_the_expectation(
            expected in 0.0f64..1e6, sigma in 1e-3f64..1e4, a in -1e7f64..1e7, b in -1e7f64..1e7,
        ) {
            let score = |value: f64| normalize((value - expected) / sigma);
            prop_assert_eq!(score(expected), 50.0);
            let (low, high) = if a <= b { (a, b) } else { (b, a) };
            prop_assert!(score(low) <= score(high));
            prop_assert!((0.0..=100.0).contains(&score(a)));
        }

        #[test]
        fn levels_follow_the_thresholds(z in -10.0f64..10.0) {
            let level = AnomalyFlag::level_of(z);
            prop_assert_eq!(level == AnomalyFlag::Critical, z.abs() >= CRITICAL_Z);
            prop_assert_eq!(level >= AnomalyFlag::Warning, z.abs() >= WARNING_Z);
        }
    }
}
