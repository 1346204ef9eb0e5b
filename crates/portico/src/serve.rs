//! `portico serve` (one gateway from its config file, as in production), `portico proxy` (a
//! single pass-through gateway) and `portico check` (validate config files without serving).
//!
//! Serving runs one worker per core, each with its own runtime, listener and upstream pools
//! (`portico_edge::server::serve_workers`): the model nginx uses, measured in `bench/`.

use portico::{Error, gateways};
use portico_edge::{GatewayConfig, pipeline::EdgeState};

use crate::cli::{CheckArgs, ProxyArgs, ServeArgs};

pub async fn serve(args: ServeArgs) -> Result<(), Error> {
    let config = GatewayConfig::from_file(&args.config)
        .map_err(|e| format!("{}: {e}", args.config.display()))?;
    // Fail on a bad config here, once, rather than in every worker.
    drop(args.gateway.app(&config)?);
    let gateway = args.gateway;
    tracing::info!(
        "serving the {} gateway on http://{}; Ctrl-C stops it",
        gateway.name(),
        config.listen.public
    );
    // One edge state for the process (the JWKS cache), shared by every worker's gateway.
    let edge = EdgeState::new(&config)?;
    run_workers(gateway.name(), config, args.workers, move |config| gateway.app_in(config, &edge))
        .await
}

pub async fn proxy(args: ProxyArgs) -> Result<(), Error> {
    let extra = match &args.extra_config {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| format!("--extra-config {}: {e}", path.display()))?,
        None => String::new(),
    };
    let config = gateways::proxy_config(args.listen, &args.to, args.timeout, &extra)?;
    // One edge state for the process (JWKS cache, rate limits), shared by every worker.
    let edge = EdgeState::new(&config)?;
    drop(gateways::proxy_app_in(&config, &edge)?);
    tracing::info!("proxying http://{} to {}; Ctrl-C stops it", config.listen.public, args.to);
    run_workers("proxy", config, args.workers, move |config| gateways::proxy_app_in(config, &edge))
        .await
}

/// Serves `make_app(config)` on one worker per core (or `workers`) until Ctrl-C or SIGTERM.
async fn run_workers<F, E>(
    gateway: &'static str,
    config: GatewayConfig,
    workers: Option<usize>,
    make_app: F,
) -> Result<(), Error>
where
    F: Fn(&GatewayConfig) -> Result<portico_edge::stack::Gateway, E> + Send + Sync + 'static,
    E: std::fmt::Display,
{
    let workers = workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        crate::up::ctrl_c().await;
        let _ = stop.send(true);
    });
    let addr = config.listen.public;
    let serving = portico_edge::server::Serving::new(gateway, &config.limits, 1);
    tokio::task::spawn_blocking(move || {
        portico_edge::server::serve_workers(
            addr,
            workers,
            move || make_app(&config),
            &serving,
            &stopped,
        )
    })
    .await??;
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
