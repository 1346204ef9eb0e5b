//! `portico`: starts the demo stack (`up`, the default), serves one gateway from its config
//! (`serve`), validates configs (`check`) and writes the gateways' OpenAPI documents
//! (`openapi`).

mod cli;
mod openapi;
mod serve;
mod up;

use std::process::ExitCode;

use clap::Parser;

// jemalloc: on the pass-through path it matched mimalloc's throughput while holding ~20 KB per
// idle keep-alive connection where mimalloc held ~30 KB (bench/README.md); glibc malloc was
// ~10 % of the CPU profile. It also keeps fragmentation down in a long-running server.
#[cfg(not(windows))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("portico: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command.unwrap_or_default() {
            Command::Up(args) => up::run(args).await,
            Command::Serve(args) => serve::serve(args).await,
            Command::Proxy(args) => serve::proxy(args).await,
            Command::Check(args) => serve::check(&args),
            Command::Openapi(args) => openapi::run(&args),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("portico: {error}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing(cli: &Cli) {
    use tracing_subscriber::{EnvFilter, fmt};
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&cli.log));
    // Colours only for a person at a terminal: escape codes in a log file are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match cli.log_format {
        cli::LogFormat::Json => builder.json().init(),
        cli::LogFormat::Text => builder.compact().init(),
    }
}
