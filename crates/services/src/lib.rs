//! The sample online-shop microservices the Portico demo and tests run against: catalog, reviews,
//! recommendations, inventory (gRPC), orders and identity, all in one process.
//!
//! The wire contracts live in `shared/SERVICES.md`; [`Services::start`] binds every service and
//! runs it on the current Tokio runtime until [`Services::shutdown`] (or drop).

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use portico_contracts::inventory::inventory_server::InventoryServer;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub mod catalog;
pub mod data;
pub mod faults;
pub mod identity;
pub mod inventory;
pub mod orders;
pub mod problem;
pub mod recommendations;
pub mod reviews;

mod http;
mod query;

pub use faults::{Faults, Outage, ServiceName};

/// The data generator's parameters, kept in one file so docs, tests and benchmarks agree.
const DEMO_TOML: &str = include_str!("../../../shared/demo.toml");

/// Where and how the services run.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Address every service binds to.
    pub host: IpAddr,
    /// One port per service; 0 picks a free one.
    pub ports: Ports,
    /// Parameters of the generated shop.
    pub demo: DemoParams,
    /// Injected latency, failures and outages per service; a service not named runs healthy.
    pub faults: BTreeMap<ServiceName, Faults>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: Ports::default(),
            demo: DemoParams::default(),
            faults: BTreeMap::new(),
        }
    }
}

impl Config {
    /// The default configuration on ephemeral ports, so tests can run side by side.
    pub fn ephemeral() -> Self {
        Self { ports: Ports::ephemeral(), ..Self::default() }
    }
}

/// The port of each service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub catalog: u16,
    pub reviews: u16,
    pub recommendations: u16,
    pub inventory: u16,
    pub orders: u16,
    pub identity: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            catalog: 7001,
            reviews: 7002,
            recommendations: 7003,
            inventory: 7004,
            orders: 7005,
            identity: 7006,
        }
    }
}

impl Ports {
    /// Every port 0: the OS picks free ones.
    pub fn ephemeral() -> Self {
        Self { catalog: 0, reviews: 0, recommendations: 0, inventory: 0, orders: 0, identity: 0 }
    }
}

/// Parameters of the deterministic data generator (`shared/demo.toml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoParams {
    /// The same seed gives the same shop on every machine.
    pub seed: u64,
    /// Number of products (ids `p-00001` …).
    pub products: u32,
    /// Each product gets between 0 and this many reviews.
    pub max_reviews_per_product: u32,
}

impl Default for DemoParams {
    /// The parameters in `shared/demo.toml`, compiled in.
    #[allow(clippy::expect_used)]
    fn default() -> Self {
        // Invariant: the file is part of this crate's source and `tests::demo_toml_parses`
        // checks it, so a broken file fails the test suite rather than a running demo.
        toml::from_str(DEMO_TOML).expect("shared/demo.toml is a valid DemoParams document")
    }
}

/// The running services: their bound addresses and the tasks serving them.
///
/// Dropping this without [`Services::shutdown`] aborts every server task (the `JoinSet` does
/// that on drop), so a panicking test does not leave servers behind.
#[derive(Debug)]
pub struct Services {
    pub catalog: SocketAddr,
    pub reviews: SocketAddr,
    pub recommendations: SocketAddr,
    pub inventory: SocketAddr,
    pub orders: SocketAddr,
    pub identity: SocketAddr,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Services {
    /// Generates the shop, binds all six listeners and spawns their servers.
    ///
    /// Returns once every listener is bound, so connections made right after this succeed (they
    /// wait in the accept backlog until the server task polls). Fails with an error naming the
    /// service and address when a port cannot be bound.
    pub async fn start(config: Config) -> io::Result<Services> {
        let Config { host, ports, demo, faults } = config;

        // Bind everything before spawning anything: a taken port then fails the whole start
        // without leaving half the services running.
        // A service that is `down` is bound too: its port stays reserved until every bind has
        // succeeded, and is only then released (see `spawn_http`).
        let fault = |service| faults.get(&service).copied().unwrap_or_default();
        let catalog_listener =
            bind(ServiceName::Catalog, host, ports.catalog, fault(ServiceName::Catalog)).await?;
        let reviews_listener =
            bind(ServiceName::Reviews, host, ports.reviews, fault(ServiceName::Reviews)).await?;
        let recommendations_listener = bind(
            ServiceName::Recommendations,
            host,
            ports.recommendations,
            fault(ServiceName::Recommendations),
        )
        .await?;
        let inventory_listener =
            bind(ServiceName::Inventory, host, ports.inventory, fault(ServiceName::Inventory))
                .await?;
        let orders_listener =
            bind(ServiceName::Orders, host, ports.orders, fault(ServiceName::Orders)).await?;
        let identity_listener =
            bind(ServiceName::Identity, host, ports.identity, fault(ServiceName::Identity)).await?;

        let addrs = Addrs {
            catalog: catalog_listener.addr,
            reviews: reviews_listener.addr,
            recommendations: recommendations_listener.addr,
            inventory: inventory_listener.addr,
            orders: orders_listener.addr,
            identity: identity_listener.addr,
        };

        let shop = Arc::new(data::Shop::generate(&demo));
        let store = Arc::new(orders::OrderStore::seeded(&shop));
        // The issuer URL names the bound address, which is only known now for port 0.
        let issuer = identity::Issuer::generate(format!("http://{}", addrs.identity))
            .map_err(|e| io::Error::other(format!("identity: cannot create signing key: {e}")))?;

        let (shutdown, signal) = watch::channel(false);
        let mut tasks = JoinSet::new();
        spawn_http(
            &mut tasks,
            catalog_listener,
            catalog::router(Arc::clone(&shop)),
            signal.clone(),
        );
        spawn_http(
            &mut tasks,
            reviews_listener,
            reviews::router(Arc::clone(&shop)),
            signal.clone(),
        );
        spawn_http(
            &mut tasks,
            recommendations_listener,
            recommendations::router(Arc::clone(&shop)),
            signal.clone(),
        );
        spawn_http(&mut tasks, orders_listener, orders::router(store), signal.clone());
        spawn_http(
            &mut tasks,
            identity_listener,
            identity::router(Arc::new(issuer)),
            signal.clone(),
        );
        spawn_grpc(&mut tasks, inventory_listener, inventory::InventoryService::new(shop), signal);

        tracing::info!(
            catalog = %addrs.catalog,
            reviews = %addrs.reviews,
            recommendations = %addrs.recommendations,
            inventory = %addrs.inventory,
            orders = %addrs.orders,
            identity = %addrs.identity,
            "sample services listening"
        );
        Ok(Services {
            catalog: addrs.catalog,
            reviews: addrs.reviews,
            recommendations: addrs.recommendations,
            inventory: addrs.inventory,
            orders: addrs.orders,
            identity: addrs.identity,
            shutdown,
            tasks,
        })
    }

    /// Stops accepting connections, lets in-flight requests finish and waits for every server.
    pub async fn shutdown(mut self) {
        self.shutdown.send_replace(true);
        while let Some(joined) = self.tasks.join_next().await {
            if let Err(e) = joined {
                tracing::error!(error = %e, "sample service task failed");
            }
        }
    }

    /// The identity service's issuer URL, the `iss` of every token it signs.
    pub fn issuer(&self) -> String {
        format!("http://{}", self.identity)
    }
}

/// A listener bound for one service, not yet served, with the faults to serve it with.
struct Bound {
    service: ServiceName,
    addr: SocketAddr,
    listener: TcpListener,
    faults: Faults,
}

/// The bound addresses, gathered before the listeners move into their tasks.
struct Addrs {
    catalog: SocketAddr,
    reviews: SocketAddr,
    recommendations: SocketAddr,
    inventory: SocketAddr,
    orders: SocketAddr,
    identity: SocketAddr,
}

async fn bind(service: ServiceName, host: IpAddr, port: u16, faults: Faults) -> io::Result<Bound> {
    let requested = SocketAddr::new(host, port);
    let listener = TcpListener::bind(requested).await.map_err(|e| {
        io::Error::new(e.kind(), format!("{service} service cannot listen on {requested}: {e}"))
    })?;
    let addr = listener.local_addr()?;
    Ok(Bound { service, addr, listener, faults })
}

/// Serves an outage instead of the service, when one is injected; hands the listener back
/// otherwise.
fn outage(tasks: &mut JoinSet<()>, bound: Bound, signal: watch::Receiver<bool>) -> Option<Bound> {
    let Bound { service, addr, listener, faults } = bound;
    match faults.outage {
        None => return Some(Bound { service, addr, listener, faults }),
        Some(Outage::Down) => {
            // Closing the listener makes the kernel refuse connections to the port, exactly
            // what a client sees when the process behind it has died.
            drop(listener);
            tracing::warn!(%service, %addr, "injected fault: down (connections refused)");
        }
        Some(Outage::Hang) => {
            tracing::warn!(%service, %addr, "injected fault: hang (accepts, never answers)");
            tasks.spawn(hang(listener, signal));
        }
    }
    None
}

/// Accepts connections and holds them open without reading or answering until shutdown, so
/// clients wait until their own deadline. Holding them (rather than dropping) is the point:
/// a dropped socket would be a quick, visible reset.
async fn hang(listener: TcpListener, signal: watch::Receiver<bool>) {
    let mut held = Vec::new();
    let stop = stopped(signal);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => held.push(socket),
                // Out of descriptors and the like: a wedged service would not answer either.
                Err(e) => tracing::debug!(error = %e, "hang: accept failed"),
            },
        }
    }
}

/// Resolves once [`Services::shutdown`] asks for it, or when `Services` is gone.
async fn stopped(mut signal: watch::Receiver<bool>) {
    // An error means the sender was dropped, which is a reason to stop as well.
    let _ = signal.wait_for(|stop| *stop).await;
}

fn spawn_http(
    tasks: &mut JoinSet<()>,
    bound: Bound,
    router: axum::Router,
    signal: watch::Receiver<bool>,
) {
    let Some(Bound { service, addr, listener, faults }) = outage(tasks, bound, signal.clone())
    else {
        return;
    };
    // Only a faulty service pays for the layer (a boxed future per call).
    let router = if faults.is_none() {
        router
    } else {
        tracing::warn!(%service, %addr, %faults, "injected faults");
        router.layer(faults::http_layer(service, faults))
    };
    // Outermost, so an injected delay is cut short too.
    let router = router.layer(axum::middleware::from_fn(http::within_deadline));
    let name = service.name();
    tasks.spawn(async move {
        let served = axum::serve(listener, router).with_graceful_shutdown(stopped(signal)).await;
        if let Err(e) = served {
            tracing::error!(service = %name, %addr, error = %e, "server failed");
        }
    });
}

fn spawn_grpc(
    tasks: &mut JoinSet<()>,
    bound: Bound,
    service: inventory::InventoryService,
    signal: watch::Receiver<bool>,
) {
    let Some(Bound { service: name, addr, listener, faults }) =
        outage(tasks, bound, signal.clone())
    else {
        return;
    };
    if !faults.is_none() {
        tracing::warn!(service = %name, %addr, %faults, "injected faults");
    }
    tasks.spawn(async move {
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        // `option_layer`: a healthy service runs without the fault layer at all.
        let layer = (!faults.is_none()).then(|| faults::grpc_layer(name, faults));
        let served = tonic::transport::Server::builder()
            .layer(tower::util::option_layer(layer))
            .add_service(InventoryServer::new(service))
            .serve_with_incoming_shutdown(incoming, stopped(signal))
            .await;
        if let Err(e) = served {
            tracing::error!(service = %name, %addr, error = %e, "server failed");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_toml_parses() {
        let params: DemoParams = toml::from_str(DEMO_TOML).expect("demo.toml parses");
        assert_eq!(params, DemoParams::default());
        assert!(params.products > 0);
    }

    #[test]
    fn ephemeral_config_uses_port_zero() {
        let config = Config::ephemeral();
        assert_eq!(config.ports, Ports::ephemeral());
        assert_eq!(config.host, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(Ports::default().catalog, 7001);
        assert_eq!(Ports::default().identity, 7006);
    }
}
