//! Counters of the live server, shown in Prometheus text format at `GET /metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Every counter and gauge, updated with relaxed atomics (they are statistics, not state).
#[derive(Debug, Default)]
pub struct Metrics {
    pub events_total: AtomicU64,
    pub frames_total: AtomicU64,
    /// Microseconds the last frame took.
    pub frame_micros: AtomicU64,
    /// Microseconds the runner finished behind its target (0 when on time).
    pub lag_micros: AtomicU64,
    pub virtual_ms: AtomicU64,
    pub queue_depth: AtomicU64,
    pub clients: AtomicU64,
    pub messages_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub clients_dropped: AtomicU64,
    pub clients_lagging: AtomicU64,
    pub analyst_calls: AtomicU64,
    pub analyst_fallbacks: AtomicU64,
    pub http_requests: AtomicU64,
    /// Answers with a 5xx status: a server fault, which the soak and the fuzzing count.
    pub http_server_errors: AtomicU64,
    /// Tasks alive in the server's async runtime when `/metrics` was last read (a leak of
    /// connection tasks shows here).
    pub runtime_tasks: AtomicU64,
    /// How late each runner frame started against its due wall time.
    pub frame_lateness: LatenessHistogram,
}

/// Upper bounds of the lateness histogram's buckets, in microseconds: a 1-2-5 series from
/// 50 µs (a timer wake-up on an idle machine) to 5 s (a runner stalled for 50 frames), fine
/// enough that a quantile read from it is within a factor of about two.
pub const LATENESS_BOUNDS_MICROS: [u64; 17] = [
    50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000,
    1_000_000, 2_000_000, 5_000_000, 10_000_000,
];

/// A Prometheus histogram of durations: a count per bucket of [`LATENESS_BOUNDS_MICROS`] (the
/// last slot counts what exceeds every bound), their sum and count. Only the runner records;
/// `/metrics` reads it with relaxed loads, so one scrape may see a frame in the count and not
/// yet in its bucket (statistics, not state).
#[derive(Debug, Default)]
pub struct LatenessHistogram {
    buckets: [AtomicU64; LATENESS_BOUNDS_MICROS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl LatenessHistogram {
    pub fn record(&self, lateness: Duration) {
        let micros = u64::try_from(lateness.as_micros()).unwrap_or(u64::MAX);
        let slot = LATENESS_BOUNDS_MICROS
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(LATENESS_BOUNDS_MICROS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The histogram in Prometheus text format (cumulative `_bucket{le}` lines, `_sum`,
    /// `_count`), in seconds.
    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP marketsim_{name} {help}");
        let _ = writeln!(out, "# TYPE marketsim_{name} histogram");
        let mut cumulative = 0;
        for (slot, bound) in LATENESS_BOUNDS_MICROS.iter().enumerate() {
            cumulative += self.buckets[slot].load(Ordering::Relaxed);
            let bound_seconds = *bound as f64 / 1e6;
            let _ = writeln!(
                out,
                "marketsim_{name}_bucket{{le=\"{bound_seconds}\"}} {cumulative}"
            );
        }
        cumulative += self.buckets[LATENESS_BOUNDS_MICROS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "marketsim_{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let sum_seconds = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "marketsim_{name}_sum {sum_seconds:.6}");
        let _ = writeln!(
            out,
            "marketsim_{name}_count {}",
            self.count.load(Ordering::Relaxed)
        );
    }
}

impl Metrics {
    pub fn add(counter: &AtomicU64, value: u64) {
        counter.fetch_add(value, Ordering::Relaxed);
    }

    pub fn set(gauge: &AtomicU64, value: u64) {
        gauge.store(value, Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every metric; `events_per_second` comes from the
    /// caller (it is a rate over the runner's recent frames).
    pub fn render(&self, events_per_second: f64) -> String {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP marketsim_{name} {help}");
            let _ = writeln!(out, "# TYPE marketsim_{name} {kind}");
            let _ = writeln!(out, "marketsim_{name} {value}");
        };
        metric(
            "events_total",
            "counter",
            "Stream events generated.",
            get(&self.events_total).to_string(),
        );
        metric(
            "events_per_second",
            "gauge",
            "Stream events per wall second, recently.",
            format!("{events_per_second:.1}"),
        );
        metric(
            "frames_total",
            "counter",
            "Runner frames.",
            get(&self.frames_total).to_string(),
        );
        metric(
            "frame_duration_seconds",
            "gauge",
            "Wall time the last frame took.",
            format!("{:.6}", get(&self.frame_micros) as f64 / 1e6),
        );
        metric(
            "lag_seconds",
            "gauge",
            "How far behind its wall-clock target the runner is.",
            format!("{:.6}", get(&self.lag_micros) as f64 / 1e6),
        );
        metric(
            "virtual_time_ms",
            "gauge",
            "Virtual milliseconds since the session's epoch.",
            get(&self.virtual_ms).to_string(),
        );
        metric(
            "queue_depth",
            "gauge",
            "Events pending in the engine's queue.",
            get(&self.queue_depth).to_string(),
        );
        metric(
            "clients",
            "gauge",
            "Connected WebSocket clients.",
            get(&self.clients).to_string(),
        );
        metric(
            "messages_sent_total",
            "counter",
            "WebSocket messages sent.",
            get(&self.messages_sent).to_string(),
        );
        metric(
            "bytes_sent_total",
            "counter",
            "WebSocket bytes sent.",
            get(&self.bytes_sent).to_string(),
        );
        metric(
            "clients_dropped_total",
            "counter",
            "Clients disconnected for silence or errors.",
            get(&self.clients_dropped).to_string(),
        );
        metric(
            "clients_lagging_total",
            "counter",
            "Times a client's queue was full and it skipped ahead.",
            get(&self.clients_lagging).to_string(),
        );
        metric(
            "analyst_calls_total",
            "counter",
            "Analyst calls.",
            get(&self.analyst_calls).to_string(),
        );
        metric(
            "analyst_fallbacks_total",
            "counter",
            "Analyst calls answered by the rules fallback.",
            get(&self.analyst_fallbacks).to_string(),
        );
        metric(
            "http_requests_total",
            "counter",
            "HTTP requests served.",
            get(&self.http_requests).to_string(),
        );
        metric(
            "http_server_errors_total",
            "counter",
            "HTTP answers with a 5xx status.",
            get(&self.http_server_errors).to_string(),
        );
        metric(
            "runtime_tasks",
            "gauge",
            "Tasks alive in the async runtime (connections, the hub, the runner's helpers).",
            get(&self.runtime_tasks).to_string(),
        );
        if let Some(bytes) = heap_in_use_bytes() {
            metric(
                "heap_in_use_bytes",
                "gauge",
                "Bytes the allocator has handed out and not had back (glibc's mallinfo2): a leak grows this; memory the allocator keeps for reuse shows in RSS only.",
                bytes.to_string(),
            );
        }
        self.frame_lateness.render(
            &mut out,
            "frame_lateness_seconds",
            "How late each runner frame started against its due wall time.",
        );
        out
    }
}

/// The bytes of heap in use (small blocks from the arenas plus large mapped ones), where glibc
/// can say; `None` elsewhere, and the metric is left out.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_in_use_bytes() -> Option<u64> {
    // SAFETY: mallinfo2 takes no argument and returns plain counters by value; it only reads
    // the allocator's statistics under its own locks.
    let info = unsafe { libc::mallinfo2() };
    Some((info.uordblks + info.hblkhd) as u64)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn heap_in_use_bytes() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lateness_histogram_renders_cumulative_buckets() {
        let histogram = LatenessHistogram::default();
        for micros in [40, 150, 150, 3_000, 20_000_000] {
            histogram.record(Duration::from_micros(micros));
        }
        let mut text = String::new();
        histogram.render(&mut text, "lateness", "Test.");
        assert!(text.contains("marketsim_lateness_bucket{le=\"0.00005\"} 1\n"));
        assert!(text.contains("marketsim_lateness_bucket{le=\"0.0002\"} 3\n"));
        assert!(text.contains("marketsim_lateness_bucket{le=\"0.005\"} 4\n"));
        assert!(text.contains("marketsim_lateness_bucket{le=\"10\"} 4\n"));
        assert!(text.contains("marketsim_lateness_bucket{le=\"+Inf\"} 5\n"));
        assert!(text.contains("marketsim_lateness_count 5\n"));
    }
}
