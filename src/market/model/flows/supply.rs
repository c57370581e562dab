//! Tutor supply: the pool per subject (online and offline lists), tutors coming online and
//! going offline, onboarding of applicants and tutor churn. Draws from `tutor` (applicants) and
//! `supply` (who comes online and for how long).

use std::sync::Arc;

use super::super::{MarketEvent, Marketplace, Tutor};
use crate::engine::{Context, RandomStream, Sink, MS_PER_HOUR, MS_PER_MINUTE};
use crate::market::payload::{Payload, StreamEvent};
use crate::market::roles::Role;

impl Marketplace {
    /// The tutor pool at t = 0, then each subject's come-online process.
    pub(in crate::market::model) fn start_supply(
        &mut self,
        context: &mut Context<'_, MarketEvent>,
    ) {
        let catalog = Arc::clone(&self.catalog);
        // The tutor pool, with the share online that the supply process would hold at t = 0.
        let stint_hours = catalog.flows.tutor_stint_mean as f64 / MS_PER_HOUR as f64;
        for (index, subject) in catalog.subjects.iter().enumerate() {
            let rate = catalog.flows.tutor_online_rate_per_hour
                * self.profile_multiplier(catalog.supply_profile, 0)
                * self.levers.supply_by_subject[index];
            let online_share = rate * stint_hours / (1.0 + rate * stint_hours);
            for _ in 0..subject.tutors {
                let tutor = self.add_tutor(index as u8, false);
                if self.random.supply.chance(online_share) {
                    self.bring_online(tutor, context);
                }
            }
        }
        for index in 0..catalog.subjects.len() {
            self.schedule_supply(index as u8, context);
        }
    }

    /// A tutor of `subject` to show or book: an online one when any is online.
    pub(in crate::market::model) fn pick_tutor(
        &self,
        random: &mut RandomStream,
        subject: u8,
    ) -> u32 {
        let supply = &self.supply[subject as usize];
        let pool = if supply.online.is_empty() {
            &supply.offline
        } else {
            &supply.online
        };
        if pool.is_empty() {
            0
        } else {
            pool[random.below(pool.len() as u64) as usize]
        }
    }

    pub(in crate::market::model) fn add_tutor(&mut self, subject: u8, online: bool) -> u32 {
        let id = self.tutors.len() as u32;
        let supply = &mut self.supply[subject as usize];
        let list = if online {
            &mut supply.online
        } else {
            &mut supply.offline
        };
        list.push(id);
        self.tutors.push(Tutor {
            subject,
            online,
            active: true,
            list_index: (list.len() - 1) as u32,
            unpaid_cents: 0,
            unpaid_sessions: 0,
        });
        id
    }

    /// Moves a tutor between its subject's online and offline lists in O(1).
    fn set_online(&mut self, tutor: u32, online: bool) {
        let (subject, was_online, index) = {
            let t = &self.tutors[tutor as usize];
            (t.subject as usize, t.online, t.list_index as usize)
        };
        if was_online == online {
            return;
        }
        let supply = &mut self.supply[subject];
        let (from, to) = if online {
            (&mut supply.offline, &mut supply.online)
        } else {
            (&mut supply.online, &mut supply.offline)
        };
        from.swap_remove(index);
        if let Some(&moved) = from.get(index) {
            self.tutors[moved as usize].list_index = index as u32;
        }
        to.push(tutor);
        let new_index = (to.len() - 1) as u32;
        let t = &mut self.tutors[tutor as usize];
        t.online = online;
        t.list_index = new_index;
    }

    /// Takes a tutor out of the pool (it finishes any online stint, then never returns).
    fn retire_tutor(&mut self, tutor: u32) {
        let Some(t) = self.tutors.get(tutor as usize) else {
            return;
        };
        if !t.active {
            return;
        }
        let (subject, online, index) = (t.subject as usize, t.online, t.list_index as usize);
        self.tutors[tutor as usize].active = false;
        if !online {
            let offline = &mut self.supply[subject].offline;
            offline.swap_remove(index);
            if let Some(&moved) = offline.get(index) {
                self.tutors[moved as usize].list_index = index as u32;
            }
        }
    }

    fn bring_online(&mut self, tutor: u32, context: &mut Context<'_, MarketEvent>) -> Payload {
        self.set_online(tutor, true);
        let stint = self
            .random
            .supply
            .exponential(self.catalog.flows.tutor_stint_mean as f64);
        context.schedule_after(
            stint as u64 + MS_PER_MINUTE,
            MarketEvent::TutorOffline { tutor },
        );
        Payload::Tutor {
            tutor,
            subject: self.tutors[tutor as usize].subject,
        }
    }

    /// What follows a tutor's signup or churn.
    pub(in crate::market::model) fn react_supply(
        &mut self,
        role: Role,
        payload: &Payload,
        context: &mut Context<'_, MarketEvent>,
    ) {
        let ids = self.ids;
        let catalog = Arc::clone(&self.catalog);
        let flows = &catalog.flows;
        match (role, payload) {
            (Role::TutorSignup, Payload::Tutor { subject, .. }) => {
                let random = &mut self.random.tutor;
                if random.chance(flows.tutor_onboarding_share) {
                    let delay = random.between(2 * 24, 7 * 24) * MS_PER_HOUR;
                    // The new tutor's id is assigned when it joins the pool (on emission).
                    Self::emit_later(
                        context,
                        delay,
                        ids.tutor_onboarded,
                        Payload::Tutor {
                            tutor: u32::MAX,
                            subject: *subject,
                        },
                    );
                }
            }
            (Role::TutorChurned, Payload::Tutor { tutor, .. }) => {
                self.retire_tutor(*tutor);
            }
            _ => {}
        }
    }

    /// A tutor of `subject` comes online (or the rate's hour boundary).
    pub(in crate::market::model) fn on_supply_online<S: Sink<StreamEvent>>(
        &mut self,
        subject: u8,
        arrival: bool,
        context: &mut Context<'_, MarketEvent>,
        sink: &mut S,
    ) {
        let ids = self.ids;
        self.supply[subject as usize].pending = None;
        if !self.arrivals_open {
            return;
        }
        let offline = self.supply[subject as usize].offline.len();
        if arrival && offline > 0 {
            let pick = self.random.supply.below(offline as u64) as usize;
            let tutor = self.supply[subject as usize].offline[pick];
            let payload = self.bring_online(tutor, context);
            self.emit(ids.availability_set, payload, context, sink);
        }
        self.schedule_supply(subject, context);
    }

    /// A tutor's online stint ends.
    pub(in crate::market::model) fn on_tutor_offline<S: Sink<StreamEvent>>(
        &mut self,
        tutor: u32,
        context: &mut Context<'_, MarketEvent>,
        sink: &mut S,
    ) {
        let ids = self.ids;
        let Some(t) = self.tutors.get(tutor as usize) else {
            return;
        };
        let (subject, active, index) = (t.subject, t.active, t.list_index as usize);
        if active {
            self.set_online(tutor, false);
        } else {
            // A retired tutor leaves the online list and does not join the offline one.
            let online = &mut self.supply[subject as usize].online;
            online.swap_remove(index);
            if let Some(&moved) = online.get(index) {
                self.tutors[moved as usize].list_index = index as u32;
            }
            self.tutors[tutor as usize].online = false;
        }
        self.emit(
            ids.availability_cleared,
            Payload::Tutor { tutor, subject },
            context,
            sink,
        );
    }
}
