//! The WebSocket endpoint `GET /ws`: the upgrade (refused with 503 past
//! `limits.max_connections`), and per socket a reader and a writer task raced with
//! `tokio::select!`, the first to end stopping the other.
//!
//! - The reader parses each message ([`protocol::parse_client_message`]) and hands it to the
//!   hub; a refused message gets an `error` message and the connection stays open.
//! - The writer drains the client's queue (filled by the hub), sends `{"type":"ping"}` every
//!   `limits.ping_every_ms`, and on hub shutdown sends a close frame (1001, "server shutting
//!   down").
//! - Liveness: a client from which nothing at all (no pong, no message, no WebSocket control
//!   frame) arrives for `limits.client_timeout_ms` is dropped with a close frame (1008) and
//!   counted in `clients_dropped`. Answering the pings is enough to stay.
//! - WebSocket frames larger than four times `limits.max_client_message_bytes` (at least
//!   64 KiB) end the connection in the WebSocket layer; smaller oversized messages are answered
//!   with an `error` naming the limit.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::hub::{ClientGuard, ClientId, Hub, RegisterError};
use super::metrics::Metrics;
use super::protocol::{self, ProtocolError};
use super::AppState;

/// Close code sent to every client when the server shuts down ("going away").
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// Close code sent to a client dropped for silence ("policy violation").
pub const CLOSE_SILENT: u16 = 1008;
/// How long the writer may take to send a final close frame once the reader has ended.
const CLOSE_WRITE_GRACE: Duration = Duration::from_secs(1);
/// The smallest frame limit of the WebSocket layer, whatever `max_client_message_bytes` is.
const MIN_FRAME_LIMIT_BYTES: usize = 64 * 1024;
/// Each socket's read buffer. The WebSocket layer's default (128 KiB) is zero-filled on the
/// first read, so every idle client cost that much resident memory (137 KB per client
/// measured by `cargo xtask bench live`); client messages are small (subscriptions, pongs),
/// and a larger one grows the buffer as it arrives.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// The `/ws` route.
pub fn router() -> Router<AppState> {
    Router::new().route("/ws", get(upgrade))
}

/// Registers the client before upgrading, so the connection limit holds without a race and a
/// refused client gets a plain HTTP 503 it can retry.
async fn upgrade(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let (guard, queue) = match state.hub.register(peer.ip()) {
        Ok(registered) => registered,
        Err(error) => {
            tracing::warn!(%error, "WebSocket connection refused");
            // One address over its share is told so (429); a full or closing server, 503.
            let status = match error {
                RegisterError::FullForAddress { .. } => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            return (status, [(header::RETRY_AFTER, "5")], error.to_string()).into_response();
        }
    };
    let frame_limit = state
        .limits
        .max_client_message_bytes
        .saturating_mul(4)
        .max(MIN_FRAME_LIMIT_BYTES);
    let span = tracing::info_span!("ws", client = guard.id);
    upgrade
        .read_buffer_size(READ_BUFFER_BYTES)
        .max_message_size(frame_limit)
        .max_frame_size(frame_limit)
        .on_upgrade(move |socket| serve_client(socket, guard, queue, state).instrument(span))
}

/// Why a socket's reader stopped.
#[derive(Debug, thiserror::Error)]
enum ReadEnd {
    /// The client sent a close frame or the stream ended.
    #[error("the client closed the connection")]
    ClientClosed,
    /// Nothing arrived for `client_timeout_ms`.
    #[error("nothing received for {timeout_ms} ms")]
    Silent { timeout_ms: u64 },
    /// The transport or the WebSocket layer failed.
    #[error("reading failed: {0}")]
    Failed(String),
}

/// Why a socket's writer stopped.
#[derive(Debug, thiserror::Error)]
enum WriteEnd {
    #[error("the server is shutting down")]
    ServerClosing,
    /// Told to stop by the reader's end.
    #[error("stopped after the reader")]
    Stopped,
    /// The hub dropped the client's queue.
    #[error("the hub dropped the client")]
    QueueClosed,
    #[error("writing failed: {0}")]
    Failed(String),
}

async fn serve_client(
    socket: WebSocket,
    guard: ClientGuard,
    queue: mpsc::Receiver<Utf8Bytes>,
    state: AppState,
) {
    let id = guard.id;
    let hub = std::sync::Arc::clone(&state.hub);
    tracing::info!(clients = hub.client_count(), "client connected");
    let (sink, stream) = socket.split();
    let (stop_writer, stop) = oneshot::channel();
    let span = tracing::Span::current();
    let mut writer = tokio::spawn(
        write_loop(
            sink,
            queue,
            stop,
            hub.closing(),
            Duration::from_millis(state.limits.ping_every_ms.max(1)),
            std::sync::Arc::clone(&state.metrics),
        )
        .instrument(span.clone()),
    );
    let mut reader = tokio::spawn(
        read_loop(
            stream,
            std::sync::Arc::clone(&hub),
            id,
            state.limits.max_client_message_bytes,
            state.limits.client_timeout_ms,
            state.limits.max_client_messages_per_second,
        )
        .instrument(span),
    );
    let reason = tokio::select! {
        written = &mut writer => {
            reader.abort();
            written.unwrap_or(WriteEnd::Failed("the writer panicked".into())).to_string()
        }
        read = &mut reader => {
            let read = read.unwrap_or(ReadEnd::Failed("the reader panicked".into()));
            let close = match &read {
                ReadEnd::Silent { timeout_ms } => {
                    Metrics::add(&state.metrics.clients_dropped, 1);
                    Some(CloseFrame {
                        code: CLOSE_SILENT,
                        reason: format!("nothing received for {timeout_ms} ms").into(),
                    })
                }
                ReadEnd::Failed(_) => {
                    Metrics::add(&state.metrics.clients_dropped, 1);
                    None
                }
                ReadEnd::ClientClosed => None,
            };
            // Let the writer say goodbye, bounded: a stuck socket must not hold the task.
            let _ = stop_writer.send(close);
            if tokio::time::timeout(CLOSE_WRITE_GRACE, &mut writer).await.is_err() {
                writer.abort();
            }
            read.to_string()
        }
    };
    drop(guard);
    tracing::info!(reason = %reason, clients = hub.client_count(), "client disconnected");
}

/// Reads client messages until the client leaves, fails, or stays silent too long.
async fn read_loop(
    mut stream: SplitStream<WebSocket>,
    hub: std::sync::Arc<Hub>,
    id: ClientId,
    max_client_message_bytes: usize,
    client_timeout_ms: u64,
    messages_per_second: u32,
) -> ReadEnd {
    let timeout = Duration::from_millis(client_timeout_ms);
    let mut rate = MessageRate::new(messages_per_second);
    loop {
        let next = match tokio::time::timeout(timeout, stream.next()).await {
            Err(_) => {
                return ReadEnd::Silent {
                    timeout_ms: client_timeout_ms,
                }
            }
            Ok(None) => return ReadEnd::ClientClosed,
            Ok(Some(Err(error))) => return ReadEnd::Failed(error.to_string()),
            Ok(Some(Ok(message))) => message,
        };
        if matches!(next, Message::Text(_) | Message::Binary(_)) {
            match rate.admit(Instant::now()) {
                Admission::Admitted => {}
                Admission::Dropped { tell } => {
                    if tell {
                        hub.reject(
                            id,
                            &ProtocolError::RateLimited {
                                per_second: messages_per_second,
                            },
                        );
                    }
                    continue;
                }
            }
        }
        match next {
            Message::Text(text) => {
                match protocol::parse_client_message(text.as_str(), max_client_message_bytes) {
                    Ok(message) => {
                        tracing::debug!(?message, "client message");
                        hub.handle(id, message);
                    }
                    Err(error) => {
                        tracing::debug!(%error, "client message refused");
                        hub.reject(id, &error);
                    }
                }
            }
            Message::Binary(bytes) => {
                let error = if bytes.len() > max_client_message_bytes {
                    ProtocolError::TooLarge {
                        bytes: bytes.len(),
                        limit: max_client_message_bytes,
                    }
                } else {
                    ProtocolError::Binary
                };
                hub.reject(id, &error);
            }
            // Control frames are signs of life; the WebSocket layer answers pings itself.
            Message::Ping(_) | Message::Pong(_) => {}
            Message::Close(_) => return ReadEnd::ClientClosed,
        }
    }
}

/// What the rate limit did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Admitted,
    /// Dropped; `tell`: the client has not been told in the last second.
    Dropped {
        tell: bool,
    },
}

/// A token bucket of a client's messages: `per_second` on average, twice that in a burst. Pure
/// (the caller passes the time), so its rule is tested without waiting.
struct MessageRate {
    per_second: f64,
    capacity: f64,
    tokens: f64,
    last: Option<Instant>,
    last_told: Option<Instant>,
}

impl MessageRate {
    fn new(per_second: u32) -> MessageRate {
        let per_second = f64::from(per_second.max(1));
        MessageRate {
            per_second,
            capacity: 2.0 * per_second,
            tokens: 2.0 * per_second,
            last: None,
            last_told: None,
        }
    }

    fn admit(&mut self, now: Instant) -> Admission {
        if let Some(last) = self.last {
            let refill = now.saturating_duration_since(last).as_secs_f64() * self.per_second;
            self.tokens = (self.tokens + refill).min(self.capacity);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return Admission::Admitted;
        }
        let tell = self
            .last_told
            .is_none_or(|told| now.saturating_duration_since(told) >= Duration::from_secs(1));
        if tell {
            self.last_told = Some(now);
        }
        Admission::Dropped { tell }
    }
}

/// Sends queued messages and pings; sends the close frame on shutdown or when told to.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut queue: mpsc::Receiver<Utf8Bytes>,
    mut stop: oneshot::Receiver<Option<CloseFrame>>,
    closing: CancellationToken,
    ping_every: Duration,
    metrics: std::sync::Arc<Metrics>,
) -> WriteEnd {
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let outgoing = tokio::select! {
            biased;
            _ = closing.cancelled() => {
                let close = CloseFrame {
                    code: CLOSE_GOING_AWAY,
                    reason: "server shutting down".into(),
                };
                let _ = tokio::time::timeout(CLOSE_WRITE_GRACE, sink.send(Message::Close(Some(close)))).await;
                return WriteEnd::ServerClosing;
            }
            close = &mut stop => {
                let close = close.unwrap_or(None);
                let _ = match close {
                    Some(close) => sink.send(Message::Close(Some(close))).await,
                    None => sink.close().await,
                };
                return WriteEnd::Stopped;
            }
            message = queue.recv() => match message {
                Some(message) => message,
                None => return WriteEnd::QueueClosed,
            },
            _ = ping.tick() => Utf8Bytes::from_static(protocol::PING_MESSAGE),
        };
        let bytes = outgoing.len() as u64;
        // A client that does not read blocks this send, never the hub: its queue fills and it
        // lags. Shutdown still ends the wait.
        let sent = tokio::select! {
            sent = sink.send(Message::Text(outgoing)) => sent,
            _ = closing.cancelled() => return WriteEnd::ServerClosing,
        };
        if let Err(error) = sent {
            return WriteEnd::Failed(error.to_string());
        }
        Metrics::add(&metrics.messages_sent, 1);
        Metrics::add(&metrics.bytes_sent, bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_twice_the_rate_passes_then_the_average_holds_and_the_client_is_told_once_a_second(
    ) {
        let start = Instant::now();
        let mut rate = MessageRate::new(10);
        let admitted = (0..25)
            .filter(|_| rate.admit(start) == Admission::Admitted)
            .count();
        assert_eq!(admitted, 20, "the burst is twice the rate");
        // Told once when it starts dropping, then not again within the second.
        let mut rate = MessageRate::new(10);
        let outcomes: Vec<_> = (0..23).map(|_| rate.admit(start)).collect();
        assert_eq!(outcomes[20], Admission::Dropped { tell: true });
        assert_eq!(outcomes[22], Admission::Dropped { tell: false });
        // A second later ten more are allowed (the refill), and the client is told again.
        let later = start + Duration::from_secs(1);
        let admitted = (0..10)
            .filter(|_| rate.admit(later) == Admission::Admitted)
            .count();
        assert_eq!(admitted, 10);
        assert_eq!(rate.admit(later), Admission::Dropped { tell: true });
    }
}
