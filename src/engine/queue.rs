//! The event queue: a binary heap ordered by (time, sequence number), with O(1) cancellation.
//!
//! Every scheduled event gets a sequence number from a counter that only grows, so two events at
//! the same virtual time come out in the order they were scheduled. That is what makes a run
//! reproducible: the heap's internal layout never decides an outcome.
//!
//! Cancellation is lazy and O(1). Each pending event lives in a slot of a table; the ordering
//! structure holds only 16-byte keys (time, seq << 24 | slot). [`EventQueue::cancel`] frees the
//! slot; stale keys are discarded when they surface because their sequence number no longer
//! matches the slot's. This bounds a queue to 2^24 (16.7 M) events pending at once and 2^40
//! scheduled in its lifetime, limits that [`EventQueue::schedule`] asserts.
//!
//! Ordering is a radix heap: simulation time only moves forward, so keys are bucketed by the
//! highest bit in which they differ from the last minimum, which makes push O(1) and pop
//! amortised O(1) instead of O(log n) with a branch miss per level. Buckets are appended to in
//! sequence order and redistributed in order, so each bucket stays sorted by sequence number and
//! equal times leave in insertion order. A key below the current minimum (an outside caller
//! scheduling "now" after the queue looked ahead) goes to a small binary heap that is always
//! served first.

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

#[derive(Clone)]
struct Slot<E> {
    /// Sequence number of the pending event in this slot, or [`FREE_SLOT`].
    seq: u64,
    event: Option<E>,
}

/// (time, seq << 24 | slot).
type Key = (VirtualTimeMs, u64);

/// A priority queue of events keyed by (virtual time, insertion sequence).
#[derive(Clone)]
pub struct EventQueue<E> {
    /// `buckets[0]` holds keys equal to `minimum`, read from `head`; `buckets[i]` holds keys
    /// whose highest bit differing from `minimum` is bit i − 1.
    buckets: Vec<Vec<Key>>,
    /// Bit i set ⇔ `buckets[i]` may be non-empty (i ≥ 1), so the next bucket is one instruction.
    occupied: u128,
    head: usize,
    minimum: VirtualTimeMs,
    /// Keys scheduled below `minimum`; always earlier than every bucketed key.
    early: BinaryHeap<Reverse<Key>>,
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

#[inline]
fn bucket_index(minimum: VirtualTimeMs, time: VirtualTimeMs) -> usize {
    (u64::BITS - (time ^ minimum).leading_zeros()) as usize
}

impl<E> EventQueue<E> {
    pub fn new() -> Self {
        EventQueue {
            buckets: (0..=64).map(|_| Vec::new()).collect(),
            occupied: 0,
            head: 0,
            minimum: 0,
            early: BinaryHeap::new(),
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
        let key = (time, (seq << SLOT_BITS) | slot as u64);
        if time >= self.minimum {
            let index = bucket_index(self.minimum, time);
            self.buckets[index].push(key);
            self.occupied |= 1 << index;
        } else {
            self.early.push(Reverse(key));
        }
        TimerHandle { time, seq, slot }
    }

    fn release(&mut self, slot: u32) -> Option<E> {
        let entry = &mut self.slots[slot as usize];
        entry.seq = FREE_SLOT;
        self.free_slots.push(slot);
        self.live_count -= 1;
        entry.event.take()
    }

    #[inline]
    fn is_live(&self, key: Key) -> bool {
        self.slots[(key.1 & SLOT_MASK) as usize].seq == key.1 >> SLOT_BITS
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

    /// Makes the earliest live key the head of bucket 0 (or of `early`); false when empty.
    fn settle(&mut self) -> bool {
        while let Some(Reverse(key)) = self.early.peek() {
            if self.is_live(*key) {
                return true;
            }
            self.early.pop();
        }
        loop {
            while self.head < self.buckets[0].len() {
                if self.is_live(self.buckets[0][self.head]) {
                    return true;
                }
                self.head += 1;
            }
            self.buckets[0].clear();
            self.head = 0;
            let higher = self.occupied & !1;
            if higher == 0 {
                return false;
            }
            let index = higher.trailing_zeros() as usize;
            self.occupied &= !(1 << index);
            // Redistribute the first non-empty bucket around its smallest key (live or not:
            // a cancelled key at the head is skipped above). Every lower bucket is empty, so
            // appending in order keeps each bucket sorted by seq.
            let mut bucket = std::mem::take(&mut self.buckets[index]);
            if let Some(minimum) = bucket.iter().map(|k| k.0).min() {
                self.minimum = minimum;
                for key in bucket.drain(..) {
                    let target = bucket_index(minimum, key.0);
                    self.buckets[target].push(key);
                    self.occupied |= 1 << target;
                }
            }
            // Keep the allocation for reuse.
            self.buckets[index] = bucket;
        }
    }

    /// Removes and returns the earliest live event.
    #[inline]
    pub fn pop(&mut self) -> Option<(VirtualTimeMs, E)> {
        if !self.settle() {
            return None;
        }
        let key = match self.early.pop() {
            Some(Reverse(key)) => key,
            None => {
                let key = self.buckets[0][self.head];
                self.head += 1;
                key
            }
        };
        let event = self.release((key.1 & SLOT_MASK) as u32)?;
        Some((key.0, event))
    }

    /// The time of the earliest live event.
    #[inline]
    pub fn peek_time(&mut self) -> Option<VirtualTimeMs> {
        if !self.settle() {
            return None;
        }
        Some(match self.early.peek() {
            Some(Reverse(key)) => key.0,
            None => self.minimum,
        })
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
            4 => (0u64..5000).prop_map(|d| Op::Schedule(if d < 4000 { d % 50 } else { d })),
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
