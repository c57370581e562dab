//! The collecting sink: per-stream counts and fingerprints, and per-bucket values.
//!
//! A fingerprint is XXH3-64 over each event's virtual time and payload bytes, in emission
//! order, per stream. Two runs agree on a stream's fingerprint exactly when they emitted the
//! same events on it at the same times.

use xxhash_rust::xxh3::Xxh3;

use crate::engine::Sink;
use crate::market::catalog::Catalog;
use crate::market::StreamEvent;

/// Accumulates what `summary.json` and `series.csv` need while a run goes on.
pub struct RunCollector {
    n_streams: usize,
    bucket_ms: u64,
    n_buckets: usize,
    is_gauge: Vec<bool>,
    pub counts: Vec<u64>,
    fingerprints: Vec<Xxh3>,
    /// Per bucket and stream: event count, or for gauges the sum of readings.
    bucket_values: Vec<f64>,
    /// Per bucket and stream: number of events (gauge readings are averaged over it).
    bucket_counts: Vec<u32>,
}

impl RunCollector {
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
            fingerprints: (0..n_streams).map(|_| Xxh3::new()).collect(),
            bucket_values: vec![0.0; n_streams * n_buckets],
            bucket_counts: vec![0; n_streams * n_buckets],
        }
    }

    pub fn total_events(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Hex fingerprint of a stream's event sequence.
    pub fn fingerprint(&self, stream: usize) -> String {
        format!("{:016x}", self.fingerprints[stream].digest())
    }

    pub fn n_buckets(&self) -> usize {
        self.n_buckets
    }

    /// The bucket value of a stream: event count, or mean gauge reading (`None` if no reading).
    pub fn bucket_value(&self, bucket: usize, stream: usize) -> Option<f64> {
        let index = bucket * self.n_streams + stream;
        if self.is_gauge[stream] {
            let n = self.bucket_counts[index];
            (n > 0).then(|| self.bucket_values[index] / n as f64)
        } else {
            Some(self.bucket_counts[index] as f64)
        }
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
        let fingerprint = &mut self.fingerprints[stream];
        fingerprint.update(&event.time.to_le_bytes());
        event.payload.fingerprint_into(fingerprint);
        let bucket = (event.time / self.bucket_ms) as usize;
        if bucket < self.n_buckets {
            let index = bucket * self.n_streams + stream;
            self.bucket_counts[index] += 1;
            if let Some(value) = event.payload.gauge_value() {
                self.bucket_values[index] += value;
            }
        }
    }
}
