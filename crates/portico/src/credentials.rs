//! Credentials for calling the gateways: JWTs from the identity service (`portico token`), new
//! partner API keys (`portico key new`), and the demo partners' keys `portico up` prints.

use portico_services::identity;
use serde_json::{Value, json};

/// The demo partners' API keys: (key id, partner, plain key). The partner gateway's config holds
/// only their SHA-256 hashes; the plain keys are printed by `portico up` so the quickstart can
/// use them. `acme` has two, as during a rotation: both are valid.
pub const DEMO_API_KEYS: [(&str, &str, &str); 3] = [
    ("acme-2026-10", "acme", "pk_demo_acme_2026_10_R7vQ2xLk"),
    ("acme-2026-11", "acme", "pk_demo_acme_2026_11_M4tZ9wPe"),
    ("globex-2026-11", "globex", "pk_demo_globex_2026_11_H2sN6yBd"),
];

/// The identity service's address in the demo stack.
pub const DEMO_IDENTITY: &str = "http://127.0.0.1:7006";

/// A user's token for one gateway's audience, from `POST {identity}/token`.
pub async fn user_token(
    identity: &str,
    user: &str,
    audience: &str,
) -> Result<String, crate::Error> {
    let url = format!("{}/token", identity.trim_end_matches('/'));
    let request =
        reqwest::Client::new().post(&url).json(&json!({"subject": user, "audience": audience}));
    access_token(request, &url).await
}

/// A partner's client-credentials token from `POST {identity}/oauth/token`. Without `secret`,
/// the demo partner's secret is used; without `scope`, every scope the partner may have.
pub async fn partner_token(
    identity: &str,
    partner: &str,
    secret: Option<&str>,
    scope: Option<&str>,
) -> Result<String, crate::Error> {
    let secret = match secret {
        Some(secret) => secret,
        None => identity::PARTNERS
            .iter()
            .find(|(id, _, _)| *id == partner)
            .map(|(_, secret, _)| *secret)
            .ok_or_else(|| format!("`{partner}` is not a demo partner: pass --secret"))?,
    };
    let url = format!("{}/oauth/token", identity.trim_end_matches('/'));
    let mut form = vec![("grant_type", "client_credentials")];
    if let Some(scope) = scope {
        form.push(("scope", scope));
    }
    let body = serde_urlencoded::to_string(&form)?;
    let request = reqwest::Client::new()
        .post(&url)
        .basic_auth(partner, Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    access_token(request, &url).await
}

/// Sends a token request to `url` and takes the `access_token` from the answer.
async fn access_token(request: reqwest::RequestBuilder, url: &str) -> Result<String, crate::Error> {
    let response = request.send().await.map_err(|e| {
        format!("cannot reach the identity service at {url}: {e} (is `portico up` running?)")
    })?;
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let reason = body["error_description"]
            .as_str()
            .or(body["detail"].as_str())
            .or(body["error"].as_str())
            .unwrap_or("no reason given");
        return Err(format!("the identity service refused: {status}: {reason}").into());
    }
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| "the identity service answered without an access_token".into())
}

/// A new partner API key and the `[[auth.api_keys]]` entry that admits it (holding its hash).
pub fn new_api_key(id: &str, partner: &str, plan: &str, scopes: &[String]) -> (String, String) {
    let key = portico_edge::auth::generate_api_key();
    let scopes: Vec<String> = scopes.iter().map(|s| format!("{s:?}")).collect();
    let entry = format!(
        "[[auth.api_keys]]\nid = {id:?}\npartner = {partner:?}\nplan = {plan:?}\nsha256 = {:?}\n\
         scopes = [{}]\n",
        portico_edge::auth::hash_api_key(&key),
        scopes.join(", ")
    );
    (key, entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateways::Gateway;

    #[test]
    fn the_partner_config_admits_exactly_the_demo_keys() {
        let config = portico_edge::GatewayConfig::from_toml(Gateway::Partner.demo_config())
            .expect("the demo partner config is valid");
        let keys = config.auth.expect("the partner gateway authenticates").api_keys;
        assert_eq!(keys.len(), DEMO_API_KEYS.len());
        for (id, partner, key) in DEMO_API_KEYS {
            let entry = keys.iter().find(|k| k.id == id).expect("every demo key is configured");
            assert_eq!(entry.partner, partner);
            assert_eq!(entry.sha256, portico_edge::auth::hash_api_key(key), "{id}");
        }
    }

    #[test]
    fn a_new_key_comes_with_the_entry_that_admits_it() {
        let (key, entry) = new_api_key("acme-2027-01", "acme", "gold", &["catalog:read".into()]);
        assert!(key.starts_with("pk_") && key.len() > 40, "{key}");
        assert!(!entry.contains(&key), "the config entry must not hold the plain key");
        assert!(entry.contains(&portico_edge::auth::hash_api_key(&key)));
        let (other, _) = new_api_key("x", "acme", "gold", &[]);
        assert_ne!(key, other);
    }
}
