//! Assembles a gateway: its own composed routes, the configured pass-through routes, the
//! health routes and `/metrics`, behind the one edge [`pipeline`](crate::pipeline), with the
//! [`Relay`] as its HTTP/1.1 transport.
//!
//! A request meets, outermost first:
//!
//! | piece | why it sits here |
//! |---|---|
//! | a transport: the relay (every HTTP/1.1 connection; relays pass-through routes itself) or hyper (HTTP/2, upgrades, what the relay hands over) | framing and bytes only; both hand the head to the pipeline |
//! | the pipeline (request id → head limits → hygiene and path normalisation → route match → body limit and deadline → authentication → access rule → identity headers) | one order for every request path, before any handler or backend runs (see [`pipeline`](crate::pipeline)) |
//! | problem normaliser | rewrites bare framework errors (405, 415, extractor rejections) from everything inside it into problem+json |
//! | the router (axum) | routes the normalised path to a composed handler or the pass-through handler |
//! | *handler* | the gateway's composition: parallel upstream calls, each with its own deadline |
//! | the outbound phase | every response: the request id, the access-log line |

use std::sync::Arc;

use axum::{Router, extract::DefaultBodyLimit};

use crate::{
    access::{Access, Routes},
    config::{ConfigError, GatewayConfig},
    error::EdgeError,
    health, metrics,
    pipeline::{EdgeState, Pipeline, router::Front},
    proxy,
    relay::Relay,
    upstream::Upstreams,
};

/// A built gateway: its router behind the edge pipeline, and the [`Relay`] that serves its
/// HTTP/1.1 clients (the server hands the relay every connection first; it relays the
/// pass-through routes and gives the router the rest). Both transports run the same pipeline.
#[derive(Clone, Debug)]
pub struct Gateway {
    /// The router, without the pipeline in front of it.
    inner: Router,
    pipeline: Option<Arc<Pipeline>>,
    relay: Option<Arc<Relay>>,
}

// === impl Gateway ===

impl Gateway {
    /// The whole gateway as one router: the pipeline, then the router (the relay is only a
    /// faster transport to some of its routes).
    pub fn router(&self) -> Router {
        match self.front() {
            Some(front) => Router::new().fallback_service(front),
            None => self.inner.clone(),
        }
    }

    /// [`Gateway::router`], for tests that call it as a service.
    pub fn into_router(self) -> Router {
        self.router()
    }

    /// Wraps the router behind the pipeline, say in a layer that must see every response it
    /// produces. The relay stops relaying, since that would bypass what `wrap` adds: every
    /// request then goes through the router (the relay still keeps HTTP/1.1 connections
    /// between requests).
    #[must_use]
    pub fn wrap(self, wrap: impl FnOnce(Router) -> Router) -> Self {
        let relay = self.relay.map(|relay| Arc::new(relay.routes_only()));
        Self { inner: wrap(self.inner), pipeline: self.pipeline, relay }
    }

    /// The gateway with no relay at all: hyper serves every connection (tests of that path).
    #[cfg(test)]
    #[must_use]
    pub(crate) fn without_relay(self) -> Self {
        Self { relay: None, ..self }
    }

    /// The pipeline in front of the router, as the server runs it per request.
    pub(crate) fn front(&self) -> Option<Front> {
        let pipeline = self.pipeline.clone()?;
        Some(Front { pipeline, inner: self.inner.clone() })
    }

    pub(crate) fn relay(&self) -> Option<&Arc<Relay>> {
        self.relay.as_ref()
    }
}

impl From<Router> for Gateway {
    /// A router served as it is: no pipeline, no relay.
    fn from(router: Router) -> Self {
        Self { inner: router, pipeline: None, relay: None }
    }
}

/// A gateway: `routes` (its composed endpoints), the config's pass-through routes, the health
/// routes and `/metrics`, with a problem+json 404 for everything else, behind the pipeline;
/// and its relay. `name` labels the gateway's metrics. Its
/// per-process state is its own ([`gateway_in`] shares one between workers).
///
/// Fails when a route needs a caller but the config has no `[auth]` to find one, and when
/// routes overlap.
pub fn gateway(
    name: &'static str,
    routes: Routes,
    config: &GatewayConfig,
    upstreams: &Upstreams,
) -> Result<Gateway, ConfigError> {
    gateway_in(name, routes, config, upstreams, &EdgeState::new(config)?)
}

/// [`gateway`] with the process's edge state: every worker of one process builds its gateway
/// with the same `state`.
pub fn gateway_in(
    name: &'static str,
    routes: Routes,
    config: &GatewayConfig,
    upstreams: &Upstreams,
    state: &EdgeState,
) -> Result<Gateway, ConfigError> {
    let purge = Routes::<Arc<crate::cache::Cache>>::new()
        .post(crate::cache::PURGE_PATH, Access::public().uncounted(), crate::cache::purge_handler)
        .with_state::<()>(state.cache());
    let (router, table) = routes
        .merge(health::routes(upstreams.clone()))
        .merge(metrics::routes())
        .merge(purge)
        .into_parts();
    // The route table is checked (duplicates, overlaps) before the router is given the
    // pass-through routes: the router would panic where the table names both routes.
    let pipeline = Arc::new(Pipeline::new(name, config, table, upstreams, state)?);
    let router = router
        .merge(proxy::router(pipeline.pass_routes()))
        .fallback(|| async { EdgeError::no_route() })
        // The pipeline's limit replaces axum's default 2 MiB extractor limit: one setting.
        .layer(DefaultBodyLimit::disable());
    let relay = Arc::new(Relay::new(pipeline.clone(), config));
    Ok(Gateway { inner: router, pipeline: Some(pipeline), relay: Some(relay) })
}
