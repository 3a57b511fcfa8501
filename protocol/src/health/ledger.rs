//! The health ledger of one release: the latest verified report of every
//! node, grouped by wave, with duplicate and replay protection.
//!
//! Per node, a report is taken only if its `seq` is above the latest one held
//! and its time does not go backwards, so a replayed old "healthy" cannot hide
//! a newer failure. A node's wave is fixed by its first report: a later report
//! claiming another wave is refused, so a failing node cannot leave its wave.
//! The ledger holds at most [`MAX_LEDGER_NODES`] nodes; past that, new nodes
//! are refused while known ones keep updating.

use super::report::{HealthStatus, VerifiedReport};
use crate::id::{NodeId, ReleaseId};
use crate::limits::MAX_LEDGER_NODES;
use crate::time::Timestamp;
use crate::wire::SignedHealth;
use std::collections::BTreeMap;
use thiserror::Error;

/// What the ledger holds for one node: its latest accepted report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node's wave (fixed by its first report).
    pub wave: u32,
    /// Latest status.
    pub status: HealthStatus,
    /// Time of the latest report.
    pub time: Timestamp,
    /// Seq of the latest report.
    pub seq: u64,
    /// The latest report as received, to pass on as evidence.
    pub signed: SignedHealth,
}

/// What an accepted report changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Inserted {
    /// The first report of this node.
    NewNode,
    /// A newer report of a known node.
    Updated {
        /// The node's status before this report.
        previous: HealthStatus,
    },
}

/// A report was not taken into the ledger.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LedgerError {
    /// About another release.
    #[error("health report is about release {got}, this ledger is for release {expected}")]
    WrongRelease {
        /// The report's release.
        got: ReleaseId,
        /// The ledger's release.
        expected: ReleaseId,
    },
    /// Exactly the message already held (gossip delivers many copies).
    #[error("health report {seq} of node {node} is already in the ledger")]
    Duplicate {
        /// The node.
        node: NodeId,
        /// The seq.
        seq: u64,
    },
    /// Not newer than the latest report held for the node.
    #[error("health report {seq} of node {node} is not newer than its latest report {latest}")]
    Replayed {
        /// The node.
        node: NodeId,
        /// The report's seq.
        seq: u64,
        /// The latest seq held.
        latest: u64,
    },
    /// A higher seq with an earlier time than the latest report held.
    #[error("health report {seq} of node {node} is dated {time}, before its latest report's time {latest}")]
    TimeWentBackwards {
        /// The node.
        node: NodeId,
        /// The report's seq.
        seq: u64,
        /// The report's time.
        time: Timestamp,
        /// The latest time held.
        latest: Timestamp,
    },
    /// The node claims another wave than in its first report.
    #[error("node {node} reports from wave {wave}, but its reports for this release are in wave {recorded}")]
    WaveChanged {
        /// The node.
        node: NodeId,
        /// The wave claimed now.
        wave: u32,
        /// The wave held.
        recorded: u32,
    },
    /// A new node, and the ledger is full.
    #[error("health ledger already tracks {max} nodes, its limit; node {node} is not added")]
    Full {
        /// The node refused.
        node: NodeId,
        /// The limit.
        max: usize,
    },
}

/// How many nodes of a wave last reported each status (silence not applied;
/// see [`super::gate`] for that).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusCounts {
    /// Latest status `installed`.
    pub installed: u64,
    /// Latest status `healthy`.
    pub healthy: u64,
    /// Latest status `unhealthy`.
    pub unhealthy: u64,
    /// Latest status `install-failed`.
    pub install_failed: u64,
    /// Latest status `rolled-back`.
    pub rolled_back: u64,
    /// Latest status `baked` (final).
    pub baked: u64,
}

impl StatusCounts {
    /// All nodes counted.
    pub fn total(&self) -> u64 {
        self.installed
            + self.healthy
            + self.unhealthy
            + self.install_failed
            + self.rolled_back
            + self.baked
    }
}

/// The latest reports of one release's nodes.
#[derive(Clone, Debug)]
pub struct Ledger {
    release: ReleaseId,
    max_nodes: usize,
    /// wave -> node -> record; ordered by node ID, which evidence relies on.
    waves: BTreeMap<u32, BTreeMap<NodeId, NodeRecord>>,
    /// node -> wave, to find a node's record and notice wave changes.
    node_wave: BTreeMap<NodeId, u32>,
}

impl Ledger {
    /// An empty ledger for `release`, holding up to [`MAX_LEDGER_NODES`] nodes.
    pub fn new(release: ReleaseId) -> Self {
        Self::with_max_nodes(release, MAX_LEDGER_NODES)
    }

    /// An empty ledger with a smaller node limit (never above [`MAX_LEDGER_NODES`]).
    pub fn with_max_nodes(release: ReleaseId, max_nodes: usize) -> Self {
        Ledger {
            release,
            max_nodes: max_nodes.min(MAX_LEDGER_NODES),
            waves: BTreeMap::new(),
            node_wave: BTreeMap::new(),
        }
    }

    /// The release this ledger is for.
    pub fn release(&self) -> ReleaseId {
        self.release
    }

    /// Takes a verified report if it is the node's newest.
    pub fn insert(&mut self, verified: VerifiedReport) -> Result<Inserted, LedgerError> {
        let (report, signed) = verified.into_parts();
        let node = report.node;
        if report.release != self.release {
            return Err(LedgerError::WrongRelease {
                got: report.release,
                expected: self.release,
            });
        }
        let record = NodeRecord {
            wave: report.wave,
            status: report.status,
            time: report.time,
            seq: report.seq,
            signed,
        };
        let Some(&recorded) = self.node_wave.get(&node) else {
            if self.node_wave.len() >= self.max_nodes {
                return Err(LedgerError::Full {
                    node,
                    max: self.max_nodes,
                });
            }
            self.node_wave.insert(node, record.wave);
            self.waves
                .entry(record.wave)
                .or_default()
                .insert(node, record);
            return Ok(Inserted::NewNode);
        };
        if recorded != record.wave {
            return Err(LedgerError::WaveChanged {
                node,
                wave: record.wave,
                recorded,
            });
        }
        let Some(held) = self.waves.get_mut(&recorded).and_then(|w| w.get_mut(&node)) else {
            // The two maps are updated together, so a node with a wave has a record;
            // should that ever break, taking the report repairs it.
            self.waves.entry(recorded).or_default().insert(node, record);
            return Ok(Inserted::NewNode);
        };
        check_newer(node, held, &record)?;
        let previous = held.status;
        *held = record;
        Ok(Inserted::Updated { previous })
    }

    /// The record of `node`, if it has reported.
    pub fn get(&self, node: &NodeId) -> Option<&NodeRecord> {
        let wave = self.node_wave.get(node)?;
        self.waves.get(wave)?.get(node)
    }

    /// Nodes tracked, over all waves.
    pub fn len(&self) -> usize {
        self.node_wave.len()
    }

    /// Whether no node has reported.
    pub fn is_empty(&self) -> bool {
        self.node_wave.is_empty()
    }

    /// The nodes of `wave` with their records, in node ID order.
    pub fn wave(&self, wave: u32) -> impl Iterator<Item = (&NodeId, &NodeRecord)> + '_ {
        self.waves.get(&wave).into_iter().flatten()
    }

    /// How many nodes of `wave` have reported.
    pub fn wave_len(&self, wave: u32) -> usize {
        self.waves.get(&wave).map_or(0, BTreeMap::len)
    }

    /// The waves that have at least one node, in order.
    pub fn waves(&self) -> impl Iterator<Item = u32> + '_ {
        self.waves
            .iter()
            .filter(|(_, nodes)| !nodes.is_empty())
            .map(|(w, _)| *w)
    }

    /// Latest statuses of the nodes of `wave`.
    pub fn status_counts(&self, wave: u32) -> StatusCounts {
        let mut c = StatusCounts::default();
        for (_, r) in self.wave(wave) {
            let slot = match r.status {
                HealthStatus::Installed => &mut c.installed,
                HealthStatus::Healthy => &mut c.healthy,
                HealthStatus::Unhealthy => &mut c.unhealthy,
                HealthStatus::InstallFailed => &mut c.install_failed,
                HealthStatus::RolledBack => &mut c.rolled_back,
                HealthStatus::Baked => &mut c.baked,
            };
            *slot += 1;
        }
        c
    }
}

fn check_newer(node: NodeId, held: &NodeRecord, new: &NodeRecord) -> Result<(), LedgerError> {
    if new.seq == held.seq && new.signed == held.signed {
        return Err(LedgerError::Duplicate { node, seq: new.seq });
    }
    if new.seq <= held.seq {
        return Err(LedgerError::Replayed {
            node,
            seq: new.seq,
            latest: held.seq,
        });
    }
    if new.time < held.time {
        return Err(LedgerError::TimeWentBackwards {
            node,
            seq: new.seq,
            time: new.time,
            latest: held.time,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::report::HealthReport;

    const R: ReleaseId = ReleaseId([1; 32]);

    fn rep(node: u8, wave: u32, status: HealthStatus, seq: u64, secs: u64) -> VerifiedReport {
        VerifiedReport::unchecked(HealthReport {
            node: NodeId([node; 32]),
            release: R,
            wave,
            status,
            seq,
            time: Timestamp::from_secs(secs),
        })
    }

    #[test]
    fn newer_reports_replace_older_ones() {
        let mut l = Ledger::new(R);
        assert_eq!(
            l.insert(rep(1, 0, HealthStatus::Installed, 1, 10)),
            Ok(Inserted::NewNode)
        );
        assert_eq!(
            l.insert(rep(1, 0, HealthStatus::Unhealthy, 5, 10)),
            Ok(Inserted::Updated {
                previous: HealthStatus::Installed
            })
        );
        let r = l.get(&NodeId([1; 32])).unwrap();
        assert_eq!(
            (r.wave, r.status, r.seq, r.time),
            (0, HealthStatus::Unhealthy, 5, Timestamp::from_secs(10))
        );
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn duplicates_replays_and_backwards_time_change_nothing() {
        let mut l = Ledger::new(R);
        l.insert(rep(1, 0, HealthStatus::Unhealthy, 5, 100))
            .unwrap();
        let before = l.get(&NodeId([1; 32])).cloned();
        assert!(matches!(
            l.insert(rep(1, 0, HealthStatus::Unhealthy, 5, 100)),
            Err(LedgerError::Duplicate { seq: 5, .. })
        ));
        assert!(matches!(
            l.insert(rep(1, 0, HealthStatus::Healthy, 4, 200)),
            Err(LedgerError::Replayed {
                seq: 4,
                latest: 5,
                ..
            })
        ));
        assert!(matches!(
            l.insert(rep(1, 0, HealthStatus::Healthy, 5, 200)),
            Err(LedgerError::Replayed { .. })
        ));
        assert!(matches!(
            l.insert(rep(1, 0, HealthStatus::Healthy, 6, 99)),
            Err(LedgerError::TimeWentBackwards { .. })
        ));
        assert_eq!(l.get(&NodeId([1; 32])).cloned(), before);
        // Same time with a higher seq is fine (times are whole seconds).
        assert!(l.insert(rep(1, 0, HealthStatus::Healthy, 6, 100)).is_ok());
    }

    #[test]
    fn a_node_cannot_change_wave_or_release() {
        let mut l = Ledger::new(R);
        l.insert(rep(1, 0, HealthStatus::Unhealthy, 1, 10)).unwrap();
        assert!(matches!(
            l.insert(rep(1, 2, HealthStatus::Healthy, 2, 10)),
            Err(LedgerError::WaveChanged {
                wave: 2,
                recorded: 0,
                ..
            })
        ));
        assert_eq!(l.wave_len(2), 0);
        let mut other = Ledger::new(ReleaseId([2; 32]));
        assert!(matches!(
            other.insert(rep(1, 0, HealthStatus::Healthy, 1, 10)),
            Err(LedgerError::WrongRelease { .. })
        ));
        assert!(other.is_empty());
    }

    #[test]
    fn new_nodes_stop_at_the_limit_but_known_ones_update() {
        let mut l = Ledger::with_max_nodes(R, 2);
        l.insert(rep(1, 0, HealthStatus::Installed, 1, 10)).unwrap();
        l.insert(rep(2, 0, HealthStatus::Installed, 1, 10)).unwrap();
        assert!(matches!(
            l.insert(rep(3, 0, HealthStatus::Installed, 1, 10)),
            Err(LedgerError::Full { max: 2, .. })
        ));
        assert!(l.insert(rep(2, 0, HealthStatus::Healthy, 2, 10)).is_ok());
        assert_eq!(l.len(), 2);
        assert_eq!(
            Ledger::with_max_nodes(R, usize::MAX).max_nodes,
            MAX_LEDGER_NODES
        );
    }

    #[test]
    fn counts_per_wave_in_node_order() {
        let mut l = Ledger::new(R);
        for (n, w, s) in [
            (9, 0, HealthStatus::Healthy),
            (3, 0, HealthStatus::RolledBack),
            (5, 1, HealthStatus::InstallFailed),
            (4, 0, HealthStatus::Healthy),
            (7, 0, HealthStatus::Installed),
            (8, 0, HealthStatus::Unhealthy),
        ] {
            l.insert(rep(n, w, s, 1, 10)).unwrap();
        }
        let c = l.status_counts(0);
        assert_eq!(
            c,
            StatusCounts {
                installed: 1,
                healthy: 2,
                unhealthy: 1,
                install_failed: 0,
                rolled_back: 1,
                baked: 0
            }
        );
        assert_eq!(c.total(), 5);
        assert_eq!(l.status_counts(1).install_failed, 1);
        assert_eq!(l.status_counts(2), StatusCounts::default());
        let order: Vec<u8> = l.wave(0).map(|(n, _)| n.0[0]).collect();
        assert_eq!(order, [3, 4, 7, 8, 9]);
        assert_eq!(l.waves().collect::<Vec<_>>(), [0, 1]);
    }
}
