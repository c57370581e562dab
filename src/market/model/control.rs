//! Scenario control: the instances that took effect (scenarios and external events the session
//! activated, in order), what stop and reset do to them, and how they change the model (levers
//! and stream effects recomputed, arrival processes redrawn when their rate changed, lifecycle
//! transitions recorded). The model never schedules a command: the session applies each at the
//! start of its millisecond through [`Marketplace::activate`], [`Marketplace::stop`] and
//! [`Marketplace::reset`].

use super::{MarketEvent, Marketplace};
use crate::engine::{Context, VirtualTimeMs};
use crate::market::catalog::{Origin, StreamId};
use crate::market::director::{
    compose, InstanceKind, Phase, PlannedInstance, RecordKind, TimelineRecord, SETTLE_STEP_MS,
};

/// The instances that took effect, in order, and what happened to them. Instances change as
/// the run goes (a stop brings `active_until` forward, a reset cancels).
#[derive(Debug, Clone, Default)]
pub(super) struct ControlState {
    instances: Vec<PlannedInstance>,
    last_phase: Vec<Phase>,
    records: Vec<TimelineRecord>,
    /// The seed's policy: starting a scenario stops the one running.
    one_at_a_time: bool,
}

impl Marketplace {
    /// Sets the seed's one-at-a-time policy: a scenario that starts stops the one running.
    pub fn with_policy(mut self, one_at_a_time: bool) -> Self {
        self.control.one_at_a_time = one_at_a_time;
        self
    }

    /// The instances that took effect, in order, as the run changed them.
    pub fn instances(&self) -> &[PlannedInstance] {
        &self.control.instances
    }

    /// What happened to the plan so far.
    pub fn timeline_records(&self) -> &[TimelineRecord] {
        &self.control.records
    }

    /// Recomputes levers and stream effects from the activated instances at `now`, redraws the
    /// pending arrivals of every process whose rate changed (exact: gaps are memoryless), and
    /// records lifecycle transitions. Streams a scenario does not touch keep their draws.
    pub(super) fn apply_control(&mut self, context: &mut Context<'_, MarketEvent>) {
        let now = context.now();
        let active = self
            .control
            .instances
            .iter()
            .map(|planned| &planned.instance);
        let (levers, mut effects) = compose(
            active,
            now,
            self.catalog.subjects.len(),
            self.catalog.streams.len(),
        );
        if self.catalog.scale != 1 {
            for (index, effect) in effects.iter_mut().enumerate() {
                *effect = effect.scaled_for_volume(self.catalog.volume_scale(index));
            }
        }
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
        for index in 0..self.control.instances.len() {
            let instance = &self.control.instances[index].instance;
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

    /// Puts `planned` into effect now; returns its index (instances are numbered in the order
    /// they take effect). Under the one-at-a-time policy a scenario first stops the others.
    pub fn activate(
        &mut self,
        planned: PlannedInstance,
        context: &mut Context<'_, MarketEvent>,
    ) -> usize {
        let now = context.now();
        let kind = planned.kind;
        if kind == InstanceKind::Scenario && self.control.one_at_a_time {
            self.settle_active(now, |other| other.kind == InstanceKind::Scenario);
        }
        let index = self.control.instances.len();
        self.control.instances.push(planned);
        self.control.last_phase.push(Phase::Pending);
        if kind == InstanceKind::Event {
            self.control.records.push(TimelineRecord {
                time: now,
                kind: RecordKind::EventFired { instance: index },
            });
        }
        self.apply_control(context);
        index
    }

    /// Starts settling, now, every active instance labelled `label`.
    pub fn stop(&mut self, label: &str, context: &mut Context<'_, MarketEvent>) {
        let now = context.now();
        self.control.records.push(TimelineRecord {
            time: now,
            kind: RecordKind::Stop {
                label: label.to_string(),
            },
        });
        self.settle_active(now, |other| other.label == label);
        self.apply_control(context);
    }

    /// Cancels every instance that took effect so far.
    pub fn reset(&mut self, context: &mut Context<'_, MarketEvent>) {
        self.control.records.push(TimelineRecord {
            time: context.now(),
            kind: RecordKind::Reset,
        });
        for planned in &mut self.control.instances {
            planned.instance.cancelled = true;
        }
        self.apply_control(context);
    }

    /// Starts settling, now, every instance that is active and matches `which`.
    fn settle_active(&mut self, now: VirtualTimeMs, which: impl Fn(&PlannedInstance) -> bool) {
        for planned in &mut self.control.instances {
            if which(planned) && planned.instance.phase(now) == Phase::Active {
                planned.instance.active_until = now;
            }
        }
    }
}
