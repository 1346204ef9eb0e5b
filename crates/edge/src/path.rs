//! Request-path normalisation, run on every request before routing and relaying.
//!
//! The edge and the backend must agree on which resource a request names, or a client can route
//! around a check (path confusion: `/static/%2e%2e/admin` matches the `/static` route at the
//! edge and reaches `/admin` behind it). So the gateway routes on, and forwards, one canonical
//! spelling of the path, the one RFC 3986 §5.2.4 and §6.2.2 define and Envoy (`normalize_path`,
//! `merge_slashes`, escaped slashes rejected) and nginx (`merge_slashes on`) apply:
//!
//! - percent-encoded unreserved characters are decoded (`%2e` → `.`, `%7E` → `~`), every other
//!   escape is kept with uppercase hex digits (`%c3%a9` → `%C3%A9`);
//! - runs of `/` become one, `.` segments go, `..` removes the segment before it;
//! - what cannot be made unambiguous is refused, not repaired: an encoded `/` or `\`, a raw `\`,
//!   a NUL, a malformed escape, and a `..` that would climb above `/` (clamping it, as a browser
//!   does, would hide an attack behind a plausible path).
//!
//! Almost every real path is already canonical, so [`normalise`] checks that in one scan and
//! returns the input borrowed; it allocates only for a path it has to rewrite.

use std::{borrow::Cow, fmt};

/// Why a path is refused (answered 400 `invalid_path` by the caller).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PathError {
    /// `%2F`: backends disagree on whether it separates segments.
    EncodedSlash,
    /// A raw `\` or `%5C`: some backends (Windows, some frameworks) treat it as `/`.
    Backslash,
    /// `%00` (or a raw NUL): C-based backends end the string there.
    Nul,
    /// A `%` not followed by two hexadecimal digits.
    BadEscape,
    /// A `..` segment with nothing left to remove.
    AboveRoot,
    /// The path does not start with `/`.
    NotAbsolute,
}

// === impl PathError ===

impl PathError {
    /// A client-facing explanation, for the problem details' `detail`.
    pub fn detail(self) -> &'static str {
        match self {
            Self::EncodedSlash => "the path contains an encoded slash (%2F)",
            Self::Backslash => "the path contains a backslash (\\ or %5C)",
            Self::Nul => "the path contains a NUL byte (%00)",
            Self::BadEscape => "the path contains a `%` not followed by two hexadecimal digits",
            Self::AboveRoot => "the path climbs above the root with `..`",
            Self::NotAbsolute => "the path must start with `/`",
        }
    }
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.detail())
    }
}

impl std::error::Error for PathError {}

// === normalise ===

/// Normalises the path part of a request target (no query; the caller splits at '?').
///
/// Returns the input borrowed when it is already canonical — the common case, decided in one
/// scan — and an owned rewrite otherwise. See the module documentation for the rules.
pub fn normalise(path: &str) -> Result<Cow<'_, str>, PathError> {
    let bytes = path.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    // Everything before `seg_start` is canonical and ends with `/`, so the rewrite can start
    // from there instead of from the beginning.
    let mut seg_start = 1;
    let mut i = 1;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'/' => {
                // An empty segment here is a `//`; a trailing empty segment (`/a/`) is kept.
                let segment = &bytes[seg_start..i];
                if segment.is_empty() || is_dot_segment(segment) {
                    return rewrite(path, seg_start).map(Cow::Owned);
                }
                seg_start = i + 1;
                i += 1;
            }
            b'%' => {
                let value = unescape(bytes, i)?;
                // A kept escape spelled in uppercase is already canonical: no rewrite for
                // `%C3%A9`, the usual spelling of non-ASCII paths.
                if is_unreserved(value) || bytes[i + 1..i + 3].iter().any(u8::is_ascii_lowercase) {
                    return rewrite(path, seg_start).map(Cow::Owned);
                }
                i += 3;
            }
            b'\\' => return Err(PathError::Backslash),
            0 => return Err(PathError::Nul),
            _ => i += 1,
        }
    }
    if is_dot_segment(&bytes[seg_start..]) {
        return rewrite(path, seg_start).map(Cow::Owned);
    }
    Ok(Cow::Borrowed(path))
}

/// The slow path: rewrites `path` from `start`, the first byte of a segment, on.
///
/// `path[..start]` is canonical and ends with `/`. The output is kept ending with `/` while
/// segments are appended, so that `..` can drop the last segment by truncating to the previous
/// `/`; the final `/` goes again unless the path ended with an empty, `.` or `..` segment.
fn rewrite(path: &str, start: usize) -> Result<String, PathError> {
    let mut out = String::with_capacity(path.len());
    out.push_str(&path[..start]);
    let mut trailing_slash = true;
    for segment in path[start..].split('/') {
        let seg_start = out.len();
        push_segment(&mut out, segment)?;
        // Classified after decoding, so that `%2e%2E` is a `..` like the literal one.
        let kind = &out.as_bytes()[seg_start..];
        if kind.is_empty() || is_dot_segment(kind) {
            let parent = kind == b"..";
            out.truncate(seg_start);
            if parent {
                // `out` is `/…/last/`: cut back to the `/` before `last`. Nothing to cut is a
                // climb above the root, refused rather than clamped.
                let without_slash = out.len() - 1;
                let Some(cut) = out[..without_slash].rfind('/') else {
                    return Err(PathError::AboveRoot);
                };
                out.truncate(cut + 1);
            }
            // Empty segments are merged away whether inner or trailing (nginx's order: slashes
            // merged first, so `/a//..` is `/`), but a path that ended in one keeps its `/`.
            trailing_slash = true;
        } else {
            out.push('/');
            trailing_slash = false;
        }
    }
    if !trailing_slash {
        out.pop();
    }
    Ok(out)
}

/// Appends one segment to `out` with its escapes canonical: unreserved characters decoded, the
/// rest with uppercase hex digits.
fn push_segment(out: &mut String, segment: &str) -> Result<(), PathError> {
    let bytes = segment.as_bytes();
    // Literal bytes are copied a run at a time; runs end at `%`, which is ASCII, so every slice
    // below falls on a character boundary.
    let mut run = 0;
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                let value = unescape(bytes, i)?;
                out.push_str(&segment[run..i]);
                if is_unreserved(value) {
                    out.push(char::from(value));
                } else {
                    out.push('%');
                    out.push(char::from(HEX_UPPER[usize::from(value >> 4)]));
                    out.push(char::from(HEX_UPPER[usize::from(value & 0xf)]));
                }
                i += 3;
                run = i;
            }
            b'\\' => return Err(PathError::Backslash),
            0 => return Err(PathError::Nul),
            _ => i += 1,
        }
    }
    out.push_str(&segment[run..]);
    Ok(())
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Decodes the escape whose `%` is at `bytes[at]`, refusing the bytes no backend may see
/// decoded differently from the edge.
fn unescape(bytes: &[u8], at: usize) -> Result<u8, PathError> {
    let digit = |offset| bytes.get(at + offset).and_then(|&b| char::from(b).to_digit(16));
    let (Some(high), Some(low)) = (digit(1), digit(2)) else {
        return Err(PathError::BadEscape);
    };
    // Both digits are below 16, so the value fits a byte.
    let value = u8::try_from(high * 16 + low).map_err(|_| PathError::BadEscape)?;
    match value {
        b'/' => Err(PathError::EncodedSlash),
        b'\\' => Err(PathError::Backslash),
        0 => Err(PathError::Nul),
        _ => Ok(value),
    }
}

/// RFC 3986 §2.3: ALPHA / DIGIT / "-" / "." / "_" / "~".
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_dot_segment(segment: &[u8]) -> bool {
    segment == b"." || segment == b".."
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        use PathError::*;
        let ok = |p: &str| -> Result<String, PathError> { Ok(p.to_owned()) };
        let cases: &[(&str, Result<String, PathError>)] = &[
            ("/", ok("/")),
            ("/api/catalog/p-1", ok("/api/catalog/p-1")),
            ("/static/../admin", ok("/admin")),
            ("/static/%2e%2e/admin", ok("/admin")),
            ("/static/%2E%2E/admin", ok("/admin")),
            ("/static/.%2e/admin", ok("/admin")),
            ("/a//b///c", ok("/a/b/c")),
            ("/a/./b", ok("/a/b")),
            ("/..", Err(AboveRoot)),
            ("/a/../../b", Err(AboveRoot)),
            ("/a/..%2Fb", Err(EncodedSlash)),
            ("/a%2fb", Err(EncodedSlash)),
            ("/a%5cb", Err(Backslash)),
            ("/a%5Cb", Err(Backslash)),
            ("/a\\b", Err(Backslash)),
            ("/a%00", Err(Nul)),
            ("/a\0b", Err(Nul)),
            ("/a%zz", Err(BadEscape)),
            ("/a%2", Err(BadEscape)),
            ("/a%", Err(BadEscape)),
            ("/a%g1", Err(BadEscape)),
            ("/%7Euser", ok("/~user")),
            ("/%41%62c", ok("/Abc")),
            ("/caf%c3%a9", ok("/caf%C3%A9")),
            ("/caf%C3%A9", ok("/caf%C3%A9")),
            ("/caf%C3%a9/x", ok("/caf%C3%A9/x")),
            ("/a/...", ok("/a/...")),
            ("/a/.b", ok("/a/.b")),
            ("/a/b.", ok("/a/b.")),
            ("/a/b/..", ok("/a/")),
            ("/a/.", ok("/a/")),
            ("/a/b/", ok("/a/b/")),
            ("/a//", ok("/a/")),
            ("//", ok("/")),
            ("//a", ok("/a")),
            ("/.", ok("/")),
            ("/./", ok("/")),
            ("/a/..", ok("/")),
            ("/a//..", ok("/")),
            ("/a/b/../../c", ok("/c")),
            ("/a/%2e/b", ok("/a/b")),
            ("/a/%2e", ok("/a/")),
            ("/%2e%2e", Err(AboveRoot)),
            ("/a/%2e%2e%2e", ok("/a/...")),
            ("/a%25b", ok("/a%25b")),
            ("/a%25%32%66", ok("/a%252f")),
            ("/Case/KEPT", ok("/Case/KEPT")),
            ("/é/../ü", ok("/ü")),
            ("/é%c3%a9", ok("/é%C3%A9")),
            ("", Err(NotAbsolute)),
            ("a/b", Err(NotAbsolute)),
            ("*", Err(NotAbsolute)),
            ("%2Fa", Err(NotAbsolute)),
        ];
        for (input, want) in cases {
            let got = normalise(input).map(Cow::into_owned);
            assert_eq!(&got, want, "normalise({input:?})");
        }
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        for p in ["/", "/api/catalog/p-1", "/a/b/", "/a/.b/...", "/caf%C3%A9", "/a%25b", "/é"] {
            assert!(matches!(normalise(p), Ok(Cow::Borrowed(_))), "{p:?} should be borrowed");
        }
    }

    #[test]
    fn every_refusal_has_a_detail() {
        use PathError::*;
        for e in [EncodedSlash, Backslash, Nul, BadEscape, AboveRoot, NotAbsolute] {
            assert!(!e.detail().is_empty());
            assert_eq!(e.to_string(), e.detail());
        }
    }

    /// Pieces that, glued together, reach every branch: separators, dots, escapes of `.`, `/`,
    /// `\`, NUL, unreserved and reserved bytes in both cases, broken escapes, and non-ASCII.
    const PIECES: &[&str] = &[
        "/", "/", "/", ".", ".", "..", "%", "2", "e", "E", "f", "F", "5", "c", "0", "a", "b", "\\",
        "%2e", "%2E", "%2f", "%2F", "%5c", "%00", "%41", "%7e", "%7E", "%25", "%c3", "%A9", "%3f",
        "%2", "é", "\0",
    ];

    fn random_path(rng: &mut fastrand::Rng) -> String {
        let mut p = String::new();
        // Mostly absolute, so that most inputs get past the first check.
        if rng.u8(..10) != 0 {
            p.push('/');
        }
        for _ in 0..rng.usize(0..16) {
            p.push_str(PIECES[rng.usize(..PIECES.len())]);
        }
        p
    }

    /// Property (2): what an accepted path turns into is canonical.
    fn assert_canonical(input: &str, out: &str) {
        let ctx = || format!("normalise({input:?}) = {out:?}");
        assert!(out.starts_with('/'), "{}", ctx());
        assert!(!out.contains("//"), "{}", ctx());
        assert!(!out.contains('\\') && !out.contains('\0'), "{}", ctx());
        assert!(out[1..].split('/').all(|s| s != "." && s != ".."), "{}", ctx());
        let upper = out.to_ascii_uppercase();
        assert!(!upper.contains("%2F") && !upper.contains("%2E"), "{}", ctx());
        // Every remaining escape is well-formed, uppercase and not an unreserved character.
        for (at, _) in out.match_indices('%') {
            let hex = out.get(at + 1..at + 3).unwrap_or_default();
            assert_eq!(hex.len(), 2, "{}", ctx());
            assert!(hex.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)));
            let value = u8::from_str_radix(hex, 16).unwrap();
            assert!(!is_unreserved(value), "{}", ctx());
        }
    }

    #[test]
    fn properties_hold_for_generated_paths() {
        let mut rng = fastrand::Rng::with_seed(0x5eed_9a7e);
        let (mut accepted, mut rewritten) = (0, 0);
        for _ in 0..20_000 {
            let input = random_path(&mut rng);
            // Property (3): never panics — a panic fails the test with the input in hand.
            let Ok(out) = normalise(&input) else { continue };
            accepted += 1;
            assert_canonical(&input, &out);
            // No allocation unless something changed, and something changed if it allocated.
            assert_eq!(matches!(out, Cow::Borrowed(_)), *out == *input, "{input:?} → {out:?}");
            if matches!(out, Cow::Owned(_)) {
                rewritten += 1;
            }
            // Property (1): idempotent, and the second pass takes the borrowed fast path.
            let again = normalise(&out);
            assert!(matches!(again, Ok(Cow::Borrowed(s)) if s == out), "{input:?} → {out:?}");
        }
        // The generator must keep exercising both paths, or the properties prove little.
        assert!(
            accepted > 2_000 && rewritten > 1_000,
            "accepted {accepted}, rewritten {rewritten}"
        );
    }
}
