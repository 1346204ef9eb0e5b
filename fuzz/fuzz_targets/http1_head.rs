//! The relay's HTTP/1.1 head handling: whatever it relays is exactly one clean, canonical request.
//! The properties live in `portico_edge::fuzzing::http1_head`, which the corpus replay test runs too.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portico_edge::fuzzing::http1_head(data));
