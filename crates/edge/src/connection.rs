//! Connection-level limits every transport shares — relay, router over HTTP/1.1 and HTTP/2:
//! a cap on open connections per gateway, checked at accept, and one IO wrapper that bounds
//! the time to the first request head (protocol detection included), idle time, and writes a
//! client stopped reading.
//!
//! A socket that never sends a byte must not hold a descriptor forever: 19,900 of them once took
//! a whole demo process down. hyper-util's auto builder runs no timer while it detects HTTP/1
//! vs HTTP/2, and hyper's own `header_read_timeout` only starts after that, so the bound lives
//! below both, in [`Guarded`], where every transport's bytes pass.

use std::{
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use metrics::{Counter, Gauge};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::{Instant, Sleep, sleep_until},
};

use crate::{config::Limits, metrics as names, relay::ClientIo};

/// Descriptors kept for everything but client connections when the cap is derived from the
/// open-file limit: listeners, upstream connections' share comes on top (half the rest).
const RESERVED_DESCRIPTORS: usize = 256;

/// The open-file limit where it cannot be read.
#[cfg(not(unix))]
const FALLBACK_NOFILE: usize = 1024;

/// Bytes that settle HTTP/1 vs HTTP/2: the length of the HTTP/2 connection preface.
const DETECTION_BYTES: usize = 24;

// === connection cap ===

/// The open connections of one gateway, shared by its workers: over the cap, a new connection
/// is closed as it is accepted, so the process never runs out of descriptors and the other
/// gateways of a process keep serving.
#[derive(Clone, Debug)]
pub struct Slots {
    inner: Arc<SlotsInner>,
}

#[derive(Debug)]
struct SlotsInner {
    open: AtomicUsize,
    max: usize,
    open_gauge: Gauge,
    refused: Counter,
}

/// One taken slot: the connection's place under the cap, given back when it is dropped.
#[derive(Debug)]
pub struct Slot {
    inner: Arc<SlotsInner>,
}

impl Slots {
    /// At most `max` open connections of gateway `gateway`.
    pub fn new(gateway: &'static str, max: usize) -> Self {
        let labels = [("gateway", gateway)];
        Self {
            inner: Arc::new(SlotsInner {
                open: AtomicUsize::new(0),
                max: max.max(1),
                open_gauge: metrics::gauge!(names::CONNECTIONS_OPEN, &labels),
                refused: metrics::counter!(names::CONNECTIONS_REFUSED, &labels),
            }),
        }
    }

    /// The cap `limits` sets for one of `gateways` gateways in this process: its
    /// `max_connections`, or a share of the open-file limit.
    pub fn for_limits(gateway: &'static str, limits: &Limits, gateways: usize) -> Self {
        let max = match limits.max_connections {
            0 => derived_max_connections(open_file_limit(), gateways),
            n => n,
        };
        Self::new(gateway, max)
    }

    /// A slot, or `None` (counted) when the gateway is at its cap.
    pub fn take(&self) -> Option<Slot> {
        let inner = &self.inner;
        let taken = inner
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |open| {
                (open < inner.max).then_some(open + 1)
            })
            .is_ok();
        if !taken {
            inner.refused.increment(1);
            return None;
        }
        inner.open_gauge.increment(1.0);
        Some(Slot { inner: inner.clone() })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.inner.open.fetch_sub(1, Ordering::AcqRel);
        self.inner.open_gauge.decrement(1.0);
    }
}

/// Half of what the open-file limit leaves after the reserve, split between the gateways of
/// the process: the other half is for their upstream connections.
fn derived_max_connections(nofile: usize, gateways: usize) -> usize {
    (nofile.saturating_sub(RESERVED_DESCRIPTORS) / 2 / gateways.max(1)).max(16)
}

/// The process's open-file limit (soft), raised to the hard limit first when it is lower — as
/// Go's runtime and most servers do at start.
pub fn open_file_limit() -> usize {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let limit = getrlimit(Resource::Nofile);
        let soft = match (limit.current, limit.maximum) {
            (Some(soft), Some(hard))
                if soft < hard
                    && setrlimit(
                        Resource::Nofile,
                        rustix::process::Rlimit { current: Some(hard), maximum: Some(hard) },
                    )
                    .is_ok() =>
            {
                hard
            }
            (Some(soft), _) => soft,
            // Unlimited: count it as a generous, finite number.
            (None, _) => 1 << 20,
        };
        usize::try_from(soft).unwrap_or(usize::MAX)
    }
    #[cfg(not(unix))]
    {
        FALLBACK_NOFILE
    }
}

// === the IO wrapper ===

/// The timers of a [`Guarded`] connection, from the gateway's limits.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// From accept to the first request head (or the protocol decided).
    pub head: Duration,
    /// No byte either way for this long closes the connection.
    pub idle: Duration,
    /// A write that cannot make progress for this long closes the connection.
    pub send: Duration,
}

impl Timeouts {
    /// The timers `limits` sets. The idle bound is never shorter than a request may take, so
    /// a request waiting on a slow upstream is not cut as idle.
    pub fn new(limits: &Limits) -> Self {
        Self {
            head: limits.header_read_timeout,
            idle: limits.keepalive_timeout.max(limits.request_timeout),
            send: limits.send_timeout,
        }
    }
}

/// A client connection with the connection-level timers: until the protocol is decided (the
/// first 24 bytes, or the gateway's first write) it must arrive by `head`; after that, a
/// connection on which nothing moves for `idle` is closed (checked lazily: between `idle` and
/// twice that after the last byte), and a write the client does not take for `send` ends it.
///
/// The timer is armed only when an operation has to wait, so a connection whose reads and
/// writes complete at once pays a flag per operation and no clock read.
#[derive(Debug)]
pub struct Guarded<S> {
    io: S,
    timeouts: Timeouts,
    timer: Option<Pin<Box<Sleep>>>,
    /// While the protocol is undecided: when the head must be in by.
    head_by: Option<Instant>,
    head_bytes: usize,
    /// When the idle window being timed began (`None`: at the next wait).
    idle_from: Option<Instant>,
    /// Whether a byte moved since `idle_from`.
    active: bool,
    /// Since when a write has been waiting for the client.
    blocked_since: Option<Instant>,
}

impl<S> Guarded<S> {
    /// `io`, accepted now.
    pub fn new(io: S, timeouts: Timeouts) -> Self {
        Self {
            io,
            timeouts,
            timer: None,
            head_by: Some(Instant::now() + timeouts.head),
            head_bytes: 0,
            idle_from: None,
            active: false,
            blocked_since: None,
        }
    }

    fn deadline(&mut self) -> Instant {
        let mut at = match self.head_by {
            Some(by) => by,
            None => *self.idle_from.get_or_insert_with(Instant::now) + self.timeouts.idle,
        };
        if let Some(since) = self.blocked_since {
            at = at.min(since + self.timeouts.send);
        }
        at
    }

    /// Whether the connection's time is up; registers the waker when it is not.
    fn expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            let at = self.deadline();
            let timer = self.timer.get_or_insert_with(|| Box::pin(sleep_until(at)));
            if timer.deadline() != at {
                timer.as_mut().reset(at);
            }
            if timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let now = Instant::now();
            if self.head_by.is_some()
                || self.blocked_since.is_some_and(|since| since + self.timeouts.send <= now)
            {
                return true;
            }
            // An idle window ended: if anything moved in it, time the next one from now.
            if !std::mem::take(&mut self.active) {
                return true;
            }
            self.idle_from = Some(now);
        }
    }

    fn decided(&mut self) {
        self.head_by = None;
    }
}

fn timed_out(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::TimedOut, what.to_owned())
}

impl<S: AsyncRead + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let n = buf.filled().len() - before;
                if n > 0 {
                    this.active = true;
                    if this.head_by.is_some() {
                        this.head_bytes += n;
                        if this.head_bytes >= DETECTION_BYTES {
                            this.decided();
                        }
                    }
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending if this.expired(cx) => {
                Poll::Ready(Err(timed_out(if this.head_by.is_some() {
                    "the client did not send a request head in time"
                } else {
                    "the connection was idle too long"
                })))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> Guarded<S> {
    fn after_write(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match polled {
            Poll::Ready(result) => {
                self.blocked_since = None;
                self.active = true;
                // The gateway answered: whatever the client sent was a complete head (or an
                // HTTP/2 preface).
                self.decided();
                Poll::Ready(result)
            }
            Poll::Pending => {
                self.blocked_since.get_or_insert_with(Instant::now);
                if self.expired(cx) {
                    return Poll::Ready(Err(timed_out("the client stopped reading its response")));
                }
                Poll::Pending
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.after_write(cx, polled)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.after_write(cx, polled)
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

impl<S: ClientIo> ClientIo for Guarded<S> {
    // The relay times its own waits (first head, keep-alive idle); these only pass through.
    fn readable(&self) -> impl Future<Output = io::Result<()>> + Send {
        self.io.readable()
    }

    fn peek<'a>(
        &'a self,
        buf: &'a mut [u8],
    ) -> impl Future<Output = io::Result<usize>> + Send + 'a {
        self.io.peek(buf)
    }

    fn poll_peek(&self, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<usize>> {
        self.io.poll_peek(cx, buf)
    }

    // A write, timed as every write: a client that stops taking its answer is cut at `send`.
    fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = self.io.poll_send(cx, bufs);
        self.after_write(cx, polled)
    }
}

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;
