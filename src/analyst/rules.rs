//! The rules analyst: the default, offline and deterministic. It reads the shared context,
//! matches the current anomalies against diagnoses written in terms of the marketplace's flows
//! (fewer tutors online + more expired requests = a supply shortfall, not a demand problem),
//! and names a cause among the recent external events only when timing, the streams the event
//! was expected to move, and what actually moved after it agree.

use super::context::{AnalysisContext, ContextAnomaly, ContextEvent};
use super::recommendation::{Priority, Recommendation, RecommendedAction, Status};
use super::Analyst;
use crate::diagnostics::parse_duration_ms;
use crate::scenario::definition::{Direction, EventType, Magnitude};
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
    /// Event types that can plausibly cause it.
    cause_types: &'static [EventType],
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
        cause_types: &[EventType::Operational, EventType::Competitive],
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
        cause_types: &[EventType::Competitive, EventType::Operational],
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
        required: &[
            ("customer.tutor.search", Up),
            ("session.booking.requested", Up),
            ("customer.signup.completed", Up),
        ],
        supporting: &[
            ("customer.profile.viewed", Up),
            ("customer.message.sent", Up),
            ("customer.favorite.added", Up),
            ("platform.page.view", Up),
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
        cause_types: &[
            EventType::Academic,
            EventType::Marketing,
            EventType::Competitive,
        ],
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
        ],
        supporting: &[
            ("session.booking.requested", Down),
            ("customer.profile.viewed", Down),
            ("customer.message.sent", Down),
            ("customer.favorite.added", Down),
            ("platform.page.view", Down),
            ("session.booking.confirmed", Down),
            ("session.started", Down),
            ("session.completed", Down),
            ("payment.charge.attempted", Down),
            ("payment.charge.succeeded", Down),
            ("marketing.campaign.click", Down),
        ],
        unless: &[("tutor.online.count", Down)],
        cause_types: &[EventType::Competitive, EventType::Academic],
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
        cause_types: &[EventType::Infrastructure, EventType::Operational],
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
        cause_types: &[EventType::Product, EventType::Infrastructure],
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
        cause_types: &[EventType::Operational, EventType::Product],
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
        required: &[
            ("session.review.flagged", Up),
            ("payment.refund.issued", Up),
            ("session.noshow.tutor", Up),
        ],
        supporting: &[
            ("customer.churn.risk_flagged", Up),
            ("support.ticket.created", Up),
            ("session.rating.submitted", Either),
        ],
        unless: &[],
        cause_types: &[EventType::Infrastructure, EventType::Product, EventType::Operational],
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
        cause_types: &[EventType::Product, EventType::Competitive],
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
        cause_types: &[EventType::Marketing, EventType::Competitive],
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
/// A cause is named only above this score (see [`cause_score`]).
const MIN_CAUSE_SCORE: f64 = 0.5;
/// An event may follow the first flagged bucket by this much and still be its cause: flags
/// need two buckets, so the bucket before the first flag already moved.
const CAUSE_LEAD_TOLERANCE_MS: u64 = 2 * 3_600_000;

fn moves(anomaly: &ContextAnomaly, wanted: Move) -> bool {
    match wanted {
        Either => true,
        Up => anomaly.direction == "up",
        Down => anomaly.direction == "down",
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
    let mut explained: Vec<&str> = Vec::new();
    let mut recommendations = Vec::new();
    for diagnosis in DIAGNOSES {
        let find = |list: &[(&str, Move)]| -> Vec<&ContextAnomaly> {
            list.iter()
                .filter_map(|(stream, wanted)| {
                    context.anomaly(stream).filter(|a| moves(a, *wanted))
                })
                .collect()
        };
        let required = find(diagnosis.required);
        if required.is_empty() || !find(diagnosis.unless).is_empty() {
            continue;
        }
        let mut evidence = required;
        evidence.extend(find(diagnosis.supporting));
        evidence.retain(|a| !explained.contains(&a.stream.as_str()));
        let strength: f64 = evidence.iter().map(|a| a.z.abs()).sum();
        let critical = evidence.iter().any(|a| a.flag == AnomalyFlag::Critical);
        let strongest = evidence.iter().map(|a| a.z.abs()).fold(0.0, f64::max);
        // Enough evidence: several streams together, or one far out of line.
        let enough = evidence.len() >= 2 || strongest >= SINGLE_STREAM_Z;
        if strength < MIN_EVIDENCE_Z || !enough {
            continue;
        }
        explained.extend(evidence.iter().map(|a| a.stream.as_str()));
        recommendations.push(recommend(context, diagnosis, &evidence, critical));
    }
    recommendations
}

/// How well `event` explains `evidence` whose first anomaly started at `onset_ms`; 0 when it
/// cannot. An event before the onset must have been expected to move some of the evidence,
/// in the direction it moved, and the onset must fall within the event's declared duration.
/// An event after the onset (announced while the anomaly was under way) must in addition be
/// supported by the data: a stream it was expected to move actually shifted after it.
fn cause_score(
    context: &AnalysisContext,
    event: &ContextEvent,
    evidence: &[&ContextAnomaly],
    onset_ms: u64,
    cause_types: &[EventType],
) -> f64 {
    let declared = &event.expected_impact;
    let direction_matches = |direction: &str| match declared.direction {
        Direction::Increase => direction == "up",
        Direction::Decrease => direction == "down",
        Direction::Mixed => true,
    };
    let declared_evidence = evidence
        .iter()
        .filter(|a| declared.streams.contains(&a.stream) && direction_matches(&a.direction))
        .count();
    if declared_evidence == 0 {
        return 0.0;
    }
    let shifted: Vec<&str> = context
        .correlations
        .events
        .iter()
        .find(|c| c.event_id == event.id)
        .map(|c| {
            c.streams
                .iter()
                .filter(|s| direction_matches(s.direction))
                .map(|s| s.stream.as_str())
                .collect()
        })
        .unwrap_or_default();
    let shifted_evidence = evidence
        .iter()
        .filter(|a| shifted.contains(&a.stream.as_str()))
        .count();
    let timing = if event.time_ms <= onset_ms + CAUSE_LEAD_TOLERANCE_MS {
        let declared_ms = parse_duration_ms(&declared.duration).unwrap_or(u64::MAX);
        if onset_ms.saturating_sub(event.time_ms) > declared_ms {
            return 0.0;
        }
        let hours_before = onset_ms.saturating_sub(event.time_ms) as f64 / 3_600_000.0;
        // Slow events (a 30-day recruiting drive) are given longer to show than quick ones.
        let scale_hours = (declared_ms as f64 / 3_600_000.0 / 4.0).clamp(6.0, 48.0);
        1.0 / (1.0 + hours_before / scale_hours)
    } else {
        // Announced while the anomaly was under way: only if a stream it was expected to move
        // became anomalous after it, and shifted after it.
        let new_after = evidence.iter().any(|a| {
            a.since_ms + CAUSE_LEAD_TOLERANCE_MS >= event.time_ms
                && declared.streams.contains(&a.stream)
                && direction_matches(&a.direction)
        });
        let supported = declared
            .streams
            .iter()
            .any(|s| shifted.contains(&s.as_str()));
        if !(new_after && supported) {
            return 0.0;
        }
        0.5
    };
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
    timing
        * affinity
        * magnitude
        * (1.0 + declared_evidence.min(3) as f64 * 0.5 + shifted_evidence.min(3) as f64 * 0.25)
}

fn describe(anomaly: &ContextAnomaly) -> String {
    format!(
        "{} {} {:.0} % vs expected ({:.1} vs {:.1}, z {:+.1})",
        anomaly.stream,
        if anomaly.direction == "up" {
            "up"
        } else {
            "down"
        },
        anomaly.change_percent.abs(),
        anomaly.value,
        anomaly.expected,
        anomaly.z
    )
}

fn recommend(
    context: &AnalysisContext,
    diagnosis: &Diagnosis,
    evidence: &[&ContextAnomaly],
    critical: bool,
) -> Recommendation {
    let onset_ms = evidence.iter().map(|a| a.since_ms).min().unwrap_or(0);
    let mut scored: Vec<(f64, &ContextEvent)> = context
        .events
        .iter()
        .map(|e| {
            (
                cause_score(context, e, evidence, onset_ms, diagnosis.cause_types),
                e,
            )
        })
        .filter(|(score, _)| *score >= MIN_CAUSE_SCORE)
        .collect();
    scored.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| b.1.time_ms.cmp(&a.1.time_ms))
            .then_with(|| a.1.id.cmp(&b.1.id))
    });
    // The best cause, and any event that fired with it (a scenario often brings several).
    let causes: Vec<&ContextEvent> = match scored.first() {
        Some((best, first)) => scored
            .iter()
            .filter(|(score, e)| e.time_ms == first.time_ms && *score >= best * 0.5)
            .map(|(_, e)| *e)
            .collect(),
        None => Vec::new(),
    };
    let mut ordered: Vec<&&ContextAnomaly> = evidence.iter().collect();
    ordered.sort_by(|a, b| b.z.abs().total_cmp(&a.z.abs()));
    let facts: Vec<String> = ordered.iter().take(3).map(|a| describe(a)).collect();
    let cause = if causes.is_empty() {
        "No recent external event explains this; look for an internal change.".to_string()
    } else {
        let names: Vec<String> = causes
            .iter()
            .map(|e| format!("{} ({}, {})", e.title, e.id, e.timestamp))
            .collect();
        format!(
            "{} — it came shortly before the first anomaly and was expected to move {}.",
            names.join(" and "),
            causes[0].expected_impact.streams.join(", ")
        )
    };
    let best_score = scored.first().map_or(0.0, |s| s.0);
    let strength: f64 = evidence.iter().map(|a| a.z.abs()).sum();
    let confidence = (40.0 + strength.min(30.0) + 20.0 * best_score.min(1.5)).min(95.0) as u8;
    Recommendation {
        id: String::new(),
        priority: if critical {
            Priority::Critical
        } else {
            Priority::Warning
        },
        title: diagnosis.title.to_string(),
        description: format!("{} {}.", diagnosis.summary, facts.join("; ")),
        impact: diagnosis.impact.to_string(),
        cause,
        actions: diagnosis
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
            let mut streams: Vec<String> = evidence.iter().map(|a| a.stream.clone()).collect();
            streams.sort();
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
        key: diagnosis.key.to_string(),
        last_seen: context.now.clone(),
    }
}
