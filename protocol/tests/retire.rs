//! Retiring releases (spec 15.8): a release the vendor prunes from the targets
//! metadata is no longer followed, and the driver is told to remove what it
//! stored for it (`Output::Forget`), at once or, with an install or rollback
//! in flight, once that finishes; stored leftovers found at start-up are
//! forgotten too.

#[path = "support/one_wave.rs"]
mod one_wave;

use one_wave::{drain, Vendor, T0};
use waveguard_protocol::metadata::trust::TrustedState;
use waveguard_protocol::node::{Input, Node, NodeConfig, NodeEvent, Output};
use waveguard_protocol::rollout::{HaltReason, RolloutRecord, RolloutState};
use waveguard_protocol::{ReleaseId, SigningKey};

fn node(vendor: &Vendor) -> Node {
    Node::new(
        SigningKey::from_seed([1; 32]),
        TrustedState::new(&vendor.root).unwrap(),
        NodeConfig::default(),
        T0,
    )
}

fn forgotten(out: &[Output]) -> Vec<ReleaseId> {
    out.iter()
        .filter_map(|o| match o {
            Output::Forget { release } => Some(*release),
            _ => None,
        })
        .collect()
}

fn followed(n: &Node) -> Vec<ReleaseId> {
    n.status().releases.iter().map(|r| r.id).collect()
}

#[test]
fn a_release_the_vendor_prunes_is_forgotten_and_the_others_kept() {
    let mut vendor = Vendor::new();
    let both = vendor.publish(&["1.0", "2.0"]);
    let (old, new) = (vendor.id("1.0"), vendor.id("2.0"));
    let mut n = node(&vendor);
    n.handle_input(T0, Input::Metadata(both));
    assert!(forgotten(&drain(&mut n)).is_empty());
    let pruned = vendor.publish(&["2.0"]);
    n.handle_input(T0.plus_secs(1), Input::Metadata(pruned));
    let out = drain(&mut n);
    assert_eq!(forgotten(&out), vec![old]);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Event(NodeEvent::Retired { release }) if *release == old)),
        "{out:?}"
    );
    assert_eq!(followed(&n), vec![new]);
    // Once only: a later step forgets nothing more.
    n.handle_input(T0.plus_secs(2), Input::Tick);
    assert!(forgotten(&drain(&mut n)).is_empty());
}

#[test]
fn a_release_rolling_back_is_forgotten_only_once_the_rollback_finished() {
    let mut vendor = Vendor::new();
    let first = vendor.publish(&["1.0"]);
    let id = vendor.id("1.0");
    let mut n = node(&vendor);
    n.handle_input(T0, Input::Metadata(first));
    let record = RolloutRecord {
        state: RolloutState::RollingBack {
            reason: HaltReason::LocalFailure {
                detail: "probe failed".into(),
            },
        },
        halt: None,
        seq: 3,
        directive: None,
    };
    n.handle_input(
        T0,
        Input::RolloutRestored {
            release: id,
            data: record.encode(),
        },
    );
    let out = drain(&mut n);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Rollback { release } if *release == id)),
        "{out:?}"
    );
    n.handle_input(T0.plus_secs(1), Input::Metadata(vendor.publish(&[])));
    assert!(
        forgotten(&drain(&mut n)).is_empty(),
        "the rollback is still running"
    );
    n.handle_input(
        T0.plus_secs(2),
        Input::RollbackFinished {
            release: id,
            result: Ok(()),
        },
    );
    assert_eq!(forgotten(&drain(&mut n)), vec![id]);
    assert!(followed(&n).is_empty());
}

#[test]
fn leftovers_of_a_pruned_release_found_at_start_up_are_forgotten() {
    let mut vendor = Vendor::new();
    vendor.publish(&["1.0"]);
    let old = vendor.id("1.0");
    let current = vendor.publish(&["2.0"]);
    let mut n = node(&vendor);
    n.handle_input(T0, Input::Metadata(current));
    drain(&mut n);
    // What a crash in the middle of a forget leaves: the chunk list (removed last)
    // and perhaps the rollout record.
    n.handle_input(
        T0,
        Input::ChunkList {
            release: old,
            data: vec![0; 56],
        },
    );
    assert_eq!(forgotten(&drain(&mut n)), vec![old]);
    let record = RolloutRecord {
        state: RolloutState::Healthy,
        halt: None,
        seq: 9,
        directive: None,
    };
    n.handle_input(
        T0,
        Input::RolloutRestored {
            release: old,
            data: record.encode(),
        },
    );
    assert_eq!(forgotten(&drain(&mut n)), vec![old]);
}

#[test]
fn without_targets_metadata_nothing_is_forgotten() {
    // A node that has only its root cannot tell a pruned release from one it has
    // not heard of yet: its stored lists stay.
    let mut vendor = Vendor::new();
    vendor.publish(&["1.0"]);
    let mut n = node(&vendor);
    n.handle_input(
        T0,
        Input::ChunkList {
            release: vendor.id("1.0"),
            data: vec![0; 56],
        },
    );
    assert!(forgotten(&drain(&mut n)).is_empty());
}

#[test]
fn forgetting_waits_for_the_chunk_list_of_a_release_being_fetched_ten_minutes_at_most() {
    // An upgrade shares chunks with the release it replaces: forgetting the old one
    // before the new one's list is known would delete chunks about to be needed.
    let mut vendor = Vendor::new();
    let both = vendor.publish(&["1.0", "2.0"]);
    let old = vendor.id("1.0");
    let config = NodeConfig {
        prefetch: true, // 2.0 is fetched at once; no peer ever sends its list here
        ..NodeConfig::default()
    };
    let mut n = Node::new(
        SigningKey::from_seed([1; 32]),
        TrustedState::new(&vendor.root).unwrap(),
        config,
        T0,
    );
    n.handle_input(T0, Input::Metadata(both));
    drain(&mut n);
    n.handle_input(T0, Input::Metadata(vendor.publish(&["2.0"])));
    let out = drain(&mut n);
    assert!(forgotten(&out).is_empty(), "{out:?}");
    assert!(
        !followed(&n).contains(&old),
        "retired at once, forgotten later"
    );
    let wait = waveguard_protocol::node::RETIRE_WAIT_MS;
    n.handle_input(T0.plus_millis(wait - 1), Input::Tick);
    assert!(forgotten(&drain(&mut n)).is_empty());
    n.handle_input(T0.plus_millis(wait), Input::Tick);
    assert_eq!(forgotten(&drain(&mut n)), vec![old]);
}
