//! Scenario control: the scripted `ControlPlan`, where the run is in it, and how it changes the
//! model (levers and stream effects recomputed from the activated instances, arrival processes
//! redrawn when their rate changed, lifecycle transitions recorded).

use super::{MarketEvent, Marketplace};
use crate::engine::{Context, VirtualTimeMs};
use crate::market::catalog::{Origin, StreamId};
use crate::market::director::{
    compose, ActionKind, ControlPlan, InstanceKind, Phase, PlannedInstance, RecordKind,
    TimelineRecord, SETTLE_STEP_MS,
};

/// The scripted plan and where the run is in it. The plan's instances are changed as the run
/// goes (a stop brings `active_until` forward, a reset cancels).
#[derive(Debug, Clone, Default)]
pub(super) struct ControlState {
    plan: ControlPlan,
    activated: Vec<bool>,
    last_phase: Vec<Phase>,
    records: Vec<TimelineRecord>,
}

impl ControlState {
    /// The planned instances that have been activated, in plan order.
    fn activated_instances_mut(&mut self) -> impl Iterator<Item = &mut PlannedInstance> {
        self.plan
            .instances
            .iter_mut()
            .zip(&self.activated)
            .filter(|(_, activated)| **activated)
            .map(|(planned, _)| planned)
    }
}

impl Marketplace {
    /// Installs the scripted plan; call before the simulation starts.
    pub fn with_plan(mut self, plan: ControlPlan) -> Self {
        let n = plan.instances.len();
        self.control = ControlState {
            activated: vec![false; n],
            last_phase: vec![Phase::Pending; n],
            records: Vec::new(),
            plan,
        };
        self
    }

    /// Marks an instance as never to be activated (for a counterfactual twin).
    pub fn suppress(&mut self, instance: usize) {
        if let Some(planned) = self.control.plan.instances.get_mut(instance) {
            planned.suppressed = true;
        }
    }

    /// What happened to the plan so far.
    pub fn timeline_records(&self) -> &[TimelineRecord] {
        &self.control.records
    }

    /// Schedules every planned control action; called once at the start.
    pub(super) fn start_control(&self, context: &mut Context<'_, MarketEvent>) {
        for (action, planned) in self.control.plan.actions.iter().enumerate() {
            context.schedule_at(planned.time, MarketEvent::Control { action });
        }
    }

    /// Recomputes levers and stream effects from the activated instances at `now`, redraws the
    /// pending arrivals of every process whose rate changed (exact: gaps are memoryless), and
    /// records lifecycle transitions. Streams a scenario does not touch keep their draws.
    pub(super) fn apply_control(&mut self, context: &mut Context<'_, MarketEvent>) {
        let now = context.now();
        let active = self
            .control
            .plan
            .instances
            .iter()
            .zip(&self.control.activated)
            .filter(|(_, activated)| **activated)
            .map(|(planned, _)| &planned.instance);
        let (levers, effects) = compose(
            active,
            now,
            self.catalog.subjects.len(),
            self.catalog.streams.len(),
        );
        let old_supply = self.levers.supply_by_subject.clone();
        self.levers = levers;
        self.stream_effects = effects;
        self.refresh_subject_weights();
        for index in 0..self.catalog.streams.len() {
            let stream = StreamId(index as u16);
            if !matches!(self.catalog.streams[index].origin, Origin::Source { .. }) {
                continue;
            }
            let state = &self.streams[index];
            if state.rate_valid_until <= now || !self.arrivals_open {
                continue; // Recomputed at its next event anyway.
            }
            let cached = state.rate_per_hour;
            if self.source_rate_per_hour(stream, now) != cached {
                if let Some(pending) = self.streams[index].pending.take() {
                    context.cancel(pending);
                }
                self.streams[index].rate_valid_until = 0;
                self.schedule_source(stream, context);
            }
        }
        for (subject, old) in old_supply.iter().enumerate() {
            if *old != self.levers.supply_by_subject[subject] && self.arrivals_open {
                if let Some(pending) = self.supply[subject].pending.take() {
                    context.cancel(pending);
                }
                self.schedule_supply(subject as u8, context);
            }
        }
        let mut next_tick: Option<VirtualTimeMs> = None;
        for index in 0..self.control.plan.instances.len() {
            if !self.control.activated[index] {
                continue;
            }
            let instance = &self.control.plan.instances[index].instance;
            let phase = instance.phase(now);
            if phase != self.control.last_phase[index] {
                self.control.last_phase[index] = phase;
                self.control.records.push(TimelineRecord {
                    time: now,
                    kind: RecordKind::Phase {
                        instance: index,
                        phase,
                    },
                });
            }
            let due = match phase {
                Phase::Active => Some(instance.active_until),
                Phase::Settling => {
                    let steps_done = (now - instance.active_until) / SETTLE_STEP_MS;
                    Some(
                        (instance.active_until + (steps_done + 1) * SETTLE_STEP_MS)
                            .min(instance.settled_at()),
                    )
                }
                Phase::Pending | Phase::Settled => None,
            };
            next_tick = match (next_tick, due) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        if let Some(time) = next_tick {
            context.schedule_at(time.max(now + 1), MarketEvent::LeverTick);
        }
    }

    pub(super) fn handle_control(&mut self, action: usize, context: &mut Context<'_, MarketEvent>) {
        let now = context.now();
        let Some(planned) = self.control.plan.actions.get(action) else {
            return;
        };
        match planned.kind.clone() {
            ActionKind::Activate(index) => {
                let Some(planned) = self.control.plan.instances.get(index) else {
                    return;
                };
                if planned.suppressed {
                    return;
                }
                let kind = planned.kind;
                if kind == InstanceKind::Scenario && self.control.plan.one_at_a_time {
                    self.settle_activated(now, |other| other.kind == InstanceKind::Scenario);
                }
                self.control.activated[index] = true;
                if kind == InstanceKind::Event {
                    self.control.records.push(TimelineRecord {
                        time: now,
                        kind: RecordKind::EventFired { instance: index },
                    });
                }
            }
            ActionKind::Stop(label) => {
                self.control.records.push(TimelineRecord {
                    time: now,
                    kind: RecordKind::Stop {
                        label: label.clone(),
                    },
                });
                self.settle_activated(now, |other| other.label == label);
            }
            ActionKind::Reset => {
                self.control.records.push(TimelineRecord {
                    time: now,
                    kind: RecordKind::Reset,
                });
                for planned in self.control.activated_instances_mut() {
                    planned.instance.cancelled = true;
                }
            }
        }
        self.apply_control(context);
    }

    /// Starts settling, now, every activated instance that is active and matches `which`.
    fn settle_activated(&mut self, now: VirtualTimeMs, which: impl Fn(&PlannedInstance) -> bool) {
        for planned in self.control.activated_instances_mut() {
            if which(planned) && planned.instance.phase(now) == Phase::Active {
                planned.instance.active_until = now;
            }
        }
    }
}
