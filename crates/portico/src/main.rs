//! `portico`: starts the demo stack (`up`, the default), serves one gateway from its config
//! (`serve`), validates configs (`check`), writes the gateways' OpenAPI documents (`openapi`),
//! prints tokens from the identity service (`token`) and creates partner API keys (`key`).

mod cli;
mod openapi;
mod serve;
mod up;

use std::{io::Write, process::ExitCode};

// jemalloc: on the pass-through path it matched mimalloc's throughput while holding ~20 KB per
// idle keep-alive connection where mimalloc held ~30 KB (bench/README.md); glibc malloc was
// ~10 % of the CPU profile. It also keeps fragmentation down in a long-running server.
#[cfg(not(windows))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse_checked();
    init_tracing(&cli);
    if let Err(error) = init_access_log(&cli) {
        eprintln!("portico: {error}");
        return ExitCode::FAILURE;
    }
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
            Command::Token(args) => token(args).await,
            Command::Key(args) => key(args),
        }
    });
    // The last requests' lines, before the process goes.
    portico_edge::access_log::flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("portico: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `portico token`: the raw JWT on stdout, nothing else, so `$(portico token …)` works.
async fn token(args: cli::TokenArgs) -> Result<(), portico::Error> {
    use portico::credentials::{partner_token, user_token};
    let token = match args.kind {
        cli::TokenKind::User { name, audience } => {
            user_token(&args.identity, &name, audience.name()).await?
        }
        cli::TokenKind::Partner { id, secret, scope } => {
            partner_token(&args.identity, &id, secret.as_deref(), scope.as_deref()).await?
        }
    };
    writeln!(std::io::stdout(), "{token}")?;
    Ok(())
}

/// `portico key new`: the key on stdout's first line (shown once, stored nowhere), then the
/// config entry that admits it by hash.
fn key(args: cli::KeyArgs) -> Result<(), portico::Error> {
    let cli::KeyCommand::New { id, partner, plan, scopes } = args.command;
    let (key, entry) = portico::credentials::new_api_key(&id, &partner, &plan, &scopes);
    let mut out = std::io::stdout().lock();
    writeln!(out, "{key}")?;
    // The key first, then the advice: flushed so a terminal shows them in that order.
    out.flush()?;
    eprintln!(
        "\n# Give the key above to {partner} once; add this to the partner gateway's config:\n"
    );
    writeln!(out, "{entry}")?;
    Ok(())
}

/// Installs the access log `--access-log` names (none for `off`).
fn init_access_log(cli: &Cli) -> Result<(), String> {
    use portico_edge::access_log::{Format, install};
    let format = match cli.log_format {
        cli::LogFormat::Json => Format::Json,
        cli::LogFormat::Text => Format::Text,
    };
    let out: Box<dyn Write + Send> = match cli.access_log.as_str() {
        "off" => return Ok(()),
        "stderr" => Box::new(std::io::stderr()),
        path => Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("--access-log {path}: {e}"))?,
        ),
    };
    install(out, format);
    Ok(())
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
