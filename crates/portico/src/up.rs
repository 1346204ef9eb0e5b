//! `portico up`: the whole demo stack in one process, with a table of where to point a client.

use std::collections::BTreeMap;
use std::io::Write;

use portico::{
    Error,
    gateways::Gateway,
    stack::{Options, Stack},
};
use portico_services::{Faults, Ports, ServiceName};

use crate::cli::UpArgs;

pub async fn run(args: UpArgs) -> Result<(), Error> {
    let options = options(&args)?;
    let stack = Stack::start(options.clone()).await?;
    print_banner(&stack, &options.services.faults)?;
    ctrl_c().await;
    eprintln!("shutting down: draining in-flight requests…");
    stack.shutdown().await;
    Ok(())
}

fn options(args: &UpArgs) -> Result<Options, Error> {
    let mut options = Options::ephemeral();
    options.host = args.host;
    options.ports = [args.mobile_port, args.web_port, args.partner_port];
    options.services.ports = if args.services_port == 0 {
        Ports::ephemeral()
    } else {
        let p = |i: u16| args.services_port.saturating_add(i);
        Ports {
            catalog: p(0),
            reviews: p(1),
            recommendations: p(2),
            inventory: p(3),
            orders: p(4),
            identity: p(5),
        }
    };
    // Already checked by `Cli::parse_checked`; `?` keeps a programmatic caller honest too.
    options.services.faults = args.faults()?;
    options.redis.clone_from(&args.redis);
    Ok(options)
}

/// Resolves on Ctrl-C (or SIGTERM, which is how containers are stopped).
pub async fn ctrl_c() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// What a newcomer needs first: where each gateway is and one command that calls it.
fn print_banner(stack: &Stack, faults: &BTreeMap<ServiceName, Faults>) -> std::io::Result<()> {
    let s = stack.services();
    let mut out = std::io::stdout().lock();
    writeln!(out, "\nPortico is up: three gateways over six sample services.\n")?;
    writeln!(out, "  {:<8} {:<24} try", "gateway", "url")?;
    for gateway in Gateway::ALL {
        let url = format!("http://{}", stack.addr(gateway));
        let example = match gateway {
            Gateway::Mobile => format!("curl -s {url}/v1/home"),
            Gateway::Web => format!("curl -s {url}/api/products/p-00042"),
            Gateway::Partner => format!(
                "curl -s -H 'X-Api-Key: {}' '{url}/partner/v1/products?limit=2'",
                portico::credentials::DEMO_API_KEYS[1].2
            ),
        };
        writeln!(out, "  {:<8} {:<24} {example}", gateway.name(), url)?;
    }
    writeln!(
        out,
        "\n  services: catalog {} · reviews {} · recommendations {} · inventory (gRPC) {} · orders {} · identity {}",
        s.catalog, s.reviews, s.recommendations, s.inventory, s.orders, s.identity
    )?;
    // Loud on purpose: a slow or failing demo should never be a mystery to whoever started it.
    if !faults.is_empty() {
        writeln!(out, "\n  injected faults (--fault):")?;
        for (service, faults) in faults {
            writeln!(out, "    {:<16} {faults}", service.name())?;
        }
    }
    writeln!(out, "\n  signed-in calls (demo users alice, bob; partners acme, globex):")?;
    let identity = format!("http://{}", s.identity);
    let web = format!("http://{}", stack.addr(Gateway::Web));
    writeln!(
        out,
        "    TOKEN=$(portico token user alice --audience web --identity {identity})\n    \
         curl -s -H \"Authorization: Bearer $TOKEN\" {web}/api/orders"
    )?;
    writeln!(out, "  partner API keys (demo; the gateway stores only their hashes):")?;
    for (id, partner, key) in portico::credentials::DEMO_API_KEYS {
        writeln!(out, "    {partner:<7} {id:<15} {key}")?;
    }
    writeln!(
        out,
        "\n  each gateway also serves /openapi.json, /healthz, /readyz and /metrics. Ctrl-C stops everything.\n"
    )?;
    out.flush()
}
