//! Event payloads: the compact in-memory form of each stream event's `data`, its stable
//! fingerprint bytes, and its JSON rendering in the seed's `StreamEvent` shape.
//!
//! Payloads hold small integers (ids, indexes into fixed tables), never strings, so the hot path
//! allocates nothing. Rendering to JSON happens only when events are written or sent.

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

    /// Writes a stable byte encoding of the payload into `bytes` and returns its length. The
    /// encoding is little-endian and tagged per variant, so it is the same on every platform.
    pub fn encode(&self, bytes: &mut [u8; MAX_ENCODED_BYTES]) -> usize {
        let mut length = 0;
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
/// Size of the buffer [`Payload::encode`] writes into.
pub const MAX_ENCODED_BYTES: usize = 48 + 4 * MAX_SUBJECT_COUNTS;

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

impl RenderContext<'_> {
    fn subject(&self, index: u8) -> &str {
        self.subjects
            .get(index as usize)
            .map_or("unknown", |s| s.name.as_str())
    }
}

/// Serializes a payload as the `data` object, with keys in the catalog's payload order.
pub struct DataView<'a> {
    pub payload: &'a Payload,
    pub context: RenderContext<'a>,
}

fn pick<T: Copy>(table: &[T], index: u8) -> T {
    table[index as usize % table.len()]
}

impl Serialize for DataView<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let c = &self.context;
        let mut map = serializer.serialize_map(None)?;
        let user = |id: u32| format!("student_{id:05}");
        let tutor = |id: u32| format!("tutor_{id:04}");
        match self.payload {
            Payload::Signup { customer, channel } => {
                map.serialize_entry("user_id", &user(*customer))?;
                map.serialize_entry("channel", pick(SIGNUP_CHANNELS, *channel))?;
            }
            Payload::Search {
                customer,
                subject,
                window_start,
                window_hours,
            } => {
                map.serialize_entry("user_id", &user(*customer))?;
                map.serialize_entry("subject", c.subject(*subject))?;
                map.serialize_entry("availability_start", &c.epoch.format(*window_start))?;
                let end = window_start + *window_hours as u64 * crate::engine::MS_PER_HOUR;
                map.serialize_entry("availability_end", &c.epoch.format(end))?;
            }
            Payload::CustomerTutor {
                customer,
                tutor: t,
                subject,
            } => {
                map.serialize_entry("user_id", &user(*customer))?;
                map.serialize_entry("tutor_id", &tutor(*t))?;
                map.serialize_entry("subject", c.subject(*subject))?;
            }
            Payload::CustomerReason { customer, reason } => {
                map.serialize_entry("user_id", &user(*customer))?;
                map.serialize_entry("reason", reason.as_str())?;
            }
            Payload::Tutor { tutor: t, subject } => {
                map.serialize_entry("tutor_id", &tutor(*t))?;
                map.serialize_entry("subject", c.subject(*subject))?;
            }
            Payload::Payout {
                tutor: t,
                amount_cents,
                sessions,
            } => {
                map.serialize_entry("tutor_id", &tutor(*t))?;
                map.serialize_entry("amount", &money(*amount_cents))?;
                map.serialize_entry("currency", "USD")?;
                map.serialize_entry("sessions", sessions)?;
            }
            Payload::Booking(b) => {
                map.serialize_entry("booking_id", &format!("bk_{:07}", b.id))?;
                map.serialize_entry("user_id", &user(b.customer))?;
                map.serialize_entry("tutor_id", &tutor(b.tutor))?;
                map.serialize_entry("subject", c.subject(b.subject))?;
                map.serialize_entry("start_time", &c.epoch.format(b.start))?;
                map.serialize_entry("duration_minutes", &b.minutes)?;
                map.serialize_entry("price", &money(b.price_cents as u64))?;
            }
            Payload::Rating {
                booking,
                customer,
                tutor: t,
                subject,
                stars,
                ..
            } => {
                map.serialize_entry("booking_id", &format!("bk_{booking:07}"))?;
                map.serialize_entry("user_id", &user(*customer))?;
                map.serialize_entry("tutor_id", &tutor(*t))?;
                map.serialize_entry("subject", c.subject(*subject))?;
                map.serialize_entry("stars", stars)?;
            }
            Payload::Payment {
                payment,
                booking,
                customer,
                tutor: t,
                amount_cents,
            } => {
                map.serialize_entry("payment_id", &format!("pay_{payment:07}"))?;
                map.serialize_entry("booking_id", &format!("bk_{booking:07}"))?;
                map.serialize_entry("user_id", &user(*customer))?;
                map.serialize_entry("tutor_id", &tutor(*t))?;
                map.serialize_entry("amount", &money(*amount_cents as u64))?;
                map.serialize_entry("currency", "USD")?;
            }
            Payload::Ticket {
                ticket,
                customer,
                reason,
            } => {
                map.serialize_entry("ticket_id", &format!("tkt_{ticket:06}"))?;
                map.serialize_entry("user_id", &user(*customer))?;
                map.serialize_entry("reason", reason.as_str())?;
            }
            Payload::Chat { customer } => {
                map.serialize_entry("user_id", &user(*customer))?;
            }
            Payload::Campaign { campaign, channel } => {
                map.serialize_entry("campaign", pick(CAMPAIGNS, *campaign))?;
                map.serialize_entry("channel", pick(AD_CHANNELS, *channel))?;
            }
            Payload::Email { customer, campaign } => {
                map.serialize_entry("user_id", &user(*customer))?;
                map.serialize_entry("campaign", pick(CAMPAIGNS, *campaign))?;
            }
            Payload::PageView { customer, page } => {
                map.serialize_entry("user_id", &user(*customer))?;
                map.serialize_entry("page", pick(PAGES, *page))?;
            }
            Payload::ApiError { endpoint, status } => {
                map.serialize_entry("endpoint", pick(ENDPOINTS, *endpoint))?;
                map.serialize_entry("status", &pick(HTTP_STATUSES, *status))?;
            }
            Payload::Crash { platform, version } => {
                map.serialize_entry("app_platform", pick(APP_PLATFORMS, *platform))?;
                map.serialize_entry(
                    "app_version",
                    &format!("4.{}.{}", version / 10, version % 10),
                )?;
            }
            Payload::Deploy { service, version } => {
                map.serialize_entry("service", pick(SERVICES, *service))?;
                map.serialize_entry("version", &format!("v{version}"))?;
            }
            Payload::Gauge { value, detail } => {
                map.serialize_entry("value", &milli(*value))?;
                match detail {
                    GaugeDetail::None => {}
                    GaugeDetail::P95(p95) => map.serialize_entry("p95", &milli(*p95))?,
                    GaugeDetail::BySubject(counts) => {
                        let by_subject: Vec<(&str, u32)> = counts
                            .iter()
                            .enumerate()
                            .map(|(i, n)| (c.subject(i as u8), *n))
                            .collect();
                        map.serialize_entry("by_subject", &OrderedPairs(&by_subject))?;
                    }
                }
            }
            Payload::Generic { id } => {
                map.serialize_entry("id", id)?;
            }
        }
        map.end()
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
            // One decimal, as in series.csv.
            map.serialize_entry("normalizedValue", &((normalized * 10.0).round() / 10.0))?;
            map.serialize_entry("anomalyFlag", flag)?;
        }
        map.end()
    }
}
