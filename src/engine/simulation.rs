//! The simulation loop: pops events in (time, seq) order and hands them to a [`Model`].
//!
//! A model reacts to an event by scheduling further events through [`Context`] and by emitting
//! outputs into a [`Sink`]. The loop is generic over both, so the headless hot path is
//! monomorphised with no dynamic dispatch.

use super::queue::{EventQueue, TimerHandle};
use super::time::VirtualTimeMs;

/// Receives the outputs a model emits.
pub trait Sink<O> {
    fn accept(&mut self, output: &O);
}

impl<O: Clone> Sink<O> for Vec<O> {
    fn accept(&mut self, output: &O) {
        self.push(output.clone());
    }
}

/// A sink that drops every output (a run that only needs the session's own accumulator).
pub struct NoSink;

impl<O> Sink<O> for NoSink {
    #[inline]
    fn accept(&mut self, _output: &O) {}
}

/// Feeds every output to two sinks, in order.
pub struct Tee<A, B>(pub A, pub B);

impl<O, A: Sink<O>, B: Sink<O>> Sink<O> for Tee<A, B> {
    #[inline]
    fn accept(&mut self, output: &O) {
        self.0.accept(output);
        self.1.accept(output);
    }
}

impl<O, T: Sink<O> + ?Sized> Sink<O> for &mut T {
    #[inline]
    fn accept(&mut self, output: &O) {
        (**self).accept(output);
    }
}

/// What a model may do while handling an event: read the time, schedule and cancel.
pub struct Context<'a, E> {
    now: VirtualTimeMs,
    queue: &'a mut EventQueue<E>,
}

impl<E> Context<'_, E> {
    /// The virtual time of the event being handled.
    #[inline]
    pub fn now(&self) -> VirtualTimeMs {
        self.now
    }
    /// Schedules `event` at `time`; a time in the past is moved to now (events never go back).
    #[inline]
    pub fn schedule_at(&mut self, time: VirtualTimeMs, event: E) -> TimerHandle {
        self.queue.schedule(time.max(self.now), event)
    }
    /// Schedules `event` `delay_ms` after now.
    #[inline]
    pub fn schedule_after(&mut self, delay_ms: u64, event: E) -> TimerHandle {
        self.queue
            .schedule(self.now.saturating_add(delay_ms), event)
    }
    /// Cancels a pending event; false if it already fired or was cancelled.
    pub fn cancel(&mut self, handle: TimerHandle) -> bool {
        self.queue.cancel(handle)
    }
}

/// A world that reacts to its own scheduled events.
pub trait Model {
    type Event;
    type Output;
    /// Schedules the events that start the world off at virtual time 0.
    fn start(&mut self, context: &mut Context<'_, Self::Event>);
    /// Handles one event at `context.now()`.
    fn handle<S: Sink<Self::Output>>(
        &mut self,
        event: Self::Event,
        context: &mut Context<'_, Self::Event>,
        sink: &mut S,
    );
}

/// A model plus its queue and virtual clock. Cloning forks the run: both copies continue
/// identically until one is changed (the counterfactual twins of ground truth).
pub struct Simulation<M: Model> {
    model: M,
    queue: EventQueue<M::Event>,
    now: VirtualTimeMs,
    handled_count: u64,
}

impl<M: Model + Clone> Clone for Simulation<M>
where
    M::Event: Clone,
{
    fn clone(&self) -> Self {
        Simulation {
            model: self.model.clone(),
            queue: self.queue.clone(),
            now: self.now,
            handled_count: self.handled_count,
        }
    }
}

impl<M: Model> Simulation<M> {
    /// Creates the simulation at virtual time 0 and lets the model schedule its first events.
    pub fn new(mut model: M) -> Self {
        let mut queue = EventQueue::new();
        model.start(&mut Context {
            now: 0,
            queue: &mut queue,
        });
        Simulation {
            model,
            queue,
            now: 0,
            handled_count: 0,
        }
    }

    pub fn now(&self) -> VirtualTimeMs {
        self.now
    }
    pub fn model(&self) -> &M {
        &self.model
    }
    pub fn model_mut(&mut self) -> &mut M {
        &mut self.model
    }
    pub fn into_model(self) -> M {
        self.model
    }
    /// Events handled so far.
    pub fn handled_count(&self) -> u64 {
        self.handled_count
    }
    /// Live events still scheduled.
    pub fn pending_count(&self) -> usize {
        self.queue.len()
    }
    /// The time of the next event, if any.
    pub fn next_event_time(&mut self) -> Option<VirtualTimeMs> {
        self.queue.peek_time()
    }

    /// Handles the next event, if any; returns its time.
    pub fn step<S: Sink<M::Output>>(&mut self, sink: &mut S) -> Option<VirtualTimeMs> {
        let (time, event) = self.queue.pop()?;
        debug_assert!(time >= self.now, "virtual time went backwards");
        self.now = time;
        self.handled_count += 1;
        let mut context = Context {
            now: time,
            queue: &mut self.queue,
        };
        self.model.handle(event, &mut context, sink);
        Some(time)
    }

    /// Handles every event due at or before `end`, then sets now to `end`.
    pub fn run_until<S: Sink<M::Output>>(&mut self, end: VirtualTimeMs, sink: &mut S) {
        while let Some(next) = self.queue.peek_time() {
            if next > end {
                break;
            }
            self.step(sink);
        }
        self.now = self.now.max(end);
    }

    /// Handles every event due strictly before `end` and leaves the events due at `end` for
    /// later, then sets now to `end`: the half-open step `[now, end)` a session advances by.
    pub fn run_before<S: Sink<M::Output>>(&mut self, end: VirtualTimeMs, sink: &mut S) {
        while let Some(next) = self.queue.peek_time() {
            if next >= end {
                break;
            }
            self.step(sink);
        }
        self.now = self.now.max(end);
    }

    /// Lets `act` change the model at virtual time `time` with a scheduling context, before any
    /// event due at `time` is handled: the place of an outside command in the millisecond.
    /// Every event due before `time` is handled first, so the result never depends on how long
    /// before its time the command was handed in.
    pub fn act_at<S: Sink<M::Output>, R>(
        &mut self,
        time: VirtualTimeMs,
        sink: &mut S,
        act: impl FnOnce(&mut M, &mut Context<'_, M::Event>) -> R,
    ) -> R {
        self.run_before(time, sink);
        let mut context = Context {
            now: self.now,
            queue: &mut self.queue,
        };
        act(&mut self.model, &mut context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ticks every `period`, emitting its own time; cancels the tick after `cancel_at` once.
    struct Ticker {
        period: u64,
        doomed: Option<TimerHandle>,
    }

    impl Model for Ticker {
        type Event = u8;
        type Output = (u64, u8);
        fn start(&mut self, context: &mut Context<'_, u8>) {
            context.schedule_at(0, 0);
            self.doomed = Some(context.schedule_at(25, 1));
        }
        fn handle<S: Sink<(u64, u8)>>(
            &mut self,
            event: u8,
            context: &mut Context<'_, u8>,
            sink: &mut S,
        ) {
            sink.accept(&(context.now(), event));
            if event == 0 {
                if context.now() == 20 {
                    if let Some(handle) = self.doomed.take() {
                        assert!(context.cancel(handle));
                    }
                }
                context.schedule_after(self.period, 0);
            }
        }
    }

    #[test]
    fn run_until_stops_at_the_end_and_cancelled_events_never_fire() {
        let mut simulation = Simulation::new(Ticker {
            period: 10,
            doomed: None,
        });
        let mut outputs = Vec::new();
        simulation.run_until(40, &mut outputs);
        assert_eq!(outputs, vec![(0, 0), (10, 0), (20, 0), (30, 0), (40, 0)]);
        assert_eq!(simulation.now(), 40);
        assert_eq!(simulation.pending_count(), 1);
    }
}
