//! Health: signed reports and heartbeats, fleet certificates, halt and resume
//! directives, per-wave aggregation, and the gate decision.
//!
//! Every function here takes the trust material it needs as a plain
//! [`FleetKeys`] argument (what the current root says about who may sign
//! what), so this module does not depend on how trust metadata is updated.
//! Documents are signed JSON in the common envelope
//! ([`crate::metadata::signed::Envelope`]); their `_type` field is checked so
//! that a signature made for one kind of document never counts for another.

pub mod cert;
pub mod checked;
pub mod directive;
pub mod evidence;
pub mod gate;
pub mod ledger;
pub mod report;

pub use cert::{issue_cert, verify_cert, CertError, FleetCert, MAX_CERT_BYTES};
pub use directive::{
    sign_directive, verify_directive, Directive, DirectiveAction, DirectiveError, DirectiveLog,
    DirectiveLogError, DirectiveState, MAX_DIRECTIVE_BYTES, MAX_REASON_BYTES,
};
pub use evidence::{build_evidence, check_evidence, EvidenceError, MAX_EVIDENCE_BYTES};
pub use gate::{condition, decide, evaluate, fails, GateState, NodeCondition, WaveHealth};
pub use ledger::{Inserted, Ledger, LedgerError, NodeRecord, StatusCounts};
pub use report::{
    peek_release, sign_report, verify_report, HealthReport, HealthStatus, ReportError,
    VerifiedReport, MAX_REPORT_BYTES,
};

use crate::keys::{KeyId, PublicKey, SigningKey};
use crate::metadata::signed::{Envelope, RoleKeys};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::collections::BTreeMap;

/// Role name used in errors for the vendor's TUF targets role.
pub const VENDOR_ROLE: &str = "targets";
/// Role name used in errors for the waveguard operator role.
pub const OPERATOR_ROLE: &str = "operator";

/// What the trusted root says about who may sign health-related documents.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FleetKeys {
    /// Every key the root lists, by key ID.
    pub keys: BTreeMap<KeyId, PublicKey>,
    /// The TUF targets role: the vendor, who may sign directives.
    pub vendor: RoleKeys,
    /// The waveguard operator role: certifies nodes and may sign directives.
    /// `None` is an open fleet, where any node's reports count.
    pub operator: Option<RoleKeys>,
}

/// Reads exactly 64 lowercase hex digits. IDs are compared as bytes but
/// signed as text, so only one spelling is accepted.
pub(crate) fn parse_lower_hex32(s: &str) -> Option<[u8; 32]> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        return None;
    }
    crate::id::parse_hex32(s)
}

/// At most 64 characters of a peer-supplied string, for error messages.
pub(crate) fn shorten(s: &str) -> String {
    s.chars().take(64).collect()
}

/// Signs a document and returns the envelope's JSON bytes.
pub(crate) fn sign_doc<T: Serialize + DeserializeOwned>(doc: T, keys: &[&SigningKey]) -> Vec<u8> {
    // Our documents hold only strings and integers, and canonical JSON fails
    // only on floats, so this cannot fail whatever the field values are.
    Envelope::sign_new(doc, keys)
        .expect("a document of strings and integers always has canonical JSON")
        .to_json()
}

/// Shared builders for the unit tests of this module's files.
#[cfg(test)]
pub(crate) mod test_support {
    use super::FleetKeys;
    use crate::keys::SigningKey;
    use crate::metadata::signed::RoleKeys;
    use crate::release::{Release, TargetFile};
    use crate::time::Timestamp;
    use serde_json::json;
    use std::collections::BTreeMap;

    /// Rollout start used by every test release.
    pub const START: Timestamp = Timestamp::from_secs(1_900_000_000);

    /// A deterministic key; distinct `n` give distinct keys.
    pub fn key(n: u32) -> SigningKey {
        let mut seed = [0u8; 32];
        seed[..4].copy_from_slice(&n.to_be_bytes());
        seed[31] = 0x5a;
        SigningKey::from_seed(seed)
    }

    /// Builds a release whose policy has the given waves and gate.
    pub struct ReleaseBuilder {
        waves: Vec<(u32, u64)>,
        max_failure_ppm: u32,
        min_reports: u32,
        silence_seconds: u64,
        heartbeat_seconds: u64,
        report_ppm: u32,
    }

    impl ReleaseBuilder {
        /// Two waves (10% baking one hour, then the rest), 20% failures, 3 reports, 10 min silence.
        pub fn new() -> Self {
            ReleaseBuilder {
                waves: vec![(100_000, 3600), (1_000_000, 3600)],
                max_failure_ppm: 200_000,
                min_reports: 3,
                silence_seconds: 600,
                heartbeat_seconds: 60,
                report_ppm: crate::release::PPM,
            }
        }
        pub fn waves(mut self, waves: &[(u32, u64)]) -> Self {
            self.waves = waves.to_vec();
            self
        }
        pub fn gate(mut self, max_failure_ppm: u32, min_reports: u32) -> Self {
            self.max_failure_ppm = max_failure_ppm;
            self.min_reports = min_reports;
            self
        }
        /// Only this share of each wave reports (the report sample).
        pub fn report_ppm(mut self, ppm: u32) -> Self {
            self.report_ppm = ppm;
            self
        }
        pub fn build(self) -> Release {
            let waves: Vec<_> = self
                .waves
                .iter()
                .enumerate()
                .map(|(i, (ppm, bake))| json!({"name": format!("w{i}"), "cumulative_ppm": ppm, "bake_seconds": bake}))
                .collect();
            let custom = json!({"waveguard": {
                "product": "acme", "version": "1.0",
                "chunk_list": {"length": crate::chunk::encoded_list_len(1), "blake3": "11".repeat(32), "chunks": 1},
                "chunker": crate::release::ChunkerParams::default(),
                "rollout": {"start": START.to_rfc3339(), "waves": waves, "health": {
                    "max_failure_ppm": self.max_failure_ppm, "min_reports": self.min_reports,
                    "silence_seconds": self.silence_seconds, "heartbeat_seconds": self.heartbeat_seconds,
                    "report_ppm": self.report_ppm}}}});
            let target = TargetFile {
                length: 1000,
                hashes: BTreeMap::from([("blake3".to_string(), "22".repeat(32))]),
                custom: Some(custom),
            };
            match Release::from_target("acme-1.0.bin", &target) {
                Ok(r) => r,
                Err(e) => panic!("test release is invalid: {e}"),
            }
        }
    }

    /// Vendor and operator keys for a test fleet.
    pub struct TestFleet {
        pub vendor: Vec<SigningKey>,
        pub operator: Vec<SigningKey>,
        pub keys: FleetKeys,
    }

    /// A fleet with a 1-of-1 vendor role and, if `operator_threshold > 0`,
    /// an operator role of two keys with that threshold.
    pub fn fleet(operator_threshold: u32) -> TestFleet {
        let vendor = vec![key(1_000)];
        let operator = if operator_threshold > 0 {
            vec![key(2_000), key(2_001)]
        } else {
            vec![]
        };
        let keys = vendor
            .iter()
            .chain(&operator)
            .map(|k| (k.key_id(), k.public()))
            .collect();
        let role = |ks: &[SigningKey], threshold| RoleKeys {
            keyids: ks.iter().map(SigningKey::key_id).collect(),
            threshold,
        };
        let keys = FleetKeys {
            keys,
            vendor: role(&vendor, 1),
            operator: (operator_threshold > 0).then(|| role(&operator, operator_threshold)),
        };
        TestFleet {
            vendor,
            operator,
            keys,
        }
    }
}
