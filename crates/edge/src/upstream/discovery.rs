//! Service discovery for named upstreams: DNS A/AAAA, DNS SRV or a watched file keeps an
//! upstream's endpoint set current at run time, without a restart.
//!
//! Each source runs as one task that resolves, hands a changed endpoint list to the cluster
//! code through a callback, and sleeps: DNS for the records' TTL (clamped between
//! `min_interval` and `max_interval`), a file for `interval`. A failure never empties the
//! set: a failed resolution, a missing file or an empty answer keeps the last good list in use,
//! logs a warning naming the upstream (once per distinct problem, so a dead name server does
//! not flood the log every second) and tries again after `min_interval` / `interval`.
//!
//! All waiting goes through `tokio::time`, so tests drive the file watcher with paused time.

use std::{
    collections::BTreeSet,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use hickory_resolver::{
    TokioResolver,
    config::{LookupIpStrategy, NameServerConfig, ResolverConfig},
    net::{NetError, runtime::TokioRuntimeProvider},
    proto::rr::{Name, RData, Record},
};
use serde::Deserialize;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use crate::config::ConfigError;

/// Where an upstream's endpoints come from besides the static list.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// `host:port` resolved with A/AAAA queries.
    #[serde(default)]
    pub dns: Option<String>,
    /// An SRV name, e.g. `_http._tcp.catalog.internal`.
    #[serde(default)]
    pub srv: Option<String>,
    /// A file with one endpoint per line.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Name server to ask instead of the system's (`/etc/resolv.conf`), e.g. `127.0.0.1:5353`.
    #[serde(default)]
    pub nameserver: Option<SocketAddr>,
    /// Floor of the re-resolution interval (and retry delay after a failure). Default 1s.
    #[serde(default = "default_min_interval", with = "humantime_serde")]
    pub min_interval: Duration,
    /// Ceiling of the re-resolution interval, whatever the TTL. Default 60s.
    #[serde(default = "default_max_interval", with = "humantime_serde")]
    pub max_interval: Duration,
    /// How often the file is polled. Default 1s.
    #[serde(default = "default_interval", with = "humantime_serde")]
    pub interval: Duration,
}

fn default_min_interval() -> Duration {
    Duration::from_secs(1)
}

fn default_max_interval() -> Duration {
    Duration::from_secs(60)
}

fn default_interval() -> Duration {
    Duration::from_secs(1)
}

// === impl DiscoveryConfig ===

/// No source and the documented intervals: set one of `dns`, `srv` or `file` on top.
impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            dns: None,
            srv: None,
            file: None,
            nameserver: None,
            min_interval: default_min_interval(),
            max_interval: default_max_interval(),
            interval: default_interval(),
        }
    }
}

impl DiscoveryConfig {
    /// Exactly one of dns/srv/file must be set; intervals > 0, min <= max; `dns` must be host:port.
    /// `key` is the dotted config key of this table, e.g. `upstreams.catalog.discovery`;
    /// errors are `ConfigError::Invalid { key: format!("{key}.dns"), message }` etc.
    // The cluster code on the lead's branch calls this; until that lands only tests do.
    pub(crate) fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let invalid = |field: &str, message: String| ConfigError::Invalid {
            key: if field.is_empty() { key.to_owned() } else { format!("{key}.{field}") },
            message,
        };
        let sources: Vec<&str> = [
            ("dns", self.dns.is_some()),
            ("srv", self.srv.is_some()),
            ("file", self.file.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, set)| set.then_some(field))
        .collect();
        match sources.as_slice() {
            [] => return Err(invalid("", "set one of `dns`, `srv` or `file`".to_owned())),
            [_] => {}
            [first, second, ..] => {
                return Err(invalid(
                    second,
                    format!(
                        "cannot be combined with `{first}`: set exactly one of `dns`, `srv` or `file`"
                    ),
                ));
            }
        }
        if let Some(dns) = &self.dns {
            parse_host_port(dns).map_err(|message| invalid("dns", message))?;
        }
        if let Some(srv) = &self.srv {
            dns_name(srv).map_err(|message| invalid("srv", message))?;
        }
        if let Some(file) = &self.file {
            if file.as_os_str().is_empty() {
                return Err(invalid("file", "must not be empty".to_owned()));
            }
            if self.nameserver.is_some() {
                return Err(invalid("nameserver", "applies only to `dns` and `srv`".to_owned()));
            }
        }
        for (field, value) in [
            ("min_interval", self.min_interval),
            ("max_interval", self.max_interval),
            ("interval", self.interval),
        ] {
            if value.is_zero() {
                return Err(invalid(field, "must be longer than 0s".to_owned()));
            }
        }
        if self.min_interval > self.max_interval {
            return Err(invalid(
                "min_interval",
                format!(
                    "must not exceed `max_interval` ({:?}), got {:?}",
                    self.max_interval, self.min_interval
                ),
            ));
        }
        Ok(())
    }
}

// === spawn ===

/// Watches the source in a task on the current tokio runtime. Calls `update` with every new,
/// non-empty endpoint list — base URLs `http://ip:port` (IPv6 as `http://[::1]:port`), sorted and
/// de-duplicated — whenever it differs from the last one sent (the first successful resolution is
/// always sent). Stops when `update` returns `false` (the upstream was dropped).
///
/// A file's lines are taken as written (an IP literal is normalised, a host name is kept for the
/// HTTP client to resolve per connection); `https://` lines are skipped like static `https://`
/// endpoints are refused, as upstream calls speak plain HTTP. Aborting the
/// returned handle stops the watcher at once, without waiting for the next change.
pub(crate) fn spawn(
    upstream: String,
    config: DiscoveryConfig,
    update: impl FnMut(Vec<String>) -> bool + Send + 'static,
) -> JoinHandle<()> {
    // `None`: the system's (or hickory's) per-query timeout and attempts stay as configured.
    spawn_with(upstream, config, None, update)
}

/// [`spawn`] with a per-query DNS timeout of its own: tests shorten it so that a name server
/// that stops answering costs a second of wall-clock time, not hickory's 5s per attempt.
fn spawn_with(
    upstream: String,
    config: DiscoveryConfig,
    query_timeout: Option<Duration>,
    update: impl FnMut(Vec<String>) -> bool + Send + 'static,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut sink = Sink { upstream, update, last: None, problem: None };
        if let Some(path) = &config.file {
            watch_file(&mut sink, path, config.interval).await;
        } else if let Some(srv) = &config.srv {
            let query = DnsQuery::Srv(srv.clone());
            watch_dns(&mut sink, &config, &query, query_timeout).await;
        } else if let Some(dns) = &config.dns {
            match parse_host_port(dns) {
                Ok((host, port)) => {
                    let query = DnsQuery::Host { host, port };
                    watch_dns(&mut sink, &config, &query, query_timeout).await;
                }
                Err(message) => {
                    warn!(upstream = %sink.upstream, "discovery `dns = {dns:?}`: {message}");
                }
            }
        } else {
            warn!(upstream = %sink.upstream, "discovery has no source (dns, srv or file)");
        }
    })
}

/// The receiving end of a watcher: remembers what was last sent so that only changes go out,
/// and which problem was last logged so that a lasting one is logged once.
struct Sink<F> {
    upstream: String,
    update: F,
    last: Option<Vec<String>>,
    problem: Option<String>,
}

impl<F: FnMut(Vec<String>) -> bool> Sink<F> {
    /// Hands `endpoints` on if it is non-empty and new. Returns `false` once the upstream is gone.
    fn offer(&mut self, endpoints: Vec<String>) -> bool {
        if endpoints.is_empty() {
            self.problem("the source returned no endpoints".to_owned());
            return true;
        }
        if let Some(problem) = self.problem.take() {
            info!(upstream = %self.upstream, "discovery recovered from: {problem}");
        }
        if self.last.as_ref() == Some(&endpoints) {
            return true;
        }
        debug!(upstream = %self.upstream, ?endpoints, "discovered endpoints");
        if !(self.update)(endpoints.clone()) {
            debug!(upstream = %self.upstream, "upstream dropped; discovery stops");
            return false;
        }
        self.last = Some(endpoints);
        true
    }

    /// Logs a failed round; the last good list stays in use.
    fn problem(&mut self, message: String) {
        if self.problem.as_ref() == Some(&message) {
            debug!(upstream = %self.upstream, "discovery still failing: {message}");
        } else {
            warn!(
                upstream = %self.upstream,
                kept = self.last.as_ref().map_or(0, Vec::len),
                "discovery failed, keeping the last known endpoints: {message}"
            );
            self.problem = Some(message);
        }
    }
}

// === DNS ===

/// What a DNS watcher asks for.
enum DnsQuery {
    /// A/AAAA records of `host`, all on `port`.
    Host { host: String, port: u16 },
    /// SRV records of the name; ports and targets come from the records.
    Srv(String),
}

impl DnsQuery {
    async fn resolve(&self, resolver: &TokioResolver) -> Result<Resolved, String> {
        match self {
            Self::Host { host, port } => resolve_host(resolver, host, *port).await,
            Self::Srv(name) => resolve_srv(resolver, name).await,
        }
    }
}

/// One round's answer: the endpoints and the shortest TTL among the records behind them.
struct Resolved {
    endpoints: BTreeSet<String>,
    ttl: Option<u32>,
}

async fn watch_dns<F: FnMut(Vec<String>) -> bool>(
    sink: &mut Sink<F>,
    config: &DiscoveryConfig,
    query: &DnsQuery,
    query_timeout: Option<Duration>,
) {
    let mut resolver = None;
    loop {
        let delay = match resolve_round(&mut resolver, config, query, query_timeout).await {
            Ok(resolved) if !resolved.endpoints.is_empty() => {
                if !sink.offer(resolved.endpoints.into_iter().collect()) {
                    return;
                }
                next_delay(resolved.ttl, config.min_interval, config.max_interval)
            }
            Ok(_) => {
                sink.problem("DNS returned no addresses".to_owned());
                config.min_interval
            }
            Err(message) => {
                sink.problem(message);
                config.min_interval
            }
        };
        tokio::time::sleep(delay).await;
    }
}

/// Builds the resolver on first use (so an unreadable `/etc/resolv.conf` is retried like any
/// failed lookup) and resolves once, bypassing the resolver's cache.
async fn resolve_round(
    resolver: &mut Option<TokioResolver>,
    config: &DiscoveryConfig,
    query: &DnsQuery,
    query_timeout: Option<Duration>,
) -> Result<Resolved, String> {
    let resolver = match resolver {
        Some(resolver) => resolver,
        None => resolver.insert(
            build_resolver(config.nameserver, query_timeout)
                .map_err(|error| format!("cannot configure the DNS resolver: {error}"))?,
        ),
    };
    // We schedule re-resolution by TTL ourselves, so a cached answer (positive or negative)
    // would only hide a change: every round asks the name server.
    resolver.clear_cache();
    query.resolve(resolver).await
}

fn build_resolver(
    nameserver: Option<SocketAddr>,
    query_timeout: Option<Duration>,
) -> Result<TokioResolver, NetError> {
    let mut builder = match nameserver {
        Some(address) => {
            let mut server = NameServerConfig::udp_and_tcp(address.ip());
            for connection in &mut server.connections {
                connection.port = address.port();
            }
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(vec![server]),
                TokioRuntimeProvider::default(),
            )
        }
        None => TokioResolver::builder_tokio()?,
    };
    let options = builder.options_mut();
    // An upstream may listen on both families: ask for both, keep whichever answers.
    options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    // The cache is cleared every round (see `resolve_round`); it only has to hold one round.
    options.cache_size = 64;
    if let Some(timeout) = query_timeout {
        options.timeout = timeout;
    }
    builder.build()
}

async fn resolve_host(resolver: &TokioResolver, host: &str, port: u16) -> Result<Resolved, String> {
    let lookup = resolver
        .lookup_ip(host)
        .await
        .map_err(|error| format!("cannot resolve `{host}`: {error}"))?;
    Ok(Resolved {
        endpoints: lookup.iter().map(|ip| endpoint(ip, port)).collect(),
        ttl: min_ttl(lookup.as_lookup().answers()),
    })
}

/// SRV records name targets and ports; each target's addresses come from the additional
/// section when the server sent them, else from A/AAAA lookups.
async fn resolve_srv(resolver: &TokioResolver, name: &str) -> Result<Resolved, String> {
    let lookup = resolver
        .srv_lookup(name)
        .await
        .map_err(|error| format!("cannot resolve `{name}`: {error}"))?;
    let mut endpoints = BTreeSet::new();
    let mut ttl = min_ttl(lookup.answers());
    for record in lookup.answers() {
        let RData::SRV(srv) = &record.data else { continue };
        // RFC 2782: a target of "." means the service is decidedly not available there.
        if srv.target.is_root() {
            continue;
        }
        let glue: Vec<&Record> = lookup
            .additionals()
            .iter()
            .filter(|extra| extra.name == srv.target && extra.data.ip_addr().is_some())
            .collect();
        if !glue.is_empty() {
            endpoints.extend(
                glue.iter().filter_map(|r| r.data.ip_addr()).map(|ip| endpoint(ip, srv.port)),
            );
            ttl = shorter(ttl, min_ttl(glue.iter().copied()));
            continue;
        }
        match resolver.lookup_ip(srv.target.clone()).await {
            Ok(ips) => {
                endpoints.extend(ips.iter().map(|ip| endpoint(ip, srv.port)));
                ttl = shorter(ttl, min_ttl(ips.as_lookup().answers()));
            }
            // A target the DNS says does not exist is dropped (the other targets still serve);
            // any other failure may be passing, and must not shrink the set: the round fails.
            Err(error) if error.is_no_records_found() => {
                debug!("SRV target `{}` of `{name}` has no addresses: {error}", srv.target);
            }
            Err(error) => {
                return Err(format!(
                    "cannot resolve `{}` (SRV target of `{name}`): {error}",
                    srv.target
                ));
            }
        }
    }
    Ok(Resolved { endpoints, ttl })
}

/// The shorter of two TTLs, where `None` means "no records, no bound" (unlike `Option::min`,
/// which would pick `None`).
fn shorter(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (one, other) => one.or(other),
    }
}

fn min_ttl<'a>(records: impl IntoIterator<Item = &'a Record>) -> Option<u32> {
    records.into_iter().map(|record| record.ttl).min()
}

/// How long to wait before the next round: the TTL, kept within the configured bounds. No TTL
/// at all (cannot happen with a non-empty answer) is treated like a long one.
fn next_delay(ttl: Option<u32>, min: Duration, max: Duration) -> Duration {
    let ttl = ttl.map_or(max, |seconds| Duration::from_secs(u64::from(seconds)));
    // `max(min).min(max)` rather than `clamp`: it cannot panic on an unvalidated min > max.
    ttl.max(min).min(max)
}

fn endpoint(ip: IpAddr, port: u16) -> String {
    // `SocketAddr`'s display brackets IPv6 addresses, as a URL authority needs.
    format!("http://{}", SocketAddr::new(ip, port))
}

// === file ===

async fn watch_file<F: FnMut(Vec<String>) -> bool>(
    sink: &mut Sink<F>,
    path: &Path,
    interval: Duration,
) {
    // The content of the last read, good or bad: an unchanged file is not parsed (nor its bad
    // lines logged) again. Comparing content rather than mtime alone catches two edits within
    // one mtime tick; the file is a few lines, so reading it every poll costs nothing.
    let mut seen: Option<Vec<u8>> = None;
    loop {
        // Synchronous on purpose: a tiny file, and no `spawn_blocking` whose completion paused
        // time in tests would not wait for.
        match std::fs::read(path) {
            Ok(content) if seen.as_ref() != Some(&content) => {
                let endpoints =
                    parse_file(&sink.upstream, path, &String::from_utf8_lossy(&content));
                if endpoints.is_empty() {
                    sink.problem(format!("{} lists no endpoints", path.display()));
                } else if !sink.offer(endpoints) {
                    return;
                }
                seen = Some(content);
            }
            Ok(_) => {}
            Err(error) => {
                sink.problem(format!("cannot read {}: {error}", path.display()));
                seen = None;
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// One endpoint per line; `#` starts a comment, blank lines are skipped, and a line that is
/// not an endpoint is logged and skipped so that one typo does not discard the rest.
fn parse_file(upstream: &str, path: &Path, text: &str) -> Vec<String> {
    let mut endpoints = BTreeSet::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.split_once('#').map_or(line, |(before, _)| before).trim();
        if line.is_empty() {
            continue;
        }
        match parse_endpoint(line) {
            Ok(endpoint) => {
                endpoints.insert(endpoint);
            }
            Err(message) => {
                warn!(upstream, "{}:{}: skipping `{line}`: {message}", path.display(), index + 1);
            }
        }
    }
    endpoints.into_iter().collect()
}

/// `http://host:port` or `host:port` (taken as http) to a base URL.
fn parse_endpoint(line: &str) -> Result<String, String> {
    // Upstream calls speak plain HTTP (static endpoints are held to the same rule): an
    // `https://` endpoint would only ever fail to connect.
    let (scheme, rest) = if let Some(rest) = line.strip_prefix("http://") {
        ("http", rest)
    } else if line.contains("://") {
        return Err("only http:// endpoints are supported".to_owned());
    } else {
        ("http", line)
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('/') {
        return Err("an endpoint is a base URL without a path".to_owned());
    }
    let (host, port) = parse_host_port(authority)?;
    Ok(match host.parse::<IpAddr>() {
        Ok(ip) => format!("{scheme}://{}", SocketAddr::new(ip, port)),
        Err(_) => format!("{scheme}://{}:{port}", host.to_ascii_lowercase()),
    })
}

// === host:port ===

/// Splits `host:port` (IPv6 as `[addr]:port`); the host is an IP literal or a DNS name.
fn parse_host_port(text: &str) -> Result<(String, u16), String> {
    const EXPECTED: &str = "expected `host:port`";
    if text.contains("://") {
        return Err(format!("{EXPECTED} without a scheme, got `{text}`"));
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (inside, port) = rest
            .split_once("]:")
            .ok_or_else(|| format!("{EXPECTED} (IPv6 as `[addr]:port`), got `{text}`"))?;
        inside.parse::<Ipv6Addr>().map_err(|_| format!("`{inside}` is not an IPv6 address"))?;
        (inside, port)
    } else {
        let (host, port) =
            text.rsplit_once(':').ok_or_else(|| format!("{EXPECTED}, got `{text}` (no port)"))?;
        if host.contains(':') {
            return Err(format!(
                "{EXPECTED}; write an IPv6 address as `[addr]:port`, got `{text}`"
            ));
        }
        if host.parse::<IpAddr>().is_err() {
            dns_name(host)?;
        }
        (host, port)
    };
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| format!("`{port}` is not a port (1-65535) in `{text}`"))?;
    Ok((host.to_owned(), port))
}

/// Checks that `text` is a usable DNS name (the resolver would reject it on every round).
fn dns_name(text: &str) -> Result<Name, String> {
    if text.is_empty() || text.chars().any(char::is_whitespace) {
        return Err(format!("`{text}` is not a DNS name"));
    }
    Name::from_ascii(text).map_err(|error| format!("`{text}` is not a DNS name: {error}"))
}

#[cfg(test)]
mod tests;
