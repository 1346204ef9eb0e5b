//! The `[auth]` section of a gateway config: which issuer and audience tokens must name, where
//! the signing keys are, how long they are trusted, and the partners' API keys (as hashes).

use std::{collections::HashMap, fmt, time::Duration};

use serde::Deserialize;

use crate::config::ConfigError;

/// How a gateway verifies callers: JWTs against the issuer's JWKS, and partner API keys.
///
/// ```toml
/// [auth]
/// issuer = "http://127.0.0.1:7006"
/// audience = "web"
/// jwks_url = "http://127.0.0.1:7006/.well-known/jwks.json"
/// ```
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// The exact `iss` every token must carry.
    pub issuer: String,
    /// The `aud` this gateway accepts: a token for another gateway is refused here.
    pub audience: String,
    /// Where the issuer publishes its signing keys (`http://` only for now).
    pub jwks_url: String,
    /// Keys older than this are refetched in the background of a request, which still uses the
    /// current keys.
    #[serde(default = "defaults::refresh_interval", with = "humantime_serde")]
    pub refresh_interval: Duration,
    /// A token signed by an unknown key triggers at most one JWKS fetch per cooldown, however
    /// many such tokens arrive.
    #[serde(default = "defaults::unknown_kid_cooldown", with = "humantime_serde")]
    pub unknown_kid_cooldown: Duration,
    /// While the JWKS cannot be fetched, the last good keys serve up to this age; older, the
    /// gateway fails closed (503).
    #[serde(default = "defaults::max_staleness", with = "humantime_serde")]
    pub max_staleness: Duration,
    /// The deadline of one JWKS fetch, connection included.
    #[serde(default = "defaults::fetch_timeout", with = "humantime_serde")]
    pub fetch_timeout: Duration,
    /// Clock skew tolerated on `exp` and `nbf` (at most 60s).
    #[serde(default = "defaults::leeway", with = "humantime_serde")]
    pub leeway: Duration,
    /// Longer tokens are refused before any parsing.
    #[serde(default = "defaults::max_token_bytes")]
    pub max_token_bytes: usize,
    /// Partner API keys, stored as SHA-256 hashes.
    #[serde(default)]
    pub api_keys: Vec<ApiKeyConfig>,
    /// The plan of each OAuth client that gets client-credentials tokens (`client_id` → plan
    /// name). A client that also holds API keys (its id is their partner) has one plan for both.
    #[serde(default)]
    pub client_plans: std::collections::BTreeMap<String, String>,
}

/// One partner API key. The key itself never appears in config or logs: only its hash.
#[derive(Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// A name for logs and metrics (e.g. `acme-2026-11`), never the key.
    pub id: String,
    /// The partner the key belongs to; the principal's subject.
    pub partner: String,
    /// The partner's plan, passed to backends.
    pub plan: String,
    /// Lowercase hex SHA-256 of the key (see [`hash_api_key`](super::hash_api_key)).
    pub sha256: String,
    /// The scopes the key grants.
    pub scopes: Vec<String>,
}

// Hand-written so that printing a config (or a `GatewayConfig`) does not print key hashes:
// they are not the keys, but nothing is gained by spreading them through logs.
impl fmt::Debug for ApiKeyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKeyConfig")
            .field("id", &self.id)
            .field("partner", &self.partner)
            .field("plan", &self.plan)
            .field("sha256", &"<redacted>")
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// The defaults of the optional `[auth]` keys; `serde` needs them as functions because the
/// required keys leave `AuthConfig` without a meaningful `Default`.
mod defaults {
    use std::time::Duration;

    pub(super) fn refresh_interval() -> Duration {
        Duration::from_secs(5 * 60)
    }

    pub(super) fn unknown_kid_cooldown() -> Duration {
        Duration::from_secs(30)
    }

    pub(super) fn max_staleness() -> Duration {
        Duration::from_secs(60 * 60)
    }

    pub(super) fn fetch_timeout() -> Duration {
        Duration::from_secs(2)
    }

    pub(super) fn leeway() -> Duration {
        Duration::from_secs(30)
    }

    pub(super) fn max_token_bytes() -> usize {
        8192
    }
}

/// The most clock skew `leeway` may allow: more would keep expired tokens alive.
const MAX_LEEWAY: Duration = Duration::from_secs(60);

fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), message: message.into() }
}

// === impl AuthConfig ===

impl AuthConfig {
    /// A config with the required keys and every other key at its default.
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        jwks_url: impl Into<String>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_url: jwks_url.into(),
            refresh_interval: defaults::refresh_interval(),
            unknown_kid_cooldown: defaults::unknown_kid_cooldown(),
            max_staleness: defaults::max_staleness(),
            fetch_timeout: defaults::fetch_timeout(),
            leeway: defaults::leeway(),
            max_token_bytes: defaults::max_token_bytes(),
            api_keys: Vec::new(),
            client_plans: std::collections::BTreeMap::new(),
        }
    }

    /// Checks what the types cannot; errors name the key, e.g. `auth.api_keys[1].sha256`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.issuer.trim().is_empty() {
            return Err(invalid("auth.issuer", "must not be empty"));
        }
        if self.audience.is_empty() || self.audience.contains(char::is_whitespace) {
            return Err(invalid("auth.audience", "must be one non-empty word"));
        }
        self.jwks_uri()?;
        for (key, value) in [
            ("auth.refresh_interval", self.refresh_interval),
            ("auth.unknown_kid_cooldown", self.unknown_kid_cooldown),
            ("auth.max_staleness", self.max_staleness),
            ("auth.fetch_timeout", self.fetch_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be longer than 0s"));
            }
        }
        if self.max_staleness < self.refresh_interval {
            return Err(invalid(
                "auth.max_staleness",
                "must be at least `auth.refresh_interval`: keys would expire before their refresh",
            ));
        }
        if self.leeway > MAX_LEEWAY {
            return Err(invalid("auth.leeway", "must be at most 60s"));
        }
        if self.max_token_bytes == 0 {
            return Err(invalid("auth.max_token_bytes", "must be greater than 0"));
        }
        let mut ids: HashMap<&str, usize> = HashMap::new();
        let mut hashes: HashMap<&str, usize> = HashMap::new();
        for (i, key) in self.api_keys.iter().enumerate() {
            let name = |field: &str| format!("auth.api_keys[{i}].{field}");
            for (field, value) in [("id", &key.id), ("partner", &key.partner), ("plan", &key.plan)]
            {
                if value.trim().is_empty() {
                    return Err(invalid(name(field), "must not be empty"));
                }
            }
            if let Some(first) = ids.insert(&key.id, i) {
                return Err(invalid(
                    name("id"),
                    format!("`{}` is already the id of api_keys[{first}]", key.id),
                ));
            }
            if decode_sha256(&key.sha256).is_none() {
                return Err(invalid(
                    name("sha256"),
                    "must be 64 lowercase hex digits: the SHA-256 of the key, never the key",
                ));
            }
            if let Some(first) = hashes.insert(&key.sha256, i) {
                return Err(invalid(name("sha256"), format!("same key as api_keys[{first}]")));
            }
            if key.scopes.iter().any(|s| s.is_empty() || s.contains(char::is_whitespace)) {
                return Err(invalid(name("scopes"), "scopes are non-empty words"));
            }
        }
        Ok(())
    }

    /// The JWKS URL, parsed; an error names `auth.jwks_url`.
    pub(super) fn jwks_uri(&self) -> Result<http::Uri, ConfigError> {
        let key = "auth.jwks_url";
        let uri: http::Uri = self
            .jwks_url
            .parse()
            .map_err(|e| invalid(key, format!("`{}` is not a URL: {e}", self.jwks_url)))?;
        match uri.scheme_str() {
            Some("http") if uri.authority().is_some() => Ok(uri),
            Some("https") => Err(invalid(
                key,
                format!(
                    "`{}`: https is not supported yet (the JWKS client speaks plain http); \
                     use an http:// URL on a trusted network",
                    self.jwks_url
                ),
            )),
            _ => Err(invalid(key, format!("`{}` must be http://host[:port]/path", self.jwks_url))),
        }
    }
}

/// The raw digest of a 64-digit lowercase hex SHA-256, or `None` if it is not one.
pub(super) fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
    let bytes = hex.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    let mut digest = [0u8; 32];
    for (out, pair) in digest.iter_mut().zip(bytes.chunks_exact(2)) {
        *out = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(digest)
}
