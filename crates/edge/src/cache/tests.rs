//! The cache step through whole gateways: composed routes with counting handlers, pass-through
//! routes over a real counting upstream, in process and over the relay, and the Redis tier
//! against the real Redis.

use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{
    Router,
    body::Body,
    extract::ConnectInfo,
    response::{IntoResponse, Response},
};
use http::{Request, StatusCode};
use portico_testkit::{MockServer, TestResponse, call};

use crate::{
    GatewayConfig, Upstreams,
    access::{Access, MaybeCaller, Routes},
    auth::hash_api_key,
    pipeline::EdgeState,
    stack,
};

const ACME: &str = "pk_test_cache_acme_1";
const GLOBEX: &str = "pk_test_cache_globex_2";

/// A backend whose answers a test shapes, counting every call.
#[derive(Clone, Default)]
struct Backend {
    calls: Arc<AtomicUsize>,
    failing: Arc<AtomicBool>,
    /// While set, answers wait for `release`.
    held: Arc<AtomicBool>,
    release: Arc<tokio::sync::Notify>,
}

impl Backend {
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    async fn answer(&self, path: &str, headers: &http::HeaderMap) -> Response {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.held.load(Ordering::SeqCst) {
            self.release.notified().await;
        }
        if self.failing.load(Ordering::SeqCst) {
            return StatusCode::SERVICE_UNAVAILABLE.into_response();
        }
        let seen: Vec<String> = headers.keys().map(|name| name.to_string()).collect();
        let body = serde_json::json!({
            "path": path,
            "call": self.calls(),
            "seen": seen,
            "padding": "x".repeat(600),
        });
        let mut response = axum::Json(body).into_response();
        let set = |response: &mut Response, name: &'static str, value: &'static str| {
            response.headers_mut().insert(name, http::HeaderValue::from_static(value));
        };
        match path {
            "/items/private" => set(&mut response, "cache-control", "private, max-age=60"),
            "/items/cookie" => set(&mut response, "set-cookie", "session=1"),
            "/items/vary-cookie" => set(&mut response, "vary", "Cookie"),
            "/items/short" => set(&mut response, "cache-control", "s-maxage=0"),
            "/items/tagged" => set(&mut response, "cache-tag", "product:42, catalog"),
            "/items/degraded" => set(&mut response, "portico-degraded", "recommendations"),
            _ => {}
        }
        response
    }

    async fn serve(&self) -> MockServer {
        let backend = self.clone();
        MockServer::start(Router::new().fallback(move |request: Request<Body>| {
            let backend = backend.clone();
            async move { backend.answer(request.uri().path(), request.headers()).await }
        }))
        .await
    }
}

fn config(upstream: &str, extra: &str) -> GatewayConfig {
    GatewayConfig::from_toml(&format!(
        r#"
        [upstreams.catalog]
        endpoints = ["{upstream}"]
        timeout = "5s"
        [[routes]]
        path = "/items"
        upstream = "catalog"
        access = "public"
        name = "items"
        [routes_policy.items]
        cache = {{ ttl = "60s" }}
        [routes_policy.page]
        cache = {{ ttl = "60s", vary = ["accept-language"] }}
        [routes_policy.mine]
        cache = {{ ttl = "60s" }}
        [routes_policy.everyone]
        cache = {{ ttl = "60s", shared = true }}
        {extra}
        [auth]
        issuer = "http://127.0.0.1:9"
        audience = "test"
        jwks_url = "http://127.0.0.1:9/jwks"
        [[auth.api_keys]]
        id = "acme"
        partner = "acme"
        plan = "gold"
        sha256 = "{}"
        scopes = []
        [[auth.api_keys]]
        id = "globex"
        partner = "globex"
        plan = "gold"
        sha256 = "{}"
        scopes = []
        [plans.gold]
        rate = 100000
        burst = 100000
        "#,
        hash_api_key(ACME),
        hash_api_key(GLOBEX),
    ))
    .unwrap()
}

/// Composed routes: a page (varies by language), one per caller, one shared, one uncached and
/// personal, and ones whose answers may not be stored; each counts its calls in `backend`.
fn routes(backend: &Backend) -> Routes {
    let page = {
        let backend = backend.clone();
        move |request: Request<Body>| {
            let backend = backend.clone();
            async move { backend.answer(request.uri().path(), request.headers()).await }
        }
    };
    let caller = |backend: &Backend| {
        let backend = backend.clone();
        move |caller: MaybeCaller| {
            let backend = backend.clone();
            async move {
                backend.calls.fetch_add(1, Ordering::SeqCst);
                caller.0.map(|p| p.subject.clone()).unwrap_or_else(|| "anonymous".into())
            }
        }
    };
    Routes::new()
        .get("/page/{id}", Access::public().named("page"), page.clone())
        .get("/mine", Access::public().named("mine"), caller(backend))
        .get("/everyone", Access::public().named("everyone"), caller(backend))
        .get("/personal", Access::public().named("personal"), caller(backend))
        .get(
            "/code",
            Access::public()
                .named("code")
                .cached(crate::cache::RouteCacheConfig::ttl(Duration::from_secs(60))),
            page,
        )
}

struct Fixture {
    backend: Backend,
    state: EdgeState,
    gateway: stack::Gateway,
    _upstream: MockServer,
}

async fn fixture(extra: &str) -> Fixture {
    let backend = Backend::default();
    let upstream = backend.serve().await;
    let config = config(&upstream.url(), extra);
    let state = EdgeState::new(&config).unwrap();
    let upstreams = Upstreams::from_config(&config).unwrap();
    let gateway =
        stack::gateway_in("cache-test", routes(&backend), &config, &upstreams, &state).unwrap();
    Fixture { backend, state, gateway, _upstream: upstream }
}

fn get(uri: &str) -> http::request::Builder {
    Request::get(uri)
}

async fn send(router: &Router, request: http::request::Builder) -> TestResponse {
    call(router.clone(), request.body(Body::empty()).unwrap()).await
}

#[tokio::test]
async fn a_composed_page_is_fetched_once_then_served_with_its_validators() {
    let f = fixture("").await;
    let router = f.gateway.router();
    let first = send(&router, get("/page/1")).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.header("cache-status"), Some("portico; fwd=miss; stored"));
    let second = send(&router, get("/page/1")).await;
    assert_eq!(second.status, 200);
    assert!(second.header("cache-status").unwrap().starts_with("portico; hit; ttl="));
    assert_eq!(f.backend.calls(), 1, "the second came from the cache");
    assert_eq!(first.body, second.body);
    let etag = second.header("etag").unwrap().to_owned();
    assert!(etag.starts_with('"') && !etag.starts_with("W/"), "a strong ETag: {etag}");
    assert_eq!(second.header("cache-control"), Some("public, max-age=0, must-revalidate"));
    assert_eq!(second.header("vary"), Some("Accept-Encoding, accept-language"));
    assert!(second.header("age").is_some());
    // The normalised path is the key: dot-segments and doubled slashes find the same entry.
    let dotted = send(&router, get("/page/x/../1")).await;
    assert!(dotted.header("cache-status").unwrap().contains("hit"), "{:?}", dotted.headers);
    // Another query is another entry; the same query in another order is the same one.
    send(&router, get("/page/1?b=2&a=1")).await;
    send(&router, get("/page/1?a=1&b=2")).await;
    assert_eq!(f.backend.calls(), 2);

    // Revalidation: the same variant → 304 without a body, weak comparison included.
    for tag in [etag.clone(), format!("W/{etag}"), format!("\"other\", {etag}")] {
        let not_modified = send(&router, get("/page/1").header("if-none-match", tag)).await;
        assert_eq!(not_modified.status, 304);
        assert!(not_modified.body.is_empty());
        assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
    }
    let changed = send(&router, get("/page/1").header("if-none-match", "\"other\"")).await;
    assert_eq!(changed.status, 200);

    // HEAD is served from the GET entry: its length, no body, no call.
    let head = send(&router, Request::head("/page/1")).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("content-length").unwrap(), first.body.len().to_string());
    assert_eq!(f.backend.calls(), 2);
}

#[tokio::test]
async fn each_coding_is_stored_once_with_its_own_etag() {
    let f = fixture("").await;
    let router = f.gateway.router();
    let plain = send(&router, get("/page/2")).await;
    let gzip = send(&router, get("/page/2").header("accept-encoding", "gzip")).await;
    let br = send(&router, get("/page/2").header("accept-encoding", "gzip, br")).await;
    assert_eq!(f.backend.calls(), 1, "one fetch for every coding");
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert!(plain.header("content-encoding").is_none());
    let tags = [plain.header("etag"), gzip.header("etag"), br.header("etag")];
    assert!(tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2], "{tags:?}");
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&gzip.body[..]), &mut unzipped)
        .unwrap();
    assert_eq!(unzipped, plain.body);
    let mut unbrotli = Vec::new();
    brotli::BrotliDecompress(&mut &br.body[..], &mut unbrotli).unwrap();
    assert_eq!(unbrotli, plain.body);
    assert!(br.body.len() < plain.body.len());
    // The gzip variant's ETag does not validate the br one.
    let gzip_tag = gzip.header("etag").unwrap();
    let other = send(
        &router,
        get("/page/2").header("accept-encoding", "br").header("if-none-match", gzip_tag),
    )
    .await;
    assert_eq!(other.status, 200);
}

#[tokio::test]
async fn callers_never_see_each_others_entries_unless_the_route_is_shared() {
    let f = fixture("").await;
    let router = f.gateway.router();
    let as_acme = send(&router, get("/mine").header("x-api-key", ACME)).await;
    let as_globex = send(&router, get("/mine").header("x-api-key", GLOBEX)).await;
    let anonymous = send(&router, get("/mine")).await;
    assert_eq!(as_acme.text(), "acme");
    assert_eq!(as_globex.text(), "globex");
    assert_eq!(anonymous.text(), "anonymous");
    assert_eq!(as_acme.header("cache-control"), Some("private, max-age=0, must-revalidate"));
    // Each hit is the caller's own.
    assert_eq!(send(&router, get("/mine").header("x-api-key", GLOBEX)).await.text(), "globex");
    assert_eq!(send(&router, get("/mine").header("x-api-key", ACME)).await.text(), "acme");
    assert_eq!(send(&router, get("/mine")).await.text(), "anonymous");
    assert_eq!(f.backend.calls(), 3);
    // A shared route: one entry for everyone, public.
    let first = send(&router, get("/everyone").header("x-api-key", ACME)).await;
    let second = send(&router, get("/everyone").header("x-api-key", GLOBEX)).await;
    assert_eq!((first.text(), second.text()), ("acme".to_owned(), "acme".to_owned()));
    assert_eq!(second.header("cache-control"), Some("public, max-age=0, must-revalidate"));
    // Without a cache policy, an answer to a verified caller is sent private, no-store.
    let personal = send(&router, get("/personal").header("x-api-key", ACME)).await;
    assert_eq!(personal.header("cache-control"), Some("private, no-store"));
    assert!(personal.header("cache-status").is_none());
}

#[tokio::test]
async fn a_header_outside_the_key_never_reaches_the_handler() {
    let f = fixture("").await;
    let router = f.gateway.router();
    // An attacker's headers on the miss: the stored page must not depend on them.
    let poisoned = send(
        &router,
        get("/page/3")
            .header("x-forwarded-host", "evil.example")
            .header("x-original-url", "/admin")
            .header("accept-language", "de"),
    )
    .await;
    let seen = poisoned.json()["seen"].clone();
    let seen: Vec<&str> = seen.as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert!(!seen.contains(&"x-forwarded-host") && !seen.contains(&"x-original-url"), "{seen:?}");
    assert!(seen.contains(&"accept-language"), "a declared vary header is passed: {seen:?}");
    // The declared header is in the key: another language is another entry.
    send(&router, get("/page/3").header("accept-language", "fr")).await;
    send(&router, get("/page/3").header("accept-language", "de")).await;
    assert_eq!(f.backend.calls(), 2);
    // The same holds on a pass-through route: the upstream sees no unkeyed header.
    let passed = send(&router, get("/items/1").header("x-forwarded-host", "evil.example")).await;
    let seen = passed.json()["seen"].to_string();
    assert!(!seen.contains("evil"), "{seen}");
}

#[tokio::test]
async fn what_may_not_be_stored_is_passed_on_and_fetched_again() {
    let f = fixture("").await;
    let router = f.gateway.router();
    let unstorable = [
        "/items/private",
        "/items/cookie",
        "/items/vary-cookie",
        "/items/short",
        "/items/degraded",
    ];
    for path in unstorable {
        let before = f.backend.calls();
        for _ in 0..2 {
            let response = send(&router, get(path)).await;
            assert_eq!(response.status, 200, "{path}");
            assert_eq!(response.header("cache-status"), Some("portico; fwd=miss"), "{path}");
        }
        assert_eq!(f.backend.calls(), before + 2, "{path} is not stored");
    }
    // An upstream's own lifetime is honoured, and errors are not stored.
    f.backend.failing.store(true, Ordering::SeqCst);
    for _ in 0..2 {
        let before = f.backend.calls();
        let response = send(&router, get("/items/fails")).await;
        assert_eq!(response.status, 503);
        assert_eq!(response.header("cache-status"), Some("portico; fwd=miss"));
        assert!(f.backend.calls() > before, "fetched again (and retried)");
    }
    // Each such answer is counted, by route and outcome.
    let metrics = crate::metrics::handle().unwrap().render();
    assert!(
        metrics.contains(r#"portico_cache_requests_total{gateway="cache-test",route="items",outcome="uncacheable"}"#),
        "{metrics}"
    );
    // Larger than the bound: passed on whole, not stored.
    let small = fixture("[cache]\nmax_object_bytes = 100").await;
    let router = small.gateway.router();
    let whole = send(&router, get("/page/4")).await;
    assert!(whole.json()["padding"].as_str().unwrap().len() == 600);
    send(&router, get("/page/4")).await;
    assert_eq!(small.backend.calls(), 2);
}

#[tokio::test]
async fn a_cache_policy_can_be_given_in_code() {
    let f = fixture("").await;
    let router = f.gateway.router();
    send(&router, get("/code")).await;
    let hit = send(&router, get("/code")).await;
    assert!(hit.header("cache-status").unwrap().contains("hit"));
    assert_eq!(f.backend.calls(), 1);
}

#[tokio::test]
async fn a_thousand_concurrent_misses_on_two_workers_make_one_upstream_call() {
    let f = fixture("").await;
    let config = config(&f._upstream.url(), "");
    let upstreams = Upstreams::from_config(&config).unwrap();
    // A second worker of the same process: the same edge state.
    let second =
        stack::gateway_in("cache-test", routes(&f.backend), &config, &upstreams, &f.state).unwrap();
    let workers = [f.gateway.router(), second.router()];
    f.backend.held.store(true, Ordering::SeqCst);
    let mut requests = Vec::new();
    for i in 0..1000 {
        let router = workers[i % 2].clone();
        requests.push(tokio::spawn(async move { send(&router, get("/items/hot")).await }));
    }
    // Every request is waiting (one at the upstream, 999 on its fetch) before it answers.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting = f.state.cache().waiting("/items/hot");
        if waiting == 999 && f.backend.calls() == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "only {waiting} requests waiting");
        tokio::task::yield_now().await;
    }
    f.backend.held.store(false, Ordering::SeqCst);
    f.backend.release.notify_waiters();
    let mut bodies = std::collections::HashSet::new();
    for request in requests {
        let response = request.await.unwrap();
        assert_eq!(response.status, 200);
        bodies.insert(response.body);
    }
    assert_eq!(f.backend.calls(), 1, "exactly one upstream call");
    assert_eq!(bodies.len(), 1);
}

#[tokio::test]
async fn stale_entries_are_refreshed_in_the_background_or_stand_in_for_a_failure() {
    let f = fixture(
        "[routes_policy.swr]\ncache = { ttl = \"1ms\", stale_while_revalidate = \"1h\" }\n\
         [routes_policy.sie]\ncache = { ttl = \"1ms\", stale_if_error = \"1h\" }\n\
         [[routes]]\npath = \"/swr\"\nupstream = \"catalog\"\naccess = \"public\"\nname = \"swr\"\n\
         [[routes]]\npath = \"/sie\"\nupstream = \"catalog\"\naccess = \"public\"\nname = \"sie\"",
    )
    .await;
    let router = f.gateway.router();
    // stale-while-revalidate: the stale page at once, and one refresh behind it.
    let first = send(&router, get("/swr/a")).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let stale = loop {
        let response = send(&router, get("/swr/a")).await;
        if response.header("cache-status").is_some_and(|s| s.contains("stale-while-revalidate")) {
            break response;
        }
        assert!(Instant::now() < deadline);
    };
    assert_eq!(stale.json()["call"], first.json()["call"], "the stale page itself");
    while f.backend.calls() < 2 {
        assert!(Instant::now() < deadline, "the refresh never ran");
        tokio::task::yield_now().await;
    }

    // stale-if-error: while the upstream fails, the stale whole page instead of the error.
    let good = send(&router, get("/sie/b")).await;
    f.backend.failing.store(true, Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(10);
    let stood_in = loop {
        let response = send(&router, get("/sie/b")).await;
        if response.header("cache-status").is_some_and(|s| s.contains("fwd=stale")) {
            break response;
        }
        assert_eq!(response.status, 200, "fresh, or stale standing in; never the error");
        assert!(Instant::now() < deadline);
    };
    assert_eq!(stood_in.status, 200);
    assert_eq!(stood_in.body, good.body);
}

#[tokio::test]
async fn purges_by_tag_or_path_come_from_loopback_only() {
    let f = fixture("").await;
    let router = f.gateway.router();
    let tagged = send(&router, get("/items/tagged")).await;
    assert!(tagged.header("cache-tag").is_none(), "tags are the gateway's own");
    send(&router, get("/items/other")).await;
    assert_eq!(f.backend.calls(), 2);
    let purge = |query: &str, peer: [u8; 4]| {
        let mut request = Request::post(format!("{}?{query}", super::PURGE_PATH))
            .header("x-forwarded-for", "127.0.0.1")
            .body(Body::empty())
            .unwrap();
        request.extensions_mut().insert(ConnectInfo(SocketAddr::from((peer, 40000))));
        call(router.clone(), request)
    };
    // From elsewhere, whatever the forwarding headers say: refused, nothing purged.
    purge("tag=product:42", [203, 0, 113, 5]).await.assert_problem(403, "forbidden");
    purge("nothing=1", [127, 0, 0, 1]).await.assert_problem(400, "bad_request");
    let purged = purge("tag=product:42", [127, 0, 0, 1]).await;
    assert_eq!(purged.json()["purged"], 1);
    send(&router, get("/items/tagged")).await;
    send(&router, get("/items/other")).await;
    assert_eq!(f.backend.calls(), 3, "only the tagged entry was fetched again");
    assert_eq!(purge("path=/items/other", [127, 0, 0, 1]).await.json()["purged"], 1);
    send(&router, get("/items/other")).await;
    assert_eq!(f.backend.calls(), 4);
}

#[tokio::test]
async fn the_relay_hands_a_cached_route_to_the_cache_step() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let f = fixture("").await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    assert!(f.gateway.relay().is_some());
    tokio::spawn(crate::server::serve(
        listener,
        f.gateway.clone(),
        crate::server::Serving::with_header_read_timeout(Duration::from_secs(5)),
        std::future::pending(),
    ));
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut statuses = Vec::new();
    for _ in 0..2 {
        stream
            .write_all(b"GET /items/relayed HTTP/1.1\r\nHost: gateway.test\r\n\r\n")
            .await
            .unwrap();
        let mut buf = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            let mut chunk = [0; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0 && Instant::now() < deadline);
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n")
                && let Some(length) = head.lines().find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_owned)
                })
                && body.len() >= length.trim().parse::<usize>().unwrap()
            {
                break head
                    .lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("cache-status"))
                    .unwrap_or("")
                    .to_owned();
            }
        };
        statuses.push(status);
    }
    assert!(statuses[0].contains("fwd=miss"), "{statuses:?}");
    assert!(statuses[1].contains("hit"), "{statuses:?}");
    assert_eq!(f.backend.calls(), 1);
}

#[tokio::test]
async fn replicas_share_the_redis_tier_and_its_purges_and_survive_its_outage() {
    let Some(url) = portico_testkit::services::redis_or_skip("cache_redis_tier").await else {
        return;
    };
    let proxy =
        portico_testkit::services::FaultProxy::start(portico_testkit::services::REDIS).await;
    let prefix = portico_testkit::services::key_prefix("cache");
    let extra = format!(
        "[redis]\nurl = \"redis://{}\"\ntimeout = \"500ms\"\nprefix = \"{prefix}\"\n\
         [routes_policy.shared]\ncache = {{ ttl = \"60s\", store = \"redis\" }}\n\
         [[routes]]\npath = \"/shared\"\nrewrite = \"/items\"\nupstream = \"catalog\"\naccess = \"public\"\n\
         name = \"shared\"",
        proxy.addr()
    );
    // Two replicas: two processes' worth of state over one Redis.
    let a = fixture(&extra).await;
    let b = fixture(&extra).await;
    let (ra, rb) = (a.gateway.router(), b.gateway.router());
    let first = send(&ra, get("/shared/tagged")).await;
    assert_eq!(first.status, 200);
    // The put is in the background: b finds it in Redis soon.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = send(&rb, get("/shared/tagged")).await;
        if response.header("cache-status").is_some_and(|s| s.contains("hit")) {
            assert_eq!(response.body, first.body, "a's page, from Redis");
            break;
        }
        assert!(Instant::now() < deadline, "b never found a's entry");
        tokio::task::yield_now().await;
    }
    let fetched = b.backend.calls();
    // Keys: prefixed, versioned, hashed, with TTLs; never the path in clear.
    let client = ::redis::Client::open(url.as_str()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> =
        ::redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut connection).await.unwrap();
    assert!(!keys.is_empty());
    for key in &keys {
        assert!(key.contains(super::VERSION) && !key.contains("/shared"), "{key}");
        let ttl: i64 = ::redis::cmd("PTTL").arg(key).query_async(&mut connection).await.unwrap();
        assert!(ttl > 0, "{key} has no TTL");
    }

    // A purge at a reaches b's own copy through pub/sub.
    let mut request =
        Request::post(format!("{}?tag=product:42", super::PURGE_PATH)).body(Body::empty()).unwrap();
    request.extensions_mut().insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
    assert_eq!(call(ra.clone(), request).await.status, 200);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let response = send(&rb, get("/shared/tagged")).await;
        if response.header("cache-status").is_some_and(|s| s.contains("fwd=miss")) {
            break;
        }
        assert!(Instant::now() < deadline, "b still serves the purged page");
        // A hit never waits: let the subscription's task run.
        tokio::task::yield_now().await;
    }
    assert_eq!(b.backend.calls(), fetched + 1);

    // Redis gone: pages are still served (the local tier, or fetched), never an error.
    proxy.cut();
    let started = Instant::now();
    for path in ["/shared/tagged", "/shared/new", "/shared/new"] {
        assert_eq!(send(&ra, get(path)).await.status, 200, "{path}");
    }
    assert!(started.elapsed() < Duration::from_secs(5));
    let metrics = crate::metrics::handle().unwrap().render();
    assert!(metrics.contains("portico_cache_store_errors_total"), "the outage is counted");
    let _: () = ::redis::cmd("DEL").arg(&keys).query_async(&mut connection).await.unwrap_or(());
}

#[tokio::test]
async fn a_hit_still_passes_the_rate_limits() {
    let f = fixture(
        "[[routes]]\npath = \"/limited\"\nupstream = \"catalog\"\naccess = \"public\"\n\
         name = \"limited\"\n\
         [routes_policy.limited]\ncache = { ttl = \"60s\" }\n\
         rate_limit = { per = \"address\", rate = 0.001, burst = 2 }",
    )
    .await;
    let router = f.gateway.router();
    let first = send(&router, get("/limited/a")).await;
    let second = send(&router, get("/limited/a")).await;
    assert!(second.header("cache-status").unwrap().contains("hit"));
    assert!(second.header("ratelimit").unwrap().contains("r=0"), "{:?}", second.headers);
    assert_eq!((first.status, second.status), (StatusCode::OK, StatusCode::OK));
    // The entry is there, but the limit is spent: the cache never answers past it.
    let third = send(&router, get("/limited/a")).await;
    third.assert_problem(429, "rate_limited");
    assert_eq!(f.backend.calls(), 1);
}

#[tokio::test]
async fn a_flood_of_long_unique_queries_stays_within_the_byte_bound() {
    // Every request a new 4 KiB query: a new entry each, whose key is longer than its page.
    let f = fixture("[cache]\nmax_bytes = 65536").await;
    let router = f.gateway.router();
    for i in 0..200 {
        let query = format!("{i:05}{}", "q".repeat(4096));
        assert_eq!(send(&router, get(&format!("/page/1?{query}"))).await.status, 200);
    }
    let cache = f.state.cache();
    cache.local.run_pending_tasks();
    let resident: usize = cache
        .local
        .iter()
        .map(|(key, entry)| {
            let bodies: usize = [super::Coding::Identity, super::Coding::Gzip, super::Coding::Br]
                .iter()
                .map(|&coding| entry.body(coding).len())
                .sum();
            key.len() + bodies
        })
        .sum();
    assert!(resident > 0, "some entries are kept");
    assert!(resident <= 65_536, "{resident} bytes of keys and bodies held, bound 65536");
}
