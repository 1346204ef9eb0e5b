//! Resilience against real loopback backends that are slow, refuse connections, answer 503,
//! hang after the headers or flap. Timing is asserted on tokio's paused clock: the mock servers
//! run on the same runtime, so their delays and the gateway's deadlines are timers on one clock
//! and the order they fire in is exact.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering},
    },
    time::Duration,
};

use axum::{Router, http::StatusCode, response::IntoResponse};
use portico_testkit::MockServer;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    time::Instant,
};

use super::breaker::State;
use crate::{GatewayConfig, Upstreams, deadline};

/// Settings that keep breakers and ejection out of a test about something else.
const LENIENT: &str = "[upstreams.x.breaker]\nconsecutive_failures = 1000\nmin_calls = 1000\n\
                       [upstreams.x.outlier]\nconsecutive_failures = 1000\n";

fn upstreams(gateway: &'static str, endpoints: &[String], extra: &str) -> Upstreams {
    let text = format!("[upstreams.x]\nendpoints = {endpoints:?}\ntimeout = \"1s\"\n{extra}");
    let config = GatewayConfig::from_toml(&text).unwrap();
    Upstreams::for_gateway(gateway, &config).unwrap()
}

/// A backend answering every request with the status in `status`, counting requests.
struct Backend {
    server: MockServer,
    hits: Arc<AtomicUsize>,
    status: Arc<AtomicU16>,
}

impl Backend {
    async fn start(status: u16) -> Self {
        Self::with_delay(status, Duration::ZERO).await
    }

    async fn with_delay(status: u16, delay: Duration) -> Self {
        let hits = Arc::new(AtomicUsize::new(0));
        let status = Arc::new(AtomicU16::new(status));
        let (h, s) = (hits.clone(), status.clone());
        let router = Router::new().fallback(move || {
            let (h, s) = (h.clone(), s.clone());
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                let status = StatusCode::from_u16(s.load(Ordering::SeqCst)).unwrap();
                (status, axum::Json(serde_json::json!({"status": status.as_u16()}))).into_response()
            }
        });
        Self { server: MockServer::start(router).await, hits, status }
    }

    fn url(&self) -> String {
        self.server.url()
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    fn set(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }
}

async fn get(upstreams: &Upstreams) -> Result<serde_json::Value, crate::EdgeError> {
    upstreams.http("x").unwrap().get("/").fetch().await
}

fn breaker_state(upstreams: &Upstreams, endpoint: usize) -> State {
    upstreams.http("x").unwrap().cluster().snapshot()[endpoint].breaker_state()
}

#[tokio::test(start_paused = true)]
async fn a_call_ends_at_the_request_deadline_and_propagates_what_is_left() {
    let seen = Arc::new(Mutex::new(None::<String>));
    let s = seen.clone();
    let router = Router::new().fallback(move |headers: http::HeaderMap| {
        let s = s.clone();
        async move {
            *s.lock().unwrap() =
                headers.get(deadline::HEADER).map(|v| v.to_str().unwrap().to_owned());
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
    let server = MockServer::start(router).await;
    let upstreams = upstreams("t-deadline", &[server.url()], "");
    let started = Instant::now();
    let request_deadline = started + Duration::from_millis(300);
    let err = deadline::within(request_deadline, get(&upstreams)).await.unwrap_err();
    assert_eq!(err.code(), "upstream_timeout");
    // Exactly the request's deadline (the upstream's own 1s is later), on the paused clock.
    assert_eq!(started.elapsed(), Duration::from_millis(300));
    assert_eq!(seen.lock().unwrap().as_deref(), Some("300"));
}

#[tokio::test(start_paused = true)]
async fn a_response_that_hangs_after_its_headers_times_out_at_the_deadline() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut buf = [0_u8; 1024];
            let _ = stream.read(&mut buf).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"partial\":")
                .await;
            open.push(stream);
        }
    });
    let upstreams = upstreams("t-hang", &[url], "");
    let started = Instant::now();
    let err = get(&upstreams).await.unwrap_err();
    assert_eq!(err.code(), "upstream_timeout");
    assert_eq!(started.elapsed(), Duration::from_secs(1), "the upstream's timeout, no later");
}

#[tokio::test(start_paused = true)]
async fn idempotent_calls_are_retried_on_another_endpoint_others_are_not() {
    let refused = portico_testkit::refused_url().await;
    let good = Backend::start(200).await;
    let extra = format!("balance = \"round_robin\"\n{LENIENT}");
    let upstreams = upstreams("t-retry", &[refused, good.url()], &extra);
    for _ in 0..6 {
        assert_eq!(get(&upstreams).await.unwrap()["status"], 200);
    }
    assert_eq!(good.hits(), 6);
    // A POST that fails to connect is not repeated: the refused endpoint's turns fail.
    let x = upstreams.http("x").unwrap();
    let mut failed = 0;
    for _ in 0..4 {
        if x.post("/").fetch::<serde_json::Value>().await.is_err() {
            failed += 1;
        }
    }
    assert_eq!(failed, 2, "round robin sends every other POST to the refused endpoint");
}

#[tokio::test(start_paused = true)]
async fn the_retry_budget_caps_retries_at_its_share_of_calls() {
    let down = Backend::start(503).await;
    let extra = format!(
        "[upstreams.x.retry]\nattempts = 4\nbudget_ratio = 0.2\nmin_per_second = 0\n{LENIENT}"
    );
    let upstreams = upstreams("t-budget", &[down.url()], &extra);
    for _ in 0..100 {
        let err = get(&upstreams).await.unwrap_err();
        assert_eq!(err.upstream_answered(), Some(StatusCode::SERVICE_UNAVAILABLE));
    }
    // Without a budget: 400 requests. With it: the 100 calls and 20 % more.
    assert_eq!(down.hits(), 120);
}

#[tokio::test(start_paused = true)]
async fn a_flapping_backend_is_smoothed_over_by_retries() {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let router = Router::new().fallback(move || {
        let n = h.fetch_add(1, Ordering::SeqCst);
        async move {
            if n.is_multiple_of(2) {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::NO_CONTENT
            }
        }
    });
    let server = MockServer::start(router).await;
    let extra = format!("[upstreams.x.retry]\nmin_per_second = 100\n{LENIENT}");
    let upstreams = upstreams("t-flap", &[server.url()], &extra);
    let x = upstreams.http("x").unwrap();
    for _ in 0..10 {
        let response = x.get("/").send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 20);
}

#[tokio::test(start_paused = true)]
async fn the_breaker_opens_fails_fast_half_opens_and_closes() {
    let backend = Backend::start(500).await;
    let extra = "[upstreams.x.breaker]\nconsecutive_failures = 3\nopen_for = \"5s\"\n\
                 half_open_probes = 2\n[upstreams.x.outlier]\nconsecutive_failures = 1000\n";
    let upstreams = upstreams("t-breaker", &[backend.url()], extra);
    for _ in 0..3 {
        assert_eq!(get(&upstreams).await.unwrap_err().code(), "upstream_error");
    }
    assert_eq!(breaker_state(&upstreams, 0), State::Open);
    // Open: fails fast, without a call.
    let started = Instant::now();
    let err = get(&upstreams).await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "upstream_circuit_open")
    );
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(backend.hits(), 3);
    let response = err.into_response();
    assert_eq!(response.headers()[http::header::RETRY_AFTER], "5", "the breaker's open_for");

    // After the wait a probe goes through; it fails, so the breaker opens again.
    tokio::time::advance(Duration::from_secs(5)).await;
    assert!(get(&upstreams).await.is_err());
    assert_eq!(backend.hits(), 4);
    assert_eq!(breaker_state(&upstreams, 0), State::Open);
    assert_eq!(get(&upstreams).await.unwrap_err().code(), "upstream_circuit_open");

    // The backend recovers: two good probes close it.
    backend.set(200);
    tokio::time::advance(Duration::from_secs(5)).await;
    get(&upstreams).await.unwrap();
    assert_eq!(breaker_state(&upstreams, 0), State::HalfOpen);
    get(&upstreams).await.unwrap();
    assert_eq!(breaker_state(&upstreams, 0), State::Closed);
    assert_eq!(backend.hits(), 6);

    let metrics = crate::metrics::handle().unwrap().render();
    let gauge = metrics
        .lines()
        .find(|l| l.starts_with("portico_upstream_breaker_state{") && l.contains("t-breaker"))
        .unwrap();
    assert!(gauge.ends_with(" 0"), "{gauge}");
    assert!(metrics.lines().any(|l| l.contains("t-breaker")
        && l.starts_with("portico_upstream_errors_total")
        && l.contains("kind=\"circuit_open\"")
        && l.ends_with(" 2")));
}

#[tokio::test(start_paused = true)]
async fn a_failing_endpoint_is_ejected_for_a_growing_period_and_readmitted() {
    let bad = Backend::start(503).await;
    let good = Backend::start(200).await;
    let extra = "balance = \"round_robin\"\n[upstreams.x.retry]\nattempts = 1\n\
                 [upstreams.x.breaker]\nconsecutive_failures = 1000\nmin_calls = 1000\n\
                 [upstreams.x.outlier]\nconsecutive_failures = 2\nbase_ejection = \"10s\"\n";
    let upstreams = upstreams("t-eject", &[bad.url(), good.url()], extra);
    for _ in 0..10 {
        let _ = get(&upstreams).await;
    }
    assert_eq!(bad.hits(), 2, "ejected after two failures in a row");
    assert_eq!(good.hits(), 8);

    tokio::time::advance(Duration::from_secs(10)).await;
    for _ in 0..10 {
        let _ = get(&upstreams).await;
    }
    assert_eq!(bad.hits(), 4, "readmitted, failed twice more, ejected again");

    // The second ejection lasts twice as long.
    tokio::time::advance(Duration::from_secs(10)).await;
    let _ = get(&upstreams).await;
    let _ = get(&upstreams).await;
    assert_eq!(bad.hits(), 4, "still out after 10 s");
    tokio::time::advance(Duration::from_secs(10)).await;
    let _ = get(&upstreams).await;
    let _ = get(&upstreams).await;
    assert_eq!(bad.hits(), 5, "back after 20 s");
}

#[tokio::test(start_paused = true)]
async fn ejection_never_takes_more_than_its_share_of_the_pool() {
    let one = Backend::start(503).await;
    let two = Backend::start(503).await;
    let extra = "balance = \"round_robin\"\n[upstreams.x.retry]\nattempts = 1\n\
                 [upstreams.x.breaker]\nconsecutive_failures = 1000\nmin_calls = 1000\n\
                 [upstreams.x.outlier]\nconsecutive_failures = 1\nmax_ejected_share = 0.5\n";
    let upstreams = upstreams("t-share", &[one.url(), two.url()], extra);
    for _ in 0..10 {
        let _ = get(&upstreams).await;
    }
    // One of the two may be out; the other keeps taking calls.
    assert_eq!(one.hits().min(two.hits()), 1);
    assert_eq!(one.hits() + two.hits(), 10);
}

#[tokio::test(start_paused = true)]
async fn calls_over_the_concurrency_limit_are_refused_at_once() {
    let slow = Backend::with_delay(200, Duration::from_millis(500)).await;
    let upstreams = upstreams("t-limit", &[slow.url()], "max_concurrent = 2\n");
    let first = tokio::spawn({
        let upstreams = upstreams.clone();
        async move { get(&upstreams).await }
    });
    let second = tokio::spawn({
        let upstreams = upstreams.clone();
        async move { get(&upstreams).await }
    });
    // Let both reach the backend.
    while slow.hits() < 2 {
        tokio::task::yield_now().await;
    }
    let started = Instant::now();
    let err = get(&upstreams).await.unwrap_err();
    assert_eq!(
        (err.status(), err.code()),
        (StatusCode::SERVICE_UNAVAILABLE, "upstream_overloaded")
    );
    assert_eq!(started.elapsed(), Duration::ZERO, "refused, not queued");
    let response = err.into_response();
    assert_eq!(response.headers()[http::header::RETRY_AFTER], "1");
    assert!(first.await.unwrap().is_ok() && second.await.unwrap().is_ok());
    get(&upstreams).await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_slow_read_is_hedged_to_another_endpoint_and_the_first_good_answer_wins() {
    let slow = Backend::with_delay(200, Duration::from_millis(800)).await;
    let fast = Backend::with_delay(200, Duration::from_millis(10)).await;
    let extra = "balance = \"round_robin\"\n[upstreams.x.hedge]\ndelay = \"50ms\"\n";
    let upstreams = upstreams("t-hedge", &[slow.url(), fast.url()], extra);
    let started = Instant::now();
    get(&upstreams).await.unwrap();
    assert_eq!(
        started.elapsed(),
        Duration::from_millis(60),
        "hedged at 50 ms, answered 10 ms later"
    );
    assert_eq!((slow.hits(), fast.hits()), (1, 1));
    // Writes are never hedged: round robin's next turn is the slow one, and it is waited for.
    let started = Instant::now();
    upstreams.http("x").unwrap().post("/").fetch::<serde_json::Value>().await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_millis(800));
    assert_eq!((slow.hits(), fast.hits()), (2, 1));
}

#[tokio::test(start_paused = true)]
async fn consistent_hashing_keeps_a_key_on_one_endpoint() {
    let backends =
        [Backend::start(200).await, Backend::start(200).await, Backend::start(200).await];
    let urls: Vec<String> = backends.iter().map(Backend::url).collect();
    let upstreams = upstreams("t-hash", &urls, "balance = \"consistent_hash\"\n");
    let x = upstreams.http("x").unwrap();
    // Twelve keys: the endpoints' ports are random, and with four keys all of them landing on
    // one of three endpoints happened one run in 27.
    let keys = [
        "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
        "mallory", "niaj",
    ];
    for key in keys {
        let before: Vec<usize> = backends.iter().map(Backend::hits).collect();
        for _ in 0..5 {
            x.get("/").hash_key(key).fetch::<serde_json::Value>().await.unwrap();
        }
        let gained: Vec<usize> =
            backends.iter().zip(&before).map(|(b, before)| b.hits() - before).collect();
        assert!(gained.contains(&5), "{key}: {gained:?}");
    }
    // Keys spread: not every key on one endpoint.
    assert!(backends.iter().filter(|b| b.hits() > 0).count() > 1);
}

#[tokio::test(start_paused = true)]
async fn least_request_steers_away_from_a_slow_endpoint() {
    let slow = Backend::with_delay(200, Duration::from_millis(900)).await;
    let fast = Backend::with_delay(200, Duration::from_millis(1)).await;
    let upstreams = upstreams("t-p2c", &[slow.url(), fast.url()], "");
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let upstreams = upstreams.clone();
        calls.spawn(async move { get(&upstreams).await });
        // Calls arrive 10 ms apart: the slow endpoint's calls pile up.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    while let Some(done) = calls.join_next().await {
        done.unwrap().unwrap();
    }
    assert!(slow.hits() <= 4, "slow {} fast {}", slow.hits(), fast.hits());
}

#[tokio::test(start_paused = true)]
async fn active_health_checks_take_a_sick_endpoint_out_and_back() {
    let healthy = Arc::new(AtomicBool::new(false));
    let h = healthy.clone();
    let hits = Arc::new(AtomicUsize::new(0));
    let n = hits.clone();
    let router = Router::new()
        .route(
            "/healthz",
            axum::routing::get(move || {
                let up = h.load(Ordering::SeqCst);
                async move { if up { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE } }
            }),
        )
        .fallback(move || {
            n.fetch_add(1, Ordering::SeqCst);
            async { axum::Json(serde_json::json!({})) }
        });
    let sick = MockServer::start(router).await;
    let good = Backend::start(200).await;
    let extra = "balance = \"round_robin\"\n[upstreams.x.health_check]\ninterval = \"1s\"\n\
                 unhealthy_after = 2\nhealthy_after = 1\n";
    let upstreams = upstreams("t-health", &[sick.url(), good.url()], extra);
    // Two failed checks (at 0 s and 1 s) mark it unhealthy.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for _ in 0..6 {
        get(&upstreams).await.unwrap();
    }
    assert_eq!(hits.load(Ordering::SeqCst), 0);
    healthy.store(true, Ordering::SeqCst);
    tokio::time::sleep(Duration::from_secs(1)).await;
    for _ in 0..6 {
        get(&upstreams).await.unwrap();
    }
    assert_eq!(hits.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn upstream_metrics_count_requests_errors_retries_and_latency() {
    let refused = portico_testkit::refused_url().await;
    let good = Backend::start(200).await;
    let extra = format!("balance = \"round_robin\"\n{LENIENT}");
    let upstreams = upstreams("t-metrics", &[refused, good.url()], &extra);
    for _ in 0..4 {
        get(&upstreams).await.unwrap();
    }
    let text = crate::metrics::handle().unwrap().render();
    let line = |prefix: &str, has: &str| {
        text.lines()
            .find(|l| {
                l.starts_with(prefix) && l.contains("gateway=\"t-metrics\"") && l.contains(has)
            })
            .unwrap_or_else(|| panic!("no {prefix} {has} in\n{text}"))
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned()
    };
    // Round robin turns once per pick, so every call starts at the refused endpoint: 4 calls,
    // 8 attempts, 4 retries.
    assert_eq!(line("portico_upstream_requests_total", ""), "8");
    assert_eq!(line("portico_upstream_errors_total", "kind=\"connect\""), "4");
    assert_eq!(line("portico_upstream_retries_total", ""), "4");
    assert_eq!(line("portico_upstream_request_duration_seconds_count", ""), "8");
    assert_eq!(line("portico_upstream_endpoints", ""), "2");
}

#[tokio::test(start_paused = true)]
async fn a_grpc_read_that_finds_an_endpoint_down_is_retried_on_another() {
    use portico_contracts::inventory::{GetStockRequest, inventory_client::InventoryClient};
    use portico_testkit::inventory::{MockInventory, Script};

    let inventory = MockInventory::start(Script::with_stock(&[("SKU-1", 7)])).await;
    let refused = portico_testkit::refused_url().await;
    let text = format!(
        "[upstreams.inventory]\nprotocol = \"grpc\"\nendpoints = {:?}\nbalance = \"round_robin\"\n",
        [refused, inventory.url()]
    );
    let config = GatewayConfig::from_toml(&text).unwrap();
    let upstreams = Upstreams::for_gateway("t-grpc", &config).unwrap();
    let inventory = upstreams.grpc("inventory").unwrap();
    for _ in 0..4 {
        let level =
            inventory
                .call(
                    "GetStock",
                    GetStockRequest { sku: "SKU-1".into() },
                    |channel, request| async move {
                        InventoryClient::new(channel).get_stock(request).await
                    },
                )
                .await
                .unwrap();
        assert_eq!(level.total_available, 7);
    }
}

#[tokio::test]
async fn a_client_that_disconnects_cancels_the_upstream_calls_it_was_waiting_for() {
    use crate::access::{Access, Routes};

    let silent = portico_testkit::silent_upstream().await;
    let url = silent.url.clone();
    // Nothing times out for 30 s: only the disconnect can end the call within the test.
    let text = format!(
        "[limits]\nrequest_timeout = \"30s\"\n[upstreams.x]\nendpoints = [\"{url}\"]\ntimeout = \"30s\"\n"
    );
    let config = GatewayConfig::from_toml(&text).unwrap();
    let upstreams = Upstreams::for_gateway("t-cancel", &config).unwrap();
    let calls = upstreams.clone();
    let routes = Routes::new().get("/page", Access::public(), move || {
        let calls = calls.clone();
        async move {
            let x = calls.http("x")?;
            x.get("/").fetch::<serde_json::Value>().await.map(axum::Json)
        }
    });
    let app = crate::stack::gateway("t-cancel", routes, &config, &upstreams).unwrap();
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = front.local_addr().unwrap();
    tokio::spawn(crate::server::serve(
        front,
        app,
        crate::server::Serving::with_header_read_timeout(Duration::from_secs(5)),
        std::future::pending(),
    ));

    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client.write_all(b"GET /page HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), silent.asked).await.unwrap().unwrap();
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), silent.closed)
        .await
        .expect("the upstream call was cancelled when the client left")
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_watched_file_moves_calls_to_new_endpoints_without_a_restart() {
    let one = Backend::start(200).await;
    let two = Backend::start(200).await;
    let dir =
        std::env::temp_dir().join(format!("portico-cluster-discovery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("x.endpoints");
    std::fs::write(&file, format!("# the catalog fleet\n{}\n", one.url())).unwrap();
    let text = format!(
        "[upstreams.x]\ntimeout = \"1s\"\n[upstreams.x.discovery]\nfile = {:?}\ninterval = \"1s\"\n",
        file.display().to_string()
    );
    let config = GatewayConfig::from_toml(&text).unwrap();
    let upstreams = Upstreams::for_gateway("t-discovery", &config).unwrap();
    let step = Duration::from_millis(1100);

    tokio::time::sleep(step).await;
    get(&upstreams).await.unwrap();
    assert_eq!((one.hits(), two.hits()), (1, 0));

    std::fs::write(&file, format!("{}\n", two.url())).unwrap();
    tokio::time::sleep(step).await;
    get(&upstreams).await.unwrap();
    assert_eq!((one.hits(), two.hits()), (1, 1), "the new set, without a restart");

    // An emptied file is a mistake, not an empty fleet: the last good set stays.
    std::fs::write(&file, "").unwrap();
    tokio::time::sleep(step).await;
    get(&upstreams).await.unwrap();
    assert_eq!(two.hits(), 2);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_grpc_call_carries_the_time_the_request_has_left_as_grpc_timeout() {
    use portico_contracts::inventory::{GetStockRequest, inventory_client::InventoryClient};

    // A gRPC endpoint (HTTP/2) that records `grpc-timeout` and answers NOT_FOUND.
    let seen = Arc::new(Mutex::new(None::<String>));
    let s = seen.clone();
    let router = Router::new().fallback(move |headers: http::HeaderMap| {
        let s = s.clone();
        async move {
            *s.lock().unwrap() =
                headers.get("grpc-timeout").map(|v| v.to_str().unwrap().to_owned());
            [("content-type", "application/grpc"), ("grpc-status", "5")]
        }
    });
    let server = MockServer::start(router).await;
    let text = format!(
        "[upstreams.inventory]\nprotocol = \"grpc\"\nendpoints = [\"{}\"]\ntimeout = \"1s\"\n",
        server.url()
    );
    let upstreams =
        Upstreams::for_gateway("t-grpc-deadline", &GatewayConfig::from_toml(&text).unwrap())
            .unwrap();
    let inventory = upstreams.grpc("inventory").unwrap();
    let request_deadline = Instant::now() + Duration::from_millis(300);
    let call = inventory.call(
        "GetStock",
        GetStockRequest { sku: "x".into() },
        |channel, request| async move { InventoryClient::new(channel).get_stock(request).await },
    );
    let err = deadline::within(request_deadline, call).await.unwrap_err();
    assert_eq!(err.code(), "not_found");
    // `grpc-timeout` is an integer and a unit (RFC: H M S m u n); 300 ms left, not the 1 s.
    let sent = seen.lock().unwrap().clone().expect("grpc-timeout sent");
    let (value, unit) = sent.split_at(sent.len() - 1);
    let value: u64 = value.parse().unwrap();
    let sent = match unit {
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        "S" => Duration::from_secs(value),
        other => panic!("unit {other}"),
    };
    assert_eq!(sent, Duration::from_millis(300));
}
