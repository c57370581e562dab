//! `events.jsonl`: every stream event, one JSON object a line, in emission order; when the run
//! is analyzed, each event also carries its bucket's `normalizedValue` and `anomalyFlag`.
//!
//! Scoring an event needs its whole bucket, so a scored sink holds back one bucket of events
//! (about 90 000 at the busiest hour) and writes them when the next bucket begins. The scores
//! are exactly those of `series.csv`: the same scorer sees the same values in the same order.

use std::io::Write;

use crate::engine::Sink;
use crate::market::catalog::Catalog;
use crate::market::payload::{RenderContext, StreamEventView};
use crate::market::{Epoch, StreamEvent};
use crate::session::buckets::bucket_value_of;
use crate::stats::{BucketScore, Scorer};

/// Scoring state of a scored sink: the bucket being filled and its events.
struct BucketScoring<'a> {
    scorer: Scorer<'a>,
    bucket_ms: u64,
    n_buckets: usize,
    current: usize,
    held: Vec<StreamEvent>,
    counts: Vec<u32>,
    gauge_sums: Vec<f64>,
    is_gauge: Vec<bool>,
}

impl BucketScoring<'_> {
    /// Scores the current bucket and returns its scores; the caller writes the held events.
    fn close_bucket(&mut self) -> Vec<Option<BucketScore>> {
        let values: Vec<Option<f64>> = (0..self.counts.len())
            .map(|s| bucket_value_of(self.counts[s], self.gauge_sums[s], self.is_gauge[s]))
            .collect();
        let scores = self
            .scorer
            .score_bucket(self.current as u64 * self.bucket_ms, &values);
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.gauge_sums.iter_mut().for_each(|g| *g = 0.0);
        self.current += 1;
        scores
    }
}

/// A sink that writes events as JSON lines. The first write error stops writing and is kept,
/// so the run can finish and report it instead of panicking mid-run.
pub struct EventsJsonlSink<'a, W: Write> {
    writer: W,
    catalog: &'a Catalog,
    epoch: Epoch,
    error: Option<std::io::Error>,
    pub bytes_written: u64,
    line: Vec<u8>,
    scoring: Option<BucketScoring<'a>>,
}

impl<'a, W: Write> EventsJsonlSink<'a, W> {
    pub fn new(writer: W, catalog: &'a Catalog, epoch: Epoch) -> Self {
        EventsJsonlSink {
            writer,
            catalog,
            epoch,
            error: None,
            bytes_written: 0,
            line: Vec::with_capacity(512),
            scoring: None,
        }
    }

    /// Adds `normalizedValue` and `anomalyFlag` to every event, from `scorer`.
    pub fn with_scores(mut self, scorer: Scorer<'a>, bucket_ms: u64, n_buckets: usize) -> Self {
        let n = self.catalog.streams.len();
        self.scoring = Some(BucketScoring {
            scorer,
            bucket_ms,
            n_buckets,
            current: 0,
            held: Vec::new(),
            counts: vec![0; n],
            gauge_sums: vec![0.0; n],
            is_gauge: self
                .catalog
                .streams
                .iter()
                .map(|s| s.origin.is_gauge())
                .collect(),
        });
        self
    }

    /// Flushes and returns the writer, or the first error met.
    pub fn finish(mut self) -> Result<W, std::io::Error> {
        if let Some(mut scoring) = self.scoring.take() {
            while scoring.current < scoring.n_buckets {
                let scores = scoring.close_bucket();
                let held = std::mem::take(&mut scoring.held);
                for event in &held {
                    self.write(event, scores[event.stream.index()]);
                }
            }
        }
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        self.writer.flush()?;
        Ok(self.writer)
    }

    fn write(&mut self, event: &StreamEvent, score: Option<BucketScore>) {
        if self.error.is_some() {
            return;
        }
        self.line.clear();
        let view = StreamEventView {
            stream_name: &self.catalog.streams[event.stream.index()].name,
            event,
            context: RenderContext {
                subjects: &self.catalog.subjects,
                epoch: self.epoch,
            },
            score: score.map(|s| (s.normalized, s.flag.as_str())),
        };
        let result = serde_json::to_writer(&mut self.line, &view)
            .map_err(std::io::Error::other)
            .and_then(|()| {
                self.line.push(b'\n');
                self.writer.write_all(&self.line)
            });
        match result {
            Ok(()) => self.bytes_written += self.line.len() as u64,
            Err(error) => self.error = Some(error),
        }
    }
}

impl<W: Write> Sink<StreamEvent> for EventsJsonlSink<'_, W> {
    fn accept(&mut self, event: &StreamEvent) {
        let Some(mut scoring) = self.scoring.take() else {
            self.write(event, None);
            return;
        };
        let bucket = (event.time / scoring.bucket_ms) as usize;
        while scoring.current < bucket && scoring.current < scoring.n_buckets {
            let scores = scoring.close_bucket();
            let held = std::mem::take(&mut scoring.held);
            for held_event in &held {
                self.write(held_event, scores[held_event.stream.index()]);
            }
            scoring.held = held;
            scoring.held.clear();
        }
        let stream = event.stream.index();
        scoring.counts[stream] += 1;
        if let Some(value) = event.payload.gauge_value() {
            scoring.gauge_sums[stream] += value;
        }
        scoring.held.push(event.clone());
        self.scoring = Some(scoring);
    }
}
