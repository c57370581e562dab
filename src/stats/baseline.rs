//! The baseline: per stream and per slot of the week (the bucket's position in a Monday-to-Sunday
//! week), the mean, standard deviation, sample count, median and MAD of the history's buckets,
//! plus one pooled dispersion figure per stream that the scorer uses for its noise model.
//!
//! A slot has as many samples as the history has weeks (four, usually), too few for a stable
//! standard deviation on its own; so the scorer's σ comes from a noise model whose one free
//! parameter, the stream's relative day-to-day variation, is pooled over all 168 slots.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::engine::MS_PER_DAY;
use crate::market::catalog::{Catalog, Origin};
use crate::market::coupling::{
    demand_couplings, escalation_pressure, CouplingShape, DemandCoupling,
};

pub const BASELINE_FORMAT: &str = "marketsim-baseline/1";
pub const MS_PER_WEEK: u64 = 7 * MS_PER_DAY;
/// 1970-01-05, the first Monday of the Unix era, in Unix milliseconds.
const FIRST_MONDAY_UNIX_MS: i64 = 4 * MS_PER_DAY as i64;

/// The slot of the week that a bucket starting at `unix_ms` falls in (Monday 00:00 UTC = 0).
pub fn slot_of_week(unix_ms: i64, bucket_ms: u64) -> usize {
    let into_week = (unix_ms - FIRST_MONDAY_UNIX_MS).rem_euclid(MS_PER_WEEK as i64) as u64;
    (into_week / bucket_ms) as usize
}

pub fn slots_per_week(bucket_ms: u64) -> usize {
    MS_PER_WEEK.div_ceil(bucket_ms) as usize
}

/// Bucketed values of every stream: counts, or mean gauge readings (`None`: no reading).
#[derive(Debug, Clone, PartialEq)]
pub struct BucketMatrix {
    /// Unix milliseconds of bucket 0's start.
    pub start_unix_ms: i64,
    pub bucket_ms: u64,
    pub n_streams: usize,
    /// Bucket-major: `values[bucket * n_streams + stream]`.
    values: Vec<Option<f64>>,
}

impl BucketMatrix {
    pub fn new(start_unix_ms: i64, bucket_ms: u64, n_streams: usize, n_buckets: usize) -> Self {
        BucketMatrix {
            start_unix_ms,
            bucket_ms,
            n_streams,
            values: vec![None; n_streams * n_buckets],
        }
    }

    pub fn n_buckets(&self) -> usize {
        self.values.len().checked_div(self.n_streams).unwrap_or(0)
    }

    pub fn get(&self, bucket: usize, stream: usize) -> Option<f64> {
        self.values
            .get(bucket * self.n_streams + stream)
            .copied()
            .flatten()
    }

    pub fn set(&mut self, bucket: usize, stream: usize, value: Option<f64>) {
        if let Some(slot) = self.values.get_mut(bucket * self.n_streams + stream) {
            *slot = value;
        }
    }

    /// Appends one bucket's values (one per stream).
    pub fn push_bucket(&mut self, values: &[Option<f64>]) {
        self.values.extend_from_slice(values);
    }

    pub fn bucket_start_unix_ms(&self, bucket: usize) -> i64 {
        self.start_unix_ms + (bucket as u64 * self.bucket_ms) as i64
    }

    pub fn slot(&self, bucket: usize) -> usize {
        slot_of_week(self.bucket_start_unix_ms(bucket), self.bucket_ms)
    }
}

/// Statistics of one slot of the week.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlotStats {
    pub mean: f64,
    pub std_dev: f64,
    pub count: u32,
    pub median: f64,
    /// Median absolute deviation from the median (unscaled; ×1.4826 estimates σ for normal data).
    pub mad: f64,
}

/// The baseline of one stream, slot by slot (arrays indexed by slot of the week).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamBaseline {
    pub stream: String,
    /// A gauge (mean reading) rather than a count.
    pub gauge: bool,
    /// Follows student demand, so the academic calendar scales its expectation.
    pub seasonal: bool,
    /// Grows with the marketplace (the catalog's `growth_per_month`).
    pub grows: bool,
    /// Feels the calendar a booking lead later (lessons start after they were booked).
    #[serde(default)]
    pub lagged: bool,
    /// Per slot, how much of the level scales with the load (1 when empty: all of it); a gauge
    /// such as API latency is only partly load-driven.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub elasticity: Vec<f64>,
    /// An affine gauge's load: expected from the load actually observed (see [`LoadBaseline`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadBaseline>,
    /// A queue's level, predicted one bucket ahead from its last reading, the arrivals
    /// observed and the agents' capacity (see [`QueueBaseline`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueBaseline>,
    /// The queue (a stream index) this stream serves: expected to be the queue's capacity while
    /// there is a backlog, otherwise what arrives.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serves: Option<usize>,
    /// A stream this one follows (see [`FollowBaseline`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follows: Option<FollowBaseline>,
    /// A share of a feed that rises with contention (see [`ContendedBaseline`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contended: Option<ContendedBaseline>,
    /// Squared coefficient of the day-to-day variation beyond counting noise, pooled over
    /// slots (the median of per-slot estimates).
    pub dispersion: f64,
    pub mean: Vec<f64>,
    pub std_dev: Vec<f64>,
    pub count: Vec<u32>,
    pub median: Vec<f64>,
    pub mad: Vec<f64>,
    /// The fill factor of each [`WARMUP_BLOCK_MS`] block of a run's first [`WARMUP_MS`]: the
    /// simulated marketplace starts with no lessons booked, and its pipelines fill over a few
    /// days; this is how far below (or above) a warm week the history's own start was.
    pub warmup: Vec<f64>,
}

/// A gauge reading `fixed + per_load × load` (relative to the stream's unit), with load the
/// observed count of stream `stream` over `per_bucket` (its catalog rate for one bucket): the
/// expectation follows the load that is actually there, so latency is an anomaly only when it
/// is out of line with the traffic, not because traffic grew.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadBaseline {
    pub stream: usize,
    pub per_bucket: f64,
    pub fixed: f64,
    pub per_load: f64,
}

impl LoadBaseline {
    /// How much higher the reading is expected at `observed` load than at `usual` load.
    pub fn ratio(&self, observed: f64, usual: f64) -> f64 {
        let level = |count: f64| self.fixed + self.per_load * count / self.per_bucket.max(1e-9);
        level(observed) / level(usual).max(1e-9)
    }
}

/// A queue gauge's expectation: `max(0, last reading + net inflow)`, where the net inflow
/// between two mean readings is the arrivals observed minus the service the history shows in
/// that slot, blended over the current and the previous bucket (a bucket's mean reading is
/// taken `currentShare` of the way into it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueBaseline {
    /// Index of the stream that adds to the queue.
    pub arrivals: usize,
    /// What the agents can take per bucket, slot by slot (the model's staffing).
    pub capacity: Vec<f64>,
    pub current_share: f64,
    /// Variance of the one-bucket prediction per event moved (pooled over the history).
    pub residual_dispersion: f64,
}

/// A stream expected at `share` × the mean of stream `feed` over this bucket and the one
/// before, times the escalation pressure of queue `pressure.0` (scale `pressure.1`) when set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FollowBaseline {
    pub feed: usize,
    pub share: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pressure: Option<(usize, f64)>,
}

/// Expiries (`market::coupling::CouplingShape::Contended`): `feed × exp(−exp(a + b·ln supply +
/// c·ln feed))` with `supply` the tutors-online reading and `feed` the bucket's requests — the
/// model's `exp(−T·effective/R)` with the effective tutors as a power law of tutors and requests.
/// `a`, `b`, `c` are fitted by weighted least squares on the history's buckets, across hours of
/// the day (nights and evening peaks give the spread in both tutors and requests that a fit
/// needs; the calendar does not, the history being a neutral season).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContendedBaseline {
    pub feed: usize,
    pub supply: usize,
    pub coefficients: [f64; 3],
}

/// Buckets with fewer requests or expiries than these are left out of the fit.
const CONTENDED_FIT_MIN_FEED: f64 = 20.0;
const CONTENDED_FIT_MIN_EXPIRED: f64 = 1.0;

impl ContendedBaseline {
    /// The expected value given the feed and the supply reading of the bucket.
    pub fn expected(&self, feed: f64, supply: f64) -> Option<f64> {
        if feed <= 0.0 {
            return Some(0.0);
        }
        if supply <= 0.0 {
            return Some(feed);
        }
        let [a, b, c] = self.coefficients;
        let hazard = (a + b * supply.ln() + c * feed.ln()).exp();
        Some(feed * (-hazard).exp())
    }

    /// Fits the coefficients on `samples` of (value, feed, supply); `None` when they do not
    /// determine them.
    fn fit(samples: &[(f64, f64, f64)]) -> Option<[f64; 3]> {
        // Normal equations of y = a + b·x1 + c·x2, weighted by the inverse variance of y.
        let mut m = [[0.0f64; 3]; 3];
        let mut v = [0.0f64; 3];
        for &(value, feed, supply) in samples {
            if feed < CONTENDED_FIT_MIN_FEED
                || value < CONTENDED_FIT_MIN_EXPIRED
                || value >= feed
                || supply <= 0.0
            {
                continue;
            }
            let share: f64 = value / feed;
            let y = (-share.ln()).ln();
            // Var(ln(−ln s)) ≈ 1 / (expired · (ln s)²) for a Poisson count of expiries.
            let weight = value * share.ln().powi(2);
            let x = [1.0, supply.ln(), feed.ln()];
            for i in 0..3 {
                v[i] += weight * x[i] * y;
                for j in 0..3 {
                    m[i][j] += weight * x[i] * x[j];
                }
            }
        }
        solve3(m, v)
    }
}

/// Solves a 3×3 linear system by Cramer's rule; `None` when it is (nearly) singular.
fn solve3(m: [[f64; 3]; 3], v: [f64; 3]) -> Option<[f64; 3]> {
    let det = |m: [[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(m);
    if d.abs() < 1e-9 {
        return None;
    }
    let mut solution = [0.0; 3];
    for (column, value) in solution.iter_mut().enumerate() {
        let mut replaced = m;
        for row in 0..3 {
            replaced[row][column] = v[row];
        }
        *value = det(replaced) / d;
    }
    solution.iter().all(|x| x.is_finite()).then_some(solution)
}

impl FollowBaseline {
    /// The expected value from the feed (now, last bucket) and the queue's last reading.
    pub fn expected(&self, feed: (f64, f64), backlog: Option<f64>) -> Option<f64> {
        let pressure = match self.pressure {
            Some((_, scale)) => escalation_pressure(backlog?, scale),
            None => 1.0,
        };
        Some(self.share * pressure * (feed.0 + feed.1) / 2.0)
    }
}

/// How long a run's start is scored against the measured fill factors.
pub const WARMUP_MS: u64 = 4 * MS_PER_DAY;
pub const WARMUP_BLOCK_MS: u64 = 6 * 3_600_000;
/// The share of a warm-up block's fill correction (1 − factor) taken as one standard deviation
/// of uncertainty: a block at 60 % of a warm week is expected within ±20 %.
const WARMUP_FILL_UNCERTAINTY: f64 = 0.5;
/// Blocks with fewer expected events than this keep a factor of 1 (too noisy to measure).
const WARMUP_MIN_EXPECTED: f64 = 20.0;

/// Variance floor for gauges, in squared units of the reading (gauges are rounded readings).
const GAUGE_VARIANCE_FLOOR: f64 = 0.25;
/// A count stream's variance is never taken below this many events², so a slot that was
/// always empty in the history does not make its first event infinitely surprising.
pub const COUNT_VARIANCE_FLOOR: f64 = 0.5;

impl StreamBaseline {
    pub fn slot(&self, slot: usize) -> Option<SlotStats> {
        let count = *self.count.get(slot)?;
        (count > 0).then(|| SlotStats {
            mean: self.mean[slot],
            std_dev: self.std_dev[slot],
            count,
            median: self.median[slot],
            mad: self.mad[slot],
        })
    }

    /// Expected value and variance of a bucket in `slot`, with the seasonal factors applied:
    /// counts are Poisson with a multiplicative day effect (`m + d·m²`), gauges have only the
    /// day effect (`d·m²`, floored); the slot's sample variance is used instead when larger;
    /// both are widened by `1 + 1/n` because the mean itself was estimated from `n` samples.
    pub fn expectation(
        &self,
        slot: usize,
        factors: SeasonalFactor,
        since_start_ms: u64,
    ) -> Option<(f64, f64)> {
        let stats = self.slot(slot)?;
        let mut load = 1.0;
        if self.seasonal {
            load *= if self.lagged {
                factors.academic_lagged
            } else {
                factors.academic
            };
        }
        if self.grows {
            load *= factors.growth;
        }
        let elasticity = self.elasticity.get(slot).copied().unwrap_or(1.0);
        let mut factor = 1.0 + elasticity * (load - 1.0);
        let mut fill = 1.0;
        if since_start_ms < WARMUP_MS {
            fill = self
                .warmup
                .get((since_start_ms / WARMUP_BLOCK_MS) as usize)
                .copied()
                .unwrap_or(1.0);
            factor *= fill;
        }
        let mean = stats.mean * factor;
        // The fill factor comes from one history's start; the run fills along its own random
        // path (how many lessons happen to be booked for tonight), so the further the start is
        // from a warm week, the less sure the correction: a share of it is noise.
        let fill_uncertainty = (WARMUP_FILL_UNCERTAINTY * (1.0 - fill) * mean).powi(2);
        let modelled = if self.gauge {
            // A gauge such as a queue moves fast around its daily turning points; being one
            // bucket early or late is no anomaly, so the change over one bucket is noise too.
            let slots = self.mean.len();
            let before = self.mean[(slot + slots - 1) % slots];
            let after = self.mean[(slot + 1) % slots];
            let slope = (after - before) / 2.0 * factor;
            (self.dispersion * mean * mean + slope * slope).max(GAUGE_VARIANCE_FLOOR)
        } else {
            (mean + self.dispersion * mean * mean).max(COUNT_VARIANCE_FLOOR)
        };
        // The slot's own spread, when it is wider than the pooled model says (a gauge such as
        // a queue that builds up differently every weekend).
        let observed = (stats.std_dev * factor).powi(2);
        let variance = modelled.max(observed) + fill_uncertainty;
        Some((mean, variance * (1.0 + 1.0 / f64::from(stats.count))))
    }

    /// Mean expected events per bucket over the week (for sparse-stream handling).
    pub fn average_mean(&self) -> f64 {
        let (sum, n) = self
            .mean
            .iter()
            .zip(&self.count)
            .filter(|(_, &c)| c > 0)
            .fold((0.0, 0usize), |(s, n), (m, _)| (s + m, n + 1));
        if n == 0 {
            0.0
        } else {
            sum / n as f64
        }
    }
}

/// The calendar and growth at a moment of the run, as the model applies them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeasonalFactor {
    pub academic: f64,
    /// The academic factor as lessons feel it: averaged over the booking lead before now.
    pub academic_lagged: f64,
    pub growth: f64,
}

/// Where a baseline's history came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BaselineSource {
    /// `simulated-history`: the weeks before the run's epoch, simulated with the same catalog,
    /// ordinary background events and no scripted scenarios, in a neutral season.
    pub kind: String,
    pub start: String,
    pub end: String,
    pub seed: u64,
    pub weeks: u64,
    /// Windows left out of the fit, as `[start, end)` ISO 8601 pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded: Vec<[String; 2]>,
}

/// `baseline.json`: the baseline of every stream of a catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Baseline {
    pub format: String,
    pub catalog_sha256: String,
    /// The marketplace size factor the baseline was fitted at (absent: 1).
    #[serde(
        default = "crate::market::catalog::unit_scale",
        skip_serializing_if = "crate::market::catalog::is_unit_scale"
    )]
    pub scale: u32,
    pub bucket_ms: u64,
    pub slots_per_week: usize,
    pub source: BaselineSource,
    pub streams: Vec<StreamBaseline>,
}

fn round4(value: f64) -> f64 {
    (value * 10_000.0).round() / 10_000.0
}

fn median_of(sorted: &[f64]) -> f64 {
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

/// The history's own start against its warm weeks, block by block (see
/// [`StreamBaseline::warmup`]).
fn warmup_factors(history: &BucketMatrix, stream: usize, baseline: &StreamBaseline) -> Vec<f64> {
    let blocks = (WARMUP_MS / WARMUP_BLOCK_MS) as usize;
    let per_block = (WARMUP_BLOCK_MS / history.bucket_ms).max(1) as usize;
    (0..blocks)
        .map(|block| {
            let (mut actual, mut expected) = (0.0, 0.0);
            for bucket in block * per_block..(block + 1) * per_block {
                let slot = history.slot(bucket);
                if let (Some(value), Some(&mean)) =
                    (history.get(bucket, stream), baseline.mean.get(slot))
                {
                    actual += value;
                    expected += mean;
                }
            }
            let enough = if baseline.gauge {
                expected > 0.0
            } else {
                expected >= WARMUP_MIN_EXPECTED
            };
            if enough {
                round4((actual / expected).clamp(0.0, 2.0))
            } else {
                1.0
            }
        })
        .collect()
}

/// Fills in the gauges that are not proportional to their load: the elasticity of an affine
/// gauge slot by slot, and a queue's prediction with its residual spread on the history.
fn couple_gauges(
    catalog: &Catalog,
    couplings: &[DemandCoupling],
    history: &BucketMatrix,
    warmup_buckets: usize,
    mut streams: Vec<StreamBaseline>,
) -> Vec<StreamBaseline> {
    let bucket_hours = history.bucket_ms as f64 / 3_600_000.0;
    for (index, coupling) in couplings.iter().enumerate() {
        match coupling.shape {
            CouplingShape::Affine {
                load_stream,
                load_per_hour,
                fixed,
                per_load,
            } => {
                let elasticity = streams[load_stream]
                    .mean
                    .iter()
                    .map(|mean| {
                        let load = mean / (load_per_hour * bucket_hours);
                        round4(per_load * load / (fixed + per_load * load))
                    })
                    .collect();
                streams[index].elasticity = elasticity;
                streams[index].load = Some(LoadBaseline {
                    stream: load_stream,
                    per_bucket: load_per_hour * bucket_hours,
                    fixed,
                    per_load,
                });
            }
            CouplingShape::Queue {
                arrivals,
                capacity_per_hour,
                profile,
            } => {
                let every_ms = match catalog.streams[index].origin {
                    Origin::Gauge { every_ms, .. } => every_ms.min(history.bucket_ms),
                    _ => history.bucket_ms,
                };
                let current_share =
                    round4((history.bucket_ms - every_ms) as f64 / 2.0 / history.bucket_ms as f64);
                let capacity = (0..slots_per_week(history.bucket_ms))
                    .map(|slot| {
                        let hours_into_week = slot as u64 * history.bucket_ms / 3_600_000;
                        let (weekday, hour) = (
                            (hours_into_week / 24) as usize % 7,
                            hours_into_week as usize % 24,
                        );
                        let shape = &catalog.profiles[profile];
                        round4(
                            capacity_per_hour
                                * shape.hourly[hour]
                                * shape.weekly[weekday]
                                * bucket_hours,
                        )
                    })
                    .collect();
                let mut queue = QueueBaseline {
                    arrivals,
                    capacity,
                    current_share,
                    residual_dispersion: 1.0,
                };
                let (mut squares, mut moved) = (0.0, 0.0);
                for bucket in warmup_buckets.max(1)..history.n_buckets() {
                    let (Some(value), Some(previous)) =
                        (history.get(bucket, index), history.get(bucket - 1, index))
                    else {
                        continue;
                    };
                    let arrived = (
                        history.get(bucket, arrivals).unwrap_or(0.0),
                        history.get(bucket - 1, arrivals).unwrap_or(0.0),
                    );
                    let slots = (history.slot(bucket), history.slot(bucket - 1));
                    let (predicted, served) = queue.predict(previous, arrived, slots);
                    squares += (value - predicted).powi(2);
                    moved += arrived.0 + served;
                }
                if moved > 0.0 {
                    queue.residual_dispersion = round4((squares / moved).max(0.05));
                }
                streams[index].queue = Some(queue);
            }
            CouplingShape::Served { queue } => streams[index].serves = Some(queue),
            CouplingShape::Follows { feed, pressure } => {
                let mut follow = FollowBaseline {
                    feed,
                    share: 1.0,
                    pressure,
                };
                let (mut followed, mut fed) = (0.0, 0.0);
                for bucket in warmup_buckets.max(1)..history.n_buckets() {
                    let backlog = pressure.and_then(|(queue, _)| history.get(bucket - 1, queue));
                    let feeds = (history.get(bucket, feed), history.get(bucket - 1, feed));
                    if let (Some(value), (Some(now), Some(before))) =
                        (history.get(bucket, index), feeds)
                    {
                        if let Some(expected) = follow.expected((now, before), backlog) {
                            followed += value;
                            fed += expected;
                        }
                    }
                }
                if fed > 0.0 {
                    follow.share = round4(followed / fed);
                    streams[index].follows = Some(follow);
                }
            }
            CouplingShape::Contended { feed, supply } => {
                let samples: Vec<(f64, f64, f64)> = (warmup_buckets..history.n_buckets())
                    .filter_map(|bucket| {
                        Some((
                            history.get(bucket, index)?,
                            history.get(bucket, feed)?,
                            history.get(bucket, supply)?,
                        ))
                    })
                    .collect();
                if let Some(coefficients) = ContendedBaseline::fit(&samples) {
                    streams[index].contended = Some(ContendedBaseline {
                        feed,
                        supply,
                        coefficients: coefficients.map(round4),
                    });
                }
            }
            CouplingShape::Flat => {
                streams[index].seasonal = false;
                streams[index].grows = false;
            }
            CouplingShape::Proportional => {}
        }
    }
    streams
}

impl QueueBaseline {
    /// What the agents can take in `slot`.
    pub fn capacity_of(&self, slot: usize) -> f64 {
        self.capacity.get(slot).copied().unwrap_or(0.0)
    }

    /// What is expected to be served in a bucket that starts with `backlog` waiting and sees
    /// `arrived`: the capacity, or less when the queue runs dry.
    pub fn served(&self, backlog: f64, arrived: f64, slot: usize) -> f64 {
        self.capacity_of(slot).min(backlog.max(0.0) + arrived)
    }

    /// The next mean reading after `previous`, given (this bucket's, the last bucket's)
    /// arrivals and (this, the last) slot; with this bucket's expected service.
    pub fn predict(&self, previous: f64, arrived: (f64, f64), slots: (usize, usize)) -> (f64, f64) {
        let share = self.current_share;
        let served_now = self.served(previous, arrived.0, slots.0);
        let served_before = self.served(previous, arrived.1, slots.1);
        let net = share * (arrived.0 - served_now) + (1.0 - share) * (arrived.1 - served_before);
        ((previous + net).max(0.0), served_now)
    }

    /// Variance of [`QueueBaseline::predict`] when `moved` events arrive and are served.
    pub fn variance(&self, moved: f64) -> f64 {
        (self.residual_dispersion * moved).max(GAUGE_VARIANCE_FLOOR)
    }
}

impl Baseline {
    /// Fits the baseline on `history`, leaving out buckets that start inside `excluded`
    /// (Unix-millisecond ranges). The history's first [`WARMUP_MS`] (the marketplace filling
    /// up) is left out of the slot statistics and measured as warm-up factors instead.
    pub fn fit(
        catalog: &Catalog,
        history: &BucketMatrix,
        excluded: &[Range<i64>],
        source: BaselineSource,
    ) -> Baseline {
        let slots = slots_per_week(history.bucket_ms);
        let couplings = demand_couplings(catalog);
        let warmup_buckets = (WARMUP_MS / history.bucket_ms) as usize;
        let mut samples: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); slots]; history.n_streams];
        for bucket in warmup_buckets..history.n_buckets() {
            let start = history.bucket_start_unix_ms(bucket);
            if excluded.iter().any(|range| range.contains(&start)) {
                continue;
            }
            let slot = history.slot(bucket);
            for (stream, per_slot) in samples.iter_mut().enumerate() {
                if let Some(value) = history.get(bucket, stream) {
                    per_slot[slot].push(value);
                }
            }
        }
        let streams = catalog
            .streams
            .iter()
            .zip(samples)
            .map(|(definition, per_slot)| {
                let gauge = definition.origin.is_gauge();
                let coupling = couplings[definition.id.index()];
                let mut baseline = StreamBaseline {
                    stream: definition.name.clone(),
                    gauge,
                    seasonal: coupling.seasonal,
                    grows: coupling.grows,
                    lagged: coupling.lagged,
                    elasticity: Vec::new(),
                    load: None,
                    queue: None,
                    serves: None,
                    follows: None,
                    contended: None,
                    dispersion: 0.0,
                    mean: Vec::with_capacity(slots),
                    std_dev: Vec::with_capacity(slots),
                    count: Vec::with_capacity(slots),
                    median: Vec::with_capacity(slots),
                    mad: Vec::with_capacity(slots),
                    warmup: Vec::new(),
                };
                let mut dispersions = Vec::new();
                for values in per_slot {
                    let n = values.len();
                    let mean = if n == 0 {
                        0.0
                    } else {
                        values.iter().sum::<f64>() / n as f64
                    };
                    let variance = if n < 2 {
                        0.0
                    } else {
                        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64
                    };
                    if n >= 2 && mean > 0.0 {
                        let excess = if gauge { variance } else { variance - mean };
                        dispersions.push((excess / (mean * mean)).max(0.0));
                    }
                    let ordered = sorted(values);
                    let median = median_of(&ordered);
                    let mad = median_of(&sorted(
                        ordered.iter().map(|v| (v - median).abs()).collect(),
                    ));
                    baseline.mean.push(round4(mean));
                    baseline.std_dev.push(round4(variance.sqrt()));
                    baseline.count.push(n as u32);
                    baseline.median.push(round4(median));
                    baseline.mad.push(round4(mad));
                }
                // A per-slot variance from n samples is a χ²(n−1)/(n−1) draw, whose median is
                // below its mean; the median of them underestimates the variance by that much.
                let typical_n = median_of(&sorted(
                    baseline.count.iter().map(|&c| f64::from(c)).collect(),
                ));
                let degrees = (typical_n - 1.0).max(1.0);
                let median_bias = (1.0 - 2.0 / (9.0 * degrees)).powi(3);
                baseline.dispersion =
                    round4((median_of(&sorted(dispersions)) / median_bias).max(1e-4));
                baseline.warmup = warmup_factors(history, definition.id.index(), &baseline);
                baseline
            })
            .collect::<Vec<_>>();
        let streams = couple_gauges(catalog, &couplings, history, warmup_buckets, streams);
        Baseline {
            format: BASELINE_FORMAT.to_string(),
            catalog_sha256: catalog.sha256.clone(),
            scale: catalog.scale,
            bucket_ms: history.bucket_ms,
            slots_per_week: slots,
            source,
            streams,
        }
    }

    pub fn stream(&self, index: usize) -> Option<&StreamBaseline> {
        self.streams.get(index)
    }

    /// Checks that the baseline fits a run of `catalog` with buckets of `bucket_ms`.
    pub fn check_compatible(&self, catalog: &Catalog, bucket_ms: u64) -> Result<(), String> {
        if self.format != BASELINE_FORMAT {
            return Err(format!(
                "baseline format `{}` is not supported; expected `{BASELINE_FORMAT}`",
                self.format
            ));
        }
        if self.scale != catalog.scale {
            return Err(format!(
                "the baseline was fitted to a marketplace at scale {} but the run's is at scale {}",
                self.scale, catalog.scale
            ));
        }
        if self.bucket_ms != bucket_ms {
            return Err(format!(
                "baseline buckets are {} min but the run's are {} min",
                self.bucket_ms / 60_000,
                bucket_ms / 60_000
            ));
        }
        let names: Vec<&str> = catalog.streams.iter().map(|s| s.name.as_str()).collect();
        let ours: Vec<&str> = self.streams.iter().map(|s| s.stream.as_str()).collect();
        if names != ours {
            return Err("baseline streams differ from the catalog's".to_string());
        }
        if self.slots_per_week != slots_per_week(bucket_ms)
            || self
                .streams
                .iter()
                .any(|s| s.mean.len() != self.slots_per_week || s.count.len() != s.mean.len())
        {
            return Err("baseline slot arrays have the wrong length".to_string());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::MS_PER_HOUR;

    #[test]
    fn slots_start_on_monday_midnight_utc() {
        // 2025-02-03 was a Monday.
        let monday = chrono::DateTime::parse_from_rfc3339("2025-02-03T00:00:00Z")
            .map(|d| d.timestamp_millis())
            .unwrap_or_default();
        assert_eq!(slot_of_week(monday, MS_PER_HOUR), 0);
        assert_eq!(
            slot_of_week(monday + 25 * MS_PER_HOUR as i64, MS_PER_HOUR),
            25
        );
        assert_eq!(slot_of_week(monday - MS_PER_HOUR as i64, MS_PER_HOUR), 167);
        assert_eq!(slots_per_week(MS_PER_HOUR), 168);
    }
}
