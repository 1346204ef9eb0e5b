//! The client connections the relay serves, whatever carries them: plain TCP today, TLS or
//! another stream tomorrow, without a third request path.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, Waker},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, Interest, ReadBuf},
    net::TcpStream,
};

/// A client connection the relay can serve: a byte stream it can also wait on and peek at
/// without reading (to hold no buffer while idle, and to notice a client that left).
pub trait ClientIo: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// Waits until the connection has bytes to read, or is closed.
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send;
    /// Reads without consuming; `Ok(0)` means the client closed its side.
    fn peek<'a>(&'a self, buf: &'a mut [u8])
    -> impl Future<Output = io::Result<usize>> + Send + 'a;
    /// [`ClientIo::peek`] as a poll: `Ready(Ok(0))` when the client closed its side.
    fn poll_peek(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<usize>>;
    /// Writes what the connection takes of `bufs` now, in order, in one system call; pending
    /// until it takes something. Every write of the relay goes out through this (see
    /// [`send_all`]): relayed answers, the router's, the gateway's own, and upstream requests.
    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>>;
}

impl ClientIo for TcpStream {
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        TcpStream::readable(self)
    }

    fn peek<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        TcpStream::peek(self, buf)
    }

    fn poll_peek(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<usize>> {
        TcpStream::poll_peek(self, cx, buf)
    }

    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        loop {
            std::task::ready!(self.poll_write_ready(cx))?;
            match self.try_io(Interest::WRITABLE, || send_now(self, bufs)) {
                // Readiness was stale: `try_io` cleared it, so the next poll waits.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                sent => return Poll::Ready(sent),
            }
        }
    }
}

/// One non-blocking `send` (one slice) or `sendmsg` (several), made as a raw system call
/// (rustix): a relayed request and its answer are each one such write. `writev` through libc,
/// what tokio's vectored write makes, also passes libc's cancellation-point wrapper and the
/// kernel's file layer (`vfs_writev`, the file position lock) before it reaches the socket —
/// a cpu-clock profile put that path at ~0.3 µs more per relayed request than HAProxy's `send`.
/// `MSG_NOSIGNAL`: a client gone mid-write is an error here, never a `SIGPIPE`.
fn send_now(socket: &TcpStream, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
    use rustix::net::{SendAncillaryBuffer, SendFlags, send, sendmsg};
    let flags = SendFlags::DONTWAIT | SendFlags::NOSIGNAL;
    let sent = match bufs {
        [one] => send(socket, one, flags),
        _ => sendmsg(socket, bufs, &mut SendAncillaryBuffer::default(), flags),
    };
    sent.map_err(io::Error::from)
}

/// Writes all of `parts`, in order, with as few system calls as the connection takes them
/// (one, unless its send buffer fills), copying none of them behind another.
pub(crate) async fn send_all<S: ClientIo, const N: usize>(
    stream: &mut S,
    parts: [&[u8]; N],
) -> io::Result<()> {
    let mut slices = parts.map(io::IoSlice::new);
    let mut remaining: &mut [io::IoSlice<'_>] = &mut slices;
    io::IoSlice::advance_slices(&mut remaining, 0);
    while !remaining.is_empty() {
        let n = std::future::poll_fn(|cx| stream.poll_send(cx, remaining)).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        io::IoSlice::advance_slices(&mut remaining, n);
    }
    Ok(())
}

/// A client connection handed to the general server, with the bytes the relay has read from
/// it replayed first.
#[derive(Debug)]
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    read: usize,
    io: S,
}

impl<S> Prefixed<S> {
    pub(crate) fn new(prefix: Vec<u8>, io: S) -> Self {
        Self { prefix, read: 0, io }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read < this.prefix.len() {
            let n = (this.prefix.len() - this.read).min(buf.remaining());
            buf.put_slice(&this.prefix[this.read..this.read + n]);
            this.read += n;
            if this.read == this.prefix.len() {
                this.prefix = Vec::new();
                this.read = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// One router request of a connection the relay keeps, as the general server reads it: the
/// head and the body bytes the relay has read, then the rest of the body from the connection,
/// then — once the response has gone out — the end of the stream, so the general server serves
/// exactly this request and gives the connection back, and what the client sent after it stays
/// the relay's.
///
/// Between the request's end and the response's, a read is the server's watch for the client
/// leaving (hyper reads for it while a response is in progress): it peeks, so a client that
/// closed ends the request (and its upstream calls), and a pipelined request is left unread.
#[derive(Debug)]
pub struct OneRequest<'a, S> {
    io: &'a mut S,
    read_already: &'a [u8],
    read: usize,
    /// Body bytes still to come from the connection.
    rest: u64,
    /// Set when the response's body is dropped: written out, or abandoned.
    answered: Arc<AtomicBool>,
    /// Written to since the last completed flush.
    unflushed: bool,
    /// The reader waiting for the response to go out.
    reader: Option<Waker>,
}

impl<'a, S> OneRequest<'a, S> {
    pub(crate) fn new(io: &'a mut S, read_already: &'a [u8], rest: u64) -> Self {
        let answered = Arc::new(AtomicBool::new(false));
        Self { io, read_already, read: 0, rest, answered, unflushed: false, reader: None }
    }

    /// The flag the response's body sets when it is dropped.
    pub(crate) fn answered(&self) -> Arc<AtomicBool> {
        self.answered.clone()
    }

    /// Whether the request has been read to its end: only then can the connection carry
    /// another one.
    pub(crate) fn finished(&self) -> bool {
        self.read == self.read_already.len() && self.rest == 0
    }

    fn sent(&self) -> bool {
        self.answered.load(Ordering::Acquire) && !self.unflushed
    }
}

impl<S: ClientIo> AsyncRead for OneRequest<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.read < this.read_already.len() {
            let n = (this.read_already.len() - this.read).min(buf.remaining());
            buf.put_slice(&this.read_already[this.read..this.read + n]);
            this.read += n;
            return Poll::Ready(Ok(()));
        }
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if this.rest > 0 {
            // Never past the request's body.
            let want = usize::try_from(this.rest).unwrap_or(usize::MAX).min(buf.remaining());
            let mut limited = ReadBuf::new(buf.initialize_unfilled_to(want));
            std::task::ready!(Pin::new(&mut *this.io).poll_read(cx, &mut limited))?;
            let n = limited.filled().len();
            buf.advance(n);
            this.rest -= n as u64;
            return Poll::Ready(Ok(()));
        }
        if this.sent() {
            // The server is done with the request: the end of its stream.
            return Poll::Ready(Ok(()));
        }
        // The response is still on its way: watch for the client leaving.
        let mut probe = [0_u8; 1];
        match this.io.poll_peek(cx, &mut ReadBuf::new(&mut probe)) {
            // Closed: the server sees the end of the stream mid-response and gives up on it.
            Poll::Ready(Ok(0)) => Poll::Ready(Ok(())),
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            // A pipelined request waits its turn; the response's end wakes the reader.
            Poll::Ready(Ok(_)) | Poll::Pending => {
                this.reader = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for OneRequest<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.unflushed = true;
        Pin::new(&mut *this.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.unflushed = true;
        Pin::new(&mut *this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        std::task::ready!(Pin::new(&mut *this.io).poll_flush(cx))?;
        this.unflushed = false;
        if this.sent()
            && let Some(reader) = this.reader.take()
        {
            reader.wake();
        }
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // The connection outlives the request: only the relay closes it.
        self.poll_flush(cx)
    }
}

#[cfg(test)]
mod tests {
    use tokio::{
        io::AsyncReadExt,
        net::{TcpListener, TcpStream},
    };

    use super::*;

    /// A connected loopback pair: (the side that writes, the side that reads).
    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let writer = TcpStream::connect(listener.local_addr().unwrap()).await.unwrap();
        let (reader, _) = listener.accept().await.unwrap();
        (writer, reader)
    }

    // Far more than the socket buffers hold: the sends are partial, some end inside a slice,
    // and each must resume at the byte where the last stopped.
    #[tokio::test]
    async fn send_all_resumes_partial_writes_where_they_stopped() {
        let (mut writer, mut reader) = pair().await;
        let head = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
        let body: Vec<u8> = (0..32 << 20).map(|i: usize| (i % 251) as u8).collect();
        let tail = b"the end".to_vec();
        let expected = [head.clone(), body.clone(), tail.clone()].concat();
        let read = tokio::spawn(async move {
            let mut got = Vec::new();
            reader.read_to_end(&mut got).await.unwrap();
            got
        });
        send_all(&mut writer, [&head, &body, &tail]).await.unwrap();
        drop(writer);
        let got = read.await.unwrap();
        assert_eq!(got.len(), expected.len());
        assert!(got == expected, "the bytes arrived altered");
    }

    // A write to a connection the peer has closed is an error, not a `SIGPIPE`, and not a
    // write that never ends.
    #[tokio::test]
    async fn send_all_to_a_closed_peer_is_an_error() {
        let (mut writer, reader) = pair().await;
        drop(reader);
        let big = vec![0_u8; 8 << 20];
        let mut failed = false;
        for _ in 0..16 {
            if send_all(&mut writer, [&big[..]]).await.is_err() {
                failed = true;
                break;
            }
        }
        assert!(failed, "writes to a closed peer kept succeeding");
    }
}
