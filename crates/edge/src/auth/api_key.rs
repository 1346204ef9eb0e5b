//! Partner API keys: configured as SHA-256 hashes, checked by hashing the presented key and
//! comparing it with every configured digest in constant time.
//!
//! Hashing first means the configuration holds nothing that works as a key, and comparing with
//! *every* entry (no early exit) keeps the time spent independent of which entry, if any,
//! matched.

use std::fmt;

use aws_lc_rs::{
    constant_time::verify_slices_are_equal,
    digest::{SHA256, digest},
    rand::{SecureRandom, SystemRandom},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};

use super::{ApiKeyConfig, AuthError, Credential, Principal, PrincipalKind, config::decode_sha256};

/// The configured keys, ready to compare.
pub(super) struct ApiKeys {
    entries: Vec<Entry>,
}

struct Entry {
    id: String,
    digest: [u8; 32],
    principal: Principal,
}

impl fmt::Debug for ApiKeys {
    // Ids only: they exist to be logged. Digests are never printed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.entries.iter().map(|e| &e.id)).finish()
    }
}

// === impl ApiKeys ===

impl ApiKeys {
    /// From validated config: entries whose hash does not decode were refused by `validate`,
    /// and are skipped here rather than trusted.
    pub(super) fn new(configs: &[ApiKeyConfig]) -> Self {
        let entries = configs
            .iter()
            .filter_map(|config| {
                Some(Entry {
                    id: config.id.clone(),
                    digest: decode_sha256(&config.sha256)?,
                    principal: Principal {
                        kind: PrincipalKind::Partner,
                        subject: config.partner.clone(),
                        scopes: config.scopes.clone(),
                        plan: Some(config.plan.clone()),
                        credential: Credential::ApiKey,
                    },
                })
            })
            .collect();
        Self { entries }
    }

    pub(super) fn verify(&self, key: &str) -> Result<Principal, AuthError> {
        if self.entries.is_empty() {
            return Err(AuthError::InvalidRequest("this gateway does not accept API keys"));
        }
        let presented = digest(&SHA256, key.as_bytes());
        let mut matched = None;
        for entry in &self.entries {
            if verify_slices_are_equal(&entry.digest, presented.as_ref()).is_ok() {
                matched = matched.or(Some(entry));
            }
        }
        let entry = matched.ok_or(AuthError::ApiKey)?;
        tracing::debug!(key_id = %entry.id, partner = %entry.principal.subject, "API key accepted");
        Ok(entry.principal.clone())
    }
}

/// Lowercase hex SHA-256 of `key`: what `[[auth.api_keys]] sha256` holds.
pub fn hash_api_key(key: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digest = digest(&SHA256, key.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest.as_ref() {
        hex.push(char::from(HEX[usize::from(byte >> 4)]));
        hex.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    hex
}

/// A new API key: `pk_` and 32 random bytes from the system's CSPRNG, base64url.
///
/// # Panics
///
/// If the operating system's random generator fails: no key is better than a guessable one,
/// and this runs when an operator issues credentials, never on the request path.
pub fn generate_api_key() -> String {
    let mut bytes = [0u8; 32];
    if SystemRandom::new().fill(&mut bytes).is_err() {
        panic!("the system random generator failed; refusing to issue a weak API key");
    }
    format!("pk_{}", URL_SAFE_NO_PAD.encode(bytes))
}
