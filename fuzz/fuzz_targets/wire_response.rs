//! Fuzzes `Response::decode`: anything a peer answers over request-response.
//!
//! The wire format has exactly one encoding per message (decoders refuse
//! overlong varints and trailing bytes), so an accepted input must re-encode
//! to itself byte for byte.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waveguard_protocol::wire::Response;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Response::decode(data) else {
        return;
    };
    assert_eq!(
        msg.encode(),
        data,
        "an accepted response must be its own canonical encoding"
    );
});
