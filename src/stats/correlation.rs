//! Correlations: which streams moved after each external event (lag and strength), lagged
//! correlations between streams' standard scores, and anomaly episodes (runs of flagged
//! buckets) — everything computed from a [`ScoreTable`], up to a given bucket, so an analyst at
//! time t sees only what was known at t.

use serde::Serialize;

use super::score::{AnomalyFlag, ScoreTable};

/// Buckets compared before and after an event.
pub const EVENT_WINDOW_BUCKETS: usize = 6;
/// The smallest change of mean z (after − before) that counts as "moved after the event".
pub const EVENT_SHIFT_Z: f64 = 1.5;
/// Largest lag, in buckets, tried between two streams.
pub const MAX_STREAM_LAG: usize = 3;

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// A stream that moved after an external event.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventStreamShift {
    pub stream: String,
    /// From the event to the first flagged bucket after it (or the first bucket of the shift).
    pub lag_ms: u64,
    /// Mean z over the buckets after the event minus the mean z before it.
    pub strength: f64,
    pub direction: &'static str,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EventCorrelation {
    pub event_id: String,
    pub streams: Vec<EventStreamShift>,
}

/// Which streams shifted after an event that fired in bucket `event_bucket` at `event_ms`,
/// using buckets up to and including `until_bucket`.
pub fn event_stream_shifts(
    table: &ScoreTable,
    stream_names: &[String],
    event_bucket: usize,
    event_ms: u64,
    bucket_ms: u64,
    until_bucket: usize,
) -> Vec<EventStreamShift> {
    let after_end = (event_bucket + EVENT_WINDOW_BUCKETS).min(until_bucket + 1);
    if after_end <= event_bucket {
        return Vec::new();
    }
    let before_start = event_bucket.saturating_sub(EVENT_WINDOW_BUCKETS);
    let mut shifts = Vec::new();
    for (stream, name) in stream_names.iter().enumerate() {
        let mean_z = |range: std::ops::Range<usize>| {
            let values: Vec<f64> = range
                .filter_map(|b| table.get(b, stream).map(|s| s.z))
                .collect();
            (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
        };
        let (Some(after), before) = (
            mean_z(event_bucket..after_end),
            mean_z(before_start..event_bucket).unwrap_or(0.0),
        ) else {
            continue;
        };
        let strength = after - before;
        let first_flag = (event_bucket..after_end).find(|&b| {
            table
                .get(b, stream)
                .is_some_and(|s| s.flag != AnomalyFlag::Normal)
        });
        if strength.abs() < EVENT_SHIFT_Z && first_flag.is_none() {
            continue;
        }
        let first_bucket = first_flag.unwrap_or(event_bucket);
        shifts.push(EventStreamShift {
            stream: name.clone(),
            lag_ms: ((first_bucket as u64 + 1) * bucket_ms).saturating_sub(event_ms),
            strength: round2(strength),
            direction: if strength >= 0.0 { "up" } else { "down" },
        });
    }
    shifts.sort_by(|a, b| {
        b.strength
            .abs()
            .total_cmp(&a.strength.abs())
            .then_with(|| a.stream.cmp(&b.stream))
    });
    shifts
}

/// A lagged correlation between two streams' z series: `leader` moves `lag_ms` before
/// `follower`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamCorrelation {
    pub leader: String,
    pub follower: String,
    pub lag_ms: u64,
    pub correlation: f64,
}

fn pearson(x: &[f64], y: &[f64]) -> Option<f64> {
    let n = x.len().min(y.len());
    if n < 6 {
        return None;
    }
    let mean_x = x[..n].iter().sum::<f64>() / n as f64;
    let mean_y = y[..n].iter().sum::<f64>() / n as f64;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (dx, dy) = (x[i] - mean_x, y[i] - mean_y);
        sxy += dx * dy;
        sxx += dx * dx;
        syy += dy * dy;
    }
    (sxx > 1e-9 && syy > 1e-9).then(|| sxy / (sxx * syy).sqrt())
}

/// Which stream pairs to correlate, over which buckets, and what to keep.
pub struct CorrelationRequest<'a> {
    pub streams: &'a [usize],
    /// Buckets `[from, to)`.
    pub from: usize,
    pub to: usize,
    pub bucket_ms: u64,
    /// Pairs below this |r| are dropped.
    pub min_correlation: f64,
    pub limit: usize,
}

/// Lagged correlations (0 to [`MAX_STREAM_LAG`] buckets, best lag kept) among the requested
/// streams, strongest first.
pub fn stream_correlations(
    table: &ScoreTable,
    stream_names: &[String],
    request: &CorrelationRequest,
) -> Vec<StreamCorrelation> {
    let CorrelationRequest {
        streams,
        from,
        to,
        bucket_ms,
        min_correlation,
        limit,
    } = *request;
    let series: Vec<Vec<f64>> = streams
        .iter()
        .map(|&s| {
            (from..to)
                .map(|b| table.get(b, s).map_or(0.0, |score| score.z))
                .collect()
        })
        .collect();
    let mut pairs = Vec::new();
    for (i, &leader) in streams.iter().enumerate() {
        for (j, &follower) in streams.iter().enumerate() {
            if leader == follower {
                continue;
            }
            let mut best: Option<(usize, f64)> = None;
            for lag in 0..=MAX_STREAM_LAG {
                // Lag 0 pairs are symmetric: keep each once.
                if lag == 0 && i > j {
                    continue;
                }
                let x = &series[i];
                let y = &series[j];
                if x.len() <= lag {
                    continue;
                }
                let Some(r) = pearson(&x[..x.len() - lag], &y[lag..]) else {
                    continue;
                };
                if best.is_none_or(|(_, b)| r.abs() > b.abs()) {
                    best = Some((lag, r));
                }
            }
            if let Some((lag, r)) = best.filter(|(_, r)| r.abs() >= min_correlation) {
                pairs.push(StreamCorrelation {
                    leader: stream_names[leader].clone(),
                    follower: stream_names[follower].clone(),
                    lag_ms: lag as u64 * bucket_ms,
                    correlation: round2(r),
                });
            }
        }
    }
    pairs.sort_by(|a, b| {
        b.correlation
            .abs()
            .total_cmp(&a.correlation.abs())
            .then_with(|| a.leader.cmp(&b.leader))
            .then_with(|| a.follower.cmp(&b.follower))
    });
    pairs.truncate(limit);
    pairs
}

/// A run of consecutive flagged buckets of one stream.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AnomalyEpisode {
    pub stream: String,
    /// `up` or `down`, from the sign of the peak z.
    pub direction: &'static str,
    /// The highest flag reached.
    pub flag: AnomalyFlag,
    pub start: String,
    pub end: String,
    pub buckets: usize,
    pub peak_z: f64,
    pub peak_at: String,
    pub peak_value: f64,
    pub peak_expected: f64,
    #[serde(skip)]
    pub start_bucket: usize,
}

/// Every episode in the table, ordered by start, then stream.
pub fn anomaly_episodes(
    table: &ScoreTable,
    values: &super::baseline::BucketMatrix,
    stream_names: &[String],
    format_time: &dyn Fn(usize) -> String,
) -> Vec<AnomalyEpisode> {
    let mut episodes = Vec::new();
    for (stream, name) in stream_names.iter().enumerate() {
        let mut open: Option<AnomalyEpisode> = None;
        for bucket in 0..=table.n_buckets() {
            let score = (bucket < table.n_buckets())
                .then(|| table.get(bucket, stream))
                .flatten()
                .filter(|s| s.flag != AnomalyFlag::Normal);
            match (score, open.as_mut()) {
                (Some(score), Some(episode)) => {
                    episode.buckets += 1;
                    episode.end = format_time(bucket + 1);
                    episode.flag = episode.flag.max(score.flag);
                    if score.z.abs() > episode.peak_z.abs() {
                        episode.peak_z = round2(score.z);
                        episode.peak_at = format_time(bucket);
                        episode.peak_value = values.get(bucket, stream).unwrap_or(0.0);
                        episode.peak_expected = round2(score.expected);
                        episode.direction = if score.z >= 0.0 { "up" } else { "down" };
                    }
                }
                (Some(score), None) => {
                    open = Some(AnomalyEpisode {
                        stream: name.clone(),
                        direction: if score.z >= 0.0 { "up" } else { "down" },
                        flag: score.flag,
                        start: format_time(bucket),
                        end: format_time(bucket + 1),
                        buckets: 1,
                        peak_z: round2(score.z),
                        peak_at: format_time(bucket),
                        peak_value: values.get(bucket, stream).unwrap_or(0.0),
                        peak_expected: round2(score.expected),
                        start_bucket: bucket,
                    });
                }
                (None, _) => {
                    if let Some(episode) = open.take() {
                        episodes.push(episode);
                    }
                }
            }
        }
    }
    episodes.sort_by(|a, b| {
        a.start_bucket
            .cmp(&b.start_bucket)
            .then_with(|| a.stream.cmp(&b.stream))
    });
    episodes
}
