//! Micro-benchmarks of the hot edge functions: the gateway router's per-request overhead, hop-by-hop
//! header stripping, sparse-fieldset trimming, request ids, path normalisation and the in-process
//! pass-through path.
//!
//! Run with `cargo bench -p portico-edge --bench edge`. No tracing subscriber is installed, so
//! spans and log lines are disabled: the numbers are the layers' cost without log output.

// A benchmark set-up that fails cannot measure anything, so it panics with a message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{hint::black_box, time::Duration};

use axum::{Router, body::Body, routing::get};
use criterion::{
    BatchSize, BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use portico_edge::{
    Composed, Degraded, GatewayConfig, Upstreams,
    access::{Access, Routes},
    fields::FieldSet,
    path, pipeline,
    request_id::RequestId,
    stack,
};
use portico_testkit::{MockServer, gateway_toml};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::runtime::{Builder, Runtime};
use tower::ServiceExt;

/// Keeps the whole run short on a shared 2-core machine.
fn configure<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut group = c.benchmark_group(name);
    group
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    group
}

fn current_thread() -> Runtime {
    Builder::new_current_thread().enable_all().build().expect("a current-thread runtime")
}

fn request(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::ACCEPT, "application/json")
        .header(header::USER_AGENT, "portico-bench/1")
        .body(Body::empty())
        .expect("a valid request")
}

/// Drives `app` with one request and reads the whole body, as a client would.
async fn drive(app: Router, request: Request<Body>) -> (StatusCode, usize) {
    let response = app.oneshot(request).await.expect("routers are infallible");
    let status = response.status();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX).await.expect("body reads");
    (status, body.len())
}

// --- 1. routing -------------------------------------------------------------------------------

/// A small gateway: a few composed-style routes (never requested here), one pass-through route
/// to an upstream nobody listens on (never reached here), and the health routes.
fn small_gateway() -> Router {
    let mut toml = gateway_toml(&[("catalog", "http://127.0.0.1:9")], &[]);
    toml.push_str(
        "[[routes]]\npath = \"/api/catalog\"\nupstream = \"catalog\"\nrewrite = \"/\"\naccess = \"public\"\n",
    );
    let config = GatewayConfig::from_toml(&toml).expect("a valid config");
    let upstreams = Upstreams::from_config(&config).expect("valid upstreams");
    let routes = Routes::new()
        .get("/v1/home", Access::public(), || async {
            Composed::new(json!({"featured": []}), Degraded::default())
        })
        .get("/v1/products/{id}", Access::public(), || async {
            Composed::new(json!({"id": "p-1"}), Degraded::default())
        })
        .get("/v1/cart", Access::public(), || async {
            Composed::new(json!({"items": []}), Degraded::default())
        });
    stack::gateway("bench", routes, &config, &upstreams).expect("a valid gateway").into_router()
}

fn routing(c: &mut Criterion) {
    let rt = current_thread();
    let app = rt.block_on(async { small_gateway() });
    // Check once that the paths answer what the benchmark names claim.
    assert_eq!(rt.block_on(drive(app.clone(), request("/healthz"))).0, StatusCode::OK);
    assert_eq!(rt.block_on(drive(app.clone(), request("/nope/unknown"))).0, StatusCode::NOT_FOUND);

    let mut group = configure(c, "routing");
    for (name, uri) in [("healthz", "/healthz"), ("unknown_404_problem", "/nope/unknown")] {
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_batched(
                || (app.clone(), request(uri)),
                |(app, req)| drive(app, req),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

// --- 2. header rewriting ----------------------------------------------------------------------

fn realistic_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut put = |name: &'static str, value: &'static str| {
        h.append(name, HeaderValue::from_static(value));
    };
    put("host", "api.example.com");
    put("user-agent", "PorticoMobile/4.2.0 (iPhone; iOS 17.4)");
    put("accept", "application/json");
    put("accept-encoding", "gzip, br");
    put("accept-language", "en-GB,en;q=0.9");
    put("authorization", "Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ1LTEyMyJ9.c2lnbmF0dXJl");
    put("connection", "keep-alive, x-foo");
    put("keep-alive", "timeout=5, max=100");
    put("te", "trailers");
    put("x-foo", "connection-scoped");
    put("x-request-id", "3f2a9c1e-7b4d-4e8a-9f10-2c5d6e7f8a9b");
    put("x-forwarded-for", "203.0.113.7");
    put("cookie", "session=abc123; theme=dark");
    put("cache-control", "no-cache");
    put("if-none-match", "\"etag-42\"");
    h
}

fn header_rewriting(c: &mut Criterion) {
    let headers = realistic_headers();
    let mut group = configure(c, "headers");
    group.bench_function("forwarding_policy_15", |b| {
        b.iter_batched(
            || headers.clone(),
            |mut h| {
                pipeline::drop_unforwarded(&mut h, false);
                h
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

// --- 3. JSON trimming -------------------------------------------------------------------------

const ALLOWED: &[&str] = &[
    "greeting",
    "banner",
    "featured",
    "featured.id",
    "featured.name",
    "featured.price",
    "featured.image",
    "featured.rating",
];
const FIELDS: &str = "featured.id,featured.price";

#[derive(Serialize)]
struct Card {
    id: String,
    name: String,
    price: String,
    image: String,
    rating: f32,
}

#[derive(Serialize)]
struct Home {
    greeting: String,
    banner: String,
    featured: Vec<Card>,
    degraded: Degraded,
}

fn home() -> Home {
    let mut degraded = Degraded::default();
    degraded.mark("recommendations");
    Home {
        greeting: "Good morning, Ada".to_owned(),
        banner: "https://cdn.example.com/banners/spring-sale.webp".to_owned(),
        featured: (0..10)
            .map(|i| Card {
                id: format!("p-{i:04}"),
                name: format!("Featured product number {i}"),
                price: format!("€{}.99", 10 + i),
                image: format!("https://cdn.example.com/products/p-{i:04}/thumb.webp"),
                rating: 4.5,
            })
            .collect(),
        degraded,
    }
}

fn json_trimming(c: &mut Criterion) {
    let typed = home();
    let value = serde_json::to_value(&typed).expect("serialisable");
    let fields = FieldSet::parse(FIELDS, ALLOWED).expect("valid fields");

    let mut group = configure(c, "fields");
    group.bench_function("parse", |b| {
        b.iter(|| FieldSet::parse(black_box(FIELDS), black_box(ALLOWED)));
    });
    group.bench_function("apply_home_10_cards", |b| {
        b.iter_batched(
            || value.clone(),
            |mut v: Value| {
                fields.apply(&mut v);
                v
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("parse_and_apply_home_10_cards", |b| {
        b.iter_batched(
            || value.clone(),
            |mut v: Value| {
                FieldSet::parse(black_box(FIELDS), ALLOWED).expect("valid fields").apply(&mut v);
                v
            },
            BatchSize::SmallInput,
        );
    });
    group.bench_function("project_typed_home_10_cards", |b| {
        b.iter(|| FieldSet::project(Some(&fields), black_box(&typed)));
    });
    group.finish();
}

// --- 4. request id ----------------------------------------------------------------------------

fn request_ids(c: &mut Criterion) {
    let incoming = HeaderValue::from_static("3f2a9c1e-7b4d-4e8a-9f10-2c5d6e7f8a9b");
    assert!(RequestId::from_incoming(&incoming).is_some());

    let mut group = configure(c, "request_id");
    group.bench_function("generate", |b| b.iter(RequestId::generate));
    group.bench_function("from_incoming_sane", |b| {
        b.iter(|| RequestId::from_incoming(black_box(&incoming)));
    });
    group.finish();
}

// --- 5. pass-through end to end ---------------------------------------------------------------

/// A JSON body of about 1 KiB.
fn kib_body() -> bytes::Bytes {
    let items: Vec<Value> = (0..12)
        .map(|i| json!({"id": format!("p-{i:04}"), "name": format!("Product {i}"), "price": "€19.99"}))
        .collect();
    let mut text = json!({"items": items, "next": "cursor-abc"}).to_string();
    while text.len() < 1024 {
        text.push(' ');
    }
    bytes::Bytes::from(text)
}

fn passthrough(c: &mut Criterion) {
    let rt = Builder::new_multi_thread().enable_all().build().expect("a multi-thread runtime");
    let body = kib_body();
    let len = body.len();
    let (_backend, app) = rt.block_on(async {
        let backend = MockServer::start(Router::new().fallback(get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        })))
        .await;
        let mut toml = gateway_toml(&[("catalog", &backend.url())], &[]);
        toml.push_str(
            "[[routes]]\npath = \"/api/catalog\"\nupstream = \"catalog\"\nrewrite = \"/\"\naccess = \"public\"\n",
        );
        let config = GatewayConfig::from_toml(&toml).expect("a valid config");
        let upstreams = Upstreams::from_config(&config).expect("valid upstreams");
        let app = stack::gateway("bench", Routes::new(), &config, &upstreams)
            .expect("a valid gateway")
            .into_router();
        (backend, app)
    });
    assert_eq!(
        rt.block_on(drive(app.clone(), request("/api/catalog/products?page=2"))),
        (StatusCode::OK, len)
    );

    let mut group = configure(c, "passthrough");
    group.bench_function("get_1kib_json_loopback", |b| {
        b.to_async(&rt).iter_batched(
            || (app.clone(), request("/api/catalog/products?page=2")),
            |(app, req)| drive(app, req),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

// --- 6. path normalisation --------------------------------------------------------------------

/// The clean path is the common case (one scan, borrowed); the dirty one takes every rewrite:
/// lowercase and unreserved escapes, merged slashes, `.` and an encoded `..`.
fn path_normalising(c: &mut Criterion) {
    const CLEAN: &str = "/api/catalog/products/p-1234/reviews";
    const DIRTY: &str = "/api//catalog/./products/%7Eold/%2e%2e/p-1234/caf%c3%a9";
    assert!(matches!(path::normalise(CLEAN), Ok(std::borrow::Cow::Borrowed(_))));
    assert_eq!(path::normalise(DIRTY).unwrap(), "/api/catalog/products/p-1234/caf%C3%A9");

    let mut group = configure(c, "path/normalise");
    group.bench_function("clean", |b| b.iter(|| path::normalise(black_box(CLEAN))));
    group.bench_function("dirty", |b| b.iter(|| path::normalise(black_box(DIRTY))));
    group.finish();
}

criterion_group!(
    benches,
    routing,
    header_rewriting,
    json_trimming,
    request_ids,
    passthrough,
    path_normalising
);
criterion_main!(benches);
