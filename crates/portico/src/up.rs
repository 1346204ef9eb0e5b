//! `portico up`: the whole demo stack in one process, with a table of where to point a client.

use std::io::Write;

use portico::{
    Error,
    gateways::Gateway,
    stack::{Options, Stack},
};
use portico_services::{Faults, Ports};

use crate::cli::UpArgs;

pub async fn run(args: UpArgs) -> Result<(), Error> {
    let stack = Stack::start(options(&args)).await?;
    print_banner(&stack)?;
    ctrl_c().await;
    eprintln!("shutting down: draining in-flight requests…");
    stack.shutdown().await;
    Ok(())
}

fn options(args: &UpArgs) -> Options {
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
    options.services.recommendations = Faults {
        latency: args.recommendations_latency,
        error_rate: args.recommendations_error_rate,
    };
    options
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
fn print_banner(stack: &Stack) -> std::io::Result<()> {
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
