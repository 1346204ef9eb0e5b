//! # portico-e2e
//!
//! Black-box tests of the whole stack: `tests/*.rs` start the sample services and the three
//! gateways on ephemeral loopback ports and call every documented endpoint over real HTTP, as
//! a client would. This library is empty; the tests live in `tests/`.
