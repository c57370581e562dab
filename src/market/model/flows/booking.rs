//! The booking flow: a request waits for a tutor's response before its expiry timer and becomes
//! confirmed, declined or expired; a confirmed booking is cancelled, rescheduled or goes on to
//! its lesson. Draws from the `booking` generator (the request) and `session` (what follows).

use std::sync::Arc;

use super::super::{MarketEvent, Marketplace, OpenRequest};
use crate::engine::{Context, Sink, VirtualTimeMs, MS_PER_DAY, MS_PER_HOUR, MS_PER_MINUTE};
use crate::market::payload::{Booking, Payload, StreamEvent};
use crate::market::roles::Role;

impl Marketplace {
    /// A start time for a lesson booked now: after a lead time, between 08:00 and 22:00.
    fn lesson_start(&mut self, now: VirtualTimeMs) -> VirtualTimeMs {
        let epoch = self.days.epoch();
        let random = &mut self.random.booking;
        let lead =
            MS_PER_HOUR + random.exponential(self.catalog.flows.booking_lead_mean as f64) as u64;
        let mut start = now + lead;
        let hour = epoch.hour_of_day(start);
        if !(8..22).contains(&hour) {
            start = epoch.next_time_of_day(start, 8) + random.below(12) * MS_PER_HOUR;
        }
        // Lessons start on the quarter hour.
        let quarter = 15 * MS_PER_MINUTE;
        let absolute = epoch.absolute_ms(start);
        start + (quarter - absolute.rem_euclid(quarter as i64) as u64) % quarter
    }

    pub(in crate::market::model) fn new_booking(
        &mut self,
        customer: u32,
        subject: u8,
        now: VirtualTimeMs,
    ) -> Booking {
        let mut random = self.random.booking.clone();
        let tutor = self.pick_tutor(&mut random, subject);
        let flows = &self.catalog.flows;
        let minutes = flows.session_minutes[random.weighted_index(&flows.session_minutes_weights)];
        let price_per_hour = self.catalog.subjects[subject as usize].price_per_hour;
        let price_cents = (price_per_hour * minutes as f64 / 60.0 * 100.0).round() as u32;
        self.random.booking = random;
        let start = self.lesson_start(now);
        let id = self.next_booking;
        self.next_booking += 1;
        Booking {
            id,
            customer,
            tutor,
            subject,
            start,
            minutes,
            price_cents,
        }
    }

    /// What follows a booking request, confirmation or reschedule.
    pub(in crate::market::model) fn react_booking(
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
            (Role::BookingRequested, Payload::Booking(booking)) => {
                let supply = &mut self.supply[booking.subject as usize];
                supply.open_requests += 1;
                let online = supply.online.len() as f64;
                let open = supply.open_requests as f64;
                let effective =
                    online / (1.0 + open / (online * flows.requests_per_tutor).max(1.0));
                let expiry = context.schedule_after(
                    flows.request_expiry,
                    MarketEvent::BookingExpiry {
                        booking: booking.id,
                    },
                );
                let random = &mut self.random.booking;
                if effective > 0.0 {
                    let mean_response_ms =
                        flows.response_tutor_minutes / effective * MS_PER_MINUTE as f64;
                    let response = random.exponential(mean_response_ms) as u64;
                    let accept = random.chance(flows.tutor_accept * self.levers.tutor_accept);
                    if response < flows.request_expiry {
                        context.schedule_after(
                            response,
                            MarketEvent::BookingResponse {
                                booking: booking.id,
                                accept,
                            },
                        );
                    }
                }
                self.open_requests.insert(
                    booking.id,
                    OpenRequest {
                        booking: *booking,
                        expiry,
                    },
                );
            }
            (Role::BookingConfirmed, Payload::Booking(booking)) => {
                let random = &mut self.random.session;
                let until_start = booking.start.saturating_sub(now);
                let roll = random.uniform();
                if roll < flows.cancel_before_start {
                    let at = random.below(until_start.max(1));
                    Self::emit_later(context, at, ids.cancelled, payload.clone());
                } else if roll < flows.cancel_before_start + flows.reschedule_before_start {
                    let at = random.below(until_start.max(1));
                    let moved = Booking {
                        start: booking.start + MS_PER_DAY,
                        ..*booking
                    };
                    Self::emit_later(context, at, ids.rescheduled, Payload::Booking(moved));
                } else {
                    context.schedule_at(
                        booking.start,
                        MarketEvent::SessionStart { booking: *booking },
                    );
                }
            }
            (Role::BookingRescheduled, Payload::Booking(booking)) => {
                context.schedule_at(
                    booking.start,
                    MarketEvent::SessionStart { booking: *booking },
                );
            }
            _ => {}
        }
    }

    /// A tutor answers an open request (its expiry timer is cancelled).
    pub(in crate::market::model) fn on_booking_response<S: Sink<StreamEvent>>(
        &mut self,
        booking: u64,
        accept: bool,
        context: &mut Context<'_, MarketEvent>,
        sink: &mut S,
    ) {
        let ids = self.ids;
        if let Some(open) = self.open_requests.remove(&booking) {
            context.cancel(open.expiry);
            let supply = &mut self.supply[open.booking.subject as usize];
            supply.open_requests = supply.open_requests.saturating_sub(1);
            let stream = if accept { ids.confirmed } else { ids.declined };
            self.emit(stream, Payload::Booking(open.booking), context, sink);
        }
    }

    /// An open request nobody answered in time expires.
    pub(in crate::market::model) fn on_booking_expiry<S: Sink<StreamEvent>>(
        &mut self,
        booking: u64,
        context: &mut Context<'_, MarketEvent>,
        sink: &mut S,
    ) {
        let ids = self.ids;
        if let Some(open) = self.open_requests.remove(&booking) {
            let supply = &mut self.supply[open.booking.subject as usize];
            supply.open_requests = supply.open_requests.saturating_sub(1);
            self.emit(ids.expired, Payload::Booking(open.booking), context, sink);
        }
    }
}
