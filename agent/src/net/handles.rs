//! Bounded maps from the `u64` handles the node engine sees to the libp2p
//! objects they stand for (a gossip message awaiting its verdict, an inbound
//! request awaiting its response).
//!
//! Handles increase by one per insertion, so the smallest live handle is
//! always the oldest entry; when a map is full, inserting evicts it and hands
//! it back so the caller can settle it (ignore the message, drop the channel).

use std::collections::BTreeMap;

/// A map of at most `cap` entries keyed by handles it assigns itself.
#[derive(Debug)]
pub(crate) struct HandleMap<T> {
    next: u64,
    cap: usize,
    entries: BTreeMap<u64, T>,
}

impl<T> HandleMap<T> {
    /// An empty map holding at most `cap` entries (at least one).
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            next: 1,
            cap: cap.max(1),
            entries: BTreeMap::new(),
        }
    }

    /// Stores `value` under a new handle; if that overfills the map, the
    /// oldest entry is removed and returned with its handle.
    pub(crate) fn insert(&mut self, value: T) -> (u64, Option<(u64, T)>) {
        let handle = self.next;
        // 2^64 insertions never happen; wrapping only avoids a panic path.
        self.next = self.next.wrapping_add(1);
        self.entries.insert(handle, value);
        let evicted = if self.entries.len() > self.cap {
            self.entries.pop_first()
        } else {
            None
        };
        (handle, evicted)
    }

    /// Takes the entry for `handle`, if it is still held.
    pub(crate) fn remove(&mut self, handle: u64) -> Option<T> {
        self.entries.remove(&handle)
    }

    /// Removes and returns every entry for which `pred` holds.
    pub(crate) fn remove_where(&mut self, mut pred: impl FnMut(&T) -> bool) -> Vec<(u64, T)> {
        let doomed: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, v)| pred(v))
            .map(|(k, _)| *k)
            .collect();
        doomed
            .into_iter()
            .filter_map(|k| self.entries.remove(&k).map(|v| (k, v)))
            .collect()
    }

    /// How many entries are held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn handles_are_distinct_and_removable_once() {
        let mut map = HandleMap::new(4);
        let (a, none) = map.insert("a");
        assert!(none.is_none());
        let (b, _) = map.insert("b");
        assert_ne!(a, b);
        assert_eq!(map.remove(a), Some("a"));
        assert_eq!(map.remove(a), None);
        assert_eq!(map.len(), 1);
    }

    #[test]
    fn a_full_map_evicts_the_oldest() {
        let mut map = HandleMap::new(2);
        let (a, _) = map.insert('a');
        let (b, _) = map.insert('b');
        let (_, evicted) = map.insert('c');
        assert_eq!(evicted, Some((a, 'a')));
        assert_eq!(map.len(), 2);
        assert_eq!(map.remove(a), None);
        assert_eq!(map.remove(b), Some('b'));
    }

    #[test]
    fn remove_where_takes_only_matching_entries() {
        let mut map = HandleMap::new(8);
        for i in 0..6 {
            map.insert(i);
        }
        let gone = map.remove_where(|v| v % 2 == 0);
        assert_eq!(gone.iter().map(|(_, v)| *v).collect::<Vec<_>>(), [0, 2, 4]);
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn a_zero_cap_still_holds_the_newest_entry() {
        let mut map = HandleMap::new(0);
        let (a, _) = map.insert(1);
        let (b, evicted) = map.insert(2);
        assert_eq!(evicted, Some((a, 1)));
        assert_eq!(map.remove(b), Some(2));
    }

    proptest! {
        /// Whatever the sequence of inserts and removals, the map never holds
        /// more than its cap, and what it holds is exactly the newest live
        /// entries a model of unbounded storage minus evictions predicts.
        #[test]
        fn never_exceeds_its_cap(cap in 1usize..8, ops in proptest::collection::vec(any::<Option<u8>>(), 0..200)) {
            let mut map = HandleMap::new(cap);
            let mut model: BTreeMap<u64, u32> = BTreeMap::new();
            let mut issued = Vec::new();
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    None => {
                        let (h, evicted) = map.insert(i as u32);
                        model.insert(h, i as u32);
                        issued.push(h);
                        if model.len() > cap {
                            let oldest = model.pop_first();
                            prop_assert_eq!(evicted, oldest);
                        } else {
                            prop_assert!(evicted.is_none());
                        }
                    }
                    Some(pick) if !issued.is_empty() => {
                        let h = issued[pick as usize % issued.len()];
                        prop_assert_eq!(map.remove(h), model.remove(&h));
                    }
                    Some(_) => {}
                }
                prop_assert!(map.len() <= cap);
                prop_assert_eq!(map.len(), model.len());
            }
        }
    }
}
