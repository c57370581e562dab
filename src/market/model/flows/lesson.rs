//! The lesson flow: a booked lesson starts or is a no-show, completes and is charged, may be
//! rated (a low rating is flagged and may bring churn, tickets, refunds and chargebacks; a top
//! rating may bring a referral) and may lead to a subscription. Draws from `session`.

use std::sync::Arc;

use super::super::{MarketEvent, Marketplace};
use crate::engine::{Context, Sink, MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE, MS_PER_SECOND};
use crate::market::payload::{Booking, Payload, Reason, StreamEvent};
use crate::market::roles::Role;

impl Marketplace {
    /// What follows a lesson's start, completion, no-show, rating, flag or churn risk.
    pub(in crate::market::model) fn react_lesson(
        &mut self,
        role: Role,
        payload: &Payload,
        context: &mut Context<'_, MarketEvent>,
    ) {
        let now = context.now();
        let ids = self.ids;
        let catalog = Arc::clone(&self.catalog);
        let flows = &catalog.flows;
        match (role, payload) {
            (Role::SessionStarted, Payload::Booking(booking)) => {
                let end = booking.start.max(now) + booking.minutes as u64 * MS_PER_MINUTE;
                context.schedule_at(
                    end,
                    MarketEvent::Emit {
                        stream: ids.completed,
                        payload: payload.clone(),
                    },
                );
            }
            (Role::SessionCompleted, Payload::Booking(booking)) => {
                let payment = self.next_payment;
                self.next_payment += 1;
                Self::emit_later(
                    context,
                    30 * MS_PER_SECOND,
                    ids.charge_attempted,
                    Payload::Payment {
                        payment,
                        booking: booking.id,
                        customer: booking.customer,
                        tutor: booking.tutor,
                        amount_cents: booking.price_cents,
                    },
                );
                let random = &mut self.random.session;
                if random.chance(flows.rating_share) {
                    let low_share = (flows.low_rating_share * self.levers.low_ratings).min(1.0);
                    let stars = if random.chance(low_share) {
                        1 + random.below(2) as u8
                    } else {
                        [3, 4, 4, 5, 5, 5, 5][random.below(7) as usize]
                    };
                    let delay = MS_PER_MINUTE + random.exponential(2.0 * MS_PER_HOUR as f64) as u64;
                    Self::emit_later(
                        context,
                        delay,
                        ids.rating,
                        Payload::Rating {
                            booking: booking.id,
                            customer: booking.customer,
                            tutor: booking.tutor,
                            subject: booking.subject,
                            stars,
                            price_cents: booking.price_cents,
                        },
                    );
                }
                if random.chance(flows.subscription_after_session) {
                    let delay = random.between(5, 120) * MS_PER_MINUTE;
                    Self::emit_later(
                        context,
                        delay,
                        ids.subscription,
                        Payload::CustomerTutor {
                            customer: booking.customer,
                            tutor: booking.tutor,
                            subject: booking.subject,
                        },
                    );
                }
            }
            (Role::NoShowTutor, Payload::Booking(booking)) => {
                let random = &mut self.random.session;
                let refund = random.chance(flows.refund_after_tutor_noshow);
                let ticket = random.chance(flows.ticket_after_tutor_noshow);
                let delay = MS_PER_MINUTE * random.between(10, 180);
                if refund {
                    let payment = self.next_payment;
                    self.next_payment += 1;
                    Self::emit_later(
                        context,
                        delay,
                        ids.refund,
                        Payload::Payment {
                            payment,
                            booking: booking.id,
                            customer: booking.customer,
                            tutor: booking.tutor,
                            amount_cents: booking.price_cents,
                        },
                    );
                }
                if ticket {
                    let ticket = self.new_ticket(booking.customer, Reason::TutorNoShow);
                    Self::emit_later(context, delay / 2, ids.ticket_created, ticket);
                }
            }
            (
                Role::RatingSubmitted,
                Payload::Rating {
                    stars,
                    customer,
                    tutor,
                    subject,
                    ..
                },
            ) => {
                let random = &mut self.random.session;
                if *stars <= 2 {
                    Self::emit_later(
                        context,
                        10 * MS_PER_MINUTE,
                        ids.review_flagged,
                        payload.clone(),
                    );
                } else if *stars == 5 && random.chance(flows.referral_after_top_rating) {
                    let delay = random.between(1, 48) * MS_PER_HOUR;
                    Self::emit_later(
                        context,
                        delay,
                        ids.referral,
                        Payload::CustomerTutor {
                            customer: *customer,
                            tutor: *tutor,
                            subject: *subject,
                        },
                    );
                }
            }
            (
                Role::ReviewFlagged,
                Payload::Rating {
                    booking,
                    customer,
                    tutor,
                    price_cents,
                    ..
                },
            ) => {
                let random = &mut self.random.session;
                let churn = random.chance(flows.churn_after_low_rating);
                let ticket = random.chance(flows.ticket_after_low_rating);
                let refund = random.chance(flows.refund_after_low_rating);
                let chargeback = random.chance(flows.chargeback_after_low_rating);
                let tutor_churn = random.chance(flows.tutor_churn_after_low_rating);
                let delay = random.between(30, 24 * 60) * MS_PER_MINUTE;
                let (customer, tutor, booking, amount_cents) =
                    (*customer, *tutor, *booking, *price_cents);
                if churn {
                    Self::emit_later(
                        context,
                        delay,
                        ids.churn_risk,
                        Payload::CustomerReason {
                            customer,
                            reason: Reason::LowRating,
                        },
                    );
                }
                if ticket {
                    let ticket = self.new_ticket(customer, Reason::LowRating);
                    Self::emit_later(context, delay / 3, ids.ticket_created, ticket);
                }
                if refund {
                    let payment = self.next_payment;
                    self.next_payment += 1;
                    Self::emit_later(
                        context,
                        delay,
                        ids.refund,
                        Payload::Payment {
                            payment,
                            booking,
                            customer,
                            tutor,
                            amount_cents,
                        },
                    );
                }
                if chargeback {
                    let payment = self.next_payment;
                    self.next_payment += 1;
                    Self::emit_later(
                        context,
                        delay * 5,
                        ids.chargeback,
                        Payload::Payment {
                            payment,
                            booking,
                            customer,
                            tutor,
                            amount_cents,
                        },
                    );
                }
                if tutor_churn {
                    if let Some(t) = self.tutors.get(tutor as usize) {
                        let subject = t.subject;
                        Self::emit_later(
                            context,
                            delay * 2,
                            ids.tutor_churned,
                            Payload::Tutor { tutor, subject },
                        );
                    }
                }
            }
            (Role::ChurnRisk, Payload::CustomerReason { customer, reason }) => {
                let random = &mut self.random.session;
                if random.chance(flows.churn_to_deletion) {
                    let delay = random.exponential(3.0 * MS_PER_DAY as f64) as u64;
                    Self::emit_later(
                        context,
                        delay,
                        ids.account_deleted,
                        Payload::CustomerReason {
                            customer: *customer,
                            reason: *reason,
                        },
                    );
                }
            }
            _ => {}
        }
    }

    /// A booked lesson's start time: the student or tutor is absent, or it starts.
    pub(in crate::market::model) fn on_session_start<S: Sink<StreamEvent>>(
        &mut self,
        booking: Booking,
        context: &mut Context<'_, MarketEvent>,
        sink: &mut S,
    ) {
        let ids = self.ids;
        let flows = &self.catalog.flows;
        let (student_absent, tutor_absent) = (flows.noshow_student, flows.noshow_tutor);
        let roll = self.random.session.uniform();
        let stream = if roll < student_absent {
            ids.noshow_student
        } else if roll < student_absent + tutor_absent {
            ids.noshow_tutor
        } else {
            ids.started
        };
        self.emit(stream, Payload::Booking(booking), context, sink);
    }
}
