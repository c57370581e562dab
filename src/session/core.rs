//! The part of a session a counterfactual twin copies: the simulation, the commands waiting
//! for their time, the daily background, and the items that took effect.
//!
//! # The order of a millisecond
//!
//! Commands take effect at the *start* of their millisecond, before any model event due at the
//! same time: a command due at `t` is applied after every event before `t` and before every
//! event at `t`. Among commands due at the same `t`:
//!
//! 1. what is already waiting (the background drawn a day ahead, events a scenario injects at
//!    an offset, what an earlier command caused) goes first, in the order it was scheduled;
//! 2. then script and live commands, one at a time in their order, each followed at once by
//!    what it causes at the same millisecond.
//!
//! A script entry enters this queue only when its time comes, exactly as a live command does,
//! so the result never depends on how long before its time a command was handed in, and a
//! recording of a live session replays byte-identically.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::engine::{Simulation, Sink, VirtualTimeMs, MS_PER_DAY};
use crate::market::director::{InstanceKind, TimelineRecord};
use crate::market::{Marketplace, StreamEvent};
use crate::scenario::definition::Library;
use crate::scenario::timeline::{
    plan_event, plan_scenario, BackgroundEvents, CommandOrigin, PlanItem, TimelineAction,
};

/// A command waiting in the queue.
#[derive(Debug, Clone)]
pub(crate) struct PendingCommand {
    pub action: TimelineAction,
    pub origin: CommandOrigin,
}

/// A script or live command not yet due.
#[derive(Debug, Clone)]
pub(crate) struct FeedEntry {
    pub at_ms: VirtualTimeMs,
    pub action: TimelineAction,
}

/// The simulation and everything that decides what it does next.
#[derive(Clone)]
pub(crate) struct Core {
    pub simulation: Simulation<Marketplace>,
    library: Arc<Library>,
    n_subjects: usize,
    /// Commands due, by (time, scheduling sequence).
    pending: BTreeMap<(VirtualTimeMs, u64), PendingCommand>,
    next_command_seq: u64,
    /// Script and live commands in time order (stable), entering `pending` one at a time.
    feed: VecDeque<FeedEntry>,
    background: Option<BackgroundEvents>,
    /// Everything that took effect, in order; index = the model's instance index.
    pub items: Vec<PlanItem>,
    /// The command that made each item.
    pub item_commands: Vec<u64>,
    n_event_ids: u32,
    n_scenario_ids: u32,
    /// In a counterfactual twin: the command that never takes effect.
    suppressed_command: Option<u64>,
    /// Take-action commands applied, for the session's analysis: (time, recommendation, action).
    pub resolutions: Vec<(VirtualTimeMs, String, String)>,
}

impl Core {
    pub fn new(
        simulation: Simulation<Marketplace>,
        library: Arc<Library>,
        n_subjects: usize,
        background: Option<BackgroundEvents>,
    ) -> Self {
        Core {
            simulation,
            library,
            n_subjects,
            pending: BTreeMap::new(),
            next_command_seq: 0,
            feed: VecDeque::new(),
            background,
            items: Vec::new(),
            item_commands: Vec::new(),
            n_event_ids: 0,
            n_scenario_ids: 0,
            suppressed_command: None,
            resolutions: Vec::new(),
        }
    }

    pub fn now(&self) -> VirtualTimeMs {
        self.simulation.now()
    }

    pub fn records(&self) -> &[TimelineRecord] {
        self.simulation.model().timeline_records()
    }

    /// A twin of this core in which `command` never takes effect.
    pub fn twin_without(&self, command: u64) -> Core {
        let mut twin = self.clone();
        twin.suppressed_command = Some(command);
        twin
    }

    /// A twin without `command` whose random paths part from this core's at once: what the
    /// counterfactual would have looked like on another roll of the dice, for measuring how far
    /// paths that have parted drift apart by chance.
    pub fn noise_twin_without(&self, command: u64, salt: u64) -> Core {
        let mut twin = self.twin_without(command);
        twin.simulation.model_mut().resalt_random_paths(salt);
        twin
    }

    /// Adds a script or live command; it takes effect when its time comes (now, if it is due).
    /// Entries at the same time keep the order they were fed in.
    pub fn feed(&mut self, at_ms: VirtualTimeMs, action: TimelineAction) {
        let position = self.feed.partition_point(|entry| entry.at_ms <= at_ms);
        self.feed.insert(position, FeedEntry { at_ms, action });
    }

    /// Replaces the commands not yet due (a session re-simulating from a checkpoint).
    pub fn replace_feed(&mut self, entries: impl IntoIterator<Item = FeedEntry>) {
        self.feed = entries.into_iter().collect();
        self.feed.make_contiguous().sort_by_key(|entry| entry.at_ms);
    }

    /// Whether a command that starts something is due in `[from, to)`: a twin must be forked
    /// before it. Call [`Core::draw_background`] first, so the background is known.
    pub fn activation_due_in(&self, from: VirtualTimeMs, to: VirtualTimeMs) -> bool {
        let starts = |action: &TimelineAction| {
            matches!(
                action,
                TimelineAction::Activate { .. } | TimelineAction::Inject { .. }
            )
        };
        self.pending
            .range((from, 0)..(to, 0))
            .any(|(_, command)| starts(&command.action))
            || self
                .feed
                .iter()
                .take_while(|entry| entry.at_ms < to)
                .any(|entry| entry.at_ms >= from && starts(&entry.action))
    }

    /// Applies the commands due now (see the module docs for their order); returns whether any
    /// was applied.
    pub fn apply_due<S: Sink<StreamEvent>>(
        &mut self,
        sink: &mut S,
        activated: &mut Vec<usize>,
    ) -> bool {
        let now = self.now();
        let mut applied = false;
        loop {
            self.draw_background(now);
            if let Some(entry) = self.pending.first_entry() {
                if entry.key().0 <= now {
                    let ((_, seq), command) = entry.remove_entry();
                    self.apply(seq, command, sink, activated);
                    applied = true;
                    continue;
                }
            }
            if self.feed.front().is_some_and(|entry| entry.at_ms <= now) {
                if let Some(entry) = self.feed.pop_front() {
                    self.schedule(now, entry.action, CommandOrigin::Script);
                }
                continue;
            }
            return applied;
        }
    }

    /// Applies every command due before `target` and handles every model event before
    /// `target`; commands and events due at `target` wait for the next step.
    pub fn advance_to<S: Sink<StreamEvent>>(
        &mut self,
        target: VirtualTimeMs,
        sink: &mut S,
        activated: &mut Vec<usize>,
    ) {
        while self.now() < target {
            self.apply_due(sink, activated);
            let mut stop = target;
            if let Some(((time, _), _)) = self.pending.first_key_value() {
                stop = stop.min(*time);
            }
            if let Some(entry) = self.feed.front() {
                stop = stop.min(entry.at_ms);
            }
            if let Some(background) = &self.background {
                let draw_at = background.next_day_start_ms().saturating_sub(MS_PER_DAY);
                stop = stop.min(draw_at.max(self.now() + 1));
            }
            let stop = stop.max(self.now() + 1).min(target);
            self.simulation.run_before(stop, sink);
        }
    }

    /// Draws the background a day ahead, so every background event is waiting by the time a
    /// twin is forked before it (buckets are at most a day long).
    pub fn draw_background(&mut self, now: VirtualTimeMs) {
        let Some(background) = &mut self.background else {
            return;
        };
        let mut drawn = Vec::new();
        while background.next_day_start_ms() <= now.saturating_add(MS_PER_DAY) {
            drawn.extend(background.draw_next_day());
        }
        for (at_ms, template) in drawn {
            if let Some(template) = self.library.events.get(template) {
                let action = TimelineAction::Inject {
                    template: Box::new(template.clone()),
                };
                self.schedule(at_ms, action, CommandOrigin::Background);
            }
        }
    }

    fn schedule(&mut self, at_ms: VirtualTimeMs, action: TimelineAction, origin: CommandOrigin) {
        let seq = self.next_command_seq;
        self.next_command_seq += 1;
        self.pending
            .insert((at_ms, seq), PendingCommand { action, origin });
    }

    /// One command, now.
    fn apply<S: Sink<StreamEvent>>(
        &mut self,
        seq: u64,
        command: PendingCommand,
        sink: &mut S,
        activated: &mut Vec<usize>,
    ) {
        let now = self.now();
        let suppressed = self.suppressed_command == Some(seq);
        let item = match command.action {
            TimelineAction::Activate {
                definition,
                intensity,
            } => {
                let (item, injected) =
                    plan_scenario(&definition, intensity, now, &command.origin, &self.library);
                // A scenario's events are separate items: they are injected (and measured)
                // even in the twin that suppresses the scenario itself.
                let origin = CommandOrigin::Scenario(definition.id.clone());
                for (template, at_ms) in injected {
                    let action = TimelineAction::Inject {
                        template: Box::new(template),
                    };
                    self.schedule(at_ms, action, origin.clone());
                }
                Some(item)
            }
            TimelineAction::Inject { template } => {
                Some(plan_event(&template, now, &command.origin, self.n_subjects))
            }
            TimelineAction::Stop { scenario } => {
                self.simulation
                    .act_at(now, sink, |model, context| model.stop(&scenario, context));
                None
            }
            TimelineAction::Reset => {
                self.simulation
                    .act_at(now, sink, |model, context| model.reset(context));
                None
            }
            TimelineAction::Resolve {
                recommendation,
                action,
            } => {
                self.resolutions.push((now, recommendation, action));
                None
            }
        };
        let Some(mut item) = item else {
            return;
        };
        if suppressed {
            return;
        }
        item.instance_id = match item.kind() {
            InstanceKind::Event => {
                self.n_event_ids += 1;
                format!("evt_{:03}", self.n_event_ids)
            }
            InstanceKind::Scenario => {
                self.n_scenario_ids += 1;
                format!("mod_{:03}", self.n_scenario_ids)
            }
        };
        let planned = item.planned_instance();
        let index = self
            .simulation
            .act_at(now, sink, |model, context| model.activate(planned, context));
        debug_assert_eq!(index, self.items.len(), "items and instances stay parallel");
        self.items.push(item);
        self.item_commands.push(seq);
        activated.push(index);
    }
}
