//! The WebSocket hub: the registry of connected clients and the fan-out of runner frames to
//! them.
//!
//! - A client is an id, a [`Subscription`] (a 64-bit stream mask and named topics) and a
//!   bounded queue of `limits.client_queue` pre-serialized messages that its socket's writer
//!   drains. Registration is a [`ClientGuard`]: dropping it removes the client.
//! - Per frame, the events message is built once per distinct stream mask (the events'
//!   pre-rendered JSON concatenated into an `event` or `batch` message) and the same bytes are
//!   shared by every client with that mask, so fan-out cost does not grow with per-client
//!   serialization. Notices go, as the runner serialized them, to the clients holding their
//!   topic; `history_rewritten` goes to everyone.
//! - Sending is `try_send`: a full queue means the client lags. What does not fit is dropped
//!   and counted, and a `lag` message with the count goes out as soon as the queue has room.
//!   The hub never waits on a client, so neither does the runner.
//! - A bounded buffer of the last `limits.recent_events` events serves catch-up after a
//!   reconnect; a gap older than the buffer is answered with a pointer to the history API.
//! - At most `limits.max_connections` clients are registered; past that `/ws` answers 503.
//!
//! Replies to a client's own messages (subscribed, errors, catch-up) go through the same queue
//! under the same lock as frames, so a client sees them in order with the events: a catch-up
//! ends exactly where the live events it receives next begin.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, watch, Notify};
use tokio_util::sync::CancellationToken;

use super::frame::{Frame, FrameEvent, LiveState};
use super::metrics::Metrics;
use super::protocol::{self, ClientMessage, ProtocolError, Subscription, MASK_STREAMS};
use super::Limits;
use crate::market::Catalog;

/// How long the hub waits, after shutdown, for sockets to send their close frames and leave.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A client's number, unique for the life of the hub (it names the client in logs).
pub type ClientId = u64;

/// One registered client.
struct ClientSlot {
    address: IpAddr,
    subscription: Subscription,
    queue: mpsc::Sender<Utf8Bytes>,
    /// Messages dropped since the last `lag` message reached the queue.
    skipped: u64,
}

/// An event kept for catch-up.
struct RecentEvent {
    time_ms: u64,
    stream: u8,
    json: Arc<str>,
}

/// Everything behind the hub's lock. It is held only for in-memory work, never across an
/// `await`.
#[derive(Default)]
struct Registry {
    clients: BTreeMap<ClientId, ClientSlot>,
    /// Clients per address (only looked up, never iterated).
    per_address: HashMap<IpAddr, usize>,
    recent: VecDeque<RecentEvent>,
    /// The session's epoch, to turn a client's `lastTimestamp` into virtual time.
    epoch: Option<DateTime<Utc>>,
    /// Catch-up is complete for a `lastTimestamp` at or after this virtual time: the live start,
    /// or the time of the last event evicted from the buffer.
    covered_from_ms: Option<u64>,
}

/// Connected clients and their subscriptions.
pub struct Hub {
    pub catalog: Arc<Catalog>,
    pub limits: Arc<Limits>,
    pub metrics: Arc<Metrics>,
    registry: Mutex<Registry>,
    next_client_id: AtomicU64,
    /// Cancelled when the hub stops: every socket then sends its close frame.
    closing: CancellationToken,
    client_left: Notify,
}

/// Why a client could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    #[error("the server holds its limit of {limit} WebSocket connections; retry later")]
    Full { limit: usize },
    #[error("{address} holds the limit of {limit} WebSocket connections from one address (max_connections_per_address); close one first")]
    FullForAddress { address: IpAddr, limit: usize },
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// A registered client; dropping it removes the client from the hub.
pub struct ClientGuard {
    pub id: ClientId,
    hub: Arc<Hub>,
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.hub.remove(self.id);
    }
}

impl Hub {
    pub fn new(catalog: Arc<Catalog>, limits: Arc<Limits>, metrics: Arc<Metrics>) -> Hub {
        if catalog.streams.len() > MASK_STREAMS {
            tracing::warn!(
                streams = catalog.streams.len(),
                "WebSocket clients can subscribe to the first {MASK_STREAMS} streams only"
            );
        }
        Hub {
            catalog,
            limits,
            metrics,
            registry: Mutex::new(Registry::default()),
            next_client_id: AtomicU64::new(1),
            closing: CancellationToken::new(),
            client_left: Notify::new(),
        }
    }

    /// A poisoned lock only means another thread panicked mid-update of plain data; the
    /// registry stays usable, so the hub carries on rather than taking every client down.
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Connected clients.
    pub fn client_count(&self) -> usize {
        self.registry().clients.len()
    }

    /// Cancelled when the hub stops; sockets send their close frame then.
    pub fn closing(&self) -> CancellationToken {
        self.closing.clone()
    }

    /// Registers a client with an empty subscription; returns its guard and the receiving end
    /// of its queue. Refused past `limits.max_connections` and once the hub is closing.
    pub fn register(
        self: &Arc<Self>,
        address: IpAddr,
    ) -> Result<(ClientGuard, mpsc::Receiver<Utf8Bytes>), RegisterError> {
        if self.closing.is_cancelled() {
            return Err(RegisterError::ShuttingDown);
        }
        let (queue, receiver) = mpsc::channel(self.limits.client_queue.max(1));
        let id = self.next_client_id.fetch_add(1, Ordering::Relaxed);
        let count = {
            let mut registry = self.registry();
            if registry.clients.len() >= self.limits.max_connections {
                return Err(RegisterError::Full {
                    limit: self.limits.max_connections,
                });
            }
            let from_address = registry.per_address.entry(address).or_default();
            if *from_address >= self.limits.max_connections_per_address {
                return Err(RegisterError::FullForAddress {
                    address,
                    limit: self.limits.max_connections_per_address,
                });
            }
            *from_address += 1;
            registry.clients.insert(
                id,
                ClientSlot {
                    address,
                    subscription: Subscription::default(),
                    queue,
                    skipped: 0,
                },
            );
            registry.clients.len()
        };
        Metrics::set(&self.metrics.clients, count as u64);
        Ok((
            ClientGuard {
                id,
                hub: Arc::clone(self),
            },
            receiver,
        ))
    }

    fn remove(&self, id: ClientId) {
        let count = {
            let mut registry = self.registry();
            if let Some(slot) = registry.clients.remove(&id) {
                if let Some(count) = registry.per_address.get_mut(&slot.address) {
                    *count = count.saturating_sub(1);
                    if *count == 0 {
                        registry.per_address.remove(&slot.address);
                    }
                }
            }
            registry.clients.len()
        };
        Metrics::set(&self.metrics.clients, count as u64);
        self.client_left.notify_waiters();
    }

    /// Changes a client's subscription by `topics` (`change`: add or remove them) and queues the
    /// reply `kind` (`subscribed`, `unsubscribed`) with the topics it now has, then the
    /// catch-up from `catch_up_from` if asked — all under one lock, so no frame comes between —
    /// or an `error` for topics not understood.
    fn change_subscription(
        &self,
        id: ClientId,
        topics: &[String],
        kind: &str,
        change: fn(Subscription, Subscription) -> Subscription,
        catch_up_from: Option<DateTime<Utc>>,
    ) {
        let resolved = protocol::resolve_topics(&self.catalog, topics);
        let mut registry = self.registry();
        let resolved = match resolved {
            Ok(resolved) => resolved,
            Err(error) => return registry.send_error(id, &error, &self.metrics),
        };
        let Some(slot) = registry.clients.get_mut(&id) else {
            return;
        };
        slot.subscription = change(slot.subscription, resolved);
        let names = slot.subscription.topic_names(&self.catalog);
        let reply = protocol::subscription_message(kind, &names);
        deliver(slot, reply.into(), &self.metrics, id);
        if let Some(last_timestamp) = catch_up_from {
            registry.catch_up(id, last_timestamp, &self.metrics);
        }
    }

    /// Acts on a client's message: the reply (and any catch-up) is queued in order with the
    /// client's events.
    pub fn handle(&self, id: ClientId, message: ClientMessage) {
        match message {
            ClientMessage::Pong => {}
            ClientMessage::Subscribe {
                topics,
                last_timestamp,
            } => {
                self.change_subscription(
                    id,
                    &topics,
                    "subscribed",
                    Subscription::union,
                    last_timestamp,
                );
            }
            ClientMessage::Unsubscribe { topics } => {
                self.change_subscription(id, &topics, "unsubscribed", Subscription::without, None);
            }
            ClientMessage::Catchup { last_timestamp } => {
                self.registry().catch_up(id, last_timestamp, &self.metrics);
            }
        }
    }

    /// Answers a refused message with an `error` message.
    pub fn reject(&self, id: ClientId, error: &ProtocolError) {
        self.registry().send_error(id, error, &self.metrics);
    }

    /// Fans frames out to clients until `shutdown` is cancelled or the runner stops; then
    /// tells every socket to close (code 1001) and waits a moment for them to leave.
    pub async fn run(
        self: Arc<Self>,
        mut frames: mpsc::Receiver<Frame>,
        state: watch::Receiver<LiveState>,
        shutdown: CancellationToken,
    ) {
        {
            let state = state.borrow();
            let mut registry = self.registry();
            registry.epoch = DateTime::parse_from_rfc3339(&state.epoch)
                .ok()
                .map(|epoch| epoch.with_timezone(&Utc));
            registry.covered_from_ms = Some(state.virtual_ms);
        }
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                frame = frames.recv() => match frame {
                    Some(frame) => self.fan_out(&frame),
                    None => break,
                },
            }
        }
        self.closing.cancel();
        let deadline = tokio::time::Instant::now() + CLOSE_GRACE;
        loop {
            let left = self.client_left.notified();
            let remaining = self.client_count();
            if remaining == 0 {
                break;
            }
            if tokio::time::timeout_at(deadline, left).await.is_err() {
                tracing::warn!(remaining, "clients still connected after the close grace");
                break;
            }
        }
    }

    /// Remembers a frame's events and queues its messages for every client.
    pub fn fan_out(&self, frame: &Frame) {
        let mut registry = self.registry();
        registry.remember(&frame.events, self.limits.recent_events);
        // Built at most once per distinct mask per frame, then shared (a refcount per client).
        let mut events_by_mask: HashMap<u64, Option<Utf8Bytes>> = HashMap::new();
        let notices: Vec<(super::frame::Topic, Utf8Bytes)> = frame
            .notices
            .iter()
            .map(|notice| (notice.topic, Utf8Bytes::from(&*notice.json)))
            .collect();
        for (&id, slot) in registry.clients.iter_mut() {
            let subscription = slot.subscription;
            if subscription.stream_mask != 0 && !frame.events.is_empty() {
                let message = events_by_mask
                    .entry(subscription.stream_mask)
                    .or_insert_with(|| events_for(subscription, &frame.events));
                if let Some(message) = message {
                    deliver(slot, message.clone(), &self.metrics, id);
                }
            }
            for (topic, json) in &notices {
                if subscription.topics.wants(*topic) {
                    deliver(slot, json.clone(), &self.metrics, id);
                }
            }
        }
    }
}

/// The `event` or `batch` message of the frame's events in `subscription`'s streams.
fn events_for(subscription: Subscription, events: &[FrameEvent]) -> Option<Utf8Bytes> {
    protocol::events_message(
        events
            .iter()
            .filter(|event| subscription.has_stream(event.stream))
            .map(|event| &*event.json),
    )
    .map(Utf8Bytes::from)
}

/// Queues `message` for a client without waiting: first the pending `lag` message if there is
/// one, then the message; what does not fit is counted as skipped.
fn deliver(slot: &mut ClientSlot, message: Utf8Bytes, metrics: &Metrics, id: ClientId) {
    if slot.skipped > 0 {
        match slot
            .queue
            .try_send(protocol::lag_message(slot.skipped).into())
        {
            Ok(()) => slot.skipped = 0,
            Err(TrySendError::Full(_)) => {
                slot.skipped += 1;
                return;
            }
            Err(TrySendError::Closed(_)) => return,
        }
    }
    match slot.queue.try_send(message) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            if slot.skipped == 0 {
                Metrics::add(&metrics.clients_lagging, 1);
                tracing::debug!(client = id, "client lags; skipping what does not fit");
            }
            slot.skipped += 1;
        }
        // The socket is going away; its guard removes the slot.
        Err(TrySendError::Closed(_)) => {}
    }
}

impl Registry {
    fn remember(&mut self, events: &[FrameEvent], capacity: usize) {
        for event in events {
            self.recent.push_back(RecentEvent {
                time_ms: event.time_ms,
                stream: event.stream,
                json: Arc::clone(&event.json),
            });
        }
        while self.recent.len() > capacity {
            if let Some(evicted) = self.recent.pop_front() {
                let covered = self.covered_from_ms.unwrap_or(0).max(evicted.time_ms);
                self.covered_from_ms = Some(covered);
            }
        }
    }

    fn send_error(&mut self, id: ClientId, error: &ProtocolError, metrics: &Metrics) {
        if let Some(slot) = self.clients.get_mut(&id) {
            deliver(slot, error.to_message().into(), metrics, id);
        }
    }

    /// Queues the client's subscribed events after `last_timestamp`, or a pointer to the
    /// history API when the buffer does not reach back that far.
    fn catch_up(&mut self, id: ClientId, last_timestamp: DateTime<Utc>, metrics: &Metrics) {
        let last_ms = self
            .epoch
            .map(|epoch| (last_timestamp - epoch).num_milliseconds());
        let complete = match (last_ms, self.covered_from_ms) {
            (Some(last_ms), Some(covered_from_ms)) => last_ms >= covered_from_ms as i64,
            _ => false,
        };
        let Some(slot) = self.clients.get_mut(&id) else {
            return;
        };
        let message = match last_ms {
            Some(last_ms) if complete => {
                let subscription = slot.subscription;
                protocol::catchup_message(
                    self.recent
                        .iter()
                        .filter(|event| event.time_ms as i64 > last_ms)
                        .filter(|event| subscription.has_stream(event.stream))
                        .map(|event| &*event.json),
                )
            }
            _ => protocol::catchup_reload_message(),
        };
        deliver(slot, message.into(), metrics, id);
    }
}
