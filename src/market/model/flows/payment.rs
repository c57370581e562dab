//! The payment flow: charges after a lesson (succeeded or failed, a failure may bring a ticket
//! and churn risk), and the daily payout run over tutors' unpaid earnings. Refunds and
//! chargebacks are raised by the lesson flow. Draws from `payment`.

use std::sync::Arc;

use super::super::{MarketEvent, Marketplace};
use crate::engine::{Context, Sink, MS_PER_DAY, MS_PER_HOUR, MS_PER_SECOND};
use crate::market::payload::{Payload, Reason, StreamEvent};
use crate::market::roles::Role;

impl Marketplace {
    /// What follows a charge attempt, success or failure.
    pub(in crate::market::model) fn react_payment(
        &mut self,
        role: Role,
        payload: &Payload,
        context: &mut Context<'_, MarketEvent>,
    ) {
        let ids = self.ids;
        let catalog = Arc::clone(&self.catalog);
        let flows = &catalog.flows;
        match (role, payload) {
            (Role::ChargeAttempted, Payload::Payment { .. }) => {
                let fails = self
                    .random
                    .payment
                    .chance((flows.payment_failure * self.levers.payment_failure).min(1.0));
                let outcome = if fails {
                    ids.charge_failed
                } else {
                    ids.charge_succeeded
                };
                Self::emit_later(context, 2 * MS_PER_SECOND, outcome, payload.clone());
            }
            (
                Role::ChargeSucceeded,
                Payload::Payment {
                    tutor,
                    amount_cents,
                    ..
                },
            ) => {
                if let Some(t) = self.tutors.get_mut(*tutor as usize) {
                    t.unpaid_cents += *amount_cents as u64;
                    t.unpaid_sessions += 1;
                }
            }
            (Role::ChargeFailed, Payload::Payment { customer, .. }) => {
                let random = &mut self.random.payment;
                let ticket = random.chance(flows.ticket_after_payment_failure);
                let churn = random.chance(flows.churn_after_payment_failure);
                let ticket_delay = random.exponential(flows.ticket_delay_mean as f64) as u64;
                let churn_delay = random.exponential(MS_PER_HOUR as f64) as u64;
                if ticket {
                    let ticket = self.new_ticket(*customer, Reason::PaymentFailed);
                    Self::emit_later(context, ticket_delay, ids.ticket_created, ticket);
                }
                if churn {
                    Self::emit_later(
                        context,
                        churn_delay,
                        ids.churn_risk,
                        Payload::CustomerReason {
                            customer: *customer,
                            reason: Reason::PaymentFailed,
                        },
                    );
                }
            }
            _ => {}
        }
    }

    /// The daily payout run: every tutor with unpaid earnings is paid.
    pub(in crate::market::model) fn on_payout_run<S: Sink<StreamEvent>>(
        &mut self,
        context: &mut Context<'_, MarketEvent>,
        sink: &mut S,
    ) {
        let ids = self.ids;
        if !self.arrivals_open {
            return;
        }
        for tutor in 0..self.tutors.len() {
            let t = &mut self.tutors[tutor];
            if t.unpaid_cents > 0 {
                let payload = Payload::Payout {
                    tutor: tutor as u32,
                    amount_cents: t.unpaid_cents,
                    sessions: t.unpaid_sessions,
                };
                t.unpaid_cents = 0;
                t.unpaid_sessions = 0;
                self.emit(ids.payout, payload, context, sink);
            }
        }
        context.schedule_after(MS_PER_DAY, MarketEvent::PayoutRun);
    }
}
