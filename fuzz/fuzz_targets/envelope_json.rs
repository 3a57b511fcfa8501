//! Fuzzes `Envelope::<serde_json::Value>::from_json`: the outer layer of every
//! signed document (metadata, health reports, certificates, directives).
//!
//! Also checks signatures against the key that signed the seeds, so hostile
//! `keyid` and `sig` strings reach the hex and ed25519 paths and valid
//! signatures stay reachable: the role check and `is_signed_by` must agree, and
//! an accepted envelope must survive `to_json` with the same signature input
//! and the same verdict.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::sync::OnceLock;
use waveguard_protocol::limits::MAX_TARGETS_BYTES;
use waveguard_protocol::metadata::signed::{Envelope, RoleKeys};
use waveguard_protocol::{KeyId, PublicKey, SigningKey};

type Doc = Envelope<serde_json::Value>;

struct Trust {
    key: PublicKey,
    role: RoleKeys,
    keys: BTreeMap<KeyId, PublicKey>,
}

fn trust() -> &'static Trust {
    static TRUST: OnceLock<Trust> = OnceLock::new();
    TRUST.get_or_init(|| {
        // The key examples/make_seeds.rs signs with.
        let key = SigningKey::from_seed([7; 32]).public();
        let id = key.key_id();
        Trust {
            role: RoleKeys {
                keyids: vec![id.clone()],
                threshold: 1,
            },
            keys: BTreeMap::from([(id, key.clone())]),
            key,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    // The largest limit any document kind uses.
    let Ok(env) = Doc::from_json(data, MAX_TARGETS_BYTES, "fuzzed document") else {
        return;
    };
    let t = trust();
    let signed = env.is_signed_by(&t.key);
    // One key, threshold 1: the role passes exactly when that key signed.
    assert_eq!(env.verify_role("fuzz", &t.role, &t.keys).is_ok(), signed);

    let json = env.to_json();
    let again =
        Doc::from_json(&json, usize::MAX, "re-encoded document").expect("to_json output parses");
    assert_eq!(
        again.canonical_signed(),
        env.canonical_signed(),
        "signature input changed"
    );
    // What a reader sees must be what the signature covers: if canonical JSON
    // rewrote the document (it NFC-normalizes strings), the typed content changes here.
    assert_eq!(
        again.signed, env.signed,
        "typed content differs from the signed bytes"
    );
    assert_eq!(again.signatures, env.signatures);
    assert_eq!(again.to_json(), json, "to_json is not idempotent");
    assert_eq!(
        again.is_signed_by(&t.key),
        signed,
        "re-encoding changed the verdict"
    );
});
