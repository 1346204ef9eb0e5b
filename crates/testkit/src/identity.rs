//! A real identity provider for gateway tests: the demo `identity` service (ES256 keys, JWKS,
//! `/token`, `/oauth/token`) on `127.0.0.1:0`, plus ready-made credentials and the `[auth]`
//! section that points a gateway at it.

use std::sync::Arc;

use portico_services::identity::{self, Issuer};

use crate::MockServer;

/// Demo partner API keys for tests: (key id, partner, plan, plain key, scopes). `acme` has two
/// keys, as during a rotation.
pub const API_KEYS: [(&str, &str, &str, &str, &str); 3] = [
    ("acme-old", "acme", "gold", "pk_test_acme_old_key", FULL_PARTNER_SCOPES),
    ("acme-new", "acme", "gold", "pk_test_acme_new_key", FULL_PARTNER_SCOPES),
    ("globex-1", "globex", "basic", "pk_test_globex_key", "catalog:read stock:read orders:read"),
];

const FULL_PARTNER_SCOPES: &str = "catalog:read stock:read orders:read orders:write";

/// The identity service, serving its JWKS, and a signer for tokens of any shape.
#[derive(Debug)]
pub struct TestIdentity {
    server: MockServer,
    issuer: Arc<Issuer>,
}

impl TestIdentity {
    /// Starts the identity service on an ephemeral loopback port.
    pub async fn start() -> Self {
        // The issuer URL must name the bound port, known only once bound: bind first.
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("a bound listener has an address");
        let issuer = Arc::new(Issuer::generate(format!("http://{addr}")).expect("a P-256 key"));
        let server = MockServer::from_listener(listener, identity::router(issuer.clone()));
        Self { server, issuer }
    }

    /// The issuer URL (`iss` of every token).
    pub fn issuer(&self) -> &str {
        self.issuer.issuer()
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("{}/.well-known/jwks.json", self.server.url())
    }

    /// A user token for `audience` with the demo user scopes.
    pub fn user_token(&self, user: &str, audience: &str) -> String {
        self.issuer.sign(user, audience, identity::USER_SCOPE, None).expect("signs")
    }

    /// A partner client-credentials token (audience `partner`) with `scope`.
    pub fn partner_token(&self, partner: &str, scope: &str) -> String {
        self.issuer
            .sign(&format!("partner:{partner}"), "partner", scope, Some(partner))
            .expect("signs")
    }

    /// A token with any subject, audience and scope.
    pub fn token(&self, subject: &str, audience: &str, scope: &str) -> String {
        self.issuer.sign(subject, audience, scope, None).expect("signs")
    }

    /// The `[auth]` section of a gateway config that trusts this issuer for `audience`, with the
    /// [`API_KEYS`] (stored as hashes) when `with_api_keys`.
    pub fn auth_toml(&self, audience: &str, with_api_keys: bool) -> String {
        let mut toml = format!(
            "[auth]\nissuer = \"{}\"\naudience = \"{audience}\"\njwks_url = \"{}\"\n\n",
            self.issuer(),
            self.jwks_url()
        );
        if with_api_keys {
            for (id, partner, plan, key, scopes) in API_KEYS {
                let scopes: Vec<String> = scopes.split(' ').map(|s| format!("\"{s}\"")).collect();
                toml.push_str(&format!(
                    "[[auth.api_keys]]\nid = \"{id}\"\npartner = \"{partner}\"\nplan = \"{plan}\"\n\
                     sha256 = \"{}\"\nscopes = [{}]\n\n",
                    sha256_hex(key),
                    scopes.join(", ")
                ));
            }
        }
        toml
    }
}

/// Lowercase hex SHA-256, as `[[auth.api_keys]] sha256` stores keys.
pub fn sha256_hex(key: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// `Authorization: Bearer …` for a token.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}
