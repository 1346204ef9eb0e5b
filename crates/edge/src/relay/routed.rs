//! The router's requests on a connection the relay keeps: the head the relay parsed becomes a
//! request for the general server's service (the pipeline in front of the router), and its
//! response is written as HTTP/1.1 here — no second parser, no connection object per request.
//!
//! Only requests whose body is small enough to read first come this way (a body is read whole
//! before the handler runs, within the request's deadline); a larger one goes to hyper, one
//! request at a time ([`OneRequest`](super::OneRequest)).

use std::{cell::RefCell, io, time::SystemTime};

use axum::{body::Body, response::Response};
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use http_body_util::BodyExt;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    time::{Instant, timeout_at},
};

use super::{Client, ClientIo, MAX_FIELDS, Next, Routed, io::send_all, unless_client_leaves};
use crate::{error::EdgeError, pipeline::push_decimal};

/// The largest request body read whole before the router runs; above it, hyper streams it.
pub(super) const MAX_READ_FIRST: u64 = 64 * 1024;

/// Serves one router request whose head (`head_len` bytes) is at the start of the client's
/// buffer and whose body is `body_len` bytes.
pub(super) async fn serve<S: ClientIo>(
    client: &mut Client<S>,
    router: &mut impl Routed,
    head_len: usize,
    body_len: u64,
    close: bool,
    deadline: Instant,
) -> Next {
    let Some(request) = request(&client.buf[..head_len]) else {
        // The relay's parser took what `http` refuses: hyper has the last word.
        return Next::HandOff;
    };
    let is_head = request.method() == Method::HEAD;
    client.buf.drain(..head_len);
    let body = match read_body(client, body_len, deadline).await {
        Ok(body) => body,
        Err(Some(error)) => {
            let response = axum::response::IntoResponse::into_response(error);
            let _ = write(&mut client.stream, response, false, true).await;
            return Next::Close;
        }
        Err(None) => return Next::Close,
    };
    let request = request.map(|()| Body::from(body));
    // A client that leaves while its answer is worked out takes the work with it.
    let call = router.call(request);
    let Some(response) = unless_client_leaves(&client.stream, &mut client.watch, call).await else {
        return Next::Close;
    };
    let close = close || client.draining();
    match write(&mut client.stream, response, is_head, close).await {
        Ok(true) => Next::KeepAlive,
        Ok(false) | Err(_) => Next::Close,
    }
}

/// The request of a head the relay has parsed, without its body; `None` for what the `http`
/// types refuse.
fn request(head: &[u8]) -> Option<http::Request<()>> {
    let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_FIELDS];
    let mut parsed = httparse::Request::new(&mut []);
    parsed.parse_with_uninit_headers(head, &mut fields).ok()?;
    let method = Method::from_bytes(parsed.method?.as_bytes()).ok()?;
    let uri = http::Uri::try_from(parsed.path?).ok()?;
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    for field in parsed.headers.iter() {
        let name = HeaderName::from_bytes(field.name.as_bytes()).ok()?;
        headers.append(name, HeaderValue::from_bytes(field.value).ok()?);
    }
    let mut request = http::Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.headers_mut() = headers;
    Some(request)
}

/// The whole body: what came with the head, then the rest, by the request's deadline.
/// `Err(Some(_))` is the client's fault to answer; `Err(None)`, a client that left.
async fn read_body<S: ClientIo>(
    client: &mut Client<S>,
    body_len: u64,
    deadline: Instant,
) -> Result<Bytes, Option<EdgeError>> {
    let len = usize::try_from(body_len).unwrap_or(usize::MAX);
    if len == 0 {
        return Ok(Bytes::new());
    }
    let in_buf = len.min(client.buf.len());
    let mut body = vec![0; len];
    body[..in_buf].copy_from_slice(&client.buf[..in_buf]);
    client.buf.drain(..in_buf);
    let mut filled = in_buf;
    while filled < len {
        // Into the body's own slice: never a byte of the request behind it.
        match timeout_at(deadline, client.stream.read(&mut body[filled..])).await {
            Ok(Ok(n)) if n > 0 => filled += n,
            Ok(_) => return Err(None),
            Err(_elapsed) => return Err(Some(EdgeError::body_timeout())),
        }
    }
    Ok(Bytes::from(body))
}

/// Body pieces at least this large are written beside the head, not copied into its buffer.
const VECTORED_FROM: usize = 2048;

/// Writes `response` as HTTP/1.1; `Ok(true)` when the connection can carry the next request.
async fn write<S: ClientIo>(
    stream: &mut S,
    response: Response,
    is_head: bool,
    mut close: bool,
) -> io::Result<bool> {
    let (parts, mut body) = response.into_parts();
    let status = parts.status;
    // The handler may end the connection itself.
    close |= parts
        .headers
        .get_all(header::CONNECTION)
        .iter()
        .any(|v| super::tokens(v.as_bytes()).any(|t| t.eq_ignore_ascii_case(b"close")));
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or_default().as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut dated = false;
    for (name, value) in &parts.headers {
        // The framing is this writer's to decide.
        if matches!(*name, header::CONTENT_LENGTH | header::TRANSFER_ENCODING | header::CONNECTION)
        {
            continue;
        }
        dated |= *name == header::DATE;
        crate::pipeline::push_header(&mut out, name.as_str(), value.as_bytes());
    }
    if !dated {
        push_date(&mut out);
    }
    if close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    // No body for these, whatever the handler gave (RFC 9110 §6.4.1).
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    let exact = http_body::Body::size_hint(&body).exact();
    if bodiless {
        out.extend_from_slice(b"\r\n");
        send_all(stream, [&out]).await?;
    } else if let Some(length) = exact {
        out.extend_from_slice(b"content-length: ");
        push_decimal(&mut out, length);
        out.extend_from_slice(b"\r\n\r\n");
        if is_head {
            send_all(stream, [&out]).await?;
        } else {
            // Head and body in one write when the body is at hand (most answers are).
            let mut sent = 0_u64;
            while let Some(frame) = body.frame().await {
                let Ok(data) = frame.map(http_body::Frame::into_data) else {
                    return Ok(false);
                };
                let Ok(data) = data else { continue };
                sent += data.len() as u64;
                if sent > length {
                    return Ok(false);
                }
                if data.len() >= VECTORED_FROM {
                    // A large piece at hand (a cached page, say) goes out beside what is
                    // buffered, in one vectored write, rather than being copied behind it.
                    send_all(stream, [&out, &data]).await?;
                    out.clear();
                    continue;
                }
                out.extend_from_slice(&data);
                if out.len() >= 64 * 1024 {
                    send_all(stream, [&out]).await?;
                    out.clear();
                }
            }
            send_all(stream, [&out]).await?;
            if sent != length {
                // The body ended short of what the head announced: the client must not wait
                // for the rest on this connection.
                return Ok(false);
            }
        }
    } else if is_head {
        out.extend_from_slice(b"\r\n");
        send_all(stream, [&out]).await?;
    } else {
        out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
        send_all(stream, [&out]).await?;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else {
                // A broken body: without the last chunk the client sees it was cut short.
                return Ok(false);
            };
            let Ok(data) = frame.into_data() else { continue };
            if data.is_empty() {
                continue;
            }
            let mut chunk = Vec::with_capacity(data.len() + 16);
            chunk.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
            chunk.extend_from_slice(&data);
            chunk.extend_from_slice(b"\r\n");
            send_all(stream, [&chunk]).await?;
        }
        send_all(stream, [b"0\r\n\r\n"]).await?;
    }
    stream.flush().await?;
    if close {
        let _ = stream.shutdown().await;
    }
    Ok(!close)
}

/// `date: <IMF-fixdate>\r\n`, formatted once a second per thread.
fn push_date(out: &mut Vec<u8>) {
    thread_local! {
        static DATE: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
    }
    let now = SystemTime::now();
    let second = now.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, text)| {
        if *at != second {
            *at = second;
            *text = httpdate::fmt_http_date(now);
        }
        crate::pipeline::push_header(out, "date", text.as_bytes());
    });
}
