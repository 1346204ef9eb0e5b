//! Rate limits: partner plans (a sustained rate with a burst, and a quota per UTC day, shared by
//! every key of one partner) and the throttle on credential guessing (after too many failed
//! authentications from one client address, its credentialed requests get 429 before any
//! verification runs, so the throttle never tells a right credential from a wrong one).
//!
//! One step of the pipeline, after authentication and the route's access rule, on every
//! transport. The state lives once per process ([`EdgeState`](crate::pipeline::EdgeState)),
//! shared by its workers: a plan's partners are known from the config, so their state is a
//! fixed table; client addresses are not, so theirs is a bounded LRU.

mod gcra;
mod redis;

use std::{
    collections::{BTreeMap, HashMap},
    fmt::Write as _,
    net::IpAddr,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use http::HeaderValue;
use serde::Deserialize;

pub(crate) use self::gcra::Rate;
pub(crate) use self::redis::RedisStore;
use self::redis::{Ask, Unavailable};
pub use crate::redis_store::RedisConfig;

use crate::{
    auth::{Principal, PrincipalKind},
    config::ConfigError,
};

/// What a store decided for one request of a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stored {
    pub(crate) refused_by: Option<&'static str>,
    pub(crate) remaining: u64,
    pub(crate) reset: Duration,
    pub(crate) retry: Duration,
    /// Requests admitted today, this one included when admitted.
    pub(crate) used_today: u64,
}

/// `[plans.<name>]`: what a partner on the plan may send.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanConfig {
    /// Sustained requests per second.
    pub rate: f64,
    /// Requests admitted at once after a quiet spell.
    pub burst: u32,
    /// Admitted requests per UTC calendar day (429s do not count); none when unset.
    #[serde(default)]
    pub quota_per_day: Option<u64>,
    /// Where the plan's counts live: this process (`memory`) or shared by every replica
    /// (`redis`, needs `[redis]`).
    #[serde(default)]
    pub store: Store,
    /// While the shared store fails: `open` admits each replica's share locally, `closed`
    /// answers 503.
    #[serde(default)]
    pub on_store_error: OnStoreError,
}

/// Where a plan's counts live.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Store {
    /// In this process, shared by its workers.
    #[default]
    Memory,
    /// In Redis, shared by every replica.
    Redis,
}

/// What a plan does while its shared store fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnStoreError {
    /// Limit locally, at the plan's rate, burst and quota ÷ `[redis] replicas` (counted).
    #[default]
    Open,
    /// Refuse with 503 and `Retry-After` until the store answers again.
    Closed,
}

/// `[rate_limits]`: limits that hold for every client.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimitsConfig {
    /// Failed authentications from one client address per `auth_failure_window` before its
    /// credentialed requests are refused unverified (0 turns the throttle off).
    pub auth_failures: u32,
    /// The window of `auth_failures`.
    #[serde(with = "humantime_serde")]
    pub auth_failure_window: Duration,
    /// Client addresses whose failures are remembered (least recently seen forgotten first).
    pub tracked_addresses: usize,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        Self {
            auth_failures: 20,
            auth_failure_window: Duration::from_secs(60),
            tracked_addresses: 65_536,
        }
    }
}

/// Checks `[plans]` against the rest of the config: each is a usable rate, and a shared one
/// has a store.
pub(crate) fn validate(
    plans: &BTreeMap<String, PlanConfig>,
    routes: &BTreeMap<String, RoutePolicyConfig>,
    redis: Option<&RedisConfig>,
) -> Result<(), ConfigError> {
    let limits = plans.iter().map(|(name, p)| (format!("plans.{name}"), p.rate, p.burst, p.store));
    let routes = routes.iter().filter_map(|(name, policy)| {
        let l = policy.rate_limit.as_ref()?;
        Some((format!("routes_policy.{name}.rate_limit"), l.rate, l.burst, l.store))
    });
    for (key, rate, burst, store) in limits.chain(routes) {
        if store == Store::Redis && redis.is_none() {
            return Err(ConfigError::Invalid {
                key: format!("{key}.store"),
                message: "`redis` needs a [redis] section".into(),
            });
        }
        if !(rate.is_finite() && rate > 0.0) {
            return Err(ConfigError::Invalid {
                key: format!("{key}.rate"),
                message: "must be a number of requests per second above 0".into(),
            });
        }
        if burst == 0 {
            return Err(ConfigError::Invalid {
                key: format!("{key}.burst"),
                message: "must be at least 1".into(),
            });
        }
    }
    Ok(())
}

/// `[routes_policy."<name>"]`: what the config says of one named route.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutePolicyConfig {
    /// The route's own rate limit.
    pub rate_limit: Option<RouteLimitConfig>,
    /// Caching of the route's responses.
    pub cache: Option<crate::cache::RouteCacheConfig>,
}

/// A route's rate limit: `{ per = "address", rate = 20, burst = 40 }`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteLimitConfig {
    /// Whom it counts: each client `address` (IPv6 by /64; checked before any credential is
    /// verified), or each `caller` (the authenticated subject; the address when anonymous).
    pub per: Per,
    /// Sustained requests per second.
    pub rate: f64,
    /// Requests admitted at once after a quiet spell.
    pub burst: u32,
    /// Keys remembered at most (least recently seen forgotten first).
    #[serde(default = "default_tracked")]
    pub tracked: usize,
    /// Where the counts live: this process (`memory`) or every replica's (`redis`).
    #[serde(default)]
    pub store: Store,
    /// While the shared store fails: `open` limits locally at the replica's share, `closed`
    /// answers 503.
    #[serde(default)]
    pub on_store_error: OnStoreError,
}

fn default_tracked() -> usize {
    65_536
}

/// Whom a route's limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    /// Each client address.
    Address,
    /// Each authenticated caller (user `sub`, partner id); anonymous callers by address.
    Caller,
}

/// Whom a limit counts a request against.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Whom<'a> {
    /// An authenticated caller (a user, or a partner).
    Caller(&'a Principal),
    /// A client address (IPv6 by /64).
    Address(IpAddr),
}

impl Whom<'_> {
    /// What the shared store's keys are made from: derived alike by every replica, never a
    /// credential. A partner's plan and its per-caller route limits share it, so one round
    /// trip (and one Redis Cluster slot) holds them all.
    fn shared_key(self) -> Vec<u8> {
        let mut key = Vec::with_capacity(64);
        match self {
            Whom::Caller(caller) => {
                key.push(u8::from(caller.kind == PrincipalKind::Partner) + 1);
                key.extend_from_slice(caller.subject.as_bytes());
            }
            Whom::Address(client) => {
                key.push(0);
                key.extend_from_slice(&Throttle::key(client).to_be_bytes());
            }
        }
        key
    }
}

/// A route's own rate limit and its state (per process, bounded; or in Redis).
pub struct RouteLimit {
    name: String,
    /// Its keys' scope in the shared store: `r:<name>`.
    scope: String,
    pub(crate) per: Per,
    rate: Rate,
    /// The shared store, the local share while it fails, and what to do then.
    shared: Option<(Arc<RedisStore>, Rate, OnStoreError)>,
    policy: HeaderValue,
    epoch: Instant,
    /// GCRA's theoretical arrival time per key.
    tats: crate::bounded::Lru<u128, u64>,
    /// Keys callers by subject: a keyed hash, so that nobody can aim two names at one slot.
    hasher: std::hash::RandomState,
}

impl std::fmt::Debug for RouteLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteLimit").field("name", &self.name).field("per", &self.per).finish()
    }
}

impl PartialEq for RouteLimit {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for RouteLimit {}

impl RouteLimit {
    pub(crate) fn new(
        name: &str,
        config: &RouteLimitConfig,
        store: Option<&Arc<RedisStore>>,
    ) -> Self {
        let rate = Rate::new(config.rate, config.burst);
        let shared = store.filter(|_| config.store == Store::Redis).map(|store| {
            let replicas = store.replicas();
            let share =
                Rate::new(config.rate / f64::from(replicas), (config.burst / replicas).max(1));
            (store.clone(), share, config.on_store_error)
        });
        let policy = format!("\"{name}\";q={};w={}", rate.burst(), rate.window_secs());
        Self {
            name: name.to_owned(),
            scope: format!("r:{name}"),
            per: config.per,
            rate,
            shared,
            policy: HeaderValue::try_from(policy).unwrap_or(HeaderValue::from_static("\"route\"")),
            epoch: Instant::now(),
            tats: crate::bounded::Lru::new(config.tracked),
            hasher: std::hash::RandomState::new(),
        }
    }

    /// Whom a request of `client` by `caller` counts as: the caller for a per-caller limit
    /// (the address when anonymous), else the address.
    fn whom<'a>(&self, client: IpAddr, caller: Option<&'a Principal>) -> Whom<'a> {
        match caller {
            Some(caller) if self.per == Per::Caller => Whom::Caller(caller),
            _ => Whom::Address(client),
        }
    }

    fn ask(&self) -> Ask<'_> {
        Ask {
            scope: &self.scope,
            interval: self.rate.interval(),
            burst: self.rate.burst(),
            quota: None,
            day: 0,
        }
    }

    /// Counts a request of `client` (and `caller`, for a per-caller limit): the headers, and
    /// whether it was refused (`store`: the shared store failed and the limit fails closed).
    pub(crate) async fn check(&self, client: IpAddr, caller: Option<&Principal>) -> Decision {
        let whom = self.whom(client, caller);
        match &self.shared {
            Some((store, ..)) => {
                let stored = store.check(&whom.shared_key(), &[self.ask()]).await;
                self.shared_decision(whom, stored.map(|stored| stored.first().copied()))
            }
            None => self.local(whom, &self.rate),
        }
    }

    /// The decision of the shared store, or, when it failed, of `on_store_error`.
    fn shared_decision(
        &self,
        whom: Whom<'_>,
        stored: Result<Option<Stored>, Unavailable>,
    ) -> Decision {
        match (stored, &self.shared) {
            (Ok(Some(stored)), _) => self.decision(
                stored.refused_by.is_none(),
                stored.remaining,
                stored.reset,
                stored.retry,
            ),
            (_, Some((_, share, OnStoreError::Open))) => {
                Decision { store_failed: true, ..self.local(whom, share) }
            }
            _ => Decision {
                policy: self.policy.clone(),
                limit: HeaderValue::from_static("\"route\";r=0;t=1"),
                retry_after: 1,
                refused_by: Some("store"),
                store_failed: true,
            },
        }
    }

    /// Decides in this process's state, at `rate`.
    fn local(&self, whom: Whom<'_>, rate: &Rate) -> Decision {
        let key = match whom {
            Whom::Caller(caller) => {
                use std::hash::BuildHasher;
                let kind = u8::from(caller.kind == PrincipalKind::Partner);
                let low = self.hasher.hash_one((kind, &caller.subject, 0_u8));
                let high = self.hasher.hash_one((kind, &caller.subject, 1_u8));
                // Apart from every address: an address key never has its top bit set.
                ((u128::from(high) << 64) | u128::from(low)) | (1 << 127)
            }
            Whom::Address(client) => Throttle::key(client),
        };
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let check = {
            let mut tats = self.tats.shard(Throttle::spread(key));
            let tat = tats.peek(&key).copied().unwrap_or(0);
            let check = rate.check(tat, now);
            if check.admitted {
                tats.put(key, check.tat);
            }
            check
        };
        self.decision(
            check.admitted,
            check.remaining,
            Duration::from_nanos(check.reset),
            Duration::from_nanos(check.retry),
        )
    }

    fn decision(
        &self,
        admitted: bool,
        remaining: u64,
        reset: Duration,
        retry: Duration,
    ) -> Decision {
        let seconds = |d: Duration| d.as_nanos().div_ceil(1_000_000_000) as u64;
        let limit = format!("\"{}\";r={remaining};t={}", self.name, seconds(reset));
        Decision {
            policy: self.policy.clone(),
            limit: HeaderValue::try_from(limit).unwrap_or(HeaderValue::from_static("\"route\"")),
            retry_after: seconds(retry).max(1),
            refused_by: (!admitted).then_some("route"),
            store_failed: false,
        }
    }
}

/// The process's rate limits.
#[derive(Debug)]
pub(crate) struct Limiter {
    epoch: Instant,
    /// Each partner's state under its plan (partners named by the config's API keys).
    partners: HashMap<String, Partner>,
    throttle: Option<Throttle>,
    /// The shared store, when a plan or a route uses it.
    redis: Option<Arc<RedisStore>>,
}

#[derive(Debug)]
struct Partner {
    plan: Arc<Plan>,
    state: Mutex<PlanState>,
}

#[derive(Debug)]
struct Plan {
    name: String,
    store: Store,
    on_store_error: OnStoreError,
    /// The local share of a shared plan, for while its store fails.
    fallback: Option<Box<Plan>>,
    /// Sustained requests per second, as configured.
    per_second: f64,
    rate: Rate,
    quota_per_day: Option<u64>,
    /// `RateLimit-Policy`, the same on every response.
    policy: HeaderValue,
}

#[derive(Debug, Default)]
struct PlanState {
    /// GCRA's theoretical arrival time, in nanoseconds since the limiter's epoch.
    tat: u64,
    /// The UTC day `used` counts, in days since the Unix epoch.
    day: u64,
    used: u64,
}

/// The rate-limit headers of a response on a limited request: `RateLimit-Policy` and
/// `RateLimit` (draft-ietf-httpapi-ratelimit-headers), and what refused it, if anything.
#[derive(Clone, Debug)]
pub(crate) struct Decision {
    pub(crate) policy: HeaderValue,
    pub(crate) limit: HeaderValue,
    /// Whole seconds until a refused request may be admitted.
    pub(crate) retry_after: u64,
    /// Which limit refused it (`route`, `burst` or `day`; `store` when the shared store
    /// failed and the limit fails closed).
    pub(crate) refused_by: Option<&'static str>,
    /// The shared store failed: decided by the limit's `on_store_error`.
    pub(crate) store_failed: bool,
}

impl Limiter {
    /// The limiter of `plans` for the partners of `keys` (partner id → plan name).
    pub(crate) fn new<'a>(
        plans: &BTreeMap<String, PlanConfig>,
        keys: impl Iterator<Item = (&'a str, &'a str)>,
        limits: &RateLimitsConfig,
        redis: Option<&Arc<crate::redis_store::Link>>,
        routes_shared: bool,
    ) -> Result<Self, ConfigError> {
        let shared = routes_shared || plans.values().any(|plan| plan.store == Store::Redis);
        let redis = redis.filter(|_| shared).map(|link| Arc::new(RedisStore::new(link.clone())));
        let replicas = redis.as_deref().map_or(1, RedisStore::replicas);
        let plans: HashMap<&str, Arc<Plan>> = plans
            .iter()
            .map(|(name, config)| (name.as_str(), Arc::new(Plan::new(name, config, replicas))))
            .collect();
        let mut partners = HashMap::new();
        for (partner, plan) in keys {
            if let Some(plan) = plans.get(plan) {
                partners.entry(partner.to_owned()).or_insert_with(|| Partner {
                    plan: plan.clone(),
                    state: Mutex::new(PlanState::default()),
                });
            }
        }
        let throttle = (limits.auth_failures > 0).then(|| Throttle::new(limits));
        Ok(Self { epoch: Instant::now(), partners, throttle, redis })
    }

    /// The shared store, for the routes whose limits live there.
    pub(crate) fn store(&self) -> Option<&Arc<RedisStore>> {
        self.redis.as_ref()
    }

    fn partner(&self, principal: &Principal) -> Option<&Partner> {
        if principal.kind != PrincipalKind::Partner {
            return None;
        }
        self.partners.get(&principal.subject)
    }

    /// Counts a request of `principal` against its partner's plan; `None` when no plan limits
    /// it.
    pub(crate) async fn check(&self, principal: &Principal) -> Option<Decision> {
        let partner = self.partner(principal)?;
        let unix = unix_now();
        Some(match self.shared(partner) {
            Some(store) => {
                let whom = Whom::Caller(principal);
                let stored = store.check(&whom.shared_key(), &[partner.plan.ask(unix)]).await;
                self.plan_decision(partner, unix, stored.map(|stored| stored.first().copied()))
            }
            None => self.plan_decision(partner, unix, Ok(None)),
        })
    }

    /// Counts an authenticated request against the route's per-caller limit (`route`) and, if
    /// the route counts toward plans (`counted`), the caller's plan: the decisions of both, in
    /// that order. When both live in the shared store they are decided in one round trip, and
    /// neither counts the request unless both admit it; otherwise the plan is not asked once
    /// the route refused.
    pub(crate) async fn check_caller(
        &self,
        route: Option<&RouteLimit>,
        client: IpAddr,
        principal: Option<&Principal>,
        counted: bool,
    ) -> [Option<Decision>; 2] {
        let partner = principal.filter(|_| counted).and_then(|p| Some((p, self.partner(p)?)));
        if let (Some(route), Some((principal, partner))) = (route, partner)
            && let Some((store, ..)) = &route.shared
            && self.shared(partner).is_some_and(|plans| Arc::ptr_eq(plans, store))
        {
            let whom = Whom::Caller(principal);
            let unix = unix_now();
            let asks = [route.ask(), partner.plan.ask(unix)];
            let (on_route, on_plan) = match store.check(&whom.shared_key(), &asks).await {
                Ok(stored) => match stored.as_slice() {
                    [route, plan] => (Ok(Some(*route)), Ok(Some(*plan))),
                    _ => (Err(Unavailable), Err(Unavailable)),
                },
                Err(Unavailable) => (Err(Unavailable), Err(Unavailable)),
            };
            return [
                Some(route.shared_decision(whom, on_route)),
                Some(self.plan_decision(partner, unix, on_plan)),
            ];
        }
        let route = match route {
            Some(route) => Some(route.check(client, principal).await),
            None => None,
        };
        if route.as_ref().is_some_and(|route| route.refused_by.is_some()) {
            return [route, None];
        }
        let plan = match partner {
            Some((principal, _)) => self.check(principal).await,
            None => None,
        };
        [route, plan]
    }

    /// The shared store of `partner`'s plan, when it has one.
    fn shared(&self, partner: &Partner) -> Option<&Arc<RedisStore>> {
        self.redis.as_ref().filter(|_| partner.plan.store == Store::Redis)
    }

    /// The plan's decision: the shared store's (`Ok(Some)`), this process's (`Ok(None)`: the
    /// plan lives here), or, when the shared store failed, the plan's `on_store_error`.
    fn plan_decision(
        &self,
        partner: &Partner,
        unix: u64,
        stored: Result<Option<Stored>, Unavailable>,
    ) -> Decision {
        let plan = &partner.plan;
        let local = match (stored, plan.on_store_error, &plan.fallback) {
            (Ok(Some(stored)), ..) => return plan.stored(&stored, unix),
            (Ok(None), ..) => plan.as_ref(),
            (Err(Unavailable), OnStoreError::Open, Some(fallback)) => fallback,
            (Err(Unavailable), ..) => return plan.unavailable(),
        };
        let now = u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let mut state = partner.state.lock().unwrap_or_else(PoisonError::into_inner);
        let decision = local.check(&mut state, now, unix);
        Decision { store_failed: !std::ptr::eq(local, plan.as_ref()), ..decision }
    }

    /// What `principal`'s plan allows and what is left of it today, without counting a
    /// request; `None` for a caller no plan limits.
    pub(crate) fn usage(&self, principal: &Principal) -> Option<Usage> {
        let partner = self.partner(principal)?;
        let plan = &partner.plan;
        let unix = unix_now();
        let day = unix / 86_400;
        let used = {
            let state = partner.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.day == day { state.used } else { 0 }
        };
        let resets = UNIX_EPOCH + Duration::from_secs((day + 1) * 86_400);
        Some(Usage {
            partner: principal.subject.clone(),
            plan: plan.name.clone(),
            rate_per_second: plan.per_second,
            burst: plan.rate.burst(),
            quota_per_day: plan.quota_per_day,
            used_today: used,
            remaining_today: plan.quota_per_day.map(|quota| quota.saturating_sub(used)),
            resets_at: humantime::format_rfc3339_seconds(resets).to_string(),
        })
    }

    /// `Some(seconds to wait)` when `client` has failed authentication too often to be
    /// verified again now.
    pub(crate) fn throttled(&self, client: IpAddr) -> Option<u64> {
        self.throttle.as_ref()?.throttled(client, self.epoch.elapsed())
    }

    /// Notes a failed authentication from `client`.
    pub(crate) fn failed(&self, client: IpAddr) {
        if let Some(throttle) = &self.throttle {
            throttle.failed(client, self.epoch.elapsed());
        }
    }
}

/// Seconds since the Unix epoch: what the daily quotas count by.
fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

impl Plan {
    fn ask(&self, unix: u64) -> Ask<'static> {
        Ask {
            scope: "plan",
            interval: self.rate.interval(),
            burst: self.rate.burst(),
            quota: self.quota_per_day,
            day: unix / 86_400,
        }
    }

    fn new(name: &str, config: &PlanConfig, replicas: u32) -> Self {
        let mut plan = Self::local(name, config);
        if config.store == Store::Redis {
            // While the store fails, each replica admits its share of the plan.
            let share = f64::from(replicas.max(1));
            let fallback = PlanConfig {
                rate: config.rate / share,
                burst: (config.burst / replicas.max(1)).max(1),
                quota_per_day: config
                    .quota_per_day
                    .map(|q| (q / u64::from(replicas.max(1))).max(1)),
                store: Store::Memory,
                on_store_error: config.on_store_error,
            };
            plan.fallback = Some(Box::new(Self::local(name, &fallback)));
            plan.store = Store::Redis;
        }
        plan
    }

    fn local(name: &str, config: &PlanConfig) -> Self {
        let rate = Rate::new(config.rate, config.burst);
        let mut policy = format!("\"burst\";q={};w={}", rate.burst(), rate.window_secs());
        if let Some(quota) = config.quota_per_day {
            let _ = write!(policy, ", \"day\";q={quota};w=86400");
        }
        let policy = HeaderValue::try_from(policy).unwrap_or(HeaderValue::from_static("\"burst\""));
        Self {
            name: name.to_owned(),
            store: Store::Memory,
            on_store_error: config.on_store_error,
            fallback: None,
            per_second: config.rate,
            rate,
            quota_per_day: config.quota_per_day,
            policy,
        }
    }

    /// The decision of a store (this process's, or the shared one) as headers.
    fn stored(&self, stored: &Stored, unix: u64) -> Decision {
        let day_reset = (unix / 86_400 + 1) * 86_400 - unix;
        let seconds = |d: Duration| d.as_nanos().div_ceil(1_000_000_000) as u64;
        let mut limit = format!("\"burst\";r={};t={}", stored.remaining, seconds(stored.reset));
        if let Some(quota) = self.quota_per_day {
            let _ = write!(
                limit,
                ", \"day\";r={};t={day_reset}",
                quota.saturating_sub(stored.used_today)
            );
        }
        let retry_after = match stored.refused_by {
            Some("burst") => seconds(stored.retry).max(1),
            Some(_) => day_reset,
            None => 0,
        };
        Decision {
            policy: self.policy.clone(),
            limit: HeaderValue::try_from(limit).unwrap_or(HeaderValue::from_static("\"burst\"")),
            retry_after,
            refused_by: stored.refused_by,
            store_failed: false,
        }
    }

    /// The decision while the shared store fails and the plan fails closed.
    fn unavailable(&self) -> Decision {
        Decision {
            policy: self.policy.clone(),
            limit: HeaderValue::from_static("\"burst\";r=0;t=1"),
            retry_after: 1,
            refused_by: Some("store"),
            store_failed: true,
        }
    }

    /// Decides one request at `now` (nanoseconds since the epoch) and `unix` (seconds): it is
    /// admitted only if every limit admits it, and only then counted.
    fn check(&self, state: &mut PlanState, now: u64, unix: u64) -> Decision {
        let day = unix / 86_400;
        if state.day != day {
            state.day = day;
            state.used = 0;
        }
        let burst = self.rate.check(state.tat, now);
        let refused_by = if !burst.admitted {
            Some("burst")
        } else if self.quota_per_day.is_some_and(|quota| state.used >= quota) {
            Some("day")
        } else {
            None
        };
        if refused_by.is_none() {
            state.tat = burst.tat;
            state.used += 1;
        }
        let stored = Stored {
            refused_by,
            remaining: burst.remaining,
            reset: Duration::from_nanos(burst.reset),
            retry: Duration::from_nanos(burst.retry),
            used_today: state.used,
        };
        self.stored(&stored, unix)
    }
}

/// A partner's plan and what is left of it today: what `GET /partner/v1/usage` answers.
#[derive(Clone, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Usage {
    /// The partner (every key and token of it shares the plan).
    #[schema(example = "acme")]
    pub partner: String,
    /// The plan's name.
    #[schema(example = "gold")]
    pub plan: String,
    /// Sustained requests per second.
    #[schema(example = 200.0)]
    pub rate_per_second: f64,
    /// Requests admitted at once after a quiet spell.
    #[schema(example = 400)]
    pub burst: u64,
    /// Requests admitted per UTC day; absent when the plan has no daily quota.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 5_000_000)]
    pub quota_per_day: Option<u64>,
    /// Requests admitted so far today (UTC); refused ones and usage queries do not count.
    #[schema(example = 1234)]
    pub used_today: u64,
    /// What is left of today's quota.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = 4_998_766)]
    pub remaining_today: Option<u64>,
    /// When today's count starts again: the next midnight, UTC (RFC 3339).
    #[schema(example = "2026-12-03T00:00:00Z")]
    pub resets_at: String,
}

/// The caller's plan usage, for a handler (`GET /partner/v1/usage`): `None` when no plan
/// limits the caller. Works behind the pipeline, which hands each request the limiter.
#[derive(Clone, Debug)]
pub struct PlanUsage(pub Option<Usage>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PlanUsage {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        let limiter = parts.extensions.get::<Arc<Limiter>>();
        let principal = parts.extensions.get::<Arc<Principal>>();
        Ok(Self(limiter.zip(principal).and_then(|(limiter, principal)| limiter.usage(principal))))
    }
}

/// Failed authentications per client address, in fixed windows, for a bounded set of addresses.
#[derive(Debug)]
struct Throttle {
    limit: u32,
    window: Duration,
    failures: crate::bounded::Lru<IpKey, Failures>,
}

/// An address as the throttle keys it: IPv6 clients by their /64, as one host usually holds it.
type IpKey = u128;

#[derive(Clone, Copy, Debug)]
struct Failures {
    since: Duration,
    count: u32,
}

impl Throttle {
    fn new(limits: &RateLimitsConfig) -> Self {
        Self {
            limit: limits.auth_failures,
            window: limits.auth_failure_window,
            failures: crate::bounded::Lru::new(limits.tracked_addresses),
        }
    }

    fn key(client: IpAddr) -> IpKey {
        match client {
            IpAddr::V4(v4) => u128::from(v4.to_bits()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => u128::from(v4.to_bits()),
                None => v6.to_bits() & !((1 << 64) - 1),
            },
        }
    }

    fn spread(key: IpKey) -> u64 {
        // Fold the address so that neighbours spread over the shards.
        (key ^ (key >> 64)) as u64
    }

    fn throttled(&self, client: IpAddr, now: Duration) -> Option<u64> {
        let key = Self::key(client);
        let shard = self.failures.shard(Self::spread(key));
        let failures = shard.peek(&key)?;
        let ends = failures.since + self.window;
        (failures.count >= self.limit && now < ends).then(|| (ends - now).as_secs().max(1))
    }

    fn failed(&self, client: IpAddr, now: Duration) {
        let key = Self::key(client);
        let mut shard = self.failures.shard(Self::spread(key));
        let fresh = Failures { since: now, count: 1 };
        match shard.get_mut(&key) {
            Some(failures) if now < failures.since + self.window => {
                failures.count = failures.count.saturating_add(1);
            }
            Some(failures) => *failures = fresh,
            None => {
                shard.put(key, fresh);
            }
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.failures.len()
    }
}

#[cfg(test)]
mod tests;
