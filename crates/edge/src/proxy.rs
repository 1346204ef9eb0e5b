//! Pass-through routes on the router transport (HTTP/2 clients, chunked or `Expect` uploads,
//! HTTP/1.0, and gateways whose router is wrapped): the request as the pipeline admitted it,
//! its headers rendered by the forwarding policy, the body streamed both ways without
//! buffering, every attempt through the upstream's `Cluster::call`.
//!
//! The pass-through route itself (prefix, rewrite, access, upstream) is the pipeline's
//! [`PassRoute`](crate::pipeline::PassRoute), built once and shared with the relay.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    task::{Context, Poll},
};

use axum::{
    Router,
    body::Body,
    extract::Request,
    response::{IntoResponse, Response},
    routing::any,
};
use bytes::Bytes;

use crate::{
    deadline,
    error::EdgeError,
    pipeline::{PassRoute, drop_unforwarded_response, router::Forwarding},
    upstream::{
        client_error,
        cluster::{AttemptError, Call, Endpoint},
    },
};

/// Marks a response that came from an upstream verbatim, so the problem normaliser leaves its
/// error bodies alone: a pass-through route passes the upstream's errors through.
#[derive(Clone, Copy, Debug)]
pub struct Passthrough;

/// The router's routes of every pass-through route. They need no state: the pipeline hands
/// each admitted request its route.
pub(crate) fn router(routes: &[Arc<PassRoute>]) -> Router {
    routes
        .iter()
        .flat_map(|route| route.patterns())
        .fold(Router::new(), |router, pattern| router.route(&pattern, any(forward)))
}

async fn forward(mut request: Request) -> Response {
    let Some(forwarding) = request.extensions_mut().remove::<Forwarding>() else {
        // Only the pipeline routes requests here; anything else is a wiring bug.
        return EdgeError::internal("a pass-through request that the pipeline did not admit")
            .into_response();
    };
    match forward_inner(forwarding, request).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

async fn forward_inner(forwarding: Forwarding, request: Request) -> Result<Response, EdgeError> {
    let Forwarding { route, admitted, id } = forwarding;
    let (parts, body) = request.into_parts();
    let name = route.upstream.name();
    let uri = &parts.uri;
    let mut headers = parts.headers;
    admitted.forwarded.render_map(
        &mut headers,
        uri.authority().map(http::uri::Authority::as_str),
        &id,
        admitted.principal.as_deref(),
        route.forward_authorization,
    );

    // Only a request without a body can be sent twice: a streamed body is read once.
    let bodiless = http_body::Body::size_hint(&body).exact() == Some(0);
    let idempotent = parts.method.is_idempotent() && bodiless;
    let call = Call {
        idempotent,
        read: idempotent
            && (parts.method == http::Method::GET || parts.method == http::Method::HEAD),
        key: uri.path(),
        deadline: deadline::for_call(route.timeout),
    };
    let fault = Arc::new(AtomicU8::new(if bodiless { ENDED } else { NO_FAULT }));
    let mut body = Some(Body::new(Watched { inner: body, fault: fault.clone() }));
    let method = parts.method;
    let client = route.upstream.client();
    let attempt = |endpoint: &Arc<Endpoint>, deadline: tokio::time::Instant| {
        // The upstream URL in one allocation: the endpoint, then the rewritten path.
        let mut url = Vec::with_capacity(endpoint.url().len() + uri.path().len() + 64);
        url.extend_from_slice(endpoint.url().as_bytes());
        route.push_upstream_path(&mut url, uri.path(), uri.query());
        let uri = http::Uri::from_maybe_shared(Bytes::from(url));
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
        let fault = fault.clone();
        async move {
            let Ok(sent) = sent else {
                let error = EdgeError::bad_request("the path cannot be forwarded");
                return Err(AttemptError { failure: None, error });
            };
            // Timed here too, at the call's own deadline (this inner timer is polled first): a
            // body still arriving when time is up is the client's slowness, not the upstream's.
            // Once the body is in, the call's deadline answers for the upstream.
            let sent = if fault.load(Ordering::Acquire) == ENDED {
                // Nothing to wait for from the client: no timer of its own.
                sent.await
            } else {
                match tokio::time::timeout_at(deadline, sent).await {
                    Ok(sent) => sent,
                    Err(_elapsed) if fault.load(Ordering::Acquire) == NO_FAULT => {
                        return Err(AttemptError {
                            failure: None,
                            error: EdgeError::body_timeout(),
                        });
                    }
                    Err(_elapsed) => return std::future::pending().await,
                }
            };
            sent.map_err(|e| match fault.load(Ordering::Acquire) {
                // The client's body failed, not the upstream: never held against it.
                TOO_LARGE => AttemptError {
                    failure: None,
                    error: EdgeError::from_status(
                        http::StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                    )
                    .with_detail("the request body exceeds the configured limit"),
                },
                BROKEN => AttemptError { failure: None, error: EdgeError::invalid_body() },
                _ => client_error(name, e),
            })
        }
    };
    let span = tracing::info_span!("upstream", upstream = %name, route = %route.prefix);
    let mut response =
        tracing::Instrument::instrument(route.upstream.cluster().call(call, attempt), span).await?;

    drop_unforwarded_response(response.headers_mut());
    // The client speaks to the gateway, whatever version the upstream spoke: an HTTP/1.0
    // backend must not cost an HTTP/1.1 client its keep-alive.
    *response.version_mut() = http::Version::HTTP_11;
    // Only error responses need the mark (the normaliser looks at nothing else), and inserting
    // the first extension allocates: successes, the hot path, go without.
    if response.status().is_client_error() || response.status().is_server_error() {
        response.extensions_mut().insert(Passthrough);
    }
    Ok(response.map(Body::new))
}

/// The client's body is still arriving.
const NO_FAULT: u8 = 0;
const TOO_LARGE: u8 = 1;
const BROKEN: u8 = 2;
/// The client's body is all in (or there was none).
const ENDED: u8 = 3;

pin_project_lite::pin_project! {
    /// The client's body on its way upstream, noting whether it failed — over the size limit,
    /// broken framing, or a client that stopped sending — or ended, so that a failure, or a
    /// deadline passing while it still arrives, is the client's.
    struct Watched {
        #[pin]
        inner: Body,
        fault: Arc<AtomicU8>,
    }
}

impl http_body::Body for Watched {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Err(error))) => {
                let fault = if is_body_too_large(error) { TOO_LARGE } else { BROKEN };
                this.fault.store(fault, Ordering::Release);
            }
            // hyper stops polling once `is_end_stream` says so: the last frame is the end.
            Poll::Ready(None) => this.fault.store(ENDED, Ordering::Release),
            Poll::Ready(Some(Ok(_))) if this.inner.is_end_stream() => {
                this.fault.store(ENDED, Ordering::Release);
            }
            Poll::Ready(Some(Ok(_))) | Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a body failed because it ran past the gateway's size limit.
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

#[cfg(test)]
mod tests;
