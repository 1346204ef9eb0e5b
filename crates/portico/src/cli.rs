//! The command line: every flag documented, every default shown in `--help`.

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};
use portico::gateways::Gateway;
use portico_services::faults::{Faults, ParseFaultError, ServiceName};

#[derive(Debug, Parser)]
#[command(
    name = "portico",
    version,
    about = "Portico: API gateways / Backends-for-Frontends for mobile, web and partner clients"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Log filter (`RUST_LOG` syntax; the RUST_LOG variable wins when set).
    #[arg(long, global = true, default_value = "info,hyper=warn,h2=warn,tower=warn")]
    pub log: String,
    /// Log format: human-readable text or one JSON object per line (the access log's too).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Where the access log (one line per request) goes: `stderr`, `off`, or a file appended to.
    /// Written by a thread of its own: a slow disk drops lines (counted), never stalls requests.
    #[arg(long, global = true, default_value = "stderr")]
    pub access_log: String,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start the whole demo stack in one process: the six sample services and the three
    /// gateways (the default command).
    Up(UpArgs),
    /// Serve one gateway from its TOML config file.
    Serve(ServeArgs),
    /// Run a single pass-through gateway to one backend, through the same request path and
    /// edge layers as a gateway's declarative route (like `caddy reverse-proxy`).
    Proxy(ProxyArgs),
    /// Validate gateway config files and exit.
    Check(CheckArgs),
    /// Write (or check) the gateways' OpenAPI documents.
    Openapi(OpenapiArgs),
    /// Print a JWT from the running stack's identity service, for `Authorization: Bearer`.
    Token(TokenArgs),
    /// Create a partner API key: prints the key once, and the config entry holding its hash.
    Key(KeyArgs),
}

impl Default for Command {
    fn default() -> Self {
        Self::Up(UpArgs::default())
    }
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Address the three gateways listen on (use 0.0.0.0 to accept other machines).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port of the mobile gateway.
    #[arg(long, default_value_t = 8081)]
    pub mobile_port: u16,
    /// Port of the web gateway.
    #[arg(long, default_value_t = 8082)]
    pub web_port: u16,
    /// Port of the partner gateway.
    #[arg(long, default_value_t = 8083)]
    pub partner_port: u16,
    /// First port of the six sample services (catalog, reviews, recommendations, inventory,
    /// orders, identity use it and the next five); 0 picks free ports. They listen on 127.0.0.1.
    #[arg(long, default_value_t = 7001)]
    pub services_port: u16,
    /// Inject faults into a sample service, to watch the gateways degrade; repeatable, one
    /// service per flag.
    ///
    /// SERVICE is catalog, reviews, recommendations, inventory, orders or identity. SPEC is
    /// `latency:DURATION` (added to every call, e.g. latency:300ms), `errors:N%` (that share of
    /// calls answered 503 problem+json, or UNAVAILABLE for the gRPC inventory; the same calls
    /// fail on every run), `down` (connections refused) or `hang` (connections accepted, never
    /// answered). Examples: `--fault recommendations=latency:300ms,errors:50%`,
    /// `--fault reviews=down --fault inventory=latency:200ms`.
    #[arg(long = "fault", value_name = "SERVICE=SPEC[,SPEC...]", value_parser = parse_fault)]
    pub faults: Vec<(ServiceName, Faults)>,
    /// Keep the partner plans' counts, the routes' rate limits and the cached pages in this Redis
    /// (e.g. `redis://127.0.0.1:6379`), shared by every replica started with the same URL;
    /// without it they live in this process.
    #[arg(long, value_name = "URL")]
    pub redis: Option<String>,
}

impl Default for UpArgs {
    fn default() -> Self {
        // The same values as the clap defaults above, for `portico` run without a command.
        Self::parse_from(["up"])
    }
}

impl UpArgs {
    fn parse_from<'a>(args: impl IntoIterator<Item = &'a str>) -> Self {
        #[derive(Parser)]
        struct Wrapper {
            #[command(flatten)]
            args: UpArgs,
        }
        Wrapper::try_parse_from(args).map(|w| w.args).unwrap_or_else(|e| e.exit())
    }
}

fn parse_fault(s: &str) -> Result<(ServiceName, Faults), ParseFaultError> {
    portico_services::faults::parse_fault(s)
}

impl UpArgs {
    /// The `--fault` flags by service; a service named twice is a usage error.
    pub fn faults(&self) -> Result<BTreeMap<ServiceName, Faults>, ParseFaultError> {
        portico_services::faults::collect_faults(self.faults.iter().copied())
    }
}

impl Cli {
    /// Parses the command line, exiting with clap's usage error for what the value parsers
    /// cannot see alone (a service given two `--fault` flags).
    pub fn parse_checked() -> Self {
        Self::check(Self::parse()).unwrap_or_else(|e| e.exit())
    }

    fn check(cli: Self) -> Result<Self, clap::Error> {
        if let Some(Command::Up(args)) = &cli.command
            && let Err(e) = args.faults()
        {
            let mut command = <Self as clap::CommandFactory>::command();
            // Built, so the usage line the error prints is `portico up …`, not the top level's.
            command.build();
            let mut up = command.find_subcommand("up").cloned().unwrap_or(command);
            return Err(up.error(clap::error::ErrorKind::ArgumentConflict, e));
        }
        Ok(cli)
    }
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Which gateway to serve.
    #[arg(long, value_enum)]
    pub gateway: Gateway,
    /// Its config file (see shared/config/ for examples).
    #[arg(long)]
    pub config: PathBuf,
    /// Worker threads, each with its own listener, runtime and upstream pool (default: one
    /// per available core).
    #[arg(long)]
    pub workers: Option<usize>,
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// The backend's base URL, e.g. `http://127.0.0.1:9000`.
    #[arg(long)]
    pub to: String,
    /// Deadline for the backend's response head.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    pub timeout: Duration,
    /// More of the gateway's TOML, added to the generated config: `[auth]`, `[plans]`,
    /// `[rate_limits]`, `[redis]`, `[limits]` (e.g. to measure the full edge in `bench/edge`).
    #[arg(long, value_name = "FILE")]
    pub extra_config: Option<PathBuf>,
    /// Worker threads, each with its own listener, runtime and upstream pool (default: one
    /// per available core).
    #[arg(long)]
    pub workers: Option<usize>,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Which gateway the files configure.
    #[arg(long, value_enum)]
    pub gateway: Gateway,
    /// Config files to validate.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Args)]
pub struct OpenapiArgs {
    /// Directory to write mobile.json, web.json and partner.json into.
    #[arg(long, default_value = "openapi")]
    pub out: PathBuf,
    /// Do not write: fail if the files differ from what the gateways serve.
    #[arg(long)]
    pub check: bool,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(subcommand)]
    pub kind: TokenKind,
    /// Base URL of the identity service (the demo stack's by default).
    #[arg(long, global = true, default_value = portico::credentials::DEMO_IDENTITY)]
    pub identity: String,
}

#[derive(Debug, Subcommand)]
pub enum TokenKind {
    /// A user's token (demo users: alice, bob) for one gateway.
    User {
        /// The user.
        name: String,
        /// The gateway the token is for: it is refused by the others.
        #[arg(long, value_enum)]
        audience: Audience,
    },
    /// A partner's OAuth2 client-credentials token (demo partners: acme, globex).
    Partner {
        /// The partner's client id.
        id: String,
        /// The client secret (default: the demo partner's).
        #[arg(long)]
        secret: Option<String>,
        /// Space-separated scopes to ask for (default: all the partner may have).
        #[arg(long)]
        scope: Option<String>,
    },
}

/// The gateways a user token can be for.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Audience {
    Mobile,
    Web,
}

impl Audience {
    pub fn name(self) -> &'static str {
        match self {
            Self::Mobile => "mobile",
            Self::Web => "web",
        }
    }
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// A new random key; add the printed entry to the partner gateway's config.
    New {
        /// A name for the key in logs and metrics, e.g. `acme-2026-12`.
        #[arg(long)]
        id: String,
        /// The partner the key belongs to.
        #[arg(long)]
        partner: String,
        /// The partner's plan.
        #[arg(long, default_value = "basic")]
        plan: String,
        /// Scopes the key grants.
        #[arg(long, value_delimiter = ',', default_values_t = ["catalog:read".to_owned(), "stock:read".to_owned()])]
        scopes: Vec<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_without_a_command_means_up_with_the_documented_ports() {
        let cli = Cli::try_parse_from(["portico"]).unwrap();
        assert!(cli.command.is_none());
        let Command::Up(args) = Command::default() else { panic!("default is up") };
        assert_eq!((args.mobile_port, args.web_port, args.partner_port), (8081, 8082, 8083));
        assert_eq!(args.services_port, 7001);
    }

    #[test]
    fn token_commands_parse() {
        let cli = Cli::try_parse_from(["portico", "token", "user", "alice", "--audience", "web"])
            .unwrap();
        let Some(Command::Token(args)) = cli.command else { panic!("token") };
        assert!(
            matches!(args.kind, TokenKind::User { ref name, audience: Audience::Web } if name == "alice")
        );
        assert_eq!(args.identity, "http://127.0.0.1:7006");
        assert!(
            Cli::try_parse_from(["portico", "token", "user", "alice", "--audience", "partner"])
                .is_err()
        );
        let cli = Cli::try_parse_from(["portico", "token", "partner", "acme"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Token(TokenArgs { kind: TokenKind::Partner { .. }, .. }))
        ));
    }

    use portico_services::faults::Outage;

    fn up(args: &[&str]) -> Result<UpArgs, clap::Error> {
        let argv = ["portico", "up"].iter().chain(args).copied();
        let cli = Cli::try_parse_from(argv).and_then(Cli::check)?;
        let Some(Command::Up(args)) = cli.command else { panic!("up") };
        Ok(args)
    }

    #[test]
    fn fault_flags_parse() {
        let args = up(&["--fault", "recommendations=latency:300ms,errors:50%"]).unwrap();
        let faults = args.faults().unwrap();
        assert_eq!(faults.len(), 1);
        let recommendations = faults[&ServiceName::Recommendations];
        assert_eq!(recommendations.latency, Duration::from_millis(300));
        assert_eq!(recommendations.error_rate, 0.5);

        let args = up(&["--fault", "reviews=down", "--fault", "inventory=latency:200ms"]).unwrap();
        let faults = args.faults().unwrap();
        assert_eq!(faults[&ServiceName::Reviews].outage, Some(Outage::Down));
        assert_eq!(faults[&ServiceName::Inventory].latency, Duration::from_millis(200));
        assert!(up(&[]).unwrap().faults().unwrap().is_empty());
    }

    #[test]
    fn bad_fault_flags_are_usage_errors_that_say_what_is_allowed() {
        for (args, expected) in [
            (&["--fault", "recommendations=latency:fast"][..], "`fast` is not a duration"),
            (&["--fault", "recommendations=errors:200%"], "`200%` is not a percentage"),
            (&["--fault", "payments=down"], "unknown service `payments`"),
            (&["--fault", "reviews=down", "--fault", "reviews=hang"], "`reviews` given twice"),
        ] {
            let error = up(args).expect_err("refused");
            assert!(
                matches!(
                    error.kind(),
                    clap::error::ErrorKind::ValueValidation
                        | clap::error::ErrorKind::ArgumentConflict
                ),
                "{args:?}: {:?}",
                error.kind()
            );
            let message = error.to_string();
            assert!(message.contains(expected), "{args:?}: {message}");
        }
        let message = up(&["--fault", "recommendations=slow"]).expect_err("refused").to_string();
        assert!(message.contains("--fault"), "{message}");
        assert!(message.contains("allowed: latency:DURATION"), "{message}");
        // The old flags are gone, not silently ignored.
        assert!(up(&["--recommendations-latency", "2s"]).is_err());
    }
}
