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
//!
//! This module holds the configuration, the watcher task and the `Sink` that keeps the last
//! good list; the sources live in `dns` (A/AAAA and SRV, re-resolved by TTL) and `file` (a
//! polled endpoint list).

mod dns;
mod file;

use std::{
    net::{IpAddr, Ipv6Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use hickory_resolver::proto::rr::Name;
use serde::Deserialize;
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

use self::{
    dns::{DnsQuery, watch_dns},
    file::watch_file,
};
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

// === impl Sink ===

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
