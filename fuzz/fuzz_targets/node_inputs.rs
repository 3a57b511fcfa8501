//! Fuzzes the `Node` engine: a script of network, timer and driver inputs fed
//! to one node, every output drained and checked after each. The input format
//! and checks live in `waveguard_fuzz::node_inputs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    waveguard_fuzz::node_inputs::run(data);
});
