//! The router transport's side of the pipeline: hyper has parsed the request (HTTP/1.1 or
//! HTTP/2); the pipeline runs before axum routes it, so routing sees the normalised path and
//! no handler runs for a refused request.

use std::{
    convert::Infallible,
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use axum::{
    Router,
    body::Body,
    extract::{ConnectInfo, Request},
    response::{IntoResponse, Response},
};
use http::{HeaderName, Uri, uri::PathAndQuery};
use tower::ServiceExt;
use tracing::Instrument;

use super::{Admitted, Head, Headers, Outbound, Peer, Pipeline, Route, Verdict};
use crate::{json::MaxDepth, limits, request_id};

/// The router behind the pipeline, as a service: what `Gateway::router` returns inside a
/// `Router`, and what the server runs for every connection the relay does not keep.
#[derive(Clone, Debug)]
pub(crate) struct Front {
    pub(crate) pipeline: Arc<Pipeline>,
    pub(crate) inner: Router,
}

impl Front {
    /// Serves one request from `peer` through the pipeline and the router.
    pub(crate) async fn serve(self, request: Request, peer: &Peer) -> Response {
        let Self { pipeline, inner } = self;
        let started = std::time::Instant::now();
        // The deadline counts from the head (hyper hands the request over once it is read).
        let deadline = tokio::time::Instant::now() + pipeline.limits.request_timeout;
        let (mut parts, body) = request.into_parts();
        let uri = &parts.uri;
        let head = Head {
            method: &parts.method,
            path: uri.path(),
            query: uri.query(),
            target_len: uri.path_and_query().map_or(1, |p| p.as_str().len()),
            version: parts.version,
            authority: uri.authority().map(http::uri::Authority::as_str),
            headers: Headers::Map(&parts.headers),
            peer,
            scheme: "http",
        };
        let inspection = pipeline.inspect(&head);
        let mut outbound = Outbound::new(inspection.id, &parts.method, uri.path(), peer, started);
        let verdict = match inspection.verdict {
            Err(error) => Verdict::Refuse(error),
            Ok(inspected) => {
                let span = outbound.span().clone();
                let verdict = pipeline.admit(&inspected, &mut outbound).instrument(span).await;
                match verdict {
                    Verdict::Admit(admitted) => {
                        let path = match inspected.path {
                            std::borrow::Cow::Owned(path) => Some(path),
                            std::borrow::Cow::Borrowed(_) => None,
                        };
                        let (pass, cache) = match inspected.route {
                            Route::Pass(route) => (
                                Some(route.clone()),
                                route.access.as_ref().and_then(|a| a.cache()).cloned(),
                            ),
                            Route::Router(rule) => (None, rule.and_then(|a| a.cache()).cloned()),
                            Route::OtherMethod => (None, None),
                        };
                        let underscores = inspected.facts.underscores > 0;
                        Verdict::Admit((admitted, path, pass, underscores, cache))
                    }
                    Verdict::Refuse(error) => Verdict::Refuse(error),
                    Verdict::Answer(response) => Verdict::Answer(response),
                }
            }
        };
        let (admitted, path, pass, underscores, cache) = match verdict {
            Verdict::Admit(admitted) => admitted,
            Verdict::Refuse(error) => return finish(outbound, error.into_response()),
            Verdict::Answer(response) => return finish(outbound, response),
        };

        // Hygiene applied: the normalised path, no forged identity, no `_` names.
        if let Some(path) = path {
            parts.uri = with_path(&parts.uri, &path);
        }
        crate::access::strip_identity_headers(&mut parts.headers);
        if underscores {
            let names: Vec<HeaderName> =
                parts.headers.keys().filter(|n| n.as_str().contains('_')).cloned().collect();
            for name in names {
                parts.headers.remove(name);
            }
        }
        let principal = admitted.principal.clone();
        if let Some(principal) = &principal {
            parts.extensions.insert(principal.clone());
            // For handlers that report the caller's plan (`ratelimit::PlanUsage`).
            parts.extensions.insert(pipeline.limiter.clone());
        }
        if !matches!(parts.method, http::Method::GET | http::Method::HEAD) {
            parts.extensions.insert(MaxDepth(pipeline.limits.max_json_depth));
        }
        if let Some(route) = pass {
            parts.extensions.insert(Forwarding { route, admitted, id: outbound.id().clone() });
        }
        // A GET or HEAD on a cached route goes through the cache step (WebSocket upgrades and
        // requests with a body never do).
        let cache = cache.filter(|_| {
            matches!(parts.method, http::Method::GET | http::Method::HEAD)
                && !parts.headers.contains_key(http::header::UPGRADE)
                && http_body::Body::size_hint(&body).exact() == Some(0)
        });
        let work = match cache {
            None => {
                let limit = usize::try_from(pipeline.limits.max_body_bytes).unwrap_or(usize::MAX);
                let request = Request::from_parts(
                    parts,
                    Body::new(http_body_util::Limited::new(body, limit)),
                );
                let work = futures::FutureExt::map(inner.oneshot(request), |served| match served {
                    Ok(response) => response,
                    Err(infallible) => match infallible {},
                });
                futures::future::Either::Left(crate::access::within(principal, work))
            }
            Some(policy) => {
                // A fresh hit in this process is answered at once: no fetch to wrap or time.
                let key = match pipeline.cache.hit(&policy, &parts, principal.as_deref()) {
                    Ok(hit) => return finish(outbound, hit),
                    Err(key) => key,
                };
                let fetcher = crate::cache::Fetcher { router: inner, principal: principal.clone() };
                let cache = pipeline.cache.clone();
                let served = cache.serve(policy, key, parts, principal, deadline, fetcher);
                futures::future::Either::Right(Box::pin(served))
            }
        };
        let work = crate::deadline::within(deadline, work);
        let work = limits::with_deadline(pipeline.limits.request_timeout, work);
        let work =
            request_id::scope(outbound.id().clone(), work).instrument(outbound.span().clone());
        let mut response = crate::rescue::normalise(work.await).await;
        // Purge tags are the cache's; a handler's never reach a client.
        response.headers_mut().remove(crate::cache::TAG_HEADER);
        finish(outbound, response)
    }
}

/// What a pass-through handler on the router needs from the pipeline.
#[derive(Clone, Debug)]
pub(crate) struct Forwarding {
    pub(crate) route: Arc<super::PassRoute>,
    pub(crate) admitted: Admitted,
    pub(crate) id: request_id::RequestId,
}

fn finish(outbound: Outbound, mut response: Response) -> Response {
    outbound.render_map(response.headers_mut());
    outbound.finish(response.status().as_u16());
    response
}

/// `uri` with its path replaced by `path` (the query kept).
fn with_path(uri: &Uri, path: &str) -> Uri {
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = PathAndQuery::try_from(path_and_query).ok();
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

impl tower::Service<Request> for Front {
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // In-process calls (tests, `oneshot`) carry the peer the server recorded, if any.
        let peer = request
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(Peer::unknown, |ConnectInfo(addr)| {
                self.pipeline.peer(addr.ip()).in_process()
            });
        let front = self.clone();
        Box::pin(async move { Ok(front.serve(request, &peer).await) })
    }
}

#[cfg(test)]
mod tests {
    use tower::ServiceExt;

    /// The request's future is moved (copied) at every box and wrapper; `async fn` wrappers
    /// that each stored it twice once made it 13 KB — half of a router request's instructions.
    #[tokio::test]
    async fn a_router_requests_future_stays_small() {
        let config = crate::GatewayConfig::from_toml("").unwrap();
        let upstreams = crate::Upstreams::from_config(&config).unwrap();
        let routes = crate::access::Routes::new();
        let app = crate::stack::gateway("size", routes, &config, &upstreams).unwrap();
        let front = app.front().unwrap();
        let peer = front.pipeline.peer(std::net::IpAddr::from([127, 0, 0, 1]));
        let request = http::Request::get("/healthz").body(axum::body::Body::empty()).unwrap();
        let serve = front.clone().serve(request, &peer);
        assert!(size_of_val(&serve) <= 4096, "{} bytes", size_of_val(&serve));
        drop(serve);
        let request = http::Request::get("/healthz").body(axum::body::Body::empty()).unwrap();
        assert_eq!(front.inner.oneshot(request).await.unwrap().status(), 200);
    }
}
