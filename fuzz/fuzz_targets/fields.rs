//! `?fields=` parsing: a response is trimmed to documented fields only (and `degraded`).
//! The properties live in `portico_edge::fuzzing::fields`, which the corpus replay test runs too.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| portico_edge::fuzzing::fields(data));
