//! Live mode, `marketsim serve`: the same session as a headless run, paced to the wall clock on
//! its own thread, behind a REST API and a WebSocket hub. The only layer that knows tokio, axum
//! and HTTP.
//!
//! - [`runner`]: an OS thread owns the [`Session`](crate::session::Session); every frame it
//!   advances the session to the virtual time the wall clock stands for
//!   ([`PaceSchedule`](crate::engine::PaceSchedule)), publishes a [`Frame`] to the hub and the
//!   latest [`LiveState`] on a watch channel, and answers requests sent over a channel with a
//!   reply ([`RunnerHandle`]). It never waits on a client.
//! - [`hub`]: fan-out of frames to WebSocket clients: subscriptions as stream masks and topics,
//!   one serialization per distinct subscription, bounded client queues, a recent buffer for
//!   catch-up.
//! - [`ws`]: the WebSocket endpoint (`/ws`); [`protocol`]: its messages and topics;
//!   [`ws_client`]: the `marketsim ws-client` tool.
//! - [`api`]: REST under `/api/simulation/*` and `/api/dashboard/*`, `/healthz`, `/metrics`,
//!   `/api/openapi.json`.
//! - [`api_client`]: a minimal HTTP/1.1 client of that API (`marketsim api`, tests).
//! - [`server`]: start-up (history, baseline, runner), the router, graceful shutdown and the
//!   run directory written with `--out`.
//!
//! The server has no model logic: it issues commands to the session and publishes what the
//! session returns.

pub mod access;
pub mod api;
pub mod api_client;
pub mod frame;
pub mod hub;
pub mod metrics;
pub mod pages;
pub mod protocol;
pub mod runner;
pub mod server;
pub mod ws;
pub mod ws_client;

use std::sync::Arc;

pub use frame::{Frame, LiveState};
pub use metrics::Metrics;
pub use runner::RunnerHandle;

/// What every handler shares: the runner, the hub, the latest state, the metrics.
#[derive(Clone)]
pub struct AppState {
    pub runner: RunnerHandle,
    pub hub: Arc<hub::Hub>,
    pub state: tokio::sync::watch::Receiver<LiveState>,
    pub metrics: Arc<Metrics>,
    pub limits: Arc<Limits>,
    /// Library scenarios and events (static for a session), for listings.
    pub library: Arc<crate::scenario::definition::Library>,
    pub catalog: Arc<crate::market::Catalog>,
    /// Who may change the simulation (the admin token, when one is set).
    pub access: Arc<access::AccessPolicy>,
    /// When the commands of the last minute were accepted (`limits.max_commands_per_minute`).
    pub command_times: Arc<std::sync::Mutex<std::collections::VecDeque<std::time::Instant>>>,
}

/// The documented limits of the live server.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest request body, in bytes (413 past it).
    pub max_body_bytes: usize,
    /// Most WebSocket connections at once.
    pub max_connections: usize,
    /// Most WebSocket connections at once from one IP address (429 past it), so one host cannot
    /// take every slot.
    pub max_connections_per_address: usize,
    /// Messages a WebSocket client may send a second on average (twice that in a burst); past
    /// it a message is dropped and the client told so, at most once a second.
    pub max_client_messages_per_second: u32,
    /// Requests that change the session (activate, stop, reset, inject, take action) the server
    /// accepts a minute, from all clients together (429 past it): each may re-simulate days
    /// when backdated.
    pub max_commands_per_minute: usize,
    /// Messages a client's queue holds before it is told it lags and skips ahead.
    pub client_queue: usize,
    /// How long a silent client is kept (no pong, no message), in milliseconds.
    pub client_timeout_ms: u64,
    /// How often the server pings, in milliseconds.
    pub ping_every_ms: u64,
    /// Events kept for catch-up after a reconnect.
    pub recent_events: usize,
    /// Largest WebSocket message a client may send, in bytes.
    pub max_client_message_bytes: usize,
    /// Longest history range one request may ask for, in days.
    pub max_history_days: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 * 1024,
            max_connections: 10_000,
            max_connections_per_address: 256,
            max_client_messages_per_second: 20,
            max_commands_per_minute: 120,
            client_queue: 256,
            client_timeout_ms: 30_000,
            ping_every_ms: 10_000,
            recent_events: 50_000,
            max_client_message_bytes: 16 * 1024,
            max_history_days: 31,
        }
    }
}
