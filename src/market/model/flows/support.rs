//! The support flow: tickets wait in a FIFO queue that staffed shifts work through, may
//! escalate, and resolved ones may get a CSAT answer; chats may become tickets. Draws from
//! `support`.

use std::sync::Arc;

use super::super::{MarketEvent, Marketplace, SUPPORT_SHIFT_MS};
use crate::engine::{Context, Sink, MS_PER_HOUR, MS_PER_MINUTE};
use crate::market::coupling::{escalation_pressure, ESCALATION_BACKLOG_HOURS};
use crate::market::payload::{Payload, Reason, StreamEvent};
use crate::market::roles::Role;

impl Marketplace {
    pub(in crate::market::model) fn new_ticket(
        &mut self,
        customer: u32,
        reason: Reason,
    ) -> Payload {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        Payload::Ticket {
            ticket,
            customer,
            reason,
        }
    }

    /// What follows a ticket's creation or resolution, or a chat.
    pub(in crate::market::model) fn react_support(
        &mut self,
        role: Role,
        payload: &Payload,
        context: &mut Context<'_, MarketEvent>,
    ) {
        let ids = self.ids;
        let catalog = Arc::clone(&self.catalog);
        let flows = &catalog.flows;
        match (role, payload) {
            (Role::TicketCreated, Payload::Ticket { .. }) => {
                // Tickets wait in a first-in, first-out queue that staffed shifts work through
                // (see `SupportShift`); a long queue makes escalation more likely.
                self.ticket_queue.push_back(payload.clone());
                if !self.support_shift_scheduled {
                    self.support_shift_scheduled = true;
                    context.schedule_after(SUPPORT_SHIFT_MS, MarketEvent::SupportShift);
                }
                let pressure = escalation_pressure(
                    self.ticket_queue.len() as f64,
                    flows.support_capacity as f64 * ESCALATION_BACKLOG_HOURS,
                );
                let random = &mut self.random.support;
                if random.chance((flows.escalation_share * pressure).min(1.0)) {
                    let delay = random.exponential(2.0 * MS_PER_HOUR as f64) as u64;
                    Self::emit_later(context, delay, ids.ticket_escalated, payload.clone());
                }
            }
            (Role::TicketResolved, Payload::Ticket { .. }) => {
                let random = &mut self.random.support;
                if random.chance(flows.csat_after_resolution) {
                    let delay = random.exponential(MS_PER_HOUR as f64) as u64;
                    Self::emit_later(context, delay, ids.csat, payload.clone());
                }
            }
            (Role::ChatStarted, Payload::Chat { customer }) => {
                let random = &mut self.random.support;
                if random.chance(flows.chat_to_ticket) {
                    let delay = random.between(5, 30) * MS_PER_MINUTE;
                    let ticket = self.new_ticket(*customer, Reason::Question);
                    Self::emit_later(context, delay, ids.ticket_created, ticket);
                }
            }
            _ => {}
        }
    }

    /// Every five minutes, the agents on shift resolve the oldest waiting tickets.
    pub(in crate::market::model) fn on_support_shift<S: Sink<StreamEvent>>(
        &mut self,
        context: &mut Context<'_, MarketEvent>,
        sink: &mut S,
    ) {
        let ids = self.ids;
        if !self.arrivals_open && self.ticket_queue.is_empty() {
            self.support_shift_scheduled = false;
            return;
        }
        let now = context.now();
        let per_hour = self.catalog.flows.support_capacity as f64
            * self.profile_multiplier(self.catalog.support_profile, now)
            * self.levers.support_staffing;
        let capacity = per_hour * SUPPORT_SHIFT_MS as f64 / MS_PER_HOUR as f64;
        let mut resolvable = capacity.floor() as usize;
        if self.random.support.chance(capacity.fract()) {
            resolvable += 1;
        }
        // When arrivals are closed the queue is drained regardless of staffing.
        if !self.arrivals_open {
            resolvable = resolvable.max(1);
        }
        for _ in 0..resolvable {
            let Some(ticket) = self.ticket_queue.pop_front() else {
                break;
            };
            self.emit(ids.ticket_resolved, ticket, context, sink);
        }
        context.schedule_after(SUPPORT_SHIFT_MS, MarketEvent::SupportShift);
    }
}
