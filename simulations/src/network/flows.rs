//! Flow-level bandwidth sharing for bulk transfers.
//!
//! A bulk transfer (a chunk) is a *flow* of a known number of bytes that
//! crosses one to [`MAX_RESOURCES_PER_FLOW`] *resources*: the sender's uplink,
//! the receiver's downlink and, between sites, a site's WAN uplink and the other
//! site's WAN downlink. Each resource has a capacity in bytes per second, which
//! may be `f64::INFINITY` (unlimited) or 0 (a cut link). Time is integer
//! milliseconds.
//!
//! **Sharing rule: local fair sharing.** An active flow `f` runs at
//! `min over the resources r it crosses of capacity(r) / flows_at(r)`. This is a
//! simplification of max-min fairness: a resource never carries more than its
//! capacity, every flow whose resources all have positive capacity moves, but
//! capacity left idle at a resource by flows bottlenecked elsewhere is not given
//! to the others, so throughput is underestimated when bottlenecks differ. We
//! accept that because the rule is *local*: a flow's rate depends only on the
//! counts and capacities of its own resources, so when a flow starts, ends or
//! is cancelled, or a capacity changes, only the flows that share a touched
//! resource are re-rated (cost proportional to the flows at those resources),
//! whereas exact max-min needs an iterative water-filling over the whole
//! connected set of flows on every event. Redistributing idle capacity was
//! considered and left out: keeping a resource within capacity while a flow
//! there takes more than its equal share needs an upper bound on what every
//! other flow there may receive at *its* other resources, which is information
//! two or more hops away, so no one-hop rule is both safe and useful (for flows
//! crossing two or more resources it degenerates to the rule above).
//!
//! **Completion events.** The model keeps no clock and no queue of its own.
//! Each flow records the bytes remaining, its rate and the time of its last rate
//! change; a re-rating first accounts for the bytes sent at the old rate, then
//! bumps the flow's *version* and queues a completion event
//! `(at_ms, flow, version)` that the caller collects with
//! [`Flows::drain_scheduled`] and later hands back to [`Flows::finish`], which
//! ignores it unless the version is still current. A flow due at
//! `now + ceil(remaining * 1000 / rate)` ms (at least `now + 1` while bytes
//! remain) is complete when its current event fires, whatever floating-point
//! residue is left. A flow at rate 0 gets no event until it is re-rated. A flow
//! whose rate does not change keeps its version and its pending event.
//!
//! Everything lives in vectors indexed by integers (no hash-map iteration), so
//! the same calls give the same events, in the same order.

use std::vec::Drain;

/// The most resources one flow may cross.
pub const MAX_RESOURCES_PER_FLOW: usize = 4;

/// No completion pending (rate 0).
const NO_EVENT: u64 = u64::MAX;

/// A shared capacity: a link direction, a node's uplink or downlink, a site's
/// WAN link. Ids are handed out densely from 0 by [`Flows::add_resource`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResourceId(pub u32);

/// An active (or finished) flow: a slot index and the generation of that slot,
/// so that an id kept after its flow ended never names a later flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowId {
    index: u32,
    generation: u32,
}

impl FlowId {
    /// The slot index: dense and reused, handy to index a side table, but two
    /// flows that did not overlap in time may share it.
    pub fn index(self) -> u32 {
        self.index
    }

    /// How many flows used this slot before this one.
    pub fn generation(self) -> u32 {
        self.generation
    }
}

/// A resource: its capacity, the flows crossing it and the bytes it carried
/// for flows that have left it.
struct Resource {
    capacity: f64,
    /// Slot indices of the flows crossing it, in no meaningful order.
    flows: Vec<u32>,
    /// Bytes of finished flows (whole) and cancelled flows (what was sent).
    delivered: u64,
}

/// One slot of the flow slab; `token` is `Some` while the flow is active.
struct Slot<T> {
    generation: u32,
    version: u32,
    token: Option<T>,
    size: u64,
    /// Bytes left at `since` (fractional: rates are real numbers).
    remaining: f64,
    /// Current rate, bytes per second.
    rate: f64,
    /// Time of the last rate change, ms.
    since: u64,
    /// Time of the pending completion event, or [`NO_EVENT`].
    due: u64,
    /// How many of `res` / `pos` are used (0 for a zero-byte flow).
    len: u8,
    /// The resources crossed.
    res: [u32; MAX_RESOURCES_PER_FLOW],
    /// The position of this flow in each resource's `flows` list.
    pos: [u32; MAX_RESOURCES_PER_FLOW],
}

impl<T> Slot<T> {
    /// Bytes left at `now`, accounting for progress at the current rate.
    fn remaining_at(&self, now: u64) -> f64 {
        if self.due <= now {
            // Due (its event may merely not have been handled yet): done.
            return 0.0;
        }
        if self.rate <= 0.0 || now <= self.since {
            return self.remaining;
        }
        let sent = self.rate * (now - self.since) as f64 / 1000.0;
        (self.remaining - sent).max(0.0)
    }

    /// Whole bytes sent by `now`.
    fn sent_at(&self, now: u64) -> u64 {
        let left = self.remaining_at(now).min(self.size as f64);
        ((self.size as f64 - left).floor() as u64).min(self.size)
    }
}

/// The set of resources and active flows, with local fair sharing (see the
/// module documentation). `T` is the caller's token for a flow, returned when
/// the flow finishes or is cancelled.
pub struct Flows<T> {
    resources: Vec<Resource>,
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    active: usize,
    scheduled: Vec<(u64, FlowId, u32)>,
    /// Sum of the finite rates of active flows.
    total_finite: f64,
    /// Number of active flows at infinite rate.
    total_infinite: usize,
    /// Bytes carried by flows that have ended: finished flows whole, cancelled ones as sent.
    carried: u64,
}

impl<T> Default for Flows<T> {
    fn default() -> Self {
        Flows {
            resources: Vec::new(),
            slots: Vec::new(),
            free: Vec::new(),
            active: 0,
            scheduled: Vec::new(),
            total_finite: 0.0,
            total_infinite: 0,
            carried: 0,
        }
    }
}

/// A capacity as used: NaN and negative values count as 0.
fn sanitize(bytes_per_sec: f64) -> f64 {
    if bytes_per_sec >= 0.0 {
        bytes_per_sec
    } else {
        0.0
    }
}

impl<T> Flows<T> {
    /// No resources, no flows.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a resource of `bytes_per_sec` capacity (`f64::INFINITY` for
    /// unlimited; NaN or negative counts as 0) and returns its id.
    pub fn add_resource(&mut self, bytes_per_sec: f64) -> ResourceId {
        let id = ResourceId(self.resources.len() as u32);
        self.resources.push(Resource {
            capacity: sanitize(bytes_per_sec),
            flows: Vec::new(),
            delivered: 0,
        });
        id
    }

    /// How many resources exist.
    pub fn resource_count(&self) -> usize {
        self.resources.len()
    }

    /// The capacity of `r` in bytes per second, or `None` for an unknown id.
    pub fn capacity(&self, r: ResourceId) -> Option<f64> {
        self.resources.get(r.0 as usize).map(|res| res.capacity)
    }

    /// Changes the capacity of `r` at `now` and re-rates the flows crossing
    /// it. Ignored for an unknown id.
    pub fn set_capacity(&mut self, now: u64, r: ResourceId, bytes_per_sec: f64) {
        let Some(res) = self.resources.get_mut(r.0 as usize) else {
            return;
        };
        res.capacity = sanitize(bytes_per_sec);
        self.rerate_resource(now, r.0);
    }

    /// Starts at `now` a flow of `bytes` crossing `resources` and re-rates the
    /// flows sharing a resource with it; its completion event is queued for
    /// [`Flows::drain_scheduled`].
    ///
    /// Unknown and repeated resource ids are skipped and only the first
    /// [`MAX_RESOURCES_PER_FLOW`] distinct ones are kept; a flow crossing no
    /// resource runs at infinite rate (it completes at `now + 1`). A zero-byte
    /// flow joins no resource, has rate 0 and completes at `now`.
    pub fn start(&mut self, now: u64, resources: &[ResourceId], bytes: u64, token: T) -> FlowId {
        let mut res = [0u32; MAX_RESOURCES_PER_FLOW];
        let mut len = 0usize;
        if bytes > 0 {
            for r in resources {
                if len == MAX_RESOURCES_PER_FLOW {
                    break;
                }
                if (r.0 as usize) < self.resources.len() && !res[..len].contains(&r.0) {
                    res[len] = r.0;
                    len += 1;
                }
            }
        }
        let slot = Slot {
            generation: 0,
            version: 0,
            token: Some(token),
            size: bytes,
            remaining: bytes as f64,
            rate: 0.0,
            since: now,
            due: NO_EVENT,
            len: len as u8,
            res,
            pos: [0; MAX_RESOURCES_PER_FLOW],
        };
        let index = match self.free.pop() {
            Some(i) => {
                let old = &mut self.slots[i as usize];
                let generation = old.generation;
                let version = old.version;
                *old = Slot {
                    generation,
                    version,
                    ..slot
                };
                i
            }
            None => {
                self.slots.push(slot);
                (self.slots.len() - 1) as u32
            }
        };
        self.active += 1;
        let idx = index as usize;
        for (k, &r) in res[..len].iter().enumerate() {
            let list = &mut self.resources[r as usize].flows;
            self.slots[idx].pos[k] = list.len() as u32;
            list.push(index);
        }
        if bytes > 0 {
            let rate = self.share(idx);
            self.slots[idx].rate = rate;
            self.add_total(rate);
        }
        self.reschedule(now, idx);
        for &r in &res[..len] {
            self.rerate_resource(now, r);
        }
        FlowId {
            index,
            generation: self.slots[idx].generation,
        }
    }

    /// Cancels flow `id` at `now`: the bytes it sent so far stay counted in
    /// [`Flows::bytes_sent`], the flows sharing a resource with it are re-rated
    /// and its token is returned. `None` if `id` is not active.
    pub fn cancel(&mut self, now: u64, id: FlowId) -> Option<T> {
        let idx = self.lookup(id)?;
        self.remove(now, idx, false)
    }

    /// Handles the completion event `(_, id, version)` at `now`: if `version`
    /// is the flow's current one, the flow is complete (all its bytes count as
    /// delivered), the flows sharing a resource with it are re-rated and its
    /// token is returned. A stale version or an inactive `id` gives `None`.
    pub fn finish(&mut self, now: u64, id: FlowId, version: u32) -> Option<T> {
        let idx = self.lookup(id)?;
        if self.slots[idx].version != version {
            return None;
        }
        self.remove(now, idx, true)
    }

    /// Completion events created since the last call, in creation order:
    /// `(at_ms, flow, version)`. Only the latest version of a flow counts.
    pub fn drain_scheduled(&mut self) -> Drain<'_, (u64, FlowId, u32)> {
        self.scheduled.drain(..)
    }

    /// Sum of the current rates of the flows crossing `r`, bytes per second
    /// (0 for an unknown id). Costs O(flows at `r`).
    pub fn rate(&self, r: ResourceId) -> f64 {
        self.resources.get(r.0 as usize).map_or(0.0, |res| {
            res.flows.iter().map(|&i| self.slots[i as usize].rate).sum()
        })
    }

    /// Whole bytes carried by `r` up to `now`: finished flows in full,
    /// cancelled flows up to their cancellation, active flows up to `now`
    /// (0 for an unknown id). Costs O(flows at `r`).
    pub fn bytes_sent(&self, r: ResourceId, now: u64) -> u64 {
        self.resources.get(r.0 as usize).map_or(0, |res| {
            res.flows
                .iter()
                .map(|&i| self.slots[i as usize].sent_at(now))
                .fold(res.delivered, u64::saturating_add)
        })
    }

    /// Sum of the current rates of all active flows, bytes per second
    /// (maintained incrementally, O(1)).
    pub fn total_rate(&self) -> f64 {
        if self.total_infinite > 0 {
            f64::INFINITY
        } else {
            self.total_finite.max(0.0)
        }
    }

    /// Bytes carried end to end by flows that have ended (finished flows whole,
    /// cancelled flows up to their cancellation). Exact, unlike integrating
    /// [`Flows::total_rate`] samples, which over-counts on a rising ramp.
    pub fn carried(&self) -> u64 {
        self.carried
    }

    /// Number of active flows.
    pub fn active(&self) -> usize {
        self.active
    }

    /// Number of active flows crossing `r` (0 for an unknown id).
    pub fn flows_at(&self, r: ResourceId) -> usize {
        self.resources
            .get(r.0 as usize)
            .map_or(0, |res| res.flows.len())
    }

    /// The current rate of flow `id`, bytes per second, if active.
    pub fn flow_rate(&self, id: FlowId) -> Option<f64> {
        self.lookup(id).map(|i| self.slots[i].rate)
    }

    /// Bytes flow `id` still has to send at `now` (fractional), if active.
    pub fn remaining(&self, id: FlowId, now: u64) -> Option<f64> {
        self.lookup(id).map(|i| self.slots[i].remaining_at(now))
    }

    /// The token of flow `id`, if active.
    pub fn get(&self, id: FlowId) -> Option<&T> {
        self.lookup(id).and_then(|i| self.slots[i].token.as_ref())
    }

    /// The slot of `id` if it names an active flow.
    fn lookup(&self, id: FlowId) -> Option<usize> {
        let slot = self.slots.get(id.index as usize)?;
        (slot.generation == id.generation && slot.token.is_some()).then_some(id.index as usize)
    }

    /// The local fair share of flow `idx`: the smallest equal share among its
    /// resources (infinite if it crosses none).
    fn share(&self, idx: usize) -> f64 {
        let slot = &self.slots[idx];
        slot.res[..slot.len as usize]
            .iter()
            .map(|&r| {
                let res = &self.resources[r as usize];
                res.capacity / res.flows.len() as f64
            })
            .fold(f64::INFINITY, f64::min)
    }

    /// Re-rates every flow crossing resource `r`.
    fn rerate_resource(&mut self, now: u64, r: u32) {
        let n = self.resources[r as usize].flows.len();
        for i in 0..n {
            let idx = self.resources[r as usize].flows[i] as usize;
            self.rerate(now, idx);
        }
    }

    /// Recomputes the rate of flow `idx`; if it changed, accounts for the
    /// bytes sent at the old rate and queues a new completion event.
    fn rerate(&mut self, now: u64, idx: usize) {
        let rate = self.share(idx);
        let slot = &mut self.slots[idx];
        if rate == slot.rate {
            return;
        }
        slot.remaining = slot.remaining_at(now);
        slot.since = now;
        let old = std::mem::replace(&mut slot.rate, rate);
        self.sub_total(old);
        self.add_total(rate);
        self.reschedule(now, idx);
    }

    /// Bumps the version of flow `idx` and queues its completion event from
    /// its remaining bytes and rate (none at rate 0 with bytes left).
    fn reschedule(&mut self, now: u64, idx: usize) {
        let slot = &mut self.slots[idx];
        slot.version = slot.version.wrapping_add(1);
        slot.due = if slot.remaining <= 0.0 {
            now
        } else if slot.rate > 0.0 {
            // `as` saturates; a huge wait lands on NO_EVENT, i.e. never.
            let ms = (slot.remaining * 1000.0 / slot.rate).ceil() as u64;
            now.saturating_add(ms.max(1))
        } else {
            NO_EVENT
        };
        if slot.due != NO_EVENT {
            let id = FlowId {
                index: idx as u32,
                generation: slot.generation,
            };
            self.scheduled.push((slot.due, id, slot.version));
        }
    }

    /// Removes active flow `idx` at `now` (whole if `completed`, else what it
    /// sent so far counts as carried), frees its slot, re-rates its neighbours
    /// and returns its token.
    fn remove(&mut self, now: u64, idx: usize, completed: bool) -> Option<T> {
        let slot = &mut self.slots[idx];
        let token = slot.token.take()?;
        let carried = if completed {
            slot.size
        } else {
            slot.sent_at(now)
        };
        let len = slot.len as usize;
        let res = slot.res;
        let pos = slot.pos;
        let rate = slot.rate;
        self.carried = self.carried.saturating_add(carried);
        slot.len = 0;
        slot.rate = 0.0;
        slot.remaining = 0.0;
        slot.due = NO_EVENT;
        slot.version = slot.version.wrapping_add(1);
        slot.generation = slot.generation.wrapping_add(1);
        for k in 0..len {
            let resource = &mut self.resources[res[k] as usize];
            resource.delivered = resource.delivered.saturating_add(carried);
            let p = pos[k] as usize;
            resource.flows.swap_remove(p);
            if let Some(&moved) = resource.flows.get(p) {
                let other = &mut self.slots[moved as usize];
                if let Some(j) = other.res[..other.len as usize]
                    .iter()
                    .position(|&x| x == res[k])
                {
                    other.pos[j] = p as u32;
                }
            }
        }
        self.free.push(idx as u32);
        self.active -= 1;
        if len > 0 {
            self.sub_total(rate);
        }
        if self.active == 0 {
            self.total_finite = 0.0;
            self.total_infinite = 0;
        }
        for &r in &res[..len] {
            self.rerate_resource(now, r);
        }
        Some(token)
    }

    fn add_total(&mut self, rate: f64) {
        if rate.is_infinite() {
            self.total_infinite += 1;
        } else {
            self.total_finite += rate;
        }
    }

    fn sub_total(&mut self, rate: f64) {
        if rate.is_infinite() {
            self.total_infinite = self.total_infinite.saturating_sub(1);
        } else {
            self.total_finite -= rate;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    const MB: u64 = 1_000_000;
    const MBPS: f64 = 1_000_000.0;

    /// The latest event of each flow in a drained batch.
    fn events<T>(flows: &mut Flows<T>) -> Vec<(u64, FlowId, u32)> {
        flows.drain_scheduled().collect()
    }

    /// The latest scheduled (time, version) of `id` in `evs`.
    fn latest(evs: &[(u64, FlowId, u32)], id: FlowId) -> Option<(u64, u32)> {
        evs.iter()
            .rev()
            .find(|e| e.1 == id)
            .map(|&(t, _, v)| (t, v))
    }

    #[test]
    fn one_flow_one_resource_completes_at_one_second() {
        let mut f = Flows::new();
        let up = f.add_resource(MBPS);
        let a = f.start(0, &[up], MB, "a");
        let evs = events(&mut f);
        assert_eq!(evs.len(), 1);
        let (t, v) = latest(&evs, a).unwrap();
        assert_eq!(t, 1000);
        assert_eq!(f.flow_rate(a), Some(MBPS));
        assert_eq!(f.rate(up), MBPS);
        assert_eq!(f.total_rate(), MBPS);
        assert_eq!(f.finish(t, a, v), Some("a"));
        assert_eq!(f.active(), 0);
        assert_eq!(f.flows_at(up), 0);
        assert_eq!(f.bytes_sent(up, t), MB);
        assert_eq!(f.total_rate(), 0.0);
    }

    #[test]
    fn two_flows_share_an_uplink_then_the_survivor_speeds_up() {
        let mut f = Flows::new();
        let up = f.add_resource(MBPS);
        let a = f.start(0, &[up], MB, 1);
        let b = f.start(0, &[up], MB / 2, 2);
        let evs = events(&mut f);
        assert_eq!(f.flow_rate(a), Some(MBPS / 2.0));
        assert_eq!(f.flow_rate(b), Some(MBPS / 2.0));
        assert_eq!(f.rate(up), MBPS);
        let (ta, va) = latest(&evs, a).unwrap();
        let (tb, vb) = latest(&evs, b).unwrap();
        assert_eq!(ta, 2000);
        assert_eq!(tb, 1000);
        assert_eq!(f.finish(tb, b, vb), Some(2));
        assert_eq!(f.flow_rate(a), Some(MBPS));
        let evs = events(&mut f);
        let (ta2, va2) = latest(&evs, a).unwrap();
        assert_eq!(ta2, 1500);
        assert_ne!(va, va2);
        assert_eq!(f.finish(ta, a, va), None, "stale event ignored");
        assert_eq!(f.finish(ta2, a, va2), Some(1));
        assert_eq!(f.bytes_sent(up, ta2), MB + MB / 2);
    }

    #[test]
    fn receiver_downlink_is_the_bottleneck() {
        let mut f = Flows::new();
        let up = f.add_resource(10.0 * MBPS);
        let down = f.add_resource(MBPS);
        let a = f.start(0, &[up, down], MB, ());
        assert_eq!(f.flow_rate(a), Some(MBPS));
        assert_eq!(latest(&events(&mut f), a).unwrap().0, 1000);
        // A second flow to the same receiver halves both.
        let b = f.start(0, &[up, down], MB, ());
        assert_eq!(f.flow_rate(a), Some(MBPS / 2.0));
        assert_eq!(f.flow_rate(b), Some(MBPS / 2.0));
        assert!(f.rate(up) <= 10.0 * MBPS && f.rate(down) <= MBPS);
    }

    #[test]
    fn sender_uplink_is_the_bottleneck() {
        let mut f = Flows::new();
        let up = f.add_resource(MBPS);
        let d1 = f.add_resource(10.0 * MBPS);
        let d2 = f.add_resource(10.0 * MBPS);
        let a = f.start(0, &[up, d1], MB, ());
        let b = f.start(0, &[up, d2], MB, ());
        assert_eq!(f.flow_rate(a), Some(MBPS / 2.0));
        assert_eq!(f.flow_rate(b), Some(MBPS / 2.0));
        let evs = events(&mut f);
        assert_eq!(latest(&evs, a).unwrap().0, 2000);
        assert_eq!(latest(&evs, b).unwrap().0, 2000);
        assert_eq!(f.rate(d1), MBPS / 2.0);
    }

    #[test]
    fn infinite_capacity_resources() {
        let mut f = Flows::new();
        let wan = f.add_resource(f64::INFINITY);
        let down = f.add_resource(MBPS);
        let a = f.start(0, &[wan, down], MB, ());
        assert_eq!(f.flow_rate(a), Some(MBPS));
        assert_eq!(latest(&events(&mut f), a).unwrap().0, 1000);
        // Only unlimited resources: infinite rate, completes 1 ms later.
        let b = f.start(10, &[wan], MB, ());
        assert_eq!(f.flow_rate(b), Some(f64::INFINITY));
        assert_eq!(f.rate(wan), f64::INFINITY);
        assert_eq!(f.total_rate(), f64::INFINITY);
        let (tb, vb) = latest(&events(&mut f), b).unwrap();
        assert_eq!(tb, 11);
        assert_eq!(
            f.flow_rate(a),
            Some(MBPS),
            "a's share of wan is still infinite"
        );
        f.finish(tb, b, vb).unwrap();
        assert_eq!(f.total_rate(), MBPS);
        assert!(events(&mut f).is_empty(), "a's rate never changed");
        assert_eq!(f.bytes_sent(wan, 500), 500_000 + MB);
    }

    #[test]
    fn zero_capacity_pauses_until_restored() {
        let mut f = Flows::new();
        let up = f.add_resource(MBPS);
        let a = f.start(0, &[up], MB, ());
        let (t0, v0) = latest(&events(&mut f), a).unwrap();
        assert_eq!(t0, 1000);
        f.set_capacity(400, up, 0.0);
        assert_eq!(f.flow_rate(a), Some(0.0));
        assert!(events(&mut f).is_empty(), "no event while the link is cut");
        assert_eq!(f.finish(t0, a, v0), None, "the old event is stale");
        assert_eq!(f.remaining(a, 1000), Some(600_000.0));
        assert_eq!(f.bytes_sent(up, 1000), 400_000);
        f.set_capacity(1400, up, MBPS);
        let (t1, v1) = latest(&events(&mut f), a).unwrap();
        assert_eq!(t1, 2000);
        assert_eq!(f.finish(t1, a, v1), Some(()));
        assert_eq!(f.bytes_sent(up, t1), MB);
    }

    #[test]
    fn stale_versions_and_unknown_ids_give_none() {
        let mut f = Flows::new();
        let up = f.add_resource(MBPS);
        let a = f.start(0, &[up], MB, 'a');
        let (ta, va) = latest(&events(&mut f), a).unwrap();
        let _b = f.start(100, &[up], MB, 'b');
        assert_eq!(f.finish(ta, a, va), None);
        assert_eq!(f.finish(ta, a, va.wrapping_add(7)), None);
        let bogus = FlowId {
            index: 99,
            generation: 0,
        };
        assert_eq!(f.finish(0, bogus, 1), None);
        assert_eq!(f.cancel(0, bogus), None);
        assert_eq!(f.flow_rate(bogus), None);
        // Unknown resources are harmless.
        f.set_capacity(0, ResourceId(42), 1.0);
        assert_eq!(f.rate(ResourceId(42)), 0.0);
        assert_eq!(f.bytes_sent(ResourceId(42), 5), 0);
        assert_eq!(f.flows_at(ResourceId(42)), 0);
        assert_eq!(f.capacity(ResourceId(42)), None);
        let c = f.start(100, &[ResourceId(42), up, up], MB, 'c');
        assert_eq!(f.flows_at(up), 3);
        assert_eq!(f.flow_rate(c), Some(MBPS / 3.0));
    }

    #[test]
    fn cancel_returns_the_token_and_frees_the_slot() {
        let mut f = Flows::new();
        let up = f.add_resource(MBPS);
        let a = f.start(0, &[up], MB, "a");
        let b = f.start(0, &[up], MB, "b");
        events(&mut f);
        assert_eq!(f.cancel(500, a), Some("a"));
        assert_eq!(f.cancel(500, a), None);
        assert_eq!(f.active(), 1);
        assert_eq!(f.flows_at(up), 1);
        // b sent 250 kB in 500 ms at half rate, now at full rate.
        let (tb, vb) = latest(&events(&mut f), b).unwrap();
        assert_eq!(tb, 1250);
        assert_eq!(f.bytes_sent(up, 500), 500_000);
        // a's 250 kB count as carried; b has not ended.
        assert_eq!(f.carried(), 250_000);
        // The slot is reused under a new generation.
        let c = f.start(600, &[up], MB, "c");
        assert_eq!(c.index(), a.index());
        assert_ne!(c, a);
        assert_eq!(f.get(a), None);
        assert_eq!(f.get(c), Some(&"c"));
        assert_eq!(f.finish(tb, b, vb), None, "b was re-rated by c");
        let (tb, vb) = latest(&events(&mut f), b).unwrap();
        assert_eq!(f.finish(tb, b, vb), Some("b"));
        assert_eq!(f.carried(), 250_000 + MB);
    }

    #[test]
    fn bytes_sent_matches_bytes_delivered() {
        let mut f = Flows::new();
        let up = f.add_resource(MBPS);
        let d1 = f.add_resource(MBPS);
        let d2 = f.add_resource(MBPS / 4.0);
        let a = f.start(0, &[up, d1], MB, ());
        let b = f.start(0, &[up, d2], MB / 4, ());
        // a: 500 kB/s (uplink shared), b: 250 kB/s (its downlink).
        assert_eq!(f.bytes_sent(up, 400), 300_000);
        assert_eq!(f.bytes_sent(d1, 400), 200_000);
        assert_eq!(f.bytes_sent(d2, 400), 100_000);
        let evs = events(&mut f);
        let (tb, vb) = latest(&evs, b).unwrap();
        assert_eq!(tb, 1000);
        f.finish(tb, b, vb).unwrap();
        let (ta, va) = latest(&events(&mut f), a).unwrap();
        assert_eq!(ta, 1500);
        f.finish(ta, a, va).unwrap();
        assert_eq!(f.bytes_sent(up, 9999), MB + MB / 4);
        assert_eq!(f.bytes_sent(d1, 9999), MB);
        assert_eq!(f.bytes_sent(d2, 9999), MB / 4);
    }

    #[test]
    fn zero_byte_flow_completes_now() {
        let mut f = Flows::new();
        let up = f.add_resource(0.0);
        let a = f.start(7, &[up], 0, ());
        assert_eq!(f.flows_at(up), 0);
        let (t, v) = latest(&events(&mut f), a).unwrap();
        assert_eq!(t, 7);
        assert_eq!(f.finish(t, a, v), Some(()));
    }

    #[test]
    fn only_neighbours_are_rerated() {
        let mut f = Flows::new();
        let r: Vec<ResourceId> = (0..4).map(|_| f.add_resource(MBPS)).collect();
        let a = f.start(0, &[r[0], r[1]], MB, ());
        let b = f.start(0, &[r[2], r[3]], MB, ());
        events(&mut f);
        let _c = f.start(10, &[r[1]], MB, ());
        let evs = events(&mut f);
        assert!(latest(&evs, a).is_some());
        assert!(latest(&evs, b).is_none());
        // A flow whose share does not change keeps its event.
        let d = f.start(10, &[r[2], r[3]], MB, ());
        let e = f.start(20, &[r[0]], MB, ());
        let evs = events(&mut f);
        assert!(latest(&evs, e).is_some());
        assert!(latest(&evs, b).is_some() && latest(&evs, d).is_some());
        assert!(latest(&evs, a).is_none(), "a already limited to 1/2 by r1");
    }

    /// A step of the property test.
    #[derive(Clone, Debug)]
    enum Op {
        Start {
            dt: u64,
            res: Vec<usize>,
            bytes: u64,
        },
        Cancel {
            dt: u64,
            pick: usize,
        },
        SetCapacity {
            dt: u64,
            r: usize,
            cap: usize,
        },
        /// Handles the next pending event.
        Next,
    }

    const CAPS: [f64; 5] = [0.0, 1_000.0, 250_000.0, MBPS, f64::INFINITY];
    const NRES: usize = 5;

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0u64..300, prop::collection::vec(0..NRES, 1..=4), prop_oneof![Just(0u64), 1u64..2_000_000])
                .prop_map(|(dt, res, bytes)| Op::Start { dt, res, bytes }),
            1 => (0u64..300, any::<usize>()).prop_map(|(dt, pick)| Op::Cancel { dt, pick }),
            1 => (0u64..300, 0..NRES, 0..CAPS.len()).prop_map(|(dt, r, cap)| Op::SetCapacity { dt, r, cap }),
            4 => Just(Op::Next),
        ]
    }

    /// What the harness knows of an active flow.
    struct Tracked {
        res: Vec<usize>,
        size: u64,
        /// Bytes delivered by integrating the reported rates over time.
        integrated: f64,
        max_rate: f64,
    }

    /// Runs `ops` against a fresh model, checking invariants after every
    /// step, and returns the log of everything observable.
    fn run(caps0: &[usize], ops: &[Op]) -> Result<Vec<String>, TestCaseError> {
        let mut f: Flows<u64> = Flows::new();
        let rs: Vec<ResourceId> = caps0.iter().map(|&c| f.add_resource(CAPS[c])).collect();
        let mut queue: BTreeMap<(u64, u64), (FlowId, u32)> = BTreeMap::new();
        let mut seq = 0u64;
        let mut tracked: BTreeMap<u64, (FlowId, Tracked)> = BTreeMap::new();
        let mut next_token = 0u64;
        let mut now = 0u64;
        let mut carried = vec![0u64; rs.len()];
        let mut log = Vec::new();

        // Integrates the current rates from `now` to `t`.
        fn advance(
            f: &Flows<u64>,
            tracked: &mut BTreeMap<u64, (FlowId, Tracked)>,
            now: &mut u64,
            t: u64,
        ) {
            for (id, tr) in tracked.values_mut() {
                let rate = f.flow_rate(*id).unwrap();
                if t > *now && rate > 0.0 {
                    tr.integrated += rate * (t - *now) as f64 / 1000.0;
                }
            }
            *now = t;
        }

        let handle_next = |f: &mut Flows<u64>,
                           queue: &mut BTreeMap<(u64, u64), (FlowId, u32)>,
                           tracked: &mut BTreeMap<u64, (FlowId, Tracked)>,
                           now: &mut u64,
                           carried: &mut Vec<u64>,
                           log: &mut Vec<String>|
         -> Result<(), TestCaseError> {
            let Some(((t, _), (id, v))) = queue.pop_first() else {
                return Ok(());
            };
            prop_assert!(t >= *now, "events never go back in time");
            advance(f, tracked, now, t);
            let got = f.finish(t, id, v);
            log.push(format!("finish {t} {id:?} {v} -> {got:?}"));
            if let Some(token) = got {
                let (tid, tr) = tracked.remove(&token).unwrap();
                prop_assert_eq!(tid, id);
                if tr.max_rate.is_finite() {
                    let size = tr.size as f64;
                    prop_assert!(
                        tr.integrated >= size * (1.0 - 1e-9) - 1e-6,
                        "delivered {} < size {}",
                        tr.integrated,
                        size
                    );
                    prop_assert!(
                        tr.integrated <= size + tr.max_rate / 1000.0 + size * 1e-9 + 1e-6,
                        "delivered {} > size {} + 1 ms",
                        tr.integrated,
                        size
                    );
                }
                if tr.size > 0 {
                    for &r in &tr.res {
                        carried[r] += tr.size;
                    }
                }
            }
            Ok(())
        };

        let collect = |f: &mut Flows<u64>,
                       queue: &mut BTreeMap<(u64, u64), (FlowId, u32)>,
                       seq: &mut u64,
                       now: u64,
                       log: &mut Vec<String>|
         -> Result<(), TestCaseError> {
            for (t, id, v) in f.drain_scheduled() {
                prop_assert!(t >= now);
                log.push(format!("event {t} {id:?} {v}"));
                *seq += 1;
                queue.insert((t, *seq), (id, v));
            }
            Ok(())
        };

        let check = |f: &Flows<u64>,
                     tracked: &mut BTreeMap<u64, (FlowId, Tracked)>,
                     rs: &[ResourceId]|
         -> Result<(), TestCaseError> {
            let mut sum = 0.0;
            let mut inf = false;
            for &r in rs {
                let cap = f.capacity(r).unwrap();
                let rate = f.rate(r);
                if cap.is_finite() {
                    prop_assert!(rate <= cap * (1.0 + 1e-6) + 1e-9, "{rate} > {cap}");
                }
            }
            // The harness's own count of flows per resource.
            let mut count = vec![0usize; rs.len()];
            for (_, tr) in tracked.values() {
                if tr.size > 0 {
                    for &r in &tr.res {
                        count[r] += 1;
                    }
                }
            }
            for (i, &r) in rs.iter().enumerate() {
                prop_assert_eq!(f.flows_at(r), count[i]);
            }
            for (id, tr) in tracked.values_mut() {
                let rate = f.flow_rate(*id).unwrap();
                prop_assert!(rate >= 0.0);
                // Local fair sharing, exactly.
                let expected = if tr.size == 0 {
                    0.0
                } else {
                    tr.res
                        .iter()
                        .map(|&r| f.capacity(rs[r]).unwrap() / count[r] as f64)
                        .fold(f64::INFINITY, f64::min)
                };
                prop_assert_eq!(rate, expected, "flow {:?}", id);
                tr.max_rate = tr.max_rate.max(rate);
                if rate.is_infinite() {
                    inf = true;
                } else {
                    sum += rate;
                }
                if tr.size > 0 && tr.res.iter().all(|&r| f.capacity(rs[r]).unwrap() > 0.0) {
                    prop_assert!(rate > 0.0, "flow {:?} starved", id);
                }
            }
            prop_assert_eq!(f.active(), tracked.len());
            let total = f.total_rate();
            if inf {
                prop_assert!(total.is_infinite());
            } else {
                prop_assert!(
                    (total - sum).abs() <= 1e-6 * sum.max(1.0),
                    "{total} vs {sum}"
                );
            }
            Ok(())
        };

        for op in ops {
            // Timed operations first handle every event up to their time.
            let dt = match op {
                Op::Start { dt, .. } | Op::Cancel { dt, .. } | Op::SetCapacity { dt, .. } => {
                    Some(*dt)
                }
                Op::Next => None,
            };
            if let Some(dt) = dt {
                let t = now + dt;
                while queue.first_key_value().is_some_and(|(&(at, _), _)| at <= t) {
                    handle_next(
                        &mut f,
                        &mut queue,
                        &mut tracked,
                        &mut now,
                        &mut carried,
                        &mut log,
                    )?;
                    collect(&mut f, &mut queue, &mut seq, now, &mut log)?;
                    check(&f, &mut tracked, &rs)?;
                }
                advance(&f, &mut tracked, &mut now, t);
            }
            match op {
                Op::Start { res, bytes, .. } => {
                    let ids: Vec<ResourceId> = res.iter().map(|&r| rs[r]).collect();
                    let mut uniq = res.clone();
                    uniq.sort_unstable();
                    uniq.dedup();
                    let token = next_token;
                    next_token += 1;
                    let id = f.start(now, &ids, *bytes, token);
                    log.push(format!("start {now} {res:?} {bytes} -> {id:?}"));
                    tracked.insert(
                        token,
                        (
                            id,
                            Tracked {
                                res: uniq,
                                size: *bytes,
                                integrated: 0.0,
                                max_rate: 0.0,
                            },
                        ),
                    );
                }
                Op::Cancel { pick, .. } => {
                    if !tracked.is_empty() {
                        let token = *tracked.keys().nth(pick % tracked.len()).unwrap();
                        let (id, tr) = tracked.remove(&token).unwrap();
                        let left = f.remaining(id, now).unwrap();
                        let sent = ((tr.size as f64 - left).floor() as u64).min(tr.size);
                        let got = f.cancel(now, id);
                        prop_assert_eq!(got, Some(token));
                        prop_assert_eq!(f.cancel(now, id), None);
                        log.push(format!("cancel {now} {id:?}"));
                        if tr.size > 0 {
                            for &r in &tr.res {
                                carried[r] += sent;
                            }
                        }
                    }
                }
                Op::SetCapacity { r, cap, .. } => {
                    f.set_capacity(now, rs[*r], CAPS[*cap]);
                    log.push(format!("capacity {now} {r} {cap}"));
                }
                Op::Next => {
                    handle_next(
                        &mut f,
                        &mut queue,
                        &mut tracked,
                        &mut now,
                        &mut carried,
                        &mut log,
                    )?;
                }
            }
            collect(&mut f, &mut queue, &mut seq, now, &mut log)?;
            check(&f, &mut tracked, &rs)?;
        }

        // Restore every link and let everything complete.
        for &r in &rs {
            if f.capacity(r).unwrap() == 0.0 {
                f.set_capacity(now, r, MBPS);
            }
        }
        collect(&mut f, &mut queue, &mut seq, now, &mut log)?;
        check(&f, &mut tracked, &rs)?;
        while !queue.is_empty() {
            handle_next(
                &mut f,
                &mut queue,
                &mut tracked,
                &mut now,
                &mut carried,
                &mut log,
            )?;
            collect(&mut f, &mut queue, &mut seq, now, &mut log)?;
            check(&f, &mut tracked, &rs)?;
        }
        prop_assert!(tracked.is_empty(), "every flow completed");
        prop_assert_eq!(f.active(), 0);
        for (i, &r) in rs.iter().enumerate() {
            prop_assert_eq!(f.flows_at(r), 0);
            prop_assert_eq!(f.bytes_sent(r, now), carried[i], "resource {}", i);
        }
        Ok(log)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn random_sequences_keep_invariants(
            caps0 in prop::collection::vec(0..CAPS.len(), NRES),
            ops in prop::collection::vec(op(), 0..120),
        ) {
            let first = run(&caps0, &ops)?;
            let second = run(&caps0, &ops)?;
            prop_assert_eq!(first, second);
        }
    }
}
