//! Path normalisation: accepted paths come out canonical, and normalising again changes nothing.
//! The properties live in `portico_edge::fuzzing::path`, which the corpus replay test runs too.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portico_edge::fuzzing::path(data));
