//! Simulated time: a priority queue of events ordered by time, then by
//! insertion order, so that equal times never depend on hash-map order.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use waveguard_protocol::Timestamp;

/// A queue of events of type `E` in simulated time.
pub struct EventQueue<E> {
    heap: BinaryHeap<Reverse<(Timestamp, u64, usize)>>,
    slots: Vec<Option<E>>,
    free: Vec<usize>,
    seq: u64,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            heap: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            seq: 0,
        }
    }
}

impl<E> EventQueue<E> {
    /// Schedules `event` at `at`.
    pub fn push(&mut self, at: Timestamp, event: E) {
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i] = Some(event);
                i
            }
            None => {
                self.slots.push(Some(event));
                self.slots.len() - 1
            }
        };
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, slot)));
    }

    /// The earliest event and its time.
    pub fn pop(&mut self) -> Option<(Timestamp, E)> {
        let Reverse((at, _, slot)) = self.heap.pop()?;
        let event = self.slots[slot].take()?;
        self.free.push(slot);
        Some((at, event))
    }

    /// Events waiting.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no event waits.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_by_time_then_insertion() {
        let mut q = EventQueue::default();
        q.push(Timestamp(5), "b");
        q.push(Timestamp(1), "a");
        q.push(Timestamp(5), "c");
        assert_eq!(q.pop(), Some((Timestamp(1), "a")));
        assert_eq!(q.pop(), Some((Timestamp(5), "b")));
        assert_eq!(q.pop(), Some((Timestamp(5), "c")));
        assert_eq!(q.pop(), None);
    }
}
