//! The three gateways by name: their apps, OpenAPI documents and demo configs.

use std::{future::Future, net::SocketAddr};

pub use portico_edge::GatewayConfig;
use portico_edge::{ConfigError, pipeline::EdgeState, server, stack};

/// One of the three client-tailored gateways.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Gateway {
    /// The slim API for mobile apps.
    Mobile,
    /// The rich API for web frontends.
    Web,
    /// The stable, versioned API for third parties.
    Partner,
}

impl Gateway {
    /// All three, in the order they are listed to users.
    pub const ALL: [Self; 3] = [Self::Mobile, Self::Web, Self::Partner];

    /// The gateway's name (`mobile`, `web`, `partner`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Mobile => portico_mobile::NAME,
            Self::Web => portico_web::NAME,
            Self::Partner => portico_partner::NAME,
        }
    }

    /// Its router, built from `config`, with edge state of its own.
    pub fn app(self, config: &GatewayConfig) -> Result<stack::Gateway, ConfigError> {
        self.app_in(config, &EdgeState::new(config)?)
    }

    /// Its router, built from `config`, sharing the process's edge state `edge` (every worker
    /// of one process builds its gateway with the same state).
    pub fn app_in(
        self,
        config: &GatewayConfig,
        edge: &EdgeState,
    ) -> Result<stack::Gateway, ConfigError> {
        match self {
            Self::Mobile => portico_mobile::app_in(config, edge),
            Self::Web => portico_web::app_in(config, edge),
            Self::Partner => portico_partner::app_in(config, edge),
        }
    }

    /// Its OpenAPI document, as served at `/openapi.json`.
    pub fn openapi_json(self) -> String {
        match self {
            Self::Mobile => portico_mobile::openapi_json(),
            Self::Web => portico_web::openapi_json(),
            Self::Partner => portico_partner::openapi_json(),
        }
    }

    /// The demo config from `shared/config/`, compiled in so `portico up` needs no files.
    pub fn demo_config(self) -> &'static str {
        match self {
            Self::Mobile => include_str!("../../../shared/config/mobile.toml"),
            Self::Web => include_str!("../../../shared/config/web.toml"),
            Self::Partner => include_str!("../../../shared/config/partner.toml"),
        }
    }
}

/// A gateway bound to its port and serving.
#[derive(Debug)]
pub struct Running {
    /// Which gateway.
    pub gateway: Gateway,
    /// Where it listens.
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Waits until it has drained after its shutdown signal.
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// Builds `gateway` from `config`, binds its listener and serves it until `shutdown` resolves.
pub async fn start(
    gateway: Gateway,
    config: &GatewayConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Running, crate::Error> {
    let app = gateway.app(config).map_err(|e| format!("{} gateway config: {e}", gateway.name()))?;
    // The demo runs every gateway in one process: they share its connections.
    let serving = server::Serving::new(gateway.name(), &config.limits, Gateway::ALL.len());
    let (addr, task) = spawn_server(app, config, serving, shutdown).await?;
    tracing::info!(gateway = gateway.name(), %addr, "gateway listening");
    Ok(Running { gateway, addr, task })
}

/// Binds `config.listen.public` and serves `app` on it, as `serving` says, until `shutdown`
/// resolves.
pub async fn spawn_server(
    app: impl Into<stack::Gateway>,
    config: &GatewayConfig,
    serving: server::Serving,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), crate::Error> {
    let listener = server::bind(config.listen.public).await?;
    let addr = listener.local_addr()?;
    let app = app.into();
    Ok((addr, tokio::spawn(server::serve(listener, app, serving, shutdown))))
}

/// The config of a single pass-through gateway: every path to `to`, open to anyone (as `caddy
/// reverse-proxy` is), production defaults.
pub fn proxy_config(
    listen: SocketAddr,
    to: &str,
    timeout: std::time::Duration,
    extra: &str,
) -> Result<GatewayConfig, crate::Error> {
    // The extra tables first: the generated ones end in an array of tables.
    let text = format!(
        "{extra}\n[listen]\npublic = \"{listen}\"\n\n[upstreams.backend]\nendpoints = [{to:?}]\n\n\
         [[routes]]\npath = \"/\"\nupstream = \"backend\"\naccess = \"public\"\nname = \"proxy\"\n\
         timeout = \"{}\"\n",
        humantime::format_duration(timeout)
    );
    GatewayConfig::from_toml(&text).map_err(|e| format!("--to {to}: {e}").into())
}

/// A single pass-through gateway to one backend: the declarative-route path with the shared
/// edge layers, and nothing else (but `/healthz` and `/readyz`).
pub fn proxy_app(config: &GatewayConfig) -> Result<stack::Gateway, ConfigError> {
    proxy_app_in(config, &EdgeState::new(config)?)
}

/// [`proxy_app`] with the process's edge state, shared by every worker's gateway.
pub fn proxy_app_in(
    config: &GatewayConfig,
    edge: &EdgeState,
) -> Result<stack::Gateway, ConfigError> {
    let upstreams = portico_edge::Upstreams::for_gateway("proxy", config)?;
    stack::gateway_in("proxy", portico_edge::access::Routes::new(), config, &upstreams, edge)
}
