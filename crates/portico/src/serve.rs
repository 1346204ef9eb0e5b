//! `portico serve` (one gateway from its config file, as in production) and `portico check`
//! (validate config files without serving).

use portico::{Error, gateways};
use portico_edge::GatewayConfig;

use crate::cli::{CheckArgs, ProxyArgs, ServeArgs};

pub async fn serve(args: ServeArgs) -> Result<(), Error> {
    let config = GatewayConfig::from_file(&args.config)
        .map_err(|e| format!("{}: {e}", args.config.display()))?;
    let running = gateways::start(args.gateway, &config, crate::up::ctrl_c()).await?;
    tracing::info!(
        "serving the {} gateway on http://{}; Ctrl-C stops it",
        args.gateway.name(),
        running.addr
    );
    running.stopped().await;
    Ok(())
}

pub async fn proxy(args: ProxyArgs) -> Result<(), Error> {
    let config = gateways::proxy_config(args.listen, &args.to, args.timeout)?;
    let app = gateways::proxy_app(&config)?;
    let (addr, task) = gateways::spawn_server(app, &config, crate::up::ctrl_c()).await?;
    tracing::info!("proxying http://{addr} to {}; Ctrl-C stops it", args.to);
    let _ = task.await;
    Ok(())
}

pub fn check(args: &CheckArgs) -> Result<(), Error> {
    let mut failed = 0;
    for file in &args.files {
        let verdict = GatewayConfig::from_file(file)
            .map_err(|e| e.to_string())
            .and_then(|config| args.gateway.app(&config).map(drop).map_err(|e| e.to_string()));
        match verdict {
            Ok(()) => eprintln!("ok      {}", file.display()),
            Err(error) => {
                failed += 1;
                eprintln!("invalid {}: {error}", file.display());
            }
        }
    }
    if failed == 0 { Ok(()) } else { Err(format!("{failed} invalid config file(s)").into()) }
}
