//! The forwarding policy: which client headers reach an upstream, and which the gateway sets
//! itself — one rule per name (the table below; `names.rs` classifies each name once, for the
//! head pass and this policy alike), with a renderer for hyper's `HeaderMap` (the router) and
//! one for raw bytes (the relay), so the two transports cannot drift.
//!
//! | client header | upstream gets |
//! |---|---|
//! | hop-by-hop (`Connection`, `Keep-Alive`, `TE`, `Trailer`, `Upgrade`, `Proxy-*`, …) and every name `Connection` lists | nothing (RFC 9110 §7.6.1) |
//! | `Host` | the endpoint's authority (set per attempt); the client's goes in `X-Forwarded-Host` |
//! | `Content-Length`, `Transfer-Encoding` | the transport's own framing |
//! | `X-Forwarded-For` | appended to when the peer is a trusted proxy, replaced by the peer otherwise |
//! | `X-Forwarded-Proto`, `-Host` | kept from a trusted proxy, set from the connection otherwise |
//! | `Forwarded` | nothing: the gateway speaks `X-Forwarded-*` |
//! | `X-Request-Id` | the request's id (a sane incoming one is kept) |
//! | `X-Portico-*` | nothing from the client; the gateway's identity headers and deadline |
//! | `X-Api-Key` | nothing: a partner's secret stays at the edge |
//! | `Authorization` | only on a route with `forward_authorization = true` |
//! | names with `_` | nothing (dropped and counted by the pipeline) |
//! | anything else | as sent |

use http::{HeaderMap, HeaderName, HeaderValue, header};

use super::{
    head::{Facts, Head, push_header},
    names::{Name, Rule},
};
use crate::{
    access,
    auth::Principal,
    request_id::{self, RequestId},
};

/// Whether a client header goes upstream as sent. `listed`: the names the request's
/// `Connection` header lists.
fn keeps(name: &str, forward_authorization: bool, listed: &[&[u8]]) -> bool {
    match Name::of(name).rule() {
        Rule::Keep => !listed.iter().any(|l| l.eq_ignore_ascii_case(name.as_bytes())),
        Rule::Authorization => forward_authorization,
        Rule::HopByHop | Rule::Own | Rule::Secret => false,
    }
}

/// Whether an upstream's response header goes on to the client: not hop-by-hop, not named by
/// the response's `Connection`, not the request id (the gateway echoes its own). Framing
/// headers are the transport's to decide.
pub(crate) fn is_forwarded_response_header(name: &str, listed: &[&[u8]]) -> bool {
    !(Name::known(name).is_some_and(Name::is_dropped_response)
        || listed.iter().any(|l| l.eq_ignore_ascii_case(name.as_bytes())))
}

/// The `X-Forwarded-*` values of one request, worked out by the pipeline.
#[derive(Clone, Debug)]
pub(crate) struct Forwarded {
    /// `X-Forwarded-For`: the chain up to and including the peer.
    pub(crate) for_chain: HeaderValue,
    pub(crate) proto: HeaderValue,
    /// `X-Forwarded-Host` from a trusted proxy; otherwise the request's own `Host` (or
    /// `:authority`) goes out, which each renderer reads where it has it (no copy).
    pub(crate) host: Option<HeaderValue>,
    /// The client: the rightmost address of the chain that is not a trusted proxy.
    pub(crate) client: std::net::IpAddr,
}

impl Forwarded {
    pub(crate) fn new(head: &Head<'_>, facts: &Facts<'_>) -> Self {
        let peer = head.peer;
        let untrusted = || Self {
            for_chain: peer.text.clone(),
            proto: HeaderValue::from_static(head.scheme),
            host: None,
            client: peer.addr,
        };
        // A client's claims are believed only from a trusted proxy.
        if !peer.trusted || !facts.x_forwarded {
            return untrusted();
        }
        let mut chain = String::new();
        let mut proto = None;
        let mut host = None;
        for (name, value) in head.headers.iter() {
            if name.eq_ignore_ascii_case("x-forwarded-for") {
                let Ok(value) = std::str::from_utf8(value) else { continue };
                if !chain.is_empty() {
                    chain.push_str(", ");
                }
                chain.push_str(value.trim());
            } else if name.eq_ignore_ascii_case("x-forwarded-proto") {
                proto = match value {
                    b"http" => Some("http"),
                    b"https" => Some("https"),
                    _ => proto,
                };
            } else if name.eq_ignore_ascii_case("x-forwarded-host") {
                host = HeaderValue::from_bytes(value).ok();
            }
        }
        // The client is the rightmost address that is not a trusted proxy, walking left from
        // the peer; an address that does not parse ends the walk (nothing left of it can be
        // believed).
        let mut client = peer.addr;
        for hop in chain.rsplit(',').map(str::trim) {
            match hop.parse::<std::net::IpAddr>() {
                Ok(addr) => {
                    client = addr.to_canonical();
                    if !peer_is_trusted(head, client) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        if !chain.is_empty() {
            chain.push_str(", ");
        }
        chain.push_str(peer.text.to_str().unwrap_or("unknown"));
        Self {
            for_chain: HeaderValue::from_str(&chain).unwrap_or_else(|_| peer.text.clone()),
            proto: HeaderValue::from_static(proto.unwrap_or(head.scheme)),
            host,
            client,
        }
    }

    /// Renders the policy onto a request's headers (the router): drops what must not go
    /// upstream and sets the gateway's own values. Identity headers come from `principal`.
    pub(crate) fn render_map(
        &self,
        headers: &mut HeaderMap,
        authority: Option<&str>,
        id: &RequestId,
        principal: Option<&Principal>,
        forward_authorization: bool,
    ) {
        let host = match &self.host {
            Some(host) => Some(host.clone()),
            None => headers
                .get(header::HOST)
                .cloned()
                .or_else(|| authority.and_then(|a| HeaderValue::from_str(a).ok())),
        };
        drop_unforwarded(headers, forward_authorization);
        headers.insert(request_id::HEADER, id.header_value().clone());
        headers.insert("x-forwarded-for", self.for_chain.clone());
        headers.insert("x-forwarded-proto", self.proto.clone());
        if let Some(host) = host {
            headers.insert("x-forwarded-host", host);
        }
        if let Some(principal) = principal {
            for (name, value) in access::identity_headers(principal) {
                headers.insert(name.clone(), value);
            }
        }
    }

    /// Renders the policy as raw header lines (the relay): the client's fields that go
    /// upstream, then the gateway's own values. Identity headers follow once the caller is
    /// known ([`render_identity_raw`]).
    pub(crate) fn render_raw(
        &self,
        out: &mut Vec<u8>,
        fields: &[httparse::Header<'_>],
        facts: &Facts<'_>,
        id: &RequestId,
        forward_authorization: bool,
    ) {
        // The head pass classified every field: only the few it marked are looked at again.
        let mut listed: Vec<&[u8]> = Vec::new();
        if facts.connection_lists {
            for field in fields.iter().filter(|f| f.name.eq_ignore_ascii_case("connection")) {
                listed.extend(crate::relay::tokens(field.value));
            }
        }
        for (i, field) in fields.iter().enumerate() {
            let marked =
                1_u128.checked_shl(i as u32).is_none_or(|bit| facts.unforwarded & bit != 0);
            let kept = if marked || !listed.is_empty() {
                keeps(field.name, forward_authorization, &listed)
            } else {
                true
            };
            if kept {
                push_header(out, field.name, field.value);
            }
        }
        push_header(out, request_id::HEADER, id.as_str().as_bytes());
        push_header(out, "x-forwarded-for", self.for_chain.as_bytes());
        push_header(out, "x-forwarded-proto", self.proto.as_bytes());
        if let Some(host) = self.host.as_ref().map(HeaderValue::as_bytes).or(facts.host) {
            push_header(out, "x-forwarded-host", host);
        }
    }
}

/// Removes from a request's headers every one the forwarding policy keeps from upstreams:
/// hop-by-hop ones and those `Connection` lists, the gateway's own, credentials (`Authorization`
/// unless `forward_authorization`), names with `_`.
pub fn drop_unforwarded(headers: &mut HeaderMap, forward_authorization: bool) {
    retain(headers, |name, listed| keeps(name, forward_authorization, listed));
}

/// The policy on an upstream's response headers (the router): hop-by-hop ones, those its
/// `Connection` lists and the upstream's request id are dropped; `Content-Length` stays for
/// hyper to frame the body with.
pub(crate) fn drop_unforwarded_response(headers: &mut HeaderMap) {
    retain(headers, |name, listed| {
        name == header::CONTENT_LENGTH || is_forwarded_response_header(name, listed)
    });
}

/// Keeps the headers `keep` accepts, given the names the message's `Connection` lists.
fn retain(headers: &mut HeaderMap, keep: impl Fn(&str, &[&[u8]]) -> bool) {
    let listed: Vec<Vec<u8>> = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|v| crate::relay::tokens(v.as_bytes()))
        .map(<[u8]>::to_vec)
        .collect();
    let listed: Vec<&[u8]> = listed.iter().map(Vec::as_slice).collect();
    let dropped: Vec<HeaderName> =
        headers.keys().filter(|name| !keep(name.as_str(), &listed)).cloned().collect();
    for name in dropped {
        headers.remove(name);
    }
}

/// Appends the identity headers of `principal` to a raw head.
pub(crate) fn render_identity_raw(out: &mut Vec<u8>, principal: &Principal) {
    for (name, value) in access::identity_headers(principal) {
        push_header(out, name.as_str(), value.as_bytes());
    }
}

/// Whether `addr` is one of the trusted proxies of the listener `head` came in on.
fn peer_is_trusted(head: &Head<'_>, addr: std::net::IpAddr) -> bool {
    head.peer.proxies.iter().any(|cidr| cidr.contains(addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_table_drops_what_must_not_reach_a_backend() {
        let listed: [&[u8]; 1] = [b"X-Secret-Hop"];
        for kept in ["accept", "content-type", "x-custom", "cookie"] {
            assert!(keeps(kept, false, &listed), "{kept}");
        }
        for dropped in [
            "Connection",
            "keep-alive",
            "TE",
            "transfer-encoding",
            "host",
            "x-forwarded-for",
            "forwarded",
            "X-Portico-Subject",
            "x-portico-timeout-ms",
            "x-api-key",
            "authorization",
            "x_portico_subject",
            "x-secret-hop",
            "x-request-id",
        ] {
            assert!(!keeps(dropped, false, &listed), "{dropped}");
        }
        assert!(keeps("Authorization", true, &listed), "forwarded when the route says so");
        assert!(!keeps("x-api-key", true, &listed), "API keys never leave the edge");
    }

    #[test]
    fn response_headers_lose_hop_by_hop_and_listed_ones() {
        let listed: [&[u8]; 1] = [b"x-internal"];
        assert!(is_forwarded_response_header("content-type", &listed));
        assert!(is_forwarded_response_header("set-cookie", &listed));
        assert!(is_forwarded_response_header("x_vendor_thing", &listed), "only requests drop `_`");
        for dropped in ["connection", "keep-alive", "x-internal", "x-request-id", "upgrade"] {
            assert!(!is_forwarded_response_header(dropped, &listed), "{dropped}");
        }
    }
}
