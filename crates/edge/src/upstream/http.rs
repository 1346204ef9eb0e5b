//! The HTTP/JSON upstream: a pooled keep-alive client per upstream, a per-call deadline, one
//! tracing span per call, and the mapping of transport failures to [`EdgeError`]s.
//!
//! The client is hyper-util's pooled client rather than reqwest: the pass-through path hands it
//! the client's streaming body as it is and streams the answer back, with no URL re-parsing
//! and no body adaptation per request — the cheapest request path hyper offers.

use std::{fmt, sync::Arc, time::Duration};

use axum::body::Body;
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use serde::{Serialize, de::DeserializeOwned};
use tracing::Instrument;

use super::cluster::{AttemptError, Call, Cluster, Failure, Policy};
use crate::{
    access,
    config::{ConfigError, GatewayConfig, UpstreamConfig},
    deadline,
    error::EdgeError,
    request_id,
};

/// The pooled client every upstream call and pass-through goes through.
pub(crate) type HttpClient = Client<HttpConnector, Body>;

/// A named HTTP upstream. Cheap to clone: clones share the connection pool.
#[derive(Clone)]
pub struct HttpUpstream {
    inner: Arc<Inner>,
}

struct Inner {
    cluster: Arc<Cluster>,
    client: HttpClient,
}

// === impl HttpUpstream ===

impl HttpUpstream {
    pub(super) fn new(
        gateway: &'static str,
        name: &str,
        upstream: &UpstreamConfig,
        config: &GatewayConfig,
    ) -> Result<Self, ConfigError> {
        let defaults = &config.defaults.upstream;
        let policy = Policy::from_config(upstream, config);
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(policy.connect_timeout));
        // Upstream endpoints are `http://` (checked by config validation): TLS to backends comes
        // with its own connector when a deployment needs it.
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(defaults.pool_idle_timeout)
            .pool_max_idle_per_host(defaults.pool_max_idle_per_endpoint)
            .pool_timer(TokioTimer::new())
            .build(connector);
        let cluster = Cluster::new(gateway, name, policy, &upstream.endpoints);
        if let Some(discovery) = &upstream.discovery {
            cluster.discover(discovery)?;
        }
        if cluster.policy().health_check.is_some() {
            super::health_check::spawn(&cluster, client.clone())?;
        }
        Ok(Self { inner: Arc::new(Inner { cluster, client }) })
    }

    /// The upstream's configured name.
    pub fn name(&self) -> &str {
        self.inner.cluster.name()
    }

    /// The configured per-call deadline.
    pub fn timeout(&self) -> Duration {
        self.inner.cluster.policy().timeout
    }

    pub(crate) fn cluster(&self) -> &Arc<Cluster> {
        &self.inner.cluster
    }

    pub(crate) fn client(&self) -> &HttpClient {
        &self.inner.client
    }

    /// A GET of `path_and_query` (starting with `/`).
    pub fn get(&self, path_and_query: &str) -> UpstreamRequest {
        self.request(Method::GET, path_and_query)
    }

    /// A POST of `path_and_query`.
    pub fn post(&self, path_and_query: &str) -> UpstreamRequest {
        self.request(Method::POST, path_and_query)
    }

    /// A request with any method.
    pub fn request(&self, method: Method, path_and_query: &str) -> UpstreamRequest {
        let mut headers = http::HeaderMap::new();
        if let Some(id) = request_id::current()
            && let Ok(value) = HeaderValue::from_str(id.as_str())
        {
            headers.insert(request_id::HEADER, value);
        }
        // Backends learn who is calling from the gateway, never from the client.
        if let Some(caller) = access::caller() {
            for (name, value) in access::identity_headers(&caller) {
                headers.insert(name.clone(), value);
            }
        }
        UpstreamRequest {
            upstream: self.clone(),
            method,
            path: path_and_query.to_owned(),
            headers,
            body: None,
            timeout: self.timeout(),
            key: None,
            error: None,
        }
    }
}

impl fmt::Debug for HttpUpstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpUpstream").field("cluster", &self.inner.cluster).finish_non_exhaustive()
    }
}

/// One call being prepared. Finish it with [`UpstreamRequest::fetch`] (JSON in, typed value
/// out) or [`UpstreamRequest::send`].
#[derive(Debug)]
#[must_use = "a request does nothing until it is sent"]
pub struct UpstreamRequest {
    upstream: HttpUpstream,
    method: Method,
    path: String,
    headers: http::HeaderMap,
    body: Option<bytes::Bytes>,
    timeout: Duration,
    /// The consistent-hashing key, when it is not the path.
    key: Option<String>,
    /// A request that could not be built (a query that does not serialise) fails when sent.
    error: Option<EdgeError>,
}

// === impl UpstreamRequest ===

impl UpstreamRequest {
    /// Adds query parameters, serialised from `query`.
    pub fn query<Q: Serialize + ?Sized>(mut self, query: &Q) -> Self {
        match serde_urlencoded::to_string(query) {
            Ok(encoded) if encoded.is_empty() => {}
            Ok(encoded) => {
                self.path.push(if self.path.contains('?') { '&' } else { '?' });
                self.path.push_str(&encoded);
            }
            Err(e) => self.error = Some(EdgeError::internal(e)),
        }
        self
    }

    /// Sends `body` as JSON.
    pub fn json<B: Serialize + ?Sized>(mut self, body: &B) -> Self {
        match serde_json::to_vec(body) {
            Ok(bytes) => {
                self.headers
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                self.body = Some(bytes.into());
            }
            Err(e) => self.error = Some(EdgeError::internal(e)),
        }
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Sets the key that consistent hashing balances on (the path by default), e.g. a user id
    /// so that one user's calls reach the same instance's cache.
    pub fn hash_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Tightens the deadline of this call below the upstream's configured one (never extends it).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = self.timeout.min(timeout);
        self
    }

    /// Sends the request and returns the response if its status is a success. A 404 becomes a
    /// client-facing 404; any other failure becomes a 502/504 naming the upstream in the logs.
    ///
    /// The call ends by the earlier of the upstream's timeout and the request's deadline, and
    /// goes through the upstream's cluster: balanced, behind breakers, retried when idempotent.
    pub async fn send(self) -> Result<Response<Incoming>, EdgeError> {
        let deadline = deadline::for_call(self.timeout);
        self.send_until(deadline).await
    }

    async fn send_until(
        self,
        deadline: tokio::time::Instant,
    ) -> Result<Response<Incoming>, EdgeError> {
        let Self { upstream, method, path, headers, body, timeout: _, key, error } = self;
        if let Some(error) = error {
            return Err(error);
        }
        // Borrowed, not copied: this runs for every composed call.
        let name = upstream.name();
        let span = tracing::info_span!(
            "upstream",
            upstream = %name,
            method = %method,
            path = %path,
            status = tracing::field::Empty,
        );
        let call = Call {
            idempotent: method.is_idempotent(),
            read: method == Method::GET || method == Method::HEAD,
            key: key.as_deref().unwrap_or(&path),
            deadline,
        };
        let client = upstream.client();
        let attempt = |endpoint: &Arc<super::cluster::Endpoint>, deadline: tokio::time::Instant| {
            let request = Request::builder()
                .method(method.clone())
                .uri(format!("{}{path}", endpoint.url()))
                .body(body.clone().map_or_else(Body::empty, Body::from));
            let sent = request.map(|mut request| {
                *request.headers_mut() = headers.clone();
                let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
                request.headers_mut().insert(deadline::HEADER, deadline::header_value(remaining));
                client.request(request)
            });
            async move {
                match sent {
                    Ok(sent) => sent.await.map_err(|e| client_error(name, e)),
                    Err(e) => Err(AttemptError { failure: None, error: EdgeError::internal(e) }),
                }
            }
        };
        let response = upstream.cluster().call(call, attempt).instrument(span.clone()).await?;
        span.record("status", response.status().as_u16());
        check_status(name, response)
    }

    /// Sends the request and reads a JSON body of type `T`, all within the call's deadline.
    pub async fn fetch<T: DeserializeOwned>(self) -> Result<T, EdgeError> {
        // A handle for the errors after `send` consumed the request: an `Arc` bump, not a copy
        // of the name.
        let upstream = self.upstream.clone();
        let name = upstream.name();
        let deadline = deadline::for_call(self.timeout);
        let response = self.send_until(deadline).await?;
        let body = tokio::time::timeout_at(deadline, response.into_body().collect())
            .await
            .map_err(|_elapsed| EdgeError::upstream_timeout(name))?
            .map_err(|e| EdgeError::upstream_unavailable(name, e))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(|e| EdgeError::upstream_failed(name, e))
    }
}

/// A failed send of the pooled client, classified: nothing sent (connect) or a connection that
/// broke before the answer.
pub(crate) fn client_error(name: &str, error: hyper_util::client::legacy::Error) -> AttemptError {
    let failure = if error.is_connect() { Failure::Connect } else { Failure::Reset };
    AttemptError { failure: Some(failure), error: EdgeError::upstream_unavailable(name, error) }
}

fn check_status(name: &str, response: Response<Incoming>) -> Result<Response<Incoming>, EdgeError> {
    let status = response.status();
    if status.is_success() {
        Ok(response)
    } else if status == StatusCode::NOT_FOUND {
        Err(EdgeError::not_found("the requested resource does not exist"))
    } else {
        Err(EdgeError::upstream_status(name, status))
    }
}

#[cfg(test)]
mod tests {
    use axum::{Router, http::StatusCode, routing::get};
    use portico_testkit::MockServer;

    use crate::{GatewayConfig, Upstreams};

    async fn upstream(router: Router) -> (MockServer, Upstreams) {
        let server = MockServer::start(router).await;
        let config =
            GatewayConfig::from_toml(&portico_testkit::gateway_toml(&[("x", &server.url())], &[]))
                .unwrap();
        (server, Upstreams::from_config(&config).unwrap())
    }

    #[tokio::test]
    async fn fetch_maps_statuses_and_keeps_the_upstream_answer() {
        let (_server, upstreams) = upstream(
            Router::new()
                .route("/ok", get(|| async { axum::Json(serde_json::json!({"n": 1})) }))
                .route("/bad", get(|| async { StatusCode::BAD_REQUEST }))
                .route("/timed-out", get(|| async { StatusCode::GATEWAY_TIMEOUT }))
                .route("/not-json", get(|| async { "plain" })),
        )
        .await;
        let x = upstreams.http("x").unwrap();
        let ok: serde_json::Value = x.get("/ok").fetch().await.unwrap();
        assert_eq!(ok["n"], 1);

        let missing = x.get("/missing").fetch::<serde_json::Value>().await.unwrap_err();
        assert_eq!((missing.status(), missing.code()), (StatusCode::NOT_FOUND, "not_found"));

        let bad = x.get("/bad").fetch::<serde_json::Value>().await.unwrap_err();
        assert_eq!(bad.status(), StatusCode::BAD_GATEWAY);
        assert_eq!(bad.upstream_answered(), Some(StatusCode::BAD_REQUEST));

        // A backend that itself timed out is a timeout to the client too, not a 502.
        let late = x.get("/timed-out").fetch::<serde_json::Value>().await.unwrap_err();
        assert_eq!((late.status(), late.code()), (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout"));
        assert_eq!(late.upstream_answered(), Some(StatusCode::GATEWAY_TIMEOUT));

        let garbled = x.get("/not-json").fetch::<serde_json::Value>().await.unwrap_err();
        assert_eq!((garbled.status(), garbled.code()), (StatusCode::BAD_GATEWAY, "upstream_error"));
        assert_eq!(garbled.upstream_answered(), None);
    }

    #[tokio::test]
    async fn a_call_can_only_tighten_its_deadline() {
        let (_server, upstreams) =
            upstream(Router::new().fallback(std::future::pending::<()>)).await;
        let x = upstreams.http("x").unwrap();
        let started = std::time::Instant::now();
        let err = x
            .get("/")
            .timeout(std::time::Duration::from_millis(50))
            .fetch::<()>()
            .await
            .unwrap_err();
        assert_eq!(err.code(), "upstream_timeout");
        // 50 ms asked, 300 ms configured: the tighter one wins (bounded, real sockets).
        assert!(
            started.elapsed() < std::time::Duration::from_millis(250),
            "{:?}",
            started.elapsed()
        );
    }
}
