//! The DNS sources of discovery: A/AAAA records of a `host:port`, or SRV records (with their
//! targets' addresses), asked again when the shortest TTL runs out, clamped between
//! `min_interval` and `max_interval`.

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use hickory_resolver::{
    TokioResolver,
    config::{LookupIpStrategy, NameServerConfig, ResolverConfig},
    net::{NetError, runtime::TokioRuntimeProvider},
    proto::rr::{RData, Record},
};
use tracing::debug;

use super::{DiscoveryConfig, Sink};

/// What a DNS watcher asks for.
pub(super) enum DnsQuery {
    /// A/AAAA records of `host`, all on `port`.
    Host { host: String, port: u16 },
    /// SRV records of the name; ports and targets come from the records.
    Srv(String),
}

// === impl DnsQuery ===

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

pub(super) async fn watch_dns<F: FnMut(Vec<String>) -> bool>(
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
pub(super) fn next_delay(ttl: Option<u32>, min: Duration, max: Duration) -> Duration {
    let ttl = ttl.map_or(max, |seconds| Duration::from_secs(u64::from(seconds)));
    // `max(min).min(max)` rather than `clamp`: it cannot panic on an unvalidated min > max.
    ttl.max(min).min(max)
}

fn endpoint(ip: IpAddr, port: u16) -> String {
    // `SocketAddr`'s display brackets IPv6 addresses, as a URL authority needs.
    format!("http://{}", SocketAddr::new(ip, port))
}
