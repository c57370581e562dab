//! The scenario director: which scenarios and external-event effects are active, how strongly,
//! and the levers that result. Pure data and arithmetic; the model calls it.
//!
//! Lifecycle of an instance: pending → active (full strength) from its start until
//! `active_until` → settling, where strength falls linearly from 1 to 0 over the settlement
//! duration in 15-minute steps → settled. At strength s and intensity k a multiplier m acts as 1 + (m − 1)·k·s, an
//! offset o as o·k·s, and an override v pulls the value toward v by the fraction s.
//!
//! Composition of instances active at once: multipliers multiply, offsets add, and among
//! overrides of the same stream the most recently started wins.

use super::catalog::StreamId;
use super::model::Levers;
use crate::engine::{VirtualTimeMs, MS_PER_MINUTE};

/// How often levers are recomputed while an instance settles.
pub const SETTLE_STEP_MS: u64 = 15 * MS_PER_MINUTE;

/// A modifier on one stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum StreamChange {
    Multiplier(f64),
    /// Events per hour for a source, or the reading for a gauge.
    Override(f64),
    /// Events per hour added to a source, or added to a gauge's reading.
    Offset(f64),
}

/// Lever multipliers of one instance; 1.0 is neutral. The same shape as the model's levers,
/// which are these composed over every active instance.
pub type LeverChanges = Levers;

/// What an instance changes.
#[derive(Debug, Clone, PartialEq)]
pub struct Modifiers {
    pub streams: Vec<(StreamId, StreamChange)>,
    pub levers: LeverChanges,
}

/// Where an instance is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Pending,
    Active,
    Settling,
    Settled,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Active => "active",
            Phase::Settling => "settling",
            Phase::Settled => "settled",
        }
    }
}

/// One activation of a scenario or of an external event's effect.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub start: VirtualTimeMs,
    /// When the active phase ends and settling starts (a `stop` may bring it forward).
    pub active_until: VirtualTimeMs,
    pub settlement_ms: u64,
    pub intensity: f64,
    pub modifiers: Modifiers,
    /// Cleared by `reset`: the instance no longer acts at all.
    pub cancelled: bool,
}

impl Instance {
    pub fn settled_at(&self) -> VirtualTimeMs {
        self.active_until + self.settlement_ms
    }

    pub fn phase(&self, t: VirtualTimeMs) -> Phase {
        if self.cancelled || t >= self.settled_at() {
            Phase::Settled
        } else if t < self.start {
            Phase::Pending
        } else if t < self.active_until {
            Phase::Active
        } else {
            Phase::Settling
        }
    }

    /// Strength in [0, 1] at `t`.
    pub fn strength(&self, t: VirtualTimeMs) -> f64 {
        match self.phase(t) {
            Phase::Pending | Phase::Settled => 0.0,
            Phase::Active => 1.0,
            Phase::Settling => {
                // Strength steps down on a fixed 15-minute grid from `active_until`, so the
                // levers at any moment do not depend on when else they were recomputed.
                let elapsed = (t - self.active_until) / SETTLE_STEP_MS * SETTLE_STEP_MS;
                (1.0 - elapsed as f64 / self.settlement_ms.max(1) as f64).clamp(0.0, 1.0)
            }
        }
    }
}

/// Per-stream effect of all instances at one moment, applied to a source rate or gauge value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StreamEffect {
    pub multiplier: f64,
    pub offset: f64,
    /// (override value, pull in [0, 1]) of the most recently started override.
    pub override_pull: Option<(f64, f64)>,
}

impl StreamEffect {
    pub const NEUTRAL: StreamEffect = StreamEffect {
        multiplier: 1.0,
        offset: 0.0,
        override_pull: None,
    };

    /// Whether this effect leaves every value as it is.
    pub fn is_neutral(&self) -> bool {
        self.multiplier == 1.0 && self.offset == 0.0 && self.override_pull.is_none()
    }

    /// The effect on a stream whose level is `factor` times the catalog's: offsets and override
    /// values grow with it (a multiplier is already relative).
    pub fn scaled_for_volume(mut self, factor: f64) -> StreamEffect {
        self.offset *= factor;
        if let Some((value, pull)) = self.override_pull {
            self.override_pull = Some((value * factor, pull));
        }
        self
    }

    /// The modified value of `base`.
    #[inline]
    pub fn apply(&self, base: f64) -> f64 {
        let scaled = (base * self.multiplier + self.offset).max(0.0);
        match self.override_pull {
            Some((value, pull)) => scaled + (value - scaled) * pull,
            None => scaled,
        }
    }
}

/// Composes the levers and stream effects of every instance at time `t`.
/// `instances` must be in start order (the last override started wins).
pub fn compose<'a>(
    instances: impl IntoIterator<Item = &'a Instance>,
    t: VirtualTimeMs,
    n_subjects: usize,
    n_streams: usize,
) -> (Levers, Vec<StreamEffect>) {
    let mut levers = Levers::neutral(n_subjects);
    let mut effects = vec![StreamEffect::NEUTRAL; n_streams];
    for instance in instances {
        let strength = instance.strength(t);
        if strength <= 0.0 {
            continue;
        }
        let k = instance.intensity * strength;
        let scale = |m: f64| (1.0 + (m - 1.0) * k).max(0.0);
        let changes = &instance.modifiers.levers;
        for (lever, change) in levers
            .demand_by_subject
            .iter_mut()
            .zip(&changes.demand_by_subject)
        {
            *lever *= scale(*change);
        }
        for (lever, change) in levers
            .supply_by_subject
            .iter_mut()
            .zip(&changes.supply_by_subject)
        {
            *lever *= scale(*change);
        }
        levers.payment_failure *= scale(changes.payment_failure);
        levers.api_errors *= scale(changes.api_errors);
        levers.app_crashes *= scale(changes.app_crashes);
        levers.support_staffing *= scale(changes.support_staffing);
        levers.ad_spend *= scale(changes.ad_spend);
        levers.low_ratings *= scale(changes.low_ratings);
        levers.tutor_accept *= scale(changes.tutor_accept);
        for (stream, change) in &instance.modifiers.streams {
            let effect = &mut effects[stream.index()];
            match change {
                StreamChange::Multiplier(m) => effect.multiplier *= scale(*m),
                StreamChange::Offset(o) => effect.offset += o * k,
                StreamChange::Override(v) => effect.override_pull = Some((*v, strength)),
            }
        }
    }
    (levers, effects)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(multiplier: f64, start: u64, active_until: u64, settlement_ms: u64) -> Instance {
        let mut levers = LeverChanges::neutral(1);
        levers.payment_failure = multiplier;
        Instance {
            start,
            active_until,
            settlement_ms,
            intensity: 1.0,
            modifiers: Modifiers {
                streams: vec![(StreamId(0), StreamChange::Multiplier(multiplier))],
                levers,
            },
            cancelled: false,
        }
    }

    #[test]
    fn settling_returns_linearly_to_neutral_in_steps() {
        let step = SETTLE_STEP_MS;
        let a = [instance(3.0, 100, 200, 4 * step)];
        let at = |t| compose(&a, t, 1, 1).0.payment_failure;
        assert_eq!(at(50), 1.0);
        assert_eq!(at(100), 3.0);
        assert_eq!(at(199), 3.0);
        assert_eq!(at(200), 3.0);
        assert_eq!(at(200 + step), 2.5);
        assert_eq!(at(200 + 2 * step), 2.0);
        assert_eq!(at(200 + 2 * step + step / 2), 2.0);
        assert_eq!(at(200 + 3 * step), 1.5);
        assert_eq!(at(200 + 4 * step), 1.0);
    }

    #[test]
    fn concurrent_multipliers_compose_by_product_and_the_latest_override_wins() {
        let mut a = vec![instance(2.0, 0, 100, 0), instance(1.5, 10, 100, 0)];
        let (levers, effects) = compose(&a, 50, 1, 1);
        assert_eq!(levers.payment_failure, 3.0);
        assert_eq!(effects[0].apply(10.0), 30.0);
        a[0].modifiers.streams = vec![(StreamId(0), StreamChange::Override(5.0))];
        a[1].modifiers.streams = vec![(StreamId(0), StreamChange::Override(7.0))];
        assert_eq!(compose(&a, 50, 1, 1).1[0].apply(10.0), 7.0);
    }

    #[test]
    fn offsets_and_overrides_grow_with_the_volume_and_multipliers_do_not() {
        let effect = StreamEffect {
            multiplier: 2.0,
            offset: 3.0,
            override_pull: Some((40.0, 0.5)),
        };
        let scaled = effect.scaled_for_volume(10.0);
        assert_eq!((scaled.multiplier, scaled.offset), (2.0, 30.0));
        assert_eq!(scaled.override_pull, Some((400.0, 0.5)));
        // Ten times the base gives ten times the modified value.
        assert_eq!(scaled.apply(100.0), 10.0 * effect.apply(10.0));
    }
}

/// Whether an instance comes from a scenario or from an external event's effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceKind {
    Scenario,
    Event,
}

/// An instance that takes effect, with the label `stop` refers to (the scenario id).
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedInstance {
    pub label: String,
    pub kind: InstanceKind,
    pub instance: Instance,
}

/// Something that happened to the plan during a run, for `timeline.json`.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordKind {
    /// An instance entered a lifecycle phase.
    Phase {
        instance: usize,
        phase: Phase,
    },
    /// An external event was injected (its instance may have no effect: a red herring).
    EventFired {
        instance: usize,
    },
    Stop {
        label: String,
    },
    Reset,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TimelineRecord {
    pub time: VirtualTimeMs,
    pub kind: RecordKind,
}
