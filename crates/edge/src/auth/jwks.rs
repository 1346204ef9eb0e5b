//! The key cache: the issuer's JWKS, fetched over HTTP, parsed once into ready-to-use
//! verification keys, and kept fresh without letting clients drive the fetching.
//!
//! The rules, all measured with `tokio::time::Instant` so tests can move the clock:
//!
//! - **Lazy, single-flight.** Nothing is fetched until the first token. Every fetch runs under
//!   one async mutex, and a caller that waited for it uses the fetch that just finished instead
//!   of starting another, so a thundering herd produces one request to the issuer.
//! - **Refresh in the background.** Keys older than `refresh_interval` are still used; the
//!   request that notices spawns one refresh task and carries on.
//! - **Unknown `kid`.** The issuer may have rotated: one refetch, then at most one more per
//!   `unknown_kid_cooldown`, however many tokens with made-up key ids arrive.
//! - **Outages.** A failed fetch (network, status, bad JSON, no usable key) keeps the last good
//!   set, which serves until it is `max_staleness` old; then verification fails closed (503).
//!   After a failure, fetches pause for [`FAILED_FETCH_BACKOFF`] so an outage is not hammered.
//!
//! Keys are pinned to one algorithm each: the JWK's `alg`, or the one its curve implies.
//! Only EC P-256 (ES256), EC P-384 (ES384) and RSA (RS256, 2048 bits or more) signing keys are
//! kept; everything else in the set is ignored.

use std::{
    collections::{HashMap, hash_map::Entry},
    fmt,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P384_SHA384_FIXED, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256,
    RsaPublicKeyComponents,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::Value;
use tokio::{sync::Mutex, time::Instant};

use super::AuthConfig;

/// How long fetching pauses after a failed fetch.
pub(super) const FAILED_FETCH_BACKOFF: Duration = Duration::from_secs(1);
/// The largest JWKS body read; a set of a few keys is a few KiB.
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// RSA moduli outside this range (in bits) are refused: smaller ones are breakable, larger ones
/// are a cheap way to make every verification slow.
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// One verification key, ready to use.
pub(super) struct VerifyKey {
    /// The only algorithm tokens signed with this key may name.
    pub(super) algorithm: Algorithm,
    pub(super) key: DecodingKey,
}

/// The keys of one successful fetch.
pub(super) struct KeySet {
    keys: HashMap<String, VerifyKey>,
    fetched_at: Instant,
    /// Increases with every successful fetch: waiters compare it to see whether a fetch
    /// happened while they waited.
    generation: u64,
}

impl KeySet {
    pub(super) fn get(&self, kid: &str) -> Option<&VerifyKey> {
        self.keys.get(kid)
    }

    /// Whether the set still holds `kid`.
    pub(super) fn holds(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    fn age(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.fetched_at)
    }
}

/// What only the fetching side touches, under the fetch mutex.
#[derive(Default)]
struct FetchState {
    last_failure: Option<Instant>,
    last_unknown_kid_fetch: Option<Instant>,
    generations: u64,
}

impl FetchState {
    fn backing_off(&self, now: Instant) -> bool {
        self.last_failure.is_some_and(|at| now.saturating_duration_since(at) < FAILED_FETCH_BACKOFF)
    }
}

/// Why a fetch failed (logged, never sent).
#[derive(Debug, thiserror::Error)]
enum FetchError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Request(#[from] hyper_util::client::legacy::Error),
    #[error("answered {0}")]
    Status(StatusCode),
    #[error("cannot read the body: {0}")]
    Body(String),
    #[error("the body is not a JWKS: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the set has no usable signing key")]
    NoUsableKey,
}

/// The issuer's keys, fetched on demand and cached.
pub(super) struct Jwks {
    uri: Uri,
    client: Client<HttpConnector, Empty<Bytes>>,
    refresh_interval: Duration,
    unknown_kid_cooldown: Duration,
    max_staleness: Duration,
    fetch_timeout: Duration,
    /// The last good set; read on every request, written after each successful fetch.
    current: RwLock<Option<Arc<KeySet>>>,
    /// Held for the whole of a fetch: the single-flight.
    fetch: Mutex<FetchState>,
    /// Fetches finished, successful or not; compared like `generation`, for failures too.
    attempts: AtomicU64,
    /// A background refresh task is running.
    refreshing: AtomicBool,
    /// The last background refresh, so tests can wait for it instead of sleeping.
    #[cfg(test)]
    background: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl fmt::Debug for Jwks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = self.snapshot().map(|set| set.keys.len());
        f.debug_struct("Jwks").field("uri", &self.uri).field("keys", &keys).finish_non_exhaustive()
    }
}

// === impl Jwks ===

impl Jwks {
    /// A cache for `config`'s JWKS; nothing is fetched yet. `uri` is the validated `jwks_url`.
    pub(super) fn new(config: &AuthConfig, uri: Uri) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(config.fetch_timeout));
        connector.enforce_http(true);
        // No idle connections are kept: fetches are minutes apart, and a pooled connection the
        // issuer closed in between would turn the next refresh into a spurious failure.
        let client =
            Client::builder(TokioExecutor::new()).pool_max_idle_per_host(0).build(connector);
        Self {
            uri,
            client,
            refresh_interval: config.refresh_interval,
            unknown_kid_cooldown: config.unknown_kid_cooldown,
            max_staleness: config.max_staleness,
            fetch_timeout: config.fetch_timeout,
            current: RwLock::new(None),
            fetch: Mutex::new(FetchState::default()),
            attempts: AtomicU64::new(0),
            refreshing: AtomicBool::new(false),
            #[cfg(test)]
            background: std::sync::Mutex::new(None),
        }
    }

    /// The key set that holds `kid`, fetching (or refetching) the set when the rules allow.
    pub(super) async fn find(self: &Arc<Self>, kid: &str) -> Result<Arc<KeySet>, super::AuthError> {
        // Read before the set, so a fetch finishing in between is not repeated.
        let seen = self.attempts.load(Ordering::Acquire);
        let now = Instant::now();
        let (set, just_fetched) = match self.snapshot() {
            Some(set) if set.age(now) < self.refresh_interval => (set, false),
            Some(set) if set.age(now) < self.max_staleness => {
                self.refresh_in_background();
                (set, false)
            }
            _ => (self.refresh_now(seen).await?, true),
        };
        if set.keys.contains_key(kid) {
            return Ok(set);
        }
        // A set fetched for this very request is as fresh as it gets: refetching would only
        // double the load of a forged kid.
        if just_fetched {
            return Err(super::AuthError::UnknownKey);
        }
        match self.refetch_for_unknown_kid(set.generation).await {
            Some(set) if set.keys.contains_key(kid) => Ok(set),
            _ => Err(super::AuthError::UnknownKey),
        }
    }

    pub(super) fn snapshot(&self) -> Option<Arc<KeySet>> {
        // A poisoned lock only means a writer panicked mid-assignment of an `Option<Arc>`,
        // which cannot leave it half-written.
        self.current.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The set is missing or too old to use: fetch now, unless a fetch finished while this
    /// caller waited for the lock (then its result stands) or fetching is backing off.
    async fn refresh_now(&self, seen: u64) -> Result<Arc<KeySet>, super::AuthError> {
        {
            let mut state = self.fetch.lock().await;
            if self.attempts.load(Ordering::Acquire) == seen && !state.backing_off(Instant::now()) {
                self.fetch_and_install(&mut state).await;
            }
        }
        match self.snapshot() {
            Some(set) if set.age(Instant::now()) < self.max_staleness => Ok(set),
            _ => Err(super::AuthError::KeysUnavailable),
        }
    }

    /// A token names a key the set lacks: refetch once per cooldown. `None` when there is no
    /// set at all.
    async fn refetch_for_unknown_kid(&self, seen_generation: u64) -> Option<Arc<KeySet>> {
        let mut state = self.fetch.lock().await;
        let current = self.snapshot();
        // Someone installed a new set while this caller waited: look there first, without
        // another fetch (this is what keeps a flood of forged kids to a single fetch).
        if current.as_ref().is_none_or(|set| set.generation != seen_generation) {
            return current;
        }
        let now = Instant::now();
        if state
            .last_unknown_kid_fetch
            .is_some_and(|at| now.saturating_duration_since(at) < self.unknown_kid_cooldown)
        {
            return current;
        }
        state.last_unknown_kid_fetch = Some(now);
        tracing::debug!(url = %self.uri, "a token names an unknown key; refetching the JWKS");
        self.fetch_and_install(&mut state).await;
        self.snapshot()
    }

    /// Starts one refresh task unless one is running. The request that noticed the age goes on
    /// with the current keys.
    fn refresh_in_background(self: &Arc<Self>) {
        // Outside a runtime (a synchronous caller) there is nowhere to run the task; the
        // foreground fetch at `max_staleness` still keeps the keys from going stale for good.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let this = Arc::clone(self);
        let task = runtime.spawn(async move {
            {
                let mut state = this.fetch.lock().await;
                let now = Instant::now();
                // Another fetch (an unknown kid's) may have refreshed the set meanwhile.
                let still_old =
                    this.snapshot().is_none_or(|set| set.age(now) >= this.refresh_interval);
                if still_old && !state.backing_off(now) {
                    this.fetch_and_install(&mut state).await;
                }
            }
            this.refreshing.store(false, Ordering::Release);
        });
        #[cfg(test)]
        {
            *self.background.lock().unwrap_or_else(PoisonError::into_inner) = Some(task);
        }
        #[cfg(not(test))]
        drop(task);
    }

    /// Waits for the last background refresh to finish.
    #[cfg(test)]
    pub(super) async fn settle(&self) {
        let task = self.background.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(task) = task {
            task.await.unwrap();
        }
    }

    /// One fetch; on success the new set replaces the old one, on failure the old one stays.
    /// Called with the fetch lock held.
    async fn fetch_and_install(&self, state: &mut FetchState) {
        let result = self.fetch_keys().await;
        match result {
            Ok(keys) => {
                state.generations += 1;
                state.last_failure = None;
                tracing::debug!(url = %self.uri, keys = keys.len(), "JWKS fetched");
                let set =
                    KeySet { keys, fetched_at: Instant::now(), generation: state.generations };
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(set));
            }
            Err(error) => {
                state.last_failure = Some(Instant::now());
                let age = self.snapshot().map(|set| set.age(Instant::now()));
                tracing::warn!(
                    url = %self.uri,
                    %error,
                    last_good_age = ?age,
                    "JWKS fetch failed; keeping the last good keys"
                );
            }
        }
        self.attempts.fetch_add(1, Ordering::AcqRel);
    }

    async fn fetch_keys(&self) -> Result<HashMap<String, VerifyKey>, FetchError> {
        let request = Request::get(self.uri.clone())
            .header(header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| FetchError::Body(e.to_string()))?;
        let body = tokio::time::timeout(self.fetch_timeout, async {
            let response = self.client.request(request).await?;
            if response.status() != StatusCode::OK {
                return Err(FetchError::Status(response.status()));
            }
            let body = Limited::new(response.into_body(), MAX_JWKS_BYTES)
                .collect()
                .await
                .map_err(|e| FetchError::Body(e.to_string()))?;
            Ok(body.to_bytes())
        })
        .await
        .map_err(|_| FetchError::Timeout(self.fetch_timeout))??;
        parse_jwks(&body)
    }
}

/// The usable keys of a JWKS document; unusable keys are skipped (and logged at debug), and a
/// set with none at all is an error.
fn parse_jwks(body: &[u8]) -> Result<HashMap<String, VerifyKey>, FetchError> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<Value>,
    }
    let document: Document = serde_json::from_slice(body)?;
    let mut keys = HashMap::with_capacity(document.keys.len());
    for jwk in &document.keys {
        match parse_jwk(jwk) {
            Ok((kid, key)) => match keys.entry(kid) {
                Entry::Occupied(entry) => {
                    tracing::debug!(kid = entry.key(), "JWKS repeats a kid; keeping the first key");
                }
                Entry::Vacant(entry) => {
                    entry.insert(key);
                }
            },
            Err(why) => tracing::debug!(why, "ignoring a JWKS key"),
        }
    }
    if keys.is_empty() { Err(FetchError::NoUsableKey) } else { Ok(keys) }
}

/// One JWK as (kid, key pinned to its algorithm), or why it is not usable.
pub(super) fn parse_jwk(jwk: &Value) -> Result<(String, VerifyKey), &'static str> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    let kid = text("kid").filter(|kid| !kid.is_empty()).ok_or("no kid")?;
    if jwk.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
        return Err("not a signing key (`use`)");
    }
    if let Some(ops) = jwk.get("key_ops")
        && !ops.as_array().is_some_and(|ops| ops.iter().any(|op| op.as_str() == Some("verify")))
    {
        return Err("not a verification key (`key_ops`)");
    }
    let alg = match jwk.get("alg") {
        None => None,
        Some(alg) => Some(alg.as_str().ok_or("`alg` is not a string")?),
    };
    let decode = |name: &str| {
        text(name)
            .and_then(|v| URL_SAFE_NO_PAD.decode(v).ok())
            .ok_or("a key member is not base64url")
    };
    let (algorithm, key) = match text("kty") {
        Some("EC") => {
            let (algorithm, name, verification, size) = match text("crv") {
                Some("P-256") => (Algorithm::ES256, "ES256", &ECDSA_P256_SHA256_FIXED, 32),
                Some("P-384") => (Algorithm::ES384, "ES384", &ECDSA_P384_SHA384_FIXED, 48),
                _ => return Err("unsupported curve"),
            };
            if alg.is_some_and(|alg| alg != name) {
                return Err("`alg` does not match the curve");
            }
            let (x, y) = (decode("x")?, decode("y")?);
            if x.len() != size || y.len() != size {
                return Err("coordinates of the wrong size");
            }
            // Uncompressed SEC 1 point, the form the verifier takes.
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            // Checked once here, so a bad point is dropped from the set instead of failing
            // every token that names it.
            ParsedPublicKey::new(verification, &point).map_err(|_| "not a point on the curve")?;
            (algorithm, DecodingKey::from_ec_der(&point))
        }
        Some("RSA") => {
            if alg.is_some_and(|alg| alg != "RS256") {
                return Err("unsupported RSA algorithm");
            }
            let (n, e) = (decode("n")?, decode("e")?);
            let n = strip_leading_zeros(&n);
            let e = strip_leading_zeros(&e);
            let bits =
                n.first().map_or(0, |top| (n.len() - 1) * 8 + (8 - top.leading_zeros() as usize));
            if !RSA_BITS.contains(&bits) {
                return Err("RSA modulus size out of range");
            }
            if e.is_empty() || e.len() > 4 {
                return Err("unusable RSA exponent");
            }
            RsaPublicKeyComponents { n, e }
                .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
                .map_err(|_| "not a valid RSA public key")?;
            (Algorithm::RS256, DecodingKey::from_rsa_raw_components(n, e))
        }
        _ => return Err("unsupported key type"),
    };
    Ok((kid.to_owned(), VerifyKey { algorithm, key }))
}

fn strip_leading_zeros(bytes: &[u8]) -> &[u8] {
    let start = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    &bytes[start..]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::auth::test_keys::TestKey;

    #[allow(clippy::needless_pass_by_value)] // Takes the test's `json!` values as they are.
    fn parsed(jwk: Value) -> Result<Algorithm, &'static str> {
        parse_jwk(&jwk).map(|(_, key)| key.algorithm)
    }

    #[test]
    fn supported_keys_are_pinned_to_their_algorithm() {
        let p256 = TestKey::es256();
        assert_eq!(parsed(p256.jwk()), Ok(Algorithm::ES256));
        let mut no_alg = p256.jwk();
        no_alg.as_object_mut().unwrap().remove("alg");
        no_alg.as_object_mut().unwrap().remove("use");
        assert_eq!(parsed(no_alg), Ok(Algorithm::ES256));
        assert_eq!(parsed(TestKey::es384().jwk()), Ok(Algorithm::ES384));
        assert_eq!(parsed(TestKey::rs256().jwk()), Ok(Algorithm::RS256));
    }

    #[test]
    fn unusable_keys_are_skipped() {
        let key = TestKey::es256().jwk();
        let with = |name: &str, value: Value| {
            let mut jwk = key.clone();
            jwk[name] = value;
            jwk
        };
        let without = |name: &str| {
            let mut jwk = key.clone();
            jwk.as_object_mut().unwrap().remove(name);
            jwk
        };
        assert!(parsed(with("use", json!("enc"))).is_err());
        assert!(parsed(with("alg", json!("ES384"))).is_err());
        assert!(parsed(with("alg", json!("HS256"))).is_err());
        assert!(parsed(with("crv", json!("P-521"))).is_err());
        assert!(parsed(with("kty", json!("oct"))).is_err());
        assert!(parsed(with("key_ops", json!(["encrypt"]))).is_err());
        assert!(parsed(with("x", json!("AAAA"))).is_err());
        assert!(parsed(without("kid")).is_err());
        assert!(parsed(without("y")).is_err());
        // The right size, but not a point on the curve.
        assert!(parsed(with("y", json!(URL_SAFE_NO_PAD.encode([7u8; 32])))).is_err());
        // An HMAC secret published by mistake is never a verification key.
        assert!(
            parsed(json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h", "alg": "HS256"})).is_err()
        );
        // RSA below 2048 bits, or for another algorithm.
        let rsa = TestKey::rs256().jwk();
        let mut small = rsa.clone();
        small["n"] = json!(URL_SAFE_NO_PAD.encode([0xffu8; 128]));
        assert!(parsed(small).is_err());
        let mut pss = rsa;
        pss["alg"] = json!("PS256");
        assert!(parsed(pss).is_err());
    }

    #[test]
    fn a_set_without_usable_keys_is_a_failed_fetch() {
        assert!(matches!(parse_jwks(b"not json"), Err(FetchError::Json(_))));
        assert!(matches!(parse_jwks(br#"{"keys": []}"#), Err(FetchError::NoUsableKey)));
        let only_bad = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "h"}]});
        assert!(matches!(
            parse_jwks(only_bad.to_string().as_bytes()),
            Err(FetchError::NoUsableKey)
        ));
        let mixed = json!({"keys": [{"kty": "oct", "kid": "h"}, TestKey::es256().jwk()]});
        assert_eq!(parse_jwks(mixed.to_string().as_bytes()).unwrap().len(), 1);
    }
}
