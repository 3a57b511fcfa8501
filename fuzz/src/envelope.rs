//! The `envelope_json` target: the outer layer of every signed document
//! (metadata, health reports, certificates, directives), read with
//! `Envelope::<serde_json::Value>::from_json`.
//!
//! Signatures are checked against the key that signed the seeds, so hostile
//! `keyid` and `sig` strings reach the hex and ed25519 paths and valid
//! signatures stay reachable. For an accepted envelope: every signature field
//! is lowercase hex; the signature input reads back as exactly the content
//! (no NFC rewriting, no raw control characters) and is its own canonical
//! form; the role check agrees with `is_signed_by`; and `to_json` gives
//! printable bytes no longer than the input, which are accepted under the
//! same limit with the same signature input, content, signatures and verdict,
//! and re-encode to themselves.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use waveguard_protocol::limits::MAX_TARGETS_BYTES;
use waveguard_protocol::metadata::signed::{canonical_json, Envelope, RoleKeys};
use waveguard_protocol::{KeyId, PublicKey, SigningKey};

type Doc = Envelope<serde_json::Value>;

/// The seed key (seed `[7; 32]`) as a one-key role.
struct Trust {
    key: PublicKey,
    role: RoleKeys,
    keys: BTreeMap<KeyId, PublicKey>,
}

/// The seed signing key.
pub fn seed_key() -> SigningKey {
    SigningKey::from_seed([7; 32])
}

fn trust() -> &'static Trust {
    static TRUST: OnceLock<Trust> = OnceLock::new();
    TRUST.get_or_init(|| {
        let key = seed_key().public();
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

fn lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Runs one input and checks every invariant; panics on a violation.
/// Returns whether the envelope was accepted.
pub fn run(data: &[u8]) -> bool {
    // The largest limit any document kind uses.
    let Ok(env) = Doc::from_json(data, MAX_TARGETS_BYTES, "fuzzed document") else {
        return false;
    };
    let t = trust();
    for s in &env.signatures {
        assert!(lower_hex(&s.keyid.0), "accepted keyid {:?}", s.keyid.0);
        assert!(lower_hex(&s.sig), "accepted sig {:?}", s.sig);
    }
    // What a reader sees must be what the signature covers.
    let back: serde_json::Value =
        serde_json::from_slice(env.canonical_signed()).expect("the signature input is JSON");
    assert_eq!(
        back, env.signed,
        "typed content differs from the signed bytes"
    );
    let again = canonical_json(&env.signed).expect("accepted content has canonical JSON");
    assert_eq!(
        again,
        env.canonical_signed(),
        "canonical form is not a fixed point"
    );

    let signed = env.is_signed_by(&t.key);
    // One key, threshold 1: the role passes exactly when that key signed.
    assert_eq!(env.verify_role("fuzz", &t.role, &t.keys).is_ok(), signed);

    let json = env.to_json();
    assert!(
        json.iter().all(|&b| b >= 0x20),
        "to_json wrote a control character"
    );
    // Canonical JSON only drops white space, duplicates, unknown signature
    // fields and escapes, so a relayed document fits the limit it came in under.
    assert!(
        json.len() <= data.len(),
        "to_json grew the document from {} to {} bytes",
        data.len(),
        json.len()
    );
    let again = match Doc::from_json(&json, data.len(), "re-encoded document") {
        Ok(e) => e,
        Err(e) => panic!("to_json output is refused: {e}"),
    };
    assert_eq!(
        again.canonical_signed(),
        env.canonical_signed(),
        "signature input changed"
    );
    assert_eq!(again.signed, env.signed, "content changed");
    assert_eq!(again.signatures, env.signatures);
    assert_eq!(again.to_json(), json, "to_json is not idempotent");
    assert_eq!(
        again.is_signed_by(&t.key),
        signed,
        "re-encoding changed the verdict"
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn seed_files() -> Vec<(String, Vec<u8>)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/envelope_json");
        let mut out: Vec<_> = std::fs::read_dir(dir)
            .expect("seeds/envelope_json exists")
            .map(|e| {
                let p = e.expect("readable directory").path();
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
                (
                    name.unwrap_or_default(),
                    std::fs::read(&p).expect("readable seed"),
                )
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn former_crashes_are_refused_and_valid_seeds_accepted() {
        let refused = [
            "control_char_in_signature",
            "control_char_in_signed",
            "nfd_string_in_signed",
            "struct_as_array",
        ];
        let files = seed_files();
        for name in refused {
            let (_, bytes) = files
                .iter()
                .find(|(n, _)| n == name)
                .expect("former regression kept as a seed");
            assert!(!run(bytes), "{name} is accepted");
        }
        for (name, bytes) in &files {
            if !refused.contains(&name.as_str()) {
                assert!(run(bytes), "{name} is refused");
            }
        }
    }

    #[test]
    fn signed_seeds_verify_and_tampering_breaks_the_verdict() {
        let doc = Envelope::sign_new(serde_json::json!({"_type": "x", "n": 1}), &[&seed_key()])
            .expect("plain JSON");
        assert!(doc.is_signed_by(&trust().key));
        let json = doc.to_json();
        assert!(run(&json));
        let tampered = String::from_utf8(json)
            .expect("canonical JSON is UTF-8")
            .replace("\"n\":1", "\"n\":2");
        let env = Doc::from_json(tampered.as_bytes(), 1 << 20, "t").expect("still an envelope");
        assert!(!env.is_signed_by(&trust().key));
    }
}
