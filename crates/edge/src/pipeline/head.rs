//! A request head as the pipeline reads it, from either transport: the router's parsed
//! `HeaderMap` or the relay's raw `httparse` fields, and the one pass over its fields that
//! gathers what every later step needs.

use http::{HeaderMap, Method, Version};

use super::{
    Peer,
    names::{Name, Rule},
};

/// The head of one request, borrowed from whichever transport parsed it.
#[derive(Debug)]
pub struct Head<'h> {
    /// The method.
    pub method: &'h Method,
    /// The path of the target, as sent (before normalisation), without the query.
    pub path: &'h str,
    /// The query, without `?`.
    pub query: Option<&'h str>,
    /// The length of the whole request target, for the request-line limit.
    pub target_len: usize,
    /// The protocol version.
    pub version: Version,
    /// The target's authority: HTTP/2's `:authority`, or an absolute-form target's host.
    pub authority: Option<&'h str>,
    /// The header fields.
    pub headers: Headers<'h>,
    /// The connection's peer.
    pub peer: &'h Peer,
    /// The scheme the client used (`http`; `https` once TLS terminates here).
    pub scheme: &'static str,
}

/// Header fields in the form a transport has them.
#[derive(Clone, Copy, Debug)]
pub enum Headers<'h> {
    /// Parsed by hyper (the router).
    Map(&'h HeaderMap),
    /// Parsed by httparse (the relay), names as the client wrote them.
    Raw(&'h [httparse::Header<'h>]),
}

impl<'h> Headers<'h> {
    /// Every field, in order, repeated names included.
    pub fn iter(self) -> impl Iterator<Item = (&'h str, &'h [u8])> {
        let (map, raw) = match self {
            Self::Map(map) => (Some(map.iter().map(|(n, v)| (n.as_str(), v.as_bytes()))), None),
            Self::Raw(raw) => (None, Some(raw.iter().map(|h| (h.name, h.value)))),
        };
        map.into_iter().flatten().chain(raw.into_iter().flatten())
    }
}

/// What one pass over a head's fields found.
#[derive(Debug, Default)]
pub(crate) struct Facts<'h> {
    pub(crate) fields: usize,
    /// Name plus value bytes of every field, plus 4 per field (`: ` and CRLF).
    pub(crate) head_bytes: usize,
    pub(crate) largest_field: usize,
    pub(crate) host: Option<&'h [u8]>,
    pub(crate) hosts: usize,
    pub(crate) content_length: Option<u64>,
    /// An unparsable `Content-Length`, or several that differ.
    pub(crate) bad_length: bool,
    pub(crate) transfer_encoding: bool,
    /// The last `Transfer-Encoding` coding is `chunked` (RFC 9112 §6.3: any other framing of
    /// a request is unknowable).
    pub(crate) chunked_last: bool,
    pub(crate) expect: bool,
    pub(crate) upgrade: bool,
    /// `Connection: close`.
    pub(crate) close: bool,
    pub(crate) request_id: Option<&'h [u8]>,
    pub(crate) authorization: Option<&'h [u8]>,
    pub(crate) authorizations: usize,
    pub(crate) api_key: Option<&'h [u8]>,
    pub(crate) api_keys: usize,
    /// Fields whose name has an underscore: dropped.
    pub(crate) underscores: usize,
    /// Any `X-Forwarded-For`, `-Proto` or `-Host` field (only read again when the peer is
    /// trusted).
    pub(crate) x_forwarded: bool,
    /// Bit `i` set: field `i` is not forwarded as sent (its rule is not `Keep`), for the raw
    /// renderer, which then looks at no name twice. Fields past the 128th have no bit; the relay
    /// parses no more than that.
    pub(crate) unforwarded: u128,
    /// `Connection` lists a name other than `close`, `keep-alive` and `upgrade`: the renderer
    /// must drop the fields it names.
    pub(crate) connection_lists: bool,
}

impl<'h> Facts<'h> {
    pub(crate) fn gather(head: &Head<'h>) -> Self {
        // Each form iterated directly: a chained iterator over either costs a branch per field.
        match head.headers {
            Headers::Map(map) => Self::of(map.iter().map(|(n, v)| (n.as_str(), v.as_bytes()))),
            Headers::Raw(raw) => Self::of(raw.iter().map(|h| (h.name, h.value))),
        }
    }

    fn of(fields: impl Iterator<Item = (&'h str, &'h [u8])>) -> Self {
        let mut facts = Self::default();
        for (i, (name, value)) in fields.enumerate() {
            let size = name.len() + value.len();
            facts.fields += 1;
            facts.head_bytes += size + 4;
            facts.largest_field = facts.largest_field.max(size);
            let class = Name::of(name);
            if class.rule() != Rule::Keep
                && let Some(bit) = 1_u128.checked_shl(i as u32)
            {
                facts.unforwarded |= bit;
            }
            match class {
                Name::Underscore => facts.underscores += 1,
                Name::Host => {
                    facts.hosts += 1;
                    facts.host.get_or_insert(value);
                }
                Name::ContentLength => {
                    match (crate::relay::parse_length(value), facts.content_length) {
                        (Some(n), None) => facts.content_length = Some(n),
                        (Some(n), Some(m)) if n == m => {}
                        _ => facts.bad_length = true,
                    }
                }
                Name::TransferEncoding => {
                    facts.transfer_encoding = true;
                    let last = crate::relay::tokens(value).last().unwrap_or_default();
                    facts.chunked_last = last.eq_ignore_ascii_case(b"chunked");
                }
                Name::Expect => facts.expect = true,
                Name::Upgrade => facts.upgrade = true,
                Name::Connection => {
                    for token in crate::relay::tokens(value) {
                        if token.eq_ignore_ascii_case(b"close") {
                            facts.close = true;
                        } else if token.eq_ignore_ascii_case(b"upgrade") {
                            facts.upgrade = true;
                        } else if !token.eq_ignore_ascii_case(b"keep-alive") {
                            facts.connection_lists = true;
                        }
                    }
                }
                Name::RequestId => facts.request_id = Some(value),
                Name::Authorization => {
                    facts.authorizations += 1;
                    facts.authorization.get_or_insert(value);
                }
                Name::ApiKey => {
                    facts.api_keys += 1;
                    facts.api_key.get_or_insert(value);
                }
                Name::XForwarded => facts.x_forwarded = true,
                Name::HopByHop | Name::Own | Name::Other => {}
            }
        }
        facts
    }
}

/// Appends `name: value` CRLF to a raw head.
pub(crate) fn push_header(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// Appends `n` in decimal, without an allocation.
pub(crate) fn push_decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0_u8; 20];
    out.extend_from_slice(decimal(&mut digits, n));
}

/// `n` in decimal, written at the end of `digits`.
pub(crate) fn decimal(digits: &mut [u8; 20], mut n: u64) -> &[u8] {
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &digits[at..]
}
