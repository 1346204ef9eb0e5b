//! The parsers a hostile client feeds, each with the properties it must keep whatever the
//! input: the relay's HTTP/1.1 head handling, the chunked-body tracker, path normalisation and
//! `?fields=` parsing. The fuzz targets in `fuzz/` (feature `fuzzing`) call these, and a plain
//! test replays the checked-in corpus (`fuzz/corpus/<target>/`) on every CI run.
//!
//! Each function panics when a property fails — that is what the fuzzer looks for. Built only
//! for tests and the fuzz targets, never into the gateway.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::{borrow::Cow, sync::OnceLock};

use serde_json::{Value, json};

use crate::{
    GatewayConfig, Upstreams, access::Routes, fields::FieldSet, path::normalise, relay::Relay,
    stack,
};

/// The relay of a small gateway: a rewritten prefix and a second route beside it.
fn relay() -> &'static Relay {
    static RELAY: OnceLock<std::sync::Arc<Relay>> = OnceLock::new();
    RELAY.get_or_init(|| {
        let config = GatewayConfig::from_toml(
            r#"
            [upstreams.catalog]
            endpoints = ["http://127.0.0.1:9"]
            [[routes]]
            path = "/static"
            upstream = "catalog"
            rewrite = "/files"
            access = "public"
            [[routes]]
            path = "/admin"
            upstream = "catalog"
            access = "public"
            "#,
        )
        .expect("the fuzzing gateway's config is valid");
        let upstreams = Upstreams::from_config(&config).expect("its upstreams are valid");
        let gateway = stack::gateway("fuzz", Routes::new(), &config, &upstreams)
            .expect("the fuzzing gateway builds");
        gateway.relay().expect("it has pass-through routes").clone()
    })
}

/// Bytes as the relay reads a request head. Whatever it relays must be exactly one
/// well-formed request: no second request inside it, no header the edge drops (names with `_`,
/// a client's `x-portico-*`, credentials), and a path that is already canonical.
pub fn http1_head(bytes: &[u8]) {
    let Some(head) = relay().upstream_head(bytes) else { return };
    let mut fields = [httparse::EMPTY_HEADER; 160];
    let mut parsed = httparse::Request::new(&mut fields);
    let parsed_len = match parsed.parse(&head) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("the upstream head does not parse ({other:?}): {head:?}"),
    };
    assert_eq!(parsed_len, head.len(), "more than one request in {head:?}");
    let path = parsed.path.expect("a parsed request has a target");
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    assert!(path.starts_with("/files") || path.starts_with("/admin"), "{path}");
    assert!(matches!(normalise(path), Ok(Cow::Borrowed(_))), "not canonical: {path}");
    let mut hosts = 0;
    for field in parsed.headers.iter() {
        let name = field.name.to_ascii_lowercase();
        assert!(!name.contains('_'), "{name} reached the upstream");
        assert!(
            !name.starts_with("x-portico-") || name == crate::deadline::HEADER,
            "{name} reached the upstream"
        );
        assert!(name != "x-api-key" && name != "authorization", "{name} reached the upstream");
        hosts += usize::from(name == "host");
    }
    assert_eq!(hosts, 1, "one Host line, the gateway's: {head:?}");
}

/// A chunked body split anywhere is followed as it is whole (the first byte picks the split).
pub fn chunked(bytes: &[u8]) {
    let at = bytes.first().map_or(0, |b| usize::from(*b));
    crate::relay::chunked_splits_agree(bytes, at);
}

/// A path the normaliser accepts comes out canonical, and normalising it again changes
/// nothing (and takes the borrowed fast path).
pub fn path(bytes: &[u8]) {
    // Request targets reach the normaliser as `&str`; other bytes are not its input.
    let Ok(input) = std::str::from_utf8(bytes) else { return };
    let Ok(out) = normalise(input) else { return };
    assert!(out.starts_with('/'), "{input:?} → {out:?}");
    assert!(!out.contains("//"), "{input:?} → {out:?}");
    assert!(!out.contains('\\'), "{input:?} → {out:?}");
    assert!(out[1..].split('/').all(|s| s != "." && s != ".."), "{input:?} → {out:?}");
    let upper = out.to_ascii_uppercase();
    assert!(!upper.contains("%2F") && !upper.contains("%2E"), "{input:?} → {out:?}");
    // Allocating means something changed, and nothing changed means no allocation.
    assert_eq!(matches!(out, Cow::Borrowed(_)), *out == *input, "{input:?} → {out:?}");
    match normalise(&out) {
        Ok(Cow::Borrowed(again)) if again == out => {}
        again => panic!("not idempotent: {input:?} → {out:?} → {again:?}"),
    }
}

/// A `fields` value either is refused or trims a response to documented fields only (and
/// `degraded`, which is never trimmed).
pub fn fields(bytes: &[u8]) {
    const ALLOWED: &[&str] = &["id", "name", "price", "featured", "featured.name"];
    let Ok(raw) = std::str::from_utf8(bytes) else { return };
    let Ok(set) = FieldSet::parse(raw, ALLOWED) else { return };
    let mut value = json!({
        "id": "p-1", "name": "lamp", "price": 10, "secret": "internal",
        "featured": [{"name": "a", "cost": 1}], "degraded": ["reviews"],
    });
    set.apply(&mut value);
    let Value::Object(map) = &value else { panic!("not an object: {value}") };
    assert!(map.contains_key("degraded"), "{raw:?} trimmed `degraded`");
    for key in map.keys() {
        assert!(key == "degraded" || ALLOWED.contains(&key.as_str()), "{raw:?} kept {key}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays every checked-in corpus input of every target: seconds, on every CI run.
    #[test]
    fn the_checked_in_fuzz_corpus_keeps_every_property() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fuzz/corpus");
        type Target = (&'static str, fn(&[u8]));
        let targets: [Target; 4] =
            [("http1_head", http1_head), ("chunked", chunked), ("path", path), ("fields", fields)];
        for (target, check) in targets {
            let dir = format!("{root}/{target}");
            let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{dir}: {e}"));
            let mut replayed = 0;
            for entry in entries {
                let input = std::fs::read(entry.unwrap().path()).unwrap();
                check(&input);
                replayed += 1;
            }
            assert!(replayed >= 5, "{dir} holds {replayed} inputs");
        }
    }

    #[test]
    fn a_relayed_head_is_one_clean_request() {
        // What the head step must turn into one canonical, clean upstream request.
        http1_head(b"GET /static/a/../b?x=1 HTTP/1.1\r\nHost: g\r\nX_Portico_Subject: admin\r\nX-Portico-Subject: admin\r\nX-Api-Key: k\r\n\r\n");
        // Climbing out of `/static` lands on `/admin`, whose own route (and access rule) applies.
        let relayed =
            relay().upstream_head(b"GET /static/%2e%2e/admin HTTP/1.1\r\nHost: g\r\n\r\n").unwrap();
        assert!(relayed.starts_with(b"GET /admin HTTP/1.1\r\n"));
        // Above the root: refused.
        assert!(relay().upstream_head(b"GET /../x HTTP/1.1\r\nHost: g\r\n\r\n").is_none());
        let relayed = relay().upstream_head(b"GET /static/b HTTP/1.1\r\nHost: g\r\n\r\n").unwrap();
        assert!(relayed.starts_with(b"GET /files/b HTTP/1.1\r\n"));
    }
}
