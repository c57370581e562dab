//! Event payloads: the compact in-memory form of each stream event's `data`, its stable
//! fingerprint bytes, and its JSON rendering in the seed's `StreamEvent` shape.
//!
//! Payloads hold small integers (ids, indexes into fixed tables), never strings, so the hot path
//! allocates nothing. Rendering to JSON happens only when events are written or sent.

use std::borrow::Cow;

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use super::calendar::Epoch;
use super::catalog::{StreamId, Subject};
use crate::engine::VirtualTimeMs;

pub const SIGNUP_CHANNELS: &[&str] = &["organic", "paid_search", "social", "referral", "email"];
pub const CAMPAIGNS: &[&str] = &[
    "brand_search",
    "exam_prep",
    "back_to_school",
    "retargeting",
    "tutor_spotlight",
];
pub const AD_CHANNELS: &[&str] = &["search", "social", "video", "display"];
pub const PAGES: &[&str] = &["/", "/search", "/tutor", "/booking", "/pricing", "/blog"];
pub const ENDPOINTS: &[&str] = &[
    "/api/search",
    "/api/bookings",
    "/api/payments",
    "/api/messages",
    "/api/sessions",
];
pub const HTTP_STATUSES: &[u16] = &[500, 502, 503, 504];
pub const APP_PLATFORMS: &[&str] = &["ios", "android"];
pub const SERVICES: &[&str] = &["search", "booking", "payments", "messaging", "web"];

/// Why a ticket was opened or a customer flagged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    PaymentFailed,
    LowRating,
    TutorNoShow,
    AppCrash,
    ApiError,
    Question,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::PaymentFailed => "payment_failed",
            Reason::LowRating => "low_rating",
            Reason::TutorNoShow => "tutor_noshow",
            Reason::AppCrash => "app_crash",
            Reason::ApiError => "api_error",
            Reason::Question => "question",
        }
    }
}

/// A booking as it travels along the flow; the same id appears in every downstream event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Booking {
    pub id: u64,
    pub customer: u32,
    pub tutor: u32,
    pub subject: u8,
    /// Virtual time the lesson is due to start.
    pub start: VirtualTimeMs,
    pub minutes: u16,
    pub price_cents: u32,
}

/// Extra detail carried by some gauge readings.
#[derive(Debug, Clone, PartialEq)]
pub enum GaugeDetail {
    None,
    /// Tutors online per subject, in catalog subject order.
    BySubject(Box<[u32]>),
    /// 95th-percentile latency, ms.
    P95(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    Signup {
        customer: u32,
        channel: u8,
    },
    Search {
        customer: u32,
        subject: u8,
        window_start: VirtualTimeMs,
        window_hours: u8,
    },
    CustomerTutor {
        customer: u32,
        tutor: u32,
        subject: u8,
    },
    CustomerReason {
        customer: u32,
        reason: Reason,
    },
    Tutor {
        tutor: u32,
        subject: u8,
    },
    Payout {
        tutor: u32,
        amount_cents: u64,
        sessions: u32,
    },
    Booking(Booking),
    Rating {
        booking: u64,
        customer: u32,
        tutor: u32,
        subject: u8,
        stars: u8,
        /// Carried so that refunds of a poor lesson know the amount; not written to `data`.
        price_cents: u32,
    },
    Payment {
        payment: u64,
        booking: u64,
        customer: u32,
        tutor: u32,
        amount_cents: u32,
    },
    Ticket {
        ticket: u64,
        customer: u32,
        reason: Reason,
    },
    Chat {
        customer: u32,
    },
    Campaign {
        campaign: u8,
        channel: u8,
    },
    Email {
        customer: u32,
        campaign: u8,
    },
    PageView {
        customer: u32,
        page: u8,
    },
    ApiError {
        endpoint: u8,
        status: u8,
    },
    Crash {
        platform: u8,
        version: u16,
    },
    Deploy {
        service: u8,
        version: u32,
    },
    Gauge {
        value: f64,
        detail: GaugeDetail,
    },
    Generic {
        id: u64,
    },
}

/// One event of one stream at one virtual time: the engine's output.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEvent {
    pub stream: StreamId,
    pub time: VirtualTimeMs,
    pub payload: Payload,
}

impl Payload {
    /// The reading of a gauge, if this is one.
    pub fn gauge_value(&self) -> Option<f64> {
        match self {
            Payload::Gauge { value, .. } => Some(*value),
            _ => None,
        }
    }

    /// The booking id this event belongs to, if any.
    pub fn booking_id(&self) -> Option<u64> {
        match self {
            Payload::Booking(booking) => Some(booking.id),
            Payload::Rating { booking, .. } | Payload::Payment { booking, .. } => Some(*booking),
            _ => None,
        }
    }

    /// Writes the event's time (8 bytes) and a stable byte encoding of the payload into `bytes`,
    /// what a fingerprint hashes, and returns the length written. The encoding is little-endian
    /// and tagged per variant, so it is the same on every platform. Written in place: encoding
    /// into one buffer and copying into another was 5 % of a run's time.
    pub fn encode_with_time(
        &self,
        time: VirtualTimeMs,
        bytes: &mut [u8; TIMED_ENCODED_BYTES],
    ) -> usize {
        bytes[..8].copy_from_slice(&time.to_le_bytes());
        self.encode_from(bytes, 8)
    }

    /// Writes the payload's encoding into `bytes` from `start` on and returns where it ended;
    /// `bytes` has room for [`MAX_ENCODED_BYTES`] after `start` (the caller's array type says so).
    #[inline]
    fn encode_from(&self, bytes: &mut [u8], start: usize) -> usize {
        let mut length = start;
        let mut put = |value: u64, width: usize| {
            bytes[length..length + width].copy_from_slice(&value.to_le_bytes()[..width]);
            length += width;
        };
        match self {
            Payload::Signup { customer, channel } => {
                put(1, 1);
                put(*customer as u64, 4);
                put(*channel as u64, 1);
            }
            Payload::Search {
                customer,
                subject,
                window_start,
                window_hours,
            } => {
                put(2, 1);
                put(*customer as u64, 4);
                put(*subject as u64, 1);
                put(*window_start, 8);
                put(*window_hours as u64, 1);
            }
            Payload::CustomerTutor {
                customer,
                tutor,
                subject,
            } => {
                put(3, 1);
                put(*customer as u64, 4);
                put(*tutor as u64, 4);
                put(*subject as u64, 1);
            }
            Payload::CustomerReason { customer, reason } => {
                put(4, 1);
                put(*customer as u64, 4);
                put(*reason as u64, 1);
            }
            Payload::Tutor { tutor, subject } => {
                put(5, 1);
                put(*tutor as u64, 4);
                put(*subject as u64, 1);
            }
            Payload::Payout {
                tutor,
                amount_cents,
                sessions,
            } => {
                put(6, 1);
                put(*tutor as u64, 4);
                put(*amount_cents, 8);
                put(*sessions as u64, 4);
            }
            Payload::Booking(b) => {
                put(7, 1);
                put(b.id, 8);
                put(b.customer as u64, 4);
                put(b.tutor as u64, 4);
                put(b.subject as u64, 1);
                put(b.start, 8);
                put(b.minutes as u64, 2);
                put(b.price_cents as u64, 4);
            }
            Payload::Rating {
                booking,
                customer,
                tutor,
                subject,
                stars,
                price_cents,
            } => {
                put(8, 1);
                put(*price_cents as u64, 4);
                put(*booking, 8);
                put(*customer as u64, 4);
                put(*tutor as u64, 4);
                put(*subject as u64, 1);
                put(*stars as u64, 1);
            }
            Payload::Payment {
                payment,
                booking,
                customer,
                tutor,
                amount_cents,
            } => {
                put(9, 1);
                put(*tutor as u64, 4);
                put(*payment, 8);
                put(*booking, 8);
                put(*customer as u64, 4);
                put(*amount_cents as u64, 4);
            }
            Payload::Ticket {
                ticket,
                customer,
                reason,
            } => {
                put(10, 1);
                put(*ticket, 8);
                put(*customer as u64, 4);
                put(*reason as u64, 1);
            }
            Payload::Chat { customer } => {
                put(11, 1);
                put(*customer as u64, 4);
            }
            Payload::Campaign { campaign, channel } => {
                put(12, 1);
                put(*campaign as u64, 1);
                put(*channel as u64, 1);
            }
            Payload::Email { customer, campaign } => {
                put(13, 1);
                put(*customer as u64, 4);
                put(*campaign as u64, 1);
            }
            Payload::PageView { customer, page } => {
                put(14, 1);
                put(*customer as u64, 4);
                put(*page as u64, 1);
            }
            Payload::ApiError { endpoint, status } => {
                put(15, 1);
                put(*endpoint as u64, 1);
                put(*status as u64, 1);
            }
            Payload::Crash { platform, version } => {
                put(16, 1);
                put(*platform as u64, 1);
                put(*version as u64, 2);
            }
            Payload::Deploy { service, version } => {
                put(17, 1);
                put(*service as u64, 1);
                put(*version as u64, 4);
            }
            Payload::Gauge { value, detail } => {
                put(18, 1);
                // Gauges are written with 3 decimals; fingerprint what is written.
                put(round_milli(*value) as u64, 8);
                match detail {
                    GaugeDetail::None => {}
                    GaugeDetail::P95(p95) => put(round_milli(*p95) as u64, 8),
                    GaugeDetail::BySubject(counts) => {
                        // Catalogs have at most 32 subjects, so this fits the buffer.
                        for count in counts.iter().take(MAX_SUBJECT_COUNTS) {
                            put(*count as u64, 4);
                        }
                    }
                }
            }
            Payload::Generic { id } => {
                put(19, 1);
                put(*id, 8);
            }
        }
        length
    }
}

/// Most subject counts a gauge payload encodes (the catalog's subject limit).
const MAX_SUBJECT_COUNTS: usize = 32;
/// Longest payload encoding.
const MAX_ENCODED_BYTES: usize = 48 + 4 * MAX_SUBJECT_COUNTS;
/// Size of the buffer [`Payload::encode_with_time`] writes into.
pub const TIMED_ENCODED_BYTES: usize = 8 + MAX_ENCODED_BYTES;

/// Rounds to thousandths, as outputs write gauge values.
pub fn round_milli(value: f64) -> i64 {
    (value * 1_000.0).round() as i64
}

fn money(cents: u64) -> f64 {
    cents as f64 / 100.0
}

fn milli(value: f64) -> f64 {
    round_milli(value) as f64 / 1_000.0
}

/// What rendering a payload needs besides the payload: subject names and the epoch.
#[derive(Clone, Copy)]
pub struct RenderContext<'a> {
    pub subjects: &'a [Subject],
    pub epoch: Epoch,
}

impl<'a> RenderContext<'a> {
    /// The name of subject `index`, `unknown` past the catalog's subjects.
    pub fn subject(&self, index: u8) -> &'a str {
        self.subjects
            .get(index as usize)
            .map_or("unknown", |s| s.name.as_str())
    }
}

/// One field of a payload's `data` object, typed: what the JSON rendering writes as a string or
/// a number, and what a columnar file stores in the key's column. Values are exactly as written
/// (money in currency units from cents, gauge readings with 3 decimals), so both agree.
#[derive(Debug, Clone, PartialEq)]
pub enum DataValue<'a> {
    Text(Cow<'a, str>),
    /// Whole numbers: minutes, stars, an HTTP status, sessions.
    Integer(i64),
    /// A generic stream's running id.
    Unsigned(u64),
    /// Money and gauge readings, rounded as written.
    Number(f64),
    /// An instant in virtual time; JSON writes it as ISO 8601 text.
    Time(VirtualTimeMs),
    /// Tutors online per subject, in catalog subject order; JSON writes an object by name.
    SubjectCounts(&'a [u32]),
    /// An entity's id as text (`student_00042`), kept as its parts so that writers render it
    /// without building a string per event.
    Id(Identifier),
}

/// A prefixed, zero-padded id: `student_00042` is `student_` and 42 padded to 5 digits (longer
/// numbers are written whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identifier {
    pub prefix: &'static str,
    pub digits: usize,
    pub number: u64,
}

impl std::fmt::Display for Identifier {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            formatter,
            "{}{:0width$}",
            self.prefix,
            self.number,
            width = self.digits
        )
    }
}

/// The type of a `data` key's values, the same whichever stream writes the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataKind {
    Text,
    Integer,
    Unsigned,
    Number,
    Time,
    SubjectCounts,
}

impl DataValue<'_> {
    pub fn kind(&self) -> DataKind {
        match self {
            DataValue::Text(_) => DataKind::Text,
            DataValue::Integer(_) => DataKind::Integer,
            DataValue::Unsigned(_) => DataKind::Unsigned,
            DataValue::Number(_) => DataKind::Number,
            DataValue::Time(_) => DataKind::Time,
            DataValue::SubjectCounts(_) => DataKind::SubjectCounts,
            DataValue::Id(_) => DataKind::Text,
        }
    }
}

/// Every key the model writes into `data`, with the type of its values: a table of events has
/// one typed column per key (`channel` is a signup channel or an ad channel, text either way).
/// A unit test walks every payload variant against it.
pub const DATA_KEYS: &[(&str, DataKind)] = &[
    ("user_id", DataKind::Text),
    ("tutor_id", DataKind::Text),
    ("booking_id", DataKind::Text),
    ("payment_id", DataKind::Text),
    ("ticket_id", DataKind::Text),
    ("subject", DataKind::Text),
    ("channel", DataKind::Text),
    ("reason", DataKind::Text),
    ("availability_start", DataKind::Time),
    ("availability_end", DataKind::Time),
    ("start_time", DataKind::Time),
    ("duration_minutes", DataKind::Integer),
    ("price", DataKind::Number),
    ("amount", DataKind::Number),
    ("currency", DataKind::Text),
    ("sessions", DataKind::Integer),
    ("stars", DataKind::Integer),
    ("campaign", DataKind::Text),
    ("page", DataKind::Text),
    ("endpoint", DataKind::Text),
    ("status", DataKind::Integer),
    ("app_platform", DataKind::Text),
    ("app_version", DataKind::Text),
    ("service", DataKind::Text),
    ("version", DataKind::Text),
    ("value", DataKind::Number),
    ("p95", DataKind::Number),
    ("by_subject", DataKind::SubjectCounts),
    ("id", DataKind::Unsigned),
];

/// The type of a `data` key's values, `None` for a key the model never writes.
pub fn data_kind(key: &str) -> Option<DataKind> {
    DATA_KEYS
        .iter()
        .find(|(known, _)| *known == key)
        .map(|(_, kind)| *kind)
}

fn pick<T: Copy>(table: &[T], index: u8) -> T {
    table[index as usize % table.len()]
}

fn text(value: &str) -> DataValue<'_> {
    DataValue::Text(Cow::Borrowed(value))
}

impl Payload {
    /// Calls `visit` with each field of the `data` object, in the catalog's payload order, and
    /// stops at the first error. The one description of a payload's fields: the JSON rendering
    /// ([`DataView`]) and the columnar writer both walk it.
    pub fn try_for_each_field<'a, E>(
        &'a self,
        context: RenderContext<'a>,
        mut visit: impl FnMut(&'static str, DataValue<'a>) -> Result<(), E>,
    ) -> Result<(), E> {
        let c = context;
        let id = |prefix: &'static str, digits: usize, number: u64| {
            DataValue::Id(Identifier {
                prefix,
                digits,
                number,
            })
        };
        let user = |customer: u32| id("student_", 5, u64::from(customer));
        let tutor = |tutor: u32| id("tutor_", 4, u64::from(tutor));
        let booking = |booking: u64| id("bk_", 7, booking);
        let currency_units = |cents: u64| DataValue::Number(money(cents));
        match self {
            Payload::Signup { customer, channel } => {
                visit("user_id", user(*customer))?;
                visit("channel", text(pick(SIGNUP_CHANNELS, *channel)))?;
            }
            Payload::Search {
                customer,
                subject,
                window_start,
                window_hours,
            } => {
                visit("user_id", user(*customer))?;
                visit("subject", text(c.subject(*subject)))?;
                visit("availability_start", DataValue::Time(*window_start))?;
                let end = window_start + *window_hours as u64 * crate::engine::MS_PER_HOUR;
                visit("availability_end", DataValue::Time(end))?;
            }
            Payload::CustomerTutor {
                customer,
                tutor: t,
                subject,
            } => {
                visit("user_id", user(*customer))?;
                visit("tutor_id", tutor(*t))?;
                visit("subject", text(c.subject(*subject)))?;
            }
            Payload::CustomerReason { customer, reason } => {
                visit("user_id", user(*customer))?;
                visit("reason", text(reason.as_str()))?;
            }
            Payload::Tutor { tutor: t, subject } => {
                visit("tutor_id", tutor(*t))?;
                visit("subject", text(c.subject(*subject)))?;
            }
            Payload::Payout {
                tutor: t,
                amount_cents,
                sessions,
            } => {
                visit("tutor_id", tutor(*t))?;
                visit("amount", currency_units(*amount_cents))?;
                visit("currency", text("USD"))?;
                visit("sessions", DataValue::Integer(i64::from(*sessions)))?;
            }
            Payload::Booking(b) => {
                visit("booking_id", booking(b.id))?;
                visit("user_id", user(b.customer))?;
                visit("tutor_id", tutor(b.tutor))?;
                visit("subject", text(c.subject(b.subject)))?;
                visit("start_time", DataValue::Time(b.start))?;
                visit("duration_minutes", DataValue::Integer(i64::from(b.minutes)))?;
                visit("price", currency_units(b.price_cents as u64))?;
            }
            Payload::Rating {
                booking: booking_id,
                customer,
                tutor: t,
                subject,
                stars,
                ..
            } => {
                visit("booking_id", booking(*booking_id))?;
                visit("user_id", user(*customer))?;
                visit("tutor_id", tutor(*t))?;
                visit("subject", text(c.subject(*subject)))?;
                visit("stars", DataValue::Integer(i64::from(*stars)))?;
            }
            Payload::Payment {
                payment,
                booking: booking_id,
                customer,
                tutor: t,
                amount_cents,
            } => {
                visit("payment_id", id("pay_", 7, *payment))?;
                visit("booking_id", booking(*booking_id))?;
                visit("user_id", user(*customer))?;
                visit("tutor_id", tutor(*t))?;
                visit("amount", currency_units(*amount_cents as u64))?;
                visit("currency", text("USD"))?;
            }
            Payload::Ticket {
                ticket,
                customer,
                reason,
            } => {
                visit("ticket_id", id("tkt_", 6, *ticket))?;
                visit("user_id", user(*customer))?;
                visit("reason", text(reason.as_str()))?;
            }
            Payload::Chat { customer } => {
                visit("user_id", user(*customer))?;
            }
            Payload::Campaign { campaign, channel } => {
                visit("campaign", text(pick(CAMPAIGNS, *campaign)))?;
                visit("channel", text(pick(AD_CHANNELS, *channel)))?;
            }
            Payload::Email { customer, campaign } => {
                visit("user_id", user(*customer))?;
                visit("campaign", text(pick(CAMPAIGNS, *campaign)))?;
            }
            Payload::PageView { customer, page } => {
                visit("user_id", user(*customer))?;
                visit("page", text(pick(PAGES, *page)))?;
            }
            Payload::ApiError { endpoint, status } => {
                visit("endpoint", text(pick(ENDPOINTS, *endpoint)))?;
                visit(
                    "status",
                    DataValue::Integer(i64::from(pick(HTTP_STATUSES, *status))),
                )?;
            }
            Payload::Crash { platform, version } => {
                visit("app_platform", text(pick(APP_PLATFORMS, *platform)))?;
                visit(
                    "app_version",
                    DataValue::Text(Cow::Owned(format!("4.{}.{}", version / 10, version % 10))),
                )?;
            }
            Payload::Deploy { service, version } => {
                visit("service", text(pick(SERVICES, *service)))?;
                visit(
                    "version",
                    DataValue::Text(Cow::Owned(format!("v{version}"))),
                )?;
            }
            Payload::Gauge { value, detail } => {
                visit("value", DataValue::Number(milli(*value)))?;
                match detail {
                    GaugeDetail::None => {}
                    GaugeDetail::P95(p95) => visit("p95", DataValue::Number(milli(*p95)))?,
                    GaugeDetail::BySubject(counts) => {
                        visit("by_subject", DataValue::SubjectCounts(counts))?;
                    }
                }
            }
            Payload::Generic { id } => {
                visit("id", DataValue::Unsigned(*id))?;
            }
        }
        Ok(())
    }
}

/// Serializes a payload as the `data` object, with keys in the catalog's payload order.
pub struct DataView<'a> {
    pub payload: &'a Payload,
    pub context: RenderContext<'a>,
}

impl Serialize for DataView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        self.payload
            .try_for_each_field(self.context, |key, value| {
                map.serialize_entry(
                    key,
                    &JsonDataValue {
                        value,
                        context: self.context,
                    },
                )
            })?;
        map.end()
    }
}

/// A field's value as JSON: instants as ISO 8601 text, subject counts as an object by name.
struct JsonDataValue<'a> {
    value: DataValue<'a>,
    context: RenderContext<'a>,
}

impl Serialize for JsonDataValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match &self.value {
            DataValue::Text(text) => serializer.serialize_str(text),
            DataValue::Integer(value) => serializer.serialize_i64(*value),
            DataValue::Unsigned(value) => serializer.serialize_u64(*value),
            DataValue::Number(value) => serializer.serialize_f64(*value),
            DataValue::Time(time) => serializer.serialize_str(&self.context.epoch.format(*time)),
            DataValue::Id(id) => serializer.collect_str(id),
            DataValue::SubjectCounts(counts) => {
                let by_subject: Vec<(&str, u32)> = counts
                    .iter()
                    .enumerate()
                    .map(|(i, n)| (self.context.subject(i as u8), *n))
                    .collect();
                OrderedPairs(&by_subject).serialize(serializer)
            }
        }
    }
}

/// Serializes pairs as a JSON object in the given order (subject order, not hash order).
struct OrderedPairs<'a>(&'a [(&'a str, u32)]);

impl Serialize for OrderedPairs<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// An event's `normalizedValue` as written: one decimal, as in series.csv.
pub fn normalized_as_written(normalized: f64) -> f64 {
    (normalized * 10.0).round() / 10.0
}

/// A stream event in the seed's wire shape: `{"stream", "timestamp", "data"}`, plus
/// `normalizedValue` and `anomalyFlag` when the stream's bucket has been scored.
pub struct StreamEventView<'a> {
    pub stream_name: &'a str,
    pub event: &'a StreamEvent,
    pub context: RenderContext<'a>,
    /// The normalized value (0–100) and flag of the event's bucket.
    pub score: Option<(f64, &'static str)>,
}

impl Serialize for StreamEventView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(if self.score.is_some() { 5 } else { 3 }))?;
        map.serialize_entry("stream", self.stream_name)?;
        map.serialize_entry("timestamp", &self.context.epoch.format(self.event.time))?;
        map.serialize_entry(
            "data",
            &DataView {
                payload: &self.event.payload,
                context: self.context,
            },
        )?;
        if let Some((normalized, flag)) = self.score {
            map.serialize_entry("normalizedValue", &normalized_as_written(normalized))?;
            map.serialize_entry("anomalyFlag", flag)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::catalog::Catalog;
    use crate::market::roles::{payload_fields, role_for_name};

    fn check_rendering(payload: Payload, expected_json: &str) {
        let catalog = Catalog::embedded().unwrap_or_else(|e| panic!("{e}"));
        let context = RenderContext {
            subjects: &catalog.subjects,
            epoch: Epoch::from_datetime(chrono::DateTime::UNIX_EPOCH),
        };
        let view = DataView {
            payload: &payload,
            context,
        };
        let json = serde_json::to_string(&view).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(json, expected_json);
        // Each field's value has the type its key's column has.
        payload
            .try_for_each_field(context, |key, value| {
                assert_eq!(data_kind(key), Some(value.kind()), "{key}");
                Ok::<(), ()>(())
            })
            .unwrap_or_else(|()| panic!("the walk stopped"));
    }

    #[test]
    fn every_variant_renders_its_fields_typed_and_as_json() {
        let booking = Booking {
            id: 12,
            customer: 345,
            tutor: 67,
            subject: 1,
            start: 3_600_000,
            minutes: 45,
            price_cents: 3_375,
        };
        let cases = [
            (
                Payload::Signup {
                    customer: 7,
                    channel: 2,
                },
                r#"{"user_id":"student_00007","channel":"social"}"#,
            ),
            (
                Payload::Search {
                    customer: 7,
                    subject: 0,
                    window_start: 7_200_000,
                    window_hours: 3,
                },
                r#"{"user_id":"student_00007","subject":"math","availability_start":"1970-01-01T02:00:00.000Z","availability_end":"1970-01-01T05:00:00.000Z"}"#,
            ),
            (
                Payload::CustomerTutor {
                    customer: 7,
                    tutor: 8,
                    subject: 5,
                },
                r#"{"user_id":"student_00007","tutor_id":"tutor_0008","subject":"coding"}"#,
            ),
            (
                Payload::CustomerReason {
                    customer: 7,
                    reason: Reason::LowRating,
                },
                r#"{"user_id":"student_00007","reason":"low_rating"}"#,
            ),
            (
                Payload::Tutor {
                    tutor: 8,
                    subject: 2,
                },
                r#"{"tutor_id":"tutor_0008","subject":"english"}"#,
            ),
            (
                Payload::Payout {
                    tutor: 8,
                    amount_cents: 12_050,
                    sessions: 3,
                },
                r#"{"tutor_id":"tutor_0008","amount":120.5,"currency":"USD","sessions":3}"#,
            ),
            (
                Payload::Booking(booking),
                r#"{"booking_id":"bk_0000012","user_id":"student_00345","tutor_id":"tutor_0067","subject":"science","start_time":"1970-01-01T01:00:00.000Z","duration_minutes":45,"price":33.75}"#,
            ),
            (
                Payload::Rating {
                    booking: 12,
                    customer: 345,
                    tutor: 67,
                    subject: 1,
                    stars: 5,
                    price_cents: 3_375,
                },
                r#"{"booking_id":"bk_0000012","user_id":"student_00345","tutor_id":"tutor_0067","subject":"science","stars":5}"#,
            ),
            (
                Payload::Payment {
                    payment: 9,
                    booking: 12,
                    customer: 345,
                    tutor: 67,
                    amount_cents: 3_375,
                },
                r#"{"payment_id":"pay_0000009","booking_id":"bk_0000012","user_id":"student_00345","tutor_id":"tutor_0067","amount":33.75,"currency":"USD"}"#,
            ),
            (
                Payload::Ticket {
                    ticket: 4,
                    customer: 345,
                    reason: Reason::PaymentFailed,
                },
                r#"{"ticket_id":"tkt_000004","user_id":"student_00345","reason":"payment_failed"}"#,
            ),
            (
                Payload::Chat { customer: 345 },
                r#"{"user_id":"student_00345"}"#,
            ),
            (
                Payload::Campaign {
                    campaign: 1,
                    channel: 3,
                },
                r#"{"campaign":"exam_prep","channel":"display"}"#,
            ),
            (
                Payload::Email {
                    customer: 345,
                    campaign: 0,
                },
                r#"{"user_id":"student_00345","campaign":"brand_search"}"#,
            ),
            (
                Payload::PageView {
                    customer: 345,
                    page: 4,
                },
                r#"{"user_id":"student_00345","page":"/pricing"}"#,
            ),
            (
                Payload::ApiError {
                    endpoint: 2,
                    status: 1,
                },
                r#"{"endpoint":"/api/payments","status":502}"#,
            ),
            (
                Payload::Crash {
                    platform: 1,
                    version: 123,
                },
                r#"{"app_platform":"android","app_version":"4.12.3"}"#,
            ),
            (
                Payload::Deploy {
                    service: 0,
                    version: 17,
                },
                r#"{"service":"search","version":"v17"}"#,
            ),
            (
                Payload::Gauge {
                    value: 2.34567,
                    detail: GaugeDetail::None,
                },
                r#"{"value":2.346}"#,
            ),
            (
                Payload::Gauge {
                    value: 180.0,
                    detail: GaugeDetail::P95(341.23456),
                },
                r#"{"value":180.0,"p95":341.235}"#,
            ),
            (
                Payload::Gauge {
                    value: 21.0,
                    detail: GaugeDetail::BySubject(vec![1, 2, 3, 4, 5, 6].into_boxed_slice()),
                },
                r#"{"value":21.0,"by_subject":{"math":1,"science":2,"english":3,"languages":4,"test_prep":5,"coding":6}}"#,
            ),
            (Payload::Generic { id: 42 }, r#"{"id":42}"#),
        ];
        for (payload, expected_json) in cases {
            check_rendering(payload, expected_json);
        }
    }

    #[test]
    fn every_payload_key_of_the_catalog_has_a_type() {
        let catalog = Catalog::embedded().unwrap_or_else(|e| panic!("{e}"));
        for stream in &catalog.streams {
            for key in payload_fields(role_for_name(&stream.name), &stream.origin) {
                assert!(
                    data_kind(key).is_some(),
                    "{}: `{key}` has no type",
                    stream.name
                );
            }
        }
    }
}
