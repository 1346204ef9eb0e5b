//! `portico-bench`: the processes the load harnesses (`bench/run`, `bench/regimes`) need
//! besides nginx and the `portico` binary — a JSON backend with a fixed delay, a composed
//! endpoint that fans out to N such backends through exactly the edge stack a gateway uses, and
//! an open-loop load generator that sends each request at its scheduled time.

use std::{net::SocketAddr, process::ExitCode, sync::Arc, time::Duration};

use axum::{Json, Router, extract::State};
use bytes::Bytes;
use clap::{Parser, Subcommand};
use portico_edge::{
    EdgeError, GatewayConfig, Upstreams,
    access::{Access, Routes},
    compose, server, stack,
    upstream::HttpUpstream,
};

#[cfg(target_os = "linux")]
mod load;

// The same allocator as the `portico` binary, so the fan-out numbers are the product's.
#[cfg(not(windows))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Debug, Parser)]
#[command(name = "portico-bench", about = "Processes for Portico's load benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a fixed JSON body on every path after a fixed delay.
    Backend {
        #[arg(long)]
        listen: SocketAddr,
        /// Delay before each answer, e.g. `10ms`.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "0ms")]
        delay: Duration,
        /// Size of the JSON body in bytes.
        #[arg(long, default_value_t = 1024)]
        body_bytes: usize,
    },
    /// Serve `GET /fanout`, which calls every backend in parallel (all required) and answers
    /// when the slowest has.
    Fanout {
        #[arg(long)]
        listen: SocketAddr,
        /// Base URLs of the backends, e.g. `http://127.0.0.1:9101`.
        #[arg(long = "backend", required = true)]
        backends: Vec<String>,
    },
    /// Serve an identity service's JWKS on loopback, write `count` user tokens for audience
    /// `bench` (one per line) to `out`, print the config's `[auth]` section, and serve until
    /// killed (`bench/edge`'s token scenarios).
    Tokens {
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// Send `GET <url>` at a fixed rate, each request at its own due time (open loop), and
    /// print one JSON object: answers by status, errors, latency percentiles in ms counted from
    /// each request's due time, and beside them the generator's own send lateness, the requests
    /// held back for a connection and the time from each send to its answer.
    #[cfg(target_os = "linux")]
    Load {
        /// `http://host:port/path`.
        url: String,
        /// Requests per second.
        #[arg(long)]
        rate: u64,
        /// Keep-alive connections, one request in flight on each.
        #[arg(long, default_value_t = 64)]
        connections: usize,
        /// How long to send for, e.g. `10s`.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
        duration: Duration,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The load generator is its own single-threaded epoll loop: no runtime under it.
    #[cfg(target_os = "linux")]
    if let Command::Load { url, rate, connections, duration } = &cli.command {
        let plan = load::Plan {
            url: url.clone(),
            rate: *rate,
            connections: *connections,
            duration: *duration,
        };
        let printed = load::run(&plan).and_then(|report| {
            use std::io::Write;
            Ok(writeln!(std::io::stdout().lock(), "{}", report.to_json())?)
        });
        return match printed {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("portico-bench load: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("portico-bench: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Backend { listen, delay, body_bytes } => {
                backend(listen, delay, body_bytes).await
            }
            Command::Fanout { listen, backends } => fanout(listen, &backends).await,
            Command::Tokens { count, out } => tokens(count, &out).await,
            #[cfg(target_os = "linux")]
            Command::Load { .. } => Ok(()), // run above, before the runtime
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("portico-bench: {error}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error + Send + Sync>;

async fn tokens(count: usize, out: &std::path::Path) -> Result<(), Error> {
    use std::io::Write;
    let identity = portico_testkit::identity::TestIdentity::start().await;
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    for i in 0..count {
        writeln!(file, "{}", identity.token(&format!("user-{i}"), "bench", "profile"))?;
    }
    file.flush()?;
    let mut stdout = std::io::stdout();
    write!(stdout, "{}", identity.auth_toml("bench", false))?;
    writeln!(stdout, "# ready")?;
    stdout.flush()?;
    std::future::pending::<()>().await;
    Ok(())
}

/// A JSON body of about `bytes` bytes: `{"data":"xxx…"}`.
fn body(bytes: usize) -> Bytes {
    let filler = "x".repeat(bytes.saturating_sub(11));
    Bytes::from(format!("{{\"data\":\"{filler}\"}}"))
}

async fn backend(listen: SocketAddr, delay: Duration, body_bytes: usize) -> Result<(), Error> {
    let body = body(body_bytes);
    let app = Router::new().fallback(move || {
        let body = body.clone();
        async move {
            if !delay.is_zero() {
                // The injected latency under test: a backend that takes this long.
                tokio::time::sleep(delay).await;
            }
            ([("content-type", "application/json")], body)
        }
    });
    let listener = server::bind(listen).await?;
    server::serve(
        listener,
        app,
        server::Serving::with_header_read_timeout(Duration::from_secs(10)),
        std::future::pending(),
    )
    .await;
    Ok(())
}

async fn fanout(listen: SocketAddr, backends: &[String]) -> Result<(), Error> {
    let mut text = format!("[listen]\npublic = \"{listen}\"\n");
    for (i, url) in backends.iter().enumerate() {
        text.push_str(&format!("[upstreams.b{i}]\nendpoints = [{url:?}]\ntimeout = \"1s\"\n"));
    }
    let config = GatewayConfig::from_toml(&text)?;
    let upstreams = Upstreams::from_config(&config)?;
    let parts: Vec<HttpUpstream> = (0..backends.len())
        .map(|i| upstreams.require_http(&format!("b{i}")))
        .collect::<Result<_, _>>()?;
    let routes =
        Routes::new().get("/fanout", Access::public(), compose_all).with_state(Arc::new(parts));
    let app = stack::gateway("fanout", routes, &config, &upstreams)?;
    let listener = server::bind(listen).await?;
    server::serve(
        listener,
        app,
        server::Serving::new("bench", &config.limits, 1),
        std::future::pending(),
    )
    .await;
    Ok(())
}

/// Every backend in parallel, each required: latency should be the slowest call, not the sum.
async fn compose_all(
    State(parts): State<Arc<Vec<HttpUpstream>>>,
) -> Result<Json<serde_json::Value>, EdgeError> {
    let calls =
        parts.iter().map(|up| compose::required("part", up.get("/").fetch::<serde_json::Value>()));
    let bodies = futures::future::try_join_all(calls).await?;
    Ok(Json(serde_json::json!({ "parts": bodies.len() })))
}
