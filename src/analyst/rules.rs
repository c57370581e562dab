//! The rules analyst: the default, offline and deterministic. It reads the shared context,
//! matches the current anomalies against diagnoses written in terms of the marketplace's flows
//! (fewer tutors online + more expired requests = a supply shortfall, not a demand problem),
//! and names a cause among the recent external events only when timing, the streams the event
//! was expected to move, and what actually moved after it agree.

use super::context::{
    AnalysisContext, ContextAnomaly, ContextEvent, ContextRate, EARLIER_FLAG_BUCKETS,
};
use super::recommendation::{Priority, Recommendation, RecommendedAction, Status};
use super::Analyst;
use crate::diagnostics::parse_duration_ms;
use crate::market::roles::{role_for_name, Role, FLOW_EDGES};
use crate::scenario::definition::{Direction, EventType, Magnitude};
use crate::stats::correlation::{EventCorrelation, EVENT_SHIFT_Z, EVENT_WINDOW_BUCKETS};
use crate::stats::AnomalyFlag;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    Up,
    Down,
    Either,
}

use Move::{Down, Either, Up};

struct ActionTemplate {
    label: &'static str,
    description: &'static str,
    expected_impact: &'static str,
    time_to_effect: &'static str,
}

/// A rate that moved in a direction by at least a relative change: (numerator, denominator,
/// direction, smallest |change| as a fraction; 0 for any change beyond noise).
type RateCue = (&'static str, &'static str, Move, f64);

/// Peak-hour expiry per request roughly doubles under a demand season alone (measured on the
/// model: demand ×1.3 → expired ×1.5 over a day, ×2–2.5 at the evening peak, with supply
/// unchanged), so the expiry rate establishes a supply shortfall by itself only beyond that.
const EXPIRY_RATE_SHORTFALL: f64 = 2.0;

/// One diagnosis: the anomalies that establish it, those that support it, and what to do.
struct Diagnosis {
    key: &'static str,
    title: &'static str,
    /// At least one of these must be anomalous in the given direction.
    required: &'static [(&'static str, Move)],
    /// Further evidence; explained by the diagnosis when present.
    supporting: &'static [(&'static str, Move)],
    /// The diagnosis does not apply while any of these is anomalous in the given direction
    /// (a more specific diagnosis explains the picture).
    unless: &'static [(&'static str, Move)],
    /// Rates (numerator, denominator, direction; see [`super::context::RATE_PAIRS`]) that establish it like
    /// `required` streams do; for diagnoses about quality or supply, where counts scale with
    /// volume, these are the only evidence that establishes it.
    required_rates: &'static [RateCue],
    /// The diagnosis does not apply while any of these rates moved in the given direction.
    unless_rates: &'static [RateCue],
    /// Event types that can plausibly cause it.
    cause_types: &'static [EventType],
    /// Its evidence moves with one day's mood, so a warning-level finding that no event
    /// explains is not raised (see [`analyze_with_rules`]); a critical one still is.
    day_mood: bool,
    summary: &'static str,
    impact: &'static str,
    actions: &'static [ActionTemplate],
}

const DIAGNOSES: &[Diagnosis] = &[
    Diagnosis {
        key: "supply-shortfall",
        title: "Tutor supply shortfall",
        required: &[("tutor.online.count", Down), ("tutor.availability.set", Down)],
        supporting: &[
            ("session.booking.expired", Up),
            ("session.booking.confirmed", Down),
            ("session.booking.declined", Up),
            ("tutor.availability.cleared", Either),
            ("tutor.profile.updated", Up),
            // Fewer tutors online make search results thinner: fewer views and requests.
            ("session.booking.requested", Down),
            ("customer.profile.viewed", Down),
            ("customer.message.sent", Down),
            ("customer.favorite.added", Down),
            ("session.started", Down),
            ("session.completed", Down),
            ("payment.charge.attempted", Down),
            ("payment.charge.succeeded", Down),
        ],
        unless: &[],
        required_rates: &[
            (
                "session.booking.expired",
                "session.booking.requested",
                Up,
                EXPIRY_RATE_SHORTFALL,
            ),
        ],
        // Requests answered better than usual: whatever moved, supply is not short.
        unless_rates: &[("session.booking.expired", "session.booking.requested", Down, 0.0)],
        cause_types: &[EventType::Operational, EventType::Competitive],
        day_mood: false,
        summary: "Fewer tutors are online than usual while demand holds, so requests go unanswered: a supply problem, not a demand one.",
        impact: "Students who cannot book leave or book elsewhere; expired requests are lost revenue.",
        actions: &[
            ActionTemplate {
                label: "Activate standby tutors",
                description: "Message tutors who are usually online at this hour with a same-day bonus for accepting requests.",
                expected_impact: "Online tutors back within 10-20 % of normal",
                time_to_effect: "1-3 hours",
            },
            ActionTemplate {
                label: "Extend request expiry",
                description: "Give tutors longer to answer pending requests in the affected subjects.",
                expected_impact: "Fewer expired requests while supply recovers",
                time_to_effect: "immediate",
            },
        ],
    },
    Diagnosis {
        key: "tutor-pipeline",
        title: "Tutor pipeline drying up",
        required: &[
            ("tutor.churned", Up),
            ("tutor.signup.completed", Down),
            ("tutor.onboarding.completed", Down),
        ],
        supporting: &[("tutor.online.count", Down), ("tutor.availability.set", Down)],
        unless: &[],
        required_rates: &[],
        unless_rates: &[],
        cause_types: &[EventType::Competitive, EventType::Operational],
        day_mood: false,
        summary: "Fewer tutors join and more leave, so the pool shrinks before it shows in bookings.",
        impact: "Supply shortfalls follow within days, first in high-demand subjects.",
        actions: &[
            ActionTemplate {
                label: "Emergency tutor recruiting",
                description: "Raise the recruiting budget and fast-track onboarding for qualified applicants.",
                expected_impact: "New tutors active within a week",
                time_to_effect: "5-7 days",
            },
            ActionTemplate {
                label: "Retention outreach",
                description: "Call tutors at risk of leaving; review payout terms against competitors.",
                expected_impact: "Churn back towards normal",
                time_to_effect: "1-2 weeks",
            },
        ],
    },
    Diagnosis {
        key: "demand-surge",
        title: "Demand surge",
        // Page views follow the demand lever alone in the model (and are its largest, most
        // sensitive stream), so they establish a demand shift as searches do.
        required: &[
            ("customer.tutor.search", Up),
            ("session.booking.requested", Up),
            ("customer.signup.completed", Up),
            ("platform.page.view", Up),
        ],
        supporting: &[
            ("customer.profile.viewed", Up),
            ("customer.message.sent", Up),
            ("customer.favorite.added", Up),
            ("session.booking.expired", Up),
            ("session.booking.confirmed", Up),
            ("session.booking.declined", Up),
            ("session.started", Up),
            ("session.completed", Up),
            ("payment.charge.attempted", Up),
            ("payment.charge.succeeded", Up),
            ("support.chat.started", Up),
            ("marketing.campaign.click", Up),
        ],
        unless: &[("tutor.online.count", Down)],
        required_rates: &[],
        unless_rates: &[],
        cause_types: &[
            EventType::Academic,
            EventType::Marketing,
            EventType::Competitive,
        ],
        day_mood: true,
        summary: "More students than usual are searching and requesting lessons.",
        impact: "If supply does not follow, expired requests and unhappy students follow.",
        actions: &[
            ActionTemplate {
                label: "Bring more tutors online",
                description: "Notify tutors in the busiest subjects that demand is high; offer a peak-hours bonus.",
                expected_impact: "Confirmation rate held near normal",
                time_to_effect: "1-4 hours",
            },
            ActionTemplate {
                label: "Pause paid acquisition",
                description: "Pause paid campaigns in saturated subjects until supply catches up.",
                expected_impact: "Demand eased where supply is short",
                time_to_effect: "within the hour",
            },
        ],
    },
    Diagnosis {
        key: "demand-drop",
        title: "Demand drop",
        // Requests alone do not establish it: they also fall when fewer tutors are visible.
        required: &[
            ("customer.tutor.search", Down),
            ("customer.signup.completed", Down),
            ("platform.page.view", Down),
        ],
        supporting: &[
            ("session.booking.requested", Down),
            ("customer.profile.viewed", Down),
            ("customer.message.sent", Down),
            ("customer.favorite.added", Down),
            ("session.booking.confirmed", Down),
            ("session.started", Down),
            ("session.completed", Down),
            ("payment.charge.attempted", Down),
            ("payment.charge.succeeded", Down),
            ("marketing.campaign.click", Down),
        ],
        unless: &[("tutor.online.count", Down)],
        required_rates: &[],
        unless_rates: &[],
        cause_types: &[EventType::Competitive, EventType::Academic],
        day_mood: true,
        summary: "Fewer students than usual are searching and booking.",
        impact: "Revenue falls with bookings; tutors with empty calendars may leave.",
        actions: &[
            ActionTemplate {
                label: "Targeted win-back campaign",
                description: "Email recent students a limited-time offer in the subjects that dropped most.",
                expected_impact: "Part of the lost searches recovered",
                time_to_effect: "1-2 days",
            },
            ActionTemplate {
                label: "Review competitive pricing",
                description: "Compare prices in the affected subjects with competitors' current offers.",
                expected_impact: "Conversion back towards normal",
                time_to_effect: "3-7 days",
            },
        ],
    },
    Diagnosis {
        key: "payment-failures",
        title: "Payment failures",
        required: &[
            ("payment.charge.failed", Up),
            ("payment.charge.succeeded", Down),
        ],
        supporting: &[
            ("support.ticket.created", Up),
            ("customer.churn.risk_flagged", Up),
            ("payment.chargeback.opened", Up),
            ("support.queue.depth", Up),
        ],
        unless: &[("payment.charge.attempted", Down)],
        required_rates: &[("payment.charge.failed", "payment.charge.attempted", Up, 0.0)],
        unless_rates: &[],
        cause_types: &[EventType::Infrastructure, EventType::Operational],
        day_mood: false,
        summary: "Charges are failing far more often than usual.",
        impact: "Unpaid lessons, tickets from students charged twice or not at all, churn risk.",
        actions: &[
            ActionTemplate {
                label: "Fail over to the backup payment provider",
                description: "Route new charges through the secondary gateway and retry failed ones.",
                expected_impact: "Failure rate back to normal",
                time_to_effect: "15-30 minutes",
            },
            ActionTemplate {
                label: "Notify affected students",
                description: "Tell students with a failed charge that no action is needed and it will be retried.",
                expected_impact: "Fewer payment tickets",
                time_to_effect: "1 hour",
            },
        ],
    },
    Diagnosis {
        key: "platform-incident",
        title: "Platform reliability incident",
        required: &[
            ("platform.api.error", Up),
            ("platform.app.crash", Up),
            ("platform.api.latency", Up),
        ],
        supporting: &[
            ("support.ticket.created", Up),
            ("support.chat.started", Up),
            ("support.queue.depth", Up),
            ("customer.tutor.search", Down),
            ("session.booking.requested", Down),
            ("platform.page.view", Down),
            ("platform.deploy.completed", Up),
        ],
        unless: &[],
        required_rates: &[],
        unless_rates: &[],
        cause_types: &[EventType::Product, EventType::Infrastructure],
        day_mood: false,
        summary: "Errors, crashes or latency are well above normal.",
        impact: "Students and tutors cannot complete what they came for; support load rises.",
        actions: &[
            ActionTemplate {
                label: "Roll back the latest release",
                description: "Revert the most recent deploy or app release while the error is investigated.",
                expected_impact: "Errors back to baseline",
                time_to_effect: "30-60 minutes",
            },
            ActionTemplate {
                label: "Open an incident",
                description: "Page the on-call engineer and post a status-page notice.",
                expected_impact: "Faster diagnosis; fewer duplicate tickets",
                time_to_effect: "immediate",
            },
        ],
    },
    Diagnosis {
        key: "support-overload",
        title: "Support overload",
        required: &[
            ("support.queue.depth", Up),
            ("support.ticket.escalated", Up),
            ("support.ticket.resolved", Down),
            ("support.csat.submitted", Down),
        ],
        supporting: &[("support.ticket.created", Up), ("support.chat.started", Up)],
        unless: &[],
        required_rates: &[],
        unless_rates: &[],
        cause_types: &[EventType::Operational, EventType::Product],
        day_mood: false,
        summary: "Tickets arrive faster than the team resolves them and the queue grows.",
        impact: "Longer waits, lower satisfaction, escalations.",
        actions: &[
            ActionTemplate {
                label: "Add support capacity",
                description: "Call in the standby rota and move agents from low-priority queues.",
                expected_impact: "Queue back to normal depth",
                time_to_effect: "2-4 hours",
            },
            ActionTemplate {
                label: "Publish a self-service answer",
                description: "Pin a help-centre article for the most common ticket topic.",
                expected_impact: "Fewer new tickets",
                time_to_effect: "1 hour",
            },
        ],
    },
    Diagnosis {
        key: "lesson-quality",
        title: "Lesson quality problem",
        // Counts of flags and refunds rise with the number of lessons; only rates establish it.
        required: &[],
        supporting: &[
            ("session.review.flagged", Up),
            ("payment.refund.issued", Up),
            ("session.noshow.tutor", Up),
            ("customer.churn.risk_flagged", Up),
            ("support.ticket.created", Up),
            ("session.rating.submitted", Either),
        ],
        unless: &[],
        required_rates: &[
            ("session.review.flagged", "session.rating.submitted", Up, 0.0),
            ("payment.refund.issued", "session.completed", Up, 0.0),
            ("session.noshow.tutor", "session.started", Up, 0.0),
        ],
        unless_rates: &[],
        cause_types: &[EventType::Infrastructure, EventType::Product, EventType::Operational],
        day_mood: false,
        summary: "More lessons end badly: low ratings, refunds or tutors not showing up.",
        impact: "Refunds cost money now; unhappy students churn later.",
        actions: &[
            ActionTemplate {
                label: "Review flagged lessons",
                description: "Have the quality team review today's flagged lessons for a common cause.",
                expected_impact: "Root cause found",
                time_to_effect: "same day",
            },
            ActionTemplate {
                label: "Proactive make-good credits",
                description: "Offer a credit to students whose lesson was rated 1-2 stars.",
                expected_impact: "Less churn from affected students",
                time_to_effect: "1 day",
            },
        ],
    },
    Diagnosis {
        key: "student-churn",
        title: "Student churn rising",
        required: &[
            ("customer.churn.risk_flagged", Up),
            ("customer.account.deleted", Up),
            ("customer.subscription.started", Down),
        ],
        supporting: &[("marketing.referral.sent", Down)],
        unless: &[],
        required_rates: &[],
        unless_rates: &[],
        cause_types: &[EventType::Product, EventType::Competitive],
        day_mood: false,
        summary: "More students are at risk of leaving, or leaving.",
        impact: "Lifetime value falls; acquisition has to make up for it.",
        actions: &[
            ActionTemplate {
                label: "Retention offer",
                description: "Send at-risk students a package discount and a personal check-in.",
                expected_impact: "Part of the at-risk students retained",
                time_to_effect: "2-5 days",
            },
            ActionTemplate {
                label: "Survey leavers",
                description: "Ask students who closed their accounts why; look for a common reason.",
                expected_impact: "Cause identified",
                time_to_effect: "1 week",
            },
        ],
    },
    Diagnosis {
        key: "tutor-acceptance",
        title: "Tutors declining requests",
        required: &[],
        supporting: &[
            ("session.booking.declined", Up),
            ("session.booking.confirmed", Down),
            ("session.started", Down),
            ("session.completed", Down),
            ("payment.charge.attempted", Down),
            ("payment.charge.succeeded", Down),
        ],
        unless: &[],
        required_rates: &[
            ("session.booking.declined", "session.booking.requested", Up, 0.0),
            ("session.booking.confirmed", "session.booking.requested", Down, 0.0),
        ],
        unless_rates: &[("session.booking.expired", "session.booking.requested", Up, 0.0)],
        cause_types: &[EventType::Operational, EventType::Competitive, EventType::Product],
        day_mood: false,
        summary: "Tutors answer requests but decline far more of them than usual, so fewer lessons are booked from the same demand.",
        impact: "Students who are turned down book elsewhere; confirmed lessons and revenue fall.",
        actions: &[
            ActionTemplate {
                label: "Ask tutors why they decline",
                description: "Survey the tutors with the most declines today: schedule, price, subject or student fit.",
                expected_impact: "Cause identified",
                time_to_effect: "same day",
            },
            ActionTemplate {
                label: "Re-route declined requests",
                description: "Offer each declined request to two more tutors in the subject straight away.",
                expected_impact: "Confirmation rate back towards normal",
                time_to_effect: "immediate",
            },
        ],
    },
    Diagnosis {
        key: "student-noshows",
        title: "Students missing lessons",
        required: &[],
        supporting: &[("session.noshow.student", Up), ("session.completed", Down)],
        unless: &[],
        required_rates: &[("session.noshow.student", "session.started", Up, 0.0)],
        unless_rates: &[],
        cause_types: &[EventType::Product, EventType::Infrastructure, EventType::Academic],
        day_mood: false,
        summary: "More students than usual do not turn up to lessons they booked.",
        impact: "Tutors lose paid time and may leave; students who miss lessons churn.",
        actions: &[ActionTemplate {
            label: "Send lesson reminders",
            description: "Send an extra reminder an hour before each lesson and check that reminders are being delivered.",
            expected_impact: "No-shows back towards normal",
            time_to_effect: "same day",
        }],
    },
    Diagnosis {
        key: "booking-conversion",
        title: "Searches no longer turn into requests",
        required: &[],
        supporting: &[
            ("session.booking.requested", Down),
            ("session.booking.confirmed", Down),
        ],
        unless: &[("tutor.online.count", Down)],
        required_rates: &[("session.booking.requested", "customer.tutor.search", Down, 0.0)],
        unless_rates: &[],
        cause_types: &[EventType::Product, EventType::Infrastructure, EventType::Competitive],
        day_mood: false,
        summary: "Students search as usual but far fewer send a booking request: the path from search to request is broken or unattractive.",
        impact: "Demand is there but does not convert; bookings and revenue fall.",
        actions: &[ActionTemplate {
            label: "Check the booking form",
            description: "Test the request flow end to end on web and app; roll back the last change to it.",
            expected_impact: "Requests per search back to normal",
            time_to_effect: "1-2 hours",
        }],
    },
    Diagnosis {
        key: "signup-conversion",
        title: "Sign-up conversion drop",
        required: &[],
        supporting: &[("customer.signup.completed", Down)],
        // Most sign-ups are organic, so a surge of clicks lowers sign-ups per click by itself:
        // the rate says something about the sign-up flow only while clicks are normal.
        unless: &[("marketing.campaign.click", Either)],
        required_rates: &[("customer.signup.completed", "marketing.campaign.click", Down, 0.0)],
        unless_rates: &[],
        cause_types: &[EventType::Product, EventType::Marketing, EventType::Infrastructure],
        day_mood: false,
        summary: "Visitors arrive from campaigns but far fewer complete sign-up.",
        impact: "Paid traffic is wasted; fewer new students reach a first lesson.",
        actions: &[ActionTemplate {
            label: "Check the sign-up flow",
            description: "Test sign-up on every platform and compare with the last release.",
            expected_impact: "Sign-ups per click back to normal",
            time_to_effect: "1-2 hours",
        }],
    },
    Diagnosis {
        key: "marketing-shift",
        title: "Marketing traffic change",
        required: &[
            ("marketing.campaign.impression", Either),
            ("marketing.campaign.click", Either),
            ("marketing.ad.spend", Either),
            ("marketing.email.opened", Either),
            ("marketing.email.sent", Either),
        ],
        supporting: &[("customer.signup.completed", Either)],
        unless: &[],
        required_rates: &[],
        unless_rates: &[],
        cause_types: &[EventType::Marketing, EventType::Competitive],
        day_mood: false,
        summary: "Paid or email marketing activity is far from usual.",
        impact: "Acquisition cost and sign-ups move with it.",
        actions: &[ActionTemplate {
            label: "Check campaign settings",
            description: "Compare today's budgets, bids and sends with the plan.",
            expected_impact: "Spend back on plan",
            time_to_effect: "same day",
        }],
    },
];

/// A diagnosis fires when its evidence adds up to this much |z| (a single critical stream, or
/// several warnings together).
const MIN_EVIDENCE_Z: f64 = 6.0;
/// A diagnosis resting on a single stream needs it at least this far out.
const SINGLE_STREAM_Z: f64 = 5.0;
/// A critical anomaly that no diagnosis explains is still reported when it is this far out.
const UNEXPLAINED_Z: f64 = 6.0;
/// Total |z| that makes a finding when an external event explains it (see [`event_backed`]).
const EVENT_BACKED_MIN_Z: f64 = 3.0;
/// A cause is named only when its plausibility reaches this (see [`cause_score`]).
const MIN_CAUSE_SCORE: f64 = 0.5;
/// An expectation below this (events a bucket) is "next to none": a change is not written as a
/// percentage of it.
const NOTHING_EXPECTED: f64 = 0.05;
/// A shift that begins within this many buckets of an event must show in the event's
/// before/after comparison (see `event_stream_shifts`).
const SHIFT_WINDOW_MS: u64 = 6 * 3_600_000;
/// A stream whose flags begin more than [`SHIFT_WINDOW_MS`] after an event, and that was flagged
/// on the same side at least [`PREEXISTING_FLAGS`] times in the two days before it, was already
/// shifting: the event did not start it.
const PREEXISTING_MS: u64 = 48 * 3_600_000;
const PREEXISTING_FLAGS: u32 = 2;
/// How far (in σ) a stream must lean towards its flags between an event and flags that begin
/// more than [`SHIFT_WINDOW_MS`] after it (see [`leads_in`]).
const LEAD_IN_Z: f64 = 0.5;
/// Mean-z shift across an event (after against before, see `event_stream_shifts`) that makes a
/// declared stream evidence for the event although it is not flagged.
const UNFLAGGED_SHIFT_Z: f64 = 4.0;
/// Mean-z shift across an event that lets it explain flags that began before it (the stream went
/// much further its way): twice [`EVENT_SHIFT_Z`].
const DEEPENED_SHIFT_Z: f64 = 2.0 * EVENT_SHIFT_Z;
/// Buckets between two events that [`stepped_at_each`] needs to see a first step.
const MIN_STEP_BUCKETS: usize = 2;
/// The largest relative change each declared magnitude can explain (a "low" headline does
/// not triple a stream).
const LOW_IMPACT_MAX_CHANGE: f64 = 0.5;
const MEDIUM_IMPACT_MAX_CHANGE: f64 = 1.5;

fn moves(direction: &str, wanted: Move) -> bool {
    match wanted {
        Either => true,
        Up => direction == "up",
        Down => direction == "down",
    }
}

/// One piece of evidence: a flagged stream, or a rate that moved (named by its numerator).
#[derive(Debug, Clone)]
struct Evidence {
    stream: String,
    z: f64,
    direction: String,
    flag: AnomalyFlag,
    change_percent: f64,
    since_ms: u64,
    /// See `ContextAnomaly::earlier_flags` (a rate's are its numerator's).
    earlier_flags: u64,
    /// The evidence establishes its diagnosis (rather than supporting it).
    establishing: bool,
    text: String,
}

impl Evidence {
    fn of_anomaly(anomaly: &ContextAnomaly) -> Evidence {
        Evidence {
            stream: anomaly.stream.clone(),
            z: anomaly.z,
            direction: anomaly.direction.clone(),
            flag: anomaly.flag,
            change_percent: anomaly.change_percent,
            since_ms: anomaly.since_ms,
            earlier_flags: anomaly.earlier_flags,
            establishing: true,
            // A percentage of next to nothing is noise in the text ("up 100000000000 %").
            text: if anomaly.expected.abs() < NOTHING_EXPECTED {
                format!(
                    "{} {} to {:.1} where next to none were expected (z {:+.1})",
                    anomaly.stream, anomaly.direction, anomaly.value, anomaly.z
                )
            } else {
                format!(
                    "{} {} {:.0} % vs expected ({:.1} vs {:.1}, z {:+.1})",
                    anomaly.stream,
                    anomaly.direction,
                    anomaly.change_percent.abs(),
                    anomaly.value,
                    anomaly.expected,
                    anomaly.z
                )
            },
        }
    }

    fn of_rate(rate: &ContextRate) -> Evidence {
        Evidence {
            stream: rate.numerator.clone(),
            z: rate.z,
            direction: rate.direction.clone(),
            flag: AnomalyFlag::level_of(rate.z),
            change_percent: rate.change_percent,
            since_ms: rate.since_ms,
            earlier_flags: rate.earlier_flags,
            establishing: true,
            text: format!(
                "{} per {} {} {:.0} % ({:.3} vs {:.3} expected, z {:+.1})",
                rate.numerator,
                rate.denominator,
                rate.direction,
                rate.change_percent.abs(),
                rate.rate,
                rate.expected_rate,
                rate.z
            ),
        }
    }
}

/// The offline analyst. Stateless: the recommendation book de-duplicates over time.
#[derive(Debug, Default, Clone)]
pub struct RulesAnalyst;

impl Analyst for RulesAnalyst {
    fn name(&self) -> &'static str {
        "rules"
    }

    fn analyze(&mut self, context: &AnalysisContext) -> Vec<Recommendation> {
        analyze_with_rules(context)
    }
}

/// The rules analysis of one context, as a pure function.
pub fn analyze_with_rules(context: &AnalysisContext) -> Vec<Recommendation> {
    let mut explained: Vec<String> = Vec::new();
    let mut recommendations = Vec::new();
    let find_streams = |list: &[(&str, Move)]| -> Vec<Evidence> {
        list.iter()
            .filter_map(|(stream, wanted)| {
                context
                    .anomaly(stream)
                    .filter(|a| moves(&a.direction, *wanted))
            })
            .map(Evidence::of_anomaly)
            .collect()
    };
    let find_rates = |list: &[RateCue]| -> Vec<Evidence> {
        list.iter()
            .filter_map(|(numerator, denominator, wanted, min_change)| {
                context.rate(numerator, denominator).filter(|r| {
                    moves(&r.direction, *wanted) && r.change_percent.abs() / 100.0 >= *min_change
                })
            })
            .map(Evidence::of_rate)
            .collect()
    };
    // A more specific diagnosis explains the picture while any of these moved.
    let excluded = |diagnosis: &Diagnosis| {
        !find_streams(diagnosis.unless).is_empty() || !find_rates(diagnosis.unless_rates).is_empty()
    };
    let required_of = |diagnosis: &Diagnosis| -> Option<Vec<Evidence>> {
        let mut required = find_streams(diagnosis.required);
        // A rate and its numerator's count are one piece of evidence, not two: keep the
        // stronger.
        for rate in find_rates(diagnosis.required_rates) {
            match required.iter_mut().find(|e| e.stream == rate.stream) {
                Some(count) if count.z.abs() >= rate.z.abs() => {}
                Some(count) => *count = rate,
                None => required.push(rate),
            }
        }
        (!required.is_empty() && !excluded(diagnosis)).then_some(required)
    };
    // Streams that establish some applicable diagnosis belong to it, not to another one that
    // merely lists them as support.
    let candidates: Vec<(&Diagnosis, Vec<Evidence>)> = DIAGNOSES
        .iter()
        .filter_map(|diagnosis| Some((diagnosis, required_of(diagnosis)?)))
        .collect();
    let establishing: Vec<String> = candidates
        .iter()
        .flat_map(|(_, required)| required.iter().map(|e| e.stream.clone()))
        .collect();
    for (diagnosis, required) in candidates {
        let mut evidence = required;
        for supporting in find_streams(diagnosis.supporting) {
            if !evidence.iter().any(|e| e.stream == supporting.stream)
                && !establishing.contains(&supporting.stream)
            {
                evidence.push(Evidence {
                    establishing: false,
                    ..supporting
                });
            }
        }
        evidence.retain(|e| !explained.contains(&e.stream));
        if !enough_evidence(&evidence) && !event_backed(context, diagnosis, &evidence) {
            continue;
        }
        explained.extend(evidence.iter().map(|e| e.stream.clone()));
        // The demand streams share one day's mood (searches, views, requests and favourites
        // move together on a day's noise), so their summed z makes a warning-level swing that
        // no event explains look like news when it is the day's own: on the tuning sets 34 of
        // 52 such findings matched no real effect.
        recommendations.extend(
            recommend(context, &diagnosis.into(), &evidence)
                .into_iter()
                .filter(|r| {
                    !(diagnosis.day_mood
                        && r.related_events.is_empty()
                        && r.priority == Priority::Warning)
                }),
        );
    }
    // A declared stream that shifted far its way across a recent event without being flagged
    // (a sparse stream, or a moderate shift on a noisy one) is evidence for the event: the event
    // said where to look, and the stream moved there by much more than chance moves it.
    let bucket_ms = context_bucket_ms(context);
    for event in &context.events {
        let Some(correlation) = correlation_of(context, event) else {
            continue;
        };
        let declared = &event.expected_impact;
        let wanted = declared_move(event);
        let event_bucket_start = event.time_ms / bucket_ms * bucket_ms;
        // Once at least half the event's window is in, and only while it is fresh: the shift is
        // news about the event, not a finding to raise again each time the analyst runs that week.
        let window_ms = EVENT_WINDOW_BUCKETS as u64 * bucket_ms;
        if context.now_ms < event_bucket_start + window_ms / 2
            || context.now_ms > event_bucket_start + window_ms + bucket_ms
        {
            continue;
        }
        for shift in &correlation.streams {
            if shift.strength.abs() < UNFLAGGED_SHIFT_Z
                || !declared.streams.contains(&shift.stream)
                || !moves(shift.direction, wanted)
                || explained.contains(&shift.stream)
                || context.anomaly(&shift.stream).is_some()
            {
                continue;
            }
            let Some(diagnosis) = DIAGNOSES.iter().find(|d| {
                d.required
                    .iter()
                    .any(|(stream, m)| *stream == shift.stream && moves(shift.direction, *m))
                    && !excluded(d)
            }) else {
                continue;
            };
            let evidence = Evidence {
                stream: shift.stream.clone(),
                z: shift.strength,
                direction: shift.direction.to_string(),
                flag: AnomalyFlag::Warning,
                change_percent: 0.0,
                since_ms: event_bucket_start + bucket_ms,
                earlier_flags: 0,
                establishing: true,
                text: format!(
                    "{} {} since {} (mean z {:+.1} against the hours before it)",
                    shift.stream, shift.direction, event.title, shift.strength
                ),
            };
            explained.push(shift.stream.clone());
            recommendations.extend(recommend(context, &diagnosis.into(), &[evidence]));
        }
    }
    // A strong anomaly no diagnosis explains is still a finding: one per domain.
    let mut domains: Vec<&str> = Vec::new();
    for anomaly in &context.anomalies {
        if !domains.contains(&anomaly.domain.as_str()) {
            domains.push(&anomaly.domain);
        }
    }
    for domain in domains {
        let evidence: Vec<Evidence> = context
            .anomalies
            .iter()
            .filter(|a| a.domain == domain && !explained.contains(&a.stream))
            .filter(|a| a.flag == AnomalyFlag::Critical && a.z.abs() >= UNEXPLAINED_Z)
            .map(Evidence::of_anomaly)
            .collect();
        if evidence.is_empty() {
            continue;
        }
        explained.extend(evidence.iter().map(|e| e.stream.clone()));
        let finding = Finding {
            key: format!("unexplained-{domain}"),
            title: format!("Unexplained {domain} anomaly"),
            summary: format!(
                "{} moved far from normal and matches none of the known failure patterns.",
                evidence
                    .iter()
                    .map(|e| e.stream.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            impact: "Unknown until investigated; a large unexplained shift is often the first sign of an incident.".to_string(),
            cause_types: &[
                EventType::Marketing,
                EventType::Product,
                EventType::Infrastructure,
                EventType::Academic,
                EventType::Competitive,
                EventType::Operational,
            ],
            actions: &[ActionTemplate {
                label: "Investigate the stream",
                description: "Open the stream's recent events and compare with the last deploys, campaigns and operational changes.",
                expected_impact: "Cause identified",
                time_to_effect: "1-2 hours",
            }],
        };
        recommendations.extend(recommend(context, &finding, &evidence));
    }
    attach_footprint(context, &explained, &mut recommendations);
    recommendations
}

/// Flow hops within which a flagged stream counts as part of a finding's footprint.
const FOOTPRINT_HOPS: usize = 2;

/// Whether `target` is within [`FOOTPRINT_HOPS`] edges of `start` on the marketplace's flows
/// (`FLOW_EDGES`, either way).
fn within_flow_hops(start: &str, target: &str) -> bool {
    let neighbours = |stream: &str| -> Vec<&'static str> {
        FLOW_EDGES
            .iter()
            .filter_map(|(from, to, _)| {
                if *from == stream {
                    Some(*to)
                } else if *to == stream {
                    Some(*from)
                } else {
                    None
                }
            })
            .collect()
    };
    let mut frontier = vec![start.to_string()];
    let mut seen = vec![start.to_string()];
    for _ in 0..FOOTPRINT_HOPS {
        let mut next = Vec::new();
        for stream in &frontier {
            for neighbour in neighbours(stream) {
                if neighbour == target {
                    return true;
                }
                if !seen.iter().any(|s| s == neighbour) {
                    seen.push(neighbour.to_string());
                    next.push(neighbour.to_string());
                }
            }
        }
        frontier = next;
    }
    false
}

/// Streams flagged now that no finding took as evidence, but that sit on the marketplace's flows
/// next to a finding's evidence (within [`FOOTPRINT_HOPS`] edges of `FLOW_EDGES`, either way)
/// and began with or after it: a demand drop also thins ratings and cancellations, a support
/// backlog also slows resolutions. They are listed in the finding's `affectedStreams` — where
/// an operator should look — without counting as evidence for its diagnosis or cause.
fn attach_footprint(
    context: &AnalysisContext,
    explained: &[String],
    recommendations: &mut [Recommendation],
) {
    let bucket_ms = context_bucket_ms(context);
    for anomaly in &context.anomalies {
        if explained.contains(&anomaly.stream) || anomaly.flag == AnomalyFlag::Normal {
            continue;
        }
        let onset = |r: &Recommendation| {
            r.affected_streams
                .iter()
                .filter_map(|s| context.anomaly(s).map(|a| a.since_ms))
                .min()
        };
        let home = recommendations.iter_mut().find(|r| {
            onset(r).is_some_and(|first| anomaly.since_ms + bucket_ms >= first)
                && r.affected_streams
                    .iter()
                    .any(|s| within_flow_hops(s, &anomaly.stream))
        });
        if let Some(home) = home {
            if !home.affected_streams.contains(&anomaly.stream) {
                home.affected_streams.push(anomaly.stream.clone());
                home.affected_streams.sort();
            }
        }
    }
}

/// Evidence below [`enough_evidence`] still makes a finding when a recent external event
/// explains what establishes it (declared stream and direction, timing, a shift across the event)
/// and the flags add up to [`EVENT_BACKED_MIN_Z`]: an announced cause is a prior, so a moderate
/// shift it predicted is worth telling (signups up 40 % the evening a blog post went viral).
fn event_backed(context: &AnalysisContext, diagnosis: &Diagnosis, evidence: &[Evidence]) -> bool {
    let strength: f64 = evidence.iter().map(|e| e.z.abs()).sum();
    if strength < EVENT_BACKED_MIN_Z {
        return false;
    }
    let bucket_ms = context_bucket_ms(context);
    evidence.iter().filter(|e| e.establishing).any(|item| {
        context.events.iter().any(|event| {
            explains(context, event, item, bucket_ms)
                && cause_score(event, &[item], diagnosis.cause_types).plausibility
                    >= MIN_CAUSE_SCORE
        })
    })
}

/// Several streams together, or one far out of line.
fn enough_evidence(evidence: &[Evidence]) -> bool {
    let strength: f64 = evidence.iter().map(|e| e.z.abs()).sum();
    let strongest = evidence.iter().map(|e| e.z.abs()).fold(0.0, f64::max);
    strength >= MIN_EVIDENCE_Z && (evidence.len() >= 2 || strongest >= SINGLE_STREAM_Z)
}

/// What a recommendation is made from: a diagnosis, or an unexplained anomaly.
struct Finding {
    key: String,
    title: String,
    summary: String,
    impact: String,
    cause_types: &'static [EventType],
    actions: &'static [ActionTemplate],
}

impl From<&Diagnosis> for Finding {
    fn from(diagnosis: &Diagnosis) -> Finding {
        Finding {
            key: diagnosis.key.to_string(),
            title: diagnosis.title.to_string(),
            summary: diagnosis.summary.to_string(),
            impact: diagnosis.impact.to_string(),
            cause_types: diagnosis.cause_types,
            actions: diagnosis.actions,
        }
    }
}

/// Whether `event` can have caused `evidence` (see [`cause_verdict`]).
fn explains(
    context: &AnalysisContext,
    event: &ContextEvent,
    evidence: &Evidence,
    bucket_ms: u64,
) -> bool {
    cause_verdict(context, event, evidence, bucket_ms).is_ok()
}

/// Whether `event` can have caused `evidence`, or the first rule it breaks: the event declared
/// the stream and the direction; the stream's flags began after the event's bucket and within
/// the declared duration; and when they began soon after it, the stream shifted across the
/// event (it was not already off before). Size is weighed in [`cause_score`], not required:
/// what people expect of an event is not always what it does (a "low" release can ship a
/// crash).
fn cause_verdict(
    context: &AnalysisContext,
    event: &ContextEvent,
    evidence: &Evidence,
    bucket_ms: u64,
) -> Result<(), CauseRejection> {
    let declared = &event.expected_impact;
    let wanted = declared_move(event);
    if !declared_or_coupled(&declared.streams, &evidence.stream) {
        return Err(CauseRejection::NotDeclared);
    }
    if !moves(&evidence.direction, wanted) {
        return Err(CauseRejection::WrongDirection);
    }
    let event_bucket_start = event.time_ms / bucket_ms * bucket_ms;
    if evidence.since_ms < event_bucket_start + bucket_ms {
        // Flags that began before the event can still be its doing when the stream, already
        // off, went much further its way across the event (a price cut on a day demand was
        // already low): twice the shift a fresh onset needs, within the declared duration.
        let deepened = event.time_ms < context.now_ms
            && shift_across(context, event, evidence) >= DEEPENED_SHIFT_Z;
        if !deepened {
            return Err(CauseRejection::BeforeEvent);
        }
        // Still within what the event declared.
        let declared_ms = parse_duration_ms(&declared.duration).unwrap_or(u64::MAX);
        if context.now_ms.saturating_sub(event.time_ms) > declared_ms.saturating_add(bucket_ms) {
            return Err(CauseRejection::AfterDuration);
        }
        return Ok(());
    }

    let declared_ms = parse_duration_ms(&declared.duration).unwrap_or(u64::MAX);
    let after_ms = evidence.since_ms - event.time_ms;
    if after_ms > declared_ms.saturating_add(bucket_ms) {
        return Err(CauseRejection::AfterDuration);
    }
    // Flags that begin long after the event cannot be checked for a shift across it; then at
    // least the stream must have been calm before it (a condition that was already there was
    // not started by the event).
    if after_ms > SHIFT_WINDOW_MS {
        // A minor event that declared no direction, and whose effect cannot be seen as a shift
        // across it, ties nothing to it: a low "mixed" for a week would explain any move of its
        // streams in that week.
        if declared.direction == Direction::Mixed && declared.magnitude == Magnitude::Low {
            return Err(CauseRejection::UndirectedAndLate);
        }
        if flagged_before(evidence, event_bucket_start, bucket_ms) >= PREEXISTING_FLAGS {
            return Err(CauseRejection::AlreadyOff);
        }
        if !leads_in(context, event_bucket_start + bucket_ms, evidence) {
            return Err(CauseRejection::NoLeadIn);
        }
        return Ok(());
    }
    let shifted = shift_across(context, event, evidence) >= EVENT_SHIFT_Z;
    if !shifted && !shifted_up_to_onset(context, event_bucket_start, evidence, bucket_ms) {
        return Err(CauseRejection::NoShift);
    }
    Ok(())
}

/// Why the evidence rules do not let an event explain a stream's anomaly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CauseRejection {
    /// The stream is not flagged now: there is nothing to explain.
    NotAnomalous,
    /// The event declared neither the stream nor a demand root coupled to it.
    NotDeclared,
    /// The stream moved the other way from the event's declared direction.
    WrongDirection,
    /// The stream's flags began before the event's next bucket.
    BeforeEvent,
    /// The flags began after the event's declared duration was over.
    AfterDuration,
    /// The flags began hours after the event, and the stream was already flagged that way in
    /// the two days before it.
    AlreadyOff,
    /// The flags began hours after the event, and the stream did not lean their way in between.
    NoLeadIn,
    /// The flags began hours after a low-magnitude event that declared no direction ("mixed").
    UndirectedAndLate,
    /// The flags began soon after the event, but the stream did not shift across it.
    NoShift,
}

impl std::fmt::Display for CauseRejection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(match self {
            CauseRejection::NotAnomalous => "the stream is not anomalous",
            CauseRejection::NotDeclared => "the event did not declare the stream",
            CauseRejection::WrongDirection => "the stream moved against the declared direction",
            CauseRejection::BeforeEvent => "the stream was flagged before the event",
            CauseRejection::AfterDuration => {
                "the flags began after the event's declared duration was over"
            }
            CauseRejection::AlreadyOff => {
                "the stream was already flagged that way in the two days before the event"
            }
            CauseRejection::NoLeadIn => {
                "the flags began hours after the event without building up from it"
            }
            CauseRejection::UndirectedAndLate => {
                "the flags began hours after a minor event that declared no direction"
            }
            CauseRejection::NoShift => "the stream did not shift across the event",
        })
    }
}

/// The evidence rules' verdict on "`event` caused the anomaly on `stream`", for answers that
/// do not come from the rules (the LLM analyst's): `Ok` when the rules would accept it (the
/// event declared the stream or a coupled demand root, in the direction it moved, and the flags
/// began after the event, within its declared duration, as a shift across it), otherwise the
/// first rule it breaks.
pub fn check_cause(
    context: &AnalysisContext,
    event: &ContextEvent,
    stream: &str,
) -> Result<(), CauseRejection> {
    let Some(anomaly) = context.anomaly(stream) else {
        return Err(CauseRejection::NotAnomalous);
    };
    cause_verdict(
        context,
        event,
        &Evidence::of_anomaly(anomaly),
        context_bucket_ms(context),
    )
}

/// Whether an event that declared `declared` can have moved `stream`: declared itself, or a
/// demand root when the event declared one (the model's demand lever moves searches, page views
/// and chats together, whichever of them an event's author happened to list). Streams further
/// down the flows are not taken: an event declared as "mixed" on requests would then explain
/// any decline or expiry after it.
fn declared_or_coupled(declared: &[String], stream: &str) -> bool {
    if declared.iter().any(|d| d == stream) {
        return true;
    }
    let demand_root = |name: &str| {
        matches!(
            role_for_name(name),
            Role::Search | Role::PageView | Role::ChatStarted
        )
    };
    demand_root(stream) && declared.iter().any(|d| demand_root(d))
}

/// Whether the stream shifted across the event when the buckets after it are taken up to just
/// past the flags' onset rather than a fixed window: an effect that ramps up (tutors drifting
/// away over an afternoon) shows at its onset, not in the event's first hours. Mean z from the
/// bucket after the event's to two buckets past the onset, against the [`EVENT_WINDOW_BUCKETS`]
/// before the event's bucket, from the context's recent values (no answer without them).
fn shifted_up_to_onset(
    context: &AnalysisContext,
    event_bucket_start: u64,
    evidence: &Evidence,
    bucket_ms: u64,
) -> bool {
    let mean_z = |from: u64, to: u64| mean_z_over(context, evidence, from, to);
    let before = mean_z(
        event_bucket_start.saturating_sub(EVENT_WINDOW_BUCKETS as u64 * bucket_ms),
        event_bucket_start,
    );
    let after = mean_z(
        event_bucket_start + bucket_ms,
        evidence.since_ms + 3 * bucket_ms,
    );
    match (before, after) {
        (Some((before, _)), Some((after, _))) => {
            towards(evidence) * (after - before) >= EVENT_SHIFT_Z
        }
        _ => false,
    }
}

/// How far `evidence`'s stream shifted across `event` in the event's correlations (mean z over
/// the buckets after it against before it), counted in the evidence's direction; 0 when the
/// correlations do not list it that way.
fn shift_across(context: &AnalysisContext, event: &ContextEvent, evidence: &Evidence) -> f64 {
    correlation_of(context, event)
        .and_then(|c| {
            c.streams
                .iter()
                .find(|s| s.stream == evidence.stream && s.direction == evidence.direction)
        })
        .map_or(0.0, |s| s.strength.abs())
}

/// The streams that moved after `event`, if any did (see `event_stream_shifts`).
fn correlation_of<'a>(
    context: &'a AnalysisContext,
    event: &ContextEvent,
) -> Option<&'a EventCorrelation> {
    context
        .correlations
        .events
        .iter()
        .find(|c| c.event_id == event.id)
}

/// The way `event` declared its streams would move.
fn declared_move(event: &ContextEvent) -> Move {
    match event.expected_impact.direction {
        Direction::Increase => Up,
        Direction::Decrease => Down,
        Direction::Mixed => Either,
    }
}

/// +1 for evidence that went up, −1 for down: multiplies a change of z into "towards the flags".
fn towards(evidence: &Evidence) -> f64 {
    if evidence.direction == "up" {
        1.0
    } else {
        -1.0
    }
}

/// Mean z of `evidence`'s stream over the context's recent buckets that start in `[from, to)`,
/// and how many there were; `None` without recent values there.
fn mean_z_over(
    context: &AnalysisContext,
    evidence: &Evidence,
    from: u64,
    to: u64,
) -> Option<(f64, usize)> {
    let values: Vec<f64> = context
        .recent_values
        .get(&evidence.stream)?
        .iter()
        .filter(|p| p.bucket_start_ms >= from && p.bucket_start_ms < to)
        .map(|p| (p.normalized - 50.0) / 10.0)
        .collect();
    (!values.is_empty()).then(|| {
        (
            values.iter().sum::<f64>() / values.len() as f64,
            values.len(),
        )
    })
}

/// For flags that begin long after an event: whether the stream already leaned their way
/// between the event and the flags (mean z over those buckets at least [`LEAD_IN_Z`] towards
/// the flags, against the buckets before the event). A delayed effect builds up; a shift that
/// starts from nothing at midnight, hours after the event, is the day's own noise. Streams
/// without recent values in the context (a rate's numerator that is not flagged) are not held
/// to it.
fn leads_in(context: &AnalysisContext, after_event_ms: u64, evidence: &Evidence) -> bool {
    if !context.recent_values.contains_key(&evidence.stream) {
        return true;
    }
    let gap = mean_z_over(context, evidence, after_event_ms, evidence.since_ms);
    let before = mean_z_over(context, evidence, 0, after_event_ms).map_or(0.0, |(mean, _)| mean);
    gap.is_none_or(|(gap, _)| towards(evidence) * (gap - before) >= LEAD_IN_Z)
}

/// How many same-side flags `evidence`'s stream had in the [`PREEXISTING_MS`] before
/// `before_ms` (a bucket start).
fn flagged_before(evidence: &Evidence, before_ms: u64, bucket_ms: u64) -> u32 {
    let window_buckets = (PREEXISTING_MS / bucket_ms).max(1);
    let mut count = 0;
    for k in 0..EARLIER_FLAG_BUCKETS as u64 {
        if evidence.earlier_flags & (1 << k) == 0 {
            continue;
        }
        // Bit k is the bucket starting at since − (k + 1) buckets.
        let Some(bucket_start) = evidence.since_ms.checked_sub((k + 1) * bucket_ms) else {
            continue;
        };
        if bucket_start < before_ms && bucket_start + window_buckets * bucket_ms >= before_ms {
            count += 1;
        }
    }
    count
}

/// Whether the declared magnitude can explain the size of `evidence`.
fn size_fits(event: &ContextEvent, evidence: &Evidence) -> bool {
    let change = evidence.change_percent.abs() / 100.0;
    match event.expected_impact.magnitude {
        Magnitude::Low => change <= LOW_IMPACT_MAX_CHANGE,
        Magnitude::Medium => change <= MEDIUM_IMPACT_MAX_CHANGE,
        Magnitude::High => true,
    }
}

/// How well an event explains the evidence it can explain (see [`cause_score`]).
#[derive(Debug, Clone, Copy, PartialEq)]
struct CauseScore {
    /// Whether it can be the cause at all: timing, the event's type, its declared magnitude and
    /// how much of the evidence it explains. A cause is named only when this reaches
    /// [`MIN_CAUSE_SCORE`].
    plausibility: f64,
    /// The plausibility weighed by how well the declared magnitude fits the size of what moved:
    /// which of several plausible causes is named. Size ranks causes but does not rule one out
    /// (a release announced as "low" that ships a crash is still the crash's cause).
    score: f64,
}

/// How well `event` explains the evidence streams it can explain (`explained`): recent
/// events, events of a type that produces this finding, a larger declared magnitude, more of
/// the evidence explained and — for ranking only — a declared magnitude that fits the size of
/// what moved.
fn cause_score(
    event: &ContextEvent,
    explained: &[&Evidence],
    cause_types: &[EventType],
) -> CauseScore {
    if explained.is_empty() {
        return CauseScore {
            plausibility: 0.0,
            score: 0.0,
        };
    }
    let declared = &event.expected_impact;
    let onset_ms = explained.iter().map(|e| e.since_ms).min().unwrap_or(0);
    let declared_ms = parse_duration_ms(&declared.duration).unwrap_or(u64::MAX);
    let hours_before = onset_ms.saturating_sub(event.time_ms) as f64 / 3_600_000.0;
    // Slow events (a 30-day recruiting drive) are given longer to show than quick ones.
    let scale_hours = (declared_ms as f64 / 3_600_000.0 / 4.0).clamp(6.0, 48.0);
    let timing = 1.0 / (1.0 + hours_before / scale_hours);
    let affinity = if cause_types.contains(&event.kind) {
        1.0
    } else {
        0.3
    };
    let magnitude = match declared.magnitude {
        Magnitude::High => 1.2,
        Magnitude::Medium => 1.0,
        Magnitude::Low => 0.8,
    };
    let fitting = explained.iter().filter(|e| size_fits(event, e)).count();
    let size = 0.5 + 0.5 * fitting as f64 / explained.len() as f64;
    let plausibility = timing * affinity * magnitude * (1.0 + explained.len().min(3) as f64 * 0.5);
    CauseScore {
        plausibility,
        score: plausibility * size,
    }
}

/// The recommendations of one finding: one per cause that explains part of the evidence (a
/// new cause is a new finding, not a footnote to an older one), or one without a cause.
/// Evidence no cause explains goes with the earliest cause.
fn recommend(
    context: &AnalysisContext,
    finding: &Finding,
    evidence: &[Evidence],
) -> Vec<Recommendation> {
    let bucket_ms = context_bucket_ms(context);
    // Each piece of evidence goes to the best event that explains it.
    let mut groups: Vec<(&ContextEvent, f64, Vec<&Evidence>)> = Vec::new();
    let mut unexplained: Vec<&Evidence> = Vec::new();
    for item in evidence {
        let candidates: Vec<(&ContextEvent, CauseScore)> = context
            .events
            .iter()
            .filter(|event| explains(context, event, item, bucket_ms))
            .map(|event| {
                let explained: Vec<&Evidence> = evidence
                    .iter()
                    .filter(|e| explains(context, event, e, bucket_ms))
                    .collect();
                (event, cause_score(event, &explained, finding.cause_types))
            })
            .filter(|(_, score)| score.plausibility >= MIN_CAUSE_SCORE)
            .collect();
        let by_score = |a: &&(&ContextEvent, CauseScore), b: &&(&ContextEvent, CauseScore)| {
            a.1.score
                .total_cmp(&b.1.score)
                .then_with(|| a.0.time_ms.cmp(&b.0.time_ms))
                .then_with(|| b.0.id.cmp(&a.0.id))
        };
        let best = candidates.iter().max_by(by_score).copied();
        match best {
            Some((event, score)) => match groups.iter_mut().find(|g| g.0.id == event.id) {
                Some(group) => group.2.push(item),
                None => groups.push((event, score.score, vec![item])),
            },
            None => unexplained.push(item),
        }
    }
    // A cause must explain what establishes the finding, not only what supports it: an event
    // that explains a side effect of a payment failure is not the payment failure's cause.
    groups.retain(|(_, _, items)| {
        let keep = items.iter().any(|e| e.establishing);
        if !keep {
            unexplained.extend(items.iter().copied());
        }
        keep
    });
    groups.sort_by(|a, b| {
        a.0.time_ms
            .cmp(&b.0.time_ms)
            .then_with(|| a.0.id.cmp(&b.0.id))
    });
    if groups.is_empty() {
        return vec![recommendation(context, finding, &unexplained, &[], 0.0)];
    }
    let mut recommendations = Vec::new();
    for (index, (event, score, mut items)) in groups.iter().cloned().enumerate() {
        if index == 0 {
            items.extend(unexplained.iter().copied());
        }
        // Events that fired with the cause and explain the same evidence (a scenario often
        // injects several at once), when each is a plausible cause of this kind of finding on
        // its own: a DNS incident that fired with an exam season and declared page views "mixed"
        // is not a cause of the demand surge.
        let mut causes: Vec<&ContextEvent> = vec![event];
        for other in &context.events {
            if other.id != event.id
                && other.time_ms == event.time_ms
                && items.iter().any(|e| {
                    explains(context, other, e, bucket_ms)
                        && cause_score(other, &[e], finding.cause_types).plausibility
                            >= MIN_CAUSE_SCORE
                })
            {
                causes.push(other);
            }
        }
        // Another plausible cause at another time is named too when the stream stepped at each
        // of the two events: two real causes of one kind of shift (a competitor's price cut and
        // the end of term) are both causes, while a headline just before a cause, after which
        // nothing moved until the cause came, is not.
        for other in &context.events {
            if causes.iter().any(|c| c.id == other.id) {
                continue;
            }
            let steps_at_both = items.iter().filter(|e| e.establishing).any(|item| {
                explains(context, other, item, bucket_ms)
                    && cause_score(other, &[item], finding.cause_types).plausibility
                        >= MIN_CAUSE_SCORE
                    && stepped_at_each(context, event, other, item, bucket_ms)
            });
            if steps_at_both {
                causes.push(other);
            }
        }
        recommendations.push(recommendation(context, finding, &items, &causes, score));
    }
    recommendations
}

/// Whether `evidence`'s stream shifted its way across each of two events that fired in
/// different buckets: between the two events it had moved away from where it was before the
/// first (by [`EVENT_SHIFT_Z`] in mean z, over at least [`MIN_STEP_BUCKETS`] buckets), and after
/// the second it moved on by as much again. Read from the context's recent values, so both events
/// must fall within them; otherwise it cannot be told and the answer is no.
fn stepped_at_each(
    context: &AnalysisContext,
    one: &ContextEvent,
    other: &ContextEvent,
    evidence: &Evidence,
    bucket_ms: u64,
) -> bool {
    let (first, second) = if one.time_ms <= other.time_ms {
        (one, other)
    } else {
        (other, one)
    };
    let first_bucket = first.time_ms / bucket_ms * bucket_ms;
    let second_bucket = second.time_ms / bucket_ms * bucket_ms;
    if second_bucket == first_bucket {
        return false;
    }
    let sign = towards(evidence);
    let mean_z = |from: u64, to: u64| mean_z_over(context, evidence, from, to);
    let before = mean_z(
        first_bucket.saturating_sub(EVENT_WINDOW_BUCKETS as u64 * bucket_ms),
        first_bucket,
    );
    let between = mean_z(first_bucket + bucket_ms, second_bucket);
    let after = mean_z(second_bucket + bucket_ms, u64::MAX);
    match (before, between, after) {
        (Some((before, _)), Some((between, gap)), Some((after, _))) => {
            gap >= MIN_STEP_BUCKETS
                && sign * (between - before) >= EVENT_SHIFT_Z
                && sign * (after - between) >= EVENT_SHIFT_Z
        }
        _ => false,
    }
}

/// The bucket length the context was built with (the spacing of its recent values).
fn context_bucket_ms(context: &AnalysisContext) -> u64 {
    context.bucket_ms.max(1)
}

fn recommendation(
    context: &AnalysisContext,
    finding: &Finding,
    evidence: &[&Evidence],
    causes: &[&ContextEvent],
    cause_score: f64,
) -> Recommendation {
    let cause = if causes.is_empty() {
        "No recent external event explains this; look for an internal change.".to_string()
    } else {
        let names: Vec<String> = causes
            .iter()
            .map(|e| format!("{} ({}, {})", e.title, e.id, e.timestamp))
            .collect();
        format!(
            "{} — it came before the first anomaly and was expected to move {}.",
            names.join(" and "),
            causes[0].expected_impact.streams.join(", ")
        )
    };
    let mut ordered: Vec<&&Evidence> = evidence.iter().collect();
    ordered.sort_by(|a, b| b.z.abs().total_cmp(&a.z.abs()));
    let facts: Vec<String> = ordered.iter().take(3).map(|e| e.text.clone()).collect();
    let strength: f64 = evidence.iter().map(|e| e.z.abs()).sum();
    // Critical is for what needs someone now. A shift that a named, announced low-impact event
    // explains, at the size it announced (a regional CDN slowdown adding a fifth to latency),
    // is the expected consequence of something already known: worth a warning, not a page.
    let announced = !causes.is_empty()
        && causes
            .iter()
            .all(|c| c.expected_impact.magnitude == Magnitude::Low)
        && evidence
            .iter()
            .filter(|e| e.establishing)
            .all(|e| causes.iter().any(|c| size_fits(c, e)));
    let critical = !announced && evidence.iter().any(|e| e.flag == AnomalyFlag::Critical);
    let confidence = (40.0 + strength.min(30.0) + 20.0 * cause_score.min(1.5)).min(95.0) as u8;
    Recommendation {
        id: String::new(),
        priority: if critical {
            Priority::Critical
        } else {
            Priority::Warning
        },
        title: finding.title.clone(),
        description: format!("{} {}.", finding.summary, facts.join("; ")),
        impact: finding.impact.clone(),
        cause,
        actions: finding
            .actions
            .iter()
            .map(|a| RecommendedAction {
                id: String::new(),
                label: a.label.to_string(),
                description: a.description.to_string(),
                expected_impact: a.expected_impact.to_string(),
                time_to_effect: a.time_to_effect.to_string(),
            })
            .collect(),
        affected_streams: {
            let mut streams: Vec<String> = evidence.iter().map(|e| e.stream.clone()).collect();
            streams.sort();
            streams.dedup();
            streams
        },
        related_events: causes.iter().map(|e| e.id.clone()).collect(),
        confidence,
        timestamp: context.now.clone(),
        status: Status::Active,
        resolved_at: None,
        resolution: None,
        source: "rules".to_string(),
        fallback_reason: None,
        key: finding.key.clone(),
        last_seen: context.now.clone(),
    }
}
