//! Fuzzes `Request::decode`: anything a peer asks over request-response.
//!
//! The wire format has exactly one encoding per message (decoders refuse
//! overlong varints and trailing bytes), so an accepted input must re-encode
//! to itself byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waveguard_protocol::wire::Request;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Request::decode(data) else {
        return;
    };
    assert_eq!(
        msg.encode(),
        data,
        "an accepted request must be its own canonical encoding"
    );
});
