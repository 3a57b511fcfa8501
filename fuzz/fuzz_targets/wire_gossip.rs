//! Fuzzes `Gossip::decode`: anything a peer publishes over gossipsub.
//!
//! The wire format has exactly one encoding per message (decoders refuse
//! overlong varints and trailing bytes), so an accepted input must re-encode
//! to itself byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waveguard_protocol::wire::Gossip;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Gossip::decode(data) else {
        return;
    };
    let _ = msg.topic();
    assert_eq!(
        msg.encode(),
        data,
        "an accepted gossip message must be its own canonical encoding"
    );
});
