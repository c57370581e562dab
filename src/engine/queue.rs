//! The event queue: a binary heap ordered by (time, sequence number), with O(1) cancellation.
//!
//! Every scheduled event gets a sequence number from a counter that only grows, so two events at
//! the same virtual time come out in the order they were scheduled. That is what makes a run
//! reproducible: the heap's internal layout never decides an outcome.
//!
//! Cancellation is lazy and O(1). Each pending event lives in a slot of a table; the heap holds
//! only 16-byte keys. [`EventQueue::cancel`] frees the slot; [`EventQueue::pop`] discards keys
//! whose slot no longer belongs to them. A freed slot is reused, and a stale key is still
//! recognised because its sequence number no longer matches the slot's.
//!
//! Layout: the heap key is (time, seq << 24 | slot). Sequence numbers are unique, so ordering by
//! the second word is ordering by seq; the slot rides along in the low bits for free. This
//! bounds a queue to 2^24 (16.7 M) events pending at once and 2^40 scheduled in its lifetime,
//! limits that [`EventQueue::schedule`] asserts.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::time::VirtualTimeMs;

const SLOT_BITS: u32 = 24;
const SLOT_MASK: u64 = (1 << SLOT_BITS) - 1;
/// Most events that may be pending at once.
pub const MAX_PENDING: usize = 1 << SLOT_BITS;
/// Most events a queue may schedule over its lifetime.
pub const MAX_SCHEDULED: u64 = 1 << (64 - SLOT_BITS);

/// Identifies one scheduled event, so it can be cancelled before it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TimerHandle {
    time: VirtualTimeMs,
    seq: u64,
    slot: u32,
}

impl TimerHandle {
    /// The virtual time the event is (or was) due.
    pub fn time(&self) -> VirtualTimeMs {
        self.time
    }
}

/// Marks a free slot.
const FREE_SLOT: u64 = u64::MAX;

struct Slot<E> {
    /// Sequence number of the pending event in this slot, or [`FREE_SLOT`].
    seq: u64,
    event: Option<E>,
}

/// A priority queue of events keyed by (virtual time, insertion sequence).
pub struct EventQueue<E> {
    heap: BinaryHeap<Reverse<(VirtualTimeMs, u64)>>,
    next_seq: u64,
    slots: Vec<Slot<E>>,
    free_slots: Vec<u32>,
    live_count: usize,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> EventQueue<E> {
    pub fn new() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            next_seq: 0,
            slots: Vec::new(),
            free_slots: Vec::new(),
            live_count: 0,
        }
    }

    /// Schedules `event` at `time` and returns a handle that can cancel it.
    #[inline]
    pub fn schedule(&mut self, time: VirtualTimeMs, event: E) -> TimerHandle {
        let seq = self.next_seq;
        assert!(
            seq < MAX_SCHEDULED,
            "event queue: more than 2^40 events scheduled"
        );
        self.next_seq += 1;
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                let entry = &mut self.slots[slot as usize];
                entry.seq = seq;
                entry.event = Some(event);
                slot
            }
            None => {
                assert!(
                    self.slots.len() < MAX_PENDING,
                    "event queue: more than 2^24 events pending"
                );
                self.slots.push(Slot {
                    seq,
                    event: Some(event),
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.live_count += 1;
        self.heap
            .push(Reverse((time, (seq << SLOT_BITS) | slot as u64)));
        TimerHandle { time, seq, slot }
    }

    fn release(&mut self, slot: u32) -> Option<E> {
        let entry = &mut self.slots[slot as usize];
        entry.seq = FREE_SLOT;
        self.free_slots.push(slot);
        self.live_count -= 1;
        entry.event.take()
    }

    /// Cancels a pending event. Returns false when the event has already fired or was cancelled.
    pub fn cancel(&mut self, handle: TimerHandle) -> bool {
        match self.slots.get(handle.slot as usize) {
            Some(entry) if entry.seq == handle.seq => {
                self.release(handle.slot);
                true
            }
            _ => false,
        }
    }

    /// Removes and returns the earliest live event.
    #[inline]
    pub fn pop(&mut self) -> Option<(VirtualTimeMs, E)> {
        while let Some(Reverse((time, key))) = self.heap.pop() {
            let slot = (key & SLOT_MASK) as u32;
            if self.slots[slot as usize].seq != key >> SLOT_BITS {
                continue; // Cancelled; its slot was freed (and maybe reused) at cancel time.
            }
            if let Some(event) = self.release(slot) {
                return Some((time, event));
            }
        }
        None
    }

    /// The time of the earliest live event, discarding cancelled keys on top of the heap.
    #[inline]
    pub fn peek_time(&mut self) -> Option<VirtualTimeMs> {
        loop {
            let Reverse((time, key)) = *self.heap.peek()?;
            if self.slots[(key & SLOT_MASK) as usize].seq == key >> SLOT_BITS {
                return Some(time);
            }
            self.heap.pop();
        }
    }

    /// Number of live (scheduled and not cancelled) events.
    pub fn len(&self) -> usize {
        self.live_count
    }

    pub fn is_empty(&self) -> bool {
        self.live_count == 0
    }

    /// Total number of events ever scheduled; also the next sequence number.
    pub fn scheduled_count(&self) -> u64 {
        self.next_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Schedule(u64),
        Pop,
        Cancel(usize),
    }

    fn op_strategy() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..50).prop_map(Op::Schedule),
            3 => Just(Op::Pop),
            1 => (0usize..64).prop_map(Op::Cancel),
        ]
    }

    proptest! {
        /// The queue behaves exactly like a reference that keeps pending events in a Vec and
        /// always takes the smallest (time, seq): same order, FIFO among equal times, and
        /// cancellation removes exactly the pending event it names.
        #[test]
        fn queue_matches_sorted_vec_reference(ops in proptest::collection::vec(op_strategy(), 0..300)) {
            let mut queue = EventQueue::new();
            let mut reference: Vec<(u64, u64, usize)> = Vec::new();
            let mut handles: Vec<TimerHandle> = Vec::new();
            let mut now = 0u64;
            for op in ops {
                match op {
                    Op::Schedule(delay) => {
                        let id = handles.len();
                        let handle = queue.schedule(now + delay, id);
                        reference.push((now + delay, handle.seq, id));
                        handles.push(handle);
                    }
                    Op::Pop => {
                        reference.sort();
                        let expected = if reference.is_empty() { None } else { Some(reference.remove(0)) };
                        let got = queue.pop();
                        prop_assert_eq!(got, expected.map(|(t, _, id)| (t, id)));
                        if let Some((t, _)) = got { now = t; }
                    }
                    Op::Cancel(index) => {
                        if handles.is_empty() { continue; }
                        let handle = handles[index % handles.len()];
                        let position = reference.iter().position(|&(_, seq, _)| seq == handle.seq);
                        let cancelled = queue.cancel(handle);
                        prop_assert_eq!(cancelled, position.is_some());
                        if let Some(p) = position { reference.remove(p); }
                    }
                }
                prop_assert_eq!(queue.len(), reference.len());
                let mut sorted = reference.clone();
                sorted.sort();
                prop_assert_eq!(queue.peek_time(), sorted.first().map(|e| e.0));
            }
        }
    }

    #[test]
    fn equal_times_keep_insertion_order() {
        let mut queue = EventQueue::new();
        for id in 0..5 {
            queue.schedule(10, id);
        }
        let order: Vec<_> = std::iter::from_fn(|| queue.pop().map(|(_, id)| id)).collect();
        assert_eq!(order, vec![0, 1, 2, 3, 4]);
    }
}
