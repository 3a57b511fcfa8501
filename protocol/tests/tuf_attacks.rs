//! One test per TUF attack against [`TrustedState`], each asserting the error
//! variant that names the attack, plus root rotation, atomic bundles and
//! restarts. Attack documents come from `support/tuf.rs`'s `Forge`, which signs
//! what an attacker holding some of the vendor's keys could sign.

#[path = "support/tuf.rs"]
mod tuf;

use proptest::prelude::*;
use serde_bytes::ByteBuf;
use std::sync::OnceLock;
use tuf::{key, padded, Vendor, DAY, NOW};
use waveguard_protocol::limits::{
    MAX_ROOT_BYTES, MAX_SNAPSHOT_BYTES, MAX_TARGETS, MAX_TARGETS_BYTES, MAX_TIMESTAMP_BYTES,
};
use waveguard_protocol::metadata::{
    rotate_root, sign_document, BundleError, FormatError, RoleName, RoleSpec, RootChanges,
    RootError, RootKeySet, SnapshotError, TargetsError, TimestampError, TrustedState,
};
use waveguard_protocol::wire::{MetadataBundle, MAX_BUNDLE_ROOTS};

/// A client that trusts the vendor's first bundle (releases "1.0").
fn client_with_first_bundle(vendor: &mut Vendor) -> (TrustedState, MetadataBundle) {
    let bundle = vendor.publish(&["1.0"]);
    let mut client = vendor.client();
    client.apply_bundle(&bundle, NOW).expect("first bundle");
    (client, bundle)
}

mod arbitrary_installation {
    use super::*;

    #[test]
    fn arbitrary_installation_tampered_targets() {
        let mut vendor = Vendor::new();
        let bundle = vendor.publish(&["1.0"]);
        let text = String::from_utf8(bundle.targets.to_vec()).unwrap();
        let tampered = text.replacen("5000000", "5000001", 1);
        assert_ne!(text, tampered);
        let evil = MetadataBundle {
            targets: ByteBuf::from(tampered.into_bytes()),
            ..bundle
        };
        let mut client = vendor.client();
        assert!(matches!(
            client.apply_bundle(&evil, NOW),
            Err(BundleError::Targets(TargetsError::NoValidSignature))
        ));
        assert!(client.releases().is_empty());
    }

    #[test]
    fn arbitrary_installation_wrong_key() {
        let vendor = Vendor::new();
        let evil = vendor
            .forge()
            .releases(&["6.6"])
            .targets_keys(&[key(99)])
            .bundle();
        let mut client = vendor.client();
        assert!(matches!(
            client.apply_bundle(&evil, NOW),
            Err(BundleError::Targets(TargetsError::NoValidSignature))
        ));
        // A timestamp from a stranger fails the same way, one level up.
        let evil = vendor.forge().timestamp_keys(&[key(99)]).bundle();
        assert!(matches!(
            client.apply_bundle(&evil, NOW),
            Err(BundleError::Timestamp(TimestampError::NoValidSignature))
        ));
    }

    #[test]
    fn arbitrary_installation_targets_hash_mismatch() {
        // A validly signed targets of the right version and length that is not
        // the one the snapshot pinned (e.g. a stolen targets key, no snapshot key).
        let vendor = Vendor::new();
        let pinned = vendor.forge().releases(&["1.0"]);
        let other = vendor.forge().releases(&["1.1"]).targets_doc();
        let mut bundle = pinned.bundle();
        assert_eq!(other.len(), bundle.targets.len());
        bundle.targets = ByteBuf::from(other);
        let mut client = vendor.client();
        assert!(matches!(
            client.apply_bundle(&bundle, NOW),
            Err(BundleError::Targets(TargetsError::HashMismatch { .. }))
        ));
    }

    #[test]
    fn arbitrary_installation_snapshot_length_mismatch() {
        // Same snapshot version, but it pins targets v10 instead of v9: one byte longer.
        let vendor = Vendor::new();
        let pinned = vendor.forge().versions(1, 1, 9).bundle();
        let other = vendor.forge().versions(1, 1, 10).bundle();
        let bundle = MetadataBundle {
            snapshot: other.snapshot,
            ..pinned
        };
        let mut client = vendor.client();
        assert!(matches!(
            client.apply_bundle(&bundle, NOW),
            Err(BundleError::Snapshot(SnapshotError::LengthMismatch { .. }))
        ));
    }
}

mod rollback {
    use super::*;

    #[test]
    fn rollback_older_timestamp() {
        let mut vendor = Vendor::new();
        let (mut client, old) = client_with_first_bundle(&mut vendor);
        let new = vendor.publish(&["1.0", "2.0"]);
        client.apply_bundle(&new, NOW).unwrap();
        assert!(matches!(
            client.apply_bundle(&old, NOW),
            Err(BundleError::Timestamp(TimestampError::Rollback {
                trusted: 2,
                got: 1
            }))
        ));
        assert_eq!(client.releases().len(), 2);
    }

    #[test]
    fn rollback_older_snapshot() {
        let mut vendor = Vendor::new();
        let (mut client, old) = client_with_first_bundle(&mut vendor);
        client.apply_bundle(&vendor.publish(&["2.0"]), NOW).unwrap();
        // A fresh timestamp served with the old snapshot.
        let mut bundle = vendor.forge().bundle();
        bundle.snapshot = old.snapshot.clone();
        assert!(matches!(
            client.apply_bundle(&bundle, NOW),
            Err(BundleError::Snapshot(SnapshotError::Rollback {
                trusted: 2,
                got: 1
            }))
        ));
        assert!(matches!(
            client.update_snapshot(&old.snapshot, NOW),
            Err(SnapshotError::Rollback { trusted: 2, got: 1 })
        ));
    }

    #[test]
    fn rollback_older_targets() {
        let mut vendor = Vendor::new();
        let (mut client, old) = client_with_first_bundle(&mut vendor);
        client.apply_bundle(&vendor.publish(&["2.0"]), NOW).unwrap();
        let mut bundle = vendor.forge().bundle();
        bundle.targets = old.targets.clone();
        assert!(matches!(
            client.apply_bundle(&bundle, NOW),
            Err(BundleError::Targets(TargetsError::Rollback {
                trusted: 2,
                got: 1
            }))
        ));
        assert_eq!(client.releases()[0].info.version, "2.0");
    }

    #[test]
    fn rollback_snapshot_lowering_targets_version() {
        let mut vendor = Vendor::new();
        let (mut client, _) = client_with_first_bundle(&mut vendor);
        client.apply_bundle(&vendor.publish(&["2.0"]), NOW).unwrap();
        // Timestamp and snapshot keys stolen: a newer snapshot naming targets v1.
        let evil = vendor.forge().versions(3, 3, 1).releases(&["1.0"]).bundle();
        assert!(matches!(
            client.apply_bundle(&evil, NOW),
            Err(BundleError::Snapshot(SnapshotError::TargetsRollback {
                trusted: 2,
                got: 1
            }))
        ));
    }

    #[test]
    fn rollback_timestamp_lowering_snapshot_version() {
        let mut vendor = Vendor::new();
        let (mut client, _) = client_with_first_bundle(&mut vendor);
        client.apply_bundle(&vendor.publish(&["2.0"]), NOW).unwrap();
        let evil = vendor.forge().versions(3, 1, 1).releases(&["1.0"]).bundle();
        assert!(matches!(
            client.apply_bundle(&evil, NOW),
            Err(BundleError::Timestamp(TimestampError::SnapshotRollback {
                trusted: 2,
                got: 1
            }))
        ));
    }

    #[test]
    fn rollback_same_version_different_content() {
        let mut vendor = Vendor::new();
        let (mut client, _) = client_with_first_bundle(&mut vendor);
        let twin = vendor.forge().versions(1, 1, 1).releases(&["1.0"]).bundle();
        assert!(matches!(
            client.apply_bundle(&twin, NOW),
            Err(BundleError::Timestamp(TimestampError::VersionReused {
                version: 1
            }))
        ));
    }
}

mod freeze {
    use super::*;

    #[test]
    fn freeze_expired_timestamp() {
        let mut vendor = Vendor::new();
        let bundle = vendor.publish(&["1.0"]);
        let mut client = vendor.client();
        let later = NOW.plus_secs(DAY);
        assert!(matches!(
            client.apply_bundle(&bundle, later),
            Err(BundleError::Timestamp(TimestampError::Expired {
                version: 1,
                ..
            }))
        ));
        assert_eq!(client.versions().timestamp, None);
    }

    #[test]
    fn freeze_expired_snapshot() {
        let vendor = Vendor::new();
        let far = NOW.plus_secs(30 * DAY);
        let bundle = vendor.forge().expiring(far, NOW, far).bundle();
        let mut client = vendor.client();
        assert!(matches!(
            client.apply_bundle(&bundle, NOW),
            Err(BundleError::Snapshot(SnapshotError::Expired { .. }))
        ));
    }

    #[test]
    fn freeze_expired_targets() {
        let vendor = Vendor::new();
        let far = NOW.plus_secs(30 * DAY);
        let bundle = vendor.forge().expiring(far, far, NOW.plus_secs(1)).bundle();
        let mut client = vendor.client();
        assert!(matches!(
            client.apply_bundle(&bundle, NOW.plus_secs(1)),
            Err(BundleError::Targets(TargetsError::Expired { .. }))
        ));
    }

    #[test]
    fn freeze_expired_root() {
        let mut vendor = Vendor::new();
        let bundle = vendor.publish(&["1.0"]);
        let mut client = vendor.client();
        let after_root = NOW.plus_secs(365 * DAY);
        assert!(matches!(
            client.apply_bundle(&bundle, after_root),
            Err(BundleError::RootExpired { version: 1, .. })
        ));
        assert!(matches!(
            client.update_timestamp(&bundle.timestamp, after_root),
            Err(TimestampError::RootExpired { version: 1, .. })
        ));
    }

    #[test]
    fn freeze_replaying_the_same_bundle_is_noticed() {
        let mut vendor = Vendor::new();
        let (mut client, bundle) = client_with_first_bundle(&mut vendor);
        let later = NOW.plus_secs(DAY + 1);
        assert_eq!(client.expired(later), Some(RoleName::Timestamp));
        assert!(matches!(
            client.apply_bundle(&bundle, later),
            Err(BundleError::Timestamp(TimestampError::Expired { .. }))
        ));
    }
}

mod endless_data {
    use super::*;

    #[test]
    fn endless_data_oversize_root() {
        let vendor = Vendor::new();
        let big = padded(vendor.first_root(), MAX_ROOT_BYTES);
        assert!(matches!(
            TrustedState::new(&big),
            Err(RootError::TooLarge { .. })
        ));
        let mut client = vendor.client();
        assert!(matches!(
            client.update_root(&big),
            Err(RootError::TooLarge { .. })
        ));
        let bundle = MetadataBundle {
            roots: vec![ByteBuf::from(big)],
            ..MetadataBundle::default()
        };
        assert!(matches!(
            client.apply_bundle(&bundle, NOW),
            Err(BundleError::Root {
                position: 0,
                source: RootError::TooLarge { .. }
            })
        ));
    }

    #[test]
    fn endless_data_oversize_timestamp() {
        let mut vendor = Vendor::new();
        let mut bundle = vendor.publish(&["1.0"]);
        bundle.timestamp = ByteBuf::from(padded(&bundle.timestamp, MAX_TIMESTAMP_BYTES));
        assert!(matches!(
            vendor.client().apply_bundle(&bundle, NOW),
            Err(BundleError::Timestamp(TimestampError::TooLarge { .. }))
        ));
    }

    #[test]
    fn endless_data_oversize_snapshot() {
        let mut vendor = Vendor::new();
        let mut bundle = vendor.publish(&["1.0"]);
        bundle.snapshot = ByteBuf::from(padded(&bundle.snapshot, MAX_SNAPSHOT_BYTES));
        assert!(matches!(
            vendor.client().apply_bundle(&bundle, NOW),
            Err(BundleError::Snapshot(SnapshotError::TooLarge { .. }))
        ));
    }

    #[test]
    fn endless_data_oversize_targets() {
        let mut vendor = Vendor::new();
        let mut bundle = vendor.publish(&["1.0"]);
        bundle.targets = ByteBuf::from(padded(&bundle.targets, MAX_TARGETS_BYTES));
        assert!(matches!(
            vendor.client().apply_bundle(&bundle, NOW),
            Err(BundleError::Targets(TargetsError::TooLarge { .. }))
        ));
    }

    #[test]
    fn endless_data_bundle_with_too_many_roots() {
        let mut vendor = Vendor::new();
        let mut bundle = vendor.publish(&["1.0"]);
        bundle.roots = vec![bundle.roots[0].clone(); MAX_BUNDLE_ROOTS + 1];
        assert!(matches!(
            vendor.client().apply_bundle(&bundle, NOW),
            Err(BundleError::TooManyRoots { .. })
        ));
    }

    #[test]
    fn endless_data_too_many_targets() {
        let vendor = Vendor::new();
        let versions: Vec<String> = (0..=MAX_TARGETS).map(|i| format!("0.{i}")).collect();
        let refs: Vec<&str> = versions.iter().map(String::as_str).collect();
        // The forge's own check would refuse this document, so sign the raw JSON.
        let forge = vendor.forge().releases(&refs[..MAX_TARGETS]);
        let mut doc: serde_json::Value = serde_json::from_slice(&forge.targets_doc()).unwrap();
        doc["signed"]["targets"][tuf::path(refs[MAX_TARGETS])] =
            serde_json::to_value(tuf::target(refs[MAX_TARGETS])).unwrap();
        let env = waveguard_protocol::metadata::signed::Envelope::sign_new(
            doc["signed"].clone(),
            &[&vendor.targets.keys[0]],
        )
        .unwrap();
        let mut client = vendor.client();
        let small = vendor.forge().bundle();
        client.apply_bundle(&small, NOW).unwrap();
        assert!(matches!(
            client.update_targets(&env.to_json(), NOW),
            Err(TargetsError::Invalid(FormatError::TooManyTargets { .. }))
        ));
    }
}

mod mix_and_match {
    use super::*;

    #[test]
    fn mix_and_match_snapshot_version() {
        let vendor = Vendor::new();
        let first = vendor.forge().versions(1, 2, 2).bundle();
        let second = vendor.forge().versions(2, 3, 2).bundle();
        let mixed = MetadataBundle {
            snapshot: second.snapshot,
            ..first
        };
        assert!(matches!(
            vendor.client().apply_bundle(&mixed, NOW),
            Err(BundleError::Snapshot(SnapshotError::VersionMismatch {
                expected: 2,
                got: 3
            }))
        ));
    }

    #[test]
    fn mix_and_match_targets_version() {
        let vendor = Vendor::new();
        let first = vendor.forge().versions(1, 1, 2).bundle();
        let second = vendor.forge().versions(2, 2, 3).bundle();
        let mixed = MetadataBundle {
            targets: second.targets,
            ..first
        };
        assert!(matches!(
            vendor.client().apply_bundle(&mixed, NOW),
            Err(BundleError::Targets(TargetsError::VersionMismatch {
                expected: 2,
                got: 3
            }))
        ));
    }

    #[test]
    fn mix_and_match_missing_targets() {
        let vendor = Vendor::new();
        let bundle = MetadataBundle {
            targets: ByteBuf::new(),
            ..vendor.forge().bundle()
        };
        assert!(matches!(
            vendor.client().apply_bundle(&bundle, NOW),
            Err(BundleError::Targets(TargetsError::NotProvided {
                version: 1
            }))
        ));
    }
}

mod thresholds {
    use super::*;

    #[test]
    fn signatures_below_threshold_targets() {
        let vendor = Vendor::builder().targets(3, 2).build();
        let one = vendor.targets.keys[..1].to_vec();
        let bundle = vendor.forge().targets_keys(&one).bundle();
        let mut client = vendor.client();
        assert!(matches!(
            client.apply_bundle(&bundle, NOW),
            Err(BundleError::Targets(TargetsError::BelowThreshold {
                valid: 1,
                threshold: 2
            }))
        ));
        let two = vendor.targets.keys[1..].to_vec();
        client
            .apply_bundle(&vendor.forge().targets_keys(&two).bundle(), NOW)
            .unwrap();
    }

    #[test]
    fn signatures_below_threshold_duplicates_count_once() {
        let vendor = Vendor::builder().targets(2, 2).build();
        let forge = vendor.forge();
        let mut doc: serde_json::Value = serde_json::from_slice(&forge.targets_doc()).unwrap();
        // Keep only the first signature, listed twice.
        let first = doc["signatures"][0].clone();
        doc["signatures"] = serde_json::json!([first.clone(), first]);
        let targets = serde_json::to_vec(&doc).unwrap();
        let snapshot = forge.snapshot_doc(&targets);
        let bundle = MetadataBundle {
            roots: vendor.repo.bundle().roots,
            timestamp: ByteBuf::from(forge.timestamp_doc(&snapshot)),
            snapshot: ByteBuf::from(snapshot),
            targets: ByteBuf::from(targets),
        };
        assert!(matches!(
            vendor.client().apply_bundle(&bundle, NOW),
            Err(BundleError::Targets(TargetsError::BelowThreshold {
                valid: 1,
                threshold: 2
            }))
        ));
    }

    #[test]
    fn signatures_below_threshold_root_rotation() {
        let vendor = Vendor::builder().root(2, 2).build();
        let next = rotate_root(&vendor.root_doc(), &RootChanges::default()).unwrap();
        let raw = sign_document(next, &[&vendor.root.keys[0]]).unwrap();
        assert!(matches!(
            vendor.client().update_root(&raw),
            Err(RootError::BelowThreshold {
                keys: RootKeySet::TrustedRoot,
                valid: 1,
                threshold: 2,
                ..
            })
        ));
    }
}

mod root_rotation {
    use super::*;

    fn rotated_to_new_root_key(vendor: &Vendor) -> waveguard_protocol::metadata::Root {
        let changes = RootChanges {
            root: Some(RoleSpec::single(key(77).public())),
            ..RootChanges::default()
        };
        rotate_root(&vendor.root_doc(), &changes).unwrap()
    }

    #[test]
    fn root_rotation_needs_the_trusted_roots_threshold() {
        let vendor = Vendor::new();
        let raw = sign_document(rotated_to_new_root_key(&vendor), &[&key(77)]).unwrap();
        assert!(matches!(
            vendor.client().update_root(&raw),
            Err(RootError::NoValidSignature {
                keys: RootKeySet::TrustedRoot,
                version: 2
            })
        ));
    }

    #[test]
    fn root_rotation_needs_the_new_roots_threshold() {
        let vendor = Vendor::new();
        let raw = sign_document(rotated_to_new_root_key(&vendor), &[&vendor.root.keys[0]]).unwrap();
        assert!(matches!(
            vendor.client().update_root(&raw),
            Err(RootError::NoValidSignature {
                keys: RootKeySet::NewRoot,
                version: 2
            })
        ));
    }

    #[test]
    fn root_rotation_signed_by_both_is_accepted_and_spread_by_bundles() {
        let mut vendor = Vendor::new();
        let (mut client, _) = client_with_first_bundle(&mut vendor);
        vendor.rotate(RoleName::Root, 77);
        let bundle = vendor.publish(&["1.0"]);
        let out = client.apply_bundle(&bundle, NOW).unwrap();
        assert_eq!(out.rotated_root, Some(2));
        assert_eq!(client.root_version(), 2);
        // A node that never saw root 2 catches up from this node's bundle.
        let mut late = vendor.client();
        late.apply_bundle(&client.bundle(), NOW).unwrap();
        assert_eq!(late.root_version(), 2);
    }
}

mod fast_forward {
    use super::*;

    #[test]
    fn fast_forward_after_key_rotation_timestamp() {
        let mut vendor = Vendor::new();
        let (mut client, first) = client_with_first_bundle(&mut vendor);
        // The attacker, holding the timestamp key, fast-forwards the timestamp
        // over the honest snapshot and targets.
        let high = vendor
            .forge()
            .versions(1000, 1, 1)
            .timestamp_doc(&first.snapshot);
        let attack = MetadataBundle {
            timestamp: ByteBuf::from(high),
            ..first.clone()
        };
        client.apply_bundle(&attack, NOW).unwrap();
        assert_eq!(client.versions().timestamp, Some(1000));
        // The vendor's next timestamp now looks like a rollback...
        let honest = vendor.publish(&["1.0", "2.0"]);
        assert!(matches!(
            client.apply_bundle(&honest, NOW),
            Err(BundleError::Timestamp(TimestampError::Rollback {
                trusted: 1000,
                got: 2
            }))
        ));
        // ...until the vendor rotates the timestamp key.
        vendor.rotate(RoleName::Timestamp, 60);
        let recovered = vendor.publish(&["1.0", "2.0"]);
        client.apply_bundle(&recovered, NOW).unwrap();
        assert_eq!(client.versions().timestamp, Some(3));
        assert_eq!(client.releases().len(), 2);
        // The attacker's high timestamp never comes back.
        assert!(matches!(
            client.apply_bundle(&attack, NOW),
            Err(BundleError::Timestamp(
                TimestampError::SignedByRevokedKeys { root_version: 1 }
            ))
        ));
        assert_eq!(client.versions().timestamp, Some(3));
    }

    #[test]
    fn fast_forward_after_key_rotation_snapshot() {
        let mut vendor = Vendor::new();
        let (mut client, first) = client_with_first_bundle(&mut vendor);
        // Timestamp and snapshot keys stolen: both fast-forwarded over the honest targets.
        let forge = vendor.forge().versions(1000, 1000, 1);
        let snapshot = forge.snapshot_doc(&first.targets);
        let attack = MetadataBundle {
            roots: first.roots.clone(),
            timestamp: ByteBuf::from(forge.timestamp_doc(&snapshot)),
            snapshot: ByteBuf::from(snapshot.clone()),
            targets: first.targets.clone(),
        };
        client.apply_bundle(&attack, NOW).unwrap();
        vendor.rotate(RoleName::Timestamp, 60);
        vendor.rotate(RoleName::Snapshot, 61);
        client.apply_bundle(&vendor.publish(&["2.0"]), NOW).unwrap();
        assert_eq!(client.versions().snapshot, Some(2));
        assert!(matches!(
            client.update_snapshot(&snapshot, NOW),
            Err(SnapshotError::SignedByRevokedKeys { root_version: 2 })
        ));
    }

    #[test]
    fn fast_forward_after_key_rotation_targets() {
        let mut vendor = Vendor::new();
        let (mut client, _) = client_with_first_bundle(&mut vendor);
        let attack = vendor
            .forge()
            .versions(500, 500, 500)
            .releases(&["6.6"])
            .bundle();
        client.apply_bundle(&attack, NOW).unwrap();
        assert_eq!(client.versions().targets, Some(500));
        for (role, seed) in [
            (RoleName::Timestamp, 60),
            (RoleName::Snapshot, 61),
            (RoleName::Targets, 62),
        ] {
            vendor.rotate(role, seed);
        }
        let out = client.apply_bundle(&vendor.publish(&["2.0"]), NOW).unwrap();
        assert_eq!(out.rotated_root, Some(4));
        assert_eq!(out.new_releases[0].info.version, "2.0");
        assert_eq!(client.versions().targets, Some(2));
        assert!(matches!(
            client.update_targets(&attack.targets, NOW),
            Err(TargetsError::SignedByRevokedKeys { root_version: 3 })
        ));
    }
}

mod atomicity {
    use super::*;

    #[test]
    fn bundle_failing_halfway_leaves_state_unchanged() {
        let mut vendor = Vendor::new();
        let (mut client, _) = client_with_first_bundle(&mut vendor);
        let before = client.stored();
        // A root rotation and a good timestamp and snapshot, then bad targets.
        vendor.rotate(RoleName::Timestamp, 60);
        let mut bundle = vendor.publish(&["2.0"]);
        bundle.targets = vendor
            .forge()
            .releases(&["6.6"])
            .targets_keys(&[key(99)])
            .targets_doc()
            .into();
        assert!(matches!(
            client.apply_bundle(&bundle, NOW),
            Err(BundleError::Targets(_))
        ));
        assert_eq!(client.stored(), before);
        assert_eq!(client.root_version(), 1);
        assert_eq!(client.versions().timestamp, Some(1));
        assert_eq!(client.releases()[0].info.version, "1.0");
    }
}

mod restart {
    use super::*;

    #[test]
    fn restart_via_stored_keeps_rollback_protection() {
        let mut vendor = Vendor::new();
        let (mut client, old) = client_with_first_bundle(&mut vendor);
        vendor.rotate(RoleName::Root, 77);
        client.apply_bundle(&vendor.publish(&["2.0"]), NOW).unwrap();
        let mut restarted = TrustedState::from_stored(&client.stored()).unwrap();
        assert_eq!(restarted.versions(), client.versions());
        assert!(matches!(
            restarted.apply_bundle(&old, NOW),
            Err(BundleError::Timestamp(TimestampError::Rollback {
                trusted: 2,
                got: 1
            }))
        ));
    }

    #[test]
    fn restart_refuses_tampered_storage() {
        let mut vendor = Vendor::new();
        let (client, _) = client_with_first_bundle(&mut vendor);
        let mut stored = client.stored();
        let text = String::from_utf8(stored.targets.take().unwrap()).unwrap();
        stored.targets = Some(text.replacen("5000000", "5000001", 1).into_bytes());
        assert!(matches!(
            TrustedState::from_stored(&stored),
            Err(waveguard_protocol::metadata::StoredTrustError::Targets(
                TargetsError::NoValidSignature
            ))
        ));
    }
}

/// Six successive vendor bundles, including two root rotations, made once.
fn history() -> &'static (Vec<u8>, Vec<MetadataBundle>) {
    static HISTORY: OnceLock<(Vec<u8>, Vec<MetadataBundle>)> = OnceLock::new();
    HISTORY.get_or_init(|| {
        let mut vendor = Vendor::new();
        let mut bundles = vec![vendor.publish(&["1.0"]), vendor.publish(&["1.0", "1.1"])];
        vendor.rotate(RoleName::Timestamp, 60);
        bundles.push(vendor.publish(&["1.1"]));
        bundles.push(vendor.publish(&["1.1", "2.0"]));
        vendor.rotate(RoleName::Root, 77);
        bundles.push(vendor.publish(&["2.0"]));
        bundles.push(vendor.publish(&["2.0", "2.1"]));
        (vendor.first_root().to_vec(), bundles)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Whatever order (and repetition) bundles arrive in, trusted versions
    /// never go down, and the newest bundle always brings a node to the end state.
    #[test]
    fn versions_never_go_down_whatever_order_bundles_arrive(
        order in proptest::collection::vec(0usize..6, 1..12),
    ) {
        let (root, bundles) = history();
        let mut client = TrustedState::new(root).unwrap();
        let mut last = client.versions();
        for i in order {
            let before = client.stored();
            match client.apply_bundle(&bundles[i], NOW) {
                Ok(_) => {
                    let now = client.versions();
                    prop_assert!(now.root >= last.root);
                    // After a key rotation the timestamp baseline restarts;
                    // otherwise versions only move forward.
                    if now.root == last.root {
                        prop_assert!(now.timestamp >= last.timestamp);
                        prop_assert!(now.targets >= last.targets);
                    }
                    last = now;
                }
                Err(_) => prop_assert_eq!(client.stored(), before),
            }
        }
        let newest = bundles.len() - 1;
        client.apply_bundle(&bundles[newest], NOW).unwrap();
        prop_assert_eq!(client.bundle(), bundles[newest].clone());
    }
}
