//! A [`Write`] that hands full buffers to a thread of its own, which writes them to the file:
//! the kernel's copy into the page cache (half of a 30-day `--events` run's time on this
//! machine) runs on another core while the simulation goes on.
//!
//! Bytes reach the file in the order they were written, so the file is the same whatever the
//! number of cores. A write error met by the thread is kept and returned by the next `write`
//! or `flush` on the caller's side; nothing is written after it.

use std::io::{self, Write};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::thread::JoinHandle;

/// Buffers on their way to the thread at most: one being written, one waiting. A third
/// waits for one of them to come back, so memory stays at a few buffers however slow the disk.
const BUFFERS_IN_FLIGHT: usize = 2;

fn thread_stopped() -> io::Error {
    io::Error::other("the events writer thread stopped before writing everything")
}

/// The caller's side of the writing thread.
pub struct BackgroundWriter {
    /// Bytes gathered for the next hand-over.
    buffer: Vec<u8>,
    capacity: usize,
    /// `None` once the thread was told to stop (on drop).
    to_thread: Option<SyncSender<Vec<u8>>>,
    /// Buffers come back emptied, or the error that stopped the thread.
    from_thread: Receiver<io::Result<Vec<u8>>>,
    in_flight: usize,
    /// Emptied buffers, ready for reuse.
    spare: Vec<Vec<u8>>,
    thread: Option<JoinHandle<()>>,
    /// The first error, returned again on every later call.
    failed: Option<(io::ErrorKind, String)>,
}

impl BackgroundWriter {
    /// Starts the writing thread for `writer`, handing it buffers of about `capacity` bytes.
    pub fn spawn<W: Write + Send + 'static>(mut writer: W, capacity: usize) -> io::Result<Self> {
        let (to_thread, buffers) = mpsc::sync_channel::<Vec<u8>>(BUFFERS_IN_FLIGHT);
        let (returns, from_thread) = mpsc::channel::<io::Result<Vec<u8>>>();
        let thread = std::thread::Builder::new()
            .name("events-writer".to_string())
            .spawn(move || {
                for mut buffer in buffers {
                    let written = writer.write_all(&buffer).and_then(|()| writer.flush());
                    buffer.clear();
                    let failed = written.is_err();
                    // The caller has gone only when it was dropped: nothing left to report to.
                    if returns.send(written.map(|()| buffer)).is_err() || failed {
                        return;
                    }
                }
            })?;
        Ok(BackgroundWriter {
            buffer: Vec::with_capacity(capacity),
            capacity,
            to_thread: Some(to_thread),
            from_thread,
            in_flight: 0,
            spare: Vec::new(),
            thread: Some(thread),
            failed: None,
        })
    }

    fn check(&self) -> io::Result<()> {
        match &self.failed {
            Some((kind, message)) => Err(io::Error::new(*kind, message.clone())),
            None => Ok(()),
        }
    }

    /// Waits for one buffer to come back from the thread.
    fn take_back_one(&mut self) -> io::Result<()> {
        let returned = self.from_thread.recv().map_err(|_| thread_stopped());
        self.in_flight -= 1;
        match returned.and_then(|result| result) {
            Ok(buffer) => {
                self.spare.push(buffer);
                Ok(())
            }
            Err(error) => {
                self.failed = Some((error.kind(), error.to_string()));
                Err(error)
            }
        }
    }

    /// Hands the gathered bytes to the thread and starts a fresh buffer.
    fn hand_over(&mut self) -> io::Result<()> {
        self.check()?;
        if self.buffer.is_empty() {
            return Ok(());
        }
        if self.in_flight >= BUFFERS_IN_FLIGHT {
            self.take_back_one()?;
        }
        let fresh = self
            .spare
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.capacity));
        let full = std::mem::replace(&mut self.buffer, fresh);
        let sender = self.to_thread.as_ref().ok_or_else(thread_stopped)?;
        if sender.send(full).is_err() {
            // The thread ended: it met an error, which waits on the return channel behind the
            // buffers it wrote.
            while self.in_flight > 0 {
                self.take_back_one()?;
            }
            let stopped = thread_stopped();
            self.failed = Some((stopped.kind(), stopped.to_string()));
            return Err(stopped);
        }
        self.in_flight += 1;
        Ok(())
    }
}

impl Write for BackgroundWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.check()?;
        if self.buffer.len() + data.len() > self.capacity {
            self.hand_over()?;
        }
        self.buffer.extend_from_slice(data);
        Ok(data.len())
    }

    /// Returns once every byte written so far is in the file (or the first error met).
    fn flush(&mut self) -> io::Result<()> {
        self.hand_over()?;
        while self.in_flight > 0 {
            self.take_back_one()?;
        }
        self.check()
    }
}

impl Drop for BackgroundWriter {
    fn drop(&mut self) {
        // Like `BufWriter`, a drop writes what is left and ignores errors: callers that care
        // call `flush` first.
        let _ = self.hand_over();
        self.to_thread = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer into shared memory that fails after `limit` bytes.
    #[derive(Clone)]
    struct SharedBytes {
        bytes: Arc<Mutex<Vec<u8>>>,
        limit: usize,
    }

    impl Write for SharedBytes {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            let mut bytes = self
                .bytes
                .lock()
                .map_err(|_| io::Error::other("poisoned"))?;
            if bytes.len() + data.len() > self.limit {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            bytes.extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn pieces() -> Vec<Vec<u8>> {
        (0..2_000u32)
            .map(|i| format!("line {i} {}\n", "x".repeat((i % 97) as usize)).into_bytes())
            .collect()
    }

    #[test]
    fn bytes_arrive_in_order_whatever_the_buffer_size() {
        let expected: Vec<u8> = pieces().concat();
        for capacity in [1, 7, 64, 4096, 1 << 20] {
            let target = SharedBytes {
                bytes: Arc::default(),
                limit: usize::MAX,
            };
            let mut writer = BackgroundWriter::spawn(target.clone(), capacity).expect("spawn");
            for piece in pieces() {
                writer.write_all(&piece).expect("write");
            }
            writer.flush().expect("flush");
            assert_eq!(*target.bytes.lock().expect("lock"), expected, "{capacity}");
        }
    }

    #[test]
    fn a_write_error_reaches_the_caller_and_stops_writing() {
        let target = SharedBytes {
            bytes: Arc::default(),
            limit: 10_000,
        };
        let mut writer = BackgroundWriter::spawn(target.clone(), 512).expect("spawn");
        let mut first_error = None;
        for piece in pieces() {
            if let Err(error) = writer.write_all(&piece) {
                first_error = Some(error);
                break;
            }
        }
        let error = first_error
            .or_else(|| writer.flush().err())
            .expect("an error");
        assert_eq!(error.kind(), io::ErrorKind::StorageFull);
        assert!(writer.flush().is_err(), "the error is kept");
        assert!(target.bytes.lock().expect("lock").len() <= 10_000);
    }
}
