//! Fuzzes `Gossip::decode`: anything a gossipsub peer publishes.
//!
//! Besides "never panics", checks that an accepted message re-encodes to bytes
//! that decode to the same message and are no longer than the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waveguard_protocol::wire::Gossip;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Gossip::decode(data) else {
        return;
    };
    let _ = msg.topic();
    let again = msg.encode();
    assert!(
        again.len() <= data.len(),
        "re-encoding grew from {} to {} bytes",
        data.len(),
        again.len()
    );
    assert_eq!(
        Gossip::decode(&again).as_ref(),
        Ok(&msg),
        "re-encoding does not decode to the same message"
    );
});
