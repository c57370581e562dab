//! `ws_fanout`: the WebSocket load generator of `cargo xtask bench live`. It opens many
//! WebSocket clients against a running `marketsim serve` from its own process, measures the
//! server's resident memory per idle client, then subscribes them and measures delivery
//! latency, message and event rates and the engine's lag; it prints one JSON object.
//!
//! ```sh
//! cargo run --release --example ws_fanout -- --url http://127.0.0.1:8080 --clients 1000 \
//!     --subscribe all --seconds 30 --server-pid 12345
//! ```
//!
//! - `--subscribe all`: every client subscribes to `*`; `--subscribe spread`: client `i`
//!   subscribes to stream `i mod n_streams` (the embedded catalog's order), one stream each.
//! - Delivery latency: an event's due wall time is its virtual time mapped through the pace
//!   schedule the server publishes in `GET /api/simulation/state` (`anchorWallUnixMs`,
//!   `anchorVirtualMs`, `speed`); the latency is the system clock at receipt minus that. Server
//!   and clients share this machine's clock. Two figures: per event, and per message from the
//!   due time of the newest event it carries (what the fan-out adds beyond the frame cadence).
//! - Server RSS per idle client: `VmRSS` of `/proc/<server-pid>/status` before any client
//!   connects and once all are connected and idle, divided by the clients connected.
//! - Engine lag: the largest `lagMs` of the state, polled every second while measuring.
//!
//! The clients answer the server's `ping` messages, so they can stay connected for as long as
//! a measurement takes. The open-file limit must allow one descriptor per client (the xtask
//! raises the soft limit to the hard one before starting this process).

#[path = "support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use marketsim::live::api_client::ApiClient;
use marketsim::market::Catalog;
use tokio::sync::{watch, Semaphore};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use support::{resident_kib, state_json};

/// Handshakes in flight at once: below the listener's accept backlog, so no SYN is dropped
/// (a dropped SYN costs a one-second retransmit and would read as a slow server).
const CONNECT_CONCURRENCY: usize = 200;
/// Longest the clients may take to connect, all together.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(120);
/// Latency histogram resolution and range: 0.1 ms buckets up to 10 s, the rest in the last.
const LATENCY_BUCKET_MICROS: u64 = 100;
const LATENCY_BUCKETS: usize = 100_000;
/// A client's read buffer. Server messages to a client subscribed to every stream are tens of
/// kilobytes and grow the buffer as needed; 10,000 idle clients at the library's default of
/// 128 KiB each would cost this process more than a gigabyte of address space for nothing.
const CLIENT_READ_BUFFER_BYTES: usize = 8 * 1024;

/// What the command line asked for.
struct Options {
    /// `http://host:port` of the server.
    url: String,
    clients: usize,
    subscribe_all: bool,
    /// Seconds of measurement after the warm-up.
    seconds: f64,
    /// Seconds between subscribing and measuring (the first frames, catch-up, buffers grown).
    warmup_seconds: f64,
    /// Seconds the connected idle clients are left before the server's RSS is read.
    settle_seconds: f64,
    server_pid: Option<u32>,
}

fn parse_options() -> Result<Options> {
    let mut options = Options {
        url: String::new(),
        clients: 1_000,
        subscribe_all: true,
        seconds: 30.0,
        warmup_seconds: 3.0,
        settle_seconds: 2.0,
        server_pid: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => options.url = value()?,
            "--clients" => options.clients = value()?.parse().context("--clients")?,
            "--subscribe" => {
                options.subscribe_all = match value()?.as_str() {
                    "all" => true,
                    "spread" => false,
                    other => bail!("--subscribe is `all` or `spread`, not `{other}`"),
                }
            }
            "--seconds" => options.seconds = value()?.parse().context("--seconds")?,
            "--warmup" => options.warmup_seconds = value()?.parse().context("--warmup")?,
            "--settle" => options.settle_seconds = value()?.parse().context("--settle")?,
            "--server-pid" => options.server_pid = Some(value()?.parse().context("--server-pid")?),
            other => bail!(
                "unknown argument `{other}`; usage: ws_fanout --url http://HOST:PORT [--clients N] \
                 [--subscribe all|spread] [--seconds S] [--warmup S] [--settle S] [--server-pid PID]"
            ),
        }
    }
    if options.url.is_empty() {
        bail!("--url http://HOST:PORT is required");
    }
    for (name, seconds) in [
        ("--seconds", options.seconds),
        ("--warmup", options.warmup_seconds),
        ("--settle", options.settle_seconds),
    ] {
        if !(seconds.is_finite() && (0.0..1e6).contains(&seconds)) {
            bail!("{name} must be a number of seconds, not {seconds}");
        }
    }
    Ok(options)
}

/// The server's pace schedule on the wall clock, from `GET /api/simulation/state`.
#[derive(Debug, Clone, Copy)]
struct Pace {
    epoch_unix_ms: i64,
    anchor_wall_unix_ms: f64,
    anchor_virtual_ms: f64,
    speed: f64,
}

impl Pace {
    /// The wall time (Unix ms) at which an event stamped `timestamp_unix_ms` was due.
    fn due_wall_unix_ms(&self, timestamp_unix_ms: i64) -> f64 {
        let virtual_ms = (timestamp_unix_ms - self.epoch_unix_ms) as f64;
        self.anchor_wall_unix_ms + (virtual_ms - self.anchor_virtual_ms) / self.speed
    }
}

/// A latency histogram shared by every client task (relaxed atomics: counts, not state).
struct LatencyHistogram {
    buckets: Vec<AtomicU64>,
    /// Events received before their due time (clock or rounding); counted in the first bucket.
    early: AtomicU64,
}

impl LatencyHistogram {
    fn new() -> LatencyHistogram {
        LatencyHistogram {
            buckets: (0..LATENCY_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            early: AtomicU64::new(0),
        }
    }

    fn record(&self, latency_ms: f64) {
        if latency_ms < 0.0 {
            self.early.fetch_add(1, Ordering::Relaxed);
        }
        let micros = (latency_ms.max(0.0) * 1_000.0) as u64;
        let slot = ((micros / LATENCY_BUCKET_MICROS) as usize).min(LATENCY_BUCKETS - 1);
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// The `quantile` (0–1) in milliseconds, at its bucket's upper bound; `None` when empty.
    fn quantile_ms(&self, quantile: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((quantile * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (slot, bucket) in self.buckets.iter().enumerate() {
            seen += bucket.load(Ordering::Relaxed);
            if seen >= rank {
                return Some(((slot as u64 + 1) * LATENCY_BUCKET_MICROS) as f64 / 1_000.0);
            }
        }
        None
    }
}

/// What every client task adds to while measuring.
struct Tally {
    measuring: AtomicBool,
    messages: AtomicU64,
    events: AtomicU64,
    bytes: AtomicU64,
    /// Messages the server skipped for clients whose queue was full (from `lag` messages).
    skipped: AtomicU64,
    connected: AtomicU64,
    failed: AtomicU64,
    /// Clients whose connection ended before they were told to stop.
    lost: AtomicU64,
    event_latency: LatencyHistogram,
    message_latency: LatencyHistogram,
}

/// What the clients are told to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Idle,
    Subscribe,
    Stop,
}

fn unix_ms_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|since| since.as_secs_f64() * 1_000.0)
        .unwrap_or(0.0)
}

fn pace_of(state: &serde_json::Value) -> Result<Pace> {
    let number = |key: &str| {
        state[key]
            .as_f64()
            .ok_or_else(|| anyhow!("the state has no number `{key}` (an older server?)"))
    };
    if state["paused"].as_bool() == Some(true) {
        bail!("the simulation is paused: no event is due");
    }
    let epoch = state["epoch"]
        .as_str()
        .ok_or_else(|| anyhow!("the state has no `epoch`"))?;
    let epoch = chrono::DateTime::parse_from_rfc3339(epoch)
        .with_context(|| format!("the state's epoch `{epoch}`"))?;
    Ok(Pace {
        epoch_unix_ms: epoch.timestamp_millis(),
        anchor_wall_unix_ms: number("anchorWallUnixMs")?,
        anchor_virtual_ms: number("anchorVirtualMs")?,
        speed: number("speed")?,
    })
}

/// The Unix milliseconds of every event's `timestamp` in an `event` or `batch` message. Every
/// event object starts with `"stream"` and has `"timestamp"` as its second key, so the first
/// timestamp after each stream key is the event's own.
fn event_timestamps(message: &str, mut each: impl FnMut(i64)) {
    const STREAM_KEY: &str = "{\"stream\":\"";
    const TIMESTAMP_KEY: &str = "\"timestamp\":\"";
    for piece in message.split(STREAM_KEY).skip(1) {
        let Some(start) = piece.find(TIMESTAMP_KEY).map(|i| i + TIMESTAMP_KEY.len()) else {
            continue;
        };
        let Some(length) = piece[start..].find('"') else {
            continue;
        };
        if let Ok(time) = chrono::DateTime::parse_from_rfc3339(&piece[start..start + length]) {
            each(time.timestamp_millis());
        }
    }
}

/// Counts a server message while measuring; answers pings always.
fn on_text(text: &str, pace: &Pace, tally: &Tally) -> Option<&'static str> {
    if text.starts_with("{\"type\":\"ping\"") {
        return Some("{\"type\":\"pong\"}");
    }
    if !tally.measuring.load(Ordering::Relaxed) {
        return None;
    }
    if text.starts_with("{\"type\":\"batch\"") || text.starts_with("{\"type\":\"event\"") {
        let received = unix_ms_now();
        let mut n_events = 0;
        let mut newest_due = f64::MIN;
        event_timestamps(text, |timestamp_unix_ms| {
            let due = pace.due_wall_unix_ms(timestamp_unix_ms);
            tally.event_latency.record(received - due);
            newest_due = newest_due.max(due);
            n_events += 1;
        });
        if n_events > 0 {
            tally.message_latency.record(received - newest_due);
        }
        tally.messages.fetch_add(1, Ordering::Relaxed);
        tally.events.fetch_add(n_events, Ordering::Relaxed);
        tally.bytes.fetch_add(text.len() as u64, Ordering::Relaxed);
    } else if let Some(rest) = text.strip_prefix("{\"type\":\"lag\",\"skipped\":") {
        let skipped: u64 = rest.trim_end_matches('}').parse().unwrap_or(0);
        tally.skipped.fetch_add(skipped, Ordering::Relaxed);
    }
    None
}

/// One client: connect, wait idle (answering pings), subscribe when told, count, close.
async fn client(
    ws_url: String,
    subscription: String,
    pace: Pace,
    tally: Arc<Tally>,
    connecting: Arc<Semaphore>,
    mut phase: watch::Receiver<Phase>,
) {
    let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER_BYTES);
    let connected = {
        let _permit = connecting.acquire().await;
        tokio_tungstenite::connect_async_with_config(ws_url.as_str(), Some(config), true).await
    };
    let socket = match connected {
        Ok((socket, _)) => socket,
        Err(error) => {
            if tally.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                eprintln!("ws_fanout: a client could not connect: {error}");
            }
            return;
        }
    };
    tally.connected.fetch_add(1, Ordering::Relaxed);
    let (mut sink, mut stream) = socket.split();
    let mut subscribed = false;
    loop {
        tokio::select! {
            changed = phase.changed() => {
                let next = if changed.is_ok() { *phase.borrow_and_update() } else { Phase::Stop };
                match next {
                    Phase::Subscribe if !subscribed => {
                        subscribed = true;
                        if sink.send(Message::text(subscription.clone())).await.is_err() {
                            break;
                        }
                    }
                    Phase::Stop => {
                        let _ = sink.close().await;
                        return;
                    }
                    _ => {}
                }
            }
            message = stream.next() => match message {
                Some(Ok(Message::Text(text))) => {
                    if let Some(reply) = on_text(text.as_str(), &pace, &tally) {
                        if sink.send(Message::text(reply)).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    if *phase.borrow() != Phase::Stop {
        tally.lost.fetch_add(1, Ordering::Relaxed);
    }
}

fn main() -> Result<()> {
    let options = parse_options()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let summary = runtime.block_on(run(options))?;
    println!("{summary}");
    Ok(())
}

async fn run(options: Options) -> Result<serde_json::Value> {
    let api = ApiClient::new(&options.url)?;
    let ws_url = format!(
        "ws://{}/ws",
        options
            .url
            .trim_start_matches("http://")
            .trim_end_matches('/')
    );
    let pace = pace_of(&state_json(&api).await?)?;
    let catalog = Catalog::embedded().map_err(|d| anyhow!("the embedded catalog: {d}"))?;
    let stream_names: Vec<String> = catalog.streams.iter().map(|s| s.name.clone()).collect();
    if stream_names.is_empty() {
        bail!("the catalog has no stream");
    }

    let rss_before_kib = options.server_pid.map(resident_kib).transpose()?;
    let tally = Arc::new(Tally {
        measuring: AtomicBool::new(false),
        messages: AtomicU64::new(0),
        events: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        skipped: AtomicU64::new(0),
        connected: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        lost: AtomicU64::new(0),
        event_latency: LatencyHistogram::new(),
        message_latency: LatencyHistogram::new(),
    });
    let (phase_sender, phase) = watch::channel(Phase::Idle);
    let connecting = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
    let connect_started = Instant::now();
    let mut tasks = Vec::with_capacity(options.clients);
    for index in 0..options.clients {
        let topic = if options.subscribe_all {
            "*".to_string()
        } else {
            stream_names[index % stream_names.len()].clone()
        };
        let subscription =
            serde_json::json!({ "type": "subscribe", "topics": [topic] }).to_string();
        tasks.push(tokio::spawn(client(
            ws_url.clone(),
            subscription,
            pace,
            Arc::clone(&tally),
            Arc::clone(&connecting),
            phase.clone(),
        )));
    }
    // Wait until every client has connected or failed (bounded: a server that stops
    // answering handshakes must not hang the benchmark).
    let settled = |tally: &Tally| {
        tally.connected.load(Ordering::Relaxed) + tally.failed.load(Ordering::Relaxed)
    };
    while settled(&tally) < options.clients as u64 {
        if connect_started.elapsed() > CONNECT_TIMEOUT {
            bail!(
                "only {} of {} clients connected or failed within {CONNECT_TIMEOUT:?}",
                settled(&tally),
                options.clients
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let connect_seconds = connect_started.elapsed().as_secs_f64();
    let connected = tally.connected.load(Ordering::Relaxed);
    eprintln!(
        "ws_fanout: {connected} of {} clients connected in {connect_seconds:.1} s",
        options.clients
    );
    tokio::time::sleep(Duration::from_secs_f64(options.settle_seconds)).await;
    let rss_idle_kib = options.server_pid.map(resident_kib).transpose()?;

    let _ = phase_sender.send(Phase::Subscribe);
    tokio::time::sleep(Duration::from_secs_f64(options.warmup_seconds)).await;
    let start_state = state_json(&api).await?;
    let start_metrics_lagging = lagging_total(&api).await;
    tally.measuring.store(true, Ordering::Relaxed);
    let measure_started = Instant::now();
    let mut lag_ms_max: f64 = 0.0;
    let window = Duration::from_secs_f64(options.seconds);
    while measure_started.elapsed() < window {
        tokio::time::sleep(
            Duration::from_secs(1).min(window.saturating_sub(measure_started.elapsed())),
        )
        .await;
        if let Ok(state) = state_json(&api).await {
            lag_ms_max = lag_ms_max.max(state["lagMs"].as_f64().unwrap_or(0.0));
        }
    }
    tally.measuring.store(false, Ordering::Relaxed);
    let measured_seconds = measure_started.elapsed().as_secs_f64();
    let end_state = state_json(&api).await?;
    let end_metrics_lagging = lagging_total(&api).await;
    let rss_subscribed_kib = options.server_pid.map(resident_kib).transpose()?;
    let _ = phase_sender.send(Phase::Stop);
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }

    let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    let per_second = |counter: &AtomicU64| load(counter) as f64 / measured_seconds;
    let virtual_advanced_ms = end_state["virtualMs"].as_f64().unwrap_or(0.0)
        - start_state["virtualMs"].as_f64().unwrap_or(0.0);
    let rss_per_idle_client_kib = match (rss_before_kib, rss_idle_kib) {
        (Some(before), Some(idle)) if connected > 0 => {
            Some((idle as f64 - before as f64) / connected as f64)
        }
        _ => None,
    };
    Ok(serde_json::json!({
        "clients": options.clients,
        "connected": connected,
        "failed": load(&tally.failed),
        "lost": load(&tally.lost),
        "subscribe": if options.subscribe_all { "all" } else { "spread" },
        "speed": pace.speed,
        "connectSeconds": connect_seconds,
        "measuredSeconds": measured_seconds,
        "messages": load(&tally.messages),
        "events": load(&tally.events),
        "bytes": load(&tally.bytes),
        "messagesPerSecond": per_second(&tally.messages),
        "eventsPerSecond": per_second(&tally.events),
        "megabytesPerSecond": per_second(&tally.bytes) / 1e6,
        "skipped": load(&tally.skipped),
        "lagNotices": end_metrics_lagging.zip(start_metrics_lagging).map(|(end, start)| end - start),
        "eventLatencyP50Ms": tally.event_latency.quantile_ms(0.50),
        "eventLatencyP99Ms": tally.event_latency.quantile_ms(0.99),
        "eventLatencyMaxMs": tally.event_latency.quantile_ms(1.0),
        "eventsEarly": load(&tally.event_latency.early),
        "messageLatencyP50Ms": tally.message_latency.quantile_ms(0.50),
        "messageLatencyP99Ms": tally.message_latency.quantile_ms(0.99),
        "lagMsMax": lag_ms_max,
        "virtualAdvancedMs": virtual_advanced_ms,
        "rssBeforeKib": rss_before_kib,
        "rssIdleKib": rss_idle_kib,
        "rssSubscribedKib": rss_subscribed_kib,
        "rssPerIdleClientKib": rss_per_idle_client_kib,
    }))
}

/// `marketsim_clients_lagging_total` from `/metrics` (times a client's queue was full).
async fn lagging_total(api: &ApiClient) -> Option<f64> {
    let response = api.get("/metrics").await.ok()?;
    response
        .body
        .lines()
        .find_map(|line| line.strip_prefix("marketsim_clients_lagging_total "))
        .and_then(|value| value.trim().parse().ok())
}
