//! The whole demo in one process: the six sample services on loopback and the three gateways
//! configured to call them. `portico up` runs it; the end-to-end tests start it on ephemeral
//! ports.

use std::net::{IpAddr, SocketAddr};

use portico_edge::GatewayConfig;
use portico_services::Services;
use tokio::sync::watch;

use crate::gateways::{self, Gateway, Running};

/// How to start the stack.
#[derive(Clone, Debug)]
pub struct Options {
    /// Address the gateways listen on.
    pub host: IpAddr,
    /// Ports of the mobile, web and partner gateways (0 = any free port).
    pub ports: [u16; 3],
    /// The sample services' settings (ports, demo data, injected faults).
    pub services: portico_services::Config,
    /// The Redis the plans' counts live in (`portico up --redis`); `None`: in the process.
    pub redis: Option<String>,
}

impl Options {
    /// Everything on free loopback ports: for tests.
    pub fn ephemeral() -> Self {
        Self {
            host: IpAddr::from([127, 0, 0, 1]),
            ports: [0; 3],
            services: portico_services::Config::ephemeral(),
            redis: None,
        }
    }
}

/// A running stack. Stop it with [`Stack::shutdown`]; dropping it stops the services too.
#[derive(Debug)]
pub struct Stack {
    services: Services,
    gateways: Vec<Running>,
    shutdown: watch::Sender<bool>,
}

impl Stack {
    /// Starts the services, then the gateways pointed at them.
    pub async fn start(options: Options) -> Result<Self, crate::Error> {
        let services = Services::start(options.services.clone()).await?;
        let (shutdown, signal) = watch::channel(false);
        let mut gateways = Vec::new();
        for (gateway, port) in Gateway::ALL.into_iter().zip(options.ports) {
            let mut config = demo_config(gateway, SocketAddr::new(options.host, port), &services)?;
            if let Some(url) = &options.redis {
                with_redis(&mut config, url)?;
            }
            let mut signal = signal.clone();
            let stopped = async move {
                let _ = signal.wait_for(|stop| *stop).await;
            };
            gateways.push(gateways::start(gateway, &config, stopped).await?);
        }
        Ok(Self { services, gateways, shutdown })
    }

    /// Where `gateway` listens.
    pub fn addr(&self, gateway: Gateway) -> SocketAddr {
        self.gateways
            .iter()
            .find(|g| g.gateway == gateway)
            .map(|g| g.addr)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// The sample services' addresses.
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// Stops accepting, drains the gateways' in-flight requests, then stops the services.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for gateway in self.gateways {
            gateway.stopped().await;
        }
        self.services.shutdown().await;
    }
}

/// `config` with its plans' counts in the Redis at `url` (`portico up --redis`).
pub fn with_redis(config: &mut GatewayConfig, url: &str) -> Result<(), crate::Error> {
    if config.plans.is_empty() {
        return Ok(());
    }
    let redis = config.redis.get_or_insert_with(Default::default);
    redis.url = url.to_owned();
    for plan in config.plans.values_mut() {
        plan.store = portico_edge::ratelimit::Store::Redis;
    }
    config.validate()?;
    Ok(())
}

/// `gateway`'s demo config with its listen address and upstream endpoints replaced by the
/// addresses the stack actually uses.
pub fn demo_config(
    gateway: Gateway,
    listen: SocketAddr,
    services: &Services,
) -> Result<GatewayConfig, crate::Error> {
    let mut config = GatewayConfig::from_toml(gateway.demo_config())
        .map_err(|e| format!("built-in {} config: {e}", gateway.name()))?;
    config.listen.public = listen;
    for (name, upstream) in &mut config.upstreams {
        let addr = match name.as_str() {
            "catalog" => services.catalog,
            "reviews" => services.reviews,
            "recommendations" => services.recommendations,
            "inventory" => services.inventory,
            "orders" => services.orders,
            "identity" => services.identity,
            other => {
                return Err(format!(
                    "{} config names an unknown service `{other}`",
                    gateway.name()
                )
                .into());
            }
        };
        upstream.endpoints = vec![format!("http://{addr}")];
    }
    // Tokens name the identity service's real address as their issuer; the JWKS is served there.
    if let Some(auth) = &mut config.auth {
        auth.issuer = format!("http://{}", services.identity);
        auth.jwks_url = format!("http://{}/.well-known/jwks.json", services.identity);
    }
    config.validate()?;
    Ok(config)
}
