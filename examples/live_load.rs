//! `live_load`: the WebSocket and REST clients of `cargo xtask faults` and `cargo xtask soak`,
//! run against a `marketsim serve` from their own process. Three modes, each printing one JSON
//! object on standard output:
//!
//! ```sh
//! # Clients that connect, subscribe and vanish without a close frame, in rounds; the server's
//! # RSS and task count after each round, once it has noticed every client gone.
//! cargo run --release --example live_load -- vanish --url http://127.0.0.1:8080 \
//!     --clients 1000 --rounds 3 --server-pid 12345
//! # One client that waits for the server to close the connection (send SIGTERM meanwhile):
//! # prints `subscribed` when it is, then the close frame it got.
//! cargo run --release --example live_load -- hold --url http://127.0.0.1:8080
//! # The soak: 200 clients (most read everything, some read slowly, some reconnect) and a REST
//! # driver activating, stopping and injecting, with the server's RSS, lag and clients sampled.
//! cargo run --release --example live_load -- soak --url http://127.0.0.1:8080 \
//!     --clients 200 --seconds 600 --server-pid 12345
//! ```
//!
//! The open-file limit must allow one descriptor per client (the xtask raises the soft limit to
//! the hard one before starting this process).

#[path = "support/mod.rs"]
mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use marketsim::live::api_client::ApiClient;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;

use support::{resident_kib, state_json};

/// Handshakes in flight at once: below the listener's accept backlog, so no SYN is dropped.
const CONNECT_CONCURRENCY: usize = 200;
/// A client's read buffer (the library's default, 128 KiB, costs 128 MiB for 1,000 clients).
const CLIENT_READ_BUFFER_BYTES: usize = 8 * 1024;
/// How long the server may take to notice that vanished clients are gone: its pings go every
/// 10 s and a client silent for 30 s is dropped, so 45 s covers one that sent no FIN either.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(45);
/// Seconds between samples of the soak.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);
/// Seconds between the soak's REST commands.
const COMMAND_EVERY: Duration = Duration::from_secs(4);

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct Options {
    mode: String,
    url: String,
    clients: usize,
    rounds: usize,
    seconds: f64,
    server_pid: Option<u32>,
    token: Option<String>,
}

fn parse_options() -> Result<Options> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: live_load vanish|hold|soak --url http://HOST:PORT [--clients N] \
                 [--rounds R] [--seconds S] [--server-pid PID] [--token TOKEN]";
    let mode = args.next().ok_or_else(|| anyhow!("{usage}"))?;
    if !["vanish", "hold", "soak"].contains(&mode.as_str()) {
        bail!("unknown mode `{mode}`; {usage}");
    }
    let mut options = Options {
        mode,
        url: String::new(),
        clients: 1_000,
        rounds: 3,
        seconds: 600.0,
        server_pid: None,
        token: None,
    };
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| anyhow!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => options.url = value()?,
            "--clients" => options.clients = value()?.parse().context("--clients")?,
            "--rounds" => options.rounds = value()?.parse().context("--rounds")?,
            "--seconds" => options.seconds = value()?.parse().context("--seconds")?,
            "--server-pid" => options.server_pid = Some(value()?.parse().context("--server-pid")?),
            "--token" => options.token = Some(value()?),
            other => bail!("unknown argument `{other}`; {usage}"),
        }
    }
    if options.url.is_empty() {
        bail!("--url http://HOST:PORT is required; {usage}");
    }
    if !(options.seconds.is_finite() && options.seconds > 0.0) {
        bail!("--seconds must be a positive number of seconds");
    }
    Ok(options)
}

/// One sample of `/metrics` (`marketsim_NAME VALUE` lines).
async fn metric(api: &ApiClient, name: &str) -> Result<f64> {
    let response = api.get("/metrics").await?;
    let prefix = format!("marketsim_{name} ");
    response
        .body
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
        .ok_or_else(|| anyhow!("/metrics has no marketsim_{name}"))
}

fn ws_url(url: &str, token: Option<&str>) -> String {
    let base = format!(
        "{}/ws",
        url.trim_end_matches('/').replacen("http://", "ws://", 1)
    );
    match token {
        Some(token) => format!("{base}?access_token={token}"),
        None => base,
    }
}

/// Connects and subscribes to every stream (and, with `last_timestamp`, catches up from it).
async fn connect_and_subscribe(url: &str, last_timestamp: Option<&str>) -> Result<Socket> {
    let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER_BYTES);
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .with_context(|| format!("connecting to {url}"))?;
    let mut subscribe =
        json!({ "type": "subscribe", "topics": ["*", "scenarios", "recommendations"] });
    if let Some(last) = last_timestamp {
        subscribe["lastTimestamp"] = json!(last);
    }
    socket.send(Message::text(subscribe.to_string())).await?;
    Ok(socket)
}

// ---------------------------------------------------------------------------------------------
// vanish
// ---------------------------------------------------------------------------------------------

/// Connects a client, waits for its first message (so the server has it subscribed and queued
/// to), and hands the socket back to be dropped.
async fn vanishing_client(url: String, permits: Arc<Semaphore>) -> Option<Socket> {
    let mut socket = {
        let _permit = permits.acquire().await.ok()?;
        connect_and_subscribe(&url, None).await.ok()?
    };
    let _ = tokio::time::timeout(Duration::from_secs(5), socket.next()).await;
    Some(socket)
}

async fn vanish(options: &Options) -> Result<Value> {
    let api = ApiClient::new(&options.url)?.with_bearer_token(options.token.as_deref());
    let pid = options
        .server_pid
        .ok_or_else(|| anyhow!("vanish needs --server-pid"))?;
    let url = ws_url(&options.url, options.token.as_deref());
    let tasks_before = metric(&api, "runtime_tasks").await?;
    let heap_before = metric(&api, "heap_in_use_bytes").await.ok();
    let rss_before = resident_kib(pid)?;
    let mut rounds = Vec::new();
    for round in 1..=options.rounds {
        let permits = Arc::new(Semaphore::new(CONNECT_CONCURRENCY));
        let handles: Vec<_> = (0..options.clients)
            .map(|_| tokio::spawn(vanishing_client(url.clone(), Arc::clone(&permits))))
            .collect();
        let mut sockets = Vec::new();
        for handle in handles {
            if let Ok(Some(socket)) = handle.await {
                sockets.push(socket);
            }
        }
        let connected = sockets.len();
        let clients_while_connected = metric(&api, "clients").await?;
        let rss_connected = resident_kib(pid)?;
        let heap_connected = metric(&api, "heap_in_use_bytes").await.ok();
        // Vanish: the sockets are dropped with no close frame (the kernel sends a FIN).
        let vanished_at = Instant::now();
        drop(sockets);
        let mut clients_left = clients_while_connected;
        while clients_left > 0.0 && vanished_at.elapsed() < NOTICE_TIMEOUT {
            tokio::time::sleep(Duration::from_millis(100)).await;
            clients_left = metric(&api, "clients").await?;
        }
        let noticed_seconds = vanished_at.elapsed().as_secs_f64();
        // The allocator returns freed pages lazily; a second lets it settle before reading.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rounds_entry = json!({
            "round": round,
            "connected": connected,
            "clientsWhileConnected": clients_while_connected,
            "rssConnectedKib": rss_connected,
            "heapConnectedBytes": heap_connected,
            "clientsAfter": clients_left,
            "noticedSeconds": noticed_seconds,
            "rssAfterKib": resident_kib(pid)?,
            "tasksAfter": metric(&api, "runtime_tasks").await?,
            "heapAfterBytes": metric(&api, "heap_in_use_bytes").await.ok(),
        });
        eprintln!("live_load vanish: {rounds_entry}");
        rounds.push(rounds_entry);
    }
    Ok(json!({
        "clients": options.clients,
        "rssBeforeKib": rss_before,
        "heapBeforeBytes": heap_before,
        "tasksBefore": tasks_before,
        "rounds": rounds,
    }))
}

// ---------------------------------------------------------------------------------------------
// hold
// ---------------------------------------------------------------------------------------------

async fn hold(options: &Options) -> Result<Value> {
    let url = ws_url(&options.url, options.token.as_deref());
    let mut socket = connect_and_subscribe(&url, None).await?;
    // The first message proves the subscription is live before the caller sends its signal.
    let first = tokio::time::timeout(Duration::from_secs(30), socket.next()).await;
    if !matches!(first, Ok(Some(Ok(_)))) {
        bail!("no message within 30 s of subscribing");
    }
    println!("subscribed");
    let started = Instant::now();
    let mut messages = 0_u64;
    while let Ok(Some(message)) = tokio::time::timeout(Duration::from_secs(60), socket.next()).await
    {
        match message {
            Ok(Message::Close(frame)) => {
                return Ok(json!({
                    "closeFrame": true,
                    "code": frame.as_ref().map(|f| u16::from(f.code)),
                    "reason": frame.as_ref().map(|f| f.reason.to_string()),
                    "messagesBefore": messages,
                    "secondsWaited": started.elapsed().as_secs_f64(),
                }));
            }
            Ok(Message::Text(text)) if text.starts_with("{\"type\":\"ping\"") => {
                let _ = socket.send(Message::text("{\"type\":\"pong\"}")).await;
                messages += 1;
            }
            Ok(_) => messages += 1,
            Err(error) => {
                return Ok(json!({
                    "closeFrame": false,
                    "error": error.to_string(),
                    "messagesBefore": messages,
                }))
            }
        }
    }
    Ok(
        json!({ "closeFrame": false, "error": "the connection ended without a close frame", "messagesBefore": messages }),
    )
}

// ---------------------------------------------------------------------------------------------
// soak
// ---------------------------------------------------------------------------------------------

/// What the soak's clients add to.
#[derive(Default)]
struct SoakTally {
    connects: AtomicU64,
    connect_failures: AtomicU64,
    reconnects: AtomicU64,
    /// Connections the server ended (or that failed) while the client meant to stay.
    dropped: AtomicU64,
    /// `lag` notices (the server skipped messages for a client whose queue was full).
    lag_notices: AtomicU64,
    skipped: AtomicU64,
    errors: AtomicU64,
    messages: AtomicU64,
    stop: AtomicBool,
}

#[derive(Clone, Copy, Debug)]
enum ClientKind {
    /// Reads everything, answers pings.
    Steady,
    /// Reads one message a second: its queue at the server fills, and it is told it lags.
    Slow,
    /// Leaves every 10–20 s (with a close frame or without) and comes back, catching up.
    Reconnecting,
}

/// The newest `timestamp` in a batch or event message, for catching up after a reconnect.
fn newest_timestamp(text: &str) -> Option<String> {
    let key = "\"timestamp\":\"";
    let start = text.rfind(key)? + key.len();
    let end = text[start..].find('"')?;
    Some(text[start..start + end].to_string())
}

async fn soak_client(index: usize, kind: ClientKind, url: String, tally: Arc<SoakTally>) {
    let mut last_timestamp: Option<String> = None;
    let mut session = 0_u64;
    while !tally.stop.load(Ordering::Relaxed) {
        let socket = connect_and_subscribe(&url, last_timestamp.as_deref()).await;
        let Ok(mut socket) = socket else {
            tally.connect_failures.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        tally.connects.fetch_add(1, Ordering::Relaxed);
        if session > 0 {
            tally.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        session += 1;
        // A reconnecting client's stay: 10 to 20 s, spread by its index and session.
        let stay =
            Duration::from_millis(10_000 + ((index as u64 * 7919 + session * 104_729) % 10_000));
        let joined = Instant::now();
        let leave_abruptly = (index as u64 + session) % 2 == 0;
        loop {
            if tally.stop.load(Ordering::Relaxed) {
                let _ = socket.close(None).await;
                return;
            }
            if matches!(kind, ClientKind::Reconnecting) && joined.elapsed() >= stay {
                if leave_abruptly {
                    drop(socket);
                } else {
                    let _ = socket.close(None).await;
                }
                break;
            }
            let next = tokio::time::timeout(Duration::from_millis(500), socket.next()).await;
            let message = match next {
                Err(_) => continue,
                Ok(None) | Ok(Some(Err(_))) => {
                    tally.dropped.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Ok(Some(Ok(message))) => message,
            };
            let Message::Text(text) = message else {
                if let Message::Close(_) = message {
                    tally.dropped.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                continue;
            };
            tally.messages.fetch_add(1, Ordering::Relaxed);
            if text.starts_with("{\"type\":\"ping\"") {
                let _ = socket.send(Message::text("{\"type\":\"pong\"}")).await;
            } else if let Some(rest) = text.strip_prefix("{\"type\":\"lag\",\"skipped\":") {
                tally.lag_notices.fetch_add(1, Ordering::Relaxed);
                let skipped: u64 = rest
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                tally.skipped.fetch_add(skipped, Ordering::Relaxed);
            } else if text.starts_with("{\"type\":\"error\"") {
                tally.errors.fetch_add(1, Ordering::Relaxed);
            } else if text.starts_with("{\"type\":\"batch\"")
                || text.starts_with("{\"type\":\"event\"")
            {
                if let Some(timestamp) = newest_timestamp(&text) {
                    last_timestamp = Some(timestamp);
                }
            }
            if matches!(kind, ClientKind::Slow) {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Status counts of the REST driver.
#[derive(Default, Debug)]
struct RestTally {
    ok: u64,
    client_errors: u64,
    server_errors: u64,
    failures: u64,
    statuses: std::collections::BTreeMap<u16, u64>,
}

impl RestTally {
    fn count(
        &mut self,
        outcome: Result<
            marketsim::live::api_client::ApiResponse,
            marketsim::live::api_client::ClientError,
        >,
    ) {
        match outcome {
            Ok(response) => {
                *self.statuses.entry(response.status).or_default() += 1;
                match response.status {
                    200..=299 => self.ok += 1,
                    400..=499 => self.client_errors += 1,
                    _ => self.server_errors += 1,
                }
            }
            Err(_) => self.failures += 1,
        }
    }
}

/// Ids from a listing (`{"scenarios":[{"id":…}]}`).
fn ids(listing: &Value, key: &str) -> Vec<String> {
    listing[key]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item["id"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

async fn soak(options: &Options) -> Result<Value> {
    let api = ApiClient::new(&options.url)?.with_bearer_token(options.token.as_deref());
    let pid = options
        .server_pid
        .ok_or_else(|| anyhow!("soak needs --server-pid"))?;
    let url = ws_url(&options.url, options.token.as_deref());
    let scenarios = ids(
        &api.get("/api/simulation/scenarios")
            .await?
            .json()
            .unwrap_or_default(),
        "scenarios",
    );
    let events = ids(
        &api.get("/api/simulation/event-library")
            .await?
            .json()
            .unwrap_or_default(),
        "events",
    );
    if scenarios.is_empty() || events.is_empty() {
        bail!("the server lists no scenarios or no events");
    }
    let tally = Arc::new(SoakTally::default());
    let clients: Vec<_> = (0..options.clients)
        .map(|index| {
            let kind = match index % 10 {
                0 | 1 => ClientKind::Slow,
                2 | 3 => ClientKind::Reconnecting,
                _ => ClientKind::Steady,
            };
            tokio::spawn(soak_client(index, kind, url.clone(), Arc::clone(&tally)))
        })
        .collect();

    let started = Instant::now();
    let length = Duration::from_secs_f64(options.seconds);
    let mut rest = RestTally::default();
    let mut samples = Vec::new();
    let mut next_sample = Instant::now();
    let mut next_command = Instant::now() + COMMAND_EVERY;
    let mut command_number = 0_usize;
    while started.elapsed() < length {
        if Instant::now() >= next_command {
            next_command += COMMAND_EVERY;
            command_number += 1;
            // A fixed rotation: activate, inject, read, stop, and a reset every 15th command.
            let scenario = &scenarios[command_number % scenarios.len()];
            let event = &events[command_number % events.len()];
            let outcome = match command_number % 5 {
                _ if command_number % 15 == 0 => {
                    api.post("/api/simulation/reset", &json!({})).await
                }
                0 => {
                    api.post(
                        "/api/simulation/scenario",
                        &json!({ "scenarioId": scenario, "duration": "2h" }),
                    )
                    .await
                }
                1 => {
                    api.post("/api/simulation/events", &json!({ "eventId": event }))
                        .await
                }
                2 => api.get("/api/simulation/history").await,
                3 => api.get("/api/dashboard/recommendations").await,
                _ => api.post("/api/simulation/stop", &json!({})).await,
            };
            rest.count(outcome);
        }
        if Instant::now() >= next_sample {
            next_sample += SAMPLE_EVERY;
            let state = state_json(&api).await.unwrap_or_default();
            let sample = json!({
                "seconds": started.elapsed().as_secs_f64().round(),
                "rssKib": resident_kib(pid).unwrap_or(0),
                "lagMs": state["lagMs"].as_f64(),
                "virtualNow": state["now"].as_str(),
                "clients": metric(&api, "clients").await.ok(),
                "tasks": metric(&api, "runtime_tasks").await.ok(),
                "heapBytes": metric(&api, "heap_in_use_bytes").await.ok(),
                "messages": tally.messages.load(Ordering::Relaxed),
            });
            if samples.len() % 12 == 0 {
                eprintln!("live_load soak: {sample}");
            }
            samples.push(sample);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tally.stop.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = tokio::time::timeout(Duration::from_secs(5), client).await;
    }
    let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
    Ok(json!({
        "clients": options.clients,
        "seconds": options.seconds,
        "connects": get(&tally.connects),
        "connectFailures": get(&tally.connect_failures),
        "reconnects": get(&tally.reconnects),
        "dropped": get(&tally.dropped),
        "lagNotices": get(&tally.lag_notices),
        "skippedMessages": get(&tally.skipped),
        "errorMessages": get(&tally.errors),
        "messages": get(&tally.messages),
        "rest": {
            "ok": rest.ok,
            "clientErrors": rest.client_errors,
            "serverErrors": rest.server_errors,
            "failures": rest.failures,
            "statuses": rest.statuses,
        },
        "samples": samples,
    }))
}

#[tokio::main]
async fn main() -> Result<()> {
    let options = parse_options()?;
    let report = match options.mode.as_str() {
        "vanish" => vanish(&options).await?,
        "hold" => hold(&options).await?,
        _ => soak(&options).await?,
    };
    println!("{report}");
    Ok(())
}
