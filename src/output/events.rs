//! `events.jsonl`: every stream event, one JSON object a line, in emission order; when the run
//! is analyzed, each event also carries its bucket's `normalizedValue` and `anomalyFlag`.
//!
//! Scoring an event needs its whole bucket, so a scored sink holds back the events of buckets
//! the session has not closed yet (about 90 000 at the busiest hour) and writes them when the
//! session has scored their bucket ([`EventsJsonlSink::write_closed`]). The scores are exactly
//! those of `series.csv`: both come from the session's one scorer.

use std::io::Write;

use crate::engine::Sink;
use crate::market::catalog::Catalog;
use crate::market::payload::{RenderContext, StreamEventView};
use crate::market::{Epoch, StreamEvent};
use crate::stats::{BucketScore, ScoreTable};

/// A sink that writes events as JSON lines. The first write error stops writing and is kept,
/// so the run can finish and report it instead of panicking mid-run.
pub struct EventsJsonlSink<'a, W: Write> {
    writer: W,
    catalog: &'a Catalog,
    epoch: Epoch,
    error: Option<std::io::Error>,
    pub bytes_written: u64,
    line: Vec<u8>,
    /// With scores: the bucket length, and the events waiting for their bucket's scores.
    scored: Option<(u64, Vec<StreamEvent>)>,
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
            scored: None,
        }
    }

    /// Holds events back until [`write_closed`](Self::write_closed) brings their bucket's
    /// scores, and writes them with `normalizedValue` and `anomalyFlag`.
    pub fn with_scores(mut self, bucket_ms: u64) -> Self {
        self.scored = Some((bucket_ms, Vec::new()));
        self
    }

    /// Writes the held events of buckets before `closed_buckets` with their scores.
    pub fn write_closed(&mut self, closed_buckets: usize, scores: &ScoreTable) {
        let Some((bucket_ms, mut held)) = self.scored.take() else {
            return;
        };
        let ready =
            held.partition_point(|event| ((event.time / bucket_ms) as usize) < closed_buckets);
        for event in held.drain(..ready) {
            let score = scores.get((event.time / bucket_ms) as usize, event.stream.index());
            self.write(&event, score);
        }
        self.scored = Some((bucket_ms, held));
    }

    /// Flushes and returns the writer, or the first error met. Held events are written with
    /// `scores` (the session's, once it has closed every bucket).
    pub fn finish(mut self, scores: Option<&ScoreTable>) -> Result<W, std::io::Error> {
        if let (Some(scores), Some((_, held))) = (scores, &self.scored) {
            let buckets = held.last().map_or(0, |_| usize::MAX);
            self.write_closed(buckets, scores);
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
        match &mut self.scored {
            Some((_, held)) => held.push(event.clone()),
            None => self.write(event, None),
        }
    }
}
