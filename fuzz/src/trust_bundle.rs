//! The `trust_bundle` target: metadata bundles from a peer, applied in turn to
//! a node's [`TrustedState`].
//!
//! Input: one byte picks the starting state (one of [`TrustDocs::states`]),
//! then up to [`MAX_BUNDLES_PER_INPUT`] bundles, each a time-step byte (see
//! [`crate::script::advance_ms`]), a root-count byte (read modulo
//! [`ROOT_COUNT_CHOICES`], so one more root than a bundle may carry is
//! reachable) and that many root payloads followed by the timestamp, snapshot
//! and targets payloads. Canned payloads index [`TrustDocs::table`]; an honest
//! payload is an empty field (skipped by `apply_bundle`).
//!
//! Checked for every bundle: a refused one leaves the state exactly as it was;
//! an accepted one never lowers a version (except that a root rotation which
//! changes a role's keys drops the documents those keys signed), reports its
//! changes truthfully, leaves an unexpired root, survives a store/reload, and
//! what the node then serves, unless something in it has expired, is accepted
//! by the state it came from and leads to the same state.

use crate::fixtures::{trust_docs, TrustDocs};
use crate::script::{advance_ms, Payload, Reader, Writer};
use std::collections::BTreeSet;
use waveguard_protocol::metadata::root::{read_metadata, RoleName, Root};
use waveguard_protocol::metadata::trust::{TrustVersions, TrustedState};
use waveguard_protocol::wire::{MetadataBundle, MAX_BUNDLE_ROOTS};
use waveguard_protocol::{ReleaseId, Timestamp};

/// Most bundles one input applies: enough for rotate-then-roll-back sequences,
/// few enough that each run stays well under a millisecond of signature checks.
pub const MAX_BUNDLES_PER_INPUT: usize = 8;

/// Root counts the count byte can name: 0 to one over [`MAX_BUNDLE_ROOTS`].
pub const ROOT_COUNT_CHOICES: u8 = MAX_BUNDLE_ROOTS as u8 + 2;

/// How far after the last signing (three hours after `NOW`) the clock starts.
const START_DELAY_MS: u64 = 60_000;

/// One bundle of a script, before canned payloads are resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    /// Time-step byte before applying it.
    pub advance: u8,
    /// Root documents.
    pub roots: Vec<Payload>,
    /// Timestamp, snapshot and targets.
    pub docs: [Payload; 3],
}

/// A decoded input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Script {
    /// Index into [`TrustDocs::states`] (modulo their number).
    pub start: u8,
    /// The bundles, in order.
    pub offers: Vec<Offer>,
}

impl Script {
    /// Reads a script; never fails (see the module docs for the layout).
    pub fn decode(data: &[u8]) -> Script {
        let mut r = Reader::new(data);
        let start = r.u8();
        let mut offers = Vec::new();
        while !r.is_empty() && offers.len() < MAX_BUNDLES_PER_INPUT {
            let advance = r.u8();
            let count = r.u8() % ROOT_COUNT_CHOICES;
            let roots = (0..count).map(|_| r.payload()).collect();
            let docs = [r.payload(), r.payload(), r.payload()];
            offers.push(Offer {
                advance,
                roots,
                docs,
            });
        }
        Script { start, offers }
    }

    /// Writes a script that [`Script::decode`] reads back unchanged.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u8(self.start);
        for o in &self.offers {
            let count = u8::try_from(o.roots.len()).unwrap_or(u8::MAX) % ROOT_COUNT_CHOICES;
            w.u8(o.advance).u8(count);
            for p in o.roots.iter().take(usize::from(count)).chain(&o.docs) {
                w.payload(p);
            }
        }
        w.finish()
    }
}

/// What one run did, for tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Bundles accepted.
    pub accepted: usize,
    /// Bundles refused.
    pub refused: usize,
}

/// Runs one input and checks every invariant; panics on a violation.
pub fn run(data: &[u8]) -> Summary {
    let docs = trust_docs();
    let table = docs.table();
    let script = Script::decode(data);
    let mut state = docs.states[usize::from(script.start) % docs.states.len()].clone();
    let mut now = docs.signed_at[3].plus_millis(START_DELAY_MS);
    let mut summary = Summary::default();
    for offer in &script.offers {
        now = now.plus_millis(advance_ms(offer.advance));
        let resolve = |p: &Payload| p.resolve(&table, Vec::new).into();
        let bundle = MetadataBundle {
            roots: offer.roots.iter().map(resolve).collect(),
            timestamp: resolve(&offer.docs[0]),
            snapshot: resolve(&offer.docs[1]),
            targets: resolve(&offer.docs[2]),
        };
        if apply_checked(&mut state, &bundle, now) {
            summary.accepted += 1;
        } else {
            summary.refused += 1;
        }
    }
    summary
}

/// Applies `bundle` and checks the invariants; returns whether it was accepted.
fn apply_checked(state: &mut TrustedState, bundle: &MetadataBundle, now: Timestamp) -> bool {
    let before = state.clone();
    let stored = before.stored();
    let outcome = match state.apply_bundle(bundle, now) {
        Ok(o) => o,
        Err(e) => {
            assert_eq!(
                state.stored(),
                stored,
                "refused bundle changed the state: {e}"
            );
            assert_eq!(state.versions(), before.versions());
            return false;
        }
    };
    let after = state.stored();
    let (old, new) = (before.versions(), state.versions());
    check_versions(&before, state, old, new);

    assert_eq!(outcome.changed, after != stored, "`changed` is wrong");
    let rotated = (new.root != old.root).then_some(new.root);
    assert_eq!(outcome.rotated_root, rotated, "`rotated_root` is wrong");
    let ids =
        |s: &TrustedState| -> BTreeSet<ReleaseId> { s.releases().iter().map(|r| r.id).collect() };
    let (had, has) = (ids(&before), ids(state));
    for r in &outcome.new_releases {
        assert!(
            has.contains(&r.id) && !had.contains(&r.id),
            "{:?} is not new",
            r.id
        );
    }
    let removed: BTreeSet<ReleaseId> = outcome.removed_releases.iter().copied().collect();
    assert_eq!(removed, &had - &has, "`removed_releases` is wrong");
    assert_eq!(
        outcome.new_releases.len(),
        (&has - &had).len(),
        "`new_releases` is wrong"
    );

    // apply_bundle refuses an expired root, so an accepted bundle never leaves one.
    assert!(state.root().expires > now, "accepted with an expired root");
    let all_supplied =
        !bundle.timestamp.is_empty() && !bundle.snapshot.is_empty() && !bundle.targets.is_empty();
    if all_supplied {
        assert_eq!(state.expired(now), None, "accepted expired documents");
    }

    // What the agent persists reloads to the same state.
    let reloaded = TrustedState::from_stored(&after).expect("stored trust reloads");
    assert_eq!(
        reloaded.stored(),
        after,
        "reloading changed the stored trust"
    );
    assert_eq!(reloaded.versions(), new);

    // What this node now serves (it serves only with a timestamp) is accepted by
    // the state it came from, with the same result, while nothing has expired.
    // (A bundle may leave expired documents it did not supply; serving those is
    // refused as stale, which is what peers should do.)
    if new.timestamp.is_some() && state.expired(now).is_none() {
        let mut replay = before;
        let served = state.bundle();
        if let Err(e) = replay.apply_bundle(&served, now) {
            panic!("the served bundle is refused by the state it grew from: {e}");
        }
        assert_eq!(replay.stored(), after, "the served bundle leads elsewhere");
    }
    true
}

/// No version goes down; documents vanish only when a rotation changed the
/// keys that signed them (TUF's fast-forward recovery).
fn check_versions(
    before: &TrustedState,
    after: &TrustedState,
    old: TrustVersions,
    new: TrustVersions,
) {
    assert!(
        new.root >= old.root,
        "root went from {} to {}",
        old.root,
        new.root
    );
    let changed = rotated_roles(before, after);
    let timestamp_keys = [RoleName::Targets, RoleName::Timestamp, RoleName::Snapshot]
        .iter()
        .any(|r| changed.contains(r));
    let targets_keys = changed.contains(&RoleName::Targets);
    let kept = |name: &str, old: Option<u64>, new: Option<u64>, may_reset: bool| {
        if may_reset {
            return;
        }
        if let Some(o) = old {
            match new {
                Some(n) => assert!(n >= o, "{name} went from {o} to {n}"),
                None => panic!("{name} v{o} was dropped without a key rotation"),
            }
        }
    };
    kept("timestamp", old.timestamp, new.timestamp, timestamp_keys);
    kept("snapshot", old.snapshot, new.snapshot, timestamp_keys);
    kept("targets", old.targets, new.targets, targets_keys);
}

/// Roles whose keys changed between any two consecutive roots from the old
/// trusted root to the new one.
fn rotated_roles(before: &TrustedState, after: &TrustedState) -> BTreeSet<RoleName> {
    let from = before.root_version();
    let mut chain: Vec<Root> = vec![before.root().clone()];
    chain.extend(
        after
            .stored()
            .roots
            .iter()
            .filter_map(|raw| read_metadata::<Root>(raw).ok())
            .map(|env| env.signed)
            .filter(|r| r.version > from),
    );
    let mut out = BTreeSet::new();
    for pair in chain.windows(2) {
        for role in [RoleName::Targets, RoleName::Snapshot, RoleName::Timestamp] {
            if pair[0].role_key_ids(role) != pair[1].role_key_ids(role) {
                out.insert(role);
            }
        }
    }
    out
}

/// Index of `doc` in [`TrustDocs::table`].
fn canned(table: &[Vec<u8>], doc: &[u8]) -> Payload {
    let i = table
        .iter()
        .position(|d| d[..] == doc[..])
        .expect("every fixture document is in the table");
    Payload::Canned(u8::try_from(i).expect("the table is small"))
}

/// A bundle as canned payloads (empty fields as honest ones).
fn offer_of(table: &[Vec<u8>], b: &MetadataBundle, advance: u8) -> Offer {
    let doc = |d: &[u8]| {
        if d.is_empty() {
            Payload::Honest
        } else {
            canned(table, d)
        }
    };
    Offer {
        advance,
        roots: b.roots.iter().map(|r| doc(r)).collect(),
        docs: [doc(&b.timestamp), doc(&b.snapshot), doc(&b.targets)],
    }
}

/// A bundle as raw payloads: the signed bytes themselves, for the fuzzer to mutate.
fn raw_offer(b: &MetadataBundle) -> Offer {
    let raw = |d: &[u8]| Payload::Raw(d.to_vec());
    Offer {
        advance: 0,
        roots: b.roots.iter().map(|r| raw(r)).collect(),
        docs: [raw(&b.timestamp), raw(&b.snapshot), raw(&b.targets)],
    }
}

/// Seed inputs: `(name, bytes)`.
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let d: &TrustDocs = trust_docs();
    let t = d.table();
    let b = &d.bundles;
    let script = |start, offers| Script { start, offers }.encode();
    let mut swapped = raw_offer(&b[0]);
    swapped.docs.swap(1, 2);
    let mut expired = offer_of(&t, &b[1], crate::script::time_code(5, 2));
    expired.roots.clear();
    vec![
        ("raw_first", script(0, vec![raw_offer(&b[0])])),
        ("raw_rotation", script(2, vec![raw_offer(&b[3])])),
        (
            "history",
            script(0, b.iter().map(|x| offer_of(&t, x, 0)).collect()),
        ),
        (
            "rollback_after_rotation",
            script(3, vec![offer_of(&t, &b[0], 0), offer_of(&t, &b[1], 0)]),
        ),
        ("swapped_documents", script(0, vec![swapped])),
        ("expired_after_two_days", script(1, vec![expired])),
        (
            "too_many_roots",
            script(
                1,
                vec![Offer {
                    advance: 0,
                    roots: vec![Payload::Canned(0); usize::from(ROOT_COUNT_CHOICES - 1)],
                    docs: [Payload::Honest, Payload::Honest, Payload::Honest],
                }],
            ),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(name: &str) -> Vec<u8> {
        seeds()
            .into_iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| b)
            .expect("seed exists")
    }

    #[test]
    fn scripts_round_trip() {
        for (name, bytes) in seeds() {
            assert_eq!(Script::decode(&bytes).encode(), bytes, "{name}");
        }
    }

    #[test]
    fn the_signed_history_is_accepted_in_order() {
        assert_eq!(
            run(&seed("history")),
            Summary {
                accepted: 4,
                refused: 0
            }
        );
        assert_eq!(run(&seed("raw_first")).accepted, 1);
        assert_eq!(run(&seed("raw_rotation")).accepted, 1);
    }

    #[test]
    fn rollbacks_expiry_and_endless_roots_are_refused() {
        for name in [
            "rollback_after_rotation",
            "swapped_documents",
            "expired_after_two_days",
            "too_many_roots",
        ] {
            let s = run(&seed(name));
            assert!(s.refused >= 1, "{name}: {s:?}");
        }
    }

    #[test]
    fn an_empty_bundle_is_accepted_even_when_trusted_documents_expired() {
        // Found by the fuzzer (kept as seeds/trust_bundle/empty_bundle_after_expiry):
        // two days after bundle A, an empty bundle is accepted (it supplies nothing
        // to check), and the node's now-expired timestamp must not be replayed.
        // The second bundle carries one empty root, which is refused.
        let input = [0x01, 0xa2, 0x00, 0xff, 0xff, 0x3f, 0x00, 0x01, 0x08];
        assert_eq!(
            run(&input),
            Summary {
                accepted: 1,
                refused: 1
            }
        );
    }

    #[test]
    fn a_flipped_byte_in_a_signed_document_is_refused() {
        let t = trust_docs().table();
        let mut offer = offer_of(&t, &trust_docs().bundles[0], 0);
        offer.docs[0] = Payload::Flipped {
            index: 3,
            at: 40,
            xor: 1,
        };
        let s = run(&Script {
            start: 0,
            offers: vec![offer],
        }
        .encode());
        assert_eq!(s.refused, 1);
    }
}
