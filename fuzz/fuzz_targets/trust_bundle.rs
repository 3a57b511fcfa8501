//! Fuzzes `TrustedState::apply_bundle`: metadata bundles from peers, applied in
//! sequence to a node's trusted state bootstrapped from a fixed root. The input
//! format and checks live in `waveguard_fuzz::trust_bundle`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    waveguard_fuzz::trust_bundle::run(data);
});
