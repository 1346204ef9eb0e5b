//! Plans and the guessing throttle on a virtual clock.

use std::{net::IpAddr, time::Duration};

use super::*;
use crate::auth::Credential;

const SECOND: u64 = 1_000_000_000;
/// Noon on a UTC day.
const NOON: u64 = 20_000 * 86_400 + 12 * 3600;

fn plan(rate: f64, burst: u32, quota_per_day: Option<u64>) -> Plan {
    Plan::new("test", &memory(rate, burst, quota_per_day), 1)
}

fn memory(rate: f64, burst: u32, quota_per_day: Option<u64>) -> PlanConfig {
    PlanConfig {
        rate,
        burst,
        quota_per_day,
        store: Store::Memory,
        on_store_error: OnStoreError::Open,
    }
}

fn text(value: &HeaderValue) -> &str {
    value.to_str().unwrap()
}

#[test]
fn a_plan_admits_its_burst_then_refuses_with_the_headers_of_every_limit() {
    let basic = plan(5.0, 10, Some(10_000));
    assert_eq!(text(&basic.policy), "\"burst\";q=10;w=2, \"day\";q=10000;w=86400");
    let mut state = PlanState::default();
    let now = 50 * SECOND;
    for i in 0..10_u64 {
        let decision = basic.check(&mut state, now, NOON);
        assert_eq!(decision.refused_by, None, "request {i}");
        assert_eq!(
            text(&decision.limit),
            format!(
                "\"burst\";r={};t={}, \"day\";r={};t=43200",
                9 - i,
                (i + 1).div_ceil(5),
                9_999 - i
            )
        );
    }
    let refused = basic.check(&mut state, now, NOON);
    assert_eq!(refused.refused_by, Some("burst"));
    assert_eq!(refused.retry_after, 1);
    assert_eq!(text(&refused.limit), "\"burst\";r=0;t=2, \"day\";r=9990;t=43200");
    assert_eq!(state.used, 10, "a refused request does not count against the quota");
    // One interval later, one more.
    assert_eq!(basic.check(&mut state, now + SECOND / 5, NOON).refused_by, None);
}

#[test]
fn the_daily_quota_counts_admitted_requests_and_resets_at_utc_midnight() {
    let tiny = plan(1000.0, 1000, Some(3));
    let mut state = PlanState::default();
    let mut now = SECOND;
    for _ in 0..3 {
        assert_eq!(tiny.check(&mut state, now, NOON).refused_by, None);
        now += SECOND;
    }
    let refused = tiny.check(&mut state, now, NOON);
    assert_eq!(refused.refused_by, Some("day"));
    assert_eq!(refused.retry_after, 43_200, "until midnight UTC");
    assert!(text(&refused.limit).ends_with("\"day\";r=0;t=43200"));
    // The next UTC day starts afresh.
    let tomorrow = NOON + 12 * 3600;
    assert_eq!(tiny.check(&mut state, now, tomorrow).refused_by, None);
    assert_eq!(state.used, 1);
}

fn partner(subject: &str) -> Principal {
    Principal {
        kind: PrincipalKind::Partner,
        subject: subject.into(),
        scopes: Vec::new(),
        plan: None,
        credential: Credential::ApiKey,
    }
}

#[tokio::test]
async fn one_partners_keys_share_one_plan_and_other_callers_are_not_limited() {
    let plans = BTreeMap::from([("basic".to_owned(), memory(1.0, 2, None))]);
    // globex has two keys during a rotation; acme's plan is not defined here.
    let keys = [("globex", "basic"), ("globex", "basic"), ("acme", "gold")];
    let limiter =
        Limiter::new(&plans, keys.into_iter(), &RateLimitsConfig::default(), None, false).unwrap();
    let globex = partner("globex");
    assert!(limiter.check(&globex).await.unwrap().refused_by.is_none());
    assert!(limiter.check(&globex).await.unwrap().refused_by.is_none());
    assert_eq!(limiter.check(&globex).await.unwrap().refused_by, Some("burst"));
    assert!(limiter.check(&partner("acme")).await.is_none(), "no plan, no limit");
    let user = Principal { kind: PrincipalKind::User, ..partner("globex") };
    assert!(limiter.check(&user).await.is_none(), "a user named like a partner is not it");
}

#[test]
fn failed_authentications_throttle_an_address_for_the_rest_of_the_window() {
    let limits = RateLimitsConfig {
        auth_failures: 3,
        auth_failure_window: Duration::from_secs(60),
        tracked_addresses: 1024,
    };
    let throttle = Throttle::new(&limits);
    let guesser: IpAddr = "203.0.113.7".parse().unwrap();
    let neighbour: IpAddr = "203.0.113.8".parse().unwrap();
    let at = Duration::from_secs(100);
    for i in 0..3 {
        assert_eq!(throttle.throttled(guesser, at), None, "after {i} failures");
        throttle.failed(guesser, at);
    }
    assert_eq!(throttle.throttled(guesser, at + Duration::from_secs(20)), Some(40));
    assert_eq!(throttle.throttled(neighbour, at), None, "only the guessing address");
    // The window passes: verified again, and a new failure starts a new window.
    assert_eq!(throttle.throttled(guesser, at + Duration::from_secs(60)), None);
    throttle.failed(guesser, at + Duration::from_secs(61));
    assert_eq!(throttle.throttled(guesser, at + Duration::from_secs(61)), None);
}

#[test]
fn ipv6_clients_are_throttled_by_their_64_and_the_state_stays_bounded() {
    let limits = RateLimitsConfig {
        auth_failures: 1,
        auth_failure_window: Duration::from_secs(60),
        tracked_addresses: 160,
    };
    let throttle = Throttle::new(&limits);
    let at = Duration::from_secs(1);
    throttle.failed("2001:db8:1:2::1".parse().unwrap(), at);
    assert!(throttle.throttled("2001:db8:1:2:ffff::9".parse().unwrap(), at).is_some());
    assert!(throttle.throttled("2001:db8:1:3::1".parse().unwrap(), at).is_none());
    // An IPv4-mapped address is its IPv4 address.
    throttle.failed("198.51.100.1".parse().unwrap(), at);
    assert!(throttle.throttled("::ffff:198.51.100.1".parse().unwrap(), at).is_some());
    // A flood of addresses evicts the least recently seen; the table never grows past its bound.
    for i in 0..10_000_u32 {
        throttle.failed(IpAddr::from(i.to_be_bytes()), at);
    }
    assert!(throttle.tracked() <= 160, "{} addresses tracked", throttle.tracked());
}

fn link(config: &RedisConfig) -> Arc<crate::redis_store::Link> {
    Arc::new(crate::redis_store::Link::new(config).unwrap())
}

fn shared(rate: f64, burst: u32, quota: Option<u64>, on_store_error: OnStoreError) -> PlanConfig {
    PlanConfig { store: Store::Redis, on_store_error, ..memory(rate, burst, quota) }
}

/// Every key under `prefix` has a TTL; then they are removed.
async fn assert_ttls_and_clean(url: &str, prefix: &str) {
    let client = ::redis::Client::open(url).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> =
        ::redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut connection).await.unwrap();
    assert!(!keys.is_empty(), "the limits left keys under {prefix}");
    for key in &keys {
        let ttl: i64 = ::redis::cmd("PTTL").arg(key).query_async(&mut connection).await.unwrap();
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
        assert!(
            !key.contains("globex") && !key.contains("acme") && !key.contains("alice"),
            "{key} names who is limited"
        );
    }
    let _: () = ::redis::cmd("DEL").arg(&keys).query_async(&mut connection).await.unwrap();
}

#[tokio::test]
async fn two_replicas_sharing_redis_hold_one_limit() {
    let Some(url) = portico_testkit::services::redis_or_skip("two_replicas_sharing_redis").await
    else {
        return;
    };
    let prefix = portico_testkit::services::key_prefix("replicas");
    let redis = RedisConfig {
        url: url.clone(),
        timeout: Duration::from_secs(2),
        replicas: 2,
        prefix: prefix.clone(),
    };
    // A rate that refills nothing during the test: what both admit together is the burst.
    let plans =
        BTreeMap::from([("basic".to_owned(), shared(0.001, 20, Some(1000), OnStoreError::Closed))]);
    let replica = || {
        let keys = [("globex", "basic")].into_iter();
        Limiter::new(&plans, keys, &RateLimitsConfig::default(), Some(&link(&redis)), false)
            .unwrap()
    };
    let (a, b) = (replica(), replica());
    let globex = partner("globex");
    let mut admitted = 0;
    for i in 0..40 {
        let limiter = if i % 2 == 0 { &a } else { &b };
        let decision = limiter.check(&globex).await.unwrap();
        assert_ne!(decision.refused_by, Some("store"), "Redis answered");
        if decision.refused_by.is_none() {
            admitted += 1;
        }
    }
    assert!((18..=22).contains(&admitted), "{admitted} admitted by two replicas, limit 20");
    // The day's count is shared as well.
    let last = a.check(&globex).await.unwrap();
    assert!(text(&last.limit).contains(&format!("\"day\";r={}", 1000 - admitted)), "{last:?}");
    assert_ttls_and_clean(&url, &prefix).await;
}

#[tokio::test]
async fn a_redis_outage_follows_each_plans_policy_and_recovers_by_itself() {
    let Some(url) = portico_testkit::services::redis_or_skip("a_redis_outage").await else {
        return;
    };
    let proxy =
        portico_testkit::services::FaultProxy::start(portico_testkit::services::REDIS).await;
    let prefix = portico_testkit::services::key_prefix("outage");
    let redis = RedisConfig {
        url: format!("redis://{}", proxy.addr()),
        timeout: Duration::from_millis(500),
        replicas: 2,
        prefix: prefix.clone(),
    };
    let plans = BTreeMap::from([
        ("open".to_owned(), shared(0.001, 10, None, OnStoreError::Open)),
        ("closed".to_owned(), shared(0.001, 10, None, OnStoreError::Closed)),
    ]);
    let keys = [("acme", "open"), ("globex", "closed")].into_iter();
    let limiter =
        Limiter::new(&plans, keys, &RateLimitsConfig::default(), Some(&link(&redis)), false)
            .unwrap();
    let (acme, globex) = (partner("acme"), partner("globex"));
    assert_eq!(limiter.check(&acme).await.unwrap().refused_by, None);
    assert_eq!(limiter.check(&globex).await.unwrap().refused_by, None);

    proxy.cut();
    // Open: this replica admits its share of the burst (10 / 2 replicas) on its own, then 429.
    let mut admitted = 0;
    for _ in 0..8 {
        match limiter.check(&acme).await.unwrap().refused_by {
            None => admitted += 1,
            Some(limit) => assert_eq!(limit, "burst"),
        }
    }
    assert_eq!(admitted, 5, "the local share while Redis is down");
    // Closed: refused, at once, for as long as the store is down.
    let started = Instant::now();
    for _ in 0..20 {
        assert_eq!(limiter.check(&globex).await.unwrap().refused_by, Some("store"));
    }
    assert!(started.elapsed() < Duration::from_secs(2), "a known-down store is not waited for");

    proxy.restore();
    // Recovered without a restart: a probe finds Redis again within a few seconds.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let decision = limiter.check(&globex).await.unwrap();
        if decision.refused_by != Some("store") {
            assert_eq!(decision.refused_by, None);
            break;
        }
        assert!(Instant::now() < deadline, "Redis never used again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ttls_and_clean(&url, &prefix).await;
}

#[tokio::test]
async fn a_routes_limit_in_redis_holds_across_replicas_per_address_and_per_caller() {
    let Some(url) = portico_testkit::services::redis_or_skip("a_routes_limit_in_redis").await
    else {
        return;
    };
    let prefix = portico_testkit::services::key_prefix("route");
    let redis = RedisConfig {
        url: url.clone(),
        timeout: Duration::from_secs(2),
        replicas: 2,
        prefix: prefix.clone(),
    };
    let replica = |per: Per| {
        let limiter = Limiter::new(
            &BTreeMap::new(),
            std::iter::empty(),
            &RateLimitsConfig::default(),
            Some(&link(&redis)),
            true,
        )
        .unwrap();
        let config = RouteLimitConfig {
            per,
            rate: 0.001,
            burst: 6,
            tracked: 1024,
            store: Store::Redis,
            on_store_error: OnStoreError::Closed,
        };
        RouteLimit::new("web.product", &config, limiter.store())
    };
    let client: IpAddr = "198.51.100.7".parse().unwrap();
    let other: IpAddr = "198.51.100.8".parse().unwrap();
    // Per address: two replicas, one address, one limit of 6; another address has its own.
    let (a, b) = (replica(Per::Address), replica(Per::Address));
    let mut admitted = 0;
    for i in 0..12 {
        let limit = if i % 2 == 0 { &a } else { &b };
        let decision = limit.check(client, None).await;
        assert_ne!(decision.refused_by, Some("store"));
        admitted += usize::from(decision.refused_by.is_none());
    }
    assert_eq!(admitted, 6, "one limit across the replicas");
    assert_eq!(b.check(other, None).await.refused_by, None);
    // Per caller: the same user through either replica, from any address, is one caller.
    let (c, d) = (replica(Per::Caller), replica(Per::Caller));
    let alice = Principal { kind: PrincipalKind::User, ..partner("alice") };
    let mut admitted = 0;
    for i in 0..12 {
        let (limit, from) = if i % 2 == 0 { (&c, client) } else { (&d, other) };
        admitted += usize::from(limit.check(from, Some(&alice)).await.refused_by.is_none());
    }
    assert_eq!(admitted, 6);
    assert_ttls_and_clean(&url, &prefix).await;
}

#[tokio::test]
async fn a_routes_per_caller_limit_and_the_plan_are_one_round_trip_and_all_or_nothing() {
    let Some(url) = portico_testkit::services::redis_or_skip("one_round_trip").await else {
        return;
    };
    let proxy =
        portico_testkit::services::FaultProxy::start(portico_testkit::services::REDIS).await;
    let prefix = portico_testkit::services::key_prefix("one-trip");
    let redis = RedisConfig {
        url: format!("redis://{}", proxy.addr()),
        timeout: Duration::from_secs(2),
        replicas: 1,
        prefix: prefix.clone(),
    };
    let plans =
        BTreeMap::from([("gold".to_owned(), shared(0.001, 10, Some(100), OnStoreError::Closed))]);
    let limiter = Limiter::new(
        &plans,
        [("acme", "gold")].into_iter(),
        &RateLimitsConfig::default(),
        Some(&link(&redis)),
        true,
    )
    .unwrap();
    let config = RouteLimitConfig {
        per: Per::Caller,
        rate: 0.001,
        burst: 3,
        tracked: 1024,
        store: Store::Redis,
        on_store_error: OnStoreError::Closed,
    };
    let route = RouteLimit::new("partner.orders", &config, limiter.store());
    let acme = partner("acme");
    let client: IpAddr = "198.51.100.9".parse().unwrap();
    let evalsha = |sent: &[u8]| sent.windows(7).filter(|w| w == b"EVALSHA").count();

    // The first request also loads the script; count the ones after it.
    let [on_route, on_plan] = limiter.check_caller(Some(&route), client, Some(&acme), true).await;
    let (on_route, on_plan) = (on_route.unwrap(), on_plan.unwrap());
    assert_eq!((on_route.refused_by, on_plan.refused_by), (None, None));
    assert!(text(&on_route.limit).contains("\"partner.orders\";r=2"), "{on_route:?}");
    assert!(text(&on_plan.limit).contains("\"day\";r=99"), "{on_plan:?}");
    let before = evalsha(&proxy.sent());
    for expected_route_left in [1, 0] {
        let [on_route, on_plan] =
            limiter.check_caller(Some(&route), client, Some(&acme), true).await;
        let (on_route, on_plan) = (on_route.unwrap(), on_plan.unwrap());
        assert_eq!((on_route.refused_by, on_plan.refused_by), (None, None));
        let left = format!("\"partner.orders\";r={expected_route_left}");
        assert!(text(&on_route.limit).contains(&left), "{on_route:?}");
    }
    // The route refuses; the plan admits but is not counted (today's count stays at 3).
    for _ in 0..2 {
        let [on_route, on_plan] =
            limiter.check_caller(Some(&route), client, Some(&acme), true).await;
        let (on_route, on_plan) = (on_route.unwrap(), on_plan.unwrap());
        assert_eq!(on_route.refused_by, Some("route"));
        assert_eq!(on_plan.refused_by, None, "the plan had room");
        assert!(text(&on_plan.limit).contains("\"day\";r=97"), "{on_plan:?}");
        assert!(text(&on_plan.limit).contains("\"burst\";r=7"), "{on_plan:?}");
    }
    assert_eq!(evalsha(&proxy.sent()) - before, 4, "one EVALSHA per request, both limits in it");
    // Both limits of the caller share one hash tag: one Redis Cluster slot.
    let client_ = ::redis::Client::open(url.as_str()).unwrap();
    let mut connection = client_.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> =
        ::redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(&mut connection).await.unwrap();
    let tags: std::collections::BTreeSet<&str> =
        keys.iter().filter_map(|key| key.split(['{', '}']).nth(1)).collect();
    assert_eq!((keys.len(), tags.len()), (3, 1), "{keys:?}");
    assert_ttls_and_clean(&url, &prefix).await;
}

#[tokio::test]
async fn without_a_shared_store_the_plan_is_not_counted_once_the_route_refused() {
    let plans = BTreeMap::from([("gold".to_owned(), memory(0.001, 10, Some(100)))]);
    let limiter = Limiter::new(
        &plans,
        [("acme", "gold")].into_iter(),
        &RateLimitsConfig::default(),
        None,
        false,
    )
    .unwrap();
    let config = RouteLimitConfig {
        per: Per::Caller,
        rate: 0.001,
        burst: 1,
        tracked: 16,
        store: Store::Memory,
        on_store_error: OnStoreError::Open,
    };
    let route = RouteLimit::new("partner.orders", &config, None);
    let acme = partner("acme");
    let client: IpAddr = "198.51.100.9".parse().unwrap();
    let [on_route, on_plan] = limiter.check_caller(Some(&route), client, Some(&acme), true).await;
    assert_eq!(on_route.unwrap().refused_by, None);
    assert!(text(&on_plan.unwrap().limit).contains("\"day\";r=99"));
    let [on_route, on_plan] = limiter.check_caller(Some(&route), client, Some(&acme), true).await;
    assert_eq!(on_route.unwrap().refused_by, Some("route"));
    assert!(on_plan.is_none(), "the plan is not asked once the route refused");
    let usage = limiter.usage(&acme).unwrap();
    assert_eq!(usage.used_today, 1);
    // A route that does not count toward plans asks only the route.
    let [_, on_plan] = limiter.check_caller(None, client, Some(&acme), false).await;
    assert!(on_plan.is_none());
}
