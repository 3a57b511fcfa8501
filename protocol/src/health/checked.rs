//! Health-report signatures already found valid, shared by engines that see
//! the same reports: a simulator runs thousands of engines in one process, and
//! each would otherwise check every report's ed25519 signature itself.
//!
//! Only successful checks are remembered, keyed by the blake3 hash of the
//! signer's key and the report's exact bytes. Whether a signature verifies
//! depends on nothing else, so a node with a cache reaches the same verdict as
//! one without; a report that differs in any byte is checked afresh. A lone
//! agent has nothing to share and runs without one.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// Most signatures remembered; when full the cache starts over (it only saves work).
pub const MAX_CHECKED_SIGNATURES: usize = 1 << 20;

/// A shared set of valid report signatures (cheap to clone: clones share it).
#[derive(Clone, Debug, Default)]
pub struct CheckedSignatures {
    valid: Arc<Mutex<HashSet<[u8; 32]>>>,
}

impl CheckedSignatures {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The cache key of `bytes` signed by `signer`.
    fn key(signer: &[u8; 32], bytes: &[u8]) -> [u8; 32] {
        let mut h = blake3::Hasher::new_derive_key("waveguard 2026-12 checked-signature v1");
        h.update(signer);
        h.update(bytes);
        *h.finalize().as_bytes()
    }

    /// Whether `bytes` were found signed by `signer` before; otherwise runs
    /// `check` and remembers a success.
    pub fn signed_by(&self, signer: &[u8; 32], bytes: &[u8], check: impl FnOnce() -> bool) -> bool {
        let key = Self::key(signer, bytes);
        // A poisoned lock only means another engine panicked mid-insert; the set is still sound.
        let known = match self.valid.lock() {
            Ok(set) => set.contains(&key),
            Err(poisoned) => poisoned.into_inner().contains(&key),
        };
        if known {
            return true;
        }
        let ok = check();
        if ok {
            let mut set = match self.valid.lock() {
                Ok(set) => set,
                Err(poisoned) => poisoned.into_inner(),
            };
            if set.len() >= MAX_CHECKED_SIGNATURES {
                set.clear();
            }
            set.insert(key);
        }
        ok
    }

    /// Signatures remembered.
    pub fn len(&self) -> usize {
        match self.valid.lock() {
            Ok(set) => set.len(),
            Err(poisoned) => poisoned.into_inner().len(),
        }
    }

    /// Whether none is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_successes_are_remembered_and_only_for_the_same_signer_and_bytes() {
        let c = CheckedSignatures::new();
        let (a, b) = ([1u8; 32], [2u8; 32]);
        assert!(!c.signed_by(&a, b"report", || false));
        assert!(c.is_empty(), "a failure is not remembered");
        assert!(c.signed_by(&a, b"report", || true));
        // Remembered: the check is not run again.
        assert!(c.signed_by(&a, b"report", || panic!("checked twice")));
        // Another signer or other bytes are checked afresh.
        assert!(!c.signed_by(&b, b"report", || false));
        assert!(!c.signed_by(&a, b"report!", || false));
        let shared = c.clone();
        assert!(shared.signed_by(&a, b"report", || panic!("clones share the cache")));
        assert_eq!(c.len(), 1);
    }
}
