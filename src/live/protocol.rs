//! The WebSocket protocol of `/ws`: what a client may send ([`ClientMessage`], parsed by
//! [`parse_client_message`] into a message or a [`ProtocolError`], never a panic), how topics
//! become a [`Subscription`] (a 64-bit stream mask plus named topics), and the server's messages,
//! built as JSON text once so the hub can share the same bytes between clients.
//!
//! Client → server:
//! - `{"type":"subscribe","topics":["customer.*","scenarios"],"lastTimestamp":"…"?}`
//! - `{"type":"unsubscribe","topics":[…]}`
//! - `{"type":"pong"}`
//! - `{"type":"catchup","lastTimestamp":"2025-01-15T14:30:00Z"}`
//!
//! Server → client: `subscribed` / `unsubscribed` (the resulting topics), `event`, `batch`,
//! `catchup`, `ping`, `lag`, `error`, and the runner's notices passed through as they are
//! (`recommendation`, `anomaly`, `scenario`, `timeline`, `history_rewritten`).

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::frame::Topic;
use crate::diagnostics::nearest;
use crate::market::Catalog;

/// Streams a mask can address: one bit per catalog index.
pub const MASK_STREAMS: usize = 64;
/// Topics one subscribe or unsubscribe may name (the message size limit bounds them too).
pub const MAX_TOPICS_PER_MESSAGE: usize = 256;
/// Where a client whose gap is older than the recent buffer reloads from.
pub const HISTORY_PATH: &str = "/api/simulation/history";
/// The server's heartbeat.
pub const PING_MESSAGE: &str = r#"{"type":"ping"}"#;
/// The client message types, for error messages.
const CLIENT_MESSAGE_TYPES: [&str; 4] = ["subscribe", "unsubscribe", "pong", "catchup"];

/// A message a client sent, validated.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientMessage {
    /// Add topics; with `last_timestamp`, also catch up on the events after it.
    Subscribe {
        topics: Vec<String>,
        last_timestamp: Option<DateTime<Utc>>,
    },
    /// Remove topics.
    Unsubscribe { topics: Vec<String> },
    /// The answer to a ping (any message counts as a sign of life; this one says only that).
    Pong,
    /// The subscribed events after `last_timestamp`, from the recent buffer.
    Catchup { last_timestamp: DateTime<Utc> },
}

/// Why a client message was refused. Every variant is answered with an `error` message and the
/// connection stays open.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProtocolError {
    /// Longer than `limits.max_client_message_bytes`.
    #[error("the message is {bytes} bytes; the limit is {limit} bytes")]
    TooLarge { bytes: usize, limit: usize },
    /// Binary frames carry nothing in this protocol.
    #[error("binary messages are not part of the protocol; send JSON text")]
    Binary,
    /// Not JSON at all.
    #[error("the message is not JSON ({detail}); send e.g. {{\"type\":\"subscribe\",\"topics\":[\"customer.*\"]}}")]
    NotJson { detail: String },
    /// JSON, but not an object with a string `type`.
    #[error("a message is a JSON object with a string `type`, one of: {}", CLIENT_MESSAGE_TYPES.join(", "))]
    MissingType,
    /// A `type` this server does not know.
    #[error("unknown message type `{found}`; the types are: {}", CLIENT_MESSAGE_TYPES.join(", "))]
    UnknownType { found: String },
    /// A known type with fields of the wrong shape.
    #[error("a `{kind}` message {detail}")]
    BadFields { kind: &'static str, detail: String },
    /// `lastTimestamp` is not an RFC 3339 time.
    #[error(
        "lastTimestamp `{text}` is not an ISO 8601 time with a zone, e.g. 2025-01-15T14:30:00Z"
    )]
    BadTimestamp { text: String },
    /// A topic that names no stream and no named topic.
    #[error(
        "topic `{topic}` matches no stream or named topic{}",
        close_names_hint(close)
    )]
    UnknownTopic { topic: String, close: Vec<String> },
    /// More messages than `limits.max_client_messages_per_second` allows; the message was dropped.
    #[error("too many messages: at most {per_second} a second on average (max_client_messages_per_second); messages past it are dropped")]
    RateLimited { per_second: u32 },
    /// A topic whose streams all lie past the first [`MASK_STREAMS`] of the catalog.
    #[error("topic `{topic}` matches only streams past the first {MASK_STREAMS} of the catalog, which the hub cannot route")]
    UnroutableTopic { topic: String },
}

fn close_names_hint(close: &[String]) -> String {
    if close.is_empty() {
        String::new()
    } else {
        format!("; close names: {}", close.join(", "))
    }
}

impl ProtocolError {
    /// The `error` message: `message` always, plus the fields a client can act on.
    pub fn to_message(&self) -> String {
        let mut message = serde_json::json!({ "type": "error", "message": self.to_string() });
        match self {
            ProtocolError::TooLarge { limit, .. } => {
                message["limitBytes"] = serde_json::json!(limit);
            }
            ProtocolError::UnknownTopic { topic, close } => {
                message["topic"] = serde_json::json!(topic);
                message["close"] = serde_json::json!(close);
            }
            ProtocolError::UnroutableTopic { topic } => {
                message["topic"] = serde_json::json!(topic);
            }
            ProtocolError::RateLimited { per_second } => {
                message["limitPerSecond"] = serde_json::json!(per_second);
            }
            _ => {}
        }
        message.to_string()
    }
}

/// The raw shape of `subscribe` and `unsubscribe` (unknown fields are ignored, so a newer
/// client's extras do not break an older server).
#[derive(Deserialize)]
struct RawTopics {
    topics: Vec<String>,
    #[serde(default, rename = "lastTimestamp")]
    last_timestamp: Option<String>,
}

#[derive(Deserialize)]
struct RawCatchup {
    #[serde(rename = "lastTimestamp")]
    last_timestamp: String,
}

/// Parses one text message from a client. Total: any input gives a message or an error.
pub fn parse_client_message(
    text: &str,
    max_client_message_bytes: usize,
) -> Result<ClientMessage, ProtocolError> {
    if text.len() > max_client_message_bytes {
        return Err(ProtocolError::TooLarge {
            bytes: text.len(),
            limit: max_client_message_bytes,
        });
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|error| ProtocolError::NotJson {
            detail: error.to_string(),
        })?;
    let Some(kind) = value.get("type").and_then(|kind| kind.as_str()) else {
        return Err(ProtocolError::MissingType);
    };
    match kind {
        "subscribe" => {
            let raw = topics_of("subscribe", &value)?;
            let last_timestamp = raw.last_timestamp.as_deref().map(parse_time).transpose()?;
            Ok(ClientMessage::Subscribe {
                topics: raw.topics,
                last_timestamp,
            })
        }
        "unsubscribe" => Ok(ClientMessage::Unsubscribe {
            topics: topics_of("unsubscribe", &value)?.topics,
        }),
        "pong" => Ok(ClientMessage::Pong),
        "catchup" => {
            let raw: RawCatchup =
                serde_json::from_value(value.clone()).map_err(|_| ProtocolError::BadFields {
                    kind: "catchup",
                    detail: "needs `lastTimestamp`, an ISO 8601 time".to_string(),
                })?;
            Ok(ClientMessage::Catchup {
                last_timestamp: parse_time(&raw.last_timestamp)?,
            })
        }
        other => Err(ProtocolError::UnknownType {
            found: other.chars().take(64).collect(),
        }),
    }
}

fn topics_of(kind: &'static str, value: &serde_json::Value) -> Result<RawTopics, ProtocolError> {
    let raw: RawTopics =
        serde_json::from_value(value.clone()).map_err(|_| ProtocolError::BadFields {
            kind,
            detail: "needs `topics`, a list of stream names, globs (`customer.*`) or named \
                     topics (anomalies, recommendations, scenarios, timeline)"
                .to_string(),
        })?;
    if raw.topics.is_empty() {
        return Err(ProtocolError::BadFields {
            kind,
            detail: "needs at least one topic".to_string(),
        });
    }
    if raw.topics.len() > MAX_TOPICS_PER_MESSAGE {
        return Err(ProtocolError::BadFields {
            kind,
            detail: format!(
                "names {} topics; the limit is {MAX_TOPICS_PER_MESSAGE}",
                raw.topics.len()
            ),
        });
    }
    Ok(raw)
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, ProtocolError> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|_| ProtocolError::BadTimestamp {
            text: text.chars().take(64).collect(),
        })
}

/// The named topics a client holds, one bit per [`Topic`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct TopicSet(u8);

impl TopicSet {
    fn bit(topic: Topic) -> u8 {
        match topic {
            Topic::Anomalies => 1,
            Topic::Recommendations => 2,
            Topic::Scenarios => 4,
            Topic::Timeline => 8,
            Topic::History => 16,
        }
    }

    pub fn with(self, topic: Topic) -> TopicSet {
        TopicSet(self.0 | TopicSet::bit(topic))
    }

    /// Whether a notice of `topic` goes to this client; history rewrites go to everyone.
    pub fn wants(self, topic: Topic) -> bool {
        topic == Topic::History || self.0 & TopicSet::bit(topic) != 0
    }
}

/// What a client receives: the streams of `stream_mask` (bit i = catalog stream i) and the
/// notices of `topics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Subscription {
    pub stream_mask: u64,
    pub topics: TopicSet,
}

impl Subscription {
    pub fn union(self, other: Subscription) -> Subscription {
        Subscription {
            stream_mask: self.stream_mask | other.stream_mask,
            topics: TopicSet(self.topics.0 | other.topics.0),
        }
    }

    pub fn without(self, other: Subscription) -> Subscription {
        Subscription {
            stream_mask: self.stream_mask & !other.stream_mask,
            topics: TopicSet(self.topics.0 & !other.topics.0),
        }
    }

    pub fn has_stream(self, stream: u8) -> bool {
        (stream as usize) < MASK_STREAMS && self.stream_mask & (1u64 << stream) != 0
    }

    /// The resulting topic list a client is shown: stream names in catalog order, then the
    /// named topics.
    pub fn topic_names(self, catalog: &Catalog) -> Vec<String> {
        let mut names: Vec<String> = catalog
            .streams
            .iter()
            .enumerate()
            .take(MASK_STREAMS)
            .filter(|(index, _)| self.stream_mask & (1u64 << index) != 0)
            .map(|(_, stream)| stream.name.clone())
            .collect();
        names.extend(
            Topic::NAMED
                .iter()
                .filter(|(_, topic)| self.topics.0 & TopicSet::bit(*topic) != 0)
                .map(|(name, _)| name.to_string()),
        );
        names
    }
}

/// Resolves topics (stream names, globs with `*`, named topics) against the catalog. Every
/// topic must match something, so a typo is an error rather than a silent empty subscription.
pub fn resolve_topics(catalog: &Catalog, topics: &[String]) -> Result<Subscription, ProtocolError> {
    let mut subscription = Subscription::default();
    for pattern in topics {
        if let Some(topic) = Topic::parse(pattern) {
            subscription.topics = subscription.topics.with(topic);
            continue;
        }
        let mut matched_any = false;
        let mut mask = 0u64;
        for (index, stream) in catalog.streams.iter().enumerate() {
            if crate::scenario::definition::glob_matches(pattern, &stream.name) {
                matched_any = true;
                if index < MASK_STREAMS {
                    mask |= 1u64 << index;
                }
            }
        }
        if !matched_any {
            return Err(ProtocolError::UnknownTopic {
                topic: pattern.chars().take(200).collect(),
                close: close_names(catalog, pattern),
            });
        }
        if mask == 0 {
            return Err(ProtocolError::UnroutableTopic {
                topic: pattern.clone(),
            });
        }
        subscription.stream_mask |= mask;
    }
    Ok(subscription)
}

/// Up to five names near `pattern`: a typo's correction first, then names sharing its literal
/// prefix, then the domain globs (`customer.*`) so a client always sees what exists.
fn close_names(catalog: &Catalog, pattern: &str) -> Vec<String> {
    let mut candidates: Vec<String> = catalog.stream_names().map(str::to_string).collect();
    candidates.extend(Topic::NAMED.iter().map(|(name, _)| name.to_string()));
    let mut domains: Vec<String> = catalog
        .stream_names()
        .filter_map(|name| name.split('.').next())
        .map(|domain| format!("{domain}.*"))
        .collect();
    domains.dedup();
    candidates.extend(domains.iter().cloned());
    let mut close = Vec::new();
    if let Some(nearest) = nearest(pattern, candidates.iter().map(String::as_str)) {
        close.push(nearest.to_string());
    }
    let prefix: String = pattern.split('*').next().unwrap_or_default().to_string();
    let literal_prefix = prefix.split('.').next().unwrap_or_default();
    if !literal_prefix.is_empty() {
        for name in catalog.stream_names() {
            if name.starts_with(literal_prefix) && !close.iter().any(|c| c == name) {
                close.push(name.to_string());
            }
        }
    }
    for domain in domains {
        if close.len() >= 5 {
            break;
        }
        if !close.contains(&domain) {
            close.push(domain);
        }
    }
    close.truncate(5);
    close
}

/// `{"type":"subscribed"|"unsubscribed","topics":[…]}`.
pub fn subscription_message(kind: &str, topics: &[String]) -> String {
    serde_json::json!({ "type": kind, "topics": topics }).to_string()
}

/// One event (already in the `StreamEvent` shape) as an `event` message, several as a `batch`;
/// `None` for none. The events' JSON is concatenated, not re-serialized.
pub fn events_message<'a>(events: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let events: Vec<&str> = events.into_iter().collect();
    match events.as_slice() {
        [] => None,
        [only] => Some(format!(r#"{{"type":"event","data":{only}}}"#)),
        several => Some(array_message(r#"{"type":"batch","events":["#, several)),
    }
}

/// The events after a client's `lastTimestamp`: `{"type":"catchup","complete":true,"events":[…]}`.
pub fn catchup_message<'a>(events: impl IntoIterator<Item = &'a str>) -> String {
    let events: Vec<&str> = events.into_iter().collect();
    array_message(r#"{"type":"catchup","complete":true,"events":["#, &events)
}

/// The gap is older than the recent buffer: the client reloads buckets from the history API.
pub fn catchup_reload_message() -> String {
    serde_json::json!({ "type": "catchup", "complete": false, "reload": HISTORY_PATH }).to_string()
}

/// `skipped` messages did not fit the client's queue and were dropped.
pub fn lag_message(skipped: u64) -> String {
    format!(r#"{{"type":"lag","skipped":{skipped}}}"#)
}

fn array_message(head: &str, items: &[&str]) -> String {
    let length = head.len() + 2 + items.iter().map(|item| item.len() + 1).sum::<usize>();
    let mut message = String::with_capacity(length);
    message.push_str(head);
    for (index, item) in items.iter().enumerate() {
        if index > 0 {
            message.push(',');
        }
        message.push_str(item);
    }
    message.push_str("]}");
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 16 * 1024;

    fn catalog() -> Catalog {
        Catalog::embedded().unwrap_or_else(|error| panic!("embedded catalog: {error}"))
    }

    fn error_of(text: &str) -> String {
        match parse_client_message(text, LIMIT) {
            Ok(message) => panic!("{text} parsed as {message:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn client_messages_parse() {
        assert_eq!(
            parse_client_message(r#"{"type":"subscribe","topics":["customer.*"]}"#, LIMIT),
            Ok(ClientMessage::Subscribe {
                topics: vec!["customer.*".to_string()],
                last_timestamp: None
            })
        );
        assert_eq!(
            parse_client_message(r#"{"type":"pong","extra":1}"#, LIMIT),
            Ok(ClientMessage::Pong)
        );
        let Ok(ClientMessage::Catchup { last_timestamp }) = parse_client_message(
            r#"{"type":"catchup","lastTimestamp":"2025-01-15T14:30:00Z"}"#,
            LIMIT,
        ) else {
            panic!("catchup did not parse");
        };
        assert_eq!(last_timestamp.to_rfc3339(), "2025-01-15T14:30:00+00:00");
    }

    #[test]
    fn refusals_say_what_is_expected() {
        insta::assert_snapshot!(
            [
                "not json",
                "[1,2]",
                r#"{"type":"hello"}"#,
                r#"{"type":"subscribe"}"#,
                r#"{"type":"subscribe","topics":[]}"#,
                r#"{"type":"catchup","lastTimestamp":"yesterday"}"#,
                r#"{"type":"catchup"}"#,
            ]
            .map(error_of)
            .join("\n"),
            @r#"
        the message is not JSON (expected ident at line 1 column 2); send e.g. {"type":"subscribe","topics":["customer.*"]}
        a message is a JSON object with a string `type`, one of: subscribe, unsubscribe, pong, catchup
        unknown message type `hello`; the types are: subscribe, unsubscribe, pong, catchup
        a `subscribe` message needs `topics`, a list of stream names, globs (`customer.*`) or named topics (anomalies, recommendations, scenarios, timeline)
        a `subscribe` message needs at least one topic
        lastTimestamp `yesterday` is not an ISO 8601 time with a zone, e.g. 2025-01-15T14:30:00Z
        a `catchup` message needs `lastTimestamp`, an ISO 8601 time
        "#
        );
        assert_eq!(
            error_of(&"x".repeat(LIMIT + 1)),
            format!(
                "the message is {} bytes; the limit is {LIMIT} bytes",
                LIMIT + 1
            )
        );
    }

    #[test]
    fn topics_resolve_to_masks() {
        let catalog = catalog();
        let all =
            resolve_topics(&catalog, &["*".to_string()]).unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(
            all.stream_mask.count_ones() as usize,
            catalog.streams.len().min(MASK_STREAMS)
        );
        let customer = resolve_topics(&catalog, &["customer.*".to_string(), "scenarios".into()])
            .unwrap_or_else(|error| panic!("{error}"));
        let names = customer.topic_names(&catalog);
        assert!(names
            .iter()
            .all(|n| n.starts_with("customer.") || n == "scenarios"));
        assert!(names.contains(&"scenarios".to_string()));
        assert!(customer.topics.wants(Topic::Scenarios));
        assert!(!customer.topics.wants(Topic::Anomalies));
        assert!(customer.topics.wants(Topic::History));
        let fewer = customer.without(
            resolve_topics(&catalog, &["scenarios".to_string()])
                .unwrap_or_else(|error| panic!("{error}")),
        );
        assert_eq!(fewer.stream_mask, customer.stream_mask);
        assert!(!fewer.topics.wants(Topic::Scenarios));
    }

    #[test]
    fn unknown_topics_list_close_names() {
        let catalog = catalog();
        let Err(error) = resolve_topics(&catalog, &["customer.tutor.serch".to_string()]) else {
            panic!("a typo resolved");
        };
        let ProtocolError::UnknownTopic { close, .. } = &error else {
            panic!("{error:?}");
        };
        assert_eq!(
            close.first().map(String::as_str),
            Some("customer.tutor.search")
        );
        let Err(error) = resolve_topics(&catalog, &["nothing.*".to_string()]) else {
            panic!("nothing.* resolved");
        };
        assert!(error.to_string().contains("close names: "), "{error}");
        let message: serde_json::Value =
            serde_json::from_str(&error.to_message()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(message["type"], "error");
        assert_eq!(message["topic"], "nothing.*");
    }

    #[test]
    fn server_messages_concatenate_events() {
        assert_eq!(events_message([]), None);
        assert_eq!(
            events_message([r#"{"a":1}"#]).as_deref(),
            Some(r#"{"type":"event","data":{"a":1}}"#)
        );
        assert_eq!(
            events_message([r#"{"a":1}"#, r#"{"b":2}"#]).as_deref(),
            Some(r#"{"type":"batch","events":[{"a":1},{"b":2}]}"#)
        );
        assert_eq!(
            catchup_message([]),
            r#"{"type":"catchup","complete":true,"events":[]}"#
        );
        assert_eq!(lag_message(3), r#"{"type":"lag","skipped":3}"#);
    }
}
