//! Fuzzes `Request::decode`: anything a peer asks over request-response.
//!
//! Besides "never panics", checks that an accepted message re-encodes to bytes
//! that decode to the same message and are no longer than the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waveguard_protocol::wire::Request;

fuzz_target!(|data: &[u8]| {
    let Ok(msg) = Request::decode(data) else {
        return;
    };
    let again = msg.encode();
    assert!(
        again.len() <= data.len(),
        "re-encoding grew from {} to {} bytes",
        data.len(),
        again.len()
    );
    assert_eq!(
        Request::decode(&again).as_ref(),
        Ok(&msg),
        "re-encoding does not decode to the same message"
    );
});
