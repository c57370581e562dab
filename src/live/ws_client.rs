//! `marketsim ws-client`: a small WebSocket client for watching a live server from a terminal.
//! It subscribes, prints every stream event as a JSON line (or a compact table row), answers
//! pings, and stops after a number of events or seconds.

use std::io::Write;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

/// Where `marketsim serve` listens by default.
pub const DEFAULT_URL: &str = "ws://127.0.0.1:8080/ws";

/// What the client was asked for.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub url: String,
    /// Topics: stream names, globs (`customer.*`) or named topics (`scenarios`).
    pub topics: Vec<String>,
    /// Stop after this many stream events.
    pub count: Option<u64>,
    /// Stop after this many seconds.
    pub seconds: Option<f64>,
    /// A compact table (time, stream, normalized, flag) instead of JSON lines.
    pub table: bool,
    /// Sent as `Authorization: Bearer …` with the handshake (a server with `--read-token`).
    pub bearer_token: Option<String>,
}

/// How a session of the client went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientSummary {
    pub events: u64,
    pub notices: u64,
    /// Messages the server skipped because the client read too slowly.
    pub skipped: u64,
}

/// Why the client stopped early. Each is an exit code 2 for the command line.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {url}: {detail} (is `marketsim serve` running there?)")]
    Connect { url: String, detail: String },
    #[error("{url} refused the connection with {status}: the server was started with --read-token; pass its read (or admin) token with --token or MARKETSIM_READ_TOKEN")]
    Unauthorized { url: String, status: u16 },
    #[error("{url} is not a WebSocket address (ws://host:port/ws): {detail}")]
    BadUrl { url: String, detail: String },
    #[error("the token cannot be sent in an HTTP header (it holds a line break or another control character)")]
    BadToken,
    #[error("the server refused the subscription: {message}")]
    Refused { message: String },
    #[error("the connection failed: {detail}")]
    Connection { detail: String },
    #[error("--seconds must be a positive number of seconds, not {seconds}")]
    BadSeconds { seconds: f64 },
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}

/// The handshake request of `options.url`, with the bearer token when there is one.
fn handshake_request(
    options: &ClientOptions,
) -> Result<tokio_tungstenite::tungstenite::handshake::client::Request, ClientError> {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
    let bad_url = |detail: String| ClientError::BadUrl {
        url: options.url.clone(),
        detail,
    };
    let mut request = options
        .url
        .as_str()
        .into_client_request()
        .map_err(|error| bad_url(error.to_string()))?;
    if let Some(token) = options
        .bearer_token
        .as_deref()
        .map(str::trim)
        .filter(|token| !token.is_empty())
    {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| ClientError::BadToken)?;
        request.headers_mut().insert(
            tokio_tungstenite::tungstenite::http::header::AUTHORIZATION,
            value,
        );
    }
    Ok(request)
}

/// Connects, subscribes and prints events to `out` (notes go to standard error) until the
/// count or the time is reached, or the server closes the connection.
pub async fn run(
    options: &ClientOptions,
    out: &mut impl Write,
) -> Result<ClientSummary, ClientError> {
    let deadline = match options.seconds {
        Some(seconds) if seconds.is_finite() && seconds > 0.0 && seconds < 1e9 => {
            Some(tokio::time::Instant::now() + Duration::from_secs_f64(seconds))
        }
        Some(seconds) => return Err(ClientError::BadSeconds { seconds }),
        None => None,
    };
    let connecting = tokio_tungstenite::connect_async(handshake_request(options)?);
    let connected = match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, connecting)
            .await
            .map_err(|_| ClientError::Connect {
                url: options.url.clone(),
                detail: "timed out".to_string(),
            })?,
        None => connecting.await,
    };
    let (mut socket, _) = connected.map_err(|error| match error {
        tokio_tungstenite::tungstenite::Error::Http(response)
            if response.status().as_u16() == 401 =>
        {
            ClientError::Unauthorized {
                url: options.url.clone(),
                status: response.status().as_u16(),
            }
        }
        error => ClientError::Connect {
            url: options.url.clone(),
            detail: error.to_string(),
        },
    })?;
    let subscribe = serde_json::json!({ "type": "subscribe", "topics": options.topics });
    socket
        .send(Message::text(subscribe.to_string()))
        .await
        .map_err(connection_error)?;
    let mut summary = ClientSummary::default();
    let mut subscribed = false;
    if options.table {
        writeln!(
            out,
            "{:<24}  {:<36}  {:>10}  flag",
            "time", "stream", "normalized"
        )?;
    }
    loop {
        if options.count.is_some_and(|count| summary.events >= count) {
            break;
        }
        let next = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, socket.next()).await {
                Ok(next) => next,
                Err(_) => break,
            },
            None => socket.next().await,
        };
        let message = match next {
            None => break,
            Some(Err(error)) => return Err(connection_error(error)),
            Some(Ok(message)) => message,
        };
        let text = match message {
            Message::Text(text) => text,
            Message::Close(frame) => {
                if let Some(frame) = frame {
                    eprintln!("note: the server closed the connection: {}", frame.reason);
                }
                break;
            }
            _ => continue,
        };
        let Ok(value) = serde_json::from_str::<serde_json::Value>(text.as_str()) else {
            eprintln!("note: a message that is not JSON: {}", text.as_str());
            continue;
        };
        match value["type"].as_str().unwrap_or_default() {
            "ping" => socket
                .send(Message::text(r#"{"type":"pong"}"#))
                .await
                .map_err(connection_error)?,
            "subscribed" => {
                subscribed = true;
                let topics = value["topics"].as_array().map_or(0, Vec::len);
                eprintln!("subscribed to {topics} topics");
            }
            "error" => {
                let message = value["message"].as_str().unwrap_or_default().to_string();
                if !subscribed {
                    return Err(ClientError::Refused { message });
                }
                eprintln!("error from the server: {message}");
            }
            "lag" => {
                let skipped = value["skipped"].as_u64().unwrap_or(0);
                summary.skipped += skipped;
                eprintln!("note: the server skipped {skipped} messages (this client lags)");
            }
            "event" => print_events(
                std::slice::from_ref(&value["data"]),
                options,
                &mut summary,
                out,
            )?,
            "batch" | "catchup" => {
                let events = value["events"].as_array().cloned().unwrap_or_default();
                print_events(&events, options, &mut summary, out)?;
            }
            _ => {
                summary.notices += 1;
                if options.table {
                    let kind = value["type"].as_str().unwrap_or_default();
                    let time = value["timestamp"].as_str().unwrap_or_default();
                    writeln!(out, "{time:<24}  [{kind}] {value}")?;
                } else {
                    writeln!(out, "{value}")?;
                }
            }
        }
    }
    let _ = socket.close(None).await;
    out.flush()?;
    Ok(summary)
}

fn connection_error(error: tokio_tungstenite::tungstenite::Error) -> ClientError {
    ClientError::Connection {
        detail: error.to_string(),
    }
}

/// Prints events up to the requested count.
fn print_events(
    events: &[serde_json::Value],
    options: &ClientOptions,
    summary: &mut ClientSummary,
    out: &mut impl Write,
) -> Result<(), ClientError> {
    for event in events {
        if options.count.is_some_and(|count| summary.events >= count) {
            break;
        }
        summary.events += 1;
        if options.table {
            let normalized = event["normalizedValue"]
                .as_f64()
                .map_or_else(|| "-".to_string(), |value| format!("{value:.1}"));
            writeln!(
                out,
                "{:<24}  {:<36}  {:>10}  {}",
                event["timestamp"].as_str().unwrap_or_default(),
                event["stream"].as_str().unwrap_or_default(),
                normalized,
                event["anomalyFlag"].as_str().unwrap_or("-"),
            )?;
        } else {
            writeln!(out, "{event}")?;
        }
    }
    Ok(())
}
