//! The per-release rollout state machine on one node.
//!
//! A release moves through these states on every endpoint:
//!
//! ```text
//! Discovered ─► Fetching ─► Staging ─► Staged ─► Installing ─► Baking ─► Healthy
//!      │           │           │          │           │           │
//!      └───────────┴───────────┴──────────┴─► Halted  └─► RollingBack ─► RolledBack
//! ```
//!
//! `Staged` covers "waiting for its wave": a node installs only when its wave
//! opens. The [`crate::node::Node`] decides *when* each event happens; this
//! module only says which transitions are legal, so a bug elsewhere cannot,
//! for example, install a halted release.

use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a release stopped on this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum HaltReason {
    /// A wave's health gate failed on the evidence this node holds.
    GateFailed {
        /// The wave that failed.
        wave: u32,
        /// Failures (failed + silent) counted.
        failures: u64,
        /// Nodes reporting in that wave.
        reporting: u64,
    },
    /// A vendor or operator signed a halt directive.
    Directive {
        /// The directive's reason text.
        reason: String,
        /// The directive's sequence number.
        seq: u64,
    },
    /// This node's own install or probe failed.
    LocalFailure {
        /// What failed.
        detail: String,
    },
}

/// Where one release stands on this node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum RolloutState {
    /// Trusted metadata names it; nothing fetched yet.
    Discovered,
    /// Fetching the chunk list and chunks.
    Fetching,
    /// All chunks stored; the driver is assembling and checking the artifact.
    Staging,
    /// The artifact is verified and staged; waiting for this node's wave to open.
    Staged,
    /// The driver is installing.
    Installing {
        /// When the install started.
        since: Timestamp,
    },
    /// Installed; probing health and sending heartbeats until the rollout ends.
    Baking {
        /// When the install finished.
        installed_at: Timestamp,
    },
    /// Installed, and the rollout finished without a halt.
    Healthy,
    /// Halted before this node installed: it will not install.
    Halted {
        /// Why.
        reason: HaltReason,
    },
    /// Installed, then halted or failed: the driver is rolling back.
    RollingBack {
        /// Why.
        reason: HaltReason,
    },
    /// Rolled back to the previous version.
    RolledBack {
        /// Why.
        reason: HaltReason,
    },
}

/// Something that moves a release along.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RolloutEvent {
    /// Started fetching.
    FetchStarted,
    /// Every chunk is stored.
    ChunksComplete,
    /// The artifact was assembled and matches its signed hash.
    ArtifactStaged,
    /// The assembled artifact did not match: fetch again.
    ArtifactRejected,
    /// This node's wave opened and it starts installing.
    InstallStarted(Timestamp),
    /// The install succeeded.
    InstallSucceeded(Timestamp),
    /// The install failed (the installer is expected to leave the old version in place).
    InstallFailed(String),
    /// The rollout ended without a halt.
    RolloutComplete,
    /// The release was halted or this node's probe failed.
    Halt(HaltReason),
    /// The rollback finished.
    RollbackFinished,
    /// A signed resume directive lifted a halt on a release not yet installed here.
    Resume,
    /// After a restart: the state this node recorded durably before it stopped, once it
    /// had started installing (see [`RolloutRecord`]).
    Restore(RolloutState),
}

/// A transition that the state machine does not allow.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("event {event:?} is not allowed in state {state:?}")]
pub struct IllegalTransition {
    /// The state the release was in (unchanged).
    pub state: RolloutState,
    /// The event refused.
    pub event: RolloutEvent,
}

impl RolloutState {
    /// The next state after `event`, or the unchanged state inside an error.
    pub fn next(self, event: RolloutEvent) -> Result<RolloutState, IllegalTransition> {
        use RolloutEvent as E;
        use RolloutState as S;
        let next = match (&self, &event) {
            (S::Discovered, E::FetchStarted) => S::Fetching,
            (S::Discovered | S::Fetching, E::ChunksComplete) => S::Staging,
            (S::Staging, E::ArtifactStaged) => S::Staged,
            (S::Staging, E::ArtifactRejected) => S::Fetching,
            (S::Staged, E::InstallStarted(t)) => S::Installing { since: *t },
            (S::Installing { .. }, E::InstallSucceeded(t)) => S::Baking { installed_at: *t },
            (S::Installing { .. }, E::InstallFailed(detail)) => S::RolledBack {
                reason: HaltReason::LocalFailure {
                    detail: detail.clone(),
                },
            },
            (S::Baking { .. }, E::RolloutComplete) => S::Healthy,
            (S::Discovered | S::Fetching | S::Staging | S::Staged, E::Halt(r)) => {
                S::Halted { reason: r.clone() }
            }
            // A halt during an install waits for the install to return (the node
            // re-checks halts on every step), so a rollback never races an install.
            (S::Baking { .. } | S::Healthy, E::Halt(r)) => S::RollingBack { reason: r.clone() },
            (S::RollingBack { reason }, E::RollbackFinished) => S::RolledBack {
                reason: reason.clone(),
            },
            (S::Halted { .. }, E::Resume) => S::Discovered,
            (S::Discovered | S::Fetching | S::Staging | S::Staged, E::Restore(s))
                if s.is_installed() || s.is_stopped() =>
            {
                s.clone()
            }
            // Halts are idempotent in terminal and stopping states.
            (S::Halted { .. } | S::RollingBack { .. } | S::RolledBack { .. }, E::Halt(_)) => self,
            _ => return Err(IllegalTransition { state: self, event }),
        };
        Ok(next)
    }

    /// Whether this node has the release installed (or is installing it).
    pub fn is_installed(&self) -> bool {
        matches!(
            self,
            RolloutState::Installing { .. } | RolloutState::Baking { .. } | RolloutState::Healthy
        )
    }

    /// Whether the release is stopped on this node for good (until a resume).
    pub fn is_stopped(&self) -> bool {
        matches!(
            self,
            RolloutState::Halted { .. }
                | RolloutState::RollingBack { .. }
                | RolloutState::RolledBack { .. }
        )
    }

    /// A short name for logs and status.
    pub fn name(&self) -> &'static str {
        match self {
            RolloutState::Discovered => "discovered",
            RolloutState::Fetching => "fetching",
            RolloutState::Staging => "staging",
            RolloutState::Staged => "staged",
            RolloutState::Installing { .. } => "installing",
            RolloutState::Baking { .. } => "baking",
            RolloutState::Healthy => "healthy",
            RolloutState::Halted { .. } => "halted",
            RolloutState::RollingBack { .. } => "rolling-back",
            RolloutState::RolledBack { .. } => "rolled-back",
        }
    }
}

/// Largest encoded [`RolloutRecord`]: a state and a halt reason, each of which may carry a
/// directive's reason (up to 1 KiB, which JSON escaping can grow six-fold) or a local
/// failure's text; generous, because a record refused is a halt forgotten at the next restart.
pub const MAX_ROLLOUT_RECORD_BYTES: usize = 64 * 1024;

/// What a node keeps durably about one release once it has started installing it, so that a
/// restart (a crash, a reboot the update asked for) neither installs it again nor forgets
/// that it rolled it back or halted it. The driver stores the bytes of
/// [`crate::node::Output::StoreRollout`] and feeds them back at start-up as
/// [`crate::node::Input::RolloutRestored`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutRecord {
    /// The state when recorded.
    pub state: RolloutState,
    /// The latched halt, if any.
    pub halt: Option<HaltReason>,
    /// The last health report sequence number sent.
    pub seq: u64,
    /// The latest directive accepted for the release (action and seq), so a restarted node
    /// still refuses older ones: an old resume replayed must not lift a newer halt.
    #[serde(default)]
    pub directive: Option<(crate::health::directive::DirectiveAction, u64)>,
}

/// A stored rollout record could not be read.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Larger than any record this implementation writes.
    #[error("rollout record of {0} bytes is over the limit of {MAX_ROLLOUT_RECORD_BYTES}")]
    TooLarge(usize),
    /// Not a record (damaged, or written by an incompatible version).
    #[error("rollout record does not parse: {0}")]
    Malformed(String),
}

impl RolloutRecord {
    /// The stored form (JSON).
    pub fn encode(&self) -> Vec<u8> {
        // A record holds only strings, integers and enums: serializing cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a stored record, refusing anything over [`MAX_ROLLOUT_RECORD_BYTES`].
    pub fn decode(bytes: &[u8]) -> Result<RolloutRecord, RecordError> {
        if bytes.len() > MAX_ROLLOUT_RECORD_BYTES {
            return Err(RecordError::TooLarge(bytes.len()));
        }
        serde_json::from_slice(bytes).map_err(|e| RecordError::Malformed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn halt() -> HaltReason {
        HaltReason::Directive {
            reason: "bad".into(),
            seq: 1,
        }
    }

    #[test]
    fn happy_path() {
        let t = Timestamp(5);
        let s = RolloutState::Discovered;
        let s = s.next(RolloutEvent::FetchStarted).unwrap();
        let s = s.next(RolloutEvent::ChunksComplete).unwrap();
        let s = s.next(RolloutEvent::ArtifactStaged).unwrap();
        let s = s.next(RolloutEvent::InstallStarted(t)).unwrap();
        let s = s.next(RolloutEvent::InstallSucceeded(t)).unwrap();
        assert!(s.is_installed());
        assert_eq!(
            s.next(RolloutEvent::RolloutComplete).unwrap(),
            RolloutState::Healthy
        );
    }

    #[test]
    fn halted_release_cannot_install() {
        let s = RolloutState::Staged
            .next(RolloutEvent::Halt(halt()))
            .unwrap();
        assert!(s.is_stopped());
        let err = s
            .next(RolloutEvent::InstallStarted(Timestamp(1)))
            .unwrap_err();
        assert!(matches!(err.state, RolloutState::Halted { .. }));
    }

    #[test]
    fn halt_after_install_rolls_back() {
        let s = RolloutState::Baking {
            installed_at: Timestamp(1),
        };
        let s = s.next(RolloutEvent::Halt(halt())).unwrap();
        assert!(matches!(s, RolloutState::RollingBack { .. }));
        let s = s.next(RolloutEvent::RollbackFinished).unwrap();
        assert!(matches!(s, RolloutState::RolledBack { .. }));
        assert!(s.clone().next(RolloutEvent::Halt(halt())).is_ok());
    }

    #[test]
    fn only_a_fresh_release_is_restored_and_only_to_an_installed_or_stopped_state() {
        let baking = RolloutState::Baking {
            installed_at: Timestamp(7),
        };
        assert_eq!(
            RolloutState::Fetching
                .next(RolloutEvent::Restore(baking.clone()))
                .unwrap(),
            baking
        );
        assert!(RolloutState::Staged
            .next(RolloutEvent::Restore(RolloutState::Staged))
            .is_err());
        assert!(baking
            .clone()
            .next(RolloutEvent::Restore(RolloutState::Healthy))
            .is_err());
    }

    #[test]
    fn records_round_trip_and_damaged_ones_are_refused() {
        let rec = RolloutRecord {
            state: RolloutState::RolledBack { reason: halt() },
            halt: Some(halt()),
            seq: 1_900_000_000_123,
            directive: Some((crate::health::directive::DirectiveAction::Halt, 4)),
        };
        assert_eq!(RolloutRecord::decode(&rec.encode()).unwrap(), rec);
        assert!(matches!(
            RolloutRecord::decode(b"{\"state\":"),
            Err(RecordError::Malformed(_))
        ));
        assert!(matches!(
            RolloutRecord::decode(&vec![b' '; MAX_ROLLOUT_RECORD_BYTES + 1]),
            Err(RecordError::TooLarge(_))
        ));
    }

    #[test]
    fn the_record_form_is_the_one_the_spec_shows() {
        let rec = RolloutRecord {
            state: RolloutState::Baking {
                installed_at: Timestamp(1_893_456_000_000),
            },
            halt: None,
            seq: 1_893_456_000_123,
            directive: Some((crate::health::directive::DirectiveAction::Halt, 7)),
        };
        assert_eq!(
            String::from_utf8(rec.encode()).unwrap(),
            r#"{"state":{"state":"baking","installed_at":1893456000000},"halt":null,"seq":1893456000123,"directive":["halt",7]}"#
        );
        let without: RolloutRecord =
            serde_json::from_str(r#"{"state":{"state":"healthy"},"halt":null,"seq":3}"#).unwrap();
        assert_eq!(without.directive, None);
    }

    #[test]
    fn halt_waits_for_a_running_install() {
        let s = RolloutState::Installing {
            since: Timestamp(1),
        };
        assert!(s.next(RolloutEvent::Halt(halt())).is_err());
    }

    #[test]
    fn resume_lifts_a_halt_before_install_only() {
        let s = RolloutState::Halted { reason: halt() };
        assert_eq!(
            s.next(RolloutEvent::Resume).unwrap(),
            RolloutState::Discovered
        );
        let s = RolloutState::RolledBack { reason: halt() };
        assert!(s.next(RolloutEvent::Resume).is_err());
    }

    #[test]
    fn cannot_skip_staging() {
        assert!(RolloutState::Fetching
            .next(RolloutEvent::InstallStarted(Timestamp(0)))
            .is_err());
        assert!(RolloutState::Discovered
            .next(RolloutEvent::ArtifactStaged)
            .is_err());
    }
}
