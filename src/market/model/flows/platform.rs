//! The platform flow: an API error or an app crash may make a customer open a ticket. Draws
//! from `platform`.

use std::sync::Arc;

use super::super::{MarketEvent, Marketplace};
use crate::engine::{Context, MS_PER_MINUTE};
use crate::market::payload::Reason;
use crate::market::roles::Role;

impl Marketplace {
    /// What follows an API error or an app crash (`role` is one of the two).
    pub(in crate::market::model) fn react_platform(
        &mut self,
        role: Role,
        context: &mut Context<'_, MarketEvent>,
    ) {
        let ids = self.ids;
        let catalog = Arc::clone(&self.catalog);
        let flows = &catalog.flows;
        let (share, reason) = if role == Role::AppCrash {
            (flows.crash_to_ticket, Reason::AppCrash)
        } else {
            (flows.api_error_to_ticket, Reason::ApiError)
        };
        let random = &mut self.random.platform;
        if random.chance(share) {
            let customer = Self::random_customer(random, self.customers);
            let delay = random.between(5, 60) * MS_PER_MINUTE;
            let ticket = self.new_ticket(customer, reason);
            Self::emit_later(context, delay, ids.ticket_created, ticket);
        }
    }
}
