//! What the runner publishes: a [`Frame`] per step (events and notices for the hub), and the
//! latest [`LiveState`] (for `GET /api/simulation/state` and new clients).

use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

/// One stream event, serialized once in the seed's `StreamEvent` shape (with its stream's latest
/// `normalizedValue` and `anomalyFlag`).
#[derive(Debug, Clone)]
pub struct FrameEvent {
    /// Catalog index of the stream (a bit of a subscription mask).
    pub stream: u8,
    /// Virtual time of the event.
    pub time_ms: u64,
    /// `{"stream":…,"timestamp":…,"data":…,"normalizedValue":…,"anomalyFlag":…}`.
    pub json: Arc<str>,
}

/// A message for a topic other than stream events, already serialized as a whole server
/// message (`{"type":"recommendation",…}` and the like).
#[derive(Debug, Clone)]
pub struct Notice {
    pub topic: Topic,
    pub json: Arc<str>,
}

/// The topics besides streams a client can subscribe to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Streams whose flag changed in a closed bucket.
    Anomalies,
    /// Recommendations opened, merged, resolved.
    Recommendations,
    /// Scenario lifecycle: activated, settling, settled, stopped, reset.
    Scenarios,
    /// External events injected.
    Timeline,
    /// History rewritten by a backdated command (every client gets it).
    History,
}

impl Topic {
    pub const NAMED: [(&'static str, Topic); 4] = [
        ("anomalies", Topic::Anomalies),
        ("recommendations", Topic::Recommendations),
        ("scenarios", Topic::Scenarios),
        ("timeline", Topic::Timeline),
    ];

    pub fn parse(name: &str) -> Option<Topic> {
        Topic::NAMED
            .iter()
            .find(|(topic, _)| *topic == name)
            .map(|(_, topic)| *topic)
    }
}

/// What one runner step produced.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    /// Virtual time reached.
    pub virtual_ms: u64,
    /// Its ISO 8601 timestamp.
    pub timestamp: String,
    /// Stream events in emission order.
    pub events: Vec<FrameEvent>,
    pub notices: Vec<Notice>,
}

/// A scenario (or event effect) that took effect, as the state reports it.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActiveScenario {
    /// `mod_001`, `evt_003`, …
    pub id: String,
    /// The scenario id (`exam-season-surge`) or event template id.
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    /// `active`, `settling` or `settled`.
    pub status: String,
    pub start_time: String,
    pub active_until: String,
    pub settled_at: String,
}

/// The live state of the session.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LiveState {
    /// The session's epoch (virtual time 0).
    pub epoch: String,
    /// Virtual now, ISO 8601.
    pub now: String,
    pub virtual_ms: u64,
    /// Virtual seconds per wall second.
    pub speed: f64,
    pub paused: bool,
    /// How far behind its wall-clock target the runner finished its last frame, in ms.
    pub lag_ms: f64,
    /// Scenarios and event effects not yet settled.
    pub scenarios: Vec<ActiveScenario>,
    /// Buckets closed so far.
    pub buckets: usize,
    pub bucket_ms: u64,
    /// Whether recommendations are available yet (the baseline is fitted in the background).
    pub analyzed: bool,
    /// Connected WebSocket clients.
    pub clients: usize,
    /// The pace schedule's anchor on the wall clock: Unix milliseconds (fractional) at which
    /// virtual time stood at `anchor_virtual_ms`. While not paused, virtual time `t` is due at
    /// wall `anchor_wall_unix_ms + (t − anchor_virtual_ms) / speed`; a client on the same clock
    /// measures delivery latency with it.
    pub anchor_wall_unix_ms: f64,
    pub anchor_virtual_ms: u64,
    /// Unix milliseconds (fractional), read on the system clock when the runner computed the
    /// target of the frame that reached `virtual_ms`. Two states a minute apart give the drift:
    /// virtual time advanced against `speed` × the wall time between them.
    pub wall_unix_ms: f64,
}
