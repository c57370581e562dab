//! `events.jsonl`: every stream event, one JSON object a line, in emission order; when the run
//! is analyzed, each event also carries its bucket's `normalizedValue` and `anomalyFlag`.
//!
//! Scoring an event needs its whole bucket, so a scored sink holds back the events of buckets
//! the session has not closed yet (about 90 000 at the busiest hour) and writes them when the
//! session has scored their bucket ([`EventsJsonlSink::write_closed`]). The scores are exactly
//! those of `series.csv`: both come from the session's one scorer.
//!
//! A second table of the same events ([`EventTable`], `events.parquet`) rides along: the sink
//! hands it each event as it writes the line, so held-back events are held once for both.

use std::io::Write;

use crate::engine::Sink;
use crate::market::catalog::Catalog;
use crate::market::payload::RenderContext;
use crate::market::{Epoch, StreamEvent};
use crate::stats::{BucketScore, ScoreTable};

use super::event_line::EventLineWriter;
use super::run_dir::OutputError;

/// Lines are gathered in a buffer of this size before they go to the writer.
const LINE_BUFFER_BYTES: usize = 256 * 1024;
/// Room left for one more line when the buffer is flushed (the longest lines, gauges by
/// subject, are well under 1 KiB).
const MAX_LINE_HEADROOM: usize = 4 * 1024;

/// Another table of the events a sink writes (`events.parquet`): it gets each event in the
/// order of `events.jsonl`, with the same score.
pub trait EventTable {
    /// Adds one event. A table keeps its first error, stops, and reports it from `finish`.
    fn append(&mut self, event: &StreamEvent, score: Option<BucketScore>);
    /// Writes what is left and closes the file, or returns the first error met.
    fn finish(self: Box<Self>) -> Result<(), OutputError>;
}

/// A sink that writes events as JSON lines. The first write error stops writing and is kept,
/// so the run can finish and report it instead of panicking mid-run.
pub struct EventsJsonlSink<'a, W: Write> {
    writer: W,
    catalog: &'a Catalog,
    epoch: Epoch,
    error: Option<std::io::Error>,
    pub bytes_written: u64,
    /// Rendered lines not yet handed to the writer.
    lines: Vec<u8>,
    line_writer: EventLineWriter,
    /// With scores: the bucket length, and the events waiting for their bucket's scores.
    scored: Option<(u64, Vec<StreamEvent>)>,
    /// The table that gets every written event too.
    table: Option<&'a mut dyn EventTable>,
}

impl<'a, W: Write> EventsJsonlSink<'a, W> {
    pub fn new(writer: W, catalog: &'a Catalog, epoch: Epoch) -> Self {
        EventsJsonlSink {
            writer,
            catalog,
            epoch,
            error: None,
            bytes_written: 0,
            lines: Vec::with_capacity(LINE_BUFFER_BYTES),
            line_writer: EventLineWriter::new(catalog),
            scored: None,
            table: None,
        }
    }

    /// Hands every event this sink writes to `table` too, in the same order, with the same
    /// score.
    pub fn with_table(mut self, table: &'a mut dyn EventTable) -> Self {
        self.table = Some(table);
        self
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
        self.flush_lines();
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        self.writer.flush()?;
        Ok(self.writer)
    }

    fn flush_lines(&mut self) {
        if self.error.is_none() && !self.lines.is_empty() {
            if let Err(error) = self.writer.write_all(&self.lines) {
                self.error = Some(error);
            }
        }
        self.lines.clear();
    }

    fn write(&mut self, event: &StreamEvent, score: Option<BucketScore>) {
        if self.error.is_some() {
            return;
        }
        let context = RenderContext {
            subjects: &self.catalog.subjects,
            epoch: self.epoch,
        };
        let before = self.lines.len();
        self.line_writer.write_line(
            &mut self.lines,
            event,
            context,
            score.map(|s| (s.normalized, s.flag.as_str())),
        );
        self.bytes_written += (self.lines.len() - before) as u64;
        // Lines gather in one buffer that goes to the writer when full: one copy and one
        // call per 256 KiB instead of per line.
        if self.lines.len() >= LINE_BUFFER_BYTES - MAX_LINE_HEADROOM {
            self.flush_lines();
        }
        if let Some(table) = &mut self.table {
            table.append(event, score);
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
