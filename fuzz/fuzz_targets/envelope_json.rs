//! Fuzzes `Envelope::<serde_json::Value>::from_json`: the outer layer of every
//! signed document. The checks live in `waveguard_fuzz::envelope`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    waveguard_fuzz::envelope::run(data);
});
