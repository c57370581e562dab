//! Counters of the live server, shown in Prometheus text format at `GET /metrics`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

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
        out
    }
}
