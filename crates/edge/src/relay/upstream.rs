//! The relay's side of one upstream exchange: the request head (and body) written over a
//! pooled connection, the response head read and cleaned by the forwarding policy, the body
//! relayed byte for byte; and the raw renderer of the gateway's own answers.

use std::{io, mem::MaybeUninit, sync::Arc, time::Duration};

use axum::response::Response;
use http::header;
use http_body_util::BodyExt;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    time::{Instant, timeout, timeout_at},
};

use super::{
    Client, ClientIo, Exchange, Next,
    h1::{self, Chunked, Framing},
    io::send_all,
    pool, spare,
};
use crate::{
    pipeline::{Name, Outbound},
    upstream::cluster::{Classify, Endpoint, Failure as EndpointFailure},
};

/// The largest response head, and the most header fields in one.
const MAX_HEAD: usize = 32 * 1024;
const MAX_HEADERS: usize = 128;
/// The buffer a body is relayed through.
pub(super) const BODY_CHUNK: usize = 16 * 1024;

/// An upstream's response head, read, with what followed it in the same reads.
pub(super) struct UpstreamResponse {
    pub(super) endpoint: Arc<Endpoint>,
    stream: TcpStream,
    pub(super) status: u16,
    /// The response head for the client, without the final CRLF.
    head: Vec<u8>,
    framing: Framing,
    /// Whether the upstream keeps the connection open after this response.
    reusable: bool,
    /// The buffer the head was read into; the bytes read past the head start at `rest_at`.
    rest: Vec<u8>,
    rest_at: usize,
}

impl Classify for UpstreamResponse {
    fn failure(&self) -> Option<EndpointFailure> {
        (self.status >= 500).then_some(EndpointFailure::Status(self.status))
    }
}

/// How an exchange failed.
pub(super) enum Failure {
    /// The client's body broke off or failed its framing: the client's fault, never the
    /// upstream's.
    Client,
    /// The client's body was still arriving at the request's deadline: the client's too.
    ClientSlow,
    /// No connection could be opened: nothing was sent.
    Connect(io::Error),
    Upstream(io::Error),
}

/// Sends the request (head and body) upstream and reads the response head. A reused
/// connection that the upstream closed in the meantime is replaced by a new one, once, when
/// the request is idempotent (the upstream may have acted on it) and nothing of it needs to
/// be re-read from the client.
///
/// `deadline_line` is this attempt's deadline header with the head's final CRLF; the
/// endpoint's `Host` line goes in before it, after the request line and forwarded headers.
pub(super) async fn exchange<S: AsyncRead + Unpin>(
    request: &Exchange<'_>,
    endpoint: Arc<Endpoint>,
    deadline_line: &[u8],
    mut client: Option<&mut S>,
    deadline: Instant,
    now: Instant,
) -> Result<UpstreamResponse, Failure> {
    let Exchange { pool, head, body, body_rest, is_head, idempotent, .. } = *request;
    let head = [head, endpoint.host_line(), deadline_line, body];
    if let Some(stream) = pool.reuse(&endpoint, now) {
        match send(stream, head, body_rest, client.as_deref_mut(), is_head, deadline).await {
            Ok(response) => return Ok(response.with(endpoint)),
            Err(Attempt::Stale(_)) if body_rest == 0 && idempotent => {}
            Err(Attempt::Stale(error) | Attempt::Failed(error)) => {
                return Err(Failure::Upstream(error));
            }
            Err(Attempt::Client) => return Err(Failure::Client),
            Err(Attempt::ClientSlow) => return Err(Failure::ClientSlow),
        }
    }
    let stream = pool.connect(&endpoint).await.map_err(Failure::Connect)?;
    match send(stream, head, body_rest, client, is_head, deadline).await {
        Ok(response) => Ok(response.with(endpoint)),
        Err(Attempt::Stale(error) | Attempt::Failed(error)) => Err(Failure::Upstream(error)),
        Err(Attempt::Client) => Err(Failure::Client),
        Err(Attempt::ClientSlow) => Err(Failure::ClientSlow),
    }
}

enum Attempt {
    /// Nothing came back before the connection failed: it may have been closed while idle.
    Stale(io::Error),
    Failed(io::Error),
    /// The client's body broke off or was malformed.
    Client,
    /// The client's body was still arriving at the deadline.
    ClientSlow,
}

/// A response head read off a connection, before it is tied to its endpoint.
struct Received {
    stream: TcpStream,
    parsed: Parsed,
    rest: Vec<u8>,
    rest_at: usize,
}

impl Received {
    fn with(self, endpoint: Arc<Endpoint>) -> UpstreamResponse {
        let Parsed { status, head, framing, reusable } = self.parsed;
        UpstreamResponse {
            endpoint,
            stream: self.stream,
            status,
            head,
            framing,
            reusable,
            rest: self.rest,
            rest_at: self.rest_at,
        }
    }
}

async fn send<S: AsyncRead + Unpin>(
    mut stream: TcpStream,
    head: [&[u8]; 4],
    mut body_rest: u64,
    client: Option<&mut S>,
    is_head: bool,
    deadline: Instant,
) -> Result<Received, Attempt> {
    send_all(&mut stream, head).await.map_err(Attempt::Stale)?;
    if body_rest > 0 {
        // The rest of the body comes from the client's connection.
        let Some(client) = client else { return Err(Attempt::Client) };
        let mut chunk = vec![0_u8; BODY_CHUNK];
        while body_rest > 0 {
            let want = usize::try_from(body_rest).unwrap_or(BODY_CHUNK).min(BODY_CHUNK);
            // Timed here, not only by the call's deadline around the attempt: a body still
            // arriving when time is up is the client's slowness, not the upstream's.
            let n = match timeout_at(deadline, client.read(&mut chunk[..want])).await {
                Err(_elapsed) => return Err(Attempt::ClientSlow),
                Ok(Ok(0) | Err(_)) => return Err(Attempt::Client),
                Ok(Ok(n)) => n,
            };
            send_all(&mut stream, [&chunk[..n]]).await.map_err(Attempt::Failed)?;
            body_rest -= n as u64;
        }
    }
    let mut buf = spare::take();
    loop {
        let n = stream
            .read_buf(&mut buf)
            .await
            .map_err(|e| if buf.is_empty() { Attempt::Stale(e) } else { Attempt::Failed(e) })?;
        if n == 0 {
            let error =
                io::Error::new(io::ErrorKind::UnexpectedEof, "closed before the response head");
            return Err(if buf.is_empty() {
                Attempt::Stale(error)
            } else {
                Attempt::Failed(error)
            });
        }
        match parse_response(&buf, is_head) {
            Ok(Some((consumed, parsed))) => {
                // The body bytes stay where they were read: moving them to the front of the
                // buffer would copy every small response once more.
                return Ok(Received { stream, parsed, rest: buf, rest_at: consumed });
            }
            Ok(None) if buf.len() < MAX_HEAD => buf.reserve(4096),
            Ok(None) => {
                return Err(Attempt::Failed(io::Error::other("the response head is too large")));
            }
            Err(error) => return Err(Attempt::Failed(error)),
        }
    }
}

struct Parsed {
    status: u16,
    head: Vec<u8>,
    framing: Framing,
    reusable: bool,
}

/// Parses the response head at the start of `buf`, skipping interim (1xx) responses; returns
/// the bytes consumed and the head for the client, or `None` when more bytes are needed.
fn parse_response(buf: &[u8], is_head: bool) -> io::Result<Option<(usize, Parsed)>> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let mut offset = 0;
    loop {
        // Uninitialised, as the request's (see `Relay::prepare`).
        let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut parsed,
            &buf[offset..],
            &mut headers,
        ) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(invalid(&format!("invalid response head: {e}"))),
        };
        let status = parsed.code.unwrap_or(0);
        if status == 101 {
            return Err(invalid("an upgrade nobody asked for"));
        }
        if (100..200).contains(&status) {
            offset += len;
            continue;
        }
        let mut reusable = parsed.version == Some(1);
        let mut chunked = None;
        let mut length = None;
        let mut listed: Vec<&[u8]> = Vec::new();
        // Each name is classified once; the second pass reads the class.
        let mut classes = [None; MAX_HEADERS];
        for (h, class) in parsed.headers.iter().zip(&mut classes) {
            *class = Name::known(h.name);
            match *class {
                Some(Name::TransferEncoding) => {
                    let last = h1::tokens(h.value).last().unwrap_or_default();
                    chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
                }
                Some(Name::ContentLength) => match (h1::parse_length(h.value), length) {
                    (Some(n), None) => length = Some(n),
                    (Some(n), Some(m)) if n == m => {}
                    _ => return Err(invalid("invalid Content-Length")),
                },
                Some(Name::Connection) => {
                    for token in h1::tokens(h.value) {
                        if token.eq_ignore_ascii_case(b"close") {
                            reusable = false;
                        } else if !token.eq_ignore_ascii_case(b"keep-alive") {
                            // `keep-alive` is hop-by-hop anyway: no need to list it.
                            listed.push(token);
                        }
                    }
                }
                _ => {}
            }
        }
        let framing = if is_head || status == 204 || status == 304 {
            Framing::Empty
        } else {
            match (chunked, length) {
                (Some(true), _) => Framing::Chunked(Chunked::default()),
                (Some(false), _) | (None, None) => Framing::UntilClose,
                (None, Some(n)) => Framing::Length(n),
            }
        };
        if matches!(framing, Framing::UntilClose) {
            reusable = false;
        }
        // Room for what the relay adds to it (request id, rate-limit headers, `connection`).
        let mut head = Vec::with_capacity(len + 192);
        head.extend_from_slice(b"HTTP/1.1 ");
        head.extend_from_slice(itoa3(status).as_slice());
        head.push(b' ');
        head.extend_from_slice(parsed.reason.unwrap_or_default().as_bytes());
        head.extend_from_slice(b"\r\n");
        for (h, class) in parsed.headers.iter().zip(classes) {
            // Framing is the relay's: a chunked body is relayed chunked, any other keeps its
            // length (or runs to the close).
            let forwarded = match class {
                Some(Name::ContentLength) => chunked.is_none(),
                Some(Name::TransferEncoding) => false,
                _ => {
                    !class.is_some_and(Name::is_dropped_response)
                        && !listed.iter().any(|l| l.eq_ignore_ascii_case(h.name.as_bytes()))
                }
            };
            if forwarded {
                push_header(&mut head, h.name, h.value);
            }
        }
        if matches!(framing, Framing::Chunked(_)) {
            head.extend_from_slice(b"transfer-encoding: chunked\r\n");
        }
        return Ok(Some((offset + len, Parsed { status, head, framing, reusable })));
    }
}

fn itoa3(status: u16) -> [u8; 3] {
    let status = status.min(999);
    [b'0' + (status / 100) as u8, b'0' + (status / 10 % 10) as u8, b'0' + (status % 10) as u8]
}

/// Sends the upstream's response on to the client, body byte for byte, and returns the
/// upstream connection to its pool when the response ended cleanly.
pub(super) async fn forward_response<S: ClientIo>(
    pool: &pool::Upstream,
    response: UpstreamResponse,
    client: &mut Client<S>,
    outbound: &mut Outbound,
    read_timeout: Duration,
) -> Next {
    let UpstreamResponse {
        endpoint,
        mut stream,
        mut head,
        mut framing,
        mut reusable,
        mut rest,
        rest_at,
        ..
    } = response;
    outbound.render_raw(&mut head);
    // A gateway that is draining tells the client this is the connection's last response.
    let until_close = matches!(framing, Framing::UntilClose);
    let closing = until_close || client.draining();
    if closing {
        head.extend_from_slice(b"connection: close\r\n");
    }
    head.extend_from_slice(b"\r\n");

    // What of the body came with the head goes out with it.
    let with_head = &rest[rest_at..];
    let (taken, mut done) = match take(&mut framing, with_head) {
        Ok(progress) => progress,
        Err(h1::Malformed) => return Next::Close,
    };
    if taken < with_head.len() {
        // More than the response: the upstream is not speaking HTTP/1.1 correctly.
        reusable = false;
    }
    // Head and body in one write: the body is not copied behind the head.
    if send_all(&mut client.stream, [&head, &with_head[..taken]]).await.is_err() {
        return Next::Close;
    }
    let mut body_bytes = taken as u64;
    rest.clear();
    while !done {
        if rest.capacity() < BODY_CHUNK {
            rest.reserve(BODY_CHUNK);
        }
        let read = timeout(read_timeout, stream.read_buf(&mut rest)).await;
        let Ok(Ok(n)) = read else { return Next::Close };
        if n == 0 {
            return Next::Close;
        }
        let (taken, finished) = match take(&mut framing, &rest) {
            Ok(progress) => progress,
            Err(h1::Malformed) => return Next::Close,
        };
        if taken < rest.len() {
            reusable = false;
        }
        if send_all(&mut client.stream, [&rest[..taken]]).await.is_err() {
            return Next::Close;
        }
        body_bytes += taken as u64;
        rest.clear();
        done = finished;
    }
    outbound.set_bytes(body_bytes);
    spare::give(rest);
    let now = Instant::now();
    client.answered_at = Some(now);
    if reusable && !until_close {
        pool.release(&endpoint, stream, now);
    }
    if closing { Next::Close } else { Next::KeepAlive }
}

/// How many of `bytes` belong to the body `framing` describes, and whether it has ended.
fn take(framing: &mut Framing, bytes: &[u8]) -> Result<(usize, bool), h1::Malformed> {
    Ok(match framing {
        Framing::Empty => (0, true),
        Framing::Length(left) => {
            let n = usize::try_from(*left).unwrap_or(usize::MAX).min(bytes.len());
            *left -= n as u64;
            (n, *left == 0)
        }
        Framing::Chunked(chunked) => {
            let n = chunked.advance(bytes)?;
            (n, chunked.is_done())
        }
        Framing::UntilClose => (bytes.len(), false),
    })
}

/// Writes a whole response of the gateway's own (the raw renderer of an answer or a refusal),
/// with the outbound headers.
pub(super) async fn respond<S: ClientIo>(
    stream: &mut S,
    response: Response,
    outbound: &Outbound,
    close: bool,
) -> io::Result<()> {
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let mut out = Vec::with_capacity(256 + body.len());
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or_default().as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        if name != header::CONTENT_LENGTH && name != header::CONNECTION {
            push_header(&mut out, name.as_str(), value.as_bytes());
        }
    }
    outbound.render_raw(&mut out);
    push_header(&mut out, "content-length", body.len().to_string().as_bytes());
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&body);
    send_all(stream, [&out]).await?;
    if close {
        let _ = stream.shutdown().await;
    }
    Ok(())
}

fn push_header(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    crate::pipeline::push_header(head, name, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The head the client gets for `upstream` (a whole response head), and the bytes consumed.
    fn client_head(upstream: &[u8]) -> (String, usize) {
        let (consumed, parsed) = parse_response(upstream, false).unwrap().unwrap();
        (String::from_utf8(parsed.head).unwrap(), consumed)
    }

    /// Every line ends in CRLF: no bare LF, no stray CR.
    fn assert_crlf_only(head: &str) {
        let bytes = head.as_bytes();
        for (i, &b) in bytes.iter().enumerate() {
            if b == b'\n' {
                assert!(i > 0 && bytes[i - 1] == b'\r', "bare LF at {i} in {head:?}");
            }
            if b == b'\r' {
                assert_eq!(bytes.get(i + 1), Some(&b'\n'), "stray CR at {i} in {head:?}");
            }
        }
    }

    #[test]
    fn forwarded_fields_are_copied_as_written_and_dropped_ones_left_out() {
        let upstream = b"HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: today\r\nConnection: keep-alive, X-Hop\r\nX-Hop:  secret \r\nContent-Type: application/json\r\nContent-Length: 2\r\nX-Request-Id: theirs\r\nEtag: \"1\"\r\n\r\n{}";
        let (head, consumed) = client_head(upstream);
        assert_eq!(consumed, upstream.len() - 2);
        assert_eq!(
            head,
            "HTTP/1.1 200 OK\r\nServer: nginx\r\nDate: today\r\nContent-Type: application/json\r\nContent-Length: 2\r\nEtag: \"1\"\r\n"
        );
    }

    #[test]
    fn bare_lf_line_endings_reach_the_client_as_crlf() {
        for upstream in [
            &b"HTTP/1.1 200 OK\nServer: a\nX-Thing:  spaced  \nContent-Length: 0\n\n"[..],
            b"HTTP/1.1 200 OK\r\nServer: a\nX-Thing: b\r\nContent-Length: 0\n\r\n",
            b"HTTP/1.1 200 OK\r\nServer: a\r\nX-Thing: b\nContent-Length: 0\r\n\n",
        ] {
            let (head, _) = client_head(upstream);
            assert_crlf_only(&head);
            for field in ["Server: a\r\n", "Content-Length: 0\r\n", "X-Thing:"] {
                assert!(head.contains(field), "{field:?} missing from {head:?}");
            }
        }
    }

    #[test]
    fn a_folded_line_or_a_stray_cr_is_refused_not_forwarded() {
        for upstream in [
            &b"HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nX-A: one\rX-B: two\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-A: one\r\r\nContent-Length: 0\r\n\r\n",
        ] {
            assert!(
                parse_response(upstream, false).is_err(),
                "{:?}",
                String::from_utf8_lossy(upstream)
            );
        }
    }

    #[test]
    fn a_chunked_answer_keeps_its_fields_around_the_framing_it_loses() {
        let upstream = b"HTTP/1.1 200 OK\r\nA: 1\r\nTransfer-Encoding: chunked\r\nB: 2\r\n\r\n";
        let (head, _) = client_head(upstream);
        assert_eq!(head, "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\ntransfer-encoding: chunked\r\n");
    }
}
