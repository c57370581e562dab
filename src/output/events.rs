//! `events.jsonl`: every stream event, one JSON object a line, in emission order.

use std::io::Write;

use crate::engine::Sink;
use crate::market::catalog::Catalog;
use crate::market::payload::{RenderContext, StreamEventView};
use crate::market::{Epoch, StreamEvent};

/// A sink that writes events as JSON lines. The first write error stops writing and is kept,
/// so the run can finish and report it instead of panicking mid-run.
pub struct EventsJsonlSink<'a, W: Write> {
    writer: W,
    catalog: &'a Catalog,
    epoch: Epoch,
    error: Option<std::io::Error>,
    pub bytes_written: u64,
    line: Vec<u8>,
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
        }
    }

    /// Flushes and returns the writer, or the first error met.
    pub fn finish(mut self) -> Result<W, std::io::Error> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        self.writer.flush()?;
        Ok(self.writer)
    }
}

impl<W: Write> Sink<StreamEvent> for EventsJsonlSink<'_, W> {
    fn accept(&mut self, event: &StreamEvent) {
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
