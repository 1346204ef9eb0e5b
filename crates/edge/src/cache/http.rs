//! The HTTP of caching: the directives of an upstream's `Cache-Control`, `If-None-Match`
//! matching, and which stored encoding a client gets.

use std::time::Duration;

use http::{HeaderMap, HeaderValue};

/// What an upstream's `Cache-Control` says about storing its response in a shared cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Directives {
    pub(crate) no_store: bool,
    pub(crate) private: bool,
    pub(crate) no_cache: bool,
    pub(crate) public: bool,
    /// `s-maxage` (for shared caches) or else `max-age`.
    pub(crate) lifetime: Option<Duration>,
}

impl Directives {
    /// The directives of every `Cache-Control` field of `headers` (RFC 9111 §5.2.2). A
    /// directive this cache does not know is ignored, as the RFC asks.
    pub(crate) fn of(headers: &HeaderMap) -> Self {
        let mut found = Self::default();
        let (mut max_age, mut s_maxage) = (None, None);
        for value in headers.get_all(http::header::CACHE_CONTROL) {
            let Ok(value) = value.to_str() else {
                // Unreadable: the safe reading.
                found.no_store = true;
                continue;
            };
            for directive in value.split(',') {
                let (name, argument) = match directive.split_once('=') {
                    Some((name, argument)) => {
                        (name.trim(), Some(argument.trim().trim_matches('"')))
                    }
                    None => (directive.trim(), None),
                };
                let seconds =
                    || argument.and_then(|a| a.parse::<u64>().ok()).map(Duration::from_secs);
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => found.no_store = true,
                    "private" => found.private = true,
                    "no-cache" => found.no_cache = true,
                    "public" => found.public = true,
                    // A malformed lifetime is no lifetime: not stored on its account.
                    "max-age" => max_age = Some(seconds().unwrap_or(Duration::ZERO)),
                    "s-maxage" => s_maxage = Some(seconds().unwrap_or(Duration::ZERO)),
                    _ => {}
                }
            }
        }
        found.lifetime = s_maxage.or(max_age);
        found
    }
}

/// Whether `If-None-Match` (its values, `validators`) matches `etag` by the weak comparison
/// (RFC 9110 §13.1.2): `*`, or any listed tag with the same opaque value, `W/` or not.
pub(crate) fn none_match(validators: &[HeaderValue], etag: &HeaderValue) -> bool {
    let opaque = |tag: &[u8]| -> Vec<u8> {
        let tag = tag.trim_ascii();
        tag.strip_prefix(b"W/").unwrap_or(tag).to_vec()
    };
    let ours = opaque(etag.as_bytes());
    validators.iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|tag| tag.trim_ascii() == b"*" || opaque(tag) == ours)
    })
}

/// The content codings this cache stores, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Coding {
    Br,
    Gzip,
    Identity,
}

impl Coding {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Br => "br",
            Self::Gzip => "gzip",
            Self::Identity => "identity",
        }
    }

    /// The coding `headers`' `Accept-Encoding` prefers among the ones stored: the highest
    /// q-value, br before gzip on a tie; identity unless refused.
    pub(crate) fn negotiate(headers: &HeaderMap) -> Self {
        let mut best = (0.0_f32, Self::Identity);
        for value in headers.get_all(http::header::ACCEPT_ENCODING) {
            let Ok(value) = value.to_str() else { continue };
            for item in value.split(',') {
                let mut parts = item.split(';');
                let name = parts.next().unwrap_or("").trim().to_ascii_lowercase();
                let q = parts
                    .find_map(|p| p.trim().strip_prefix("q=").and_then(|q| q.parse::<f32>().ok()))
                    .unwrap_or(1.0);
                let coding = match name.as_str() {
                    "br" => Self::Br,
                    "gzip" | "x-gzip" => Self::Gzip,
                    _ => continue,
                };
                let better = q > best.0 || (q == best.0 && q > 0.0 && coding == Self::Br);
                if q > 0.0 && better {
                    best = (q, coding);
                }
            }
        }
        best.1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn cache_control_is_read_as_a_shared_cache_must() {
        let d = Directives::of(&headers(&[("cache-control", "public, max-age=60, s-maxage=30")]));
        assert_eq!((d.public, d.lifetime), (true, Some(Duration::from_secs(30))));
        let d = Directives::of(&headers(&[
            ("cache-control", "Private"),
            ("cache-control", "max-age=5"),
        ]));
        assert!(d.private);
        assert_eq!(d.lifetime, Some(Duration::from_secs(5)));
        assert!(Directives::of(&headers(&[("cache-control", "no-store")])).no_store);
        let d = Directives::of(&headers(&[("cache-control", "max-age=soon")]));
        assert_eq!(d.lifetime, Some(Duration::ZERO), "a malformed lifetime is no lifetime");
        assert_eq!(Directives::of(&HeaderMap::new()).lifetime, None);
    }

    #[test]
    fn if_none_match_compares_weakly() {
        let etag = HeaderValue::from_static("\"abc\"");
        let matches = |value: &'static str| none_match(&[HeaderValue::from_static(value)], &etag);
        assert!(matches("\"abc\""));
        assert!(matches("W/\"abc\""));
        assert!(matches("\"x\", \"abc\""));
        assert!(matches("*"));
        assert!(!matches("\"abcd\""));
        assert!(!none_match(&[], &etag));
    }

    #[test]
    fn the_best_accepted_coding_is_chosen() {
        let pick = |value| Coding::negotiate(&headers(&[("accept-encoding", value)]));
        assert_eq!(pick("gzip, deflate, br"), Coding::Br);
        assert_eq!(pick("gzip"), Coding::Gzip);
        assert_eq!(pick("br;q=0.5, gzip"), Coding::Gzip);
        assert_eq!(pick("br;q=0, gzip;q=0"), Coding::Identity);
        assert_eq!(pick("deflate"), Coding::Identity);
        assert_eq!(Coding::negotiate(&HeaderMap::new()), Coding::Identity);
    }
}
