//! Tests of the fault spec grammar and of the layer, driven in-process with `oneshot`; the
//! outages and the gRPC layer are tested over real sockets in `tests/faults.rs`.

use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get as route_get;

use super::*;
use crate::http::testing::{assert_problem, get};

fn faults(spec: &str) -> Faults {
    spec.parse().unwrap_or_else(|e| panic!("{spec}: {e}"))
}

fn error(spec: &str) -> String {
    match parse_fault(spec) {
        Ok(parsed) => panic!("{spec} parsed as {parsed:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn good_specs_parse() {
    let (service, parsed) =
        parse_fault("recommendations=latency:300ms,errors:50%").expect("parses");
    assert_eq!(service, ServiceName::Recommendations);
    assert_eq!(
        parsed,
        Faults { latency: Duration::from_millis(300), error_rate: 0.5, outage: None }
    );
    assert_eq!(faults("errors:12.5%").error_rate, 0.125);
    assert_eq!(faults("errors:0%"), Faults::default());
    assert_eq!(faults("errors:100%").error_rate, 1.0);
    assert_eq!(faults("latency:1s 500ms").latency, Duration::from_millis(1500));
    assert_eq!(faults("down").outage, Some(Outage::Down));
    assert_eq!(faults("hang").outage, Some(Outage::Hang));
    for service in ServiceName::ALL {
        let (parsed, _) = parse_fault(&format!("{service}=down")).expect("every service");
        assert_eq!(parsed, service);
    }
}

#[test]
fn faults_print_as_they_are_written() {
    for spec in ["latency:300ms,errors:50%", "latency:2s", "errors:7%", "down", "hang"] {
        assert_eq!(faults(spec).to_string(), spec);
    }
    assert_eq!(Faults::default().to_string(), "none");
    assert!(Faults::default().is_none());
    assert!(!faults("errors:1%").is_none());
}

#[test]
fn bad_specs_name_the_bad_part_and_what_is_allowed() {
    let cases = [
        ("recommendations=latency:fast", "`fast` is not a duration"),
        ("recommendations=errors:50", "`50` is not a percentage"),
        ("recommendations=errors:150%", "`150%` is not a percentage"),
        ("recommendations=errors:-1%", "`-1%` is not a percentage"),
        ("recommendations=slow", "unknown fault `slow`"),
        ("recommendations=", "empty fault"),
        ("recommendations=latency:1s,", "empty fault"),
        ("recommendations=latency", "`latency` needs a value"),
        ("recommendations=down:5s", "`down:5s` takes no value"),
        ("recommendations=latency:1s,latency:2s", "`latency` given twice"),
        ("recommendations=down,hang", "`hang` given twice or with another outage"),
        ("recommendations=down,errors:5%", "stand alone"),
    ];
    for (spec, expected) in cases {
        let message = error(spec);
        assert!(message.contains(expected), "{spec}: {message}");
        assert!(message.contains("allowed: latency:DURATION"), "{spec}: {message}");
    }
    let message = error("payments=down");
    assert!(message.contains("unknown service `payments`"), "{message}");
    assert!(message.contains("catalog, reviews, recommendations, inventory, orders"), "{message}");
    assert!(error("recommendations").contains("no `=`"));
}

#[test]
fn a_service_named_twice_is_refused() {
    let pairs = ["reviews=down", "inventory=latency:200ms"].map(|s| parse_fault(s).expect("ok"));
    let map = collect_faults(pairs).expect("distinct services");
    assert_eq!(map.len(), 2);
    assert_eq!(map[&ServiceName::Reviews].outage, Some(Outage::Down));

    let twice = ["reviews=down", "reviews=errors:5%"].map(|s| parse_fault(s).expect("ok"));
    let message = collect_faults(twice).expect_err("twice").to_string();
    assert!(message.contains("`reviews` given twice"), "{message}");
}

fn app(faults: Faults) -> Router {
    let ok = || async { axum::Json(serde_json::json!({"ok": true})) };
    crate::http::finish(Router::new().route("/x", route_get(ok)))
        .layer(http_layer(ServiceName::Catalog, faults))
}

#[tokio::test]
async fn error_rate_one_always_fails_zero_never() {
    let failing = app(faults("errors:100%"));
    let healthy = app(faults("errors:0%"));
    for _ in 0..20 {
        let answer = get(&failing, "/x").await;
        assert_problem(&answer, StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        assert!(answer.json["detail"].as_str().is_some_and(|d| d.contains("catalog")));
        assert_eq!(get(&healthy, "/x").await.status, StatusCode::OK);
    }
    // Health checks and unknown routes fail too: the whole service is sick.
    assert_eq!(get(&failing, "/healthz").await.status, StatusCode::SERVICE_UNAVAILABLE);
}

/// Which of `calls` sequential calls failed.
async fn failures(app: &Router, calls: usize) -> Vec<bool> {
    let mut failed = Vec::with_capacity(calls);
    for _ in 0..calls {
        failed.push(get(app, "/x").await.status != StatusCode::OK);
    }
    failed
}

#[tokio::test]
async fn error_rate_fails_that_share_of_the_same_calls_every_run() {
    let first = failures(&app(faults("errors:50%")), 200).await;
    let count = first.iter().filter(|failed| **failed).count();
    assert!((80..=120).contains(&count), "{count} of 200 failed");
    // A fresh service (a new `portico up`) fails exactly the same calls.
    assert_eq!(failures(&app(faults("errors:50%")), 200).await, first);

    let count = failures(&app(faults("errors:10%")), 200).await.into_iter().filter(|f| *f).count();
    assert!((8..=35).contains(&count), "{count} of 200 failed at 10 %");
}

#[tokio::test(start_paused = true)]
async fn latency_delays_every_answer_failing_ones_too() {
    for spec in ["latency:750ms", "latency:750ms,errors:100%"] {
        let latency = Duration::from_millis(750);
        let app = app(faults(spec));
        let started = tokio::time::Instant::now();
        let call = tokio::spawn(async move { get(&app, "/x").await.status });
        // Just short of the latency, the call must still be pending …
        tokio::time::sleep(latency - Duration::from_millis(1)).await;
        assert!(!call.is_finished(), "{spec}");
        // … and once the clock passes it, it completes.
        let status = call.await.expect("task");
        assert!(started.elapsed() >= latency);
        let expected =
            if spec.contains("errors") { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
        assert_eq!(status, expected, "{spec}");
    }
}
