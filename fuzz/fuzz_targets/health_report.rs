//! Fuzzes the health verifiers: `peek_release` and `verify_report` on a health
//! message, `verify_cert` and `verify_directive` on the raw input, against a
//! fixed release and fleet keys. The input format and checks live in
//! `waveguard_fuzz::health_report`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    waveguard_fuzz::health_report::run(data);
});
