//! One stored response: its headers, its body in every stored coding (compressed once, when
//! stored, never per hit), the strong `ETag` of each, and how long it is fresh and then usable
//! stale. The Redis tier stores it as bytes of its own small format.

use std::{
    io::Write as _,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use super::http::Coding;

/// Bodies smaller than this are not worth compressing.
const COMPRESS_FROM: usize = 256;

/// A stored response.
#[derive(Debug)]
pub(crate) struct Entry {
    /// The response's own headers, but for those the cache writes itself.
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    /// The body: identity, gzip and br (a compressed one empty when not worth it).
    bodies: [Bytes; 3],
    /// The strong validator of the identity body; each coding appends its own suffix.
    etag: String,
    /// `ETag` of each coding (identity, gzip, br).
    etags: [HeaderValue; 3],
    /// When it was stored, in ms since the Unix epoch.
    pub(crate) stored_ms: u64,
    /// How long it is fresh; then usable stale for `stale_while_revalidate` and
    /// `stale_if_error`.
    pub(crate) fresh: Duration,
    pub(crate) stale_while_revalidate: Duration,
    pub(crate) stale_if_error: Duration,
    /// Purge tags (`Cache-Tag`), and the request path (purge by path).
    pub(crate) tags: Vec<String>,
    pub(crate) path: String,
}

/// How old an entry is now, as the cache uses it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Freshness {
    Fresh,
    /// Stale, within `stale_while_revalidate`: served while one refresh runs.
    Revalidate,
    /// Stale, within `stale_if_error`: fetched again, served only if that fails.
    IfError,
    Expired,
}

/// What an [`Entry`] is made of, before its codings are made.
pub(crate) struct Parts {
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: Bytes,
    pub(crate) fresh: Duration,
    pub(crate) stale_while_revalidate: Duration,
    pub(crate) stale_if_error: Duration,
    pub(crate) tags: Vec<String>,
    pub(crate) path: String,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

impl Entry {
    /// Stores `parts` now: its compressed codings made once, here.
    pub(crate) fn new(parts: Parts) -> Self {
        let compressible = parts.body.len() >= COMPRESS_FROM
            && parts.headers.iter().any(|(name, value)| {
                name == http::header::CONTENT_TYPE && compressible(value.as_bytes())
            });
        let (gzip, br) = if compressible {
            (gzip(&parts.body), brotli(&parts.body))
        } else {
            (Bytes::new(), Bytes::new())
        };
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &parts.body);
        let hash: String = digest.as_ref()[..12].iter().map(|b| format!("{b:02x}")).collect();
        Self {
            headers: parts.headers,
            bodies: [parts.body, gzip, br],
            etags: etags(&hash),
            etag: hash,
            stored_ms: now_ms(),
            fresh: parts.fresh,
            stale_while_revalidate: parts.stale_while_revalidate,
            stale_if_error: parts.stale_if_error,
            tags: parts.tags,
            path: parts.path,
        }
    }

    /// The coding served to a client that prefers `wanted`: it, when stored, else identity.
    pub(crate) fn coding(&self, wanted: Coding) -> Coding {
        match wanted {
            Coding::Gzip if !self.bodies[1].is_empty() => Coding::Gzip,
            Coding::Br if !self.bodies[2].is_empty() => Coding::Br,
            _ => Coding::Identity,
        }
    }

    pub(crate) fn body(&self, coding: Coding) -> &Bytes {
        match coding {
            Coding::Identity => &self.bodies[0],
            Coding::Gzip => &self.bodies[1],
            Coding::Br => &self.bodies[2],
        }
    }

    /// The strong `ETag` of one coding: each coding is its own representation (RFC 9110
    /// §8.8.3.3).
    pub(crate) fn etag(&self, coding: Coding) -> &HeaderValue {
        match coding {
            Coding::Identity => &self.etags[0],
            Coding::Gzip => &self.etags[1],
            Coding::Br => &self.etags[2],
        }
    }

    /// Bytes it holds, for the tier's bound.
    pub(crate) fn weight(&self) -> u32 {
        let headers: usize =
            self.headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 32).sum();
        let bodies: usize = self.bodies.iter().map(Bytes::len).sum();
        let tags: usize = self.tags.iter().map(String::len).sum();
        u32::try_from(256 + headers + bodies + tags + self.path.len()).unwrap_or(u32::MAX)
    }

    /// Its age now.
    pub(crate) fn age(&self) -> Duration {
        Duration::from_millis(now_ms().saturating_sub(self.stored_ms))
    }

    pub(crate) fn freshness(&self) -> Freshness {
        let age = self.age();
        if age < self.fresh {
            Freshness::Fresh
        } else if age < self.fresh + self.stale_while_revalidate {
            Freshness::Revalidate
        } else if age < self.fresh + self.stale_if_error {
            Freshness::IfError
        } else {
            Freshness::Expired
        }
    }

    /// How long it is worth keeping from now: fresh, then stale as long as either window
    /// allows.
    pub(crate) fn lifetime(&self) -> Duration {
        let whole = self.fresh + self.stale_while_revalidate.max(self.stale_if_error);
        whole.saturating_sub(self.age())
    }

    /// The entry as bytes for the Redis tier: a length-prefixed JSON head, then the bodies.
    pub(crate) fn to_bytes(&self) -> Vec<u8> {
        let head = Head {
            headers: self
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
                .collect(),
            etag: self.etag.clone(),
            stored_ms: self.stored_ms,
            fresh_ms: self.fresh.as_millis() as u64,
            swr_ms: self.stale_while_revalidate.as_millis() as u64,
            sie_ms: self.stale_if_error.as_millis() as u64,
            tags: self.tags.clone(),
            path: self.path.clone(),
            lengths: [self.bodies[0].len(), self.bodies[1].len(), self.bodies[2].len()],
        };
        let head = serde_json::to_vec(&head).unwrap_or_default();
        let mut out =
            Vec::with_capacity(8 + head.len() + self.bodies.iter().map(Bytes::len).sum::<usize>());
        out.extend_from_slice(FORMAT);
        out.extend_from_slice(&(head.len() as u32).to_be_bytes());
        out.extend_from_slice(&head);
        for body in &self.bodies {
            out.extend_from_slice(body);
        }
        out
    }

    /// An entry from [`Entry::to_bytes`]; `None` for anything else (another format version,
    /// a truncated value).
    pub(crate) fn from_bytes(bytes: &Bytes) -> Option<Self> {
        let rest = bytes.strip_prefix(FORMAT)?;
        let (length, rest) = rest.split_first_chunk::<4>()?;
        let length = u32::from_be_bytes(*length) as usize;
        let head: Head = serde_json::from_slice(rest.get(..length)?).ok()?;
        let mut at = FORMAT.len() + 4 + length;
        let mut bodies: [Bytes; 3] = Default::default();
        for (body, length) in bodies.iter_mut().zip(head.lengths) {
            *body = bytes.get(at..at.checked_add(length)?)?.to_vec().into();
            at += length;
        }
        let headers = head
            .headers
            .into_iter()
            .filter_map(|(n, v)| {
                Some((HeaderName::try_from(n).ok()?, HeaderValue::from_bytes(&v).ok()?))
            })
            .collect();
        Some(Self {
            headers,
            bodies,
            etags: etags(&head.etag),
            etag: head.etag,
            stored_ms: head.stored_ms,
            fresh: Duration::from_millis(head.fresh_ms),
            stale_while_revalidate: Duration::from_millis(head.swr_ms),
            stale_if_error: Duration::from_millis(head.sie_ms),
            tags: head.tags,
            path: head.path,
        })
    }
}

/// The Redis format's version: a reader of another version finds nothing.
const FORMAT: &[u8] = b"pc1\n";

#[derive(Serialize, Deserialize)]
struct Head {
    headers: Vec<(String, Vec<u8>)>,
    etag: String,
    stored_ms: u64,
    fresh_ms: u64,
    swr_ms: u64,
    sie_ms: u64,
    tags: Vec<String>,
    path: String,
    lengths: [usize; 3],
}

/// The `ETag`s of a body's codings: its hash, and a suffix per compressed coding.
fn etags(hash: &str) -> [HeaderValue; 3] {
    ["", "-gz", "-br"].map(|suffix| {
        HeaderValue::try_from(format!("\"{hash}{suffix}\""))
            .unwrap_or(HeaderValue::from_static("\"portico\""))
    })
}

fn compressible(content_type: &[u8]) -> bool {
    let content_type = String::from_utf8_lossy(content_type).to_ascii_lowercase();
    content_type.starts_with("text/")
        || content_type.contains("json")
        || content_type.contains("xml")
        || content_type.contains("javascript")
}

fn gzip(body: &[u8]) -> Bytes {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    match encoder.write_all(body).and_then(|()| encoder.finish()) {
        Ok(out) if out.len() < body.len() => out.into(),
        _ => Bytes::new(),
    }
}

fn brotli(body: &[u8]) -> Bytes {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams { quality: 5, lgwin: 22, ..Default::default() };
    match brotli::BrotliCompress(&mut &body[..], &mut out, &params) {
        Ok(_) if out.len() < body.len() => out.into(),
        _ => Bytes::new(),
    }
}
