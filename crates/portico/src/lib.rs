//! # portico
//!
//! The `portico` command and what it is made of: [`stack`] starts the whole demo (the sample
//! services and the three gateways) in one process, which is also how the end-to-end tests
//! run it; [`gateways`] knows the three gateways by name; [`credentials`] obtains tokens from
//! the identity service and knows the demo partners' API keys.
//!
//! This is the only crate (with the e2e tests) that sees both the services and the gateways:
//! in production they are separate processes that meet only over the wire.

pub mod credentials;
pub mod gateways;
pub mod stack;

/// The error every command reports: a message for a person.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
