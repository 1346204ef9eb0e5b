//! Declarative pass-through routes: requests under a configured path prefix are forwarded to a
//! named upstream with the prefix rewritten, bodies streamed both ways without buffering,
//! hop-by-hop headers dropped and `X-Forwarded-*` set from the real peer.
//!
//! The gateway is the edge, so incoming `X-Forwarded-*` headers are replaced rather than
//! appended to: a client must not be able to claim another address.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    body::Body,
    extract::{ConnectInfo, Request, State},
    response::{IntoResponse, Response},
    routing::any,
};
use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::{
    access::{self, Access, Routes},
    config::{ConfigError, GatewayConfig},
    deadline,
    error::EdgeError,
    upstream::{
        HttpUpstream, Upstreams, client_error,
        cluster::{AttemptError, Call, Endpoint},
    },
};

/// Marks a response that came from an upstream verbatim, so the problem normaliser leaves its
/// error bodies alone: a pass-through route passes the upstream's errors through.
#[derive(Clone, Copy, Debug)]
pub struct Passthrough;

/// Builds the routes of every configured pass-through route, each with the access its config
/// declares; a route that declares none admits nobody.
pub fn routes(config: &GatewayConfig, upstreams: &Upstreams) -> Result<Routes, ConfigError> {
    let mut router = Routes::new();
    for (i, route) in config.routes.iter().enumerate() {
        let upstream = upstreams.http(&route.upstream).map_err(|_| ConfigError::Invalid {
            key: format!("routes[{i}].upstream"),
            message: format!("no http upstream named `{}`", route.upstream),
        })?;
        let prefix = route.path.trim_end_matches('/').to_owned();
        let target = Arc::new(Target {
            timeout: route.timeout.unwrap_or_else(|| upstream.timeout()),
            upstream: upstream.clone(),
            rewrite: route.rewrite.clone(),
            prefix: prefix.clone(),
        });
        let [exact, below] = patterns(&prefix);
        let access = route.access.as_deref().and_then(|a| Access::from_config(a, &route.scopes));
        match access {
            Some(access) => {
                router = router
                    .any(&exact, access.clone(), any(forward).with_state(target.clone()))
                    .any(&below, access, any(forward).with_state(target));
            }
            None => {
                tracing::warn!(path = %route.path, "route declares no access: it refuses every request");
                router = router
                    .undeclared(&exact, any(forward).with_state(target.clone()))
                    .undeclared(&below, any(forward).with_state(target));
            }
        }
    }
    Ok(router)
}

static API_KEY: HeaderName = HeaderName::from_static("x-api-key");

#[derive(Debug)]
struct Target {
    prefix: String,
    rewrite: Option<String>,
    upstream: HttpUpstream,
    timeout: Duration,
}

/// The router patterns of a pass-through route with `prefix` (no trailing slash): the prefix
/// itself and everything below it.
pub(crate) fn patterns(prefix: &str) -> [String; 2] {
    let exact = if prefix.is_empty() { "/".to_owned() } else { prefix.to_owned() };
    [exact, format!("{prefix}/{{*rest}}")]
}

/// Appends the upstream path and query for an incoming `path` and `query` to `out`: the
/// route's `prefix` replaced by `rewrite`, or the path unchanged without one.
pub(crate) fn push_upstream_path(
    out: &mut Vec<u8>,
    prefix: &str,
    rewrite: Option<&str>,
    path: &str,
    query: Option<&str>,
) {
    let start = out.len();
    match rewrite {
        None => out.extend_from_slice(path.as_bytes()),
        Some(rewrite) => {
            let rest = path.strip_prefix(prefix).unwrap_or(path);
            out.extend_from_slice(rewrite.as_bytes());
            match (rewrite.ends_with('/'), rest.starts_with('/')) {
                (true, true) => out.extend_from_slice(&rest.as_bytes()[1..]),
                (false, false) if !rest.is_empty() => {
                    out.push(b'/');
                    out.extend_from_slice(rest.as_bytes());
                }
                _ => out.extend_from_slice(rest.as_bytes()),
            }
        }
    }
    if out.len() == start {
        out.push(b'/');
    }
    if let Some(query) = query {
        out.push(b'?');
        out.extend_from_slice(query.as_bytes());
    }
}

async fn forward(State(target): State<Arc<Target>>, request: Request) -> Response {
    match forward_inner(&target, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn forward_inner(target: &Target, request: Request) -> Result<Response, EdgeError> {
    let peer = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let (parts, body) = request.into_parts();
    let name = target.upstream.name();
    let uri = &parts.uri;

    let mut headers = parts.headers;
    let host = headers.remove(header::HOST);
    strip_hop_by_hop(&mut headers);
    set_forwarded(&mut headers, peer, host);
    // The edge verified the key; it is a partner's secret and never leaves the gateway.
    // (Bearer tokens stay: they are short-lived and bound to this gateway's audience.)
    headers.remove(&API_KEY);
    if let Some(caller) = access::caller() {
        for (name, value) in access::identity_headers(&caller) {
            headers.insert(name.clone(), value);
        }
    }

    // Only a request without a body can be sent twice: a streamed body is read once.
    let bodiless = http_body::Body::size_hint(&body).exact() == Some(0);
    let idempotent = parts.method.is_idempotent() && bodiless;
    let call = Call {
        idempotent,
        read: idempotent
            && (parts.method == http::Method::GET || parts.method == http::Method::HEAD),
        key: uri.path(),
        deadline: deadline::for_call(target.timeout),
    };
    let mut body = Some(body);
    let method = parts.method;
    let client = target.upstream.client();
    let attempt = |endpoint: &Arc<Endpoint>, deadline: tokio::time::Instant| {
        // The upstream URL in one allocation: the endpoint, then the rewritten path.
        let mut url = Vec::with_capacity(endpoint.url().len() + uri.path().len() + 64);
        url.extend_from_slice(endpoint.url().as_bytes());
        let (prefix, rewrite) = (&target.prefix, target.rewrite.as_deref());
        push_upstream_path(&mut url, prefix, rewrite, uri.path(), uri.query());
        let uri = http::Uri::from_maybe_shared(bytes::Bytes::from(url));
        let mut request = http::Request::new(body.take().unwrap_or_else(Body::empty));
        *request.method_mut() = method.clone();
        // Only a call that may be repeated needs its headers kept for the next attempt.
        *request.headers_mut() =
            if idempotent { headers.clone() } else { std::mem::take(&mut headers) };
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        request.headers_mut().insert(deadline::HEADER, deadline::header_value(remaining));
        let sent = uri.map(|uri| {
            *request.uri_mut() = uri;
            client.request(request)
        });
        async move {
            let Ok(sent) = sent else {
                let error = EdgeError::bad_request("the path cannot be forwarded");
                return Err(AttemptError { failure: None, error });
            };
            sent.await.map_err(|e| {
                if is_body_too_large(&e) {
                    let error = EdgeError::from_status(
                        http::StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                    )
                    .with_detail("the request body exceeds the configured limit");
                    AttemptError { failure: None, error }
                } else {
                    client_error(name, e)
                }
            })
        }
    };
    let span = tracing::info_span!("upstream", upstream = %name, route = %target.prefix);
    let mut response =
        tracing::Instrument::instrument(target.upstream.cluster().call(call, attempt), span)
            .await?;

    strip_hop_by_hop(response.headers_mut());
    // Only error responses need the mark (the normaliser looks at nothing else), and inserting
    // the first extension allocates: successes, the hot path, go without.
    if response.status().is_client_error() || response.status().is_server_error() {
        response.extensions_mut().insert(Passthrough);
    }
    Ok(response.map(Body::new))
}

/// Whether a send failed because the client's body ran past the gateway's size limit.
fn is_body_too_large(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

/// Headers that describe one connection, not the message, and so must not be forwarded
/// (RFC 9110 §7.6.1), plus any the `Connection` header names.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Removes hop-by-hop headers.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in named.iter().chain(&HOP_BY_HOP) {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

fn set_forwarded(headers: &mut HeaderMap, peer: Option<SocketAddr>, host: Option<HeaderValue>) {
    headers.remove(HeaderName::from_static("forwarded"));
    match peer.and_then(|p| HeaderValue::from_str(&p.ip().to_string()).ok()) {
        Some(ip) => headers.insert("x-forwarded-for", ip),
        None => headers.remove("x-forwarded-for"),
    };
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    match host {
        Some(host) => headers.insert("x-forwarded-host", host),
        None => headers.remove("x-forwarded-host"),
    };
}

#[cfg(test)]
mod tests;
