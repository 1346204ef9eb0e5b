//! # portico-edge
//!
//! The toolkit every Portico gateway is built from: the *edge functions* that sit between
//! clients and backend services. It knows no gateway and no service.
//!
//! - [`auth`], [`access`] — who is calling (JWT/JWKS, API keys) and what each route admits.
//! - [`metrics`] — the `metrics` facade, served as Prometheus text at `/metrics`.
//! - [`config`] — the strict TOML model: listeners, limits, upstreams, pass-through routes.
//! - [`upstream`] — named HTTP and gRPC upstreams: pooled connections, load balancing,
//!   circuit breakers, outlier ejection, retries within a budget, hedging, health checks;
//!   [`deadline`] — the request deadline every upstream call inherits and propagates.
//! - [`compose`] — parallel fan-out with required and optional parts, degraded responses.
//! - [`error`] — one error type that knows its source, rendered as RFC 7807 problem+json.
//! - [`proxy`] — declarative pass-through routes with streaming bodies; [`relay`] — their
//!   HTTP/1.1 fast path, byte for byte over pooled upstream connections.
//! - [`pipeline`] — the one edge pipeline every request passes, whatever its transport, and
//!   the forwarding policy; [`stack`] assembles a gateway behind it.
//! - [`request_id`], [`limits`], [`rescue`] — steps of the pipeline, usable as layers alone.
//! - [`fields`] — sparse fieldsets (`?fields=`); [`params`] — checks on ids copied upstream.
//! - [`path`] — the canonical request path (dot-segments, merged slashes, escapes) routed on.
//! - [`json`] — JSON request bodies the gateway parses itself, refused when nested too deeply.
//! - [`health`], [`server`] — probes, and serving with timeouts and graceful shutdown.
//! - [`openapi`] — serving a gateway's OpenAPI document.

pub mod access;
pub mod access_log;
pub mod auth;
mod bounded;
pub mod cache;
pub mod compose;
pub mod config;
pub mod connection;
pub mod deadline;
pub mod error;
pub mod fields;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod health;
pub mod json;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod params;
pub mod path;
pub mod pipeline;
pub mod proxy;
pub mod ratelimit;
mod redis_store;
pub mod relay;
pub mod request_id;
pub mod rescue;
pub mod server;
pub mod stack;
pub mod upstream;

pub use compose::{Composed, Degraded};
pub use config::{ConfigError, GatewayConfig};
pub use error::EdgeError;
pub use upstream::Upstreams;
