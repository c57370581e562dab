//! The streams the model's code knows by name: each one's role in the entity flows, the origin
//! it must have, and the payload keys it writes.
//!
//! This table is the single source of truth that ties the catalog (data) to the flows (code).
//! A catalog may add streams the code does not know; they get [`Role::Generic`] and must be
//! independent sources or gauges, because no flow would ever emit them.

use super::catalog::{GaugeMetric, Origin};

/// What a stream means to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Signup,
    Search,
    ProfileView,
    Message,
    Favorite,
    Subscription,
    ChurnRisk,
    AccountDeleted,
    TutorSignup,
    TutorOnboarded,
    AvailabilitySet,
    AvailabilityCleared,
    TutorProfileUpdated,
    Payout,
    TutorChurned,
    BookingRequested,
    BookingConfirmed,
    BookingDeclined,
    BookingExpired,
    BookingCancelled,
    BookingRescheduled,
    SessionStarted,
    SessionCompleted,
    NoShowStudent,
    NoShowTutor,
    RatingSubmitted,
    ReviewFlagged,
    ChargeAttempted,
    ChargeSucceeded,
    ChargeFailed,
    RefundIssued,
    ChargebackOpened,
    TicketCreated,
    TicketResolved,
    TicketEscalated,
    ChatStarted,
    CsatSubmitted,
    Impression,
    Click,
    EmailSent,
    EmailOpened,
    ReferralSent,
    PageView,
    ApiError,
    AppCrash,
    Deploy,
    /// A reading of model state; what it reads is the gauge's metric.
    Gauge,
    /// A stream the code does not know: independent arrivals with an `id` payload.
    Generic,
}

/// Stream names the code knows, with their roles.
pub const KNOWN: &[(&str, Role)] = &[
    ("customer.signup.completed", Role::Signup),
    ("customer.tutor.search", Role::Search),
    ("customer.profile.viewed", Role::ProfileView),
    ("customer.message.sent", Role::Message),
    ("customer.favorite.added", Role::Favorite),
    ("customer.subscription.started", Role::Subscription),
    ("customer.churn.risk_flagged", Role::ChurnRisk),
    ("customer.account.deleted", Role::AccountDeleted),
    ("tutor.signup.completed", Role::TutorSignup),
    ("tutor.onboarding.completed", Role::TutorOnboarded),
    ("tutor.availability.set", Role::AvailabilitySet),
    ("tutor.availability.cleared", Role::AvailabilityCleared),
    ("tutor.online.count", Role::Gauge),
    ("tutor.profile.updated", Role::TutorProfileUpdated),
    ("tutor.payout.sent", Role::Payout),
    ("tutor.churned", Role::TutorChurned),
    ("session.booking.requested", Role::BookingRequested),
    ("session.booking.confirmed", Role::BookingConfirmed),
    ("session.booking.declined", Role::BookingDeclined),
    ("session.booking.expired", Role::BookingExpired),
    ("session.booking.cancelled", Role::BookingCancelled),
    ("session.booking.rescheduled", Role::BookingRescheduled),
    ("session.started", Role::SessionStarted),
    ("session.completed", Role::SessionCompleted),
    ("session.noshow.student", Role::NoShowStudent),
    ("session.noshow.tutor", Role::NoShowTutor),
    ("session.rating.submitted", Role::RatingSubmitted),
    ("session.review.flagged", Role::ReviewFlagged),
    ("payment.charge.attempted", Role::ChargeAttempted),
    ("payment.charge.succeeded", Role::ChargeSucceeded),
    ("payment.charge.failed", Role::ChargeFailed),
    ("payment.refund.issued", Role::RefundIssued),
    ("payment.chargeback.opened", Role::ChargebackOpened),
    ("support.ticket.created", Role::TicketCreated),
    ("support.ticket.resolved", Role::TicketResolved),
    ("support.ticket.escalated", Role::TicketEscalated),
    ("support.chat.started", Role::ChatStarted),
    ("support.queue.depth", Role::Gauge),
    ("support.csat.submitted", Role::CsatSubmitted),
    ("marketing.campaign.impression", Role::Impression),
    ("marketing.campaign.click", Role::Click),
    ("marketing.ad.spend", Role::Gauge),
    ("marketing.email.sent", Role::EmailSent),
    ("marketing.email.opened", Role::EmailOpened),
    ("marketing.referral.sent", Role::ReferralSent),
    ("platform.page.view", Role::PageView),
    ("platform.api.latency", Role::Gauge),
    ("platform.api.error", Role::ApiError),
    ("platform.app.crash", Role::AppCrash),
    ("platform.deploy.completed", Role::Deploy),
];

pub fn role_for_name(name: &str) -> Role {
    KNOWN
        .iter()
        .find(|(known, _)| *known == name)
        .map_or(Role::Generic, |(_, role)| *role)
}

/// A stream the flows emit into, so the catalog must have it.
pub struct Required {
    pub name: &'static str,
    pub origin: &'static str,
}

/// Streams the flows emit: every flow stream, plus the sources that flows also feed.
pub const REQUIRED: &[Required] = &[
    Required {
        name: "customer.signup.completed",
        origin: "source",
    },
    Required {
        name: "customer.tutor.search",
        origin: "source",
    },
    Required {
        name: "customer.profile.viewed",
        origin: "flow",
    },
    Required {
        name: "customer.message.sent",
        origin: "flow",
    },
    Required {
        name: "customer.favorite.added",
        origin: "flow",
    },
    Required {
        name: "customer.subscription.started",
        origin: "flow",
    },
    Required {
        name: "customer.churn.risk_flagged",
        origin: "flow",
    },
    Required {
        name: "customer.account.deleted",
        origin: "flow",
    },
    Required {
        name: "tutor.onboarding.completed",
        origin: "flow",
    },
    Required {
        name: "tutor.availability.set",
        origin: "flow",
    },
    Required {
        name: "tutor.availability.cleared",
        origin: "flow",
    },
    Required {
        name: "tutor.payout.sent",
        origin: "flow",
    },
    Required {
        name: "tutor.churned",
        origin: "flow",
    },
    Required {
        name: "session.booking.requested",
        origin: "flow",
    },
    Required {
        name: "session.booking.confirmed",
        origin: "flow",
    },
    Required {
        name: "session.booking.declined",
        origin: "flow",
    },
    Required {
        name: "session.booking.expired",
        origin: "flow",
    },
    Required {
        name: "session.booking.cancelled",
        origin: "flow",
    },
    Required {
        name: "session.booking.rescheduled",
        origin: "flow",
    },
    Required {
        name: "session.started",
        origin: "flow",
    },
    Required {
        name: "session.completed",
        origin: "flow",
    },
    Required {
        name: "session.noshow.student",
        origin: "flow",
    },
    Required {
        name: "session.noshow.tutor",
        origin: "flow",
    },
    Required {
        name: "session.rating.submitted",
        origin: "flow",
    },
    Required {
        name: "session.review.flagged",
        origin: "flow",
    },
    Required {
        name: "payment.charge.attempted",
        origin: "flow",
    },
    Required {
        name: "payment.charge.succeeded",
        origin: "flow",
    },
    Required {
        name: "payment.charge.failed",
        origin: "flow",
    },
    Required {
        name: "payment.refund.issued",
        origin: "flow",
    },
    Required {
        name: "payment.chargeback.opened",
        origin: "flow",
    },
    Required {
        name: "support.ticket.created",
        origin: "flow",
    },
    Required {
        name: "support.ticket.resolved",
        origin: "flow",
    },
    Required {
        name: "support.ticket.escalated",
        origin: "flow",
    },
    Required {
        name: "support.csat.submitted",
        origin: "flow",
    },
    Required {
        name: "marketing.campaign.click",
        origin: "flow",
    },
    Required {
        name: "marketing.email.opened",
        origin: "flow",
    },
    Required {
        name: "marketing.referral.sent",
        origin: "flow",
    },
];

/// Names of the streams only flows emit (for messages).
pub fn flow_stream_names() -> Vec<&'static str> {
    REQUIRED
        .iter()
        .filter(|r| r.origin == "flow")
        .map(|r| r.name)
        .collect()
}

/// The origin kind a stream with this role must have.
pub fn origin_kind(role: Role, origin: &Origin) -> &'static str {
    match role {
        Role::Signup
        | Role::Search
        | Role::TutorSignup
        | Role::TutorProfileUpdated
        | Role::ChatStarted
        | Role::Impression
        | Role::EmailSent
        | Role::PageView
        | Role::ApiError
        | Role::AppCrash
        | Role::Deploy => "source",
        Role::Gauge => "gauge",
        Role::Generic => match origin {
            Origin::Gauge { .. } => "gauge",
            _ => "source",
        },
        _ => "flow",
    }
}

const BOOKING_FIELDS: &[&str] = &[
    "booking_id",
    "user_id",
    "tutor_id",
    "subject",
    "start_time",
    "duration_minutes",
    "price",
];
const RATING_FIELDS: &[&str] = &["booking_id", "user_id", "tutor_id", "subject", "stars"];
const PAYMENT_FIELDS: &[&str] = &[
    "payment_id",
    "booking_id",
    "user_id",
    "tutor_id",
    "amount",
    "currency",
];
const TICKET_FIELDS: &[&str] = &["ticket_id", "user_id", "reason"];
const CUSTOMER_TUTOR_FIELDS: &[&str] = &["user_id", "tutor_id", "subject"];
const TUTOR_FIELDS: &[&str] = &["tutor_id", "subject"];

/// The keys of the `data` object the model writes for a stream, in order.
pub fn payload_fields(role: Role, origin: &Origin) -> &'static [&'static str] {
    match role {
        Role::Signup => &["user_id", "channel"],
        Role::Search => &[
            "user_id",
            "subject",
            "availability_start",
            "availability_end",
        ],
        Role::ProfileView
        | Role::Message
        | Role::Favorite
        | Role::Subscription
        | Role::ReferralSent => CUSTOMER_TUTOR_FIELDS,
        Role::ChurnRisk | Role::AccountDeleted => &["user_id", "reason"],
        Role::TutorSignup
        | Role::TutorOnboarded
        | Role::AvailabilitySet
        | Role::AvailabilityCleared
        | Role::TutorProfileUpdated
        | Role::TutorChurned => TUTOR_FIELDS,
        Role::Payout => &["tutor_id", "amount", "currency", "sessions"],
        Role::BookingRequested
        | Role::BookingConfirmed
        | Role::BookingDeclined
        | Role::BookingExpired
        | Role::BookingCancelled
        | Role::BookingRescheduled
        | Role::SessionStarted
        | Role::SessionCompleted
        | Role::NoShowStudent
        | Role::NoShowTutor => BOOKING_FIELDS,
        Role::RatingSubmitted | Role::ReviewFlagged => RATING_FIELDS,
        Role::ChargeAttempted
        | Role::ChargeSucceeded
        | Role::ChargeFailed
        | Role::RefundIssued
        | Role::ChargebackOpened => PAYMENT_FIELDS,
        Role::TicketCreated
        | Role::TicketResolved
        | Role::TicketEscalated
        | Role::CsatSubmitted => TICKET_FIELDS,
        Role::ChatStarted => &["user_id"],
        Role::Impression | Role::Click => &["campaign", "channel"],
        Role::EmailSent | Role::EmailOpened => &["user_id", "campaign"],
        Role::PageView => &["user_id", "page"],
        Role::ApiError => &["endpoint", "status"],
        Role::AppCrash => &["app_platform", "app_version"],
        Role::Deploy => &["service", "version"],
        Role::Gauge | Role::Generic => match origin {
            Origin::Gauge { metric, .. } => match metric {
                GaugeMetric::TutorsOnline => &["value", "by_subject"],
                GaugeMetric::ApiLatencyMs => &["value", "p95"],
                GaugeMetric::SupportQueueDepth | GaugeMetric::AdSpend => &["value"],
            },
            _ => &["id"],
        },
    }
}

/// Which streams feed which, as the flows implement them: (from, to, how).
/// The inspector shows this; the model's `react` is its implementation.
pub const FLOW_EDGES: &[(&str, &str, &str)] = &[
    (
        "customer.tutor.search",
        "customer.profile.viewed",
        "each search opens a few profiles",
    ),
    (
        "customer.tutor.search",
        "session.booking.requested",
        "a share of searches request a booking; fewer when few tutors are online",
    ),
    (
        "customer.profile.viewed",
        "customer.message.sent",
        "some viewers message the tutor",
    ),
    (
        "customer.profile.viewed",
        "customer.favorite.added",
        "some viewers save the tutor",
    ),
    (
        "session.booking.requested",
        "session.booking.confirmed",
        "a tutor responds in time and accepts",
    ),
    (
        "session.booking.requested",
        "session.booking.declined",
        "a tutor responds in time and declines",
    ),
    (
        "session.booking.requested",
        "session.booking.expired",
        "no tutor responds within the expiry window (depends on tutors online)",
    ),
    (
        "tutor.availability.set",
        "session.booking.confirmed",
        "online tutors answer requests",
    ),
    (
        "session.booking.confirmed",
        "session.booking.cancelled",
        "a share is cancelled before the start",
    ),
    (
        "session.booking.confirmed",
        "session.booking.rescheduled",
        "a share moves a day later",
    ),
    (
        "session.booking.confirmed",
        "session.started",
        "at the start time, when both attend",
    ),
    (
        "session.booking.rescheduled",
        "session.started",
        "at the new start time",
    ),
    (
        "session.booking.confirmed",
        "session.noshow.student",
        "the student does not attend",
    ),
    (
        "session.booking.confirmed",
        "session.noshow.tutor",
        "the tutor does not attend",
    ),
    (
        "session.started",
        "session.completed",
        "after the lesson's duration",
    ),
    (
        "session.completed",
        "payment.charge.attempted",
        "the lesson is charged",
    ),
    (
        "session.completed",
        "session.rating.submitted",
        "about half of the students rate",
    ),
    (
        "session.completed",
        "customer.subscription.started",
        "a few buy a package",
    ),
    (
        "payment.charge.attempted",
        "payment.charge.succeeded",
        "most charges settle",
    ),
    (
        "payment.charge.attempted",
        "payment.charge.failed",
        "a share fails",
    ),
    (
        "payment.charge.succeeded",
        "tutor.payout.sent",
        "earnings are paid out nightly",
    ),
    (
        "payment.charge.failed",
        "support.ticket.created",
        "after a delay",
    ),
    (
        "payment.charge.failed",
        "customer.churn.risk_flagged",
        "failed payments raise churn risk",
    ),
    (
        "session.rating.submitted",
        "session.review.flagged",
        "ratings of 1-2 stars",
    ),
    (
        "session.rating.submitted",
        "marketing.referral.sent",
        "5-star students refer friends",
    ),
    (
        "session.review.flagged",
        "customer.churn.risk_flagged",
        "poor lessons raise churn risk",
    ),
    (
        "session.review.flagged",
        "support.ticket.created",
        "some students complain",
    ),
    (
        "session.review.flagged",
        "payment.refund.issued",
        "some lessons are refunded",
    ),
    (
        "session.review.flagged",
        "payment.chargeback.opened",
        "a few dispute the charge",
    ),
    (
        "session.review.flagged",
        "tutor.churned",
        "a few tutors leave",
    ),
    (
        "session.noshow.tutor",
        "support.ticket.created",
        "students complain",
    ),
    (
        "session.noshow.tutor",
        "payment.refund.issued",
        "the lesson is refunded",
    ),
    (
        "customer.churn.risk_flagged",
        "customer.account.deleted",
        "some at-risk students leave",
    ),
    (
        "support.ticket.created",
        "support.ticket.resolved",
        "tickets queue until agents on shift take them, oldest first",
    ),
    (
        "support.ticket.created",
        "support.ticket.escalated",
        "a share is escalated",
    ),
    (
        "support.ticket.resolved",
        "support.csat.submitted",
        "some users answer the survey",
    ),
    (
        "support.chat.started",
        "support.ticket.created",
        "some chats become tickets",
    ),
    (
        "platform.app.crash",
        "support.ticket.created",
        "a few crashes are reported",
    ),
    (
        "platform.api.error",
        "support.ticket.created",
        "a few errors are reported",
    ),
    (
        "marketing.campaign.impression",
        "marketing.campaign.click",
        "a share of impressions are clicked",
    ),
    (
        "marketing.campaign.click",
        "customer.tutor.search",
        "clickers search",
    ),
    (
        "marketing.campaign.click",
        "customer.signup.completed",
        "clickers sign up",
    ),
    (
        "customer.signup.completed",
        "customer.tutor.search",
        "new students search",
    ),
    (
        "marketing.email.sent",
        "marketing.email.opened",
        "a share are opened",
    ),
    (
        "marketing.email.opened",
        "customer.tutor.search",
        "some readers search",
    ),
    (
        "tutor.signup.completed",
        "tutor.onboarding.completed",
        "days later, a share pass onboarding",
    ),
    (
        "tutor.onboarding.completed",
        "tutor.availability.set",
        "new tutors join the pool",
    ),
    (
        "tutor.availability.set",
        "tutor.availability.cleared",
        "after an online stint",
    ),
    (
        "tutor.availability.set",
        "tutor.online.count",
        "the gauge counts online tutors",
    ),
    (
        "support.ticket.created",
        "support.queue.depth",
        "the gauge counts open tickets",
    ),
    (
        "marketing.campaign.impression",
        "marketing.ad.spend",
        "spend follows the impression rate",
    ),
    (
        "platform.page.view",
        "platform.api.latency",
        "latency rises with load",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_edge_names_known_streams_and_every_required_stream_is_known() {
        for (from, to, _) in FLOW_EDGES {
            assert_ne!(role_for_name(from), Role::Generic, "{from}");
            assert_ne!(role_for_name(to), Role::Generic, "{to}");
        }
        for required in REQUIRED {
            assert_ne!(
                role_for_name(required.name),
                Role::Generic,
                "{}",
                required.name
            );
        }
    }
}
