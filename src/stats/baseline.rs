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
use crate::market::catalog::Catalog;

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

/// How long a run's start is scored against the measured fill factors.
pub const WARMUP_MS: u64 = 4 * MS_PER_DAY;
pub const WARMUP_BLOCK_MS: u64 = 6 * 3_600_000;
/// Blocks with fewer expected events than this keep a factor of 1 (too noisy to measure).
const WARMUP_MIN_EXPECTED: f64 = 20.0;

/// Variance floor for gauges, in squared units of the reading (gauges are rounded readings).
const GAUGE_VARIANCE_FLOOR: f64 = 0.25;
/// A count stream's variance is never taken below this many events², so a slot that was
/// always empty in the history does not make its first event infinitely surprising.
const COUNT_VARIANCE_FLOOR: f64 = 0.5;

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
        let mut factor = 1.0;
        if self.seasonal {
            factor *= factors.academic;
        }
        if self.grows {
            factor *= factors.growth;
        }
        if since_start_ms < WARMUP_MS {
            factor *= self
                .warmup
                .get((since_start_ms / WARMUP_BLOCK_MS) as usize)
                .copied()
                .unwrap_or(1.0);
        }
        let mean = stats.mean * factor;
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
        let variance = modelled.max(observed);
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
    pub growth: f64,
}

/// Streams the model grows: every count stream but tutor supply, tutor sign-ups and deploys.
pub fn growing_streams(catalog: &Catalog) -> Vec<bool> {
    catalog
        .streams
        .iter()
        .map(|s| {
            !s.origin.is_gauge()
                && !s.name.starts_with("tutor.")
                && s.name != "platform.deploy.completed"
        })
        .collect()
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

/// Streams whose rate follows student demand: sources on an `academic` profile and everything
/// the flows feed from them, except tutor supply, gauges and the streams growth leaves alone.
pub fn seasonal_streams(catalog: &Catalog) -> Vec<bool> {
    use crate::market::catalog::Origin;
    use crate::market::roles::FLOW_EDGES;
    let index_of = |name: &str| catalog.streams.iter().position(|s| s.name == name);
    let mut seasonal: Vec<bool> = catalog
        .streams
        .iter()
        .map(|s| match s.origin {
            Origin::Source { profile, .. } => catalog.profiles[profile].academic,
            _ => false,
        })
        .collect();
    loop {
        let mut changed = false;
        for (from, to, _) in FLOW_EDGES {
            let (Some(from), Some(to)) = (index_of(from), index_of(to)) else {
                continue;
            };
            let eligible = !catalog.streams[to].origin.is_gauge()
                && !catalog.streams[to].name.starts_with("tutor.");
            if seasonal[from] && !seasonal[to] && eligible {
                seasonal[to] = true;
                changed = true;
            }
        }
        if !changed {
            return seasonal;
        }
    }
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
        let seasonal = seasonal_streams(catalog);
        let grows = growing_streams(catalog);
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
                let mut baseline = StreamBaseline {
                    stream: definition.name.clone(),
                    gauge,
                    seasonal: seasonal[definition.id.index()],
                    grows: grows[definition.id.index()],
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
                baseline.dispersion = round4(median_of(&sorted(dispersions)).max(1e-4));
                baseline.warmup = warmup_factors(history, definition.id.index(), &baseline);
                baseline
            })
            .collect();
        Baseline {
            format: BASELINE_FORMAT.to_string(),
            catalog_sha256: catalog.sha256.clone(),
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
