//! The WebSocket hub and protocol over real sockets: a live server on 127.0.0.1:0 and
//! tokio-tungstenite clients. Subscriptions by glob and named topic, errors that keep the
//! connection, pings and the silence timeout, catch-up, a lagging client beside a keeping-up
//! one, the connection limit, close frames on shutdown, and `marketsim ws-client`.
//!
//! Most tests share one server running on a runtime of its own (starting a server simulates
//! history and fits a baseline, which is too slow to repeat per test on a small machine); the
//! tests that need their own limits or shut their server down start one.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use futures_util::{SinkExt, StreamExt};
use marketsim::live::protocol::{parse_client_message, ClientMessage};
use marketsim::live::server::{start, RunningServer, ServeOptions};
use marketsim::live::{Limits, RunnerHandle};
use marketsim::session::Command;
use proptest::prelude::*;
use serde_json::Value;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>;

/// The bound on any single wait in these tests.
const WAIT: Duration = Duration::from_secs(20);

fn fixed_now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 15, 14, 0, 0)
        .single()
        .unwrap_or_else(|| panic!("a fixed time"))
}

fn options(limits: Limits) -> ServeOptions {
    ServeOptions {
        port: 0,
        history_ms: 6 * 3_600_000,
        speed: 3600.0,
        now: Some(fixed_now()),
        limits,
        ..ServeOptions::default()
    }
}

async fn start_server(limits: Limits) -> RunningServer {
    match tokio::time::timeout(Duration::from_secs(120), start(options(limits))).await {
        Ok(Ok(server)) => server,
        Ok(Err(error)) => panic!("the server did not start: {error}"),
        Err(_) => panic!("the server did not start within two minutes"),
    }
}

/// The server most tests share, on a runtime that lives as long as the test binary.
struct SharedServer {
    address: SocketAddr,
    runner: RunnerHandle,
}

fn shared_server() -> &'static SharedServer {
    static SHARED: OnceLock<SharedServer> = OnceLock::new();
    SHARED.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap_or_else(|e| panic!("a runtime: {e}"));
            runtime.block_on(async move {
                let server = start_server(Limits::default()).await;
                let _ = sender.send(SharedServer {
                    address: server.address,
                    runner: server.runner().clone(),
                });
                // Serve until the test binary exits.
                std::future::pending::<()>().await;
                drop(server);
            });
        });
        receiver
            .recv_timeout(Duration::from_secs(150))
            .unwrap_or_else(|e| panic!("the shared server did not start: {e}"))
    })
}

async fn connect(address: SocketAddr) -> Socket {
    let url = format!("ws://{address}/ws");
    match tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url.as_str())).await {
        Ok(Ok((socket, _))) => socket,
        Ok(Err(error)) => panic!("cannot connect to {url}: {error}"),
        Err(_) => panic!("connecting to {url} timed out"),
    }
}

async fn send(socket: &mut Socket, text: &str) {
    if let Err(error) = socket.send(Message::text(text)).await {
        panic!("sending {text}: {error}");
    }
}

/// The next message of the socket: a text message as JSON, or a close frame as
/// `{"close": code, "reason": …}`.
async fn next_message(socket: &mut Socket) -> Value {
    loop {
        let next = tokio::time::timeout(WAIT, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no message within {WAIT:?}"));
        match next {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(text.as_str())
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {}", text.as_str()))
            }
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((0, String::new()));
                return serde_json::json!({ "close": code, "reason": reason });
            }
            Some(Ok(_)) => continue,
            Some(Err(error)) => return serde_json::json!({ "closed": error.to_string() }),
            None => return serde_json::json!({ "closed": "end of stream" }),
        }
    }
}

/// The next message of one of `kinds`, skipping the others (pings, events).
async fn next_of(socket: &mut Socket, kinds: &[&str]) -> Value {
    loop {
        let message = next_message(socket).await;
        let kind = message["type"].as_str().unwrap_or_default();
        if kinds.contains(&kind) {
            return message;
        }
        assert!(
            message.get("close").is_none() && message.get("closed").is_none(),
            "the connection ended while waiting for {kinds:?}: {message}"
        );
    }
}

/// Skips messages until the connection ends; returns how (`{"close": code, …}` for a close
/// frame).
async fn next_close(socket: &mut Socket) -> Value {
    loop {
        let message = next_message(socket).await;
        if message.get("close").is_some() || message.get("closed").is_some() {
            return message;
        }
    }
}

/// The stream events of an `event`, `batch` or `catchup` message.
fn events_of(message: &Value) -> Vec<Value> {
    match message["type"].as_str() {
        Some("event") => vec![message["data"].clone()],
        Some("batch" | "catchup") => message["events"].as_array().cloned().unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn time_of(event: &Value) -> DateTime<Utc> {
    let text = event["timestamp"].as_str().unwrap_or_default();
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|e| panic!("timestamp {text}: {e}"))
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_glob_subscription_gets_only_its_streams_until_unsubscribed() {
    let server = shared_server();
    let mut socket = connect(server.address).await;
    send(
        &mut socket,
        r#"{"type":"subscribe","topics":["customer.*"]}"#,
    )
    .await;
    let subscribed = next_of(&mut socket, &["subscribed"]).await;
    let topics = subscribed["topics"].as_array().cloned().unwrap_or_default();
    assert!(topics.len() > 1, "{subscribed}");
    assert!(topics
        .iter()
        .all(|t| t.as_str().is_some_and(|t| t.starts_with("customer."))));
    let mut received = 0;
    while received < 20 {
        let message = next_of(&mut socket, &["event", "batch"]).await;
        let events = events_of(&message);
        if message["type"] == "batch" {
            assert!(events.len() > 1, "a batch of one: {message}");
        }
        for event in &events {
            let stream = event["stream"].as_str().unwrap_or_default();
            assert!(stream.starts_with("customer."), "{stream} arrived: {event}");
            assert!(event.get("timestamp").is_some() && event.get("data").is_some());
        }
        received += events.len();
    }
    send(
        &mut socket,
        r#"{"type":"unsubscribe","topics":["customer.*"]}"#,
    )
    .await;
    let unsubscribed = next_of(&mut socket, &["unsubscribed"]).await;
    assert_eq!(unsubscribed["topics"], serde_json::json!([]));
    // The reply is queued in order with the events, so nothing of the streams follows it.
    let quiet_until = tokio::time::Instant::now() + Duration::from_millis(600);
    while let Ok(next) = tokio::time::timeout_at(quiet_until, socket.next()).await {
        if let Some(Ok(Message::Text(text))) = next {
            let message: Value = serde_json::from_str(text.as_str()).unwrap_or_default();
            assert!(
                events_of(&message).is_empty(),
                "after unsubscribe: {message}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn named_topics_carry_the_runners_notices() {
    let server = shared_server();
    let mut watcher = connect(server.address).await;
    send(
        &mut watcher,
        r#"{"type":"subscribe","topics":["scenarios"]}"#,
    )
    .await;
    let subscribed = next_of(&mut watcher, &["subscribed"]).await;
    assert_eq!(subscribed["topics"], serde_json::json!(["scenarios"]));
    let command = Command::Activate {
        scenario: "exam-season-surge".to_string(),
        definition: None,
        intensity: None,
        duration: None,
        settlement: None,
        streams: None,
    };
    let reply = server.runner.command(command, None).await;
    assert!(reply.is_ok(), "{:?}", reply.err().map(|e| e.to_string()));
    // Background events have their own lifecycle notices on the same topic; ours follows.
    loop {
        let notice = next_of(&mut watcher, &["scenario", "event", "batch"]).await;
        assert_eq!(
            notice["type"], "scenario",
            "stream events arrived: {notice}"
        );
        if notice["scenario"] == "exam-season-surge" {
            assert_eq!(notice["kind"], "scenario", "{notice}");
            break;
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_messages_get_errors_and_the_connection_stays() {
    let server = shared_server();
    let mut socket = connect(server.address).await;
    let oversized = format!(
        r#"{{"type":"subscribe","topics":["{}"]}}"#,
        "x".repeat(Limits::default().max_client_message_bytes)
    );
    let mut answers = Vec::new();
    for text in [
        "not json",
        r#"{"type":"hello"}"#,
        r#"{"topics":["*"]}"#,
        r#"{"type":"subscribe","topics":"customer.*"}"#,
        r#"{"type":"subscribe","topics":["custmer.tutor.search"]}"#,
        r#"{"type":"subscribe","topics":["billing.*"]}"#,
        r#"{"type":"catchup","lastTimestamp":"noon"}"#,
        &oversized,
    ] {
        send(&mut socket, text).await;
        let error = next_of(&mut socket, &["error"]).await;
        answers.push(error);
    }
    insta::assert_json_snapshot!(answers);
    send(&mut socket, r#"{"type":"subscribe","topics":["timeline"]}"#).await;
    let subscribed = next_of(&mut socket, &["subscribed"]).await;
    assert_eq!(subscribed["topics"], serde_json::json!(["timeline"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn catch_up_replays_the_recent_buffer_after_a_timestamp() {
    let server = shared_server();
    let mut first = connect(server.address).await;
    send(&mut first, r#"{"type":"subscribe","topics":["*"]}"#).await;
    next_of(&mut first, &["subscribed"]).await;
    // At this speed the buffer holds well under a second of events, so on a loaded machine
    // the timestamp taken may already be gone when the second client asks: then the answer is
    // the reload pointer, and the test tries again with a fresher one.
    let mut second = connect(server.address).await;
    let mut attempts = 0;
    let (last_seen, catchup) = loop {
        attempts += 1;
        let events = events_of(&next_of(&mut first, &["batch"]).await);
        let last_seen = time_of(&events[events.len() / 2]);
        let catchup = serde_json::json!({
            "type": "catchup",
            "lastTimestamp": last_seen.to_rfc3339(),
        });
        if attempts == 1 {
            // The first time through `subscribe` itself carries the timestamp.
            let subscribe = serde_json::json!({
                "type": "subscribe",
                "topics": ["session.*"],
                "lastTimestamp": last_seen.to_rfc3339(),
            });
            send(&mut second, &subscribe.to_string()).await;
            next_of(&mut second, &["subscribed"]).await;
        } else {
            send(&mut second, &catchup.to_string()).await;
        }
        let answer = next_of(&mut second, &["catchup"]).await;
        if answer["complete"] == true || attempts == 5 {
            break (last_seen, answer);
        }
    };
    drop(first);
    assert_eq!(catchup["complete"], true, "{catchup}");
    let events = events_of(&catchup);
    assert!(!events.is_empty(), "nothing after {last_seen}");
    for event in &events {
        assert!(time_of(event) > last_seen, "{event}");
        let stream = event["stream"].as_str().unwrap_or_default();
        assert!(stream.starts_with("session."), "{event}");
    }

    // A gap from before the live part began is older than the buffer: reload from history.
    send(
        &mut second,
        r#"{"type":"catchup","lastTimestamp":"2025-01-15T00:00:00Z"}"#,
    )
    .await;
    let reload = next_of(&mut second, &["catchup"]).await;
    assert_eq!(
        reload,
        serde_json::json!({"type":"catchup","complete":false,"reload":"/api/simulation/history"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pings_arrive_a_silent_client_is_dropped_and_connections_are_limited() {
    let limits = Limits {
        ping_every_ms: 100,
        client_timeout_ms: 600,
        max_connections: 2,
        ..Limits::default()
    };
    let server = start_server(limits).await;
    let mut silent = connect(server.address).await;
    let mut answering = connect(server.address).await;
    // A third connection is refused before the upgrade, with HTTP 503.
    let url = format!("ws://{}/ws", server.address);
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 503);
        }
        Err(error) => panic!("refused another way: {error}"),
        Ok(_) => panic!("a third connection was accepted past the limit of 2"),
    }
    let started = tokio::time::Instant::now();
    let answering_task = tokio::spawn(async move {
        // Answer every ping for longer than the timeout; the connection must stay.
        let until = tokio::time::Instant::now() + Duration::from_millis(1500);
        let mut pings = 0;
        while tokio::time::Instant::now() < until {
            let ping = next_of(&mut answering, &["ping"]).await;
            assert_eq!(ping, serde_json::json!({"type":"ping"}));
            pings += 1;
            send(&mut answering, r#"{"type":"pong"}"#).await;
        }
        pings
    });
    assert_eq!(
        next_message(&mut silent).await,
        serde_json::json!({"type":"ping"})
    );
    let close = next_close(&mut silent).await;
    assert_eq!(close["close"], 1008, "{close}");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed < Duration::from_secs(5),
        "dropped after {elapsed:?}"
    );
    let pings = answering_task
        .await
        .unwrap_or_else(|e| panic!("the answering client: {e}"));
    assert!(pings >= 5, "{pings} pings in 1.5 s");
    // The silent client's slot is free again.
    let _third = connect(server.address).await;
    let _ = server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn one_address_one_chatty_client_and_a_burst_of_commands_each_meet_their_limit() {
    let limits = Limits {
        max_connections_per_address: 2,
        max_client_messages_per_second: 5,
        max_commands_per_minute: 3,
        ..Limits::default()
    };
    let server = start_server(limits).await;
    // Per address: the third connection from 127.0.0.1 is refused with 429 before the upgrade.
    let mut chatty = connect(server.address).await;
    let second = connect(server.address).await;
    let url = format!("ws://{}/ws", server.address);
    match tokio_tungstenite::connect_async(url.as_str()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 429);
        }
        Err(error) => panic!("refused another way: {error}"),
        Ok(_) => panic!("a third connection from one address was accepted past the limit of 2"),
    }
    drop(second);

    // Messages: a burst of 30 subscribes at 5 a second (burst 10) gets 10 answers and one
    // `error` naming the limit; the connection stays and answers again a second later.
    for _ in 0..30 {
        send(
            &mut chatty,
            r#"{"type":"subscribe","topics":["scenarios"]}"#,
        )
        .await;
    }
    let mut subscribed = 0;
    let mut limited = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    while tokio::time::Instant::now() < deadline {
        let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout(Duration::from_millis(300), chatty.next()).await
        else {
            continue;
        };
        let message: Value = serde_json::from_str(text.as_str()).unwrap_or(Value::Null);
        match message["type"].as_str() {
            Some("subscribed") => subscribed += 1,
            Some("error") => limited.push(message),
            _ => {}
        }
    }
    assert_eq!(subscribed, 10, "the burst allowance is twice the rate");
    assert_eq!(limited.len(), 1, "told once: {limited:?}");
    assert_eq!(limited[0]["limitPerSecond"], 5, "{}", limited[0]);
    send(&mut chatty, r#"{"type":"subscribe","topics":["timeline"]}"#).await;
    assert_eq!(
        next_of(&mut chatty, &["subscribed"]).await["type"],
        "subscribed"
    );

    // Commands: three resets a minute, the fourth refused with 429, Retry-After and the limit.
    let client = marketsim::live::api_client::ApiClient::local(server.address.port());
    for attempt in 1..=4 {
        let response = client
            .request("POST", "/api/simulation/reset", None)
            .await
            .unwrap_or_else(|e| panic!("reset {attempt}: {e}"));
        if attempt <= 3 {
            assert_eq!(response.status, 200, "reset {attempt}: {}", response.body);
        } else {
            assert_eq!(response.status, 429, "{}", response.body);
            let body = response.json().unwrap_or(Value::Null);
            assert_eq!(body["error"], "rate_limited", "{body}");
            assert!(
                body["message"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("max_commands_per_minute"),
                "{body}"
            );
        }
    }
    // Reads are not commands.
    let state = client
        .request("GET", "/api/simulation/state", None)
        .await
        .unwrap_or_else(|e| panic!("state: {e}"));
    assert_eq!(state.status, 200);
    let _ = server.shutdown().await;
}

/// Connects with a tiny receive buffer, so a client that does not read fills its TCP window
/// quickly and the server-side queue is what overflows.
async fn connect_with_small_window(address: SocketAddr) -> Socket {
    let socket = tokio::net::TcpSocket::new_v4().unwrap_or_else(|e| panic!("a socket: {e}"));
    socket
        .set_recv_buffer_size(4096)
        .unwrap_or_else(|e| panic!("a receive buffer: {e}"));
    let stream = socket
        .connect(address)
        .await
        .unwrap_or_else(|e| panic!("connecting: {e}"));
    let url = format!("ws://{address}/ws");
    match tokio_tungstenite::client_async(url.as_str(), MaybeTlsStream::Plain(stream)).await {
        Ok((socket, _)) => socket,
        Err(error) => panic!("the handshake failed: {error}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_that_does_not_read_lags_while_another_keeps_its_rate() {
    let limits = Limits {
        client_queue: 4,
        ..Limits::default()
    };
    let server = start_server(limits).await;
    let mut slow = connect_with_small_window(server.address).await;
    let mut fast = connect(server.address).await;
    for socket in [&mut slow, &mut fast] {
        send(socket, r#"{"type":"subscribe","topics":["*"]}"#).await;
    }
    next_of(&mut fast, &["subscribed"]).await;
    // The fast client reads for a while; the slow one reads nothing meanwhile. Only the
    // message type is looked at: parsing megabyte batches would make the test the slow part.
    let window = Duration::from_secs(4);
    let until = tokio::time::Instant::now() + window;
    let mut fast_batches = 0;
    let mut fast_lagged = false;
    while let Ok(next) = tokio::time::timeout_at(until, fast.next()).await {
        let Some(Ok(Message::Text(text))) = next else {
            panic!("the reading client's connection ended: {next:?}");
        };
        let text = text.as_str();
        if text.starts_with(r#"{"type":"batch""#) || text.starts_with(r#"{"type":"event""#) {
            fast_batches += 1;
        }
        fast_lagged |= text.starts_with(r#"{"type":"lag""#);
    }
    assert!(!fast_lagged, "the reading client lagged");
    // Frames come every 100 ms; a loaded machine may manage far fewer, but the reading client
    // keeps getting them while the other one's queue is full.
    assert!(fast_batches >= 4, "{fast_batches} messages in {window:?}");
    // Once the slow client reads, its queue drains and the next frame brings the lag notice.
    let lag = next_of(&mut slow, &["lag"]).await;
    assert!(lag["skipped"].as_u64().unwrap_or(0) > 0, "{lag}");
    let _ = server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn shutdown_sends_every_client_a_close_frame() {
    let server = start_server(Limits::default()).await;
    let mut clients = Vec::new();
    for topics in [r#"["*"]"#, r#"["scenarios"]"#] {
        let mut socket = connect(server.address).await;
        send(
            &mut socket,
            &format!(r#"{{"type":"subscribe","topics":{topics}}}"#),
        )
        .await;
        next_of(&mut socket, &["subscribed"]).await;
        clients.push(socket);
    }
    let shutdown = tokio::spawn(server.shutdown());
    for socket in &mut clients {
        let close = next_close(socket).await;
        assert_eq!(
            close,
            serde_json::json!({"close": u16::from(CloseCode::Away), "reason": "server shutting down"})
        );
    }
    let stopped = tokio::time::timeout(WAIT, shutdown)
        .await
        .unwrap_or_else(|_| panic!("shutdown took longer than {WAIT:?}"));
    assert!(matches!(stopped, Ok(Ok(None))), "the shutdown failed");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ws_client_command_prints_events_and_reports_connection_errors() {
    let server = shared_server();
    let url = format!("ws://{}/ws", server.address);
    let output = tokio::task::spawn_blocking(move || {
        crate::support::marketsim(&[
            "ws-client",
            &url,
            "--subscribe",
            "customer.*",
            "--count",
            "5",
            "--seconds",
            "30",
        ])
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let stdout = crate::support::stdout(&output);
    assert!(
        output.status.success(),
        "{}",
        crate::support::stderr(&output)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    for line in lines {
        let event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(event["stream"]
            .as_str()
            .is_some_and(|s| s.starts_with("customer.")));
    }

    let refused = tokio::task::spawn_blocking(|| {
        crate::support::marketsim(&["ws-client", "ws://127.0.0.1:1/ws", "--seconds", "5"])
    })
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(refused.status.code(), Some(2));
    let stderr = crate::support::stderr(&refused);
    assert!(
        stderr.contains("cannot connect to ws://127.0.0.1:1/ws"),
        "{stderr}"
    );
}

/// Any JSON value: huge and tiny numbers, unicode strings, and arrays and objects nested a few
/// levels, under a random `type`.
fn any_json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i64>().prop_map(|n| serde_json::json!(n)),
        any::<u64>().prop_map(|n| serde_json::json!(n)),
        any::<f64>()
            .prop_filter("JSON has no NaN or infinity", |x| x.is_finite())
            .prop_map(|x| serde_json::json!(x)),
        "\\PC{0,16}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map("\\PC{0,8}", inner, 0..6)
                .prop_map(|map| { serde_json::Value::Object(map.into_iter().collect()) }),
        ]
    })
}

/// Deep nesting, numbers past every integer type, and odd unicode: refused with an error
/// message or parsed, never a panic or a stack overflow (serde_json stops at 128 levels).
#[test]
fn hostile_client_messages_are_refused_with_a_message() {
    let deep_array = format!("{}{}", "[".repeat(8_000), "]".repeat(8_000));
    let deep_object = format!("{}1{}", "{\"type\":".repeat(1_000), "}".repeat(1_000));
    let huge_topic_list = format!(
        "{{\"type\":\"subscribe\",\"topics\":[{}]}}",
        vec!["\"*\""; 2_000].join(",")
    );
    for text in [
        deep_array.as_str(),
        deep_object.as_str(),
        huge_topic_list.as_str(),
        r#"{"type":"catchup","lastTimestamp":1e400}"#,
        r#"{"type":"subscribe","topics":["\u0000\ud83d\ude00\u202e"],"lastTimestamp":"+275760-09-13T00:00:00Z"}"#,
        r#"{"type":"subscribe","topics":123456789012345678901234567890}"#,
        r#"{"type":"\ud800"}"#,
    ] {
        match parse_client_message(text, 16 * 1024) {
            Ok(message) => assert!(
                matches!(message, ClientMessage::Subscribe { .. }),
                "{text:.80} parsed as {message:?}"
            ),
            Err(error) => assert!(!error.to_message().is_empty(), "{text:.80}"),
        }
    }
}

proptest! {
    /// Any JSON value under any `type` (a known one or not) parses or is refused with a
    /// message; never a panic.
    #[test]
    fn any_json_client_message_parses_or_is_refused(
        kind in prop_oneof![
            Just("subscribe".to_string()),
            Just("unsubscribe".to_string()),
            Just("pong".to_string()),
            Just("catchup".to_string()),
            "\\PC{0,10}",
        ],
        fields in proptest::collection::btree_map(
            prop_oneof![Just("topics".to_string()), Just("lastTimestamp".to_string()), "\\PC{0,8}"],
            any_json_value(),
            0..4,
        ),
    ) {
        let mut message = serde_json::Map::new();
        message.insert("type".to_string(), serde_json::json!(kind));
        message.extend(fields);
        let text = serde_json::Value::Object(message).to_string();
        if let Err(error) = parse_client_message(&text, 16 * 1024) {
            prop_assert!(!error.to_message().is_empty());
        }
    }

    /// Any text, JSON-looking or not, parses to a message or an error; never a panic.
    #[test]
    fn the_client_message_parser_is_total(text in ".{0,200}") {
        let _ = parse_client_message(&text, 1024);
    }

    #[test]
    fn json_client_messages_parse_or_are_refused(
        kind in prop_oneof![
            Just("subscribe".to_string()),
            Just("unsubscribe".to_string()),
            Just("pong".to_string()),
            Just("catchup".to_string()),
            "[a-z]{0,10}",
        ],
        topics in proptest::collection::vec(".{0,20}", 0..4),
        last_timestamp in proptest::option::of(".{0,30}"),
        topics_as_string in any::<bool>(),
    ) {
        let mut message = serde_json::json!({ "type": kind });
        message["topics"] = if topics_as_string {
            serde_json::json!(topics.join(","))
        } else {
            serde_json::json!(topics)
        };
        if let Some(last_timestamp) = last_timestamp {
            message["lastTimestamp"] = serde_json::json!(last_timestamp);
        }
        let text = message.to_string();
        match parse_client_message(&text, 16 * 1024) {
            Ok(_) => prop_assert!(["subscribe", "unsubscribe", "pong", "catchup"].contains(&kind.as_str())),
            Err(error) => prop_assert!(!error.to_message().is_empty()),
        }
        // Past the size limit, the same message is refused for its size.
        prop_assert!(parse_client_message(&text, text.len() - 1).is_err());
    }
}
