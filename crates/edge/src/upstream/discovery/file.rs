//! The file source of discovery: a file with one endpoint per line, polled every `interval`
//! and parsed only when its content changed.

use std::{
    collections::BTreeSet,
    net::{IpAddr, SocketAddr},
    path::Path,
    time::Duration,
};

use tracing::warn;

use super::{Sink, parse_host_port};

pub(super) async fn watch_file<F: FnMut(Vec<String>) -> bool>(
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
pub(super) fn parse_file(upstream: &str, path: &Path, text: &str) -> Vec<String> {
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
