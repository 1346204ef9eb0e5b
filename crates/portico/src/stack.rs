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
    /// The Redis the demo's shared state lives in (`portico up --redis`: plans, route limits,
    /// caches); `None`: in the process.
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

/// `config` with its shared state in the Redis at `url` (`portico up --redis`): the plans'
/// counts, the routes' own rate limits and the routes' caches, as replicas of it would share them.
pub fn with_redis(config: &mut GatewayConfig, url: &str) -> Result<(), crate::Error> {
    use portico_edge::ratelimit::Store;
    let policies = config.routes_policy.values_mut();
    let mut shared = false;
    for policy in policies {
        if let Some(limit) = &mut policy.rate_limit {
            limit.store = Store::Redis;
            shared = true;
        }
        if let Some(cache) = &mut policy.cache {
            cache.store = Store::Redis;
            shared = true;
        }
    }
    for plan in config.plans.values_mut() {
        plan.store = Store::Redis;
        shared = true;
    }
    if !shared {
        return Ok(());
    }
    let redis = config.redis.get_or_insert_with(Default::default);
    redis.url = url.to_owned();
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

#[cfg(test)]
mod tests {
    use portico_edge::{GatewayConfig, ratelimit::Store};

    use super::*;

    #[test]
    fn redis_takes_every_shared_state_of_the_demo() {
        for gateway in Gateway::ALL {
            let mut config = GatewayConfig::from_toml(gateway.demo_config()).unwrap();
            with_redis(&mut config, "redis://127.0.0.1:6390").unwrap();
            let policies = config.routes_policy.values();
            for policy in policies {
                assert!(policy.rate_limit.as_ref().is_none_or(|l| l.store == Store::Redis));
                assert!(policy.cache.as_ref().is_none_or(|c| c.store == Store::Redis));
            }
            assert!(config.plans.values().all(|plan| plan.store == Store::Redis));
            let uses = !config.plans.is_empty() || !config.routes_policy.is_empty();
            assert_eq!(
                config.redis.as_ref().map(|r| r.url.as_str()),
                uses.then_some("redis://127.0.0.1:6390"),
                "{gateway:?}"
            );
        }
        // The web demo caches its product page: now in Redis.
        let mut web = GatewayConfig::from_toml(Gateway::Web.demo_config()).unwrap();
        with_redis(&mut web, "redis://127.0.0.1:6390").unwrap();
        let page = web.routes_policy["web.product"].cache.as_ref().unwrap();
        assert_eq!(page.store, Store::Redis);
    }
}
