//! HTTP/1.1 message framing for the relay: header lists, how long a body is, and where a
//! chunked body ends (RFC 9112 §6–7). Which headers cross the gateway is the forwarding
//! policy's (`pipeline::forward`).
//!
//! The relay forwards bodies byte for byte; it only needs to know where each one ends, so the
//! chunked decoder here follows the framing without copying or changing anything.

/// The comma-separated tokens of a header value such as `Connection`, trimmed.
pub(crate) fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(<[u8]>::trim_ascii).filter(|t| !t.is_empty())
}

/// A `Content-Length` value: decimal digits only (no sign, no spaces inside, no list).
pub(crate) fn parse_length(value: &[u8]) -> Option<u64> {
    let value = value.trim_ascii();
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    value.iter().try_fold(0_u64, |n, d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// How a message's body is delimited.
#[derive(Debug)]
pub(super) enum Framing {
    /// No body (a HEAD answer, 204, 304, or a request without one).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding, followed to its last chunk.
    Chunked(Chunked),
    /// Everything until the sender closes the connection (responses only).
    UntilClose,
}

/// A chunked body that does not follow the grammar; the connection cannot be trusted after it.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Malformed;

/// The longest chunk-size line (with extensions) or trailer section accepted.
const MAX_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;

/// Follows a chunked body as it streams past to find its end.
#[derive(Debug, Default)]
pub(super) struct Chunked {
    state: State,
    /// The size of the chunk being read, then what is left of it.
    size: u64,
    /// Bytes seen in the current size line or trailer section, to bound them.
    seen: usize,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Size,
    Extension,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerLf,
    FinalLf,
    Done,
}

// === impl Chunked ===

impl Chunked {
    /// Whether the last chunk and the trailer section have passed.
    pub(super) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Follows `bytes`, the next bytes of the body, and returns how many of them belong to it:
    /// all of them, or fewer when the body ends inside `bytes`.
    pub(super) fn advance(&mut self, bytes: &[u8]) -> Result<usize, Malformed> {
        let mut i = 0;
        while i < bytes.len() && self.state != State::Done {
            let b = bytes[i];
            self.state = match self.state {
                State::Size => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        self.seen += 1;
                        let digit = u64::from(hex(b));
                        // 16 hex digits fill a u64; more would overflow.
                        if self.seen > 16 {
                            return Err(Malformed);
                        }
                        self.size = (self.size << 4) | digit;
                        State::Size
                    }
                    b';' | b' ' | b'\t' if self.seen > 0 => State::Extension,
                    b'\r' if self.seen > 0 => State::SizeLf,
                    _ => return Err(Malformed),
                },
                State::Extension => match b {
                    b'\r' => State::SizeLf,
                    b'\n' => return Err(Malformed),
                    _ => {
                        self.seen += 1;
                        if self.seen > MAX_LINE {
                            return Err(Malformed);
                        }
                        State::Extension
                    }
                },
                State::SizeLf => match b {
                    b'\n' => {
                        self.seen = 0;
                        if self.size == 0 { State::TrailerStart } else { State::Data }
                    }
                    _ => return Err(Malformed),
                },
                State::Data => {
                    let available = (bytes.len() - i) as u64;
                    let take = self.size.min(available);
                    // `take` ≤ the bytes left in this slice, so it fits a usize.
                    i += usize::try_from(take).map_err(|_| Malformed)?;
                    self.size -= take;
                    if self.size == 0 {
                        self.state = State::DataCr;
                    }
                    continue;
                }
                State::DataCr => match b {
                    b'\r' => State::DataLf,
                    _ => return Err(Malformed),
                },
                State::DataLf => match b {
                    b'\n' => State::Size,
                    _ => return Err(Malformed),
                },
                State::TrailerStart => match b {
                    b'\r' => State::FinalLf,
                    _ => self.trailer_byte()?,
                },
                State::TrailerLine => match b {
                    b'\r' => State::TrailerLf,
                    _ => self.trailer_byte()?,
                },
                State::TrailerLf => match b {
                    b'\n' => State::TrailerStart,
                    _ => return Err(Malformed),
                },
                State::FinalLf => match b {
                    b'\n' => State::Done,
                    _ => return Err(Malformed),
                },
                State::Done => State::Done,
            };
            i += 1;
        }
        Ok(i)
    }

    fn trailer_byte(&mut self) -> Result<State, Malformed> {
        self.seen += 1;
        if self.seen > MAX_TRAILERS {
            return Err(Malformed);
        }
        Ok(State::TrailerLine)
    }
}

fn hex(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// What [`Chunked`] makes of `bytes` fed at once and fed in two pieces split at `at`: the same
/// (bytes taken, ended or malformed), or a panic naming the difference. For the fuzzer.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn chunked_splits_agree(bytes: &[u8], at: usize) {
    let whole = {
        let mut chunked = Chunked::default();
        chunked.advance(bytes).map(|n| (n, chunked.is_done()))
    };
    let at = at.min(bytes.len());
    let split = {
        let mut chunked = Chunked::default();
        chunked.advance(&bytes[..at]).and_then(|first| {
            if chunked.is_done() {
                return Ok((first, true));
            }
            let second = chunked.advance(&bytes[at..])?;
            Ok((first + second, chunked.is_done()))
        })
    };
    match (&whole, &split) {
        (Ok((n, done)), Ok((m, split_done))) => {
            assert!(*n <= bytes.len(), "took {n} of {} bytes", bytes.len());
            assert_eq!((n, done), (m, split_done), "split at {at}: {bytes:?}");
        }
        (Err(Malformed), Err(Malformed)) => {}
        // A split can only end the body earlier if it ended there; otherwise both agree.
        _ => panic!("split at {at} disagrees: {whole:?} vs {split:?} for {bytes:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn follow(chunks: &[&[u8]]) -> Result<(usize, bool), Malformed> {
        let mut chunked = Chunked::default();
        let mut total = 0;
        for chunk in chunks {
            total += chunked.advance(chunk)?;
        }
        Ok((total, chunked.is_done()))
    }

    #[test]
    fn a_chunked_body_ends_after_the_last_chunk_and_trailers() {
        let body =
            b"5\r\nhello\r\n1a;name=value\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nx-sum: 1\r\n\r\n";
        let mut stream = body.to_vec();
        stream.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
        assert_eq!(follow(&[&stream]), Ok((body.len(), true)));
    }

    #[test]
    fn the_end_is_found_however_the_bytes_are_split() {
        let body = b"4\r\nwiki\r\n5\r\npedia\r\n0\r\n\r\n";
        for split in 0..body.len() {
            let (a, b) = body.split_at(split);
            assert_eq!(follow(&[a, b]), Ok((body.len(), true)), "split at {split}");
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(follow(&bytes), Ok((body.len(), true)));
    }

    #[test]
    fn an_unfinished_body_is_not_done() {
        assert_eq!(follow(&[b"4\r\nwi"]), Ok((5, false)));
        assert_eq!(follow(&[b"0\r\n"]), Ok((3, false)));
    }

    #[test]
    fn malformed_framing_is_refused() {
        for bad in [
            &b"\r\n"[..],             // no size
            b"g\r\n",                 // not hex
            b"4\r\nwikiX\r\n",        // data longer than its size
            b"4\nwiki\r\n",           // bare LF
            b"11111111111111111\r\n", // 17 hex digits overflow
            b"-1\r\n",
        ] {
            assert_eq!(follow(&[bad]), Err(Malformed), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn content_length_is_digits_only() {
        assert_eq!(parse_length(b"1031"), Some(1031));
        assert_eq!(parse_length(b" 0 "), Some(0));
        for bad in [&b""[..], b"-1", b"+5", b"1,1", b"0x10", b"99999999999999999999"] {
            assert_eq!(parse_length(bad), None);
        }
    }

    #[test]
    fn connection_tokens() {
        let found: Vec<&[u8]> = tokens(b"keep-alive, X-Secret ,,close").collect();
        assert_eq!(found, [&b"keep-alive"[..], b"X-Secret", b"close"]);
    }
}
