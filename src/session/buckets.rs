//! The bucket accumulator: per-stream counts and fingerprints, and per-bucket values. One
//! accumulator serves every consumer (summary, series, scores, twins, the live hub); it grows
//! with the run, so a session that does not know its end never drops an event.
//!
//! A fingerprint folds, in emission order, the XXH3-64 hash of each event's virtual time and
//! payload bytes into a running 64-bit state per stream. Two runs agree on a stream's
//! fingerprint when they emitted the same events on it at the same times (up to 64-bit
//! collisions); the fold is order-sensitive, so reordered events change it too.

use xxhash_rust::xxh3::xxh3_64;

use crate::market::payload::TIMED_ENCODED_BYTES;

use crate::engine::Sink;
use crate::market::catalog::Catalog;
use crate::market::StreamEvent;
use crate::stats::baseline::BucketMatrix;

/// The fold's starting state and multiplier (an odd 64-bit constant, the golden ratio's).
const FINGERPRINT_SEED: u64 = 0x6d61_726b_6574_7369;
const FINGERPRINT_MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

/// A bucket's value from its event count and, for a gauge, the sum of its readings: the count,
/// or the mean reading (`None` when a gauge did not report).
pub fn bucket_value_of(count: u32, gauge_sum: f64, is_gauge: bool) -> Option<f64> {
    if is_gauge {
        (count > 0).then(|| gauge_sum / f64::from(count))
    } else {
        Some(f64::from(count))
    }
}

/// Accumulates what `summary.json`, `series.csv` and the scores need while a run goes on.
#[derive(Debug, Clone)]
pub struct RunCollector {
    n_streams: usize,
    bucket_ms: u64,
    /// Buckets that have storage (at least those that have seen an event).
    n_buckets: usize,
    is_gauge: Vec<bool>,
    pub counts: Vec<u64>,
    fingerprints: Vec<u64>,
    /// Per bucket and stream: event count, or for gauges the sum of readings.
    bucket_values: Vec<f64>,
    /// Per bucket and stream: number of events (gauge readings are averaged over it).
    bucket_counts: Vec<u32>,
    /// The bucket the last event fell in, as `[start, end)` in virtual ms and the index of its
    /// first stream: events come in time order, so most skip the division.
    current_bucket: (u64, u64, usize),
}

impl RunCollector {
    /// An accumulator with room for `n_buckets` (a hint: it grows past them as events come).
    pub fn new(catalog: &Catalog, bucket_ms: u64, n_buckets: usize) -> Self {
        let n_streams = catalog.streams.len();
        RunCollector {
            n_streams,
            bucket_ms,
            n_buckets,
            is_gauge: catalog
                .streams
                .iter()
                .map(|s| s.origin.is_gauge())
                .collect(),
            counts: vec![0; n_streams],
            fingerprints: vec![FINGERPRINT_SEED; n_streams],
            bucket_values: vec![0.0; n_streams * n_buckets],
            bucket_counts: vec![0; n_streams * n_buckets],
            current_bucket: (0, 0, 0),
        }
    }

    /// Where `time`'s bucket starts in the per-bucket arrays, with storage made for it.
    #[cold]
    fn locate_bucket(&mut self, time: u64) -> usize {
        let bucket = (time / self.bucket_ms) as usize;
        if bucket >= self.n_buckets {
            // Grow by at least a day of hourly buckets at a time, so growth is rare.
            self.ensure_buckets((bucket + 1).max(self.n_buckets + 24));
        }
        let start = bucket as u64 * self.bucket_ms;
        let row = bucket * self.n_streams;
        self.current_bucket = (start, start.saturating_add(self.bucket_ms), row);
        row
    }

    pub fn total_events(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Hex fingerprint of a stream's event sequence.
    pub fn fingerprint(&self, stream: usize) -> String {
        format!("{:016x}", self.fingerprints[stream])
    }

    pub fn n_buckets(&self) -> usize {
        self.n_buckets
    }

    pub fn bucket_ms(&self) -> u64 {
        self.bucket_ms
    }

    pub fn n_streams(&self) -> usize {
        self.n_streams
    }

    /// Makes room for buckets `0..n_buckets` (empty ones read as no events).
    pub fn ensure_buckets(&mut self, n_buckets: usize) {
        if n_buckets > self.n_buckets {
            self.n_buckets = n_buckets;
            self.bucket_values.resize(n_buckets * self.n_streams, 0.0);
            self.bucket_counts.resize(n_buckets * self.n_streams, 0);
        }
    }

    /// Forgets buckets from `n_buckets` on (a session that re-simulates them).
    pub fn truncate_buckets(&mut self, n_buckets: usize) {
        if n_buckets < self.n_buckets {
            self.n_buckets = n_buckets;
            self.current_bucket = (0, 0, 0);
            self.bucket_values.truncate(n_buckets * self.n_streams);
            self.bucket_counts.truncate(n_buckets * self.n_streams);
        }
    }

    /// Makes `bucket` hold what `other`'s holds (a twin that is the run itself, step for step).
    pub fn copy_bucket_from(&mut self, other: &RunCollector, bucket: usize) {
        self.ensure_buckets(bucket + 1);
        let range = bucket * self.n_streams..(bucket + 1) * self.n_streams;
        for index in range {
            self.bucket_values[index] = other.bucket_values.get(index).copied().unwrap_or(0.0);
            self.bucket_counts[index] = other.bucket_counts.get(index).copied().unwrap_or(0);
        }
    }

    /// The bucket value of a stream: event count, or mean gauge reading (`None` if no reading).
    /// A bucket past the storage has seen no events.
    pub fn bucket_value(&self, bucket: usize, stream: usize) -> Option<f64> {
        let index = bucket * self.n_streams + stream;
        bucket_value_of(
            self.bucket_counts.get(index).copied().unwrap_or(0),
            self.bucket_values.get(index).copied().unwrap_or(0.0),
            self.is_gauge[stream],
        )
    }

    /// Buckets `0..n_buckets` as a matrix whose bucket 0 starts at `start_unix_ms`.
    pub fn to_matrix(&self, start_unix_ms: i64, n_buckets: usize) -> BucketMatrix {
        let mut matrix = BucketMatrix::new(start_unix_ms, self.bucket_ms, self.n_streams, 0);
        for bucket in 0..n_buckets {
            matrix.push_bucket(&self.bucket_values(bucket));
        }
        matrix
    }

    /// The values of every stream in `bucket`, in catalog order.
    pub fn bucket_values(&self, bucket: usize) -> Vec<Option<f64>> {
        (0..self.n_streams)
            .map(|stream| self.bucket_value(bucket, stream))
            .collect()
    }

    pub fn is_gauge(&self, stream: usize) -> bool {
        self.is_gauge[stream]
    }
}

impl Sink<StreamEvent> for RunCollector {
    #[inline]
    fn accept(&mut self, event: &StreamEvent) {
        let stream = event.stream.index();
        self.counts[stream] += 1;
        let mut bytes = [0u8; TIMED_ENCODED_BYTES];
        let length = event.payload.encode_with_time(event.time, &mut bytes);
        let event_hash = xxh3_64(&bytes[..length]);
        let state = &mut self.fingerprints[stream];
        *state = (*state ^ event_hash)
            .wrapping_mul(FINGERPRINT_MULTIPLIER)
            .rotate_left(29);
        let (start, end, row) = self.current_bucket;
        let row = if event.time >= start && event.time < end {
            row
        } else {
            self.locate_bucket(event.time)
        };
        let index = row + stream;
        self.bucket_counts[index] += 1;
        if let Some(value) = event.payload.gauge_value() {
            self.bucket_values[index] += value;
        }
    }
}
