//! The header names the pipeline knows, classified once per field: the head pass reads what
//! it needs from the class, and the forwarding policy's rule comes from the same class, so a
//! relayed request looks at each of its names once (measured: `bench/instructions`).

use crate::access::IDENTITY_HEADER_PREFIX;

/// What a header name is to the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Name {
    Host,
    ContentLength,
    TransferEncoding,
    Expect,
    Upgrade,
    Connection,
    RequestId,
    Authorization,
    ApiKey,
    /// `X-Forwarded-For`, `-Proto`, `-Host`: read from a trusted proxy, set by the gateway.
    XForwarded,
    /// Another name that describes one connection, not the message (RFC 9110 §7.6.1).
    HopByHop,
    /// Another name whose value the gateway sets itself: `Forwarded`, `X-Forwarded-Port`,
    /// `X-Portico-*`.
    Own,
    /// A name with `_`: dropped (a backend may read `X_Portico_Subject` as
    /// `X-Portico-Subject`).
    Underscore,
    /// Anything else.
    Other,
}

/// What the forwarding policy does with a client's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rule {
    /// Forwarded as sent (unless the request's `Connection` lists it).
    Keep,
    /// Describes one connection, not the message.
    HopByHop,
    /// The gateway sets its own value.
    Own,
    /// A credential that stays at the edge.
    Secret,
    /// `Authorization`: a secret unless the route forwards it.
    Authorization,
}

// === impl Name ===

impl Name {
    /// The class of a request header's name.
    pub(crate) fn of(name: &str) -> Self {
        if let Some(known) = Self::known(name) {
            return known;
        }
        let bytes = name.as_bytes();
        if bytes.contains(&b'_') {
            Self::Underscore
        } else if bytes.len() >= IDENTITY_HEADER_PREFIX.len()
            && bytes[..IDENTITY_HEADER_PREFIX.len()]
                .eq_ignore_ascii_case(IDENTITY_HEADER_PREFIX.as_bytes())
        {
            Self::Own
        } else {
            Self::Other
        }
    }

    /// The class of a name the pipeline knows by name, or `None`. Dispatched on the length
    /// first: most names have a length none of these has, and a length compare is cheaper than
    /// a case-insensitive one.
    pub(crate) fn known(name: &str) -> Option<Self> {
        let is = |literal: &str| same_token(name.as_bytes(), literal.as_bytes());
        Some(match name.len() {
            2 if is("te") => Self::HopByHop,
            4 if is("host") => Self::Host,
            6 if is("expect") => Self::Expect,
            7 if is("upgrade") => Self::Upgrade,
            7 if is("trailer") => Self::HopByHop,
            9 if is("x-api-key") => Self::ApiKey,
            9 if is("forwarded") => Self::Own,
            10 if is("connection") => Self::Connection,
            10 if is("keep-alive") => Self::HopByHop,
            12 if is(crate::request_id::HEADER) => Self::RequestId,
            13 if is("authorization") => Self::Authorization,
            14 if is("content-length") => Self::ContentLength,
            15 if is("x-forwarded-for") => Self::XForwarded,
            16 if is("x-forwarded-host") => Self::XForwarded,
            16 if is("x-forwarded-port") => Self::Own,
            16 if is("proxy-connection") => Self::HopByHop,
            17 if is("transfer-encoding") => Self::TransferEncoding,
            17 if is("x-forwarded-proto") => Self::XForwarded,
            18 if is("proxy-authenticate") => Self::HopByHop,
            19 if is("proxy-authorization") => Self::HopByHop,
            _ => return None,
        })
    }

    /// The forwarding policy's rule for a client header of this class.
    pub(crate) fn rule(self) -> Rule {
        match self {
            Self::Connection | Self::Upgrade | Self::TransferEncoding | Self::HopByHop => {
                Rule::HopByHop
            }
            // Names with `_` are dropped like hop-by-hop ones (and counted by the pipeline).
            Self::Underscore => Rule::HopByHop,
            Self::Host | Self::ContentLength | Self::RequestId | Self::XForwarded | Self::Own => {
                Rule::Own
            }
            Self::ApiKey => Rule::Secret,
            Self::Authorization => Rule::Authorization,
            Self::Expect | Self::Other => Rule::Keep,
        }
    }

    /// Whether an upstream's response header of this name is the gateway's to drop: hop-by-hop
    /// ones and the upstream's request id (the gateway echoes its own). Framing headers are the
    /// transport's to decide.
    pub(crate) fn is_dropped_response(self) -> bool {
        matches!(self, Self::Connection | Self::Upgrade | Self::HopByHop | Self::RequestId)
    }
}

/// Whether the token `name` is `lower` (a name of lowercase letters and `-`, of the same length)
/// in any case, eight bytes at a time: setting bit 5 lowercases a letter and leaves `-` as it
/// is, and of the bytes a token may hold (RFC 9110 §5.6.2) only the uppercase letters turn
/// into another one of `[a-z-]` that way.
fn same_token(name: &[u8], lower: &[u8]) -> bool {
    const CASE: u64 = 0x2020_2020_2020_2020;
    let word = |bytes: &[u8], at: usize| {
        let mut word = [0_u8; 8];
        word.copy_from_slice(&bytes[at..at + 8]);
        u64::from_ne_bytes(word)
    };
    let n = name.len();
    if n != lower.len() {
        return false;
    }
    if n < 8 {
        return name.iter().zip(lower).all(|(a, b)| a | 0x20 == *b);
    }
    let mut at = 0;
    while at + 8 <= n {
        if word(name, at) | CASE != word(lower, at) {
            return false;
        }
        at += 8;
    }
    // The tail as the last eight bytes, overlapping what was compared already.
    at == n || word(name, n - 8) | CASE == word(lower, n - 8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_known_name_is_classified_alike() {
        for (name, class) in [
            ("Host", Name::Host),
            ("CONTENT-LENGTH", Name::ContentLength),
            ("Transfer-Encoding", Name::TransferEncoding),
            ("te", Name::HopByHop),
            ("Trailer", Name::HopByHop),
            ("X-Forwarded-Proto", Name::XForwarded),
            ("x-forwarded-port", Name::Own),
            ("X-Portico-Subject", Name::Own),
            ("x_portico_subject", Name::Underscore),
            ("X-Portico_Subject", Name::Underscore),
            ("x-portico-", Name::Own),
            ("user-agent", Name::Other),
            ("x-forwarded-server", Name::Other),
        ] {
            assert_eq!(Name::of(name), class, "{name}");
        }
    }

    #[test]
    fn the_word_compare_agrees_with_a_byte_compare() {
        let names = [
            "te",
            "host",
            "Host",
            "HOST",
            "hosT",
            "hose",
            "connection",
            "Connection",
            "keep-alive",
            "Keep-Alive",
            "content-length",
            "Content-Length",
            "content-lengti",
            "x-forwarded-for",
            "X-FORWARDED-FOR",
            "x-forwarded-fo_",
            "proxy-authorization",
            "proxy-authorizatioN",
            "proxy-authorizatiom",
            "x-api-key",
            "x_api_key",
            "x-api-kez",
        ];
        let literals = [
            "te",
            "host",
            "connection",
            "keep-alive",
            "content-length",
            "x-forwarded-for",
            "proxy-authorization",
            "x-api-key",
        ];
        for literal in literals {
            assert!(literal.bytes().all(|b| b | 0x20 == b), "{literal} must be lowercase");
            for name in names {
                assert_eq!(
                    same_token(name.as_bytes(), literal.as_bytes()),
                    name.eq_ignore_ascii_case(literal),
                    "{name} vs {literal}"
                );
            }
        }
    }

    #[test]
    fn response_headers_drop_only_hop_by_hop_ones_and_the_request_id() {
        for dropped in ["Connection", "keep-alive", "upgrade", "x-request-id", "proxy-connection"] {
            assert!(Name::known(dropped).is_some_and(Name::is_dropped_response), "{dropped}");
        }
        for kept in ["content-type", "set-cookie", "x_vendor_thing", "x-portico-x", "server"] {
            assert!(!Name::known(kept).is_some_and(Name::is_dropped_response), "{kept}");
        }
    }
}
