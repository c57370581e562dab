//! The marketing flow: impressions become clicks, clicks signups or searches, signups and opened
//! emails searches; sent emails are opened. Draws from `marketing`.

use std::sync::Arc;

use super::super::{MarketEvent, Marketplace};
use crate::engine::{Context, MS_PER_HOUR, MS_PER_MINUTE, MS_PER_SECOND};
use crate::market::payload::Payload;
use crate::market::roles::Role;

impl Marketplace {
    /// What follows an impression, click, signup, or sent or opened email.
    pub(in crate::market::model) fn react_marketing(
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
            (Role::Impression, Payload::Campaign { .. }) => {
                let random = &mut self.random.marketing;
                if random.chance(flows.impression_to_click) {
                    let delay = random.between(1, 20) * MS_PER_SECOND;
                    Self::emit_later(context, delay, ids.click, payload.clone());
                }
            }
            (Role::Click, Payload::Campaign { .. }) => {
                let random = &mut self.random.marketing;
                if random.chance(flows.click_to_signup) {
                    let delay = random.between(2, 15) * MS_PER_MINUTE;
                    self.customers += 1;
                    let customer = self.customers - 1;
                    Self::emit_later(
                        context,
                        delay,
                        ids.signup,
                        Payload::Signup {
                            customer,
                            channel: 1,
                        },
                    );
                } else if random.chance(flows.click_to_search) {
                    let delay = random.between(20, 300) * MS_PER_SECOND;
                    let customer = Self::random_customer(random, self.customers);
                    let search = self.new_search(customer, now + delay);
                    Self::emit_later(context, delay, ids.search, search);
                }
            }
            (Role::Signup, Payload::Signup { customer, .. }) => {
                let random = &mut self.random.marketing;
                if random.chance(flows.signup_to_search) {
                    let delay = random.between(1, 30) * MS_PER_MINUTE;
                    let search = self.new_search(*customer, now + delay);
                    Self::emit_later(context, delay, ids.search, search);
                }
            }
            (Role::EmailSent, Payload::Email { .. }) => {
                let random = &mut self.random.marketing;
                if random.chance(flows.email_open) {
                    let delay = random.exponential(3.0 * MS_PER_HOUR as f64) as u64;
                    Self::emit_later(context, delay, ids.email_opened, payload.clone());
                }
            }
            (Role::EmailOpened, Payload::Email { customer, .. }) => {
                let random = &mut self.random.marketing;
                if random.chance(flows.open_to_search) {
                    let delay = random.between(1, 20) * MS_PER_MINUTE;
                    let search = self.new_search(*customer, now + delay);
                    Self::emit_later(context, delay, ids.search, search);
                }
            }
            _ => {}
        }
    }
}
