//! The chunked-body tracker: a body split anywhere is followed as it is whole.
//! The properties live in `portico_edge::fuzzing::chunked`, which the corpus replay test runs too.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portico_edge::fuzzing::chunked(data));
