//! The search flow: searches, the profile views and booking requests they lead to, and the
//! messages and favorites that follow a profile view. Draws from the `search` generator.

use std::sync::Arc;

use super::super::{MarketEvent, Marketplace};
use crate::engine::{Context, VirtualTimeMs, MS_PER_HOUR, MS_PER_MINUTE, MS_PER_SECOND};
use crate::market::payload::Payload;
use crate::market::roles::Role;

impl Marketplace {
    fn visibility(&self, subject: u8) -> f64 {
        let online = self.supply[subject as usize].online.len() as f64;
        online / (online + self.catalog.flows.supply_visibility_half)
    }

    pub(in crate::market::model) fn new_search(
        &mut self,
        customer: u32,
        now: VirtualTimeMs,
    ) -> Payload {
        let random = &mut self.random.search;
        let subject = random.weighted_index(&self.subject_weights) as u8;
        let lead_hours = random.between(2, 72);
        let window_start = self.days.epoch().next_hour_start(now) + lead_hours * MS_PER_HOUR;
        Payload::Search {
            customer,
            subject,
            window_start,
            window_hours: random.between(2, 6) as u8,
        }
    }

    /// What follows a search or a profile view.
    pub(in crate::market::model) fn react_search(
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
            (
                Role::Search,
                Payload::Search {
                    customer, subject, ..
                },
            ) => {
                let (customer, subject) = (*customer, *subject);
                let visibility = self.visibility(subject);
                let views_mean = flows.profile_views_per_search * visibility;
                let search_to_request = flows.search_to_request;
                let mut random = self.random.search.clone();
                let views = random.geometric(views_mean);
                for _ in 0..views {
                    let tutor = self.pick_tutor(&mut random, subject);
                    let delay = random.between(5, 120) * MS_PER_SECOND;
                    Self::emit_later(
                        context,
                        delay,
                        ids.profile_viewed,
                        Payload::CustomerTutor {
                            customer,
                            tutor,
                            subject,
                        },
                    );
                }
                let requests = random.chance(search_to_request * visibility);
                let delay =
                    (random.exponential(4.0 * MS_PER_MINUTE as f64)) as u64 + 30 * MS_PER_SECOND;
                self.random.search = random;
                if requests {
                    // The booking is created when the request is made, so its id and details
                    // are drawn now and carried along.
                    let booking = self.new_booking(customer, subject, now + delay);
                    Self::emit_later(context, delay, ids.requested, Payload::Booking(booking));
                }
            }
            (
                Role::ProfileView,
                Payload::CustomerTutor {
                    customer,
                    tutor,
                    subject,
                },
            ) => {
                let random = &mut self.random.search;
                if random.chance(flows.view_to_message) {
                    let delay = random.between(30, 600) * MS_PER_SECOND;
                    Self::emit_later(context, delay, ids.message, payload.clone());
                }
                if random.chance(flows.view_to_favorite) {
                    let delay = random.between(5, 60) * MS_PER_SECOND;
                    Self::emit_later(
                        context,
                        delay,
                        ids.favorite,
                        Payload::CustomerTutor {
                            customer: *customer,
                            tutor: *tutor,
                            subject: *subject,
                        },
                    );
                }
            }
            _ => {}
        }
    }
}
